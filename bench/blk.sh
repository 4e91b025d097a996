#!/usr/bin/env bash
# bench/blk.sh: the virtio-blk data plane (bench/blk.c: the test driver
# plays the guest, no VM) next to fio and `qemu-img bench` on the same file,
# 4 KiB random I/O, in one run with the runners interleaved so that drift
# on the machine affects all alike.
#
# Workloads (DEPTH per queue, 2 queues; ours with 1 and with 2 IOThreads):
#   raw randread    a raw file under /var/tmp, cache = none (O_DIRECT)
#   raw randwrite   the same file
#   null randread   format = null: no I/O at all, the VMM's own cost
# Ours runs two ways. ours-tN: one driver thread plays the guest for both
# queues and each batch crosses to an IOThread and back (two cross-CPU
# wakeups when they sit on different CPUs). ours-cN (blk -C, raw and null
# randread only): colocated, one driver per IOThread running in it for the
# queues it serves, IOThreads pinned to CPUs 0 and 1: no thread hop, so
# c2 / c1 is how the device path scales with IOThreads when each is
# CPU-bound (c1: one IOThread serves both queues; c2: one each).
# The control for that ratio (null only): procs-1 is one such process with
# one queue and one IOThread on CPU 0, procs-2 two of them at once on CPUs
# 0 and 1, which share nothing but the machine: procs-2 / procs-1 is what
# two CPU-bound copies of the path can reach here at all.
# Peers: fio --ioengine=io_uring --direct=1 (null: --ioengine=null) with 2
# jobs at DEPTH each; `qemu-img bench -i io_uring -t none` (null: the
# null-co driver with read-zeroes) at depth 2 x DEPTH, as many requests as
# ours did in SECS. qemu-img bench is sequential only (offsets step by the
# buffer size) and runs QEMU's block layer without virtio.
#
# Reported per runner (median of ROUNDS): IOPS, p50/p99 latency (fio and
# ours; qemu-img has none), CPU per request. Ours: the VMM's threads
# (IOThreads, io_uring workers), without the driver playing the guest,
# whose CPU per request is shown apart; peers: the whole process (user +
# sys), which does both sides of the work. Ratios: ours (1 IOThread) over
# fio and over qemu-img, 2 IOThreads over 1, colocated 1 over the driver
# thread's 1, colocated 2 over colocated 1. A second table gives ours'
# evidence (CPU use of the VMM and of the driver, the device's kicks and
# interrupts per request, sleeps per request, preemptions per second), a
# third the issue's targets against the measured ratios.
#
# Then callgrind: instructions per request on our path, with the device's
# loop run on the driver's thread (blk -i; valgrind 3.19 deadlocks when a
# thread blocks in io_uring_enter while another must run): the device's
# share is everything inside loop_run_once, the driver's the rest; the
# slope between two request counts removes the setup.
#
#   bench/blk.sh        (environment: SECS=4 ROUNDS=3 DEPTH=16
#                        IMG=/var/tmp/vmm-bench-blk.img IMG_MB=1024
#                        CG_REQS="2000 6000")
#
# Needs fio, qemu-utils, valgrind and python3 (fio's JSON), and the
# benchmark built by ./build.sh bench (BLK=build/musl/bench/blk). Results:
# bench/out/blk.md, raw lines in bench/out/blk.txt.
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$BENCH_REPO"

SECS=${SECS:-4}
ROUNDS=${ROUNDS:-3}
DEPTH=${DEPTH:-16}
QUEUES=2
IMG=${IMG:-/var/tmp/vmm-bench-blk.img}
IMG_MB=${IMG_MB:-1024}
CG_REQS=${CG_REQS:-"2000 6000"}
BLK=${BLK:-build/musl/bench/blk}
NULL_SIZE=$((IMG_MB * 1024 * 1024))
O=$BENCH_OUT
RAW=$O/blk.txt

