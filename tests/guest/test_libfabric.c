// SPDX-License-Identifier: MIT
/*
 * regwatch as libfabric's memory monitor, proven on Soft-RoCE: Debian's
 * libfabric (verbs provider, FI_EP_MSG over rdma_cm on rxe0, 10.77.0.1)
 * with its MR cache on, regwatch imported, and every RDMA transfer
 * checked byte for byte against what the CPU sees.
 *
 * The program uses libfabric as any application does: fi_mr_reg() before
 * each transfer, fi_close() of the MR after it. The verbs provider hands
 * out cached registrations, so once the memory behind an address is
 * replaced, a monitor that misses it makes the NIC move the old pages'
 * bytes. Each transfer check does three RDMA operations through a
 * registration of the buffer: WRITE from it, READ from it (as a remote
 * target) and WRITE into it (as a remote target).
 *
 * Cases:
 *  cache_hits                     the cache is on: an unchanged buffer
 *                                 gets the same MR back
 *  stale_munmap_map_fixed         munmap + mmap(MAP_FIXED) new bytes, and
 *                                 MAP_FIXED straight over the mapping
 *  stale_malloc_free              glibc free + malloc of a mmapped block
 *                                 at the same address
 *  stale_realloc_mremap           realloc shrink + grow in place (glibc's
 *                                 mremap), and an mremap move with the old
 *                                 address mapped again
 *  stale_madvise_dontneed         DONTNEED of part of a buffer, rewritten
 *  notify_async                   an idle cached range that is unmapped is
 *                                 dropped by the delivery thread's
 *                                 notify(): the next fi_mr_reg() finds
 *                                 no entry
 *
 * Modes:
 *  test_libfabric             calls regwatch_fi_import() first
 *  test_libfabric --preloaded does not; run it with
 *                             LD_PRELOAD=build/libregwatch_fi.so (the
 *                             unmodified-program path)
 *  REGWATCH_FI_BITE=1         (either mode) the blind test monitor: valid()
 *                             always true, no notify, i.e. a cache with no
 *                             working monitor. Every stale_* and notify_*
 *                             case must then fail: the test bites.
 *  REGWATCH_FI_NO_NOTIFY=1    (either mode) no delivery thread: valid()
 *                             alone must keep every transfer correct
 *                             (each stale_* case then checks that valid()
 *                             did say "stale"); notify_async must fail.
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "bytes_util.h"
#include "regwatch_libfabric.h"

#define PAGE		4096UL
#define NODE		"10.77.0.1"	/* veth0 under rxe0 (guest-init.sh) */
#define SERVICE		"47592"
#define XFER_MAX	(2UL << 20)
#define CQ_MS		20000
#define EQ_MS		10000
#define MMAP_THRESHOLD	(128UL << 10)
#define ACCESS		(FI_SEND | FI_RECV | FI_READ | FI_WRITE | \
			 FI_REMOTE_READ | FI_REMOTE_WRITE)

/* ---- the libfabric rig ---------------------------------------------------- */

struct rig {
	struct fi_info *info;		/* the listener's (FI_SOURCE) */
	struct fi_info *cinfo;		/* the client's */
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_eq *eq;
	struct fid_pep *pep;
	struct fid_ep *cep, *sep;	/* client, and the accepted server ep */
	struct fid_cq *ccq, *scq;
	char *sink, *src;		/* stable buffers, registered once */
	struct fid_mr *sink_mr, *src_mr;
};

static struct rig rig;
static bool preloaded;
static int (*stats_fn)(struct regwatch_fi_stats *);
static bool blind, no_notify;

static bool env_on(const char *name)
{
	const char *v = getenv(name);

	return v && *v && strcmp(v, "0");
}

#define FI_CHECK(call) do {						\
	int rc_ = (int)(call);						\
	if (rc_)							\
		fail_msg("%s: %s", #call, fi_strerror(-rc_));		\
} while (0)

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait for one EQ event of the given kind (others are dropped). */
static void eq_wait(uint32_t want, struct fi_eq_cm_entry *e)
{
	struct fi_eq_err_entry err;
	uint32_t ev;
	ssize_t n;

	for (;;) {
		n = fi_eq_sread(rig.eq, &ev, e, sizeof(*e), EQ_MS, 0);
		if (n == -FI_EAVAIL) {
			memset(&err, 0, sizeof(err));
			fi_eq_readerr(rig.eq, &err, 0);
			fail_msg("EQ error: %s (prov %d)",
				 fi_strerror(err.err), err.prov_errno);
		}
		if (n < 0)
			fail_msg("fi_eq_sread waiting for event %u: %s", want,
				 fi_strerror((int)-n));
		if (ev == want)
			return;
		if (ev == FI_CONNREQ)
			fi_freeinfo(e->info);
	}
}

