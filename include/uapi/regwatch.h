/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * regwatch: user-space ABI of /dev/regwatch (ABI version 1).
 *
 * An open file is a *monitor* bound to the opener's address space (mm).
 * The monitor watches virtual address ranges with MMU interval notifiers
 * and reports every invalidation that makes a watched range stale, three
 * ways that always agree:
 *
 *  1. a per-watch 64-bit state word in a read-only shared mapping, written
 *     before the invalidating system call returns (one load to validate);
 *  2. an event ring in the same mapping, consumed without a system call
 *     (the consumer index lives in a small user-writable page), plus a
 *     global generation counter that says "nothing changed" in one load;
 *  3. an eventfd registered with REGWATCH_IOC_SET_EVENTFD, and poll/epoll
 *     readiness on the regwatch fd itself.
 *
 * Every ioctl, mmap and read from a process whose mm is not the opener's
 * (a forked child, a receiver of the fd) fails with EIO.
 *
 * All structures use fixed-size fields, natural alignment, explicit padding
 * and sizes that are multiples of 8 bytes. Reserved fields, padding and
 * unknown flags must be zero (EINVAL otherwise) so that later versions can
 * give them meaning. REGWATCH_IOC_CONFIG and REGWATCH_IOC_STATS carry their
 * own size (at most one page, E2BIG otherwise). CONFIG: a shorter (older)
 * struct is zero-extended, a longer one must have a zero tail (E2BIG
 * otherwise). STATS: a shorter struct gets the fields that fit, a longer
 * one gets zeros past the fields this kernel knows.
 */
#ifndef _UAPI_REGWATCH_H
#define _UAPI_REGWATCH_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define REGWATCH_ABI_VERSION	1
#define REGWATCH_DEVICE		"/dev/regwatch"

/* Feature bits reported by REGWATCH_IOC_CONFIG. */
#define REGWATCH_FEAT_ONESHOT		(1ULL << 0)
#define REGWATCH_FEAT_STREAMING		(1ULL << 1)
#define REGWATCH_FEAT_EVENTFD		(1ULL << 2)
#define REGWATCH_FEAT_BATCH		(1ULL << 3)
#define REGWATCH_FEAT_READ		(1ULL << 4)
#define REGWATCH_FEAT_SIGNAL		(1ULL << 5)
#define REGWATCH_FEAT_BACKGROUND	(1ULL << 6)	/* EVENT_BACKGROUND */

/*
 * Invalidation classes. The kernel's MMU notifier event types map onto
 * them as follows (docs/design.md has the measured table):
 *   UNMAP      MMU_NOTIFY_UNMAP: munmap, mremap, mmap(MAP_FIXED) over the
 *              range, brk shrink, shmdt.
 *   CLEAR      MMU_NOTIFY_CLEAR, MIGRATE, EXCLUSIVE: madvise(DONTNEED, FREE,
 *              REMOVE, PAGEOUT), truncate, hole punch, reclaim, NUMA and
 *              move_pages migration, THP split and collapse, KSM merge.
 *              For pinned memory a CLEAR is sometimes a false alarm (the
 *              kernel tried to migrate or merge a pinned page and gave up,
 *              or split a THP and kept the pages), and so is reclaim of a
 *              page written again after MADV_FREE (unmapped, then mapped
 *              back); it is reported anyway.
 *   RELEASE    MMU_NOTIFY_RELEASE: the address space is being torn down.
 *   PROTECTION MMU_NOTIFY_PROTECTION_VMA and _PAGE: mprotect, fork's
 *              write-protect, writeback. Only with REGWATCH_WATCH_PROTECTION.
 *   SOFT_DIRTY MMU_NOTIFY_SOFT_DIRTY. Only with REGWATCH_WATCH_SOFT_DIRTY.
 */
#define REGWATCH_CLASS_UNMAP		(1U << 0)
#define REGWATCH_CLASS_CLEAR		(1U << 1)
#define REGWATCH_CLASS_RELEASE		(1U << 2)
#define REGWATCH_CLASS_PROTECTION	(1U << 3)
#define REGWATCH_CLASS_SOFT_DIRTY	(1U << 4)
#define REGWATCH_NR_CLASSES		5

/* ----------------------------------------------------------------------
 * REGWATCH_IOC_CONFIG: the handshake. Must come first on a new fd (every
 * other ioctl but STATS fails with EBADFD before it) and succeeds once
 * (EBUSY after). EPROTO: abi_version is not one this kernel speaks.
 * EINVAL: flags or reserved fields set, or a size above the module's cap
 * (module parameters max_ring_entries, max_watches_limit).
 */
