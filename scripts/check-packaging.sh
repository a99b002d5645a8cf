#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make check-packaging [KERNELS="6.12 6.1"]: the ways the project is
# installed, for each of Debian's kernels (set up by scripts/setup.sh):
#
#   - DKMS: "make dkms-src" into a staging root, then dkms add, build and
#     install there (--sourcetree/--dkmstree/--installtree) for the
#     kernel's release; both modules built with that kernel's vermagic;
#   - make install DESTDIR=<stage> KVER=<release> into a root that holds
#     the kernel's own modules the project's need (as an installed kernel
#     would), every file where it belongs, depmod's tables, then that root
#     booted in a VM (install_vmtest.sh): plain modprobe finds the modules
#     in updates/; make uninstall removes every file again;
#   - vserial-attach (tools/vserial) against a paused QEMU (Debian's): it
#     lists the chardevs, reports QEMU's refusals and bad input with its
#     exit status (the move itself is tested in the guests, hotplug
#     fixture, with and without vhost=on);
#   - the documentation: Documentation/virt/vhost-serial.rst through
#     rst2html --strict, man/vhost-serial.4 through groff -ww;
#   - with 6.12 among the series: the in-tree series (kernel-series.sh
#     check: checkpatch --strict per patch, applied to a pristine
#     linux-source-6.12, built with W=1).
#
# Prints "ok NAME" or "not ok NAME # reason" per check and a summary line
# "packaging: N passed, N failed"; exits 1 when a check failed.

set -uo pipefail

readonly TOP=$(cd "$(dirname "$0")/.." && pwd)
readonly CACHE=${VSERIAL_CACHE:-/var/cache/vhost-serial}
readonly WORK=$TOP/build/packaging
readonly LOGDIR=$TOP/build/logs
readonly SERIES=${*:-6.12 6.1}
readonly VERSION=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$TOP/dkms.conf")
readonly VMTEST=$TOP/tools/testing/selftests/vserial/install_vmtest.sh

passed=0 failed=0

ok() { echo "ok $1"; passed=$((passed + 1)); }
not_ok() { echo "not ok $1 # $2"; failed=$((failed + 1)); }

# Runs "$@" with its output in log $1; says how it ended in check $2.
run_check() {
	local name=$1 log=$2

	shift 2
	if "$@" >"$log" 2>&1; then
		ok "$name"
	else
		not_ok "$name" "exit $?, see $log"
		tail -n 15 "$log" | sed 's/^/  | /'
		return 1
	fi
}

ensure_tools() {
	local missing=() p

	for p in dkms python3-docutils groff-base kmod unifdef qemu-system-x86 \
		 bison flex libelf-dev libssl-dev bc; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	apt-get update -qq >/dev/null 2>&1
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
}

# Exit status of "$@" is $1 and its output has $2.
status_and_output() {
	local want=$1 text=$2 out rc=0

	shift 2
	out=$("$@" 2>&1) || rc=$?
	echo "$* -> $rc: $out"
	[ "$rc" = "$want" ] && grep -q -- "$text" <<<"$out"
}

check_attach_tool() {
	local tool=$TOP/build/tools/vserial-attach d=$WORK/attach log=$LOGDIR/attach-tool.log
	local q=$WORK/attach/qmp.sock pid i=0

	run_check attach-tool-build "$log.build" make -s -C "$TOP" tools || return
	rm -rf "$d"
	mkdir -p "$d"
	qemu-system-x86_64 -M q35 -accel tcg -nodefaults -display none -S \
		-qmp "unix:$q,server=on,wait=off" -device virtio-serial-pci,id=vs0 \
		-chardev "socket,id=p1,path=$d/p1.sock,server=on,wait=off" \
		-device virtserialport,bus=vs0.0,chardev=p1,name=org.test.p1 \
		</dev/null >"$log.qemu" 2>&1 &
	pid=$!
	while [ ! -S "$q" ] && [ $i -lt 100 ] && kill -0 $pid 2>/dev/null; do
		sleep 0.1
		i=$((i + 1))
	done
	run_check attach-tool-list "$log.list" status_and_output 0 "^p1 " "$tool" -q "$q" list
	run_check attach-tool-unknown-chardev "$log.unknown" \
		status_and_output 1 "does not exist" "$tool" -q "$q" attach nosuch null
	run_check attach-tool-bad-spec "$log.spec" \
		status_and_output 2 "want file:PATH" "$tool" -q "$q" attach p1 tcp:1
	run_check attach-tool-no-monitor "$log.nomon" \
		status_and_output 2 "No such file" "$tool" -q "$d/none.sock" list
	run_check attach-tool-usage "$log.usage" status_and_output 2 "usage:" "$tool" list
	kill $pid 2>/dev/null
	wait $pid 2>/dev/null
}

