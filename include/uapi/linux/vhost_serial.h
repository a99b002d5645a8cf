/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
#ifndef _UAPI_LINUX_VHOST_SERIAL_H
#define _UAPI_LINUX_VHOST_SERIAL_H
/*
 * vhost-serial: the virtio-console (virtio-serial) device in the host kernel.
 *
 * Each open of /dev/vhost-serial is one multiport virtio-console device.  On
 * top of the generic vhost ioctls of <linux/vhost.h> (owner, features, memory
 * table, vrings, dirty log, workers) the device understands the ioctls below.
 *
 * Queue layout (virtio spec, "Console Device"): port 0 receiveq/transmitq are
 * queues 0/1, the control receiveq/transmitq are 2/3, and port N >= 1 uses
 * queues 2N + 2 and 2N + 3.  "rx" and "tx" name directions as the guest sees
 * them: rx carries host data into the guest, tx carries guest output.
 *
 * Order of set-up:
 *   1. VHOST_SERIAL_SET_NUM_PORTS (first; sizes the device and its queues)
 *   2. VHOST_SET_OWNER, VHOST_SET_FEATURES, VHOST_SET_MEM_TABLE, VHOST_SET_VRING_*
 *   3. VHOST_SERIAL_ADD_PORT, VHOST_SERIAL_SET_BACKEND, VHOST_SERIAL_SET_PORT_EVENT
 *      (these may also come at any later time: port hot-plug)
 *   4. VHOST_SERIAL_SET_RUNNING 1
 * Any vhost ioctl issued before step 1 fails with EBADFD.
 *
 * Ownership: apart from VHOST_GET_FEATURES, VHOST_SERIAL_SET_NUM_PORTS and
 * VHOST_SET_OWNER, every ioctl fails with EPERM unless it comes from the
 * owner's process (the one that issued VHOST_SET_OWNER): a child or a
 * process the file was passed to cannot drive the device.  VHOST_RESET_OWNER
 * stops the device, forgets the guest (its rings, memory table, what it had
 * open and any message not yet sent to it) and releases the owner; ports,
 * names, backends and event eventfds stay, and the next owner sets up rings
 * and memory again and restarts the device.
 *
 * The module speaks the whole control protocol with the guest (DEVICE_READY,
 * PORT_ADD, PORT_REMOVE, PORT_READY, CONSOLE_PORT, RESIZE, PORT_OPEN,
 * PORT_NAME); userspace only describes ports and attaches their backends.
 */

#include <linux/types.h>
#include <linux/vhost.h>

/* Highest number of ports: 2 * ports + 2 queues must fit in 1024. */
#define VHOST_SERIAL_MAX_PORTS		511

/* Longest port name, without the terminating NUL. */
#define VHOST_SERIAL_NAME_MAX		127

/*
 * VHOST_SERIAL_SET_NUM_PORTS: number of ports of the device, 1 to
 * VHOST_SERIAL_MAX_PORTS (the config space's max_nr_ports).  Must be the first
 * ioctl on a new file and may be issued once; EBUSY afterwards.  Memory for
 * queues and ports is allocated here and scales with the number.
 */
#define VHOST_SERIAL_SET_NUM_PORTS	_IOW(VHOST_VIRTIO, 0xC0, __u32)

/* struct vhost_serial_port_config.flags */
#define VHOST_SERIAL_PORT_F_CONSOLE	(1U << 0)	/* hvc console port */
#define VHOST_SERIAL_PORT_F_ALL		VHOST_SERIAL_PORT_F_CONSOLE

/**
 * struct vhost_serial_port_config - a port to add
 * @id: port number, below the number of ports; not already added
 * @flags: VHOST_SERIAL_PORT_F_*; other bits must be zero
 * @name: port name, NUL-terminated, at most VHOST_SERIAL_NAME_MAX characters;
 *	an empty name sends no PORT_NAME; a name may not contain '/'
 */
struct vhost_serial_port_config {
	__u32 id;
	__u32 flags;
	char name[VHOST_SERIAL_NAME_MAX + 1];
};

/*
 * VHOST_SERIAL_ADD_PORT: add a port.  Allowed at any time after
 * VHOST_SET_OWNER; a running guest that has sent DEVICE_READY is
 * sent PORT_ADD at once (hot-plug).  EEXIST if the port exists, EINVAL for a
 * bad id, flag or name.
 */
#define VHOST_SERIAL_ADD_PORT	_IOW(VHOST_VIRTIO, 0xC1, struct vhost_serial_port_config)

/*
 * VHOST_SERIAL_DEL_PORT: remove a port (argument: its id).  Its backend and
 * event eventfd are released and the guest is sent PORT_REMOVE (hot-unplug).
 * Guest output still in the port's transmit queue is handed back to the
 * guest unread, as is what the guest queues there until it answers the
 * latest PORT_ADD of a port added again under this id with PORT_READY
 * (without a control queue: until the port is added again and the device
 * runs): a new port never receives an old one's data.  ENOENT if the port
 * does not exist.
 */
