// SPDX-License-Identifier: MIT
/*
 * Every ioctl, read, poll and mmap of /dev/regwatch with random and
 * boundary arguments.
 *
 * Shared monitors (NSHARED slots) are used by every thread at once:
 * opened with random flags, configured with random sizes (or never),
 * watched with random ranges through good and garbage pointers, unwatched
 * with remembered, guessed (from the state words: the current and the
 * next generation of a slot) and random ids, drained through the ring and
 * read(2) with random sizes and buffers, fed random consumer heads. What
 * must hold whatever the interleaving:
 *   - every errno that the arguments alone decide is the documented one;
 *   - every watch is removed exactly once: at close, the monitor's live
 *     count equals the watches made minus those removed (by anyone);
 *   - headers never change, the producer never goes back, events are
 *     well formed, STATS agrees with the header.
 * Exact per-call results (ENOSPC / ENOBUFS at the limits, RESYNC on
 * overflow, read(2) sizes, eventfd counts) are the guest tests' job
 * (test_limits, test_notify, test_badinput); this file looks for what
 * breaks under random arguments and interleavings.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

enum { NSHARED = 6, NIDS = 32 };

#define ES		sizeof(struct regwatch_event)
#define CFG_MIN		64	/* offsetofend(struct regwatch_config, consumer_size) */
#define STATS_MIN	16	/* offsetofend(struct regwatch_stats, watches) */

struct shmon {
	pthread_rwlock_t life;		/* write: open, close, CONFIG, map */
	pthread_mutex_t consume;	/* one consumer at a time */
	pthread_mutex_t idlock;
	int fd;
	int acc;			/* O_RDWR, O_RDONLY or O_WRONLY */
	bool configured;
	struct regwatch_config cfg;
	const struct regwatch_shared_header *hdr;	/* may be NULL */
	struct regwatch_consumer *cons;			/* may be NULL */
	uint64_t ids[NIDS];
	int nids;
	atomic_ullong made, removed, transient, last_prod;
};

static struct shmon SH[NSHARED];
static struct {
	long long max_ring, max_watches_limit, def_ring, def_watches;
	atomic_ullong opens, closes, configs, watches, unwatches, guesses;
	atomic_ullong guessed_removed, reads, heads, raw, mmaps;
} A;

/* ---- shared helpers ---------------------------------------------------- */

static void check_events(const struct regwatch_event *ev, size_t n,
			 uint32_t max_watches, const char *where)
{
	size_t k;

	for (k = 0; k < n; k++) {
		const struct regwatch_event *e = &ev[k];
		bool ok;

		if (e->type == REGWATCH_EVENT_RESYNC)
			ok = !e->watch_id && !e->cookie && !e->flags;
		else
			ok = e->type == REGWATCH_EVENT_INVALIDATE && e->class &&
			     !(e->class & (e->class - 1)) &&
			     e->class < 1U << REGWATCH_NR_CLASSES &&
			     e->start < e->end &&
			     !((e->start | e->end) & (FZ_PG - 1)) &&
			     !(e->flags & ~(uint32_t)(REGWATCH_EVENT_ONESHOT |
						REGWATCH_EVENT_BACKGROUND)) &&
			     REGWATCH_ID_SLOT(e->watch_id) < max_watches &&
			     REGWATCH_ID_GEN(e->watch_id) && !e->pad;
		if (!ok)
			fz_finding("%s: malformed event: type %u class %#x flags "
				   "%#x id %#llx [%#llx, %#llx)", where, e->type,
				   e->class, e->flags,
				   (unsigned long long)e->watch_id,
				   (unsigned long long)e->start,
				   (unsigned long long)e->end);
	}
}

static void check_header(const struct regwatch_shared_header *h,
			 const struct regwatch_config *cfg, const char *where)
{
	if (h->abi_version != REGWATCH_ABI_VERSION ||
	    h->header_size != sizeof(*h) || h->event_size != ES ||
	    h->ring_entries != cfg->ring_entries ||
	    h->max_watches != cfg->max_watches ||
	    h->ring_offset < sizeof(*h) ||
	    h->states_offset < h->ring_offset + (uint64_t)h->ring_entries * ES ||
	    h->states_offset + (uint64_t)h->max_watches * 8 > cfg->shared_size)
		fz_finding("%s: header changed or inconsistent: abi %u size %u "
			   "ring %u/%u events %u watches %u/%u offsets %llu %llu",
			   where, h->abi_version, h->header_size,
			   h->ring_entries, cfg->ring_entries, h->event_size,
			   h->max_watches, cfg->max_watches,
			   (unsigned long long)h->ring_offset,
			   (unsigned long long)h->states_offset);
}

static long read_param(const char *name, long dflt)
{
	char path[128], buf[32];
	FILE *f;
	long v = dflt;

	snprintf(path, sizeof(path), "/sys/module/regwatch/parameters/%s",
		 name);
	f = fopen(path, "r");
	if (f) {
		if (fgets(buf, sizeof(buf), f))
			v = strtol(buf, NULL, 0);
		fclose(f);
	}
	return v;
}

