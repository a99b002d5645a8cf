#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make profile [FIGURE=module_h2g_socket_64k]: where the time of one figure
# of vserial_bench goes, for the figures that miss their target.  The
# nested figures e2e_{vhost,userspace}_{g2h,h2g,rtt} (make bench's part 2)
# are profiled inside a host VM instead: see profile_nested below.
#
# The module's VM runs as make bench runs it, with the patched QEMU, but
# under perf on this machine: QEMU writes a perf map (-perfmap) that names
# the code it translated by guest address, and the guest boots with
# nokaslr and prints its /proc/kallsyms before the benchmark, so that those
# addresses get the guest's function names.  perf samples QEMU only while
# the benchmark runs.
#
# Output (build/profile/<figure>.txt): the share of QEMU's samples per
# guest function ("guest: name", translated guest code) and per function of
# QEMU or of this machine's kernel (what TCG itself costs: its helpers,
# softmmu lookups, the main loop), the top entries first.
set -Eeuo pipefail
trap 'echo "profile: line $LINENO: a command failed (status $?)" >&2' ERR

TOP=$(cd "$(dirname "$0")/.." && pwd)
readonly TOP
readonly SERIES=${KERNEL:-6.12}
readonly FIGURE=${1:-module_h2g_socket_64k}
readonly RUNS=${PROFILE_RUNS:-2}
readonly TOPN=${PROFILE_TOP:-25}
readonly SELFTESTS=$TOP/tools/testing/selftests/vserial
readonly OUT=$TOP/build/profile

say() { echo "profile: $*" >&2; }
die() { echo "profile: $*" >&2; exit 2; }

[[ $FIGURE =~ ^(module_(g2h|h2g)_(pipe|socket)_(4k|64k|1m)|memcpy_MBps|e2e_(vhost|userspace)_(g2h|h2g|rtt))$ ]] ||
	die "FIGURE must be memcpy_MBps, module_{g2h,h2g}_{pipe,socket}_{4k,64k,1m} or e2e_{vhost,userspace}_{g2h,h2g,rtt}, not '$FIGURE'"
command -v perf >/dev/null || die "perf not found (package linux-perf)"
[ -x /usr/bin/python3 ] || die "/usr/bin/python3 not found (package python3)"

qemu=$("$TOP/scripts/qemu.sh" path)
mkdir -p "$OUT"
readonly LOG=$OUT/$FIGURE.vm.log
readonly DATA=$OUT/$FIGURE.perf.data
readonly REPORT=$OUT/$FIGURE.txt

# A nested figure: a host VM (L1) with the module runs one L2 guest and the
# figure's benchmark test, as make bench does, and perf samples all of L1
# over three of the test's rounds (e2e_profile_suite.sh).  The report names
# L1's commands: L2's QEMU, the module's worker (vhost-<pid>), the host
# program (vserial_guest).
profile_nested() {
	local channel=${FIGURE#e2e_} test log=$OUT/$FIGURE.l1.log
	local devopts=()

	channel=${channel%_*}
	case $FIGURE in
	*_g2h) test=guest_to_host_throughput ;;
	*_h2g) test=host_to_guest_throughput ;;
	*) test=one_byte_round_trip ;;
	esac
	[ "$channel" = vhost ] && devopts=(-o vhost=on)
	say "$FIGURE: $test over $channel in a $SERIES host VM under perf (log: $log)"
	"$SELFTESTS/e2e_vmtest.sh" -k "$SERIES" -m "$TOP/build/$SERIES/vhost_serial.ko" \
		-l "$log" -T 3000 /usr/bin/env QEMU="$qemu" \
		VSERIAL_CACHE="${VSERIAL_CACHE:-/var/cache/vhost-serial}" \
		PROFILE_TOP="$TOPN" "$SELFTESTS/e2e_profile_suite.sh" -k "$SERIES" \
		-d "$TOP/build/$SERIES/virtio_console.ko" \
		-b "$TOP/build/selftests/vserial_guest" -g bench "${devopts[@]}" \
		-m "${PROFILE_MIB:-64}" -- -r "bench.$test" >"$OUT/$FIGURE.vmtest.out" 2>&1 ||
		say "the host VM run failed: see $log"
	tr -d '\r' <"$log" | grep -a '^BENCH ' >&2 || true
	tr -d '\r' <"$log" | sed -n '/^PROFILE-BEGIN/,/^PROFILE-END/p' | sed '1d;$d' >"$REPORT"
	[ -s "$REPORT" ] || die "no profile in $log"
	cat "$REPORT"
	say "report: $REPORT"
}

