// SPDX-License-Identifier: GPL-2.0
/*
 * regwatch: the shared area of a monitor.
 *
 * One read-only mapping holds the header, the event ring and the state
 * words; one user-writable page holds the consumer head. Pages come from
 * alloc_page(GFP_KERNEL_ACCOUNT), so they are charged to the opener's
 * memcg, and are vmap()ed for the kernel and vm_insert_pages()ed for the
 * user.
 *
 * Ring accounting, all under ring_lock:
 *   used  = prod - cons            events published and not consumed
 *   armed = oneshot_armed          one-shot watches that may still fire
 *   spare = resync_pending ? 0 : 1 the entry kept for a RESYNC
 * and the invariant used + armed + spare <= ring_entries. A one-shot watch
 * reserves its entry at WATCH, so its event always fits; a streaming event
 * is published only into an entry nobody has reserved, and when there is
 * none the RESYNC entry tells userspace to rescan instead.
 */
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "compat.h"
#include "internal.h"

static size_t rw_ring_offset(void)
{
	return ALIGN(sizeof(struct regwatch_shared_header), 64);
}

static size_t rw_states_offset(u32 ring_entries)
{
	return ALIGN(rw_ring_offset() +
		     (size_t)ring_entries * sizeof(struct regwatch_event), 64);
}

int rw_area_create(struct rw_monitor *mon, u32 ring_entries, u32 max_watches)
{
	size_t size = rw_states_offset(ring_entries) + (size_t)max_watches * 8;
	unsigned int i, n = PAGE_ALIGN(size) >> PAGE_SHIFT;
	struct regwatch_shared_header *hdr;

	mon->pages = kvcalloc(n, sizeof(*mon->pages), GFP_KERNEL_ACCOUNT);
	if (!mon->pages)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		mon->pages[i] = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
		if (!mon->pages[i])
			goto fail;
		mon->nr_pages = i + 1;
	}
	mon->consumer_page = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	if (!mon->consumer_page)
		goto fail;
	mon->area = vmap(mon->pages, n, VM_MAP, PAGE_KERNEL);
	if (!mon->area)
		goto fail;
	atomic64_add(n + 1, &rw_nr_pages);

	mon->consumer = page_address(mon->consumer_page);
	hdr = mon->area;
	mon->hdr = hdr;
	mon->ring = mon->area + rw_ring_offset();
	mon->states = mon->area + rw_states_offset(ring_entries);
	mon->ring_entries = ring_entries;
	mon->max_watches = max_watches;

	hdr->abi_version = REGWATCH_ABI_VERSION;
	hdr->header_size = sizeof(*hdr);
	hdr->ring_entries = ring_entries;
	hdr->event_size = sizeof(struct regwatch_event);
	hdr->ring_offset = rw_ring_offset();
	hdr->states_offset = rw_states_offset(ring_entries);
	hdr->max_watches = max_watches;
	return 0;

fail:
	rw_area_destroy(mon);
	return -ENOMEM;
}

/* Userspace mappings keep their own page references; dropping ours is safe. */
void rw_area_destroy(struct rw_monitor *mon)
{
	unsigned int i;

	if (mon->area) {
		vunmap(mon->area);
		atomic64_sub(mon->nr_pages + 1, &rw_nr_pages);
		mon->area = NULL;
	}
	for (i = 0; i < mon->nr_pages; i++)
		__free_page(mon->pages[i]);
	kvfree(mon->pages);
	mon->pages = NULL;
	mon->nr_pages = 0;
	if (mon->consumer_page)
		__free_page(mon->consumer_page);
	mon->consumer_page = NULL;
}

/*
 * Map the whole read-only area or the consumer page. Neither is inherited
 * across fork (VM_DONTCOPY), and the read-only one can never become
 * writable (no VM_MAYWRITE).
 */
int rw_area_mmap(struct rw_monitor *mon, struct vm_area_struct *vma)
{
	u64 off = (u64)vma->vm_pgoff << PAGE_SHIFT;
	unsigned long num = vma_pages(vma);
	struct page **pages;

	/* A private mapping would hide the consumer head behind COW. */
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (off == RW_OFF_SHARED) {
		if (num != mon->nr_pages)
			return -EINVAL;
		if (vma->vm_flags & VM_WRITE)
			return -EPERM;
		pages = mon->pages;
		rw_vm_flags_set(vma, 0, VM_MAYWRITE);
	} else if (off == RW_OFF_CONSUMER) {
		if (num != 1)
			return -EINVAL;
		pages = &mon->consumer_page;
	} else {
		return -EINVAL;
	}
	rw_vm_flags_set(vma, VM_DONTCOPY | VM_DONTEXPAND | VM_DONTDUMP, 0);
	return vm_insert_pages(vma, vma->vm_start, pages, &num);
}

/*
 * Accept the user's consumer head only if it lies between the last one
 * accepted and the producer: the page is user-writable, so never trust it.
 * Called under ring_lock; returns the accepted head.
 */
u64 rw_ring_sync_consumer(struct rw_monitor *mon)
{
	/* Pairs with the consumer's release store: it is done with them. */
	u64 head = smp_load_acquire(&mon->consumer->head);

	lockdep_assert_held(&mon->ring_lock);
	if (head - mon->cons <= mon->prod - mon->cons)
		mon->cons = head;
	if (mon->resync_pending && mon->cons > mon->resync_pos)
		mon->resync_pending = false;
	return mon->cons;
}

static u64 rw_ring_free(struct rw_monitor *mon)
{
	u64 used = mon->prod - rw_ring_sync_consumer(mon);
	u64 taken = used + mon->oneshot_armed + (mon->resync_pending ? 0 : 1);

	return taken < mon->ring_entries ? mon->ring_entries - taken : 0;
}

