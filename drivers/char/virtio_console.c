// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * virtio_console: guest driver for the virtio console (virtio-serial) device.
 *
 * Generic ports appear as /dev/vportNpM with their name in
 * /sys/class/virtio-ports/vportNpM/name; console ports as hvc terminals.
 *
 * Compared with a driver that sends one page per write and spins for the
 * device, this one moves bulk data in large buffers (one block of pages
 * and one descriptor per up to VCON_TX_MAX bytes, many in flight), posts
 * receive buffers larger than a page and drains several per read, and never
 * waits with interrupts off: console output and control messages are queued
 * and reclaimed when the device hands them back.  Console output that finds
 * the ring full is left to hvc, which tries again; while the queues are down
 * it goes to the emergency-write register, or is dropped.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cdev.h>
#include <linux/delay.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/freezer.h>
#include <linux/idr.h>
#include <linux/kref.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/platform_device.h>
#include <linux/poll.h>
#include <linux/sched/signal.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uio.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_console.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "virtio_console_compat.h"

/*
 * Receive buffers: larger than a page, and many of them, since devices
 * differ in how they fill them (QEMU puts each chunk it reads from a
 * chardev into a buffer of its own, vhost-serial fills whole buffers).
 */
#define VCON_RX_ALLOC		(16 * 1024)
#define VCON_RX_BUFS		64
/* Receive buffers one discard goes through at most (interrupt context). */
#define VCON_DISCARD_MAX	(4 * VCON_RX_BUFS)
/* Largest chain of guest output; longer writes become several chains. */
#define VCON_TX_MAX		(256 * 1024)
/*
 * Blocks of output pages a port keeps for its next writes.  A fresh block
 * costs a zeroing pass (init_on_alloc, the default on Debian) on top of
 * the copy: profiled under TCG, that zeroing took more of a bulk writer's
 * time than the copy itself.
 */
#define VCON_TX_CACHE		8
/*
 * How long console output waits for room on a full ring.  hvc keeps a
 * terminal's output and tries again, but drops what the kernel prints
 * (printk) when it finds no room: a device that drains the ring gets this
 * long to make some, and one that does not costs it once, until a
 * quarter of the ring is free again (a device that frees a descriptor
 * now and then must not make every piece of output wait).
 */
#define VCON_CONS_WAIT_US	10000
/*
 * Output the device may hold before we ask it to interrupt when done:
 * below this, the next write reclaims what the device finished.  An
 * interrupt per write costs more than the write's copy under emulation.
 */
#define VCON_TX_UNWATCHED	(1024 * 1024)
/*
 * Control receive buffers, header included.  QEMU's device drops a control
 * message it finds no buffer for, and answers DEVICE_READY with a PORT_ADD
 * for every port at once, so the driver posts as many as the queue holds.
 * A message is a header and at most a port name, which is cut to
 * VCON_NAME_MAX anyway; a longer one arrives cut (see vcon_control_work).
 */
#define VCON_CTRL_ALLOC		512
/*
 * Control messages waiting for room in the device's queue: enough for
 * every port's answers at once, bounded for a device that takes none.
 */
#define VCON_CTRL_PENDING_MAX	4096
#define VCON_NAME_MAX		255
/* Queue limit of virtio-pci: at most 511 ports. */
#define VCON_MAX_PORTS		511

struct vcon_device;

/* A buffer the device writes into: port data or a control message. */
struct vcon_rxbuf {
	size_t size;		/* capacity of data[] */
	size_t len;		/* bytes the device wrote */
	size_t offset;		/* bytes already consumed */
	char data[];
};

enum vcon_tx_kind {
	VCON_TX_BYTES,		/* kmalloc'ed with its header */
	VCON_TX_PAGES,		/* a block of pages of @order */
};

/* One chain of guest output: kmalloc'ed bytes, or a block of pages. */
struct vcon_txbuf {
	struct list_head node;	/* in the port's tx_cache */
	unsigned int nsg;
	enum vcon_tx_kind kind;
	unsigned int order;	/* of the block of pages */
	struct scatterlist sg[];
};

struct vcon_ctrl_msg {
	struct list_head node;
	struct virtio_console_control c;
};

struct vcon_port {
	struct vcon_device *vdev_priv;
	struct kref kref;
	u32 id;
	struct virtqueue *in_vq;
	struct virtqueue *out_vq;

	/*
	 * Guarded by *inbuf_lock: in_vq, inbuf, the connection flags.  The
	 * queue flags are written under both locks, so either lock is
	 * enough to read them.  The locks belong to the queues, not the
	 * port: buffers outlive an unplugged port in its queues, and a port
	 * plugged again under the same number finds them there.
	 */
	spinlock_t *inbuf_lock;	/* in_vq's lock */
	struct vcon_rxbuf *inbuf;
	bool guest_connected;
	bool host_connected;
	bool unplugged;		/* gone for good */
	bool vqs_ready;		/* queues usable: not unplugged nor frozen */
	bool rx_deferred;	/* used buffers left for vcon_rx_work */

	spinlock_t *outvq_lock;	/* out_vq, tx_cache, tx_* */
	struct list_head tx_cache;	/* blocks of pages to write from */
	unsigned int tx_cached;
	size_t tx_inflight;	/* bytes the device holds */
	bool tx_waiting;	/* a writer waits for room */
	bool cons_stalled;	/* console output found no room in time */

	struct mutex read_lock;	/* one reader copies at a time */
	wait_queue_head_t waitqueue;
	struct fasync_struct *async_queue;
	struct device *dev;
	char *name;

	/* Console ports. */
	bool is_console;
	struct hvc_struct *hvc;
	u32 vtermno;
	struct winsize ws;
	struct list_head console_node;
};

struct vcon_device {
	struct virtio_device *vdev;
	struct kref kref;
	bool multiport;
	bool emerg_write;
	u32 max_nr_ports;
	int major;
	unsigned int nvqs;
	struct virtqueue **vqs;
	spinlock_t *vq_locks;		/* one per data queue */
	struct virtqueue *c_ivq;
	struct virtqueue *c_ovq;

	spinlock_t ports_lock;		/* guards ports[] */
	struct vcon_port **ports;	/* by id */

	spinlock_t c_ivq_lock;		/* guards c_ivq and dead */
	spinlock_t c_ovq_lock;		/* guards c_ovq, ctrl_pending, dead */
	struct list_head ctrl_pending;	/* guarded by c_ovq_lock */
	unsigned int ctrl_pending_nr;	/* guarded by c_ovq_lock */
	struct work_struct control_work;
	struct work_struct config_work;
	struct work_struct rx_work;	/* see vcon_rx_defer() */
	bool dead;
	/*
	 * Freeze deleted the queues and restore made none (it failed): the
	 * vqs[] and the ports' queue pointers dangle.  Changed only by the
	 * PM callbacks, which the driver core serialises with remove; the
	 * control work, whose PORT_REMOVE also reads it, is cancelled before
	 * it is set and runs again only after restore has cleared it.
	 */
	bool vqs_gone;
	struct list_head node;		/* vcon_devices */
};

static LIST_HEAD(vcon_devices);
static DEFINE_SPINLOCK(vcon_devices_lock);
static LIST_HEAD(vcon_consoles);
static DEFINE_SPINLOCK(vcon_consoles_lock);
static DEFINE_IDA(vcon_vtermnos);

static const struct attribute_group *vcon_port_groups[];

/*
 * How many transmit locks this CPU holds.  Console output takes its port's
 * transmit lock, and what runs under such a lock may printk: the virtio
 * core finding a bad used ring, swiotlb when it is full.  printk writes to
 * the consoles at once, on this CPU, which would then spin on a lock it
 * holds (or nest two locks of one class).  Console output that finds this
 * CPU inside a transmit lock is dropped instead; the kernel log keeps it.
 * Interrupts are off while the count is raised, so only such a printk
 * sees it.  PREEMPT_RT keeps interrupts on under a spinlock, but prints
 * to these consoles from a thread of its own: nothing is counted there.
 */
static DEFINE_PER_CPU(unsigned int, vcon_tx_locked);

static void vcon_tx_count(bool held)
{
	if (IS_ENABLED(CONFIG_PREEMPT_RT))
		return;
	if (held)
		this_cpu_inc(vcon_tx_locked);
	else
		this_cpu_dec(vcon_tx_locked);
}

static void vcon_tx_lock(struct vcon_port *port, unsigned long *flags)
	__acquires(port->outvq_lock)
{
	spin_lock_irqsave(port->outvq_lock, *flags);
	vcon_tx_count(true);
}

static void vcon_tx_unlock(struct vcon_port *port, unsigned long flags)
	__releases(port->outvq_lock)
{
	vcon_tx_count(false);
	spin_unlock_irqrestore(port->outvq_lock, flags);
}

/*
 * Both queue locks of a port.  All queue locks are of one class (one
 * array): the transmit lock, always taken second, is a nesting level of
 * its own.
 */
static void vcon_lock_queues(struct vcon_port *port, unsigned long *flags)
	__acquires(port->inbuf_lock) __acquires(port->outvq_lock)
{
	spin_lock_irqsave(port->inbuf_lock, *flags);
	spin_lock_nested(port->outvq_lock, SINGLE_DEPTH_NESTING);
	vcon_tx_count(true);
}

static void vcon_unlock_queues(struct vcon_port *port, unsigned long flags)
	__releases(port->outvq_lock) __releases(port->inbuf_lock)
{
	vcon_tx_count(false);
	spin_unlock(port->outvq_lock);
	spin_unlock_irqrestore(port->inbuf_lock, flags);
}

static struct class vcon_class = {
	.name = "virtio-ports",
	.dev_groups = vcon_port_groups,
};

/* ---- buffers ------------------------------------------------------------- */

