/* SPDX-License-Identifier: MIT */
/*
 * Interval treap: an ordered set of half-open intervals [start, end) with
 * overlap queries, used by the registration cache (covering lookups) and
 * by the userfaultfd monitor (which watches an event range hits).
 *
 * Nodes are embedded in the caller's objects. Keys need not be unique and
 * intervals may overlap. Not thread-safe: callers hold their own lock.
 */
#ifndef REGWATCH_CACHE_ITREE_H
#define REGWATCH_CACHE_ITREE_H

#include <stddef.h>
#include <stdint.h>

struct cache_itree_node {
	uintptr_t start;		/* set by the caller before insert */
	uintptr_t end;			/* exclusive; end > start */
	uintptr_t max_end;		/* max end in this subtree (internal) */
	uint32_t prio;			/* heap priority (internal) */
	struct cache_itree_node *left, *right;
};

struct cache_itree {
	struct cache_itree_node *root;
	size_t count;
	uint32_t seed;			/* xorshift state for priorities */
};

void cache_itree_init(struct cache_itree *t);
void cache_itree_insert(struct cache_itree *t, struct cache_itree_node *n);
/* n must be in t. */
void cache_itree_remove(struct cache_itree *t, struct cache_itree_node *n);

/*
 * Call cb(node, arg) for every node overlapping [start, end), in order of
 * start. cb returns 0 to go on; any other value stops the walk and is
 * returned. cb must not modify the tree.
 */
typedef int (*cache_itree_cb)(struct cache_itree_node *n, void *arg);
int cache_itree_visit(const struct cache_itree *t, uintptr_t start,
		      uintptr_t end, cache_itree_cb cb, void *arg);

#endif /* REGWATCH_CACHE_ITREE_H */
