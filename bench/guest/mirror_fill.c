// SPDX-License-Identifier: MIT
/*
 * Guest benchmark: mirror mode (/dev/regwatch-mirror) against pinning.
 *
 * Fill: making N pages of populated, private anonymous memory usable by a
 * device,
 *   mirror  regwatch_mirror_map(write) of the range: device faults
 *           (hmm_range_fault) enter the pages in the device page table,
 *           no page is pinned;
 *   pin     ibv_reg_mr(LOCAL_WRITE) of the same range on rxe0 (pins the
 *           pages: pin_user_pages, FOLL_LONGTERM);
 * and tearing it down again (ibv_dereg_mr; the mirror needs no call).
 * Teardown by invalidation: munmap of N pages
 *   plain     no device open;
 *   unmirrored  the device open (its notifier covers the whole address
 *             space), the range never mapped into it;
 *   mirrored  the range mapped into the device page table: the notifier
 *             removes N entries.
 * Every repetition maps fresh memory; the variants of a repetition run in
 * a rotating order. Guest ratios: costs per page are given relative to
 * pinning (fill) and to the plain munmap (teardown).
 *
 *   mirror_fill [--quick] [--out DIR]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench_util.h"
#include "regwatch_mirror.h"
#include "rxe_util.h"

#define PG 4096UL
#define CHUNK (16UL << 20)	/* the module's default mirror_max_xfer */

static struct rxeu rx;
static struct regwatch_mirror *mir;
static struct regwatch_mirror_stats tot;	/* summed over devices */

static void mirror_close(void)
{
	struct regwatch_mirror_stats st = { .size = sizeof(st) };

	if (!regwatch_mirror_stats(mir, &st)) {
		tot.faults += st.faults;
		tot.faulted_pages += st.faulted_pages;
		tot.invalidations += st.invalidations;
		tot.unmapped_pages += st.unmapped_pages;
		tot.retries += st.retries;
	}
	regwatch_mirror_close(mir);
	mir = NULL;
}

static void mirror_map(char *p, size_t len)
{
	size_t off;

	for (off = 0; off < len; off += CHUNK) {
		size_t n = len - off < CHUNK ? len - off : CHUNK;
		int rc = regwatch_mirror_map(mir, p + off, n, true);

		if (rc)
			bench_die("regwatch_mirror_map: %s", strerror(-rc));
	}
}

enum { F_MIRROR, F_PIN, F_UNPIN, T_PLAIN, T_UNMIRRORED, T_MIRRORED, NV };
static const char *const vnames[NV] = {
	"fill: mirror map", "fill: pin (ibv_reg_mr)", "unpin (ibv_dereg_mr)",
	"munmap (no device)", "munmap unmirrored (device open)", "munmap mirrored" };

