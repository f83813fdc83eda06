/* SPDX-License-Identifier: MIT */
/*
 * fuzz_regwatch: a randomized fuzzer with oracles for regwatch.ko (notify
 * mode on /dev/regwatch, mirror mode on /dev/regwatch-mirror). Runs in
 * the test guest as root. See docs/hardening.md.
 *
 * Parts (one file each):
 *   fuzz_regwatch.c  main: options, threads, op dispatch, call counting,
 *                    findings, the watchdog, the summary
 *   fuzz_tracked.c   the tracked monitor and its exact oracle: regions
 *                    of memory whose every invalidation the fuzzer knows
 *   fuzz_abi.c       every ioctl, read, poll and mmap of /dev/regwatch
 *                    with random and boundary arguments on monitors
 *                    shared by every thread (guessed ids, random heads)
 *   fuzz_mirror.c    /dev/regwatch-mirror: random transfers and an exact
 *                    data oracle (the device never sees a stale page)
 *   fuzz_proc.c      the sandbox (random mm calls), fork / exec / exit and
 *                    thread churn
 *
 * Address-space layout (fixed addresses far below the mmap base, so that
 * mmap(NULL) never lands in a hole the fuzzer leaves for a moment):
 *   FZ_ARENA_BASE    tracked regions (fuzz_tracked.c)
 *   FZ_SANDBOX_BASE  random mm calls by every thread, never read or
 *                    written by the CPU (signal-free)
 *   FZ_TAREA_BASE    one area per context (thread, child): private
 *                    buffers, scratch memory for the kernel to write,
 *                    read-only and PROT_NONE pages, holes
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "regwatch.h"

#define FZ_PG			4096UL

#ifndef offsetofend
#define offsetofend(T, m)	(offsetof(T, m) + sizeof(((T *)0)->m))
#endif
#define FZ_ARENA_BASE		0x200000000000UL
#define FZ_SANDBOX_BASE		0x300000000000UL
#define FZ_SANDBOX_PAGES	8192UL
#define FZ_SANDBOX_LEN		(FZ_SANDBOX_PAGES * FZ_PG)
#define FZ_TAREA_BASE		0x380000000000UL
#define FZ_TAREA_SIZE		(64UL << 20)
#define FZ_MAX_CTX		64
#define FZ_DRAIN_CTX		62	/* the tracked monitor's drainer */
#define FZ_CHILD_CTX		63	/* a forked child (its own mm) */
#define FZ_MBUF_PAGES		8	/* private mirror oracle buffer */
#define FZ_TMP_PAGES		64	/* mremap target, normally unmapped */
#define FZ_SCRATCH_LEN		(256UL << 10)

/* Profiles: which families of operations run. */
enum { FZ_PROFILE_FULL, FZ_PROFILE_NOTIFY, FZ_PROFILE_MIRROR };

/* What a call was, for the summary. */
enum fz_cat {
	CAT_IOCTL, CAT_READ, CAT_POLL, CAT_MMAP, CAT_MM, CAT_FILE,
	CAT_FORK, CAT_THREAD, NCAT
};

/* Shared with forked children (MAP_SHARED): counters and findings. */
struct fz_shared {
	atomic_ullong calls;
	atomic_ullong cat[NCAT];
	atomic_ullong findings;
	atomic_ullong noise;		/* explained by the environment */
	atomic_ullong children, child_calls;
	atomic_uint nmsg;
	atomic_int stop;
	char msgs[8][480];
};

struct fz_cfg {
	uint64_t seed;
	uint64_t iterations;	/* calls; 0: no limit */
	double seconds;		/* 0: no limit */
	int threads;
	int profile;
	int verbose;
	bool check_module;	/* module-wide counters back at the end */
	bool no_fork;
	uint64_t start_ns, deadline_ns;
	int max_findings;
	const char *argv0;
};

/* One thread's (or child's) state. */
struct fz_ctx {
	int idx;
	bool child;		/* in a forked child: no shared tables */
	bool churn;		/* a short-lived churn thread */
	uint64_t rng;
	uint64_t ops;
	const char *op;		/* the operation running, for reports */
	char *area;
	char *mbuf;		/* FZ_MBUF_PAGES, only this context */
	char *tmp;		/* FZ_TMP_PAGES of reserved, unmapped VA */
	char *scratch;		/* FZ_SCRATCH_LEN RW, then a guard page */
	char *scratch_end;
	char *ro;		/* 2 pages, read-only */
	char *none;		/* 1 page, PROT_NONE */
	char *hole;		/* never mapped */
	char *churnpg;		/* 1 page, DONTFORK: the blocked-reader test */
	struct fz_mpriv *mpriv;	/* fuzz_mirror.c */
};

