#!/usr/bin/env bash
# In-guest test runner: runs inside the QEMU guest, as root, with
# regwatch.ko loaded (tests/vm/run-guest.sh boots it).
#
# 1. Runs every build/tests/guest/test_* binary with a timeout and counts
#    its cmocka test cases (a crash or timeout counts as a failure).
# 2. "Bite" checks: reruns a binary with a test-only module parameter that
#    breaks the module on purpose, and checks that exactly the expected
#    test cases fail. Each check counts as one passed or failed check.
# 3. Prints one line "N passed, N failed"; exits non-zero if any failed.
#
# Environment: GUEST_TEST_TIMEOUT (seconds per binary run, default 300),
# GUEST_TESTS (space-separated binary names to run in step 1, default all),
# GUEST_BITES=0 (skip step 2: a second pass that has run them once already),
# GUEST_FUZZ_CALLS (calls of the fuzzer smoke after step 1, default 10000;
# 0 skips it).
set -u

cd "$(dirname "$0")/../.." || exit 2
BIN=build/tests/guest
PARAMS=/sys/module/regwatch/parameters
TIMEOUT=${GUEST_TEST_TIMEOUT:-300}
LOGS=$(mktemp -d /tmp/guest-tests.XXXXXX)

# Bite checks, one per line: binary:param=value[,param=value...]:expected
# "expected" is a space-separated list of globs over the binary's test
# case names: exactly the matching cases must fail and all others pass.
# "any" means the binary must fail (any case, a crash or a timeout).
# test_events names its cases after the class their source produces.
# RELEASE cannot be told apart from the UNMAP that follows it at exit
# through the ABI, so it is checked as a pair: with UNMAP ignored
# exit_release still passes (RELEASE alone reported the exit), with both
# ignored it fails.
BITE_CHECKS='
test_events:test_ignore_classes=1:unmap_*
test_events:test_ignore_classes=2:clear_*
test_events:test_ignore_classes=8:prot_*
test_events:test_ignore_classes=16:softdirty_*
test_events:test_ignore_classes=5:unmap_* exit_*
test_race:test_skip_watch_sync=Y:test_watch_then_register_race
test_cache_rxe:test_ignore_classes=1:test_classic_* test_inflight_* test_malloc_free_* test_realloc_* test_random_*
'

passed=0
failed=0

pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

# run_binary NAME LOG: run one test binary, its output into LOG, then show it.
# stdbuf keeps stdout and stderr (cmocka's messages) in order.
run_binary() {
	local name=$1 log=$2
	shift 2
	timeout -k 10 "$TIMEOUT" stdbuf -oL -eL "$BIN/$name" "$@" >"$log" 2>&1
	local rc=$?
	cat "$log"
	case $rc in
	0) ;;
	124|137) echo "== $name: timed out after ${TIMEOUT}s" ;;
	*) [ $rc -gt 128 ] && echo "== $name: killed by signal $((rc - 128))" ;;
	esac
	return $rc
}

# Case names in a cmocka log: ran (RUN), passed (OK).
cases_run() { sed -n 's/^\[ RUN      \] //p' "$1" | sort -u; }
cases_ok() { sed -n 's/^\[       OK \] //p' "$1" | sort -u; }

# Put module parameters back as they were, on any exit.
declare -A saved_params=()
restore_params() {
	local p
	for p in "${!saved_params[@]}"; do
		echo "${saved_params[$p]}" >"$PARAMS/$p" 2>/dev/null ||
			echo "warning: could not restore $p"
	done
	saved_params=()
}
trap restore_params EXIT

