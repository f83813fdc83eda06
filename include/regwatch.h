/* SPDX-License-Identifier: MIT */
/*
 * libregwatch: the monitor API over /dev/regwatch.
 *
 * A struct regwatch is one monitor: an open /dev/regwatch fd bound to the
 * calling process's address space, with its shared ring and state words
 * mapped. Calls return 0 (or a count) on success and a negative errno on
 * failure, like liburing; errno itself is left alone.
 *
 * Threads: regwatch_watch/unwatch/watchv/unwatchv/set_eventfd/stats may be
 * called from any thread at once (each is one ioctl). regwatch_ref_valid()
 * and regwatch_changed() are lock-free loads, callable anywhere, including
 * signal handlers. regwatch_drain() consumes the event ring: call it from
 * one thread at a time (and not while another thread read(2)s the fd);
 * regwatch_drain_shared() may run in many threads and handlers at once.
 * NULL handles or pointers give -EINVAL (false, 0 or NULL where the
 * function returns no error).
 *
 * fork: the child must not use a monitor inherited from its parent; every
 * call there fails with -EIO (the kernel checks the caller's mm) and the
 * shared mappings are not inherited at all. The parent is unaffected.
 */
#ifndef REGWATCH_H
#define REGWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uapi/regwatch.h"

#ifdef __cplusplus
extern "C" {
#endif

struct regwatch;

/* Options for regwatch_open(); a NULL pointer or zero fields take the
 * module's defaults. */
struct regwatch_options {
	unsigned int ring_entries;	/* event ring size (rounded up to 2^n) */
	unsigned int max_watches;	/* state-word slots */
	const char *device;		/* default REGWATCH_DEVICE */
};

/*
 * A watch as userspace holds it. state points into the read-only shared
 * mapping; the watch is valid exactly while *state == armed_state.
 */
struct regwatch_ref {
	const uint64_t *state;
	uint64_t armed_state;
	uint64_t id;
};

/*
 * Open and configure a monitor. -ENOENT when the module is not loaded
 * (-ENXIO/-ENODEV for a stale device node), -EPROTO when the kernel
 * speaks another ABI or describes a layout this library cannot use.
 */
int regwatch_open(const struct regwatch_options *opts, struct regwatch **out);

/* Unmap, close, free. Watches die with the monitor. NULL is a no-op. */
void regwatch_close(struct regwatch *rw);

/* The negotiated configuration (ring size, max watches, features). */
const struct regwatch_config *regwatch_config(const struct regwatch *rw);

/*
 * Watch [addr, addr + len) (rounded out to pages). flags: REGWATCH_WATCH_*.
 * Errors are those of REGWATCH_IOC_WATCH in uapi/regwatch.h. On success
 * *ref is filled; it is valid at once unless an invalidation has since hit
 * the range. Order for a registration cache: watch, register, then check
 * regwatch_ref_valid() and retry if it already fired.
 */
int regwatch_watch(struct regwatch *rw, const void *addr, size_t len,
		   uint64_t cookie, unsigned int flags,
		   struct regwatch_ref *ref);

/* Remove a watch. -ENOENT if it is not a live watch of this monitor. */
int regwatch_unwatch(struct regwatch *rw, const struct regwatch_ref *ref);

/*
 * Batch forms. reqs[i].addr/len/cookie/flags in; reqs[i].result, watch_id
 * and armed_state out. Each entry succeeds or fails on its own; the return
 * value is the number that succeeded (or -errno if the call failed as a
 * whole, in which case no entry took effect). regwatch_ref_from() turns a
 * successful entry into a ref; for a failed entry it gives a ref that is
 * never valid.
 */
int regwatch_watchv(struct regwatch *rw, struct regwatch_watch *reqs,
		    unsigned int count);
int regwatch_unwatchv(struct regwatch *rw, struct regwatch_unwatch *reqs,
		      unsigned int count);
void regwatch_ref_from(const struct regwatch *rw,
		       const struct regwatch_watch *req,
		       struct regwatch_ref *ref);

/* One load: true while the watch has not been invalidated or removed. */
static inline bool regwatch_ref_valid(const struct regwatch_ref *ref)
{
	return __atomic_load_n(ref->state, __ATOMIC_ACQUIRE) ==
	       ref->armed_state;
}

/*
 * One load: true if any watch fired since *seen was last updated; *seen
 * is updated to the current generation. Start with *seen = 0.
 */
bool regwatch_changed(struct regwatch *rw, uint64_t *seen);

/*
 * Consume every queued event, calling cb for each (in order). No system
 * call. Returns the number of events consumed if cb always returned 0.
 * A positive return from cb stops the drain after consuming that event
 * and is returned; a negative one stops it without consuming that event
 * and is returned. -EPROTO if the consumer head was corrupted.
 */
typedef int (*regwatch_event_cb)(const struct regwatch_event *ev, void *arg);
int regwatch_drain(struct regwatch *rw, regwatch_event_cb cb, void *arg);

/*
 * regwatch_drain() for several concurrent drainers, e.g. the signal
 * handlers of several threads (see regwatch_set_signal()): lock-free,
 * async-signal-safe (atomics only, errno untouched), no system call.
 * It passes events [head, producer) to cb and then moves the shared head
 * forward (never back), only after its callbacks returned. Guarantee:
 * when it returns, every event queued before it started has been passed
 * to a callback, by this call or by another drainer that has finished
 * with it; two drainers may both pass the same event (duplicates are
 * harmless for invalidations), none is skipped. An entry whose slot the
 * kernel may already be reusing is detected and never passed on. A
 * RESYNC is passed to cb as is. Stop rules and -EPROTO as for
 * regwatch_drain(); returns the number of events passed to cb. Once any
 * thread uses it, use only it (not regwatch_drain() or read(2)) on that
 * monitor.
 */
int regwatch_drain_shared(struct regwatch *rw, regwatch_event_cb cb,
			  void *arg);

/* Events queued and not consumed yet. */
uint64_t regwatch_pending(const struct regwatch *rw);

/*
 * The monitor's fd: poll/epoll report EPOLLIN while events are pending.
 * Do not close it; regwatch_close() does.
 */
int regwatch_fd(const struct regwatch *rw);

/* Signal eventfd efd (-1 to stop) whenever events are queued. */
int regwatch_set_eventfd(struct regwatch *rw, int efd);

/*
 * Synchronous delivery (REGWATCH_IOC_SET_SIGNAL in uapi/regwatch.h): when
 * a thread of this process invalidates watched memory itself (munmap,
 * mremap, madvise, mmap(MAP_FIXED), brk...), signo is queued to that
 * thread, so a handler that calls regwatch_drain_shared() runs before the
 * call returns to its caller. Other contexts (reclaim, other processes,
 * kernel threads) only get the ring, eventfd and poll. 0 turns it off;
 * once this returns, no new signal of the old number is sent. Install
 * the handler (SA_SIGINFO; SA_RESTART advised) before calling this.
 * While a thread blocks signo, its handler runs only when it unblocks it.
 * -EINVAL for SIGKILL, SIGSTOP or a number out of range; -EOPNOTSUPP if
 * the kernel lacks REGWATCH_FEAT_SIGNAL.
 */
int regwatch_set_signal(struct regwatch *rw, int signo);

/* Counters of this monitor and of the module (see struct regwatch_stats). */
int regwatch_stats(struct regwatch *rw, struct regwatch_stats *st);

/* Human-readable name of one REGWATCH_CLASS_* bit ("unmap", "clear"...). */
const char *regwatch_class_name(uint32_t class_bit);

#ifdef __cplusplus
}
#endif

#endif /* REGWATCH_H */