bench_need_pkgs fio qemu-utils valgrind python3
[ -x "$BLK" ] || bench_skip "$BLK is not built (run ./build.sh bench)"
# A copy: a rebuild during the run changes nothing.
[ "$BLK" -ef "$O/blk" ] || cp "$BLK" "$O/blk"
BLK=$O/blk

# A file with real blocks (zeroes written, not a sparse file or unwritten
# extents, whose reads never reach the disk).
if [ "$(stat -c %s "$IMG" 2>/dev/null || echo 0)" != "$NULL_SIZE" ]; then
	echo "writing $IMG ($IMG_MB MiB)" >&2
	dd if=/dev/zero of="$IMG" bs=1M count="$IMG_MB" oflag=direct status=none
fi

# cpu_of FILE: user+sys seconds that bash's `time` wrote to FILE.
cpu_of() { awk '{ print $1 + $2 }' "$1"; }

# ours WORKLOAD IOTHREADS [-C] ARGS...: appends "WORKLOAD ours-tN iops p50
# p99 cpu driver vmm% driver% kicks irqs sleeps preempt other" (ours-cN
# with -C; other: CPUs that other processes used meanwhile).
ours() {
	local w=$1 t=$2 r=ours-t$2 line c0 c1
	shift 2
	[ "$1" = -C ] && r=ours-c$t
	cpu_now c0
	line=$("$BLK" -q $QUEUES -t "$t" -d "$DEPTH" -s "$SECS" "$@")
	cpu_now c1
	echo "$line" | awk -v w="$w" -v r="$r" -v o="$(other_cpus "$c0" "$c1")" '{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		print w, r, v["iops"], v["p50_us"], v["p99_us"], v["vmm_cpu_us_per_req"],
		      v["driver_cpu_us_per_req"], v["vmm_cpu_pct"], v["driver_cpu_pct"],
		      v["kicks_per_req"], v["irqs_per_req"], v["sleeps_per_req"], v["preempt_per_s"], o }' >>"$RAW"
	echo "$line" | sed -n 's/.* iops=\([0-9]*\).*/\1/p'
}

# fio_run WORKLOAD ARGS...: appends "WORKLOAD fio iops p50 p99 cpu -".
fio_run() {
	local w=$1 t=$O/blk-time.txt
	shift
	{ TIMEFORMAT='%U %S'; time fio --name=blk --numjobs=$QUEUES --iodepth="$DEPTH" --bs=4k \
		--time_based --runtime="$SECS" --group_reporting --output-format=json "$@" \
		>"$O/blk-fio.json" 2>/dev/null; } 2>"$t"
	python3 - "$O/blk-fio.json" "$(cpu_of "$t")" "$w" >>"$RAW" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
r = j["read"] if j["read"]["total_ios"] else j["write"]
p = r["clat_ns"]["percentile"]
print(sys.argv[3], "fio", round(r["iops"]), p["50.000000"] / 1000, p["99.000000"] / 1000,
      round(float(sys.argv[2]) * 1e6 / max(r["total_ios"], 1), 3), "-")
EOF
}

