// SPDX-License-Identifier: MIT
/*
 * Guest benchmark: registration on Soft-RoCE (rxe0, loopback RC QP).
 *
 * 1. Registration cost per operation, by size (4 KiB..64 MiB):
 *      uncached  ibv_reg_mr + ibv_dereg_mr of a populated buffer;
 *      cached    regwatch_cache_get + regwatch_cache_put of the same buffer
 *                (ibverbs backend, kernel monitor): a hit, after one miss
 *                outside the timing.
 *    Target (issue 6): cached <= 1 % of uncached (>= 100x) at every size.
 * 2. Per-message time of an RDMA WRITE (signalled, waited for) from a
 *    reused source buffer to a pre-registered destination, by size:
 *      prereg    the source registered once (the floor: the transfer);
 *      uncached  register + write + deregister per message;
 *      cached    cache get + write + put per message.
 *
 * Samples of the variants alternate (uncached, cached, ...), so the
 * guest's and the host's load changes hit them alike; each sample is
 * several operations (enough for a few ms of guest time). Figures are
 * guest ratios: under TCG rxe's software data path, the page pinning and
 * every system call are emulated, each slowed down by its own factor.
 *
 *   reg_rxe [--quick] [--out DIR]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench_util.h"
#include "regwatch_cache.h"
#include "regwatch_ibverbs.h"
#include "rxe_util.h"

#define KiB 1024UL
#define MiB (1024UL * 1024)
#define TIMEOUT_MS 60000

static struct rxeu rx;

static void size_str(char *buf, size_t n, size_t len)
{
	if (len >= MiB)
		snprintf(buf, n, "%zu MiB", len / MiB);
	else
		snprintf(buf, n, "%zu KiB", len / KiB);
}

/* ----------------------------------------------------- registration */

static double op_uncached(void *buf, size_t len, int k)
{
	uint64_t t0 = bench_ns();
	int i;

	for (i = 0; i < k; i++) {
		struct ibv_mr *mr = ibv_reg_mr(rx.pd, buf, len, IBV_ACCESS_LOCAL_WRITE);

		if (!mr)
			bench_die("ibv_reg_mr %zu: %s", len, strerror(errno));
		if (ibv_dereg_mr(mr))
			bench_die("ibv_dereg_mr");
	}
	return (double)(bench_ns() - t0) / k;
}

static double op_cached(struct regwatch_cache *c, void *buf, size_t len, int k)
{
	uint64_t t0 = bench_ns();
	int i;

	for (i = 0; i < k; i++) {
		struct regwatch_cache_entry *e;
		int rc = regwatch_cache_get(c, buf, len,
					    REGWATCH_CACHE_ACCESS_LOCAL_WRITE, &e);

		if (rc)
			bench_die("regwatch_cache_get: %s", strerror(-rc));
		if (!regwatch_cache_entry_mr(e))
			bench_die("no MR");
		regwatch_cache_put(c, e);
	}
	return (double)(bench_ns() - t0) / k;
}

/* Operations per sample so that a sample lasts about target_ns. */
static int per_sample(double one_ns, double target_ns, int kmax)
{
	double k = target_ns / (one_ns > 1 ? one_ns : 1);

	if (k < 1)
		return 1;
	return k > kmax ? kmax : (int)k;
}

/* ----------------------------------------------------- RDMA writes */

enum { W_PREREG, W_UNCACHED, W_CACHED, NW };
static const char *const wnames[NW] = { "prereg", "uncached", "cached" };

static double msgs(int how, struct regwatch_cache *c, struct ibv_mr *pre,
		   void *src, struct ibv_mr *dst, size_t len, int k)
{
	uint64_t t0 = bench_ns();
	int i, rc;

	for (i = 0; i < k; i++) {
		struct regwatch_cache_entry *e = NULL;
		struct ibv_mr *mr = pre;

		if (how == W_UNCACHED) {
			mr = ibv_reg_mr(rx.pd, src, len, IBV_ACCESS_LOCAL_WRITE);
			if (!mr)
				bench_die("ibv_reg_mr: %s", strerror(errno));
		} else if (how == W_CACHED) {
			rc = regwatch_cache_get(c, src, len,
						REGWATCH_CACHE_ACCESS_LOCAL_WRITE, &e);
			if (rc)
				bench_die("regwatch_cache_get: %s", strerror(-rc));
			mr = regwatch_cache_entry_mr(e);
		}
		rc = rxeu_write(&rx, mr, src, dst, (uintptr_t)dst->addr, len,
				TIMEOUT_MS);
		if (rc)
			bench_die("rdma write %zu: %s", len, strerror(-rc));
		if (how == W_UNCACHED && ibv_dereg_mr(mr))
			bench_die("ibv_dereg_mr");
		if (how == W_CACHED)
			regwatch_cache_put(c, e);
	}
	return (double)(bench_ns() - t0) / k;
}

