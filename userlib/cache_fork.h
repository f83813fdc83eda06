/* SPDX-License-Identifier: MIT */
/*
 * fork detection for caches: a process-wide list of live caches and a
 * pthread_atfork child handler that calls each one's child() hook in the
 * child (single-threaded there), so nothing is checked on hot paths.
 */
#ifndef REGWATCH_CACHE_FORK_H
#define REGWATCH_CACHE_FORK_H

struct cache_fork_node {
	struct cache_fork_node *prev, *next;
	void (*child)(struct cache_fork_node *n);	/* runs in the child */
};

/* 0 or a negative errno (pthread_atfork failed). */
int cache_fork_register(struct cache_fork_node *n);
void cache_fork_unregister(struct cache_fork_node *n);

#endif /* REGWATCH_CACHE_FORK_H */
