/*
 * Kernel loader (see boot.h). Works in two steps: boot_plan reads the files'
 * headers and decides every address (shared by --check and the real boot),
 * then boot_load writes guest RAM. Main thread only.
 */
#include "core/boot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/bzimage.h"
#include "core/config.h"
#include "core/e820.h"
#include "core/mem.h"
#include "core/pvh.h"
#include "core/util.h"

#define BOOT_MAX_E820 8
#define PVH_CMDLINE_MAX 4096

struct boot_plan {
	uint8_t *kernel;		/* whole file, malloc'd */
	size_t kernel_len;
	bool is_elf;
	struct bzimage_info bz;
	struct pvh_info pvh;
	uint64_t kernel_end;		/* first byte the kernel leaves free */
	int initrd_fd;			/* -1: none */
	uint64_t initrd_addr, initrd_size;
	struct e820_entry e820[BOOT_MAX_E820];
	unsigned n_e820;
};

/* Formats "FILE:LINE: vm.KEY: message" for the key's line (or [vm]'s). */
static int __attribute__((format(printf, 6, 7)))
boot_fail(char *err, size_t errlen, const struct vm_config *cfg, unsigned line,
	  const char *key, const char *fmt, ...)
{
	size_t n = (size_t)snprintf(err, errlen, "%s:%u: vm.%s: ", cfg->path,
				    line ? line : cfg->line.vm, key);
	va_list ap;

	if (n < errlen) {
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Kernels and initrds are regular files: a folder would pass fstat and
 * only fail at boot, a FIFO could block --check. */
static int boot_check_regular(const char *path, const struct stat *st, char *err, size_t errlen)
{
	int ret = S_ISREG(st->st_mode) ? 0 : S_ISDIR(st->st_mode) ? -EISDIR : -EINVAL;

	if (ret)
		snprintf(err, errlen, "cannot read %s: %s", path,
			 ret == -EISDIR ? strerror(EISDIR) : "not a regular file");
	return ret;
}

/* Reads len bytes from offset 0; a file that ends early is -EIO. */
static int boot_pread_full(int fd, uint8_t *dst, uint64_t len)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, dst + done, len - done, (off_t)done);

		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (uint64_t)n;
	}
	return 0;
}

