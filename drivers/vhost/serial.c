// SPDX-License-Identifier: GPL-2.0-only
/*
 * vhost-serial: a multiport virtio-console device in the host kernel.
 *
 * Each open of /dev/vhost-serial is one device.  Its ports are bridged to
 * file descriptors that userspace hands in (sockets, pipes, ttys, files): the
 * vhost worker copies guest output straight into them and their input
 * straight into guest buffers, and it speaks the virtio-console control
 * protocol with the guest on its own.  See include/uapi/linux/vhost_serial.h.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bvec.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/debugfs.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/net.h>
#include <linux/nospec.h>
#include <linux/pipe_fs_i.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/user.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/splice.h>
#include <linux/uio.h>
#include <linux/vhost.h>
#include <linux/virtio_console.h>
#include <linux/vmalloc.h>
#include <linux/vhost_serial.h>

#include "vhost.h"
#include "serial_compat.h"

/* Max number of buffers handled in one run of a handler. */
#define VHOST_SERIAL_PKT_WEIGHT		256
/* Max bytes moved in one run of a handler, so ports share the worker. */
#define VHOST_SERIAL_WEIGHT		0x80000
/* Console output kept while the console backend is full or absent. */
#define VHOST_SERIAL_CONSOLE_BUF	4096
/*
 * Zero-copy output: a chain of more pages than this is copied into the
 * pipe instead, so that one chain never pins without bound.
 */
#define VHOST_SERIAL_ZC_MAX_PAGES	256
/*
 * Guest pages one device may keep pinned in pipes.  A reader that moves
 * them on into other pipes frees room in ours without releasing them:
 * past this, output is copied.
 */
#define VHOST_SERIAL_ZC_MAX_PINNED	4096
/* Control messages waiting for guest buffers: base plus per port. */
#define VHOST_SERIAL_CTRL_BASE		64
#define VHOST_SERIAL_CTRL_PER_PORT	8

enum {
	VHOST_SERIAL_FEATURES = VHOST_FEATURES |
				(1ULL << VIRTIO_CONSOLE_F_SIZE) |
				(1ULL << VIRTIO_CONSOLE_F_MULTIPORT),
};

enum {
	VHOST_SERIAL_VQ_PORT0_RX = 0,
	VHOST_SERIAL_VQ_PORT0_TX = 1,
	VHOST_SERIAL_VQ_CTRL_RX = 2,
	VHOST_SERIAL_VQ_CTRL_TX = 3,
};

struct vhost_serial;

/*
 * A control message for the guest, kept in host byte order until a guest
 * buffer takes it (the byte order depends on the features negotiated).
 */
struct vhost_serial_ctrl_msg {
	struct list_head node;
	u32 gen;		/* vs->ctrl_gen when queued */
	u32 id;
	u16 event;
	u16 value;
	u16 cols;		/* RESIZE only */
	u16 rows;		/* RESIZE only */
	u16 name_len;		/* PORT_NAME only */
	char name[];		/* PORT_NAME only */
};

/* RESIZE payload, after the control header: the spec's order. */
struct vhost_serial_resize_payload {
	__virtio16 cols;
	__virtio16 rows;
};

/*
 * Zero-copy state of a device.  Pipes may hold guest pages after the
 * device is gone: the hub outlives it, and tells late releases whether
 * there is still a ring to complete their chains in.
 */
struct vhost_serial_zc_hub {
	refcount_t refs;	/* the device's, and one per chain */
	spinlock_t lock;
	struct vhost_serial *vs;	/* NULL once the device is released */
	u32 gen;		/* bumped when the rings are set up anew */
	atomic_t pinned;	/* pages pinned by this device's chains */
	struct rcu_head rcu;
};

/*
 * One chain of guest output whose pages are linked into a pipe by
 * reference.  The chain is completed (added to the used ring) only when
 * every pipe buffer that points into it has been released.
 */
struct vhost_serial_zc {
	struct llist_node done;
	struct vhost_serial_zc_hub *hub;
	struct user_struct *user;	/* charged for the pins, or NULL */
	u32 gen;
	u32 port_id;
	u16 head;
	refcount_t refs;	/* one per pipe buffer, one while pushing */
	unsigned int nsegs;
	unsigned int next;	/* first segment not wholly in the pipe */
	size_t seg_off;		/* bytes of segment next already out */
	struct bio_vec segs[];	/* one pinned page piece each */
};

/*
 * A wait on a backend file.  Like struct vhost_poll, but a wake-up without
 * a poll mask counts: a socket whose peer closes wakes its waiters exactly
 * so (sk_state_change), and vhost_poll would never see that hang-up when
 * no data came with it.
 */
struct vhost_serial_bpoll {
	/* Two queues: a tty or an O_RDWR FIFO waits on one per direction. */
	wait_queue_entry_t wait[2];
	wait_queue_head_t *wqh[2];
	poll_table table;
	__poll_t mask;
	struct vhost_work work;
	struct vhost_virtqueue *vq;
	struct timer_list retry;	/* see vhost_serial_pipe_trylock() */
	unsigned int backoff;		/* the retry's, as a shift */
};

struct vhost_serial_port {
	struct vhost_serial *vs;
	u32 id;

	/* Guarded by vs->port_lock (written), READ_ONCE in handlers. */
	bool present;
	bool console;
	bool announced;		/* PORT_ADD queued for the guest */
	bool removed;		/* PORT_REMOVE queued since, not PORT_ADD */
	u32 ready_owed;		/* PORT_ADDs the guest has not answered */
	bool guest_ready;
	bool guest_open;
	bool host_open;
	bool in_hup;		/* backend input reached EOF or failed */
	bool out_hup;		/* backend output failed */
	u16 cols, rows;		/* console size to send at PORT_READY */
	u16 name_len;
	char name[VHOST_SERIAL_NAME_MAX + 1];
	struct eventfd_ctx *event;
	u64 events;
	u64 guest_opens;

	/* Guarded by the port's rx vq mutex. */
	struct file *in;
	struct vhost_serial_bpoll in_poll;
	u64 rx_bytes;
	u64 rx_bufs;
	u32 used_extra;		/* fault injection (debugfs), once */
	u32 used_empty;		/* fault injection: buffers to return empty */

	/* Guarded by the port's tx vq mutex. */
	bool used_bogus;	/* fault injection: a used entry of no chain */
	struct file *out;
	bool zerocopy;		/* out is a pipe fed with guest pages */
	struct vhost_serial_zc *zc_cur;	/* popped chain, partly pushed */
	struct vhost_serial_bpoll out_poll;
	size_t tx_offset;	/* bytes of the next tx chain already written */
	bool tx_stale;		/* ring holds output of a removed port */
	u8 *cbuf;		/* console ports and port 0 only */
	size_t cbuf_len;
	u64 tx_bytes;
	u64 tx_bufs;
	u64 tx_dropped;

	atomic64_t errors;
};

struct vhost_serial {
	struct vhost_dev dev;
	struct vhost_virtqueue *vqs;
	struct vhost_virtqueue **vq_ptrs;
	struct vhost_serial_port *ports;
	u32 nr_ports;
	bool inited;		/* set once, by SET_NUM_PORTS */
	/*
	 * Dirty-log entries of the queues the device writes, UIO_MAXIOV per
	 * queue, allocated when VHOST_F_LOG_ALL is first acked: most devices
	 * never log, and the core's own arrays would cost 16 KiB per queue.
	 * Set under dev.mutex before the feature reaches a queue.
	 */
	struct vhost_log *logs;
	struct mutex init_lock;	/* serialises SET_NUM_PORTS */

	bool running;		/* guarded by dev.mutex */
	/*
	 * The owner's credentials, for the worker's I/O on backends: a
	 * kthread worker (6.1, or vhost's fork_from_owner_default=0) runs
	 * as the kernel, and a peer or a file would see root.
	 */
	const struct cred *owner_cred;	/* set and cleared under dev.mutex */
	unsigned long zc_memlock;	/* owner's limit in pages, as owner_cred */
	unsigned long fsize_limit;	/* owner's RLIMIT_FSIZE, as owner_cred */

	/* Port control state; nests inside vq mutexes. */
	struct mutex port_lock;
	bool guest_ready;	/* DEVICE_READY seen; guarded by port_lock */

	/* Control messages for the guest. */
	spinlock_t ctrl_lock;
	struct list_head ctrl_pending;	/* guarded by ctrl_lock */
	u32 ctrl_count;			/* guarded by ctrl_lock */
	u32 ctrl_gen;			/* guarded by ctrl_lock */
	u32 ctrl_max;
	struct vhost_work ctrl_work;

	/* Zero-copy output whose pipes released the pages. */
	struct vhost_serial_zc_hub *zc_hub;
	struct llist_head zc_done;
	struct llist_head zc_stopped;	/* released while the device stopped */
	struct vhost_work zc_work;

	struct dentry *debugfs;
};

static inline u32 vhost_serial_rx_vq_index(u32 id)
{
	return id ? 2 * id + 2 : VHOST_SERIAL_VQ_PORT0_RX;
}

static inline struct vhost_virtqueue *
vhost_serial_port_rx_vq(struct vhost_serial_port *port)
{
	return &port->vs->vqs[vhost_serial_rx_vq_index(port->id)];
}

static inline struct vhost_virtqueue *
vhost_serial_port_tx_vq(struct vhost_serial_port *port)
{
	return &port->vs->vqs[vhost_serial_rx_vq_index(port->id) + 1];
}

static struct vhost_serial_port *
vhost_serial_vq_port(struct vhost_serial *vs, struct vhost_virtqueue *vq)
{
	u32 idx = vq - vs->vqs;

	return &vs->ports[idx < 2 ? 0 : (idx - 2) / 2];
}

/* The queues the device writes (receive, control receive) are the even ones. */
static struct vhost_log *vhost_serial_vq_log(struct vhost_virtqueue *vq)
{
	struct vhost_serial *vs = container_of(vq->dev, struct vhost_serial, dev);

	return vs->logs + (size_t)((vq - vs->vqs) / 2) * UIO_MAXIOV;
}

static inline bool vhost_serial_multiport(struct vhost_virtqueue *vq)
{
	return vhost_has_feature(vq, VIRTIO_CONSOLE_F_MULTIPORT);
}

static void vhost_serial_port_error(struct vhost_serial_port *port)
{
	atomic64_inc(&port->errors);
}

/* Caller holds vs->port_lock. */
static void vhost_serial_port_notify(struct vhost_serial_port *port)
{
	port->events++;
	if (port->event)
		vhost_serial_eventfd_signal(port->event);
}

/* ---- the queue loop ------------------------------------------------------ */

/* One descriptor chain, as vhost_get_vq_desc() left it in vq->iov. */
struct vhost_serial_chain {
	u16 head;
	unsigned int out;
	unsigned int in;
	size_t len;		/* bytes of the chain in its direction */
};

struct vhost_serial_queue_ops {
	const char *name;
	/* Receive queues: chains must be device-writable only. */
	bool device_writes;
	/* Asked before each chain; NULL means "while chains come". */
	bool (*want_more)(void *ctx);
	/*
	 * Handle one chain: >= 0 completes it with that many bytes written
	 * into it; -EINPROGRESS keeps it, to be completed later; other
	 * errors leave it in the ring and stop the loop (the caller arranged
	 * to run again, or has nothing more to do).
	 */
	ssize_t (*chain)(void *ctx, struct vhost_virtqueue *vq,
			 const struct vhost_serial_chain *c);
	/* A malformed chain was seen. */
	void (*bad_chain)(void *ctx);
};

static void vhost_serial_bad_chain(const struct vhost_serial_queue_ops *ops,
				   void *ctx, struct vhost_virtqueue *vq,
				   const char *why)
{
	vq_err(vq, "%s: %s\n", ops->name, why);
	pr_warn_ratelimited("%s: %s\n", ops->name, why);
	if (ops->bad_chain)
		ops->bad_chain(ctx);
}

/*
 * The next chain of @vq into vq->iov: its head, vq->num when the ring is
 * empty (notification is then enabled again, unless the guest raced us
 * and there is one more), or a negative errno for a malformed chain.
 * Notification must be disabled.
 */
static int vhost_serial_next_chain(struct vhost_virtqueue *vq,
				   unsigned int *out, unsigned int *in,
				   struct vhost_log *log, unsigned int *log_num)
{
	int head;

	for (;;) {
		head = vhost_get_vq_desc(vq, vq->iov, ARRAY_SIZE(vq->iov),
					 out, in, log, log_num);
		if (head != vq->num || likely(!vhost_enable_notify(vq->dev, vq)))
			return head;
		vhost_disable_notify(vq->dev, vq);
	}
}

/*
 * The loop every queue runs, with the queue mutex held and a backend set:
 * take chains until the ring is empty (then re-enable notification, and
 * go on if the guest raced us), the handler stops, or the queue used up its
 * weight (vhost requeues us then, so other queues get the worker).  The
 * guest is signalled once at the end.
 */
static void vhost_serial_run_queue(struct vhost_virtqueue *vq,
				   const struct vhost_serial_queue_ops *ops,
				   void *ctx)
{
	struct vhost_dev *dev = vq->dev;
	struct vhost_serial_chain c;
	unsigned int log_num = 0;
	struct vhost_log *vq_log;
	int head, pkts = 0;
	size_t total = 0;
	bool added = false;
	ssize_t ret;

	vq_log = ops->device_writes &&
		 unlikely(vhost_has_feature(vq, VHOST_F_LOG_ALL)) ?
		 vhost_serial_vq_log(vq) : NULL;
	vhost_disable_notify(dev, vq);
	do {
		if (ops->want_more && !ops->want_more(ctx))
			break;
		head = vhost_serial_next_chain(vq, &c.out, &c.in, vq_log,
					       &log_num);
		if (unlikely(head < 0)) {
			vhost_serial_bad_chain(ops, ctx, vq, "bad descriptor chain");
			break;
		}
		if (head == vq->num)
			break;
		if (unlikely(ops->device_writes ? c.out : c.in)) {
			vhost_serial_bad_chain(ops, ctx, vq,
					       "descriptor of the wrong direction");
			vhost_add_used(vq, head, 0);
			added = true;
			continue;
		}
		c.head = head;
		c.len = ops->device_writes ? iov_length(vq->iov, c.in) :
					     iov_length(vq->iov, c.out);
		ret = ops->chain(ctx, vq, &c);
		if (ret == -EINPROGRESS) {
			total += c.len;
			continue;
		}
		if (ret < 0) {
			vhost_discard_vq_desc(vq, 1);
			break;
		}
		/* The used length may say more (fault injection): not the log. */
		if (unlikely(vq_log) && ret)
			vhost_log_write(vq, vq_log, log_num,
					min_t(size_t, ret, c.len), vq->iov, c.in);
		vhost_add_used(vq, head, ret);
		added = true;
		total += c.len;
	} while (likely(!vhost_exceeds_weight(vq, ++pkts,
					      min_t(size_t, total, INT_MAX))));

	if (added)
		vhost_signal(dev, vq);
}

/* ---- control messages to the guest ---------------------------------- */

static struct vhost_serial_ctrl_msg *
vhost_serial_ctrl_alloc(u32 id, u16 event, u16 value, size_t name_len)
{
	struct vhost_serial_ctrl_msg *msg;

	msg = kzalloc(struct_size(msg, name, name_len), GFP_KERNEL_ACCOUNT);
	if (!msg)
		return NULL;
	msg->id = id;
	msg->event = event;
	msg->value = value;
	msg->name_len = name_len;
	return msg;
}

