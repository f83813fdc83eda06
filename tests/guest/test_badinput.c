// SPDX-License-Identifier: MIT
/*
 * Bad input to every ioctl, one table per ioctl, raw ioctls on a monitor
 * opened with the library. After every refused call the monitor must be
 * exactly as before: same counters (own and module-wide), nothing queued,
 * the live watch still armed, the eventfd not signalled.
 *
 * Errnos the uapi header names are checked as named; where it names none
 * (abi_version mismatch, fd < -1 for SET_EVENTFD) either of two sensible
 * answers is accepted and the case says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "regwatch.h"
#include "rwt_util.h"

struct ctx {
	struct regwatch *rw;
	int fd;
	int efd;			/* eventfd registered on the monitor */
	char *mem;			/* 16 mapped pages, watched at page 0 */
	struct regwatch_ref live;	/* must survive every bad call */
	uint64_t stale_id;		/* was live once, now removed */
	void *none;			/* a PROT_NONE page */
	void *ro;			/* a read-only page */
	char *edge;			/* rw page followed by a PROT_NONE page */
	uint64_t top;			/* first address beyond user space */
};

static struct ctx C;

/* TASK_SIZE: 2^47 - 4 KiB with 4-level paging, 2^56 - 4 KiB with 5. */
static uint64_t user_top(void)
{
	void *hint = (void *)(1UL << 50);
	void *p = mmap(hint, RWT_PAGE, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == hint) {
		munmap(p, RWT_PAGE);
		return (1ULL << 56) - RWT_PAGE;
	}
	if (p != MAP_FAILED)
		munmap(p, RWT_PAGE);
	return (1ULL << 47) - RWT_PAGE;
}

