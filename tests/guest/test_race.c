// SPDX-License-Identifier: MIT
/*
 * The WATCH race, end to end with a real RDMA device (rxe).
 *
 * A registration cache does: WATCH the range, register it (which pins the
 * pages), then trust the registration while the watch is armed. That is
 * only safe if WATCH returns after any invalidation already running in the
 * address space has finished: a notifier inserted in the middle of an
 * invalidation never hears of it, and a registration made at that moment
 * can pin pages the invalidation is about to drop.
 *
 * A hammer thread keeps zapping a big anonymous range R (MADV_DONTNEED,
 * one VMA, so one long invalidation) and repopulating it with a new
 * pattern; the tail T of R is where we look. The main thread waits until
 * a zap has started, WATCHes T, registers T with ibv_reg_mr and then
 * pauses the hammer at the end of its round. If the watch still says
 * valid, the MR and the CPU must see the same bytes (RDMA READ through the
 * MR vs. a plain read). A mismatch while the watch says valid is the bug.
 *
 * With the module's test-only test_skip_watch_sync=Y (WATCH does not wait
 * for the running invalidation) this test fails: T is pinned while the zap
 * is still busy with the front of R, the zap then drops those pages and
 * the watch never hears of it.
 *
 * Knobs: REGWATCH_RACE_MB (size of R, default 32), REGWATCH_RACE_ITERS
 * (default 60), REGWATCH_RACE_SECONDS (default 60).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "regwatch.h"
#include "rwt_util.h"
#include "rxe_util.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define T_PAGES 16
#define T_BYTES (T_PAGES * RWT_PAGE)
#define MR_ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ)

static long env_long(const char *name, long dflt)
{
	const char *s = getenv(name);

	return s && *s ? strtol(s, NULL, 0) : dflt;
}

/* Write the round's pattern into every 8-byte word of T. */
static void write_pattern(char *t, uint64_t round)
{
	uint64_t *w = (uint64_t *)t;
	size_t i;

	for (i = 0; i < T_BYTES / 8; i++)
		w[i] = round << 32 | i;
}

/* ---- the hammer ------------------------------------------------------------ */

struct hammer {
	char *r;
	size_t r_len;
	char *t;			/* last T_PAGES pages of r */
	atomic_ulong zaps;		/* incremented just before each zap */
	atomic_bool pause;
	atomic_bool parked;
	atomic_bool stop;
	atomic_int errors;
	uint64_t zap_ns;		/* total time in madvise(DONTNEED) */
};

static void *hammer_fn(void *arg)
{
	struct hammer *h = arg;
	uint64_t round, t0;

	for (round = 1; !atomic_load(&h->stop); round++) {
		if (atomic_load(&h->pause)) {
			atomic_store(&h->parked, true);
			while (atomic_load(&h->pause) && !atomic_load(&h->stop))
				usleep(100);	/* leave the CPU to rxe */
			atomic_store(&h->parked, false);
			if (atomic_load(&h->stop))
				break;
		}
		atomic_fetch_add(&h->zaps, 1);
		t0 = rwt_now_ns();
		if (madvise(h->r, h->r_len, MADV_DONTNEED))
			atomic_fetch_add(&h->errors, 1);
		h->zap_ns += rwt_now_ns() - t0;
		/* Repopulate R so the next zap has every page to drop; the
		 * kernel does it without a fault per page. */
		if (madvise(h->r, h->r_len, MADV_POPULATE_WRITE))
			atomic_fetch_add(&h->errors, 1);
		write_pattern(h->t, round);
	}
	atomic_store(&h->parked, true);
	return NULL;
}

static void hammer_pause(struct hammer *h)
{
	atomic_store(&h->pause, true);
	while (!atomic_load(&h->parked))
		sched_yield();
}

static void hammer_resume(struct hammer *h)
{
	atomic_store(&h->pause, false);
	while (atomic_load(&h->parked))
		sched_yield();
}

