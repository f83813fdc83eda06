// SPDX-License-Identifier: MIT
/* Helpers for the mirror-mode guest tests; see mirror_util.h. */
#include "mirror_util.h"

#include <errno.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct regwatch_mirror *mu_open(void)
{
	struct regwatch_mirror *m = NULL;
	int ret = regwatch_mirror_open(&m);

	if (ret)
		fail_msg("open %s: %s", REGWATCH_MIRROR_DEVICE, strerror(-ret));
	return m;
}

struct regwatch_mirror_stats mu_stats(struct regwatch_mirror *m)
{
	struct regwatch_mirror_stats st;

	assert_int_equal(regwatch_mirror_stats(m, &st), 0);
	return st;
}

struct mu_modcount mu_modcount(void)
{
	struct regwatch_mirror *m = mu_open();
	struct regwatch_mirror_stats st = mu_stats(m);

	regwatch_mirror_close(m);
	assert_true(st.module_devices >= 1);
	return (struct mu_modcount){ st.module_devices - 1, st.module_pages };
}

void mu_assert_no_leak(struct mu_modcount before)
{
	struct mu_modcount now = mu_modcount();

	if (now.devices != before.devices || now.pages != before.pages)
		fail_msg("module counters not back: devices %llu -> %llu, "
			 "pages %llu -> %llu", before.devices, now.devices,
			 before.pages, now.pages);
}

uint8_t mu_pat(size_t i, unsigned int seed)
{
	return (uint8_t)(seed * 37 + i * 7 + (i >> 12) * 13);
}

void mu_pat_fill(uint8_t *p, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = mu_pat(i, seed);
}

bool mu_all_eq(const uint8_t *p, uint8_t byte, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != byte)
			return false;
	return true;
}

void mu_assert_bytes_(const void *got_, const void *want_, size_t len,
		      const char *file, int line, const char *fmt, ...)
{
	const uint8_t *got = got_, *want = want_;
	size_t first = len, ndiff = 0;
	char what[200];
	va_list ap;

	for (size_t i = 0; i < len; i++)
		if (got[i] != want[i]) {
			if (first == len)
				first = i;
			ndiff++;
		}
	if (!ndiff)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	print_error("%s:%d: %s: byte %zu (page %zu) is %#x, expected %#x; "
		    "%zu of %zu bytes differ\n", file, line, what, first,
		    first / MU_PG, got[first], want[first], ndiff, len);
	fail();
}

void mu_assert_all_(const void *p, uint8_t byte, size_t len,
		    const char *file, int line, const char *what)
{
	uint8_t *want = malloc(len);

	assert_non_null(want);
	memset(want, byte, len);
	mu_assert_bytes_(p, want, len, file, line, "%s (all %#x)", what, byte);
	free(want);
}

void *mu_map(size_t len, int prot, int flags, int fd)
{
	void *p = mmap(NULL, len, prot, flags, fd, 0);

	if (p == MAP_FAILED)
		fail_msg("mmap(%zu, prot %#x, flags %#x, fd %d): %s", len, prot,
			 flags, fd, strerror(errno));
	return p;
}

void *mu_map_anon(size_t len)
{
	return mu_map(len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1);
}

int mu_memfd(size_t len)
{
	int fd = memfd_create("rwt-mirror", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	return fd;
}

void mu_pread(int fd, void *buf, size_t len, off_t off)
{
	assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
}

void mu_nodes(void *p, size_t n, int *node)
{
	void *pages[64];

	assert_true(n <= 64);
	for (size_t i = 0; i < n; i++)
		pages[i] = (char *)p + i * MU_PG;
	if (move_pages(0, n, pages, NULL, node, 0))
		fail_msg("move_pages(query): %s", strerror(errno));
}

long mu_move_other(void *p, size_t n, int *target)
{
	void *pages[64];
	int cur[64], status[64];

	mu_nodes(p, n, cur);
	for (size_t i = 0; i < n; i++) {
		if (cur[i] != 0 && cur[i] != 1)
			fail_msg("page %zu: node %d", i, cur[i]);
		target[i] = !cur[i];
		pages[i] = (char *)p + i * MU_PG;
	}
	return move_pages(0, n, pages, target, status, MPOL_MF_MOVE);
}

size_t mu_count_on(void *p, size_t n, const int *target)
{
	int node[64];
	size_t k = 0;

	mu_nodes(p, n, node);
	for (size_t i = 0; i < n; i++)
		k += node[i] == target[i];
	return k;
}

long mu_move_other_nc(void *p, size_t n, size_t *moved)
{
	void *pages[64];
	int cur[64], target[64], status[64];
	long ret;

	if (n > 64)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		pages[i] = (char *)p + i * MU_PG;
	if (move_pages(0, n, pages, NULL, cur, 0))
		return -errno;
	for (size_t i = 0; i < n; i++)
		target[i] = cur[i] == 0;	/* errors (unmapped): node 1 */
	ret = move_pages(0, n, pages, target, status, MPOL_MF_MOVE);
	if (ret < 0)
		return -errno;
	for (size_t i = 0; i < n; i++)
		*moved += status[i] == target[i] && cur[i] >= 0 &&
			  cur[i] != target[i];
	return ret;
}
