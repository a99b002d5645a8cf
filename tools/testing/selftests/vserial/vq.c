// SPDX-License-Identifier: GPL-2.0
/*
 * Userspace guest for /dev/vhost-serial: memory, split rings, the control
 * protocol, and checked streams of data.  See vq.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_console.h>

#include "vq.h"

int vs_ioctl(struct vs_dev *d, unsigned long req, void *arg)
{
	return ioctl(d->fd, req, arg) < 0 ? -errno : 0;
}

uint64_t vs_default_features(void)
{
	return (1ULL << VIRTIO_F_VERSION_1) |
	       (1ULL << VIRTIO_CONSOLE_F_MULTIPORT) |
	       (1ULL << VIRTIO_CONSOLE_F_SIZE);
}

void *vs_alloc(struct vs_dev *d, size_t size, size_t align)
{
	size_t off = (d->mem_used + align - 1) & ~(align - 1);

	if (off + size > d->mem_size)
		return NULL;
	d->mem_used = off + size;
	return d->mem + off;
}

int vs_open(struct vs_dev *d, unsigned int nr_ports)
{
	uint32_t nr = nr_ports;
	int ret;

	memset(d, 0, sizeof(*d));
	d->err = -1;
	d->fd = open("/dev/vhost-serial", O_RDWR | O_CLOEXEC);
	if (d->fd < 0)
		return -errno;
	d->nr_ports = nr_ports;
	d->nvqs = 2 * nr_ports + 2;
	ret = vs_ioctl(d, VHOST_SERIAL_SET_NUM_PORTS, &nr);
	if (ret) {
		close(d->fd);
		d->fd = -1;
	}
	return ret;
}

static int vs_setup_vq(struct vs_dev *d, unsigned int index, unsigned int num)
{
	struct vs_vq *vq = &d->vqs[index];
	struct vhost_vring_state state = { .index = index, .num = num };
	struct vhost_vring_file file = { .index = index };
	struct vhost_vring_addr addr = { .index = index };
	unsigned int i;
	int ret;

	vq->num = num;
	vq->desc = vs_alloc(d, 16 * num, 4096);
	vq->avail = vs_alloc(d, 6 + 2 * num, 4096);
	vq->used = vs_alloc(d, 6 + 8 * num, 4096);
	vq->cookie = calloc(num, sizeof(*vq->cookie));
	vq->chain_len = calloc(num, sizeof(*vq->chain_len));
	if (!vq->desc || !vq->avail || !vq->used || !vq->cookie ||
	    !vq->chain_len)
		return -ENOMEM;
	for (i = 0; i < num; i++)
		vq->desc[i].next = i + 1;
	vq->num_free = num;
	vq->event_idx = d->features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
	vq->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vq->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vq->kick < 0 || vq->call < 0)
		return -errno;

	ret = vs_ioctl(d, VHOST_SET_VRING_NUM, &state);
	if (ret)
		return ret;
	state.num = 0;
	ret = vs_ioctl(d, VHOST_SET_VRING_BASE, &state);
	if (ret)
		return ret;
	addr.desc_user_addr = (uintptr_t)vq->desc;
	addr.avail_user_addr = (uintptr_t)vq->avail;
	addr.used_user_addr = (uintptr_t)vq->used;
	ret = vs_ioctl(d, VHOST_SET_VRING_ADDR, &addr);
	if (ret)
		return ret;
	file.fd = vq->kick;
	ret = vs_ioctl(d, VHOST_SET_VRING_KICK, &file);
	if (ret)
		return ret;
	file.fd = vq->call;
	ret = vs_ioctl(d, VHOST_SET_VRING_CALL, &file);
	if (ret)
		return ret;
	file.fd = d->err;
	return vs_ioctl(d, VHOST_SET_VRING_ERR, &file);
}

/* Drops the guest side (rings, memory, eventfds); the device file stays. */
static void vs_drop_guest(struct vs_dev *d)
{
	unsigned int i;

	for (i = 0; d->vqs && i < d->nvqs; i++) {
		if (d->vqs[i].kick >= 0)
			close(d->vqs[i].kick);
		if (d->vqs[i].call >= 0)
			close(d->vqs[i].call);
		free(d->vqs[i].cookie);
		free(d->vqs[i].chain_len);
	}
	free(d->vqs);
	d->vqs = NULL;
	if (d->err >= 0)
		close(d->err);
	d->err = -1;
	if (d->mem)
		munmap(d->mem, d->mem_size);
	d->mem = NULL;
	d->mem_used = 0;
	d->ctrl_tx_buf = NULL;
}

