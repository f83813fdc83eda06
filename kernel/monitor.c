// SPDX-License-Identifier: GPL-2.0
/*
 * regwatch: one open /dev/regwatch is one monitor, bound for life to the
 * opener's mm. Everything that acts on the monitor checks that the caller
 * runs in that mm (a forked child or a process the fd was passed to gets
 * EIO), so a process only ever sees its own address space.
 */
#include <linux/cred.h>
#include <linux/fs.h>
#include <linux/pid.h>
#include <linux/poll.h>
#include <linux/rcupdate.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "compat.h"
#include "internal.h"

static void rw_eventfd_workfn(struct work_struct *work)
{
	struct rw_monitor *mon = container_of(work, struct rw_monitor,
					      eventfd_work);
	struct eventfd_ctx *efd;

	rcu_read_lock();
	efd = rcu_dereference(mon->eventfd);
	if (efd)
		rw_eventfd_signal(efd);
	rcu_read_unlock();
}

/*
 * Wake pollers and readers and signal the eventfd. Called from the
 * notifier, outside ring_lock; never sleeps. eventfd_signal() refuses to
 * nest inside another eventfd wake-up, so that rare case goes through a
 * work item instead of being lost.
 */
void rw_notify(struct rw_monitor *mon)
{
	struct eventfd_ctx *efd;

	rcu_read_lock();
	efd = rcu_dereference(mon->eventfd);
	if (efd) {
		if (eventfd_signal_allowed())
			rw_eventfd_signal(efd);
		else
			schedule_work(&mon->eventfd_work);
	}
	rcu_read_unlock();
	wake_up_interruptible_poll(&mon->wq, EPOLLIN | EPOLLRDNORM);
}

static bool rw_foreign(struct rw_monitor *mon)
{
	return current->mm != mon->mm;
}

static int rw_open(struct inode *inode, struct file *file)
{
	struct rw_monitor *mon;

	if (!current->mm)
		return -EINVAL;
	mon = kzalloc(sizeof(*mon), GFP_KERNEL_ACCOUNT);
	if (!mon)
		return -ENOMEM;
	mon->user = rw_user_get(current_euid());
	if (!mon->user) {
		kfree(mon);
		return -ENOMEM;
	}
	mon->mm = current->mm;
	mmgrab(mon->mm);
	mon->tgid = get_pid(task_tgid(current));
	mutex_init(&mon->config_lock);
	mutex_init(&mon->read_lock);
	spin_lock_init(&mon->ring_lock);
	xa_init_flags(&mon->watches, XA_FLAGS_ALLOC);
	init_waitqueue_head(&mon->wq);
	INIT_WORK(&mon->eventfd_work, rw_eventfd_workfn);
	/* misc_open() left the miscdevice here; the monitor replaces it. */
	file->private_data = mon;
	atomic64_inc(&rw_nr_monitors);
	return nonseekable_open(inode, file);
}

/* The last reference is gone: no ioctl, mmap, poll or read can run. */
static int rw_release(struct inode *inode, struct file *file)
{
	struct rw_monitor *mon = file->private_data;
	struct eventfd_ctx *efd;

	rw_watch_remove_all(mon);	/* after this no notifier runs */
	cancel_work_sync(&mon->eventfd_work);
	efd = rcu_dereference_protected(mon->eventfd, 1);
	if (efd)
		eventfd_ctx_put(efd);
	rw_area_destroy(mon);
	xa_destroy(&mon->watches);
	mmdrop(mon->mm);
	put_pid(mon->tgid);
	rw_user_put(mon->user);
	kfree(mon);
	atomic64_dec(&rw_nr_monitors);
	return 0;
}

static int rw_clamp_size(u32 want, u32 dflt, u32 cap, u32 *out)
{
	if (!want)
		want = dflt;
	if (want > cap)
		return -EINVAL;
	*out = want;
	return 0;
}