static void cq_wait(struct fid_cq *cq, const char *what)
{
	struct fi_cq_entry ce;
	struct fi_cq_err_entry err;
	uint64_t deadline = now_ms() + CQ_MS;
	ssize_t n;

	for (;;) {
		n = fi_cq_read(cq, &ce, 1);
		if (n == 1)
			return;
		if (n == -FI_EAVAIL) {
			memset(&err, 0, sizeof(err));
			fi_cq_readerr(cq, &err, 0);
			fail_msg("%s: completion error %s (prov %d)", what,
				 fi_strerror(err.err), err.prov_errno);
		}
		if (n != -FI_EAGAIN)
			fail_msg("%s: fi_cq_read: %s", what,
				 fi_strerror((int)-n));
		if (now_ms() > deadline)
			fail_msg("%s: no completion in %d ms", what, CQ_MS);
	}
}

static struct fi_info *make_hints(void)
{
	struct fi_info *h = fi_allocinfo();

	assert_non_null(h);
	h->ep_attr->type = FI_EP_MSG;
	h->caps = FI_MSG | FI_RMA;
	h->mode = FI_CONTEXT;
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR |
				  FI_MR_ALLOCATED | FI_MR_PROV_KEY;
	h->fabric_attr->prov_name = strdup("verbs");
	return h;
}

static void open_ep(struct fi_info *info, struct fid_ep **ep,
		    struct fid_cq **cq)
{
	struct fi_cq_attr ca = { .size = 64, .format = FI_CQ_FORMAT_CONTEXT };

	FI_CHECK(fi_cq_open(rig.domain, &ca, cq, NULL));
	FI_CHECK(fi_endpoint(rig.domain, info, ep, NULL));
	FI_CHECK(fi_ep_bind(*ep, &rig.eq->fid, 0));
	FI_CHECK(fi_ep_bind(*ep, &(*cq)->fid, FI_TRANSMIT | FI_RECV));
	FI_CHECK(fi_enable(*ep));
}

static struct fid_mr *reg(void *buf, size_t len)
{
	struct fid_mr *mr = NULL;

	FI_CHECK(fi_mr_reg(rig.domain, buf, len, ACCESS, 0, 0, 0, &mr, NULL));
	return mr;
}

