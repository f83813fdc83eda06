// SPDX-License-Identifier: MIT
/*
 * The userfaultfd monitor on real memory (this host has no regwatch.ko):
 * the unmaps it claims to see (munmap, MAP_FIXED over, mremap, madvise
 * DONTNEED) make the cache register anew, with the new contents; faults
 * in watched ranges are answered; memory it cannot watch is refused;
 * unprivileged it runs with UFFD_USER_MODE_ONLY.
 *
 * The backend is the fake one, with a "version" that is a hash of the
 * memory's contents at registration time, so each test checks data, not
 * only counters.
 *
 * Note the uffd window (monitor_uffd.c): munmap returns once the reader
 * has read the event, possibly before it marked the watch. The tests wait
 * for the cache's fd, as an event loop would, before they reuse the
 * address.
 */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "cache_fakes.h"

static uint64_t content_hash(uintptr_t addr, size_t len, void *arg)
{
	const volatile unsigned char *p = (const void *)addr;
	uint64_t h = 1469598103934665603ULL;
	size_t i;

	(void)arg;
	for (i = 0; i < len; i += 64)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

static uint64_t hash_of(void *p, size_t len)
{
	return content_hash((uintptr_t)p, len, NULL);
}

struct ux {
	struct fake_backend b;
	struct cache_monitor *mon;
	struct regwatch_cache *c;
};

/* userfaultfd missing (valgrind does not know the syscall): skip. */
static void need_uffd(void)
{
	struct cache_monitor *m;
	int rc = cache_monitor_uffd_open(0, &m);

	if (rc == -ENOSYS)
		skip();
	assert_int_equal(rc, 0);
	m->ops->destroy(m, false);
}

static int ux_open(struct ux *u, unsigned int uflags)
{
	struct regwatch_cache_backend be;
	int rc;

	fake_backend_init(&u->b);
	u->b.version = content_hash;
	be = fake_backend_of(&u->b);
	rc = cache_monitor_uffd_open(uflags, &u->mon);
	if (rc == -ENOSYS)
		skip();
	if (rc)
		return rc;
	return regwatch_cache_create_with_monitor(NULL, &be, u->mon, &u->c);
}

static void ux_close(struct ux *u)
{
	regwatch_cache_destroy(u->c);
	assert_int_equal(u->b.live, 0);
}

/* Wait until the reader reported something, then process it. */
static int wait_events(struct regwatch_cache *c)
{
	struct pollfd p = { .fd = regwatch_cache_fd(c), .events = POLLIN };

	if (poll(&p, 1, 5000) != 1)
		return -1;
	return regwatch_cache_process_events(c);
}

/*
 * munmap returns once the reader thread has read the event, which may be
 * just before it writes the state words (monitor_uffd.c, "Timing"): give
 * it up to 5 s. Returns false if w never fired.
 */
static bool fires_soon(const struct cache_watch *w)
{
	int i;

	for (i = 0; i < 5000; i++) {
		if (__atomic_load_n(w->state, __ATOMIC_ACQUIRE) != w->armed)
			return true;
		usleep(1000);
	}
	return false;
}

static void *map(void *at, size_t len, char fill)
{
	void *p = mmap(at, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED : 0), -1, 0);

	assert_true(p != MAP_FAILED);
	memset(p, fill, len);
	return p;
}

static uint64_t get_version(struct ux *u, void *p, size_t len,
			    struct regwatch_cache_entry **out)
{
	struct regwatch_cache_entry *e;

	assert_int_equal(regwatch_cache_get(u->c, p, len, 0, &e), 0);
	if (out)
		*out = e;
	else
		regwatch_cache_put(u->c, e);
	return fake_handle_of(e)->version;
}

/* The classic: munmap, new pages at the same address, get again. */
static int scenario_munmap_remap(struct ux *u)
{
	size_t len = 4 * PAGE;
	char *buf = map(NULL, len, 'A');
	uint64_t va, vb;

	va = get_version(u, buf, len, NULL);
	if (va != hash_of(buf, len))
		return 1;
	if (get_version(u, buf, len, NULL) != va || u->b.regs != 1)
		return 2;			/* a hit */
	munmap(buf, len);
	if (wait_events(u->c) != 1)
		return 3;
	map(buf, len, 'B');
	vb = get_version(u, buf, len, NULL);
	if (vb != hash_of(buf, len) || vb == va || u->b.regs != 2)
		return 4;
	munmap(buf, len);
	return wait_events(u->c) == 1 ? 0 : 5;
}

