/*
 * virtio-blk through virtio-pci with no VM: the test driver
 * (tests/lib/virtio_guest.h) plays the guest on a stack built as the vmm
 * builds it (tests/lib/blk_stack.h), with real raw files in a temporary
 * folder under /var/tmp (O_DIRECT works there, unlike tmpfs), the null
 * backend, and real IOThreads and io_uring. Each test checks what the
 * guest sees (status bytes, used lengths, config space, interrupts,
 * NEEDS_RESET) against the host file and the device's counters.
 *
 * Threads: the main thread is the guest's vCPU (RCU-registered); the
 * device runs on its IOThreads. Exit 0 pass, 1 fail, 77 when io_uring is
 * unavailable here.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/check.h"
#include "core/util.h"
#include "dev/virtio.h"
#include "rcu/rcu.h"
#include "tests/lib/blk_stack.h"

#define FILE_SIZE (4 * MiB)
#define SECTOR 512ULL
#define ALL_FEATURES UINT64_MAX		/* the driver takes whatever is offered */
#define QUIET_MS 100			/* how long "nothing arrives" is watched */
#define SERIAL "vmm-serial-0123456789"	/* 21 bytes: GET_ID gives the first 20 */

/* CHECK_I for a call with side effects: evaluated once, named when it fails. */
#define CHECK_CALL(expr, want)                                                    \
	do {                                                                      \
		long long got_ = (long long)(expr);                               \
		CHECK(got_ == (long long)(want), "%s: got %lld, want %lld", #expr, got_, \
		      (long long)(want));                                          \
	} while (0)

static char dir[64];

/* The byte at off of a file made with seed. */
static uint8_t pattern(uint64_t off, unsigned seed)
{
	return (uint8_t)(off * 131 + (off >> 9) * 7 + seed * 29 + 1);
}

static void make_file(const char *path, uint64_t size, unsigned seed)
{
	static uint8_t chunk[64 * KiB];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	uint64_t off, i;

	if (fd < 0) {
		perror(path);
		exit(1);
	}
	for (off = 0; off < size; off += sizeof(chunk)) {
		for (i = 0; i < sizeof(chunk); i++)
			chunk[i] = pattern(off + i, seed);
		if (pwrite(fd, chunk, sizeof(chunk), (off_t)off) != (ssize_t)sizeof(chunk)) {
			perror("pwrite");
			exit(1);
		}
	}
	close(fd);
}

static void file_read(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0 && pread(fd, buf, len, (off_t)off) == (ssize_t)len, "read back %s", path);
	if (fd >= 0)
		close(fd);
}

/* Whether [off, off+len) of path matches pattern seed. */
static bool file_is_pattern(const char *path, uint64_t off, size_t len, unsigned seed)
{
	uint8_t *b = malloc(len);
	bool same = true;
	size_t i;

	file_read(path, off, b, len);
	for (i = 0; i < len && same; i++)
		same = b[i] == pattern(off + i, seed);
	free(b);
	return same;
}

static char *path_of(const char *name)
{
	static char p[8][128];
	static unsigned n;
	char *s = p[n++ % 8];

	snprintf(s, sizeof(p[0]), "%s/%s", dir, name);
	return s;
}

/* Builds the stack and starts the driver with `features`; skips the whole
 * program when io_uring is unavailable. */
static void up(struct blk_stack *s, const struct blk_stack_params *p, uint64_t features)
{
	int ret = blk_stack_create(s, p);
	const char *why;

	if (ret) {
		why = loop_unavailable_reason(ret);
		printf("%s: %s\n", why ? "SKIP" : "FAIL", why ? why : s->err);
		exit(why ? 77 : 1);
	}
	ret = virtio_guest_start(&s->guest, features, s->disk.num_queues, s->disk.queue_size);
	CHECK(ret == 0, "virtio_guest_start: %s", strerror(-ret));
}

/* A guest buffer of len bytes filled with `fill`. */
static uint64_t gbuf(struct blk_stack *s, uint64_t len, int fill, uint8_t **hva)
{
	uint64_t gpa = virtio_guest_alloc(&s->guest, len, 4096);
	uint8_t *p = gpa ? virtio_guest_hva(&s->guest, gpa, len) : NULL;

	if (!p) {
		printf("FAIL: guest heap exhausted (%llu bytes)\n", (unsigned long long)len);
		exit(1);
	}
	memset(p, fill, len);
	if (hva)
		*hva = p;
	return gpa;
}

/* One request with one data segment on queue q; the status, or -errno. */
static int req1(struct blk_stack *s, unsigned q, uint32_t type, uint64_t sector, uint64_t gpa,
		uint32_t len, bool indirect)
{
	struct virtio_guest_blk_req r = { .type = type, .sector = sector };

	if (len)
		virtio_guest_blk_data(&r, gpa, len);
	return virtio_guest_blk_run(&s->guest, q, &r, indirect);
}

static struct virtio_blk_stats stats(struct blk_stack *s, unsigned q)
{
	struct virtio_blk_stats st;

	virtio_blk_stats(s->vblk, q, &st);
	return st;
}

/* After a hostile chain on queue q: NEEDS_RESET and a config interrupt,
 * then a reset brings back a device that reads. */
static void expect_needs_reset(struct blk_stack *s, const char *what)
{
	uint8_t *p;
	uint64_t gpa;
	int n = virtio_guest_irq_wait(&s->guest, VIRTIO_GUEST_CONFIG_VECTOR,
				      VIRTIO_GUEST_TIMEOUT_MS);

	CHECK(n >= 1, "%s: no config interrupt (%d)", what, n);
	CHECK(virtio_guest_status(&s->guest) & VIRTIO_STATUS_NEEDS_RESET,
	      "%s: status %#x without NEEDS_RESET", what, virtio_guest_status(&s->guest));
	CHECK_CALL(virtio_guest_start(&s->guest, ALL_FEATURES, s->disk.num_queues,
				   s->disk.queue_size), 0);
	CHECK(!(virtio_guest_status(&s->guest) & VIRTIO_STATUS_NEEDS_RESET),
	      "%s: NEEDS_RESET survives a reset", what);
	gpa = gbuf(s, 4096, 0xaa, &p);
	CHECK(req1(s, 0, VIRTIO_GUEST_BLK_T_IN, 0, gpa, 4096, false) == VIRTIO_GUEST_BLK_S_OK,
	      "%s: no read after the reset", what);
}

