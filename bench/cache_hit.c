// SPDX-License-Identifier: MIT
/*
 * Host micro-benchmark of the registration cache's hit path: get + put
 * with a no-op backend at 10^5 cached regions, thread-safe and
 * single-threaded, for
 *   hot:    the same region again and again;
 *   random: regions in a random order (the same precomputed stream for
 *           every mode);
 *   inside: random regions, requests starting inside a 4-page entry
 *           (alias hits after the first slow-path hit).
 * The monitor is a stand-in with one state word per watch in a flat
 * array, like the kernel's shared state-word area (the hit path loads the
 * entry's word exactly as with the kernel monitor).
 *
 * Each figure is the median over batches of ns per get+put, with the
 * 10th-90th percentile spread. Ratios are printed only between figures
 * measured in this same run.
 *
 *   cache_hit [--quick] [--regions N]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_monitor.h"
#include "regwatch_cache.h"

/* ------------------------------------------------ stand-in monitor */

struct array_monitor {
	struct cache_monitor base;
	uint64_t *states;
	uint32_t n, max;
};

static int am_watch(struct cache_monitor *m, uintptr_t addr, size_t len,
		    uint64_t cookie, struct cache_watch *w)
{
	struct array_monitor *a = (struct array_monitor *)m;

	(void)addr; (void)len; (void)cookie;
	if (a->n == a->max)
		return -ENOSPC;
	a->states[a->n] = (1ULL << 32) | REGWATCH_STATE_ARMED;
	w->state = &a->states[a->n];
	w->armed = a->states[a->n];
	w->id = (1ULL << 32) | a->n;
	a->n++;
	return 0;
}

static int am_unwatch(struct cache_monitor *m, const struct cache_watch *w)
{
	(void)m; (void)w;
	return 0;
}

static int am_drain(struct cache_monitor *m, regwatch_event_cb cb, void *arg)
{
	(void)m; (void)cb; (void)arg;
	return 0;
}

static int am_fd(struct cache_monitor *m)
{
	(void)m;
	return -1;
}

static void am_destroy(struct cache_monitor *m, bool in_child)
{
	(void)in_child;
	free(((struct array_monitor *)m)->states);
	free(m);
}

static const struct cache_monitor_ops am_ops = {
	am_watch, am_unwatch, am_drain, am_fd, am_destroy,
};

static struct cache_monitor *array_monitor(uint32_t max)
{
	struct array_monitor *a = calloc(1, sizeof(*a));

	a->base.ops = &am_ops;
	a->base.name = "array";
	a->max = max;
	a->states = aligned_alloc(64, ((size_t)max * 8 + 63) / 64 * 64);
	if (!a->states)
		exit(1);
	return &a->base;
}

/* ---------------------------------------------------- no-op backend */

static int noop_reg(void *ctx, void *addr, size_t len, uint32_t access,
		    void **handle, struct regwatch_cache_reg_info *info)
{
	(void)ctx; (void)len; (void)access; (void)info;
	*handle = addr;
	return 0;
}

static int noop_dereg(void *ctx, void *handle)
{
	(void)ctx; (void)handle;
	return 0;
}

/* ------------------------------------------------------------ bench */

#define PAGE	4096UL
#define BASE	((uintptr_t)0x100000000000ULL)
#define STRIDE	(8 * PAGE)

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct result {
	double med, p10, p90;
};

static struct result summarize(double *v, int n)
{
	struct result r;

	qsort(v, n, sizeof(*v), cmp_double);
	r.med = v[n / 2];
	r.p10 = v[n / 10];
	r.p90 = v[n * 9 / 10];
	return r;
}

static volatile uintptr_t sink;

/* ns per get+put, per batch of `ops`, over a stream of region indices. */
static struct result run(struct regwatch_cache *c, const uint32_t *stream,
			 size_t stream_len, size_t off, int batches, int ops)
{
	double *v = malloc(batches * sizeof(*v));
	size_t pos = 0;
	int b, i;

	for (b = 0; b < batches; b++) {
		double t0 = now_ns();

		for (i = 0; i < ops; i++) {
			struct regwatch_cache_entry *e;
			void *a = (void *)(BASE + stream[pos] * STRIDE + off);

			if (++pos == stream_len)
				pos = 0;
			if (regwatch_cache_get(c, a, 64, 0, &e)) {
				fprintf(stderr, "get failed\n");
				exit(1);
			}
			sink += (uintptr_t)regwatch_cache_entry_handle(e);
			regwatch_cache_put(c, e);
		}
		v[b] = (now_ns() - t0) / ops;
	}
	struct result r = summarize(v, batches);
	free(v);
	return r;
}

