// SPDX-License-Identifier: MIT
/*
 * regwatch as libfabric's import monitor: the export ops libfabric calls
 * and regwatch_fi_import(). See include/regwatch_libfabric.h for the
 * contract and fi_internal.h for the locking.
 *
 * What libfabric (1.13-1.17, prov/util/src/util_mr_cache.c) does with
 * them: a cache miss registers the memory (ibv_reg_mr) with no lock held,
 * then takes mm_lock, inserts the entry and calls subscribe(); a lookup
 * that finds an entry calls valid(entry's addr, len) under mm_lock and,
 * if it says false, drops the entry and registers again; notify() drops
 * every entry overlapping the range; start()/stop() bracket the first and
 * last cache. 1.17 never calls unsubscribe(); later versions call it for
 * each entry they drop, from inside notify() too (docs/design.md).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fi_internal.h"

#define FI_MON_RING_ENTRIES 16384

static struct fi_mon *mon_of(struct fid_mem_monitor *mon)
{
	return (struct fi_mon *)((char *)mon - offsetof(struct fi_mon, mon));
}

/* ---- draining the ring (m->lock held) ------------------------------ */

static int queue_range(struct fi_mon *m, const struct fi_range *r)
{
	if (m->npending == m->cap_pending) {
		size_t n = m->cap_pending ? m->cap_pending * 2 : 16;
		struct fi_range *p = realloc(m->pending, n * sizeof(*p));

		if (!p)
			return -ENOMEM;
		m->pending = p;
		m->cap_pending = n;
	}
	m->pending[m->npending++] = *r;
	return 0;
}

static int on_event(const struct regwatch_event *ev, void *arg)
{
	struct fi_mon *m = arg;
	struct fi_range r = { .cookie = ev->cookie };

	m->st.events++;
	if (ev->type != REGWATCH_EVENT_INVALIDATE)
		return 0;	/* RESYNC: streaming watches only, we have none */
	if (!fi_subs_fire(&m->subs, ev->cookie, &r.addr, &r.len))
		return 0;	/* already removed, or a repeat */
	if (m->flags & REGWATCH_FI_TEST_NO_NOTIFY)
		return 0;	/* test only: valid() alone, via the state word */
	if (m->flags & REGWATCH_FI_TEST_BLIND) {
		/* test only: forget it, as if every cache had dropped it */
		fi_mon_notified_locked(m, &r);
		return 0;
	}
	/* Without memory the notify is lost, not the invalidation: valid()
	 * still reads the state word, and the entry stays until libfabric
	 * unsubscribes it. */
	(void)queue_range(m, &r);
	return 0;
}

void fi_mon_notified_locked(struct fi_mon *m, const struct fi_range *r)
{
	struct regwatch_ref ref;

	/* Every cache dropped what it had registered before the
	 * invalidation: the fired watch has nothing left to answer for.
	 * (A later libfabric may have unsubscribed it already.) */
	if (fi_subs_remove_cookie(&m->subs, r->cookie, &ref))
		(void)regwatch_unwatch(m->rw, &ref);
}

size_t fi_mon_drain_locked(struct fi_mon *m)
{
	size_t before = m->npending;

	if (regwatch_pending(m->rw))
		(void)regwatch_drain(m->rw, on_event, m);
	return m->npending - before;
}

/* ---- export ops ------------------------------------------------------ */

static int mon_start(struct fid_mem_monitor *mon)
{
	struct fi_mon *m = mon_of(mon);

	if (m->flags & REGWATCH_FI_TEST_NO_NOTIFY) {
		pthread_mutex_lock(&m->lock);
		m->st.starts++;
		pthread_mutex_unlock(&m->lock);
		return 0;
	}
	return fi_delivery_start(m);
}

static void mon_stop(struct fid_mem_monitor *mon)
{
	fi_delivery_stop(mon_of(mon));
}

static int mon_subscribe(struct fid_mem_monitor *mon, const void *addr,
			 size_t len)
{
	struct fi_mon *m = mon_of(mon);
	struct regwatch_ref ref;
	uint64_t cookie;
	size_t queued;
	int rc;

	pthread_mutex_lock(&m->lock);
	/* Consume fired events first: each holds a ring entry that a new
	 * one-shot watch needs (ENOBUFS otherwise). */
	queued = fi_mon_drain_locked(m);
	/* libfabric <= 1.17 never unsubscribes, so the same range comes
	 * back: an armed watch already covers the new registration. */
	if (fi_subs_armed(&m->subs, (uintptr_t)addr, len)) {
		m->st.subscribes++;
		rc = 0;
		goto out;
	}
	rc = fi_subs_reserve(&m->subs, &cookie);
	if (!rc) {
		rc = regwatch_watch(m->rw, addr, len, cookie, 0, &ref);
		if (rc)
			fi_subs_cancel(&m->subs, cookie);
		else
			fi_subs_commit(&m->subs, cookie, (uintptr_t)addr, len,
				       &ref);
	}
	if (rc)
		m->st.subscribe_errors++;
	else
		m->st.subscribes++;
out:
	if (queued)
		fi_delivery_kick_locked(m);
	pthread_mutex_unlock(&m->lock);
	/* libfabric keeps the registration but does not cache it. */
	return rc;
}

