// SPDX-License-Identifier: MIT
/*
 * Guest benchmark: what monitoring memory costs the monitored process,
 * as overhead = monitored cost - plain cost, measured in one run.
 *
 * Monitors (each in its own process, started from this program, so that
 * one monitor's hooks never touch another's figures; every workload runs
 * on the same CPU, the last one):
 *   none      no monitor at all: the plain cost;
 *   regwatch  /dev/regwatch through libregwatch (one-shot watches, state
 *             word, event ring);
 *   uffd      the registration cache's userfaultfd monitor (userlib/
 *             monitor_uffd.c: MISSING-mode registration per watch, a
 *             reader thread, state words, an eventfd), its reader thread
 *             on the workload's CPU: munmap/madvise block until the reader
 *             has read their event, and that hand-off is then a switch on
 *             one CPU;
 *   uffd-2cpu the same with the reader thread on the other CPU (CPU 0):
 *             the hand-off wakes the other vCPU, which TCG on a busy host
 *             makes slow and erratic (an emulation cost as much as a real
 *             one: read this column with care);
 *   ucm       UCX's memory hooks: libucs + libucm dlopen()ed in that
 *             process only (loading libucs already patches libc's munmap
 *             and friends, UCM's default "bistro" mode), and a
 *             UCM_EVENT_VM_UNMAPPED handler installed with
 *             ucm_set_event_handler() that finds the watches an event hits
 *             in an interval tree (the same one the uffd monitor uses),
 *             marks their state words and queues their events, from a
 *             preallocated pool (no malloc inside the hook).
 * Workloads (16-page = 64 KiB ranges):
 *   a  mmap, touch every page, munmap, of memory nobody watches, with K
 *      other watched ranges (K = 0, 10^3, 10^4, 10^5);
 *   b  a watched cycle: mmap, touch, watch, munmap, validity check, event
 *      consumed, unwatch (none: mmap, touch, munmap);
 *   c  madvise(MADV_DONTNEED) of watched memory: touch, watch, madvise,
 *      validity check, event consumed, unwatch (none: touch, madvise);
 *   d  a malloc/free-heavy loop: malloc of 64 B..1 MiB (sizes cycle in a
 *      fixed shuffled order; M_MMAP_THRESHOLD fixed at 128 KiB, so large
 *      blocks are mmapped and munmapped), touch a byte per page, free.
 *   b, c and d run with K = 10^3 other watched ranges (a warm cache).
 * Every watched range is populated first in every mode (MADV_POPULATE_
 * READ), so page tables look alike. The other ranges are single pages of
 * one large mapping; regwatch watches them one-shot, which needs an event
 * ring of more than K entries (module parameter max_ring_entries: the
 * bench guest raises it); if the module refuses, streaming watches are
 * used for them (same cost for unrelated munmaps) and the table says so.
 *
 * Each round is several slices; in each slice every monitor runs a few
 * operations, in a rotating order (the host is shared: a change of load
 * then hits all monitors of a round alike); a round's figure per monitor
 * is its fastest slice (preemption of QEMU's vCPU threads by the host's
 * other work only ever adds time), its ratio monitor / none. Figures:
 * median and [p10, p90] of the ratios over rounds.
 * "stale" counts validity checks, right after the invalidating call
 * returned, that still said valid (the monitor had not marked the watch
 * yet). A detection check counts how many free()s of
 * watched, mmapped malloc blocks each monitor reported.
 *
 *   monitor_overhead [--quick] [--out DIR]
 *   monitor_overhead --child MODE   (internal)
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ucm/api/ucm.h>	/* types only: libucm is dlopen()ed */
#include <uct/api/version.h>	/* UCX's version, same package */

#include "bench_util.h"
#include "cache_itree.h"
#include "cache_monitor.h"
#include "regwatch.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define PG		4096UL
#define CYC_PAGES	16
#define CYC_LEN		(CYC_PAGES * PG)
#define KMAX		100000
#define WAIT_MS		2000	/* an event that takes longer is lost */