static long rw_ioctl_config(struct rw_monitor *mon, void __user *arg)
{
	struct regwatch_config cfg;
	u32 usize, entries, watches;
	int ret;

	if (get_user(usize, (u32 __user *)arg))
		return -EFAULT;
	if (usize < offsetofend(struct regwatch_config, consumer_size))
		return -EINVAL;
	if (usize > PAGE_SIZE)
		return -E2BIG;
	ret = copy_struct_from_user(&cfg, sizeof(cfg), arg, usize);
	if (ret)
		return ret;
	if (cfg.abi_version != REGWATCH_ABI_VERSION)
		return -EPROTO;
	if (cfg.flags || memchr_inv(cfg.reserved, 0, sizeof(cfg.reserved)))
		return -EINVAL;
	ret = rw_clamp_size(cfg.ring_entries, rw_default_ring_entries,
			    rw_max_ring_entries, &entries);
	if (!ret)
		ret = rw_clamp_size(cfg.max_watches, rw_default_max_watches,
				    rw_max_watches_limit, &watches);
	if (ret)
		return ret;
	entries = roundup_pow_of_two(max(entries, 8U));

	mutex_lock(&mon->config_lock);
	ret = -EBUSY;
	if (mon->configured)
		goto out;
	ret = rw_area_create(mon, entries, watches);
	if (ret)
		goto out;
	cfg.ring_entries = entries;
	cfg.max_watches = watches;
	cfg.features = REGWATCH_FEAT_ONESHOT | REGWATCH_FEAT_STREAMING |
		       REGWATCH_FEAT_EVENTFD | REGWATCH_FEAT_BATCH |
		       REGWATCH_FEAT_READ | REGWATCH_FEAT_SIGNAL |
		       REGWATCH_FEAT_BACKGROUND;
	cfg.shared_offset = RW_OFF_SHARED;
	cfg.shared_size = (u64)mon->nr_pages << PAGE_SHIFT;
	cfg.consumer_offset = RW_OFF_CONSUMER;
	cfg.consumer_size = PAGE_SIZE;
	if (copy_to_user(arg, &cfg, min_t(size_t, usize, sizeof(cfg)))) {
		rw_area_destroy(mon);
		ret = -EFAULT;
		goto out;
	}
	/* Pairs with the acquire in rw_configured(): the area is complete. */
	smp_store_release(&mon->configured, true);
out:
	mutex_unlock(&mon->config_lock);
	return ret;
}

static bool rw_configured(struct rw_monitor *mon)
{
	/* Pairs with the release in rw_ioctl_config(). */
	return smp_load_acquire(&mon->configured);
}

static long rw_ioctl_set_eventfd(struct rw_monitor *mon, void __user *arg)
{
	struct eventfd_ctx *efd = NULL, *old;
	struct regwatch_eventfd req;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.fd < -1)
		return -EINVAL;
	if (req.fd >= 0) {
		efd = eventfd_ctx_fdget(req.fd);
		if (IS_ERR(efd))
			return PTR_ERR(efd);
	}
	mutex_lock(&mon->config_lock);
	old = rcu_replace_pointer(mon->eventfd, efd,
				  lockdep_is_held(&mon->config_lock));
	mutex_unlock(&mon->config_lock);
	if (old) {
		/* A notifier may still be signalling the old one. */
		synchronize_rcu();
		flush_work(&mon->eventfd_work);
		eventfd_ctx_put(old);
	}
	return 0;
}

static long rw_ioctl_stats(struct rw_monitor *mon, void __user *arg)
{
	struct regwatch_stats st = { };
	u32 usize;
	int i, ret;

	ret = rw_stats_size(arg, offsetofend(struct regwatch_stats, watches),
			    &usize);
	if (ret)
		return ret;
	if (rw_configured(mon)) {
		spin_lock(&mon->ring_lock);
		st.oneshot_reserved = mon->oneshot_armed;
		st.events = mon->cnt.events;
		st.coalesced = mon->cnt.coalesced;
		st.overflows = mon->cnt.overflows;
		st.resyncs = mon->cnt.resyncs;
		st.nonblock_invalidations = mon->cnt.nonblock;
		st.invalidations = mon->cnt.invalidations;
		st.filtered = mon->cnt.filtered;
		for (i = 0; i < REGWATCH_NR_CLASSES; i++)
			st.by_class[i] = mon->cnt.by_class[i];
		spin_unlock(&mon->ring_lock);
	}
	st.size = sizeof(st);
	st.watches = atomic_read(&mon->nr_watches);
	st.module_monitors = atomic64_read(&rw_nr_monitors);
	st.module_watches = atomic64_read(&rw_nr_watches);
	st.module_pages = atomic64_read(&rw_nr_pages);
	st.user_watches = atomic_read(&mon->user->watches);
	st.signals = atomic64_read(&mon->signals);
	return rw_stats_copy_out(arg, &st, sizeof(st), usize);
}

/*
 * Dispatch on the command number; CONFIG and STATS may come with another
 * struct size (they carry their own), the others must match exactly.
 */
