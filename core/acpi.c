/*
 * ACPI table builder. Model: the ACPI 6.3 specification, chapters 5.2
 * (tables) and 20 (AML encoding). Pure code on a caller-provided buffer:
 * no threads, no KVM calls, no allocation; the caller owns the buffer.
 *
 * The platform is described as HARDWARE-REDUCED ACPI: no PM1/GPE blocks,
 * no PM timer, no SCI, no FACS. Linux 6.1 then never installs an SCI
 * handler (evevent.c skips it; x86 boot.c skips the SCI override),
 * powers off through the FADT sleep control/status registers, and resets
 * through RESET_REG. On x86, hardware-reduced mode also makes Linux treat
 * the 8259 as absent (null_legacy_pic) and skip the PIT/HPET tick setup,
 * which is why the MADT does not claim PCAT_COMPAT.
 *
 * With PCI, the DSDT's \_SB.PCI0 is a conventional PCI host bridge
 * (PNP0A03): Linux treats _OSC as optional for those (a PNP0A08 bridge
 * without _OSC is reported as "platform retains control"), and the devices
 * are PCI functions using MSI-X, which need nothing PCIe-specific. Linux
 * uses the MCFG's ECAM once e820 or a PNP0C01/PNP0C02 _CRS reserves it;
 * both do (\_SB.MRES).
 *
 * Layout in the buffer, every table 16-byte aligned, fixed-size tables
 * first so their offsets do not depend on the CPU count:
 *   RSDP (36) | XSDT (36 + 8 per table) | FADT (276) | DSDT (36 + AML) |
 *   MADT | MCFG (60, with PCI only)
 */
#include "acpi.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "core/mem.h"
#include "util.h"

#define ACPI_OEM_ID "MINVMM"		/* 6 bytes */
#define ACPI_OEM_TABLE_ID "MINVMMTB"	/* 8 bytes */
#define ACPI_OEM_REVISION 1
#define ACPI_CREATOR_ID "MVMM"		/* 4 bytes */
#define ACPI_CREATOR_REVISION 1
#define ACPI_HYPERVISOR_ID "MINVMM"	/* FADT Hypervisor Vendor Identity */

#define ACPI_TABLE_ALIGN 16
#define ACPI_DSDT_AML_MAX 512

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));
static_assert(sizeof(struct acpi_header) == 36, "ACPI table header");

struct acpi_rsdp {
	char signature[8];
	uint8_t checksum;		/* over the first 20 bytes */
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum;	/* over all 36 bytes */
	uint8_t reserved[3];
} __attribute__((packed));
static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP revision 2");

/* Generic Address Structure */
struct acpi_gas {
	uint8_t space_id;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	uint64_t address;
} __attribute__((packed));
static_assert(sizeof(struct acpi_gas) == 12, "GAS");

#define ACPI_GAS_SYSTEM_IO 1
#define ACPI_GAS_ACCESS_BYTE 1

struct acpi_fadt {
	struct acpi_header header;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable;
	uint8_t acpi_disable;
	uint8_t s4bios_req;
	uint8_t pstate_cnt;
	uint32_t pm1a_evt_blk;
	uint32_t pm1b_evt_blk;
	uint32_t pm1a_cnt_blk;
	uint32_t pm1b_cnt_blk;
	uint32_t pm2_cnt_blk;
	uint32_t pm_tmr_blk;
	uint32_t gpe0_blk;
	uint32_t gpe1_blk;
	uint8_t pm1_evt_len;
	uint8_t pm1_cnt_len;
	uint8_t pm2_cnt_len;
	uint8_t pm_tmr_len;
	uint8_t gpe0_blk_len;
	uint8_t gpe1_blk_len;
	uint8_t gpe1_base;
	uint8_t cst_cnt;
	uint16_t p_lvl2_lat;
	uint16_t p_lvl3_lat;
	uint16_t flush_size;
	uint16_t flush_stride;
	uint8_t duty_offset;
	uint8_t duty_width;
	uint8_t day_alrm;
	uint8_t mon_alrm;
	uint8_t century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk;
	struct acpi_gas x_pm1b_evt_blk;
	struct acpi_gas x_pm1a_cnt_blk;
	struct acpi_gas x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk;
	struct acpi_gas x_pm_tmr_blk;
	struct acpi_gas x_gpe0_blk;
	struct acpi_gas x_gpe1_blk;
	struct acpi_gas sleep_control;
	struct acpi_gas sleep_status;
	char hypervisor_id[8];
} __attribute__((packed));
static_assert(sizeof(struct acpi_fadt) == 276, "FADT revision 6");
static_assert(offsetof(struct acpi_fadt, flags) == 112, "FADT flags");
static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT X_DSDT");
static_assert(offsetof(struct acpi_fadt, sleep_control) == 244, "FADT SLEEP_CONTROL");

