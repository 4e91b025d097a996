#!/usr/bin/env bash
# Builds the guest images into guest-images/out/ (idempotent; does nothing
# when everything is up to date):
#   vmlinuz               the newest installed Debian cloud kernel (bzImage)
#   vmlinux               its ELF vmlinux, for the PVH boot path
#   demo-initrd.cpio.gz   busybox initramfs with demo-init as /init
#   demo-initrd.marker    the content of the initrd's /etc/lab-marker
#   l1-modules/*.ko       irqbypass, kvm, kvm-amd for the nested lab's L1
#   kernel-version        the version of all of the above
# Needs: linux-image-cloud-amd64, busybox-static, cpio, gzip, lz4 (or the
# tool matching the kernel's compression), binutils (readelf).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/out
MARKER="lab-demo-initrd-ok"
VIRTIO_MODS="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci drivers/virtio/virtio_mmio
drivers/block/virtio_blk"
L1_MODS="virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd"

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

build_demo_initrd() {
	local kver=$1 dir m
	fresh "$OUT/demo-initrd.cpio.gz" "$HERE/demo-init" "$HERE/build.sh" \
		"$OUT/kernel-version" /bin/busybox && return 0
	dir=$(mktemp -d "$OUT/.initrd.XXXXXX")
	busybox_tree "$dir"
	mkdir -p "$dir/proc" "$dir/sys" "$dir/dev" "$dir/tmp" "$dir/root" "$dir/etc" \
		"$dir/lib/modules/virtio"
	cp "$HERE/demo-init" "$dir/init"
	chmod 755 "$dir/init"
	echo "$MARKER" >"$dir/etc/lab-marker"
	for m in $VIRTIO_MODS; do
		copy_module "$kver" "$m" "$dir/lib/modules/virtio/$(basename "$m").ko"
	done
	echo "$VIRTIO_MODS" | xargs -n1 basename >"$dir/lib/modules/virtio/order"
	mkcpio "$dir" | gzip -6 -n >"$OUT/demo-initrd.cpio.gz.tmp"
	rm -rf "$dir"
	echo "$MARKER" >"$OUT/demo-initrd.marker"
	mv "$OUT/demo-initrd.cpio.gz.tmp" "$OUT/demo-initrd.cpio.gz"
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
}

main "$@"