#define VHOST_SERIAL_DEL_PORT	_IOW(VHOST_VIRTIO, 0xC2, __u32)

/**
 * struct vhost_serial_backend - attach or detach a port's host side
 * @id: port number
 * @in_fd: descriptor the module reads host-to-guest data from, or -1
 * @out_fd: descriptor the module writes guest output to, or -1
 * @flags: VHOST_SERIAL_BACKEND_F_* (zero: copy both ways)
 *
 * A socket serves both directions when given as both @in_fd and @out_fd; a
 * pipe pair is given as its two ends; a tty, FIFO or regular file works too.
 * Sockets must be stream sockets (SOCK_STREAM; EINVAL otherwise): a
 * datagram longer than the guest's buffer would lose its tail.
 * Descriptors other than sockets and regular files must be in O_NONBLOCK
 * mode (EINVAL otherwise): the worker never sleeps on a backend, it polls.
 * Clearing O_NONBLOCK afterwards hangs the port up at its next I/O; do not
 * clear it on a tty while the port is in use: an I/O already past that
 * check may sleep in the worker until the tty is ready.  Pipes and FIFOs
 * are read and written by the module itself, never while another task
 * holds the pipe's lock: the port tries again 10 ms later, then less and
 * less often (up to 160 ms), and the other ports go on.  A task that
 * splices between such a pipe and a socket must
 * not wait inside splice(2) (make the socket non-blocking, or pass
 * SPLICE_F_NONBLOCK, and poll): it holds the lock while it waits, and the
 * port's data waits with it.
 * A regular file given as @in_fd is read from its current position; as
 * @out_fd it is written at its current position, up to the file size limit
 * (RLIMIT_FSIZE) the owner had at VHOST_SET_OWNER: the port hangs up there.
 *
 * A pipe whose last reader goes away between the module's check and its
 * write fails that write with EPIPE, and the port hangs up.  The SIGPIPE
 * the pipe raises goes to the device's worker, which blocks (vhost task)
 * or ignores (kernel thread) signals: it never reaches the owner.
 *
 * Attaching means "host connected": the guest is sent PORT_OPEN 1.  Both fds
 * -1 detaches: "host disconnected", PORT_OPEN 0.  The module holds its own
 * references; the caller may close its descriptors afterwards.  Data is never
 * lost across detach and re-attach: guest output stays in the ring, and a
 * partly written buffer resumes where it stopped.
 *
 * With VHOST_SERIAL_BACKEND_F_ZEROCOPY in @flags, @out_fd must be a pipe
 * (or FIFO) and guest output goes into it by reference, not by copy: the
 * pages of each guest buffer are pinned and become pipe buffers, so that
 * whoever reads the pipe, or splices it to a file or to /dev/null, reads
 * guest memory directly.  The guest gets a buffer back only when every
 * pipe buffer pointing into it has been released (read, spliced on or
 * discarded).  Splicing such a pipe into a socket is not supported: the
 * socket keeps its own references to the pages after the pipe released
 * them, so the guest could reuse the buffer while the socket still sends
 * it; read the pipe, or splice it to a file, another pipe or /dev/null.
 * tee(2) is allowed; stealing the pages (SPLICE_F_MOVE) is not.  At most
 * 4096 pages per device are pinned at a time, however the pages travel on
 * from our pipe.  Pinned pages are locked memory of the owner's user: they
 * count against the RLIMIT_MEMLOCK the owner had at VHOST_SET_OWNER, with
 * whatever else that user has locked this way, until released (an owner
 * with CAP_IPC_LOCK is not limited).  Past either limit, and for console
 * ports and guest buffers of more than 256 pages, output is copied into the
 * pipe as usual.  Buffers
 * the host releases while the device is stopped are returned to the guest
 * when it runs again, unless its rings were set up anew in between (then
 * they belong to a ring that is gone).  Pages in a pipe stay valid after
 * the device is closed or guest memory unmapped.  Host-to-guest data needs
 * no flag: a pipe as @in_fd, filled by splice from a file or socket, is
 * copied once, into the guest's buffer.
 *
 * When a backend hangs up (EOF on @in_fd, EPIPE, POLLHUP or POLLERR) the module
 * first delivers what could still be read, then marks the host disconnected,
 * tells the guest and signals the port's eventfd; the backend stays attached
 * (state VHOST_SERIAL_STATE_HUP) until userspace detaches or replaces it.
 * When only @out_fd hangs up and a separate @in_fd is still attached, the
 * host stays connected, as input may still come: guest output then waits
 * in the ring (a console's: 4 KiB is kept, the rest dropped and counted)
 * until userspace, told by the eventfd and VHOST_SERIAL_STATE_HUP, gives a
 * new @out_fd.
 */
struct vhost_serial_backend {
	__u32 id;
	__s32 in_fd;
	__s32 out_fd;
	__u32 flags;
};

