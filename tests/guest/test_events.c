// SPDX-License-Identifier: MIT
/*
 * One test per source of invalidation: each one does the operation on
 * watched memory and checks that the watch fired (state word and exactly
 * one event with the right class, id, cookie and sub-range clipped to the
 * watch) and that control watches on memory the operation did not touch
 * stayed quiet.
 *
 * Test names start with the class their source produces (unmap_, clear_,
 * prot_, softdirty_, exit_): tests/guest/run.sh sets the module's
 * test_ignore_classes to one class at a time and expects exactly that
 * class's tests to fail.
 * So every test here must need its own class to pass, and must not need
 * any other class: cleanup that fires other classes comes after the
 * checks.
 */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <numaif.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest_util.h"
#include "rwt_util.h"

#define PG		gu_page()
#define THP_SIZE	(2UL << 20)
#define KSM_DIR		"/sys/kernel/mm/ksm"

static char *pg(void *base, size_t i)
{
	return (char *)base + i * PG;
}

/* ---- UNMAP ----------------------------------------------------------- */

static void unmap_munmap_whole(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	char *other = gu_map_anon(4);
	struct gu_watch w, ctl;
	struct gu_events ev;

	(void)state;
	/* The mapping is wider than the watch: the event must be clipped. */
	gu_watch(rw, pg(p, 4), 8 * PG, 0, &w);
	gu_watch(rw, other, 4 * PG, 0, &ctl);
	gu_unmap(p, 16);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_UNMAP, pg(p, 4), pg(p, 12));
	gu_assert_quiet(&ev, &ctl);
	gu_assert_nevents(&ev, 1);

	gu_unmap(other, 4);
	regwatch_close(rw);
}

static void unmap_munmap_middle(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	struct gu_watch w, left, right;
	struct gu_events ev;

	(void)state;
	gu_watch(rw, p, 16 * PG, 0, &w);
	/* Adjacent on both sides of the hole, not overlapping it. */
	gu_watch(rw, p, 4 * PG, 0, &left);
	gu_watch(rw, pg(p, 8), 8 * PG, 0, &right);
	gu_unmap(pg(p, 4), 4);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_UNMAP, pg(p, 4), pg(p, 8));
	gu_assert_quiet(&ev, &left);
	gu_assert_quiet(&ev, &right);
	gu_assert_nevents(&ev, 1);

	gu_unmap(p, 4);
	gu_unmap(pg(p, 8), 8);
	regwatch_close(rw);
}

static void unmap_mremap_move(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	char *other = gu_map_anon(4);
	char *dst, *q;
	struct gu_watch w, ctl;
	struct gu_events ev;

	(void)state;
	/* A reserved destination makes the move certain (MREMAP_FIXED). */
	dst = mmap(NULL, 16 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	assert_true(dst != MAP_FAILED);
	gu_watch(rw, p, 16 * PG, 0, &w);
	gu_watch(rw, other, 4 * PG, 0, &ctl);
	q = mremap(p, 16 * PG, 16 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	assert_ptr_equal(q, dst);
	assert_int_equal(q[5 * PG], 0x11 + 5);	/* the pages moved */

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_UNMAP, p, pg(p, 16));
	gu_assert_quiet(&ev, &ctl);
	gu_assert_nevents(&ev, 1);

	gu_unmap(dst, 16);
	gu_unmap(other, 4);
	regwatch_close(rw);
}

static void unmap_mremap_shrink(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	struct gu_watch w, kept;
	struct gu_events ev;

	(void)state;
	gu_watch(rw, p, 16 * PG, 0, &w);
	gu_watch(rw, p, 8 * PG, 0, &kept);
	assert_ptr_equal(mremap(p, 16 * PG, 8 * PG, 0), p);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_UNMAP, pg(p, 8), pg(p, 16));
	gu_assert_quiet(&ev, &kept);
	gu_assert_nevents(&ev, 1);

	gu_unmap(p, 8);
	regwatch_close(rw);
}

