// SPDX-License-Identifier: MIT
/*
 * Systematic fault injection into every regwatch entry point, for the
 * debug kernel (scripts/fault-inject.sh runs it in the debug guest).
 *
 * For each operation (open, CONFIG, mmap, WATCH, ...) and for n = 1, 2, ...
 * a fresh child process sets the operation up without faults, then writes
 * n to /proc/thread-self/fail-nth, so that the n-th fault-injection point
 * the operation's system call reaches (slab or page allocation: failslab,
 * fail_page_alloc) fails, runs the call and reads fail-nth back (0: the
 * fault was injected; otherwise the call has fewer than n points and the
 * operation is done). The first WATCH of a process inserts the first
 * interval notifier of its mm, so its points include the allocation in
 * mmu_notifier_register() under mmu_interval_notifier_insert().
 *
 * Each injected failure must
 *  - surface as -1 with a clean errno (ENOMEM; for a batch, per entry),
 *  - change nothing: the monitor's and the module's counters are as
 *    before, and the same call without a fault then succeeds,
 *  - leak nothing: after the child exits, the module-wide counters in
 *    /sys/kernel/debug/regwatch/stats are back to where they were (and
 *    kmemleak, KASAN, lockdep... are checked by the harness afterwards).
 * Needs failslab and fail_page_alloc set to count sleeping allocations
 * (ignore-gfp-wait=N; the script does that).
 *
 * Usage: fault_nth [-v] [-m MAX_N] [op...]   (default: every op)
 * Prints one line per op and ends with "N passed, N failed".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rwt_util.h"

/* Child exit codes. */
enum {
	R_CLEAN = 0,		/* injected, failed cleanly, nothing changed */
	R_ABSORBED = 1,		/* injected, the call still succeeded (fallback) */
	R_DONE = 2,		/* not injected: fewer than n points */
	R_SETUP = 3,		/* setup failed (no fault armed): cannot test */
	R_BAD = 4,		/* a contract broken: message on stderr */
};

static int verbose;
static int nth_fd = -1;

