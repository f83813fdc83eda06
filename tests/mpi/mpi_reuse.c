// SPDX-License-Identifier: MIT
/*
 * Two MPI ranks move data out of and into buffers whose memory is released
 * and mapped again at the same address with new contents between transfers,
 * and check every byte that arrives. A registration cache that misses the
 * release keeps the old pages registered: the data that arrives is then the
 * old contents (send side) or lands in the old pages (receive/window side),
 * and this program reports it as STALE.
 *
 * Phases (each buffer is `size` bytes, big enough for UCX's zero-copy
 * rendezvous so the registration cache is used):
 *   send     rank 0 sends, rank 1 receives; both buffers are recycled
 *   put      rank 0 MPI_Puts from a recycled buffer into a fixed window
 *   win      rank 0 MPI_Puts into a window that rank 1 creates over a
 *            recycled buffer every iteration (osc ucx maps it each time)
 * Recycling methods (-m, rotated per iteration unless one is given):
 *   fixed    munmap + mmap(MAP_FIXED) at the same address
 *   remap    munmap + mmap with a hint; must come back at the same address
 *   dontneed madvise(MADV_DONTNEED): same mapping, new (zero) pages
 *
 * Exit status: 0 all data correct; 1 stale data seen; 2 setup/usage error.
 * The last line is "mpi_reuse: rank R: PASS" or "... STALE n bytes".
 */
#include <errno.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum method { M_FIXED, M_REMAP, M_DONTNEED, M_NR };
static const char *const method_names[M_NR] = { "fixed", "remap", "dontneed" };

static int rank;
static size_t size = 256 << 10;
static int iters = 8;
static int only_method = -1;
static unsigned long long stale_bytes;
static int stale_iters;

static void die(const char *what)
{
	fprintf(stderr, "mpi_reuse: rank %d: %s: %s\n", rank, what,
		strerror(errno));
	MPI_Abort(MPI_COMM_WORLD, 2);
	exit(2);
}

/* Contents of iteration it, phase ph, written by rank r: differs between
 * consecutive iterations at every byte, so old data never matches. */
static uint8_t pattern(int ph, int it, int r, size_t i)
{
	return (uint8_t)(i * 7 + (i >> 8) + (unsigned int)it * 37 +
			 (unsigned int)ph * 101 + (unsigned int)r * 13 + 1);
}

static void fill(uint8_t *p, int ph, int it, int r)
{
	for (size_t i = 0; i < size; i++)
		p[i] = pattern(ph, it, r, i);
}

/* Count bytes that differ from the expected pattern; report the first. */
static void check(const uint8_t *p, int ph, int it, int r, const char *what)
{
	size_t bad = 0, first = 0;

	for (size_t i = 0; i < size; i++)
		if (p[i] != pattern(ph, it, r, i)) {
			if (!bad++)
				first = i;
		}
	if (!bad)
		return;
	stale_bytes += bad;
	stale_iters++;
	printf("mpi_reuse: rank %d: STALE %s iteration %d: %zu of %zu bytes wrong, first at %zu: got 0x%02x want 0x%02x (previous iteration's 0x%02x)\n",
	       rank, what, it, bad, size, first, p[first],
	       pattern(ph, it, r, first),
	       pattern(ph, it - 1, r, first));
	fflush(stdout);
}