static int setup(void **state)
{
	struct regwatch_ref tmp;
	char *two;

	(void)state;
	memset(&C, 0, sizeof(C));
	if (regwatch_open(NULL, &C.rw))
		return -1;
	C.fd = regwatch_fd(C.rw);
	C.mem = rwt_map_anon(16 * RWT_PAGE);
	C.none = mmap(NULL, RWT_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	C.ro = mmap(NULL, RWT_PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
	two = rwt_map_anon(2 * RWT_PAGE);
	if (!C.mem || C.none == MAP_FAILED || C.ro == MAP_FAILED || !two ||
	    mprotect(two + RWT_PAGE, RWT_PAGE, PROT_NONE))
		return -1;
	C.edge = two;
	C.top = user_top();
	if (regwatch_watch(C.rw, C.mem, RWT_PAGE, 1, 0, &C.live))
		return -1;
	if (regwatch_watch(C.rw, C.mem + RWT_PAGE, RWT_PAGE, 2, 0, &tmp) ||
	    regwatch_unwatch(C.rw, &tmp))
		return -1;
	C.stale_id = tmp.id;
	C.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (C.efd < 0 || regwatch_set_eventfd(C.rw, C.efd))
		return -1;
	fprintf(stderr, "user address space ends at %#llx\n",
		(unsigned long long)C.top);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	regwatch_close(C.rw);
	close(C.efd);
	munmap(C.mem, 16 * RWT_PAGE);
	munmap(C.none, RWT_PAGE);
	munmap(C.ro, RWT_PAGE);
	munmap(C.edge, 2 * RWT_PAGE);
	return 0;
}

/* ---- "nothing changed" -------------------------------------------- */

struct snap {
	struct regwatch_stats st;
	uint64_t pending;
};

static void snap_take(struct snap *s)
{
	assert_int_equal(regwatch_stats(C.rw, &s->st), 0);
	s->pending = regwatch_pending(C.rw);
}

/*
 * Failures are counted and printed, not fatal at once, so one run lists
 * every case that is wrong; each test ends with check_cases().
 */
static int case_failures;

#define CASE_FAIL(...) \
	do { print_error("FAILED CASE: " __VA_ARGS__); \
	     print_error("\n"); case_failures++; } while (0)

static void check_cases(void)
{
	int n = case_failures;

	case_failures = 0;
	if (n)
		fail_msg("%d case(s) failed, listed above", n);
}

static void snap_check(const struct snap *b, const char *name)
{
	struct snap a;
	uint64_t cnt;

	snap_take(&a);
#define SAME(f) \
	if (a.f != b->f) \
		CASE_FAIL("%s: " #f " changed from %llu to %llu", name, \
			  (unsigned long long)b->f, (unsigned long long)a.f)
	SAME(st.watches);
	SAME(st.oneshot_reserved);
	SAME(st.events);
	SAME(st.invalidations);
	SAME(st.module_monitors);
	SAME(st.module_watches);
	SAME(st.module_pages);
	SAME(st.user_watches);
	SAME(pending);
#undef SAME
	if (!regwatch_ref_valid(&C.live))
		CASE_FAIL("%s: the live watch is no longer armed", name);
	if (read(C.efd, &cnt, sizeof(cnt)) != -1 || errno != EAGAIN)
		CASE_FAIL("%s: the eventfd was signalled", name);
}

static void expect_err(const char *name, long ret, int err, int alt)
{
	if (ret == -err || (alt && ret == -alt))
		return;
	if (alt)
		CASE_FAIL("%s: got %ld (%s), expected -%s or -%s", name, ret,
			  ret < 0 ? strerror((int)-ret) : "success",
			  strerrorname_np(err), strerrorname_np(alt));
	else
		CASE_FAIL("%s: got %ld (%s), expected %s%s", name, ret,
			  ret < 0 ? strerror((int)-ret) : "success",
			  err ? "-" : "", err ? strerrorname_np(err) : "0");
}

/* ---- WATCH: every field, single and batch form --------------------- */

enum base { ABS, MEM, TOP };

struct watch_case {
	const char *name;
	enum base base;
	int64_t off;
	uint64_t len;
	uint32_t flags;
	uint64_t res0, res1;
	int err, alt;
};

static const struct watch_case watch_cases[] = {
	{ "len 0", MEM, 0, 0, 0, 0, 0, EINVAL, 0 },
	{ "len 0 at address 0", ABS, 0, 0, 0, 0, 0, EINVAL, 0 },
	{ "len 0, streaming", MEM, 5, 0, REGWATCH_WATCH_STREAMING, 0, 0,
	  EINVAL, 0 },
	{ "unknown flag bit 3", MEM, 0, RWT_PAGE, 1U << 3, 0, 0, EINVAL, 0 },
	{ "unknown flag bit 31", MEM, 0, RWT_PAGE, 1U << 31, 0, 0, EINVAL,
	  0 },
	{ "known + unknown flags", MEM, 0, RWT_PAGE,
	  REGWATCH_WATCH_FLAGS | 1U << 7, 0, 0, EINVAL, 0 },
	{ "reserved[0] != 0", MEM, 0, RWT_PAGE, 0, 1, 0, EINVAL, 0 },
	{ "reserved[1] != 0", MEM, 0, RWT_PAGE, 0, 0, 1ULL << 63, EINVAL,
	  0 },
	{ "wrap: last page + 2 pages", ABS, -(int64_t)RWT_PAGE,
	  2 * RWT_PAGE, 0, 0, 0, EOVERFLOW, 0 },
	{ "wrap: end exactly 2^64", ABS, -(int64_t)RWT_PAGE, RWT_PAGE, 0,
	  0, 0, EOVERFLOW, 0 },
	{ "wrap: len UINT64_MAX", MEM, 0, UINT64_MAX, 0, 0, 0, EOVERFLOW,
	  0 },
	{ "wrap: addr UINT64_MAX, len 1", ABS, -1, 1, 0, 0, 0, EOVERFLOW,
	  0 },
	{ "first page beyond user space", TOP, 0, RWT_PAGE, 0, 0, 0,
	  EFAULT, 0 },
	{ "straddles the end of user space", TOP, -(int64_t)RWT_PAGE,
	  2 * RWT_PAGE, 0, 0, 0, EFAULT, 0 },
	{ "one byte beyond user space", TOP, -1, 2, 0, 0, 0, EFAULT, 0 },
	{ "kernel address", ABS, (int64_t)0xffff800000000000ULL, RWT_PAGE,
	  0, 0, 0, EFAULT, 0 },
	{ "non-canonical address", ABS, 1LL << 62, 1, 0, 0, 0, EFAULT, 0 },
	{ "all of user space and more", ABS, 0, 1ULL << 62, 0, 0, 0,
	  EFAULT, 0 },
};

static uint64_t case_addr(const struct watch_case *wc)
{
	switch (wc->base) {
	case MEM:
		return (uintptr_t)C.mem + (uint64_t)wc->off;
	case TOP:
		return C.top + (uint64_t)wc->off;
	default:
		return (uint64_t)wc->off;
	}
}

static void fill_watch(const struct watch_case *wc, struct regwatch_watch *w)
{
	memset(w, 0, sizeof(*w));
	w->addr = case_addr(wc);
	w->len = wc->len;
	w->cookie = 0xbad;
	w->flags = wc->flags;
	w->reserved[0] = wc->res0;
	w->reserved[1] = wc->res1;
}

static void test_watch_fields(void **state)
{
	struct regwatch_watch w;
	struct snap s;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(watch_cases) / sizeof(watch_cases[0]); i++) {
		const struct watch_case *wc = &watch_cases[i];

		fill_watch(wc, &w);
		snap_take(&s);
		expect_err(wc->name, rwt_ioctl(C.fd, REGWATCH_IOC_WATCH, &w),
			   wc->err, wc->alt);
		snap_check(&s, wc->name);
	}
	check_cases();
}

/* The same requests as batch entries fail one by one, with the same
 * errno in result, and the call reports zero successes. */
static void test_watchv_entry_fields(void **state)
{
	size_t n = sizeof(watch_cases) / sizeof(watch_cases[0]), i;
	struct regwatch_watch w[sizeof(watch_cases) / sizeof(watch_cases[0])];
	struct regwatch_batch b = { .entries = (uintptr_t)w,
				    .count = (uint32_t)n };
	struct snap s;

	(void)state;
	for (i = 0; i < n; i++) {
		fill_watch(&watch_cases[i], &w[i]);
		w[i].result = 12345;	/* must be overwritten */
	}
	snap_take(&s);
	assert_int_equal(rwt_ioctl(C.fd, REGWATCH_IOC_WATCHV, &b), 0);
	snap_check(&s, "WATCHV of bad entries");
	for (i = 0; i < n; i++)
		expect_err(watch_cases[i].name, w[i].result,
			   watch_cases[i].err, watch_cases[i].alt);
	check_cases();
}

/* The edges that must be accepted: they pin down where the errors start. */
static void test_watch_edges_accepted(void **state)
{
	const struct {
		const char *name;
		uint64_t addr, len;
	} ok[] = {
		{ "last page of user space", C.top - RWT_PAGE, RWT_PAGE },
		{ "last byte of user space", C.top - 1, 1 },
		{ "unaligned, one byte", (uintptr_t)C.mem + 4095, 1 },
		{ "far from our mappings", (uintptr_t)C.none + RWT_PAGE * 1024,
		  RWT_PAGE },
		{ "page 0", 0, RWT_PAGE },
	};
	struct regwatch_watch w;
	struct regwatch_stats st;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		memset(&w, 0, sizeof(w));
		w.addr = ok[i].addr;
		w.len = ok[i].len;
		expect_err(ok[i].name, rwt_ioctl(C.fd, REGWATCH_IOC_WATCH, &w),
			   0, 0);
		assert_int_not_equal(w.watch_id, 0);
		assert_int_equal(regwatch_stats(C.rw, &st), 0);
		assert_int_equal(st.watches, 2);
		struct regwatch_unwatch u = { .watch_id = w.watch_id };
		assert_int_equal(rwt_ioctl(C.fd, REGWATCH_IOC_UNWATCH, &u), 0);
	}
	check_cases();
}

