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
# log after a scan on kernels that have it).  The kernel's own general
# protection fault reads "general protection fault, ..."; a user process's
# ("traps: NAME[PID] general protection fault ip:...") is, like its
# segfaults, for the tests' verdicts to judge, not a kernel problem.
# shellcheck disable=SC2034 # used by the runners
readonly VM_BAD_KLOG='Oops|WARNING:|BUG:|KASAN|UBSAN|general protection fault,|Call Trace|unreferenced object'

# Kernel parameters that leave out what a test guest has no use for: key
# and certificate set-up, BPF type registration, the jitter entropy source,
# trace event maps, the PS/2 controller, the RTC driver, ACPI error records,
# IMA, and the crypto self-tests.  Under nested TCG they took 19-26 s of an
# L2 boot of 102-110 s (a 6.12 L2 reached a minimal init in 84-88 s without
# them, one L1, runs alternating); one level deep about 0.5 s of 2.5.  No
# test guest speaks IP over anything but AF_UNIX and AF_VSOCK, so IPv6 stays
# off too (inet6_init: 1.5 s of an L2 boot, 0.12 s one level deep).  An
# initcall a kernel does not have is ignored.  Arguments: more initcalls to
# leave out.
vm_lean_cmdline() {
	local calls=load_system_certificate_list,bpf_tcp_ca_kfunc_init
	local name

	calls+=,bpf_dummy_struct_ops_init,jent_mod_init,init_encrypted
	calls+=,crypto_kdf108_init,trace_eval_init,i8042_init,cmos_init
	calls+=,bert_init,init_ima
	for name in "$@"; do
		calls+=",$name"
	done
	echo "initcall_blacklist=$calls cryptomgr.notests=1 ipv6.disable=1"
}

# The kernel image the VMs boot: vmlinux, the uncompressed kernel that
# scripts/setup.sh extracts, where the cache has it, else the bzImage.
# QEMU starts vmlinux at its PVH entry point, which skips the real-mode
# loader and the kernel's decompressor: a 6.12 kernel printed its first line
# 1.0 s sooner one level deep and 4.7 s sooner nested (10.2 against 14.9 s
# after its QEMU started, in the same host VM).
vm_kernel_image() {
	if [ -f "$kdir/vmlinux" ]; then
		echo "$kdir/vmlinux"
	else
		echo "$kdir/vmlinuz"
	fi
}

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

# Copies busybox $1 into initramfs tree $2 with a link for each of its
# applets where "busybox --install -s" would put it.  Made here, not by the
# guest's /init: under nested TCG the guest's /init took 21 s from its start
# to loading the driver, 0.15 s in a one-level VM, most of it in forks and
# execs such as those of the install.
vm_install_busybox() {
	local busybox=$1 root=$2 applet

	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin}
	cp "$busybox" "$root/bin/busybox"
	"$busybox" --list-full | while read -r applet; do
		[ -e "$root/$applet" ] || [ -L "$root/$applet" ] ||
			ln -s /bin/busybox "$root/$applet"
	done
}

# Copies a module file to $2, uncompressed: busybox insmod wants plain ELF.
copy_kernel_module() {
	local file=$1 dest=$2

	case $file in
	*.xz) xz -dc "$file" >"$dest" ;;
	*.zst) zstd -qdc "$file" >"$dest" ;;
	*.gz) gzip -dc "$file" >"$dest" ;;
	*) vm_copy_stripped "$file" "$dest" ;;
	esac
}

# Copies ELF file $1 to $2 without its debugging sections (this project's
# modules and test programs carry them: 690 KiB of a module's 790 KiB).
# Every byte of an initramfs is unpacked by the emulated guest: under
# nested TCG 4.6 MiB took 6-11 s of an L2's boot (alongside other initcalls
# on its one vCPU).  Symbols stay, for /proc/kallsyms and backtraces.
vm_copy_stripped() {
	objcopy --strip-debug "$1" "$2" 2>/dev/null || cp "$1" "$2"
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
# emulator at boot, not of a test.  Seen with QEMU 10.0's multi-threaded TCG
# and several vCPUs, about one boot in ten with -smp 4 (2 in 27 one-level,
# 1 in 2 nested on a 6.1 host): QEMU itself dies of SIGSEGV while a vCPU
# delivers an interrupt, in the page walk, on a memory map that another
# thread has just replaced (memory_region_get_iommu() on a freed region,
# under address_space_translate_for_iotlb()).  Rarer, the guest kernel
# oopses on an int3 in code it is patching (text_poke_bp() at boot; seen
# once in a 2-vCPU one-level guest), which multi-threaded TCG does not make
# look atomic to the other vCPU; with panic=-1 and -no-reboot QEMU then
# exits 0.  No driver or module of this project has run by then (the
# guest's /init loads them).  A runner boots such a VM again, up to
# VM_BOOT_TRIES times in all.  grep reads the whole log (-c, not -q):
# stopping at the first match would end tr with SIGPIPE on a long log, and
# pipefail would call that a failed boot.
readonly VM_BOOT_TRIES=3

vm_boot_failed() {
	! tr -d '\r' 2>/dev/null <"$1" | grep -c "^${2:-VMTEST-BOOTED }" >/dev/null
}

# Whether a VM with serial log $1 and QEMU exit status $2 is worth booting
# again: it died before its /init (before a line matching $3, a basic
# regular expression, when given; else VMTEST-BOOTED), and QEMU either
# crashed (killed by SIGILL, SIGABRT, SIGBUS, SIGFPE or SIGSEGV, through
# timeout(1)) or ended normally because the guest did (a panic or triple
# fault under -no-reboot).  A QEMU that refused its command line (status 1) or a
# timeout (124, 137) would only do the same again.
vm_boot_retryable() {
	case $2 in
	0 | 132 | 134 | 135 | 136 | 139) vm_boot_failed "$1" "${3:-}" ;;
	*) return 1 ;;
	esac
}

