// SPDX-License-Identifier: MIT
/*
 * Notification paths: the eventfd (set, replace, remove, replaced while
 * invalidations signal it), poll/epoll readiness of the regwatch fd, the
 * generation counter, and several threads each getting their own
 * invalidations reported to their own watches.
 *
 * Helper threads never call cmocka: they count errors, the main thread
 * asserts.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "regwatch.h"
#include "rwt_util.h"

static struct regwatch *open_mon(unsigned int ring)
{
	struct regwatch_options o = { .ring_entries = ring };
	struct regwatch *rw = NULL;

	assert_int_equal(regwatch_open(&o, &rw), 0);
	return rw;
}

static int count_cb(const struct regwatch_event *ev, void *arg)
{
	(void)ev;
	(void)arg;
	return 0;
}

/* Non-blocking eventfd read: the count, or 0 if it was not signalled. */
static uint64_t efd_take(int efd)
{
	uint64_t v = 0;

	if (read(efd, &v, sizeof(v)) != sizeof(v)) {
		assert_int_equal(errno, EAGAIN);
		return 0;
	}
	return v;
}

/* Watch one fresh page and invalidate it: exactly one event. */
static void fire_one(struct regwatch *rw, char *page)
{
	struct regwatch_ref ref;

	assert_int_equal(regwatch_watch(rw, page, RWT_PAGE, 0, 0, &ref), 0);
	assert_int_equal(madvise(page, RWT_PAGE, MADV_DONTNEED), 0);
	assert_false(regwatch_ref_valid(&ref));
	assert_int_equal(regwatch_unwatch(rw, &ref), 0);
	assert_int_equal(regwatch_drain(rw, count_cb, NULL), 1);
}

/* ---- eventfd ---------------------------------------------------------- */

static void test_eventfd_set_replace_remove(void **state)
{
	struct regwatch *rw = open_mon(0);
	int e1 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int e2 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	char *mem = rwt_map_anon(8 * RWT_PAGE);
	struct regwatch_ref a, b;

	(void)state;
	assert_true(e1 >= 0 && e2 >= 0);
	assert_int_equal(regwatch_set_eventfd(rw, e1), 0);
	assert_int_equal(efd_take(e1), 0);

	/* One munmap firing two watches signals at least once. */
	assert_int_equal(regwatch_watch(rw, mem, RWT_PAGE, 1, 0, &a), 0);
	assert_int_equal(regwatch_watch(rw, mem + RWT_PAGE, RWT_PAGE, 2,
					REGWATCH_WATCH_STREAMING, &b), 0);
	assert_int_equal(efd_take(e1), 0);	/* WATCH itself is silent */
	assert_int_equal(munmap(mem, 2 * RWT_PAGE), 0);
	assert_true(efd_take(e1) >= 1);
	assert_int_equal(regwatch_drain(rw, count_cb, NULL), 2);
	/* Draining does not signal. */
	assert_int_equal(efd_take(e1), 0);
	assert_int_equal(regwatch_unwatch(rw, &a), 0);
	assert_int_equal(regwatch_unwatch(rw, &b), 0);

	/* Replaced: only the new one hears. */
	assert_int_equal(regwatch_set_eventfd(rw, e2), 0);
	fire_one(rw, mem + 2 * RWT_PAGE);
	assert_int_equal(efd_take(e1), 0);
	assert_true(efd_take(e2) >= 1);

	/* -1 removes it. */
	assert_int_equal(regwatch_set_eventfd(rw, -1), 0);
	fire_one(rw, mem + 3 * RWT_PAGE);
	assert_int_equal(efd_take(e1), 0);
	assert_int_equal(efd_take(e2), 0);
	/* Removing twice is fine. */
	assert_int_equal(regwatch_set_eventfd(rw, -1), 0);

	/* The module holds its own reference: closing our fd of the
	 * eventfd while it is registered is safe, and a dup still hears. */
	int e3 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int e3dup = dup(e3);
	assert_int_equal(regwatch_set_eventfd(rw, e3), 0);
	close(e3);
	fire_one(rw, mem + 4 * RWT_PAGE);
	assert_true(efd_take(e3dup) >= 1);
	close(e3dup);
	/* ...and with every fd of it closed, firing is still safe. */
	fire_one(rw, mem + 5 * RWT_PAGE);

	regwatch_close(rw);
	close(e1);
	close(e2);
	munmap(mem, 8 * RWT_PAGE);
}

