/*
 * qcow2 driver internals, shared by block/qcow2*.c only. The design, and
 * the thread/lock rule of every shared field, is in docs/qcow2.md; the
 * short form:
 *
 * - Immutable after open: geometry, the fd, the backing image, the path.
 * - Everything else that more than one request touches (the in-memory L1
 *   and refcount tables, the L2 and refcount-block caches, the allocation
 *   cursor, the in-flight lists, the pending frees, the writeback's
 *   bookkeeping) is guarded by qcow2.lock. The lock is never held across
 *   I/O or while waiting: a request that needs a table that is not in
 *   memory starts reading it on its own loop, queues itself on the table
 *   and returns; whoever completes the read wakes every waiter with a BH
 *   on the waiter's own loop, and the waiter runs its step again.
 * - A request (struct qcow2_op) belongs to the thread of its loop; other
 *   threads only touch its waiter link and wres, under the lock.
 * - Metadata is write-back: changes live in memory (dirty tables) until a
 *   FLUSH or close writes them in dependency order (qcow2_flush.c).
 */
#ifndef BLOCK_QCOW2_H
#define BLOCK_QCOW2_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/driver.h"
#include "core/mutex.h"

#define QCOW2_MAGIC 0x514649fbU		/* "QFI\xfb" */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_V2_HEADER_LEN 72U
#define QCOW2_V3_HEADER_LEN 104U
#define QCOW2_MAX_L1_BYTES (32 * MiB)	/* QEMU's limits, so images move both ways */
#define QCOW2_MAX_RT_BYTES (8 * MiB)
#define QCOW2_MAX_BACKING_NAME 1023U
#define QCOW2_MAX_CHAIN 16		/* images in a backing chain, top included */

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ULL << 4)
/* Autoclear bits are cleared by a writer that does not maintain them. */

/* L1 and L2 entries. */
#define QCOW2_COPIED (1ULL << 63)	/* refcount exactly 1: writable in place */
#define QCOW2_COMPRESSED (1ULL << 62)
#define QCOW2_ZERO 1ULL			/* v3: reads as zeros */
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ULL
#define QCOW2_L1_RESERVED 0x7f000000000001ffULL
#define QCOW2_L2_RESERVED 0x3f000000000001feULL
#define QCOW2_RT_RESERVED 0x1ffULL

/* A step that must wait returns this; it resumes later on its loop. */
#define QCOW2_WAIT 1

/* The header fields, in host byte order, and what the extensions say. */
struct qcow2_header {
	uint32_t version;
	uint64_t backing_off;
	uint32_t backing_len;
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t crypt;
	uint32_t l1_size;
	uint64_t l1_off;
	uint64_t rt_off;
	uint32_t rt_clusters;
	uint32_t nb_snapshots;
	uint64_t snapshots_off;
	uint64_t incompat, compat, autoclear;
	uint32_t refcount_order;
	uint32_t header_len;
	char backing[QCOW2_MAX_BACKING_NAME + 1];	/* "" when none */
	char backing_fmt[32];				/* "" when not given */
};

/*
 * Parses and checks the header in buf, the first len bytes of an image of
 * file_size bytes (len is the cluster size, or less only when the file is
 * shorter; the caller learns the cluster size from a first call with the
 * first 4 KiB, which returns -EAGAIN when it needs more). Checks every
 * field against the file's size, refuses what this driver does not
 * implement, and names an unknown incompatible feature from the feature
 * name table. Pure: no I/O, no state; fuzzed by tests/fuzz/fuzz_qcow2.c.
 * Returns 0, -EAGAIN, or -EINVAL/-ENOTSUP with one line in why.
 */
int qcow2_header_parse(const uint8_t *buf, size_t len, uint64_t file_size,
		       struct qcow2_header *h, char *why, size_t whylen);

/* Probe: does head start with the qcow2 magic and a known version. */
bool qcow2_header_probe(const uint8_t *head, size_t len);

static inline uint64_t qcow2_be64(const void *p)
{
	uint64_t v;

	__builtin_memcpy(&v, p, 8);
	return __builtin_bswap64(v);
}

