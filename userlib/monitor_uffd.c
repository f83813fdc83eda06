// SPDX-License-Identifier: MIT
/*
 * The userfaultfd monitor: the fallback when regwatch.ko is absent.
 *
 * Each watched range (rounded out to pages) is registered with one
 * userfaultfd in MISSING mode, with UFFD_FEATURE_EVENT_UNMAP, _REMOVE and
 * _REMAP. A reader thread (mandatory: the kernel blocks munmap/madvise
 * until it has read their event, so a single-threaded process without a
 * reader would hang in free()) turns each event into firings of the
 * overlapping watches: it writes their state words (the same one-load
 * check as the kernel monitor), queues one event per watch (one-shot: the
 * queue holds each watch at most once, so it cannot overflow), bumps a
 * generation word and signals an eventfd.
 *
 * What it sees (private anonymous memory only: watch() refuses with
 * EINVAL a range with shared-anonymous, shmem or file pages, told by
 * /proc/self/pagemap's "file/shared" bit after populating, or hugetlb
 * pages, told by UFFDIO_REGISTER offering no UFFDIO_ZEROPAGE; shmem and
 * file pages change without any userfaultfd event on truncate, hole punch
 * or another process's action):
 *   UNMAP  munmap, mremap shrink, mmap(MAP_FIXED) over a watched range,
 *          brk shrink                            (UFFD_EVENT_UNMAP)
 *   UNMAP  mremap move, also MREMAP_DONTUNMAP    (UFFD_EVENT_REMAP)
 *   CLEAR  madvise DONTNEED, DONTNEED_LOCKED, FREE, REMOVE
 *                                                (UFFD_EVENT_REMOVE)
 * What it cannot see: page migration (move_pages, NUMA balancing,
 * compaction), swap-out and MADV_PAGEOUT/COLD, KSM merges, THP
 * split/collapse, the copy of a COW page after fork, process_madvise()
 * from another process... none of which userfaultfd reports. For memory
 * a backend pins (FOLL_LONGTERM) the kernel skips or keeps those pages,
 * so pinned registrations stay correct; non-pinning backends (ODP,
 * accelerators that mirror page tables) need the kernel monitor.
 *
 * Timing: the kernel wakes the unmapping thread when the reader has read
 * the event, before the reader has written the state words, so a get()
 * right after munmap returns can, for a few microseconds, still hit the
 * old entry. The kernel monitor has no such window.
 *
 * Page faults: MISSING mode delivers faults on not-present pages of
 * watched ranges to the reader, which answers with a zero page (the
 * right content for private anonymous memory). To keep such faults rare
 * the monitor populates each range (MADV_POPULATE_READ) before
 * registering it, and unregisters a range as soon as it is dropped or
 * unmapped (parts still covered by other armed watches stay registered).
 * Without privilege (vm.unprivileged_userfaultfd=0) the fd is created
 * with UFFD_USER_MODE_ONLY: a kernel-mode fault (a syscall or GUP
 * touching a not-present watched page) then fails with EFAULT instead of
 * reaching the reader; the population above and the prompt unregister
 * leave only a race with a concurrent madvise(DONTNEED) for that.
 *
 * Other limits: a range registered with another userfaultfd cannot be
 * watched (EBUSY); each registered range can split a VMA
 * (vm.max_map_count).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "cache_itree.h"
#include "cache_monitor.h"
#include "cache_pagemap.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define CHUNK_WORDS	1024	/* state words per chunk (never moved) */
#define UFFD_FEATURES	(UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE | \
			 UFFD_FEATURE_EVENT_REMAP)

struct uwatch {
	struct cache_itree_node node;	/* page-rounded range */
	uint64_t cookie;
	uint64_t id;
	uint32_t slot;
	uint32_t class;			/* of the firing event */
	uint64_t ev_start, ev_end;	/* fired sub-range */
	bool armed;			/* in the armed tree */
	bool queued;			/* in the fired queue */
	bool dead;			/* unwatched while queued */
	struct uwatch *next;		/* fired queue */
};

struct uffd_monitor {
	struct cache_monitor base;
	int uffd, evfd, stopfd;
	int pagemap;			/* /proc/self/pagemap, or -1 */
	unsigned int flags;
	bool user_only;
	uintptr_t psz;
	pthread_t reader;
	bool reader_started;
	pthread_mutex_t lock;
	struct cache_itree armed;
	uint64_t **chunks;		/* state words */
	struct uwatch ***owners;	/* slot -> live watch */
	size_t nchunks;
	uint32_t next_slot;
	uint32_t *free_slots;
	size_t nfree, free_cap;
	struct uwatch *fired, **fired_tail;
	uint64_t generation;
	uint64_t faults;
};

