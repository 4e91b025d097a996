#!/usr/bin/env bash
# Extracts the ELF vmlinux from a bzImage, for the PVH boot path.
#
#   guest-images/extract-vmlinux.sh BZIMAGE OUT
#
# The payload (the compressed vmlinux) is located with the setup header's
# payload_offset (0x248) and payload_length (0x24c), counted from the start
# of the protected-mode code, which follows (setup_sects + 1) * 512 bytes of
# real-mode setup. The kernel build appends the uncompressed size as 4
# little-endian bytes to every payload: they are cut off before
# decompressing and compared with the result. Fails unless OUT is an ELF
# with a Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18).
set -euo pipefail

die() { echo "extract-vmlinux: $*" >&2; exit 1; }

# le32 FILE OFFSET: the unsigned little-endian 32-bit value at OFFSET.
le32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
u8() { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '; }
hexat() { od -An -tx1 -j "$2" -N"$3" "$1" | tr -d ' \n'; }

# decompressor MAGIC_HEX: the command that decompresses stdin to stdout.
decompressor() {
	case $1 in
	1f8b*) echo "gzip -dc" ;;
	fd377a585a00*) echo "xz -dc" ;;
	28b52ffd*) echo "zstd -dcq" ;;
	02214c18*) echo "lz4 -dc" ;;
	425a68*) echo "bzip2 -dc" ;;
	5d0000*) echo "xz -dc --format=lzma" ;;
	894c5a4f*) echo "lzop -dc" ;;
	*) return 1 ;;
	esac
}

main() {
	[ $# -eq 2 ] || die "usage: $0 BZIMAGE OUT"
	local bz=$1 out=$2 setup_sects start off len magic cmd want got
	[ "$(hexat "$bz" $((0x202)) 4)" = 48647253 ] || die "$bz: no 'HdrS' setup header"
	setup_sects=$(u8 "$bz" $((0x1f1)))
	[ "$setup_sects" -ne 0 ] || setup_sects=4
	start=$(((setup_sects + 1) * 512))
	off=$(le32 "$bz" $((0x248)))
	len=$(le32 "$bz" $((0x24c)))
	[ "$len" -gt 4 ] || die "$bz: payload_length is $len"
	magic=$(hexat "$bz" $((start + off)) 6)
	cmd=$(decompressor "$magic") || die "$bz: unknown payload compression (magic $magic)"
	command -v "${cmd%% *}" >/dev/null || die "needs ${cmd%% *} to decompress the payload"
	want=$(le32 "$bz" $((start + off + len - 4)))
	dd if="$bz" bs=64K iflag=skip_bytes,count_bytes skip=$((start + off)) \
		count=$((len - 4)) status=none | $cmd >"$out.tmp" ||
		die "$cmd failed on the payload of $bz"
	got=$(stat -c %s "$out.tmp")
	[ "$got" -eq "$want" ] || die "decompressed $got bytes, the payload says $want"
	[ "$(hexat "$out.tmp" 0 4)" = 7f454c46 ] || die "the payload of $bz is not an ELF"
	readelf -n "$out.tmp" | grep -Eq 'Xen[[:space:]]+0x[0-9a-f]+[[:space:]].*\(0x00000012\)|PHYS32_ENTRY' ||
		die "the vmlinux of $bz has no XEN_ELFNOTE_PHYS32_ENTRY note (CONFIG_PVH=n?)"
	mv "$out.tmp" "$out"
}

main "$@"
