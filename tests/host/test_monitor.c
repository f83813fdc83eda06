// LDFLAGS: -pthread -Wl,--wrap=open,--wrap=open64,--wrap=close,--wrap=ioctl,--wrap=mmap,--wrap=mmap64,--wrap=munmap,--wrap=calloc
// SPDX-License-Identifier: MIT
/*
 * Host test of userlib/monitor.c against a fake /dev/regwatch.
 *
 * The linker's --wrap sends the library's open/close/ioctl/mmap/munmap to
 * the __wrap_* functions below, a tiny in-memory model of the kernel side
 * of ABI v1. The shared area lives in a memfd: the fake writes it through
 * its own read-write view and the library gets a real PROT_READ view of
 * the same pages, so a library that wrote to it would crash here too.
 * Failures (missing device, CONFIG errors, odd layouts, mmap errors,
 * ioctl errors) are injected through the fields of struct fake.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "regwatch.h"

#define FAKE_FD			4242
#define FAKE_PAGE		4096UL
#define FAKE_OFF_SHARED		0ULL
#define FAKE_OFF_CONSUMER	(1ULL << 32)
#define COUNT_MASK		((1ULL << 30) - 1)

int __real_open(const char *path, int flags, ...);
int __real_ioctl(int fd, unsigned long req, ...);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off);
int __real_munmap(void *addr, size_t len);
int __real_close(int fd);
void *__real_calloc(size_t n, size_t size);

struct fake_watch {
	bool live;
	uint32_t flags;
	uint64_t cookie;
};

/* The fake kernel. Reset before every test. */
static struct fake {
	/* injected behaviour */
	bool calloc_fails;	/* the next calloc() returns NULL */
	int open_errno;		/* open() fails with it */
	int config_errno;	/* CONFIG fails with it */
	uint32_t config_abi;	/* abi_version CONFIG answers with */
	int shared_mmap_errno;	/* mmap of the shared area fails */
	int consumer_mmap_errno; /* mmap of the consumer page fails */
	int ioctl_errno;	/* every ioctl after CONFIG fails */
	uint64_t start_index;	/* producer/head at CONFIG (kernel: 0) */
	bool no_feat_signal;	/* CONFIG does not report FEAT_SIGNAL */
	void (*corrupt)(struct regwatch_config *out,
			struct regwatch_shared_header *hdr);

	/* what the library did */
	char path[128];
	int open_flags;
	int ioctls;
	int maps, unmaps;
	struct regwatch_config cfg_in;
	int eventfd;
	int signo;		/* as SET_SIGNAL left it; -1: never called */

	/* the model */
	bool fd_open, configured;
	int memfd;
	uint32_t ring_entries, max_watches;
	size_t shared_size;
	struct regwatch_shared_header *hdr;	/* fake's read-write view */
	struct regwatch_event *ring;
	uint64_t *states;
	struct regwatch_consumer *consumer;
	struct fake_watch *w;
	uint64_t prod, last_head;
	void *user_shared, *user_consumer;	/* the library's views */
} F;

static void fake_reset(void)
{
	memset(&F, 0, sizeof(F));
	F.config_abi = REGWATCH_ABI_VERSION;
	F.memfd = -1;
	F.eventfd = -2;
	F.signo = -1;
}

/* Free what the fake allocated (the library's views are its own). */
static void fake_destroy(void)
{
	if (F.hdr)
		__real_munmap(F.hdr, F.shared_size);
	if (F.consumer)
		__real_munmap(F.consumer, FAKE_PAGE);
	if (F.memfd >= 0)
		__real_close(F.memfd);
	free(F.w);
	fake_reset();
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 8;		/* the kernel's minimum ring */

	while (p < n)
		p <<= 1;
	return p;
}

static size_t align_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

/* The kernel's layout: header, ring and state words on 64-byte lines. */
static void fake_area_create(uint32_t ring_entries, uint32_t max_watches)
{
	size_t ring_off = align_up(sizeof(*F.hdr), 64);
	size_t states_off = align_up(ring_off + (size_t)ring_entries *
				     sizeof(struct regwatch_event), 64);
	char *p;

	F.shared_size = align_up(states_off + (size_t)max_watches * 8,
				 FAKE_PAGE);
	F.memfd = memfd_create("fake-regwatch", MFD_CLOEXEC);
	assert_true(F.memfd >= 0);
	assert_int_equal(ftruncate(F.memfd, F.shared_size + FAKE_PAGE), 0);
	p = __real_mmap(NULL, F.shared_size, PROT_READ | PROT_WRITE,
			MAP_SHARED, F.memfd, 0);
	assert_true(p != MAP_FAILED);
	F.hdr = (void *)p;
	F.ring = (void *)(p + ring_off);
	F.states = (void *)(p + states_off);
	F.consumer = __real_mmap(NULL, FAKE_PAGE, PROT_READ | PROT_WRITE,
				 MAP_SHARED, F.memfd, F.shared_size);
	assert_true(F.consumer != MAP_FAILED);
	F.w = calloc(max_watches, sizeof(*F.w));
	assert_non_null(F.w);
	F.ring_entries = ring_entries;
	F.max_watches = max_watches;

	F.hdr->abi_version = REGWATCH_ABI_VERSION;
	F.hdr->header_size = sizeof(*F.hdr);
	F.hdr->ring_entries = ring_entries;
	F.hdr->event_size = sizeof(struct regwatch_event);
	F.hdr->ring_offset = ring_off;
	F.hdr->states_offset = states_off;
	F.hdr->max_watches = max_watches;
	F.prod = F.last_head = F.start_index;
	F.hdr->producer = F.consumer->head = F.start_index;
}

static int fake_config(struct regwatch_config *cfg)
{
	F.cfg_in = *cfg;
	if (cfg->size != sizeof(*cfg))
		return EINVAL;
	if (cfg->abi_version != REGWATCH_ABI_VERSION)
		return EPROTO;
	if (cfg->flags || cfg->reserved[0] || cfg->reserved[1] ||
	    cfg->reserved[2] || cfg->reserved[3])
		return EINVAL;
	if (F.configured)
		return EBUSY;
	if (F.config_errno)
		return F.config_errno;
	fake_area_create(pow2_at_least(cfg->ring_entries ? cfg->ring_entries :
				       16),
			 cfg->max_watches ? cfg->max_watches : 32);
	F.configured = true;
	cfg->abi_version = F.config_abi;
	cfg->ring_entries = F.ring_entries;
	cfg->max_watches = F.max_watches;
	cfg->features = REGWATCH_FEAT_ONESHOT | REGWATCH_FEAT_STREAMING |
			REGWATCH_FEAT_EVENTFD | REGWATCH_FEAT_BATCH |
			REGWATCH_FEAT_READ |
			(F.no_feat_signal ? 0 : REGWATCH_FEAT_SIGNAL);
	cfg->shared_offset = FAKE_OFF_SHARED;
	cfg->shared_size = F.shared_size;
	cfg->consumer_offset = FAKE_OFF_CONSUMER;
	cfg->consumer_size = FAKE_PAGE;
	if (F.corrupt)
		F.corrupt(cfg, F.hdr);
	return 0;
}