static void mon_unsubscribe(struct fid_mem_monitor *mon, const void *addr,
			    size_t len)
{
	struct fi_mon *m = mon_of(mon);
	struct regwatch_ref ref;

	pthread_mutex_lock(&m->lock);
	if (fi_subs_remove(&m->subs, (uintptr_t)addr, len, &ref)) {
		/* A fired watch is gone already: ENOENT is fine. */
		(void)regwatch_unwatch(m->rw, &ref);
		m->st.unsubscribes++;
	}
	pthread_mutex_unlock(&m->lock);
}

static bool mon_valid(struct fid_mem_monitor *mon, const void *addr,
		      size_t len)
{
	struct fi_mon *m = mon_of(mon);
	bool ok;

	pthread_mutex_lock(&m->lock);
	m->st.valid_calls++;
	ok = (m->flags & REGWATCH_FI_TEST_BLIND) ||
	     fi_subs_valid(&m->subs, (uintptr_t)addr, len);
	if (!ok)
		m->st.valid_false++;
	pthread_mutex_unlock(&m->lock);
	return ok;
}

/* libfabric replaces fid.ops on import; these only serve before that. */
static int fid_close(struct fid *fid)
{
	(void)fid;
	return 0;
}

static int fid_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	(void)fid, (void)bfid, (void)flags;
	return -FI_ENOSYS;
}

static int fid_control(struct fid *fid, int command, void *arg)
{
	(void)fid, (void)command, (void)arg;
	return -FI_ENOSYS;
}

static int fid_ops_open(struct fid *fid, const char *name, uint64_t flags,
			void **ops, void *context)
{
	(void)fid, (void)name, (void)flags, (void)ops, (void)context;
	return -FI_ENOSYS;
}

/* ---- import ------------------------------------------------------------ */

/* One per process: libfabric holds a single imported monitor. */
static struct fi_mon the_mon;
static pthread_mutex_t import_lock = PTHREAD_MUTEX_INITIALIZER;
static bool imported;

static void init_mon(struct fi_mon *m, struct regwatch *rw, unsigned int flags)
{
	m->rw = rw;
	m->flags = flags;
	m->kick_fd = -1;
	pthread_mutex_init(&m->lock, NULL);

	m->fid_ops.size = sizeof(m->fid_ops);
	m->fid_ops.close = fid_close;
	m->fid_ops.bind = fid_bind;
	m->fid_ops.control = fid_control;
	m->fid_ops.ops_open = fid_ops_open;

	m->export_ops.size = sizeof(m->export_ops);
	m->export_ops.start = mon_start;
	m->export_ops.stop = mon_stop;
	m->export_ops.subscribe = mon_subscribe;
	m->export_ops.unsubscribe = mon_unsubscribe;
	m->export_ops.valid = mon_valid;

	m->mon.fid.fclass = FI_CLASS_MEM_MONITOR;
	m->mon.fid.context = m;
	m->mon.fid.ops = &m->fid_ops;
	m->mon.export_ops = &m->export_ops;
}

int regwatch_fi_import(const struct regwatch_fi_options *opts)
{
	struct regwatch_options ro = { 0 };
	struct fi_mon *m = &the_mon;
	unsigned int flags = opts ? opts->flags : 0;
	struct regwatch *rw;
	struct fid *cache;
	int rc;

	if (flags & ~REGWATCH_FI_FLAGS)
		return -EINVAL;
	/* libfabric <= 1.17 keeps a subscription per range it ever cached
	 * until the memory goes, and each armed one-shot watch reserves a
	 * ring entry: ask for a bigger ring than the module's default. */
	ro.ring_entries = FI_MON_RING_ENTRIES;
	if (opts) {
		if (opts->ring_entries)
			ro.ring_entries = opts->ring_entries;
		ro.max_watches = opts->max_watches;
	}

	pthread_mutex_lock(&import_lock);
	if (imported) {
		rc = -EBUSY;
		goto out;
	}
	rc = regwatch_open(&ro, &rw);
	if (rc)
		goto out;
	memset(m, 0, sizeof(*m));
	init_mon(m, rw, flags);
	rc = fi_subs_init(&m->subs);
	if (rc)
		goto fail;

	if (getenv("FI_MR_CACHE_MONITOR"))
		fprintf(stderr, "regwatch_fi: FI_MR_CACHE_MONITOR is set; "
			"libfabric uses it instead of regwatch if it "
			"initialises after this import\n");

	rc = fi_open(fi_version(), "mr_cache", NULL, 0, 0, &cache, NULL);
	if (rc)
		goto fail;
	rc = fi_import_fid(cache, &m->mon.fid, 0);
	fi_close(cache);
	if (rc)
		goto fail;
	imported = true;
	goto out;
fail:
	fi_subs_fini(&m->subs);
	pthread_mutex_destroy(&m->lock);
	regwatch_close(rw);
	memset(m, 0, sizeof(*m));
out:
	pthread_mutex_unlock(&import_lock);
	return rc;
}

int regwatch_fi_stats(struct regwatch_fi_stats *st)
{
	struct fi_mon *m = &the_mon;

	if (!st)
		return -EINVAL;
	pthread_mutex_lock(&import_lock);
	if (!imported) {
		memset(st, 0, sizeof(*st));
	} else {
		pthread_mutex_lock(&m->lock);
		*st = m->st;
		st->live = m->subs.live;
		pthread_mutex_unlock(&m->lock);
	}
	pthread_mutex_unlock(&import_lock);
	return 0;
}