static void test_munmap_remap(void **state)
{
	struct ux u;
	struct regwatch_cache_stats st;

	(void)state;
	assert_int_equal(ux_open(&u, 0), 0);
	assert_int_equal(scenario_munmap_remap(&u), 0);
	assert_int_equal(regwatch_cache_stats(u.c, &st), 0);
	assert_int_equal(st.by_class[0], 2);	/* UNMAP */
	assert_int_equal(st.entries, 0);
	ux_close(&u);
}

static void test_map_fixed_over(void **state)
{
	struct ux u;
	size_t len = 2 * PAGE;
	char *buf;
	uint64_t va;

	(void)state;
	assert_int_equal(ux_open(&u, 0), 0);
	buf = map(NULL, len, 'A');
	va = get_version(&u, buf, len, NULL);
	map(buf, len, 'C');			/* replaces the pages */
	assert_int_equal(wait_events(u.c), 1);
	assert_int_not_equal(get_version(&u, buf, len, NULL), va);
	assert_int_equal(u.b.regs, 2);
	munmap(buf, len);
	ux_close(&u);
}

static void test_dontneed(void **state)
{
	struct ux u;
	size_t len = 4 * PAGE;
	char *buf;
	uint64_t va, vb;
	struct regwatch_cache_stats st;

	(void)state;
	assert_int_equal(ux_open(&u, 0), 0);
	buf = map(NULL, len, 'A');
	va = get_version(&u, buf, len, NULL);
	assert_int_equal(madvise(buf + PAGE, PAGE, MADV_DONTNEED), 0);
	assert_int_equal(wait_events(u.c), 1);
	assert_int_equal(buf[PAGE], 0);		/* fresh zero page, no hang */
	vb = get_version(&u, buf, len, NULL);
	assert_int_not_equal(va, vb);
	assert_int_equal(vb, hash_of(buf, len));
	assert_int_equal(regwatch_cache_stats(u.c, &st), 0);
	assert_int_equal(st.by_class[1], 1);	/* CLEAR */
	munmap(buf, len);
	ux_close(&u);
}

static void test_mremap_move(void **state)
{
	struct ux u;
	size_t len = 4 * PAGE;
	char *buf, *dst, *moved;
	uint64_t va;

	(void)state;
	assert_int_equal(ux_open(&u, 0), 0);
	buf = map(NULL, len, 'A');
	dst = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	va = get_version(&u, buf, len, NULL);
	moved = mremap(buf, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	assert_ptr_equal(moved, dst);
	assert_int_equal(wait_events(u.c), 1);
	assert_int_equal(moved[0], 'A');
	/* the moved range is no longer registered with the monitor: a
	 * DONTNEED there reports nothing, and faults are the kernel's */
	assert_int_equal(madvise(moved, len, MADV_DONTNEED), 0);
	assert_int_equal(moved[0], 0);
	map(buf, len, 'D');
	assert_int_not_equal(get_version(&u, buf, len, NULL), va);
	assert_int_equal(regwatch_cache_process_events(u.c), 0);
	munmap(buf, len);
	munmap(moved, len);
	ux_close(&u);
}

/* Overlapping watches: when one fires, the other's pages stay watched. */
static void test_overlapping_watches(void **state)
{
	struct ux u;
	size_t len = 4 * PAGE;
	char *buf;
	struct regwatch_cache_entry *w1, *w2;

	(void)state;
	assert_int_equal(ux_open(&u, 0), 0);
	buf = map(NULL, len, 'A');
	get_version(&u, buf, len, &w1);
	get_version(&u, buf + 2 * PAGE, PAGE, NULL);	/* hit: covered */
	assert_int_equal(u.b.regs, 1);
	assert_int_equal(regwatch_cache_get(u.c, buf + 2 * PAGE, PAGE,
					    REGWATCH_CACHE_ACCESS_REMOTE_READ, &w2), 0);
	assert_int_equal(u.b.regs, 2);
	assert_int_equal(madvise(buf, PAGE, MADV_DONTNEED), 0);
	assert_int_equal(wait_events(u.c), 1);		/* w1 only */
	assert_int_equal(madvise(buf + 2 * PAGE, PAGE, MADV_DONTNEED), 0);
	assert_int_equal(wait_events(u.c), 1);		/* w2: still watched */
	regwatch_cache_put(u.c, w1);
	regwatch_cache_put(u.c, w2);
	assert_int_equal(u.b.live, 0);
	munmap(buf, len);
	ux_close(&u);
}

/* Without populating, a user fault in a watched range reaches the reader,
 * which maps a zero page. */
static void test_fault_answered(void **state)
{
	struct ux u;
	size_t len = 2 * PAGE;
	char *buf;

	(void)state;
	assert_int_equal(ux_open(&u, CACHE_UFFD_NO_POPULATE), 0);
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(buf != MAP_FAILED);
	/* the backend reads the untouched pages inside reg(): faults */
	get_version(&u, buf, len, NULL);
	assert_true(cache_monitor_uffd_faults(u.mon) >= 1);
	assert_int_equal(buf[PAGE + 5], 0);
	buf[0] = 1;			/* writable after the zero page */
	munmap(buf, len);
	assert_int_equal(wait_events(u.c), 1);
	ux_close(&u);
}

static void test_unsupported_memory(void **state)
{
	struct ux u;
	struct regwatch_cache_entry *e;
	char path[] = "/tmp/regwatch-uffd-XXXXXX";
	char *shm, *file;
	int fd;

	(void)state;
	assert_int_equal(ux_open(&u, 0), 0);
	shm = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(shm != MAP_FAILED);
	shm[0] = 1;
	assert_int_equal(regwatch_cache_get(u.c, shm, PAGE, 0, &e), -EINVAL);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, PAGE), 0);
	file = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(file != MAP_FAILED);
	assert_int_equal(regwatch_cache_get(u.c, file, PAGE, 0, &e), -EINVAL);
	/* a private mapping of a memfd (shmem) */
	{
		int mfd = memfd_create("regwatch-test", 0);
		char *mp;

		assert_true(mfd >= 0);
		assert_int_equal(ftruncate(mfd, PAGE), 0);
		mp = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
		assert_true(mp != MAP_FAILED);
		assert_int_equal(regwatch_cache_get(u.c, mp, PAGE, 0, &e), -EINVAL);
		munmap(mp, PAGE);
		close(mfd);
	}
	/* unmapped memory cannot be populated */
	munmap(shm, PAGE);
	assert_int_equal(regwatch_cache_get(u.c, shm, PAGE, 0, &e), -EFAULT);
	assert_int_equal(u.b.regs, 0);
	munmap(file, PAGE);
	close(fd);
	ux_close(&u);
}

