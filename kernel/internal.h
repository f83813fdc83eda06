/* SPDX-License-Identifier: GPL-2.0 */
/*
 * regwatch: objects shared by the module's files.
 *
 * main.c     module parameters, per-user accounting, debugfs, misc device
 * monitor.c  one open fd: lifecycle, ioctl dispatch, mmap, poll, read
 * ring.c     the shared area: event ring, state words, reservations
 * watch.c    watches: the interval notifier, WATCH / UNWATCH
 * signal.c   synchronous delivery: SET_SIGNAL, signalling the invalidator
 * mirror.c   mirror mode: a no-pin software DMA device (own locking rules)
 *
 * Locking (see docs/design.md):
 *   mon->config_lock  mutex; CONFIG and SET_EVENTFD. Never taken by the
 *                     notifier, never held around mmap_lock-taking work
 *                     that the notifier could wait for.
 *   mon->watches      xarray; its own xa_lock makes UNWATCH's
 *                     look-up-and-erase atomic.
 *   mon->ring_lock    spinlock; ring indices, reservations, state words,
 *                     counters. Taken by the notifier, so nothing under it
 *                     sleeps, allocates or touches user memory.
 *   mon->eventfd      RCU; the notifier signals under rcu_read_lock().
 *   mon->signo        READ_ONCE in the notifier, under rcu_read_lock() until
 *                     the signal is sent; SET_SIGNAL waits for a grace period.
 */
#ifndef REGWATCH_INTERNAL_H
#define REGWATCH_INTERNAL_H

#include <linux/mmu_notifier.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "../include/uapi/regwatch.h"

/* mmap offsets of the two shared areas (CONFIG reports them too). */
#define RW_OFF_SHARED		0ULL
#define RW_OFF_CONSUMER		(1ULL << 32)

/* Module parameters (main.c). */
extern unsigned int rw_default_ring_entries;
extern unsigned int rw_max_ring_entries;
extern unsigned int rw_default_max_watches;
extern unsigned int rw_max_watches_limit;
extern unsigned int rw_max_user_watches;
extern unsigned int rw_test_ignore_classes;
extern bool rw_test_skip_watch_sync;
extern bool rw_test_no_signal;

/* Module-wide counters, for leak checks (main.c). */
extern atomic64_t rw_nr_monitors;
extern atomic64_t rw_nr_watches;
extern atomic64_t rw_nr_pages;
/* Non-blockable (OOM reaper) invalidations handled, module-wide: debugfs. */
extern atomic64_t rw_nr_nonblock;

/* Watches per user, over all monitors (main.c). */
struct rw_user {
	struct list_head node;
	kuid_t uid;
	refcount_t ref;
	atomic_t watches;
};

struct rw_user *rw_user_get(kuid_t uid);
void rw_user_put(struct rw_user *user);

int rw_stats_size(void __user *arg, size_t min, u32 *usize);
int rw_stats_copy_out(void __user *arg, const void *st, size_t ksize,
		      u32 usize);

/* Counters of one monitor; under ring_lock. */
struct rw_counters {
	u64 events;
	u64 coalesced;
	u64 overflows;
	u64 resyncs;
	u64 nonblock;
	u64 invalidations;
	u64 filtered;
	u64 by_class[REGWATCH_NR_CLASSES];
};

struct rw_monitor {
	struct mm_struct *mm;		/* mmgrab()ed; the only mm served */
	struct pid *tgid;		/* opener's process: signal targets */
	struct rw_user *user;

	struct mutex config_lock;
	bool configured;		/* set with release once the area exists */
	u32 ring_entries;
	u32 max_watches;

	/* Shared area: pages mapped read-only to userspace, vmap()ed here. */
	struct page **pages;
	unsigned int nr_pages;
	void *area;
	struct regwatch_shared_header *hdr;
	struct regwatch_event *ring;
	u64 *states;
	struct page *consumer_page;	/* user-writable: the consumer head */
	struct regwatch_consumer *consumer;

	spinlock_t ring_lock;
	u64 prod;			/* events published */
	u64 cons;			/* last plausible consumer head */
	u32 oneshot_armed;		/* ring entries reserved */
	bool resync_pending;		/* a RESYNC is queued, unconsumed */
	u64 resync_pos;
	u64 generation;
	struct rw_counters cnt;

	struct xarray watches;		/* slot -> struct rw_watch */
	atomic_t nr_watches;

	struct eventfd_ctx __rcu *eventfd;
	int signo;			/* SET_SIGNAL; 0: off */
	atomic64_t signals;		/* signals queued */
	struct work_struct eventfd_work;	/* when signalling must wait */
	wait_queue_head_t wq;		/* poll and read */
	struct mutex read_lock;		/* one read() at a time */
};

struct rw_watch {
	struct mmu_interval_notifier notifier;
	struct rw_monitor *mon;
	unsigned long start;		/* page-rounded, end exclusive */
	unsigned long end;
	u64 cookie;
	u64 id;
	u32 flags;			/* REGWATCH_WATCH_* */
	u32 classes;			/* REGWATCH_CLASS_* that fire it */
	u32 count;			/* invalidations delivered */
	bool fired;			/* one-shot: event published */
};

/* ring.c */
int rw_area_create(struct rw_monitor *mon, u32 ring_entries, u32 max_watches);
void rw_area_destroy(struct rw_monitor *mon);
int rw_area_mmap(struct rw_monitor *mon, struct vm_area_struct *vma);
u64 rw_ring_sync_consumer(struct rw_monitor *mon);
int rw_ring_reserve(struct rw_monitor *mon);
void rw_ring_unreserve(struct rw_monitor *mon);
u64 rw_state_arm(struct rw_monitor *mon, u32 slot);
void rw_state_free(struct rw_monitor *mon, struct rw_watch *w);
bool rw_ring_fire(struct rw_monitor *mon, struct rw_watch *w, u32 class,
		  unsigned long start, unsigned long end, u32 flags);
bool rw_ring_pending(struct rw_monitor *mon);
void rw_ring_consume(struct rw_monitor *mon, u64 head);

/* watch.c */
int rw_watch_add(struct rw_monitor *mon, struct regwatch_watch *req);
int rw_watch_remove(struct rw_monitor *mon, u64 id);
void rw_watch_remove_all(struct rw_monitor *mon);
long rw_ioctl_watch(struct rw_monitor *mon, void __user *arg);
long rw_ioctl_unwatch(struct rw_monitor *mon, void __user *arg);
long rw_ioctl_watchv(struct rw_monitor *mon, void __user *arg);
long rw_ioctl_unwatchv(struct rw_monitor *mon, void __user *arg);

/* signal.c */
long rw_ioctl_set_signal(struct rw_monitor *mon, void __user *arg);
int rw_sync_signo(struct rw_monitor *mon,
		  const struct mmu_notifier_range *range);
void rw_sync_send(struct rw_monitor *mon, int signo);

/* mirror.c */
int rw_mirror_init(void);
void rw_mirror_exit(void);

/* monitor.c */
extern const struct file_operations rw_fops;
void rw_notify(struct rw_monitor *mon);

#endif /* REGWATCH_INTERNAL_H */