if [[ $FIGURE == e2e_* ]]; then
	profile_nested
	exit 0
fi

# The first program of the VM: the text symbols of the running kernel and
# of its modules, between markers.
cat >"$OUT/kallsyms" <<'EOF'
#!/bin/sh
echo KSYMS-BEGIN
grep -E '^[0-9a-f]+ [tT] ' /proc/kallsyms
echo KSYMS-END
EOF
chmod 755 "$OUT/kallsyms"

vm_pid=
perf_pid=
cleanup() {
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" 2>/dev/null || true
	fi
	if [ -n "$vm_pid" ]; then
		kill "$vm_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT

# $1: a line the VM prints; waits for it while the VM runs.
wait_log_line() {
	until grep -q "^$1" "$LOG" 2>/dev/null; do
		kill -0 "$vm_pid" 2>/dev/null ||
			die "the VM run ended before '$1': see $LOG and $OUT/$FIGURE.vmtest.out"
		sleep 1
	done
}

say "$FIGURE: $RUNS run(s) in a $SERIES VM under perf (log: $LOG)"
rm -f "$LOG" "$DATA"
VMTEST_QEMU_ARGS=-perfmap VMTEST_APPEND=nokaslr QEMU=$qemu \
	"$SELFTESTS/vmtest.sh" -k "$SERIES" -m "$TOP/build/$SERIES/vhost_serial.ko" \
	-l "$LOG" -T 3000 -e "VSERIAL_BENCH_ONLY=$FIGURE" \
	-e "VSERIAL_BENCH_RUNS=$RUNS" -e VSERIAL_BENCH_SCALE=8 "$OUT/kallsyms" \
	"$TOP/build/selftests/vserial_bench" >"$OUT/$FIGURE.vmtest.out" 2>&1 &
vm_pid=$!

wait_log_line "VMTEST-BEGIN vserial_bench"
# The QEMU whose console is our log (not the timeout(1) that started it).
qemu_pid=$(pgrep -f -- "^$qemu .*file:$LOG" | head -n1) ||
	die "no QEMU process writes $LOG"
perf record -F 999 -p "$qemu_pid" -o "$DATA" 2>"$OUT/$FIGURE.perf.err" &
perf_pid=$!
wait_log_line "VMTEST-END vserial_bench"
# perf may have ended already, with QEMU.
kill -INT "$perf_pid" 2>/dev/null || true
wait "$perf_pid" || true
perf_pid=
if ! wait "$vm_pid"; then
	vm_pid=
	tail -n 8 "$OUT/$FIGURE.vmtest.out" >&2
	die "the VM run failed: see $LOG"
fi
vm_pid=

# perf reads /tmp/perf-<pid>.map, QEMU's map, while it reports.
perf report -i "$DATA" --stdio --no-children --sort dso,sym -q -t '|' \
	--percent-limit 0.001 2>/dev/null >"$OUT/$FIGURE.perf.txt"
rm -f "/tmp/perf-$qemu_pid.map"

"$TOP/scripts/perf-guest-report.py" "$LOG" "$OUT/$FIGURE.perf.txt" "$TOPN" \
	>"$REPORT"
grep '^BENCH ' "$LOG" | tr -d '\r' >&2 || true
cat "$REPORT"
say "report: $REPORT"