#define FADT_REVISION 6
#define FADT_MINOR_VERSION 3		/* ACPI 6.3 */

/* IAPC_BOOT_ARCH. LEGACY_DEVICES stays clear (Linux only uses it to
 * probe for a PnP BIOS); 8042 stays clear so the i8042 driver does not
 * probe the reset-only controller; MSI_NOT_SUPPORTED stays clear. */
#define FADT_BOOT_VGA_NOT_PRESENT (1u << 2)
#define FADT_BOOT_CMOS_RTC_NOT_PRESENT (1u << 5)

#define FADT_F_WBINVD (1u << 0)
/* No fixed-feature buttons: hardware-reduced has no PM1 event block. */
#define FADT_F_PWR_BUTTON (1u << 4)
#define FADT_F_SLP_BUTTON (1u << 5)
#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)

struct acpi_madt {
	struct acpi_header header;
	uint32_t lapic_address;
	uint32_t flags;
} __attribute__((packed));
static_assert(sizeof(struct acpi_madt) == 44, "MADT");

#define MADT_REVISION 5			/* ACPI 6.3 */

struct madt_lapic {
	uint8_t type;
	uint8_t length;
	uint8_t processor_uid;
	uint8_t apic_id;
	uint32_t flags;
} __attribute__((packed));
static_assert(sizeof(struct madt_lapic) == 8, "MADT Processor Local APIC");

struct madt_ioapic {
	uint8_t type;
	uint8_t length;
	uint8_t ioapic_id;
	uint8_t reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));
static_assert(sizeof(struct madt_ioapic) == 12, "MADT I/O APIC");

struct madt_iso {
	uint8_t type;
	uint8_t length;
	uint8_t bus;
	uint8_t source;
	uint32_t gsi;
	uint16_t flags;
} __attribute__((packed));
static_assert(sizeof(struct madt_iso) == 10, "MADT Interrupt Source Override");

struct madt_lapic_nmi {
	uint8_t type;
	uint8_t length;
	uint8_t processor_uid;
	uint16_t flags;
	uint8_t lint;
} __attribute__((packed));
static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT Local APIC NMI");

#define MADT_TYPE_LAPIC 0
#define MADT_TYPE_IOAPIC 1
#define MADT_TYPE_ISO 2
#define MADT_TYPE_LAPIC_NMI 4
#define MADT_LAPIC_ENABLED 1
#define MADT_UID_ALL 0xff
/* MPS INTI flags: active high (01), edge triggered (01 << 2); an NMI
 * pin is edge/high by definition, so say so rather than "conforms". */
#define MADT_INTI_EDGE_HIGH 0x0005
#define MADT_INTI_CONFORMS 0x0000

#define DSDT_REVISION 2			/* 64-bit AML integers */
#define XSDT_REVISION 1
#define RSDP_REVISION 2
#define MCFG_REVISION 1
#define XSDT_MAX_ENTRIES 3		/* FADT, MADT, MCFG */