struct hammer {
	struct regwatch *rw;
	atomic_bool stop;
	atomic_long rounds;
	atomic_long errors;
	char *area;		/* 16 pages reserved for the hammer */
};

/* Watch, unmap, remap, unwatch: every round fires and signals. */
static void *hammer_fn(void *arg)
{
	struct hammer *h = arg;
	struct regwatch_ref ref;
	unsigned int i = 0;

	while (!atomic_load(&h->stop)) {
		char *p = h->area + (i++ % 8) * 2 * RWT_PAGE;

		bool watched = regwatch_watch(h->rw, p, 2 * RWT_PAGE, i,
					      REGWATCH_WATCH_STREAMING,
					      &ref) == 0;

		if (!watched)
			atomic_fetch_add(&h->errors, 1);
		if (munmap(p, 2 * RWT_PAGE) ||
		    !rwt_map_anon_at(p, 2 * RWT_PAGE))
			atomic_fetch_add(&h->errors, 1);
		/* must have fired before munmap returned */
		if (watched && (regwatch_ref_valid(&ref) ||
				regwatch_unwatch(h->rw, &ref)))
			atomic_fetch_add(&h->errors, 1);
		atomic_fetch_add(&h->rounds, 1);
	}
	return NULL;
}

/*
 * Swap the eventfd (and close the old one at once) while another thread
 * keeps firing watches: the signalling side must never use a context
 * that was just replaced.
 */
static void test_eventfd_replace_while_firing(void **state)
{
	struct hammer h = { .rw = open_mon(256) };
	uint64_t deadline = rwt_now_ns() + 3000000000ULL;
	int efd = -1, swaps = 0;
	pthread_t t;

	(void)state;
	h.area = rwt_map_anon(16 * RWT_PAGE);
	assert_non_null(h.area);
	assert_int_equal(pthread_create(&t, NULL, hammer_fn, &h), 0);
	while (rwt_now_ns() < deadline || swaps < 50) {
		int next = swaps % 7 == 6 ? -1 :
			   eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

		assert_int_equal(regwatch_set_eventfd(h.rw, next), 0);
		if (efd >= 0)
			close(efd);
		efd = next;
		swaps++;
		/* keep the ring from overflowing all the time */
		assert_true(regwatch_drain(h.rw, count_cb, NULL) >= 0);
		if (swaps > 100000)
			break;
	}
	atomic_store(&h.stop, true);
	pthread_join(t, NULL);
	fprintf(stderr, "%d eventfd swaps, %ld watch/unmap rounds\n", swaps,
		atomic_load(&h.rounds));
	assert_int_equal(atomic_load(&h.errors), 0);
	assert_true(atomic_load(&h.rounds) > 0);

	/* The last one set is the one that hears. */
	if (efd < 0)
		efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_int_equal(regwatch_set_eventfd(h.rw, efd), 0);
	regwatch_drain(h.rw, count_cb, NULL);
	efd_take(efd);
	fire_one(h.rw, h.area);
	assert_true(efd_take(efd) >= 1);
	close(efd);
	regwatch_close(h.rw);
	munmap(h.area, 16 * RWT_PAGE);
}

/* ---- poll / epoll ------------------------------------------------------ */

static int poll_in(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n = poll(&p, 1, timeout_ms);

	assert_true(n >= 0);
	assert_int_equal(p.revents & (POLLERR | POLLHUP | POLLNVAL), 0);
	return n ? p.revents : 0;
}

static int epoll_in(int ep, int timeout_ms)
{
	struct epoll_event ev;
	int n = epoll_wait(ep, &ev, 1, timeout_ms);

	assert_true(n >= 0);
	return n ? (int)ev.events : 0;
}

struct delayed_unmap {
	void *addr;
	size_t len;
};

static void *delayed_unmap_fn(void *arg)
{
	struct delayed_unmap *d = arg;

	usleep(200000);
	munmap(d->addr, d->len);
	return NULL;
}

