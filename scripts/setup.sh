#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Install what building and testing vhost-serial needs, from Debian's archive
# only, and unpack the two test kernels into a cache outside the checkout.
#
# The kernel versions are resolved from what apt offers (newest available):
# Debian's 6.1 series through linux-image-amd64, and 6.12 through
# linux-image-6.12-amd64.  Image, headers and source must carry the same
# package version, otherwise we stop: a module built against one and loaded
# into another would only fail later and less clearly.
#
# Output: $VSERIAL_CACHE/kernels/<series>/{env,vmlinuz,vmlinux,modules/,src/}
set -euo pipefail

readonly CACHE=${VSERIAL_CACHE:-/var/cache/vhost-serial}
readonly SERIES=${*:-6.12 6.1}
readonly BASE_PKGS="build-essential bc busybox-static cpio kmod sparse perl udev
	qemu-system-x86 xz-utils zstd ca-certificates coreutils"
# Files of the kernel source tree that the out-of-tree build, checkpatch and
# the kselftests use; nothing else of the tarball is unpacked.
readonly SRC_FILES="drivers/vhost scripts/checkpatch.pl scripts/spelling.txt
	scripts/const_structs.checkpatch tools/testing/selftests/kselftest_harness.h
	tools/testing/selftests/kselftest.h tools/testing/selftests/lib.mk
	tools/virtio drivers/tty/hvc/hvc_console.h"

die() { echo "setup: $*" >&2; exit 1; }
log() { echo "setup: $*" >&2; }

apt_updated=0
apt_update_once() {
	[ "$apt_updated" = 1 ] && return
	apt-get update -qq || die "apt-get update failed"
	apt_updated=1
}

pkg_installed_version() {
	dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$1" 2>/dev/null |
		sed -n 's/^ii *//p'
}

apt_install() {
	local missing=() p
	for p in "$@"; do
		[ -n "$(pkg_installed_version "$p")" ] || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return
	apt_update_once
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
}

candidate() {
	apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p'
}

# Whether the archive offers version $2 of package $1.
has_version() {
	apt-cache madison "$1" 2>/dev/null |
		awk -F'|' -v v="$2" '{ gsub(/ /, "", $2) } $2 == v { f = 1 }
			END { exit !f }'
}

# The kernel release (uname -r) that a meta package points at.
resolve_release() {
	local meta=$1 dep
	dep=$(apt-cache depends "$meta" 2>/dev/null |
	      sed -n 's/^ *Depends: linux-image-\(.*\)$/\1/p' | head -n1)
	[ -n "$dep" ] || die "cannot resolve a kernel from $meta"
	echo "$dep"
}

# Whether ELF file $1 has a PVH entry point (Xen note type 0x12), which
# lets QEMU start it without the decompressor.
has_pvh_entry() {
	LC_ALL=C readelf -n "$1" 2>/dev/null |
		grep -Eq '^[[:space:]]+Xen[[:space:]]+0x[0-9a-f]+[[:space:]].*\(0x00000012\)'
}

# The kernel of bzImage $1, uncompressed, as $2: the test VMs boot it
# through PVH (vm_kernel_image in vm_lib.sh).  The payload is the first
# zstd (6.12) or xz (6.1) stream in the image that inflates to such an ELF;
# a kernel without one keeps booting from vmlinuz.
extract_vmlinux() {
	local img=$1 out=$2 spec off

	for spec in '\x28\xb5\x2f\xfd:zstd' '\xfd\x37\x7a\x58\x5a\x00:xz'; do
		# shellcheck disable=SC2013 # one offset per line, no blanks
		for off in $(LC_ALL=C grep -obUaP "${spec%%:*}" "$img" | cut -d: -f1); do
			# The stream is followed by the rest of the image, which
			# the decompressor reports as trailing garbage.
			tail -c +$((off + 1)) "$img" | "${spec#*:}" -qdc >"$out.tmp" 2>/dev/null
			if has_pvh_entry "$out.tmp"; then
				mv "$out.tmp" "$out"
				return 0
			fi
		done
	done
	rm -f "$out.tmp"
	return 1
}

# Gives the cache of series $1 in $2 its vmlinux, once.
cache_vmlinux() {
	[ -f "$2/vmlinux" ] || extract_vmlinux "$2/vmlinuz" "$2/vmlinux" ||
		log "$1: no PVH kernel in vmlinuz; VMs boot the bzImage"
}

