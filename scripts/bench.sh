#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make bench [QUICK=1]: every figure of the project against its anchor, in
# one run on this machine.  Nothing here is a test: figures are printed,
# never compared with a threshold.
#
#   1. module   vserial_bench in a Debian 6.12 VM with vhost_serial.ko (this
#               process plays the guest): one port, guest buffers of 4 KiB,
#               64 KiB and 1 MiB, into/out of a pipe and a socket; memcpy of
#               the same VM as the anchor
#   2. e2e      nested (L1 6.12 with the module, L2 6.12 with the project's
#               driver), vserial_guest's benchmark group over (a) vhost=on,
#               (b) QEMU's userspace virtio-serial, (c) vhost-vsock; 1-byte
#               round trip; one pass over the data inside L2 as the limit
#   3. driver   the project's driver against the in-tree one, one-level VM,
#               QEMU's userspace device (Debian's QEMU); and nested, on
#               vhost=on (the e2e run boots L2 once more with the in-tree
#               driver: e2e_intree_*)
#   4. scale    1/8/64 ports, 1/8/32 devices; kernel memory per device
#   5. cpu      L1's busy CPU time per GiB moved, (a) and (b)
#   6. zerocopy guest output into a pipe by reference
#               (VHOST_SERIAL_BACKEND_F_ZEROCOPY) against the copy path,
#               spliced on to /dev/null and to a file (in the module's VM)
#
# Output: "BENCH <name> <median> <unit> min <min> max <max> runs <n>" per
# figure, "BENCH ratio_<what> <value> x" per comparison, a table, and
# bench-results/bench-<time>.{txt,png}.  Medians over 5 runs (QUICK=1: one
# short run each, for make check's smoke, which only checks that every
# figure was produced).
set -Eeuo pipefail
trap 'echo "bench: line $LINENO: a command failed (status $?)" >&2' ERR

TOP=$(cd "$(dirname "$0")/.." && pwd)
readonly TOP
readonly SERIES=6.12
readonly SELFTESTS=$TOP/tools/testing/selftests/vserial
readonly OUTDIR=$TOP/bench-results
readonly LOGDIR=$TOP/build/logs
readonly QUICK=${QUICK:-0}
readonly RUNS=${BENCH_RUNS:-5}
STAMP=$(date +%Y%m%d-%H%M%S)
readonly STAMP
readonly RESULT=$OUTDIR/bench-$STAMP.txt
# Figures each part must produce (the smoke checks them all).
readonly FIGURES="memcpy_MBps module_g2h_pipe_64k module_h2g_socket_64k
e2e_vhost_g2h_MBps e2e_userspace_g2h_MBps e2e_vsock_g2h_MBps e2e_intree_g2h_MBps
e2e_vhost_rtt_us e2e_userspace_rtt_us e2e_vsock_rtt_us e2e_l2_one_pass_MBps
drv_project_g2h_MBps drv_intree_g2h_MBps scale_ports_64_MBps
scale_devices_32_MBps mem_idle_1ports_KiB mem_busy_1port_KiB
e2e_vhost_cpu_g2h_s_per_GiB e2e_userspace_cpu_g2h_s_per_GiB zerocopy_g2h_null_MBps
zerocopy_g2h_file_MBps copy_g2h_null_MBps copy_g2h_file_MBps"

say() { echo "bench: $*" >&2; }
die() { echo "bench: $*" >&2; exit 2; }

# A VM run $1 failed: its runner's last words (log $2.out) go with the
# message, so that a CI log that only shows this script's output says why.
run_failed() {
	say "$1 failed: see $2"
	tail -n 8 "$2.out" 2>/dev/null | sed 's/^/bench:   /' >&2 || true
}

# BENCH lines of log $1, between "BEGIN" and "END" markers when given,
# renamed: NAME -> $2NAME (a prefix), or by the sed script $3.
bench_lines() {
	local log=$1 prefix=$2 rename=${3:-}

	tr -d '\r' <"$log" 2>/dev/null | grep '^BENCH ' |
		sed "s/^BENCH /BENCH $prefix/${rename:+;$rename}" || true
}

# The median of figure $1 in the results so far, or empty.
value() {
	awk -v n="$1" '$1 == "BENCH" && $2 == n { v = $3 } END { print v }' "$RESULT"
}

ratio() {
	local name=$1 a b

	a=$(value "$2")
	b=$(value "$3")
	if [ -n "$a" ] && [ -n "$b" ]; then
		awk -v n="$name" -v a="$a" -v b="$b" \
			'BEGIN { if (b > 0) printf "BENCH ratio_%s %.2f x\n", n, a / b }' |
			tee -a "$RESULT"
	fi
}