/* ---- UNWATCH -------------------------------------------------------- */

enum idkind { ID_ABS, ID_LIVE, ID_STALE, ID_LIVE_GEN_PLUS, ID_LIVE_GEN_MINUS };

struct unwatch_case {
	const char *name;
	enum idkind kind;
	uint64_t val;
	uint32_t pad;
	int err;
};

static const struct unwatch_case unwatch_cases[] = {
	{ "id 0", ID_ABS, 0, 0, ENOENT },
	{ "never issued (slot 0, generation 0x77)", ID_ABS, 0x77ULL << 32, 0,
	  ENOENT },
	{ "slot beyond max_watches", ID_ABS, 1ULL << 32 | 0xfffffff0, 0,
	  ENOENT },
	{ "generation 0", ID_ABS, 5, 0, ENOENT },
	{ "all ones", ID_ABS, UINT64_MAX, 0, ENOENT },
	{ "stale id", ID_STALE, 0, 0, ENOENT },
	{ "live slot, next generation", ID_LIVE_GEN_PLUS, 0, 0, ENOENT },
	{ "live slot, previous generation", ID_LIVE_GEN_MINUS, 0, 0, ENOENT },
	/* padding checked before anything is removed */
	{ "pad != 0 (live id)", ID_LIVE, 0, 1, EINVAL },
	{ "pad high bit (live id)", ID_LIVE, 0, 1U << 31, EINVAL },
};

static uint64_t case_id(const struct unwatch_case *uc)
{
	switch (uc->kind) {
	case ID_LIVE:
		return C.live.id;
	case ID_STALE:
		return C.stale_id;
	case ID_LIVE_GEN_PLUS:
		return C.live.id + (1ULL << 32);
	case ID_LIVE_GEN_MINUS:
		return C.live.id - (1ULL << 32);
	default:
		return uc->val;
	}
}

static void test_unwatch_ids(void **state)
{
	struct regwatch_unwatch u;
	struct snap s;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(unwatch_cases) / sizeof(unwatch_cases[0]);
	     i++) {
		const struct unwatch_case *uc = &unwatch_cases[i];

		memset(&u, 0, sizeof(u));
		u.watch_id = case_id(uc);
		u.pad = uc->pad;
		snap_take(&s);
		expect_err(uc->name, rwt_ioctl(C.fd, REGWATCH_IOC_UNWATCH, &u),
			   uc->err, 0);
		snap_check(&s, uc->name);
	}
	check_cases();
}

static void test_unwatchv_entry_ids(void **state)
{
	size_t n = sizeof(unwatch_cases) / sizeof(unwatch_cases[0]), i;
	struct regwatch_unwatch u[sizeof(unwatch_cases) /
				  sizeof(unwatch_cases[0])];
	struct regwatch_batch b = { .entries = (uintptr_t)u,
				    .count = (uint32_t)n };
	struct snap s;

	(void)state;
	for (i = 0; i < n; i++) {
		u[i].watch_id = case_id(&unwatch_cases[i]);
		u[i].pad = unwatch_cases[i].pad;
		u[i].result = 12345;
	}
	snap_take(&s);
	assert_int_equal(rwt_ioctl(C.fd, REGWATCH_IOC_UNWATCHV, &b), 0);
	snap_check(&s, "UNWATCHV of bad ids");
	for (i = 0; i < n; i++)
		expect_err(unwatch_cases[i].name, u[i].result,
			   unwatch_cases[i].err, 0);
	check_cases();
}

