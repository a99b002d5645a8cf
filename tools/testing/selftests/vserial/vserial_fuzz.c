// SPDX-License-Identifier: GPL-2.0
/*
 * Fuzzers for /dev/vhost-serial.  This process plays a hostile guest
 * (random descriptor chains, indirect tables, ring index games, control
 * messages of any shape) and a hostile VMM (random ioctl sequences and
 * arguments, from the owner and from a process that is not the owner).
 * A stress test changes everything that can change while eight ports move
 * checked data both ways, and on kernels with fault injection every
 * allocation of every set-up step is made to fail in turn.
 *
 * Every run prints its seed; VSERIAL_FUZZ_SEED=<seed> replays a run.  The
 * environment sets the amount of work: VSERIAL_FUZZ_ITERS ring actions
 * (chains, control messages, index games; default 2000) in rounds of
 * VSERIAL_FUZZ_ROUND (default 50), and VSERIAL_FUZZ_IOCTLS ioctls
 * (default 2000).  A round is one device: it is fuzzed, then closed, and a
 * fresh device must move checked data before the next round starts.  The
 * kernel log must stay free of oopses and warnings throughout.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <linux/vhost.h>
#include <linux/vhost_serial.h>
#include <linux/virtio_console.h>

#include "vq.h"
#include "kselftest_harness.h"

#define FUZZ_DEFAULT_ITERS	2000
#define FUZZ_DEFAULT_ROUND	50
#define IOCTLS_PER_ROUND	100
#define FUZZ_PORTS		3
#define CHECK_BYTES		(64 * 1024)
/* Guest memory and rings of the ioctl fuzzer's own guest. */
#define AREA_SIZE		(1UL << 20)

struct rng {
	uint64_t x;
};

static uint64_t rnd(struct rng *r)
{
	r->x ^= r->x >> 12;
	r->x ^= r->x << 25;
	r->x ^= r->x >> 27;
	return r->x * 0x2545f4914f6cdd1dULL;
}

