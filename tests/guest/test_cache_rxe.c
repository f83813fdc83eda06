// SPDX-License-Identifier: MIT
/*
 * The registration cache, proven on Soft-RoCE: libregwatch's cache with
 * its ibverbs backend (ibv_reg_mr on rxe0), RDMA through a loopback RC QP,
 * and every transfer checked byte for byte against what the CPU sees.
 *
 * An RDMA READ through a registration reads the pages the registration
 * pinned. Once the memory behind an address is replaced (munmap and
 * mmap again, free and malloc, realloc, madvise DONTNEED) those are no
 * longer the process's pages, and a cache that hands the old registration
 * out again makes the NIC send stale bytes. Each scenario replaces the
 * memory under a cached registration, writes new bytes with the CPU, gets
 * the range from the cache again and reads it back over RDMA.
 *
 * Cases (normal run; the monitor is REGWATCH_MONITOR's, auto = kernel):
 *  classic_munmap_map_fixed  munmap + mmap(MAP_FIXED), and MAP_FIXED over
 *                            the live mapping: a miss, an UNMAP
 *                            invalidation, the new bytes
 *  inflight_invalidation     the same while a transfer holds the old
 *                            entry: the holder's registration keeps
 *                            reading the pages it pinned, a new get
 *                            registers anew, the last put deregisters
 *  malloc_free_mmapped       glibc: free + malloc of a mmapped block
 *                            (M_MMAP_THRESHOLD fixed: the address comes back)
 *  malloc_free_brk_trim      glibc: free of the top heap block trims the
 *                            heap (brk shrinks), malloc grows it again
 *  realloc_mremap            realloc shrink + grow in place (mremap), and a
 *                            growth that moves, then the old address reused
 *  madvise_dontneed          DONTNEED of part of a buffer (as jemalloc
 *                            purges), rewritten: a CLEAR invalidation
 *  fork                      the child's cache returns -ECHILD (hit and miss
 *                            path); the parent's transfers carry the
 *                            parent's bytes before, during and after the
 *                            child's life (checks data, not events)
 *  migration                 move_pages of a registered buffer to the other
 *                            NUMA node (rxe pins: pages stay), then after
 *                            the cache released it (pages move)
 *  random_differential       REGWATCH_CACHE_OPS (2000) random operations
 *                            over a pool of slots, a second thread doing the
 *                            same on its own slots, occasional forks; every
 *                            write is followed by an RDMA READ through the
 *                            cache, compared byte for byte. The seed is
 *                            printed; REGWATCH_SEED=n replays the main
 *                            thread's sequence.
 *  none_monitor_reads_stale  EXPECTED FAILURE: the classic scenario with
 *                            the none monitor; passes when the RDMA READ
 *                            returns the OLD bytes (the test bites)
 *  uffd_unprivileged_*       the userfaultfd monitor as uid 65534 (so
 *                            UFFD_USER_MODE_ONLY, Debian's
 *                            vm.unprivileged_userfaultfd=0), each in a
 *                            child that raised RLIMIT_MEMLOCK and dropped
 *                            privileges: munmap + MAP_FIXED, malloc/free
 *                            of mmapped blocks, DONTNEED, brk trim,
 *                            realloc (mremap), i.e. what it claims to see
 *
 * `test_cache_rxe --expect-stale` (or REGWATCH_EXPECT_STALE=1, or
 * REGWATCH_MONITOR=none) runs the scenarios and the random test with the
 * none monitor and turns the expectation around: each scenario that
 * replaces memory must observe stale bytes, the random test must find
 * some; so exit status 0 there proves every check bites.
 *
 * The uffd monitor wakes the unmapping thread before its reader thread
 * has marked the watch (documented in regwatch_cache.h), so with it the
 * scenarios wait for regwatch_cache_fd() to become readable after an
 * unmap before reusing the address, as an event loop would; the random
 * test, which cannot, is skipped with it (REGWATCH_MONITOR=uffd).
 *
 * Knobs: REGWATCH_CACHE_OPS (2000), REGWATCH_CACHE_THREAD_OPS (half of
 * that; 0: no second thread), REGWATCH_CACHE_SECONDS (45, time budget of
 * the random test), REGWATCH_SEED.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <malloc.h>
#include <numa.h>
#include <numaif.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "bytes_util.h"
#include "regwatch_cache.h"
#include "regwatch_ibverbs.h"
#include "rwt_util.h"
#include "rxe_util.h"

#define PAGE		RWT_PAGE
#define SINK_HALF	(2UL << 20)	/* per thread; the largest transfer */
#define SRC_BYTES	(2UL << 20)
#define RDMA_MS		20000
#define POISON		0xee		/* the sink before every READ */
#define NOBODY		65534
#define UVERBS		"/dev/infiniband/uverbs0"
#define ACC		(REGWATCH_CACHE_ACCESS_LOCAL_WRITE | \
			 REGWATCH_CACHE_ACCESS_REMOTE_READ | \
			 REGWATCH_CACHE_ACCESS_REMOTE_WRITE)
/* glibc settings (main): fixed thresholds, so that mmapped blocks come
 * back at the same address and free() trims the brk heap. */
#define MMAP_THRESHOLD	(128UL << 10)
#define TRIM_THRESHOLD	(64UL << 10)

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* ---- checks that work in cmocka and in forked children ------------------ */

static bool in_child;	/* a forked child: no cmocka, report and _exit(1) */

static void check_failed(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: %s", file, line, in_child ? "(child) " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (in_child)
		_exit(1);
	_fail(file, line);
}

#define CHECK(cond, ...)						\
	do {								\
		if (!(cond))						\
			check_failed(__FILE__, __LINE__, __VA_ARGS__);	\
	} while (0)

static const char *err(int rc)
{
	return strerror(rc < 0 ? -rc : rc);
}

static long env_long(const char *name, long dflt)
{
	const char *s = getenv(name);

	return s && *s ? strtol(s, NULL, 0) : dflt;
}

/* ---- the RDMA rig: a loopback QP, a sink per thread, a source ----------- */

struct rig {
	struct rxeu rx;
	char *sink;		/* 2 * SINK_HALF: one half per thread */
	struct ibv_mr *sink_mr;
	char *src;
	struct ibv_mr *src_mr;
	pthread_mutex_t lock;	/* one QP and CQ: one transfer at a time */
};

static struct rig rig;

static void rig_close(struct rig *r)
{
	rxeu_dereg(r->sink_mr);
	rxeu_dereg(r->src_mr);
	rxeu_close(&r->rx);
	if (r->sink)
		munmap(r->sink, 2 * SINK_HALF);
	if (r->src)
		munmap(r->src, SRC_BYTES);
	memset(r, 0, sizeof(*r));
}