/*
 * Queue a message for the guest; -ENOSPC, with a warning, when the queue
 * is full.  It only fills when the guest stops posting control buffers,
 * and then what that guest is not told is its own loss: the host's side
 * of a port (removed, backend gone) changes all the same, so a request
 * that changes it (DEL_PORT, SET_BACKEND) does not fail for it.  A port
 * whose PORT_ADD did not fit stays unannounced, as for a guest that is
 * not ready, and is announced when the guest starts over.
 */
static int vhost_serial_ctrl_queue(struct vhost_serial *vs,
				   struct vhost_serial_ctrl_msg *msg)
{
	spin_lock(&vs->ctrl_lock);
	if (vs->ctrl_count >= vs->ctrl_max) {
		spin_unlock(&vs->ctrl_lock);
		kfree(msg);
		pr_warn_ratelimited("control queue full, guest posts no buffers\n");
		return -ENOSPC;
	}
	msg->gen = vs->ctrl_gen;
	list_add_tail(&msg->node, &vs->ctrl_pending);
	vs->ctrl_count++;
	spin_unlock(&vs->ctrl_lock);

	vhost_serial_work_queue(&vs->vqs[VHOST_SERIAL_VQ_CTRL_RX],
				&vs->ctrl_work);
	return 0;
}

static int vhost_serial_send(struct vhost_serial *vs, u32 id, u16 event,
			     u16 value)
{
	struct vhost_serial_ctrl_msg *msg;

	msg = vhost_serial_ctrl_alloc(id, event, value, 0);
	if (!msg)
		return -ENOMEM;
	return vhost_serial_ctrl_queue(vs, msg);
}

static int vhost_serial_send_name(struct vhost_serial_port *port)
{
	struct vhost_serial_ctrl_msg *msg;

	msg = vhost_serial_ctrl_alloc(port->id, VIRTIO_CONSOLE_PORT_NAME, 1,
				      port->name_len);
	if (!msg)
		return -ENOMEM;
	memcpy(msg->name, port->name, port->name_len);
	return vhost_serial_ctrl_queue(port->vs, msg);
}

static int vhost_serial_send_resize(struct vhost_serial_port *port)
{
	struct vhost_serial_ctrl_msg *msg;

	msg = vhost_serial_ctrl_alloc(port->id, VIRTIO_CONSOLE_RESIZE, 0, 0);
	if (!msg)
		return -ENOMEM;
	msg->cols = port->cols;
	msg->rows = port->rows;
	return vhost_serial_ctrl_queue(port->vs, msg);
}

static struct vhost_serial_ctrl_msg *vhost_serial_ctrl_peek(struct vhost_serial *vs)
{
	struct vhost_serial_ctrl_msg *msg;

	spin_lock(&vs->ctrl_lock);
	msg = list_first_entry_or_null(&vs->ctrl_pending,
				       struct vhost_serial_ctrl_msg, node);
	spin_unlock(&vs->ctrl_lock);
	return msg;
}

static void vhost_serial_ctrl_pop(struct vhost_serial *vs,
				  struct vhost_serial_ctrl_msg *msg)
{
	spin_lock(&vs->ctrl_lock);
	list_del(&msg->node);
	vs->ctrl_count--;
	spin_unlock(&vs->ctrl_lock);
	kfree(msg);
}

static void vhost_serial_ctrl_flush_pending(struct vhost_serial *vs)
{
	struct vhost_serial_ctrl_msg *msg, *tmp;

	spin_lock(&vs->ctrl_lock);
	list_for_each_entry_safe(msg, tmp, &vs->ctrl_pending, node) {
		list_del(&msg->node);
		kfree(msg);
	}
	vs->ctrl_count = 0;
	spin_unlock(&vs->ctrl_lock);
}

/* Copy one message into a guest buffer; returns the bytes written. */
static ssize_t vhost_serial_ctrl_fill(struct vhost_virtqueue *vq,
				      struct vhost_serial_ctrl_msg *msg,
				      unsigned int in)
{
	struct virtio_console_control hdr;
	struct vhost_serial_resize_payload size;
	struct iov_iter iter;
	size_t len, need;

	len = iov_length(vq->iov, in);
	need = sizeof(hdr) + msg->name_len;
	if (msg->event == VIRTIO_CONSOLE_RESIZE)
		need += sizeof(size);
	if (len < need)
		return -ENOBUFS;

	hdr.id = cpu_to_vhost32(vq, msg->id);
	hdr.event = cpu_to_vhost16(vq, msg->event);
	hdr.value = cpu_to_vhost16(vq, msg->value);
	iov_iter_init(&iter, ITER_DEST, vq->iov, in, len);
	if (copy_to_iter(&hdr, sizeof(hdr), &iter) != sizeof(hdr))
		return -EFAULT;
	if (msg->event == VIRTIO_CONSOLE_RESIZE) {
		/* The spec's order: cols, then rows. */
		size.cols = cpu_to_vhost16(vq, msg->cols);
		size.rows = cpu_to_vhost16(vq, msg->rows);
		if (copy_to_iter(&size, sizeof(size), &iter) != sizeof(size))
			return -EFAULT;
	}
	if (copy_to_iter(msg->name, msg->name_len, &iter) != msg->name_len)
		return -EFAULT;
	return need;
}

/*
 * Anything to send?  Messages queued for a guest driver that has since
 * started over are dropped here, by the only consumer of the queue.
 */
static bool vhost_serial_ctrl_pending(void *ctx)
{
	struct vhost_serial *vs = ctx;
	struct vhost_serial_ctrl_msg *msg, *tmp;
	bool pending = false;

	spin_lock(&vs->ctrl_lock);
	list_for_each_entry_safe(msg, tmp, &vs->ctrl_pending, node) {
		if (msg->gen == vs->ctrl_gen) {
			pending = true;
			break;
		}
		list_del(&msg->node);
		vs->ctrl_count--;
		kfree(msg);
	}
	spin_unlock(&vs->ctrl_lock);
	return pending;
}

static ssize_t vhost_serial_ctrl_rx_chain(void *ctx, struct vhost_virtqueue *vq,
					  const struct vhost_serial_chain *c)
{
	struct vhost_serial_ctrl_msg *msg = vhost_serial_ctrl_peek(ctx);
	ssize_t len = vhost_serial_ctrl_fill(vq, msg, c->in);

	if (unlikely(len < 0)) {
		/* The message stays queued for the next buffer. */
		vq_err(vq, "control rx: buffer too small or unmapped\n");
		pr_warn_ratelimited("control rx: guest buffer unusable (%zd)\n",
				    len);
		return 0;
	}
	vhost_serial_ctrl_pop(ctx, msg);
	return len;
}

static const struct vhost_serial_queue_ops vhost_serial_ctrl_rx_ops = {
	.name = "control rx",
	.device_writes = true,
	.want_more = vhost_serial_ctrl_pending,
	.chain = vhost_serial_ctrl_rx_chain,
};

static void vhost_serial_handle_ctrl_rx(struct vhost_serial *vs)
{
	struct vhost_virtqueue *vq = &vs->vqs[VHOST_SERIAL_VQ_CTRL_RX];

	mutex_lock(&vq->mutex);
	if (vhost_vq_get_backend(vq))
		vhost_serial_run_queue(vq, &vhost_serial_ctrl_rx_ops, vs);
	mutex_unlock(&vq->mutex);
}

static void vhost_serial_ctrl_work(struct vhost_work *work)
{
	struct vhost_serial *vs = container_of(work, struct vhost_serial,
					       ctrl_work);

	vhost_serial_handle_ctrl_rx(vs);
}

static void vhost_serial_ctrl_rx_kick(struct vhost_work *work)
{
	struct vhost_virtqueue *vq = container_of(work, struct vhost_virtqueue,
						  poll.work);
	struct vhost_serial *vs = container_of(vq->dev, struct vhost_serial,
					       dev);

	vhost_serial_handle_ctrl_rx(vs);
}

/* ---- port state -------------------------------------------------------- */

/* Caller holds vs->port_lock. */
static void vhost_serial_announce(struct vhost_serial_port *port)
{
	if (!port->present || !port->vs->guest_ready)
		return;
	if (!vhost_serial_send(port->vs, port->id,
			       VIRTIO_CONSOLE_PORT_ADD, 1)) {
		port->announced = true;
		port->removed = false;
		port->ready_owed++;
	}
}

/* Tell the guest whether the host side is connected; caller holds port_lock. */
static void vhost_serial_set_host_open(struct vhost_serial_port *port,
				       bool open)
{
	if (port->host_open == open)
		return;
	port->host_open = open;
	if (port->guest_ready)
		vhost_serial_send(port->vs, port->id, VIRTIO_CONSOLE_PORT_OPEN,
				  open);
	vhost_serial_port_notify(port);
}

/*
 * The backend hung up.  Called from a data handler with the queue mutex of
 * that direction held, after everything readable was delivered.
 */
static void vhost_serial_hangup(struct vhost_serial_port *port, bool input)
{
	struct vhost_serial *vs = port->vs;

	mutex_lock(&vs->port_lock);
	if (input)
		WRITE_ONCE(port->in_hup, true);
	else
		WRITE_ONCE(port->out_hup, true);
	if (input || !READ_ONCE(port->in))
		vhost_serial_set_host_open(port, false);
	vhost_serial_port_notify(port);
	mutex_unlock(&vs->port_lock);
}

/* ---- backend I/O --------------------------------------------------------- */

/*
 * The worker must never sleep on a backend.  Sockets get MSG_DONTWAIT;
 * regular files do not block on a peer; everything else must be O_NONBLOCK.
 */
static int vhost_serial_bpoll_wake(wait_queue_entry_t *wait, unsigned int mode,
				   int sync, void *key)
{
	struct vhost_serial_bpoll *bp = wait->private;
	__poll_t events = key ? key_to_poll(key) : 0;

	/*
	 * The queue is freed after this call (a signalfd's lives in the
	 * signal handlers of the process that polled it): leave it now, under
	 * its lock, and let the work look at the file again.  The queue itself
	 * stays valid for an RCU grace period (wake_up_pollfree()).
	 */
	if (events & POLLFREE) {
		list_del_init(&wait->entry);
		/* Pairs with the acquire in vhost_serial_bpoll_stop(). */
		smp_store_release(&bp->wqh[wait - bp->wait], NULL);
	} else if (key && !(events & bp->mask)) {
		return 0;
	}
	vhost_serial_work_queue(bp->vq, &bp->work);
	return 0;
}

static void vhost_serial_bpoll_func(struct file *file, wait_queue_head_t *wqh,
				    poll_table *pt)
{
	struct vhost_serial_bpoll *bp;

	unsigned int i;

	bp = container_of(pt, struct vhost_serial_bpoll, table);
	for (i = 0; i < ARRAY_SIZE(bp->wqh); i++) {
		if (!bp->wqh[i]) {
			bp->wqh[i] = wqh;
			add_wait_queue(wqh, &bp->wait[i]);
			return;
		}
	}
	pr_warn_ratelimited("backend waits on more than %zu queues\n",
			    ARRAY_SIZE(bp->wqh));
}

static void vhost_serial_bpoll_retry(struct timer_list *t)
{
	struct vhost_serial_bpoll *bp = from_timer(bp, t, retry);

	vhost_serial_work_queue(bp->vq, &bp->work);
}

static void vhost_serial_bpoll_init(struct vhost_serial_bpoll *bp,
				    vhost_work_fn_t fn, __poll_t mask,
				    struct vhost_virtqueue *vq)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bp->wait); i++) {
		init_waitqueue_func_entry(&bp->wait[i], vhost_serial_bpoll_wake);
		bp->wait[i].private = bp;
		bp->wqh[i] = NULL;
	}
	init_poll_funcptr(&bp->table, vhost_serial_bpoll_func);
	bp->mask = mask;
	bp->vq = vq;
	vhost_work_init(&bp->work, fn);
	timer_setup(&bp->retry, vhost_serial_bpoll_retry, 0);
}

static void vhost_serial_bpoll_queue(struct vhost_serial_bpoll *bp)
{
	vhost_serial_work_queue(bp->vq, &bp->work);
}

static void vhost_serial_bpoll_stop(struct vhost_serial_bpoll *bp)
{
	wait_queue_head_t *wqh;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bp->wqh); i++) {
		rcu_read_lock();
		/*
		 * Pairs with the release in vhost_serial_bpoll_wake(): after a
		 * POLLFREE wake-up the entry is off the queue, which RCU keeps.
		 */
		wqh = smp_load_acquire(&bp->wqh[i]);
		if (wqh)
			remove_wait_queue(wqh, &bp->wait[i]);
		rcu_read_unlock();
		WRITE_ONCE(bp->wqh[i], NULL);
	}
	/* Armed by backend I/O only: a stopped wait queues no work later. */
	timer_delete_sync(&bp->retry);
}

/*
 * Waits on @file; runs the work at once if it is ready already.  A file in
 * error is not waited on: the work sees the error and hangs the port up.
 */
static void vhost_serial_bpoll_start(struct vhost_serial_bpoll *bp,
				     struct file *file)
{
	__poll_t mask;

	if (READ_ONCE(bp->wqh[0]))
		return;
	mask = vfs_poll(file, &bp->table);
	if (mask & EPOLLERR)
		vhost_serial_bpoll_stop(bp);
	if (mask & bp->mask)
		vhost_serial_bpoll_queue(bp);
}

static struct pipe_inode_info *vhost_serial_pipe(struct file *file)
{
	struct pipe_inode_info *pipe;

	/* The pipe of a FIFO or pipe file, as fs/pipe.c keeps it. */
	if (!file || !S_ISFIFO(file_inode(file)->i_mode))
		return NULL;
	pipe = file->private_data;
	/* Notification pipes take no data. */
	if (!pipe || pipe_has_watch_queue(pipe))
		return NULL;
	return pipe;
}

static bool vhost_serial_file_ok(struct file *file)
{
	if (sock_from_file(file) || S_ISREG(file_inode(file)->i_mode))
		return true;
	return file->f_flags & O_NONBLOCK;
}

/*
 * The owner's file size limit holds for regular files, which a kernel
 * thread worker (6.1, or vhost's fork_from_owner_default=0) would not
 * have: output is cut at it, and fails with EFBIG past it, without the
 * SIGXFSZ of write(2) (the port hangs up).
 */
static int vhost_serial_fsize_clamp(struct vhost_serial *vs,
				    struct file *file, loff_t pos,
				    struct iov_iter *iter)
{
	unsigned long limit = vs->fsize_limit;

	if (limit == RLIM_INFINITY || !S_ISREG(file_inode(file)->i_mode))
		return 0;
	/* Where the write lands; another appender may still move it on. */
	if (file->f_flags & O_APPEND)
		pos = i_size_read(file_inode(file));
	if (pos < 0 || pos >= limit)
		return -EFBIG;
	iov_iter_truncate(iter, limit - pos);
	return 0;
}

/*
 * Backend I/O on a tty or a regular file, at the file's position.  A tty
 * is O_NONBLOCK; a regular file does not wait for a peer.
 */
static ssize_t vhost_serial_file_io(struct vhost_serial_port *port,
				    struct file *file, struct iov_iter *iter,
				    bool write)
{
	loff_t pos = file->f_pos;
	ssize_t ret;

	if (write) {
		ret = vhost_serial_fsize_clamp(port->vs, file, pos, iter);
		if (ret)
			return ret;
	}
	ret = write ? vhost_serial_iter_write(file, iter, &pos) :
		      vfs_iter_read(file, iter, &pos, 0);
	if (ret > 0)
		file->f_pos = pos;
	return ret;
}

