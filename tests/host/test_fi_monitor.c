// LDFLAGS: -Wl,--wrap=malloc,--wrap=realloc,--wrap=eventfd,--wrap=pthread_create
// SPDX-License-Identifier: MIT
/*
 * Host test of the libfabric import monitor (userlib/libfabric/
 * fi_monitor.c, fi_delivery.c) against fake libregwatch and libfabric
 * (fi_fakes.h): the import and its errors, what subscribe/valid/
 * unsubscribe do with watches, and the locking rule: notify() is called
 * only from the delivery thread, with neither our mutex nor libfabric's
 * mm_lock held; subscribe() only drains the ring and wakes the thread.
 *
 * The monitor is imported once per process, so the tests run in order on
 * one monitor: the import tests first, and every later test leaves no
 * subscription and no thread behind (checked by teardown).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fi_fakes.h"

/* ---- injected failures: how many next calls fail ------------------------ */

void *__real_malloc(size_t size);
void *__real_realloc(void *p, size_t size);
int __real_eventfd(unsigned int initval, int flags);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr,
			  void *(*fn)(void *), void *arg);

static int malloc_fails, realloc_fails, eventfd_fails, pthread_create_fails;

static bool fail_now(int *n)
{
	return *n > 0 && (*n)-- > 0;
}

void *__wrap_malloc(size_t size)
{
	return fail_now(&malloc_fails) ? NULL : __real_malloc(size);
}

void *__wrap_realloc(void *p, size_t size)
{
	return fail_now(&realloc_fails) ? NULL : __real_realloc(p, size);
}

int __wrap_eventfd(unsigned int initval, int flags)
{
	if (fail_now(&eventfd_fails)) {
		errno = EMFILE;
		return -1;
	}
	return __real_eventfd(initval, flags);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr,
			  void *(*fn)(void *), void *arg)
{
	return fail_now(&pthread_create_fails) ? EAGAIN :
		__real_pthread_create(t, attr, fn, arg);
}

/* The watch cookie the monitor gave the live watch on (addr, len). */
static uint64_t cookie_of(uintptr_t addr, size_t len)
{
	for (uint32_t s = 0; s < FAKE_MAXW; s++)
		if (R.w[s].live && R.w[s].addr == addr && R.w[s].len == len)
			return R.w[s].cookie;
	fail_msg("no live watch on %#lx+%#zx", (unsigned long)addr, len);
	return 0;
}

/* notify() number i was for (addr, len), from the delivery thread with
 * no lock held. */
static void assert_notified(int i, uintptr_t addr, size_t len)
{
	assert_int_equal(L.notified_addr[i], addr);
	assert_int_equal(L.notified_len[i], len);
	assert_int_equal(L.notify_on_caller, 0);
	assert_int_equal(L.notify_under_our_lock, 0);
	assert_int_equal(L.notify_under_mm_lock, 0);
}

static int setup(void **state)
{
	(void)state;
	fake_rw_knobs_off();
	L.unsubscribe_in_notify = false;
	malloc_fails = realloc_fails = eventfd_fails = pthread_create_fails = 0;
	return 0;
}

/* Nothing left behind: no thread, no subscription, no armed watch. */
static int teardown(void **state)
{
	(void)state;
	fl_stop();
	assert_int_equal(fl_stats().live, 0);
	assert_int_equal(R.live, 0);
	assert_int_equal(fake_fi_mon()->kick_fd, -1);
	return 0;
}

/* ---- import ----------------------------------------------------------------- */

static void test_import_errors(void **state)
{
	static const struct regwatch_fi_stats zero;
	struct regwatch_fi_options bad = { .flags = 1U << 7 };
	struct regwatch_fi_stats st;

	(void)state;
	assert_int_equal(regwatch_fi_stats(NULL), -EINVAL);
	assert_int_equal(regwatch_fi_stats(&st), 0);
	assert_memory_equal(&st, &zero, sizeof(st));

	assert_int_equal(regwatch_fi_import(&bad), -EINVAL);
	assert_int_equal(R.opens, 0);

	/* No /dev/regwatch: libfabric is not touched. */
	R.open_err = -ENOENT;
	assert_int_equal(regwatch_fi_import(NULL), -ENOENT);
	assert_int_equal(R.opens, 1);
	assert_int_equal(L.opens, 0);
	R.open_err = 0;

	/* libfabric fails: the regwatch monitor is closed again. */
	L.open_err = -FI_ENOSYS;
	assert_int_equal(regwatch_fi_import(NULL), -FI_ENOSYS);
	assert_int_equal(R.closes, 1);
	L.open_err = 0;

	/* libfabric refuses the import (a cache already runs). */
	L.bind_err = -FI_EBUSY;
	assert_int_equal(regwatch_fi_import(NULL), -EBUSY);
	assert_int_equal(R.closes, 2);
	assert_int_equal(L.closes, 1);
	assert_null(L.mon);
	L.bind_err = 0;

	/* No memory for the subscription table. */
	malloc_fails = 1;
	assert_int_equal(regwatch_fi_import(NULL), -ENOMEM);
	assert_int_equal(malloc_fails, 0);
	assert_int_equal(L.opens, 2);		/* libfabric not touched */

	assert_int_equal(R.opens, R.closes + 1);	/* one open failed */
	assert_int_equal(R.closes, 3);
	assert_int_equal(regwatch_fi_stats(&st), 0);
	assert_memory_equal(&st, &zero, sizeof(st));
}

