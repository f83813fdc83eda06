/* SPDX-License-Identifier: MIT */
/*
 * regwatch demo: watch a buffer, unmap it, and get the event through an
 * eventfd in an epoll loop. Run it where regwatch.ko is loaded.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "regwatch.h"

#define BUF_SIZE (16 * 4096)

static int print_event(const struct regwatch_event *ev, void *arg)
{
	const char *buf = arg;

	if (ev->type == REGWATCH_EVENT_RESYNC) {
		printf("   event: RESYNC (rescan every streaming watch)\n");
		return 0;
	}
	printf("   event: %s of [buf+%#llx, buf+%#llx) cookie=%#llx watch=%#llx\n",
	       regwatch_class_name(ev->class),
	       (unsigned long long)(ev->start - (uintptr_t)buf),
	       (unsigned long long)(ev->end - (uintptr_t)buf),
	       (unsigned long long)ev->cookie,
	       (unsigned long long)ev->watch_id);
	return 0;
}

static int die(const char *what, int err)
{
	fprintf(stderr, "demo: %s: %s\n", what, strerror(-err));
	return 1;
}

int main(void)
{
	struct regwatch_ref whole, tail;
	struct epoll_event ev = { .events = EPOLLIN };
	struct regwatch_stats st;
	struct regwatch *rw;
	uint64_t seen = 0, n;
	int ret, efd, ep;
	char *buf;

	printf("1. Open a monitor on /dev/regwatch and hand it an eventfd.\n");
	ret = regwatch_open(NULL, &rw);
	if (ret)
		return die("regwatch_open", ret);
	efd = eventfd(0, EFD_CLOEXEC);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (efd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev))
		return die("eventfd/epoll", -errno);
	ret = regwatch_set_eventfd(rw, efd);
	if (ret)
		return die("regwatch_set_eventfd", ret);
	printf("   ring of %u events, up to %u watches\n",
	       regwatch_config(rw)->ring_entries,
	       regwatch_config(rw)->max_watches);

	printf("2. Map a %d KiB buffer and watch all of it and its last page.\n",
	       BUF_SIZE / 1024);
	buf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return die("mmap", -errno);
	memset(buf, 'A', BUF_SIZE);
	ret = regwatch_watch(rw, buf, BUF_SIZE, 0xb0f, 0, &whole);
	if (!ret)
		ret = regwatch_watch(rw, buf + BUF_SIZE - 4096, 4096, 0x7a1, 0,
				     &tail);
	if (ret)
		return die("regwatch_watch", ret);
	printf("   valid? whole=%d tail=%d (one load each)\n",
	       regwatch_ref_valid(&whole), regwatch_ref_valid(&tail));

	printf("3. mprotect(PROT_READ) the buffer: not an invalidation by default.\n");
	mprotect(buf, BUF_SIZE, PROT_READ);
	printf("   changed? %d   valid? whole=%d\n", regwatch_changed(rw, &seen),
	       regwatch_ref_valid(&whole));

	printf("4. munmap the first 4 pages: the big watch goes stale at once.\n");
	munmap(buf, 4 * 4096);
	printf("   right after munmap returned: valid? whole=%d tail=%d\n",
	       regwatch_ref_valid(&whole), regwatch_ref_valid(&tail));

	printf("5. Wait in epoll for the eventfd, then drain the ring.\n");
	if (epoll_wait(ep, &ev, 1, 5000) != 1)
		return die("epoll_wait (no wake-up)", -ETIMEDOUT);
	if (read(efd, &n, sizeof(n)) != sizeof(n))
		return die("read eventfd", -errno);
	printf("   eventfd woke us (count %" PRIu64 ")\n", n);
	ret = regwatch_drain(rw, print_event, buf);
	printf("   drained %d event(s)\n", ret);

	printf("6. madvise(DONTNEED) the rest: the tail watch fires; the big\n"
	       "   one-shot watch already fired, so it is coalesced.\n");
	madvise(buf + 4 * 4096, BUF_SIZE - 4 * 4096, MADV_DONTNEED);
	regwatch_drain(rw, print_event, buf);

	ret = regwatch_stats(rw, &st);
	if (ret)
		return die("regwatch_stats", ret);
	printf("7. Stats: watches=%llu events=%llu coalesced=%llu filtered=%llu"
	       " unmap=%llu clear=%llu\n",
	       (unsigned long long)st.watches,
	       (unsigned long long)st.events,
	       (unsigned long long)st.coalesced,
	       (unsigned long long)st.filtered,
	       (unsigned long long)st.by_class[0],
	       (unsigned long long)st.by_class[1]);

	regwatch_unwatch(rw, &whole);
	regwatch_unwatch(rw, &tail);
	regwatch_close(rw);
	munmap(buf + 4 * 4096, BUF_SIZE - 4 * 4096);
	printf("8. Closed: every watch and page of the monitor is gone.\n");
	return 0;
}
