/*
 * PVH ELF loader and start_info builder (see pvh.h), after the Xen
 * hvm_start_info ABI (version 1, with a memory map). Pure code.
 */
#include "core/pvh.h"

#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define PVH_START_MAGIC 0x336ec578
/* Below 1 MiB are the loader's GDT, start_info, command line and ACPI tables. */
#define PVH_MIN_LOAD_ADDR 0x100000

struct pvh_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct pvh_module {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

struct pvh_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

static int pvh_fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s", what);
	return -EINVAL;
}

int pvh_is_elf(const uint8_t *img, size_t len)
{
	return len >= SELFMAG && !memcmp(img, ELFMAG, SELFMAG);
}

/* Headers are copied out: a hostile image may place them unaligned. */
static Elf64_Ehdr pvh_ehdr(const uint8_t *img)
{
	Elf64_Ehdr eh;

	memcpy(&eh, img, sizeof(eh));
	return eh;
}

static Elf64_Phdr pvh_phdr(const uint8_t *img, unsigned i)
{
	Elf64_Ehdr eh = pvh_ehdr(img);
	Elf64_Phdr ph;

	memcpy(&ph, img + eh.e_phoff + (size_t)i * sizeof(ph), sizeof(ph));
	return ph;
}

/* Walks the notes of one PT_NOTE segment for Xen's PHYS32_ENTRY. */
static int pvh_find_entry(const uint8_t *p, uint64_t len, uint32_t *entry)
{
	while (len >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr n;

		memcpy(&n, p, sizeof(n));
		uint64_t name_sz = (n.n_namesz + 3ULL) & ~3ULL;
		uint64_t desc_sz = (n.n_descsz + 3ULL) & ~3ULL;
		uint64_t total = sizeof(n) + name_sz + desc_sz;
		const uint8_t *name = p + sizeof(n), *desc = name + name_sz;

		if (total > len)
			return -EINVAL;
		if (n.n_type == XEN_ELFNOTE_PHYS32_ENTRY && n.n_namesz == 4 &&
		    !memcmp(name, "Xen", 4) && (n.n_descsz == 4 || n.n_descsz == 8)) {
			memcpy(entry, desc, sizeof(*entry));
			return 0;
		}
		p += total;
		len -= total;
	}
	return -ENOENT;
}

static int pvh_check_header(const uint8_t *img, size_t len, char *err, size_t errlen)
{
	Elf64_Ehdr h, *eh = &h;

	if (len < sizeof(h) || !pvh_is_elf(img, len))
		return pvh_fail(err, errlen, "not an ELF file");
	h = pvh_ehdr(img);
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_machine != EM_X86_64 || eh->e_type != ET_EXEC)
		return pvh_fail(err, errlen, "not an x86_64 ELF executable");
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 ||
	    eh->e_phoff > len || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
		return pvh_fail(err, errlen, "ELF program headers out of the file");
	return 0;
}

static bool pvh_entry_loaded(const uint8_t *img, uint32_t entry)
{
	for (unsigned i = 0; i < pvh_ehdr(img).e_phnum; i++) {
		Elf64_Phdr ph = pvh_phdr(img, i);

		if (ph.p_type == PT_LOAD && entry >= ph.p_paddr && entry - ph.p_paddr < ph.p_memsz)
			return true;
	}
	return false;
}

int pvh_parse(const uint8_t *img, size_t len, struct pvh_info *info, char *err, size_t errlen)
{
	int ret = pvh_check_header(img, len, err, errlen), found = -ENOENT;

	if (ret)
		return ret;
	*info = (struct pvh_info){ 0 };
	for (unsigned i = 0; i < pvh_ehdr(img).e_phnum; i++) {
		Elf64_Phdr p = pvh_phdr(img, i), *ph = &p;

		if (ph->p_type != PT_LOAD && ph->p_type != PT_NOTE)
			continue;
		if (ph->p_offset > len || ph->p_filesz > len - ph->p_offset)
			return pvh_fail(err, errlen, "ELF segment out of the file");
		if (ph->p_type == PT_NOTE) {
			if (found)
				found = pvh_find_entry(img + ph->p_offset, ph->p_filesz, &info->entry);
			continue;
		}
		if (ph->p_memsz && ph->p_paddr < PVH_MIN_LOAD_ADDR)
			return pvh_fail(err, errlen, "ELF load segment below 1 MiB, where the loader "
					"keeps its boot data");
		if (ph->p_filesz > ph->p_memsz || ph->p_paddr + ph->p_memsz < ph->p_paddr ||
		    ph->p_paddr + ph->p_memsz > MEM_PCI_HOLE_START)
			return pvh_fail(err, errlen, "ELF load segment outside low memory");
		if (ph->p_paddr + ph->p_memsz > info->load_end)
			info->load_end = ph->p_paddr + ph->p_memsz;
	}
	if (found)
		return pvh_fail(err, errlen, "ELF has no PVH entry note (Xen PHYS32_ENTRY); "
			"use a bzImage or a kernel built with CONFIG_PVH");
	if (!info->load_end)
		return pvh_fail(err, errlen, "ELF has no load segment");
	if (!pvh_entry_loaded(img, info->entry)) {
		snprintf(err, errlen, "ELF PVH entry point 0x%x is outside its load segments",
			 info->entry);
		return -EINVAL;
	}
	return 0;
}

int pvh_load(const uint8_t *img, struct mem_map *mem)
{
	for (unsigned i = 0; i < pvh_ehdr(img).e_phnum; i++) {
		Elf64_Phdr p = pvh_phdr(img, i), *ph = &p;
		uint8_t *dst;

		if (ph->p_type != PT_LOAD)
			continue;
		dst = mem_translate(mem, ph->p_paddr, ph->p_memsz);
		if (!dst)
			return -EFAULT;
		memcpy(dst, img + ph->p_offset, ph->p_filesz);
		memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
	}
	return 0;
}

int pvh_fill_start_info(uint8_t *buf, size_t size, uint64_t buf_gpa, const struct boot_handoff *b)
{
	size_t mod_off = sizeof(struct pvh_start_info);
	size_t map_off = mod_off + sizeof(struct pvh_module);
	size_t used = map_off + b->n_e820 * sizeof(struct pvh_memmap_entry);
	struct pvh_start_info si = {
		.magic = PVH_START_MAGIC,
		.version = 1,
		.nr_modules = b->initrd_size ? 1 : 0,
		.modlist_paddr = b->initrd_size ? buf_gpa + mod_off : 0,
		.cmdline_paddr = b->cmdline_addr,
		.rsdp_paddr = b->rsdp_addr,
		.memmap_paddr = buf_gpa + map_off,
		.memmap_entries = b->n_e820,
	};
	struct pvh_module mod = { .paddr = b->initrd_addr, .size = b->initrd_size };

	if (used > size)
		return -ENOSPC;
	memset(buf, 0, used);
	memcpy(buf, &si, sizeof(si));
	memcpy(buf + mod_off, &mod, sizeof(mod));
	for (unsigned i = 0; i < b->n_e820; i++) {
		struct pvh_memmap_entry e = {
			.addr = b->e820[i].addr, .size = b->e820[i].size, .type = b->e820[i].type,
		};

		memcpy(buf + map_off + i * sizeof(e), &e, sizeof(e));
	}
	return (int)used;
}
