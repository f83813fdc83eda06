// SPDX-License-Identifier: MIT
// LDFLAGS: -Wl,--wrap=regwatch_open,--wrap=regwatch_close,--wrap=regwatch_watch,--wrap=regwatch_unwatch,--wrap=regwatch_drain,--wrap=regwatch_fd
/*
 * The kernel monitor adapter (userlib/monitor_kernel.c) and monitor
 * selection, with libregwatch's monitor API replaced by a fake through
 * --wrap (the module cannot be loaded on the host; the guest tests use
 * the real one).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "cache_fakes.h"

#define KMAX 64

struct regwatch {
	int fd;
	uint64_t states[KMAX];
	bool live[KMAX];
	uint64_t cookie[KMAX];
	uintptr_t start[KMAX], end[KMAX];
	struct regwatch_event q[KMAX];
	int nq;
	unsigned int ring_entries;
};

static int open_err;
static int opens, closes, watches, unwatches;
static struct regwatch *last;

int __wrap_regwatch_open(const struct regwatch_options *opts, struct regwatch **out)
{
	struct regwatch *rw;

	if (open_err)
		return open_err;
	rw = calloc(1, sizeof(*rw));
	rw->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	rw->ring_entries = opts ? opts->ring_entries : 0;
	opens++;
	last = rw;
	*out = rw;
	return 0;
}

void __wrap_regwatch_close(struct regwatch *rw)
{
	closes++;
	close(rw->fd);
	free(rw);
}

int __wrap_regwatch_fd(const struct regwatch *rw)
{
	return rw->fd;
}

int __wrap_regwatch_watch(struct regwatch *rw, const void *addr, size_t len,
			  uint64_t cookie, unsigned int flags,
			  struct regwatch_ref *ref)
{
	int s;

	if (flags)
		return -EINVAL;	/* the cache uses one-shot watches */
	for (s = 0; s < KMAX && rw->live[s]; s++)
		;
	if (s == KMAX)
		return -ENOSPC;
	rw->live[s] = true;
	rw->cookie[s] = cookie;
	rw->start[s] = (uintptr_t)addr;
	rw->end[s] = (uintptr_t)addr + len;
	rw->states[s] = (((rw->states[s] >> 32) + 1) << 32) | REGWATCH_STATE_ARMED;
	ref->state = &rw->states[s];
	ref->armed_state = rw->states[s];
	ref->id = (rw->states[s] & ~0xffffffffULL) | s;
	watches++;
	return 0;
}

int __wrap_regwatch_unwatch(struct regwatch *rw, const struct regwatch_ref *ref)
{
	uint32_t s = (uint32_t)ref->id;

	if (s >= KMAX || !rw->live[s] ||
	    (rw->states[s] >> 32) != (ref->id >> 32))
		return -ENOENT;
	rw->live[s] = false;
	rw->states[s] &= ~0xffffffffULL;	/* FREE */
	unwatches++;
	return 0;
}

int __wrap_regwatch_drain(struct regwatch *rw, regwatch_event_cb cb, void *arg)
{
	int i, n = rw->nq;

	for (i = 0; i < n; i++)
		cb(&rw->q[i], arg);
	rw->nq = 0;
	return n;
}

/* The notifier: state word, then the ring. */
static int kfire(struct regwatch *rw, uintptr_t start, uintptr_t end, uint32_t class)
{
	int s, n = 0;

	for (s = 0; s < KMAX; s++) {
		if (!rw->live[s] || (rw->states[s] & REGWATCH_STATE_MASK) !=
		    REGWATCH_STATE_ARMED || rw->end[s] <= start || rw->start[s] >= end)
			continue;
		rw->states[s] = (rw->states[s] & ~0xffffffffULL) |
				(1 << REGWATCH_STATE_COUNT_SHIFT) | REGWATCH_STATE_FIRED;
		rw->q[rw->nq++] = (struct regwatch_event){
			.type = REGWATCH_EVENT_INVALIDATE, .class = class,
			.flags = REGWATCH_EVENT_ONESHOT,
			.watch_id = (rw->states[s] & ~0xffffffffULL) | s,
			.cookie = rw->cookie[s], .start = start, .end = end,
		};
		n++;
	}
	return n;
}

static struct fake_backend fb;

static int create(enum regwatch_cache_monitor m, const char *env,
		  struct regwatch_cache **c)
{
	static const struct regwatch_options kopts = { .ring_entries = 128 };
	struct regwatch_cache_options o = { .monitor = m, .monitor_options = &kopts };
	struct regwatch_cache_backend be;

