#!/usr/bin/env bash
# bench/startup.sh: time from process start to the first guest instruction
# on this machine's /dev/kvm, our vmm next to QEMU (and kvmtool when given).
#
# Each VMM boots a tiny guest (bench/guest/) whose first instruction that
# reaches the VMM writes the byte 0xa5 to COM1, and whose next one ends the
# VMM: ours gets a PVH ELF ending with port 0x601 <- 1 (ACPI reset
# register, exit 0); QEMU the same ELF ending with port 0xf4 <- 1
# (-device isa-debug-exit, exit 3); kvmtool a flat real-mode binary ending
# with port 0x64 <- 0xfe (i8042 reset, exit 0). bench/runstat.c forks each
# VMM with its stdout on a pipe and reports:
#   first  fork -> the marker byte read from the pipe: process start, VM
#          build, (QEMU: its firmware,) first guest instruction, one I/O exit
#          and the serial write. This is the "start to first instruction".
#   wall   fork -> reaped: the same plus the exit, VM teardown, process exit.
#   CPU    user + sys of the whole run, all threads (wait4 rusage).
#   RSS    peak resident set (ru_maxrss).
#
# Every VMM: 1 vCPU, 128 MiB, serial on stdout, no network, no disk.
# Runs are interleaved (ours, QEMU, kvmtool, ours, ...) so that drift on the
# machine affects all alike. hyperfine (Debian package hyperfine), when
# installed, measures the whole-run wall time again as a cross-check.
#
#   bench/startup.sh [RUNS]        (default 100 runs after 5 warm-up runs)
#
# Environment:
#   VMM=./vmm                  our vmm (copied to bench/out/vmm first)
#   QEMU=qemu-system-x86_64    the peer (Debian qemu-system-x86)
#   LKVM=/path/to/lkvm         kvmtool, optional. On a PVM host kvmtool
#                              refuses to start (its CPUID check for
#                              vmx/svm); see docs/performance.md.
#   QEMU_PC=1                  also QEMU -M pc with qboot (optional)
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$BENCH_REPO"

RUNS=${1:-100}
WARMUP=${WARMUP:-5}
VMM=${VMM:-./vmm}
QEMU=${QEMU:-qemu-system-x86_64}
LKVM=${LKVM:-}
[ -x "$VMM" ] || bench_skip "$VMM is not built (run ./build.sh)"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || bench_skip "no access to /dev/kvm"
command -v "$QEMU" >/dev/null || bench_skip "no $QEMU (apt-get install qemu-system-x86)"

# A copy of the vmm: a rebuild of ./vmm during the run changes nothing.
[ "$VMM" -ef "$BENCH_OUT/vmm" ] || cp "$VMM" "$BENCH_OUT/vmm"
VMM=$BENCH_OUT/vmm
bench/guest/build.sh
gcc -O2 -Wall -Wextra -Werror -o "$BENCH_OUT/runstat" bench/runstat.c
O=$BENCH_OUT
cat >"$O/startup.toml" <<EOF
[vm]
memory = 128M
vcpus = 1
kernel = "tiny-vmm.elf"

[serial]
output = "stdio"
EOF

# QEMU: -cpu host fails on PVM (MSR 0x10a), the default CPU model works
# (and warns that PVM lacks pni). microvm starts its qboot firmware, which
# then enters the PVH entry point.
# shellcheck disable=SC2054 # commas inside -device options
QEMU_COMMON=(-accel kvm -m 128M -smp 1 -nodefaults -no-user-config -nographic
	-serial stdio -net none -device isa-debug-exit,iobase=0xf4,iosize=0x04
	-kernel "$O/tiny-qemu.elf")
cmds=(vmm 0 "$VMM" "$O/startup.toml"
	';' qemu-microvm 3 "$QEMU" -M microvm "${QEMU_COMMON[@]}")
hf=(-n vmm "$VMM $O/startup.toml"
	-n qemu-microvm "$QEMU -M microvm ${QEMU_COMMON[*]}")
if [ "${QEMU_PC:-0}" = 1 ]; then
	cmds+=(';' qemu-pc-qboot 3 "$QEMU" -M pc -bios /usr/share/qemu/qboot.rom "${QEMU_COMMON[@]}")
	hf+=(-n qemu-pc-qboot "$QEMU -M pc -bios /usr/share/qemu/qboot.rom ${QEMU_COMMON[*]}")
fi
if [ -n "$LKVM" ]; then
	cmds+=(';' kvmtool 0 "$LKVM" run --nodefaults -n mode=none -m 128 -c 1
		-k "$O/flat-i8042.bin")
	hf+=(-n kvmtool "$LKVM run --nodefaults -n mode=none -m 128 -c 1 -k $O/flat-i8042.bin")
fi
# The floor: fork + exec + exit of a process doing nothing.
cmds+=(';' floor-true 0 /bin/true)

echo "# $(bench_machine)"
echo "# $RUNS runs each after $WARMUP warm-up runs, interleaved; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$O/runstat" -n "$RUNS" -w "$WARMUP" -- "${cmds[@]}" | tee "$O/startup.txt"

field() { sed -n "s/^$1 .* $2=\([^ ]*\).*/\1/p" "$O/startup.txt"; }
echo
echo "| VMM | start -> first instruction, ms (median) | whole run, ms (median) | CPU ms, user+sys (mean) | max RSS MiB (median) | ratio to ours: first / whole / CPU / RSS |"
echo "|---|---|---|---|---|---|"
vf=$(field vmm first_med) vw=$(field vmm wall_med) vc=$(field vmm cpu_mean) vr=$(field vmm rss_med)
for l in vmm qemu-microvm qemu-pc-qboot kvmtool floor-true; do
	w=$(field $l wall_med)
	[ -n "$w" ] || continue
	f=$(field $l first_med) c=$(field $l cpu_mean) r=$(field $l rss_med)
	if [ "$f" = -1.00 ]; then
		ft=- fr=-
	else
		ft=$(printf %.1f "$f") fr=$(bench_ratio "$f" "$vf")
	fi
	printf '| %s | %s | %.1f | %.1f | %.1f | %s / %s / %s / %s |\n' "$l" "$ft" "$w" "$c" \
		"$(awk -v r="$r" 'BEGIN { print r / 1024 }')" \
		"$fr" "$(bench_ratio "$w" "$vw")" "$(bench_ratio "$c" "$vc")" "$(bench_ratio "$r" "$vr")"
done | tee "$O/startup.md"

if command -v hyperfine >/dev/null; then
	echo
	echo "# hyperfine cross-check (wall time; QEMU's exit status 3 is expected: -i)"
	hyperfine -N -i --style basic --warmup "$WARMUP" --runs "$RUNS" \
		--export-markdown "$O/startup-hyperfine.md" "${hf[@]}" >/dev/null 2>&1 ||
		echo "hyperfine failed" >&2
	cat "$O/startup-hyperfine.md"
fi
