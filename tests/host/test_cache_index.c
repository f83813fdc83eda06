// SPDX-License-Identifier: MIT
/*
 * The cache's lookup structures: the interval treap (cache_itree.c)
 * against a brute-force model, and the lock-free hint hash
 * (cache_hash.c): insert, replace, remove, tombstone reuse, rebuild in
 * place (stale aliases dropped), growth (old tables kept), poisoning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "cache_hash.h"
#include "cache_itree.h"

#define N 600

static struct cache_itree_node nodes[N];
static bool in_tree[N];

struct collect {
	struct cache_itree_node *seen[N];
	int n;
	int stop_after;		/* 0: never */
};

static int collect_cb(struct cache_itree_node *n, void *arg)
{
	struct collect *c = arg;

	c->seen[c->n++] = n;
	return c->stop_after && c->n == c->stop_after ? 7 : 0;
}

static int check_tree(const struct cache_itree_node *n, uintptr_t *max_end)
{
	uintptr_t l = 0, r = 0;
	int cnt = 0;

	if (!n)
		return 0;
	cnt += check_tree(n->left, &l);
	cnt += check_tree(n->right, &r);
	if (n->left)
		assert_true(n->left->start <= n->start);
	if (n->right)
		assert_true(n->right->start >= n->start);
	if (n->left)
		assert_true(n->left->prio <= n->prio);
	if (n->right)
		assert_true(n->right->prio <= n->prio);
	*max_end = n->end;
	if (l > *max_end)
		*max_end = l;
	if (r > *max_end)
		*max_end = r;
	assert_int_equal(n->max_end, *max_end);
	return cnt + 1;
}

static void test_itree_model(void **state)
{
	struct cache_itree t;
	unsigned int seed = 42;
	int round, i, count = 0;

	(void)state;
	cache_itree_init(&t);
	for (round = 0; round < 20000; round++) {
		i = rand_r(&seed) % N;
		if (in_tree[i]) {
			cache_itree_remove(&t, &nodes[i]);
			in_tree[i] = false;
			count--;
		} else {
			nodes[i].start = rand_r(&seed) % 1000;
			nodes[i].end = nodes[i].start + 1 + rand_r(&seed) % 50;
			cache_itree_insert(&t, &nodes[i]);
			in_tree[i] = true;
			count++;
		}
		if (round % 97 == 0) {
			uintptr_t me, qs = rand_r(&seed) % 1100;
			uintptr_t qe = qs + 1 + rand_r(&seed) % 60;
			struct collect c = { .n = 0 };
			int expect = 0, k;

			assert_int_equal(check_tree(t.root, &me), count);
			assert_int_equal(t.count, (size_t)count);
			assert_int_equal(cache_itree_visit(&t, qs, qe, collect_cb, &c), 0);
			for (i = 0; i < N; i++)
				if (in_tree[i] && nodes[i].start < qe && nodes[i].end > qs)
					expect++;
			assert_int_equal(c.n, expect);
			for (k = 0; k < c.n; k++) {
				assert_true(c.seen[k]->start < qe && c.seen[k]->end > qs);
				if (k)
					assert_true(c.seen[k - 1]->start <= c.seen[k]->start);
			}
			if (expect > 1) {
				struct collect s = { .n = 0, .stop_after = 1 };

				assert_int_equal(cache_itree_visit(&t, qs, qe, collect_cb, &s), 7);
				assert_int_equal(s.n, 1);
			}
		}
	}
}

static const void *last_next;	/* the slot's prefetch hint, by lookup() */

/* The reader side, as the cache's hit path walks it. */
static void *lookup(struct cache_hash *h, uint64_t key)
{
	struct cache_hash_table *t = cache_hash_table(h);
	uint64_t k = key | 1, i, n;

	for (i = cache_hash_slot_of(t, k), n = 0; n <= t->mask;
	     i = (i + 1) & t->mask, n++) {
		void *v;

		if (!t->slots[i].key)
			return NULL;
		if (t->slots[i].key != k)
			continue;
		v = t->slots[i].val;
		last_next = t->slots[i].next;
		if (v && v != CACHE_HASH_TOMB)
			return v;
	}
	return NULL;
}

static int vals[20000];
static bool stale[20000];

