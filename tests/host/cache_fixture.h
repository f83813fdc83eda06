/* SPDX-License-Identifier: MIT */
/* A cache over the fakes, for host tests that need no special hooks. */
#ifndef REGWATCH_TEST_CACHE_FIXTURE_H
#define REGWATCH_TEST_CACHE_FIXTURE_H

#include "cache_fakes.h"

struct fx {
	struct fake_monitor *m;
	struct fake_backend b;
	struct regwatch_cache *c;
	int destroyed;
};

static inline struct fx *fx_new(const struct regwatch_cache_options *o,
				uint32_t max_watches, bool with_gen)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct regwatch_cache_backend be;

	if (!f)
		abort();
	fake_backend_init(&f->b);
	be = fake_backend_of(&f->b);
	f->m = fake_monitor_new(max_watches, with_gen);
	f->m->destroyed = &f->destroyed;
	if (regwatch_cache_create_with_monitor(o, &be, &f->m->base, &f->c))
		abort();
	return f;
}

/* Destroy and check that nothing leaked; returns 0 if clean. */
static inline int fx_free(struct fx *f)
{
	int bad;

	regwatch_cache_destroy(f->c);
	bad = f->b.live != 0 || f->b.dereg_bad != 0 || f->destroyed != 1;
	free(f);
	return bad;
}

static inline struct regwatch_cache_entry *fx_get(struct fx *f, uintptr_t off,
						  size_t len)
{
	struct regwatch_cache_entry *e = NULL;

	if (regwatch_cache_get(f->c, FA(off), len, 0, &e))
		return NULL;
	return e;
}

static inline struct regwatch_cache_stats fx_stats(struct fx *f)
{
	struct regwatch_cache_stats st;

	if (regwatch_cache_stats(f->c, &st))
		abort();
	return st;
}

#endif /* REGWATCH_TEST_CACHE_FIXTURE_H */