struct acpi_mcfg {
	struct acpi_header header;
	uint64_t reserved;
	/* one configuration space allocation */
	uint64_t base;
	uint16_t segment;
	uint8_t start_bus;
	uint8_t end_bus;
	uint32_t reserved2;
} __attribute__((packed));
static_assert(sizeof(struct acpi_mcfg) == 60, "MCFG with one allocation");

/* AML opcodes and resource descriptor tags (ACPI 6.3, 20.2 and 6.4) */
#define AML_ZERO_OP 0x00
#define AML_ONE_OP 0x01
#define AML_NAME_OP 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_QWORD_PREFIX 0x0e
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_EXT_OP_PREFIX 0x5b
#define AML_DEVICE_OP 0x82		/* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR '\\'

#define RES_IO_TAG 0x47			/* small item 0x08, length 7 */
#define RES_IO_DECODE16 0x01
#define RES_IRQ_NOFLAGS_TAG 0x22	/* small item 0x04, length 2 */
#define RES_END_TAG 0x79		/* small item 0x0f, length 1 */
#define RES_MEM32_FIXED_TAG 0x86	/* large items */
#define RES_DWORD_ADDR_TAG 0x87
#define RES_WORD_ADDR_TAG 0x88
#define RES_MEM32_FIXED_LEN 9
#define RES_MEM_RW 0x01			/* also _RW of an address descriptor */
/* Address space descriptors: resource types, general flags (producer,
 * positive decode, fixed minimum and maximum) and type-specific flags. */
#define RES_ADDR_MEM 0
#define RES_ADDR_IO 1
#define RES_ADDR_BUS 2
#define RES_ADDR_FIXED 0x0c
#define RES_IO_ENTIRE_RANGE 0x03

#define COM1_PORT 0x3f8
#define COM1_PORT_LEN 8
#define COM1_IRQ 4
/* PCI configuration mechanism #1 (dev/pci.h): 0xcf8-0xcff */
#define CONF1_PORT 0xcf8
#define CONF1_LEN 8

struct acpi_layout {
	size_t xsdt, fadt, dsdt, madt, mcfg, total;
	size_t dsdt_len, madt_len;
	unsigned n_xsdt;
};

static uint8_t acpi_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum += *b++;
	return (uint8_t)-sum;
}

/* Sets the checksum byte so that the whole table sums to zero. */
static void acpi_table_seal(void *table)
{
	struct acpi_header *h = table;

	h->checksum = 0;
	h->checksum = acpi_checksum(table, h->length);
}

static struct acpi_header acpi_header_make(const char sig[4], size_t len, uint8_t rev)
{
	struct acpi_header h = {
		.length = (uint32_t)len,
		.revision = rev,
		.oem_revision = ACPI_OEM_REVISION,
		.creator_revision = ACPI_CREATOR_REVISION,
	};

	memcpy(h.signature, sig, sizeof(h.signature));
	memcpy(h.oem_id, ACPI_OEM_ID, sizeof(h.oem_id));
	memcpy(h.oem_table_id, ACPI_OEM_TABLE_ID, sizeof(h.oem_table_id));
	memcpy(h.creator_id, ACPI_CREATOR_ID, sizeof(h.creator_id));
	return h;
}

static struct acpi_gas acpi_gas_io8(uint16_t port)
{
	return (struct acpi_gas){
		.space_id = ACPI_GAS_SYSTEM_IO,
		.bit_width = 8,
		.access_size = ACPI_GAS_ACCESS_BYTE,
		.address = port,
	};
}

/* ---- AML ---- */

/* Byte sink for AML with a sticky error: building goes on after an
 * overflow so callers check once, at the end. */
struct aml {
	uint8_t *buf;
	size_t len;
	size_t cap;
	int err;
};

