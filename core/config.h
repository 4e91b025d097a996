/*
 * VM configuration: the flat TOML-like file format parsed into a plain
 * struct. Pure code, no KVM calls, no threads; see docs/config.md.
 */
#ifndef CORE_CONFIG_H
#define CORE_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_IOTHREADS 64
#define CONFIG_MAX_CPUS 256
#define CONFIG_MAX_VCPUS 254
#define CONFIG_NAME_MAX 64
#define CONFIG_CMDLINE_MAX 2048
#define CONFIG_LINE_MAX 8192		/* a line holds fewer bytes, "\r\n" aside */
#define CONFIG_FILE_MAX (1 << 20)	/* bytes config_load() reads at most */

enum serial_output {
	SERIAL_OUT_STDIO,
	SERIAL_OUT_FILE,
	SERIAL_OUT_NONE,
};

struct iothread_config {
	char name[CONFIG_NAME_MAX];
	unsigned n_cpus;		/* 0: no affinity */
	unsigned cpus[CONFIG_MAX_CPUS];
	unsigned cpus_line;		/* where cpus was given, for messages */
	uint64_t poll_max_ns;		/* 0: no busy-polling */
};

#define CONFIG_MAX_DISKS 16
#define CONFIG_MAX_QUEUES 64		/* per disk */
#define CONFIG_SERIAL_MAX 20		/* virtio-blk GET_ID bytes */

enum disk_format {
	DISK_FORMAT_RAW,
	DISK_FORMAT_NULL,		/* benchmarking aid: no file */
	DISK_FORMAT_QCOW2,
	DISK_FORMAT_AUTO,		/* qcow2 if the file starts with its magic, else raw */
};

enum disk_cache {
	DISK_CACHE_WRITEBACK,		/* host page cache */
	DISK_CACHE_NONE,		/* O_DIRECT */
};

/* Where [disk.NAME] and its keys were found (0: not given). */
struct disk_config_lines {
	unsigned disk, path, format, readonly, num_queues, queue_size, iothreads, cache, serial,
		size, l2_cache;
};

struct disk_config {
	char name[CONFIG_NAME_MAX];
	struct disk_config_lines line;
	char path[PATH_MAX];		/* resolved; "" for format = null */
	enum disk_format format;	/* default raw */
	bool readonly;
	unsigned num_queues;		/* default: the vCPU count, at most CONFIG_MAX_QUEUES */
	unsigned queue_size;		/* power of two, 16..1024; default 256 */
	unsigned n_iothreads;		/* 0: one implicit IOThread per queue, up to vCPUs */
	unsigned iothreads[CONFIG_MAX_QUEUES];	/* indices into vm_config.iothreads */
	enum disk_cache cache;		/* default writeback */
	char serial[CONFIG_SERIAL_MAX + 1];	/* GET_ID; default "" */
	uint64_t size;			/* format = null only: bytes, required */
	uint64_t l2_cache;		/* qcow2 and auto only: bytes of L2 tables cached;
					 * 0: the driver's default */
};

/* Where [vm] and its keys were found, for messages about their values
 * (0: not given; the key's default applies). */
struct vm_config_lines {
	unsigned vm, memory, kernel, initrd, cmdline;
};

struct vm_config {
	char path[PATH_MAX];		/* the config file, for messages */
	struct vm_config_lines line;
	uint64_t memory;		/* bytes */
	unsigned vcpus;
	char kernel[PATH_MAX];		/* resolved against the config's folder */
	char initrd[PATH_MAX];		/* "" when absent */
	char cmdline[CONFIG_CMDLINE_MAX];
	enum serial_output serial_output;
	char serial_path[PATH_MAX];	/* SERIAL_OUT_FILE only, resolved */
	unsigned n_iothreads;
	struct iothread_config iothreads[CONFIG_MAX_IOTHREADS];
	unsigned n_disks;		/* in file order: vda, vdb, ... */
	struct disk_config disks[CONFIG_MAX_DISKS];
};

/*
 * Parses text (len bytes, need not be NUL-terminated) named `name` in
 * messages; relative paths are resolved against the folder of `name`.
 * host_ram is the upper bound for [vm] memory (bytes). Returns 0, or
 * -EINVAL with a one-line message in err: "FILE:LINE: KEY: expected X, found Y".
 * host_ram 0 means unknown: no upper bound. name must not be NULL; err may
 * be NULL when errlen is 0. On error cfg is left partly filled.
 */
int config_parse(const char *name, const char *text, size_t len, uint64_t host_ram,
		 struct vm_config *cfg, char *err, size_t errlen);

/* Reads and parses the file at path (host RAM from sysconf). Returns 0, or
 * -errno / -EINVAL with the message in err. */
int config_load(const char *path, struct vm_config *cfg, char *err, size_t errlen);

#endif
