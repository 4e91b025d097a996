/*
 * Unit test of the kernel loader: core/bzimage.c, core/e820.c, core/pvh.c
 * and core/boot.c. Synthetic bzImage headers and ELF files, built here with
 * byte offsets from the boot protocol (Documentation/arch/x86/boot.rst) and
 * the Xen hvm_start_info ABI rather than the loader's structs, plus the real
 * Debian kernel when it is around (guest-images/out/vmlinuz and vmlinux, or
 * /boot/vmlinuz-*-cloud-amd64). Guest RAM is a mem_init map; no KVM.
 * Single-threaded. Exit 0: pass; 1: fail, with every failed check printed.
 */
#include "tests/check.h"
#include "core/boot.h"
#include "core/bzimage.h"
#include "core/config.h"
#include "core/e820.h"
#include "core/mem.h"
#include "core/pvh.h"
#include "core/util.h"
#include "rcu/rcu.h"

#include <elf.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Big: keep it off the stack. */
static struct vm_config test_cfg;
static char test_dir[] = "/tmp/test_boot.XXXXXX";

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)v); wr16(p + 2, (uint16_t)(v >> 16)); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

/* Setup header offsets (boot.rst). */
#define BZ_SETUP_SECTS 0x1f1
#define BZ_BOOT_FLAG 0x1fe
#define BZ_JUMP 0x200
#define BZ_HEADER 0x202
#define BZ_VERSION 0x206
#define BZ_LOADER 0x210
#define BZ_LOADFLAGS 0x211
#define BZ_RAMDISK_IMAGE 0x218
#define BZ_RAMDISK_SIZE 0x21c
#define BZ_HEAP_END 0x224
#define BZ_CMD_LINE_PTR 0x228
#define BZ_INITRD_MAX 0x22c
#define BZ_KERNEL_ALIGN 0x230
#define BZ_XLOADFLAGS 0x236
#define BZ_CMDLINE_SIZE 0x238
#define BZ_PREF_ADDRESS 0x258
#define BZ_INIT_SIZE 0x260
#define BZ_HDR_END 0x26c
/* Zero page fields outside the setup header. */
#define ZP_RSDP 0x070
#define ZP_E820_ENTRIES 0x1e8
#define ZP_E820_TABLE 0x2d0
#define E820_ENTRY_SIZE 20

/* A synthetic bzImage: 4 setup sectors, then `len` - 2560 bytes of "kernel". */
#define SYN_SETUP 2560
#define SYN_LEN (SYN_SETUP + 8192)
#define SYN_INIT_SIZE 0x100000

static void syn_bz(uint8_t *img, size_t len)
{
	memset(img, 0, len);
	img[BZ_SETUP_SECTS] = 4;
	wr16(img + BZ_BOOT_FLAG, 0xaa55);
	img[BZ_JUMP] = 0xeb;
	img[BZ_JUMP + 1] = BZ_HDR_END - (BZ_JUMP + 2);
	memcpy(img + BZ_HEADER, "HdrS", 4);
	wr16(img + BZ_VERSION, 0x020f);
	img[BZ_LOADFLAGS] = 0x01;	/* LOADED_HIGH */
	wr32(img + BZ_INITRD_MAX, 0x7fffffff);
	wr32(img + BZ_KERNEL_ALIGN, 0x200000);
	wr16(img + BZ_XLOADFLAGS, 0x7f);
	wr32(img + BZ_CMDLINE_SIZE, 2047);
	wr64(img + BZ_PREF_ADDRESS, 0x1000000);
	wr32(img + BZ_INIT_SIZE, SYN_INIT_SIZE);
	for (size_t i = SYN_SETUP; i < len; i++)
		img[i] = (uint8_t)(i * 7 + 3);
}

static uint8_t *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	return buf;
}

static int write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	int ok = f && fwrite(buf, 1, len, f) == len;

	if (f && fclose(f))
		ok = 0;
	return ok ? 0 : -1;
}

/* The stock Debian bzImage, or NULL (the caller skips that part). */
static const char *real_bzimage(void)
{
	static char path[PATH_MAX];
	glob_t g;

	if (access("guest-images/out/vmlinuz", R_OK) == 0)
		return "guest-images/out/vmlinuz";
	if (glob("/boot/vmlinuz-*-cloud-amd64", 0, NULL, &g) != 0)
		return NULL;
	snprintf(path, sizeof(path), "%s", g.gl_pathv[0]);
	globfree(&g);
	return path;
}

static void test_bz_parse_real(void)
{
	const char *path = real_bzimage();
	struct bzimage_info bi;
	char err[160] = "";
	uint8_t *img;
	size_t len;

	if (!path) {
		printf("skip: no Debian bzImage (guest-images/out/vmlinuz or /boot)\n");
		return;
	}
	img = read_whole(path, &len);
	CHECK(img != NULL, "cannot read %s", path);
	if (!img)
		return;
	CHECK_U(bzimage_parse(img, len, &bi, err, sizeof(err)), 0);
	CHECK(bi.version >= 0x20c, "version %#x", bi.version);
	CHECK_U(bi.setup_size, (size_t)((img[BZ_SETUP_SECTS] ? img[BZ_SETUP_SECTS] : 4) + 1) * 512);
	CHECK(bi.setup_size < len, "setup_size %zu of %zu", bi.setup_size, len);
	CHECK_U(bi.pref_address, 0x1000000);
	CHECK(bi.init_size > 0 && bi.init_size == rd32(img + BZ_INIT_SIZE), "init_size %#x", bi.init_size);
	CHECK_U(bi.initrd_addr_max, rd32(img + BZ_INITRD_MAX));
	CHECK(bi.cmdline_size >= 255, "cmdline_size %u", bi.cmdline_size);
	printf("%s: protocol %#x, setup %zu, init_size %#x\n", path, bi.version, bi.setup_size,
	       bi.init_size);
	free(img);
}

struct bz_bad {
	const char *what;
	size_t off;		/* patch: width bytes of value at off; width 0: none */
	unsigned width;
	uint64_t value;
	size_t len;		/* 0: SYN_LEN */
	const char *msg;
};

static const char bz_old[] = "boot protocol 2.11 without a 64-bit entry point; need 2.12+ with XLF_KERNEL_64";
static const char bz_no64[] = "boot protocol 2.15 without a 64-bit entry point; need 2.12+ with XLF_KERNEL_64";

static const struct bz_bad bz_bad_cases[] = {
	{ "empty", 0, 0, 0, 1, "too small to be a bzImage" },
	{ "header cut", 0, 0, 0, BZ_HDR_END - 1, "too small to be a bzImage" },
	{ "magic", BZ_HEADER, 4, 0x53726449, 0, "not a bzImage (no HdrS setup header)" },
	{ "boot flag", BZ_BOOT_FLAG, 2, 0xaa56, 0, "not a bzImage (no HdrS setup header)" },
	{ "header short of init_size", BZ_JUMP + 1, 1, 0x61, 0,
	  "setup header ends at 0x263 (the jump at 0x200), before the boot protocol 2.12 fields end at 0x264" },
	{ "version 2.11", BZ_VERSION, 2, 0x020b, 0, bz_old },
	{ "no XLF_KERNEL_64", BZ_XLOADFLAGS, 2, 0x7e, 0, bz_no64 },
	{ "setup fills file", BZ_SETUP_SECTS, 1, 20, 0, "truncated: no protected-mode code after setup" },
	{ "setup_sects 0 is 4", BZ_SETUP_SECTS, 1, 0, SYN_SETUP,
	  "truncated: no protected-mode code after setup" },
	{ "init_size 0", BZ_INIT_SIZE, 4, 0, 0, "setup header gives no usable pref_address/init_size" },
	{ "pref_address 4G", BZ_PREF_ADDRESS, 8, 1ULL << 32, 0,
	  "setup header gives no usable pref_address/init_size" },
};

