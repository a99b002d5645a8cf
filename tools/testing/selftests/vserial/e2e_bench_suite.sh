#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Scenario of make bench's nested figures, run by e2e_vmtest.sh inside the
# host VM (L1).  The same L2 guest (Debian 6.12, the driver given) runs the
# benchmark group of vserial_guest over four channels, one L2 boot each:
#
#   vhost      virtio-serial-pci,vhost=on: the queues in L1's vhost_serial.ko
#   intree     the same device, with L2's in-tree driver instead of DRIVER
#   userspace  virtio-serial-pci: QEMU's own device (the same QEMU binary)
#   vsock      vhost-vsock-pci, AF_VSOCK stream (vserial_guest's vsock group)
#
#   e2e_bench_suite.sh -k SERIES -d DRIVER -b BINARY -m MIB
#
# QEMU (the patched build) comes from the environment.  Each channel's log
# is printed between "E2E-BENCH <channel> BEGIN" and "E2E-BENCH <channel>
# END"; the BENCH lines in it are the figures.  The exit status is non-zero
# when a channel's run failed.
set -uo pipefail

readonly SELFDIR=$(cd "$(dirname "$0")" && pwd)

if [ ! -c /dev/vhost-serial ] || [ ! -c /dev/vhost-vsock ]; then
	echo "e2e-bench: /dev/vhost-serial or /dev/vhost-vsock missing in L1"
	exit 1
fi
if [ -z "${QEMU:-}" ] || [ ! -x "$QEMU" ]; then
	echo "e2e-bench: QEMU (the patched build) is not set or not executable"
	exit 1
fi

status=0
run_channel() {
	local channel=$1 log=/tmp/e2e-bench-$1.log rc

	shift
	"$SELFDIR/guest_vmtest.sh" -l "$log" -T 1500 "$@"
	rc=$?
	[ $rc -eq 0 ] || status=1
	echo "E2E-BENCH $channel BEGIN rc=$rc"
	cat "$log" 2>/dev/null
	echo "E2E-BENCH $channel END"
}

run_channel vhost -g bench -o vhost=on "$@"
run_channel intree -g bench -o vhost=on "$@" -d intree
run_channel userspace -g bench "$@"
run_channel vsock -g vsock "$@"
exit $status
