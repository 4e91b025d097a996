#!/usr/bin/env bash
# The qcow2 metadata caches under pressure: workloads of ours over 4 queues
# (see test_interop.sh for what each checks: qemu-img check clean, compare
# equal to a raw reference, reads equal to qemu-img's) with l2_cache = 64K,
# the least the config allows, so L2 tables and refcount blocks are
# evicted and reloaded all the time while other queues wait for them:
#   - images of 512 B, 64 KiB and 2 MiB clusters holding qemu-io's data;
#   - 40 MiB of 512-byte clusters with a hole near the start of the file,
#     so that finding free clusters walks far more refcount blocks than
#     the cache holds.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
qt_require
qt_random
export L2=65536
for cs in 512 65536 2097152; do
	img=$(qt_fresh "c$cs.qcow2" $cs 1.1)
	CLUSTER=$cs qt_populate "$img" qcow2
	qt_workload "cluster_size=$cs, l2_cache=64K" "$img"
done
img=$(qt_fresh pressure.qcow2 512 1.1)
qt_io "$img" qcow2 "write -P 0x71 0 40M" "discard 0 64k"
qt_workload "cluster_size=512, 40 MiB allocated with a hole at the start, l2_cache=64K" "$img"
echo "PASS: $QT_IMAGES workloads with l2_cache = 64K check clean, equal their raw references" \
	"and read as qemu-img reads them"
