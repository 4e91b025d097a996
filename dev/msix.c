/*
 * MSI-X (PCI Local Bus 3.0, section 6.8.2; see msix.h). Model: a vector's
 * effective mask is one atomic flag that msix_notify reads without a lock;
 * everything else (the table, the platform connection) changes only under
 * the function's pci_dev lock, on the vCPU thread doing the access.
 *
 * A vector is "open" when MSI-X is enabled, neither the function nor the
 * vector is masked, and it has a message (a non-zero address). Only an
 * open vector has masked == false. Its eventfd is then connected to the
 * platform (irqfd_set) with the current message; masking keeps that
 * connection, so toggling a mask costs no route rewrite, and disabling
 * MSI-X or a reset drops it (freeing the GSI).
 *
 * No interrupt is lost between msix_notify on an IOThread and an unmask on
 * a vCPU (store buffering): notify stores pending then loads masked; the
 * unmask stores masked = false then exchanges pending. Both are seq_cst, so
 * at least one side sees the other's store, and the exchange hands the
 * pending event to exactly one of them. A notify that raced with a mask
 * may still signal once after it: a spurious interrupt, never a lost one.
 */
#include "dev/msix.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/util.h"

#define MSIX_CAP_ID 0x11
#define MSIX_CTRL 2			/* message control, from the capability start */
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_FMASK 0x4000
#define MSIX_ENTRY_SIZE 16
#define MSIX_ADDR_LO 0			/* dwords of a table entry */
#define MSIX_ADDR_HI 1
#define MSIX_DATA 2
#define MSIX_VCTRL 3
#define MSIX_VCTRL_MASKED 1u

static uint32_t msix_pba_size(unsigned n)
{
	return (n + 63) / 64 * 8;
}

uint64_t msix_bar_size(unsigned n)
{
	return (uint64_t)n * MSIX_ENTRY_SIZE + msix_pba_size(n);
}

static uint16_t msix_ctrl(const struct msix *m)
{
	const uint8_t *c = &m->pci->cfg[m->cap + MSIX_CTRL];

	return (uint16_t)(c[0] | c[1] << 8);
}

static struct pci_msi_msg msix_vector_msg(const struct msix_vector *v)
{
	return (struct pci_msi_msg){
		.addr = (uint64_t)v->table[MSIX_ADDR_HI] << 32 | v->table[MSIX_ADDR_LO],
		.data = v->table[MSIX_DATA],
	};
}

static bool msix_vector_open(const struct msix_vector *v, uint16_t ctrl)
{
	return (ctrl & MSIX_CTRL_ENABLE) && !(ctrl & MSIX_CTRL_FMASK) &&
	       !(v->table[MSIX_VCTRL] & MSIX_VCTRL_MASKED) && msix_vector_msg(v).addr;
}

/* EAGAIN: the counter is about to overflow, so an interrupt is coming
 * anyway. */
