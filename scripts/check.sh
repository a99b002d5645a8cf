#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Every check of vhost-serial, for each kernel series given (default: 6.12
# and 6.1), after scripts/setup.sh has cached the kernels:
#
#   - build the module for the kernel (make KERNEL=<s>);
#   - build the selftests once (make selftests);
#   - run them in a VM of that kernel (vmtest.sh), log in build/logs/<s>.log,
#     and count their TAP results;
#   - when the project's guest driver was built (build/<s>/virtio_console.ko):
#     the guest-side tests with it (guest_vmtest.sh: one VM per test group,
#     QEMU's userspace virtio-serial device), log in build/logs/guest-<s>.log,
#     counting their TAP results; then the throughput benchmark once more with
#     the in-tree driver, for the comparison (printed, not counted);
#   - sparse of the module for the kernel (make sparse KERNEL=<s>);
#   - checkpatch once (make checkpatch);
#   - packaging (unless PACKAGING=0; Debian's series only): DKMS, make
#     install into a staging root booted in a VM, make uninstall, the docs
#     (scripts/check-packaging.sh), each of its checks counted;
#   - end to end (unless E2E=0): QEMU with qemu-patches/ (scripts/qemu.sh,
#     cached), then host VMs (L1, e2e_vmtest.sh) of each series with the
#     module, in which the guest tests run unchanged in L2 guests whose
#     devices are vhost=on (e2e_guest_suite.sh); logs build/logs/e2e-<s>.log;
#   - the benchmark's smoke run (unless BENCH=0): make bench QUICK=1, which
#     passes when every figure was produced (their values are not judged).
#
# With --guest-only DRIVER (make check-guest GUEST_DRIVER=intree|project),
# only the guest-side tests run, for each kernel, against the in-tree
# driver or the project's (built first).
#
# Counted as tests: each TAP result ("ok", "not ok", "ok ... # SKIP" is a
# skip and never a pass), each sparse run and the checkpatch run.  Counted
# as one extra failure each, named "<s>: <what>": a module or selftest
# build that failed, a VM that did not finish, a test program that exited
# non-zero without reporting a "not ok", and bad kernel-log lines.
#
# The last line of the output is "N passed, N failed".  The exit status is
# non-zero when anything failed or nothing ran.
#
# Environment:
#   VSERIAL_TESTPROGS  static test programs to run instead of building and
#                      running the selftests (space separated; for work on
#                      this test bed itself)
#   VMTEST_TIMEOUT     timeout of each VM run in seconds (default 1200)
#   GUEST_GROUPS       guest test groups to run (default: main smp1 smp4 bench)
#   GUEST_TIMEOUT      timeout of each guest VM run in seconds (default 600)
#   PACKAGING          0 skips the packaging checks
#   E2E                0 skips the end-to-end runs
#   E2E_GROUPS         guest groups run nested with a 6.12 host (main smp1)
#   E2E_OLD_HOST_GROUPS  guest groups run nested with a 6.1 host (smp4)
#   E2E_BULK_MIB       MiB of each bulk transfer in L2 (default 8)
#   E2E_L2_TIMEOUT     timeout of each L2 guest in seconds (default 1500)
#   BENCH              0 skips the benchmark's smoke run
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
readonly TOP
readonly BUILD=$TOP/build
readonly LOGDIR=$BUILD/logs
readonly SELFTEST_OUT=$BUILD/selftests
readonly SELFTEST_PROGS="vserial_test vserial_fuzz"
# Copies of the programs, so that every kernel runs the same binaries even
# if they are rebuilt while the check runs.
readonly PROG_COPIES=$BUILD/check-progs
# tools/vserial/vserial-attach, which the guest tests' host program runs
# (built with the selftests; its test SKIPs without it).
export VSERIAL_ATTACH=$BUILD/tools/vserial-attach
readonly VMTEST=$TOP/tools/testing/selftests/vserial/vmtest.sh
readonly VM_TIMEOUT=${VMTEST_TIMEOUT:-1200}
readonly DEFAULT_KERNELS="6.12 6.1"
# Lines of a failed step's log shown in the output.
readonly TAIL_LINES=15
readonly GUEST_RUNNER=$TOP/tools/testing/selftests/vserial/guest_vmtest.sh
readonly GUEST_PROG=vserial_guest
readonly GUEST_GROUP_LIST=${GUEST_GROUPS:-main smp1 smp4 bench}
readonly GUEST_VM_TIMEOUT=${GUEST_TIMEOUT:-600}
readonly GUEST_BENCH_GROUP=bench
readonly E2E_RUNNER=$TOP/tools/testing/selftests/vserial/e2e_vmtest.sh
readonly E2E_SUITE=$TOP/tools/testing/selftests/vserial/e2e_guest_suite.sh
# The L2 guests' kernel and driver; L1 runs each series of E2E_HOSTS.
readonly E2E_GUEST_SERIES=6.12
readonly E2E_GROUP_LIST=${E2E_GROUPS:-main smp1}
# Groups of the run with a 6.1 host (L1) kernel: one is enough to show
# the module of that kernel serving a guest, and it is the vCPU count the
# 6.12 host leaves out, so that every L2 boot (about 90 s of the suite's
# time each) covers something no other one does.
readonly E2E_OLD_HOST_GROUPS=${E2E_OLD_HOST_GROUPS:-smp4}
readonly E2E_BULK_MIB=${E2E_BULK_MIB:-8}
readonly E2E_L2_TIMEOUT=${E2E_L2_TIMEOUT:-1500}

