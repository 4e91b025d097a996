/*
 * qcow2 header parser: the fixed header (v2 and v3), its extensions and
 * the backing file name, checked field by field against the file's size
 * before anything trusts them. Pure functions over a buffer: no I/O and
 * no state, so the fuzzer (tests/fuzz/fuzz_qcow2.c) drives them directly
 * and any thread may call them. Refuses every feature this driver does
 * not implement (encryption, external data files, non-zlib compression,
 * extended L2 entries, unknown incompatible bits) with one line naming it;
 * whether the dirty and corrupt bits allow writing is decided by the
 * caller, which knows whether the image is opened read-write.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "block/qcow2.h"

#define QCOW2_EXT_END 0x00000000U
#define QCOW2_EXT_BACKING_FMT 0xe2792acaU
#define QCOW2_EXT_FEATURES 0x6803f857U
#define QCOW2_FEATURE_ENTRY 48U
#define QCOW2_FEATURE_NAME 46U
#define QCOW2_KNOWN_INCOMPAT (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)

/* Where the feature name table is in the buffer (len 0: none). */
struct qcow2_features {
	const uint8_t *p;
	size_t len;
};

bool qcow2_header_probe(const uint8_t *head, size_t len)
{
	return len >= 4 && qcow2_be32(head) == QCOW2_MAGIC;
}

/* The fixed fields common to v2 and v3. */
static void qcow2_header_fields(const uint8_t *b, struct qcow2_header *h)
{
	*h = (struct qcow2_header){
		.version = qcow2_be32(b + 4),
		.backing_off = qcow2_be64(b + 8),
		.backing_len = qcow2_be32(b + 16),
		.cluster_bits = qcow2_be32(b + 20),
		.size = qcow2_be64(b + 24),
		.crypt = qcow2_be32(b + 32),
		.l1_size = qcow2_be32(b + 36),
		.l1_off = qcow2_be64(b + 40),
		.rt_off = qcow2_be64(b + 48),
		.rt_clusters = qcow2_be32(b + 56),
		.nb_snapshots = qcow2_be32(b + 60),
		.snapshots_off = qcow2_be64(b + 64),
		.refcount_order = 4,
		.header_len = QCOW2_V2_HEADER_LEN,
	};
}

/* The v3 fields, once header_len is known to be inside buf. */
static int qcow2_header_v3(const uint8_t *b, size_t len, struct qcow2_header *h, char *why,
			   size_t whylen)
{
	uint64_t cs = 1ULL << h->cluster_bits;

	if (len < QCOW2_V3_HEADER_LEN)
		return block_fail(why, whylen, -EINVAL, "truncated qcow2 v3 header (%zu bytes)", len);
	h->incompat = qcow2_be64(b + 72);
	h->compat = qcow2_be64(b + 80);
	h->autoclear = qcow2_be64(b + 88);
	h->refcount_order = qcow2_be32(b + 96);
	h->header_len = qcow2_be32(b + 100);
	if (h->header_len < QCOW2_V3_HEADER_LEN || h->header_len % 8 || h->header_len > cs ||
	    h->header_len > len)
		return block_fail(why, whylen, -EINVAL,
					 "qcow2 header length %u is invalid (expected a multiple of 8 from %u to the cluster size)",
					 h->header_len, QCOW2_V3_HEADER_LEN);
	if (h->refcount_order > 6)
		return block_fail(why, whylen, -EINVAL,
					 "refcount order %u is out of range (0 to 6)", h->refcount_order);
	return 0;
}

/* The name of incompatible bit `bit` from the feature name table, or "". */
static void qcow2_feature_name(const struct qcow2_features *f, unsigned bit, char *out, size_t len)
{
	size_t i;

	out[0] = '\0';
	for (i = 0; i + QCOW2_FEATURE_ENTRY <= f->len; i += QCOW2_FEATURE_ENTRY) {
		const uint8_t *e = f->p + i;
		size_t n;

		if (e[0] != 0 || e[1] != bit)
			continue;
		for (n = 0; n < QCOW2_FEATURE_NAME && n + 1 < len && e[2 + n]; n++)
			out[n] = (e[2 + n] >= 0x20 && e[2 + n] < 0x7f) ? (char)e[2 + n] : '?';
		out[n] = '\0';
		return;
	}
}