#define BIT(n) (1ULL << (n))
#define RW_FEATURES (BIT(VIRTIO_GUEST_BLK_F_SEG_MAX) | BIT(VIRTIO_GUEST_BLK_F_SIZE_MAX) | \
		     BIT(VIRTIO_GUEST_BLK_F_BLK_SIZE) | BIT(VIRTIO_GUEST_BLK_F_TOPOLOGY) |   \
		     BIT(VIRTIO_GUEST_BLK_F_MQ) | BIT(VIRTIO_GUEST_BLK_F_FLUSH) |           \
		     BIT(VIRTIO_RING_F_EVENT_IDX) | BIT(VIRTIO_RING_F_INDIRECT_DESC) |      \
		     BIT(VIRTIO_F_VERSION_1))
#define UNMAP_FEATURES (BIT(VIRTIO_GUEST_BLK_F_DISCARD) | BIT(VIRTIO_GUEST_BLK_F_WRITE_ZEROES))

/* The PCI function a Linux guest binds to: ids, class, MSI-X with a vector
 * per queue plus config, connected irqfds and per-queue ioeventfds. */
static void check_pci(struct blk_stack *s, unsigned nq)
{
	struct virtio_guest *g = &s->guest;
	unsigned v, q;

	CHECK_U(virtio_guest_pci_read(g, 0, 4), 0x10421af4);
	CHECK_U(virtio_guest_pci_read(g, 0x0b, 1), 0x01);	/* mass storage */
	CHECK(virtio_guest_pci_read(g, 0x08, 1) >= 1, "revision 0: a transitional device");
	CHECK_U(virtio_guest_pci_read(g, 0x2c, 2), 0x1af4);	/* subsystem vendor */
	CHECK_U(g->msix_n, nq + 1);
	for (v = 0; v <= nq; v++)
		CHECK(virtio_guest_irq_wait(g, v, 0) >= 0, "vector %u has no irqfd", v);
	for (q = 0; q < nq; q++)
		CHECK(guest_platform_ioeventfd(&s->platform, g->q[q].notify, 2) >= 0,
		      "queue %u: no ioeventfd at %#llx", q, (unsigned long long)g->q[q].notify);
}

static void check_config(struct blk_stack *s, uint64_t size, unsigned nq)
{
	struct virtio_guest *g = &s->guest;
	uint32_t seg_max = virtio_guest_config_read(g, VIRTIO_GUEST_BLK_CFG_SEG_MAX, 4);

	CHECK_U(virtio_guest_config_read(g, VIRTIO_GUEST_BLK_CFG_CAPACITY, 8), size / SECTOR);
	CHECK_U(virtio_guest_config_read(g, VIRTIO_GUEST_BLK_CFG_NUM_QUEUES, 2), nq);
	CHECK(seg_max >= 1 && seg_max <= s->disk.queue_size - 2, "seg_max %u", seg_max);
	CHECK(virtio_guest_config_read(g, VIRTIO_GUEST_BLK_CFG_SIZE_MAX, 4) >= 4096, "size_max");
	CHECK_U(virtio_guest_config_read(g, VIRTIO_GUEST_BLK_CFG_BLK_SIZE, 4) % SECTOR, 0);
	CHECK(virtio_guest_config_read(g, VIRTIO_GUEST_BLK_CFG_MIN_IO_SIZE, 2) >= 1, "min_io");
	CHECK(virtio_guest_config_read(g, VIRTIO_GUEST_BLK_CFG_MAX_DISCARD_SECTORS, 4) >= 8,
	      "max_discard_sectors");
	CHECK(virtio_guest_config_read(g, VIRTIO_GUEST_BLK_CFG_MAX_DISCARD_SEG, 4) >= 1,
	      "max_discard_seg");
	CHECK(virtio_guest_config_read(g, VIRTIO_GUEST_BLK_CFG_MAX_WZ_SECTORS, 4) >= 8,
	      "max_write_zeroes_sectors");
	CHECK(virtio_guest_config_read(g, VIRTIO_GUEST_BLK_CFG_MAX_WZ_SEG, 4) >= 1,
	      "max_write_zeroes_seg");
	/* ext4 punches holes. */
	CHECK_U(virtio_guest_config_read(g, VIRTIO_GUEST_BLK_CFG_WZ_MAY_UNMAP, 1), 1);
}

/* Negotiation: what is offered, VERSION_1 required, unknown bits refused,
 * and a refused driver can still start over. */