static void test_poll_epoll(void **state)
{
	struct regwatch *rw = open_mon(0);
	int fd = regwatch_fd(rw);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int et = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ee = { .events = EPOLLIN };
	struct epoll_event eet = { .events = EPOLLIN | EPOLLET };
	char *mem = rwt_map_anon(8 * RWT_PAGE);
	struct regwatch_ref a, b, c;
	struct delayed_unmap d = { mem + 4 * RWT_PAGE, RWT_PAGE };
	pthread_t t;
	uint64_t t0;

	(void)state;
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ee), 0);
	assert_int_equal(epoll_ctl(et, EPOLL_CTL_ADD, fd, &eet), 0);

	/* Empty: not readable. A watch alone changes nothing. */
	assert_int_equal(poll_in(fd, 0), 0);
	assert_int_equal(regwatch_watch(rw, mem, RWT_PAGE, 1, 0, &a), 0);
	assert_int_equal(regwatch_watch(rw, mem + RWT_PAGE, RWT_PAGE, 2, 0,
					&b), 0);
	assert_int_equal(poll_in(fd, 0), 0);
	assert_int_equal(epoll_in(ep, 0), 0);
	assert_int_equal(epoll_in(et, 0), 0);

	/* Pending events: readable, level-triggered until consumed. */
	assert_int_equal(madvise(mem, RWT_PAGE, MADV_DONTNEED), 0);
	assert_true(poll_in(fd, 0) & POLLIN);
	assert_true(epoll_in(ep, 0) & EPOLLIN);
	assert_true(epoll_in(ep, 0) & EPOLLIN);
	assert_true(epoll_in(et, 0) & EPOLLIN);
	assert_int_equal(epoll_in(et, 0), 0);	/* edge: reported once */
	/* A new event is a new edge. */
	assert_int_equal(madvise(mem + RWT_PAGE, RWT_PAGE, MADV_DONTNEED), 0);
	assert_true(epoll_in(et, 0) & EPOLLIN);

	/* Consumed through the shared ring (no system call): not readable
	 * any more, the kernel reads the consumer index. */
	assert_int_equal(regwatch_drain(rw, count_cb, NULL), 2);
	assert_int_equal(poll_in(fd, 0), 0);
	assert_int_equal(epoll_in(ep, 0), 0);

	/* A blocked poll wakes when another thread unmaps. */
	assert_int_equal(regwatch_watch(rw, mem + 4 * RWT_PAGE, RWT_PAGE, 3, 0,
					&c), 0);
	t0 = rwt_now_ns();
	assert_int_equal(pthread_create(&t, NULL, delayed_unmap_fn, &d), 0);
	assert_true(poll_in(fd, 20000) & POLLIN);
	pthread_join(t, NULL);
	assert_true(rwt_now_ns() - t0 < 15000000000ULL);
	assert_int_equal(regwatch_drain(rw, count_cb, NULL), 1);

	/* ...and so does a blocked epoll_wait. */
	assert_int_equal(regwatch_watch(rw, mem + 5 * RWT_PAGE, RWT_PAGE, 4, 0,
					&c), 0);
	d.addr = mem + 5 * RWT_PAGE;
	assert_int_equal(pthread_create(&t, NULL, delayed_unmap_fn, &d), 0);
	assert_true(epoll_in(ep, 20000) & EPOLLIN);
	pthread_join(t, NULL);
	assert_int_equal(regwatch_drain(rw, count_cb, NULL), 1);
	assert_int_equal(epoll_in(ep, 0), 0);

	close(ep);
	close(et);
	regwatch_close(rw);
	munmap(mem, 8 * RWT_PAGE);
}

/* ---- generation counter -------------------------------------------------- */

