/* SPDX-License-Identifier: MIT */
/*
 * Fakes for the registration cache's host tests (header-only: each test
 * program is one .c file):
 *  - fake monitor: per-watch state words like the kernel's, an event
 *    queue, fake_invalidate() that fires watches the way the notifier
 *    does (state word first, then the event), and a lock that makes
 *    watch() wait for an invalidation in progress (the module's WATCH
 *    sync); knobs to inject errors, lose events, skip the sync;
 *  - fake backend: counts registrations, snapshots a "version" of the
 *    memory at registration time, optional hook inside reg().
 */
#ifndef REGWATCH_TEST_CACHE_FAKES_H
#define REGWATCH_TEST_CACHE_FAKES_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cache_monitor.h"
#include "regwatch_cache.h"

#define FAKE_QMAX 65536

struct fake_watch {
	uintptr_t start, end;
	uint64_t cookie, id;
	bool live, armed;
};

struct fake_monitor {
	struct cache_monitor base;
	pthread_mutex_t lock;		/* slots and queue */
	pthread_mutex_t inval_lock;	/* an invalidation in progress */
	uint64_t *states;
	struct fake_watch *w;
	uint32_t max, nslots;
	uint32_t *free_slots, nfree;
	struct regwatch_event *q;
	uint32_t qhead, qtail;		/* free-running */
	uint64_t generation;
	int evfd;
	/* knobs */
	int watch_err, watch_err_count;	/* fail the next n watches */
	uint32_t ring_limit;		/* ENOBUFS at this many armed watches,
					 * like the module's ring reservation */
	int drain_err;			/* drain returns this once */
	bool lose_events;		/* fire without queueing */
	uint32_t fire_flags;		/* added to the events' flags */
	bool skip_sync;			/* watch does not wait */
	void (*on_watch)(struct fake_monitor *m, uintptr_t start, uintptr_t end,
			 void *arg);
	void *on_watch_arg;
	/* called at the start of drain(), before anything is dequeued (the
	 * cache calls drain with its mutex held) */
	void (*on_drain)(struct fake_monitor *m, void *arg);
	void *on_drain_arg;
	/* counters */
	int watches, unwatches, live, drains, unwatch_enoent;
	int *destroyed;			/* destroy sets 1 (2 in a child) */
	int *unwatch_total;		/* if set, unwatch counts here too */
};

static inline struct fake_monitor *fm_of(struct cache_monitor *m)
{
	return (struct fake_monitor *)m;
}

