/*
 * Unit test for core/acpi.c. Parses the tables with its own byte offsets
 * (ACPI 6.3, 5.2) rather than the builder's structs, so a layout mistake
 * in one is not hidden by the same mistake in the other.
 *
 *   test_acpi             run the checks; exit 0 pass, 1 fail
 *   test_acpi --dump DIR  write RSDP, XSDT, FACP, APIC, DSDT, MCFG to
 *                         DIR/<sig>.dat (4 CPUs, PCI on) for
 *                         tests/acpi/test_acpi_iasl.sh, and print the
 *                         expected values as shell assignments
 */
#include "tests/check.h"
#include "core/acpi.h"
#include "core/mem.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GPA_BIOS 0xe0000ULL
#define BUF_SIZE (64 * 1024)
#define CANARY 0xa5

#define HDR_LEN 36
#define FADT_LEN 276
#define MCFG_LEN 60			/* header, reserved, one allocation */
/* EisaId() values as AML stores them (compressed vendor, big-endian product) */
#define EISA_PNP0501 0x0105d041u
#define EISA_PNP0A03 0x030ad041u
#define EISA_PNP0C02 0x020cd041u

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

static struct acpi_params params(unsigned n_cpus, bool pci)
{
	return (struct acpi_params){
		.pci = pci,
		.n_cpus = n_cpus,
		.lapic_addr = 0xfee00000,
		.ioapic_addr = 0xfec00000,
		.ioapic_id = 0xfe,
		.sleep_port = 0x600,
		.reset_port = 0x64,
		.reset_value = 0xfe,
	};
}

/* A built table set, with the guest address it was built for. */
struct image {
	uint8_t *buf;
	size_t used;
	uint64_t gpa;
};

/* Table at guest address addr, or NULL unless its header and its whole
 * length lie inside the used part of the image. */
static const uint8_t *image_table(const struct image *im, uint64_t addr)
{
	uint64_t off = addr - im->gpa;
	uint32_t len;

	if (addr < im->gpa || off > im->used || im->used - off < HDR_LEN)
		return NULL;
	len = rd32(im->buf + off + 4);
	if (len < HDR_LEN || len > im->used - off)
		return NULL;
	return im->buf + off;
}

static void check_header(const uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	CHECK(memcmp(t, sig, 4) == 0, "%s: signature %.4s", sig, (const char *)t);
	CHECK(rd32(t + 4) == len, "%s: length %u, expected %u", sig, rd32(t + 4), len);
	CHECK(t[8] == rev, "%s: revision %u, expected %u", sig, t[8], rev);
	CHECK(sum8(t, rd32(t + 4)) == 0, "%s: checksum does not sum to 0", sig);
	CHECK(t[10] != 0 && t[16] != 0 && t[28] != 0, "%s: empty OEM or creator id", sig);
}

static const uint8_t *check_rsdp(const struct image *im)
{
	const uint8_t *r = im->buf;

	CHECK(memcmp(r, "RSD PTR ", 8) == 0, "RSDP: signature");
	CHECK(sum8(r, 20) == 0, "RSDP: checksum over 20 bytes");
	CHECK(sum8(r, 36) == 0, "RSDP: extended checksum over 36 bytes");
	CHECK(r[15] == 2, "RSDP: revision %u", r[15]);
	CHECK(rd32(r + 20) == 36, "RSDP: length %u", rd32(r + 20));
	CHECK(im->gpa % 16 == 0, "RSDP: not 16-byte aligned");
	return image_table(im, rd64(r + 24));
}

/* The tables the XSDT points to. */
struct tables {
	const uint8_t *fadt, *madt, *mcfg;
};

/* Records XSDT entry t (at addr) in *tb; false for an unexpected one. */
static bool xsdt_entry(struct tables *tb, const uint8_t *t)
{
	static const char sig[3][5] = { "FACP", "APIC", "MCFG" };
	const uint8_t **slot[3] = { &tb->fadt, &tb->madt, &tb->mcfg };

	for (unsigned i = 0; i < 3; i++) {
		if (memcmp(t, sig[i], 4))
			continue;
		CHECK(!*slot[i], "XSDT: two %s entries", sig[i]);
		*slot[i] = t;
		return true;
	}
	return false;
}

