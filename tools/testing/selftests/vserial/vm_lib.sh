# shellcheck shell=bash disable=SC2154
# SPDX-License-Identifier: GPL-2.0
#
# Helpers shared by the VM runners (vmtest.sh, guest_vmtest.sh,
# e2e_vmtest.sh); sourced, not run.  They read $kdir, the directory of the
# cached kernel (scripts/setup.sh).

# The file of a module of the cached kernel, compressed or not.
kernel_module_file() {
	local name=$1 ext f

	for ext in "" .xz .zst .gz; do
		f=$(find "$kdir/modules/kernel" -name "$name.ko$ext" -print -quit)
		if [ -n "$f" ]; then
			echo "$f"
			return 0
		fi
	done
	return 1
}

# Copies a module file to $2, uncompressed: busybox insmod wants plain ELF.
copy_kernel_module() {
	local file=$1 dest=$2

	case $file in
	*.xz) xz -dc "$file" >"$dest" ;;
	*.zst) zstd -qdc "$file" >"$dest" ;;
	*.gz) gzip -dc "$file" >"$dest" ;;
	*) cp "$file" "$dest" ;;
	esac
}
