// SPDX-License-Identifier: MIT
/*
 * Lifecycle of a monitor: the CONFIG handshake, the mmap rules, teardown
 * on close and on exit, unknown ioctls, read(), and the module reference
 * an open monitor holds.
 *
 * Mostly raw ioctls and mmaps: the point is the ABI itself.
 *
 * test_unload_reload really unloads and reloads the module (with the
 * parameters it had) and so runs only as "test_lifecycle --reload", which
 * runs nothing else: the runner does it last.
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "regwatch.h"
#include "rwt_util.h"

#define ALL_FEATURES (REGWATCH_FEAT_ONESHOT | REGWATCH_FEAT_STREAMING | \
		      REGWATCH_FEAT_EVENTFD | REGWATCH_FEAT_BATCH | \
		      REGWATCH_FEAT_READ | REGWATCH_FEAT_SIGNAL | \
		      REGWATCH_FEAT_BACKGROUND)

static long long param(const char *name)
{
	long long v = -1;

	assert_int_equal(rwt_param_get(name, &v), 0);
	return v;
}

static long long module_refcnt(void)
{
	long long v = -1;
	FILE *f = fopen("/sys/module/regwatch/refcnt", "r");

	if (f) {
		if (fscanf(f, "%lld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* -------------------------------------------------------------------- */

static void test_ioctls_before_config(void **state)
{
	struct regwatch_watch w = { .addr = 0x10000, .len = RWT_PAGE };
	struct regwatch_unwatch u = { .watch_id = 1 };
	struct regwatch_batch b = { .entries = (uintptr_t)&w, .count = 1 };
	struct regwatch_eventfd e = { .fd = -1 };
	struct regwatch_signal sg = { .signo = SIGUSR1 };
	struct regwatch_stats st = { .size = sizeof(st) };
	struct regwatch_event ev;
	int fd = rwt_open_fd(0);
	void *p;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(rwt_ioctl(fd, REGWATCH_IOC_WATCH, &w), -EBADFD);
	assert_int_equal(rwt_ioctl(fd, REGWATCH_IOC_UNWATCH, &u), -EBADFD);
	assert_int_equal(rwt_ioctl(fd, REGWATCH_IOC_WATCHV, &b), -EBADFD);
	b.entries = (uintptr_t)&u;
	assert_int_equal(rwt_ioctl(fd, REGWATCH_IOC_UNWATCHV, &b), -EBADFD);
	assert_int_equal(rwt_ioctl(fd, REGWATCH_IOC_SET_EVENTFD, &e),
			 -EBADFD);
	assert_int_equal(rwt_ioctl(fd, REGWATCH_IOC_SET_SIGNAL, &sg),
			 -EBADFD);
	/* uapi: STATS works before CONFIG, with the monitor's counters 0. */
	assert_int_equal(rwt_ioctl(fd, REGWATCH_IOC_STATS, &st), 0);
	assert_int_equal(st.watches, 0);
	assert_int_equal(st.events, 0);
	assert_true(st.module_monitors >= 1);

	errno = 0;
	assert_int_equal(read(fd, &ev, sizeof(ev)), -1);
	assert_int_equal(errno, EBADFD);
	p = mmap(NULL, RWT_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p == MAP_FAILED);
	assert_int_equal(errno, EBADFD);

	/* None of that used up the handshake. */
	struct regwatch_config cfg;
	assert_int_equal(rwt_config(fd, 0, 0, &cfg), 0);
	close(fd);
}

