/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost-serial: the differences of the vhost core between the kernels the
 * module builds against (6.1 and 6.12), in one place.
 *
 * 6.5 gave each virtqueue its own worker (work is queued on a queue, polls
 * know their queue) and added the worker ioctls, whose numbers tell us which
 * API we build against.  Later, vfs_iter_write() took the file system's
 * freeze protection into itself, and 6.8 dropped the count argument of
 * eventfd_signal(); Kbuild finds out which ones the headers declare.
 */
#ifndef _VHOST_SERIAL_COMPAT_H
#define _VHOST_SERIAL_COMPAT_H

#include <linux/eventfd.h>
#include <linux/fs.h>
#include <linux/vhost.h>

#include "vhost.h"

#ifdef VHOST_NEW_WORKER

static inline void vhost_serial_work_queue(struct vhost_virtqueue *vq,
					   struct vhost_work *work)
{
	vhost_vq_work_queue(vq, work);
}

static inline bool vhost_serial_is_worker_ioctl(unsigned int ioctl)
{
	switch (ioctl) {
	case VHOST_NEW_WORKER:
	case VHOST_FREE_WORKER:
	case VHOST_ATTACH_VRING_WORKER:
	case VHOST_GET_VRING_WORKER:
		return true;
	}
	return false;
}

static inline long vhost_serial_worker_ioctl(struct vhost_dev *dev,
					     unsigned int ioctl,
					     void __user *argp)
{
	return vhost_worker_ioctl(dev, ioctl, argp);
}

#else /* one worker per device */

static inline void vhost_serial_work_queue(struct vhost_virtqueue *vq,
					   struct vhost_work *work)
{
	vhost_work_queue(vq->dev, work);
}

static inline bool vhost_serial_is_worker_ioctl(unsigned int ioctl)
{
	return false;
}

static inline long vhost_serial_worker_ioctl(struct vhost_dev *dev,
					     unsigned int ioctl,
					     void __user *argp)
{
	return -ENOIOCTLCMD;
}

#endif

static inline void vhost_serial_eventfd_signal(struct eventfd_ctx *ctx)
{
#ifdef VHOST_SERIAL_OLD_EVENTFD_SIGNAL
	eventfd_signal(ctx, 1);
#else
	eventfd_signal(ctx);
#endif
}

/* A write at *@pos, inside the freeze protection of the file's file system. */
static inline ssize_t vhost_serial_iter_write(struct file *file,
					      struct iov_iter *iter,
					      loff_t *pos)
{
#ifdef VHOST_SERIAL_OLD_ITER_WRITE
	ssize_t ret;

	file_start_write(file);
	ret = vfs_iter_write(file, iter, pos, 0);
	file_end_write(file);
	return ret;
#else
	return vfs_iter_write(file, iter, pos, 0);
#endif
}

#endif /* _VHOST_SERIAL_COMPAT_H */
