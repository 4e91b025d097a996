#!/usr/bin/env bash
# Assembles the tiny guests of bench/startup.sh into bench/out/ (binutils):
#   tiny-vmm.elf   PVH ELF, first I/O: port 0x601 <- 1 (our vmm: ACPI reset)
#   tiny-qemu.elf  PVH ELF, first I/O: port 0xf4 <- 1 (QEMU isa-debug-exit)
#   flat-i8042.bin flat real-mode binary, first I/O: port 0x64 <- 0xfe (kvmtool)
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
out=$src/../out
mkdir -p "$out"
build_pvh() {
	gcc -c -DEXIT_PORT="$2" -o "$out/$1.o" "$src/tiny-pvh.S"
	ld -m elf_x86_64 -T "$src/tiny-pvh.ld" -o "$out/$1.elf" "$out/$1.o"
	rm -f "$out/$1.o"
}
build_pvh tiny-vmm 0x601
build_pvh tiny-qemu 0xf4
gcc -c -o "$out/flat-i8042.o" "$src/flat-i8042.S"
objcopy -O binary "$out/flat-i8042.o" "$out/flat-i8042.bin"
rm -f "$out/flat-i8042.o"
