#!/usr/bin/env bash
# Runs a script on a KVM host that can boot stock Linux: directly on this
# machine when its /dev/kvm uses hardware virtualization (kvm_intel or
# kvm_amd loaded), otherwise inside the nested lab: an L1 Linux under QEMU
# TCG with AMD SVM, whose real KVM runs our vmm (see
# ../shared/notes/kvm-here.md).
#
# As a library (source it from bash):
#   kvm_mode                    prints "direct" or "lab" (LAB_MODE overrides)
#   lab_require                 exits 77 with a reason when nothing can run
#   kvm_run [-i] [-f FILE]... SCRIPT
#       runs SCRIPT (POSIX sh, busybox ash in the lab) with the repo root as
#       its working directory and LAB_MODE, LAB_ROOT (repo root), LAB_TMP (a
#       scratch folder), LAB_VMM (the vmm) exported (tests/lab/kvmhost.sh has
#       helpers for it); returns SCRIPT's exit status (255 when the
#       lab itself failed). stdin goes to SCRIPT (through QEMU's serial line
#       in the lab), its output to stdout. In the lab the image holds ./vmm,
#       examples/, tests/lab/, guest-images/out/{vmlinuz,demo-initrd.*} and
#       each -f FILE (repo-relative), at the same paths under /vmm.
#       -i: interactive (QEMU keeps the terminal; no LAB_TIMEOUT).
# As a command:
#   tests/lab/lab.sh [-i] [-f FILE]... SCRIPT
#
# Environment: LAB_MODE=direct|lab, LAB_TIMEOUT (seconds, default 600),
# LAB_BOOT_MAX (stop an L1 that has not come up after this long, default 120),
# LAB_L1_CPUS (L1's CPU count, default 1; see docs/lab.md),
# LAB_QEMU (default qemu-system-x86_64), LAB_VMM (default ./vmm).

LAB_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB_QEMU=${LAB_QEMU:-qemu-system-x86_64}
LAB_VMM=${LAB_VMM:-$LAB_REPO/vmm}
LAB_L1_FILES="examples tests/lab guest-images/out/vmlinuz guest-images/out/demo-initrd.cpio.gz
guest-images/out/demo-initrd.marker"

# True when this machine's /dev/kvm uses VT-x/SVM and so boots stock Linux.
kvm_hw() {
	[ -e /sys/module/kvm_intel ] || [ -e /sys/module/kvm_amd ]
}

kvm_mode() {
	case ${LAB_MODE:-} in
	direct | lab) echo "$LAB_MODE" ;;
	"") if kvm_hw; then echo direct; else echo lab; fi ;;
	*) echo "LAB_MODE must be direct or lab, not '$LAB_MODE'" >&2; return 1 ;;
	esac
}

lab_skip() { echo "SKIP: $*"; exit 77; }

lab_require() {
	local mode
	mode=$(kvm_mode) || exit 1
	[ -x "$LAB_VMM" ] || lab_skip "$LAB_VMM is not built (run ./build.sh)"
	if [ "$mode" = direct ]; then
		[ -r /dev/kvm ] && [ -w /dev/kvm ] || lab_skip "no access to /dev/kvm"
	else
		command -v "$LAB_QEMU" >/dev/null || lab_skip "no $LAB_QEMU (apt-get install qemu-system-x86)"
		command -v cpio >/dev/null || lab_skip "no cpio (apt-get install cpio)"
		# L1 has no libc: the vmm must be static (or a busybox sh script).
		head -c 2 "$LAB_VMM" | grep -q '#!' || file -L "$LAB_VMM" | grep -q 'statically linked' ||
			lab_skip "$LAB_VMM is not static; the lab's L1 has no libc"
	fi
	"$LAB_REPO/guest-images/build.sh" || lab_skip "guest-images/build.sh failed (see above)"
}

