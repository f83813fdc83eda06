// SPDX-License-Identifier: GPL-2.0
/*
 * regwatch: watches. Each watch is one mmu_interval_notifier over a
 * page-rounded range of the monitor's mm; its callback classifies the
 * invalidation, clips it to the watch and hands it to the ring.
 *
 * WATCH and UNWATCH take no monitor-wide lock: slots come from the xarray
 * (its own lock), ring reservations and state words from ring_lock. So
 * threads of one process can watch and unwatch in parallel, and the
 * notifier never waits for them.
 */
#include <linux/mm.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "internal.h"

static u32 rw_class_of(enum mmu_notifier_event event)
{
	switch (event) {
	case MMU_NOTIFY_UNMAP:
		return REGWATCH_CLASS_UNMAP;
	case MMU_NOTIFY_RELEASE:
		return REGWATCH_CLASS_RELEASE;
	case MMU_NOTIFY_PROTECTION_VMA:
	case MMU_NOTIFY_PROTECTION_PAGE:
		return REGWATCH_CLASS_PROTECTION;
	case MMU_NOTIFY_SOFT_DIRTY:
		return REGWATCH_CLASS_SOFT_DIRTY;
	case MMU_NOTIFY_CLEAR:
	case MMU_NOTIFY_MIGRATE:
	case MMU_NOTIFY_EXCLUSIVE:
	default:
		/* The pages behind the range change: stale. */
		return REGWATCH_CLASS_CLEAR;
	}
}

/* Not a call or fault of the watcher's own threads (EVENT_BACKGROUND). */
static bool rw_background(const struct rw_monitor *mon)
{
	return (current->flags & (PF_KTHREAD | PF_IO_WORKER | PF_MEMALLOC)) ||
	       task_tgid(current) != mon->tgid;
}

/*
 * Never sleeps and never allocates, so the same code serves blockable and
 * non-blockable (OOM reaper) ranges; ring_lock is a spinlock held for a
 * few stores. The synchronous signal (signal.c) goes last, once the state
 * word and the event are visible; the RCU read section lets SET_SIGNAL
 * wait until no callback can still send an old signal.
 */
static bool rw_invalidate(struct mmu_interval_notifier *mni,
			  const struct mmu_notifier_range *range,
			  unsigned long cur_seq)
{
	struct rw_watch *w = container_of(mni, struct rw_watch, notifier);
	struct rw_monitor *mon = w->mon;
	bool blockable = mmu_notifier_range_blockable(range);
	u32 class = rw_class_of(range->event);
	bool fired = false, wake = false;
	u32 flags;
	int signo;

	rcu_read_lock();
	signo = rw_sync_signo(mon, range);
	flags = (blockable ? 0 : REGWATCH_EVENT_NONBLOCK) |
		(signo ? REGWATCH_EVENT_SYNC : 0) |
		(rw_background(mon) ? REGWATCH_EVENT_BACKGROUND : 0);

	spin_lock(&mon->ring_lock);
	mmu_interval_set_seq(mni, cur_seq);
	mon->cnt.invalidations++;
	if (!blockable) {
		mon->cnt.nonblock++;
		atomic64_inc(&rw_nr_nonblock);
	}
	if (!(class & w->classes) ||
	    (class & READ_ONCE(rw_test_ignore_classes))) {
		mon->cnt.filtered++;
	} else {
		fired = true;
		wake = rw_ring_fire(mon, w, class,
				    max(range->start, w->start),
				    min(range->end, w->end), flags);
	}
	spin_unlock(&mon->ring_lock);

	if (wake)
		rw_notify(mon);
	/* Also when coalesced: the one-shot event may still be unread. */
	if (fired && signo)
		rw_sync_send(mon, signo);
	rcu_read_unlock();
	return true;
}

static const struct mmu_interval_notifier_ops rw_notifier_ops = {
	.invalidate = rw_invalidate,
};

static int rw_check_range(u64 addr, u64 len)
{
	if (!len)
		return -EINVAL;
	if (addr + len < addr)
		return -EOVERFLOW;
	if (addr + len > TASK_SIZE)
		return -EFAULT;
	return 0;
}

static int rw_check_request(const struct regwatch_watch *req)
{
	if (req->flags & ~REGWATCH_WATCH_FLAGS)
		return -EINVAL;
	if (req->reserved[0] || req->reserved[1])
		return -EINVAL;
	return rw_check_range(req->addr, req->len);
}

