#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot one of the cached Debian kernels under QEMU (TCG) with a busybox
# initramfs, load vhost_serial.ko and its dependencies, run test programs
# inside the VM and report whether everything passed.
#
#   vmtest.sh -k SERIES -m PATH/vhost_serial.ko -l LOGFILE [-T SECONDS]
#             [-t SECONDS] [-c CPUS] [-e NAME=VALUE]... TESTPROG [TESTPROG...]
#
# -c gives the VM that many virtual CPUs (default 2).
#
# VMTEST_QEMU_ARGS (words) and VMTEST_APPEND (kernel command line) add to
# what the VM is started with; scripts/profile.sh uses them.
#
# The test programs must be static binaries: the VM has no libc.  They run
# one after the other as root, with stdout and stderr on the serial console,
# between marker lines that this script reads back from LOGFILE:
#
#   VMTEST-BEGIN <name>
#   ... program output (TAP) ...
#   VMTEST-END <name> rc=<exit code>
#   VMTEST-KLOG bad=<count>        bad kernel-log lines after all programs,
#   VMTEST-KLOG| <line>            each of them
#   VMTEST-DONE
#
# Other lines of the VM:
#   VMTEST-FATAL <reason>          set-up failed, no test ran
#   VMTEST-TIMEOUT <name> <secs>   the program was killed by the in-VM timeout
#   VMTEST-KLOG-NEW <name> <count> bad kernel-log lines the program added
#   VMTEST-KMSG| <line>            kernel messages of level warning or worse,
#                                  relayed live while the tests run
#   VMTEST-UPTIME <secs>           guest uptime when the tests were done
#   VMTEST-KMEMLEAK <n> leaks      kmemleak's verdict, on kernels with it
#
# The kernel's own console level is lowered to emergencies while the tests
# run and its messages are relayed by a reader of /dev/kmsg instead: whole
# lines written from userspace never tear the TAP lines of a test, a printk
# straight to the UART can.
#
# Exit status: 0 when the VM finished, every program exited 0 and the
# kernel log holds no Oops/WARNING/BUG/KASAN lines; 1 when a test or the VM
# failed; 2 on a usage or set-up error on the host.
set -euo pipefail

# shellcheck source=vm_lib.sh
. "$(dirname "$0")/vm_lib.sh"
readonly BAD_KLOG=$VM_BAD_KLOG