/*
 * Pipes and FIFOs are read and written here, not through their file
 * operations, which sleep on the pipe's lock: whoever holds it may keep it
 * as long as they like (a blocking splice(2) between the pipe and a socket
 * holds it while it waits on the socket), and the worker must never wait
 * for them.  The host side of a busy port holds it all the time it copies
 * (a read of a full 1 MiB pipe, a millisecond or so under emulation), so
 * the worker tries for up to VHOST_SERIAL_PIPE_SPIN_NS, letting others
 * run meanwhile.  After that the port looks again VHOST_SERIAL_PIPE_RETRY
 * later, as unlocking a pipe wakes nobody, and twice as late each time
 * the lock is still busy, up to 16 times: a lock held that long is held
 * by a sleeper, and the spinning costs the worker's CPU.
 */
#define VHOST_SERIAL_PIPE_SPIN_NS	(2 * NSEC_PER_MSEC)
#define VHOST_SERIAL_PIPE_RETRY		msecs_to_jiffies(10)
#define VHOST_SERIAL_PIPE_BACKOFF_MAX	4

/* The port looks at its pipe again later; caller holds @bp's vq mutex. */
static void vhost_serial_pipe_retry(struct vhost_serial_bpoll *bp)
{
	mod_timer(&bp->retry, jiffies + (VHOST_SERIAL_PIPE_RETRY << bp->backoff));
	if (bp->backoff < VHOST_SERIAL_PIPE_BACKOFF_MAX)
		bp->backoff++;
}

/* Caller holds the mutex of the queue @bp belongs to. */
static bool vhost_serial_pipe_trylock(struct pipe_inode_info *pipe,
				      struct vhost_serial_bpoll *bp)
{
	u64 end;

	if (!mutex_trylock(&pipe->mutex)) {
		end = ktime_get_ns() + VHOST_SERIAL_PIPE_SPIN_NS;
		do {
			cond_resched();
			cpu_relax();
			if (ktime_get_ns() >= end) {
				vhost_serial_pipe_retry(bp);
				return false;
			}
		} while (!mutex_trylock(&pipe->mutex));
	}
	bp->backoff = 0;
	return true;
}

/*
 * The output pipe, locked, with a reader: 0, -EAGAIN (busy) or -EPIPE.
 * Readers are looked at before the lock as well, so that a pipe nobody
 * reads hangs up even while someone holds it; and under the lock, where
 * they cannot go, as add_to_pipe() would raise SIGPIPE in the worker.
 */
static int vhost_serial_pipe_lock_out(struct vhost_serial_port *port,
				      struct pipe_inode_info *pipe)
{
	if (!READ_ONCE(pipe->readers))
		return -EPIPE;
	if (!vhost_serial_pipe_trylock(pipe, &port->out_poll))
		return -EAGAIN;
	if (!pipe->readers) {
		pipe_unlock(pipe);
		return -EPIPE;
	}
	return 0;
}

static int vhost_serial_pipe_to_iter(struct pipe_inode_info *pipe,
				     struct pipe_buffer *buf,
				     struct splice_desc *sd)
{
	size_t n = copy_page_to_iter(buf->page, buf->offset, sd->len,
				     sd->u.data);

	return n ? n : -EFAULT;
}

/* As read(2) on an O_NONBLOCK pipe: 0 at end of file, -EAGAIN when empty. */
static ssize_t vhost_serial_pipe_read(struct vhost_serial_port *port,
				      struct pipe_inode_info *pipe,
				      struct iov_iter *to)
{
	struct splice_desc sd = {
		.total_len = iov_iter_count(to),
		.flags = SPLICE_F_NONBLOCK,
		.u.data = to,
	};
	ssize_t ret;

	if (!vhost_serial_pipe_trylock(pipe, &port->in_poll))
		return -EAGAIN;
	ret = __splice_from_pipe(pipe, &sd, vhost_serial_pipe_to_iter);
	pipe_unlock(pipe);
	/*
	 * A signal for the vhost task (the owner stopped, frozen or killed)
	 * ends the call before any data: not the pipe's error, and no one
	 * else will say the data is there, so look again later.
	 */
	if (ret == -ERESTARTSYS) {
		vhost_serial_pipe_retry(&port->in_poll);
		return -EAGAIN;
	}
	return ret;
}

static void vhost_serial_pipe_wake_readers(struct pipe_inode_info *pipe)
{
	wake_up_interruptible_sync_poll(&pipe->rd_wait, EPOLLIN | EPOLLRDNORM);
	kill_fasync(&pipe->fasync_readers, SIGIO, POLL_IN);
}

/* The pipe's last buffer, if write(2) would add to it; pipe locked. */
static struct pipe_buffer *vhost_serial_pipe_tail(struct pipe_inode_info *pipe)
{
	struct pipe_buffer *buf;

	if (pipe_empty(pipe->head, pipe->tail))
		return NULL;
	buf = &pipe->bufs[(pipe->head - 1) & (pipe->ring_size - 1)];
	if (!(buf->flags & PIPE_BUF_FLAG_CAN_MERGE) ||
	    buf->offset + buf->len >= PAGE_SIZE || pipe_buf_confirm(pipe, buf))
		return NULL;
	return buf;
}

/*
 * As write(2) on an O_NONBLOCK pipe: what fits, in pages of our own that
 * later writes may fill up as the pipe's own are (a packet each in a
 * packet pipe, O_DIRECT); -EAGAIN when full, -EPIPE without readers (and
 * no SIGPIPE: the worker's would go nowhere).  The pipe's times and
 * fsnotify events are left alone.
 */
static ssize_t vhost_serial_pipe_write(struct vhost_serial_port *port,
				       struct pipe_inode_info *pipe,
				       struct iov_iter *from)
{
	bool packet = port->out->f_flags & O_DIRECT;
	struct pipe_buffer *tail, buf;
	struct page *page;
	size_t done = 0;
	ssize_t ret;
	size_t n;

	ret = vhost_serial_pipe_lock_out(port, pipe);
	if (ret)
		return ret;
	tail = packet ? NULL : vhost_serial_pipe_tail(pipe);
	if (tail) {
		n = min_t(size_t, iov_iter_count(from),
			  PAGE_SIZE - tail->offset - tail->len);
		n = copy_page_from_iter(tail->page, tail->offset + tail->len,
					n, from);
		tail->len += n;
		done += n;
	}
	while (iov_iter_count(from) &&
	       !pipe_full(pipe->head, pipe->tail, pipe->max_usage)) {
		page = alloc_page(GFP_HIGHUSER | __GFP_ACCOUNT);
		if (!page) {
			ret = -ENOMEM;
			break;
		}
		n = copy_page_from_iter(page, 0, PAGE_SIZE, from);
		if (!n) {
			put_page(page);
			ret = -EFAULT;
			break;
		}
		buf = (struct pipe_buffer) {
			.page = page,
			.len = n,
			.ops = &nosteal_pipe_buf_ops,
			.flags = packet ? PIPE_BUF_FLAG_PACKET :
					  PIPE_BUF_FLAG_CAN_MERGE,
		};
		add_to_pipe(pipe, &buf);
		done += n;
	}
	pipe_unlock(pipe);
	if (done) {
		vhost_serial_pipe_wake_readers(pipe);
		return done;
	}
	return ret ?: -EAGAIN;
}

static ssize_t vhost_serial_backend_read(struct vhost_serial_port *port,
					 struct iov_iter *to)
{
	struct socket *sock = sock_from_file(port->in);
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT };
	struct pipe_inode_info *pipe;

	if (sock) {
		msg.msg_iter = *to;
		return sock_recvmsg(sock, &msg, MSG_DONTWAIT);
	}
	if (!vhost_serial_file_ok(port->in))
		return -EINVAL;
	pipe = vhost_serial_pipe(port->in);
	if (pipe)
		return vhost_serial_pipe_read(port, pipe, to);
	return vhost_serial_file_io(port, port->in, to, false);
}

static ssize_t vhost_serial_backend_write(struct vhost_serial_port *port,
					  struct iov_iter *from)
{
	struct socket *sock = sock_from_file(port->out);
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };
	struct pipe_inode_info *pipe;

	if (sock) {
		msg.msg_iter = *from;
		return sock_sendmsg(sock, &msg);
	}
	if (!vhost_serial_file_ok(port->out))
		return -EINVAL;
	pipe = vhost_serial_pipe(port->out);
	if (pipe)
		return vhost_serial_pipe_write(port, pipe, from);
	return vhost_serial_file_io(port, port->out, from, true);
}

/*
 * Has an idle backend hung up with nothing left to read?  Used while the
 * guest cannot take data, so that userspace and the guest learn of it.
 */
static bool vhost_serial_in_drained_hup(struct file *file)
{
	struct msghdr msg = {};
	struct socket *sock;
	struct kvec kv;
	__poll_t mask;
	char c;
	int ret;

	mask = vfs_poll(file, NULL);
	if (!(mask & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)))
		return false;
	sock = sock_from_file(file);
	if (!sock)
		return !(mask & EPOLLIN);
	kv.iov_base = &c;
	kv.iov_len = 1;
	ret = kernel_recvmsg(sock, &msg, &kv, 1, 1, MSG_PEEK | MSG_DONTWAIT);
	return ret == 0 || (ret < 0 && ret != -EAGAIN);
}

/* ---- host to guest ------------------------------------------------------- */

static bool vhost_serial_guest_listens(struct vhost_serial_port *port,
				       struct vhost_virtqueue *vq)
{
	if (!READ_ONCE(port->present))
		return false;
	if (!vhost_serial_multiport(vq))
		return port->id == 0;
	return READ_ONCE(port->guest_open);
}

static void vhost_serial_port_bad_chain(void *ctx)
{
	vhost_serial_port_error(ctx);
}

static ssize_t vhost_serial_rx_chain(void *ctx, struct vhost_virtqueue *vq,
				     const struct vhost_serial_chain *c)
{
	struct vhost_serial_port *port = ctx;
	struct iov_iter iter;
	ssize_t ret;

	/* A read of nothing returns 0, which would look like end of file. */
	if (unlikely(!c->len)) {
		vhost_serial_port_error(port);
		return 0;
	}
	if (unlikely(port->used_empty)) {
		port->used_empty--;
		port->rx_bufs++;
		return 0;
	}
	/* As for output: a file gives any length in one call. */
	iov_iter_init(&iter, ITER_DEST, vq->iov, c->in,
		      min_t(size_t, c->len, VHOST_SERIAL_WEIGHT));
	ret = vhost_serial_backend_read(port, &iter);
	if (ret > 0) {
		port->rx_bytes += ret;
		port->rx_bufs++;
		if (unlikely(port->used_extra)) {
			ret += port->used_extra;
			port->used_extra = 0;
		}
		return ret;
	}
	/* -EAGAIN: in_poll runs us again when data comes. */
	if (ret == -EAGAIN)
		return ret;
	if (ret < 0)
		vhost_serial_port_error(port);
	vhost_serial_hangup(port, true);
	return -EPIPE;
}

static const struct vhost_serial_queue_ops vhost_serial_rx_ops = {
	.name = "port rx",
	.device_writes = true,
	.chain = vhost_serial_rx_chain,
	.bad_chain = vhost_serial_port_bad_chain,
};

static void vhost_serial_handle_rx(struct vhost_serial_port *port)
{
	struct vhost_virtqueue *vq = vhost_serial_port_rx_vq(port);
	const struct cred *old;

	mutex_lock(&vq->mutex);
	if (!vhost_vq_get_backend(vq) || !port->in || READ_ONCE(port->in_hup))
		goto out_unlock;
	old = override_creds(port->vs->owner_cred);
	if (vhost_serial_guest_listens(port, vq))
		vhost_serial_run_queue(vq, &vhost_serial_rx_ops, port);
	/* Nobody reads, or no buffers: still notice an idle hang-up. */
	if (!READ_ONCE(port->in_hup) && vhost_serial_in_drained_hup(port->in) &&
	    (!vhost_serial_guest_listens(port, vq) ||
	     vhost_vq_avail_empty(vq->dev, vq)))
		vhost_serial_hangup(port, true);
	revert_creds(old);
out_unlock:
	mutex_unlock(&vq->mutex);
}

static void vhost_serial_rx_kick(struct vhost_work *work)
{
	struct vhost_virtqueue *vq = container_of(work, struct vhost_virtqueue,
						  poll.work);
	struct vhost_serial *vs = container_of(vq->dev, struct vhost_serial,
					       dev);

	vhost_serial_handle_rx(vhost_serial_vq_port(vs, vq));
}

static void vhost_serial_in_poll_work(struct vhost_work *work)
{
	struct vhost_serial_port *port = container_of(work,
						      struct vhost_serial_port,
						      in_poll.work);

	vhost_serial_handle_rx(port);
}

/* ---- guest to host ------------------------------------------------------- */

/* Wake the port's transmit work when its backend takes output again. */
static void vhost_serial_wait_out(struct vhost_serial_port *port)
{
	if (port->out && !READ_ONCE(port->out_hup))
		vhost_serial_bpoll_start(&port->out_poll, port->out);
}

/* Push buffered console output to the backend; true when it is all out. */
static bool vhost_serial_cbuf_flush(struct vhost_serial_port *port)
{
	struct iov_iter iter;
	struct kvec kv;
	ssize_t ret;

	if (!port->cbuf_len)
		return true;
	if (!port->out || READ_ONCE(port->out_hup))
		return false;
	kv.iov_base = port->cbuf;
	kv.iov_len = port->cbuf_len;
	iov_iter_kvec(&iter, ITER_SOURCE, &kv, 1, port->cbuf_len);
	ret = vhost_serial_backend_write(port, &iter);
	if (ret < 0) {
		if (ret != -EAGAIN)
			vhost_serial_hangup(port, false);
		return false;
	}
	port->tx_bytes += ret;
	port->cbuf_len -= ret;
	memmove(port->cbuf, port->cbuf + ret, port->cbuf_len);
	return !port->cbuf_len;
}

/*
 * Console output must never stay in the ring: the guest may be spinning
 * for it with interrupts off.  Keep what fits in the port's buffer, drop
 * and count the rest.
 */
static void vhost_serial_cbuf_stash(struct vhost_serial_port *port,
				    struct iov_iter *from)
{
	size_t room = VHOST_SERIAL_CONSOLE_BUF - port->cbuf_len;
	size_t left = iov_iter_count(from);
	size_t n = port->cbuf ? min(room, left) : 0;

	if (n && copy_from_iter(port->cbuf + port->cbuf_len, n, from) == n)
		port->cbuf_len += n;
	else
		n = 0;
	if (left > n) {
		port->tx_dropped += left - n;
		pr_info_ratelimited("port %u: console output dropped, nothing reads it\n",
				    port->id);
	}
}

/*
 * Write one chain of guest output.  Returns true when the chain is
 * finished and may be completed; false when it must wait in the ring.
 */
static bool vhost_serial_tx_one(struct vhost_serial_port *port,
				struct vhost_virtqueue *vq, unsigned int out,
				bool console)
{
	size_t len = iov_length(vq->iov, out);
	struct iov_iter iter, part;
	ssize_t ret = -EAGAIN;
	size_t piece = 0;
	bool can_write;

	port->tx_offset = min(port->tx_offset, len);
	iov_iter_init(&iter, ITER_SOURCE, vq->iov, out, len);
	iov_iter_advance(&iter, port->tx_offset);

	can_write = port->out && !READ_ONCE(port->out_hup) &&
		    vhost_serial_cbuf_flush(port);
	if (can_write && iov_iter_count(&iter)) {
		/*
		 * A regular file takes any length in one call, and a chain
		 * may be terabytes of the same guest pages: a weight's worth
		 * per call, the rest on the worker's next run.
		 */
		piece = min_t(size_t, iov_iter_count(&iter),
			      VHOST_SERIAL_WEIGHT);
		part = iter;
		iov_iter_truncate(&part, piece);
		ret = vhost_serial_backend_write(port, &part);
		if (ret > 0) {
			iov_iter_advance(&iter, ret);
			port->tx_offset += ret;
			port->tx_bytes += ret;
		} else if (ret < 0 && ret != -EAGAIN) {
			vhost_serial_port_error(port);
			vhost_serial_hangup(port, false);
		}
	}
	if (port->tx_offset < len) {
		/*
		 * The backend took a whole piece: go on after the other work.
		 * Its poll would not say so: a pipe with room wakes no one.
		 */
		if (ret > 0 && (size_t)ret == piece) {
			vhost_serial_bpoll_queue(&port->out_poll);
			return false;
		}
		/*
		 * Also when console output left from before keeps the backend
		 * full: nothing else would wake the port once it drains.
		 */
		vhost_serial_wait_out(port);
		/* A console keeps what a full backend refused, not the rest. */
		if (!console)
			return false;
		vhost_serial_cbuf_stash(port, &iter);
	}
	port->tx_offset = 0;
	port->tx_bufs++;
	return true;
}

