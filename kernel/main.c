// SPDX-License-Identifier: GPL-2.0
/*
 * regwatch: MMU-notifier based invalidation monitor for registration
 * caches. This file holds what is module-wide: parameters, per-user
 * watch accounting, the debugfs summary and the misc devices.
 */
#include <linux/debugfs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "internal.h"

unsigned int rw_default_ring_entries = 4096;
module_param_named(default_ring_entries, rw_default_ring_entries, uint, 0444);
MODULE_PARM_DESC(default_ring_entries, "Event ring entries when CONFIG asks for 0");

unsigned int rw_max_ring_entries = 1U << 20;
module_param_named(max_ring_entries, rw_max_ring_entries, uint, 0444);
MODULE_PARM_DESC(max_ring_entries, "Largest event ring a monitor may ask for");

unsigned int rw_default_max_watches = 65536;
module_param_named(default_max_watches, rw_default_max_watches, uint, 0444);
MODULE_PARM_DESC(default_max_watches, "Watches per monitor when CONFIG asks for 0");

unsigned int rw_max_watches_limit = 1U << 20;
module_param_named(max_watches_limit, rw_max_watches_limit, uint, 0444);
MODULE_PARM_DESC(max_watches_limit, "Largest max_watches a monitor may ask for");

unsigned int rw_max_user_watches = 1U << 20;
module_param_named(max_user_watches, rw_max_user_watches, uint, 0644);
MODULE_PARM_DESC(max_user_watches, "Watches one user may hold over all monitors");

unsigned int rw_test_ignore_classes;
module_param_named(test_ignore_classes, rw_test_ignore_classes, uint, 0644);
MODULE_PARM_DESC(test_ignore_classes, "TEST ONLY: REGWATCH_CLASS_* bits to ignore");

bool rw_test_skip_watch_sync;
module_param_named(test_skip_watch_sync, rw_test_skip_watch_sync, bool, 0644);
MODULE_PARM_DESC(test_skip_watch_sync, "TEST ONLY: WATCH does not wait for running invalidations");

bool rw_test_no_signal;
module_param_named(test_no_signal, rw_test_no_signal, bool, 0644);
MODULE_PARM_DESC(test_no_signal, "TEST ONLY: SET_SIGNAL is accepted but no signal is sent");

atomic64_t rw_nr_monitors;
atomic64_t rw_nr_watches;
atomic64_t rw_nr_pages;
atomic64_t rw_nr_nonblock;

static LIST_HEAD(rw_users);
static DEFINE_SPINLOCK(rw_users_lock);

static struct rw_user *rw_user_find(kuid_t uid)
{
	struct rw_user *user;

	list_for_each_entry(user, &rw_users, node)
		if (uid_eq(user->uid, uid) && refcount_inc_not_zero(&user->ref))
			return user;
	return NULL;
}

struct rw_user *rw_user_get(kuid_t uid)
{
	struct rw_user *user, *fresh;

	spin_lock(&rw_users_lock);
	user = rw_user_find(uid);
	spin_unlock(&rw_users_lock);
	if (user)
		return user;

	fresh = kzalloc(sizeof(*fresh), GFP_KERNEL);
	if (!fresh)
		return NULL;
	fresh->uid = uid;
	refcount_set(&fresh->ref, 1);
	spin_lock(&rw_users_lock);
	user = rw_user_find(uid);	/* lost a race with another open? */
	if (!user) {
		list_add(&fresh->node, &rw_users);
		user = fresh;
		fresh = NULL;
	}
	spin_unlock(&rw_users_lock);
	kfree(fresh);
	return user;
}

void rw_user_put(struct rw_user *user)
{
	if (!refcount_dec_and_lock(&user->ref, &rw_users_lock))
		return;
	list_del(&user->node);
	spin_unlock(&rw_users_lock);
	kfree(user);
}

/*
 * STATS structs of both devices start with {u32 size; u32 pad;}: check
 * them (size at least min, at most a page; pad zero).
 */
int rw_stats_size(void __user *arg, size_t min, u32 *usize)
{
	u32 pad;

	if (get_user(*usize, (u32 __user *)arg) ||
	    get_user(pad, (u32 __user *)arg + 1))
		return -EFAULT;
	if (*usize < min || pad)
		return -EINVAL;
	if (*usize > PAGE_SIZE)
		return -E2BIG;
	return 0;
}

/* Copy what fits; a newer, longer struct reads zero past what we know. */
int rw_stats_copy_out(void __user *arg, const void *st, size_t ksize,
		      u32 usize)
{
	if (copy_to_user(arg, st, min_t(size_t, usize, ksize)))
		return -EFAULT;
	if (usize > ksize && clear_user(arg + ksize, usize - ksize))
		return -EFAULT;
	return 0;
}

static int rw_debugfs_show(struct seq_file *m, void *unused)
{
	seq_printf(m, "monitors %lld\n", atomic64_read(&rw_nr_monitors));
	seq_printf(m, "watches %lld\n", atomic64_read(&rw_nr_watches));
	seq_printf(m, "pages %lld\n", atomic64_read(&rw_nr_pages));
	seq_printf(m, "nonblock %lld\n", atomic64_read(&rw_nr_nonblock));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(rw_debugfs);

static struct dentry *rw_debugfs_dir;

static struct miscdevice rw_miscdev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "regwatch",
	.fops = &rw_fops,
	/* Any user may watch: a monitor only ever sees its opener's mm. */
	.mode = 0666,
};

static int __init rw_init(void)
{
	int ret;

	if (!rw_default_ring_entries || !rw_default_max_watches ||
	    rw_default_ring_entries > rw_max_ring_entries ||
	    rw_default_max_watches > rw_max_watches_limit ||
	    rw_max_ring_entries > (1U << 24) ||
	    rw_max_watches_limit > (1U << 24)) {
		pr_err("regwatch: inconsistent ring or watch limits\n");
		return -EINVAL;
	}
	ret = misc_register(&rw_miscdev);
	if (ret)
		return ret;
	ret = rw_mirror_init();
	if (ret) {
		misc_deregister(&rw_miscdev);
		return ret;
	}
	rw_debugfs_dir = debugfs_create_dir("regwatch", NULL);
	debugfs_create_file("stats", 0444, rw_debugfs_dir, NULL,
			    &rw_debugfs_fops);
	return 0;
}

/* Open monitors hold a module reference (fops.owner), so none is left. */
static void __exit rw_exit(void)
{
	debugfs_remove_recursive(rw_debugfs_dir);
	rw_mirror_exit();
	misc_deregister(&rw_miscdev);
}

module_init(rw_init);
module_exit(rw_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Userspace notification of MMU invalidations for registration caches");
MODULE_AUTHOR("The regwatch developers");
