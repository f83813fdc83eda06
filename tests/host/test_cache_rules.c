// SPDX-License-Identifier: MIT
/*
 * Registration cache rules, one by one, with the fake monitor and backend
 * (tests/host/cache_fakes.h). Every test runs twice: thread-safe and
 * REGWATCH_CACHE_SINGLE_THREAD.
 */
#include <poll.h>
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
	int destroyed;
	uint32_t flags;
};

static int fx_make(void **state, uint32_t flags, bool with_gen,
		   const struct regwatch_cache_options *o)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct regwatch_cache_options opts = { .flags = flags };
	struct regwatch_cache_backend be;

	if (o) {
		opts = *o;
		opts.flags |= flags;
	}
	f->flags = flags;
	fake_backend_init(&f->b);
	be = fake_backend_of(&f->b);
	f->m = fake_monitor_new(1024, with_gen);
	f->m->destroyed = &f->destroyed;
	if (regwatch_cache_create_with_monitor(&opts, &be, &f->m->base, &f->c))
		return -1;
	*state = f;
	return 0;
}

static int setup_mt(void **state) { return fx_make(state, 0, true, NULL); }
static int setup_st(void **state)
{
	return fx_make(state, REGWATCH_CACHE_SINGLE_THREAD, true, NULL);
}
static int setup_mt_nogen(void **state) { return fx_make(state, 0, false, NULL); }
static int setup_st_nogen(void **state)
{
	return fx_make(state, REGWATCH_CACHE_SINGLE_THREAD, false, NULL);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	regwatch_cache_destroy(f->c);
	/* nothing leaks: every registration and watch is gone */
	assert_int_equal(f->b.live, 0);
	assert_int_equal(f->b.dereg_bad, 0);
	assert_int_equal(f->destroyed, 1);
	free(f);
	return 0;
}

static struct regwatch_cache_entry *get_ok(struct fx *f, uintptr_t off,
					   size_t len, uint32_t access)
{
	struct regwatch_cache_entry *e = NULL;

	assert_int_equal(regwatch_cache_get(f->c, FA(off), len, access, &e), 0);
	assert_non_null(e);
	/* whatever is returned covers the request with the access */
	assert_true((uintptr_t)regwatch_cache_entry_addr(e) <= FAKE_BASE + off);
	assert_true((uintptr_t)regwatch_cache_entry_addr(e) +
		    regwatch_cache_entry_len(e) >= FAKE_BASE + off + len);
	assert_int_equal(regwatch_cache_entry_access(e) & access, access);
	return e;
}

static void stats(struct fx *f, struct regwatch_cache_stats *st)
{
	assert_int_equal(regwatch_cache_stats(f->c, st), 0);
}

static void test_hit_after_miss(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e1, *e2;
	struct regwatch_cache_stats st;

	e1 = get_ok(f, 0, 100, 0);
	assert_int_equal(f->b.regs, 1);
	assert_int_equal(f->m->watches, 1);
	assert_ptr_equal(regwatch_cache_entry_addr(e1), FA(0));
	assert_int_equal(regwatch_cache_entry_len(e1), PAGE);
	regwatch_cache_put(f->c, e1);
	e2 = get_ok(f, 0, 100, 0);
	assert_ptr_equal(e1, e2);
	assert_int_equal(f->b.regs, 1);
	e2 = get_ok(f, 50, 10, 0);	/* same page */
	assert_ptr_equal(e1, e2);
	regwatch_cache_put(f->c, e2);
	regwatch_cache_put(f->c, e1);
	stats(f, &st);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.slow_hits, 0);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.registered, 1);
	assert_int_equal(st.registered_bytes, PAGE);
	assert_string_equal(regwatch_cache_monitor_name(f->c), "fake");
}