static int rig_open(struct rig *r)
{
	const int acc = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
			IBV_ACCESS_REMOTE_WRITE;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = rxeu_open(&r->rx, NULL);
	if (rc)
		return rc;
	r->sink = rwt_map_anon(2 * SINK_HALF);
	r->src = rwt_map_anon(SRC_BYTES);
	if (r->sink)
		r->sink_mr = rxeu_reg_mr(&r->rx, r->sink, 2 * SINK_HALF, acc);
	if (r->src)
		r->src_mr = rxeu_reg_mr(&r->rx, r->src, SRC_BYTES, acc);
	if (!r->sink_mr || !r->src_mr) {
		rig_close(r);
		return -ENOMEM;
	}
	pthread_mutex_init(&r->lock, NULL);
	return 0;
}

/* RDMA READ [addr, addr + len) through e's registration into sink. */
static int rig_read(struct rig *r, char *sink, struct regwatch_cache_entry *e,
		    const void *addr, size_t len)
{
	int rc;

	pthread_mutex_lock(&r->lock);
	rc = rxeu_read(&r->rx, r->sink_mr, sink, regwatch_cache_entry_mr(e),
		       (uintptr_t)addr, len, RDMA_MS);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* RDMA WRITE len bytes of the source into addr through e's registration. */
static int rig_write(struct rig *r, struct regwatch_cache_entry *e,
		     void *addr, size_t len)
{
	int rc;

	pthread_mutex_lock(&r->lock);
	rc = rxeu_write(&r->rx, r->src_mr, r->src, regwatch_cache_entry_mr(e),
			(uintptr_t)addr, len, RDMA_MS);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

static int setup(void **state)
{
	int rc;

	(void)state;
	rc = rig_open(&rig);
	if (rc)
		fprintf(stderr, "cannot open the rxe0 loopback QP: %s\n", err(rc));
	return rc ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	rig_close(&rig);
	return 0;
}

/* ---- memory helpers ------------------------------------------------------- */

static char *map_fill(void *at, size_t len, int byte)
{
	char *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE |
		       MAP_ANONYMOUS | (at ? MAP_FIXED : 0), -1, 0);

	CHECK(p != MAP_FAILED, "mmap(%p, %zu): %s", at, len, strerror(errno));
	memset(p, byte, len);
	return p;
}

static bool all_bytes(const char *p, size_t len, int byte)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != (char)byte)
			return false;
	return true;
}

/* glibc's chunk header: IS_MMAPPED (0x2) in the size word before p. */
static bool glibc_mmapped(const void *p)
{
	uintptr_t a = (uintptr_t)p;

	__asm__("" : "+r"(a));	/* the header is outside the object */
	return *(const size_t *)(a - sizeof(size_t)) & 2;
}

/* Addresses are kept as integers across free() and realloc() (hidden from
 * the compiler's use-after-free tracking: they are only compared). */
static inline uintptr_t addr_of(const void *p)
{
	uintptr_t a = (uintptr_t)p;

	__asm__("" : "+r"(a));
	return a;
}

#define ADDR(p) addr_of(p)

/* The chunk after p is glibc's top chunk, which ends at the brk. */
static bool glibc_at_top(const void *p)
{
	uintptr_t a = (uintptr_t)p, next, nsize;

	__asm__("" : "+r"(a));
	next = a - 2 * sizeof(size_t) +
	       (*(const size_t *)(a - sizeof(size_t)) & ~(size_t)7);
	nsize = *(const size_t *)(next + sizeof(size_t)) & ~(size_t)7;
	return next + nsize == ADDR(sbrk(0));
}

/*
 * malloc(len) until the block comes back at want (mmap is top-down: holes
 * above want are filled first). The blocks in between are freed again.
 */
static char *malloc_at(uintptr_t want, size_t len)
{
	char *held[16], *p = NULL;
	int n = 0, i;

	while (n < 16) {
		p = malloc(len);
		if (!p || ADDR(p) == want)
			break;
		held[n++] = p;
		p = NULL;
	}
	for (i = 0; i < n; i++)
		free(held[i]);
	return p;
}

/*
 * A block that glibc mmapped (mmap_kind) or carved from the top of the brk
 * heap (so that freeing it trims the heap). Free chunks of the heap that
 * earlier tests left may serve a malloc first: those blocks are held (so
 * that they cannot serve the scenario's next malloc either) until
 * held_free().
 */
struct held {
	char *p[32];
	int n;
};

static char *malloc_where(size_t len, bool mmap_kind, struct held *h)
{
	char *p;

	h->n = 0;
	while (h->n < 32) {
		p = malloc(len);
		if (!p)
			return NULL;
		if (mmap_kind ? glibc_mmapped(p) :
		    !glibc_mmapped(p) && glibc_at_top(p))
			return p;
		h->p[h->n++] = p;
	}
	return NULL;
}

static void held_free(struct held *h)
{
	while (h->n > 0)
		free(h->p[--h->n]);
}

/* ---- one scenario's state and checks ------------------------------------- */

struct scen {
	struct rig *r;
	struct regwatch_cache *c;
	char *sink;
	const char *mon;
	bool none;		/* never invalidates: stale data expected */
	bool uffd;		/* wait for its fd after an unmap */
	int stale;		/* transfers that read stale bytes */
	int transfers;
};

typedef void (*scen_fn)(struct scen *s);

static void snap(struct scen *s, struct regwatch_cache_stats *st)
{
	int rc = regwatch_cache_stats(s->c, st);

	CHECK(rc == 0, "regwatch_cache_stats: %s", err(rc));
}

/* RDMA READ [addr, addr + len) through the cache's registration. */
static void read_cached(struct scen *s, const void *addr, size_t len)
{
	struct regwatch_cache_entry *e;
	int rc;

	CHECK(len <= SINK_HALF, "transfer of %zu bytes too big", len);
	memset(s->sink, POISON, len);
	rc = regwatch_cache_get(s->c, addr, len, ACC, &e);
	CHECK(rc == 0, "regwatch_cache_get(%p, %zu): %s", addr, len, err(rc));
	rc = rig_read(s->r, s->sink, e, addr, len);
	regwatch_cache_put(s->c, e);
	CHECK(rc == 0, "RDMA READ of %p+%zu through the cache: %s", addr, len,
	      err(rc));
	s->transfers++;
}

/* RDMA WRITE len bytes of `byte` into addr through the cache. */
static void write_cached(struct scen *s, void *addr, size_t len, int byte)
{
	struct regwatch_cache_entry *e;
	int rc;

	CHECK(len <= SRC_BYTES, "transfer of %zu bytes too big", len);
	memset(s->r->src, byte, len);
	rc = regwatch_cache_get(s->c, addr, len, ACC, &e);
	CHECK(rc == 0, "regwatch_cache_get(%p, %zu): %s", addr, len, err(rc));
	rc = rig_write(s->r, e, addr, len);
	regwatch_cache_put(s->c, e);
	CHECK(rc == 0, "RDMA WRITE to %p+%zu through the cache: %s", addr, len,
	      err(rc));
	CHECK(all_bytes(addr, len, byte),
	      "the CPU does not see the bytes RDMA-written through the cache");
	s->transfers++;
}

/* The memory did not change behind the registration: right with any
 * monitor. */
