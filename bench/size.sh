#!/usr/bin/env bash
# bench/size.sh: on-disk size of our vmm next to QEMU and kvmtool.
#
# For each binary: its size as built/installed, its size stripped
# (strip -o, the file itself is untouched), and for a dynamic binary the
# total of it plus every shared library ldd lists (the files the links point
# to, ld-linux included, the vDSO excluded), which is what it needs on disk
# to run. QEMU's firmware, option ROMs and loadable modules
# (/usr/share/qemu, /usr/lib/x86_64-linux-gnu/qemu) are not counted.
#
#   bench/size.sh
#
# Environment:
#   VMM=build/musl/vmm          our vmm as linked by ./build.sh (static,
#                               musl, with symbols; ./build.sh ships ./vmm
#                               stripped from it); ./vmm when absent
#   QEMU=qemu-system-x86_64     Debian qemu-system-x86
#   LKVM="PATH..."              kvmtool builds to include (optional, space
#                               separated: e.g. a default and an
#                               LDFLAGS=-static build)
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$BENCH_REPO"

if [ -z "${VMM:-}" ]; then
	VMM=./vmm
	[ -x build/musl/vmm ] && VMM=build/musl/vmm
fi
QEMU=${QEMU:-$(command -v qemu-system-x86_64 || true)}
[ -x "$VMM" ] || bench_skip "$VMM is not built (run ./build.sh)"

bytes() { stat -L -c %s "$1"; }
human() { awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%.2f MiB", b / 1048576; else printf "%.0f KiB", b / 1024 }'; }

# libs_total BIN: prints "TOTAL NLIBS" for BIN's shared libraries.
libs_total() {
	local total=0 n=0 lib
	for lib in $(ldd "$1" 2>/dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }' | sort -u); do
		total=$((total + $(bytes "$(readlink -f "$lib")")))
		n=$((n + 1))
	done
	echo "$total $n"
}

# row NAME BIN: one table row; also remembers our vmm's sizes for ratios.
ours_built='' ours_stripped='' ours_total=''
row() {
	local name=$1 bin=$2 built stripped linkage libs total nlibs tot_txt
	built=$(bytes "$bin")
	strip -o "$BENCH_OUT/stripped.tmp" "$bin"
	stripped=$(bytes "$BENCH_OUT/stripped.tmp")
	rm -f "$BENCH_OUT/stripped.tmp"
	if file -L "$bin" | grep -q 'dynamically linked'; then
		linkage=dynamic
		read -r libs nlibs < <(libs_total "$bin")
		total=$((stripped + libs))
		tot_txt="$(human $total) ($nlibs libs)"
	else
		linkage=static
		total=$stripped
		tot_txt="$(human $total) (no libs)"
	fi
	if [ -z "$ours_built" ]; then
		ours_built=$built ours_stripped=$stripped ours_total=$total
	fi
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$linkage" \
		"$(human "$built")" "$(human "$stripped")" "$tot_txt" \
		"$(bench_ratio "$stripped" "$ours_stripped")" "$(bench_ratio "$total" "$ours_total")"
}

echo "| binary | linkage | as built | stripped | stripped + shared libs | stripped ratio to ours | total ratio to ours |"
echo "|---|---|---|---|---|---|---|"
{
	row "vmm (ours)" "$VMM"
	if [ -n "$QEMU" ]; then
		row "qemu-system-x86_64 $(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)" "$QEMU"
	else
		echo "(no qemu-system-x86_64: apt-get install qemu-system-x86)" >&2
	fi
	for l in ${LKVM:-}; do
		row "kvmtool lkvm ($l)" "$l"
	done
} | tee "$BENCH_OUT/size.md"