/* ---- whole-call errors: pointers, batch headers, SET_EVENTFD ------- */

struct call_case {
	const char *name;
	long (*call)(void);
	int err, alt;
};

static struct regwatch_watch good_watch(void)
{
	struct regwatch_watch w = {
		.addr = (uintptr_t)C.mem + 2 * RWT_PAGE,
		.len = RWT_PAGE,
	};

	return w;
}

/* A struct placed so that its last bytes fall into the PROT_NONE page. */
static void *straddling(size_t size)
{
	return C.edge + RWT_PAGE - size + 8;
}

static long watch_null(void)
{
	return rwt_ioctl(C.fd, REGWATCH_IOC_WATCH, NULL);
}

static long watch_none(void)
{
	return rwt_ioctl(C.fd, REGWATCH_IOC_WATCH, C.none);
}

static long watch_straddling(void)
{
	struct regwatch_watch w = good_watch();
	void *p = straddling(sizeof(w));

	memcpy(p, &w, sizeof(w) - 8);
	return rwt_ioctl(C.fd, REGWATCH_IOC_WATCH, p);
}

/* Valid request, but the answer cannot be written back: the watch the
 * kernel made must be taken back, or the caller leaks it unknowingly. */
static long watch_readonly(void)
{
	struct regwatch_watch w = good_watch();
	long ret;

	mprotect(C.ro, RWT_PAGE, PROT_READ | PROT_WRITE);
	memcpy(C.ro, &w, sizeof(w));
	mprotect(C.ro, RWT_PAGE, PROT_READ);
	ret = rwt_ioctl(C.fd, REGWATCH_IOC_WATCH, C.ro);
	return ret;
}

static long unwatch_null(void)
{
	return rwt_ioctl(C.fd, REGWATCH_IOC_UNWATCH, NULL);
}

static long unwatch_none(void)
{
	return rwt_ioctl(C.fd, REGWATCH_IOC_UNWATCH, C.none);
}

static long batch_call(unsigned long cmd, uint64_t entries, uint32_t count,
		       uint32_t flags)
{
	struct regwatch_batch b = {
		.entries = entries, .count = count, .flags = flags,
	};

	return rwt_ioctl(C.fd, cmd, &b);
}

static struct regwatch_watch wv[REGWATCH_BATCH_MAX + 1];

static long watchv_count0(void)
{
	wv[0] = good_watch();
	return batch_call(REGWATCH_IOC_WATCHV, (uintptr_t)wv, 0, 0);
}

static long watchv_count_max1(void)
{
	size_t i;

	for (i = 0; i <= REGWATCH_BATCH_MAX; i++)
		wv[i] = good_watch();
	return batch_call(REGWATCH_IOC_WATCHV, (uintptr_t)wv,
			  REGWATCH_BATCH_MAX + 1, 0);
}

static long watchv_count_huge(void)
{
	wv[0] = good_watch();
	return batch_call(REGWATCH_IOC_WATCHV, (uintptr_t)wv, UINT32_MAX, 0);
}

static long watchv_flags(void)
{
	wv[0] = good_watch();
	return batch_call(REGWATCH_IOC_WATCHV, (uintptr_t)wv, 1, 1);
}

static long watchv_flags_high(void)
{
	wv[0] = good_watch();
	return batch_call(REGWATCH_IOC_WATCHV, (uintptr_t)wv, 1, 1U << 31);
}

static long watchv_entries_null(void)
{
	return batch_call(REGWATCH_IOC_WATCHV, 0, 1, 0);
}

static long watchv_entries_none(void)
{
	return batch_call(REGWATCH_IOC_WATCHV, (uintptr_t)C.none, 1, 0);
}

static long watchv_entries_kernel(void)
{
	return batch_call(REGWATCH_IOC_WATCHV, 0xffff888000000000ULL, 1, 0);
}

/* The second entry lies in the PROT_NONE page. */
static long watchv_entries_straddling(void)
{
	struct regwatch_watch *w = (void *)(C.edge + RWT_PAGE -
					    sizeof(*w));

	*w = good_watch();
	return batch_call(REGWATCH_IOC_WATCHV, (uintptr_t)w, 2, 0);
}

/* Good entries, read-only array: results cannot be written back, so no
 * watch may remain ("the batch never half-succeeds silently"). */
static long watchv_entries_readonly(void)
{
	struct regwatch_watch w[3] = { good_watch(), good_watch(),
				       good_watch() };

	mprotect(C.ro, RWT_PAGE, PROT_READ | PROT_WRITE);
	memcpy(C.ro, w, sizeof(w));
	mprotect(C.ro, RWT_PAGE, PROT_READ);
	return batch_call(REGWATCH_IOC_WATCHV, (uintptr_t)C.ro, 3, 0);
}

