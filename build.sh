#!/usr/bin/env bash
# Builds the vmm and runs its tests. See README.md.
#
#   ./build.sh            build ./vmm, a static musl binary
#   ./build.sh run [CFG]  build, then boot CFG (default examples/linux.toml):
#                         on /dev/kvm when it can boot stock Linux, else in the lab
#   ./build.sh test       build every variant and run every test (tests/run.sh)
#   ./build.sh asan       ASan+UBSan build (glibc) of the vmm and tests, in build/asan
#   ./build.sh tsan       TSan build (clang) of the threaded core tests, in build/tsan
#   ./build.sh tsa        clang -Wthread-safety -Werror over every source
#   ./build.sh fuzz       libFuzzer targets (clang), in build/fuzz
#   ./build.sh bench      the musl build plus the C benchmarks (build/musl/bench)
#   ./build.sh deps       install the Debian packages everything needs
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

BUILD_PKGS="gcc make musl-tools liburing-dev libfdt-dev file"
CLANG_PKGS="clang libclang-rt-14-dev"
TEST_PKGS="qemu-system-x86 qemu-utils linux-image-cloud-amd64 busybox-static cpio lz4 xz-utils zstd binutils acpica-tools kmod fio"

# Installs missing Debian packages when root, else prints the apt-get line.
need_pkgs() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages; run: sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	echo "installing: ${missing[*]}" >&2
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

