#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make demo: the product end to end.  A host VM (L1: Debian 6.12 with
# vhost_serial.ko, booted by e2e_vmtest.sh with the build machine's root
# shared read-only) runs the patched QEMU (scripts/qemu.sh) with
# "-device virtio-serial-pci,vhost=on" and a guest (L2: Debian 6.12 with the
# project's virtio_console.ko).  Two named ports carry a file each way:
#
#   org.example.demo.in   host -> guest: a file chardev whose input is the
#                         demo file; its descriptor goes to the kernel
#   org.example.demo.out  guest -> host: a file chardev L1 reads back
#
# The guest reads the first port to its end, hashes what it got, writes it
# back through the second port and powers off; L1 compares the SHA-1 at
# both ends.  Throughput is measured in the guest (nested TCG: both levels
# are emulated, so the figure is far below a real host's).
#
#   DEMO_MIB   size of the file in MiB (default 16)
#   DEMO_MODULE=1  the one-level demo instead: the module driven by a
#                  userspace guest in one VM (vserial_demo, no QEMU series)
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
readonly TOP
readonly KERNEL=6.12
readonly CACHE=${VSERIAL_CACHE:-/var/cache/vhost-serial}
readonly LOGDIR=$TOP/build/logs
readonly LOG=$LOGDIR/demo.log
readonly MIB=${DEMO_MIB:-16}
readonly BUSYBOX=/bin/busybox
readonly E2E=$TOP/tools/testing/selftests/vserial/e2e_vmtest.sh
# shellcheck source=../tools/testing/selftests/vserial/vm_lib.sh
. "$TOP/tools/testing/selftests/vserial/vm_lib.sh"
readonly L1_TIMEOUT=1500
# Seconds L1 gives the guest for booting and both transfers.
readonly L2_TIMEOUT=1200

work=""

say() { echo "demo: $*"; }
die() { echo "demo: $*" >&2; exit 1; }

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	[ -n "$work" ] && rm -rf "$work"
}

module_demo() {
	local status=0 log=$LOGDIR/demo-module-$KERNEL.log

	say "booting Debian $KERNEL under QEMU (TCG) with vhost_serial.ko ..."
	tools/testing/selftests/vserial/vmtest.sh -k "$KERNEL" \
		-m "build/$KERNEL/vhost_serial.ko" -l "$log" -T 600 \
		build/selftests/vserial_demo >/dev/null 2>&1 || status=$?
	grep -a '^demo:' "$log" || true
	[ "$status" -eq 0 ] || die "FAILED (exit $status), full log in $log"
	say "done; VM log in $log"
}

write_l2_init() {
	cat >"$1" <<'EOT'
#!/bin/busybox sh
# The demo's guest: the project's virtio_console, two named ports.
export PATH=/bin:/sbin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
exec </dev/console >/dev/console 2>&1
insmod /virtio_console.ko || echo "guest: cannot load virtio_console.ko"

port_dev() {
	for d in /sys/class/virtio-ports/*; do
		[ "$(cat "$d/name" 2>/dev/null)" = "$1" ] && echo "/dev/${d##*/}"
	done
}

now() { cut -d' ' -f1 /proc/uptime; }
rate() { awk -v b="$1" -v t0="$2" -v t1="$3" 'BEGIN {
	t = t1 - t0; if (t <= 0) t = 0.01
	printf "%.1f MB/s (%.2f s)", b / t / 1e6, t }'; }

i=0
while [ -z "$(port_dev org.example.demo.out)" ] && [ $i -lt 600 ]; do
	sleep 0.2
	i=$((i + 1))
done
in=$(port_dev org.example.demo.in)
out=$(port_dev org.example.demo.out)
drv=built-in
[ -f /sys/module/virtio_console/initstate ] && drv="virtio_console.ko (the project's)"
echo "guest: Linux $(uname -r), driver $drv, ports: $in $out"
echo "guest: hello from the guest console" >/dev/hvc0

t0=$(now)
dd if="$in" of=/tmp/file bs=256k 2>/dev/null
t1=$(now)
bytes=$(wc -c </tmp/file)
echo "guest: received $bytes bytes host->guest, sha1 $(sha1sum /tmp/file | cut -d' ' -f1), $(rate "$bytes" "$t0" "$t1")"
t0=$(now)
dd if=/tmp/file of="$out" bs=256k 2>/dev/null
t1=$(now)
echo "guest: sent $bytes bytes guest->host, $(rate "$bytes" "$t0" "$t1")"
poweroff -f
EOT
	chmod +x "$1"
}

