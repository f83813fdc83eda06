// SPDX-License-Identifier: MIT
/*
 * The tracked monitor and its exact oracle.
 *
 * One monitor (through libregwatch, like a real user) watches regions of
 * an arena that only this file's operations touch. Each operation locks
 * its region, so the oracle knows exactly which live watches each
 * invalidation overlaps (test_stress's idea), and checks the promise:
 *   - an overlapped watch is invalid when the invalidating call returns
 *     and gets its events (one-shot: exactly one; streaming: as many as
 *     its state word counts), each inside its range, of a class it saw;
 *   - a watch nothing overlapped is still armed when it is unwatched and
 *     never appears in the ring; "no-fire" operations (MADV_COLD,
 *     POPULATE, mlock, msync...) fire nothing.
 * Regions come in three kinds: private anonymous exposed to fork,
 * private anonymous hidden from fork (MADV_DONTFORK), and MAP_SHARED
 * memfd (hole punch, MADV_REMOVE, truncate). Operations: WATCH, WATCHV
 * (mixed with entries that must fail with an exact errno), UNWATCH,
 * UNWATCHV (mixed with stale ids and bad padding), DONTNEED / FREE,
 * munmap + remap, mmap over, mremap move / shrink / DONTUNMAP, mprotect,
 * punch / remove / truncate, and no-fire calls.
 *
 * Whole-process operations take the global lock for writing: fork (every
 * PROTECTION watch of an exposed region fires; the parent then writes
 * every exposed page, and what that copy-on-write may fire is "unknown"),
 * clear_refs soft-dirty (every SOFT_DIRTY watch fires).
 *
 * Random interference: other threads add untracked watches to this
 * monitor (their events must belong to a watch the fuzzer created), read
 * its counters, and run everything else in the process. The kernel
 * also invalidates on its own (reclaim, compaction, KSM; some of it
 * announces a CLEAR and then keeps the page, which no pagemap snapshot
 * can see): a watch that fires though nothing touched it becomes
 * unknown, and every event that none of our calls explains must be a
 * CLEAR flagged REGWATCH_EVENT_BACKGROUND (counted as noise); any other
 * is a finding.
 *
 * A drainer thread consumes the ring by regwatch_drain(), read(2) with
 * random sizes and buffers, poll, eventfd, and writes of implausible
 * consumer heads (which the kernel must ignore). Every EPOCH_RECS
 * watches the oracle stops the world, removes every watch, drains, and
 * checks the events and the monitor's counters exactly.
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

enum {
	NREGIONS = 12,
	RPAGES = 16,		/* pages per region */
	RSTRIDE = 32,		/* regions are RSTRIDE pages apart */
	MAXLIVE = 6,		/* live tracked watches per region */
	MAXR = 8,		/* invalidation ranges remembered per watch */
	EPOCH_RECS = 2048,	/* watches per epoch */
	MAXUT = 48,		/* live untracked watches on the monitor */
	RING = 32768,
};

#define RBYTES		(RPAGES * FZ_PG)
#define TAG		(1ULL << 63)
#define COUNT_MASK	0x3fffffffULL
#define BASE_CLASSES	(REGWATCH_CLASS_UNMAP | REGWATCH_CLASS_CLEAR | \
			 REGWATCH_CLASS_RELEASE)

enum rkind { RK_EXPOSED, RK_HIDDEN, RK_MEMFD };
static const char *const rkind_name[] = { "exposed", "hidden", "memfd" };

struct rec {
	uint64_t id, armed, cookie;
	const uint64_t *state;
	uintptr_t start, end;		/* page-rounded */
	uint32_t flags;
	uint32_t want;			/* classes that fire it */
	uint32_t classes;		/* classes it saw (hit or maybe) */
	int region;
	bool live, hit, maybe;
	atomic_bool retired;
	int nhit;			/* definite hits */
	int nrange;
	uintptr_t hs[MAXR], he[MAXR];
	uint64_t final_word;
	int events;
	int bg_events;			/* of them flagged BACKGROUND */
};

struct region {
	pthread_mutex_t lock;
	int kind;
	char *base;
	int memfd;
	int live[MAXLIVE];
};

struct ut {
	uint64_t id, cookie;
	uintptr_t start, end;
	uint32_t flags;
	bool live;
};

static struct {
	bool active;
	struct regwatch *rw;
	int fd;
	struct regwatch_config cfg;
	const struct regwatch_shared_header *hdr;	/* our own mapping */
	struct regwatch_consumer *cons;			/* our own mapping */
	const uint64_t *states;
	struct region reg[NREGIONS];
	pthread_rwlock_t global;
	struct rec *recs;
	atomic_int nrecs;
	uint32_t epoch;
	pthread_mutex_t drain_lock;
	struct regwatch_event *ev;
	size_t nev, evcap;
	uint64_t drained;
	uint64_t resyncs;		/* this epoch */
	pthread_t drainer;
	atomic_bool drainer_stop;
	struct fz_ctx dctx;
	int efd;
	uint64_t efd_total;
	pthread_mutex_t ut_lock;
	struct ut *ut;
	size_t nut, utcap;
	int ut_live;
	atomic_ullong n_watch, n_fired, n_quiet, n_unknown, n_inval, n_nofire;
	atomic_ullong n_fork, n_softdirty, n_epochs, n_events, n_ut, n_batch;
	atomic_ullong n_reads, n_garbage_heads, n_drains;
	atomic_ullong n_untouched, n_background;
} T;

static void epoch_end(bool final);

/* ---- helpers -------------------------------------------------------------- */

static uint64_t word_of(const struct rec *rc)
{
	return __atomic_load_n(rc->state, __ATOMIC_ACQUIRE);
}

static bool is_armed(const struct rec *rc)
{
	return word_of(rc) == rc->armed;
}

static uintptr_t umax(uintptr_t a, uintptr_t b)
{
	return a > b ? a : b;
}

static uintptr_t umin(uintptr_t a, uintptr_t b)
{
	return a < b ? a : b;
}

static void add_range(struct rec *rc, uintptr_t a, uintptr_t b, uint32_t cls)
{
	if (rc->nrange < MAXR) {
		rc->hs[rc->nrange] = umax(a, rc->start);
		rc->he[rc->nrange] = umin(b, rc->end);
	}
	rc->nrange++;
	rc->classes |= cls;
}

static void describe(const struct rec *rc, int i, char *buf, size_t len)
{
	snprintf(buf, len, "rec %u.%d id %#llx [%#lx, %#lx) flags %#x in %s "
		 "region %d", T.epoch, i, (unsigned long long)rc->id,
		 (unsigned long)rc->start, (unsigned long)rc->end, rc->flags,
		 rkind_name[T.reg[rc->region].kind], rc->region);
}

/*
 * A watch nothing we did overlapped has fired: only the kernel's own
 * work can explain that, which check_event demands of its events.
 */
static void quiet_check(struct rec *rc)
{
	if (rc->hit || rc->maybe || is_armed(rc))
		return;
	rc->maybe = true;
	atomic_fetch_add(&T.n_untouched, 1);
}

/*
 * [a, b) of class cls happened (maybe: it may or may not have): update
 * every live watch of the region and check the sync promise at once.
 */
static void invalidated(struct region *rg, uintptr_t a, uintptr_t b,
			uint32_t cls, bool maybe, const char *what)
{
	char d[200];
	int s;

	if (cls && !maybe)
		atomic_fetch_add(&T.n_inval, 1);
	for (s = 0; s < MAXLIVE; s++) {
		int i = rg->live[s];
		struct rec *rc;

		if (i < 0)
			continue;
		rc = &T.recs[i];
		if (a < rc->end && rc->start < b && (cls & rc->want)) {
			add_range(rc, a, b, cls);
			if (maybe) {
				rc->maybe = true;
				continue;
			}
			rc->hit = true;
			rc->nhit++;
			if (is_armed(rc)) {
				describe(rc, i, d, sizeof(d));
				fz_finding("%s still valid after %s (class %#x) "
					   "of [%#lx, %#lx) returned: state %#llx",
					   d, what, cls, (unsigned long)a,
					   (unsigned long)b,
					   (unsigned long long)word_of(rc));
			}
		} else {
			quiet_check(rc);
		}
	}
}