/* Checks the XSDT (FACP, APIC, and MCFG exactly when pci) into *tb. */
static void check_xsdt(const struct image *im, const uint8_t *x, bool pci, struct tables *tb)
{
	uint32_t len;

	*tb = (struct tables){ NULL };
	CHECK(x != NULL, "XSDT: address outside the buffer");
	if (!x)
		return;
	len = rd32(x + 4);
	check_header(x, "XSDT", HDR_LEN + (pci ? 3 : 2) * 8, 1);
	for (uint32_t off = HDR_LEN; off + 8 <= len; off += 8) {
		uint64_t addr = rd64(x + off);
		const uint8_t *t = image_table(im, addr);

		CHECK(t != NULL, "XSDT: entry %#llx outside the buffer", (unsigned long long)addr);
		if (!t)
			continue;
		CHECK(addr % 8 == 0, "XSDT: table at %#llx not aligned", (unsigned long long)addr);
		CHECK(xsdt_entry(tb, t), "XSDT: unexpected table %.4s", (const char *)t);
	}
	CHECK(tb->fadt && tb->madt, "XSDT: FACP or APIC missing");
	CHECK(!tb->mcfg == !pci, "XSDT: MCFG %s", pci ? "missing" : "without PCI");
}

/* MCFG: one allocation, the ECAM of segment 0, buses 0-0. */
static void check_mcfg(const uint8_t *m)
{
	check_header(m, "MCFG", MCFG_LEN, 1);
	CHECK(rd64(m + 36) == 0, "MCFG: reserved bytes set");
	CHECK(rd64(m + 44) == MEM_PCI_ECAM_BASE, "MCFG: base %#llx",
	      (unsigned long long)rd64(m + 44));
	CHECK(rd16(m + 52) == 0 && m[54] == 0 && m[55] == 0, "MCFG: segment %u buses %u-%u",
	      rd16(m + 52), m[54], m[55]);
}

static void check_gas_io8(const uint8_t *g, uint16_t port, const char *what)
{
	CHECK(g[0] == 1, "FADT %s: space %u, expected system I/O", what, g[0]);
	CHECK(g[1] == 8, "FADT %s: bit width %u", what, g[1]);
	CHECK(g[2] == 0, "FADT %s: bit offset %u", what, g[2]);
	CHECK(g[3] == 0 || g[3] == 1, "FADT %s: access size %u", what, g[3]);
	CHECK(rd64(g + 4) == port, "FADT %s: address %#llx, expected %#x", what,
	      (unsigned long long)rd64(g + 4), port);
}

/* Checks the FADT and returns the DSDT it points to. */
static const uint8_t *check_fadt(const struct image *im, const uint8_t *f,
				 const struct acpi_params *p)
{
	uint32_t flags = rd32(f + 112);
	uint16_t boot = rd16(f + 109);
	uint64_t x_dsdt = rd64(f + 140);
	uint64_t dsdt32 = x_dsdt <= UINT32_MAX ? x_dsdt : 0;

	check_header(f, "FACP", FADT_LEN, 6);
	CHECK(flags & (1u << 20), "FADT: HW_REDUCED_ACPI not set (flags %#x)", flags);
	CHECK(flags & (1u << 10), "FADT: RESET_REG_SUP not set (flags %#x)", flags);
	CHECK(boot & (1u << 2), "FADT: VGA Not Present clear (%#x)", boot);
	CHECK(boot & (1u << 5), "FADT: CMOS RTC Not Present clear (%#x)", boot);
	CHECK(!(boot & (1u << 1)), "FADT: 8042 flag set (%#x)", boot);
	CHECK(!(boot & (1u << 3)), "FADT: MSI Not Supported set (%#x)", boot);
	CHECK(rd16(f + 46) == 0, "FADT: SCI_INT %u", rd16(f + 46));
	CHECK(rd32(f + 40) == dsdt32, "FADT: DSDT %#x, expected %#llx", rd32(f + 40),
	      (unsigned long long)dsdt32);
	check_gas_io8(f + 116, p->reset_port, "RESET_REG");
	CHECK(f[128] == p->reset_value, "FADT: RESET_VALUE %#x", f[128]);
	check_gas_io8(f + 244, p->sleep_port, "SLEEP_CONTROL_REG");
	check_gas_io8(f + 256, p->sleep_port, "SLEEP_STATUS_REG");
	CHECK(rd64(f + 268) != 0, "FADT: no hypervisor vendor identity");
	CHECK(rd32(f + 56) == 0 && rd32(f + 64) == 0 && rd32(f + 76) == 0,
	      "FADT: fixed hardware blocks in hardware-reduced mode");
	return image_table(im, x_dsdt);
}