total_pass=0
total_fail=0
total_skip=0
# Counts and lists of the kernel being checked.
k_pass=0
k_fail=0
k_skip=0
k_failed=()
k_skipped=()
all_failed=()
# Set once the selftests were built (or given): the programs to run.
testprogs=""
selftests_tried=0
# The copy of the guest test program, once built.
guest_prog=""
# --guest-only: intree or project; empty for the full check.
guest_only=""

pass() {
	k_pass=$((k_pass + 1))
	total_pass=$((total_pass + 1))
}

# fail NAME [REASON]
fail() {
	local what=$1

	if [ $# -gt 1 ] && [ -n "$2" ]; then
		what="$1 ($2)"
	fi
	k_fail=$((k_fail + 1))
	total_fail=$((total_fail + 1))
	k_failed+=("$what")
	all_failed+=("$what")
}

# skip NAME REASON
skip() {
	k_skip=$((k_skip + 1))
	total_skip=$((total_skip + 1))
	k_skipped+=("$1${2:+ ($2)}")
}

reset_kernel_counts() {
	k_pass=0
	k_fail=0
	k_skip=0
	k_failed=()
	k_skipped=()
}

# run_logged LOG CMD...: the command's output goes to LOG; on failure the
# end of it is shown.
run_logged() {
	local logfile=$1

	shift
	if "$@" >"$logfile" 2>&1; then
		return 0
	fi
	echo "  '$*' failed; end of $logfile:"
	tail -n $TAIL_LINES "$logfile" | sed 's/^/  | /'
	return 1
}

elapsed_since() {
	echo $(($(date +%s) - $1))
}

# Sets testprogs to copies of the programs $@.
copy_programs() {
	local p

	rm -rf "$PROG_COPIES"
	mkdir -p "$PROG_COPIES"
	testprogs=""
	for p in "$@"; do
		if [ ! -x "$p" ]; then
			fail "selftests: build" "$p missing"
			testprogs=""
			return 1
		fi
		cp "$p" "$PROG_COPIES/"
		testprogs="$testprogs $PROG_COPIES/${p##*/}"
	done
}

# Builds the selftests the first time a kernel needs them.
ensure_selftests() {
	local progs=() p

	[ $selftests_tried -eq 1 ] && return 0
	selftests_tried=1
	if [ -n "${VSERIAL_TESTPROGS:-}" ]; then
		echo "test programs from VSERIAL_TESTPROGS: $VSERIAL_TESTPROGS"
		# shellcheck disable=SC2086 # a list of paths
		copy_programs $VSERIAL_TESTPROGS
		return
	fi
	echo "building the selftests"
	if ! run_logged "$LOGDIR/selftests-build.log" make -C "$TOP" selftests; then
		fail "selftests: build"
		return 1
	fi
	for p in $SELFTEST_PROGS; do
		progs+=("$SELFTEST_OUT/$p")
	done
	copy_programs "${progs[@]}"
}

# The TAP result lines of program $2 in cleaned log $1.
tap_results() {
	awk -v begin="VMTEST-BEGIN $2" -v end="VMTEST-END $2 " '
		$0 == begin { inside = 1; next }
		inside && index($0, end) == 1 { inside = 0; next }
		inside && /^(not )?ok / { print }' "$1"
}

# Prints what the harness said of each failed test of program $2 in log
# $1 (its "# " lines), so that a run's output tells why without its logs.
failure_details() {
	awk -v begin="VMTEST-BEGIN $2" -v end="VMTEST-END $2 " '
		$0 == begin { inside = 1; next }
		inside && index($0, end) == 1 { inside = 0; next }
		!inside { next }
		/^#  RUN / { n = 0; next }
		/^# / && n < 12 { said[n++] = $0; next }
		/^not ok / {
			print "  " $0
			for (i = 0; i < n; i++)
				print "  | " said[i]
		}
		/^(not )?ok / { n = 0 }' "$1"
}

# Counts one TAP result line of kernel $1.
count_result() {
	local series=$1 line=$2 rest name directive

	rest=${line#not }
	rest=${rest#ok }
	rest=${rest#* }			# the test number
	name=${rest%% # *}
	directive=""
	if [ "$name" != "$rest" ]; then
		directive=${rest#* # }
	fi
	shopt -s nocasematch
	if [[ $line == "not ok "* ]]; then
		fail "$series: $name" "$directive"
	elif [[ $directive == skip* ]]; then
		directive=${directive:4}
		skip "$series: $name" "${directive# }"
	else
		pass
	fi
	shopt -u nocasematch
}

# Counts the results of the VM run of kernel $1 from its log $2.
count_vm_results() {
	local series=$1 raw=$2 log p name rc line nots bad fatal

	if [ ! -s "$raw" ]; then
		fail "$series: vm-finished" "no log"
		return
	fi
	log=$(mktemp)
	tr -d '\r' <"$raw" >"$log"

	for p in $testprogs; do
		name=${p##*/}
		nots=0
		while IFS= read -r line; do
			count_result "$series" "$line"
			if [[ $line == "not ok "* ]]; then
				nots=$((nots + 1))
			fi
		done < <(tap_results "$log" "$name")
		[ $nots -eq 0 ] || failure_details "$log" "$name"
		rc=$(grep -o "VMTEST-END $name rc=[0-9]*" "$log" | tail -n1 | sed 's/.*rc=//' || true)
		if [ -n "$rc" ] && [ "$rc" -ne 0 ] && [ $nots -eq 0 ]; then
			if grep -q "^VMTEST-TIMEOUT $name " "$log"; then
				fail "$series: $name-exit" "rc=$rc, timed out"
			else
				fail "$series: $name-exit" "rc=$rc"
			fi
		fi
	done

	fatal=$(sed -n 's/.*VMTEST-FATAL //p' "$log" | head -n1)
	if [ -n "$fatal" ]; then
		fail "$series: module-load" "$fatal"
	elif ! grep -qx 'VMTEST-DONE' "$log"; then
		fail "$series: vm-finished" "no VMTEST-DONE, see $raw"
	fi

	bad=$(sed -n 's/^VMTEST-KLOG bad=\([0-9]*\).*/\1/p' "$log" | tail -n1)
	if [ -n "$bad" ] && [ "$bad" -gt 0 ]; then
		fail "$series: kernel-log-clean" "$bad bad lines"
		grep '^VMTEST-KLOG| ' "$log" | sed 's/^VMTEST-KLOG| /  klog: /' || true
	fi
	rm -f "$log"
}

# Copies the guest test program beside the others (built by make selftests).
ensure_guest_prog() {
	local p=$SELFTEST_OUT/$GUEST_PROG

	[ -n "$guest_prog" ] && return 0
	# make check built them already (unless VSERIAL_TESTPROGS said not to).
	if [ $selftests_tried -eq 0 ] || [ ! -x "$p" ]; then
		echo "building the selftests for the guest tests"
		if ! run_logged "$LOGDIR/selftests-build.log" make -C "$TOP" selftests ||
		   [ ! -x "$p" ]; then
			fail "selftests: build" "$GUEST_PROG missing"
			return 1
		fi
	fi
	mkdir -p "$PROG_COPIES"
	cp "$p" "$PROG_COPIES/$GUEST_PROG"
	guest_prog=$PROG_COPIES/$GUEST_PROG
}

# Counts the results of one guest test group from its section file $2 of
# the combined log; $1 names it (<series>/<group>).
count_guest_group() {
	local label=$1 section=$2 group=${1#*/} name line nots=0 rc bad fatal

	name=$GUEST_PROG@$group
	while IFS= read -r line; do
		count_result "$label" "$line"
		if [[ $line == "not ok "* ]]; then
			nots=$((nots + 1))
		fi
	done < <(tap_results "$section" "$name")
	[ $nots -eq 0 ] || failure_details "$section" "$name"
	rc=$(grep -o "VMTEST-END $name rc=[0-9]*" "$section" | tail -n1 | sed 's/.*rc=//' || true)
	fatal=$(sed -n 's/.*VMTEST-FATAL //p' "$section" | head -n1)
	if [ -n "$fatal" ]; then
		fail "$label: driver-load" "$fatal"
	elif ! grep -qx 'VMTEST-DONE' "$section"; then
		fail "$label: vm-finished" "no VMTEST-DONE"
	fi
	if [ -n "$rc" ] && [ "$rc" -ne 0 ] && [ $nots -eq 0 ]; then
		if grep -q "^VMTEST-TIMEOUT $name " "$section"; then
			fail "$label: $GUEST_PROG-exit" "rc=$rc, timed out"
		else
			fail "$label: $GUEST_PROG-exit" "rc=$rc"
		fi
	fi
	bad=$(sed -n 's/^VMTEST-KLOG bad=\([0-9]*\).*/\1/p' "$section" | tail -n1)
	if [ -n "$bad" ] && [ "$bad" -gt 0 ]; then
		fail "$label: kernel-log-clean" "$bad bad lines"
		grep '^VMTEST-KLOG| ' "$section" | sed 's/^VMTEST-KLOG| /  klog: /' || true
	fi
}

# Splits the combined guest log $2 of kernel $1 by group and counts each
# group of $3 (default: the guest groups).
count_guest_results() {
	local series=$1 log=$2 glist=${3:-$GUEST_GROUP_LIST} dir g

	dir=$(mktemp -d)
	if [ -s "$log" ]; then
		tr -d '\r' <"$log" | awk -v dir="$dir" '
			/^=== / { out = $2 == "GROUP" ? dir "/" $3 : ""; next }
			out { print > out }'
	fi
	for g in $glist; do
		if [ -s "$dir/$g" ]; then
			count_guest_group "$series/$g" "$dir/$g"
		else
			fail "$series/$g: vm-finished" "no log"
		fi
	done
	rm -rf "$dir"
}

# The value of BENCH line $2 in log $1, or "-".
bench_value() {
	local v

	v=$(tr -d '\r' <"$1" 2>/dev/null | sed -n "s/^BENCH $2 \([0-9.]*\).*/\1/p" | tail -n1)
	echo "${v:--}"
}

# Prints the guest driver's throughput against the in-tree driver's.
report_guest_bench() {
	local series=$1 ours=$2 ref=$3 dir a b

	for dir in guest_to_host host_to_guest; do
		a=$(bench_value "$ours" "${dir}_MBps")
		b=$(bench_value "$ref" "${dir}_MBps")
		if [ "$a" != - ] && [ "$b" != - ]; then
			echo "BENCH $series ${dir}_MBps project $a in-tree $b ratio $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
		else
			echo "BENCH $series ${dir}_MBps project $a in-tree $b"
		fi
	done
}

# Runs the guest-side tests of kernel $1 with driver $2 (intree or a path).
run_guest_tests() {
	local series=$1 driver=$2 log=$LOGDIR/guest-$1.log g rc=0 t
	local gargs=()

	ensure_guest_prog || return 0
	for g in $GUEST_GROUP_LIST; do
		gargs+=(-g "$g")
	done
	t=$(date +%s)
	echo "running the guest tests (${GUEST_GROUP_LIST}) in $series VMs, driver ${driver##*/}"
	"$GUEST_RUNNER" -k "$series" -d "$driver" -b "$guest_prog" -l "$log" \
		-T "$GUEST_VM_TIMEOUT" "${gargs[@]}" 2>&1 | sed 's/^/  /' || rc=$?
	echo "  guest_vmtest.sh exit status $rc; log $log ($(elapsed_since "$t")s)"
	count_guest_results "$series" "$log"
	if [ "$driver" != intree ]; then
		# The same benchmark with the in-tree driver, for the ratio.
		rc=0
		"$GUEST_RUNNER" -k "$series" -d intree -b "$guest_prog" \
			-l "$LOGDIR/guest-bench-intree-$series.log" \
			-T "$GUEST_VM_TIMEOUT" -g $GUEST_BENCH_GROUP 2>&1 | sed 's/^/  /' || rc=$?
		report_guest_bench "$series" "$log" "$LOGDIR/guest-bench-intree-$series.log"
	fi
}

# The module's tests run on 4 CPUs with the newest kernel (the stress test
# wants real concurrency in the host) and on 2 with the older one.
vm_cpus() {
	case $1 in
	6.12*) echo 4 ;;
	*) echo 2 ;;
	esac
}

# The debug kernel's run fuzzes for longer: 100000 ring actions in rounds
# of 500, 20000 ioctls; it gets the time for it.
vm_fuzz_options() {
	case $1 in
	*-debug)
		echo "-T $((VM_TIMEOUT * 3)) -e VSERIAL_FUZZ_ITERS=100000"
		echo "-e VSERIAL_FUZZ_ROUND=500 -e VSERIAL_FUZZ_IOCTLS=20000"
		;;
	*)
		echo "-T $VM_TIMEOUT"
		;;
	esac
}

run_vm_tests() {
	local series=$1 vmlog=$LOGDIR/$1.log rc=0

	# shellcheck disable=SC2086 # a list of paths
	set -- $testprogs
	rm -f "$vmlog"
	echo "running ${*##*/} in a $series VM"
	# shellcheck disable=SC2046 # options, split on purpose
	"$VMTEST" -k "$series" -m "$BUILD/$series/vhost_serial.ko" -l "$vmlog" \
		-c "$(vm_cpus "$series")" $(vm_fuzz_options "$series") "$@" 2>&1 |
		sed 's/^/  /' || rc=$?
	echo "  vmtest.sh exit status $rc; log $vmlog"
	count_vm_results "$series" "$vmlog"
}

report_kernel() {
	local series=$1 secs=$2 s

	echo "$series: $k_pass passed, $k_fail failed, $k_skip skipped"
	for s in "${k_skipped[@]}"; do
		echo "  skipped $s"
	done
	for s in "${k_failed[@]}"; do
		echo "  FAILED $s"
	done
	echo "$series: wall time ${secs}s"
}

test_kernel() {
	local series=$1 start t

	start=$(date +%s)
	reset_kernel_counts
	echo "=== $series"

	t=$(date +%s)
	if run_logged "$LOGDIR/build-$series.log" make -C "$TOP" KERNEL="$series"; then
		echo "module built for $series ($(elapsed_since "$t")s)"
		if ensure_selftests && [ -n "$testprogs" ]; then
			t=$(date +%s)
			run_vm_tests "$series"
			echo "VM tests on $series: $(elapsed_since "$t")s"
		elif [ -z "$testprogs" ]; then
			echo "no test programs: VM tests of $series not run"
		fi
		if [ -f "$BUILD/$series/virtio_console.ko" ]; then
			run_guest_tests "$series" "$BUILD/$series/virtio_console.ko"
		else
			echo "no $BUILD/$series/virtio_console.ko: guest tests of $series not run"
		fi
	else
		fail "$series: build"
	fi

	t=$(date +%s)
	if run_logged "$LOGDIR/sparse-$series.log" make -C "$TOP" sparse KERNEL="$series"; then
		pass
	else
		fail "$series: sparse"
	fi
	echo "sparse on $series: $(elapsed_since "$t")s"

	report_kernel "$series" "$(elapsed_since "$start")"
}

test_checkpatch() {
	reset_kernel_counts
	echo "=== checkpatch"
	if run_logged "$LOGDIR/checkpatch.log" make -C "$TOP" checkpatch; then
		pass
		echo "checkpatch: passed"
	else
		fail "checkpatch"
		echo "checkpatch: FAILED"
	fi
}

# make check-packaging: DKMS, make install booted, uninstall, documentation.
test_packaging() {
	local line log=$LOGDIR/packaging.log t

	[ -n "$1" ] || return 0
	reset_kernel_counts
	echo "=== packaging"
	t=$(date +%s)
	# shellcheck disable=SC2086 # one argument per series
	"$TOP/scripts/check-packaging.sh" $1 >"$log" 2>&1
	while IFS= read -r line; do
		case $line in
		"ok "* | "not ok "*) count_result packaging "${line/ok /ok 0 }" ;;
		esac
	done <"$log"
	grep -E '^(not ok|  \|)|^packaging: ' "$log" | sed 's/^/  /' || true
	grep -q '^packaging: ' "$log" || fail "packaging: finished" "see $log"
	echo "packaging: ${k_pass} passed, ${k_fail} failed ($(elapsed_since "$t")s)"
}

# The Debian series among kernels $1 (the debug kernel has no package).
packaging_series() {
	local s out=""

	for s in $1; do
		case $s in *-*) ;; *) out="$out $s" ;; esac
	done
	echo "${out# }"
}

# Prints the patched QEMU's path, building it into the cache if needed.
e2e_qemu() {
	local out=$LOGDIR/qemu-build.log

	if ! "$TOP/scripts/qemu.sh" path >"$out.path" 2>"$out"; then
		echo "  scripts/qemu.sh failed; end of $out:" >&2
		tail -n $TAIL_LINES "$out" | sed 's/^/  | /' >&2
		return 1
	fi
	tail -n1 "$out.path"
}

# The L2 tests of one L1 run: guest groups $3 with host (L1) series $1 and
# QEMU $2.
run_e2e_host() {
	local host=$1 qemu=$2 glist=$3 log=$LOGDIR/e2e-$1.log label=e2e-$1
	local section g rc=0 t n
	local gargs=()

	for g in $glist; do
		gargs+=(-g "$g")
	done
	n=$(wc -w <<<"$glist")
	t=$(date +%s)
	echo "running the guest tests ($glist) nested: L1 $host with vhost_serial.ko, L2 $E2E_GUEST_SERIES with vhost=on"
	"$E2E_RUNNER" -k "$host" -m "$BUILD/$host/vhost_serial.ko" -l "$log" \
		-T $((E2E_L2_TIMEOUT * (n + 1))) \
		/usr/bin/env QEMU="$qemu" VSERIAL_CACHE="${VSERIAL_CACHE:-/var/cache/vhost-serial}" \
		VSERIAL_ATTACH="$VSERIAL_ATTACH" \
		"$E2E_SUITE" -k "$E2E_GUEST_SERIES" \
		-d "$BUILD/$E2E_GUEST_SERIES/virtio_console.ko" -b "$guest_prog" \
		-o vhost=on -m "$E2E_BULK_MIB" -T "$E2E_L2_TIMEOUT" "${gargs[@]}" \
		2>&1 | sed 's/^/  /' || rc=$?
	echo "  e2e_vmtest.sh exit status $rc; log $log ($(elapsed_since "$t")s)"
	tr -d '\r' <"$log" 2>/dev/null | grep '^guest_vmtest.sh: group ' | sed 's/^/  L1: /' || true
	if tr -d '\r' <"$log" 2>/dev/null | grep -q '^E2E-KLOG bad=0'; then
		pass
	else
		fail "$label: host-kernel-log-clean" "see $log"
		tr -d '\r' <"$log" 2>/dev/null |
			sed -n '/^E2E-KLOG bad=/,/^E2E-DONE$/p' |
			sed '1d;$d;s/^/  L1 klog: /' | head -n 20 || true
	fi
	section=$(mktemp)
	tr -d '\r' <"$log" 2>/dev/null |
		sed -n '/^E2E-GUEST-LOG-BEGIN$/,/^E2E-GUEST-LOG-END$/p' >"$section"
	count_guest_results "$label" "$section" "$glist"
	rm -f "$section"
}

# The end-to-end suite: every series as L1 (6.12 with all E2E groups, the
# others with E2E_OLD_HOST_GROUPS), L2 always 6.12 with the project's driver.
test_e2e() {
	local kernels=$1 start qemu host glist

	start=$(date +%s)
	reset_kernel_counts
	echo "=== e2e"
	# The L2 guest's driver; built here when the run's kernels left it
	# out (DEBUG_KERNEL=1 runs the debug series alone).
	if [ ! -f "$BUILD/$E2E_GUEST_SERIES/virtio_console.ko" ] &&
	   ! run_logged "$LOGDIR/build-$E2E_GUEST_SERIES.log" \
		make -C "$TOP" KERNEL="$E2E_GUEST_SERIES"; then
		fail "e2e: guest driver" "no $BUILD/$E2E_GUEST_SERIES/virtio_console.ko"
		report_kernel e2e "$(elapsed_since "$start")"
		return
	fi
	ensure_guest_prog || return 0
	echo "patched QEMU (scripts/qemu.sh; built once, then cached)"
	if ! qemu=$(e2e_qemu); then
		fail "e2e: qemu build"
		report_kernel e2e "$(elapsed_since "$start")"
		return
	fi
	echo "  $qemu ($(elapsed_since "$start")s)"
	for host in $kernels; do
		if [ ! -f "$BUILD/$host/vhost_serial.ko" ]; then
			fail "e2e-$host: module" "not built"
			continue
		fi
		# Every group with the guests' own kernel series as host (the
		# debug build of it too); one with an older host.
		case $host in
		"$E2E_GUEST_SERIES" | "$E2E_GUEST_SERIES"-*) glist=$E2E_GROUP_LIST ;;
		*) glist=$E2E_OLD_HOST_GROUPS ;;
		esac
		run_e2e_host "$host" "$qemu" "$glist"
	done
	report_kernel e2e "$(elapsed_since "$start")"
}

