# Helpers for the qcow2 end-to-end tests (tests/qcow2/test_*.sh), which put
# our block layer next to Debian's qemu-utils: images made by qemu-img and
# qemu-io, read and written through the vmm's data path by diskload
# (tests/qcow2/diskload.c), checked by qemu-img. Source it from bash.
#
# Environment: QCOW2_VARIANT picks the build whose diskload runs (musl, the
# default, asan or tsan).

QT_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DISKLOAD=$QT_REPO/build/${QCOW2_VARIANT:-musl}/tests/qcow2/diskload

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