struct madt_count {
	unsigned lapic, ioapic, iso, nmi;
};

static void check_madt_entry(const uint8_t *e, const struct acpi_params *p, struct madt_count *c)
{
	switch (e[0]) {
	case 0:
		CHECK(e[1] == 8, "MADT LAPIC: length %u", e[1]);
		CHECK(e[2] == c->lapic && e[3] == c->lapic, "MADT LAPIC %u: uid %u apic id %u",
		      c->lapic, e[2], e[3]);
		CHECK(rd32(e + 4) == 1, "MADT LAPIC %u: flags %#x", c->lapic, rd32(e + 4));
		c->lapic++;
		break;
	case 1:
		CHECK(e[1] == 12, "MADT IOAPIC: length %u", e[1]);
		CHECK(e[2] == p->ioapic_id, "MADT IOAPIC: id %u", e[2]);
		CHECK(rd32(e + 4) == p->ioapic_addr, "MADT IOAPIC: address %#x", rd32(e + 4));
		CHECK(rd32(e + 8) == 0, "MADT IOAPIC: GSI base %u", rd32(e + 8));
		c->ioapic++;
		break;
	case 2:
		CHECK(e[1] == 10, "MADT ISO: length %u", e[1]);
		CHECK(e[2] == 0 && e[3] == 0 && rd32(e + 4) == 2,
		      "MADT ISO: bus %u irq %u -> gsi %u, expected ISA 0 -> 2", e[2], e[3], rd32(e + 4));
		c->iso++;
		break;
	case 4:
		CHECK(e[1] == 6, "MADT LAPIC NMI: length %u", e[1]);
		CHECK(e[2] == 0xff && e[5] == 1, "MADT LAPIC NMI: uid %#x LINT%u", e[2], e[5]);
		c->nmi++;
		break;
	default:
		CHECK(false, "MADT: unexpected entry type %u", e[0]);
	}
}

static void check_madt(const uint8_t *m, const struct acpi_params *p)
{
	uint32_t len = 44 + 8 * p->n_cpus + 12 + 10 + 6;
	struct madt_count c = { 0 };
	uint32_t off = 44;

	check_header(m, "APIC", len, 5);
	CHECK(rd32(m + 36) == p->lapic_addr, "MADT: local APIC address %#x", rd32(m + 36));
	len = rd32(m + 4);
	while (off + 2 <= len) {
		const uint8_t *e = m + off;

		if (e[1] < 2 || e[1] > len - off) {
			CHECK(false, "MADT: entry at %u has length %u", off, e[1]);
			return;
		}
		check_madt_entry(e, p, &c);
		off += e[1];
	}
	CHECK(off == len, "MADT: entries end at %u, table at %u", off, len);
	CHECK(c.lapic == p->n_cpus, "MADT: %u LAPIC entries, expected %u", c.lapic, p->n_cpus);
	CHECK(c.ioapic == 1 && c.iso == 1 && c.nmi == 1,
	      "MADT: %u IOAPIC, %u ISO, %u NMI entries, expected one each", c.ioapic, c.iso, c.nmi);
}

/*
 * A small AML reader for the subset the DSDT uses (Name, Scope, Device,
 * integers, Package, Buffer). Every PkgLength must frame its contents
 * exactly, so an encoding mistake shows up as a parse error.
 */
#define AMLP_MAX_DEVS 8
#define AMLP_N_INTS 4
static const char amlp_int_names[AMLP_N_INTS][5] = { "_HID", "_UID", "_SEG", "_BBN" };

/* A Device and the objects the checks look at. */
struct amlp_dev {
	char name[5];
	uint64_t val[AMLP_N_INTS];		/* as amlp_int_names */
	bool has[AMLP_N_INTS];
	const uint8_t *crs;			/* _CRS buffer contents */
	size_t crs_len;
};

struct amlp {
	const uint8_t *p, *end;
	bool bad;
	char name[5];		/* last NameSeg read */
	bool s5_found;
	uint64_t s5;		/* first element of \_S5_ */
	struct amlp_dev dev[AMLP_MAX_DEVS];
	unsigned n_dev;
	struct amlp_dev *cur;	/* innermost Device being read, or NULL */
};