static uint32_t below(struct rng *r, uint32_t n)
{
	return n ? rnd(r) % n : 0;
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

static uint64_t fuzz_seed(void)
{
	struct timespec ts;
	uint64_t seed;

	clock_gettime(CLOCK_REALTIME, &ts);
	seed = env_u64("VSERIAL_FUZZ_SEED",
		       (uint64_t)ts.tv_sec * 1000000007ULL ^ ts.tv_nsec ^ getpid());
	return seed ? seed : 1;
}

/* A fresh device moves checked data both ways: the module survived. */
static int fresh_device_works(void)
{
	struct vs_port_info info[2];
	struct vs_dev d;
	int ret;

	ret = vs_bring_up(&d, 2, 2, info);
	if (!ret)
		ret = vs_check_transfer(&d, 1, CHECK_BYTES);
	vs_close(&d);
	return ret;
}

FIXTURE(fuzz) {
	struct rng rng;
	uint64_t seed;
	uint64_t iters;
	uint64_t round;
	uint64_t ioctls;
	int kmsg_bad;
};

FIXTURE_SETUP(fuzz)
{
	self->seed = fuzz_seed();
	self->rng.x = self->seed;
	self->iters = env_u64("VSERIAL_FUZZ_ITERS", FUZZ_DEFAULT_ITERS);
	self->round = env_u64("VSERIAL_FUZZ_ROUND", FUZZ_DEFAULT_ROUND) ?: 1;
	self->ioctls = env_u64("VSERIAL_FUZZ_IOCTLS", FUZZ_DEFAULT_ITERS);
	ksft_print_msg("%s: seed %#" PRIx64 " (replay: VSERIAL_FUZZ_SEED=%#"
		       PRIx64 ")\n", _metadata->name, self->seed, self->seed);
	self->kmsg_bad = vs_kmsg_bad_lines();
}

FIXTURE_TEARDOWN(fuzz)
{
	EXPECT_EQ(self->kmsg_bad, vs_kmsg_bad_lines());
}

/* ---- the hostile guest ---------------------------------------------------- */

/* Guest-physical addresses, weighted towards the edges of guest memory. */
static uint64_t guest_addr(struct rng *r, struct vs_dev *d)
{
	uint64_t start = (uintptr_t)d->mem, end = start + d->mem_size;

	switch (below(r, 10)) {
	case 0:
		return 0;
	case 1:
		return end - 1 - below(r, 64);
	case 2:
		return end + below(r, 4096);
	case 3:
		return start - 1 - below(r, 4096);
	case 4:
		return rnd(r);
	case 5:
		return 0xffff888000000000ULL + below(r, 1U << 20);
	default:
		return start + below(r, d->mem_size);
	}
}

static uint32_t desc_len(struct rng *r)
{
	switch (below(r, 8)) {
	case 0:
		return 0;
	case 1:
		return 1;
	case 2:
		return 4096;
	case 3:
		return 65536 + below(r, 65536);
	case 4:
		return 0xffffffffu - below(r, 16);
	case 5:
		return (uint32_t)rnd(r);
	default:
		return below(r, 8192);
	}
}

static uint16_t desc_flags(struct rng *r)
{
	if (!below(r, 8))
		return (uint16_t)rnd(r);
	return below(r, 8);	/* NEXT, WRITE, INDIRECT in any mix */
}

/* An indirect table in guest memory: random entries, nested tables too. */
static void indirect_table(struct rng *r, struct vs_dev *d,
			   struct vring_desc *desc)
{
	unsigned int n = 1 + below(r, 32), i;
	struct vring_desc *t = vs_alloc(d, n * sizeof(*t), 16);

	if (!t) {
		desc->addr = guest_addr(r, d);
		return;
	}
	for (i = 0; i < n; i++) {
		t[i].addr = guest_addr(r, d);
		t[i].len = desc_len(r);
		t[i].flags = desc_flags(r);
		t[i].next = below(r, 4) ? below(r, n + 1) : (uint16_t)rnd(r);
	}
	desc->addr = (uintptr_t)t;
	switch (below(r, 4)) {
	case 0:
		desc->len = desc_len(r);
		break;
	case 1:
		desc->len = n * sizeof(*t) + 1 + below(r, 15);
		break;
	default:
		desc->len = n * sizeof(*t);
		break;
	}
}

/* A chain of random descriptors anywhere in the table, then published. */
static void random_chain(struct rng *r, struct vs_dev *d, struct vs_vq *vq)
{
	unsigned int n = 1 + below(r, 6), i;
	uint16_t head = below(r, vq->num), idx = head;
	struct vring_desc *desc;

	for (i = 0; i < n; i++) {
		desc = &vq->desc[idx];
		desc->flags = desc_flags(r);
		desc->len = desc_len(r);
		desc->addr = guest_addr(r, d);
		desc->next = below(r, 16) ? below(r, vq->num) : (uint16_t)rnd(r);
		if (i + 1 < n && below(r, 4))
			desc->flags |= VRING_DESC_F_NEXT;
		if (desc->flags & VRING_DESC_F_INDIRECT)
			indirect_table(r, d, desc);
		idx = desc->next % vq->num;
	}
	if (!below(r, 16))
		head = (uint16_t)rnd(r);
	vs_vq_publish(vq, head);
}

/* A control message of any shape, in a well-formed buffer. */
static void random_ctrl_msg(struct rng *r, struct vs_dev *d)
{
	struct vs_vq *vq = &d->vqs[VS_CTRL_TX];
	static const uint32_t ids[] = { 0, 1, 2, FUZZ_PORTS, 0xffffffffu };
	struct virtio_console_control hdr;
	size_t len = sizeof(hdr), i;
	uint16_t head = below(r, vq->num);
	char *buf;

	hdr.id = below(r, 4) ? ids[below(r, 5)] : (uint32_t)rnd(r);
	hdr.event = below(r, 4) ? below(r, 10) : (uint16_t)rnd(r);
	hdr.value = below(r, 4) ? below(r, 2) : (uint16_t)rnd(r);
	if (!below(r, 4))
		len = below(r, sizeof(hdr));		/* truncated */
	else if (!below(r, 4))
		len += below(r, 512);			/* a "name" */
	buf = vs_alloc(d, len + 1, 8);
	if (!buf)
		return;
	memcpy(buf, &hdr, len < sizeof(hdr) ? len : sizeof(hdr));
	for (i = sizeof(hdr); i < len; i++)
		buf[i] = below(r, 8) ? 'a' + below(r, 26) : (char)rnd(r);
	vq->desc[head] = (struct vring_desc){ (uintptr_t)buf, len, 0, 0 };
	vs_vq_publish(vq, head);
}

/* avail->idx jumps (past the ring size, backwards); flags change. */
static void avail_games(struct rng *r, struct vs_vq *vq)
{
	switch (below(r, 3)) {
	case 0:
		vq->avail_idx += below(r, 3 * vq->num);
		break;
	case 1:
		vq->avail_idx -= below(r, 4);
		break;
	default:
		vq->avail->flags = (uint16_t)rnd(r);
		vq->used->idx = (uint16_t)rnd(r);	/* the device's: ignored */
		return;
	}
	__atomic_store_n(&vq->avail->idx, vq->avail_idx, __ATOMIC_RELEASE);
}

static void kick(struct vs_vq *vq)
{
	uint64_t one = 1;

	if (write(vq->kick, &one, sizeof(one)) != sizeof(one))
		return;
}

/*
 * One round: a device whose port 1 has a backend with data waiting both
 * ways, then @n random actions on its queues.  Closing the device flushes
 * whatever the kicks queued, so every chain has been looked at when
 * vs_close() returns.
 */
static int ring_round(struct rng *r, unsigned int n)
{
	struct vs_port_info info[FUZZ_PORTS];
	static char junk[16384];
	struct vs_dev d;
	struct vs_vq *vq;
	unsigned int i;
	int sv[2], ret;

	ret = vs_bring_up(&d, FUZZ_PORTS, 2, info);
	if (ret)
		goto out;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		       sv)) {
		ret = -errno;
		goto out;
	}
	ret = vs_set_backend(&d, 1, sv[0], sv[0]);
	if (!ret)
		ret = vs_guest_open(&d, 1, true);
	if (!ret && write(sv[1], junk, sizeof(junk)) < 0)
		ret = -errno;
	if (ret)
		goto out_close;
	for (i = 0; i < n; i++) {
		switch (below(r, 8)) {
		case 0:
		case 1:
			vq = &d.vqs[vs_tx_vq(1)];
			random_chain(r, &d, vq);
			break;
		case 2:
		case 3:
			vq = &d.vqs[vs_rx_vq(1)];
			random_chain(r, &d, vq);
			break;
		case 4:
		case 5:
			vq = &d.vqs[VS_CTRL_TX];
			random_ctrl_msg(r, &d);
			break;
		case 6:
			vq = &d.vqs[below(r, d.nvqs)];
			random_chain(r, &d, vq);
			break;
		default:
			vq = &d.vqs[below(r, d.nvqs)];
			avail_games(r, vq);
			break;
		}
		kick(vq);
	}
