// SPDX-License-Identifier: MIT
/*
 * The `none` monitor: watches never fire. Only for benchmark baselines and
 * to show that tests bite; a cache using it returns stale registrations.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cache_monitor.h"

static const uint64_t none_state = REGWATCH_STATE_ARMED;
static int none_warned;

static int none_watch(struct cache_monitor *m, uintptr_t addr, size_t len,
		      uint64_t cookie, struct cache_watch *w)
{
	(void)m; (void)addr; (void)len; (void)cookie;
	w->state = &none_state;
	w->armed = REGWATCH_STATE_ARMED;
	w->id = 1;
	return 0;
}

static int none_unwatch(struct cache_monitor *m, const struct cache_watch *w)
{
	(void)m; (void)w;
	return 0;
}

static int none_drain(struct cache_monitor *m, regwatch_event_cb cb, void *arg)
{
	(void)m; (void)cb; (void)arg;
	return 0;
}

static int none_fd(struct cache_monitor *m)
{
	(void)m;
	return -1;
}

static void none_destroy(struct cache_monitor *m, bool in_child)
{
	(void)in_child;
	free(m);
}

static const struct cache_monitor_ops none_ops = {
	.watch = none_watch,
	.unwatch = none_unwatch,
	.drain = none_drain,
	.fd = none_fd,
	.destroy = none_destroy,
};

int cache_monitor_none_open(struct cache_monitor **out)
{
	struct cache_monitor *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	if (!__atomic_exchange_n(&none_warned, 1, __ATOMIC_RELAXED))
		fprintf(stderr,
			"regwatch: WARNING: REGWATCH_MONITOR=none: the registration "
			"cache will NOT notice freed or remapped memory and can "
			"return STALE registrations (data corruption). Use it only "
			"for benchmark baselines and tests.\n");
	m->ops = &none_ops;
	m->name = "none";
	*out = m;
	return 0;
}
