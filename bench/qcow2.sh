#!/usr/bin/env bash
# bench/qcow2.sh: qcow2 next to raw on the same file system, through our
# whole data path (bench/blk: the test driver playing the guest, the
# virtio-blk device on an IOThread, the block layer, io_uring), and QEMU's
# own qcow2 driver on the same image (qemu-img bench), at the same depth
# and block size.
#
# Images of SIZE in DIR:
#   raw-full      raw, every byte written
#   qcow2-full    qemu-img convert of raw-full: every cluster allocated
#   raw-empty     a sparse raw file (made again before each write run)
#   qcow2-empty   qemu-img create: empty, growing as it is written (made
#                 again before each write run)
# Runs, 4 KiB random requests at DEPTH on one queue, SECONDS each, with
# cache = writeback (the qcow2 driver refuses cache = none for now):
#   ours        randread on the full images, randwrite on all four
#   qemu-img    qemu-img bench -d DEPTH -s 4096 -i io_uring on qcow2-full
#               (reads and writes), a fresh qcow2-empty (writes) and, as
#               the control for what virtio and our guest driver cost
#               without qcow2, raw-full (reads), as
#               many requests as ours did. qemu-img bench only strides: its
#               step is a prime number of blocks, so the offsets hop over
#               the whole image as random ones would.
# Then callgrind (repeatable where timings are not): instructions per
# request of the device on the driver's thread (blk -i), randread of
# raw-full and qcow2-full.
# Every run is repeated ROUNDS times, the runs of one comparison back to
# back in each round; a line gives the median IOPS and the median of the
# rounds' ratios, with the ratios of all rounds. Prints the table and
# writes it to bench/out/qcow2.md.
#
#   bench/qcow2.sh
#
# The page cache here holds about 1.5 GiB and shrinks on its own, so images
# are 512 MiB by default and each one is read once before a run on it.
#
# Environment: SIZE (512M), DIR (/var/tmp), DEPTH (16), SECONDS_PER_RUN (5),
# ROUNDS (5), CG_REQS (requests of the two callgrind runs: "2000 6000").
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$BENCH_REPO"
SIZE=${SIZE:-512M}
DIR=${DIR:-/var/tmp}
DEPTH=${DEPTH:-16}
SECS=${SECONDS_PER_RUN:-5}
ROUNDS=${ROUNDS:-5}
CG_REQS=${CG_REQS:-"2000 6000"}
BLK=build/musl/bench/blk
STRIDE=7919
[ -x "$BLK" ] || bench_skip "$BLK is not built (run ./build.sh bench)"
{ "$BLK" 2>&1 || true; } | grep -q -- '-F FORMAT' || bench_skip "$BLK takes no -F FORMAT: it cannot open qcow2"
command -v qemu-img >/dev/null || bench_skip "no qemu-img (apt-get install qemu-utils)"
command -v valgrind >/dev/null || bench_skip "no valgrind (apt-get install valgrind)"
work=$(mktemp -d "$DIR/vmm-bench-qcow2.XXXXXX")
trap 'rm -rf "$work"' EXIT
report=$BENCH_OUT/qcow2.md

# ours NAME FMT CACHE RW: bench/blk on $work/NAME; prints its iops.
ours() {
	local c='' w=''
	[ "$3" = none ] && c=-c
	[ "$4" = write ] && w=-w
	cat "$work/$1" >/dev/null
	"$BLK" -F "$2" -f "$work/$1" $c $w -d "$DEPTH" -s "$SECS" | sed -n 's/.* iops=\([0-9]*\).*/\1/p'
}