# set_params "p=v,p=v": save the old values, write the new ones.
set_params() {
	local kv p v
	local -a kvs
	IFS=, read -ra kvs <<<"$1"
	for kv in "${kvs[@]}"; do
		p=${kv%%=*} v=${kv#*=}
		if [ ! -w "$PARAMS/$p" ]; then
			echo "no writable module parameter $p"
			return 1
		fi
		[ -n "${saved_params[$p]+x}" ] || saved_params[$p]=$(cat "$PARAMS/$p")
		echo "$v" >"$PARAMS/$p" || return 1
	done
}

# ---- 1. every test binary --------------------------------------------

if [ ! -d /sys/module/regwatch ]; then
	fail "regwatch module is not loaded"
fi
# Start from a module that behaves.
[ -w "$PARAMS/test_ignore_classes" ] && echo 0 >"$PARAMS/test_ignore_classes"
[ -w "$PARAMS/test_skip_watch_sync" ] && echo N >"$PARAMS/test_skip_watch_sync"

if [ -n "${GUEST_TESTS:-}" ]; then
	binaries=$GUEST_TESTS
else
	binaries=$(cd "$BIN" 2>/dev/null && ls test_* 2>/dev/null)
fi
[ -n "$binaries" ] || fail "no test binaries in $BIN (make guest-tests)"

for name in $binaries; do
	log=$LOGS/$name.log
	echo "== $name"
	if [ ! -x "$BIN/$name" ]; then
		fail "$name: no such binary"
		continue
	fi
	run_binary "$name" "$log"
	rc=$?
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\.$/\1/p' "$log")
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:$/\1/p' "$log")
	if [ -z "$p" ]; then
		# No summary: it crashed or hung. What passed before counts.
		p=$(cases_ok "$log" | wc -l)
		f=$((${f:-0} + 1))
	fi
	f=${f:-0}
	# A non-zero exit with no failed case (group setup failed...) fails.
	[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	echo "== $name: $p passed, $f failed"
	passed=$((passed + p))
	failed=$((failed + f))
done

# A short fuzzer run (tests/fuzz/, docs/hardening.md): random ioctls and mm
# churn with the oracle "every invalidated watch reported, no other" and
# the module counters back at the end. With the full suite only.
FUZZ=build/tests/fuzz/fuzz_regwatch
if [ -z "${GUEST_TESTS:-}" ] && [ "${GUEST_FUZZ_CALLS:-10000}" != 0 ]; then
	echo "== fuzzer smoke (${GUEST_FUZZ_CALLS:-10000} calls)"
	if [ ! -x "$FUZZ" ]; then
		fail "fuzzer smoke: $FUZZ not built (make fuzz-bins)"
	elif timeout -k 10 "$TIMEOUT" "$FUZZ" --iterations "${GUEST_FUZZ_CALLS:-10000}" \
		--threads 4 --check-module >"$LOGS/fuzz.log" 2>&1; then
		grep -E '^fuzz_regwatch: (seed [0-9]+,|calls|findings)' "$LOGS/fuzz.log"
		pass "fuzzer smoke: no finding, module counters back"
	else
		grep -vE '^fuzz_regwatch: (log|noise)' "$LOGS/fuzz.log" | tail -n 40
		fail "fuzzer smoke (replay with the seed above)"
	fi
fi

# ---- 2. bite checks ---------------------------------------------------

# bite_check BINARY SETTINGS EXPECTED
bite_check() {
	local name=$1 settings=$2 expected=$3 what="$1 with $2"
	local log=$LOGS/$name.bite.log base=$LOGS/$name.log rc c g
	local want_fail unexpected_fail="" unexpected_pass="" matched=0

	if [ ! -x "$BIN/$name" ]; then
		echo "bite: $name not built, skipped"
		return
	fi
	echo "== bite: $what (expect failing: $expected)"
	if ! set_params "$settings"; then
		restore_params
		fail "bite: $what: cannot set the parameters"
		return
	fi
	# These runs are meant to fail: their output is shown only when the
	# check does not come out as expected.
	run_binary "$name" "$log" >"$log.shown"
	rc=$?
	restore_params

	if [ "$expected" = any ]; then
		if [ "$rc" -ne 0 ]; then
			pass "bite: $what: fails as it must"
		else
			cat "$log.shown"
			fail "bite: $what: still passes, the test does not bite"
		fi
		return
	fi

	# Cases: those the normal run and this run started (a crash may
	# stop this run early; the cases it never ran count as failed).
	for c in $( (cases_run "$log"; [ -f "$base" ] && cases_run "$base") | sort -u); do
		want_fail=0
		set -f
		for g in $expected; do
			# shellcheck disable=SC2254
			case $c in $g) want_fail=1 ;; esac
		done
		set +f
		matched=$((matched + want_fail))
		if cases_ok "$log" | grep -qxF "$c"; then
			[ $want_fail -eq 1 ] && unexpected_pass="$unexpected_pass $c"
		else
			[ $want_fail -eq 0 ] && unexpected_fail="$unexpected_fail $c"
		fi
	done
	if [ $matched -eq 0 ]; then
		cat "$log.shown"
		fail "bite: $what: no test case matches '$expected'"
	elif [ -z "$unexpected_fail$unexpected_pass" ]; then
		pass "bite: $what: exactly the $matched '$expected' cases fail"
	else
		cat "$log.shown"
		fail "bite: $what: still passing:${unexpected_pass:- none};" \
		     "failing but should pass:${unexpected_fail:- none}"
	fi
}

if [ "${GUEST_BITES:-1}" = 0 ]; then
	echo "== bite checks skipped (GUEST_BITES=0)"
else
	while IFS=: read -r name settings expected; do
		[ -n "$name" ] || continue
		bite_check "$name" "$settings" "$expected"
	done <<<"$BITE_CHECKS"
fi

# ---- 3. unload and reload ----------------------------------------------

# Last, as it replaces the module: rmmod is refused while a monitor is
# open, succeeds once none is, and the module comes back with the same
# parameters.
echo "== test_lifecycle --reload"
run_binary test_lifecycle "$LOGS/reload.log" --reload
p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\.$/\1/p' "$LOGS/reload.log")
if [ "${p:-0}" -ge 1 ] && ! grep -q '^\[  FAILED  \]' "$LOGS/reload.log"; then
	pass "module unload refused while open, reload with the same parameters"
else
	fail "module unload/reload (test_lifecycle --reload)"
fi

echo "$passed passed, $failed failed"
rm -rf "$LOGS"
[ "$failed" -eq 0 ]
