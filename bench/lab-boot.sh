#!/usr/bin/env bash
# bench/lab-boot.sh: stock Linux boot time in the nested lab, our vmm next
# to QEMU 7.2, both run inside the same L1 one after the other.
#
# NOT a performance figure: L1 runs under QEMU TCG (software emulation), so
# the absolute times say nothing about real hardware. Only the side-by-side
# in one L1 run means something, and even that only roughly.
#
# Each run: the Debian cloud kernel (guest-images/out/vmlinuz) with the demo
# initramfs and "console=ttyS0 lab.action=reboot": its init prints
# "LAB: init started", then reboot -f ends the VMM. 2 vCPUs, 512 MiB, serial
# on the VMM's stdout (read by a busybox awk in L1 that notes the time of
# the marker and of the end of output, and keeps the log in L1's tmpfs).
# Times come from L1's /proc/uptime (10 ms resolution), taken just before
# the VMM is started:
#   init  launch -> the guest's init printed its first marker
#   exit  launch -> the VMM closed its output (it exited after reboot -f)
# Variants, in turn within each repetition:
#   vmm            ours (no firmware: it enters the kernel's 64-bit entry)
#   qemu-seabios   QEMU -M pc -accel kvm -cpu host, default firmware (SeaBIOS)
#   qemu-qboot     the same with -bios qboot.rom (the minimal firmware)
#
#   bench/lab-boot.sh [REPS]     (default 3)
#
# QEMU is dynamic and L1 has no libc: this script copies QEMU, the libraries
# ldd lists, ld-linux and the three firmware files into
# bench/out/lab-qemu/, which tests/lab/lab.sh carries into L1 (-f); there
# QEMU runs through ld-linux --library-path, with -L to the firmware.
# The vmm is snapshotted to bench/out/vmm first (LAB_VMM), so a rebuild of
# ./vmm during the run does not change what is measured.
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$BENCH_REPO/tests/lab/lab.sh"
cd "$BENCH_REPO"

REPS=${1:-3}
QEMU=${QEMU:-$(command -v qemu-system-x86_64 || true)}
[ -n "$QEMU" ] || bench_skip "no qemu-system-x86_64 (apt-get install qemu-system-x86)"
[ -x "${VMM:-./vmm}" ] || bench_skip "${VMM:-./vmm} is not built (run ./build.sh)"
[ "${VMM:-./vmm}" -ef "$BENCH_OUT/vmm" ] || cp "${VMM:-./vmm}" "$BENCH_OUT/vmm"
export LAB_VMM=$BENCH_OUT/vmm
lab_require

# QEMU's bundle for L1.
Q=$BENCH_OUT/lab-qemu
rm -rf "$Q"
mkdir -p "$Q/bin" "$Q/lib" "$Q/share"
cp -L "$QEMU" "$Q/bin/qemu-system-x86_64"
for lib in $(ldd "$QEMU" | awk '/=> \// { print $3 } /^\t\// { print $1 }' | sort -u); do
	cp -L "$lib" "$Q/lib/$(basename "$lib")"
done
[ -e "$Q/lib/ld-linux-x86-64.so.2" ] || bench_skip "ldd $QEMU lists no ld-linux-x86-64.so.2"
for f in bios-256k.bin linuxboot_dma.bin kvmvapic.bin qboot.rom; do
	src=
	for d in /usr/share/qemu /usr/share/seabios; do
		[ -e "$d/$f" ] && { src=$d/$f; break; }
	done
	[ -n "$src" ] || bench_skip "no $f in /usr/share/qemu or /usr/share/seabios"
	cp -L "$src" "$Q/share/$f"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/script" <<'SCRIPT'
. tests/lab/kvmhost.sh
CMDLINE="console=ttyS0 lab.action=reboot"
lab_config $LAB_TMP/vm.toml $GI/vmlinuz "$CMDLINE" stdio 2
Q=$LAB_ROOT/bench/out/lab-qemu
QEMU_ARGS="-M pc -accel kvm -cpu host -smp 2 -m 512 -nographic -nodefaults
 -serial stdio -kernel $GI/vmlinuz -initrd $GI/demo-initrd.cpio.gz -no-reboot"
QEMU="$Q/lib/ld-linux-x86-64.so.2 --library-path $Q/lib $Q/bin/qemu-system-x86_64 -L $Q/share"
up() { cut -d' ' -f1 /proc/uptime; }
# measure NAME REP COMMAND...: one boot; prints
# "BENCH-RESULT NAME REP init=SECONDS exit=SECONDS status=N".
measure() {
	_name=$1 _rep=$2
	shift 2
	_t0=$(up)
	{ timeout -s KILL 300 "$@" </dev/null 2>&1; echo "BENCH-STATUS $?"; } |
		awk -v t0="$_t0" -v name="$_name" -v rep="$_rep" -v logf="$LAB_TMP/$_name.$_rep.log" '
		function now(  u, a) { getline u <"/proc/uptime"; close("/proc/uptime"); split(u, a, " "); return a[1] }
		/^BENCH-STATUS / { status = $2; next }
		init == "" && index($0, "LAB: init started") { init = now() - t0 }
		{ print >logf }
		END { printf "BENCH-RESULT %s %s init=%.2f exit=%.2f status=%s\n", name, rep, init == "" ? -1 : init, now() - t0, status }'
}
echo "BENCH-L1 $(nproc) CPUs, $(uname -r)"
rep=1
while [ $rep -le ${BENCH_REPS:-3} ]; do
	measure vmm $rep "$VMM" $LAB_TMP/vm.toml
	measure qemu-seabios $rep $QEMU $QEMU_ARGS -append "$CMDLINE"
	measure qemu-qboot $rep $QEMU -bios $Q/share/qboot.rom $QEMU_ARGS -append "$CMDLINE"
	rep=$((rep + 1))
done
# The last log of each variant, to see what was measured.
for n in vmm qemu-seabios qemu-qboot; do
	echo "BENCH-LOG $n (LAB lines):"
	grep 'LAB:' $LAB_TMP/$n.${BENCH_REPS:-3}.log | sed 's/^/BENCH-LOG     /'
done
SCRIPT
sed -i "1i BENCH_REPS=$REPS" "$tmp/script"

export LAB_TIMEOUT=${LAB_TIMEOUT:-1200}
echo "# host: $(bench_machine); mode: $(kvm_mode)"
rc=0
kvm_run -f bench/out/lab-qemu "$tmp/script" | tr -d '\r' | tee "$tmp/log" | grep -a '^BENCH' || rc=$?
grep -aq '^BENCH-RESULT' "$tmp/log" || { echo "FAIL: no results (lab status $rc)" >&2; exit 1; }
if grep -a '^BENCH-RESULT' "$tmp/log" | grep -avq 'status=0$'; then
	echo "FAIL: a run did not end with status 0 (see above)" >&2
	exit 1
fi

# Medians over the repetitions.
med() {
	grep -a "^BENCH-RESULT $1 " "$tmp/log" | sed -n "s/.* $2=\([0-9.-]*\).*/\1/p" | sort -n |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo
echo "| VMM (in L1, TCG) | launch -> init marker, s (median of $REPS) | launch -> VMM exit, s | init ratio to ours | exit ratio to ours |"
echo "|---|---|---|---|---|"
vi=$(med vmm init) ve=$(med vmm exit)
for n in vmm qemu-seabios qemu-qboot; do
	i=$(med $n init) e=$(med $n exit)
	echo "| $n | $i | $e | $(bench_ratio "$i" "$vi") | $(bench_ratio "$e" "$ve") |"
done | tee "$BENCH_OUT/lab-boot.md"
