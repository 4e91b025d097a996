/*
 * Raw DEFLATE decoder (RFC 1951; see inflate.h). Bits are taken least
 * significant first from a 64-bit reservoir; Huffman codes are decoded
 * canonically, one bit at a time, from per-length counts (codes of one
 * length are consecutive integers, in symbol order). A compressed qcow2
 * cluster is at most 2 MiB, so this simple form is fast enough and easy
 * to check. No state outside the call: any thread.
 */
#include "block/inflate.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define INFLATE_MAX_BITS 15
#define INFLATE_LITLEN 288		/* literal/length symbols */
#define INFLATE_DIST 30
#define INFLATE_CLEN 19			/* code length code symbols */
#define INFLATE_END_BLOCK 256

struct inflate_in {
	const uint8_t *src;
	size_t len, pos;
	uint64_t res;			/* reservoir, next bit lowest */
	unsigned n;			/* bits in res */
	bool over;			/* ran past the input */
};

struct inflate_out {
	uint8_t *dst;
	size_t len, pos;
};

/* A canonical Huffman code: how many codes of each length, the first code
 * of each length, where its symbols start in sym, and the symbols. */
struct inflate_huff {
	unsigned count[INFLATE_MAX_BITS + 1];
	unsigned first[INFLATE_MAX_BITS + 1];
	unsigned start[INFLATE_MAX_BITS + 1];
	uint16_t sym[INFLATE_LITLEN];
};

static const uint16_t inflate_len_base[29] = {
	3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
	35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
};
static const uint8_t inflate_len_extra[29] = {
	0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
};
static const uint16_t inflate_dist_base[INFLATE_DIST] = {
	1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769,
	1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
};
static const uint8_t inflate_dist_extra[INFLATE_DIST] = {
	0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
};
/* The order code length code lengths are sent in. */
static const uint8_t inflate_clen_order[INFLATE_CLEN] = {
	16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
};

/* The next n (<= 16) bits; 0 with `over` set past the input. */
static unsigned inflate_bits(struct inflate_in *in, unsigned n)
{
	unsigned v;

	while (in->n < n) {
		if (in->pos == in->len) {
			in->over = true;
			return 0;
		}
		in->res |= (uint64_t)in->src[in->pos++] << in->n;
		in->n += 8;
	}
	v = (unsigned)(in->res & ((1U << n) - 1));
	in->res >>= n;
	in->n -= n;
	return v;
}

/* Builds h from n code lengths (each <= 15); refuses an over-full code.
 * An incomplete one is allowed: decoding fails if it meets a gap. */
static int inflate_build(struct inflate_huff *h, const uint8_t *lens, unsigned n)
{
	unsigned next[INFLATE_MAX_BITS + 1], len, i, code = 0, at = 0;
	int room = 1;

	memset(h->count, 0, sizeof(h->count));
	for (i = 0; i < n; i++)
		h->count[lens[i]]++;
	h->count[0] = 0;
	for (len = 1; len <= INFLATE_MAX_BITS; len++) {
		room = room * 2 - (int)h->count[len];
		if (room < 0)
			return -EINVAL;
		h->first[len] = code;
		h->start[len] = next[len] = at;
		at += h->count[len];
		code = (code + h->count[len]) << 1;
	}
	for (i = 0; i < n; i++) {
		if (lens[i])
			h->sym[next[lens[i]]++] = (uint16_t)i;
	}
	return 0;
}

/* The next symbol of code h, or -EINVAL. */
static int inflate_decode(struct inflate_in *in, const struct inflate_huff *h)
{
	unsigned code = 0, len;

	for (len = 1; len <= INFLATE_MAX_BITS; len++) {
		code |= inflate_bits(in, 1);
		if (in->over)
			return -EINVAL;
		if (code - h->first[len] < h->count[len])
			return h->sym[h->start[len] + code - h->first[len]];
		code <<= 1;
	}
	return -EINVAL;
}

/* A length/distance pair whose length symbol is sym (257..285). */
static int inflate_copy(struct inflate_in *in, struct inflate_out *out, unsigned sym,
			const struct inflate_huff *dist)
{
	unsigned len, d;
	int dsym;

	if (sym - 257 >= 29)
		return -EINVAL;
	len = inflate_len_base[sym - 257] + inflate_bits(in, inflate_len_extra[sym - 257]);
	dsym = inflate_decode(in, dist);
	if (dsym < 0 || dsym >= INFLATE_DIST)
		return -EINVAL;
	d = inflate_dist_base[dsym] + inflate_bits(in, inflate_dist_extra[dsym]);
	if (in->over || d > out->pos)
		return -EINVAL;
	for (; len && out->pos < out->len; len--, out->pos++)
		out->dst[out->pos] = out->dst[out->pos - d];
	return 0;
}

