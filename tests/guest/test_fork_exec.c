// SPDX-License-Identifier: MIT
/*
 * A monitor belongs to the address space that opened it. A forked child
 * or an exec'd image holding the fd gets EIO from every ioctl, mmap and
 * read, POLLERR from poll, and does not inherit the shared mappings; the
 * opener's monitor keeps working, and lives as long as any reference.
 *
 * Children cannot use cmocka: they check with CHILD_CHECK, which sends
 * the first failure to the parent over a pipe and exits 1. The same
 * binary re-executed with "--exec-probe" is the exec side.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "regwatch.h"
#include "rwt_util.h"

/* ---- child-side checking -------------------------------------------- */

static int report_fd = 2;

static void child_fail(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	if (write(report_fd, buf, (size_t)n) < 0)
		_exit(3);
	_exit(1);
}

#define CHILD_CHECK(cond, ...) \
	do { if (!(cond)) child_fail(__VA_ARGS__); } while (0)

#define CHILD_EIO(expr, what) \
	do { long r_ = (expr); \
	     CHILD_CHECK(r_ == -EIO, "%s: got %ld (%s), expected -EIO", what, \
			 r_, r_ < 0 ? strerror((int)-r_) : "success"); } while (0)

/* Parent side: wait for a child, fail with what it reported. */
static void wait_child(pid_t pid, int rfd)
{
	char msg[513] = "";
	ssize_t n, got = 0;
	int status;

	while ((n = read(rfd, msg + got, sizeof(msg) - 1 - (size_t)got)) > 0)
		got += n;
	msg[got] = 0;
	close(rfd);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	/* Any message is a failure, also from a grandchild. */
	if (got || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("child failed (status %#x): %s", status,
			 got ? msg : "(no message)");
}

/* Everything a process that is not the opener can try on the fd. */
static void child_try_everything(int fd, const struct regwatch_config *cfg,
				 uint64_t parent_id, void *addr)
{
	struct regwatch_watch w = { .addr = (uintptr_t)addr, .len = RWT_PAGE };
	struct regwatch_unwatch u = { .watch_id = parent_id };
	struct regwatch_batch bw = { .entries = (uintptr_t)&w, .count = 1 };
	struct regwatch_batch bu = { .entries = (uintptr_t)&u, .count = 1 };
	struct regwatch_eventfd e = { .fd = eventfd(0, 0) };
	struct regwatch_stats st = { .size = sizeof(st) };
	struct regwatch_signal sg = { .signo = SIGUSR1 };
	struct regwatch_config c2;
	struct regwatch_event ev;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	void *p;
	int flags;

	CHILD_EIO(rwt_ioctl(fd, REGWATCH_IOC_WATCH, &w), "WATCH");
	CHILD_EIO(rwt_ioctl(fd, REGWATCH_IOC_UNWATCH, &u), "UNWATCH");
	CHILD_EIO(rwt_ioctl(fd, REGWATCH_IOC_WATCHV, &bw), "WATCHV");
	CHILD_EIO(rwt_ioctl(fd, REGWATCH_IOC_UNWATCHV, &bu), "UNWATCHV");
	CHILD_EIO(rwt_ioctl(fd, REGWATCH_IOC_SET_EVENTFD, &e),
		  "SET_EVENTFD eventfd");
	e.fd = -1;
	CHILD_EIO(rwt_ioctl(fd, REGWATCH_IOC_SET_EVENTFD, &e),
		  "SET_EVENTFD -1");
	CHILD_EIO(rwt_ioctl(fd, REGWATCH_IOC_STATS, &st), "STATS");
	CHILD_EIO(rwt_ioctl(fd, REGWATCH_IOC_SET_SIGNAL, &sg), "SET_SIGNAL");
	sg.signo = 0;
	CHILD_EIO(rwt_ioctl(fd, REGWATCH_IOC_SET_SIGNAL, &sg),
		  "SET_SIGNAL 0");
	CHILD_EIO(rwt_config(fd, 0, 0, &c2), "CONFIG");

	if (cfg) {
		p = mmap(NULL, cfg->shared_size, PROT_READ, MAP_SHARED, fd,
			 (off_t)cfg->shared_offset);
		CHILD_CHECK(p == MAP_FAILED && errno == EIO,
			    "mmap shared: %s", p == MAP_FAILED ?
			    strerror(errno) : "succeeded");
		p = mmap(NULL, cfg->consumer_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, fd, (off_t)cfg->consumer_offset);
		CHILD_CHECK(p == MAP_FAILED && errno == EIO,
			    "mmap consumer: %s", p == MAP_FAILED ?
			    strerror(errno) : "succeeded");
	}

	/* A blocking read must not block (alarm catches it if it does). */
	flags = fcntl(fd, F_GETFL);
	alarm(20);
	CHILD_CHECK(read(fd, &ev, sizeof(ev)) == -1 && errno == EIO,
		    "blocking read: %s", strerror(errno));
	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	CHILD_CHECK(read(fd, &ev, sizeof(ev)) == -1 && errno == EIO,
		    "non-blocking read: %s", strerror(errno));
	fcntl(fd, F_SETFL, flags);
	alarm(0);

	CHILD_CHECK(poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR),
		    "poll: revents %#x, expected POLLERR", pfd.revents);
	CHILD_CHECK(!(pfd.revents & POLLIN), "poll: POLLIN in a child");
}