out_close:
	close(sv[0]);
	close(sv[1]);
out:
	vs_close(&d);
	return ret;
}

TEST_F_TIMEOUT(fuzz, rings_and_control_messages, 3600)
{
	uint64_t done = 0, rounds = 0;
	unsigned int n;

	REQUIRE_DEVICE();
	while (done < self->iters) {
		n = self->iters - done < self->round ?
		    self->iters - done : self->round;
		ASSERT_EQ(0, ring_round(&self->rng, n))
			TH_LOG("round %" PRIu64 " could not set up", rounds);
		done += n;
		rounds++;
		ASSERT_EQ(0, fresh_device_works())
			TH_LOG("after round %" PRIu64 " (seed %#" PRIx64 ")",
			       rounds, self->seed);
	}
	ksft_print_msg("ring fuzz: %" PRIu64 " actions in %" PRIu64
		       " rounds, a checked transfer after each\n", done, rounds);
}

/* ---- the hostile VMM ------------------------------------------------------ */

/*
 * What random ioctl arguments may point at.  The fuzzer's guest memory and
 * a PROT_NONE area are the only user addresses it hands out: the device
 * writes used rings and dirty logs there, and must not be pointed at the
 * fuzzer's own heap or stack.
 */
struct ioctl_fuzz {
	struct rng *r;
	struct vs_dev *d;	/* fd only */
	char *area;		/* guest memory, rings, logs */
	char *none;		/* mapped, inaccessible */
	int fds[12];
	unsigned int nfds;
};

static uint64_t user_addr(struct ioctl_fuzz *z)
{
	struct rng *r = z->r;

	switch (below(r, 6)) {
	case 0:
		return 0;
	case 1:
		return (uintptr_t)z->none + below(r, 4096);
	case 2:
		return 0xffff888000000000ULL;
	case 3:
		return (uintptr_t)z->area + AREA_SIZE - below(r, 64);
	default:
		return (uintptr_t)z->area + (below(r, AREA_SIZE) & ~15U);
	}
}

static int32_t any_fd(struct ioctl_fuzz *z)
{
	switch (below(z->r, 8)) {
	case 0:
		return -1;
	case 1:
		return below(z->r, 2) ? 1000 : (int32_t)rnd(z->r);
	default:
		return z->fds[below(z->r, z->nfds)];
	}
}

static uint32_t small(struct rng *r)
{
	static const uint32_t v[] = { 0, 1, 2, 3, 4, 7, 8, 64, 256, 1024,
				      4096, 0x7fffffff, 0xffffffff };

	return below(r, 4) ? v[below(r, ARRAY_SIZE(v))] :
			     (uint32_t)rnd(r);
}

static void fill_mem_table(struct ioctl_fuzz *z, struct vhost_memory *m,
			   size_t room)
{
	unsigned int max = (room - sizeof(*m)) / sizeof(m->regions[0]), i;
	struct rng *r = z->r;

	m->nregions = below(r, 8) ? below(r, 4) : small(r);
	m->padding = below(r, 8) ? 0 : small(r);
	for (i = 0; i < max && i < m->nregions; i++) {
		m->regions[i].guest_phys_addr = below(r, 2) ?
			(uintptr_t)z->area : rnd(r) & ~0xfffULL;
		m->regions[i].memory_size = below(r, 4) ? AREA_SIZE : rnd(r);
		m->regions[i].userspace_addr = user_addr(z);
		m->regions[i].flags_padding = 0;
	}
}

/* Fills the argument of @req; returns what to pass (maybe a bad pointer). */
static void *ioctl_arg(struct ioctl_fuzz *z, unsigned long req, void *buf,
		       size_t room)
{
	struct rng *r = z->r;
	uint32_t *w = buf;
	unsigned int i;

	switch (below(r, 16)) {
	case 0:
		return NULL;
	case 1:
		return (void *)0xffff888000000000ULL;
	case 2:
		return z->none;
	}
	for (i = 0; i < room / 4; i++)
		w[i] = below(r, 2) ? small(r) : (uint32_t)any_fd(z);

	switch (req) {
	case VHOST_SET_MEM_TABLE:
		fill_mem_table(z, buf, room);
		break;
	case VHOST_SET_VRING_ADDR: {
		struct vhost_vring_addr *a = buf;

		a->index = below(r, z->d->nvqs + 2);
		a->flags = below(r, 2);
		a->desc_user_addr = user_addr(z);
		a->avail_user_addr = user_addr(z);
		a->used_user_addr = user_addr(z);
		a->log_guest_addr = user_addr(z);
		break;
	}
	case VHOST_SET_LOG_BASE:
		*(uint64_t *)buf = user_addr(z);
		break;
	case VHOST_SET_FEATURES:
		*(uint64_t *)buf = below(r, 4) ? vs_default_features() |
			((uint64_t)below(r, 2) << VIRTIO_RING_F_EVENT_IDX) |
			((uint64_t)below(r, 2) << VHOST_F_LOG_ALL) : rnd(r);
		break;
	case VHOST_SET_VRING_NUM:
	case VHOST_SET_VRING_BASE:
	case VHOST_GET_VRING_BASE:
	case VHOST_SET_VRING_KICK:
	case VHOST_SET_VRING_CALL:
	case VHOST_SET_VRING_ERR:
		w[0] = below(r, 4) ? below(r, z->d->nvqs + 2) : small(r);
		if (req == VHOST_SET_VRING_NUM)
			w[1] = below(r, 2) ? 1U << below(r, 11) : small(r);
		break;
	case VHOST_SERIAL_ADD_PORT: {
		struct vhost_serial_port_config *c = buf;

		c->id = below(r, 4) ? below(r, FUZZ_PORTS + 1) : small(r);
		c->flags = below(r, 2);
		for (i = 0; i < sizeof(c->name); i++)
			c->name[i] = below(r, 16) ? 'a' + below(r, 26) : 0;
		if (below(r, 4))
			c->name[below(r, sizeof(c->name))] = 0;
		break;
	}
	case VHOST_SERIAL_SET_BACKEND:
	case VHOST_SERIAL_SET_PORT_EVENT:
	case VHOST_SERIAL_GET_PORT_STATE:
	case VHOST_SERIAL_RESIZE:
	case VHOST_SERIAL_DEL_PORT:
		w[0] = below(r, 4) ? below(r, FUZZ_PORTS + 1) : small(r);
		if (req == VHOST_SERIAL_SET_BACKEND && below(r, 2))
			w[3] = below(r, 2);	/* flags: zero or ZEROCOPY */
		break;
	case VHOST_SERIAL_SET_NUM_PORTS:
		w[0] = below(r, 4) ? 1 + below(r, FUZZ_PORTS) : small(r);
		break;
	}
	return buf;
}