/* Per-monitor and per-user caps; undone by rw_uncharge(). */
static int rw_charge(struct rw_monitor *mon)
{
	if (atomic_inc_return(&mon->nr_watches) > mon->max_watches) {
		atomic_dec(&mon->nr_watches);
		return -ENOSPC;
	}
	if (atomic_inc_return(&mon->user->watches) >
	    READ_ONCE(rw_max_user_watches)) {
		atomic_dec(&mon->user->watches);
		atomic_dec(&mon->nr_watches);
		return -EDQUOT;
	}
	return 0;
}

static void rw_uncharge(struct rw_monitor *mon)
{
	atomic_dec(&mon->user->watches);
	atomic_dec(&mon->nr_watches);
}

/* Create one watch from a validated request; fills the out fields. */
int rw_watch_add(struct rw_monitor *mon, struct regwatch_watch *req)
{
	bool oneshot = !(req->flags & REGWATCH_WATCH_STREAMING);
	unsigned long start, end;
	struct rw_watch *w;
	u32 slot;
	int ret;

	ret = rw_check_request(req);
	if (ret)
		return ret;
	start = req->addr & PAGE_MASK;
	end = PAGE_ALIGN(req->addr + req->len);

	ret = rw_charge(mon);
	if (ret)
		return ret;
	if (oneshot) {
		ret = rw_ring_reserve(mon);
		if (ret)
			goto uncharge;
	}
	ret = -ENOMEM;
	w = kzalloc(sizeof(*w), GFP_KERNEL_ACCOUNT);
	if (!w)
		goto unreserve;
	w->mon = mon;
	w->start = start;
	w->end = end;
	w->cookie = req->cookie;
	w->flags = req->flags;
	w->classes = REGWATCH_CLASS_UNMAP | REGWATCH_CLASS_CLEAR |
		     REGWATCH_CLASS_RELEASE;
	if (req->flags & REGWATCH_WATCH_PROTECTION)
		w->classes |= REGWATCH_CLASS_PROTECTION;
	if (req->flags & REGWATCH_WATCH_SOFT_DIRTY)
		w->classes |= REGWATCH_CLASS_SOFT_DIRTY;

	/*
	 * Reserve the slot (a NULL entry reads as absent) and publish the
	 * watch only once it is complete: ids are predictable, and an UNWATCH
	 * must never find a half-built watch.
	 */
	ret = xa_alloc(&mon->watches, &slot, NULL,
		       XA_LIMIT(0, mon->max_watches - 1), GFP_KERNEL_ACCOUNT);
	if (ret) {
		ret = ret == -EBUSY ? -ENOSPC : ret;
		goto free;
	}
	w->id = rw_state_arm(mon, slot);

	ret = mmu_interval_notifier_insert(&w->notifier, mon->mm, start,
					   end - start, &rw_notifier_ops);
	if (ret)
		goto erase;
	/*
	 * A notifier inserted while an invalidation runs anywhere in the mm
	 * misses that invalidation's callback. read_begin() waits for it to
	 * end, so what the caller registers after WATCH returns sees the
	 * page tables as they are after it.
	 */
	if (!READ_ONCE(rw_test_skip_watch_sync))
		mmu_interval_read_begin(&w->notifier);

	req->watch_id = w->id;
	req->armed_state = (u64)REGWATCH_ID_GEN(w->id) << 32 |
			   REGWATCH_STATE_ARMED;
	atomic64_inc(&rw_nr_watches);
	/* Storing over a reserved entry needs no memory: cannot fail. */
	xa_store(&mon->watches, slot, w, GFP_KERNEL_ACCOUNT);
	return 0;

erase:
	rw_state_free(mon, w);	/* also returns a one-shot reservation */
	xa_erase(&mon->watches, slot);
	kfree(w);
	goto uncharge;
free:
	kfree(w);
unreserve:
	if (oneshot)
		rw_ring_unreserve(mon);
uncharge:
	rw_uncharge(mon);
	return ret;
}

/*
 * Tear down a watch that is no longer published. Its slot stays reserved
 * until the FREE state word is written, so a new watch cannot take the
 * slot and then have its armed word overwritten.
 */