static int boot_read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto out;
	}
	ret = boot_check_regular(path, &st, err, errlen);
	if (ret)
		goto out;
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf) {
		ret = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	ret = boot_pread_full(fd, *buf, *len);
	if (ret) {
		snprintf(err, errlen, "cannot read %s", path);
		free(*buf);
	}
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

static int boot_parse_kernel(struct boot_plan *p, const struct vm_config *cfg,
			     char *err, size_t errlen)
{
	char why[160];
	int ret;

	p->is_elf = pvh_is_elf(p->kernel, p->kernel_len);
	if (p->is_elf) {
		ret = pvh_parse(p->kernel, p->kernel_len, &p->pvh, why, sizeof(why));
		p->kernel_end = p->pvh.load_end;
	} else {
		ret = bzimage_parse(p->kernel, p->kernel_len, &p->bz, why, sizeof(why));
		p->kernel_end = p->bz.pref_address + p->bz.init_size;
		if (BOOT_KERNEL_ADDR + p->kernel_len > p->kernel_end)
			p->kernel_end = BOOT_KERNEL_ADDR + p->kernel_len;
	}
	if (ret)
		boot_fail(err, errlen, cfg, cfg->line.kernel, "kernel",
			  "expected a bzImage or an ELF vmlinux with a PVH note, found %s: %s",
			  cfg->kernel, why);
	return ret;
}

static int boot_open_initrd(struct boot_plan *p, const struct vm_config *cfg,
			    char *err, size_t errlen)
{
	char why[PATH_MAX + 64];
	struct stat st;
	int ret;

	p->initrd_fd = -1;
	if (!cfg->initrd[0])
		return 0;
	p->initrd_fd = open(cfg->initrd, O_RDONLY | O_CLOEXEC);
	if (p->initrd_fd < 0 || fstat(p->initrd_fd, &st) < 0) {
		ret = -errno;
		boot_fail(err, errlen, cfg, cfg->line.initrd, "initrd", "cannot open %s: %s",
			  cfg->initrd, strerror(errno));
		return ret;
	}
	ret = boot_check_regular(cfg->initrd, &st, why, sizeof(why));
	if (ret)
		return boot_fail(err, errlen, cfg, cfg->line.initrd, "initrd", "%s", why), ret;
	p->initrd_size = (uint64_t)st.st_size;
	return 0;
}

/* Puts the initrd as high in low RAM as the kernel allows, above the kernel. */
static int boot_place(struct boot_plan *p, const struct vm_config *cfg, char *err, size_t errlen)
{
	uint64_t top = mem_low_size(cfg->memory);
	uint64_t need = ALIGN_UP(p->kernel_end, 4096) + ALIGN_UP(p->initrd_size, 4096);

	if (!p->is_elf && p->initrd_size && top > (uint64_t)p->bz.initrd_addr_max + 1)
		top = (uint64_t)p->bz.initrd_addr_max + 1;
	p->initrd_addr = (top - p->initrd_size) & ~4095ULL;
	if (need > top || p->initrd_addr < p->kernel_end) {
		return boot_fail(err, errlen, cfg, cfg->line.memory, "memory",
			 "expected at least %lluM to hold the kernel "
			 "(%lluM from its load address) and the initrd (%lluK), found %lluM",
			 (unsigned long long)((need + MiB - 1) / MiB),
			 (unsigned long long)(p->kernel_end / MiB),
			 (unsigned long long)(p->initrd_size / KiB),
			 (unsigned long long)(cfg->memory / MiB));
	}
	return 0;
}

static int boot_check_cmdline(const struct boot_plan *p, const struct vm_config *cfg,
			      char *err, size_t errlen)
{
	size_t max = p->is_elf ? PVH_CMDLINE_MAX - 1 : p->bz.cmdline_size;

	if (strlen(cfg->cmdline) <= max)
		return 0;
	return boot_fail(err, errlen, cfg, cfg->line.cmdline, "cmdline",
			 "expected at most %zu bytes for this kernel, found %zu", max, strlen(cfg->cmdline));
}

static void boot_plan_free(struct boot_plan *p)
{
	free(p->kernel);
	if (p->initrd_fd >= 0)
		close(p->initrd_fd);
}

static int boot_plan(struct boot_plan *p, const struct vm_config *cfg, char *err, size_t errlen)
{
	uint64_t low = mem_low_size(cfg->memory);
	char why[PATH_MAX + 64];
	int ret;

	*p = (struct boot_plan){ .initrd_fd = -1 };
	ret = boot_read_file(cfg->kernel, &p->kernel, &p->kernel_len, why, sizeof(why));
	if (ret)
		return boot_fail(err, errlen, cfg, cfg->line.kernel, "kernel", "%s", why), ret;
	ret = boot_parse_kernel(p, cfg, err, errlen);
	if (!ret)
		ret = boot_open_initrd(p, cfg, err, errlen);
	if (!ret)
		ret = boot_check_cmdline(p, cfg, err, errlen);
	if (!ret)
		ret = boot_place(p, cfg, err, errlen);
	if (!ret) {
		ret = e820_build(low, cfg->memory - low, p->e820, BOOT_MAX_E820);
		p->n_e820 = ret > 0 ? (unsigned)ret : 0;
		ret = ret > 0 ? 0 : ret;
	}
	if (ret)
		boot_plan_free(p);
	return ret;
}

int boot_check(const struct vm_config *cfg, char *err, size_t errlen)
{
	struct boot_plan p;
	int ret = boot_plan(&p, cfg, err, errlen);

	if (!ret)
		boot_plan_free(&p);
	return ret;
}

static int boot_write_gdt(struct mem_map *mem)
{
	const uint64_t gdt[BOOT_GDT_ENTRIES] = {
		[BOOT_SEL_CODE64 / 8] = 0x00af9b000000ffffULL,	/* 64-bit code, ring 0 */
		[BOOT_SEL_DATA / 8] = 0x00cf93000000ffffULL,	/* flat data */
		[BOOT_SEL_TSS / 8] = 0x00008b0000000067ULL,	/* busy 32-bit TSS at 0 */
		[BOOT_SEL_CODE32 / 8] = 0x00cf9b000000ffffULL,	/* flat 32-bit code */
	};

	return mem_write(mem, BOOT_GDT_ADDR, gdt, sizeof(gdt));
}

/* Identity map of the first 4 GiB with 2 MiB pages: the 64-bit boot
 * protocol requires the kernel, zero page, command line and initrd mapped. */
static int boot_write_page_tables(struct mem_map *mem)
{
	uint64_t *pml4 = mem_translate(mem, BOOT_PML4_ADDR, 6 * 4096);
	uint64_t *pdpt = pml4 + 512, *pd = pdpt + 512;
	const uint64_t present_rw = 0x3, huge = 0x80;

	if (!pml4)
		return -EFAULT;
	memset(pml4, 0, 6 * 4096);
	pml4[0] = (BOOT_PML4_ADDR + 4096) | present_rw;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PML4_ADDR + (2 + i) * 4096) | present_rw;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | present_rw | huge;
	return 0;
}

