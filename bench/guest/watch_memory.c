// SPDX-License-Identifier: MIT
/*
 * Guest benchmark: kernel memory per watch.
 *
 * Opens a monitor, creates N = 10^5 watches (1-page ranges, every other
 * page of one mapping, so no two are adjacent; REGWATCH_IOC_WATCHV in
 * batches), and measures the kernel memory they took:
 *   - this process's memory cgroup (cgroup v2, created for the run):
 *     memory.stat slab_unreclaimable and kernel (all kernel memory charged
 *     to it: slab, and the monitor's shared pages, which the module
 *     allocates with GFP_KERNEL_ACCOUNT);
 *   - /proc/meminfo SUnreclaim (machine-wide, as a cross-check);
 *   - /proc/slabinfo: the caches that grew most;
 *   - the shared area: CONFIG's shared + consumer sizes, and the module's
 *     page counter in debugfs.
 * Variants:
 *   one-shot   ring and state words sized for N one-shot watches (each
 *              reserves a ring entry: the module parameter
 *              max_ring_entries must allow it; the bench guest raises it);
 *   streaming  the module's default ring, streaming watches (no
 *              reservation): the per-watch cost without the ring;
 *   uffd       for reference, the registration cache's userfaultfd
 *              monitor with min(N, 30000) non-adjacent 1-page watches
 *              (each splits the mapping's VMA: vm.max_map_count = 65530
 *              bounds it).
 * Each variant is repeated; figures are the median and [min, max] over
 * repetitions. Memory sizes are the guest kernel's own (the emulation
 * does not change object sizes), so bytes are reported as such.
 *
 *   watch_memory [--quick] [--out DIR]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "cache_monitor.h"
#include "regwatch.h"

#define PG 4096UL
#define CG_ROOT "/sys/fs/cgroup"

static char cg[256];

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY), ok;

	if (fd < 0)
		return -errno;
	ok = write(fd, s, strlen(s)) == (ssize_t)strlen(s);
	close(fd);
	return ok ? 0 : -EIO;
}

/* A cgroup v2 memory cgroup for this process; false if not possible. */
static bool memcg_setup(void)
{
	char path[300], pid[32];
	struct stat st;

	snprintf(path, sizeof(path), "%s/cgroup.controllers", CG_ROOT);
	if (stat(path, &st) && mount("cgroup2", CG_ROOT, "cgroup2", 0, NULL))
		return false;
	write_str(CG_ROOT "/cgroup.subtree_control", "+memory");
	snprintf(cg, sizeof(cg), "%s/regwatch-bench-%d", CG_ROOT, (int)getpid());
	if (mkdir(cg, 0755) && errno != EEXIST)
		return false;
	snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (write_str(path, pid))
		return false;
	snprintf(path, sizeof(path), "%s/memory.stat", cg);
	return !stat(path, &st);
}

static void memcg_teardown(void)
{
	char pid[32];

	if (!cg[0])
		return;
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	write_str(CG_ROOT "/cgroup.procs", pid);
	rmdir(cg);
}

static long long stat_field(const char *path, const char *key, long long scale)
{
	FILE *f = fopen(path, "r");
	char line[256];
	size_t kl = strlen(key);
	long long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && (line[kl] == ' ' || line[kl] == ':')) {
			char *p = line + kl + 1;

			while (*p == ' ')
				p++;
			v = atoll(p) * scale;
			break;
		}
	fclose(f);
	return v;
}

/* Slab caches: name -> bytes (active objects x object size). */
#define MAXSLAB 512
struct slabs {
	int n;
	char name[MAXSLAB][64];
	long long bytes[MAXSLAB];
};

static void read_slabs(struct slabs *s)
{
	FILE *f = fopen("/proc/slabinfo", "r");
	char line[512];

	s->n = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f) && s->n < MAXSLAB) {
		char name[64];
		long long active, total, size;

		if (line[0] == '#' || !strncmp(line, "slabinfo", 8))
			continue;
		if (sscanf(line, "%63s %lld %lld %lld", name, &active, &total, &size) != 4)
			continue;
		snprintf(s->name[s->n], sizeof(s->name[0]), "%s", name);
		s->bytes[s->n++] = active * size;
	}
	fclose(f);
}

struct snap {
	long long cg_slab, cg_kernel, sunreclaim;
	struct slabs sl;
};

static void snap(struct snap *s)
{
	char path[300];

	sync();
	usleep(20000);
	snprintf(path, sizeof(path), "%s/memory.stat", cg);
	s->cg_slab = cg[0] ? stat_field(path, "slab_unreclaimable", 1) : -1;
	s->cg_kernel = cg[0] ? stat_field(path, "kernel", 1) : -1;
	s->sunreclaim = stat_field("/proc/meminfo", "SUnreclaim", 1024);
	read_slabs(&s->sl);
}