static void test_negotiation(void)
{
	struct blk_stack s;
	struct virtio_guest *g = &s.guest;

	make_file(path_of("neg.img"), FILE_SIZE, 1);
	up(&s, &(struct blk_stack_params){ .path = path_of("neg.img"), .num_queues = 2 },
	   ALL_FEATURES);
	CHECK_U(g->device_features & (RW_FEATURES | UNMAP_FEATURES | BIT(VIRTIO_GUEST_BLK_F_RO)),
		RW_FEATURES | UNMAP_FEATURES);
	CHECK_U(virtio_guest_status(g), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
						VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	check_pci(&s, 2);
	check_config(&s, FILE_SIZE, 2);

	CHECK_CALL(virtio_guest_start(g, ALL_FEATURES & ~BIT(VIRTIO_F_VERSION_1), 2, 256), -ENOTSUP);
	CHECK(!(virtio_guest_status(g) & VIRTIO_STATUS_FEATURES_OK), "legacy driver accepted");
	CHECK_CALL(virtio_guest_reset(g), 0);
	virtio_guest_common_write(g, VIRTIO_GUEST_DEVICE_STATUS, VIRTIO_STATUS_ACKNOWLEDGE |
				  VIRTIO_STATUS_DRIVER, 1);
	virtio_guest_common_write(g, VIRTIO_GUEST_DRIVER_FEATURE_SELECT, 1, 4);
	virtio_guest_common_write(g, VIRTIO_GUEST_DRIVER_FEATURE, 1 | BIT(50 - 32), 4);
	virtio_guest_common_write(g, VIRTIO_GUEST_DEVICE_STATUS, VIRTIO_STATUS_ACKNOWLEDGE |
				  VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
	CHECK(!(virtio_guest_status(g) & VIRTIO_STATUS_FEATURES_OK), "feature 50 accepted");

	CHECK_CALL(virtio_guest_start(g, ALL_FEATURES, 2, 256), 0);
	CHECK_U(g->features, g->device_features);
	blk_stack_destroy(&s);

	up(&s, &(struct blk_stack_params){ .path = path_of("neg.img"), .readonly = true },
	   ALL_FEATURES);
	CHECK_U(g->device_features & (RW_FEATURES | UNMAP_FEATURES | BIT(VIRTIO_GUEST_BLK_F_RO)),
		RW_FEATURES | BIT(VIRTIO_GUEST_BLK_F_RO));
	blk_stack_destroy(&s);
}

/* Config space offset of the first virtio vendor capability of cfg_type. */
static unsigned find_virtio_cap(struct virtio_guest *g, unsigned cfg_type)
{
	for (unsigned off = virtio_guest_pci_read(g, 0x34, 1); off;
	     off = virtio_guest_pci_read(g, off + 1, 1))
		if (virtio_guest_pci_read(g, off, 1) == 0x09 &&
		    virtio_guest_pci_read(g, off + 3, 1) == cfg_type)
			return off;
	return 0;
}

/* The PCI configuration access capability reaches BAR 0 through config
 * space: reads and writes of 1, 2 and 4 bytes; other lengths do nothing. */
static void test_pci_cfg_window(void)
{
	struct blk_stack s;
	struct virtio_guest *g = &s.guest;
	unsigned cap;

	make_file(path_of("cfgwin.img"), FILE_SIZE, 1);
	up(&s, &(struct blk_stack_params){ .path = path_of("cfgwin.img") }, ALL_FEATURES);
	cap = find_virtio_cap(g, 5);
	CHECK(cap != 0, "no VIRTIO_PCI_CAP_PCI_CFG capability");
	CHECK_U(virtio_guest_pci_read(g, cap + 2, 1), 20);
	virtio_guest_pci_write(g, cap + 4, 0, 1);
	virtio_guest_pci_write(g, cap + 8, VIRTIO_GUEST_DEVICE_STATUS, 4);
	virtio_guest_pci_write(g, cap + 12, 1, 4);
	CHECK_U(virtio_guest_pci_read(g, cap + 16, 1), virtio_guest_status(g));
	virtio_guest_pci_write(g, cap + 8, 0x2000, 4);	/* device config: capacity */
	virtio_guest_pci_write(g, cap + 12, 4, 4);
	CHECK_U(virtio_guest_pci_read(g, cap + 16, 4), FILE_SIZE / 512);
	virtio_guest_pci_write(g, cap + 8, VIRTIO_GUEST_DEVICE_FEATURE_SELECT, 4);
	virtio_guest_pci_write(g, cap + 16, 1, 4);
	CHECK_U(virtio_guest_common_read(g, VIRTIO_GUEST_DEVICE_FEATURE_SELECT, 4), 1);
	virtio_guest_pci_write(g, cap + 12, 3, 4);
	virtio_guest_pci_write(g, cap + 16, 0, 4);
	CHECK_U(virtio_guest_common_read(g, VIRTIO_GUEST_DEVICE_FEATURE_SELECT, 4), 1);
	blk_stack_destroy(&s);
}

/* IN across three unaligned segments, direct and indirect; OUT checked in
 * the file; used lengths and byte counters. */
static void test_read_write(void)
{
	const char *path = path_of("rw.img");
	struct virtio_guest_blk_req r = { .type = VIRTIO_GUEST_BLK_T_IN, .sector = 9 };
	static const uint32_t seg[3] = { 1000, 2096, 1000 };
	uint8_t *p, back[8192];
	uint64_t gpa, off, i;
	struct blk_stack s;
	int ind;

	make_file(path, FILE_SIZE, 2);
	up(&s, &(struct blk_stack_params){ .path = path }, ALL_FEATURES);
	gpa = gbuf(&s, 8192, 0xaa, &p);
	for (ind = 0; ind < 2; ind++) {
		memset(p, 0xaa, 4096);
		r.n = 0;
		for (i = 0, off = 0; i < 3; off += seg[i++])
			virtio_guest_blk_data(&r, gpa + off, seg[i]);
		CHECK_CALL(virtio_guest_blk_run(&s.guest, 0, &r, ind), VIRTIO_GUEST_BLK_S_OK);
		CHECK_U(r.used_len, 4096 + 1);
		for (i = 0; i < 4096 && p[i] == pattern(9 * SECTOR + i, 2); i++)
			;
		CHECK(i == 4096, "indirect %d: byte %llu differs", ind, (unsigned long long)i);
	}
	for (i = 0; i < 8192; i++)
		p[i] = (uint8_t)(i * 3 + 5);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_OUT, 100, gpa, 8192, true), VIRTIO_GUEST_BLK_S_OK);
	file_read(path, 100 * SECTOR, back, sizeof(back));
	CHECK(!memcmp(back, p, sizeof(back)), "OUT did not reach the file");
	CHECK(file_is_pattern(path, 0, 100 * SECTOR, 2) &&
	      file_is_pattern(path, 116 * SECTOR, 64 * KiB, 2), "OUT wrote outside its sectors");
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_GUEST_BLK_S_OK);
	CHECK_U(stats(&s, 0).read_bytes, 2 * 4096);
	CHECK_U(stats(&s, 0).write_bytes, 8192);
	CHECK_U(stats(&s, 0).requests, 4);
	CHECK_U(stats(&s, 0).errors, 0);
	blk_stack_destroy(&s);
}

/* GET_ID gives the configured serial's first 20 bytes, zero-padded when
 * shorter, and writes nothing past them. */
static void test_get_id(void)
{
	static const char *serials[] = { SERIAL, "abc" };
	struct blk_stack s;
	uint8_t *p, want[VIRTIO_GUEST_BLK_ID_BYTES];
	uint64_t gpa;
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(serials); i++) {
		up(&s, &(struct blk_stack_params){ .null_size = MiB, .serial = serials[i] },
		   ALL_FEATURES);
		gpa = gbuf(&s, 32, 0xee, &p);
		memset(want, 0, sizeof(want));
		memcpy(want, serials[i], strnlen(serials[i], sizeof(want)));
		CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_GET_ID, 0, gpa, 32, false),
			VIRTIO_GUEST_BLK_S_OK);
		CHECK(!memcmp(p, want, sizeof(want)), "serial \"%.20s\"", (char *)p);
		CHECK(p[20] == 0xee && p[31] == 0xee, "GET_ID wrote past 20 bytes");
		blk_stack_destroy(&s);
	}
}

