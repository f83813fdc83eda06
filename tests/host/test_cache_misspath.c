// SPDX-License-Identifier: MIT
/*
 * The miss path's order: watch, register, re-check, retry. A fake monitor
 * that fires during the backend's reg() (or between watch and reg) must
 * cause a retry, and a stale registration must never be returned.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache_fakes.h"

struct fx {
	struct fake_monitor *m;
	struct fake_backend b;
	struct regwatch_cache *c;
	uint64_t version;	/* the memory's "contents" */
	int fire_in_reg;	/* fire this many times from inside reg() */
	int fire_in_watch;	/* ... from inside watch(), after arming */
	int fire_in_drain;	/* ... from inside drain(), once a watch
				 * is there to fire */
	int nested;		/* reg() calls get() on the same range once */
	struct regwatch_cache_entry *nested_e;
};

static uint64_t version_of(uintptr_t addr, size_t len, void *arg)
{
	(void)addr; (void)len;
	return __atomic_load_n(&((struct fx *)arg)->version, __ATOMIC_ACQUIRE);
}

static void bump(void *arg)
{
	__atomic_fetch_add(&((struct fx *)arg)->version, 1, __ATOMIC_RELEASE);
}

static void on_reg(struct fake_backend *b, uintptr_t addr, size_t len, void *arg)
{
	struct fx *f = arg;

	(void)b;
	if (f->fire_in_reg > 0) {
		f->fire_in_reg--;
		/* an unmap + remap racing with the registration */
		fake_invalidate(f->m, addr, addr + len, REGWATCH_CLASS_UNMAP, bump, f);
	}
	if (f->nested) {
		f->nested = 0;
		/* the backend calls back into the cache: no lock is held */
		assert_int_equal(regwatch_cache_get(f->c, (void *)addr, len, 0,
						    &f->nested_e), 0);
	}
}

static void on_watch(struct fake_monitor *m, uintptr_t s, uintptr_t e, void *arg)
{
	struct fx *f = arg;

	if (f->fire_in_watch > 0) {
		f->fire_in_watch--;
		fake_invalidate(m, s, e, REGWATCH_CLASS_CLEAR, bump, f);
	}
}

static void on_drain(struct fake_monitor *m, void *arg)
{
	struct fx *f = arg;

	if (f->fire_in_drain > 0 &&
	    fake_invalidate(m, FAKE_BASE, FAKE_BASE + PAGE,
			    REGWATCH_CLASS_CLEAR, bump, f) > 0)
		f->fire_in_drain--;
}

static int setup_flags(void **state, uint32_t flags, uint32_t max_watches)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct regwatch_cache_options o = { .flags = flags };
	struct regwatch_cache_backend be;

	fake_backend_init(&f->b);
	f->b.on_reg = on_reg;
	f->b.on_reg_arg = f;
	f->b.version = version_of;
	f->b.version_arg = f;
	be = fake_backend_of(&f->b);
	f->m = fake_monitor_new(max_watches, true);
	f->m->on_watch = on_watch;
	f->m->on_watch_arg = f;
	f->m->on_drain = on_drain;
	f->m->on_drain_arg = f;
	if (regwatch_cache_create_with_monitor(&o, &be, &f->m->base, &f->c))
		return -1;
	*state = f;
	return 0;
}

static int setup_mt(void **state) { return setup_flags(state, 0, 1024); }
static int setup_st(void **state)
{
	return setup_flags(state, REGWATCH_CACHE_SINGLE_THREAD, 1024);
}
static int setup_two_watches(void **state) { return setup_flags(state, 0, 2); }

static int teardown(void **state)
{
	struct fx *f = *state;

	regwatch_cache_destroy(f->c);
	assert_int_equal(f->b.live, 0);
	assert_int_equal(f->b.dereg_bad, 0);
	free(f);
	return 0;
}

