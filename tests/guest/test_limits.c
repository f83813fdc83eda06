// SPDX-License-Identifier: MIT
/*
 * Limits: a monitor's max_watches (ENOSPC), the per-user cap over all
 * monitors and processes (EDQUOT, module parameter max_user_watches), the
 * one-shot ring reservation (ENOBUFS), streaming overflow (RESYNC) and
 * batches with good and bad entries mixed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "regwatch.h"
#include "rwt_util.h"

static struct regwatch *open_mon(unsigned int ring, unsigned int max_watches)
{
	struct regwatch_options o = {
		.ring_entries = ring, .max_watches = max_watches,
	};
	struct regwatch *rw = NULL;

	assert_int_equal(regwatch_open(&o, &rw), 0);
	return rw;
}

static struct regwatch_stats stats(struct regwatch *rw)
{
	struct regwatch_stats st;

	assert_int_equal(regwatch_stats(rw, &st), 0);
	return st;
}

static int drain_count_cb(const struct regwatch_event *ev, void *arg)
{
	(void)ev;
	(void)arg;
	return 0;
}

static int drain(struct regwatch *rw)
{
	return regwatch_drain(rw, drain_count_cb, NULL);
}

/* ---- max_watches ---------------------------------------------------- */

static void test_max_watches_enospc(void **state)
{
	struct regwatch *rw = open_mon(64, 8);
	struct regwatch_ref ref[8], extra;
	struct regwatch_watch req[3];
	char *mem = rwt_map_anon(16 * RWT_PAGE);
	int i;

	(void)state;
	assert_int_equal(regwatch_config(rw)->max_watches, 8);
	for (i = 0; i < 8; i++)
		assert_int_equal(regwatch_watch(rw, mem + i * RWT_PAGE,
						RWT_PAGE, i, i & 1, &ref[i]),
				 0);
	assert_int_equal(regwatch_watch(rw, mem + 9 * RWT_PAGE, RWT_PAGE, 9,
					0, &extra), -ENOSPC);
	assert_int_equal(regwatch_watch(rw, mem + 9 * RWT_PAGE, RWT_PAGE, 9,
					REGWATCH_WATCH_STREAMING, &extra),
			 -ENOSPC);
	assert_int_equal(stats(rw).watches, 8);
	for (i = 0; i < 8; i++)
		assert_true(regwatch_ref_valid(&ref[i]));

	/* A free slot is usable at once. */
	assert_int_equal(regwatch_unwatch(rw, &ref[3]), 0);
	assert_int_equal(regwatch_watch(rw, mem + 9 * RWT_PAGE, RWT_PAGE, 9,
					0, &ref[3]), 0);
	assert_int_equal(stats(rw).watches, 8);

	/* A batch fills what is left and reports the rest one by one. */
	assert_int_equal(regwatch_unwatch(rw, &ref[5]), 0);
	memset(req, 0, sizeof(req));
	for (i = 0; i < 3; i++) {
		req[i].addr = (uintptr_t)mem + (10 + i) * RWT_PAGE;
		req[i].len = RWT_PAGE;
	}
	assert_int_equal(regwatch_watchv(rw, req, 3), 1);
	assert_int_equal(req[0].result, 0);
	assert_int_equal(req[1].result, -ENOSPC);
	assert_int_equal(req[2].result, -ENOSPC);
	assert_int_equal(stats(rw).watches, 8);
	regwatch_close(rw);
	munmap(mem, 16 * RWT_PAGE);
}

/* ---- max_user_watches ------------------------------------------------ */

static long long saved_user_cap = -1;

static int save_user_cap(void **state)
{
	(void)state;
	return rwt_param_get("max_user_watches", &saved_user_cap);
}

static int restore_user_cap(void **state)
{
	char buf[32];

	(void)state;
	if (saved_user_cap < 0)
		return -1;
	snprintf(buf, sizeof(buf), "%lld", saved_user_cap);
	return rwt_param_set("max_user_watches", buf);
}