static void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->err || n > a->cap - a->len) {
		a->err = -ENOSPC;
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

/* NameString: "\\XXXX" (root-relative) or "XXXX", segments of exactly
 * four characters, padded with '_' by the caller. */
static void aml_name(struct aml *a, const char *name)
{
	if (name[0] == AML_ROOT_CHAR) {
		aml_byte(a, AML_ROOT_CHAR);
		name++;
	}
	assert(strlen(name) == 4);
	aml_bytes(a, name, 4);
}

/* n bytes of v, little-endian (data inside AML and resource descriptors). */
static void aml_le(struct aml *a, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		aml_byte(a, (uint8_t)(v >> (8 * i)));
}

/* Integer with the shortest encoding, as iasl emits it. */
static void aml_integer(struct aml *a, uint64_t v)
{
	unsigned n;
	uint8_t prefix;

	if (v <= 1) {
		aml_byte(a, v ? AML_ONE_OP : AML_ZERO_OP);
		return;
	}
	if (v <= 0xff) {
		prefix = AML_BYTE_PREFIX, n = 1;
	} else if (v <= 0xffff) {
		prefix = AML_WORD_PREFIX, n = 2;
	} else if (v <= 0xffffffff) {
		prefix = AML_DWORD_PREFIX, n = 4;
	} else {
		prefix = AML_QWORD_PREFIX, n = 8;
	}
	aml_byte(a, prefix);
	aml_le(a, v, n);
}

/* Opens a PkgLength-prefixed body; returns the mark for aml_pkg_end. */
static size_t aml_pkg_begin(struct aml *a)
{
	return a->len;
}

/*
 * Inserts the PkgLength in front of the body written since `mark`. The
 * encoded length counts its own bytes: one byte holds up to 63; longer
 * forms put the byte count in bits 7-6 of the lead byte, the low nibble
 * there and the rest in the following bytes.
 */
static void aml_pkg_end(struct aml *a, size_t mark)
{
	size_t body = a->len - mark, n, total;
	uint8_t enc[4];

	if (a->err)
		return;
	for (n = 1; n < 4; n++)
		if (body + n < (n == 1 ? 64u : 1u << (4 + 8 * (n - 1))))
			break;
	total = body + n;
	assert(total < (1u << 28));
	if (n == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0f));
		for (size_t i = 1; i < n; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	if (n > a->cap - a->len) {
		a->err = -ENOSPC;
		return;
	}
	memmove(a->buf + mark + n, a->buf + mark, body);
	memcpy(a->buf + mark, enc, n);
	a->len += n;
}

/* EisaId("PNPxxxx"): three 5-bit letters, then four hex digits, stored
 * big-endian in the first two and last two bytes. */
static uint32_t aml_eisaid(const char *id)
{
	uint16_t vendor = (uint16_t)(((id[0] - '@') & 0x1f) << 10 |
				     ((id[1] - '@') & 0x1f) << 5 |
				     ((id[2] - '@') & 0x1f));
	uint16_t product = 0;

	for (int i = 3; i < 7; i++) {
		char c = id[i];

		product = (uint16_t)(product << 4 |
				     (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10));
	}
	return (uint32_t)(vendor >> 8) | (uint32_t)(vendor & 0xff) << 8 |
	       (uint32_t)(product >> 8) << 16 | (uint32_t)(product & 0xff) << 24;
}

/* Name(name, integer) */
static void aml_name_int(struct aml *a, const char *name, uint64_t v)
{
	aml_byte(a, AML_NAME_OP);
	aml_name(a, name);
	aml_integer(a, v);
}

/* Name(name, Buffer(){bytes}); a resource template is such a buffer. */
static void aml_name_buffer(struct aml *a, const char *name, const uint8_t *bytes, size_t n)
{
	size_t pkg;

	aml_byte(a, AML_NAME_OP);
	aml_name(a, name);
	aml_byte(a, AML_BUFFER_OP);
	pkg = aml_pkg_begin(a);
	aml_integer(a, n);
	aml_bytes(a, bytes, n);
	aml_pkg_end(a, pkg);
}

/* Device(name) { ... }: returns the mark for aml_pkg_end. */
static size_t aml_device_begin(struct aml *a, const char *name)
{
	size_t dev;

	aml_byte(a, AML_EXT_OP_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	dev = aml_pkg_begin(a);
	aml_name(a, name);
	return dev;
}

/* Name(\_S5, Package(){SLP_TYP, 0, 0, 0}): only the first element is
 * used in hardware-reduced mode; the others are PM1b and reserved. */
static void dsdt_s5(struct aml *a)
{
	size_t pkg;

	aml_byte(a, AML_NAME_OP);
	aml_name(a, "\\_S5_");
	aml_byte(a, AML_PACKAGE_OP);
	pkg = aml_pkg_begin(a);
	aml_byte(a, 4);
	aml_integer(a, ACPI_S5_SLP_TYP);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_pkg_end(a, pkg);
}

/* ---- resource descriptors (ACPI 6.3, 6.4), written to an aml sink ---- */

/* IO(Decode16, port, port, 1, len) */
static void res_io(struct aml *r, uint16_t port, uint8_t len)
{
	aml_byte(r, RES_IO_TAG);
	aml_byte(r, RES_IO_DECODE16);
	aml_le(r, port, 2);	/* minimum */
	aml_le(r, port, 2);	/* maximum */
	aml_byte(r, 1);		/* alignment */
	aml_byte(r, len);
}

/* IRQNoFlags(){irq} */
static void res_irq(struct aml *r, unsigned irq)
{
	aml_byte(r, RES_IRQ_NOFLAGS_TAG);
	aml_le(r, 1u << irq, 2);
}

/* Memory32Fixed(ReadWrite, base, len) */
static void res_mem32_fixed(struct aml *r, uint32_t base, uint32_t len)
{
	aml_byte(r, RES_MEM32_FIXED_TAG);
	aml_le(r, RES_MEM32_FIXED_LEN, 2);
	aml_byte(r, RES_MEM_RW);
	aml_le(r, base, 4);
	aml_le(r, len, 4);
}

/*
 * Word (n = 2) or DWord (n = 4) address space descriptor for a range
 * [min, max] that a bridge produces: positive decode, fixed minimum and
 * maximum, so granularity and translation are 0.
 */
static void res_addr(struct aml *r, unsigned n, uint8_t type, uint8_t type_flags,
		     uint32_t min, uint32_t max)
{
	aml_byte(r, n == 2 ? RES_WORD_ADDR_TAG : RES_DWORD_ADDR_TAG);
	aml_le(r, 3 + 5 * n, 2);	/* flags bytes, then five n-byte fields */
	aml_byte(r, type);
	aml_byte(r, RES_ADDR_FIXED);
	aml_byte(r, type_flags);
	aml_le(r, 0, n);		/* granularity */
	aml_le(r, min, n);
	aml_le(r, max, n);
	aml_le(r, 0, n);		/* translation offset */
	aml_le(r, (uint64_t)max - min + 1, n);
}

/* Device(name) { Name(_HID, EisaId(hid)) Name(_UID, 0) ...: returns the
 * mark for dsdt_device_end. */
static size_t dsdt_device_begin(struct aml *a, const char *name, const char *hid)
{
	size_t dev = aml_device_begin(a, name);

	aml_name_int(a, "_HID", aml_eisaid(hid));
	aml_name_int(a, "_UID", 0);
	return dev;
}

/* ... Name(_CRS, the template in r) } */
static void dsdt_device_end(struct aml *a, size_t dev, struct aml *r)
{
	aml_byte(r, RES_END_TAG);
	aml_byte(r, 0);		/* checksum not used */
	assert(!r->err);
	aml_name_buffer(a, "_CRS", r->buf, r->len);
	aml_pkg_end(a, dev);
}

/* Device(COM1) { _HID PNP0501, _UID 0, _CRS }, so the 8250 PnP driver
 * claims the port with its IRQ. */
static void dsdt_com1(struct aml *a)
{
	uint8_t buf[16];
	struct aml r = { .buf = buf, .cap = sizeof(buf) };
	size_t dev = dsdt_device_begin(a, "COM1", "PNP0501");

	res_io(&r, COM1_PORT, COM1_PORT_LEN);
	res_irq(&r, COM1_IRQ);
	dsdt_device_end(a, dev, &r);
}

/*
 * Device(PCI0): the host bridge of segment 0, bus 0. Its _CRS: the bus
 * number, the mechanism #1 ports it uses itself, and the windows it
 * forwards: all other I/O ports (around 0xcf8-0xcff) and the 32-bit BAR
 * window below the ECAM.
 */
static void dsdt_pci0(struct aml *a)
{
	uint8_t buf[128];
	struct aml r = { .buf = buf, .cap = sizeof(buf) };
	size_t dev = dsdt_device_begin(a, "PCI0", "PNP0A03");

	aml_name_int(a, "_SEG", 0);
	aml_name_int(a, "_BBN", 0);
	res_addr(&r, 2, RES_ADDR_BUS, 0, 0, 0);
	res_io(&r, CONF1_PORT, CONF1_LEN);
	res_addr(&r, 2, RES_ADDR_IO, RES_IO_ENTIRE_RANGE, 0, CONF1_PORT - 1);
	res_addr(&r, 2, RES_ADDR_IO, RES_IO_ENTIRE_RANGE, CONF1_PORT + CONF1_LEN, 0xffff);
	res_addr(&r, 4, RES_ADDR_MEM, RES_MEM_RW, MEM_PCI_HOLE_START, MEM_PCI_ECAM_BASE - 1);
	dsdt_device_end(a, dev, &r);
}

/* Device(MRES): motherboard resources (PNP0C02) holding the ECAM, where
 * Linux looks for it before trusting the MCFG. */
static void dsdt_mres(struct aml *a)
{
	uint8_t buf[16];
	struct aml r = { .buf = buf, .cap = sizeof(buf) };
	size_t dev = dsdt_device_begin(a, "MRES", "PNP0C02");

	res_mem32_fixed(&r, MEM_PCI_ECAM_BASE, MEM_PCI_ECAM_SIZE);
	dsdt_device_end(a, dev, &r);
}

/* Writes the DSDT's AML body into aml[cap]; returns its length or -ENOSPC. */
static int dsdt_aml(uint8_t *aml, size_t cap, const struct acpi_params *p)
{
	struct aml a = { .buf = aml, .cap = cap };
	size_t scope;

	dsdt_s5(&a);
	aml_byte(&a, AML_SCOPE_OP);
	scope = aml_pkg_begin(&a);
	aml_name(&a, "\\_SB_");
	dsdt_com1(&a);
	if (p->pci) {
		dsdt_pci0(&a);
		dsdt_mres(&a);
	}
	aml_pkg_end(&a, scope);
	return a.err ? a.err : (int)a.len;
}

/* ---- tables ---- */

static size_t madt_size(unsigned n_cpus)
{
	return sizeof(struct acpi_madt) + n_cpus * sizeof(struct madt_lapic) +
	       sizeof(struct madt_ioapic) + sizeof(struct madt_iso) +
	       sizeof(struct madt_lapic_nmi);
}

static void acpi_layout_compute(struct acpi_layout *l, const struct acpi_params *p,
				size_t aml_len)
{
	size_t off = sizeof(struct acpi_rsdp);

	l->n_xsdt = p->pci ? 3 : 2;
	l->dsdt_len = sizeof(struct acpi_header) + aml_len;
	l->madt_len = madt_size(p->n_cpus);
	l->xsdt = ALIGN_UP(off, ACPI_TABLE_ALIGN);
	off = l->xsdt + sizeof(struct acpi_header) + l->n_xsdt * sizeof(uint64_t);
	l->fadt = ALIGN_UP(off, ACPI_TABLE_ALIGN);
	off = l->fadt + sizeof(struct acpi_fadt);
	l->dsdt = ALIGN_UP(off, ACPI_TABLE_ALIGN);
	off = l->dsdt + l->dsdt_len;
	l->madt = ALIGN_UP(off, ACPI_TABLE_ALIGN);
	off = l->madt + l->madt_len;
	l->mcfg = p->pci ? ALIGN_UP(off, ACPI_TABLE_ALIGN) : 0;
	l->total = p->pci ? l->mcfg + sizeof(struct acpi_mcfg) : off;
}

static void acpi_write_rsdp(uint8_t *buf, uint64_t xsdt_gpa)
{
	struct acpi_rsdp r = {
		.revision = RSDP_REVISION,
		.length = sizeof(r),
		.xsdt_address = xsdt_gpa,
	};

	memcpy(r.signature, "RSD PTR ", sizeof(r.signature));
	memcpy(r.oem_id, ACPI_OEM_ID, sizeof(r.oem_id));
	r.checksum = acpi_checksum(&r, offsetof(struct acpi_rsdp, length));
	r.extended_checksum = acpi_checksum(&r, sizeof(r));
	memcpy(buf, &r, sizeof(r));
}

static void acpi_write_xsdt(uint8_t *buf, const uint64_t *entries, unsigned n)
{
	size_t len = sizeof(struct acpi_header) + n * sizeof(uint64_t);
	struct acpi_header h = acpi_header_make("XSDT", len, XSDT_REVISION);

	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), entries, n * sizeof(uint64_t));
	acpi_table_seal(buf);
}