static void test_import(void **state)
{
	struct regwatch_fi_options o = { .max_watches = 77 };
	int opens;

	(void)state;
	setenv("FI_MR_CACHE_MONITOR", "uffd", 1);	/* only warns */
	assert_int_equal(regwatch_fi_import(&o), 0);
	unsetenv("FI_MR_CACHE_MONITOR");
	assert_non_null(L.mon);
	assert_non_null(L.mon->export_ops);
	assert_int_equal(R.opts.ring_entries, 16384);	/* the default */
	assert_int_equal(R.opts.max_watches, 77);
	assert_int_equal(L.opens, L.closes + 1);	/* one open failed */
	assert_int_equal(R.opens, R.closes + 2);

	opens = R.opens;
	assert_int_equal(regwatch_fi_import(NULL), -EBUSY);
	assert_int_equal(R.opens, opens);
	assert_int_equal(fl_stats().live, 0);

	/* Until libfabric replaces them, the fid's other ops refuse. */
	assert_int_equal(fi_close(&L.mon->fid), 0);
	assert_int_equal(L.mon->fid.ops->bind(&L.mon->fid, NULL, 0),
			 -FI_ENOSYS);
	assert_int_equal(L.mon->fid.ops->control(&L.mon->fid, 0, NULL),
			 -FI_ENOSYS);
	assert_int_equal(L.mon->fid.ops->ops_open(&L.mon->fid, "x", 0, NULL,
						  NULL), -FI_ENOSYS);
}

/* ---- the export ops --------------------------------------------------------- */

/* libfabric <= 1.17 subscribes the same range again: one armed watch serves. */
static void test_subscribe_reuses_armed(void **state)
{
	const uintptr_t a = 0x100000;
	struct regwatch_fi_stats st0 = fl_stats(), st;
	int w0 = R.watches;

	(void)state;
	assert_int_equal(fl_subscribe(a, 0x2000), 0);
	assert_int_equal(fl_subscribe(a, 0x2000), 0);
	assert_int_equal(R.watches, w0 + 1);
	assert_int_equal(fl_subscribe(a, 0x3000), 0);
	assert_int_equal(R.watches, w0 + 2);
	st = fl_stats();
	assert_int_equal(st.subscribes, st0.subscribes + 3);
	assert_int_equal(st.live, 2);

	assert_true(fl_valid(a, 0x2000));
	assert_true(fl_valid(a + 0x1000, 0x1000));	/* covered */
	assert_false(fl_valid(a + 0x2000, 0x2000));	/* sticks out */

	fl_unsubscribe(a, 0x2000);
	assert_int_equal(R.live, 1);
	assert_true(fl_valid(a, 0x2000));		/* covered by 0x3000 */
	fl_unsubscribe(a, 0x2000);			/* nothing left: no-op */
	assert_int_equal(fl_stats().unsubscribes, st0.unsubscribes + 1);
	fl_unsubscribe(a, 0x3000);
	assert_false(fl_valid(a, 0x2000));		/* no entry: register */
	st = fl_stats();
	assert_int_equal(st.valid_calls, st0.valid_calls + 5);
	assert_int_equal(st.valid_false, st0.valid_false + 2);
}

/* A watch regwatch refuses: the error goes to libfabric, nothing is kept. */
static void test_subscribe_refused(void **state)
{
	const uintptr_t b = 0x200000;
	struct regwatch_fi_stats st0 = fl_stats();

	(void)state;
	R.watch_err = -ENOSPC;
	assert_int_equal(fl_subscribe(b, 0x1000), -ENOSPC);
	assert_int_equal(fl_stats().subscribe_errors, st0.subscribe_errors + 1);
	assert_int_equal(fl_stats().live, 0);
	assert_false(fl_valid(b, 0x1000));
	assert_int_equal(fl_subscribe(b, 0x1000), 0);
	assert_true(fl_valid(b, 0x1000));
	fl_unsubscribe(b, 0x1000);
}

