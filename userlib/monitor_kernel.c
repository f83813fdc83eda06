// SPDX-License-Identifier: MIT
/*
 * The kernel monitor: the cache's monitor interface over libregwatch's
 * monitor API (/dev/regwatch, one-shot watches). The module writes a
 * watch's state word before the invalidating system call returns and its
 * WATCH waits for running invalidations, which is exactly the contract of
 * cache_monitor.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "cache_monitor.h"

struct kernel_monitor {
	struct cache_monitor base;
	struct regwatch *rw;
};

static struct regwatch *rw_of(struct cache_monitor *m)
{
	return ((struct kernel_monitor *)m)->rw;
}

static int k_watch(struct cache_monitor *m, uintptr_t addr, size_t len,
		   uint64_t cookie, struct cache_watch *w)
{
	struct regwatch_ref ref;
	int rc = regwatch_watch(rw_of(m), (const void *)addr, len, cookie, 0,
				&ref);

	if (rc)
		return rc;
	w->state = ref.state;
	w->armed = ref.armed_state;
	w->id = ref.id;
	return 0;
}

static int k_unwatch(struct cache_monitor *m, const struct cache_watch *w)
{
	struct regwatch_ref ref = {
		.state = w->state, .armed_state = w->armed, .id = w->id,
	};

	return regwatch_unwatch(rw_of(m), &ref);
}

static int k_drain(struct cache_monitor *m, regwatch_event_cb cb, void *arg)
{
	return regwatch_drain(rw_of(m), cb, arg);
}

static int k_fd(struct cache_monitor *m)
{
	return regwatch_fd(rw_of(m));
}

static void k_destroy(struct cache_monitor *m, bool in_child)
{
	struct kernel_monitor *km = (struct kernel_monitor *)m;

	if (in_child) {
		/* The shared mappings were not inherited (VM_DONTCOPY) and
		 * their addresses may hold the child's own mappings now:
		 * only close the fd, leak the small struct. */
		close(regwatch_fd(km->rw));
	} else {
		regwatch_close(km->rw);
	}
	free(km);
}

static const struct cache_monitor_ops kernel_ops = {
	.watch = k_watch,
	.unwatch = k_unwatch,
	.drain = k_drain,
	.fd = k_fd,
	.destroy = k_destroy,
};

int cache_monitor_kernel_open(const struct regwatch_options *opts,
			      struct cache_monitor **out)
{
	struct kernel_monitor *km = calloc(1, sizeof(*km));
	int rc;

	if (!km)
		return -ENOMEM;
	rc = regwatch_open(opts, &km->rw);
	if (rc) {
		free(km);
		return rc;
	}
	km->base.ops = &kernel_ops;
	km->base.name = "kernel";
	km->base.generation = NULL;	/* not exposed by the monitor API */
	*out = &km->base;
	return 0;
}
