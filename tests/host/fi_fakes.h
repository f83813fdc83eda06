/* SPDX-License-Identifier: MIT */
/*
 * Fakes for the host tests of the libfabric import monitor
 * (userlib/libfabric/), header-only like cache_fakes.h:
 *  - a fake libregwatch: the regwatch_* functions the monitor calls, over
 *    per-watch state words, an event queue and an eventfd standing for
 *    the monitor's fd (readable while events are queued); fake_fire()
 *    fires a one-shot watch the way the module does (state word, then
 *    the event); knobs to refuse watches, cap the ring, fire silently;
 *  - a fake libfabric: fi_open("mr_cache") whose bind() imports the
 *    monitor, export-op wrappers that hold a stand-in for libfabric's
 *    mm_lock as 1.17 does, and a notify() that records who called it and
 *    with which locks held, then takes mm_lock (and unsubscribes, as
 *    later libfabric versions do, if asked to).
 * These definitions come before libregwatch.a on the link line (see
 * host.mk), so the library's regwatch_* and libfabric are not used.
 */
#ifndef REGWATCH_TEST_FI_FAKES_H
#define REGWATCH_TEST_FI_FAKES_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "fi_internal.h"

/* ---- fake libregwatch ------------------------------------------------------ */

#define FAKE_MAXW 256

struct regwatch {
	int efd;	/* the monitor's fd: readable while events are queued */
};

static struct fake_rw {
	pthread_mutex_t lock;
	struct regwatch rw;
	struct regwatch_options opts;	/* as given to regwatch_open() */
	uint64_t state[FAKE_MAXW];
	uint32_t gen[FAKE_MAXW];
	struct {
		bool live;
		uintptr_t addr;
		size_t len;
		uint64_t cookie;
	} w[FAKE_MAXW];
	struct regwatch_event q[FAKE_MAXW];
	unsigned int qn;
	/* knobs */
	int open_err;		/* regwatch_open() fails with it */
	int watch_err;		/* the next regwatch_watch() fails with it */
	unsigned int ring_cap;	/* ENOBUFS once armed + queued reach it */
	bool silent;		/* fake_fire() leaves the fd unreadable */
	/* what the monitor did */
	int opens, closes, watches, unwatches, unwatch_enoent, live, drains;
	pthread_t drained_by;	/* the last thread that drained events */
} R = { .lock = PTHREAD_MUTEX_INITIALIZER, .rw = { .efd = -1 } };

static inline uint64_t fake_armed(uint32_t slot)
{
	return ((uint64_t)R.gen[slot] << 2) | REGWATCH_STATE_ARMED;
}

int regwatch_open(const struct regwatch_options *opts, struct regwatch **out)
{
	R.opens++;
	R.opts = *opts;
	if (R.open_err)
		return R.open_err;
	R.rw.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (R.rw.efd < 0)
		return -errno;
	*out = &R.rw;
	return 0;
}

void regwatch_close(struct regwatch *rw)
{
	R.closes++;
	close(rw->efd);
	rw->efd = -1;
}

int regwatch_fd(const struct regwatch *rw)
{
	return rw->efd;
}

int regwatch_watch(struct regwatch *rw, const void *addr, size_t len,
		   uint64_t cookie, unsigned int flags, struct regwatch_ref *ref)
{
	uint32_t s;
	int rc = 0;

	(void)rw;
	if (flags)
		return -EINVAL;		/* the monitor only makes one-shots */
	pthread_mutex_lock(&R.lock);
	for (s = 0; s < FAKE_MAXW && R.w[s].live; s++)
		;
	if (R.watch_err) {
		rc = R.watch_err;
		R.watch_err = 0;
	} else if (R.ring_cap && R.live + R.qn >= R.ring_cap) {
		rc = -ENOBUFS;		/* each one-shot reserves its event */
	} else if (s == FAKE_MAXW) {
		rc = -ENOSPC;
	} else {
		R.gen[s]++;
		R.w[s].live = true;
		R.w[s].addr = (uintptr_t)addr;
		R.w[s].len = len;
		R.w[s].cookie = cookie;
		__atomic_store_n(&R.state[s], fake_armed(s), __ATOMIC_RELEASE);
		ref->state = &R.state[s];
		ref->armed_state = fake_armed(s);
		ref->id = (uint64_t)R.gen[s] << 32 | s;
		R.watches++;
		R.live++;
	}
	pthread_mutex_unlock(&R.lock);
	return rc;
}

/* Retire slot s (R.lock held): its state word leaves the armed value. */
static inline void fake_retire(uint32_t s, uint64_t state)
{
	R.w[s].live = false;
	R.live--;
	__atomic_store_n(&R.state[s], ((uint64_t)R.gen[s] << 2) | state,
			 __ATOMIC_RELEASE);
}