static void unmap_mmap_fixed(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	struct gu_watch w, left, right;
	struct gu_events ev;
	void *q;

	(void)state;
	gu_watch(rw, p, 16 * PG, 0, &w);
	gu_watch(rw, p, 4 * PG, 0, &left);
	gu_watch(rw, pg(p, 8), 8 * PG, 0, &right);
	q = mmap(pg(p, 4), 4 * PG, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	assert_ptr_equal(q, pg(p, 4));

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_UNMAP, pg(p, 4), pg(p, 8));
	gu_assert_quiet(&ev, &left);
	gu_assert_quiet(&ev, &right);
	gu_assert_nevents(&ev, 1);

	gu_unmap(p, 16);
	regwatch_close(rw);
}

static void unmap_brk_shrink(void **state)
{
	struct regwatch *rw = gu_open();
	struct gu_watch w, kept;
	struct gu_events ev;
	char *cur, *base;

	(void)state;
	/*
	 * Grow the heap by 8 pages from a page boundary, watch the top and
	 * shrink it by 4. Nothing between sbrk calls may allocate: malloc
	 * could take heap above us, which the shrink would then cut.
	 */
	cur = sbrk(0);
	base = (char *)gu_page_up((uintptr_t)cur);
	assert_true(sbrk(base - cur + 8 * PG) != (void *)-1);
	assert_ptr_equal(sbrk(0), pg(base, 8));
	gu_fill(base, 8);
	gu_watch(rw, base, 8 * PG, 0, &w);
	gu_watch(rw, base, 4 * PG, 0, &kept);
	assert_ptr_equal(sbrk(0), pg(base, 8));
	assert_true(sbrk(-(intptr_t)(4 * PG)) != (void *)-1);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_UNMAP, pg(base, 4),
			pg(base, 8));
	gu_assert_quiet(&ev, &kept);
	gu_assert_nevents(&ev, 1);

	/* Back to where the heap was. */
	assert_true(sbrk(-(pg(base, 4) - cur)) != (void *)-1);
	assert_ptr_equal(sbrk(0), cur);
	regwatch_close(rw);
}

static void unmap_shmdt(void **state)
{
	struct regwatch *rw = gu_open();
	char *other = gu_map_anon(4);
	struct gu_watch w, ctl;
	struct gu_events ev;
	char *p;
	int id;

	(void)state;
	id = shmget(IPC_PRIVATE, 16 * PG, IPC_CREAT | 0600);
	assert_true(id >= 0);
	p = shmat(id, NULL, 0);
	assert_true(p != (void *)-1);
	/* Marked for removal now: freed at the detach, even if we fail. */
	assert_int_equal(shmctl(id, IPC_RMID, NULL), 0);
	gu_fill(p, 16);
	gu_watch(rw, pg(p, 4), 8 * PG, 0, &w);
	gu_watch(rw, other, 4 * PG, 0, &ctl);
	assert_int_equal(shmdt(p), 0);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_UNMAP, pg(p, 4), pg(p, 12));
	gu_assert_quiet(&ev, &ctl);
	gu_assert_nevents(&ev, 1);

	gu_unmap(other, 4);
	regwatch_close(rw);
}

/*
 * A streaming watch reports every invalidation with its own exact range;
 * a one-shot watch on the same range reports the first and coalesces the
 * rest.
 */
static void unmap_streaming(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	struct gu_watch s, once;
	struct regwatch_stats st;
	struct gu_events ev;
	const uintptr_t ranges[][2] = {
		{ (uintptr_t)pg(p, 2), (uintptr_t)pg(p, 3) },
		{ (uintptr_t)pg(p, 5), (uintptr_t)pg(p, 6) },
		{ (uintptr_t)pg(p, 9), (uintptr_t)pg(p, 11) },
		{ (uintptr_t)pg(p, 15), (uintptr_t)pg(p, 16) },
	};

	(void)state;
	gu_watch(rw, p, 16 * PG, REGWATCH_WATCH_STREAMING, &s);
	gu_watch(rw, p, 16 * PG, 0, &once);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(munmap((void *)ranges[i][0],
					ranges[i][1] - ranges[i][0]), 0);

	gu_drain(rw, &ev);
	gu_assert_stream(&ev, &s, REGWATCH_CLASS_UNMAP, ranges, 4);
	gu_assert_fired(&ev, &once, REGWATCH_CLASS_UNMAP, pg(p, 2), pg(p, 3));
	gu_assert_nevents(&ev, 5);
	gu_stats(rw, &st);
	assert_int_equal(st.coalesced, 3);

	gu_unmap(p, 2);
	gu_unmap(pg(p, 3), 2);
	gu_unmap(pg(p, 6), 3);
	gu_unmap(pg(p, 11), 4);
	regwatch_close(rw);
}