/* Reserve the entry a new one-shot watch's event will need. */
int rw_ring_reserve(struct rw_monitor *mon)
{
	int ret = -ENOBUFS;

	spin_lock(&mon->ring_lock);
	if (rw_ring_free(mon) > 0) {
		mon->oneshot_armed++;
		ret = 0;
	}
	spin_unlock(&mon->ring_lock);
	return ret;
}

void rw_ring_unreserve(struct rw_monitor *mon)
{
	spin_lock(&mon->ring_lock);
	mon->oneshot_armed--;
	spin_unlock(&mon->ring_lock);
}

static u64 rw_state_word(u32 gen, u32 count, u32 state)
{
	return (u64)gen << 32 |
	       (u64)(count & (U32_MAX >> REGWATCH_STATE_COUNT_SHIFT))
			<< REGWATCH_STATE_COUNT_SHIFT |
	       state;
}

/*
 * Give a slot a new generation and arm it; returns the watch id. Each
 * reuse of a slot bumps its generation (skipping 0), so old ids and old
 * armed values never match again.
 */
u64 rw_state_arm(struct rw_monitor *mon, u32 slot)
{
	u32 gen;

	spin_lock(&mon->ring_lock);
	gen = (u32)(READ_ONCE(mon->states[slot]) >> 32) + 1;
	if (!gen)
		gen = 1;
	WRITE_ONCE(mon->states[slot],
		   rw_state_word(gen, 0, REGWATCH_STATE_ARMED));
	spin_unlock(&mon->ring_lock);
	return (u64)gen << 32 | slot;
}

/*
 * Free a removed watch's slot. An armed one-shot watch gives its
 * reservation back; a fired one keeps it until its event is consumed,
 * which the ring accounting already covers.
 */
void rw_state_free(struct rw_monitor *mon, struct rw_watch *w)
{
	u32 slot = REGWATCH_ID_SLOT(w->id);

	spin_lock(&mon->ring_lock);
	if (!(w->flags & REGWATCH_WATCH_STREAMING) && !w->fired)
		mon->oneshot_armed--;
	WRITE_ONCE(mon->states[slot],
		   rw_state_word(REGWATCH_ID_GEN(w->id), 0,
				 REGWATCH_STATE_FREE));
	spin_unlock(&mon->ring_lock);
}

static void rw_ring_publish(struct rw_monitor *mon,
			    const struct regwatch_event *ev)
{
	mon->ring[mon->prod & (mon->ring_entries - 1)] = *ev;
	mon->prod++;
	mon->cnt.events++;
	/* Pairs with the consumer's acquire load of producer. */
	smp_store_release(&mon->hdr->producer, mon->prod);
}

static void rw_ring_resync(struct rw_monitor *mon)
{
	struct regwatch_event ev = { .type = REGWATCH_EVENT_RESYNC };

	mon->cnt.overflows++;
	WRITE_ONCE(mon->hdr->overflows, mon->cnt.overflows);
	if (mon->resync_pending)
		return;
	rw_ring_publish(mon, &ev);
	mon->resync_pending = true;
	mon->resync_pos = mon->prod - 1;
	mon->cnt.resyncs++;
}

/*
 * Deliver one invalidation of [start, end) (already clipped) to watch w.
 * Called from the notifier under ring_lock. The state word changes first:
 * it is what a cache checks, and it must change before the invalidating
 * system call returns. flags: REGWATCH_EVENT_NONBLOCK, _SYNC. Returns true
 * when userspace should be woken.
 */
bool rw_ring_fire(struct rw_monitor *mon, struct rw_watch *w, u32 class,
		  unsigned long start, unsigned long end, u32 flags)
{
	bool oneshot = !(w->flags & REGWATCH_WATCH_STREAMING);
	struct regwatch_event ev = {
		.type = REGWATCH_EVENT_INVALIDATE,
		.class = class,
		.flags = (oneshot ? REGWATCH_EVENT_ONESHOT : 0) | flags,
		.watch_id = w->id,
		.cookie = w->cookie,
		.start = start,
		.end = end,
	};

	lockdep_assert_held(&mon->ring_lock);
	if (oneshot && w->fired) {
		mon->cnt.coalesced++;
		return false;
	}
	w->count++;
	WRITE_ONCE(mon->states[REGWATCH_ID_SLOT(w->id)],
		   rw_state_word(REGWATCH_ID_GEN(w->id), w->count,
				 oneshot ? REGWATCH_STATE_FIRED :
					   REGWATCH_STATE_ARMED));
	if (oneshot) {
		/* The entry was reserved at WATCH: it is there. */
		w->fired = true;
		mon->oneshot_armed--;
		rw_ring_publish(mon, &ev);
	} else if (rw_ring_free(mon) > 0) {
		rw_ring_publish(mon, &ev);
	} else {
		rw_ring_resync(mon);
	}
	mon->cnt.by_class[ilog2(class)]++;
	mon->generation++;
	/* State word and event are visible before the new generation. */
	smp_store_release(&mon->hdr->generation, mon->generation);
	return true;
}

bool rw_ring_pending(struct rw_monitor *mon)
{
	bool pending;

	spin_lock(&mon->ring_lock);
	pending = rw_ring_sync_consumer(mon) != mon->prod;
	spin_unlock(&mon->ring_lock);
	return pending;
}

/* read() consumed up to head: publish it as the consumer would. */
void rw_ring_consume(struct rw_monitor *mon, u64 head)
{
	spin_lock(&mon->ring_lock);
	/* Same protocol as a userspace consumer, for mixed observers. */
	smp_store_release(&mon->consumer->head, head);
	rw_ring_sync_consumer(mon);
	spin_unlock(&mon->ring_lock);
}