/* One allocation: the ECAM of segment 0, bus 0 (dev/pci.h). */
static void acpi_write_mcfg(uint8_t *buf)
{
	struct acpi_mcfg m = {
		.header = acpi_header_make("MCFG", sizeof(m), MCFG_REVISION),
		.base = MEM_PCI_ECAM_BASE,
		.segment = 0,
		.start_bus = 0,
		.end_bus = 0,
	};

	memcpy(buf, &m, sizeof(m));
	acpi_table_seal(buf);
}

static void acpi_write_fadt(uint8_t *buf, uint64_t dsdt_gpa, const struct acpi_params *p)
{
	struct acpi_fadt f = {
		.header = acpi_header_make("FACP", sizeof(f), FADT_REVISION),
		/* The 32-bit field only when it can hold the address; OSPM
		 * prefers X_DSDT anyway. */
		.dsdt = dsdt_gpa <= UINT32_MAX ? (uint32_t)dsdt_gpa : 0,
		.iapc_boot_arch = FADT_BOOT_VGA_NOT_PRESENT | FADT_BOOT_CMOS_RTC_NOT_PRESENT,
		.flags = FADT_F_WBINVD | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON |
			 FADT_F_HW_REDUCED_ACPI,
		.minor_version = FADT_MINOR_VERSION,
		.x_dsdt = dsdt_gpa,
		.sleep_control = acpi_gas_io8(p->sleep_port),
		.sleep_status = acpi_gas_io8(p->sleep_port),
	};

	/* SCI_INT stays 0: there is no SCI in hardware-reduced mode. */
	if (p->reset_port) {
		f.reset_reg = acpi_gas_io8(p->reset_port);
		f.reset_value = p->reset_value;
		f.flags |= FADT_F_RESET_REG_SUP;
	}
	memcpy(f.hypervisor_id, ACPI_HYPERVISOR_ID, strlen(ACPI_HYPERVISOR_ID));
	memcpy(buf, &f, sizeof(f));
	acpi_table_seal(buf);
}