/*
 * Overlapping watches both fire, each with the hole clipped to itself;
 * watches that touch the hole's edges without overlapping it stay quiet.
 */
static void unmap_overlapping_watches(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	struct gu_watch a, b, edge_left, edge_right;
	struct gu_events ev;

	(void)state;
	gu_watch(rw, p, 8 * PG, 0, &a);			/* [0, 8) */
	gu_watch(rw, pg(p, 4), 8 * PG, 0, &b);		/* [4, 12) */
	gu_watch(rw, pg(p, 2), 4 * PG, 0, &edge_left);	/* [2, 6) */
	gu_watch(rw, pg(p, 10), 6 * PG, 0, &edge_right);	/* [10, 16) */
	gu_unmap(pg(p, 6), 4);					/* [6, 10) */

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &a, REGWATCH_CLASS_UNMAP, pg(p, 6), pg(p, 8));
	gu_assert_fired(&ev, &b, REGWATCH_CLASS_UNMAP, pg(p, 6), pg(p, 10));
	gu_assert_quiet(&ev, &edge_left);
	gu_assert_quiet(&ev, &edge_right);
	gu_assert_nevents(&ev, 2);

	gu_unmap(p, 6);
	gu_unmap(pg(p, 10), 6);
	regwatch_close(rw);
}

/* Unaligned watches cover every page they touch, and no more. */
static void unmap_page_rounding(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	struct gu_watch s, tail, beyond;
	struct gu_events ev;
	const uintptr_t ranges[][2] = {
		{ (uintptr_t)pg(p, 4), (uintptr_t)pg(p, 5) },
		{ (uintptr_t)pg(p, 6), (uintptr_t)pg(p, 7) },
	};

	(void)state;
	/* [4p + 100, 6p + 100) covers pages 4, 5 and 6. */
	gu_watch(rw, pg(p, 4) + 100, 2 * PG, REGWATCH_WATCH_STREAMING, &s);
	gu_watch(rw, pg(p, 7) + 50, 10, 0, &tail);	/* page 7 */
	gu_watch(rw, pg(p, 9) + 10, 1, 0, &beyond);	/* page 9 */
	gu_unmap(pg(p, 2), 3);		/* [2, 5): clipped to page 4 */
	gu_unmap(pg(p, 6), 3);		/* [6, 9): pages 6 (s) and 7 (tail) */

	gu_drain(rw, &ev);
	gu_assert_stream(&ev, &s, REGWATCH_CLASS_UNMAP, ranges, 2);
	gu_assert_fired(&ev, &tail, REGWATCH_CLASS_UNMAP, pg(p, 7),
			pg(p, 8));
	gu_assert_quiet(&ev, &beyond);
	gu_assert_nevents(&ev, 3);

	gu_unmap(p, 2);
	gu_unmap(pg(p, 5), 1);
	gu_unmap(pg(p, 9), 7);
	regwatch_close(rw);
}

/* ---- CLEAR ----------------------------------------------------------- */

/* Watch all 16 pages of p, madvise pages [4, 8), expect CLEAR there. */
static void madvise_middle(void *p, int advice)
{
	struct regwatch *rw = gu_open();
	struct gu_watch w, left, right;
	struct gu_events ev;

	gu_watch(rw, p, 16 * PG, 0, &w);
	gu_watch(rw, p, 4 * PG, 0, &left);
	gu_watch(rw, pg(p, 8), 8 * PG, 0, &right);
	assert_int_equal(madvise(pg(p, 4), 4 * PG, advice), 0);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_CLEAR, pg(p, 4), pg(p, 8));
	gu_assert_quiet(&ev, &left);
	gu_assert_quiet(&ev, &right);
	gu_assert_nevents(&ev, 1);
	regwatch_close(rw);
}

