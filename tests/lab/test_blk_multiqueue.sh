#!/usr/bin/env bash
# A disk with num_queues = 4 on 4 vCPUs, its queues spread over two
# IOThreads: the guest sees 4 hardware queues (/sys/block/vda/mq), reads
# through each one from a CPU mapped to it, and runs fio: 4 jobs (one per
# CPU) of random 4 KiB direct writes at depth 8 with crc32c verify, then a
# separate verify-only pass, with no mismatch. The vmm's per-queue counters
# (vmm --stats: "vmm: disk.NAME: queue N: R requests ...") show requests on
# every queue. One KVM host boot, one guest run with the fio initrd.
# (The guest uses at most one queue per CPU: Linux's virtio_blk caps the
# queue count at the number of possible CPUs, so 4 queues need 4 vCPUs.)
set -uo pipefail
. "$(dirname "$0")/lab.sh"
lab_require
initrd=guest-images/out/fio-initrd.cpio.gz
[ -e "$LAB_REPO/$initrd" ] || lab_skip "no $initrd (guest-images/build.sh makes it when fio is installed: apt-get install fio)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
queues=4 job_mib=4
steps="lab.blk=info:vda lab.blk=mq:vda lab.blk=fio:vda:$job_mib"
cat >"$tmp/script" <<SCRIPT
. tests/lab/kvmhost.sh
. tests/lab/blkhost.sh
blk_random \$LAB_TMP/q.img $((queues * job_mib))
lab_config \$LAB_TMP/vm.toml \$GI/vmlinuz "console=ttyS0 quiet lab.virtio $steps lab.action=reboot" \\
	stdio 4 \$LAB_ROOT/$initrd
printf '\n[iothread.io0]\n\n[iothread.io1]\n' >>\$LAB_TMP/vm.toml
blk_disk \$LAB_TMP/vm.toml q \$LAB_TMP/q.img "num_queues = $queues" 'iothreads = ["io0", "io1"]'
VMM_ARGS=--stats run_vmm mq \$LAB_TMP/vm.toml 300
SCRIPT
kvm_run -f "$initrd" "$tmp/script" | tee "$tmp/log"
log=$tmp/log
lab_expect_exit "$log" mq 0 "reboot -f after the disk steps"
lab_expect_line "$log" RUN mq "LAB-BLK: done" "the guest did not finish its disk steps"
lab_expect_line "$log" RUN mq "LAB-BLK: vda queues=$queues" "num_queues = $queues: the guest has another queue count"
for ((q = 0; q < queues; q++)); do
	lab_section "$log" RUN mq | grep -q "^LAB-BLK: vda queue\.$q=ok " ||
		lab_fail "the guest's read through queue $q failed"
done
bytes=$((job_mib * queues * 1024))KiB
lab_expect_line "$log" RUN mq "LAB-BLK: vda fio=ok read=$bytes write=$bytes" \
	"fio's write and verify pass failed or did not cover the 4 jobs' $bytes"
lab_expect_line "$log" RUN mq "LAB-BLK: vda fio-verify=ok read=$bytes" \
	"fio's verify-only pass found a mismatch or did not read back $bytes"
stats=$(lab_section "$log" RUN mq | grep '^vmm: disk\.q: queue ')
[ "$(wc -l <<<"$stats")" = $queues ] ||
	lab_fail "vmm --stats: expected $queues lines 'vmm: disk.q: queue N: R requests', found: '$stats'"
for ((q = 0; q < queues; q++)); do
	r=$(sed -n "s/^vmm: disk\.q: queue $q: \([0-9]*\) requests.*/\1/p" <<<"$stats")
	[ "${r:-0}" -gt 0 ] || lab_fail "queue $q carried no requests (vmm --stats: '$stats')"
done
echo "PASS: $queues queues in the guest, each carrying requests (vmm --stats: $(sed -n \
	's/^vmm: disk\.q: queue \([0-9]*\): \([0-9]*\) requests.*/\1:\2/p' <<<"$stats" | paste -sd' '));" \
	"fio wrote and verified $bytes with 4 jobs, no mismatch"
