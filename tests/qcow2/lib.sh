# Helpers for the qcow2 end-to-end tests (tests/qcow2/test_*.sh), which put
# our block layer next to Debian's qemu-utils: images made by qemu-img and
# qemu-io, read and written through the vmm's data path by diskload
# (tests/qcow2/diskload.c), checked by qemu-img. Source it from bash.
#
# Environment: QCOW2_VARIANT picks the build whose diskload runs (musl, the
# default, asan or tsan).

QT_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DISKLOAD=$QT_REPO/build/${QCOW2_VARIANT:-musl}/tests/qcow2/diskload
# A data race ends diskload at once, so that a run that is then killed
# still fails.
export TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}"

qt_skip() { echo "SKIP: $*"; exit 77; }
qt_fail() { echo "FAIL: $*"; exit 1; }

# qt_require: skips unless diskload is built and qemu-img and qemu-io are
# installed; makes QT_TMP (images, under /var/tmp where O_DIRECT works) and
# QT_SHM (journals and raw copies, tmpfs), removed on exit.
qt_require() {
	[ -x "$DISKLOAD" ] || qt_skip "$DISKLOAD is not built (run ./build.sh)"
	command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
		qt_skip "no qemu-img or qemu-io (apt-get install qemu-utils)"
	QT_TMP=$(mktemp -d /var/tmp/vmm-qcow2.XXXXXX) || exit 1
	QT_SHM=$(mktemp -d "$([ -w /dev/shm ] && echo /dev/shm || echo /tmp)/vmm-qcow2.XXXXXX") ||
		exit 1
	trap 'rm -rf "$QT_TMP" "$QT_SHM"' EXIT
}

# qt_check IMAGE: qemu-img check's verdict on IMAGE: "clean", "leaks" or
# "corrupt" (its report on stderr then), "failed" when it could not check.
qt_check() {
	local out rc
	out=$(qemu-img check -f qcow2 "$1" 2>&1)
	rc=$?
	case $rc in
	0) echo clean ;;
	3) echo leaks ;;
	2) echo corrupt; echo "$out" >&2 ;;
	*) echo failed; echo "$out" >&2 ;;
	esac
}

# qt_raw IMAGE FMT OUT: IMAGE's contents as qemu-img reads them, as the raw
# file OUT.
qt_raw() {
	qemu-img convert -f "$2" -O raw "$1" "$3" || qt_fail "qemu-img convert $1 failed"
}

# qt_sha FILE: FILE's sha256.
qt_sha() { sha256sum "$1" | cut -d' ' -f1; }

# qt_io IMAGE FMT CMD...: runs each qemu-io command on IMAGE, quietly.
qt_io() {
	local img=$1 fmt=$2 args=() c
	shift 2
	for c in "$@"; do args+=(-c "$c"); done
	qemu-io -f "$fmt" "${args[@]}" "$img" >/dev/null || qt_fail "qemu-io on $img: $*"
}

# Images and workloads of 64 MiB (QT_SIZE); QT_OPS requests per workload.
QT_SIZE=64M
QT_OPS=${QT_OPS:-3000}
QT_IMAGES=0	# workloads passed, for the PASS lines

# qt_random: QT_SHM/random, 1 MiB of random bytes for qemu-io -s.
qt_random() { head -c 1M /dev/urandom >"$QT_SHM/random"; }

# qt_agree WHAT IMAGE FMT: diskload reads IMAGE exactly as qemu-img does.
qt_agree() {
	qt_raw "$2" "$3" "$QT_SHM/qemu.raw"
	"$DISKLOAD" dump -F "$3" -i "$2" -o "$QT_SHM/ours.raw" >/dev/null ||
		qt_fail "$1: diskload could not read $2"
	[ "$(qt_sha "$QT_SHM/ours.raw")" = "$(qt_sha "$QT_SHM/qemu.raw")" ] ||
		qt_fail "$1: our stack reads other bytes than qemu-img ($(cmp "$QT_SHM/ours.raw" \
			"$QT_SHM/qemu.raw" | head -n 1))"
}

# qt_workload WHAT IMAGE [MIX]: the same random requests (diskload
# workload, MIX as there) on IMAGE (qcow2) and on a raw copy of its
# contents; then qemu-img check is clean, qemu-img compare finds them
# equal, and qt_agree. With discards in MIX, no compare (a discarded range
# may read as anything). L2: bytes of L2 cache (default: the driver's).
qt_workload() {
	local what=$1 img=$2 mix=${3:-wwwwwzzrrf} seed=$RANDOM$RANDOM v
	qt_raw "$img" qcow2 "$QT_SHM/before.raw"
	cp "$QT_SHM/before.raw" "$QT_SHM/ref.raw"
	"$DISKLOAD" workload -F qcow2 -i "$img" -b "$QT_SHM/before.raw" -n "$QT_OPS" -s "$seed" \
		-m "$mix" -l "${L2:-0}" >/dev/null ||
		qt_fail "$what: the workload (seed $seed${L2:+, l2_cache $L2}) failed on the image"
	v=$(qt_check "$img")
	[ "$v" = clean ] || qt_fail "$what: after the workload (seed $seed) qemu-img check: $v"
	if [[ $mix != *d* ]]; then
		"$DISKLOAD" workload -F raw -i "$QT_SHM/ref.raw" -b "$QT_SHM/before.raw" -n "$QT_OPS" \
			-s "$seed" -m "$mix" >/dev/null || qt_fail "$what: the workload failed on raw"
		qemu-img compare -q -f qcow2 -F raw "$img" "$QT_SHM/ref.raw" ||
			qt_fail "$what: after the workload (seed $seed) the image differs from its raw" \
				"reference: $(qemu-img compare -f qcow2 -F raw "$img" "$QT_SHM/ref.raw" 2>&1)"
	fi
	qt_agree "$what, after the workload (seed $seed)" "$img" qcow2
	QT_IMAGES=$((QT_IMAGES + 1))
}

# qt_populate IMAGE FMT: qemu-io writes patterns, unaligned random bytes
# (qt_random first), the disk's last 4 KiB, zeroes over data (plain and
# unmapped) and a discard; on qcow2 also a compressed cluster (CLUSTER
# bytes, default 64 KiB).
qt_populate() {
	qt_io "$1" "$2" "write -P 0x5a 0 1M" "write -s $QT_SHM/random 3146240 716800" \
		"write -P 0x6b 5M 64k" "write -P 0x77 40M 4M" "write -z 41M 1M" \
		"write -z -u 42M 1M" "discard 43M 512k" "write -P 0x99 67104768 4096"
	[ "$2" = raw ] || qt_io "$1" "$2" "write -c -P 0x42 16M ${CLUSTER:-65536}"
}

# qt_fresh NAME CLUSTER COMPAT [OPTS]: prints the path of QT_TMP/NAME, a new
# qcow2 image made by qemu-img create.
qt_fresh() {
	qemu-img create -q -f qcow2 -o "cluster_size=$2,compat=$3${4:+,$4}" "$QT_TMP/$1" $QT_SIZE ||
		qt_fail "qemu-img create $1 ($2, $3, $4) failed"
	echo "$QT_TMP/$1"
}