/* A discard or write-zeroes range (struct virtio_blk_discard_write_zeroes). */
static int unmap_req(struct blk_stack *s, uint32_t type, uint64_t sector, uint32_t n,
		     uint32_t flags)
{
	uint32_t seg[4] = { (uint32_t)sector, sector >> 32, n, flags };
	uint8_t *p;
	uint64_t gpa = gbuf(s, sizeof(seg), 0, &p);

	memcpy(p, seg, sizeof(seg));
	return req1(s, 0, type, 0, gpa, sizeof(seg), false);
}

static bool file_zero(const char *path, uint64_t off, size_t len)
{
	uint8_t *b = malloc(len);
	size_t i;

	file_read(path, off, b, len);
	for (i = 0; i < len && !b[i]; i++)
		;
	free(b);
	return i == len;
}

/* Whether [off, off+len) of path is a hole. */
static bool file_hole(const char *path, uint64_t off, uint64_t len)
{
	int fd = open(path, O_RDONLY);
	off_t data = lseek(fd, (off_t)off, SEEK_DATA);

	close(fd);
	return data < 0 || (uint64_t)data >= off + len;
}

static void test_discard_write_zeroes(void)
{
	const char *path = path_of("unmap.img");
	struct blk_stack s;

	make_file(path, FILE_SIZE, 3);
	up(&s, &(struct blk_stack_params){ .path = path }, ALL_FEATURES);
	CHECK_CALL(unmap_req(&s, VIRTIO_GUEST_BLK_T_DISCARD, 256, 256, 0), VIRTIO_GUEST_BLK_S_OK);
	CHECK(file_zero(path, 256 * SECTOR, 128 * KiB) && file_hole(path, 256 * SECTOR, 128 * KiB),
	      "discard left data");
	CHECK_CALL(unmap_req(&s, VIRTIO_GUEST_BLK_T_WRITE_ZEROES, 1024, 64, 0), VIRTIO_GUEST_BLK_S_OK);
	CHECK(file_zero(path, 1024 * SECTOR, 32 * KiB), "write zeroes left data");
	CHECK_CALL(unmap_req(&s, VIRTIO_GUEST_BLK_T_WRITE_ZEROES, 2048, 128,
			  VIRTIO_GUEST_BLK_WZ_F_UNMAP), VIRTIO_GUEST_BLK_S_OK);
	CHECK(file_zero(path, 2048 * SECTOR, 64 * KiB) && file_hole(path, 2048 * SECTOR, 64 * KiB),
	      "write zeroes with unmap left data");
	CHECK(file_is_pattern(path, 0, 256 * SECTOR, 3) &&
	      file_is_pattern(path, 512 * SECTOR, 512 * SECTOR, 3) &&
	      file_is_pattern(path, 1088 * SECTOR, 960 * SECTOR, 3) &&
	      file_is_pattern(path, 2176 * SECTOR, 64 * KiB, 3), "zeroed outside the ranges");
	CHECK_CALL(unmap_req(&s, VIRTIO_GUEST_BLK_T_WRITE_ZEROES, 0, 8, 2), VIRTIO_GUEST_BLK_S_UNSUPP);
	CHECK_CALL(unmap_req(&s, VIRTIO_GUEST_BLK_T_DISCARD, FILE_SIZE / SECTOR - 4, 8, 0),
		VIRTIO_GUEST_BLK_S_IOERR);
	CHECK(file_is_pattern(path, 0, 8 * SECTOR, 3), "an unsupported zeroing ran");
	blk_stack_destroy(&s);
}

/* Unknown types, sectors past the end, partial sectors, more data than
 * seg_max * size_max: answered with an error, counted. */
static void test_bad_requests(void)
{
	const char *path = path_of("bad.img");
	uint64_t cap = FILE_SIZE / SECTOR, big, gpa;
	struct blk_stack s;
	uint8_t *p;

	make_file(path, FILE_SIZE, 4);
	up(&s, &(struct blk_stack_params){ .path = path, .ram = 256 * MiB }, ALL_FEATURES);
	big = virtio_guest_config_read(&s.guest, VIRTIO_GUEST_BLK_CFG_SEG_MAX, 4) *
	      virtio_guest_config_read(&s.guest, VIRTIO_GUEST_BLK_CFG_SIZE_MAX, 4) + SECTOR;
	CHECK(big <= 192 * MiB, "seg_max * size_max too large for this test: %llu",
	      (unsigned long long)big);
	gpa = gbuf(&s, 8192, 0xaa, &p);
	CHECK_CALL(req1(&s, 0, 99, 0, gpa, 512, false), VIRTIO_GUEST_BLK_S_UNSUPP);
	CHECK_CALL(req1(&s, 0, 10, 0, gpa, 512, false), VIRTIO_GUEST_BLK_S_UNSUPP); /* GET_LIFETIME */
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_IN, cap, gpa, 512, false), VIRTIO_GUEST_BLK_S_IOERR);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_IN, cap - 1, gpa, 1024, false),
		VIRTIO_GUEST_BLK_S_IOERR);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_OUT, UINT64_MAX / 2, gpa, 512, false),
		VIRTIO_GUEST_BLK_S_IOERR);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_IN, 0, gpa, 100, false), VIRTIO_GUEST_BLK_S_IOERR);
	CHECK(p[0] == 0xaa, "a refused IN wrote the buffer");
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_IN, 0, gbuf(&s, big, 0, NULL), (uint32_t)big, false),
		VIRTIO_GUEST_BLK_S_IOERR);
	CHECK_U(stats(&s, 0).errors, 7);
	CHECK(file_is_pattern(path, 0, FILE_SIZE, 4), "a refused request changed the file");
	blk_stack_destroy(&s);
}

/* A read of n 512-byte segments through one indirect table the test
 * builds (the driver's tables are smaller); r->hdr must be allocated. */