/* The region must stay mapped and populated: anything else ends the run. */
static bool remap(struct region *rg, char *p, size_t len, int byte)
{
	void *q;
	int err;

	if (rg->kind == RK_MEMFD)
		q = fz_mmap(p, len, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_FIXED, rg->memfd,
			    (off_t)(p - rg->base), &err);
	else
		q = fz_mmap(p, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &err);
	if (q != p) {
		fz_finding("tracked region: mmap(MAP_FIXED) at %p failed: %s; "
			   "stopping", p, strerror(err));
		atomic_store(&fz->stop, 1);
		return false;
	}
	if (rg->kind == RK_HIDDEN && fz_madvise(p, len, MADV_DONTFORK))
		fz_finding("MADV_DONTFORK on a fresh mapping: %s",
			   strerror(errno));
	memset(p, byte, len);
	return true;
}

static void pick(struct fz_ctx *c, struct region *rg, int minpages,
		 char **p, size_t *len)
{
	size_t n = (size_t)minpages + fz_below(c, 9 - (uint64_t)minpages);

	*p = rg->base + fz_below(c, RPAGES - n + 1) * FZ_PG;
	*len = n * FZ_PG;
}

static int free_slot(struct region *rg)
{
	int s;

	for (s = 0; s < MAXLIVE; s++)
		if (rg->live[s] < 0)
			return s;
	return -1;
}

/* ENOBUFS on a ring that cannot be near full is a finding. */
static void check_enobufs(const char *what)
{
	uint64_t pending = __atomic_load_n(&T.hdr->producer, __ATOMIC_ACQUIRE) -
			   __atomic_load_n(&T.cons->head, __ATOMIC_ACQUIRE);

	if (pending < RING / 2)
		fz_finding("%s: ENOBUFS with %llu events pending in a ring of "
			   "%u and at most ~%d watches", what,
			   (unsigned long long)pending, RING,
			   NREGIONS * MAXLIVE + MAXUT);
}

/* ---- creating and retiring tracked watches --------------------------- */

/* A random tracked request inside the region; the rec gets its range. */
static void make_request(struct fz_ctx *c, struct region *rg, int i,
			 struct regwatch_watch *w)
{
	struct rec *rc = &T.recs[i];
	uintptr_t a, len;

	memset(w, 0, sizeof(*w));
	memset(rc, 0, sizeof(*rc));
	a = (uintptr_t)rg->base + fz_below(c, RPAGES - 4) * FZ_PG;
	len = (1 + fz_below(c, 4)) * FZ_PG;
	if (fz_pct(c, 25)) {
		a += fz_below(c, FZ_PG);
		len -= fz_below(c, FZ_PG);
	}
	w->addr = a;
	w->len = len;
	if (fz_pct(c, 33))
		w->flags |= REGWATCH_WATCH_STREAMING;
	if (fz_pct(c, 25))
		w->flags |= REGWATCH_WATCH_PROTECTION;
	if (fz_pct(c, 15))
		w->flags |= REGWATCH_WATCH_SOFT_DIRTY;
	w->cookie = TAG | (uint64_t)T.epoch << 32 | (uint64_t)i;
	rc->start = a & ~(FZ_PG - 1);
	rc->end = (a + len + FZ_PG - 1) & ~(FZ_PG - 1);
	rc->flags = w->flags;
	rc->cookie = w->cookie;
	rc->region = (int)(rg - T.reg);
	rc->want = BASE_CLASSES;
	if (w->flags & REGWATCH_WATCH_PROTECTION)
		rc->want |= REGWATCH_CLASS_PROTECTION;
	if (w->flags & REGWATCH_WATCH_SOFT_DIRTY)
		rc->want |= REGWATCH_CLASS_SOFT_DIRTY;
}

/* WATCH (or a WATCHV entry) for rec i succeeded: check and publish it. */
static void created(struct region *rg, int slot, int i,
		    const struct regwatch_watch *w)
{
	struct rec *rc = &T.recs[i];
	uint32_t s = REGWATCH_ID_SLOT(w->watch_id);
	uint32_t gen = REGWATCH_ID_GEN(w->watch_id);
	char d[200];

	rc->id = w->watch_id;
	rc->armed = w->armed_state;
	describe(rc, i, d, sizeof(d));
	if (s >= T.cfg.max_watches || !gen ||
	    w->armed_state != ((uint64_t)gen << 32 | REGWATCH_STATE_ARMED)) {
		fz_finding("%s: WATCH returned id %#llx armed %#llx", d,
			   (unsigned long long)w->watch_id,
			   (unsigned long long)w->armed_state);
		rc->id = 0;
		return;
	}
	rc->state = T.states + s;
	/*
	 * Nothing else of ours touches the region while we hold its lock:
	 * only the kernel's own work can have fired it (check_event).
	 */
	quiet_check(rc);
	rc->live = true;
	rg->live[slot] = i;
	atomic_fetch_add(&T.n_watch, 1);
}

static bool watch_error_ok(long r)
{
	return r == -ENOBUFS || r == -ENOSPC || r == -EDQUOT || r == -ENOMEM;
}

static void op_watch(struct fz_ctx *c, struct region *rg)
{
	struct regwatch_watch w;
	int slot = free_slot(rg), i;
	long r;

	if (slot < 0)
		return;
	i = atomic_fetch_add(&T.nrecs, 1);
	if (i >= EPOCH_RECS)
		return;
	make_request(c, rg, i, &w);
	r = fz_ioctl(T.fd, REGWATCH_IOC_WATCH, &w);
	if (r == 0) {
		created(rg, slot, i, &w);
	} else if (watch_error_ok(r)) {
		if (r == -ENOBUFS)
			check_enobufs("tracked WATCH");
	} else {
		fz_finding("tracked WATCH [%#llx, +%#llx) flags %#x: %s",
			   (unsigned long long)w.addr,
			   (unsigned long long)w.len, w.flags, strerror((int)-r));
	}
}

/* An entry that must fail with exactly the returned errno. */
static int bad_entry(struct fz_ctx *c, struct region *rg,
		     struct regwatch_watch *w)
{
	memset(w, 0, sizeof(*w));
	w->addr = (uintptr_t)rg->base;
	w->len = FZ_PG;
	w->cookie = fz_rand(c) & ~TAG;
	switch (fz_below(c, 6)) {
	case 0:
		w->len = 0;
		break;
	case 1:
		w->flags = 1U << (3 + fz_below(c, 29));
		break;
	case 2:
		w->reserved[fz_below(c, 2)] = fz_rand(c) | 1;
		break;
	case 3:
		w->addr = ~0ULL - FZ_PG + 1 + fz_below(c, FZ_PG);
		w->len = 2 * FZ_PG;
		break;
	case 4:
		w->addr = fz_task_size - FZ_PG;
		w->len = 2 * FZ_PG;
		break;
	default:
		w->addr = fz_task_size;
		w->len = 1;
		break;
	}
	return fz_watch_check(w);
}

static void op_watchv(struct fz_ctx *c, struct region *rg)
{
	struct regwatch_watch w[8];
	int expect[8], recidx[8], slots[8], n = 1 + (int)fz_below(c, 7);
	struct regwatch_batch b = { .entries = (uintptr_t)w };
	int k, good = 0, ok = 0;
	long r;

	for (k = 0; k < n; k++) {
		int slot = -1, i = -1, s;

		for (s = 0; s < MAXLIVE; s++) {
			bool used = rg->live[s] >= 0;
			int j;

			for (j = 0; j < k; j++)
				used |= slots[j] == s;
			if (!used) {
				slot = s;
				break;
			}
		}
		if (slot >= 0 && fz_pct(c, 60))
			i = atomic_fetch_add(&T.nrecs, 1);
		if (i >= 0 && i < EPOCH_RECS) {
			make_request(c, rg, i, &w[k]);
			expect[k] = 0;
			recidx[k] = i;
			slots[k] = slot;
			good++;
		} else {
			expect[k] = bad_entry(c, rg, &w[k]);
			recidx[k] = -1;
			slots[k] = -1;
		}
		if (fz_pct(c, 10))
			w[k].result = (int32_t)fz_rand(c);	/* out field */
	}
	b.count = (uint32_t)n;
	r = fz_ioctl(T.fd, REGWATCH_IOC_WATCHV, &b);
	atomic_fetch_add(&T.n_batch, 1);
	if (r < 0) {
		fz_finding("tracked WATCHV of %d: %s", n, strerror((int)-r));
		return;
	}
	for (k = 0; k < n; k++) {
		if (expect[k]) {
			if (w[k].result != -expect[k])
				fz_finding("WATCHV entry %d [%#llx, +%#llx) flags "
					   "%#x: result %d, expected -%d", k,
					   (unsigned long long)w[k].addr,
					   (unsigned long long)w[k].len,
					   w[k].flags, w[k].result, expect[k]);
			continue;
		}
		if (w[k].result == 0) {
			ok++;
			created(rg, slots[k], recidx[k], &w[k]);
		} else if (watch_error_ok(w[k].result)) {
			if (w[k].result == -ENOBUFS)
				check_enobufs("tracked WATCHV");
		} else {
			fz_finding("WATCHV entry %d (valid): %s", k,
				   strerror(-w[k].result));
		}
	}
	if (r != ok)
		fz_finding("WATCHV returned %ld, %d entries succeeded (%d valid)",
			   r, ok, good);
}