static void amlp_terms(struct amlp *c, const uint8_t *end);

static uint8_t amlp_byte(struct amlp *c)
{
	if (c->p >= c->end) {
		c->bad = true;
		return 0;
	}
	return *c->p++;
}

/* Reads a PkgLength and returns where the package ends. */
static const uint8_t *amlp_pkg(struct amlp *c)
{
	const uint8_t *start = c->p;
	uint8_t lead = amlp_byte(c);
	unsigned n = lead >> 6;
	size_t len = n ? lead & 0x0f : lead & 0x3f;

	for (unsigned i = 0; i < n; i++)
		len |= (size_t)amlp_byte(c) << (4 + 8 * i);
	if (c->bad || len < 1u + n || len > (size_t)(c->end - start)) {
		c->bad = true;
		return c->p;
	}
	return start + len;
}

static void amlp_name(struct amlp *c)
{
	if (c->p < c->end && *c->p == '\\')
		c->p++;
	for (int i = 0; i < 4; i++) {
		uint8_t ch = amlp_byte(c);

		if (!((ch >= 'A' && ch <= 'Z') || ch == '_' || (i && ch >= '0' && ch <= '9')))
			c->bad = true;
		c->name[i] = (char)ch;
	}
	c->name[4] = 0;
}

/* Integer constant; false (without consuming) if the next op is not one. */
static bool amlp_int(struct amlp *c, uint64_t *v)
{
	uint8_t op = c->p < c->end ? *c->p : 0xff;
	unsigned n = op == 0x0a ? 1 : op == 0x0b ? 2 : op == 0x0c ? 4 : op == 0x0e ? 8 : 0;

	if (op > 0x01 && !n)
		return false;
	c->p++;
	*v = op <= 0x01 ? op : 0;
	for (unsigned i = 0; i < n; i++)
		*v |= (uint64_t)amlp_byte(c) << (8 * i);
	return true;
}

static void amlp_data(struct amlp *c, uint64_t *first);

static void amlp_package(struct amlp *c, uint64_t *first)
{
	const uint8_t *end = amlp_pkg(c);
	unsigned n = amlp_byte(c), i;

	for (i = 0; !c->bad && c->p < end; i++)
		amlp_data(c, i == 0 ? first : NULL);
	if (i != n || c->p != end)
		c->bad = true;
}

/* Buffer: PkgLength BufferSize bytes; *body and *len get the bytes. */
static void amlp_buffer(struct amlp *c, const uint8_t **body, size_t *len)
{
	const uint8_t *end = amlp_pkg(c);
	uint64_t size;

	if (!amlp_int(c, &size) || c->p > end || size != (uint64_t)(end - c->p))
		c->bad = true;
	*body = c->p;
	*len = end > c->p ? (size_t)(end - c->p) : 0;
	c->p = end;
}

/* DataRefObject; *first gets a Package's first integer element. */
static void amlp_data(struct amlp *c, uint64_t *first)
{
	const uint8_t *body;
	size_t len;
	uint64_t v;

	if (amlp_int(c, &v)) {
		if (first)
			*first = v;
		return;
	}
	switch (amlp_byte(c)) {
	case 0x12:
		amlp_package(c, first);
		break;
	case 0x11:
		amlp_buffer(c, &body, &len);
		break;
	default:
		c->bad = true;
	}
}

/* Scope or Device: PkgLength NameString TermList */
static void amlp_scope(struct amlp *c, bool device)
{
	const uint8_t *end = amlp_pkg(c);
	struct amlp_dev *outer = c->cur;

	amlp_name(c);
	if (device && c->n_dev < AMLP_MAX_DEVS) {
		c->cur = &c->dev[c->n_dev++];
		memcpy(c->cur->name, c->name, sizeof(c->name));
	}
	amlp_terms(c, end);
	c->cur = outer;
}

/* Name(_HID/_UID/_SEG/_BBN, integer) or Name(_CRS, Buffer) in a Device:
 * recorded; false if this Name is not one of those. */