static struct vcon_txbuf *
vcon_txbuf_alloc_bytes(const void *data, size_t len, gfp_t gfp)
{
	struct vcon_txbuf *buf;
	void *bytes;

	buf = kmalloc(struct_size(buf, sg, 1) + len, gfp);
	if (!buf)
		return NULL;
	bytes = (char *)buf + struct_size(buf, sg, 1);
	memcpy(bytes, data, len);
	buf->nsg = 1;
	buf->kind = VCON_TX_BYTES;
	sg_init_one(&buf->sg[0], bytes, len);
	return buf;
}

static void vcon_txbuf_free(struct vcon_txbuf *buf)
{
	if (buf->kind == VCON_TX_PAGES)
		__free_pages(sg_page(&buf->sg[0]), buf->order);
	kfree(buf);
}

/* A block of @order from the port's cache; caller holds outvq_lock. */
static struct vcon_txbuf *vcon_tx_cache_get(struct vcon_port *port,
					    unsigned int order)
{
	struct vcon_txbuf *buf;

	list_for_each_entry(buf, &port->tx_cache, node) {
		if (buf->order == order) {
			list_del(&buf->node);
			port->tx_cached--;
			return buf;
		}
	}
	return NULL;
}

/* Keep a block the device is done with; caller holds outvq_lock. */
static void vcon_tx_cache_put(struct vcon_port *port, struct vcon_txbuf *buf)
{
	if (buf->kind == VCON_TX_PAGES && port->tx_cached < VCON_TX_CACHE) {
		list_add(&buf->node, &port->tx_cache);
		port->tx_cached++;
	} else {
		vcon_txbuf_free(buf);
	}
}

static void vcon_tx_cache_drain(struct vcon_port *port)
{
	struct vcon_txbuf *buf, *next;
	unsigned long flags;
	LIST_HEAD(list);

	vcon_tx_lock(port, &flags);
	list_splice_init(&port->tx_cache, &list);
	port->tx_cached = 0;
	vcon_tx_unlock(port, flags);
	list_for_each_entry_safe(buf, next, &list, node)
		vcon_txbuf_free(buf);
}

static struct vcon_txbuf *vcon_txbuf_alloc_pages(unsigned int order)
{
	struct vcon_txbuf *buf;
	struct page *page;

	buf = kmalloc(struct_size(buf, sg, 1), GFP_KERNEL);
	if (!buf)
		return NULL;
	for (;;) {
		page = alloc_pages(order ? GFP_KERNEL | __GFP_NOWARN |
				   __GFP_NORETRY : GFP_KERNEL, order);
		if (page || !order)
			break;
		order--;
	}
	if (!page) {
		kfree(buf);
		return NULL;
	}
	buf->kind = VCON_TX_PAGES;
	buf->order = order;
	buf->nsg = 1;
	sg_init_table(buf->sg, 1);
	sg_set_page(&buf->sg[0], page, PAGE_SIZE << order, 0);
	return buf;
}

/*
 * Copy up to *@len bytes of @from into one block of pages: one descriptor
 * per chain.  A smaller block is taken when memory is fragmented; *@len
 * says how much was copied.
 */
static struct vcon_txbuf *vcon_txbuf_from_iter(struct vcon_port *port,
					       struct iov_iter *from,
					       size_t *len)
{
	unsigned int order = get_order(*len);
	struct vcon_txbuf *buf;
	unsigned long flags;

	vcon_tx_lock(port, &flags);
	buf = vcon_tx_cache_get(port, order);
	vcon_tx_unlock(port, flags);
	if (!buf)
		buf = vcon_txbuf_alloc_pages(order);
	if (!buf)
		return ERR_PTR(-ENOMEM);
	*len = min_t(size_t, *len, PAGE_SIZE << buf->order);
	buf->sg[0].length = *len;
	if (copy_from_iter(page_address(sg_page(&buf->sg[0])), *len, from) !=
	    *len) {
		vcon_txbuf_free(buf);
		return ERR_PTR(-EFAULT);
	}
	return buf;
}

/* virtqueue_get_buf() always stores a length; most callers ignore it. */
static void *vcon_vq_get(struct virtqueue *vq)
{
	unsigned int len;

	return virtqueue_get_buf(vq, &len);
}

static int vcon_add_inbuf(struct virtqueue *vq, struct vcon_rxbuf *buf)
{
	struct scatterlist sg;

	buf->len = 0;
	buf->offset = 0;
	sg_init_one(&sg, buf->data, buf->size);
	return virtqueue_add_inbuf(vq, &sg, 1, buf, GFP_ATOMIC);
}

/*
 * Post buffers of @alloc bytes, header included, on @vq, which @lock
 * guards, until @nbufs are posted (buffers a port left behind count), as
 * long as *@ready (if given) says the queue is usable.  No kick: the
 * caller knows whether the device may be notified.
 */
static unsigned int vcon_fill_vq(struct virtqueue **vq, spinlock_t *lock,
				 const bool *ready, unsigned int nbufs,
				 size_t alloc)
{
	struct vcon_rxbuf *buf;
	unsigned int added = 0;
	unsigned long flags;
	int ret;

	for (;;) {
		buf = kmalloc(alloc, GFP_KERNEL);
		if (!buf)
			break;
		buf->size = alloc - sizeof(*buf);
		spin_lock_irqsave(lock, flags);
		if (ready && !*ready)
			ret = -ENODEV;
		else if (virtqueue_get_vring_size(*vq) - (*vq)->num_free >= nbufs)
			ret = -ENOSPC;
		else
			ret = vcon_add_inbuf(*vq, buf);
		spin_unlock_irqrestore(lock, flags);
		if (ret) {
			kfree(buf);
			break;
		}
		added++;
	}
	return added;
}

/* Post receive buffers and tell the device. */
static unsigned int vcon_fill_rx(struct vcon_port *port)
{
	unsigned int added;
	unsigned long flags;

	added = vcon_fill_vq(&port->in_vq, port->inbuf_lock, &port->vqs_ready,
			     VCON_RX_BUFS, VCON_RX_ALLOC);
	if (added || port->vqs_ready) {
		spin_lock_irqsave(port->inbuf_lock, flags);
		if (port->vqs_ready)
			virtqueue_kick(port->in_vq);
		spin_unlock_irqrestore(port->inbuf_lock, flags);
	}
	return added;
}

static void vcon_recycle_inbuf(struct vcon_port *port, struct vcon_rxbuf *buf);

/*
 * A bounded loop over used receive buffers stopped with some left, and
 * turned interrupts back on.  With VIRTIO_RING_F_EVENT_IDX the device
 * signals only buffers it uses after that, maybe never: the ones left are
 * taken from process context instead.  Caller holds inbuf_lock, with the
 * queues ready: teardown and freeze cancel the work once no port is.
 */
static void vcon_rx_defer(struct vcon_port *port)
{
	WRITE_ONCE(port->rx_deferred, true);
	schedule_work(&port->vdev_priv->rx_work);
}

/* The next used receive buffer, or NULL (interrupts then on again). */
static struct vcon_rxbuf *vcon_next_used_inbuf(struct vcon_port *port,
					       unsigned int *len)
{
	struct vcon_rxbuf *buf;

	buf = virtqueue_get_buf(port->in_vq, len);
	if (buf)
		return buf;
	/*
	 * Drained: interrupts for this queue come back on (the interrupt
	 * handler turned them off so that a busy reader is not interrupted
	 * for every buffer), unless a buffer raced in meanwhile.
	 */
	if (virtqueue_enable_cb(port->in_vq))
		return NULL;
	virtqueue_disable_cb(port->in_vq);
	return virtqueue_get_buf(port->in_vq, len);
}

/* Take the next filled receive buffer; caller holds inbuf_lock. */
static struct vcon_rxbuf *vcon_get_inbuf(struct vcon_port *port)
{
	struct vcon_rxbuf *buf;
	unsigned int len, empty;

	if (port->inbuf)
		return port->inbuf;
	/*
	 * An empty buffer is neither data nor end of file: give it back.
	 * A device that keeps returning them gets a bounded number of
	 * turns, then waits for its next interrupt.
	 */
	for (empty = 0; ; empty++) {
		buf = vcon_next_used_inbuf(port, &len);
		if (!buf)
			return NULL;
		if (len)
			break;
		vcon_recycle_inbuf(port, buf);
		virtqueue_kick(port->in_vq);
		if (empty == VCON_RX_BUFS) {
			dev_warn_ratelimited(&port->vdev_priv->vdev->dev,
					     "port %u: device keeps returning empty buffers\n",
					     port->id);
			if (!virtqueue_enable_cb(port->in_vq))
				vcon_rx_defer(port);
			return NULL;
		}
	}
	if (len > buf->size) {
		dev_warn_ratelimited(&port->vdev_priv->vdev->dev,
				     "port %u: device used %u bytes of a %zu byte buffer\n",
				     port->id, len, buf->size);
		len = buf->size;
	}
	buf->len = len;
	buf->offset = 0;
	port->inbuf = buf;
	return buf;
}

/* Give a consumed buffer back to the device; caller holds inbuf_lock. */
static void vcon_recycle_inbuf(struct vcon_port *port, struct vcon_rxbuf *buf)
{
	if (!port->vqs_ready || vcon_add_inbuf(port->in_vq, buf))
		kfree(buf);
}

