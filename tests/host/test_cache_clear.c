// SPDX-License-Identifier: MIT
/*
 * REGWATCH_CACHE_VERIFY_CLEAR: a CLEAR invalidation of memory whose
 * physical pages did not change (a migration or THP split that kept the
 * pinned pages) is counted in stats.clear_unchanged; one whose pages did
 * change in clear_changed; without page frame numbers (unprivileged) in
 * clear_unknown. Real memory, fake monitor (it fires on demand).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "cache_fixture.h"

static struct fx *mk(void)
{
	struct regwatch_cache_options o = { .flags = REGWATCH_CACHE_VERIFY_CLEAR };

	return fx_new(&o, 64, true);
}

static char *touched(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	memset(p, 'x', len);
	return p;
}

static void get_put_real(struct fx *f, void *p, size_t len)
{
	struct regwatch_cache_entry *e;

	assert_int_equal(regwatch_cache_get(f->c, p, len, 0, &e), 0);
	regwatch_cache_put(f->c, e);
}

static void clear(struct fx *f, void *p, size_t len)
{
	fake_fire(f->m, (uintptr_t)p, (uintptr_t)p + len, REGWATCH_CLASS_CLEAR);
	assert_int_equal(regwatch_cache_process_events(f->c), 1);
}

static void test_unchanged_and_changed(void **state)
{
	struct fx *f = mk();
	size_t len = 2 * PAGE;
	char *buf = touched(len), *keep;
	struct regwatch_cache_stats st;

	(void)state;
	if (geteuid() != 0)
		skip();		/* PFNs need CAP_SYS_ADMIN */
	get_put_real(f, buf, len);
	clear(f, buf, len);			/* nothing happened to it */
	st = fx_stats(f);
	assert_int_equal(st.clear_unchanged, 1);
	assert_int_equal(st.clear_changed, 0);

	get_put_real(f, buf, len);
	/* move the old pages away (so they stay allocated), put new ones */
	keep = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_ptr_equal(mremap(buf, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, keep), keep);
	assert_ptr_equal(mmap(buf, len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), buf);
	memset(buf, 'y', len);
	clear(f, buf, len);
	st = fx_stats(f);
	assert_int_equal(st.clear_unchanged, 1);
	assert_int_equal(st.clear_changed, 1);
	assert_int_equal(st.clear_unknown, 0);
	/* UNMAP is not a CLEAR: not classified */
	get_put_real(f, buf, len);
	fake_fire(f->m, (uintptr_t)buf, (uintptr_t)buf + len, REGWATCH_CLASS_UNMAP);
	assert_int_equal(regwatch_cache_process_events(f->c), 1);
	st = fx_stats(f);
	assert_int_equal(st.clear_unchanged + st.clear_changed + st.clear_unknown, 2);
	/* The kernel's own invalidations are counted apart. */
	assert_int_equal(st.background, 0);
	get_put_real(f, buf, len);
	f->m->fire_flags = REGWATCH_EVENT_BACKGROUND;
	clear(f, buf, len);
	st = fx_stats(f);
	assert_int_equal(st.background, 1);
	assert_int_equal(st.invalidations, 4);
	munmap(keep, len);
	munmap(buf, len);
	assert_int_equal(fx_free(f), 0);
}

/* Unprivileged: the frames are hidden, the CLEAR cannot be told. */
static void test_unknown_unprivileged(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	pid = (fflush(NULL), fork());
	if (pid == 0) {
		struct fx *f;
		struct regwatch_cache_stats st;
		char *buf;

		if (geteuid() == 0 && (setresgid(65534, 65534, 65534) ||
				       setresuid(65534, 65534, 65534)))
			exit(10);
		/* setuid made /proc/self root's; an ordinary user process
		 * can open its own pagemap (and sees no frame numbers) */
		prctl(PR_SET_DUMPABLE, 1);
		f = mk();
		buf = touched(PAGE);
		get_put_real(f, buf, PAGE);
		clear(f, buf, PAGE);
		st = fx_stats(f);
		if (st.clear_unknown != 1 || st.clear_unchanged || st.clear_changed)
			exit(11);
		exit(fx_free(f) ? 12 : 0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unchanged_and_changed),
		cmocka_unit_test(test_unknown_unprivileged),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