# qemu_img WORKLOAD COUNT ARGS...: appends "WORKLOAD qemu-img iops - - cpu -".
qemu_img() {
	local w=$1 n=$2 t=$O/blk-time.txt s
	shift 2
	s=$( { TIMEFORMAT='%U %S'; time qemu-img bench -c "$n" -d $((QUEUES * DEPTH)) -s 4096 \
		"$@" 2>&1; } 2>"$t" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
	awk -v w="$w" -v n="$n" -v s="$s" -v c="$(cpu_of "$t")" \
		'BEGIN { printf "%s qemu-img %.0f - - %.3f -\n", w, n / s, c * 1e6 / n }' >>"$RAW"
}

# round: every workload, runners interleaved.
round() {
	local n
	n=$(ours raw-randread 1 -f "$IMG" -c)
	fio_run raw-randread --ioengine=io_uring --direct=1 --filename="$IMG" --rw=randread
	qemu_img raw-randread $((n * SECS)) -f raw -i io_uring -t none "$IMG"
	ours raw-randread 2 -f "$IMG" -c >/dev/null
	ours raw-randread 1 -C -f "$IMG" -c >/dev/null
	ours raw-randread 2 -C -f "$IMG" -c >/dev/null
	n=$(ours raw-randwrite 1 -f "$IMG" -c -w)
	fio_run raw-randwrite --ioengine=io_uring --direct=1 --filename="$IMG" --rw=randwrite
	qemu_img raw-randwrite $((n * SECS)) -w -f raw -i io_uring -t none "$IMG"
	ours raw-randwrite 2 -f "$IMG" -c -w >/dev/null
	n=$(ours null-randread 1 -n "$NULL_SIZE")
	fio_run null-randread --ioengine=null --size="$NULL_SIZE" --rw=randread
	qemu_img null-randread $((n * SECS)) --image-opts \
		"driver=null-co,size=$NULL_SIZE,read-zeroes=on"
	ours null-randread 2 -n "$NULL_SIZE" >/dev/null
	ours null-randread 1 -C -n "$NULL_SIZE" >/dev/null
	ours null-randread 2 -C -n "$NULL_SIZE" >/dev/null
	procs null-randread 1 -n "$NULL_SIZE"
	procs null-randread 2 -n "$NULL_SIZE"
}

# procs WORKLOAD N ARGS...: N colocated single-queue processes at once, on
# CPUs 0..N-1; appends "WORKLOAD procs-N" with the IOPS summed, the CPU
# per request over all, the CPU percentages and preemptions summed.
procs() {
	local w=$1 n=$2 i pids=() c0 c1
	shift 2
	cpu_now c0
	for ((i = 0; i < n; i++)); do
		"$BLK" -q 1 -t 1 -C -P "$i" -d "$DEPTH" -s "$SECS" "$@" >"$O/blk-proc$i.txt" &
		pids+=($!)
	done
	wait "${pids[@]}"
	cpu_now c1
	for ((i = 0; i < n; i++)); do cat "$O/blk-proc$i.txt"; done |
		awk -v w="$w" -v r="procs-$n" -v o="$(other_cpus "$c0" "$c1")" '{
			for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
			iops += v["iops"]; vmm += v["vmm_cpu_us_per_req"] * v["iops"]
			drv += v["driver_cpu_us_per_req"] * v["iops"]; vp += v["vmm_cpu_pct"]
			dp += v["driver_cpu_pct"]; pre += v["preempt_per_s"] }
		END { printf "%s %s %.0f - - %.3f %.3f %.1f %.1f - - - %.0f %s\n", w, r, iops,
			vmm / iops, drv / iops, vp, dp, pre, o }' >>"$RAW"
}

# The runners of WORKLOAD, in table order.
runners() {
	case $1 in
	raw-randread) echo ours-t1 ours-t2 ours-c1 ours-c2 fio qemu-img ;;
	null-randread) echo ours-t1 ours-t2 ours-c1 ours-c2 procs-1 procs-2 fio qemu-img ;;
	*) echo ours-t1 ours-t2 fio qemu-img ;;
	esac
}

# cpu_now VAR: sets VAR to "BUSY STEAL CHILDREN WALL" seconds: every
# CPU's busy and stolen time since boot (/proc/stat), the CPU time of this
# shell's finished children (everything the benchmark ran; `times` must run
# in this shell, a subshell has no children yet), the clock.
cpu_now() {
	times >"$O/blk-times.txt"
	printf -v "$1" '%s' "$(awk -v hz="$(getconf CLK_TCK)" -v wall="$(date +%s.%N)" \
		-v ch="$(sed -n 2p "$O/blk-times.txt")" '/^cpu / {
		split(ch, t, /[ms ]+/)
		printf "%.2f %.2f %.2f %s\n", ($2 + $3 + $4 + $7 + $8) / hz, $9 / hz,
			t[1] * 60 + t[2] + t[3] * 60 + t[4], wall }' /proc/stat)"
}