static void test_fire_during_reg_retries(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e;
	struct regwatch_cache_stats st;

	f->fire_in_reg = 1;
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), 0);
	/* the first registration may hold the old pages: redone */
	assert_int_equal(f->b.regs, 2);
	assert_int_equal(f->b.deregs, 1);
	assert_int_equal(fake_handle_of(e)->serial, 2);
	assert_int_equal(fake_handle_of(e)->version, f->version);
	assert_int_equal(f->m->watches, 2);
	assert_int_equal(f->m->live, 1);
	regwatch_cache_put(f->c, e);
	assert_int_equal(regwatch_cache_stats(f->c, &st), 0);
	assert_int_equal(st.retries, 1);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.entries, 1);
	/* and the entry is a normal, valid one */
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), 0);
	assert_int_equal(fake_handle_of(e)->serial, 2);
	regwatch_cache_put(f->c, e);
}

static void test_fire_between_watch_and_reg(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e;
	struct regwatch_cache_stats st;

	f->fire_in_watch = 1;
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), 0);
	assert_int_equal(f->b.regs, 2);
	assert_int_equal(fake_handle_of(e)->version, f->version);
	regwatch_cache_put(f->c, e);
	assert_int_equal(regwatch_cache_stats(f->c, &st), 0);
	assert_int_equal(st.retries, 1);
}

/*
 * The watch fires after reg() returned, while the miss holds the mutex
 * and drains events before indexing the entry (the drain runs with the
 * mutex held, like any invalidation racing on another CPU). The entry is
 * not indexed yet, so its event is dropped as stale there: the miss must
 * not index it after that drain without re-checking the watch, or the
 * fired entry stays indexed, never invalidated (a registration and pinned
 * pages kept until eviction), and every later get of the range misses.
 */
static void test_fire_during_miss_drain(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e, *e2;
	struct regwatch_cache_stats st;
	uint64_t version;

	f->fire_in_drain = 1;
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), 0);
	assert_int_equal(f->fire_in_drain, 0);
	version = fake_handle_of(e)->version;
	regwatch_cache_put(f->c, e);
	assert_int_equal(regwatch_cache_process_events(f->c) >= 0, 1);
	/* no fired watch is left behind on an unreferenced entry */
	assert_int_equal(fake_fired_live(f->m), 0);
	/* the fire came before the re-check: the miss registered again */
	assert_int_equal(version, f->version);
	assert_int_equal(regwatch_cache_stats(f->c, &st), 0);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.entries, (uint64_t)f->b.live);
	assert_int_equal(f->m->live, 1);
	/* and the entry that is there is valid: the next get hits it */
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e2), 0);
	assert_int_equal(fake_handle_of(e2)->version, f->version);
	assert_int_equal(f->b.regs, 2);
	regwatch_cache_put(f->c, e2);
}

static void test_retries_bounded(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e = NULL;
	struct regwatch_cache_stats st;

	f->fire_in_reg = 1000;
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), -EAGAIN);
	assert_int_equal(f->b.regs, 8);
	assert_int_equal(f->b.deregs, 8);
	assert_int_equal(f->m->live, 0);
	assert_int_equal(regwatch_cache_stats(f->c, &st), 0);
	assert_int_equal(st.retries, 8);
	assert_int_equal(st.entries, 0);
	f->fire_in_reg = 0;
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), 0);
	regwatch_cache_put(f->c, e);
}

/* A second miss on the same range finishing first: one entry survives. */
static void test_duplicate_miss(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e;
	struct regwatch_cache_stats st;

	f->nested = 1;
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), 0);
	assert_non_null(f->nested_e);
	assert_ptr_equal(e, f->nested_e);
	assert_int_equal(f->b.regs, 2);
	assert_int_equal(f->b.deregs, 1);
	assert_int_equal(f->m->live, 1);
	assert_int_equal(regwatch_cache_stats(f->c, &st), 0);
	assert_int_equal(st.entries, 1);
	regwatch_cache_put(f->c, e);
	regwatch_cache_put(f->c, f->nested_e);
	assert_int_equal(f->b.deregs, 1);
}

/*
 * The monitor holds two watches: a third distinct get() must evict the
 * unreferenced entry to get its watch back; with every entry referenced
 * there is none to be had (-ENOSPC).
 */
