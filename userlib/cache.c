// SPDX-License-Identifier: MIT
/*
 * libregwatch registration cache (API and rules in regwatch_cache.h).
 *
 * Lookup. A lock-free hint hash (cache_hash.c) maps the aligned start of a
 * request to an entry that starts at or covers it; an interval treap
 * (cache_itree.c), under the mutex, answers every other covering lookup
 * and is the authoritative index. A slow-path hit adds its request's
 * start to the hash as an alias, so repeated hits inside an entry become
 * fast hits too. A hash slot also holds the entry's state-word address, so
 * that a cold hit fetches the entry and its state word at once.
 *
 * Entries are type-stable: they live in slabs freed only with the cache,
 * so a reader holding a stale pointer from the hash can always touch the
 * entry; it takes a reference first and validates the entry afterwards.
 *
 * The reference word (one atomic 64-bit word per entry, the only shared
 * line a hit writes):
 *     bits  0..22  references (the index holds one while the entry is
 *                  indexed; each get holds one)
 *     bit   23     DEAD: the entry is being released or is free
 *     bits 24..63  gets: every successful get adds one (wrapping). They
 *                  count hits without a shared counter, and serve as the
 *                  CLOCK "recently used" mark without a second write.
 * A get adds (1 << 24) + 1 unconditionally; if it finds DEAD set, or the
 * entry does not validate, it subtracts the same again. Whoever brings the
 * references to 0 (only possible once the entry has left the index)
 * claims the entry by setting DEAD with a compare-and-swap and releases
 * it: deregister, unwatch, back to the free list. Reviving a free entry
 * adds its references and clears DEAD in one addition, which keeps
 * increments of late readers balanced.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "regwatch_cache.h"
#include "cache_fork.h"
#include "cache_hash.h"
#include "cache_itree.h"
#include "cache_monitor.h"
#include "cache_pagemap.h"

#define REF_MASK	((1ULL << 23) - 1)
#define REF_DEAD	(1ULL << 23)
#define REF_HIGH	(1ULL << 22)	/* refuse gets above this (overflow) */
#define GET_SHIFT	24
#define GET_ONE		(1ULL << GET_SHIFT)
#define GET_MASK	((1ULL << (64 - GET_SHIFT)) - 1)

#define ENTRY_INDEXED	1u

#define MAX_ATTEMPTS	8
#define SLAB_MIN	64		/* entries in the first slab */
/* ... doubling up to this: 2 MiB of hot lines, one transparent huge page
 * (a random hit then seldom misses the TLB) */
#define SLAB_MAX	32768
#define HUGE_BYTES	(2UL << 20)

#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)
#define container_of(p, type, member) \
	((type *)((char *)(p) - __builtin_offsetof(type, member)))

/* One cache line: everything a hit reads, and the one word it writes. */
struct regwatch_cache_entry {
	uint64_t ref;
	uintptr_t start;
	uintptr_t end;
	const uint64_t *state;		/* watch state word */
	uint64_t armed;
	void *handle;
	uint32_t access;
	uint32_t flags;			/* ENTRY_INDEXED, atomic */
	struct entry_cold *cold;
} __attribute__((aligned(64)));

/* The rest, under the cache mutex; kept apart so that the hot lines of
 * many entries are dense (10^5 entries: 6.4 MB of hot lines). */
struct entry_cold {
	struct regwatch_cache_entry *hot;
	struct regwatch_cache_reg_info info;
	struct cache_watch watch;
	struct cache_itree_node node;
	struct regwatch_cache_entry *lru_prev, *lru_next;
	struct regwatch_cache_entry *link;	/* free / release lists */
	uint64_t gets_clock;		/* gets when the CLOCK hand last passed */
	uint64_t gets_folded;		/* gets already added to stats.hits */
	uint64_t print;			/* page fingerprint (VERIFY_CLEAR) */
	int print_known;
	int accounted;			/* counted in registered/_bytes */
};

/* Entries come in slabs that live as long as the cache (type-stable). */
struct slab {
	struct slab *next;
	size_t n;
	struct regwatch_cache_entry *hot;	/* n hot lines */
	struct entry_cold *cold;		/* n cold parts */
};

struct regwatch_cache {
	/* read-mostly line of the hit path */
	struct cache_hash hash;
	uintptr_t amask;		/* alignment - 1 */
	int mt;				/* thread-safe */
	const uint64_t *mon_gen;	/* monitor's event counter, or NULL */
	uint64_t seen_gen;		/* atomic; written under the mutex */

	/* everything else: under the mutex */
	pthread_mutex_t lock __attribute__((aligned(64)));
	int forked;			/* set in a forked child */
	struct cache_fork_node fork_node;
	struct regwatch_cache_backend be;
	struct cache_monitor *mon;
	size_t max_entries, max_bytes;
	uint32_t min_access, flags;
	int pagemap_fd;
	struct cache_itree tree;
	struct regwatch_cache_entry lru;	/* sentinel of the CLOCK ring */
	struct entry_cold lru_cold;
	struct regwatch_cache_entry *hand;
	struct regwatch_cache_entry *free_list;
	struct regwatch_cache_entry *pending;	/* to release after unlock */
	struct slab *slabs;
	int resync;
	int invalidated;		/* by the current processing run */
	struct regwatch_cache_stats st;
};

