// SPDX-License-Identifier: MIT
/* Helpers for the regwatch guest tests; see rwt_util.h. */
#include "rwt_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#define PARAM_DIR "/sys/module/regwatch/parameters/"
#define DEBUGFS_STATS "/sys/kernel/debug/regwatch/stats"

long rwt_ioctl(int fd, unsigned long cmd, void *arg)
{
	long ret = ioctl(fd, cmd, arg);

	return ret < 0 ? -errno : ret;
}

int rwt_open_fd(int oflags)
{
	int fd = open(REGWATCH_DEVICE, O_RDWR | oflags);

	return fd < 0 ? -errno : fd;
}

int rwt_config(int fd, unsigned int ring, unsigned int max_watches,
	       struct regwatch_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->abi_version = REGWATCH_ABI_VERSION;
	cfg->ring_entries = ring;
	cfg->max_watches = max_watches;
	return (int)rwt_ioctl(fd, REGWATCH_IOC_CONFIG, cfg);
}

int rwt_raw_map(struct rwt_raw *r)
{
	void *p;

	p = mmap(NULL, r->cfg.shared_size, PROT_READ, MAP_SHARED, r->fd,
		 (off_t)r->cfg.shared_offset);
	if (p == MAP_FAILED)
		return -errno;
	r->shared = p;
	p = mmap(NULL, r->cfg.consumer_size, PROT_READ | PROT_WRITE,
		 MAP_SHARED, r->fd, (off_t)r->cfg.consumer_offset);
	if (p == MAP_FAILED) {
		int err = -errno;

		munmap(r->shared, r->cfg.shared_size);
		r->shared = NULL;
		return err;
	}
	r->cons = p;
	r->hdr = r->shared;
	r->ring = (const void *)((char *)r->shared + r->hdr->ring_offset);
	r->states = (const void *)((char *)r->shared + r->hdr->states_offset);
	return 0;
}

int rwt_raw_open(struct rwt_raw *r, unsigned int ring,
		 unsigned int max_watches, int oflags)
{
	int ret;

	memset(r, 0, sizeof(*r));
	r->fd = rwt_open_fd(oflags);
	if (r->fd < 0)
		return r->fd;
	ret = rwt_config(r->fd, ring, max_watches, &r->cfg);
	if (!ret)
		ret = rwt_raw_map(r);
	if (ret) {
		close(r->fd);
		r->fd = -1;
	}
	return ret;
}

void rwt_raw_close(struct rwt_raw *r)
{
	if (r->shared)
		munmap(r->shared, r->cfg.shared_size);
	if (r->cons)
		munmap(r->cons, r->cfg.consumer_size);
	if (r->fd >= 0)
		close(r->fd);
	r->shared = NULL;
	r->cons = NULL;
	r->hdr = NULL;
	r->fd = -1;
}

int rwt_raw_watch(struct rwt_raw *r, const void *addr, size_t len,
		  uint64_t cookie, unsigned int flags,
		  struct regwatch_watch *out)
{
	memset(out, 0, sizeof(*out));
	out->addr = (uintptr_t)addr;
	out->len = len;
	out->cookie = cookie;
	out->flags = flags;
	return (int)rwt_ioctl(r->fd, REGWATCH_IOC_WATCH, out);
}

int rwt_raw_unwatch(struct rwt_raw *r, uint64_t id)
{
	struct regwatch_unwatch u = { .watch_id = id };

	return (int)rwt_ioctl(r->fd, REGWATCH_IOC_UNWATCH, &u);
}

uint64_t rwt_raw_state(const struct rwt_raw *r, uint64_t id)
{
	return __atomic_load_n(&r->states[REGWATCH_ID_SLOT(id)],
			       __ATOMIC_ACQUIRE);
}

uint64_t rwt_raw_pending(const struct rwt_raw *r)
{
	return __atomic_load_n(&r->hdr->producer, __ATOMIC_ACQUIRE) -
	       __atomic_load_n(&r->cons->head, __ATOMIC_RELAXED);
}

size_t rwt_raw_drain(struct rwt_raw *r, struct regwatch_event *out,
		     size_t max)
{
	uint64_t prod = __atomic_load_n(&r->hdr->producer, __ATOMIC_ACQUIRE);
	uint64_t head = r->cons->head;
	uint64_t mask = r->hdr->ring_entries - 1;
	size_t n = 0;

	while (head != prod && n < max) {
		if (out)
			out[n] = r->ring[head & mask];
		head++;
		n++;
	}
	__atomic_store_n(&r->cons->head, head, __ATOMIC_RELEASE);
	return n;
}

int rwt_stats_fd(int fd, struct regwatch_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	return (int)rwt_ioctl(fd, REGWATCH_IOC_STATS, st);
}