static void expect_ok(struct scen *s, const void *addr, size_t len,
		      const char *what)
{
	size_t n, first = 0;

	read_cached(s, addr, len);
	n = bu_ndiff(s->sink, addr, len, &first);
	CHECK(n == 0, "%s: %zu of %zu bytes read through the cache (monitor %s)"
	      " differ from memory; first at +%zu: device %#x, cpu %#x", what,
	      n, len, s->mon, first, (unsigned char)s->sink[first],
	      (unsigned char)((const char *)addr)[first]);
}

/*
 * The memory behind addr was replaced: with a real monitor the cache must
 * register anew and the READ return the new bytes; with none the READ is
 * expected to return old ones (counted in s->stale). true if fresh.
 */
static bool expect_fresh(struct scen *s, const void *addr, size_t len,
			 const char *what)
{
	size_t n, first = 0;

	read_cached(s, addr, len);
	n = bu_ndiff(s->sink, addr, len, &first);
	if (n && s->none) {
		s->stale++;
		fprintf(stderr, "  %s: STALE, as expected with the none monitor:"
			" %zu of %zu bytes read through the cache are not in "
			"memory (first at +%zu: device %#x, cpu %#x)\n", what, n,
			len, first, (unsigned char)s->sink[first],
			(unsigned char)((const char *)addr)[first]);
		return false;
	}
	CHECK(n == 0, "%s: STALE REGISTRATION: %zu of %zu bytes read through "
	      "the cache (monitor %s) differ from memory; first at +%zu: "
	      "device %#x, cpu %#x", what, n, len, s->mon, first,
	      (unsigned char)s->sink[first],
	      (unsigned char)((const char *)addr)[first]);
	return true;
}

/*
 * After expect_fresh(): a real monitor registered anew (nmiss misses since
 * *before) after an invalidation of class cls (0: any); none served hits.
 */
static void expect_reregistered_n(struct scen *s,
				  const struct regwatch_cache_stats *before,
				  uint32_t cls, uint64_t nmiss, const char *what)
{
	struct regwatch_cache_stats st;
	int bit = cls ? __builtin_ctz(cls) : 0;

	snap(s, &st);
	if (s->none) {
		CHECK(st.misses - before->misses < nmiss,
		      "%s: the none monitor should have served a hit", what);
		return;
	}
	CHECK(st.misses == before->misses + nmiss,
	      "%s: expected %" PRIu64 " miss(es), got %" PRIu64, what, nmiss,
	      st.misses - before->misses);
	CHECK(st.invalidations > before->invalidations,
	      "%s: no invalidation counted", what);
	CHECK(!cls || st.by_class[bit] > before->by_class[bit],
	      "%s: no invalidation of class %s counted", what,
	      regwatch_class_name(cls));
}

#define expect_reregistered(s, before, cls, what) \
	expect_reregistered_n((s), (before), (cls), 1, (what))

/* uffd: drain what is pending, so that its fd then tells of new events. */
static void quiesce(struct scen *s)
{
	if (s->uffd)
		regwatch_cache_process_events(s->c);
}

/* uffd: wait until the reader thread has marked the watches (see top). */
static void settle(struct scen *s)
{
	struct pollfd p = { .events = POLLIN };

	if (!s->uffd)
		return;
	p.fd = regwatch_cache_fd(s->c);
	CHECK(poll(&p, 1, 5000) == 1, "uffd monitor: no event within 5 s");
}

static void scen_report(struct scen *s)
{
	struct regwatch_cache_stats st;

	snap(s, &st);
	fprintf(stderr, "  monitor %s: %d transfers, %" PRIu64 " hits, %" PRIu64
		" misses, %" PRIu64 " invalidations (unmap %" PRIu64 ", clear %"
		PRIu64 ", protection %" PRIu64 "), %" PRIu64 " clear on unchanged "
		"pages, %" PRIu64 " retries, %" PRIu64 " registered now\n",
		s->mon, s->transfers, st.hits, st.misses, st.invalidations,
		st.by_class[0], st.by_class[1], st.by_class[3],
		st.clear_unchanged, st.retries, st.registered);
}

/* ---- the scenarios -------------------------------------------------------- */

/* munmap + mmap(MAP_FIXED); then MAP_FIXED straight over the mapping. */
static void scen_classic(struct scen *s)
{
	const size_t len = 16 * PAGE;
	struct regwatch_cache_stats st, st2;
	char *buf = map_fill(NULL, len, 'A');

	expect_ok(s, buf, len, "first transfer (a miss)");
	write_cached(s, buf, len, 'W');
	snap(s, &st);
	expect_ok(s, buf, len, "READ after the RDMA WRITE");
	snap(s, &st2);
	CHECK(st2.misses == st.misses && st2.hits > st.hits,
	      "the unchanged buffer was not a hit");

	quiesce(s);
	CHECK(munmap(buf, len) == 0, "munmap: %s", strerror(errno));
	CHECK(map_fill(buf, len, 'B') == buf, "MAP_FIXED moved");
	settle(s);
	snap(s, &st);
	if (!expect_fresh(s, buf, len, "munmap + mmap(MAP_FIXED), new 'B'"))
		CHECK(all_bytes(s->sink, len, 'W'),
		      "the none monitor's READ returned neither old nor new bytes");
	expect_reregistered(s, &st, REGWATCH_CLASS_UNMAP, "munmap + MAP_FIXED");

	quiesce(s);
	map_fill(buf, len, 'C');	/* over the live mapping */
	settle(s);
	snap(s, &st);
	expect_fresh(s, buf, len, "mmap(MAP_FIXED) over the mapping, new 'C'");
	expect_reregistered(s, &st, REGWATCH_CLASS_UNMAP, "MAP_FIXED over it");
	munmap(buf, len);
}

/*
 * The classic scenario while a transfer still holds the entry: the holder's
 * registration stays usable (it reads the pages it pinned), a new get
 * registers anew, and the holder's put deregisters the old one.
 */
static void scen_inflight(struct scen *s)
{
	const size_t len = 8 * PAGE;
	struct regwatch_cache_stats st, st2;
	struct regwatch_cache_entry *held;
	char *buf = map_fill(NULL, len, 'A');
	int rc;

	rc = regwatch_cache_get(s->c, buf, len, ACC, &held);
	CHECK(rc == 0, "regwatch_cache_get: %s", err(rc));
	quiesce(s);
	CHECK(munmap(buf, len) == 0, "munmap: %s", strerror(errno));
	map_fill(buf, len, 'B');
	settle(s);
	snap(s, &st);
	expect_fresh(s, buf, len, "new mapping, the old entry in flight");
	expect_reregistered(s, &st, REGWATCH_CLASS_UNMAP, "in flight");
	memset(s->sink, POISON, len);
	rc = rig_read(s->r, s->sink, held, buf, len);
	CHECK(rc == 0, "RDMA READ through the held entry: %s", err(rc));
	CHECK(all_bytes(s->sink, len, 'A'), "the held registration does not "
	      "read the pages it pinned");
	snap(s, &st);
	regwatch_cache_put(s->c, held);
	snap(s, &st2);
	if (!s->none) {
		CHECK(st2.deferred_deregs == st.deferred_deregs + 1 &&
		      st2.registered + 1 == st.registered,
		      "the last put did not deregister the invalidated entry");
		expect_ok(s, buf, len, "after the put");	/* a hit */
	}
	munmap(buf, len);
}