/* Forced UFFD_USER_MODE_ONLY (what an unprivileged process gets). */
static void test_user_mode_only_forced(void **state)
{
	struct ux u;

	(void)state;
	assert_int_equal(ux_open(&u, CACHE_UFFD_USER_ONLY), 0);
	assert_true(cache_monitor_uffd_user_mode_only(u.mon));
	assert_int_equal(scenario_munmap_remap(&u), 0);
	ux_close(&u);
}

/* As a real non-root user (root drops to nobody in a child). */
static void test_unprivileged(void **state)
{
	int status, sysctl = -1;
	FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
	pid_t pid;

	(void)state;
	if (f) {
		if (fscanf(f, "%d", &sysctl) != 1)
			sysctl = -1;
		fclose(f);
	}
	pid = (fflush(NULL), fork());
	if (pid == 0) {
		struct ux u;

		if (geteuid() == 0 && (setgroups(0, NULL) ||
				       setresgid(65534, 65534, 65534) ||
				       setresuid(65534, 65534, 65534)))
			exit(10);
		if (ux_open(&u, 0))
			exit(11);
		if (sysctl == 0 && !cache_monitor_uffd_user_mode_only(u.mon))
			exit(12);
		if (scenario_munmap_remap(&u))
			exit(13);
		regwatch_cache_destroy(u.c);
		exit(u.b.live ? 14 : 0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Through the public API and the environment. */
static void test_public_create(void **state)
{
	struct regwatch_cache_options o = { .monitor = REGWATCH_CACHE_MONITOR_UFFD };
	struct regwatch_cache_backend be;
	struct ux u;

	(void)state;
	need_uffd();
	fake_backend_init(&u.b);
	u.b.version = content_hash;
	be = fake_backend_of(&u.b);
	assert_int_equal(regwatch_cache_create(&o, &be, &u.c), 0);
	assert_string_equal(regwatch_cache_monitor_name(u.c), "uffd");
	assert_true(regwatch_cache_fd(u.c) >= 0);
	assert_int_equal(scenario_munmap_remap(&u), 0);
	ux_close(&u);
}

/* fork: the child cannot use the cache and does not hang on its own
 * munmap (no reader thread there, no registration inherited). */
static void test_fork(void **state)
{
	struct ux u;
	size_t len = 2 * PAGE;
	char *buf;
	int status;
	pid_t pid;

	(void)state;
	assert_int_equal(ux_open(&u, 0), 0);
	buf = map(NULL, len, 'A');
	get_version(&u, buf, len, NULL);
	pid = (fflush(NULL), fork());
	if (pid == 0) {
		struct regwatch_cache_entry *e;

		if (regwatch_cache_get(u.c, buf, len, 0, &e) != -ECHILD)
			exit(1);
		munmap(buf, len);
		regwatch_cache_destroy(u.c);
		exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* the parent's watch is intact */
	assert_int_equal(regwatch_cache_process_events(u.c), 0);
	assert_int_equal(u.b.regs, 1);
	munmap(buf, len);
	assert_int_equal(wait_events(u.c), 1);
	ux_close(&u);
}

/* Many watches: slot chunks grow, unwatch frees and reuses slots. */
static void test_many_watches(void **state)
{
	struct ux u;
	size_t n = 1500, i;
	char *buf;
	struct regwatch_cache_entry *e;

	(void)state;
	assert_int_equal(ux_open(&u, 0), 0);
	buf = map(NULL, 2 * n * PAGE, 'A');
	for (i = 0; i < n; i++) {
		assert_int_equal(regwatch_cache_get(u.c, buf + 2 * i * PAGE, PAGE, 0, &e), 0);
		regwatch_cache_put(u.c, e);
	}
	assert_int_equal(regwatch_cache_purge(u.c), (int)n);
	for (i = 0; i < n; i++) {
		assert_int_equal(regwatch_cache_get(u.c, buf + 2 * i * PAGE, PAGE, 0, &e), 0);
		regwatch_cache_put(u.c, e);
	}
	assert_int_equal(u.b.regs, 2 * (int)n);
	munmap(buf, 2 * n * PAGE);
	assert_true(wait_events(u.c) > 0);
	while (regwatch_cache_process_events(u.c) > 0 || u.b.live) {
		if (wait_events(u.c) < 0)
			break;
	}
	assert_int_equal(u.b.live, 0);
	ux_close(&u);
}

static int stop_cb(const struct regwatch_event *ev, void *arg)
{
	int *calls = arg;

	(void)ev;
	(*calls)++;
	return calls[1];	/* what to return */
}

/* The monitor's own operations, below the cache. */
static void test_monitor_ops(void **state)
{
	struct cache_monitor *m;
	struct cache_watch w1, w2;
	char *buf;
	int calls[2];

	(void)state;
	need_uffd();
	assert_int_equal(cache_monitor_uffd_open(0, &m), 0);
	assert_string_equal(m->name, "uffd");
	buf = map(NULL, 4 * PAGE, 'A');
	assert_int_equal(m->ops->watch(m, (uintptr_t)buf, 0, 1, &w1), -EINVAL);
	assert_int_equal(m->ops->watch(m, (uintptr_t)buf, PAGE, 1, &w1), 0);
	assert_int_equal(m->ops->watch(m, (uintptr_t)buf + 2 * PAGE, PAGE, 2, &w2), 0);
	assert_int_not_equal(w1.id, w2.id);
	assert_int_equal(*w1.state, w1.armed);
	munmap(buf, 4 * PAGE);			/* fires both */
	assert_true(fires_soon(&w1));
	assert_true(fires_soon(&w2));
	/* a negative stop leaves the events queued */
	calls[0] = 0; calls[1] = -1;
	assert_int_equal(m->ops->drain(m, stop_cb, calls), -1);
	assert_int_equal(calls[0], 1);
	/* a positive stop consumes its event */
	calls[0] = 0; calls[1] = 1;
	assert_int_equal(m->ops->drain(m, stop_cb, calls), 1);
	assert_int_equal(calls[0], 1);
	/* unwatch of a fired watch whose event is still queued */
	assert_int_equal(m->ops->unwatch(m, &w2), 0);
	assert_int_equal(m->ops->unwatch(m, &w2), -ENOENT);
	calls[0] = 0; calls[1] = 0;
	assert_int_equal(m->ops->drain(m, stop_cb, calls), 1);
	assert_int_equal(m->ops->drain(m, stop_cb, calls), 0);
	assert_int_equal(m->ops->unwatch(m, &w1), 0);
	/* slots are reused with a new generation */
	buf = map(NULL, PAGE, 'B');
	assert_int_equal(m->ops->watch(m, (uintptr_t)buf, PAGE, 3, &w2), 0);
	assert_int_not_equal(w2.id, w1.id);
	assert_int_not_equal(w2.armed, w1.armed);
	assert_int_equal(m->ops->unwatch(m, &w1), -ENOENT);	/* stale id */
	m->ops->destroy(m, false);
	munmap(buf, PAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_munmap_remap),
		cmocka_unit_test(test_map_fixed_over),
		cmocka_unit_test(test_dontneed),
		cmocka_unit_test(test_mremap_move),
		cmocka_unit_test(test_overlapping_watches),
		cmocka_unit_test(test_fault_answered),
		cmocka_unit_test(test_unsupported_memory),
		cmocka_unit_test(test_user_mode_only_forced),
		cmocka_unit_test(test_unprivileged),
		cmocka_unit_test(test_public_create),
		cmocka_unit_test(test_fork),
		cmocka_unit_test(test_many_watches),
		cmocka_unit_test(test_monitor_ops),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
