// SPDX-License-Identifier: MIT
/*
 * fuzz_regwatch: random sequences of every ioctl of /dev/regwatch and
 * /dev/regwatch-mirror with random and boundary arguments, interleaved
 * with mmap / munmap / mremap / madvise / mprotect / fork / exec / exit
 * and thread churn on watched memory, from several threads, with oracles
 * (see fuzz.h for the parts and docs/hardening.md for what each checks).
 *
 * Usage: fuzz_regwatch [--iterations N] [--seconds S] [--threads T]
 *                      [--profile full|notify|mirror] [--check-module]
 *                      [--no-fork] [--max-findings N] [--verbose]
 *        fuzz_regwatch --module-counters   (prints the module-wide
 *                      monitors, watches, pages and mirror counters)
 * A call is one system call the fuzzer makes (forked children's count).
 * The seed is printed; REGWATCH_SEED=n replays the same operation
 * sequences (with --threads 1 also the same interleaving, up to timing).
 * Exit status: 0 no finding, 1 findings, 2 setup failure, 3 stalled.
 * The last lines are the summary ("fuzz_regwatch: calls N ..." and
 * "fuzz_regwatch: findings N").
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

struct fz_shared *fz;
struct fz_cfg fzc;
uint64_t fz_task_size;
dev_t fz_rdev_monitor, fz_rdev_mirror;
__thread struct fz_ctx *fz_self;

static const char *const cat_names[NCAT] = {
	"ioctl", "read", "poll", "mmap", "mm", "file", "fork", "thread",
};

/* ---- randomness ---------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t fz_rand(struct fz_ctx *c)
{
	/* xorshift64* */
	uint64_t x = c->rng ? c->rng : 0x9e3779b97f4a7c15ULL;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	c->rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

uint64_t fz_below(struct fz_ctx *c, uint64_t n)
{
	return n ? fz_rand(c) % n : 0;
}

bool fz_pct(struct fz_ctx *c, unsigned int pct)
{
	return fz_below(c, 100) < pct;
}

uint64_t fz_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

bool fz_should_stop(void)
{
	uint64_t calls = atomic_load_explicit(&fz->calls, memory_order_relaxed);

	if (atomic_load_explicit(&fz->stop, memory_order_relaxed))
		return true;
	if (fzc.iterations && calls >= fzc.iterations)
		return true;
	if (fzc.deadline_ns && fz_now_ns() > fzc.deadline_ns)
		return true;
	if (atomic_load(&fz->findings) >= (unsigned long long)fzc.max_findings)
		return true;
	return false;
}

/* ---- counting and reporting -------------------------------------------- */

void fz_count(enum fz_cat cat)
{
	atomic_fetch_add_explicit(&fz->calls, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&fz->cat[cat], 1, memory_order_relaxed);
	if (fz_self && fz_self->child)
		atomic_fetch_add_explicit(&fz->child_calls, 1,
					  memory_order_relaxed);
}

