# shellcheck shell=bash disable=SC2154
# SPDX-License-Identifier: GPL-2.0
#
# Helpers shared by the VM runners (vmtest.sh, guest_vmtest.sh,
# e2e_vmtest.sh); sourced, not run.  They read $kdir, the directory of the
# cached kernel (scripts/setup.sh); the module list helpers add to the
# array $modules and copy into the initramfs tree $root, and call the
# runner's die on a missing module.

# Kernel-log lines that fail a run: oopses, warnings (lockdep's included),
# KASAN and UBSAN reports, and kmemleak's (which the runners write into the
# log after a scan on kernels that have it).
# shellcheck disable=SC2034 # used by the runners
readonly VM_BAD_KLOG='Oops|WARNING:|BUG:|KASAN|UBSAN|general protection|Call Trace|unreferenced object'

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

is_builtin() {
	grep -q "/$1\.ko\$" "$kdir/modules/modules.builtin" 2>/dev/null
}

# Adds module file $1 (named $2) to the load list after the modules it
# depends on; copies it into the initramfs.
add_module_file() {
	local file=$1 name=$2 dep depfile

	case " ${modules[*]} " in
	*" $name "*) return 0 ;;
	esac
	for dep in $(modinfo -F depends "$file" | tr ',' ' '); do
		is_builtin "$dep" && continue
		depfile=$(kernel_module_file "$dep") ||
			die "module $dep (needed by $name) not found in $kdir/modules"
		add_module_file "$depfile" "$dep"
	done
	copy_kernel_module "$file" "$root/lib/modules/$name.ko"
	modules+=("$name")
}

add_kernel_module() {
	local name=$1 file

	is_builtin "$name" && return 0
	file=$(kernel_module_file "$name") || die "module $name not found in $kdir/modules"
	add_module_file "$file" "$name"
}

# Whether the VM of serial log $1 died before its /init ran: a crash of the
# emulated machine at boot (seen rarely under TCG with several vCPUs), not
# of a test.
vm_boot_failed() {
	! tr -d '\r' <"$1" 2>/dev/null | grep -q '^VMTEST-BOOTED '
}

# The CPU model of the test VMs under TCG: -cpu max where QEMU $1 offers it.
# QEMU 10 also advertises fast strings there (FSRM with ERMS, and FZRM, FSRS,
# FSRC), and its TCG runs the "rep movsb"/"rep stosb" a guest kernel then
# copies and clears with one byte per iteration: in a 6.12 guest, reading
# 256 MiB of /dev/zero took 7x as long, a pipe moved 2.2x less.  So with
# QEMU 10 and later those flags are off.  Debian's QEMU 7.2 showed no such
# cost (0.09 against 0.08 s), and with them off the nested suite's host VM,
# which it runs, was 20-30% slower (glibc in it picks other copy routines):
# there they stay.  Under KVM the real CPU decides and none of this applies.
vm_cpu_model() {
	local help ver flag model=max

	help=$("$1" -accel tcg -cpu help 2>/dev/null) || help=""
	if ! grep -qw max <<<"$help"; then
		echo qemu64
		return
	fi
	ver=$("$1" --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p')
	if [ "${ver:-0}" -ge 10 ]; then
		for flag in erms fsrm fzrm fsrs fsrc; do
			grep -qw "$flag" <<<"$help" && model+=",$flag=off"
		done
	fi
	echo "$model"
}
