/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the regwatch guest tests that talk to the module directly:
 * raw open/CONFIG/mmap (for tests that must see the ABI without the
 * library in between), module parameters, the debugfs counters, and a few
 * memory helpers. Everything returns 0 or -errno unless said otherwise.
 * Prefix rwt_ (regwatch test) to stay clear of guest_util's names.
 */
#ifndef RWT_UTIL_H
#define RWT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "regwatch.h"

#define RWT_PAGE 4096UL
#define RWT_MODULE_PATH "kernel/regwatch.ko"

/* A monitor opened and mapped by hand. */
struct rwt_raw {
	int fd;
	struct regwatch_config cfg;
	void *shared;				/* read-only area */
	struct regwatch_consumer *cons;		/* writable page */
	const struct regwatch_shared_header *hdr;
	const struct regwatch_event *ring;
	const uint64_t *states;
};

/* ioctl() returning its value or -errno. */
long rwt_ioctl(int fd, unsigned long cmd, void *arg);

/* open(REGWATCH_DEVICE, O_RDWR | oflags); fd or -errno. */
int rwt_open_fd(int oflags);

/* CONFIG with the given sizes (0: defaults); fills *cfg. */
int rwt_config(int fd, unsigned int ring, unsigned int max_watches,
	       struct regwatch_config *cfg);

/* open + CONFIG + mmap both areas. */
int rwt_raw_open(struct rwt_raw *r, unsigned int ring,
		 unsigned int max_watches, int oflags);
/* Map both areas of an fd already configured into r->cfg. */
int rwt_raw_map(struct rwt_raw *r);
/* munmap both areas and close the fd (each only if present). */
void rwt_raw_close(struct rwt_raw *r);

int rwt_raw_watch(struct rwt_raw *r, const void *addr, size_t len,
		  uint64_t cookie, unsigned int flags,
		  struct regwatch_watch *out);
int rwt_raw_unwatch(struct rwt_raw *r, uint64_t id);
uint64_t rwt_raw_state(const struct rwt_raw *r, uint64_t id);
/* Events published and not consumed (producer - consumer head). */
uint64_t rwt_raw_pending(const struct rwt_raw *r);
/* Copy up to max pending events out and consume them; returns how many. */
size_t rwt_raw_drain(struct rwt_raw *r, struct regwatch_event *out,
		     size_t max);

int rwt_stats_fd(int fd, struct regwatch_stats *st);

/* Module parameters in /sys/module/regwatch/parameters. */
int rwt_param_get(const char *name, long long *val);
int rwt_param_set(const char *name, const char *val);

/* /sys/kernel/debug/regwatch/stats (mounts debugfs if needed). */
struct rwt_modstats {
	long long monitors, watches, pages;
};
int rwt_modstats(struct rwt_modstats *ms);

/* Anonymous private read-write mapping, every page written (populated
 * without ever mapping the zero page: a later write then fires nothing). */
void *rwt_map_anon(size_t len);
/* Same, at a fixed address (MAP_FIXED). */
void *rwt_map_anon_at(void *addr, size_t len);
/*
 * Like rwt_map_anon, but a VMA of its own: PROT_NONE guard pages on both
 * sides keep it from merging with its neighbours. On Linux 6.1 a VMA cut
 * at an address that is not 2 MiB-aligned announces a CLEAR over the
 * 2 MiB around the cut when that block lies inside the VMA: a test whose
 * oracle expects untouched watches to stay quiet needs its region, if
 * smaller than 2 MiB, to be such a VMA. Free with rwt_unmap_alone.
 */
void *rwt_map_alone(size_t len);
void rwt_unmap_alone(void *addr, size_t len);
void rwt_fill(void *addr, size_t len, uint8_t byte);

/* The /proc/self/pagemap entry of addr's page (PFN bits need root), or
 * ~0 when it cannot be read. A changed entry means the kernel moved,
 * swapped or dropped the page. */
uint64_t rwt_pagemap(const void *addr);
/* The same for the n pages from addr, into out[0..n). */
void rwt_pagemap_read(const void *addr, size_t n, uint64_t *out);

/* true when every page of [addr, addr+len) is mapped (mincore). */
bool rwt_mapped(const void *addr, size_t len);
/* true when /proc/self/maps has a mapping covering addr. */
bool rwt_in_maps(const void *addr);

uint64_t rwt_now_ns(void);

/* Seed: REGWATCH_SEED from the environment, else from the clock. */
unsigned int rwt_seed(void);
/* xorshift64* */
uint64_t rwt_rand(uint64_t *state);

/* A growable array of events, filled by regwatch_drain(). */
struct rwt_events {
	struct regwatch_event *ev;
	size_t n, cap;
};
int rwt_collect(struct regwatch *rw, struct rwt_events *evs);
void rwt_events_free(struct rwt_events *evs);

#endif /* RWT_UTIL_H */
