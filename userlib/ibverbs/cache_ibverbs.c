// SPDX-License-Identifier: MIT
/*
 * The registration cache's ibverbs backend (include/regwatch_ibverbs.h).
 * Built into its own library (userlib/ibverbs/ibverbs.mk) so that
 * libregwatch itself does not depend on libibverbs.
 */
#include <errno.h>

#include "regwatch_ibverbs.h"

int regwatch_ibv_access(uint32_t access)
{
	int f = 0;

	if (access & REGWATCH_CACHE_ACCESS_LOCAL_WRITE)
		f |= IBV_ACCESS_LOCAL_WRITE;
	if (access & REGWATCH_CACHE_ACCESS_REMOTE_READ)
		f |= IBV_ACCESS_REMOTE_READ;
	if (access & REGWATCH_CACHE_ACCESS_REMOTE_WRITE)
		f |= IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
	if (access & REGWATCH_CACHE_ACCESS_REMOTE_ATOMIC)
		f |= IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_LOCAL_WRITE;
	if (access & REGWATCH_CACHE_ACCESS_RELAXED_ORDERING)
		f |= IBV_ACCESS_RELAXED_ORDERING;
	return f;
}

static int ibv_backend_reg(void *ctx, void *addr, size_t len, uint32_t access,
			   void **handle, struct regwatch_cache_reg_info *info)
{
	struct ibv_mr *mr;
	int saved = errno;

	errno = 0;
	mr = ibv_reg_mr((struct ibv_pd *)ctx, addr, len, regwatch_ibv_access(access));
	if (!mr) {
		int rc = errno ? -errno : -ENOMEM;

		errno = saved;
		return rc;
	}
	errno = saved;
	*handle = mr;
	info->local_key = mr->lkey;
	info->remote_key = mr->rkey;
	return 0;
}

static int ibv_backend_dereg(void *ctx, void *handle)
{
	int rc;

	(void)ctx;
	rc = ibv_dereg_mr((struct ibv_mr *)handle);	/* returns an errno */
	return rc > 0 ? -rc : rc;
}

void regwatch_cache_ibv_backend(struct ibv_pd *pd,
				struct regwatch_cache_backend *be)
{
	be->reg = ibv_backend_reg;
	be->dereg = ibv_backend_dereg;
	be->ctx = pd;
}

int regwatch_cache_create_ibv(const struct regwatch_cache_options *opts,
			      struct ibv_pd *pd, struct regwatch_cache **out)
{
	struct regwatch_cache_backend be;

	if (!pd)
		return -EINVAL;
	regwatch_cache_ibv_backend(pd, &be);
	return regwatch_cache_create(opts, &be, out);
}
