#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build QEMU with the qemu-patches/ series (virtio-serial-pci,vhost=on) and
# run QEMU's own virtio-serial tests against it.
#
#   scripts/qemu.sh [build]   build or reuse the cached QEMU (make qemu)
#   scripts/qemu.sh check     QEMU's virtio-serial qtests (make qemu-check)
#   scripts/qemu.sh path      print the cached qemu-system-x86_64, building
#                             it first if needed
#   scripts/qemu.sh header    refresh the series' copy of the uapi header
#
# The source is Debian's QEMU 10.0.x from bookworm-backports: a deb-src entry
# is added when missing, the upstream tarball is fetched from the URI that
# "apt-get source --print-uris" gives and checked against its SHA256 there.
# Debian's own patches are not applied, only ours.  Everything the build
# needs comes from Debian's archive (meson and pycotap from backports).
#
# Output, keyed by the upstream version and the hash of the patch series:
#   $VSERIAL_CACHE/qemu/<version>-<series>/
#     bin/qemu-system-x86_64   finds its firmware in ../share/qemu
#     share/qemu/              SeaBIOS and iPXE images from Debian's
#                              packages, option ROMs from the build
#     src/, build/             patched source and build tree (for the tests)
#     build.log, env           log of the last build; env marks it complete
# A second run with the same version and series only checks the cache.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
readonly TOP
readonly PATCH_DIR=$TOP/qemu-patches
readonly CACHE=${VSERIAL_CACHE:-/var/cache/vhost-serial}
readonly QCACHE=$CACHE/qemu
readonly SRC_PKG=qemu/bookworm-backports
readonly SRC_LIST=/etc/apt/sources.list.d/vhost-serial-backports-src.sources
# Only 10.0.x: the series is written against it.
readonly VERSION_RE='^10\.0\.'
readonly DEB_PKGS="build-essential gcc-multilib ninja-build pkg-config
	libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev python3-venv
	python3-pip bzip2 xz-utils git curl ca-certificates seabios ipxe-qemu"
readonly BPO_PKGS="meson python3-pycotap"
readonly CONFIGURE_FLAGS="--python=/usr/bin/python3
	--target-list=x86_64-softmmu --without-default-features --enable-tcg
	--enable-vhost-kernel --disable-docs --disable-install-blobs
	--disable-download"
JOBS=$(nproc)
readonly JOBS
# Lines of the build log shown when a step fails.
readonly TAIL_LINES=25

die() { echo "qemu: $*" >&2; exit 1; }
log() { echo "qemu: $*" >&2; }

apt_updated=0
apt_update_once() {
	[ "$apt_updated" = 1 ] && return
	apt-get update -qq || die "apt-get update failed"
	apt_updated=1
}

pkg_installed() {
	dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'
}

# apt_install [-t RELEASE] PKG...: install what is missing.
apt_install() {
	local release=() missing=() p
	if [ "$1" = -t ]; then
		release=(-t "$2")
		shift 2
	fi
	for p in "$@"; do
		pkg_installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return
	[ "$(id -u)" = 0 ] || die "must run as root to install ${missing[*]}"
	apt_update_once
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${release[@]}" "${missing[@]}" \
		>/dev/null || die "apt-get install ${missing[*]} failed"
}

# The source package's files: lines "'URI' NAME SIZE SHA256:HEX".
print_uris() {
	apt-get source --print-uris -qq "$SRC_PKG" 2>/dev/null | grep "^'" ||
		true
}

add_deb_src() {
	[ "$(id -u)" = 0 ] || die "must run as root to add $SRC_LIST"
	[ -f "$SRC_LIST" ] && die "$SRC_LIST exists but apt still has no $SRC_PKG source"
	log "adding deb-src for bookworm-backports ($SRC_LIST)"
	cat >"$SRC_LIST" <<EOT
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
	apt_updated=0
	apt_update_once
}

