// LDFLAGS: -Wl,--wrap=malloc,--wrap=realloc
// SPDX-License-Identifier: MIT
/*
 * Host test of userlib/libfabric/fi_subs.c, the libfabric monitor's
 * subscription table. Pure logic: a watch is a state word in this file
 * that the test flips to fire it. malloc/realloc are wrapped so that the
 * table's allocation failures can be injected.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fi_subs.h"

/* ---- allocation failures -------------------------------------------------- */

void *__real_malloc(size_t size);
void *__real_realloc(void *p, size_t size);

static int malloc_fails, realloc_fails;	/* how many next calls fail */
static int malloc_failed;			/* failures injected */

void *__wrap_malloc(size_t size)
{
	if (malloc_fails > 0) {
		malloc_fails--;
		malloc_failed++;
		return NULL;
	}
	return __real_malloc(size);
}

void *__wrap_realloc(void *p, size_t size)
{
	if (realloc_fails > 0) {
		realloc_fails--;
		return NULL;
	}
	return __real_realloc(p, size);
}

/* ---- fake watches ------------------------------------------------------------ */

#define ARMED 1
#define FIRED 2
#define NWORDS 8192

static uint64_t word[NWORDS];	/* one state word per watch the test makes */
static unsigned int nwords;

struct fixture {
	struct fi_subs t;
};