static long watchv_null(void)
{
	return rwt_ioctl(C.fd, REGWATCH_IOC_WATCHV, NULL);
}

static struct regwatch_unwatch uv[REGWATCH_BATCH_MAX + 1];

static long unwatchv_count0(void)
{
	uv[0].watch_id = C.live.id;
	return batch_call(REGWATCH_IOC_UNWATCHV, (uintptr_t)uv, 0, 0);
}

static long unwatchv_count_max1(void)
{
	size_t i;

	for (i = 0; i <= REGWATCH_BATCH_MAX; i++)
		uv[i].watch_id = C.live.id;
	return batch_call(REGWATCH_IOC_UNWATCHV, (uintptr_t)uv,
			  REGWATCH_BATCH_MAX + 1, 0);
}

static long unwatchv_flags(void)
{
	uv[0].watch_id = C.live.id;
	return batch_call(REGWATCH_IOC_UNWATCHV, (uintptr_t)uv, 1, 4);
}

static long unwatchv_entries_null(void)
{
	return batch_call(REGWATCH_IOC_UNWATCHV, 0, 1, 0);
}

static long unwatchv_entries_none(void)
{
	return batch_call(REGWATCH_IOC_UNWATCHV, (uintptr_t)C.none, 1, 0);
}

/* The live id in a read-only array: it must not be removed when its
 * result cannot be reported. */
static long unwatchv_entries_readonly(void)
{
	struct regwatch_unwatch u = { .watch_id = C.live.id };

	mprotect(C.ro, RWT_PAGE, PROT_READ | PROT_WRITE);
	memcpy(C.ro, &u, sizeof(u));
	mprotect(C.ro, RWT_PAGE, PROT_READ);
	return batch_call(REGWATCH_IOC_UNWATCHV, (uintptr_t)C.ro, 1, 0);
}

static long unwatchv_null(void)
{
	return rwt_ioctl(C.fd, REGWATCH_IOC_UNWATCHV, NULL);
}

static long set_eventfd(int fd, uint32_t flags)
{
	struct regwatch_eventfd e = { .fd = fd, .flags = flags };

	return rwt_ioctl(C.fd, REGWATCH_IOC_SET_EVENTFD, &e);
}

static long efd_flags(void)
{
	return set_eventfd(C.efd, 1);
}

static long efd_pipe(void)
{
	int p[2];
	long ret;

	assert_int_equal(pipe(p), 0);
	ret = set_eventfd(p[0], 0);
	close(p[0]);
	close(p[1]);
	return ret;
}

static long efd_self(void)
{
	return set_eventfd(C.fd, 0);
}

static long efd_closed(void)
{
	int fd = eventfd(0, 0);

	close(fd);
	return set_eventfd(fd, 0);
}

static long efd_huge(void)
{
	return set_eventfd(INT_MAX, 0);
}

static long efd_minus2(void)
{
	return set_eventfd(-2, 0);
}

static long efd_null(void)
{
	return rwt_ioctl(C.fd, REGWATCH_IOC_SET_EVENTFD, NULL);
}

static long stats_call(uint32_t size, uint32_t pad)
{
	static uint64_t buf[64];
	struct regwatch_stats *st = (void *)buf;

	memset(buf, 0, sizeof(buf));
	st->size = size;
	st->pad = pad;
	return rwt_ioctl(C.fd, REGWATCH_IOC_STATS, buf);
}

static long stats_size0(void)
{
	return stats_call(0, 0);
}

static long stats_size4(void)
{
	return stats_call(4, 0);
}

static long stats_pad(void)
{
	return stats_call(sizeof(struct regwatch_stats), 1);
}

static long stats_huge(void)
{
	static uint64_t buf[64];
	struct regwatch_stats *st = (void *)buf;

	memset(buf, 0, sizeof(buf));
	st->size = 1U << 20;	/* over the one-page bound */
	return rwt_ioctl(C.fd, REGWATCH_IOC_STATS, buf);
}

static long stats_null(void)
{
	return rwt_ioctl(C.fd, REGWATCH_IOC_STATS, NULL);
}

/* A readable size field, but the answer cannot be written back. */
static long stats_readonly(void)
{
	struct regwatch_stats st = { .size = sizeof(st) };

	mprotect(C.ro, RWT_PAGE, PROT_READ | PROT_WRITE);
	memcpy(C.ro, &st, sizeof(st));
	mprotect(C.ro, RWT_PAGE, PROT_READ);
	return rwt_ioctl(C.fd, REGWATCH_IOC_STATS, C.ro);
}

static long set_signal(int signo, uint32_t flags, uint64_t r0, uint64_t r1)
{
	struct regwatch_signal sg = {
		.signo = signo, .flags = flags, .reserved = { r0, r1 },
	};

	return rwt_ioctl(C.fd, REGWATCH_IOC_SET_SIGNAL, &sg);
}

static long sig_negative(void)
{
	return set_signal(-1, 0, 0, 0);
}

