// SPDX-License-Identifier: MIT
/*
 * Guest benchmark: invalidation delivery latency, from the start of the
 * invalidating call (munmap of a watched, populated 64 KiB range):
 *   (i)  to the watch's state word changing, seen by a thread spinning on
 *        it on the other CPU; and whether it had changed by the time the
 *        call returned (for regwatch it must, every time);
 *   (ii) to a consumer thread blocked in epoll_wait() waking up.
 * Monitors:
 *   regwatch  one-shot watch; (ii): an eventfd set with
 *             regwatch_set_eventfd(), the consumer in epoll on it;
 *   uffd      a raw userfaultfd reader: the range registered (MISSING
 *             mode, UFFD_FEATURE_EVENT_UNMAP), the reader blocked in epoll
 *             on the userfaultfd; it reads the UNMAP event and writes the
 *             state word at once, so (i) is "reader woke, read, stored",
 *             and (ii) is the reader's own wake-up.
 * The consumers run in child processes (the eventfd and the userfaultfd
 * are inherited; the uffd state word is in a shared page), so that their
 * waking up does not add a TLB shoot-down of their CPU to the munmap; the
 * spinner must be a thread of this process (the regwatch state words are
 * mapped only here), so the state-word rows are compared with a plain
 * munmap while a spinner runs. Both monitors are open in this one process;
 * every iteration runs each variant in a rotating order. Latencies are
 * printed as multiples of the plain munmap's median duration (guest
 * ratios).
 *
 *   inval_latency [--quick] [--out DIR]
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "regwatch.h"

#define PG	4096UL
#define LEN	(16 * PG)

static struct regwatch *rw;
static int efd, uffd;

/* ------------------------------------------------------------ spinner */

/* A thread of this process spinning on a word (a state word lives in the
 * monitor's own address space). */
static struct {
	const uint64_t *word;
	uint64_t armed;
	int go;			/* 1: spin on word; 2: exit */
	int ready;
	uint64_t seen_ns;
	sem_t start, done;
} sp;

static void *spinner(void *arg)
{
	(void)arg;
	for (;;) {
		sem_wait(&sp.start);
		if (__atomic_load_n(&sp.go, __ATOMIC_ACQUIRE) == 2)
			return NULL;
		__atomic_store_n(&sp.ready, 1, __ATOMIC_RELEASE);
		while (__atomic_load_n(sp.word, __ATOMIC_ACQUIRE) == sp.armed)
			;
		sp.seen_ns = bench_ns();
		sem_post(&sp.done);
	}
}

static void spin_arm(const uint64_t *word, uint64_t armed)
{
	sp.word = word;
	sp.armed = armed;
	__atomic_store_n(&sp.ready, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&sp.go, 1, __ATOMIC_RELEASE);
	sem_post(&sp.start);
	while (!__atomic_load_n(&sp.ready, __ATOMIC_ACQUIRE))
		;
}

/* ----------------------------------------------- consumer processes */

/*
 * The consumers (the regwatch eventfd reader and the userfaultfd reader)
 * run in child processes, sharing this page with us: a consumer thread of
 * this process would make the munmap shoot down its CPU's TLB, an IPI that
 * TCG makes very slow, and charge that to the call being measured.
 */
struct shared {
	sem_t rw_done, uf_done;
	uint64_t rw_wake_ns, uf_wake_ns, uf_state_ns;
	uint64_t uf_state;	/* the userfaultfd watch's state word */
	int stop;
};
static struct shared *sh;
static pid_t rw_pid, uf_pid;

static void rw_consumer(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = efd };
	int ep = epoll_create1(EPOLL_CLOEXEC);
	uint64_t v;

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev))
		_exit(1);
	for (;;) {
		if (epoll_wait(ep, &ev, 1, -1) != 1)
			continue;
		sh->rw_wake_ns = bench_ns();
		if (read(efd, &v, sizeof(v)) < 0)
			continue;	/* a spurious wake-up */
		if (__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE))
			_exit(0);
		sem_post(&sh->rw_done);
	}
}

