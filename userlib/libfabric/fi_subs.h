/* SPDX-License-Identifier: MIT */
/*
 * The subscription table of the libfabric import monitor: one entry per
 * subscribe(addr, len) libfabric made, each holding the one-shot regwatch
 * watch behind it.
 *
 * libfabric's import monitor is global, so several MR caches (one per
 * domain) may subscribe the same (addr, len), and libfabric up to 1.17
 * never unsubscribes (a subscription outlives its cache entry). So an
 * armed entry serves every later subscribe of the same range, and an
 * entry is removed when its notify() has been delivered (or on a later
 * libfabric's unsubscribe). A fired entry whose notify is still pending
 * stays beside a new armed one: it makes valid() say false for entries
 * registered before the invalidation.
 *
 * Entries live in a growable slot array; a watch's cookie is
 * (generation << 32 | slot) so that an event arriving after its entry was
 * removed (or its slot reused) is recognised as stale and dropped. Lookup
 * by (addr, len) goes through a chained hash of slot indices.
 *
 * No locking here: the caller (fi_monitor.c) serialises every call.
 */
#ifndef REGWATCH_FI_SUBS_H
#define REGWATCH_FI_SUBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <regwatch.h>

struct fi_sub {
	uintptr_t addr;
	size_t len;
	struct regwatch_ref ref;
	uint32_t gen;		/* bumped on every reuse of the slot */
	bool used;
	bool fired;		/* its event was drained (notify queued) */
	uint32_t next;		/* hash chain or free list; FI_SUBS_NONE */
};

#define FI_SUBS_NONE UINT32_MAX

struct fi_subs {
	struct fi_sub *slot;
	uint32_t nslots;
	uint32_t live;
	uint32_t free_head;
	uint32_t *bucket;	/* heads of the hash chains */
	uint32_t nbuckets;	/* power of two */
};

int fi_subs_init(struct fi_subs *t);
void fi_subs_fini(struct fi_subs *t);

/*
 * Reserve an entry for (addr, len); *cookie is the value to give the
 * watch. The entry is not in the table until fi_subs_commit().
 * -ENOMEM on allocation failure.
 */
int fi_subs_reserve(struct fi_subs *t, uint64_t *cookie);
void fi_subs_commit(struct fi_subs *t, uint64_t cookie, uintptr_t addr,
		    size_t len, const struct regwatch_ref *ref);
void fi_subs_cancel(struct fi_subs *t, uint64_t cookie);

/*
 * Remove one entry for exactly (addr, len), preferring one whose watch
 * fired; its ref goes to *ref. false if there is none.
 */
bool fi_subs_remove(struct fi_subs *t, uintptr_t addr, size_t len,
		    struct regwatch_ref *ref);

/* An armed (not fired) entry for exactly (addr, len) exists. */
bool fi_subs_armed(const struct fi_subs *t, uintptr_t addr, size_t len);

/* Remove the entry a cookie names, if it still exists. */
bool fi_subs_remove_cookie(struct fi_subs *t, uint64_t cookie,
			   struct regwatch_ref *ref);

/*
 * Is (addr, len) still valid? The entries for exactly (addr, len) decide
 * (any fired one, notified or not, says no); when there is none, the entries
 * that cover the range decide. No entry at all: false (the cache must
 * register again rather than trust an unwatched range).
 */
bool fi_subs_valid(const struct fi_subs *t, uintptr_t addr, size_t len);

/*
 * An event with this cookie arrived: if its entry still exists and was
 * not marked yet, mark it fired, store its range and return true.
 */
bool fi_subs_fire(struct fi_subs *t, uint64_t cookie, uintptr_t *addr,
		  size_t *len);

/* Call fn on every live entry (teardown). */
void fi_subs_foreach(struct fi_subs *t,
		     void (*fn)(struct fi_sub *s, void *arg), void *arg);

#endif /* REGWATCH_FI_SUBS_H */