static void bz_patch(uint8_t *img, size_t off, unsigned width, uint64_t v)
{
	for (unsigned i = 0; i < width; i++)
		img[off + i] = i < 8 ? (uint8_t)(v >> (8 * i)) : 0;
}

static void test_bz_parse_synthetic(void)
{
	static uint8_t img[SYN_LEN];
	struct bzimage_info bi;
	char err[160], small[8];

	syn_bz(img, sizeof(img));
	CHECK_U(bzimage_parse(img, sizeof(img), &bi, err, sizeof(err)), 0);
	CHECK_U(bi.setup_size, SYN_SETUP);
	CHECK_U(bi.version, 0x020f);
	CHECK_U(bi.init_size, SYN_INIT_SIZE);
	CHECK_U(bi.initrd_addr_max, 0x7fffffff);
	CHECK_U(bi.cmdline_size, 2047);
	for (size_t i = 0; i < ARRAY_SIZE(bz_bad_cases); i++) {
		const struct bz_bad *c = &bz_bad_cases[i];
		size_t len = c->len ? c->len : sizeof(img);

		syn_bz(img, sizeof(img));
		bz_patch(img, c->off, c->width, c->value);
		strcpy(err, "unset");
		CHECK(bzimage_parse(img, len, &bi, err, sizeof(err)) == -EINVAL, "%s: accepted", c->what);
		CHECK(strcmp(err, c->msg) == 0, "%s: got \"%s\", want \"%s\"", c->what, err, c->msg);
	}
	/* setup_sects 0 means 4: one byte past the setup is enough. */
	syn_bz(img, sizeof(img));
	img[BZ_SETUP_SECTS] = 0;
	CHECK_U(bzimage_parse(img, SYN_SETUP + 1, &bi, err, sizeof(err)), 0);
	CHECK_U(bi.setup_size, SYN_SETUP);
	/* A short message buffer gets a terminated prefix. */
	img[BZ_HEADER] = 'X';
	CHECK_U(bzimage_parse(img, sizeof(img), &bi, small, sizeof(small)), -EINVAL);
	CHECK_S(small, "not a b");
}

static void fill_e820(struct e820_entry *e, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		e[i] = (struct e820_entry){ .addr = 0x1000ULL * i + 0x1234, .size = 0x100 + i,
					    .type = 1 + i % 2 };
}

static void check_zp_e820(const uint8_t *zp, const struct e820_entry *e, unsigned n)
{
	CHECK_U(zp[ZP_E820_ENTRIES], n);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *p = zp + ZP_E820_TABLE + i * E820_ENTRY_SIZE;

		CHECK(rd64(p) == e[i].addr && rd64(p + 8) == e[i].size && rd32(p + 16) == e[i].type,
		      "e820[%u]: %#llx+%#llx type %u", i, (unsigned long long)rd64(p),
		      (unsigned long long)rd64(p + 8), rd32(p + 16));
	}
	CHECK_U(rd64(zp + ZP_E820_TABLE + n * E820_ENTRY_SIZE), 0);
}

static void test_zero_page(void)
{
	static uint8_t img[SYN_LEN], zp[BZIMAGE_ZERO_PAGE_SIZE];
	struct e820_entry e[129];
	struct boot_handoff b = {
		.cmdline_addr = 0x20000, .initrd_addr = 0x7f00000, .initrd_size = 0x12345,
		.rsdp_addr = 0xe0000, .e820 = e, .n_e820 = 5,
	};

	fill_e820(e, ARRAY_SIZE(e));
	syn_bz(img, sizeof(img));
	img[BZ_LOADER] = 0x42;
	img[BZ_LOADFLAGS] = 0x01;
	wr32(img + BZ_RAMDISK_IMAGE, 0xdead);
	wr32(img + BZ_CMD_LINE_PTR, 0xbeef);
	memset(zp, 0xaa, sizeof(zp));
	CHECK_U(bzimage_fill_zero_page(zp, img, &b), 0);
	CHECK_U(zp[0], 0);
	CHECK_U(zp[BZIMAGE_ZERO_PAGE_SIZE - 1], 0);
	CHECK_U(zp[BZ_SETUP_SECTS], 4);
	CHECK(!memcmp(zp + BZ_HEADER, "HdrS", 4), "HdrS not copied");
	CHECK_U(rd16(zp + BZ_BOOT_FLAG), 0xaa55);
	CHECK_U(rd16(zp + BZ_VERSION), 0x020f);
	CHECK_U(rd16(zp + BZ_XLOADFLAGS), 0x7f);
	CHECK_U(rd32(zp + BZ_CMDLINE_SIZE), 2047);
	CHECK_U(rd32(zp + BZ_KERNEL_ALIGN), 0x200000);
	CHECK_U(rd64(zp + BZ_PREF_ADDRESS), 0x1000000);
	CHECK_U(rd32(zp + BZ_INIT_SIZE), SYN_INIT_SIZE);
	CHECK_U(zp[BZ_LOADER], 0xff);
	CHECK_U(zp[BZ_LOADFLAGS], 0x81);
	CHECK_U(rd16(zp + BZ_HEAP_END), 0xfe00);
	CHECK_U(rd32(zp + BZ_CMD_LINE_PTR), 0x20000);
	CHECK_U(rd32(zp + BZ_RAMDISK_IMAGE), 0x7f00000);
	CHECK_U(rd32(zp + BZ_RAMDISK_SIZE), 0x12345);
	CHECK_U(rd64(zp + ZP_RSDP), 0xe0000);
	check_zp_e820(zp, e, 5);

	/* No initrd: both ramdisk fields 0 whatever initrd_addr says. */
	b.initrd_size = 0;
	CHECK_U(bzimage_fill_zero_page(zp, img, &b), 0);
	CHECK_U(rd32(zp + BZ_RAMDISK_IMAGE), 0);
	CHECK_U(rd32(zp + BZ_RAMDISK_SIZE), 0);

	/* Only the header up to the jump target is copied (an older protocol). */
	img[BZ_JUMP + 1] = 0x20;	/* header ends at 0x222 */
	CHECK_U(bzimage_fill_zero_page(zp, img, &b), 0);
	CHECK_U(rd16(zp + BZ_VERSION), 0x020f);
	CHECK_U(rd64(zp + BZ_PREF_ADDRESS), 0);
	CHECK_U(rd32(zp + BZ_INIT_SIZE), 0);
	CHECK_U(rd16(zp + BZ_XLOADFLAGS), 0);
	CHECK_U(rd32(zp + BZ_CMD_LINE_PTR), 0x20000);

	b.n_e820 = 128;
	CHECK_U(bzimage_fill_zero_page(zp, img, &b), 0);
	check_zp_e820(zp, e, 128);
	b.n_e820 = 129;
	memset(zp, 0xaa, sizeof(zp));
	CHECK_U(bzimage_fill_zero_page(zp, img, &b), -EINVAL);
	CHECK_U(zp[0], 0xaa);

	/* The zero page's pointers are 32-bit: nothing may end above 4 GiB. */
	b.n_e820 = 5;
	b.initrd_addr = 0xffffe000;
	b.initrd_size = 0x2000;
	CHECK_U(bzimage_fill_zero_page(zp, img, &b), 0);
	b.initrd_size = 0x2001;
	CHECK_U(bzimage_fill_zero_page(zp, img, &b), -EINVAL);
	b.initrd_size = 0;
	b.initrd_addr = 1ULL << 32;
	CHECK_U(bzimage_fill_zero_page(zp, img, &b), 0);	/* no initrd: address unused */
	b.cmdline_addr = 1ULL << 32;
	CHECK_U(bzimage_fill_zero_page(zp, img, &b), -EINVAL);
}

