// SPDX-License-Identifier: MIT
/*
 * References and deferred deregistration: an invalidated or evicted entry
 * that is still referenced stays registered (its handle usable) until its
 * last put(), which deregisters it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache_fixture.h"

static uint32_t mode;	/* option flags of the current run */

static struct fx *mk(void)
{
	struct regwatch_cache_options o = { .flags = mode };

	return fx_new(&o, 1024, true);
}

static void test_invalidated_while_referenced(void **state)
{
	struct fx *f = mk();
	struct regwatch_cache_entry *e, *e2;
	struct fake_handle *h;
	struct regwatch_cache_stats st;

	(void)state;
	e = fx_get(f, 0, 2 * PAGE);
	h = fake_handle_of(e);
	fake_fire(f->m, FAKE_BASE, FAKE_BASE + PAGE, REGWATCH_CLASS_UNMAP);
	assert_int_equal(regwatch_cache_process_events(f->c), 1);
	assert_int_equal(f->b.deregs, 0);	/* still in flight */
	assert_int_equal(h->magic, FAKE_HANDLE_MAGIC);
	st = fx_stats(f);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.registered, 1);
	assert_int_equal(st.registered_bytes, 2 * PAGE);
	/* never returned again */
	e2 = fx_get(f, 0, 2 * PAGE);
	assert_ptr_not_equal(fake_handle_of(e2), h);
	assert_int_equal(f->b.regs, 2);
	regwatch_cache_put(f->c, e);	/* the last reference: deregistered */
	assert_int_equal(f->b.deregs, 1);
	st = fx_stats(f);
	assert_int_equal(st.deferred_deregs, 1);
	assert_int_equal(st.registered, 1);
	assert_int_equal(st.registered_bytes, 2 * PAGE);
	assert_int_equal(f->m->live, 1);	/* its watch is gone too */
	regwatch_cache_put(f->c, e2);
	assert_int_equal(fx_free(f), 0);
}

static void test_many_references(void **state)
{
	struct fx *f = mk();
	struct regwatch_cache_entry *e[3];
	int i;

	(void)state;
	for (i = 0; i < 3; i++) {
		e[i] = fx_get(f, 0, PAGE);
		assert_ptr_equal(e[i], e[0]);
	}
	fake_fire(f->m, FAKE_BASE, FAKE_BASE + PAGE, REGWATCH_CLASS_CLEAR);
	assert_int_equal(regwatch_cache_process_events(f->c), 1);
	regwatch_cache_put(f->c, e[0]);
	regwatch_cache_put(f->c, e[1]);
	assert_int_equal(f->b.deregs, 0);
	regwatch_cache_put(f->c, e[2]);
	assert_int_equal(f->b.deregs, 1);
	assert_int_equal(fx_free(f), 0);
}

static void test_unreferenced_invalidation_deregisters_at_processing(void **state)
{
	struct fx *f = mk();
	struct regwatch_cache_entry *e;
	struct regwatch_cache_stats st;

	(void)state;
	e = fx_get(f, 0, PAGE);
	regwatch_cache_put(f->c, e);
	assert_int_equal(f->b.deregs, 0);	/* cached, not deregistered */
	fake_fire(f->m, FAKE_BASE, FAKE_BASE + PAGE, REGWATCH_CLASS_UNMAP);
	assert_int_equal(regwatch_cache_process_events(f->c), 1);
	assert_int_equal(f->b.deregs, 1);
	st = fx_stats(f);
	assert_int_equal(st.deferred_deregs, 0);
	assert_int_equal(st.registered, 0);
	assert_int_equal(st.registered_bytes, 0);
	assert_int_equal(fx_free(f), 0);
}

static void test_purge_skips_referenced(void **state)
{
	struct fx *f = mk();
	struct regwatch_cache_entry *a, *b, *c;
	struct regwatch_cache_stats st;

	(void)state;
	a = fx_get(f, 0, PAGE);
	b = fx_get(f, PAGE, PAGE);
	c = fx_get(f, 2 * PAGE, PAGE);
	regwatch_cache_put(f->c, a);
	regwatch_cache_put(f->c, c);
	assert_int_equal(regwatch_cache_purge(f->c), 2);
	assert_int_equal(f->b.deregs, 2);
	st = fx_stats(f);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.evictions, 2);
	/* the referenced one is still cached and served */
	a = fx_get(f, PAGE, PAGE);
	assert_ptr_equal(a, b);
	regwatch_cache_put(f->c, a);
	regwatch_cache_put(f->c, b);
	assert_int_equal(regwatch_cache_purge(f->c), 1);
	assert_int_equal(fx_free(f), 0);
}

/* destroy deregisters also what is still referenced */
static void test_destroy_with_references(void **state)
{
	struct fx *f = mk();

	(void)state;
	assert_non_null(fx_get(f, 0, PAGE));
	assert_non_null(fx_get(f, 0, PAGE));
	assert_non_null(fx_get(f, PAGE, PAGE));
	fake_fire(f->m, FAKE_BASE + PAGE, FAKE_BASE + 2 * PAGE, REGWATCH_CLASS_UNMAP);
	assert_int_equal(regwatch_cache_process_events(f->c), 1);
	assert_int_equal(fx_free(f), 0);
}

/* Entries are recycled: a stale pointer to a recycled entry never
 * returns the wrong registration (the hash alias points at the slot). */
static void test_recycled_entries(void **state)
{
	struct fx *f = mk();
	struct regwatch_cache_entry *e, *e2;
	int i;

	(void)state;
	for (i = 0; i < 50; i++) {
		e = fx_get(f, 0, 4 * PAGE);
		e2 = fx_get(f, PAGE, PAGE);	/* slow hit, then alias */
		assert_ptr_equal(e, e2);
		regwatch_cache_put(f->c, e2);
		e2 = fx_get(f, PAGE, PAGE);
		assert_ptr_equal(e, e2);
		regwatch_cache_put(f->c, e2);
		regwatch_cache_put(f->c, e);
		fake_fire(f->m, FAKE_BASE, FAKE_BASE + 4 * PAGE, REGWATCH_CLASS_UNMAP);
		/* the recycled entry now covers another range */
		e = fx_get(f, 64 * PAGE, PAGE);
		e2 = fx_get(f, PAGE, PAGE);
		assert_int_equal((uintptr_t)regwatch_cache_entry_addr(e2), FAKE_BASE + PAGE);
		assert_int_equal(regwatch_cache_entry_len(e2), PAGE);
		regwatch_cache_put(f->c, e2);
		regwatch_cache_put(f->c, e);
		fake_fire(f->m, FAKE_BASE, FAKE_BASE + 128 * PAGE, REGWATCH_CLASS_UNMAP);
	}
	assert_int_equal(f->b.regs, 150);
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
		cmocka_unit_test(test_invalidated_while_referenced),
		cmocka_unit_test(test_many_references),
		cmocka_unit_test(test_unreferenced_invalidation_deregisters_at_processing),
		cmocka_unit_test(test_purge_skips_referenced),
		cmocka_unit_test(test_destroy_with_references),
		cmocka_unit_test(test_recycled_entries),
	};
	int rc;

	rc = cmocka_run_group_tests_name("thread-safe", tests, set_mt, NULL);
	rc |= cmocka_run_group_tests_name("single-thread", tests, set_st, NULL);
	return rc;
}
