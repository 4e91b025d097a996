# shellcheck shell=bash disable=SC2034
# Helpers shared by the bench/ scripts (bash). Source it: . bench/common.sh
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_REPO=$(cd "$BENCH_DIR/.." && pwd)
BENCH_OUT=$BENCH_DIR/out
mkdir -p "$BENCH_OUT"

bench_skip() { echo "SKIP: $*" >&2; exit 77; }

# bench_need_pkgs PKG...: exits with the apt-get line when a Debian package
# is missing (the benchmarks never install anything themselves).
bench_need_pkgs() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "missing packages; run: apt-get install -y ${missing[*]}" >&2
	exit 1
}

# bench_ratio A B: A / B with two decimals.
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }

# bench_machine: one line of machine facts for the reports.
bench_machine() {
	local kvm=none
	[ -e /sys/module/kvm_pvm ] && kvm="PVM (kvm_pvm)"
	[ -e /sys/module/kvm_intel ] && kvm="VT-x (kvm_intel)"
	[ -e /sys/module/kvm_amd ] && kvm="SVM (kvm_amd)"
	echo "$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), kernel $(uname -r), /dev/kvm: $kvm"
}

# bench_callgrind_ir BLK DEPTH "N1 N2" ARGS...: instructions per request of
# bench/blk ARGS (one queue, the loops on the driver's thread: blk -i),
# as "device driver": the device's (inside loop_run_once) and the guest
# driver's (the rest), each the slope between runs of N1 and N2 requests,
# so start-up and teardown cancel out. Repeatable, unlike timings here.
bench_callgrind_ir() {
	local blk=$1 depth=$2 reqs=$3 n t a b dev=() all=() out
	shift 3
	out=$(mktemp)
	for n in $reqs; do
		for t in dev all; do
			a=(valgrind --tool=callgrind --callgrind-out-file="$out")
			[ $t = dev ] && a+=(--collect-atstart=no --toggle-collect=loop_run_once)
			b=$("${a[@]}" "$blk" -i -q 1 -t 1 -d "$depth" -r "$n" "$@" 2>&1 >/dev/null |
				sed -n 's/.*I *refs: *//p' | tr -d ,)
			[ $t = dev ] && dev+=("$b") || all+=("$b")
		done
	done
	rm -f "$out"
	awk -v d0="${dev[0]}" -v d1="${dev[1]}" -v a0="${all[0]}" -v a1="${all[1]}" \
		-v n="$reqs" 'BEGIN { split(n, r, " "); k = r[2] - r[1]
		printf "%.0f %.0f\n", (d1 - d0) / k, ((a1 - d1) - (a0 - d0)) / k }'
}