/* Check the state word, remember it, UNWATCH (done by the caller or here). */
static void retire_check(struct rec *rc, int i)
{
	char d[200];
	uint64_t w = word_of(rc);

	if (!rc->hit && !rc->maybe && w != rc->armed)
		quiet_check(rc);
	if (rc->hit && w == rc->armed) {
		describe(rc, i, d, sizeof(d));
		fz_finding("%s still armed after %d invalidations", d,
			   rc->nhit);
	}
	rc->final_word = word_of(rc);
}

static void retired(struct rec *rc)
{
	rc->live = false;
	atomic_store(&rc->retired, true);
}

static void retire(struct fz_ctx *c, struct region *rg, int s)
{
	int i = rg->live[s];
	struct rec *rc = &T.recs[i];
	struct regwatch_unwatch u = { .watch_id = rc->id };
	char d[200];
	long r;

	retire_check(rc, i);
	r = fz_ioctl(T.fd, REGWATCH_IOC_UNWATCH, &u);
	if (r) {
		describe(rc, i, d, sizeof(d));
		fz_finding("UNWATCH of live %s: %s", d, strerror((int)-r));
	}
	retired(rc);
	rg->live[s] = -1;
	if (c && fz_pct(c, 10)) {
		r = fz_ioctl(T.fd, REGWATCH_IOC_UNWATCH, &u);
		if (r != -ENOENT)
			fz_finding("second UNWATCH of %#llx: %ld, expected ENOENT",
				   (unsigned long long)rc->id, r);
	}
}

static void op_unwatch(struct fz_ctx *c, struct region *rg)
{
	int s = (int)fz_below(c, MAXLIVE);

	if (rg->live[s] >= 0)
		retire(c, rg, s);
}

/* A retired watch's id from this epoch, or 0. */
static uint64_t stale_id(struct fz_ctx *c)
{
	int n = atomic_load(&T.nrecs), k;

	if (n > EPOCH_RECS)
		n = EPOCH_RECS;
	for (k = 0; k < 4 && n > 0; k++) {
		struct rec *rc = &T.recs[fz_below(c, (uint64_t)n)];

		if (atomic_load(&rc->retired) && rc->id)
			return rc->id;
	}
	return 0;
}

static void op_unwatchv(struct fz_ctx *c, struct region *rg)
{
	struct regwatch_unwatch u[10];
	int expect[10], slot[10], n = 0, k, ok = 0, s;
	struct regwatch_batch b = { .entries = (uintptr_t)u };
	long r;

	memset(u, 0, sizeof(u));
	for (s = 0; s < MAXLIVE && n < 10; s++) {
		int i = rg->live[s];

		if (i < 0 || !fz_pct(c, 50))
			continue;
		if (fz_pct(c, 15)) {
			/* bad padding: must fail and leave the watch alone */
			u[n].watch_id = T.recs[i].id;
			u[n].pad = (uint32_t)fz_rand(c) | 1;
			expect[n] = EINVAL;
			slot[n++] = -1;
			continue;
		}
		retire_check(&T.recs[i], i);
		u[n].watch_id = T.recs[i].id;
		expect[n] = 0;
		slot[n++] = s;
	}
	while (n < 10 && fz_pct(c, 50)) {
		uint64_t id = stale_id(c);

		switch (fz_below(c, 3)) {
		case 0:
			id = 0;
			break;
		case 1:
			id = (uint64_t)fz_below(c, 1U << 20) << 32 |
			     (T.cfg.max_watches + fz_below(c, 1000));
			break;
		}
		u[n].watch_id = id;
		expect[n] = ENOENT;
		slot[n++] = -1;
	}
	if (!n)
		return;
	b.count = (uint32_t)n;
	r = fz_ioctl(T.fd, REGWATCH_IOC_UNWATCHV, &b);
	atomic_fetch_add(&T.n_batch, 1);
	if (r < 0) {
		fz_finding("tracked UNWATCHV of %d: %s", n, strerror((int)-r));
		/* Nothing was removed: put the watches back in the model. */
		return;
	}
	for (k = 0; k < n; k++) {
		if (u[k].result != -expect[k])
			fz_finding("UNWATCHV entry %d id %#llx pad %#x: result %d, "
				   "expected %d", k,
				   (unsigned long long)u[k].watch_id, u[k].pad,
				   u[k].result, -expect[k]);
		if (!u[k].result)
			ok++;
		if (slot[k] >= 0) {
			retired(&T.recs[rg->live[slot[k]]]);
			rg->live[slot[k]] = -1;
		}
	}
	if (r != ok)
		fz_finding("UNWATCHV returned %ld, %d entries succeeded", r, ok);
}

/* ---- invalidating operations (region locked) -------------------------- */

static void op_zap(struct fz_ctx *c, struct region *rg)
{
	int adv = rg->kind != RK_MEMFD && fz_pct(c, 30) ? MADV_FREE :
						       MADV_DONTNEED;
	const char *what = adv == MADV_FREE ? "MADV_FREE" : "MADV_DONTNEED";
	size_t len;
	char *p;
	int r;

	pick(c, rg, 1, &p, &len);
	r = fz_madvise(p, len, adv);
	if (r) {
		fz_finding("%s on a tracked region: %s", what, strerror(-r));
		return;
	}
	invalidated(rg, (uintptr_t)p, (uintptr_t)p + len,
		    REGWATCH_CLASS_CLEAR, false, what);
	memset(p, (int)fz_below(c, 256), len);
}

static void op_unmap_remap(struct fz_ctx *c, struct region *rg)
{
	size_t len;
	char *p;
	int r;

	pick(c, rg, 1, &p, &len);
	r = fz_munmap(p, len);
	if (r) {
		fz_finding("munmap of a tracked region: %s", strerror(-r));
		return;
	}
	invalidated(rg, (uintptr_t)p, (uintptr_t)p + len,
		    REGWATCH_CLASS_UNMAP, false, "munmap");
	remap(rg, p, len, (int)fz_below(c, 256));
}

static void op_map_over(struct fz_ctx *c, struct region *rg)
{
	size_t len;
	char *p;

	pick(c, rg, 1, &p, &len);
	if (remap(rg, p, len, (int)fz_below(c, 256)))
		invalidated(rg, (uintptr_t)p, (uintptr_t)p + len,
			    REGWATCH_CLASS_UNMAP, false, "mmap over");
}

/* After a failed mremap: the range must be intact; repair it if not. */
static void ensure_mapped(struct region *rg, char *p, size_t len)
{
	unsigned char vec[16];

	if (mincore(p, len, vec) == 0)
		return;
	fz_finding("tracked region lost pages after a failed mremap");
	invalidated(rg, (uintptr_t)p, (uintptr_t)p + len,
		    REGWATCH_CLASS_UNMAP | REGWATCH_CLASS_CLEAR, true, "repair");
	remap(rg, p, len, 0);
}