/* ---- zero-copy guest output ---------------------------------------------- */

/*
 * A port attached with VHOST_SERIAL_BACKEND_F_ZEROCOPY writes guest output
 * into its pipe by reference: the chain's pages are pinned and each piece
 * becomes a pipe buffer.  Whatever takes them out of the pipe (read,
 * splice to a file, another pipe or /dev/null) reads guest memory
 * directly; the chain goes back to the guest when the last of its buffers
 * is released, never before.  (A socket would keep its own references
 * after the pipe let go: the uapi header says not to splice into one.)
 */

/*
 * Pipes hold the module's buffer operations: a hub that outlives its
 * device keeps the module loaded until the last page is released.
 */
static struct vhost_serial_zc_hub *vhost_serial_zc_hub_new(struct vhost_serial *vs)
{
	struct vhost_serial_zc_hub *hub;

	hub = kzalloc(sizeof(*hub), GFP_KERNEL_ACCOUNT);
	if (!hub)
		return NULL;
	refcount_set(&hub->refs, 1);
	spin_lock_init(&hub->lock);
	hub->vs = vs;
	__module_get(THIS_MODULE);
	return hub;
}

/*
 * The module reference goes last, from an RCU callback: its caller (a
 * pipe's release) still returns through this module's code, and
 * vhost_serial_exit() waits for the callbacks with rcu_barrier().
 */
static void vhost_serial_zc_hub_free(struct rcu_head *rcu)
{
	kfree(container_of(rcu, struct vhost_serial_zc_hub, rcu));
	module_put(THIS_MODULE);
}

static void vhost_serial_zc_hub_put(struct vhost_serial_zc_hub *hub)
{
	if (refcount_dec_and_test(&hub->refs))
		call_rcu(&hub->rcu, vhost_serial_zc_hub_free);
}

/*
 * Pinned guest pages are locked memory of the owner's user, as io_uring's
 * registered buffers are: they count against RLIMIT_MEMLOCK across all of
 * that user's devices, whose chains may outlive them.  A user that may
 * lock without limit is not charged.  False when the pages would go over
 * the limit (the chain is then copied).
 */
static bool vhost_serial_zc_charge(struct vhost_serial *vs,
				   unsigned int npages,
				   struct user_struct **charged)
{
	struct user_struct *user = vs->owner_cred->user;
	unsigned long cur;

	*charged = NULL;
	if (vs->zc_memlock == ULONG_MAX)
		return true;
	if (npages > vs->zc_memlock)
		return false;
	cur = atomic_long_read(&user->locked_vm);
	do {
		if (cur > vs->zc_memlock - npages)
			return false;
	} while (!atomic_long_try_cmpxchg(&user->locked_vm, &cur,
					  cur + npages));
	*charged = get_uid(user);
	return true;
}

static void vhost_serial_zc_uncharge(struct user_struct *charged,
				     unsigned int npages)
{
	if (charged)
		atomic_long_sub(npages, &charged->locked_vm);
}

/* What the owner may lock, taken from the process that becomes owner. */
static unsigned long vhost_serial_memlock_limit(void)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK);

	if (limit == RLIM_INFINITY ||
	    ns_capable_noaudit(&init_user_ns, CAP_IPC_LOCK))
		return ULONG_MAX;
	return limit >> PAGE_SHIFT;
}

static void vhost_serial_zc_unpin(struct vhost_serial_zc *zc)
{
	unsigned int i;

	for (i = 0; i < zc->nsegs; i++)
		unpin_user_page(zc->segs[i].bv_page);
	atomic_sub(zc->nsegs, &zc->hub->pinned);
	vhost_serial_zc_uncharge(zc->user, zc->nsegs);
	zc->nsegs = 0;
}

static void vhost_serial_zc_free(struct vhost_serial_zc *zc)
{
	struct vhost_serial_zc_hub *hub = zc->hub;

	free_uid(zc->user);
	kvfree(zc);
	vhost_serial_zc_hub_put(hub);
}

/*
 * The last reference is gone: the host has released every page.  Hand the
 * chain to the worker for completion, unless the device stopped or went
 * away meanwhile (its ring is no longer the one the chain came from).
 */
static void vhost_serial_zc_put(struct vhost_serial_zc *zc)
{
	struct vhost_serial_zc_hub *hub = zc->hub;
	struct vhost_serial *vs;
	unsigned long flags;
	bool queued = false;

	if (!refcount_dec_and_test(&zc->refs))
		return;
	vhost_serial_zc_unpin(zc);
	spin_lock_irqsave(&hub->lock, flags);
	vs = hub->vs;
	if (vs && zc->gen == hub->gen) {
		/* The worker completes and frees it. */
		llist_add(&zc->done, &vs->zc_done);
		vhost_serial_work_queue(&vs->vqs[VHOST_SERIAL_VQ_CTRL_RX],
					&vs->zc_work);
		queued = true;
	}
	spin_unlock_irqrestore(&hub->lock, flags);
	if (!queued)
		vhost_serial_zc_free(zc);
}

static void vhost_serial_zc_buf_release(struct pipe_inode_info *pipe,
					struct pipe_buffer *buf)
{
	vhost_serial_zc_put((struct vhost_serial_zc *)buf->private);
}

/* tee(2) duplicates a buffer: one more holder of the chain. */
static bool vhost_serial_zc_buf_get(struct pipe_inode_info *pipe,
				    struct pipe_buffer *buf)
{
	struct vhost_serial_zc *zc = (struct vhost_serial_zc *)buf->private;

	return refcount_inc_not_zero(&zc->refs);
}

/* No try_steal: the pages stay the guest's. */
static const struct pipe_buf_operations vhost_serial_zc_buf_ops = {
	.release = vhost_serial_zc_buf_release,
	.get = vhost_serial_zc_buf_get,
};

/* Ends a run of completions on one queue. */
static void vhost_serial_zc_unlock(struct vhost_serial *vs,
				   struct vhost_virtqueue *vq, bool added)
{
	if (added)
		vhost_signal(&vs->dev, vq);
	mutex_unlock(&vq->mutex);
}

/*
 * Completes the chains whose pages the host released; in the worker.  A
 * stopped queue keeps them for its restart (its ring is unchanged unless
 * set up anew, which bumps the generation and makes them stale).
 */
static void vhost_serial_zc_work(struct vhost_work *work)
{
	struct vhost_serial *vs = container_of(work, struct vhost_serial,
					       zc_work);
	struct vhost_virtqueue *vq, *locked = NULL;
	struct vhost_serial_zc *zc, *tmp;
	struct llist_node *list;
	bool added = false;

	list = llist_reverse_order(llist_del_all(&vs->zc_done));
	llist_for_each_entry_safe(zc, tmp, list, done) {
		vq = vhost_serial_port_tx_vq(&vs->ports[zc->port_id]);
		if (vq != locked) {
			if (locked)
				vhost_serial_zc_unlock(vs, locked, added);
			mutex_lock(&vq->mutex);
			locked = vq;
			added = false;
		}
		if (zc->gen != READ_ONCE(vs->zc_hub->gen)) {
			vhost_serial_zc_free(zc);
		} else if (!vhost_vq_get_backend(vq)) {
			llist_add(&zc->done, &vs->zc_stopped);
		} else {
			vhost_add_used(vq, zc->head, 0);
			added = true;
			vhost_serial_zc_free(zc);
		}
	}
	if (locked)
		vhost_serial_zc_unlock(vs, locked, added);
}

/* Frees completions nobody will make: the device is going away. */
static void vhost_serial_zc_drain(struct llist_head *head)
{
	struct vhost_serial_zc *zc, *tmp;

	llist_for_each_entry_safe(zc, tmp, llist_del_all(head), done)
		vhost_serial_zc_free(zc);
}

/*
 * Pins the pages of one chain of guest output.  NULL when the chain is
 * too large to pin (the caller copies it) or pinning failed.
 */
static struct vhost_serial_zc *
vhost_serial_zc_pin(struct vhost_serial_port *port, struct vhost_virtqueue *vq,
		    const struct vhost_serial_chain *c)
{
	unsigned int i, k, nr, npages = 0;
	struct user_struct *charged;
	struct vhost_serial_zc *zc;
	struct page **pages;
	unsigned long addr;
	size_t len, piece;
	int got;

	for (i = 0; i < c->out; i++) {
		addr = (unsigned long)vq->iov[i].iov_base;
		if (vq->iov[i].iov_len)
			npages += DIV_ROUND_UP(offset_in_page(addr) +
					       vq->iov[i].iov_len, PAGE_SIZE);
		if (npages > VHOST_SERIAL_ZC_MAX_PAGES)
			return NULL;
	}
	if (!npages)
		return NULL;
	if (atomic_add_return(npages, &port->vs->zc_hub->pinned) >
	    VHOST_SERIAL_ZC_MAX_PINNED) {
		atomic_sub(npages, &port->vs->zc_hub->pinned);
		return NULL;
	}
	if (!vhost_serial_zc_charge(port->vs, npages, &charged)) {
		atomic_sub(npages, &port->vs->zc_hub->pinned);
		return NULL;
	}
	zc = kvzalloc(struct_size(zc, segs, npages), GFP_KERNEL_ACCOUNT);
	pages = kmalloc_array(npages, sizeof(*pages), GFP_KERNEL);
	if (!zc || !pages)
		goto err_free;

	for (i = 0, k = 0; i < c->out; i++) {
		addr = (unsigned long)vq->iov[i].iov_base;
		len = vq->iov[i].iov_len;
		if (!len)
			continue;
		nr = DIV_ROUND_UP(offset_in_page(addr) + len, PAGE_SIZE);
		/* The worker runs in the owner's mm: these are its pages. */
		got = pin_user_pages_fast(addr & PAGE_MASK, nr, FOLL_LONGTERM,
					  pages + k);
		if (got > 0)
			k += got;
		if (got != nr)
			goto err_unpin;
		for (; len; len -= piece, addr += piece) {
			piece = min_t(size_t, len, PAGE_SIZE - offset_in_page(addr));
			zc->segs[zc->nsegs].bv_page = pages[zc->nsegs];
			zc->segs[zc->nsegs].bv_offset = offset_in_page(addr);
			zc->segs[zc->nsegs].bv_len = piece;
			zc->nsegs++;
		}
	}
	kfree(pages);
	zc->user = charged;
	refcount_set(&zc->refs, 1);
	zc->head = c->head;
	zc->port_id = port->id;
	zc->hub = port->vs->zc_hub;
	refcount_inc(&zc->hub->refs);
	zc->gen = READ_ONCE(zc->hub->gen);
	return zc;

err_unpin:
	pr_warn_ratelimited("port %u: cannot pin guest output for zero copy\n",
			    port->id);
	unpin_user_pages(pages, k);
err_free:
	vhost_serial_zc_uncharge(charged, npages);
	free_uid(charged);
	atomic_sub(npages, &port->vs->zc_hub->pinned);
	kfree(pages);
	kvfree(zc);
	return NULL;
}

/*
 * Links what is left of @zc into the port's pipe.  0 when all of it is in;
 * -EAGAIN when the pipe is full; -EPIPE when it has no reader.
 */
static int vhost_serial_zc_push(struct vhost_serial_port *port,
				struct vhost_serial_zc *zc)
{
	struct pipe_inode_info *pipe = vhost_serial_pipe(port->out);
	struct pipe_buffer buf;
	struct bio_vec *seg;
	bool added = false;
	ssize_t ret = 0;

	ret = vhost_serial_pipe_lock_out(port, pipe);
	if (ret)
		return ret;
	while (zc->next < zc->nsegs) {
		if (pipe_full(pipe->head, pipe->tail, pipe->max_usage)) {
			ret = -EAGAIN;
			break;
		}
		seg = &zc->segs[zc->next];
		buf = (struct pipe_buffer) {
			.page = seg->bv_page,
			.offset = seg->bv_offset + zc->seg_off,
			.len = seg->bv_len - zc->seg_off,
			.ops = &vhost_serial_zc_buf_ops,
			.private = (unsigned long)zc,
		};
		refcount_inc(&zc->refs);
		ret = add_to_pipe(pipe, &buf);
		if (ret < 0)
			break;
		port->tx_bytes += ret;
		zc->next++;
		zc->seg_off = 0;
		added = true;
		ret = 0;
	}
	pipe_unlock(pipe);
	if (added)
		vhost_serial_pipe_wake_readers(pipe);
	return ret;
}

/*
 * Writes what is left of @zc by copy: the backend that replaced the pipe
 * takes no page references.  0 when all of it is out.
 */
static int vhost_serial_zc_copy(struct vhost_serial_port *port,
				struct vhost_serial_zc *zc)
{
	struct iov_iter iter;
	size_t left = 0;
	unsigned int i;
	ssize_t ret;

	for (i = zc->next; i < zc->nsegs; i++)
		left += zc->segs[i].bv_len;
	left -= zc->seg_off;
	iov_iter_bvec(&iter, ITER_SOURCE, zc->segs + zc->next,
		      zc->nsegs - zc->next, left + zc->seg_off);
	iov_iter_advance(&iter, zc->seg_off);
	ret = vhost_serial_backend_write(port, &iter);
	if (ret < 0)
		return ret;
	port->tx_bytes += ret;
	for (ret += zc->seg_off; zc->next < zc->nsegs &&
	     ret >= zc->segs[zc->next].bv_len; zc->next++)
		ret -= zc->segs[zc->next].bv_len;
	zc->seg_off = ret;
	return zc->next == zc->nsegs ? 0 : -EAGAIN;
}

/*
 * Moves the current zero-copy chain on.  True when it is all out (then its
 * pushing reference is dropped); false when the port must wait for the
 * backend (polling armed) or has none.
 */
static bool vhost_serial_zc_flush(struct vhost_serial_port *port)
{
	struct vhost_serial_zc *zc = port->zc_cur;
	int ret;

	if (!zc)
		return true;
	/* From a ring set up anew since: nobody waits for it any more. */
	if (zc->gen != READ_ONCE(port->vs->zc_hub->gen)) {
		port->zc_cur = NULL;
		vhost_serial_zc_put(zc);
		return true;
	}
	if (!port->out || READ_ONCE(port->out_hup))
		return false;
	ret = port->zerocopy ? vhost_serial_zc_push(port, zc) :
			       vhost_serial_zc_copy(port, zc);
	if (!ret) {
		port->zc_cur = NULL;
		port->tx_bufs++;
		vhost_serial_zc_put(zc);
		return true;
	}
	if (ret == -EAGAIN) {
		vhost_serial_bpoll_start(&port->out_poll, port->out);
	} else {
		vhost_serial_port_error(port);
		vhost_serial_hangup(port, false);
	}
	return false;
}

/*
 * A chain of guest output on a zero-copy port: pinned and linked into the
 * pipe, completed when the host releases it (-EINPROGRESS); or copied
 * when it cannot be pinned.
 */
