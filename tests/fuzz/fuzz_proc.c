// SPDX-License-Identifier: MIT
/*
 * The sandbox, and fork / exec / exit / thread churn.
 *
 * Sandbox: every thread maps, unmaps, remaps, moves, protects, advises,
 * locks and populates random ranges of a 32 MiB area at random, with
 * random flags (including THP advice and collapse, KSM advice, fork
 * advice, WIPEONFORK, PAGEOUT). Watches of the shared monitors and the
 * mirror devices' transfers land there, so their notifiers run against
 * all of it. The CPU never reads or writes the sandbox (a remap by
 * another thread would make that a crash); memory is populated with
 * MADV_POPULATE_WRITE, which fails instead of faulting.
 *
 * Children (fork): the parent holds the tracked monitor's global lock
 * across fork() (fuzz_tracked.c). A child
 *   - checks that every inherited monitor and mirror fd refuses it (EIO
 *     for ioctl, read, mmap; POLLERR for poll),
 *   - then, depending on the variant: exits at once; runs a short fuzz
 *     of its own (its own monitors and devices, its own copy of the
 *     sandbox) and exits with _exit, exit_group from several threads or
 *     SIGKILL to itself mid-call; execs the fuzzer again with an fd left
 *     open (which must refuse the new image too); forks a grandchild;
 *     or holds the last reference to a monitor the parent opened,
 *     watched and closed, and releases it (the module then tears down
 *     watches of the parent's mm from the child).
 * The parent kills some children at random times. A child dying of a
 * signal other than SIGKILL is a finding.
 *
 * Threads: short-lived threads run a few operations and exit (some with
 * monitors and devices left open); a reader blocks in read(2) on a
 * monitor and must be woken by one invalidation, also after another
 * thread closed the fd it reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

enum { MAXCHILD = 4, NCHURN = 4, POOL0 = 32, NPOOL = 16 };

struct child {
	pid_t pid;
	uint64_t kill_at;	/* 0: let it finish */
	bool killed;
};

static struct {
	pthread_mutex_t lock;
	struct child ch[MAXCHILD];
	int nch;
	bool subreaper;
	pthread_mutex_t churn_lock;
	pthread_t churn[NCHURN];
	int churn_state[NCHURN];	/* 0 free, 1 starting, 2 running */
	struct fz_ctx *pool[NPOOL];
	bool pool_used[NPOOL];
	atomic_ullong forks, exits_ok, killed, execs, threads, readers;
	atomic_ullong sandbox_ops, holds, inherits;
} P = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.churn_lock = PTHREAD_MUTEX_INITIALIZER,
};

/* ---- the sandbox ---------------------------------------------------------- */