/* One line to stderr with a single write(2): safe in children too. */
static void emit(const char *kind, const char *fmt, va_list ap, bool keep)
{
	char line[480], msg[400];
	struct fz_ctx *c = fz_self;
	int n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = snprintf(line, sizeof(line),
		     "fuzz_regwatch: %s [seed %llu, %s %d, pid %d, op #%llu %s]: %s\n",
		     kind, (unsigned long long)fzc.seed,
		     c && c->child ? "child ctx" : "ctx", c ? c->idx : -1,
		     (int)getpid(), c ? (unsigned long long)c->ops : 0ULL,
		     c && c->op ? c->op : "-", msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (write(2, line, (size_t)n) < 0)
		return;
	if (keep) {
		unsigned int i = atomic_fetch_add(&fz->nmsg, 1);

		if (i < 8)
			snprintf(fz->msgs[i], sizeof(fz->msgs[i]), "%s", line);
	}
}

void fz_finding(const char *fmt, ...)
{
	va_list ap;

	atomic_fetch_add(&fz->findings, 1);
	va_start(ap, fmt);
	emit("FINDING", fmt, ap, true);
	va_end(ap);
}

void fz_noise(const char *fmt, ...)
{
	va_list ap;

	atomic_fetch_add(&fz->noise, 1);
	va_start(ap, fmt);
	emit("noise", fmt, ap, false);
	va_end(ap);
}

void fz_log(const char *fmt, ...)
{
	va_list ap;

	if (!fzc.verbose)
		return;
	va_start(ap, fmt);
	emit("log", fmt, ap, false);
	va_end(ap);
}

/* ---- counted system calls -------------------------------------------- */

long fz_ioctl(int fd, unsigned long cmd, void *arg)
{
	long r;

	fz_count(CAT_IOCTL);
	r = ioctl(fd, cmd, arg);
	return r < 0 ? -errno : r;
}

long fz_read(int fd, void *buf, size_t len)
{
	long r;

	fz_count(CAT_READ);
	r = read(fd, buf, len);
	return r < 0 ? -errno : r;
}

int fz_poll(int fd, short events, int timeout_ms, short *revents)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	fz_count(CAT_POLL);
	r = poll(&p, 1, timeout_ms);
	if (revents)
		*revents = p.revents;
	return r < 0 ? -errno : r;
}

void *fz_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off,
	      int *err)
{
	void *p;

	fz_count(CAT_MMAP);
	p = mmap(addr, len, prot, flags, fd, off);
	if (err)
		*err = p == MAP_FAILED ? errno : 0;
	return p;
}

int fz_munmap(void *addr, size_t len)
{
	fz_count(CAT_MM);
	return munmap(addr, len) ? -errno : 0;
}

int fz_mprotect(void *addr, size_t len, int prot)
{
	fz_count(CAT_MM);
	return mprotect(addr, len, prot) ? -errno : 0;
}

int fz_madvise(void *addr, size_t len, int advice)
{
	fz_count(CAT_MM);
	return madvise(addr, len, advice) ? -errno : 0;
}

void *fz_mremap(void *old, size_t old_len, size_t new_len, int flags,
		void *new_addr, int *err)
{
	void *p;

	fz_count(CAT_MM);
	p = mremap(old, old_len, new_len, flags, new_addr);
	if (err)
		*err = p == MAP_FAILED ? errno : 0;
	return p;
}

int fz_open(const char *path, int flags)
{
	int fd;

	fz_count(CAT_FILE);
	fd = open(path, flags);
	return fd < 0 ? -errno : fd;
}

int fz_close(int fd)
{
	fz_count(CAT_FILE);
	return close(fd) ? -errno : 0;
}

void fz_pfns(uintptr_t start, int n, uint64_t *out)
{
	const uint64_t mask = (1ULL << 63) | (1ULL << 62) | ((1ULL << 55) - 1);
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC), i;
	ssize_t want = (ssize_t)n * 8;

	if (fd < 0 || pread(fd, out, (size_t)want,
			    (off_t)(start / FZ_PG * 8)) != want)
		memset(out, 0xff, (size_t)want);
	if (fd >= 0)
		close(fd);
	for (i = 0; i < n; i++)
		out[i] &= mask;
}

uint64_t fz_env_events(void)
{
	static const char *const keys[] = {
		"pgmigrate_success", "pgmigrate_fail", "compact_isolated",
		"pswpout", "pgscan_anon", "thp_split_pmd", "numa_pages_migrated",
	};
	char key[64];
	unsigned long long v;
	uint64_t sum = 0;
	FILE *f = fopen("/proc/vmstat", "r");
	size_t k;

	if (!f)
		return 0;
	while (fscanf(f, "%63s %llu", key, &v) == 2)
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (!strcmp(key, keys[k]))
				sum += v;
	fclose(f);
	return sum;
}

bool fz_fd_is(int fd, dev_t rdev)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) &&
	       st.st_rdev == rdev;
}

/* ---- argument generators --------------------------------------------- */