/* WATCH: lowest free slot, next generation, like the kernel's xa_alloc. */
static int fake_watch(struct regwatch_watch *req)
{
	uint32_t slot, gen;

	if (!req->len || (req->flags & ~REGWATCH_WATCH_FLAGS) ||
	    req->reserved[0] || req->reserved[1])
		return EINVAL;
	for (slot = 0; slot < F.max_watches && F.w[slot].live; slot++)
		;
	if (slot == F.max_watches)
		return ENOSPC;
	gen = (uint32_t)(F.states[slot] >> 32) + 1;
	if (!gen)
		gen = 1;
	F.w[slot] = (struct fake_watch){ true, req->flags, req->cookie };
	__atomic_store_n(&F.states[slot], (uint64_t)gen << 32 |
			 REGWATCH_STATE_ARMED, __ATOMIC_RELEASE);
	req->watch_id = (uint64_t)gen << 32 | slot;
	req->armed_state = (uint64_t)gen << 32 | REGWATCH_STATE_ARMED;
	return 0;
}

static int fake_unwatch(uint64_t id)
{
	uint32_t slot = REGWATCH_ID_SLOT(id);

	if (slot >= F.max_watches || !F.w[slot].live ||
	    REGWATCH_ID_GEN(F.states[slot]) != REGWATCH_ID_GEN(id))
		return ENOENT;
	F.w[slot].live = false;
	__atomic_store_n(&F.states[slot], (uint64_t)REGWATCH_ID_GEN(id) << 32 |
			 REGWATCH_STATE_FREE, __ATOMIC_RELEASE);
	return 0;
}

static int fake_batch_check(const struct regwatch_batch *b)
{
	if (b->flags || !b->count || b->count > REGWATCH_BATCH_MAX ||
	    !b->entries)
		return EINVAL;
	return 0;
}

/* WATCHV/UNWATCHV: each entry on its own; returns how many succeeded. */
static int fake_watchv(struct regwatch_batch *b, int *ok)
{
	struct regwatch_watch *req = (void *)(uintptr_t)b->entries;
	int err = fake_batch_check(b);

	for (uint32_t i = 0; !err && i < b->count; i++) {
		req[i].result = -fake_watch(&req[i]);
		*ok += !req[i].result;
	}
	return err;
}

static int fake_unwatchv(struct regwatch_batch *b, int *ok)
{
	struct regwatch_unwatch *req = (void *)(uintptr_t)b->entries;
	int err = fake_batch_check(b);

	for (uint32_t i = 0; !err && i < b->count; i++) {
		req[i].result = -fake_unwatch(req[i].watch_id);
		*ok += !req[i].result;
	}
	return err;
}

static int fake_stats(struct regwatch_stats *st)
{
	if (st->size < offsetof(struct regwatch_stats, oneshot_reserved) ||
	    st->pad)
		return EINVAL;
	st->watches = 0;
	for (uint32_t i = 0; i < F.max_watches; i++)
		st->watches += F.w[i].live;
	st->events = F.prod - F.start_index;
	st->module_monitors = 1;
	return 0;
}

static int fake_set_eventfd(const struct regwatch_eventfd *e)
{
	if (e->flags || e->fd < -1)
		return EINVAL;
	F.eventfd = e->fd;
	return 0;
}

/* The kernel's checks: a catchable signal or 0, nothing else set. */
static int fake_set_signal(const struct regwatch_signal *s)
{
	if (s->flags || s->reserved[0] || s->reserved[1])
		return EINVAL;
	if (s->signo < 0 || s->signo > 64 || s->signo == SIGKILL ||
	    s->signo == SIGSTOP)
		return EINVAL;
	F.signo = s->signo;
	return 0;
}

/* Errors as positive errno; *ret is the ioctl's success value. */
static int fake_ioctl(unsigned long req, void *arg, int *ret)
{
	if (req == REGWATCH_IOC_CONFIG)
		return fake_config(arg);
	if (!F.configured)
		return EBADFD;
	if (F.ioctl_errno)
		return F.ioctl_errno;
	switch (req) {
	case REGWATCH_IOC_WATCH:
		return fake_watch(arg);
	case REGWATCH_IOC_UNWATCH:
		if (((struct regwatch_unwatch *)arg)->pad)
			return EINVAL;
		return fake_unwatch(((struct regwatch_unwatch *)arg)->watch_id);
	case REGWATCH_IOC_WATCHV:
		return fake_watchv(arg, ret);
	case REGWATCH_IOC_UNWATCHV:
		return fake_unwatchv(arg, ret);
	case REGWATCH_IOC_SET_EVENTFD:
		return fake_set_eventfd(arg);
	case REGWATCH_IOC_SET_SIGNAL:
		return fake_set_signal(arg);
	case REGWATCH_IOC_STATS:
		return fake_stats(arg);
	default:
		return ENOTTY;
	}
}

/* The consumer head as the kernel takes it: never outside its bounds. */
static uint64_t fake_consumed(void)
{
	uint64_t head = __atomic_load_n(&F.consumer->head, __ATOMIC_ACQUIRE);

	assert_true(head - F.last_head <= F.prod - F.last_head);
	F.last_head = head;
	return head;
}

/* Publish one event; the kernel never overwrites an unconsumed entry. */
static void fake_publish(const struct regwatch_event *ev)
{
	assert_true(F.prod - fake_consumed() < F.ring_entries);
	F.ring[F.prod & (F.ring_entries - 1)] = *ev;
	F.prod++;
	__atomic_store_n(&F.hdr->producer, F.prod, __ATOMIC_RELEASE);
}

