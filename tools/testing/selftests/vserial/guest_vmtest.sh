#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Guest-side tests of a virtio-console driver: boots one of the cached
# Debian kernels under QEMU (TCG) with QEMU's own virtio-serial devices and
# runs vserial_guest in the VM, while vserial_guest --host on this machine
# plays the host side of every test through QEMU's chardev sockets and QMP.
#
#   guest_vmtest.sh [-k SERIES] [-d intree|PATH/virtio_console.ko]
#                   [-g GROUP]... [-s SMP] [-l LOGFILE] [-T SECONDS]
#                   [-b BINARY] [-o DEVOPTS] [-m MIB] [-- HARNESS-ARGS]
#
# One VM boot per test group.  A group is a virtio-serial topology (devices,
# ports, consoles, names), a vCPU count, kernel parameters and the harness
# fixtures to run; vserial_guest holds the definitions (--groups,
# --group-info, --qemu-args).  The guest's control channel is a second UART
# (ttyS1) whose chardev QEMU connects to the host program's socket; the
# device under test never carries it.  TAP travels on ttyS0 with the kernel
# console, into LOGFILE, between marker lines:
#
#   === GROUP <group> <series> <driver>   start of a group's section
#   === BOOT-RETRY <group> ...            a VM that died before its /init
#                                          ran (booted again, up to three
#                                          boots in all)
#   VMTEST-BOOTED <release> group <group> driver <driver> uptime <s>
#   VMTEST-LOADED <modules> uptime <s>     driver loaded, ports there
#   VMTEST-BEGIN vserial_guest@<group>
#   ... TAP (BENCH lines: throughput, not asserted) ...
#   VMTEST-END vserial_guest@<group> rc=<exit code>
#   VMTEST-KLOG bad=<count>, VMTEST-KLOG| <line>, VMTEST-KMSG| <line>,
#   VMTEST-FATAL <reason>, VMTEST-TIMEOUT, VMTEST-UPTIME, VMTEST-DONE
#   HOST| <line>                           the host program's log
#
# Driver choice: "intree" (default) uses the kernel's own virtio_console
# (built in on 6.12; loaded from the module tree on 6.1); a path loads that
# module instead, with initcall_blacklist=virtio_console_init on kernels
# where the in-tree driver is built in.  On kernels with modular virtio, the
# transport modules are loaded first.
#
# VMTEST_QEMU_ARGS (words) and VMTEST_APPEND (kernel command line) add to
# what each VM is started with; VMTEST_KSYMS=1 has the guest print the text
# symbols of its kernel and modules, between KSYMS-BEGIN and KSYMS-END, once
# the driver is loaded.  scripts/profile.sh uses them.  VMTEST_BOOTLOG=1
# boots with initcall_debug and has the guest print its whole kernel log
# before it powers off (BOOTLOG| lines): where a slow boot spends its time.
#
# Exit status: 0 when every group's VM finished, the test program exited 0
# and the kernel log stayed clean; 1 when a test or a VM failed; 2 on a
# usage or set-up error.

# shellcheck disable=SC2317 # the VM functions run through vm_boot
set -euo pipefail

# shellcheck source=vm_lib.sh
. "$(dirname "$0")/vm_lib.sh"
readonly BAD_KLOG=$VM_BAD_KLOG