/* glibc: free + malloc of a mmapped block at the same address. */
static void scen_malloc_mmapped(struct scen *s)
{
	const size_t len = 256 << 10;
	struct regwatch_cache_stats st;
	struct held h;
	char *p = malloc_where(len, true, &h), *q;
	uintptr_t pa = ADDR(p);

	CHECK(p, "premise: malloc(%zu) is not mmapped", len);
	memset(p, 'A', len);
	expect_ok(s, p, len, "malloc'd block");
	quiesce(s);
	free(p);
	settle(s);
	q = malloc_at(pa, len);
	CHECK(ADDR(q) == pa, "premise: malloc(%zu) did not return the freed "
	      "address %#lx (M_MMAP_THRESHOLD fixed)", len, (unsigned long)pa);
	memset(q, 'B', len);
	snap(s, &st);
	expect_fresh(s, q, len, "free + malloc at the same address, new 'B'");
	expect_reregistered(s, &st, REGWATCH_CLASS_UNMAP, "free + malloc");
	free(q);
	held_free(&h);
}

/* glibc: free of the top heap block trims the heap; malloc grows it. */
static void scen_malloc_brk(struct scen *s)
{
	const size_t len = 96 << 10;	/* under M_MMAP_THRESHOLD: brk */
	struct regwatch_cache_stats st;
	char *w = map_fill(NULL, PAGE, 'w'), *p, *q;
	uintptr_t pa, brk_end;
	struct held h;

	/* Warm up: the cache's entry slab and an ibv_mr struct freed to
	 * glibc's tcache, so that no allocation lands above p below. */
	expect_ok(s, w, PAGE, "warm-up");
	regwatch_cache_purge(s->c);
	munmap(w, PAGE);
	malloc_trim(0);

	p = malloc_where(len, false, &h);
	pa = ADDR(p);
	CHECK(p, "premise: malloc(%zu) is not at the top of the brk heap", len);
	memset(p, 'A', len);
	expect_ok(s, p, len, "brk heap block");
	CHECK(glibc_at_top(p), "premise: something was allocated from the top "
	      "of the heap after the block");
	quiesce(s);
	free(p);
	brk_end = ADDR(sbrk(0));
	CHECK(brk_end < pa + len / 2, "premise: free() did not trim the heap "
	      "(brk end %#lx, block %#lx+%zu)", (unsigned long)brk_end,
	      (unsigned long)pa, len);
	settle(s);
	q = malloc(len);
	CHECK(ADDR(q) == pa, "premise: malloc(%zu) after the trim returned %p, "
	      "not %#lx", len, (void *)q, (unsigned long)pa);
	memset(q, 'B', len);
	snap(s, &st);
	expect_fresh(s, q, len, "heap trimmed and grown again, new 'B'");
	expect_reregistered(s, &st, REGWATCH_CLASS_UNMAP, "brk shrink + grow");
	free(q);
	held_free(&h);
}

/* realloc: shrink + grow in place (mremap), then a growth that moves. */
static void scen_realloc(struct scen *s)
{
	const size_t big = 512 << 10, small = 160 << 10, huge = 2 << 20;
	struct regwatch_cache_stats st;
	struct held h;
	char *p = malloc_where(big, true, &h), *q, *r;
	uintptr_t pa = ADDR(p), qa;

	CHECK(p, "premise: malloc(%zu) is not mmapped", big);
	memset(p, 'A', big);
	expect_ok(s, p, big, "malloc'd block");

	quiesce(s);
	q = realloc(p, small);
	CHECK(ADDR(q) == pa, "premise: the shrinking realloc moved the block");
	settle(s);
	CHECK(!rwt_in_maps((void *)(pa + big - 1)),
	      "premise: realloc did not unmap the tail");
	q = realloc(q, big);
	CHECK(ADDR(q) == pa, "premise: the growing realloc did not stay in place");
	memset(q, 'B', big);
	snap(s, &st);
	expect_fresh(s, q, big, "realloc shrink + grow (mremap), new 'B'");
	expect_reregistered(s, &st, REGWATCH_CLASS_UNMAP, "realloc shrink + grow");

	quiesce(s);
	snap(s, &st);		/* a move is processed by the next miss */
	qa = ADDR(q);
	r = realloc(q, huge);
	CHECK(r, "realloc(%zu) failed", huge);
	if (ADDR(r) != qa)
		settle(s);	/* moved: the old range was unmapped */
	CHECK(all_bytes(r, big, 'B'), "realloc lost the contents");
	memset(r + big, 'C', huge - big);
	expect_fresh(s, r, huge, "realloc growth");
	if (ADDR(r) != qa) {
		/* It moved (mremap): its old address is free. Map it again. */
		char *old = (char *)(qa - 16);	/* the chunk's page */

		CHECK(mmap(old, big, PROT_READ | PROT_WRITE, MAP_PRIVATE |
			   MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == old,
		      "premise: the old address is not free: %s",
		      strerror(errno));
		memset(old, 'D', big);
		expect_fresh(s, old + 16, big - PAGE,
			     "old address of the moved block mapped again, 'D'");
		expect_reregistered_n(s, &st, REGWATCH_CLASS_UNMAP, 2,
				      "old address reused");
		munmap(old, big);
	} else {
		fprintf(stderr, "  (the growth stayed in place)\n");
	}
	free(r);
	held_free(&h);
}

/* madvise(DONTNEED) of a run of pages, rewritten, as jemalloc purges. */
static void scen_dontneed(struct scen *s)
{
	const size_t len = 64 * PAGE, off = 16 * PAGE, run = 32 * PAGE;
	struct regwatch_cache_stats st;
	char *buf = map_fill(NULL, len, 'A');

	expect_ok(s, buf, len, "buffer");
	quiesce(s);
	CHECK(madvise(buf + off, run, MADV_DONTNEED) == 0, "madvise: %s",
	      strerror(errno));
	settle(s);
	CHECK(all_bytes(buf + off, run, 0), "premise: DONTNEED did not zero");
	memset(buf + off, 'D', run);
	snap(s, &st);
	expect_fresh(s, buf + off, run, "DONTNEED run rewritten with 'D'");
	expect_reregistered(s, &st, REGWATCH_CLASS_CLEAR, "DONTNEED");
	expect_fresh(s, buf, len, "whole buffer after DONTNEED");
	munmap(buf, len);
}

/* fork with registered memory: check the parent's data, not events. */
static void scen_fork(struct scen *s)
{
	const size_t len = 16 * PAGE;
	char *buf = map_fill(NULL, len, 'A');
	char *other = map_fill(NULL, len, 'O');
	int wrote[2], go[2], status;
	struct regwatch_cache_entry *e;
	struct regwatch_cache_stats st;
	char c = 0;
	pid_t pid;

	expect_ok(s, buf, len, "registered before fork");
	CHECK(pipe(wrote) == 0 && pipe(go) == 0, "pipe: %s", strerror(errno));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int rc;

		in_child = true;
		close(wrote[0]);
		close(go[1]);
		memset(buf, 'C', len);		/* the child's copy */
		rc = regwatch_cache_get(s->c, buf, len, ACC, &e);
		CHECK(rc == -ECHILD, "get of a cached range: %d, not -ECHILD", rc);
		rc = regwatch_cache_get(s->c, other, len, ACC, &e);
		CHECK(rc == -ECHILD, "get of a new range: %d, not -ECHILD", rc);
		rc = regwatch_cache_stats(s->c, &st);
		CHECK(rc == -ECHILD, "stats: %d, not -ECHILD", rc);
		rc = regwatch_cache_process_events(s->c);
		CHECK(rc == -ECHILD, "process_events: %d, not -ECHILD", rc);
		CHECK(all_bytes(buf, len, 'C'), "the child's copy changed");
		CHECK(write(wrote[1], "w", 1) == 1, "pipe");
		CHECK(read(go[0], &c, 1) >= 0, "pipe");	/* parent done */
		CHECK(all_bytes(buf, len, 'C'), "the parent's writes reached "
		      "the child's copy");
		_exit(0);
	}
	close(wrote[1]);
	close(go[0]);
	CHECK(read(wrote[0], &c, 1) == 1, "the child died before writing");
	/* The child is alive, its copy written. */
	expect_ok(s, buf, len, "parent, the child alive and written");
	CHECK(all_bytes(s->sink, len, 'A'), "the child's bytes reached the "
	      "parent's registration");
	memset(buf, 'P', len);
	expect_ok(s, buf, len, "parent writes after fork, the child alive");
	CHECK(all_bytes(s->sink, len, 'P'), "parent's new bytes not sent");
	write_cached(s, buf, len, 'W');
	expect_ok(s, other, len, "a new range in the parent");
	close(go[1]);
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "the child failed (status %#x)", status);
	close(wrote[0]);
	memset(buf, 'Q', len);
	expect_ok(s, buf, len, "parent writes after the child exited");
	CHECK(all_bytes(s->sink, len, 'Q'), "parent's new bytes not sent");
	munmap(buf, len);
	munmap(other, len);
}