# qemu NAME FMT CACHE RW COUNT: qemu-img bench on $work/NAME; prints its iops.
qemu() {
	local w='' secs
	[ "$4" = write ] && w=-w
	cat "$work/$1" >/dev/null
	secs=$(qemu-img bench -f "$2" -t "$3" -i io_uring -d "$DEPTH" -s 4096 -S $((4096 * STRIDE)) \
		-c "$5" $w "$work/$1" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
	awk -v n="$5" -v s="$secs" 'BEGIN { printf "%.0f", n / s }'
}

# empty: fresh raw-empty and qcow2-empty.
empty() {
	rm -f "$work/raw-empty" "$work/qcow2-empty"
	truncate -s "$SIZE" "$work/raw-empty"
	qemu-img create -q -f qcow2 "$work/qcow2-empty" "$SIZE"
}

# median N...: the middle value (the lower middle for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# ratios A B: the per-round ratios of the space-separated lists A and B.
ratios() {
	local -a a b
	local i
	read -ra a <<<"$1"
	read -ra b <<<"$2"
	for i in "${!a[@]}"; do bench_ratio "${a[i]}" "${b[i]}"; echo; done
}

# line WHAT IMAGE IOPS_LIST [NUM_LIST DEN_LIST LABEL]: one result (median
# IOPS), with the median of the rounds' NUM/DEN ratios and every round's.
line() {
	local r=""
	if [ $# -gt 3 ]; then
		# shellcheck disable=SC2046
		r=" ($6 $(median $(ratios "$4" "$5")); rounds: $(ratios "$4" "$5" | tr '\n' ' ' | sed 's/ $//'))"
	fi
	# shellcheck disable=SC2086
	printf '| %s | %s%s | %s |\n' "$1" "$2" "$r" "$(median $3)" | tee -a "$report"
}

sync_all() { sync; sleep 1; }

dd if=/dev/urandom of="$work/raw-full" bs=1M count=$(($(numfmt --from=iec "$SIZE") / 1048576)) \
	status=none
qemu-img convert -f raw -O qcow2 "$work/raw-full" "$work/qcow2-full"
sync_all
{
	echo "# qcow2 next to raw ($(date -u +%Y-%m-%d), $(bench_machine))"
	echo
	echo "4 KiB random requests, depth $DEPTH, one queue, cache = writeback, $SECS s per run, $ROUNDS rounds, images of $SIZE on $(df -T "$DIR" | awk 'NR == 2 { print $2 }')."
	echo
	echo "| requests | image | IOPS (median) |"
	echo "|---|---|---|"
} >"$report"
declare -A v
for ((round = 0; round < ROUNDS; round++)); do
	rr=$(ours raw-full raw writeback read)
	qr=$(ours qcow2-full qcow2 writeback read)
	v[rr]+="$rr " v[qr]+="$qr " v[qq]+="$(qemu qcow2-full qcow2 writeback read $((qr * SECS))) "
	v[qrr]+="$(qemu raw-full raw writeback read $((rr * SECS))) "
	sync_all
	rw=$(ours raw-full raw writeback write)
	qw=$(ours qcow2-full qcow2 writeback write)
	v[rw]+="$rw " v[qw]+="$qw " v[qqw]+="$(qemu qcow2-full qcow2 writeback write $((qw * SECS))) "
	empty
	sync_all
	re=$(ours raw-empty raw writeback write)
	qe=$(ours qcow2-empty qcow2 writeback write)
	empty
	sync_all
	v[re]+="$re " v[qe]+="$qe " v[qqe]+="$(qemu qcow2-empty qcow2 writeback write $((qe * SECS))) "
	sync_all
done
line randread raw-full "${v[rr]}"
line randread qcow2-full "${v[qr]}" "${v[qr]}" "${v[rr]}" "ratio to raw"
line "read, qemu-img bench" qcow2-full "${v[qq]}" "${v[qr]}" "${v[qq]}" "ours / qemu-img"
line "read, qemu-img bench" "raw-full (control)" "${v[qrr]}" "${v[rr]}" "${v[qrr]}" "ours / qemu-img"
line randwrite raw-full "${v[rw]}"
line randwrite qcow2-full "${v[qw]}" "${v[qw]}" "${v[rw]}" "ratio to raw"
line "write, qemu-img bench" qcow2-full "${v[qqw]}" "${v[qw]}" "${v[qqw]}" "ours / qemu-img"
line randwrite raw-empty "${v[re]}"
line randwrite qcow2-empty "${v[qe]}" "${v[qe]}" "${v[re]}" "ratio to raw-empty"
line "write, qemu-img bench" qcow2-empty "${v[qqe]}" "${v[qe]}" "${v[qqe]}" "ours / qemu-img"
{
	echo
	echo "| callgrind, depth $DEPTH, randread | instructions/request: device (loop_run_once) | guest driver |"
	echo "|---|---|---|"
	echo "| raw-full | $(bench_callgrind_ir "$BLK" "$DEPTH" "$CG_REQS" -f "$work/raw-full" | sed 's/ / | /') |"
	echo "| qcow2-full | $(bench_callgrind_ir "$BLK" "$DEPTH" "$CG_REQS" -F qcow2 -f "$work/qcow2-full" | sed 's/ / | /') |"
} | tee -a "$report"
echo "written to $report"