static void op_mremap(struct fz_ctx *c, struct region *rg)
{
	int how = (int)fz_below(c, 3), err;
	size_t len;
	char *p;
	void *q;

	pick(c, rg, how == 1 ? 2 : 1, &p, &len);
	if (how == 0) {		/* move away and back */
		q = fz_mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
			      c->tmp, &err);
		if (q == MAP_FAILED) {
			/* EFAULT: the range spans two mappings. */
			if (err != EFAULT)
				fz_finding("mremap move: %s", strerror(err));
			ensure_mapped(rg, p, len);
			invalidated(rg, (uintptr_t)p, (uintptr_t)p + len, 0,
				    false, "failed mremap");
			return;
		}
		invalidated(rg, (uintptr_t)p, (uintptr_t)p + len,
			    REGWATCH_CLASS_UNMAP, false, "mremap move");
		q = fz_mremap(c->tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
			      p, &err);
		if (q != p) {
			fz_finding("mremap back to %p: %s", p, strerror(err));
			fz_munmap(c->tmp, len);
			remap(rg, p, len, 0);
		}
	} else if (how == 1) {	/* shrink in place: the tail goes */
		size_t k = (1 + fz_below(c, len / FZ_PG - 1)) * FZ_PG;

		q = fz_mremap(p, len, len - k, 0, NULL, &err);
		if (q != p) {
			fz_finding("mremap shrink: %s", strerror(err));
			ensure_mapped(rg, p, len);
			return;
		}
		invalidated(rg, (uintptr_t)p + len - k, (uintptr_t)p + len,
			    REGWATCH_CLASS_UNMAP, false, "mremap shrink");
		remap(rg, p + len - k, k, (int)fz_below(c, 256));
	} else {		/* DONTUNMAP: page tables move, the VMA stays */
		q = fz_mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED |
			      MREMAP_DONTUNMAP, c->tmp, &err);
		if (q == MAP_FAILED) {
			if (err != EFAULT && err != EINVAL)
				fz_finding("mremap DONTUNMAP: %s", strerror(err));
			ensure_mapped(rg, p, len);
			invalidated(rg, (uintptr_t)p, (uintptr_t)p + len, 0,
				    false, "failed mremap");
			return;
		}
		invalidated(rg, (uintptr_t)p, (uintptr_t)p + len,
			    REGWATCH_CLASS_UNMAP, false, "mremap DONTUNMAP");
		fz_munmap(c->tmp, len);
		memset(p, (int)fz_below(c, 256), len);
	}
}

static void op_mprotect(struct fz_ctx *c, struct region *rg)
{
	int prot = fz_pct(c, 70) ? PROT_READ : PROT_NONE, r;
	size_t len;
	char *p;

	pick(c, rg, 1, &p, &len);
	r = fz_mprotect(p, len, prot);
	if (r) {
		fz_finding("mprotect of a tracked region: %s", strerror(-r));
		return;
	}
	invalidated(rg, (uintptr_t)p, (uintptr_t)p + len,
		    REGWATCH_CLASS_PROTECTION, false,
		    prot == PROT_NONE ? "mprotect NONE" : "mprotect READ");
	r = fz_mprotect(p, len, PROT_READ | PROT_WRITE);
	if (r) {
		fz_finding("mprotect back: %s; stopping", strerror(-r));
		atomic_store(&fz->stop, 1);
		return;
	}
	invalidated(rg, (uintptr_t)p, (uintptr_t)p + len,
		    REGWATCH_CLASS_PROTECTION, false, "mprotect RW");
}

static void op_memfd(struct fz_ctx *c, struct region *rg)
{
	int how = (int)fz_below(c, 3), r;
	size_t len;
	char *p;

	if (rg->kind != RK_MEMFD) {
		op_zap(c, rg);
		return;
	}
	pick(c, rg, 1, &p, &len);
	if (how == 0) {
		fz_count(CAT_MM);
		r = fallocate(rg->memfd, FALLOC_FL_PUNCH_HOLE |
			      FALLOC_FL_KEEP_SIZE, p - rg->base, (off_t)len) ?
			    -errno : 0;
		if (r) {
			fz_finding("PUNCH_HOLE: %s", strerror(-r));
			return;
		}
		invalidated(rg, (uintptr_t)p, (uintptr_t)p + len,
			    REGWATCH_CLASS_CLEAR, false, "punch hole");
	} else if (how == 1) {
		r = fz_madvise(p, len, MADV_REMOVE);
		if (r) {
			fz_finding("MADV_REMOVE: %s", strerror(-r));
			return;
		}
		invalidated(rg, (uintptr_t)p, (uintptr_t)p + len,
			    REGWATCH_CLASS_CLEAR, false, "MADV_REMOVE");
	} else {
		off_t keep = (off_t)fz_below(c, RPAGES) * (off_t)FZ_PG;

		fz_count(CAT_MM);
		if (ftruncate(rg->memfd, keep)) {
			fz_finding("ftruncate: %s", strerror(errno));
			return;
		}
		invalidated(rg, (uintptr_t)rg->base + (uintptr_t)keep,
			    (uintptr_t)rg->base + RBYTES, REGWATCH_CLASS_CLEAR,
			    false, "ftruncate");
		fz_count(CAT_MM);
		if (ftruncate(rg->memfd, RBYTES)) {
			fz_finding("ftruncate back: %s; stopping",
				   strerror(errno));
			atomic_store(&fz->stop, 1);
			return;
		}
		p = rg->base + keep;
		len = RBYTES - (size_t)keep;
	}
	memset(p, (int)fz_below(c, 256), len);
}

/* Calls that must fire nothing at all. */
static void op_nofire(struct fz_ctx *c, struct region *rg)
{
	static const int adv[] = {
		MADV_COLD, MADV_WILLNEED, MADV_POPULATE_WRITE,
		MADV_POPULATE_READ, MADV_RANDOM, MADV_SEQUENTIAL, MADV_NORMAL,
	};
	static const char *const advname[] = {
		"MADV_COLD", "MADV_WILLNEED", "MADV_POPULATE_WRITE",
		"MADV_POPULATE_READ", "MADV_RANDOM", "MADV_SEQUENTIAL",
		"MADV_NORMAL",
	};
	const char *what;
	unsigned char vec[16];
	size_t len;
	char *p;
	int k = (int)fz_below(c, 10), r = 0;

	pick(c, rg, 1, &p, &len);
	if (k < 7) {
		what = advname[k];
		r = fz_madvise(p, len, adv[k]);
		if (adv[k] == MADV_RANDOM || adv[k] == MADV_SEQUENTIAL)
			fz_madvise(p, len, MADV_NORMAL);
	} else if (k == 7) {
		what = "mlock+munlock";
		fz_count(CAT_MM);
		r = mlock(p, len) ? -errno : 0;
		fz_count(CAT_MM);
		if (!r && munlock(p, len))
			r = -errno;
	} else if (k == 8) {
		what = "msync";
		fz_count(CAT_MM);
		r = msync(p, len, fz_pct(c, 50) ? MS_SYNC : MS_ASYNC) ? -errno : 0;
	} else {
		what = "mincore";
		fz_count(CAT_MM);
		r = mincore(p, len, vec) ? -errno : 0;
	}
	/* mlock may hit RLIMIT_MEMLOCK outside the test guest. */
	if (r && r != -ENOMEM && r != -EPERM && r != -EAGAIN)
		fz_finding("%s on a tracked region: %s", what, strerror(-r));
	invalidated(rg, (uintptr_t)p, (uintptr_t)p + len, 0, false, what);
}

void trk_op(struct fz_ctx *c)
{
	struct region *rg;
	int op;

	if (!T.active)
		return;
	if (atomic_load(&T.nrecs) >= EPOCH_RECS) {
		epoch_end(false);
		return;
	}
	rg = &T.reg[fz_below(c, NREGIONS)];
	op = (int)fz_below(c, 100);
	pthread_rwlock_rdlock(&T.global);
	pthread_mutex_lock(&rg->lock);
	if (op < 26)
		op_watch(c, rg);
	else if (op < 32)
		op_watchv(c, rg);
	else if (op < 44)
		op_unwatch(c, rg);
	else if (op < 48)
		op_unwatchv(c, rg);
	else if (op < 57)
		op_zap(c, rg);
	else if (op < 63)
		op_unmap_remap(c, rg);
	else if (op < 68)
		op_map_over(c, rg);
	else if (op < 77)
		op_mremap(c, rg);
	else if (op < 85)
		op_mprotect(c, rg);
	else if (op < 92)
		op_memfd(c, rg);
	else
		op_nofire(c, rg);
	pthread_mutex_unlock(&rg->lock);
	pthread_rwlock_unlock(&T.global);
}

/* ---- whole-process operations ---------------------------------------- */