static bool amlp_dev_object(struct amlp *c)
{
	struct amlp_dev *d = c->cur;
	uint64_t v;

	if (!d)
		return false;
	if (!strcmp(c->name, "_CRS") && c->p < c->end && *c->p == 0x11) {
		c->p++;
		amlp_buffer(c, &d->crs, &d->crs_len);
		return true;
	}
	for (unsigned i = 0; i < AMLP_N_INTS; i++)
		if (!strcmp(c->name, amlp_int_names[i]) && amlp_int(c, &v)) {
			CHECK(!d->has[i], "DSDT: %s.%s twice", d->name, c->name);
			d->val[i] = v;
			d->has[i] = true;
			return true;
		}
	return false;
}

static void amlp_named(struct amlp *c)
{
	uint64_t first = ~0ULL;

	amlp_name(c);
	if (strcmp(c->name, "_S5_") == 0) {
		if (c->p >= c->end || *c->p != 0x12)
			c->bad = true;
		c->s5_found = true;
		amlp_data(c, &first);
		c->s5 = first;
		return;
	}
	if (!amlp_dev_object(c))
		amlp_data(c, NULL);
}

static void amlp_terms(struct amlp *c, const uint8_t *end)
{
	while (!c->bad && c->p < end) {
		uint8_t op = amlp_byte(c);

		if (op == 0x08)
			amlp_named(c);
		else if (op == 0x10)
			amlp_scope(c, false);
		else if (op == 0x5b && amlp_byte(c) == 0x82)
			amlp_scope(c, true);
		else
			c->bad = true;
	}
	if (c->p != end)
		c->bad = true;
}

/*
 * A decoded resource descriptor: 'P' I/O ports (IO), 'Q' an IRQ
 * (IRQNoFlags), 'F' fixed memory (Memory32Fixed), and the windows of Word
 * and DWord address space descriptors: 'B' bus numbers, 'I' I/O, 'M'
 * memory. [min, max] inclusive.
 */
struct res_item {
	char kind;
	uint64_t min, max;
};

static uint64_t rdn(const uint8_t *p, unsigned n)
{
	return n == 2 ? rd16(p) : rd32(p);
}

/* Word (0x88) or DWord (0x87) address space: a window the device produces
 * with positive decode and fixed minimum and maximum (general flags 0x0c),
 * so granularity and translation are 0 and the length is max - min + 1. */
static bool res_addr_item(const uint8_t *d, size_t ilen, struct res_item *it)
{
	unsigned n = d[0] == 0x88 ? 2 : 4;
	const uint8_t *f = d + 6;

	if (ilen != 3 + 5u * n || d[4] != 0x0c || rdn(f, n) || rdn(f + 3 * n, n))
		return false;
	it->min = rdn(f + n, n);
	it->max = rdn(f + 2 * n, n);
	if (rdn(f + 4 * n, n) != it->max - it->min + 1)
		return false;
	switch (d[3]) {
	case 0:
		it->kind = 'M';
		return d[5] == 0x01;		/* read/write, non-cacheable */
	case 1:
		it->kind = 'I';
		return d[5] == 0x03;		/* entire range */
	case 2:
		it->kind = 'B';
		return d[5] == 0;
	}
	return false;
}

/* One descriptor at d, whose data is ilen bytes; false if malformed. */
static bool res_item(const uint8_t *d, size_t ilen, struct res_item *it)
{
	switch (d[0]) {
	case 0x47:			/* IO, 16-bit decode, one fixed range */
		*it = (struct res_item){ 'P', rd16(d + 2), rd16(d + 2) + d[7] - 1u };
		return ilen == 7 && d[1] == 1 && rd16(d + 4) == rd16(d + 2) && d[7];
	case 0x22:			/* IRQNoFlags, one IRQ */
		*it = (struct res_item){ 'Q', (uint64_t)__builtin_ctz(rd16(d + 1) | 0x10000) };
		it->max = it->min;
		return ilen == 2 && rd16(d + 1) && !(rd16(d + 1) & (rd16(d + 1) - 1));
	case 0x86:			/* Memory32Fixed, read/write */
		*it = (struct res_item){ 'F', rd32(d + 4), (uint64_t)rd32(d + 4) + rd32(d + 8) - 1 };
		return ilen == 9 && d[3] == 1 && rd32(d + 8);
	case 0x87:
	case 0x88:
		return res_addr_item(d, ilen, it);
	}
	return false;
}