/* ---- fork ------------------------------------------------------------ */

struct parent_setup {
	struct rwt_raw r;
	char *mem;			/* 8 pages */
	struct regwatch_watch a;	/* page 0, one-shot */
	struct regwatch_watch b;	/* page 1, streaming */
	struct regwatch_stats st;
	uint64_t producer;
};

static void parent_open(struct parent_setup *ps)
{
	ps->mem = rwt_map_anon(8 * RWT_PAGE);
	assert_non_null(ps->mem);
	assert_int_equal(rwt_raw_open(&ps->r, 0, 0, 0), 0);
	assert_int_equal(rwt_raw_watch(&ps->r, ps->mem, RWT_PAGE, 0xa, 0,
				       &ps->a), 0);
	assert_int_equal(rwt_raw_watch(&ps->r, ps->mem + RWT_PAGE, RWT_PAGE,
				       0xb, REGWATCH_WATCH_STREAMING, &ps->b),
			 0);
}

static void parent_snapshot(struct parent_setup *ps)
{
	assert_int_equal(rwt_stats_fd(ps->r.fd, &ps->st), 0);
	ps->producer = ps->r.hdr->producer;
}

/* Nothing the child did reached the parent's monitor. */
static void parent_unchanged(struct parent_setup *ps)
{
	struct regwatch_stats st;

	assert_int_equal(rwt_stats_fd(ps->r.fd, &st), 0);
	assert_int_equal(st.watches, ps->st.watches);
	assert_int_equal(st.events, ps->st.events);
	assert_int_equal(st.oneshot_reserved, ps->st.oneshot_reserved);
	assert_int_equal(st.invalidations, ps->st.invalidations);
	assert_int_equal(ps->r.hdr->producer, ps->producer);
	assert_int_equal(rwt_raw_state(&ps->r, ps->a.watch_id),
			 ps->a.armed_state);
	assert_int_equal(rwt_raw_state(&ps->r, ps->b.watch_id),
			 ps->b.armed_state);
}

