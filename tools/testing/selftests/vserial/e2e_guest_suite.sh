#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Scenario of the end-to-end suite, run by e2e_vmtest.sh inside the host VM
# (L1): the guest-side tests of vserial_guest, unchanged, in L2 guests whose
# virtio-serial devices run with vhost=on, that is on L1's vhost_serial.ko.
# Every argument goes to guest_vmtest.sh; QEMU (the patched build) comes from
# the environment.  The combined log of guest_vmtest.sh is printed between
#
#   E2E-GUEST-LOG-BEGIN
#   ... (guest_vmtest.sh's log: "=== GROUP" sections) ...
#   E2E-GUEST-LOG-END
#
# so that the caller counts its TAP results from L1's serial log.  The exit
# status is guest_vmtest.sh's.
set -uo pipefail

readonly SELFDIR=$(cd "$(dirname "$0")" && pwd)
readonly LOG=/tmp/e2e-guest.log

if [ ! -c /dev/vhost-serial ]; then
	echo "e2e: /dev/vhost-serial is missing in L1"
	exit 1
fi
if [ -z "${QEMU:-}" ] || [ ! -x "$QEMU" ]; then
	echo "e2e: QEMU (the patched build) is not set or not executable"
	exit 1
fi
"$SELFDIR/guest_vmtest.sh" -l "$LOG" "$@"
rc=$?
echo "E2E-GUEST-LOG-BEGIN"
cat "$LOG" 2>/dev/null
echo "E2E-GUEST-LOG-END"
exit $rc