/* Sorted, non-overlapping, and each one as listed. */
static void check_e820(const struct e820_entry *e, int n, const struct e820_entry *want, int n_want)
{
	CHECK_U(n, n_want);
	for (int i = 0; i < n && i < n_want; i++) {
		CHECK(e[i].addr == want[i].addr && e[i].size == want[i].size && e[i].type == want[i].type,
		      "entry %d: %#llx+%#llx type %u", i, (unsigned long long)e[i].addr,
		      (unsigned long long)e[i].size, e[i].type);
		CHECK(e[i].size > 0, "entry %d empty", i);
		if (i)
			CHECK(e[i].addr >= e[i - 1].addr + e[i - 1].size, "entry %d overlaps or unsorted", i);
	}
}

static void test_e820(void)
{
	const struct e820_entry small[] = {
		{ 0, 0x9fc00, E820_RAM },
		{ 0x9fc00, 0x400, E820_RESERVED },
		{ 0xe0000, 0x20000, E820_RESERVED },
		{ 0x100000, 64 * MiB - 0x100000, E820_RAM },
		{ 0xE0000000, 0x100000, E820_RESERVED },	/* PCI ECAM */
	};
	const struct e820_entry big[] = {
		{ 0, 0x9fc00, E820_RAM },
		{ 0x9fc00, 0x400, E820_RESERVED },
		{ 0xe0000, 0x20000, E820_RESERVED },
		{ 0x100000, 0xC0000000 - 0x100000, E820_RAM },
		{ 0xE0000000, 0x100000, E820_RESERVED },
		{ 0x100000000, 2 * GiB, E820_RAM },
	};
	struct e820_entry e[8];

	memset(e, 0, sizeof(e));
	check_e820(e, e820_build(64 * MiB, 0, e, 8), small, 5);
	check_e820(e, e820_build(64 * MiB, 0, e, 5), small, 5);
	check_e820(e, e820_build(0xC0000000, 2 * GiB, e, 8), big, 6);
	CHECK_U(e820_build(64 * MiB, 0, e, 4), -ENOSPC);
	CHECK_U(e820_build(0xC0000000, 2 * GiB, e, 5), -ENOSPC);
	CHECK_U(e820_build(0x100000, 0, e, 8), -EINVAL);
	CHECK_U(e820_build(0xC0000000 + 0x1000, 0, e, 8), -EINVAL);	/* RAM into the PCI hole */
}

/*
 * A synthetic PVH vmlinux: ELF header, then program headers at ph_off
 * (PT_LOAD, PT_NOTE), a note segment at ELF_NOTE_OFF holding a GNU note and
 * then Xen's PHYS32_ENTRY, and the load segment's bytes at ELF_LOAD_OFF.
 */
#define ELF_LEN 0x2000
#define ELF_NOTE_OFF 0x200
#define ELF_LOAD_OFF 0x1000
#define ELF_LOAD_PADDR 0x100000
#define ELF_LOAD_FILESZ 0x800
#define ELF_LOAD_MEMSZ 0x1800
#define ELF_ENTRY 0x100040
#define ELF_NOTE_LEN (12 + 4 + 4 + 12 + 4 + 4)
#define XEN_PHYS32_ENTRY 18

struct elf_syn {
	uint8_t buf[ELF_LEN + 1];
	uint8_t *img;		/* buf, or buf + 1 to misalign every header */
	size_t ph_off;
};

static uint8_t *elf_ph(struct elf_syn *s, unsigned i)
{
	return s->img + s->ph_off + i * sizeof(Elf64_Phdr);
}

static void elf_set_ph(struct elf_syn *s, unsigned i, uint32_t type, uint64_t off, uint64_t paddr,
		       uint64_t filesz, uint64_t memsz)
{
	uint8_t *p = elf_ph(s, i);

	wr32(p, type);
	wr32(p + 4, 5);
	wr64(p + 8, off);
	wr64(p + 16, paddr + 0xffffffff80000000ULL);
	wr64(p + 24, paddr);
	wr64(p + 32, filesz);
	wr64(p + 40, memsz);
	wr64(p + 48, 0x1000);
}

/* A note at p; returns its length. */
static size_t elf_note(uint8_t *p, const char *name, uint32_t type, const void *desc, uint32_t descsz)
{
	uint32_t namesz = (uint32_t)strlen(name) + 1;
	size_t name_pad = (namesz + 3) & ~3U, desc_pad = (descsz + 3) & ~3U;

	wr32(p, namesz);
	wr32(p + 4, descsz);
	wr32(p + 8, type);
	memset(p + 12, 0, name_pad + desc_pad);
	memcpy(p + 12, name, namesz);
	memcpy(p + 12 + name_pad, desc, descsz);
	return 12 + name_pad + desc_pad;
}

static void elf_syn(struct elf_syn *s, bool misaligned)
{
	uint8_t entry[4], gnu[4] = { 1, 2, 3, 4 };
	size_t n;

	memset(s->buf, 0, sizeof(s->buf));
	s->img = s->buf + misaligned;
	s->ph_off = misaligned ? 0x41 : 0x40;
	memcpy(s->img, ELFMAG, SELFMAG);
	s->img[EI_CLASS] = ELFCLASS64;
	s->img[EI_DATA] = ELFDATA2LSB;
	s->img[EI_VERSION] = EV_CURRENT;
	wr16(s->img + 16, ET_EXEC);
	wr16(s->img + 18, EM_X86_64);
	wr32(s->img + 20, EV_CURRENT);
	wr64(s->img + 24, 0xffffffff81000000ULL);
	wr64(s->img + 32, s->ph_off);
	wr16(s->img + 52, sizeof(Elf64_Ehdr));
	wr16(s->img + 54, sizeof(Elf64_Phdr));
	wr16(s->img + 56, 2);
	elf_set_ph(s, 0, PT_LOAD, ELF_LOAD_OFF, ELF_LOAD_PADDR, ELF_LOAD_FILESZ, ELF_LOAD_MEMSZ);
	elf_set_ph(s, 1, PT_NOTE, ELF_NOTE_OFF + misaligned, 0x2000, ELF_NOTE_LEN, ELF_NOTE_LEN);
	wr32(entry, ELF_ENTRY);
	n = elf_note(s->img + ELF_NOTE_OFF + misaligned, "GNU", XEN_PHYS32_ENTRY, gnu, 4);
	elf_note(s->img + ELF_NOTE_OFF + misaligned + n, "Xen", XEN_PHYS32_ENTRY, entry, 4);
	for (size_t i = 0; i < ELF_LOAD_FILESZ; i++)
		s->img[ELF_LOAD_OFF + i] = (uint8_t)(i * 13 + 1);
}