/* struct vhost_serial_backend.flags */
#define VHOST_SERIAL_BACKEND_F_ZEROCOPY	(1U << 0)	/* out_fd: pipe, by reference */
#define VHOST_SERIAL_BACKEND_F_ALL	VHOST_SERIAL_BACKEND_F_ZEROCOPY

#define VHOST_SERIAL_SET_BACKEND _IOW(VHOST_VIRTIO, 0xC3, struct vhost_serial_backend)

/**
 * struct vhost_serial_port_event - a port's state change notifier
 * @id: port number
 * @fd: eventfd signalled whenever the port's state changes (guest ready,
 *	guest opened or closed the port, backend hung up), or -1 to remove it
 */
struct vhost_serial_port_event {
	__u32 id;
	__s32 fd;
};

#define VHOST_SERIAL_SET_PORT_EVENT _IOW(VHOST_VIRTIO, 0xC4, struct vhost_serial_port_event)

/* struct vhost_serial_port_state.state */
#define VHOST_SERIAL_STATE_PRESENT	(1U << 0)	/* port added */
#define VHOST_SERIAL_STATE_CONSOLE	(1U << 1)	/* console port */
#define VHOST_SERIAL_STATE_ANNOUNCED	(1U << 2)	/* PORT_ADD sent */
#define VHOST_SERIAL_STATE_GUEST_READY	(1U << 3)	/* guest sent PORT_READY 1 */
#define VHOST_SERIAL_STATE_GUEST_OPEN	(1U << 4)	/* guest has the port open */
#define VHOST_SERIAL_STATE_HOST_OPEN	(1U << 5)	/* backend attached, not hung up */
#define VHOST_SERIAL_STATE_HUP		(1U << 6)	/* backend hung up */
#define VHOST_SERIAL_STATE_ZEROCOPY	(1U << 7)	/* output by reference */

/**
 * struct vhost_serial_port_state - a port's state and counters
 * @id: port number (in)
 * @state: VHOST_SERIAL_STATE_* (out)
 * @events: number of state changes signalled so far (out)
 * @rx_bytes: bytes delivered to the guest
 * @rx_bufs: guest receive buffers completed
 * @tx_bytes: bytes of guest output written to the backend
 * @tx_bufs: guest transmit buffers completed
 * @tx_dropped: console output dropped because nothing could take it, and
 *	output of a removed port (VHOST_SERIAL_DEL_PORT)
 * @errors: backend I/O errors and malformed guest requests seen on this port
 * @guest_opens: times the guest opened the port (PORT_OPEN 1 while closed)
 *	since VHOST_SERIAL_ADD_PORT: a close and an open that fall between two
 *	reads of @state show here
 */
struct vhost_serial_port_state {
	__u32 id;
	__u32 state;
	__u64 events;
	__u64 rx_bytes;
	__u64 rx_bufs;
	__u64 tx_bytes;
	__u64 tx_bufs;
	__u64 tx_dropped;
	__u64 errors;
	__u64 guest_opens;
};

#define VHOST_SERIAL_GET_PORT_STATE _IOWR(VHOST_VIRTIO, 0xC5, struct vhost_serial_port_state)

/**
 * struct vhost_serial_resize - console size to send to the guest
 * @id: port number of a console port
 * @cols: columns
 * @rows: rows
 *
 * Sent as a RESIZE control message in the virtio spec's layout (cols, then
 * rows).  Linux guests before 6.15 read the two fields swapped.
 */
struct vhost_serial_resize {
	__u32 id;
	__u16 cols;
	__u16 rows;
};

#define VHOST_SERIAL_RESIZE	_IOW(VHOST_VIRTIO, 0xC6, struct vhost_serial_resize)

/*
 * VHOST_SERIAL_SET_RUNNING: 1 starts the device (all queues whose rings are
 * set up), 0 stops it.  Starting needs an owner and valid rings (EFAULT).
 */
#define VHOST_SERIAL_SET_RUNNING _IOW(VHOST_VIRTIO, 0xC7, int)

/*
 * VHOST_SERIAL_RESET_GUEST: the virtio device was reset (the guest
 * rebooted, froze, or its driver went away).  What the guest had in its
 * rings goes: output of which only a part was written, zero-copy chains
 * still in pipes (their pages are released without completing them); and
 * every port counts as neither ready nor open, as the port eventfds tell.
 * The ports stay announced and control messages queued for the guest stay
 * queued: a driver restoring from a freeze asks for its ports again with
 * PORT_READY (and PORT_OPEN) without DEVICE_READY; a new driver's
 * DEVICE_READY starts over.  Ports, names and backends stay.  Only on a
 * stopped device (EBUSY while running).  Without it, only a ring set up at
 * other addresses, of another size or at another position is taken as
 * another guest's.
 */
#define VHOST_SERIAL_RESET_GUEST _IO(VHOST_VIRTIO, 0xC8)

#endif /* _UAPI_LINUX_VHOST_SERIAL_H */