static void uffd_reader(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = uffd };
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct uffd_msg msg;

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, uffd, &ev))
		_exit(1);
	for (;;) {
		uint64_t wake;

		if (epoll_wait(ep, &ev, 1, -1) != 1)
			continue;
		wake = bench_ns();
		if (read(uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;	/* EAGAIN */
		/* (read first: the munmap waits until its event is read) */
		if (__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE))
			_exit(0);
		if (msg.event == UFFD_EVENT_UNMAP) {
			__atomic_store_n(&sh->uf_state, sh->uf_state + 1,
					 __ATOMIC_RELEASE);
			sh->uf_state_ns = bench_ns();
			sh->uf_wake_ns = wake;
			sem_post(&sh->uf_done);
		}
	}
}

static void uffd_setup(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_UNMAP };

	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		bench_die("userfaultfd: %s", strerror(errno));
	if (ioctl(uffd, UFFDIO_API, &api))
		bench_die("UFFDIO_API: %s", strerror(errno));
}

static void uffd_register(void *p)
{
	struct uffdio_register r = {
		.range = { .start = (uintptr_t)p, .len = LEN },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};

	if (ioctl(uffd, UFFDIO_REGISTER, &r))
		bench_die("UFFDIO_REGISTER: %s", strerror(errno));
}

/* ------------------------------------------------------------ the runs */

enum { V_PLAIN, V_PLAIN_SPIN, V_RW_STATE, V_UF_STATE, V_RW_WAKE, V_UF_WAKE,
       V_RW_WAKE_SAME, V_UF_WAKE_SAME, NV };
static const char *const vnames[NV] = {
	"plain munmap", "plain munmap + spinner", "regwatch state word",
	"uffd state word", "regwatch wake (other CPU)", "uffd wake (other CPU)",
	"regwatch wake (same CPU)", "uffd wake (same CPU)" };
/* the unit each variant is compared with */
static const int unit_of[NV] = {
	V_PLAIN, V_PLAIN_SPIN, V_PLAIN_SPIN, V_PLAIN_SPIN, V_PLAIN, V_PLAIN,
	V_PLAIN, V_PLAIN };

/* Main thread on CPU 0, spinner on CPU 1, consumers where a variant says. */
static void pin(pid_t pid, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(pid, sizeof(set), &set))
		bench_die("sched_setaffinity: %s", strerror(errno));
}

static void place_consumers(int v)
{
	static int where = -1;
	int cpu = (v == V_RW_WAKE || v == V_UF_WAKE) ? 1 : 0;

	if (cpu == where)
		return;
	pin(rw_pid, cpu);
	pin(uf_pid, cpu);
	where = cpu;
}

struct acc {
	struct bvec lat;	/* guest ns from call start */
	struct bvec call;	/* guest ns of the call itself */
	int before;		/* state changed before the call returned */
	int n;
};

static int drain_cb(const struct regwatch_event *ev, void *arg)
{
	(void)ev;
	(*(int *)arg)++;
	return 0;
}