static inline uint32_t qcow2_be32(const void *p)
{
	uint32_t v;

	__builtin_memcpy(&v, p, 4);
	return __builtin_bswap32(v);
}

static inline void qcow2_put_be64(void *p, uint64_t v)
{
	v = __builtin_bswap64(v);
	__builtin_memcpy(p, &v, 8);
}

static inline void qcow2_put_be32(void *p, uint32_t v)
{
	v = __builtin_bswap32(v);
	__builtin_memcpy(p, &v, 4);
}

struct qcow2;
struct qcow2_op;

/* ---- table cache (qcow2_cache.c) ---- */

enum qcow2_table_state {
	QCOW2_T_FREE,		/* unused slot, not hashed */
	QCOW2_T_LOADING,	/* a read is in flight into data */
	QCOW2_T_READY,
};

struct qcow2_cache;

/* One cached cluster-sized table (an L2 table or a refcount block), as on
 * disk (big-endian). Every field is under qcow2.lock; data is written by
 * the kernel only while LOADING, when nobody else reads it. */
struct qcow2_table {
	uint64_t off;			/* host offset, the key */
	uint8_t *data;
	enum qcow2_table_state state;
	bool dirty;			/* differs from disk */
	bool writing;			/* a writeback copy is on its way to disk */
	bool ref;			/* used since the CLOCK hand last passed */
	unsigned pins;			/* ops that will use it soon: not evicted */
	struct qcow2_op *waiters;	/* until the load completes */
	struct qcow2_table *hnext;	/* hash chain */
	struct qcow2 *q;
	struct qcow2_cache *cache;
	struct loop_io io;		/* the load; owner thread of the loader */
	struct iovec iov;
};

/* A cache of tables keyed by host offset. cap is a soft limit: tables
 * that are dirty, loading, being written or pinned are never evicted, and
 * the cache grows past cap rather than wait for one (it shrinks back at
 * the next writeback). Under qcow2.lock. */
struct qcow2_cache {
	struct qcow2_table **t;		/* n tables, room for alloc */
	unsigned n, alloc, cap;
	unsigned hand;			/* CLOCK hand, an index into t */
	unsigned bits;			/* cluster_bits */
	struct qcow2_table **hash;
	unsigned hmask;
	const char *what;		/* "L2 table", "refcount block" */
};

/* ---- the image ---- */

/* A host cluster whose reference is dropped once it is safe (see
 * qcow2_refcount.c): after the writeback numbered gen has made the L2 or
 * header change that unlinked it durable, and after every request that
 * started before the unlink (seq) has ended. */
struct qcow2_free {
	uint64_t cluster;
	uint64_t seq;
	uint64_t gen;
};

/* An allocation in flight: guest clusters [first, first + n) are being
 * given new host clusters, not yet in the L2 table. Others that want to
 * change those guest clusters wait on it. Under qcow2.lock. */
struct qcow2_alloc {
	uint64_t first, n;
	struct qcow2_op *waiters;
	struct qcow2_alloc *next;
};

struct qcow2_wb;

struct qcow2 {
	struct block blk;
	/* Immutable after open. */
	int fd;
	char *path;			/* for messages */
	struct block *backing;		/* NULL: none */
	uint64_t backing_size;
	unsigned version;
	unsigned cluster_bits;
	uint64_t cluster_size;
	unsigned l2_bits;		/* log2 of entries per L2 table */
	unsigned refcount_order;
	unsigned rb_bits;		/* log2 of entries per refcount block */
	uint64_t vsize;			/* virtual size from the header */
	uint32_t l1_needed;		/* L1 entries that cover vsize */
	unsigned hdr_len;		/* header bytes rewritten: [0, hdr_len) */