int rwt_param_get(const char *name, long long *val)
{
	char path[256], buf[64];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!ok)
		return -EIO;
	/* bool parameters read back as Y/N */
	if (buf[0] == 'Y' || buf[0] == 'N')
		*val = buf[0] == 'Y';
	else
		*val = strtoll(buf, NULL, 0);
	return 0;
}

int rwt_param_set(const char *name, const char *val)
{
	char path[256];
	int fd, ret = 0;

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

int rwt_modstats(struct rwt_modstats *ms)
{
	char key[32];
	long long v;
	FILE *f;
	int seen = 0;

	if (access(DEBUGFS_STATS, R_OK) != 0)
		mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	f = fopen(DEBUGFS_STATS, "r");
	if (!f)
		return -errno;
	while (fscanf(f, "%31s %lld", key, &v) == 2) {
		if (!strcmp(key, "monitors"))
			ms->monitors = v, seen |= 1;
		else if (!strcmp(key, "watches"))
			ms->watches = v, seen |= 2;
		else if (!strcmp(key, "pages"))
			ms->pages = v, seen |= 4;
	}
	fclose(f);
	return seen == 7 ? 0 : -EPROTO;
}

void rwt_fill(void *addr, size_t len, uint8_t byte)
{
	memset(addr, byte, len);
}

void *rwt_map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	rwt_fill(p, len, 0x5a);
	return p;
}

void *rwt_map_anon_at(void *addr, size_t len)
{
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	rwt_fill(p, len, 0x5a);
	return p;
}

void rwt_pagemap_read(const void *addr, size_t n, uint64_t *out)
{
	static int pm_fd = -1;	/* opened once: tests read it in loops */
	int fd = __atomic_load_n(&pm_fd, __ATOMIC_ACQUIRE), exp = -1;
	size_t want = n * sizeof(*out);

	if (fd < 0) {
		fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && !__atomic_compare_exchange_n(&pm_fd, &exp, fd,
				false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			close(fd);	/* another thread won */
			fd = exp;
		}
	}
	if (fd < 0 || pread(fd, out, want, (off_t)((uintptr_t)addr /
						   RWT_PAGE * sizeof(*out))) !=
		      (ssize_t)want)
		memset(out, 0xff, want);
}

uint64_t rwt_pagemap(const void *addr)
{
	uint64_t e;

	rwt_pagemap_read(addr, 1, &e);
	return e;
}

void *rwt_map_alone(size_t len)
{
	char *g = mmap(NULL, len + 2 * RWT_PAGE, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (g == MAP_FAILED)
		return NULL;
	if (mprotect(g + RWT_PAGE, len, PROT_READ | PROT_WRITE)) {
		munmap(g, len + 2 * RWT_PAGE);
		return NULL;
	}
	rwt_fill(g + RWT_PAGE, len, 0x5a);
	return g + RWT_PAGE;
}

void rwt_unmap_alone(void *addr, size_t len)
{
	munmap((char *)addr - RWT_PAGE, len + 2 * RWT_PAGE);
}

bool rwt_mapped(const void *addr, size_t len)
{
	unsigned char vec[64];
	uintptr_t a = (uintptr_t)addr & ~(RWT_PAGE - 1);

	if (len > sizeof(vec) * RWT_PAGE)
		len = sizeof(vec) * RWT_PAGE;
	/* ENOMEM: some page of the range is not mapped at all. */
	return mincore((void *)a, len, vec) == 0;
}

bool rwt_in_maps(const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	unsigned long lo, hi;
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && a >= lo &&
		    a < hi)
			found = true;
	fclose(f);
	return found;
}

uint64_t rwt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

unsigned int rwt_seed(void)
{
	const char *s = getenv("REGWATCH_SEED");

	if (s && *s)
		return (unsigned int)strtoul(s, NULL, 0);
	return (unsigned int)(rwt_now_ns() ^ (uint64_t)getpid() << 16);
}

uint64_t rwt_rand(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ULL;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static int collect_cb(const struct regwatch_event *ev, void *arg)
{
	struct rwt_events *evs = arg;

	if (evs->n == evs->cap) {
		size_t cap = evs->cap ? evs->cap * 2 : 256;
		void *p = realloc(evs->ev, cap * sizeof(*evs->ev));

		if (!p)
			return -ENOMEM;	/* stop; the event stays queued */
		evs->ev = p;
		evs->cap = cap;
	}
	evs->ev[evs->n++] = *ev;
	return 0;
}

int rwt_collect(struct regwatch *rw, struct rwt_events *evs)
{
	return regwatch_drain(rw, collect_cb, evs);
}

void rwt_events_free(struct rwt_events *evs)
{
	free(evs->ev);
	evs->ev = NULL;
	evs->n = evs->cap = 0;
}