readonly PROG=${0##*/}
SELFDIR=$(cd "$(dirname "$0")" && pwd)
readonly SELFDIR
TOP=$(cd "$SELFDIR/../../../.." && pwd)
readonly TOP
readonly CACHE=${VSERIAL_CACHE:-/var/cache/vhost-serial}
readonly QEMU=${QEMU:-qemu-system-x86_64}
readonly BUSYBOX=${BUSYBOX:-/bin/busybox}
readonly DEFAULT_SERIES=6.12
readonly DEFAULT_GROUPS="main smp1 smp4 bench"
readonly DEFAULT_TIMEOUT=900
readonly DEFAULT_BINARY=$TOP/build/selftests/vserial_guest
# Time a VM gets beyond its test program for booting and reporting.
readonly BOOT_MARGIN=60
# Seconds to wait for the host program's socket, and for it to end.
readonly HOST_START_WAIT=10
readonly HOST_END_WAIT=15
# Seconds the VM waits for the driver's class after loading modules.
readonly DRIVER_WAIT=30
readonly LOCKFILE=${VMTEST_LOCK:-/tmp/vhost-serial-vmtest.lock}
# Seconds to wait for another run's VM to finish before giving up.
readonly LOCK_WAIT=${VMTEST_LOCK_WAIT:-3600}
readonly QEMU_MEM=1G
readonly CMDLINE_BASE="console=ttyS0 panic=-1 quiet loglevel=4"
readonly TRANSPORT_MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci"
readonly DRIVER_NAME=virtio_console
# Keeps a built-in virtio_console from registering (DESIGN.md).
readonly BUILTIN_DRIVER_INITCALL=virtio_console_init
readonly EXIT_FAIL=1
readonly EXIT_USAGE=2

series=$DEFAULT_SERIES
driver=intree
groups=()
smp=""
logfile=""
timeout=$DEFAULT_TIMEOUT
binary=$DEFAULT_BINARY
devopts=""
bulk_mib=""
harness_args=()
tmpdir=""
lockfd=""
kdir=""
release=""
host_pid=""
extra_initcalls=""
extra_cmdline=""
# The initramfs tree and its modules in load order, while it is built.
root=""
modules=()
failed=0
# Seconds the last VM ran, from taking the lock to QEMU's exit.
vm_secs=0

usage() {
	cat >&2 <<EOT
usage: $PROG [-k SERIES] [-d intree|PATH/virtio_console.ko] [-g GROUP]...
       [-s SMP] [-l LOGFILE] [-T SECONDS] [-b BINARY] [-o DEVOPTS]
       [-m MIB] [-- HARNESS-ARGS]

  -k SERIES   kernel series cached by scripts/setup.sh (default $DEFAULT_SERIES)
  -d DRIVER   guest driver: intree (default) or a virtio_console.ko
  -g GROUP    test group, repeatable (default: $DEFAULT_GROUPS;
              all: $(groups_of_binary | tr '\n' ' '))
  -s SMP      vCPUs of every VM instead of each group's own count
  -l LOGFILE  combined log (default build/logs/guest-SERIES.log)
  -T SECONDS  timeout of each VM run (default $DEFAULT_TIMEOUT)
  -b BINARY   static vserial_guest (default build/selftests/vserial_guest)
  -o DEVOPTS  options added to every virtio-serial-pci device (vhost=on)
  -m MIB      bytes of each bulk transfer, in MiB (default 64)
  HARNESS-ARGS  kselftest harness options instead of the group's fixtures
              (for example -f port, or -t lseek_fails_espipe)
EOT
	exit $EXIT_USAGE
}

die() {
	echo "$PROG: $*" >&2
	exit $EXIT_USAGE
}

log() {
	echo "$PROG: $*"
}

# intree, or project (FILE) for a module file.
driver_label() {
	if [ "$driver" = intree ]; then
		echo intree
	else
		echo "project (${driver##*/})"
	fi
}

groups_of_binary() {
	if [ -x "$binary" ]; then
		"$binary" --groups 2>/dev/null || true
	fi
}

stop_host() {
	if [ -n "$host_pid" ] && kill -0 "$host_pid" 2>/dev/null; then
		kill "$host_pid" 2>/dev/null || true
		wait "$host_pid" 2>/dev/null || true
	fi
	host_pid=""
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local pid

	if [ -n "$tmpdir" ] && [ -f "$tmpdir/qemu.pid" ]; then
		pid=$(cat "$tmpdir/qemu.pid" 2>/dev/null || true)
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			log "stopping QEMU (pid $pid)"
			kill "$pid" 2>/dev/null || true
		fi
	fi
	stop_host
	if [ -n "$tmpdir" ]; then
		rm -rf "$tmpdir"
	fi
}

is_uint() {
	case $1 in
	'' | *[!0-9]*) return 1 ;;
	*) return 0 ;;
	esac
}