int regwatch_unwatch(struct regwatch *rw, const struct regwatch_ref *ref)
{
	uint32_t s = (uint32_t)ref->id;
	int rc = 0;

	(void)rw;
	pthread_mutex_lock(&R.lock);
	if (s >= FAKE_MAXW || !R.w[s].live ||
	    R.gen[s] != (uint32_t)(ref->id >> 32)) {
		R.unwatch_enoent++;	/* fired (gone) or never made */
		rc = -ENOENT;
	} else {
		fake_retire(s, REGWATCH_STATE_FREE);
		R.unwatches++;
	}
	pthread_mutex_unlock(&R.lock);
	return rc;
}

/* Queue an event (R.lock held) and make the fd readable. */
static inline void fake_queue(uint32_t type, uint64_t cookie)
{
	uint64_t one = 1;

	R.q[R.qn++] = (struct regwatch_event){ .type = type,
					       .cookie = cookie };
	if (!R.silent)
		(void)!write(R.rw.efd, &one, sizeof(one));
}

/* The module's invalidation of a one-shot watch on exactly [addr, +len). */
static inline bool fake_fire(uintptr_t addr, size_t len)
{
	bool found = false;

	pthread_mutex_lock(&R.lock);
	for (uint32_t s = 0; s < FAKE_MAXW; s++) {
		if (!R.w[s].live || R.w[s].addr != addr || R.w[s].len != len)
			continue;
		fake_retire(s, REGWATCH_STATE_FIRED);
		fake_queue(REGWATCH_EVENT_INVALIDATE, R.w[s].cookie);
		found = true;
	}
	pthread_mutex_unlock(&R.lock);
	return found;
}

/* An event for any cookie (stale ones, RESYNC). */
static inline void fake_event(uint32_t type, uint64_t cookie)
{
	pthread_mutex_lock(&R.lock);
	fake_queue(type, cookie);
	pthread_mutex_unlock(&R.lock);
}

uint64_t regwatch_pending(const struct regwatch *rw)
{
	uint64_t n;

	(void)rw;
	pthread_mutex_lock(&R.lock);
	n = R.qn;
	pthread_mutex_unlock(&R.lock);
	return n;
}

/* Take the whole queue, then call cb without R.lock (it may unwatch). */
int regwatch_drain(struct regwatch *rw, regwatch_event_cb cb, void *arg)
{
	struct regwatch_event ev[FAKE_MAXW];
	unsigned int n;
	uint64_t v;

	pthread_mutex_lock(&R.lock);
	n = R.qn;
	memcpy(ev, R.q, n * sizeof(ev[0]));
	R.qn = 0;
	(void)!read(rw->efd, &v, sizeof(v));	/* no longer readable */
	R.drains++;
	if (n)
		R.drained_by = pthread_self();
	pthread_mutex_unlock(&R.lock);
	for (unsigned int i = 0; i < n; i++)
		cb(&ev[i], arg);
	return (int)n;
}

/* Between tests: knobs off (the imported monitor keeps R.rw). */
static inline void fake_rw_knobs_off(void)
{
	pthread_mutex_lock(&R.lock);
	R.open_err = R.watch_err = 0;
	R.ring_cap = 0;
	R.silent = false;
	pthread_mutex_unlock(&R.lock);
}

/* ---- fake libfabric -------------------------------------------------------- */

static struct fake_fi {
	/* knobs */
	int open_err, bind_err;
	bool unsubscribe_in_notify;	/* as libfabric > 1.17 does */
	/* what the monitor did */
	int opens, closes, binds;
	struct fid_mem_monitor *mon;	/* the imported monitor */
	/* libfabric's mm_lock, with its owner so that notify() can tell a
	 * call that would deadlock on it from a wait (atomics: notify()
	 * reads them without the lock) */
	pthread_mutex_t mm_lock;
	pthread_t mm_owner;
	bool mm_held;
	/* notify() calls */
	pthread_mutex_t nlock;
	pthread_cond_t ncond;
	int notifies;
	int notify_on_caller;		/* from the thread that called an op */
	int notify_under_our_lock;	/* with the monitor's mutex held */
	int notify_under_mm_lock;	/* from inside subscribe/valid/... */
	uintptr_t notified_addr[FAKE_MAXW];
	size_t notified_len[FAKE_MAXW];
	pthread_t op_thread;		/* the thread that calls the ops */
} L = {
	.mm_lock = PTHREAD_MUTEX_INITIALIZER,
	.nlock = PTHREAD_MUTEX_INITIALIZER,
	.ncond = PTHREAD_COND_INITIALIZER,
};

static inline struct fi_mon *fake_fi_mon(void)
{
	return (struct fi_mon *)((char *)L.mon - offsetof(struct fi_mon, mon));
}

static inline void mm_lock(void)
{
	pthread_mutex_lock(&L.mm_lock);
	__atomic_store_n(&L.mm_owner, pthread_self(), __ATOMIC_RELAXED);
	__atomic_store_n(&L.mm_held, true, __ATOMIC_RELAXED);
}

static inline void mm_unlock(void)
{
	__atomic_store_n(&L.mm_held, false, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&L.mm_lock);
}

