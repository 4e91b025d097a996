/*
 * virtio-blk request parsing (see vblk_req.h). Pure code; called by the
 * IOThread that popped the chain. A header or status byte may straddle
 * descriptors, and descriptors may be empty: only byte counts matter.
 */
#include "dev/vblk_req.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* Copies between the start of iov[0..n) and buf, up to len bytes. */
static size_t vblk_iov_copy(const struct iovec *iov, unsigned n, void *buf, size_t len,
			    bool to_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t k = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;

		if (to_iov)
			memcpy(iov[i].iov_base, (uint8_t *)buf + done, k);
		else
			memcpy((uint8_t *)buf + done, iov[i].iov_base, k);
		done += k;
	}
	return done;
}

size_t vblk_iov_to_buf(const struct iovec *iov, unsigned n, void *dst, size_t len)
{
	return vblk_iov_copy(iov, n, dst, len, false);
}

size_t vblk_buf_to_iov(const struct iovec *iov, unsigned n, const void *src, size_t len)
{
	return vblk_iov_copy(iov, n, (void *)src, len, true);
}

/* Drops `len` bytes (no more than there are) from the front of
 * iov/gpa[0..*n), removing segments that become empty. */
static void vblk_trim_front(struct iovec **iov, uint64_t **gpa, unsigned *n, size_t len)
{
	while (len && *n) {
		size_t k = (*iov)->iov_len < len ? (*iov)->iov_len : len;
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + k;
		(*iov)->iov_len -= k;
		**gpa += k;
		len -= k;
		if (!(*iov)->iov_len) {
			(*iov)++;
			(*gpa)++;
			(*n)--;
		}
	}
}

static uint64_t vblk_iov_len(const struct iovec *iov, unsigned n)
{
	uint64_t len = 0;

	for (unsigned i = 0; i < n; i++)
		len += iov[i].iov_len;
	return len;
}

/* Takes the status byte off the end of the writable segments. */
static int vblk_take_status(struct virtq_elem *e, struct vblk_parsed *r)
{
	unsigned last;

	while (e->n_in && !e->iov[e->n_out + e->n_in - 1].iov_len)
		e->n_in--;
	if (!e->n_in)
		return -EINVAL;
	last = e->n_out + e->n_in - 1;
	e->iov[last].iov_len--;
	r->status = (uint8_t *)e->iov[last].iov_base + e->iov[last].iov_len;
	r->status_gpa = e->gpa[last] + e->iov[last].iov_len;
	if (!e->iov[last].iov_len)
		e->n_in--;
	return 0;
}

int vblk_req_parse(struct virtq_elem *e, struct vblk_parsed *r)
{
	struct { uint32_t type, ioprio; uint64_t sector; } __attribute__((packed)) hdr;
	struct iovec *out = e->iov;
	uint64_t *out_gpa = e->gpa;
	unsigned n_out = e->n_out;

	*r = (struct vblk_parsed){ 0 };
	if (vblk_take_status(e, r))
		return -EINVAL;
	if (vblk_iov_to_buf(out, n_out, &hdr, sizeof(hdr)) < sizeof(hdr))
		return -EBADMSG;
	vblk_trim_front(&out, &out_gpa, &n_out, sizeof(hdr));
	r->type = hdr.type;
	r->sector = hdr.sector;
	if (r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_GET_ID) {
		r->data = e->iov + e->n_out;
		r->data_gpa = e->gpa + e->n_out;
		r->n_data = e->n_in;
	} else {
		r->data = out;
		r->data_gpa = out_gpa;
		r->n_data = n_out;
	}
	r->data_len = vblk_iov_len(r->data, r->n_data);
	return 0;
}
