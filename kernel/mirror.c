// SPDX-License-Identifier: GPL-2.0
/*
 * regwatch mirror mode: a software DMA device that mirrors its opener's
 * address space without pinning (/dev/regwatch-mirror).
 *
 * The device page table is an xarray from virtual page number to struct
 * page, tagged when the device may write. It holds no page references:
 * the interval notifier (one, over the whole address space) removes
 * entries before the CPU side frees, migrates or swaps a page, so the
 * device can never reach a page the process no longer maps. A missing
 * entry is a device fault, filled with hmm_range_fault() in the
 * read_begin / fault / lock / read_retry loop of Documentation/mm/hmm.rst.
 *
 * Transfers run in a per-device worker (the "engine"), not in the caller,
 * so unmaps, migration and exit really race with device access.
 *
 * Locking: pt_lock (mutex) guards the page table. The notifier takes it
 * (or, for non-blockable ranges, try-locks it and returns false when
 * busy), so nothing under it allocates with GFP_KERNEL, sleeps on user
 * memory or takes mmap_lock. The engine holds it for one page at a time:
 * look up, kmap, copy at most a page, unlock.
 */
#include <linux/hmm.h>
#include <linux/highmem.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait_bit.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "internal.h"

#define RW_PT_WRITE	1UL		/* xarray pointer tag: device may write */
#define RW_FAULT_BATCH	64		/* pages per hmm_range_fault() call */

unsigned int rw_mirror_max_xfer = 16U << 20;
module_param_named(mirror_max_xfer, rw_mirror_max_xfer, uint, 0444);
MODULE_PARM_DESC(mirror_max_xfer, "Largest mirror transfer in bytes");

static atomic64_t rw_nr_mirrors;
static atomic64_t rw_nr_mirror_pages;

struct rw_mirror_counters {
	u64 faults;
	u64 faulted_pages;
	u64 invalidations;
	u64 unmapped_pages;
	u64 write_revoked;
	u64 retries;
	u64 bytes;
};

struct rw_mirror {
	struct mmu_interval_notifier notifier;	/* whole address space */
	struct mm_struct *mm;			/* mmgrab()ed */
	struct mutex pt_lock;
	struct xarray pt;			/* vpn -> tagged struct page * */
	atomic64_t pages_mapped;
	atomic64_t nonblock_failed;
	atomic_t inval_pending;			/* blockable callbacks waiting */
	struct rw_mirror_counters cnt;		/* under pt_lock */
	struct workqueue_struct *engine;
};

/* One queued transfer: the ioctl fills it, the engine runs it. */
struct rw_mirror_job {
	struct work_struct work;
	struct completion done;
	struct rw_mirror *m;
	struct regwatch_mirror_xfer x;
	u8 *buf;			/* device memory for the transfer */
	int ret;
};

static void rw_pt_set(struct rw_mirror *m, unsigned long vpn, void *entry)
{
	/* Called with pt_lock held: only non-sleeping allocations. */
	void *old = xa_store(&m->pt, vpn, entry, GFP_NOWAIT | __GFP_NOWARN);

	if (xa_is_err(old))
		return;		/* the device just faults again later */
	if (!old) {
		atomic64_inc(&m->pages_mapped);
		atomic64_inc(&rw_nr_mirror_pages);
	}
}

static void rw_pt_clear(struct rw_mirror *m, unsigned long vpn)
{
	if (xa_erase(&m->pt, vpn)) {
		atomic64_dec(&m->pages_mapped);
		atomic64_dec(&rw_nr_mirror_pages);
	}
}

/*
 * Protection changes (mprotect, fork's write-protect, writeback's
 * page_mkclean) keep the page but take write away: the next device write
 * must fault so that COW and dirty tracking happen. Everything else
 * (unmap, clear, migration, release) removes the entries.
 */
static bool rw_mirror_invalidate(struct mmu_interval_notifier *mni,
				 const struct mmu_notifier_range *range,
				 unsigned long cur_seq)
{
	struct rw_mirror *m = container_of(mni, struct rw_mirror, notifier);
	/* mprotect(PROT_NONE) is a PROTECTION_VMA too: that one removes. */
	bool protect = mmu_notifier_range_update_to_read_only(range) ||
		       range->event == MMU_NOTIFY_PROTECTION_PAGE ||
		       range->event == MMU_NOTIFY_SOFT_DIRTY;
	bool blockable = mmu_notifier_range_blockable(range);
	unsigned long vpn, last = (range->end - 1) >> PAGE_SHIFT;
	u64 touched = 0;
	void *entry;

	if (blockable) {
		/* Makes the engine step aside (see rw_mirror_access_page). */
		atomic_inc(&m->inval_pending);
		mutex_lock(&m->pt_lock);
	} else if (!mutex_trylock(&m->pt_lock)) {
		/* The OOM reaper retries this VMA later. */
		atomic64_inc(&m->nonblock_failed);
		return false;
	}
	mmu_interval_set_seq(mni, cur_seq);
	xa_for_each_range(&m->pt, vpn, entry, range->start >> PAGE_SHIFT,
			  last) {
		if (!protect) {
			rw_pt_clear(m, vpn);
			m->cnt.unmapped_pages++;
		} else if (xa_pointer_tag(entry) & RW_PT_WRITE) {
			rw_pt_set(m, vpn, xa_untag_pointer(entry));
			m->cnt.write_revoked++;
		}
		touched++;
	}
	if (touched)
		m->cnt.invalidations++;
	if (!blockable)
		atomic64_inc(&rw_nr_nonblock);
	mutex_unlock(&m->pt_lock);
	if (blockable && atomic_dec_and_test(&m->inval_pending))
		wake_up_var(&m->inval_pending);
	return true;
}

