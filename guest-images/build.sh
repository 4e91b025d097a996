#!/usr/bin/env bash
# Builds the guest images into guest-images/out/ (idempotent; does nothing
# when everything is up to date):
#   vmlinuz               the newest installed Debian cloud kernel (bzImage)
#   vmlinux               its ELF vmlinux, for the PVH boot path
#   demo-initrd.cpio.gz   busybox initramfs with demo-init as /init, the
#                         virtio modules, lab-blk (the guest side of the
#                         virtio-blk lab tests) and util-linux's blkdiscard
#                         and fallocate with their glibc libraries
#   demo-initrd.marker    the content of the initrd's /etc/lab-marker
#   fio-initrd.cpio.gz    the same plus Debian's fio with every library it
#                         links (about 80 MiB unpacked); only when the fio
#                         package is installed
#   demo-disk.img         16 MiB of zeros, the disk of examples/disk.toml
#                         (made when absent, then kept: the guest writes it)
#   l1-modules/*.ko       irqbypass, kvm, kvm-amd for the nested lab's L1, and
#                         loop (an O_DIRECT-capable file system for disks)
#   kernel-version        the version of all of the above
# Needs: linux-image-cloud-amd64, busybox-static, cpio, gzip, lz4 (or the
# tool matching the kernel's compression), binutils (readelf), util-linux;
# fio for fio-initrd.cpio.gz.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/out
MARKER="lab-demo-initrd-ok"
VIRTIO_MODS="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci drivers/virtio/virtio_mmio
drivers/block/virtio_blk"
L1_MODS="virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd drivers/block/loop"

die() { echo "guest-images: $*" >&2; exit 1; }

# fresh TARGET INPUT...: true when TARGET exists and no INPUT is newer.
fresh() {
	local t=$1 i
	shift
	[ -e "$t" ] || return 1
	for i in "$@"; do [ "$i" -nt "$t" ] && return 1; done
	return 0
}

newest_kernel() {
	local k
	k=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)
	[ -n "$k" ] || die "no /boot/vmlinuz-*-cloud-amd64; apt-get install linux-image-cloud-amd64"
	echo "$k"
}

# copy_module KVER REL DEST: kernel/REL.ko from /lib/modules/KVER, decompressed.
copy_module() {
	local base=/lib/modules/$1/kernel/$2 dest=$3
	if [ -e "$base.ko" ]; then cp "$base.ko" "$dest"
	elif [ -e "$base.ko.xz" ]; then xz -dc "$base.ko.xz" >"$dest"
	elif [ -e "$base.ko.zst" ]; then zstd -dcq "$base.ko.zst" >"$dest"
	elif [ -e "$base.ko.gz" ]; then gzip -dc "$base.ko.gz" >"$dest"
	else die "no module $base.ko{,.xz,.zst,.gz}"
	fi
}

# busybox_tree DIR: busybox with a link per applet.
busybox_tree() {
	local dir=$1 bb=/bin/busybox a
	[ -x "$bb" ] && file -L "$bb" | grep -q 'statically linked' ||
		die "need a static /bin/busybox; apt-get install busybox-static"
	mkdir -p "$dir/bin" "$dir/sbin" "$dir/usr/bin" "$dir/usr/sbin"
	cp "$bb" "$dir/bin/busybox"
	for a in $("$bb" --list-full); do
		[ -e "$dir/$a" ] || ln -s /bin/busybox "$dir/$a"
	done
}

# install_elf DIR FILE DEST: the dynamically linked program FILE as
# DIR/DEST, with the libraries and the loader that ldd finds for it at
# their own paths under DIR, so that it runs with DIR as the root.
install_elf() {
	local dir=$1 f=$2 libs lib
	libs=$(ldd "$f") || die "ldd $f failed"
	! grep -q 'not found' <<<"$libs" || die "ldd $f: a library is missing"
	for lib in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs"); do
		mkdir -p "$dir$(dirname "$lib")"
		cp -L "$lib" "$dir$lib"
	done
	mkdir -p "$dir$(dirname "$3")"
	install -m 755 "$f" "$dir$3"
}

# pkg_file PACKAGE NAME: the path of program NAME of an installed PACKAGE.
pkg_file() {
	dpkg -L "$1" 2>/dev/null | grep "bin/$2\$" | tail -n 1 | grep .
}