/* Refuses the incompatible features this driver does not implement. */
static int qcow2_header_incompat(const uint8_t *b, const struct qcow2_header *h,
				 const struct qcow2_features *f, char *why, size_t whylen)
{
	uint8_t ctype = h->header_len > QCOW2_V3_HEADER_LEN ? b[QCOW2_V3_HEADER_LEN] : 0;
	uint64_t unknown = h->incompat & ~(QCOW2_KNOWN_INCOMPAT | QCOW2_INCOMPAT_DATA_FILE |
					   QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2);
	char name[QCOW2_FEATURE_NAME + 1];
	unsigned bit;

	if (h->incompat & QCOW2_INCOMPAT_DATA_FILE)
		return block_fail(why, whylen, -ENOTSUP, "qcow2 external data files are not supported");
	if (h->incompat & QCOW2_INCOMPAT_EXTL2)
		return block_fail(why, whylen, -ENOTSUP,
					 "qcow2 extended L2 entries (subclusters) are not supported");
	if (!!(h->incompat & QCOW2_INCOMPAT_COMPRESSION) != (ctype != 0))
		return block_fail(why, whylen, -EINVAL,
					 "qcow2 compression type %u does not match the compression type feature bit",
					 ctype);
	if (ctype)
		return block_fail(why, whylen, -ENOTSUP,
					 "qcow2 compression type %u (%s) is not supported, only zlib",
					 ctype, ctype == 1 ? "zstd" : "unknown");
	if (!unknown)
		return 0;
	bit = (unsigned)__builtin_ctzll(unknown);
	qcow2_feature_name(f, bit, name, sizeof(name));
	return block_fail(why, whylen, -ENOTSUP,
				 "unknown qcow2 incompatible feature bit %u%s%s%s", bit,
				 name[0] ? " (\"" : "", name, name[0] ? "\")" : "");
}

/* A string extension into out (NUL-terminated, no NUL inside). */
static int qcow2_ext_string(const uint8_t *d, uint32_t n, char *out, size_t size, const char *what,
			    char *why, size_t whylen)
{
	if (n >= size || memchr(d, 0, n))
		return block_fail(why, whylen, -EINVAL, "invalid qcow2 %s (%u bytes)", what, n);
	memcpy(out, d, n);
	out[n] = '\0';
	return 0;
}

/* Walks the header extensions between header_len and the end of the
 * first cluster; unknown ones are skipped. */
static int qcow2_header_exts(const uint8_t *b, size_t end, struct qcow2_header *h,
			     struct qcow2_features *f, char *why, size_t whylen)
{
	size_t off = h->header_len;
	bool seen_fmt = false;

	while (off + 8 <= end) {
		uint32_t type = qcow2_be32(b + off), n = qcow2_be32(b + off + 4);
		const uint8_t *d = b + off + 8;
		int ret = 0;

		if (type == QCOW2_EXT_END)
			return 0;
		if (n > end - off - 8)
			return block_fail(why, whylen, -EINVAL,
						 "qcow2 header extension 0x%08x at byte %zu runs past the first cluster",
						 type, off);
		if (type == QCOW2_EXT_BACKING_FMT) {
			ret = seen_fmt ? block_fail(why, whylen, -EINVAL,
							   "two qcow2 backing format extensions")
				       : qcow2_ext_string(d, n, h->backing_fmt, sizeof(h->backing_fmt),
							  "backing format", why, whylen);
			seen_fmt = true;
		} else if (type == QCOW2_EXT_FEATURES) {
			*f = (struct qcow2_features){ d, n };
		}
		if (ret)
			return ret;
		off += 8 + ALIGN_UP((size_t)n, 8);
	}
	return 0;
}

/* The backing file name, which must lie inside the first cluster. */
static int qcow2_header_backing(const uint8_t *b, size_t end, struct qcow2_header *h, char *why,
				size_t whylen)
{
	if (!h->backing_off)
		return 0;
	if (!h->backing_len || h->backing_len > QCOW2_MAX_BACKING_NAME ||
	    h->backing_off >= end || h->backing_len > end - h->backing_off)
		return block_fail(why, whylen, -EINVAL,
					 "qcow2 backing file name (%u bytes at offset %llu) is not inside the first cluster, or longer than %u bytes",
					 h->backing_len, (unsigned long long)h->backing_off,
					 QCOW2_MAX_BACKING_NAME);
	return qcow2_ext_string(b + h->backing_off, h->backing_len, h->backing, sizeof(h->backing),
				"backing file name", why, whylen);
}

/* A cluster-aligned table of bytes at off: after the header cluster and
 * inside the file. */