# other_cpus BEFORE AFTER: what ran besides the benchmark in between (cpu_now
# values), as CPUs in use on average: busy time minus ours over the wall
# time. Kernel work done for us outside our processes (disk interrupts)
# counts as other.
other_cpus() {
	awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
		printf "%.2f", ((y[1] - x[1]) - (y[3] - x[3])) / (y[4] - x[4]) }'
}

# other_load BEFORE AFTER: the same, and the time the hypervisor stole.
other_load() {
	awk -v a="$1" -v b="$2" -v o="$(other_cpus "$1" "$2")" 'BEGIN { split(a, x, " ")
		split(b, y, " "); printf "other processes %s CPUs, stolen %.2f CPUs", o,
			(y[2] - x[2]) / (y[4] - x[4]) }'
}

# Median of column COL (3..14) for WORKLOAD RUNNER.
med() {
	awk -v w="$1" -v r="$2" -v c="$3" '$1 == w && $2 == r { print $c }' "$RAW" |
		sort -g | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : "-" }'
}

# ratio WORKLOAD COL RUNNER_A RUNNER_B: the medians' ratio.
ratio() { bench_ratio "$(med "$1" "$3" "$2")" "$(med "$1" "$4" "$2")"; }

table() {
	local w r ir cr
	echo "| workload | runner | IOPS | p50 µs | p99 µs | CPU µs/req | guest driver µs/req | IOPS ratio | CPU ratio |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for w in raw-randread raw-randwrite null-randread; do
		for r in $(runners $w); do
			case $r in
			ours-t1) ir="ours/fio $(ratio $w 3 $r fio), ours/qemu-img $(ratio $w 3 $r qemu-img)"
				cr="ours/fio $(ratio $w 6 $r fio), ours/qemu-img $(ratio $w 6 $r qemu-img)" ;;
			ours-t2) ir="2 IOThreads / 1: $(ratio $w 3 $r ours-t1)"
				cr="2 / 1: $(ratio $w 6 $r ours-t1)" ;;
			ours-c1) ir="colocated / driver thread (1 IOThread): $(ratio $w 3 $r ours-t1)"
				cr="c1 / t1: $(ratio $w 6 $r ours-t1)" ;;
			ours-c2) ir="colocated 2 IOThreads / 1: $(ratio $w 3 $r ours-c1), c2/fio $(ratio $w 3 $r fio)"
				cr="c2 / c1: $(ratio $w 6 $r ours-c1)" ;;
			procs-2) ir="2 processes / 1 (the machine's ceiling): $(ratio $w 3 $r procs-1)"
				cr="2 / 1: $(ratio $w 6 $r procs-1)" ;;
			*) ir=- cr=- ;;
			esac
			echo "| $w | $r | $(med $w $r 3) | $(med $w $r 4) | $(med $w $r 5) | $(med $w $r 6) | $(med $w $r 7) | $ir | $cr |"
		done
	done
}

# Ours' evidence: where the CPU went and how often threads slept and woke.
evidence() {
	local w r c
	echo "| workload | runner | VMM CPU % of one CPU | driver CPU % | kicks/req | interrupts/req | sleeps/req | preemptions/s | other processes, CPUs |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for w in raw-randread raw-randwrite null-randread; do
		for r in $(runners $w); do
			[[ $r == ours-* || $r == procs-* ]] || continue
			printf '| %s | %s |' "$w" "$r"
			for c in 8 9 10 11 12 13 14; do printf ' %s |' "$(med $w $r $c)"; done
			echo
		done
	done
}

# per_round WORKLOAD RUNNER_A RUNNER_B: A's IOPS over B's in each round,
# with the CPUs other processes used during each of the two runs.
per_round() {
	awk -v w="$1" -v a="$2" -v b="$3" '$1 == w && $2 == a { ia[++na] = $3; oa[na] = $14 }
		$1 == w && $2 == b { ib[++nb] = $3; ob[nb] = $14 }
		END { for (k = 1; k <= na && k <= nb; k++)
			printf "%s%.2f (other %s / %s)", (k > 1 ? ", " : ""), ia[k] / ib[k], oa[k], ob[k] }' "$RAW"
}