static uint8_t *map_new(void *hint, int flags)
{
	void *p = mmap(hint, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

/*
 * Give the memory at buf back and get new memory at the same address.
 * The old pages stay alive only through a registration that still pins
 * them.
 */
static void recycle(uint8_t *buf, enum method m)
{
	uint8_t *p;

	switch (m) {
	case M_FIXED:
		if (munmap(buf, size))
			die("munmap");
		map_new(buf, MAP_FIXED);
		break;
	case M_REMAP:
		if (munmap(buf, size))
			die("munmap");
		p = map_new(buf, 0);
		if (p != buf) {
			errno = EADDRINUSE;
			die("mmap hint did not give the same address back");
		}
		break;
	case M_DONTNEED:
		if (madvise(buf, size, MADV_DONTNEED))
			die("madvise");
		break;
	default:
		abort();
	}
}

static enum method method_of(int it)
{
	return only_method >= 0 ? (enum method)only_method :
				  (enum method)(it % M_NR);
}

/* Rank 0 sends from a recycled buffer into rank 1's recycled buffer. */
static void phase_send(void)
{
	uint8_t *buf = map_new(NULL, 0);

	for (int it = 0; it < iters; it++) {
		if (it)
			recycle(buf, method_of(it));
		if (rank == 0) {
			fill(buf, 0, it, 0);
			MPI_Send(buf, (int)size, MPI_BYTE, 1, it, MPI_COMM_WORLD);
		} else {
			memset(buf, 0xee, size);
			MPI_Recv(buf, (int)size, MPI_BYTE, 0, it, MPI_COMM_WORLD,
				 MPI_STATUS_IGNORE);
			check(buf, 0, it, 0, "send");
		}
		/* Also the other way round, so both ranks' send and
		 * receive buffers go through the cache. */
		if (rank == 1) {
			fill(buf, 1, it, 1);
			MPI_Send(buf, (int)size, MPI_BYTE, 0, it, MPI_COMM_WORLD);
		} else {
			memset(buf, 0xee, size);
			MPI_Recv(buf, (int)size, MPI_BYTE, 1, it, MPI_COMM_WORLD,
				 MPI_STATUS_IGNORE);
			check(buf, 1, it, 1, "send-back");
		}
	}
	munmap(buf, size);
}

/*
 * Rank 0 MPI_Puts into rank 1's window. put: the origin buffer is
 * recycled, the window stays (a stale origin registration sends the old
 * contents). win: rank 1 recycles its buffer and exposes it as a new
 * window every iteration, the origin stays (a stale target registration
 * lets the data land in the old pages).
 */
static void phase_put(int ph, int recycle_origin)
{
	uint8_t *buf = map_new(NULL, 0);
	MPI_Win win = MPI_WIN_NULL;

	for (int it = 0; it < iters; it++) {
		if (it && (rank == 0) == recycle_origin)
			recycle(buf, method_of(it));
		if (rank == 0)
			fill(buf, ph, it, 0);
		else
			memset(buf, 0xee, size);
		if (win == MPI_WIN_NULL)
			MPI_Win_create(buf, rank == 1 ? (MPI_Aint)size : 0, 1,
				       MPI_INFO_NULL, MPI_COMM_WORLD, &win);
		MPI_Win_fence(0, win);
		if (rank == 0)
			MPI_Put(buf, (int)size, MPI_BYTE, 1, 0, (int)size,
				MPI_BYTE, win);
		MPI_Win_fence(0, win);
		if (rank == 1)
			check(buf, ph, it, 0, recycle_origin ? "put" : "win");
		if (!recycle_origin)
			MPI_Win_free(&win);
	}
	if (win != MPI_WIN_NULL)
		MPI_Win_free(&win);
	munmap(buf, size);
}

static void usage(void)
{
	fprintf(stderr, "usage: mpi_reuse [-s size_kib] [-n iterations] [-m fixed|remap|dontneed] [-p send|put|win|all]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *phases = "all";
	unsigned long long total;
	int nranks, c, i, any, all;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	while ((c = getopt(argc, argv, "s:n:m:p:")) != -1) {
		switch (c) {
		case 's':
			size = strtoul(optarg, NULL, 0) << 10;
			break;
		case 'n':
			iters = atoi(optarg);
			break;
		case 'm':
			for (i = 0; i < M_NR; i++)
				if (!strcmp(optarg, method_names[i]))
					only_method = i;
			if (only_method < 0)
				usage();
			break;
		case 'p':
			phases = optarg;
			break;
		default:
			usage();
		}
	}
	all = !strcmp(phases, "all");
	if (nranks != 2 || !size || iters < 1 ||
	    (!all && strcmp(phases, "send") && strcmp(phases, "put") &&
	     strcmp(phases, "win"))) {
		if (rank == 0)
			usage();
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	size = (size + 4095) & ~(size_t)4095;

	if (all || !strcmp(phases, "send"))
		phase_send();
	if (all || !strcmp(phases, "put"))
		phase_put(2, 1);
	if (all || !strcmp(phases, "win"))
		phase_put(3, 0);

	MPI_Allreduce(&stale_bytes, &total, 1, MPI_UNSIGNED_LONG_LONG,
		      MPI_SUM, MPI_COMM_WORLD);
	any = total != 0;
	if (stale_bytes)
		printf("mpi_reuse: rank %d: STALE %llu bytes in %d transfers\n",
		       rank, stale_bytes, stale_iters);
	else
		printf("mpi_reuse: rank %d: %s (%s, %d iterations of %zu KiB)\n",
		       rank, any ? "peer saw STALE data" : "PASS", phases,
		       iters, size >> 10);
	MPI_Finalize();
	return any ? 1 : 0;
}
