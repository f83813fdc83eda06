// SPDX-License-Identifier: MIT
/*
 * Mirror mode (/dev/regwatch-mirror): a software DMA device that reaches
 * this process's memory only through its own device page table, with no
 * page pinned. These tests drive the device through libregwatch's mirror
 * API and check every byte it moves against a model of what the CPU
 * page tables say the memory holds:
 *
 *  data_*            READ / WRITE / COPY / FILL, unaligned, on anonymous,
 *                    shared anonymous, memfd (mapped twice), /dev/shm,
 *                    ext4 (with fsync + O_DIRECT: the data reached the
 *                    disk), THP and never-touched (zero page) memory; a
 *                    device write to a private file mapping breaks COW
 *  writeback_refault after msync cleans an ext4 page the device may no
 *                    longer write it (write_revoked); its next write faults
 *                    again, so the page is dirtied and reaches the disk
 *  remap_*           munmap / MAP_FIXED / mremap: the next device access
 *                    sees the new contents, never the old pages
 *  migrate_vs_rxe    move_pages moves every device-mapped page, unlike the
 *                    same pages under an rxe MR (pinned) until dereg
 *  pageout_swap      MADV_PAGEOUT frees device-mapped pages to zram swap;
 *                    the device faults them back
 *  mprotect_ro       read-only: device writes EFAULT, reads work;
 *                    PROT_NONE: reads EFAULT too
 *  xfer_badinput     the XFER / STATS ioctls reject bad input
 *
 * fork and COW, races and teardown while busy are in test_mirror_races.c;
 * helpers shared by both in tests/common/mirror_util.[ch].
 *
 * ext4: the tests that need a real disk filesystem use /dev/vda (or
 * $RWT_MIRROR_DISK), a scratch disk that they format with mkfs.ext4 and
 * mount on /tmp; without it they skip. Run them with e.g.
 *   truncate -s 64M build/vm/scratch.img
 *   tests/vm/run-guest.sh --disk build/vm/scratch.img -- build/tests/guest/test_mirror
 */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <cmocka.h>

#include "mirror_util.h"
#include "rxe_util.h"

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define PG MU_PG
#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)

/* ---- helpers ---------------------------------------------------------- */

static uint64_t pagemap(const void *addr)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &e, sizeof(e),
			       (off_t)((uintptr_t)addr / PG * sizeof(e))),
			 sizeof(e));
	close(fd);
	return e;
}

/* Pages of [p, p + n pages) resident per mincore(). */
static size_t resident(void *p, size_t n)
{
	unsigned char vec[512];
	size_t r = 0;

	assert_true(n <= sizeof(vec));
	assert_int_equal(mincore(p, n * PG, vec), 0);
	for (size_t i = 0; i < n; i++)
		r += vec[i] & 1;
	return r;
}

/*
 * Put pages faulted in by the device's worker (on either CPU) on the LRU,
 * so that MADV_PAGEOUT can isolate them: moving pages to the node they
 * are on moves nothing but drains every CPU's LRU batches.
 */
static void lru_drain_all(void *p, size_t n)
{
	void *pages[64];
	int node[64], status[64];

	mu_nodes(p, n, node);
	for (size_t i = 0; i < n; i++)
		pages[i] = (char *)p + i * PG;
	assert_int_equal(move_pages(0, n, pages, node, status, MPOL_MF_MOVE),
			 0);
}

/* ---- ext4 scratch disk ------------------------------------------------ */

static char ext4_dir[] = "/tmp/rwt-mirror-ext4";
static int ext4_state;	/* 0 not tried, 1 mounted, -1 no disk, -2 broken */

/* Format and mount the scratch disk once; NULL (test skipped) without. */
static const char *ext4_mount(void)
{
	const char *disk = getenv("RWT_MIRROR_DISK");
	char cmd[256];

	if (!disk || !*disk)
		disk = "/dev/vda";
	if (ext4_state == 0) {
		ext4_state = -1;
		if (access(disk, R_OK | W_OK)) {
			print_message("  no scratch disk %s: ext4 tests skip "
				      "(run-guest.sh --disk IMG)\n", disk);
			return NULL;
		}
		ext4_state = -2;
		/* A run that failed half-way may have left it mounted. */
		umount2(ext4_dir, MNT_DETACH);
		snprintf(cmd, sizeof(cmd), "modprobe ext4 2>/dev/null; "
			 "mkfs.ext4 -q -F %s >/dev/null 2>&1", disk);
		if (system(cmd)) {
			print_error("mkfs.ext4 %s failed\n", disk);
			return NULL;
		}
		mkdir(ext4_dir, 0755);
		if (mount(disk, ext4_dir, "ext4", 0, NULL)) {
			print_error("mount %s ext4: %s\n", disk,
				    strerror(errno));
			return NULL;
		}
		ext4_state = 1;
	}
	return ext4_state == 1 ? ext4_dir : NULL;
}