/*
 * Features, guest memory and rings, for a device this process owns; when
 * called again, what an earlier call set up is dropped first.
 */
int vs_setup_guest(struct vs_dev *d, uint64_t features, unsigned int ring_num)
{
	struct vhost_memory *mem;
	unsigned int i;
	int ret;

	vs_drop_guest(d);
	d->features = features;
	ret = vs_ioctl(d, VHOST_SET_FEATURES, &features);
	if (ret)
		return ret;

	d->mem_size = VS_MEM_SIZE;
	d->mem = mmap(NULL, d->mem_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->mem == MAP_FAILED) {
		d->mem = NULL;
		return -ENOMEM;
	}
	mem = calloc(1, sizeof(*mem) + sizeof(mem->regions[0]));
	if (!mem)
		return -ENOMEM;
	mem->nregions = 1;
	mem->regions[0].guest_phys_addr = (uintptr_t)d->mem;
	mem->regions[0].userspace_addr = (uintptr_t)d->mem;
	mem->regions[0].memory_size = d->mem_size;
	ret = vs_ioctl(d, VHOST_SET_MEM_TABLE, mem);
	free(mem);
	if (ret)
		return ret;

	d->vqs = calloc(d->nvqs, sizeof(*d->vqs));
	if (!d->vqs)
		return -ENOMEM;
	/* Before anything can fail: vs_drop_guest() closes what is >= 0. */
	for (i = 0; i < d->nvqs; i++) {
		d->vqs[i].kick = -1;
		d->vqs[i].call = -1;
	}
	d->err = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->err < 0)
		return -errno;
	for (i = 0; i < d->nvqs; i++) {
		ret = vs_setup_vq(d, i, ring_num);
		if (ret)
			return ret;
	}
	return 0;
}

int vs_setup(struct vs_dev *d, uint64_t features, unsigned int ring_num)
{
	int ret = vs_ioctl(d, VHOST_SET_OWNER, NULL);

	return ret ? ret : vs_setup_guest(d, features, ring_num);
}

int vs_start(struct vs_dev *d)
{
	int run = 1;

	return vs_ioctl(d, VHOST_SERIAL_SET_RUNNING, &run);
}

int vs_create(struct vs_dev *d, unsigned int nr_ports, uint64_t features)
{
	int ret;

	ret = vs_open(d, nr_ports);
	if (ret)
		return ret;
	ret = vs_setup(d, features, VS_RING_NUM);
	if (!ret)
		ret = vs_start(d);
	if (ret)
		vs_close(d);
	return ret;
}

void vs_close(struct vs_dev *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	vs_drop_guest(d);
}

/*
 * After VHOST_RESET_OWNER: this process becomes the owner and brings a new
 * guest (fresh memory and rings) to the same device.
 */
int vs_new_guest(struct vs_dev *d, uint64_t features)
{
	int ret;

	ret = vs_setup(d, features, VS_RING_NUM);
	if (!ret)
		ret = vs_start(d);
	return ret;
}

int vs_add_port(struct vs_dev *d, uint32_t id, const char *name, bool console)
{
	struct vhost_serial_port_config cfg = { .id = id };

	if (console)
		cfg.flags = VHOST_SERIAL_PORT_F_CONSOLE;
	if (name)
		strncpy(cfg.name, name, sizeof(cfg.name) - 1);
	return vs_ioctl(d, VHOST_SERIAL_ADD_PORT, &cfg);
}

int vs_del_port(struct vs_dev *d, uint32_t id)
{
	return vs_ioctl(d, VHOST_SERIAL_DEL_PORT, &id);
}

int vs_set_backend(struct vs_dev *d, uint32_t id, int in_fd, int out_fd)
{
	return vs_set_backend_flags(d, id, in_fd, out_fd, 0);
}