/* The node of every page, or -errno in status. */
static void page_nodes(char *buf, size_t n, int *status)
{
	void *pages[64];
	size_t i;

	for (i = 0; i < n; i++)
		pages[i] = buf + i * PAGE;
	CHECK(move_pages(0, n, pages, NULL, status, 0) == 0,
	      "move_pages(query): %s", strerror(errno));
}

/* Move every page to node; returns how many are there afterwards. */
static int move_all(char *buf, size_t n, int node, long *rc)
{
	void *pages[64] = { 0 };
	int nodes[64] = { 0 }, status[64] = { 0 };
	size_t i;
	int moved = 0;

	CHECK(n <= 64, "too many pages");

	for (i = 0; i < n; i++) {
		pages[i] = buf + i * PAGE;
		nodes[i] = node;
	}
	*rc = move_pages(0, n, pages, nodes, status, MPOL_MF_MOVE);
	page_nodes(buf, n, status);
	for (i = 0; i < n; i++)
		moved += status[i] == node;
	return moved;
}

/* move_pages of a registered buffer between the two NUMA nodes. */
static void scen_migrate(struct scen *s)
{
	const size_t n = 16, len = n * PAGE;
	char *buf;
	int status[64], from, to, moved;
	long rc;

	if (numa_available() < 0 || numa_max_node() < 1) {
		fprintf(stderr, "  fewer than two NUMA nodes: skipped\n");
		skip();
	}
	buf = map_fill(NULL, len, 'A');
	expect_ok(s, buf, len, "registered");
	page_nodes(buf, n, status);
	from = status[0];
	CHECK(from >= 0, "page node: %s", err(from));
	to = from ? 0 : 1;
	moved = move_all(buf, n, to, &rc);
	fprintf(stderr, "  move_pages of %zu registered pages node %d -> %d: "
		"returned %ld, %d moved (rxe pins them)\n", n, from, to, rc,
		moved);
	if (moved)	/* a monitor must have seen it (none would not) */
		expect_fresh(s, buf, len, "after move_pages");
	else
		expect_ok(s, buf, len, "after move_pages");
	memset(buf, 'M', len);
	expect_fresh(s, buf, len, "rewritten after move_pages");

	/* Released by the cache, the pages are free to move. */
	regwatch_cache_purge(s->c);
	moved = move_all(buf, n, to, &rc);
	fprintf(stderr, "  after the cache released them: returned %ld, %d of "
		"%zu on node %d\n", rc, moved, n, to);
	CHECK(moved == (int)n, "premise: unpinned pages did not migrate");
	expect_ok(s, buf, len, "registered again after migration");
	CHECK(all_bytes(s->sink, len, 'M'), "wrong bytes after migration");
	munmap(buf, len);
}

/* ---- running scenarios ---------------------------------------------------- */

/* The monitor of the scenarios and the random test (NONE: --expect-stale). */
static enum regwatch_cache_monitor scen_monitor = REGWATCH_CACHE_MONITOR_AUTO;

static void scen_init(struct scen *s, struct rig *r, struct regwatch_cache *c)
{
	memset(s, 0, sizeof(*s));
	s->r = r;
	s->c = c;
	s->sink = r->sink;
	s->mon = regwatch_cache_monitor_name(c);
	s->none = !strcmp(s->mon, "none");
	s->uffd = !strcmp(s->mon, "uffd");
}

/* bites: with the none monitor this scenario must read stale data. */
static void scen_finish(struct scen *s, bool bites)
{
	scen_report(s);
	if (s->none && bites)
		CHECK(s->stale > 0, "the none monitor read no stale data: "
		      "this scenario does not bite");
}

static void run_scenario(scen_fn fn, enum regwatch_cache_monitor mon,
			 bool bites)
{
	struct regwatch_cache_options o = {
		.monitor = mon, .flags = REGWATCH_CACHE_VERIFY_CLEAR,
	};
	struct regwatch_cache *c;
	struct scen s;
	int rc;

	rc = regwatch_cache_create_ibv(&o, rig.rx.pd, &c);
	CHECK(rc == 0, "regwatch_cache_create_ibv: %s", err(rc));
	scen_init(&s, &rig, c);
	fn(&s);
	scen_finish(&s, bites);
	regwatch_cache_destroy(c);
}

static void test_classic_munmap_map_fixed(void **state)
{
	(void)state;
	run_scenario(scen_classic, scen_monitor, true);
}

static void test_inflight_invalidation(void **state)
{
	(void)state;
	run_scenario(scen_inflight, scen_monitor, true);
}

static void test_malloc_free_mmapped(void **state)
{
	(void)state;
	run_scenario(scen_malloc_mmapped, scen_monitor, true);
}

static void test_malloc_free_brk_trim(void **state)
{
	(void)state;
	run_scenario(scen_malloc_brk, scen_monitor, true);
}