parse_args() {
	local opt

	while getopts "k:d:g:s:l:T:b:o:m:h" opt; do
		case $opt in
		k) series=$OPTARG ;;
		d) driver=$OPTARG ;;
		g) groups+=("$OPTARG") ;;
		s) smp=$OPTARG ;;
		l) logfile=$OPTARG ;;
		T) timeout=$OPTARG ;;
		b) binary=$OPTARG ;;
		o) devopts=$OPTARG ;;
		m) bulk_mib=$OPTARG ;;
		*) usage ;;
		esac
	done
	shift $((OPTIND - 1))
	harness_args=("$@")

	if [ ${#groups[@]} -eq 0 ]; then
		read -r -a groups <<<"$DEFAULT_GROUPS"
	fi
	[ -n "$logfile" ] || logfile=$TOP/build/logs/guest-$series.log
	if ! is_uint "$timeout" || [ "$timeout" -eq 0 ]; then
		die "-T wants a positive number of seconds, not '$timeout'"
	fi
	[ -z "$smp" ] || is_uint "$smp" || die "-s wants a number, not '$smp'"
	[ -z "$bulk_mib" ] || is_uint "$bulk_mib" || die "-m wants a number, not '$bulk_mib'"
	case $devopts in
	*[[:space:]]*) die "-o must not contain spaces" ;;
	esac
}

check_tools() {
	local tool

	command -v "$QEMU" >/dev/null || die "$QEMU not found (package qemu-system-x86)"
	[ -x "$BUSYBOX" ] || die "$BUSYBOX not found (package busybox-static)"
	for tool in modinfo cpio xz flock timeout; do
		command -v $tool >/dev/null || die "$tool not found (run scripts/setup.sh)"
	done
	[ -x "$binary" ] || die "$binary not found: run make selftests"
	if command -v readelf >/dev/null &&
	   readelf -lW "$binary" 2>/dev/null | grep -q 'program interpreter'; then
		die "$binary is dynamically linked; the VM has no libc"
	fi
}

# Sets kdir, release: the cached kernel of the series.
check_kernel() {
	kdir=$CACHE/kernels/$series
	[ -f "$kdir/env" ] ||
		die "kernel $series is not set up ($kdir/env missing): run scripts/setup.sh $series"
	release=$(sed -n 's/^RELEASE=//p' "$kdir/env" | tail -n1)
	[ -n "$release" ] || die "$kdir/env has no RELEASE line"
	[ -f "$kdir/vmlinuz" ] || die "$kdir/vmlinuz missing"
	[ -d "$kdir/modules" ] || die "$kdir/modules missing"
}

check_groups() {
	local g

	for g in "${groups[@]}"; do
		"$binary" --group-info "$g" >/dev/null 2>&1 ||
			die "unknown group '$g' (groups: $(groups_of_binary | tr '\n' ' '))"
	done
}

check_driver() {
	local vermagic

	[ "$driver" = intree ] && return 0
	[ -f "$driver" ] || die "driver module $driver not found"
	vermagic=$(modinfo -F vermagic "$driver") || die "$driver is not a kernel module"
	case $vermagic in
	"$release "*) ;;
	*) die "$driver is built for '${vermagic%% *}', not $release" ;;
	esac
}

