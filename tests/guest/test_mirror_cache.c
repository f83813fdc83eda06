// SPDX-License-Identifier: MIT
/*
 * The registration cache over the mirror device: "registering" only
 * faults the range into the device page table, nothing is pinned, and
 * the kernel monitor still decides which entries are valid.
 */
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <string.h>
#include <sys/mman.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "regwatch_cache.h"
#include "regwatch_mirror.h"

#define LEN (16 * 4096)

static void test_cache_on_mirror(void **state)
{
	struct regwatch_cache_options o = {
		.monitor = REGWATCH_CACHE_MONITOR_KERNEL,
	};
	struct regwatch_mirror_stats ms;
	struct regwatch_cache_backend be;
	struct regwatch_cache_stats st;
	struct regwatch_cache_entry *e;
	struct regwatch_mirror *m;
	struct regwatch_cache *c;
	static char host[LEN];
	char *buf;

	(void)state;
	assert_int_equal(regwatch_mirror_open(&m), 0);
	be = regwatch_mirror_backend(m);
	assert_int_equal(regwatch_cache_create(&o, &be, &c), 0);
	buf = mmap(NULL, LEN, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(buf != MAP_FAILED);
	memset(buf, 'A', LEN);

	/* A miss maps the range into the device: every page, no pin. */
	assert_int_equal(regwatch_cache_get(c, buf, LEN,
			 REGWATCH_CACHE_ACCESS_LOCAL_WRITE, &e), 0);
	assert_int_equal(regwatch_mirror_stats(m, &ms), 0);
	assert_int_equal(ms.pages_mapped, LEN / 4096);
	assert_int_equal(regwatch_mirror_read(m, buf, host, LEN), 0);
	assert_int_equal(host[LEN - 1], 'A');
	regwatch_cache_put(c, e);

	/* Registered pages still migrate: nothing holds them. */
	{
		void *pages[LEN / 4096];
		int nodes[LEN / 4096], status[LEN / 4096], i, node;

		for (i = 0; i < LEN / 4096; i++)
			pages[i] = buf + i * 4096;
		assert_int_equal(move_pages(0, LEN / 4096, pages, NULL,
					    status, 0), 0);
		node = status[0] == 0 ? 1 : 0;
		for (i = 0; i < LEN / 4096; i++)
			nodes[i] = node;
		assert_int_equal(move_pages(0, LEN / 4096, pages, nodes,
					    status, MPOL_MF_MOVE), 0);
		for (i = 0; i < LEN / 4096; i++)
			assert_int_equal(status[i], node);
	}

	/* New memory at the same address: the cache misses, the device
	 * sees the new bytes. */
	munmap(buf, LEN);
	assert_ptr_equal(mmap(buf, LEN, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
			 buf);
	memset(buf, 'B', LEN);
	assert_int_equal(regwatch_cache_get(c, buf, LEN,
			 REGWATCH_CACHE_ACCESS_LOCAL_WRITE, &e), 0);
	assert_int_equal(regwatch_cache_stats(c, &st), 0);
	assert_int_equal(st.misses, 2);
	assert_int_equal(regwatch_mirror_read(m, buf, host, LEN), 0);
	assert_int_equal(host[0], 'B');
	regwatch_cache_put(c, e);

	regwatch_cache_destroy(c);
	munmap(buf, LEN);
	regwatch_mirror_close(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_on_mirror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