static ssize_t vhost_serial_zc_chain(struct vhost_serial_port *port,
				     struct vhost_virtqueue *vq,
				     const struct vhost_serial_chain *c)
{
	struct vhost_serial_zc *zc = NULL;
	int ret;

	/* A chain a copying backend began stays on the copy path. */
	if (!port->tx_offset)
		zc = vhost_serial_zc_pin(port, vq, c);
	if (!zc)
		return vhost_serial_tx_one(port, vq, c->out, false) ? 0 : -EAGAIN;
	ret = vhost_serial_zc_push(port, zc);
	if (ret && !zc->next && !zc->seg_off) {
		/* Nothing went out: the chain stays in the ring. */
		vhost_serial_zc_unpin(zc);
		vhost_serial_zc_free(zc);
		if (ret == -EAGAIN) {
			vhost_serial_bpoll_start(&port->out_poll, port->out);
		} else {
			vhost_serial_port_error(port);
			vhost_serial_hangup(port, false);
		}
		return -EAGAIN;
	}
	/* Popped: from here the chain completes through its references. */
	port->zc_cur = zc;
	vhost_serial_zc_flush(port);
	return -EINPROGRESS;
}

static ssize_t vhost_serial_tx_chain(void *ctx, struct vhost_virtqueue *vq,
				     const struct vhost_serial_chain *c)
{
	struct vhost_serial_port *port = ctx;
	/* Legacy single-port devices have a console on port 0. */
	bool console = READ_ONCE(port->console) || !vhost_serial_multiport(vq);

	/*
	 * Consoles never wait for a reader, so they always copy; so does a
	 * port 0 with console output left from a guest without MULTIPORT,
	 * which must reach the pipe before anything newer.
	 */
	if (port->zerocopy && !console && !port->cbuf_len)
		return vhost_serial_zc_chain(port, vq, c);
	return vhost_serial_tx_one(port, vq, c->out, console) ? 0 : -EAGAIN;
}

/* A partly pushed zero-copy chain must go out before the next one. */
static bool vhost_serial_tx_want_more(void *ctx)
{
	struct vhost_serial_port *port = ctx;

	return !port->zc_cur;
}

static const struct vhost_serial_queue_ops vhost_serial_tx_ops = {
	.name = "port tx",
	.want_more = vhost_serial_tx_want_more,
	.chain = vhost_serial_tx_chain,
	.bad_chain = vhost_serial_port_bad_chain,
};

/*
 * Completes, unread, the chains the guest has queued on a port's transmit
 * queue.  At most one ring's worth per call, which covers everything queued
 * before the call; if the guest keeps adding, the queue runs again.
 * Caller holds the vq mutex.
 */
static void vhost_serial_tx_discard(struct vhost_serial_port *port,
				    struct vhost_virtqueue *vq)
{
	struct vhost_dev *dev = vq->dev;
	unsigned int out, in, i;
	bool added = false;
	int head;

	vhost_disable_notify(dev, vq);
	for (i = 0; i < vq->num; i++) {
		head = vhost_serial_next_chain(vq, &out, &in, NULL, NULL);
		if (unlikely(head < 0)) {
			vhost_serial_bad_chain(&vhost_serial_tx_ops, port, vq,
					       "bad descriptor chain");
			break;
		}
		if (head == vq->num)
			break;
		vhost_add_used(vq, head, 0);
		port->tx_dropped += iov_length(vq->iov, out);
		added = true;
		/* A ring's worth of long chains is no work for one slice. */
		cond_resched();
	}
	if (i == vq->num)
		vhost_poll_queue(&vq->poll);
	if (added)
		vhost_signal(dev, vq);
}

/*
 * A guest that answers the PORT_ADD of a port added again has let go of
 * the removed port: whatever that port had queued is in the ring by now.
 * Drop it here, before the new port's first message can reach the guest,
 * so none of it reaches the new port's backend.  A queue without a
 * backend here was never set up by the guest (control queues start after
 * the port queues and stop before them), so there is nothing to drop.
 * Caller holds the vq mutex.
 */
static void vhost_serial_tx_settle(struct vhost_serial_port *port,
				   struct vhost_virtqueue *vq)
{
	if (!port->tx_stale)
		return;
	if (vhost_vq_get_backend(vq))
		vhost_serial_tx_discard(port, vq);
	port->tx_stale = false;
}

/*
 * Without MULTIPORT the device has port 0 alone, but nothing keeps a guest
 * from setting up the queues of other ports: they are left alone.
 */
static void vhost_serial_legacy_misuse(struct vhost_serial_port *port,
				       struct vhost_virtqueue *vq)
{
	vq_err(vq, "queue of port %u used without MULTIPORT\n", port->id);
	pr_warn_ratelimited("guest uses the queues of port %u without MULTIPORT\n",
			    port->id);
}

static void vhost_serial_handle_tx(struct vhost_serial_port *port)
{
	struct vhost_virtqueue *vq = vhost_serial_port_tx_vq(port);
	const struct cred *old;
	bool console;

	mutex_lock(&vq->mutex);
	if (!vhost_vq_get_backend(vq))
		goto out_unlock;
	old = override_creds(port->vs->owner_cred);
	if (unlikely(port->used_bogus)) {
		port->used_bogus = false;
		vhost_add_used(vq, vq->num, 0);
		vhost_signal(vq->dev, vq);
	}
	/* A removed port's output goes nowhere, as with QEMU's device. */
	if (port->tx_stale) {
		vhost_serial_tx_discard(port, vq);
		/*
		 * Without a control queue nothing else ends it: a port added
		 * again while the device was stopped starts on the ring as
		 * it finds it now (a guest writes nothing while stopped).
		 */
		if (READ_ONCE(port->present) && !vhost_serial_multiport(vq))
			port->tx_stale = false;
	}
	if (port->tx_stale || !READ_ONCE(port->present))
		goto out_creds;
	if (unlikely(!vhost_serial_multiport(vq) && port->id)) {
		vhost_serial_legacy_misuse(port, vq);
		goto out_creds;
	}
	console = READ_ONCE(port->console) || !vhost_serial_multiport(vq);
	/*
	 * Console output kept from before, also of a port 0 that is no
	 * console since the guest's driver started over: with an empty ring
	 * only the backend's wake-up brings the port back here (after a
	 * stop, none is registered).
	 */
	if (!vhost_serial_cbuf_flush(port))
		vhost_serial_wait_out(port);
	if (!vhost_serial_zc_flush(port))
		goto out_creds;
	/* Generic ports keep output in the ring until a backend comes. */
	if (console || (port->out && !READ_ONCE(port->out_hup)))
		vhost_serial_run_queue(vq, &vhost_serial_tx_ops, port);
out_creds:
	revert_creds(old);
out_unlock:
	mutex_unlock(&vq->mutex);
}

static void vhost_serial_tx_kick(struct vhost_work *work)
{
	struct vhost_virtqueue *vq = container_of(work, struct vhost_virtqueue,
						  poll.work);
	struct vhost_serial *vs = container_of(vq->dev, struct vhost_serial,
					       dev);

	vhost_serial_handle_tx(vhost_serial_vq_port(vs, vq));
}

static void vhost_serial_out_poll_work(struct vhost_work *work)
{
	struct vhost_serial_port *port = container_of(work,
						      struct vhost_serial_port,
						      out_poll.work);

	vhost_serial_handle_tx(port);
}

/* ---- control messages from the guest ------------------------------------ */

static void vhost_serial_unknown_port(struct vhost_virtqueue *ctrl_vq, u32 id,
				      u16 event)
{
	pr_warn_ratelimited("guest sent event %u for unknown port %u\n",
			    event, id);
	vq_err(ctrl_vq, "control message for unknown port\n");
}

/*
 * The port a control message of the guest is about, or NULL.  A guest
 * that has not yet read a port's PORT_REMOVE may still speak of the port
 * (close it, or ask for it again at restore): that message is dropped
 * quietly.  One about a port the guest was never told of is an error.
 */
static struct vhost_serial_port *
vhost_serial_guest_port(struct vhost_serial *vs, struct vhost_virtqueue *vq,
			u32 id, u16 event)
{
	struct vhost_serial_port *port;

	if (id < vs->nr_ports) {
		port = &vs->ports[array_index_nospec(id, vs->nr_ports)];
		if (port->present && port->announced)
			return port;
		if (port->removed)
			return NULL;
	}
	vhost_serial_unknown_port(vq, id, event);
	return NULL;
}

/* What a guest learns of a port once it is ready, in QEMU's order. */
static void vhost_serial_port_announce(struct vhost_serial_port *port)
{
	if (port->console) {
		vhost_serial_send(port->vs, port->id,
				  VIRTIO_CONSOLE_CONSOLE_PORT, 1);
		if (port->cols || port->rows)
			vhost_serial_send_resize(port);
	}
	if (port->name_len)
		vhost_serial_send_name(port);
	if (port->host_open)
		vhost_serial_send(port->vs, port->id, VIRTIO_CONSOLE_PORT_OPEN,
				  1);
}

static void vhost_serial_port_ready(struct vhost_serial_port *port, u16 value)
{
	if (!value) {
		vhost_serial_port_error(port);
		pr_warn_ratelimited("guest failed to add port %u\n", port->id);
		return;
	}
	/*
	 * Asked again: Linux's in-tree driver forgets the host's side at
	 * freeze and sends PORT_READY at restore to learn it anew, as QEMU's
	 * device answers every PORT_READY.
	 */
	if (port->guest_ready) {
		vhost_serial_port_announce(port);
		return;
	}
	port->guest_ready = true;
	vhost_serial_port_announce(port);
	vhost_serial_port_notify(port);
}

/* The guest no longer has the port ready or open; caller holds port_lock. */
static void vhost_serial_port_guest_gone(struct vhost_serial_port *port)
{
	if (!port->guest_ready && !port->guest_open)
		return;
	port->guest_ready = false;
	WRITE_ONCE(port->guest_open, false);
	vhost_serial_port_notify(port);
}

/*
 * Drop what was queued for a guest driver that has started over: it would
 * take the new driver's room, and the ports announced to it would not fit.
 * The first message stays, as the queue's consumer may be copying it out
 * without the lock; it drops it itself (vhost_serial_ctrl_pending()).
 * Caller holds ctrl_lock.
 */
static void vhost_serial_ctrl_drop_stale(struct vhost_serial *vs)
{
	struct vhost_serial_ctrl_msg *msg, *tmp;

	msg = list_first_entry_or_null(&vs->ctrl_pending,
				       struct vhost_serial_ctrl_msg, node);
	if (!msg)
		return;
	list_for_each_entry_safe_continue(msg, tmp, &vs->ctrl_pending, node) {
		if (msg->gen == vs->ctrl_gen)
			continue;
		list_del(&msg->node);
		vs->ctrl_count--;
		kfree(msg);
	}
}

/* Caller holds vs->port_lock. */
static void vhost_serial_guest_restart(struct vhost_serial *vs)
{
	struct vhost_serial_port *port;
	u32 i;

	spin_lock(&vs->ctrl_lock);
	vs->ctrl_gen++;
	vhost_serial_ctrl_drop_stale(vs);
	spin_unlock(&vs->ctrl_lock);
	for (i = 0; i < vs->nr_ports; i++) {
		port = &vs->ports[i];
		port->announced = false;
		port->removed = false;
		port->ready_owed = 0;
		vhost_serial_port_guest_gone(port);
	}
}

/*
 * PORT_READY answers one PORT_ADD, and only the answer to the latest one
 * counts: a guest that has not yet seen a port's removal may still answer
 * the PORT_ADD before it after the port was added again.
 */
static void vhost_serial_guest_port_ready(struct vhost_serial *vs,
					  struct vhost_virtqueue *ctrl_vq,
					  u32 id, u16 value)
{
	struct vhost_serial_port *port;
	struct vhost_virtqueue *tx;
	bool owed;

	if (id >= vs->nr_ports)
		goto unknown;
	port = &vs->ports[array_index_nospec(id, vs->nr_ports)];
	tx = vhost_serial_port_tx_vq(port);
	/*
	 * Nests inside the control tx vq mutex (port 0's tx vq has the
	 * lower index: nothing here may take them in index order).
	 */
	mutex_lock_nested(&tx->mutex, 1);
	mutex_lock(&vs->port_lock);
	owed = port->ready_owed;
	if (owed && --port->ready_owed)
		goto out_unlock;
	/*
	 * An answer for a removed port is expected while the guest may not
	 * have seen the removal yet; otherwise it is an error.
	 */
	if (!port->present || !port->announced) {
		if (!owed && !port->removed)
			goto unknown_unlock;
		goto out_unlock;
	}
	if (value)
		vhost_serial_tx_settle(port, tx);
	vhost_serial_port_ready(port, value);
out_unlock:
	mutex_unlock(&vs->port_lock);
	mutex_unlock(&tx->mutex);
	return;

unknown_unlock:
	mutex_unlock(&vs->port_lock);
	mutex_unlock(&tx->mutex);
unknown:
	vhost_serial_unknown_port(ctrl_vq, id, VIRTIO_CONSOLE_PORT_READY);
}

static void vhost_serial_guest_msg(struct vhost_serial *vs,
				   struct vhost_virtqueue *vq,
				   const struct virtio_console_control *hdr)
{
	u32 id = vhost32_to_cpu(vq, hdr->id);
	u16 event = vhost16_to_cpu(vq, hdr->event);
	u16 value = vhost16_to_cpu(vq, hdr->value);
	struct vhost_serial_port *port;
	u32 i;

	if (event == VIRTIO_CONSOLE_PORT_READY) {
		vhost_serial_guest_port_ready(vs, vq, id, value);
		return;
	}

	mutex_lock(&vs->port_lock);
	switch (event) {
	case VIRTIO_CONSOLE_DEVICE_READY:
		if (!value) {
			pr_warn_ratelimited("guest driver failed to initialise\n");
			break;
		}
		/*
		 * A driver that starts over (guest reboot, driver reload)
		 * knows no port yet: forget what its predecessor had open
		 * and what was queued for it, and announce every port anew.
		 */
		if (vs->guest_ready)
			vhost_serial_guest_restart(vs);
		vs->guest_ready = true;
		for (i = 0; i < vs->nr_ports; i++)
			vhost_serial_announce(&vs->ports[i]);
		break;
	case VIRTIO_CONSOLE_PORT_OPEN:
		port = vhost_serial_guest_port(vs, vq, id, event);
		if (!port)
			break;
		if (port->guest_open == !!value)
			break;
		WRITE_ONCE(port->guest_open, !!value);
		vhost_serial_port_notify(port);
		if (value) {
			port->guest_opens++;
			/* Data may be waiting in the backend. */
			vhost_serial_bpoll_queue(&port->in_poll);
		}
		break;
	default:
		vq_err(vq, "unknown control event\n");
		pr_warn_ratelimited("guest sent unknown control event %u\n",
				    event);
		break;
	}
	mutex_unlock(&vs->port_lock);
}

static ssize_t vhost_serial_ctrl_tx_chain(void *ctx, struct vhost_virtqueue *vq,
					  const struct vhost_serial_chain *c)
{
	struct virtio_console_control hdr;
	struct iov_iter iter;

	iov_iter_init(&iter, ITER_SOURCE, vq->iov, c->out, c->len);
	if (unlikely(c->len < sizeof(hdr))) {
		vq_err(vq, "control tx: truncated message\n");
		pr_warn_ratelimited("control tx: truncated message (%zu bytes)\n",
				    c->len);
	} else if (copy_from_iter(&hdr, sizeof(hdr), &iter) != sizeof(hdr)) {
		vq_err(vq, "control tx: unreadable message\n");
		pr_warn_ratelimited("control tx: unreadable message\n");
	} else {
		vhost_serial_guest_msg(ctx, vq, &hdr);
	}
	/* Always completed: guests may wait for it with IRQs off. */
	return 0;
}