static void test_generation_counter(void **state)
{
	struct regwatch *rw = open_mon(0);
	char *mem = rwt_map_anon(16 * RWT_PAGE);
	struct regwatch_ref a, s, p;
	uint64_t seen = 0;
	int i;

	(void)state;
	assert_false(regwatch_changed(rw, &seen));
	assert_int_equal(regwatch_watch(rw, mem, RWT_PAGE, 1, 0, &a), 0);
	assert_int_equal(regwatch_watch(rw, mem + 2 * RWT_PAGE, 4 * RWT_PAGE,
					2, REGWATCH_WATCH_STREAMING, &s), 0);
	assert_int_equal(regwatch_watch(rw, mem + 8 * RWT_PAGE, RWT_PAGE, 3,
					REGWATCH_WATCH_PROTECTION, &p), 0);
	assert_false(regwatch_changed(rw, &seen));

	/* Invalidating memory nobody watches: no change. */
	assert_int_equal(madvise(mem + RWT_PAGE, RWT_PAGE, MADV_DONTNEED), 0);
	assert_int_equal(munmap(mem + 15 * RWT_PAGE, RWT_PAGE), 0);
	assert_false(regwatch_changed(rw, &seen));

	/* A filtered class (mprotect on a watch without PROTECTION): the
	 * watch did not fire, so nothing changed either. */
	assert_int_equal(mprotect(mem + 2 * RWT_PAGE, RWT_PAGE, PROT_READ), 0);
	assert_true(regwatch_ref_valid(&s));
	assert_false(regwatch_changed(rw, &seen));

	/* A fired watch: changed once, then quiet again. */
	assert_int_equal(madvise(mem, RWT_PAGE, MADV_DONTNEED), 0);
	assert_true(regwatch_changed(rw, &seen));
	assert_int_equal(seen, 1);
	assert_false(regwatch_changed(rw, &seen));
	/* Coalesced into the fired one-shot watch's event: not a new one. */
	assert_int_equal(madvise(mem, RWT_PAGE, MADV_DONTNEED), 0);
	assert_false(regwatch_changed(rw, &seen));

	/* Streaming: every delivered invalidation counts. */
	for (i = 0; i < 3; i++)
		assert_int_equal(madvise(mem + (3 + i) * RWT_PAGE, RWT_PAGE,
					 MADV_DONTNEED), 0);
	assert_true(regwatch_changed(rw, &seen));
	assert_int_equal(seen, 4);

	/* PROTECTION fires a watch that asked for it. */
	assert_int_equal(mprotect(mem + 8 * RWT_PAGE, RWT_PAGE, PROT_READ), 0);
	assert_false(regwatch_ref_valid(&p));
	assert_true(regwatch_changed(rw, &seen));
	assert_int_equal(seen, 5);

	/* Consuming events does not count as a change. */
	assert_true(regwatch_drain(rw, count_cb, NULL) > 0);
	assert_false(regwatch_changed(rw, &seen));
	/* A fresh observer sees everything since the start. */
	uint64_t fresh = 0;
	assert_true(regwatch_changed(rw, &fresh));
	assert_int_equal(fresh, 5);
	regwatch_close(rw);
	munmap(mem, 16 * RWT_PAGE);
}

/* ---- threads ------------------------------------------------------------ */

enum { NTHREADS = 4, ROUNDS = 40, TPAGES = 8 };

struct tstate {
	struct regwatch *rw;
	pthread_barrier_t *bar;
	int idx;
	char *region;			/* TPAGES pages, this thread's */
	struct regwatch_ref hit[ROUNDS];	/* invalidated in the round */
	struct regwatch_ref quiet[ROUNDS];	/* never touched */
	struct regwatch_ref stream;	/* streaming over the whole region */
	int errors;
};

/* Each round: watch two pages of our own, then (all threads at once)
 * invalidate one of them, a different way each round. */
static void *thread_fn(void *arg)
{
	struct tstate *ts = arg;
	int r;

	for (r = 0; r < ROUNDS; r++) {
		char *hit = ts->region + (r % 3) * 2 * RWT_PAGE;
		char *quiet = ts->region + 7 * RWT_PAGE;
		uint64_t cookie = (uint64_t)ts->idx << 32 | (uint64_t)r;

		if (regwatch_watch(ts->rw, hit, RWT_PAGE, cookie, 0,
				   &ts->hit[r]) ||
		    regwatch_watch(ts->rw, quiet, RWT_PAGE, cookie | 1ULL << 31,
				   0, &ts->quiet[r]))
			ts->errors++;
		pthread_barrier_wait(ts->bar);
		switch (r % 3) {
		case 0:
			if (madvise(hit, RWT_PAGE, MADV_DONTNEED))
				ts->errors++;
			break;
		case 1:
			if (munmap(hit, RWT_PAGE) ||
			    !rwt_map_anon_at(hit, RWT_PAGE))
				ts->errors++;
			break;
		default:	/* mmap over it */
			if (!rwt_map_anon_at(hit, RWT_PAGE))
				ts->errors++;
			break;
		}
		/* Reported before the system call returned. */
		if (regwatch_ref_valid(&ts->hit[r]))
			ts->errors += 1000;
		pthread_barrier_wait(ts->bar);	/* main checks */
		pthread_barrier_wait(ts->bar);
	}
	return NULL;
}

struct round_check {
	struct tstate *ts;
	int round;
	int seen[NTHREADS];
	int wrong;
};

