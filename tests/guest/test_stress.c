// SPDX-License-Identifier: MIT
/*
 * Concurrency stress with an oracle. Worker threads share one monitor and
 * an arena split into regions; each operation picks a region at random,
 * locks it, and watches, unwatches, zaps (MADV_DONTNEED), unmaps and
 * remaps, maps over, or mprotects a random part of it. Operations on
 * different regions run in parallel; within a region the lock makes the
 * order exact, so the oracle knows which live watches each invalidation
 * overlaps:
 *   - an overlapped watch is invalid when the invalidating call returns,
 *     and gets ring events (one-shot: exactly one; streaming: as many as
 *     its state word counts), each inside its range and of a class it saw;
 *   - a watch nothing overlapped is still armed when unwatched and never
 *     appears in the ring, unless the kernel invalidated it on its own
 *     (reclaim, compaction): then its events are CLEARs flagged
 *     REGWATCH_EVENT_BACKGROUND, and exactly as many as its word counts.
 * A drainer thread consumes the ring meanwhile. Bounded: REGWATCH_STRESS_OPS
 * operations per thread (default 400) and REGWATCH_STRESS_SECONDS (30).
 * The seed is printed; REGWATCH_SEED=n reruns one.
 *
 * The last test races UNWATCH of guessed (predictable) ids against WATCH:
 * whatever the timing, it must be safe and the counts must add up.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "regwatch.h"
#include "rwt_util.h"

enum {
	NTHREADS = 4,
	NREGIONS = 8,
	RPAGES = 16,		/* pages per region */
	MAXLIVE = 6,		/* live watches per region */
	MAXRANGES = 8,		/* invalidations remembered per watch */
};

#define RBYTES (RPAGES * RWT_PAGE)
#define COUNT_MASK 0x3fffffffULL

struct rec {
	struct regwatch_ref ref;
	uintptr_t start, end;		/* page-rounded */
	unsigned int flags;
	bool live;
	bool hit;			/* overlapped while live */
	bool env;			/* fired though nothing touched it */
	int nhit;			/* overlapping operations */
	uint32_t classes;		/* classes of those */
	uintptr_t hs[MAXRANGES], he[MAXRANGES];	/* clipped ranges */
	uint64_t final_count;		/* streaming: count at unwatch */
	int events;			/* found in the ring (evaluation) */
	int bg_events;			/* of them flagged BACKGROUND */
};

struct region {
	pthread_mutex_t lock;
	int live[MAXLIVE];		/* rec indices, -1 free */
};

static struct {
	struct regwatch *rw;
	char *arena;
	struct region reg[NREGIONS];
	struct rec *recs;
	atomic_int nrecs;
	int maxrecs;
	atomic_bool stop_drain;
	/* drained events; only the drainer appends, until joined */
	struct rwt_events evs;
	pthread_mutex_t drain_lock;
	uint64_t deadline;
	atomic_long ops[5];
	long env_events;		/* the kernel's own CLEARs */
} S;

struct worker {
	int idx;
	uint64_t rng;
	long nops;
	char err[256];
};

#define WFAIL(w, ...) \
	do { if (!(w)->err[0]) snprintf((w)->err, sizeof((w)->err), \
					 __VA_ARGS__); } while (0)

static uint64_t rnd(struct worker *w, uint64_t n)
{
	return rwt_rand(&w->rng) % n;
}

static uint64_t state_count(uint64_t word)
{
	return word >> REGWATCH_STATE_COUNT_SHIFT & COUNT_MASK;
}

/* ---- operations (caller holds the region lock) ---------------------- */

