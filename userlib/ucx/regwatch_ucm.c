// SPDX-License-Identifier: MIT
/*
 * libregwatch_ucm.so: feeds UCX's memory-event layer (UCM) from regwatch
 * instead of UCX's or Open MPI's memory hooks. LD_PRELOAD it into every
 * process that uses UCX (see README, "Using regwatch with UCX / Open MPI").
 *
 * UCX's registration caches have no validity check: they must hear of an
 * unmap before the address can be reused. So, in a constructor, before
 * UCX initialises:
 *   1. turn UCX's hooks off (UCX_MEM_MALLOC_HOOKS=no,
 *      UCX_MEM_MMAP_HOOK_MODE=none) and exclude Open MPI's memory patcher
 *      (OMPI_MCA_memory=^patcher), so that regwatch is the only source;
 *      a program linked with libucs has configured UCX before us and is
 *      started again (execv) with these set, see hooks_off();
 *   2. declare UCM_EVENT_VM_UNMAPPED external: UCX then creates its caches
 *      without installing hooks and relies on ucm_vm_munmap() calls;
 *   3. open a regwatch monitor, watch the whole user address space with
 *      one streaming watch, and ask for synchronous delivery: the module
 *      queues a real-time signal to the thread that invalidates memory, so
 *      our handler drains the ring and calls ucm_vm_munmap() before that
 *      thread's munmap/madvise/mremap/mmap(MAP_FIXED)... returns;
 *   4. a thread waits on an eventfd for the invalidations that come from
 *      elsewhere (reclaim, migration, other processes) and forwards them
 *      the same way.
 * The design notes (locks, signal interaction) are in docs/design.md,
 * "The UCX bridge".
 *
 * Environment:
 *   REGWATCH_UCM=off       do nothing at all
 *   REGWATCH_UCM=declare   test only: hooks off and the event declared
 *                          external, but nothing delivered (the caches go
 *                          stale: shows that a test bites)
 *   REGWATCH_UCM_SIGNAL=n  signal number (default SIGRTMAX - 4)
 *   REGWATCH_UCM_KEEP_HOOKS=1  leave UCX_MEM_* / OMPI_MCA_memory alone
 *                          (and never restart the program)
 *   REGWATCH_UCM_VERBOSE=1 one line at start and a summary at exit
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <ucm/api/ucm.h>

#include "regwatch.h"

/* The user address space on x86-64 with 4-level page tables (47 bits,
 * minus the guard page): the whole range one streaming watch covers. */
#define WATCH_START	0x1000ULL
#define WATCH_END	0x7ffffffff000ULL
#define RING_ENTRIES	4096

static struct regwatch *rw;
static int signo;
static int verbose;
static int ucx_hooks_kept;	/* UCX installed its hooks and they stay */
static struct sigaction old_action;
static pthread_t async_thread;