static void test_rounding(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e1, *e2, *e3;

	e1 = get_ok(f, PAGE + 5, 10, 0);
	assert_ptr_equal(regwatch_cache_entry_addr(e1), FA(PAGE));
	assert_int_equal(regwatch_cache_entry_len(e1), PAGE);
	/* crosses into the next page: e1 does not cover it */
	e2 = get_ok(f, PAGE + 4000, 200, 0);
	assert_ptr_not_equal(e1, e2);
	assert_ptr_equal(regwatch_cache_entry_addr(e2), FA(PAGE));
	assert_int_equal(regwatch_cache_entry_len(e2), 2 * PAGE);
	e3 = get_ok(f, 2 * PAGE + 1, 1, 0);	/* inside e2 only */
	assert_ptr_equal(e3, e2);
	assert_int_equal(f->b.regs, 2);
	regwatch_cache_put(f->c, e1);
	regwatch_cache_put(f->c, e2);
	regwatch_cache_put(f->c, e3);
}

static void test_alignment_option(void **state)
{
	struct regwatch_cache_options o = { .alignment = 1 };
	struct regwatch_cache_entry *e;
	struct fx *f;

	(void)state;
	assert_int_equal(fx_make((void **)&f, 0, true, &o), 0);
	e = get_ok(f, 5, 10, 0);
	assert_ptr_equal(regwatch_cache_entry_addr(e), FA(5));
	assert_int_equal(regwatch_cache_entry_len(e), 10);
	regwatch_cache_put(f->c, e);
	teardown((void **)&f);

	o.alignment = 64;
	assert_int_equal(fx_make((void **)&f, 0, true, &o), 0);
	e = get_ok(f, 70, 10, 0);
	assert_ptr_equal(regwatch_cache_entry_addr(e), FA(64));
	assert_int_equal(regwatch_cache_entry_len(e), 64);
	regwatch_cache_put(f->c, e);
	teardown((void **)&f);
}

static void test_covering_hit_and_alias(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *big, *e;
	struct regwatch_cache_stats st;

	big = get_ok(f, 0, 16 * PAGE, 0);
	regwatch_cache_put(f->c, big);
	e = get_ok(f, 4 * PAGE + 8, PAGE, 0);
	assert_ptr_equal(e, big);
	regwatch_cache_put(f->c, e);
	stats(f, &st);
	assert_int_equal(st.slow_hits, 1);
	/* the alias makes the next one a fast hit */
	e = get_ok(f, 4 * PAGE + 8, PAGE, 0);
	assert_ptr_equal(e, big);
	regwatch_cache_put(f->c, e);
	stats(f, &st);
	assert_int_equal(st.slow_hits, 1);
	assert_int_equal(st.hits, 2);
	assert_int_equal(st.misses, 1);
	assert_int_equal(f->b.regs, 1);
}

static void test_access(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *lw, *rr, *e;
	const uint32_t LW = REGWATCH_CACHE_ACCESS_LOCAL_WRITE;
	const uint32_t RR = REGWATCH_CACHE_ACCESS_REMOTE_READ;

	lw = get_ok(f, 0, PAGE, LW);
	rr = get_ok(f, 0, PAGE, RR);
	assert_ptr_not_equal(lw, rr);
	assert_int_equal(regwatch_cache_entry_access(rr), RR);
	assert_int_equal(fake_handle_of(rr)->access, RR);
	e = get_ok(f, 0, PAGE, LW);
	assert_ptr_equal(e, lw);
	regwatch_cache_put(f->c, e);
	e = get_ok(f, 0, PAGE, LW | RR);	/* neither has both */
	assert_ptr_not_equal(e, lw);
	assert_ptr_not_equal(e, rr);
	assert_int_equal(f->b.regs, 3);
	regwatch_cache_put(f->c, e);
	regwatch_cache_put(f->c, lw);
	regwatch_cache_put(f->c, rr);
}

static void test_min_access(void **state)
{
	const uint32_t LW = REGWATCH_CACHE_ACCESS_LOCAL_WRITE;
	const uint32_t RR = REGWATCH_CACHE_ACCESS_REMOTE_READ;
	struct regwatch_cache_options o = { .min_access = LW | RR };
	struct regwatch_cache_entry *a, *b;
	struct fx *f;

	(void)state;
	assert_int_equal(fx_make((void **)&f, 0, true, &o), 0);
	a = get_ok(f, 0, PAGE, LW);
	b = get_ok(f, 0, PAGE, RR);
	assert_ptr_equal(a, b);
	assert_int_equal(regwatch_cache_entry_access(a), LW | RR);
	assert_int_equal(fake_handle_of(a)->access, LW | RR);
	assert_int_equal(f->b.regs, 1);
	regwatch_cache_put(f->c, a);
	regwatch_cache_put(f->c, b);
	teardown((void **)&f);
}