static void op_watch(struct worker *w, struct region *rg, char *base)
{
	int slot, i, r;
	struct rec *rc;
	uintptr_t a, len;

	for (slot = 0; slot < MAXLIVE && rg->live[slot] >= 0; slot++)
		;
	if (slot == MAXLIVE)
		return;
	i = atomic_fetch_add(&S.nrecs, 1);
	if (i >= S.maxrecs)
		return;
	rc = &S.recs[i];
	/* 1-4 pages, sometimes unaligned at either end */
	a = (uintptr_t)base + rnd(w, RPAGES - 4) * RWT_PAGE;
	len = (1 + rnd(w, 4)) * RWT_PAGE;
	if (rnd(w, 4) == 0) {
		a += rnd(w, RWT_PAGE);
		len -= rnd(w, RWT_PAGE);
	}
	rc->start = a & ~(RWT_PAGE - 1);
	rc->end = (a + len + RWT_PAGE - 1) & ~(RWT_PAGE - 1);
	rc->flags = 0;
	if (rnd(w, 3) == 0)
		rc->flags |= REGWATCH_WATCH_STREAMING;
	if (rnd(w, 4) == 0)
		rc->flags |= REGWATCH_WATCH_PROTECTION;
	r = regwatch_watch(S.rw, (void *)a, len, (uint64_t)i + 1, rc->flags,
			   &rc->ref);
	if (r) {
		WFAIL(w, "watch rec %d: %s", i, strerror(-r));
		return;
	}
	/* Nobody else of ours touches this region while we hold its lock:
	 * only the kernel's own work can have fired it (check_event). */
	if (!regwatch_ref_valid(&rc->ref))
		rc->env = true;
	rc->live = true;
	rg->live[slot] = i;
	atomic_fetch_add(&S.ops[0], 1);
}

static void retire(struct worker *w, struct rec *rc, int i)
{
	uint64_t word = __atomic_load_n(rc->ref.state, __ATOMIC_ACQUIRE);
	int r;

	if (!rc->hit && word != rc->ref.armed_state)
		rc->env = true;		/* check_event judges its events */
	if (rc->hit && word == rc->ref.armed_state)
		WFAIL(w, "rec %d still armed after %d invalidations", i,
		      rc->nhit);
	rc->final_count = state_count(word);
	r = regwatch_unwatch(S.rw, &rc->ref);
	if (r)
		WFAIL(w, "unwatch rec %d: %s", i, strerror(-r));
	rc->live = false;
}

static void op_unwatch(struct worker *w, struct region *rg)
{
	int slot = (int)rnd(w, MAXLIVE);

	if (rg->live[slot] < 0)
		return;
	retire(w, &S.recs[rg->live[slot]], rg->live[slot]);
	rg->live[slot] = -1;
	atomic_fetch_add(&S.ops[1], 1);
}

/*
 * Something happened to [a, b) of class cls: update every live watch of
 * the region and check the overlapped ones are invalid already, the others
 * still armed.
 */
static void invalidated(struct worker *w, struct region *rg, uintptr_t a,
			uintptr_t b, uint32_t cls)
{
	int s;

	for (s = 0; s < MAXLIVE; s++) {
		struct rec *rc;
		bool overlaps, fires;
		int i = rg->live[s];

		if (i < 0)
			continue;
		rc = &S.recs[i];
		overlaps = a < rc->end && rc->start < b;
		fires = overlaps && (cls != REGWATCH_CLASS_PROTECTION ||
				     (rc->flags & REGWATCH_WATCH_PROTECTION));
		if (fires) {
			if (rc->nhit < MAXRANGES) {
				rc->hs[rc->nhit] = a > rc->start ? a : rc->start;
				rc->he[rc->nhit] = b < rc->end ? b : rc->end;
			}
			rc->nhit++;
			rc->hit = true;
			rc->classes |= cls;
			if (regwatch_ref_valid(&rc->ref))
				WFAIL(w, "rec %d [%#lx, %#lx) still valid after "
				      "class %#x on [%#lx, %#lx)", i,
				      (unsigned long)rc->start,
				      (unsigned long)rc->end, cls,
				      (unsigned long)a, (unsigned long)b);
		} else if (!rc->hit && !regwatch_ref_valid(&rc->ref)) {
			rc->env = true;	/* check_event judges its events */
		}
	}
}

/* A random 1-8 page part of the region. */
static void pick(struct worker *w, char *base, char **p, size_t *len)
{
	size_t n = 1 + rnd(w, 8);

	*p = base + rnd(w, RPAGES - n + 1) * RWT_PAGE;
	*len = n * RWT_PAGE;
}

