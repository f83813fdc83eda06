/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the guest tests (tests/guest/test_*.c). They run
 * inside the QEMU guest, as root, with regwatch.ko loaded.
 *
 * Functions named gu_* that can fail assert through cmocka, so a test
 * stays a straight line of steps. The gu_assert_* macros report the
 * caller's file and line, and print every event drained when they fail,
 * so a failure says what the module actually reported.
 */
#ifndef GUEST_UTIL_H
#define GUEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include "regwatch.h"

#define GU_PARAM_DIR	"/sys/module/regwatch/parameters"
#define GU_MAX_EVENTS	256

/* One watch and what the test asked for, for checks and messages. */
struct gu_watch {
	struct regwatch_ref ref;
	uint64_t cookie;	/* unique per watch in the process */
	unsigned int flags;	/* REGWATCH_WATCH_* */
	uintptr_t start, end;	/* the page-rounded range */
	/* REGWATCH_EVENT_BACKGROUND when the kernel, not the test's own
	 * calls, is to fire it (reclaim, ksmd): checked by gu_assert_*. */
	unsigned int background;
};

/* Events drained from a monitor. n counts all of them; the first
 * GU_MAX_EVENTS are kept. */
struct gu_events {
	size_t n;
	struct regwatch_event ev[GU_MAX_EVENTS];
};

size_t gu_page(void);
uintptr_t gu_page_down(uintptr_t addr);
uintptr_t gu_page_up(uintptr_t addr);

/* Open a monitor with the module's defaults; fails the test if it cannot. */
struct regwatch *gu_open(void);
void gu_stats(struct regwatch *rw, struct regwatch_stats *st);

/*
 * Watch [addr, addr + len) with a fresh cookie; asserts success and that
 * the new watch is valid.
 */
void gu_watch(struct regwatch *rw, const void *addr, size_t len,
	      unsigned int flags, struct gu_watch *w);

/* Memory, populated: every page is written (a per-page pattern). */
void *gu_map_anon(size_t npages);		/* MAP_PRIVATE anonymous */
void *gu_map_shared_anon(size_t npages);	/* MAP_SHARED anonymous */
void *gu_map_memfd(size_t npages, int *fd);	/* MAP_SHARED of a memfd */
void gu_fill(void *addr, size_t npages);
void gu_unmap(void *addr, size_t npages);

/* Consume every queued event of rw into evs (evs->n = how many). */
void gu_drain(struct regwatch *rw, struct gu_events *evs);

/* Poll regwatch_fd(rw) for POLLIN up to timeout_ms; true if readable. */
bool gu_wait_event(struct regwatch *rw, int timeout_ms);

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t gu_now_ms(void);

/* Print events (ranges also as page offsets from base, if non-zero). */
void gu_print_events(const struct gu_events *evs, uintptr_t base);

/*
 * Files in sysfs / procfs. gu_read_file strips the trailing newline;
 * both return 0 or -errno. gu_read_long asserts.
 */
int gu_read_file(const char *path, char *buf, size_t len);
int gu_write_file(const char *path, const char *val);
long gu_read_long(const char *path);

/* Module parameters by name (GU_PARAM_DIR/name). */
int gu_param_read(const char *name, char *buf, size_t len);
int gu_param_write(const char *name, const char *val);

/* Sysctl by dotted or slashed name ("vm.swappiness"): /proc/sys/... */
int gu_sysctl_write(const char *name, const char *val);

/*
 * gu_assert_fired: w fired because of [start, end) with class cls:
 * its state word moved on (FIRED for a one-shot watch, ARMED with one
 * more count for a streaming one), and exactly one drained event carries
 * its id, with the right type, class, flags, cookie and range.
 */
#define gu_assert_fired(evs, w, cls, start, end)			\
	gu_assert_fired_((evs), (w), (cls), (uintptr_t)(start),		\
			 (uintptr_t)(end), __FILE__, __LINE__)

/* w did not fire: its state word is still armed and no event has its id. */
#define gu_assert_quiet(evs, w)						\
	gu_assert_quiet_((evs), (w), __FILE__, __LINE__)

/* Exactly n events were drained (no strays, no duplicates). */
#define gu_assert_nevents(evs, want)					\
	gu_assert_nevents_((evs), (want), __FILE__, __LINE__)

/*
 * A streaming watch got exactly n events of class cls, in this order,
 * with ranges[i] = { start, end }, and its state word is ARMED with a
 * count n higher than at creation.
 */
#define gu_assert_stream(evs, w, cls, ranges, n)			\
	gu_assert_stream_((evs), (w), (cls), (ranges), (n),		\
			  __FILE__, __LINE__)

void gu_assert_fired_(const struct gu_events *evs, const struct gu_watch *w,
		      uint32_t cls, uintptr_t start, uintptr_t end,
		      const char *file, int line);
void gu_assert_quiet_(const struct gu_events *evs, const struct gu_watch *w,
		      const char *file, int line);
void gu_assert_nevents_(const struct gu_events *evs, size_t want,
			const char *file, int line);
void gu_assert_stream_(const struct gu_events *evs, const struct gu_watch *w,
		       uint32_t cls, const uintptr_t (*ranges)[2], size_t n,
		       const char *file, int line);

#endif /* GUEST_UTIL_H */
