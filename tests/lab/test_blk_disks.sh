#!/usr/bin/env bash
# Two raw virtio-blk disks at once, one of them readonly: the guest finds
# them as vda and vdb in file order, with their sizes and serials; each
# reads back exactly its host file (sha256 of the whole device in the guest
# equals the host file's); vdb is readonly (the guest's write fails) and
# neither host file changes. One KVM host boot, one guest run.
set -uo pipefail
. "$(dirname "$0")/lab.sh"
lab_require
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
steps="lab.blk=info:vda lab.blk=sha:vda lab.blk=info:vdb lab.blk=sha:vdb lab.blk=ro:vdb"
cat >"$tmp/script" <<SCRIPT
. tests/lab/kvmhost.sh
. tests/lab/blkhost.sh
blk_random \$LAB_TMP/a.img 16
blk_random \$LAB_TMP/b.img 8
cp \$LAB_TMP/a.img \$LAB_TMP/a.orig
cp \$LAB_TMP/b.img \$LAB_TMP/b.orig
blk_sha \$LAB_TMP/a.img
blk_sha \$LAB_TMP/b.img
lab_config \$LAB_TMP/vm.toml \$GI/vmlinuz "console=ttyS0 quiet lab.virtio $steps lab.action=reboot"
blk_disk \$LAB_TMP/vm.toml a \$LAB_TMP/a.img 'serial = "lab-disk-a"'
blk_disk \$LAB_TMP/vm.toml b \$LAB_TMP/b.img 'readonly = true' 'serial = "lab-disk-b"'
run_vmm disks \$LAB_TMP/vm.toml
blk_check a.img-unchanged cmp \$LAB_TMP/a.img \$LAB_TMP/a.orig
blk_check b.img-unchanged cmp \$LAB_TMP/b.img \$LAB_TMP/b.orig
SCRIPT
kvm_run "$tmp/script" | tee "$tmp/log"
log=$tmp/log
lab_expect_exit "$log" disks 0 "reboot -f after the disk checks"
lab_expect_line "$log" RUN disks "LAB-BLK: done" "the guest did not finish its disk steps"
for d in vda:a:16777216:0 vdb:b:8388608:1; do
	IFS=: read -r dev f size ro <<<"$d"
	lab_expect_line "$log" RUN disks "LAB-BLK: $dev size=$size" "$dev has the wrong size"
	lab_expect_line "$log" RUN disks "LAB-BLK: $dev serial=lab-disk-$f" "$dev has the wrong serial"
	lab_expect_line "$log" RUN disks "LAB-BLK: $dev ro=$ro" "$dev: readonly = $ro expected"
	want=$(lab_value "$log" "LAB-HOST: $f.img sha256=")
	got=$(lab_value "$log" "LAB-BLK: $dev sha256=" RUN disks)
	[ -n "$want" ] || lab_fail "the KVM host did not print $f.img's sha256"
	[ "$got" = "$want" ] || lab_fail "$dev reads '$got' in the guest, $f.img is $want"
	[ "$(lab_value "$log" "LAB-HOST: $f.img-unchanged=")" = ok ] ||
		lab_fail "$f.img changed while the guest only read it"
done
lab_expect_line "$log" RUN disks "LAB-BLK: vdb write=refused" \
	"the guest wrote to the readonly disk vdb"
echo "PASS: vda and vdb read back their files exactly (sha256), with their sizes and serials;" \
	"the readonly vdb refused the guest's write and neither file changed"
