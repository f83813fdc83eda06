/* SPDX-License-Identifier: MIT */
/*
 * The registration cache's internal monitor interface. A monitor watches
 * address ranges and reports, per watch, that the memory behind it may
 * have changed. Three implementations ship (kernel: /dev/regwatch through
 * libregwatch's monitor API; uffd: userfaultfd; none: never fires); the
 * host tests inject a fake through regwatch_cache_create_with_monitor().
 *
 * Contract every monitor keeps (the cache's correctness rests on it):
 *  - watch() returns a watch that is armed now, and only after any
 *    invalidation of the range already in progress has finished;
 *  - a watch is valid exactly while *w->state == w->armed (one acquire
 *    load); the monitor writes the state word before the invalidation is
 *    reported anywhere else, and never re-arms a watch (one-shot);
 *  - every watch that fires is reported once by drain() with its id and
 *    cookie, unless the monitor reports REGWATCH_EVENT_RESYNC instead
 *    (then the cache re-checks every state word: nothing is lost);
 *  - ids are never 0 and a removed watch's id or armed value never
 *    matches a later watch (generation in the id and state word).
 *
 * Threads: watch/unwatch may be called from any thread at once; drain is
 * called by one thread at a time (the cache calls it under its lock).
 */
#ifndef REGWATCH_CACHE_MONITOR_H
#define REGWATCH_CACHE_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "regwatch.h"
#include "regwatch_cache.h"

struct cache_monitor;

struct cache_watch {
	const uint64_t *state;	/* valid while *state == armed */
	uint64_t armed;
	uint64_t id;		/* never 0 */
};

struct cache_monitor_ops {
	/*
	 * Watch [addr, addr + len) (the monitor may round out to pages);
	 * events carry cookie. Errors are negative errno; -ENOSPC and
	 * -ENOBUFS mean "release watches or drain events, then retry".
	 */
	int (*watch)(struct cache_monitor *m, uintptr_t addr, size_t len,
		     uint64_t cookie, struct cache_watch *w);
	/* Remove a watch (armed or fired). Its pending event, if any, may
	 * still be drained later (with the old id). */
	int (*unwatch)(struct cache_monitor *m, const struct cache_watch *w);
	/* Consume queued events (struct regwatch_event, type INVALIDATE or
	 * RESYNC), as regwatch_drain(). */
	int (*drain)(struct cache_monitor *m, regwatch_event_cb cb, void *arg);
	/* A pollable fd readable while events are pending, or -1. */
	int (*fd)(struct cache_monitor *m);
	/* Free everything. in_child: called in a forked child: release only
	 * this process's memory and fds, touch no thread or shared mapping. */
	void (*destroy)(struct cache_monitor *m, bool in_child);
};

struct cache_monitor {
	const struct cache_monitor_ops *ops;
	const char *name;		/* "kernel", "uffd", "none", ... */
	/*
	 * Optional: a word the monitor bumps (release) after every fired
	 * watch, so that the cache notices events with one load. NULL: the
	 * cache drains on its slow paths and on process_events only.
	 */
	const uint64_t *generation;
};

/* Constructors; each returns 0 or a negative errno. */
int cache_monitor_kernel_open(const struct regwatch_options *opts,
			      struct cache_monitor **out);
int cache_monitor_uffd_open(unsigned int flags, struct cache_monitor **out);
int cache_monitor_none_open(struct cache_monitor **out);

/* uffd flags (tests) */
#define CACHE_UFFD_NO_POPULATE	(1u << 0)	/* skip MADV_POPULATE_READ */
#define CACHE_UFFD_USER_ONLY	(1u << 1)	/* force UFFD_USER_MODE_ONLY */

/* True if the uffd monitor runs with UFFD_USER_MODE_ONLY. */
bool cache_monitor_uffd_user_mode_only(const struct cache_monitor *m);
/* Faults the uffd monitor resolved with a zero page. */
uint64_t cache_monitor_uffd_faults(const struct cache_monitor *m);

/*
 * Create a cache over a monitor the caller built (tests inject fakes this
 * way). The cache owns mon from then on, also on failure (it destroys it).
 * opts->monitor is ignored.
 */
int regwatch_cache_create_with_monitor(const struct regwatch_cache_options *opts,
				       const struct regwatch_cache_backend *backend,
				       struct cache_monitor *mon,
				       struct regwatch_cache **out);

#endif /* REGWATCH_CACHE_MONITOR_H */
