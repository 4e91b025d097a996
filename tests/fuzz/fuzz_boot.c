/*
 * libFuzzer target for the kernel parsers: bzimage_parse and pvh_parse on
 * arbitrary bytes (and on a copy one byte off alignment), then what a
 * successful parse allows: bzimage_fill_zero_page, and pvh_load into a
 * FUZZ_RAM guest when the segments fit. Each must neither crash nor read out
 * of bounds, and must keep its contract: 0 with sane results, or -EINVAL
 * with a one-line message. Single-threaded, as libFuzzer runs it; the thread
 * is RCU-registered for mem_translate.
 */
#include "core/bzimage.h"
#include "core/e820.h"
#include "core/mem.h"
#include "core/pvh.h"
#include "core/util.h"
#include "rcu/rcu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_RAM (16 * MiB)

static struct mem_map fuzz_mem;
static struct e820_entry fuzz_e820[8];
static int fuzz_n_e820;
static uint8_t fuzz_zp[BZIMAGE_ZERO_PAGE_SIZE];

static void fuzz_assert(bool ok)
{
	if (!ok)
		abort();
}

static void fuzz_check_err(int ret, const char *err, size_t size)
{
	fuzz_assert(ret == -EINVAL);
	fuzz_assert(memchr(err, '\0', size) && err[0] && !strchr(err, '\n'));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	rcu_register_thread();
	if (mem_init(&fuzz_mem, FUZZ_RAM))
		abort();
	fuzz_n_e820 = e820_build(FUZZ_RAM, 0, fuzz_e820, 8);
	fuzz_assert(fuzz_n_e820 > 0);
	return 0;
}

static void fuzz_bzimage(const uint8_t *data, size_t size)
{
	const struct boot_handoff b = {
		.cmdline_addr = 0x20000, .initrd_addr = 0x800000, .initrd_size = 0x1000,
		.rsdp_addr = 0xe0000, .e820 = fuzz_e820, .n_e820 = (unsigned)fuzz_n_e820,
	};
	struct bzimage_info bi;
	char err[160];
	int ret = bzimage_parse(data, size, &bi, err, sizeof(err));

	if (ret) {
		fuzz_check_err(ret, err, sizeof(err));
		return;
	}
	fuzz_assert(bi.setup_size >= 512 && bi.setup_size < size && bi.setup_size % 512 == 0);
	fuzz_assert(bi.version >= 0x020c && bi.init_size && bi.pref_address < MEM_4G);
	fuzz_assert(bzimage_fill_zero_page(fuzz_zp, data, &b) == 0);
	fuzz_assert(fuzz_zp[0x210] == 0xff && fuzz_zp[0x1e8] == fuzz_n_e820);
	fuzz_assert(!memcmp(fuzz_zp + 0x202, "HdrS", 4));
}

static void fuzz_pvh(const uint8_t *data, size_t size)
{
	struct pvh_info pi;
	char err[160];
	int ret = pvh_parse(data, size, &pi, err, sizeof(err));

	if (ret) {
		fuzz_check_err(ret, err, sizeof(err));
		return;
	}
	fuzz_assert(pvh_is_elf(data, size));
	fuzz_assert(pi.load_end > 0 && pi.load_end <= MEM_PCI_HOLE_START);
	if (pi.load_end <= FUZZ_RAM)
		fuzz_assert(pvh_load(data, &fuzz_mem) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *odd = malloc(size + 1);

	fuzz_bzimage(data, size);
	fuzz_pvh(data, size);
	if (odd) {
		/* Headers at odd addresses must not trip UBSan's alignment checks. */
		memcpy(odd + 1, data, size);
		fuzz_pvh(odd + 1, size);
		fuzz_bzimage(odd + 1, size);
		free(odd);
	}
	return 0;
}