static int ignore_cb(const struct regwatch_event *ev, void *arg)
{
	(void)ev;
	(void)arg;
	return 0;
}

/* ---- shared set-up ------------------------------------------------------ */

static struct rxeu rx;
static char *sink;
static struct ibv_mr *sink_mr;

static int setup(void **state)
{
	(void)state;
	/* Fork protection would madvise(DONTFORK) every MR and so split
	 * R's VMA: keep libibverbs from turning it on. */
	unsetenv("RDMAV_FORK_SAFE");
	unsetenv("IBV_FORK_SAFE");
	if (rxeu_open(&rx, NULL))
		return -1;
	sink = rwt_map_anon(T_BYTES);
	sink_mr = sink ? rxeu_reg_mr(&rx, sink, T_BYTES,
				     IBV_ACCESS_LOCAL_WRITE) : NULL;
	return sink_mr ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	rxeu_dereg(sink_mr);
	rxeu_close(&rx);
	munmap(sink, T_BYTES);
	return 0;
}

/* RDMA READ all of T through mr into the sink. */
static void read_through(struct ibv_mr *mr, char *t)
{
	memset(sink, 0xee, T_BYTES);
	assert_int_equal(rxeu_read(&rx, sink_mr, sink, mr, (uintptr_t)t,
				   T_BYTES, 10000), 0);
}

/*
 * The oracle works: a registration that outlives a DONTNEED really reads
 * the old pages, and the watch made before it says so. Without this the
 * race test could pass by never being able to see a stale MR.
 */
static void test_stale_registration_is_visible(void **state)
{
	char *t = rwt_map_anon(T_BYTES);
	struct regwatch *rw;
	struct regwatch_ref ref;
	struct ibv_mr *mr;

	(void)state;
	assert_int_equal(regwatch_open(NULL, &rw), 0);
	write_pattern(t, 1);
	assert_int_equal(regwatch_watch(rw, t, T_BYTES, 1, 0, &ref), 0);
	mr = rxeu_reg_mr(&rx, t, T_BYTES, MR_ACCESS);
	assert_non_null(mr);
	assert_true(regwatch_ref_valid(&ref));
	read_through(mr, t);
	assert_memory_equal(sink, t, T_BYTES);

	assert_int_equal(madvise(t, T_BYTES, MADV_DONTNEED), 0);
	write_pattern(t, 2);
	read_through(mr, t);
	/* the MR still has round 1, the CPU round 2 ... */
	assert_int_equal(((uint64_t *)sink)[0] >> 32, 1);
	assert_int_equal(((uint64_t *)t)[0] >> 32, 2);
	/* ... and the watch told us. */
	assert_false(regwatch_ref_valid(&ref));
	assert_int_equal(rxeu_dereg(mr), 0);
	regwatch_close(rw);
	munmap(t, T_BYTES);
}