struct regwatch_config {
	__u32 size;		/* in: sizeof(struct regwatch_config) */
	__u32 abi_version;	/* in: REGWATCH_ABI_VERSION; out: kernel's */
	__u32 ring_entries;	/* in: wanted (0: module default), rounded up
				 * to a power of two, at least 8; out: actual */
	__u32 max_watches;	/* in: wanted (0: module default); out: actual */
	__u64 flags;		/* in: must be 0 */
	__u64 features;		/* out: REGWATCH_FEAT_* */
	/*
	 * out: how to mmap the shared areas: MAP_SHARED, exactly this
	 * offset and length (EINVAL otherwise); the first PROT_READ only.
	 */
	__u64 shared_offset;	/* read-only: header, event ring, state words */
	__u64 shared_size;
	__u64 consumer_offset;	/* read-write: struct regwatch_consumer */
	__u64 consumer_size;
	__u64 reserved[4];	/* must be 0 */
};

/*
 * The read-only shared area starts with this header; the ring and the
 * state-word array follow at the offsets it gives.
 *
 * Producer/consumer protocol (single producer: the kernel):
 *   kernel: write ring[prod & (ring_entries - 1)];
 *           smp_store_release(&hdr->producer, prod + 1);
 *   user:   p = load_acquire(&hdr->producer);
 *           read ring[c & mask] for c in [consumer, p);
 *           store_release(&consumer_page->head, p);
 * The kernel reads the consumer index with smp_load_acquire() and never
 * trusts it: a value outside [last accepted head, producer] is ignored.
 *
 * generation is incremented (after the state word and ring entry are
 * written) for every invalidation that fires a watch, so comparing it with
 * a remembered value tells "nothing changed" with one load.
 */
struct regwatch_shared_header {
	__u32 abi_version;
	__u32 header_size;	/* sizeof(struct regwatch_shared_header) */
	__u32 ring_entries;	/* power of two */
	__u32 event_size;	/* sizeof(struct regwatch_event) */
	__u64 ring_offset;	/* bytes from the start of the shared area */
	__u64 states_offset;	/* bytes from the start of the shared area */
	__u32 max_watches;	/* entries in the state-word array */
	__u32 pad0;
	__u64 reserved0[3];
	/* kernel-written, on their own cache line */
	__u64 producer;		/* events ever queued; ring index = & mask */
	__u64 generation;	/* bumped for every delivered invalidation */
	__u64 overflows;	/* streaming events replaced by a RESYNC */
	__u64 reserved1[5];
};

/* The user-writable consumer page. */
struct regwatch_consumer {
	__u64 head;		/* events consumed; written by the user */
	__u64 reserved[7];
};

/* Event types. */
#define REGWATCH_EVENT_INVALIDATE	1
/*
 * RESYNC: the ring was full and at least one streaming event was lost:
 * treat every streaming watch's whole range as invalidated. One-shot
 * watches never lose events (their slot is reserved, see WATCH).
 */
#define REGWATCH_EVENT_RESYNC		2

/* Event flags. */
#define REGWATCH_EVENT_ONESHOT		(1U << 0)	/* from a one-shot watch */
#define REGWATCH_EVENT_NONBLOCK		(1U << 1)	/* from a non-blockable
							 * range (OOM reaper) */
/* The invalidating thread is signalled (REGWATCH_IOC_SET_SIGNAL). */
#define REGWATCH_EVENT_SYNC		(1U << 2)
/*
 * The kernel did it on its own, not a call or fault of a thread of the
 * watching process: the callback ran in a kernel thread (kswapd,
 * kcompactd, khugepaged, ksmd, the OOM reaper), an io_uring worker or
 * another process, or inside memory reclaim or compaction (PF_MEMALLOC:
 * also the direct reclaim of this process's own allocations, and its
 * MADV_PAGEOUT). Informational: the range is as stale as any other.
 */
#define REGWATCH_EVENT_BACKGROUND	(1U << 3)

struct regwatch_event {
	__u32 type;		/* REGWATCH_EVENT_* */
	__u32 class;		/* one REGWATCH_CLASS_* bit */
	__u32 flags;		/* REGWATCH_EVENT_* flags */
	__u32 pad;
	__u64 watch_id;		/* as returned by WATCH; 0 for RESYNC */
	__u64 cookie;		/* as given to WATCH */
	__u64 start;		/* invalidated sub-range, clipped to the */
	__u64 end;		/* watched (page-rounded) range; exclusive */
};

