/*
 * A raw DEFLATE (RFC 1951) decoder for qcow2's compressed clusters, which
 * QEMU writes as zlib deflate streams without the zlib wrapper. Our own
 * because the static musl build cannot link Debian's glibc libz.a, and a
 * decoder is small: stored, fixed and dynamic Huffman blocks, checked
 * against hostile input. Pure and reentrant: any thread.
 */
#ifndef BLOCK_INFLATE_H
#define BLOCK_INFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Decodes the stream in src[0, srclen) into dst, stopping at the end of
 * the last block or once dstlen bytes are out, whichever comes first.
 * Returns the number of bytes written, or -EINVAL for a malformed stream
 * or one that needs bytes past srclen. Never reads or writes outside the
 * two buffers.
 */
ssize_t inflate_raw(const uint8_t *src, size_t srclen, uint8_t *dst, size_t dstlen);

#endif