static void rig_open(void)
{
	struct fi_info *hints = make_hints();
	struct fi_eq_attr ea = { .size = 16, .wait_obj = FI_WAIT_UNSPEC };
	struct fi_eq_cm_entry e;
	uint32_t ver = FI_VERSION(1, 14);

	FI_CHECK(fi_getinfo(ver, NODE, SERVICE, FI_SOURCE, hints, &rig.info));
	FI_CHECK(fi_getinfo(ver, NODE, SERVICE, 0, hints, &rig.cinfo));
	fi_freeinfo(hints);
	FI_CHECK(fi_fabric(rig.info->fabric_attr, &rig.fabric, NULL));
	FI_CHECK(fi_eq_open(rig.fabric, &ea, &rig.eq, NULL));
	/* One domain (one MR cache) for both ends of the loopback. */
	FI_CHECK(fi_domain(rig.fabric, rig.info, &rig.domain, NULL));

	FI_CHECK(fi_passive_ep(rig.fabric, rig.info, &rig.pep, NULL));
	FI_CHECK(fi_pep_bind(rig.pep, &rig.eq->fid, 0));
	FI_CHECK(fi_listen(rig.pep));

	open_ep(rig.cinfo, &rig.cep, &rig.ccq);
	FI_CHECK(fi_connect(rig.cep, rig.cinfo->dest_addr, NULL, 0));
	eq_wait(FI_CONNREQ, &e);
	open_ep(e.info, &rig.sep, &rig.scq);
	fi_freeinfo(e.info);
	FI_CHECK(fi_accept(rig.sep, NULL, 0));
	/* Both ends report CONNECTED, in either order. */
	for (int seen = 0; seen != 3;) {
		eq_wait(FI_CONNECTED, &e);
		seen |= e.fid == &rig.sep->fid ? 1 :
			e.fid == &rig.cep->fid ? 2 : 0;
	}

	rig.sink = mmap(NULL, 2 * XFER_MAX, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(rig.sink != MAP_FAILED);
	rig.src = rig.sink + XFER_MAX;
	memset(rig.sink, 0, 2 * XFER_MAX);
	rig.sink_mr = reg(rig.sink, XFER_MAX);
	rig.src_mr = reg(rig.src, XFER_MAX);
}

static void close_fid(void *fidp)
{
	struct fid **f = fidp;

	if (*f)
		fi_close(*f);
	*f = NULL;
}

static void rig_close(void)
{
	close_fid(&rig.sink_mr);
	close_fid(&rig.src_mr);
	close_fid(&rig.cep);
	close_fid(&rig.sep);
	close_fid(&rig.pep);
	close_fid(&rig.ccq);
	close_fid(&rig.scq);
	close_fid(&rig.domain);
	close_fid(&rig.eq);
	close_fid(&rig.fabric);
	fi_freeinfo(rig.info);
	fi_freeinfo(rig.cinfo);
	if (rig.sink)
		munmap(rig.sink, 2 * XFER_MAX);
	memset(&rig, 0, sizeof(rig));
}

/* ---- transfers through cached registrations ------------------------------ */

static void poison(char *p, size_t len)
{
	memset(p, 0xee, len);
}

static void expect_same(const char *dev, const char *cpu, size_t len,
			const char *op, const char *what)
{
	size_t first = 0, n = bu_ndiff(dev, cpu, len, &first);

	if (!n)
		return;
	fail_msg("%s: %s moved stale bytes: %zu of %zu differ, first at "
		 "+%#zx (device %#x, CPU %#x)", what, op, n, len, first,
		 (unsigned char)dev[first], (unsigned char)cpu[first]);
}

/*
 * Three RDMA operations through a fresh fi_mr_reg() of [buf, buf + len)
 * each (a hit or a miss of libfabric's cache), each checked against the
 * CPU's view: WRITE from buf, READ from buf, WRITE into buf.
 */
static void check_xfers(char *buf, size_t len, const char *what)
{
	static uint64_t tag = 1;
	struct fi_context ctx;
	struct fid_mr *mr;

	assert_true(len <= XFER_MAX);

	/* buf as a local source. */
	poison(rig.sink, len);
	mr = reg(buf, len);
	FI_CHECK(fi_write(rig.cep, buf, len, fi_mr_desc(mr), 0,
			  (uint64_t)(uintptr_t)rig.sink, fi_mr_key(rig.sink_mr),
			  &ctx));
	cq_wait(rig.ccq, what);
	fi_close(&mr->fid);
	expect_same(rig.sink, buf, len, "RDMA WRITE from it", what);

	/* buf as a remote READ target. */
	poison(rig.sink, len);
	mr = reg(buf, len);
	FI_CHECK(fi_read(rig.cep, rig.sink, len, fi_mr_desc(rig.sink_mr), 0,
			 (uint64_t)(uintptr_t)buf, fi_mr_key(mr), &ctx));
	cq_wait(rig.ccq, what);
	fi_close(&mr->fid);
	expect_same(rig.sink, buf, len, "RDMA READ from it", what);

	/* buf as a remote WRITE target: new bytes must land in it. */
	bu_pattern(rig.src, len, tag++);
	mr = reg(buf, len);
	FI_CHECK(fi_write(rig.cep, rig.src, len, fi_mr_desc(rig.src_mr), 0,
			  (uint64_t)(uintptr_t)buf, fi_mr_key(mr), &ctx));
	cq_wait(rig.ccq, what);
	fi_close(&mr->fid);
	expect_same(buf, rig.src, len, "RDMA WRITE into it", what);
}

static char *map_fill(void *at, size_t len, int byte)
{
	char *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE |
		       MAP_ANONYMOUS | (at ? MAP_FIXED : 0), -1, 0);

	if (p == MAP_FAILED)
		fail_msg("mmap(%p, %zu): %s", at, len, strerror(errno));
	memset(p, byte, len);
	return p;
}

static bool stats(struct regwatch_fi_stats *st)
{
	if (!stats_fn) {
		memset(st, 0, sizeof(*st));
		return false;
	}
	assert_int_equal(stats_fn(st), 0);
	return true;
}

/* Addresses compared across free() (hidden from use-after-free checks). */
static inline uintptr_t addr_of(const void *p)
{
	uintptr_t a = (uintptr_t)p;

	__asm__("" : "+r"(a));
	return a;
}

/*
 * check_xfers() after the memory under a cached range was replaced. With
 * no notify, only valid() can have caught it: check that it said stale.
 */
static void check_fresh(char *buf, size_t len, const char *what)
{
	struct regwatch_fi_stats a, b;
	bool have = stats(&a);

	check_xfers(buf, len, what);
	if (no_notify && have && !blind) {
		stats(&b);
		if (b.valid_false == a.valid_false)
			fail_msg("%s: valid() never said stale", what);
	}
}

/* ---- the cases ------------------------------------------------------------ */