rounds() {
	echo "Per round, IOPS ratio (CPUs other processes used during the two runs):"
	echo
	echo "- null-randread, driver thread, 2 / 1 IOThreads: $(per_round null-randread ours-t2 ours-t1)"
	echo "- null-randread, colocated, 2 / 1 IOThreads: $(per_round null-randread ours-c2 ours-c1)"
	echo "- null-randread, control, 2 / 1 processes: $(per_round null-randread procs-2 procs-1)"
	echo "- raw-randread, colocated, 2 / 1 IOThreads: $(per_round raw-randread ours-c2 ours-c1)"
}

# meets VALUE OP BOUND: "yes" or "no" (OP: ge or lt).
meets() { awk -v v="$1" -v op="$2" -v b="$3" 'BEGIN { ok = op == "ge" ? v >= b : v < b; print (ok ? "yes" : "no") }'; }

# The issue's targets against the medians.
targets() {
	local w r v
	echo "| target | measured | met |"
	echo "|---|---|---|"
	for w in raw-randread raw-randwrite; do
		v=$(ratio $w 3 ours-t1 fio)
		echo "| $w: ours (1 IOThread) ≥ 0.95 × fio IOPS | $v | $(meets "$v" ge 0.95) |"
	done
	v=$(ratio raw-randread 3 ours-c2 fio)
	echo "| raw-randread: ours colocated, 2 IOThreads (fio's shape: 2 threads, a ring each) ≥ 0.95 × fio IOPS | $v | $(meets "$v" ge 0.95) |"
	v=$(ratio null-randread 6 ours-t1 qemu-img)
	echo "| null: our CPU/request < qemu-img null-co's | ours/qemu-img $v | $(meets "$v" lt 1) |"
	for r in t c; do
		for w in null-randread raw-randread; do
			v=$(ratio $w 3 ours-${r}2 ours-${r}1)
			echo "| $w, $([ $r = t ] && echo driver thread || echo colocated): 2 IOThreads ≥ 1.8 × 1 | $v | $(meets "$v" ge 1.8) |"
		done
	done
	v=$(ratio null-randread 3 procs-2 procs-1)
	echo "| (control, not a target) null-randread, 2 independent processes / 1 | $v | $(meets "$v" ge 1.8) |"
}

# callgrind_ir ARGS...: "device driver" instructions per request (slopes).
callgrind_ir() { bench_callgrind_ir "$BLK" "$DEPTH" "$CG_REQS" "$@"; }

: >"$RAW"
head="$(date -u '+%F %H:%M UTC'); $(bench_machine)
$ROUNDS rounds of ${SECS} s per runner, depth $DEPTH x $QUEUES queues, 4 KiB; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$head" >&2
loads=() c0= c1=
for r in $(seq "$ROUNDS"); do
	echo "round $r of $ROUNDS" >&2
	cpu_now c0
	round
	cpu_now c1
	loads+=("round $r: $(other_load "$c0" "$c1")")
	echo "${loads[-1]}" >&2
done
{
	echo "$head; after the rounds: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo "Besides the benchmark, on average: $(IFS=';'; echo "${loads[*]}" | sed 's/;/; /g')."
	echo
	table
	echo
	evidence
	echo
	targets
	echo
	rounds
	echo
	echo "| callgrind, $DEPTH deep, 1 queue | instructions/request: device (loop_run_once) | guest driver |"
	echo "|---|---|---|"
	echo "| null randread | $(callgrind_ir -n "$NULL_SIZE" | sed 's/ / | /') |"
	echo "| raw randread, cache = none | $(callgrind_ir -f "$IMG" -c | sed 's/ / | /') |"
	echo
	echo "Whole script: $SECONDS s; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$O/blk.md"
