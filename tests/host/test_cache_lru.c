// SPDX-License-Identifier: MIT
/*
 * Limits and LRU: max_entries and max_bytes are kept by evicting
 * unreferenced entries in CLOCK order (an entry hit since the hand last
 * passed survives a round); referenced entries are never evicted; when
 * nothing can be evicted the cache goes over the limit, or fails with
 * -ENOSPC under REGWATCH_CACHE_STRICT_LIMITS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache_fixture.h"

static uint32_t mode;

static struct fx *mk(size_t max_entries, size_t max_bytes, uint32_t flags)
{
	struct regwatch_cache_options o = {
		.max_entries = max_entries, .max_bytes = max_bytes,
		.flags = mode | flags,
	};

	return fx_new(&o, 1024, true);
}

static void get_put(struct fx *f, uintptr_t off, size_t len)
{
	struct regwatch_cache_entry *e = fx_get(f, off, len);

	assert_non_null(e);
	regwatch_cache_put(f->c, e);
}

static int cached(struct fx *f, uintptr_t off, size_t len)
{
	int regs = f->b.regs;

	get_put(f, off, len);
	return f->b.regs == regs;
}

static void test_max_entries(void **state)
{
	struct fx *f = mk(4, 0, 0);
	struct regwatch_cache_stats st;
	int i;

	(void)state;
	for (i = 0; i < 6; i++)
		get_put(f, i * PAGE, PAGE);
	st = fx_stats(f);
	assert_int_equal(st.entries, 4);
	assert_int_equal(st.evictions, 2);
	assert_int_equal(f->b.deregs, 2);
	assert_int_equal(f->m->live, 4);
	/* the oldest went first */
	assert_true(cached(f, 5 * PAGE, PAGE));
	assert_true(cached(f, 4 * PAGE, PAGE));
	assert_false(cached(f, 0, PAGE));
	assert_int_equal(fx_free(f), 0);
}

static void test_clock_keeps_recently_hit(void **state)
{
	struct fx *f = mk(3, 0, 0);
	struct regwatch_cache_stats st;

	(void)state;
	get_put(f, 0, PAGE);		/* A */
	get_put(f, PAGE, PAGE);		/* B */
	get_put(f, 2 * PAGE, PAGE);	/* C */
	assert_true(cached(f, 0, PAGE));	/* hit A */
	get_put(f, 3 * PAGE, PAGE);	/* D: evicts B, not A */
	st = fx_stats(f);
	assert_int_equal(st.evictions, 1);
	assert_true(cached(f, 0, PAGE));
	assert_true(cached(f, 2 * PAGE, PAGE));
	assert_true(cached(f, 3 * PAGE, PAGE));
	assert_false(cached(f, PAGE, PAGE));
	assert_int_equal(fx_free(f), 0);
}

static void test_referenced_never_evicted(void **state)
{
	struct fx *f = mk(2, 0, 0);
	struct regwatch_cache_entry *e[3];
	struct regwatch_cache_stats st;
	int i;

	(void)state;
	for (i = 0; i < 3; i++)
		e[i] = fx_get(f, i * PAGE, PAGE);
	st = fx_stats(f);
	assert_int_equal(st.entries, 3);	/* over the soft limit */
	assert_int_equal(st.over_limit, 1);
	assert_int_equal(st.evictions, 0);
	assert_int_equal(f->b.deregs, 0);
	for (i = 0; i < 3; i++)
		regwatch_cache_put(f->c, e[i]);
	get_put(f, 3 * PAGE, PAGE);	/* back under the limit */
	st = fx_stats(f);
	assert_int_equal(st.entries, 2);
	assert_int_equal(fx_free(f), 0);
}

static void test_strict_limits(void **state)
{
	struct fx *f = mk(2, 0, REGWATCH_CACHE_STRICT_LIMITS);
	struct regwatch_cache_entry *a, *b, *c = NULL;

	(void)state;
	a = fx_get(f, 0, PAGE);
	b = fx_get(f, PAGE, PAGE);
	assert_int_equal(regwatch_cache_get(f->c, FA(2 * PAGE), PAGE, 0, &c), -ENOSPC);
	assert_null(c);
	assert_int_equal(f->b.live, 2);
	assert_int_equal(f->m->live, 2);
	regwatch_cache_put(f->c, a);
	c = fx_get(f, 2 * PAGE, PAGE);	/* a goes */
	assert_non_null(c);
	assert_int_equal(f->b.deregs, 2);
	regwatch_cache_put(f->c, b);
	regwatch_cache_put(f->c, c);
	assert_int_equal(fx_free(f), 0);
}