# The /init of the VM; its settings come from /etc/guest.conf and the group
# from vserial.group= on the kernel command line.
write_init() {
	{
		cat <<'EOT'
#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0
# Written by guest_vmtest.sh: load the driver, run the guest tests, report.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /etc/guest.conf

EOT
		vm_init_lib
		cat <<'EOT'

load_driver() {
	local m i=0

	for m in $MODULES; do
		insmod "/lib/modules/$m.ko" || fatal "insmod $m failed"
	done
	while [ ! -d /sys/class/virtio-ports ]; do
		[ $i -ge $((DRIVER_WAIT * 10)) ] &&
			fatal "no /sys/class/virtio-ports ${DRIVER_WAIT}s after loading the driver"
		usleep 100000
		i=$((i + 1))
	done
}

main() {
	local group="" arg rc name

	mount_filesystems || fatal "cannot mount the pseudo file systems"
	for arg in $(cat /proc/cmdline); do
		case $arg in
		vserial.group=*) group=${arg#vserial.group=} ;;
		esac
	done
	[ -n "$group" ] || fatal "no vserial.group= on the kernel command line"
	echo "VMTEST-BOOTED $(uname -r) group $group driver $DRIVER uptime $(uptime_s)"
	load_driver
	echo "VMTEST-LOADED ${MODULES:-built-in} uptime $(uptime_s)"
	if [ "$KSYMS" = 1 ]; then
		echo KSYMS-BEGIN
		grep -E '^[0-9a-f]+ [tT] ' /proc/kallsyms
		echo KSYMS-END
	fi
	relay_start
	name=vserial_guest@$group
	echo "VMTEST-BEGIN $name"
	# shellcheck disable=SC2086 # option lists
	timeout -s TERM -k 10 "$PROG_TIMEOUT" /tests/vserial_guest --guest \
		--ctl /dev/ttyS1 --group "$group" --driver "$DRIVER" \
		$GUEST_OPTS $HARNESS_ARGS </dev/null
	rc=$?
	[ $rc -eq 143 ] || [ $rc -eq 137 ] && echo "VMTEST-TIMEOUT $name $PROG_TIMEOUT"
	echo "VMTEST-END $name rc=$rc"
	relay_stop
	echo "VMTEST-KLOG bad=$(count_bad_klog)"
	dmesg | grep -E "$BAD_KLOG" | sed 's/^/VMTEST-KLOG| /'
	echo "VMTEST-UPTIME $(uptime_s)"
	[ "$BOOTLOG" = 1 ] && dmesg | sed 's/^/BOOTLOG| /'
	echo "VMTEST-DONE"
	power_off
}

main
EOT
	} >"$1"
	chmod 755 "$1"
}

# Debian's udevd (udevadm is also systemd-udevd) with its libraries and
# the project's udev rule alone, for hotplug.udev_rule_links_port_names
# (11 MB: only for groups with that fixture); without udevadm here that
# test reports SKIP.
add_udev() {
	local udevadm lib

	udevadm=$(command -v udevadm) || {
		log "no udevadm on this machine: the udev rule's test will SKIP"
		return 0
	}
	mkdir -p "$root"/{lib/systemd,etc/udev/rules.d,run}
	cp -L "$udevadm" "$root/bin/udevadm"
	ln -sf /bin/udevadm "$root/lib/systemd/systemd-udevd"
	for lib in $(ldd "$udevadm" | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }'); do
		mkdir -p "$root/$(dirname "$lib")"
		cp -L "$lib" "$root/$lib"
	done
	cp "$TOP/udev/60-vhost-serial.rules" "$root/etc/udev/rules.d/"
}