int vs_set_backend_flags(struct vs_dev *d, uint32_t id, int in_fd,
			 int out_fd, uint32_t flags)
{
	struct vhost_serial_backend b = {
		.id = id, .in_fd = in_fd, .out_fd = out_fd, .flags = flags,
	};

	return vs_ioctl(d, VHOST_SERIAL_SET_BACKEND, &b);
}

int vs_set_event(struct vs_dev *d, uint32_t id, int fd)
{
	struct vhost_serial_port_event e = { .id = id, .fd = fd };

	return vs_ioctl(d, VHOST_SERIAL_SET_PORT_EVENT, &e);
}

int vs_port_state(struct vs_dev *d, uint32_t id,
		  struct vhost_serial_port_state *st)
{
	memset(st, 0, sizeof(*st));
	st->id = id;
	return vs_ioctl(d, VHOST_SERIAL_GET_PORT_STATE, st);
}

int vs_resize(struct vs_dev *d, uint32_t id, uint16_t cols, uint16_t rows)
{
	struct vhost_serial_resize r = { .id = id, .cols = cols, .rows = rows };

	return vs_ioctl(d, VHOST_SERIAL_RESIZE, &r);
}

/* ---- rings ---------------------------------------------------------------- */

int vs_vq_add(struct vs_vq *vq, const struct iovec *out, unsigned int nout,
	      const struct iovec *in, unsigned int nin, void *cookie)
{
	unsigned int total = nout + nin, i;
	uint16_t head, idx;

	if (!total || vq->num_free < total)
		return -ENOSPC;
	head = idx = vq->free_head;
	for (i = 0; i < total; i++) {
		const struct iovec *iov = i < nout ? &out[i] : &in[i - nout];

		vq->desc[idx].addr = (uintptr_t)iov->iov_base;
		vq->desc[idx].len = iov->iov_len;
		vq->desc[idx].flags = i < nout ? 0 : VRING_DESC_F_WRITE;
		if (i + 1 < total)
			vq->desc[idx].flags |= VRING_DESC_F_NEXT;
		idx = vq->desc[idx].next;
	}
	vq->free_head = idx;
	vq->num_free -= total;
	vq->cookie[head] = cookie;
	vq->chain_len[head] = total;
	vs_vq_publish(vq, head);
	return head;
}

void vs_vq_publish(struct vs_vq *vq, uint16_t head)
{
	vq->avail->ring[vq->avail_idx % vq->num] = head;
	vq->avail_idx++;
	__atomic_store_n(&vq->avail->idx, vq->avail_idx, __ATOMIC_RELEASE);
}

void vs_vq_kick(struct vs_vq *vq)
{
	uint16_t *avail_event = (uint16_t *)&vq->used->ring[vq->num];
	uint64_t one = 1;
	bool need;

	/* Publish avail->idx before reading the device's suppression state. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vq->event_idx)
		need = vring_need_event(__atomic_load_n(avail_event,
							__ATOMIC_RELAXED),
					vq->avail_idx, vq->kicked_at);
	else
		need = !(__atomic_load_n(&vq->used->flags, __ATOMIC_RELAXED) &
			 VRING_USED_F_NO_NOTIFY);
	vq->kicked_at = vq->avail_idx;
	if (need && write(vq->kick, &one, sizeof(one)) != sizeof(one)) {
		fprintf(stderr, "# kick on fd %d: %s\n", vq->kick,
			strerror(errno));
		abort();
	}
}

/* One device-readable buffer, made available and kicked: 0 or -ENOSPC. */
int vs_vq_send(struct vs_vq *vq, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	if (vs_vq_add(vq, &iov, 1, NULL, 0, buf) < 0)
		return -ENOSPC;
	vs_vq_kick(vq);
	return 0;
}

void *vs_vq_get(struct vs_vq *vq, uint32_t *len)
{
	uint16_t used_idx = __atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE);
	struct vring_used_elem *e;
	uint16_t head, idx, n;
	void *cookie;

	if (used_idx == vq->last_used)
		return NULL;
	e = &vq->used->ring[vq->last_used % vq->num];
	head = e->id;
	if (head >= vq->num || !vq->chain_len[head]) {
		/* The device returned a buffer we never gave. */
		fprintf(stderr, "# used ring entry %u: id %u, len %u: not ours\n",
			vq->last_used, head, e->len);
		abort();
	}
	if (len)
		*len = e->len;
	vq->last_used++;
	if (vq->event_idx)
		vq->avail->ring[vq->num] = vq->last_used;	/* used_event */

	cookie = vq->cookie[head];
	n = vq->chain_len[head];
	vq->chain_len[head] = 0;
	vq->num_free += n;
	idx = head;
	while (--n)
		idx = vq->desc[idx].next;
	vq->desc[idx].next = vq->free_head;
	vq->free_head = head;
	return cookie;
}

