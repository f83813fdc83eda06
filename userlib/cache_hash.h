/* SPDX-License-Identifier: MIT */
/*
 * Lock-free hint hash of the registration cache: maps a key (the aligned
 * start address of a request) to one cached object whose range starts at,
 * or covers, that address. Readers take no lock and may see a stale or
 * torn slot; every answer is a *hint* that the caller validates after
 * taking a reference (the objects are type-stable: never freed while the
 * hash lives). A missing answer only sends the caller to the slow path.
 *
 * Writers (insert, remove, rebuild) are serialised by the caller's lock.
 * Open addressing with linear probing and tombstones. Slots are never
 * moved while readers may walk a table: a rebuild of the same size writes
 * the slots in place (readers then may miss, never crash), a growth
 * publishes a new table and keeps the old one until cache_hash_fini(), so
 * the memory held is at most about twice the largest table.
 */
#ifndef REGWATCH_CACHE_HASH_H
#define REGWATCH_CACHE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHE_HASH_TOMB ((void *)1)

struct cache_hash_slot {
	uint64_t key;		/* key | 1; 0: empty */
	void *val;		/* object, CACHE_HASH_TOMB, or NULL */
	/* An address the reader will load after val's object (the caller's
	 * hint(val)): read with the slot, it lets the reader prefetch both
	 * lines at once instead of one after the other. Maybe stale: only
	 * ever prefetched, never dereferenced. */
	const void *next;
	uint64_t pad;		/* two slots per cache line */
};

struct cache_hash_table {
	uint64_t mask;		/* slots - 1 */
	unsigned int shift;	/* 64 - log2(slots) */
	size_t used;		/* non-empty slots (live + tombstones) */
	size_t live;		/* slots holding an object */
	struct cache_hash_table *retired;	/* older tables, kept */
	struct cache_hash_slot slots[];
};

/*
 * keep(val, key, arg): called by a rebuild for every live slot; false drops
 * the slot (a stale alias).
 */
typedef bool (*cache_hash_keep_fn)(void *val, uint64_t key, void *arg);
/* hint(val): the address stored as the slot's `next` (NULL: none). */
typedef const void *(*cache_hash_hint_fn)(void *val);

struct cache_hash {
	struct cache_hash_table *tbl;	/* read with acquire by readers */
	struct cache_hash_table *real;	/* the tables while poisoned */
	cache_hash_keep_fn keep;
	void *keep_arg;
	cache_hash_hint_fn hint;
};

static inline uint64_t cache_hash_slot_of(const struct cache_hash_table *t,
					  uint64_t key)
{
	return ((key | 1) * 0x9e3779b97f4a7c15ULL) >> t->shift;
}

/* Readers: load the table, then walk slots from cache_hash_slot_of(). */
static inline struct cache_hash_table *cache_hash_table(struct cache_hash *h)
{
	return __atomic_load_n(&h->tbl, __ATOMIC_ACQUIRE);
}

int cache_hash_init(struct cache_hash *h, size_t slots, cache_hash_keep_fn keep,
		    void *keep_arg, cache_hash_hint_fn hint);
void cache_hash_fini(struct cache_hash *h);

/*
 * Map key to val (replacing what key mapped to). May rebuild or grow the
 * table. -ENOMEM if a needed growth failed (the mapping is then not made:
 * harmless, it is only a hint).
 */
int cache_hash_insert(struct cache_hash *h, uint64_t key, void *val);
/* Remove key's slot if it maps to val. */
void cache_hash_remove(struct cache_hash *h, uint64_t key, const void *val);
/* Make every reader miss: used after fork in the child (no free). */
void cache_hash_poison(struct cache_hash *h);

#endif /* REGWATCH_CACHE_HASH_H */