/* Decodes a resource template into out[max]; returns the count, or -1 if
 * it is malformed or does not end with exactly one end tag. */
static int res_parse(const uint8_t *b, size_t len, struct res_item *out, int max)
{
	size_t off = 0;
	int n = 0;

	while (off < len && n < max) {
		bool large = b[off] & 0x80;
		size_t hdr = large ? 3 : 1;
		size_t ilen = large ? (off + 3 <= len ? rd16(b + off + 1) : len) : b[off] & 7u;

		if (b[off] == 0x79)
			return ilen == 1 && off + 2 == len ? n : -1;
		if (ilen > len - off - hdr || !res_item(b + off, ilen, &out[n++]))
			return -1;
		off += hdr + ilen;
	}
	return -1;
}

static const struct amlp_dev *amlp_find(const struct amlp *c, const char *name)
{
	for (unsigned i = 0; i < c->n_dev; i++)
		if (!strcmp(c->dev[i].name, name))
			return &c->dev[i];
	return NULL;
}

/* Device `name` exists with _HID hid, _UID 0 and exactly the resources
 * want[n] in its _CRS, in that order. */
static const struct amlp_dev *check_device(const struct amlp *c, const char *name, uint32_t hid,
					   const struct res_item *want, int n)
{
	const struct amlp_dev *d = amlp_find(c, name);
	struct res_item got[16];
	int n_got;

	CHECK(d != NULL, "DSDT: no Device(%s)", name);
	if (!d)
		return NULL;
	CHECK(d->has[0] && d->val[0] == hid, "%s: _HID %#llx", name, (unsigned long long)d->val[0]);
	CHECK(d->has[1] && d->val[1] == 0, "%s: no _UID 0", name);
	n_got = d->crs ? res_parse(d->crs, d->crs_len, got, 16) : -1;
	CHECK(n_got == n, "%s: _CRS has %d resources, expected %d", name, n_got, n);
	for (int i = 0; i < n && i < n_got; i++)
		CHECK(got[i].kind == want[i].kind && got[i].min == want[i].min &&
		      got[i].max == want[i].max, "%s: _CRS item %d is %c [%#llx, %#llx]", name, i,
		      got[i].kind, (unsigned long long)got[i].min, (unsigned long long)got[i].max);
	return d;
}

/* With PCI: the host bridge and the motherboard device holding the ECAM. */
static void check_dsdt_pci(const struct amlp *c, bool pci)
{
	static const struct res_item pci0[] = {
		{ 'B', 0, 0 },
		{ 'P', 0xcf8, 0xcff },
		{ 'I', 0, 0xcf7 },
		{ 'I', 0xd00, 0xffff },
		{ 'M', MEM_PCI_HOLE_START, MEM_PCI_ECAM_BASE - 1 },
	};
	static const struct res_item mres[] = {
		{ 'F', MEM_PCI_ECAM_BASE, MEM_PCI_ECAM_BASE + MEM_PCI_ECAM_SIZE - 1 },
	};
	const struct amlp_dev *d;

	if (!pci) {
		CHECK(!amlp_find(c, "PCI0") && !amlp_find(c, "MRES"), "DSDT: PCI devices without PCI");
		return;
	}
	d = check_device(c, "PCI0", EISA_PNP0A03, pci0, 5);
	CHECK(d && d->has[2] && d->val[2] == 0 && d->has[3] && d->val[3] == 0,
	      "PCI0: no _SEG 0 or _BBN 0");
	check_device(c, "MRES", EISA_PNP0C02, mres, 1);
}

static void check_dsdt(const uint8_t *d, bool pci)
{
	static const struct res_item com1[] = { { 'P', 0x3f8, 0x3ff }, { 'Q', 4, 4 } };
	static struct amlp c;
	uint32_t len;

	CHECK(d != NULL, "DSDT: X_DSDT outside the buffer");
	if (!d)
		return;
	len = rd32(d + 4);
	check_header(d, "DSDT", len, 2);
	CHECK(len > HDR_LEN, "DSDT: no AML");
	c = (struct amlp){ .p = d + HDR_LEN, .end = d + len };
	amlp_terms(&c, c.end);
	CHECK(!c.bad, "DSDT: AML does not parse, stopped at offset %td", c.p - d);
	CHECK(c.s5_found, "DSDT: no Name(\\_S5_, Package)");
	CHECK(c.s5 == ACPI_S5_SLP_TYP, "DSDT: _S5 SLP_TYP %llu, expected %u",
	      (unsigned long long)c.s5, ACPI_S5_SLP_TYP);
	check_device(&c, "COM1", EISA_PNP0501, com1, 2);
	check_dsdt_pci(&c, pci);
}