static long rw_ioctl(struct file *file, unsigned int cmd, unsigned long uarg)
{
	struct rw_monitor *mon = file->private_data;
	void __user *arg = (void __user *)uarg;

	if (_IOC_TYPE(cmd) != REGWATCH_IOC_MAGIC)
		return -ENOTTY;
	if (rw_foreign(mon))
		return -EIO;
	switch (_IOC_NR(cmd)) {
	case _IOC_NR(REGWATCH_IOC_CONFIG):
		if (_IOC_DIR(cmd) != _IOC_DIR(REGWATCH_IOC_CONFIG))
			return -ENOTTY;
		return rw_ioctl_config(mon, arg);
	case _IOC_NR(REGWATCH_IOC_STATS):
		if (_IOC_DIR(cmd) != _IOC_DIR(REGWATCH_IOC_STATS))
			return -ENOTTY;
		return rw_ioctl_stats(mon, arg);
	}
	if (!rw_configured(mon)) {
		switch (cmd) {
		case REGWATCH_IOC_WATCH:
		case REGWATCH_IOC_UNWATCH:
		case REGWATCH_IOC_WATCHV:
		case REGWATCH_IOC_UNWATCHV:
		case REGWATCH_IOC_SET_EVENTFD:
		case REGWATCH_IOC_SET_SIGNAL:
			return -EBADFD;
		}
		return -ENOTTY;
	}
	switch (cmd) {
	case REGWATCH_IOC_WATCH:
		return rw_ioctl_watch(mon, arg);
	case REGWATCH_IOC_UNWATCH:
		return rw_ioctl_unwatch(mon, arg);
	case REGWATCH_IOC_WATCHV:
		return rw_ioctl_watchv(mon, arg);
	case REGWATCH_IOC_UNWATCHV:
		return rw_ioctl_unwatchv(mon, arg);
	case REGWATCH_IOC_SET_EVENTFD:
		return rw_ioctl_set_eventfd(mon, arg);
	case REGWATCH_IOC_SET_SIGNAL:
		return rw_ioctl_set_signal(mon, arg);
	}
	return -ENOTTY;
}

/*
 * Runs under mmap_write_lock, so it takes no monitor lock: paths that hold
 * one may fault on user memory and take mmap_lock themselves.
 */
static int rw_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct rw_monitor *mon = file->private_data;

	if (vma->vm_mm != mon->mm || rw_foreign(mon))
		return -EIO;
	if (!rw_configured(mon))
		return -EBADFD;
	return rw_area_mmap(mon, vma);
}

static __poll_t rw_poll(struct file *file, poll_table *wait)
{
	struct rw_monitor *mon = file->private_data;

	if (rw_foreign(mon))
		return EPOLLERR;
	poll_wait(file, &mon->wq, wait);
	if (rw_configured(mon) && rw_ring_pending(mon))
		return EPOLLIN | EPOLLRDNORM;
	return 0;
}

/*
 * Copy whole events out of the ring and consume them. The ring is
 * read-only to userspace, so the entries we copy are the kernel's own.
 */
static ssize_t rw_read(struct file *file, char __user *buf, size_t count,
		       loff_t *ppos)
{
	struct rw_monitor *mon = file->private_data;
	size_t esize = sizeof(struct regwatch_event);
	u64 head, prod, n, i;
	ssize_t ret;

	if (rw_foreign(mon))
		return -EIO;
	if (!rw_configured(mon))
		return -EBADFD;
	if (count < esize)
		return -EINVAL;

	mutex_lock(&mon->read_lock);
	while (!rw_ring_pending(mon)) {
		mutex_unlock(&mon->read_lock);
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		if (wait_event_interruptible(mon->wq, rw_ring_pending(mon)))
			return -ERESTARTSYS;
		mutex_lock(&mon->read_lock);
	}
	spin_lock(&mon->ring_lock);
	head = rw_ring_sync_consumer(mon);
	prod = mon->prod;
	spin_unlock(&mon->ring_lock);

	n = min_t(u64, prod - head, count / esize);
	ret = 0;
	for (i = 0; i < n; i++) {
		const struct regwatch_event *ev =
			&mon->ring[(head + i) & (mon->ring_entries - 1)];

		if (copy_to_user(buf + i * esize, ev, esize)) {
			ret = -EFAULT;
			break;
		}
	}
	if (i)
		rw_ring_consume(mon, head + i);
	mutex_unlock(&mon->read_lock);
	return i ? i * esize : ret;
}

const struct file_operations rw_fops = {
	.owner = THIS_MODULE,
	.open = rw_open,
	.release = rw_release,
	.unlocked_ioctl = rw_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = rw_mmap,
	.poll = rw_poll,
	.read = rw_read,
	.llseek = no_llseek,
};