# The scenario L1 runs: QEMU with vhost=on, then the checks.
write_scenario() {
	cat >"$1" <<EOT
#!/bin/bash
readonly W=$work
readonly QEMU=$qemu
readonly L2_TIMEOUT=$L2_TIMEOUT
readonly L2_APPEND="console=ttyS0 panic=-1 quiet $(vm_lean_cmdline virtio_console_init)"
EOT
	cat >>"$1" <<'EOT'
set -u
say() { echo "demo: $*"; }
say "host VM up: Linux $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPUs, /dev/vhost-serial $(stat -c '%t:%T' /dev/vhost-serial 2>/dev/null || echo missing)"
say "host: sending $(stat -c %s "$W/data") bytes, sha1 $(sha1sum "$W/data" | cut -d' ' -f1)"
say "host: starting the guest: -device virtio-serial-pci,vhost=on"
timeout "$L2_TIMEOUT" "$QEMU" -accel tcg -m 512 -smp 1 -nodefaults \
	-display none -no-reboot -serial file:/tmp/guest.log \
	-kernel "$W/kernel" -initrd "$W/guest.cpio" \
	-append "$L2_APPEND" \
	-device virtio-serial-pci,id=vser0,vhost=on \
	-chardev file,id=con,path=/tmp/console.out \
	-device virtconsole,bus=vser0.0,chardev=con,name=org.example.console \
	-chardev file,id=in,path=/dev/null,input-path="$W/data" \
	-device virtserialport,bus=vser0.0,chardev=in,name=org.example.demo.in \
	-chardev file,id=out,path=/tmp/back.bin \
	-device virtserialport,bus=vser0.0,chardev=out,name=org.example.demo.out
rc=$?
tr -d '\r' </tmp/guest.log | grep '^guest:' | sed 's/^/demo: /'
tr -d '\r' </tmp/console.out | sed 's/^/demo: console: /'
[ $rc -eq 0 ] || { say "QEMU exited with $rc"; exit 1; }
sent=$(sha1sum "$W/data" | cut -d' ' -f1)
back=$(sha1sum /tmp/back.bin | cut -d' ' -f1)
said=$(tr -d '\r' </tmp/guest.log | sed -n 's/.*host->guest, sha1 \([0-9a-f]*\).*/\1/p')
if [ "$said" = "$sent" ]; then
	say "host->guest: sha1 $said in the guest: MATCH"
else
	say "host->guest: sha1 in the guest '$said' != $sent: MISMATCH"
	exit 1
fi
if [ "$back" = "$sent" ]; then
	say "guest->host: $(stat -c %s /tmp/back.bin) bytes back, sha1 $back: MATCH"
else
	say "guest->host: sha1 $back != $sent: MISMATCH"
	exit 1
fi
EOT
	chmod +x "$1"
}

vhost_demo() {
	local qemu status=0 start kdir

	[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (package busybox-static)"
	say "QEMU with qemu-patches/ (built once, about 5 minutes, then cached) ..."
	qemu=$(scripts/qemu.sh path 2>"$LOGDIR/demo-qemu.log") ||
		die "cannot build QEMU: see $LOGDIR/demo-qemu.log"
	[ -f "build/$KERNEL/virtio_console.ko" ] || die "virtio_console.ko not built"

	work=$(mktemp -d /var/tmp/vhost-serial-demo.XXXXXX)
	trap cleanup EXIT
	mkdir -p "$work"/l2/{bin,sbin,dev,proc,sys,tmp}
	vm_install_busybox "$BUSYBOX" "$work/l2"
	cp "build/$KERNEL/virtio_console.ko" "$work/l2/"
	write_l2_init "$work/l2/init"
	(cd "$work/l2" && find . | cpio -o -H newc -R 0:0 --quiet) >"$work/guest.cpio"
	kdir=$CACHE/kernels/$KERNEL
	cp "$(vm_kernel_image)" "$work/kernel"
	head -c $((MIB << 20)) /dev/urandom >"$work/data"
	write_scenario "$work/scenario.sh"

	say "booting the host VM (Debian $KERNEL, vhost_serial.ko); the guest runs inside it (nested TCG: a few minutes) ..."
	start=$SECONDS
	"$E2E" -k "$KERNEL" -m "build/$KERNEL/vhost_serial.ko" -l "$LOG" \
		-T $L1_TIMEOUT "$work/scenario.sh" >/dev/null 2>&1 || status=$?
	tr -d '\r' <"$LOG" | grep -a '^demo:' || true
	[ "$status" -eq 0 ] || die "FAILED (exit $status), full log in $LOG"
	say "done in $((SECONDS - start)) s, host and guest shut down; log in $LOG"
}

main() {
	cd "$TOP"
	mkdir -p "$LOGDIR"
	make -s KERNEL="$KERNEL" modules >/dev/null
	make -s selftests >/dev/null
	if [ "${DEMO_MODULE:-0}" = 1 ]; then
		module_demo
	else
		vhost_demo
	fi
}

main "$@"