static void msix_signal(const struct msix_vector *v)
{
	const uint64_t one = 1;

	if (write(v->fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_msg("MSI-X: writing eventfd %d: %s", v->fd, strerror(errno));
}

/* Doubling gaps between messages: a guest that keeps failing cannot flood
 * the log. */
static void msix_log_failure(struct msix *m, unsigned vi, int err)
{
	m->errors++;
	if (!(m->errors & (m->errors - 1)))
		log_msg("%s: MSI-X vector %u: cannot route its interrupt: %s (%u failures)",
			m->pci->name, vi, strerror(-err), m->errors);
}

/* Makes the platform deliver v's current message; no call if it already
 * does. */
static int msix_vector_connect(struct msix *m, struct msix_vector *v)
{
	struct pci_platform *p = m->pci->platform;
	struct pci_msi_msg msg = msix_vector_msg(v);
	int ret;

	if (v->connected && v->msg.addr == msg.addr && v->msg.data == msg.data)
		return 0;
	ret = p->ops->irqfd_set(p, v->fd, &msg, &v->handle);
	if (ret)
		return ret;
	v->msg = msg;
	v->connected = true;
	return 0;
}

/* masked is stored first, so no notify writes the eventfd once it is
 * disconnected: later events wait in the pending bit. */
static void msix_vector_close(struct msix *m, struct msix_vector *v)
{
	struct pci_platform *p = m->pci->platform;

	atomic_store(&v->masked, true);
	if (!v->connected)
		return;
	p->ops->irqfd_set(p, v->fd, NULL, &v->handle);
	v->connected = false;
}

/* The eventfd is connected before masked is cleared, so every signal
 * after it reaches the guest. seq_cst store, then seq_cst exchange: pairs
 * with the pending store and masked load in msix_notify (see the top). */
static void msix_vector_unmask(struct msix_vector *v)
{
	atomic_store(&v->masked, false);
	if (atomic_exchange(&v->pending, false))
		msix_signal(v);
}

/* Brings v's connection and effective mask in line with the capability
 * and its table entry, after either changed. */
static void msix_vector_update(struct msix *m, struct msix_vector *v)
{
	uint16_t ctrl = msix_ctrl(m);
	int ret;

	if (!(ctrl & MSIX_CTRL_ENABLE)) {
		msix_vector_close(m, v);
		return;
	}
	if (!msix_vector_open(v, ctrl)) {
		atomic_store(&v->masked, true);
		return;
	}
	ret = msix_vector_connect(m, v);
	if (ret) {
		atomic_store(&v->masked, true);
		msix_log_failure(m, (unsigned)(v - m->vec), ret);
		return;
	}
	msix_vector_unmask(v);
}

static void msix_vector_reset(struct msix_vector *v)
{
	memset(v->table, 0, sizeof(v->table));
	v->table[MSIX_VCTRL] = MSIX_VCTRL_MASKED;
	atomic_store(&v->masked, true);
	atomic_store(&v->pending, false);
}

static int msix_add_cap(struct msix *m)
{
	uint16_t ctrl = (uint16_t)(m->n - 1);
	uint32_t table = m->table_off | m->bar, pba = m->pba_off | m->bar;
	uint8_t body[10];
	int cap;

	/* x86 is little-endian, like PCI. */
	memcpy(&body[0], &ctrl, 2);
	memcpy(&body[2], &table, 4);
	memcpy(&body[6], &pba, 4);
	cap = pci_cap_add(m->pci, MSIX_CAP_ID, body, sizeof(body));
	if (cap < 0)
		return cap;
	m->cap = (unsigned)cap;
	m->pci->wmask[m->cap + MSIX_CTRL + 1] = (MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK) >> 8;
	return 0;
}

static void msix_close_fds(struct msix *m, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		close(m->vec[i].fd);
	free(m->vec);
	m->vec = NULL;
}

int msix_init(struct msix *m, struct pci_dev *d, unsigned n, unsigned bar, uint32_t table_off)
{
	unsigned i;
	int ret;

	if (!n || n > MSIX_MAX_VECTORS || bar >= PCI_MAX_BARS || table_off % 8 ||
	    table_off + msix_bar_size(n) > UINT32_MAX)
		return -EINVAL;
	*m = (struct msix){
		.pci = d, .n = n, .bar = bar, .table_off = table_off,
		.pba_off = table_off + n * MSIX_ENTRY_SIZE,
		.vec = calloc(n, sizeof(*m->vec)),
	};
	if (!m->vec)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		m->vec[i].fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (m->vec[i].fd < 0) {
			ret = -errno;
			goto err;
		}
		msix_vector_reset(&m->vec[i]);
	}
	ret = msix_add_cap(m);
	if (ret)
		goto err;
	return 0;
err:
	msix_close_fds(m, i);
	return ret;
}

void msix_destroy(struct msix *m)
{
	for (unsigned i = 0; i < m->n; i++)
		msix_vector_close(m, &m->vec[i]);
	msix_close_fds(m, m->n);
}

/* A table or PBA access the device answers: 4 or 8 bytes, naturally
 * aligned, inside the table and PBA. */
static bool msix_access_ok(const struct msix *m, uint64_t off, unsigned len)
{
	return (len == 4 || len == 8) && off % len == 0 && off < msix_bar_size(m->n);
}

/* Pending bits of vectors 64 * q .. 64 * q + 63. */
static uint64_t msix_pba_qword(const struct msix *m, uint64_t q)
{
	uint64_t bits = 0;

	for (unsigned i = 0; i < 64 && q * 64 + i < m->n; i++)
		if (atomic_load_explicit(&m->vec[q * 64 + i].pending, memory_order_relaxed))
			bits |= 1ULL << i;
	return bits;
}

void msix_table_read(struct msix *m, uint64_t off, void *data, unsigned len)
{
	const uint64_t table_size = (uint64_t)m->n * MSIX_ENTRY_SIZE;
	uint32_t w[2] = { 0, 0 };

	memset(data, 0, len);
	if (!msix_access_ok(m, off, len))
		return;
	if (off < table_size) {
		const struct msix_vector *v = &m->vec[off / MSIX_ENTRY_SIZE];

		for (unsigned k = 0; k < len / 4; k++)
			w[k] = v->table[off % MSIX_ENTRY_SIZE / 4 + k];
	} else {
		uint64_t bits = msix_pba_qword(m, (off - table_size) / 8) >> (off % 8 * 8);

		w[0] = (uint32_t)bits;
		w[1] = (uint32_t)(bits >> 32);
	}
	memcpy(data, w, len);
}

/* Stores dword i of v's entry as the guest may set it; true if it changed.
 * The address is dword aligned and only the mask bit of vector control is
 * implemented, so the other bits read as zero. */
static bool msix_entry_store(struct msix_vector *v, unsigned i, uint32_t val)
{
	uint32_t old = v->table[i];

	if (i == MSIX_ADDR_LO)
		val &= ~3u;
	else if (i == MSIX_VCTRL)
		val &= MSIX_VCTRL_MASKED;
	v->table[i] = val;
	return val != old;
}

void msix_table_write(struct msix *m, uint64_t off, const void *data, unsigned len)
{
	struct msix_vector *v;
	uint32_t w[2];
	bool changed = false;

	/* The PBA is read-only. */
	if (!msix_access_ok(m, off, len) || off >= (uint64_t)m->n * MSIX_ENTRY_SIZE)
		return;
	memcpy(w, data, len);
	v = &m->vec[off / MSIX_ENTRY_SIZE];
	for (unsigned k = 0; k < len / 4; k++)
		changed |= msix_entry_store(v, off % MSIX_ENTRY_SIZE / 4 + k, w[k]);
	if (changed)
		msix_vector_update(m, v);
}

void msix_config_written(struct msix *m, unsigned off, unsigned len)
{
	const unsigned ctrl = m->cap + MSIX_CTRL;

	if (off >= ctrl + 2 || off + len <= ctrl)
		return;
	for (unsigned i = 0; i < m->n; i++)
		msix_vector_update(m, &m->vec[i]);
}

/* seq_cst store then seq_cst load: pairs with the masked store and pending
 * exchange in msix_vector_unmask (see the top of the file). */
void msix_notify(struct msix *m, unsigned vi)
{
	struct msix_vector *v;

	if (vi >= m->n)
		return;
	v = &m->vec[vi];
	if (!atomic_load(&v->masked)) {
		msix_signal(v);
		return;
	}
	atomic_store(&v->pending, true);
	if (!atomic_load(&v->masked) && atomic_exchange(&v->pending, false))
		msix_signal(v);
}

void msix_reset(struct msix *m)
{
	m->pci->cfg[m->cap + MSIX_CTRL + 1] &= (uint8_t)~((MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK) >> 8);
	for (unsigned i = 0; i < m->n; i++) {
		msix_vector_close(m, &m->vec[i]);
		msix_vector_reset(&m->vec[i]);
	}
}