/* Counters for the exit summary; updated from handlers, so atomics only. */
static atomic_ulong n_signals, n_events, n_sync, n_resyncs, n_async_wakeups;

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	fprintf(stderr, "regwatch_ucm[%d]: ", (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* One event -> one ucm_vm_munmap(); RESYNC (ring overflowed, streaming
 * events lost) -> everything the watch covers. */
static int forward(const struct regwatch_event *ev, void *arg)
{
	(void)arg;
	atomic_fetch_add_explicit(&n_events, 1, memory_order_relaxed);
	if (ev->type == REGWATCH_EVENT_RESYNC) {
		atomic_fetch_add_explicit(&n_resyncs, 1, memory_order_relaxed);
		ucm_vm_munmap((void *)(uintptr_t)WATCH_START,
			      WATCH_END - WATCH_START);
		return 0;
	}
	if (ev->type != REGWATCH_EVENT_INVALIDATE || ev->end <= ev->start)
		return 0;
	if (ev->flags & REGWATCH_EVENT_SYNC)
		atomic_fetch_add_explicit(&n_sync, 1, memory_order_relaxed);
	ucm_vm_munmap((void *)(uintptr_t)ev->start, ev->end - ev->start);
	return 0;
}

/*
 * Runs in the thread that invalidated memory, before its system call (or
 * page fault) returns. Standard and real-time signals of one number may
 * have merged, so drain everything, not one event.
 */
static void on_signal(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;

	if (si && si->si_code == SI_KERNEL) {
		atomic_fetch_add_explicit(&n_signals, 1, memory_order_relaxed);
		regwatch_drain_shared(rw, forward, NULL);
		errno = saved;
		return;
	}
	/* Not ours (sent by a process or by a timer): chain. */
	errno = saved;
	if ((old_action.sa_flags & SA_SIGINFO) && old_action.sa_sigaction)
		old_action.sa_sigaction(sig, si, uc);
	else if (old_action.sa_handler != SIG_DFL &&
		 old_action.sa_handler != SIG_IGN)
		old_action.sa_handler(sig);
}

/* Asynchronous invalidations (reclaim, migration, other processes). */
static void *async_main(void *arg)
{
	int efd = (int)(intptr_t)arg;
	struct pollfd p = { .fd = efd, .events = POLLIN };
	uint64_t n;

	for (;;) {
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (read(efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
			break;
		atomic_fetch_add_explicit(&n_async_wakeups, 1,
					  memory_order_relaxed);
		regwatch_drain_shared(rw, forward, NULL);
	}
	return NULL;
}

/* Hook settings as UCM sees them: what libucs parsed from UCX_MEM_*. */
static int ucx_hooks_on(void)
{
	return ucm_global_opts.mmap_hook_mode != UCM_MMAP_HOOK_NONE ||
	       ucm_global_opts.enable_malloc_hooks;
}

/*
 * UCX reads UCX_MEM_* in libucs's constructor, which also installs, in
 * the default "bistro" mode, UCX's mmap hooks at once (UCX 1.13:
 * ucs_init -> ucm_set_global_opts -> ucm_library_init -> ucm_mmap_init).
 * Open MPI dlopen()s UCX in MPI_Init, after this constructor: the
 * variables are in time. A program linked with libucs has had libucs's
 * constructor run before ours (a preload is initialised after the
 * program's own libraries): the hooks are in libc already, and they
 * cannot be taken out. (Telling UCM "mode none" afterwards, with
 * ucm_set_global_opts(), is worse: UCM then looks up the original mmap
 * with dlsym, finds libc's patched entry, and every mmap/munmap recurses
 * until the stack overflows.) So return 1 if the program must start
 * again with the variables set.
 */
static int hooks_off(void)
{
	void *ucs;

	setenv("UCX_MEM_MALLOC_HOOKS", "no", 1);
	setenv("UCX_MEM_MMAP_HOOK_MODE", "none", 1);
	setenv("OMPI_MCA_memory", "^patcher", 1);
	ucs = dlopen("libucs.so.0", RTLD_LAZY | RTLD_NOLOAD);
	if (!ucs)
		return 0;
	dlclose(ucs);
	return ucx_hooks_on();
}

/* Start the program again, once, with the variables hooks_off() set.
 * Returns only if that cannot be done. */
static void restart(char **argv)
{
	if (getenv("REGWATCH_UCM_RESTARTED")) {
		say("UCX configured its hooks again after a restart: keeping them");
		return;
	}
	/* AT_BASE is 0 when the program was started as "ld.so prog": then
	 * /proc/self/exe is ld.so, which cannot take argv as it is. */
	if (!argv || !argv[0] || !getauxval(AT_BASE)) {
		say("cannot restart this program: keeping UCX's hooks");
		return;
	}
	say("UCX was loaded with its hooks on: restarting with them off");
	setenv("REGWATCH_UCM_RESTARTED", "1", 1);
	fflush(NULL);
	execv("/proc/self/exe", argv);
	unsetenv("REGWATCH_UCM_RESTARTED");
	say("restart failed (%s): keeping UCX's hooks", strerror(errno));
}

static int start_async(void)
{
	sigset_t all, old;
	int efd, ret;

	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		return -errno;
	ret = regwatch_set_eventfd(rw, efd);
	if (ret) {
		close(efd);
		return ret;
	}
	/* The thread must never take the application's signals (nor ours:
	 * it never invalidates memory itself). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	ret = -pthread_create(&async_thread, NULL, async_main,
			      (void *)(intptr_t)efd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!ret)
		pthread_detach(async_thread);
	return ret;
}

static int start(void)
{
	struct regwatch_options o = { .ring_entries = RING_ENTRIES };
	struct regwatch_ref ref;
	struct sigaction sa;
	const char *s;
	int ret;

	s = getenv("REGWATCH_UCM_SIGNAL");
	signo = s ? atoi(s) : SIGRTMAX - 4;

	ret = regwatch_open(&o, &rw);
	if (ret)
		return ret;
	ret = regwatch_watch(rw, (void *)(uintptr_t)WATCH_START,
			     WATCH_END - WATCH_START, 0,
			     REGWATCH_WATCH_STREAMING, &ref);
	if (ret)
		return ret;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(signo, &sa, &old_action))
		return -errno;
	if (old_action.sa_handler != SIG_DFL && old_action.sa_handler != SIG_IGN)
		say("signal %d: chaining the handler already installed",
		    signo);

	/* Before any cache exists: UCX then skips its hooks for it. */
	ucm_set_external_event(UCM_EVENT_VM_UNMAPPED);

	ret = start_async();
	if (ret)
		return ret;
	return regwatch_set_signal(rw, signo);
}

/* glibc passes (argc, argv, envp) to constructors: argv is for restart(). */
__attribute__((constructor)) static void regwatch_ucm_init(int argc,
							   char **argv,
							   char **envp)
{
	const char *mode = getenv("REGWATCH_UCM");
	int ret;

	(void)argc;
	(void)envp;
	verbose = getenv("REGWATCH_UCM_VERBOSE") &&
		  atoi(getenv("REGWATCH_UCM_VERBOSE")) > 0;
	if (mode && !strcmp(mode, "off"))
		return;
	if (!getenv("REGWATCH_UCM_KEEP_HOOKS") ||
	    !atoi(getenv("REGWATCH_UCM_KEEP_HOOKS"))) {
		if (hooks_off()) {
			restart(argv);
			ucx_hooks_kept = 1;
		}
	} else {
		ucx_hooks_kept = 1;
	}
	/* Whatever happened, the restart marker is not for our children. */
	unsetenv("REGWATCH_UCM_RESTARTED");
	if (mode && !strcmp(mode, "declare")) {
		ucm_set_external_event(UCM_EVENT_VM_UNMAPPED);
		say("UCX hooks %s, VM_UNMAPPED external, nothing delivered (test mode)",
		    ucx_hooks_kept ? "on" : "off");
		return;
	}
	ret = start();
	if (ret) {
		/* Without delivery the caches would go stale: refuse to run. */
		fprintf(stderr, "regwatch_ucm[%d]: cannot start: %s (is regwatch.ko loaded?)\n",
			(int)getpid(), strerror(-ret));
		_exit(127);
	}
	say("monitor on, synchronous signal %d, UCX hooks %s", signo,
	    ucx_hooks_kept ? "kept (UCX's too)" : "off");
}

__attribute__((destructor)) static void regwatch_ucm_fini(void)
{
	if (!verbose || !rw)
		return;
	fprintf(stderr, "regwatch_ucm[%d]: %lu signals, %lu events forwarded (%lu synchronous), %lu resyncs, %lu async wakeups\n",
		(int)getpid(), atomic_load(&n_signals), atomic_load(&n_events),
		atomic_load(&n_sync), atomic_load(&n_resyncs),
		atomic_load(&n_async_wakeups));
}