static const unsigned long fuzz_ioctls[] = {
	VHOST_GET_FEATURES, VHOST_SET_FEATURES, VHOST_SET_OWNER,
	VHOST_RESET_OWNER, VHOST_SET_MEM_TABLE, VHOST_SET_LOG_BASE,
	VHOST_SET_LOG_FD, VHOST_SET_VRING_NUM, VHOST_SET_VRING_ADDR,
	VHOST_SET_VRING_BASE, VHOST_GET_VRING_BASE, VHOST_SET_VRING_KICK,
	VHOST_SET_VRING_CALL, VHOST_SET_VRING_ERR,
	VHOST_SET_VRING_BUSYLOOP_TIMEOUT, VHOST_GET_BACKEND_FEATURES,
	VHOST_SET_BACKEND_FEATURES,
	VHOST_SERIAL_SET_NUM_PORTS, VHOST_SERIAL_ADD_PORT,
	VHOST_SERIAL_DEL_PORT, VHOST_SERIAL_SET_BACKEND,
	VHOST_SERIAL_SET_PORT_EVENT, VHOST_SERIAL_GET_PORT_STATE,
	VHOST_SERIAL_RESIZE, VHOST_SERIAL_SET_RUNNING,
	/* Per-virtqueue workers (6.5 and later), by number. */
	_IOR(VHOST_VIRTIO, 0x8, int), _IOW(VHOST_VIRTIO, 0x9, int),
	_IOW(VHOST_VIRTIO, 0x15, struct vhost_vring_state),
	_IOWR(VHOST_VIRTIO, 0x16, struct vhost_vring_state),
};

static unsigned long pick_ioctl(struct rng *r)
{
	unsigned int n = ARRAY_SIZE(fuzz_ioctls);

	if (!below(r, 32))	/* unknown numbers in the device's range */
		return _IOC(below(r, 4), VHOST_VIRTIO, below(r, 256),
			    below(r, 512));
	return fuzz_ioctls[below(r, n)];
}

/* Queue work: a random eventfd of the pool is signalled. */
static void poke(struct ioctl_fuzz *z)
{
	uint64_t one = 1;
	int fd = z->fds[below(z->r, z->nfds)];

	if (write(fd, &one, sizeof(one)) < 0)
		return;	/* not an eventfd, or a full pipe: fine */
}

/*
 * A process that shares the file but not the owner's memory: nothing it
 * sends may act on the device.  Exits with the number of ioctls that did
 * something other than fail with EPERM (or EBADFD before the device is
 * sized; GET_FEATURES and SET_NUM_PORTS are the documented exceptions).
 */
static void non_owner(struct ioctl_fuzz *z, unsigned int n)
{
	uint64_t buf[64];
	unsigned long req;
	unsigned int bad = 0;
	int ret;

	while (n--) {
		req = pick_ioctl(z->r);
		if (req == VHOST_SET_OWNER || req == VHOST_GET_FEATURES ||
		    req == VHOST_SERIAL_SET_NUM_PORTS)
			continue;
		ret = vs_ioctl(z->d, req, ioctl_arg(z, req, buf, sizeof(buf)));
		if (ret != -EPERM && ret != -EBADFD) {
			fprintf(stderr, "# non-owner ioctl %#lx: %d\n", req, ret);
			bad++;
		}
	}
	_exit(bad > 255 ? 255 : bad);
}