static void clear_madv_dontneed(void **state)
{
	char *p = gu_map_anon(16);

	(void)state;
	madvise_middle(p, MADV_DONTNEED);
	gu_unmap(p, 16);
}

static void clear_madv_free(void **state)
{
	char *p = gu_map_anon(16);

	(void)state;
	madvise_middle(p, MADV_FREE);
	gu_unmap(p, 16);
}

static void clear_madv_remove(void **state)
{
	int fd;
	char *p = gu_map_memfd(16, &fd);

	(void)state;
	madvise_middle(p, MADV_REMOVE);
	gu_unmap(p, 16);
	close(fd);
}

/*
 * MADV_PAGEOUT of pages 4-7 of a fresh mapping, watching page 5 (page 12
 * is the control). Reclaim fires once per page, in reclaim's context
 * (PF_MEMALLOC), so the event is flagged BACKGROUND.
 *
 * lazy: a CLEAR that changes no page. The pages were MADV_FREE'd and
 * written again first: try_to_unmap() announces the CLEAR before it
 * looks, finds them dirty and maps the same pages back. The module cannot
 * know the unmap will be undone, so it must report it (a cache that
 * trusted the page would be right this time, but the next reclaim may
 * free it).
 */
static void pageout_case(bool lazy)
{
	struct regwatch *rw = gu_open();
	cpu_set_t old, one;
	struct gu_watch w, ctl;
	struct gu_events ev;
	uint64_t before = 0;
	char *p;
	int ret;

	/*
	 * New (and lazily freed) pages wait in a per-CPU batch before they
	 * reach their LRU, and PAGEOUT drains only its own CPU's batch: stay
	 * on one CPU.
	 */
	assert_int_equal(sched_getaffinity(0, sizeof(old), &old), 0);
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
	p = gu_map_anon(16);
	if (lazy) {
		assert_int_equal(madvise(pg(p, 4), 4 * PG, MADV_FREE), 0);
		memset(pg(p, 4), 0x5c, 4 * PG);	/* dirty again: kept */
		before = rwt_pagemap(pg(p, 5));
	}
	gu_watch(rw, pg(p, 5), PG, 0, &w);
	gu_watch(rw, pg(p, 12), PG, 0, &ctl);
	w.background = REGWATCH_EVENT_BACKGROUND;
	ret = madvise(pg(p, 4), 4 * PG, MADV_PAGEOUT);
	assert_int_equal(sched_setaffinity(0, sizeof(old), &old), 0);
	assert_int_equal(ret, 0);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_CLEAR, pg(p, 5), pg(p, 6));
	gu_assert_quiet(&ev, &ctl);
	gu_assert_nevents(&ev, 1);
	if (lazy) {
		/* The same page, still mapped, with what was written last. */
		assert_true(before != ~0ULL && before >> 63);
		assert_true(rwt_pagemap(pg(p, 5)) == before);
		assert_int_equal(p[5 * PG], 0x5c);
	} else {
		assert_int_equal(p[5 * PG], 0x11 + 5);	/* swapped back in */
	}

	gu_unmap(p, 16);
	regwatch_close(rw);
}

static void clear_madv_pageout(void **state)
{
	(void)state;
	pageout_case(false);
}

static void clear_reclaim_keeps_lazy_page(void **state)
{
	(void)state;
	pageout_case(true);
}

