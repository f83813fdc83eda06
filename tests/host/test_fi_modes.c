// SPDX-License-Identifier: MIT
/*
 * Host test of the libfabric monitor's TEST ONLY modes (REGWATCH_FI_TEST_*,
 * what REGWATCH_FI_BITE=1 and REGWATCH_FI_NO_NOTIFY=1 select in the guest
 * test), over the fakes of fi_fakes.h. A monitor is imported once per
 * process, so each mode runs in a child of its own; the child reports
 * its first failed check on stderr and through its exit status.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fi_fakes.h"

#define CHECK(c)							\
	do {								\
		if (!(c)) {						\
			fprintf(stderr, "%s:%d: check failed: %s\n",	\
				__FILE__, __LINE__, #c);		\
			return 1;					\
		}							\
	} while (0)

/* Run fn in a child; exit() (not _exit) so that gcov's counts are kept. */
static void in_child(int (*fn)(void))
{
	int status;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		exit(fn());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/*
 * Blind: valid() always says true and fired subscriptions are dropped
 * without notify(): a stand-in for "no working monitor" that tests must
 * catch. The ring size option reaches regwatch_open().
 */
static int blind(void)
{
	struct regwatch_fi_options o = { .flags = REGWATCH_FI_TEST_BLIND,
					 .ring_entries = 512 };
	const uintptr_t a = 0x100000;

	L.op_thread = pthread_self();
	CHECK(regwatch_fi_import(&o) == 0);
	CHECK(R.opts.ring_entries == 512);
	CHECK(fl_start() == 0);
	CHECK(fl_subscribe(a, 0x1000) == 0);
	CHECK(fake_fire(a, 0x1000));
	CHECK(fl_valid(a, 0x1000));
	CHECK(fl_wait_live(0));			/* dropped by the thread */
	CHECK(R.live == 0);
	CHECK(fl_valid(a, 0x1000));		/* still "valid" */
	fl_stop();
	CHECK(fl_notifies() == 0);
	CHECK(fl_stats().events == 1);
	return 0;
}

/*
 * No notify: start() runs no thread, fired subscriptions are neither
 * queued nor dropped; valid() alone says "stale" until libfabric
 * unsubscribes.
 */
static int no_notify(void)
{
	struct regwatch_fi_options o = { .flags = REGWATCH_FI_TEST_NO_NOTIFY };
	const uintptr_t a = 0x100000, b = 0x200000;

	L.op_thread = pthread_self();
	CHECK(regwatch_fi_import(&o) == 0);
	CHECK(fl_start() == 0);
	CHECK(!fake_fi_mon()->running);
	CHECK(fl_stats().starts == 1);
	CHECK(fl_subscribe(a, 0x1000) == 0);
	CHECK(fake_fire(a, 0x1000));
	CHECK(fl_subscribe(b, 0x1000) == 0);	/* drains a's event */
	CHECK(regwatch_pending(&R.rw) == 0);
	CHECK(fake_fi_mon()->npending == 0);
	CHECK(fl_stats().live == 2);
	CHECK(!fl_valid(a, 0x1000));
	fl_unsubscribe(a, 0x1000);
	fl_unsubscribe(b, 0x1000);
	CHECK(fl_stats().live == 0);
	fl_stop();
	CHECK(fl_notifies() == 0);
	return 0;
}

static void test_blind(void **state)
{
	(void)state;
	in_child(blind);
}

static void test_no_notify(void **state)
{
	(void)state;
	in_child(no_notify);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blind),
		cmocka_unit_test(test_no_notify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