/* Builds for n_cpus at gpa into a garbage-filled buffer and checks all. */
static void check_build(unsigned n_cpus, uint64_t gpa, bool pci)
{
	struct acpi_params p = params(n_cpus, pci);
	uint8_t *buf = malloc(BUF_SIZE);
	struct image im = { .buf = buf, .gpa = gpa };
	struct tables tb;
	int ret;

	if (!buf)
		abort();
	memset(buf, CANARY, BUF_SIZE);
	ret = acpi_build(buf, BUF_SIZE, gpa, &p);
	CHECK(ret > 0 && ret < BUF_SIZE, "%u cpus: acpi_build returned %d", n_cpus, ret);
	if (ret <= 0) {
		free(buf);
		return;
	}
	im.used = (size_t)ret;
	for (size_t i = im.used; i < BUF_SIZE; i++)
		if (buf[i] != CANARY) {
			CHECK(false, "%u cpus: byte %zu past the returned length written", n_cpus, i);
			break;
		}
	check_xsdt(&im, check_rsdp(&im), pci, &tb);
	if (tb.fadt)
		check_dsdt(check_fadt(&im, tb.fadt, &p), pci);
	if (tb.madt)
		check_madt(tb.madt, &p);
	if (tb.mcfg)
		check_mcfg(tb.mcfg);
	free(buf);
}

static void check_enospc_size(uint8_t *buf, size_t cap, int size, int need)
{
	struct acpi_params p = params(64, true);
	int ret;

	memset(buf, CANARY, cap);
	ret = acpi_build(buf, (size_t)size, GPA_BIOS, &p);
	CHECK(ret == -ENOSPC, "size %d of %d: returned %d, expected -ENOSPC", size, need, ret);
	for (size_t i = (size_t)size; i < cap; i++)
		if (buf[i] != CANARY) {
			CHECK(false, "size %d: wrote byte %zu", size, i);
			break;
		}
}

/* Sizes short of the need (all near both ends, a sample between) give
 * -ENOSPC and leave bytes past the size alone; the exact need succeeds. */
static void check_enospc(void)
{
	struct acpi_params p = params(64, true);
	static uint8_t buf[BUF_SIZE];
	int need = acpi_build(buf, sizeof(buf), GPA_BIOS, &p);

	CHECK(need > 100, "acpi_build returned %d", need);
	if (need <= 100)
		return;
	for (int size = 0; size < 40; size++)
		check_enospc_size(buf, sizeof(buf), size, need);
	for (int size = 40; size < need - 40; size += 97)
		check_enospc_size(buf, sizeof(buf), size, need);
	for (int size = need - 40; size < need; size++)
		check_enospc_size(buf, sizeof(buf), size, need);
	CHECK(acpi_build(buf, (size_t)need, GPA_BIOS, &p) == need, "exact size refused");
}

static void check_einval(void)
{
	static uint8_t buf[BUF_SIZE];
	struct acpi_params p;
	int ret;

	p = params(0, true);
	ret = acpi_build(buf, sizeof(buf), GPA_BIOS, &p);
	CHECK(ret == -EINVAL, "0 cpus: returned %d", ret);
	p = params(255, true);
	ret = acpi_build(buf, sizeof(buf), GPA_BIOS, &p);
	CHECK(ret == -EINVAL, "255 cpus: returned %d", ret);
	p = params(ACPI_MAX_CPUS, true);
	ret = acpi_build(buf, sizeof(buf), GPA_BIOS + 8, &p);
	CHECK(ret == -EINVAL, "gpa not 16-byte aligned: returned %d", ret);
	ret = acpi_build(buf, sizeof(buf), GPA_BIOS, NULL);
	CHECK(ret == -EINVAL, "NULL params: returned %d", ret);
}