# mkcpio DIR OUT: a newc archive of DIR, owned by root, in a stable order.
mkcpio() {
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort |
		cpio --quiet -o -H newc -R 0:0 --reproducible)
}

build_kernel() {
	local k=$1
	fresh "$OUT/vmlinuz" "$k" "$OUT/kernel-version" || cp "$k" "$OUT/vmlinuz"
	fresh "$OUT/vmlinux" "$OUT/vmlinuz" "$HERE/extract-vmlinux.sh" ||
		"$HERE/extract-vmlinux.sh" "$OUT/vmlinuz" "$OUT/vmlinux"
}

build_l1_modules() {
	local kver=$1 m
	mkdir -p "$OUT/l1-modules"
	for m in $L1_MODS; do
		fresh "$OUT/l1-modules/$(basename "$m").ko" "$OUT/kernel-version" ||
			copy_module "$kver" "$m" "$OUT/l1-modules/$(basename "$m").ko"
	done
}

# demo_tree KVER DIR: the demo initramfs's files.
demo_tree() {
	local kver=$1 dir=$2 m p f
	busybox_tree "$dir"
	mkdir -p "$dir/proc" "$dir/sys" "$dir/dev" "$dir/tmp" "$dir/root" "$dir/etc" \
		"$dir/lib/modules/virtio"
	install -m 755 "$HERE/demo-init" "$dir/init"
	install -m 755 "$HERE/lab-blk" "$dir/bin/lab-blk"
	echo "$MARKER" >"$dir/etc/lab-marker"
	for m in $VIRTIO_MODS; do
		copy_module "$kver" "$m" "$dir/lib/modules/virtio/$(basename "$m").ko"
	done
	echo "$VIRTIO_MODS" | xargs -n1 basename >"$dir/lib/modules/virtio/order"
	# busybox's blkdiscard has no -z and its fallocate no -p.
	for p in blkdiscard fallocate; do
		f=$(pkg_file util-linux $p) || die "util-linux has no $p"
		install_elf "$dir" "$f" /usr/lib/util-linux/$p
	done
}

# initrd_build NAME KVER [PROGRAM DEST]: out/NAME.cpio.gz from demo_tree,
# plus the dynamically linked PROGRAM as DEST with its libraries.
initrd_build() {
	local name=$1 kver=$2 dir
	dir=$(mktemp -d "$OUT/.initrd.XXXXXX")
	demo_tree "$kver" "$dir"
	[ $# -lt 4 ] || install_elf "$dir" "$3" "$4"
	mkcpio "$dir" | gzip -6 -n >"$OUT/$name.cpio.gz.tmp"
	rm -rf "$dir"
	mv "$OUT/$name.cpio.gz.tmp" "$OUT/$name.cpio.gz"
}

build_demo_initrd() {
	local kver=$1
	fresh "$OUT/demo-initrd.cpio.gz" "$HERE/demo-init" "$HERE/lab-blk" "$HERE/build.sh" \
		"$OUT/kernel-version" /bin/busybox && return 0
	initrd_build demo-initrd "$kver"
	echo "$MARKER" >"$OUT/demo-initrd.marker"
}

build_fio_initrd() {
	local kver=$1 fio
	fio=$(pkg_file fio fio) || {
		echo "guest-images: no fio-initrd.cpio.gz without the fio package (apt-get install fio)" >&2
		return 0
	}
	fresh "$OUT/fio-initrd.cpio.gz" "$OUT/demo-initrd.cpio.gz" "$fio" && return 0
	initrd_build fio-initrd "$kver" "$fio" /usr/bin/fio
}

main() {
	local k kver
	mkdir -p "$OUT"
	k=$(newest_kernel)
	kver=${k#/boot/vmlinuz-}
	# kernel-version changes (and so rebuilds what depends on it) only
	# when a newer kernel is installed.
	[ "$(cat "$OUT/kernel-version" 2>/dev/null)" = "$kver" ] || echo "$kver" >"$OUT/kernel-version"
	build_kernel "$k"
	build_l1_modules "$kver"
	build_demo_initrd "$kver"
	build_fio_initrd "$kver"
	[ -e "$OUT/demo-disk.img" ] || truncate -s 16M "$OUT/demo-disk.img"
}

main "$@"
