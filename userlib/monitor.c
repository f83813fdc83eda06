// SPDX-License-Identifier: MIT
/*
 * libregwatch: one monitor over /dev/regwatch (API in include/regwatch.h,
 * ABI in include/uapi/regwatch.h).
 *
 * Everything but the ring, the state words and the generation counter is
 * one ioctl. Errors come back as -errno; errno is saved and restored
 * around system calls because the API promises to leave it alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "regwatch.h"

struct regwatch {
	int fd;
	struct regwatch_config cfg;		/* as the kernel answered */
	void *shared;				/* read-only mapping */
	struct regwatch_consumer *consumer;	/* read-write page */
	const struct regwatch_shared_header *hdr;	/* == shared */
	const struct regwatch_event *ring;
	const uint64_t *states;
	uint64_t mask;				/* ring_entries - 1 */
};

/* One ioctl on the monitor: its result, or -errno with errno untouched. */
static int rw_ioctl(const struct regwatch *rw, unsigned long req, void *arg)
{
	int saved = errno, ret;

	if (!rw)
		return -EINVAL;
	ret = ioctl(rw->fd, req, arg);
	if (ret < 0)
		ret = -errno;
	errno = saved;
	return ret;
}

/* The ABI v1 handshake: ask for the sizes, accept only a v1 answer. */
static int rw_configure(struct regwatch *rw,
			const struct regwatch_options *opts)
{
	struct regwatch_config *cfg = &rw->cfg;
	int ret;

	cfg->size = sizeof(*cfg);
	cfg->abi_version = REGWATCH_ABI_VERSION;
	cfg->ring_entries = opts->ring_entries;
	cfg->max_watches = opts->max_watches;
	ret = rw_ioctl(rw, REGWATCH_IOC_CONFIG, cfg);
	if (ret)
		return ret;
	if (cfg->abi_version != REGWATCH_ABI_VERSION ||
	    cfg->shared_size < sizeof(struct regwatch_shared_header) ||
	    cfg->consumer_size < sizeof(struct regwatch_consumer))
		return -EPROTO;
	return 0;
}

/*
 * True if an array of n elements of size bytes at off lies inside the
 * shared area, 8-byte aligned (its 64-bit words are loaded atomically).
 * Written so that no sum can overflow whatever the kernel answered.
 */
static bool rw_array_fits(uint64_t area_size, uint64_t off, uint64_t n,
			  uint64_t size)
{
	return off % 8 == 0 && off <= area_size &&
	       n <= (area_size - off) / size;
}

/* A header we do not understand exactly would make us misread the ring. */
static int rw_check_header(const struct regwatch *rw)
{
	const struct regwatch_shared_header *h = rw->hdr;
	const struct regwatch_config *cfg = &rw->cfg;
	uint32_t n = h->ring_entries;

	if (h->abi_version != REGWATCH_ABI_VERSION ||
	    h->header_size != sizeof(*h) ||
	    h->event_size != sizeof(struct regwatch_event) ||
	    n == 0 || (n & (n - 1)) != 0 ||
	    n != cfg->ring_entries || h->max_watches != cfg->max_watches ||
	    !rw_array_fits(cfg->shared_size, h->ring_offset, n,
			   sizeof(struct regwatch_event)) ||
	    !rw_array_fits(cfg->shared_size, h->states_offset,
			   h->max_watches, sizeof(uint64_t)))
		return -EPROTO;
	return 0;
}

/* Map the shared area, check its layout, then map the consumer page. */
static int rw_map(struct regwatch *rw)
{
	const struct regwatch_config *cfg = &rw->cfg;
	void *p;
	int ret;

	p = mmap(NULL, cfg->shared_size, PROT_READ, MAP_SHARED, rw->fd,
		 (off_t)cfg->shared_offset);
	if (p == MAP_FAILED)
		return -errno;
	rw->shared = p;
	rw->hdr = p;
	ret = rw_check_header(rw);
	if (ret)
		return ret;
	rw->ring = (const void *)((const char *)p + rw->hdr->ring_offset);
	rw->states = (const void *)((const char *)p + rw->hdr->states_offset);
	rw->mask = rw->hdr->ring_entries - 1;

	p = mmap(NULL, cfg->consumer_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		 rw->fd, (off_t)cfg->consumer_offset);
	if (p == MAP_FAILED)
		return -errno;
	rw->consumer = p;
	return 0;
}

/* Undo whatever part of regwatch_open() succeeded. */
static void rw_teardown(struct regwatch *rw)
{
	if (rw->consumer)
		munmap(rw->consumer, rw->cfg.consumer_size);
	if (rw->shared)
		munmap(rw->shared, rw->cfg.shared_size);
	if (rw->fd >= 0)
		close(rw->fd);
	free(rw);
}