setup_series() {
	local series=$1 meta rel srcver imgver hdrver dir tarball files_key

	case $series in
	6.1)  meta=linux-image-amd64 ;;
	6.12) meta=linux-image-6.12-amd64 ;;
	*)    die "unknown kernel series '$series' (6.1 or 6.12)" ;;
	esac
	dir=$CACHE/kernels/$series
	files_key=$(echo "$SRC_FILES" | tr -s ' \t\n' ' ' | md5sum | cut -c1-12)

	if [ -z "$(candidate "$meta")" ] || [ "$(candidate "$meta")" = "(none)" ]; then
		apt_update_once
	fi
	rel=$(resolve_release "$meta")
	case $rel in
	$series.*) ;;
	*) die "$meta resolves to $rel, not a $series kernel" ;;
	esac
	imgver=$(candidate "linux-image-$rel")
	hdrver=$(candidate "linux-headers-$rel")
	[ "$imgver" = "$hdrver" ] ||
		die "version mismatch for $series: image $imgver, headers $hdrver"
	# The source package can be ahead of the image: a security update is
	# published in parts, the signed image last.  Take the image's version.
	srcver=$(candidate "linux-source-$series")
	if [ "$srcver" != "$imgver" ]; then
		has_version "linux-source-$series" "$imgver" ||
			die "the archive has linux-source-$series $srcver but not $imgver, the image's version"
		log "$series: linux-source-$series $srcver is newer than the image; using $imgver"
	fi

	if [ -f "$dir/env" ] && grep -qx "VERSION=$imgver" "$dir/env" &&
	   grep -qx "FILES=$files_key" "$dir/env" &&
	   [ "$(pkg_installed_version "linux-headers-$rel")" = "$imgver" ]; then
		log "$series: $rel ($imgver) cached"
		cache_vmlinux "$series" "$dir"
		return
	fi

	apt_install "linux-headers-$rel"
	if [ "$(pkg_installed_version "linux-source-$series")" != "$imgver" ]; then
		apt_update_once
		log "installing linux-source-$series $imgver"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends --allow-downgrades \
			"linux-source-$series=$imgver" >/dev/null ||
			die "apt-get install linux-source-$series=$imgver failed"
	fi
	[ "$(pkg_installed_version "linux-headers-$rel")" = "$imgver" ] ||
		die "installed linux-headers-$rel is not $imgver"
	[ "$(pkg_installed_version "linux-source-$series")" = "$imgver" ] ||
		die "installed linux-source-$series is not $imgver"

	rm -rf "$dir"
	mkdir -p "$dir/src" "$dir/pkg"
	log "$series: unpacking linux-image-$rel $imgver"
	(cd "$dir/pkg" && apt-get download -qq -o APT::Sandbox::User=root "linux-image-$rel=$imgver") ||
		die "cannot download linux-image-$rel"
	dpkg-deb -x "$dir"/pkg/linux-image-*.deb "$dir/root"
	rm -rf "$dir/pkg"
	cp "$dir/root/boot/vmlinuz-$rel" "$dir/vmlinuz"
	cp "$dir/root/boot/config-$rel" "$dir/config"
	cache_vmlinux "$series" "$dir"
	mv "$dir/root/lib/modules/$rel" "$dir/modules"
	rm -rf "$dir/root"

	tarball=/usr/src/linux-source-$series.tar.xz
	[ -f "$tarball" ] || die "$tarball missing"
	log "$series: unpacking the parts of $tarball the build needs"
	# shellcheck disable=SC2086
	tar -xJf "$tarball" -C "$dir/src" --strip-components=1 --wildcards \
		$(for f in $SRC_FILES; do echo "linux-source-$series/$f"; done) ||
		die "cannot unpack $tarball"

	cat >"$dir/env" <<EOT
SERIES=$series
RELEASE=$rel
VERSION=$imgver
FILES=$files_key
EOT
	[ -d "/usr/src/linux-headers-$rel" ] || die "headers for $rel missing"
	echo "KDIR=/usr/src/linux-headers-$rel" >>"$dir/env"
	log "$series: $rel ($imgver) ready"
}

main() {
	[ "$(id -u)" = 0 ] || die "must run as root (apt-get)"
	# shellcheck disable=SC2086
	apt_install $BASE_PKGS
	mkdir -p "$CACHE"
	local s
	for s in $SERIES; do
		setup_series "$s"
	done
}

main