static const char pvh_no_note[] = "ELF has no PVH entry note (Xen PHYS32_ENTRY); "
				  "use a bzImage or a kernel built with CONFIG_PVH";

struct pvh_bad {
	const char *what;
	size_t off;		/* from the image start; width 0: none */
	unsigned width;
	uint64_t value;
	size_t len;		/* 0: ELF_LEN */
	const char *msg;
};

#define PH0 0x40
#define PH1 (0x40 + 56)
#define NOTE2 (ELF_NOTE_OFF + 20)	/* the Xen note, after the GNU one */

static const struct pvh_bad pvh_bad_cases[] = {
	{ "not ELF", 0, 1, 0x7e, 0, "not an ELF file" },
	{ "short", 0, 0, 0, 63, "not an ELF file" },
	{ "32-bit class", EI_CLASS, 1, ELFCLASS32, 0, "not an x86_64 ELF executable" },
	{ "big endian", EI_DATA, 1, ELFDATA2MSB, 0, "not an x86_64 ELF executable" },
	{ "i386", 18, 2, EM_386, 0, "not an x86_64 ELF executable" },
	{ "ET_DYN", 16, 2, ET_DYN, 0, "not an x86_64 ELF executable" },
	{ "phentsize", 54, 2, 32, 0, "ELF program headers out of the file" },
	{ "phnum 0", 56, 2, 0, 0, "ELF program headers out of the file" },
	{ "phoff past end", 32, 8, ELF_LEN + 1, 0, "ELF program headers out of the file" },
	{ "phoff huge", 32, 8, ~0ULL - 8, 0, "ELF program headers out of the file" },
	{ "phdrs cross end", 32, 8, ELF_LEN - 100, 0, "ELF program headers out of the file" },
	{ "phnum huge", 56, 2, 0xffff, 0, "ELF program headers out of the file" },
	{ "load offset past end", PH0 + 8, 8, ELF_LEN + 1, 0, "ELF segment out of the file" },
	{ "load filesz past end", PH0 + 32, 8, ELF_LEN - ELF_LOAD_OFF + 1, 0, "ELF segment out of the file" },
	{ "load offset huge", PH0 + 8, 8, ~0ULL - 0x10, 0, "ELF segment out of the file" },
	{ "load filesz huge", PH0 + 32, 8, ~0ULL, 0, "ELF segment out of the file" },
	{ "note offset past end", PH1 + 8, 8, ~0ULL, 0, "ELF segment out of the file" },
	{ "filesz > memsz", PH0 + 40, 8, ELF_LOAD_FILESZ - 1, 0, "ELF load segment outside low memory" },
	{ "beyond 3G", PH0 + 24, 8, 0xC0000000 - ELF_LOAD_MEMSZ + 1, 0,
	  "ELF load segment outside low memory" },
	{ "paddr wraps", PH0 + 24, 8, ~0ULL - 0x100, 0, "ELF load segment outside low memory" },
	{ "memsz wraps", PH0 + 40, 8, ~0ULL, 0, "ELF load segment outside low memory" },
	{ "no note segment", PH1, 4, PT_NULL, 0, pvh_no_note },
	{ "no Xen note", NOTE2 + 12, 4, 0x006e6558 + 1, 0, pvh_no_note },	/* "Yen" */
	{ "wrong note type", NOTE2 + 8, 4, 17, 0, pvh_no_note },
	{ "namesz 3", NOTE2, 4, 3, 0, pvh_no_note },
	{ "descsz 2", NOTE2 + 4, 4, 2, 0, pvh_no_note },
	{ "descsz huge", NOTE2 + 4, 4, 0xfffffffc, 0, pvh_no_note },
	{ "namesz huge", ELF_NOTE_OFF, 4, 0xffffffff, 0, pvh_no_note },
	{ "note cut", PH1 + 32, 8, ELF_NOTE_LEN - 4, 0, pvh_no_note },
	{ "load below 1M", PH0 + 24, 8, 0x20000, 0,
	  "ELF load segment below 1 MiB, where the loader keeps its boot data" },
	{ "entry outside", NOTE2 + 16, 4, 0xdeadbeef, 0,
	  "ELF PVH entry point 0xdeadbeef is outside its load segments" },
	{ "no load segment", PH0, 4, PT_DYNAMIC, 0, "ELF has no load segment" },
	{ "load at 0, memsz 0", PH0 + 24, 24, 0, 0, "ELF has no load segment" },
};

static void test_pvh_parse_bad(bool misaligned)
{
	struct elf_syn *s = calloc(1, sizeof(*s));
	struct pvh_info pi;
	char err[160];

	for (size_t i = 0; i < ARRAY_SIZE(pvh_bad_cases); i++) {
		const struct pvh_bad *c = &pvh_bad_cases[i];
		size_t off = c->off;
		int ret;

		elf_syn(s, misaligned);
		if (misaligned && off >= 0x40)		/* every header moved by one */
			off++;
		bz_patch(s->img, off, c->width, c->value);
		strcpy(err, "unset");
		ret = pvh_parse(s->img, c->len ? c->len : ELF_LEN, &pi, err, sizeof(err));
		CHECK(ret == -EINVAL, "%s%s: returned %d", c->what, misaligned ? " (misaligned)" : "", ret);
		CHECK(strcmp(err, c->msg) == 0, "%s%s: got \"%s\", want \"%s\"", c->what,
		      misaligned ? " (misaligned)" : "", err, c->msg);
	}
	free(s);
}

