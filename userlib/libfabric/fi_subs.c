// SPDX-License-Identifier: MIT
/* The import monitor's subscription table; see fi_subs.h. */
#include "fi_subs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_SLOTS 64u
#define INITIAL_BUCKETS 64u

static uint32_t bucket_of(const struct fi_subs *t, uintptr_t addr, size_t len)
{
	uint64_t h = ((uint64_t)addr ^ ((uint64_t)len << 17)) *
		     0x9e3779b97f4a7c15ULL;

	return (uint32_t)(h >> 32) & (t->nbuckets - 1);
}

static uint64_t cookie_of(const struct fi_subs *t, uint32_t i)
{
	return ((uint64_t)t->slot[i].gen << 32) | i;
}

/* The slot a cookie names, if it still names a live entry. */
static struct fi_sub *slot_of(struct fi_subs *t, uint64_t cookie)
{
	uint32_t i = (uint32_t)cookie;

	if (i >= t->nslots || !t->slot[i].used ||
	    t->slot[i].gen != (uint32_t)(cookie >> 32))
		return NULL;
	return &t->slot[i];
}

int fi_subs_init(struct fi_subs *t)
{
	memset(t, 0, sizeof(*t));
	t->free_head = FI_SUBS_NONE;
	t->bucket = malloc(INITIAL_BUCKETS * sizeof(*t->bucket));
	if (!t->bucket)
		return -ENOMEM;
	t->nbuckets = INITIAL_BUCKETS;
	for (uint32_t b = 0; b < t->nbuckets; b++)
		t->bucket[b] = FI_SUBS_NONE;
	return 0;
}

void fi_subs_fini(struct fi_subs *t)
{
	free(t->slot);
	free(t->bucket);
	memset(t, 0, sizeof(*t));
}

static int grow_slots(struct fi_subs *t)
{
	uint32_t n = t->nslots ? t->nslots * 2 : INITIAL_SLOTS;
	struct fi_sub *s;

	if (n <= t->nslots || n >= FI_SUBS_NONE)
		return -ENOMEM;
	s = realloc(t->slot, (size_t)n * sizeof(*s));
	if (!s)
		return -ENOMEM;
	memset(s + t->nslots, 0, (size_t)(n - t->nslots) * sizeof(*s));
	/* New slots go on the free list, lowest first. */
	for (uint32_t i = n; i-- > t->nslots;) {
		s[i].next = t->free_head;
		t->free_head = i;
	}
	t->slot = s;
	t->nslots = n;
	return 0;
}

/* Keep chains short: rehash into twice the buckets when they fill up. */
static void maybe_grow_buckets(struct fi_subs *t)
{
	uint32_t n = t->nbuckets * 2, *b;

	if (t->live < t->nbuckets || n == 0)
		return;
	b = malloc((size_t)n * sizeof(*b));
	if (!b)
		return;		/* longer chains, still correct */
	free(t->bucket);
	t->bucket = b;
	t->nbuckets = n;
	for (uint32_t i = 0; i < n; i++)
		b[i] = FI_SUBS_NONE;
	for (uint32_t i = 0; i < t->nslots; i++) {
		struct fi_sub *s = &t->slot[i];
		uint32_t h;

		if (!s->used || s->len == 0)
			continue;	/* reserved, not committed */
		h = bucket_of(t, s->addr, s->len);
		s->next = b[h];
		b[h] = i;
	}
}

int fi_subs_reserve(struct fi_subs *t, uint64_t *cookie)
{
	uint32_t i;
	int rc;

	if (t->free_head == FI_SUBS_NONE) {
		rc = grow_slots(t);
		if (rc)
			return rc;
	}
	i = t->free_head;
	t->free_head = t->slot[i].next;
	t->slot[i].gen++;
	t->slot[i].used = true;
	t->slot[i].fired = false;
	t->slot[i].len = 0;	/* not in a chain yet */
	t->slot[i].next = FI_SUBS_NONE;
	*cookie = cookie_of(t, i);
	return 0;
}

static void release(struct fi_subs *t, uint32_t i)
{
	t->slot[i].used = false;
	t->slot[i].next = t->free_head;
	t->free_head = i;
}

