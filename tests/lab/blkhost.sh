# Helpers for the virtio-blk lab tests (tests/lab/test_blk_*.sh), on the
# KVM host that kvm_run runs their script on (L1's busybox ash, or sh on
# this machine). POSIX sh. Source it after kvmhost.sh. Results are lines
# "LAB-HOST: KEY=VALUE" for the test to check; the guest side, whose
# "LAB-BLK: ..." lines they are compared with, is guest-images/lab-blk.

# blk_disk CONFIG NAME PATH [LINE...]: appends [disk.NAME] with path = PATH
# and each LINE (such as 'cache = "none"').
blk_disk() {
	_cfg=$1
	printf '\n[disk.%s]\npath = "%s"\n' "$2" "$3" >>"$_cfg"
	shift 3
	for _l in "$@"; do echo "$_l" >>"$_cfg"; done
}

# blk_random FILE MIB: FILE with MIB MiB of random bytes, fully allocated.
blk_random() {
	dd if=/dev/urandom of="$1" bs=1M count="$2" 2>/dev/null
}

# blk_say KEY VALUE: the line "LAB-HOST: KEY=VALUE".
blk_say() { echo "LAB-HOST: $1=$2"; }

# blk_sha FILE: the line "LAB-HOST: NAME sha256=HEX", NAME being FILE's
# base name.
blk_sha() {
	blk_say "${1##*/} sha256" "$(sha256sum "$1" | cut -d' ' -f1)"
}

# blk_blocks FILE: its allocated 512-byte blocks.
blk_blocks() { stat -c %b "$1"; }

# blk_check KEY CMD...: runs CMD quietly; says KEY=ok or KEY=failed.
blk_check() {
	_key=$1
	shift
	if "$@" >/dev/null 2>&1; then blk_say "$_key" ok; else blk_say "$_key" failed; fi
}

# blk_pattern SEED SECTOR: the 4 KiB that lab-blk's write step puts at
# SECTOR (the same definition as guest-images/lab-blk).
blk_pattern() { yes "$1-$2" | head -c 4096; }

# blk_expect ORIG OUT SEED SECTORS ZEROED: OUT is ORIG as the guest should
# leave it: the patterns of SEED at the comma-separated SECTORS, and zeros
# in each ZEROED range (space-separated OFFSET:LENGTH in bytes, multiples of
# 1 MiB).
blk_expect() {
	cp "$1" "$2"
	for _s in $(echo "$4" | tr , ' '); do
		blk_pattern "$3" "$_s" | dd of="$2" bs=512 seek="$_s" conv=notrunc 2>/dev/null
	done
	for _r in $5; do
		dd if=/dev/zero of="$2" bs=1M seek=$((${_r%:*} / 1048576)) \
			count=$((${_r#*:} / 1048576)) conv=notrunc 2>/dev/null
	done
}

# blk_direct_ok DIR: true when files in DIR can be opened with O_DIRECT.
blk_direct_ok() {
	dd if=/dev/zero of="$1/.direct" bs=4096 count=1 oflag=direct 2>/dev/null
	_ok=$?
	rm -f "$1/.direct"
	return $_ok
}

# blk_direct_dir: prints a folder where O_DIRECT works, for disks with
# cache = "none": LAB_TMP if it has O_DIRECT, else an ext4 file system on a
# loop device at LAB_TMP/direct (L1's /tmp is tmpfs, which has O_DIRECT only
# since Linux 6.6). Returns non-zero with a message when it cannot.
blk_direct_dir() {
	blk_direct_ok "$LAB_TMP" && { echo "$LAB_TMP"; return 0; }
	[ -e /sys/module/loop ] || insmod /lib/modules/loop.ko 2>/dev/null
	mkdir -p "$LAB_TMP/direct"
	# busybox mke2fs takes only a block device.
	if dd if=/dev/zero of="$LAB_TMP/ext4.img" bs=1M count=0 seek=128 2>/dev/null &&
		_loop=$(losetup -f) && losetup "$_loop" "$LAB_TMP/ext4.img" &&
		mke2fs -q "$_loop" >/dev/null 2>&1 &&
		mount -t ext4 "$_loop" "$LAB_TMP/direct" &&
		blk_direct_ok "$LAB_TMP/direct"; then
		echo "$LAB_TMP/direct"
	else
		echo "blk_direct_dir: no file system with O_DIRECT for cache = none" >&2
		return 1
	fi
}