static uint32_t roundup_pow2(uint32_t v)
{
	uint32_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

/* CONFIG's expected errno from its arguments (EBUSY aside). */
static int config_check(const void *arg, uint32_t usize)
{
	const struct regwatch_config *cfg = arg;
	const unsigned char *tail = arg;
	uint32_t k;

	if (usize < CFG_MIN)
		return EINVAL;
	if (usize > FZ_PG)
		return E2BIG;
	for (k = sizeof(*cfg); k < usize; k++)
		if (tail[k])
			return E2BIG;
	if (cfg->abi_version != REGWATCH_ABI_VERSION)
		return EPROTO;
	if (cfg->flags)
		return EINVAL;
	if (usize >= sizeof(*cfg) &&
	    (cfg->reserved[0] | cfg->reserved[1] | cfg->reserved[2] |
	     cfg->reserved[3]))
		return EINVAL;
	if (usize > offsetof(struct regwatch_config, reserved) &&
	    usize < sizeof(*cfg)) {
		/* A shorter struct: only the bytes given count. */
		for (k = offsetof(struct regwatch_config, reserved); k < usize;
		     k++)
			if (tail[k])
				return EINVAL;
	}
	if (cfg->ring_entries > (uint64_t)A.max_ring ||
	    cfg->max_watches > (uint64_t)A.max_watches_limit)
		return EINVAL;
	return 0;
}

/* Random CONFIG arguments in buf (up to FZ_PG + 64 bytes). */
static uint32_t random_config(struct fz_ctx *c, void *buf, bool sane)
{
	struct regwatch_config *cfg = buf;
	uint32_t usize = sizeof(*cfg);

	memset(buf, 0, FZ_PG + 64);
	cfg->abi_version = REGWATCH_ABI_VERSION;
	cfg->ring_entries = (uint32_t)fz_below(c, 4) ? 8U << fz_below(c, 5) : 0;
	cfg->max_watches = fz_pct(c, 80) ? 4U << fz_below(c, 6) : 0;
	if (!sane) {
		switch (fz_below(c, 14)) {
		case 0:
			usize = (uint32_t)fz_below(c, CFG_MIN);
			break;
		case 1:
			usize = CFG_MIN + (uint32_t)fz_below(c, 32);
			break;
		case 2:
			usize = FZ_PG + 1 + (uint32_t)fz_below(c, 60);
			break;
		case 3:
			usize = sizeof(*cfg) + 8 * (uint32_t)fz_below(c, 4);
			((unsigned char *)buf)[usize - 1 - fz_below(c, 8)] =
				fz_pct(c, 50) ? 1 : 0;
			break;
		case 4:
			cfg->abi_version = (uint32_t)fz_rand(c);
			break;
		case 5:
			cfg->flags = fz_rand(c) | 1;
			break;
		case 6:
			cfg->reserved[fz_below(c, 4)] = fz_rand(c) | 1;
			break;
		case 7:
			cfg->ring_entries = (uint32_t)A.max_ring + 1 +
					    (uint32_t)fz_below(c, 5);
			break;
		case 8:
			cfg->ring_entries = (uint32_t)fz_rand(c);
			break;
		case 9:
			cfg->max_watches = (uint32_t)A.max_watches_limit +
					   (uint32_t)fz_below(c, 2);
			break;
		case 10:
			cfg->ring_entries = (uint32_t)fz_below(c, 9);
			break;
		case 11:
			if (fz_pct(c, 20)) {
				cfg->ring_entries = (uint32_t)A.max_ring;
				cfg->max_watches = (uint32_t)A.max_watches_limit;
			}
			break;
		default:
			cfg->features = fz_rand(c);	/* out fields: ignored */
			cfg->shared_offset = fz_rand(c);
			break;
		}
	}
	cfg->size = usize;
	return usize;
}

/* A CONFIG that succeeded: check what it answered. */
static void check_config_answer(const struct regwatch_config *in_copy,
				const struct regwatch_config *out,
				uint32_t usize, const char *where)
{
	uint32_t want_ring = in_copy->ring_entries ? in_copy->ring_entries :
						     (uint32_t)A.def_ring;
	uint32_t want_w = in_copy->max_watches ? in_copy->max_watches :
						 (uint32_t)A.def_watches;
	uint64_t feats = REGWATCH_FEAT_ONESHOT | REGWATCH_FEAT_STREAMING |
			 REGWATCH_FEAT_EVENTFD | REGWATCH_FEAT_BATCH |
			 REGWATCH_FEAT_READ;

	want_ring = roundup_pow2(want_ring < 8 ? 8 : want_ring);
	if (out->ring_entries != want_ring || out->max_watches != want_w ||
	    out->abi_version != REGWATCH_ABI_VERSION ||
	    (usize >= offsetofend(struct regwatch_config, features) &&
	     (out->features & feats) != feats) ||
	    out->shared_offset != 0 || out->consumer_offset != 1ULL << 32 ||
	    out->consumer_size != FZ_PG || out->shared_size % FZ_PG ||
	    out->shared_size < sizeof(struct regwatch_shared_header) +
			       (uint64_t)want_ring * ES + (uint64_t)want_w * 8)
		fz_finding("%s: CONFIG(ring %u, watches %u, size %u) answered "
			   "ring %u watches %u abi %u features %#llx shared "
			   "%#llx+%#llx consumer %#llx+%#llx", where,
			   in_copy->ring_entries, in_copy->max_watches, usize,
			   out->ring_entries, out->max_watches,
			   out->abi_version,
			   (unsigned long long)out->features,
			   (unsigned long long)out->shared_offset,
			   (unsigned long long)out->shared_size,
			   (unsigned long long)out->consumer_offset,
			   (unsigned long long)out->consumer_size);
}

/* ---- shared monitors ---------------------------------------------------- */

static void sh_remember(struct shmon *m, uint64_t id)
{
	pthread_mutex_lock(&m->idlock);
	if (m->nids < NIDS)
		m->ids[m->nids++] = id;
	else
		m->ids[id % NIDS] = id;
	pthread_mutex_unlock(&m->idlock);
}

static uint64_t sh_some_id(struct fz_ctx *c, struct shmon *m)
{
	uint64_t id = fz_rand(c);

	pthread_mutex_lock(&m->idlock);
	if (m->nids && fz_pct(c, 80))
		id = m->ids[fz_below(c, (uint64_t)m->nids)];
	pthread_mutex_unlock(&m->idlock);
	return id;
}

/* A guess from the state words: a slot's current or next generation. */
static uint64_t sh_guess(struct fz_ctx *c, struct shmon *m)
{
	const uint64_t *states;
	uint32_t slot;
	uint64_t word;

	if (!m->hdr || !m->cfg.max_watches)
		return fz_rand(c);
	states = (const uint64_t *)((const char *)m->hdr +
				    m->hdr->states_offset);
	slot = (uint32_t)fz_below(c, m->cfg.max_watches < 64 ?
					  m->cfg.max_watches : 64);
	word = __atomic_load_n(&states[slot], __ATOMIC_ACQUIRE);
	atomic_fetch_add(&A.guesses, 1);
	return ((word >> 32) + fz_below(c, 2)) << 32 | slot;
}

static void sh_close(struct shmon *m);

/* Open, configure, map or close. Caller holds life for writing. */
static void sh_lifecycle(struct fz_ctx *c, struct shmon *m)
{
	char *buf = c->scratch;
	uint32_t usize;
	long r;
	int e, fl;

	if (m->fd < 0) {
		fl = O_RDWR | O_CLOEXEC;
		if (fz_pct(c, 40))
			fl |= O_NONBLOCK;
		if (fz_pct(c, 4))
			fl = (fl & ~O_RDWR) | (fz_pct(c, 50) ? O_RDONLY : O_WRONLY);
		m->fd = fz_open(REGWATCH_DEVICE, fl);
		if (m->fd < 0) {
			fz_finding("open %s: %s", REGWATCH_DEVICE,
				   strerror(-m->fd));
			m->fd = -1;
			return;
		}
		atomic_fetch_add(&A.opens, 1);
		m->acc = fl & O_ACCMODE;
		m->configured = false;
		m->nids = 0;
		atomic_store(&m->made, 0);
		atomic_store(&m->removed, 0);
		atomic_store(&m->transient, 0);
		atomic_store(&m->last_prod, 0);
		if (fz_pct(c, 20))
			return;		/* left unconfigured for a while */
	}
	if (!m->configured) {
		struct regwatch_config in;

		usize = random_config(c, buf, fz_pct(c, 70));
		memcpy(&in, buf, sizeof(in));
		e = config_check(buf, usize);
		r = fz_ioctl(m->fd, REGWATCH_IOC_CONFIG, buf);
		atomic_fetch_add(&A.configs, 1);
		if (r != -e && !(e == 0 && r == -ENOMEM))
			fz_finding("shared CONFIG size %u ring %u watches %u: %ld, "
				   "expected %d", usize, in.ring_entries,
				   in.max_watches, r, -e);
		if (!r) {
			memcpy(&m->cfg, buf, sizeof(m->cfg));
			check_config_answer(&in, &m->cfg, usize, "shared");
			m->configured = true;
			r = fz_ioctl(m->fd, REGWATCH_IOC_CONFIG, buf);
			if (r != -EBUSY)
				fz_finding("second CONFIG: %ld, expected EBUSY", r);
		}
		return;
	}
	if (!m->hdr && fz_pct(c, 70)) {
		int err;
		void *p = fz_mmap(NULL, m->cfg.shared_size, PROT_READ, MAP_SHARED,
				  m->fd, 0, &err);

		if (p != MAP_FAILED) {
			m->hdr = p;
			check_header(m->hdr, &m->cfg, "shared mmap");
		}
		p = fz_mmap(NULL, FZ_PG, PROT_READ | PROT_WRITE, MAP_SHARED,
			    m->fd, 1LL << 32, &err);
		if (p != MAP_FAILED)
			m->cons = p;
		return;
	}
	if (fz_pct(c, 50) && m->hdr) {
		/* Drop the mappings (the monitor lives on). */
		fz_munmap((void *)m->hdr, m->cfg.shared_size);
		m->hdr = NULL;
		if (m->cons)
			fz_munmap(m->cons, FZ_PG);
		m->cons = NULL;
		return;
	}
	sh_close(m);
}

/* Close: every watch was removed exactly once or is still live. */
static void sh_close(struct shmon *m)
{
	struct regwatch_stats st;
	long r;

	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	r = fz_ioctl(m->fd, REGWATCH_IOC_STATS, &st);
	if (r) {
		fz_finding("STATS before close: %s", strerror((int)-r));
	} else {
		unsigned long long mk = atomic_load(&m->made);
		unsigned long long rm = atomic_load(&m->removed);
		unsigned long long tr = atomic_load(&m->transient);

		if (st.watches + rm < mk || st.watches + rm > mk + tr)
			fz_finding("shared monitor: %llu watches live, but %llu "
				   "made and %llu removed (%llu transient): a "
				   "watch was removed twice or lost", (unsigned
				   long long)st.watches, mk, rm, tr);
	}
	if (m->hdr)
		fz_munmap((void *)m->hdr, m->cfg.shared_size);
	if (m->cons)
		fz_munmap(m->cons, FZ_PG);
	m->hdr = NULL;
	m->cons = NULL;
	fz_close(m->fd);
	atomic_fetch_add(&A.closes, 1);
	m->fd = -1;
	m->configured = false;
}

/* A WATCH request for a shared monitor (through a good or bad pointer). */
static void sh_watch(struct fz_ctx *c, struct shmon *m)
{
	struct regwatch_watch w, *arg = &w;
	bool valid = true, garbage = fz_pct(c, 12);
	long r;
	int e;

	memset(&w, 0, sizeof(w));
	fz_random_range(c, &w.addr, &w.len);
	w.cookie = fz_rand(c);
	w.flags = (uint32_t)fz_below(c, 8);
	if (fz_pct(c, 6))
		w.flags |= 1U << (3 + fz_below(c, 29));
	if (fz_pct(c, 4))
		w.reserved[fz_below(c, 2)] = fz_rand(c) | 1;
	e = fz_watch_check(&w);
	if (garbage) {
		arg = (void *)(uintptr_t)fz_garbage_ptr(c, sizeof(w), &valid);
		if (valid)
			memcpy(arg, &w, sizeof(w));
	}
	r = fz_ioctl(m->fd, REGWATCH_IOC_WATCH, arg);
	atomic_fetch_add(&A.watches, 1);
	if (!m->configured) {
		if (r != -EBADFD)
			fz_finding("WATCH before CONFIG: %ld, expected EBADFD", r);
		return;
	}
	if (!valid) {
		bool ro = (char *)arg >= c->ro && (char *)arg < c->ro + 2 * FZ_PG;

		/* Read-only memory: the request is read, the answer cannot
		 * be written: a watch may be made and taken back (EFAULT). */
		if (r == -EFAULT)
			atomic_fetch_add(&m->transient, 1);
		if (ro ? r == 0 : r != -EFAULT)
			fz_finding("WATCH through %p: %ld, expected EFAULT",
				   (void *)arg, r);
		return;
	}
	if (e ? r != -e : r && r != -ENOBUFS && r != -ENOSPC &&
			  r != -EDQUOT && r != -ENOMEM)
		fz_finding("WATCH [%#llx, +%#llx) flags %#x: %ld, expected %d",
			   (unsigned long long)w.addr, (unsigned long long)w.len,
			   w.flags, r, -e);
	if (r == 0) {
		atomic_fetch_add(&m->made, 1);
		sh_remember(m, arg->watch_id);
	}
}

static void sh_watchv(struct fz_ctx *c, struct shmon *m)
{
	struct regwatch_watch *w = (void *)c->scratch;
	struct regwatch_batch b = { 0 };
	uint32_t n = 1 + (uint32_t)fz_below(c, 16), k, ok = 0;
	bool good_ptr = true;
	int exp = 0;
	long r;

	switch (fz_below(c, 20)) {
	case 0:
		n = 0;
		break;
	case 1:
		n = REGWATCH_BATCH_MAX + 1 + (uint32_t)fz_below(c, 3);
		break;
	case 2:
		n = fz_pct(c, 20) ? REGWATCH_BATCH_MAX : n;
		break;
	case 3:
		n = (uint32_t)fz_rand(c);
		break;
	}
	b.count = n;
	b.entries = (uintptr_t)w;
	if (fz_pct(c, 3))
		b.flags = (uint32_t)fz_rand(c) | 1;
	if (fz_pct(c, 10))
		b.entries = fz_garbage_ptr(c, 64, &good_ptr);
	if (b.flags || !n || n > REGWATCH_BATCH_MAX)
		exp = EINVAL;
	else if (!good_ptr ||
		 (b.entries >= (uintptr_t)c->scratch &&
		  b.entries + (uint64_t)n * sizeof(*w) > (uintptr_t)c->scratch_end))
		exp = EFAULT;
	if (!exp)
		w = (void *)(uintptr_t)b.entries;
	for (k = 0; !exp && k < n; k++) {
		memset(&w[k], 0, sizeof(w[k]));
		fz_random_range(c, &w[k].addr, &w[k].len);
		if (fz_pct(c, 50)) {
			w[k].addr = FZ_SANDBOX_BASE + fz_below(c, FZ_SANDBOX_PAGES) *
						      FZ_PG;
			w[k].len = (1 + fz_below(c, 16)) * FZ_PG;
		}
		w[k].flags = (uint32_t)fz_below(c, 8);
		if (fz_pct(c, 5))
			w[k].flags |= 1U << (3 + fz_below(c, 29));
		w[k].cookie = fz_rand(c);
	}
	r = fz_ioctl(m->fd, REGWATCH_IOC_WATCHV, &b);
	atomic_fetch_add(&A.watches, 1);
	if (!m->configured) {
		if (r != -EBADFD)
			fz_finding("WATCHV before CONFIG: %ld", r);
		return;
	}
	if (exp) {
		if (r != -exp && !(exp == EFAULT && b.entries >= (uintptr_t)c->ro &&
				  b.entries < (uintptr_t)c->ro + 2 * FZ_PG &&
				  r == -EFAULT))
			fz_finding("WATCHV count %u flags %#x entries %#llx: %ld, "
				   "expected %d", n, b.flags,
				   (unsigned long long)b.entries, r, -exp);
		/* read-only entries: made and taken back */
		if (r == -EFAULT)
			atomic_fetch_add(&m->transient, n <= REGWATCH_BATCH_MAX ? n : 0);
		return;
	}
	if (r < 0) {
		if (r != -ENOMEM)
			fz_finding("WATCHV of %u: %s", n, strerror((int)-r));
		return;
	}
	for (k = 0; k < n; k++) {
		int e = fz_watch_check(&w[k]);

		if (e ? w[k].result != -e :
			w[k].result && w[k].result != -ENOBUFS &&
			w[k].result != -ENOSPC && w[k].result != -EDQUOT &&
			w[k].result != -ENOMEM)
			fz_finding("WATCHV entry %u [%#llx, +%#llx) flags %#x: %d, "
				   "expected %d", k,
				   (unsigned long long)w[k].addr,
				   (unsigned long long)w[k].len, w[k].flags,
				   w[k].result, -e);
		if (!w[k].result) {
			ok++;
			if (fz_pct(c, 25))
				sh_remember(m, w[k].watch_id);
		}
	}
	if ((uint64_t)r != ok)
		fz_finding("WATCHV returned %ld, %u entries succeeded", r, ok);
	atomic_fetch_add(&m->made, ok);
}

static void sh_unwatch(struct fz_ctx *c, struct shmon *m)
{
	struct regwatch_unwatch u[8];
	struct regwatch_batch b = { .entries = (uintptr_t)u };
	uint32_t n, k, ok = 0;
	bool batch = fz_pct(c, 30);
	long r;

	memset(u, 0, sizeof(u));
	n = batch ? 1 + (uint32_t)fz_below(c, 8) : 1;
	for (k = 0; k < n; k++) {
		u[k].watch_id = fz_pct(c, 50) ? sh_guess(c, m) : sh_some_id(c, m);
		if (fz_pct(c, 4))
			u[k].pad = (uint32_t)fz_rand(c) | 1;
	}
	atomic_fetch_add(&A.unwatches, 1);
	if (!batch) {
		r = fz_ioctl(m->fd, REGWATCH_IOC_UNWATCH, &u[0]);
		if (!m->configured) {
			if (r != -EBADFD)
				fz_finding("UNWATCH before CONFIG: %ld", r);
			return;
		}
		if (u[0].pad ? r != -EINVAL : r && r != -ENOENT)
			fz_finding("UNWATCH %#llx pad %#x: %ld",
				   (unsigned long long)u[0].watch_id, u[0].pad, r);
		if (!r) {
			atomic_fetch_add(&m->removed, 1);
			atomic_fetch_add(&A.guessed_removed, 1);
		}
		return;
	}
	b.count = n;
	r = fz_ioctl(m->fd, REGWATCH_IOC_UNWATCHV, &b);
	if (!m->configured) {
		if (r != -EBADFD)
			fz_finding("UNWATCHV before CONFIG: %ld", r);
		return;
	}
	if (r < 0) {
		fz_finding("UNWATCHV of %u: %s", n, strerror((int)-r));
		return;
	}
	for (k = 0; k < n; k++) {
		if (u[k].pad ? u[k].result != -EINVAL :
			       u[k].result && u[k].result != -ENOENT)
			fz_finding("UNWATCHV entry %u id %#llx pad %#x: %d", k,
				   (unsigned long long)u[k].watch_id, u[k].pad,
				   u[k].result);
		ok += !u[k].result;
	}
	if ((uint64_t)r != ok)
		fz_finding("UNWATCHV returned %ld, %u entries succeeded", r, ok);
	atomic_fetch_add(&m->removed, ok);
}

static void sh_stats(struct fz_ctx *c, struct shmon *m)
{
	struct regwatch_stats *st = (void *)c->scratch;
	uint32_t usize = sizeof(*st);
	uint64_t p1 = 0, p2 = 0;
	long r;

	memset(st, 0x5a, sizeof(*st) + 64);
	if (fz_pct(c, 20))
		usize = (uint32_t)fz_below(c, 300);
	if (fz_pct(c, 3))
		usize = FZ_PG + 1 + (uint32_t)fz_below(c, 1000);
	st->size = usize;
	st->pad = fz_pct(c, 5) ? 1 : 0;
	if (m->hdr)
		p1 = __atomic_load_n(&m->hdr->producer, __ATOMIC_ACQUIRE);
	r = fz_ioctl(m->fd, REGWATCH_IOC_STATS, st);
	if (m->hdr)
		p2 = __atomic_load_n(&m->hdr->producer, __ATOMIC_ACQUIRE);
	if (usize < STATS_MIN || st->pad) {
		if (r != -EINVAL)
			fz_finding("STATS size %u pad %u: %ld, expected EINVAL",
				   usize, st->pad, r);
		return;
	}
	if (usize > FZ_PG) {
		if (r != -E2BIG)
			fz_finding("STATS size %u: %ld, expected E2BIG", usize, r);
		return;
	}
	if (r) {
		fz_finding("STATS size %u: %s", usize, strerror((int)-r));
		return;
	}
	if (usize >= offsetofend(struct regwatch_stats, events) && m->hdr &&
	    m->configured && (st->events < p1 || st->events > p2))
		fz_finding("STATS events %llu outside producer [%llu, %llu]",
			   (unsigned long long)st->events,
			   (unsigned long long)p1, (unsigned long long)p2);
	if (!m->configured && usize >= offsetofend(struct regwatch_stats, events) &&
	    (st->watches || st->events))
		fz_finding("STATS before CONFIG: watches %llu events %llu",
			   (unsigned long long)st->watches,
			   (unsigned long long)st->events);
	if (usize < sizeof(*st) &&
	    ((unsigned char *)st)[usize] != 0x5a)
		fz_finding("STATS size %u wrote beyond the size", usize);
}

static void sh_eventfd(struct fz_ctx *c, struct shmon *m)
{
	struct regwatch_eventfd req = { .fd = -1 };
	int e = 0, owned = -1;
	long r;

	switch (fz_below(c, 7)) {
	case 0:
		break;
	case 1:
		req.fd = -2 - (int)fz_below(c, 1000);
		e = EINVAL;
		break;
	case 2:
		req.fd = 1000000 + (int)fz_below(c, 1000);
		e = EBADF;
		break;
	case 3:
		req.fd = m->fd;		/* not an eventfd */
		e = EINVAL;
		break;
	default:
		owned = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		req.fd = owned;
		break;
	}
	if (fz_pct(c, 5)) {
		req.flags = (uint32_t)fz_rand(c) | 1;
		e = EINVAL;
	}
	r = fz_ioctl(m->fd, REGWATCH_IOC_SET_EVENTFD, &req);
	if (!m->configured)
		e = EBADFD;
	if (r != -e)
		fz_finding("SET_EVENTFD fd %d flags %#x: %ld, expected %d",
			   req.fd, req.flags, r, -e);
	/* The monitor keeps its own reference: closing ours is fine. */
	if (owned >= 0)
		close(owned);
}

/* A random command number: only the documented ones do anything. */
static void sh_raw(struct fz_ctx *c, struct shmon *m)
{
	static const unsigned long real[] = {
		REGWATCH_IOC_CONFIG, REGWATCH_IOC_WATCH, REGWATCH_IOC_UNWATCH,
		REGWATCH_IOC_WATCHV, REGWATCH_IOC_UNWATCHV,
		REGWATCH_IOC_SET_EVENTFD, REGWATCH_IOC_STATS,
	};
	unsigned int dir = (unsigned int)fz_below(c, 4);
	unsigned int type = fz_pct(c, 80) ? REGWATCH_IOC_MAGIC :
					   (unsigned int)fz_below(c, 256);
	/* Types the VFS answers for every file (FIONBIO, FIGETBSZ, ...). */
	if (type == 0 || type == 'T' || type == 'f' || type == 'X' ||
	    type == 0x94 || type == '$' || type == 0x15)
		type = REGWATCH_IOC_MAGIC;
	unsigned int nr = (unsigned int)fz_below(c, 0x30);
	unsigned int size = (unsigned int)fz_below(c, 1 << 14);
	unsigned long cmd = _IOC(dir, type, nr, size);
	size_t k;
	long r;
	int e = ENOTTY;

	for (k = 0; k < sizeof(real) / sizeof(real[0]); k++)
		if (cmd == real[k])
			return;		/* the real ones are fuzzed elsewhere */
	if (type == REGWATCH_IOC_MAGIC && (nr == 0 || nr == 6) &&
	    dir == (_IOC_READ | _IOC_WRITE))
		return;		/* CONFIG / STATS of another size: real */
	memset(c->scratch, 0, 128);
	r = fz_ioctl(m->fd, cmd, c->scratch);
	atomic_fetch_add(&A.raw, 1);
	if (r != -e)
		fz_finding("ioctl %#lx (dir %u type %#x nr %#x size %u): %ld, "
			   "expected ENOTTY", cmd, dir, type, nr, size, r);
}

/* Consume: the ring by hand, read(2), or a random consumer head. */
static void sh_consume(struct fz_ctx *c, struct shmon *m)
{
	int how = (int)fz_below(c, 4);
	short rev = 0;
	long r;

	pthread_mutex_lock(&m->consume);
	if (how == 0 && m->hdr && m->cons) {
		uint64_t prod = __atomic_load_n(&m->hdr->producer,
						__ATOMIC_ACQUIRE);
		uint64_t head = __atomic_load_n(&m->cons->head, __ATOMIC_RELAXED);
		const struct regwatch_event *ring = (const void *)
			((const char *)m->hdr + m->hdr->ring_offset);
		uint64_t last = atomic_load(&m->last_prod);

		check_header(m->hdr, &m->cfg, "shared ring");
		if (prod < last)
			fz_finding("producer went back from %llu to %llu",
				   (unsigned long long)last,
				   (unsigned long long)prod);
		atomic_store(&m->last_prod, prod);
		/* (head may be anything: only entries ever written count) */
		if (head <= prod && prod - head <= m->cfg.ring_entries) {
			for (; head != prod; head++)
				check_events(&ring[head & (m->cfg.ring_entries - 1)],
					     1, m->cfg.max_watches, "shared ring");
		}
		__atomic_store_n(&m->cons->head, prod, __ATOMIC_RELEASE);
	} else if (how == 1 && m->cons) {
		uint64_t v;

		switch (fz_below(c, 4)) {
		case 0:
			v = 0;
			break;
		case 1:
			v = ~0ULL - fz_below(c, 4);
			break;
		case 2:
			v = m->hdr ? m->hdr->producer + fz_below(c, 5) - 2 : 1;
			break;
		default:
			v = fz_rand(c);
			break;
		}
		atomic_fetch_add(&A.heads, 1);
		__atomic_store_n(&m->cons->head, v, __ATOMIC_RELEASE);
	} else {
		size_t n = fz_below(c, 9), size = n * ES;
		bool valid = true;
		char *buf = c->scratch;

		if (fz_pct(c, 20))
			size += fz_below(c, ES);
		if (fz_pct(c, 10))
			buf = (char *)(uintptr_t)fz_garbage_ptr(c, size, &valid);
		/* Never block: only read when poll says there is something. */
		r = fz_poll(m->fd, POLLIN, 0, &rev);
		if (rev & (POLLERR | POLLNVAL))
			fz_finding("poll of our own monitor: revents %#x", rev);
		if ((rev & POLLIN) || size < ES || !m->configured ||
		    m->acc == O_WRONLY) {
			r = fz_read(m->fd, buf, size);
			atomic_fetch_add(&A.reads, 1);
			/* The VFS answers first: EBADF, then access_ok(). */
			if (m->acc == O_WRONLY) {
				if (r != -EBADF)
					fz_finding("read of an O_WRONLY monitor: %ld",
						   r);
			} else if (!fz_access_ok((uintptr_t)buf, size)) {
				if (r != -EFAULT)
					fz_finding("read(%p, %zu): %ld, expected "
						   "EFAULT", buf, size, r);
			} else if (!m->configured) {
				if (r != -EBADFD)
					fz_finding("read before CONFIG: %ld", r);
			} else if (size < ES) {
				if (r != -EINVAL)
					fz_finding("read(%zu): %ld, expected "
						   "EINVAL", size, r);
			} else if (r >= 0) {
				if ((size_t)r % ES || (size_t)r > size)
					fz_finding("read(%zu) returned %ld",
						   size, r);
				else if (valid)
					check_events((void *)buf, (size_t)r / ES,
						     m->cfg.max_watches, "read");
			} else if (r != -EFAULT || valid) {
				if (r != -EAGAIN)
					fz_finding("read(%p, %zu): %s", buf, size,
						   strerror((int)-r));
			}
		}
	}
	pthread_mutex_unlock(&m->consume);
}

void abi_shared_op(struct fz_ctx *c)
{
	struct shmon *m;
	int op;

	if (c->child)
		return;
	m = &SH[fz_below(c, NSHARED)];
	op = (int)fz_below(c, 100);
	if (m->fd < 0 || op < 4) {
		pthread_rwlock_wrlock(&m->life);
		sh_lifecycle(c, m);
		pthread_rwlock_unlock(&m->life);
		return;
	}
	pthread_rwlock_rdlock(&m->life);
	if (m->fd < 0)
		;
	else if (op < 34)
		sh_watch(c, m);
	else if (op < 44)
		sh_watchv(c, m);
	else if (op < 64)
		sh_unwatch(c, m);
	else if (op < 72)
		sh_stats(c, m);
	else if (op < 76)
		sh_eventfd(c, m);
	else if (op < 82)
		sh_raw(c, m);
	else
		sh_consume(c, m);
	pthread_rwlock_unlock(&m->life);
}

int abi_fds(int *fds, int max)
{
	int k, n = 0;

	for (k = 0; k < NSHARED && n < max; k++)
		if (SH[k].fd >= 0)
			fds[n++] = SH[k].fd;
	return n;
}

/* ---- device mmap games ------------------------------------------------- */

/*
 * mmap of shared monitors with random offsets, lengths,
 * protections and flags (sometimes MAP_FIXED into the sandbox), then
 * random follow-ups on the mapping: madvise (DONTNEED, DOFORK...),
 * mprotect, mremap, munmap.
 */
void abi_mmap_op(struct fz_ctx *c)
{
	static const off_t offs[] = { 0, 1LL << 32, FZ_PG, (1LL << 32) + FZ_PG,
				      2LL << 32, -FZ_PG };
	struct shmon *m = &SH[fz_below(c, NSHARED)];
	off_t off = offs[fz_below(c, sizeof(offs) / sizeof(offs[0]))];
	size_t len = (1 + fz_below(c, 4)) * FZ_PG;
	int prot = (int)fz_below(c, 8), flags = MAP_SHARED, err;
	void *at = NULL;
	void *p;

	if (c->child)
		return;
	if (fz_pct(c, 10))
		flags = MAP_PRIVATE;
	if (fz_pct(c, 10))
		flags |= MAP_POPULATE;
	if (fz_pct(c, 15)) {
		at = (void *)(FZ_SANDBOX_BASE +
			      fz_below(c, FZ_SANDBOX_PAGES - 64) * FZ_PG);
		flags |= MAP_FIXED;
	}
	pthread_rwlock_rdlock(&m->life);
	if (m->fd < 0) {
		pthread_rwlock_unlock(&m->life);
		return;
	}
	if (m->configured && off == 0 && fz_pct(c, 60))
		len = m->cfg.shared_size;
	if (fz_pct(c, 5))
		len = 1ULL << (30 + fz_below(c, 10));
	p = fz_mmap(at, len, prot, flags, m->fd, off, &err);
	atomic_fetch_add(&A.mmaps, 1);
	if (p == MAP_FAILED) {
		if (err == EFAULT || err == EIO || err == ENODEV)
			fz_finding("device mmap off %#llx len %zu prot %#x flags "
				   "%#x: %s", (unsigned long long)off, len, prot,
				   flags, strerror(err));
		pthread_rwlock_unlock(&m->life);
		return;
	}
	if (!m->configured || (prot & PROT_WRITE && off == 0) ||
	    !(flags & MAP_SHARED) || (off != 0 && off != 1LL << 32) ||
	    (off == 0 && len != m->cfg.shared_size) ||
	    (off == 1LL << 32 && len != FZ_PG))
		fz_finding("device mmap off %#llx len %zu prot %#x flags %#x "
			   "succeeded (configured %d)", (unsigned long long)off,
			   len, prot, flags, m->configured);
	else if (off == 0 && (prot & PROT_READ) && !at)
		check_header(p, &m->cfg, "random mapping");
	pthread_rwlock_unlock(&m->life);
	/* The mapping holds the file: it outlives a close of the fd. */
	switch (fz_below(c, 6)) {
	case 0:
		fz_madvise(p, len, MADV_DONTNEED);
		break;
	case 1:
		fz_madvise(p, len, fz_pct(c, 50) ? MADV_DOFORK : MADV_DONTFORK);
		break;
	case 2:
		fz_mprotect(p, len, (int)fz_below(c, 8));
		break;
	case 3: {
		void *q = fz_mremap(p, len, len + FZ_PG * fz_below(c, 2),
				    MREMAP_MAYMOVE, NULL, &err);

		if (q != MAP_FAILED)
			p = q;
		break;
	}
	default:
		break;
	}
	fz_munmap(p, len);
}

/* ---- setup and teardown -------------------------------------------------- */

int abi_init(void)
{
	int k;

	A.max_ring = read_param("max_ring_entries", 65536);
	A.max_watches_limit = read_param("max_watches_limit", 1 << 20);
	A.def_ring = read_param("default_ring_entries", 4096);
	A.def_watches = read_param("default_max_watches", 65536);
	for (k = 0; k < NSHARED; k++) {
		pthread_rwlock_init(&SH[k].life, NULL);
		pthread_mutex_init(&SH[k].consume, NULL);
		pthread_mutex_init(&SH[k].idlock, NULL);
		SH[k].fd = -1;
	}
	return 0;
}

void abi_finish(void)
{
	int k;

	for (k = 0; k < NSHARED; k++) {
		struct shmon *m = &SH[k];

		if (m->fd < 0)
			continue;
		pthread_rwlock_wrlock(&m->life);
		sh_close(m);
		pthread_rwlock_unlock(&m->life);
	}
}

void abi_summary(char *buf, size_t len)
{
	snprintf(buf, len, "%llu opens, %llu closes, %llu CONFIGs, %llu "
		 "WATCH(V)s, %llu UNWATCH(V)s (%llu guessed ids, %llu removals "
		 "by id), %llu reads, %llu random heads, %llu unknown commands, "
		 "%llu device mmaps",
		 (unsigned long long)atomic_load(&A.opens),
		 (unsigned long long)atomic_load(&A.closes),
		 (unsigned long long)atomic_load(&A.configs),
		 (unsigned long long)atomic_load(&A.watches),
		 (unsigned long long)atomic_load(&A.unwatches),
		 (unsigned long long)atomic_load(&A.guesses),
		 (unsigned long long)atomic_load(&A.guessed_removed),
		 (unsigned long long)atomic_load(&A.reads),
		 (unsigned long long)atomic_load(&A.heads),
		 (unsigned long long)atomic_load(&A.raw),
		 (unsigned long long)atomic_load(&A.mmaps));
}