# lab_base_cpio: guest-images/out/lab/l1-base.cpio (busybox, modules, /init),
# rebuilt when an input changed.
lab_base_cpio() {
	local out=$LAB_REPO/guest-images/out/lab base dir a m
	base=$out/l1-base.cpio
	mkdir -p "$out"
	if [ -e "$base" ] && [ ! "$LAB_REPO/tests/lab/l1-init" -nt "$base" ] &&
		[ ! "${BASH_SOURCE[0]}" -nt "$base" ] && [ ! /bin/busybox -nt "$base" ] &&
		[ ! "$LAB_REPO/guest-images/out/kernel-version" -nt "$base" ]; then
		echo "$base"
		return 0
	fi
	dir=$(mktemp -d "$out/.l1.XXXXXX")
	mkdir -p "$dir/bin" "$dir/sbin" "$dir/usr/bin" "$dir/usr/sbin" "$dir/lib/modules" \
		"$dir/proc" "$dir/sys" "$dir/dev" "$dir/tmp" "$dir/root" "$dir/etc"
	cp /bin/busybox "$dir/bin/busybox"
	for a in $(/bin/busybox --list-full); do
		[ -e "$dir/$a" ] || ln -s /bin/busybox "$dir/$a"
	done
	# loop: loaded on demand (tests/lab/blkhost.sh).
	for m in irqbypass kvm kvm-amd loop; do
		cp "$LAB_REPO/guest-images/out/l1-modules/$m.ko" "$dir/lib/modules/"
	done
	install -m 755 "$LAB_REPO/tests/lab/l1-init" "$dir/init"
	(cd "$dir" && find . -mindepth 1 | LC_ALL=C sort |
		cpio --quiet -o -H newc -R 0:0 --reproducible) >"$base.tmp"
	rm -rf "$dir"
	mv "$base.tmp" "$base"
	echo "$base"
}