/* Drop everything received; caller holds inbuf_lock. */
static void vcon_discard_rx(struct vcon_port *port)
{
	struct vcon_rxbuf *buf;
	unsigned int n = 0;

	if (!port->vqs_ready)
		return;
	if (port->inbuf) {
		vcon_recycle_inbuf(port, port->inbuf);
		port->inbuf = NULL;
		n++;
	}
	/*
	 * Leave interrupts on, so that data for a closed port is dropped.
	 * This runs in interrupt context: a device that hands buffers back
	 * as fast as they go in gets a bounded number of them per call.
	 */
	for (;;) {
		while (n < VCON_DISCARD_MAX &&
		       (buf = vcon_vq_get(port->in_vq))) {
			vcon_recycle_inbuf(port, buf);
			n++;
		}
		if (virtqueue_enable_cb(port->in_vq))
			break;
		if (n >= VCON_DISCARD_MAX) {
			vcon_rx_defer(port);
			break;
		}
	}
	if (n)
		virtqueue_kick(port->in_vq);
}

static bool vcon_has_data(struct vcon_port *port)
{
	unsigned long flags;
	bool ret;

	spin_lock_irqsave(port->inbuf_lock, flags);
	ret = port->vqs_ready && vcon_get_inbuf(port);
	spin_unlock_irqrestore(port->inbuf_lock, flags);
	return ret;
}

/* Free what the device has finished sending; caller holds outvq_lock. */
static void vcon_reclaim_tx(struct vcon_port *port)
{
	struct vcon_txbuf *buf;

	while ((buf = vcon_vq_get(port->out_vq))) {
		port->tx_inflight -= min_t(size_t, port->tx_inflight,
					   buf->sg[0].length);
		vcon_tx_cache_put(port, buf);
	}
}

static int vcon_tx_add(struct vcon_port *port, struct vcon_txbuf *buf)
{
	int ret;

	ret = virtqueue_add_outbuf(port->out_vq, buf->sg, buf->nsg, buf,
				   GFP_ATOMIC);
	if (ret)
		return ret;
	port->tx_inflight += buf->sg[0].length;
	virtqueue_kick(port->out_vq);
	return 0;
}

/*
 * Ask for an output interrupt only when it is needed: a writer waits for
 * room, or more than VCON_TX_UNWATCHED bytes wait to be freed.  Then the
 * interrupt comes once most of the ring is done.  Caller holds outvq_lock.
 */
static void vcon_tx_mitigate(struct vcon_port *port)
{
	while (port->tx_waiting || port->tx_inflight > VCON_TX_UNWATCHED) {
		/*
		 * A broken queue gives nothing back, and 6.1's
		 * virtqueue_enable_cb_delayed() does not check for it.
		 */
		if (virtqueue_is_broken(port->out_vq))
			break;
		if (virtqueue_enable_cb_delayed(port->out_vq))
			return;
		/* The device got there first: free that, then look again. */
		vcon_reclaim_tx(port);
		if (port->out_vq->num_free)
			port->tx_waiting = false;
	}
	virtqueue_disable_cb(port->out_vq);
}

/* Free what is done; what is not comes back with an interrupt. */
static void vcon_tx_watch_all(struct vcon_port *port)
{
	do {
		vcon_reclaim_tx(port);
	} while (!virtqueue_enable_cb(port->out_vq));
}

/* ---- control messages ------------------------------------------------------ */

static void vcon_ctrl_reclaim(struct vcon_device *pd)
{
	struct vcon_ctrl_msg *msg;

	while ((msg = vcon_vq_get(pd->c_ovq)))
		kfree(msg);
}

/* Move queued messages into the ring while it has room; holds c_ovq_lock. */
static void vcon_ctrl_push(struct vcon_device *pd)
{
	struct vcon_ctrl_msg *msg, *tmp;
	struct scatterlist sg;
	bool added = false;

	vcon_ctrl_reclaim(pd);
	list_for_each_entry_safe(msg, tmp, &pd->ctrl_pending, node) {
		sg_init_one(&sg, &msg->c, sizeof(msg->c));
		if (virtqueue_add_outbuf(pd->c_ovq, &sg, 1, msg, GFP_ATOMIC))
			break;
		list_del(&msg->node);
		pd->ctrl_pending_nr--;
		added = true;
	}
	if (added)
		virtqueue_kick(pd->c_ovq);
}

/*
 * Send a control message without waiting for the device: it is queued and
 * freed when the device hands it back, so no caller ever spins with
 * interrupts off for a device that may not answer.
 */
static int vcon_send_ctrl(struct vcon_device *pd, u32 id, u16 event, u16 value)
{
	struct vcon_ctrl_msg *msg;
	unsigned long flags;

	if (!pd->multiport)
		return 0;
	msg = kmalloc(sizeof(*msg), GFP_ATOMIC);
	if (!msg)
		return -ENOMEM;

	spin_lock_irqsave(&pd->c_ovq_lock, flags);
	/* Once dead, pd->vdev may be gone: a port can outlive it. */
	if (pd->dead) {
		spin_unlock_irqrestore(&pd->c_ovq_lock, flags);
		kfree(msg);
		return -ENODEV;
	}
	if (pd->ctrl_pending_nr >= VCON_CTRL_PENDING_MAX) {
		spin_unlock_irqrestore(&pd->c_ovq_lock, flags);
		kfree(msg);
		pr_warn_ratelimited("device takes no control messages: one dropped\n");
		return -ENOSPC;
	}
	msg->c.id = cpu_to_virtio32(pd->vdev, id);
	msg->c.event = cpu_to_virtio16(pd->vdev, event);
	msg->c.value = cpu_to_virtio16(pd->vdev, value);
	list_add_tail(&msg->node, &pd->ctrl_pending);
	pd->ctrl_pending_nr++;
	vcon_ctrl_push(pd);
	spin_unlock_irqrestore(&pd->c_ovq_lock, flags);
	return 0;
}

static void vcon_ctrl_out_intr(struct virtqueue *vq)
{
	struct vcon_device *pd = vq->vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&pd->c_ovq_lock, flags);
	/* A late interrupt of a device being torn down moves nothing. */
	if (!pd->dead)
		vcon_ctrl_push(pd);
	spin_unlock_irqrestore(&pd->c_ovq_lock, flags);
}

/* ---- ports: lookup and lifetime -------------------------------------------- */

static void vcon_device_release(struct kref *kref)
{
	struct vcon_device *pd = container_of(kref, struct vcon_device, kref);

	kfree(pd->ports);
	kfree(pd->vq_locks);
	kfree(pd->vqs);
	kfree(pd);
}

static void vcon_port_release(struct kref *kref)
{
	struct vcon_port *port = container_of(kref, struct vcon_port, kref);
	struct vcon_device *pd = port->vdev_priv;

	vcon_tx_cache_drain(port);
	kfree(port->inbuf);
	kfree(port->name);
	kfree(port);
	kref_put(&pd->kref, vcon_device_release);
}

static struct vcon_port *vcon_port_get(struct vcon_device *pd, u32 id)
{
	struct vcon_port *port = NULL;
	unsigned long flags;

	if (id >= pd->max_nr_ports)
		return NULL;
	spin_lock_irqsave(&pd->ports_lock, flags);
	if (pd->ports[id]) {
		port = pd->ports[id];
		kref_get(&port->kref);
	}
	spin_unlock_irqrestore(&pd->ports_lock, flags);
	return port;
}

static void vcon_port_put(struct vcon_port *port)
{
	kref_put(&port->kref, vcon_port_release);
}

/* ---- hvc consoles ----------------------------------------------------------- */

/* The console port of @vtermno, with a reference. */
static struct vcon_port *vcon_console_by_vtermno(u32 vtermno)
{
	struct vcon_port *port, *found = NULL;
	unsigned long flags;

	spin_lock_irqsave(&vcon_consoles_lock, flags);
	list_for_each_entry(port, &vcon_consoles, console_node) {
		if (port->vtermno == vtermno) {
			found = port;
			kref_get(&port->kref);
			break;
		}
	}
	spin_unlock_irqrestore(&vcon_consoles_lock, flags);
	return found;
}

/*
 * Last resort for console output: the config space register.  Console
 * output runs with interrupts off, where virtio_cwrite32() must not be
 * used: it may sleep, as some transports wait for a config write to
 * complete.  Where a config write is a register write (PCI, MMIO) the
 * transport's set op is called directly; elsewhere the register is not
 * used (vcon_config_writes_atomic()).
 */
static void vcon_emerg_write(struct vcon_device *pd, const u8 *buf,
			     size_t count)
{
	struct virtio_device *vdev = pd->vdev;
	__virtio32 c;
	size_t i;

	for (i = 0; i < count; i++) {
		c = cpu_to_virtio32(vdev, buf[i]);
		vdev->config->set(vdev,
				  offsetof(struct virtio_console_config, emerg_wr),
				  &c, sizeof(c));
	}
}

/* Whether a stalled console's ring is still short of room; outvq_lock. */
static bool vcon_tx_short(struct vcon_port *port)
{
	return port->vqs_ready && port->out_vq->num_free <
	       virtqueue_get_vring_size(port->out_vq) / 4;
}

/*
 * Queue console output, waiting up to VCON_CONS_WAIT_US for room on a
 * full ring unless the last wait was in vain.  Runs in any context, with
 * interrupts maybe off: the wait polls the ring, it does not sleep.
 */
static int vcon_console_add(struct vcon_port *port, struct vcon_txbuf *tx)
{
	unsigned int waited = 0;
	unsigned long flags;
	int ret;

	/* A printk under a transmit lock: see vcon_tx_locked. */
	if (this_cpu_read(vcon_tx_locked))
		return -ENOSPC;
	for (;;) {
		vcon_tx_lock(port, &flags);
		ret = -ENODEV;
		if (port->vqs_ready) {
			vcon_reclaim_tx(port);
			ret = vcon_tx_add(port, tx);
		}
		if (ret != -ENOSPC || port->cons_stalled ||
		    waited >= VCON_CONS_WAIT_US) {
			port->cons_stalled = ret == -ENOSPC ||
					     (port->cons_stalled &&
					      vcon_tx_short(port));
			vcon_tx_unlock(port, flags);
			return ret;
		}
		vcon_tx_unlock(port, flags);
		udelay(5);
		waited += 5;
	}
}

