// SPDX-License-Identifier: MIT
/*
 * UCX's registration cache (ucs_rcache) driven directly, linked with
 * libucs/libucm (not dlopen()ed as Open MPI does), with the UCX bridge
 * (build/libregwatch_ucm.so) preloaded as its only source of
 * VM_UNMAPPED events: main() starts the program again under the bridge
 * if it is not loaded yet.
 *
 * The "device" behind the cache behaves like a pinning NIC: each buffer
 * generation is a fresh memfd mapped MAP_SHARED, and registering it maps
 * a second view of the same file, which keeps the old pages after the
 * buffer is unmapped. A stale registration therefore reads the old bytes
 * through its view, exactly as rxe reads old pinned pages.
 *
 * Buffers live far below the area where the kernel places new mappings,
 * so the holes a munmap leaves are never handed to another thread's mmap
 * before the MAP_FIXED that follows.
 *
 * Helper threads never call cmocka: they count errors, the main thread
 * asserts.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include <ucm/api/ucm.h>
#include <ucs/memory/rcache.h>

#define BRIDGE_NAME	"libregwatch_ucm.so"
#define BUF		(16UL * 1024)
#define SLOT		(BUF + 64UL * 1024)	/* buffer + guard gap */
#define MAX_THREADS	8
#define AREA_HINT	((void *)0x200000000000UL)	/* 32 TiB */

static char *area;		/* MAX_THREADS slots, PROT_NONE until used */
static ucs_rcache_t *rcache;
static atomic_ulong n_reg, n_dereg;

static unsigned long iters(void)
{
	const char *s = getenv("UCX_RCACHE_TEST_ITERS");

	return s && atol(s) > 0 ? (unsigned long)atol(s) : 1000;
}

/* ---- the pinning device ---------------------------------------------- */

struct dev_region {
	ucs_rcache_region_t super;
	char *view;		/* what the device reads: the pages at reg time */
};

struct slot;
static int slot_fd(const struct slot *s, uintptr_t start, uintptr_t end);

/* arg: the slot being looked up; its buffer is one file mapped whole. */
static ucs_status_t dev_reg(void *ctx, ucs_rcache_t *rc, void *arg,
			    ucs_rcache_region_t *r, uint16_t flags)
{
	struct dev_region *d = (struct dev_region *)r;
	size_t len = r->super.end - r->super.start;
	int fd = slot_fd(arg, r->super.start, r->super.end);
	void *v;

	(void)ctx;
	(void)rc;
	(void)flags;
	if (fd < 0)
		return UCS_ERR_INVALID_PARAM;
	v = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (v == MAP_FAILED)
		return UCS_ERR_IO_ERROR;
	d->view = v;
	atomic_fetch_add(&n_reg, 1);
	return UCS_OK;
}

static void dev_dereg(void *ctx, ucs_rcache_t *rc, ucs_rcache_region_t *r)
{
	struct dev_region *d = (struct dev_region *)r;

	(void)ctx;
	(void)rc;
	munmap(d->view, r->super.end - r->super.start);
	atomic_fetch_add(&n_dereg, 1);
}

static void dev_dump(void *ctx, ucs_rcache_t *rc, ucs_rcache_region_t *r,
		     char *buf, size_t max)
{
	(void)ctx;
	(void)rc;
	snprintf(buf, max, "view %p", (void *)((struct dev_region *)r)->view);
}

static const ucs_rcache_ops_t dev_ops = {
	.mem_reg = dev_reg,
	.mem_dereg = dev_dereg,
	.dump_region = dev_dump,
};

