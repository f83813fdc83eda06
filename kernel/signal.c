// SPDX-License-Identifier: GPL-2.0
/*
 * regwatch: synchronous delivery. With REGWATCH_IOC_SET_SIGNAL, a thread
 * of the monitor's process that invalidates watched memory itself (munmap,
 * mremap, madvise, mmap(MAP_FIXED), brk, a COW fault...) gets a signal
 * queued from the notifier callback. The signal is only made pending
 * there; the handler runs when the thread returns to user mode, that is
 * before the invalidating call returns to its caller and after the state
 * word and the ring entry were written.
 *
 * Why sending from the callback is safe: invalidate_range_start callbacks
 * run in process context without spinlocks held (they may sleep when the
 * range is blockable); the locks held are sleeping ones (mmap_lock,
 * i_mmap_rwsem, anon_vma, folio lock). send_sig_info() takes only the
 * target's siglock (an irq-safe spinlock under which nothing takes mm
 * locks), allocates its sigqueue with GFP_ATOMIC (no reclaim, so no
 * recursion into notifiers) and, for current, wakes nobody. The only
 * non-blockable caller (the OOM reaper) is a kernel thread and never a
 * target.
 */
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/signal.h>
#include <linux/uaccess.h>

#include "compat.h"
#include "internal.h"

long rw_ioctl_set_signal(struct rw_monitor *mon, void __user *arg)
{
	struct regwatch_signal req;
	int old;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved[0] || req.reserved[1])
		return -EINVAL;
	if (req.signo < 0 || req.signo > _NSIG ||
	    req.signo == SIGKILL || req.signo == SIGSTOP)
		return -EINVAL;
	old = xchg(&mon->signo, req.signo);
	/*
	 * A callback reads signo and sends under rcu_read_lock(): after the
	 * grace period none can still send the old one, so the caller may
	 * reset its handler once we return.
	 */
	if (old && old != req.signo)
		synchronize_rcu();
	return 0;
}

/*
 * The signal to send to current for this invalidation, or 0. Targets are
 * user threads of the process that opened the monitor, running in its mm:
 * not kernel threads (reclaim, KSM, khugepaged, the OOM reaper), not
 * io_uring workers (they do not run handlers), not other processes that
 * share or reach into the mm (vfork children, process_madvise,
 * move_pages), not a thread that is exiting, and never for the teardown
 * of the mm (current->mm is then another mm or NULL anyway).
 */
int rw_sync_signo(struct rw_monitor *mon,
		  const struct mmu_notifier_range *range)
{
	int signo = READ_ONCE(mon->signo);

	if (!signo || range->event == MMU_NOTIFY_RELEASE)
		return 0;
	if (current->flags & (PF_KTHREAD | PF_IO_WORKER | PF_EXITING))
		return 0;
	if (current->mm != mon->mm || task_tgid(current) != mon->tgid)
		return 0;
	return signo;
}

/* true if signo is already pending on current itself (not process-wide). */
static bool rw_pending_here(int signo)
{
	unsigned long irqflags;
	bool pending;

	spin_lock_irqsave(&current->sighand->siglock, irqflags);
	pending = sigismember(&current->pending.signal, signo);
	spin_unlock_irqrestore(&current->sighand->siglock, irqflags);
	return pending;
}

/*
 * Queue signo to current, unless it is pending there already: its handler
 * will run after this callback anyway and drain what we just queued (only
 * current dequeues its own pending signals, so it cannot vanish in
 * between). That keeps a munmap over many watches from queueing one
 * real-time signal per watch.
 */
void rw_sync_send(struct rw_monitor *mon, int signo)
{
	struct kernel_siginfo info;

	if (READ_ONCE(rw_test_no_signal) || rw_pending_here(signo))
		return;
	clear_siginfo(&info);
	info.si_signo = signo;
	info.si_code = SI_KERNEL;
	if (!send_sig_info(signo, &info, current))
		atomic64_inc(&mon->signals);
}