/*
 * State words. The shared area holds max_watches __u64 words; watch ids
 * encode the slot and a per-slot generation:
 *     watch_id   = (generation << 32) | slot         (never 0)
 *     state word = (generation << 32) | (count << 2) | state
 * where state is FREE, ARMED or FIRED and count counts the invalidations
 * delivered to the watch (modulo 2^30). WATCH returns the word's value at
 * creation (armed_state): a one-shot watch is valid exactly while
 * state_word == armed_state. A streaming watch stays ARMED and its count
 * moves on with every invalidation. A reused slot has a new generation, so
 * a stale id or remembered value never matches another watch (no ABA).
 */
#define REGWATCH_STATE_FREE		0
#define REGWATCH_STATE_ARMED		1
#define REGWATCH_STATE_FIRED		2
#define REGWATCH_STATE_MASK		3
#define REGWATCH_STATE_COUNT_SHIFT	2
#define REGWATCH_ID_SLOT(id)		((__u32)(id))
#define REGWATCH_ID_GEN(id)		((__u32)((id) >> 32))

/* ----------------------------------------------------------------------
 * REGWATCH_IOC_WATCH: watch [addr, addr + len), rounded out to pages.
 *
 * A one-shot watch (default) fires once; later invalidations are
 * coalesced into that one event. It keeps one ring entry reserved from
 * WATCH until its event has been consumed (UNWATCH before consumption
 * does not release it), so one-shot events can never overflow.
 * A streaming watch (REGWATCH_WATCH_STREAMING) reports every invalidation
 * with its exact sub-range, while the ring has room; see RESYNC.
 *
 * WATCH returns only after any invalidation already running in the
 * address space has finished, so memory registered after WATCH returns
 * can only be stale if a later invalidation fires the watch.
 *
 * Errors (nothing changes on error):
 *   EINVAL     len == 0, unknown flags, non-zero reserved fields
 *   EOVERFLOW  addr + len wraps around
 *   EFAULT     the range reaches beyond the user address space
 *   ENOSPC     this monitor has max_watches watches
 *   EDQUOT     the user has max_user_watches watches (module parameter)
 *   ENOBUFS    no ring entry left to reserve for a one-shot watch:
 *              consume events first
 *   ENOMEM     out of memory
 */
#define REGWATCH_WATCH_STREAMING	(1U << 0)
#define REGWATCH_WATCH_PROTECTION	(1U << 1)	/* also fire on PROTECTION */
#define REGWATCH_WATCH_SOFT_DIRTY	(1U << 2)	/* also fire on SOFT_DIRTY */
#define REGWATCH_WATCH_FLAGS		(REGWATCH_WATCH_STREAMING | \
					 REGWATCH_WATCH_PROTECTION | \
					 REGWATCH_WATCH_SOFT_DIRTY)

struct regwatch_watch {
	__u64 addr;		/* in */
	__u64 len;		/* in */
	__u64 cookie;		/* in: returned in events */
	__u32 flags;		/* in: REGWATCH_WATCH_* */
	__s32 result;		/* out, batch only: 0 or -errno */
	__u64 watch_id;		/* out */
	__u64 armed_state;	/* out: state word while the watch is valid */
	__u64 reserved[2];	/* must be 0 */
};

/*
 * REGWATCH_IOC_UNWATCH: remove a watch. ENOENT for an id that is not a
 * live watch of this monitor (never removes another watch, whatever the
 * slot). A one-shot watch that fired keeps its ring reservation until its
 * event is consumed.
 */
struct regwatch_unwatch {
	__u64 watch_id;		/* in */
	__s32 result;		/* out, batch only: 0 or -errno */
	__u32 pad;		/* must be 0 */
};

/*
 * REGWATCH_IOC_WATCHV / REGWATCH_IOC_UNWATCHV: many watches or unwatches
 * in one call. Every entry is processed on its own and gets its own
 * result (0 or -errno, as for the single form); the ioctl returns the
 * number of entries that succeeded. If the results cannot be copied back
 * (EFAULT), every watch the call created is removed again, so the batch
 * never half-succeeds silently.
 */
#define REGWATCH_BATCH_MAX	4096

struct regwatch_batch {
	__u64 entries;		/* user pointer to an array of regwatch_watch
				 * (WATCHV) or regwatch_unwatch (UNWATCHV) */
	__u32 count;		/* 1 .. REGWATCH_BATCH_MAX */
	__u32 flags;		/* must be 0 */
};

