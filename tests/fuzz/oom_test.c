// SPDX-License-Identifier: MIT
/*
 * oom_test: a process with many watches (and a mirror device with every
 * page of its arena mapped) is killed by the OOM killer, and the OOM
 * reaper really runs on it: the module's notifiers must handle the
 * reaper's non-blockable invalidations.
 *
 * Why this takes some arranging: the reaper runs OOM_REAPER_DELAY (2 s)
 * after the kill, and only if the victim's mm has not gone through
 * exit_mmap by then (MMF_OOM_SKIP). A victim with nothing else going on
 * exits in milliseconds, and its exit tears the mm down with blockable
 * RELEASE / UNMAP calls: the reaper is then skipped. So the test keeps
 * the victim's mm alive from outside (mm_users, not just mm_count):
 *   - the parent (outside the memory cgroup, OOM-immune) reads the
 *     victim's memory through /proc/<pid>/mem into a buffer registered
 *     with userfaultfd; mem_rw() holds mmget() while its copy_to_user()
 *     waits for the fault, which the parent resolves only when it is done:
 *     exit_mmap cannot run before that, and the reaper finds the mm;
 *   - the parent holds the victim's monitor and mirror fds (pidfd_getfd),
 *     so the victim's exit (exit_files) does not release them and their
 *     notifiers are still registered when the reaper comes.
 * The kill itself is bounded: the victim runs in a child memory cgroup
 * (cgroup v2, mounted if needed) with memory.max and no swap, its arena
 * and its balloon are mlocked (unevictable: no reclaim can touch the
 * watched pages first), and it allocates until the cgroup's OOM killer
 * kills it.
 *
 * Checks, after the kernel logged "oom_reaper: reaped process <pid>":
 *   - every watch fired exactly once, from the reaper: its ring entry
 *     (read through /proc/<pid>/mem: the read-only shared mapping is
 *     VM_SHARED, which the reaper leaves alone) has the NONBLOCK flag,
 *     class UNMAP, its cookie and its page; its state word says FIRED;
 *   - the mirror device dropped every page it had mapped (module-wide
 *     mirror page count back to where it was before the victim);
 *   - the module-wide counter of non-blockable invalidations, the
 *     "nonblock" line of /sys/kernel/debug/regwatch/stats, grew by at
 *     least the number of watches. (Per-monitor counts are in STATS, but
 *     STATS refuses a caller outside the monitor's mm, and the victim is
 *     dead: only a module-wide counter can say it.)
 *   - then, with the mm released: the victim died of SIGKILL, the module's
 *     counters come back to where they were, the kernel log is clean (the
 *     test harness checks that).
 * Exit status: 0 pass; 1 fail; 2 setup failure.
 * Environment: OOM_WATCHES (default 2048), OOM_MEM_MB (memory.max, 48).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "regwatch.h"

#define PG		4096UL
#define CG_ROOT		"/sys/fs/cgroup"
#define DEBUGFS_STATS	"/sys/kernel/debug/regwatch/stats"

/* What the victim tells the parent once it is ready. */
struct victim_info {
	uint64_t hold;		/* a page the parent's pinned read targets */
	uint64_t shared;	/* the monitor's read-only mapping */
	uint64_t shared_size;
	uint64_t arena;
	uint32_t nwatch;
	int mon_fd, mir_fd;
	int ok;
};

static int failures;
static char cgdir[256];

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stdout, "oom_test: FAIL: ");
	vfprintf(stdout, fmt, ap);
	fprintf(stdout, "\n");
	va_end(ap);
	fflush(stdout);
	failures++;
}

static void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stdout, "oom_test: ");
	vfprintf(stdout, fmt, ap);
	fprintf(stdout, "\n");
	va_end(ap);
	fflush(stdout);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* A "key value" line of the module's debugfs stats; -1 if missing. */
static long long modstat(const char *want)
{
	char key[64];
	long long v, found = -1;
	FILE *f = fopen(DEBUGFS_STATS, "r");

	if (!f) {
		mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
		f = fopen(DEBUGFS_STATS, "r");
	}
	if (!f)
		return -1;
	while (fscanf(f, "%63s %lld", key, &v) == 2)
		if (!strcmp(key, want))
			found = v;
	fclose(f);
	return found;
}