/* ---- invalidations and notify() --------------------------------------------- */

/*
 * A fired watch reaches notify() from the delivery thread, with no lock
 * held, whether or not libfabric unsubscribes from inside notify(); then
 * its subscription is gone.
 */
static void test_notify_from_delivery_thread(void **state)
{
	const uintptr_t c = 0x300000, d = 0x400000;
	struct regwatch_fi_stats st0 = fl_stats(), st;
	int n0 = fl_notifies();

	(void)state;
	assert_int_equal(fl_start(), 0);
	assert_int_equal(fl_subscribe(c, 0x4000), 0);
	assert_true(fake_fire(c, 0x4000));
	assert_false(fl_valid(c, 0x4000));	/* at once: the state word */
	assert_true(fl_wait_notifies(n0 + 1));
	assert_notified(n0, c, 0x4000);
	assert_true(fl_wait_live(0));

	L.unsubscribe_in_notify = true;
	assert_int_equal(fl_subscribe(d, 0x1000), 0);
	assert_true(fake_fire(d, 0x1000));
	assert_true(fl_wait_notifies(n0 + 2));
	assert_notified(n0 + 1, d, 0x1000);
	assert_true(fl_wait_live(0));

	st = fl_stats();
	assert_int_equal(st.events, st0.events + 2);
	assert_int_equal(st.notifies, st0.notifies + 2);
	assert_int_equal(st.unsubscribes, st0.unsubscribes + 1);
}

/*
 * Without the thread, valid() alone catches a fired range, and keeps
 * saying so while the fired subscription stays, even beside a new one;
 * libfabric's unsubscribe of the stale entry takes the fired one first.
 * What subscribe() drained meanwhile is notified once the thread starts.
 */
static void test_stale_until_unsubscribed(void **state)
{
	const uintptr_t e = 0x500000;
	int w0 = R.watches, n0 = fl_notifies();

	(void)state;
	assert_int_equal(fl_subscribe(e, 0x1000), 0);
	assert_true(fake_fire(e, 0x1000));
	assert_false(fl_valid(e, 0x1000));
	assert_int_equal(fl_subscribe(e, 0x1000), 0);	/* re-registered */
	assert_int_equal(R.watches, w0 + 2);		/* fired: not reused */
	assert_int_equal(regwatch_pending(&R.rw), 0);	/* drained */
	assert_false(fl_valid(e, 0x1000));
	fl_unsubscribe(e, 0x1000);
	assert_true(fl_valid(e, 0x1000));
	fl_unsubscribe(e, 0x1000);
	assert_int_equal(fl_notifies(), n0);

	assert_int_equal(fl_start(), 0);
	assert_true(fl_wait_notifies(n0 + 1));
	assert_notified(n0, e, 0x1000);
}

/*
 * subscribe() drains the ring and wakes the thread: an event that left the
 * fd unreadable (drained by subscribe() before the thread looked) is still
 * notified, by the thread.
 */
static void test_subscribe_drains_and_wakes(void **state)
{
	const uintptr_t f = 0x600000, g = 0x700000, h = 0x800000;
	int n0 = fl_notifies();

	(void)state;
	assert_int_equal(fl_start(), 0);
	/* One full round, so that the thread sleeps in poll(). */
	assert_int_equal(fl_subscribe(h, 0x1000), 0);
	assert_true(fake_fire(h, 0x1000));
	assert_true(fl_wait_notifies(n0 + 1));
	assert_true(fl_wait_live(0));

	assert_int_equal(fl_subscribe(f, 0x1000), 0);
	R.silent = true;
	assert_true(fake_fire(f, 0x1000));
	assert_int_equal(fl_subscribe(g, 0x1000), 0);
	assert_true(pthread_equal(R.drained_by, pthread_self()));
	assert_true(fl_wait_notifies(n0 + 2));
	assert_notified(n0 + 1, f, 0x1000);
	assert_true(fl_wait_live(1));
	fl_unsubscribe(g, 0x1000);
}

/* Each armed one-shot reserves a ring entry until its event is consumed:
 * subscribe() consumes fired ones before asking for a new watch. */
static void test_subscribe_frees_ring_entries(void **state)
{
	const uintptr_t base = 0x900000;
	int n0 = fl_notifies();

	(void)state;
	R.ring_cap = 4;
	for (int i = 0; i < 4; i++)
		assert_int_equal(fl_subscribe(base + i * 0x10000, 0x1000), 0);
	assert_true(fake_fire(base, 0x1000));
	assert_int_equal(fl_subscribe(base + 4 * 0x10000, 0x1000), 0);
	assert_int_equal(fl_subscribe(base + 5 * 0x10000, 0x1000), -ENOBUFS);
	for (int i = 1; i < 5; i++)
		fl_unsubscribe(base + i * 0x10000, 0x1000);
	assert_int_equal(fl_start(), 0);
	assert_true(fl_wait_notifies(n0 + 1));
	assert_notified(n0, base, 0x1000);
}