/* One repetition of variant v over npages; guest ns. */
static double one(int v, size_t npages)
{
	size_t len = npages * PG;
	char *p = bench_map_populated(len);
	struct ibv_mr *mr;
	uint64_t t0, t;

	switch (v) {
	case F_MIRROR:
		t0 = bench_ns();
		mirror_map(p, len);
		t = bench_ns() - t0;
		munmap(p, len);
		return (double)t;
	case F_PIN:
	case F_UNPIN:
		t0 = bench_ns();
		mr = ibv_reg_mr(rx.pd, p, len, IBV_ACCESS_LOCAL_WRITE);
		t = bench_ns() - t0;
		if (!mr)
			bench_die("ibv_reg_mr: %s", strerror(errno));
		t0 = bench_ns();
		if (ibv_dereg_mr(mr))
			bench_die("ibv_dereg_mr");
		if (v == F_UNPIN)
			t = bench_ns() - t0;
		munmap(p, len);
		return (double)t;
	case T_PLAIN:
	case T_UNMIRRORED:
	case T_MIRRORED:
		if (v == T_MIRRORED)
			mirror_map(p, len);
		t0 = bench_ns();
		munmap(p, len);
		return (double)(bench_ns() - t0);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const size_t full_n[] = { 1, 16, 256, 4096, 16384 };
	static const size_t quick_n[] = { 1, 16 };
	const size_t *ns;
	struct bench_opts o;
	int nn, reps, i, k, r, rc, bad = 0;
	char params[512], b1[96], b2[96], b3[96];
	FILE *csv;

	bench_parse(argc, argv, &o, NULL, NULL, NULL);
	ns = o.quick ? quick_n : full_n;
	nn = o.quick ? 2 : 5;
	reps = o.quick ? 3 : 15;

	rc = rxeu_open(&rx, NULL);
	if (rc)
		bench_die("rxe0: %s", strerror(-rc));
	snprintf(params, sizeof(params),
		 "pages N = %zu..%zu of populated private anonymous memory, "
		 "fresh per repetition; %d repetitions, variants in rotating "
		 "order; mirror map for write (chunks of 16 MiB); pin = "
		 "ibv_reg_mr(LOCAL_WRITE) on rxe0", ns[0], ns[nn - 1], reps);
	csv = bench_begin(&o, "mirror_fill",
			  "mirror mode: device-fault fill vs pinning, invalidation teardown",
			  BENCH_GUEST_RATIOS, params,
			  "pages,variant,median_guest_ns,p10_guest_ns,p90_guest_ns,per_page_guest_ns,ratio_median,ratio_p10,ratio_p90,ratio_to");

	printf("\nper-page cost ratios, median [p10, p90] over repetitions\n");
	printf("%7s | %-24s | %-24s | %-24s | %-24s\n", "pages",
	       "mirror fill / pin", "unpin / pin",
	       "munmap unmirrored/plain", "munmap mirrored/plain");
	for (i = 0; i < nn; i++) {
		size_t n = ns[i];
		struct bvec v[NV] = { { 0 } }, rf = { 0 }, ru = { 0 }, rt1 = { 0 }, rt2 = { 0 };
		struct bstat s[NV];
		bool dev_open = false;

		for (r = -1; r < reps; r++) {	/* r = -1: warm-up */
			double t[NV];

			for (k = 0; k < NV; k++) {
				int vv = (k + r + 1) % NV;
				bool want = vv != T_PLAIN;

				/* the device is open for all but the plain munmap */
				if (want && !dev_open) {
					rc = regwatch_mirror_open(&mir);
					if (rc)
						bench_die("regwatch_mirror_open: %s", strerror(-rc));
					dev_open = true;
				} else if (!want && dev_open) {
					mirror_close();
					dev_open = false;
				}
				t[vv] = one(vv, n);
			}
			if (r < 0)
				continue;
			for (k = 0; k < NV; k++)
				bvec_push(&v[k], t[k]);
			bvec_push(&rf, t[F_MIRROR] / t[F_PIN]);
			bvec_push(&ru, t[F_UNPIN] / t[F_PIN]);
			bvec_push(&rt1, t[T_UNMIRRORED] / t[T_PLAIN]);
			bvec_push(&rt2, t[T_MIRRORED] / t[T_PLAIN]);
		}
		if (dev_open)
			mirror_close();
		for (k = 0; k < NV; k++)
			s[k] = bvec_stat(&v[k]);
		{
			struct bstat a = bvec_stat(&rf), b = bvec_stat(&ru);
			struct bstat c = bvec_stat(&rt1), d = bvec_stat(&rt2);
			char b4[96];

			printf("%7zu | %-24s | %-24s | %-24s | %-24s\n", n,
			       bstat_fmt(b1, sizeof(b1), "%.3f", a),
			       bstat_fmt(b2, sizeof(b2), "%.3f", b),
			       bstat_fmt(b3, sizeof(b3), "%.3f", c),
			       bstat_fmt(b4, sizeof(b4), "%.3f", d));
			for (k = 0; k < NV; k++) {
				struct bstat rr = k <= F_UNPIN ?
					(k == F_MIRROR ? a : k == F_UNPIN ? b : (struct bstat){ .med = 1, .p10 = 1, .p90 = 1 }) :
					(k == T_UNMIRRORED ? c : k == T_MIRRORED ? d : (struct bstat){ .med = 1, .p10 = 1, .p90 = 1 });

				fprintf(csv, "%zu,%s,%.0f,%.0f,%.0f,%.1f,%.4f,%.4f,%.4f,%s\n",
					n, vnames[k], s[k].med, s[k].p10, s[k].p90,
					s[k].med / n, rr.med, rr.p10, rr.p90,
					k <= F_UNPIN ? "pin" : "munmap_plain");
			}
		}
		for (k = 0; k < NV; k++)
			bvec_free(&v[k]);
		bvec_free(&rf);
		bvec_free(&ru);
		bvec_free(&rt1);
		bvec_free(&rt2);
	}
	printf("check: devices: faults %llu, faulted pages %llu, "
	       "invalidations %llu, entries removed %llu, retries %llu\n",
	       (unsigned long long)tot.faults, (unsigned long long)tot.faulted_pages,
	       (unsigned long long)tot.invalidations,
	       (unsigned long long)tot.unmapped_pages, (unsigned long long)tot.retries);
	if (!tot.faulted_pages || tot.unmapped_pages < tot.faulted_pages / 2) {
		printf("check: FAILED: the device faulted nothing in\n");
		bad = 1;
	}
	rxeu_close(&rx);
	return bench_end(csv, &o, "mirror_fill") | bad;
}