int vs_wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int ret;

	ret = poll(&p, 1, timeout_ms);
	if (ret < 0)
		return -errno;
	return ret ? 0 : -ETIMEDOUT;
}

uint64_t vs_eventfd_read(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

int vs_vq_wait(struct vs_vq *vq, int timeout_ms)
{
	int ret = vs_wait_fd(vq->call, POLLIN, timeout_ms);

	if (!ret)
		vs_eventfd_read(vq->call);
	return ret;
}

/* ---- control queue ----------------------------------------------------- */

int vs_ctrl_start(struct vs_dev *d)
{
	struct vs_vq *vq = &d->vqs[VS_CTRL_RX];
	struct iovec iov;
	unsigned int i;
	char *buf;

	for (i = 0; i < VS_CTRL_BUFS; i++) {
		buf = vs_alloc(d, VS_CTRL_BUF, 8);
		if (!buf)
			return -ENOMEM;
		iov.iov_base = buf;
		iov.iov_len = VS_CTRL_BUF;
		if (vs_vq_add(vq, NULL, 0, &iov, 1, buf) < 0)
			return -ENOSPC;
	}
	vs_vq_kick(vq);
	return 0;
}

/* Send a control message and wait until the device has consumed it. */
int vs_ctrl_send_raw(struct vs_dev *d, const void *msg, size_t len)
{
	struct vs_vq *vq = &d->vqs[VS_CTRL_TX];
	char *buf;
	int ret;

	/* One buffer serves every message: each is consumed before the next. */
	if (len > VS_CTRL_BUF)
		return -EINVAL;
	if (!d->ctrl_tx_buf)
		d->ctrl_tx_buf = vs_alloc(d, VS_CTRL_BUF, 8);
	buf = d->ctrl_tx_buf;
	if (!buf)
		return -ENOMEM;
	memcpy(buf, msg, len);
	ret = vs_vq_send(vq, buf, len);
	if (ret)
		return ret;
	while (!vs_vq_get(vq, NULL)) {
		ret = vs_vq_wait(vq, VS_TIMEOUT_MS);
		if (ret)
			return ret;
	}
	return 0;
}

int vs_ctrl_send(struct vs_dev *d, uint32_t id, uint16_t event, uint16_t value)
{
	struct virtio_console_control c = {
		.id = id, .event = event, .value = value,
	};

	return vs_ctrl_send_raw(d, &c, sizeof(c));
}

int vs_ctrl_recv(struct vs_dev *d, struct vs_ctrl *msg, int timeout_ms)
{
	struct vs_vq *vq = &d->vqs[VS_CTRL_RX];
	struct virtio_console_control c;
	struct iovec iov;
	uint32_t len;
	char *buf;
	int ret;

	while (!(buf = vs_vq_get(vq, &len))) {
		ret = vs_vq_wait(vq, timeout_ms);
		if (ret)
			return ret;
	}
	memset(msg, 0, sizeof(*msg));
	msg->len = len;
	if (len >= sizeof(c) && len <= VS_CTRL_BUF) {
		memcpy(&c, buf, sizeof(c));
		msg->id = c.id;
		msg->event = c.event;
		msg->value = c.value;
		memcpy(msg->payload, buf + sizeof(c), len - sizeof(c));
	}
	iov.iov_base = buf;
	iov.iov_len = VS_CTRL_BUF;
	vs_vq_add(vq, NULL, 0, &iov, 1, buf);
	vs_vq_kick(vq);
	return len >= sizeof(c) && len <= VS_CTRL_BUF ? 0 : -EBADMSG;
}

int vs_ctrl_expect(struct vs_dev *d, uint32_t id, uint16_t event,
		   struct vs_ctrl *msg)
{
	int ret = vs_ctrl_recv(d, msg, VS_TIMEOUT_MS);

	if (ret)
		return ret;
	return msg->id == id && msg->event == event ? 0 : -EPROTO;
}

static void vs_note(struct vs_port_info *info, unsigned int nr,
		    const struct vs_ctrl *m)
{
	struct vs_port_info *p;
	size_t n;

	if (m->id >= nr)
		return;
	p = &info[m->id];
	switch (m->event) {
	case VIRTIO_CONSOLE_PORT_ADD:
		p->added = true;
		break;
	case VIRTIO_CONSOLE_PORT_REMOVE:
		p->added = false;
		break;
	case VIRTIO_CONSOLE_CONSOLE_PORT:
		p->console = m->value;
		break;
	case VIRTIO_CONSOLE_PORT_OPEN:
		p->host_open = m->value;
		break;
	case VIRTIO_CONSOLE_PORT_NAME:
		n = m->len - sizeof(struct virtio_console_control);
		if (n > sizeof(p->name) - 1)
			n = sizeof(p->name) - 1;
		memcpy(p->name, m->payload, n);
		p->name[n] = '\0';
		p->named = true;
		break;
	case VIRTIO_CONSOLE_RESIZE:
		memcpy(&p->cols, m->payload, 2);
		memcpy(&p->rows, m->payload + 2, 2);
		p->resized = true;
		break;
	}
}

/*
 * DEVICE_READY, then PORT_READY for each PORT_ADD.  @extra is the number of
 * messages the device sends after the PORT_READYs (CONSOLE_PORT, RESIZE,
 * PORT_NAME, PORT_OPEN): the caller configured the ports, so it knows.
 */
int vs_handshake(struct vs_dev *d, struct vs_port_info *info,
		 unsigned int nr_added, unsigned int extra)
{
	struct vs_ctrl m;
	unsigned int adds = 0, i;
	int ret;

	memset(info, 0, d->nr_ports * sizeof(*info));
	ret = vs_ctrl_start(d);
	if (ret)
		return ret;
	ret = vs_ctrl_send(d, 0, VIRTIO_CONSOLE_DEVICE_READY, 1);
	if (ret)
		return ret;
	while (adds < nr_added) {
		ret = vs_ctrl_recv(d, &m, VS_TIMEOUT_MS);
		if (ret)
			return ret;
		if (m.event != VIRTIO_CONSOLE_PORT_ADD)
			return -EPROTO;
		vs_note(info, d->nr_ports, &m);
		adds++;
		ret = vs_ctrl_send(d, m.id, VIRTIO_CONSOLE_PORT_READY, 1);
		if (ret)
			return ret;
	}
	for (i = 0; i < extra; i++) {
		ret = vs_ctrl_recv(d, &m, VS_TIMEOUT_MS);
		if (ret)
			return ret;
		vs_note(info, d->nr_ports, &m);
	}
	return 0;
}

int vs_guest_open(struct vs_dev *d, uint32_t id, bool open)
{
	return vs_ctrl_send(d, id, VIRTIO_CONSOLE_PORT_OPEN, open);
}

/*
 * A device with @nr_ports ports, ports 0..@nr_added-1 added as generic ports
 * named "port<N>", handshake done.  Backends are attached later by the
 * caller, so the handshake brings NAME only.
 */
int vs_bring_up(struct vs_dev *d, unsigned int nr_ports, unsigned int nr_added,
		struct vs_port_info *info)
{
	char name[32];
	unsigned int i;
	int ret;

	ret = vs_create(d, nr_ports, vs_default_features());
	if (ret)
		return ret;
	for (i = 0; i < nr_added; i++) {
		snprintf(name, sizeof(name), "port%u", i);
		ret = vs_add_port(d, i, name, false);
		if (ret)
			return ret;
	}
	return vs_handshake(d, info, nr_added, nr_added);
}

/* ---- checked streams --------------------------------------------------- */

/* xorshift64*: cheap, and each seed gives its own stream. */
void vs_pattern(uint64_t *state, void *buf, size_t len)
{
	uint8_t *p = buf;
	uint64_t x = *state, v;
	size_t n;

	while (len) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		v = x * 0x2545f4914f6cdd1dULL;
		n = len < 8 ? len : 8;
		memcpy(p, &v, n);
		p += n;
		len -= n;
	}
	*state = x;
}