static void rw_watch_destroy(struct rw_monitor *mon, struct rw_watch *w)
{
	u32 slot = REGWATCH_ID_SLOT(w->id);

	/* Waits for a running callback; after it none can start. */
	mmu_interval_notifier_remove(&w->notifier);
	rw_state_free(mon, w);
	xa_erase(&mon->watches, slot);
	kfree(w);
	rw_uncharge(mon);
	atomic64_dec(&rw_nr_watches);
}

int rw_watch_remove(struct rw_monitor *mon, u64 id)
{
	u32 slot = REGWATCH_ID_SLOT(id);
	struct rw_watch *w;

	/*
	 * Look up and unpublish atomically (two UNWATCHes of one id race
	 * here); storing NULL keeps the slot reserved.
	 */
	xa_lock(&mon->watches);
	w = xa_load(&mon->watches, slot);
	if (w && w->id == id)
		__xa_store(&mon->watches, slot, NULL, 0);
	else
		w = NULL;
	xa_unlock(&mon->watches);
	if (!w)
		return -ENOENT;
	rw_watch_destroy(mon, w);
	return 0;
}

/* Teardown: nobody else can reach the monitor any more. */
void rw_watch_remove_all(struct rw_monitor *mon)
{
	struct rw_watch *w;
	unsigned long slot;

	xa_for_each(&mon->watches, slot, w)
		rw_watch_destroy(mon, w);
}

long rw_ioctl_watch(struct rw_monitor *mon, void __user *arg)
{
	struct regwatch_watch req;
	int ret;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	ret = rw_watch_add(mon, &req);
	if (ret)
		return ret;
	req.result = 0;
	if (copy_to_user(arg, &req, sizeof(req))) {
		rw_watch_remove(mon, req.watch_id);
		return -EFAULT;
	}
	return 0;
}

long rw_ioctl_unwatch(struct rw_monitor *mon, void __user *arg)
{
	struct regwatch_unwatch req;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.pad)
		return -EINVAL;
	return rw_watch_remove(mon, req.watch_id);
}

/* Copy a batch descriptor and its entries in; the caller kvfree()s. */
static void *rw_batch_copy_in(void __user *arg, size_t entry_size,
			      struct regwatch_batch *batch)
{
	if (copy_from_user(batch, arg, sizeof(*batch)))
		return ERR_PTR(-EFAULT);
	if (batch->flags || !batch->count ||
	    batch->count > REGWATCH_BATCH_MAX)
		return ERR_PTR(-EINVAL);
	return vmemdup_user(u64_to_user_ptr(batch->entries),
			    batch->count * entry_size);
}

long rw_ioctl_watchv(struct rw_monitor *mon, void __user *arg)
{
	struct regwatch_batch batch;
	struct regwatch_watch *req;
	long done = 0;
	u32 i;

	req = rw_batch_copy_in(arg, sizeof(*req), &batch);
	if (IS_ERR(req))
		return PTR_ERR(req);
	for (i = 0; i < batch.count; i++) {
		req[i].result = rw_watch_add(mon, &req[i]);
		if (!req[i].result)
			done++;
	}
	if (copy_to_user(u64_to_user_ptr(batch.entries), req,
			 batch.count * sizeof(*req))) {
		/* The caller cannot learn the ids: take them all back. */
		for (i = 0; i < batch.count; i++)
			if (!req[i].result)
				rw_watch_remove(mon, req[i].watch_id);
		done = -EFAULT;
	}
	kvfree(req);
	return done;
}

long rw_ioctl_unwatchv(struct rw_monitor *mon, void __user *arg)
{
	struct regwatch_batch batch;
	struct regwatch_unwatch *req;
	long done = 0;
	u32 i;

	req = rw_batch_copy_in(arg, sizeof(*req), &batch);
	if (IS_ERR(req))
		return PTR_ERR(req);
	/*
	 * Removal cannot be undone, so make sure the results can be written
	 * back before removing anything.
	 */
	if (copy_to_user(u64_to_user_ptr(batch.entries), req,
			 batch.count * sizeof(*req))) {
		kvfree(req);
		return -EFAULT;
	}
	for (i = 0; i < batch.count; i++) {
		req[i].result = req[i].pad ? -EINVAL :
			rw_watch_remove(mon, req[i].watch_id);
		if (!req[i].result)
			done++;
	}
	if (copy_to_user(u64_to_user_ptr(batch.entries), req,
			 batch.count * sizeof(*req)))
		done = -EFAULT;
	kvfree(req);
	return done;
}