/* An invalidation hits a watch: state word, then event, then generation. */
static void fake_fire(uint64_t id, uint32_t cls, uint64_t start, uint64_t end)
{
	uint32_t slot = REGWATCH_ID_SLOT(id);
	struct fake_watch *w = &F.w[slot];
	bool oneshot = !(w->flags & REGWATCH_WATCH_STREAMING);
	uint64_t word = F.states[slot];
	uint64_t count = ((word >> REGWATCH_STATE_COUNT_SHIFT) + 1) &
			 COUNT_MASK;

	assert_true(w->live);
	if (oneshot && (word & REGWATCH_STATE_MASK) == REGWATCH_STATE_FIRED)
		return;		/* coalesced */
	word = (word & ~0xffffffffULL) | count << REGWATCH_STATE_COUNT_SHIFT |
	       (oneshot ? REGWATCH_STATE_FIRED : REGWATCH_STATE_ARMED);
	__atomic_store_n(&F.states[slot], word, __ATOMIC_RELEASE);
	fake_publish(&(struct regwatch_event){
		.type = REGWATCH_EVENT_INVALIDATE,
		.class = cls,
		.flags = oneshot ? REGWATCH_EVENT_ONESHOT : 0,
		.watch_id = id,
		.cookie = w->cookie,
		.start = start,
		.end = end,
	});
	__atomic_store_n(&F.hdr->generation, F.hdr->generation + 1,
			 __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------------- wraps */

/* Only the device paths are faked; anything else is a real open. */
static bool fake_path(const char *path)
{
	return !strcmp(path, REGWATCH_DEVICE) || !strncmp(path, "/dev/fake", 9);
}

int __wrap_open(const char *path, int flags, ...)
{
	va_list ap;
	int mode = 0;

	if (!fake_path(path)) {
		va_start(ap, flags);
		if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
			mode = va_arg(ap, int);
		va_end(ap);
		return __real_open(path, flags, mode);
	}
	if (F.open_errno) {
		errno = F.open_errno;
		return -1;
	}
	assert_false(F.fd_open);	/* one monitor at a time here */
	snprintf(F.path, sizeof(F.path), "%s", path);
	F.open_flags = flags;
	F.fd_open = true;
	return FAKE_FD;
}

int __wrap_open64(const char *path, int flags, ...)
{
	va_list ap;
	int mode;

	va_start(ap, flags);
	mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ?
	       va_arg(ap, int) : 0;
	va_end(ap);
	return __wrap_open(path, flags, mode);
}

int __wrap_close(int fd)
{
	if (fd != FAKE_FD)
		return __real_close(fd);
	assert_true(F.fd_open);
	F.fd_open = false;
	return 0;
}

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	int err, ret = 0;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (fd != FAKE_FD)
		return __real_ioctl(fd, req, arg);
	if (!F.fd_open) {
		errno = EBADF;
		return -1;
	}
	F.ioctls++;
	err = fake_ioctl(req, arg, &ret);
	if (err) {
		errno = err;
		return -1;
	}
	return ret;
}

/* The kernel's mmap rules: shared only, exact sizes, read-only area. */
static int fake_mmap_check(size_t len, int prot, int flags, off_t off)
{
	if (!F.fd_open || !F.configured || !(flags & MAP_SHARED))
		return EINVAL;
	if ((uint64_t)off == FAKE_OFF_SHARED) {
		if (len != F.shared_size)
			return EINVAL;
		if (prot & PROT_WRITE)
			return EPERM;
		return F.shared_mmap_errno;
	}
	if ((uint64_t)off == FAKE_OFF_CONSUMER) {
		if (len != FAKE_PAGE)
			return EINVAL;
		return F.consumer_mmap_errno;
	}
	return EINVAL;
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off)
{
	bool shared = (uint64_t)off == FAKE_OFF_SHARED;
	void *p;
	int err;

	if (fd != FAKE_FD)
		return __real_mmap(addr, len, prot, flags, fd, off);
	err = fake_mmap_check(len, prot, flags, off);
	if (err) {
		errno = err;
		return MAP_FAILED;
	}
	p = __real_mmap(NULL, len, prot, MAP_SHARED, F.memfd,
			shared ? 0 : (off_t)F.shared_size);
	assert_true(p != MAP_FAILED);
	*(shared ? &F.user_shared : &F.user_consumer) = p;
	F.maps++;
	return p;
}

void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off)
{
	return __wrap_mmap(addr, len, prot, flags, fd, off);
}

int __wrap_munmap(void *addr, size_t len)
{
	if (addr && addr == F.user_shared) {
		assert_int_equal(len, F.shared_size);
		F.user_shared = NULL;
		F.unmaps++;
	} else if (addr && addr == F.user_consumer) {
		assert_int_equal(len, FAKE_PAGE);
		F.user_consumer = NULL;
		F.unmaps++;
	}
	return __real_munmap(addr, len);
}

void *__wrap_calloc(size_t n, size_t size)
{
	if (F.calloc_fails) {
		F.calloc_fails = false;
		errno = ENOMEM;
		return NULL;
	}
	return __real_calloc(n, size);
}

/* -------------------------------------------------------------- helpers */

static int setup(void **state)
{
	(void)state;
	fake_reset();
	return 0;
}

/* Every test must leave no fd and no mapping behind. */
static int teardown(void **state)
{
	(void)state;
	assert_false(F.fd_open);
	assert_int_equal(F.maps, F.unmaps);
	fake_destroy();
	return 0;
}

static struct regwatch *open_rw(unsigned int ring, unsigned int max)
{
	struct regwatch_options o = { .ring_entries = ring, .max_watches = max };
	struct regwatch *rw = NULL;

	assert_int_equal(regwatch_open(&o, &rw), 0);
	assert_non_null(rw);
	return rw;
}

/* Where the library's (read-only) view of a slot's state word is. */
static const uint64_t *user_state(uint32_t slot)
{
	return (const uint64_t *)((const char *)F.user_shared +
				  F.hdr->states_offset) + slot;
}

static bool in_user_shared(const void *p)
{
	const char *base = F.user_shared;

	return (const char *)p >= base && (const char *)p < base + F.shared_size;
}

/* Records drained events; returns stop_ret at the stop_at-th call. */
struct rec {
	int calls, stop_at, stop_ret;
	bool ev_in_ring;
	struct regwatch_event ev[64];
};

static int record(const struct regwatch_event *ev, void *arg)
{
	struct rec *r = arg;

	assert_true(r->calls < 64);
	r->ev_in_ring |= in_user_shared(ev);
	r->ev[r->calls++] = *ev;
	return r->calls == r->stop_at ? r->stop_ret : 0;
}

static void assert_event(const struct regwatch_event *ev, uint64_t id,
			 uint64_t cookie, uint32_t cls, uint64_t start,
			 uint64_t end)
{
	assert_int_equal(ev->type, REGWATCH_EVENT_INVALIDATE);
	assert_int_equal(ev->watch_id, id);
	assert_int_equal(ev->cookie, cookie);
	assert_int_equal(ev->class, cls);
	assert_int_equal(ev->start, start);
	assert_int_equal(ev->end, end);
}

/* ------------------------------------------------------------ open/close */

static void test_open_close(void **state)
{
	struct regwatch_options o = {
		.ring_entries = 5, .max_watches = 16, .device = "/dev/fake-rw",
	};
	const struct regwatch_config *cfg;
	struct regwatch *rw = NULL;

	(void)state;
	errno = 777;
	assert_int_equal(regwatch_open(&o, &rw), 0);
	assert_int_equal(errno, 777);
	assert_string_equal(F.path, "/dev/fake-rw");
	assert_int_equal(F.open_flags, O_RDWR | O_CLOEXEC);
	/* The handshake as sent. */
	assert_int_equal(F.cfg_in.size, sizeof(struct regwatch_config));
	assert_int_equal(F.cfg_in.abi_version, REGWATCH_ABI_VERSION);
	assert_int_equal(F.cfg_in.ring_entries, 5);
	assert_int_equal(F.cfg_in.max_watches, 16);
	/* The answer as kept. */
	cfg = regwatch_config(rw);
	assert_non_null(cfg);
	assert_int_equal(cfg->ring_entries, 8);
	assert_int_equal(cfg->max_watches, 16);
	assert_int_equal(cfg->shared_size, F.shared_size);
	assert_true(cfg->features & REGWATCH_FEAT_BATCH);
	assert_int_equal(regwatch_fd(rw), FAKE_FD);
	assert_int_equal(F.maps, 2);
	assert_int_equal(regwatch_pending(rw), 0);

	regwatch_close(rw);
	assert_int_equal(errno, 777);
	assert_false(F.fd_open);
	assert_null(F.user_shared);
	assert_null(F.user_consumer);
}

static void test_open_defaults(void **state)
{
	struct regwatch *rw = NULL;

	(void)state;
	assert_int_equal(regwatch_open(NULL, &rw), 0);
	assert_string_equal(F.path, REGWATCH_DEVICE);
	assert_int_equal(F.cfg_in.ring_entries, 0);
	assert_int_equal(F.cfg_in.max_watches, 0);
	assert_int_equal(regwatch_config(rw)->ring_entries, 16);
	regwatch_close(rw);
}