uint64_t fz_garbage_ptr(struct fz_ctx *c, size_t objsize, bool *valid)
{
	uint64_t p;
	bool ok = false;

	if (!objsize)
		objsize = 1;
	switch (fz_below(c, 12)) {
	case 0:
		p = 0;
		break;
	case 1:
		p = 1 + fz_below(c, FZ_PG - 1);
		break;
	case 2:
		p = 0xffffffff81000000ULL + fz_below(c, 1 << 20);
		break;
	case 3:
		p = 0xffff888000000000ULL + fz_below(c, 1ULL << 30);
		break;
	case 4:
		p = 0x0000800000000000ULL + fz_below(c, FZ_PG);
		break;
	case 5:
		p = 0x8000000000000000ULL | fz_rand(c);
		break;
	case 6:
		p = (uintptr_t)c->ro + fz_below(c, FZ_PG);
		break;
	case 7:
		p = (uintptr_t)c->none + fz_below(c, FZ_PG);
		break;
	case 8:
		p = (uintptr_t)c->hole + fz_below(c, FZ_PG);
		break;
	case 9:
		p = fz_task_size - objsize / 2;
		break;
	case 10:
		/* Straddles the guard page after the scratch area. */
		p = (uintptr_t)c->scratch_end -
		    (objsize > 1 ? 1 + fz_below(c, objsize - 1) : 0);
		ok = objsize <= 1;
		if (objsize <= 1)
			p -= 1;
		break;
	default:
		ok = objsize <= FZ_SCRATCH_LEN;	/* else it runs into the guard */
		if (objsize > FZ_SCRATCH_LEN)
			objsize = FZ_SCRATCH_LEN;
		p = (uintptr_t)c->scratch +
		    fz_below(c, FZ_SCRATCH_LEN - objsize + 1);
		break;
	}
	if (valid)
		*valid = ok;
	return p;
}

void fz_random_range(struct fz_ctx *c, __u64 *addr, __u64 *len)
{
	uint64_t a, l;
	int local;

	switch (fz_below(c, 14)) {
	case 0:
	case 1:
	case 2:
	case 3:
		a = FZ_SANDBOX_BASE + fz_below(c, FZ_SANDBOX_PAGES) * FZ_PG;
		break;
	case 4:
		a = FZ_ARENA_BASE + fz_below(c, 12 * 32) * FZ_PG;
		break;
	case 5:
		a = (uintptr_t)c->area + fz_below(c, 8 << 20);
		break;
	case 6:
		a = fz_below(c, 4) * FZ_PG;
		break;
	case 7:
		a = fz_rand(c) & ((1ULL << 47) - 1);
		break;
	case 8:
		a = fz_task_size - fz_below(c, 4) * FZ_PG;
		break;
	case 9:
		a = ~0ULL - fz_below(c, 3 * FZ_PG);
		break;
	case 10:
		a = 0xffff888000000000ULL;
		break;
	case 11:
		a = (uintptr_t)&local & ~(FZ_PG - 1);	/* this stack */
		break;
	case 12:
		a = fz_task_size;
		break;
	default:
		a = fz_rand(c);
		break;
	}
	if (fz_pct(c, 15))
		a += fz_below(c, FZ_PG);
	switch (fz_below(c, 12)) {
	case 0:
		l = 0;
		break;
	case 1:
		l = 1;
		break;
	case 2:
		l = FZ_PG - 1;
		break;
	case 3:
	case 4:
	case 5:
		l = (1 + fz_below(c, 64)) * FZ_PG;
		break;
	case 6:
		l = fz_below(c, 1 << 20);
		break;
	case 7:
		l = 1ULL << (30 + fz_below(c, 17));
		break;
	case 8:
		l = ~0ULL - fz_below(c, 2);
		break;
	case 9:
		l = -a;			/* a + l wraps to exactly 0 */
		break;
	case 10:
		l = fz_task_size - a + fz_below(c, 2);	/* the top */
		break;
	default:
		l = fz_rand(c);
		break;
	}
	*addr = a;
	*len = l;
}