	fake_backend_init(&fb);
	be = fake_backend_of(&fb);
	if (env)
		setenv("REGWATCH_MONITOR", env, 1);
	else
		unsetenv("REGWATCH_MONITOR");
	return regwatch_cache_create(&o, &be, c);
}

static void test_kernel_monitor(void **state)
{
	struct regwatch_cache *c;
	struct regwatch_cache_entry *e, *e2;
	struct regwatch_cache_stats st;

	(void)state;
	open_err = 0;
	opens = closes = watches = unwatches = 0;
	assert_int_equal(create(REGWATCH_CACHE_MONITOR_KERNEL, NULL, &c), 0);
	assert_string_equal(regwatch_cache_monitor_name(c), "kernel");
	assert_int_equal(last->ring_entries, 128);	/* options passed on */
	assert_int_equal(regwatch_cache_fd(c), last->fd);
	assert_int_equal(regwatch_cache_get(c, FA(0), PAGE, 0, &e), 0);
	assert_int_equal(regwatch_cache_get(c, FA(0), PAGE, 0, &e2), 0);
	assert_ptr_equal(e, e2);
	regwatch_cache_put(c, e2);
	assert_int_equal(watches, 1);
	assert_int_equal(kfire(last, FAKE_BASE, FAKE_BASE + 1, REGWATCH_CLASS_UNMAP), 1);
	/* fired: never returned, even before the event is processed */
	assert_int_equal(regwatch_cache_get(c, FA(0), PAGE, 0, &e2), 0);
	assert_ptr_not_equal(e, e2);
	assert_int_equal(fb.regs, 2);
	regwatch_cache_put(c, e);
	assert_int_equal(fb.deregs, 1);
	assert_int_equal(unwatches, 1);
	regwatch_cache_put(c, e2);
	assert_int_equal(regwatch_cache_stats(c, &st), 0);
	assert_int_equal(st.invalidations, 1);
	assert_int_equal(st.deferred_deregs, 1);
	regwatch_cache_destroy(c);
	assert_int_equal(closes, 1);
	assert_int_equal(unwatches, 2);
	assert_int_equal(fb.live, 0);
}

static void test_selection(void **state)
{
	struct regwatch_cache *c;
	int rc;

	(void)state;
	open_err = 0;
	assert_int_equal(create(0, "kernel", &c), 0);
	assert_string_equal(regwatch_cache_monitor_name(c), "kernel");
	regwatch_cache_destroy(c);
	assert_int_equal(create(0, NULL, &c), 0);	/* auto: the module */
	assert_string_equal(regwatch_cache_monitor_name(c), "kernel");
	regwatch_cache_destroy(c);
	/* module absent: auto falls back to userfaultfd */
	open_err = -ENOENT;
	assert_int_equal(create(REGWATCH_CACHE_MONITOR_KERNEL, NULL, &c), -ENOENT);
	rc = create(0, NULL, &c);
	if (rc != -ENOSYS) {		/* (no userfaultfd under valgrind) */
		assert_int_equal(rc, 0);
		assert_string_equal(regwatch_cache_monitor_name(c), "uffd");
		regwatch_cache_destroy(c);
	}
	/* a module that is there but broken is an error, not a fallback */
	open_err = -EPROTO;
	assert_int_equal(create(0, NULL, &c), -EPROTO);
	open_err = 0;
	unsetenv("REGWATCH_MONITOR");
}

/* In a forked child, destroy closes the fd but leaves the parent's
 * mappings (not inherited) alone: regwatch_close() is not called. */
static void test_fork_child_destroy(void **state)
{
	struct regwatch_cache *c;
	struct regwatch_cache_entry *e;
	int status;
	pid_t pid;

	(void)state;
	open_err = 0;
	assert_int_equal(create(REGWATCH_CACHE_MONITOR_KERNEL, NULL, &c), 0);
	assert_int_equal(regwatch_cache_get(c, FA(0), PAGE, 0, &e), 0);
	regwatch_cache_put(c, e);
	closes = unwatches = 0;
	pid = (fflush(NULL), fork());
	if (pid == 0) {
		if (regwatch_cache_get(c, FA(0), PAGE, 0, &e) != -ECHILD)
			exit(1);
		regwatch_cache_destroy(c);
		exit(closes == 0 && unwatches == 0 ? 0 : 2);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	regwatch_cache_destroy(c);
	assert_int_equal(closes, 1);
	assert_int_equal(fb.live, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernel_monitor),
		cmocka_unit_test(test_selection),
		cmocka_unit_test(test_fork_child_destroy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