static void test_child_gets_eio(void **state)
{
	struct parent_setup ps;
	int rep[2], go[2];
	pid_t pid;
	char c;

	(void)state;
	parent_open(&ps);
	assert_int_equal(pipe(rep), 0);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(rep[0]);
		close(go[1]);
		report_fd = rep[1];
		/* Start once the parent has its snapshot. */
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		/* VM_DONTCOPY: neither shared mapping came along. */
		CHILD_CHECK(!rwt_mapped(ps.r.shared, RWT_PAGE),
			    "shared area mapped in the child");
		CHILD_CHECK(!rwt_in_maps(ps.r.shared),
			    "shared area in the child's /proc/self/maps");
		CHILD_CHECK(!rwt_mapped(ps.r.cons, RWT_PAGE),
			    "consumer page mapped in the child");
		CHILD_CHECK(!rwt_in_maps(ps.r.cons),
			    "consumer page in the child's /proc/self/maps");
		child_try_everything(ps.r.fd, &ps.r.cfg, ps.a.watch_id,
				     ps.mem + 4 * RWT_PAGE);
		/* The child's copies of the watched pages are its own: no
		 * notifier of the parent's monitor lives in this mm. */
		CHILD_CHECK(madvise(ps.mem, 2 * RWT_PAGE, MADV_DONTNEED) == 0,
			    "madvise");
		CHILD_CHECK(munmap(ps.mem, 8 * RWT_PAGE) == 0, "munmap");
		close(rep[1]);
		/* stay alive until the parent has checked its monitor */
		if (read(go[0], &c, 1) < 0)
			_exit(2);
		_exit(0);
	}
	close(rep[1]);
	close(go[0]);
	/* fork() itself write-protected the parent's pages (PROTECTION,
	 * filtered): count from here. */
	parent_snapshot(&ps);
	assert_int_equal(write(go[1], "s", 1), 1);

	/* The child reports (closing its end) before it waits for "go". */
	char msg[513] = "";
	ssize_t n, got = 0;
	while ((n = read(rep[0], msg + got, sizeof(msg) - 1 - (size_t)got)) > 0)
		got += n;
	close(rep[0]);
	if (got)
		fail_msg("child: %s", msg);
	parent_unchanged(&ps);

	/* The parent's monitor works while the child still holds the fd. */
	assert_int_equal(munmap(ps.mem, RWT_PAGE), 0);
	assert_int_not_equal(rwt_raw_state(&ps.r, ps.a.watch_id),
			     ps.a.armed_state);
	assert_int_equal(rwt_raw_pending(&ps.r), 1);

	assert_int_equal(write(go[1], "x", 1), 1);
	close(go[1]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* ...and after the child is gone. */
	assert_int_equal(madvise(ps.mem + RWT_PAGE, RWT_PAGE, MADV_DONTNEED),
			 0);
	assert_int_not_equal(rwt_raw_state(&ps.r, ps.b.watch_id),
			     ps.b.armed_state);
	assert_int_equal(rwt_raw_pending(&ps.r), 2);
	rwt_raw_close(&ps.r);
	munmap(ps.mem, 8 * RWT_PAGE);
}

/* The library's calls in a child fail with -EIO too (header contract). */
static void test_child_library_calls(void **state)
{
	struct regwatch *rw;
	struct regwatch_ref ref, ref2;
	struct regwatch_stats st;
	struct regwatch_watch w;
	struct regwatch_unwatch u;
	char *mem = rwt_map_anon(4 * RWT_PAGE);
	int rep[2];
	pid_t pid;

	(void)state;
	assert_int_equal(regwatch_open(NULL, &rw), 0);
	assert_int_equal(regwatch_watch(rw, mem, RWT_PAGE, 1, 0, &ref), 0);
	assert_int_equal(pipe(rep), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(rep[0]);
		report_fd = rep[1];
		CHILD_EIO(regwatch_watch(rw, mem + RWT_PAGE, RWT_PAGE, 2, 0,
					 &ref2), "regwatch_watch");
		CHILD_EIO(regwatch_unwatch(rw, &ref), "regwatch_unwatch");
		CHILD_EIO(regwatch_stats(rw, &st), "regwatch_stats");
		CHILD_EIO(regwatch_set_eventfd(rw, -1), "regwatch_set_eventfd");
		memset(&w, 0, sizeof(w));
		w.addr = (uintptr_t)mem;
		w.len = RWT_PAGE;
		CHILD_EIO(regwatch_watchv(rw, &w, 1), "regwatch_watchv");
		u.watch_id = ref.id;
		u.pad = 0;
		CHILD_EIO(regwatch_unwatchv(rw, &u, 1), "regwatch_unwatchv");
		_exit(0);
	}
	close(rep[1]);
	wait_child(pid, rep[0]);
	assert_true(regwatch_ref_valid(&ref));
	assert_int_equal(regwatch_stats(rw, &st), 0);
	assert_int_equal(st.watches, 1);
	regwatch_close(rw);
	munmap(mem, 4 * RWT_PAGE);
}

/*
 * The parent closes its fd and unmaps everything while a child still
 * holds the fd: the monitor (bound to the parent's mm) lives on until the
 * child lets go, still serving the parent's invalidations safely.
 */