static void acpi_write_dsdt(uint8_t *buf, const uint8_t *aml, size_t aml_len)
{
	struct acpi_header h = acpi_header_make("DSDT", sizeof(h) + aml_len, DSDT_REVISION);

	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), aml, aml_len);
	acpi_table_seal(buf);
}

/* The in-kernel PIT raises ISA IRQ0, which the platform wires to I/O
 * APIC pin 2 as on PC hardware; legacy NMI is on every LAPIC's LINT1. */
static size_t madt_write_fixed_entries(uint8_t *buf, const struct acpi_params *p)
{
	struct madt_ioapic io = {
		.type = MADT_TYPE_IOAPIC, .length = sizeof(io),
		.ioapic_id = p->ioapic_id, .address = p->ioapic_addr, .gsi_base = 0,
	};
	struct madt_iso iso = {
		.type = MADT_TYPE_ISO, .length = sizeof(iso),
		.bus = 0, .source = 0, .gsi = 2, .flags = MADT_INTI_CONFORMS,
	};
	struct madt_lapic_nmi nmi = {
		.type = MADT_TYPE_LAPIC_NMI, .length = sizeof(nmi),
		.processor_uid = MADT_UID_ALL, .flags = MADT_INTI_EDGE_HIGH, .lint = 1,
	};
	size_t off = 0;

	memcpy(buf + off, &io, sizeof(io));
	off += sizeof(io);
	memcpy(buf + off, &iso, sizeof(iso));
	off += sizeof(iso);
	memcpy(buf + off, &nmi, sizeof(nmi));
	return off + sizeof(nmi);
}