static void global_fork(struct fz_ctx *c)
{
	struct region *rg;
	int r, s, i;
	pid_t pid;

	pthread_rwlock_wrlock(&T.global);
	pid = proc_fork_child(c);
	if (pid <= 0) {
		pthread_rwlock_unlock(&T.global);
		return;
	}
	atomic_fetch_add(&T.n_fork, 1);
	/*
	 * fork write-protected every private VMA with pages (PROTECTION_PAGE
	 * over the whole VMA): the PROTECTION watches of exposed regions
	 * fired before fork returned; nothing else did.
	 */
	for (r = 0; r < NREGIONS; r++) {
		rg = &T.reg[r];
		for (s = 0; s < MAXLIVE; s++) {
			struct rec *rc;

			if ((i = rg->live[s]) < 0)
				continue;
			rc = &T.recs[i];
			if (rg->kind == RK_EXPOSED &&
			    (rc->want & REGWATCH_CLASS_PROTECTION)) {
				add_range(rc, rc->start, rc->end,
					  REGWATCH_CLASS_PROTECTION);
				rc->hit = true;
				rc->nhit++;
				if (is_armed(rc)) {
					char d[200];

					describe(rc, i, d, sizeof(d));
					fz_finding("%s still valid after fork "
						   "(PROTECTION_PAGE)", d);
				}
			} else {
				quiet_check(rc);
			}
		}
	}
	/*
	 * Write every exposed page now, so that later writes never copy on
	 * write (that copy fires CLEAR, and whether it copies depends on
	 * the child): what this may fire is unknown.
	 */
	for (r = 0; r < NREGIONS; r++) {
		rg = &T.reg[r];
		if (rg->kind != RK_EXPOSED)
			continue;
		for (s = 0; s < RPAGES; s++) {
			volatile char *b = rg->base + (size_t)s * FZ_PG;

			*b = *b;
		}
		invalidated(rg, (uintptr_t)rg->base,
			    (uintptr_t)rg->base + RBYTES, REGWATCH_CLASS_CLEAR,
			    true, "copy-on-write after fork");
	}
	pthread_rwlock_unlock(&T.global);
}

static void global_clear_refs(struct fz_ctx *c)
{
	bool soft = fz_pct(c, 75);
	const char *v = soft ? "4" : fz_pct(c, 50) ? "1" : "5";
	int fd, r, s, i;
	ssize_t w;

	pthread_rwlock_wrlock(&T.global);
	fd = fz_open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		pthread_rwlock_unlock(&T.global);
		return;
	}
	fz_count(CAT_FILE);
	w = write(fd, v, 1);
	fz_close(fd);
	if (w != 1) {
		fz_finding("clear_refs %s: %s", v, strerror(errno));
		pthread_rwlock_unlock(&T.global);
		return;
	}
	if (soft)
		atomic_fetch_add(&T.n_softdirty, 1);
	for (r = 0; r < NREGIONS; r++) {
		struct region *rg = &T.reg[r];

		for (s = 0; s < MAXLIVE; s++) {
			struct rec *rc;

			if ((i = rg->live[s]) < 0)
				continue;
			rc = &T.recs[i];
			if (soft && (rc->want & REGWATCH_CLASS_SOFT_DIRTY)) {
				/* range [0, ULONG_MAX]: the whole watch */
				add_range(rc, rc->start, rc->end,
					  REGWATCH_CLASS_SOFT_DIRTY);
				rc->hit = true;
				rc->nhit++;
				if (is_armed(rc)) {
					char d[200];

					describe(rc, i, d, sizeof(d));
					fz_finding("%s still valid after "
						   "clear_refs soft-dirty", d);
				}
			} else {
				quiet_check(rc);
			}
		}
	}
	pthread_rwlock_unlock(&T.global);
}

void trk_global_op(struct fz_ctx *c)
{
	if (!T.active)
		return;
	if (fzc.no_fork || fz_pct(c, 40))
		global_clear_refs(c);
	else
		global_fork(c);
}

/* ---- untracked watches and counters from other threads ----------------- */

static struct ut *ut_find(uint64_t id)
{
	size_t k;

	for (k = 0; k < T.nut; k++)
		if (T.ut[k].id == id)
			return &T.ut[k];
	return NULL;
}

void trk_random_watch(struct fz_ctx *c)
{
	struct regwatch_watch w;
	long r;
	int e;

	if (!T.active)
		return;
	pthread_rwlock_rdlock(&T.global);
	pthread_mutex_lock(&T.ut_lock);
	if (T.ut_live && (T.ut_live >= MAXUT || fz_pct(c, 35))) {
		size_t k = fz_below(c, T.nut);

		while (!T.ut[k].live)
			k = (k + 1) % T.nut;
		if (fz_pct(c, 50)) {
			struct regwatch_unwatch u = { .watch_id = T.ut[k].id };

			r = fz_ioctl(T.fd, REGWATCH_IOC_UNWATCH, &u);
		} else {
			struct regwatch_unwatch u[2] = {
				{ .watch_id = T.ut[k].id },
				{ .watch_id = 0 },
			};
			struct regwatch_batch b = {
				.entries = (uintptr_t)u, .count = 2,
			};

			r = fz_ioctl(T.fd, REGWATCH_IOC_UNWATCHV, &b);
			if (r == 1 && u[0].result == 0 &&
			    u[1].result == -ENOENT)
				r = 0;
			else
				r = r < 0 ? r : -EPROTO;
		}
		if (r)
			fz_finding("UNWATCH of an untracked watch %#llx: %s",
				   (unsigned long long)T.ut[k].id,
				   strerror((int)-r));
		T.ut[k].live = false;
		T.ut_live--;
		goto out;
	}
	memset(&w, 0, sizeof(w));
	fz_random_range(c, &w.addr, &w.len);
	w.cookie = fz_rand(c) & ~TAG;
	w.flags = (uint32_t)fz_below(c, 8);
	if (!fz_pct(c, 30))
		w.flags &= ~REGWATCH_WATCH_STREAMING;
	if (fz_pct(c, 8))
		w.flags |= 1U << (3 + fz_below(c, 29));
	if (fz_pct(c, 5))
		w.reserved[fz_below(c, 2)] = fz_rand(c) | 1;
	e = fz_watch_check(&w);
	r = fz_ioctl(T.fd, REGWATCH_IOC_WATCH, &w);
	if (e) {
		if (r != -e)
			fz_finding("WATCH [%#llx, +%#llx) flags %#x reserved "
				   "%#llx/%#llx: %ld, expected -%d",
				   (unsigned long long)w.addr,
				   (unsigned long long)w.len, w.flags,
				   (unsigned long long)w.reserved[0],
				   (unsigned long long)w.reserved[1], r, e);
		goto out;
	}
	if (r) {
		if (!watch_error_ok(r))
			fz_finding("WATCH [%#llx, +%#llx) flags %#x: %s",
				   (unsigned long long)w.addr,
				   (unsigned long long)w.len, w.flags,
				   strerror((int)-r));
		else if (r == -ENOBUFS)
			check_enobufs("untracked WATCH");
		goto out;
	}
	atomic_fetch_add(&T.n_ut, 1);
	if (T.nut == T.utcap) {
		size_t cap = T.utcap ? T.utcap * 2 : 256;
		void *p = realloc(T.ut, cap * sizeof(*T.ut));

		if (!p)
			goto out;
		T.ut = p;
		T.utcap = cap;
	}
	T.ut[T.nut++] = (struct ut){
		.id = w.watch_id, .cookie = w.cookie, .flags = w.flags,
		.start = w.addr & ~(FZ_PG - 1),
		.end = (w.addr + w.len + FZ_PG - 1) & ~(FZ_PG - 1),
		.live = true,
	};
	T.ut_live++;
	if (w.armed_state != ((uint64_t)REGWATCH_ID_GEN(w.watch_id) << 32 |
			      REGWATCH_STATE_ARMED) ||
	    REGWATCH_ID_SLOT(w.watch_id) >= T.cfg.max_watches)
		fz_finding("WATCH returned id %#llx armed %#llx",
			   (unsigned long long)w.watch_id,
			   (unsigned long long)w.armed_state);
out:
	pthread_mutex_unlock(&T.ut_lock);
	pthread_rwlock_unlock(&T.global);
}

static uint64_t sum_classes(const struct regwatch_stats *st)
{
	uint64_t s = 0;
	int k;

	for (k = 0; k < 8; k++)
		s += st->by_class[k];
	return s;
}

