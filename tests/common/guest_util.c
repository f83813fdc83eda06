// SPDX-License-Identifier: MIT
/* Helpers for the guest tests; see guest_util.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "guest_util.h"

size_t gu_page(void)
{
	static size_t page;

	if (!page)
		page = (size_t)sysconf(_SC_PAGESIZE);
	return page;
}

uintptr_t gu_page_down(uintptr_t addr)
{
	return addr & ~(uintptr_t)(gu_page() - 1);
}

uintptr_t gu_page_up(uintptr_t addr)
{
	return gu_page_down(addr + gu_page() - 1);
}

struct regwatch *gu_open(void)
{
	struct regwatch *rw = NULL;
	int ret = regwatch_open(NULL, &rw);

	if (ret)
		print_error("regwatch_open: %s%s\n", strerror(-ret),
			    ret == -ENOENT ? " (module not loaded?)" : "");
	assert_int_equal(ret, 0);
	assert_non_null(rw);
	return rw;
}

void gu_stats(struct regwatch *rw, struct regwatch_stats *st)
{
	memset(st, 0, sizeof(*st));
	assert_int_equal(regwatch_stats(rw, st), 0);
}

void gu_watch(struct regwatch *rw, const void *addr, size_t len,
	      unsigned int flags, struct gu_watch *w)
{
	static uint64_t next_cookie = 0xc0c0000000000001ULL;
	int ret;

	memset(w, 0, sizeof(*w));
	w->cookie = next_cookie++;
	w->flags = flags;
	w->start = gu_page_down((uintptr_t)addr);
	w->end = gu_page_up((uintptr_t)addr + len);
	ret = regwatch_watch(rw, addr, len, w->cookie, flags, &w->ref);
	if (ret)
		print_error("regwatch_watch(%p, %zu, flags %#x): %s\n",
			    addr, len, flags, strerror(-ret));
	assert_int_equal(ret, 0);
	/* Nothing has touched the range since: it must be valid now. */
	assert_true(regwatch_ref_valid(&w->ref));
	assert_int_equal(*w->ref.state & REGWATCH_STATE_MASK,
			 REGWATCH_STATE_ARMED);
}

void gu_fill(void *addr, size_t npages)
{
	for (size_t i = 0; i < npages; i++)
		memset((char *)addr + i * gu_page(), 0x11 + (int)(i % 200),
		       gu_page());
}

static void *map_populated(size_t npages, int flags, int fd)
{
	void *p = mmap(NULL, npages * gu_page(), PROT_READ | PROT_WRITE,
		       flags, fd, 0);

	assert_true(p != MAP_FAILED);
	/* Writing every page makes the invalidations real (pages present). */
	gu_fill(p, npages);
	return p;
}

void *gu_map_anon(size_t npages)
{
	return map_populated(npages, MAP_PRIVATE | MAP_ANONYMOUS, -1);
}

void *gu_map_shared_anon(size_t npages)
{
	return map_populated(npages, MAP_SHARED | MAP_ANONYMOUS, -1);
}

void *gu_map_memfd(size_t npages, int *fd)
{
	*fd = memfd_create("regwatch-test", MFD_CLOEXEC);
	assert_true(*fd >= 0);
	assert_int_equal(ftruncate(*fd, (off_t)(npages * gu_page())), 0);
	return map_populated(npages, MAP_SHARED, *fd);
}

void gu_unmap(void *addr, size_t npages)
{
	assert_int_equal(munmap(addr, npages * gu_page()), 0);
}

static int collect(const struct regwatch_event *ev, void *arg)
{
	struct gu_events *evs = arg;

	if (evs->n < GU_MAX_EVENTS)
		evs->ev[evs->n] = *ev;
	evs->n++;
	return 0;
}

void gu_drain(struct regwatch *rw, struct gu_events *evs)
{
	int ret;

	evs->n = 0;
	ret = regwatch_drain(rw, collect, evs);
	if (ret < 0)
		print_error("regwatch_drain: %s\n", strerror(-ret));
	assert_true(ret >= 0);
	assert_int_equal((size_t)ret, evs->n);
	assert_int_equal(regwatch_pending(rw), 0);
}

bool gu_wait_event(struct regwatch *rw, int timeout_ms)
{
	struct pollfd pfd = { .fd = regwatch_fd(rw), .events = POLLIN };
	int ret;

	do
		ret = poll(&pfd, 1, timeout_ms);
	while (ret < 0 && errno == EINTR);
	assert_true(ret >= 0);
	assert_false(pfd.revents & (POLLERR | POLLNVAL));
	return ret > 0 && (pfd.revents & POLLIN);
}