static long sig_int_min(void)
{
	return set_signal(INT_MIN, 0, 0, 0);
}

static long sig_above_nsig(void)
{
	return set_signal(65, 0, 0, 0);	/* _NSIG is 64 on x86 */
}

static long sig_int_max(void)
{
	return set_signal(INT_MAX, 0, 0, 0);
}

static long sig_kill(void)
{
	return set_signal(SIGKILL, 0, 0, 0);
}

static long sig_stop(void)
{
	return set_signal(SIGSTOP, 0, 0, 0);
}

static long sig_flags(void)
{
	return set_signal(SIGUSR1, 1, 0, 0);
}

static long sig_flags_high(void)
{
	return set_signal(SIGUSR1, 1U << 31, 0, 0);
}

static long sig_reserved0(void)
{
	return set_signal(SIGUSR1, 0, 1, 0);
}

static long sig_reserved1(void)
{
	return set_signal(SIGUSR1, 0, 0, 1ULL << 63);
}

static long sig_null(void)
{
	return rwt_ioctl(C.fd, REGWATCH_IOC_SET_SIGNAL, NULL);
}

static long sig_unreadable(void)
{
	return rwt_ioctl(C.fd, REGWATCH_IOC_SET_SIGNAL, C.none);
}

static long sig_straddling(void)
{
	struct regwatch_signal sg = { .signo = SIGUSR1 };
	void *p = straddling(sizeof(sg));

	memcpy(p, &sg, sizeof(sg) - 8);
	return rwt_ioctl(C.fd, REGWATCH_IOC_SET_SIGNAL, p);
}

/* fd < -1 is not named by the uapi: EINVAL or EBADF. */
static const struct call_case call_cases[] = {
	{ "WATCH NULL", watch_null, EFAULT, 0 },
	{ "WATCH unreadable", watch_none, EFAULT, 0 },
	{ "WATCH straddling a PROT_NONE page", watch_straddling, EFAULT, 0 },
	{ "WATCH answer not writable", watch_readonly, EFAULT, 0 },
	{ "UNWATCH NULL", unwatch_null, EFAULT, 0 },
	{ "UNWATCH unreadable", unwatch_none, EFAULT, 0 },
	{ "WATCHV count 0", watchv_count0, EINVAL, 0 },
	{ "WATCHV count BATCH_MAX + 1", watchv_count_max1, EINVAL, 0 },
	{ "WATCHV count UINT32_MAX", watchv_count_huge, EINVAL, 0 },
	{ "WATCHV flags 1", watchv_flags, EINVAL, 0 },
	{ "WATCHV flags bit 31", watchv_flags_high, EINVAL, 0 },
	{ "WATCHV entries NULL", watchv_entries_null, EFAULT, 0 },
	{ "WATCHV entries unreadable", watchv_entries_none, EFAULT, 0 },
	{ "WATCHV entries kernel address", watchv_entries_kernel, EFAULT, 0 },
	{ "WATCHV second entry unreadable", watchv_entries_straddling,
	  EFAULT, 0 },
	{ "WATCHV results not writable", watchv_entries_readonly, EFAULT, 0 },
	{ "WATCHV NULL", watchv_null, EFAULT, 0 },
	{ "UNWATCHV count 0", unwatchv_count0, EINVAL, 0 },
	{ "UNWATCHV count BATCH_MAX + 1", unwatchv_count_max1, EINVAL, 0 },
	{ "UNWATCHV flags 4", unwatchv_flags, EINVAL, 0 },
	{ "UNWATCHV entries NULL", unwatchv_entries_null, EFAULT, 0 },
	{ "UNWATCHV entries unreadable", unwatchv_entries_none, EFAULT, 0 },
	{ "UNWATCHV results not writable", unwatchv_entries_readonly, EFAULT,
	  0 },
	{ "UNWATCHV NULL", unwatchv_null, EFAULT, 0 },
	{ "SET_EVENTFD flags 1", efd_flags, EINVAL, 0 },
	{ "SET_EVENTFD a pipe", efd_pipe, EINVAL, 0 },
	{ "SET_EVENTFD the regwatch fd", efd_self, EINVAL, 0 },
	{ "SET_EVENTFD a closed fd", efd_closed, EBADF, 0 },
	{ "SET_EVENTFD INT_MAX", efd_huge, EBADF, 0 },
	{ "SET_EVENTFD -2", efd_minus2, EINVAL, EBADF },
	{ "SET_EVENTFD NULL", efd_null, EFAULT, 0 },
	{ "STATS size 0", stats_size0, EINVAL, 0 },
	{ "STATS size 4", stats_size4, EINVAL, 0 },
	{ "STATS pad != 0", stats_pad, EINVAL, 0 },
	{ "STATS size over a page", stats_huge, E2BIG, 0 },
	{ "STATS NULL", stats_null, EFAULT, 0 },
	{ "STATS read-only buffer", stats_readonly, EFAULT, 0 },
	{ "SET_SIGNAL -1", sig_negative, EINVAL, 0 },
	{ "SET_SIGNAL INT_MIN", sig_int_min, EINVAL, 0 },
	{ "SET_SIGNAL _NSIG + 1", sig_above_nsig, EINVAL, 0 },
	{ "SET_SIGNAL INT_MAX", sig_int_max, EINVAL, 0 },
	{ "SET_SIGNAL SIGKILL", sig_kill, EINVAL, 0 },
	{ "SET_SIGNAL SIGSTOP", sig_stop, EINVAL, 0 },
	{ "SET_SIGNAL flags 1", sig_flags, EINVAL, 0 },
	{ "SET_SIGNAL flags bit 31", sig_flags_high, EINVAL, 0 },
	{ "SET_SIGNAL reserved[0]", sig_reserved0, EINVAL, 0 },
	{ "SET_SIGNAL reserved[1]", sig_reserved1, EINVAL, 0 },
	{ "SET_SIGNAL NULL", sig_null, EFAULT, 0 },
	{ "SET_SIGNAL unreadable", sig_unreadable, EFAULT, 0 },
	{ "SET_SIGNAL straddling a PROT_NONE page", sig_straddling, EFAULT,
	  0 },
};

