#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Scenario of make bench's nested figures, run by e2e_vmtest.sh inside the
# host VM (L1).  The same L2 guest (Debian 6.12, the driver given) runs the
# benchmark tests of vserial_guest over four channels, in three L2 boots:
#
#   vhost      virtio-serial-pci,vhost=on: the queues in L1's vhost_serial.ko
#   intree     the same device, with L2's in-tree driver instead of DRIVER
#   userspace  virtio-serial-pci: QEMU's own device (the same QEMU binary)
#   vsock      vhost-vsock-pci, AF_VSOCK stream
#
# userspace and vsock share a boot (vserial_guest's group "vsock" has both
# devices and runs the bench and vsock fixtures one after the other): an L2
# boot costs a minute and a half under nested TCG.
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

# The lines of log $2 that belong to harness fixture $1: from each "RUN
# <fixture>.<test>" to the next RUN (the boot before the first goes to all).
fixture_lines() {
	awk -v want="$1" '
	/^#  RUN +[a-z_0-9]+\./ {
		name = $0
		sub(/^#  RUN +/, "", name)
		sub(/\..*/, "", name)
		cur = name
	}
	cur == "" || cur == want' "$2"
}

# Runs guest_vmtest.sh with the arguments after "--" and prints its log as
# the channel of each CHANNEL:FIXTURE before "--".
run_channels() {
	local log rc spec chans=()

	while [ "$1" != -- ]; do
		chans+=("$1")
		shift
	done
	shift
	log=/tmp/e2e-bench-${chans[0]%%:*}.log
	"$SELFDIR/guest_vmtest.sh" -l "$log" -T 1500 "$@"
	rc=$?
	[ $rc -eq 0 ] || status=1
	for spec in "${chans[@]}"; do
		echo "E2E-BENCH ${spec%%:*} BEGIN rc=$rc"
		fixture_lines "${spec#*:}" "$log" 2>/dev/null
		echo "E2E-BENCH ${spec%%:*} END"
	done
}

run_channels vhost:bench -- -g bench -o vhost=on "$@"
run_channels intree:bench -- -g bench -o vhost=on "$@" -d intree
run_channels userspace:bench vsock:vsock -- -g vsock "$@"
exit $status
