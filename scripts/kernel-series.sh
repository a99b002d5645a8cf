#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# scripts/kernel-series.sh series|check
#
# series (make kernel-series): the project as a "git format-patch" series
# against Debian's linux-source-6.12, in build/kernel-series/:
#
#   1. drivers/vhost/serial.c and its uapi header
#      include/uapi/linux/vhost_serial.h, with the Kconfig entry
#      (VHOST_SERIAL), the Makefile lines and a MAINTAINERS entry;
#   2. drivers/char/virtio_console.c, the guest driver, in place of the
#      kernel's.
#
# In tree there is one kernel API, the current one: the compat headers
# are not part of the series.  Their current-API side goes into the
# driver (unifdef), the macros that only renamed a function are replaced
# by the function.
#
# check (make kernel-series-check): makes the series, applies it with
# patch(1) to a pristine copy of the source (unpacked once into
# $VSERIAL_CACHE/kernel-series), configures Debian's 6.12 config with
# CONFIG_VHOST_SERIAL=m and builds drivers/vhost/serial.o and
# drivers/char/virtio_console.o with W=1, then the modules of
# drivers/vhost (Debian builds virtio_console in); any warning fails.  checkpatch.pl --strict runs on every patch.  Prints "ok NAME" or
# "not ok NAME # reason" per step.

set -uo pipefail

readonly TOP=$(cd "$(dirname "$0")/.." && pwd)
readonly CACHE=${VSERIAL_CACHE:-/var/cache/vhost-serial}
readonly SERIES=6.12
readonly OUT=$TOP/build/kernel-series
readonly WORK=$TOP/build/kernel-tree
readonly LOGDIR=$TOP/build/logs
readonly BASE_FILES="drivers/vhost/Kconfig drivers/vhost/Makefile
	drivers/char/virtio_console.c MAINTAINERS"
# A fixed date and author keep the series the same from run to run and
# from machine to machine (the author is the QEMU series' too).
readonly DATE="2026-12-01T00:00:00+00:00"
readonly AUTHOR_NAME="vhost-serial developers"
readonly AUTHOR_EMAIL="vhost-serial@localhost"

failed=0

die() { echo "kernel-series: $*" >&2; exit 2; }
ok() { echo "ok $1"; }
not_ok() { echo "not ok $1 # $2"; failed=$((failed + 1)); }

kernel_version() {
	sed -n 's/^VERSION=//p' "$CACHE/kernels/$SERIES/env" 2>/dev/null
}

# The pristine source of linux-source-6.12, unpacked once.
pristine_tree() {
	local ver dir tarball=/usr/src/linux-source-$SERIES.tar.xz

	ver=$(kernel_version)
	[ -n "$ver" ] || die "no $CACHE/kernels/$SERIES/env: run scripts/setup.sh $SERIES"
	dir=$CACHE/kernel-series/linux-source-$SERIES-$ver
	if [ ! -f "$dir/.unpacked" ]; then
		[ -f "$tarball" ] || die "$tarball missing (linux-source-$SERIES)"
		echo "kernel-series: unpacking $tarball" >&2
		rm -rf "$dir" "$dir.tmp"
		mkdir -p "$dir.tmp"
		tar -xJf "$tarball" -C "$dir.tmp" --strip-components=1 ||
			die "cannot unpack $tarball"
		touch "$dir.tmp/.unpacked"
		mv "$dir.tmp" "$dir"
	fi
	echo "$dir"
}

# serial.c in tree: serial_compat.h's current-API helpers in its place.
intree_vhost_serial() {
	awk -v helpers="$(unifdef -DVHOST_NEW_WORKER \
			-UVHOST_SERIAL_OLD_EVENTFD_SIGNAL \
			"$TOP/drivers/vhost/serial_compat.h" |
		sed -n '/^#define _VHOST_SERIAL_COMPAT_H/,/^#endif \/\* _VHOST_SERIAL_COMPAT_H/p' |
		sed '1d;$d' | grep -v '^#include' | cat -s | sed '1{/^$/d}')" '
		$0 == "#include \"serial_compat.h\"" {
			print ""
			print "/* Work, worker ioctls and eventfds of the vhost core. */"
			print helpers
			next
		}
		{ print }' "$TOP/drivers/vhost/serial.c" | cat -s
}