static int setup(void **state)
{
	ucs_rcache_params_t p = {
		.region_struct_size = sizeof(struct dev_region),
		.alignment = 4096,
		.max_alignment = 4096,
		.ucm_events = UCM_EVENT_VM_UNMAPPED,
		.ucm_event_priority = 1000,
		.ops = &dev_ops,
		.flags = UCS_RCACHE_FLAG_NO_PFN_CHECK,
		.max_regions = ULONG_MAX,
		.max_size = SIZE_MAX,
		.max_unreleased = SIZE_MAX,
	};

	(void)state;
	area = mmap(AREA_HINT, MAX_THREADS * SLOT, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
		    MAP_FIXED_NOREPLACE, -1, 0);
	if (area == MAP_FAILED) {
		perror("reserve the buffer area");
		return -1;
	}
	if (ucs_rcache_create(&p, "regwatch-test", NULL, &rcache) != UCS_OK) {
		fprintf(stderr, "ucs_rcache_create failed (is VM_UNMAPPED external?)\n");
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (rcache)
		ucs_rcache_destroy(rcache);
	if (area != MAP_FAILED)
		munmap(area, MAX_THREADS * SLOT);
	return 0;
}

/* ---- one slot: map, register, reuse, check ---------------------------- */

enum reuse { REUSE_MUNMAP, REUSE_FIXED_OVER };

struct slot {
	char *p;
	int fd;			/* this generation's file, -1 if none */
	unsigned int tag;	/* distinguishes threads in the pattern */
	unsigned long stale, errors;
};

/* The slot's file, if [start, end) is exactly its buffer. */
static int slot_fd(const struct slot *s, uintptr_t start, uintptr_t end)
{
	if (!s || start != (uintptr_t)s->p || end != start + BUF)
		return -1;
	return s->fd;
}

static unsigned char pattern(const struct slot *s, unsigned long gen)
{
	return (unsigned char)(s->tag * 37 + gen * 11 + 1);
}

/* A fresh file mapped at the slot, filled for generation gen. */
static int map_fill(struct slot *s, unsigned long gen)
{
	void *p;

	s->fd = memfd_create("rcache-test", MFD_CLOEXEC);
	if (s->fd < 0)
		return -1;
	p = MAP_FAILED;
	if (!ftruncate(s->fd, BUF))
		p = mmap(s->p, BUF, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, s->fd, 0);
	if (p != s->p) {
		close(s->fd);
		s->fd = -1;
		return -1;
	}
	memset(s->p, pattern(s, gen), BUF);
	/* The pattern byte repeats every 256 generations: the number does not. */
	memcpy(s->p, &gen, sizeof(gen));
	return 0;
}

/* Look the buffer up in the cache and compare what the device would read
 * with what the buffer holds now. */
static void check(struct slot *s)
{
	ucs_rcache_region_t *r;

	if (ucs_rcache_get(rcache, s->p, BUF, PROT_READ | PROT_WRITE, s,
			   &r) != UCS_OK) {
		s->errors++;
	} else {
		if (memcmp(((struct dev_region *)r)->view, s->p, BUF))
			s->stale++;
		ucs_rcache_region_put(rcache, r);
	}
	/* The mappings keep the file. */
	close(s->fd);
	s->fd = -1;
}

/* gens generations at one slot: each one is released the given way and
 * the address reused at once, in this thread, then looked up. */
static void reuse_loop(struct slot *s, enum reuse how, unsigned long gens)
{
	unsigned long g;

	if (map_fill(s, 0)) {
		s->errors++;
		return;
	}
	check(s);
	for (g = 1; g <= gens; g++) {
		if (how == REUSE_MUNMAP && munmap(s->p, BUF)) {
			s->errors++;
			return;
		}
		if (map_fill(s, g)) {
			s->errors++;
			return;
		}
		check(s);
	}
	/* Leave the slot reserved, not a hole. */
	mmap(s->p, BUF, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
	     -1, 0);
}

static void run_single(enum reuse how)
{
	struct slot s = { .p = area, .fd = -1 };
	unsigned long regs0 = atomic_load(&n_reg), n = iters();

	reuse_loop(&s, how, n);
	printf("%lu reuses: %lu stale, %lu registrations\n", n, s.stale,
	       atomic_load(&n_reg) - regs0);
	assert_int_equal(s.errors, 0);
	assert_int_equal(s.stale, 0);
	/* Every generation was registered anew. */
	assert_true(atomic_load(&n_reg) - regs0 >= n + 1);
}

/* munmap, then mmap(MAP_FIXED) at the same address at once. */
static void test_rcache_munmap_reuse(void **state)
{
	(void)state;
	run_single(REUSE_MUNMAP);
}

/* mmap(MAP_FIXED) straight over the registered buffer. */
static void test_rcache_fixed_over_reuse(void **state)
{
	(void)state;
	run_single(REUSE_FIXED_OVER);
}

static void *reuse_thread(void *arg)
{
	struct slot *s = arg;

	reuse_loop(s, s->tag % 2 ? REUSE_FIXED_OVER : REUSE_MUNMAP,
		   iters() / 2);
	return NULL;
}

/* Several threads, one cache, each reusing its own slot: each thread's
 * invalidation reaches the cache before its own lookup. */
static void test_rcache_threads_reuse(void **state)
{
	enum { T = 4 };
	struct slot s[T];
	pthread_t th[T];
	unsigned long stale = 0, errors = 0;
	int i;

	(void)state;
	for (i = 0; i < T; i++) {
		s[i] = (struct slot){ .p = area + (i + 1) * SLOT, .fd = -1,
				     .tag = i + 1 };
		assert_int_equal(pthread_create(&th[i], NULL, reuse_thread,
						&s[i]), 0);
	}
	for (i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		stale += s[i].stale;
		errors += s[i].errors;
	}
	printf("%d threads x %lu reuses: %lu stale\n", T, iters() / 2, stale);
	assert_int_equal(errors, 0);
	assert_int_equal(stale, 0);
}

/* ---- the event source --------------------------------------------------- */

/* Set by the handler when a VM_UNMAPPED call covers [watch_lo, watch_hi). */
static atomic_ulong handler_calls, watch_lo, watch_hi, covered;

static void on_unmapped(ucm_event_type_t type, ucm_event_t *ev, void *arg)
{
	unsigned long a = (unsigned long)ev->vm_unmapped.address;

	(void)arg;
	if (type != UCM_EVENT_VM_UNMAPPED)
		return;
	atomic_fetch_add(&handler_calls, 1);
	if (a <= atomic_load(&watch_lo) &&
	    a + ev->vm_unmapped.size >= atomic_load(&watch_hi))
		atomic_store(&covered, 1);
}

/*
 * UCX's hooks are off (a program linked with libucs is started again by
 * the bridge), and the bridge's events reach a VM_UNMAPPED handler before
 * munmap returns: in this thread's signal handler or in the bridge's
 * eventfd thread, which consumes an event only after forwarding it.
 */
static void test_hooks_off_sync_event(void **state)
{
	const char *pre = getenv("LD_PRELOAD");
	char *p = area;
	int i;

	(void)state;
	/* valgrind delivers a signal at its next scheduling point, not on
	 * the return from the system call: run for its memory checks only. */
	if (pre && strstr(pre, "vgpreload")) {
		printf("under valgrind: signal delivery is deferred, skipped\n");
		skip();
	}
	assert_int_equal(ucm_global_opts.mmap_hook_mode, UCM_MMAP_HOOK_NONE);
	assert_false(ucm_global_opts.enable_malloc_hooks);
	assert_null(getenv("REGWATCH_UCM_RESTARTED"));
	assert_int_equal(ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, -1000,
					       on_unmapped, NULL), UCS_OK);
	atomic_store(&watch_lo, (unsigned long)p);
	atomic_store(&watch_hi, (unsigned long)p + BUF);
	for (i = 0; i < 100; i++) {
		assert_ptr_equal(mmap(p, BUF, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
				      -1, 0), p);
		memset(p, 1, BUF);
		atomic_store(&covered, 0);
		assert_int_equal(munmap(p, BUF), 0);
		if (!atomic_load(&covered))
			break;
	}
	mmap(p, BUF, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ucm_unset_event_handler(UCM_EVENT_VM_UNMAPPED, on_unmapped, NULL);
	assert_int_equal(i, 100);
}

/* ---- the bite: events declared external but never delivered ------------ */

/* Child mode: one reuse loop, a summary line, no cmocka. */
static int child_reuse(void)
{
	struct slot s = { .fd = -1 };

	if (setup(NULL))
		return 2;
	if (ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, -1000, on_unmapped,
				  NULL) != UCS_OK)
		return 2;
	s.p = area;
	reuse_loop(&s, REUSE_MUNMAP, 50);
	printf("child: 50 reuses, %lu stale, %lu errors, %lu events, hooks %s\n",
	       s.stale, s.errors, atomic_load(&handler_calls),
	       ucm_global_opts.mmap_hook_mode == UCM_MMAP_HOOK_NONE ? "off" : "on");
	fflush(stdout);
	teardown(NULL);
	return 0;
}

