// SPDX-License-Identifier: MIT
/* Physical page fingerprints from /proc/self/pagemap (cache_pagemap.h). */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "cache_pagemap.h"

#define PM_PFN_MASK	((1ULL << 55) - 1)
#define PM_PRESENT	(1ULL << 63)
#define PM_FILE		(1ULL << 61)
#define PM_BATCH	512

int cache_pagemap_open(void)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* Call fn on the pagemap entry of every page of [start, end). */
static int walk(int fd, uintptr_t start, uintptr_t end,
		void (*fn)(uint64_t v, void *arg), void *arg)
{
	uint64_t buf[PM_BATCH];
	uintptr_t psz = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t p = start / psz, last = (end + psz - 1) / psz;

	while (p < last) {
		size_t n = last - p < PM_BATCH ? last - p : PM_BATCH, i;
		ssize_t got = pread(fd, buf, n * sizeof(buf[0]),
				    (off_t)(p * sizeof(buf[0])));

		if (got < 0)
			return -errno;
		if ((size_t)got < sizeof(buf[0]))
			return -EIO;
		n = got / sizeof(buf[0]);
		for (i = 0; i < n; i++)
			fn(buf[i], arg);
		p += n;
	}
	return 0;
}

struct print_arg {
	uint64_t h;
	int known;
};

static void print_fn(uint64_t v, void *arg)
{
	struct print_arg *a = arg;

	v &= PM_PFN_MASK | PM_PRESENT;
	if ((v & PM_PRESENT) && (v & PM_PFN_MASK))
		a->known = 1;
	a->h = (a->h ^ v) * 0x100000001b3ULL;
}

int cache_pagemap_print(int fd, uintptr_t start, uintptr_t end,
			uint64_t *print)
{
	struct print_arg a = { 0xcbf29ce484222325ULL, 0 };
	int rc = walk(fd, start, end, print_fn, &a);

	if (rc)
		return rc;
	*print = a.h;
	return a.known;
}

static void file_fn(uint64_t v, void *arg)
{
	if ((v & PM_PRESENT) && (v & PM_FILE))
		*(int *)arg = 1;
}

int cache_pagemap_has_file_pages(int fd, uintptr_t start, uintptr_t end)
{
	int any = 0, rc = walk(fd, start, end, file_fn, &any);

	return rc ? rc : any;
}