/* The 3 caches that grew most from a to b, as text. */
static void top_slabs(const struct snap *a, const struct snap *b, long n,
		      char *out, size_t len)
{
	int used[3] = { -1, -1, -1 }, k, i, j;
	size_t off = 0;

	out[0] = 0;
	for (k = 0; k < 3; k++) {
		long long best = 0;

		for (i = 0; i < b->sl.n; i++) {
			long long before = 0, d;

			if (i == used[0] || i == used[1])
				continue;
			for (j = 0; j < a->sl.n; j++)
				if (!strcmp(a->sl.name[j], b->sl.name[i])) {
					before = a->sl.bytes[j];
					break;
				}
			d = b->sl.bytes[i] - before;
			if (d > best) {
				best = d;
				used[k] = i;
			}
		}
		if (used[k] < 0)
			break;
		off += snprintf(out + off, len - off, "%s%s +%.0f B/watch",
				k ? "; " : "", b->sl.name[used[k]], (double)best / n);
		if (off >= len)
			break;
	}
}

static long long modstat_pages(void)
{
	return stat_field("/sys/kernel/debug/regwatch/stats", "pages", 1);
}

enum { V_ONESHOT, V_STREAM, V_UFFD, NV };
static const char *const vnames[NV] = { "regwatch one-shot", "regwatch streaming", "uffd monitor" };

struct result {
	struct bvec cg_slab, cg_kernel, sunrec, shared, leak;
	long n;
	char top[256];
	char note[128];
};

/*
 * Add one repetition's figures: per watch, what the n watches took between
 * s1 (monitor open) and s2 (all watched); the leak, what s3 (all closed)
 * still holds above s0 (before the open).
 */
static void account(struct result *r, long n, const struct snap *s0,
		    const struct snap *s1, const struct snap *s2,
		    const struct snap *s3)
{
	if (s2->cg_slab >= 0) {
		bvec_push(&r->cg_slab, (double)(s2->cg_slab - s1->cg_slab) / n);
		bvec_push(&r->cg_kernel, (double)(s2->cg_kernel - s1->cg_kernel) / n);
		bvec_push(&r->leak, (double)(s3->cg_kernel - s0->cg_kernel));
	}
	bvec_push(&r->sunrec, (double)(s2->sunreclaim - s1->sunreclaim) / n);
	top_slabs(s1, s2, n, r->top, sizeof(r->top));
}