static void test_no_merge(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e1, *e2, *e3, *e;

	e1 = get_ok(f, 0, 2 * PAGE, 0);
	e2 = get_ok(f, PAGE, 2 * PAGE, 0);
	assert_ptr_not_equal(e1, e2);
	assert_ptr_equal(regwatch_cache_entry_addr(e2), FA(PAGE));
	assert_int_equal(regwatch_cache_entry_len(e2), 2 * PAGE);
	e3 = get_ok(f, 0, 3 * PAGE, 0);
	assert_ptr_not_equal(e3, e1);
	assert_ptr_not_equal(e3, e2);
	assert_int_equal(regwatch_cache_entry_len(e3), 3 * PAGE);
	assert_int_equal(f->b.regs, 3);
	/* the overlapped entries are untouched and still served */
	e = get_ok(f, PAGE, 2 * PAGE, 0);
	assert_ptr_equal(e, e2);
	regwatch_cache_put(f->c, e);
	assert_int_equal(f->b.deregs, 0);
	regwatch_cache_put(f->c, e1);
	regwatch_cache_put(f->c, e2);
	regwatch_cache_put(f->c, e3);
}

static void test_invalidated_never_returned(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e1, *e2;
	struct regwatch_cache_stats st;

	e1 = get_ok(f, 0, PAGE, 0);
	regwatch_cache_put(f->c, e1);
	assert_int_equal(fake_fire(f->m, FAKE_BASE, FAKE_BASE + 1, REGWATCH_CLASS_UNMAP), 1);
	/* no event processed yet (no generation): the state word alone
	 * must stop the hit */
	e2 = get_ok(f, 0, PAGE, 0);
	assert_ptr_not_equal(fake_handle_of(e2), NULL);
	assert_int_equal(fake_handle_of(e2)->serial, 2);
	assert_int_equal(f->b.regs, 2);
	assert_int_equal(f->b.deregs, 1);	/* e1 went on the slow path */
	regwatch_cache_put(f->c, e2);
	stats(f, &st);
	assert_int_equal(st.invalidations, 1);
	assert_int_equal(st.by_class[0], 1);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.registered, 1);
	/* and again with a CLEAR */
	fake_fire(f->m, FAKE_BASE, FAKE_BASE + PAGE, REGWATCH_CLASS_CLEAR);
	e1 = get_ok(f, 0, PAGE, 0);
	assert_int_equal(fake_handle_of(e1)->serial, 3);
	regwatch_cache_put(f->c, e1);
	stats(f, &st);
	assert_int_equal(st.by_class[1], 1);
	assert_int_equal(st.clear_unknown, 1);	/* no VERIFY_CLEAR */
	assert_int_equal(f->m->live, 1);	/* old watches removed */
}

/* A hit notices the monitor's generation and processes events. */
static void test_hit_processes_events(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *a, *b;

	a = get_ok(f, 0, PAGE, 0);
	b = get_ok(f, 8 * PAGE, PAGE, 0);
	regwatch_cache_put(f->c, a);
	regwatch_cache_put(f->c, b);
	fake_fire(f->m, FAKE_BASE, FAKE_BASE + PAGE, REGWATCH_CLASS_UNMAP);
	b = get_ok(f, 8 * PAGE, PAGE, 0);	/* a hit on the other entry */
	regwatch_cache_put(f->c, b);
	if (f->m->base.generation) {
		assert_int_equal(f->b.deregs, 1);
		assert_int_equal(regwatch_cache_process_events(f->c), 0);
	} else {
		/* without a generation word, hits never drain */
		assert_int_equal(f->b.deregs, 0);
		assert_int_equal(regwatch_cache_process_events(f->c), 1);
		assert_int_equal(f->b.deregs, 1);
	}
	assert_int_equal(f->b.regs, 2);
}