static int ext4_file(size_t len, char *path, size_t plen)
{
	const char *dir = ext4_mount();
	int fd;

	if (!dir) {
		if (ext4_state == -2)
			fail_msg("scratch disk present but ext4 unusable");
		skip();
	}
	snprintf(path, plen, "%s/f.XXXXXX", dir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	return fd;
}

/* What the disk holds (O_DIRECT bypasses the page cache). */
static void read_disk(const char *path, void *buf, size_t len)
{
	void *al;
	int fd = open(path, O_RDONLY | O_DIRECT);

	assert_true(fd >= 0);
	assert_int_equal(posix_memalign(&al, PG, len), 0);
	assert_int_equal(pread(fd, al, len, 0), (ssize_t)len);
	memcpy(buf, al, len);
	free(al);
	close(fd);
}

static int group_teardown(void **state)
{
	(void)state;
	if (ext4_state == 1)
		umount2(ext4_dir, MNT_DETACH);
	return 0;
}

/* ---- data correctness ------------------------------------------------- */

/*
 * READ / WRITE / FILL / COPY over p (len bytes, at least 8 pages) at
 * unaligned offsets, each checked against a model of the memory. alias:
 * another mapping of the same memory (or NULL); fd: a file whose
 * contents must follow the memory (MAP_SHARED of it), or -1.
 */
static void exercise(uint8_t *p, size_t len, const uint8_t *alias, int fd,
		     const char *what)
{
	struct regwatch_mirror *m = mu_open();
	struct regwatch_mirror_stats st0, st1;
	uint8_t *model = malloc(len), *host = malloc(len);
	size_t off, n, moved = 0;

	assert_true(model && host && len >= 8 * PG);
	mu_pat_fill(p, len, 1);
	memcpy(model, p, len);
	st0 = mu_stats(m);

	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_bytes(host, model, len, "%s: device READ of all", what);
	moved += len;
	off = 100, n = 3 * PG + 37;
	memset(host, 0, len);
	MU_OK(regwatch_mirror_read(m, p + off, host, n));
	mu_assert_bytes(host, model + off, n, "%s: unaligned READ", what);
	moved += n;

	off = PG - 5, n = len / 2;
	mu_pat_fill(host, n, 2);
	MU_OK(regwatch_mirror_write(m, p + off, host, n));
	memcpy(model + off, host, n);
	mu_assert_bytes(p, model, len, "%s: after device WRITE", what);
	moved += n;

	off = len / 2 + 3, n = len / 2 - 4;
	MU_OK(regwatch_mirror_fill(m, p + off, 0x5c3, n));	/* low byte */
	memset(model + off, 0xc3, n);
	mu_assert_bytes(p, model, len, "%s: after device FILL", what);
	moved += n;

	n = len / 4 + 11;
	MU_OK(regwatch_mirror_copy(m, p + len / 2 + 1, p + 17, n));
	memmove(model + len / 2 + 1, model + 17, n);
	mu_assert_bytes(p, model, len, "%s: after device COPY", what);
	moved += 2 * n;

	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_bytes(host, model, len, "%s: device READ at the end", what);
	moved += len;
	if (alias)
		mu_assert_bytes(alias, model, len, "%s: the other mapping", what);
	if (fd >= 0) {
		mu_pread(fd, host, len, 0);
		mu_assert_bytes(host, model, len, "%s: the file (pread)", what);
	}

	st1 = mu_stats(m);
	assert_true(st1.faults > st0.faults);
	assert_int_equal(st1.bytes - st0.bytes, moved);
	assert_true(st1.pages_mapped <= len / PG + 1);
	regwatch_mirror_close(m);
	free(model);
	free(host);
}

static void test_data_anon(void **state)
{
	struct mu_modcount mc = mu_modcount();
	size_t len = 16 * PG;
	uint8_t *p = mu_map_anon(len), *s;

	(void)state;
	exercise(p, len, NULL, -1, "anonymous");
	s = mu_map(len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
	exercise(s, len, NULL, -1, "shared anonymous");
	munmap(p, len);
	munmap(s, len);
	mu_assert_no_leak(mc);
}

static void test_data_tmpfs(void **state)
{
	struct mu_modcount mc = mu_modcount();
	size_t len = 16 * PG;
	char path[] = "/dev/shm/rwt-mirror.XXXXXX";
	int fd = mu_memfd(len), fd2;
	uint8_t *p, *q;

	(void)state;
	p = mu_map(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	q = mu_map(len, PROT_READ, MAP_SHARED, fd);
	exercise(p, len, q, fd, "memfd");
	munmap(p, len);
	munmap(q, len);
	close(fd);

	fd2 = mkstemp(path);
	assert_true(fd2 >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd2, (off_t)len), 0);
	p = mu_map(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd2);
	exercise(p, len, NULL, fd2, "/dev/shm file");
	munmap(p, len);
	close(fd2);
	mu_assert_no_leak(mc);
}

static void test_data_ext4(void **state)
{
	struct mu_modcount mc = mu_modcount();
	size_t len = 16 * PG;
	char path[64];
	int fd = ext4_file(len, path, sizeof(path));
	uint8_t *p, *disk = malloc(len);

	(void)state;
	p = mu_map(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	exercise(p, len, NULL, fd, "ext4 file");
	/* The device's writes made the pages dirty: fsync writes them. */
	assert_int_equal(fsync(fd), 0);
	read_disk(path, disk, len);
	mu_assert_bytes(disk, p, len, "ext4 file: on disk after fsync");
	munmap(p, len);
	close(fd);
	unlink(path);
	free(disk);
	mu_assert_no_leak(mc);
}

/* A device write to a MAP_PRIVATE file mapping copies the page (COW). */
static void test_data_private_file_cow(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m = mu_open();
	size_t len = 8 * PG;
	int fd = mu_memfd(len);
	uint8_t *priv, *shr, *host = malloc(len);

	(void)state;
	memset(host, 'F', len);
	assert_int_equal(pwrite(fd, host, len, 0), (ssize_t)len);
	priv = mu_map(len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd);
	shr = mu_map(len, PROT_READ, MAP_SHARED, fd);
	/* The device first maps the page cache pages (read-only). */
	MU_OK(regwatch_mirror_read(m, priv, host, len));
	mu_assert_all(host, 'F', len, "private file: device READ");
	MU_OK(regwatch_mirror_fill(m, priv + PG, 'G', 2 * PG));
	mu_assert_all(priv + PG, 'G', 2 * PG, "private file: CPU after FILL");
	mu_assert_all(priv, 'F', PG, "private file: page before");
	mu_assert_all(shr, 'F', len, "private file: the shared mapping");
	mu_pread(fd, host, len, 0);
	mu_assert_all(host, 'F', len, "private file: the file");
	MU_OK(regwatch_mirror_read(m, priv, host, len));
	mu_assert_all(host + PG, 'G', 2 * PG, "private file: device READ back");
	munmap(priv, len);
	munmap(shr, len);
	close(fd);
	free(host);
	regwatch_mirror_close(m);
	mu_assert_no_leak(mc);
}

/* Never-touched memory reads as zeros; the zero page is never written. */
static void test_data_zero_page(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m = mu_open();
	size_t len = 8 * PG;
	uint8_t *a = mu_map_anon(len), *b = mu_map_anon(len), *c;
	uint8_t *host = malloc(len);
	volatile uint8_t sink;

	(void)state;
	sink = b[0];		/* the CPU maps the zero page too */
	(void)sink;
	MU_OK(regwatch_mirror_read(m, a, host, len));
	mu_assert_all(host, 0, len, "untouched memory: device READ");
	MU_OK(regwatch_mirror_fill(m, a, 0x77, len));
	mu_assert_all(a, 0x77, len, "untouched memory: CPU after device FILL");
	mu_assert_all(b, 0, len, "another zero-page mapping");
	c = mu_map_anon(len);
	mu_assert_all(c, 0, len, "a new mapping");
	MU_OK(regwatch_mirror_read(m, b, host, len));
	mu_assert_all(host, 0, len, "other zero-page mapping: device READ");
	munmap(a, len);
	munmap(b, len);
	munmap(c, len);
	free(host);
	regwatch_mirror_close(m);
	mu_assert_no_leak(mc);
}

static unsigned long thp_kb(const void *addr)
{
	char line[256];
	unsigned long lo, hi, kb = 0;
	bool in = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
		else if (in && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

/* One 2 MiB transparent huge page: subpages, then a split. */
static void test_data_thp(void **state)
{
	struct mu_modcount mc = mu_modcount();
	size_t len = 2UL << 20;
	uint8_t *raw = mu_map_anon(2 * len), *p, *host = malloc(len);
	struct regwatch_mirror *m;
	struct regwatch_mirror_stats st0, st1;

	(void)state;
	p = (uint8_t *)(((uintptr_t)raw + len - 1) & ~(len - 1));
	assert_int_equal(madvise(p, len, MADV_HUGEPAGE), 0);
	memset(p, 1, len);
	if (thp_kb(p) < 2048)
		fail_msg("no THP at %p (AnonHugePages %lu kB): the guest "
			 "should give one with THP=madvise", p, thp_kb(p));
	exercise(p, len, NULL, -1, "THP");
	assert_true(thp_kb(p) >= 2048);	/* the device did not split it */

	/* Split it: one read-only 4 KiB page in the middle. */
	m = mu_open();
	MU_OK(regwatch_mirror_fill(m, p, 0xe1, len));
	st0 = mu_stats(m);
	assert_int_equal(mprotect(p + 300 * PG, PG, PROT_READ), 0);
	st1 = mu_stats(m);
	assert_true(st1.invalidations > st0.invalidations);
	MU_ERR(regwatch_mirror_fill(m, p + 299 * PG, 0xe2, 3 * PG), EFAULT);
	mu_assert_all(p + 300 * PG, 0xe1, PG, "THP: read-only subpage");
	MU_OK(regwatch_mirror_fill(m, p + 301 * PG, 0xe3, len - 301 * PG));
	MU_OK(regwatch_mirror_fill(m, p, 0xe4, 300 * PG));
	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_bytes(host, p, len, "THP after split: device READ vs CPU");
	mu_assert_all(p, 0xe4, 300 * PG, "THP after split: head");
	mu_assert_all(p + 301 * PG, 0xe3, len - 301 * PG, "THP after split: tail");
	regwatch_mirror_close(m);
	munmap(raw, 2 * len);
	free(host);
	mu_assert_no_leak(mc);
}

/* ---- writeback -------------------------------------------------------- */

static void test_writeback_refault(void **state)
{
	struct mu_modcount mc = mu_modcount();
	size_t n = 8, len = n * PG;
	char path[64];
	int fd = ext4_file(len, path, sizeof(path));
	uint8_t *p, *buf = malloc(len);
	struct regwatch_mirror *m;
	struct regwatch_mirror_stats st1, st2, st3;

	(void)state;
	memset(buf, 'A', len);
	assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
	assert_int_equal(fsync(fd), 0);
	p = mu_map(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	m = mu_open();

	MU_OK(regwatch_mirror_fill(m, p, 'B', len));	/* writable entries */
	st1 = mu_stats(m);
	assert_int_equal(st1.pages_mapped, n);
	assert_int_equal(msync(p, len, MS_SYNC), 0);	/* page_mkclean */
	st2 = mu_stats(m);
	if (st2.write_revoked - st1.write_revoked != n)
		fail_msg("writeback cleaned %zu pages, the device lost write "
			 "on %llu", n,
			 (unsigned long long)(st2.write_revoked -
					      st1.write_revoked));
	assert_int_equal(st2.pages_mapped, n);	/* still mapped, read-only */
	read_disk(path, buf, len);
	mu_assert_all(buf, 'B', len, "disk after the first msync");

	MU_OK(regwatch_mirror_read(m, p, buf, len));
	mu_assert_all(buf, 'B', len, "device READ after writeback");
	assert_int_equal(mu_stats(m).faults, st2.faults);	/* no fault to read */

	MU_OK(regwatch_mirror_fill(m, p, 'C', len));
	st3 = mu_stats(m);
	assert_true(st3.faults > st2.faults);		/* write re-faulted */
	assert_int_equal(msync(p, len, MS_SYNC), 0);
	read_disk(path, buf, len);
	mu_assert_all(buf, 'C', len, "disk after the device wrote a cleaned page");
	mu_assert_all(p, 'C', len, "CPU view");

	regwatch_mirror_close(m);
	munmap(p, len);
	close(fd);
	unlink(path);
	free(buf);
	mu_assert_no_leak(mc);
}

/* ---- new mappings at the same address --------------------------------- */

static void test_remap_fixed(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m = mu_open();
	struct regwatch_mirror_stats st0, st1;
	size_t n = 8, len = n * PG;
	uint8_t *p = mu_map_anon(len), *host = malloc(len), *q, *r;
	int fd = mu_memfd(len), fd2 = mu_memfd(len);

	(void)state;
	memset(p, 'A', len);
	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_all(host, 'A', len, "first contents");
	st0 = mu_stats(m);
	assert_int_equal(st0.pages_mapped, n);

	/* munmap, then new anonymous memory at the same address. */
	assert_int_equal(munmap(p, len), 0);
	st1 = mu_stats(m);
	assert_int_equal(st1.pages_mapped, 0);
	assert_int_equal(st1.unmapped_pages - st0.unmapped_pages, n);
	MU_ERR(regwatch_mirror_read(m, p, host, len), EFAULT);
	assert_ptr_equal(mmap(p, len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
			 p);
	memset(p, 'B', len);
	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_all(host, 'B', len, "after munmap + MAP_FIXED");

	/* MAP_FIXED straight over it: a memfd with other contents. */
	memset(host, 'C', len);
	assert_int_equal(pwrite(fd, host, len, 0), (ssize_t)len);
	assert_ptr_equal(mmap(p, len, PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_FIXED, fd, 0), p);
	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_all(host, 'C', len, "after MAP_FIXED over it (memfd)");

	/*
	 * The old pages live on in the memfd after the address is
	 * remapped: a stale device entry would read or write them.
	 */
	MU_OK(regwatch_mirror_map(m, p, len, true));
	memset(host, 'D', len);
	assert_int_equal(pwrite(fd2, host, len, 0), (ssize_t)len);
	assert_ptr_equal(mmap(p, len, PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_FIXED, fd2, 0), p);
	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_all(host, 'D', len, "after MAP_FIXED of a second memfd");
	MU_OK(regwatch_mirror_fill(m, p, 'E', len));
	mu_pread(fd2, host, len, 0);
	mu_assert_all(host, 'E', len, "second memfd after device FILL");
	mu_pread(fd, host, len, 0);
	mu_assert_all(host, 'C', len, "first memfd (no longer mapped)");

	/* MADV_DONTNEED on anonymous memory: zeros again. */
	assert_ptr_equal(mmap(p, len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
			 p);
	memset(p, 'F', len);
	MU_OK(regwatch_mirror_read(m, p, host, len));
	assert_int_equal(madvise(p, len, MADV_DONTNEED), 0);
	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_all(host, 0, len, "after MADV_DONTNEED");

	/* mremap: the data follows to the new address, the old one is gone. */
	memset(p, 'G', len);
	MU_OK(regwatch_mirror_map(m, p, len, true));
	q = mu_map_anon(2 * len);		/* reserve a destination */
	r = mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, q + len);
	assert_ptr_equal(r, q + len);
	MU_ERR(regwatch_mirror_read(m, p, host, len), EFAULT);
	MU_OK(regwatch_mirror_read(m, r, host, len));
	mu_assert_all(host, 'G', len, "after mremap, at the new address");
	MU_OK(regwatch_mirror_fill(m, r, 'H', len));
	mu_assert_all(r, 'H', len, "CPU after device FILL at the new address");

	munmap(q, 2 * len);
	close(fd);
	close(fd2);
	free(host);
	regwatch_mirror_close(m);
	mu_assert_no_leak(mc);
}

/* ---- migration, contrasted with an rxe MR ----------------------------- */

static void test_migrate_vs_rxe(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m;
	struct regwatch_mirror_stats st0, st1;
	size_t n = 16, len = n * PG;
	uint8_t *p = mu_map_anon(len), *q = mu_map_anon(len), *host = malloc(len);
	uint8_t *want = malloc(len);
	int target[64], qtarget[64];
	struct ibv_mr *mr;
	struct rxeu rx;
	long rc;

	(void)state;
	if (numa_available() < 0 || numa_max_node() < 1)
		fail_msg("the guest should have two NUMA nodes");
	assert_int_equal(rxeu_open(&rx, NULL), 0);

	/* Device-mapped, writable, nothing pinned: every page moves. */
	m = mu_open();
	mu_pat_fill(p, len, 3);
	memcpy(want, p, len);
	MU_OK(regwatch_mirror_map(m, p, len, true));
	st0 = mu_stats(m);
	assert_int_equal(st0.pages_mapped, n);
	rc = mu_move_other((char *)p, n, target);
	if (rc)
		fail_msg("move_pages of device-mapped pages: %ld %s", rc,
			 rc < 0 ? strerror(errno) : "pages not moved");
	assert_int_equal(mu_count_on((char *)p, n, target), n);
	st1 = mu_stats(m);
	assert_int_equal(st1.pages_mapped, 0);
	assert_true(st1.unmapped_pages - st0.unmapped_pages >= n);
	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_bytes(host, want, len, "device READ after migration");
	MU_OK(regwatch_mirror_fill(m, p + 5, 0x3c, len - 10));
	memset(want + 5, 0x3c, len - 10);
	mu_assert_bytes(p, want, len, "CPU after device FILL of migrated pages");
	assert_true(mu_stats(m).faults > st1.faults);
	/* And back again, while mapped for write. */
	assert_int_equal(mu_move_other((char *)p, n, target), 0);
	assert_int_equal(mu_count_on((char *)p, n, target), n);
	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_bytes(host, want, len, "device READ after moving back");

	/* The same under an rxe MR: pinned, none moves until dereg. */
	mr = rxeu_reg_mr(&rx, q, len, IBV_ACCESS_LOCAL_WRITE |
			 IBV_ACCESS_REMOTE_READ);
	assert_non_null(mr);
	rc = mu_move_other((char *)q, n, qtarget);
	assert_int_equal(mu_count_on((char *)q, n, qtarget), 0);
	print_message("  move_pages: %zu device-mapped pages all moved; "
		      "%zu under an rxe MR: none moved (returned %ld)\n", n,
		      n, rc);
	assert_int_equal(rxeu_dereg(mr), 0);
	assert_int_equal(mu_move_other((char *)q, n, qtarget), 0);
	assert_int_equal(mu_count_on((char *)q, n, qtarget), n);

	regwatch_mirror_close(m);
	rxeu_close(&rx);
	munmap(p, len);
	munmap(q, len);
	free(host);
	free(want);
	mu_assert_no_leak(mc);
}

/* ---- reclaim to swap -------------------------------------------------- */

static void test_pageout_swap(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m = mu_open();
	struct regwatch_mirror_stats st0, st1, st2;
	size_t n = 32, len = n * PG, swapped = 0;
	uint8_t *p = mu_map_anon(len), *host = malloc(len), *want = malloc(len);

	(void)state;
	mu_pat_fill(p, len, 4);
	memcpy(want, p, len);
	MU_OK(regwatch_mirror_read(m, p, host, len));
	st0 = mu_stats(m);
	assert_int_equal(st0.pages_mapped, n);

	lru_drain_all(p, n);
	assert_int_equal(madvise(p, len, MADV_PAGEOUT), 0);
	for (size_t i = 0; i < n; i++)
		swapped += (pagemap(p + i * PG) & (PM_SWAPPED | PM_PRESENT)) ==
			   PM_SWAPPED;
	st1 = mu_stats(m);
	print_message("  MADV_PAGEOUT: %zu/%zu pages swapped, %zu resident, "
		      "device unmapped %llu\n", swapped, n, resident(p, n),
		      (unsigned long long)(st1.unmapped_pages -
					   st0.unmapped_pages));
	assert_int_equal(swapped, n);
	/* Really freed: a page with an extra reference stays in swap cache. */
	assert_int_equal(resident(p, n), 0);
	assert_int_equal(st1.pages_mapped, 0);
	assert_int_equal(st1.unmapped_pages - st0.unmapped_pages, n);

	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_bytes(host, want, len, "device READ after pageout");
	st2 = mu_stats(m);
	assert_true(st2.faults > st1.faults);
	assert_int_equal(resident(p, n), n);

	/* A device write to swapped-out pages. */
	lru_drain_all(p, n);
	assert_int_equal(madvise(p, len, MADV_PAGEOUT), 0);
	assert_int_equal(resident(p, n), 0);
	MU_OK(regwatch_mirror_fill(m, p + PG / 2, 0x99, len - PG));
	memset(want + PG / 2, 0x99, len - PG);
	mu_assert_bytes(p, want, len, "CPU after device FILL of swapped pages");

	regwatch_mirror_close(m);
	munmap(p, len);
	free(host);
	free(want);
	mu_assert_no_leak(mc);
}

/* ---- write permission follows the CPU page table ---------------------- */

static void test_mprotect_ro(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m = mu_open();
	struct regwatch_mirror_stats st0, st1;
	size_t n = 8, len = n * PG;
	uint8_t *p = mu_map_anon(len), *other = mu_map_anon(len), *host = malloc(len);
	uint8_t *ro;
	int fd = mu_memfd(len);

	(void)state;
	memset(other, 'O', len);
	MU_OK(regwatch_mirror_fill(m, p, 'B', len));	/* writable entries */
	st0 = mu_stats(m);
	assert_int_equal(mprotect(p, len, PROT_READ), 0);
	st1 = mu_stats(m);
	/* No writable entry is left (made read-only, or dropped). */
	assert_int_equal(st1.write_revoked - st0.write_revoked +
			 st1.unmapped_pages - st0.unmapped_pages, n);

	MU_ERR(regwatch_mirror_fill(m, p, 'X', len), EFAULT);
	memset(host, 'X', len);
	MU_ERR(regwatch_mirror_write(m, p + 10, host, PG), EFAULT);
	MU_ERR(regwatch_mirror_copy(m, p, other, len), EFAULT);
	MU_ERR(regwatch_mirror_map(m, p, len, true), EFAULT);
	mu_assert_all(p, 'B', len, "read-only memory after device writes");
	MU_OK(regwatch_mirror_read(m, p, host, len));
	mu_assert_all(host, 'B', len, "device READ of read-only memory");
	MU_OK(regwatch_mirror_copy(m, other, p, len));	/* read side works */
	mu_assert_all(other, 'B', len, "COPY out of read-only memory");
	MU_OK(regwatch_mirror_map(m, p, len, false));

	/* One read-only page inside a writable range. */
	assert_int_equal(mprotect(p, len, PROT_READ | PROT_WRITE), 0);
	assert_int_equal(mprotect(p + 4 * PG, PG, PROT_READ), 0);
	MU_ERR(regwatch_mirror_fill(m, p + 3 * PG, 'Y', 3 * PG), EFAULT);
	mu_assert_all(p + 4 * PG, 'B', PG, "the read-only page");
	MU_OK(regwatch_mirror_fill(m, p + 5 * PG, 'Z', 3 * PG));
	mu_assert_all(p + 5 * PG, 'Z', 3 * PG, "writable pages after it");

	/* Writable again: device writes work. */
	assert_int_equal(mprotect(p, len, PROT_READ | PROT_WRITE), 0);
	MU_OK(regwatch_mirror_fill(m, p, 'C', len));
	mu_assert_all(p, 'C', len, "after mprotect back to read-write");

	/* PROT_NONE: no access at all, also for pages the device mapped. */
	MU_OK(regwatch_mirror_read(m, p, host, len));
	assert_int_equal(mprotect(p, len, PROT_NONE), 0);
	MU_ERR(regwatch_mirror_read(m, p, host, len), EFAULT);
	MU_ERR(regwatch_mirror_fill(m, p, 'N', len), EFAULT);
	assert_int_equal(mprotect(p, len, PROT_READ), 0);
	mu_assert_all(p, 'C', len, "after PROT_NONE");

	/* Read-only from the start: a file mapped PROT_READ, shared. */
	memset(host, 'R', len);
	assert_int_equal(pwrite(fd, host, len, 0), (ssize_t)len);
	ro = mu_map(len, PROT_READ, MAP_SHARED, fd);
	MU_OK(regwatch_mirror_read(m, ro, host, len));
	mu_assert_all(host, 'R', len, "read-only file mapping: device READ");
	MU_ERR(regwatch_mirror_fill(m, ro, 'W', len), EFAULT);
	mu_pread(fd, host, len, 0);
	mu_assert_all(host, 'R', len, "read-only file after device FILL");

	munmap(ro, len);
	close(fd);
	munmap(p, len);
	munmap(other, len);
	free(host);
	regwatch_mirror_close(m);
	mu_assert_no_leak(mc);
}

/* ---- bad input -------------------------------------------------------- */

static int raw_xfer(int fd, const struct regwatch_mirror_xfer *x)
{
	return ioctl(fd, REGWATCH_MIRROR_IOC_XFER, x) ? -errno : 0;
}

#define BAD(field_set, err) do {					\
	struct regwatch_mirror_xfer x = good;				\
	field_set;							\
	int r_ = raw_xfer(fd, &x);					\
	if (r_ != -(err))						\
		fail_msg("XFER with %s: %d (%s), expected -%s",		\
			 #field_set, r_, r_ ? strerror(-r_) : "success",	\
			 #err);						\
} while (0)

static void test_xfer_badinput(void **state)
{
	struct mu_modcount mc = mu_modcount();
	struct regwatch_mirror *m = mu_open();
	int fd = regwatch_mirror_fd(m), status;
	size_t len = 4 * PG;
	uint8_t *p = mu_map_anon(len + PG), *host = malloc(len), *hole;
	uint8_t *rohost = mu_map(PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	struct regwatch_mirror_xfer good = {
		.op = REGWATCH_MIRROR_OP_FILL, .addr = (uintptr_t)p,
		.len = PG, .pattern = 'Q',
	};
	struct regwatch_mirror_stats st;
	long long max = 0;
	char buf[32];
	union {
		struct regwatch_mirror_stats st;
		uint64_t w[(sizeof(st) + 64) / 8];
	} big;
	pid_t pid;
	FILE *f;

	(void)state;
	memset(p, 'P', len);
	f = fopen("/sys/module/regwatch/parameters/mirror_max_xfer", "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	max = strtoll(buf, NULL, 0);
	assert_true(max >= (long long)PG);
	hole = mu_map_anon(PG);
	munmap(hole, PG);
	munmap(p + len, PG);	/* nothing right after p */

	BAD(x.op = 0, EINVAL);
	BAD(x.op = REGWATCH_MIRROR_OP_MAP + 1, EINVAL);
	BAD(x.op = 0x80000001u, EINVAL);
	BAD(x.flags = REGWATCH_MIRROR_MAP_WRITE, EINVAL);	/* not MAP */
	BAD((x.op = REGWATCH_MIRROR_OP_MAP, x.flags = 2), EINVAL);
	BAD(x.pad = 1, EINVAL);
	BAD(x.reserved[0] = 1, EINVAL);
	BAD(x.reserved[1] = 1ULL << 63, EINVAL);
	BAD(x.len = 0, EINVAL);
	BAD(x.len = (uint64_t)max + 1, EINVAL);
	BAD(x.len = ~0ULL, EINVAL);
	BAD(x.addr = ~0ULL - PG + 2, EOVERFLOW);			/* wraps */
	BAD((x.op = REGWATCH_MIRROR_OP_COPY, x.src = ~0ULL - 16), EOVERFLOW);
	BAD(x.addr = (1ULL << 63) - PG, EFAULT);	/* beyond user space */
	BAD((x.op = REGWATCH_MIRROR_OP_COPY, x.src = (1ULL << 63) - PG),
	    EFAULT);
	BAD(x.addr = (uintptr_t)hole, EFAULT);			/* not mapped */
	BAD(x.addr = (uintptr_t)p + len - 8, EFAULT);	/* runs off the end */
	BAD((x.op = REGWATCH_MIRROR_OP_COPY, x.src = (uintptr_t)hole),
	    EFAULT);
	BAD((x.op = REGWATCH_MIRROR_OP_READ, x.host = 8), EFAULT);
	BAD((x.op = REGWATCH_MIRROR_OP_READ, x.host = (uintptr_t)rohost),
	    EFAULT);
	BAD((x.op = REGWATCH_MIRROR_OP_READ, x.host = (uintptr_t)hole),
	    EFAULT);
	BAD((x.op = REGWATCH_MIRROR_OP_WRITE, x.host = 0), EFAULT);
	BAD((x.op = REGWATCH_MIRROR_OP_WRITE, x.host = (uintptr_t)hole),
	    EFAULT);
	mu_assert_all(p, 'P', len - 8, "memory after rejected transfers");

	/* The edges that must work. */
	MU_OK(raw_xfer(fd, &good));
	mu_assert_all(p, 'Q', PG, "a good FILL");
	{
		size_t ml = (size_t)max;
		uint8_t *big_area = mu_map_anon(ml);
		struct regwatch_mirror_xfer x = good;

		x.addr = (uintptr_t)big_area;
		x.len = ml;
		MU_OK(raw_xfer(fd, &x));
		assert_true(big_area[0] == 'Q' && big_area[ml - 1] == 'Q');
		munmap(big_area, ml);
	}

	/* Unknown ioctls. */
	assert_int_equal(ioctl(fd, _IO(REGWATCH_IOC_MAGIC, 0x2f)), -1);
	assert_int_equal(errno, ENOTTY);
	assert_int_equal(ioctl(fd, _IOW('x', 0x20, struct regwatch_mirror_xfer), &good), -1);
	assert_int_equal(errno, ENOTTY);

	/* STATS: size and pad checks, extensible both ways. */
	memset(&st, 0, sizeof(st));
	st.size = 8;
	assert_int_equal(ioctl(fd, REGWATCH_MIRROR_IOC_STATS, &st), -1);
	assert_int_equal(errno, EINVAL);
	st.size = sizeof(st);
	st.pad = 1;
	assert_int_equal(ioctl(fd, REGWATCH_MIRROR_IOC_STATS, &st), -1);
	assert_int_equal(errno, EINVAL);
	st.pad = 0;
	st.size = 16;	/* only "faults" */
	assert_int_equal(ioctl(fd, REGWATCH_MIRROR_IOC_STATS, &st), 0);
	assert_true(st.faults > 0);
	memset(&big, 0xff, sizeof(big));
	big.st.size = sizeof(big);
	big.st.pad = 0;
	assert_int_equal(ioctl(fd, REGWATCH_MIRROR_IOC_STATS, &big), 0);
	assert_int_equal(big.st.size, sizeof(st));
	assert_int_equal(big.w[sizeof(st) / 8], 0);	/* tail cleared */
	assert_int_equal(big.w[sizeof(big) / 8 - 1], 0);
	st.size = 8192;
	assert_int_equal(ioctl(fd, REGWATCH_MIRROR_IOC_STATS, &st), -1);
	assert_int_equal(errno, E2BIG);

	/* Another mm (a forked child): EIO for everything. */
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		struct regwatch_mirror_xfer x = good;

		x.pattern = 'c';
		if (raw_xfer(fd, &x) != -EIO)
			_exit(1);
		st.size = sizeof(st);
		if (ioctl(fd, REGWATCH_MIRROR_IOC_STATS, &st) != -1 ||
		    errno != EIO)
			_exit(2);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("foreign mm: child status %#x (1: XFER, 2: STATS "
			 "did not give EIO)", status);

	munmap(p, len);
	munmap(rohost, PG);
	free(host);
	regwatch_mirror_close(m);
	mu_assert_no_leak(mc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_data_anon),
		cmocka_unit_test(test_data_tmpfs),
		cmocka_unit_test(test_data_ext4),
		cmocka_unit_test(test_data_private_file_cow),
		cmocka_unit_test(test_data_zero_page),
		cmocka_unit_test(test_data_thp),
		cmocka_unit_test(test_writeback_refault),
		cmocka_unit_test(test_remap_fixed),
		cmocka_unit_test(test_migrate_vs_rxe),
		cmocka_unit_test(test_pageout_swap),
		cmocka_unit_test(test_mprotect_ro),
		cmocka_unit_test(test_xfer_badinput),
	};

	if (access(REGWATCH_MIRROR_DEVICE, R_OK | W_OK)) {
		fprintf(stderr, "%s: %s\n", REGWATCH_MIRROR_DEVICE,
			strerror(errno));
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, group_teardown);
}
