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
