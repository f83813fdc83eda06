// SPDX-License-Identifier: MIT
/*
 * /dev/regwatch-mirror: random transfers and an exact data oracle.
 *
 * The oracle: each context keeps a model of its private buffer (mbuf,
 * FZ_MBUF_PAGES pages that only it touches) and mixes CPU writes, device
 * READ / WRITE / FILL / COPY / MAP through a private or a shared device,
 * with munmap + fresh mmap, MADV_DONTNEED, mprotect (read-only, none,
 * back), mremap away and back. After every step the device must read
 * exactly what the CPU would (it never sees a page the process no longer
 * maps), the CPU must see what the device wrote, and a device write must
 * fail with EFAULT exactly when the CPU could not write either. Other
 * threads meanwhile fork (copy-on-write), clear soft-dirty bits, and run
 * transfers on the shared devices.
 *
 * Random transfers: every op, flag and field, lengths from 0 to beyond
 * mirror_max_xfer, wrapping and out-of-range addresses, garbage host
 * pointers, mostly in the sandbox where other threads unmap and remap at
 * random. Argument errors must be the documented ones; after that only
 * 0, EFAULT, EBUSY or ENOMEM. STATS with every size rule; unknown
 * commands; read / mmap of the fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

enum { NMIR = 3 };

#define MBYTES		(FZ_MBUF_PAGES * FZ_PG)
#define MSTATS_MIN	16	/* offsetofend(struct regwatch_mirror_stats, faults) */

struct shmir {
	pthread_rwlock_t life;
	int fd;
};

struct fz_mpriv {
	int fd;			/* private device, -1: none */
	uint8_t *model;
	int prot;
	bool init;
};

static struct shmir SM[NMIR];
static struct {
	uint64_t max_xfer;
	atomic_ullong xfers, xfer_ok, oracle_checks, bytes_checked, remaps;
	atomic_ullong opens, stats, raw, efault_ro, busy;
} M;

/* ---- helpers ---------------------------------------------------------- */

static long xfer(int fd, uint32_t op, uint32_t flags, uint64_t addr,
		 uint64_t len, uint64_t src, uint64_t host, uint32_t pattern)
{
	struct regwatch_mirror_xfer x = {
		.op = op, .flags = flags, .addr = addr, .len = len, .src = src,
		.host = host, .pattern = pattern,
	};

	atomic_fetch_add(&M.xfers, 1);
	return fz_ioctl(fd, REGWATCH_MIRROR_IOC_XFER, &x);
}

/* Expected errno of XFER's argument checks (0: they pass). */
static int xfer_check(const struct regwatch_mirror_xfer *x)
{
	if (x->op < REGWATCH_MIRROR_OP_READ || x->op > REGWATCH_MIRROR_OP_MAP)
		return EINVAL;
	if (x->flags & ~(x->op == REGWATCH_MIRROR_OP_MAP ?
			 REGWATCH_MIRROR_MAP_WRITE : 0U))
		return EINVAL;
	if (x->pad || x->reserved[0] || x->reserved[1])
		return EINVAL;
	if (!x->len || x->len > M.max_xfer)
		return EINVAL;
	if (x->addr + x->len < x->addr ||
	    (x->op == REGWATCH_MIRROR_OP_COPY && x->src + x->len < x->src))
		return EOVERFLOW;
	if (x->addr + x->len > fz_task_size ||
	    (x->op == REGWATCH_MIRROR_OP_COPY && x->src + x->len > fz_task_size))
		return EFAULT;
	return 0;
}