extern struct fz_shared *fz;
extern struct fz_cfg fzc;
extern uint64_t fz_task_size;	/* the kernel's TASK_SIZE for us */
extern dev_t fz_rdev_monitor, fz_rdev_mirror;
extern __thread struct fz_ctx *fz_self;

/* ---- fuzz_regwatch.c ---------------------------------------------------- */
uint64_t fz_rand(struct fz_ctx *c);
uint64_t fz_below(struct fz_ctx *c, uint64_t n);	/* [0, n) */
bool fz_pct(struct fz_ctx *c, unsigned int pct);	/* true pct% */
uint64_t fz_now_ns(void);
bool fz_should_stop(void);

void fz_count(enum fz_cat cat);
void fz_finding(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fz_noise(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fz_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

int fz_ctx_init(struct fz_ctx *c, int idx, uint64_t seed_mix);
void fz_ctx_fini(struct fz_ctx *c);

/* Counted system calls: the result, or -errno. */
long fz_ioctl(int fd, unsigned long cmd, void *arg);
long fz_read(int fd, void *buf, size_t len);
int fz_poll(int fd, short events, int timeout_ms, short *revents);
void *fz_mmap(void *addr, size_t len, int prot, int flags, int fd,
	      off_t off, int *err);
int fz_munmap(void *addr, size_t len);
int fz_mprotect(void *addr, size_t len, int prot);
int fz_madvise(void *addr, size_t len, int advice);
void *fz_mremap(void *old, size_t old_len, size_t new_len, int flags,
		void *new_addr, int *err);
int fz_open(const char *path, int flags);
int fz_close(int fd);

/* Pointers the kernel must refuse or may write safely (never our heap). */
uint64_t fz_garbage_ptr(struct fz_ctx *c, size_t objsize, bool *valid);
/* A random range for WATCH / XFER: mapped, unmapped, huge, wrapping... */
void fz_random_range(struct fz_ctx *c, __u64 *addr, __u64 *len);

/* The kernel's access_ok(): the VFS checks it before the driver runs. */
static inline bool fz_access_ok(uint64_t addr, uint64_t size)
{
	return size <= fz_task_size && addr <= fz_task_size - size;
}

/* Expected errno of REGWATCH_IOC_WATCH's argument checks (0: passes). */
int fz_watch_check(const struct regwatch_watch *w);

/* pagemap entries (present, swapped, PFN) of n pages: not counted. */
void fz_pfns(uintptr_t start, int n, uint64_t *out);
/* Pages the kernel migrated, compacted or reclaimed so far (vmstat). */
uint64_t fz_env_events(void);

/* true if fd is /dev/regwatch (or the mirror) in this process's table. */
bool fz_fd_is(int fd, dev_t rdev);

/* ---- fuzz_tracked.c ---------------------------------------------------- */
int trk_init(void);
void trk_op(struct fz_ctx *c);		/* one region operation */
void trk_global_op(struct fz_ctx *c);	/* fork or soft-dirty, all regions */
void trk_random_watch(struct fz_ctx *c);	/* untracked watches on it */
void trk_stats_probe(struct fz_ctx *c);	/* invariants from any thread */
int trk_finish(void);
int trk_fd(void);
void trk_summary(char *buf, size_t len);
bool trk_active(void);

/* ---- fuzz_abi.c --------------------------------------------------------- */
int abi_init(void);
void abi_shared_op(struct fz_ctx *c);	/* shared monitors, many threads */
void abi_mmap_op(struct fz_ctx *c);	/* device mmap games */
void abi_finish(void);
/* Fills fds[] with the shared monitors' fds (for children); count. */
int abi_fds(int *fds, int max);
void abi_summary(char *buf, size_t len);

/* ---- fuzz_mirror.c ------------------------------------------------------ */
int mir_init(void);
void mir_oracle_op(struct fz_ctx *c);	/* exact data checks */
void mir_random_op(struct fz_ctx *c);	/* random transfers, stats */
void mir_ctx_fini(struct fz_ctx *c);
void mir_finish(void);
int mir_fds(int *fds, int max);
void mir_summary(char *buf, size_t len);

/* ---- fuzz_proc.c -------------------------------------------------------- */
void proc_sandbox_op(struct fz_ctx *c);	/* random mm calls in the sandbox */
pid_t proc_fork_child(struct fz_ctx *c);	/* parent side; -1 on failure */
void proc_fork_op(struct fz_ctx *c);	/* fork without the tracked lock */
void proc_thread_op(struct fz_ctx *c);	/* thread churn */
void proc_reap(bool wait_all);
void proc_finish(void);
int proc_exec_child(int argc, char **argv);	/* --exec-child */
void proc_summary(char *buf, size_t len);

#endif /* FUZZ_H */
