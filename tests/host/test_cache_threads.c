// SPDX-License-Identifier: MIT
/*
 * Threads: several threads get and put random sub-ranges of a set of
 * regions while another thread invalidates regions the way the kernel
 * does (fire the watches, then change the memory: a "version" bump), a
 * third processes events and purges, a fourth reads stats, under small
 * limits so that eviction runs all the time. Every get is checked: the
 * registration it returns must have been made after the last
 * invalidation that finished before the get started (version check), and
 * it must stay registered while it is held.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache_fakes.h"

#define NREG	48
#define NGET	4
#define ITERS	40000

struct world {
	struct fake_monitor *m;
	struct fake_backend b;
	struct regwatch_cache *c;
	uint64_t version[NREG];
	int stop;
	long stale, bad_handle, errors, gets;
};

static uintptr_t reg_base(int i)
{
	return FAKE_BASE + (uintptr_t)i * 8 * PAGE;
}

static uint64_t version_of(uintptr_t addr, size_t len, void *arg)
{
	struct world *w = arg;

	(void)len;
	return __atomic_load_n(&w->version[(addr - FAKE_BASE) / (8 * PAGE)],
			       __ATOMIC_ACQUIRE);
}

static uint32_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s >> 11);
}

struct bump_arg {
	struct world *w;
	int i;
};

static void bump(void *p)
{
	struct bump_arg *a = p;
	volatile int spin;

	for (spin = 0; spin < 200; spin++)
		;
	__atomic_fetch_add(&a->w->version[a->i], 1, __ATOMIC_RELEASE);
}

static void *getter(void *p)
{
	struct world *w = p;
	uint64_t s = (uintptr_t)&s | 1;
	int n;

	for (n = 0; n < ITERS; n++) {
		int i = rnd(&s) % NREG;
		size_t off = (rnd(&s) % 4) * PAGE + rnd(&s) % 100;
		size_t len = 1 + rnd(&s) % (3 * PAGE);
		uint32_t access = rnd(&s) & 1;
		uint64_t v = __atomic_load_n(&w->version[i], __ATOMIC_ACQUIRE);
		struct regwatch_cache_entry *e;
		struct fake_handle *h;
		int rc;

		rc = regwatch_cache_get(w->c, (void *)(reg_base(i) + off), len,
					access, &e);
		if (rc) {
			__atomic_fetch_add(&w->errors, 1, __ATOMIC_RELAXED);
			continue;
		}
		h = fake_handle_of(e);
		if (h->magic != FAKE_HANDLE_MAGIC)
			__atomic_fetch_add(&w->bad_handle, 1, __ATOMIC_RELAXED);
		else if (h->version < v)
			__atomic_fetch_add(&w->stale, 1, __ATOMIC_RELAXED);
		if (h->addr > reg_base(i) + off ||
		    h->addr + h->len < reg_base(i) + off + len)
			__atomic_fetch_add(&w->stale, 1, __ATOMIC_RELAXED);
		if (rnd(&s) % 8 == 0)
			sched_yield();	/* hold it a while */
		if (h->magic != FAKE_HANDLE_MAGIC)
			__atomic_fetch_add(&w->bad_handle, 1, __ATOMIC_RELAXED);
		regwatch_cache_put(w->c, e);
		__atomic_fetch_add(&w->gets, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void *invalidator(void *p)
{
	struct world *w = p;
	uint64_t s = 12345;

	while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
		struct bump_arg a = { w, (int)(rnd(&s) % NREG) };
		uint32_t cls = rnd(&s) & 1 ? REGWATCH_CLASS_UNMAP :
					     REGWATCH_CLASS_CLEAR;

		fake_invalidate(w->m, reg_base(a.i), reg_base(a.i) + 8 * PAGE,
				cls, bump, &a);
		if (rnd(&s) % 64 == 0)
			fake_resync_event(w->m);
		usleep(20);
	}
	return NULL;
}

static void *housekeeper(void *p)
{
	struct world *w = p;
	struct regwatch_cache_stats st;
	int n = 0;

	while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
		if (regwatch_cache_process_events(w->c) < 0)
			__atomic_fetch_add(&w->errors, 1, __ATOMIC_RELAXED);
		if (++n % 50 == 0)
			regwatch_cache_purge(w->c);
		if (regwatch_cache_stats(w->c, &st))
			__atomic_fetch_add(&w->errors, 1, __ATOMIC_RELAXED);
		usleep(50);
	}
	return NULL;
}

static void run(bool with_gen, uint32_t max_entries)
{
	struct world *w = calloc(1, sizeof(*w));
	struct regwatch_cache_options o = { .max_entries = max_entries };
	struct regwatch_cache_backend be;
	struct regwatch_cache_stats st;
	pthread_t g[NGET], inv, hk;
	int i;

	fake_backend_init(&w->b);
	w->b.version = version_of;
	w->b.version_arg = w;
	be = fake_backend_of(&w->b);
	w->m = fake_monitor_new(1 << 16, with_gen);
	assert_int_equal(regwatch_cache_create_with_monitor(&o, &be, &w->m->base, &w->c), 0);
	assert_int_equal(pthread_create(&inv, NULL, invalidator, w), 0);
	assert_int_equal(pthread_create(&hk, NULL, housekeeper, w), 0);
	for (i = 0; i < NGET; i++)
		assert_int_equal(pthread_create(&g[i], NULL, getter, w), 0);
	for (i = 0; i < NGET; i++)
		pthread_join(g[i], NULL);
	__atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
	pthread_join(inv, NULL);
	pthread_join(hk, NULL);

	assert_int_equal(w->stale, 0);
	assert_int_equal(w->bad_handle, 0);
	assert_int_equal(w->errors, 0);
	assert_int_equal(w->gets, NGET * ITERS);
	assert_int_equal(regwatch_cache_process_events(w->c) >= 0, 1);
	assert_int_equal(regwatch_cache_stats(w->c, &st), 0);
	/* accounting is exact once quiet */
	assert_int_equal(st.registered, (uint64_t)w->b.live);
	assert_int_equal(st.registered, st.entries);
	assert_int_equal(st.registered_bytes, w->b.live_bytes);
	assert_true(st.hits + st.misses >= (uint64_t)NGET * ITERS);
	assert_true(st.invalidations > 0);
	assert_int_equal((int)w->m->live, (int)st.entries);
	regwatch_cache_destroy(w->c);
	assert_int_equal(w->b.live, 0);
	assert_int_equal(w->b.dereg_bad, 0);
	free(w);
}

static void test_threads_gen(void **state) { (void)state; run(true, 0); }
static void test_threads_nogen(void **state) { (void)state; run(false, 0); }
static void test_threads_limited(void **state) { (void)state; run(true, 16); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads_gen),
		cmocka_unit_test(test_threads_nogen),
		cmocka_unit_test(test_threads_limited),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