#define VS_FLOW_BUF	(64 * 1024)
#define VS_FLOW_NBUFS	16

int vs_flow_init(struct vs_flow *f, struct vs_dev *d, unsigned int port,
		 bool g2h, int host_fd, uint64_t total, uint32_t seed)
{
	return vs_flow_init_sized(f, d, port, g2h, host_fd, total, seed,
				  VS_FLOW_BUF, VS_FLOW_NBUFS);
}

int vs_flow_init_sized(struct vs_flow *f, struct vs_dev *d, unsigned int port,
		       bool g2h, int host_fd, uint64_t total, uint32_t seed,
		       size_t buf_size, unsigned int nbufs)
{
	unsigned int i;

	memset(f, 0, sizeof(*f));
	f->d = d;
	f->port = port;
	f->g2h = g2h;
	f->host_fd = host_fd;
	f->sink_fd = -1;
	f->total = total;
	f->seed = seed;
	f->buf_size = buf_size;
	f->nbufs = nbufs;
	f->pat_tx = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)seed << 17 | seed);
	f->bufs = calloc(f->nbufs, sizeof(*f->bufs));
	f->free = calloc(f->nbufs, sizeof(*f->free));
	f->host_size = buf_size > VS_FLOW_BUF ? buf_size : VS_FLOW_BUF;
	f->host_buf = malloc(f->host_size);
	if (!f->bufs || !f->free || !f->host_buf)
		return -ENOMEM;
	/* Touched once, so that no run pays its page faults. */
	memset(f->host_buf, 0x5a, f->host_size);
	for (i = 0; i < f->nbufs; i++) {
		f->bufs[i] = vs_alloc(d, f->buf_size, 64);
		if (!f->bufs[i])
			return -ENOMEM;
		f->free[f->free_top++] = f->bufs[i];
	}
	sha1_init(&f->sha_tx);
	sha1_init(&f->sha_rx);
	return 0;
}