/* A failed open leaves *out alone, errno alone, and nothing open. */
static void expect_open_fails(int want)
{
	struct regwatch *rw = (struct regwatch *)&rw;

	errno = 777;
	assert_int_equal(regwatch_open(NULL, &rw), want);
	assert_int_equal(errno, 777);
	assert_ptr_equal(rw, (struct regwatch *)&rw);
	assert_false(F.fd_open);
	assert_int_equal(F.maps, F.unmaps);
}

static void test_open_missing_device(void **state)
{
	(void)state;
	F.open_errno = ENOENT;
	expect_open_fails(-ENOENT);
	assert_int_equal(F.ioctls, 0);
}

static void test_open_out_of_memory(void **state)
{
	(void)state;
	F.calloc_fails = true;
	expect_open_fails(-ENOMEM);
	assert_int_equal(F.path[0], 0);		/* never got to open() */
}

static void test_open_config_rejected(void **state)
{
	(void)state;
	F.config_errno = EPROTO;	/* kernel speaks another ABI */
	expect_open_fails(-EPROTO);
	F.config_errno = EINVAL;	/* size above the module's cap */
	expect_open_fails(-EINVAL);
	assert_int_equal(F.maps, 0);
}

static void test_open_abi_mismatch(void **state)
{
	(void)state;
	F.config_abi = REGWATCH_ABI_VERSION + 1;
	expect_open_fails(-EPROTO);
	assert_int_equal(F.maps, 0);
}

static void test_open_mmap_fails(void **state)
{
	(void)state;
	F.shared_mmap_errno = ENOMEM;
	expect_open_fails(-ENOMEM);
	assert_int_equal(F.maps, 0);

	fake_destroy();
	F.consumer_mmap_errno = EAGAIN;
	expect_open_fails(-EAGAIN);
	assert_int_equal(F.maps, 1);	/* the shared area, unmapped again */
}

/* Layouts an ABI v1 library must refuse rather than misread. */
static void small_shared(struct regwatch_config *c,
			 struct regwatch_shared_header *h)
{
	(void)h;
	c->shared_size = sizeof(*h) - 8;
}

static void small_consumer(struct regwatch_config *c,
			   struct regwatch_shared_header *h)
{
	(void)h;
	c->consumer_size = 8;
}

static void hdr_abi(struct regwatch_config *c,
		    struct regwatch_shared_header *h)
{
	(void)c;
	h->abi_version = 2;
}

static void hdr_header_size(struct regwatch_config *c,
			    struct regwatch_shared_header *h)
{
	(void)c;
	h->header_size += 8;
}

static void hdr_event_size(struct regwatch_config *c,
			   struct regwatch_shared_header *h)
{
	(void)c;
	h->event_size += 8;
}

static void ring_not_pow2(struct regwatch_config *c,
			  struct regwatch_shared_header *h)
{
	c->ring_entries = h->ring_entries = 12;
}

static void ring_zero(struct regwatch_config *c,
		      struct regwatch_shared_header *h)
{
	c->ring_entries = h->ring_entries = 0;
}

static void ring_mismatch(struct regwatch_config *c,
			  struct regwatch_shared_header *h)
{
	(void)c;
	h->ring_entries *= 2;
}

static void watches_mismatch(struct regwatch_config *c,
			     struct regwatch_shared_header *h)
{
	(void)c;
	h->max_watches += 1;
}

static void ring_outside(struct regwatch_config *c,
			 struct regwatch_shared_header *h)
{
	h->ring_offset = c->shared_size - 64;
}

static void ring_offset_wraps(struct regwatch_config *c,
			      struct regwatch_shared_header *h)
{
	(void)c;
	h->ring_offset = UINT64_MAX - 7;
}

static void ring_misaligned(struct regwatch_config *c,
			    struct regwatch_shared_header *h)
{
	(void)c;
	h->ring_offset += 4;
}

static void states_outside(struct regwatch_config *c,
			   struct regwatch_shared_header *h)
{
	h->states_offset = c->shared_size - 64;
}

static void states_too_many(struct regwatch_config *c,
			    struct regwatch_shared_header *h)
{
	c->max_watches = h->max_watches = 0x7fffffff;
}

static void test_open_bad_layout(void **state)
{
	static const struct {
		const char *name;
		void (*fn)(struct regwatch_config *,
			   struct regwatch_shared_header *);
	} cases[] = {
		{ "small_shared", small_shared },
		{ "small_consumer", small_consumer },
		{ "hdr_abi", hdr_abi },
		{ "hdr_header_size", hdr_header_size },
		{ "hdr_event_size", hdr_event_size },
		{ "ring_not_pow2", ring_not_pow2 },
		{ "ring_zero", ring_zero },
		{ "ring_mismatch", ring_mismatch },
		{ "watches_mismatch", watches_mismatch },
		{ "ring_outside", ring_outside },
		{ "ring_offset_wraps", ring_offset_wraps },
		{ "ring_misaligned", ring_misaligned },
		{ "states_outside", states_outside },
		{ "states_too_many", states_too_many },
	};
	struct regwatch *rw;
	int ret;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fake_destroy();
		F.corrupt = cases[i].fn;
		rw = NULL;
		ret = regwatch_open(NULL, &rw);
		if (ret != -EPROTO)
			fail_msg("%s: regwatch_open returned %d, not -EPROTO",
				 cases[i].name, ret);
		assert_null(rw);
		assert_false(F.fd_open);
		assert_int_equal(F.maps, F.unmaps);
	}
}

/* ----------------------------------------------------------------- watch */

static void test_watch_gives_valid_ref(void **state)
{
	struct regwatch *rw = open_rw(8, 16);
	struct regwatch_ref a, b;
	static char buf[8192];

	(void)state;
	assert_int_equal(regwatch_watch(rw, buf, 100, 0xc0c0, 0, &a), 0);
	assert_int_equal(regwatch_watch(rw, buf + 4096, 4096, 7,
					REGWATCH_WATCH_STREAMING, &b), 0);
	assert_true(regwatch_ref_valid(&a));
	assert_true(regwatch_ref_valid(&b));
	/* Slot 0 and 1, generation 1, pointing into the read-only view. */
	assert_int_equal(a.id, 1ULL << 32 | 0);
	assert_int_equal(b.id, 1ULL << 32 | 1);
	assert_ptr_equal(a.state, user_state(0));
	assert_ptr_equal(b.state, user_state(1));
	assert_int_equal(a.armed_state, 1ULL << 32 | REGWATCH_STATE_ARMED);
	assert_int_equal(F.w[0].cookie, 0xc0c0);
	assert_int_equal(F.w[1].flags, REGWATCH_WATCH_STREAMING);

	assert_int_equal(regwatch_unwatch(rw, &a), 0);
	assert_false(regwatch_ref_valid(&a));
	assert_true(regwatch_ref_valid(&b));
	assert_int_equal(regwatch_unwatch(rw, &a), -ENOENT);
	regwatch_close(rw);
}

