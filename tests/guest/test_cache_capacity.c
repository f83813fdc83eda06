// SPDX-License-Identifier: MIT
/*
 * How many entries the cache holds over the kernel monitor. Each entry
 * holds a one-shot watch, and each armed one-shot watch keeps a ring
 * entry reserved, so the ring, not just max_watches, bounds the cache.
 * Past the bound the cache must evict, never fail a get() while an
 * unreferenced entry could give its watch back, and it must still see
 * every unmap of what it holds.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "regwatch_cache.h"

#define PAGE 4096UL
#define HUGE (2UL << 20)

struct count_backend {
	size_t live;
};

static int count_reg(void *ctx, void *addr, size_t len, uint32_t access,
		     void **handle, struct regwatch_cache_reg_info *info)
{
	struct count_backend *b = ctx;

	(void)len; (void)access; (void)info;
	b->live++;
	*handle = addr;
	return 0;
}

static int count_dereg(void *ctx, void *handle)
{
	struct count_backend *b = ctx;

	(void)handle;
	b->live--;
	return 0;
}

/* An address range that is mapped but never touched: watches need no
 * pages, and the guest has little memory. */
static char *reserve(size_t pages)
{
	void *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

/* get+put `pages` distinct pages; every get must succeed. */
static void get_put_all(struct regwatch_cache *c, char *base, size_t pages)
{
	struct regwatch_cache_entry *e;
	size_t i;
	int rc;

	for (i = 0; i < pages; i++) {
		rc = regwatch_cache_get(c, base + i * PAGE, PAGE, 0, &e);
		if (rc)
			fail_msg("get of page %zu of %zu: %s", i, pages,
				 strerror(-rc));
		regwatch_cache_put(c, e);
	}
}

static struct regwatch_cache *create(const struct regwatch_cache_options *o,
				     struct count_backend *b)
{
	struct regwatch_cache_backend be = {
		.reg = count_reg, .dereg = count_dereg, .ctx = b,
	};
	struct regwatch_cache *c;

	assert_int_equal(regwatch_cache_create(o, &be, &c), 0);
	return c;
}

/*
 * Defaults (the module's 4096-entry default ring once held the cache to
 * 4095 entries, and the 4096th distinct get failed with ENOBUFS): far
 * more distinct gets than the default capacity all succeed, by eviction,
 * and an unmap of everything still invalidates what is cached.
 */
static void test_defaults_evict_past_capacity(void **state)
{
	struct regwatch_cache_options o = {
		.monitor = REGWATCH_CACHE_MONITOR_KERNEL,
	};
	const size_t pages = 20000;
	struct regwatch_cache_stats st;
	struct count_backend b = { 0 };
	struct regwatch_cache *c;
	char *base = reserve(pages);

	(void)state;
	c = create(&o, &b);
	get_put_all(c, base, pages);
	assert_int_equal(regwatch_cache_stats(c, &st), 0);
	assert_int_equal(st.misses, pages);
	assert_true(st.entries >= 4096);	/* more than the old bound */
	assert_true(st.entries < pages);
	assert_int_equal(st.evictions, pages - st.entries);
	assert_int_equal(b.live, st.entries);

	assert_int_equal(munmap(base, pages * PAGE), 0);
	regwatch_cache_process_events(c);
	assert_int_equal(regwatch_cache_stats(c, &st), 0);
	assert_int_equal(st.entries, 0);
	assert_int_equal(b.live, 0);
	regwatch_cache_destroy(c);
}

/* A small ring: capacity ring_entries - 1, then LRU eviction. */
static void test_small_ring_evicts(void **state)
{
	struct regwatch_options mo = { .ring_entries = 64 };
	struct regwatch_cache_options o = {
		.monitor = REGWATCH_CACHE_MONITOR_KERNEL,
		.monitor_options = &mo,
	};
	struct regwatch_cache_stats st;
	struct count_backend b = { 0 };
	struct regwatch_cache *c;
	char *base = reserve(1000);

	(void)state;
	c = create(&o, &b);
	get_put_all(c, base, 1000);
	assert_int_equal(regwatch_cache_stats(c, &st), 0);
	assert_int_equal(st.entries, 63);
	assert_int_equal(st.evictions, 1000 - 63);
	regwatch_cache_destroy(c);
	munmap(base, 1000 * PAGE);
}

/* Every entry referenced: nothing to evict, a clear -ENOSPC. */
static void test_all_referenced_enospc(void **state)
{
	struct regwatch_options mo = { .ring_entries = 8 };
	struct regwatch_cache_options o = {
		.monitor = REGWATCH_CACHE_MONITOR_KERNEL,
		.monitor_options = &mo,
	};
	struct regwatch_cache_entry *e[8];
	struct count_backend b = { 0 };
	struct regwatch_cache *c;
	char *base = reserve(8);
	int i;

	(void)state;
	c = create(&o, &b);
	for (i = 0; i < 7; i++)
		assert_int_equal(regwatch_cache_get(c, base + i * PAGE, PAGE,
						    0, &e[i]), 0);
	assert_int_equal(regwatch_cache_get(c, base + 7 * PAGE, PAGE, 0,
					    &e[7]), -ENOSPC);
	for (i = 0; i < 7; i++)
		regwatch_cache_put(c, e[i]);
	/* One put gives a watch back: the next get succeeds. */
	assert_int_equal(regwatch_cache_get(c, base + 7 * PAGE, PAGE, 0,
					    &e[7]), 0);
	regwatch_cache_put(c, e[7]);
	regwatch_cache_destroy(c);
	munmap(base, 8 * PAGE);
}

/* max_entries sizes the monitor: 10^5 entries, no eviction (above the
 * module's old 65536-entry ring cap). */
static void test_max_entries_sizes_monitor(void **state)
{
	struct regwatch_cache_options o = {
		.monitor = REGWATCH_CACHE_MONITOR_KERNEL,
		.max_entries = 100000,
	};
	const size_t pages = 100000;
	struct regwatch_cache_stats st;
	struct count_backend b = { 0 };
	struct regwatch_cache *c;
	char *base = reserve(pages), *mid;

	(void)state;
	c = create(&o, &b);
	get_put_all(c, base, pages);
	assert_int_equal(regwatch_cache_stats(c, &st), 0);
	assert_int_equal(st.entries, pages);
	assert_int_equal(st.evictions, 0);
	/*
	 * Unmapping a 2 MiB-aligned piece in the middle invalidates exactly
	 * its 512 entries, as UNMAP. (An unaligned piece would also fire a
	 * CLEAR over the 2 MiB around each cut: Linux 6.1's VMA split calls
	 * __split_huge_pmd(), which notifies before it looks for a huge
	 * page; see docs/design.md, false invalidations.)
	 */
	mid = (char *)(((uintptr_t)base + (pages / 2) * PAGE) & ~(HUGE - 1));
	assert_int_equal(munmap(mid, HUGE), 0);
	regwatch_cache_process_events(c);
	assert_int_equal(regwatch_cache_stats(c, &st), 0);
	assert_int_equal(st.entries, pages - HUGE / PAGE);
	assert_int_equal(st.invalidations, HUGE / PAGE);
	assert_int_equal(st.by_class[0], HUGE / PAGE);	/* UNMAP */
	regwatch_cache_destroy(c);
	assert_int_equal(b.live, 0);
	munmap(base, pages * PAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_evict_past_capacity),
		cmocka_unit_test(test_small_ring_evicts),
		cmocka_unit_test(test_all_referenced_enospc),
		cmocka_unit_test(test_max_entries_sizes_monitor),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
