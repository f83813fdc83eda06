/* SPDX-License-Identifier: MIT */
/*
 * regwatch cache demo: an application sends from heap buffers over RDMA
 * (Soft-RoCE: rxe0, a loopback RC queue pair) and registers them through
 * libregwatch's registration cache. It reuses, frees and reallocates its
 * buffers as applications do. After each step it RDMA-READs the buffer
 * through the registration the cache handed out -- exactly the bytes the
 * NIC would send -- and compares them with what the CPU wrote.
 *
 * The same sequence runs twice: with the `none` monitor (a cache that never
 * hears of freed memory: what a registration cache without malloc hooks or
 * a memory monitor does) and with the regwatch kernel monitor.
 *
 * Run it where regwatch.ko is loaded and rxe0 is up (make demo boots such a
 * guest), with `ulimit -l unlimited`. Exit status 0 when the monitored run
 * sent no stale byte.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "regwatch_cache.h"
#include "regwatch_ibverbs.h"
#include "rxe_util.h"

#define KIB		1024UL
#define PAGE		4096UL
#define BUF		(256 * KIB)
#define POOL		(64 * KIB)
#define ACCESS		(REGWATCH_CACHE_ACCESS_LOCAL_WRITE | \
			 REGWATCH_CACHE_ACCESS_REMOTE_READ)

static struct rxeu rx;
static char *sink;
static struct ibv_mr *sink_mr;

struct run {
	struct regwatch_cache *c;
	const char *mon;
	bool uffd;
	int sends, stale;
	struct regwatch_cache_stats last;
};

/* The uffd monitor (no regwatch.ko) marks watches from a reader thread:
 * an event loop waits for the cache's fd before reusing memory. */
static void settle(struct run *r)
{
	struct pollfd p = { .fd = regwatch_cache_fd(r->c), .events = POLLIN };

	if (r->uffd)
		poll(&p, 1, 1000);
}

/* "Send" [buf, buf + len): get the registration from the cache and RDMA
 * READ through it; print what the cache did and what the NIC saw. */
static int send_buf(struct run *r, int step, const char *what, const char *buf,
		    size_t len)
{
	struct regwatch_cache_entry *e;
	struct regwatch_cache_stats st;
	size_t i, bad = 0, first = 0;
	char how[48] = "";
	int rc;

	memset(sink, 0, len);
	rc = regwatch_cache_get(r->c, buf, len, ACCESS, &e);
	if (rc) {
		fprintf(stderr, "regwatch_cache_get: %s\n", strerror(-rc));
		return rc;
	}
	rc = rxeu_read(&rx, sink_mr, sink, regwatch_cache_entry_mr(e),
		       (uintptr_t)buf, len, 20000);
	regwatch_cache_put(r->c, e);
	if (rc)
		return rc;
	regwatch_cache_stats(r->c, &st);
	for (i = len; i-- > 0;)
		if (sink[i] != buf[i]) {
			bad++;
			first = i;
		}
	r->sends++;
	if (st.invalidations > r->last.invalidations)
		snprintf(how, sizeof(how), ", %" PRIu64 " invalidated (%s)",
			 st.invalidations - r->last.invalidations,
			 st.by_class[0] > r->last.by_class[0] ? "unmap" : "clear");
	printf("  %d. %-52s %s%s\n", step, what,
	       st.misses > r->last.misses ? "miss: registered" : "hit",
	       how);
	if (!bad) {
		printf("     the NIC sent %zu KiB of '%c': correct\n", len / KIB,
		       sink[0]);
	} else {
		r->stale++;
		printf("     the NIC sent '%c' where memory holds '%c': %zu of %zu "
		       "KiB STALE (freed memory went on the wire)\n",
		       sink[first], buf[first], bad / KIB, len / KIB);
	}
	r->last = st;
	return 0;
}