/* reset_port 0 means no reset register: no RESET_REG_SUP, empty GAS. */
static void check_no_reset(void)
{
	static uint8_t buf[BUF_SIZE];
	struct acpi_params p = params(2, false);
	struct image im = { .buf = buf, .gpa = GPA_BIOS };
	struct tables tb;
	int ret;

	p.reset_port = 0;
	ret = acpi_build(buf, sizeof(buf), GPA_BIOS, &p);
	CHECK(ret > 0, "reset_port 0: returned %d", ret);
	if (ret <= 0)
		return;
	im.used = (size_t)ret;
	check_xsdt(&im, check_rsdp(&im), false, &tb);
	if (!tb.fadt)
		return;
	CHECK(!(rd32(tb.fadt + 112) & (1u << 10)), "reset_port 0: RESET_REG_SUP set");
	CHECK(rd64(tb.fadt + 120) == 0 && tb.fadt[116] == 0, "reset_port 0: RESET_REG filled in");
	CHECK(sum8(tb.fadt, FADT_LEN) == 0, "reset_port 0: FADT checksum");
}

/* Same params give the same bytes whatever the buffer held before. */
static void check_deterministic(void)
{
	static uint8_t a[BUF_SIZE], b[BUF_SIZE];
	struct acpi_params p = params(8, true);
	int ra, rb;

	memset(a, 0, sizeof(a));
	memset(b, 0xff, sizeof(b));
	ra = acpi_build(a, sizeof(a), GPA_BIOS, &p);
	rb = acpi_build(b, sizeof(b), GPA_BIOS, &p);
	CHECK(ra == rb && ra > 0 && memcmp(a, b, (size_t)ra) == 0,
	      "output depends on the buffer's previous contents");
}

static int dump_table(const char *dir, const char *name, const uint8_t *t, size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(t, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		return -1;
	}
	return 0;
}

/* Writes each table (PCI on), found by following the pointers, to
 * DIR/<sig>.dat for iasl -d. */
static int dump(const char *dir)
{
	static uint8_t buf[BUF_SIZE];
	struct acpi_params p = params(4, true);
	int ret = acpi_build(buf, sizeof(buf), GPA_BIOS, &p);
	struct image im = { .buf = buf, .used = ret > 0 ? (size_t)ret : 0, .gpa = GPA_BIOS };
	struct tables tb;
	const uint8_t *t[5];
	int err = 0;

	if (ret < 0) {
		fprintf(stderr, "acpi_build: %s\n", strerror(-ret));
		return 1;
	}
	t[0] = image_table(&im, rd64(buf + 24));
	check_xsdt(&im, t[0], true, &tb);
	t[1] = tb.fadt, t[2] = tb.madt, t[3] = tb.mcfg;
	t[4] = tb.fadt ? image_table(&im, rd64(tb.fadt + 140)) : NULL;
	if (test_failures || !t[4]) {
		fprintf(stderr, "tables not found\n");
		return 1;
	}
	err |= dump_table(dir, "RSDP", buf, 36);
	for (size_t i = 0; i < 5; i++) {
		char sig[5] = { 0 };

		memcpy(sig, t[i], 4);
		err |= dump_table(dir, sig, t[i], rd32(t[i] + 4));
	}
	/* Shell assignments telling the script what to look for. */
	printf("n_cpus=%u sleep_port=%#x s5_value=%#x ecam=%#llx window=%#llx-%#llx\n",
	       p.n_cpus, p.sleep_port, (ACPI_S5_SLP_TYP << 2) | ACPI_SLP_EN,
	       (unsigned long long)MEM_PCI_ECAM_BASE, (unsigned long long)MEM_PCI_HOLE_START,
	       (unsigned long long)MEM_PCI_ECAM_BASE - 1);
	return err ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const unsigned cpus[] = { 1, 2, 64, ACPI_MAX_CPUS };

	if (argc == 3 && strcmp(argv[1], "--dump") == 0)
		return dump(argv[2]);
	for (size_t i = 0; i < sizeof(cpus) / sizeof(cpus[0]); i++) {
		check_build(cpus[i], GPA_BIOS, false);
		check_build(cpus[i], GPA_BIOS, true);
	}
	check_build(2, 0x100000000ULL, true);
	check_enospc();
	check_einval();
	check_no_reset();
	check_deterministic();
	if (test_failures) {
		fprintf(stderr, "%d check(s) failed\n", test_failures);
		return 1;
	}
	printf("test_acpi: all checks passed\n");
	return 0;
}