/* REGWATCH_IOC_SET_EVENTFD: signal this eventfd (-1: none) on events. */
struct regwatch_eventfd {
	__s32 fd;
	__u32 flags;		/* must be 0 */
};

/*
 * REGWATCH_IOC_STATS: this monitor's counters and, in the module_* fields,
 * module-wide ones (all monitors of all processes), for leak checks.
 * Works before CONFIG too (the monitor's own counters are then zero).
 */
struct regwatch_stats {
	__u32 size;		/* in: sizeof(struct regwatch_stats) */
	__u32 pad;		/* must be 0 */
	__u64 watches;			/* live watches */
	__u64 oneshot_reserved;		/* ring entries reserved */
	__u64 events;			/* events queued (incl. RESYNC) */
	__u64 coalesced;		/* invalidations merged into a pending
					 * one-shot event */
	__u64 overflows;		/* streaming events lost -> RESYNC */
	__u64 resyncs;			/* RESYNC events queued */
	__u64 nonblock_invalidations;	/* from non-blockable ranges */
	__u64 invalidations;		/* notifier callbacks on watches */
	__u64 filtered;			/* callbacks ignored by class */
	__u64 by_class[8];		/* callbacks that fired, per class bit */
	__u64 module_monitors;		/* open monitors, module-wide */
	__u64 module_watches;		/* live watches, module-wide */
	__u64 module_pages;		/* shared pages allocated */
	__u64 user_watches;		/* this user's watches, all monitors */
	__u64 signals;			/* signals queued (SET_SIGNAL) */
	__u64 reserved[7];
};

/*
 * REGWATCH_IOC_SET_SIGNAL: synchronous delivery to the invalidating thread.
 *
 * With signo != 0, every notifier callback that fires a watch of this
 * monitor (queues an event, or coalesces into a one-shot event) while
 * running in a user thread of the process that opened the monitor queues
 * signo to that thread (thread-directed, si_code SI_KERNEL), after the
 * state word and the ring entry are written. The handler therefore runs
 * before the invalidating system call (munmap, mremap, madvise,
 * mmap(MAP_FIXED), brk, shmdt...) or page fault returns to its caller;
 * such events carry REGWATCH_EVENT_SYNC. Invalidations from any other
 * context (kernel threads: reclaim, compaction, KSM, khugepaged, the OOM
 * reaper; io_uring workers; other processes, including vfork children
 * that share the mm; the teardown of the mm) are only delivered
 * asynchronously (ring, eventfd, poll). A signal that is already pending
 * on the thread is not queued again, and standard signals coalesce: the
 * handler must drain the whole ring. A blocked signal stays pending until
 * the thread unblocks it. After SET_SIGNAL returns, no callback sends the
 * previous signal any more (one already queued stays pending).
 * Install the handler first: the default action of most signals kills.
 *
 * Errors: EINVAL (signo negative, above _NSIG, SIGKILL or SIGSTOP; flags
 * or reserved set), EBADFD (before CONFIG), EIO (caller not in the mm).
 */
struct regwatch_signal {
	__s32 signo;		/* 0: off */
	__u32 flags;		/* must be 0 */
	__u64 reserved[2];	/* must be 0 */
};

#define REGWATCH_IOC_MAGIC	0xB8
#define REGWATCH_IOC_CONFIG	_IOWR(REGWATCH_IOC_MAGIC, 0x00, struct regwatch_config)
#define REGWATCH_IOC_WATCH	_IOWR(REGWATCH_IOC_MAGIC, 0x01, struct regwatch_watch)
#define REGWATCH_IOC_UNWATCH	_IOW(REGWATCH_IOC_MAGIC, 0x02, struct regwatch_unwatch)
#define REGWATCH_IOC_WATCHV	_IOW(REGWATCH_IOC_MAGIC, 0x03, struct regwatch_batch)
#define REGWATCH_IOC_UNWATCHV	_IOW(REGWATCH_IOC_MAGIC, 0x04, struct regwatch_batch)
#define REGWATCH_IOC_SET_EVENTFD _IOW(REGWATCH_IOC_MAGIC, 0x05, struct regwatch_eventfd)
#define REGWATCH_IOC_STATS	_IOWR(REGWATCH_IOC_MAGIC, 0x06, struct regwatch_stats)
#define REGWATCH_IOC_SET_SIGNAL	_IOW(REGWATCH_IOC_MAGIC, 0x07, struct regwatch_signal)