void proc_sandbox_op(struct fz_ctx *c)
{
	static const int advice[] = {
		MADV_DONTNEED, MADV_FREE, MADV_PAGEOUT, MADV_COLD,
		MADV_WILLNEED, MADV_POPULATE_WRITE, MADV_POPULATE_READ,
		MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTFORK, MADV_DOFORK,
		MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_REMOVE, MADV_NORMAL,
		MADV_RANDOM, MADV_SEQUENTIAL, MADV_MERGEABLE, MADV_UNMERGEABLE,
		25 /* MADV_COLLAPSE */, MADV_DONTDUMP, MADV_DODUMP,
	};
	size_t pages = 1 + fz_below(c, fz_pct(c, 80) ? 64 : 1024);
	uint64_t at = fz_below(c, FZ_SANDBOX_PAGES);
	char *p, *q;
	size_t len;
	int err, fd, prot;
	void *r;

	atomic_fetch_add(&P.sandbox_ops, 1);
	if (fz_pct(c, 10)) {		/* 2 MiB aligned, for THP */
		pages = 512 * (1 + fz_below(c, 2));
		at = fz_below(c, FZ_SANDBOX_PAGES / 512) * 512;
	}
	if (at + pages > FZ_SANDBOX_PAGES)
		pages = FZ_SANDBOX_PAGES - at;
	p = (char *)FZ_SANDBOX_BASE + at * FZ_PG;
	len = pages * FZ_PG;
	switch (fz_below(c, 16)) {
	case 0:
	case 1:
		prot = fz_pct(c, 80) ? PROT_READ | PROT_WRITE :
				       (int)fz_below(c, 8);
		r = fz_mmap(p, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
			    (fz_pct(c, 10) ? MAP_POPULATE : 0), -1, 0, &err);
		if (r == p && fz_pct(c, 50))
			fz_madvise(p, len, MADV_POPULATE_WRITE);
		break;
	case 2:
		fz_mmap(p, len, PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &err);
		fz_madvise(p, len, MADV_POPULATE_WRITE);
		break;
	case 3:
		fz_count(CAT_FILE);
		fd = memfd_create("fuzz-sandbox", MFD_CLOEXEC);
		if (fd < 0)
			break;
		if (ftruncate(fd, (off_t)len) == 0)
			fz_mmap(p, len, PROT_READ | PROT_WRITE,
				(fz_pct(c, 70) ? MAP_SHARED : MAP_PRIVATE) |
				MAP_FIXED, fd, 0, &err);
		close(fd);
		break;
	case 4:
		fz_munmap(p, len);
		break;
	case 5:
		/* Move within the sandbox. */
		q = (char *)FZ_SANDBOX_BASE +
		    fz_below(c, FZ_SANDBOX_PAGES - pages + 1) * FZ_PG;
		if (q + len <= p || p + len <= q)
			fz_mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED |
				  (fz_pct(c, 20) ? MREMAP_DONTUNMAP : 0), q,
				  &err);
		break;
	case 6:
		/* Shrink, or grow in place (may fail). */
		fz_mremap(p, len, fz_pct(c, 50) ? len / 2 + FZ_PG : len + len / 2,
			  0, NULL, &err);
		break;
	case 7:
	case 8:
	case 9:
		fz_madvise(p + (fz_pct(c, 5) ? 1 + fz_below(c, FZ_PG - 1) : 0),
			   len, advice[fz_below(c, sizeof(advice) /
						   sizeof(advice[0]))]);
		break;
	case 10:
		fz_mprotect(p, len, (int)fz_below(c, 8));
		break;
	case 11:
		fz_count(CAT_MM);
		if (mlock(p, len) == 0) {
			fz_count(CAT_MM);
			munlock(p, len);
		}
		break;
	case 12:
		fz_count(CAT_MM);
		msync(p, len, fz_pct(c, 50) ? MS_ASYNC : MS_SYNC |
		      (fz_pct(c, 20) ? MS_INVALIDATE : 0));
		break;
	default:
		fz_madvise(p, len, fz_pct(c, 70) ? MADV_POPULATE_WRITE :
						  MADV_DONTNEED);
		break;
	}
}

/* ---- children -------------------------------------------------------------- */

/* Every inherited fd of a monitor or a mirror must refuse this mm. */
static void eio_checks(const int *fds, int n, const int *mfds, int nm)
{
	struct regwatch_watch w = {
		.addr = FZ_SANDBOX_BASE, .len = FZ_PG,
	};
	struct regwatch_stats st = { .size = sizeof(st) };
	struct regwatch_mirror_stats ms = { .size = sizeof(ms) };
	struct regwatch_mirror_xfer x = {
		.op = REGWATCH_MIRROR_OP_MAP, .addr = FZ_SANDBOX_BASE,
		.len = FZ_PG,
	};
	char buf[64 * 48];
	short rev = 0;
	void *m;
	long r;
	int k, err;

	for (k = 0; k < n; k++) {
		int acc;

		if (!fz_fd_is(fds[k], fz_rdev_monitor))
			continue;	/* closed and reused meanwhile */
		acc = fcntl(fds[k], F_GETFL) & O_ACCMODE;
		if ((r = fz_ioctl(fds[k], REGWATCH_IOC_STATS, &st)) != -EIO)
			fz_finding("inherited monitor fd %d: STATS %ld, expected "
				   "EIO", fds[k], r);
		if ((r = fz_ioctl(fds[k], REGWATCH_IOC_WATCH, &w)) != -EIO)
			fz_finding("inherited monitor fd %d: WATCH %ld, expected "
				   "EIO", fds[k], r);
		if (acc != O_WRONLY &&
		    (r = fz_read(fds[k], buf, sizeof(buf))) != -EIO)
			fz_finding("inherited monitor fd %d: read %ld, expected "
				   "EIO", fds[k], r);
		if (acc != O_RDWR)
			goto poll;
		m = fz_mmap(NULL, FZ_PG, PROT_READ | PROT_WRITE, MAP_SHARED,
			    fds[k], 1LL << 32, &err);
		if (m != MAP_FAILED || err != EIO) {
			fz_finding("inherited monitor fd %d: mmap %s, expected "
				   "EIO", fds[k], m == MAP_FAILED ?
				   strerror(err) : "succeeded");
			if (m != MAP_FAILED)
				munmap(m, FZ_PG);
		}
poll:
		fz_poll(fds[k], POLLIN, 0, &rev);
		if (!(rev & POLLERR))
			fz_finding("inherited monitor fd %d: poll revents %#x, "
				   "expected POLLERR", fds[k], rev);
	}
	for (k = 0; k < nm; k++) {
		if (!fz_fd_is(mfds[k], fz_rdev_mirror))
			continue;
		if ((r = fz_ioctl(mfds[k], REGWATCH_MIRROR_IOC_XFER, &x)) != -EIO)
			fz_finding("inherited mirror fd %d: XFER %ld, expected EIO",
				   mfds[k], r);
		if ((r = fz_ioctl(mfds[k], REGWATCH_MIRROR_IOC_STATS, &ms)) !=
		    -EIO)
			fz_finding("inherited mirror fd %d: STATS %ld, expected "
				   "EIO", mfds[k], r);
	}
}