build_initramfs() {
	local name g guest_opts=""

	root=$tmpdir/root
	modules=()
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,etc,lib/modules,tests}
	vm_install_busybox "$BUSYBOX" "$root"
	mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

	for name in $TRANSPORT_MODULES; do
		add_kernel_module "$name"
	done
	if [ "$driver" = intree ]; then
		add_kernel_module $DRIVER_NAME
	else
		if is_builtin $DRIVER_NAME; then
			extra_initcalls=$BUILTIN_DRIVER_INITCALL
		fi
		add_module_file "$driver" $DRIVER_NAME
	fi
	# A debug kernel under TCG starves RCU's kthread at boot for longer
	# than the stall detector's default 21 s: a slow machine, not a bug.
	case $series in
	*-debug) extra_cmdline+=" rcupdate.rcu_cpu_stall_timeout=300" ;;
	esac
	# Modules the groups want beyond the driver (vsock for the benchmark).
	for g in "${groups[@]}"; do
		for name in $("$binary" --group-info "$g" | sed -n 's/^modules=//p'); do
			add_kernel_module "$name"
		done
	done
	vm_copy_stripped "$binary" "$root/tests/vserial_guest"
	for g in "${groups[@]}"; do
		if "$binary" --group-info "$g" | grep -q '^fixtures=.*\bhotplug\b'; then
			add_udev
			break
		fi
	done

	[ -z "$bulk_mib" ] || guest_opts="--bulk-mib $bulk_mib"
	cat >"$root/etc/guest.conf" <<EOT
MODULES="${modules[*]}"
DRIVER=$([ "$driver" = intree ] && echo intree || echo project)
PROG_TIMEOUT=$timeout
DRIVER_WAIT=$DRIVER_WAIT
BAD_KLOG='$BAD_KLOG'
GUEST_OPTS="$guest_opts"
HARNESS_ARGS="${harness_args[*]}"
KSYMS=${VMTEST_KSYMS:-0}
BOOTLOG=${VMTEST_BOOTLOG:-0}
EOT
	write_init "$root/init"
	(cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) \
		>"$tmpdir/initramfs.cpio"
	log "initramfs for $release: modules ${modules[*]:-(all built in)}, driver $driver"
}

# Takes the machine-wide VM lock, waiting at most LOCK_WAIT seconds; a
# signal ends the wait at once (flock runs in the background).
take_vm_lock() {
	local pid

	if [ -z "$lockfd" ]; then
		exec {lockfd}>>"$LOCKFILE"
	fi
	if ! flock -n "$lockfd"; then
		log "waiting for the VM of another run to finish (lock $LOCKFILE)"
		flock -w "$LOCK_WAIT" "$lockfd" &
		pid=$!
		wait "$pid" || die "another VM held $LOCKFILE for more than ${LOCK_WAIT}s"
	fi
}

release_vm_lock() {
	flock -u "$lockfd"
}

# Starts the host program for the group's socket directory $1 and waits
# until it listens.
start_host() {
	local dir=$1 i=0

	"$binary" --host "$dir" --timeout $((timeout + BOOT_MARGIN)) \
		${devopts:+--devopts "$devopts"} >"$dir/host.log" 2>&1 &
	host_pid=$!
	while [ ! -S "$dir/ctl.sock" ]; do
		kill -0 "$host_pid" 2>/dev/null ||
			die "the host program exited at once: $(tail -n 3 "$dir/host.log")"
		[ "$i" -ge $((HOST_START_WAIT * 10)) ] &&
			die "the host program did not listen within ${HOST_START_WAIT}s"
		sleep 0.1
		i=$((i + 1))
	done
}

# Waits a bounded time for the host program to end after QEMU did.
end_host() {
	local i=0

	while [ -n "$host_pid" ] && kill -0 "$host_pid" 2>/dev/null; do
		if [ "$i" -ge $((HOST_END_WAIT * 10)) ]; then
			log "the host program did not end; stopping it"
			break
		fi
		sleep 0.1
		i=$((i + 1))
	done
	stop_host
}