static void clear_ftruncate(void **state)
{
	struct regwatch *rw = gu_open();
	struct gu_watch w, kept;
	struct gu_events ev;
	int fd;
	char *p = gu_map_memfd(16, &fd);

	(void)state;
	gu_watch(rw, p, 16 * PG, 0, &w);
	gu_watch(rw, p, 8 * PG, 0, &kept);
	assert_int_equal(ftruncate(fd, (off_t)(8 * PG)), 0);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_CLEAR, pg(p, 8), pg(p, 16));
	gu_assert_quiet(&ev, &kept);
	gu_assert_nevents(&ev, 1);

	gu_unmap(p, 16);
	close(fd);
	regwatch_close(rw);
}

static void clear_punch_hole(void **state)
{
	struct regwatch *rw = gu_open();
	struct gu_watch w, left, right;
	struct gu_events ev;
	int fd;
	char *p = gu_map_memfd(16, &fd);

	(void)state;
	gu_watch(rw, p, 16 * PG, 0, &w);
	gu_watch(rw, p, 4 * PG, 0, &left);
	gu_watch(rw, pg(p, 8), 8 * PG, 0, &right);
	assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE |
				   FALLOC_FL_KEEP_SIZE,
				   (off_t)(4 * PG), (off_t)(4 * PG)), 0);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_CLEAR, pg(p, 4), pg(p, 8));
	gu_assert_quiet(&ev, &left);
	gu_assert_quiet(&ev, &right);
	gu_assert_nevents(&ev, 1);

	gu_unmap(p, 16);
	close(fd);
	regwatch_close(rw);
}

static void clear_move_pages(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	void *addrs[4];
	int nodes[4], status[4], cur = -1, target;
	struct gu_watch w, ctl;
	struct gu_events ev;

	(void)state;
	assert_true(numa_available() >= 0);
	assert_true(numa_max_node() >= 1);
	/* Pages sit on the node the process ran on: move to the other. */
	addrs[0] = pg(p, 5);
	assert_int_equal(move_pages(0, 1, addrs, NULL, &cur, 0), 0);
	assert_true(cur >= 0);
	target = cur == 0 ? 1 : 0;
	for (int i = 0; i < 4; i++) {
		addrs[i] = pg(p, 4 + i);
		nodes[i] = target;
	}
	/* Migration fires once per page: watch single pages. */
	gu_watch(rw, pg(p, 5), PG, 0, &w);
	gu_watch(rw, pg(p, 12), PG, 0, &ctl);
	assert_int_equal(move_pages(0, 4, addrs, nodes, status,
				    MPOL_MF_MOVE), 0);
	if (status[1] != target)
		print_error("page 5 not moved: status %d (from node %d)\n",
			    status[1], cur);
	assert_int_equal(status[1], target);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_CLEAR, pg(p, 5), pg(p, 6));
	gu_assert_quiet(&ev, &ctl);
	gu_assert_nevents(&ev, 1);

	gu_unmap(p, 16);
	regwatch_close(rw);
}

/* AnonHugePages of the VMA that starts at addr, in kB (-1: no such VMA). */
static long anon_huge_kb(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in_vma = false;
	long kb = -1;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;
		int len = 0;

		if (sscanf(line, "%lx-%lx %n", &start, &end, &len) == 2 &&
		    len > 0) {
			in_vma = start == (uintptr_t)addr;
			continue;
		}
		if (in_vma && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

/*
 * THP split: mprotect of one 4 KiB page of a 2 MiB THP splits the PMD,
 * which invalidates the whole 2 MiB. A watch on another 4 KiB page of it
 * is hit only by the split: the mprotect itself (PROTECTION) does not fire
 * a default watch.
 */
static void clear_thp_split(void **state)
{
	struct regwatch *rw = gu_open();
	struct gu_watch w, ctl;
	struct gu_events ev;
	char *raw, *thp;
	long kb;

	(void)state;
	raw = mmap(NULL, 2 * THP_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(raw != MAP_FAILED);
	thp = (char *)(((uintptr_t)raw + THP_SIZE - 1) & ~(THP_SIZE - 1));
	/* THP is in madvise mode in the guest. */
	assert_int_equal(madvise(thp, THP_SIZE, MADV_HUGEPAGE), 0);
	memset(thp, 0x5a, THP_SIZE);
	kb = anon_huge_kb(thp);
	if (kb != (long)(THP_SIZE >> 10))
		print_error("no THP behind %p (AnonHugePages %ld kB)\n",
			    (void *)thp, kb);
	assert_int_equal(kb, THP_SIZE >> 10);

	gu_watch(rw, pg(thp, 100), PG, 0, &w);
	/* Outside the huge page (before it, or after it if aligned). */
	gu_watch(rw, thp == raw ? thp + THP_SIZE : raw, PG, 0, &ctl);
	assert_int_equal(mprotect(pg(thp, 10), PG, PROT_READ), 0);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_CLEAR, pg(thp, 100),
			pg(thp, 101));
	gu_assert_quiet(&ev, &ctl);
	gu_assert_nevents(&ev, 1);

	assert_int_equal(munmap(raw, 2 * THP_SIZE), 0);
	regwatch_close(rw);
}

/* KSM knobs, saved by ksm_setup and put back by ksm_teardown. */
static const char *const ksm_knobs[] = {
	"pages_to_scan", "sleep_millisecs", "run",
};
static char ksm_saved[3][32];

static int ksm_setup(void **state)
{
	char path[128];

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), KSM_DIR "/%s", ksm_knobs[i]);
		if (gu_read_file(path, ksm_saved[i], sizeof(ksm_saved[i])))
			return -1;
	}
	return 0;
}

