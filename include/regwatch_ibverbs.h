/* SPDX-License-Identifier: MIT */
/*
 * libregwatch_ibverbs: the registration cache's built-in ibverbs backend
 * (ibv_reg_mr / ibv_dereg_mr on a protection domain). Link with
 * -lregwatch_ibverbs -lregwatch -libverbs; the core library does not
 * depend on libibverbs.
 *
 *   struct regwatch_cache *c;
 *   regwatch_cache_create_ibv(NULL, pd, &c);
 *   regwatch_cache_get(c, buf, len, REGWATCH_CACHE_ACCESS_LOCAL_WRITE, &e);
 *   sge.lkey = regwatch_cache_entry_mr(e)->lkey;   (or _info(e)->local_key)
 *
 * Access bits map to IBV_ACCESS_*: LOCAL_WRITE, REMOTE_READ, REMOTE_WRITE,
 * REMOTE_ATOMIC, RELAXED_ORDERING (REMOTE_WRITE and REMOTE_ATOMIC imply
 * LOCAL_WRITE, as verbs requires). The entry's info holds lkey
 * (local_key) and rkey (remote_key); its handle is the struct ibv_mr *.
 * Errors of ibv_reg_mr come back from regwatch_cache_get() as -errno.
 */
#ifndef REGWATCH_IBVERBS_H
#define REGWATCH_IBVERBS_H

#include <infiniband/verbs.h>

#include "regwatch_cache.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Map REGWATCH_CACHE_ACCESS_* bits to IBV_ACCESS_* flags. */
int regwatch_ibv_access(uint32_t access);

/* Fill *be with the ibverbs backend over pd (pd must outlive the cache). */
void regwatch_cache_ibv_backend(struct ibv_pd *pd,
				struct regwatch_cache_backend *be);

/* regwatch_cache_create() with the ibverbs backend over pd. */
int regwatch_cache_create_ibv(const struct regwatch_cache_options *opts,
			      struct ibv_pd *pd, struct regwatch_cache **out);

/* The memory region of an entry from a cache with this backend. */
static inline struct ibv_mr *
regwatch_cache_entry_mr(const struct regwatch_cache_entry *e)
{
	return (struct ibv_mr *)regwatch_cache_entry_handle(e);
}

#ifdef __cplusplus
}
#endif

#endif /* REGWATCH_IBVERBS_H */