static void test_child_holds_last_reference(void **state)
{
	struct rwt_modstats base, mid, end;
	struct parent_setup ps;
	int rep[2], go[2];
	pid_t pid;
	char c;

	(void)state;
	assert_int_equal(rwt_modstats(&base), 0);
	parent_open(&ps);
	assert_int_equal(pipe(rep), 0);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(rep[0]);
		close(go[1]);
		report_fd = rep[1];
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		/* Still not ours, even though nobody else holds it now. */
		child_try_everything(ps.r.fd, &ps.r.cfg, ps.a.watch_id,
				     ps.mem + 4 * RWT_PAGE);
		close(ps.r.fd);
		_exit(0);
	}
	close(rep[1]);
	close(go[0]);

	/* Parent: fd closed, mappings kept: the watch still fires. */
	close(ps.r.fd);
	ps.r.fd = -1;
	assert_int_equal(munmap(ps.mem, RWT_PAGE), 0);
	assert_int_not_equal(rwt_raw_state(&ps.r, ps.a.watch_id),
			     ps.a.armed_state);
	assert_int_equal(rwt_raw_pending(&ps.r), 1);

	/* Parent lets go entirely; the child's fd keeps the monitor. */
	rwt_raw_close(&ps.r);
	assert_int_equal(rwt_modstats(&mid), 0);
	assert_int_equal(mid.monitors, base.monitors + 1);
	assert_int_equal(mid.watches, base.watches + 2);
	/* An invalidation for a monitor nobody in this mm can see. */
	assert_int_equal(madvise(ps.mem + RWT_PAGE, RWT_PAGE, MADV_DONTNEED),
			 0);
	assert_int_equal(munmap(ps.mem + RWT_PAGE, 7 * RWT_PAGE), 0);

	assert_int_equal(write(go[1], "x", 1), 1);
	close(go[1]);
	wait_child(pid, rep[0]);
	assert_int_equal(rwt_modstats(&end), 0);
	assert_int_equal(end.monitors, base.monitors);
	assert_int_equal(end.watches, base.watches);
	assert_int_equal(end.pages, base.pages);
}

/*
 * The opener exits while its child still holds the fd: the monitor's mm
 * is gone (RELEASE ran), the child still gets EIO, and its close frees
 * everything.
 */
static void test_opener_exits_first(void **state)
{
	struct rwt_modstats base, end;
	int rep[2];
	pid_t pid;

	(void)state;
	assert_int_equal(rwt_modstats(&base), 0);
	assert_int_equal(pipe(rep), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The opener. */
		struct parent_setup ps;
		int gone[2];
		pid_t gc;

		close(rep[0]);
		report_fd = rep[1];
		ps.mem = rwt_map_anon(8 * RWT_PAGE);
		CHILD_CHECK(rwt_raw_open(&ps.r, 0, 0, 0) == 0, "open");
		CHILD_CHECK(rwt_raw_watch(&ps.r, ps.mem, RWT_PAGE, 1, 0,
					  &ps.a) == 0, "watch");
		CHILD_CHECK(pipe(gone) == 0, "pipe");
		gc = fork();
		CHILD_CHECK(gc >= 0, "fork");
		if (gc == 0) {
			struct rwt_modstats ms;
			char c;

			/* EOF on gone: the opener has exited. */
			close(gone[1]);
			while (read(gone[0], &c, 1) > 0)
				;
			child_try_everything(ps.r.fd, NULL, ps.a.watch_id,
					     ps.mem);
			CHILD_CHECK(rwt_modstats(&ms) == 0, "debugfs");
			CHILD_CHECK(ms.monitors == base.monitors + 1,
				    "monitors %lld, expected %lld",
				    ms.monitors, base.monitors + 1);
			close(ps.r.fd);
			/* The opener's own file references (its mappings)
			 * go in its exit's task work, which may still run. */
			for (int i = 0; i < 100; i++) {
				CHILD_CHECK(rwt_modstats(&ms) == 0, "debugfs");
				if (ms.monitors == base.monitors)
					break;
				usleep(20000);
			}
			CHILD_CHECK(ms.monitors == base.monitors &&
				    ms.watches == base.watches &&
				    ms.pages == base.pages,
				    "after close: monitors %lld watches %lld "
				    "pages %lld, expected %lld %lld %lld",
				    ms.monitors, ms.watches, ms.pages,
				    base.monitors, base.watches, base.pages);
			_exit(0);
		}
		_exit(0);	/* exit with the monitor open and mapped */
	}
	close(rep[1]);
	/* rep reaches EOF once both the opener and its child are gone. */
	wait_child(pid, rep[0]);
	assert_int_equal(rwt_modstats(&end), 0);
	assert_int_equal(end.monitors, base.monitors);
	assert_int_equal(end.watches, base.watches);
	assert_int_equal(end.pages, base.pages);
}

