/* SPDX-License-Identifier: GPL-2.0 */
/*
 * virtio_console: the kernel API differences between the kernels the driver
 * builds against out of tree (6.1 and 6.12), in one place.  In tree, none of
 * the VIRTIO_CONSOLE_OLD_* macros is defined and the current API is used;
 * out of tree, Kbuild defines them after looking at the headers.
 */
#ifndef _VIRTIO_CONSOLE_COMPAT_H
#define _VIRTIO_CONSOLE_COMPAT_H

#include <linux/fs.h>
#include <linux/splice.h>
#include <linux/virtio_config.h>

#include "../tty/hvc/hvc_console.h"

/* find_vqs() took parallel arrays of callbacks and names before 6.11. */
static inline int vcon_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
				struct virtqueue *vqs[],
				vq_callback_t *callbacks[],
				const char * const names[])
{
#ifdef VIRTIO_CONSOLE_OLD_FIND_VQS
	return virtio_find_vqs(vdev, nvqs, vqs, callbacks, names, NULL);
#else
	struct virtqueue_info *info;
	unsigned int i;
	int ret;

	info = kcalloc(nvqs, sizeof(*info), GFP_KERNEL);
	if (!info)
		return -ENOMEM;
	for (i = 0; i < nvqs; i++) {
		info[i].name = names[i];
		info[i].callback = callbacks[i];
	}
	ret = virtio_find_vqs(vdev, nvqs, vqs, info, NULL);
	kfree(info);
	return ret;
#endif
}

static ssize_t vcon_get_chars(u32 vtermno, u8 *buf, size_t count);
static ssize_t vcon_put_chars(u32 vtermno, const u8 *buf, size_t count);

/* hv_ops counted in ints and chars before 6.6. */
#ifdef VIRTIO_CONSOLE_OLD_HV_OPS
static inline int vcon_hvc_get_chars(u32 vtermno, char *buf, int count)
{
	return vcon_get_chars(vtermno, (u8 *)buf, count);
}

static inline int vcon_hvc_put_chars(u32 vtermno, const char *buf, int count)
{
	return vcon_put_chars(vtermno, (const u8 *)buf, count);
}
#else
#define vcon_hvc_get_chars vcon_get_chars
#define vcon_hvc_put_chars vcon_put_chars
#endif

/* copy_splice_read() replaced generic_file_splice_read() for us in 6.5. */
#ifdef VIRTIO_CONSOLE_OLD_SPLICE_READ
#define vcon_splice_read generic_file_splice_read
#else
#define vcon_splice_read copy_splice_read
#endif

#endif /* _VIRTIO_CONSOLE_COMPAT_H */