static void test_watch_errors(void **state)
{
	struct regwatch *rw = open_rw(8, 2);
	struct regwatch_ref r, keep;
	static char buf[4096];

	(void)state;
	memset(&keep, 0x5a, sizeof(keep));
	r = keep;
	errno = 777;
	assert_int_equal(regwatch_watch(rw, buf, 0, 0, 0, &r), -EINVAL);
	assert_int_equal(regwatch_watch(rw, buf, 1, 0, 1U << 7, &r), -EINVAL);
	assert_int_equal(errno, 777);
	assert_memory_equal(&r, &keep, sizeof(r));	/* untouched */
	assert_int_equal(regwatch_watch(rw, buf, 1, 0, 0, &r), 0);
	assert_int_equal(regwatch_watch(rw, buf, 1, 0, 0, &r), 0);
	assert_int_equal(regwatch_watch(rw, buf, 1, 0, 0, &r), -ENOSPC);
	F.ioctl_errno = EIO;		/* e.g. a forked child */
	assert_int_equal(regwatch_unwatch(rw, &r), -EIO);
	assert_int_equal(errno, 777);
	regwatch_close(rw);
}

/* A one-shot watch fires: the state word, the ring and generation agree. */
static void test_fire_invalidates(void **state)
{
	struct regwatch *rw = open_rw(8, 16);
	struct regwatch_ref a, s;
	struct rec r = { 0 };
	uint64_t seen = 0;
	static char buf[4096];

	(void)state;
	assert_int_equal(regwatch_watch(rw, buf, 4096, 11, 0, &a), 0);
	assert_int_equal(regwatch_watch(rw, buf, 4096, 12,
					REGWATCH_WATCH_STREAMING, &s), 0);
	assert_false(regwatch_changed(rw, &seen));
	assert_int_equal(seen, 0);

	fake_fire(a.id, REGWATCH_CLASS_UNMAP, 0x1000, 0x2000);
	assert_false(regwatch_ref_valid(&a));
	assert_true(regwatch_ref_valid(&s));
	assert_true(regwatch_changed(rw, &seen));
	assert_int_equal(seen, 1);
	assert_false(regwatch_changed(rw, &seen));
	assert_int_equal(regwatch_pending(rw), 1);

	/* A streaming watch stays ARMED, but its count moves on. */
	fake_fire(s.id, REGWATCH_CLASS_CLEAR, 0x1000, 0x1800);
	fake_fire(s.id, REGWATCH_CLASS_CLEAR, 0x1800, 0x2000);
	assert_false(regwatch_ref_valid(&s));
	assert_true(regwatch_changed(rw, &seen));
	assert_int_equal(seen, 3);
	assert_false(regwatch_changed(rw, &seen));

	/* An event without a fired watch (RESYNC-like) is not a "change". */
	fake_publish(&(struct regwatch_event){
		.type = REGWATCH_EVENT_RESYNC });
	assert_false(regwatch_changed(rw, &seen));
	assert_int_equal(regwatch_pending(rw), 4);

	assert_int_equal(regwatch_drain(rw, record, &r), 4);
	assert_int_equal(r.calls, 4);
	assert_event(&r.ev[0], a.id, 11, REGWATCH_CLASS_UNMAP, 0x1000, 0x2000);
	assert_int_equal(r.ev[0].flags, REGWATCH_EVENT_ONESHOT);
	assert_event(&r.ev[1], s.id, 12, REGWATCH_CLASS_CLEAR, 0x1000, 0x1800);
	assert_int_equal(r.ev[1].flags, 0);
	assert_event(&r.ev[2], s.id, 12, REGWATCH_CLASS_CLEAR, 0x1800, 0x2000);
	assert_int_equal(r.ev[3].type, REGWATCH_EVENT_RESYNC);
	assert_false(r.ev_in_ring);	/* the callback got copies */
	assert_int_equal(regwatch_pending(rw), 0);
	assert_int_equal(fake_consumed(), F.prod);
	regwatch_close(rw);
}

/* A stale ref never validates against the next watch in its slot. */
static void test_stale_ref_after_slot_reuse(void **state)
{
	struct regwatch *rw = open_rw(8, 4);
	struct regwatch_ref old, new;
	static char buf[4096];

	(void)state;
	assert_int_equal(regwatch_watch(rw, buf, 1, 1, 0, &old), 0);
	assert_int_equal(regwatch_unwatch(rw, &old), 0);
	assert_int_equal(regwatch_watch(rw, buf, 1, 2, 0, &new), 0);
	assert_ptr_equal(old.state, new.state);		/* same slot */
	assert_int_not_equal(old.id, new.id);
	assert_false(regwatch_ref_valid(&old));
	assert_true(regwatch_ref_valid(&new));
	assert_int_equal(regwatch_unwatch(rw, &old), -ENOENT);
	assert_true(regwatch_ref_valid(&new));
	assert_int_equal(regwatch_unwatch(rw, &new), 0);
	regwatch_close(rw);
}

/* ----------------------------------------------------------------- drain */

static void test_drain_empty(void **state)
{
	struct regwatch *rw = open_rw(8, 4);
	struct rec r = { 0 };

	(void)state;
	assert_int_equal(regwatch_drain(rw, record, &r), 0);
	assert_int_equal(r.calls, 0);
	regwatch_close(rw);
}

/*
 * 20 streaming events through a ring of 8, in rounds that end at every
 * kind of ring position, each round drained in order.
 */
typedef int (*drain_fn)(struct regwatch *, regwatch_event_cb, void *);

static void drain_rounds(uint64_t start_index, drain_fn drain)
{
	static const int rounds[] = { 3, 8, 1, 5, 3 };
	struct regwatch *rw;
	struct regwatch_ref s;
	static char buf[4096];
	uint64_t seq = 0;

	F.start_index = start_index;
	rw = open_rw(8, 4);
	assert_int_equal(regwatch_watch(rw, buf, 4096, 99,
					REGWATCH_WATCH_STREAMING, &s), 0);
	for (size_t i = 0; i < sizeof(rounds) / sizeof(rounds[0]); i++) {
		struct rec r = { 0 };

		for (int k = 0; k < rounds[i]; k++)
			fake_fire(s.id, 1U << ((seq + k) % REGWATCH_NR_CLASSES),
				  (seq + k) << 12, (seq + k + 1) << 12);
		assert_int_equal(regwatch_pending(rw), rounds[i]);
		assert_int_equal(drain(rw, record, &r), rounds[i]);
		assert_int_equal(r.calls, rounds[i]);
		for (int k = 0; k < rounds[i]; k++, seq++)
			assert_event(&r.ev[k], s.id, 99,
				     1U << (seq % REGWATCH_NR_CLASSES),
				     seq << 12, (seq + 1) << 12);
		assert_int_equal(regwatch_pending(rw), 0);
	}
	assert_int_equal(seq, 20);
	assert_int_equal(fake_consumed(), start_index + 20);
	regwatch_close(rw);
}

static void test_drain_wraps_ring(void **state)
{
	(void)state;
	drain_rounds(0, regwatch_drain);
}

/* Free-running 64-bit indices: also correct when they wrap past 2^64. */
static void test_drain_wraps_index(void **state)
{
	(void)state;
	drain_rounds(UINT64_MAX - 6, regwatch_drain);
}

static struct regwatch *open_with_events(int n, struct regwatch_ref *s)
{
	struct regwatch *rw = open_rw(8, 4);
	static char buf[4096];

	assert_int_equal(regwatch_watch(rw, buf, 4096, 5,
					REGWATCH_WATCH_STREAMING, s), 0);
	for (int i = 0; i < n; i++)
		fake_fire(s->id, REGWATCH_CLASS_CLEAR, i, i + 1);
	return rw;
}