static void test_realloc_mremap(void **state)
{
	(void)state;
	run_scenario(scen_realloc, scen_monitor, true);
}

static void test_madvise_dontneed(void **state)
{
	(void)state;
	run_scenario(scen_dontneed, scen_monitor, true);
}

static void test_fork(void **state)
{
	(void)state;
	run_scenario(scen_fork, scen_monitor, false);
}

static void test_migration(void **state)
{
	(void)state;
	run_scenario(scen_migrate, scen_monitor, false);
}

/* EXPECTED FAILURE, counted as a pass when the stale bytes show. */
static void test_none_monitor_reads_stale(void **state)
{
	(void)state;
	run_scenario(scen_classic, REGWATCH_CACHE_MONITOR_NONE, true);
}

/* ---- the userfaultfd monitor, unprivileged -------------------------------- */

static int unprivileged_child(scen_fn fn)
{
	struct regwatch_cache_options o = {
		.monitor = REGWATCH_CACHE_MONITOR_UFFD,
	};
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	struct regwatch_cache *c;
	char knob[16] = "?";
	struct stat sb;
	struct scen s;
	struct rig r;
	FILE *f;
	int rc, fd;

	/* rxe charges pinned pages to RLIMIT_MEMLOCK: raise it while root. */
	CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "RLIMIT_MEMLOCK: %s",
	      strerror(errno));
	/* No udev in the guest: make sure nobody may open the device. */
	if (stat(UVERBS, &sb) == 0 && (sb.st_mode & 0006) != 0006) {
		CHECK(chmod(UVERBS, 0666) == 0, "chmod %s: %s", UVERBS,
		      strerror(errno));
		fprintf(stderr, "  chmod 0666 %s\n", UVERBS);
	}
	CHECK(setgroups(0, NULL) == 0 && setgid(NOBODY) == 0 &&
	      setuid(NOBODY) == 0, "dropping to uid %d: %s", NOBODY,
	      strerror(errno));
	CHECK(getuid() == NOBODY && geteuid() == NOBODY, "still privileged");
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);	/* as a plain user process */

	f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
	if (f) {
		if (!fgets(knob, sizeof(knob), f))
			strcpy(knob, "?");
		knob[strcspn(knob, "\n")] = 0;
		fclose(f);
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	rc = fd < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	fprintf(stderr, "  uid %d, vm.unprivileged_userfaultfd=%s: userfaultfd() "
		"%s\n", NOBODY, knob, rc ? strerror(rc) : "works");
	if (!strcmp(knob, "0"))
		CHECK(rc == EPERM, "userfaultfd() should need privilege here");
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	CHECK(fd >= 0, "userfaultfd(UFFD_USER_MODE_ONLY): %s", strerror(errno));
	close(fd);

	rc = rig_open(&r);
	CHECK(rc == 0, "rxe0 as uid %d: %s", NOBODY, err(rc));
	rc = regwatch_cache_create_ibv(&o, r.rx.pd, &c);
	CHECK(rc == 0, "uffd cache as uid %d: %s", NOBODY, err(rc));
	scen_init(&s, &r, c);
	CHECK(s.uffd, "monitor is %s, not uffd", s.mon);
	fn(&s);
	scen_finish(&s, false);
	regwatch_cache_destroy(c);
	rig_close(&r);
	return 0;
}

/* Run fn in a child as uid 65534 with a uffd-monitor cache of its own. */
static void run_unprivileged(scen_fn fn)
{
	int status;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		in_child = true;
		_exit(unprivileged_child(fn));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("the unprivileged child failed (status %#x)", status);
}

static void test_uffd_unprivileged_munmap_fixed(void **state)
{
	(void)state;
	run_unprivileged(scen_classic);
}

static void test_uffd_unprivileged_malloc_free(void **state)
{
	(void)state;
	run_unprivileged(scen_malloc_mmapped);
}

static void test_uffd_unprivileged_dontneed(void **state)
{
	(void)state;
	run_unprivileged(scen_dontneed);
}

static void test_uffd_unprivileged_brk_trim(void **state)
{
	(void)state;
	run_unprivileged(scen_malloc_brk);
}

static void test_uffd_unprivileged_realloc_mremap(void **state)
{
	(void)state;
	run_unprivileged(scen_realloc);
}

/* ---- randomized differential test ------------------------------------------ */

#define R_SLOTS		8	/* per thread */
#define R_HISTORY	12

enum r_kind { R_FREE, R_MALLOC, R_MMAP };

struct r_slot {
	enum r_kind kind;
	char *p;
	size_t len;
};

struct r_thread {
	int id;
	struct rig *r;
	struct regwatch_cache *c;
	char *sink;
	uint64_t rng;
	long ops, done;
	bool none, may_fork;
	uint64_t deadline_ns;
	struct r_slot slot[R_SLOTS];
	uint64_t gen;
	long verified, stale, forks, maps, unmaps, dontneeds, reallocs;
	char hist[R_HISTORY][112];
	unsigned int nhist;
	char fail[1024];
};

static uint64_t r_rand(struct r_thread *t, uint64_t n)
{
	return rwt_rand(&t->rng) % n;
}

static void r_log(struct r_thread *t, const char *fmt, ...)
{
	char *h = t->hist[t->nhist++ % R_HISTORY];
	va_list ap;
	int n;

	n = snprintf(h, sizeof(t->hist[0]), "#%ld ", t->done);
	va_start(ap, fmt);
	vsnprintf(h + n, sizeof(t->hist[0]) - (size_t)n, fmt, ap);
	va_end(ap);
}