static int round_cb(const struct regwatch_event *ev, void *arg)
{
	struct round_check *rc = arg;
	unsigned int t = (unsigned int)(ev->cookie >> 32);
	struct tstate *ts;
	uintptr_t hit;

	if (ev->type != REGWATCH_EVENT_INVALIDATE || t >= NTHREADS) {
		rc->wrong++;
		return 0;
	}
	ts = &rc->ts[t];
	hit = (uintptr_t)ts->region + (rc->round % 3) * 2 * RWT_PAGE;
	if (ev->watch_id == ts->stream.id) {
		/* the streaming watch: this thread's page, nobody else's */
		if (ev->start != hit || ev->end != hit + RWT_PAGE)
			rc->wrong++;
		return 0;
	}
	if (ev->watch_id != ts->hit[rc->round].id ||
	    ev->cookie != ((uint64_t)t << 32 | (uint64_t)rc->round) ||
	    ev->start != hit || ev->end != hit + RWT_PAGE)
		rc->wrong++;
	rc->seen[t]++;
	return 0;
}

static void test_threads_own_watches(void **state)
{
	struct regwatch *rw = open_mon(1024);
	struct tstate ts[NTHREADS];
	pthread_t tid[NTHREADS];
	pthread_barrier_t bar;
	char *mem = rwt_map_anon(NTHREADS * TPAGES * RWT_PAGE);
	int t, r;

	(void)state;
	assert_non_null(mem);
	/*
	 * Keep the region its own small VMA (different flags: no merging
	 * with neighbours). A thread's munmap cuts the VMA, and Linux 6.1
	 * then announces a CLEAR over the whole 2 MiB around the cut when
	 * that 2 MiB lies inside the VMA (__split_huge_pmd(), even with no
	 * huge page), which would fire the other threads' watches.
	 */
	assert_int_equal(madvise(mem, NTHREADS * TPAGES * RWT_PAGE,
				 MADV_NOHUGEPAGE), 0);
	assert_int_equal(pthread_barrier_init(&bar, NULL, NTHREADS + 1), 0);
	memset(ts, 0, sizeof(ts));
	for (t = 0; t < NTHREADS; t++) {
		ts[t].rw = rw;
		ts[t].bar = &bar;
		ts[t].idx = t;
		ts[t].region = mem + t * TPAGES * RWT_PAGE;
		/* pages 0..5 of the region: one event per round */
		assert_int_equal(regwatch_watch(rw, ts[t].region,
						6 * RWT_PAGE,
						(uint64_t)t << 32 | 0x7fffffff,
						REGWATCH_WATCH_STREAMING,
						&ts[t].stream), 0);
	}
	for (t = 0; t < NTHREADS; t++)
		assert_int_equal(pthread_create(&tid[t], NULL, thread_fn,
						&ts[t]), 0);
	for (r = 0; r < ROUNDS; r++) {
		struct round_check rc = { .ts = ts, .round = r };

		pthread_barrier_wait(&bar);	/* watches made */
		pthread_barrier_wait(&bar);	/* invalidations done */
		/* one one-shot + one streaming event per thread */
		assert_int_equal(regwatch_drain(rw, round_cb, &rc),
				 2 * NTHREADS);
		if (rc.wrong)
			fail_msg("round %d: %d events for the wrong watch or "
				 "range", r, rc.wrong);
		for (t = 0; t < NTHREADS; t++) {
			assert_int_equal(rc.seen[t], 1);
			assert_true(regwatch_ref_valid(&ts[t].quiet[r]));
			assert_int_equal(regwatch_unwatch(rw, &ts[t].hit[r]),
					 0);
			assert_int_equal(regwatch_unwatch(rw, &ts[t].quiet[r]),
					 0);
		}
		pthread_barrier_wait(&bar);	/* next round */
	}
	for (t = 0; t < NTHREADS; t++) {
		pthread_join(tid[t], NULL);
		if (ts[t].errors)
			fail_msg("thread %d: %d errors (>= 1000: a watch was "
				 "still valid after its invalidation)", t,
				 ts[t].errors);
	}
	pthread_barrier_destroy(&bar);
	regwatch_close(rw);
	munmap(mem, NTHREADS * TPAGES * RWT_PAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eventfd_set_replace_remove),
		cmocka_unit_test(test_eventfd_replace_while_firing),
		cmocka_unit_test(test_poll_epoll),
		cmocka_unit_test(test_generation_counter),
		cmocka_unit_test(test_threads_own_watches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
