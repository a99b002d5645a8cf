/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small virtio driver in userspace, to play the guest of /dev/vhost-serial:
 * guest memory is a region of this process registered with
 * VHOST_SET_MEM_TABLE (guest-physical address == our virtual address), split
 * rings live in it, and kicks and calls are eventfds.
 */
#ifndef VSERIAL_VQ_H
#define VSERIAL_VQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <linux/virtio_ring.h>
#include <linux/vhost_serial.h>

#include "sha1.h"

#define VS_RING_NUM	256
#define VS_MEM_SIZE	(48UL << 20)
#define VS_CTRL_BUF	256
#define VS_CTRL_BUFS	64
#define VS_TIMEOUT_MS	20000

struct vs_vq {
	unsigned int num;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	int kick;
	int call;
	uint16_t free_head;
	uint16_t num_free;
	uint16_t avail_idx;
	uint16_t last_used;
	uint16_t kicked_at;	/* avail_idx at the last kick decision */
	bool event_idx;
	void **cookie;
	uint16_t *chain_len;
};

struct vs_dev {
	int fd;
	int err;		/* error eventfd shared by all queues */
	uint64_t features;
	unsigned int nr_ports;
	unsigned int nvqs;
	char *mem;
	size_t mem_size;
	size_t mem_used;
	struct vs_vq *vqs;
	char *ctrl_tx_buf;	/* guest memory for outgoing control messages */
};

struct vs_ctrl {
	uint32_t id;
	uint16_t event;
	uint16_t value;
	size_t len;		/* whole message, header included */
	char payload[VS_CTRL_BUF];
};

/* What the handshake learned of each port. */
struct vs_port_info {
	bool added;
	bool console;
	bool host_open;
	bool named;
	char name[VHOST_SERIAL_NAME_MAX + 2];
	uint16_t cols, rows;
	bool resized;
};

static inline unsigned int vs_rx_vq(unsigned int port)
{
	return port ? 2 * port + 2 : 0;
}

static inline unsigned int vs_tx_vq(unsigned int port)
{
	return vs_rx_vq(port) + 1;
}

#define VS_CTRL_RX 2
#define VS_CTRL_TX 3

/* Device set-up; each returns 0 or -errno. */
int vs_open(struct vs_dev *d, unsigned int nr_ports);
int vs_setup(struct vs_dev *d, uint64_t features, unsigned int ring_num);
int vs_setup_guest(struct vs_dev *d, uint64_t features, unsigned int ring_num);
int vs_create(struct vs_dev *d, unsigned int nr_ports, uint64_t features);
void vs_close(struct vs_dev *d);
int vs_new_guest(struct vs_dev *d, uint64_t features);
int vs_ioctl(struct vs_dev *d, unsigned long req, void *arg);
int vs_start(struct vs_dev *d);
int vs_add_port(struct vs_dev *d, uint32_t id, const char *name, bool console);
int vs_del_port(struct vs_dev *d, uint32_t id);
int vs_set_backend(struct vs_dev *d, uint32_t id, int in_fd, int out_fd);
int vs_set_backend_flags(struct vs_dev *d, uint32_t id, int in_fd,
			 int out_fd, uint32_t flags);
int vs_set_event(struct vs_dev *d, uint32_t id, int fd);
int vs_port_state(struct vs_dev *d, uint32_t id,
		  struct vhost_serial_port_state *st);
int vs_resize(struct vs_dev *d, uint32_t id, uint16_t cols, uint16_t rows);
uint64_t vs_default_features(void);
void *vs_alloc(struct vs_dev *d, size_t size, size_t align);

/* Rings. */
int vs_vq_add(struct vs_vq *vq, const struct iovec *out, unsigned int nout,
	      const struct iovec *in, unsigned int nin, void *cookie);
void vs_vq_publish(struct vs_vq *vq, uint16_t head);
void vs_vq_kick(struct vs_vq *vq);
int vs_vq_send(struct vs_vq *vq, void *buf, size_t len);
void *vs_vq_get(struct vs_vq *vq, uint32_t *len);
int vs_vq_wait(struct vs_vq *vq, int timeout_ms);
int vs_wait_fd(int fd, short events, int timeout_ms);
/* CLOCK_MONOTONIC in milliseconds. */
long vs_now_ms(void);
uint64_t vs_eventfd_read(int fd);