void fi_subs_commit(struct fi_subs *t, uint64_t cookie, uintptr_t addr,
		    size_t len, const struct regwatch_ref *ref)
{
	struct fi_sub *s = slot_of(t, cookie);
	uint32_t h;

	if (!s || len == 0)
		return;
	s->addr = addr;
	s->len = len;
	s->ref = *ref;
	h = bucket_of(t, addr, len);
	s->next = t->bucket[h];
	t->bucket[h] = (uint32_t)cookie;
	t->live++;
	maybe_grow_buckets(t);
}

void fi_subs_cancel(struct fi_subs *t, uint64_t cookie)
{
	if (slot_of(t, cookie))
		release(t, (uint32_t)cookie);
}

/* Unlink slot i from its hash chain and free it. */
static void unlink_slot(struct fi_subs *t, uint32_t i)
{
	uint32_t *link = &t->bucket[bucket_of(t, t->slot[i].addr,
					      t->slot[i].len)];

	while (*link != i)
		link = &t->slot[*link].next;
	*link = t->slot[i].next;
	t->live--;
	release(t, i);
}

bool fi_subs_armed(const struct fi_subs *t, uintptr_t addr, size_t len)
{
	if (len == 0)
		return false;
	for (uint32_t i = t->bucket[bucket_of(t, addr, len)]; i != FI_SUBS_NONE;
	     i = t->slot[i].next) {
		const struct fi_sub *s = &t->slot[i];

		if (s->addr == addr && s->len == len &&
		    regwatch_ref_valid(&s->ref))
			return true;
	}
	return false;
}

bool fi_subs_remove_cookie(struct fi_subs *t, uint64_t cookie,
			   struct regwatch_ref *ref)
{
	struct fi_sub *s = slot_of(t, cookie);

	if (!s || s->len == 0)
		return false;
	*ref = s->ref;
	unlink_slot(t, (uint32_t)cookie);
	return true;
}

bool fi_subs_remove(struct fi_subs *t, uintptr_t addr, size_t len,
		    struct regwatch_ref *ref)
{
	uint32_t *link, *pick = NULL;

	if (len == 0)
		return false;
	for (link = &t->bucket[bucket_of(t, addr, len)]; *link != FI_SUBS_NONE;
	     link = &t->slot[*link].next) {
		struct fi_sub *s = &t->slot[*link];

		if (s->addr != addr || s->len != len)
			continue;
		if (!pick || !regwatch_ref_valid(&s->ref))
			pick = link;
		if (!regwatch_ref_valid(&s->ref))
			break;
	}
	if (!pick)
		return false;

	uint32_t i = *pick;

	*ref = t->slot[i].ref;
	*pick = t->slot[i].next;
	t->live--;
	release(t, i);
	return true;
}

bool fi_subs_valid(const struct fi_subs *t, uintptr_t addr, size_t len)
{
	bool found = false;
	uintptr_t end = addr + len;

	if (len == 0 || end < addr)
		return false;
	for (uint32_t i = t->bucket[bucket_of(t, addr, len)]; i != FI_SUBS_NONE;
	     i = t->slot[i].next) {
		const struct fi_sub *s = &t->slot[i];

		if (s->addr != addr || s->len != len)
			continue;
		if (!regwatch_ref_valid(&s->ref))
			return false;
		found = true;
	}
	if (found)
		return true;

	/* A caller that asks about a sub-range (other libfabric versions):
	 * the committed entries covering it decide. Linear, but only here. */
	for (uint32_t i = 0; i < t->nslots; i++) {
		const struct fi_sub *s = &t->slot[i];

		if (!s->used || s->len == 0 || s->addr > addr ||
		    s->addr + s->len < end)
			continue;
		if (!regwatch_ref_valid(&s->ref))
			return false;
		found = true;
	}
	return found;
}

bool fi_subs_fire(struct fi_subs *t, uint64_t cookie, uintptr_t *addr,
		  size_t *len)
{
	struct fi_sub *s = slot_of(t, cookie);

	if (!s || s->len == 0 || s->fired)
		return false;
	s->fired = true;
	*addr = s->addr;
	*len = s->len;
	return true;
}

void fi_subs_foreach(struct fi_subs *t,
		     void (*fn)(struct fi_sub *s, void *arg), void *arg)
{
	for (uint32_t i = 0; i < t->nslots; i++)
		if (t->slot[i].used && t->slot[i].len)
			fn(&t->slot[i], arg);
}