int fz_watch_check(const struct regwatch_watch *w)
{
	if (w->flags & ~REGWATCH_WATCH_FLAGS)
		return EINVAL;
	if (w->reserved[0] || w->reserved[1])
		return EINVAL;
	if (!w->len)
		return EINVAL;
	if (w->addr + w->len < w->addr)
		return EOVERFLOW;
	if (w->addr + w->len > fz_task_size)
		return EFAULT;
	return 0;
}

/* ---- per-context memory ------------------------------------------------- */

static void *map_fixed(void *at, size_t len, int prot)
{
	void *p = mmap(at, len, prot, MAP_PRIVATE | MAP_ANONYMOUS |
		       MAP_FIXED_NOREPLACE, -1, 0);

	if (p == MAP_FAILED || p != at) {
		fprintf(stderr, "fuzz_regwatch: cannot map %p (+%zu): %s\n",
			at, len, strerror(errno));
		if (p != MAP_FAILED)
			munmap(p, len);
		return NULL;
	}
	return p;
}

int fz_ctx_init(struct fz_ctx *c, int idx, uint64_t seed_mix)
{
	uint64_t s = fzc.seed * 0x100000001b3ULL + seed_mix * 7919 + 1;
	char *a = (char *)(FZ_TAREA_BASE + (uint64_t)idx * FZ_TAREA_SIZE);

	memset(c, 0, sizeof(*c));
	c->idx = idx;
	c->rng = splitmix(&s) | 1;
	c->area = a;
	c->mbuf = map_fixed(a, FZ_MBUF_PAGES * FZ_PG, PROT_READ | PROT_WRITE);
	c->tmp = a + (1 << 20);
	c->scratch = map_fixed(a + (2 << 20), FZ_SCRATCH_LEN + FZ_PG,
			       PROT_READ | PROT_WRITE);
	c->ro = map_fixed(a + (3 << 20), 2 * FZ_PG, PROT_READ | PROT_WRITE);
	c->none = map_fixed(a + (3 << 20) + (64 << 10), FZ_PG, PROT_NONE);
	c->hole = a + (3 << 20) + (128 << 10);
	c->churnpg = map_fixed(a + (5 << 20), FZ_PG, PROT_READ | PROT_WRITE);
	if (!c->mbuf || !c->scratch || !c->ro || !c->none || !c->churnpg)
		return -1;
	c->scratch_end = c->scratch + FZ_SCRATCH_LEN;
	if (mprotect(c->scratch_end, FZ_PG, PROT_NONE))
		return -1;
	memset(c->mbuf, 0, FZ_MBUF_PAGES * FZ_PG);
	memset(c->ro, 0x11, 2 * FZ_PG);
	if (mprotect(c->ro, 2 * FZ_PG, PROT_READ))
		return -1;
	memset(c->churnpg, 0x33, FZ_PG);
	if (madvise(c->churnpg, FZ_PG, MADV_DONTFORK))
		return -1;
	return 0;
}

void fz_ctx_fini(struct fz_ctx *c)
{
	mir_ctx_fini(c);
	/* Leave the area mapped: a child may still run on a copy of it,
	 * and an idle mapping costs nothing. Churn contexts are reused. */
}

/* ---- threads and dispatch ---------------------------------------------- */

struct op_entry {
	const char *name;
	void (*fn)(struct fz_ctx *c);
	int weight[3];		/* full, notify, mirror */
};

static const struct op_entry op_table[] = {
	{ "tracked",      trk_op,           { 30, 34,  0 } },
	{ "tracked-rand", trk_random_watch, {  2,  3,  0 } },
	{ "tracked-stat", trk_stats_probe,  {  2,  2,  0 } },
	{ "global",       trk_global_op,    {  1,  1,  0 } },
	{ "abi-shared",   abi_shared_op,    { 30, 37,  0 } },
	{ "abi-mmap",     abi_mmap_op,      {  5,  6,  0 } },
	{ "mirror-exact", mir_oracle_op,    {  8,  0, 45 } },
	{ "mirror-rand",  mir_random_op,    {  7,  0, 30 } },
	{ "sandbox",      proc_sandbox_op,  { 12, 14, 20 } },
	{ "thread",       proc_thread_op,   {  1,  1,  2 } },
	{ "fork",         proc_fork_op,     {  0,  0,  1 } },
};
#define NOPS (sizeof(op_table) / sizeof(op_table[0]))