static int ksm_teardown(void **state)
{
	char path[128];
	int ret = 0;

	(void)state;
	/* run first: stop ksmd before putting its pace back. */
	for (int i = 2; i >= 0; i--) {
		snprintf(path, sizeof(path), KSM_DIR "/%s", ksm_knobs[i]);
		if (gu_write_file(path, ksm_saved[i]))
			ret = -1;
	}
	return ret;
}

/*
 * KSM merge: 8 identical mergeable pages and one unique one. ksmd
 * write-protects and replaces the identical pages (CLEAR each); the
 * unique page is scanned but never merged, so its watch must stay quiet.
 */
static void clear_ksm_merge(void **state)
{
	struct regwatch *rw = gu_open();
	struct gu_watch w, ctl;
	struct gu_events ev;
	long sharing0, sharing = 0;
	uint64_t deadline;
	bool fired = false;
	char *p;

	(void)state;
	p = mmap(NULL, 9 * PG, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	/* Content no other page in the guest is likely to have. */
	srand((unsigned int)getpid() ^ (unsigned int)gu_now_ms());
	for (size_t i = 0; i < PG; i++)
		p[i] = (char)rand();
	for (size_t i = 1; i < 8; i++)
		memcpy(pg(p, i), p, PG);
	for (size_t i = 0; i < PG; i++)
		p[8 * PG + i] = (char)rand();
	assert_int_equal(madvise(p, 9 * PG, MADV_MERGEABLE), 0);

	/* Merging goes page by page: watch single pages. */
	gu_watch(rw, pg(p, 3), PG, 0, &w);
	gu_watch(rw, pg(p, 8), PG, 0, &ctl);
	w.background = REGWATCH_EVENT_BACKGROUND;	/* ksmd merges */
	sharing0 = gu_read_long(KSM_DIR "/pages_sharing");
	assert_int_equal(gu_write_file(KSM_DIR "/pages_to_scan", "1000"), 0);
	assert_int_equal(gu_write_file(KSM_DIR "/sleep_millisecs", "10"), 0);
	assert_int_equal(gu_write_file(KSM_DIR "/run", "1"), 0);

	/*
	 * Wait for the event, or until all 7 duplicates are merged: the
	 * notifier runs before KSM counts a merge, so a merge without an
	 * event is a miss, not a slow event.
	 */
	deadline = gu_now_ms() + 15000;
	while (gu_now_ms() < deadline) {
		if (gu_wait_event(rw, 100)) {
			fired = true;
			break;
		}
		sharing = gu_read_long(KSM_DIR "/pages_sharing");
		if (sharing >= sharing0 + 7)
			break;
	}
	assert_int_equal(gu_write_file(KSM_DIR "/run", "0"), 0);
	if (!fired)
		print_error("no event; pages_sharing %ld -> %ld\n", sharing0,
			    sharing);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &w, REGWATCH_CLASS_CLEAR, pg(p, 3), pg(p, 4));
	gu_assert_quiet(&ev, &ctl);
	gu_assert_nevents(&ev, 1);

	gu_unmap(p, 9);
	regwatch_close(rw);
}