/* The application's life: one buffer reused, freed, reallocated. */
static int story(struct run *r)
{
	char *p, *q, *pool, *half, *end;
	uintptr_t at;
	int rc;

	p = malloc(BUF);
	memset(p, 'A', BUF);
	if ((rc = send_buf(r, 1, "malloc(256 KiB), write 'A', send", p, BUF)))
		return rc;
	memset(p, 'a', BUF);
	if ((rc = send_buf(r, 2, "write 'a' into the same buffer, send", p, BUF)))
		return rc;

	at = (uintptr_t)p;
	free(p);
	settle(r);
	q = malloc(BUF);
	memset(q, 'B', BUF);
	if ((rc = send_buf(r, 3, (uintptr_t)q == at ?
			   "free, malloc(256 KiB): same address, write 'B'" :
			   "free, malloc(256 KiB) elsewhere, write 'B'", q, BUF)))
		return rc;

	p = realloc(q, 64 * KIB);	/* mremap: the tail is unmapped */
	settle(r);
	p = realloc(p, BUF);		/* ... and mapped again, fresh */
	memset(p, 'C', BUF);
	if ((rc = send_buf(r, 4, "realloc to 64 KiB and back (mremap), 'C'",
			   p, BUF)))
		return rc;

	half = (char *)(((uintptr_t)p + BUF / 2) & ~(PAGE - 1));
	end = (char *)(((uintptr_t)p + BUF) & ~(PAGE - 1));
	madvise(half, (size_t)(end - half), MADV_DONTNEED);	/* as jemalloc */
	settle(r);
	memset(p, 'D', BUF);
	if ((rc = send_buf(r, 5, "madvise(DONTNEED) of half, as jemalloc, 'D'",
			   p, BUF)))
		return rc;
	free(p);

	pool = mmap(NULL, POOL, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pool == MAP_FAILED)
		return -errno;
	memset(pool, 'E', POOL);
	if ((rc = send_buf(r, 6, (uintptr_t)pool >= at && (uintptr_t)pool < at + BUF ?
			   "mmap a 64 KiB pool (where the buffer was), 'E'" :
			   "mmap a 64 KiB pool, write 'E'", pool, POOL)))
		return rc;
	munmap(pool, POOL);
	settle(r);
	mmap(pool, POOL, PROT_READ | PROT_WRITE,
	     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	memset(pool, 'F', POOL);
	if ((rc = send_buf(r, 7, "munmap, mmap(MAP_FIXED) it again, write 'F'",
			   pool, POOL)))
		return rc;
	munmap(pool, POOL);
	return 0;
}

static int run(struct run *r, enum regwatch_cache_monitor mon,
	       const char *title)
{
	struct regwatch_cache_options o = { .monitor = mon };
	int rc;

	memset(r, 0, sizeof(*r));
	rc = regwatch_cache_create_ibv(&o, rx.pd, &r->c);
	if (rc) {
		fprintf(stderr, "regwatch_cache_create_ibv: %s\n", strerror(-rc));
		return rc;
	}
	r->mon = regwatch_cache_monitor_name(r->c);
	r->uffd = !strcmp(r->mon, "uffd");
	printf("== %s (monitor \"%s\")\n", title, r->mon);
	rc = story(r);
	regwatch_cache_stats(r->c, &r->last);
	printf("  cache: %" PRIu64 " hits, %" PRIu64 " misses, %" PRIu64
	       " invalidations (unmap %" PRIu64 ", clear %" PRIu64 ")\n",
	       r->last.hits, r->last.misses, r->last.invalidations,
	       r->last.by_class[0], r->last.by_class[1]);
	regwatch_cache_destroy(r->c);
	return rc;
}

int main(void)
{
	struct run none, mon;
	char label[16];
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Fixed thresholds: 256 KiB blocks are mmapped and come back at the
	 * same address, as they do in long-running applications. */
	mallopt(M_MMAP_THRESHOLD, 128 * KIB);
	mallopt(M_TRIM_THRESHOLD, 128 * KIB);

	printf("regwatch registration cache demo: RDMA on rxe0 through "
	       "libregwatch's cache\n\n"
	       "An application sends from buffers it reuses, frees and "
	       "reallocates. Each send\ngets the buffer's registration from "
	       "the cache (a miss calls ibv_reg_mr, a hit\nreuses one) and the "
	       "NIC reads it over RDMA; we compare what it read with\nwhat the "
	       "CPU wrote.\n\n");
	rc = rxeu_open(&rx, NULL);
	if (rc) {
		fprintf(stderr, "cannot open rxe0 (is Soft-RoCE up?): %s\n",
			strerror(-rc));
		return 1;
	}
	sink = mmap(NULL, BUF, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sink_mr = sink == MAP_FAILED ? NULL :
		  rxeu_reg_mr(&rx, sink, BUF, IBV_ACCESS_LOCAL_WRITE);
	if (!sink_mr)
		return 1;

	if (run(&none, REGWATCH_CACHE_MONITOR_NONE,
		"1. A cache that is never told memory changed"))
		return 1;
	printf("\n");
	if (run(&mon, REGWATCH_CACHE_MONITOR_AUTO,
		"2. The same with regwatch watching every registration"))
		return 1;
	printf("\n");
	snprintf(label, sizeof(label), "%s:", mon.mon);

	printf("== Summary\n"
	       "  none:   %d sends, %d carried STALE bytes: the NIC read pages "
	       "the application\n          had freed, through registrations "
	       "the cache still believed in.\n"
	       "  %-7s %d sends, %d stale: each change of the memory "
	       "invalidated its\n          registration (%" PRIu64 " invalidations"
	       "), the next send registered anew.\n",
	       none.sends, none.stale, label, mon.sends, mon.stale,
	       mon.last.invalidations);
	rxeu_dereg(sink_mr);
	rxeu_close(&rx);
	return mon.stale ? 1 : 0;
}