# vm_boot LOG MARKER KEEP BOOT [ARG...]: boots a VM by running BOOT ARG...
# (which writes the serial log LOG and returns QEMU's status), and boots it
# again while vm_boot_retryable LOG STATUS MARKER says so, up to
# VM_BOOT_TRIES boots in all.  Before each new boot, KEEP LOG STATUS keeps
# what the failed one left and says why it boots again.  Returns QEMU's
# status of the last boot.
vm_boot() {
	local log=$1 marker=$2 keep=$3 tries=1 rc=0

	shift 3
	"$@" || rc=$?
	while [ $tries -lt $VM_BOOT_TRIES ] &&
	      vm_boot_retryable "$log" "$rc" "$marker"; do
		"$keep" "$log" "$rc"
		rc=0
		"$@" || rc=$?
		tries=$((tries + 1))
	done
	return $rc
}

# vm_keep_failed_boot LOG STATUS: the KEEP of vm_boot for a runner with one
# serial log: it moves to LOG.boot-failed.
# shellcheck disable=SC2317 # run by vm_boot
vm_keep_failed_boot() {
	echo "$PROG: the VM died before it was up (QEMU status $2); booting it once more"
	[ ! -f "$1" ] || mv "$1" "$1.boot-failed"
}

# The shell functions both runners' guest /init scripts share (busybox sh),
# printed to be written into them:
#   power_off, fatal MSG     sync and power off; VMTEST-FATAL and the last
#                            kernel messages first
#   mount_filesystems        /dev (and the console on it), /proc, /sys, /tmp;
#                            debugfs where the kernel has it
#   uptime_s                 seconds since boot, read without a fork (each
#                            fork and exec costs a nested guest 0.1-0.2 s)
#   count_bad_klog           kernel log lines matching $BAD_KLOG
#   relay_start, relay_stop  kernel messages of level warning (4) or worse,
#                            relayed one whole line at a time as
#                            "VMTEST-KMSG| TEXT" from the marker
#                            VMTEST-RELAY-START on; relay_stop writes
#                            VMTEST-RELAY-END and waits until the relay read
#                            it, so that every message before is out
# A record of /dev/kmsg is "PRIO,SEQ,USEC,FLAGS;TEXT"; continuation lines
# start with a space.
vm_init_lib() {
	cat <<'EOT'
power_off() {
	sync
	poweroff -f
	# Not reached unless poweroff failed: ask the kernel directly.
	echo o >/proc/sysrq-trigger
	sleep 30
}

fatal() {
	echo "VMTEST-FATAL $*"
	dmesg | tail -n 20 | sed 's/^/VMTEST-KLOG| /'
	power_off
}

mount_filesystems() {
	mount -t devtmpfs devtmpfs /dev || return 1
	# The kernel opened no console for us if the initramfs lacks the node.
	exec </dev/console >/dev/console 2>&1
	mount -t proc proc /proc &&
	mount -t sysfs sysfs /sys &&
	mount -t tmpfs tmpfs /tmp || return 1
	# Optional: kmemleak, the in-tree driver's per-port state.
	mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
	return 0
}

uptime_s() {
	local up rest

	read -r up rest </proc/uptime
	echo "$up"
}

count_bad_klog() {
	dmesg | grep -cE "$BAD_KLOG"
}

KMSG_RELAY='
	/^[0-9]+,/ {
		text = substr($0, index($0, ";") + 1)
		if (text == "VMTEST-RELAY-END")
			exit
		if (!started) {
			started = (text == "VMTEST-RELAY-START")
			next
		}
		split($0, h, ",")
		show = (h[1] % 8 <= 4)
		if (show) {
			print "VMTEST-KMSG| " text
			fflush()
		}
		next
	}
	show { print "VMTEST-KMSG| " $0; fflush() }'

relay_start() {
	dmesg -n 1
	awk "$KMSG_RELAY" /dev/kmsg &
	relay_pid=$!
	echo VMTEST-RELAY-START >/dev/kmsg
}

relay_stop() {
	echo VMTEST-RELAY-END >/dev/kmsg
	wait "$relay_pid"
}
EOT
}

# The CPU model of the test VMs under TCG: -cpu max where QEMU $1 offers it,
# without the fast-string flags (ERMS, FSRM and, where QEMU knows them, FZRM,
# FSRS, FSRC).  With them a guest kernel copies and clears with "rep movsb"
# and "rep stosb", which TCG runs one byte per iteration.  Measured: the
# project's guest driver moved 753 MB/s guest->host without them and 192
# with them (Debian's QEMU 7.2, 6.12 guest); under QEMU 10, 256 MiB from
# /dev/zero took 0.05 s without and 0.35 s with.  The nested suite's host
# VM is the exception (e2e_vmtest.sh).  Under KVM the real CPU decides.
vm_cpu_model() {
	local help flag model=max

	help=$("$1" -accel tcg -cpu help 2>/dev/null) || help=""
	if ! grep -qw max <<<"$help"; then
		echo qemu64
		return
	fi
	for flag in erms fsrm fzrm fsrs fsrc; do
		grep -qw "$flag" <<<"$help" && model+=",$flag=off"
	done
	echo "$model"
}