static void fake_notify(struct fid_mem_monitor *mon, const void *addr,
			size_t len)
{
	struct fi_mon *m = fake_fi_mon();
	bool ours = pthread_mutex_trylock(&m->lock) != 0;
	bool mm = __atomic_load_n(&L.mm_held, __ATOMIC_RELAXED) &&
		  pthread_equal(__atomic_load_n(&L.mm_owner, __ATOMIC_RELAXED),
				pthread_self());

	if (!ours)
		pthread_mutex_unlock(&m->lock);
	pthread_mutex_lock(&L.nlock);
	L.notify_on_caller += pthread_equal(pthread_self(), L.op_thread);
	L.notify_under_our_lock += ours;
	L.notify_under_mm_lock += mm;
	if (L.notifies < FAKE_MAXW) {
		L.notified_addr[L.notifies] = (uintptr_t)addr;
		L.notified_len[L.notifies] = len;
	}
	pthread_mutex_unlock(&L.nlock);

	/* libfabric's notify: mm_lock, then drop the overlapping entries.
	 * Skipped where either lock would deadlock (counted above). */
	if (!ours && !mm) {
		mm_lock();
		if (L.unsubscribe_in_notify)
			mon->export_ops->unsubscribe(mon, addr, len);
		mm_unlock();
	}

	pthread_mutex_lock(&L.nlock);
	L.notifies++;
	pthread_cond_broadcast(&L.ncond);
	pthread_mutex_unlock(&L.nlock);
}

static struct fi_ops_mem_notify fake_notify_ops = {
	.size = sizeof(struct fi_ops_mem_notify),
	.notify = fake_notify,
};

static int fake_cache_close(struct fid *fid)
{
	(void)fid;
	L.closes++;
	return 0;
}

static int fake_cache_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct fid_mem_monitor *mon = (struct fid_mem_monitor *)bfid;

	(void)fid, (void)flags;
	L.binds++;
	if (L.bind_err)
		return L.bind_err;
	if (bfid->fclass != FI_CLASS_MEM_MONITOR || !mon->export_ops)
		return -FI_EINVAL;
	mon->import_ops = &fake_notify_ops;
	L.mon = mon;
	return 0;
}

static struct fi_ops fake_cache_ops = {
	.size = sizeof(struct fi_ops),
	.close = fake_cache_close,
	.bind = fake_cache_bind,
};

static struct fid fake_cache = { .fclass = FI_CLASS_MR_CACHE,
				 .ops = &fake_cache_ops };

uint32_t fi_version(void)
{
	return FI_VERSION(1, 17);
}

int fi_open(uint32_t version, const char *name, void *attr, size_t attr_len,
	    uint64_t flags, struct fid **fid, void *context)
{
	(void)version, (void)attr, (void)attr_len, (void)flags, (void)context;
	L.opens++;
	if (strcmp(name, "mr_cache"))
		return -FI_ENOSYS;
	if (L.open_err)
		return L.open_err;
	*fid = &fake_cache;
	return 0;
}

/* The export ops as libfabric's MR cache calls them: under mm_lock, except
 * start and stop. */
static inline int fl_subscribe(uintptr_t addr, size_t len)
{
	int rc;

	mm_lock();
	rc = L.mon->export_ops->subscribe(L.mon, (const void *)addr, len);
	mm_unlock();
	return rc;
}

static inline void fl_unsubscribe(uintptr_t addr, size_t len)
{
	mm_lock();
	L.mon->export_ops->unsubscribe(L.mon, (const void *)addr, len);
	mm_unlock();
}

static inline bool fl_valid(uintptr_t addr, size_t len)
{
	bool ok;

	mm_lock();
	ok = L.mon->export_ops->valid(L.mon, (const void *)addr, len);
	mm_unlock();
	return ok;
}

static inline int fl_start(void)
{
	return L.mon->export_ops->start(L.mon);
}

static inline void fl_stop(void)
{
	L.mon->export_ops->stop(L.mon);
}

/* Wait up to 5 s for notify() to have been called n times in all. */
static inline bool fl_wait_notifies(int n)
{
	struct timespec until;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&L.nlock);
	while (L.notifies < n && rc == 0)
		rc = pthread_cond_timedwait(&L.ncond, &L.nlock, &until);
	rc = L.notifies >= n;
	pthread_mutex_unlock(&L.nlock);
	return rc;
}

static inline int fl_notifies(void)
{
	int n;

	pthread_mutex_lock(&L.nlock);
	n = L.notifies;
	pthread_mutex_unlock(&L.nlock);
	return n;
}

static inline struct regwatch_fi_stats fl_stats(void)
{
	struct regwatch_fi_stats st;

	if (regwatch_fi_stats(&st))
		abort();
	return st;
}

/* Wait up to 5 s for the monitor to hold n subscriptions. */
static inline bool fl_wait_live(uint64_t n)
{
	for (int i = 0; i < 5000; i++) {
		if (fl_stats().live == n)
			return true;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	return false;
}

#endif /* REGWATCH_TEST_FI_FAKES_H */