uint64_t gu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *class_name(uint32_t cls)
{
	const char *name = regwatch_class_name(cls);

	return name ? name : "?";
}

static void print_event(const struct regwatch_event *e, uintptr_t base)
{
	long pg = (long)gu_page();

	print_error("  type %u class %s(%#x) flags %#x id %#" PRIx64
		    " cookie %#" PRIx64 " [%#" PRIx64 ", %#" PRIx64 ")",
		    e->type, class_name(e->class), e->class, e->flags,
		    (uint64_t)e->watch_id, (uint64_t)e->cookie,
		    (uint64_t)e->start, (uint64_t)e->end);
	if (base)
		print_error(" = pages [%+ld, %+ld)",
			    (long)((intptr_t)e->start - (intptr_t)base) / pg,
			    (long)((intptr_t)e->end - (intptr_t)base) / pg);
	print_error("\n");
}

void gu_print_events(const struct gu_events *evs, uintptr_t base)
{
	size_t kept = evs->n < GU_MAX_EVENTS ? evs->n : GU_MAX_EVENTS;

	print_error("%zu event(s) drained%s:\n", evs->n,
		    kept < evs->n ? " (first ones shown)" : "");
	for (size_t i = 0; i < kept; i++)
		print_event(&evs->ev[i], base);
}

/* Fail at the caller's line after showing what was observed. */
static void fail_with(const struct gu_events *evs, uintptr_t base,
		      const char *file, int line)
{
	if (evs)
		gu_print_events(evs, base);
	_fail(file, line);
}

static size_t events_of(const struct gu_events *evs, uint64_t id,
			const struct regwatch_event **first)
{
	size_t kept = evs->n < GU_MAX_EVENTS ? evs->n : GU_MAX_EVENTS;
	size_t n = 0;

	*first = NULL;
	for (size_t i = 0; i < kept; i++) {
		if (evs->ev[i].watch_id != id)
			continue;
		if (!n++)
			*first = &evs->ev[i];
	}
	return n;
}

static uint32_t state_count(uint64_t word)
{
	return (uint32_t)(word >> REGWATCH_STATE_COUNT_SHIFT) & ((1U << 30) - 1);
}

/* Check one event's fields against what w and the caller expect. */
static bool event_matches(const struct regwatch_event *e,
			  const struct gu_watch *w, uint32_t cls,
			  uintptr_t start, uintptr_t end)
{
	uint32_t flags = ((w->flags & REGWATCH_WATCH_STREAMING) ?
			  0 : REGWATCH_EVENT_ONESHOT) | w->background;

	return e->type == REGWATCH_EVENT_INVALIDATE && e->class == cls &&
	       e->flags == flags && e->watch_id == w->ref.id &&
	       e->cookie == w->cookie && e->start == start && e->end == end;
}

void gu_assert_fired_(const struct gu_events *evs, const struct gu_watch *w,
		      uint32_t cls, uintptr_t start, uintptr_t end,
		      const char *file, int line)
{
	bool streaming = w->flags & REGWATCH_WATCH_STREAMING;
	uint64_t word = __atomic_load_n(w->ref.state, __ATOMIC_ACQUIRE);
	const struct regwatch_event *e;
	size_t n = events_of(evs, w->ref.id, &e);
	long pg = (long)gu_page();

	if (word == w->ref.armed_state ||
	    (word >> 32) != (w->ref.armed_state >> 32) ||
	    (word & REGWATCH_STATE_MASK) !=
	    (streaming ? REGWATCH_STATE_ARMED : REGWATCH_STATE_FIRED)) {
		print_error("watch %#" PRIx64 " [%#lx, %#lx): state word %#"
			    PRIx64 ", armed %#" PRIx64
			    ": expected it to have fired\n",
			    (uint64_t)w->ref.id, (unsigned long)w->start,
			    (unsigned long)w->end, word, w->ref.armed_state);
		fail_with(evs, w->start, file, line);
	}
	if (n != 1 || !event_matches(e, w, cls, start, end)) {
		print_error("watch %#" PRIx64 " cookie %#" PRIx64
			    " [%#lx, %#lx): expected one %s event over pages"
			    " [%+ld, %+ld) of it, got %zu event(s) for it\n",
			    (uint64_t)w->ref.id, w->cookie,
			    (unsigned long)w->start, (unsigned long)w->end,
			    class_name(cls),
			    (long)((intptr_t)start - (intptr_t)w->start) / pg,
			    (long)((intptr_t)end - (intptr_t)w->start) / pg,
			    n);
		fail_with(evs, w->start, file, line);
	}
}

