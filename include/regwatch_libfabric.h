/* SPDX-License-Identifier: MIT */
/*
 * regwatch as libfabric's memory monitor (libfabric >= 1.13 "import
 * monitor", rdma/fi_ext.h): libfabric's own MR cache (verbs, efa, ...)
 * then learns of unmapped, remapped or discarded memory from /dev/regwatch
 * instead of userfaultfd or memhooks.
 *
 *   subscribe(addr, len)   a one-shot regwatch watch on the range
 *   valid(addr, len)       one load of the watch's state word
 *   unsubscribe(addr, len) the watch is removed
 *   events                 a thread delivers them to import_ops->notify,
 *                          so idle cache entries are released early
 *
 * Call regwatch_fi_import() once, before the first fi_domain() (libfabric
 * refuses to replace a monitor that a cache already uses). Or, with no
 * code change, LD_PRELOAD=libregwatch_fi.so, which imports it from a
 * constructor. The monitor lives until the process exits.
 *
 * libfabric reads FI_MR_CACHE_MONITOR when it initialises (first
 * fi_getinfo()/fi_fabric()): imported before that, an explicit
 * FI_MR_CACHE_MONITOR setting takes over again; imported after it, the
 * import wins. regwatch_fi_import() warns when the variable is set.
 *
 * Functions return 0 or a negative errno (libfabric's FI_E* values are
 * errnos).
 */
#ifndef REGWATCH_LIBFABRIC_H
#define REGWATCH_LIBFABRIC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct regwatch_fi_options {
	unsigned int flags;		/* REGWATCH_FI_* */
	unsigned int ring_entries;	/* 0: 16384 */
	unsigned int max_watches;	/* 0: the module's default */
};

/*
 * TEST ONLY: a monitor that watches but never invalidates: valid() always
 * says true and events are dropped. It stands for "MR cache on, no
 * working monitor" so that tests can show they detect stale data.
 */
#define REGWATCH_FI_TEST_BLIND	(1U << 0)
/*
 * TEST ONLY: no delivery thread, no notify(): stale entries are caught by
 * valid() alone, at their next lookup (fired subscriptions are kept). It
 * shows that correctness does not hang on the thread winning a race.
 */
#define REGWATCH_FI_TEST_NO_NOTIFY (1U << 1)
#define REGWATCH_FI_FLAGS	(REGWATCH_FI_TEST_BLIND | \
				 REGWATCH_FI_TEST_NO_NOTIFY)

/*
 * Open a regwatch monitor and import it into libfabric. NULL opts: the
 * defaults. -EBUSY if a monitor was already imported (by us or anyone) or
 * a cache already runs on libfabric's own monitor; -ENOENT (and the
 * other errors of regwatch_open()) when /dev/regwatch is not usable, in
 * which case nothing is imported and libfabric keeps its monitor;
 * -EINVAL for unknown flags.
 */
int regwatch_fi_import(const struct regwatch_fi_options *opts);

/* Counters since the import (all zero before it). */
struct regwatch_fi_stats {
	uint64_t starts;		/* start() calls from libfabric */
	uint64_t subscribes;		/* successful subscriptions */
	uint64_t subscribe_errors;	/* refused: the entry goes uncached */
	uint64_t unsubscribes;
	uint64_t valid_calls;
	uint64_t valid_false;		/* valid() that said "stale" */
	uint64_t events;		/* regwatch events drained */
	uint64_t notifies;		/* import_ops->notify() calls */
	uint64_t live;			/* subscriptions now */
};

int regwatch_fi_stats(struct regwatch_fi_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* REGWATCH_LIBFABRIC_H */