static void add_segments(struct blk_stack *s, struct virtio_guest_blk_req *r, uint64_t data,
			 unsigned n)
{
	uint64_t gpa = gbuf(s, (n + 2) * sizeof(struct virtio_guest_desc), 0, NULL);
	struct virtio_guest_desc *t = virtio_guest_hva(&s->guest, gpa, (n + 2) * sizeof(*t));
	uint32_t hdr[4] = { VIRTIO_GUEST_BLK_T_IN, 0, 0, 0 };
	unsigned i;

	memcpy(virtio_guest_hva(&s->guest, r->hdr, 16), hdr, 16);
	t[0] = (struct virtio_guest_desc){ r->hdr, 16, VIRTIO_GUEST_DESC_F_NEXT, 1 };
	for (i = 1; i <= n; i++)
		t[i] = (struct virtio_guest_desc){ data + 512ULL * (i - 1), 512,
			VIRTIO_GUEST_DESC_F_WRITE | VIRTIO_GUEST_DESC_F_NEXT, (uint16_t)(i + 1) };
	t[n + 1] = (struct virtio_guest_desc){ r->hdr + 16, 1, VIRTIO_GUEST_DESC_F_WRITE, 0 };
	CHECK(virtio_guest_add(&s->guest, 0, &(struct virtio_guest_buf){
		gpa, (n + 2) * sizeof(*t), VIRTIO_GUEST_DESC_F_INDIRECT }, 1, false, r) >= 0, "add");
	virtio_guest_kick(&s->guest, 0);
}

/* seg_max data segments are served; one more is a broken ring (the device
 * pops no chain it could not serve whole). */
static void test_seg_max(void)
{
	struct virtio_guest_blk_req r = { .type = VIRTIO_GUEST_BLK_T_IN };
	struct blk_stack s;
	uint32_t seg_max;
	uint64_t data;
	uint8_t *p;

	make_file(path_of("seg.img"), FILE_SIZE, 9);
	up(&s, &(struct blk_stack_params){ .path = path_of("seg.img") }, ALL_FEATURES);
	seg_max = virtio_guest_config_read(&s.guest, VIRTIO_GUEST_BLK_CFG_SEG_MAX, 4);
	data = gbuf(&s, (seg_max + 1) * 512ULL, 0xaa, &p);
	r.hdr = gbuf(&s, 32, 0, NULL);
	add_segments(&s, &r, data, seg_max);
	CHECK_CALL(virtio_guest_wait_used(&s.guest, 0, 1, VIRTIO_GUEST_TIMEOUT_MS), 0);
	CHECK_U(virtio_guest_blk_status(&s.guest, &r), VIRTIO_GUEST_BLK_S_OK);
	CHECK(p[0] == pattern(0, 9) && p[seg_max * 512 - 1] == pattern(seg_max * 512 - 1, 9),
	      "first or last segment not read");
	add_segments(&s, &r, data, seg_max + 1);
	expect_needs_reset(&s, "more segments than seg_max");
	blk_stack_destroy(&s);
}

/* A readonly disk: RO offered, reads work, every write is IOERR and the
 * file is untouched. */
static void test_readonly(void)
{
	const char *path = path_of("ro.img");
	struct blk_stack s;
	uint64_t gpa;
	uint8_t *p;

	make_file(path, FILE_SIZE, 5);
	up(&s, &(struct blk_stack_params){ .path = path, .readonly = true }, ALL_FEATURES);
	gpa = gbuf(&s, 4096, 0x55, &p);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_IN, 8, gpa, 4096, false), VIRTIO_GUEST_BLK_S_OK);
	CHECK(p[0] == pattern(8 * SECTOR, 5), "readonly read");
	memset(p, 0x55, 4096);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_OUT, 8, gpa, 4096, false), VIRTIO_GUEST_BLK_S_IOERR);
	CHECK_CALL(unmap_req(&s, VIRTIO_GUEST_BLK_T_DISCARD, 0, 8, 0), VIRTIO_GUEST_BLK_S_IOERR);
	CHECK_CALL(unmap_req(&s, VIRTIO_GUEST_BLK_T_WRITE_ZEROES, 0, 8, 0), VIRTIO_GUEST_BLK_S_IOERR);
	CHECK(file_is_pattern(path, 0, FILE_SIZE, 5), "a readonly disk changed");
	CHECK_U(stats(&s, 0).errors, 3);
	blk_stack_destroy(&s);
}

/* Host errors: a write past RLIMIT_FSIZE (EFBIG) and a read past the end
 * of a file truncated under the device (no progress: EIO) are IOERR. */
static void test_host_errors(void)
{
	const char *path = path_of("host.img");
	struct rlimit old, lim;
	struct blk_stack s;
	uint64_t gpa;

	make_file(path, FILE_SIZE, 6);
	up(&s, &(struct blk_stack_params){ .path = path }, ALL_FEATURES);
	gpa = gbuf(&s, 4096, 0x11, NULL);
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &old);
	lim = (struct rlimit){ .rlim_cur = FILE_SIZE / 2, .rlim_max = old.rlim_max };
	setrlimit(RLIMIT_FSIZE, &lim);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_OUT, 0, gpa, 4096, false), VIRTIO_GUEST_BLK_S_OK);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_OUT, FILE_SIZE / 2 / SECTOR, gpa, 4096, false),
		VIRTIO_GUEST_BLK_S_IOERR);
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_DFL);
	CHECK(file_is_pattern(path, FILE_SIZE / 2, 4096, 6), "a failed write changed the file");
	CHECK_CALL(truncate(path, FILE_SIZE / 4), 0);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_IN, FILE_SIZE / 2 / SECTOR, gpa, 4096, false),
		VIRTIO_GUEST_BLK_S_IOERR);
	CHECK_U(stats(&s, 0).errors, 2);
	blk_stack_destroy(&s);
}

/* Chains the device cannot answer: NEEDS_RESET and a config interrupt; a
 * short header still gets IOERR through its status byte. */
