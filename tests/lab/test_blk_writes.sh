#!/usr/bin/env bash
# What the guest does to a raw disk reaches the host file, with cache =
# "writeback" and with cache = "none" (O_DIRECT): 4 KiB patterns written at
# sectors 0, 2049 (not 4 KiB aligned) and the disk's last 4 KiB, a discard
# (blkdiscard), a write-zeroes without unmap (blkdiscard -z) and one with
# unmap (fallocate -p on the device, which has no fallback to plain
# writes). After the vmm exits the file equals the original with exactly
# those changes (cmp), and the discarded MiB is a hole (the file's
# allocated blocks shrank by at least 1 MiB). One KVM host boot, two guest
# runs.
set -uo pipefail
. "$(dirname "$0")/lab.sh"
lab_require
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
seed=lab-$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')
MiB=1048576
sectors=0,2049,32760	# of a 16 MiB disk
zeroed="$MiB:$MiB $((3 * MiB)):$MiB $((5 * MiB)):$MiB"
steps="lab.blk=info:vda lab.blk=write:vda:$seed:$sectors lab.blk=discard:vda:$MiB:$MiB"
steps+=" lab.blk=zero:vda:$((3 * MiB)):$MiB lab.blk=punch:vda:$((5 * MiB)):$MiB"
cat >"$tmp/script" <<SCRIPT
. tests/lab/kvmhost.sh
. tests/lab/blkhost.sh
for cache in writeback none; do
	if [ \$cache = none ]; then dir=\$(blk_direct_dir) || continue; else dir=\$LAB_TMP; fi
	img=\$dir/\$cache.img
	blk_random \$img 16
	cp \$img \$LAB_TMP/\$cache.orig
	blocks=\$(blk_blocks \$img)
	lab_config \$LAB_TMP/\$cache.toml \$GI/vmlinuz "console=ttyS0 quiet lab.virtio $steps lab.action=reboot"
	blk_disk \$LAB_TMP/\$cache.toml w \$img "cache = \"\$cache\""
	run_vmm \$cache \$LAB_TMP/\$cache.toml
	blk_expect \$LAB_TMP/\$cache.orig \$LAB_TMP/\$cache.expected $seed $sectors "$zeroed"
	blk_check \$cache-content cmp \$LAB_TMP/\$cache.expected \$img
	blk_say \$cache-freed-blocks \$((blocks - \$(blk_blocks \$img)))
done
SCRIPT
kvm_run "$tmp/script" | tee "$tmp/log"
log=$tmp/log
for cache in writeback none; do
	lab_expect_exit "$log" $cache 0 "cache = $cache: reboot -f after the disk steps"
	lab_expect_line "$log" RUN $cache "LAB-BLK: done" "cache = $cache: the guest did not finish its disk steps"
	for key in discard_max write_zeroes_max; do
		v=$(lab_value "$log" "LAB-BLK: vda $key=" RUN $cache)
		[ "${v:-0}" -gt 0 ] 2>/dev/null ||
			lab_fail "cache = $cache: the guest sees $key=$v (the device did not offer it)"
	done
	for key in write discard zero punch; do
		lab_expect_line "$log" RUN $cache "LAB-BLK: vda $key=ok" "cache = $cache: the guest's $key failed"
	done
	[ "$(lab_value "$log" "LAB-HOST: $cache-content=")" = ok ] ||
		lab_fail "cache = $cache: the host file is not the original plus the guest's writes and zeroed ranges"
	freed=$(lab_value "$log" "LAB-HOST: $cache-freed-blocks=")
	[ "${freed:-0}" -ge 2048 ] 2>/dev/null ||
		lab_fail "cache = $cache: the discarded MiB left no hole (blocks freed: '$freed', want >= 2048)"
done
echo "PASS: with cache = writeback and none, the guest's writes, discard and write-zeroes" \
	"(with and without unmap) reached the host file exactly; the discard made a hole"
