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
#               (reads and writes) and a fresh qcow2-empty (writes), as
#               many requests as ours did. qemu-img bench only strides: its
#               step is a prime number of blocks, so the offsets hop over
#               the whole image as random ones would.
# Prints one line per run and the ratios qcow2/raw and ours/qemu-img, and
# writes them to bench/out/qcow2.md.
#
#   bench/qcow2.sh
#
# Environment: SIZE (1G), DIR (/var/tmp), DEPTH (16), SECONDS_PER_RUN (5).
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$BENCH_REPO"
SIZE=${SIZE:-1G}
DIR=${DIR:-/var/tmp}
DEPTH=${DEPTH:-16}
SECS=${SECONDS_PER_RUN:-5}
BLK=build/musl/bench/blk
STRIDE=7919
[ -x "$BLK" ] || bench_skip "$BLK is not built (run ./build.sh bench)"
{ "$BLK" 2>&1 || true; } | grep -q -- '-F FORMAT' || bench_skip "$BLK takes no -F FORMAT: it cannot open qcow2"
command -v qemu-img >/dev/null || bench_skip "no qemu-img (apt-get install qemu-utils)"
work=$(mktemp -d "$DIR/vmm-bench-qcow2.XXXXXX")
trap 'rm -rf "$work"' EXIT
report=$BENCH_OUT/qcow2.md

# ours NAME FMT CACHE RW: bench/blk on $work/NAME; prints its iops.
ours() {
	local c= w=
	[ "$3" = none ] && c=-c
	[ "$4" = write ] && w=-w
	"$BLK" -F "$2" -f "$work/$1" $c $w -d "$DEPTH" -s "$SECS" | sed -n 's/.* iops=\([0-9]*\).*/\1/p'
}

# qemu NAME CACHE RW COUNT: qemu-img bench on $work/NAME; prints its iops.
qemu() {
	local w= secs
	[ "$3" = write ] && w=-w
	secs=$(qemu-img bench -f qcow2 -t "$2" -i io_uring -d "$DEPTH" -s 4096 -S $((4096 * STRIDE)) \
		-c "$4" $w "$work/$1" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
	awk -v n="$4" -v s="$secs" 'BEGIN { printf "%.0f", n / s }'
}

# empty: fresh raw-empty and qcow2-empty.
empty() {
	rm -f "$work/raw-empty" "$work/qcow2-empty"
	truncate -s "$SIZE" "$work/raw-empty"
	qemu-img create -q -f qcow2 "$work/qcow2-empty" "$SIZE"
}

# line CACHE RW IMAGE IOPS: one result, to stdout and the report.
line() { printf '| %s | %s | %s | %s |\n' "$@" | tee -a "$report"; }

dd if=/dev/urandom of="$work/raw-full" bs=1M count=$(($(numfmt --from=iec "$SIZE") / 1048576)) \
	status=none
qemu-img convert -f raw -O qcow2 "$work/raw-full" "$work/qcow2-full"
{
	echo "# qcow2 next to raw ($(date -u +%Y-%m-%d), $(bench_machine))"
	echo
	echo "4 KiB random requests, depth $DEPTH, one queue, $SECS s per run, images of $SIZE on $(df -T "$DIR" | awk 'NR == 2 { print $2 }')."
	echo
	echo "| cache | requests | image | IOPS |"
	echo "|---|---|---|---|"
} >"$report"
for cache in writeback; do
	rr=$(ours raw-full raw $cache read)
	qr=$(ours qcow2-full qcow2 $cache read)
	qq=$(qemu qcow2-full $cache read $((qr * SECS)))
	rw=$(ours raw-full raw $cache write)
	qw=$(ours qcow2-full qcow2 $cache write)
	qqw=$(qemu qcow2-full $cache write $((qw * SECS)))
	empty
	re=$(ours raw-empty raw $cache write)
	qe=$(ours qcow2-empty qcow2 $cache write)
	empty
	qqe=$(qemu qcow2-empty $cache write $((qe * SECS)))
	line $cache randread raw-full "$rr"
	line $cache randread "qcow2-full (ratio to raw $(bench_ratio "$qr" "$rr"))" "$qr"
	line $cache "read, qemu-img bench" "qcow2-full (ours / qemu-img $(bench_ratio "$qr" "$qq"))" "$qq"
	line $cache randwrite raw-full "$rw"
	line $cache randwrite "qcow2-full (ratio to raw $(bench_ratio "$qw" "$rw"))" "$qw"
	line $cache "write, qemu-img bench" "qcow2-full (ours / qemu-img $(bench_ratio "$qw" "$qqw"))" "$qqw"
	line $cache randwrite raw-empty "$re"
	line $cache randwrite "qcow2-empty (ratio to raw-empty $(bench_ratio "$qe" "$re"))" "$qe"
	line $cache "write, qemu-img bench" "qcow2-empty (ours / qemu-img $(bench_ratio "$qe" "$qqe"))" "$qqe"
done
echo "written to $report"