static void test_pvh_parse_good(bool misaligned)
{
	struct elf_syn *s = calloc(1, sizeof(*s));
	struct pvh_info pi;
	uint8_t entry8[8];
	char err[160] = "";
	size_t d = misaligned;

	elf_syn(s, misaligned);
	CHECK(pvh_is_elf(s->img, ELF_LEN), "not ELF");
	CHECK(!pvh_is_elf(s->img, 3), "3 bytes are ELF");
	CHECK(pvh_parse(s->img, ELF_LEN, &pi, err, sizeof(err)) == 0, "%s", err);
	CHECK_U(pi.entry, ELF_ENTRY);
	CHECK_U(pi.load_end, ELF_LOAD_PADDR + ELF_LOAD_MEMSZ);

	/* An 8-byte descriptor also gives the entry; a second note segment is read too. */
	wr64(entry8, 0x100123);
	elf_note(s->img + NOTE2 + d, "Xen", XEN_PHYS32_ENTRY, entry8, 8);
	elf_set_ph(s, 1, PT_NOTE, ELF_NOTE_OFF + d, 0, ELF_NOTE_LEN + 4, ELF_NOTE_LEN + 4);
	CHECK(pvh_parse(s->img, ELF_LEN, &pi, err, sizeof(err)) == 0, "%s", err);
	CHECK_U(pi.entry, 0x100123);
	elf_set_ph(s, 1, PT_NOTE, ELF_NOTE_OFF + d, 0, 20, 20);		/* GNU note only */
	wr16(s->img + 56, 3);
	elf_set_ph(s, 2, PT_NOTE, NOTE2 + d, 0, 24, 24);
	CHECK(pvh_parse(s->img, ELF_LEN, &pi, err, sizeof(err)) == 0, "second PT_NOTE: %s", err);
	CHECK_U(pi.entry, 0x100123);
	/* The first entry note found counts; a later note segment without one
	 * does not undo it. */
	elf_set_ph(s, 1, PT_NOTE, NOTE2 + d, 0, 24, 24);
	elf_set_ph(s, 2, PT_NOTE, ELF_NOTE_OFF + d, 0, 20, 20);
	CHECK(pvh_parse(s->img, ELF_LEN, &pi, err, sizeof(err)) == 0, "note, then none: %s", err);
	CHECK_U(pi.entry, 0x100123);
	/* load_end is the highest segment's end, not the last one's. */
	elf_set_ph(s, 2, PT_LOAD, ELF_LOAD_OFF + d, ELF_LOAD_PADDR, 0x200, 0x200);
	elf_set_ph(s, 1, PT_NOTE, ELF_NOTE_OFF + d, 0, ELF_NOTE_LEN + 4, ELF_NOTE_LEN + 4);
	CHECK(pvh_parse(s->img, ELF_LEN, &pi, err, sizeof(err)) == 0, "two loads: %s", err);
	CHECK_U(pi.load_end, ELF_LOAD_PADDR + ELF_LOAD_MEMSZ);
	/* Up to the PCI hole is fine (the entry stays in segment 2). */
	elf_set_ph(s, 0, PT_LOAD, ELF_LOAD_OFF + d, 0xC0000000 - ELF_LOAD_MEMSZ, ELF_LOAD_FILESZ,
		   ELF_LOAD_MEMSZ);
	CHECK(pvh_parse(s->img, ELF_LEN, &pi, err, sizeof(err)) == 0, "up to 3G: %s", err);
	CHECK_U(pi.load_end, 0xC0000000);
	free(s);
}

static void test_pvh_load(void)
{
	struct elf_syn *s = calloc(1, sizeof(*s));
	struct mem_map m = { NULL };
	struct pvh_info pi;
	uint8_t *dst;
	char err[160] = "";
	bool ok = true;

	CHECK_U(mem_init(&m, 16 * MiB), 0);
	elf_syn(s, true);
	CHECK(pvh_parse(s->img, ELF_LEN, &pi, err, sizeof(err)) == 0, "%s", err);
	dst = mem_translate(&m, ELF_LOAD_PADDR - 16, ELF_LOAD_MEMSZ + 32);
	memset(dst, 0xcc, ELF_LOAD_MEMSZ + 32);
	CHECK_U(pvh_load(s->img, &m), 0);
	dst += 16;
	CHECK(!memcmp(dst, s->img + ELF_LOAD_OFF, ELF_LOAD_FILESZ), "segment bytes not copied");
	for (size_t i = ELF_LOAD_FILESZ; i < ELF_LOAD_MEMSZ; i++)
		ok &= dst[i] == 0;
	CHECK(ok, "bss not zeroed");
	CHECK(dst[-1] == 0xcc && dst[ELF_LOAD_MEMSZ] == 0xcc, "wrote outside the segment");
	/* Valid for pvh_parse, but a second segment lies beyond this RAM. */
	wr16(s->img + 56, 3);
	elf_set_ph(s, 2, PT_LOAD, ELF_LOAD_OFF, 16 * MiB - ELF_LOAD_MEMSZ + 1, ELF_LOAD_FILESZ,
		   ELF_LOAD_MEMSZ);
	CHECK(pvh_parse(s->img, ELF_LEN, &pi, err, sizeof(err)) == 0, "%s", err);
	CHECK_U(pvh_load(s->img, &m), -EFAULT);
	mem_destroy(&m);
	free(s);
}

static void test_pvh_real(void)
{
	const char *path = "guest-images/out/vmlinux";
	struct mem_map m = { NULL };
	struct pvh_info pi;
	char err[160] = "";
	uint64_t lo = ~0ULL, lo_off = 0;
	uint8_t *img;
	size_t len;

	img = read_whole(path, &len);
	if (!img) {
		printf("skip: no %s\n", path);
		return;
	}
	CHECK(pvh_parse(img, len, &pi, err, sizeof(err)) == 0, "%s: %s", path, err);
	for (unsigned i = 0; i < rd16(img + 56); i++) {
		const uint8_t *ph = img + rd64(img + 32) + i * sizeof(Elf64_Phdr);

		if (rd32(ph) == PT_LOAD && rd64(ph + 24) < lo) {
			lo = rd64(ph + 24);
			lo_off = rd64(ph + 8);
		}
	}
	CHECK(pi.entry >= lo && pi.entry < pi.load_end, "entry %#x outside [%#llx, %#llx)", pi.entry,
	      (unsigned long long)lo, (unsigned long long)pi.load_end);
	CHECK(lo >= 1 * MiB && pi.load_end <= 256 * MiB, "load range [%#llx, %#llx)",
	      (unsigned long long)lo, (unsigned long long)pi.load_end);
	printf("%s: PVH entry %#x, load [%#llx, %#llx)\n", path, pi.entry, (unsigned long long)lo,
	       (unsigned long long)pi.load_end);
	CHECK_U(mem_init(&m, ALIGN_UP(pi.load_end, 4096)), 0);
	CHECK_U(pvh_load(img, &m), 0);
	CHECK(!memcmp(mem_translate(&m, lo, 4096), img + lo_off, 4096),
	      "first segment not copied");
	mem_destroy(&m);
	free(img);
}

/* hvm_start_info: 56 bytes, then one 32-byte module, then 24-byte memmap entries. */
static void test_pvh_start_info(void)
{
	static uint8_t buf[4096];
	struct e820_entry e[5];
	struct boot_handoff b = {
		.cmdline_addr = 0x20000, .initrd_addr = 0x7000000, .initrd_size = 0x4321,
		.rsdp_addr = 0xe0000, .e820 = e, .n_e820 = 5,
	};
	const uint64_t gpa = 0x6000;
	const size_t used = 56 + 32 + 5 * 24;

	fill_e820(e, 5);
	memset(buf, 0xaa, sizeof(buf));
	CHECK_U(pvh_fill_start_info(buf, sizeof(buf), gpa, &b), used);
	CHECK_U(rd32(buf), 0x336ec578);
	CHECK_U(rd32(buf + 4), 1);
	CHECK_U(rd32(buf + 8), 0);
	CHECK_U(rd32(buf + 12), 1);
	CHECK_U(rd64(buf + 16), gpa + 56);
	CHECK_U(rd64(buf + 24), 0x20000);
	CHECK_U(rd64(buf + 32), 0xe0000);
	CHECK_U(rd64(buf + 40), gpa + 88);
	CHECK_U(rd32(buf + 48), 5);
	CHECK_U(rd32(buf + 52), 0);
	CHECK_U(rd64(buf + 56), 0x7000000);
	CHECK_U(rd64(buf + 64), 0x4321);
	CHECK_U(rd64(buf + 72), 0);
	CHECK_U(rd64(buf + 80), 0);
	for (unsigned i = 0; i < 5; i++) {
		const uint8_t *p = buf + 88 + i * 24;

		CHECK(rd64(p) == e[i].addr && rd64(p + 8) == e[i].size && rd32(p + 16) == e[i].type &&
		      rd32(p + 20) == 0, "memmap[%u]", i);
	}
	CHECK_U(buf[used], 0xaa);

	b.initrd_size = 0;
	CHECK_U(pvh_fill_start_info(buf, used, gpa, &b), used);
	CHECK_U(rd32(buf + 12), 0);
	CHECK_U(rd64(buf + 16), 0);
	memset(buf, 0xaa, sizeof(buf));
	CHECK_U(pvh_fill_start_info(buf, used - 1, gpa, &b), -ENOSPC);
	CHECK_U(buf[0], 0xaa);
}

