/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers of the regwatch benchmarks (bench/): command line, clock,
 * statistics over repetitions, the printed header and CSV output.
 *
 * Every benchmark prints, before its tables, what its figures are:
 *   "host real time"  (on the build machine: absolute nanoseconds), or
 *   "guest ratios"    (inside the QEMU TCG guest: emulation slows kernel
 *                      and user code by different factors, so only ratios
 *                      measured side by side in one run mean anything).
 * and writes one CSV file <dir>/<name>.csv whose first line is a comment
 * ("# ...") with the same statement, the parameters and the load average.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* Options every benchmark takes. */
struct bench_opts {
	bool quick;		/* --quick: tiny sizes, few repetitions */
	const char *out;	/* --out DIR: CSV directory (default:
				 * $BENCH_RESULTS, else bench/results) */
};

/*
 * Parse --quick, --out DIR and --help. Other arguments go to extra(), which
 * returns how many argv entries it consumed (0: unknown -> usage error).
 * Exits on errors.
 */
void bench_parse(int argc, char **argv, struct bench_opts *o,
		 int (*extra)(int argc, char **argv, int i, void *arg),
		 void *arg, const char *usage);

/* Nanoseconds on CLOCK_MONOTONIC. */
static inline uint64_t bench_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Median and spread of a set of samples. */
struct bstat {
	double med, p10, p90, q1, q3, min, max;
	int n;
};
/* Statistics of v[0..n) (v is sorted in place). n == 0 gives zeros. */
struct bstat bstat_of(double *v, int n);

/* A growable sample vector. */
struct bvec {
	double *v;
	int n, cap;
};
void bvec_push(struct bvec *b, double x);
struct bstat bvec_stat(struct bvec *b);	/* sorts */
void bvec_free(struct bvec *b);

/* A private anonymous mapping of len bytes, every page written (populated,
 * not a shared zero page). Exits on failure. */
char *bench_map_populated(size_t len);

/* Pin the calling thread to the CPU it runs on (less migration noise). */
void bench_pin_here(void);
/* Pin the calling thread to CPU cpu (0 or -errno). */
int bench_pin_cpu(int cpu);

/* "1.23 0.98 0.77" from /proc/loadavg (static buffer). */
const char *bench_loadavg(void);

/* What a benchmark's figures are. */
enum bench_kind {
	BENCH_HOST_TIME,	/* host real time: absolute ns mean something */
	BENCH_GUEST_RATIOS,	/* guest times: only ratios from one run */
	BENCH_GUEST_BYTES,	/* guest memory sizes: real bytes */
};

/*
 * Print the benchmark's header: name, one-line description, what the
 * figures are, the parameters (a free text), the load average. Opens and
 * returns <out>/<name>.csv with the same statement as a "# " comment
 * line, then `columns` as header line. Exits if the file cannot be
 * created.
 */
FILE *bench_begin(const struct bench_opts *o, const char *name,
		  const char *what, enum bench_kind kind, const char *params,
		  const char *columns);

/* Close the CSV, print where it went. Returns 0, or 1 on a write error. */
int bench_end(FILE *csv, const struct bench_opts *o, const char *name);

/* Format "median [p10, p90]" into buf with printf format fmt for each
 * number, e.g. "%.1f". */
const char *bstat_fmt(char *buf, size_t len, const char *fmt, struct bstat s);

/* Fatal error: print and exit(1). */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif /* BENCH_UTIL_H */