static void test_cache_hits(void **state)
{
	const size_t len = 8 * PAGE;
	struct regwatch_fi_stats a, b;
	char *buf = map_fill(NULL, len, 'A');
	struct fid_mr *m1, *m2;
	uint64_t k1;

	(void)state;
	stats(&a);
	m1 = reg(buf, len);
	k1 = fi_mr_key(m1);
	fi_close(&m1->fid);
	m2 = reg(buf, len);
	assert_true(m2 == m1 && fi_mr_key(m2) == k1);	/* a cache hit */
	fi_close(&m2->fid);
	if (stats(&b)) {
		assert_int_equal(b.subscribes, a.subscribes + 1);
		assert_true(b.valid_calls > a.valid_calls);
		assert_true(b.starts >= 1);
	}
	check_xfers(buf, len, "unchanged buffer");
	munmap(buf, len);
}

static void test_stale_munmap_map_fixed(void **state)
{
	const size_t len = 16 * PAGE;
	char *buf = map_fill(NULL, len, 'A');

	(void)state;
	check_xfers(buf, len, "fresh mapping");
	check_xfers(buf, len, "same mapping again (hits)");
	assert_int_equal(munmap(buf, len), 0);
	assert_ptr_equal(map_fill(buf, len, 'B'), buf);
	check_fresh(buf, len, "munmap + mmap(MAP_FIXED), new 'B'");
	map_fill(buf, len, 'C');
	check_fresh(buf, len, "mmap(MAP_FIXED) over the mapping, new 'C'");
	munmap(buf, len);
}

static void test_stale_malloc_free(void **state)
{
	const size_t len = 256 << 10;	/* above MMAP_THRESHOLD: mmapped */
	char *held[16], *p, *q = NULL;
	uintptr_t pa;
	int n = 0;

	(void)state;
	p = malloc(len);
	assert_non_null(p);
	pa = addr_of(p);
	memset(p, 'A', len);
	check_xfers(p, len, "malloc'd block");
	free(p);
	/* mmap is top-down: holes above the old block are filled first. */
	while (n < 16) {
		q = malloc(len);
		if (!q || addr_of(q) == pa)
			break;
		held[n++] = q;
		q = NULL;
	}
	for (int i = 0; i < n; i++)
		free(held[i]);
	if (!q)
		fail_msg("premise: malloc(%zu) did not return the freed "
			 "address %#lx", len, (unsigned long)pa);
	memset(q, 'B', len);
	check_fresh(q, len, "free + malloc at the same address, new 'B'");
	free(q);
}

static void test_stale_realloc_mremap(void **state)
{
	const size_t big = 512 << 10, small = 160 << 10;
	char *p, *q, *moved;
	uintptr_t pa;

	(void)state;
	p = malloc(big);
	assert_non_null(p);
	pa = addr_of(p);
	memset(p, 'A', big);
	check_xfers(p, big, "malloc'd block");
	q = realloc(p, small);		/* glibc: mremap shrinks in place */
	if (addr_of(q) != pa)
		fail_msg("premise: the shrinking realloc moved the block");
	q = realloc(q, big);		/* and grows it again in place */
	if (addr_of(q) != pa)
		fail_msg("premise: the growing realloc did not stay in place");
	memset(q, 'B', big);
	check_fresh(q, big, "realloc shrink + grow (mremap), new 'B'");
	free(q);

	/* mremap move: the pages leave, new memory at the old address. */
	p = map_fill(NULL, 32 * PAGE, 'M');
	check_xfers(p, 32 * PAGE, "mapping to be moved");
	moved = mremap(p, 32 * PAGE, 64 * PAGE, MREMAP_MAYMOVE);
	assert_true(moved != MAP_FAILED);
	if (moved == p)
		fail_msg("premise: mremap did not move the mapping");
	assert_ptr_equal(mmap(p, 32 * PAGE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS |
			      MAP_FIXED_NOREPLACE, -1, 0), p);
	memset(p, 'N', 32 * PAGE);
	check_fresh(p, 32 * PAGE, "old address of a moved mapping, new 'N'");
	check_xfers(moved, 32 * PAGE, "the moved pages at their new address");
	munmap(p, 32 * PAGE);
	munmap(moved, 64 * PAGE);
}