enum { M_NONE, M_REGWATCH, M_UFFD, M_UFFD2, M_UCM, NMODES };
static const char *const mode_names[NMODES] = {
	"none", "regwatch", "uffd", "uffd-2cpu", "ucm" };

/* ================================================================ child */

/* A watch as the workloads see it, whatever the monitor. */
struct bw {
	const uint64_t *state;
	uint64_t armed;
	uint64_t id;
	struct regwatch_ref ref;	/* regwatch */
	struct cache_watch cw;		/* uffd */
	struct uwatch_ucm *u;		/* ucm */
};

/* The UCM-hook monitor: watches in an interval tree, fired by the hook. */
struct uwatch_ucm {
	struct cache_itree_node node;	/* first member */
	uint64_t state;
	uint64_t id;
	int armed, queued;
	struct uwatch_ucm *next;	/* free list / fired queue */
};

struct ucm_mon {
	pthread_mutex_t lock;
	struct cache_itree tree;
	struct uwatch_ucm *pool, *free;
	struct uwatch_ucm *fired, **fired_tail;
	uint64_t next_id;
	uint64_t events;		/* hook calls */
};

static int mode;
static struct regwatch *rw;
static struct cache_monitor *um;
static struct ucm_mon ucmm;
static bool others_streaming;
static char *others;		/* KMAX pages, the K other watched ranges */
static struct bw *other_w;
static int k_now;

typedef ucs_status_t (*ucm_set_fn)(int, int, ucm_event_callback_t, void *);

static int visit_fire(struct cache_itree_node *n, void *arg)
{
	*(struct cache_itree_node **)arg = n;
	return 1;
}

/* The UCM_EVENT_VM_UNMAPPED handler: runs inside munmap/madvise/... */
static void ucm_cb(ucm_event_type_t type, ucm_event_t *ev, void *arg)
{
	struct ucm_mon *u = arg;
	uintptr_t s = (uintptr_t)ev->vm_unmapped.address;
	uintptr_t e = s + ev->vm_unmapped.size;
	struct cache_itree_node *n;

	(void)type;
	pthread_mutex_lock(&u->lock);
	u->events++;
	for (;;) {
		struct uwatch_ucm *w;

		n = NULL;
		cache_itree_visit(&u->tree, s, e, visit_fire, &n);
		if (!n)
			break;
		w = (struct uwatch_ucm *)n;
		__atomic_store_n(&w->state, (w->id << 32) | REGWATCH_STATE_FIRED,
				 __ATOMIC_RELEASE);
		cache_itree_remove(&u->tree, n);
		w->armed = 0;
		w->queued = 1;
		w->next = NULL;
		*u->fired_tail = w;
		u->fired_tail = &w->next;
	}
	pthread_mutex_unlock(&u->lock);
}

static void ucm_setup(void)
{
	void *ucs, *ucm;
	ucm_set_fn set;
	ucs_status_t s;
	size_t i, n = KMAX + 64;

	pthread_mutex_init(&ucmm.lock, NULL);
	cache_itree_init(&ucmm.tree);
	ucmm.fired_tail = &ucmm.fired;
	ucmm.pool = calloc(n, sizeof(*ucmm.pool));
	if (!ucmm.pool)
		bench_die("out of memory");
	for (i = n; i-- > 0;) {
		ucmm.pool[i].next = ucmm.free;
		ucmm.free = &ucmm.pool[i];
	}
	/* libucm needs libucs's symbols: load libucs first, globally. */
	ucs = dlopen("libucs.so.0", RTLD_NOW | RTLD_GLOBAL);
	ucm = dlopen("libucm.so.0", RTLD_NOW | RTLD_GLOBAL);
	if (!ucs || !ucm)
		bench_die("dlopen UCX: %s", dlerror());
	set = (ucm_set_fn)dlsym(ucm, "ucm_set_event_handler");
	if (!set)
		bench_die("dlsym ucm_set_event_handler: %s", dlerror());
	s = set(UCM_EVENT_VM_UNMAPPED, 0, ucm_cb, &ucmm);
	if (s != UCS_OK)
		bench_die("ucm_set_event_handler: status %d", (int)s);
}

