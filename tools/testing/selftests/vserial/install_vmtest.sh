#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# install_vmtest.sh -k SERIES -s STAGE [-l LOGFILE] [-T SECONDS]
#
# Boots Debian's kernel SERIES (cached by scripts/setup.sh) with the module
# tree of STAGE, a staging root (DESTDIR) that "make install" wrote into
# after the kernel's own modules were put there: /init loads the modules
# with plain kmod modprobe, as a system does, and checks that they came
# from updates/ and that the device node appeared.  It prints
#
#   INSTALL-VM ok NAME
#   INSTALL-VM not ok NAME # reason
#   INSTALL-VM-DONE
#
# and exits 0 when the VM finished and every check passed.

set -uo pipefail

# shellcheck source=vm_lib.sh
. "$(dirname "$0")/vm_lib.sh"

readonly CACHE=${VSERIAL_CACHE:-/var/cache/vhost-serial}
readonly QEMU=${QEMU:-qemu-system-x86_64}
readonly BUSYBOX=${BUSYBOX:-/bin/busybox}
readonly LOCKFILE=${VMTEST_LOCK:-/tmp/vhost-serial-vmtest.lock}
readonly PROG=${0##*/}

series="" stage="" logfile="" timeout=300 tmpdir=""

die() { echo "$PROG: $*" >&2; exit 2; }
log() { echo "$PROG: $*" >&2; }

cleanup() {
	[ -n "$tmpdir" ] && rm -rf "$tmpdir"
}
trap cleanup EXIT

# Copies program $1 and the shared libraries it needs into root $2.
copy_program() {
	local prog=$1 root=$2 lib

	mkdir -p "$root$(dirname "$prog")"
	cp "$prog" "$root$prog"
	for lib in $(ldd "$prog" | grep -o '/[^ ]*'); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}

write_init() {
	cat >"$1" <<'EOT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec >/dev/ttyS0 2>&1

ok() { echo "INSTALL-VM ok $1"; }
not_ok() { echo "INSTALL-VM not ok $1 # $2"; }
check() {
	name=$1
	shift
	if "$@"; then ok "$name"; else not_ok "$name" "$*"; fi
}
from_updates() {
	f=$(/sbin/modinfo -F filename "$1" 2>&1)
	case $f in
	/lib/modules/*/updates/"$1".ko) return 0 ;;
	*) echo "modinfo: $f"; return 1 ;;
	esac
}
loaded() { [ -d "/sys/module/$1" ]; }

check modprobe-vhost_serial /sbin/modprobe vhost_serial
check vhost_serial-from-updates from_updates vhost_serial
check vhost_serial-loaded loaded vhost_serial
check dev-vhost-serial test -c /dev/vhost-serial
check virtio_console-from-updates from_updates virtio_console
# The 6.12 kernel has virtio_console built in: nothing to load there.
if grep -q '/virtio_console\.ko$' "/lib/modules/$(uname -r)/modules.builtin"; then
	echo "INSTALL-VM ok modprobe-virtio_console # SKIP built into $(uname -r)"
else
	check modprobe-virtio_console /sbin/modprobe virtio_console
	check virtio_console-loaded loaded virtio_console
fi
check modprobe-r-vhost_serial /sbin/modprobe -r vhost_serial
echo "INSTALL-VM-DONE"
poweroff -f
EOT
	chmod 755 "$1"
}

build_initramfs() {
	local root=$tmpdir/root rel=$1 p

	mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,lib/modules}
	cp "$BUSYBOX" "$root/bin/busybox"
	for p in sh mount cat grep poweroff test; do
		ln -s busybox "$root/bin/$p"
	done
	copy_program "$(command -v kmod)" "$root"
	for p in modprobe modinfo lsmod depmod; do
		ln -s "$(command -v kmod)" "$root/sbin/$p"
	done
	cp -a "$stage/lib/modules/$rel" "$root/lib/modules/"
	write_init "$root/init"
	(cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) \
		>"$tmpdir/initramfs.cpio"
}

main() {
	local opt kdir rel rc=0

	while getopts "k:s:l:T:" opt; do
		case $opt in
		k) series=$OPTARG ;;
		s) stage=$OPTARG ;;
		l) logfile=$OPTARG ;;
		T) timeout=$OPTARG ;;
		*) die "usage: $PROG -k SERIES -s STAGE [-l LOGFILE] [-T SECONDS]" ;;
		esac
	done
	[ -n "$series" ] && [ -n "$stage" ] || die "-k and -s are required"
	kdir=$CACHE/kernels/$series
	[ -f "$kdir/env" ] || die "$kdir/env missing: run scripts/setup.sh $series"
	rel=$(sed -n 's/^RELEASE=//p' "$kdir/env")
	[ -f "$stage/lib/modules/$rel/modules.dep" ] ||
		die "$stage/lib/modules/$rel/modules.dep missing: run make install first"
	command -v kmod >/dev/null || die "kmod missing"
	[ -n "$logfile" ] || logfile=$(mktemp)
	tmpdir=$(mktemp -d)

	build_initramfs "$rel"
	exec {lockfd}>>"$LOCKFILE"
	flock -w "$timeout" "$lockfd" || die "another VM held $LOCKFILE"
	log "booting $rel with the module tree of $stage"
	timeout --kill-after=10 "$timeout" "$QEMU" -accel tcg -m 512M -smp 1 \
		-nodefaults -display none -no-reboot -serial "file:$logfile" \
		-kernel "$(vm_kernel_image)" -initrd "$tmpdir/initramfs.cpio" \
		-append "console=ttyS0 panic=-1 quiet loglevel=4" </dev/null || rc=$?
	exec {lockfd}>&-
	tr -d '\r' <"$logfile" | grep '^INSTALL-VM'
	[ $rc -eq 0 ] || { log "QEMU exit status $rc"; return 1; }
	tr -d '\r' <"$logfile" | grep -qx 'INSTALL-VM-DONE' || return 1
	! tr -d '\r' <"$logfile" | grep -q '^INSTALL-VM not ok'
}

main "$@"