static const struct vhost_serial_queue_ops vhost_serial_ctrl_tx_ops = {
	.name = "control tx",
	.chain = vhost_serial_ctrl_tx_chain,
};

static void vhost_serial_handle_ctrl_tx(struct vhost_work *work)
{
	struct vhost_virtqueue *vq = container_of(work, struct vhost_virtqueue,
						  poll.work);
	struct vhost_serial *vs = container_of(vq->dev, struct vhost_serial,
					       dev);

	mutex_lock(&vq->mutex);
	if (vhost_vq_get_backend(vq))
		vhost_serial_run_queue(vq, &vhost_serial_ctrl_tx_ops, vs);
	mutex_unlock(&vq->mutex);
}

/* ---- ioctls --------------------------------------------------------------- */

static struct vhost_serial_port *vhost_serial_lookup(struct vhost_serial *vs,
						     u32 id)
{
	if (id >= vs->nr_ports)
		return NULL;
	return &vs->ports[array_index_nospec(id, vs->nr_ports)];
}

static void vhost_serial_kick_port(struct vhost_serial_port *port)
{
	vhost_poll_queue(&vhost_serial_port_rx_vq(port)->poll);
	vhost_poll_queue(&vhost_serial_port_tx_vq(port)->poll);
}

static void vhost_serial_init_port(struct vhost_serial *vs, u32 id)
{
	struct vhost_serial_port *port = &vs->ports[id];

	port->vs = vs;
	port->id = id;
	atomic64_set(&port->errors, 0);
	vhost_serial_bpoll_init(&port->in_poll, vhost_serial_in_poll_work,
				EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR,
				vhost_serial_port_rx_vq(port));
	vhost_serial_bpoll_init(&port->out_poll, vhost_serial_out_poll_work,
				EPOLLOUT | EPOLLHUP | EPOLLERR,
				vhost_serial_port_tx_vq(port));
}

static long vhost_serial_set_num_ports(struct vhost_serial *vs, u32 nr)
{
	struct vhost_virtqueue *vqs, **vq_ptrs;
	struct vhost_serial_port *ports;
	u32 nvqs = 2 * nr + 2;
	long ret = 0;
	u32 i;

	if (nr < 1 || nr > VHOST_SERIAL_MAX_PORTS)
		return -EINVAL;

	mutex_lock(&vs->init_lock);
	if (vs->inited) {
		ret = -EBUSY;
		goto out_unlock;
	}
	ret = -ENOMEM;
	/*
	 * Pages, not kmalloc: a struct vhost_virtqueue is over 18 KiB, and
	 * kmalloc would round the array up to a power of two (128 KiB for
	 * the 4 queues of one port, 4 MiB for 64 ports).  A failure is the
	 * caller's ENOMEM, not a splat in the log.
	 */
	vqs = __vmalloc(array_size(nvqs, sizeof(*vqs)),
			GFP_KERNEL_ACCOUNT | __GFP_ZERO | __GFP_NOWARN);
	if (!vqs)
		goto out_unlock;
	vq_ptrs = kvcalloc(nvqs, sizeof(*vq_ptrs), GFP_KERNEL_ACCOUNT);
	if (!vq_ptrs)
		goto err_free_vqs;
	ports = kvcalloc(nr, sizeof(*ports), GFP_KERNEL_ACCOUNT);
	if (!ports)
		goto err_free_vq_ptrs;

	for (i = 0; i < nvqs; i++) {
		vq_ptrs[i] = &vqs[i];
		if (i == VHOST_SERIAL_VQ_CTRL_RX)
			vqs[i].handle_kick = vhost_serial_ctrl_rx_kick;
		else if (i == VHOST_SERIAL_VQ_CTRL_TX)
			vqs[i].handle_kick = vhost_serial_handle_ctrl_tx;
		else if (i % 2 == 0)
			vqs[i].handle_kick = vhost_serial_rx_kick;
		else
			vqs[i].handle_kick = vhost_serial_tx_kick;
	}
	/*
	 * An iov_limit of 0: the core sizes each queue's dirty-log and
	 * used-heads arrays by it (24 KiB per queue at UIO_MAXIOV), and this
	 * device uses neither; its log entries live in vs->logs.
	 */
	vhost_dev_init(&vs->dev, vq_ptrs, nvqs, 0,
		       VHOST_SERIAL_PKT_WEIGHT, VHOST_SERIAL_WEIGHT, true, NULL);

	vs->vqs = vqs;
	vs->vq_ptrs = vq_ptrs;
	vs->ports = ports;
	vs->nr_ports = nr;
	vs->ctrl_max = VHOST_SERIAL_CTRL_BASE + VHOST_SERIAL_CTRL_PER_PORT * nr;
	for (i = 0; i < nr; i++)
		vhost_serial_init_port(vs, i);
	/* Pairs with the acquire in vhost_serial_ready(). */
	smp_store_release(&vs->inited, true);
	ret = 0;
	goto out_unlock;

err_free_vq_ptrs:
	kvfree(vq_ptrs);
err_free_vqs:
	kvfree(vqs);
out_unlock:
	mutex_unlock(&vs->init_lock);
	return ret;
}

static bool vhost_serial_ready(struct vhost_serial *vs)
{
	/* Pairs with the release in vhost_serial_set_num_ports(). */
	return smp_load_acquire(&vs->inited);
}

static int vhost_serial_check_name(const struct vhost_serial_port_config *cfg,
				   size_t *len)
{
	*len = strnlen(cfg->name, sizeof(cfg->name));
	if (*len > VHOST_SERIAL_NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(cfg->name, '/', *len))
		return -EINVAL;
	return 0;
}

static long vhost_serial_add_port(struct vhost_serial *vs,
				  const struct vhost_serial_port_config *cfg)
{
	bool console = cfg->flags & VHOST_SERIAL_PORT_F_CONSOLE;
	struct vhost_serial_port *port;
	struct vhost_virtqueue *tx;
	u8 *cbuf = NULL;
	size_t name_len;
	long ret;

	if (cfg->flags & ~VHOST_SERIAL_PORT_F_ALL)
		return -EINVAL;
	ret = vhost_serial_check_name(cfg, &name_len);
	if (ret)
		return ret;
	port = vhost_serial_lookup(vs, cfg->id);
	if (!port)
		return -EINVAL;
	/*
	 * Port 0 is the console of a guest that does not negotiate
	 * MULTIPORT, whatever its flags say: it needs the buffer as well.
	 */
	if (console || !cfg->id) {
		cbuf = kmalloc(VHOST_SERIAL_CONSOLE_BUF, GFP_KERNEL_ACCOUNT);
		if (!cbuf)
			return -ENOMEM;
	}

	tx = vhost_serial_port_tx_vq(port);
	mutex_lock(&vs->dev.mutex);
	mutex_lock(&tx->mutex);
	mutex_lock(&vs->port_lock);
	if (port->present) {
		ret = -EEXIST;
		goto out_unlock;
	}
	swap(port->cbuf, cbuf);
	port->cbuf_len = 0;
	port->tx_offset = 0;
	/*
	 * Without a control queue no PORT_READY ends the stale output: drop
	 * it now, or, stopped, when the queue runs next (vhost_serial_handle_tx).
	 */
	if (port->tx_stale && !vhost_serial_multiport(tx) &&
	    vhost_vq_get_backend(tx)) {
		vhost_serial_tx_discard(port, tx);
		port->tx_stale = false;
	}
	port->console = console;
	port->name_len = name_len;
	memcpy(port->name, cfg->name, name_len);
	port->name[name_len] = '\0';
	port->cols = 0;
	port->rows = 0;
	port->guest_ready = false;
	WRITE_ONCE(port->guest_open, false);
	port->guest_opens = 0;
	WRITE_ONCE(port->present, true);
	vhost_serial_announce(port);
	ret = 0;
out_unlock:
	mutex_unlock(&vs->port_lock);
	mutex_unlock(&tx->mutex);
	mutex_unlock(&vs->dev.mutex);
	kfree(cbuf);
	return ret;
}

/* Swap a port's backend files; caller holds dev.mutex and both vq mutexes. */
static void vhost_serial_swap_backend(struct vhost_serial_port *port,
				      struct file **in, struct file **out,
				      bool zerocopy)
{
	vhost_serial_bpoll_stop(&port->in_poll);
	vhost_serial_bpoll_stop(&port->out_poll);
	swap(port->in, *in);
	swap(port->out, *out);
	port->zerocopy = zerocopy;
	WRITE_ONCE(port->in_hup, false);
	WRITE_ONCE(port->out_hup, false);
	if (port->in && port->vs->running)
		vhost_serial_bpoll_start(&port->in_poll, port->in);
}

static void vhost_serial_lock_port_vqs(struct vhost_serial_port *port)
{
	mutex_lock(&vhost_serial_port_rx_vq(port)->mutex);
	mutex_lock_nested(&vhost_serial_port_tx_vq(port)->mutex, 1);
}

static void vhost_serial_unlock_port_vqs(struct vhost_serial_port *port)
{
	mutex_unlock(&vhost_serial_port_tx_vq(port)->mutex);
	mutex_unlock(&vhost_serial_port_rx_vq(port)->mutex);
}

static long vhost_serial_del_port(struct vhost_serial *vs, u32 id)
{
	struct vhost_serial_port *port = vhost_serial_lookup(vs, id);
	struct file *in = NULL, *out = NULL;
	struct vhost_serial_zc *zc;
	struct eventfd_ctx *event;
	long ret = 0;

	if (!port)
		return -EINVAL;
	mutex_lock(&vs->dev.mutex);
	if (!READ_ONCE(port->present)) {
		ret = -ENOENT;
		goto out_unlock;
	}
	vhost_serial_lock_port_vqs(port);
	vhost_serial_swap_backend(port, &in, &out, false);
	mutex_lock(&vs->port_lock);
	WRITE_ONCE(port->present, false);
	/*
	 * PORT_REMOVE alone tells the guest.  A PORT_OPEN 0 for the backend
	 * going with the port would reach it first and end its readers'
	 * reads with end of file instead of the removal.
	 */
	port->host_open = false;
	if (port->announced)
		port->removed = !vhost_serial_send(vs, id,
						   VIRTIO_CONSOLE_PORT_REMOVE,
						   1);
	port->announced = false;
	port->guest_ready = false;
	WRITE_ONCE(port->guest_open, false);
	event = port->event;
	port->event = NULL;
	port->cbuf_len = 0;
	port->tx_offset = 0;
	port->tx_stale = true;
	/* A port added again under this id starts clean. */
	zc = port->zc_cur;
	port->zc_cur = NULL;
	mutex_unlock(&vs->port_lock);
	vhost_serial_unlock_port_vqs(port);
	if (in)
		fput(in);
	if (out)
		fput(out);
	/* Hand the guest back what the port had queued. */
	vhost_poll_queue(&vhost_serial_port_tx_vq(port)->poll);
	if (zc)
		vhost_serial_zc_put(zc);
	if (event)
		eventfd_ctx_put(event);
out_unlock:
	mutex_unlock(&vs->dev.mutex);
	return ret;
}

/*
 * @mode is FMODE_READ or FMODE_WRITE.  A file that cannot be read or
 * written (a vhost device's own file, say) is refused: besides being of no
 * use, holding it could keep it alive forever.  So is a socket that is not
 * a byte stream: a datagram larger than the guest's buffer would lose its
 * tail, and an empty one would read as the peer's hang-up.
 */
static struct file *vhost_serial_get_file(int fd, fmode_t mode)
{
	fmode_t can = mode == FMODE_READ ? FMODE_CAN_READ : FMODE_CAN_WRITE;
	struct socket *sock;
	struct file *file;

	if (fd == -1)
		return NULL;
	file = fget(fd);
	if (!file)
		return ERR_PTR(-EBADF);
	sock = sock_from_file(file);
	if ((file->f_mode & (mode | can)) != (mode | can) ||
	    !vhost_serial_file_ok(file) ||
	    (sock && sock->type != SOCK_STREAM)) {
		fput(file);
		return ERR_PTR(-EINVAL);
	}
	return file;
}

static long vhost_serial_set_backend(struct vhost_serial *vs,
				     const struct vhost_serial_backend *b)
{
	struct vhost_serial_port *port = vhost_serial_lookup(vs, b->id);
	struct file *in, *out;
	long ret = 0;

	if (!port || (b->flags & ~VHOST_SERIAL_BACKEND_F_ALL) ||
	    b->in_fd < -1 || b->out_fd < -1)
		return -EINVAL;
	in = vhost_serial_get_file(b->in_fd, FMODE_READ);
	if (IS_ERR(in))
		return PTR_ERR(in);
	out = vhost_serial_get_file(b->out_fd, FMODE_WRITE);
	if (IS_ERR(out)) {
		ret = PTR_ERR(out);
		goto out_put_in;
	}
	/* Guest pages go by reference only into a pipe. */
	if ((b->flags & VHOST_SERIAL_BACKEND_F_ZEROCOPY) &&
	    !vhost_serial_pipe(out)) {
		ret = -EINVAL;
		goto out_put;
	}

	mutex_lock(&vs->dev.mutex);
	if (!READ_ONCE(port->present)) {
		ret = -ENOENT;
		goto out_unlock;
	}
	vhost_serial_lock_port_vqs(port);
	vhost_serial_swap_backend(port, &in, &out,
				  b->flags & VHOST_SERIAL_BACKEND_F_ZEROCOPY);
	/*
	 * Before the worker may find the new backend hung up: its PORT_OPEN 0
	 * must come after this PORT_OPEN 1, not before.
	 */
	mutex_lock(&vs->port_lock);
	vhost_serial_set_host_open(port, port->in || port->out);
	mutex_unlock(&vs->port_lock);
	vhost_serial_unlock_port_vqs(port);
	/* Guest output waiting in the ring, or input waiting in the backend. */
	vhost_serial_kick_port(port);
out_unlock:
	mutex_unlock(&vs->dev.mutex);
out_put:
	if (out)
		fput(out);
out_put_in:
	if (in)
		fput(in);
	return ret;
}

static long vhost_serial_set_port_event(struct vhost_serial *vs,
					const struct vhost_serial_port_event *e)
{
	struct vhost_serial_port *port = vhost_serial_lookup(vs, e->id);
	struct eventfd_ctx *ctx = NULL;
	long ret = 0;

	if (!port || e->fd < -1)
		return -EINVAL;
	if (e->fd != -1) {
		ctx = eventfd_ctx_fdget(e->fd);
		if (IS_ERR(ctx))
			return PTR_ERR(ctx);
	}
	mutex_lock(&vs->port_lock);
	if (!port->present) {
		ret = -ENOENT;
		goto out_unlock;
	}
	swap(port->event, ctx);
out_unlock:
	mutex_unlock(&vs->port_lock);
	if (ctx)
		eventfd_ctx_put(ctx);
	return ret;
}

static long vhost_serial_get_port_state(struct vhost_serial *vs,
					struct vhost_serial_port_state *st)
{
	struct vhost_serial_port *port = vhost_serial_lookup(vs, st->id);
	u32 state = 0;

