/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel API differences regwatch cares about, in one place, so the logic
 * never carries version checks. Written against Linux 6.1.
 */
#ifndef REGWATCH_COMPAT_H
#define REGWATCH_COMPAT_H

#include <linux/version.h>
#include <linux/eventfd.h>
#include <linux/mm.h>

/* 6.8 dropped eventfd_signal()'s count argument. */
static inline void rw_eventfd_signal(struct eventfd_ctx *efd)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	eventfd_signal(efd);
#else
	eventfd_signal(efd, 1);
#endif
}

/* 6.3 made vma->vm_flags read-only and added vm_flags_set/clear(). */
static inline void rw_vm_flags_set(struct vm_area_struct *vma,
				   unsigned long set, unsigned long clear)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_mod(vma, set, clear);
#else
	vma->vm_flags = (vma->vm_flags | set) & ~clear;
#endif
}

/* 5.12 added io_uring worker threads; before, there were none to skip. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 12, 0)
#define PF_IO_WORKER	0
#endif

#endif /* REGWATCH_COMPAT_H */