static int total_weight;

void fz_run_one(struct fz_ctx *c);
void fz_run_one(struct fz_ctx *c)
{
	int r = (int)fz_below(c, (uint64_t)total_weight);
	size_t i;

	for (i = 0; i < NOPS; i++) {
		int w = op_table[i].weight[fzc.profile];

		if (r < w)
			break;
		r -= w;
	}
	if (i == NOPS)
		i = NOPS - 1;
	c->ops++;
	c->op = op_table[i].name;
	op_table[i].fn(c);
	c->op = NULL;
}

static struct fz_ctx worker_ctx[FZ_MAX_CTX];

static void *worker_fn(void *arg)
{
	struct fz_ctx *c = arg;

	fz_self = c;
	while (!fz_should_stop()) {
		fz_run_one(c);
		proc_reap(false);
	}
	return NULL;
}

/* ---- fatal signals and the watchdog ------------------------------------ */

static void fatal_signal(int sig)
{
	char line[300];
	struct fz_ctx *c = fz_self;
	int n = snprintf(line, sizeof(line),
			 "fuzz_regwatch: FATAL signal %d in pid %d ctx %d op #%llu %s "
			 "(seed %llu; replay with REGWATCH_SEED=%llu)\n", sig,
			 (int)getpid(), c ? c->idx : -1,
			 c ? (unsigned long long)c->ops : 0ULL,
			 c && c->op ? c->op : "-",
			 (unsigned long long)fzc.seed,
			 (unsigned long long)fzc.seed);

	if (n > 0 && write(2, line, (size_t)n) < 0)
		n = 0;
	if (fz)
		atomic_fetch_add(&fz->findings, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void dump_stacks(void)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd),
		 "for t in /proc/%d/task/*; do echo \"== $t $(cat $t/comm) "
		 "$(cut -d' ' -f3 $t/stat)\"; cat $t/stack 2>/dev/null; done >&2",
		 (int)getpid());
	if (system(cmd) < 0)
		perror("system");
}

/* ---- setup -------------------------------------------------------------- */

static uint64_t probe_task_size(void)
{
	void *p = mmap((void *)(1UL << 50), FZ_PG, PROT_READ,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t ts = (1ULL << 47) - FZ_PG;

	if (p != MAP_FAILED) {
		if ((uintptr_t)p >= (1ULL << 47))
			ts = (1ULL << 56) - FZ_PG;
		munmap(p, FZ_PG);
	}
	return ts;
}

static dev_t rdev_of(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : st.st_rdev;
}

static int sandbox_init(void)
{
	void *p = mmap((void *)FZ_SANDBOX_BASE, FZ_SANDBOX_LEN,
		       PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
		       MAP_FIXED_NOREPLACE, -1, 0);

	if (p != (void *)FZ_SANDBOX_BASE) {
		perror("fuzz_regwatch: sandbox");
		return -1;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fuzz_regwatch [--iterations N] [--seconds S] [--threads T]\n"
		"                     [--profile full|notify|mirror] [--check-module]\n"
		"                     [--no-fork] [--max-findings N] [--verbose]\n"
		"REGWATCH_SEED=n replays a run; REGWATCH_FUZZ_ITERATIONS sets N.\n");
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	const char *e;
	int i;

	fzc.iterations = 20000;
	fzc.threads = 4;
	fzc.max_findings = 20;
	fzc.argv0 = argv[0];
	e = getenv("REGWATCH_FUZZ_ITERATIONS");
	if (e && *e)
		fzc.iterations = strtoull(e, NULL, 0);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--iterations") && v) {
			fzc.iterations = strtoull(v, NULL, 0);
			i++;
		} else if (!strcmp(a, "--seconds") && v) {
			fzc.seconds = strtod(v, NULL);
			i++;
		} else if (!strcmp(a, "--threads") && v) {
			fzc.threads = atoi(v);
			i++;
		} else if (!strcmp(a, "--max-findings") && v) {
			fzc.max_findings = atoi(v);
			i++;
		} else if (!strcmp(a, "--profile") && v) {
			if (!strcmp(v, "full"))
				fzc.profile = FZ_PROFILE_FULL;
			else if (!strcmp(v, "notify"))
				fzc.profile = FZ_PROFILE_NOTIFY;
			else if (!strcmp(v, "mirror"))
				fzc.profile = FZ_PROFILE_MIRROR;
			else
				usage();
			i++;
		} else if (!strcmp(a, "--check-module")) {
			fzc.check_module = true;
		} else if (!strcmp(a, "--no-fork")) {
			fzc.no_fork = true;
		} else if (!strcmp(a, "--verbose")) {
			fzc.verbose = 1;
		} else {
			usage();
		}
	}
	if (fzc.threads < 1 || fzc.threads > 32 || fzc.max_findings < 1)
		usage();
	e = getenv("REGWATCH_SEED");
	if (e && *e)
		fzc.seed = strtoull(e, NULL, 0);
	else
		fzc.seed = (fz_now_ns() ^ ((uint64_t)getpid() << 20)) % 1000000007ULL;
}