/* A positive return stops after consuming that event. */
static void test_drain_stop_positive(void **state)
{
	struct regwatch_ref s;
	struct regwatch *rw = open_with_events(5, &s);
	struct rec r = { .stop_at = 2, .stop_ret = 42 };

	(void)state;
	assert_int_equal(regwatch_drain(rw, record, &r), 42);
	assert_int_equal(r.calls, 2);
	assert_int_equal(regwatch_pending(rw), 3);
	assert_int_equal(fake_consumed(), F.prod - 3);

	r = (struct rec){ 0 };
	assert_int_equal(regwatch_drain(rw, record, &r), 3);
	assert_event(&r.ev[0], s.id, 5, REGWATCH_CLASS_CLEAR, 2, 3);
	assert_event(&r.ev[2], s.id, 5, REGWATCH_CLASS_CLEAR, 4, 5);
	regwatch_close(rw);
}

/* A negative return stops and leaves that event queued. */
static void test_drain_stop_negative(void **state)
{
	struct regwatch_ref s;
	struct regwatch *rw = open_with_events(5, &s);
	struct rec r = { .stop_at = 2, .stop_ret = -ECANCELED };

	(void)state;
	assert_int_equal(regwatch_drain(rw, record, &r), -ECANCELED);
	assert_int_equal(regwatch_pending(rw), 4);

	r = (struct rec){ .stop_at = 1, .stop_ret = -EAGAIN };
	assert_int_equal(regwatch_drain(rw, record, &r), -EAGAIN);
	assert_int_equal(regwatch_pending(rw), 4);	/* nothing consumed */

	r = (struct rec){ 0 };
	assert_int_equal(regwatch_drain(rw, record, &r), 4);
	assert_event(&r.ev[0], s.id, 5, REGWATCH_CLASS_CLEAR, 1, 2);
	assert_event(&r.ev[3], s.id, 5, REGWATCH_CLASS_CLEAR, 4, 5);
	regwatch_close(rw);
}

/* read(2) advances the same head: drain goes on from where it stands. */
static void test_drain_follows_shared_head(void **state)
{
	struct regwatch_ref s;
	struct regwatch *rw = open_with_events(4, &s);
	struct rec r = { 0 };

	(void)state;
	F.consumer->head += 3;		/* the kernel's read() consumed 3 */
	assert_int_equal(regwatch_pending(rw), 1);
	assert_int_equal(regwatch_drain(rw, record, &r), 1);
	assert_event(&r.ev[0], s.id, 5, REGWATCH_CLASS_CLEAR, 3, 4);
	regwatch_close(rw);
}

/* A scribbled head (the page is user-writable) must not loop forever. */
static void test_drain_broken_head(void **state)
{
	struct regwatch_ref s;
	struct regwatch *rw = open_with_events(2, &s);
	struct rec r = { 0 };

	(void)state;
	F.consumer->head = F.prod + 5;
	assert_int_equal(regwatch_drain(rw, record, &r), -EPROTO);
	assert_int_equal(r.calls, 0);
	assert_int_equal(F.consumer->head, F.prod + 5);	/* left alone */
	F.consumer->head = F.prod - 2;
	assert_int_equal(regwatch_drain(rw, record, &r), 2);
	regwatch_close(rw);
}

/* ----------------------------------------------------------------- batch */

static void test_watchv_and_ref_from(void **state)
{
	struct regwatch *rw = open_rw(8, 8);
	struct regwatch_watch req[4];
	struct regwatch_ref ref[4];
	static char buf[4 * 4096];

	(void)state;
	memset(req, 0, sizeof(req));
	for (int i = 0; i < 4; i++) {
		req[i].addr = (uintptr_t)(buf + i * 4096);
		req[i].len = 4096;
		req[i].cookie = 100 + i;
	}
	req[1].len = 0;			/* EINVAL */
	req[3].flags = 1U << 9;		/* EINVAL */
	assert_int_equal(regwatch_watchv(rw, req, 4), 2);
	assert_int_equal(req[0].result, 0);
	assert_int_equal(req[1].result, -EINVAL);
	assert_int_equal(req[2].result, 0);
	assert_int_equal(req[3].result, -EINVAL);

	/* A failed entry that still holds a live watch's id and state. */
	req[3].watch_id = req[0].watch_id;
	req[3].armed_state = req[0].armed_state;
	for (int i = 0; i < 4; i++)
		regwatch_ref_from(rw, &req[i], &ref[i]);
	assert_true(regwatch_ref_valid(&ref[0]));
	assert_false(regwatch_ref_valid(&ref[1]));
	assert_true(regwatch_ref_valid(&ref[2]));
	assert_false(regwatch_ref_valid(&ref[3]));
	assert_ptr_equal(ref[0].state, user_state(0));
	assert_ptr_equal(ref[2].state, user_state(1));
	assert_int_equal(ref[2].id, req[2].watch_id);
	assert_int_equal(ref[2].armed_state, req[2].armed_state);

	fake_fire(ref[2].id, REGWATCH_CLASS_UNMAP, 0, 1);
	assert_true(regwatch_ref_valid(&ref[0]));
	assert_false(regwatch_ref_valid(&ref[2]));

	/* A whole-call error: nothing happened. */
	assert_int_equal(regwatch_watchv(rw, req, 0), -EINVAL);
	assert_int_equal(regwatch_watchv(rw, req, REGWATCH_BATCH_MAX + 1),
			 -EINVAL);
	regwatch_close(rw);
}

/* An id whose slot lies beyond the state words must not point there. */
static void test_ref_from_bad_slot(void **state)
{
	struct regwatch *rw = open_rw(8, 8);
	struct regwatch_watch req = {
		.watch_id = 1ULL << 32 | 8,	/* slot == max_watches */
		.armed_state = 0,		/* what lies past the array */
	};
	struct regwatch_ref ref;

	(void)state;
	regwatch_ref_from(rw, &req, &ref);
	assert_false(regwatch_ref_valid(&ref));
	assert_false(in_user_shared(ref.state));
	regwatch_close(rw);
}

static void test_unwatchv(void **state)
{
	struct regwatch *rw = open_rw(8, 8);
	struct regwatch_unwatch u[3] = { 0 };
	struct regwatch_ref a, b;
	static char buf[4096];

	(void)state;
	assert_int_equal(regwatch_watch(rw, buf, 1, 0, 0, &a), 0);
	assert_int_equal(regwatch_watch(rw, buf, 1, 0, 0, &b), 0);
	u[0].watch_id = a.id;
	u[1].watch_id = 77ULL << 32 | 5;	/* never a watch */
	u[2].watch_id = b.id;
	assert_int_equal(regwatch_unwatchv(rw, u, 3), 2);
	assert_int_equal(u[0].result, 0);
	assert_int_equal(u[1].result, -ENOENT);
	assert_int_equal(u[2].result, 0);
	assert_false(regwatch_ref_valid(&a));
	assert_false(regwatch_ref_valid(&b));
	assert_int_equal(regwatch_unwatchv(rw, u, 0), -EINVAL);
	regwatch_close(rw);
}

/* ------------------------------------------------------ eventfd, stats */