/* A small exact check of the child's own: watch, unmap, fired. */
static void child_own_monitor(struct fz_ctx *c)
{
	struct regwatch *rw;
	struct regwatch_ref a, b;
	char *p;
	int r;

	r = regwatch_open(NULL, &rw);
	fz_count(CAT_FILE);
	if (r) {
		fz_finding("child: regwatch_open: %s", strerror(-r));
		return;
	}
	p = fz_mmap(NULL, 2 * FZ_PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, NULL);
	if (p == MAP_FAILED) {
		regwatch_close(rw);
		return;
	}
	memset(p, 1, 2 * FZ_PG);
	fz_count(CAT_IOCTL);
	fz_count(CAT_IOCTL);
	if (regwatch_watch(rw, p, FZ_PG, 1, 0, &a) ||
	    regwatch_watch(rw, p + FZ_PG, FZ_PG, 2, 0, &b)) {
		fz_finding("child: WATCH failed");
	} else {
		fz_munmap(p, FZ_PG);
		if (regwatch_ref_valid(&a) || !regwatch_ref_valid(&b))
			fz_finding("child: after munmap of the first page: "
				   "watch 1 %s, watch 2 %s",
				   regwatch_ref_valid(&a) ? "valid" : "invalid",
				   regwatch_ref_valid(&b) ? "valid" : "invalid");
	}
	if (fz_pct(c, 50))
		regwatch_close(rw);	/* else: released at exit */
}

static void *child_busy_thread(void *arg)
{
	struct fz_ctx *c = arg;
	int i;

	fz_self = c;
	for (i = 0; i < 1000; i++)
		proc_sandbox_op(c);
	return NULL;
}

static void child_fuzz(struct fz_ctx *c, int n)
{
	int i;

	for (i = 0; i < n && !atomic_load(&fz->stop); i++) {
		c->ops++;
		switch (fz_below(c, 6)) {
		case 0:
			c->op = "child-mirror";
			mir_oracle_op(c);
			break;
		case 2:
			c->op = "child-mirror-rand";
			mir_random_op(c);
			break;
		case 3:
			c->op = "child-own";
			child_own_monitor(c);
			break;
		default:
			c->op = "child-sandbox";
			proc_sandbox_op(c);
			break;
		}
	}
}

static void child_exec(int fd, int kind)
{
	char a1[16], a2[16];
	char *argv[] = { (char *)"fuzz_regwatch", (char *)"--exec-child", a1,
			 a2, NULL };
	int d = dup(fd);	/* without O_CLOEXEC */

	if (d < 0)
		_exit(0);
	snprintf(a1, sizeof(a1), "%d", d);
	snprintf(a2, sizeof(a2), "%d", kind);
	fz_count(CAT_FORK);
	execv("/proc/self/exe", argv);
	_exit(0);	/* exec may fail (e.g. no /proc): not the module's fault */
}

/* A fresh context in a forked process (its own area, its own monitors). */
static void child_ctx(struct fz_ctx *cc, uint64_t seed)
{
	munmap((void *)(FZ_TAREA_BASE + FZ_CHILD_CTX * FZ_TAREA_SIZE),
	       FZ_TAREA_SIZE);
	fz_self = NULL;
	if (fz_ctx_init(cc, FZ_CHILD_CTX, seed ^ (uint64_t)getpid()))
		_exit(2);
	cc->child = true;
	cc->op = "child-eio";
	fz_self = cc;
}