	struct mutex lock;
	/* Under lock. */
	uint64_t *l1;			/* host byte order */
	uint32_t l1_size;
	uint64_t l1_off;
	uint32_t l1_lo, l1_hi;		/* dirty entries [lo, hi) */
	bool l1_moved;			/* the header must point at a new L1 */
	uint64_t *rt;			/* refcount table, host byte order */
	uint64_t rt_size;		/* entries */
	uint64_t rt_off;
	uint32_t rt_clusters;
	uint64_t rt_lo, rt_hi;		/* dirty entries */
	bool rt_moved;
	struct qcow2_cache l2c, rbc;
	uint64_t host_clusters;		/* clusters of the file, grown by allocation */
	uint64_t alloc_next;		/* where the next search for free clusters
					 * starts: after the last allocation, or
					 * lower once clusters are released */
	struct qcow2_alloc *allocs;
	struct qcow2_op *active;	/* started requests, oldest first */
	struct qcow2_op *active_tail;
	uint64_t seq;			/* requests started */
	struct qcow2_free *frees;
	size_t nfrees, frees_cap;
	int broken;			/* sticky -errno: writes and flushes fail */
	uint64_t wb_snaps;		/* writeback snapshots taken */
	uint64_t wb_done;		/* the last one completely on disk */
	bool wb_running;
	struct qcow2_op *flush_waiters;	/* FLUSH requests, each until wb_done
					 * reaches its flush_gen */
	uint8_t *hdr;			/* the first hdr_len bytes as on disk */

	struct qcow2_wb *wb;		/* the writeback engine (qcow2_flush.c):
					 * owned by the loop it runs on */
	bool logged;			/* one corruption message per image; atomic */
};

/* ---- the table cache (qcow2_cache.c) ---- */

int qcow2_cache_init(struct qcow2_cache *c, unsigned cap, unsigned cluster_bits,
		     const char *what);
void qcow2_cache_destroy(struct qcow2_cache *c);

/*
 * The table at host offset off, READY, in *out: returns 0. On a miss,
 * starts loading it on op's loop (or joins a load in flight), queues op
 * to run resume once it is in, pins it for op, and returns QCOW2_WAIT.
 * -errno when nothing can be done (no memory, the read cannot start).
 */
int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t off, struct qcow2_op *op,
		    void (*resume)(struct qcow2_op *op), struct qcow2_table **out) REQUIRES(&q->lock);
/* The table at off if it is READY, else NULL; loads nothing, waits for
 * nothing (for callers that made it resident earlier under the lock). */
struct qcow2_table *qcow2_cache_ready(struct qcow2_cache *c, uint64_t off);
/* A zeroed, dirty table for a newly allocated cluster at off. */
int qcow2_cache_new(struct qcow2 *q, struct qcow2_cache *c, uint64_t off,
		    struct qcow2_table **out) REQUIRES(&q->lock);
/* Frees idle tables while the cache is over its limit. */
void qcow2_cache_shrink(struct qcow2 *q, struct qcow2_cache *c) REQUIRES(&q->lock);

static inline struct qcow2 *qcow2_of(struct block *b)
{
	return container_of(b, struct qcow2, blk);
}

/* Logs once per image that its metadata is corrupt (what, at host offset
 * off) and returns -EIO. Any thread. */
int qcow2_corrupt(struct qcow2 *q, const char *what, uint64_t off);

/* ---- requests (qcow2.c) ---- */

enum qcow2_op_kind { QCOW2_OP_READ, QCOW2_OP_WRITE, QCOW2_OP_ZERO, QCOW2_OP_FLUSH };

/* What a guest range maps to. */
enum qcow2_kind {
	QCOW2_UNALLOC,		/* backing file or zeros */
	QCOW2_ZEROES,		/* v3 zero cluster */
	QCOW2_DATA,		/* host clusters */
	QCOW2_CDATA,		/* one compressed cluster */
};

struct qcow2_map {
	enum qcow2_kind kind;
	uint64_t host;		/* DATA: host offset of the guest offset; CDATA: stream start */
	uint64_t clen;		/* CDATA: stream bytes */
	bool copied;		/* DATA: writable in place */
	uint64_t len;		/* guest bytes from the offset with this mapping */
};

/*
 * One request in progress: a guest read, write or zeroing, a FLUSH, or an
 * internal one (a COW read, a partial-cluster zero write), allocated at
 * submission and freed when done. Owned by the thread of loop; only the
 * waiter fields are touched by others, under qcow2.lock.
 */