static const struct mmu_interval_notifier_ops rw_mirror_ops = {
	.invalidate = rw_mirror_invalidate,
};

/*
 * Device fault: bring [start, start + npages pages) into the device page
 * table, writable if write. Runs in the engine, which has no mm of its
 * own, so it takes a reference on the device's for the duration.
 */
static int rw_mirror_fault(struct rw_mirror *m, unsigned long start,
			   unsigned long npages, bool write)
{
	unsigned long pfns[RW_FAULT_BATCH];
	struct hmm_range range = {
		.notifier = &m->notifier,
		.start = start,
		.end = start + npages * PAGE_SIZE,
		.hmm_pfns = pfns,
		.default_flags = HMM_PFN_REQ_FAULT |
				 (write ? HMM_PFN_REQ_WRITE : 0),
	};
	unsigned long timeout =
		jiffies + msecs_to_jiffies(HMM_RANGE_DEFAULT_TIMEOUT);
	unsigned long i;
	int ret;

	if (!mmget_not_zero(m->mm))
		return -EFAULT;		/* the process is exiting */
	for (;;) {
		if (time_after(jiffies, timeout)) {
			ret = -EBUSY;
			break;
		}
		range.notifier_seq = mmu_interval_read_begin(&m->notifier);
		mmap_read_lock(m->mm);
		ret = hmm_range_fault(&range);
		mmap_read_unlock(m->mm);
		if (ret == -EBUSY)
			goto retry;
		if (ret)
			break;

		mutex_lock(&m->pt_lock);
		if (mmu_interval_read_retry(&m->notifier, range.notifier_seq)) {
			mutex_unlock(&m->pt_lock);
			goto retry;
		}
		for (i = 0; i < npages; i++) {
			struct page *page = hmm_pfn_to_page(pfns[i]);
			unsigned long tag = pfns[i] & HMM_PFN_WRITE ?
					    RW_PT_WRITE : 0;

			rw_pt_set(m, (start >> PAGE_SHIFT) + i,
				  xa_tag_pointer(page, tag));
		}
		m->cnt.faults++;
		m->cnt.faulted_pages += npages;
		mutex_unlock(&m->pt_lock);
		break;
retry:
		mutex_lock(&m->pt_lock);
		m->cnt.retries++;
		mutex_unlock(&m->pt_lock);
	}
	mmput(m->mm);
	/* No write permission in the CPU page table is a device fault too. */
	return ret == -EPERM ? -EFAULT : ret;
}

/*
 * Copy n bytes at addr (within one page) between device memory (buf) and
 * user memory through the device page table. On a miss, fault in this
 * page and up to ahead - 1 more: transfers are mostly sequential.
 */
static int rw_mirror_access_page(struct rw_mirror *m, unsigned long addr,
				 u8 *buf, size_t n, bool write,
				 unsigned long ahead)
{
	unsigned long vpn = addr >> PAGE_SHIFT;
	int tries, ret;

	for (tries = 0; tries < 8; tries++) {
		void *entry;

		/*
		 * The engine retakes pt_lock page after page; without this a
		 * waiting invalidation (munmap anywhere in the process) could
		 * be starved until the whole transfer ends.
		 */
		wait_var_event(&m->inval_pending,
			       !atomic_read(&m->inval_pending));
		mutex_lock(&m->pt_lock);
		entry = xa_load(&m->pt, vpn);
		if (entry && (!write || xa_pointer_tag(entry) & RW_PT_WRITE)) {
			u8 *kaddr = kmap_local_page(xa_untag_pointer(entry));

			if (write)
				memcpy(kaddr + offset_in_page(addr), buf, n);
			else
				memcpy(buf, kaddr + offset_in_page(addr), n);
			kunmap_local(kaddr);
			m->cnt.bytes += n;
			mutex_unlock(&m->pt_lock);
			return 0;
		}
		mutex_unlock(&m->pt_lock);
		ret = rw_mirror_fault(m, addr & PAGE_MASK,
				      min_t(unsigned long, ahead,
					    RW_FAULT_BATCH), write);
		if (ret)
			return ret;
		ahead = 1;	/* raced with an invalidation: just this page */
	}
	return -EBUSY;
}