check_docs() {
	run_check docs-rst2html-strict "$LOGDIR/docs-rst.log" \
		rst2html --strict --halt=warning \
		"$TOP/Documentation/virt/vhost-serial.rst" "$WORK/vhost-serial.html"
	run_check docs-man-groff-ww "$LOGDIR/docs-man.log" \
		bash -c "groff -man -ww -z '$TOP/man/vhost-serial.4' 2>&1 | tee /dev/stderr | (! grep -q .)"
}

# The module files dkms built for release $2 in tree $1 have its vermagic.
dkms_modules_ok() {
	local tree=$1 rel=$2 m f magic

	for m in vhost_serial virtio_console; do
		f=$(find "$tree/vhost-serial/$VERSION/$rel" -name "$m.ko*" -print -quit)
		[ -n "$f" ] || { echo "no $m.ko for $rel"; return 1; }
		magic=$(modinfo -F vermagic "$f")
		[ "${magic%% *}" = "$rel" ] || { echo "$f: vermagic $magic"; return 1; }
		echo "$f: $magic"
	done
}

check_dkms() {
	local rel=$1 d=$WORK/dkms-$1 log=$LOGDIR/dkms-$1.log
	local opts=(--sourcetree "$WORK/dkms-$1/root/usr/src" --dkmstree "$WORK/dkms-$1/tree"
		    --installtree "$WORK/dkms-$1/installed")

	rm -rf "$d"
	mkdir -p "$d/tree" "$d/installed/$rel"
	run_check "dkms-src-$rel" "$log.src" make -s -C "$TOP" dkms-src DESTDIR="$d/root" || return
	run_check "dkms-add-$rel" "$log.add" dkms add "${opts[@]}" -m vhost-serial -v "$VERSION" || return
	run_check "dkms-build-$rel" "$log" dkms build "${opts[@]}" -m vhost-serial -v "$VERSION" -k "$rel" || return
	grep -E '^(Building|Cleaning|dkms-prepare)|Signing|Error' "$log" | sed 's/^/  dkms: /' | head -n 8
	run_check "dkms-vermagic-$rel" "$log.modules" dkms_modules_ok "$d/tree" "$rel"
	sed 's/^/  dkms: /' "$log.modules"
	run_check "dkms-install-$rel" "$log.install" dkms install "${opts[@]}" -m vhost-serial -v "$VERSION" -k "$rel" --force
	run_check "dkms-installed-$rel" "$log.installed" \
		test -n "$(find "$d/installed/$rel" -name 'vhost_serial.ko*' 2>/dev/null)"
}

# Puts into stage $2 the kernel's modules that ours (built in $4) need,
# and its own virtio_console (to be overridden), as an installed kernel of
# series $1, release $3, has them.
stage_kernel_modules() {
	local series=$1 stage=$2 rel=$3 built=$4 kdir=$CACHE/kernels/$1
	local dst=$stage/lib/modules/$3 todo seen=" " m f

	mkdir -p "$dst"
	cp "$kdir/modules/modules.builtin" "$kdir/modules/modules.builtin.modinfo" \
		"$kdir/modules/modules.order" "$dst/"
	todo="virtio_console $(modinfo -F depends "$built/vhost_serial.ko" \
		"$built/virtio_console.ko" | tr ',\n' '  ')"
	while [ -n "${todo// /}" ]; do
		read -r m todo <<<"$todo"
		case $seen in *" $m "*) continue ;; esac
		seen="$seen$m "
		f=$(find "$kdir/modules/kernel" -name "$m.ko*" -print -quit)
		[ -n "$f" ] || continue		# built in
		mkdir -p "$dst/$(dirname "${f#"$kdir/modules/"}")"
		cp "$f" "$dst/${f#"$kdir/modules/"}"
		todo="$todo $(modinfo -F depends "$f" | tr ',' ' ')"
	done
}

