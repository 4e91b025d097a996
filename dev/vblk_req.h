/*
 * virtio-blk request parsing (virtio 1.x 5.2.6): splits a popped chain into
 * header, data segments and status byte. Pure code on the chain's iovecs;
 * the chain's contents are guest-controlled, so every length is checked.
 */
#ifndef DEV_VBLK_REQ_H
#define DEV_VBLK_REQ_H

#include <stdint.h>
#include <sys/uio.h>

#include "dev/virtq.h"

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VBLK_HDR_SIZE 16
#define VBLK_SECTOR 512ULL

/* A discard or write-zeroes range as the driver lays it out. */
struct vblk_range {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;			/* bit 0: unmap */
} __attribute__((packed));

#define VBLK_RANGE_UNMAP 1u

struct vblk_parsed {
	uint32_t type;
	uint64_t sector;
	/* The payload: device-readable segments for OUT, DISCARD and
	 * WRITE_ZEROES, device-writable ones for IN and GET_ID. Points into
	 * the element's arrays. */
	struct iovec *data;
	uint64_t *data_gpa;
	unsigned n_data;
	uint64_t data_len;
	uint8_t *status;		/* host address of the status byte */
	uint64_t status_gpa;
};

/*
 * Parses e, trimming its arrays in place. Returns 0; -EBADMSG when the
 * header is shorter than 16 bytes (the request can still be answered with
 * IOERR through r->status); -EINVAL when there is no device-writable status
 * byte at the end (nothing can be answered: the driver broke the protocol).
 */
int vblk_req_parse(struct virtq_elem *e, struct vblk_parsed *r);

/* Copies up to len bytes from the start of iov[0..n) into dst; returns the
 * count copied. */
size_t vblk_iov_to_buf(const struct iovec *iov, unsigned n, void *dst, size_t len);
/* Copies up to len bytes of src into iov[0..n); returns the count copied. */
size_t vblk_buf_to_iov(const struct iovec *iov, unsigned n, const void *src, size_t len);

#endif