static inline int fake_watch(struct cache_monitor *mon, uintptr_t addr, size_t len,
		      uint64_t cookie, struct cache_watch *out)
{
	struct fake_monitor *m = fm_of(mon);
	uint32_t slot;
	uint64_t gen;

	pthread_mutex_lock(&m->lock);
	if (m->watch_err_count > 0) {
		int rc = m->watch_err;

		m->watch_err_count--;
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	if (m->ring_limit && m->live >= (int)m->ring_limit) {
		pthread_mutex_unlock(&m->lock);
		return -ENOBUFS;
	}
	if (m->nfree)
		slot = m->free_slots[--m->nfree];
	else if (m->nslots < m->max)
		slot = m->nslots++;
	else {
		pthread_mutex_unlock(&m->lock);
		return -ENOSPC;
	}
	gen = (m->states[slot] >> 32) + 1;
	m->w[slot] = (struct fake_watch){ addr, addr + len, cookie,
					  (gen << 32) | slot, true, true };
	__atomic_store_n(&m->states[slot], (gen << 32) | REGWATCH_STATE_ARMED,
			 __ATOMIC_RELEASE);
	out->state = &m->states[slot];
	out->armed = (gen << 32) | REGWATCH_STATE_ARMED;
	out->id = m->w[slot].id;
	m->watches++;
	m->live++;
	pthread_mutex_unlock(&m->lock);
	/*
	 * WATCH returns after a running invalidation has finished. Like the
	 * module (mmu_interval_notifier_insert(), then read_begin()), wait
	 * only once the watch is published, where fake_fire() sees it:
	 * waiting first and arming afterwards leaves a gap in which an
	 * invalidation fires without seeing the new watch and changes the
	 * memory after watch() has returned it armed (the caller then
	 * registers the old contents under a watch that never fires).
	 */
	if (!m->skip_sync) {
		pthread_mutex_lock(&m->inval_lock);
		pthread_mutex_unlock(&m->inval_lock);
	}
	if (m->on_watch)
		m->on_watch(m, addr, addr + len, m->on_watch_arg);
	return 0;
}

static inline int fake_unwatch(struct cache_monitor *mon, const struct cache_watch *cw)
{
	struct fake_monitor *m = fm_of(mon);
	uint32_t slot = (uint32_t)cw->id;

	pthread_mutex_lock(&m->lock);
	if (slot >= m->nslots || !m->w[slot].live || m->w[slot].id != cw->id) {
		m->unwatch_enoent++;
		pthread_mutex_unlock(&m->lock);
		return -ENOENT;
	}
	m->w[slot].live = m->w[slot].armed = false;
	__atomic_store_n(&m->states[slot], cw->id & ~0xffffffffULL,
			 __ATOMIC_RELEASE);
	m->free_slots[m->nfree++] = slot;
	m->unwatches++;
	if (m->unwatch_total)
		(*m->unwatch_total)++;
	m->live--;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static inline void fake_queue(struct fake_monitor *m, const struct regwatch_event *ev)
{
	uint64_t one = 1;

	if (m->qtail - m->qhead < FAKE_QMAX)
		m->q[m->qtail++ % FAKE_QMAX] = *ev;
	if (write(m->evfd, &one, sizeof(one)) < 0)
		abort();
}

static inline int fake_drain(struct cache_monitor *mon, regwatch_event_cb cb, void *arg)
{
	struct fake_monitor *m = fm_of(mon);
	struct regwatch_event ev;
	uint64_t cnt;
	int n = 0, rc;

	if (m->on_drain)
		m->on_drain(m, m->on_drain_arg);
	pthread_mutex_lock(&m->lock);
	m->drains++;
	if (m->drain_err) {
		rc = m->drain_err;
		m->drain_err = 0;
		pthread_mutex_unlock(&m->lock);
		return rc;
	}
	if (read(m->evfd, &cnt, sizeof(cnt)) < 0) {
		/* not signalled */
	}
	while (m->qhead != m->qtail) {
		ev = m->q[m->qhead++ % FAKE_QMAX];
		pthread_mutex_unlock(&m->lock);
		rc = cb(&ev, arg);
		pthread_mutex_lock(&m->lock);
		if (rc)
			break;
		n++;
	}
	pthread_mutex_unlock(&m->lock);
	return n;
}

static inline int fake_fd(struct cache_monitor *mon)
{
	return fm_of(mon)->evfd;
}

static inline void fake_destroy(struct cache_monitor *mon, bool in_child)
{
	struct fake_monitor *m = fm_of(mon);

	if (m->destroyed)
		*m->destroyed = in_child ? 2 : 1;
	close(m->evfd);
	free(m->states);
	free(m->w);
	free(m->free_slots);
	free(m->q);
	free(m);
}

static const struct cache_monitor_ops fake_monitor_ops __attribute__((unused)) = {
	.watch = fake_watch,
	.unwatch = fake_unwatch,
	.drain = fake_drain,
	.fd = fake_fd,
	.destroy = fake_destroy,
};

/* A fake monitor with room for max watches; with_gen: expose generation. */
static inline struct fake_monitor *fake_monitor_new(uint32_t max, bool with_gen)
{
	struct fake_monitor *m = calloc(1, sizeof(*m));

	if (!m)
		abort();
	m->base.ops = &fake_monitor_ops;
	m->base.name = "fake";
	m->base.generation = with_gen ? &m->generation : NULL;
	pthread_mutex_init(&m->lock, NULL);
	pthread_mutex_init(&m->inval_lock, NULL);
	m->max = max;
	m->states = calloc(max, sizeof(*m->states));
	m->w = calloc(max, sizeof(*m->w));
	m->free_slots = calloc(max, sizeof(*m->free_slots));
	m->q = calloc(FAKE_QMAX, sizeof(*m->q));
	m->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!m->states || !m->w || !m->free_slots || !m->q || m->evfd < 0)
		abort();
	return m;
}

/*
 * Fire every armed watch overlapping [start, end) like the notifier: state
 * word first, then the event, then the generation. Returns how many.
 */
static inline int fake_fire(struct fake_monitor *m, uintptr_t start,
			    uintptr_t end, uint32_t class)
{
	uint32_t i;
	int n = 0;

	pthread_mutex_lock(&m->lock);
	for (i = 0; i < m->nslots; i++) {
		struct fake_watch *w = &m->w[i];

		if (!w->live || !w->armed || w->end <= start || w->start >= end)
			continue;
		w->armed = false;
		__atomic_store_n(&m->states[i],
				 (w->id & ~0xffffffffULL) |
				 (1 << REGWATCH_STATE_COUNT_SHIFT) |
				 REGWATCH_STATE_FIRED, __ATOMIC_RELEASE);
		if (!m->lose_events) {
			struct regwatch_event ev = {
				.type = REGWATCH_EVENT_INVALIDATE,
				.class = class,
				.flags = REGWATCH_EVENT_ONESHOT | m->fire_flags,
				.watch_id = w->id,
				.cookie = w->cookie,
				.start = start > w->start ? start : w->start,
				.end = end < w->end ? end : w->end,
			};
			fake_queue(m, &ev);
		}
		n++;
	}
	if (n)
		__atomic_fetch_add(&m->generation, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&m->lock);
	return n;
}

/* An invalidation as the kernel does it: notifier, then the page change,
 * with watch() waiting for the whole of it. */
static inline int fake_invalidate(struct fake_monitor *m, uintptr_t start,
				  uintptr_t end, uint32_t class,
				  void (*change)(void *arg), void *arg)
{
	int n;

	pthread_mutex_lock(&m->inval_lock);
	n = fake_fire(m, start, end, class);
	if (change)
		change(arg);
	pthread_mutex_unlock(&m->inval_lock);
	return n;
}

/* Watches that fired but were not removed yet. */
static inline int fake_fired_live(struct fake_monitor *m)
{
	uint32_t i;
	int n = 0;

	pthread_mutex_lock(&m->lock);
	for (i = 0; i < m->nslots; i++)
		n += m->w[i].live && !m->w[i].armed;
	pthread_mutex_unlock(&m->lock);
	return n;
}

static inline void fake_resync_event(struct fake_monitor *m)
{
	struct regwatch_event ev = { .type = REGWATCH_EVENT_RESYNC };

	pthread_mutex_lock(&m->lock);
	fake_queue(m, &ev);
	__atomic_fetch_add(&m->generation, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&m->lock);
}

/* ------------------------------------------------------------ backend */

struct fake_handle {
	uintptr_t addr;
	size_t len;
	uint32_t access;
	uint64_t serial;
	uint64_t version;	/* fake_backend.version() at reg time */
	uint32_t magic;
	/* on the backend's list of live handles (keeps them reachable for
	 * valgrind in forked children, which must not deregister) */
	struct fake_handle *prev, *next;
};

#define FAKE_HANDLE_MAGIC 0xfeedf00d

struct fake_backend {
	pthread_mutex_t lock;
	int regs, deregs, live, dereg_bad;
	struct fake_handle *handles;	/* live ones */
	size_t live_bytes;
	uint64_t serial;
	int reg_err, reg_err_count;	/* fail the next n regs */
	int dereg_err;			/* every dereg returns this */
	/* called inside reg(), before the snapshot */
	void (*on_reg)(struct fake_backend *b, uintptr_t addr, size_t len,
		       void *arg);
	void *on_reg_arg;
	/* snapshot of the memory's "version" at reg time */
	uint64_t (*version)(uintptr_t addr, size_t len, void *arg);
	void *version_arg;
};

static inline int fake_reg(void *ctx, void *addr, size_t len, uint32_t access,
		    void **handle, struct regwatch_cache_reg_info *info)
{
	struct fake_backend *b = ctx;
	struct fake_handle *h;

	if (b->on_reg)
		b->on_reg(b, (uintptr_t)addr, len, b->on_reg_arg);
	pthread_mutex_lock(&b->lock);
	if (b->reg_err_count > 0) {
		b->reg_err_count--;
		pthread_mutex_unlock(&b->lock);
		return b->reg_err;
	}
	pthread_mutex_unlock(&b->lock);
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->addr = (uintptr_t)addr;
	h->len = len;
	h->access = access;
	h->magic = FAKE_HANDLE_MAGIC;
	if (b->version)
		h->version = b->version((uintptr_t)addr, len, b->version_arg);
	pthread_mutex_lock(&b->lock);
	h->serial = ++b->serial;
	h->next = b->handles;
	if (h->next)
		h->next->prev = h;
	b->handles = h;
	b->regs++;
	b->live++;
	b->live_bytes += len;
	pthread_mutex_unlock(&b->lock);
	info->local_key = h->serial;
	info->remote_key = h->serial + 1000000;
	*handle = h;
	return 0;
}

static inline int fake_dereg(void *ctx, void *handle)
{
	struct fake_backend *b = ctx;
	struct fake_handle *h = handle;

	pthread_mutex_lock(&b->lock);
	if (!h || h->magic != FAKE_HANDLE_MAGIC) {
		b->dereg_bad++;
		pthread_mutex_unlock(&b->lock);
		return -EINVAL;
	}
	b->deregs++;
	b->live--;
	b->live_bytes -= h->len;
	if (h->prev)
		h->prev->next = h->next;
	else
		b->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&b->lock);
	h->magic = 0;
	free(h);
	return b->dereg_err;
}

static inline void fake_backend_init(struct fake_backend *b)
{
	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
}

static inline struct regwatch_cache_backend fake_backend_of(struct fake_backend *b)
{
	struct regwatch_cache_backend be = {
		.reg = fake_reg, .dereg = fake_dereg, .ctx = b,
	};
	return be;
}

static inline struct fake_handle *fake_handle_of(const struct regwatch_cache_entry *e)
{
	return regwatch_cache_entry_handle(e);
}

#define PAGE 4096UL
/* Fake addresses: nothing behind them is touched with a fake monitor. */
#define FAKE_BASE ((uintptr_t)0x100000000000ULL)
#define FA(off) ((void *)(FAKE_BASE + (off)))

#endif /* REGWATCH_TEST_CACHE_FAKES_H */