static ssize_t vcon_put_chars(u32 vtermno, const u8 *buf, size_t count)
{
	struct vcon_port *port = vcon_console_by_vtermno(vtermno);
	struct vcon_txbuf *tx;
	int ret;

	if (!port)
		return -EPIPE;
	tx = vcon_txbuf_alloc_bytes(buf, count, GFP_ATOMIC);
	if (!tx) {
		vcon_port_put(port);
		return 0;	/* hvc retries later */
	}

	ret = vcon_console_add(port, tx);
	if (!ret) {
		vcon_port_put(port);
		return count;
	}
	vcon_txbuf_free(tx);
	/*
	 * Still a full ring: hvc keeps a terminal's output and tries again,
	 * and drops the kernel's.  The register would overtake what the ring
	 * holds, and QEMU sends what it gets there to its first console, not
	 * necessarily this one.
	 */
	if (ret == -ENOSPC) {
		vcon_port_put(port);
		return 0;
	}
	/*
	 * The device is not taking console output.  Waiting here would hang
	 * a CPU that may have interrupts off; use the emergency register if
	 * the device has one, else drop the output like a serial line with
	 * nothing attached.
	 */
	if (port->vdev_priv->emerg_write && !port->unplugged) {
		vcon_emerg_write(port->vdev_priv, buf, count);
		ret = count;
	} else {
		ret = 0;
	}
	vcon_port_put(port);
	return ret;
}

static ssize_t vcon_get_chars(u32 vtermno, u8 *buf, size_t count)
{
	struct vcon_port *port = vcon_console_by_vtermno(vtermno);
	struct vcon_rxbuf *rx;
	unsigned long flags;
	size_t done = 0, n;
	bool recycled = false;

	if (!port)
		return -EPIPE;
	spin_lock_irqsave(port->inbuf_lock, flags);
	while (done < count && port->vqs_ready &&
	       (rx = vcon_get_inbuf(port))) {
		n = min(count - done, rx->len - rx->offset);
		memcpy(buf + done, rx->data + rx->offset, n);
		rx->offset += n;
		done += n;
		if (rx->offset == rx->len) {
			port->inbuf = NULL;
			vcon_recycle_inbuf(port, rx);
			recycled = true;
		}
	}
	if (recycled && port->vqs_ready)
		virtqueue_kick(port->in_vq);
	spin_unlock_irqrestore(port->inbuf_lock, flags);
	vcon_port_put(port);
	return done;
}

static int vcon_notifier_add(struct hvc_struct *hp, int data)
{
	hp->irq_requested = 1;
	return 0;
}

static void vcon_notifier_del(struct hvc_struct *hp, int data)
{
	hp->irq_requested = 0;
}

static const struct hv_ops vcon_hv_ops = {
	.get_chars = vcon_hvc_get_chars,
	.put_chars = vcon_hvc_put_chars,
	.notifier_add = vcon_notifier_add,
	.notifier_del = vcon_notifier_del,
	.notifier_hangup = vcon_notifier_del,
};

static void vcon_console_resize(struct vcon_port *port, u16 rows, u16 cols)
{
	if (!port->is_console)
		return;
	port->ws.ws_row = rows;
	port->ws.ws_col = cols;
	if (port->hvc)
		hvc_resize(port->hvc, port->ws);
}

/*
 * A console is always open on the guest side: claim the port as open()
 * would, so that the two cannot both take it.
 */
static bool vcon_claim_port(struct vcon_port *port)
{
	unsigned long flags;
	bool claimed;

	spin_lock_irqsave(port->inbuf_lock, flags);
	claimed = !port->unplugged && !port->guest_connected;
	if (claimed)
		port->guest_connected = true;
	spin_unlock_irqrestore(port->inbuf_lock, flags);
	return claimed;
}

static void vcon_unclaim_port(struct vcon_port *port)
{
	unsigned long flags;

	spin_lock_irqsave(port->inbuf_lock, flags);
	port->guest_connected = false;
	spin_unlock_irqrestore(port->inbuf_lock, flags);
}

static int vcon_console_init(struct vcon_port *port)
{
	struct hvc_struct *hvc;
	unsigned long flags;
	int vtermno, ret;

	if (!vcon_claim_port(port))
		return -EBUSY;
	/* vtermno 0 is left to an early console. */
	vtermno = ida_alloc_min(&vcon_vtermnos, 1, GFP_KERNEL);
	if (vtermno < 0) {
		ret = vtermno;
		goto err_unclaim;
	}
	port->vtermno = vtermno;
	port->is_console = true;
	spin_lock_irqsave(&vcon_consoles_lock, flags);
	list_add_tail(&port->console_node, &vcon_consoles);
	spin_unlock_irqrestore(&vcon_consoles_lock, flags);

	hvc = hvc_alloc(port->vtermno, 0, &vcon_hv_ops, PAGE_SIZE);
	if (IS_ERR(hvc)) {
		ret = PTR_ERR(hvc);
		goto err_unlist;
	}
	/* Interrupts look at port->hvc: only a usable one goes there. */
	WRITE_ONCE(port->hvc, hvc);
	if (port->ws.ws_row || port->ws.ws_col)
		hvc_resize(hvc, port->ws);
	vcon_send_ctrl(port->vdev_priv, port->id, VIRTIO_CONSOLE_PORT_OPEN, 1);
	return 0;

err_unlist:
	spin_lock_irqsave(&vcon_consoles_lock, flags);
	list_del(&port->console_node);
	spin_unlock_irqrestore(&vcon_consoles_lock, flags);
	port->is_console = false;
	ida_free(&vcon_vtermnos, port->vtermno);
err_unclaim:
	vcon_unclaim_port(port);
	return ret;
}

static void vcon_console_exit(struct vcon_port *port)
{
	unsigned long flags;

	if (!port->is_console)
		return;
	spin_lock_irqsave(&vcon_consoles_lock, flags);
	list_del(&port->console_node);
	spin_unlock_irqrestore(&vcon_consoles_lock, flags);
	if (port->hvc)
		hvc_remove(port->hvc);
	port->hvc = NULL;
	ida_free(&vcon_vtermnos, port->vtermno);
}

/* ---- character device ------------------------------------------------------ */

/* Readers, writers and pollers wait here; SIGIO goes to fasync owners. */
static void vcon_wake(struct vcon_port *port, int band)
{
	wake_up_interruptible(&port->waitqueue);
	kill_fasync(&port->async_queue, SIGIO, band);
}

static bool vcon_read_blocks(struct vcon_port *port)
{
	unsigned long flags;
	bool blocks;

	if (vcon_has_data(port))
		return false;
	spin_lock_irqsave(port->inbuf_lock, flags);
	blocks = port->host_connected && !port->unplugged;
	spin_unlock_irqrestore(port->inbuf_lock, flags);
	return blocks;
}

static bool vcon_write_blocks(struct vcon_port *port)
{
	unsigned long flags;
	bool blocks;

	/* As before: nobody to write to on the host means wait. */
	vcon_tx_lock(port, &flags);
	if (port->unplugged) {
		blocks = false;
	} else if (!port->vqs_ready || !READ_ONCE(port->host_connected)) {
		blocks = true;
	} else {
		vcon_reclaim_tx(port);
		blocks = !port->out_vq->num_free;
		if (blocks) {
			port->tx_waiting = true;
			vcon_tx_mitigate(port);
			blocks = !port->out_vq->num_free;
		}
	}
	vcon_tx_unlock(port, flags);
	return blocks;
}

static bool vcon_nonblock(struct kiocb *iocb)
{
	return (iocb->ki_filp->f_flags & O_NONBLOCK) ||
	       (iocb->ki_flags & IOCB_NOWAIT);
}

/*
 * Hand recycled buffers to the device and, for a port that signals its
 * data (O_ASYNC), turn the queue's interrupt back on once the reader has
 * taken all it had: a read that ends exactly at a buffer's end never asks
 * the ring again, and without the interrupt the next data would come with
 * no SIGIO.  Returns whether data is already waiting, which the caller
 * signals itself.  Readers and pollers look at the ring on their next
 * call; turning the interrupt on for them after every read would cost an
 * interrupt per buffer while a reader keeps up, and wake a writer asleep
 * on the same port.
 */
static bool vcon_rx_rearm(struct vcon_port *port)
{
	unsigned long flags;
	bool waiting = false;

	spin_lock_irqsave(port->inbuf_lock, flags);
	if (port->vqs_ready) {
		virtqueue_kick(port->in_vq);
		if (!port->inbuf && READ_ONCE(port->async_queue) &&
		    !virtqueue_enable_cb(port->in_vq)) {
			virtqueue_disable_cb(port->in_vq);
			waiting = true;
		}
	}
	spin_unlock_irqrestore(port->inbuf_lock, flags);
	return waiting;
}

/* Copy received data out, across as many buffers as @to takes. */
static ssize_t vcon_copy_out(struct vcon_port *port, struct iov_iter *to)
{
	struct vcon_rxbuf *rx;
	unsigned long flags;
	bool recycled = false;
	ssize_t done = 0;
	size_t n, copied;

	while (iov_iter_count(to)) {
		spin_lock_irqsave(port->inbuf_lock, flags);
		rx = port->vqs_ready ? vcon_get_inbuf(port) : NULL;
		spin_unlock_irqrestore(port->inbuf_lock, flags);
		if (!rx)
			break;

		/* read_lock keeps rx ours while we copy without the spinlock. */
		n = min(iov_iter_count(to), rx->len - rx->offset);
		copied = copy_to_iter(rx->data + rx->offset, n, to);
		rx->offset += copied;
		done += copied;

		spin_lock_irqsave(port->inbuf_lock, flags);
		if (rx->offset == rx->len && port->inbuf == rx) {
			port->inbuf = NULL;
			vcon_recycle_inbuf(port, rx);
			recycled = true;
		}
		spin_unlock_irqrestore(port->inbuf_lock, flags);
		if (copied < n) {
			if (!done)
				done = -EFAULT;
			break;
		}
	}
	if (recycled && vcon_rx_rearm(port))
		kill_fasync(&port->async_queue, SIGIO, POLL_IN);
	return done;
}