/* Module-wide mirror pages and devices (not counting the probe). */
static int mirror_counts(long long *pages, long long *devices)
{
	struct regwatch_mirror_stats ms = { .size = sizeof(ms) };
	int fd = open(REGWATCH_MIRROR_DEVICE, O_RDWR | O_CLOEXEC), r;

	if (fd < 0)
		return -1;
	r = ioctl(fd, REGWATCH_MIRROR_IOC_STATS, &ms);
	close(fd);
	if (r)
		return -1;
	*pages = (long long)ms.module_pages;
	*devices = (long long)ms.module_devices - 1;
	return 0;
}

/* ---- cgroup v2 ------------------------------------------------------------ */

static bool cgroup2_mounted(void)
{
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/mounts", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, " " CG_ROOT " cgroup2 "))
			found = true;
	fclose(f);
	return found;
}

static int cgroup_setup(long mem_mb)
{
	char path[320], val[64];

	if (!cgroup2_mounted()) {
		mkdir(CG_ROOT, 0755);
		if (mount("cgroup2", CG_ROOT, "cgroup2", 0, NULL)) {
			note("cannot mount cgroup2 on %s: %s", CG_ROOT,
			     strerror(errno));
			return -1;
		}
		note("mounted cgroup2 on %s", CG_ROOT);
	}
	if (write_str(CG_ROOT "/cgroup.subtree_control", "+memory")) {
		note("cannot enable the memory controller: %s", strerror(errno));
		return -1;
	}
	snprintf(cgdir, sizeof(cgdir), CG_ROOT "/regwatch-oom-%d", (int)getpid());
	if (mkdir(cgdir, 0755)) {
		note("mkdir %s: %s", cgdir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/memory.max", cgdir);
	snprintf(val, sizeof(val), "%ld", mem_mb << 20);
	if (write_str(path, val)) {
		note("%s: %s", path, strerror(errno));
		return -1;
	}
	/* No swap for the victim (absent without swap accounting: the
	 * mlocked pages cannot be swapped anyway). */
	snprintf(path, sizeof(path), "%s/memory.swap.max", cgdir);
	write_str(path, "0");
	return 0;
}

static void cgroup_teardown(void)
{
	int i;

	if (!cgdir[0])
		return;
	for (i = 0; i < 50 && rmdir(cgdir) && errno == EBUSY; i++)
		usleep(100000);
}

/* ---- the victim ---------------------------------------------------------- */

__attribute__((noreturn))
static void victim(int ready, int go, uint32_t nwatch)
{
	struct regwatch_options o = {
		.ring_entries = nwatch * 2, .max_watches = nwatch + 16,
	};
	struct victim_info vi = { .nwatch = nwatch };
	struct regwatch_watch *req;
	struct regwatch *rw;
	struct regwatch_mirror_xfer x = { 0 };
	char path[320], pid[32], c;
	char *arena, *hold;
	uint32_t i, k;
	int r;

	/* The parent made itself OOM-immune: we inherited that. */
	if (write_str("/proc/self/oom_score_adj", "1000"))
		goto out;
	snprintf(path, sizeof(path), "%s/cgroup.procs", cgdir);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (write_str(path, pid))
		goto out;
	arena = mmap(NULL, nwatch * PG, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	hold = mmap(NULL, PG, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (arena == MAP_FAILED || hold == MAP_FAILED)
		goto out;
	memset(arena, 0x5a, nwatch * PG);
	memset(hold, 0x77, PG);
	/* Unevictable: reclaim cannot fire a watch before the reaper. */
	if (mlock(arena, nwatch * PG) || mlock(hold, PG))
		goto out;
	r = regwatch_open(&o, &rw);
	if (r)
		goto out;
	req = calloc(512, sizeof(*req));
	if (!req)
		goto out;
	for (i = 0; i < nwatch; i += 512) {
		uint32_t n = nwatch - i < 512 ? nwatch - i : 512;

		memset(req, 0, 512 * sizeof(*req));
		for (k = 0; k < n; k++) {
			req[k].addr = (uintptr_t)arena + (uint64_t)(i + k) * PG;
			req[k].len = PG;
			req[k].cookie = i + k + 1;
		}
		if (regwatch_watchv(rw, req, n) != (int)n)
			goto out;
	}
	/* The mirror maps every page of the arena, for writing. */
	vi.mir_fd = open(REGWATCH_MIRROR_DEVICE, O_RDWR);
	if (vi.mir_fd < 0)
		goto out;
	x.op = REGWATCH_MIRROR_OP_MAP;
	x.flags = REGWATCH_MIRROR_MAP_WRITE;
	x.addr = (uintptr_t)arena;
	x.len = (uint64_t)nwatch * PG;
	if (ioctl(vi.mir_fd, REGWATCH_MIRROR_IOC_XFER, &x))
		goto out;
	vi.hold = (uintptr_t)hold;
	vi.arena = (uintptr_t)arena;
	vi.mon_fd = regwatch_fd(rw);
	vi.shared_size = regwatch_config(rw)->shared_size;
	{
		/* A mapping of our own of the read-only area. */
		void *m = mmap(NULL, vi.shared_size, PROT_READ, MAP_SHARED,
			       vi.mon_fd, 0);

		if (m == MAP_FAILED)
			goto out;
		vi.shared = (uintptr_t)m;
	}
	vi.ok = 1;
out:
	if (write(ready, &vi, sizeof(vi)) != sizeof(vi) || !vi.ok)
		_exit(2);
	if (read(go, &c, 1) != 1)
		_exit(2);
	/* Allocate, locked, until the cgroup's OOM killer kills us. */
	for (i = 0; i < 100000; i++) {
		char *b = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE |
			       MAP_LOCKED, -1, 0);

		if (b != MAP_FAILED)
			memset(b, 1, 1 << 20);
	}
	_exit(3);	/* never killed */
}

/* ---- the parent's pinned read -------------------------------------------- */

struct pin {
	int memfd;
	uint64_t addr;
	char *buf;		/* userfaultfd-registered, missing */
	ssize_t r;
};

static void *pin_fn(void *arg)
{
	struct pin *p = arg;

	/* mem_rw() holds mmget() until this copy_to_user() completes. */
	p->r = pread(p->memfd, p->buf, PG, (off_t)p->addr);
	return NULL;
}

/* Read the new kernel log records; set *hit[i] when needle[i] shows. */
static void kmsg_scan(int kfd, const char *const *needle, bool *hit, int n)
{
	char rec[2048];
	ssize_t r;
	int i;

	if (kfd < 0)
		return;
	while ((r = read(kfd, rec, sizeof(rec) - 1)) > 0 ||
	       (r < 0 && errno == EPIPE)) {
		if (r <= 0)
			continue;
		rec[r] = 0;
		for (i = 0; i < n; i++)
			if (strstr(rec, needle[i]))
				hit[i] = true;
	}
}

int main(void)
{
	uint32_t nwatch = getenv("OOM_WATCHES") ? (uint32_t)atoi(getenv("OOM_WATCHES")) : 2048;
	long mem_mb = getenv("OOM_MEM_MB") ? atol(getenv("OOM_MEM_MB")) : 48;
	long long nb0, nb1 = -1, mp0, md0, mp1 = 0, md1, mp2 = 0, md2 = 0;
	long long mon0, w0, pg0;
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct uffdio_zeropage zp = { .mode = 0 };
	struct victim_info vi;
	struct pin pin = { .r = -2 };
	struct uffd_msg msg;
	struct pollfd pf;
	pthread_t pt;
	int ready[2], go[2], status, pidfd = -1, mon = -1, mir = -1, kfd, uffd;
	char path[64], killed_line[64], reaped_line[64], *shared = NULL;
	const char *const needles[2] = { killed_line, reaped_line };
	bool seen_log[2] = { false, false };
	bool reaped = false, pin_started = false, have_nb;
	double t0, t_kill = 0, t_reap = 0;
	uint32_t i, nb_events = 0, other = 0, fired = 0;
	pid_t pid;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (nwatch < 16 || nwatch > 100000 || mem_mb < 16) {
		fprintf(stderr, "oom_test: bad OOM_WATCHES / OOM_MEM_MB\n");
		return 2;
	}
	if (access(REGWATCH_DEVICE, R_OK | W_OK)) {
		note("%s missing: is the module loaded?", REGWATCH_DEVICE);
		return 2;
	}
	write_str("/proc/self/oom_score_adj", "-1000");
	kfd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (kfd >= 0)
		lseek(kfd, 0, SEEK_END);
	nb0 = modstat("nonblock");
	have_nb = nb0 >= 0;
	mon0 = modstat("monitors");
	w0 = modstat("watches");
	pg0 = modstat("pages");
	if (mirror_counts(&mp0, &md0) || mon0 < 0) {
		note("cannot read the module's counters");
		return 2;
	}
	if (cgroup_setup(mem_mb))
		return 2;
	if (pipe(ready) || pipe(go))
		return 2;
	pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		close(ready[0]);
		close(go[1]);
		victim(ready[1], go[0], nwatch);
	}
	close(ready[1]);
	close(go[0]);
	if (read(ready[0], &vi, sizeof(vi)) != sizeof(vi) || !vi.ok) {
		fail("the victim could not set up (%u watches, mirror, cgroup)",
		     nwatch);
		goto out_kill;
	}
	note("victim %d: %u watches on %u mlocked pages, mirror mapping them "
	     "all, memory.max %ld MiB", (int)pid, nwatch, nwatch, mem_mb);

	/* Hold its monitor and mirror: its exit will not release them. */
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd >= 0) {
		mon = (int)syscall(SYS_pidfd_getfd, pidfd, vi.mon_fd, 0);
		mir = (int)syscall(SYS_pidfd_getfd, pidfd, vi.mir_fd, 0);
	}
	if (pidfd < 0 || mon < 0 || mir < 0) {
		fail("pidfd_open / pidfd_getfd: %s", strerror(errno));
		goto out_kill;
	}
	if (mirror_counts(&mp1, &md1) || mp1 - mp0 < nwatch)
		fail("the mirror has %lld pages mapped for the victim, expected "
		     ">= %u", mp1 - mp0, nwatch);

	/* Keep its mm alive from outside: a read that waits on a fault. */
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	pin.memfd = open(path, O_RDONLY | O_CLOEXEC);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	pin.buf = mmap(NULL, PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reg.range.start = (uintptr_t)pin.buf;
	reg.range.len = PG;
	if (pin.memfd < 0 || uffd < 0 || pin.buf == MAP_FAILED ||
	    ioctl(uffd, UFFDIO_API, &api) || ioctl(uffd, UFFDIO_REGISTER, &reg)) {
		fail("setting up the pinned read (/proc/pid/mem, userfaultfd): "
		     "%s", strerror(errno));
		goto out_kill;
	}
	pin.addr = vi.hold;
	if (pthread_create(&pt, NULL, pin_fn, &pin)) {
		fail("pthread_create");
		goto out_kill;
	}
	pin_started = true;
	pf = (struct pollfd){ .fd = uffd, .events = POLLIN };
	if (poll(&pf, 1, 30000) != 1 || read(uffd, &msg, sizeof(msg)) !=
	    sizeof(msg) || msg.event != UFFD_EVENT_PAGEFAULT) {
		fail("the pinned read never reached its fault");
		goto out_release;
	}

	/* Now let it run into the OOM killer. */
	t0 = now_s();
	if (write(go[1], "g", 1) != 1) {
		fail("cannot start the victim");
		goto out_release;
	}
	pf = (struct pollfd){ .fd = pidfd, .events = POLLIN };
	if (poll(&pf, 1, 60000) != 1) {
		fail("the victim was not killed within 60 s (memory.max %ld "
		     "MiB)", mem_mb);
		goto out_release;
	}
	t_kill = now_s() - t0;
	snprintf(killed_line, sizeof(killed_line), "Killed process %d ", (int)pid);
	snprintf(reaped_line, sizeof(reaped_line), "reaped process %d ", (int)pid);
	/* The reaper comes OOM_REAPER_DELAY (2 s) after the kill. */
	for (i = 0; i < 300 && !seen_log[1]; i++) {
		usleep(100000);
		kmsg_scan(kfd, needles, seen_log, 2);
	}
	reaped = seen_log[1];
	t_reap = now_s() - t0;
	if (!seen_log[0])
		fail("no \"Killed process %d\" (the OOM killer) in the kernel log",
		     (int)pid);
	if (!reaped)
		fail("no \"oom_reaper: reaped process %d\" in the kernel log "
		     "within 30 s", (int)pid);

	/* The victim's ring, read from its (still alive) mm. */
	shared = malloc(vi.shared_size);
	if (shared && pread(pin.memfd, shared, vi.shared_size,
			    (off_t)vi.shared) == (ssize_t)vi.shared_size) {
		const struct regwatch_shared_header *h = (void *)shared;
		const struct regwatch_event *ring =
			(const void *)(shared + h->ring_offset);
		const uint64_t *states =
			(const void *)(shared + h->states_offset);
		uint8_t *seen = calloc(nwatch + 1, 1);
		uint64_t e;

		for (e = 0; e < h->producer && e < h->ring_entries && seen; e++) {
			const struct regwatch_event *ev = &ring[e];
			uint64_t ck = ev->cookie;

			if (ev->type == REGWATCH_EVENT_INVALIDATE &&
			    (ev->flags & REGWATCH_EVENT_NONBLOCK) &&
			    /* the reaper is a kernel thread */
			    (ev->flags & REGWATCH_EVENT_BACKGROUND) &&
			    ev->class == REGWATCH_CLASS_UNMAP && ck >= 1 &&
			    ck <= nwatch &&
			    ev->start == vi.arena + (ck - 1) * PG &&
			    ev->end == ev->start + PG && !seen[ck]) {
				seen[ck] = 1;
				nb_events++;
			} else {
				if (other++ < 5)
					note("unexpected event: type %u class %#x "
					     "flags %#x cookie %llu [%#llx, %#llx)",
					     ev->type, ev->class, ev->flags,
					     (unsigned long long)ck,
					     (unsigned long long)ev->start,
					     (unsigned long long)ev->end);
			}
		}
		for (i = 0; i < h->max_watches; i++)
			if ((states[i] & REGWATCH_STATE_MASK) ==
			    REGWATCH_STATE_FIRED)
				fired++;
		free(seen);
		if (h->producer != nwatch || nb_events != nwatch || other)
			fail("ring: %llu events, %u from the reaper (NONBLOCK, "
			     "UNMAP, one per watch), %u others; expected %u",
			     (unsigned long long)h->producer, nb_events, other,
			     nwatch);
		if (fired != nwatch)
			fail("%u state words FIRED, expected %u", fired, nwatch);
	} else {
		fail("cannot read the victim's shared area through "
		     "/proc/%d/mem: %s", (int)pid, strerror(errno));
	}
	(void)md1;
	if (mirror_counts(&mp2, &md2) || mp2 != mp0)
		fail("the mirror still maps %lld of the victim's pages after the "
		     "reaper", mp2 - mp0);
	nb1 = modstat("nonblock");

out_release:
	/* Resolve the fault: the pinned read ends, exit_mmap can run. */
	zp.range.start = (uintptr_t)pin.buf;
	zp.range.len = PG;
	if (pin_started) {
		ioctl(uffd, UFFDIO_ZEROPAGE, &zp);
		pthread_join(pt, NULL);
	}
out_kill:
	kill(pid, SIGKILL);
	if (waitpid(pid, &status, 0) == pid && !failures &&
	    !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		fail("the victim ended with status %#x, not SIGKILL", status);
	if (mon >= 0)
		close(mon);
	if (mir >= 0)
		close(mir);
	if (pidfd >= 0)
		close(pidfd);
	cgroup_teardown();
	/* Releases run from the last close: give them a moment. */
	for (i = 0; i < 50; i++) {
		if (modstat("monitors") == mon0 && modstat("watches") == w0 &&
		    modstat("pages") == pg0 && !mirror_counts(&mp2, &md2) &&
		    mp2 == mp0 && md2 == md0)
			break;
		usleep(100000);
	}
	if (i == 50)
		fail("module counters did not come back: monitors %lld->%lld "
		     "watches %lld->%lld pages %lld->%lld mirror pages "
		     "%lld->%lld devices %lld->%lld", mon0, modstat("monitors"),
		     w0, modstat("watches"), pg0, modstat("pages"), mp0, mp2,
		     md0, md2);
	if (!failures) {
		note("killed after %.1f s, reaped after %.1f s: %u watches fired "
		     "from the reaper (NONBLOCK), %u state words FIRED, the mirror "
		     "dropped %lld pages", t_kill, t_reap, nb_events, fired,
		     mp1 - mp0);
		if (!have_nb) {
			fail("/sys/kernel/debug/regwatch/stats has no "
			     "\"nonblock\" line (module-wide count of "
			     "non-blockable invalidations handled)");
		} else if (nb1 - nb0 < nwatch) {
			fail("debugfs nonblock went %lld -> %lld, expected +%u or "
			     "more", nb0, nb1, nwatch);
		} else {
			note("debugfs nonblock %lld -> %lld (+%lld)", nb0, nb1,
			     nb1 - nb0);
		}
	}
	note("%s", failures ? "FAILED" : "passed");
	return failures ? 1 : 0;
}