# Sets TARBALL_URI, TARBALL_NAME, TARBALL_SHA256 and VERSION (upstream).
resolve_source() {
	local uris line

	uris=$(print_uris)
	if ! grep -q '\.orig\.tar\.' <<<"$uris"; then
		add_deb_src
		uris=$(print_uris)
	fi
	line=$(grep '\.orig\.tar\.' <<<"$uris" | head -n1)
	[ -n "$line" ] || die "apt-get source --print-uris $SRC_PKG gives no upstream tarball"
	# shellcheck disable=SC2086
	set -- $line
	TARBALL_URI=${1//\'/}
	TARBALL_NAME=$2
	TARBALL_SHA256=${4#SHA256:}
	[ "${#TARBALL_SHA256}" = 64 ] || die "no SHA256 for $TARBALL_NAME in apt-get source --print-uris"
	VERSION=${TARBALL_NAME#qemu_}
	VERSION=${VERSION%.orig.tar.*}
	VERSION=${VERSION%+ds*}
	[[ $VERSION =~ $VERSION_RE ]] ||
		die "$SRC_PKG is QEMU $VERSION; qemu-patches/ is for 10.0.x"
}

# The series: every patch with a diff, in order (the cover letter has none).
series_patches() {
	local p
	for p in "$PATCH_DIR"/*.patch; do
		[ -e "$p" ] || continue
		grep -q '^diff --git ' "$p" && echo "$p"
	done
}

series_hash() {
	local patches
	patches=$(series_patches)
	[ -n "$patches" ] || die "no patches in $PATCH_DIR"
	# shellcheck disable=SC2086
	cat $patches | sha256sum | cut -c1-12
}

recipe_hash() {
	echo "$CONFIGURE_FLAGS" | tr -s ' \t\n' ' ' | sha256sum | cut -c1-12
}

# A complete build: env written last, matching recipe, binary that runs.
cache_ok() {
	local dir=$1
	[ -f "$dir/env" ] && grep -qx "RECIPE=$(recipe_hash)" "$dir/env" &&
		"$dir/bin/qemu-system-x86_64" --version >/dev/null 2>&1
}

fetch_tarball() {
	local dl=$QCACHE/dl file tmp

	mkdir -p "$dl"
	file=$dl/$TARBALL_NAME
	if [ -f "$file" ] &&
	   echo "$TARBALL_SHA256  $file" | sha256sum -c --status; then
		TARBALL=$file
		return
	fi
	log "downloading $TARBALL_URI"
	tmp=$file.part
	curl -fsSL --retry 3 -o "$tmp" "$TARBALL_URI" ||
		die "cannot download $TARBALL_URI"
	echo "$TARBALL_SHA256  $tmp" | sha256sum -c --status ||
		{ rm -f "$tmp"; die "$TARBALL_NAME: SHA256 does not match apt's"; }
	mv "$tmp" "$file"
	TARBALL=$file
}

# Run a build step with its output in the log; show the log's end on failure.
step() {
	local what=$1
	shift
	log "$what"
	echo "=== $what: $*" >>"$BUILD_LOG"
	if ! "$@" >>"$BUILD_LOG" 2>&1; then
		tail -n "$TAIL_LINES" "$BUILD_LOG" >&2
		die "$what failed (log: $BUILD_LOG)"
	fi
}

apply_series() {
	local p
	for p in $(series_patches); do
		echo "=== applying $(basename "$p")" >>"$BUILD_LOG"
		git -C "$DIR/src" apply --check "$p" >>"$BUILD_LOG" 2>&1 ||
			die "$(basename "$p") does not apply to QEMU $VERSION (log: $BUILD_LOG)"
		git -C "$DIR/src" apply "$p" >>"$BUILD_LOG" 2>&1 ||
			die "cannot apply $(basename "$p") (log: $BUILD_LOG)"
	done
}

# Debian's tarball drops the edk2 firmware images, which pc-bios/meson.build
# wants whenever bzip2 is installed and an x86 target is built.  Empty
# compressed placeholders satisfy it; the resulting empty images are neither
# installed nor used (x86 boots SeaBIOS).
edk2_placeholders() {
	local f
	for f in $(sed -n "/fds = \[/,/\]/p" "$DIR/src/pc-bios/meson.build" |
		   grep -o "'edk2-[^']*'" | tr -d "'"); do
		[ -e "$DIR/src/pc-bios/$f.bz2" ] ||
			bzip2 -c </dev/null >"$DIR/src/pc-bios/$f.bz2"
	done
}

install_firmware() {
	local share=$DIR/share/qemu f
	mkdir -p "$DIR/bin" "$share"
	cp "$DIR/build/qemu-system-x86_64" "$DIR/bin/"
	for f in /usr/share/seabios/*.bin /usr/lib/ipxe/qemu/*.rom; do
		[ -e "$f" ] && cp -L "$f" "$share/"
	done
	for f in "$DIR"/build/pc-bios/optionrom/*.bin; do
		cp "$f" "$share/"
	done
	[ -f "$share/bios-256k.bin" ] || die "no bios-256k.bin (seabios)"
	[ -f "$share/linuxboot_dma.bin" ] || die "no linuxboot_dma.bin (option ROMs)"
}

build() {
	local start=$SECONDS flags
	flags=$(echo "$CONFIGURE_FLAGS" | tr -s ' \t\n' ' ')

	rm -rf "$DIR"
	mkdir -p "$DIR/build"
	BUILD_LOG=$DIR/build.log
	: >"$BUILD_LOG"
	fetch_tarball
	step "unpacking $TARBALL_NAME" tar --no-same-owner -xJf "$TARBALL" \
		-C "$DIR" --exclude='qemu-*/roms'
	mv "$DIR"/qemu-"$VERSION"* "$DIR/src"
	log "applying $(series_patches | wc -l) patches from qemu-patches/"
	apply_series
	edk2_placeholders
	# shellcheck disable=SC2086
	(cd "$DIR/build" && step "configuring" ../src/configure $flags)
	step "building qemu-system-x86_64 (log: $BUILD_LOG)" \
		ninja -C "$DIR/build" -j "$JOBS" qemu-system-x86_64
	step "building option ROMs" make -C "$DIR/build/pc-bios/optionrom"
	install_firmware
	cat >"$DIR/env" <<EOT
VERSION=$VERSION
TARBALL=$TARBALL_NAME
SERIES=$SERIES
RECIPE=$(recipe_hash)
QEMU=$DIR/bin/qemu-system-x86_64
EOT
	log "built in $((SECONDS - start)) s"
}

# The series carries a copy of our uapi header; say so when it is stale.
check_uapi() {
	local ours=$TOP/include/uapi/linux/vhost_serial.h
	local copy=$DIR/src/linux-headers/linux/vhost_serial.h

	[ -f "$ours" ] && [ -f "$copy" ] || return 0
	sed 's/_UAPI_LINUX_VHOST_SERIAL_H/_LINUX_VHOST_SERIAL_H/' "$ours" |
		cmp -s - "$copy" ||
		log "warning: qemu-patches/ has an older include/uapi/linux/vhost_serial.h; run scripts/qemu.sh header"
}

# Rewrites the series' linux-headers patch from include/uapi: the commit
# message and the first lines stay, the diff is made anew.
update_header_patch() {
	local ours=$TOP/include/uapi/linux/vhost_serial.h
	local patch tmp n blob

	patch=$(echo "$PATCH_DIR"/*-linux-headers-add-vhost_serial.h.patch)
	[ -f "$patch" ] || die "no linux-headers patch in $PATCH_DIR"
	tmp=$(mktemp -d)
	sed 's/_UAPI_LINUX_VHOST_SERIAL_H/_LINUX_VHOST_SERIAL_H/' "$ours" >"$tmp/h"
	n=$(wc -l <"$tmp/h")
	blob=$(git hash-object "$tmp/h" | cut -c1-8)
	{
		sed '/^---$/q' "$patch"
		printf ' linux-headers/linux/vhost_serial.h | %d %s\n' "$n" \
			'+++++++++++++++++++++++++++++'
		printf ' 1 file changed, %d insertions(+)\n' "$n"
		echo ' create mode 100644 linux-headers/linux/vhost_serial.h'
		echo
		echo 'diff --git a/linux-headers/linux/vhost_serial.h b/linux-headers/linux/vhost_serial.h'
		echo 'new file mode 100644'
		echo "index 00000000..$blob"
		echo '--- /dev/null'
		echo '+++ b/linux-headers/linux/vhost_serial.h'
		echo "@@ -0,0 +1,$n @@"
		sed 's/^/+/' "$tmp/h"
		printf -- '-- \n2.39.5\n\n'
	} >"$tmp/p"
	mv "$tmp/p" "$patch"
	rm -rf "$tmp"
	echo "qemu: $patch now carries include/uapi/linux/vhost_serial.h"
}

# Sets DIR to the cache entry for this source and series, building it if
# needed.
ensure_qemu() {
	local lock

	SERIES=$(series_hash)
	resolve_source
	DIR=$QCACHE/$VERSION-$SERIES
	if cache_ok "$DIR"; then
		check_uapi
		return
	fi

	[ "$(id -u)" = 0 ] || die "must run as root (apt-get, $CACHE)"
	mkdir -p "$QCACHE"
	# One build at a time per cache; a concurrent run may have built it.
	lock=$QCACHE/.lock
	exec 9>"$lock"
	flock 9
	if ! cache_ok "$DIR"; then
		# shellcheck disable=SC2086
		apt_install $DEB_PKGS
		# shellcheck disable=SC2086
		apt_install -t bookworm-backports $BPO_PKGS
		build
	fi
	flock -u 9
	check_uapi
}

# QEMU's qtests that cover virtio-serial: the qos graph's virtio-serial
# nodes (virtio-serial-test.c and the generic virtio/PCI tests of the
# device) and, when the series has it, virtio-serial-vhost-test.
run_checks() {
	local qemu=$DIR/bin/qemu-system-x86_64 tests=() t paths p
	local pass=0 fail=0 skip=0 out

	if grep -q 'virtio-serial-vhost-test' "$DIR/build/build.ninja"; then
		tests+=(tests/qtest/virtio-serial-vhost-test)
	fi
	BUILD_LOG=$DIR/check.log
	: >"$BUILD_LOG"
	step "building the qtests" ninja -C "$DIR/build" -j "$JOBS" \
		tests/qtest/qos-test "${tests[@]}"

	export QTEST_QEMU_BINARY=$qemu
	paths=$("$DIR/build/tests/qtest/qos-test" -l |
		grep -E '^/.*virtio-serial' || true)
	[ -n "$paths" ] || die "qos-test lists no virtio-serial tests"
	for p in $paths; do
		if out=$("$DIR/build/tests/qtest/qos-test" -p "$p" 2>&1); then
			echo "ok $p"
			pass=$((pass + 1))
		else
			echo "not ok $p"
			echo "$out" | tail -n "$TAIL_LINES" | sed 's/^/# /'
			fail=$((fail + 1))
		fi
		echo "$out" >>"$BUILD_LOG"
	done
	for t in "${tests[@]}"; do
		if out=$("$DIR/build/$t" 2>&1); then
			echo "$out" | grep -E '^(ok|not ok) ' | sed "s|^|$(basename "$t"): |"
			skip=$((skip + $(echo "$out" | grep -c '^ok .*# SKIP' || true)))
			pass=$((pass + $(echo "$out" | grep -v '# SKIP' | grep -c '^ok ' || true)))
		else
			echo "not ok $(basename "$t")"
			echo "$out" | tail -n "$TAIL_LINES" | sed 's/^/# /'
			fail=$((fail + 1))
		fi
		echo "$out" >>"$BUILD_LOG"
	done
	echo "qemu-check: $pass passed, $skip skipped, $fail failed (log: $BUILD_LOG)"
	[ "$fail" = 0 ]
}

main() {
	case ${1:-build} in
	build)
		ensure_qemu
		echo "QEMU $VERSION with series $SERIES: $DIR/bin/qemu-system-x86_64"
		;;
	path)
		ensure_qemu
		echo "$DIR/bin/qemu-system-x86_64"
		;;
	check)
		ensure_qemu
		run_checks
		;;
	header)
		update_header_patch
		;;
	*)
		die "usage: $0 [build|path|check|header]"
		;;
	esac
}

main "$@"