void gu_assert_quiet_(const struct gu_events *evs, const struct gu_watch *w,
		      const char *file, int line)
{
	uint64_t word = __atomic_load_n(w->ref.state, __ATOMIC_ACQUIRE);
	const struct regwatch_event *e;
	size_t n = events_of(evs, w->ref.id, &e);

	if (word != w->ref.armed_state || n) {
		print_error("watch %#" PRIx64 " [%#lx, %#lx) fired but nothing"
			    " it covers was invalidated: state word %#" PRIx64
			    " (armed %#" PRIx64 "), %zu event(s) for it\n",
			    (uint64_t)w->ref.id, (unsigned long)w->start,
			    (unsigned long)w->end, word, w->ref.armed_state,
			    n);
		fail_with(evs, w->start, file, line);
	}
}

void gu_assert_nevents_(const struct gu_events *evs, size_t want,
			const char *file, int line)
{
	if (evs->n != want) {
		print_error("expected %zu event(s) in all, got %zu\n", want,
			    evs->n);
		fail_with(evs, 0, file, line);
	}
}

void gu_assert_stream_(const struct gu_events *evs, const struct gu_watch *w,
		       uint32_t cls, const uintptr_t (*ranges)[2], size_t n,
		       const char *file, int line)
{
	uint64_t word = __atomic_load_n(w->ref.state, __ATOMIC_ACQUIRE);
	size_t kept = evs->n < GU_MAX_EVENTS ? evs->n : GU_MAX_EVENTS;
	size_t seen = 0;

	for (size_t i = 0; i < kept; i++) {
		const struct regwatch_event *e = &evs->ev[i];

		if (e->watch_id != w->ref.id)
			continue;
		if (seen >= n ||
		    !event_matches(e, w, cls, ranges[seen][0],
				   ranges[seen][1])) {
			print_error("streaming watch %#" PRIx64 ": event %zu"
				    " is not the expected one\n",
				    (uint64_t)w->ref.id, seen);
			fail_with(evs, w->start, file, line);
		}
		seen++;
	}
	if (seen != n) {
		print_error("streaming watch %#" PRIx64 ": %zu event(s),"
			    " expected %zu\n", (uint64_t)w->ref.id, seen, n);
		fail_with(evs, w->start, file, line);
	}
	/* Stays armed, same generation, count moved on by one per event. */
	if ((word & REGWATCH_STATE_MASK) != REGWATCH_STATE_ARMED ||
	    (word >> 32) != (w->ref.armed_state >> 32) ||
	    state_count(word) != state_count(w->ref.armed_state) + n) {
		print_error("streaming watch %#" PRIx64 ": state word %#"
			    PRIx64 ", armed %#" PRIx64 ", expected ARMED with"
			    " count +%zu\n", (uint64_t)w->ref.id, word,
			    w->ref.armed_state, n);
		fail_with(evs, w->start, file, line);
	}
}

int gu_read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	close(fd);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

int gu_write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(val);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, val, len);
	if (n < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	close(fd);
	return (size_t)n == len ? 0 : -EIO;
}

long gu_read_long(const char *path)
{
	char buf[64], *end;
	long v;
	int ret = gu_read_file(path, buf, sizeof(buf));

	if (ret)
		print_error("read %s: %s\n", path, strerror(-ret));
	assert_int_equal(ret, 0);
	v = strtol(buf, &end, 0);
	assert_true(end != buf);
	return v;
}

static void param_path(const char *name, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", GU_PARAM_DIR, name);
}

int gu_param_read(const char *name, char *buf, size_t len)
{
	char path[256];

	param_path(name, path, sizeof(path));
	return gu_read_file(path, buf, len);
}

int gu_param_write(const char *name, const char *val)
{
	char path[256];

	param_path(name, path, sizeof(path));
	return gu_write_file(path, val);
}

int gu_sysctl_write(const char *name, const char *val)
{
	char path[256];
	int n = snprintf(path, sizeof(path), "/proc/sys/%s", name);

	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	for (char *c = path + strlen("/proc/sys/"); *c; c++)
		if (*c == '.')
			*c = '/';
	return gu_write_file(path, val);
}