struct mode_results {
	struct result hot, random, inside;
	uint64_t misses, slow_hits;
};

static struct mode_results bench_mode(uint32_t flags, uint32_t regions,
				      const uint32_t *rnd, size_t rnd_len,
				      int batches, int ops)
{
	struct regwatch_cache_options o = { .flags = flags };
	struct regwatch_cache_backend be = { noop_reg, noop_dereg, NULL };
	struct regwatch_cache *c;
	struct regwatch_cache_stats st;
	struct mode_results m;
	uint32_t zero = 0, i;

	if (regwatch_cache_create_with_monitor(&o, &be, array_monitor(regions * 2), &c)) {
		fprintf(stderr, "create failed\n");
		exit(1);
	}
	for (i = 0; i < regions; i++) {	/* fill: 4-page entries */
		struct regwatch_cache_entry *e;

		if (regwatch_cache_get(c, (void *)(BASE + i * STRIDE), 4 * PAGE, 0, &e))
			exit(1);
		regwatch_cache_put(c, e);
	}
	m.hot = run(c, &zero, 1, 0, batches, ops);
	run(c, rnd, rnd_len, 0, batches / 4 + 1, ops);		/* warm */
	m.random = run(c, rnd, rnd_len, 0, batches, ops);
	for (i = 0; i < regions; i++) {	/* aliases for the inside case */
		struct regwatch_cache_entry *e;

		if (regwatch_cache_get(c, (void *)(BASE + i * STRIDE + PAGE + 100),
				       64, 0, &e))
			exit(1);
		regwatch_cache_put(c, e);
	}
	m.inside = run(c, rnd, rnd_len, PAGE + 100, batches, ops);
	regwatch_cache_stats(c, &st);
	m.misses = st.misses;
	m.slow_hits = st.slow_hits;
	regwatch_cache_destroy(c);
	return m;
}

static void line(const char *what, struct result r)
{
	printf("  %-8s %7.1f ns  [p10 %6.1f, p90 %6.1f]\n", what, r.med, r.p10, r.p90);
}

int main(int argc, char **argv)
{
	uint32_t regions = 100000, i;
	int quick = 0, batches, ops;
	size_t rnd_len = 1 << 20;
	uint32_t *rnd;
	uint64_t s = 88172645463325252ULL;
	struct mode_results mt, st;

	for (i = 1; i < (uint32_t)argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = 1;
		else if (!strcmp(argv[i], "--regions") && i + 1 < (uint32_t)argc)
			regions = strtoul(argv[++i], NULL, 0);
		else {
			fprintf(stderr, "usage: %s [--quick] [--regions N]\n", argv[0]);
			return 2;
		}
	}
	batches = quick ? 21 : 201;
	ops = quick ? 10000 : 50000;
	rnd = malloc(rnd_len * sizeof(*rnd));
	for (i = 0; i < rnd_len; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		rnd[i] = (uint32_t)(s % regions);
	}
	printf("regwatch cache hit benchmark: %u regions (4-page entries), "
	       "no-op backend, get+put, %d batches x %d ops%s\n",
	       regions, batches, ops, quick ? " (quick)" : "");
	mt = bench_mode(0, regions, rnd, rnd_len, batches, ops);
	st = bench_mode(REGWATCH_CACHE_SINGLE_THREAD, regions, rnd, rnd_len,
			batches, ops);
	printf("thread-safe:\n");
	line("hot", mt.hot);
	line("random", mt.random);
	line("inside", mt.inside);
	printf("single-thread:\n");
	line("hot", st.hot);
	line("random", st.random);
	line("inside", st.inside);
	printf("ratios (this run): random/hot thread-safe %.2f, single %.2f; "
	       "thread-safe/single hot %.2f, random %.2f\n",
	       mt.random.med / mt.hot.med, st.random.med / st.hot.med,
	       mt.hot.med / st.hot.med, mt.random.med / st.random.med);
	printf("check: misses %llu/%llu (expect %u each), slow-path hits %llu/%llu\n",
	       (unsigned long long)mt.misses, (unsigned long long)st.misses, regions,
	       (unsigned long long)mt.slow_hits, (unsigned long long)st.slow_hits);
	free(rnd);
	return mt.misses == regions && st.misses == regions ? 0 : 1;
}