int regwatch_open(const struct regwatch_options *opts, struct regwatch **out)
{
	static const struct regwatch_options defaults;
	struct regwatch *rw;
	int saved = errno, ret;

	if (!out)
		return -EINVAL;
	if (!opts)
		opts = &defaults;
	rw = calloc(1, sizeof(*rw));
	if (!rw) {
		errno = saved;
		return -ENOMEM;
	}
	rw->fd = open(opts->device ? opts->device : REGWATCH_DEVICE,
		      O_RDWR | O_CLOEXEC);
	ret = rw->fd < 0 ? -errno : rw_configure(rw, opts);
	if (!ret)
		ret = rw_map(rw);
	if (ret)
		rw_teardown(rw);
	else
		*out = rw;
	errno = saved;
	return ret;
}

void regwatch_close(struct regwatch *rw)
{
	int saved = errno;

	if (rw)
		rw_teardown(rw);
	errno = saved;
}

const struct regwatch_config *regwatch_config(const struct regwatch *rw)
{
	return rw ? &rw->cfg : NULL;
}

int regwatch_fd(const struct regwatch *rw)
{
	return rw ? rw->fd : -EINVAL;
}

int regwatch_watch(struct regwatch *rw, const void *addr, size_t len,
		   uint64_t cookie, unsigned int flags,
		   struct regwatch_ref *ref)
{
	struct regwatch_watch req = {
		.addr = (uintptr_t)addr,
		.len = len,
		.cookie = cookie,
		.flags = flags,
	};
	int ret;

	if (!rw || !ref)
		return -EINVAL;
	ret = rw_ioctl(rw, REGWATCH_IOC_WATCH, &req);
	if (ret)
		return ret;
	regwatch_ref_from(rw, &req, ref);
	return 0;
}

int regwatch_unwatch(struct regwatch *rw, const struct regwatch_ref *ref)
{
	struct regwatch_unwatch req = { 0 };

	if (!ref)
		return -EINVAL;
	req.watch_id = ref->id;
	return rw_ioctl(rw, REGWATCH_IOC_UNWATCH, &req);
}

static int rw_batch(struct regwatch *rw, unsigned long req, void *entries,
		    unsigned int count)
{
	struct regwatch_batch batch = {
		.entries = (uintptr_t)entries,
		.count = count,
	};

	return rw_ioctl(rw, req, &batch);
}

int regwatch_watchv(struct regwatch *rw, struct regwatch_watch *reqs,
		    unsigned int count)
{
	return rw_batch(rw, REGWATCH_IOC_WATCHV, reqs, count);
}

int regwatch_unwatchv(struct regwatch *rw, struct regwatch_unwatch *reqs,
		      unsigned int count)
{
	return rw_batch(rw, REGWATCH_IOC_UNWATCHV, reqs, count);
}

void regwatch_ref_from(const struct regwatch *rw,
		       const struct regwatch_watch *req,
		       struct regwatch_ref *ref)
{
	/* A FREE word never equals an ARMED armed_state. */
	static const uint64_t never_armed = REGWATCH_STATE_FREE;
	uint32_t slot;

	if (!rw || !req || !ref)
		return;
	slot = REGWATCH_ID_SLOT(req->watch_id);
	ref->id = req->watch_id;
	if (req->result || slot >= rw->cfg.max_watches) {
		/* A failed entry gets an invalid ref, never a wild pointer. */
		ref->state = &never_armed;
		ref->armed_state = REGWATCH_STATE_ARMED;
		return;
	}
	ref->state = rw->states + slot;
	ref->armed_state = req->armed_state;
}

bool regwatch_changed(struct regwatch *rw, uint64_t *seen)
{
	uint64_t gen;

	if (!rw || !seen)
		return false;
	/* Pairs with the kernel's release: state words are written first. */
	gen = __atomic_load_n(&rw->hdr->generation, __ATOMIC_ACQUIRE);
	if (gen == *seen)
		return false;
	*seen = gen;
	return true;
}