# virtio_console.c in tree: the current API, without the compat header.
intree_virtio_console() {
	local find_vqs

	find_vqs=$(unifdef -UVIRTIO_CONSOLE_OLD_FIND_VQS \
			"$TOP/drivers/char/virtio_console_compat.h" |
		sed -n '/^static inline int vcon_find_vqs/,/^}/p')
	awk -v find_vqs="$find_vqs" '
		$0 == "#include \"virtio_console_compat.h\"" {
			print "#include \"../tty/hvc/hvc_console.h\""
			next
		}
		/^#include / { seen_include = 1; print; next }
		!done && /^(struct|static|#define)/ && seen_include {
			print "/* The queues'"'"' callbacks and names as virtio_find_vqs() takes them. */"
			print find_vqs
			print ""
			done = 1
		}
		{ print }' "$TOP/drivers/char/virtio_console.c" |
		sed 's/\bvcon_hvc_get_chars\b/vcon_get_chars/;
		     s/\bvcon_hvc_put_chars\b/vcon_put_chars/;
		     s/\bvcon_splice_read\b/copy_splice_read/'
}

kconfig_entry() {
	cat <<'EOT'
config VHOST_SERIAL
	tristate "vhost virtio-console (virtio-serial) device"
	depends on EVENTFD
	select VHOST
	help
	  This kernel module can be loaded in the host kernel to run the
	  virtio-console (virtio-serial) device of guests in the kernel:
	  /dev/vhost-serial gives a VMM multiport devices whose ports are
	  backed by file descriptors (sockets, pipes, ttys, files), with no
	  copy through the VMM.  Guests use the usual virtio_console driver.

	  To compile this driver as a module, choose M here: the module will
	  be called vhost_serial.

EOT
}

maintainers_entry() {
	cat <<EOT
VIRTIO HOST (VHOST-SERIAL)
M:	$AUTHOR_NAME <$AUTHOR_EMAIL>
L:	virtualization@lists.linux.dev
S:	Maintained
F:	drivers/vhost/serial.c
F:	include/uapi/linux/vhost_serial.h

EOT
}

# Inserts stdin before the line of file $1 that is exactly $2.
insert_before() {
	local file=$1 anchor=$2 text

	text=$(cat)
	grep -qxF "$anchor" "$file" || die "$file has no line '$anchor'"
	awk -v anchor="$anchor" -v text="$text" '
		$0 == anchor && !done { print text; print ""; done = 1 }
		{ print }' "$file" >"$file.new" && mv "$file.new" "$file"
}

commit() {
	GIT_AUTHOR_DATE=$DATE GIT_COMMITTER_DATE=$DATE \
		git -c core.hooksPath=/dev/null commit -q -s -F -
}