/* Control queue, as a guest driver uses it. */
int vs_ctrl_start(struct vs_dev *d);
int vs_ctrl_send(struct vs_dev *d, uint32_t id, uint16_t event, uint16_t value);
int vs_ctrl_send_raw(struct vs_dev *d, const void *buf, size_t len);
int vs_ctrl_recv(struct vs_dev *d, struct vs_ctrl *msg, int timeout_ms);
int vs_ctrl_expect(struct vs_dev *d, uint32_t id, uint16_t event,
		   struct vs_ctrl *msg);
int vs_handshake(struct vs_dev *d, struct vs_port_info *info,
		 unsigned int nr_added, unsigned int extra);
int vs_guest_open(struct vs_dev *d, uint32_t id, bool open);
int vs_bring_up(struct vs_dev *d, unsigned int nr_ports, unsigned int nr_added,
		struct vs_port_info *info);

/*
 * A stream of pattern data through one port in one direction, checked with
 * SHA-1 at both ends.  vs_pump() runs any number of them at once.
 */
struct vs_flow {
	struct vs_dev *d;
	unsigned int port;
	bool g2h;		/* guest to host (port tx queue) */
	int host_fd;		/* g2h: read here; h2g: write here (-1: none) */
	uint64_t total;
	size_t buf_size;
	unsigned int nbufs;
	uint32_t seed;
	/* vs_pump() does not wait for an optional flow to finish. */
	bool optional;
	/* Stop the host side after this many bytes (0: never). */
	uint64_t host_stop_at;
	/* Throughput runs: no pattern and no SHA-1, only byte counts. */
	bool raw;
	/* g2h, raw: splice what the host gets into this fd (-1: read it). */
	int sink_fd;
	/* state */
	uint64_t sent;		/* producer side */
	uint64_t received;	/* consumer side */
	uint64_t host_moved;	/* bytes through host_fd */
	unsigned int inflight;
	char **bufs;
	unsigned int free_top;
	char **free;
	uint64_t pat_tx;
	char *host_buf;
	size_t host_size;
	size_t host_len;
	size_t host_off;
	struct sha1 sha_tx;
	struct sha1 sha_rx;
};

int vs_flow_init(struct vs_flow *f, struct vs_dev *d, unsigned int port,
		 bool g2h, int host_fd, uint64_t total, uint32_t seed);
/* The same with nbufs guest buffers of buf_size bytes each. */
int vs_flow_init_sized(struct vs_flow *f, struct vs_dev *d, unsigned int port,
		       bool g2h, int host_fd, uint64_t total, uint32_t seed,
		       size_t buf_size, unsigned int nbufs);
/* 0 when every flow completed; -ETIMEDOUT, -EIO otherwise. */
int vs_pump(struct vs_flow *flows, unsigned int n, int timeout_ms);
/* Run for ms milliseconds at most: 0 if done by then, else -ETIMEDOUT. */
int vs_pump_for(struct vs_flow *flows, unsigned int n, int ms);
/* Run until no flow makes progress for idle_ms (back-pressure checks). */
int vs_pump_until_idle(struct vs_flow *flows, unsigned int n, int idle_ms);
bool vs_flow_match(struct vs_flow *f);
void vs_flow_free(struct vs_flow *f);
int vs_flow_fill_file(struct vs_flow *f, int fd);
void vs_pattern(uint64_t *state, void *buf, size_t len);

int vs_kmsg_bad_lines(void);

/* For kselftest_harness users: skip when the module is not loaded. */
#define REQUIRE_DEVICE() do {						\
	if (access("/dev/vhost-serial", R_OK | W_OK))			\
		SKIP(return, "/dev/vhost-serial not present (module not loaded)"); \
} while (0)
int vs_check_transfer(struct vs_dev *d, unsigned int port, uint64_t bytes);

#endif