# lab_staged DIR PATH: true when DIR/PATH is already in the staging tree
# DIR, itself or through a linked parent folder.
lab_staged() {
	local p=$2
	[ -e "$1/$p" ] || [ -L "$1/$p" ] && return 0
	while [ "$p" != "${p%/*}" ]; do
		p=${p%/*}
		[ -L "$1/$p" ] && return 0
	done
	return 1
}

# lab_cpio TMP SCRIPT NONCE FILE...: writes TMP/l1.cpio, the base archive
# followed by the vmm, the repo files and the script (the kernel unpacks
# concatenated newc archives in order).
lab_cpio() {
	local tmp=$1 script=$2 nonce=$3 base f
	shift 3
	base=$(lab_base_cpio) || return 1
	mkdir -p "$tmp/root/vmm" "$tmp/root/lab"
	ln -s "$LAB_VMM" "$tmp/root/vmm/vmm"
	for f in $LAB_L1_FILES "$@"; do
		[ -e "$LAB_REPO/$f" ] || continue
		# Already there through a linked folder: never write through it.
		lab_staged "$tmp/root/vmm" "$f" && continue
		mkdir -p "$tmp/root/vmm/$(dirname "$f")"
		ln -s "$LAB_REPO/$f" "$tmp/root/vmm/$f"
	done
	cp "$script" "$tmp/root/lab/script"
	echo "$nonce" >"$tmp/root/lab/nonce"
	# -L stores what the links point to; find -L walks linked folders.
	{
		cat "$base"
		(cd "$tmp/root" && find -L . -mindepth 1 | LC_ALL=C sort |
			cpio --quiet -o -H newc -R 0:0 -L)
	} >"$tmp/l1.cpio"
}

# lab_qemu_argv TMP: sets LAB_ARGV to QEMU's arguments for L1.
lab_qemu_argv() {
	LAB_ARGV=(-accel tcg,thread=multi -cpu EPYC-Rome,+svm,+npt -m 2048 -smp "${LAB_L1_CPUS:-1}"
		-nographic -echr 0x1d -no-reboot -net none
		-kernel "$LAB_REPO/guest-images/out/vmlinuz" -initrd "$1/l1.cpio"
		-append "console=ttyS0 panic=-1 quiet")
	# -echr: QEMU's escape is Ctrl-] (Ctrl-] x quits), so that Ctrl-A
	# reaches the vmm, whose Ctrl-A x stops the VM as it does outside the lab.
	# qboot starts faster than SeaBIOS and does not clear the terminal.
	[ -e /usr/share/qemu/qboot.rom ] && LAB_ARGV+=(-bios /usr/share/qemu/qboot.rom)
	return 0
}

# L1 has one CPU: with two, QEMU's multi-threaded emulation of nested SVM
# crashed L1 or L2 in up to half of the heavy runs (docs/lab.md). Should L1
# still wedge a CPU inside KVM, its kernel reports a soft lockup and the run
# could only time out, so it is stopped at once (tests/run.sh retries a
# failed lab test once).
LAB_LOCKUP='watchdog: BUG: soft lockup'

# Seconds within which a healthy L1 prints LAB-L1-UP (it takes ~10).
LAB_BOOT_MAX=${LAB_BOOT_MAX:-120}

# lab_cpu_ticks TMP: the CPU time, in clock ticks, that the processes
# running TMP's L1 (timeout and QEMU) have used so far.
lab_cpu_ticks() {
	local pid t sum=0
	for pid in $(pgrep -f "$1/l1.cpio"); do
		t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) && sum=$((sum + ${t:-0}))
	done
	echo "$sum"
}

# lab_qemu_watched TMP: runs L1 without a terminal, its console to stdout and
# TMP/console.log, and stops it early if L1 reports a soft lockup, has not
# come up (LAB-L1-UP from l1-init) within LAB_BOOT_MAX seconds, or is
# wedged: its CPU halted for good, so QEMU has used under 0.1% of a CPU for
# 60 s (an idle L1 takes 0.4%, a busy one all of a CPU; docs/lab.md). Sets
# rc to QEMU's status (124/137 on timeout).
lab_qemu_watched() {
	local tmp=$1 watch
	: >"$tmp/console.log"
	(
		waited=0 idle=0 last=0 why=
		while sleep 2; do
			waited=$((waited + 2))
			if [ $((waited % 30)) = 0 ]; then
				now=$(lab_cpu_ticks "$tmp")
				if [ $((now - last)) -lt 3 ]; then idle=$((idle + 30)); else idle=0; fi
				last=$now
			fi
			if grep -q "$LAB_LOCKUP" "$tmp/console.log"; then
				why="L1 reported a soft lockup"
			elif [ $waited -ge $LAB_BOOT_MAX ] && ! grep -q LAB-L1-UP "$tmp/console.log"; then
				why="L1 not up after $waited s"
			elif [ $idle -ge 60 ]; then
				why="L1 wedged: QEMU used no CPU for $idle s"
			fi
			if [ -n "$why" ]; then
				echo "lab: stopping L1 ($why)" >&2
				exec pkill -f "$tmp/l1.cpio"
			fi
		done
	) &
	watch=$!
	timeout -k 5 "${LAB_TIMEOUT:-600}" "$LAB_QEMU" "${LAB_ARGV[@]}" -d cpu_reset -D "$tmp/qemu.log" \
		2> >(grep -v "TCG doesn't support requested feature" >&2) | tee -a "$tmp/console.log"
	rc=${PIPESTATUS[0]}
	kill "$watch" 2>/dev/null
	wait "$watch" 2>/dev/null
}

# lab_run [-i] [-f FILE]... SCRIPT: kvm_run in the nested lab.
lab_run() {
	local interactive=0 files=() script tmp nonce rc= status
	while [ $# -gt 0 ]; do
		case $1 in
		-i) interactive=1; shift ;;
		-f) files+=("$2"); shift 2 ;;
		*) break ;;
		esac
	done
	script=$1
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/lab.XXXXXX")
	nonce=$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')
	lab_cpio "$tmp" "$script" "$nonce" "${files[@]}" || { rm -rf "$tmp"; return 255; }
	lab_qemu_argv "$tmp"
	# TCG lacks some of EPYC-Rome's features and says so, harmlessly.
	if [ $interactive = 1 ]; then
		"$LAB_QEMU" "${LAB_ARGV[@]}" 2> >(grep -v "TCG doesn't support requested feature" >&2) |
			tee "$tmp/console.log"
	else
		lab_qemu_watched "$tmp"
	fi
	rc=${rc:-${PIPESTATUS[0]}}
	status=$(tr -d '\r' <"$tmp/console.log" | sed -n "s/^LAB-EXIT-$nonce: \([0-9]*\)\$/\1/p" | tail -n 1)
	# QEMU logs an L1 triple fault (docs/lab.md), which L1 cannot report.
	[ -z "$status" ] && grep -q '^Triple fault' "$tmp/qemu.log" 2>/dev/null &&
		echo "lab: L1 triple-faulted (QEMU's -d cpu_reset log)" >&2
	rm -rf "$tmp"
	if [ -z "$status" ]; then
		if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
			echo "lab: L1 timed out after ${LAB_TIMEOUT:-600} s without reporting the script's status" >&2
		else
			echo "lab: L1 ended (qemu status $rc) without reporting the script's status" >&2
		fi
		return 255
	fi
	return "$status"
}

# direct_run [-i] [-f FILE]... SCRIPT: kvm_run on this machine's /dev/kvm.
direct_run() {
	local tmp rc
	while [ $# -gt 0 ]; do
		case $1 in
		-i) shift ;;
		-f) shift 2 ;;
		*) break ;;
		esac
	done
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/lab.XXXXXX")
	(cd "$LAB_REPO" && LAB_MODE=direct LAB_ROOT=$LAB_REPO LAB_TMP=$tmp \
		LAB_VMM=$LAB_VMM sh "$1")
	rc=$?
	rm -rf "$tmp"
	return $rc
}

kvm_run() {
	local script
	script=${!#}
	[ -r "$script" ] || { echo "kvm_run: no script '$script'" >&2; return 2; }
	case $(kvm_mode) in
	direct) direct_run "$@" ;;
	lab) lab_run "$@" ;;
	*) return 2 ;;
	esac
}

# Checks for the tests, on the console log that kvm_run printed.

lab_fail() { echo "FAIL: $*"; exit 1; }

# lab_section LOG NAME: the lines run_vmm (kind RUN) or show_file (kind
# FILE) printed for NAME, without carriage returns. Usage:
#   lab_section LOG RUN boot; lab_section LOG FILE serial
lab_section() {
	tr -d '\r' <"$1" | sed -n "/LAB-$2-BEGIN $3\$/,/LAB-$2-END $3\( \|\$\)/p"
}

# lab_run_status LOG NAME: the vmm's exit status in run NAME ("" if the run
# did not end).
lab_run_status() {
	tr -d '\r' <"$1" | sed -n "s/.*LAB-RUN-END $2 status=\([0-9]*\) .*/\1/p" | tail -n 1
}

# lab_value LOG PREFIX [KIND NAME]: the rest of the last line that starts
# with PREFIX, in the whole log or in section KIND NAME ("" if none).
lab_value() {
	if [ $# -ge 4 ]; then lab_section "$1" "$3" "$4"; else tr -d '\r' <"$1"; fi |
		awk -v p="$2" 'index($0, p) == 1 { v = substr($0, length(p) + 1) } END { print v }'
}

# lab_expect_line LOG KIND NAME LINE WHAT: fails with WHAT unless the
# section has exactly the line LINE.
lab_expect_line() {
	lab_section "$1" "$2" "$3" | grep -Fxq -- "$4" ||
		lab_fail "$5 (no line '$4' in the $2 section $3)"
}

# lab_expect_exit LOG NAME STATUS WHAT: fails unless run NAME ended with STATUS.
lab_expect_exit() {
	local got
	got=$(lab_run_status "$1" "$2")
	[ -n "$got" ] || lab_fail "$4: run $2 never ended (lab failure or timeout)"
	[ "$got" = "$3" ] || lab_fail "$4: the vmm exited with status $got, expected $3"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -uo pipefail
	[ $# -ge 1 ] || { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
	lab_require
	kvm_run "$@"
	exit $?
fi
