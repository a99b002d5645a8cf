#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot a host VM (L1) for end-to-end runs: Debian kernel SERIES with
# vhost_serial.ko (and vhost-vsock) loaded, the build machine's root shared
# read-only over 9p and used as L1's root through chroot, so that L1 runs
# the same QEMU, scripts and test programs as the build machine.  Inside L1,
# SCENARIO (an executable on this machine) runs as root; it typically starts
# an L2 guest with QEMU and drives tests against it.
#
#   e2e_vmtest.sh -k SERIES -m PATH/vhost_serial.ko -l LOGFILE [-T SECONDS]
#                 [-s SMP] SCENARIO [ARGS...]
#
# Lines of L1 read back from LOGFILE:
#   E2E-READY <release>        modules loaded, root shared, scenario starts
#                              (an L1 that died before it, with no
#                              E2E-FATAL, is booted again: vm_lib.sh)
#   E2E-FATAL <reason>         set-up failed in L1
#   E2E-END rc=<code>          the scenario's exit status
#   E2E-KLOG bad=<count>       Oops/WARNING/BUG lines in L1's kernel log
#   E2E-DONE
# Everything the scenario prints goes to the log too.
#
# Exit status: 0 when the scenario exited 0 and L1's kernel log is clean;
# 1 on a failure in the VM; 2 on a usage or set-up error here.
set -euo pipefail

# shellcheck source=vm_lib.sh
. "$(dirname "$0")/vm_lib.sh"
readonly BAD_KLOG=$VM_BAD_KLOG

