// SPDX-License-Identifier: MIT
/*
 * libregwatch_fi.so: LD_PRELOAD it and an unmodified libfabric program
 * uses regwatch as its MR cache monitor. The constructor runs before
 * main(), so before the program can open a domain (libfabric refuses to
 * replace a monitor a cache already uses).
 *
 * Environment:
 *   REGWATCH_FI_VERBOSE=1  print the import result and, at exit, the
 *                          monitor's counters on stderr
 *   REGWATCH_FI_BITE=1     TEST ONLY: import a blind monitor (valid()
 *                          always true, no notify), to prove that tests
 *                          catch stale registrations
 *   REGWATCH_FI_NO_NOTIFY=1 TEST ONLY: no delivery thread, valid() alone
 * When /dev/regwatch is missing the import is skipped with a message and
 * libfabric keeps its own monitor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <regwatch_libfabric.h>

static int verbose, imported;

static int env_on(const char *name)
{
	const char *v = getenv(name);

	return v && *v && strcmp(v, "0") != 0;
}

__attribute__((constructor)) static void regwatch_fi_preload(void)
{
	struct regwatch_fi_options o = { 0 };
	int rc;

	verbose = env_on("REGWATCH_FI_VERBOSE");
	if (env_on("REGWATCH_FI_BITE"))
		o.flags |= REGWATCH_FI_TEST_BLIND;
	if (env_on("REGWATCH_FI_NO_NOTIFY"))
		o.flags |= REGWATCH_FI_TEST_NO_NOTIFY;
	rc = regwatch_fi_import(&o);
	if (rc)
		fprintf(stderr, "regwatch_fi: not imported (%s); libfabric "
			"keeps its own monitor\n", strerror(-rc));
	imported = !rc;
	if (!rc && verbose)
		fprintf(stderr, "regwatch_fi: imported%s%s\n",
			(o.flags & REGWATCH_FI_TEST_BLIND) ?
			" (TEST ONLY: blind, never invalidates)" : "",
			(o.flags & REGWATCH_FI_TEST_NO_NOTIFY) ?
			" (TEST ONLY: no notify, valid() alone)" : "");
}

__attribute__((destructor)) static void regwatch_fi_report(void)
{
	struct regwatch_fi_stats s;

	if (!verbose || !imported || regwatch_fi_stats(&s))
		return;
	fprintf(stderr, "regwatch_fi: starts %llu subscribes %llu (refused %llu) "
		"unsubscribes %llu valid %llu (stale %llu) events %llu "
		"notifies %llu live %llu\n",
		(unsigned long long)s.starts, (unsigned long long)s.subscribes,
		(unsigned long long)s.subscribe_errors,
		(unsigned long long)s.unsubscribes,
		(unsigned long long)s.valid_calls,
		(unsigned long long)s.valid_false,
		(unsigned long long)s.events, (unsigned long long)s.notifies,
		(unsigned long long)s.live);
}