/* Walks the 4-level tables at BOOT_PML4_ADDR for va; returns the physical
 * address, or ~0 when unmapped. Only 2 MiB leaves are expected. */
static uint64_t pt_walk(struct mem_map *m, uint64_t va)
{
	const uint64_t addr_mask = 0x000ffffffffff000ULL;
	uint64_t e = BOOT_PML4_ADDR;
	const unsigned shifts[] = { 39, 30, 21 };

	for (unsigned lvl = 0; lvl < 3; lvl++) {
		uint64_t slot = (e & addr_mask) + ((va >> shifts[lvl]) & 511) * 8;

		if (mem_read(m, slot, &e, 8) || (e & 3) != 3)
			return ~0ULL;
		if ((e & 0x80) != (lvl == 2 ? 0x80 : 0))
			return ~0ULL;
	}
	return (e & 0x000fffffffe00000ULL) | (va & 0x1fffff);
}

static void check_page_tables(struct mem_map *m)
{
	const uint64_t *pml4 = mem_translate(m, BOOT_PML4_ADDR, 2 * 4096), *pdpt = pml4 + 512;
	unsigned bad = 0;

	for (unsigned i = 1; i < 512; i++)
		bad += pml4[i] != 0;
	for (unsigned i = 4; i < 512; i++)
		bad += pdpt[i] != 0;
	CHECK(bad == 0, "%u PML4/PDPT entries beyond 4 GiB are set", bad);
	bad = 0;

	for (uint64_t va = 0; va < 4 * GiB; va += 2 * MiB)
		bad += pt_walk(m, va + 0x1234) != va + 0x1234;
	CHECK(bad == 0, "%u of 2048 2 MiB pages not identity-mapped", bad);
	CHECK_U(pt_walk(m, 4 * GiB), ~0ULL);
	CHECK_U(pt_walk(m, 1ULL << 39), ~0ULL);
}

static void check_gdt(struct mem_map *m)
{
	uint64_t g[BOOT_GDT_ENTRIES];

	CHECK_U(mem_read(m, BOOT_GDT_ADDR, g, sizeof(g)), 0);
	CHECK_U(g[0], 0);
	CHECK_U(g[1], 0);
	for (unsigned i = 2; i < BOOT_GDT_ENTRIES; i++) {
		uint64_t e = g[i];
		uint32_t base = (uint32_t)(((e >> 16) & 0xffffff) | ((e >> 56) << 24));
		uint32_t limit = (uint32_t)((e & 0xffff) | ((e >> 48) & 0xf) << 16);
		unsigned access = (e >> 40) & 0xff, flags = (e >> 52) & 0xf;	/* G D L AVL */

		CHECK(base == 0, "GDT[%#x]: base %#x", i * 8, base);
		switch (i * 8) {
		case BOOT_SEL_CODE64:
			CHECK(access == 0x9b && flags == 0xa && limit == 0xfffff,
			      "code64: access %#x flags %#x limit %#x", access, flags, limit);
			break;
		case BOOT_SEL_DATA:
			CHECK(access == 0x93 && flags == 0xc && limit == 0xfffff,
			      "data: access %#x flags %#x limit %#x", access, flags, limit);
			break;
		case BOOT_SEL_TSS:
			CHECK(access == 0x8b && limit == 0x67, "tss: access %#x limit %#x", access, limit);
			break;
		case BOOT_SEL_CODE32:
			CHECK(access == 0x9b && flags == 0xc && limit == 0xfffff,
			      "code32: access %#x flags %#x limit %#x", access, flags, limit);
			break;
		}
	}
}

static void cfg_init(const char *kernel, const char *initrd, uint64_t memory, const char *cmdline)
{
	memset(&test_cfg, 0, sizeof(test_cfg));
	snprintf(test_cfg.path, sizeof(test_cfg.path), "%s/vm.toml", test_dir);
	test_cfg.memory = memory;
	test_cfg.vcpus = 1;
	snprintf(test_cfg.kernel, sizeof(test_cfg.kernel), "%s", kernel);
	snprintf(test_cfg.initrd, sizeof(test_cfg.initrd), "%s", initrd);
	snprintf(test_cfg.cmdline, sizeof(test_cfg.cmdline), "%s", cmdline);
	test_cfg.line = (struct vm_config_lines){ .vm = 1, .memory = 2, .kernel = 3, .initrd = 4,
						  .cmdline = 5 };
}

/* Checks a loaded bzImage; returns the initrd address. */
static uint64_t check_bz_loaded(struct mem_map *m, const uint8_t *kimg, size_t klen,
				const uint8_t *initrd, size_t isize, uint64_t top)
{
	const uint8_t *zp = mem_translate(m, BOOT_ZERO_PAGE_ADDR, 4096);
	uint64_t kernel_end = rd64(kimg + BZ_PREF_ADDRESS) + rd32(kimg + BZ_INIT_SIZE);
	uint64_t setup = (size_t)(kimg[BZ_SETUP_SECTS] + 1) * 512;
	uint64_t addr = rd32(zp + BZ_RAMDISK_IMAGE);

	CHECK_U(rd32(zp + BZ_RAMDISK_SIZE), isize);
	CHECK(addr % 4096 == 0, "initrd at %#llx", (unsigned long long)addr);
	CHECK(addr >= kernel_end, "initrd at %#llx below the kernel's end %#llx",
	      (unsigned long long)addr, (unsigned long long)kernel_end);
	CHECK(addr + isize <= top && addr + isize > top - 4096, "initrd [%#llx, +%#zx) not at the top %#llx",
	      (unsigned long long)addr, isize, (unsigned long long)top);
	CHECK(addr + isize - 1 <= rd32(kimg + BZ_INITRD_MAX), "initrd above initrd_addr_max");
	CHECK(!memcmp(mem_translate(m, addr, isize), initrd, isize), "initrd bytes differ");
	CHECK_U(rd32(zp + BZ_CMD_LINE_PTR), BOOT_CMDLINE_ADDR);
	CHECK_U(zp[BZ_LOADER], 0xff);
	CHECK_U(rd64(zp + ZP_RSDP), 0xe0000);
	CHECK(!memcmp(zp + BZ_HEADER, "HdrS", 4), "zero page header");
	CHECK(!memcmp(mem_translate(m, BOOT_KERNEL_ADDR, klen - setup), kimg + setup, klen - setup),
	      "kernel bytes at 1 MiB differ");
	CHECK(!memcmp(mem_translate(m, BOOT_CMDLINE_ADDR, 1), test_cfg.cmdline,
		      strlen(test_cfg.cmdline) + 1), "command line not at %#x or not terminated",
	      BOOT_CMDLINE_ADDR);
	check_page_tables(m);
	check_gdt(m);
	return addr;
}