static int mirror_open(void)
{
	int fd = fz_open(REGWATCH_MIRROR_DEVICE, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		fz_finding("open %s: %s", REGWATCH_MIRROR_DEVICE, strerror(-fd));
	else
		atomic_fetch_add(&M.opens, 1);
	return fd;
}

/* A device fd for the oracle: the private one or a dup of a shared one. */
static int oracle_fd(struct fz_ctx *c, struct fz_mpriv *mp, bool *dup_out)
{
	struct shmir *s;
	int fd = -1;

	*dup_out = false;
	if (fz_pct(c, 60) || c->child) {
		if (mp->fd < 0)
			mp->fd = mirror_open();
		return mp->fd;
	}
	s = &SM[fz_below(c, NMIR)];
	pthread_rwlock_rdlock(&s->life);
	if (s->fd >= 0)
		fd = dup(s->fd);
	pthread_rwlock_unlock(&s->life);
	if (fd < 0) {
		if (mp->fd < 0)
			mp->fd = mirror_open();
		return mp->fd;
	}
	*dup_out = true;
	return fd;
}

static void fill_pattern(struct fz_ctx *c, uint8_t *p, size_t len)
{
	uint64_t x = fz_rand(c);
	size_t k;

	for (k = 0; k < len; k++) {
		if ((k & 7) == 0)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		p[k] = (uint8_t)(x >> (8 * (k & 7)));
	}
}

static void report_diff(const char *what, const uint8_t *got,
			const uint8_t *want, size_t off, size_t len)
{
	size_t k;

	for (k = 0; k < len && got[k] == want[k]; k++)
		;
	fz_finding("mirror: %s of [%zu, %zu) differs at byte %zu (page %zu): "
		   "got %#x, expected %#x", what, off, off + len, off + k,
		   (off + k) / FZ_PG, got[k], want[k]);
}

/* CPU view against the model, when the buffer is readable. */
static void cpu_check(struct fz_ctx *c, struct fz_mpriv *mp)
{
	if (!(mp->prot & PROT_READ))
		return;
	if (memcmp(c->mbuf, mp->model, MBYTES))
		report_diff("CPU view", (uint8_t *)c->mbuf, mp->model, 0, MBYTES);
}

static void random_span(struct fz_ctx *c, size_t *off, size_t *len)
{
	if (fz_pct(c, 30)) {
		*off = fz_below(c, FZ_MBUF_PAGES) * FZ_PG;
		*len = (1 + fz_below(c, FZ_MBUF_PAGES - *off / FZ_PG)) * FZ_PG;
	} else {
		*off = fz_below(c, MBYTES);
		*len = 1 + fz_below(c, MBYTES - *off);
	}
}

static bool remap_mbuf(struct fz_ctx *c, struct fz_mpriv *mp)
{
	void *p;
	int err;

	p = fz_mmap(c->mbuf, MBYTES, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &err);
	if (p != c->mbuf) {
		fz_finding("mirror buffer: mmap(MAP_FIXED): %s; stopping",
			   strerror(err));
		atomic_store(&fz->stop, 1);
		return false;
	}
	mp->prot = PROT_READ | PROT_WRITE;
	fill_pattern(c, mp->model, MBYTES);
	memcpy(c->mbuf, mp->model, MBYTES);
	return true;
}

static struct fz_mpriv *mp_get(struct fz_ctx *c)
{
	struct fz_mpriv *mp = c->mpriv;

	if (!mp) {
		mp = calloc(1, sizeof(*mp));
		if (!mp)
			return NULL;
		mp->model = malloc(MBYTES);
		if (!mp->model) {
			free(mp);
			return NULL;
		}
		mp->fd = -1;
		c->mpriv = mp;
	}
	if (!mp->init) {
		if (!remap_mbuf(c, mp))
			return NULL;
		mp->init = true;
	}
	return mp;
}

/* ---- the oracle --------------------------------------------------------- */

/*
 * EBUSY (the address space kept changing while the device faulted: the
 * mirror's notifier covers the whole process, so any thread's munmap
 * counts) and ENOMEM are documented outcomes, not findings; a failed
 * write may have moved part of the data, so the model is re-read.
 */
static bool inconclusive(struct fz_ctx *c, struct fz_mpriv *mp, long r,
			 bool wrote)
{
	if (r != -EBUSY && r != -ENOMEM)
		return false;
	atomic_fetch_add(&M.busy, 1);
	if (wrote) {
		if (mp->prot & PROT_READ)
			memcpy(mp->model, c->mbuf, MBYTES);
		else
			remap_mbuf(c, mp);
	}
	return true;
}

void mir_oracle_op(struct fz_ctx *c)
{
	struct fz_mpriv *mp = mp_get(c);
	uint8_t *buf = (uint8_t *)c->scratch;
	size_t off, len, soff;
	bool dupped, rd, wr;
	int fd, op, err;
	long r;

	if (!mp || fz_should_stop())
		return;
	rd = mp->prot & PROT_READ;
	wr = mp->prot & PROT_WRITE;
	op = (int)fz_below(c, 100);
	random_span(c, &off, &len);
	if (op < 12) {			/* CPU writes */
		if (!wr) {
			fz_mprotect(c->mbuf, MBYTES, PROT_READ | PROT_WRITE);
			mp->prot = PROT_READ | PROT_WRITE;
		}
		fill_pattern(c, mp->model + off, len);
		memcpy(c->mbuf + off, mp->model + off, len);
		cpu_check(c, mp);
		return;
	}
	if (op < 20) {			/* fresh memory at the same address */
		atomic_fetch_add(&M.remaps, 1);
		if (fz_pct(c, 50))
			fz_munmap(c->mbuf, MBYTES);
		remap_mbuf(c, mp);
		return;
	}
	if (op < 27) {			/* zap: zeros */
		size_t a = off & ~(FZ_PG - 1);
		size_t b = (off + len + FZ_PG - 1) & ~(FZ_PG - 1);

		if (fz_madvise(c->mbuf + a, b - a, MADV_DONTNEED)) {
			fz_finding("MADV_DONTNEED of the mirror buffer: %s",
				   strerror(errno));
			return;
		}
		memset(mp->model + a, 0, b - a);
		cpu_check(c, mp);
		return;
	}
	if (op < 35) {			/* protection changes */
		static const int prots[] = {
			PROT_READ, PROT_NONE, PROT_READ | PROT_WRITE,
		};
		int prot = prots[fz_below(c, 3)];

		if (fz_mprotect(c->mbuf, MBYTES, prot) == 0)
			mp->prot = prot;
		cpu_check(c, mp);
		return;
	}
	if (op < 40) {			/* move away and back */
		void *q = fz_mremap(c->mbuf, MBYTES, MBYTES,
				    MREMAP_MAYMOVE | MREMAP_FIXED, c->tmp, &err);

		if (q == c->tmp)
			q = fz_mremap(c->tmp, MBYTES, MBYTES,
				      MREMAP_MAYMOVE | MREMAP_FIXED, c->mbuf,
				      &err);
		if (q != c->mbuf) {
			fz_finding("mremap of the mirror buffer: %s; stopping",
				   strerror(err));
			atomic_store(&fz->stop, 1);
			return;
		}
		cpu_check(c, mp);
		return;
	}
	fd = oracle_fd(c, mp, &dupped);
	if (fd < 0)
		return;
	atomic_fetch_add(&M.oracle_checks, 1);
	if (op < 62) {			/* device READ */
		memset(buf, 0xee, len);
		r = xfer(fd, REGWATCH_MIRROR_OP_READ, 0,
			 (uintptr_t)c->mbuf + off, len, 0, (uintptr_t)buf, 0);
		if (inconclusive(c, mp, r, false)) {
			;
		} else if (!rd ? r != -EFAULT : r != 0) {
			fz_finding("mirror: READ of [%zu, +%zu) with prot %#x: "
				   "%ld", off, len, mp->prot, r);
		} else if (!r) {
			atomic_fetch_add(&M.bytes_checked, len);
			if (memcmp(buf, mp->model + off, len))
				report_diff("device READ", buf, mp->model + off,
					    off, len);
		}
	} else if (op < 76) {		/* device WRITE or FILL */
		bool fill = fz_pct(c, 30);
		uint32_t pat = (uint32_t)fz_rand(c);

		if (fill)
			memset(buf, pat & 0xff, len);
		else
			fill_pattern(c, buf, len);
		r = xfer(fd, fill ? REGWATCH_MIRROR_OP_FILL :
				    REGWATCH_MIRROR_OP_WRITE, 0,
			 (uintptr_t)c->mbuf + off, len, 0,
			 fill ? 0 : (uintptr_t)buf, pat);
		if (inconclusive(c, mp, r, true))
			r = 1;
		else if (!wr ? r != -EFAULT : r != 0)
			fz_finding("mirror: %s of [%zu, +%zu) with prot %#x: %ld",
				   fill ? "FILL" : "WRITE", off, len, mp->prot,
				   r);
		if (!r)
			memcpy(mp->model + off, buf, len);
		if (r == -EFAULT && !wr)
			atomic_fetch_add(&M.efault_ro, 1);
		cpu_check(c, mp);
	} else if (op < 88) {		/* device COPY inside the buffer */
		soff = fz_below(c, MBYTES - len + 1);
		r = xfer(fd, REGWATCH_MIRROR_OP_COPY, 0,
			 (uintptr_t)c->mbuf + off, len,
			 (uintptr_t)c->mbuf + soff, 0, 0);
		if (inconclusive(c, mp, r, true))
			r = 1;
		else if (!wr ? r != -EFAULT : r != 0)
			fz_finding("mirror: COPY [%zu, +%zu) -> %zu with prot "
				   "%#x: %ld", soff, len, off, mp->prot, r);
		if (!r)
			memmove(mp->model + off, mp->model + soff, len);
		cpu_check(c, mp);
	} else {			/* MAP, then the CPU writes through */
		bool w = fz_pct(c, 50);

		r = xfer(fd, REGWATCH_MIRROR_OP_MAP,
			 w ? REGWATCH_MIRROR_MAP_WRITE : 0,
			 (uintptr_t)c->mbuf + off, len, 0, 0, 0);
		if (inconclusive(c, mp, r, false))
			;
		else if ((w ? !wr : !rd) ? r != -EFAULT : r != 0)
			fz_finding("mirror: MAP%s of [%zu, +%zu) with prot %#x: "
				   "%ld", w ? " write" : "", off, len, mp->prot,
				   r);
		if (wr) {
			fill_pattern(c, mp->model + off, len);
			memcpy(c->mbuf + off, mp->model + off, len);
		}
		if (rd) {
			r = xfer(fd, REGWATCH_MIRROR_OP_READ, 0,
				 (uintptr_t)c->mbuf + off, len, 0,
				 (uintptr_t)buf, 0);
			if (inconclusive(c, mp, r, false))
				;
			else if (r)
				fz_finding("mirror: READ after MAP: %ld", r);
			else if (memcmp(buf, mp->model + off, len))
				report_diff("device READ after a CPU write",
					    buf, mp->model + off, off, len);
		}
	}
	if (dupped)
		close(fd);
}

/* ---- random transfers and the other entry points ------------------------ */

static void mir_range(struct fz_ctx *c, __u64 *addr, __u64 *len)
{
	switch (fz_below(c, 10)) {
	case 0:
		*addr = fz_below(c, 3) * FZ_PG;
		break;
	case 1:
		*addr = fz_task_size - fz_below(c, 3) * FZ_PG;
		break;
	case 2:
		*addr = ~0ULL - fz_below(c, 2 * FZ_PG);
		break;
	case 3:
		*addr = (uintptr_t)c->none;
		break;
	default:
		*addr = FZ_SANDBOX_BASE + fz_below(c, FZ_SANDBOX_LEN);
		break;
	}
	switch (fz_below(c, 12)) {
	case 0:
		*len = 0;
		break;
	case 1:
		*len = M.max_xfer + fz_below(c, 2);
		break;
	case 2:
		*len = fz_rand(c);
		break;
	case 3:
		*len = -*addr;
		break;
	case 4:
		*len = (1 + fz_below(c, 64)) * FZ_PG;
		break;
	default:
		*len = 1 + fz_below(c, 64 << 10);
		break;
	}
}

static void random_xfer(struct fz_ctx *c, int fd)
{
	struct regwatch_mirror_xfer x;
	bool host_ok = true;
	long r;
	int e;

	memset(&x, 0, sizeof(x));
	x.op = fz_pct(c, 95) ? 1 + (uint32_t)fz_below(c, 5) :
			       (uint32_t)fz_rand(c);
	if (x.op == REGWATCH_MIRROR_OP_MAP && fz_pct(c, 50))
		x.flags = REGWATCH_MIRROR_MAP_WRITE;
	if (fz_pct(c, 4))
		x.flags = (uint32_t)fz_rand(c);
	mir_range(c, &x.addr, &x.len);
	mir_range(c, &x.src, &x.len);
	if (fz_pct(c, 50))
		mir_range(c, &x.addr, &x.len);
	x.pattern = (uint32_t)fz_rand(c);
	if (fz_pct(c, 3))
		x.pad = (uint32_t)fz_rand(c) | 1;
	if (fz_pct(c, 3))
		x.reserved[fz_below(c, 2)] = fz_rand(c) | 1;
	x.host = (uintptr_t)c->scratch;
	if (x.len > FZ_SCRATCH_LEN || fz_pct(c, 10))
		x.host = fz_garbage_ptr(c, x.len, &host_ok);
	/* WRITE only reads the host buffer: read-only memory will do. */
	if (x.op == REGWATCH_MIRROR_OP_WRITE && x.host >= (uintptr_t)c->ro &&
	    x.host + x.len <= (uintptr_t)c->ro + 2 * FZ_PG)
		host_ok = true;
	if (x.len > FZ_SCRATCH_LEN && x.host == (uintptr_t)c->scratch)
		host_ok = false;
	e = xfer_check(&x);
	r = fz_ioctl(fd, REGWATCH_MIRROR_IOC_XFER, &x);
	atomic_fetch_add(&M.xfers, 1);
	if (e) {
		if (r != -e)
			fz_finding("mirror XFER op %u flags %#x addr %#llx len "
				   "%#llx src %#llx pad %u: %ld, expected %d",
				   x.op, x.flags, (unsigned long long)x.addr,
				   (unsigned long long)x.len,
				   (unsigned long long)x.src, x.pad, r, -e);
		return;
	}
	if (r == 0) {
		atomic_fetch_add(&M.xfer_ok, 1);
		if (!host_ok && (x.op == REGWATCH_MIRROR_OP_READ ||
				 x.op == REGWATCH_MIRROR_OP_WRITE))
			fz_finding("mirror XFER op %u through the bad host pointer "
				   "%#llx (len %#llx) succeeded", x.op,
				   (unsigned long long)x.host,
				   (unsigned long long)x.len);
		return;
	}
	if (r != -EFAULT && r != -EBUSY && r != -ENOMEM)
		fz_finding("mirror XFER op %u addr %#llx len %#llx: %s", x.op,
			   (unsigned long long)x.addr, (unsigned long long)x.len,
			   strerror((int)-r));
}

static void random_stats(struct fz_ctx *c, int fd)
{
	static const uint32_t sizes[] = {
		0, 4, 8, 15, 16, 17, 64, sizeof(struct regwatch_mirror_stats) - 8,
		sizeof(struct regwatch_mirror_stats),
		sizeof(struct regwatch_mirror_stats) + 8, FZ_PG, FZ_PG + 1,
	};
	struct regwatch_mirror_stats *st = (void *)c->scratch;
	uint32_t usize = sizes[fz_below(c, sizeof(sizes) / sizeof(sizes[0]))];
	uint32_t pad = fz_pct(c, 8) ? 1 : 0;
	int e = 0;
	long r;

	memset(st, 0x5a, FZ_PG + 64);
	st->size = usize;
	st->pad = pad;
	if (usize < MSTATS_MIN || pad)		/* size and pad first */
		e = EINVAL;
	else if (usize > FZ_PG)
		e = E2BIG;
	r = fz_ioctl(fd, REGWATCH_MIRROR_IOC_STATS, st);
	atomic_fetch_add(&M.stats, 1);
	if (r != -e) {
		fz_finding("mirror STATS size %u pad %u: %ld, expected %d", usize,
			   pad, r, -e);
		return;
	}
	if (e)
		return;
	if (st->size != sizeof(*st) ||
	    (usize >= sizeof(*st) &&
	     (st->module_devices < 1 || st->pages_mapped > st->module_pages ||
	      st->module_pages > (1ULL << 40) ||
	      st->faulted_pages < st->faults)))
		fz_finding("mirror STATS: size %u devices %llu pages %llu/%llu "
			   "faults %llu pages %llu", st->size,
			   (unsigned long long)st->module_devices,
			   (unsigned long long)st->pages_mapped,
			   (unsigned long long)st->module_pages,
			   (unsigned long long)st->faults,
			   (unsigned long long)st->faulted_pages);
	if (usize < sizeof(*st) && ((uint8_t *)st)[usize] != 0x5a)
		fz_finding("mirror STATS size %u wrote past the size", usize);
	if (usize > sizeof(*st) && ((uint8_t *)st)[usize - 1] != 0)
		fz_finding("mirror STATS size %u: tail not zeroed", usize);
}

static void random_other(struct fz_ctx *c, int fd)
{
	unsigned int dir = (unsigned int)fz_below(c, 4);
	unsigned int nr = 0x18 + (unsigned int)fz_below(c, 0x18);
	unsigned int size = (unsigned int)fz_below(c, 1 << 14);
	unsigned long cmd = _IOC(dir, REGWATCH_IOC_MAGIC, nr, size);
	char b[64];
	void *m;
	long r;
	int err;

	switch (fz_below(c, 3)) {
	case 0:
		if (cmd == REGWATCH_MIRROR_IOC_XFER ||
		    (nr == _IOC_NR(REGWATCH_MIRROR_IOC_STATS) &&
		     dir == _IOC_DIR(REGWATCH_MIRROR_IOC_STATS)))
			return;
		memset(c->scratch, 0, 128);
		r = fz_ioctl(fd, cmd, c->scratch);
		atomic_fetch_add(&M.raw, 1);
		if (r != -ENOTTY)
			fz_finding("mirror ioctl %#lx: %ld, expected ENOTTY", cmd,
				   r);
		break;
	case 1:
		r = fz_read(fd, b, sizeof(b));
		if (r != -EINVAL)
			fz_finding("read of the mirror device: %ld", r);
		break;
	default:
		m = fz_mmap(NULL, FZ_PG, PROT_READ, MAP_SHARED, fd, 0, &err);
		if (m != MAP_FAILED) {
			fz_finding("the mirror device could be mmapped");
			munmap(m, FZ_PG);
		} else if (err != ENODEV) {
			fz_finding("mmap of the mirror device: %s", strerror(err));
		}
		break;
	}
}

void mir_random_op(struct fz_ctx *c)
{
	struct shmir *s = &SM[fz_below(c, NMIR)];
	int op = (int)fz_below(c, 100), fd = -1;

	if (c->child) {
		int own = mirror_open();

		if (own >= 0) {
			random_xfer(c, own);
			fz_close(own);
		}
		return;
	}
	if (op < 4 || s->fd < 0) {
		pthread_rwlock_wrlock(&s->life);
		if (s->fd >= 0)
			fz_close(s->fd);
		s->fd = mirror_open();
		pthread_rwlock_unlock(&s->life);
		return;
	}
	/* A dup: the device may be closed by another thread meanwhile. */
	pthread_rwlock_rdlock(&s->life);
	if (s->fd >= 0)
		fd = dup(s->fd);
	pthread_rwlock_unlock(&s->life);
	if (fd < 0)
		return;
	if (op < 80)
		random_xfer(c, fd);
	else if (op < 92)
		random_stats(c, fd);
	else
		random_other(c, fd);
	close(fd);
}

int mir_fds(int *fds, int max)
{
	int k, n = 0;

	for (k = 0; k < NMIR && n < max; k++)
		if (SM[k].fd >= 0)
			fds[n++] = SM[k].fd;
	return n;
}

int mir_init(void)
{
	char buf[32];
	FILE *f;
	int k;

	M.max_xfer = 16U << 20;
	f = fopen("/sys/module/regwatch/parameters/mirror_max_xfer", "r");
	if (f) {
		if (fgets(buf, sizeof(buf), f))
			M.max_xfer = strtoull(buf, NULL, 0);
		fclose(f);
	}
	for (k = 0; k < NMIR; k++) {
		pthread_rwlock_init(&SM[k].life, NULL);
		SM[k].fd = -1;
	}
	return 0;
}

void mir_ctx_fini(struct fz_ctx *c)
{
	struct fz_mpriv *mp = c->mpriv;

	if (!mp)
		return;
	if (mp->fd >= 0)
		close(mp->fd);
	free(mp->model);
	free(mp);
	c->mpriv = NULL;
}

void mir_finish(void)
{
	int k;

	for (k = 0; k < NMIR; k++)
		if (SM[k].fd >= 0) {
			close(SM[k].fd);
			SM[k].fd = -1;
		}
}

void mir_summary(char *buf, size_t len)
{
	snprintf(buf, len, "%llu transfers (%llu succeeded), %llu oracle steps "
		 "through the device, %llu bytes compared, %llu remaps, %llu "
		 "writes refused on read-only memory, %llu EBUSY/ENOMEM (no "
		 "verdict), %llu STATS, %llu unknown commands, %llu opens",
		 (unsigned long long)atomic_load(&M.xfers),
		 (unsigned long long)atomic_load(&M.xfer_ok),
		 (unsigned long long)atomic_load(&M.oracle_checks),
		 (unsigned long long)atomic_load(&M.bytes_checked),
		 (unsigned long long)atomic_load(&M.remaps),
		 (unsigned long long)atomic_load(&M.efault_ro),
		 (unsigned long long)atomic_load(&M.busy),
		 (unsigned long long)atomic_load(&M.stats),
		 (unsigned long long)atomic_load(&M.raw),
		 (unsigned long long)atomic_load(&M.opens));
}
