// SPDX-License-Identifier: MIT
/* fork detection for caches (see cache_fork.h). */
#include <errno.h>
#include <pthread.h>

#include "cache_fork.h"

static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cache_fork_node fork_list = { &fork_list, &fork_list, NULL };
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static int fork_once_rc;

/* Hold the list lock across fork so the child sees a consistent list. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&fork_lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&fork_lock);
}

static void fork_child(void)
{
	struct cache_fork_node *n;

	for (n = fork_list.next; n != &fork_list; n = n->next)
		n->child(n);
	pthread_mutex_unlock(&fork_lock);
}

static void fork_install(void)
{
	fork_once_rc = -pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int cache_fork_register(struct cache_fork_node *n)
{
	pthread_once(&fork_once, fork_install);
	if (fork_once_rc)
		return fork_once_rc;
	pthread_mutex_lock(&fork_lock);
	n->next = &fork_list;
	n->prev = fork_list.prev;
	fork_list.prev->next = n;
	fork_list.prev = n;
	pthread_mutex_unlock(&fork_lock);
	return 0;
}

void cache_fork_unregister(struct cache_fork_node *n)
{
	pthread_mutex_lock(&fork_lock);
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
	pthread_mutex_unlock(&fork_lock);
}