static struct uffd_monitor *um(struct cache_monitor *m)
{
	return (struct uffd_monitor *)m;
}

static uint64_t *state_of(struct uffd_monitor *u, uint32_t slot)
{
	return &u->chunks[slot / CHUNK_WORDS][slot % CHUNK_WORDS];
}

static struct uwatch **owner_of(struct uffd_monitor *u, uint32_t slot)
{
	return &u->owners[slot / CHUNK_WORDS][slot % CHUNK_WORDS];
}

/* A free slot, its chunk allocated. Lock held. */
static int slot_alloc(struct uffd_monitor *u, uint32_t *slot)
{
	size_t ci;

	if (u->nfree) {
		*slot = u->free_slots[--u->nfree];
		return 0;
	}
	ci = u->next_slot / CHUNK_WORDS;
	if (ci == u->nchunks) {
		uint64_t **c = realloc(u->chunks, (ci + 1) * sizeof(*c));
		struct uwatch ***o;

		if (!c)
			return -ENOMEM;
		u->chunks = c;
		o = realloc(u->owners, (ci + 1) * sizeof(*o));
		if (!o)
			return -ENOMEM;
		u->owners = o;
		c[ci] = aligned_alloc(64, CHUNK_WORDS * sizeof(uint64_t));
		o[ci] = calloc(CHUNK_WORDS, sizeof(struct uwatch *));
		if (!c[ci] || !o[ci]) {
			free(c[ci]);
			free(o[ci]);
			return -ENOMEM;
		}
		memset(c[ci], 0, CHUNK_WORDS * sizeof(uint64_t));
		u->nchunks++;
	}
	*slot = u->next_slot++;
	return 0;
}

static int slot_free(struct uffd_monitor *u, uint32_t slot)
{
	if (u->nfree == u->free_cap) {
		size_t cap = u->free_cap ? 2 * u->free_cap : 256;
		uint32_t *f = realloc(u->free_slots, cap * sizeof(*f));

		if (!f)
			return -ENOMEM;	/* the slot leaks; harmless */
		u->free_slots = f;
		u->free_cap = cap;
	}
	u->free_slots[u->nfree++] = slot;
	return 0;
}

static void uffd_range(int fd, unsigned long req, uintptr_t start, uintptr_t end)
{
	struct uffdio_range r = { .start = start, .len = end - start };

	if (end > start)
		(void)ioctl(fd, req, &r);	/* best effort: may be unmapped */
}

struct gap_arg {
	struct uffd_monitor *u;
	uintptr_t cursor;
};

static int gap_cb(struct cache_itree_node *n, void *arg)
{
	struct gap_arg *g = arg;

	if (n->start > g->cursor)
		uffd_range(g->u->uffd, UFFDIO_UNREGISTER, g->cursor, n->start);
	if (n->end > g->cursor)
		g->cursor = n->end;
	return 0;
}

/* Unregister the parts of [start, end) no armed watch covers. Lock held. */
static void unregister_gaps(struct uffd_monitor *u, uintptr_t start, uintptr_t end)
{
	struct gap_arg g = { u, start };

	cache_itree_visit(&u->armed, start, end, gap_cb, &g);
	if (g.cursor < end)
		uffd_range(u->uffd, UFFDIO_UNREGISTER, g.cursor, end);
}

static int first_cb(struct cache_itree_node *n, void *arg)
{
	*(struct cache_itree_node **)arg = n;
	return 1;
}