static bool keep_fn(void *val, uint64_t key, void *arg)
{
	(void)key; (void)arg;
	return !stale[(int *)val - vals];
}

static char hints[20000];

/* The address a reader of val would load next (the cache: its state word). */
static const void *hint_fn(void *val)
{
	return &hints[(int *)val - vals];
}

/* lookup(), and the slot's hint must be val's. */
static void *lookup_hinted(struct cache_hash *h, uint64_t key)
{
	void *v = lookup(h, key);

	if (v)
		assert_ptr_equal(last_next, hint_fn(v));
	return v;
}

static void test_hash(void **state)
{
	struct cache_hash h;
	struct cache_hash_table *first;
	int i;

	(void)state;
	assert_int_equal(cache_hash_init(&h, 16, keep_fn, NULL, hint_fn), 0);
	first = cache_hash_table(&h);
	assert_int_equal(first->mask + 1, 1024);	/* minimum size */
	for (i = 0; i < 100; i++)
		assert_int_equal(cache_hash_insert(&h, (uint64_t)i << 12, &vals[i]), 0);
	for (i = 0; i < 100; i++)
		assert_ptr_equal(lookup_hinted(&h, (uint64_t)i << 12), &vals[i]);
	assert_null(lookup_hinted(&h, 5000ULL << 12));
	/* replace, remove (only with the right value), re-insert */
	assert_int_equal(cache_hash_insert(&h, 7ULL << 12, &vals[1000]), 0);
	assert_ptr_equal(lookup_hinted(&h, 7ULL << 12), &vals[1000]);
	cache_hash_remove(&h, 7ULL << 12, &vals[7]);
	assert_ptr_equal(lookup_hinted(&h, 7ULL << 12), &vals[1000]);
	cache_hash_remove(&h, 7ULL << 12, &vals[1000]);
	assert_null(lookup_hinted(&h, 7ULL << 12));
	cache_hash_remove(&h, 9999ULL << 12, &vals[0]);	/* absent */
	assert_int_equal(cache_hash_insert(&h, 7ULL << 12, &vals[7]), 0);
	assert_ptr_equal(lookup_hinted(&h, 7ULL << 12), &vals[7]);
	/* churn: tombstones force in-place rebuilds, same size */
	for (i = 100; i < 5000; i++) {
		assert_int_equal(cache_hash_insert(&h, (uint64_t)i << 12, &vals[i]), 0);
		cache_hash_remove(&h, (uint64_t)i << 12, &vals[i]);
	}
	assert_ptr_equal(cache_hash_table(&h), first);
	for (i = 0; i < 100; i++)
		assert_ptr_equal(lookup_hinted(&h, (uint64_t)i << 12), &vals[i]);
	/* stale aliases are dropped by rebuilds */
	stale[50] = true;
	for (i = 5000; i < 9000; i++) {
		assert_int_equal(cache_hash_insert(&h, (uint64_t)i << 12, &vals[i]), 0);
		cache_hash_remove(&h, (uint64_t)i << 12, &vals[i]);
	}
	assert_null(lookup_hinted(&h, 50ULL << 12));
	stale[50] = false;
	/* growth: a new table is published, old ones kept until fini */
	for (i = 10000; i < 12000; i++)
		assert_int_equal(cache_hash_insert(&h, (uint64_t)i << 12, &vals[i]), 0);
	assert_ptr_not_equal(cache_hash_table(&h), first);
	assert_true(cache_hash_table(&h)->mask + 1 >= 4096);
	{
		struct cache_hash_table *r = cache_hash_table(&h);

		while (r->retired)
			r = r->retired;
		assert_ptr_equal(r, first);
	}
	for (i = 10000; i < 12000; i++)
		assert_ptr_equal(lookup_hinted(&h, (uint64_t)i << 12), &vals[i]);
	assert_ptr_equal(lookup_hinted(&h, 3ULL << 12), &vals[3]);
	/* poisoned: every lookup misses, fini still frees everything */
	cache_hash_poison(&h);
	assert_null(lookup_hinted(&h, 3ULL << 12));
	assert_null(lookup_hinted(&h, 10001ULL << 12));
	cache_hash_poison(&h);
	cache_hash_fini(&h);
	cache_hash_fini(&h);	/* idempotent */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_itree_model),
		cmocka_unit_test(test_hash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