static int setup(void **state)
{
	static struct fixture f;

	malloc_fails = realloc_fails = malloc_failed = 0;
	memset(word, 0, sizeof(word));
	nwords = 0;
	assert_int_equal(fi_subs_init(&f.t), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	fi_subs_fini(&f->t);
	return 0;
}

static struct regwatch_ref new_ref(void)
{
	struct regwatch_ref r = { .armed_state = ARMED };

	assert_true(nwords < NWORDS);
	word[nwords] = ARMED;
	r.state = &word[nwords];
	r.id = nwords++;
	return r;
}

static void fire(const struct regwatch_ref *r)
{
	word[r->id] = FIRED;
}

/* subscribe as fi_monitor.c does: reserve, watch, commit. */
static uint64_t add(struct fi_subs *t, uintptr_t addr, size_t len,
		    struct regwatch_ref *out)
{
	struct regwatch_ref r = new_ref();
	uint64_t cookie;

	assert_int_equal(fi_subs_reserve(t, &cookie), 0);
	fi_subs_commit(t, cookie, addr, len, &r);
	if (out)
		*out = r;
	return cookie;
}

static void count_one(struct fi_sub *s, void *arg)
{
	(void)s;
	(*(unsigned int *)arg)++;
}

static unsigned int count(struct fi_subs *t)
{
	unsigned int n = 0;

	fi_subs_foreach(t, count_one, &n);
	return n;
}

/* ---- tests -------------------------------------------------------------------- */

/* An entry serves exactly its (addr, len), and only once committed. */
static void test_exact_range(void **state)
{
	struct fi_subs *t = &((struct fixture *)*state)->t;
	struct regwatch_ref r = new_ref(), out;
	uint64_t cookie;

	assert_int_equal(fi_subs_reserve(t, &cookie), 0);
	assert_false(fi_subs_armed(t, 0x10000, 0x2000));
	assert_false(fi_subs_valid(t, 0x10000, 0x2000));
	assert_int_equal(count(t), 0);
	fi_subs_commit(t, cookie, 0x10000, 0x2000, &r);

	assert_int_equal(t->live, 1);
	assert_int_equal(count(t), 1);
	assert_true(fi_subs_armed(t, 0x10000, 0x2000));
	assert_true(fi_subs_valid(t, 0x10000, 0x2000));
	assert_false(fi_subs_armed(t, 0x10000, 0x2001));
	assert_false(fi_subs_armed(t, 0x11000, 0x2000));
	assert_false(fi_subs_armed(t, 0x10000, 0));
	assert_false(fi_subs_remove(t, 0x10000, 0x1000, &out));
	assert_false(fi_subs_remove(t, 0x10000, 0, &out));

	assert_true(fi_subs_remove(t, 0x10000, 0x2000, &out));
	assert_int_equal(out.id, r.id);
	assert_int_equal(t->live, 0);
	assert_false(fi_subs_armed(t, 0x10000, 0x2000));
	assert_false(fi_subs_valid(t, 0x10000, 0x2000));
	assert_false(fi_subs_remove(t, 0x10000, 0x2000, &out));
}

/*
 * A fired entry is not armed (a new subscribe needs a new watch) and,
 * while it stays, says "stale" even beside a newer armed entry; remove()
 * takes the fired one first.
 */
static void test_fired_beside_armed(void **state)
{
	struct fi_subs *t = &((struct fixture *)*state)->t;
	struct regwatch_ref old, cur, out;

	add(t, 0x40000, 0x1000, &old);
	add(t, 0x80000, 0x1000, NULL);		/* another range, untouched */
	fire(&old);
	assert_false(fi_subs_armed(t, 0x40000, 0x1000));
	assert_false(fi_subs_valid(t, 0x40000, 0x1000));
	assert_true(fi_subs_valid(t, 0x80000, 0x1000));

	add(t, 0x40000, 0x1000, &cur);
	assert_true(fi_subs_armed(t, 0x40000, 0x1000));
	assert_false(fi_subs_valid(t, 0x40000, 0x1000));

	assert_true(fi_subs_remove(t, 0x40000, 0x1000, &out));
	assert_int_equal(out.id, old.id);
	assert_true(fi_subs_valid(t, 0x40000, 0x1000));
	assert_true(fi_subs_remove(t, 0x40000, 0x1000, &out));
	assert_int_equal(out.id, cur.id);
	assert_int_equal(t->live, 1);
}

/* fire() reports an entry once; a cookie dies with its entry, even when
 * the slot is reused. */
static void test_fire_once_and_stale_cookie(void **state)
{
	struct fi_subs *t = &((struct fixture *)*state)->t;
	struct regwatch_ref r, out;
	uint64_t c1, c2;
	uintptr_t addr;
	size_t len;

	c1 = add(t, 0x7000, 0x3000, &r);
	assert_true(fi_subs_fire(t, c1, &addr, &len));
	assert_int_equal(addr, 0x7000);
	assert_int_equal(len, 0x3000);
	assert_false(fi_subs_fire(t, c1, &addr, &len));

	assert_true(fi_subs_remove_cookie(t, c1, &out));
	assert_int_equal(out.id, r.id);
	assert_int_equal(t->live, 0);
	assert_false(fi_subs_remove_cookie(t, c1, &out));

	c2 = add(t, 0x9000, 0x1000, NULL);
	assert_int_equal((uint32_t)c2, (uint32_t)c1);	/* the same slot */
	assert_true(c2 != c1);
	assert_false(fi_subs_fire(t, c1, &addr, &len));
	assert_false(fi_subs_remove_cookie(t, c1, &out));
	assert_int_equal(t->live, 1);
	assert_true(fi_subs_fire(t, c2, &addr, &len));
	assert_int_equal(addr, 0x9000);
	/* A cookie of a slot that never existed. */
	assert_false(fi_subs_fire(t, 1ULL << 32 | 123456, &addr, &len));
}

/* A cancelled reservation leaves nothing behind and frees its slot. */
static void test_cancel(void **state)
{
	struct fi_subs *t = &((struct fixture *)*state)->t;
	struct regwatch_ref r = new_ref(), out;
	uintptr_t addr;
	uint64_t c1, c2;
	size_t len;

	assert_int_equal(fi_subs_reserve(t, &c1), 0);
	assert_false(fi_subs_fire(t, c1, &addr, &len));
	assert_false(fi_subs_remove_cookie(t, c1, &out));
	fi_subs_cancel(t, c1);
	assert_int_equal(t->live, 0);
	assert_int_equal(count(t), 0);
	/* A stale cookie neither commits nor cancels the slot's next user. */
	assert_int_equal(fi_subs_reserve(t, &c2), 0);
	assert_int_equal((uint32_t)c2, (uint32_t)c1);
	fi_subs_commit(t, c1, 0x5000, 0x1000, &r);
	fi_subs_cancel(t, c1);
	assert_false(fi_subs_valid(t, 0x5000, 0x1000));
	fi_subs_commit(t, c2, 0x5000, 0x1000, &r);
	assert_true(fi_subs_valid(t, 0x5000, 0x1000));
	assert_int_equal(t->live, 1);
}

/* A range that no entry has exactly is judged by the entries covering it. */
static void test_valid_sub_range(void **state)
{
	struct fi_subs *t = &((struct fixture *)*state)->t;
	struct regwatch_ref a, b;

	add(t, 0x100000, 0x4000, &a);
	assert_true(fi_subs_valid(t, 0x101000, 0x1000));
	assert_true(fi_subs_valid(t, 0x100000, 0x1000));
	assert_true(fi_subs_valid(t, 0x103000, 0x1000));
	assert_false(fi_subs_valid(t, 0x0ff000, 0x2000));	/* sticks out */
	assert_false(fi_subs_valid(t, 0x103000, 0x2000));
	assert_false(fi_subs_valid(t, 0x101000, 0));
	assert_false(fi_subs_valid(t, UINTPTR_MAX - 0xfff, 0x2000));

	add(t, 0x102000, 0x4000, &b);			/* overlaps a */
	assert_true(fi_subs_valid(t, 0x102000, 0x1000));
	fire(&b);
	assert_true(fi_subs_valid(t, 0x101000, 0x1000));	/* a alone */
	assert_false(fi_subs_valid(t, 0x102000, 0x1000));	/* a and b */
	assert_false(fi_subs_valid(t, 0x102000, 0x4000));	/* b exactly */
	assert_true(fi_subs_valid(t, 0x100000, 0x4000));	/* a exactly */
}

/*
 * Thousands of entries: the slot array and the hash grow (with a
 * reservation pending), and every entry stays reachable through it, by
 * its exact range and by its cookie, whatever its place in its chain.
 */
/* Scattered page addresses (a bijection of i / 2, so all distinct): an
 * arithmetic sequence would hash without a single collision. */
static uintptr_t many_addr(unsigned int i)
{
	uint32_t x = i / 2;

	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return 0x100000000000ULL + ((uintptr_t)x << 12);
}

static size_t many_len(unsigned int i)
{
	return 0x1000 * (1 + i % 2);	/* two lengths per address */
}

static void test_many(void **state)
{
	struct fi_subs *t = &((struct fixture *)*state)->t;
	enum { N = 5000 };
	static uint64_t cookie[N];
	struct regwatch_ref out;
	uint64_t pending;

	assert_int_equal(fi_subs_reserve(t, &pending), 0);
	for (unsigned int i = 0; i < N; i++)
		cookie[i] = add(t, many_addr(i), many_len(i), NULL);
	assert_int_equal(t->live, N);
	assert_int_equal(count(t), N);
	assert_true(t->nbuckets >= N);
	for (unsigned int i = 0; i < N; i++) {
		assert_true(fi_subs_armed(t, many_addr(i), many_len(i)));
		assert_true(fi_subs_valid(t, many_addr(i), many_len(i)));
	}
	/* Remove in another order than added, by range or by cookie. */
	for (unsigned int k = 0; k < N; k++) {
		unsigned int i = (k * 7919) % N;

		if (k % 2)
			assert_true(fi_subs_remove(t, many_addr(i),
						   many_len(i), &out));
		else
			assert_true(fi_subs_remove_cookie(t, cookie[i], &out));
		assert_int_equal(out.id, i);
		assert_false(fi_subs_armed(t, many_addr(i), many_len(i)));
	}
	assert_int_equal(t->live, 0);
	assert_int_equal(count(t), 0);
	fi_subs_cancel(t, pending);
}

/* Allocation failures: a clear -ENOMEM, and the table stays usable. */
static void test_enomem(void **state)
{
	struct fi_subs *t = &((struct fixture *)*state)->t;
	struct fi_subs other;
	uint32_t nbuckets;
	uint64_t cookie;

	malloc_fails = 1;
	assert_int_equal(fi_subs_init(&other), -ENOMEM);

	realloc_fails = 1;
	assert_int_equal(fi_subs_reserve(t, &cookie), -ENOMEM);
	assert_int_equal(t->live, 0);

	/* The hash cannot grow: longer chains, same answers. */
	nbuckets = t->nbuckets;
	malloc_fails = 1000;
	for (unsigned int i = 0; i < 200; i++)
		add(t, 0x200000 + (uintptr_t)i * 0x1000, 0x1000, NULL);
	malloc_fails = 0;
	assert_true(malloc_failed > 100);	/* it tried, and failed */
	assert_int_equal(t->nbuckets, nbuckets);
	for (unsigned int i = 0; i < 200; i++)
		assert_true(fi_subs_armed(t, 0x200000 + (uintptr_t)i * 0x1000,
					  0x1000));
	assert_int_equal(t->live, 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_exact_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fired_beside_armed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fire_once_and_stale_cookie, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_valid_sub_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enomem, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