__attribute__((noreturn))
static void child_main(struct fz_ctx *pc, int variant, const int *fds, int n,
		       const int *mfds, int nm, int hold)
{
	struct fz_ctx cc;
	pthread_t t;

	child_ctx(&cc, pc->rng);
	atomic_fetch_add(&fz->children, 1);
	eio_checks(fds, n, mfds, nm);
	switch (variant) {
	case 0:
		break;
	case 1:
		child_fuzz(&cc, 10 + (int)fz_below(&cc, 60));
		break;
	case 2:
		if (n && fz_pct(&cc, 70))
			child_exec(fds[fz_below(&cc, (uint64_t)n)], 0);
		else if (nm)
			child_exec(mfds[fz_below(&cc, (uint64_t)nm)], 1);
		break;
	case 3:
		/* A grandchild with the same inheritance. */
		fz_count(CAT_FORK);
		if (fork() == 0) {
			/* Its own context: DONTFORK pages were not inherited. */
			child_ctx(&cc, cc.rng);
			eio_checks(fds, n, mfds, nm);
			child_fuzz(&cc, 5 + (int)fz_below(&cc, 20));
			_exit(0);
		}
		child_fuzz(&cc, 5 + (int)fz_below(&cc, 20));
		break;
	case 4:
		/* The last reference to the parent's monitor is ours. */
		usleep((useconds_t)fz_below(&cc, 20000));
		if (hold >= 0 && fz_pct(&cc, 50))
			close(hold);
		break;
	default:
		/* exit_group (or SIGKILL) while another thread is busy. */
		cc.op = "child-threads";
		if (pthread_create(&t, NULL, child_busy_thread, &cc) == 0) {
			child_fuzz(&cc, 3 + (int)fz_below(&cc, 10));
			if (fz_pct(&cc, 50))
				kill(getpid(), SIGKILL);
		}
		break;
	}
	_exit(0);
}

static void reap_status(pid_t pid, int status)
{
	int k;

	pthread_mutex_lock(&P.lock);
	for (k = 0; k < P.nch; k++)
		if (P.ch[k].pid == pid)
			break;
	if (k < P.nch)
		P.ch[k] = P.ch[--P.nch];
	pthread_mutex_unlock(&P.lock);
	if (WIFEXITED(status)) {
		if (WEXITSTATUS(status) == 0)
			atomic_fetch_add(&P.exits_ok, 1);
		else if (WEXITSTATUS(status) != 1)
			fz_finding("child %d exited with %d", (int)pid,
				   WEXITSTATUS(status));
		/* 1: it reported its findings itself */
	} else if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);

		if (sig == SIGKILL)
			atomic_fetch_add(&P.killed, 1);
		else if (sig != SIGSEGV && sig != SIGBUS && sig != SIGILL &&
			 sig != SIGFPE && sig != SIGABRT)
			fz_finding("child %d killed by signal %d", (int)pid, sig);
		/* the fatal handler counted the others already */
	}
}

void proc_reap(bool wait_all)
{
	uint64_t now = fz_now_ns(), until = now + 60ULL * 1000000000ULL;
	pid_t pid;
	int status, k;

	if (!P.nch && !wait_all)
		return;
	pthread_mutex_lock(&P.lock);
	for (k = 0; k < P.nch; k++)
		if ((P.ch[k].kill_at && now > P.ch[k].kill_at && !P.ch[k].killed) ||
		    wait_all) {
			kill(P.ch[k].pid, SIGKILL);
			P.ch[k].killed = true;
		}
	pthread_mutex_unlock(&P.lock);
	for (;;) {
		pid = waitpid(-1, &status, WNOHANG | __WALL);
		if (pid > 0) {
			reap_status(pid, status);
			continue;
		}
		if (!wait_all || pid < 0 || fz_now_ns() > until)
			break;
		usleep(10000);
	}
	if (wait_all && P.nch)
		fz_finding("%d children could not be reaped within 60 s (stuck "
			   "in the kernel?)", P.nch);
}

/*
 * MADV_DOFORK clears VM_DONTCOPY: a child can inherit a monitor's shared
 * mappings if the parent asks. Then the child's mappings keep the monitor
 * alive after the parent closed it, and the child reads the header and
 * state words and writes consumer heads of a monitor bound to another mm.
 */
struct inherit {
	int fd;
	struct regwatch_config cfg;
	void *shared, *cons;
};