static void mon_setup(void)
{
	struct regwatch_options ro = { .ring_entries = 131072,
				       .max_watches = 131072 + 1024 };
	int rc;

	switch (mode) {
	case M_REGWATCH:
		rc = regwatch_open(&ro, &rw);
		if (rc == -EINVAL) {
			/* max_ring_entries too small for K one-shot watches */
			ro.ring_entries = 0;
			others_streaming = true;
			rc = regwatch_open(&ro, &rw);
		}
		if (rc)
			bench_die("regwatch_open: %s", strerror(-rc));
		break;
	case M_UFFD:
	case M_UFFD2:
		rc = cache_monitor_uffd_open(0, &um);
		if (rc)
			bench_die("uffd monitor: %s", strerror(-rc));
		break;
	case M_UCM:
		ucm_setup();
		break;
	}
}

static uint64_t cookie_seq = 1;

static void mon_watch(void *addr, size_t len, bool streaming, struct bw *w)
{
	int rc = 0;

	switch (mode) {
	case M_NONE:
		return;
	case M_REGWATCH:
		rc = regwatch_watch(rw, addr, len, cookie_seq++,
				    streaming ? REGWATCH_WATCH_STREAMING : 0, &w->ref);
		w->state = w->ref.state;
		w->armed = w->ref.armed_state;
		w->id = w->ref.id;
		break;
	case M_UFFD:
	case M_UFFD2:
		rc = um->ops->watch(um, (uintptr_t)addr, len, cookie_seq++, &w->cw);
		w->state = w->cw.state;
		w->armed = w->cw.armed;
		w->id = w->cw.id;
		break;
	case M_UCM: {
		struct uwatch_ucm *u;

		pthread_mutex_lock(&ucmm.lock);
		u = ucmm.free;
		if (u) {
			ucmm.free = u->next;
			u->id = ++ucmm.next_id;
			u->state = (u->id << 32) | REGWATCH_STATE_ARMED;
			u->node.start = (uintptr_t)addr & ~(PG - 1);
			u->node.end = ((uintptr_t)addr + len + PG - 1) & ~(PG - 1);
			u->armed = 1;
			u->queued = 0;
			cache_itree_insert(&ucmm.tree, &u->node);
		}
		pthread_mutex_unlock(&ucmm.lock);
		if (!u)
			bench_die("ucm: out of watches");
		w->u = u;
		w->state = &u->state;
		w->armed = u->state;
		w->id = u->id;
		break;
	}
	}
	if (rc)
		bench_die("%s watch: %s", mode_names[mode], strerror(-rc));
}

static void mon_unwatch(struct bw *w)
{
	switch (mode) {
	case M_REGWATCH:
		regwatch_unwatch(rw, &w->ref);	/* fired: -ENOENT is fine */
		break;
	case M_UFFD:
	case M_UFFD2:
		um->ops->unwatch(um, &w->cw);
		break;
	case M_UCM:
		pthread_mutex_lock(&ucmm.lock);
		if (w->u->armed)
			cache_itree_remove(&ucmm.tree, &w->u->node);
		w->u->armed = 0;
		if (!w->u->queued) {	/* queued ones go back when drained */
			w->u->next = ucmm.free;
			ucmm.free = w->u;
		}
		w->u->queued = -w->u->queued;	/* -1: drop when drained */
		pthread_mutex_unlock(&ucmm.lock);
		break;
	}
}

static inline bool mon_valid(const struct bw *w)
{
	if (mode == M_NONE)
		return false;
	return __atomic_load_n(w->state, __ATOMIC_ACQUIRE) == w->armed;
}

struct find {
	uint64_t id;
	bool found;
};

static int ev_cb(const struct regwatch_event *ev, void *arg)
{
	struct find *f = arg;

	if (ev->watch_id == f->id)
		f->found = true;
	return 0;
}

/* Drain the monitor's events until w's has been consumed. false: it did
 * not come within WAIT_MS. */