static void test_broken_requests(void)
{
	struct virtio_guest_buf hdr_only[1], ro_status[3];
	struct virtio_guest_blk_req r = { .type = VIRTIO_GUEST_BLK_T_IN };
	struct blk_stack s;
	uint64_t gpa;

	up(&s, &(struct blk_stack_params){ .null_size = MiB }, ALL_FEATURES);
	gpa = gbuf(&s, 4096, 0, NULL);
	r.hdr = gbuf(&s, 32, 0, NULL);		/* type 0: IN, sector 0 */
	hdr_only[0] = (struct virtio_guest_buf){ r.hdr, 16, 0 };
	ro_status[0] = hdr_only[0];
	ro_status[1] = (struct virtio_guest_buf){ gpa, 512, VIRTIO_GUEST_DESC_F_WRITE };
	ro_status[2] = (struct virtio_guest_buf){ r.hdr + 16, 1, 0 };

	CHECK(virtio_guest_add(&s.guest, 0, hdr_only, 1, false, NULL) >= 0, "add");
	virtio_guest_kick(&s.guest, 0);
	expect_needs_reset(&s, "no status byte");
	CHECK(virtio_guest_add(&s.guest, 0, ro_status, 3, false, NULL) >= 0, "add");
	virtio_guest_kick(&s.guest, 0);
	expect_needs_reset(&s, "readable status byte");

	ro_status[0].len = 8;
	ro_status[2].flags = VIRTIO_GUEST_DESC_F_WRITE;
	CHECK(virtio_guest_add(&s.guest, 0, ro_status, 3, false, &r) >= 0, "add");
	virtio_guest_kick(&s.guest, 0);
	CHECK_CALL(virtio_guest_wait_used(&s.guest, 0, 2, VIRTIO_GUEST_TIMEOUT_MS), 0);
	CHECK_U(virtio_guest_blk_status(&s.guest, &r), VIRTIO_GUEST_BLK_S_IOERR);
	CHECK(!(virtio_guest_status(&s.guest) & VIRTIO_STATUS_NEEDS_RESET), "short header broke");
	blk_stack_destroy(&s);
}

/* A valid read whose chain the caller then corrupts: hdr, 2 data, status. */
static int add_read(struct blk_stack *s, struct virtio_guest_blk_req *r, uint64_t data)
{
	*r = (struct virtio_guest_blk_req){ .type = VIRTIO_GUEST_BLK_T_IN };
	virtio_guest_blk_data(r, data, 512);
	virtio_guest_blk_data(r, data + 512, 512);
	return virtio_guest_blk_submit(&s->guest, 0, r, false, r);
}

/* An indirect table of n descriptors: zero-length readable ones (they
 * count towards the chain length but carry nothing) then hdr and status. */
static uint64_t long_table(struct blk_stack *s, uint64_t hdr, unsigned n)
{
	uint64_t gpa = gbuf(s, n * sizeof(struct virtio_guest_desc), 0, NULL);
	struct virtio_guest_desc *t = virtio_guest_hva(&s->guest, gpa, n * sizeof(*t));
	unsigned i;

	t[0] = (struct virtio_guest_desc){ hdr, 16, VIRTIO_GUEST_DESC_F_NEXT, 1 };
	for (i = 1; i + 1 < n; i++)
		t[i] = (struct virtio_guest_desc){ hdr, 0, VIRTIO_GUEST_DESC_F_NEXT, (uint16_t)(i + 1) };
	t[n - 1] = (struct virtio_guest_desc){ hdr + 16, 1, VIRTIO_GUEST_DESC_F_WRITE, 0 };
	return gpa;
}

enum hostile { OUTSIDE_RAM, STRADDLE, LOOP, TOO_LONG, NESTED, WRITE_THEN_READ, BAD_HEAD,
	       AVAIL_AHEAD, HOSTILE_COUNT };
static const char *const hostile_name[] = { "address in the PCI hole", "straddling RAM's end",
	"descriptor loop", "chain longer than the queue", "nested indirect table",
	"readable after writable", "head out of range", "avail idx too far ahead" };

static void make_hostile(struct blk_stack *s, enum hostile h, uint64_t data)
{
	struct virtio_guest_queue *vq = &s->guest.q[0];
	struct virtio_guest_blk_req r;
	int head = add_read(s, &r, data);
	uint16_t d1 = vq->d[head].next, d2 = vq->d[d1].next;

	if (h == OUTSIDE_RAM)
		vq->d[d1].addr = MEM_PCI_HOLE_START + 4096;
	if (h == STRADDLE)
		vq->d[d2].addr = s->ram - 256;
	if (h == LOOP)		/* readable, so only the loop is wrong */
		vq->d[head].next = (uint16_t)head;
	if (h == TOO_LONG || h == NESTED)
		vq->d[head] = (struct virtio_guest_desc){
			long_table(s, r.hdr, h == TOO_LONG ? vq->size + 2 : 2),
			(h == TOO_LONG ? vq->size + 2 : 2) * 16, VIRTIO_GUEST_DESC_F_INDIRECT, 0 };
	if (h == NESTED)
		((struct virtio_guest_desc *)virtio_guest_hva(&s->guest, vq->d[head].addr, 32))
			->flags |= VIRTIO_GUEST_DESC_F_INDIRECT;
	if (h == WRITE_THEN_READ)
		vq->d[d2].flags &= (uint16_t)~VIRTIO_GUEST_DESC_F_WRITE;
	if (h == BAD_HEAD)
		vq->a[2 + (vq->avail_idx - 1) % vq->size] = vq->size;
	if (h == AVAIL_AHEAD)
		vq->avail_idx += vq->size;
}

/* Each hostile ring sets NEEDS_RESET with a config interrupt, writes
 * nothing, and the device works again after a reset. */
static void test_hostile_rings(void)
{
	struct blk_stack s;
	uint64_t data;
	uint8_t *p;
	unsigned h, i;

	up(&s, &(struct blk_stack_params){ .null_size = MiB, .queue_size = 16 }, ALL_FEATURES);
	data = gbuf(&s, 1024, 0xaa, &p);
	for (h = 0; h < HOSTILE_COUNT; h++) {
		memset(p, 0xaa, 1024);
		make_hostile(&s, h, data);
		virtio_guest_kick(&s.guest, 0);
		expect_needs_reset(&s, hostile_name[h]);
		for (i = 0; i < 1024 && p[i] == 0xaa; i++)
			;
		CHECK(i == 1024, "%s: the buffer was written", hostile_name[h]);
	}
	blk_stack_destroy(&s);
}

/* n reads of 512 bytes (sector i into data + 512 i) on queue q, one kick. */
static void submit_reads(struct blk_stack *s, unsigned q, struct virtio_guest_blk_req *r,
			 unsigned n, uint64_t data)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		r[i] = (struct virtio_guest_blk_req){ .type = VIRTIO_GUEST_BLK_T_IN, .sector = i };
		virtio_guest_blk_data(&r[i], data + 512ULL * i, 512);
		CHECK(virtio_guest_blk_submit(&s->guest, q, &r[i], i & 1, &r[i]) >= 0, "submit %u", i);
	}
	virtio_guest_kick(&s->guest, q);
}