part_module() {
	local log=$LOGDIR/bench-module.log envs=(-e "VSERIAL_BENCH_RUNS=$RUNS")

	[ "$QUICK" = 1 ] && envs+=(-e VSERIAL_BENCH_QUICK=1)
	say "1, 4, 6: the module with a userspace guest, one VM ($SERIES)"
	"$SELFTESTS/vmtest.sh" -k $SERIES -m "$TOP/build/$SERIES/vhost_serial.ko" \
		-l "$log" -T 3000 "${envs[@]}" "$TOP/build/selftests/vserial_bench" \
		>"$log.out" 2>&1 || run_failed "the module run" "$log"
	bench_lines "$log" "" | tee -a "$RESULT"
}

# Figure 3: guest_vmtest.sh's bench group, project then in-tree driver.
part_driver() {
	local drv log mib=()

	[ "$QUICK" = 1 ] && mib=(-m 4)
	for drv in project intree; do
		log=$LOGDIR/bench-driver-$drv.log
		say "3: guest driver $drv, one VM, QEMU's userspace device"
		"$SELFTESTS/guest_vmtest.sh" -k $SERIES -g bench -l "$log" \
			-d "$([ $drv = project ] && echo "$TOP/build/$SERIES/virtio_console.ko" || echo intree)" \
			-b "$TOP/build/selftests/vserial_guest" "${mib[@]}" \
			>"$log.out" 2>&1 || run_failed "the $drv driver run" "$log"
		bench_lines "$log" "" \
			"s/^BENCH guest_to_host_/BENCH drv_${drv}_g2h_/;s/^BENCH host_to_guest_/BENCH drv_${drv}_h2g_/;s/^BENCH round_trip_/BENCH drv_${drv}_rtt_/;s/^BENCH host_cpu_/BENCH drv_${drv}_cpu_/;s/^BENCH one_pass_/BENCH drv_${drv}_one_pass_/" |
			tee -a "$RESULT"
	done
}

# Figures 2, 3 (on vhost=on) and 5: one host VM, four L2 boots
# (e2e_bench_suite.sh).
part_e2e() {
	local log=$LOGDIR/bench-e2e.log qemu ch sect mib=16

	[ "$QUICK" = 1 ] && mib=1
	qemu=$("$TOP/scripts/qemu.sh" path 2>"$LOGDIR/bench-qemu.log") ||
		{ say "no patched QEMU: see $LOGDIR/bench-qemu.log"; return; }
	say "2, 5: nested, L1 $SERIES with the module; L2 over vhost, userspace, vsock"
	"$SELFTESTS/e2e_vmtest.sh" -k $SERIES -m "$TOP/build/$SERIES/vhost_serial.ko" \
		-l "$log" -T 5400 /usr/bin/env QEMU="$qemu" \
		VSERIAL_CACHE="${VSERIAL_CACHE:-/var/cache/vhost-serial}" \
		"$SELFTESTS/e2e_bench_suite.sh" -k $SERIES \
		-d "$TOP/build/$SERIES/virtio_console.ko" \
		-b "$TOP/build/selftests/vserial_guest" -m $mib \
		>"$log.out" 2>&1 || run_failed "the nested run" "$log"
	for ch in vhost intree userspace vsock; do
		sect=$(mktemp)
		tr -d '\r' <"$log" 2>/dev/null |
			sed -n "/^E2E-BENCH $ch BEGIN/,/^E2E-BENCH $ch END/p" >"$sect"
		bench_lines "$sect" "" \
			"s/^BENCH guest_to_host_/BENCH e2e_${ch}_g2h_/;s/^BENCH host_to_guest_/BENCH e2e_${ch}_h2g_/;s/^BENCH round_trip_/BENCH e2e_${ch}_rtt_/;s/^BENCH host_cpu_/BENCH e2e_${ch}_cpu_/;s/^BENCH one_pass_/BENCH e2e_l2_one_pass_/" |
			{ if [ $ch = vhost ]; then cat; else grep -v '^BENCH e2e_l2_one_pass_' || true; fi; } |
			tee -a "$RESULT"
		rm -f "$sect"
	done
}