installed_files_ok() {
	local stage=$1 rel=$2 f

	for f in "lib/modules/$rel/updates/vhost_serial.ko" \
		 "lib/modules/$rel/updates/virtio_console.ko" \
		 usr/local/include/linux/vhost_serial.h \
		 etc/udev/rules.d/60-vhost-serial.rules \
		 usr/local/share/man/man4/vhost-serial.4 \
		 usr/local/bin/vserial-attach \
		 usr/local/share/doc/vhost-serial/examples/modules-load.d/vhost-serial.conf; do
		[ -f "$stage/$f" ] || { echo "missing $f"; return 1; }
	done
	grep -q "^updates/vhost_serial.ko: .*vhost.ko" "$stage/lib/modules/$rel/modules.dep" ||
		{ echo "modules.dep has no vhost_serial with its vhost dependency"; return 1; }
}

uninstalled_ok() {
	local stage=$1 left

	left=$(find "$stage" -type f \( -name 'vhost_serial*' -o -name 'vhost-serial*' \
		-o -name vserial-attach -o -path '*/updates/virtio_console.ko' \) -print)
	[ -z "$left" ] || { echo "left behind: $left"; return 1; }
}

check_install() {
	local series=$1 rel=$2 stage=$WORK/stage-$1 log=$LOGDIR/install-$1.log

	rm -rf "$stage"
	run_check "build-$series" "$log.build" make -C "$TOP" KERNEL="$series" || return
	stage_kernel_modules "$series" "$stage" "$rel" "$TOP/build/$series"
	run_check "install-$series" "$log" \
		make -C "$TOP" install DESTDIR="$stage" KVER="$rel" || return
	run_check "install-files-$series" "$log.files" installed_files_ok "$stage" "$rel"
	if "$VMTEST" -k "$series" -s "$stage" -l "$LOGDIR/install-vm-$series.log" \
		>"$log.vm" 2>&1; then
		ok "install-boot-modprobe-$series"
	else
		not_ok "install-boot-modprobe-$series" "see $LOGDIR/install-vm-$series.log"
	fi
	sed -n 's/^INSTALL-VM /  vm: /p' "$log.vm"
	run_check "uninstall-$series" "$log.uninstall" \
		make -C "$TOP" uninstall DESTDIR="$stage" KVER="$rel" || return
	run_check "uninstall-files-$series" "$log.left" uninstalled_ok "$stage"
}

main() {
	local s rel line

	mkdir -p "$WORK" "$LOGDIR"
	ensure_tools || not_ok tools "cannot install the packages this needs"
	check_docs
	check_attach_tool
	for s in $SERIES; do
		rel=$(sed -n 's/^RELEASE=//p' "$CACHE/kernels/$s/env" 2>/dev/null)
		if [ -z "$rel" ]; then
			not_ok "kernel-$s" "$CACHE/kernels/$s/env missing (scripts/setup.sh $s)"
			continue
		fi
		check_dkms "$rel"
		check_install "$s" "$rel"
	done
	case " $SERIES " in
	*" 6.12 "*)
		while IFS= read -r line; do
			echo "$line"
			case $line in
			"ok "*) passed=$((passed + 1)) ;;
			"not ok "*) failed=$((failed + 1)) ;;
			esac
		done < <("$TOP/scripts/kernel-series.sh" check 2>&1)
		;;
	esac
	echo "packaging: $passed passed, $failed failed"
	[ $failed -eq 0 ]
}

main "$@"