/* Takes n completions of queue q (all already used) and checks them. */
static void take(struct blk_stack *s, unsigned q, unsigned n)
{
	void *cookie;
	uint32_t len;
	unsigned i;

	for (i = 0; i < n; i++) {
		CHECK_CALL(virtio_guest_get(&s->guest, q, &len, &cookie), 1);
		CHECK_U(virtio_guest_blk_status(&s->guest, cookie), VIRTIO_GUEST_BLK_S_OK);
	}
}

/* Interrupts on vector v: waits for the first, then until QUIET_MS pass
 * without another. */
static int irqs_settled(struct blk_stack *s, unsigned v)
{
	int n = virtio_guest_irq_wait(&s->guest, v, VIRTIO_GUEST_TIMEOUT_MS), more;

	while (n > 0 && (more = virtio_guest_irq_wait(&s->guest, v, QUIET_MS)) > 0)
		n += more;
	return n;
}

/* used_event far ahead: no interrupt; crossing it: exactly one. */
static void test_event_idx(void)
{
	struct virtio_guest_blk_req r[16];
	struct blk_stack s;
	uint16_t base;
	uint64_t data;
	unsigned v;

	up(&s, &(struct blk_stack_params){ .null_size = MiB }, ALL_FEATURES);
	v = s.guest.q[0].vector;
	data = gbuf(&s, 16 * 512, 0, NULL);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_IN, 0, data, 512, false), VIRTIO_GUEST_BLK_S_OK);
	virtio_guest_irq_wait(&s.guest, v, 0);
	base = s.guest.q[0].last_used;
	virtio_guest_set_used_event(&s.guest, 0, base + 100);
	submit_reads(&s, 0, r, 8, data);
	CHECK_CALL(virtio_guest_wait_used(&s.guest, 0, base + 8, VIRTIO_GUEST_TIMEOUT_MS), 0);
	CHECK_CALL(virtio_guest_irq_wait(&s.guest, v, QUIET_MS), 0);
	take(&s, 0, 8);
	virtio_guest_set_used_event(&s.guest, 0, base + 11);
	submit_reads(&s, 0, r + 8, 8, data);
	CHECK_CALL(virtio_guest_wait_used(&s.guest, 0, base + 16, VIRTIO_GUEST_TIMEOUT_MS), 0);
	CHECK_CALL(irqs_settled(&s, v), 1);
	take(&s, 0, 8);
	blk_stack_destroy(&s);
}

/* 32 requests and one kick: one kick handled, 32 completions, one
 * interrupt with EVENT_IDX (used_event is not moved meanwhile) and fewer
 * than 32 without it. */
static void test_batching(void)
{
	struct virtio_guest_blk_req r[32];
	struct virtio_blk_stats before;
	struct blk_stack s;
	uint64_t data;
	int evidx, irqs;

	for (evidx = 1; evidx >= 0; evidx--) {
		up(&s, &(struct blk_stack_params){ .null_size = MiB },
		   evidx ? ALL_FEATURES : ALL_FEATURES & ~BIT(VIRTIO_RING_F_EVENT_IDX));
		data = gbuf(&s, 32 * 512, 0, NULL);
		CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_IN, 0, data, 512, false),
			VIRTIO_GUEST_BLK_S_OK);
		virtio_guest_irq_wait(&s.guest, s.guest.q[0].vector, 0);
		before = stats(&s, 0);
		submit_reads(&s, 0, r, 32, data);
		CHECK_CALL(virtio_guest_wait_used(&s.guest, 0, 33, VIRTIO_GUEST_TIMEOUT_MS), 0);
		irqs = irqs_settled(&s, s.guest.q[0].vector);
		take(&s, 0, 32);
		CHECK(evidx ? irqs == 1 : irqs >= 1 && irqs < 32, "event_idx %d: %d interrupts",
		      evidx, irqs);
		CHECK_U(stats(&s, 0).interrupts - before.interrupts, irqs);
		CHECK_U(stats(&s, 0).kicks - before.kicks, 1);
		CHECK_U(stats(&s, 0).requests - before.requests, 32);
		blk_stack_destroy(&s);
	}
}

#define MQ_QUEUES 3
#define MQ_REQS 32

/* Each queue on its own IOThread: 32 concurrent 4 KiB writes per queue,
 * all queues kicked before any completes, then read back through the
 * file; every queue counted its own requests. */
static void test_multiqueue(void)
{
	const char *path = path_of("mq.img");
	static struct virtio_guest_blk_req r[MQ_QUEUES][MQ_REQS];
	struct blk_stack s;
	uint8_t *p, back[4096];
	uint64_t data;
	unsigned q, i;

	make_file(path, FILE_SIZE, 7);
	up(&s, &(struct blk_stack_params){ .path = path, .num_queues = MQ_QUEUES,
					   .n_iothreads = MQ_QUEUES }, ALL_FEATURES);
	data = gbuf(&s, MQ_QUEUES * MQ_REQS * 4096ULL, 0, &p);
	for (i = 0; i < MQ_QUEUES * MQ_REQS * 4096; i++)
		p[i] = (uint8_t)(i / 4096 + i * 13);
	for (q = 0; q < MQ_QUEUES; q++) {
		for (i = 0; i < MQ_REQS; i++) {
			struct virtio_guest_blk_req *x = &r[q][i];

			*x = (struct virtio_guest_blk_req){ .type = VIRTIO_GUEST_BLK_T_OUT,
							    .sector = (q * MQ_REQS + i) * 8ULL };
			virtio_guest_blk_data(x, data + (q * MQ_REQS + i) * 4096ULL, 4096);
			CHECK(virtio_guest_blk_submit(&s.guest, q, x, false, x) >= 0, "submit");
		}
	}
	for (q = 0; q < MQ_QUEUES; q++)
		virtio_guest_kick(&s.guest, q);
	for (q = 0; q < MQ_QUEUES; q++) {
		CHECK_CALL(virtio_guest_wait_used(&s.guest, q, MQ_REQS, VIRTIO_GUEST_TIMEOUT_MS), 0);
		CHECK(virtio_guest_irq_wait(&s.guest, s.guest.q[q].vector,
					    VIRTIO_GUEST_TIMEOUT_MS) >= 1,
		      "queue %u: no interrupt on its own vector", q);
		take(&s, q, MQ_REQS);
		CHECK_U(stats(&s, q).requests, MQ_REQS);
		CHECK_U(stats(&s, q).write_bytes, MQ_REQS * 4096);
	}
	for (i = 0; i < MQ_QUEUES * MQ_REQS; i++) {
		file_read(path, i * 4096ULL, back, sizeof(back));
		CHECK(!memcmp(back, p + i * 4096ULL, sizeof(back)), "block %u", i);
	}
	blk_stack_destroy(&s);
}