static void op_invalidate(struct worker *w, struct region *rg, char *base,
			  int kind)
{
	char *p;
	size_t len;

	pick(w, base, &p, &len);
	switch (kind) {
	case 0:
		if (madvise(p, len, MADV_DONTNEED))
			WFAIL(w, "madvise: %s", strerror(errno));
		invalidated(w, rg, (uintptr_t)p, (uintptr_t)p + len,
			    REGWATCH_CLASS_CLEAR);
		break;
	case 1:
		if (munmap(p, len))
			WFAIL(w, "munmap: %s", strerror(errno));
		invalidated(w, rg, (uintptr_t)p, (uintptr_t)p + len,
			    REGWATCH_CLASS_UNMAP);
		if (mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE |
			 MAP_ANONYMOUS | MAP_FIXED, -1, 0) != p)
			WFAIL(w, "remap: %s", strerror(errno));
		break;
	case 2:		/* mmap over it: the old pages go */
		if (mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE |
			 MAP_ANONYMOUS | MAP_FIXED, -1, 0) != p)
			WFAIL(w, "mmap over: %s", strerror(errno));
		invalidated(w, rg, (uintptr_t)p, (uintptr_t)p + len,
			    REGWATCH_CLASS_UNMAP);
		break;
	default:	/* only PROTECTION watches care */
		if (mprotect(p, len, PROT_READ))
			WFAIL(w, "mprotect: %s", strerror(errno));
		invalidated(w, rg, (uintptr_t)p, (uintptr_t)p + len,
			    REGWATCH_CLASS_PROTECTION);
		if (mprotect(p, len, PROT_READ | PROT_WRITE))
			WFAIL(w, "mprotect back: %s", strerror(errno));
		invalidated(w, rg, (uintptr_t)p, (uintptr_t)p + len,
			    REGWATCH_CLASS_PROTECTION);
		break;
	}
	/* Keep every page present (written, never the zero page): then the
	 * next mprotect has PTEs to change, and this write fires nothing. */
	if (kind != 3)
		memset(p, (int)rnd(w, 256), len);
	atomic_fetch_add(&S.ops[2 + (kind == 3 ? 2 : kind == 0 ? 0 : 1)], 1);
}

static void *worker_fn(void *arg)
{
	struct worker *w = arg;
	long n;

	for (n = 0; n < w->nops && !w->err[0]; n++) {
		int r = (int)rnd(w, NREGIONS);
		struct region *rg = &S.reg[r];
		char *base = S.arena + r * RBYTES;
		int op = (int)rnd(w, 100);

		if ((n & 31) == 0 && rwt_now_ns() > S.deadline)
			break;
		pthread_mutex_lock(&rg->lock);
		if (op < 40)
			op_watch(w, rg, base);
		else if (op < 60)
			op_unwatch(w, rg);
		else if (op < 75)
			op_invalidate(w, rg, base, 0);
		else if (op < 85)
			op_invalidate(w, rg, base, 1);
		else if (op < 93)
			op_invalidate(w, rg, base, 2);
		else
			op_invalidate(w, rg, base, 3);
		pthread_mutex_unlock(&rg->lock);
	}
	return NULL;
}

static int collect_cb(const struct regwatch_event *ev, void *arg)
{
	struct rwt_events *evs = arg;

	if (evs->n == evs->cap) {
		size_t cap = evs->cap ? evs->cap * 2 : 1024;
		void *p = realloc(evs->ev, cap * sizeof(*ev));

		if (!p)
			return -ENOMEM;
		evs->ev = p;
		evs->cap = cap;
	}
	evs->ev[evs->n++] = *ev;
	return 0;
}

static void *drainer_fn(void *arg)
{
	(void)arg;
	while (!atomic_load(&S.stop_drain)) {
		pthread_mutex_lock(&S.drain_lock);
		regwatch_drain(S.rw, collect_cb, &S.evs);
		pthread_mutex_unlock(&S.drain_lock);
		usleep(500);
	}
	return NULL;
}