static void one(int v, struct acc *a)
{
	char *p = bench_map_populated(LEN);
	struct regwatch_ref ref;
	uint64_t t0, t1, armed = 0, lat, dummy = 0;
	int rc, n = 0;
	bool before = false;
	bool rwv = v == V_RW_STATE || v == V_RW_WAKE || v == V_RW_WAKE_SAME;
	bool ufv = v == V_UF_STATE || v == V_UF_WAKE || v == V_UF_WAKE_SAME;

	place_consumers(v);

	if (rwv) {
		rc = regwatch_watch(rw, p, LEN, 1, 0, &ref);
		if (rc)
			bench_die("regwatch_watch: %s", strerror(-rc));
	} else if (ufv) {
		uffd_register(p);
		armed = __atomic_load_n(&sh->uf_state, __ATOMIC_ACQUIRE);
	}
	if (v == V_RW_STATE)
		spin_arm(ref.state, ref.armed_state);
	else if (v == V_UF_STATE)
		spin_arm(&sh->uf_state, armed);
	else if (v == V_PLAIN_SPIN)
		spin_arm(&dummy, 0);

	t0 = bench_ns();
	munmap(p, LEN);
	t1 = bench_ns();
	if (rwv)
		before = !regwatch_ref_valid(&ref);
	else if (ufv)
		before = __atomic_load_n(&sh->uf_state, __ATOMIC_ACQUIRE) != armed;
	if (v == V_PLAIN_SPIN)
		__atomic_store_n(&dummy, 1, __ATOMIC_RELEASE);

	lat = t1 - t0;
	if (v == V_RW_STATE || v == V_UF_STATE || v == V_PLAIN_SPIN) {
		sem_wait(&sp.done);
		if (v != V_PLAIN_SPIN)
			lat = sp.seen_ns - t0;
	}
	if (rwv) {
		sem_wait(&sh->rw_done);
		if (v == V_RW_WAKE || v == V_RW_WAKE_SAME)
			lat = sh->rw_wake_ns - t0;
		regwatch_drain(rw, drain_cb, &n);
		regwatch_unwatch(rw, &ref);
		if (n != 1)
			bench_die("regwatch: %d events for one munmap", n);
	} else if (ufv) {
		sem_wait(&sh->uf_done);
		if (v == V_UF_WAKE || v == V_UF_WAKE_SAME)
			lat = sh->uf_wake_ns - t0;
	}
	bvec_push(&a->lat, (double)lat);
	bvec_push(&a->call, (double)(t1 - t0));
	a->before += before;
	a->n++;
}

