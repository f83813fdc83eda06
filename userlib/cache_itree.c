// SPDX-License-Identifier: MIT
/*
 * Interval treap (see cache_itree.h). A treap keeps expected O(log n)
 * depth with random priorities and needs no rebalancing cases: insert is
 * a BST insert plus rotations, remove rotates the node down to a leaf.
 * Every node stores the largest end of its subtree so that overlap
 * queries skip subtrees that end before the query starts.
 */
#include "cache_itree.h"

void cache_itree_init(struct cache_itree *t)
{
	t->root = NULL;
	t->count = 0;
	t->seed = 0x9e3779b9u;
}

static uint32_t next_prio(struct cache_itree *t)
{
	uint32_t x = t->seed;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	t->seed = x;
	return x;
}

static uintptr_t max_end_of(const struct cache_itree_node *n)
{
	return n ? n->max_end : 0;
}

static void update(struct cache_itree_node *n)
{
	uintptr_t m = n->end;

	if (max_end_of(n->left) > m)
		m = max_end_of(n->left);
	if (max_end_of(n->right) > m)
		m = max_end_of(n->right);
	n->max_end = m;
}

/* Order: by start, then by address of the node (makes keys unique). */
static int less(const struct cache_itree_node *a,
		const struct cache_itree_node *b)
{
	if (a->start != b->start)
		return a->start < b->start;
	return (uintptr_t)a < (uintptr_t)b;
}

static struct cache_itree_node *rotate_right(struct cache_itree_node *n)
{
	struct cache_itree_node *l = n->left;

	n->left = l->right;
	l->right = n;
	update(n);
	update(l);
	return l;
}

static struct cache_itree_node *rotate_left(struct cache_itree_node *n)
{
	struct cache_itree_node *r = n->right;

	n->right = r->left;
	r->left = n;
	update(n);
	update(r);
	return r;
}

static struct cache_itree_node *insert(struct cache_itree_node *root,
				       struct cache_itree_node *n)
{
	if (!root)
		return n;
	if (less(n, root)) {
		root->left = insert(root->left, n);
		if (root->left->prio > root->prio)
			root = rotate_right(root);
	} else {
		root->right = insert(root->right, n);
		if (root->right->prio > root->prio)
			root = rotate_left(root);
	}
	update(root);
	return root;
}

void cache_itree_insert(struct cache_itree *t, struct cache_itree_node *n)
{
	n->left = n->right = NULL;
	n->prio = next_prio(t);
	n->max_end = n->end;
	t->root = insert(t->root, n);
	t->count++;
}

/* Remove n from the subtree at root; returns the new subtree root. */
static struct cache_itree_node *remove_node(struct cache_itree_node *root,
					    struct cache_itree_node *n)
{
	if (!root)
		return NULL;
	if (root == n) {
		if (!n->left)
			return n->right;
		if (!n->right)
			return n->left;
		if (n->left->prio > n->right->prio) {
			root = rotate_right(n);
			root->right = remove_node(root->right, n);
		} else {
			root = rotate_left(n);
			root->left = remove_node(root->left, n);
		}
	} else if (less(n, root)) {
		root->left = remove_node(root->left, n);
	} else {
		root->right = remove_node(root->right, n);
	}
	update(root);
	return root;
}

void cache_itree_remove(struct cache_itree *t, struct cache_itree_node *n)
{
	t->root = remove_node(t->root, n);
	t->count--;
	n->left = n->right = NULL;
}

static int visit(const struct cache_itree_node *n, uintptr_t start,
		 uintptr_t end, cache_itree_cb cb, void *arg)
{
	int r;

	while (n && n->max_end > start) {
		r = visit(n->left, start, end, cb, arg);
		if (r)
			return r;
		if (n->start >= end)
			return 0;	/* n and its right subtree start later */
		if (n->end > start) {
			r = cb((struct cache_itree_node *)n, arg);
			if (r)
				return r;
		}
		n = n->right;
	}
	return 0;
}

int cache_itree_visit(const struct cache_itree *t, uintptr_t start,
		      uintptr_t end, cache_itree_cb cb, void *arg)
{
	return visit(t->root, start, end, cb, arg);
}