static int qcow2_header_table(const struct qcow2_header *h, uint64_t file_size, uint64_t off,
			      uint64_t bytes, const char *what, char *why, size_t whylen)
{
	uint64_t cs = 1ULL << h->cluster_bits;

	if (off % cs || off < cs || off > file_size || bytes > file_size - off)
		return block_fail(why, whylen, -EINVAL,
					 "qcow2 %s (%llu bytes at offset %llu) is misaligned or not inside the %llu-byte file",
					 what, (unsigned long long)bytes, (unsigned long long)off,
					 (unsigned long long)file_size);
	return 0;
}

/* Size, L1 table, refcount table and snapshot table against the file. */
static int qcow2_header_layout(const struct qcow2_header *h, uint64_t file_size, char *why,
			       size_t whylen)
{
	uint64_t cs = 1ULL << h->cluster_bits, per_l1 = cs / 8 * cs;
	uint64_t l1_max = QCOW2_MAX_L1_BYTES / 8, l1_bytes = (uint64_t)h->l1_size * 8;
	uint64_t rt_bytes = (uint64_t)h->rt_clusters * cs;
	int ret;

	if (h->size > (1ULL << 62) || (h->size + per_l1 - 1) / per_l1 > l1_max)
		return block_fail(why, whylen, -EINVAL,
					 "qcow2 virtual size %llu is too large for %llu-byte clusters",
					 (unsigned long long)h->size, (unsigned long long)cs);
	if (h->l1_size > l1_max)
		return block_fail(why, whylen, -EINVAL,
					 "qcow2 L1 table of %u entries is larger than %llu entries",
					 h->l1_size, (unsigned long long)l1_max);
	if (!h->rt_clusters || rt_bytes > QCOW2_MAX_RT_BYTES)
		return block_fail(why, whylen, -EINVAL,
					 "qcow2 refcount table of %u clusters is empty or larger than %llu bytes",
					 h->rt_clusters, (unsigned long long)QCOW2_MAX_RT_BYTES);
	ret = qcow2_header_table(h, file_size, h->rt_off, rt_bytes, "refcount table", why, whylen);
	if (!ret && h->l1_size)
		ret = qcow2_header_table(h, file_size, h->l1_off, l1_bytes, "L1 table", why, whylen);
	if (!ret && h->nb_snapshots)
		ret = qcow2_header_table(h, file_size, h->snapshots_off, 0, "snapshot table", why, whylen);
	if (ret)
		return ret;
	if (h->l1_size && h->l1_off < h->rt_off + rt_bytes && h->rt_off < h->l1_off + l1_bytes)
		return block_fail(why, whylen, -EINVAL,
					 "qcow2 L1 table and refcount table overlap");
	return 0;
}

int qcow2_header_parse(const uint8_t *buf, size_t len, uint64_t file_size,
		       struct qcow2_header *h, char *why, size_t whylen)
{
	struct qcow2_features f = { NULL, 0 };
	size_t end;
	int ret;

	if (len < QCOW2_V2_HEADER_LEN || !qcow2_header_probe(buf, len))
		return block_fail(why, whylen, -EINVAL, "not a qcow2 image (no QFI\\xfb header)");
	qcow2_header_fields(buf, h);
	if (h->version != 2 && h->version != 3)
		return block_fail(why, whylen, -ENOTSUP,
					 "qcow2 version %u is not supported (only 2 and 3)", h->version);
	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return block_fail(why, whylen, -EINVAL,
					 "qcow2 cluster_bits %u is out of range (%u to %u)",
					 h->cluster_bits, QCOW2_MIN_CLUSTER_BITS, QCOW2_MAX_CLUSTER_BITS);
	end = (size_t)1 << h->cluster_bits;
	if (len < end && len < file_size)
		return -EAGAIN;
	end = len < end ? len : end;
	ret = h->version == 3 ? qcow2_header_v3(buf, end, h, why, whylen) : 0;
	if (!ret)
		ret = qcow2_header_exts(buf, end, h, &f, why, whylen);
	if (!ret)
		ret = qcow2_header_incompat(buf, h, &f, why, whylen);
	if (!ret && h->crypt)
		ret = block_fail(why, whylen, -ENOTSUP,
					"encrypted qcow2 images (method %u) are not supported", h->crypt);
	if (!ret)
		ret = qcow2_header_backing(buf, end, h, why, whylen);
	return ret ? ret : qcow2_header_layout(h, file_size, why, whylen);
}