static void acpi_write_madt(uint8_t *buf, size_t len, const struct acpi_params *p)
{
	/* flags 0: no PCAT_COMPAT; hardware-reduced Linux ignores the 8259s. */
	struct acpi_madt m = {
		.header = acpi_header_make("APIC", len, MADT_REVISION),
		.lapic_address = p->lapic_addr,
	};
	size_t off = sizeof(m);

	memcpy(buf, &m, sizeof(m));
	for (unsigned i = 0; i < p->n_cpus; i++) {
		struct madt_lapic l = {
			.type = MADT_TYPE_LAPIC, .length = sizeof(l),
			.processor_uid = (uint8_t)i, .apic_id = (uint8_t)i,
			.flags = MADT_LAPIC_ENABLED,
		};

		memcpy(buf + off, &l, sizeof(l));
		off += sizeof(l);
	}
	off += madt_write_fixed_entries(buf + off, p);
	assert(off == len);
	acpi_table_seal(buf);
}

int acpi_build(void *buf, size_t size, uint64_t gpa, const struct acpi_params *p)
{
	uint8_t aml[ACPI_DSDT_AML_MAX];
	struct acpi_layout l;
	uint8_t *b = buf;
	int aml_len;

	if (!buf || !p || p->n_cpus == 0 || p->n_cpus > ACPI_MAX_CPUS ||
	    gpa % ACPI_TABLE_ALIGN)
		return -EINVAL;
	aml_len = dsdt_aml(aml, sizeof(aml), p);
	assert(aml_len > 0);
	acpi_layout_compute(&l, p, (size_t)aml_len);
	if (gpa > UINT64_MAX - l.total)
		return -EINVAL;
	if (size < l.total)
		return -ENOSPC;

	memset(b, 0, l.total);
	acpi_write_dsdt(b + l.dsdt, aml, (size_t)aml_len);
	acpi_write_fadt(b + l.fadt, gpa + l.dsdt, p);
	acpi_write_madt(b + l.madt, l.madt_len, p);
	if (p->pci)
		acpi_write_mcfg(b + l.mcfg);
	acpi_write_xsdt(b + l.xsdt, (const uint64_t[XSDT_MAX_ENTRIES]){
		gpa + l.fadt, gpa + l.madt, gpa + l.mcfg }, l.n_xsdt);
	acpi_write_rsdp(b, gpa + l.xsdt);
	return (int)l.total;
}
