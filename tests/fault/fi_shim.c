// SPDX-License-Identifier: MIT
/*
 * LD_PRELOAD shim for scripts/fault-inject.sh: injects allocation failures
 * into regwatch's own system calls only, while unmodified test programs
 * run. With probability FI_SHIM_PERMILLE / 1000 (default 100), an
 * ioctl() with regwatch's ioctl type, an open() of /dev/regwatch* or an
 * mmap() of a regwatch fd gets the n-th fault point of its system call
 * failed, n uniform in 1..FI_SHIM_MAXN (default 8), through
 * /proc/thread-self/fail-nth (slab and page allocations, with failslab and
 * fail_page_alloc set to count sleeping and order-0 allocations). The
 * rest of the program (exec, the dynamic loader, the file systems, page
 * faults) never sees an injected failure, unlike a task-wide
 * /proc/self/make-it-fail, which breaks the loader and the 9p root first.
 * FI_SHIM_SEED seeds the choice; FI_SHIM_LOG names a file that gets one
 * line per process at exit: "fi_shim PID calls armed injected".
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "../../include/uapi/regwatch.h"

static unsigned int permille = 100, maxn = 8;
static unsigned long calls, armed, injected;
static __thread unsigned int seed;
static unsigned int base_seed;

static int nth_open(void)
{
	static __thread int fd = -1;

	if (fd < 0)
		fd = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	return fd;
}

__attribute__((constructor)) static void shim_init(void)
{
	const char *v;

	v = getenv("FI_SHIM_PERMILLE");
	if (v)
		permille = (unsigned int)atoi(v);
	v = getenv("FI_SHIM_MAXN");
	if (v && atoi(v) > 0)
		maxn = (unsigned int)atoi(v);
	v = getenv("FI_SHIM_SEED");
	base_seed = v ? (unsigned int)strtoul(v, NULL, 0) : 1;
}

__attribute__((destructor)) static void shim_fini(void)
{
	const char *log = getenv("FI_SHIM_LOG");
	FILE *f;

	if (!log || !calls)
		return;
	f = fopen(log, "a");
	if (!f)
		return;
	fprintf(f, "fi_shim %d %lu %lu %lu\n", (int)getpid(), calls, armed,
		injected);
	fclose(f);
}

/* Decide for one call; returns true if a fault was armed. */
static int arm(void)
{
	char buf[16];
	int fd, len;

	__atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
	if (!seed)
		seed = base_seed ^ (unsigned int)getpid() ^
		       (unsigned int)(unsigned long)&seed;
	if ((unsigned int)rand_r(&seed) % 1000 >= permille)
		return 0;
	fd = nth_open();
	if (fd < 0)
		return 0;
	len = snprintf(buf, sizeof(buf), "%u",
		       1 + (unsigned int)rand_r(&seed) % maxn);
	if (pwrite(fd, buf, (size_t)len, 0) != len)
		return 0;
	__atomic_add_fetch(&armed, 1, __ATOMIC_RELAXED);
	return 1;
}

/* Always disarm: an unused count must not leak into later calls. */
static void disarm(void)
{
	char buf[16] = "";
	int fd = nth_open(), saved = errno;

	if (pread(fd, buf, sizeof(buf) - 1, 0) > 0 && atoi(buf) == 0)
		__atomic_add_fetch(&injected, 1, __ATOMIC_RELAXED);
	if (pwrite(fd, "0", 1, 0) != 1)
		abort();
	errno = saved;
}

static int is_regwatch_fd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return 0;
	target[n] = 0;
	return !strncmp(target, "/dev/regwatch", 13);
}

int ioctl(int fd, unsigned long req, ...)
{
	static int (*real)(int, unsigned long, ...);
	va_list ap;
	void *arg;
	int ret, on;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
	on = _IOC_TYPE(req) == REGWATCH_IOC_MAGIC && arm();
	ret = real(fd, req, arg);
	if (on)
		disarm();
	return ret;
}

static int open_common(const char *name, int (*real)(const char *, int, ...),
		       const char *path, int flags, mode_t mode)
{
	int ret, on;

	(void)name;
	on = path && !strncmp(path, "/dev/regwatch", 13) && arm();
	ret = real(path, flags, mode);
	if (on)
		disarm();
	return ret;
}

int open(const char *path, int flags, ...)
{
	static int (*real)(const char *, int, ...);
	mode_t mode = 0;
	va_list ap;

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (!real)
		real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
	return open_common("open", real, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	static int (*real)(const char *, int, ...);
	mode_t mode = 0;
	va_list ap;

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (!real)
		real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
	return open_common("open64", real, path, flags, mode);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static void *(*real)(void *, size_t, int, int, int, off_t);
	void *ret;
	int on;

	if (!real)
		real = (void *(*)(void *, size_t, int, int, int, off_t))
			dlsym(RTLD_NEXT, "mmap");
	on = fd >= 0 && !(flags & MAP_ANONYMOUS) && is_regwatch_fd(fd) && arm();
	ret = real(addr, len, prot, flags, fd, off);
	if (on)
		disarm();
	return ret;
}