/* Fire every armed watch overlapping [start, end). Lock held. */
static int fire_range(struct uffd_monitor *u, uintptr_t start, uintptr_t end,
		      uint32_t class)
{
	struct cache_itree_node *n;
	int fired = 0;

	for (;;) {
		struct uwatch *w;
		uint64_t *st;

		n = NULL;
		cache_itree_visit(&u->armed, start, end, first_cb, &n);
		if (!n)
			break;
		w = (struct uwatch *)n;	/* node is the first member */
		st = state_of(u, w->slot);
		/* The state word first: from now on the watch is invalid. */
		__atomic_store_n(st, (w->id & ~0xffffffffULL) |
				 (1ULL << REGWATCH_STATE_COUNT_SHIFT) |
				 REGWATCH_STATE_FIRED, __ATOMIC_RELEASE);
		cache_itree_remove(&u->armed, n);
		w->armed = false;
		w->class = class;
		w->ev_start = start > n->start ? start : n->start;
		w->ev_end = end < n->end ? end : n->end;
		w->queued = true;
		w->next = NULL;
		*u->fired_tail = w;
		u->fired_tail = &w->next;
		unregister_gaps(u, n->start, n->end);
		fired++;
	}
	if (fired) {
		uint64_t one = 1;

		__atomic_fetch_add(&u->generation, 1, __ATOMIC_RELEASE);
		if (write(u->evfd, &one, sizeof(one)) < 0) {
			/* the counter cannot overflow in practice */
		}
	}
	return fired;
}

static void handle_fault(struct uffd_monitor *u, const struct uffd_msg *msg)
{
	uintptr_t a = msg->arg.pagefault.address & ~(u->psz - 1);
	struct uffdio_zeropage z = { .range = { .start = a, .len = u->psz } };

	__atomic_fetch_add(&u->faults, 1, __ATOMIC_RELAXED);
	if (ioctl(u->uffd, UFFDIO_ZEROPAGE, &z) < 0)
		/* EEXIST: another fault mapped it; EAGAIN/ENOENT: the
		 * mapping changed. Wake the faulter: it retries. */
		uffd_range(u->uffd, UFFDIO_WAKE, a, a + u->psz);
}

static void handle_msg(struct uffd_monitor *u, const struct uffd_msg *msg)
{
	switch (msg->event) {
	case UFFD_EVENT_PAGEFAULT:
		handle_fault(u, msg);
		return;
	case UFFD_EVENT_REMOVE:
	case UFFD_EVENT_UNMAP:
		pthread_mutex_lock(&u->lock);
		fire_range(u, msg->arg.remove.start, msg->arg.remove.end,
			   msg->event == UFFD_EVENT_REMOVE ?
			   REGWATCH_CLASS_CLEAR : REGWATCH_CLASS_UNMAP);
		pthread_mutex_unlock(&u->lock);
		return;
	case UFFD_EVENT_REMAP:
		pthread_mutex_lock(&u->lock);
		fire_range(u, msg->arg.remap.from,
			   msg->arg.remap.from + msg->arg.remap.len,
			   REGWATCH_CLASS_UNMAP);
		/* The registration moved with the pages: drop it at the
		 * destination unless a newer watch covers it. */
		unregister_gaps(u, msg->arg.remap.to,
				msg->arg.remap.to + msg->arg.remap.len);
		pthread_mutex_unlock(&u->lock);
		return;
	default:
		return;
	}
}

static void *reader_main(void *arg)
{
	struct uffd_monitor *u = arg;
	struct uffd_msg msgs[16];

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = u->uffd, .events = POLLIN },
			{ .fd = u->stopfd, .events = POLLIN },
		};
		ssize_t n;
		size_t i;

		if (poll(p, 2, -1) < 0)
			continue;	/* EINTR */
		if (p[1].revents)
			break;
		n = read(u->uffd, msgs, sizeof(msgs));
		if (n < 0)
			continue;	/* EAGAIN: another wake-up */
		for (i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
			handle_msg(u, &msgs[i]);
	}
	return NULL;
}

