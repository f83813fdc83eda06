/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the mirror-mode guest tests (tests/guest/test_mirror*.c):
 * the device through libregwatch's mirror API, byte patterns checked
 * against a model, module-wide leak checks, NUMA page moves.
 *
 * Functions that can fail assert through cmocka (main thread only),
 * except where said otherwise.
 */
#ifndef MIRROR_UTIL_H
#define MIRROR_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <setjmp.h>
#include <cmocka.h>

#include "regwatch_mirror.h"

#define MU_PG 4096UL

struct regwatch_mirror *mu_open(void);
struct regwatch_mirror_stats mu_stats(struct regwatch_mirror *m);

/* Module-wide devices and device page-table entries (STATS module_*),
 * not counting the probe device opened to read them. */
struct mu_modcount {
	unsigned long long devices, pages;
};
struct mu_modcount mu_modcount(void);
/* Every device opened since before was closed: counts back to before. */
void mu_assert_no_leak(struct mu_modcount before);

/* expr (0 or -errno) must be 0 / must be -err. */
#define MU_OK(expr) do { int r_ = (expr);				\
	if (r_) fail_msg("%s: %s", #expr, strerror(-r_)); } while (0)
#define MU_ERR(expr, err) do { int r_ = (expr);				\
	if (r_ != -(err))						\
		fail_msg("%s: got %d (%s), expected -%s", #expr, r_,	\
			 r_ ? strerror(-r_) : "success", #err); } while (0)

/* A position-dependent byte pattern (differs per page and per byte). */
uint8_t mu_pat(size_t i, unsigned int seed);
void mu_pat_fill(uint8_t *p, size_t len, unsigned int seed);
bool mu_all_eq(const uint8_t *p, uint8_t byte, size_t len);

/* got == want, else fail naming the first differing byte and its page. */
#define mu_assert_bytes(got, want, len, ...)				\
	mu_assert_bytes_((got), (want), (len), __FILE__, __LINE__, __VA_ARGS__)
void mu_assert_bytes_(const void *got, const void *want, size_t len,
		      const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
#define mu_assert_all(p, byte, len, what)				\
	mu_assert_all_((p), (byte), (len), __FILE__, __LINE__, (what))
void mu_assert_all_(const void *p, uint8_t byte, size_t len,
		    const char *file, int line, const char *what);

void *mu_map(size_t len, int prot, int flags, int fd);
void *mu_map_anon(size_t len);		/* private, not populated */
int mu_memfd(size_t len);		/* sized, MFD_CLOEXEC */
void mu_pread(int fd, void *buf, size_t len, off_t off);

/*
 * NUMA: node of each of n (<= 64) pages; move each to the node it is
 * not on (targets out), returning move_pages()'s value; how many are now
 * on their target. The _nc variants do not assert (for threads): they
 * return -errno on failure.
 */
void mu_nodes(void *p, size_t n, int *node);
long mu_move_other(void *p, size_t n, int *target);
size_t mu_count_on(void *p, size_t n, const int *target);
long mu_move_other_nc(void *p, size_t n, size_t *moved);

#endif /* MIRROR_UTIL_H */
