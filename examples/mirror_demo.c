/* SPDX-License-Identifier: MIT */
/*
 * Mirror-mode demo: a software DMA device reads and writes this process's
 * memory through its own page table, with nothing pinned. munmap and a
 * new mapping at the same address are followed with no userspace action.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "regwatch_mirror.h"

#define LEN (8 * 4096)

static void show(struct regwatch_mirror *m, const char *when)
{
	struct regwatch_mirror_stats st;

	regwatch_mirror_stats(m, &st);
	printf("   [%s] device faults=%llu pages mapped=%llu unmapped by "
	       "invalidations=%llu\n", when,
	       (unsigned long long)st.faults,
	       (unsigned long long)st.pages_mapped,
	       (unsigned long long)st.unmapped_pages);
}

int main(void)
{
	static char host[LEN];
	struct regwatch_mirror *m;
	char *buf;
	int ret;

	ret = regwatch_mirror_open(&m);
	if (ret) {
		fprintf(stderr, "mirror_demo: open: %s\n", strerror(-ret));
		return 1;
	}
	buf = mmap(NULL, LEN, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(buf, 'A', LEN);
	printf("1. The device reads 8 pages the CPU filled with 'A'.\n");
	ret = regwatch_mirror_read(m, buf, host, LEN);
	printf("   read: %s, first byte '%c'\n", ret ? strerror(-ret) : "ok",
	       host[0]);
	show(m, "after the read");

	printf("2. munmap, then new pages filled with 'B' at the same address.\n");
	munmap(buf, LEN);
	show(m, "after munmap");
	buf = mmap(buf, LEN, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	memset(buf, 'B', LEN);
	ret = regwatch_mirror_read(m, buf, host, LEN);
	printf("   the device now reads '%c' (no re-registration)\n", host[0]);

	printf("3. The device writes 'C'; the CPU sees it.\n");
	ret = regwatch_mirror_fill(m, buf, 'C', LEN);
	printf("   fill: %s, CPU reads '%c'\n", ret ? strerror(-ret) : "ok",
	       buf[LEN - 1]);

	printf("4. mprotect(PROT_READ): device writes fail, reads work.\n");
	mprotect(buf, LEN, PROT_READ);
	ret = regwatch_mirror_fill(m, buf, 'D', LEN);
	printf("   fill: %s; ", ret ? strerror(-ret) : "ok");
	ret = regwatch_mirror_read(m, buf, host, LEN);
	printf("read: %s ('%c')\n", ret ? strerror(-ret) : "ok", host[0]);
	show(m, "end");
	munmap(buf, LEN);
	regwatch_mirror_close(m);
	return 0;
}