static void r_failf(struct r_thread *t, const char *fmt, ...)
{
	size_t n = 0;
	unsigned int i;
	va_list ap;

	if (t->fail[0])
		return;
	n += (size_t)snprintf(t->fail, sizeof(t->fail), "thread %d, op %ld: ",
			      t->id, t->done);
	va_start(ap, fmt);
	n += (size_t)vsnprintf(t->fail + n, sizeof(t->fail) - n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n  last operations of thread %d:\n", t->fail, t->id);
	i = t->nhist > R_HISTORY ? t->nhist - R_HISTORY : 0;
	for (; i < t->nhist; i++)
		fprintf(stderr, "    %s\n", t->hist[i % R_HISTORY]);
}

static void r_fill(struct r_thread *t, struct r_slot *sl)
{
	bu_pattern(sl->p, sl->len, ++t->gen * 4 + (uint64_t)t->id);
}

/* RDMA READ the slot through the cache and compare with memory. */
static bool r_verify(struct r_thread *t, struct r_slot *sl)
{
	struct regwatch_cache_entry *e;
	size_t n, first = 0;
	int rc;

	memset(t->sink, POISON, sl->len);
	rc = regwatch_cache_get(t->c, sl->p, sl->len, ACC, &e);
	if (rc) {
		r_failf(t, "regwatch_cache_get(%p, %zu): %s", (void *)sl->p,
			sl->len, err(rc));
		return false;
	}
	rc = rig_read(t->r, t->sink, e, sl->p, sl->len);
	regwatch_cache_put(t->c, e);
	if (rc) {
		r_failf(t, "RDMA READ of %p+%zu: %s", (void *)sl->p, sl->len,
			err(rc));
		return false;
	}
	t->verified++;
	n = bu_ndiff(t->sink, sl->p, sl->len, &first);
	if (!n)
		return true;
	if (t->none) {
		t->stale++;
		return true;
	}
	r_failf(t, "STALE REGISTRATION: %zu of %zu bytes of the %s slot at %p "
		"read through the cache differ from memory; first at +%zu: "
		"device %#x, cpu %#x", n, sl->len,
		sl->kind == R_MMAP ? "mmap" : "malloc", (void *)sl->p, first,
		(unsigned char)t->sink[first], (unsigned char)sl->p[first]);
	return false;
}

static size_t r_malloc_size(struct r_thread *t)
{
	if (r_rand(t, 3) == 0)	/* mmapped by glibc */
		return MMAP_THRESHOLD + r_rand(t, (512 << 10) - MMAP_THRESHOLD);
	return 1 + r_rand(t, 96 << 10);		/* heap or arena */
}

static bool r_alloc(struct r_thread *t, struct r_slot *sl, enum r_kind kind,
		    size_t len)
{
	if (kind == R_MALLOC) {
		sl->p = malloc(len);
		if (!sl->p) {
			r_failf(t, "malloc(%zu) failed", len);
			return false;
		}
	} else {
		sl->p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (sl->p == MAP_FAILED) {
			r_failf(t, "mmap(%zu): %s", len, strerror(errno));
			return false;
		}
	}
	sl->kind = kind;
	sl->len = len;
	t->maps++;
	r_fill(t, sl);
	r_log(t, "alloc %s %zu at %p", kind == R_MMAP ? "mmap" : "malloc",
	      len, (void *)sl->p);
	return true;
}

static void r_free(struct r_thread *t, struct r_slot *sl)
{
	r_log(t, "free %s %p+%zu", sl->kind == R_MMAP ? "munmap" : "free",
	      (void *)sl->p, sl->len);
	if (sl->kind == R_MALLOC)
		free(sl->p);
	else
		munmap(sl->p, sl->len);
	sl->kind = R_FREE;
	t->unmaps++;
}

/* A page-aligned sub-range [*a, *b) strictly inside the slot, or false. */
static bool r_pages(struct r_thread *t, struct r_slot *sl, char **a, char **b)
{
	uintptr_t lo = ((uintptr_t)sl->p + PAGE - 1) & ~(PAGE - 1);
	uintptr_t hi = ((uintptr_t)sl->p + sl->len) & ~(PAGE - 1);
	size_t n, i, k;

	if (hi <= lo)
		return false;
	n = (hi - lo) / PAGE;
	i = r_rand(t, n);
	k = 1 + r_rand(t, n - i);
	*a = (char *)lo + i * PAGE;
	*b = *a + k * PAGE;
	return true;
}

/* fork; the child writes its copy and finds the cache unusable. */
static bool r_fork(struct r_thread *t, struct r_slot *sl)
{
	struct regwatch_cache_entry *e;
	int status;
	pid_t pid;

	r_log(t, "fork, the child writes %p+%zu", (void *)sl->p, sl->len);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		r_failf(t, "fork: %s", strerror(errno));
		return false;
	}
	if (pid == 0) {		/* no stdio, no locks: another thread runs */
		memset(sl->p, 0x5c, sl->len);
		if (regwatch_cache_get(t->c, sl->p, sl->len, ACC, &e) != -ECHILD)
			_exit(2);
		_exit(0);
	}
	t->forks++;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		r_failf(t, "fork child: status %#x (2: its get was not -ECHILD)",
			status);
		return false;
	}
	return r_verify(t, sl);
}

