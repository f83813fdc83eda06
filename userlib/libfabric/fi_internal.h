/* SPDX-License-Identifier: MIT */
/*
 * Shared state of the libfabric import monitor (fi_monitor.c: the export
 * ops and the import; fi_delivery.c: the thread that calls notify).
 *
 * Locks. libfabric calls subscribe, unsubscribe and valid with its global
 * mm_lock held, and notify() takes mm_list_rwlock and mm_lock itself; a
 * later libfabric's unsubscribe() comes back into us from inside notify().
 * So the order is
 * "libfabric's locks, then ours": we take m->lock inside every export op
 * and never call notify() while holding it. The kernel never waits for
 * this process, so allocating memory (which may unmap memory) under
 * libfabric's lock cannot deadlock the way it can with userfaultfd.
 */
#ifndef REGWATCH_FI_INTERNAL_H
#define REGWATCH_FI_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include <rdma/fabric.h>
#include <rdma/fi_ext.h>

#include <regwatch.h>
#include <regwatch_libfabric.h>

#include "fi_subs.h"

/* A range whose watch fired, waiting for notify(). */
struct fi_range {
	uintptr_t addr;
	size_t len;
	uint64_t cookie;	/* its subscription, removed after notify() */
};

struct fi_mon {
	struct fid_mem_monitor mon;	/* what libfabric holds */
	struct fi_ops_mem_monitor export_ops;
	struct fi_ops fid_ops;

	pthread_mutex_t lock;		/* everything below */
	struct regwatch *rw;
	struct fi_subs subs;
	unsigned int flags;		/* REGWATCH_FI_* */
	struct fi_range *pending;	/* fired, not notified yet */
	size_t npending, cap_pending;
	struct regwatch_fi_stats st;

	/* The delivery thread. */
	pthread_t thread;
	bool running;			/* started and not stopped */
	int kick_fd;			/* eventfd: pending work or stop */
	bool stop;
};

/*
 * Consume the event ring (m->lock held): mark the fired subscriptions and
 * queue their ranges for notify(). Returns how many were queued. Frees
 * the ring entries that one-shot watches reserve, so it is also what
 * keeps subscribe() from running out of them.
 */
size_t fi_mon_drain_locked(struct fi_mon *m);

/* notify() for r has returned: drop its subscription (m->lock held). */
void fi_mon_notified_locked(struct fi_mon *m, const struct fi_range *r);

/* Start and stop the delivery thread (m->lock not held). */
int fi_delivery_start(struct fi_mon *m);
void fi_delivery_stop(struct fi_mon *m);

/* Wake the delivery thread: ranges are pending (m->lock held). */
void fi_delivery_kick_locked(struct fi_mon *m);

#endif /* REGWATCH_FI_INTERNAL_H */
