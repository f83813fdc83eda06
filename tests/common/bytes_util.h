/* SPDX-License-Identifier: MIT */
/*
 * Byte helpers of the guest tests that compare what a device moved through
 * a registration with what the CPU sees (test_cache_rxe, test_libfabric).
 */
#ifndef BYTES_UTIL_H
#define BYTES_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Distinct pseudo-random contents for each tag (xorshift64), so that old
 * and new contents of a buffer never look alike. */
void bu_pattern(char *p, size_t len, uint64_t tag);

/* How many bytes of dev differ from cpu; the first such offset goes to
 * *first (left alone when none differ). */
size_t bu_ndiff(const char *dev, const char *cpu, size_t len, size_t *first);

#endif /* BYTES_UTIL_H */