static void test_max_bytes(void **state)
{
	struct fx *f = mk(0, 4 * PAGE, 0);
	struct regwatch_cache_stats st;

	(void)state;
	get_put(f, 0, 2 * PAGE);
	get_put(f, 8 * PAGE, 2 * PAGE);
	st = fx_stats(f);
	assert_int_equal(st.registered_bytes, 4 * PAGE);
	get_put(f, 16 * PAGE, PAGE);
	st = fx_stats(f);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(st.registered_bytes, 3 * PAGE);
	assert_true(st.registered_bytes <= 4 * PAGE);
	assert_int_equal(f->b.live_bytes, 3 * PAGE);
	/* one too big for the limit alone: registered anyway (soft) */
	get_put(f, 32 * PAGE, 8 * PAGE);
	st = fx_stats(f);
	assert_int_equal(st.over_limit, 1);
	assert_int_equal(st.entries, 1);
	assert_int_equal(fx_free(f), 0);
}

/* Invalidated-but-referenced registrations count against max_bytes. */
static void test_zombies_count(void **state)
{
	struct fx *f = mk(0, 4 * PAGE, 0);
	struct regwatch_cache_entry *z;
	struct regwatch_cache_stats st;

	(void)state;
	z = fx_get(f, 0, 3 * PAGE);
	fake_fire(f->m, FAKE_BASE, FAKE_BASE + PAGE, REGWATCH_CLASS_UNMAP);
	assert_int_equal(regwatch_cache_process_events(f->c), 1);
	get_put(f, 8 * PAGE, PAGE);
	get_put(f, 16 * PAGE, PAGE);	/* 3 + 1 + 1 > 4: evicts the 1 */
	st = fx_stats(f);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(st.registered_bytes, 4 * PAGE);
	regwatch_cache_put(f->c, z);
	st = fx_stats(f);
	assert_int_equal(st.registered_bytes, PAGE);
	assert_int_equal(fx_free(f), 0);
}

/* Many entries, a hot set that keeps being hit survives the churn. */
static void test_hot_set_survives(void **state)
{
	struct fx *f = mk(64, 0, 0);
	struct regwatch_cache_stats st;
	int i, j;

	(void)state;
	for (i = 0; i < 1000; i++) {
		for (j = 0; j < 8; j++)
			get_put(f, j * PAGE, PAGE);		/* hot */
		get_put(f, (100 + i) * PAGE, PAGE);		/* cold stream */
	}
	st = fx_stats(f);
	assert_true(st.entries <= 64);
	assert_int_equal(st.misses, 8 + 1000);
	for (j = 0; j < 8; j++)
		assert_true(cached(f, j * PAGE, PAGE));
	assert_int_equal(fx_free(f), 0);
}

/* Many entries: the hash grows, rebuilds drop stale aliases. */
static void test_many_entries(void **state)
{
	struct regwatch_cache_options o = { .flags = mode };
	struct fx *f = fx_new(&o, 1 << 16, true);
	struct regwatch_cache_stats st;
	int i, round;

	(void)state;
	for (round = 0; round < 3; round++) {
		for (i = 0; i < 20000; i++)
			get_put(f, (uintptr_t)i * 4 * PAGE, 2 * PAGE);
		for (i = 0; i < 20000; i += 2)		/* aliases */
			get_put(f, (uintptr_t)i * 4 * PAGE + PAGE, PAGE);
		st = fx_stats(f);
		assert_int_equal(st.entries, 20000);
		assert_int_equal(st.misses, 20000 * (round + 1));
		/* later rounds may hit stale aliases that point to a
		 * recycled entry which happens to cover them: fast hits */
		if (round == 0)
			assert_int_equal(st.slow_hits, 10000);
		assert_int_equal(st.hits, 10000 * (round + 1));
		assert_int_equal(regwatch_cache_purge(f->c), 20000);
	}
	assert_int_equal(f->b.live, 0);
	assert_int_equal(fx_free(f), 0);
}

static int set_mt(void **state) { (void)state; mode = 0; return 0; }
static int set_st(void **state)
{
	(void)state;
	mode = REGWATCH_CACHE_SINGLE_THREAD;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_max_entries),
		cmocka_unit_test(test_clock_keeps_recently_hit),
		cmocka_unit_test(test_referenced_never_evicted),
		cmocka_unit_test(test_strict_limits),
		cmocka_unit_test(test_max_bytes),
		cmocka_unit_test(test_zombies_count),
		cmocka_unit_test(test_hot_set_survives),
		cmocka_unit_test(test_many_entries),
	};
	int rc;

	rc = cmocka_run_group_tests_name("thread-safe", tests, set_mt, NULL);
	rc |= cmocka_run_group_tests_name("single-thread", tests, set_st, NULL);
	return rc;
}