make_series() {
	local src repo f

	src=$(pristine_tree) || exit 2
	command -v unifdef >/dev/null || die "unifdef missing (apt install unifdef)"
	repo=$(mktemp -d)
	(
		set -e
		cd "$repo"
		git init -q
		git config user.name "$AUTHOR_NAME"
		git config user.email "$AUTHOR_EMAIL"
		for f in $BASE_FILES; do
			mkdir -p "$(dirname "$f")"
			cp "$src/$f" "$f"
		done
		git add -A
		echo "base: linux-source-$SERIES $(kernel_version)" | commit

		mkdir -p include/uapi/linux
		cp "$TOP/include/uapi/linux/vhost_serial.h" include/uapi/linux/
		intree_vhost_serial >drivers/vhost/serial.c
		kconfig_entry | insert_before drivers/vhost/Kconfig "config VHOST_VDPA"
		printf '\nobj-$(CONFIG_VHOST_SERIAL) += vhost_serial.o\nvhost_serial-y := serial.o\n' \
			>>drivers/vhost/Makefile
		maintainers_entry | insert_before MAINTAINERS "VIRTIO I2C DRIVER"
		git add -A
		commit <<'EOT'
vhost: add vhost-serial, a virtio-console device in the host kernel

Every byte of a virtio-serial port crosses the VMM's main loop when the
VMM emulates the device.  vhost-serial runs the whole multiport device
in the kernel: each open of /dev/vhost-serial is one device whose worker
copies guest output into the port's backend (a socket, pipe, tty or
file the VMM attached) and backend input into guest buffers, and which
answers the guest's control messages itself.

Backends never block the worker: sockets are used with MSG_DONTWAIT,
other descriptors must be non-blocking, and a backend that cannot take
more stops its queue until it polls writable.  Nothing is lost across
detach and re-attach: guest output waits in the ring.  Console output is
kept in a small buffer or dropped and counted, never left in the ring.
Zero-copy output into a pipe is available per port.

Only the owner's process drives the device, as with the other vhost
devices; VHOST_RESET_OWNER hands it over.

The uapi header describes every ioctl; VHOST_SERIAL depends on EVENTFD
and selects VHOST, as the other vhost devices do.
EOT
		intree_virtio_console >drivers/char/virtio_console.c
		git add -A
		commit <<'EOT'
virtio_console: rework the data path for bulk transfers

Guest output goes out as one descriptor per write of up to 256 KiB with
many in flight, reclaimed when the device returns them, instead of one
buffer at a time waited for under a spinlock.  Receive buffers are
larger than a page and a read drains several.  Nothing waits with
interrupts off: console output and control messages are queued and
reclaimed later, or, for the console, handed to the emergency-write
register or dropped when the queue is full.

The character devices, sysfs attributes, ioctl-less interface, hvc
consoles, hot-plug and freeze/restore behave as before.
EOT
		rm -rf "$OUT"
		git format-patch -q --no-signature -o "$OUT" HEAD~2
	) || { rm -rf "$repo"; die "making the series failed"; }
	rm -rf "$repo"
	ls "$OUT"/*.patch
}

# Runs "$@" with output in log $2; check $1 passes when it exits 0 and,
# with $3 = nowarn, printed no compiler warning.
step() {
	local name=$1 log=$2 mode=$3

	shift 3
	if ! "$@" >"$log" 2>&1; then
		not_ok "$name" "exit status, see $log"
		tail -n 20 "$log" | sed 's/^/  | /'
		return 1
	fi
	# Compiler diagnostics of kernel code (host tools such as genksyms'
	# parser generator have their own, not ours to judge).
	if [ "$mode" = nowarn ] && grep -E '^(drivers|include)/[^:]*:[0-9]+(:[0-9]+)?: (warning|error):' "$log"; then
		not_ok "$name" "warnings, see $log"
		return 1
	fi
	ok "$name"
}

check_series() {
	local src p jobs

	src=$(pristine_tree) || exit 2
	mkdir -p "$LOGDIR"
	step kernel-series-make "$LOGDIR/kernel-series.log" - make_series || return 1
	# checkpatch's spdxcheck.py wants a git checkout of the kernel: on the
	# unpacked source it prints a traceback and checkpatch goes on.
	for p in "$OUT"/*.patch; do
		step "kernel-series-checkpatch-${p##*/}" \
			"$LOGDIR/kernel-series-checkpatch-${p##*/}.log" - \
			perl "$src/scripts/checkpatch.pl" --strict --root="$src" "$p" || true
	done
	rm -rf "$WORK"
	cp -a "$src" "$WORK" || die "cannot copy $src"
	step kernel-series-apply "$LOGDIR/kernel-series-apply.log" - \
		bash -c "for p in '$OUT'/*.patch; do patch -p1 -d '$WORK' --no-backup-if-mismatch <\"\$p\" || exit 1; done" ||
		return 1
	cp "$CACHE/kernels/$SERIES/config" "$WORK/.config"
	# The kernel's exported symbols, for modpost of the vhost modules.
	cp "$(sed -n 's/^KDIR=//p' "$CACHE/kernels/$SERIES/env")/Module.symvers" "$WORK/" ||
		die "no Module.symvers in the headers of $SERIES"
	jobs=$(nproc)
	step kernel-series-config "$LOGDIR/kernel-series-config.log" - bash -c "
		cd '$WORK' && scripts/config --disable MODULE_SIG_ALL --set-str SYSTEM_TRUSTED_KEYS '' \
			--set-str SYSTEM_REVOCATION_KEYS '' --module VHOST_SERIAL &&
		make olddefconfig && grep -qx CONFIG_VHOST_SERIAL=m .config" || return 1
	step kernel-series-prepare "$LOGDIR/kernel-series-prepare.log" - \
		make -C "$WORK" -j"$jobs" modules_prepare || return 1
	step kernel-series-w1-objects "$LOGDIR/kernel-series-w1.log" nowarn \
		make -C "$WORK" -j"$jobs" W=1 drivers/vhost/serial.o drivers/char/virtio_console.o
	step kernel-series-modules "$LOGDIR/kernel-series-modules.log" nowarn \
		make -C "$WORK" -j"$jobs" W=1 M=drivers/vhost modules
	[ $failed -eq 0 ]
}

case ${1:-series} in
series) make_series ;;
check) check_series ;;
*) die "usage: $0 series|check" ;;
esac
