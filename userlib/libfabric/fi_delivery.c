// SPDX-License-Identifier: MIT
/*
 * The delivery thread of the libfabric import monitor: sleeps in poll()
 * on the regwatch fd (readable while events are queued) and on a kick
 * eventfd, drains the ring and calls libfabric's notify() for each fired
 * subscription, with none of our locks held (notify takes libfabric's
 * mm_lock and calls back into unsubscribe()).
 *
 * Correctness does not depend on this thread: valid() reads the watch's
 * state word, which the kernel flipped before munmap returned. The thread
 * only lets libfabric drop idle entries (and deregister their memory)
 * without waiting for the next lookup of the same range. libfabric runs
 * subscribe/valid/unsubscribe under its mm_lock, so they cannot call
 * notify() themselves; subscribe() drains and kicks us instead.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fi_internal.h"

void fi_delivery_kick_locked(struct fi_mon *m)
{
	uint64_t one = 1;

	if (m->kick_fd >= 0)
		(void)!write(m->kick_fd, &one, sizeof(one));
}

static void deliver(struct fi_mon *m, struct fi_range *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		m->mon.import_ops->notify(&m->mon, (const void *)r[i].addr,
					  r[i].len);
}

/*
 * Deliver, then sleep: a pass runs first so that ranges subscribe() queued
 * before start() (their events drained, the fd no longer readable) go out
 * without waiting for another event.
 */
static void *delivery_main(void *arg)
{
	struct fi_mon *m = arg;
	struct pollfd pfd[2] = {
		{ .fd = regwatch_fd(m->rw), .events = POLLIN },
		{ .fd = m->kick_fd, .events = POLLIN },
	};

	for (;;) {
		struct fi_range *r;
		uint64_t v;
		size_t n;

		pthread_mutex_lock(&m->lock);
		if (m->stop) {
			pthread_mutex_unlock(&m->lock);
			break;
		}
		fi_mon_drain_locked(m);
		/* Take the queue; subscribe() may start a new one meanwhile. */
		r = m->pending;
		n = m->npending;
		m->pending = NULL;
		m->npending = m->cap_pending = 0;
		m->st.notifies += n;
		pthread_mutex_unlock(&m->lock);

		if (n) {
			deliver(m, r, n);
			pthread_mutex_lock(&m->lock);
			for (size_t i = 0; i < n; i++)
				fi_mon_notified_locked(m, &r[i]);
			pthread_mutex_unlock(&m->lock);
		}
		free(r);

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents & POLLIN)
			(void)!read(m->kick_fd, &v, sizeof(v));
	}
	return NULL;
}

int fi_delivery_start(struct fi_mon *m)
{
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	m->st.starts++;
	if (m->running)
		goto out;
	m->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->kick_fd < 0) {
		rc = -errno;
		goto out;
	}
	m->stop = false;
	rc = -pthread_create(&m->thread, NULL, delivery_main, m);
	if (rc) {
		close(m->kick_fd);
		m->kick_fd = -1;
		goto out;
	}
	m->running = true;
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void fi_delivery_stop(struct fi_mon *m)
{
	pthread_t t;

	pthread_mutex_lock(&m->lock);
	if (!m->running) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	m->stop = true;
	m->running = false;
	t = m->thread;
	fi_delivery_kick_locked(m);
	pthread_mutex_unlock(&m->lock);

	/* libfabric calls stop() with none of its MR locks held, so a
	 * notify() in progress in the thread can finish. */
	pthread_join(t, NULL);

	pthread_mutex_lock(&m->lock);
	close(m->kick_fd);
	m->kick_fd = -1;
	/* No cache is left to tell: forget what was queued. */
	free(m->pending);
	m->pending = NULL;
	m->npending = m->cap_pending = 0;
	pthread_mutex_unlock(&m->lock);
}