static int boot_read_initrd(struct mem_map *mem, const struct boot_plan *p)
{
	uint8_t *dst = mem_translate(mem, p->initrd_addr, p->initrd_size);

	return dst ? boot_pread_full(p->initrd_fd, dst, p->initrd_size) : -EFAULT;
}

static int boot_load_bzimage(struct mem_map *mem, const struct boot_plan *p,
			     const struct boot_handoff *h, struct boot_setup *out)
{
	uint8_t *zp = mem_translate(mem, BOOT_ZERO_PAGE_ADDR, BZIMAGE_ZERO_PAGE_SIZE);
	int ret;

	if (!zp)
		return -EFAULT;
	ret = mem_write(mem, BOOT_KERNEL_ADDR, p->kernel + p->bz.setup_size,
			p->kernel_len - p->bz.setup_size);
	if (!ret)
		ret = bzimage_fill_zero_page(zp, p->kernel, h);
	if (!ret)
		ret = boot_write_page_tables(mem);
	/* The 64-bit entry point is 0x200 past the 32-bit one. */
	*out = (struct boot_setup){ .long_mode = true, .entry = BOOT_KERNEL_ADDR + 0x200,
				    .arg = BOOT_ZERO_PAGE_ADDR };
	return ret;
}

static int boot_load_pvh(struct mem_map *mem, const struct boot_plan *p,
			 const struct boot_handoff *h, struct boot_setup *out)
{
	const size_t room = BOOT_ZERO_PAGE_ADDR - BOOT_START_INFO_ADDR;
	uint8_t *si = mem_translate(mem, BOOT_START_INFO_ADDR, room);
	int ret;

	if (!si)
		return -EFAULT;
	ret = pvh_load(p->kernel, mem);
	if (!ret)
		ret = pvh_fill_start_info(si, room, BOOT_START_INFO_ADDR, h);
	*out = (struct boot_setup){ .long_mode = false, .entry = p->pvh.entry,
				    .arg = BOOT_START_INFO_ADDR };
	return ret < 0 ? ret : 0;
}

int boot_write_reset_vector(struct mem_map *mem, uint16_t port, uint8_t value)
{
	const uint8_t code[] = {
		0xba, (uint8_t)port, (uint8_t)(port >> 8),	/* mov $port, %dx */
		0xb0, value,					/* mov $value, %al */
		0xee,						/* out %al, (%dx) */
		0xf4,						/* 1: hlt */
		0xeb, 0xfd,					/* jmp 1b */
	};

	return mem_write(mem, BOOT_RESET_VECTOR_ADDR, code, sizeof(code));
}

int boot_load(struct mem_map *mem, const struct vm_config *cfg, uint64_t rsdp_addr,
	      struct boot_setup *out, char *err, size_t errlen)
{
	struct boot_plan p;
	int ret = boot_plan(&p, cfg, err, errlen);

	if (ret)
		return ret;
	ret = boot_write_gdt(mem);
	if (!ret)
		ret = mem_write(mem, BOOT_CMDLINE_ADDR, cfg->cmdline, strlen(cfg->cmdline) + 1);
	if (!ret && p.initrd_fd >= 0)
		ret = boot_read_initrd(mem, &p);
	if (!ret) {
		const struct boot_handoff h = {
			.cmdline_addr = BOOT_CMDLINE_ADDR,
			.initrd_addr = p.initrd_addr,
			.initrd_size = p.initrd_size,
			.rsdp_addr = rsdp_addr,
			.e820 = p.e820,
			.n_e820 = p.n_e820,
		};

		ret = p.is_elf ? boot_load_pvh(mem, &p, &h, out) : boot_load_bzimage(mem, &p, &h, out);
	}
	if (ret)
		snprintf(err, errlen, "loading %s into guest RAM: %s", cfg->kernel, strerror(-ret));
	boot_plan_free(&p);
	return ret;
}