static bool inherit_setup(struct fz_ctx *c, struct inherit *in)
{
	int k;

	memset(&in->cfg, 0, sizeof(in->cfg));
	in->cfg.size = sizeof(in->cfg);
	in->cfg.abi_version = REGWATCH_ABI_VERSION;
	in->cfg.ring_entries = 16;
	in->cfg.max_watches = 16;
	in->fd = fz_open(REGWATCH_DEVICE, O_RDWR | O_CLOEXEC);
	if (in->fd < 0)
		return false;
	if (fz_ioctl(in->fd, REGWATCH_IOC_CONFIG, &in->cfg))
		goto fail;
	in->shared = fz_mmap(NULL, in->cfg.shared_size, PROT_READ, MAP_SHARED,
			     in->fd, 0, NULL);
	in->cons = fz_mmap(NULL, FZ_PG, PROT_READ | PROT_WRITE, MAP_SHARED,
			   in->fd, 1LL << 32, NULL);
	if (in->shared == MAP_FAILED || in->cons == MAP_FAILED) {
		if (in->shared != MAP_FAILED)
			munmap(in->shared, in->cfg.shared_size);
		if (in->cons != MAP_FAILED)
			munmap(in->cons, FZ_PG);
		goto fail;
	}
	if (fz_madvise(in->shared, in->cfg.shared_size, MADV_DOFORK) ||
	    fz_madvise(in->cons, FZ_PG, MADV_DOFORK))
		fz_finding("MADV_DOFORK on the monitor's mappings: %s",
			   strerror(errno));
	for (k = 0; k < 6; k++) {
		struct regwatch_watch w = {
			.addr = FZ_SANDBOX_BASE +
				fz_below(c, FZ_SANDBOX_PAGES) * FZ_PG,
			.len = FZ_PG * (1 + fz_below(c, 64)),
			.flags = (uint32_t)fz_below(c, 8),
		};

		fz_ioctl(in->fd, REGWATCH_IOC_WATCH, &w);
	}
	return true;
fail:
	fz_close(in->fd);
	in->fd = -1;
	return false;
}

static void inherit_drop(struct inherit *in)
{
	fz_munmap(in->shared, in->cfg.shared_size);
	fz_munmap(in->cons, FZ_PG);
	fz_close(in->fd);
}

/* In the child: the inherited pages are the monitor's own. */
static void child_inherit(struct inherit *in)
{
	const struct regwatch_shared_header *h = in->shared;
	volatile struct regwatch_consumer *cons = in->cons;
	uint64_t v = 0;
	int k;

	if (h->abi_version != REGWATCH_ABI_VERSION ||
	    h->ring_entries != in->cfg.ring_entries ||
	    h->max_watches != in->cfg.max_watches)
		fz_finding("child: inherited monitor header reads abi %u ring %u "
			   "watches %u", h->abi_version, h->ring_entries,
			   h->max_watches);
	for (k = 0; k < 8; k++) {
		cons->head = v;		/* the kernel must not trust it */
		v = v * 31 + (uint64_t)getpid() + h->producer;
	}
	close(in->fd);	/* ours; the mappings keep the monitor alive */
}