void vs_flow_free(struct vs_flow *f)
{
	free(f->bufs);
	free(f->free);
	free(f->host_buf);
	f->bufs = NULL;
	f->free = NULL;
	f->host_buf = NULL;
}

/* Produce the whole stream into a file, for a regular-file backend. */
int vs_flow_fill_file(struct vs_flow *f, int fd)
{
	uint64_t left = f->total;
	size_t n;

	while (left) {
		n = left < VS_FLOW_BUF ? left : VS_FLOW_BUF;
		vs_pattern(&f->pat_tx, f->host_buf, n);
		sha1_update(&f->sha_tx, f->host_buf, n);
		if (write(fd, f->host_buf, n) != (ssize_t)n)
			return -errno;
		left -= n;
	}
	f->sent = f->total;
	f->host_moved = f->total;
	return 0;
}

static bool vs_host_may_move(struct vs_flow *f)
{
	return f->host_fd >= 0 &&
	       (!f->host_stop_at || f->host_moved < f->host_stop_at);
}

static size_t vs_host_budget(struct vs_flow *f, size_t want)
{
	uint64_t left;

	if (!f->host_stop_at)
		return want;
	left = f->host_stop_at - f->host_moved;
	return left < want ? left : want;
}

/* Guest output: queue buffers, reclaim them, read what the host got. */
static int vs_step_g2h(struct vs_flow *f, bool *progress)
{
	struct vs_vq *vq = &f->d->vqs[vs_tx_vq(f->port)];
	bool added = false;
	struct iovec iov;
	ssize_t n;
	char *buf;

	while ((buf = vs_vq_get(vq, NULL))) {
		f->free[f->free_top++] = buf;
		f->inflight--;
		*progress = true;
	}
	while (f->sent < f->total && f->free_top && vq->num_free) {
		buf = f->free[--f->free_top];
		iov.iov_base = buf;
		iov.iov_len = f->total - f->sent < f->buf_size ?
			      f->total - f->sent : f->buf_size;
		if (!f->raw) {
			vs_pattern(&f->pat_tx, buf, iov.iov_len);
			sha1_update(&f->sha_tx, buf, iov.iov_len);
		}
		vs_vq_add(vq, &iov, 1, NULL, 0, buf);
		f->sent += iov.iov_len;
		f->inflight++;
		added = true;
	}
	if (added)
		vs_vq_kick(vq);

	while (vs_host_may_move(f) && f->received < f->total) {
		if (f->sink_fd >= 0)
			n = splice(f->host_fd, NULL, f->sink_fd, NULL,
				   vs_host_budget(f, f->host_size),
				   SPLICE_F_NONBLOCK);
		else
			n = read(f->host_fd, f->host_buf,
				 vs_host_budget(f, f->host_size));
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;	/* a regular file not yet written further */
		if (!f->raw)
			sha1_update(&f->sha_rx, f->host_buf, n);
		f->received += n;
		f->host_moved += n;
		*progress = true;
	}
	return 0;
}