/* Events of removed subscriptions, repeats and RESYNC notify nothing. */
static void test_stale_events_dropped(void **state)
{
	const uintptr_t s = 0xa00000, t = 0xb00000;
	struct regwatch_fi_stats st0 = fl_stats(), st;
	int n0 = fl_notifies();
	uint64_t cookie;

	(void)state;
	assert_int_equal(fl_subscribe(s, 0x1000), 0);
	cookie = cookie_of(s, 0x1000);
	fl_unsubscribe(s, 0x1000);
	fake_event(REGWATCH_EVENT_INVALIDATE, cookie);
	fake_event(REGWATCH_EVENT_RESYNC, 0);
	assert_int_equal(fl_subscribe(t, 0x1000), 0);
	cookie = cookie_of(t, 0x1000);
	assert_true(fake_fire(t, 0x1000));
	fake_event(REGWATCH_EVENT_INVALIDATE, cookie);	/* a repeat */
	assert_int_equal(fl_start(), 0);
	assert_true(fl_wait_notifies(n0 + 1));
	assert_notified(n0, t, 0x1000);
	assert_true(fl_wait_live(0));
	fl_stop();
	st = fl_stats();
	assert_int_equal(st.events, st0.events + 4);
	assert_int_equal(st.notifies, st0.notifies + 1);
	assert_int_equal(fl_notifies(), n0 + 1);
}

/* Without memory to queue it, the notify is lost, not the invalidation. */
static void test_queue_enomem(void **state)
{
	const uintptr_t u = 0xc00000, v = 0xd00000;
	int n0 = fl_notifies();

	(void)state;
	assert_int_equal(fl_subscribe(u, 0x1000), 0);
	assert_true(fake_fire(u, 0x1000));
	realloc_fails = 1;
	assert_int_equal(fl_subscribe(v, 0x1000), 0);	/* drains u */
	assert_int_equal(realloc_fails, 0);
	assert_false(fl_valid(u, 0x1000));
	assert_int_equal(fl_start(), 0);
	fl_stop();
	assert_int_equal(fl_notifies(), n0);
	assert_false(fl_valid(u, 0x1000));
	fl_unsubscribe(u, 0x1000);
	fl_unsubscribe(v, 0x1000);
}

/* start() is counted but runs one thread; stop() is idempotent; a
 * restarted thread delivers again. */
static void test_start_stop(void **state)
{
	const uintptr_t w = 0xe00000;
	uint64_t starts = fl_stats().starts;
	int n0 = fl_notifies();
	pthread_t first;

	(void)state;
	assert_int_equal(fl_start(), 0);
	first = fake_fi_mon()->thread;
	assert_int_equal(fl_start(), 0);
	assert_true(pthread_equal(first, fake_fi_mon()->thread));
	assert_int_equal(fl_stats().starts, starts + 2);
	fl_stop();
	assert_int_equal(fake_fi_mon()->kick_fd, -1);
	fl_stop();

	assert_int_equal(fl_start(), 0);
	assert_int_equal(fl_subscribe(w, 0x1000), 0);
	assert_true(fake_fire(w, 0x1000));
	assert_true(fl_wait_notifies(n0 + 1));
	assert_notified(n0, w, 0x1000);
	assert_true(fl_wait_live(0));
}

/* The thread cannot start: a clear error, nothing left open, and a later
 * start() works. */
static void test_start_errors(void **state)
{
	(void)state;
	eventfd_fails = 1;
	assert_int_equal(fl_start(), -EMFILE);
	assert_int_equal(fake_fi_mon()->kick_fd, -1);
	pthread_create_fails = 1;
	assert_int_equal(fl_start(), -EAGAIN);
	assert_int_equal(fake_fi_mon()->kick_fd, -1);
	assert_false(fake_fi_mon()->running);
	fl_stop();				/* nothing to stop */
	assert_int_equal(fl_start(), 0);
	assert_true(fake_fi_mon()->running);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_import_errors),
		cmocka_unit_test(test_import),
		cmocka_unit_test_setup_teardown(test_subscribe_reuses_armed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscribe_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_from_delivery_thread, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_until_unsubscribed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscribe_drains_and_wakes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscribe_frees_ring_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_events_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_enomem, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
	};

	L.op_thread = pthread_self();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