readonly PROG=${0##*/}
readonly CACHE=${VSERIAL_CACHE:-/var/cache/vhost-serial}
readonly QEMU=${QEMU:-qemu-system-x86_64}
readonly BUSYBOX=${BUSYBOX:-/bin/busybox}
readonly LOCK=${VMTEST_LOCK:-/tmp/vhost-serial-vmtest.lock}
readonly DEFAULT_TIMEOUT=1800
readonly L1_MEM=3G
# With what they depend on; virtio_pci is a module on 6.1 only.
readonly MODULES_WANTED="virtio_pci 9p 9pnet_virtio vhost_vsock"

series=""
module=""
logfile=""
timeout=$DEFAULT_TIMEOUT
smp=2
scenario=()
tmpdir=""
kdir=""
release=""
# The initramfs tree and its modules in load order, while it is built.
root=""
modules=()

die() {
	echo "$PROG: $*" >&2
	exit 2
}

usage() {
	echo "usage: $PROG -k SERIES -m vhost_serial.ko -l LOGFILE [-T SECONDS] [-s SMP] SCENARIO [ARGS...]" >&2
	exit 2
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$tmpdir" ]; then
		rm -rf "$tmpdir"
	fi
}

parse_args() {
	local opt

	while getopts "k:m:l:T:s:h" opt; do
		case $opt in
		k) series=$OPTARG ;;
		m) module=$OPTARG ;;
		l) logfile=$OPTARG ;;
		T) timeout=$OPTARG ;;
		s) smp=$OPTARG ;;
		*) usage ;;
		esac
	done
	shift $((OPTIND - 1))
	scenario=("$@")
	if [ -z "$series" ] || [ -z "$module" ] || [ -z "$logfile" ] ||
	   [ ${#scenario[@]} -eq 0 ]; then
		usage
	fi
	[ -x "${scenario[0]}" ] || die "scenario ${scenario[0]} is not executable"
	case ${scenario[0]} in
	/*) ;;
	*) die "scenario must be an absolute path (L1 sees this machine's root)" ;;
	esac
}

check_kernel() {
	kdir=$CACHE/kernels/$series
	[ -f "$kdir/env" ] || die "kernel $series not set up: run scripts/setup.sh"
	release=$(sed -n 's/^RELEASE=//p' "$kdir/env" | tail -n1)
	[ -f "$module" ] || die "$module not found"
	case $(modinfo -F vermagic "$module") in
	"$release "*) ;;
	*) die "$module is not built for $release" ;;
	esac
}

build_initramfs() {
	local m

	root=$tmpdir/root
	modules=()
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,host,lib/modules,etc}
	vm_install_busybox "$BUSYBOX" "$root"
	for m in $MODULES_WANTED; do
		add_kernel_module "$m"
	done
	add_module_file "$module" vhost_serial
	{
		printf 'MODULES="%s"\n' "${modules[*]}"
		printf 'BAD_KLOG="%s"\n' "$BAD_KLOG"
		printf 'SCENARIO=%q\n' "$(printf '%q ' "${scenario[@]}")"
	} >"$root/etc/e2e.conf"
	write_init "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet) >"$tmpdir/initramfs"
}

write_init() {
	cat >"$1" <<'EOT'
#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0
# Written by e2e_vmtest.sh: modules, the shared root, the scenario.
export PATH=/bin:/sbin
. /etc/e2e.conf

fatal() {
	echo "E2E-FATAL $*"
	dmesg | tail -n 20
	poweroff -f
}

mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $MODULES; do
	insmod /lib/modules/$m.ko || fatal "insmod $m failed"
done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose \
	hostroot /host || fatal "cannot mount the shared root"
# Writable and per-VM places inside the read-only root.
mount -t tmpfs tmpfs /host/tmp || fatal "tmpfs on /tmp"
mount -t tmpfs tmpfs /host/run || fatal "tmpfs on /run"
mount -t devtmpfs devtmpfs /host/dev || fatal "devtmpfs"
mkdir -p /host/dev/pts /host/dev/shm 2>/dev/null
# What udev would have made: bash's process substitution needs /dev/fd.
ln -sf /proc/self/fd /host/dev/fd
ln -sf /proc/self/fd/0 /host/dev/stdin
ln -sf /proc/self/fd/1 /host/dev/stdout
ln -sf /proc/self/fd/2 /host/dev/stderr
mount -t devpts devpts /host/dev/pts 2>/dev/null
mount -t tmpfs tmpfs /host/dev/shm 2>/dev/null
mount -t proc proc /host/proc || fatal "proc"
mount -t sysfs sysfs /host/sys || fatal "sysfs"
# The module's fault injection, for the guest driver's malicious tests.
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null
ip link set lo up 2>/dev/null
echo "E2E-READY $(uname -r)"
chroot /host /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp \
	TMPDIR=/tmp E2E_L1=1 /bin/bash -c "cd /tmp && exec $SCENARIO"
echo "E2E-END rc=$?"
bad=$(dmesg | grep -cE "$BAD_KLOG")
echo "E2E-KLOG bad=$bad"
[ "$bad" -gt 0 ] && dmesg | grep -E "$BAD_KLOG" | head -n 20
echo "E2E-DONE"
poweroff -f
EOT
	chmod +x "$1"
}

# shellcheck disable=SC2317 # run by vm_boot
run_vm() {
	local rc=0 cmdline="console=ttyS0 panic=-1 quiet loglevel=4"

	# A debug kernel under TCG starves RCU's kthread at boot for longer
	# than the stall detector's default 21 s: a slow machine, not a bug.
	case $series in
	*-debug) cmdline="$cmdline rcupdate.rcu_cpu_stall_timeout=300" ;;
	esac
	: >"$logfile"
	exec 9>"$LOCK"
	flock -w "$timeout" 9 || die "another VM holds $LOCK"
	# Plain -cpu max, fast strings included (unlike vm_cpu_model): L1's
	# work is mostly the L2's QEMU in userspace, and turning them off
	# showed no gain for the nested suite (one group 283-293 s with them
	# off, 236-288 s with them on, from run to run).
	timeout --kill-after=10 "$timeout" "$QEMU" -accel tcg -cpu max \
		-m "$L1_MEM" -smp "$smp" -nodefaults -display none -no-reboot \
		-serial "file:$logfile" \
		-kernel "$(vm_kernel_image)" -initrd "$tmpdir/initramfs" \
		-append "$cmdline" \
		-fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
		-device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
		|| rc=$?
	exec 9>&-
	return $rc
}

report() {
	local rc

	if ! grep -q '^E2E-DONE' "$logfile"; then
		echo "$PROG: L1 did not finish (timeout ${timeout}s or crash); last lines:"
		tail -n 20 "$logfile"
		return 1
	fi
	grep -q '^E2E-FATAL' "$logfile" && { grep '^E2E-FATAL' "$logfile"; return 1; }
	rc=$(sed -n 's/^E2E-END rc=//p' "$logfile" | tail -n1 | tr -d '\r')
	if ! grep -q '^E2E-KLOG bad=0' "$logfile"; then
		echo "$PROG: L1 kernel log has bad lines:"
		grep -A20 '^E2E-KLOG' "$logfile"
		return 1
	fi
	[ "$rc" = 0 ] || { echo "$PROG: scenario exited $rc"; return 1; }
	return 0
}

main() {
	local start qrc=0

	parse_args "$@"
	check_kernel
	tmpdir=$(mktemp -d /tmp/e2e.XXXXXX)
	trap cleanup EXIT
	build_initramfs
	mkdir -p "$(dirname "$logfile")"
	start=$SECONDS
	echo "$PROG: booting L1 $release, timeout ${timeout}s"
	vm_boot "$logfile" 'E2E-\(READY\|FATAL\)' vm_keep_failed_boot run_vm ||
		qrc=$?
	echo "$PROG: L1 ran $((SECONDS - start))s (QEMU status $qrc)"
	report || exit 1
	echo "$PROG: PASS"
}

main "$@"