static void test_config_handshake(void **state)
{
	struct regwatch_config cfg, again;
	struct rwt_raw r = { .fd = -1 };
	const struct regwatch_shared_header *h;
	uint64_t ring_end, states_end;
	int i;

	(void)state;
	assert_int_equal(rwt_raw_open(&r, 0, 0, 0), 0);
	cfg = r.cfg;
	assert_int_equal(cfg.size, sizeof(cfg));
	assert_int_equal(cfg.abi_version, REGWATCH_ABI_VERSION);
	assert_int_equal(cfg.features & ALL_FEATURES, ALL_FEATURES);
	assert_int_equal(cfg.ring_entries, param("default_ring_entries"));
	assert_int_equal(cfg.max_watches, param("default_max_watches"));
	assert_int_equal(cfg.flags, 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(cfg.reserved[i], 0);

	/* Two page-aligned, non-overlapping areas. */
	assert_int_equal(cfg.shared_offset % RWT_PAGE, 0);
	assert_int_equal(cfg.consumer_offset % RWT_PAGE, 0);
	assert_int_equal(cfg.shared_size % RWT_PAGE, 0);
	assert_int_equal(cfg.consumer_size % RWT_PAGE, 0);
	assert_true(cfg.consumer_size >= sizeof(struct regwatch_consumer));
	assert_true(cfg.shared_offset + cfg.shared_size <=
			    cfg.consumer_offset ||
		    cfg.consumer_offset + cfg.consumer_size <=
			    cfg.shared_offset);

	/* The header describes a ring and a state array that fit. */
	h = r.hdr;
	assert_int_equal(h->abi_version, REGWATCH_ABI_VERSION);
	assert_int_equal(h->header_size, sizeof(*h));
	assert_int_equal(h->ring_entries, cfg.ring_entries);
	assert_int_equal(h->event_size, sizeof(struct regwatch_event));
	assert_int_equal(h->max_watches, cfg.max_watches);
	assert_true(h->ring_offset >= h->header_size);
	assert_int_equal(h->ring_offset % 8, 0);
	assert_int_equal(h->states_offset % 8, 0);
	/* ring and state words inside the area, not overlapping */
	ring_end = h->ring_offset + (uint64_t)h->ring_entries * h->event_size;
	states_end = h->states_offset + (uint64_t)h->max_watches * 8;
	assert_true(ring_end <= cfg.shared_size);
	assert_true(states_end <= cfg.shared_size);
	assert_true(h->states_offset >= ring_end ||
		    h->ring_offset >= states_end);
	assert_int_equal(h->producer, 0);
	assert_int_equal(h->generation, 0);
	assert_int_equal(h->overflows, 0);
	assert_int_equal(r.cons->head, 0);
	for (i = 0; i < (int)cfg.max_watches && i < 1024; i++)
		assert_int_equal(r.states[i] & REGWATCH_STATE_MASK,
				 REGWATCH_STATE_FREE);

	/* Once only. */
	assert_int_equal(rwt_config(r.fd, 0, 0, &again), -EBUSY);
	/* ...and the first configuration still stands. */
	struct regwatch_watch w;
	void *mem = rwt_map_anon(RWT_PAGE);
	assert_int_equal(rwt_raw_watch(&r, mem, RWT_PAGE, 1, 0, &w), 0);
	assert_int_equal(rwt_raw_state(&r, w.watch_id), w.armed_state);
	munmap(mem, RWT_PAGE);
	assert_int_not_equal(rwt_raw_state(&r, w.watch_id), w.armed_state);
	rwt_raw_close(&r);
}

static void test_config_sizes(void **state)
{
	struct regwatch_config cfg;
	long long max_ring = param("max_ring_entries");
	long long max_w = param("max_watches_limit");
	int fd;

	(void)state;
	/* Ring sizes round up to a power of two; watches are exact. */
	fd = rwt_open_fd(0);
	assert_true(fd >= 0);
	assert_int_equal(rwt_config(fd, 1000, 100, &cfg), 0);
	assert_int_equal(cfg.ring_entries, 1024);
	assert_int_equal(cfg.max_watches, 100);
	close(fd);

	fd = rwt_open_fd(0);
	assert_int_equal(rwt_config(fd, 2048, 1, &cfg), 0);
	assert_int_equal(cfg.ring_entries, 2048);
	assert_int_equal(cfg.max_watches, 1);
	close(fd);

	/* Above the caps: refused, and the fd can still be configured. */
	fd = rwt_open_fd(0);
	assert_int_equal(rwt_config(fd, (unsigned int)max_ring + 1, 0, &cfg),
			 -EINVAL);
	assert_int_equal(rwt_config(fd, 0, (unsigned int)max_w + 1, &cfg),
			 -EINVAL);
	assert_int_equal(rwt_config(fd, (unsigned int)max_ring,
				    (unsigned int)max_w, &cfg), 0);
	assert_int_equal(cfg.ring_entries, max_ring);
	assert_int_equal(cfg.max_watches, max_w);
	close(fd);
}

/* A pipe probe: read() into addr fails with EFAULT iff addr is not
 * writable by the kernel on our behalf (no SIGSEGV involved). */
static int write_probe(void *addr)
{
	int p[2], ret;
	char c = 'x';

	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], &c, 1), 1);
	ret = read(p[0], addr, 1) == 1 ? 0 : -errno;
	close(p[0]);
	close(p[1]);
	return ret;
}