static void set_user_cap(long long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", v);
	assert_int_equal(rwt_param_set("max_user_watches", buf), 0);
}

static void test_user_cap_across_fds(void **state)
{
	struct regwatch *m1 = open_mon(64, 0), *m2 = open_mon(64, 0);
	struct regwatch_ref r1[3], r2[3], extra;
	char *mem = rwt_map_anon(16 * RWT_PAGE);
	uint64_t base;
	int i;

	(void)state;
	base = stats(m1).user_watches;	/* whatever else root holds */
	set_user_cap((long long)base + 5);

	for (i = 0; i < 3; i++)
		assert_int_equal(regwatch_watch(m1, mem + i * RWT_PAGE,
						RWT_PAGE, i, 0, &r1[i]), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(regwatch_watch(m2, mem + i * RWT_PAGE,
						RWT_PAGE, i, 0, &r2[i]), 0);
	/* The cap is per user, over both monitors. */
	assert_int_equal(regwatch_watch(m2, mem + 5 * RWT_PAGE, RWT_PAGE, 5,
					0, &extra), -EDQUOT);
	assert_int_equal(regwatch_watch(m1, mem + 5 * RWT_PAGE, RWT_PAGE, 5,
					REGWATCH_WATCH_STREAMING, &extra),
			 -EDQUOT);
	assert_int_equal(stats(m1).user_watches, base + 5);
	assert_int_equal(stats(m2).user_watches, base + 5);
	assert_int_equal(stats(m1).watches, 3);
	assert_int_equal(stats(m2).watches, 2);

	/* Room freed in one monitor is usable from the other. */
	assert_int_equal(regwatch_unwatch(m1, &r1[0]), 0);
	assert_int_equal(regwatch_watch(m2, mem + 6 * RWT_PAGE, RWT_PAGE, 6,
					0, &r2[2]), 0);
	assert_int_equal(regwatch_watch(m2, mem + 7 * RWT_PAGE, RWT_PAGE, 7,
					0, &extra), -EDQUOT);

	/* Closing a monitor gives its watches back to the user. */
	regwatch_close(m1);
	assert_int_equal(stats(m2).user_watches, base + 3);
	for (i = 0; i < 2; i++)
		assert_int_equal(regwatch_watch(m2, mem + (8 + i) * RWT_PAGE,
						RWT_PAGE, 8 + i, 0, &extra), 0);
	assert_int_equal(regwatch_watch(m2, mem + 10 * RWT_PAGE, RWT_PAGE, 10,
					0, &extra), -EDQUOT);

	/* Lowering the cap below what is held removes nothing. */
	set_user_cap((long long)base + 1);
	assert_int_equal(stats(m2).watches, 5);
	assert_true(regwatch_ref_valid(&r2[0]));
	assert_int_equal(regwatch_watch(m2, mem + 11 * RWT_PAGE, RWT_PAGE, 11,
					0, &extra), -EDQUOT);
	regwatch_close(m2);
	munmap(mem, 16 * RWT_PAGE);
}

static void test_user_cap_across_processes(void **state)
{
	struct regwatch *rw = open_mon(64, 0);
	struct regwatch_ref ref[2];
	char *mem = rwt_map_anon(8 * RWT_PAGE);
	uint64_t base;
	int i, status;
	pid_t pid;

	(void)state;
	base = stats(rw).user_watches;
	set_user_cap((long long)base + 4);
	for (i = 0; i < 2; i++)
		assert_int_equal(regwatch_watch(rw, mem + i * RWT_PAGE,
						RWT_PAGE, i, 0, &ref[i]), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Same uid, own monitor: two left under the cap. */
		struct regwatch *c;
		struct regwatch_ref r;

		if (regwatch_open(NULL, &c))
			_exit(10);
		for (i = 0; i < 2; i++)
			if (regwatch_watch(c, mem + (4 + i) * RWT_PAGE,
					   RWT_PAGE, i, 0, &r))
				_exit(11 + i);
		if (regwatch_watch(c, mem + 6 * RWT_PAGE, RWT_PAGE, 6, 0, &r) !=
		    -EDQUOT)
			_exit(13);
		_exit(0);	/* exit frees the child's two */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("child: status %#x (10 open, 11/12 watch failed, "
			 "13 third watch was not EDQUOT)", status);
	assert_int_equal(stats(rw).user_watches, base + 2);
	for (i = 0; i < 2; i++)
		assert_int_equal(regwatch_watch(rw, mem + (4 + i) * RWT_PAGE,
						RWT_PAGE, 4 + i, 0, &ref[i]), 0);
	assert_int_equal(regwatch_watch(rw, mem + 6 * RWT_PAGE, RWT_PAGE, 6,
					0, &ref[0]), -EDQUOT);
	regwatch_close(rw);
	munmap(mem, 8 * RWT_PAGE);
}

/* ---- one-shot reservation --------------------------------------------- */

static void test_oneshot_reservation(void **state)
{
	struct regwatch *rw = open_mon(8, 0);
	unsigned int ring = regwatch_config(rw)->ring_entries;
	struct regwatch_ref ref[16], extra, s;
	char *mem = rwt_map_anon(32 * RWT_PAGE);
	struct regwatch_stats st;
	unsigned int n = 0;
	int ret;

	(void)state;
	assert_int_equal(ring, 8);
	while ((ret = regwatch_watch(rw, mem + n * RWT_PAGE, RWT_PAGE, n, 0,
				     &ref[n])) == 0 && n < 15)
		n++;
	assert_int_equal(ret, -ENOBUFS);
	/* All of the ring, or all but an entry kept for a RESYNC. */
	fprintf(stderr, "ring of %u takes %u one-shot watches\n", ring, n);
	assert_true(n == ring || n == ring - 1);
	st = stats(rw);
	assert_int_equal(st.watches, n);
	assert_int_equal(st.oneshot_reserved, n);

	/* Streaming watches reserve nothing, so they are still allowed. */
	assert_int_equal(regwatch_watch(rw, mem + 20 * RWT_PAGE, RWT_PAGE, 20,
					REGWATCH_WATCH_STREAMING, &s), 0);
	assert_int_equal(regwatch_unwatch(rw, &s), 0);

	/* Unwatching an armed one-shot watch gives its entry back. */
	assert_int_equal(regwatch_unwatch(rw, &ref[0]), 0);
	assert_int_equal(regwatch_watch(rw, mem, RWT_PAGE, 0, 0, &ref[0]), 0);
	assert_int_equal(regwatch_watch(rw, mem + 16 * RWT_PAGE, RWT_PAGE, 16,
					0, &extra), -ENOBUFS);

	/* A fired, unconsumed event holds the entry, even once unwatched. */
	assert_int_equal(madvise(mem, RWT_PAGE, MADV_DONTNEED), 0);
	assert_false(regwatch_ref_valid(&ref[0]));
	assert_int_equal(regwatch_pending(rw), 1);
	assert_int_equal(regwatch_watch(rw, mem + 16 * RWT_PAGE, RWT_PAGE, 16,
					0, &extra), -ENOBUFS);
	/* Later invalidations of the fired watch merge into its event. */
	uint64_t coalesced = stats(rw).coalesced;
	assert_int_equal(madvise(mem, RWT_PAGE, MADV_DONTNEED), 0);
	assert_int_equal(regwatch_pending(rw), 1);
	assert_int_equal(stats(rw).coalesced, coalesced + 1);
	assert_int_equal(regwatch_unwatch(rw, &ref[0]), 0);
	assert_int_equal(regwatch_watch(rw, mem + 16 * RWT_PAGE, RWT_PAGE, 16,
					0, &extra), -ENOBUFS);
	assert_int_equal(stats(rw).watches, n - 1);
	/* Consuming it frees exactly one entry. */
	assert_int_equal(drain(rw), 1);
	assert_int_equal(regwatch_watch(rw, mem + 16 * RWT_PAGE, RWT_PAGE, 16,
					0, &ref[0]), 0);
	assert_int_equal(regwatch_watch(rw, mem + 17 * RWT_PAGE, RWT_PAGE, 17,
					0, &extra), -ENOBUFS);

	/* Fired and consumed but still watched: the entry is free again
	 * (the watch can never need it a second time). */
	assert_int_equal(madvise(mem + RWT_PAGE, RWT_PAGE, MADV_DONTNEED), 0);
	assert_false(regwatch_ref_valid(&ref[1]));
	assert_int_equal(regwatch_watch(rw, mem + 17 * RWT_PAGE, RWT_PAGE, 17,
					0, &extra), -ENOBUFS);
	assert_int_equal(drain(rw), 1);
	assert_int_equal(regwatch_watch(rw, mem + 17 * RWT_PAGE, RWT_PAGE, 17,
					0, &extra), 0);
	st = stats(rw);
	assert_int_equal(st.watches, n + 1);
	assert_int_equal(st.oneshot_reserved, n);
	regwatch_close(rw);
	munmap(mem, 32 * RWT_PAGE);
}

/* ---- streaming overflow --------------------------------------------- */

static void test_streaming_overflow_resync(void **state)
{
	enum { N = 32 };
	struct rwt_raw r = { .fd = -1 };
	struct regwatch_watch sw, ow;
	struct regwatch_event ev[16];
	struct regwatch_stats st;
	char *mem = rwt_map_anon(64 * RWT_PAGE);
	uint64_t word, overflows;
	size_t n, i, inval = 0, resync = 0, oneshot = 0;

	(void)state;
	assert_int_equal(rwt_raw_open(&r, 8, 0, 0), 0);
	assert_int_equal(r.hdr->ring_entries, 8);
	assert_int_equal(rwt_raw_watch(&r, mem, 48 * RWT_PAGE, 1,
				       REGWATCH_WATCH_STREAMING, &sw), 0);
	assert_int_equal(rwt_raw_watch(&r, mem + 60 * RWT_PAGE, RWT_PAGE, 2, 0,
				       &ow), 0);

	/* N invalidations, one page each, into a ring of 8. */
	for (i = 0; i < N; i++)
		assert_int_equal(madvise(mem + i * RWT_PAGE, RWT_PAGE,
					 MADV_DONTNEED), 0);
	/* A one-shot watch still gets its event: its entry was reserved. */
	assert_int_equal(madvise(mem + 60 * RWT_PAGE, RWT_PAGE, MADV_DONTNEED),
			 0);

	overflows = r.hdr->overflows;
	assert_true(overflows > 0);
	assert_int_equal(rwt_stats_fd(r.fd, &st), 0);
	assert_int_equal(st.overflows, overflows);
	assert_true(st.resyncs >= 1);
	/* Every invalidation moved the state word and the generation. */
	word = rwt_raw_state(&r, sw.watch_id);
	assert_int_equal(word & REGWATCH_STATE_MASK, REGWATCH_STATE_ARMED);
	assert_int_equal(word >> REGWATCH_STATE_COUNT_SHIFT & 0x3fffffff, N);
	assert_int_equal(r.hdr->generation, N + 1);

	n = rwt_raw_drain(&r, ev, 16);
	assert_true(n <= 8);
	for (i = 0; i < n; i++) {
		if (ev[i].type == REGWATCH_EVENT_RESYNC) {
			assert_int_equal(ev[i].watch_id, 0);
			resync++;
		} else if (ev[i].watch_id == ow.watch_id) {
			assert_int_equal(ev[i].flags, REGWATCH_EVENT_ONESHOT);
			oneshot++;
		} else {
			/* The events kept are the first ones, in order. */
			assert_int_equal(ev[i].type, REGWATCH_EVENT_INVALIDATE);
			assert_int_equal(ev[i].watch_id, sw.watch_id);
			assert_int_equal(resync, 0);
			assert_int_equal(ev[i].start,
					 (uintptr_t)mem + inval * RWT_PAGE);
			assert_int_equal(ev[i].end, ev[i].start + RWT_PAGE);
			inval++;
		}
	}
	fprintf(stderr, "%zu kept, %zu RESYNC, %llu overflowed\n", inval,
		resync, (unsigned long long)overflows);
	assert_int_equal(resync, 1);
	assert_int_equal(oneshot, 1);
	/* Nothing vanished without being counted. */
	assert_int_equal(inval + overflows, N);

	/* Once drained, nothing is lost any more. */
	for (i = 0; i < 3; i++)
		assert_int_equal(madvise(mem + (40 + i) * RWT_PAGE, RWT_PAGE,
					 MADV_DONTNEED), 0);
	n = rwt_raw_drain(&r, ev, 16);
	assert_int_equal(n, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(ev[i].type, REGWATCH_EVENT_INVALIDATE);
		assert_int_equal(ev[i].start,
				 (uintptr_t)mem + (40 + i) * RWT_PAGE);
		assert_int_equal(ev[i].end, ev[i].start + RWT_PAGE);
	}
	assert_int_equal(r.hdr->overflows, overflows);

	/* A second overflow gives a second RESYNC. */
	for (i = 0; i < 12; i++)
		assert_int_equal(madvise(mem + i * RWT_PAGE, RWT_PAGE,
					 MADV_DONTNEED), 0);
	n = rwt_raw_drain(&r, ev, 16);
	assert_true(n >= 2 && n <= 8);
	assert_int_equal(ev[n - 1].type, REGWATCH_EVENT_RESYNC);
	assert_int_equal(r.hdr->overflows, overflows + 12 - (n - 1));
	rwt_raw_close(&r);
	munmap(mem, 64 * RWT_PAGE);
}

/* ---- batches ----------------------------------------------------------- */

static void test_batch_mixed(void **state)
{
	struct regwatch *rw = open_mon(0, 0);
	struct regwatch_watch req[6];
	struct regwatch_unwatch un[5];
	struct regwatch_ref ref[6];
	char *mem = rwt_map_anon(8 * RWT_PAGE);
	const int want[6] = { 0, -EINVAL, 0, -EINVAL, 0, -EOVERFLOW };
	int i;

	(void)state;
	memset(req, 0, sizeof(req));
	for (i = 0; i < 6; i++) {
		req[i].addr = (uintptr_t)mem + i * RWT_PAGE;
		req[i].len = RWT_PAGE;
		req[i].cookie = 100 + i;
		req[i].result = 777;
	}
	req[1].len = 0;
	req[2].flags = REGWATCH_WATCH_STREAMING;
	req[3].flags = 1U << 20;
	req[5].addr = UINT64_MAX - 10;
	assert_int_equal(regwatch_watchv(rw, req, 6), 3);
	for (i = 0; i < 6; i++)
		assert_int_equal(req[i].result, want[i]);
	assert_int_equal(stats(rw).watches, 3);
	for (i = 0; i < 6; i += 2) {
		regwatch_ref_from(rw, &req[i], &ref[i]);
		assert_int_not_equal(ref[i].id, 0);
		assert_true(regwatch_ref_valid(&ref[i]));
	}
	assert_true(ref[0].id != ref[2].id && ref[2].id != ref[4].id &&
		    ref[0].id != ref[4].id);

	/* Each is its own watch. */
	assert_int_equal(madvise(mem + 2 * RWT_PAGE, RWT_PAGE, MADV_DONTNEED),
			 0);
	assert_true(regwatch_ref_valid(&ref[0]));
	assert_false(regwatch_ref_valid(&ref[2]));
	assert_true(regwatch_ref_valid(&ref[4]));

	memset(un, 0, sizeof(un));
	un[0].watch_id = ref[0].id;
	un[1].watch_id = ref[0].id + (1ULL << 32);	/* never issued */
	un[2].watch_id = ref[2].id;
	un[3].watch_id = ref[0].id;			/* already gone */
	un[4].watch_id = ref[4].id;
	for (i = 0; i < 5; i++)
		un[i].result = 777;
	assert_int_equal(regwatch_unwatchv(rw, un, 5), 3);
	assert_int_equal(un[0].result, 0);
	assert_int_equal(un[1].result, -ENOENT);
	assert_int_equal(un[2].result, 0);
	assert_int_equal(un[3].result, -ENOENT);
	assert_int_equal(un[4].result, 0);
	assert_int_equal(stats(rw).watches, 0);
	regwatch_close(rw);
	munmap(mem, 8 * RWT_PAGE);
}

/* The largest batch, both ways. */
static void test_batch_max(void **state)
{
	struct regwatch *rw = open_mon(8192, 0);
	struct regwatch_watch *req = calloc(REGWATCH_BATCH_MAX, sizeof(*req));
	struct regwatch_unwatch *un = calloc(REGWATCH_BATCH_MAX, sizeof(*un));
	char *mem = rwt_map_anon(64 * RWT_PAGE);
	int i;

	(void)state;
	assert_non_null(req);
	assert_non_null(un);
	for (i = 0; i < REGWATCH_BATCH_MAX; i++) {
		req[i].addr = (uintptr_t)mem + (i % 64) * RWT_PAGE;
		req[i].len = RWT_PAGE;
		req[i].cookie = (uint64_t)i;
	}
	assert_int_equal(regwatch_watchv(rw, req, REGWATCH_BATCH_MAX),
			 REGWATCH_BATCH_MAX);
	assert_int_equal(stats(rw).watches, REGWATCH_BATCH_MAX);
	for (i = 0; i < REGWATCH_BATCH_MAX; i++) {
		assert_int_equal(req[i].result, 0);
		un[i].watch_id = req[i].watch_id;
	}
	/* 64 watches per page: one munmap of page 5 fires 64. */
	assert_int_equal(munmap(mem + 5 * RWT_PAGE, RWT_PAGE), 0);
	assert_int_equal(regwatch_pending(rw), REGWATCH_BATCH_MAX / 64);
	assert_int_equal(regwatch_unwatchv(rw, un, REGWATCH_BATCH_MAX),
			 REGWATCH_BATCH_MAX);
	assert_int_equal(stats(rw).watches, 0);
	free(req);
	free(un);
	regwatch_close(rw);
	munmap(mem, 64 * RWT_PAGE);
}

/* A batch capped by max_watches part way. */
static void test_batch_hits_max_watches(void **state)
{
	struct regwatch *rw = open_mon(64, 4);
	struct regwatch_watch req[6];
	char *mem = rwt_map_anon(8 * RWT_PAGE);
	int i;

	(void)state;
	memset(req, 0, sizeof(req));
	for (i = 0; i < 6; i++) {
		req[i].addr = (uintptr_t)mem + i * RWT_PAGE;
		req[i].len = RWT_PAGE;
	}
	assert_int_equal(regwatch_watchv(rw, req, 6), 4);
	for (i = 0; i < 6; i++)
		assert_int_equal(req[i].result, i < 4 ? 0 : -ENOSPC);
	assert_int_equal(stats(rw).watches, 4);
	regwatch_close(rw);
	munmap(mem, 8 * RWT_PAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_max_watches_enospc),
		cmocka_unit_test_setup_teardown(test_user_cap_across_fds,
						save_user_cap,
						restore_user_cap),
		cmocka_unit_test_setup_teardown(test_user_cap_across_processes,
						save_user_cap,
						restore_user_cap),
		cmocka_unit_test(test_oneshot_reservation),
		cmocka_unit_test(test_streaming_overflow_resync),
		cmocka_unit_test(test_batch_mixed),
		cmocka_unit_test(test_batch_max),
		cmocka_unit_test(test_batch_hits_max_watches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