/* Module-wide counters (debugfs and the mirror's STATS) back to the start. */
struct modcounts {
	long long monitors, watches, pages, mdevices, mpages;
};

static int read_modcounts(struct modcounts *m)
{
	struct regwatch_mirror_stats ms = { .size = sizeof(ms) };
	FILE *f = fopen("/sys/kernel/debug/regwatch/stats", "r");
	char key[32];
	long long v;
	int fd;

	memset(m, 0, sizeof(*m));
	if (!f)
		return -1;
	while (fscanf(f, "%31s %lld", key, &v) == 2) {
		if (!strcmp(key, "monitors"))
			m->monitors = v;
		else if (!strcmp(key, "watches"))
			m->watches = v;
		else if (!strcmp(key, "pages"))
			m->pages = v;
	}
	fclose(f);
	fd = open(REGWATCH_MIRROR_DEVICE, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (ioctl(fd, REGWATCH_MIRROR_IOC_STATS, &ms) == 0) {
		m->mdevices = (long long)ms.module_devices - 1;	/* this one */
		m->mpages = (long long)ms.module_pages;
	}
	close(fd);
	return 0;
}

/*
 * What the kernel did to memory by itself meanwhile: the oracle excuses
 * events of pages the kernel moved (pagemap); these name the mechanism.
 */
static const char *const vm_names[] = {
	"pgmigrate_success", "numa_pages_migrated", "compact_stall",
	"compact_migrate_scanned", "pgsteal_kswapd", "pgsteal_direct",
	"pswpout", "thp_split_pmd",
};
#define NVM (sizeof(vm_names) / sizeof(vm_names[0]))

static void read_vmstat(unsigned long long *v)
{
	FILE *f = fopen("/proc/vmstat", "r");
	char key[64];
	unsigned long long x;
	size_t i;

	memset(v, 0, NVM * sizeof(*v));
	if (!f)
		return;
	while (fscanf(f, "%63s %llu", key, &x) == 2)
		for (i = 0; i < NVM; i++)
			if (!strcmp(key, vm_names[i]))
				v[i] = x;
	fclose(f);
}

int main(int argc, char **argv)
{
	unsigned long long vm0[NVM], vm1[NVM];
	pthread_t tid[FZ_MAX_CTX];
	bool done[FZ_MAX_CTX] = { false };
	struct modcounts before, after;
	unsigned long long last_calls = ~0ULL;
	uint64_t last_progress;
	char buf[1024];
	int t, rc = 0, i;
	size_t k;

	if (argc >= 2 && !strcmp(argv[1], "--exec-child"))
		return proc_exec_child(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "--module-counters")) {
		/* For scripts: the module-wide counters, one line. */
		if (read_modcounts(&before))
			return 2;
		printf("monitors %lld watches %lld pages %lld mirror_devices "
		       "%lld mirror_pages %lld\n", before.monitors,
		       before.watches, before.pages, before.mdevices,
		       before.mpages);
		return 0;
	}
	parse_args(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (k = 0; k < NOPS; k++)
		total_weight += op_table[k].weight[fzc.profile];

	fz = mmap(NULL, sizeof(*fz), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (fz == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	memset(fz, 0, sizeof(*fz));
	fz_task_size = probe_task_size();
	fz_rdev_monitor = rdev_of(REGWATCH_DEVICE);
	fz_rdev_mirror = rdev_of(REGWATCH_MIRROR_DEVICE);
	printf("fuzz_regwatch: seed %llu (replay: REGWATCH_SEED=%llu %s "
	       "--iterations %llu --threads %d%s), TASK_SIZE %#llx\n",
	       (unsigned long long)fzc.seed, (unsigned long long)fzc.seed,
	       argv[0], (unsigned long long)fzc.iterations, fzc.threads,
	       fzc.profile == FZ_PROFILE_MIRROR ? " --profile mirror" :
	       fzc.profile == FZ_PROFILE_NOTIFY ? " --profile notify" : "",
	       (unsigned long long)fz_task_size);
	if (!fz_rdev_monitor || !fz_rdev_mirror) {
		fprintf(stderr, "fuzz_regwatch: %s or %s missing (module not "
			"loaded?)\n", REGWATCH_DEVICE, REGWATCH_MIRROR_DEVICE);
		return 2;
	}
	if (fzc.check_module && read_modcounts(&before)) {
		fprintf(stderr, "fuzz_regwatch: cannot read module counters\n");
		return 2;
	}

	read_vmstat(vm0);
	signal(SIGSEGV, fatal_signal);
	signal(SIGBUS, fatal_signal);
	signal(SIGILL, fatal_signal);
	signal(SIGFPE, fatal_signal);
	signal(SIGABRT, fatal_signal);
	signal(SIGPIPE, SIG_IGN);

	fzc.start_ns = fz_now_ns();
	if (fzc.seconds > 0)
		fzc.deadline_ns = fzc.start_ns + (uint64_t)(fzc.seconds * 1e9);
	if (sandbox_init())
		return 2;
	for (t = 0; t < fzc.threads; t++)
		if (fz_ctx_init(&worker_ctx[t], t, (uint64_t)t + 1))
			return 2;
	fz_self = &worker_ctx[0];
	if (abi_init() || (fzc.profile != FZ_PROFILE_MIRROR && trk_init()))
		return 2;
	if (mir_init())
		return 2;
	fz_self = NULL;

	for (t = 0; t < fzc.threads; t++)
		if (pthread_create(&tid[t], NULL, worker_fn, &worker_ctx[t])) {
			perror("pthread_create");
			return 2;
		}
	/* Watchdog: a thread stuck in the kernel shows as no progress. */
	last_progress = fz_now_ns();
	for (;;) {
		unsigned long long calls = atomic_load(&fz->calls);
		int alive = 0;

		for (t = 0; t < fzc.threads; t++) {
			if (!done[t] && pthread_tryjoin_np(tid[t], NULL) == 0)
				done[t] = true;
			alive += !done[t];
		}
		if (!alive)
			break;
		if (calls != last_calls) {
			last_calls = calls;
			last_progress = fz_now_ns();
		} else if (fz_now_ns() - last_progress > 180ULL * 1000000000ULL) {
			atomic_fetch_add(&fz->findings, 1);
			fprintf(stderr, "fuzz_regwatch: FINDING: no call completed "
				"for 180 s (seed %llu): stuck in the kernel? "
				"Threads:\n", (unsigned long long)fzc.seed);
			for (t = 0; t < fzc.threads; t++)
				fprintf(stderr, "  ctx %d op #%llu %s\n", t,
					(unsigned long long)worker_ctx[t].ops,
					worker_ctx[t].op ? worker_ctx[t].op : "-");
			dump_stacks();
			fflush(stderr);
			_exit(3);
		}
		usleep(200000);
	}

	fz_self = &worker_ctx[0];
	worker_ctx[0].op = "finish";
	proc_finish();
	if (fzc.profile != FZ_PROFILE_MIRROR && trk_finish())
		rc = 1;
	abi_finish();
	mir_finish();
	for (t = 0; t < fzc.threads; t++)
		fz_ctx_fini(&worker_ctx[t]);
	if (fzc.check_module) {
		/* Releases run from the last close: give them a moment. */
		for (i = 0; i < 50; i++) {
			if (read_modcounts(&after))
				break;
			if (after.monitors == before.monitors &&
			    after.watches == before.watches &&
			    after.pages == before.pages &&
			    after.mdevices == before.mdevices &&
			    after.mpages == before.mpages)
				break;
			usleep(100000);
		}
		if (after.monitors != before.monitors ||
		    after.watches != before.watches ||
		    after.pages != before.pages ||
		    after.mdevices != before.mdevices ||
		    after.mpages != before.mpages)
			fz_finding("module counters did not come back: monitors "
				   "%lld->%lld watches %lld->%lld pages %lld->%lld "
				   "mirror devices %lld->%lld mirror pages %lld->%lld",
				   before.monitors, after.monitors, before.watches,
				   after.watches, before.pages, after.pages,
				   before.mdevices, after.mdevices, before.mpages,
				   after.mpages);
	}

	printf("fuzz_regwatch: seed %llu, %.1f s, %d threads, profile %s\n",
	       (unsigned long long)fzc.seed,
	       (fz_now_ns() - fzc.start_ns) / 1e9, fzc.threads,
	       fzc.profile == FZ_PROFILE_MIRROR ? "mirror" :
	       fzc.profile == FZ_PROFILE_NOTIFY ? "notify" : "full");
	k = 0;
	buf[0] = 0;
	for (i = 0; i < NCAT; i++)
		k += (size_t)snprintf(buf + k, sizeof(buf) - k, "%s%s %llu",
				      i ? ", " : "", cat_names[i],
				      (unsigned long long)atomic_load(&fz->cat[i]));
	printf("fuzz_regwatch: calls %llu (%s; %llu in %llu forked children)\n",
	       (unsigned long long)atomic_load(&fz->calls), buf,
	       (unsigned long long)atomic_load(&fz->child_calls),
	       (unsigned long long)atomic_load(&fz->children));
	if (fzc.profile != FZ_PROFILE_MIRROR) {
		trk_summary(buf, sizeof(buf));
		printf("fuzz_regwatch: tracked: %s\n", buf);
		abi_summary(buf, sizeof(buf));
		printf("fuzz_regwatch: abi: %s\n", buf);
	}
	mir_summary(buf, sizeof(buf));
	printf("fuzz_regwatch: mirror: %s\n", buf);
	proc_summary(buf, sizeof(buf));
	printf("fuzz_regwatch: processes: %s\n", buf);
	if (atomic_load(&fz->noise))
		printf("fuzz_regwatch: %llu events explained by the environment "
		       "(the kernel's own CLEARs, flagged BACKGROUND), not findings\n",
		       (unsigned long long)atomic_load(&fz->noise));
	read_vmstat(vm1);
	k = 0;
	buf[0] = 0;
	for (i = 0; i < (int)NVM; i++)
		k += (size_t)snprintf(buf + k, sizeof(buf) - k, "%s%s +%llu",
				      i ? ", " : "", vm_names[i],
				      vm1[i] - vm0[i]);
	printf("fuzz_regwatch: kernel meanwhile (/proc/vmstat): %s\n", buf);
	for (i = 0; i < 8 && i < (int)atomic_load(&fz->nmsg); i++)
		printf("  %s", fz->msgs[i]);
	printf("fuzz_regwatch: findings %llu\n",
	       (unsigned long long)atomic_load(&fz->findings));
	return atomic_load(&fz->findings) || rc ? 1 : 0;
}