struct qcow2_op {
	struct qcow2 *q;
	struct loop *loop;
	enum qcow2_op_kind kind;
	struct block_req *req;		/* the caller's; NULL for internal ops */
	struct qcow2_op *parent;	/* internal ops: resumed with the result */
	enum block_zero_mode zmode;	/* QCOW2_OP_ZERO */
	uint64_t start, pos, end;	/* guest range and progress */
	struct iovec *iov;		/* data: the caller's or a buffer */
	unsigned niov;
	struct iovec one;		/* internal ops' buffer */
	bool in_submit;			/* inside the submitting call */
	int submit_err;			/* the end's NOP could not be queued */
	bool active;			/* in q->active, under q->lock */
	uint64_t seq;			/* under q->lock */
	uint64_t flush_gen;		/* FLUSH: the writeback it waits for */
	struct qcow2_op *anext, *aprev;	/* q->active links, under q->lock */

	void (*step)(struct qcow2_op *op);	/* goes on from op->pos */

	/* waiting */
	void (*resume)(struct qcow2_op *op);
	struct loop_bh bh;
	struct qcow2_op *wnext;		/* in a waiter list, under q->lock */
	int wres;			/* the waker's result, under q->lock */
	struct qcow2_table *pins[4];	/* tables pinned for the next step */
	unsigned npins;
	uint64_t scan_from;		/* a search for free clusters that waited
					 * goes on from here (0: none) */

	/* the current run */
	struct qcow2_map map;
	struct iovec *vec;		/* slice of iov, plus COW buffers: */
	unsigned nvec, vec_cap;		/* vec_inline, or allocated if larger */
	struct iovec vec_inline[8];
	struct loop_io io;
	uint64_t io_off;		/* next host offset of a transfer */
	uint64_t io_left;
	bool io_write;
	void (*io_done)(struct qcow2_op *op, int res);
	struct block_req sub;		/* a backing read */
	uint8_t *cbuf, *ubuf;		/* compressed stream, inflated cluster */
	size_t cbuf_len;
	struct iovec civ;		/* the compressed stream's read */

	/* an allocating write's run */
	struct qcow2_alloc alloc;
	struct qcow2_table *alloc_l2;	/* pinned until published */
	uint64_t alloc_host;
	uint64_t head, tail;		/* COW bytes before and after the data */
	bool head_zero, tail_zero;	/* they read as zeros: nothing to read */
	bool fresh;			/* the new clusters lie past everything ever
					 * written: zeros need no writing either */
	uint8_t *cow;			/* the head, then the tail, that are read */
	size_t cow_len;
};

/* Under lock: registers op among the started requests (once), which
 * holds back the reuse of clusters it may still be reading or writing. */
void qcow2_activate(struct qcow2 *q, struct qcow2_op *op) REQUIRES(&q->lock);
void qcow2_deactivate(struct qcow2 *q, struct qcow2_op *op) REQUIRES(&q->lock);
/* The BH callback of every op: runs op->resume. */
void qcow2_op_bh(struct loop_bh *bh);
/*
 * Waiting, all under op->q->lock (not annotated: the analysis cannot see
 * that callers' q is op->q). qcow2_wait queues op on *list to run resume
 * after a wake; qcow2_wake_all wakes every op of *list with res, each with
 * a BH on its own loop; qcow2_pin pins t for op's next step (a wait on
 * it) and qcow2_unpin_all drops op's pins.
 */
void qcow2_wait(struct qcow2_op *op, struct qcow2_op **list, void (*resume)(struct qcow2_op *op));
void qcow2_wake_all(struct qcow2_op **list, int res);
void qcow2_pin(struct qcow2_op *op, struct qcow2_table *t);
void qcow2_unpin_all(struct qcow2_op *op);

/* Ends op with res: calls the caller's done (never inside the submitting
 * call), or resumes the parent. Frees op. Owner thread, no lock. */
void qcow2_op_end(struct qcow2_op *op, int res);
/* An internal op of kind (read, write, flush) on parent's loop over
 * [off, off + len) with one buffer; its end resumes parent (resume, with
 * its result in parent->wres). 0 or -errno. */