static void test_eventfd_and_stats(void **state)
{
	struct regwatch *rw = open_rw(8, 8);
	struct regwatch_stats st;
	struct regwatch_ref a;
	static char buf[4096];

	(void)state;
	assert_int_equal(regwatch_set_eventfd(rw, 9), 0);
	assert_int_equal(F.eventfd, 9);
	assert_int_equal(regwatch_set_eventfd(rw, -1), 0);
	assert_int_equal(F.eventfd, -1);
	assert_int_equal(regwatch_set_eventfd(rw, -2), -EINVAL);

	assert_int_equal(regwatch_watch(rw, buf, 1, 0, 0, &a), 0);
	fake_fire(a.id, REGWATCH_CLASS_RELEASE, 0, 1);
	memset(&st, 0xff, sizeof(st));
	assert_int_equal(regwatch_stats(rw, &st), 0);
	assert_int_equal(st.size, sizeof(st));
	assert_int_equal(st.watches, 1);
	assert_int_equal(st.events, 1);
	assert_int_equal(st.module_monitors, 1);
	assert_int_equal(st.reserved[6], 0);	/* zeroed before the call */

	errno = 777;
	F.ioctl_errno = EIO;
	assert_int_equal(regwatch_stats(rw, &st), -EIO);
	assert_int_equal(regwatch_set_eventfd(rw, 3), -EIO);
	assert_int_equal(errno, 777);
	regwatch_close(rw);
}

/* ------------------------------------------- synchronous delivery */

static void test_set_signal(void **state)
{
	struct regwatch *rw = open_rw(8, 8);
	int ioctls;

	(void)state;
	assert_true(regwatch_config(rw)->features & REGWATCH_FEAT_SIGNAL);
	errno = 777;
	assert_int_equal(regwatch_set_signal(rw, SIGUSR1), 0);
	assert_int_equal(F.signo, SIGUSR1);
	assert_int_equal(regwatch_set_signal(rw, 0), 0);
	assert_int_equal(F.signo, 0);
	/* The kernel's refusals come back as they are. */
	assert_int_equal(regwatch_set_signal(rw, SIGKILL), -EINVAL);
	assert_int_equal(regwatch_set_signal(rw, -1), -EINVAL);
	assert_int_equal(regwatch_set_signal(rw, 65), -EINVAL);
	assert_int_equal(F.signo, 0);
	assert_int_equal(errno, 777);
	regwatch_close(rw);

	/* An older kernel: refused without asking it. */
	fake_destroy();
	F.no_feat_signal = true;
	rw = open_rw(8, 8);
	ioctls = F.ioctls;
	assert_int_equal(regwatch_set_signal(rw, SIGUSR1), -EOPNOTSUPP);
	assert_int_equal(F.ioctls, ioctls);
	assert_int_equal(F.signo, -1);
	regwatch_close(rw);
}

static void test_drain_shared_wraps_ring(void **state)
{
	(void)state;
	drain_rounds(0, regwatch_drain_shared);
}

static void test_drain_shared_wraps_index(void **state)
{
	(void)state;
	drain_rounds(UINT64_MAX - 6, regwatch_drain_shared);
}

/* Same stop rules as regwatch_drain(). */
static void test_drain_shared_stop(void **state)
{
	struct regwatch_ref s;
	struct regwatch *rw = open_with_events(5, &s);
	struct rec r = { .stop_at = 2, .stop_ret = 42 };

	(void)state;
	assert_int_equal(regwatch_drain_shared(rw, record, &r), 42);
	assert_int_equal(regwatch_pending(rw), 3);
	r = (struct rec){ .stop_at = 1, .stop_ret = -EAGAIN };
	assert_int_equal(regwatch_drain_shared(rw, record, &r), -EAGAIN);
	assert_int_equal(regwatch_pending(rw), 3);
	assert_event(&r.ev[0], s.id, 5, REGWATCH_CLASS_CLEAR, 2, 3);
	r = (struct rec){ 0 };
	assert_int_equal(regwatch_drain_shared(rw, record, &r), 3);
	assert_event(&r.ev[0], s.id, 5, REGWATCH_CLASS_CLEAR, 2, 3);
	assert_event(&r.ev[2], s.id, 5, REGWATCH_CLASS_CLEAR, 4, 5);
	assert_int_equal(fake_consumed(), F.prod);
	assert_false(r.ev_in_ring);
	regwatch_close(rw);
}

static void test_drain_shared_broken_head(void **state)
{
	struct regwatch_ref s;
	struct regwatch *rw = open_with_events(2, &s);
	struct rec r = { 0 };

	(void)state;
	F.consumer->head = F.prod + 5;
	assert_int_equal(regwatch_drain_shared(rw, record, &r), -EPROTO);
	assert_int_equal(r.calls, 0);
	assert_int_equal(F.consumer->head, F.prod + 5);
	regwatch_close(rw);
}

/*
 * Another drainer consumes everything while we are in our first
 * callback, and the kernel then reuses the slots it freed. Our drain must
 * pass only the one event it had checked, never the new contents of the
 * reused slots as if they were the old events, and never move the head
 * back.
 */
struct race {
	struct regwatch_ref *s;
	struct rec r;
};

static int record_then_race(const struct regwatch_event *ev, void *arg)
{
	struct race *x = arg;

	record(ev, &x->r);
	if (x->r.calls == 1) {
		F.consumer->head = F.prod;	/* the other drainer, done */
		for (int i = 5; i < 11; i++)	/* slots 5..7, 0..2 reused */
			fake_fire(x->s->id, REGWATCH_CLASS_UNMAP, i, i + 1);
	}
	return 0;
}

static void test_drain_shared_skips_reused_slots(void **state)
{
	struct regwatch_ref s;
	struct regwatch *rw = open_with_events(5, &s);
	struct race x = { .s = &s };

	(void)state;
	assert_int_equal(regwatch_drain_shared(rw, record_then_race, &x), 1);
	assert_int_equal(x.r.calls, 1);
	assert_event(&x.r.ev[0], s.id, 5, REGWATCH_CLASS_CLEAR, 0, 1);
	assert_int_equal(fake_consumed(), 5);	/* not moved back */
	/* The new events are all there for the next drain, in order. */
	x.r = (struct rec){ 0 };
	assert_int_equal(regwatch_drain_shared(rw, record, &x.r), 6);
	for (int i = 0; i < 6; i++)
		assert_event(&x.r.ev[i], s.id, 5, REGWATCH_CLASS_UNMAP, 5 + i,
			     6 + i);
	regwatch_close(rw);
}

/*
 * Three drainers at once against a producer that reuses a slot as soon
 * as the shared head has passed it, writing each event field by field:
 * no drainer may ever pass a torn or foreign entry, and every event must
 * reach some callback.
 */
#define STRESS_EVENTS	20000
#define STRESS_DRAINERS	3

static struct {
	struct regwatch *rw;
	unsigned char seen[STRESS_EVENTS];
	uint64_t torn, calls, errors;
	int done;
} S;

static int stress_cb(const struct regwatch_event *ev, void *arg)
{
	uint64_t i = ev->start;

	(void)arg;
	if (i >= STRESS_EVENTS || ev->end != i + 1 || ev->cookie != ~i ||
	    ev->watch_id != i * 3 + 1 || ev->class != REGWATCH_CLASS_UNMAP)
		__atomic_fetch_add(&S.torn, 1, __ATOMIC_RELAXED);
	else
		__atomic_store_n(&S.seen[i], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&S.calls, 1, __ATOMIC_RELAXED);
	return 0;
}