/* One random operation; false on a failure (in t->fail). */
static bool r_step(struct r_thread *t)
{
	struct r_slot *sl = &t->slot[r_rand(t, R_SLOTS)];
	unsigned int op = (unsigned int)r_rand(t, 100);
	char *a = NULL, *b = NULL, *p;
	size_t len;

	if (sl->kind == R_FREE) {
		if (r_rand(t, 2))
			len = r_malloc_size(t);
		else
			len = (1 + r_rand(t, 48)) * PAGE;
		return r_alloc(t, sl, len % PAGE || r_rand(t, 2) ? R_MALLOC :
			       R_MMAP, len) && r_verify(t, sl);
	}
	if (op < 12) {				/* free */
		r_free(t, sl);
		return true;
	}
	if (op < 27) {				/* free, allocate the same */
		enum r_kind k = sl->kind;

		len = sl->len;
		r_free(t, sl);
		return r_alloc(t, sl, k, len) && r_verify(t, sl);
	}
	if (op < 40) {				/* new contents in place */
		r_fill(t, sl);
		r_log(t, "rewrite %p+%zu", (void *)sl->p, sl->len);
		return r_verify(t, sl);
	}
	if (op < 47) {				/* read again */
		r_log(t, "reread %p+%zu", (void *)sl->p, sl->len);
		return r_verify(t, sl);
	}
	if (op < 62) {				/* remap / realloc */
		if (sl->kind == R_MALLOC) {
			len = r_malloc_size(t);
			p = realloc(sl->p, len);
			if (!p) {
				r_failf(t, "realloc(%zu) failed", len);
				return false;
			}
			r_log(t, "realloc %p+%zu -> %p+%zu", (void *)sl->p,
			      sl->len, (void *)p, len);
			t->reallocs++;
		} else if (r_rand(t, 2) && r_pages(t, sl, &a, &b)) {
			/* MAP_FIXED over a part */
			p = mmap(a, (size_t)(b - a), PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			if (p != a) {
				r_failf(t, "mmap(MAP_FIXED): %s", strerror(errno));
				return false;
			}
			r_log(t, "MAP_FIXED %p+%zu in %p+%zu", (void *)a,
			      (size_t)(b - a), (void *)sl->p, sl->len);
			p = sl->p;
			len = sl->len;
			t->maps++;
		} else {			/* mremap, may move */
			len = (1 + r_rand(t, 48)) * PAGE;
			p = mremap(sl->p, sl->len, len, MREMAP_MAYMOVE);
			if (p == MAP_FAILED && errno == EFAULT) {
				/* spans several VMAs (MAP_FIXED parts) */
				munmap(sl->p, sl->len);
				p = mmap(NULL, len, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			}
			if (p == MAP_FAILED) {
				r_failf(t, "mremap: %s", strerror(errno));
				return false;
			}
			r_log(t, "mremap %p+%zu -> %p+%zu", (void *)sl->p,
			      sl->len, (void *)p, len);
			t->reallocs++;
		}
		sl->p = p;
		sl->len = len;
		r_fill(t, sl);
		return r_verify(t, sl);
	}
	if (op < 77) {				/* DONTNEED pages inside */
		if (!r_pages(t, sl, &a, &b))
			return r_verify(t, sl);
		if (madvise(a, (size_t)(b - a), MADV_DONTNEED)) {
			r_failf(t, "madvise: %s", strerror(errno));
			return false;
		}
		r_log(t, "DONTNEED %p+%zu in %p+%zu", (void *)a,
		      (size_t)(b - a), (void *)sl->p, sl->len);
		t->dontneeds++;
		r_fill(t, sl);
		return r_verify(t, sl);
	}
	if (op < 80 && t->may_fork)
		return r_fork(t, sl);
	if (op < 95) {				/* event loop turn */
		struct pollfd pf = { .fd = regwatch_cache_fd(t->c),
				     .events = POLLIN };

		if (pf.fd >= 0 && poll(&pf, 1, 0) == 1)
			regwatch_cache_process_events(t->c);
		r_log(t, "event loop, reread %p+%zu", (void *)sl->p, sl->len);
		return r_verify(t, sl);
	}
	/* several slots in a row: hits mixed with misses */
	r_log(t, "reread all");
	for (sl = t->slot; sl < t->slot + R_SLOTS; sl++)
		if (sl->kind != R_FREE && !r_verify(t, sl))
			return false;
	return true;
}

static void *r_run(void *arg)
{
	struct r_thread *t = arg;

	for (t->done = 0; t->done < t->ops; t->done++) {
		if (!r_step(t))
			break;
		if ((t->done & 31) == 0 && rwt_now_ns() > t->deadline_ns) {
			fprintf(stderr, "  thread %d: time budget reached after "
				"%ld operations\n", t->id, t->done);
			break;
		}
	}
	for (int i = 0; i < R_SLOTS; i++)
		if (t->slot[i].kind != R_FREE)
			r_free(t, &t->slot[i]);
	return NULL;
}

static void test_random_differential(void **state)
{
	struct regwatch_cache_options o = {
		.monitor = scen_monitor, .max_entries = 24,
		.max_bytes = 16 << 20,
	};
	unsigned int seed = rwt_seed();
	long ops = env_long("REGWATCH_CACHE_OPS", 2000);
	long tops = env_long("REGWATCH_CACHE_THREAD_OPS", ops / 2);
	uint64_t t0 = rwt_now_ns(), deadline;
	struct r_thread *t = calloc(2, sizeof(*t));
	struct regwatch_cache_stats st;
	struct regwatch_cache *c;
	const char *mon;
	pthread_t tid;
	int rc, i;

	(void)state;
	assert_non_null(t);
	deadline = t0 + (uint64_t)env_long("REGWATCH_CACHE_SECONDS", 45) *
		   1000000000ULL;
	rc = regwatch_cache_create_ibv(&o, rig.rx.pd, &c);
	assert_int_equal(rc, 0);
	mon = regwatch_cache_monitor_name(c);
	fprintf(stderr, "  seed %u (REGWATCH_SEED=%u replays the main thread's "
		"sequence), %ld + %ld operations, monitor %s\n", seed, seed, ops,
		tops, mon);
	if (!strcmp(mon, "uffd")) {
		/* Its wake-up window (see top) needs an event loop that
		 * waits; its scenarios are the uffd_unprivileged_* cases. */
		regwatch_cache_destroy(c);
		free(t);
		skip();
	}
	for (i = 0; i < 2; i++) {
		t[i].id = i;
		t[i].r = &rig;
		t[i].c = c;
		t[i].sink = rig.sink + i * SINK_HALF;
		t[i].rng = ((uint64_t)seed << 1 | 1) * (i ? 0xff51afd7ed558ccdULL : 1);
		t[i].none = !strcmp(mon, "none");
		t[i].may_fork = i == 0;
		t[i].deadline_ns = deadline;
	}
	t[0].ops = ops;
	t[1].ops = tops;
	if (tops > 0)
		assert_int_equal(pthread_create(&tid, NULL, r_run, &t[1]), 0);
	r_run(&t[0]);
	if (tops > 0)
		pthread_join(tid, NULL);

	assert_int_equal(regwatch_cache_stats(c, &st), 0);
	for (i = 0; i < 2; i++)
		fprintf(stderr, "  thread %d: %ld operations, %ld transfers "
			"verified, %ld maps, %ld unmaps/frees, %ld reallocs/"
			"remaps, %ld DONTNEEDs, %ld forks, %ld stale\n", i,
			t[i].done, t[i].verified, t[i].maps, t[i].unmaps,
			t[i].reallocs, t[i].dontneeds, t[i].forks, t[i].stale);
	fprintf(stderr, "  cache: %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64
		" invalidations (unmap %" PRIu64 ", clear %" PRIu64 ", protection "
		"%" PRIu64 "), %" PRIu64 " evictions, %" PRIu64 " retries; %.1f s\n",
		st.hits, st.misses, st.invalidations, st.by_class[0],
		st.by_class[1], st.by_class[3], st.evictions, st.retries,
		(rwt_now_ns() - t0) / 1e9);
	regwatch_cache_destroy(c);
	for (i = 0; i < 2; i++)
		if (t[i].fail[0]) {
			fprintf(stderr, "  replay: REGWATCH_SEED=%u\n", seed);
			fail_msg("seed %u: %s", seed, t[i].fail);
		}
	if (t[0].none)
		CHECK(t[0].stale + t[1].stale > 0, "seed %u: the none monitor "
		      "read no stale data: the random test does not bite", seed);
	CHECK(t[0].verified >= 100, "only %ld transfers verified", t[0].verified);
	free(t);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classic_munmap_map_fixed),
		cmocka_unit_test(test_inflight_invalidation),
		cmocka_unit_test(test_malloc_free_mmapped),
		cmocka_unit_test(test_malloc_free_brk_trim),
		cmocka_unit_test(test_realloc_mremap),
		cmocka_unit_test(test_madvise_dontneed),
		cmocka_unit_test(test_fork),
		cmocka_unit_test(test_migration),
		cmocka_unit_test(test_random_differential),
		cmocka_unit_test(test_none_monitor_reads_stale),
		cmocka_unit_test(test_uffd_unprivileged_munmap_fixed),
		cmocka_unit_test(test_uffd_unprivileged_malloc_free),
		cmocka_unit_test(test_uffd_unprivileged_dontneed),
		cmocka_unit_test(test_uffd_unprivileged_brk_trim),
		cmocka_unit_test(test_uffd_unprivileged_realloc_mremap),
	};
	const char *es = getenv("REGWATCH_EXPECT_STALE");

	/* Fixed thresholds: glibc would otherwise raise the mmap threshold
	 * after a free and stop giving addresses back. */
	mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
	mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
	mallopt(M_TOP_PAD, 0);
	if ((argc > 1 && !strcmp(argv[1], "--expect-stale")) || (es && *es == '1')) {
		printf("--expect-stale: the none monitor; every scenario that "
		       "replaces memory must read stale bytes\n");
		scen_monitor = REGWATCH_CACHE_MONITOR_NONE;
		/* the scenarios, the random test and the none case */
		return _cmocka_run_group_tests("test_cache_rxe --expect-stale",
					       tests, 10, setup, teardown);
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