readonly PROG=${0##*/}
readonly CACHE=${VSERIAL_CACHE:-/var/cache/vhost-serial}
readonly QEMU=${QEMU:-qemu-system-x86_64}
readonly BUSYBOX=${BUSYBOX:-/bin/busybox}
readonly DEFAULT_TIMEOUT=1200
# Time the VM gets for booting and the final kernel-log check, taken out of
# the overall timeout before it is shared among the test programs.
readonly BOOT_MARGIN=60
readonly MIN_PROG_TIMEOUT=10
# Seconds the VM waits for the device node after insmod.
readonly DEV_WAIT=10
readonly DEVNODE=/dev/vhost-serial
readonly MODULE_NAME=vhost_serial
readonly CMDLINE="console=ttyS0 panic=-1 quiet loglevel=4"
# Only one VM at a time on a machine: two TCG guests on two cores would
# slow each other down past their timeouts.
readonly LOCKFILE=${VMTEST_LOCK:-/tmp/vhost-serial-vmtest.lock}
readonly QEMU_MEM=2G
readonly EXIT_FAIL=1
readonly EXIT_USAGE=2

series=""
module=""
logfile=""
timeout=$DEFAULT_TIMEOUT
prog_timeout=""
cpus=2
tests=()
envs=()
tmpdir=""
qemu_rc=0
lockfd=""
kdir=""
release=""

usage() {
	cat >&2 <<EOT
usage: $PROG -k SERIES -m PATH/vhost_serial.ko -l LOGFILE [-T SECONDS]
       [-t SECONDS] [-c CPUS] [-e NAME=VALUE]... TESTPROG [TESTPROG...]

  -k SERIES   kernel series cached by scripts/setup.sh (6.12, 6.1)
  -m FILE     vhost_serial.ko built for that kernel
  -l LOGFILE  serial console log of the VM (overwritten)
  -T SECONDS  timeout of the whole VM run (default $DEFAULT_TIMEOUT)
  -t SECONDS  timeout of each test program inside the VM
              (default: (T - $BOOT_MARGIN) / number of programs)
  -c CPUS     virtual CPUs of the VM (default 2)
  -e NAME=VALUE  environment of the test programs (repeatable)
  TESTPROG    static test binaries, run in this order as /tests/NAME
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

	while getopts "k:m:l:T:t:c:e:h" opt; do
		case $opt in
		e)
			[[ $OPTARG =~ ^[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9_.,:/=-]*$ ]] ||
				die "-e wants NAME=VALUE (letters, digits, _.,:/=-), not '$OPTARG'"
			envs+=("$OPTARG")
			;;
		k) series=$OPTARG ;;
		m) module=$OPTARG ;;
		l) logfile=$OPTARG ;;
		T) timeout=$OPTARG ;;
		t) prog_timeout=$OPTARG ;;
		c) cpus=$OPTARG ;;
		*) usage ;;
		esac
	done
	shift $((OPTIND - 1))
	tests=("$@")

	if [ -z "$series" ] || [ -z "$module" ] || [ -z "$logfile" ] ||
	   [ ${#tests[@]} -eq 0 ]; then
		usage
	fi
	if ! is_uint "$cpus" || [ "$cpus" -eq 0 ]; then
		die "-c wants a positive number of CPUs, not '$cpus'"
	fi
	if ! is_uint "$timeout" || [ "$timeout" -eq 0 ]; then
		die "-T wants a positive number of seconds, not '$timeout'"
	fi
	if [ -z "$prog_timeout" ]; then
		prog_timeout=$(((timeout - BOOT_MARGIN) / ${#tests[@]}))
		if [ "$prog_timeout" -lt $MIN_PROG_TIMEOUT ]; then
			prog_timeout=$MIN_PROG_TIMEOUT
		fi
	fi
	if ! is_uint "$prog_timeout" || [ "$prog_timeout" -eq 0 ]; then
		die "-t wants a positive number of seconds, not '$prog_timeout'"
	fi
}

check_tools() {
	local tool

	command -v "$QEMU" >/dev/null || die "$QEMU not found (package qemu-system-x86)"
	[ -x "$BUSYBOX" ] || die "$BUSYBOX not found (package busybox-static)"
	for tool in modinfo cpio xz flock timeout; do
		command -v $tool >/dev/null ||
			die "$tool not found (run scripts/setup.sh)"
	done
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

check_module() {
	local vermagic

	[ -f "$module" ] || die "module $module not found"
	vermagic=$(modinfo -F vermagic "$module") ||
		die "$module is not a kernel module"
	case $vermagic in
	"$release "*) ;;
	*) die "$module is built for '${vermagic%% *}', not $release" ;;
	esac
}

check_tests() {
	local t names=" " name

	for t in "${tests[@]}"; do
		if [ ! -f "$t" ] || [ ! -x "$t" ]; then
			die "test program $t is not an executable file"
		fi
		if command -v readelf >/dev/null &&
		   readelf -lW "$t" 2>/dev/null | grep -q 'program interpreter'; then
			die "test program $t is dynamically linked; the VM has no libc"
		fi
		name=${t##*/}
		case $names in
		*" $name "*) die "two test programs are named $name" ;;
		esac
		names="$names$name "
	done
}

# Appends to the global deps (in load order) the modules that module file $1
# needs, found through their "depends" fields, depth first.
add_deps() {
	local file=$1 dep depfile

	for dep in $(modinfo -F depends "$file" | tr ',' ' '); do
		case " ${deps[*]} " in
		*" $dep "*) continue ;;
		esac
		depfile=$(kernel_module_file "$dep") ||
			die "module $dep (needed by ${file##*/}) not found in $kdir/modules"
		add_deps "$depfile"
		deps+=("$dep")
	done
}

# The /init of the VM.  Runs under busybox sh; its settings come from
# /etc/vmtest.conf (MODULES, TESTS, PROG_TIMEOUT, DEVNODE, DEV_WAIT,
# BAD_KLOG).
write_init() {
	{
		cat <<'EOT'
#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0
# Written by vmtest.sh: load the modules, run the tests, report, power off.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
. /etc/vmtest.conf

EOT
		vm_init_lib
		cat <<'EOT'

wait_for_node() {
	local i=0

	while [ ! -c "$1" ]; do
		[ $i -ge $((DEV_WAIT * 10)) ] && return 1
		usleep 100000
		i=$((i + 1))
	done
}

load_modules() {
	local m

	for m in $MODULES; do
		insmod "/lib/modules/$m.ko" || fatal "insmod $m failed"
	done
	wait_for_node "$DEVNODE" ||
		fatal "$DEVNODE did not appear within ${DEV_WAIT}s of loading the modules"
}

run_test() {
	local name="$1" before after start now rc

	before=$(count_bad_klog)
	start=$(uptime_s)
	echo "VMTEST-BEGIN $name"
	timeout -s TERM -k 10 "$PROG_TIMEOUT" "/tests/$name" </dev/null
	rc=$?
	if [ $rc -eq 143 ] || [ $rc -eq 137 ]; then
		now=$(uptime_s)
		if [ $((${now%.*} - ${start%.*})) -ge "$PROG_TIMEOUT" ]; then
			echo "VMTEST-TIMEOUT $name $PROG_TIMEOUT"
		fi
	fi
	echo "VMTEST-END $name rc=$rc"
	after=$(count_bad_klog)
	if [ "$after" -gt "$before" ]; then
		echo "VMTEST-KLOG-NEW $name $((after - before))"
	fi
}

# On kernels with kmemleak: what leaked since the tests started, written
# into the kernel log so that the scan below counts it.
KMEMLEAK=/sys/kernel/debug/kmemleak
kmemleak_start() {
	[ -w $KMEMLEAK ] && echo clear >$KMEMLEAK
}

kmemleak_report() {
	[ -w $KMEMLEAK ] || return 0
	# Two scans: an object is reported once it was unreferenced in both.
	echo scan >$KMEMLEAK
	echo scan >$KMEMLEAK
	echo "VMTEST-KMEMLEAK $(grep -c '^unreferenced object' $KMEMLEAK) leaks"
	grep -E '^unreferenced object|^  (comm|backtrace)|^    \[' $KMEMLEAK |
		head -n 200 | while IFS= read -r line; do
			echo "kmemleak: $line" >/dev/kmsg
		done
}

report_klog() {
	local bad

	kmemleak_report
	bad=$(count_bad_klog)
	echo "VMTEST-KLOG bad=$bad"
	dmesg | grep -E "$BAD_KLOG" | sed 's/^/VMTEST-KLOG| /'
}

main() {
	local t

	mount_filesystems || fatal "cannot mount the pseudo file systems"
	echo "VMTEST-BOOTED $(uname -r)"
	load_modules
	echo "VMTEST-LOADED $MODULES"
	relay_start
	kmemleak_start
	for t in $TESTS; do
		run_test "$t"
	done
	relay_stop
	report_klog
	echo "VMTEST-UPTIME $(uptime_s)"
	echo "VMTEST-DONE"
	power_off
}

main
EOT
	} >"$1"
	chmod 755 "$1"
}

build_initramfs() {
	local root=$tmpdir/root deps=() m t e names=""

	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,etc,lib/modules,tests}
	vm_install_busybox "$BUSYBOX" "$root"
	# Harmless if it fails (not root): /init reopens its console on devtmpfs.
	mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

	add_deps "$module"
	for m in "${deps[@]}"; do
		copy_kernel_module "$(kernel_module_file "$m")" "$root/lib/modules/$m.ko"
	done
	cp "$module" "$root/lib/modules/$MODULE_NAME.ko"

	for t in "${tests[@]}"; do
		cp "$t" "$root/tests/${t##*/}"
		names="$names ${t##*/}"
	done

	cat >"$root/etc/vmtest.conf" <<EOT
MODULES="${deps[*]} $MODULE_NAME"
TESTS="${names# }"
PROG_TIMEOUT=$prog_timeout
DEVNODE=$DEVNODE
DEV_WAIT=$DEV_WAIT
BAD_KLOG='$BAD_KLOG'
EOT
	for e in "${envs[@]}"; do
		echo "export $e" >>"$root/etc/vmtest.conf"
	done
	write_init "$root/init"

	(cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) \
		>"$tmpdir/initramfs.cpio"
	log "initramfs: modules ${deps[*]} $MODULE_NAME; tests${names}"
}

# Waits, at most as long as the run itself may take, until no other VM of
# this test bed runs.  The lock is held until this script exits.
# flock runs in the background so that a signal ends the wait at once; the
# lock belongs to the open file, which this shell keeps.
take_vm_lock() {
	local pid

	exec {lockfd}>>"$LOCKFILE"
	if ! flock -n "$lockfd"; then
		log "waiting for the VM of another run to finish (lock $LOCKFILE)"
		flock -w "$timeout" "$lockfd" &
		pid=$!
		wait $pid || die "another VM held $LOCKFILE for more than ${timeout}s"
	fi
}

# Runs QEMU in the background and waits for it, so that a signal to this
# script ends the wait at once and cleanup() can stop the VM.
# shellcheck disable=SC2317 # run by vm_boot
run_vm() {
	local pid rc=0

	rm -f "$logfile"
	log "booting $release ($series), timeout ${timeout}s, ${prog_timeout}s per program"
	# shellcheck disable=SC2086 # VMTEST_QEMU_ARGS is a list of words
	timeout --kill-after=10 "$timeout" \
		"$QEMU" -accel tcg -cpu "$(vm_cpu_model "$QEMU")" -m $QEMU_MEM -smp $cpus \
		-nodefaults -display none -no-reboot \
		-serial "file:$logfile" \
		-pidfile "$tmpdir/qemu.pid" \
		-kernel "$(vm_kernel_image)" -initrd "$tmpdir/initramfs.cpio" \
		${VMTEST_QEMU_ARGS:-} \
		-append "$CMDLINE${VMTEST_APPEND:+ $VMTEST_APPEND}" </dev/null &
	pid=$!
	wait "$pid" || rc=$?
	return "$rc"
}

# The serial log without carriage returns.
clean_log() {
	tr -d '\r' <"$logfile" >"$tmpdir/log"
}

# log_has_line LINE: the log has exactly this line.
log_has_line() {
	grep -qxF "$1" "$tmpdir/log"
}

# log_has_prefix TEXT: a line of the log starts with this text.
log_has_prefix() {
	awk -v p="$1" 'index($0, p) == 1 { found = 1; exit }
		END { exit !found }' "$tmpdir/log"
}

# Prints the reasons of failure; returns 1 when there is one.
evaluate() {
	local failed=0 t name rc bad fatal

	if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
		echo "FAIL: VM timed out after ${timeout}s"
		failed=1
	elif [ "$qemu_rc" -ne 0 ]; then
		echo "FAIL: QEMU exited with status $qemu_rc"
		failed=1
	fi

	fatal=$(grep -o 'VMTEST-FATAL .*' "$tmpdir/log" | head -n1 || true)
	if [ -n "$fatal" ]; then
		echo "FAIL: set-up in the VM failed: ${fatal#VMTEST-FATAL }"
		grep '^VMTEST-KLOG| ' "$tmpdir/log" | sed 's/^VMTEST-KLOG| /  dmesg: /' || true
		return 1
	fi

	for t in "${tests[@]}"; do
		name=${t##*/}
		rc=$(grep -o "VMTEST-END $name rc=[0-9]*" "$tmpdir/log" | tail -n1 |
		     sed 's/.*rc=//' || true)
		if [ -z "$rc" ]; then
			if log_has_line "VMTEST-BEGIN $name"; then
				echo "FAIL: test $name did not finish"
			else
				echo "FAIL: test $name did not start"
			fi
			failed=1
		elif log_has_prefix "VMTEST-TIMEOUT $name "; then
			echo "FAIL: test $name timed out after ${prog_timeout}s (rc=$rc)"
			failed=1
		elif [ "$rc" -ne 0 ]; then
			echo "FAIL: test $name rc=$rc"
			failed=1
		else
			echo "ok: test $name rc=0"
		fi
	done

	if ! log_has_line VMTEST-DONE; then
		echo "FAIL: VM did not finish (no VMTEST-DONE); last lines of $logfile:"
		tail -n 30 "$tmpdir/log" | sed 's/^/  | /'
		failed=1
	fi

	bad=$(grep -o 'VMTEST-KLOG bad=[0-9]*' "$tmpdir/log" | tail -n1 | sed 's/.*=//' || true)
	if [ -n "$bad" ] && [ "$bad" -gt 0 ]; then
		echo "FAIL: kernel log had $bad bad lines:"
		grep '^VMTEST-KLOG| ' "$tmpdir/log" | sed 's/^VMTEST-KLOG| /  /' || true
		grep '^VMTEST-KLOG-NEW ' "$tmpdir/log" |
			awk '{ print "  (" $3 " of them during " $2 ")" }' || true
		failed=1
	elif [ -z "$bad" ] && grep -qE "$BAD_KLOG" "$tmpdir/log"; then
		echo "FAIL: console shows kernel errors:"
		grep -E "$BAD_KLOG" "$tmpdir/log" | head -n 20 | sed 's/^/  /'
		failed=1
	fi
	return $failed
}

main() {
	local start elapsed uptime

	parse_args "$@"
	check_tools
	check_kernel
	check_module
	check_tests
	mkdir -p "$(dirname "$logfile")"

	tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/vmtest.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	build_initramfs
	take_vm_lock
	start=$(date +%s)
	vm_boot "$logfile" "" vm_keep_failed_boot run_vm || qemu_rc=$?
	elapsed=$(($(date +%s) - start))
	[ -f "$logfile" ] || die "QEMU wrote no log (status $qemu_rc)"
	clean_log
	uptime=$(sed -n 's/^VMTEST-UPTIME //p' "$tmpdir/log" | tail -n1)
	log "VM ran ${elapsed}s${uptime:+ (guest uptime at the end: ${uptime}s)}"

	if evaluate; then
		log "PASS ($series)"
		exit 0
	fi
	log "FAIL ($series), see $logfile"
	exit $EXIT_FAIL
}

main "$@"