# Runs the VM of group $1; its serial log goes to $2.
run_group_vm() {
	local group=$1 glog=$2 dir=$tmpdir/$1 info gsmp gcmdline cmdline pid start rc=0
	local qargs=()

	mkdir -p "$dir"
	info=$("$binary" --group-info "$group")
	gsmp=$(sed -n 's/^smp=//p' <<<"$info")
	gcmdline=$(sed -n 's/^cmdline=//p' <<<"$info")
	[ -z "$smp" ] || gsmp=$smp
	mapfile -t qargs < <("$binary" --qemu-args "$group" "$dir" "$devopts")
	# Group parameters come first: the last console= is /dev/console,
	# which must stay ttyS0 for TAP.
	cmdline="$gcmdline $CMDLINE_BASE vserial.group=$group"
	cmdline+=" $(vm_lean_cmdline ${extra_initcalls:+"$extra_initcalls"})$extra_cmdline"
	[ "${VMTEST_BOOTLOG:-0}" = 1 ] && cmdline+=" initcall_debug log_buf_len=4M"
	cmdline+="${VMTEST_APPEND:+ $VMTEST_APPEND}"

	take_vm_lock
	start=$(date +%s)
	start_host "$dir"
	log "group $group: booting $release ($series), $gsmp vCPUs, driver $driver, timeout ${timeout}s"
	rm -f "$glog"
	# shellcheck disable=SC2086 # VMTEST_QEMU_ARGS is a list of words
	timeout --kill-after=10 $((timeout + BOOT_MARGIN)) \
		"$QEMU" -accel tcg -cpu "$(vm_cpu_model "$QEMU")" -m $QEMU_MEM -smp "$gsmp" \
		-nodefaults -display none -no-reboot \
		-serial "file:$glog" \
		-chardev "socket,id=ctl,path=$dir/ctl.sock" \
		-device isa-serial,chardev=ctl,index=1 \
		-qmp "unix:$dir/qmp.sock,server=on,wait=off" \
		"${qargs[@]}" ${VMTEST_QEMU_ARGS:-} \
		-pidfile "$tmpdir/qemu.pid" \
		-kernel "$(vm_kernel_image)" -initrd "$tmpdir/initramfs.cpio" \
		-append "$cmdline" </dev/null &
	pid=$!
	wait "$pid" || rc=$?
	vm_secs=$(($(date +%s) - start))
	end_host
	release_vm_lock
	return "$rc"
}

# The KEEP of vm_boot: the failed boot of a group (serial log $1,
# $tmpdir/GROUP.serial; QEMU's status $2) goes to the combined log.
keep_failed_boot() {
	local glog=$1 qrc=$2 group

	group=$(basename "$glog" .serial)
	log "group $group: the VM died before its init ran (QEMU status $qrc); booting it once more"
	{
		echo "=== BOOT-RETRY $group $series $driver"
		tr -d '\r' 2>/dev/null <"$glog" | tail -n 60 || true
	} >>"$logfile"
	rm -f "$tmpdir/qemu.pid"
}

# Where the guest's boot time went, from serial log $1: its uptime when
# /init ran and when the driver's ports were there (the rest of the VM's
# seconds are QEMU's start and the firmware before it, and the tests after).
boot_times() {
	local booted loaded

	booted=$(sed -n 's/^VMTEST-BOOTED .* uptime \([0-9.]*\)$/\1/p' "$1" | tail -n1)
	loaded=$(sed -n 's/^VMTEST-LOADED .* uptime \([0-9.]*\)$/\1/p' "$1" | tail -n1)
	[ -n "$booted" ] || return 0
	printf '; guest uptime at /init %ss' "$booted"
	[ -z "$loaded" ] || printf ', driver ready %ss' "$loaded"
}