/*
 * A read that found no data: end of file if the host is gone, ENODEV if the
 * port is.  Removal clears host_connected as well, and may do so between
 * the reader's checks, so both are read at once under removal's lock.
 * -EAGAIN: the host is there, so this is no end of file.
 */
static int vcon_read_found_nothing(struct vcon_port *port)
{
	unsigned long flags;
	int ret = -EAGAIN;

	spin_lock_irqsave(port->inbuf_lock, flags);
	if (port->unplugged)
		ret = -ENODEV;
	else if (!port->host_connected)
		ret = 0;
	spin_unlock_irqrestore(port->inbuf_lock, flags);
	return ret;
}

static ssize_t vcon_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct vcon_port *port = iocb->ki_filp->private_data;
	ssize_t ret;

	if (!iov_iter_count(to))
		return 0;
	for (;;) {
		if (vcon_read_blocks(port)) {
			if (vcon_nonblock(iocb))
				return -EAGAIN;
			ret = wait_event_freezable(port->waitqueue,
						   !vcon_read_blocks(port));
			if (ret < 0)
				return ret;
		}
		if (READ_ONCE(port->unplugged))
			return -ENODEV;

		mutex_lock(&port->read_lock);
		ret = vcon_copy_out(port, to);
		mutex_unlock(&port->read_lock);
		if (ret)
			return ret;
		ret = vcon_read_found_nothing(port);
		if (ret != -EAGAIN)
			return ret;
		/*
		 * Nothing, with the host there: another reader of this file
		 * took what woke us, or the device returned empty buffers.
		 * That is no end of file: wait again.
		 */
	}
}

static ssize_t vcon_queue_tx(struct vcon_port *port, struct vcon_txbuf *buf)
{
	unsigned long flags;
	int ret;

	vcon_tx_lock(port, &flags);
	if (port->unplugged) {
		ret = -ENODEV;
	} else if (!port->vqs_ready) {
		ret = -ENOSPC;		/* frozen: wait for restore */
	} else {
		vcon_reclaim_tx(port);
		ret = vcon_tx_add(port, buf);
		if (!ret)
			vcon_tx_mitigate(port);
	}
	vcon_tx_unlock(port, flags);
	return ret;
}

static ssize_t vcon_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct vcon_port *port = iocb->ki_filp->private_data;
	struct vcon_txbuf *buf;
	ssize_t done = 0;
	size_t n;
	int ret = 0;

	while (iov_iter_count(from)) {
		if (READ_ONCE(port->unplugged)) {
			ret = -ENODEV;
			break;
		}
		if (vcon_write_blocks(port)) {
			if (vcon_nonblock(iocb)) {
				ret = -EAGAIN;
				break;
			}
			ret = wait_event_freezable(port->waitqueue,
						   !vcon_write_blocks(port));
			if (ret < 0)
				break;
			continue;
		}
		n = min_t(size_t, iov_iter_count(from), VCON_TX_MAX);
		buf = vcon_txbuf_from_iter(port, from, &n);
		if (IS_ERR(buf)) {
			ret = PTR_ERR(buf);
			break;
		}
		ret = vcon_queue_tx(port, buf);
		if (ret == -ENOSPC) {
			/* Raced with another writer; put the bytes back. */
			iov_iter_revert(from, n);
			vcon_txbuf_free(buf);
			ret = 0;
			continue;
		}
		if (ret) {
			iov_iter_revert(from, n);
			vcon_txbuf_free(buf);
			break;
		}
		done += n;
	}
	return done ? done : ret;
}

static __poll_t vcon_poll(struct file *filp, poll_table *wait)
{
	struct vcon_port *port = filp->private_data;
	__poll_t mask = 0;

	poll_wait(filp, &port->waitqueue, wait);
	if (READ_ONCE(port->unplugged))
		return EPOLLHUP;
	if (!vcon_read_blocks(port))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (!vcon_write_blocks(port))
		mask |= EPOLLOUT | EPOLLWRNORM;
	if (!READ_ONCE(port->host_connected))
		mask |= EPOLLHUP;
	return mask;
}

static struct vcon_device *vcon_device_by_major(int major)
{
	struct vcon_device *pd, *found = NULL;

	spin_lock(&vcon_devices_lock);
	list_for_each_entry(pd, &vcon_devices, node) {
		if (pd->major == major && !pd->dead) {
			found = pd;
			kref_get(&pd->kref);
			break;
		}
	}
	spin_unlock(&vcon_devices_lock);
	return found;
}

static int vcon_open(struct inode *inode, struct file *filp)
{
	struct vcon_device *pd = vcon_device_by_major(imajor(inode));
	struct vcon_port *port;
	unsigned long flags;
	int ret;

	if (!pd)
		return -ENXIO;
	port = vcon_port_get(pd, iminor(inode));
	kref_put(&pd->kref, vcon_device_release);
	if (!port)
		return -ENXIO;

	/* Consoles belong to hvc. */
	ret = -ENXIO;
	if (port->is_console)
		goto err_put;
	spin_lock_irqsave(port->inbuf_lock, flags);
	if (port->unplugged) {
		ret = -ENXIO;
	} else if (port->guest_connected) {
		ret = -EBUSY;
	} else {
		port->guest_connected = true;
		ret = 0;
	}
	spin_unlock_irqrestore(port->inbuf_lock, flags);
	if (ret)
		goto err_put;

	filp->private_data = port;
	nonseekable_open(inode, filp);
	vcon_send_ctrl(pd, port->id, VIRTIO_CONSOLE_PORT_OPEN, 1);
	return 0;

err_put:
	vcon_port_put(port);
	return ret;
}

static int vcon_fasync(int fd, struct file *filp, int mode)
{
	struct vcon_port *port = filp->private_data;

	return fasync_helper(fd, filp, mode, &port->async_queue);
}

static int vcon_release(struct inode *inode, struct file *filp)
{
	struct vcon_port *port = filp->private_data;
	unsigned long flags;

	vcon_fasync(-1, filp, 0);
	/*
	 * The host hears of the close while the port is still ours: the
	 * PORT_OPEN 1 of the next opener cannot overtake this 0.
	 */
	if (!READ_ONCE(port->unplugged))
		vcon_send_ctrl(port->vdev_priv, port->id,
			       VIRTIO_CONSOLE_PORT_OPEN, 0);
	spin_lock_irqsave(port->inbuf_lock, flags);
	port->guest_connected = false;
	/* Data the next opener never asked for is dropped, as before. */
	vcon_discard_rx(port);
	spin_unlock_irqrestore(port->inbuf_lock, flags);
	vcon_tx_lock(port, &flags);
	if (port->vqs_ready)
		vcon_tx_watch_all(port);
	vcon_tx_unlock(port, flags);
	/* Blocks in flight come back to the cache; they wait for an opener. */
	vcon_tx_cache_drain(port);
	vcon_port_put(port);
	return 0;
}

static const struct file_operations vcon_fops = {
	.owner		= THIS_MODULE,
	.open		= vcon_open,
	.release	= vcon_release,
	.read_iter	= vcon_read_iter,
	.write_iter	= vcon_write_iter,
	.splice_read	= vcon_splice_read,
	.splice_write	= iter_file_splice_write,
	.poll		= vcon_poll,
	.fasync		= vcon_fasync,
};

/* ---- sysfs ------------------------------------------------------------------ */

static ssize_t name_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct vcon_port *port = dev_get_drvdata(dev);

	if (!port || !port->name)
		return 0;
	return sysfs_emit(buf, "%s\n", port->name);
}
static DEVICE_ATTR_RO(name);

static struct attribute *vcon_port_attrs[] = {
	&dev_attr_name.attr,
	NULL,
};

static const struct attribute_group vcon_port_group = {
	.attrs = vcon_port_attrs,
};

static const struct attribute_group *vcon_port_groups[] = {
	&vcon_port_group,
	NULL,
};

/* ---- port add and remove ----------------------------------------------------- */

/* Port 0 has queues 0 and 1; the control queues 2 and 3 come before port 1. */
static unsigned int vcon_rx_qnum(u32 id)
{
	return id ? 2 * id + 2 : 0;
}

static unsigned int vcon_tx_qnum(u32 id)
{
	return vcon_rx_qnum(id) + 1;
}

static void vcon_remove_port(struct vcon_port *port);

