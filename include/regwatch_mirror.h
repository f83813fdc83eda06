/* SPDX-License-Identifier: MIT */
/*
 * libregwatch mirror API: a software DMA device over /dev/regwatch-mirror
 * that reaches the caller's memory through its own device page table,
 * without pinning (see "Mirror mode" in uapi/regwatch.h and
 * docs/design.md). Calls return 0 or a negative errno.
 *
 * Threads: every call may be made from any thread; transfers from several
 * threads run concurrently in the device's engine. fork: the child cannot
 * use the parent's device (-EIO).
 */
#ifndef REGWATCH_MIRROR_H
#define REGWATCH_MIRROR_H

#include <stdbool.h>
#include <stddef.h>

#include "regwatch_cache.h"
#include "uapi/regwatch.h"

#ifdef __cplusplus
extern "C" {
#endif

struct regwatch_mirror;

/* Open a device bound to this process. -ENOENT without the module. */
int regwatch_mirror_open(struct regwatch_mirror **out);
void regwatch_mirror_close(struct regwatch_mirror *m);
int regwatch_mirror_fd(const struct regwatch_mirror *m);

/* The device reads [addr, addr + len) into host (a plain buffer). */
int regwatch_mirror_read(struct regwatch_mirror *m, const void *addr,
			 void *host, size_t len);
/* The device writes host's len bytes over [addr, addr + len). */
int regwatch_mirror_write(struct regwatch_mirror *m, void *addr,
			  const void *host, size_t len);
/* The device copies [src, src + len) to [dst, dst + len). */
int regwatch_mirror_copy(struct regwatch_mirror *m, void *dst,
			 const void *src, size_t len);
/* The device writes byte over [addr, addr + len). */
int regwatch_mirror_fill(struct regwatch_mirror *m, void *addr, int byte,
			 size_t len);
/* Fault [addr, addr + len) into the device page table (no data moved). */
int regwatch_mirror_map(struct regwatch_mirror *m, const void *addr,
			size_t len, bool write);

int regwatch_mirror_stats(struct regwatch_mirror *m,
			  struct regwatch_mirror_stats *st);

/*
 * A registration-cache backend on the mirror: "registering" faults the
 * range into the device page table (writable when the access asks for a
 * write), "deregistering" does nothing. No page is ever pinned; the
 * handle is the device. The cache's monitor still decides validity.
 */
struct regwatch_cache_backend regwatch_mirror_backend(struct regwatch_mirror *m);

#ifdef __cplusplus
}
#endif

#endif /* REGWATCH_MIRROR_H */