int main(int argc, char **argv)
{
	struct regwatch_options ro = { 0 };
	struct acc acc[NV];
	struct bstat lat[NV], call[NV];
	struct bench_opts o;
	pthread_t ts;
	int iters, i, k, rc, st, bad = 0;
	char params[640], b1[96], b2[96];
	FILE *csv;
	uint64_t one64 = 1;

	bench_parse(argc, argv, &o, NULL, NULL, NULL);
	iters = o.quick ? 10 : 400;
	memset(acc, 0, sizeof(acc));

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
	memset(sh, 0, sizeof(*sh));
	sem_init(&sh->rw_done, 1, 0);
	sem_init(&sh->uf_done, 1, 0);
	rc = regwatch_open(&ro, &rw);
	if (rc)
		bench_die("regwatch_open: %s", strerror(-rc));
	efd = eventfd(0, EFD_NONBLOCK);
	if (efd < 0 || regwatch_set_eventfd(rw, efd))
		bench_die("eventfd");
	uffd_setup();
	/* the consumers: children, before any watch or registration */
	rw_pid = fork();
	if (!rw_pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);	/* never outlive us */
		rw_consumer();
	}
	uf_pid = fork();
	if (!uf_pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		uffd_reader();
	}
	if (rw_pid < 0 || uf_pid < 0)
		bench_die("fork: %s", strerror(errno));
	sem_init(&sp.start, 0, 0);
	sem_init(&sp.done, 0, 0);
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		bench_die("needs 2 CPUs");
	pin(0, 0);
	if (pthread_create(&ts, NULL, spinner, NULL))
		bench_die("pthread_create");
	{
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(1, &set);
		pthread_setaffinity_np(ts, sizeof(set), &set);
	}

	snprintf(params, sizeof(params),
		 "munmap of a populated, watched 64 KiB range; %d iterations, "
		 "each running the 8 variants in a rotating order; caller on "
		 "CPU 0; state words seen by a thread spinning on CPU 1; "
		 "consumers (the regwatch eventfd reader, the userfaultfd reader) "
		 "in child processes blocked in epoll_wait, on CPU 1 (other) or "
		 "CPU 0 (same: also for the state-word rows); units: a plain munmap of an "
		 "unwatched 64 KiB range, with the spinner on for the state-word "
		 "rows (it costs the call a TLB shoot-down), without for the "
		 "wake-up rows", iters);
	csv = bench_begin(&o, "inval_latency",
			  "invalidation delivery latency: regwatch vs userfaultfd reader",
			  BENCH_GUEST_RATIOS, params,
			  "variant,median_guest_ns,p10_guest_ns,p90_guest_ns,median_units,p10_units,p90_units,unit,call_median_guest_ns,call_median_units,changed_before_return,iterations");

	for (i = 0; i < 3; i++)		/* warm-up */
		for (k = 0; k < NV; k++) {
			struct acc w;

			memset(&w, 0, sizeof(w));
			one(k, &w);
			bvec_free(&w.lat);
			bvec_free(&w.call);
		}
	for (i = 0; i < iters; i++)
		for (k = 0; k < NV; k++)
			one((k + i) % NV, &acc[(k + i) % NV]);

	for (k = 0; k < NV; k++) {
		lat[k] = bvec_stat(&acc[k].lat);
		call[k] = bvec_stat(&acc[k].call);
	}
	printf("\nlatency from the start of munmap (median [p10, p90]) and the "
	       "munmap's own duration, in units of a plain munmap (the unit column)\n");
	printf("%-25s | %-22s | %-22s | %-24s | %s\n", "", "latency", "call",
	       "unit", "state changed before return");
	for (k = 0; k < NV; k++) {
		double u = lat[unit_of[k]].med;
		struct bstat l = lat[k], c = call[k];

		l.med /= u; l.p10 /= u; l.p90 /= u;
		c.med /= u; c.p10 /= u; c.p90 /= u;
		printf("%-25s | %-22s | %-22s | %-24s | ", vnames[k],
		       bstat_fmt(b1, sizeof(b1), "%.2f", l),
		       bstat_fmt(b2, sizeof(b2), "%.2f", c), vnames[unit_of[k]]);
		if (k <= V_PLAIN_SPIN)
			printf("-\n");
		else
			printf("%d/%d%s\n", acc[k].before, acc[k].n,
			       (k == V_RW_STATE || k == V_RW_WAKE || k == V_RW_WAKE_SAME) ?
			       (acc[k].before == acc[k].n ? " (always)" : " (NOT always)") : "");
		fprintf(csv, "%s,%.0f,%.0f,%.0f,%.3f,%.3f,%.3f,%s,%.0f,%.3f,%d,%d\n",
			vnames[k], lat[k].med, lat[k].p10, lat[k].p90, l.med,
			l.p10, l.p90, vnames[unit_of[k]], call[k].med, c.med,
			k <= V_PLAIN_SPIN ? -1 : acc[k].before, acc[k].n);
	}
	printf("ratios uffd / regwatch (medians): state word %.2fx, other CPU: consumer "
	       "wake-up %.2fx\n", lat[V_UF_STATE].med / lat[V_RW_STATE].med,
	       lat[V_UF_WAKE].med / lat[V_RW_WAKE].med);
	printf("                                        same CPU: consumer "
	       "wake-up %.2fx\n", lat[V_UF_WAKE_SAME].med / lat[V_RW_WAKE_SAME].med);
	if (acc[V_RW_STATE].before != acc[V_RW_STATE].n ||
	    acc[V_RW_WAKE].before != acc[V_RW_WAKE].n ||
	    acc[V_RW_WAKE_SAME].before != acc[V_RW_WAKE_SAME].n) {
		printf("check: FAILED: a regwatch state word was still armed "
		       "after munmap returned\n");
		bad = 1;
	}

	/* stop the spinner and the consumers */
	__atomic_store_n(&sp.go, 2, __ATOMIC_RELEASE);
	sem_post(&sp.start);
	pthread_join(ts, NULL);
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
	if (write(efd, &one64, sizeof(one64)) < 0)
		bad = 1;
	{
		/* wake the reader: an event on a throw-away range */
		char *p = bench_map_populated(LEN);

		uffd_register(p);
		munmap(p, LEN);
	}
	if (waitpid(rw_pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		bad = 1;
	if (waitpid(uf_pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		bad = 1;
	for (k = 0; k < NV; k++) {
		bvec_free(&acc[k].lat);
		bvec_free(&acc[k].call);
	}
	regwatch_close(rw);
	return bench_end(csv, &o, "inval_latency") | bad;
}
