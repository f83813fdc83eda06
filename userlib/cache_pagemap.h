/* SPDX-License-Identifier: MIT */
/*
 * Fingerprint of the physical pages behind a range, from
 * /proc/self/pagemap, to tell whether a CLEAR invalidation changed them.
 */
#ifndef REGWATCH_CACHE_PAGEMAP_H
#define REGWATCH_CACHE_PAGEMAP_H

#include <stdint.h>

/* An open /proc/self/pagemap fd, or a negative errno. */
int cache_pagemap_open(void);

/*
 * Hash the page frame numbers (and present bits) of [start, end) into
 * *print. Returns 1 if the frames are known, 0 if they cannot be told
 * (PFNs hidden without CAP_SYS_ADMIN, or no page present), or a negative
 * errno.
 */
int cache_pagemap_print(int fd, uintptr_t start, uintptr_t end,
			uint64_t *print);

/*
 * 1 if any present page of [start, end) is a file or shared-anonymous
 * (shmem) page (pagemap bit 61, visible without privilege), 0 if none, or
 * a negative errno. Pages not present cannot be told and count as none.
 */
int cache_pagemap_has_file_pages(int fd, uintptr_t start, uintptr_t end);

#endif /* REGWATCH_CACHE_PAGEMAP_H */