pid_t proc_fork_child(struct fz_ctx *c)
{
	int fds[16], mfds[8], n = 0, nm, variant, hold = -1;
	struct inherit inh = { .fd = -1 };
	pid_t pid;

	if (fzc.no_fork)
		return -1;
	if (!P.subreaper) {
		/* Orphaned grandchildren come back to us to be reaped. */
		prctl(PR_SET_CHILD_SUBREAPER, 1);
		P.subreaper = true;
	}
	proc_reap(false);
	pthread_mutex_lock(&P.lock);
	if (P.nch >= MAXCHILD) {
		kill(P.ch[0].pid, SIGKILL);
		P.ch[0].killed = true;
		pthread_mutex_unlock(&P.lock);
		return -1;
	}
	pthread_mutex_unlock(&P.lock);
	if (trk_fd() >= 0)
		fds[n++] = trk_fd();
	n += abi_fds(fds + n, 16 - n);
	nm = mir_fds(mfds, 8);
	variant = (int)fz_below(c, 7);
	if (variant == 6 && !inherit_setup(c, &inh))
		variant = 0;
	if (variant == 4) {
		/* A monitor whose last reference the child will hold. */
		struct regwatch_config cfg = {
			.size = sizeof(cfg), .abi_version = REGWATCH_ABI_VERSION,
			.ring_entries = 64, .max_watches = 64,
		};
		int k;

		hold = fz_open(REGWATCH_DEVICE, O_RDWR);
		if (hold >= 0 && fz_ioctl(hold, REGWATCH_IOC_CONFIG, &cfg) == 0)
			for (k = 0; k < 8; k++) {
				struct regwatch_watch w = {
					.addr = FZ_SANDBOX_BASE +
						fz_below(c, FZ_SANDBOX_PAGES) * FZ_PG,
					.len = FZ_PG * (1 + fz_below(c, 64)),
					.flags = (uint32_t)fz_below(c, 8),
				};

				fz_ioctl(hold, REGWATCH_IOC_WATCH, &w);
			}
		atomic_fetch_add(&P.holds, 1);
	}
	/*
	 * Record the child under the lock held across fork(): another
	 * thread's waitpid() may reap a child that exits at once, and must
	 * find it in the table. (The child never takes this lock.)
	 */
	pthread_mutex_lock(&P.lock);
	if (P.nch >= MAXCHILD) {
		pthread_mutex_unlock(&P.lock);
		if (hold >= 0)
			fz_close(hold);
		return -1;
	}
	fz_count(CAT_FORK);
	pid = fork();
	if (pid == 0) {
		if (variant == 6)
			child_inherit(&inh);
		child_main(c, variant, fds, n, mfds, nm, hold);
	}
	if (pid > 0) {
		P.ch[P.nch].pid = pid;
		P.ch[P.nch].killed = false;
		P.ch[P.nch].kill_at = fz_pct(c, 30) ?
			fz_now_ns() + fz_below(c, 50) * 1000000ULL : 0;
		P.nch++;
	}
	pthread_mutex_unlock(&P.lock);
	if (hold >= 0)
		fz_close(hold);		/* the child holds the last reference */
	if (variant == 6)
		inherit_drop(&inh);	/* the child's mappings hold it now */
	if (pid < 0)
		return -1;
	atomic_fetch_add(&P.forks, 1);
	if (variant == 2)
		atomic_fetch_add(&P.execs, 1);
	if (variant == 6)
		atomic_fetch_add(&P.inherits, 1);
	return pid;
}

/* Fork without the tracked monitor (mirror profile). */
void proc_fork_op(struct fz_ctx *c)
{
	if (!trk_active())
		proc_fork_child(c);
}

/* The fuzzer run again by a child with an inherited fd left open. */
int proc_exec_child(int argc, char **argv)
{
	struct regwatch_stats st = { .size = sizeof(st) };
	struct regwatch_mirror_stats ms = { .size = sizeof(ms) };
	struct regwatch_watch w = { .len = 4096 };
	char page[4096] __attribute__((aligned(4096)));
	long r;
	int fd, kind, bad = 0;

	if (argc < 4)
		return 2;
	fd = atoi(argv[2]);
	kind = atoi(argv[3]);
	w.addr = (uintptr_t)page;
	if (kind == 0) {
		r = ioctl(fd, REGWATCH_IOC_STATS, &st) < 0 ? -errno : 0;
		bad |= r != -EIO && r != -EBADF;
		r = ioctl(fd, REGWATCH_IOC_WATCH, &w) < 0 ? -errno : 0;
		bad |= r != -EIO && r != -EBADF;
		r = read(fd, page, sizeof(page)) < 0 ? -errno : 0;
		bad |= r != -EIO && r != -EBADF;
	} else {
		r = ioctl(fd, REGWATCH_MIRROR_IOC_STATS, &ms) < 0 ? -errno : 0;
		bad |= r != -EIO && r != -EBADF;
	}
	if (bad)
		fprintf(stderr, "fuzz_regwatch: FINDING: after exec, an inherited "
			"%s fd was not refused with EIO\n",
			kind ? "mirror" : "monitor");
	return bad ? 1 : 0;
}

/* ---- thread churn ---------------------------------------------------- */

static struct fz_ctx *pool_get(int *slot)
{
	int k;

	pthread_mutex_lock(&P.churn_lock);
	for (k = 0; k < NPOOL; k++)
		if (!P.pool_used[k])
			break;
	if (k == NPOOL) {
		pthread_mutex_unlock(&P.churn_lock);
		return NULL;
	}
	P.pool_used[k] = true;
	pthread_mutex_unlock(&P.churn_lock);
	if (!P.pool[k]) {
		P.pool[k] = calloc(1, sizeof(*P.pool[k]));
		if (!P.pool[k] ||
		    fz_ctx_init(P.pool[k], POOL0 + k, 0xc4u + (uint64_t)k)) {
			free(P.pool[k]);
			P.pool[k] = NULL;
			P.pool_used[k] = false;
			return NULL;
		}
	}
	*slot = k;
	return P.pool[k];
}