static void test_mmap_rules(void **state)
{
	struct rwt_raw r = { .fd = -1 };
	struct regwatch_config *c = &r.cfg;
	void *p;

	(void)state;
	assert_int_equal(rwt_raw_open(&r, 0, 0, 0), 0);

	/* The shared area is never writable: not at mmap... */
	p = mmap(NULL, c->shared_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 r.fd, (off_t)c->shared_offset);
	assert_true(p == MAP_FAILED);
	assert_true(errno == EPERM || errno == EACCES);
	/* ...nor by mprotect later (VM_MAYWRITE cleared)... */
	assert_int_equal(mprotect(r.shared, c->shared_size,
				  PROT_READ | PROT_WRITE), -1);
	assert_int_equal(errno, EACCES);
	/* ...and the kernel cannot be tricked into writing it for us. */
	assert_int_equal(write_probe(r.shared), -EFAULT);

	/* The consumer page is writable and is what the kernel reads. */
	assert_int_equal(write_probe(r.cons), 0);
	__atomic_store_n(&r.cons->head, 0, __ATOMIC_RELEASE);

	/* Offsets and lengths other than the two areas are refused. */
	p = mmap(NULL, RWT_PAGE, PROT_READ, MAP_SHARED, r.fd,
		 (off_t)(c->shared_offset + c->shared_size + 64 * RWT_PAGE));
	assert_true(p == MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	p = mmap(NULL, RWT_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd,
		 (off_t)(c->consumer_offset + RWT_PAGE));
	assert_true(p == MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	p = mmap(NULL, c->shared_size + RWT_PAGE, PROT_READ, MAP_SHARED,
		 r.fd, (off_t)c->shared_offset);
	assert_true(p == MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	p = mmap(NULL, c->consumer_size + RWT_PAGE, PROT_READ | PROT_WRITE,
		 MAP_SHARED, r.fd, (off_t)c->consumer_offset);
	assert_true(p == MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	if (c->shared_size > RWT_PAGE) {
		/* A partial view of the area would hide the state words. */
		p = mmap(NULL, c->shared_size - RWT_PAGE, PROT_READ,
			 MAP_SHARED, r.fd, (off_t)c->shared_offset);
		assert_true(p == MAP_FAILED);
		assert_int_equal(errno, EINVAL);
	}

	/* The fd never changes its size or position. */
	assert_int_equal(lseek(r.fd, 0, SEEK_SET), -1);
	assert_int_equal(errno, ESPIPE);
	rwt_raw_close(&r);
}

static void test_close_tears_down(void **state)
{
	struct rwt_modstats before, during, after;
	struct regwatch_stats st;
	struct regwatch *rw = NULL;
	struct regwatch_ref ref[10];
	struct rwt_raw r = { .fd = -1 };
	struct regwatch_watch w;
	char *mem = rwt_map_anon(10 * RWT_PAGE);
	int i;

	(void)state;
	assert_non_null(mem);
	assert_int_equal(rwt_modstats(&before), 0);

	/* Through the library: regwatch_close() is close + munmap. */
	assert_int_equal(regwatch_open(NULL, &rw), 0);
	for (i = 0; i < 10; i++)
		assert_int_equal(regwatch_watch(rw, mem + i * RWT_PAGE,
						RWT_PAGE, i, 0, &ref[i]), 0);
	assert_int_equal(rwt_modstats(&during), 0);
	assert_int_equal(during.monitors, before.monitors + 1);
	assert_int_equal(during.watches, before.watches + 10);
	assert_true(during.pages > before.pages);
	/* STATS' module-wide fields are the same counters. */
	assert_int_equal(regwatch_stats(rw, &st), 0);
	assert_int_equal(st.watches, 10);
	assert_int_equal(st.module_monitors, during.monitors);
	assert_int_equal(st.module_watches, during.watches);
	assert_int_equal(st.module_pages, during.pages);
	regwatch_close(rw);
	assert_int_equal(rwt_modstats(&after), 0);
	assert_int_equal(after.monitors, before.monitors);
	assert_int_equal(after.watches, before.watches);
	assert_int_equal(after.pages, before.pages);

	/* Raw: the mappings keep the monitor alive after close(fd)... */
	assert_int_equal(rwt_raw_open(&r, 0, 0, 0), 0);
	assert_int_equal(rwt_raw_watch(&r, mem, RWT_PAGE, 1, 0, &w), 0);
	close(r.fd);
	r.fd = -1;
	assert_int_equal(rwt_modstats(&during), 0);
	assert_int_equal(during.monitors, before.monitors + 1);
	assert_int_equal(during.watches, before.watches + 1);
	/* ...and it still works: the watch fires into the mapped word. */
	assert_int_equal(rwt_raw_state(&r, w.watch_id), w.armed_state);
	assert_int_equal(madvise(mem, RWT_PAGE, MADV_DONTNEED), 0);
	assert_int_not_equal(rwt_raw_state(&r, w.watch_id), w.armed_state);
	assert_int_equal(rwt_raw_pending(&r), 1);
	/* The last munmap is the last reference. */
	rwt_raw_close(&r);
	assert_int_equal(rwt_modstats(&after), 0);
	assert_int_equal(after.monitors, before.monitors);
	assert_int_equal(after.watches, before.watches);
	assert_int_equal(after.pages, before.pages);

	/* An fd that was never configured costs nothing either. */
	int fd = rwt_open_fd(0);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(rwt_modstats(&after), 0);
	assert_int_equal(after.monitors, before.monitors);
	assert_int_equal(after.pages, before.pages);
	munmap(mem, 10 * RWT_PAGE);
}

/* Child: open a monitor, watch, say so, then die as told. */
static void exit_child(int ready_fd, int how)
{
	struct regwatch *rw;
	struct regwatch_ref ref;
	char *mem = rwt_map_anon(64 * RWT_PAGE);
	int i;

	if (!mem || regwatch_open(NULL, &rw))
		_exit(2);
	for (i = 0; i < 8; i++)
		if (regwatch_watch(rw, mem + i * 8 * RWT_PAGE, 8 * RWT_PAGE,
				   i, i & 1 ? REGWATCH_WATCH_STREAMING : 0,
				   &ref))
			_exit(3);
	if (write(ready_fd, "r", 1) != 1)
		_exit(4);
	if (how == 0)
		_exit(0);		/* exit without closing */
	pause();			/* wait for SIGKILL */
	_exit(5);
}

static void test_exit_tears_down(void **state)
{
	struct rwt_modstats before, during, after;
	int how;

	(void)state;
	assert_int_equal(rwt_modstats(&before), 0);
	for (how = 0; how < 2; how++) {
		int p[2], status;
		char c;
		pid_t pid;

		assert_int_equal(pipe(p), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(p[0]);
			exit_child(p[1], how);
		}
		close(p[1]);
		assert_int_equal(read(p[0], &c, 1), 1);
		close(p[0]);
		if (how == 1) {
			assert_int_equal(rwt_modstats(&during), 0);
			assert_int_equal(during.monitors, before.monitors + 1);
			assert_int_equal(during.watches, before.watches + 8);
			kill(pid, SIGKILL);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (how == 0)
			assert_true(WIFEXITED(status) &&
				    WEXITSTATUS(status) == 0);
		else
			assert_true(WIFSIGNALED(status));
		assert_int_equal(rwt_modstats(&after), 0);
		assert_int_equal(after.monitors, before.monitors);
		assert_int_equal(after.watches, before.watches);
		assert_int_equal(after.pages, before.pages);
	}
}

static void test_unknown_ioctl(void **state)
{
	const unsigned long bad[] = {
		_IO(REGWATCH_IOC_MAGIC, 0x7f),
		_IOWR(REGWATCH_IOC_MAGIC, 0x07, struct regwatch_stats),
		/* a known number with the wrong size or direction */
		_IOWR(REGWATCH_IOC_MAGIC, 0x01, uint64_t),
		_IOR(REGWATCH_IOC_MAGIC, 0x01, struct regwatch_watch),
		_IOW(REGWATCH_IOC_MAGIC, 0x05, uint32_t),
		/* other drivers' numbers */
		_IOWR('x', 0x01, struct regwatch_watch),
		TCGETS,
	};
	char buf[4096] = { 0 };
	struct rwt_raw r = { .fd = -1 };
	struct regwatch_stats st;
	size_t i;
	int fd;

	(void)state;
	fd = rwt_open_fd(0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(rwt_ioctl(fd, bad[i], buf), -ENOTTY);
	close(fd);

	assert_int_equal(rwt_raw_open(&r, 0, 0, 0), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(buf, 0, sizeof(buf));
		assert_int_equal(rwt_ioctl(r.fd, bad[i], buf), -ENOTTY);
	}
	assert_int_equal(rwt_stats_fd(r.fd, &st), 0);
	assert_int_equal(st.watches, 0);
	assert_int_equal(rwt_raw_pending(&r), 0);
	rwt_raw_close(&r);
}

struct unmap_later {
	void *addr;
	size_t len;
	unsigned int delay_us;
};

static void *unmap_later_fn(void *arg)
{
	struct unmap_later *u = arg;

	usleep(u->delay_us);
	munmap(u->addr, u->len);
	return NULL;
}

static void test_read_events(void **state)
{
	struct regwatch_event ev[4];
	struct regwatch_watch w1, w2;
	struct rwt_raw r = { .fd = -1 };
	char *mem = rwt_map_anon(4 * RWT_PAGE);
	pthread_t t;
	ssize_t n;

	(void)state;
	assert_int_equal(rwt_raw_open(&r, 0, 0, 0), 0);
	assert_int_equal(rwt_raw_watch(&r, mem + 100, 2 * RWT_PAGE, 0xc1, 0,
				       &w1), 0);
	assert_int_equal(rwt_raw_watch(&r, mem + 3 * RWT_PAGE, RWT_PAGE,
				       0xc2, REGWATCH_WATCH_STREAMING, &w2), 0);

	/* Nothing pending: non-blocking read says so. */
	assert_int_equal(fcntl(r.fd, F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(read(r.fd, ev, sizeof(ev)), -1);
	assert_int_equal(errno, EAGAIN);

	/* Unmap pages 1..3: both watches fire. */
	assert_int_equal(munmap(mem + RWT_PAGE, 3 * RWT_PAGE), 0);
	assert_int_equal(rwt_raw_pending(&r), 2);

	/* Too small for one event. */
	assert_int_equal(read(r.fd, ev, sizeof(ev[0]) - 1), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(rwt_raw_pending(&r), 2);

	/* Whole events only: 1.5 events of room gives one. */
	n = read(r.fd, &ev[0], sizeof(ev[0]) * 3 / 2);
	assert_int_equal(n, sizeof(ev[0]));
	assert_int_equal(rwt_raw_pending(&r), 1);
	/* read() moves the shared consumer index too. */
	assert_int_equal(r.cons->head, 1);
	n = read(r.fd, &ev[1], 3 * sizeof(ev[0]));
	assert_int_equal(n, sizeof(ev[0]));
	assert_int_equal(rwt_raw_pending(&r), 0);
	assert_int_equal(r.cons->head, 2);

	/* Either order; match them up by id. */
	if (ev[0].watch_id != w1.watch_id) {
		ev[2] = ev[0];
		ev[0] = ev[1];
		ev[1] = ev[2];
	}
	assert_int_equal(ev[0].type, REGWATCH_EVENT_INVALIDATE);
	assert_int_equal(ev[0].class, REGWATCH_CLASS_UNMAP);
	assert_int_equal(ev[0].flags, REGWATCH_EVENT_ONESHOT);
	assert_int_equal(ev[0].watch_id, w1.watch_id);
	assert_int_equal(ev[0].cookie, 0xc1);
	/* watched [mem, mem + 3 pages) (rounded out), unmapped from page 1 */
	assert_int_equal(ev[0].start, (uintptr_t)mem + RWT_PAGE);
	assert_int_equal(ev[0].end, (uintptr_t)mem + 3 * RWT_PAGE);

	assert_int_equal(ev[1].type, REGWATCH_EVENT_INVALIDATE);
	assert_int_equal(ev[1].class, REGWATCH_CLASS_UNMAP);
	assert_int_equal(ev[1].watch_id, w2.watch_id);
	assert_int_equal(ev[1].flags, 0);
	assert_int_equal(ev[1].cookie, 0xc2);
	assert_int_equal(ev[1].start, (uintptr_t)mem + 3 * RWT_PAGE);
	assert_int_equal(ev[1].end, (uintptr_t)mem + 4 * RWT_PAGE);

	/* A blocking read sleeps until another thread unmaps. */
	struct unmap_later u = { mem, RWT_PAGE, 200000 };
	struct regwatch_watch w3;
	assert_int_equal(rwt_raw_watch(&r, mem, RWT_PAGE, 0xc3, 0, &w3), 0);
	assert_int_equal(fcntl(r.fd, F_SETFL, 0), 0);
	assert_int_equal(pthread_create(&t, NULL, unmap_later_fn, &u), 0);
	n = read(r.fd, ev, sizeof(ev));
	pthread_join(t, NULL);
	assert_int_equal(n, sizeof(ev[0]));
	assert_int_equal(ev[0].watch_id, w3.watch_id);
	assert_int_equal(ev[0].cookie, 0xc3);
	rwt_raw_close(&r);
}

static bool reload_mode;

static long delete_module(const char *name, unsigned int flags)
{
	return syscall(SYS_delete_module, name, flags);
}

static void test_unload_refused_while_open(void **state)
{
	struct rwt_raw r = { .fd = -1 };
	long long ref0 = module_refcnt();

	(void)state;
	assert_int_equal(rwt_raw_open(&r, 0, 0, 0), 0);
	assert_true(module_refcnt() > ref0);

	/* Linux answers a busy module with EWOULDBLOCK (try_stop_module),
	 * with or without O_NONBLOCK. */
	assert_int_equal(delete_module("regwatch", O_NONBLOCK), -1);
	assert_int_equal(errno, EWOULDBLOCK);
	assert_int_equal(delete_module("regwatch", 0), -1);
	assert_int_equal(errno, EWOULDBLOCK);

	/* The mappings alone still hold it. */
	close(r.fd);
	r.fd = -1;
	assert_int_equal(delete_module("regwatch", O_NONBLOCK), -1);
	assert_int_equal(errno, EWOULDBLOCK);
	assert_int_equal(access("/dev/regwatch", F_OK), 0);
	rwt_raw_close(&r);
	assert_int_equal(module_refcnt(), ref0);
	assert_int_equal(access("/sys/module/regwatch", F_OK), 0);
}

/* kernel/regwatch.ko, found from our own path build/tests/guest/x. */
static void module_path(char *buf, size_t len)
{
	const char *env = getenv("REGWATCH_KO");
	char exe[2048];
	ssize_t n;
	int i;
	char *s;

	if (env) {
		snprintf(buf, len, "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = 0;
	for (i = 0; i < 4; i++) {	/* strip test, guest, tests, build */
		s = strrchr(exe, '/');
		assert_non_null(s);
		*s = 0;
	}
	snprintf(buf, len, "%s/%s", exe, RWT_MODULE_PATH);
}

static void test_unload_reload(void **state)
{
	static const char *const names[] = {
		"default_ring_entries", "max_ring_entries",
		"default_max_watches", "max_watches_limit",
		"max_user_watches", "test_ignore_classes",
		"test_skip_watch_sync", "test_no_signal",
	};
	long long vals[8], v;
	char ko[4096], cmd[8192], *p = cmd;
	struct rwt_modstats ms;
	struct regwatch *rw = NULL;
	size_t i;

	(void)state;
	if (!reload_mode) {
		fprintf(stderr, "run with --reload to unload and reload the "
			"module\n");
		skip();
	}
	module_path(ko, sizeof(ko));
	assert_int_equal(access(ko, R_OK), 0);
	for (i = 0; i < 8; i++)
		assert_int_equal(rwt_param_get(names[i], &vals[i]), 0);
	assert_int_equal(rwt_modstats(&ms), 0);
	assert_int_equal(ms.monitors, 0);
	assert_int_equal(ms.watches, 0);

	assert_int_equal(delete_module("regwatch", O_NONBLOCK), 0);
	assert_int_not_equal(access("/dev/regwatch", F_OK), 0);
	assert_int_equal(regwatch_open(NULL, &rw), -ENOENT);

	/* Back with exactly the parameters it had. */
	p += snprintf(p, sizeof(cmd), "insmod '%s'", ko);
	for (i = 0; i < 8; i++) {
		char val[32];

		if (i >= 6)	/* the bools */
			snprintf(val, sizeof(val), "%s", vals[i] ? "Y" : "N");
		else
			snprintf(val, sizeof(val), "%lld", vals[i]);
		p += snprintf(p, sizeof(cmd) - (size_t)(p - cmd), " %s=%s",
			      names[i], val);
	}
	assert_int_equal(system(cmd), 0);
	for (i = 0; i < 8; i++) {
		assert_int_equal(rwt_param_get(names[i], &v), 0);
		assert_int_equal(v, vals[i]);
	}
	/* udev may not run in the guest: wait briefly for the node. */
	for (i = 0; i < 50 && access("/dev/regwatch", F_OK); i++)
		usleep(100000);
	assert_int_equal(regwatch_open(NULL, &rw), 0);
	regwatch_close(rw);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ioctls_before_config),
		cmocka_unit_test(test_config_handshake),
		cmocka_unit_test(test_config_sizes),
		cmocka_unit_test(test_mmap_rules),
		cmocka_unit_test(test_close_tears_down),
		cmocka_unit_test(test_exit_tears_down),
		cmocka_unit_test(test_unknown_ioctl),
		cmocka_unit_test(test_read_events),
		cmocka_unit_test(test_unload_refused_while_open),
		cmocka_unit_test(test_unload_reload),
	};

	if (argc > 1 && !strcmp(argv[1], "--reload")) {
		reload_mode = true;
		cmocka_set_test_filter("test_unload_reload");
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