	if (!port)
		return -EINVAL;
	mutex_lock(&vs->port_lock);
	if (port->present)
		state |= VHOST_SERIAL_STATE_PRESENT;
	if (port->console)
		state |= VHOST_SERIAL_STATE_CONSOLE;
	if (port->announced)
		state |= VHOST_SERIAL_STATE_ANNOUNCED;
	if (port->guest_ready)
		state |= VHOST_SERIAL_STATE_GUEST_READY;
	if (port->guest_open)
		state |= VHOST_SERIAL_STATE_GUEST_OPEN;
	if (port->host_open)
		state |= VHOST_SERIAL_STATE_HOST_OPEN;
	if (READ_ONCE(port->in_hup) || READ_ONCE(port->out_hup))
		state |= VHOST_SERIAL_STATE_HUP;
	if (READ_ONCE(port->zerocopy))
		state |= VHOST_SERIAL_STATE_ZEROCOPY;
	st->events = port->events;
	st->guest_opens = port->guest_opens;
	mutex_unlock(&vs->port_lock);

	st->state = state;
	st->rx_bytes = READ_ONCE(port->rx_bytes);
	st->rx_bufs = READ_ONCE(port->rx_bufs);
	st->tx_bytes = READ_ONCE(port->tx_bytes);
	st->tx_bufs = READ_ONCE(port->tx_bufs);
	st->tx_dropped = READ_ONCE(port->tx_dropped);
	st->errors = atomic64_read(&port->errors);
	return 0;
}

static long vhost_serial_resize(struct vhost_serial *vs,
				const struct vhost_serial_resize *r)
{
	struct vhost_serial_port *port = vhost_serial_lookup(vs, r->id);
	long ret = 0;

	if (!port)
		return -EINVAL;
	/* The message queues work: not while RESET_OWNER ends the worker. */
	mutex_lock(&vs->dev.mutex);
	mutex_lock(&vs->port_lock);
	if (!port->present) {
		ret = -ENOENT;
		goto out_unlock;
	}
	if (!port->console) {
		ret = -EINVAL;
		goto out_unlock;
	}
	port->cols = r->cols;
	port->rows = r->rows;
	if (port->guest_ready)
		ret = vhost_serial_send_resize(port);
out_unlock:
	mutex_unlock(&vs->port_lock);
	mutex_unlock(&vs->dev.mutex);
	return ret;
}

static bool vhost_serial_is_ctrl_vq(u32 index)
{
	return index == VHOST_SERIAL_VQ_CTRL_RX ||
	       index == VHOST_SERIAL_VQ_CTRL_TX;
}

static int vhost_serial_set_vq_backend(struct vhost_serial *vs,
				       struct vhost_virtqueue *vq, bool run)
{
	int ret = 0;

	mutex_lock(&vq->mutex);
	if (!run) {
		vhost_vq_set_backend(vq, NULL);
	} else if (vq->desc) {
		/* Queues the guest never set up stay stopped. */
		if (!vhost_vq_access_ok(vq)) {
			ret = -EFAULT;
		} else {
			vhost_vq_set_backend(vq, vs);
			ret = vhost_vq_init_access(vq);
			if (ret)
				vhost_vq_set_backend(vq, NULL);
		}
	}
	mutex_unlock(&vq->mutex);
	return ret;
}

/*
 * Set every configured queue's backend; caller holds dev.mutex.  The
 * control queues start after the port queues and stop before them, so
 * that a control message the worker handles (PORT_READY settles a port's
 * transmit queue) finds the port queues running.
 */