/* ---------------------------------------------------------------- locking */

static inline void cache_lock(struct regwatch_cache *c)
{
	if (c->mt)
		pthread_mutex_lock(&c->lock);
}

static inline int cache_trylock(struct regwatch_cache *c)
{
	return c->mt ? pthread_mutex_trylock(&c->lock) == 0 : 1;
}

static inline void cache_unlock(struct regwatch_cache *c)
{
	if (c->mt)
		pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------ reference counting */

static inline uint64_t ref_add(struct regwatch_cache *c,
			       struct regwatch_cache_entry *e, uint64_t v)
{
	uint64_t old;

	if (c->mt)
		return __atomic_fetch_add(&e->ref, v, __ATOMIC_ACQ_REL);
	old = __atomic_load_n(&e->ref, __ATOMIC_RELAXED);
	__atomic_store_n(&e->ref, old + v, __ATOMIC_RELAXED);
	return old;
}

static inline uint64_t ref_sub(struct regwatch_cache *c,
			       struct regwatch_cache_entry *e, uint64_t v)
{
	uint64_t old;

	if (c->mt)
		return __atomic_fetch_sub(&e->ref, v, __ATOMIC_ACQ_REL);
	old = __atomic_load_n(&e->ref, __ATOMIC_RELAXED);
	__atomic_store_n(&e->ref, old - v, __ATOMIC_RELAXED);
	return old;
}

static inline uint64_t ref_load(const struct regwatch_cache_entry *e)
{
	return __atomic_load_n(&e->ref, __ATOMIC_ACQUIRE);
}

static inline uint32_t entry_flags(const struct regwatch_cache_entry *e)
{
	return __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
}

static inline int entry_valid(const struct regwatch_cache_entry *e)
{
	return __atomic_load_n(e->state, __ATOMIC_ACQUIRE) == e->armed;
}

static void release_now(struct regwatch_cache *c, struct regwatch_cache_entry *e,
			int from_put);

/* Claim an entry whose references reached 0: set DEAD, exactly once. */
static int claim(struct regwatch_cache_entry *e)
{
	uint64_t w = ref_load(e);

	do {
		if ((w & REF_MASK) || (w & REF_DEAD))
			return 0;
	} while (!__atomic_compare_exchange_n(&e->ref, &w, w | REF_DEAD, 0,
					      __ATOMIC_ACQ_REL,
					      __ATOMIC_ACQUIRE));
	return 1;
}

static void account_release(struct regwatch_cache *c,
			    struct regwatch_cache_entry *e)
{
	if (!e->cold->accounted)
		return;
	e->cold->accounted = 0;
	c->st.registered--;
	c->st.registered_bytes -= e->end - e->start;
}

/*
 * Drop v from the reference word. If that released the last reference,
 * release the entry: now (no mutex held) or after the mutex is dropped.
 */
static void ref_drop(struct regwatch_cache *c, struct regwatch_cache_entry *e,
		     uint64_t v, int locked, int from_put)
{
	uint64_t old = ref_sub(c, e, v);

	if ((old & REF_MASK) != 1 || (old & REF_DEAD))
		return;
	if (!claim(e))
		return;
	if (locked) {	/* (put never holds the mutex) */
		account_release(c, e);
		e->cold->link = c->pending;
		c->pending = e;
	} else {
		release_now(c, e, from_put);
	}
}

/*
 * Try to take a reference on a hinted entry for [start, end) with access.
 * Succeeds only if the entry is live, indexed, covers the range with the
 * access, and its watch has not fired.
 */
static inline int try_get(struct regwatch_cache *c,
			  struct regwatch_cache_entry *e, uintptr_t start,
			  uintptr_t end, uint32_t access, int locked)
{
	uint64_t old = ref_add(c, e, GET_ONE + 1);

	if (likely(!(old & (REF_DEAD | REF_HIGH)) &&
		   (entry_flags(e) & ENTRY_INDEXED) &&
		   e->start <= start && e->end >= end &&
		   (e->access & access) == access && entry_valid(e)))
		return 1;
	ref_drop(c, e, GET_ONE + 1, locked, 0);
	return 0;
}

/* ------------------------------------------------------------- entries */

/* Big, long-lived arrays: 64-byte aligned, on transparent huge pages
 * when they are large enough to use them (fewer TLB misses on hits). */
static void *cache_alloc_big(size_t bytes)
{
	void *p;

	if (bytes < HUGE_BYTES)
		return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	bytes = (bytes + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
	if (posix_memalign(&p, HUGE_BYTES, bytes))
		return NULL;
	madvise(p, bytes, MADV_HUGEPAGE);	/* a hint; errors are fine */
	return p;
}

static struct slab *slab_new(struct regwatch_cache *c)
{
	size_t n = SLAB_MIN, i;
	struct slab *s;

	for (s = c->slabs; s && n < SLAB_MAX; s = s->next)
		n *= 2;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->n = n;
	s->hot = cache_alloc_big(n * sizeof(*s->hot));
	s->cold = calloc(n, sizeof(*s->cold));
	if (!s->hot || !s->cold) {
		free(s->hot);
		free(s->cold);
		free(s);
		return NULL;
	}
	memset(s->hot, 0, n * sizeof(*s->hot));
	for (i = n; i-- > 0;) {
		struct regwatch_cache_entry *e = &s->hot[i];

		e->ref = REF_DEAD;
		e->cold = &s->cold[i];
		e->cold->hot = e;
		e->cold->link = c->free_list;
		c->free_list = e;
	}
	s->next = c->slabs;
	c->slabs = s;
	return s;
}

static struct regwatch_cache_entry *entry_alloc(struct regwatch_cache *c)
{
	struct regwatch_cache_entry *e;

	if (!c->free_list && !slab_new(c))
		return NULL;
	e = c->free_list;
	c->free_list = e->cold->link;
	e->cold->link = NULL;
	return e;
}

static void entry_free(struct regwatch_cache *c, struct regwatch_cache_entry *e)
{
	e->handle = NULL;
	e->cold->link = c->free_list;
	c->free_list = e;
}

/* Add the gets since the last fold to stats.hits. */
static void fold_gets(struct regwatch_cache *c, struct regwatch_cache_entry *e)
{
	uint64_t g = ref_load(e) >> GET_SHIFT;

	c->st.hits += (g - e->cold->gets_folded) & GET_MASK;
	e->cold->gets_folded = g;
}

/*
 * Release a claimed entry: deregister and unwatch it without the mutex,
 * then return it to the free list.
 */
static void release_now(struct regwatch_cache *c, struct regwatch_cache_entry *e,
			int from_put)
{
	int rc = c->be.dereg(c->be.ctx, e->handle);

	c->mon->ops->unwatch(c->mon, &e->cold->watch);
	cache_lock(c);
	if (rc)
		c->st.dereg_failures++;
	if (from_put)
		c->st.deferred_deregs++;
	account_release(c, e);
	fold_gets(c, e);
	entry_free(c, e);
	cache_unlock(c);
}

/* Release the entries collected under the mutex; call after unlocking. */
static void flush_pending(struct regwatch_cache *c, struct regwatch_cache_entry *list)
{
	struct regwatch_cache_entry *e, *next;

	for (e = list; e; e = next) {
		next = e->cold->link;
		release_now(c, e, 0);
	}
}

static void unlock_and_flush(struct regwatch_cache *c)
{
	struct regwatch_cache_entry *list = c->pending;

	c->pending = NULL;
	cache_unlock(c);
	flush_pending(c, list);
}

static void lru_insert(struct regwatch_cache *c, struct regwatch_cache_entry *e)
{
	/* Just behind the hand: the last one it will reach. */
	struct regwatch_cache_entry *at = c->hand;

	e->cold->lru_next = at;
	e->cold->lru_prev = at->cold->lru_prev;
	at->cold->lru_prev->cold->lru_next = e;
	at->cold->lru_prev = e;
}

static void lru_remove(struct regwatch_cache *c, struct regwatch_cache_entry *e)
{
	if (c->hand == e)
		c->hand = e->cold->lru_next;
	e->cold->lru_prev->cold->lru_next = e->cold->lru_next;
	e->cold->lru_next->cold->lru_prev = e->cold->lru_prev;
	e->cold->lru_prev = e->cold->lru_next = NULL;
}

/* Remove an entry from the index and drop the index's reference. */
static void unindex(struct regwatch_cache *c, struct regwatch_cache_entry *e)
{
	__atomic_store_n(&e->flags, 0, __ATOMIC_RELEASE);
	cache_itree_remove(&c->tree, &e->cold->node);
	cache_hash_remove(&c->hash, e->start, e);
	lru_remove(c, e);
	c->st.entries--;
	fold_gets(c, e);
	ref_drop(c, e, 1, 1, 0);
}

/* Rebuilds of the hash keep an alias only if it still points to a live
 * entry covering its key. */
static bool hash_keep(void *val, uint64_t key, void *arg)
{
	struct regwatch_cache_entry *e = val;

	(void)arg;
	return (entry_flags(e) & ENTRY_INDEXED) && e->start <= key &&
	       key < e->end;
}

/* A hit loads the entry's line, then its state word: the hash keeps the
 * state word's address beside the entry's so that both loads start at once. */
static const void *hash_hint(void *val)
{
	return ((struct regwatch_cache_entry *)val)->state;
}

/* ---------------------------------------------------------- invalidation */

static void invalidate(struct regwatch_cache *c, struct regwatch_cache_entry *e,
		       uint32_t class, uint32_t flags)
{
	int bit = class ? __builtin_ctz(class) : -1;

	c->st.invalidations++;
	if (flags & REGWATCH_EVENT_BACKGROUND)
		c->st.background++;
	if (bit >= 0 && bit < 8)
		c->st.by_class[bit]++;
	if (class == REGWATCH_CLASS_CLEAR) {
		uint64_t print;
		int known = 0;

		if (c->pagemap_fd >= 0 && e->cold->print_known)
			known = cache_pagemap_print(c->pagemap_fd, e->start,
						    e->end, &print) == 1;
		if (!known)
			c->st.clear_unknown++;
		else if (print == e->cold->print)
			c->st.clear_unchanged++;
		else
			c->st.clear_changed++;
	}
	c->invalidated++;
	unindex(c, e);
}

static int on_event(const struct regwatch_event *ev, void *arg)
{
	struct regwatch_cache *c = arg;
	struct regwatch_cache_entry *e;

	if (ev->type == REGWATCH_EVENT_RESYNC) {
		c->resync = 1;
		c->st.resyncs++;
		return 0;
	}
	e = (struct regwatch_cache_entry *)(uintptr_t)ev->cookie;
	/* Only an indexed entry whose current watch fired: a stale event
	 * (an earlier attempt's watch, a recycled entry) is ignored. */
	if (!e || !(entry_flags(e) & ENTRY_INDEXED) || e->cold->watch.id != ev->watch_id)
		return 0;
	invalidate(c, e, ev->class, ev->flags);
	return 0;
}

/* Re-check every entry's state word (after an overflow or a drain error). */
static void resync(struct regwatch_cache *c)
{
	struct regwatch_cache_entry *e, *next;

	c->resync = 0;
	for (e = c->lru.cold->lru_next; e != &c->lru; e = next) {
		next = e->cold->lru_next;
		if (!entry_valid(e)) {
			c->st.resync_invalidations++;
			invalidate(c, e, 0, 0);
		}
	}
}

/* Drain the monitor's events. Mutex held. */
static void process_locked(struct regwatch_cache *c)
{
	int rc;

	if (c->mon_gen)
		__atomic_store_n(&c->seen_gen,
				 __atomic_load_n(c->mon_gen, __ATOMIC_ACQUIRE),
				 __ATOMIC_RELAXED);
	rc = c->mon->ops->drain(c->mon, on_event, c);
	if (rc < 0)
		c->resync = 1;	/* events may be lost: trust the state words */
	if (c->resync)
		resync(c);
}

/* Called from a hit when the monitor's counter moved: never waits. */
static void __attribute__((noinline)) poll_events(struct regwatch_cache *c)
{
	if (!cache_trylock(c))
		return;
	if (!c->forked)
		process_locked(c);
	unlock_and_flush(c);
}

/* -------------------------------------------------------------- eviction */

static int over_limits(const struct regwatch_cache *c, size_t add_entries,
		       size_t add_bytes)
{
	return (c->max_entries && c->st.entries + add_entries > c->max_entries) ||
	       (c->max_bytes &&
		c->st.registered_bytes + add_bytes > c->max_bytes);
}

/*
 * CLOCK: the next unreferenced entry not hit since the hand last passed
 * it. With force, any unreferenced entry. NULL if every entry is in use.
 */
static struct regwatch_cache_entry *clock_victim(struct regwatch_cache *c,
						 int force)
{
	size_t n, limit = 2 * c->st.entries + 2;

	for (n = 0; n < limit; n++) {
		struct regwatch_cache_entry *e = c->hand;
		uint64_t w, g;

		if (e == &c->lru) {
			if (c->lru.cold->lru_next == &c->lru)
				return NULL;
			e = c->lru.cold->lru_next;
		}
		c->hand = e->cold->lru_next;
		w = ref_load(e);
		if ((w & REF_MASK) != 1)
			continue;
		g = w >> GET_SHIFT;
		if (!force && g != e->cold->gets_clock) {
			e->cold->gets_clock = g;
			continue;
		}
		return e;
	}
	return NULL;
}

static void evict(struct regwatch_cache *c, struct regwatch_cache_entry *e)
{
	c->st.evictions++;
	unindex(c, e);
}

/* Evict until add_entries/add_bytes fit. 1 if they fit. */
static int make_room(struct regwatch_cache *c, size_t add_entries,
		     size_t add_bytes)
{
	struct regwatch_cache_entry *e;

	while (over_limits(c, add_entries, add_bytes)) {
		e = clock_victim(c, 0);
		if (!e)
			return 0;
		evict(c, e);
	}
	return 1;
}

/* Evict unreferenced entries worth at least `bytes` (any if 0). */
static int evict_some(struct regwatch_cache *c, size_t bytes)
{
	struct regwatch_cache_entry *e;
	size_t freed = 0;
	int n = 0;

	while ((e = clock_victim(c, 1))) {
		freed += e->end - e->start;
		evict(c, e);
		n++;
		if (freed >= bytes)
			break;
	}
	return n;
}

/* ------------------------------------------------------------ lookups */

struct cover_arg {
	struct regwatch_cache *c;
	uintptr_t start, end;
	uint32_t access;
	struct regwatch_cache_entry *found;
};

static int cover_cb(struct cache_itree_node *n, void *arg)
{
	struct cover_arg *a = arg;
	struct regwatch_cache_entry *e =
		container_of(n, struct entry_cold, node)->hot;

	if (e->end < a->end || e->start > a->start ||
	    (e->access & a->access) != a->access)
		return 0;
	if (!try_get(a->c, e, a->start, a->end, a->access, 1))
		return 0;
	a->found = e;
	return 1;
}

/* Covering lookup in the ordered index. Mutex held. */
static struct regwatch_cache_entry *tree_get(struct regwatch_cache *c,
					     uintptr_t start, uintptr_t end,
					     uint32_t access)
{
	struct cover_arg a = { c, start, end, access, NULL };

	cache_itree_visit(&c->tree, start, start + 1, cover_cb, &a);
	return a.found;
}

/* ----------------------------------------------------------- miss path */

static int watch_entry(struct regwatch_cache *c, struct regwatch_cache_entry *e)
{
	int rc, tries;

	for (tries = 0;; tries++) {
		rc = c->mon->ops->watch(c->mon, e->start, e->end - e->start,
					(uintptr_t)e, &e->cold->watch);
		if (rc != -ENOSPC && rc != -ENOBUFS)
			return rc;
		if (tries == 2)		/* every watch is in use */
			return -ENOSPC;
		/*
		 * Out of watch slots (ENOSPC) or of ring entries to reserve
		 * (ENOBUFS: every armed one-shot watch holds one): consume
		 * events, which frees the entries of fired watches, and give
		 * back an unreferenced entry's watch, then try again.
		 */
		cache_lock(c);
		process_locked(c);
		evict_some(c, 0);
		unlock_and_flush(c);
	}
}

static int reg_entry(struct regwatch_cache *c, struct regwatch_cache_entry *e)
{
	int rc, tries;

	for (tries = 0;; tries++) {
		memset(&e->cold->info, 0, sizeof(e->cold->info));
		e->handle = NULL;
		rc = c->be.reg(c->be.ctx, (void *)e->start, e->end - e->start,
			       e->access, &e->handle, &e->cold->info);
		if ((rc != -ENOMEM && rc != -EAGAIN) || tries == 1)
			return rc;
		/* Maybe out of pinnable memory: give some back, retry once. */
		cache_lock(c);
		process_locked(c);
		evict_some(c, e->end - e->start);
		unlock_and_flush(c);
	}
}

static void revive(struct regwatch_cache *c, struct regwatch_cache_entry *e,
		   uint64_t refs)
{
	/* Clears DEAD and adds refs in one step; keeps late readers' +1s. */
	ref_add(c, e, refs - REF_DEAD);
}

static int miss(struct regwatch_cache *c, uintptr_t start, uintptr_t end,
		uint32_t access, struct regwatch_cache_entry **out)
{
	struct regwatch_cache_entry *e, *dup;
	int rc, attempt;

	cache_lock(c);
	e = entry_alloc(c);
	cache_unlock(c);
	if (!e)
		return -ENOMEM;
	e->start = start;
	e->end = end;
	e->access = access | c->min_access;

	for (attempt = 0;; attempt++) {
		if (attempt == MAX_ATTEMPTS) {
			rc = -EAGAIN;
			goto fail;
		}
		/* 1. watch: returns after any running invalidation is over */
		rc = watch_entry(c, e);
		if (rc)
			goto fail;
		/* 2. register */
		rc = reg_entry(c, e);
		if (rc) {
			c->mon->ops->unwatch(c->mon, &e->cold->watch);
			cache_lock(c);
			c->st.reg_failures++;
			cache_unlock(c);
			goto fail;
		}
		e->state = e->cold->watch.state;
		e->armed = e->cold->watch.armed;
		if (c->pagemap_fd >= 0)
			e->cold->print_known = cache_pagemap_print(c->pagemap_fd, start,
							     end, &e->cold->print) == 1;
		cache_lock(c);
		/* Drain before the re-check, never between it and indexing:
		 * a drain drops events of entries not yet indexed (on_event),
		 * so one after the re-check could consume the event of a
		 * watch that fired just after it, and the entry would be
		 * indexed fired and never invalidated. (Drain also here so
		 * that the duplicate check below sees current entries.) */
		process_locked(c);
		/* 3. re-check under the mutex, after the last drain: if the
		 * watch is still armed now, its event (written after the
		 * state word) can only be drained once the mutex is dropped,
		 * and will find the entry indexed. If it fired, the
		 * registration may hold the old pages: start over. */
		if (entry_valid(e))
			break;
		c->st.retries++;
		unlock_and_flush(c);
		if (c->be.dereg(c->be.ctx, e->handle)) {
			cache_lock(c);
			c->st.dereg_failures++;
			cache_unlock(c);
		}
		c->mon->ops->unwatch(c->mon, &e->cold->watch);
	}

	/* Another thread may have cached a covering entry meanwhile. The
	 * mutex is held from the re-check to indexing: no drain between. */
	dup = tree_get(c, start, end, access);
	if (dup) {
		unlock_and_flush(c);
		c->be.dereg(c->be.ctx, e->handle);
		c->mon->ops->unwatch(c->mon, &e->cold->watch);
		cache_lock(c);
		entry_free(c, e);
		cache_unlock(c);
		*out = dup;
		return 0;
	}
	if (!make_room(c, 1, end - start)) {
		if (c->flags & REGWATCH_CACHE_STRICT_LIMITS) {
			unlock_and_flush(c);
			c->be.dereg(c->be.ctx, e->handle);
			c->mon->ops->unwatch(c->mon, &e->cold->watch);
			rc = -ENOSPC;
			goto fail;
		}
		c->st.over_limit++;
	}
	e->cold->node.start = start;
	e->cold->node.end = end;
	e->cold->gets_clock = ref_load(e) >> GET_SHIFT;
	e->cold->accounted = 1;
	c->st.entries++;
	c->st.registered++;
	c->st.registered_bytes += end - start;
	__atomic_store_n(&e->flags, ENTRY_INDEXED, __ATOMIC_RELEASE);
	revive(c, e, 2);	/* the index's reference and the caller's */
	cache_itree_insert(&c->tree, &e->cold->node);
	cache_hash_insert(&c->hash, start, e);
	lru_insert(c, e);
	unlock_and_flush(c);
	*out = e;
	return 0;

fail:
	cache_lock(c);
	entry_free(c, e);
	cache_unlock(c);
	return rc;
}

static int __attribute__((noinline))
slow_get(struct regwatch_cache *c, uintptr_t start, uintptr_t end,
	 uint32_t access, struct regwatch_cache_entry **out)
{
	struct regwatch_cache_entry *e;

	if (c->forked)
		return -ECHILD;
	cache_lock(c);
	process_locked(c);
	e = tree_get(c, start, end, access);
	if (e) {
		c->st.slow_hits++;
		cache_hash_insert(&c->hash, start, e);	/* alias */
		unlock_and_flush(c);
		*out = e;
		return 0;
	}
	c->st.misses++;
	unlock_and_flush(c);
	return miss(c, start, end, access, out);
}

int regwatch_cache_get(struct regwatch_cache *c, const void *addr, size_t len,
		       uint32_t access, struct regwatch_cache_entry **out)
{
	uintptr_t a = (uintptr_t)addr, start, end;
	struct cache_hash_table *t;
	uint64_t k, i, n;

	if (unlikely(!c || !out || !len))
		return -EINVAL;
	if (unlikely(a + len - 1 < a || ((a + len - 1) | c->amask) + 1 == 0))
		return -EOVERFLOW;
	start = a & ~c->amask;
	end = ((a + len - 1) | c->amask) + 1;

	if (c->mon_gen &&
	    unlikely(__atomic_load_n(c->mon_gen, __ATOMIC_RELAXED) !=
		     __atomic_load_n(&c->seen_gen, __ATOMIC_RELAXED)))
		poll_events(c);

	t = cache_hash_table(&c->hash);
	k = start | 1;
	for (i = cache_hash_slot_of(t, k), n = 0; n <= t->mask;
	     i = (i + 1) & t->mask, n++) {
		uint64_t key = __atomic_load_n(&t->slots[i].key, __ATOMIC_ACQUIRE);
		struct regwatch_cache_entry *e;

		if (!key)
			break;
		if (key != k)
			continue;
		e = __atomic_load_n(&t->slots[i].val, __ATOMIC_ACQUIRE);
		/* Start both misses of a cold hit together (hints only). */
		__builtin_prefetch(e, 1);
		__builtin_prefetch(__atomic_load_n(&t->slots[i].next,
						   __ATOMIC_RELAXED));
		if (e && (void *)e != CACHE_HASH_TOMB &&
		    likely(try_get(c, e, start, end, access, 0))) {
			*out = e;
			return 0;
		}
	}
	return slow_get(c, start, end, access, out);
}

void regwatch_cache_put(struct regwatch_cache *c, struct regwatch_cache_entry *e)
{
	if (unlikely(!c || !e || c->forked))
		return;
	ref_drop(c, e, 1, 0, 1);
}

/* ------------------------------------------------------------ accessors */

void *regwatch_cache_entry_handle(const struct regwatch_cache_entry *e)
{
	return e->handle;
}

const struct regwatch_cache_reg_info *
regwatch_cache_entry_info(const struct regwatch_cache_entry *e)
{
	return &e->cold->info;
}

void *regwatch_cache_entry_addr(const struct regwatch_cache_entry *e)
{
	return (void *)e->start;
}

size_t regwatch_cache_entry_len(const struct regwatch_cache_entry *e)
{
	return e->end - e->start;
}

uint32_t regwatch_cache_entry_access(const struct regwatch_cache_entry *e)
{
	return e->access;
}

/* ------------------------------------------------------------ the rest */

int regwatch_cache_process_events(struct regwatch_cache *c)
{
	int n;

	if (!c)
		return -EINVAL;
	if (c->forked)
		return -ECHILD;
	cache_lock(c);
	c->invalidated = 0;
	process_locked(c);
	n = c->invalidated;
	unlock_and_flush(c);
	return n;
}

int regwatch_cache_fd(const struct regwatch_cache *c)
{
	int fd;

	if (!c)
		return -EINVAL;
	fd = c->mon->ops->fd(c->mon);
	return fd >= 0 ? fd : -ENOTSUP;
}

int regwatch_cache_purge(struct regwatch_cache *c)
{
	int n;

	if (!c)
		return -EINVAL;
	if (c->forked)
		return -ECHILD;
	cache_lock(c);
	process_locked(c);
	n = evict_some(c, SIZE_MAX);
	unlock_and_flush(c);
	return n;
}

const char *regwatch_cache_monitor_name(const struct regwatch_cache *c)
{
	return c ? c->mon->name : NULL;
}

int regwatch_cache_stats(struct regwatch_cache *c, struct regwatch_cache_stats *st)
{
	struct slab *s;
	size_t i;

	if (!c || !st)
		return -EINVAL;
	if (c->forked)
		return -ECHILD;
	cache_lock(c);
	for (s = c->slabs; s; s = s->next)
		for (i = 0; i < s->n; i++)
			fold_gets(c, &s->hot[i]);
	*st = c->st;
	cache_unlock(c);
	return 0;
}

/* -------------------------------------------------------- create/destroy */

static void on_fork_child(struct cache_fork_node *n)
{
	struct regwatch_cache *c = container_of(n, struct regwatch_cache,
						fork_node);

	c->forked = 1;
	cache_hash_poison(&c->hash);	/* every lookup goes to slow_get() */
}

static int monitor_from_env(enum regwatch_cache_monitor *m)
{
	const char *v = getenv("REGWATCH_MONITOR");

	if (!v || !*v || !strcasecmp(v, "auto"))
		*m = REGWATCH_CACHE_MONITOR_AUTO;
	else if (!strcasecmp(v, "kernel"))
		*m = REGWATCH_CACHE_MONITOR_KERNEL;
	else if (!strcasecmp(v, "uffd"))
		*m = REGWATCH_CACHE_MONITOR_UFFD;
	else if (!strcasecmp(v, "none"))
		*m = REGWATCH_CACHE_MONITOR_NONE;
	else
		return -EINVAL;
	return 0;
}

/*
 * Size the kernel monitor for the cache. A one-shot watch keeps one ring
 * entry reserved until its event is consumed, and one more entry stays
 * free for a RESYNC: n cached entries need n watch slots and a ring of
 * n + 1 entries (the module rounds it up to a power of two).
 */
#define DEFAULT_KERNEL_ENTRIES	16383

static struct regwatch_options kernel_monitor_sizes(size_t max_entries)
{
	size_t n = max_entries ? max_entries : DEFAULT_KERNEL_ENTRIES;
	struct regwatch_options ko = { 0 };

	if (n > (1u << 20) - 1)		/* the module's default caps */
		n = (1u << 20) - 1;
	ko.ring_entries = (unsigned int)n + 1;
	ko.max_watches = (unsigned int)n;
	return ko;
}

static int open_monitor(const struct regwatch_cache_options *o,
			struct cache_monitor **mon)
{
	const struct regwatch_options *kopts = o->monitor_options;
	struct regwatch_options sized;
	enum regwatch_cache_monitor m = o->monitor;
	int rc;

	if (m == REGWATCH_CACHE_MONITOR_AUTO) {
		rc = monitor_from_env(&m);
		if (rc)
			return rc;
	}
	if (!kopts) {
		kopts = &sized;
		sized = kernel_monitor_sizes(o->max_entries);
	}
	switch (m) {
	case REGWATCH_CACHE_MONITOR_AUTO:
		rc = cache_monitor_kernel_open(kopts, mon);
		if (rc != -ENOENT && rc != -ENODEV && rc != -ENXIO &&
		    rc != -EACCES && rc != -EPERM)
			return rc;
		return cache_monitor_uffd_open(0, mon);
	case REGWATCH_CACHE_MONITOR_KERNEL:
		return cache_monitor_kernel_open(kopts, mon);
	case REGWATCH_CACHE_MONITOR_UFFD:
		return cache_monitor_uffd_open(0, mon);
	case REGWATCH_CACHE_MONITOR_NONE:
		return cache_monitor_none_open(mon);
	}
	return -EINVAL;
}

static int check_options(const struct regwatch_cache_options *o,
			 const struct regwatch_cache_backend *be)
{
	if (!be || !be->reg || !be->dereg)
		return -EINVAL;
	if (o->alignment & (o->alignment - 1))
		return -EINVAL;
	if (o->flags & ~(REGWATCH_CACHE_SINGLE_THREAD |
			 REGWATCH_CACHE_STRICT_LIMITS |
			 REGWATCH_CACHE_VERIFY_CLEAR))
		return -EINVAL;
	if ((unsigned int)o->monitor > REGWATCH_CACHE_MONITOR_NONE)
		return -EINVAL;
	return 0;
}

int regwatch_cache_create_with_monitor(const struct regwatch_cache_options *opts,
				       const struct regwatch_cache_backend *backend,
				       struct cache_monitor *mon,
				       struct regwatch_cache **out)
{
	static const struct regwatch_cache_options defaults;
	struct regwatch_cache *c;
	int rc;

	if (!opts)
		opts = &defaults;
	if (!out || !mon)
		rc = -EINVAL;
	else
		rc = check_options(opts, backend);
	if (rc)
		goto fail_mon;
	c = aligned_alloc(64, sizeof(*c));
	if (!c) {
		rc = -ENOMEM;
		goto fail_mon;
	}
	memset(c, 0, sizeof(*c));
	c->amask = opts->alignment ? opts->alignment - 1 :
				     (uintptr_t)sysconf(_SC_PAGESIZE) - 1;
	c->mt = !(opts->flags & REGWATCH_CACHE_SINGLE_THREAD);
	c->mon = mon;
	c->mon_gen = mon->generation;
	if (c->mon_gen)
		c->seen_gen = *c->mon_gen;
	c->be = *backend;
	c->max_entries = opts->max_entries;
	c->max_bytes = opts->max_bytes;
	c->min_access = opts->min_access;
	c->flags = opts->flags;
	c->pagemap_fd = -1;
	c->lru.cold = &c->lru_cold;
	c->lru_cold.hot = &c->lru;
	c->lru.cold->lru_next = c->lru.cold->lru_prev = &c->lru;
	c->hand = &c->lru;
	cache_itree_init(&c->tree);
	pthread_mutex_init(&c->lock, NULL);
	/* 2048 slots of 32 bytes: a 64 KiB table, from the heap */
	rc = cache_hash_init(&c->hash, 2048, hash_keep, c, hash_hint);
	if (rc)
		goto fail_c;
	c->fork_node.child = on_fork_child;
	rc = cache_fork_register(&c->fork_node);
	if (rc)
		goto fail_hash;
	/* Without pagemap, CLEARs are counted as clear_unknown. */
	if (opts->flags & REGWATCH_CACHE_VERIFY_CLEAR)
		c->pagemap_fd = cache_pagemap_open();
	*out = c;
	return 0;

fail_hash:
	cache_hash_fini(&c->hash);
fail_c:
	pthread_mutex_destroy(&c->lock);
	free(c);
fail_mon:
	if (mon)
		mon->ops->destroy(mon, false);
	return rc;
}

int regwatch_cache_create(const struct regwatch_cache_options *opts,
			  const struct regwatch_cache_backend *backend,
			  struct regwatch_cache **out)
{
	static const struct regwatch_cache_options defaults;
	struct cache_monitor *mon;
	int rc;

	if (!opts)
		opts = &defaults;
	if (!out)
		return -EINVAL;
	rc = check_options(opts, backend);
	if (rc)
		return rc;
	rc = open_monitor(opts, &mon);
	if (rc)
		return rc;
	return regwatch_cache_create_with_monitor(opts, backend, mon, out);
}

void regwatch_cache_destroy(struct regwatch_cache *c)
{
	struct regwatch_cache_entry *e;
	struct slab *s, *next;
	size_t i;

	if (!c)
		return;
	cache_fork_unregister(&c->fork_node);
	if (!c->forked) {
		/* Deregister every registration still alive, referenced or
		 * not (the caller promised no other call runs now). */
		cache_lock(c);
		while ((e = c->lru.cold->lru_next) != &c->lru)
			unindex(c, e);
		unlock_and_flush(c);
		for (s = c->slabs; s; s = s->next)
			for (i = 0; i < s->n; i++) {
				e = &s->hot[i];
				if (ref_load(e) & REF_DEAD)
					continue;
				/* still referenced by the caller */
				__atomic_store_n(&e->ref, REF_DEAD, __ATOMIC_RELAXED);
				release_now(c, e, 0);
			}
		pthread_mutex_destroy(&c->lock);
	}
	c->mon->ops->destroy(c->mon, c->forked);
	if (c->pagemap_fd >= 0)
		close(c->pagemap_fd);
	cache_hash_fini(&c->hash);
	for (s = c->slabs; s; s = next) {
		next = s->next;
		free(s->hot);
		free(s->cold);
		free(s);
	}
	free(c);
}