static int wait_child(pid_t pid)
{
	int status;

	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -ECHILD;
	if (WIFSIGNALED(status))
		return 1000 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/*
 * One round, in a child process: a device is opened and sent @n random
 * ioctls; a non-owner joins halfway.  Returns the child's verdict.
 */
static int ioctl_round(struct rng *r, unsigned int n)
{
	struct ioctl_fuzz z = { .r = r };
	struct vs_dev d = { .fd = -1 };
	uint64_t buf[64];
	unsigned long req;
	unsigned int i;
	int sv[2], p[2], bad = 0;
	pid_t pid;

	pid = fork();
	if (pid)
		return wait_child(pid);

	alarm(600);
	z.d = &d;
	d.nvqs = 2 * FUZZ_PORTS + 2;
	z.area = mmap(NULL, AREA_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	z.none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	d.fd = open("/dev/vhost-serial", O_RDWR | O_CLOEXEC);
	if (z.area == MAP_FAILED || z.none == MAP_FAILED || d.fd < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) ||
	    pipe2(p, O_NONBLOCK))
		_exit(200);
	for (i = 0; i < 8; i++)
		z.fds[z.nfds++] = eventfd(0, EFD_NONBLOCK);
	z.fds[z.nfds++] = sv[0];
	z.fds[z.nfds++] = p[0];
	z.fds[z.nfds++] = p[1];
	z.fds[z.nfds++] = d.fd;

	for (i = 0; i < n; i++) {
		if (i == n / 2) {
			pid = fork();
			if (!pid)
				non_owner(&z, n / 4);
			if (wait_child(pid))
				bad++;
		}
		if (!below(r, 8)) {
			poke(&z);
			continue;
		}
		req = pick_ioctl(r);
		/* Mostly a sized device: the rest needs one. */
		if (i == 0 && below(r, 8)) {
			uint32_t nr = 1 + below(r, FUZZ_PORTS);

			vs_ioctl(&d, VHOST_SERIAL_SET_NUM_PORTS, &nr);
			vs_ioctl(&d, VHOST_SET_OWNER, NULL);
		}
		vs_ioctl(&d, req, ioctl_arg(&z, req, buf, sizeof(buf)));
	}
	close(d.fd);
	_exit(bad);
}

TEST_F_TIMEOUT(fuzz, ioctls_from_owner_and_others, 3600)
{
	uint64_t done = 0, rounds = 0;
	unsigned int n;

	REQUIRE_DEVICE();
	while (done < self->ioctls) {
		n = self->ioctls - done < IOCTLS_PER_ROUND ?
		    self->ioctls - done : IOCTLS_PER_ROUND;
		ASSERT_EQ(0, ioctl_round(&self->rng, n))
			TH_LOG("round %" PRIu64 " (seed %#" PRIx64 ")", rounds,
			       self->seed);
		/* The child's generator advanced; move ours on too. */
		self->rng.x ^= rnd(&self->rng) + rounds;
		done += n;
		rounds++;
		ASSERT_EQ(0, fresh_device_works())
			TH_LOG("after round %" PRIu64, rounds);
	}
	ksft_print_msg("ioctl fuzz: %" PRIu64 " ioctls in %" PRIu64
		       " rounds, a checked transfer after each\n", done, rounds);
}

/* ---- everything changes while data moves ------------------------------------ */

#define STRESS_DATA_PORTS	8
#define STRESS_PORTS		16
#define STRESS_BYTES		(2ULL << 20)

struct stress {
	struct vs_dev *d;
	struct rng rng;
	int in_fd[STRESS_DATA_PORTS];	/* the data ports' backends */
	int out_fd[STRESS_DATA_PORTS];
	int event[STRESS_PORTS];
	bool stop;			/* atomic */
	unsigned long ops;
	unsigned long succeeded;
	unsigned long unexpected;
};

/* A guest that answers hot-plug: PORT_READY for every PORT_ADD. */
static void stress_guest_ctrl(struct stress *s)
{
	struct vs_ctrl m;

	while (!vs_ctrl_recv(s->d, &m, 0)) {
		if (m.event == VIRTIO_CONSOLE_PORT_ADD)
			vs_ctrl_send(s->d, m.id, VIRTIO_CONSOLE_PORT_READY, 1);
	}
}

static void stress_check(struct stress *s, const char *what, int ret,
			 int ok1, int ok2)
{
	if (!ret)
		s->succeeded++;
	/* ENOSPC: the guest has not taken the control messages yet. */
	if (ret && ret != ok1 && ret != ok2 && ret != -ENOSPC) {
		fprintf(stderr, "# stress: %s: %d\n", what, ret);
		s->unexpected++;
	}
}

static void stress_step(struct stress *s)
{
	struct rng *r = &s->rng;
	unsigned int p = below(r, STRESS_DATA_PORTS);
	unsigned int q = STRESS_DATA_PORTS + below(r, STRESS_PORTS -
						      STRESS_DATA_PORTS);
	struct vhost_serial_port_state st;
	char name[16];
	int efd;

	switch (below(r, 6)) {
	case 0:
		snprintf(name, sizeof(name), "hot%u", q);
		stress_check(s, "add", vs_add_port(s->d, q, name, below(r, 2)),
			     -EEXIST, 0);
		break;
	case 1:
		stress_check(s, "del", vs_del_port(s->d, q), -ENOENT, 0);
		break;
	case 2:
		stress_check(s, "detach", vs_set_backend(s->d, p, -1, -1), 0, 0);
		stress_check(s, "attach", vs_set_backend(s->d, p, s->in_fd[p],
							 s->out_fd[p]), 0, 0);
		break;
	case 3:
		p = below(r, STRESS_PORTS);
		efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		stress_check(s, "event", vs_set_event(s->d, p, efd), -ENOENT, 0);
		if (s->event[p] >= 0)
			close(s->event[p]);
		s->event[p] = efd;
		break;
	case 4:
		stress_check(s, "state", vs_port_state(s->d, q, &st), 0, 0);
		break;
	default:
		/* EINVAL: the port is not a console. */
		stress_check(s, "resize", vs_resize(s->d, q, below(r, 300),
						    below(r, 100)), -ENOENT,
			     -EINVAL);
		break;
	}
	s->ops++;
}

static void *stress_thread(void *arg)
{
	struct stress *s = arg;

	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		stress_guest_ctrl(s);
		stress_step(s);
	}
	return NULL;
}

