// SPDX-License-Identifier: MIT
/*
 * Mirror mode (/dev/regwatch-mirror) against other processes and
 * threads: fork's COW, and transfers racing with munmap, remapping,
 * migration and process exit. The device engine runs each transfer in a
 * kernel worker, page by page, so these are real races.
 *
 * How the races are made to prove something:
 *  - memfd-backed mappings keep their pages alive after munmap. Once
 *    munmap has returned, the device must neither write those pages (the
 *    file's contents, snapshotted after munmap, never change again) nor
 *    read them (bytes written into the file after munmap never show up in
 *    a READ that succeeded).
 *  - Anonymous memory replaced by mremap carries a generation number and
 *    its page index in every 8-byte word: a READ that starts after
 *    generation g was published sees no word older than g, and no word
 *    that belongs to another page (a freed page reused elsewhere).
 *  - Memory only the device writes, migrated all the time: after each
 *    device write the CPU sees exactly that write (no write lost to the
 *    old copy of a migrating page).
 *
 *  fork_cow              COW holds for device writes in parent and child;
 *                        the parent's device in the child gives EIO
 *  race_munmap_copy      COPY into a memfd mapping while it is unmapped
 *  inval_during_transfer an unrelated munmap does not wait for a whole
 *                        transfer (short page-table lock sections)
 *  race_munmap_read      READ of a memfd mapping while it is unmapped
 *  race_migrate_write    device writes while move_pages migrates the pages
 *  teardown_exit_busy    a child runs copies, reads and writes in threads
 *                        while others remap, unmap and migrate, and exits
 *                        mid-transfer: no stale access, no hang, counters
 *                        back to where they were
 *
 * Knobs: RWT_MIRROR_RACE_ITERS (default 24), RWT_MIRROR_EXIT_ROUNDS
 * (default 3).
 */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "mirror_util.h"

#define PG MU_PG

