/*
 * vblk_req_parse on hand-built chains: headers and status bytes split
 * across descriptors, empty descriptors, chains too short to answer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dev/vblk_req.h"
#include "tests/check.h"

#define MAX_SEG 8

struct chain {
	struct iovec iov[MAX_SEG];
	uint64_t gpa[MAX_SEG];
	struct virtq_elem e;
};

/* Segments cut from buf at the given lengths; the first n_out readable. */
static void chain_make(struct chain *c, uint8_t *buf, const size_t *lens, unsigned n,
		       unsigned n_out)
{
	size_t off = 0;

	for (unsigned i = 0; i < n; i++) {
		c->iov[i] = (struct iovec){ buf + off, lens[i] };
		c->gpa[i] = 0x100000 + off;
		off += lens[i];
	}
	c->e = (struct virtq_elem){ .head = 3, .n_out = n_out, .n_in = n - n_out, .max = MAX_SEG,
				    .iov = c->iov, .gpa = c->gpa };
}

static void put_hdr(uint8_t *p, uint32_t type, uint64_t sector)
{
	memset(p, 0, VBLK_HDR_SIZE);
	memcpy(p, &type, 4);
	memcpy(p + 8, &sector, 8);
}

static void test_read_split_everywhere(void)
{
	/* header split 5+11, an empty segment, data 512+512, status inside
	 * the last data segment's tail (a 513-byte descriptor). */
	static const size_t lens[] = { 5, 11, 0, 512, 513 };
	uint8_t buf[2048];
	struct vblk_parsed r;
	struct chain c;

	put_hdr(buf, VIRTIO_BLK_T_IN, 77);
	chain_make(&c, buf, lens, 5, 3);
	CHECK_I(vblk_req_parse(&c.e, &r), 0);
	CHECK_U(r.type, VIRTIO_BLK_T_IN);
	CHECK_U(r.sector, 77);
	CHECK_U(r.n_data, 2);
	CHECK_U(r.data_len, 1024);
	CHECK(r.data == &c.iov[3], "data starts at the first writable segment");
	CHECK(r.status == buf + 16 + 512 + 512, "status is the chain's last byte");
	CHECK_U(r.status_gpa, 0x100000 + 16 + 1024);
	CHECK_U(r.data_gpa[1], 0x100000 + 16 + 512);
}

static void test_write_header_and_data_in_one(void)
{
	/* Header and data in one readable descriptor: data starts at +16. */
	static const size_t lens[] = { 16 + 1024, 1 };
	uint8_t buf[2048];
	struct vblk_parsed r;
	struct chain c;

	put_hdr(buf, VIRTIO_BLK_T_OUT, 8);
	chain_make(&c, buf, lens, 2, 1);
	CHECK_I(vblk_req_parse(&c.e, &r), 0);
	CHECK_U(r.type, VIRTIO_BLK_T_OUT);
	CHECK_U(r.n_data, 1);
	CHECK_U(r.data_len, 1024);
	CHECK(r.data[0].iov_base == buf + 16, "data follows the header");
	CHECK_U(r.data_gpa[0], 0x100000 + 16);
	CHECK(r.status == buf + 16 + 1024, "status");
}

static void test_short_header(void)
{
	static const size_t lens[] = { 15, 1 };
	uint8_t buf[64] = { 0 };
	struct vblk_parsed r;
	struct chain c;

	chain_make(&c, buf, lens, 2, 1);
	CHECK_I(vblk_req_parse(&c.e, &r), -EBADMSG);
	CHECK(r.status == buf + 15, "a short header can still be answered");
}

static void test_no_status(void)
{
	static const size_t readable_only[] = { 16, 512 };
	static const size_t empty_writable[] = { 16, 0, 0 };
	uint8_t buf[1024] = { 0 };
	struct vblk_parsed r;
	struct chain c;

	chain_make(&c, buf, readable_only, 2, 2);
	CHECK_I(vblk_req_parse(&c.e, &r), -EINVAL);
	chain_make(&c, buf, empty_writable, 3, 1);
	CHECK_I(vblk_req_parse(&c.e, &r), -EINVAL);
}

static void test_iov_copies(void)
{
	uint8_t a[3], b[5], out[8];
	const struct iovec iov[] = { { a, sizeof(a) }, { b, sizeof(b) } };
	const uint8_t src[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	CHECK_U(vblk_buf_to_iov(iov, 2, src, 6), 6);
	CHECK(a[2] == 3 && b[0] == 4 && b[2] == 6, "scattered in order");
	CHECK_U(vblk_buf_to_iov(iov, 2, src, 8), 8);
	CHECK_U(vblk_iov_to_buf(iov, 2, out, sizeof(out)), 8);
	CHECK(!memcmp(out, src, 8), "gathered back");
	CHECK_U(vblk_iov_to_buf(iov, 1, out, sizeof(out)), 3);
}

int main(void)
{
	test_read_split_everywhere();
	test_write_header_and_data_in_one();
	test_short_header();
	test_no_status();
	test_iov_copies();
	if (test_failures) {
		fprintf(stderr, "test_vblk_req: %d failures\n", test_failures);
		return 1;
	}
	printf("test_vblk_req: ok\n");
	return 0;
}