#define RESET_REQS 128
#define RESET_LEN (64 * KiB)
#define RESET_FILE (256 * MiB)

/* Puts RESET_REQS O_DIRECT reads in flight, resets at once and returns
 * whether the reset had to wait for them. Once status reads 0, the rings
 * and buffers never change again and the device completes nothing more. */
static bool reset_in_flight(struct blk_stack *s, uint64_t data, uint8_t *p, unsigned round)
{
	static struct virtio_guest_blk_req r[RESET_REQS];
	size_t len = (size_t)RESET_REQS * RESET_LEN;
	uint8_t *rings = virtio_guest_hva(&s->guest, s->guest.ring_mem[0], 32 * KiB);
	uint8_t *snap = malloc(len + 32 * KiB);
	uint64_t done;
	unsigned i;
	bool waited;

	CHECK_CALL(virtio_guest_start(&s->guest, ALL_FEATURES, 1, 256), 0);
	memset(p, 0xaa, len);
	for (i = 0; i < RESET_REQS; i++) {
		r[i] = (struct virtio_guest_blk_req){
			.type = VIRTIO_GUEST_BLK_T_IN,
			.sector = ((i * 7919 + round * 104729) % (RESET_FILE / RESET_LEN)) * 128 };
		virtio_guest_blk_data(&r[i], data + (uint64_t)i * RESET_LEN, RESET_LEN);
		virtio_guest_blk_submit(&s->guest, 0, &r[i], false, &r[i]);
	}
	virtio_guest_kick(&s->guest, 0);
	CHECK_CALL(virtio_guest_reset(&s->guest), 0);
	waited = s->guest.reset_polls > 0;
	memcpy(snap, p, len);
	memcpy(snap + len, rings, 32 * KiB);
	done = stats(s, 0).requests;
	usleep(QUIET_MS * 1000);
	CHECK(!memcmp(snap, p, len), "round %u: a buffer changed after the reset", round);
	CHECK(!memcmp(snap + len, rings, 32 * KiB), "round %u: the rings changed after the reset",
	      round);
	CHECK_U(stats(s, 0).requests, done);
	CHECK((uint16_t)(virtio_guest_used_idx(&s->guest, 0)) <= RESET_REQS, "used idx");
	free(snap);
	return waited;
}

static void test_reset_in_flight(void)
{
	const char *path = path_of("reset.img");
	struct blk_stack s;
	unsigned round, waited = 0;
	uint64_t data;
	uint8_t *p;

	make_file(path, RESET_FILE, 8);
	up(&s, &(struct blk_stack_params){ .path = path, .direct = true, .ram = 256 * MiB },
	   ALL_FEATURES);
	data = gbuf(&s, (uint64_t)RESET_REQS * RESET_LEN, 0, &p);
	for (round = 0; round < 5 && waited < 2; round++)
		waited += reset_in_flight(&s, data, p, round);
	CHECK(waited >= 1, "no reset found I/O in flight in %u rounds", round);
	printf("reset with I/O in flight: %u of %u rounds waited for the drain\n", waited, round);
	CHECK_CALL(virtio_guest_start(&s.guest, ALL_FEATURES, 1, 256), 0);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_IN, 8, data, 4096, false), VIRTIO_GUEST_BLK_S_OK);
	CHECK(p[0] == pattern(8 * SECTOR, 8), "read after the resets");
	blk_stack_destroy(&s);
}

/* Without the ioeventfd a kick is an MMIO write to the doorbell (a vCPU
 * exit); the device serves it all the same. The null backend reads zeros. */
static void test_kick_by_exit_and_null(void)
{
	struct blk_stack s;
	uint64_t gpa;
	uint8_t *p;

	up(&s, &(struct blk_stack_params){ .null_size = 3 * MiB }, ALL_FEATURES);
	CHECK_U(virtio_guest_config_read(&s.guest, VIRTIO_GUEST_BLK_CFG_CAPACITY, 8),
		3 * MiB / SECTOR);
	gpa = gbuf(&s, 4096, 0xaa, &p);
	s.guest.kick_by_exit = true;
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_IN, 16, gpa, 4096, false), VIRTIO_GUEST_BLK_S_OK);
	CHECK(p[0] == 0 && p[4095] == 0, "null read gave %#x", p[0]);
	CHECK_CALL(req1(&s, 0, VIRTIO_GUEST_BLK_T_OUT, 16, gpa, 4096, true), VIRTIO_GUEST_BLK_S_OK);
	CHECK_U(stats(&s, 0).kicks, 2);
	blk_stack_destroy(&s);
}

/* Removes every file the tests made, and the directory. */
static void cleanup(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			unlink(path_of(e->d_name));
	if (d)
		closedir(d);
	CHECK(rmdir(dir) == 0, "rmdir %s: %s", dir, strerror(errno));
}

int main(void)
{
	rcu_register_thread();
	snprintf(dir, sizeof(dir), "/var/tmp/vmm-test-vblk-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_negotiation();
	test_pci_cfg_window();
	test_read_write();
	test_get_id();
	test_discard_write_zeroes();
	test_bad_requests();
	test_seg_max();
	test_readonly();
	test_host_errors();
	test_broken_requests();
	test_hostile_rings();
	test_event_idx();
	test_batching();
	test_multiqueue();
	test_reset_in_flight();
	test_kick_by_exit_and_null();
	cleanup();
	rcu_unregister_thread();
	if (test_failures) {
		printf("%d checks failed\n", test_failures);
		return 1;
	}
	printf("all virtio-blk checks passed\n");
	return 0;
}