static void bad(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "    BAD: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

/* Arm: the n-th fault point this thread reaches fails. */
static int arm(int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%d", n);

	return pwrite(nth_fd, buf, (size_t)len, 0) == len ? 0 : -1;
}

/* Disarm; returns true if the armed fault was injected. */
static int disarm(void)
{
	char buf[16] = "";
	ssize_t len = pread(nth_fd, buf, sizeof(buf) - 1, 0);
	int left = len > 0 ? atoi(buf) : -1;

	if (pwrite(nth_fd, "0", 1, 0) != 1)
		return -1;
	return left == 0;
}

/*
 * With -v, mark each probe in the kernel log, so that the stack trace the
 * kernel prints for an injected fault (fault-injection verbose=2) can be
 * matched with the probe and its result.
 */
static void kmsg(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int fd, len;

	if (!verbose)
		return;
	va_start(ap, fmt);
	len = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (write(fd, buf, (size_t)len) < 0)
		len = 0;
	close(fd);
}

static struct regwatch_watch batch_w[8];
static struct regwatch_unwatch batch_u[8];

/*
 * Fault in what the call will touch in user space (stack, batch arrays):
 * after fork() these are copy-on-write, and a page fault inside the
 * armed window would take the injected failure instead of the module.
 */
static void prefault(void)
{
	volatile char stack[32768];
	size_t i;

	for (i = 0; i < sizeof(stack); i += 512)
		stack[i] = 0;
	memset(batch_w, 0, sizeof(batch_w));
	memset(batch_u, 0, sizeof(batch_u));
}

struct ctx {
	struct rwt_raw r;
	char *mem;		/* 64 pages of anonymous memory to watch */
	struct regwatch_watch w[8];
	int nw;
	int efd;
};

#define MEM_PAGES 64

static int watch_one(struct ctx *c, int page, unsigned int flags)
{
	struct regwatch_watch *w = &c->w[c->nw];
	int ret = rwt_raw_watch(&c->r, c->mem + page * RWT_PAGE, RWT_PAGE,
				(uint64_t)page, flags, w);

	if (!ret)
		c->nw++;
	return ret;
}

static int stats(struct ctx *c, struct regwatch_stats *st)
{
	return rwt_stats_fd(c->r.fd, st);
}

/* Counters an injected failure must not change. */
static int same_counters(const struct regwatch_stats *a,
			 const struct regwatch_stats *b)
{
	return a->watches == b->watches &&
	       a->oneshot_reserved == b->oneshot_reserved &&
	       a->events == b->events &&
	       a->module_monitors == b->module_monitors &&
	       a->module_watches == b->module_watches &&
	       a->module_pages == b->module_pages &&
	       a->user_watches == b->user_watches;
}

static void show_counters(const char *what, const struct regwatch_stats *s)
{
	fprintf(stderr, "    %s: watches %llu reserved %llu events %llu "
		"module monitors %llu watches %llu pages %llu user %llu\n",
		what, (unsigned long long)s->watches,
		(unsigned long long)s->oneshot_reserved,
		(unsigned long long)s->events,
		(unsigned long long)s->module_monitors,
		(unsigned long long)s->module_watches,
		(unsigned long long)s->module_pages,
		(unsigned long long)s->user_watches);
}

/* Full setup: open, CONFIG (small), mmap, eventfd, memory populated. */
static int setup_monitor(struct ctx *c)
{
	memset(c, 0, sizeof(*c));
	c->efd = -1;
	c->mem = rwt_map_anon(MEM_PAGES * RWT_PAGE);
	if (!c->mem)
		return -1;
	return rwt_raw_open(&c->r, 16, 64, O_NONBLOCK) ? -1 : 0;
}

/*
 * One operation: its setup (no fault armed) and the call under test,
 * which returns the system call's result (-1 and errno on failure).
 */
struct op {
	const char *name;
	int (*setup)(struct ctx *c);
	long (*call)(struct ctx *c);
	int checks_counters;	/* compare the monitor's STATS before/after */
};

static int setup_none(struct ctx *c)
{
	memset(c, 0, sizeof(*c));
	c->r.fd = -1;
	c->efd = -1;
	return 0;
}

static long call_open(struct ctx *c)
{
	c->r.fd = open(REGWATCH_DEVICE, O_RDWR | O_CLOEXEC);
	return c->r.fd < 0 ? -1 : 0;
}

static int setup_opened(struct ctx *c)
{
	setup_none(c);
	c->r.fd = open(REGWATCH_DEVICE, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	return c->r.fd < 0 ? -1 : 0;
}

static long call_config(struct ctx *c)
{
	return rwt_config(c->r.fd, 16, 64, &c->r.cfg) ? -1 : 0;
}

static long call_config_big(struct ctx *c)
{
	/* Several pages of ring and of state words. */
	return rwt_config(c->r.fd, 1024, 4096, &c->r.cfg) ? -1 : 0;
}

static int setup_configured(struct ctx *c)
{
	if (setup_opened(c))
		return -1;
	return rwt_config(c->r.fd, 16, 64, &c->r.cfg) ? -1 : 0;
}

static long call_mmap_shared(struct ctx *c)
{
	void *p = mmap(NULL, c->r.cfg.shared_size, PROT_READ, MAP_SHARED,
		       c->r.fd, (off_t)c->r.cfg.shared_offset);

	if (p == MAP_FAILED)
		return -1;
	c->r.shared = p;
	return 0;
}

static long call_mmap_consumer(struct ctx *c)
{
	void *p = mmap(NULL, c->r.cfg.consumer_size, PROT_READ | PROT_WRITE,
		       MAP_SHARED, c->r.fd, (off_t)c->r.cfg.consumer_offset);

	if (p == MAP_FAILED)
		return -1;
	c->r.cons = p;
	return 0;
}

static long call_watch(struct ctx *c)
{
	int ret = watch_one(c, c->nw, 0);

	if (ret)
		errno = -ret;
	return ret ? -1 : 0;
}

static long call_watch_streaming(struct ctx *c)
{
	int ret = watch_one(c, c->nw, REGWATCH_WATCH_STREAMING);

	if (ret)
		errno = -ret;
	return ret ? -1 : 0;
}

/* A monitor with one watch already: the mm's notifier is registered. */
static int setup_watching(struct ctx *c)
{
	if (setup_monitor(c))
		return -1;
	return watch_one(c, 0, 0) ? -1 : 0;
}

static long call_watchv(struct ctx *c)
{
	struct regwatch_batch b = {
		.entries = (uintptr_t)batch_w, .count = 8,
	};
	long ret;
	int i;

	memset(batch_w, 0, sizeof(batch_w));
	for (i = 0; i < 8; i++) {
		batch_w[i].addr = (uintptr_t)(c->mem + (8 + i) * RWT_PAGE);
		batch_w[i].len = RWT_PAGE;
		batch_w[i].cookie = 100 + i;
	}
	ret = rwt_ioctl(c->r.fd, REGWATCH_IOC_WATCHV, &b);
	if (ret < 0) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}

static int setup_watching4(struct ctx *c)
{
	int i;

	if (setup_monitor(c))
		return -1;
	for (i = 0; i < 4; i++)
		if (watch_one(c, i, 0))
			return -1;
	return 0;
}

static long call_unwatch(struct ctx *c)
{
	int ret = rwt_raw_unwatch(&c->r, c->w[0].watch_id);

	if (ret)
		errno = -ret;
	return ret ? -1 : 0;
}

static long call_unwatchv(struct ctx *c)
{
	struct regwatch_batch b = {
		.entries = (uintptr_t)batch_u, .count = 4,
	};
	long ret;
	int i;

	memset(batch_u, 0, sizeof(batch_u));
	for (i = 0; i < 4; i++)
		batch_u[i].watch_id = c->w[i].watch_id;
	ret = rwt_ioctl(c->r.fd, REGWATCH_IOC_UNWATCHV, &b);
	if (ret < 0) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}

static long call_set_eventfd(struct ctx *c)
{
	struct regwatch_eventfd e = { .fd = c->efd };
	long ret = rwt_ioctl(c->r.fd, REGWATCH_IOC_SET_EVENTFD, &e);

	if (ret < 0)
		errno = (int)-ret;
	return ret < 0 ? -1 : 0;
}

static int setup_eventfd(struct ctx *c)
{
	if (setup_watching(c))
		return -1;
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return c->efd < 0 ? -1 : 0;
}

static long call_stats(struct ctx *c)
{
	struct regwatch_stats st;
	int ret = stats(c, &st);

	if (ret)
		errno = -ret;
	return ret ? -1 : 0;
}

/* Two watched pages unmapped: two events in the ring. */
static int setup_fired(struct ctx *c)
{
	if (setup_eventfd(c) || watch_one(c, 1, 0))
		return -1;
	if (call_set_eventfd(c))
		return -1;
	return munmap(c->mem, 2 * RWT_PAGE);
}

static long call_read(struct ctx *c)
{
	struct regwatch_event ev[4];
	ssize_t n = read(c->r.fd, ev, sizeof(ev));

	return n < 0 ? -1 : n;
}

/* The invalidation path itself (munmap of watched pages). */
static long call_munmap(struct ctx *c)
{
	return munmap(c->mem, 4 * RWT_PAGE);
}

/* The release path: close with live watches and an eventfd. */
static long call_close(struct ctx *c)
{
	rwt_raw_close(&c->r);
	return 0;
}

static int setup_full(struct ctx *c)
{
	if (setup_eventfd(c) || watch_one(c, 1, REGWATCH_WATCH_STREAMING) ||
	    call_set_eventfd(c))
		return -1;
	return 0;
}

static const struct op ops[] = {
	{ "open", setup_none, call_open, 0 },
	{ "config", setup_opened, call_config, 0 },
	{ "config_big", setup_opened, call_config_big, 0 },
	{ "mmap_shared", setup_configured, call_mmap_shared, 1 },
	{ "mmap_consumer", setup_configured, call_mmap_consumer, 1 },
	{ "watch_first", setup_monitor, call_watch, 1 },
	{ "watch", setup_watching, call_watch, 1 },
	{ "watch_streaming", setup_watching, call_watch_streaming, 1 },
	{ "watchv", setup_watching, call_watchv, 0 },
	{ "unwatch", setup_watching4, call_unwatch, 0 },
	{ "unwatchv", setup_watching4, call_unwatchv, 0 },
	{ "set_eventfd", setup_eventfd, call_set_eventfd, 1 },
	{ "stats", setup_watching, call_stats, 1 },
	{ "read", setup_fired, call_read, 0 },
	{ "munmap", setup_watching4, call_munmap, 0 },
	{ "close", setup_full, call_close, 0 },
};

/* In the child: one probe of op at depth n. */
static int probe(const struct op *op, int n)
{
	struct regwatch_stats before, after;
	struct ctx c;
	long ret, ret2;
	int err, injected, have_before = 0;

	if (op->setup(&c)) {
		fprintf(stderr, "    %s: setup failed: %s\n", op->name,
			strerror(errno));
		return R_SETUP;
	}
	if (op->checks_counters && c.r.fd >= 0 && !stats(&c, &before))
		have_before = 1;
	prefault();
	kmsg("fault_nth: op=%s n=%d armed", op->name, n);
	if (arm(n)) {
		fprintf(stderr, "    cannot write fail-nth: %s\n", strerror(errno));
		return R_SETUP;
	}
	ret = op->call(&c);
	err = errno;
	injected = disarm();
	if (injected < 0)
		return R_SETUP;
	kmsg("fault_nth: op=%s n=%d injected=%d result=%ld errno=%d",
	     op->name, n, injected, ret, ret < 0 ? err : 0);
	if (!injected) {
		if (ret < 0) {
			bad("%s failed (%s) with no fault injected",
			    op->name, strerror(err));
			return R_BAD;
		}
		return R_DONE;
	}
	if (verbose)
		fprintf(stderr, "    %s n=%d: injected, result %ld%s%s\n",
			op->name, n, ret, ret < 0 ? " " : "",
			ret < 0 ? strerror(err) : "");

	/* Batches: entries fail one by one, each with its own result. */
	if (op->call == call_watchv || op->call == call_unwatchv) {
		struct regwatch_stats st;
		int i, ok = 0, total = op->call == call_watchv ? 8 : 4;

		if (ret < 0) {
			if (err != ENOMEM) {
				bad("%s: errno %s (want ENOMEM)", op->name,
				    strerror(err));
				return R_BAD;
			}
			return R_CLEAN;
		}
		for (i = 0; i < total; i++) {
			int r = op->call == call_watchv ? batch_w[i].result
							: batch_u[i].result;

			if (!r)
				ok++;
			else if (r != -ENOMEM) {
				bad("%s: entry %d result %d (want 0 or "
				    "-ENOMEM)", op->name, i, r);
				return R_BAD;
			}
		}
		if (ok != ret) {
			bad("%s returned %ld but %d entries succeeded",
			    op->name, ret, ok);
			return R_BAD;
		}
		if (stats(&c, &st))
			return R_SETUP;
		if (op->call == call_watchv &&
		    st.watches != (uint64_t)(c.nw + ok)) {
			bad("%s: %d ok of 8, monitor has %llu watches "
			    "(want %d)", op->name, ok,
			    (unsigned long long)st.watches, c.nw + ok);
			return R_BAD;
		}
		return ok == total ? R_ABSORBED : R_CLEAN;
	}

	if (ret >= 0)
		return R_ABSORBED;
	if (err != ENOMEM) {
		bad("%s: errno %d %s (want ENOMEM)", op->name, err,
		    strerror(err));
		return R_BAD;
	}
	/* Nothing changed. */
	if (have_before) {
		if (stats(&c, &after))
			return R_SETUP;
		if (!same_counters(&before, &after)) {
			bad("%s failed with ENOMEM but the counters moved",
			    op->name);
			show_counters("before", &before);
			show_counters("after ", &after);
			return R_BAD;
		}
	}
	/* And the same call now succeeds. */
	errno = 0;
	ret2 = op->call(&c);
	if (ret2 < 0) {
		bad("%s failed (%s) once, then again (%s) without a fault",
		    op->name, strerror(err), strerror(errno));
		return R_BAD;
	}
	return R_CLEAN;
}

static int counters_back(const struct rwt_modstats *base)
{
	struct rwt_modstats ms;
	int i;

	/* Released on the child's exit; allow deferred frees a moment. */
	for (i = 0; i < 100; i++) {
		if (!rwt_modstats(&ms) && ms.monitors == base->monitors &&
		    ms.watches == base->watches && ms.pages == base->pages)
			return 1;
		usleep(20000);
	}
	fprintf(stderr, "    module counters: monitors %lld watches %lld "
		"pages %lld (want %lld %lld %lld)\n", ms.monitors, ms.watches,
		ms.pages, base->monitors, base->watches, base->pages);
	return 0;
}

int main(int argc, char **argv)
{
	struct rwt_modstats base;
	int max_n = 400, opt, passed = 0, failed = 0;
	size_t i;

	while ((opt = getopt(argc, argv, "vm:")) != -1) {
		if (opt == 'v')
			verbose = 1;
		else if (opt == 'm')
			max_n = atoi(optarg);
		else {
			fprintf(stderr, "usage: %s [-v] [-m MAX_N] [op...]\n",
				argv[0]);
			return 2;
		}
	}
	nth_fd = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	if (nth_fd < 0) {
		perror("/proc/thread-self/fail-nth (CONFIG_FAULT_INJECTION)");
		return 2;
	}
	if (rwt_modstats(&base)) {
		fprintf(stderr, "no /sys/kernel/debug/regwatch/stats\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		const struct op *op = &ops[i];
		int n, clean = 0, absorbed = 0, broken = 0, done = 0;
		int k, selected = optind >= argc;

		for (k = optind; k < argc; k++)
			selected |= !strcmp(argv[k], op->name);
		if (!selected)
			continue;
		for (n = 1; n <= max_n && !done; n++) {
			pid_t pid;
			int status, rc;

			fflush(NULL);
			pid = fork();
			if (pid < 0) {
				perror("fork");
				return 2;
			}
			if (pid == 0) {
				/* The child's own thread: reopen fail-nth. */
				close(nth_fd);
				nth_fd = open("/proc/thread-self/fail-nth",
					      O_RDWR | O_CLOEXEC);
				_exit(nth_fd < 0 ? R_SETUP : probe(op, n));
			}
			if (waitpid(pid, &status, 0) != pid) {
				perror("waitpid");
				return 2;
			}
			rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
			if (rc < 0) {
				fprintf(stderr, "    %s n=%d: child killed by "
					"signal %d\n", op->name, n,
					WTERMSIG(status));
				rc = R_BAD;
			}
			if (!counters_back(&base)) {
				fprintf(stderr, "    BAD: %s n=%d: module "
					"counters not back after exit\n",
					op->name, n);
				rc = R_BAD;
			}
			switch (rc) {
			case R_CLEAN: clean++; break;
			case R_ABSORBED: absorbed++; break;
			case R_DONE: done = 1; break;
			case R_SETUP: done = -1; break;
			default: broken++; break;
			}
		}
		if (done == 1 && !broken) {
			passed++;
			printf("PASS: %-16s %3d fault points: %d failed "
			       "cleanly (ENOMEM, nothing changed, retry ok), "
			       "%d absorbed\n", op->name, n - 2, clean,
			       absorbed);
		} else {
			failed++;
			printf("FAIL: %-16s %s; %d broken of %d probes\n",
			       op->name,
			       done == 1 ? "probed every fault point" :
			       done < 0 ? "setup failed" :
			       "more fault points than -m allows",
			       broken, n - 1);
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