/* Check one event against the records; returns an error or NULL. */
static const char *check_event(const struct regwatch_event *ev, char *buf,
			       size_t len)
{
	struct rec *rc;
	uint64_t i;
	int k;

	if (ev->type != REGWATCH_EVENT_INVALIDATE)
		return "RESYNC: the ring overflowed (make it bigger)";
	i = ev->cookie - 1;
	if (ev->cookie == 0 || i >= (uint64_t)atomic_load(&S.nrecs))
		return "event with an unknown cookie";
	rc = &S.recs[i];
	rc->events++;
	if (ev->flags & REGWATCH_EVENT_BACKGROUND)
		rc->bg_events++;
	if (ev->watch_id != rc->ref.id) {
		snprintf(buf, len, "rec %llu: event id %#llx, watch id %#llx",
			 (unsigned long long)i,
			 (unsigned long long)ev->watch_id,
			 (unsigned long long)rc->ref.id);
		return buf;
	}
	/* The kernel's own work (reclaim, compaction) may fire any watch. */
	if ((ev->flags & REGWATCH_EVENT_BACKGROUND) &&
	    ev->class == REGWATCH_CLASS_CLEAR &&
	    !(ev->flags & REGWATCH_EVENT_ONESHOT) !=
		    !(rc->flags & REGWATCH_WATCH_STREAMING) &&
	    ev->start >= rc->start && ev->end <= rc->end &&
	    ev->start < ev->end) {
		S.env_events++;
		return NULL;
	}
	if (!rc->hit) {
		snprintf(buf, len, "rec %llu [%#lx, %#lx) got an event "
			 "(class %#x, [%#llx, %#llx)) but nothing touched it",
			 (unsigned long long)i, (unsigned long)rc->start,
			 (unsigned long)rc->end, ev->class,
			 (unsigned long long)ev->start,
			 (unsigned long long)ev->end);
		return buf;
	}
	if (!(ev->class & rc->classes) ||
	    !!(ev->flags & REGWATCH_EVENT_ONESHOT) !=
		    !(rc->flags & REGWATCH_WATCH_STREAMING) ||
	    ev->start < rc->start || ev->end > rc->end ||
	    ev->start >= ev->end) {
		snprintf(buf, len, "rec %llu [%#lx, %#lx) flags %#x classes "
			 "%#x: bad event class %#x flags %#x [%#llx, %#llx)",
			 (unsigned long long)i, (unsigned long)rc->start,
			 (unsigned long)rc->end, rc->flags, rc->classes,
			 ev->class, ev->flags, (unsigned long long)ev->start,
			 (unsigned long long)ev->end);
		return buf;
	}
	if (rc->nhit > MAXRANGES)
		return NULL;
	for (k = 0; k < rc->nhit; k++)
		if (ev->start < rc->he[k] && rc->hs[k] < ev->end)
			return NULL;
	snprintf(buf, len, "rec %llu: event [%#llx, %#llx) overlaps none of "
		 "its %d invalidations", (unsigned long long)i,
		 (unsigned long long)ev->start, (unsigned long long)ev->end,
		 rc->nhit);
	return buf;
}