static int vcon_add_port(struct vcon_device *pd, u32 id)
{
	struct virtio_device *vdev = pd->vdev;
	struct vcon_port *port;
	unsigned long flags;
	int ret;

	port = kzalloc(sizeof(*port), GFP_KERNEL);
	if (!port)
		return -ENOMEM;
	kref_init(&port->kref);
	kref_get(&pd->kref);
	port->vdev_priv = pd;
	port->id = id;
	port->in_vq = pd->vqs[vcon_rx_qnum(id)];
	port->out_vq = pd->vqs[vcon_tx_qnum(id)];
	port->inbuf_lock = &pd->vq_locks[vcon_rx_qnum(id)];
	port->outvq_lock = &pd->vq_locks[vcon_tx_qnum(id)];
	mutex_init(&port->read_lock);
	init_waitqueue_head(&port->waitqueue);
	INIT_LIST_HEAD(&port->console_node);
	INIT_LIST_HEAD(&port->tx_cache);
	/* Without multiport the host end is always there. */
	port->host_connected = !pd->multiport;
	port->vqs_ready = true;

	/* Published first: an interrupt for a filled buffer finds the port. */
	spin_lock_irqsave(&pd->ports_lock, flags);
	pd->ports[id] = port;
	spin_unlock_irqrestore(&pd->ports_lock, flags);

	vcon_fill_rx(port);
	if (virtqueue_get_vring_size(port->in_vq) == port->in_vq->num_free) {
		ret = -ENOMEM;
		goto err_unpublish;
	}
	/*
	 * A port plugged again under this number finds its receive queue as
	 * the last one left it: maybe with data nobody opened it for, maybe
	 * with interrupts off for a reader that is gone.
	 */
	spin_lock_irqsave(port->inbuf_lock, flags);
	vcon_discard_rx(port);
	spin_unlock_irqrestore(port->inbuf_lock, flags);

	port->dev = device_create(&vcon_class, &vdev->dev,
				  MKDEV(pd->major, id), port, "vport%up%u",
				  vdev->index, id);
	if (IS_ERR(port->dev)) {
		ret = PTR_ERR(port->dev);
		port->dev = NULL;
		dev_err(&vdev->dev, "port %u: no device node (%d)\n", id, ret);
	}

	if (!pd->multiport) {
		/* The single port of a legacy device is its console. */
		vcon_console_init(port);
		schedule_work(&pd->config_work);
	}
	vcon_send_ctrl(pd, id, VIRTIO_CONSOLE_PORT_READY, 1);
	return 0;

err_unpublish:
	/* An open through a stale node may have found it meanwhile. */
	vcon_remove_port(port);
	vcon_send_ctrl(pd, id, VIRTIO_CONSOLE_PORT_READY, 0);
	return ret;
}

static void vcon_free_buf(struct virtqueue *vq, void *buf)
{
	/* Even data queues receive, odd ones transmit. */
	if (vq->index % 2)
		vcon_txbuf_free(buf);
	else
		kfree(buf);
}

/*
 * Buffers an unplugged port leaves: what the device handed back is freed;
 * what it still holds stays in the ring (taking it back from a running
 * device is not allowed) and is freed when it comes back or at reset.
 * Caller holds both queue locks.
 */
static void vcon_port_release_buffers(struct vcon_port *port)
{
	void *buf;

	/*
	 * port->inbuf stays: a reader may be copying out of it without the
	 * lock (read_lock).  It gives it up, or the last reference frees it.
	 */
	while ((buf = vcon_vq_get(port->in_vq)))
		vcon_free_buf(port->in_vq, buf);
	do {
		while ((buf = vcon_vq_get(port->out_vq)))
			vcon_free_buf(port->out_vq, buf);
	} while (!virtqueue_enable_cb(port->out_vq));
}

/* After a reset: every buffer of every data queue comes back to us. */
static void vcon_drop_data_buffers(struct vcon_device *pd)
{
	unsigned int i;
	void *buf;

	for (i = 0; i < pd->nvqs; i++) {
		if (pd->multiport && (i == 2 || i == 3))
			continue;
		while ((buf = virtqueue_detach_unused_buf(pd->vqs[i])))
			vcon_free_buf(pd->vqs[i], buf);
	}
}

/* A data queue interrupt for a port that is gone: reclaim what came back. */
static void vcon_orphan_intr(struct virtqueue *vq)
{
	struct vcon_device *pd = vq->vdev->priv;
	spinlock_t *lock = &pd->vq_locks[vq->index];
	unsigned long flags;
	void *buf;

	/* Counted as a transmit lock: a port plugged again may share it. */
	spin_lock_irqsave(lock, flags);
	vcon_tx_count(true);
	if (!pd->dead)
		while ((buf = vcon_vq_get(vq)))
			vcon_free_buf(vq, buf);
	vcon_tx_count(false);
	spin_unlock_irqrestore(lock, flags);
}

/*
 * Hot-unplug (or device removal): mark the port dead under both queue
 * locks, so that no file operation touches its queues afterwards, then wake
 * everybody waiting on it.
 */
static void vcon_remove_port(struct vcon_port *port)
{
	struct vcon_device *pd = port->vdev_priv;
	unsigned long flags;
	bool had_vqs;

	spin_lock_irqsave(&pd->ports_lock, flags);
	pd->ports[port->id] = NULL;
	spin_unlock_irqrestore(&pd->ports_lock, flags);

	vcon_lock_queues(port, &flags);
	WRITE_ONCE(port->unplugged, true);
	/*
	 * Only queues the port is on now: during a restore, a port not yet
	 * moved to the new queues still points at the ones freeze deleted.
	 */
	had_vqs = port->vqs_ready;
	port->vqs_ready = false;
	port->host_connected = false;
	if (had_vqs)
		vcon_port_release_buffers(port);
	vcon_unlock_queues(port, flags);

	vcon_wake(port, POLL_HUP);
	/*
	 * An interrupt handler or the receive work that found the port
	 * before it left the table may still be about to poll its hvc: let
	 * them finish first.  Neither finds the port again, and with its
	 * queues gone nothing defers it to the work anew.
	 */
	if (port->is_console) {
		virtio_synchronize_cbs(pd->vdev);
		flush_work(&pd->rx_work);
	}
	vcon_console_exit(port);
	if (port->dev)
		device_destroy(&vcon_class, MKDEV(pd->major, port->id));
	port->dev = NULL;
	vcon_port_put(port);
}

static void vcon_set_name(struct vcon_port *port, const char *name,
			  size_t len)
{
	char *copy;

	if (port->name)
		return;		/* names do not change */
	len = strnlen(name, min_t(size_t, len, VCON_NAME_MAX));
	copy = kmemdup_nul(name, len, GFP_KERNEL);
	if (!copy)
		return;
	port->name = copy;
	/* udev creates /dev/virtio-ports/NAME on this event. */
	if (port->dev)
		kobject_uevent(&port->dev->kobj, KOBJ_CHANGE);
}

static void vcon_set_host_connected(struct vcon_port *port, bool connected)
{
	unsigned long flags;
	bool changed;

	spin_lock_irqsave(port->inbuf_lock, flags);
	changed = port->host_connected != connected;
	port->host_connected = connected;
	spin_unlock_irqrestore(port->inbuf_lock, flags);
	if (changed)
		vcon_wake(port, connected ? POLL_IN : POLL_HUP);
	if (port->is_console && port->hvc && hvc_poll(port->hvc))
		hvc_kick();
}

static void vcon_handle_ctrl(struct vcon_device *pd, const char *data,
			     size_t len)
{
	struct virtio_device *vdev = pd->vdev;
	struct virtio_console_control c;
	struct vcon_port *port;
	u16 event, value;
	u32 id;

	if (len < sizeof(c)) {
		dev_warn_ratelimited(&vdev->dev, "short control message (%zu bytes)\n",
				     len);
		return;
	}
	memcpy(&c, data, sizeof(c));
	id = virtio32_to_cpu(vdev, c.id);
	event = virtio16_to_cpu(vdev, c.event);
	value = virtio16_to_cpu(vdev, c.value);

	if (id >= pd->max_nr_ports) {
		dev_warn_ratelimited(&vdev->dev, "control event %u for bad port %u\n",
				     event, id);
		return;
	}
	if (event == VIRTIO_CONSOLE_PORT_ADD) {
		port = vcon_port_get(pd, id);
		if (port) {
			/* Already there: tell the host it is ready again. */
			vcon_send_ctrl(pd, id, VIRTIO_CONSOLE_PORT_READY, 1);
			vcon_port_put(port);
			return;
		}
		vcon_add_port(pd, id);
		return;
	}

	port = vcon_port_get(pd, id);
	if (!port) {
		dev_dbg_ratelimited(&vdev->dev, "control event %u for unknown port %u\n",
				    event, id);
		return;
	}
	switch (event) {
	case VIRTIO_CONSOLE_CONSOLE_PORT:
		if (value && !port->is_console && !port->guest_connected)
			vcon_console_init(port);
		break;
	case VIRTIO_CONSOLE_RESIZE: {
		struct { __virtio16 cols, rows; } size;

		if (len < sizeof(c) + sizeof(size))
			break;
		memcpy(&size, data + sizeof(c), sizeof(size));
		/* The spec's order: columns, then rows. */
		vcon_console_resize(port, virtio16_to_cpu(vdev, size.rows),
				    virtio16_to_cpu(vdev, size.cols));
		break;
	}
	case VIRTIO_CONSOLE_PORT_OPEN:
		vcon_set_host_connected(port, value);
		break;
	case VIRTIO_CONSOLE_PORT_NAME:
		vcon_set_name(port, data + sizeof(c), len - sizeof(c));
		break;
	case VIRTIO_CONSOLE_PORT_REMOVE:
		vcon_remove_port(port);
		break;
	default:
		dev_dbg_ratelimited(&vdev->dev, "unknown control event %u\n",
				    event);
		break;
	}
	vcon_port_put(port);
}

static int vcon_fill_ctrl(struct vcon_device *pd)
{
	BUILD_BUG_ON(sizeof(struct vcon_rxbuf) +
		     sizeof(struct virtio_console_control) + VCON_NAME_MAX + 1 >
		     VCON_CTRL_ALLOC);
	return vcon_fill_vq(&pd->c_ivq, &pd->c_ivq_lock, NULL,
			    virtqueue_get_vring_size(pd->c_ivq),
			    VCON_CTRL_ALLOC) ? 0 : -ENOMEM;
}

