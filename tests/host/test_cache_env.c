// SPDX-License-Identifier: MIT
/*
 * Monitor selection: REGWATCH_MONITOR=kernel|uffd|none|auto (when the
 * options say AUTO), the auto fallback, and the `none` monitor: a loud
 * warning once, and a cache that does return stale registrations (so
 * that tests using it are known to bite).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "cache_fakes.h"

static struct fake_backend fb;

static uint64_t first_byte(uintptr_t addr, size_t len, void *arg)
{
	(void)len; (void)arg;
	return *(volatile unsigned char *)addr;
}

static int create_env(const char *env, enum regwatch_cache_monitor m,
		      struct regwatch_cache **c)
{
	struct regwatch_cache_options o = { .monitor = m };
	struct regwatch_cache_backend be;

	fake_backend_init(&fb);
	fb.version = first_byte;
	be = fake_backend_of(&fb);
	if (env)
		setenv("REGWATCH_MONITOR", env, 1);
	else
		unsetenv("REGWATCH_MONITOR");
	return regwatch_cache_create(&o, &be, c);
}

static bool have_module(void)
{
	return access(REGWATCH_DEVICE, F_OK) == 0;
}

static void test_env_selects(void **state)
{
	struct regwatch_cache *c;

	(void)state;
	if (create_env("uffd", 0, &c) == -ENOSYS)
		skip();		/* no userfaultfd (valgrind) */
	regwatch_cache_destroy(c);
	assert_int_equal(create_env("uffd", 0, &c), 0);
	assert_string_equal(regwatch_cache_monitor_name(c), "uffd");
	regwatch_cache_destroy(c);
	assert_int_equal(create_env("UFFD", 0, &c), 0);	/* any case */
	assert_string_equal(regwatch_cache_monitor_name(c), "uffd");
	regwatch_cache_destroy(c);
	assert_int_equal(create_env("bogus", 0, &c), -EINVAL);
	if (have_module()) {
		assert_int_equal(create_env("kernel", 0, &c), 0);
		assert_string_equal(regwatch_cache_monitor_name(c), "kernel");
		regwatch_cache_destroy(c);
	} else {
		assert_int_equal(create_env("kernel", 0, &c), -ENOENT);
		assert_int_equal(create_env(NULL, REGWATCH_CACHE_MONITOR_KERNEL, &c),
				 -ENOENT);
	}
	/* auto: the module if it is there, else userfaultfd */
	assert_int_equal(create_env(NULL, 0, &c), 0);
	assert_string_equal(regwatch_cache_monitor_name(c),
			    have_module() ? "kernel" : "uffd");
	regwatch_cache_destroy(c);
	assert_int_equal(create_env("auto", 0, &c), 0);
	regwatch_cache_destroy(c);
	/* an explicit choice in the options wins over the environment */
	assert_int_equal(create_env("none", REGWATCH_CACHE_MONITOR_UFFD, &c), 0);
	assert_string_equal(regwatch_cache_monitor_name(c), "uffd");
	regwatch_cache_destroy(c);
	unsetenv("REGWATCH_MONITOR");
}

/* Capture what fn writes to stderr. */
static void capture_stderr(void (*fn)(void *), void *arg, char *out, size_t n)
{
	FILE *tmp = tmpfile();
	int saved = dup(2);
	ssize_t got;

	assert_non_null(tmp);
	fflush(stderr);
	dup2(fileno(tmp), 2);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	got = fread(out, 1, n - 1, tmp);
	out[got > 0 ? got : 0] = 0;
	fclose(tmp);
}

static void make_none(void *arg)
{
	assert_int_equal(create_env("none", 0, arg), 0);
}

/* `none` warns loudly, once, and never invalidates: the stale case. */
static void test_none_is_stale(void **state)
{
	struct regwatch_cache *c, *c2;
	struct regwatch_cache_entry *e;
	char msg[1024];
	char *buf;

	(void)state;
	capture_stderr(make_none, &c, msg, sizeof(msg));
	assert_non_null(strstr(msg, "WARNING"));
	assert_non_null(strstr(msg, "STALE"));
	capture_stderr(make_none, &c2, msg, sizeof(msg));
	assert_string_equal(msg, "");		/* once per process */
	regwatch_cache_destroy(c2);
	assert_string_equal(regwatch_cache_monitor_name(c), "none");
	assert_int_equal(regwatch_cache_fd(c), -ENOTSUP);

	buf = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(buf != MAP_FAILED);
	buf[0] = 'A';
	assert_int_equal(regwatch_cache_get(c, buf, PAGE, 0, &e), 0);
	assert_int_equal(fake_handle_of(e)->version, 'A');
	regwatch_cache_put(c, e);
	munmap(buf, PAGE);
	assert_ptr_equal(mmap(buf, PAGE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), buf);
	buf[0] = 'B';
	assert_int_equal(regwatch_cache_process_events(c), 0);
	assert_int_equal(regwatch_cache_get(c, buf, PAGE, 0, &e), 0);
	/* the old registration: exactly the bug the other monitors avoid */
	assert_int_equal(fake_handle_of(e)->version, 'A');
	assert_int_equal(fb.regs, 1);
	regwatch_cache_put(c, e);
	regwatch_cache_destroy(c);
	munmap(buf, PAGE);
	assert_int_equal(fb.live, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_env_selects),
		cmocka_unit_test(test_none_is_stale),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