static void pool_put(int slot)
{
	pthread_mutex_lock(&P.churn_lock);
	P.pool_used[slot] = false;
	pthread_mutex_unlock(&P.churn_lock);
}

struct churn_arg {
	struct fz_ctx *c;
	int slot;
	int nops;
};

void fz_run_one(struct fz_ctx *c);

static void *churn_fn(void *arg)
{
	struct churn_arg *a = arg;
	struct fz_ctx *c = a->c;
	int i;

	fz_self = c;
	c->churn = true;
	for (i = 0; i < a->nops && !fz_should_stop(); i++) {
		int k = (int)fz_below(c, 5);

		c->ops++;
		if (fzc.profile == FZ_PROFILE_MIRROR && k < 2)
			k += 2;		/* no notify-mode operations */
		switch (k) {
		case 0:
		case 1:
			c->op = "churn-shared";
			abi_shared_op(c);
			break;
		case 2:
			c->op = "churn-mirror";
			if (fzc.profile != FZ_PROFILE_NOTIFY)
				mir_oracle_op(c);
			break;
		case 3:
			c->op = "churn-mirror-rand";
			if (fzc.profile != FZ_PROFILE_NOTIFY)
				mir_random_op(c);
			break;
		default:
			c->op = "churn-sandbox";
			proc_sandbox_op(c);
			break;
		}
	}
	/* Leave the mirror device open half the time: the
	 * next user of this context closes them (or the process exit). */
	if (fz_pct(c, 50))
		fz_ctx_fini(c);
	c->op = NULL;
	pool_put(a->slot);
	free(a);
	return NULL;
}

struct reader_arg {
	struct fz_ctx *c;
	atomic_int tid;
	int fd;
	uint64_t id;
	atomic_int state;	/* 1: about to read, 2: done */
	long r;
	struct regwatch_event ev[4];
};

static void *reader_fn(void *arg)
{
	struct reader_arg *a = arg;

	fz_self = a->c;
	a->c->op = "blocked-reader";
	atomic_store(&a->tid, (int)gettid());
	atomic_store(&a->state, 1);
	a->r = fz_read(a->fd, a->ev, sizeof(a->ev));
	atomic_store(&a->state, 2);
	return NULL;
}

