// SPDX-License-Identifier: MIT
/* Lock-free hint hash: writer side (see cache_hash.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cache_hash.h"

#define MIN_SLOTS 1024

/* A table of two empty slots: every probe ends at once (used after fork). */
static struct {
	struct cache_hash_table t;
	struct cache_hash_slot s[2];
} poison_table = { .t = { .mask = 1, .shift = 63 } };

static struct cache_hash_table *table_new(size_t slots)
{
	struct cache_hash_table *t;
	unsigned int bits = 0;

	size_t bytes, huge = 2UL << 20;

	while (((size_t)1 << bits) < slots)
		bits++;
	bytes = sizeof(*t) + ((size_t)1 << bits) * sizeof(t->slots[0]);
	if (bytes < huge) {
		t = calloc(1, bytes);
		if (!t)
			return NULL;
	} else {
		/* big: on transparent huge pages (fewer TLB misses) */
		bytes = (bytes + huge - 1) & ~(huge - 1);
		if (posix_memalign((void **)&t, huge, bytes))
			return NULL;
		madvise(t, bytes, MADV_HUGEPAGE);
		memset(t, 0, bytes);
	}
	t->mask = ((uint64_t)1 << bits) - 1;
	t->shift = 64 - bits;
	return t;
}

int cache_hash_init(struct cache_hash *h, size_t slots, cache_hash_keep_fn keep,
		    void *keep_arg, cache_hash_hint_fn hint)
{
	if (slots < MIN_SLOTS)
		slots = MIN_SLOTS;
	h->keep = keep;
	h->keep_arg = keep_arg;
	h->hint = hint;
	h->real = NULL;
	h->tbl = table_new(slots);
	return h->tbl ? 0 : -ENOMEM;
}

void cache_hash_fini(struct cache_hash *h)
{
	struct cache_hash_table *t = h->real ? h->real : h->tbl, *next;

	while (t) {
		next = t->retired;
		free(t);
		t = next;
	}
	h->tbl = NULL;
	h->real = NULL;
}

void cache_hash_poison(struct cache_hash *h)
{
	/* Keep the real tables reachable for cache_hash_fini(). */
	if (!h->real)
		h->real = h->tbl;
	__atomic_store_n(&h->tbl, &poison_table.t, __ATOMIC_RELEASE);
}

static const void *hint_of(const struct cache_hash *h, void *val)
{
	return h->hint && val && val != CACHE_HASH_TOMB ? h->hint(val) : NULL;
}

/* Set a slot's val and next (a lone hint: no ordering with val needed). */
static void slot_set_val(struct cache_hash_slot *s, void *val, const void *next)
{
	__atomic_store_n(&s->next, next, __ATOMIC_RELAXED);
	__atomic_store_n(&s->val, val, __ATOMIC_RELEASE);
}

static void slot_store(struct cache_hash_slot *s, uint64_t key, void *val,
		       const void *next)
{
	/* val first: a reader that sees the key sees a valid hint or NULL */
	slot_set_val(s, val, next);
	__atomic_store_n(&s->key, key, __ATOMIC_RELEASE);
}

/* Plain insert into a table being built (no readers, no duplicates). */
static void put_fresh(struct cache_hash_table *t, uint64_t k, void *val,
		      const void *next)
{
	uint64_t i = cache_hash_slot_of(t, k);

	while (t->slots[i].key)
		i = (i + 1) & t->mask;
	t->slots[i].key = k;
	t->slots[i].val = val;
	t->slots[i].next = next;
	t->used++;
	t->live++;
}

/*
 * Rebuild: copy the live, kept slots into a table of `slots` slots; if it
 * has the current size, write it back in place, else publish it and
 * retire the old one.
 */
static int rebuild(struct cache_hash *h, size_t slots)
{
	struct cache_hash_table *old = h->tbl, *t;
	uint64_t i;

	t = table_new(slots);
	if (!t)
		return -ENOMEM;
	for (i = 0; i <= old->mask; i++) {
		struct cache_hash_slot *s = &old->slots[i];

		if (!s->key || !s->val || s->val == CACHE_HASH_TOMB)
			continue;
		if (h->keep && !h->keep(s->val, s->key & ~(uint64_t)1,
					h->keep_arg))
			continue;
		put_fresh(t, s->key, s->val, hint_of(h, s->val));
	}
	if (t->mask == old->mask) {
		/* In place: readers may miss during the copy, never crash. */
		for (i = 0; i <= old->mask; i++) {
			struct cache_hash_slot *s = &old->slots[i];

			if (s->key == t->slots[i].key && s->val == t->slots[i].val &&
			    s->next == t->slots[i].next)
				continue;
			if (!t->slots[i].key) {
				__atomic_store_n(&s->key, 0, __ATOMIC_RELEASE);
				__atomic_store_n(&s->val, NULL, __ATOMIC_RELEASE);
			} else {
				slot_store(s, t->slots[i].key, t->slots[i].val,
					   t->slots[i].next);
			}
		}
		old->used = t->used;
		old->live = t->live;
		free(t);
		return 0;
	}
	t->retired = old;
	__atomic_store_n(&h->tbl, t, __ATOMIC_RELEASE);
	return 0;
}

/* Keep the load (live + tombstones) at most 3/4 and live slots at most
 * 1/2 after a rebuild, so probe chains stay short and always end at an
 * empty slot. */
static int make_room(struct cache_hash *h)
{
	struct cache_hash_table *t = h->tbl;
	size_t slots = t->mask + 1;
	int rc;

	if ((t->used + 1) * 4 <= slots * 3)
		return 0;
	rc = rebuild(h, slots);		/* drop tombstones and stale aliases */
	if (rc)
		return rc;
	t = h->tbl;
	if ((t->live + 1) * 2 > slots)
		return rebuild(h, slots * 2);
	return 0;
}

int cache_hash_insert(struct cache_hash *h, uint64_t key, void *val)
{
	struct cache_hash_table *t;
	struct cache_hash_slot *tomb = NULL;
	uint64_t k = key | 1, i;
	int rc;

	rc = make_room(h);
	if (rc)
		return rc;
	t = h->tbl;
	for (i = cache_hash_slot_of(t, k);; i = (i + 1) & t->mask) {
		struct cache_hash_slot *s = &t->slots[i];

		if (!s->key)
			break;
		if (s->key == k) {
			if (!s->val || s->val == CACHE_HASH_TOMB) {
				t->live++;
			}
			slot_set_val(s, val, hint_of(h, val));
			return 0;
		}
		if (!tomb && (!s->val || s->val == CACHE_HASH_TOMB))
			tomb = s;
	}
	if (tomb) {
		slot_store(tomb, k, val, hint_of(h, val));	/* reuses a tombstone */
	} else {
		slot_store(&t->slots[i], k, val, hint_of(h, val));
		t->used++;
	}
	t->live++;
	return 0;
}

void cache_hash_remove(struct cache_hash *h, uint64_t key, const void *val)
{
	struct cache_hash_table *t = h->tbl;
	uint64_t k = key | 1, i;

	for (i = cache_hash_slot_of(t, k);; i = (i + 1) & t->mask) {
		struct cache_hash_slot *s = &t->slots[i];

		if (!s->key)
			return;
		if (s->key == k) {
			if (s->val == val) {
				__atomic_store_n(&s->val, CACHE_HASH_TOMB,
						 __ATOMIC_RELEASE);
				t->live--;
			}
			return;
		}
	}
}
