#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Scenario of make profile's nested figures, run by e2e_vmtest.sh inside the
# host VM (L1): one L2 guest runs one benchmark test of vserial_guest while
# perf samples all of L1 (L2's QEMU, the module's worker, the host program)
# from the end of the test's first round to the end of its fourth.  L2's
# QEMU writes a perf map (-perfmap), and L2 boots nokaslr and prints its
# symbols, so that the code QEMU translated gets the guest's names.
#
#   e2e_profile_suite.sh GUEST_VMTEST_ARGS...
#
# The arguments go to guest_vmtest.sh (-k, -d, -b, -g bench, -o, -m, and
# -- -r bench.TEST); QEMU (the patched build) comes from the environment.
# Prints the test's figures and the report (scripts/perf-guest-report.py,
# with the command of each entry) between PROFILE-BEGIN and PROFILE-END;
# exits with guest_vmtest.sh's status.
set -uo pipefail

SELFDIR=$(cd "$(dirname "$0")" && pwd)
readonly SELFDIR
TOP=$(cd "$SELFDIR/../../../.." && pwd)
readonly TOP
readonly OUT=/tmp/e2e-profile
readonly TOPN=${PROFILE_TOP:-30}

die() {
	echo "e2e-profile: $*"
	exit 1
}

command -v perf >/dev/null || die "perf not found (package linux-perf)"
mkdir -p "$OUT"
VMTEST_QEMU_ARGS=-perfmap VMTEST_APPEND=nokaslr VMTEST_KSYMS=1 \
	"$SELFDIR/guest_vmtest.sh" -l "$OUT/guest.log" -T 1500 "$@" \
	>"$OUT/guest.out" 2>&1 &
gv=$!

# Waits until file $1 has a line matching $2; fails when guest_vmtest.sh
# ended first.  One tail follows the file (a poll loop would show in the
# profile); it ends with grep, or with guest_vmtest.sh.
wait_line() {
	tail -n +1 -F --pid=$gv "$1" 2>/dev/null | grep -aq -m1 -- "$2"
	[ "${PIPESTATUS[1]}" -eq 0 ]
}

qemu_pid=""
while [ -z "$qemu_pid" ]; do
	kill -0 $gv 2>/dev/null || die "guest_vmtest.sh ended early: $(tail -n 3 "$OUT/guest.out")"
	sleep 1
	qemu_pid=$(pgrep -f -- "^$QEMU .*-perfmap" | head -n1)
done
serial=$(tr '\0' '\n' <"/proc/$qemu_pid/cmdline" | sed -n 's/^file://p' | head -n1)
[ -n "$serial" ] || die "no serial log on the L2 QEMU's command line"

wait_line "$serial" "^VMTEST-BEGIN" || die "L2 ended before its tests began"
# perf takes seconds to start under TCG: it runs from here, and the report
# keeps the window of the rounds.
perf record -a -F 499 --clockid monotonic -o "$OUT/perf.data" \
	>"$OUT/perf.err" 2>&1 &
perf_pid=$!
wait_line "$serial" "round 1:" || die "the test ended before its first round"
t0=$(cut -d' ' -f1 /proc/uptime)
wait_line "$serial" "round 4:" || die "the test ended before its fourth round"
t1=$(cut -d' ' -f1 /proc/uptime)
# The symbols, before guest_vmtest.sh removes the log with its VM.
cp "$serial" "$OUT/l2.log"
kill -INT $perf_pid
wait $perf_pid
wait $gv
rc=$?
echo "e2e-profile: guest_vmtest.sh exit status $rc"
tr -d '\r' <"$OUT/l2.log" | grep -a '^BENCH \|round [0-9]:'

perf report -i "$OUT/perf.data" --stdio --no-children --sort comm,dso,sym \
	-q -t '|' --time "$t0,$t1" --percent-limit 0.001 \
	>"$OUT/perf.txt" 2>/dev/null
echo "PROFILE-BEGIN window ${t0}-${t1} s of L1's uptime"
/usr/bin/python3 "$TOP/scripts/perf-guest-report.py" "$OUT/l2.log" \
	"$OUT/perf.txt" "$TOPN"
echo "PROFILE-END"
rm -f "/tmp/perf-$qemu_pid.map"
# A failed test still leaves its profile, but the run says it failed.
exit $rc