/* Is thread tid of this process inside read(2) right now? */
static bool in_read(int tid)
{
	char path[64], buf[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 2 && buf[0] == '0' && buf[1] == ' ';
}

/* A reader blocked in read(2) must be woken by one invalidation. */
static void blocked_reader(struct fz_ctx *c)
{
	struct regwatch_config cfg = {
		.size = sizeof(cfg), .abi_version = REGWATCH_ABI_VERSION,
		.ring_entries = 16, .max_watches = 4,
	};
	struct reader_arg *a;
	struct fz_ctx *rc;
	struct regwatch_watch w;
	struct timespec ts;
	bool close_early = fz_pct(c, 40);
	pthread_t t;
	int slot;

	rc = pool_get(&slot);
	if (!rc)
		return;
	a = calloc(1, sizeof(*a));
	if (!a) {
		pool_put(slot);
		return;
	}
	a->c = rc;
	a->fd = fz_open(REGWATCH_DEVICE, O_RDWR | O_CLOEXEC);
	if (a->fd < 0 || fz_ioctl(a->fd, REGWATCH_IOC_CONFIG, &cfg)) {
		fz_finding("blocked reader: open/CONFIG failed");
		goto out;
	}
	memset(&w, 0, sizeof(w));
	w.addr = (uintptr_t)rc->churnpg;
	w.len = FZ_PG;
	w.cookie = 77;
	w.flags = fz_pct(c, 50) ? REGWATCH_WATCH_STREAMING : 0;
	if (fz_ioctl(a->fd, REGWATCH_IOC_WATCH, &w)) {
		fz_finding("blocked reader: WATCH failed");
		goto out;
	}
	a->id = w.watch_id;
	fz_count(CAT_THREAD);
	if (pthread_create(&t, NULL, reader_fn, a)) {
		a->r = -1;
		goto out;
	}
	atomic_fetch_add(&P.readers, 1);
	while (atomic_load(&a->state) < 1)
		usleep(100);
	usleep(1000 + (useconds_t)fz_below(c, 5000));
	if (close_early) {
		/* Only once it is really blocked in read(2): before that the
		 * fd number could even be reused by another open. */
		int k;

		for (k = 0; k < 500 && !in_read(atomic_load(&a->tid)); k++)
			usleep(10000);
		close_early = k < 500;
	}
	if (close_early) {
		/* The read holds the file: closing the fd changes nothing. */
		fz_close(a->fd);
		a->fd = -1;
	}
	fz_madvise(rc->churnpg, FZ_PG, MADV_DONTNEED);
	rc->churnpg[0] = 1;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20;
	if (pthread_timedjoin_np(t, NULL, &ts)) {
		fz_finding("a reader blocked in read(2) was not woken by an "
			   "invalidation within 20 s");
		/* It stays blocked: leak it (and its context) rather than
		 * free memory it may still write. */
		return;
	}
	if (a->r != (long)sizeof(struct regwatch_event) ||
	    a->ev[0].watch_id != a->id || a->ev[0].cookie != 77 ||
	    a->ev[0].class != REGWATCH_CLASS_CLEAR ||
	    a->ev[0].start != (uintptr_t)rc->churnpg)
		fz_finding("blocked reader woke with %ld: id %#llx (want %#llx) "
			   "class %#x", a->r, (unsigned long long)a->ev[0].watch_id,
			   (unsigned long long)a->id, a->ev[0].class);
out:
	if (a->fd >= 0)
		fz_close(a->fd);
	free(a);
	pool_put(slot);
}

void proc_thread_op(struct fz_ctx *c)
{
	struct churn_arg *a;
	int slot, k, free_k = -1;

	if (c->child || c->churn)
		return;
	if (fz_pct(c, 30)) {
		blocked_reader(c);
		return;
	}
	pthread_mutex_lock(&P.churn_lock);
	for (k = 0; k < NCHURN; k++) {
		if (P.churn_state[k] == 2 &&
		    pthread_tryjoin_np(P.churn[k], NULL) == 0)
			P.churn_state[k] = 0;
		if (!P.churn_state[k] && free_k < 0)
			free_k = k;
	}
	if (free_k >= 0)
		P.churn_state[free_k] = 1;
	pthread_mutex_unlock(&P.churn_lock);
	if (free_k < 0)
		return;
	k = free_k;
	a = calloc(1, sizeof(*a));
	if (a)
		a->c = pool_get(&slot);
	if (!a || !a->c) {
		free(a);
		pthread_mutex_lock(&P.churn_lock);
		P.churn_state[k] = 0;
		pthread_mutex_unlock(&P.churn_lock);
		return;
	}
	a->slot = slot;
	a->nops = 5 + (int)fz_below(c, 40);
	fz_count(CAT_THREAD);
	atomic_fetch_add(&P.threads, 1);
	if (pthread_create(&P.churn[k], NULL, churn_fn, a)) {
		pool_put(slot);
		free(a);
		pthread_mutex_lock(&P.churn_lock);
		P.churn_state[k] = 0;
		pthread_mutex_unlock(&P.churn_lock);
		return;
	}
	pthread_mutex_lock(&P.churn_lock);
	P.churn_state[k] = 2;
	pthread_mutex_unlock(&P.churn_lock);
}

void proc_finish(void)
{
	int k;

	for (k = 0; k < NCHURN; k++) {
		pthread_mutex_lock(&P.churn_lock);
		if (P.churn_state[k] != 2) {
			pthread_mutex_unlock(&P.churn_lock);
			continue;
		}
		P.churn_state[k] = 1;
		pthread_mutex_unlock(&P.churn_lock);
		pthread_join(P.churn[k], NULL);
		P.churn_state[k] = 0;
	}
	for (k = 0; k < NPOOL; k++)
		if (P.pool[k] && !P.pool_used[k])
			fz_ctx_fini(P.pool[k]);
	proc_reap(true);
}

void proc_summary(char *buf, size_t len)
{
	snprintf(buf, len, "%llu forks (%llu exec, %llu holding the last "
		 "reference, %llu inheriting a monitor's mappings), %llu "
		 "children exited, %llu killed, %llu churn threads, %llu blocked "
		 "readers, %llu sandbox ops",
		 (unsigned long long)atomic_load(&P.forks),
		 (unsigned long long)atomic_load(&P.execs),
		 (unsigned long long)atomic_load(&P.holds),
		 (unsigned long long)atomic_load(&P.inherits),
		 (unsigned long long)atomic_load(&P.exits_ok),
		 (unsigned long long)atomic_load(&P.killed),
		 (unsigned long long)atomic_load(&P.threads),
		 (unsigned long long)atomic_load(&P.readers),
		 (unsigned long long)atomic_load(&P.sandbox_ops));
}
