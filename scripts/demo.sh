#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot Debian's 6.12 kernel in a VM with vhost_serial.ko and run
# vserial_demo there: one device, one named port, a socket as its host side,
# a file's worth of data each way with SHA-1 shown at both ends.
set -euo pipefail

readonly TOP=$(cd "$(dirname "$0")/.." && pwd)
readonly KERNEL=${KERNEL:-6.12}
readonly LOG=$TOP/build/logs/demo-$KERNEL.log

cd "$TOP"
make -s KERNEL="$KERNEL" modules >/dev/null
make -s selftests >/dev/null
mkdir -p "$(dirname "$LOG")"
echo "demo: booting Debian $KERNEL under QEMU (TCG) with vhost_serial.ko ..."
status=0
tools/testing/selftests/vserial/vmtest.sh -k "$KERNEL" \
	-m "build/$KERNEL/vhost_serial.ko" -l "$LOG" -T 600 \
	build/selftests/vserial_demo >/dev/null 2>&1 || status=$?
grep -a '^demo:' "$LOG" || true
if [ "$status" -ne 0 ]; then
	echo "demo: FAILED (exit $status), full log in $LOG" >&2
	exit 1
fi
echo "demo: done; VM log in $LOG"