/* ---- PROTECTION ------------------------------------------------------ */

/* mprotect fires only watches that asked for PROTECTION. */
static void prot_mprotect(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	struct gu_watch plain, prot, prot_ctl;
	struct gu_events ev;

	(void)state;
	gu_watch(rw, p, 16 * PG, 0, &plain);
	gu_watch(rw, p, 16 * PG, REGWATCH_WATCH_PROTECTION, &prot);
	gu_watch(rw, pg(p, 8), 8 * PG, REGWATCH_WATCH_PROTECTION, &prot_ctl);
	assert_int_equal(mprotect(pg(p, 4), 4 * PG, PROT_READ), 0);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &prot, REGWATCH_CLASS_PROTECTION, pg(p, 4),
			pg(p, 8));
	gu_assert_quiet(&ev, &plain);
	gu_assert_quiet(&ev, &prot_ctl);
	gu_assert_nevents(&ev, 1);

	gu_unmap(p, 16);
	regwatch_close(rw);
}

/*
 * fork write-protects the parent's private pages (COW) over the whole
 * VMA: a PROTECTION watch fires, clipped to itself; a default watch does
 * not; shared memory is not write-protected at all.
 */
static void prot_fork(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	char *shared = gu_map_shared_anon(4);
	struct gu_watch plain, prot, shared_ctl;
	struct gu_events ev;
	int status;
	pid_t pid;

	(void)state;
	gu_watch(rw, pg(p, 4), 4 * PG, 0, &plain);
	gu_watch(rw, pg(p, 4), 4 * PG, REGWATCH_WATCH_PROTECTION, &prot);
	gu_watch(rw, shared, 4 * PG, REGWATCH_WATCH_PROTECTION, &shared_ctl);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &prot, REGWATCH_CLASS_PROTECTION, pg(p, 4),
			pg(p, 8));
	gu_assert_quiet(&ev, &plain);
	gu_assert_quiet(&ev, &shared_ctl);
	gu_assert_nevents(&ev, 1);

	gu_unmap(p, 16);
	gu_unmap(shared, 4);
	regwatch_close(rw);
}

/* ---- SOFT_DIRTY ------------------------------------------------------ */

/*
 * Clearing soft-dirty bits (clear_refs 4) invalidates the whole address
 * space with SOFT_DIRTY: only a watch that asked for that class fires,
 * clipped to itself; default and PROTECTION watches do not.
 */
static void softdirty_clear_refs(void **state)
{
	struct regwatch *rw = gu_open();
	char *p = gu_map_anon(16);
	struct gu_watch plain, prot, sd;
	struct gu_events ev;

	(void)state;
	gu_watch(rw, pg(p, 4), 8 * PG, 0, &plain);
	gu_watch(rw, pg(p, 4), 8 * PG, REGWATCH_WATCH_PROTECTION, &prot);
	gu_watch(rw, pg(p, 4), 8 * PG, REGWATCH_WATCH_SOFT_DIRTY, &sd);
	assert_int_equal(gu_write_file("/proc/self/clear_refs", "4"), 0);

	gu_drain(rw, &ev);
	gu_assert_fired(&ev, &sd, REGWATCH_CLASS_SOFT_DIRTY, pg(p, 4),
			pg(p, 12));
	gu_assert_quiet(&ev, &plain);
	gu_assert_quiet(&ev, &prot);
	gu_assert_nevents(&ev, 1);

	gu_unmap(p, 16);
	regwatch_close(rw);
}

/* ---- RELEASE --------------------------------------------------------- */