static void vcon_control_work(struct work_struct *work)
{
	struct vcon_device *pd = container_of(work, struct vcon_device,
					      control_work);
	struct vcon_rxbuf *buf;
	unsigned long flags;
	unsigned int len;

	for (;;) {
		spin_lock_irqsave(&pd->c_ivq_lock, flags);
		buf = pd->dead ? NULL : virtqueue_get_buf(pd->c_ivq, &len);
		spin_unlock_irqrestore(&pd->c_ivq_lock, flags);
		if (!buf)
			break;
		if (len > buf->size) {
			dev_warn_ratelimited(&pd->vdev->dev,
					     "control buffer overrun (%u bytes)\n",
					     len);
			len = buf->size;
		}
		vcon_handle_ctrl(pd, buf->data, len);

		spin_lock_irqsave(&pd->c_ivq_lock, flags);
		if (pd->dead || vcon_add_inbuf(pd->c_ivq, buf))
			kfree(buf);
		else
			virtqueue_kick(pd->c_ivq);
		spin_unlock_irqrestore(&pd->c_ivq_lock, flags);
		/* A device may hand each buffer straight back. */
		cond_resched();
	}
}

/* ---- interrupts ------------------------------------------------------------- */

static struct vcon_port *vcon_vq_port(struct virtqueue *vq)
{
	struct vcon_device *pd = vq->vdev->priv;
	unsigned int idx = vq->index;

	return vcon_port_get(pd, idx < 2 ? 0 : (idx - 2) / 2);
}

/* The device used receive buffers of @port: from its interrupt or later. */
static void vcon_port_rx(struct vcon_port *port)
{
	struct hvc_struct *hvc;
	unsigned long flags;
	bool discard;

	spin_lock_irqsave(port->inbuf_lock, flags);
	WRITE_ONCE(port->rx_deferred, false);
	/* Data for a port nobody has open is not kept for a later opener. */
	discard = !port->guest_connected && port->vqs_ready;
	if (discard)
		vcon_discard_rx(port);
	else if (port->vqs_ready)
		virtqueue_disable_cb(port->in_vq); /* the reader takes it on */
	spin_unlock_irqrestore(port->inbuf_lock, flags);

	if (!discard)
		vcon_wake(port, POLL_IN);
	/* Removal waits for this before the hvc goes: see vcon_remove_port(). */
	hvc = port->is_console ? READ_ONCE(port->hvc) : NULL;
	if (hvc && hvc_poll(hvc))
		hvc_kick();
}

static void vcon_in_intr(struct virtqueue *vq)
{
	struct vcon_port *port = vcon_vq_port(vq);

	if (!port) {
		vcon_orphan_intr(vq);
		return;
	}
	vcon_port_rx(port);
	vcon_port_put(port);
}

/* Calls @fn for each port in the table, holding a reference across it. */
static void vcon_each_port(struct vcon_device *pd,
			   void (*fn)(struct vcon_port *port))
{
	struct vcon_port *port;
	u32 id;

	for (id = 0; id < pd->max_nr_ports; id++) {
		port = vcon_port_get(pd, id);
		if (!port)
			continue;
		fn(port);
		vcon_port_put(port);
		cond_resched();
	}
}

static void vcon_port_rx_deferred(struct vcon_port *port)
{
	if (READ_ONCE(port->rx_deferred))
		vcon_port_rx(port);
}

static void vcon_rx_work(struct work_struct *work)
{
	struct vcon_device *pd = container_of(work, struct vcon_device,
					      rx_work);

	vcon_each_port(pd, vcon_port_rx_deferred);
}

static void vcon_out_intr(struct virtqueue *vq)
{
	struct vcon_port *port = vcon_vq_port(vq);
	unsigned long flags;

	if (!port) {
		vcon_orphan_intr(vq);
		return;
	}
	vcon_tx_lock(port, &flags);
	/* A writer still short of room says so again. */
	port->tx_waiting = false;
	if (port->vqs_ready)
		vcon_reclaim_tx(port);
	vcon_tx_unlock(port, flags);
	wake_up_interruptible(&port->waitqueue);
	vcon_port_put(port);
}

static void vcon_ctrl_in_intr(struct virtqueue *vq)
{
	struct vcon_device *pd = vq->vdev->priv;
	unsigned long flags;

	/*
	 * A device may still interrupt after its reset, until its queues
	 * are deleted: no work once the queues are dead, as the last cancel
	 * of it may have run (vcon_quiesce()).
	 */
	spin_lock_irqsave(&pd->c_ivq_lock, flags);
	if (!pd->dead)
		schedule_work(&pd->control_work);
	spin_unlock_irqrestore(&pd->c_ivq_lock, flags);
}

static void vcon_config_work(struct work_struct *work)
{
	struct vcon_device *pd = container_of(work, struct vcon_device,
					      config_work);
	struct virtio_device *vdev = pd->vdev;
	struct vcon_port *port;
	u16 rows, cols;

	if (!virtio_has_feature(vdev, VIRTIO_CONSOLE_F_SIZE))
		return;
	virtio_cread(vdev, struct virtio_console_config, cols, &cols);
	virtio_cread(vdev, struct virtio_console_config, rows, &rows);
	/* The config space size belongs to the console on port 0. */
	port = vcon_port_get(pd, 0);
	if (!port)
		return;
	vcon_console_resize(port, rows, cols);
	vcon_port_put(port);
}

static void vcon_config_changed(struct virtio_device *vdev)
{
	struct vcon_device *pd = vdev->priv;

	if (!pd->multiport)
		schedule_work(&pd->config_work);
}

/* ---- probe and remove -------------------------------------------------------- */

static int vcon_init_vqs(struct vcon_device *pd)
{
	vq_callback_t **callbacks;
	unsigned int i, nvqs = pd->nvqs;
	const char **names;
	int ret = -ENOMEM;

	callbacks = kcalloc(nvqs, sizeof(*callbacks), GFP_KERNEL);
	names = kcalloc(nvqs, sizeof(*names), GFP_KERNEL);
	if (!callbacks || !names)
		goto out_free;
	for (i = 0; i < nvqs; i++) {
		if (i == 2) {
			callbacks[i] = vcon_ctrl_in_intr;
			names[i] = "control-i";
		} else if (i == 3) {
			callbacks[i] = vcon_ctrl_out_intr;
			names[i] = "control-o";
		} else if (i % 2 == 0) {
			callbacks[i] = vcon_in_intr;
			names[i] = "input";
		} else {
			callbacks[i] = vcon_out_intr;
			names[i] = "output";
		}
	}
	ret = vcon_find_vqs(pd->vdev, nvqs, pd->vqs, callbacks, names);
	if (ret)
		goto out_free;
	if (pd->multiport) {
		pd->c_ivq = pd->vqs[2];
		pd->c_ovq = pd->vqs[3];
	}
out_free:
	kfree(names);
	kfree(callbacks);
	return ret;
}

static void vcon_drop_ctrl_buffers(struct vcon_device *pd)
{
	struct vcon_ctrl_msg *msg, *tmp;
	unsigned long flags;
	void *buf;

	if (!pd->multiport)
		return;
	/*
	 * Not every transport waits for running interrupt handlers at reset:
	 * the queues' locks keep a late one off what is freed here.
	 */
	spin_lock_irqsave(&pd->c_ivq_lock, flags);
	while ((buf = virtqueue_detach_unused_buf(pd->c_ivq)))
		kfree(buf);
	spin_unlock_irqrestore(&pd->c_ivq_lock, flags);
	spin_lock_irqsave(&pd->c_ovq_lock, flags);
	while ((buf = vcon_vq_get(pd->c_ovq)))
		kfree(buf);
	while ((buf = virtqueue_detach_unused_buf(pd->c_ovq)))
		kfree(buf);
	list_for_each_entry_safe(msg, tmp, &pd->ctrl_pending, node) {
		list_del(&msg->node);
		kfree(msg);
	}
	pd->ctrl_pending_nr = 0;
	spin_unlock_irqrestore(&pd->c_ovq_lock, flags);
}

/* Whether config writes of @vdev's transport never sleep. */
static bool vcon_config_writes_atomic(struct virtio_device *vdev)
{
	struct device *parent = vdev->dev.parent;

	return parent && (dev_is_pci(parent) || dev_is_platform(parent));
}

static int vcon_read_config(struct vcon_device *pd)
{
	struct virtio_device *vdev = pd->vdev;
	u32 max = 1;

	pd->multiport = virtio_has_feature(vdev, VIRTIO_CONSOLE_F_MULTIPORT);
	pd->emerg_write = virtio_has_feature(vdev, VIRTIO_CONSOLE_F_EMERG_WRITE) &&
			  vcon_config_writes_atomic(vdev);
	if (pd->multiport) {
		virtio_cread(vdev, struct virtio_console_config, max_nr_ports,
			     &max);
		if (!max || max > VCON_MAX_PORTS) {
			dev_err(&vdev->dev, "device offers %u ports (1..%u)\n",
				max, VCON_MAX_PORTS);
			return -EINVAL;
		}
	}
	pd->max_nr_ports = max;
	pd->nvqs = pd->multiport ? 2 * max + 2 : 2;
	return 0;
}

/* Whether the control queues may be used; both their locks guard it. */
static void vcon_set_dead(struct vcon_device *pd, bool dead)
{
	unsigned long flags;

	spin_lock_irqsave(&pd->c_ivq_lock, flags);
	spin_lock(&pd->c_ovq_lock);
	pd->dead = dead;
	spin_unlock(&pd->c_ovq_lock);
	spin_unlock_irqrestore(&pd->c_ivq_lock, flags);
}

/* Stop the device first: after this it touches no buffer. */
static void vcon_quiesce(struct vcon_device *pd)
{
	virtio_reset_device(pd->vdev);
	/* Not every transport's reset waits for its interrupt handlers. */
	virtio_synchronize_cbs(pd->vdev);
	vcon_set_dead(pd, true);
	cancel_work_sync(&pd->control_work);
	cancel_work_sync(&pd->config_work);
}