part_ratios() {
	local d b s

	for d in g2h h2g; do
		for b in pipe socket; do
			for s in 4k 64k 1m; do
				ratio "module_${d}_${b}_${s}_vs_memcpy" "module_${d}_${b}_${s}" memcpy_MBps
			done
		done
		ratio "e2e_${d}_vhost_vs_userspace" "e2e_vhost_${d}_MBps" "e2e_userspace_${d}_MBps"
		ratio "e2e_${d}_vhost_vs_vsock" "e2e_vhost_${d}_MBps" "e2e_vsock_${d}_MBps"
		ratio "e2e_${d}_vhost_vs_one_pass" "e2e_vhost_${d}_MBps" e2e_l2_one_pass_MBps
		ratio "drv_${d}_project_vs_intree" "drv_project_${d}_MBps" "drv_intree_${d}_MBps"
		ratio "drv_${d}_project_vs_intree_vhost" "e2e_vhost_${d}_MBps" "e2e_intree_${d}_MBps"
		ratio "cpu_${d}_vhost_vs_userspace" "e2e_vhost_cpu_${d}_s_per_GiB" "e2e_userspace_cpu_${d}_s_per_GiB"
	done
	for d in null file; do
		ratio "zerocopy_${d}_vs_copy" "zerocopy_g2h_${d}_MBps" "copy_g2h_${d}_MBps"
		ratio "zerocopy_${d}_vs_memcpy" "zerocopy_g2h_${d}_MBps" memcpy_MBps
	done
	ratio rtt_vhost_vs_userspace e2e_vhost_rtt_us e2e_userspace_rtt_us
	ratio rtt_vhost_vs_vsock e2e_vhost_rtt_us e2e_vsock_rtt_us
	ratio scale_64_ports_vs_1 scale_ports_64_MBps scale_ports_1_MBps
	ratio scale_32_devices_vs_1 scale_devices_32_MBps scale_devices_1_MBps
	ratio mem_64_ports_vs_1 mem_idle_64ports_KiB mem_idle_1ports_KiB
}

table() {
	echo
	printf '%-44s %12s %-7s %12s %12s %5s\n' figure median unit min max runs
	awk '$1 == "BENCH" && $2 !~ /^ratio_/ {
		printf "%-44s %12s %-7s %12s %12s %5s\n", $2, $3, $4, $6, $8, $10 }' "$RESULT"
	echo
	awk '$1 == "BENCH" && $2 ~ /^ratio_/ { printf "%-44s %12s x\n", substr($2, 7), $3 }' "$RESULT"
}

plot() {
	local png=$OUTDIR/bench-$STAMP.png data

	if ! command -v gnuplot >/dev/null; then
		say "installing gnuplot-nox for the plot"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox \
			>/dev/null 2>&1 || { say "no gnuplot: no plot"; return; }
	fi
	data=$(mktemp)
	awk '$1 == "BENCH" && $4 == "MB/s" { print $2, $3, $6, $8 }' "$RESULT" >"$data"
	if [ -s "$data" ]; then
		gnuplot <<EOT || say "gnuplot failed: no plot"
set terminal pngcairo size 1400,800 noenhanced
set output "$png"
set title "vhost-serial throughput (median, min-max), $(date -u +%F) $([ "$QUICK" = 1 ] && echo QUICK)"
set style fill solid 0.6
set boxwidth 0.7
set xtics rotate by -60 font ",8"
set ylabel "MB/s"
set logscale y
set grid ytics
plot "$data" using 0:2:xtic(1) with boxes notitle, \
     "$data" using 0:2:3:4 with yerrorbars pt 0 lc rgb "black" notitle
EOT
		[ -f "$png" ] && say "plot: $png"
	fi
	rm -f "$data"
}

smoke_check() {
	local f missing=0

	for f in $FIGURES; do
		if [ -z "$(value "$f")" ]; then
			echo "bench: figure $f was not produced"
			missing=$((missing + 1))
		fi
	done
	echo "bench: $missing figure(s) missing"
	return $((missing > 0))
}

main() {
	local start=$SECONDS

	cd "$TOP"
	mkdir -p "$OUTDIR" "$LOGDIR"
	: >"$RESULT"
	make -s KERNEL=$SERIES modules >/dev/null || die "cannot build the modules"
	make -s selftests >/dev/null 2>&1 || die "cannot build the selftests"
	echo "# make bench $STAMP QUICK=$QUICK runs=$RUNS accel=tcg $(nproc) CPUs" >>"$RESULT"
	part_module
	part_driver
	part_e2e
	part_ratios
	table | tee -a "$RESULT"
	plot
	say "results: $RESULT ($((SECONDS - start)) s)"
	smoke_check
}

main "$@"