int regwatch_drain(struct regwatch *rw, regwatch_event_cb cb, void *arg)
{
	struct regwatch_event ev;
	uint64_t head, prod, c;
	int ret = 0;

	if (!rw || !cb)
		return -EINVAL;
	/* Pairs with the kernel's release: entries below prod are written. */
	prod = __atomic_load_n(&rw->hdr->producer, __ATOMIC_ACQUIRE);
	/* Only we (or read(2), never at the same time) move head. */
	head = __atomic_load_n(&rw->consumer->head, __ATOMIC_RELAXED);
	/* The page is ours to scribble on; never loop over a broken head. */
	if (prod - head > rw->cfg.ring_entries)
		return -EPROTO;
	for (c = head; c != prod; c++) {
		/* The callback gets a private copy, not the kernel's slot. */
		ev = rw->ring[c & rw->mask];
		ret = cb(&ev, arg);
		if (ret)
			break;
	}
	/* A positive stop consumes its event; a negative one leaves it. */
	if (ret > 0)
		c++;
	/* Pairs with the kernel's acquire: we are done with these entries. */
	__atomic_store_n(&rw->consumer->head, c, __ATOMIC_RELEASE);
	return ret ? ret : (int)(c - head);
}

/* true if index a lies after b (indices are free-running, they wrap). */
static bool rw_after(uint64_t a, uint64_t b)
{
	return (int64_t)(a - b) > 0;
}

/* Move the shared head forward to c, never back (other drainers race). */
static void rw_head_advance(struct regwatch *rw, uint64_t c)
{
	uint64_t cur = __atomic_load_n(&rw->consumer->head, __ATOMIC_RELAXED);

	/* Release: we are done with the entries below c. */
	while (rw_after(c, cur) &&
	       !__atomic_compare_exchange_n(&rw->consumer->head, &cur, c, true,
					    __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
}

/*
 * Several drainers, no lock: each reads [head, producer) on its own. Once
 * any drainer moves the head past an entry, the kernel may reuse its slot,
 * and it only does so after reading that head. So an entry is copied
 * first and trusted only if the head still lies at or before it after the
 * copy; otherwise another drainer has already passed it to its callback
 * (heads move only after the callbacks) and we skip to that head.
 */
int regwatch_drain_shared(struct regwatch *rw, regwatch_event_cb cb,
			  void *arg)
{
	struct regwatch_event ev;
	uint64_t prod, head, c;
	int ret = 0, n = 0;

	if (!rw || !cb)
		return -EINVAL;
	/*
	 * Head first: a drainer moves it only up to a producer value it has
	 * seen, so the producer we load after it is not behind it.
	 */
	c = __atomic_load_n(&rw->consumer->head, __ATOMIC_ACQUIRE);
	/* Pairs with the kernel's release: entries below prod are written. */
	prod = __atomic_load_n(&rw->hdr->producer, __ATOMIC_ACQUIRE);
	if (prod - c > rw->cfg.ring_entries)
		return -EPROTO;
	while (rw_after(prod, c)) {
		ev = rw->ring[c & rw->mask];
		/* The copy is done before the head is looked at again. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		head = __atomic_load_n(&rw->consumer->head, __ATOMIC_RELAXED);
		if (rw_after(head, c)) {
			c = head;	/* taken care of; the copy may be torn */
			continue;
		}
		ret = cb(&ev, arg);
		if (ret)
			break;
		c++;
		n++;
	}
	/* A positive stop consumes its event; a negative one leaves it. */
	if (ret > 0)
		c++;
	rw_head_advance(rw, c);
	return ret ? ret : n;
}

uint64_t regwatch_pending(const struct regwatch *rw)
{
	if (!rw)
		return 0;
	return __atomic_load_n(&rw->hdr->producer, __ATOMIC_ACQUIRE) -
	       __atomic_load_n(&rw->consumer->head, __ATOMIC_RELAXED);
}

int regwatch_set_eventfd(struct regwatch *rw, int efd)
{
	struct regwatch_eventfd req = { .fd = efd };

	return rw_ioctl(rw, REGWATCH_IOC_SET_EVENTFD, &req);
}

int regwatch_set_signal(struct regwatch *rw, int signo)
{
	struct regwatch_signal req = { .signo = signo };

	if (!rw)
		return -EINVAL;
	if (!(rw->cfg.features & REGWATCH_FEAT_SIGNAL))
		return -EOPNOTSUPP;
	return rw_ioctl(rw, REGWATCH_IOC_SET_SIGNAL, &req);
}

int regwatch_stats(struct regwatch *rw, struct regwatch_stats *st)
{
	if (!st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	return rw_ioctl(rw, REGWATCH_IOC_STATS, st);
}

const char *regwatch_class_name(uint32_t class_bit)
{
	switch (class_bit) {
	case REGWATCH_CLASS_UNMAP:
		return "unmap";
	case REGWATCH_CLASS_CLEAR:
		return "clear";
	case REGWATCH_CLASS_RELEASE:
		return "release";
	case REGWATCH_CLASS_PROTECTION:
		return "protection";
	case REGWATCH_CLASS_SOFT_DIRTY:
		return "soft_dirty";
	default:
		return "unknown";
	}
}