static int u_watch(struct cache_monitor *m, uintptr_t addr, size_t len,
		   uint64_t cookie, struct cache_watch *out)
{
	struct uffd_monitor *u = um(m);
	uintptr_t start = addr & ~(u->psz - 1);
	uintptr_t end = (addr + len + u->psz - 1) & ~(u->psz - 1);
	struct uffdio_register r = {
		.range = { .start = start, .len = end - start },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	struct uwatch *w;
	uint64_t gen;
	uint32_t slot;
	int rc;

	if (!len || end <= start)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	/* Present pages never fault into the reader (see top of file). */
	if (!(u->flags & CACHE_UFFD_NO_POPULATE) &&
	    madvise((void *)start, end - start, MADV_POPULATE_READ) &&
	    errno != EINVAL) {
		free(w);
		return -EFAULT;
	}
	/* Private anonymous memory only: shmem and file pages can change
	 * without an event (truncate, hole punch, other processes). */
	if (u->pagemap >= 0 &&
	    cache_pagemap_has_file_pages(u->pagemap, start, end) == 1) {
		free(w);
		return -EINVAL;
	}
	pthread_mutex_lock(&u->lock);
	rc = slot_alloc(u, &slot);
	if (rc)
		goto fail;
	if (ioctl(u->uffd, UFFDIO_REGISTER, &r) < 0) {
		rc = -errno;
		slot_free(u, slot);
		goto fail;
	}
	if (!(r.ioctls & (1ULL << _UFFDIO_ZEROPAGE))) {
		/* hugetlb: no zero page to answer its faults with */
		unregister_gaps(u, start, end);
		slot_free(u, slot);
		rc = -EINVAL;
		goto fail;
	}
	gen = (*state_of(u, slot) >> 32) + 1;
	if ((uint32_t)gen == 0)
		gen = 1;
	gen &= 0xffffffffULL;
	w->node.start = start;
	w->node.end = end;
	w->cookie = cookie;
	w->slot = slot;
	w->id = (gen << 32) | slot;
	w->armed = true;
	*owner_of(u, slot) = w;
	cache_itree_insert(&u->armed, &w->node);
	__atomic_store_n(state_of(u, slot), (gen << 32) | REGWATCH_STATE_ARMED,
			 __ATOMIC_RELEASE);
	out->state = state_of(u, slot);
	out->armed = (gen << 32) | REGWATCH_STATE_ARMED;
	out->id = w->id;
	pthread_mutex_unlock(&u->lock);
	return 0;

fail:
	pthread_mutex_unlock(&u->lock);
	free(w);
	return rc;
}

static int u_unwatch(struct cache_monitor *m, const struct cache_watch *cw)
{
	struct uffd_monitor *u = um(m);
	uint32_t slot = (uint32_t)cw->id;
	struct uwatch *w;

	pthread_mutex_lock(&u->lock);
	if (slot >= u->next_slot || !(w = *owner_of(u, slot)) || w->id != cw->id) {
		pthread_mutex_unlock(&u->lock);
		return -ENOENT;
	}
	if (w->armed) {
		cache_itree_remove(&u->armed, &w->node);
		w->armed = false;
		unregister_gaps(u, w->node.start, w->node.end);
	}
	__atomic_store_n(state_of(u, slot), w->id & ~0xffffffffULL,
			 __ATOMIC_RELEASE);	/* FREE, generation kept */
	*owner_of(u, slot) = NULL;
	slot_free(u, slot);
	if (w->queued)
		w->dead = true;	/* its event is still to be drained */
	else
		free(w);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

static int u_drain(struct cache_monitor *m, regwatch_event_cb cb, void *arg)
{
	struct uffd_monitor *u = um(m);
	struct uwatch *list, *w;
	uint64_t cnt;
	int n = 0, rc = 0;

	pthread_mutex_lock(&u->lock);
	if (read(u->evfd, &cnt, sizeof(cnt)) < 0) {
		/* EAGAIN: not signalled */
	}
	list = u->fired;
	u->fired = NULL;
	u->fired_tail = &u->fired;
	pthread_mutex_unlock(&u->lock);

	while ((w = list)) {
		struct regwatch_event ev = {
			.type = REGWATCH_EVENT_INVALIDATE,
			.class = w->class,
			.flags = REGWATCH_EVENT_ONESHOT,
			.watch_id = w->id,
			.cookie = w->cookie,
			.start = w->ev_start,
			.end = w->ev_end,
		};

		rc = cb(&ev, arg);
		if (rc < 0)
			break;
		list = w->next;
		n++;
		pthread_mutex_lock(&u->lock);
		w->queued = false;
		if (w->dead)
			free(w);
		pthread_mutex_unlock(&u->lock);
		if (rc > 0)
			break;
	}
	if (list) {
		/* Stopped early: put the rest back in front, signal again. */
		uint64_t one = 1;

		pthread_mutex_lock(&u->lock);
		for (w = list; w->next; w = w->next)
			;
		w->next = u->fired;
		if (!u->fired)
			u->fired_tail = &w->next;
		u->fired = list;
		if (write(u->evfd, &one, sizeof(one)) < 0) {
			/* cannot overflow in practice */
		}
		pthread_mutex_unlock(&u->lock);
	}
	return rc ? rc : n;
}

static int u_fd(struct cache_monitor *m)
{
	return um(m)->evfd;
}

static void free_all(struct uffd_monitor *u)
{
	struct uwatch *w, *next;
	size_t ci, i;

	for (w = u->fired; w; w = next) {
		next = w->next;
		if (w->dead)
			free(w);
	}
	for (ci = 0; ci < u->nchunks; ci++) {
		for (i = 0; i < CHUNK_WORDS; i++)
			free(u->owners[ci][i]);
		free(u->owners[ci]);
		free(u->chunks[ci]);
	}
	free(u->owners);
	free(u->chunks);
	free(u->free_slots);
}

static void u_destroy(struct cache_monitor *m, bool in_child)
{
	struct uffd_monitor *u = um(m);
	uint64_t one = 1;

	if (!in_child && u->reader_started) {
		if (write(u->stopfd, &one, sizeof(one)) == sizeof(one))
			pthread_join(u->reader, NULL);
	}
	/* Closing the fd unregisters every range and wakes any faulter. */
	close(u->uffd);
	close(u->evfd);
	close(u->stopfd);
	if (u->pagemap >= 0)
		close(u->pagemap);
	free_all(u);
	if (!in_child)
		pthread_mutex_destroy(&u->lock);
	free(u);
}

static const struct cache_monitor_ops uffd_ops = {
	.watch = u_watch,
	.unwatch = u_unwatch,
	.drain = u_drain,
	.fd = u_fd,
	.destroy = u_destroy,
};

static int uffd_create(unsigned int flags, bool *user_only)
{
#ifdef SYS_userfaultfd
	int base = O_CLOEXEC | O_NONBLOCK, fd = -1;

	*user_only = flags & CACHE_UFFD_USER_ONLY;
	if (!*user_only) {
		fd = (int)syscall(SYS_userfaultfd, base);
		if (fd >= 0 || errno != EPERM)
			return fd >= 0 ? fd : -errno;
		/* vm.unprivileged_userfaultfd=0: user faults only */
		*user_only = true;
	}
	fd = (int)syscall(SYS_userfaultfd, base | UFFD_USER_MODE_ONLY);
	return fd >= 0 ? fd : -errno;
#else
	(void)flags;
	*user_only = false;
	return -ENOSYS;
#endif
}

int cache_monitor_uffd_open(unsigned int flags, struct cache_monitor **out)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURES };
	struct uffd_monitor *u = calloc(1, sizeof(*u));
	sigset_t all, old;
	int rc;

	if (!u)
		return -ENOMEM;
	u->uffd = u->evfd = u->stopfd = -1;
	u->pagemap = cache_pagemap_open();	/* optional */
	u->flags = flags;
	u->psz = (uintptr_t)sysconf(_SC_PAGESIZE);
	u->fired_tail = &u->fired;
	cache_itree_init(&u->armed);
	pthread_mutex_init(&u->lock, NULL);
	rc = uffd_create(flags, &u->user_only);
	if (rc < 0)
		goto fail;
	u->uffd = rc;
	if (ioctl(u->uffd, UFFDIO_API, &api) < 0) {
		rc = -errno;
		goto fail;
	}
	if ((api.features & UFFD_FEATURES) != UFFD_FEATURES) {
		rc = -ENOTSUP;
		goto fail;
	}
	u->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	u->stopfd = eventfd(0, EFD_CLOEXEC);
	if (u->evfd < 0 || u->stopfd < 0) {
		rc = -errno;
		goto fail;
	}
	/* The reader takes no signals: they belong to the application. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&u->reader, NULL, reader_main, u);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		goto fail;
	u->reader_started = true;
	u->base.ops = &uffd_ops;
	u->base.name = "uffd";
	u->base.generation = &u->generation;
	*out = &u->base;
	return 0;

fail:
	if (u->uffd >= 0)
		close(u->uffd);
	if (u->evfd >= 0)
		close(u->evfd);
	if (u->stopfd >= 0)
		close(u->stopfd);
	if (u->pagemap >= 0)
		close(u->pagemap);
	pthread_mutex_destroy(&u->lock);
	free(u);
	return rc;
}

bool cache_monitor_uffd_user_mode_only(const struct cache_monitor *m)
{
	return ((const struct uffd_monitor *)m)->user_only;
}

uint64_t cache_monitor_uffd_faults(const struct cache_monitor *m)
{
	return __atomic_load_n(&((const struct uffd_monitor *)m)->faults,
			       __ATOMIC_RELAXED);
}