static bool mon_consume(const struct bw *w)
{
	struct find f = { w->id, false };
	uint64_t deadline = bench_ns() + WAIT_MS * 1000000ull;

	if (mode == M_NONE)
		return true;
	for (;;) {
		if (mode == M_REGWATCH) {
			regwatch_drain(rw, ev_cb, &f);
		} else if (mode == M_UFFD || mode == M_UFFD2) {
			um->ops->drain(um, ev_cb, &f);
		} else {
			struct uwatch_ucm *q, *next;

			pthread_mutex_lock(&ucmm.lock);
			q = ucmm.fired;
			ucmm.fired = NULL;
			ucmm.fired_tail = &ucmm.fired;
			for (; q; q = next) {
				next = q->next;
				if (q->id == f.id)
					f.found = true;
				if (q->queued < 0) {	/* unwatched: free */
					q->next = ucmm.free;
					ucmm.free = q;
				}
				q->queued = 0;
			}
			pthread_mutex_unlock(&ucmm.lock);
		}
		if (f.found)
			return true;
		if (bench_ns() > deadline)
			return false;
		if (mode == M_UFFD || mode == M_UFFD2) {
			struct pollfd p = { .fd = um->ops->fd(um), .events = POLLIN };

			poll(&p, 1, 10);
		} else {
			sched_yield();
		}
	}
}

/* Set the number of other watched ranges to k. */
static void set_k(int k)
{
	int i;

	if (k > KMAX)
		k = KMAX;
	if (k > k_now)	/* populate alike in every mode */
		madvise(others + (size_t)k_now * PG, (size_t)(k - k_now) * PG,
			MADV_POPULATE_READ);
	if (mode == M_REGWATCH && k > k_now) {
		/* in batches, as a cache filling up would not, but setup
		 * time is not what is measured */
		static struct regwatch_watch req[REGWATCH_BATCH_MAX];

		for (i = k_now; i < k;) {
			int n = k - i < REGWATCH_BATCH_MAX ? k - i : REGWATCH_BATCH_MAX;
			int j, rc;

			memset(req, 0, n * sizeof(req[0]));
			for (j = 0; j < n; j++) {
				req[j].addr = (uintptr_t)(others + (size_t)(i + j) * PG);
				req[j].len = PG;
				req[j].cookie = cookie_seq++;
				req[j].flags = others_streaming ? REGWATCH_WATCH_STREAMING : 0;
			}
			rc = regwatch_watchv(rw, req, n);
			if (rc != n)
				bench_die("regwatch_watchv: %d of %d (%s)", rc, n,
					  rc < 0 ? strerror(-rc) : strerror(-req[rc].result));
			for (j = 0; j < n; j++) {
				regwatch_ref_from(rw, &req[j], &other_w[i + j].ref);
				other_w[i + j].id = req[j].watch_id;
			}
			i += n;
		}
	} else if (k > k_now) {
		for (i = k_now; i < k; i++)
			mon_watch(others + (size_t)i * PG, PG, false, &other_w[i]);
	}
	for (i = k; i < k_now; i++)
		mon_unwatch(&other_w[i]);
	k_now = k;
}

static inline void touch(char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i += PG)
		((volatile char *)p)[i] = (char)i;
}