static void test_stress_oracle(void **state)
{
	long nops = strtol(getenv("REGWATCH_STRESS_OPS") ?
			   getenv("REGWATCH_STRESS_OPS") : "400", NULL, 0);
	long secs = strtol(getenv("REGWATCH_STRESS_SECONDS") ?
			   getenv("REGWATCH_STRESS_SECONDS") : "30", NULL, 0);
	struct regwatch_options o = { .ring_entries = 32768 };
	unsigned int seed = rwt_seed();
	struct worker wk[NTHREADS];
	pthread_t tid[NTHREADS], dtid;
	struct regwatch_stats st;
	long fired = 0, quiet = 0;
	size_t e;
	int t, r, s, i;
	char buf[512];

	(void)state;
	fprintf(stderr, "seed %u (rerun with REGWATCH_SEED=%u), %d threads x "
		"%ld ops\n", seed, seed, NTHREADS, nops);
	memset(&S, 0, sizeof(S));
	S.deadline = rwt_now_ns() + (uint64_t)secs * 1000000000ULL;
	S.maxrecs = (int)(NTHREADS * nops + 1);
	S.recs = calloc((size_t)S.maxrecs, sizeof(*S.recs));
	assert_non_null(S.recs);
	/* A VMA of its own, below 2 MiB: no cut announces a CLEAR over
	 * regions it did not touch (rwt_map_alone). */
	S.arena = rwt_map_alone(NREGIONS * RBYTES);
	assert_non_null(S.arena);
	assert_int_equal(regwatch_open(&o, &S.rw), 0);
	pthread_mutex_init(&S.drain_lock, NULL);
	for (r = 0; r < NREGIONS; r++) {
		pthread_mutex_init(&S.reg[r].lock, NULL);
		for (s = 0; s < MAXLIVE; s++)
			S.reg[r].live[s] = -1;
	}

	assert_int_equal(pthread_create(&dtid, NULL, drainer_fn, NULL), 0);
	for (t = 0; t < NTHREADS; t++) {
		memset(&wk[t], 0, sizeof(wk[t]));
		wk[t].idx = t;
		wk[t].rng = ((uint64_t)seed << 8) + (uint64_t)t + 1;
		wk[t].nops = nops;
		assert_int_equal(pthread_create(&tid[t], NULL, worker_fn,
						&wk[t]), 0);
	}
	for (t = 0; t < NTHREADS; t++)
		pthread_join(tid[t], NULL);
	for (t = 0; t < NTHREADS; t++)
		if (wk[t].err[0])
			fail_msg("seed %u, thread %d: %s", seed, t, wk[t].err);

	/* Retire what is left, with the same checks. */
	for (r = 0; r < NREGIONS; r++)
		for (s = 0; s < MAXLIVE; s++)
			if (S.reg[r].live[s] >= 0) {
				retire(&wk[0], &S.recs[S.reg[r].live[s]],
				       S.reg[r].live[s]);
				S.reg[r].live[s] = -1;
			}
	if (wk[0].err[0])
		fail_msg("seed %u, final unwatch: %s", seed, wk[0].err);
	atomic_store(&S.stop_drain, true);
	pthread_join(dtid, NULL);
	regwatch_drain(S.rw, collect_cb, &S.evs);

	assert_int_equal(regwatch_stats(S.rw, &st), 0);
	assert_int_equal(st.watches, 0);
	assert_int_equal(st.overflows, 0);
	assert_int_equal(st.events, S.evs.n);

	for (e = 0; e < S.evs.n; e++) {
		const char *err = check_event(&S.evs.ev[e], buf, sizeof(buf));

		if (err)
			fail_msg("seed %u, event %zu: %s", seed, e, err);
	}
	for (i = 0; i < atomic_load(&S.nrecs) && i < S.maxrecs; i++) {
		struct rec *rc = &S.recs[i];

		if (!rc->ref.id)
			continue;	/* WATCH never ran for it */
		if (!rc->hit && !rc->env) {
			quiet++;
			continue;	/* checked: no event, still armed */
		}
		fired++;	/* by us, or by the kernel alone (env) */
		if (!(rc->flags & REGWATCH_WATCH_STREAMING) && rc->events != 1)
			fail_msg("seed %u: one-shot rec %d hit %d times got %d "
				 "events", seed, i, rc->nhit, rc->events);
		/* final_count was read before UNWATCH: the kernel's own
		 * work may have added events after it. */
		if ((rc->flags & REGWATCH_WATCH_STREAMING) &&
		    ((uint64_t)rc->events < rc->final_count ||
		     (uint64_t)rc->events > rc->final_count +
					    (uint64_t)rc->bg_events ||
		     rc->events < rc->nhit))
			fail_msg("seed %u: streaming rec %d: %d events, state "
				 "count %llu, %d overlapping operations", seed,
				 i, rc->events,
				 (unsigned long long)rc->final_count, rc->nhit);
	}
	fprintf(stderr, "%d watches (%ld fired, %ld untouched), %ld unwatches, "
		"%ld zaps, %ld unmaps/maps over, %ld mprotects, %zu events "
		"(%ld the kernel's own CLEARs)\n",
		atomic_load(&S.nrecs), fired, quiet, atomic_load(&S.ops[1]),
		atomic_load(&S.ops[2]), atomic_load(&S.ops[3]),
		atomic_load(&S.ops[4]), S.evs.n, S.env_events);
	assert_true(fired > 0 && quiet > 0);

	regwatch_close(S.rw);
	rwt_unmap_alone(S.arena, NREGIONS * RBYTES);
	rwt_events_free(&S.evs);
	free(S.recs);
}

/* ---- slot reuse between threads ---------------------------------------- */

/*
 * Threads WATCH and UNWATCH in tight loops on a monitor with few slots,
 * so a slot one thread frees is at once reused by another. A fresh watch
 * must be armed when WATCH returns (nothing we do invalidates the
 * untouched range it watches; the kernel's own reclaim or compaction is
 * the one excuse, and then the state word carries this very watch's
 * generation), and no id may ever be issued twice (the generation of a
 * reused slot always moves on: no ABA). test_stress_oracle checks that
 * such kernel invalidations come as BACKGROUND-flagged events.
 */
enum { REUSE_THREADS = 3, REUSE_ITERS = 6000 };

struct reuse {
	struct regwatch *rw;
	char *mem;
	int idx;
	uint64_t ids[REUSE_ITERS];
	long n, not_armed, kernel, errors;
	uint64_t bad_word, bad_armed;
};