/* REGWATCH_UCM=declare: hooks off, VM_UNMAPPED external, nothing sent.
 * The cache must go stale, and nothing else may report the unmaps:
 * this is what the cases above would see without regwatch. */
static void test_bite_declare_goes_stale(void **state)
{
	unsigned long stale, errors, events;
	char line[256], hooks[8], exe[PATH_MAX];
	int fds[2], st;
	ssize_t n;
	FILE *f;
	pid_t pid;

	(void)state;
	/* The path, not /proc/self/exe: valgrind follows an exec of a path. */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = 0;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		setenv("REGWATCH_UCM", "declare", 1);
		execl(exe, exe, "--child-reuse", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	f = fdopen(fds[0], "r");
	assert_non_null(f);
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	printf("%s", line);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(sscanf(line, "child: 50 reuses, %lu stale, %lu errors, %lu events, hooks %7s",
				&stale, &errors, &events, hooks), 4);
	assert_int_equal(errors, 0);
	assert_string_equal(hooks, "off");
	assert_int_equal(events, 0);
	assert_true(stale >= 45);
}

/* ---- start under the bridge ------------------------------------------- */

static int find_bridge(struct dl_phdr_info *info, size_t size, void *arg)
{
	const char *n = strrchr(info->dlpi_name, '/');

	(void)size;
	(void)arg;
	return n && !strcmp(n + 1, BRIDGE_NAME);
}

/* Exec this program again with the bridge added to LD_PRELOAD (kept:
 * whatever is there, e.g. stdbuf's or a sanitizer runtime). The bridge
 * path: $REGWATCH_UCM_LIB, else build/ next to build/tests/guest/. */
static int start_under_bridge(char **argv)
{
	char exe[PATH_MAX], lib[PATH_MAX + 64], *pre;
	const char *old = getenv("LD_PRELOAD");
	ssize_t n;

	if (getenv("REGWATCH_UCM_LIB")) {
		snprintf(lib, sizeof(lib), "%s", getenv("REGWATCH_UCM_LIB"));
	} else {
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n < 0)
			return -1;
		exe[n] = 0;
		*strrchr(exe, '/') = 0;
		snprintf(lib, sizeof(lib), "%s/../../" BRIDGE_NAME, exe);
	}
	if (access(lib, R_OK)) {
		fprintf(stderr, "test_ucx_rcache: no bridge at %s (make ucx-bridge)\n", lib);
		return -1;
	}
	if (asprintf(&pre, "%s%s%s", old ? old : "", old ? " " : "", lib) < 0)
		return -1;
	setenv("LD_PRELOAD", pre, 1);
	free(pre);
	execv("/proc/self/exe", argv);
	perror("execv");
	return -1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hooks_off_sync_event),
		cmocka_unit_test(test_rcache_munmap_reuse),
		cmocka_unit_test(test_rcache_fixed_over_reuse),
		cmocka_unit_test(test_rcache_threads_reuse),
		cmocka_unit_test(test_bite_declare_goes_stale),
	};

	if (!dl_iterate_phdr(find_bridge, NULL))
		return start_under_bridge(argv) ? 1 : 0;
	if (argc > 1 && !strcmp(argv[1], "--child-reuse"))
		return child_reuse();
	return cmocka_run_group_tests(tests, setup, teardown);
}