int qcow2_op_child(struct qcow2_op *parent, enum qcow2_op_kind kind, uint64_t off, uint64_t len,
		   void *buf, void (*resume)(struct qcow2_op *op));
/* The current run (op->map.len bytes from op->pos) is done: res 0 moves
 * op->pos past it and goes on with op->step; else op ends with res. */
void qcow2_op_advance(struct qcow2_op *op, int res);
/* Transfers the current run between op's data and host offset
 * op->map.host, then qcow2_op_advance. QCOW2_WAIT or -errno. */
int qcow2_op_run(struct qcow2_op *op, bool write);
/* Fills op->vec with the part [off, off + len) of op's data (guest
 * offsets), after nhead leading entries already set. 0 or -ENOMEM. */
int qcow2_op_slice(struct qcow2_op *op, unsigned nhead, uint64_t off, uint64_t len);
/* Transfers op->vec (nvec entries, len bytes) at host offset off, going
 * on after short transfers; done(op, 0 or -errno) runs on completion.
 * Returns 0 or -errno (done will not run). Owner thread. */
int qcow2_op_io(struct qcow2_op *op, bool write, uint64_t off, uint64_t len,
		void (*done)(struct qcow2_op *op, int res));

/* ---- lookups (qcow2_read.c) ---- */

/*
 * The mapping of guest offset pos, for at most max bytes, in *m (the run
 * stops at the L2 table's end and where the mapping changes). QCOW2_WAIT
 * when the L2 table must be loaded (op resumes with resume). 0 or -EIO.
 */
int qcow2_read_map(struct qcow2 *q, struct qcow2_op *op, uint64_t pos, uint64_t max,
		   void (*resume)(struct qcow2_op *op), struct qcow2_map *m) REQUIRES(&q->lock);
/* Decodes L2 entry e of the cluster at guest offset pos. 0 or -EIO. */
int qcow2_read_entry(struct qcow2 *q, uint64_t e, struct qcow2_map *m) REQUIRES(&q->lock);
/* Starts a read op: runs it until it waits or ends. */
void qcow2_read_start(struct qcow2_op *op);

/* ---- refcounts and allocation (qcow2_refcount.c) ---- */

/* Allocates n contiguous free host clusters (n at most half a refcount
 * block's reach), counted in memory; the first one's offset in *host.
 * QCOW2_WAIT when a refcount block must be loaded first (what changed by
 * then is consistent on its own). 0 or -errno. */
int qcow2_refcount_alloc(struct qcow2 *q, struct qcow2_op *op, uint64_t n,
			 void (*resume)(struct qcow2_op *op), uint64_t *host) REQUIRES(&q->lock);
/* Queues the host clusters mapping m references (data, a preallocated
 * zero cluster, a compressed stream) for release. 0 or -ENOMEM. */
int qcow2_refcount_release(struct qcow2 *q, const struct qcow2_map *m) REQUIRES(&q->lock);
/* Queues n host clusters from host for release. 0 or -ENOMEM. */
int qcow2_refcount_release_range(struct qcow2 *q, uint64_t host, uint64_t n) REQUIRES(&q->lock);
/* Drops the references of the queued releases that are safe now (their
 * unlink is durable and no request that started before it is left);
 * QCOW2_WAIT while a refcount block loads. 0 or -errno. */
int qcow2_refcount_apply(struct qcow2 *q, struct qcow2_op *op,
			 void (*resume)(struct qcow2_op *op)) REQUIRES(&q->lock);

/* ---- writes (qcow2_write.c) ---- */

void qcow2_write_start(struct qcow2_op *op);
void qcow2_write_zero_start(struct qcow2_op *op);

/* ---- writeback (qcow2_flush.c) ---- */

int qcow2_flush_init(struct qcow2 *q);
void qcow2_flush_destroy(struct qcow2 *q);
/* Starts a FLUSH op: ends once a writeback begun after it has. */
void qcow2_flush_start(struct qcow2_op *op);
/* At close: writes every dirty table and drops pending frees, on a loop
 * of its own. Main thread, no request in flight. 0 or -errno. */
int qcow2_flush_close(struct qcow2 *q);

#endif