/*
 * read(2) on the fd copies whole events out of the ring and consumes them
 * (it advances the same consumer index); it blocks without O_NONBLOCK.
 * A buffer smaller than one event gives EINVAL. Use either read() or the
 * shared ring from one thread at a time, not both at once.
 */

/* ----------------------------------------------------------------------
 * Mirror mode: /dev/regwatch-mirror.
 *
 * An open fd is a software DMA device bound to the opener's mm. It
 * reaches user memory only through its own device page table, filled on
 * demand with hmm_range_fault() and torn down by an MMU interval notifier
 * over the whole address space, without taking page references: mirrored
 * memory stays migratable, swappable and reclaimable. The device engine
 * runs each transfer asynchronously in a kernel worker; the ioctl waits
 * for it. A write needs the CPU page table to allow writing (read-only
 * mappings, mprotect, COW after fork: the device write breaks COW in the
 * caller's mm, or fails with EFAULT).
 *
 * REGWATCH_MIRROR_IOC_XFER ops (len > 0, at most mirror_max_xfer bytes):
 *   READ   device reads [addr, addr+len) into its buffer, which is then
 *          copied to the plain user buffer at host
 *   WRITE  host -> device buffer -> device writes [addr, addr+len)
 *   COPY   device copies [src, src+len) to [addr, addr+len)
 *   FILL   device writes the low byte of pattern over [addr, addr+len)
 *   MAP    device faults [addr, addr+len) into its page table (for write
 *          with REGWATCH_MIRROR_MAP_WRITE) without moving data
 * Errors: EINVAL (op, flags, reserved, len 0 or too long), EOVERFLOW
 * (range wraps), EFAULT (not mapped, or no permission, or a bad host
 * buffer), EBUSY (the range kept changing: retries exhausted), EIO
 * (caller not in the device's mm), ENOMEM. A failed transfer may have
 * moved part of the data.
 */
#define REGWATCH_MIRROR_DEVICE		"/dev/regwatch-mirror"

#define REGWATCH_MIRROR_OP_READ		1
#define REGWATCH_MIRROR_OP_WRITE	2
#define REGWATCH_MIRROR_OP_COPY		3
#define REGWATCH_MIRROR_OP_FILL		4
#define REGWATCH_MIRROR_OP_MAP		5

#define REGWATCH_MIRROR_MAP_WRITE	(1U << 0)	/* MAP only */

struct regwatch_mirror_xfer {
	__u32 op;		/* REGWATCH_MIRROR_OP_* */
	__u32 flags;		/* REGWATCH_MIRROR_MAP_WRITE for MAP, else 0 */
	__u64 addr;		/* the device-side user range */
	__u64 len;
	__u64 src;		/* COPY: source range */
	__u64 host;		/* READ/WRITE: plain user buffer, len bytes */
	__u32 pattern;		/* FILL */
	__u32 pad;		/* must be 0 */
	__u64 reserved[2];	/* must be 0 */
};

/* Counters of one device (REGWATCH_MIRROR_IOC_STATS). */
struct regwatch_mirror_stats {
	__u32 size;		/* in: sizeof(struct regwatch_mirror_stats) */
	__u32 pad;		/* must be 0 */
	__u64 faults;		/* device faults (hmm_range_fault calls) */
	__u64 faulted_pages;	/* pages entered by those faults */
	__u64 pages_mapped;	/* device page-table entries now */
	__u64 invalidations;	/* notifier callbacks that touched entries */
	__u64 unmapped_pages;	/* entries removed by invalidations */
	__u64 write_revoked;	/* entries made read-only (PROTECTION) */
	__u64 retries;		/* fault retries (range changed meanwhile) */
	__u64 nonblock_failed;	/* non-blockable callbacks refused (busy) */
	__u64 bytes;		/* bytes moved by the engine */
	__u64 module_devices;	/* open devices, module-wide */
	__u64 module_pages;	/* device page-table entries, module-wide */
	__u64 reserved[5];
};

#define REGWATCH_MIRROR_IOC_XFER	_IOW(REGWATCH_IOC_MAGIC, 0x20, struct regwatch_mirror_xfer)
#define REGWATCH_MIRROR_IOC_STATS	_IOWR(REGWATCH_IOC_MAGIC, 0x21, struct regwatch_mirror_stats)

#endif /* _UAPI_REGWATCH_H */
