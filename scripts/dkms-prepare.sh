#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# DKMS pre-build step: puts the two private kernel headers the out-of-tree
# build includes (drivers/vhost/vhost.h, drivers/tty/hvc/hvc_console.h)
# into the build tree (the current directory), taken from the source of
# kernel release $1.  They are not part of any headers package, so the
# first of these that has them is used:
#
#   $VSERIAL_KSRC                          a kernel source tree, given
#   /lib/modules/$1/source                 a full source tree of that build
#   /usr/src/linux-source-X.Y              Debian's linux-source-X.Y, unpacked
#   $VSERIAL_CACHE/kernels/X.Y/src         what scripts/setup.sh unpacked
#   /usr/src/linux-source-X.Y.tar.xz       Debian's linux-source-X.Y package
#
# X.Y is the kernel series of $1 (6.12 for 6.12.117+deb12-amd64).  Both
# headers change little within a series; Kbuild probes the headers package
# for the API differences between series.

set -euo pipefail

readonly HDRS="drivers/vhost/vhost.h drivers/tty/hvc/hvc_console.h"

die() { echo "dkms-prepare: $*" >&2; exit 1; }

has_headers() {
	local f

	for f in $HDRS; do
		[ -f "$1/$f" ] || return 1
	done
}

copy_from_tree() {
	local f

	for f in $HDRS; do
		mkdir -p "$(dirname "$f")"
		cp "$1/$f" "$f"
	done
	echo "dkms-prepare: private headers from $1"
}

main() {
	local kver=${1:-} series dir tarball

	[ -n "$kver" ] || die "usage: $0 KERNEL-RELEASE"
	series=$(echo "$kver" | sed -n 's/^\([0-9]*\.[0-9]*\).*/\1/p')
	[ -n "$series" ] || die "cannot tell the series of '$kver'"

	for dir in ${VSERIAL_KSRC:-} "/lib/modules/$kver/source" \
		   "/usr/src/linux-source-$series" \
		   "${VSERIAL_CACHE:-/var/cache/vhost-serial}/kernels/$series/src"; do
		if [ -n "$dir" ] && has_headers "$dir"; then
			copy_from_tree "$dir"
			return
		fi
	done
	tarball=/usr/src/linux-source-$series.tar.xz
	[ -f "$tarball" ] ||
		die "no kernel source for $kver: install linux-source-$series or set VSERIAL_KSRC"
	# shellcheck disable=SC2046
	tar -xJf "$tarball" --strip-components=1 \
		$(for f in $HDRS; do echo "linux-source-$series/$f"; done) ||
		die "$tarball lacks $HDRS"
	echo "dkms-prepare: private headers from $tarball"
}

main "$@"
