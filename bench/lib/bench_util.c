// SPDX-License-Identifier: MIT
/* Shared helpers of the regwatch benchmarks; see bench_util.h. */
#include "bench_util.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void bench_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

void bench_parse(int argc, char **argv, struct bench_opts *o,
		 int (*extra)(int argc, char **argv, int i, void *arg),
		 void *arg, const char *usage)
{
	int i, n;

	memset(o, 0, sizeof(*o));
	o->out = getenv("BENCH_RESULTS");
	if (!o->out || !*o->out)
		o->out = "bench/results";
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			o->quick = true;
		} else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			o->out = argv[++i];
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: %s [--quick] [--out DIR]%s%s\n", argv[0],
			       usage ? " " : "", usage ? usage : "");
			exit(0);
		} else if (extra && (n = extra(argc, argv, i, arg)) > 0) {
			i += n - 1;
		} else {
			fprintf(stderr, "usage: %s [--quick] [--out DIR]%s%s\n",
				argv[0], usage ? " " : "", usage ? usage : "");
			exit(2);
		}
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Linear interpolation between order statistics (type 7, like R / numpy). */
static double quantile(const double *v, int n, double q)
{
	double pos = q * (n - 1);
	int i = (int)pos;
	double f = pos - i;

	if (i + 1 >= n)
		return v[n - 1];
	return v[i] + f * (v[i + 1] - v[i]);
}

struct bstat bstat_of(double *v, int n)
{
	struct bstat s;

	memset(&s, 0, sizeof(s));
	if (n <= 0)
		return s;
	qsort(v, n, sizeof(*v), cmp_double);
	s.n = n;
	s.min = v[0];
	s.max = v[n - 1];
	s.med = quantile(v, n, 0.5);
	s.p10 = quantile(v, n, 0.1);
	s.p90 = quantile(v, n, 0.9);
	s.q1 = quantile(v, n, 0.25);
	s.q3 = quantile(v, n, 0.75);
	return s;
}

void bvec_push(struct bvec *b, double x)
{
	if (b->n == b->cap) {
		int cap = b->cap ? 2 * b->cap : 64;
		double *v = realloc(b->v, cap * sizeof(*v));

		if (!v)
			bench_die("out of memory");
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = x;
}

struct bstat bvec_stat(struct bvec *b)
{
	return bstat_of(b->v, b->n);
}

void bvec_free(struct bvec *b)
{
	free(b->v);
	memset(b, 0, sizeof(*b));
}

char *bench_map_populated(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	size_t i;

	if (p == MAP_FAILED)
		bench_die("mmap %zu: %s", len, strerror(errno));
	for (i = 0; i < len; i += 4096)
		p[i] = (char)(i >> 12 | 1);
	return p;
}

void bench_pin_here(void)
{
	cpu_set_t set;
	int cpu = sched_getcpu();

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);	/* best effort */
}

int bench_pin_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? -errno : 0;
}

const char *bench_loadavg(void)
{
	static char buf[64];
	FILE *f = fopen("/proc/loadavg", "r");
	double a = 0, b = 0, c = 0;

	if (!f || fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3)
		snprintf(buf, sizeof(buf), "unknown");
	else
		snprintf(buf, sizeof(buf), "%.2f %.2f %.2f", a, b, c);
	if (f)
		fclose(f);
	return buf;
}

static void mkdir_p(const char *dir)
{
	char tmp[4096], *p;

	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(tmp, 0755);
			*p = '/';
		}
	mkdir(tmp, 0755);
}

static const char *const kind_long[] = {
	"host real time (nanoseconds on the build machine)",
	"guest ratios (QEMU TCG emulation: absolute guest times are not "
	"hardware figures; compare only ratios from this run)",
	"guest kernel memory in bytes (object sizes are the guest kernel's, "
	"not emulation artefacts)",
};
static const char *const kind_short[] = {
	"host real time", "guest ratios (TCG emulation)", "guest kernel bytes",
};

FILE *bench_begin(const struct bench_opts *o, const char *name,
		  const char *what, enum bench_kind kind, const char *params,
		  const char *columns)
{
	bool guest = kind != BENCH_HOST_TIME;
	char path[4096];
	FILE *f;

	printf("\n=== %s: %s\n", name, what);
	printf("figures:    %s\n", kind_long[kind]);
	printf("parameters: %s%s\n", params, o->quick ? " [--quick smoke run]" : "");
	printf("load:       %s (%s loadavg 1/5/15 min, %ld CPUs online)\n",
	       bench_loadavg(), guest ? "guest" : "host",
	       sysconf(_SC_NPROCESSORS_ONLN));
	fflush(stdout);

	mkdir_p(o->out);
	snprintf(path, sizeof(path), "%s/%s.csv", o->out, name);
	f = fopen(path, "w");
	if (!f)
		bench_die("cannot create %s: %s", path, strerror(errno));
	fprintf(f, "# %s: %s | figures: %s | parameters: %s%s | %s load %s\n",
		name, what, kind_short[kind], params, o->quick ? " (quick)" : "",
		guest ? "guest" : "host", bench_loadavg());
	fprintf(f, "%s\n", columns);
	return f;
}

int bench_end(FILE *csv, const struct bench_opts *o, const char *name)
{
	int bad = ferror(csv);

	if (fclose(csv))
		bad = 1;
	printf("csv:        %s/%s.csv%s\n", o->out, name, bad ? " (WRITE ERROR)" : "");
	fflush(stdout);
	return bad ? 1 : 0;
}

const char *bstat_fmt(char *buf, size_t len, const char *fmt, struct bstat s)
{
	char f[64];

	snprintf(f, sizeof(f), "%s [%s, %s]", fmt, fmt, fmt);
	snprintf(buf, len, f, s.med, s.p10, s.p90);
	return buf;
}