/* The symbols of one Huffman block, up to its end or a full output. */
static int inflate_codes(struct inflate_in *in, struct inflate_out *out,
			 const struct inflate_huff *litlen, const struct inflate_huff *dist)
{
	while (out->pos < out->len) {
		int sym = inflate_decode(in, litlen), ret;

		if (sym < 0)
			return sym;
		if (sym < INFLATE_END_BLOCK) {
			out->dst[out->pos++] = (uint8_t)sym;
			continue;
		}
		if (sym == INFLATE_END_BLOCK)
			return 0;
		ret = inflate_copy(in, out, (unsigned)sym, dist);
		if (ret)
			return ret;
	}
	return 0;
}

static int inflate_stored(struct inflate_in *in, struct inflate_out *out)
{
	unsigned len, nlen;
	size_t take;

	inflate_bits(in, in->n % 8);
	len = inflate_bits(in, 16);
	nlen = inflate_bits(in, 16);
	if (in->over || len != (~nlen & 0xffff))
		return -EINVAL;
	for (; len && in->n && out->pos < out->len; len--)
		out->dst[out->pos++] = (uint8_t)inflate_bits(in, 8);
	take = len < out->len - out->pos ? len : out->len - out->pos;
	if (take > in->len - in->pos)
		return -EINVAL;
	memcpy(out->dst + out->pos, in->src + in->pos, take);
	out->pos += take;
	in->pos += take;
	return 0;
}

static int inflate_fixed(struct inflate_in *in, struct inflate_out *out)
{
	struct inflate_huff litlen, dist;
	uint8_t lens[INFLATE_LITLEN];

	memset(lens, 8, 144);
	memset(lens + 144, 9, 112);
	memset(lens + 256, 7, 24);
	memset(lens + 280, 8, 8);
	inflate_build(&litlen, lens, INFLATE_LITLEN);
	memset(lens, 5, INFLATE_DIST);
	inflate_build(&dist, lens, INFLATE_DIST);
	return inflate_codes(in, out, &litlen, &dist);
}

/* The literal/length and distance code lengths of a dynamic block, sent
 * with the code length code clen: n lengths into lens. */
static int inflate_lengths(struct inflate_in *in, const struct inflate_huff *clen, uint8_t *lens,
			   unsigned n)
{
	unsigned i = 0, rep;
	uint8_t fill;

	while (i < n) {
		int sym = inflate_decode(in, clen);

		if (sym < 0)
			return sym;
		if (sym < 16) {
			lens[i++] = (uint8_t)sym;
			continue;
		}
		if (sym == 16 && !i)
			return -EINVAL;
		fill = sym == 16 ? lens[i - 1] : 0;
		rep = sym == 16 ? 3 + inflate_bits(in, 2) :
		      sym == 17 ? 3 + inflate_bits(in, 3) : 11 + inflate_bits(in, 7);
		if (in->over || rep > n - i)
			return -EINVAL;
		memset(lens + i, fill, rep);
		i += rep;
	}
	return 0;
}

static int inflate_dynamic(struct inflate_in *in, struct inflate_out *out)
{
	unsigned nlit = inflate_bits(in, 5) + 257, ndist = inflate_bits(in, 5) + 1;
	unsigned nclen = inflate_bits(in, 4) + 4, i;
	uint8_t lens[INFLATE_LITLEN + INFLATE_DIST] = { 0 };
	struct inflate_huff clen, litlen, dist;
	int ret;

	if (in->over || nlit > 286 || ndist > INFLATE_DIST)
		return -EINVAL;
	for (i = 0; i < nclen; i++)
		lens[inflate_clen_order[i]] = (uint8_t)inflate_bits(in, 3);
	if (in->over || inflate_build(&clen, lens, INFLATE_CLEN))
		return -EINVAL;
	memset(lens, 0, INFLATE_CLEN);
	ret = inflate_lengths(in, &clen, lens, nlit + ndist);
	if (ret)
		return ret;
	if (!lens[INFLATE_END_BLOCK] || inflate_build(&litlen, lens, nlit) ||
	    inflate_build(&dist, lens + nlit, ndist))
		return -EINVAL;
	return inflate_codes(in, out, &litlen, &dist);
}

ssize_t inflate_raw(const uint8_t *src, size_t srclen, uint8_t *dst, size_t dstlen)
{
	struct inflate_in in = { .src = src, .len = srclen };
	struct inflate_out out = { .dst = dst, .len = dstlen };
	unsigned last, type;
	int ret;

	do {
		last = inflate_bits(&in, 1);
		type = inflate_bits(&in, 2);
		if (in.over || type == 3)
			return -EINVAL;
		ret = type == 0 ? inflate_stored(&in, &out) :
		      type == 1 ? inflate_fixed(&in, &out) : inflate_dynamic(&in, &out);
		if (ret)
			return ret;
	} while (!last && out.pos < out.len);
	return (ssize_t)out.pos;
}