TEST_F_TIMEOUT(fuzz, hotplug_backends_events_while_eight_ports_move_data, 600)
{
	struct vs_port_info info[STRESS_PORTS];
	struct vs_flow f[2 * STRESS_DATA_PORTS];
	struct stress s = { .rng = self->rng };
	int sv[STRESS_DATA_PORTS][2];
	struct vs_dev d;
	pthread_t thread;
	unsigned int i;

	REQUIRE_DEVICE();
	s.d = &d;
	for (i = 0; i < STRESS_PORTS; i++)
		s.event[i] = -1;
	ASSERT_EQ(0, vs_bring_up(&d, STRESS_PORTS, STRESS_DATA_PORTS, info));
	for (i = 0; i < STRESS_DATA_PORTS; i++) {
		ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
					SOCK_CLOEXEC, 0, sv[i]));
		s.in_fd[i] = s.out_fd[i] = sv[i][0];
		ASSERT_EQ(0, vs_set_backend(&d, i, sv[i][0], sv[i][0]));
		ASSERT_EQ(0, vs_guest_open(&d, i, true));
		ASSERT_EQ(0, vs_flow_init(&f[2 * i], &d, i, true, sv[i][1],
					  STRESS_BYTES, 100 + i));
		ASSERT_EQ(0, vs_flow_init(&f[2 * i + 1], &d, i, false, sv[i][1],
					  STRESS_BYTES, 200 + i));
	}
	ASSERT_EQ(0, pthread_create(&thread, NULL, stress_thread, &s));
	EXPECT_EQ(0, vs_pump(f, 2 * STRESS_DATA_PORTS, 4 * VS_TIMEOUT_MS));
	__atomic_store_n(&s.stop, true, __ATOMIC_RELEASE);
	ASSERT_EQ(0, pthread_join(thread, NULL));
	for (i = 0; i < 2 * STRESS_DATA_PORTS; i++) {
		EXPECT_TRUE(vs_flow_match(&f[i])) TH_LOG("flow %u", i);
		vs_flow_free(&f[i]);
	}
	EXPECT_EQ(0, s.unexpected);
	/* Changes that were refused all along would have tested nothing. */
	EXPECT_LT(s.ops, 2 * s.succeeded);
	ksft_print_msg("stress: %lu changes while %u ports moved %llu MiB each way\n",
		       s.ops, STRESS_DATA_PORTS, STRESS_BYTES >> 20);
	/* Closed with ports, backends and events in any state. */
	vs_close(&d);
	for (i = 0; i < STRESS_DATA_PORTS; i++) {
		close(sv[i][0]);
		close(sv[i][1]);
	}
	for (i = 0; i < STRESS_PORTS; i++)
		if (s.event[i] >= 0)
			close(s.event[i]);
	ASSERT_EQ(0, fresh_device_works());
}

/* ---- closing under load --------------------------------------------------- */

#define CLOSE_ROUNDS		40
#define CLOSE_PORTS		4
#define CLOSE_BYTES		(16ULL << 20)

/*
 * The device is closed while its worker moves data on every port, both
 * ways: guest buffers posted, sockets with data to read and room to
 * write, and port 0's output going by reference into a pipe (pages
 * pinned in it).  Each round pumps for a random few milliseconds, then
 * closes at once.  Closing must stop the worker and give back every
 * backend and pinned page; the runner's kernel-log check (and kmemleak on
 * the debug kernel) sees what it did not.
 */
TEST_F_TIMEOUT(fuzz, close_while_ports_move_data, 600)
{
	struct vs_port_info info[CLOSE_PORTS];
	struct vs_flow f[2 * CLOSE_PORTS];
	int sv[CLOSE_PORTS][2], zc[2];
	unsigned int round, i, timeouts = 0;
	struct vs_dev d;
	int ret;

	REQUIRE_DEVICE();
	for (round = 0; round < CLOSE_ROUNDS; round++) {
		ASSERT_EQ(0, vs_bring_up(&d, CLOSE_PORTS, CLOSE_PORTS, info));
		ASSERT_EQ(0, pipe2(zc, O_NONBLOCK | O_CLOEXEC));
		for (i = 0; i < CLOSE_PORTS; i++) {
			ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
						SOCK_CLOEXEC, 0, sv[i]));
			if (i == 0) {
				ASSERT_EQ(0, vs_set_backend_flags(&d, i, sv[i][0], zc[1],
								  VHOST_SERIAL_BACKEND_F_ZEROCOPY));
			} else {
				ASSERT_EQ(0, vs_set_backend(&d, i, sv[i][0], sv[i][0]));
			}
			ASSERT_EQ(0, vs_guest_open(&d, i, true));
			ASSERT_EQ(0, vs_flow_init(&f[2 * i], &d, i, true,
						  i == 0 ? zc[0] : sv[i][1],
						  CLOSE_BYTES, 300 + i));
			ASSERT_EQ(0, vs_flow_init(&f[2 * i + 1], &d, i, false,
						  sv[i][1], CLOSE_BYTES, 400 + i));
		}
		ret = vs_pump_for(f, 2 * CLOSE_PORTS, 5 + below(&self->rng, 30));
		EXPECT_TRUE(ret == 0 || ret == -ETIMEDOUT) TH_LOG("pump: %d", ret);
		timeouts += ret == -ETIMEDOUT;
		/* The worker is still busy with what the pump left posted. */
		vs_close(&d);
		for (i = 0; i < 2 * CLOSE_PORTS; i++)
			vs_flow_free(&f[i]);
		for (i = 0; i < CLOSE_PORTS; i++) {
			close(sv[i][0]);
			close(sv[i][1]);
		}
		close(zc[0]);
		close(zc[1]);
	}
	/* Rounds that finished before the close tested nothing. */
	EXPECT_LT(CLOSE_ROUNDS / 2, timeouts);
	ksft_print_msg("close: %u of %u closes while data was moving\n",
		       timeouts, CLOSE_ROUNDS);
	ASSERT_EQ(0, fresh_device_works());
}