static void test_stale_madvise_dontneed(void **state)
{
	const size_t len = 64 * PAGE, off = 16 * PAGE, run = 32 * PAGE;
	char *buf = map_fill(NULL, len, 'A');

	(void)state;
	check_xfers(buf, len, "buffer");
	check_xfers(buf + off, run, "its middle run");
	assert_int_equal(madvise(buf + off, run, MADV_DONTNEED), 0);
	for (size_t i = 0; i < run; i++)
		if (buf[off + i])
			fail_msg("premise: DONTNEED did not zero the run");
	memset(buf + off, 'D', run);
	check_fresh(buf + off, run, "DONTNEED run rewritten with 'D'");
	check_xfers(buf, len, "whole buffer after DONTNEED");
	munmap(buf, len);
}

/*
 * The delivery thread: an idle cached entry whose memory is unmapped is
 * dropped through notify() with no further call from the program. Seen
 * from outside: the notify is counted and the subscription retired, and
 * the next fi_mr_reg() of the range finds no entry at all (libfabric
 * calls valid() only on an entry it found).
 */
static void test_notify_async(void **state)
{
	const size_t len = 8 * PAGE;
	struct regwatch_fi_stats a, b, c;
	char *buf = map_fill(NULL, len, 'A');
	struct fid_mr *mr;
	uint64_t deadline;

	(void)state;
	check_xfers(buf, len, "buffer");
	stats(&a);
	munmap(buf, len);
	deadline = now_ms() + 5000;
	do {
		usleep(10000);
		stats(&b);
	} while (b.live >= a.live && now_ms() < deadline);
	if (b.notifies == a.notifies || b.live >= a.live)
		fail_msg("no notify() for the unmapped range within 5 s "
			 "(notifies %llu -> %llu, live %llu -> %llu)",
			 (unsigned long long)a.notifies,
			 (unsigned long long)b.notifies,
			 (unsigned long long)a.live,
			 (unsigned long long)b.live);
	assert_ptr_equal(map_fill(buf, len, 'B'), buf);
	mr = reg(buf, len);
	stats(&c);
	fi_close(&mr->fid);
	if (c.valid_calls != b.valid_calls)
		fail_msg("libfabric still had the entry: the notify did not "
			 "drop it");
	check_xfers(buf, len, "new mapping after the notify");
	munmap(buf, len);
}

/* ---- setup ---------------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	rig_open();
	return 0;
}

static int group_teardown(void **state)
{
	struct regwatch_fi_stats st;

	(void)state;
	rig_close();
	if (stats(&st))
		fprintf(stderr, "regwatch_fi%s: subscribes %llu (refused %llu) "
			"unsubscribes %llu valid %llu (stale %llu) events %llu "
			"notifies %llu live %llu\n", blind ? " (blind)" : "",
			(unsigned long long)st.subscribes,
			(unsigned long long)st.subscribe_errors,
			(unsigned long long)st.unsubscribes,
			(unsigned long long)st.valid_calls,
			(unsigned long long)st.valid_false,
			(unsigned long long)st.events,
			(unsigned long long)st.notifies,
			(unsigned long long)st.live);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_hits),
		cmocka_unit_test(test_stale_munmap_map_fixed),
		cmocka_unit_test(test_stale_malloc_free),
		cmocka_unit_test(test_stale_realloc_mremap),
		cmocka_unit_test(test_stale_madvise_dontneed),
		cmocka_unit_test(test_notify_async),
	};
	blind = env_on("REGWATCH_FI_BITE");
	no_notify = env_on("REGWATCH_FI_NO_NOTIFY");
	/* Fixed glibc thresholds: mmapped blocks come back where they were. */
	mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
	mallopt(M_TRIM_THRESHOLD, 64 << 10);

	if (argc > 1 && !strcmp(argv[1], "--preloaded")) {
		/* The preloaded library's copy: the program's own static
		 * copy is not in the dynamic symbol table. */
		preloaded = true;
		stats_fn = (int (*)(struct regwatch_fi_stats *))
			dlsym(RTLD_DEFAULT, "regwatch_fi_stats");
		if (!stats_fn) {
			fprintf(stderr, "--preloaded: libregwatch_fi.so is not "
				"preloaded\n");
			return 1;
		}
	} else {
		struct regwatch_fi_options o = {
			.flags = (blind ? REGWATCH_FI_TEST_BLIND : 0) |
				 (no_notify ? REGWATCH_FI_TEST_NO_NOTIFY : 0),
		};
		int rc = regwatch_fi_import(&o);

		if (rc) {
			fprintf(stderr, "regwatch_fi_import: %s\n",
				strerror(-rc));
			return 1;
		}
		stats_fn = regwatch_fi_stats;
	}
	fprintf(stderr, "monitor: regwatch, %s%s%s\n",
		preloaded ? "preloaded" : "regwatch_fi_import()",
		blind ? ", BLIND (test bite: stale cases must fail)" : "",
		no_notify ? ", no notify (valid() alone)" : "");
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