/* Stops the device and lets go of everything it had, ports included. */
static void vcon_teardown(struct vcon_device *pd)
{
	struct virtio_device *vdev = pd->vdev;

	spin_lock(&vcon_devices_lock);
	list_del(&pd->node);
	spin_unlock(&vcon_devices_lock);

	vcon_quiesce(pd);

	vcon_each_port(pd, vcon_remove_port);
	/* No port has queues now to defer receive buffers from. */
	cancel_work_sync(&pd->rx_work);
	/* Freeze already freed every buffer of the queues it deleted. */
	if (pd->vqs_gone)
		return;
	vcon_drop_data_buffers(pd);
	vcon_drop_ctrl_buffers(pd);
	vdev->config->del_vqs(vdev);
}

static int vcon_start(struct vcon_device *pd)
{
	int ret;

	if (!pd->multiport) {
		virtio_device_ready(pd->vdev);
		return vcon_add_port(pd, 0);
	}
	ret = vcon_fill_ctrl(pd);
	if (ret)
		return ret;
	virtio_device_ready(pd->vdev);
	spin_lock_irq(&pd->c_ivq_lock);
	virtqueue_kick(pd->c_ivq);
	spin_unlock_irq(&pd->c_ivq_lock);
	return vcon_send_ctrl(pd, VIRTIO_CONSOLE_BAD_ID,
			      VIRTIO_CONSOLE_DEVICE_READY, 1);
}

static int vcon_probe(struct virtio_device *vdev)
{
	struct vcon_device *pd;
	unsigned int i;
	int ret;

	if (!vdev->config->get) {
		dev_err(&vdev->dev, "transport has no config space access\n");
		return -EINVAL;
	}
	pd = kzalloc(sizeof(*pd), GFP_KERNEL);
	if (!pd)
		return -ENOMEM;
	kref_init(&pd->kref);
	pd->vdev = vdev;
	vdev->priv = pd;
	spin_lock_init(&pd->ports_lock);
	spin_lock_init(&pd->c_ivq_lock);
	spin_lock_init(&pd->c_ovq_lock);
	INIT_LIST_HEAD(&pd->ctrl_pending);
	INIT_WORK(&pd->control_work, vcon_control_work);
	INIT_WORK(&pd->config_work, vcon_config_work);
	INIT_WORK(&pd->rx_work, vcon_rx_work);

	ret = vcon_read_config(pd);
	if (ret)
		goto err_free;
	ret = -ENOMEM;
	pd->vqs = kcalloc(pd->nvqs, sizeof(*pd->vqs), GFP_KERNEL);
	pd->vq_locks = kcalloc(pd->nvqs, sizeof(*pd->vq_locks), GFP_KERNEL);
	pd->ports = kcalloc(pd->max_nr_ports, sizeof(*pd->ports), GFP_KERNEL);
	if (!pd->vqs || !pd->vq_locks || !pd->ports)
		goto err_free;
	for (i = 0; i < pd->nvqs; i++)
		spin_lock_init(&pd->vq_locks[i]);

	pd->major = __register_chrdev(0, 0, pd->max_nr_ports,
				      "virtio-portsdev", &vcon_fops);
	if (pd->major < 0) {
		ret = pd->major;
		goto err_free;
	}
	ret = vcon_init_vqs(pd);
	if (ret) {
		dev_err(&vdev->dev, "cannot set up %u queues (%d)\n", pd->nvqs,
			ret);
		goto err_chrdev;
	}

	spin_lock(&vcon_devices_lock);
	list_add_tail(&pd->node, &vcon_devices);
	spin_unlock(&vcon_devices_lock);

	ret = vcon_start(pd);
	if (ret)
		goto err_unlist;
	return 0;

err_unlist:
	/* The device was ready: work and ports may have come meanwhile. */
	vcon_teardown(pd);
err_chrdev:
	__unregister_chrdev(pd->major, 0, pd->max_nr_ports, "virtio-portsdev");
err_free:
	vdev->priv = NULL;
	kref_put(&pd->kref, vcon_device_release);
	return ret;
}

static void vcon_remove(struct virtio_device *vdev)
{
	struct vcon_device *pd = vdev->priv;

	vcon_teardown(pd);
	__unregister_chrdev(pd->major, 0, pd->max_nr_ports, "virtio-portsdev");
	vdev->priv = NULL;
	kref_put(&pd->kref, vcon_device_release);
}

#ifdef CONFIG_PM_SLEEP
static int vcon_freeze(struct virtio_device *vdev)
{
	struct vcon_device *pd = vdev->priv;
	struct vcon_port *port;
	unsigned long flags;
	u32 id;

	vcon_quiesce(pd);
	/* A restore that failed left no queues behind. */
	if (pd->vqs_gone)
		return 0;

	for (id = 0; id < pd->max_nr_ports; id++) {
		port = vcon_port_get(pd, id);
		if (!port)
			continue;
		/* No reader copies out of inbuf while it goes. */
		mutex_lock(&port->read_lock);
		vcon_lock_queues(port, &flags);
		port->vqs_ready = false;
		WRITE_ONCE(port->rx_deferred, false);
		port->tx_inflight = 0;	/* the reset frees them all */
		port->tx_waiting = false;
		kfree(port->inbuf);
		port->inbuf = NULL;
		vcon_unlock_queues(port, flags);
		mutex_unlock(&port->read_lock);
		vcon_port_put(port);
	}
	cancel_work_sync(&pd->rx_work);
	vcon_drop_data_buffers(pd);
	vcon_drop_ctrl_buffers(pd);
	vdev->config->del_vqs(vdev);
	pd->vqs_gone = true;
	return 0;
}

static int vcon_restore(struct virtio_device *vdev)
{
	struct vcon_device *pd = vdev->priv;
	struct vcon_port *port;
	unsigned long flags;
	bool unplugged;
	int ret;
	u32 id;

	ret = vcon_init_vqs(pd);
	if (ret)
		return ret;
	if (pd->multiport) {
		ret = vcon_fill_ctrl(pd);
		if (ret)
			goto err_del_vqs;
	}
	pd->vqs_gone = false;
	vcon_set_dead(pd, false);
	/* Buffers may be queued before DRIVER_OK; kicks may not. */
	virtio_device_ready(vdev);
	for (id = 0; id < pd->max_nr_ports; id++) {
		port = vcon_port_get(pd, id);
		if (!port)
			continue;
		vcon_lock_queues(port, &flags);
		/*
		 * The control queue runs already: a PORT_REMOVE may have taken
		 * the port after we found it.  It keeps no queues then.
		 */
		unplugged = port->unplugged;
		if (!unplugged) {
			port->in_vq = pd->vqs[vcon_rx_qnum(id)];
			port->out_vq = pd->vqs[vcon_tx_qnum(id)];
			port->vqs_ready = true;
		}
		vcon_unlock_queues(port, flags);
		if (unplugged) {
			vcon_port_put(port);
			continue;
		}
		vcon_fill_rx(port);
		/*
		 * A writer that slept on a full ring through the freeze waits
		 * for buffers that the reset took: the ring is empty now.
		 */
		wake_up_interruptible(&port->waitqueue);
		vcon_port_put(port);
	}
	if (!pd->multiport)
		return 0;
	spin_lock_irq(&pd->c_ivq_lock);
	virtqueue_kick(pd->c_ivq);
	spin_unlock_irq(&pd->c_ivq_lock);
	/*
	 * The device kept its ports, but what it told us while its queues
	 * were gone is lost (QEMU's device drops such messages): ask for the
	 * ports again, which it answers with the host side's state, and tell
	 * it which ones we have open.
	 */
	for (id = 0; id < pd->max_nr_ports; id++) {
		port = vcon_port_get(pd, id);
		if (!port)
			continue;
		vcon_send_ctrl(pd, id, VIRTIO_CONSOLE_PORT_READY, 1);
		if (port->guest_connected)
			vcon_send_ctrl(pd, id, VIRTIO_CONSOLE_PORT_OPEN, 1);
		vcon_port_put(port);
	}
	return 0;

err_del_vqs:
	/* The ports still point at the queues of before the freeze. */
	vcon_drop_ctrl_buffers(pd);
	vdev->config->del_vqs(vdev);
	return ret;
}
#endif

static const struct virtio_device_id vcon_id_table[] = {
	{ VIRTIO_ID_CONSOLE, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, vcon_id_table);

static const unsigned int vcon_features[] = {
	VIRTIO_CONSOLE_F_SIZE,
	VIRTIO_CONSOLE_F_MULTIPORT,
	VIRTIO_CONSOLE_F_EMERG_WRITE,
};

static struct virtio_driver vcon_driver = {
	.feature_table = vcon_features,
	.feature_table_size = ARRAY_SIZE(vcon_features),
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = vcon_id_table,
	.probe = vcon_probe,
	.remove = vcon_remove,
	.config_changed = vcon_config_changed,
#ifdef CONFIG_PM_SLEEP
	.freeze = vcon_freeze,
	.restore = vcon_restore,
#endif
};

static int __init vcon_init(void)
{
	int ret;

	ret = class_register(&vcon_class);
	if (ret) {
		pr_err("cannot register class %s (%d)\n", vcon_class.name, ret);
		return ret;
	}
	ret = register_virtio_driver(&vcon_driver);
	if (ret) {
		pr_err("cannot register driver (%d)\n", ret);
		class_unregister(&vcon_class);
	}
	return ret;
}

static void __exit vcon_exit(void)
{
	unregister_virtio_driver(&vcon_driver);
	class_unregister(&vcon_class);
	ida_destroy(&vcon_vtermnos);
}

module_init(vcon_init);
module_exit(vcon_exit);

MODULE_DESCRIPTION("Virtio console (virtio-serial) driver");
MODULE_LICENSE("GPL");