void trk_stats_probe(struct fz_ctx *c)
{
	struct regwatch_stats st;
	uint64_t p1, p2, g1, g2, o1, o2;
	long r;

	if (!T.active)
		return;
	memset(&st, 0xa5, sizeof(st));
	st.size = sizeof(st);
	st.pad = 0;
	p1 = __atomic_load_n(&T.hdr->producer, __ATOMIC_ACQUIRE);
	g1 = __atomic_load_n(&T.hdr->generation, __ATOMIC_ACQUIRE);
	o1 = __atomic_load_n(&T.hdr->overflows, __ATOMIC_ACQUIRE);
	r = fz_ioctl(T.fd, REGWATCH_IOC_STATS, &st);
	p2 = __atomic_load_n(&T.hdr->producer, __ATOMIC_ACQUIRE);
	g2 = __atomic_load_n(&T.hdr->generation, __ATOMIC_ACQUIRE);
	o2 = __atomic_load_n(&T.hdr->overflows, __ATOMIC_ACQUIRE);
	(void)c;
	if (r) {
		fz_finding("STATS on the tracked monitor: %s", strerror((int)-r));
		return;
	}
	if (st.size != sizeof(st) || st.pad)
		fz_finding("STATS size %u pad %u", st.size, st.pad);
	if (st.events < p1 || st.events > p2)
		fz_finding("STATS events %llu outside the producer's [%llu, %llu]",
			   (unsigned long long)st.events,
			   (unsigned long long)p1, (unsigned long long)p2);
	if (sum_classes(&st) < g1 || sum_classes(&st) > g2)
		fz_finding("STATS by_class sum %llu outside the generation's "
			   "[%llu, %llu]", (unsigned long long)sum_classes(&st),
			   (unsigned long long)g1, (unsigned long long)g2);
	if (st.overflows < o1 || st.overflows > o2)
		fz_finding("STATS overflows %llu outside the header's [%llu, %llu]",
			   (unsigned long long)st.overflows,
			   (unsigned long long)o1, (unsigned long long)o2);
	if (st.watches > T.cfg.max_watches ||
	    st.oneshot_reserved > T.cfg.ring_entries ||
	    st.module_watches < st.watches || st.user_watches < st.watches ||
	    st.module_monitors < 1 || st.module_pages < 2 ||
	    st.module_watches > (1ULL << 40) || st.module_pages > (1ULL << 40))
		fz_finding("STATS implausible: watches %llu reserved %llu module "
			   "monitors %llu watches %llu pages %llu user %llu",
			   (unsigned long long)st.watches,
			   (unsigned long long)st.oneshot_reserved,
			   (unsigned long long)st.module_monitors,
			   (unsigned long long)st.module_watches,
			   (unsigned long long)st.module_pages,
			   (unsigned long long)st.user_watches);
}

/* ---- draining --------------------------------------------------------- */

static void keep_event(const struct regwatch_event *ev)
{
	if (T.nev == T.evcap) {
		size_t cap = T.evcap ? T.evcap * 2 : 4096;
		void *p = realloc(T.ev, cap * sizeof(*ev));

		if (!p) {
			fz_finding("out of memory for events");
			atomic_store(&fz->stop, 1);
			return;
		}
		T.ev = p;
		T.evcap = cap;
	}
	T.ev[T.nev++] = *ev;
	T.drained++;
	atomic_fetch_add(&T.n_events, 1);
	if (ev->type == REGWATCH_EVENT_RESYNC)
		T.resyncs++;
}

static int collect_cb(const struct regwatch_event *ev, void *arg)
{
	(void)arg;
	keep_event(ev);
	return 0;
}

/* Caller holds drain_lock. */
static void drain_ring(void)
{
	/* No system call: counted apart from the calls. */
	int r = regwatch_drain(T.rw, collect_cb, NULL);

	atomic_fetch_add(&T.n_drains, 1);
	if (r < 0)
		fz_finding("regwatch_drain: %s", strerror(-r));
}

/* read(2) with a random size and buffer. Caller holds drain_lock. */
static void drain_read(struct fz_ctx *c)
{
	const size_t es = sizeof(struct regwatch_event);
	size_t n = fz_below(c, 13), size = n * es, k;
	bool valid = true, straddle = false;
	char *buf = c->scratch;
	long r;

	if (fz_pct(c, 30))
		size += fz_below(c, es);
	if (fz_pct(c, 5))
		size = 1ULL << (20 + fz_below(c, 40));	/* huge */
	switch (fz_below(c, 10)) {
	case 0:
		buf = NULL;
		valid = false;
		break;
	case 1:
		buf = c->ro;
		valid = false;
		break;
	case 2:
		/* Whole events fit before the guard page, then one half. */
		buf = c->scratch_end - (n ? n - 1 : 0) * es - es / 2;
		straddle = true;
		break;
	default:
		break;
	}
	if (valid && !straddle && size > FZ_SCRATCH_LEN)
		size = FZ_SCRATCH_LEN;
	atomic_fetch_add(&T.n_reads, 1);
	r = fz_read(T.fd, buf, size);
	if (size < es) {
		if (r != -EINVAL)
			fz_finding("read(%zu) of a monitor: %ld, expected EINVAL",
				   size, r);
		return;
	}
	if (r == -EAGAIN)
		return;
	if (r < 0) {
		if (r != -EFAULT || (valid && !straddle))
			fz_finding("read(%p, %zu) of a monitor: %s", buf, size,
				   strerror((int)-r));
		return;
	}
	if ((size_t)r % es || (size_t)r > size || !valid)
		fz_finding("read(%p, %zu) of a monitor returned %ld", buf, size,
			   r);
	if (!valid)
		return;
	for (k = 0; k + es <= (size_t)r; k += es) {
		struct regwatch_event ev;

		memcpy(&ev, buf + k, es);
		keep_event(&ev);
	}
}

/* An implausible consumer head must be ignored. Caller holds drain_lock. */
static void garbage_head(struct fz_ctx *c)
{
	uint64_t h = __atomic_load_n(&T.cons->head, __ATOMIC_ACQUIRE);
	uint64_t p = __atomic_load_n(&T.hdr->producer, __ATOMIC_ACQUIRE);
	uint64_t g = fz_pct(c, 50) ? h - (1ULL << 40) - fz_below(c, 1000) :
				     p + (1ULL << 40) + fz_below(c, 1000);
	short rev = 0;

	atomic_fetch_add(&T.n_garbage_heads, 1);
	__atomic_store_n(&T.cons->head, g, __ATOMIC_RELEASE);
	fz_poll(T.fd, POLLIN, 0, &rev);	/* the kernel looks at the head */
	__atomic_store_n(&T.cons->head, h, __ATOMIC_RELEASE);
	if (p != h && !(rev & POLLIN))
		fz_finding("poll without POLLIN while %llu events are pending",
			   (unsigned long long)(p - h));
}

static void drain_poll(struct fz_ctx *c)
{
	short rev = 0;
	int r = fz_poll(T.fd, POLLIN, (int)fz_below(c, 3), &rev);

	if (r < 0)
		fz_finding("poll of the tracked monitor: %s", strerror(-r));
	if (rev & (POLLERR | POLLNVAL))
		fz_finding("poll of the tracked monitor: revents %#x", rev);
	if ((rev & POLLIN) &&
	    __atomic_load_n(&T.hdr->producer, __ATOMIC_ACQUIRE) ==
	    __atomic_load_n(&T.cons->head, __ATOMIC_ACQUIRE))
		fz_finding("POLLIN but no event pending");
}

static void *drainer_fn(void *arg)
{
	struct fz_ctx *c = arg;
	uint64_t v;

	fz_self = c;
	c->op = "drainer";
	while (!atomic_load(&T.drainer_stop)) {
		int m = (int)fz_below(c, 100);

		pthread_mutex_lock(&T.drain_lock);
		if (m < 70)
			drain_ring();
		else if (m < 88)
			drain_read(c);
		else if (m < 94)
			garbage_head(c);
		else
			drain_poll(c);
		pthread_mutex_unlock(&T.drain_lock);
		if (read(T.efd, &v, sizeof(v)) == sizeof(v))
			T.efd_total += v;
		if (fz_pct(c, 1)) {
			int nfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
			int r = regwatch_set_eventfd(T.rw, nfd);

			fz_count(CAT_IOCTL);
			if (r)
				fz_finding("SET_EVENTFD: %s", strerror(-r));
			if (read(T.efd, &v, sizeof(v)) == sizeof(v))
				T.efd_total += v;
			close(T.efd);
			T.efd = nfd;
		}
		usleep(100 + (useconds_t)fz_below(c, 1500));
	}
	return NULL;
}

/* ---- epochs: stop the world and check everything ---------------------- */