/* Walk [addr, addr + len) page by page, moving data to or from buf. */
static int rw_mirror_access(struct rw_mirror *m, unsigned long addr,
			    u8 *buf, size_t len, bool write)
{
	unsigned long end = addr + len;

	while (addr < end) {
		size_t n = min_t(size_t, end - addr,
				 PAGE_SIZE - offset_in_page(addr));
		unsigned long ahead = (PAGE_ALIGN(end) - (addr & PAGE_MASK)) >>
				      PAGE_SHIFT;
		int ret = rw_mirror_access_page(m, addr, buf, n, write, ahead);

		if (ret)
			return ret;
		addr += n;
		buf += n;
		cond_resched();
	}
	return 0;
}

static int rw_mirror_map(struct rw_mirror *m, unsigned long addr,
			 size_t len, bool write)
{
	unsigned long start = addr & PAGE_MASK;
	unsigned long end = PAGE_ALIGN(addr + len);

	while (start < end) {
		unsigned long n = min_t(unsigned long, RW_FAULT_BATCH,
					(end - start) >> PAGE_SHIFT);
		int ret = rw_mirror_fault(m, start, n, write);

		if (ret)
			return ret;
		start += n << PAGE_SHIFT;
	}
	return 0;
}

static void rw_mirror_engine_run(struct work_struct *work)
{
	struct rw_mirror_job *job = container_of(work, struct rw_mirror_job,
						 work);
	struct regwatch_mirror_xfer *x = &job->x;
	struct rw_mirror *m = job->m;

	switch (x->op) {
	case REGWATCH_MIRROR_OP_READ:
		job->ret = rw_mirror_access(m, x->addr, job->buf, x->len, false);
		break;
	case REGWATCH_MIRROR_OP_WRITE:
	case REGWATCH_MIRROR_OP_FILL:
		job->ret = rw_mirror_access(m, x->addr, job->buf, x->len, true);
		break;
	case REGWATCH_MIRROR_OP_COPY:
		job->ret = rw_mirror_access(m, x->src, job->buf, x->len, false);
		if (!job->ret)
			job->ret = rw_mirror_access(m, x->addr, job->buf,
						    x->len, true);
		break;
	case REGWATCH_MIRROR_OP_MAP:
		job->ret = rw_mirror_map(m, x->addr, x->len,
					 x->flags & REGWATCH_MIRROR_MAP_WRITE);
		break;
	}
	complete(&job->done);
}

static int rw_mirror_check_xfer(const struct regwatch_mirror_xfer *x)
{
	if (x->op < REGWATCH_MIRROR_OP_READ || x->op > REGWATCH_MIRROR_OP_MAP)
		return -EINVAL;
	if (x->flags & ~(x->op == REGWATCH_MIRROR_OP_MAP ?
			 REGWATCH_MIRROR_MAP_WRITE : 0))
		return -EINVAL;
	if (x->pad || x->reserved[0] || x->reserved[1])
		return -EINVAL;
	if (!x->len || x->len > rw_mirror_max_xfer)
		return -EINVAL;
	if (x->addr + x->len < x->addr ||
	    (x->op == REGWATCH_MIRROR_OP_COPY && x->src + x->len < x->src))
		return -EOVERFLOW;
	if (x->addr + x->len > TASK_SIZE ||
	    (x->op == REGWATCH_MIRROR_OP_COPY && x->src + x->len > TASK_SIZE))
		return -EFAULT;
	return 0;
}

static long rw_mirror_xfer(struct rw_mirror *m, void __user *arg)
{
	void __user *host;
	struct rw_mirror_job *job;
	long ret;

	job = kzalloc(sizeof(*job), GFP_KERNEL_ACCOUNT);
	if (!job)
		return -ENOMEM;
	ret = -EFAULT;
	if (copy_from_user(&job->x, arg, sizeof(job->x)))
		goto out;
	ret = rw_mirror_check_xfer(&job->x);
	if (ret)
		goto out;
	host = u64_to_user_ptr(job->x.host);
	if (job->x.op != REGWATCH_MIRROR_OP_MAP) {
		ret = -ENOMEM;
		job->buf = kvmalloc(job->x.len, GFP_KERNEL_ACCOUNT);
		if (!job->buf)
			goto out;
	}
	ret = -EFAULT;
	if (job->x.op == REGWATCH_MIRROR_OP_WRITE &&
	    copy_from_user(job->buf, host, job->x.len))
		goto out;
	if (job->x.op == REGWATCH_MIRROR_OP_FILL)
		memset(job->buf, job->x.pattern & 0xff, job->x.len);

	job->m = m;
	init_completion(&job->done);
	INIT_WORK(&job->work, rw_mirror_engine_run);
	queue_work(m->engine, &job->work);
	/* The job lives on this stack frame's allocation: wait it out. */
	wait_for_completion(&job->done);
	ret = job->ret;
	if (!ret && job->x.op == REGWATCH_MIRROR_OP_READ &&
	    copy_to_user(host, job->buf, job->x.len))
		ret = -EFAULT;
out:
	kvfree(job->buf);
	kfree(job);
	return ret;
}