static int vhost_serial_set_vq_backends(struct vhost_serial *vs, bool run)
{
	bool ctrl_pass;
	int pass, ret;
	u32 i;

	for (pass = 0; pass < 2; pass++) {
		ctrl_pass = run ? pass == 1 : pass == 0;
		for (i = 0; i < vs->dev.nvqs; i++) {
			if (vhost_serial_is_ctrl_vq(i) != ctrl_pass)
				continue;
			ret = vhost_serial_set_vq_backend(vs, &vs->vqs[i], run);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static void vhost_serial_stop_polls(struct vhost_serial *vs)
{
	struct vhost_serial_port *port;
	u32 i;

	for (i = 0; i < vs->nr_ports; i++) {
		port = &vs->ports[i];
		vhost_serial_lock_port_vqs(port);
		vhost_serial_bpoll_stop(&port->in_poll);
		vhost_serial_bpoll_stop(&port->out_poll);
		vhost_serial_unlock_port_vqs(port);
	}
}

/*
 * The device goes away: chains whose pages still sit in pipes are no
 * longer completed, their release only unpins them.
 */
static void vhost_serial_zc_orphan(struct vhost_serial *vs)
{
	struct vhost_serial_zc_hub *hub = vs->zc_hub;
	unsigned long flags;

	spin_lock_irqsave(&hub->lock, flags);
	WRITE_ONCE(hub->gen, hub->gen + 1);
	hub->vs = NULL;
	spin_unlock_irqrestore(&hub->lock, flags);
}

static long vhost_serial_stop(struct vhost_serial *vs)
{
	long ret;

	mutex_lock(&vs->dev.mutex);
	ret = vhost_dev_check_owner(&vs->dev);
	if (ret)
		goto out_unlock;
	vs->running = false;
	vhost_serial_set_vq_backends(vs, false);
	vhost_serial_stop_polls(vs);
	vhost_dev_flush(&vs->dev);
out_unlock:
	mutex_unlock(&vs->dev.mutex);
	return ret;
}

static void vhost_serial_zc_restart(struct vhost_serial *vs)
{
	struct llist_node *list = llist_del_all(&vs->zc_stopped);
	struct llist_node *last = list;

	if (!list)
		return;
	while (last->next)
		last = last->next;
	llist_add_batch(list, last, &vs->zc_done);
	vhost_serial_work_queue(&vs->vqs[VHOST_SERIAL_VQ_CTRL_RX],
				&vs->zc_work);
}

static long vhost_serial_start(struct vhost_serial *vs)
{
	struct vhost_serial_port *port;
	long ret;
	u32 i;

	mutex_lock(&vs->dev.mutex);
	ret = vhost_dev_check_owner(&vs->dev);
	if (ret)
		goto out_unlock;
	if (vs->running)
		goto out_unlock;
	ret = vhost_serial_set_vq_backends(vs, true);
	if (ret) {
		vhost_serial_set_vq_backends(vs, false);
		goto out_unlock;
	}
	vs->running = true;
	for (i = 0; i < vs->nr_ports; i++) {
		port = &vs->ports[i];
		vhost_serial_lock_port_vqs(port);
		if (port->in)
			vhost_serial_bpoll_start(&port->in_poll, port->in);
		vhost_serial_unlock_port_vqs(port);
		vhost_serial_kick_port(port);
	}
	/* Buffers may have been posted before we were started. */
	vhost_poll_queue(&vs->vqs[VHOST_SERIAL_VQ_CTRL_TX].poll);
	/* Zero-copy chains released while we were stopped. */
	vhost_serial_zc_restart(vs);
	vhost_serial_work_queue(&vs->vqs[VHOST_SERIAL_VQ_CTRL_RX],
				&vs->ctrl_work);
out_unlock:
	mutex_unlock(&vs->dev.mutex);
	return ret;
}

/* Kept until release once allocated: logging may be switched on again. */
static int vhost_serial_alloc_logs(struct vhost_serial *vs)
{
	if (vs->logs)
		return 0;
	vs->logs = kvmalloc_array(array_size(vs->dev.nvqs / 2, UIO_MAXIOV),
				  sizeof(*vs->logs), GFP_KERNEL_ACCOUNT);
	return vs->logs ? 0 : -ENOMEM;
}

static long vhost_serial_set_features(struct vhost_serial *vs, u64 features)
{
	struct vhost_virtqueue *vq;
	long ret = 0;
	u32 i;

	if (features & ~VHOST_SERIAL_FEATURES)
		return -EOPNOTSUPP;

	mutex_lock(&vs->dev.mutex);
	if (features & (1ULL << VHOST_F_LOG_ALL)) {
		if (!vhost_log_access_ok(&vs->dev)) {
			ret = -EFAULT;
			goto out_unlock;
		}
		ret = vhost_serial_alloc_logs(vs);
		if (ret)
			goto out_unlock;
	}
	for (i = 0; i < vs->dev.nvqs; i++) {
		vq = &vs->vqs[i];
		mutex_lock(&vq->mutex);
		vq->acked_features = features;
		mutex_unlock(&vq->mutex);
	}
out_unlock:
	mutex_unlock(&vs->dev.mutex);
	return ret;
}

/*
 * A ring set up anew (vhost allows it only while the device is stopped)
 * is not the ring that chains still in pipes came from.
 */
static void vhost_serial_zc_new_ring(struct vhost_serial *vs)
{
	struct vhost_serial_zc_hub *hub = vs->zc_hub;
	unsigned long flags;

	spin_lock_irqsave(&hub->lock, flags);
	WRITE_ONCE(hub->gen, hub->gen + 1);
	spin_unlock_irqrestore(&hub->lock, flags);
}

/* What makes a ring the one chains in pipes and a partial write came from. */
struct vhost_serial_ring_id {
	vring_desc_t __user *desc;
	vring_avail_t __user *avail;
	vring_used_t __user *used;
	unsigned int num;
	u16 last_avail_idx;
};

static void vhost_serial_ring_id(struct vhost_virtqueue *vq,
				 struct vhost_serial_ring_id *id)
{
	mutex_lock(&vq->mutex);
	id->desc = vq->desc;
	id->avail = vq->avail;
	id->used = vq->used;
	id->num = vq->num;
	id->last_avail_idx = vq->last_avail_idx;
	mutex_unlock(&vq->mutex);
}

static bool vhost_serial_ring_id_eq(const struct vhost_serial_ring_id *a,
				    const struct vhost_serial_ring_id *b)
{
	return a->desc == b->desc && a->avail == b->avail &&
	       a->used == b->used && a->num == b->num &&
	       a->last_avail_idx == b->last_avail_idx;
}

/*
 * The queue a VHOST_SET_VRING_NUM, _BASE or _ADDR is about: the index
 * leads both structures.  A VMM that changes it under the vhost core only
 * misleads itself: the ring's identity guards its guest, not the host.
 */
static struct vhost_virtqueue *
vhost_serial_ring_ioctl_vq(struct vhost_serial *vs, unsigned int ioctl,
			   void __user *argp)
{
	u32 idx;

	if (ioctl != VHOST_SET_VRING_NUM && ioctl != VHOST_SET_VRING_BASE &&
	    ioctl != VHOST_SET_VRING_ADDR)
		return NULL;
	if (get_user(idx, (u32 __user *)argp) || idx >= vs->dev.nvqs)
		return NULL;
	return vs->dev.vqs[array_index_nospec(idx, vs->dev.nvqs)];
}

/*
 * A VMM sets every ring again whenever it starts the device, also after a
 * mere pause, and sets a running ring's addresses again to switch
 * VHOST_VRING_F_LOG on for migration: only a ring that is really another
 * one (new addresses, size or position) ends the chains still in pipes
 * and the partial write of its port.  Caller holds dev.mutex.
 */
static void vhost_serial_ring_changed(struct vhost_serial *vs,
				      struct vhost_virtqueue *vq)
{
	u32 idx = vq - vs->vqs;
	struct vhost_serial_port *port;

	vhost_serial_zc_new_ring(vs);
	/* Transmit queues are the odd ones, but for the control queue's. */
	if (!(idx & 1) || vhost_serial_is_ctrl_vq(idx))
		return;
	port = vhost_serial_vq_port(vs, vq);
	mutex_lock(&vq->mutex);
	port->tx_offset = 0;
	mutex_unlock(&vq->mutex);
}

/*
 * What the guest had in its rings is gone: zero-copy chains still in
 * pipes are released without completion, partly written output is not
 * resumed.  Called with the device stopped and flushed.
 */
static void vhost_serial_drop_guest_output(struct vhost_serial *vs)
{
	struct vhost_serial_port *port;
	u32 i;

	vhost_serial_zc_new_ring(vs);
	vhost_serial_zc_drain(&vs->zc_done);
	vhost_serial_zc_drain(&vs->zc_stopped);
	for (i = 0; i < vs->nr_ports; i++) {
		port = &vs->ports[i];
		vhost_serial_lock_port_vqs(port);
		port->tx_offset = 0;
		if (port->zc_cur)
			vhost_serial_zc_put(port->zc_cur);
		port->zc_cur = NULL;
		vhost_serial_unlock_port_vqs(port);
	}
}

/*
 * The guest behind the rings is gone.  Ports, their names and backends
 * belong to the VMM and stay; what the guest had popped, opened or was
 * about to be told goes, so that the next guest starts from DEVICE_READY.
 * Called with the device stopped and flushed.
 */
static void vhost_serial_forget_guest(struct vhost_serial *vs)
{
	vhost_serial_drop_guest_output(vs);
	mutex_lock(&vs->port_lock);
	if (vs->guest_ready)
		vhost_serial_guest_restart(vs);
	vs->guest_ready = false;
	mutex_unlock(&vs->port_lock);
	vhost_serial_ctrl_flush_pending(vs);
}

/*
 * The VMM reset the device.  A driver restoring from a freeze asks for its
 * ports again with PORT_READY (and PORT_OPEN for those it has open),
 * without DEVICE_READY: the ports stay announced and messages queued for
 * the guest stay queued.  A new driver's DEVICE_READY starts over anyway.
 * Called with the device stopped and flushed.
 */
static void vhost_serial_guest_reset(struct vhost_serial *vs)
{
	u32 i;

	vhost_serial_drop_guest_output(vs);
	mutex_lock(&vs->port_lock);
	for (i = 0; i < vs->nr_ports; i++)
		vhost_serial_port_guest_gone(&vs->ports[i]);
	mutex_unlock(&vs->port_lock);
}

/* VHOST_SERIAL_RESET_GUEST: the VMM reset the device; the owner stays. */
static long vhost_serial_reset_guest(struct vhost_serial *vs)
{
	long ret;

	mutex_lock(&vs->dev.mutex);
	ret = vhost_dev_check_owner(&vs->dev);
	if (ret)
		goto out_unlock;
	if (vs->running) {
		ret = -EBUSY;
		goto out_unlock;
	}
	vhost_dev_flush(&vs->dev);
	vhost_serial_guest_reset(vs);
out_unlock:
	mutex_unlock(&vs->dev.mutex);
	return ret;
}

/* VHOST_RESET_OWNER: another process may take the device over. */
static long vhost_serial_reset_owner(struct vhost_serial *vs)
{
	struct vhost_iotlb *umem;
	long ret;

	mutex_lock(&vs->dev.mutex);
	ret = vhost_dev_check_owner(&vs->dev);
	if (ret)
		goto out_unlock;
	umem = vhost_dev_reset_owner_prepare();
	if (!umem) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	vs->running = false;
	vhost_serial_set_vq_backends(vs, false);
	vhost_serial_stop_polls(vs);
	/*
	 * Chains still in pipes belong to the old guest: from here their
	 * release queues no work on the worker that is about to go.
	 */
	vhost_serial_zc_new_ring(vs);
	vhost_dev_flush(&vs->dev);
	/* Kick polls hold the old eventfds' wait queues: let go first. */
	vhost_dev_stop(&vs->dev);
	vhost_serial_forget_guest(vs);
	vhost_dev_reset_owner(&vs->dev, umem);
	put_cred(vs->owner_cred);
	vs->owner_cred = NULL;
out_unlock:
	mutex_unlock(&vs->dev.mutex);
	return ret;
}

static long vhost_serial_check_owner(struct vhost_serial *vs)
{
	long ret;

	mutex_lock(&vs->dev.mutex);
	ret = vhost_dev_check_owner(&vs->dev);
	mutex_unlock(&vs->dev.mutex);
	return ret;
}

static long vhost_serial_generic_ioctl(struct vhost_serial *vs,
				       unsigned int ioctl, void __user *argp)
{
	struct vhost_serial_ring_id before, after;
	struct vhost_virtqueue *vq;
	long ret;

	mutex_lock(&vs->dev.mutex);
	if (vhost_serial_is_worker_ioctl(ioctl)) {
		ret = vhost_serial_worker_ioctl(&vs->dev, ioctl, argp);
	} else {
		ret = vhost_dev_ioctl(&vs->dev, ioctl, argp);
		if (!ret && ioctl == VHOST_SET_OWNER) {
			vs->owner_cred = get_current_cred();
			vs->zc_memlock = vhost_serial_memlock_limit();
			vs->fsize_limit = rlimit(RLIMIT_FSIZE);
		}
		if (ret == -ENOIOCTLCMD) {
			vq = vhost_serial_ring_ioctl_vq(vs, ioctl, argp);
			if (vq)
				vhost_serial_ring_id(vq, &before);
			ret = vhost_vring_ioctl(&vs->dev, ioctl, argp);
			if (!ret && vq) {
				vhost_serial_ring_id(vq, &after);
				if (!vhost_serial_ring_id_eq(&before, &after))
					vhost_serial_ring_changed(vs, vq);
			}
		} else {
			vhost_dev_flush(&vs->dev);
		}
	}
	mutex_unlock(&vs->dev.mutex);
	return ret;
}

static long vhost_serial_dev_ioctl(struct file *f, unsigned int ioctl,
				   unsigned long arg)
{
	struct vhost_serial *vs = f->private_data;
	void __user *argp = (void __user *)arg;
	struct vhost_serial_port_config cfg;
	struct vhost_serial_port_event event;
	struct vhost_serial_port_state state;
	struct vhost_serial_backend backend;
	struct vhost_serial_resize size;
	u64 features;
	long ret;
	u32 val;
	int run;

	switch (ioctl) {
	case VHOST_GET_FEATURES:
		features = VHOST_SERIAL_FEATURES;
		if (copy_to_user(argp, &features, sizeof(features)))
			return -EFAULT;
		return 0;
	case VHOST_SERIAL_SET_NUM_PORTS:
		if (copy_from_user(&val, argp, sizeof(val)))
			return -EFAULT;
		return vhost_serial_set_num_ports(vs, val);
	}

	if (!vhost_serial_ready(vs))
		return -EBADFD;

	/*
	 * Whoever holds the file but did not set the owner (a child, a
	 * process the fd was passed to) may not drive the device.
	 */
	if (ioctl != VHOST_SET_OWNER) {
		ret = vhost_serial_check_owner(vs);
		if (ret)
			return ret;
	}

	switch (ioctl) {
	case VHOST_RESET_OWNER:
		return vhost_serial_reset_owner(vs);
	case VHOST_SET_FEATURES:
		if (copy_from_user(&features, argp, sizeof(features)))
			return -EFAULT;
		return vhost_serial_set_features(vs, features);
	case VHOST_SERIAL_ADD_PORT:
		if (copy_from_user(&cfg, argp, sizeof(cfg)))
			return -EFAULT;
		return vhost_serial_add_port(vs, &cfg);
	case VHOST_SERIAL_DEL_PORT:
		if (copy_from_user(&val, argp, sizeof(val)))
			return -EFAULT;
		return vhost_serial_del_port(vs, val);
	case VHOST_SERIAL_SET_BACKEND:
		if (copy_from_user(&backend, argp, sizeof(backend)))
			return -EFAULT;
		return vhost_serial_set_backend(vs, &backend);
	case VHOST_SERIAL_SET_PORT_EVENT:
		if (copy_from_user(&event, argp, sizeof(event)))
			return -EFAULT;
		return vhost_serial_set_port_event(vs, &event);
	case VHOST_SERIAL_GET_PORT_STATE:
		if (copy_from_user(&state, argp, sizeof(state)))
			return -EFAULT;
		ret = vhost_serial_get_port_state(vs, &state);
		if (!ret && copy_to_user(argp, &state, sizeof(state)))
			return -EFAULT;
		return ret;
	case VHOST_SERIAL_RESIZE:
		if (copy_from_user(&size, argp, sizeof(size)))
			return -EFAULT;
		return vhost_serial_resize(vs, &size);
	case VHOST_SERIAL_SET_RUNNING:
		if (copy_from_user(&run, argp, sizeof(run)))
			return -EFAULT;
		return run ? vhost_serial_start(vs) : vhost_serial_stop(vs);
	case VHOST_SERIAL_RESET_GUEST:
		return vhost_serial_reset_guest(vs);
	default:
		return vhost_serial_generic_ioctl(vs, ioctl, argp);
	}
}

/* ---- fault injection (debugfs) ------------------------------------------ */

/*
 * A guest driver must survive a device that breaks the protocol, and QEMU's
 * device never does.  So that tests of guest drivers can see it happen, the
 * device can be told to, by root, through debugfs:
 *
 *   vhost-serial/<pid>-<n>/ports    "<id> <name>" for each port present
 *   vhost-serial/<pid>-<n>/inject   one command per write:
 *     ctrl ID EVENT VALUE [NAME]    queue a control message as given; NAME
 *                                   goes out as is, without a terminator
 *     used_extra ID BYTES           report the next buffer that port ID
 *                                   fills for the guest BYTES longer
 *     used_empty ID COUNT           hand the next COUNT buffers of port
 *                                   ID back to the guest unfilled
 *     used_bogus ID                 put an entry in the used ring of port
 *                                   ID's output queue whose id is no
 *                                   descriptor (the ring's size)
 *
 * <pid> is the process that opened /dev/vhost-serial.  Nothing here is
 * reachable by a guest or by the VMM's ioctls.
 */
#define VHOST_SERIAL_INJECT_MAX		(48 + VHOST_SERIAL_NAME_MAX)
#define VHOST_SERIAL_USED_EXTRA_MAX	SZ_1G
#define VHOST_SERIAL_USED_EMPTY_MAX	SZ_1M

static struct dentry *vhost_serial_debugfs;
static atomic_t vhost_serial_debugfs_seq = ATOMIC_INIT(0);

static int vhost_serial_ports_show(struct seq_file *m, void *v)
{
	struct vhost_serial *vs = m->private;
	struct vhost_serial_port *port;
	u32 i;

	if (!vhost_serial_ready(vs))
		return 0;
	mutex_lock(&vs->port_lock);
	for (i = 0; i < vs->nr_ports; i++) {
		port = &vs->ports[i];
		if (port->present)
			seq_printf(m, "%u %.*s\n", i, port->name_len, port->name);
	}
	mutex_unlock(&vs->port_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(vhost_serial_ports);

static int vhost_serial_inject_ctrl(struct vhost_serial *vs, char *args)
{
	struct vhost_serial_ctrl_msg *msg;
	char *id_s, *event_s, *value_s;
	u16 event, value;
	size_t len;
	u32 id;

	id_s = strsep(&args, " ");
	event_s = strsep(&args, " ");
	value_s = strsep(&args, " ");
	if (!value_s || kstrtou32(id_s, 0, &id) ||
	    kstrtou16(event_s, 0, &event) || kstrtou16(value_s, 0, &value))
		return -EINVAL;
	len = args ? strlen(args) : 0;
	if (len > VHOST_SERIAL_NAME_MAX)
		return -ENAMETOOLONG;
	msg = vhost_serial_ctrl_alloc(id, event, value, len);
	if (!msg)
		return -ENOMEM;
	memcpy(msg->name, args, len);
	return vhost_serial_ctrl_queue(vs, msg);
}

/* The port whose number @id_s is. */
static struct vhost_serial_port *
vhost_serial_inject_port(struct vhost_serial *vs, const char *id_s)
{
	struct vhost_serial_port *port;
	u32 id;

	if (kstrtou32(id_s, 0, &id))
		return ERR_PTR(-EINVAL);
	port = vhost_serial_lookup(vs, id);
	return port ?: ERR_PTR(-ENOENT);
}

/* "ID N": a receive fault for port ID, N times or N bytes, N <= @max. */
static struct vhost_serial_port *
vhost_serial_inject_rx_args(struct vhost_serial *vs, char *args, u32 max,
			    u32 *n)
{
	char *id_s;

	id_s = strsep(&args, " ");
	if (!args || kstrtou32(args, 0, n))
		return ERR_PTR(-EINVAL);
	if (*n > max)
		return ERR_PTR(-ERANGE);
	return vhost_serial_inject_port(vs, id_s);
}

static int vhost_serial_inject_used(struct vhost_serial *vs, char *args,
				    bool empty)
{
	struct vhost_serial_port *port;
	struct vhost_virtqueue *vq;
	u32 n;

	port = vhost_serial_inject_rx_args(vs, args, empty ?
					   VHOST_SERIAL_USED_EMPTY_MAX :
					   VHOST_SERIAL_USED_EXTRA_MAX, &n);
	if (IS_ERR(port))
		return PTR_ERR(port);
	vq = vhost_serial_port_rx_vq(port);
	mutex_lock(&vq->mutex);
	if (empty)
		port->used_empty = n;
	else
		port->used_extra = n;
	mutex_unlock(&vq->mutex);
	/* Empty buffers go back now, not when data comes next. */
	if (empty)
		vhost_serial_work_queue(vq, &vq->poll.work);
	return 0;
}

static int vhost_serial_inject_bogus(struct vhost_serial *vs, char *args)
{
	struct vhost_serial_port *port = vhost_serial_inject_port(vs, args);
	struct vhost_virtqueue *vq;

	if (IS_ERR(port))
		return PTR_ERR(port);
	vq = vhost_serial_port_tx_vq(port);
	mutex_lock(&vq->mutex);
	port->used_bogus = true;
	mutex_unlock(&vq->mutex);
	/* The used ring is in the owner's memory: the worker writes it. */
	vhost_serial_work_queue(vq, &vq->poll.work);
	return 0;
}

static ssize_t vhost_serial_inject_write(struct file *f, const char __user *ubuf,
					 size_t count, loff_t *ppos)
{
	struct vhost_serial *vs = f->private_data;
	char buf[VHOST_SERIAL_INJECT_MAX + 1];
	char *args, *cmd;
	int ret;

	if (count > VHOST_SERIAL_INJECT_MAX)
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	/* Queues and ports exist once the VMM has set the number of ports. */
	if (!vhost_serial_ready(vs))
		return -ENODEV;
	args = strim(buf);
	cmd = strsep(&args, " ");
	if (!args)
		return -EINVAL;
	/* As for an ioctl: RESET_OWNER must not free the worker meanwhile. */
	mutex_lock(&vs->dev.mutex);
	if (!strcmp(cmd, "ctrl"))
		ret = vhost_serial_inject_ctrl(vs, args);
	else if (!strcmp(cmd, "used_extra"))
		ret = vhost_serial_inject_used(vs, args, false);
	else if (!strcmp(cmd, "used_empty"))
		ret = vhost_serial_inject_used(vs, args, true);
	else if (!strcmp(cmd, "used_bogus"))
		ret = vhost_serial_inject_bogus(vs, args);
	else
		ret = -EINVAL;
	mutex_unlock(&vs->dev.mutex);
	return ret ? ret : count;
}

static const struct file_operations vhost_serial_inject_fops = {
	.owner	= THIS_MODULE,
	.open	= simple_open,
	.write	= vhost_serial_inject_write,
	.llseek	= noop_llseek,
};

/* debugfs may be absent or fail: the device works the same without it. */
static void vhost_serial_debugfs_add(struct vhost_serial *vs)
{
	char name[32];

	snprintf(name, sizeof(name), "%d-%d", task_tgid_vnr(current),
		 atomic_inc_return(&vhost_serial_debugfs_seq));
	vs->debugfs = debugfs_create_dir(name, vhost_serial_debugfs);
	debugfs_create_file("ports", 0400, vs->debugfs, vs,
			    &vhost_serial_ports_fops);
	debugfs_create_file("inject", 0200, vs->debugfs, vs,
			    &vhost_serial_inject_fops);
}

/* ---- open and release ----------------------------------------------------- */

static int vhost_serial_dev_open(struct inode *inode, struct file *f)
{
	struct vhost_serial *vs;

	vs = kvzalloc(sizeof(*vs), GFP_KERNEL_ACCOUNT);
	if (!vs)
		return -ENOMEM;
	vs->zc_hub = vhost_serial_zc_hub_new(vs);
	if (!vs->zc_hub) {
		kvfree(vs);
		return -ENOMEM;
	}
	init_llist_head(&vs->zc_done);
	init_llist_head(&vs->zc_stopped);
	vhost_work_init(&vs->zc_work, vhost_serial_zc_work);
	mutex_init(&vs->init_lock);
	mutex_init(&vs->port_lock);
	spin_lock_init(&vs->ctrl_lock);
	INIT_LIST_HEAD(&vs->ctrl_pending);
	vhost_work_init(&vs->ctrl_work, vhost_serial_ctrl_work);
	vhost_serial_debugfs_add(vs);
	f->private_data = vs;
	return 0;
}

static void vhost_serial_release_ports(struct vhost_serial *vs)
{
	struct vhost_serial_port *port;
	u32 i;

	for (i = 0; i < vs->nr_ports; i++) {
		port = &vs->ports[i];
		if (port->in)
			fput(port->in);
		if (port->out)
			fput(port->out);
		if (port->event)
			eventfd_ctx_put(port->event);
		kfree(port->cbuf);
		/* Its pushing reference; pipes may keep the rest alive. */
		if (port->zc_cur)
			vhost_serial_zc_put(port->zc_cur);
	}
}

static int vhost_serial_dev_release(struct inode *inode, struct file *f)
{
	struct vhost_serial *vs = f->private_data;

	/* Waits for writers of inject: none runs into the teardown. */
	debugfs_remove(vs->debugfs);
	if (vhost_serial_ready(vs)) {
		mutex_lock(&vs->dev.mutex);
		vs->running = false;
		vhost_serial_set_vq_backends(vs, false);
		vhost_serial_stop_polls(vs);
		vhost_serial_zc_orphan(vs);
		mutex_unlock(&vs->dev.mutex);
		vhost_dev_flush(&vs->dev);
		vhost_dev_stop(&vs->dev);
		vhost_serial_zc_drain(&vs->zc_done);
		vhost_serial_zc_drain(&vs->zc_stopped);
		vhost_serial_ctrl_flush_pending(vs);
		vhost_serial_release_ports(vs);
		vhost_dev_cleanup(&vs->dev);
		if (vs->owner_cred)
			put_cred(vs->owner_cred);
		kvfree(vs->logs);
		kvfree(vs->ports);
		kvfree(vs->vq_ptrs);
		kvfree(vs->vqs);
	} else {
		vhost_serial_zc_orphan(vs);
	}
	vhost_serial_zc_hub_put(vs->zc_hub);
	kvfree(vs);
	return 0;
}

static const struct file_operations vhost_serial_fops = {
	.owner		= THIS_MODULE,
	.open		= vhost_serial_dev_open,
	.release	= vhost_serial_dev_release,
	.llseek		= noop_llseek,
	.unlocked_ioctl	= vhost_serial_dev_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};

static struct miscdevice vhost_serial_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "vhost-serial",
	.fops = &vhost_serial_fops,
};

static int __init vhost_serial_init(void)
{
	int ret;

	vhost_serial_debugfs = debugfs_create_dir("vhost-serial", NULL);
	ret = misc_register(&vhost_serial_misc);
	if (ret)
		debugfs_remove(vhost_serial_debugfs);
	return ret;
}
module_init(vhost_serial_init);

static void __exit vhost_serial_exit(void)
{
	misc_deregister(&vhost_serial_misc);
	debugfs_remove(vhost_serial_debugfs);
	/* A zero-copy hub's callback may still be on its way out. */
	rcu_barrier();
}
module_exit(vhost_serial_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vhost virtio-console (virtio-serial) device");
MODULE_ALIAS("devname:vhost-serial");