/* Does the event overlap one of the invalidations the oracle saw? */
static bool overlaps_hit(const struct rec *rc, const struct regwatch_event *ev)
{
	int k;

	if (rc->nrange > MAXR)
		return true;		/* too many to tell: accept */
	for (k = 0; k < rc->nrange; k++)
		if (ev->start < rc->he[k] && rc->hs[k] < ev->end)
			return true;
	return false;
}

static void check_event(const struct regwatch_event *ev, size_t e)
{
	uint32_t ep = (uint32_t)(ev->cookie >> 32) & 0x7fffffff;
	uint32_t i = (uint32_t)ev->cookie;
	struct rec *rc;
	char d[200];

	if (ev->type == REGWATCH_EVENT_RESYNC) {
		if (ev->watch_id || ev->cookie)
			fz_finding("RESYNC event with id %#llx cookie %#llx",
				   (unsigned long long)ev->watch_id,
				   (unsigned long long)ev->cookie);
		return;
	}
	if (ev->type != REGWATCH_EVENT_INVALIDATE || !ev->class ||
	    (ev->class & (ev->class - 1)) || ev->class >= 1U << REGWATCH_NR_CLASSES ||
	    ev->start >= ev->end || (ev->start | ev->end) & (FZ_PG - 1) ||
	    ev->flags & ~(uint32_t)(REGWATCH_EVENT_ONESHOT |
				     REGWATCH_EVENT_BACKGROUND) || ev->pad) {
		fz_finding("event %zu malformed: type %u class %#x flags %#x pad "
			   "%u id %#llx [%#llx, %#llx)", e, ev->type, ev->class,
			   ev->flags, ev->pad, (unsigned long long)ev->watch_id,
			   (unsigned long long)ev->start,
			   (unsigned long long)ev->end);
		return;
	}
	if (!(ev->cookie & TAG)) {
		struct ut *u = ut_find(ev->watch_id);

		if (!u || u->cookie != ev->cookie || ev->start < u->start ||
		    ev->end > u->end ||
		    !(ev->flags & REGWATCH_EVENT_ONESHOT) !=
			    !!(u->flags & REGWATCH_WATCH_STREAMING))
			fz_finding("event %zu id %#llx cookie %#llx [%#llx, "
				   "%#llx) belongs to no watch the fuzzer made "
				   "(%s)", e, (unsigned long long)ev->watch_id,
				   (unsigned long long)ev->cookie,
				   (unsigned long long)ev->start,
				   (unsigned long long)ev->end,
				   u ? "mismatch" : "unknown id");
		return;
	}
	if (ep != T.epoch || i >= (uint32_t)atomic_load(&T.nrecs) ||
	    i >= EPOCH_RECS) {
		fz_finding("event %zu with a tracked cookie %#llx of no watch of "
			   "epoch %u", e, (unsigned long long)ev->cookie,
			   T.epoch);
		return;
	}
	rc = &T.recs[i];
	rc->events++;
	if (ev->flags & REGWATCH_EVENT_BACKGROUND)
		rc->bg_events++;
	describe(rc, (int)i, d, sizeof(d));
	if (ev->watch_id != rc->id) {
		fz_finding("%s: event %zu carries id %#llx", d, e,
			   (unsigned long long)ev->watch_id);
		return;
	}
	/* The kernel's own work (reclaim, compaction, KSM...) may fire any
	 * watch, touched or not; nothing else may fire an untouched one. */
	if ((ev->flags & REGWATCH_EVENT_BACKGROUND) &&
	    ev->class == REGWATCH_CLASS_CLEAR &&
	    !(ev->flags & REGWATCH_EVENT_ONESHOT) !=
		    !(rc->flags & REGWATCH_WATCH_STREAMING) &&
	    ev->start >= rc->start && ev->end <= rc->end &&
	    (!(rc->classes & REGWATCH_CLASS_CLEAR) || !overlaps_hit(rc, ev))) {
		fz_noise("%s: CLEAR [%#llx, %#llx) made by the kernel on its "
			 "own", d, (unsigned long long)ev->start,
			 (unsigned long long)ev->end);
		atomic_fetch_add(&T.n_background, 1);
		return;
	}
	if (!rc->nrange) {
		fz_finding("%s got an event (class %#x flags %#x, [%#llx, "
			   "%#llx)) but nothing we did touched it", d,
			   ev->class, ev->flags,
			   (unsigned long long)ev->start,
			   (unsigned long long)ev->end);
		return;
	}
	if (!(ev->class & rc->classes) ||
	    !!(ev->flags & REGWATCH_EVENT_ONESHOT) !=
		    !(rc->flags & REGWATCH_WATCH_STREAMING) ||
	    ev->start < rc->start || ev->end > rc->end) {
		fz_finding("%s (classes seen %#x): bad event class %#x flags %#x "
			   "[%#llx, %#llx)", d, rc->classes, ev->class,
			   ev->flags, (unsigned long long)ev->start,
			   (unsigned long long)ev->end);
		return;
	}
	if (overlaps_hit(rc, ev))
		return;
	fz_finding("%s: event [%#llx, %#llx) class %#x overlaps none of its %d "
		   "invalidations", d, (unsigned long long)ev->start,
		   (unsigned long long)ev->end, ev->class, rc->nrange);
}

static void check_rec(struct rec *rc, int i)
{
	bool oneshot = !(rc->flags & REGWATCH_WATCH_STREAMING);
	uint64_t w = rc->final_word;
	uint32_t st = w & REGWATCH_STATE_MASK;
	uint64_t count = w >> REGWATCH_STATE_COUNT_SHIFT & COUNT_MASK;
	bool fired = w != rc->armed;
	char d[200];

	describe(rc, i, d, sizeof(d));
	if ((w >> 32) != REGWATCH_ID_GEN(rc->id) ||
	    (oneshot ? (fired ? st != REGWATCH_STATE_FIRED || count != 1 :
				st != REGWATCH_STATE_ARMED) :
		       st != REGWATCH_STATE_ARMED))
		fz_finding("%s: state word %#llx at UNWATCH (armed %#llx)", d,
			   (unsigned long long)w,
			   (unsigned long long)rc->armed);
	/*
	 * final_word was read before UNWATCH: the kernel's own work (and
	 * only that: we held the region) may fire it in between, with
	 * BACKGROUND events the word did not count.
	 */
	if (oneshot && rc->events != (fired ? 1 : 0) &&
	    !(!fired && rc->events == 1 && rc->bg_events == 1))
		fz_finding("%s: one-shot, %s, got %d events (%d hits)", d,
			   fired ? "fired" : "armed", rc->events, rc->nhit);
	if (!oneshot && !T.resyncs &&
	    ((uint64_t)rc->events < count ||
	     (uint64_t)rc->events > count + (uint64_t)rc->bg_events))
		fz_finding("%s: streaming, state count %llu, %d events (%d "
			   "the kernel's own)", d, (unsigned long long)count,
			   rc->events, rc->bg_events);
	if (!oneshot && count < (uint64_t)rc->nhit && !T.resyncs)
		fz_finding("%s: streaming, state count %llu after %d hits", d,
			   (unsigned long long)count, rc->nhit);
	if (rc->maybe)
		atomic_fetch_add(&T.n_unknown, 1);
	else if (rc->hit)
		atomic_fetch_add(&T.n_fired, 1);
	else
		atomic_fetch_add(&T.n_quiet, 1);
}

