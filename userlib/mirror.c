/* SPDX-License-Identifier: MIT */
/* libregwatch: the mirror-mode device API (include/regwatch_mirror.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "regwatch_mirror.h"

struct regwatch_mirror {
	int fd;
};

int regwatch_mirror_open(struct regwatch_mirror **out)
{
	struct regwatch_mirror *m;
	int saved = errno, err;

	if (!out)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->fd = open(REGWATCH_MIRROR_DEVICE, O_RDWR | O_CLOEXEC);
	if (m->fd < 0) {
		err = -errno;
		free(m);
		errno = saved;
		return err;
	}
	*out = m;
	return 0;
}

void regwatch_mirror_close(struct regwatch_mirror *m)
{
	if (!m)
		return;
	close(m->fd);
	free(m);
}

int regwatch_mirror_fd(const struct regwatch_mirror *m)
{
	return m ? m->fd : -EINVAL;
}

static int mirror_ioctl(struct regwatch_mirror *m, unsigned long cmd,
			void *arg)
{
	int saved = errno, ret;

	if (!m)
		return -EINVAL;
	ret = ioctl(m->fd, cmd, arg) < 0 ? -errno : 0;
	errno = saved;
	return ret;
}

static int xfer(struct regwatch_mirror *m, uint32_t op, uint32_t flags,
		const void *addr, const void *src, const void *host,
		size_t len, int pattern)
{
	struct regwatch_mirror_xfer x = {
		.op = op,
		.flags = flags,
		.addr = (uintptr_t)addr,
		.len = len,
		.src = (uintptr_t)src,
		.host = (uintptr_t)host,
		.pattern = (uint32_t)pattern,
	};

	return mirror_ioctl(m, REGWATCH_MIRROR_IOC_XFER, &x);
}

int regwatch_mirror_read(struct regwatch_mirror *m, const void *addr,
			 void *host, size_t len)
{
	return xfer(m, REGWATCH_MIRROR_OP_READ, 0, addr, NULL, host, len, 0);
}

int regwatch_mirror_write(struct regwatch_mirror *m, void *addr,
			  const void *host, size_t len)
{
	return xfer(m, REGWATCH_MIRROR_OP_WRITE, 0, addr, NULL, host, len, 0);
}

int regwatch_mirror_copy(struct regwatch_mirror *m, void *dst,
			 const void *src, size_t len)
{
	return xfer(m, REGWATCH_MIRROR_OP_COPY, 0, dst, src, NULL, len, 0);
}

int regwatch_mirror_fill(struct regwatch_mirror *m, void *addr, int byte,
			 size_t len)
{
	return xfer(m, REGWATCH_MIRROR_OP_FILL, 0, addr, NULL, NULL, len,
		    byte);
}

int regwatch_mirror_map(struct regwatch_mirror *m, const void *addr,
			size_t len, bool write)
{
	return xfer(m, REGWATCH_MIRROR_OP_MAP,
		    write ? REGWATCH_MIRROR_MAP_WRITE : 0, addr, NULL, NULL,
		    len, 0);
}

int regwatch_mirror_stats(struct regwatch_mirror *m,
			  struct regwatch_mirror_stats *st)
{
	if (!st)
		return -EINVAL;
	*st = (struct regwatch_mirror_stats){ .size = sizeof(*st) };
	return mirror_ioctl(m, REGWATCH_MIRROR_IOC_STATS, st);
}

static int backend_reg(void *ctx, void *addr, size_t len, uint32_t access,
		       void **handle, struct regwatch_cache_reg_info *info)
{
	bool write = access & (REGWATCH_CACHE_ACCESS_LOCAL_WRITE |
			       REGWATCH_CACHE_ACCESS_REMOTE_WRITE |
			       REGWATCH_CACHE_ACCESS_REMOTE_ATOMIC);

	(void)info;
	*handle = ctx;
	return regwatch_mirror_map(ctx, addr, len, write);
}

/* Nothing is pinned, so there is nothing to release. */
static int backend_dereg(void *ctx, void *handle)
{
	(void)ctx;
	(void)handle;
	return 0;
}

struct regwatch_cache_backend regwatch_mirror_backend(struct regwatch_mirror *m)
{
	struct regwatch_cache_backend be = {
		.reg = backend_reg,
		.dereg = backend_dereg,
		.ctx = m,
	};

	return be;
}