static void *reuse_fn(void *arg)
{
	struct reuse *ru = arg;
	struct regwatch_ref ref;
	long i;

	char *page = ru->mem + ru->idx * RWT_PAGE;

	for (i = 0; i < REUSE_ITERS; i++) {
		if (regwatch_watch(ru->rw, page, RWT_PAGE, (uint64_t)i,
				   i & 1 ? REGWATCH_WATCH_STREAMING : 0, &ref)) {
			ru->errors++;
			continue;
		}
		ru->ids[ru->n++] = ref.id;
		if (regwatch_ref_valid(&ref)) {
			/* armed */
		} else if (REGWATCH_ID_GEN(ref.id) == *ref.state >> 32) {
			/* A real invalidation of this very watch: only the
			 * kernel's own work can have made it. */
			ru->kernel++;
		} else if (!ru->not_armed++) {
			ru->bad_word = *ref.state;
			ru->bad_armed = ref.armed_state;
		}
		if (regwatch_unwatch(ru->rw, &ref))
			ru->errors++;
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_slot_reuse_across_threads(void **state)
{
	struct regwatch_options o = { .ring_entries = 64, .max_watches = 4 };
	static struct reuse ru[REUSE_THREADS];
	static uint64_t all[REUSE_THREADS * REUSE_ITERS];
	char *mem = rwt_map_anon(REUSE_THREADS * RWT_PAGE);
	struct regwatch *rw;
	pthread_t tid[REUSE_THREADS];
	size_t n = 0, i;
	long not_armed = 0;
	int t;

	(void)state;
	assert_int_equal(regwatch_open(&o, &rw), 0);
	for (t = 0; t < REUSE_THREADS; t++) {
		memset(&ru[t], 0, sizeof(ru[t]));
		ru[t].rw = rw;
		ru[t].mem = mem;
		ru[t].idx = t;
		assert_int_equal(pthread_create(&tid[t], NULL, reuse_fn,
						&ru[t]), 0);
	}
	for (t = 0; t < REUSE_THREADS; t++)
		pthread_join(tid[t], NULL);
	for (t = 0; t < REUSE_THREADS; t++) {
		assert_int_equal(ru[t].errors, 0);
		memcpy(all + n, ru[t].ids, (size_t)ru[t].n * sizeof(all[0]));
		n += (size_t)ru[t].n;
		if (ru[t].not_armed)
			fprintf(stderr, "thread %d: %ld fresh watches not "
				"armed, first: state word %#llx, armed_state "
				"%#llx\n", t, ru[t].not_armed,
				(unsigned long long)ru[t].bad_word,
				(unsigned long long)ru[t].bad_armed);
		if (ru[t].kernel)
			fprintf(stderr, "thread %d: %ld fresh watches fired "
				"by the kernel's own work\n", t, ru[t].kernel);
		not_armed += ru[t].not_armed;
	}
	qsort(all, n, sizeof(all[0]), cmp_u64);
	for (i = 1; i < n; i++)
		if (all[i] == all[i - 1])
			fail_msg("id %#llx was issued twice (slot %u, "
				 "generation %u): ABA", (unsigned long long)all[i],
				 REGWATCH_ID_SLOT(all[i]), REGWATCH_ID_GEN(all[i]));
	if (not_armed)
		fail_msg("%ld watches were not armed when WATCH returned: a "
			 "freed slot's state word was overwritten after reuse",
			 not_armed);
	regwatch_close(rw);
	munmap(mem, REUSE_THREADS * RWT_PAGE);
}

/* ---- UNWATCH of guessed ids against WATCH ---------------------------- */

/*
 * Join with a deadline: a kernel oops kills the thread inside its ioctl
 * and a plain join would wait for ever. Returns false on timeout.
 */
static bool join_within(pthread_t t, int seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += seconds;
	return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

#define JOIN_OR_FAIL(t) \
	do { if (!join_within((t), 60)) \
		fail_msg("a thread never came back from the kernel (oops? " \
			 "see the kernel log)"); } while (0)

struct guess {
	struct regwatch *rw;
	const uint64_t *states;		/* the state-word array */
	atomic_bool stop;
	long removed;			/* UNWATCHes that succeeded */
};

/* Slot 0 is the one WATCH keeps reusing: unwatch its current id and the
 * one it will get next, as fast as possible. */
static void *guesser_fn(void *arg)
{
	struct guess *g = arg;
	int fd = regwatch_fd(g->rw);

	/* Raw ioctls: an id that was never handed to us, as an attacker
	 * (or a confused cache) would send it. */
	while (!atomic_load(&g->stop)) {
		uint64_t word = __atomic_load_n(&g->states[0],
						__ATOMIC_ACQUIRE);
		uint64_t gen = word >> 32;
		struct regwatch_unwatch u = { .watch_id = gen << 32 };

		if (rwt_ioctl(fd, REGWATCH_IOC_UNWATCH, &u) == 0)
			g->removed++;
		u.watch_id = (gen + 1) << 32;
		if (rwt_ioctl(fd, REGWATCH_IOC_UNWATCH, &u) == 0)
			g->removed++;
	}
	return NULL;
}

static void test_unwatch_guessed_ids_races_watch(void **state)
{
	long iters = strtol(getenv("REGWATCH_STRESS_OPS") ?
			    getenv("REGWATCH_STRESS_OPS") : "400", NULL, 0) * 10;
	struct regwatch_options o = { .ring_entries = 64, .max_watches = 4 };
	struct rwt_modstats before, after;
	struct guess g = { 0 };
	struct regwatch_ref ref;
	struct regwatch_stats st;
	char *mem = rwt_map_anon(4 * RWT_PAGE);
	long made = 0, mine = 0, it;
	pthread_t tid;
	int ret;

	(void)state;
	assert_int_equal(rwt_modstats(&before), 0);
	assert_int_equal(regwatch_open(&o, &g.rw), 0);
	assert_int_equal(regwatch_watch(g.rw, mem, RWT_PAGE, 0, 0, &ref), 0);
	assert_int_equal(REGWATCH_ID_SLOT(ref.id), 0);
	g.states = ref.state;
	assert_int_equal(regwatch_unwatch(g.rw, &ref), 0);

	assert_int_equal(pthread_create(&tid, NULL, guesser_fn, &g), 0);
	for (it = 0; it < iters; it++) {
		ret = regwatch_watch(g.rw, mem + (it % 4) * RWT_PAGE, RWT_PAGE,
				     (uint64_t)it, it & 1 ?
				     REGWATCH_WATCH_STREAMING : 0, &ref);
		if (ret) {
			atomic_store(&g.stop, true);
			JOIN_OR_FAIL(tid);
			fail_msg("watch %ld: %s", it, strerror(-ret));
		}
		made++;
		ret = regwatch_unwatch(g.rw, &ref);
		if (ret == 0)
			mine++;
		else if (ret != -ENOENT)
			fail_msg("unwatch: %s", strerror(-ret));
	}
	atomic_store(&g.stop, true);
	JOIN_OR_FAIL(tid);
	fprintf(stderr, "%ld watches: %ld unwatched by their owner, %ld by "
		"the guesser\n", made, mine, g.removed);
	/* Every watch was removed exactly once, by one side or the other. */
	assert_int_equal(mine + g.removed, made);
	assert_int_equal(regwatch_stats(g.rw, &st), 0);
	assert_int_equal(st.watches, 0);
	assert_int_equal(st.oneshot_reserved, 0);
	regwatch_close(g.rw);
	assert_int_equal(rwt_modstats(&after), 0);
	assert_int_equal(after.watches, before.watches);
	assert_int_equal(after.monitors, before.monitors);
	munmap(mem, 4 * RWT_PAGE);
}

/*
 * The same against the first WATCH of an address space, which registers
 * the mm's notifier (mmap write lock, mm_take_all_locks: a long call).
 * The first id is predictable, (1 << 32 | 0); an UNWATCH of it that
 * arrives while that WATCH is still setting the watch up must be safe.
 * Each round is a fresh process, so each has a first WATCH.
 */
#define FIRST_VMAS 2000

struct first {
	int fd;
	atomic_bool go, stop;
	atomic_long tries;
	long removed;
};

static void *first_guesser_fn(void *arg)
{
	struct first *f = arg;
	struct regwatch_unwatch u = { .watch_id = 1ULL << 32 };

	atomic_store(&f->go, true);
	while (!atomic_load(&f->stop)) {
		if (rwt_ioctl(f->fd, REGWATCH_IOC_UNWATCH, &u) == 0)
			f->removed++;
		atomic_fetch_add(&f->tries, 1);
	}
	return NULL;
}

/* Child: 0 if all was consistent, 1 + reason otherwise. */
static int first_watch_round(void)
{
	struct first f = { 0 };
	struct regwatch *rw;
	struct regwatch_ref ref;
	struct regwatch_stats st;
	char *mem = rwt_map_anon(RWT_PAGE);
	uint64_t t0, t1;
	long tries0, tries1;
	pthread_t tid;
	int ret, mine = 0, i;

	if (!mem || regwatch_open(NULL, &rw))
		return 2;
	/* Many populated VMAs make mm_take_all_locks(), and so the first
	 * WATCH, take long: a wide window for the guesser. */
	for (i = 0; i < FIRST_VMAS; i++) {
		char *p = mmap(NULL, RWT_PAGE, i & 1 ? PROT_READ | PROT_WRITE :
			       PROT_READ | PROT_WRITE | PROT_EXEC,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return 9;
		*p = 1;
	}
	f.fd = regwatch_fd(rw);
	if (pthread_create(&tid, NULL, first_guesser_fn, &f))
		return 3;
	while (!atomic_load(&f.go))
		;
	usleep(200);		/* let it spin */
	tries0 = atomic_load(&f.tries);
	t0 = rwt_now_ns();
	ret = regwatch_watch(rw, mem, RWT_PAGE, 1, 0, &ref);
	t1 = rwt_now_ns();
	tries1 = atomic_load(&f.tries);
	usleep(200);
	atomic_store(&f.stop, true);
	if (!join_within(tid, 60))
		return 10;
	if (ret)
		return 4;
	if (ref.id != 1ULL << 32)
		return 5;	/* the guess was wrong: test needs fixing */
	ret = regwatch_unwatch(rw, &ref);
	if (ret == 0)
		mine = 1;
	else if (ret != -ENOENT)
		return 6;
	if (mine + f.removed != 1)
		return 7;
	if (regwatch_stats(rw, &st) || st.watches != 0)
		return 8;
	regwatch_close(rw);
	fprintf(stderr, "first WATCH took %.0f us, %ld UNWATCH tries meanwhile"
		"%s\n", (t1 - t0) / 1e3, tries1 - tries0,
		f.removed ? ", guesser won" : "");
	return f.removed ? 100 : 0;	/* 100: the guesser won */
}

static void test_unwatch_guessed_id_races_first_watch(void **state)
{
	struct rwt_modstats before, after;
	int rounds = 12, r, status, guessed = 0;

	(void)state;
	assert_int_equal(rwt_modstats(&before), 0);
	for (r = 0; r < rounds; r++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0)
			_exit(first_watch_round());
		/*
		 * A task stuck in the kernel cannot be waited for ever. A
		 * round takes a second or two; 300 s leaves room for a debug
		 * kernel under load, and a task blocked that long has met
		 * the hung-task detector (120 s) in the kernel log first.
		 */
		uint64_t t0 = rwt_now_ns(), until = t0 + 300000000000ULL;

		while (waitpid(pid, &status, WNOHANG) == 0) {
			if (rwt_now_ns() > until)
				fail_msg("round %d: child stuck for 300 s (oops? "
					 "see the kernel log)", r);
			usleep(10000);
		}
		if (WIFSIGNALED(status))
			fail_msg("round %d: child killed by signal %d (a kernel "
				 "oops kills the task: see the kernel log)", r,
				 WTERMSIG(status));
		if (rwt_now_ns() - t0 > 30000000000ULL)
			fprintf(stderr, "round %d took %.0f s\n", r,
				(rwt_now_ns() - t0) / 1e9);
		if (WEXITSTATUS(status) == 100)
			guessed++;
		else if (WEXITSTATUS(status))
			fail_msg("round %d: child failed with %d (7: the watch "
				 "was removed %s; 10: the guesser never came "
				 "back from UNWATCH: oops?)", r,
				 WEXITSTATUS(status), "not exactly once");
	}
	fprintf(stderr, "%d rounds, the guesser removed the first watch in "
		"%d\n", rounds, guessed);
	assert_int_equal(rwt_modstats(&after), 0);
	assert_int_equal(after.watches, before.watches);
	assert_int_equal(after.monitors, before.monitors);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stress_oracle),
		cmocka_unit_test(test_slot_reuse_across_threads),
		cmocka_unit_test(test_unwatch_guessed_ids_races_watch),
		cmocka_unit_test(test_unwatch_guessed_id_races_first_watch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