static void two_watches_then_evict(struct fx *f)
{
	struct regwatch_cache_entry *a, *b, *c;
	struct regwatch_cache_stats st;

	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &a), 0);
	assert_int_equal(regwatch_cache_get(f->c, FA(PAGE), PAGE, 0, &b), 0);
	regwatch_cache_put(f->c, a);
	assert_int_equal(regwatch_cache_get(f->c, FA(2 * PAGE), PAGE, 0, &c), 0);
	assert_int_equal(f->b.deregs, 1);
	assert_int_equal(regwatch_cache_stats(f->c, &st), 0);
	assert_int_equal(st.evictions, 1);
	assert_int_equal(regwatch_cache_get(f->c, FA(3 * PAGE), PAGE, 0, &a), -ENOSPC);
	regwatch_cache_put(f->c, b);
	regwatch_cache_put(f->c, c);
}

/* Out of watch slots (ENOSPC; the fixture allows two). */
static void test_enospc_evicts(void **state)
{
	two_watches_then_evict(*state);
}

/* WATCH said "consume events first": the cache drains and retries. */
static void test_enobufs_drains(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e;
	int drains = f->m->drains;

	f->m->watch_err = -ENOBUFS;
	f->m->watch_err_count = 1;
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), 0);
	assert_true(f->m->drains > drains + 1);
	regwatch_cache_put(f->c, e);
}

/*
 * The monitor's ring is fully reserved by armed one-shot watches (the
 * kernel's ENOBUFS): draining frees nothing, so an unreferenced entry must
 * give its watch back, as for ENOSPC.
 */
static void test_enobufs_evicts(void **state)
{
	struct fx *f = *state;

	f->m->ring_limit = 2;
	two_watches_then_evict(f);
}

/* WATCH waits for a running invalidation (the fake's inval_lock, like
 * the module's mmu_interval_read_begin): the registration then sees the
 * new contents. */
struct slow_inval {
	struct fx *f;
	int started;
};

static void slow_bump(void *arg)
{
	struct slow_inval *s = arg;

	__atomic_store_n(&s->started, 1, __ATOMIC_RELEASE);
	usleep(50000);		/* the page change takes a while */
	bump(s->f);
}

static void *invalidator(void *arg)
{
	struct slow_inval *s = arg;

	fake_invalidate(s->f->m, FAKE_BASE, FAKE_BASE + PAGE,
			REGWATCH_CLASS_UNMAP, slow_bump, s);
	return NULL;
}

static void test_watch_waits_for_running_invalidation(void **state)
{
	struct fx *f = *state;
	struct slow_inval s = { f, 0 };
	struct regwatch_cache_entry *e;
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, invalidator, &s), 0);
	while (!__atomic_load_n(&s.started, __ATOMIC_ACQUIRE))
		usleep(100);
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), 0);
	assert_int_equal(fake_handle_of(e)->version, 1);
	pthread_join(t, NULL);
	regwatch_cache_put(f->c, e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fire_during_reg_retries, setup_mt, teardown),
		cmocka_unit_test_setup_teardown(test_fire_during_reg_retries, setup_st, teardown),
		cmocka_unit_test_setup_teardown(test_fire_between_watch_and_reg, setup_mt, teardown),
		cmocka_unit_test_setup_teardown(test_fire_between_watch_and_reg, setup_st, teardown),
		cmocka_unit_test_setup_teardown(test_fire_during_miss_drain, setup_mt, teardown),
		cmocka_unit_test_setup_teardown(test_fire_during_miss_drain, setup_st, teardown),
		cmocka_unit_test_setup_teardown(test_retries_bounded, setup_mt, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_miss, setup_mt, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_miss, setup_st, teardown),
		cmocka_unit_test_setup_teardown(test_enospc_evicts, setup_two_watches, teardown),
		cmocka_unit_test_setup_teardown(test_enobufs_drains, setup_mt, teardown),
		cmocka_unit_test_setup_teardown(test_enobufs_evicts, setup_mt, teardown),
		cmocka_unit_test_setup_teardown(test_enobufs_evicts, setup_st, teardown),
		cmocka_unit_test_setup_teardown(test_watch_waits_for_running_invalidation,
						setup_mt, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
