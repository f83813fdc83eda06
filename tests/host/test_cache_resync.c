// SPDX-License-Identifier: MIT
/*
 * Event loss and resync: when the monitor reports REGWATCH_EVENT_RESYNC
 * (its queue overflowed) or draining fails, the cache re-checks every
 * entry's state word and loses nothing; a lost event never makes a hit
 * return a fired entry (the state word is checked on every hit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache_fixture.h"

static uint32_t mode;

static struct fx *mk(void)
{
	struct regwatch_cache_options o = { .flags = mode };

	return fx_new(&o, 1024, true);
}

static void fill(struct fx *f, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		struct regwatch_cache_entry *e = fx_get(f, i * 4 * PAGE, PAGE);

		assert_non_null(e);
		regwatch_cache_put(f->c, e);
	}
}

static void test_resync_event(void **state)
{
	struct fx *f = mk();
	struct regwatch_cache_stats st;

	(void)state;
	fill(f, 5);
	f->m->lose_events = true;
	fake_fire(f->m, FAKE_BASE, FAKE_BASE + PAGE, REGWATCH_CLASS_UNMAP);
	fake_fire(f->m, FAKE_BASE + 8 * PAGE, FAKE_BASE + 9 * PAGE, REGWATCH_CLASS_CLEAR);
	/* lost: processing finds nothing */
	assert_int_equal(regwatch_cache_process_events(f->c), 0);
	assert_int_equal(f->b.deregs, 0);
	fake_resync_event(f->m);
	assert_int_equal(regwatch_cache_process_events(f->c), 2);
	assert_int_equal(f->b.deregs, 2);
	st = fx_stats(f);
	assert_int_equal(st.resyncs, 1);
	assert_int_equal(st.resync_invalidations, 2);
	assert_int_equal(st.invalidations, 2);
	assert_int_equal(st.entries, 3);
	assert_int_equal(f->m->live, 3);
	assert_int_equal(fx_free(f), 0);
}

static void test_drain_error_resyncs(void **state)
{
	struct fx *f = mk();

	(void)state;
	fill(f, 3);
	f->m->lose_events = true;
	fake_fire(f->m, FAKE_BASE + 4 * PAGE, FAKE_BASE + 5 * PAGE, REGWATCH_CLASS_UNMAP);
	f->m->drain_err = -EPROTO;
	assert_int_equal(regwatch_cache_process_events(f->c), 1);
	assert_int_equal(f->b.deregs, 1);
	assert_int_equal(fx_free(f), 0);
}

static void test_lost_event_never_hit(void **state)
{
	struct fx *f = mk();
	struct regwatch_cache_entry *e;
	int i;

	(void)state;
	f->m->lose_events = true;
	for (i = 0; i < 10; i++) {
		e = fx_get(f, 0, PAGE);
		assert_int_equal(fake_handle_of(e)->serial, i + 1);
		regwatch_cache_put(f->c, e);
		fake_fire(f->m, FAKE_BASE, FAKE_BASE + PAGE, REGWATCH_CLASS_UNMAP);
	}
	/* fired entries linger until a resync, but are never returned */
	fake_resync_event(f->m);
	assert_int_equal(regwatch_cache_process_events(f->c), 10);
	assert_int_equal(f->b.live, 0);
	assert_int_equal(fx_free(f), 0);
}

static void test_resync_defers_referenced(void **state)
{
	struct fx *f = mk();
	struct regwatch_cache_entry *e;

	(void)state;
	f->m->lose_events = true;
	e = fx_get(f, 0, PAGE);
	fake_fire(f->m, FAKE_BASE, FAKE_BASE + PAGE, REGWATCH_CLASS_UNMAP);
	fake_resync_event(f->m);
	assert_int_equal(regwatch_cache_process_events(f->c), 1);
	assert_int_equal(f->b.deregs, 0);
	regwatch_cache_put(f->c, e);
	assert_int_equal(f->b.deregs, 1);
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
		cmocka_unit_test(test_resync_event),
		cmocka_unit_test(test_drain_error_resyncs),
		cmocka_unit_test(test_lost_event_never_hit),
		cmocka_unit_test(test_resync_defers_referenced),
	};
	int rc;

	rc = cmocka_run_group_tests_name("thread-safe", tests, set_mt, NULL);
	rc |= cmocka_run_group_tests_name("single-thread", tests, set_st, NULL);
	return rc;
}