static void test_call_errors(void **state)
{
	struct snap s;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(call_cases) / sizeof(call_cases[0]); i++) {
		snap_take(&s);
		expect_err(call_cases[i].name, call_cases[i].call(),
			   call_cases[i].err, call_cases[i].alt);
		snap_check(&s, call_cases[i].name);
	}
	check_cases();
}

/*
 * Last: after every refused SET_EVENTFD the registered eventfd is still
 * the one signalled, and the live watch still fires.
 */
static void test_eventfd_survives_bad_calls(void **state)
{
	uint64_t cnt = 0;

	(void)state;
	assert_true(regwatch_ref_valid(&C.live));
	/* No refused SET_SIGNAL turned a signal on (SIGUSR1 would kill). */
	assert_int_equal(madvise(C.mem, RWT_PAGE, MADV_DONTNEED), 0);
	assert_false(regwatch_ref_valid(&C.live));
	assert_int_equal(read(C.efd, &cnt, sizeof(cnt)), sizeof(cnt));
	assert_true(cnt >= 1);
	struct regwatch_stats st;
	assert_int_equal(regwatch_stats(C.rw, &st), 0);
	assert_int_equal(st.signals, 0);
}

/* SET_SIGNAL's edges that must be accepted; left off again. */
static void test_set_signal_accepted(void **state)
{
	static const int ok[] = { 0, 1, SIGUSR1, SIGSEGV, 64, 0 };
	struct snap s;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snap_take(&s);
		expect_err("SET_SIGNAL accepted", set_signal(ok[i], 0, 0, 0),
			   0, 0);
		snap_check(&s, "SET_SIGNAL accepted");
	}
	check_cases();
}

/* ---- STATS and CONFIG sizes that must work ------------------------- */

static void test_stats_sizes_accepted(void **state)
{
	uint64_t buf[64];
	struct regwatch_stats *st = (void *)buf;
	size_t i;

	(void)state;
	/* Older, shorter struct: only its bytes are written. */
	memset(buf, 0xee, sizeof(buf));
	st->size = 16;
	st->pad = 0;
	assert_int_equal(rwt_ioctl(C.fd, REGWATCH_IOC_STATS, buf), 0);
	assert_int_equal(st->watches, 1);
	for (i = 16; i < sizeof(buf); i++)
		assert_int_equal(((unsigned char *)buf)[i], 0xee);

	/* Newer, longer struct: accepted, what this kernel lacks reads 0. */
	memset(buf, 0xee, sizeof(buf));
	st->size = sizeof(*st) + 64;
	st->pad = 0;
	assert_int_equal(rwt_ioctl(C.fd, REGWATCH_IOC_STATS, buf), 0);
	assert_int_equal(st->watches, 1);
	assert_int_equal(st->module_monitors >= 1, 1);
	for (i = sizeof(*st); i < sizeof(*st) + 64; i++)
		assert_int_equal(((unsigned char *)buf)[i], 0);
}

struct config_case {
	const char *name;
	uint32_t size;
	uint32_t abi;
	uint64_t flags;
	int reserved;		/* index + 1 of a reserved word set to 1 */
	int tail;		/* bytes of tail beyond the struct */
	bool dirty_tail;
	int err, alt;
};

#define CFGSZ ((uint32_t)sizeof(struct regwatch_config))
#define OLDSZ ((uint32_t)offsetof(struct regwatch_config, reserved))