/* Host input: write the stream into the backend, collect guest buffers. */
static int vs_step_h2g(struct vs_flow *f, bool *progress)
{
	struct vs_vq *vq = &f->d->vqs[vs_rx_vq(f->port)];
	bool added = false;
	struct iovec iov;
	uint32_t len;
	ssize_t n;
	char *buf;

	while ((buf = vs_vq_get(vq, &len))) {
		if (len > f->buf_size)
			return -EOVERFLOW;
		if (!f->raw)
			sha1_update(&f->sha_rx, buf, len);
		f->received += len;
		f->free[f->free_top++] = buf;
		f->inflight--;
		*progress = true;
	}
	while (f->received < f->total && f->free_top && vq->num_free) {
		buf = f->free[--f->free_top];
		iov.iov_base = buf;
		iov.iov_len = f->buf_size;
		vs_vq_add(vq, NULL, 0, &iov, 1, buf);
		f->inflight++;
		added = true;
	}
	if (added)
		vs_vq_kick(vq);

	while (vs_host_may_move(f) && f->host_moved < f->total) {
		if (f->host_off == f->host_len) {
			f->host_len = f->total - f->host_moved < f->host_size ?
				      f->total - f->host_moved : f->host_size;
			f->host_off = 0;
			if (!f->raw) {
				vs_pattern(&f->pat_tx, f->host_buf,
					   f->host_len);
				sha1_update(&f->sha_tx, f->host_buf,
					    f->host_len);
			}
		}
		n = write(f->host_fd, f->host_buf + f->host_off,
			  vs_host_budget(f, f->host_len - f->host_off));
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return -errno;
		f->host_off += n;
		f->host_moved += n;
		f->sent = f->host_moved;
		*progress = true;
	}
	return 0;
}

static bool vs_flows_done(struct vs_flow *flows, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (!flows[i].optional && flows[i].received < flows[i].total)
			return false;
	return true;
}

static unsigned int vs_pollset(struct vs_flow *flows, unsigned int n,
			       struct pollfd *p, bool *is_call)
{
	unsigned int i, k = 0;
	struct vs_flow *f;

	for (i = 0; i < n; i++) {
		f = &flows[i];
		p[k].fd = f->d->vqs[f->g2h ? vs_tx_vq(f->port) :
					   vs_rx_vq(f->port)].call;
		p[k].events = POLLIN;
		is_call[k++] = true;
		if (!vs_host_may_move(f))
			continue;
		p[k].fd = f->host_fd;
		p[k].events = f->g2h ? POLLIN : POLLOUT;
		is_call[k++] = false;
	}
	return k;
}

long vs_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Moves the flows until they are done.  Without progress for timeout_ms:
 * 0 if stop_when_idle, else -ETIMEDOUT.  A deadline (vs_now_ms() time, 0
 * for none) ends it with -ETIMEDOUT however busy the flows are.
 */
