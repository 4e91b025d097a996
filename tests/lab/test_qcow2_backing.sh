#!/usr/bin/env bash
# A qcow2 disk over a qcow2 backing file, both made on this machine by
# qemu-img and qemu-io: the base is a compressed convert of patterns and
# random bytes, the overlay (64 KiB clusters, backing named by a relative
# path) has its own qemu-io writes. In the guest (Debian kernel, 2 vCPUs,
# so 2 queues on 2 IOThreads):
#   run 1 (format = "qcow2"): the whole disk's sha256 equals qemu-img's view
#     of the image; then 4 KiB writes at sectors 0 (a compressed cluster of
#     the base), 2049 (unaligned), 8192 (a cluster of the overlay) and the
#     last 4 KiB, a write-zeroes without unmap over the base's data and one
#     with unmap over another range (it must not fall through to the base);
#   run 2 (format = "auto", readonly): the sha256 equals the expected
#     contents (qemu-img's view before, plus exactly those changes).
# The overlay then comes back to this machine over the console: qemu-img
# check finds no error and no leak, and qemu-img compare finds it equal to
# the expected contents. One KVM host boot, two guest runs.
set -uo pipefail
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/blkhost.sh"
lab_require
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
	lab_skip "no qemu-img or qemu-io (apt-get install qemu-utils)"
# kvm_run takes repo-relative files into the lab.
work=$(mktemp -d "$LAB_REPO/build/lab-qcow2.XXXXXX") || exit 1
rel=${work#"$LAB_REPO"/}
trap 'rm -rf "$work"' EXIT
seed=lab-$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')
MiB=1048576
sectors=0,2049,8192,32760	# of a 16 MiB disk
zeroed="$((6 * MiB)):$MiB $((9 * MiB)):$MiB"
steps="lab.blk=info:vda lab.blk=sha:vda lab.blk=write:vda:$seed:$sectors"
steps+=" lab.blk=zero:vda:$((6 * MiB)):$MiB lab.blk=punch:vda:$((9 * MiB)):$MiB"

# The images: base.qcow2 (compressed) under top.qcow2, and what qemu-img
# reads from top.qcow2 (view.raw) and what it should read afterwards.
qemu-img create -q -f raw "$work/base.raw" 16M &&
	qemu-io -f raw -c "write -P 0x5a 0 2M" -c "write -P 0x6b 6M 4M" -c "write -P 0x7c 15M 1M" \
		"$work/base.raw" >/dev/null &&
	dd if=/dev/urandom of="$work/base.raw" bs=64k seek=40 count=4 conv=notrunc 2>/dev/null &&
	qemu-img convert -c -f raw -O qcow2 "$work/base.raw" "$work/base.qcow2" &&
	(cd "$work" && qemu-img create -q -f qcow2 -o cluster_size=65536 -b base.qcow2 -F qcow2 \
		top.qcow2) &&
	qemu-io -f qcow2 -c "write -P 0x21 4M 128k" -c "write -P 0x22 1000000 5000" \
		-c "write -z 7M 64k" "$work/top.qcow2" >/dev/null &&
	qemu-img convert -f qcow2 -O raw "$work/top.qcow2" "$work/view.raw" ||
	lab_fail "making the images with qemu-img and qemu-io failed"
blk_expect "$work/view.raw" "$work/expected.raw" "$seed" "$sectors" "$zeroed"
rm "$work/base.raw"

tmp=$(mktemp -d)
trap 'rm -rf "$work" "$tmp"' EXIT
cat >"$tmp/script" <<SCRIPT
. tests/lab/kvmhost.sh
. tests/lab/blkhost.sh
cp $rel/base.qcow2 $rel/top.qcow2 \$LAB_TMP/
lab_config \$LAB_TMP/rw.toml \$GI/vmlinuz "console=ttyS0 quiet lab.virtio $steps lab.action=reboot"
blk_disk \$LAB_TMP/rw.toml q \$LAB_TMP/top.qcow2 'format = "qcow2"'
run_vmm qcow2 \$LAB_TMP/rw.toml
lab_config \$LAB_TMP/ro.toml \$GI/vmlinuz "console=ttyS0 quiet lab.virtio lab.blk=sha:vda lab.action=reboot"
blk_disk \$LAB_TMP/ro.toml q \$LAB_TMP/top.qcow2 'format = "auto"' 'readonly = true'
run_vmm auto \$LAB_TMP/ro.toml
gzip -c \$LAB_TMP/top.qcow2 | base64 >\$LAB_TMP/top.b64
show_file top.qcow2 \$LAB_TMP/top.b64
# L1's console drops what it has not sent when the script's session ends.
sleep 2
SCRIPT
kvm_run -f "$rel/base.qcow2" -f "$rel/top.qcow2" "$tmp/script" | tee "$tmp/log"
log=$tmp/log
for run in qcow2 auto; do
	lab_expect_exit "$log" $run 0 "format = $run: reboot -f after the disk steps"
	lab_expect_line "$log" RUN $run "LAB-BLK: done" "format = $run: the guest did not finish its disk steps"
done
lab_expect_line "$log" RUN qcow2 "LAB-BLK: vda size=16777216" "the guest sees another size than the 16 MiB image"
for key in write zero punch; do
	lab_expect_line "$log" RUN qcow2 "LAB-BLK: vda $key=ok" "the guest's $key on the qcow2 disk failed"
done
got=$(lab_value "$log" "LAB-BLK: vda sha256=" RUN qcow2)
[ "$got" = "$(sha256sum <"$work/view.raw" | cut -d' ' -f1)" ] ||
	lab_fail "the guest reads '$got' from the qcow2 disk, other bytes than qemu-img reads"
got=$(lab_value "$log" "LAB-BLK: vda sha256=" RUN auto)
[ "$got" = "$(sha256sum <"$work/expected.raw" | cut -d' ' -f1)" ] ||
	lab_fail "after its writes the guest reads '$got', not the image plus exactly its writes and zeroes"
lab_section "$log" FILE top.qcow2 | sed '1d;$d' | base64 -d | gunzip >"$work/top.qcow2" ||
	lab_fail "the overlay did not come back over the console"
check=$(qemu-img check -f qcow2 "$work/top.qcow2" 2>&1) ||
	lab_fail "qemu-img check on the overlay the guest wrote: $check"
qemu-img compare -q -f qcow2 -F raw "$work/top.qcow2" "$work/expected.raw" ||
	lab_fail "qemu-img compare: the overlay the guest wrote differs from the expected contents:" \
		"$(qemu-img compare -f qcow2 -F raw "$work/top.qcow2" "$work/expected.raw" 2>&1)"
echo "PASS: the guest read a qcow2 overlay over a compressed qcow2 base exactly as qemu-img does;" \
	"its writes and write-zeroes (with and without unmap) read back exactly with format = auto," \
	"and the overlay passes qemu-img check and compare on the host"