static long rw_mirror_stats(struct rw_mirror *m, void __user *arg)
{
	struct regwatch_mirror_stats st = { };
	u32 usize;
	int ret;

	ret = rw_stats_size(arg, offsetofend(struct regwatch_mirror_stats,
					     faults), &usize);
	if (ret)
		return ret;
	mutex_lock(&m->pt_lock);
	st.faults = m->cnt.faults;
	st.faulted_pages = m->cnt.faulted_pages;
	st.invalidations = m->cnt.invalidations;
	st.unmapped_pages = m->cnt.unmapped_pages;
	st.write_revoked = m->cnt.write_revoked;
	st.retries = m->cnt.retries;
	st.bytes = m->cnt.bytes;
	mutex_unlock(&m->pt_lock);
	st.size = sizeof(st);
	st.pages_mapped = atomic64_read(&m->pages_mapped);
	st.nonblock_failed = atomic64_read(&m->nonblock_failed);
	st.module_devices = atomic64_read(&rw_nr_mirrors);
	st.module_pages = atomic64_read(&rw_nr_mirror_pages);
	return rw_stats_copy_out(arg, &st, sizeof(st), usize);
}

static long rw_mirror_ioctl(struct file *file, unsigned int cmd,
			    unsigned long uarg)
{
	struct rw_mirror *m = file->private_data;
	void __user *arg = (void __user *)uarg;

	if (_IOC_TYPE(cmd) != REGWATCH_IOC_MAGIC)
		return -ENOTTY;
	if (current->mm != m->mm)
		return -EIO;
	if (cmd == REGWATCH_MIRROR_IOC_XFER)
		return rw_mirror_xfer(m, arg);
	if (_IOC_NR(cmd) == _IOC_NR(REGWATCH_MIRROR_IOC_STATS) &&
	    _IOC_DIR(cmd) == _IOC_DIR(REGWATCH_MIRROR_IOC_STATS))
		return rw_mirror_stats(m, arg);
	return -ENOTTY;
}

static int rw_mirror_open(struct inode *inode, struct file *file)
{
	struct rw_mirror *m;
	int ret;

	if (!current->mm)
		return -EINVAL;
	m = kzalloc(sizeof(*m), GFP_KERNEL_ACCOUNT);
	if (!m)
		return -ENOMEM;
	mutex_init(&m->pt_lock);
	xa_init(&m->pt);
	ret = -ENOMEM;
	m->engine = alloc_workqueue("regwatch-mirror", WQ_UNBOUND, 0);
	if (!m->engine)
		goto free;
	m->mm = current->mm;
	mmgrab(m->mm);
	ret = mmu_interval_notifier_insert(&m->notifier, m->mm, 0,
					   TASK_SIZE & PAGE_MASK,
					   &rw_mirror_ops);
	if (ret)
		goto drop;
	file->private_data = m;
	atomic64_inc(&rw_nr_mirrors);
	return nonseekable_open(inode, file);

drop:
	mmdrop(m->mm);
	destroy_workqueue(m->engine);
free:
	kfree(m);
	return ret;
}

static int rw_mirror_release(struct inode *inode, struct file *file)
{
	struct rw_mirror *m = file->private_data;
	unsigned long vpn;
	void *entry;

	/* No ioctl can run: every transfer has completed. */
	destroy_workqueue(m->engine);
	mmu_interval_notifier_remove(&m->notifier);
	xa_for_each(&m->pt, vpn, entry)
		rw_pt_clear(m, vpn);
	xa_destroy(&m->pt);
	mmdrop(m->mm);
	kfree(m);
	atomic64_dec(&rw_nr_mirrors);
	return 0;
}

static const struct file_operations rw_mirror_fops = {
	.owner = THIS_MODULE,
	.open = rw_mirror_open,
	.release = rw_mirror_release,
	.unlocked_ioctl = rw_mirror_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};

static struct miscdevice rw_mirror_miscdev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "regwatch-mirror",
	.fops = &rw_mirror_fops,
	/* Like the monitor: a device only ever reaches its opener's mm. */
	.mode = 0666,
};

int rw_mirror_init(void)
{
	return misc_register(&rw_mirror_miscdev);
}

void rw_mirror_exit(void)
{
	misc_deregister(&rw_mirror_miscdev);
}