static int vs_pump_loop(struct vs_flow *flows, unsigned int n,
			int timeout_ms, bool stop_when_idle, long deadline)
{
	struct pollfd *p = calloc(2 * n, sizeof(*p));
	bool *is_call = calloc(2 * n, sizeof(*is_call));
	long last = vs_now_ms();
	bool progress;
	unsigned int i, k;
	int ret = 0;

	if (!p || !is_call) {
		free(p);
		free(is_call);
		return -ENOMEM;
	}
	while (!vs_flows_done(flows, n)) {
		progress = false;
		for (i = 0; i < n && !ret; i++)
			ret = flows[i].g2h ? vs_step_g2h(&flows[i], &progress) :
					     vs_step_h2g(&flows[i], &progress);
		if (ret)
			break;
		if (deadline && vs_now_ms() >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		if (progress) {
			last = vs_now_ms();
			continue;
		}
		if (vs_now_ms() - last > timeout_ms) {
			ret = stop_when_idle ? 0 : -ETIMEDOUT;
			break;
		}
		k = vs_pollset(flows, n, p, is_call);
		if (poll(p, k, stop_when_idle ? timeout_ms : 100) < 0) {
			ret = -errno;
			break;
		}
		for (i = 0; i < k; i++)
			if ((p[i].revents & POLLIN) && is_call[i])
				vs_eventfd_read(p[i].fd);
	}
	free(is_call);
	free(p);
	return ret;
}

int vs_pump(struct vs_flow *flows, unsigned int n, int timeout_ms)
{
	return vs_pump_loop(flows, n, timeout_ms, false, 0);
}

int vs_pump_until_idle(struct vs_flow *flows, unsigned int n, int idle_ms)
{
	return vs_pump_loop(flows, n, idle_ms, true, 0);
}

int vs_pump_for(struct vs_flow *flows, unsigned int n, int ms)
{
	return vs_pump_loop(flows, n, VS_TIMEOUT_MS, false, vs_now_ms() + ms);
}

bool vs_flow_match(struct vs_flow *f)
{
	uint8_t a[20], b[20];
	struct sha1 tx = f->sha_tx, rx = f->sha_rx;

	sha1_final(&tx, a);
	sha1_final(&rx, b);
	return f->received == f->total && !memcmp(a, b, sizeof(a));
}

/* Kernel log records that mean a kernel bug. */
int vs_kmsg_bad_lines(void)
{
	static const char *const bad[] = {
		"Oops", "WARNING:", "BUG:", "KASAN", "UBSAN",
		"general protection", "Call Trace", "unreferenced object",
	};
	char rec[2048];
	int fd, count = 0;
	unsigned int i;
	ssize_t n;

	fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;	/* overwritten records */
		if (n <= 0)
			break;
		rec[n] = '\0';
		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			if (strstr(rec, bad[i])) {
				count++;
				break;
			}
		}
	}
	close(fd);
	return count;
}

/*
 * "The device still works": a fresh socketpair as @port's backend, the port
 * opened by the guest, @bytes each way checked with SHA-1, then detached.
 */
int vs_check_transfer(struct vs_dev *d, unsigned int port, uint64_t bytes)
{
	struct vhost_serial_port_state st;
	struct vs_flow f[2] = { 0 };
	bool host_open;
	struct vs_ctrl m;
	int sv[2], ret;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		       sv))
		return -errno;
	/* Replacing a backend tells the guest nothing new. */
	ret = vs_port_state(d, port, &st);
	host_open = !ret && (st.state & VHOST_SERIAL_STATE_HOST_OPEN);
	if (!ret)
		ret = vs_set_backend(d, port, sv[0], sv[0]);
	while (!ret && !host_open) {
		ret = vs_ctrl_recv(d, &m, VS_TIMEOUT_MS);
		host_open = m.id == port && m.event == VIRTIO_CONSOLE_PORT_OPEN &&
			    m.value == 1;
	}
	if (!ret)
		ret = vs_guest_open(d, port, true);
	if (!ret)
		ret = vs_flow_init(&f[0], d, port, true, sv[1], bytes, 7);
	if (!ret)
		ret = vs_flow_init(&f[1], d, port, false, sv[1], bytes, 8);
	if (!ret)
		ret = vs_pump(f, 2, VS_TIMEOUT_MS);
	if (!ret && (!vs_flow_match(&f[0]) || !vs_flow_match(&f[1])))
		ret = -EILSEQ;
	vs_flow_free(&f[0]);
	vs_flow_free(&f[1]);
	vs_set_backend(d, port, -1, -1);
	close(sv[0]);
	close(sv[1]);
	return ret;
}