static const struct config_case config_cases[] = {
	{ "size 0", 0, 1, 0, 0, 0, false, EINVAL, 0 },
	{ "size 8", 8, 1, 0, 0, 0, false, EINVAL, 0 },
	{ "size cuts the out fields", 24, 1, 0, 0, 0, false, EINVAL, 0 },
	{ "longer, non-zero tail", CFGSZ + 8, 1, 0, 0, 8, true, E2BIG, 0 },
	{ "much longer, non-zero tail", CFGSZ + 3000, 1, 0, 0, 3000, true,
	  E2BIG, 0 },
	{ "flags 1", CFGSZ, 1, 1, 0, 0, false, EINVAL, 0 },
	{ "flags bit 63", CFGSZ, 1, 1ULL << 63, 0, 0, false, EINVAL, 0 },
	{ "reserved[0]", CFGSZ, 1, 0, 1, 0, false, EINVAL, 0 },
	{ "reserved[3]", CFGSZ, 1, 0, 4, 0, false, EINVAL, 0 },
	/* not named by the uapi; EPROTO is what the module uses */
	{ "abi_version 0", CFGSZ, 0, 0, 0, 0, false, EPROTO, EINVAL },
	{ "abi_version 2", CFGSZ, 2, 0, 0, 0, false, EPROTO, EINVAL },
	/* accepted forms */
	{ "older struct without reserved", OLDSZ, 1, 0, 0, 0, false, 0, 0 },
	{ "longer, zero tail", CFGSZ + 8, 1, 0, 0, 8, false, 0, 0 },
	{ "much longer, zero tail", CFGSZ + 3000, 1, 0, 0, 3000, false, 0,
	  0 },
};

/* Each case on a fresh fd: a refused CONFIG must leave it configurable,
 * and must not have allocated anything. */
static void test_config_fields(void **state)
{
	static uint64_t buf[1024];
	struct regwatch_config *cfg = (void *)buf, ok;
	struct rwt_modstats before, after;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(config_cases) / sizeof(config_cases[0]); i++) {
		const struct config_case *cc = &config_cases[i];
		int fd = rwt_open_fd(O_CLOEXEC);

		assert_true(fd >= 0);
		memset(buf, 0, sizeof(buf));
		cfg->size = cc->size;
		cfg->abi_version = cc->abi;
		cfg->flags = cc->flags;
		if (cc->reserved)
			cfg->reserved[cc->reserved - 1] = 1;
		if (cc->dirty_tail)
			((char *)buf)[CFGSZ + cc->tail - 1] = 1;
		assert_int_equal(rwt_modstats(&before), 0);
		expect_err(cc->name, rwt_ioctl(fd, REGWATCH_IOC_CONFIG, buf),
			   cc->err, cc->alt);
		assert_int_equal(rwt_modstats(&after), 0);
		if (cc->err) {
			if (after.pages != before.pages)
				CASE_FAIL("%s: pages %lld -> %lld", cc->name,
					  before.pages, after.pages);
			if (rwt_config(fd, 0, 0, &ok))
				CASE_FAIL("%s: fd not configurable after it",
					  cc->name);
		} else if (cfg->abi_version != 1 || !cfg->ring_entries ||
			   !cfg->shared_size ||
			   /* a tail we sent is not written over */
			   (cc->tail && ((char *)buf)[CFGSZ]) ||
			   rwt_config(fd, 0, 0, &ok) != -EBUSY) {
			CASE_FAIL("%s: accepted, but answered wrongly",
				  cc->name);
		}
		close(fd);
	}
	check_cases();
}

/* CONFIG whose answer cannot be written back: refused, nothing kept. */
static void test_config_bad_pointers(void **state)
{
	struct regwatch_config ok, *ro = C.ro;
	struct rwt_modstats before, after;
	int fd = rwt_open_fd(O_CLOEXEC);

	(void)state;
	assert_int_equal(rwt_modstats(&before), 0);
	assert_int_equal(rwt_ioctl(fd, REGWATCH_IOC_CONFIG, NULL), -EFAULT);
	assert_int_equal(rwt_ioctl(fd, REGWATCH_IOC_CONFIG, C.none), -EFAULT);
	mprotect(C.ro, RWT_PAGE, PROT_READ | PROT_WRITE);
	memset(ro, 0, sizeof(*ro));
	ro->size = sizeof(*ro);
	ro->abi_version = REGWATCH_ABI_VERSION;
	mprotect(C.ro, RWT_PAGE, PROT_READ);
	assert_int_equal(rwt_ioctl(fd, REGWATCH_IOC_CONFIG, ro), -EFAULT);
	assert_int_equal(rwt_modstats(&after), 0);
	assert_int_equal(after.pages, before.pages);
	/* not configured by any of that */
	struct regwatch_watch w = good_watch();
	assert_int_equal(rwt_ioctl(fd, REGWATCH_IOC_WATCH, &w), -EBADFD);
	assert_int_equal(rwt_config(fd, 0, 0, &ok), 0);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_watch_fields),
		cmocka_unit_test(test_watchv_entry_fields),
		cmocka_unit_test(test_watch_edges_accepted),
		cmocka_unit_test(test_unwatch_ids),
		cmocka_unit_test(test_unwatchv_entry_ids),
		cmocka_unit_test(test_call_errors),
		cmocka_unit_test(test_set_signal_accepted),
		cmocka_unit_test(test_stats_sizes_accepted),
		cmocka_unit_test(test_config_fields),
		cmocka_unit_test(test_config_bad_pointers),
		cmocka_unit_test(test_eventfd_survives_bad_calls),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