static void run_bz_load(const char *kernel, uint64_t memory, const uint8_t *initrd, size_t isize,
			uint64_t top)
{
	struct mem_map m = { NULL };
	struct boot_setup bs = { 0 };
	char err[512] = "", ipath[PATH_MAX];
	uint8_t *kimg;
	size_t klen;

	snprintf(ipath, sizeof(ipath), "%s/initrd", test_dir);
	kimg = read_whole(kernel, &klen);
	cfg_init(kernel, ipath, memory, "console=ttyS0 root=/dev/vda rw");
	CHECK(boot_check(&test_cfg, err, sizeof(err)) == 0, "boot_check %s: %s", kernel, err);
	CHECK_U(mem_init(&m, memory), 0);
	/* Not fresh zeroes: the loader must write every byte it relies on. */
	memset(mem_translate(&m, 0, 1 * MiB), 0xff, 1 * MiB);
	CHECK(boot_load(&m, &test_cfg, 0xe0000, &bs, err, sizeof(err)) == 0, "boot_load %s: %s", kernel, err);
	CHECK(bs.long_mode && bs.entry == BOOT_KERNEL_ADDR + 0x200 && bs.arg == BOOT_ZERO_PAGE_ADDR,
	      "boot_setup %d %#llx %#llx", bs.long_mode, (unsigned long long)bs.entry,
	      (unsigned long long)bs.arg);
	check_bz_loaded(&m, kimg, klen, initrd, isize, top);
	CHECK_U(((const uint8_t *)mem_translate(&m, BOOT_ZERO_PAGE_ADDR, 4096))[ZP_E820_ENTRIES],
		memory > 0xC0000000 ? 6 : 5);
	mem_destroy(&m);
	free(kimg);
}

static void test_boot_bzimage(const uint8_t *initrd, size_t isize)
{
	static uint8_t img[SYN_LEN];
	const char *real = real_bzimage();
	char kpath[PATH_MAX];

	snprintf(kpath, sizeof(kpath), "%s/bzImage", test_dir);
	syn_bz(img, sizeof(img));
	CHECK_U(write_file(kpath, img, sizeof(img)), 0);
	run_bz_load(kpath, 64 * MiB, initrd, isize, 64 * MiB);
	/* Below initrd_addr_max (256 MiB - 1) in 512 MiB. */
	wr32(img + BZ_INITRD_MAX, 0x0fffffff);
	CHECK_U(write_file(kpath, img, sizeof(img)), 0);
	run_bz_load(kpath, 512 * MiB, initrd, isize, 256 * MiB);
	/* Above 3 GiB: low RAM ends at the hole, the rest above 4 GiB. */
	wr32(img + BZ_INITRD_MAX, 0xffffffff);
	CHECK_U(write_file(kpath, img, sizeof(img)), 0);
	run_bz_load(kpath, 4 * GiB + 64 * MiB, initrd, isize, 0xC0000000);
	if (real)
		run_bz_load(real, 256 * MiB, initrd, isize, 256 * MiB);
}

static void test_boot_pvh(const uint8_t *initrd, size_t isize)
{
	struct elf_syn *s = calloc(1, sizeof(*s));
	struct mem_map m = { NULL };
	struct boot_setup bs = { 0 };
	char err[512] = "", kpath[PATH_MAX], ipath[PATH_MAX];
	const uint8_t *si;

	snprintf(kpath, sizeof(kpath), "%s/vmlinux", test_dir);
	snprintf(ipath, sizeof(ipath), "%s/initrd", test_dir);
	elf_syn(s, false);
	CHECK_U(write_file(kpath, s->img, ELF_LEN), 0);
	cfg_init(kpath, ipath, 32 * MiB, "console=hvc0");
	CHECK_U(mem_init(&m, 32 * MiB), 0);
	CHECK(boot_load(&m, &test_cfg, 0xe0000, &bs, err, sizeof(err)) == 0, "%s", err);
	CHECK(!bs.long_mode && bs.entry == ELF_ENTRY && bs.arg == BOOT_START_INFO_ADDR,
	      "boot_setup %d %#llx %#llx", bs.long_mode, (unsigned long long)bs.entry,
	      (unsigned long long)bs.arg);
	si = mem_translate(&m, BOOT_START_INFO_ADDR, 4096);
	CHECK_U(rd32(si), 0x336ec578);
	CHECK_U(rd32(si + 12), 1);
	CHECK_U(rd64(si + 24), BOOT_CMDLINE_ADDR);
	CHECK_U(rd64(si + 64), isize);
	CHECK(rd64(si + 56) % 4096 == 0 && rd64(si + 56) + isize <= 32 * MiB &&
	      rd64(si + 56) + isize > 32 * MiB - 4096, "PVH initrd at %#llx",
	      (unsigned long long)rd64(si + 56));
	CHECK(!memcmp(mem_translate(&m, rd64(si + 56), isize), initrd, isize), "PVH initrd bytes");
	CHECK_U(rd32(si + 48), 5);	/* memmap entries: 4 below 1 MiB and RAM, the ECAM */
	CHECK_U(rd64(si + 16), BOOT_START_INFO_ADDR + 56);
	CHECK_U(rd64(si + 40), BOOT_START_INFO_ADDR + 88);
	CHECK(!memcmp(mem_translate(&m, ELF_LOAD_PADDR, ELF_LOAD_FILESZ), s->img + ELF_LOAD_OFF,
		      ELF_LOAD_FILESZ), "PVH kernel bytes");
	CHECK_S((const char *)mem_translate(&m, BOOT_CMDLINE_ADDR, 1), "console=hvc0");
	mem_destroy(&m);
	free(s);
}

static void check_err(int ret, int want_ret, const char *err, const char *want, const char *what)
{
	CHECK(ret == want_ret, "%s: returned %d, want %d", what, ret, want_ret);
	CHECK(strcmp(err, want) == 0, "%s: got \"%s\", want \"%s\"", what, err, want);
}