static void *stress_drainer(void *arg)
{
	(void)arg;
	for (;;) {
		bool last = __atomic_load_n(&S.done, __ATOMIC_ACQUIRE);

		int n = regwatch_drain_shared(S.rw, stress_cb, NULL);

		if (n < 0)
			__atomic_fetch_add(&S.errors, 1, __ATOMIC_RELAXED);
		if (last)
			return NULL;
		if (n == 0)	/* let the producer run (valgrind runs one
				 * thread at a time: a spin can starve it) */
			sched_yield();
	}
}

/* The kernel's rule: write slot i only once the head has passed i - N. */
static void stress_produce(void)
{
	struct regwatch_event *e;

	for (uint64_t i = 0; i < STRESS_EVENTS; i++) {
		while (i - __atomic_load_n(&F.consumer->head,
					   __ATOMIC_ACQUIRE) >= F.ring_entries)
			sched_yield();
		e = &F.ring[i & (F.ring_entries - 1)];
		__atomic_store_n(&e->start, i, __ATOMIC_RELAXED);
		__atomic_store_n(&e->class, REGWATCH_CLASS_UNMAP,
				 __ATOMIC_RELAXED);
		__atomic_store_n(&e->watch_id, i * 3 + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&e->cookie, ~i, __ATOMIC_RELAXED);
		__atomic_store_n(&e->end, i + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&F.hdr->producer, i + 1, __ATOMIC_RELEASE);
	}
}

static void test_drain_shared_concurrent(void **state)
{
	pthread_t t[STRESS_DRAINERS];
	uint64_t missing = 0;

	(void)state;
	memset(&S, 0, sizeof(S));
	S.rw = open_rw(16, 4);
	for (int i = 0; i < STRESS_DRAINERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, stress_drainer,
						NULL), 0);
	stress_produce();
	/* Wait for the drainers to consume all, then let them finish. */
	while (__atomic_load_n(&F.consumer->head, __ATOMIC_ACQUIRE) !=
	       STRESS_EVENTS)
		sched_yield();
	__atomic_store_n(&S.done, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < STRESS_DRAINERS; i++)
		pthread_join(t[i], NULL);
	for (uint64_t i = 0; i < STRESS_EVENTS; i++)
		missing += !S.seen[i];
	fprintf(stderr, "drain_shared: %llu callbacks for %d events\n",
		(unsigned long long)S.calls, STRESS_EVENTS);
	assert_int_equal(S.torn, 0);
	assert_int_equal(missing, 0);
	assert_int_equal(S.errors, 0);
	assert_true(S.calls >= STRESS_EVENTS);
	F.prod = F.last_head = STRESS_EVENTS;	/* for the teardown */
	regwatch_close(S.rw);
}

/* ------------------------------------------------------------- the rest */

static void test_class_names(void **state)
{
	(void)state;
	assert_string_equal(regwatch_class_name(REGWATCH_CLASS_UNMAP), "unmap");
	assert_string_equal(regwatch_class_name(REGWATCH_CLASS_CLEAR), "clear");
	assert_string_equal(regwatch_class_name(REGWATCH_CLASS_RELEASE),
			    "release");
	assert_string_equal(regwatch_class_name(REGWATCH_CLASS_PROTECTION),
			    "protection");
	assert_string_equal(regwatch_class_name(REGWATCH_CLASS_SOFT_DIRTY),
			    "soft_dirty");
	assert_string_equal(regwatch_class_name(0), "unknown");
	assert_string_equal(regwatch_class_name(REGWATCH_CLASS_UNMAP |
						REGWATCH_CLASS_CLEAR),
			    "unknown");
	assert_string_equal(regwatch_class_name(1U << REGWATCH_NR_CLASSES),
			    "unknown");
	assert_string_equal(regwatch_class_name(1U << 31), "unknown");
}

static void test_null_args(void **state)
{
	struct regwatch_ref ref = { 0 }, keep;
	struct regwatch_watch req = { 0 };
	struct regwatch_stats st;
	struct regwatch *rw;
	uint64_t seen = 0;
	int ioctls;

	(void)state;
	assert_int_equal(regwatch_open(NULL, NULL), -EINVAL);
	assert_false(F.fd_open);
	regwatch_close(NULL);

	rw = open_rw(8, 8);
	ioctls = F.ioctls;
	assert_int_equal(regwatch_watch(NULL, &ref, 1, 0, 0, &ref), -EINVAL);
	assert_int_equal(regwatch_watch(rw, &ref, 1, 0, 0, NULL), -EINVAL);
	assert_int_equal(regwatch_unwatch(rw, NULL), -EINVAL);
	assert_int_equal(regwatch_unwatch(NULL, &ref), -EINVAL);
	assert_int_equal(regwatch_watchv(NULL, &req, 1), -EINVAL);
	assert_int_equal(regwatch_unwatchv(NULL, NULL, 1), -EINVAL);
	assert_int_equal(regwatch_set_eventfd(NULL, -1), -EINVAL);
	assert_int_equal(regwatch_stats(NULL, &st), -EINVAL);
	assert_int_equal(regwatch_stats(rw, NULL), -EINVAL);
	assert_int_equal(F.ioctls, ioctls);	/* none reached the kernel */

	assert_int_equal(regwatch_drain(NULL, record, NULL), -EINVAL);
	assert_int_equal(regwatch_drain(rw, NULL, NULL), -EINVAL);
	assert_int_equal(regwatch_drain_shared(NULL, record, NULL), -EINVAL);
	assert_int_equal(regwatch_drain_shared(rw, NULL, NULL), -EINVAL);
	assert_int_equal(regwatch_set_signal(NULL, SIGUSR1), -EINVAL);
	assert_false(regwatch_changed(NULL, &seen));
	assert_false(regwatch_changed(rw, NULL));
	assert_int_equal(regwatch_pending(NULL), 0);
	assert_null(regwatch_config(NULL));
	assert_true(regwatch_fd(NULL) < 0);
	memset(&keep, 0x5a, sizeof(keep));
	ref = keep;
	regwatch_ref_from(NULL, &req, &ref);
	regwatch_ref_from(rw, NULL, &ref);
	regwatch_ref_from(rw, &req, NULL);
	assert_memory_equal(&ref, &keep, sizeof(ref));
	regwatch_close(rw);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_open_close),
		T(test_open_defaults),
		T(test_open_missing_device),
		T(test_open_out_of_memory),
		T(test_open_config_rejected),
		T(test_open_abi_mismatch),
		T(test_open_mmap_fails),
		T(test_open_bad_layout),
		T(test_watch_gives_valid_ref),
		T(test_watch_errors),
		T(test_fire_invalidates),
		T(test_stale_ref_after_slot_reuse),
		T(test_drain_empty),
		T(test_drain_wraps_ring),
		T(test_drain_wraps_index),
		T(test_drain_stop_positive),
		T(test_drain_stop_negative),
		T(test_drain_follows_shared_head),
		T(test_drain_broken_head),
		T(test_watchv_and_ref_from),
		T(test_ref_from_bad_slot),
		T(test_unwatchv),
		T(test_eventfd_and_stats),
		T(test_set_signal),
		T(test_drain_shared_wraps_ring),
		T(test_drain_shared_wraps_index),
		T(test_drain_shared_stop),
		T(test_drain_shared_broken_head),
		T(test_drain_shared_skips_reused_slots),
		T(test_drain_shared_concurrent),
		T(test_class_names),
		T(test_null_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