/*
 * Process exit. A monitor serves only its opener's mm, and exit tears
 * down that mm and then closes the fd, so nobody can read the event's
 * class: exit_mmap() delivers RELEASE and then UNMAP over everything.
 * What is observable from outside: the eventfd the child registered is
 * signalled at its exit (and not before), and the child's monitor and
 * watches are gone from the module-wide counters afterwards.
 *
 * run.sh shows that RELEASE itself is delivered: this test passes with
 * UNMAP ignored (so RELEASE alone signalled the exit) and fails with
 * UNMAP and RELEASE both ignored.
 */
static void exit_release(void **state)
{
	struct regwatch *rw = gu_open();	/* for module-wide counters */
	struct regwatch_stats st0, st;
	int efd, up[2], down[2], status;
	uint64_t count = 0;
	char c = 0;
	pid_t pid;

	(void)state;
	gu_stats(rw, &st0);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(efd >= 0);
	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Child: no cmocka asserts here, only an exit status. */
		struct regwatch *crw;
		struct regwatch_ref a, b;
		char *mem = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (mem == MAP_FAILED || regwatch_open(NULL, &crw) ||
		    regwatch_set_eventfd(crw, efd) ||
		    regwatch_watch(crw, mem, 2 * PG, 1, 0, &a) ||
		    regwatch_watch(crw, mem + 2 * PG, 2 * PG, 2,
				   REGWATCH_WATCH_STREAMING, &b))
			_exit(2);
		if (write(up[1], "r", 1) != 1 || read(down[0], &c, 1) != 1)
			_exit(3);
		_exit(0);	/* the monitor's fd is still open here */
	}
	close(up[1]);
	close(down[0]);
	if (read(up[0], &c, 1) != 1) {
		waitpid(pid, &status, 0);
		print_error("child failed to set up its monitor (status %#x)\n",
			    status);
		fail();
	}

	gu_stats(rw, &st);
	assert_int_equal(st.module_monitors, st0.module_monitors + 1);
	assert_int_equal(st.module_watches, st0.module_watches + 2);
	/* Nothing fired while the child lived. */
	assert_int_equal(read(efd, &count, sizeof(count)), -1);
	assert_int_equal(errno, EAGAIN);

	assert_int_equal(write(down[1], "x", 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	if (read(efd, &count, sizeof(count)) != sizeof(count))
		print_error("the child's exit did not signal its eventfd\n");
	assert_true(count >= 1);

	/* The fd closed at exit: the monitor and its watches are freed. */
	gu_stats(rw, &st);
	assert_int_equal(st.module_monitors, st0.module_monitors);
	assert_int_equal(st.module_watches, st0.module_watches);

	close(up[0]);
	close(down[1]);
	close(efd);
	regwatch_close(rw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unmap_munmap_whole),
		cmocka_unit_test(unmap_munmap_middle),
		cmocka_unit_test(unmap_mremap_move),
		cmocka_unit_test(unmap_mremap_shrink),
		cmocka_unit_test(unmap_mmap_fixed),
		cmocka_unit_test(unmap_brk_shrink),
		cmocka_unit_test(unmap_shmdt),
		cmocka_unit_test(unmap_streaming),
		cmocka_unit_test(unmap_overlapping_watches),
		cmocka_unit_test(unmap_page_rounding),
		cmocka_unit_test(clear_madv_dontneed),
		cmocka_unit_test(clear_madv_free),
		cmocka_unit_test(clear_madv_remove),
		cmocka_unit_test(clear_madv_pageout),
		cmocka_unit_test(clear_reclaim_keeps_lazy_page),
		cmocka_unit_test(clear_ftruncate),
		cmocka_unit_test(clear_punch_hole),
		cmocka_unit_test(clear_move_pages),
		cmocka_unit_test(clear_thp_split),
		cmocka_unit_test_setup_teardown(clear_ksm_merge, ksm_setup,
						ksm_teardown),
		cmocka_unit_test(prot_mprotect),
		cmocka_unit_test(prot_fork),
		cmocka_unit_test(softdirty_clear_refs),
		cmocka_unit_test(exit_release),
	};

	/* Keep error messages next to the test they belong to. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