static char *map_cycle(void)
{
	char *p = mmap(NULL, CYC_LEN, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
	return p;
}

static int stale, lost;

static double wl_a(int ops)
{
	uint64_t t0 = bench_ns();
	int i;

	for (i = 0; i < ops; i++) {
		char *p = map_cycle();

		touch(p, CYC_LEN);
		munmap(p, CYC_LEN);
	}
	return (double)(bench_ns() - t0) / ops;
}

static char *c_region;

/*
 * b (dontneed false): mmap, touch, watch, munmap a fresh range; c (true):
 * touch, watch, madvise(DONTNEED) the same range. Then: validity check,
 * event consumed, unwatch.
 */
static double watched_cycle(int ops, bool dontneed)
{
	uint64_t t0 = bench_ns();
	int i;

	for (i = 0; i < ops; i++) {
		char *p = dontneed ? c_region : map_cycle();
		struct bw w;

		touch(p, CYC_LEN);
		mon_watch(p, CYC_LEN, false, &w);
		if (dontneed)
			madvise(p, CYC_LEN, MADV_DONTNEED);
		else
			munmap(p, CYC_LEN);
		if (mon_valid(&w))
			stale++;
		if (!mon_consume(&w))
			lost++;
		mon_unwatch(&w);
	}
	return (double)(bench_ns() - t0) / ops;
}

static size_t d_sizes[64];

static double wl_d(int ops)
{
	uint64_t t0 = bench_ns();
	int i;

	for (i = 0; i < ops; i++) {
		size_t sz = d_sizes[i & 63];
		char *p = malloc(sz);

		if (!p)
			bench_die("malloc");
		touch(p, sz);
		p[sz - 1] = 1;
		free(p);
	}
	return (double)(bench_ns() - t0) / ops;
}

/* free() of a watched, mmapped malloc block: did the monitor see it? */
static int detect(int n)
{
	int i, seen = 0;

	for (i = 0; i < n; i++) {
		size_t sz = 1 << 20;
		char *p = malloc(sz);
		struct bw w;
		uint64_t deadline;

		touch(p, sz);
		mon_watch(p, sz, false, &w);
		free(p);
		deadline = bench_ns() + 200 * 1000000ull;
		while (mon_valid(&w) && bench_ns() < deadline)
			usleep(100);
		if (mode != M_NONE && !mon_valid(&w)) {
			seen++;
			mon_consume(&w);
		}
		mon_unwatch(&w);
	}
	return seen;
}

static int child_main(const char *m)
{
	static const size_t base_sizes[] = { 64, 1024, 8192, 65536, 262144, 1 << 20 };
	char line[256];
	int i;
	uint64_t s = 0x9e3779b97f4a7c15ull;

	for (mode = 0; mode < NMODES; mode++)
		if (!strcmp(m, mode_names[mode]))
			break;
	if (mode == NMODES)
		bench_die("unknown mode %s", m);
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	for (i = 0; i < 64; i++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		d_sizes[i] = base_sizes[i % 6];
	}
	for (i = 63; i > 0; i--) {	/* fixed shuffle */
		size_t t, j;

		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		j = s % (i + 1);
		t = d_sizes[i];
		d_sizes[i] = d_sizes[j];
		d_sizes[j] = t;
	}
	others = mmap(NULL, (size_t)KMAX * PG, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	c_region = mmap(NULL, CYC_LEN, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	other_w = calloc(KMAX, sizeof(*other_w));
	if (others == MAP_FAILED || c_region == MAP_FAILED || !other_w)
		bench_die("out of memory");
	/*
	 * Every monitor's process on the same CPU (the last one), threads
	 * included (the uffd monitor's reader thread, started in
	 * mon_setup(), inherits it): no monitor gets a quieter CPU than
	 * another, and the uffd hand-off (munmap blocks until the reader
	 * has read the event) is a switch on one vCPU rather than a wake-up
	 * of the other vCPU, which TCG on a busy host makes slow and erratic.
	 * Mode uffd-2cpu is the same monitor with its reader thread on the
	 * other CPU (CPU 0), for that other case.
	 */
	bench_pin_cpu(mode == M_UFFD2 ? 0 : (int)sysconf(_SC_NPROCESSORS_ONLN) - 1);
	mon_setup();
	/* uffd-2cpu: the reader stays on CPU 0, the workload moves on */
	if (mode == M_UFFD2)
		bench_pin_cpu((int)sysconf(_SC_NPROCESSORS_ONLN) - 1);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready %d\n", others_streaming);

	while (fgets(line, sizeof(line), stdin)) {
		char wl;
		int a, n, j;

		if (sscanf(line, "k %d", &a) == 1) {
			set_k(a);
			printf("ok\n");
		} else if (sscanf(line, "run %c %d %d", &wl, &a, &n) == 3) {
			stale = lost = 0;
			printf("ok");
			for (j = 0; j < n; j++) {
				double v = wl == 'a' ? wl_a(a) :
					   wl == 'b' ? watched_cycle(a, false) :
					   wl == 'c' ? watched_cycle(a, true) : wl_d(a);

				printf(" %.1f", v);
			}
			printf(" stale %d lost %d\n", stale, lost);
		} else if (sscanf(line, "detect %d", &a) == 1) {
			printf("ok %d\n", detect(a));
		} else if (!strncmp(line, "quit", 4)) {
			break;
		} else {
			bench_die("child: bad command %s", line);
		}
	}
	return 0;
}

/* =============================================================== parent */

struct child {
	pid_t pid;
	FILE *in, *out;
	bool streaming;
};

static struct child kids[NMODES];

static void spawn(int m)
{
	int to[2], from[2];
	char line[64];
	pid_t pid;

	if (pipe(to) || pipe(from))
		bench_die("pipe");
	pid = fork();
	if (pid < 0)
		bench_die("fork");
	if (!pid) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[0]); close(to[1]); close(from[0]); close(from[1]);
		execl("/proc/self/exe", "monitor_overhead", "--child",
		      mode_names[m], (char *)NULL);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	kids[m].pid = pid;
	kids[m].in = fdopen(to[1], "w");
	kids[m].out = fdopen(from[0], "r");
	setvbuf(kids[m].in, NULL, _IOLBF, 0);
	if (!fgets(line, sizeof(line), kids[m].out) || strncmp(line, "ready", 5))
		bench_die("%s monitor process failed to start", mode_names[m]);
	kids[m].streaming = atoi(line + 6);
}

static void tell(int m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tell(int m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(kids[m].in, fmt, ap);
	va_end(ap);
	fflush(kids[m].in);
}

static char *reply(int m)
{
	static char line[65536];

	if (!fgets(line, sizeof(line), kids[m].out) || strncmp(line, "ok", 2))
		bench_die("%s monitor process failed", mode_names[m]);
	return line + 2;
}

#define ask(m, ...) (tell((m), __VA_ARGS__), reply(m))

struct cell {
	struct bvec t;		/* guest ns per op, one per round */
	struct bvec ratio;	/* t / t(none) of the same round */
	int stale, lost;
};

/*
 * rounds x slices: in each slice every monitor runs `ops` operations, in
 * a rotating order, so that a change of load (the host is shared) hits
 * all monitors of a round alike; a round's figure per monitor is its
 * fastest slice: when the host preempts one of QEMU's vCPU threads the
 * guest clock runs on, which only ever adds time to a slice, so the
 * minimum is the estimate least disturbed by the host's other work.
 */
static void run_rounds(char wl, int ops, int rounds, int slices,
		       struct cell c[NMODES])
{
	int r, j, k;

	memset(c, 0, NMODES * sizeof(c[0]));
	for (r = 0; r < rounds; r++) {
		double t[NMODES];

		for (k = 0; k < NMODES; k++)
			t[k] = 1e300;
		for (j = 0; j < slices; j++)
			for (k = 0; k < NMODES; k++) {
				int m = (k + r + j) % NMODES;
				char *p = ask(m, "run %c %d 1\n", wl, ops), *q;
				double v = strtod(p, &q);
				int st, lo;

				if (v < t[m])
					t[m] = v;
				if (sscanf(q, " stale %d lost %d", &st, &lo) == 2) {
					c[m].stale += st;
					c[m].lost += lo;
				}
			}
		for (k = 0; k < NMODES; k++) {
			bvec_push(&c[k].t, t[k]);
			bvec_push(&c[k].ratio, t[k] / t[M_NONE]);
		}
	}
}

/* Median ratios (monitored / plain) of the last row emitted, per mode. */
static double last_ratio[NMODES];

static void emit(FILE *csv, const char *wl, int k, int ops, struct cell c[NMODES],
		 bool table_overhead)
{
	struct bstat s[NMODES], r[NMODES];
	char b[96];
	int m;

	for (m = 0; m < NMODES; m++) {
		s[m] = bvec_stat(&c[m].t);
		r[m] = bvec_stat(&c[m].ratio);
		last_ratio[m] = r[m].med;
	}
	printf("%-2s %7d |", wl, k);
	for (m = 1; m < NMODES; m++)
		printf(" %-22s|", bstat_fmt(b, sizeof(b), "%.3f", r[m]));
	if (table_overhead) {
		double rwo = r[M_REGWATCH].med - 1;

		/* Within the noise (an overhead <= 0.5 %) a quotient of
		 * overheads means nothing: say so instead. */
		for (m = M_UFFD; m < NMODES; m++)
			if (rwo <= 0.005)
				printf(" %7s", "rw~0");
			else if (r[m].med - 1 <= 0.005)
				printf(" %7s", "~0");
			else
				printf(" %6.1fx", (r[m].med - 1) / rwo);
		printf(" |");
	}
	printf(" stale");
	for (m = 1; m < NMODES; m++)
		printf("%c%d", m == 1 ? ' ' : '/', c[m].stale);
	printf(" lost");
	for (m = 1; m < NMODES; m++)
		printf("%c%d", m == 1 ? ' ' : '/', c[m].lost);
	printf("\n");
	for (m = 0; m < NMODES; m++)
		fprintf(csv, "%s,%d,%s,%.1f,%.1f,%.1f,%.4f,%.4f,%.4f,%.1f,%.2f,%d,%d,%d,%d\n",
			wl, k, mode_names[m], s[m].med, s[m].p10, s[m].p90,
			r[m].med, r[m].p10, r[m].p90, s[m].med - s[M_NONE].med,
			100.0 * (r[m].med - 1), c[m].stale, c[m].lost, ops,
			c[m].t.n);
	fflush(csv);
	for (m = 0; m < NMODES; m++) {
		bvec_free(&c[m].t);
		bvec_free(&c[m].ratio);
	}
}

int main(int argc, char **argv)
{
	static const int full_k[] = { 0, 1000, 10000, 100000 };
	static const int quick_k[] = { 0, 100 };
	const int *ks;
	struct cell c[NMODES];
	struct bench_opts o;
	int nk, rounds, slices, kb, i, m, ops_a, ops_b, ops_c, ops_d, bad = 0;
	double a_last = 0, b_ratio[NMODES] = { 0 };
	char params[768];
	FILE *csv;

	if (argc == 3 && !strcmp(argv[1], "--child"))
		return child_main(argv[2]);
	bench_parse(argc, argv, &o, NULL, NULL, NULL);
	signal(SIGPIPE, SIG_IGN);
	ks = o.quick ? quick_k : full_k;
	nk = o.quick ? 2 : 4;
	kb = o.quick ? 100 : 1000;
	rounds = o.quick ? 3 : 21;
	slices = o.quick ? 2 : 8;
	ops_a = o.quick ? 5 : 25;	/* per slice */
	ops_b = o.quick ? 3 : 12;
	ops_c = o.quick ? 3 : 12;
	ops_d = o.quick ? 10 : 25;

	for (m = 0; m < NMODES; m++)
		spawn(m);
	snprintf(params, sizeof(params),
		 "64 KiB ranges; monitors none/regwatch/uffd/uffd-2cpu/ucm each in its own "
		 "process; %d rounds of %d slices, each slice running every "
		 "monitor in rotating order, a round's figure = its fastest "
		 "slice; ops per slice a %d, b %d, c %d, d %d; "
		 "K other watched 1-page ranges: a %d..%d, b/c/d %d; regwatch "
		 "other watches %s; UCM: UCX " UCT_VERNO_STRING " libucm dlopen()ed, "
		 "UCM_EVENT_VM_UNMAPPED handler; uffd reader on the workload CPU, uffd-2cpu on the other",
		 rounds, slices, ops_a, ops_b, ops_c, ops_d, ks[0], ks[nk - 1], kb,
		 kids[M_REGWATCH].streaming ? "STREAMING (module max_ring_entries "
		 "too small for one-shot)" : "one-shot");
	csv = bench_begin(&o, "monitor_overhead",
			  "monitoring overhead: none vs regwatch vs userfaultfd vs UCX hooks",
			  BENCH_GUEST_RATIOS, params,
			  "workload,k_other,monitor,median_guest_ns,p10_guest_ns,p90_guest_ns,ratio_median,ratio_p10,ratio_p90,overhead_guest_ns,overhead_pct,stale_after_return,lost,ops_per_slice,rounds");

	printf("\nratio to no monitor (monitored / plain, per round of fastest slices): median [p10, p90]\n");
	printf("%-2s %7s | %-22s| %-22s| %-22s| %-22s| checks after return (regwatch/uffd/uffd-2cpu/ucm)\n",
	       "wl", "K", "regwatch", "uffd", "uffd-2cpu", "ucm");
	for (i = 0; i < nk; i++) {
		/* set-up in parallel: 10^5 watches take a while */
		for (m = 0; m < NMODES; m++)
			tell(m, "k %d\n", ks[i]);
		for (m = 0; m < NMODES; m++)
			reply(m);
		run_rounds('a', ops_a, rounds, slices, c);
		emit(csv, "a", ks[i], ops_a, c, false);
		a_last = last_ratio[M_REGWATCH];
		if (ks[i] == kb || (i == nk - 1 && kb > ks[i])) {
			printf("\n%-2s %7s | %-22s| %-22s| %-22s| %-22s| overhead / regwatch's | checks\n",
			       "wl", "K", "regwatch", "uffd", "uffd-2cpu", "ucm");
			run_rounds('b', ops_b, rounds, slices, c);
			emit(csv, "b", ks[i], ops_b, c, true);
			memcpy(b_ratio, last_ratio, sizeof(b_ratio));
			run_rounds('c', ops_c, rounds, slices, c);
			emit(csv, "c", ks[i], ops_c, c, true);
			run_rounds('d', ops_d, rounds, slices, c);
			emit(csv, "d", ks[i], ops_d, c, true);
			printf("\ndetection: free() of a watched 1 MiB malloc block "
			       "(mmapped) reported within 200 ms:");
			fprintf(csv, "# detection of free() of watched mmapped malloc blocks:");
			for (m = 1; m < NMODES; m++) {
				int seen = atoi(ask(m, "detect 20\n"));

				printf(" %s %d/20", mode_names[m], seen);
				fprintf(csv, " %s %d/20", mode_names[m], seen);
			}
			printf("\n");
			fprintf(csv, "\n");
			if (i < nk - 1)
				printf("\n%-2s %7s | %-22s| %-22s| %-22s| %-22s|\n", "wl", "K",
				       "regwatch", "uffd", "uffd-2cpu", "ucm");	/* (a) again */
		}
	}
	for (m = 0; m < NMODES; m++) {
		int st;

		fprintf(kids[m].in, "quit\n");
		fflush(kids[m].in);
		waitpid(kids[m].pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			printf("check: FAILED: %s process exit status %d\n",
			       mode_names[m], st);
			bad = 1;
		}
	}
	/* Targets (issue 6), reported, never failing the run. */
	printf("\ntargets (reported only):\n");
	printf("  (a) regwatch within 1.05x of plain at K = %d: %.3fx %s\n",
	       ks[nk - 1], a_last, a_last <= 1.05 ? "MET" : "NOT MET");
	for (m = M_UFFD; m <= M_UFFD2; m++) {
		double rwo = b_ratio[M_REGWATCH] - 1;
		double f = rwo > 0.005 ? (b_ratio[m] - 1) / rwo : 1e9;

		printf("  (b) regwatch's overhead >= 10x smaller than %s's: "
		       "regwatch %.3fx, %s %.3fx of plain: %.1fx smaller %s\n",
		       mode_names[m], b_ratio[M_REGWATCH], mode_names[m],
		       b_ratio[m], f, f >= 10 ? "MET" : "NOT MET");
	}
	return bench_end(csv, &o, "monitor_overhead") | bad;
}