LIB_SRCS() (shopt -s nullglob; printf '%s\n' core/*.c dev/*.c block/*.c rcu/*.c)
# The tests' own library (the virtio test driver and its stack), linked into
# every test, fuzz target and C benchmark as libtest.a.
TEST_LIB_SRCS() (shopt -s nullglob; printf '%s\n' tests/lib/*.c)
BENCH_SRCS="bench/blk.c"
WARN="-Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wno-missing-field-initializers"
CFLAGS_COMMON="-std=gnu11 -g -D_GNU_SOURCE -pthread -I$ROOT $WARN"

# musl-gcc must not see glibc's headers: give it only liburing/libfdt and the
# kernel UAPI headers.
musl_includes() {
	local inc=build/musl-include sys=build/musl-sysinclude
	mkdir -p "$inc" "$sys"
	ln -sfn /usr/include/liburing.h "$inc/liburing.h"
	ln -sfn /usr/include/liburing "$inc/liburing"
	ln -sfn /usr/include/libfdt.h "$inc/libfdt.h"
	ln -sfn /usr/include/libfdt_env.h "$inc/libfdt_env.h"
	ln -sfn /usr/include/fdt.h "$inc/fdt.h"
	ln -sfn /usr/include/linux "$sys/linux"
	ln -sfn /usr/include/asm-generic "$sys/asm-generic"
	ln -sfn /usr/include/x86_64-linux-gnu/asm "$sys/asm"
	echo "-I$ROOT/$inc -isystem $ROOT/$sys"
}

# compile OUTDIR CC "CFLAGS" SRC... : objects in OUTDIR, two jobs at a time.
compile() {
	local out=$1 cc=$2 flags=$3
	shift 3
	printf '%s\n' "$@" | xargs -P "$(nproc)" -I{} sh -c \
		'mkdir -p "$(dirname "$0/$3")" && $1 $2 -c "$3" -o "$0/${3%.c}.o"' "$out" "$cc" "$flags" {}
}

# archive OUT.a SRC...: the objects of SRC... (already compiled) as OUT.a.
archive() {
	local a=$1 s
	shift
	rm -f "$a"
	ar rcs "$a" $(for s in "$@"; do echo "$(dirname "$a")/${s%.c}.o"; done)
}

# build_variant OUTDIR CC "CFLAGS" "LDFLAGS": libvmm.a, libtest.a, vmm,
# every test binary and the helper programs of tests/qcow2.
build_variant() {
	local out=$1 cc=$2 flags=$3 ldflags=$4 srcs tsrcs t
	mkdir -p "$out"
	srcs=$(LIB_SRCS)
	tsrcs=$(TEST_LIB_SRCS)
	compile "$out" "$cc" "$flags" $srcs $tsrcs vmm.c
	archive "$out/libvmm.a" $srcs
	archive "$out/libtest.a" $tsrcs
	$cc $flags -o "$out/vmm" "$out/vmm.o" "$out/libvmm.a" $ldflags
	for t in tests/unit/test_*.c tests/kvm/test_*.c tests/qcow2/*.c; do
		[ -e "$t" ] || continue
		mkdir -p "$out/$(dirname "$t")"
		echo "$cc $flags -o $out/${t%.c} $t $out/libtest.a $out/libvmm.a $ldflags"
	done | xargs -P "$(nproc)" -I{} sh -c '{}'
}

MUSL_LDFLAGS="-static /usr/lib/x86_64-linux-gnu/liburing.a /usr/lib/x86_64-linux-gnu/libfdt.a"

build_musl() {
	need_pkgs $BUILD_PKGS
	build_variant build/musl musl-gcc "$CFLAGS_COMMON -O2 $(musl_includes)" "$MUSL_LDFLAGS"
	# The shipped binary is stripped; build/musl/vmm keeps the symbols.
	strip -o vmm build/musl/vmm
	file vmm | grep -q 'statically linked' || { echo "vmm is not statically linked" >&2; exit 1; }
}

build_asan() {
	need_pkgs $BUILD_PKGS
	build_variant build/asan gcc "$CFLAGS_COMMON -O1 -fno-omit-frame-pointer \
		-fsanitize=address,undefined -fno-sanitize-recover=all" \
		"-fsanitize=address,undefined -luring -lfdt"
}

build_tsan() {
	need_pkgs $BUILD_PKGS $CLANG_PKGS
	build_variant build/tsan clang "$CFLAGS_COMMON -O1 -fsanitize=thread" \
		"-fsanitize=thread -luring -lfdt"
}

check_tsa() {
	need_pkgs $BUILD_PKGS $CLANG_PKGS
	local s
	for s in $(LIB_SRCS) vmm.c; do
		clang $CFLAGS_COMMON -Wthread-safety -Wthread-safety-beta -fsyntax-only "$s"
	done
	echo "thread-safety analysis: clean"
}

build_fuzz() {
	need_pkgs $BUILD_PKGS $CLANG_PKGS
	local out=build/fuzz f
	build_variant $out clang "$CFLAGS_COMMON -O1 -fsanitize=fuzzer-no-link,address,undefined" \
		"-fsanitize=address,undefined -luring -lfdt"
	for f in tests/fuzz/fuzz_*.c; do
		[ -e "$f" ] || continue
		mkdir -p "$out/tests/fuzz"
		clang $CFLAGS_COMMON -O1 -fsanitize=fuzzer,address,undefined \
			-o "$out/${f%.c}" "$f" "$out/libtest.a" "$out/libvmm.a" -luring -lfdt
	done
}

# The C benchmarks, static musl like the shipped vmm, with symbols (callgrind).
build_bench() {
	local out=build/musl b
	build_musl
	mkdir -p "$out/bench"
	for b in $BENCH_SRCS; do
		musl-gcc $CFLAGS_COMMON -O2 $(musl_includes) -o "$out/${b%.c}" "$b" \
			"$out/libtest.a" "$out/libvmm.a" $MUSL_LDFLAGS
	done
}

case "${1:-build}" in
build) build_musl ;;
asan) build_asan ;;
tsan) build_tsan ;;
tsa) check_tsa ;;
fuzz) build_fuzz ;;
bench) build_bench ;;
deps) need_pkgs $BUILD_PKGS $CLANG_PKGS $TEST_PKGS ;;
run)
	build_musl
	shift
	exec tests/lab/boot-example.sh "${1:-examples/linux.toml}"
	;;
test)
	need_pkgs $BUILD_PKGS $CLANG_PKGS $TEST_PKGS
	build_musl
	build_asan
	build_tsan
	check_tsa
	build_fuzz
	guest-images/build.sh
	exec tests/run.sh
	;;
*) sed -n '2,14p' "$0"; exit 2 ;;
esac