# make bench QUICK=1: one short run of every figure, so that none rots.
test_bench_smoke() {
	local start log=$LOGDIR/bench-smoke.log

	start=$(date +%s)
	reset_kernel_counts
	echo "=== bench (QUICK=1: every figure produced; values not judged)"
	if QUICK=1 "$TOP/scripts/bench.sh" >"$log" 2>&1; then
		pass
	else
		fail "bench: smoke" "$(grep -c 'was not produced' "$log" || true) figure(s) missing, see $log"
		grep -E 'was not produced|^bench: (the |  |cannot|no |line )' "$log" |
			sed 's/^/  /' || true
	fi
	grep -E '^BENCH ratio_' "$log" | sed 's/^/  /' || true
	report_kernel bench "$(elapsed_since "$start")"
}

# --guest-only: the guest-side tests of kernel $1 alone.
test_kernel_guest() {
	local series=$1 start driver=intree

	start=$(date +%s)
	reset_kernel_counts
	echo "=== $series (guest tests, driver $guest_only)"
	if [ "$guest_only" = project ]; then
		driver=$BUILD/$series/virtio_console.ko
		if ! run_logged "$LOGDIR/build-$series.log" make -C "$TOP" KERNEL="$series" ||
		   [ ! -f "$driver" ]; then
			fail "$series: build" "virtio_console.ko"
			report_kernel "$series" "$(elapsed_since "$start")"
			return
		fi
	fi
	run_guest_tests "$series" "$driver"
	report_kernel "$series" "$(elapsed_since "$start")"
}