static long env_long(const char *name, long dflt)
{
	const char *s = getenv(name);

	return s && *s ? strtol(s, NULL, 0) : dflt;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Busy-wait: sleeps are too coarse for the windows we aim at. */
static void spin_ns(uint64_t ns)
{
	uint64_t end = now_ns() + ns;

	while (now_ns() < end)
		;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* ---- fork ------------------------------------------------------------- */

static int child_report = -1;

static void child_fail(const char *fmt, ...)
{
	char buf[400] = "F";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf + 1, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (write(child_report, buf, strlen(buf)) < 0)
		_exit(3);
	_exit(1);
}

#define CCHECK(cond, ...) do { if (!(cond)) child_fail(__VA_ARGS__); } while (0)
#define CALL(p, b, len, what) \
	CCHECK(mu_all_eq((p), (b), (len)), "child: %s is not all '%c' " \
	       "(first byte '%c')", (what), (b), (p)[0])

static void child_wait(int fd)
{
	char c;

	if (read(fd, &c, 1) != 1)
		_exit(4);
}

/* Parent: the child's next "K", or fail with its message. */
static void parent_expect(int fd, pid_t pid)
{
	char msg[401] = "";
	ssize_t k, got = 0;
	int status;

	k = read(fd, msg, 1);
	if (k == 1 && msg[0] == 'K')
		return;
	while ((k = read(fd, msg + got, sizeof(msg) - 1 - (size_t)got)) > 0)
		got += k;
	waitpid(pid, &status, 0);
	fail_msg("%s (child status %#x)", got > 1 ? msg + 1 : "child died",
		 status);
}

static void test_fork_cow(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m = mu_open(), *cm;
	struct regwatch_mirror_stats st0, st1;
	size_t n = 8, len = n * PG;
	uint8_t *priv = mu_map_anon(len), *ro = mu_map_anon(len);
	uint8_t *shr = mu_map(len, PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS, -1);
	uint8_t *host = malloc(len);
	int p2c[2], c2p[2], status, r;
	pid_t pid;

	(void)state;
	memset(ro, 'R', len);
	memset(shr, 'S', len);
	MU_OK(regwatch_mirror_fill(m, priv, 'A', len));	/* writable */
	MU_OK(regwatch_mirror_read(m, ro, host, len));
	MU_OK(regwatch_mirror_map(m, shr, len, true));
	st0 = mu_stats(m);
	assert_int_equal(pipe(p2c), 0);
	assert_int_equal(pipe(c2p), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p2c[1]);
		close(c2p[0]);
		child_report = c2p[1];
		child_wait(p2c[0]);
		CALL(priv, 'A', len, "private page after the parent's device "
		     "write");
		CALL(ro, 'R', len, "private page after the parent's CPU write");
		CALL(shr, 'T', len, "shared page after the parent's device "
		     "write");
		r = regwatch_mirror_read(m, priv, host, len);
		CCHECK(r == -EIO, "parent's device in the child: READ %d", r);
		r = regwatch_mirror_fill(m, priv, 'x', len);
		CCHECK(r == -EIO, "parent's device in the child: FILL %d", r);
		r = regwatch_mirror_stats(m, &st1);
		CCHECK(r == -EIO, "parent's device in the child: STATS %d", r);
		r = regwatch_mirror_open(&cm);
		CCHECK(!r, "child: open: %s", strerror(-r));
		r = regwatch_mirror_read(cm, priv, host, len);
		CCHECK(!r && mu_all_eq(host, 'A', len), "child device READ: "
		       "%d '%c'", r, host[0]);
		r = regwatch_mirror_fill(cm, priv, 'C', len);
		CCHECK(!r, "child device FILL: %s", strerror(-r));
		CALL(priv, 'C', len, "private page after the child's device "
		     "write");
		r = regwatch_mirror_fill(cm, shr, 'U', len);
		CCHECK(!r, "child device FILL shared: %s", strerror(-r));
		CCHECK(write(c2p[1], "K", 1) == 1, "write");
		child_wait(p2c[0]);
		CALL(priv, 'C', len, "child's page after the parent's second "
		     "device write");
		CALL(shr, 'V', len, "shared page after the parent's second "
		     "device write");
		r = regwatch_mirror_read(cm, priv, host, len);
		CCHECK(!r && mu_all_eq(host, 'C', len), "child device READ at "
		       "the end: %d '%c'", r, host[0]);
		regwatch_mirror_close(cm);
		CCHECK(write(c2p[1], "K", 1) == 1, "write");
		_exit(0);
	}
	close(p2c[0]);
	close(c2p[1]);

	/* fork write-protected the private pages: device write revoked. */
	st1 = mu_stats(m);
	if (st1.write_revoked - st0.write_revoked +
	    st1.unmapped_pages - st0.unmapped_pages < 2 * n)
		fail_msg("fork took device write from %llu pages, expected "
			 "at least %zu", (unsigned long long)
			 (st1.write_revoked - st0.write_revoked +
			  st1.unmapped_pages - st0.unmapped_pages), 2 * n);
	MU_OK(regwatch_mirror_fill(m, priv, 'B', len));
	mu_assert_all(priv, 'B', len, "parent after its device write");
	MU_OK(regwatch_mirror_fill(m, shr, 'T', len));
	/* CPU COW in the parent: the device must follow to the new page. */
	memset(ro, 'Q', len);
	MU_OK(regwatch_mirror_read(m, ro, host, len));
	mu_assert_all(host, 'Q', len, "device READ after the parent's COW");
	assert_int_equal(write(p2c[1], "1", 1), 1);

	parent_expect(c2p[0], pid);
	mu_assert_all(priv, 'B', len, "parent after the child's device write");
	mu_assert_all(shr, 'U', len, "shared page after the child's write");
	MU_OK(regwatch_mirror_read(m, priv, host, len));
	mu_assert_all(host, 'B', len, "parent device READ");
	MU_OK(regwatch_mirror_fill(m, priv, 'D', len));
	MU_OK(regwatch_mirror_fill(m, shr, 'V', len));
	assert_int_equal(write(p2c[1], "2", 1), 1);
	parent_expect(c2p[0], pid);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	mu_assert_all(priv, 'D', len, "parent at the end");

	close(p2c[1]);
	close(c2p[0]);
	munmap(priv, len);
	munmap(ro, len);
	munmap(shr, len);
	free(host);
	regwatch_mirror_close(m);
	mu_assert_no_leak(mc);
}

/* ---- one transfer in a thread ----------------------------------------- */

struct xfer_thread {
	pthread_t tid;
	struct regwatch_mirror *m;
	int op;			/* REGWATCH_MIRROR_OP_COPY or _READ */
	void *addr;
	const void *src;	/* COPY */
	void *host;		/* READ */
	size_t len;
	atomic_int started, done;
	int ret;
};

static void *xfer_run(void *arg)
{
	struct xfer_thread *t = arg;

	atomic_store(&t->started, 1);
	if (t->op == REGWATCH_MIRROR_OP_COPY)
		t->ret = regwatch_mirror_copy(t->m, t->addr, t->src, t->len);
	else
		t->ret = regwatch_mirror_read(t->m, t->addr, t->host, t->len);
	atomic_store(&t->done, 1);
	return NULL;
}

static void xfer_start(struct xfer_thread *t)
{
	atomic_store(&t->started, 0);
	atomic_store(&t->done, 0);
	assert_int_equal(pthread_create(&t->tid, NULL, xfer_run, t), 0);
	while (!atomic_load(&t->started))
		;
}

/*
 * Progress is watched without asking the device: its STATS ioctl takes
 * the page-table lock, and so waits for the engine like everything else.
 * wait_written: until the engine has written page k of the destination,
 * as seen through another mapping of the same file (or the transfer is
 * over).
 */
static void wait_written(struct xfer_thread *t, const uint8_t *alias,
			 size_t k, uint8_t byte)
{
	while (!atomic_load(&t->done) &&
	       ((volatile const uint8_t *)alias)[k * PG] != byte)
		;
}

/* Run the calling thread on CPU cpu (-1: on every CPU again). */
static void pin(int cpu)
{
	cpu_set_t cpus;

	CPU_ZERO(&cpus);
	if (cpu >= 0)
		CPU_SET(cpu, &cpus);
	else
		for (int i = 0; i < CPU_SETSIZE; i++)
			CPU_SET(i, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
}

#define WQ_MASK "/sys/devices/virtual/workqueue/cpumask"
static char wq_mask_saved[64];

static int wq_mask_write(const char *val)
{
	int fd = open(WQ_MASK, O_WRONLY), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/*
 * The device's engine is an unbound workqueue: confine unbound workers
 * to CPU 1 and the test's main thread to CPU 0, so that the main thread
 * really acts while the engine is in the middle of a transfer (on one
 * CPU the worker would run between two of its time slices).
 */
static int race_setup(void **state)
{
	int fd = open(WQ_MASK, O_RDONLY);
	ssize_t k;

	(void)state;
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2 || fd < 0)
		return fd < 0 ? 0 : (close(fd), 0);
	k = read(fd, wq_mask_saved, sizeof(wq_mask_saved) - 1);
	close(fd);
	wq_mask_saved[k > 0 ? k : 0] = 0;
	if (wq_mask_write("2"))
		wq_mask_saved[0] = 0;
	pin(0);
	return 0;
}

static int race_teardown(void **state)
{
	(void)state;
	pin(-1);
	if (wq_mask_saved[0] && wq_mask_write(wq_mask_saved))
		fprintf(stderr, "could not restore %s to %s\n", WQ_MASK,
			wq_mask_saved);
	wq_mask_saved[0] = 0;
	return 0;
}

/*
 * The device copies into a memfd mapping that the main thread unmaps in
 * the middle of the copy. Once munmap has returned the file's pages are
 * no longer this address space's: whatever the file holds then must
 * never change again.
 */
static void test_race_munmap_copy(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m = mu_open();
	long iters = env_long("RWT_MIRROR_RACE_ITERS", 24);
	size_t n = 1024, len = n * PG, partial = 0, before = 0, failed = 0;
	uint8_t *src = mu_map_anon(len), *snap = malloc(len);
	uint8_t *after = malloc(len), *init = malloc(len);
	struct xfer_thread t = { .m = m, .op = REGWATCH_MIRROR_OP_COPY,
				 .src = src, .len = len };
	uint64_t seed = now_ns() | 1, t0, um = 0, um_max = 0;

	(void)state;
	memset(src, 's', len);
	memset(init, 'd', len);
	for (long it = 0; it < iters; it++) {
		int fd = mu_memfd(len);
		uint8_t *dst, *alias;
		size_t ns = 0;

		assert_int_equal(pwrite(fd, init, len, 0), (ssize_t)len);
		dst = mu_map(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		alias = mu_map(len, PROT_READ, MAP_SHARED, fd);
		/* Device entries for every page: the stale-entry case. */
		MU_OK(regwatch_mirror_map(m, dst, len, true));
		t.addr = dst;
		/* COPY reads src, then writes dst in order: unmap dst once
		 * the engine has written a random page of its first half. */
		xfer_start(&t);
		wait_written(&t, alias, rnd(&seed) % (n / 2), 's');
		t0 = now_ns();
		assert_int_equal(munmap(dst, len), 0);
		t0 = now_ns() - t0;
		um += t0;
		um_max = t0 > um_max ? t0 : um_max;
		mu_pread(fd, snap, len, 0);
		pthread_join(t.tid, NULL);
		mu_pread(fd, after, len, 0);
		munmap(alias, len);
		mu_assert_bytes(after, snap, len, "iteration %ld: the memfd "
				"changed after munmap returned (COPY %d)", it,
				t.ret);
		for (size_t i = 0; i < len; i += PG)
			ns += snap[i] == 's';
		if (t.ret && t.ret != -EFAULT)
			fail_msg("COPY during munmap: %s", strerror(-t.ret));
		if (!t.ret && ns != n)
			fail_msg("COPY succeeded but %zu of %zu pages copied",
				 ns, n);
		before += !t.ret;
		failed += t.ret && !ns;
		partial += t.ret && ns;
		close(fd);
	}
	print_message("  COPY of %zu KiB vs munmap: %zu done before, %zu "
		      "cut mid-copy, %zu failed before writing; munmap took "
		      "%.2f ms on average, %.2f at most\n", len >> 10, before,
		      partial, failed, um / 1e6 / (double)iters, um_max / 1e6);
	/* The race was hit (how often: see inval_during_transfer). */
	if (!partial)
		fail_msg("no COPY was cut by a munmap that started during its "
			 "writes");
	regwatch_mirror_close(m);
	munmap(src, len);
	free(snap);
	free(after);
	free(init);
	mu_assert_no_leak(mc);
}

/*
 * An invalidation does not wait for a whole transfer. The interval
 * notifier covers the whole address space, so any munmap in the process
 * takes the device's page-table lock; the engine holds it for one page
 * at a time. While the engine writes a 16 MiB COPY, munmap an unrelated
 * page: it must return before the COPY's last page is written.
 */
static void test_inval_during_transfer(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m = mu_open();
	long long max = 0;
	size_t len, n, iters = 8, mid = 0;
	uint8_t *src, *dst, *alias, *u;
	struct xfer_thread t = { .m = m, .op = REGWATCH_MIRROR_OP_COPY };
	uint64_t t0, um = 0;
	int fd;
	FILE *f = fopen("/sys/module/regwatch/parameters/mirror_max_xfer",
			"r");

	(void)state;
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%lld", &max), 1);
	fclose(f);
	len = max < (16LL << 20) ? (size_t)max & ~(PG - 1) : 16UL << 20;
	n = len / PG;
	assert_true(n >= 64);
	src = mu_map_anon(len);
	memset(src, 's', len);
	fd = mu_memfd(len);
	dst = mu_map(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	alias = mu_map(len, PROT_READ, MAP_SHARED, fd);
	t.addr = dst;
	t.src = src;
	t.len = len;
	for (size_t it = 0; it < iters; it++) {
		memset(dst, 'd', len);
		MU_OK(regwatch_mirror_map(m, dst, len, true));
		u = mu_map_anon(PG);
		u[0] = 1;
		xfer_start(&t);
		wait_written(&t, alias, n / 8, 's');
		t0 = now_ns();
		assert_int_equal(munmap(u, PG), 0);
		um += now_ns() - t0;
		mid += ((volatile uint8_t *)alias)[len - 1] != 's';
		pthread_join(t.tid, NULL);
		MU_OK(t.ret);
	}
	print_message("  munmap of an unrelated page during a %zu MiB COPY: "
		      "returned before the COPY's end %zu of %zu times, took "
		      "%.2f ms on average\n", len >> 20, mid, iters,
		      um / 1e6 / (double)iters);
	/*
	 * Statistical: a munmap stuck behind the engine still gets the lock
	 * now and then (after a scheduler tick the waiting mutex locker
	 * sleeps and is handed the lock). Measured here: a module whose
	 * engine gives way to a pending invalidation 8/8 (three runs), the
	 * module that does not 0/8, 1/8, 5/8.
	 */
	if (mid < iters * 3 / 4)
		fail_msg("munmap waited for the whole COPY %zu of %zu times: "
			 "the engine starves the notifier of its page-table "
			 "lock", iters - mid, iters);
	regwatch_mirror_close(m);
	munmap(src, len);
	munmap(dst, len);
	munmap(alias, len);
	close(fd);
	mu_assert_no_leak(mc);
}

/*
 * The device reads a memfd mapping that the main thread unmaps in the
 * middle of the read and then overwrites through the file: a READ that
 * succeeds read every page before munmap returned, so it never contains
 * the new bytes.
 */
static void test_race_munmap_read(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m = mu_open();
	long iters = env_long("RWT_MIRROR_RACE_ITERS", 24) * 2 / 3;
	size_t n = 4096, len = n * PG, ok = 0, efault = 0;
	uint8_t *host = malloc(len), *buf = malloc(len);
	struct xfer_thread t = { .m = m, .op = REGWATCH_MIRROR_OP_READ,
				 .host = host, .len = len };
	uint64_t seed = now_ns() | 1, t0, um = 0, um_max = 0, dur = 0;

	(void)state;
	for (long it = -3; it < iters; it++) {
		int fd = mu_memfd(len);
		uint8_t *p;

		memset(buf, 'a', len);
		assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
		p = mu_map(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
		MU_OK(regwatch_mirror_map(m, p, len, false));
		t.addr = p;
		memset(host, 0, len);
		if (it < 0) {		/* calibration: the shortest of 3 */
			t0 = now_ns();
			xfer_start(&t);
			pthread_join(t.tid, NULL);
			MU_OK(t.ret);
			t0 = now_ns() - t0;
			dur = !dur || t0 < dur ? t0 : dur;
			munmap(p, len);
			close(fd);
			continue;
		}
		/* munmap at a random point of the READ. */
		xfer_start(&t);
		spin_ns(rnd(&seed) % dur);
		t0 = now_ns();
		assert_int_equal(munmap(p, len), 0);
		t0 = now_ns() - t0;
		um += t0;
		um_max = t0 > um_max ? t0 : um_max;
		memset(buf, 'Z', len);
		assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
		pthread_join(t.tid, NULL);
		/* First, before anything can be mapped at p again. */
		MU_ERR(regwatch_mirror_read(m, p, buf, PG), EFAULT);
		if (t.ret == 0) {
			mu_assert_all(host, 'a', len, "a READ that succeeded "
				      "across munmap");
			ok++;
		} else if (t.ret == -EFAULT) {
			efault++;
		} else {
			fail_msg("READ during munmap: %s", strerror(-t.ret));
		}
		close(fd);
	}
	print_message("  READ of %zu KiB vs munmap: %zu done before, %zu "
		      "EFAULT; munmap took %.2f ms on average, %.2f at most\n",
		      len >> 10, ok, efault, um / 1e6 / (double)iters,
		      um_max / 1e6);
	/* The race was hit: some READs were cut short by munmap. */
	if (!efault)
		fail_msg("no READ was cut by munmap");
	regwatch_mirror_close(m);
	free(host);
	free(buf);
	mu_assert_no_leak(mc);
}

/* ---- migration under device writes ------------------------------------ */

struct migrator {
	pthread_t tid;
	void *p[4];
	size_t n[4];		/* pages, at most 64 each */
	atomic_int stop;
	atomic_size_t moved;
	atomic_size_t rounds;
};

static void *migrate_run(void *arg)
{
	struct migrator *mg = arg;

	while (!atomic_load(&mg->stop)) {
		for (int i = 0; i < 4 && mg->p[i]; i++) {
			size_t moved = 0;

			mu_move_other_nc(mg->p[i], mg->n[i], &moved);
			atomic_fetch_add(&mg->moved, moved);
		}
		atomic_fetch_add(&mg->rounds, 1);
	}
	return NULL;
}

static void test_race_migrate_write(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m = mu_open();
	size_t n = 64, len = n * PG, ok = 0, busy = 0;
	uint8_t *w = mu_map_anon(len), *host = malloc(len);
	struct migrator mg = { .p = { w }, .n = { n } };
	long iters = 4 * env_long("RWT_MIRROR_RACE_ITERS", 24);
	struct regwatch_mirror_stats st;

	(void)state;
	if (numa_available() < 0 || numa_max_node() < 1)
		fail_msg("the guest should have two NUMA nodes");
	memset(w, 0, len);
	assert_int_equal(pthread_create(&mg.tid, NULL, migrate_run, &mg), 0);
	for (long v = 1; v <= iters; v++) {
		int r = regwatch_mirror_fill(m, w, (int)v, len);

		if (r == -EBUSY) {	/* retries exhausted: allowed */
			busy++;
			continue;
		}
		if (r) {
			atomic_store(&mg.stop, 1);
			pthread_join(mg.tid, NULL);
			fail_msg("FILL while migrating: %s", strerror(-r));
		}
		ok++;
		/* Only the device writes w: the CPU sees that write. */
		if (!mu_all_eq(w, (uint8_t)v, len)) {
			atomic_store(&mg.stop, 1);
			pthread_join(mg.tid, NULL);
			mu_assert_all(w, (uint8_t)v, len, "a device write "
				      "during migration (lost write)");
		}
		r = regwatch_mirror_read(m, w, host, len);
		if (!r && !mu_all_eq(host, (uint8_t)v, len)) {
			atomic_store(&mg.stop, 1);
			pthread_join(mg.tid, NULL);
			mu_assert_all(host, (uint8_t)v, len, "device READ "
				      "during migration");
		}
	}
	atomic_store(&mg.stop, 1);
	pthread_join(mg.tid, NULL);
	st = mu_stats(m);
	print_message("  %ld device FILLs of %zu pages while migrating: %zu "
		      "ok, %zu EBUSY; %zu pages moved in %zu rounds; device "
		      "faults %llu, retries %llu\n", iters, n, ok, busy,
		      (size_t)mg.moved, (size_t)mg.rounds,
		      (unsigned long long)st.faults,
		      (unsigned long long)st.retries);
	assert_true(ok >= (size_t)iters / 2);
	assert_true(mg.moved > n);
	regwatch_mirror_close(m);
	munmap(w, len);
	free(host);
	mu_assert_no_leak(mc);
}

/* ---- teardown while busy: a child exits mid-transfer ------------------ */

#define S_PAGES 64		/* remapped by generations */
#define D_PAGES 64		/* COPY destination, replaced by MAP_FIXED */
#define W_PAGES 32		/* written by the device only, migrated */
#define X_PAGES 32		/* memfd, unmapped and mapped back */
#define WORDS (PG / 8)
#define TAG 0xa5u

/* What the child's threads found, in memory shared with the parent. */
struct busy_result {
	atomic_ulong reads, copies, wfills, xfills, sremaps, dremaps;
	atomic_ulong xunmaps, efault, ebusy, moved, violations;
	atomic_int msg_taken;
	char msg[512];
};

struct busy {
	struct busy_result *res;
	struct regwatch_mirror *m;
	uint64_t *s, *d;
	uint8_t *w, *x;
	int xfd;
	atomic_uint sgen;	/* last published generation of s */
	atomic_uint dseq;	/* odd while d is being replaced */
	atomic_int xstop;
	uint64_t *host[2];	/* READ buffers, one per reader */
	uint8_t *xsnap, *xafter, *whost;
};

static void violation(struct busy *b, const char *fmt, ...)
{
	va_list ap;

	atomic_fetch_add(&b->res->violations, 1);
	if (atomic_exchange(&b->res->msg_taken, 1))
		return;
	va_start(ap, fmt);
	vsnprintf(b->res->msg, sizeof(b->res->msg), fmt, ap);
	va_end(ap);
}

static void count_err(struct busy *b, int r, const char *what)
{
	if (r == -EFAULT)
		atomic_fetch_add(&b->res->efault, 1);
	else if (r == -EBUSY)
		atomic_fetch_add(&b->res->ebusy, 1);
	else if (r)
		violation(b, "%s: unexpected error %s", what, strerror(-r));
}

static uint64_t s_word(unsigned int gen, size_t page, size_t word)
{
	return (uint64_t)gen << 32 | TAG << 24 | page << 9 | word;
}

/* Words of s (or a copy of it) carry their own page and a generation in
 * [lo, hi]. */
static void check_s_words(struct busy *b, const uint64_t *v, unsigned int lo,
			  unsigned int hi, const char *what)
{
	for (size_t i = 0; i < S_PAGES * WORDS; i++) {
		unsigned int gen = (unsigned int)(v[i] >> 32);

		if ((uint32_t)v[i] != (uint32_t)s_word(0, i / WORDS, i % WORDS) ||
		    gen < lo || gen > hi) {
			violation(b, "%s: page %zu word %zu is %#llx: expected "
				  "generation %u..%u, tag %#x", what,
				  i / WORDS, i % WORDS,
				  (unsigned long long)v[i], lo, hi,
				  (uint32_t)s_word(0, i / WORDS, i % WORDS));
			return;
		}
	}
}

static void *reader_run(void *arg)
{
	struct busy *b = ((void **)arg)[0];
	uint64_t *host = ((void **)arg)[1];

	for (;;) {
		unsigned int g0 = atomic_load(&b->sgen), g1;
		int r = regwatch_mirror_read(b->m, b->s, host,
					     S_PAGES * PG);

		g1 = atomic_load(&b->sgen);
		count_err(b, r, "READ s");
		if (!r) {
			check_s_words(b, host, g0, g1 + 1, "device READ of s");
			atomic_fetch_add(&b->res->reads, 1);
		}
	}
	return NULL;
}

static void *copier_run(void *arg)
{
	struct busy *b = arg;

	for (;;) {
		unsigned int q0 = atomic_load(&b->dseq);
		unsigned int g0 = atomic_load(&b->sgen), g1;
		int r = regwatch_mirror_copy(b->m, b->d, b->s, S_PAGES * PG);

		g1 = atomic_load(&b->sgen);
		count_err(b, r, "COPY s -> d");
		if (r)
			continue;
		atomic_fetch_add(&b->res->copies, 1);
		if (q0 & 1)
			continue;
		/* d was not replaced meanwhile: it holds what was copied. */
		for (size_t i = 0; i < D_PAGES * WORDS; i++) {
			uint64_t v = b->d[i];
			unsigned int gen = (unsigned int)(v >> 32);

			if (atomic_load(&b->dseq) != q0)
				break;
			if ((uint32_t)v != (uint32_t)s_word(0, i / WORDS,
							    i % WORDS) ||
			    gen < g0 || gen > g1 + 1) {
				if (atomic_load(&b->dseq) != q0)
					break;
				violation(b, "CPU view of d after COPY: page "
					  "%zu word %zu is %#llx, expected "
					  "generation %u..%u", i / WORDS,
					  i % WORDS, (unsigned long long)v, g0,
					  g1 + 1);
				break;
			}
		}
	}
	return NULL;
}

/* w is written by the device only: the CPU must see each write. */
static void *wfill_run(void *arg)
{
	struct busy *b = arg;

	for (uint8_t v = 1;; v = v == 255 ? 1 : v + 1) {
		int r = regwatch_mirror_fill(b->m, b->w, v, W_PAGES * PG);

		count_err(b, r, "FILL w");
		if (r)
			continue;
		atomic_fetch_add(&b->res->wfills, 1);
		for (size_t i = 0; i < W_PAGES * PG; i++)
			if (b->w[i] != v) {
				violation(b, "w byte %zu is %u after a device "
					  "FILL of %u (lost write)", i,
					  b->w[i], v);
				break;
			}
	}
	return NULL;
}

/* x comes and goes: device writes fail while it is unmapped. */
static void *xfill_run(void *arg)
{
	struct busy *b = arg;

	for (uint8_t v = 1;; v = v == 255 ? 1 : v + 1) {
		int r = regwatch_mirror_fill(b->m, b->x, v, X_PAGES * PG);

		count_err(b, r, "FILL x");
		if (!r)
			atomic_fetch_add(&b->res->xfills, 1);
	}
	return NULL;
}

static void fill_gen(uint64_t *p, unsigned int gen)
{
	for (size_t i = 0; i < S_PAGES * WORDS; i++)
		p[i] = s_word(gen, i / WORDS, i % WORDS);
}

static void *remap_run(void *arg)
{
	struct busy *b = arg;
	size_t xlen = X_PAGES * PG;

	for (unsigned int gen = 2;; gen++) {
		/* s: a new generation, swapped in atomically by mremap. */
		uint64_t *fresh = mmap(NULL, S_PAGES * PG,
				       PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (fresh == MAP_FAILED) {
			violation(b, "mmap: %s", strerror(errno));
			return NULL;
		}
		fill_gen(fresh, gen);
		if (mremap(fresh, S_PAGES * PG, S_PAGES * PG,
			   MREMAP_MAYMOVE | MREMAP_FIXED, b->s) != b->s) {
			violation(b, "mremap: %s", strerror(errno));
			return NULL;
		}
		atomic_store(&b->sgen, gen);
		atomic_fetch_add(&b->res->sremaps, 1);

		/* d: replaced by fresh zero pages (MAP_FIXED, atomic). */
		{
			atomic_fetch_add(&b->dseq, 1);
			if (mmap(b->d, D_PAGES * PG, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
				 0) != b->d)
				violation(b, "mmap d: %s", strerror(errno));
			atomic_fetch_add(&b->dseq, 1);
			atomic_fetch_add(&b->res->dremaps, 1);
		}

		/* x: unmapped; its file must not change until mapped back. */
		if (!atomic_load(&b->xstop)) {
			munmap(b->x, xlen);
			if (pread(b->xfd, b->xsnap, xlen, 0) != (ssize_t)xlen)
				violation(b, "pread x: %s", strerror(errno));
			spin_ns(1000000);
			if (pread(b->xfd, b->xafter, xlen, 0) != (ssize_t)xlen)
				violation(b, "pread x: %s", strerror(errno));
			if (memcmp(b->xsnap, b->xafter, xlen))
				violation(b, "x's file changed while x was "
					  "unmapped: a device write through a "
					  "stale entry");
			if (mmap(b->x, xlen, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_FIXED_NOREPLACE, b->xfd,
				 0) != b->x) {
				violation(b, "mapping x back: %s",
					  strerror(errno));
				atomic_store(&b->xstop, 1);
			}
			atomic_fetch_add(&b->res->xunmaps, 1);
		}
	}
	return NULL;
}

static void *busy_migrate_run(void *arg)
{
	struct busy *b = arg;

	for (;;) {
		size_t moved = 0;

		mu_move_other_nc(b->s, S_PAGES, &moved);
		mu_move_other_nc(b->d, D_PAGES, &moved);
		mu_move_other_nc(b->w, W_PAGES, &moved);
		mu_move_other_nc(b->x, X_PAGES, &moved);
		atomic_fetch_add(&b->res->moved, moved);
	}
	return NULL;
}

/* The child: start everything, then exit while it all runs. */
static void busy_child(struct busy_result *res, unsigned int exit_ms)
{
	struct busy *b = calloc(1, sizeof(*b));
	void *rargs[2][2];
	pthread_t tid;
	int r;

	b->res = res;
	r = regwatch_mirror_open(&b->m);
	if (r) {
		violation(b, "child open: %s", strerror(-r));
		_exit(1);
	}
	b->s = mmap(NULL, S_PAGES * PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b->d = mmap(NULL, D_PAGES * PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b->w = mmap(NULL, W_PAGES * PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b->xfd = memfd_create("rwt-mirror-x", 0);
	if (b->xfd < 0 || ftruncate(b->xfd, X_PAGES * PG)) {
		violation(b, "child memfd: %s", strerror(errno));
		_exit(1);
	}
	b->x = mmap(NULL, X_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED,
		    b->xfd, 0);
	if (b->s == MAP_FAILED || b->d == MAP_FAILED || b->w == MAP_FAILED ||
	    b->x == MAP_FAILED) {
		violation(b, "child mmap: %s", strerror(errno));
		_exit(1);
	}
	fill_gen(b->s, 1);
	atomic_store(&b->sgen, 1);
	memset(b->d, 0, D_PAGES * PG);
	memset(b->w, 0, W_PAGES * PG);
	memset(b->x, 0, X_PAGES * PG);
	/* Everything the threads need, allocated now (no malloc there). */
	b->xsnap = malloc(X_PAGES * PG);
	b->xafter = malloc(X_PAGES * PG);
	for (int i = 0; i < 2; i++) {
		b->host[i] = malloc(S_PAGES * PG);
		rargs[i][0] = b;
		rargs[i][1] = b->host[i];
	}

	for (int i = 0; i < 2; i++)
		pthread_create(&tid, NULL, reader_run, rargs[i]);
	pthread_create(&tid, NULL, copier_run, b);
	pthread_create(&tid, NULL, wfill_run, b);
	pthread_create(&tid, NULL, xfill_run, b);
	pthread_create(&tid, NULL, remap_run, b);
	pthread_create(&tid, NULL, busy_migrate_run, b);
	/* Once every kind of activity has started (at most 10 s)... */
	for (int i = 0; i < 1000 && !(res->reads && res->copies &&
				      res->wfills && res->xfills &&
				      res->sremaps && res->xunmaps); i++)
		usleep(10000);
	usleep(exit_ms * 1000);
	/* exit_group with transfers in flight: the device is never closed. */
	_exit(0);
}

static void test_teardown_exit_busy(void **state)
{
	struct mu_modcount mc = mu_modcount();
	long rounds = env_long("RWT_MIRROR_EXIT_ROUNDS", 3);
	struct busy_result *res = mu_map(sizeof(*res) * (size_t)rounds,
					 PROT_READ | PROT_WRITE,
					 MAP_SHARED | MAP_ANONYMOUS, -1);
	unsigned long tot[6] = { 0 };
	uint64_t seed = now_ns() | 1;

	(void)state;
	if (numa_available() < 0 || numa_max_node() < 1)
		fail_msg("the guest should have two NUMA nodes");
	for (long i = 0; i < rounds; i++) {
		struct busy_result *r = &res[i];
		unsigned int exit_ms = 300 + (unsigned int)(rnd(&seed) % 1000);
		uint64_t t0 = now_ns();
		int status = 0;
		pid_t pid, w = 0;

		fflush(NULL);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			busy_child(r, exit_ms);
		/* No hang: the child is gone well within a minute. */
		while (now_ns() - t0 < 60000000000ULL &&
		       (w = waitpid(pid, &status, WNOHANG)) == 0)
			usleep(20000);
		if (w != pid) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("round %ld: the child did not exit in 60 s "
				 "(exit after %u ms asked)", i, exit_ms);
		}
		print_message("  round %ld: exit %u ms after all started, gone "
			      "after %.0f ms: %lu READs, %lu COPYs, %lu+%lu FILLs, "
			      "%lu/%lu/%lu remaps s/d/x, %lu pages moved, "
			      "%lu EFAULT, %lu EBUSY, %lu violations\n", i,
			      exit_ms, (now_ns() - t0) / 1e6,
			      (unsigned long)r->reads, (unsigned long)r->copies,
			      (unsigned long)r->wfills,
			      (unsigned long)r->xfills,
			      (unsigned long)r->sremaps,
			      (unsigned long)r->dremaps,
			      (unsigned long)r->xunmaps,
			      (unsigned long)r->moved,
			      (unsigned long)r->efault, (unsigned long)r->ebusy,
			      (unsigned long)r->violations);
		if (r->violations)
			fail_msg("round %ld: %lu violations, first: %s", i,
				 (unsigned long)r->violations, r->msg);
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			fail_msg("round %ld: child status %#x", i, status);
		/* The exit closed the device: nothing left behind. */
		mu_assert_no_leak(mc);
		tot[0] += r->reads;
		tot[1] += r->copies;
		tot[2] += r->wfills;
		tot[3] += r->sremaps;
		tot[4] += r->xunmaps;
		tot[5] += r->moved;
	}
	/* Every kind of activity really ran. */
	for (int k = 0; k < 6; k++)
		if (!tot[k])
			fail_msg("activity %d never happened", k);
	munmap(res, sizeof(*res) * (size_t)rounds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fork_cow),
		cmocka_unit_test_setup_teardown(test_race_munmap_copy,
						race_setup, race_teardown),
		cmocka_unit_test_setup_teardown(test_inval_during_transfer,
						race_setup, race_teardown),
		cmocka_unit_test_setup_teardown(test_race_munmap_read,
						race_setup, race_teardown),
		cmocka_unit_test(test_race_migrate_write),
		cmocka_unit_test(test_teardown_exit_busy),
	};

	if (access(REGWATCH_MIRROR_DEVICE, R_OK | W_OK)) {
		fprintf(stderr, "%s: %s\n", REGWATCH_MIRROR_DEVICE,
			strerror(errno));
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