int main(int argc, char **argv)
{
	static const size_t full_sizes[] = {
		4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB,
		16 * MiB, 64 * MiB };
	static const size_t quick_sizes[] = { 4 * KiB, 1 * MiB };
	static const size_t full_wsizes[] = { 4 * KiB, 64 * KiB, 1 * MiB };
	static const size_t quick_wsizes[] = { 4 * KiB };
	const size_t *sizes, *wsizes;
	struct regwatch_cache_options copt = {
		.monitor = REGWATCH_CACHE_MONITOR_KERNEL,
	};
	struct regwatch_cache_stats st;
	struct regwatch_cache *c;
	struct bench_opts o;
	int nsizes, nwsizes, samples, wsamples, si, s, rc, bad = 0;
	double target;
	char params[512], b1[96], b2[96], b3[96], sz[32];
	FILE *csv;

	bench_parse(argc, argv, &o, NULL, NULL, NULL);
	sizes = o.quick ? quick_sizes : full_sizes;
	nsizes = o.quick ? 2 : 8;
	wsizes = o.quick ? quick_wsizes : full_wsizes;
	nwsizes = o.quick ? 1 : 3;
	samples = o.quick ? 3 : 21;
	wsamples = o.quick ? 3 : 25;
	target = o.quick ? 2e6 : 2e7;	/* guest ns per sample */

	rc = rxeu_open(&rx, NULL);
	if (rc)
		bench_die("rxe0: %s", strerror(-rc));
	rc = regwatch_cache_create_ibv(&copt, rx.pd, &c);
	if (rc)
		bench_die("regwatch_cache_create_ibv (kernel monitor): %s", strerror(-rc));

	snprintf(params, sizeof(params),
		 "rxe0 loopback RC QP (path MTU 1024); sizes %s..%s; %d samples "
		 "per size and variant (alternating), each ~%.0f ms of guest "
		 "time; regwatch cache: ibverbs backend, kernel monitor, "
		 "access LOCAL_WRITE both ways; RDMA write sizes up to %zu KiB, "
		 "%d samples",
		 "4 KiB", o.quick ? "1 MiB" : "64 MiB", samples, target / 1e6,
		 wsizes[nwsizes - 1] / KiB, wsamples);
	csv = bench_begin(&o, "reg_rxe",
			  "registration on rxe: ibv_reg_mr+ibv_dereg_mr vs regwatch cache hit; RDMA write per message",
			  BENCH_GUEST_RATIOS, params,
			  "part,size_bytes,variant,median_guest_ns,p10_guest_ns,p90_guest_ns,ratio_median,ratio_p10,ratio_p90,ops_per_sample");

	printf("\nregistration per operation (ratio = uncached / cached, per "
	       "sample pair; median [p10, p90])\n");
	printf("%8s | %-30s | %-10s | %s\n", "size", "uncached/cached (x cheaper)",
	       "cached/unc", "target cached <= 1 %");
	for (si = 0; si < nsizes; si++) {
		size_t len = sizes[si];
		void *buf = bench_map_populated(len);
		struct bvec u = { 0 }, h = { 0 }, r = { 0 };
		struct bstat su, sh, sr;
		struct regwatch_cache_entry *e;
		int ku, kh;
		double pct;

		/* one miss (registers), then calibrate both */
		rc = regwatch_cache_get(c, buf, len, REGWATCH_CACHE_ACCESS_LOCAL_WRITE, &e);
		if (rc)
			bench_die("regwatch_cache_get %zu: %s", len, strerror(-rc));
		regwatch_cache_put(c, e);
		ku = per_sample(op_uncached(buf, len, 1), target, 200);
		kh = per_sample(op_cached(c, buf, len, 100), target, 1000000);
		for (s = 0; s < samples; s++) {
			double tu = op_uncached(buf, len, ku);
			double th = op_cached(c, buf, len, kh);

			bvec_push(&u, tu);
			bvec_push(&h, th);
			bvec_push(&r, tu / th);
		}
		su = bvec_stat(&u);
		sh = bvec_stat(&h);
		sr = bvec_stat(&r);
		pct = 100.0 * sh.med / su.med;
		size_str(sz, sizeof(sz), len);
		printf("%8s | %-30s | %8.3f %% | %s\n", sz,
		       bstat_fmt(b1, sizeof(b1), "%.0fx", sr), pct,
		       pct <= 1.0 ? "met" : "NOT met");
		fprintf(csv, "reg,%zu,uncached,%.0f,%.0f,%.0f,1,1,1,%d\n", len,
			su.med, su.p10, su.p90, ku);
		fprintf(csv, "reg,%zu,cached,%.1f,%.1f,%.1f,%.6f,%.6f,%.6f,%d\n",
			len, sh.med, sh.p10, sh.p90, sh.med / su.med,
			sh.p10 / su.med, sh.p90 / su.med, kh);
		fprintf(csv, "reg,%zu,uncached_over_cached,,,,%.1f,%.1f,%.1f,\n",
			len, sr.med, sr.p10, sr.p90);
		bvec_free(&u);
		bvec_free(&h);
		bvec_free(&r);
		/* the buffer goes: its entry is invalidated (UNMAP) */
		munmap(buf, len);
		regwatch_cache_process_events(c);
	}

	printf("\nRDMA WRITE per message, source buffer reused (ratios to the "
	       "pre-registered floor; median [p10, p90])\n");
	printf("%8s | %-26s | %-26s | %-22s | %s\n", "size", "uncached/prereg",
	       "cached/prereg", "uncached/cached", "guest msg/s prereg, unc, cached (emulated)");
	for (si = 0; si < nwsizes; si++) {
		size_t len = wsizes[si];
		void *src = bench_map_populated(len), *dbuf = bench_map_populated(len);
		struct ibv_mr *dst = ibv_reg_mr(rx.pd, dbuf, len,
						IBV_ACCESS_LOCAL_WRITE |
						IBV_ACCESS_REMOTE_WRITE);
		struct ibv_mr *pre = ibv_reg_mr(rx.pd, src, len, IBV_ACCESS_LOCAL_WRITE);
		struct bvec v[NW] = { { 0 } }, ru = { 0 }, rc2 = { 0 }, ruc = { 0 };
		struct bstat sv[NW], a, b, d;
		int k, w;

		if (!dst || !pre)
			bench_die("ibv_reg_mr: %s", strerror(errno));
		msgs(W_CACHED, c, pre, src, dst, len, 1);	/* the miss */
		k = per_sample(msgs(W_UNCACHED, c, pre, src, dst, len, 1),
			       target, 100);
		for (s = 0; s < wsamples; s++) {
			double t[NW];

			for (w = 0; w < NW; w++) {
				int ww = (w + s) % NW;

				t[ww] = msgs(ww, c, pre, src, dst, len, k);
				bvec_push(&v[ww], t[ww]);
			}
			bvec_push(&ru, t[W_UNCACHED] / t[W_PREREG]);
			bvec_push(&rc2, t[W_CACHED] / t[W_PREREG]);
			bvec_push(&ruc, t[W_UNCACHED] / t[W_CACHED]);
		}
		for (w = 0; w < NW; w++)
			sv[w] = bvec_stat(&v[w]);
		a = bvec_stat(&ru);
		b = bvec_stat(&rc2);
		d = bvec_stat(&ruc);
		size_str(sz, sizeof(sz), len);
		printf("%8s | %-26s | %-26s | %-22s | %.0f, %.0f, %.0f\n", sz,
		       bstat_fmt(b1, sizeof(b1), "%.3f", a),
		       bstat_fmt(b2, sizeof(b2), "%.3f", b),
		       bstat_fmt(b3, sizeof(b3), "%.2f", d),
		       1e9 / sv[W_PREREG].med, 1e9 / sv[W_UNCACHED].med,
		       1e9 / sv[W_CACHED].med);
		for (w = 0; w < NW; w++)
			fprintf(csv, "write,%zu,%s,%.0f,%.0f,%.0f,%.4f,%.4f,%.4f,%d\n",
				len, wnames[w], sv[w].med, sv[w].p10, sv[w].p90,
				sv[w].med / sv[W_PREREG].med,
				sv[w].p10 / sv[W_PREREG].med,
				sv[w].p90 / sv[W_PREREG].med, k);
		fprintf(csv, "write,%zu,uncached_over_cached,,,,%.4f,%.4f,%.4f,\n",
			len, d.med, d.p10, d.p90);
		for (w = 0; w < NW; w++)
			bvec_free(&v[w]);
		bvec_free(&ru);
		bvec_free(&rc2);
		bvec_free(&ruc);
		ibv_dereg_mr(pre);
		ibv_dereg_mr(dst);
		munmap(src, len);
		munmap(dbuf, len);
		regwatch_cache_process_events(c);
	}

	regwatch_cache_stats(c, &st);
	printf("check: cache misses %llu (expect %d), invalidations %llu, "
	       "registered now %llu\n", (unsigned long long)st.misses,
	       nsizes + nwsizes, (unsigned long long)st.invalidations,
	       (unsigned long long)st.registered);
	if (st.misses != (uint64_t)(nsizes + nwsizes)) {
		printf("check: FAILED: unexpected misses\n");
		bad = 1;
	}
	regwatch_cache_destroy(c);
	rxeu_close(&rx);
	return bench_end(csv, &o, "reg_rxe") | bad;
}
