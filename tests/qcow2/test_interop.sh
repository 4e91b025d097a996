#!/usr/bin/env bash
# Interoperability with Debian's qemu-utils, on images qemu-img makes
# (create and convert; cluster sizes 512 B, 64 KiB and 2 MiB; compat 0.10
# and 1.1; refcount widths 1 and 64 bits; compressed clusters; qcow2 and raw
# backing files, a chain of three with relative paths) holding data that
# qemu-io wrote (patterns, random bytes at unaligned offsets, zero clusters
# with and without unmap, discards, compressed writes). For each image:
#   - our stack reads exactly what qemu-img reads (diskload dump against
#     qemu-img convert -O raw, sha256);
#   - after a random workload of ours over 4 queues (writes of any length
#     and alignment, write-zeroes, reads checked against our own writes,
#     flushes), qemu-img check finds no error and no leak, qemu-img
#     compare finds the image identical to a raw copy that took the same
#     workload, and the two stacks still read the same bytes.
# Two images also take discards (check and reads only: a discarded range may read as
# anything), and one has extended L2 entries (read exactly, or refused
# with a message).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
qt_require
qt_random
for cs in 512 65536 2097152; do
	for compat in 0.10 1.1; do
		img=$(qt_fresh "c$cs-$compat.qcow2" $cs $compat)
		CLUSTER=$cs qt_populate "$img" qcow2
		qt_agree "cluster_size=$cs compat=$compat" "$img" qcow2
		qt_workload "cluster_size=$cs compat=$compat" "$img"
	done
done

for bits in 1 64; do
	img=$(qt_fresh "r$bits.qcow2" 65536 1.1 "refcount_bits=$bits")
	qt_populate "$img" qcow2
	qt_workload "refcount_bits=$bits" "$img"
done

img=$(qt_fresh discard.qcow2 65536 1.1)
qt_populate "$img" qcow2
qt_workload "discards, cluster_size=65536" "$img" wwwwzzddrrf
img=$(qt_fresh discard512.qcow2 512 0.10)
qt_populate "$img" qcow2
qt_workload "discards, cluster_size=512 compat=0.10" "$img" wwwwzzddrrf

# Backing files: a qcow2 base under overlays of other cluster sizes, a raw
# base, and a chain of three in two folders with relative paths.
mkdir -p "$QT_TMP/golden"
base=$(qt_fresh golden/base.qcow2 65536 1.1)
qt_populate "$base" qcow2
qemu-img create -q -f raw "$QT_TMP/golden/base.raw" $QT_SIZE && qt_populate "$QT_TMP/golden/base.raw" raw
for cs in 512 2097152; do
	(cd "$QT_TMP" && qemu-img create -q -f qcow2 -o cluster_size=$cs -b golden/base.qcow2 \
		-F qcow2 "top$cs.qcow2") || qt_fail "qemu-img create top$cs.qcow2 failed"
	qt_io "$QT_TMP/top$cs.qcow2" qcow2 "write -P 0x21 65000 70000" "write -z 5M 4096" \
		"write -s $QT_SHM/random 41M 300000"
	qt_agree "qcow2 backing file under cluster_size=$cs" "$QT_TMP/top$cs.qcow2" qcow2
	qt_workload "qcow2 backing file under cluster_size=$cs" "$QT_TMP/top$cs.qcow2"
done
(cd "$QT_TMP" && qemu-img create -q -f qcow2 -o compat=0.10 -b golden/base.raw -F raw rawback.qcow2) ||
	qt_fail "qemu-img create rawback.qcow2 failed"
qt_io "$QT_TMP/rawback.qcow2" qcow2 "write -P 0x31 1000 5000"
qt_agree "raw backing file" "$QT_TMP/rawback.qcow2" qcow2
qt_workload "raw backing file" "$QT_TMP/rawback.qcow2"
(cd "$QT_TMP/golden" && qemu-img create -q -f qcow2 -o cluster_size=4096 -b base.qcow2 -F qcow2 \
	mid.qcow2 && cd .. && qemu-img create -q -f qcow2 -b golden/mid.qcow2 -F qcow2 chain.qcow2) ||
	qt_fail "qemu-img create of the chain failed"
qt_io "$QT_TMP/golden/mid.qcow2" qcow2 "write -P 0x41 2M 2M"
qt_io "$QT_TMP/chain.qcow2" qcow2 "write -P 0x51 3M 1536k"
qt_agree "a chain of three" "$QT_TMP/chain.qcow2" qcow2
qt_workload "a chain of three" "$QT_TMP/chain.qcow2"

# qemu-img convert: compressed, and as a delta over a backing file.
qt_raw "$base" qcow2 "$QT_SHM/full.raw"
qt_io "$QT_SHM/full.raw" raw "write -P 0x61 30M 3M"
qemu-img convert -c -f raw -O qcow2 "$QT_SHM/full.raw" "$QT_TMP/compressed.qcow2" &&
	qemu-img convert -f raw -O qcow2 -B golden/base.qcow2 -F qcow2 "$QT_SHM/full.raw" \
		"$QT_TMP/delta.qcow2" || qt_fail "qemu-img convert failed"
for img in compressed delta; do
	qt_agree "qemu-img convert: $img" "$QT_TMP/$img.qcow2" qcow2
	qt_workload "qemu-img convert: $img" "$QT_TMP/$img.qcow2"
done

# Extended L2 entries: supported (read exactly) or refused with a message.
img=$(qt_fresh ext.qcow2 65536 1.1 extended_l2=on)
qt_populate "$img" qcow2
if "$DISKLOAD" dump -F qcow2 -i "$img" -o "$QT_SHM/ours.raw" >/dev/null 2>"$QT_SHM/err"; then
	qt_agree "extended_l2=on" "$img" qcow2
	ext="read exactly"
else
	grep -q . "$QT_SHM/err" || qt_fail "extended_l2=on: refused without a message"
	ext="refused: $(head -n 1 "$QT_SHM/err")"
fi
echo "PASS: $QT_IMAGES images made by qemu-img and written by qemu-io read exactly as qemu-img" \
	"reads them, and after $QT_OPS random requests of ours each checks clean and equals its raw" \
	"reference; extended_l2=on: $ext"