static void test_boot_errors(void)
{
	static uint8_t img[SYN_LEN];
	static char want[2 * PATH_MAX + 256];
	char err[512], kpath[PATH_MAX], ipath[PATH_MAX], long_cmd[18];
	const char *real = real_bzimage();
	struct mem_map m = { NULL };
	struct boot_setup bs;

	snprintf(kpath, sizeof(kpath), "%s/bzImage", test_dir);
	snprintf(ipath, sizeof(ipath), "%s/initrd", test_dir);
	syn_bz(img, sizeof(img));
	wr32(img + BZ_CMDLINE_SIZE, 16);
	CHECK_U(write_file(kpath, img, sizeof(img)), 0);

	memset(long_cmd, 'x', 17);
	long_cmd[17] = '\0';
	cfg_init(kpath, "", 64 * MiB, long_cmd);
	snprintf(want, sizeof(want), "%s:5: vm.cmdline: expected at most 16 bytes for this kernel, found 17",
		 test_cfg.path);
	check_err(boot_check(&test_cfg, err, sizeof(err)), -EINVAL, err, want, "long cmdline");
	long_cmd[16] = '\0';
	cfg_init(kpath, "", 64 * MiB, long_cmd);
	CHECK(boot_check(&test_cfg, err, sizeof(err)) == 0, "16-byte cmdline: %s", err);

	/* 17 MiB of kernel (1 MiB of init_size from 16 MiB) plus a 12 KiB initrd. */
	cfg_init(kpath, ipath, 17 * MiB, "");
	snprintf(want, sizeof(want), "%s:2: vm.memory: expected at least 18M to hold the kernel "
		 "(17M from its load address) and the initrd (11K), found 17M", test_cfg.path);
	check_err(boot_check(&test_cfg, err, sizeof(err)), -EINVAL, err, want, "small memory");
	/* memory not given: the message points at [vm]. */
	test_cfg.line.memory = 0;
	want[strlen(test_cfg.path) + 1] = '1';
	check_err(boot_check(&test_cfg, err, sizeof(err)), -EINVAL, err, want, "small default memory");
	cfg_init(kpath, ipath, 18 * MiB, "");
	CHECK(boot_check(&test_cfg, err, sizeof(err)) == 0, "18M: %s", err);
	if (real) {
		cfg_init(real, ipath, 64 * MiB, "");
		snprintf(want, sizeof(want), "%s:2: vm.memory: expected at least ", test_cfg.path);
		CHECK(boot_check(&test_cfg, err, sizeof(err)) == -EINVAL &&
		      !strncmp(err, want, strlen(want)), "real kernel in 64M: %s", err);
	}

	/* A kernel whose file runs past pref_address + init_size: the initrd
	 * must stay clear of the whole file at 1 MiB (ends at 0x102a00). */
	syn_bz(img, sizeof(img));
	wr64(img + BZ_PREF_ADDRESS, 0x100000);
	wr32(img + BZ_INIT_SIZE, 0x1000);
	CHECK_U(write_file(kpath, img, sizeof(img)), 0);
	cfg_init(kpath, ipath, 0x105000, "");
	CHECK(boot_check(&test_cfg, err, sizeof(err)) == -EINVAL, "initrd over the kernel file: %s", err);
	cfg_init(kpath, ipath, 0x106000, "");
	CHECK(boot_check(&test_cfg, err, sizeof(err)) == 0, "initrd after the kernel file: %s", err);

	cfg_init("/nonexistent/vmlinuz", "", 64 * MiB, "");
	snprintf(want, sizeof(want), "%s:3: vm.kernel: cannot open /nonexistent/vmlinuz: "
		 "No such file or directory", test_cfg.path);
	check_err(boot_check(&test_cfg, err, sizeof(err)), -ENOENT, err, want, "missing kernel");
	CHECK_U(mem_init(&m, 64 * MiB), 0);
	check_err(boot_load(&m, &test_cfg, 0, &bs, err, sizeof(err)), -ENOENT, err, want,
		  "missing kernel (load)");
	cfg_init(test_dir, "", 64 * MiB, "");
	snprintf(want, sizeof(want), "%s:3: vm.kernel: cannot read %s: Is a directory",
		 test_cfg.path, test_dir);
	check_err(boot_check(&test_cfg, err, sizeof(err)), -EISDIR, err, want, "kernel is a folder");
	cfg_init(kpath, test_dir, 64 * MiB, "");
	snprintf(want, sizeof(want), "%s:4: vm.initrd: cannot read %s: Is a directory",
		 test_cfg.path, test_dir);
	check_err(boot_check(&test_cfg, err, sizeof(err)), -EISDIR, err, want, "initrd is a folder");
	cfg_init(kpath, "/nonexistent/initrd", 64 * MiB, "");
	snprintf(want, sizeof(want), "%s:4: vm.initrd: cannot open /nonexistent/initrd: "
		 "No such file or directory", test_cfg.path);
	check_err(boot_check(&test_cfg, err, sizeof(err)), -ENOENT, err, want, "missing initrd");
	cfg_init(ipath, "", 64 * MiB, "");
	snprintf(want, sizeof(want), "%s:3: vm.kernel: expected a bzImage or an ELF vmlinux with a "
		 "PVH note, found %s: not a bzImage (no HdrS setup header)", test_cfg.path, ipath);
	check_err(boot_check(&test_cfg, err, sizeof(err)), -EINVAL, err, want, "initrd as kernel");

	/* boot_check passes, but this RAM is smaller than the config says. */
	mem_destroy(&m);
	CHECK_U(mem_init(&m, 1 * MiB), 0);
	cfg_init(kpath, "", 64 * MiB, "");
	snprintf(want, sizeof(want), "loading %s into guest RAM: Bad address", kpath);
	check_err(boot_load(&m, &test_cfg, 0, &bs, err, sizeof(err)), -EFAULT, err, want, "small RAM");
	mem_destroy(&m);
}

static void test_reset_vector(void)
{
	const uint8_t want[] = { 0xba, 0x64, 0x00, 0xb0, 0xfe, 0xee, 0xf4, 0xeb, 0xfd };
	const uint8_t want2[] = { 0xba, 0x34, 0x12, 0xb0, 0x01 };
	struct mem_map m = { NULL };
	const uint8_t *p;

	CHECK_U(mem_init(&m, 2 * MiB), 0);
	CHECK_U(boot_write_reset_vector(&m, 0x64, 0xfe), 0);
	p = mem_translate(&m, BOOT_RESET_VECTOR_ADDR, sizeof(want));
	CHECK(!memcmp(p, want, sizeof(want)), "reset vector bytes");
	CHECK_U(boot_write_reset_vector(&m, 0x1234, 0x01), 0);
	CHECK(!memcmp(p, want2, sizeof(want2)), "reset vector port/value");
	mem_destroy(&m);
	CHECK_U(mem_init(&m, 0xf0000), 0);
	CHECK_U(boot_write_reset_vector(&m, 0x64, 0xfe), -EFAULT);
	mem_destroy(&m);
}

static void test_boot_files(void)
{
	uint8_t initrd[12 * 1024 - 100];
	char path[PATH_MAX];

	if (!mkdtemp(test_dir)) {
		perror("mkdtemp");
		test_failures++;
		return;
	}
	for (size_t i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i * 31 + 5);
	snprintf(path, sizeof(path), "%s/initrd", test_dir);
	CHECK_U(write_file(path, initrd, sizeof(initrd)), 0);
	test_boot_bzimage(initrd, sizeof(initrd));
	test_boot_pvh(initrd, sizeof(initrd));
	test_boot_errors();
	for (const char *const *n = (const char *const[]){ "initrd", "bzImage", "vmlinux", NULL }; *n; n++) {
		snprintf(path, sizeof(path), "%s/%s", test_dir, *n);
		unlink(path);
	}
	rmdir(test_dir);
}

int main(void)
{
	rcu_register_thread();
	test_bz_parse_real();
	test_bz_parse_synthetic();
	test_zero_page();
	test_e820();
	test_pvh_parse_bad(false);
	test_pvh_parse_bad(true);
	test_pvh_parse_good(false);
	test_pvh_parse_good(true);
	test_pvh_load();
	test_pvh_real();
	test_pvh_start_info();
	test_reset_vector();
	test_boot_files();
	rcu_unregister_thread();
	if (test_failures) {
		fprintf(stderr, "test_boot: %d check(s) failed\n", test_failures);
		return 1;
	}
	printf("test_boot: all checks passed\n");
	return 0;
}