static void epoch_end(bool final)
{
	struct regwatch_stats st;
	uint64_t prod, gen;
	int r, s, i, n;
	size_t e, k;
	long ret;

	pthread_rwlock_wrlock(&T.global);
	if (!final && atomic_load(&T.nrecs) < EPOCH_RECS) {
		pthread_rwlock_unlock(&T.global);
		return;
	}
	/* No region operation runs: retire everything. */
	for (r = 0; r < NREGIONS; r++)
		for (s = 0; s < MAXLIVE; s++)
			if (T.reg[r].live[s] >= 0)
				retire(NULL, &T.reg[r], s);
	pthread_mutex_lock(&T.ut_lock);
	for (k = 0; k < T.nut; k++) {
		struct regwatch_unwatch u = { .watch_id = T.ut[k].id };

		if (!T.ut[k].live)
			continue;
		ret = fz_ioctl(T.fd, REGWATCH_IOC_UNWATCH, &u);
		if (ret)
			fz_finding("UNWATCH of untracked %#llx at epoch end: %s",
				   (unsigned long long)u.watch_id,
				   strerror((int)-ret));
		T.ut[k].live = false;
	}
	T.ut_live = 0;
	/* No watch is left: no event can come any more. */
	pthread_mutex_lock(&T.drain_lock);
	drain_ring();
	memset(&st, 0, sizeof(st));
	st.size = sizeof(st);
	ret = fz_ioctl(T.fd, REGWATCH_IOC_STATS, &st);
	prod = __atomic_load_n(&T.hdr->producer, __ATOMIC_ACQUIRE);
	gen = __atomic_load_n(&T.hdr->generation, __ATOMIC_ACQUIRE);
	if (ret)
		fz_finding("STATS at epoch end: %s", strerror((int)-ret));
	else if (st.watches || st.oneshot_reserved || st.events != T.drained ||
		 prod != T.drained || gen != sum_classes(&st) ||
		 st.overflows != __atomic_load_n(&T.hdr->overflows,
						 __ATOMIC_ACQUIRE) ||
		 T.efd_total > sum_classes(&st))
		fz_finding("epoch %u end, no watch left: STATS watches %llu "
			   "reserved %llu events %llu overflows %llu fired %llu; "
			   "header producer %llu generation %llu; drained %llu, "
			   "eventfd total %llu", T.epoch,
			   (unsigned long long)st.watches,
			   (unsigned long long)st.oneshot_reserved,
			   (unsigned long long)st.events,
			   (unsigned long long)st.overflows,
			   (unsigned long long)sum_classes(&st),
			   (unsigned long long)prod, (unsigned long long)gen,
			   (unsigned long long)T.drained,
			   (unsigned long long)T.efd_total);
	for (e = 0; e < T.nev; e++)
		check_event(&T.ev[e], e);
	n = atomic_load(&T.nrecs);
	if (n > EPOCH_RECS)
		n = EPOCH_RECS;
	for (i = 0; i < n; i++)
		if (T.recs[i].id)
			check_rec(&T.recs[i], i);
	T.nev = 0;
	T.resyncs = 0;
	pthread_mutex_unlock(&T.drain_lock);
	T.nut = 0;
	pthread_mutex_unlock(&T.ut_lock);
	memset(T.recs, 0, sizeof(*T.recs) * EPOCH_RECS);
	T.epoch++;
	atomic_fetch_add(&T.n_epochs, 1);
	atomic_store(&T.nrecs, 0);
	pthread_rwlock_unlock(&T.global);
}

/* ---- setup and teardown ---------------------------------------------- */

int trk_init(void)
{
	struct regwatch_options o = { .ring_entries = RING };
	pthread_rwlockattr_t ra;
	int r, s, ret;
	void *p;

	ret = regwatch_open(&o, &T.rw);
	if (ret) {
		fprintf(stderr, "fuzz_regwatch: regwatch_open: %s\n",
			strerror(-ret));
		return -1;
	}
	T.fd = regwatch_fd(T.rw);
	T.cfg = *regwatch_config(T.rw);
	if (fcntl(T.fd, F_SETFL, O_NONBLOCK))
		return -1;
	/* Our own second mappings: the header, states and consumer page. */
	p = mmap(NULL, T.cfg.shared_size, PROT_READ, MAP_SHARED, T.fd,
		 (off_t)T.cfg.shared_offset);
	if (p == MAP_FAILED)
		return -1;
	T.hdr = p;
	T.states = (const uint64_t *)((const char *)p + T.hdr->states_offset);
	p = mmap(NULL, T.cfg.consumer_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 T.fd, (off_t)T.cfg.consumer_offset);
	if (p == MAP_FAILED)
		return -1;
	T.cons = p;
	T.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (T.efd < 0 || regwatch_set_eventfd(T.rw, T.efd))
		return -1;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&T.global, &ra);
	pthread_mutex_init(&T.drain_lock, NULL);
	pthread_mutex_init(&T.ut_lock, NULL);
	T.recs = calloc(EPOCH_RECS, sizeof(*T.recs));
	if (!T.recs)
		return -1;
	for (r = 0; r < NREGIONS; r++) {
		struct region *rg = &T.reg[r];
		int fl = MAP_FIXED_NOREPLACE;

		pthread_mutex_init(&rg->lock, NULL);
		rg->kind = r % 3;
		rg->base = (char *)FZ_ARENA_BASE + (size_t)r * RSTRIDE * FZ_PG;
		rg->memfd = -1;
		for (s = 0; s < MAXLIVE; s++)
			rg->live[s] = -1;
		if (rg->kind == RK_MEMFD) {
			rg->memfd = memfd_create("fuzz-region", MFD_CLOEXEC);
			if (rg->memfd < 0 || ftruncate(rg->memfd, RBYTES))
				return -1;
			p = mmap(rg->base, RBYTES, PROT_READ | PROT_WRITE,
				 MAP_SHARED | fl, rg->memfd, 0);
		} else {
			p = mmap(rg->base, RBYTES, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | fl, -1, 0);
		}
		if (p != rg->base) {
			perror("fuzz_regwatch: arena");
			return -1;
		}
		if (rg->kind == RK_HIDDEN && madvise(p, RBYTES, MADV_DONTFORK))
			return -1;
		memset(p, 0x5a, RBYTES);
	}
	if (fz_ctx_init(&T.dctx, FZ_DRAIN_CTX, 0xd7a1))
		return -1;
	T.active = true;
	if (pthread_create(&T.drainer, NULL, drainer_fn, &T.dctx))
		return -1;
	return 0;
}

int trk_fd(void)
{
	return T.active ? T.fd : -1;
}

bool trk_active(void)
{
	return T.active;
}

int trk_finish(void)
{
	struct regwatch_stats st;
	int r;

	if (!T.active)
		return 0;
	epoch_end(true);
	atomic_store(&T.drainer_stop, true);
	pthread_join(T.drainer, NULL);
	T.active = false;
	if (regwatch_stats(T.rw, &st) == 0 && st.user_watches > (1ULL << 40))
		fz_finding("user_watches %llu", (unsigned long long)st.user_watches);
	munmap((void *)T.hdr, T.cfg.shared_size);
	munmap(T.cons, T.cfg.consumer_size);
	regwatch_close(T.rw);
	close(T.efd);
	for (r = 0; r < NREGIONS; r++) {
		munmap(T.reg[r].base, RBYTES);
		if (T.reg[r].memfd >= 0)
			close(T.reg[r].memfd);
	}
	if (atomic_load(&T.n_watch) > 500 &&
	    (!atomic_load(&T.n_fired) || !atomic_load(&T.n_quiet)))
		fz_finding("the oracle saw %llu fired and %llu quiet watches: "
			   "it did not test both sides",
			   (unsigned long long)atomic_load(&T.n_fired),
			   (unsigned long long)atomic_load(&T.n_quiet));
	return 0;
}

void trk_summary(char *buf, size_t len)
{
	snprintf(buf, len, "%llu watches checked exactly (%llu fired, %llu "
		 "untouched), %llu unknown; %llu invalidating calls, %llu forks, "
		 "%llu soft-dirty clears, %llu batches, %llu untracked watches; "
		 "%llu events (monitor's own count equal at each of %llu "
		 "epochs; %llu of them the kernel's own CLEARs, %llu watches "
		 "fired by those alone), %llu ring drains, %llu reads, %llu "
		 "bogus consumer heads",
		 (unsigned long long)(atomic_load(&T.n_fired) +
				      atomic_load(&T.n_quiet)),
		 (unsigned long long)atomic_load(&T.n_fired),
		 (unsigned long long)atomic_load(&T.n_quiet),
		 (unsigned long long)atomic_load(&T.n_unknown),
		 (unsigned long long)atomic_load(&T.n_inval),
		 (unsigned long long)atomic_load(&T.n_fork),
		 (unsigned long long)atomic_load(&T.n_softdirty),
		 (unsigned long long)atomic_load(&T.n_batch),
		 (unsigned long long)atomic_load(&T.n_ut),
		 (unsigned long long)atomic_load(&T.n_events),
		 (unsigned long long)atomic_load(&T.n_epochs),
		 (unsigned long long)atomic_load(&T.n_background),
		 (unsigned long long)atomic_load(&T.n_untouched),
		 (unsigned long long)atomic_load(&T.n_drains),
		 (unsigned long long)atomic_load(&T.n_reads),
		 (unsigned long long)atomic_load(&T.n_garbage_heads));
}
