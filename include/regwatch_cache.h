/* SPDX-License-Identifier: MIT */
/*
 * libregwatch registration cache.
 *
 * A cache hands out registrations (an ibv_mr, or whatever a backend
 * registers) of user memory, reuses them while the memory behind them is
 * unchanged, and never hands out one whose memory was unmapped, remapped,
 * dropped or migrated since it was registered: every entry carries a
 * monitor watch (the regwatch kernel module by default) and a hit checks
 * the watch's state word with one load. No malloc or munmap hooks.
 *
 *   struct regwatch_cache *c;
 *   struct regwatch_cache_entry *e;
 *   regwatch_cache_create(NULL, &backend, &c);
 *   regwatch_cache_get(c, buf, len, REGWATCH_CACHE_ACCESS_LOCAL_WRITE, &e);
 *   ... use regwatch_cache_entry_handle(e) / _info(e) for the transfer ...
 *   regwatch_cache_put(c, e);          (when the transfer has completed)
 *   regwatch_cache_destroy(c);
 *
 * Errors: functions return 0 (or a count) on success and a negative errno
 * on failure; errno itself is left alone.
 *
 * Threads: unless REGWATCH_CACHE_SINGLE_THREAD is set, every call but
 * regwatch_cache_destroy() may be made from any number of threads at
 * once. Hits take no lock (a hash probe, one atomic increment of the
 * entry's reference count, one load of the watch's state word); misses,
 * evictions and event processing take the cache's mutex. Backend
 * callbacks are never called with that mutex held, so a backend may call
 * back into the cache (but see "Backend" below). With
 * REGWATCH_CACHE_SINGLE_THREAD, the caller serialises all calls (the
 * userfaultfd monitor still runs its own reader thread internally).
 *
 * Invalidation: an entry whose watch fired is never returned again. If it
 * is still referenced (an operation in flight), it stays registered and
 * its handle stays usable by its holders until the last
 * regwatch_cache_put(), which deregisters it. Invalidations are
 * processed (entries removed, unreferenced ones deregistered):
 *  - on every miss and slow-path lookup;
 *  - on a hit, when the monitor's event counter moved (one load; kernel
 *    monitor: see regwatch_cache_fd() below) and the mutex is free;
 *  - in regwatch_cache_process_events(), which an event loop calls when
 *    regwatch_cache_fd() becomes readable.
 * Until then an invalidated, unreferenced entry keeps its registration
 * (and so the pinned pages) but is never returned. An event queue
 * overflow (REGWATCH_EVENT_RESYNC) makes the cache re-check every entry's
 * state word, so nothing is lost.
 *
 * Overlap policy (no merging): a miss registers exactly the requested
 * range rounded out to the alignment (pages by default), with the
 * requested access ORed with options.min_access. Existing entries that
 * overlap it are left alone; a request is a hit if any one valid entry
 * covers it entirely with at least the requested access. Entries are
 * never grown or merged: merging (UCX) saves registrations for growing
 * buffers but registers memory nobody asked for, can span holes that
 * fail to register, and must invalidate entries other threads hold.
 * Overlapping entries instead age out through the LRU. Set min_access to
 * the union of the access flags you use so that requests with different
 * access share entries.
 *
 * Limits: max_entries and max_bytes (registered bytes, including entries
 * invalidated but still referenced) are enforced after each miss by
 * evicting unreferenced entries in approximate LRU order (CLOCK: an
 * entry hit since the hand last passed survives one more round). When
 * every entry is referenced the cache goes over the limit (counted in
 * stats.over_limit) unless REGWATCH_CACHE_STRICT_LIMITS is set, in which
 * case the miss fails with -ENOSPC. A backend registration failing with
 * -ENOMEM or -EAGAIN (e.g. RLIMIT_MEMLOCK) makes the cache evict
 * unreferenced entries and retry once.
 *
 * fork: in a child, the cache inherited from the parent is unusable:
 * regwatch_cache_get(), process_events() and stats() return -ECHILD (hits
 * too: a pthread_atfork handler empties the child's lookup table so that
 * every lookup reaches the slow path, which checks; the hit path pays
 * nothing), regwatch_cache_put() does nothing, and regwatch_cache_destroy()
 * frees the child's memory without deregistering or unwatching anything
 * (those belong to the parent). The parent's cache keeps working.
 *
 * Backend: reg() and dereg() are called without the cache's mutex held,
 * from the thread calling get(), put(), process_events(), purge() or
 * destroy(). dereg() runs in put() when it drops the last reference of
 * an invalidated or evicted entry. A backend must not call
 * regwatch_cache_destroy() on its own cache.
 */
