#!/usr/bin/env bash
# Concurrent allocation and copy-on-write in a real guest: an empty qcow2
# overlay (64 KiB clusters) over a qcow2 base full of data, num_queues = 4
# on 4 vCPUs and two IOThreads. The guest runs fio (4 jobs of random 4 KiB
# direct writes at depth 8 with crc32c verify, then a verify-only pass), so
# every cluster is allocated and copied from the base by whichever queue
# writes it first. Then, on the KVM host, QEMU's own qemu-img (carried into
# the lab with its libraries) checks the overlay (no error, no leak) and
# reads it, and a second guest run (format = "auto", readonly) reads the
# same bytes (sha256). One KVM host boot, two guest runs with the fio
# initrd.
set -uo pipefail
. "$(dirname "$0")/lab.sh"
lab_require
initrd=guest-images/out/fio-initrd.cpio.gz
[ -e "$LAB_REPO/$initrd" ] || lab_skip "no $initrd (guest-images/build.sh makes it when fio is installed: apt-get install fio)"
command -v qemu-img >/dev/null || lab_skip "no qemu-img (apt-get install qemu-utils)"
# kvm_run takes repo-relative files into the lab.
work=$(mktemp -d "$LAB_REPO/build/lab-qcow2.XXXXXX") || exit 1
rel=${work#"$LAB_REPO"/}
tmp=$(mktemp -d)
trap 'rm -rf "$work" "$tmp"' EXIT
queues=4 job_mib=4

# qemu-img for the KVM host, run there through the loader it was linked
# with (the lab's L1 has no libc).
mkdir -p "$work/qemu-img/lib"
cp -L "$(command -v qemu-img)" "$work/qemu-img/qemu-img"
for lib in $(ldd "$(command -v qemu-img)" | awk '/=> \// { print $3 } /^\t\// { print $1 }'); do
	cp -L "$lib" "$work/qemu-img/lib/"
done
[ -e "$work/qemu-img/lib/ld-linux-x86-64.so.2" ] || lab_skip "ldd qemu-img lists no ld-linux-x86-64.so.2"

dd if=/dev/urandom of="$work/base.raw" bs=1M count=$((queues * job_mib)) 2>/dev/null &&
	qemu-img convert -f raw -O qcow2 "$work/base.raw" "$work/base.qcow2" &&
	(cd "$work" && qemu-img create -q -f qcow2 -o cluster_size=65536 -b base.qcow2 -F qcow2 \
		top.qcow2) || lab_fail "making the images with qemu-img failed"
rm "$work/base.raw"

steps="lab.blk=info:vda lab.blk=mq:vda lab.blk=fio:vda:$job_mib"
cat >"$tmp/script" <<SCRIPT
. tests/lab/kvmhost.sh
. tests/lab/blkhost.sh
Q=\$LAB_ROOT/$rel/qemu-img
qemu_img() { \$Q/lib/ld-linux-x86-64.so.2 --library-path \$Q/lib \$Q/qemu-img "\$@"; }
cp $rel/base.qcow2 $rel/top.qcow2 \$LAB_TMP/
lab_config \$LAB_TMP/rw.toml \$GI/vmlinuz "console=ttyS0 quiet lab.virtio $steps lab.action=reboot" \\
	stdio 4 \$LAB_ROOT/$initrd
printf '\n[iothread.io0]\n\n[iothread.io1]\n' >>\$LAB_TMP/rw.toml
blk_disk \$LAB_TMP/rw.toml q \$LAB_TMP/top.qcow2 'format = "qcow2"' "num_queues = $queues" \\
	'iothreads = ["io0", "io1"]'
run_vmm fio \$LAB_TMP/rw.toml 300
qemu_img check -f qcow2 \$LAB_TMP/top.qcow2
blk_say check-status \$?
qemu_img convert -f qcow2 -O raw \$LAB_TMP/top.qcow2 \$LAB_TMP/view.raw && blk_sha \$LAB_TMP/view.raw
lab_config \$LAB_TMP/ro.toml \$GI/vmlinuz "console=ttyS0 quiet lab.virtio lab.blk=sha:vda lab.action=reboot"
blk_disk \$LAB_TMP/ro.toml q \$LAB_TMP/top.qcow2 'format = "auto"' 'readonly = true'
run_vmm auto \$LAB_TMP/ro.toml
SCRIPT
kvm_run -f "$rel" -f "$initrd" "$tmp/script" | tee "$tmp/log"
log=$tmp/log
lab_expect_exit "$log" fio 0 "reboot -f after the fio steps"
lab_expect_exit "$log" auto 0 "reboot -f after reading the disk back"
lab_expect_line "$log" RUN fio "LAB-BLK: vda queues=$queues" "num_queues = $queues: the guest has another queue count"
bytes=$((job_mib * queues * 1024))KiB
lab_expect_line "$log" RUN fio "LAB-BLK: vda fio=ok read=$bytes write=$bytes" \
	"fio's write and verify pass on the qcow2 overlay failed or did not cover $bytes"
lab_expect_line "$log" RUN fio "LAB-BLK: vda fio-verify=ok read=$bytes" \
	"fio's verify-only pass on the qcow2 overlay found a mismatch or did not read back $bytes"
check=$(lab_value "$log" "LAB-HOST: check-status=")
[ "$check" = 0 ] || lab_fail "qemu-img check on the overlay after fio: status '$check' (2: corrupt, 3: leaks)"
want=$(lab_value "$log" "LAB-HOST: view.raw sha256=")
got=$(lab_value "$log" "LAB-BLK: vda sha256=" RUN auto)
[ -n "$want" ] || lab_fail "qemu-img could not read the overlay on the KVM host"
[ "$got" = "$want" ] || lab_fail "the guest reads '$got' from the overlay, qemu-img $want"
echo "PASS: fio wrote and verified $bytes through $queues queues on an empty qcow2 overlay over a" \
	"qcow2 base; qemu-img check found it clean and reads what the guest reads"