/* ---- allocation failures -------------------------------------------------- */

static int write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/*
 * "Fail the Nth fault-injection point of this thread" (fail-nth), for slab
 * allocations (sleeping ones included) and copies from and to user memory.
 * Page allocations are left alone: their failures print warnings with
 * stack traces, which the kernel-log check would count.
 */
static bool fault_injection_ready(void)
{
	static const char *const settings[][2] = {
		{ "/sys/kernel/debug/failslab/ignore-gfp-wait", "N" },
		{ "/sys/kernel/debug/failslab/verbose", "0" },
		{ "/sys/kernel/debug/fail_usercopy/verbose", "0" },
		{ "/sys/kernel/debug/fail_page_alloc/min-order", "100" },
		{ "/sys/kernel/debug/fail_page_alloc/verbose", "0" },
	};
	unsigned int i;

	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	if (access("/proc/thread-self/fail-nth", W_OK) ||
	    access(settings[0][0], W_OK))
		return false;
	for (i = 0; i < ARRAY_SIZE(settings); i++)
		write_str(settings[i][0], settings[i][1]);
	return true;
}

static void fail_nth(unsigned int n)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%u", n);
	write_str("/proc/thread-self/fail-nth", buf);
}

/* Whether the armed fault fired; disarms it either way. */
static bool fault_fired(void)
{
	char buf[16] = "";
	int fd = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	bool fired;

	if (fd < 0)
		return false;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = '\0';
	fired = buf[0] == '0';
	if (write(fd, "0", 1) < 0)
		fired = false;
	close(fd);
	return fired;
}

/* The set-up of a device, one step at a time; what the steps share. */
struct fault_dev {
	struct vs_dev d;
	struct vs_port_info info[2];
	int sv[2];
	int zc[2];
	int efd;
};

enum fault_step {
	FS_NUM_PORTS, FS_OWNER, FS_SETUP, FS_START, FS_ADD_PORT,
	FS_HANDSHAKE, FS_BACKEND, FS_ZC_BACKEND, FS_EVENT, FS_RESET_OWNER,
	FS_STEPS
};

static const char *const fault_step_name[FS_STEPS] = {
	"SET_NUM_PORTS", "SET_OWNER", "SET_FEATURES/MEM_TABLE/VRING_*",
	"SET_RUNNING", "ADD_PORT", "DEVICE_READY handshake", "SET_BACKEND",
	"SET_BACKEND zero-copy", "SET_PORT_EVENT", "RESET_OWNER",
};

static int fault_do(struct fault_dev *f, enum fault_step step)
{
	struct vs_dev *d = &f->d;
	uint32_t nr = 2;
	int ret;

	switch (step) {
	case FS_NUM_PORTS:
		return vs_ioctl(d, VHOST_SERIAL_SET_NUM_PORTS, &nr);
	case FS_OWNER:
		return vs_ioctl(d, VHOST_SET_OWNER, NULL);
	case FS_SETUP:
		return vs_setup_guest(d, vs_default_features(), VS_RING_NUM);
	case FS_START:
		return vs_start(d);
	case FS_ADD_PORT:
		ret = vs_add_port(d, 0, "plain", false);
		if (!ret || ret == -EEXIST)	/* a retry */
			ret = vs_add_port(d, 1, "faulty", true);
		return ret;
	case FS_HANDSHAKE:
		return vs_handshake(d, f->info, 2, 2);
	case FS_BACKEND:
		return vs_set_backend(d, 0, f->sv[0], f->sv[0]);
	case FS_ZC_BACKEND:
		return vs_set_backend_flags(d, 1, -1, f->zc[1],
					    VHOST_SERIAL_BACKEND_F_ZEROCOPY);
	case FS_EVENT:
		return vs_set_event(d, 0, f->efd);
	case FS_RESET_OWNER:
		return vs_ioctl(d, VHOST_RESET_OWNER, NULL);
	default:
		return -EINVAL;
	}
}

static void fault_dev_close(struct fault_dev *f)
{
	vs_close(&f->d);
	close(f->sv[0]);
	close(f->sv[1]);
	close(f->zc[0]);
	close(f->zc[1]);
	close(f->efd);
}

/*
 * Open a device and run the steps before @step without faults, then @step
 * with its @n-th fault point failing.  Returns 1 when the fault fired, 0
 * when @step has fewer fault points, -errno when the device was left
 * unusable: the failed step, retried, must succeed, the remaining steps
 * too, and port 0 must move checked data.
 */
static int fault_round(enum fault_step step, unsigned int n,
		       struct __test_metadata *_metadata)
{
	struct fault_dev f = { .efd = -1 };
	bool fired = false;
	int ret = 0, i;