#ifndef REGWATCH_CACHE_H
#define REGWATCH_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "regwatch.h"

#ifdef __cplusplus
extern "C" {
#endif

struct regwatch_cache;
struct regwatch_cache_entry;

/*
 * Access bits. The cache treats access as an opaque bit mask (a hit needs
 * every requested bit); these are the portable names, which the ibverbs
 * backend maps to IBV_ACCESS_*. Bits 16..31 are free for other backends.
 */
#define REGWATCH_CACHE_ACCESS_LOCAL_WRITE	(1u << 0)
#define REGWATCH_CACHE_ACCESS_REMOTE_READ	(1u << 1)
#define REGWATCH_CACHE_ACCESS_REMOTE_WRITE	(1u << 2)
#define REGWATCH_CACHE_ACCESS_REMOTE_ATOMIC	(1u << 3)
#define REGWATCH_CACHE_ACCESS_RELAXED_ORDERING	(1u << 4)

/* What a backend returns besides its handle (e.g. lkey/rkey). */
struct regwatch_cache_reg_info {
	uint64_t local_key;
	uint64_t remote_key;
};

/*
 * The backend: how to register and deregister memory.
 *  reg:   register [addr, addr + len) with at least `access`; store an
 *         opaque handle in *handle and, optionally, keys in *info (zeroed
 *         before the call). Return 0 or a negative errno (returned by
 *         regwatch_cache_get()).
 *  dereg: release a handle reg() returned. Return 0 or a negative errno
 *         (counted in stats.dereg_failures; the entry is dropped anyway).
 * Both may be called from several threads at once unless the cache is
 * REGWATCH_CACHE_SINGLE_THREAD. ctx is passed through.
 */
struct regwatch_cache_backend {
	int (*reg)(void *ctx, void *addr, size_t len, uint32_t access,
		   void **handle, struct regwatch_cache_reg_info *info);
	int (*dereg)(void *ctx, void *handle);
	void *ctx;
};

/* Which monitor detects invalidations. */
enum regwatch_cache_monitor {
	/* REGWATCH_MONITOR from the environment if set, else kernel if
	 * /dev/regwatch can be opened, else uffd. */
	REGWATCH_CACHE_MONITOR_AUTO = 0,
	REGWATCH_CACHE_MONITOR_KERNEL,	/* regwatch.ko (always correct) */
	/*
	 * userfaultfd fallback. Sees, for private anonymous memory only:
	 * munmap, mremap (move, shrink), mmap(MAP_FIXED) over a watched
	 * range, brk shrink (UFFD_EVENT_UNMAP / REMAP), and
	 * madvise(DONTNEED, FREE, REMOVE) (UFFD_EVENT_REMOVE). Does NOT see:
	 * page migration (move_pages, NUMA balancing, compaction), swap-out
	 * and MADV_PAGEOUT, KSM merging, THP split/collapse, COW after fork
	 * (all harmless for memory a backend pins, since the kernel skips or
	 * keeps pinned pages, but not for non-pinning backends), changes
	 * made by other processes (process_madvise), and nothing at all for
	 * shared, shmem, file-backed or hugetlb memory: watching such memory
	 * fails and get() returns -EINVAL. Other limits: the window in which the
	 * unmapping thread is already woken but the reader thread has not
	 * yet marked the watch (microseconds; an event loop that waits
	 * for regwatch_cache_fd() before reusing memory does not see it);
	 * each watch splits a VMA (vm.max_map_count); a range
	 * registered with another userfaultfd (EBUSY) cannot be watched.
	 * Unprivileged (vm.unprivileged_userfaultfd=0) it runs with
	 * UFFD_USER_MODE_ONLY; then a kernel access (a syscall, a GUP) to a
	 * not-present page in a watched range fails with EFAULT instead of
	 * being resolved, which the monitor avoids by populating watched
	 * ranges first and unregistering a range as soon as it is dropped.
	 */
	REGWATCH_CACHE_MONITOR_UFFD,
	/* Never invalidates: for benchmark baselines and to show that tests
	 * bite. Prints a warning to stderr once per process. */
	REGWATCH_CACHE_MONITOR_NONE,
};

/* Option flags */
#define REGWATCH_CACHE_SINGLE_THREAD	(1u << 0)	/* caller serialises */
#define REGWATCH_CACHE_STRICT_LIMITS	(1u << 1)	/* -ENOSPC over limit */
/*
 * Tell CLEAR invalidations of unchanged memory (stats.clear_unchanged):
 * fingerprint the physical pages of each registration from
 * /proc/self/pagemap on a miss and again when a CLEAR invalidates it.
 * Costs a pagemap read per miss; page frame numbers are only visible with
 * CAP_SYS_ADMIN (otherwise counted in stats.clear_unknown).
 */
#define REGWATCH_CACHE_VERIFY_CLEAR	(1u << 2)

struct regwatch_cache_options {
	size_t max_entries;	/* 0: no limit but the monitor's watches */
	size_t max_bytes;	/* registered bytes; 0: no limit */
	size_t alignment;	/* power of two to round ranges out to;
				 * 0: the page size; 1: no rounding */
	uint32_t min_access;	/* ORed into every registration's access */
	uint32_t flags;		/* REGWATCH_CACHE_* option flags */
	enum regwatch_cache_monitor monitor;
	/*
	 * Kernel monitor: ring size and watch slots. NULL sizes the monitor
	 * for max_entries (16383 when 0, at most 2^20 - 1). Each cached
	 * entry holds one one-shot watch, which keeps one ring entry
	 * reserved, so the cache holds at most min(max_watches,
	 * ring_entries - 1) entries; past that, get() evicts the least
	 * recently used unreferenced entry (-ENOSPC if all are in use).
	 */
	const struct regwatch_options *monitor_options;
};

/*
 * Create a cache. opts may be NULL (defaults: no limits, page alignment,
 * thread-safe, monitor AUTO). backend is copied.
 * Errors: -EINVAL (bad options, a backend without reg/dereg, an unknown
 * REGWATCH_MONITOR value), -ENOENT (monitor KERNEL but the module is not
 * loaded), -EPERM/-ENOSYS (no userfaultfd), -ENOMEM, or what opening the
 * monitor returned.
 */
int regwatch_cache_create(const struct regwatch_cache_options *opts,
			  const struct regwatch_cache_backend *backend,
			  struct regwatch_cache **out);

/*
 * Deregister and unwatch everything, close the monitor, free the cache.
 * Entries still referenced are deregistered too (their handles become
 * invalid): put every entry first. Must not run concurrently with any
 * other call on the cache. NULL is a no-op. In a forked child, only frees
 * memory (see fork above).
 */
void regwatch_cache_destroy(struct regwatch_cache *c);

/*
 * Return in *out a referenced entry whose registration covers
 * [addr, addr + len) with at least `access`. A hit costs a lookup plus one
 * load of the entry's watch state; a miss watches the rounded range first,
 * registers it second, then re-checks the watch and retries (at most 8
 * times) if it fired meanwhile, so an unmap racing with the registration
 * is never missed.
 * Errors: -EINVAL (len 0, or memory the monitor cannot watch), -EFAULT
 * (uffd monitor: the range is not mapped), -EOVERFLOW (the range wraps),
 * -ECHILD (in a forked child), -EAGAIN (the memory
 * kept changing during 8 registration attempts), -ENOSPC (strict limits,
 * or the monitor is out of watches and nothing can be evicted),
 * -ENOMEM, or the backend's reg() error.
 */
int regwatch_cache_get(struct regwatch_cache *c, const void *addr, size_t len,
		       uint32_t access, struct regwatch_cache_entry **out);

/*
 * Drop a reference taken by regwatch_cache_get(). Deregisters the entry if
 * it was invalidated or evicted and this was its last reference. In a
 * forked child, does nothing.
 */
void regwatch_cache_put(struct regwatch_cache *c, struct regwatch_cache_entry *e);

/* Accessors: valid while the caller holds the reference. */
void *regwatch_cache_entry_handle(const struct regwatch_cache_entry *e);
const struct regwatch_cache_reg_info *
regwatch_cache_entry_info(const struct regwatch_cache_entry *e);
/* The registered range (the rounded request of the miss that made it). */
void *regwatch_cache_entry_addr(const struct regwatch_cache_entry *e);
size_t regwatch_cache_entry_len(const struct regwatch_cache_entry *e);
uint32_t regwatch_cache_entry_access(const struct regwatch_cache_entry *e);

/*
 * Process pending invalidations now: remove fired entries, deregister
 * unreferenced ones. Returns the number of entries invalidated, or
 * -ECHILD. Call it when regwatch_cache_fd() is readable, or periodically.
 */
int regwatch_cache_process_events(struct regwatch_cache *c);

/*
 * A file descriptor that poll/epoll report readable (EPOLLIN) while
 * invalidations are pending; call regwatch_cache_process_events() then.
 * Owned by the cache: do not close or read it. -ENOTSUP for the none
 * monitor.
 */
int regwatch_cache_fd(const struct regwatch_cache *c);

/* Evict (and deregister) every unreferenced entry. Returns how many. */
int regwatch_cache_purge(struct regwatch_cache *c);

/* The monitor in use: "kernel", "uffd", "none" (or a test fake's name). */
const char *regwatch_cache_monitor_name(const struct regwatch_cache *c);

struct regwatch_cache_stats {
	uint64_t hits;			/* gets served from the cache */
	uint64_t slow_hits;		/* of which found by the ordered
					 * index (not the hash) */
	uint64_t misses;		/* gets that registered */
	uint64_t retries;		/* registrations redone because the
					 * watch fired during reg() */
	uint64_t reg_failures;		/* reg() errors returned */
	uint64_t dereg_failures;	/* dereg() errors */
	uint64_t invalidations;		/* entries invalidated by events */
	uint64_t by_class[8];		/* ... per REGWATCH_CLASS_* bit
					 * (index = bit number) */
	uint64_t resyncs;		/* RESYNC events (queue overflow) */
	uint64_t resync_invalidations;	/* entries found fired by a resync */
	uint64_t clear_unchanged;	/* CLEAR of memory whose pages were
					 * in fact unchanged (VERIFY_CLEAR) */
	uint64_t clear_changed;		/* CLEAR of memory that changed */
	uint64_t clear_unknown;		/* CLEAR that could not be told */
	uint64_t evictions;		/* entries evicted (LRU, purge) */
	uint64_t deferred_deregs;	/* entries deregistered by the last
					 * put() after their removal */
	uint64_t over_limit;		/* misses that left the cache over a
					 * limit (everything referenced) */
	uint64_t entries;		/* entries in the cache now */
	uint64_t registered;		/* registrations alive now (entries
					 * plus removed, still referenced) */
	uint64_t registered_bytes;	/* their bytes */
	uint64_t background;		/* invalidations the kernel made on
					 * its own: reclaim, compaction, KSM
					 * (REGWATCH_EVENT_BACKGROUND) */
};

/* Snapshot of the counters. -ECHILD in a forked child. */
int regwatch_cache_stats(struct regwatch_cache *c, struct regwatch_cache_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* REGWATCH_CACHE_H */