static int run_regwatch(int v, long n, struct result *r)
{
	struct regwatch_options ro = { .max_watches = (unsigned int)n + 16 };
	struct regwatch_watch *req;
	struct regwatch *rw;
	struct snap s0, s1, s2, s3;
	char *region;
	long i, done;
	int rc;

	if (v == V_ONESHOT)
		ro.ring_entries = (unsigned int)n + 16;
	region = mmap(NULL, 2 * n * PG, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	req = calloc(REGWATCH_BATCH_MAX, sizeof(*req));
	if (region == MAP_FAILED || !req)
		bench_die("out of memory");
	snap(&s0);
	rc = regwatch_open(&ro, &rw);
	if (rc) {
		snprintf(r->note, sizeof(r->note), "regwatch_open(ring %u): %s",
			 ro.ring_entries, strerror(-rc));
		munmap(region, 2 * n * PG);
		free(req);
		return rc;
	}
	snap(&s1);
	for (done = 0; done < n;) {
		int b = n - done < REGWATCH_BATCH_MAX ? (int)(n - done) : REGWATCH_BATCH_MAX;

		memset(req, 0, b * sizeof(*req));
		for (i = 0; i < b; i++) {
			req[i].addr = (uintptr_t)(region + 2 * (done + i) * PG);
			req[i].len = PG;
			req[i].cookie = done + i + 1;
			req[i].flags = v == V_STREAM ? REGWATCH_WATCH_STREAMING : 0;
		}
		rc = regwatch_watchv(rw, req, b);
		if (rc != b)
			bench_die("regwatch_watchv: %d of %d: %s", rc, b,
				  strerror(rc < 0 ? -rc : -req[rc].result));
		done += b;
	}
	snap(&s2);
	{
		const struct regwatch_config *cfg = regwatch_config(rw);

		bvec_push(&r->shared, (double)(cfg->shared_size + cfg->consumer_size));
		snprintf(r->note, sizeof(r->note),
			 "ring %u entries; %u state words; module pages %lld",
			 cfg->ring_entries, cfg->max_watches, modstat_pages());
	}
	regwatch_close(rw);
	snap(&s3);
	account(r, n, &s0, &s1, &s2, &s3);
	/* the shared area itself: charged at open */
	if (s1.cg_kernel >= 0)
		snprintf(r->note + strlen(r->note), sizeof(r->note) - strlen(r->note),
			 "; open charged %.0f KiB", (double)(s1.cg_kernel - s0.cg_kernel) / 1024);
	munmap(region, 2 * n * PG);
	free(req);
	r->n = n;
	return 0;
}

static int run_uffd(long n, struct result *r)
{
	struct cache_monitor *m;
	struct cache_watch *w = calloc(n, sizeof(*w));
	struct snap s0, s1, s2, s3;
	char *region;
	long i;
	int rc;

	region = mmap(NULL, 2 * n * PG, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (region == MAP_FAILED || !w)
		bench_die("out of memory");
	snap(&s0);
	rc = cache_monitor_uffd_open(0, &m);
	if (rc) {
		snprintf(r->note, sizeof(r->note), "uffd monitor: %s", strerror(-rc));
		return rc;
	}
	snap(&s1);
	for (i = 0; i < n; i++) {
		rc = m->ops->watch(m, (uintptr_t)(region + 2 * i * PG), PG, i + 1, &w[i]);
		if (rc)
			bench_die("uffd watch %ld: %s", i, strerror(-rc));
	}
	snap(&s2);
	for (i = 0; i < n; i++)
		m->ops->unwatch(m, &w[i]);
	m->ops->destroy(m, false);
	munmap(region, 2 * n * PG);
	snap(&s3);
	account(r, n, &s0, &s1, &s2, &s3);
	bvec_push(&r->shared, 0);
	snprintf(r->note, sizeof(r->note), "kernel includes page tables of the "
		 "populated (zero-page) ranges");
	free(w);
	r->n = n;
	return 0;
}

static void fmt_stat(char *buf, size_t len, struct bvec *b)
{
	struct bstat s;

	if (!b->n) {
		snprintf(buf, len, "n/a");
		return;
	}
	s = bvec_stat(b);
	snprintf(buf, len, "%.0f [%.0f, %.0f]", s.med, s.min, s.max);
}

int main(int argc, char **argv)
{
	struct result r[NV];
	struct bench_opts o;
	long n, nu;
	int reps, v, i, bad = 0;
	bool have_cg;
	char params[512], b1[64], b2[64], b3[64], b4[64];
	FILE *csv;

	bench_parse(argc, argv, &o, NULL, NULL, NULL);
	n = o.quick ? 2000 : 100000;
	nu = n < 30000 ? n : 30000;
	reps = o.quick ? 1 : 3;
	memset(r, 0, sizeof(r));
	have_cg = memcg_setup();
	if (!have_cg)
		cg[0] = 0;

	snprintf(params, sizeof(params),
		 "%ld watches of 1-page non-adjacent ranges (uffd: %ld), %d "
		 "repetitions, memory cgroup v2 %s; median [min, max]", n, nu,
		 reps, have_cg ? "in use" : "NOT available (meminfo only)");
	csv = bench_begin(&o, "watch_memory", "kernel memory per watch",
			  BENCH_GUEST_BYTES, params,
			  "variant,watches,cg_slab_unreclaimable_bytes_per_watch,cg_kernel_bytes_per_watch,meminfo_sunreclaim_bytes_per_watch,shared_area_bytes,shared_area_bytes_per_watch,kernel_left_after_close_bytes,top_slab_caches,note");

	for (i = 0; i < reps; i++)
		for (v = 0; v < NV; v++) {
			int rc = v == V_UFFD ? run_uffd(nu, &r[v]) :
				 run_regwatch(v, n, &r[v]);

			if (rc)
				printf("%s: skipped: %s\n", vnames[v], r[v].note);
			/* a one-shot ring over the module's max_ring_entries
			 * is a set-up limit, not a failure to run */
			if (rc && !(v == V_ONESHOT && rc == -EINVAL))
				bad = 1;
		}

	printf("\n%-20s | %-20s | %-20s | %-20s | %-14s | %s\n", "per watch, bytes",
	       "memcg slab_unrecl.", "memcg kernel", "meminfo SUnreclaim",
	       "shared area", "after close");
	for (v = 0; v < NV; v++) {
		struct bstat sh = bvec_stat(&r[v].shared), lk = bvec_stat(&r[v].leak);

		if (!r[v].n)
			continue;
		fmt_stat(b1, sizeof(b1), &r[v].cg_slab);
		fmt_stat(b2, sizeof(b2), &r[v].cg_kernel);
		fmt_stat(b3, sizeof(b3), &r[v].sunrec);
		snprintf(b4, sizeof(b4), "%.0f B/watch", sh.med / r[v].n);
		printf("%-20s | %-20s | %-20s | %-20s | %-14s | %+.0f KiB\n",
		       vnames[v], b1, b2, b3, b4, lk.med / 1024);
		printf("%-20s   top slab caches: %s\n", "", r[v].top);
		printf("%-20s   %s\n", "", r[v].note);
		fprintf(csv, "%s,%ld,%.1f,%.1f,%.1f,%.0f,%.1f,%.0f,\"%s\",\"%s\"\n",
			vnames[v], r[v].n, bvec_stat(&r[v].cg_slab).med,
			bvec_stat(&r[v].cg_kernel).med, bvec_stat(&r[v].sunrec).med,
			sh.med, sh.med / r[v].n, lk.med, r[v].top, r[v].note);
	}
	for (v = 0; v < NV; v++) {
		bvec_free(&r[v].cg_slab);
		bvec_free(&r[v].cg_kernel);
		bvec_free(&r[v].sunrec);
		bvec_free(&r[v].shared);
		bvec_free(&r[v].leak);
	}
	memcg_teardown();
	if (bad)
		printf("check: FAILED: a variant could not run\n");
	return bench_end(csv, &o, "watch_memory") | bad;
}
