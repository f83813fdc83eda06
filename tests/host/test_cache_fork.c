// SPDX-License-Identifier: MIT
/*
 * fork: in the child the inherited cache is unusable with -ECHILD, also
 * for a range that would be a hit; put() does nothing and destroy() only
 * frees memory (no deregistration, no unwatch: those belong to the
 * parent). The parent's cache keeps working, and a cache made in the
 * child works.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "cache_fixture.h"

static uint32_t mode;

static struct fx *mk(void)
{
	struct regwatch_cache_options o = { .flags = mode };

	return fx_new(&o, 1024, true);
}

/* Run fn in a child; return its exit status (0: all checks passed). */
static int in_child(int (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = (fflush(NULL), fork());

	if (pid == 0)
		exit(fn(arg));
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

struct child_arg {
	struct fx *f;
	struct regwatch_cache_entry *held;
};

#define CHECK(cond, code) do { if (!(cond)) return (code); } while (0)

static int child_checks(void *p)
{
	struct child_arg *a = p;
	struct fx *f = a->f;
	struct regwatch_cache_entry *e = NULL;
	struct regwatch_cache_stats st;
	int regs = f->b.regs, deregs = f->b.deregs, unwatches = 0;

	f->m->unwatch_total = &unwatches;

	/* a cached range: the hit path must refuse too */
	CHECK(regwatch_cache_get(f->c, FA(0), PAGE, 0, &e) == -ECHILD, 1);
	CHECK(e == NULL, 2);
	CHECK(regwatch_cache_get(f->c, FA(64 * PAGE), PAGE, 0, &e) == -ECHILD, 3);
	CHECK(regwatch_cache_process_events(f->c) == -ECHILD, 4);
	CHECK(regwatch_cache_stats(f->c, &st) == -ECHILD, 5);
	CHECK(regwatch_cache_purge(f->c) == -ECHILD, 6);
	regwatch_cache_put(f->c, a->held);	/* no-op */
	regwatch_cache_destroy(f->c);
	CHECK(f->b.regs == regs && f->b.deregs == deregs, 7);
	CHECK(unwatches == 0, 8);
	CHECK(f->destroyed == 2, 9);	/* monitor told it is in a child */
	return 0;
}

static void test_child_unusable_parent_fine(void **state)
{
	struct fx *f = mk();
	struct child_arg a = { f, NULL };
	struct regwatch_cache_entry *e;
	struct regwatch_cache_stats st;

	(void)state;
	e = fx_get(f, 0, PAGE);
	regwatch_cache_put(f->c, e);
	a.held = fx_get(f, 8 * PAGE, PAGE);
	assert_int_equal(in_child(child_checks, &a), 0);
	/* the parent: hits, misses, invalidations as before */
	e = fx_get(f, 0, PAGE);
	assert_int_equal(fake_handle_of(e)->serial, 1);
	regwatch_cache_put(f->c, e);
	e = fx_get(f, 64 * PAGE, PAGE);
	assert_non_null(e);
	regwatch_cache_put(f->c, e);
	fake_fire(f->m, FAKE_BASE, FAKE_BASE + PAGE, REGWATCH_CLASS_UNMAP);
	e = fx_get(f, 0, PAGE);
	assert_int_equal(fake_handle_of(e)->serial, 4);
	regwatch_cache_put(f->c, e);
	regwatch_cache_put(f->c, a.held);
	st = fx_stats(f);
	assert_int_equal(st.invalidations, 1);
	assert_int_equal(st.entries, 3);
	assert_int_equal(fx_free(f), 0);
}

static int child_new_cache(void *p)
{
	struct fx *f;
	struct regwatch_cache_entry *e, *e2;

	regwatch_cache_destroy(((struct fx *)p)->c);	/* the parent's */
	f = mk();
	e = fx_get(f, 0, PAGE);
	CHECK(e != NULL, 1);
	e2 = fx_get(f, 0, PAGE);
	CHECK(e2 == e, 2);
	regwatch_cache_put(f->c, e);
	regwatch_cache_put(f->c, e2);
	CHECK(fx_free(f) == 0, 3);
	return 0;
}

static void test_new_cache_in_child(void **state)
{
	struct fx *f = mk();

	(void)state;
	regwatch_cache_put(f->c, fx_get(f, 0, PAGE));
	assert_int_equal(in_child(child_new_cache, f), 0);
	assert_int_equal(fx_free(f), 0);
}

/* Several caches: all of them are marked in the child. */
static int child_two(void *p)
{
	struct fx **f = p;
	struct regwatch_cache_entry *e;

	CHECK(regwatch_cache_get(f[0]->c, FA(0), PAGE, 0, &e) == -ECHILD, 1);
	CHECK(regwatch_cache_get(f[1]->c, FA(0), PAGE, 0, &e) == -ECHILD, 2);
	regwatch_cache_destroy(f[0]->c);
	regwatch_cache_destroy(f[1]->c);
	return 0;
}

static void test_two_caches(void **state)
{
	struct fx *f[2] = { mk(), mk() };

	(void)state;
	regwatch_cache_put(f[0]->c, fx_get(f[0], 0, PAGE));
	regwatch_cache_put(f[1]->c, fx_get(f[1], 0, PAGE));
	assert_int_equal(in_child(child_two, f), 0);
	assert_int_equal(fx_free(f[0]), 0);
	assert_int_equal(fx_free(f[1]), 0);
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
		cmocka_unit_test(test_child_unusable_parent_fine),
		cmocka_unit_test(test_new_cache_in_child),
		cmocka_unit_test(test_two_caches),
	};
	int rc;

	rc = cmocka_run_group_tests_name("thread-safe", tests, set_mt, NULL);
	rc |= cmocka_run_group_tests_name("single-thread", tests, set_st, NULL);
	return rc;
}
