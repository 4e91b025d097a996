/*
 * bzImage loader pieces (see bzimage.h), following the kernel's
 * Documentation/arch/x86/boot.rst. Pure code, any thread.
 */
#include "core/bzimage.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The setup header as laid out at offset 0x1f1 of the image and of the
 * zero page. */
struct bzimage_setup_header {
	uint8_t setup_sects;
	uint16_t root_flags;
	uint32_t syssize;
	uint16_t ram_size;
	uint16_t vid_mode;
	uint16_t root_dev;
	uint16_t boot_flag;
	uint16_t jump;
	uint32_t header;
	uint16_t version;
	uint32_t realmode_swtch;
	uint16_t start_sys_seg;
	uint16_t kernel_version;
	uint8_t type_of_loader;
	uint8_t loadflags;
	uint16_t setup_move_size;
	uint32_t code32_start;
	uint32_t ramdisk_image;
	uint32_t ramdisk_size;
	uint32_t bootsect_kludge;
	uint16_t heap_end_ptr;
	uint8_t ext_loader_ver;
	uint8_t ext_loader_type;
	uint32_t cmd_line_ptr;
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	uint8_t relocatable_kernel;
	uint8_t min_alignment;
	uint16_t xloadflags;
	uint32_t cmdline_size;
	uint32_t hardware_subarch;
	uint64_t hardware_subarch_data;
	uint32_t payload_offset;
	uint32_t payload_length;
	uint64_t setup_data;
	uint64_t pref_address;
	uint32_t init_size;
	uint32_t handover_offset;
	uint32_t kernel_info_offset;
} __attribute__((packed));

#define HDR_OFFSET 0x1f1
#define HDR_MAGIC 0x53726448		/* "HdrS" */
#define BOOT_FLAG 0xaa55
#define LOADER_UNDEFINED 0xff
#define LOADFLAG_CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x1
#define MIN_VERSION 0x020c		/* xloadflags and the 64-bit entry */
#define MIN_HDR_END 0x264		/* through init_size, read by bzimage_parse */

/* Zero page fields outside the setup header. */
#define ZP_ACPI_RSDP_ADDR 0x070
#define ZP_E820_ENTRIES 0x1e8
#define ZP_E820_TABLE 0x2d0
#define ZP_E820_MAX 128

static_assert(HDR_OFFSET + sizeof(struct bzimage_setup_header) == 0x26c, "setup header layout");
static_assert(ZP_E820_TABLE + ZP_E820_MAX * sizeof(struct e820_entry) <= BZIMAGE_ZERO_PAGE_SIZE,
	      "e820 table fits the zero page");

static int bzimage_fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s", what);
	return -EINVAL;
}

int bzimage_parse(const uint8_t *img, size_t len, struct bzimage_info *info,
		  char *err, size_t errlen)
{
	struct bzimage_setup_header h;
	unsigned sects;

	if (len < HDR_OFFSET + sizeof(h))
		return bzimage_fail(err, errlen, "too small to be a bzImage");
	memcpy(&h, img + HDR_OFFSET, sizeof(h));
	if (h.boot_flag != BOOT_FLAG || h.header != HDR_MAGIC)
		return bzimage_fail(err, errlen, "not a bzImage (no HdrS setup header)");
	/* The header ends where the jump at 0x200 lands; fields past that end
	 * are not the kernel's, and would not reach the zero page. */
	if (0x202 + img[0x201] < MIN_HDR_END) {
		snprintf(err, errlen, "setup header ends at 0x%x (the jump at 0x200), before the "
			 "boot protocol 2.12 fields end at 0x%x", 0x202 + img[0x201], MIN_HDR_END);
		return -EINVAL;
	}
	if (h.version < MIN_VERSION || !(h.xloadflags & XLF_KERNEL_64)) {
		snprintf(err, errlen, "boot protocol %u.%02u without a 64-bit entry point; "
			 "need 2.12+ with XLF_KERNEL_64", h.version >> 8, h.version & 0xff);
		return -EINVAL;
	}
	sects = h.setup_sects ? h.setup_sects : 4;
	*info = (struct bzimage_info){
		.setup_size = (size_t)(sects + 1) * 512,
		.version = h.version,
		.pref_address = h.pref_address,
		.init_size = h.init_size,
		.initrd_addr_max = h.initrd_addr_max,
		.cmdline_size = h.cmdline_size,
	};
	if (info->setup_size >= len)
		return bzimage_fail(err, errlen, "truncated: no protected-mode code after setup");
	if (!info->init_size || info->pref_address >= (1ULL << 32))
		return bzimage_fail(err, errlen, "setup header gives no usable pref_address/init_size");
	return 0;
}

int bzimage_fill_zero_page(uint8_t *zp, const uint8_t *img, const struct boot_handoff *b)
{
	struct bzimage_setup_header h;
	/* The header runs to the end of the jump's target (byte 0x201). */
	size_t hdr_len = 0x202 + img[0x201] - HDR_OFFSET;

	if (b->n_e820 > ZP_E820_MAX || b->cmdline_addr >> 32 ||
	    (b->initrd_size && (b->initrd_addr + b->initrd_size - 1) >> 32))
		return -EINVAL;
	memset(zp, 0, BZIMAGE_ZERO_PAGE_SIZE);
	if (hdr_len > sizeof(h))
		hdr_len = sizeof(h);
	memset(&h, 0, sizeof(h));
	memcpy(&h, img + HDR_OFFSET, hdr_len);
	h.type_of_loader = LOADER_UNDEFINED;
	h.loadflags |= LOADFLAG_CAN_USE_HEAP;
	h.heap_end_ptr = 0xfe00;
	h.cmd_line_ptr = (uint32_t)b->cmdline_addr;
	h.ramdisk_image = b->initrd_size ? (uint32_t)b->initrd_addr : 0;
	h.ramdisk_size = (uint32_t)b->initrd_size;
	memcpy(zp + HDR_OFFSET, &h, sizeof(h));
	memcpy(zp + ZP_ACPI_RSDP_ADDR, &b->rsdp_addr, sizeof(b->rsdp_addr));
	zp[ZP_E820_ENTRIES] = (uint8_t)b->n_e820;
	memcpy(zp + ZP_E820_TABLE, b->e820, b->n_e820 * sizeof(b->e820[0]));
	return 0;
}