main() {
	local kernels series start

	if [ "${1:-}" = --guest-only ]; then
		guest_only=${2:-}
		case $guest_only in
		intree | project) ;;
		*)
			echo "usage: $0 [--guest-only intree|project] [SERIES...]" >&2
			exit 2
			;;
		esac
		shift 2
	fi
	kernels=${*:-$DEFAULT_KERNELS}
	start=$(date +%s)
	mkdir -p "$LOGDIR"
	for series in $kernels; do
		if [ -n "$guest_only" ]; then
			test_kernel_guest "$series"
		else
			test_kernel "$series"
		fi
	done
	if [ -z "$guest_only" ]; then
		test_checkpatch
		[ "${PACKAGING:-1}" = 0 ] || test_packaging "$(packaging_series "$kernels")"
		[ "${E2E:-1}" = 0 ] || test_e2e "$kernels"
		[ "${BENCH:-1}" = 0 ] || test_bench_smoke
	fi

	echo "=== total ($(elapsed_since "$start")s)"
	for series in "${all_failed[@]}"; do
		echo "FAILED $series"
	done
	echo "$total_skip skipped"
	echo "$total_pass passed, $total_fail failed"
	if [ $total_fail -gt 0 ] || [ $((total_pass + total_fail)) -eq 0 ]; then
		exit 1
	fi
}

main "$@"