	memset(&f.d, 0, sizeof(f.d));
	f.d.fd = open("/dev/vhost-serial", O_RDWR | O_CLOEXEC);
	f.d.err = -1;
	f.d.nr_ports = 2;
	f.d.nvqs = 6;
	f.efd = eventfd(0, EFD_CLOEXEC);
	if (f.d.fd < 0 || f.efd < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
		       f.sv) || pipe2(f.zc, O_NONBLOCK | O_CLOEXEC))
		return -EIO;
	for (i = 0; i < FS_STEPS && !ret; i++) {
		if (i != (int)step) {
			ret = fault_do(&f, i);
		} else {
			fail_nth(n);
			ret = fault_do(&f, i);
			fired = fault_fired();
			if (fired && ret)
				ret = fault_do(&f, i);	/* the retry must work */
		}
		if (ret)
			TH_LOG("%s (fault %u in %s): %d", fault_step_name[i], n,
			       fault_step_name[step], ret);
		/* The next owner is this process again, with a new guest. */
		if (!ret && i == FS_RESET_OWNER)
			ret = vs_new_guest(&f.d, vs_default_features());
		if (!ret && i == FS_RESET_OWNER)
			ret = fault_do(&f, FS_HANDSHAKE);
	}
	if (!ret)
		ret = vs_check_transfer(&f.d, 0, CHECK_BYTES);
	fault_dev_close(&f);
	if (ret)
		return ret;
	return fired;
}

TEST_F_TIMEOUT(fuzz, allocation_failures_in_every_set_up_step, 1200)
{
	unsigned int step, n, fired = 0;
	int ret;

	REQUIRE_DEVICE();
	if (!fault_injection_ready())
		SKIP(return, "kernel without fault injection (fail-nth, failslab)");
	for (step = 0; step < FS_STEPS; step++) {
		/* Only eventfd writes of the test's own: nothing to inject. */
		if (step == FS_HANDSHAKE)
			continue;
		for (n = 1; n < 1000; n++) {
			ret = fault_round(step, n, _metadata);
			ASSERT_LE(0, ret) TH_LOG("%s, fault %u",
						 fault_step_name[step], n);
			if (!ret)
				break;
			fired++;
		}
	}
	ksft_print_msg("fault injection: %u failed allocations or copies, each then recovered\n",
		       fired);
}

/* The device's worker, when it is a thread of this process (6.4 and later). */
static pid_t worker_tid(void)
{
	char path[300], comm[32], want[32];
	struct dirent *e;
	pid_t tid = 0;
	DIR *dir;
	int fd, n;

	snprintf(want, sizeof(want), "vhost-%d\n", getpid());
	dir = opendir("/proc/self/task");
	while (dir && !tid && (e = readdir(dir))) {
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, comm, sizeof(comm) - 1);
		close(fd);
		comm[n > 0 ? n : 0] = '\0';
		if (!strcmp(comm, want))
			tid = atoi(e->d_name);
	}
	if (dir)
		closedir(dir);
	return tid;
}

static void worker_faults(pid_t tid, bool on)
{
	char path[64];

	write_str("/sys/kernel/debug/failslab/task-filter", "Y");
	write_str("/sys/kernel/debug/failslab/interval", "1");
	write_str("/sys/kernel/debug/failslab/times", "-1");
	write_str("/sys/kernel/debug/failslab/probability", on ? "20" : "0");
	snprintf(path, sizeof(path), "/proc/self/task/%d/make-it-fail", tid);
	write_str(path, on ? "1" : "0");
}

/*
 * One in five slab allocations of the worker fails while ports move data,
 * zero-copy output included: no byte may be lost or changed, and the
 * device goes on working once the faults stop.
 */
TEST_F_TIMEOUT(fuzz, allocation_failures_in_the_worker, 600)
{
	struct vs_port_info info[2];
	struct vs_flow f[2];
	struct vs_dev d;
	int zc[2], sv[2];
	pid_t tid;

	REQUIRE_DEVICE();
	if (!fault_injection_ready())
		SKIP(return, "kernel without fault injection (failslab)");
	ASSERT_EQ(0, vs_bring_up(&d, 2, 2, info));
	tid = worker_tid();
	if (!tid) {
		vs_close(&d);
		SKIP(return, "the vhost worker is not a thread of this process");
	}
	ASSERT_EQ(0, pipe2(zc, O_NONBLOCK | O_CLOEXEC));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
				SOCK_CLOEXEC, 0, sv));
	ASSERT_EQ(0, vs_set_backend_flags(&d, 1, -1, zc[1],
					  VHOST_SERIAL_BACKEND_F_ZEROCOPY));
	ASSERT_EQ(0, vs_set_backend(&d, 0, sv[0], sv[0]));
	ASSERT_EQ(0, vs_guest_open(&d, 0, true));
	ASSERT_EQ(0, vs_guest_open(&d, 1, true));
	ASSERT_EQ(0, vs_flow_init(&f[0], &d, 1, true, zc[0], 8 << 20, 31));
	ASSERT_EQ(0, vs_flow_init(&f[1], &d, 0, false, sv[1], 8 << 20, 32));

	worker_faults(tid, true);
	EXPECT_EQ(0, vs_pump(f, 2, 4 * VS_TIMEOUT_MS));
	worker_faults(tid, false);
	EXPECT_TRUE(vs_flow_match(&f[0]));
	EXPECT_TRUE(vs_flow_match(&f[1]));
	vs_flow_free(&f[0]);
	vs_flow_free(&f[1]);
	vs_set_backend(&d, 0, -1, -1);
	ASSERT_EQ(0, vs_check_transfer(&d, 0, CHECK_BYTES));
	vs_close(&d);
	close(zc[0]);
	close(zc[1]);
	close(sv[0]);
	close(sv[1]);
}

TEST_HARNESS_MAIN