/* ---- exec ------------------------------------------------------------ */

/* argv: --exec-probe FD MUST_BE_OPEN REPORT_FD */
static int exec_probe(int argc, char **argv)
{
	int fd, must_be_open;
	char path[64], target[256];
	ssize_t n;

	if (argc < 5)
		return 2;
	fd = atoi(argv[2]);
	must_be_open = atoi(argv[3]);
	report_fd = atoi(argv[4]);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	if (!must_be_open) {
		CHILD_CHECK(n < 0 || strcmp(target, REGWATCH_DEVICE),
			    "fd %d is still %s after exec with O_CLOEXEC",
			    fd, target);
		return 0;
	}
	CHILD_CHECK(n > 0 && !strcmp(target, REGWATCH_DEVICE),
		    "fd %d is not %s after exec (%s)", fd, REGWATCH_DEVICE,
		    n > 0 ? target : strerror(errno));
	struct regwatch_config cfg = {
		.shared_offset = 0, .shared_size = RWT_PAGE,
		.consumer_offset = 1ULL << 32, .consumer_size = RWT_PAGE,
	};
	/* A new image is a new mm: the monitor is not ours any more. */
	child_try_everything(fd, &cfg, 1ULL << 32, &cfg);
	return 0;
}

static void run_exec_child(int cloexec, int report)
{
	char self[4096], fdarg[16], openarg[4], reparg[16];
	struct regwatch_watch w;
	struct rwt_raw r;
	ssize_t n;

	report_fd = report;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	CHILD_CHECK(n > 0, "readlink /proc/self/exe");
	self[n] = 0;
	CHILD_CHECK(rwt_raw_open(&r, 0, 0, cloexec ? O_CLOEXEC : 0) == 0,
		    "open");
	CHILD_CHECK(rwt_raw_watch(&r, self, 1, 1, 0, &w) == 0, "watch");
	snprintf(fdarg, sizeof(fdarg), "%d", r.fd);
	snprintf(openarg, sizeof(openarg), "%d", !cloexec);
	snprintf(reparg, sizeof(reparg), "%d", report);
	/* The report pipe must survive the exec. */
	fcntl(report, F_SETFD, 0);
	execl(self, self, "--exec-probe", fdarg, openarg, reparg,
	      (char *)NULL);
	child_fail("exec: %s", strerror(errno));
}

static void exec_case(int cloexec)
{
	struct rwt_modstats base, end;
	int rep[2];
	pid_t pid;

	assert_int_equal(rwt_modstats(&base), 0);
	assert_int_equal(pipe(rep), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(rep[0]);
		run_exec_child(cloexec, rep[1]);
	}
	close(rep[1]);
	wait_child(pid, rep[0]);
	assert_int_equal(rwt_modstats(&end), 0);
	assert_int_equal(end.monitors, base.monitors);
	assert_int_equal(end.watches, base.watches);
}

static void test_exec_without_cloexec_gets_eio(void **state)
{
	(void)state;
	exec_case(0);
}

static void test_exec_with_cloexec_closes(void **state)
{
	(void)state;
	exec_case(1);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_child_gets_eio),
		cmocka_unit_test(test_child_library_calls),
		cmocka_unit_test(test_child_holds_last_reference),
		cmocka_unit_test(test_opener_exits_first),
		cmocka_unit_test(test_exec_without_cloexec_gets_eio),
		cmocka_unit_test(test_exec_with_cloexec_closes),
	};

	if (argc > 1 && !strcmp(argv[1], "--exec-probe"))
		return exec_probe(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