static void test_watch_then_register_race(void **state)
{
	const unsigned int delays_us[] = { 0, 5, 20, 50, 150, 400, 1000 };
	long mb = env_long("REGWATCH_RACE_MB", 32);
	long iters = env_long("REGWATCH_RACE_ITERS", 60);
	uint64_t deadline = rwt_now_ns() +
		(uint64_t)env_long("REGWATCH_RACE_SECONDS", 60) * 1000000000ULL;
	struct hammer h = { 0 };
	struct regwatch *rw;
	struct regwatch_ref ref, keep;
	char *cpu = malloc(T_BYTES);
	long it, checked = 0, fired = 0, stale = 0;
	long long skip_sync = -1;
	uint64_t pin_ns = 0, t0;
	pthread_t tid;
	size_t bad = 0;

	(void)state;
	rwt_param_get("test_skip_watch_sync", &skip_sync);
	fprintf(stderr, "R = %ld MiB, T = %d pages at its end, "
		"test_skip_watch_sync = %lld\n", mb, T_PAGES, skip_sync);
	h.r_len = (size_t)mb << 20;
	h.r = rwt_map_anon(h.r_len);
	assert_non_null(h.r);
	assert_non_null(cpu);
	h.t = h.r + h.r_len - T_BYTES;
	write_pattern(h.t, 0);

	assert_int_equal(regwatch_open(NULL, &rw), 0);
	/* The first watch of an mm registers its notifier under the mmap
	 * write lock, which would serialise with the zap: do it now. */
	assert_int_equal(regwatch_watch(rw, cpu, 1, 0, 0, &keep), 0);

	assert_int_equal(pthread_create(&tid, NULL, hammer_fn, &h), 0);
	for (it = 0; it < iters && rwt_now_ns() < deadline; it++) {
		unsigned long seen = atomic_load(&h.zaps);
		unsigned int d = delays_us[it % (sizeof(delays_us) /
						 sizeof(delays_us[0]))];
		struct ibv_mr *mr;

		/* Catch the start of a fresh zap of R... */
		while (atomic_load(&h.zaps) == seen)
			;
		t0 = rwt_now_ns();
		while (rwt_now_ns() - t0 < d * 1000ULL)
			;
		/* ...and register T while it runs: watch first, as a
		 * cache must. */
		t0 = rwt_now_ns();
		assert_int_equal(regwatch_watch(rw, h.t, T_BYTES, (uint64_t)it,
						0, &ref), 0);
		mr = rxeu_reg_mr(&rx, h.t, T_BYTES, MR_ACCESS);
		pin_ns += rwt_now_ns() - t0;
		assert_non_null(mr);

		/* Let the hammer finish its round, then look. */
		hammer_pause(&h);
		if (regwatch_ref_valid(&ref)) {
			checked++;
			read_through(mr, h.t);
			memcpy(cpu, h.t, T_BYTES);
			if (memcmp(sink, cpu, T_BYTES)) {
				stale++;
				for (bad = 0; bad < T_BYTES / 8; bad++)
					if (((uint64_t *)sink)[bad] !=
					    ((uint64_t *)cpu)[bad])
						break;
			}
		} else {
			fired++;
		}
		assert_int_equal(rxeu_dereg(mr), 0);
		assert_int_equal(regwatch_unwatch(rw, &ref), 0);
		regwatch_drain(rw, ignore_cb, NULL);
		if (stale)
			break;
		hammer_resume(&h);
	}
	atomic_store(&h.stop, true);
	atomic_store(&h.pause, false);
	pthread_join(tid, NULL);

	fprintf(stderr, "%ld iterations: %ld checked (watch still valid), "
		"%ld skipped (watch fired), %ld stale; zap %.2f ms avg, "
		"watch + register %.2f ms avg\n", it + (stale ? 1 : 0), checked,
		fired, stale,
		atomic_load(&h.zaps) ? h.zap_ns / 1e6 / atomic_load(&h.zaps) : 0,
		it + stale ? pin_ns / 1e6 / (double)(it + stale) : 0);
	assert_int_equal(atomic_load(&h.errors), 0);
	if (stale)
		fail_msg("iteration %ld: the watch was still valid but the MR "
			 "reads stale memory: word %zu (page %zu of T) is "
			 "%#llx through the MR, %#llx for the CPU (round "
			 "%llu vs %llu)", it, bad, bad * 8 / RWT_PAGE,
			 (unsigned long long)((uint64_t *)sink)[bad],
			 (unsigned long long)((uint64_t *)cpu)[bad],
			 (unsigned long long)(((uint64_t *)sink)[bad] >> 32),
			 (unsigned long long)(((uint64_t *)cpu)[bad] >> 32));
	/* A pass must have looked: most rounds leave the watch valid. */
	if (checked < 5 || checked < it / 4)
		fail_msg("inconclusive: only %ld of %ld iterations could be "
			 "checked", checked, it);
	regwatch_close(rw);
	munmap(h.r, h.r_len);
	free(cpu);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stale_registration_is_visible),
		cmocka_unit_test(test_watch_then_register_race),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