static void test_stale_event_ignored(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e, *e2;
	struct regwatch_event ev = { .type = REGWATCH_EVENT_INVALIDATE,
				     .class = REGWATCH_CLASS_UNMAP };

	e = get_ok(f, 0, PAGE, 0);
	regwatch_cache_put(f->c, e);
	ev.cookie = (uintptr_t)e;
	ev.watch_id = 12345;	/* not e's watch */
	pthread_mutex_lock(&f->m->lock);
	fake_queue(f->m, &ev);
	ev.cookie = 0;		/* no entry at all */
	fake_queue(f->m, &ev);
	pthread_mutex_unlock(&f->m->lock);
	assert_int_equal(regwatch_cache_process_events(f->c), 0);
	e2 = get_ok(f, 0, PAGE, 0);
	assert_ptr_equal(e, e2);
	regwatch_cache_put(f->c, e2);
	assert_int_equal(f->b.regs, 1);
}

static void test_errors(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e = NULL;
	struct regwatch_cache_stats st;

	assert_int_equal(regwatch_cache_get(f->c, FA(0), 0, 0, &e), -EINVAL);
	assert_int_equal(regwatch_cache_get(NULL, FA(0), 1, 0, &e), -EINVAL);
	assert_int_equal(regwatch_cache_get(f->c, FA(0), 1, 0, NULL), -EINVAL);
	assert_int_equal(regwatch_cache_get(f->c, FA(0), SIZE_MAX, 0, &e), -EOVERFLOW);
	assert_int_equal(regwatch_cache_get(f->c, (void *)(UINTPTR_MAX - 10), 5, 0, &e),
			 -EOVERFLOW);
	/* the backend's error comes back, nothing stays watched */
	f->b.reg_err = -EIO;
	f->b.reg_err_count = 1;
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), -EIO);
	assert_int_equal(f->m->live, 0);
	/* the monitor's error comes back, nothing is registered */
	f->m->watch_err = -EFAULT;
	f->m->watch_err_count = 1;
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), -EFAULT);
	assert_int_equal(f->b.regs, 0);
	/* -ENOMEM from reg: the cache evicts and retries once */
	f->b.reg_err = -ENOMEM;
	f->b.reg_err_count = 2;
	assert_int_equal(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e), -ENOMEM);
	stats(f, &st);
	assert_int_equal(st.reg_failures, 2);
	assert_int_equal(st.entries, 0);
	assert_int_equal(f->b.live, 0);
	e = get_ok(f, 0, PAGE, 0);
	regwatch_cache_put(f->c, e);
	/* NULLs are harmless */
	regwatch_cache_put(NULL, e);
	regwatch_cache_put(f->c, NULL);
	regwatch_cache_destroy(NULL);
	assert_int_equal(regwatch_cache_stats(NULL, &st), -EINVAL);
	assert_int_equal(regwatch_cache_stats(f->c, NULL), -EINVAL);
	assert_int_equal(regwatch_cache_process_events(NULL), -EINVAL);
	assert_int_equal(regwatch_cache_fd(NULL), -EINVAL);
	assert_int_equal(regwatch_cache_purge(NULL), -EINVAL);
	assert_null(regwatch_cache_monitor_name(NULL));
}

static void test_dereg_failure_counted(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e;
	struct regwatch_cache_stats st;

	e = get_ok(f, 0, PAGE, 0);
	regwatch_cache_put(f->c, e);
	f->b.dereg_err = -EIO;
	fake_fire(f->m, FAKE_BASE, FAKE_BASE + 1, REGWATCH_CLASS_UNMAP);
	assert_int_equal(regwatch_cache_process_events(f->c), 1);
	stats(f, &st);
	assert_int_equal(st.dereg_failures, 1);
	assert_int_equal(st.registered, 0);
	f->b.dereg_err = 0;
}

static void test_fd_and_process_events(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e;
	struct pollfd p;

	p.fd = regwatch_cache_fd(f->c);
	p.events = POLLIN;
	assert_int_equal(p.fd, f->m->evfd);
	e = get_ok(f, 0, PAGE, 0);
	regwatch_cache_put(f->c, e);
	assert_int_equal(poll(&p, 1, 0), 0);
	fake_fire(f->m, FAKE_BASE, FAKE_BASE + 1, REGWATCH_CLASS_UNMAP);
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(regwatch_cache_process_events(f->c), 1);
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_int_equal(f->b.deregs, 1);
	assert_int_equal(regwatch_cache_process_events(f->c), 0);
}

