#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build Debian's linux-source-6.12 as a debug kernel (KASAN, lockdep,
# kmemleak, UBSAN, atomic-sleep checks, fault injection) for
# "make check DEBUG_KERNEL=1", and cache it as one more kernel series,
# "6.12-debug", beside the ones scripts/setup.sh unpacks:
#
#   $VSERIAL_CACHE/kernels/6.12-debug/{env,vmlinuz,config,modules/,src/}
#
# env's KDIR is the build tree, so modules build against it as against
# Debian's headers.  The configuration is "make tinyconfig" plus
# scripts/debug-kernel.config; every option of that file must survive
# "make olddefconfig", or the build stops and says which did not.  The
# cache is keyed by the source package version and the hash of the
# fragment and of this script: a second run only checks it.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
readonly TOP
readonly CACHE=${VSERIAL_CACHE:-/var/cache/vhost-serial}
readonly BASE=$CACHE/kernels/6.12
readonly DIR=$CACHE/kernels/6.12-debug
readonly FRAGMENT=$TOP/scripts/debug-kernel.config
readonly BUILD_PKGS="build-essential bc bison flex libelf-dev libssl-dev
	xz-utils cpio kmod"
JOBS=${DEBUG_KERNEL_JOBS:-$(nproc)}
readonly JOBS

die() { echo "debug-kernel: $*" >&2; exit 1; }
log() { echo "debug-kernel: $*" >&2; }

missing_pkgs() {
	local p

	for p in "$@"; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null |
			grep -q '^ii' || echo "$p"
	done
}

install_build_deps() {
	local missing

	# shellcheck disable=SC2086
	missing=$(missing_pkgs $BUILD_PKGS)
	[ -z "$missing" ] && return
	log "installing $(echo $missing)"
	apt-get update -qq || die "apt-get update failed"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $missing >/dev/null ||
		die "apt-get install failed"
}

cache_key() {
	local version=$1

	{ echo "$version"; cat "$FRAGMENT" "$0"; } | md5sum | cut -c1-12
}

# Every CONFIG_X=v and "# CONFIG_X is not set" of the fragment, as made.
check_config() {
	local config=$1 line name bad=0

	while IFS= read -r line; do
		case $line in
		CONFIG_*=*) name=${line%%=*} ;;
		"# CONFIG_"*" is not set") name=${line#\# }; name=${name%% *} ;;
		*) continue ;;
		esac
		if ! grep -qxF "$line" "$config"; then
			log "$name: wanted '$line', got '$(grep -E "^(# )?$name[= ]" "$config" || echo unset)'"
			bad=1
		fi
	done <"$FRAGMENT"
	[ "$bad" = 0 ] || die "the configuration lost options of $FRAGMENT"
}

build() {
	local version=$1 key=$2 work=$CACHE/debug-build tree rel tarball
	local blog=$work/build.log

	tarball=/usr/src/linux-source-6.12.tar.xz
	[ -f "$tarball" ] || die "$tarball missing (run scripts/setup.sh)"
	tree=$work/linux-source-6.12
	rm -rf "$DIR"
	# A build that was stopped resumes where it was: the tree is kept
	# when it was configured for the same key.
	if [ -f "$work/configured" ] && grep -qx "$key" "$work/configured"; then
		log "resuming the build in $tree"
	else
		rm -rf "$work"
		mkdir -p "$work"
		log "unpacking $tarball"
		tar -xJf "$tarball" -C "$work" || die "cannot unpack $tarball"
		[ -d "$tree" ] || die "unexpected layout of $tarball"

		log "configuring (tinyconfig + $(basename "$FRAGMENT"))"
		{
			make -C "$tree" tinyconfig &&
			"$tree/scripts/kconfig/merge_config.sh" -m -O "$tree" \
				"$tree/.config" "$FRAGMENT" &&
			make -C "$tree" olddefconfig
		} >"$blog" 2>&1 ||
			{ tail -n 20 "$blog" >&2; die "configuration failed"; }
		check_config "$tree/.config"
		echo "$key" >"$work/configured"
	fi

	log "building with $JOBS jobs (log: $blog)"
	if ! make -C "$tree" -j "$JOBS" bzImage modules >>"$blog" 2>&1; then
		tail -n 30 "$blog" >&2
		die "build failed"
	fi
	rel=$(make -s -C "$tree" kernelrelease)
	make -C "$tree" INSTALL_MOD_PATH="$work/root" modules_install \
		>>"$blog" 2>&1 || die "modules_install failed"

	mkdir -p "$DIR"
	cp "$tree/arch/x86/boot/bzImage" "$DIR/vmlinuz"
	cp "$tree/.config" "$DIR/config"
	if [ -d "$work/root/lib/modules/$rel" ]; then
		mv "$work/root/lib/modules/$rel" "$DIR/modules"
	else
		mkdir -p "$DIR/modules"
	fi
	touch "$DIR/modules/modules.builtin"
	ln -s "$tree" "$DIR/src"
	cat >"$DIR/env" <<EOT
SERIES=6.12-debug
RELEASE=$rel
VERSION=$version
KEY=$key
KDIR=$tree
EOT
	log "$rel ready in $DIR"
}

main() {
	local version key

	[ "$(id -u)" = 0 ] || die "must run as root (apt-get, $CACHE)"
	[ -f "$BASE/env" ] || die "$BASE/env missing: run scripts/setup.sh first"
	version=$(sed -n 's/^VERSION=//p' "$BASE/env")
	key=$(cache_key "$version")
	if [ -f "$DIR/env" ] && grep -qx "KEY=$key" "$DIR/env"; then
		log "6.12-debug ($version) cached"
		return
	fi
	install_build_deps
	build "$version" "$key"
}

main "$@"