# Appends group $1's serial log $2 and host log to the combined log;
# prints the group's verdict, returns 1 on failure.
evaluate_group() {
	local group=$1 glog=$2 qrc=$3 secs=$4 clean=$tmpdir/$1.clean name rc bad
	local ok notok skip bad_verdict=0

	name=vserial_guest@$group
	tr -d '\r' <"$glog" >"$clean" 2>/dev/null || : >"$clean"
	{
		echo "=== GROUP $group $series $driver"
		cat "$clean"
		sed 's/^/HOST| /' "$tmpdir/$group/host.log" 2>/dev/null || true
	} >>"$logfile"

	ok=$(awk -v b="VMTEST-BEGIN $name" -v e="VMTEST-END $name " '
		$0 == b { in_ = 1; next } index($0, e) == 1 { in_ = 0 }
		in_ && /^ok / && !/# [Ss][Kk][Ii][Pp]/ { n++ } END { print n + 0 }' "$clean")
	skip=$(awk -v b="VMTEST-BEGIN $name" -v e="VMTEST-END $name " '
		$0 == b { in_ = 1; next } index($0, e) == 1 { in_ = 0 }
		in_ && /^ok / && /# [Ss][Kk][Ii][Pp]/ { n++ } END { print n + 0 }' "$clean")
	notok=$(awk -v b="VMTEST-BEGIN $name" -v e="VMTEST-END $name " '
		$0 == b { in_ = 1; next } index($0, e) == 1 { in_ = 0 }
		in_ && /^not ok / { n++ } END { print n + 0 }' "$clean")
	rc=$(sed -n "s/^VMTEST-END $name rc=\([0-9]*\).*/\1/p" "$clean" | tail -n1)
	bad=$(sed -n 's/^VMTEST-KLOG bad=\([0-9]*\).*/\1/p' "$clean" | tail -n1)

	log "group $group: $ok passed, $notok failed, $skip skipped (VM ${secs}s$(boot_times "$clean"))"
	grep '^not ok ' "$clean" | sed 's/^/  /' || true
	grep '^BENCH ' "$clean" | sed "s|^|  $series $(driver_label): |" || true
	if grep -q 'VMTEST-FATAL' "$clean"; then
		log "group $group: FAIL: $(sed -n 's/.*VMTEST-FATAL //p' "$clean" | head -n1)"
		grep '^VMTEST-KLOG| ' "$clean" | sed 's/^VMTEST-KLOG| /  dmesg: /' || true
		bad_verdict=1
	elif ! grep -qx VMTEST-DONE "$clean"; then
		log "group $group: FAIL: the VM did not finish (QEMU status $qrc); end of its log:"
		tail -n 20 "$clean" | sed 's/^/  | /'
		bad_verdict=1
	fi
	if [ -z "$rc" ]; then
		bad_verdict=1
	elif [ "$rc" -ne 0 ]; then
		log "group $group: the test program exited with $rc"
		bad_verdict=1
	fi
	if [ -n "$bad" ] && [ "$bad" -gt 0 ]; then
		log "group $group: FAIL: $bad bad kernel-log lines:"
		grep '^VMTEST-KLOG| ' "$clean" | sed 's/^VMTEST-KLOG| /  /' || true
		bad_verdict=1
	fi
	[ "$notok" -eq 0 ] || bad_verdict=1
	return $bad_verdict
}

main() {
	local g glog qrc

	parse_args "$@"
	check_tools
	check_kernel
	check_groups
	check_driver
	mkdir -p "$(dirname "$logfile")"
	: >"$logfile"

	# A short directory: unix socket paths are limited to 107 bytes.
	tmpdir=$(mktemp -d /tmp/vsg.XXXXXX)
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	build_initramfs
	for g in "${groups[@]}"; do
		glog=$tmpdir/$g.serial
		qrc=0
		vm_secs=0
		vm_boot "$glog" "" keep_failed_boot run_group_vm "$g" "$glog" ||
			qrc=$?
		if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
			log "group $g: the VM timed out after $((timeout + BOOT_MARGIN))s"
		fi
		evaluate_group "$g" "$glog" "$qrc" "$vm_secs" || failed=1
		rm -f "$tmpdir/qemu.pid"
	done
	if [ $failed -eq 0 ]; then
		log "PASS ($series, driver $driver, groups ${groups[*]}); log $logfile"
		exit 0
	fi
	log "FAIL ($series, driver $driver); see $logfile"
	exit $EXIT_FAIL
}

main "$@"