static void test_accessors(void **state)
{
	struct fx *f = *state;
	struct regwatch_cache_entry *e;
	const struct regwatch_cache_reg_info *info;

	e = get_ok(f, 0, PAGE, REGWATCH_CACHE_ACCESS_REMOTE_WRITE);
	info = regwatch_cache_entry_info(e);
	assert_int_equal(info->local_key, fake_handle_of(e)->serial);
	assert_int_equal(info->remote_key, fake_handle_of(e)->serial + 1000000);
	assert_int_equal(fake_handle_of(e)->addr, FAKE_BASE);
	assert_int_equal(fake_handle_of(e)->len, PAGE);
	regwatch_cache_put(f->c, e);
}

static void test_create_errors(void **state)
{
	struct fake_backend b;
	struct regwatch_cache_backend be, nodereg;
	struct regwatch_cache_options o = { 0 };
	struct regwatch_cache *c = NULL;
	struct fake_monitor *m;
	int destroyed = 0;

	(void)state;
	fake_backend_init(&b);
	be = fake_backend_of(&b);
	nodereg = be;
	nodereg.dereg = NULL;

	o.alignment = 3;
	m = fake_monitor_new(8, true);
	m->destroyed = &destroyed;
	assert_int_equal(regwatch_cache_create_with_monitor(&o, &be, &m->base, &c), -EINVAL);
	assert_int_equal(destroyed, 1);	/* the cache owned the monitor */
	o.alignment = 0;
	o.flags = 1u << 20;
	m = fake_monitor_new(8, true);
	assert_int_equal(regwatch_cache_create_with_monitor(&o, &be, &m->base, &c), -EINVAL);
	o.flags = 0;
	m = fake_monitor_new(8, true);
	assert_int_equal(regwatch_cache_create_with_monitor(&o, &nodereg, &m->base, &c), -EINVAL);
	m = fake_monitor_new(8, true);
	assert_int_equal(regwatch_cache_create_with_monitor(&o, NULL, &m->base, &c), -EINVAL);
	m = fake_monitor_new(8, true);
	assert_int_equal(regwatch_cache_create_with_monitor(&o, &be, &m->base, NULL), -EINVAL);
	assert_int_equal(regwatch_cache_create_with_monitor(&o, &be, NULL, &c), -EINVAL);
	o.monitor = (enum regwatch_cache_monitor)42;
	assert_int_equal(regwatch_cache_create(&o, &be, &c), -EINVAL);
	o.monitor = REGWATCH_CACHE_MONITOR_NONE;
	assert_int_equal(regwatch_cache_create(&o, &nodereg, &c), -EINVAL);
	assert_int_equal(regwatch_cache_create(&o, &be, NULL), -EINVAL);
	assert_null(c);
	/* defaults (NULL options) work */
	m = fake_monitor_new(8, true);
	assert_int_equal(regwatch_cache_create_with_monitor(NULL, &be, &m->base, &c), 0);
	regwatch_cache_destroy(c);
}

#define BOTH(t) \
	cmocka_unit_test_setup_teardown(t, setup_mt, teardown), \
	cmocka_unit_test_setup_teardown(t, setup_st, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_hit_after_miss),
		BOTH(test_rounding),
		cmocka_unit_test(test_alignment_option),
		BOTH(test_covering_hit_and_alias),
		BOTH(test_access),
		cmocka_unit_test(test_min_access),
		BOTH(test_no_merge),
		BOTH(test_invalidated_never_returned),
		cmocka_unit_test_setup_teardown(test_invalidated_never_returned,
						setup_mt_nogen, teardown),
		BOTH(test_hit_processes_events),
		cmocka_unit_test_setup_teardown(test_hit_processes_events,
						setup_mt_nogen, teardown),
		cmocka_unit_test_setup_teardown(test_hit_processes_events,
						setup_st_nogen, teardown),
		BOTH(test_stale_event_ignored),
		BOTH(test_errors),
		BOTH(test_dereg_failure_counted),
		BOTH(test_fd_and_process_events),
		BOTH(test_accessors),
		cmocka_unit_test(test_create_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
