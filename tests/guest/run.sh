#!/usr/bin/env bash
# In-guest test runner: runs inside the QEMU guest, as root, with
# regwatch.ko loaded (tests/vm/run-guest.sh boots it).
#
# 1. Runs every build/tests/guest/test_* binary with a timeout and counts
#    its cmocka test cases (a crash or timeout counts as a failure).
#    test_ucx_rcache is also run under ASan/UBSan and valgrind.
# 2. "Bite" checks: reruns a binary with a test-only module parameter that
#    breaks the module on purpose, and checks that exactly the expected
#    test cases fail. Each check counts as one passed or failed check.
# 3. Benchmark smoke: every guest benchmark at tiny sizes (one check).
# 4. The MPI checks of tests/mpi/run.sh (Open MPI over UCX on rxe, with
#    UCX's hooks, with regwatch, and the expected failure).
# 5. Reloads the module (test_lifecycle --reload).
# 6. Prints one line "N passed, N failed"; exits non-zero if any failed.
#
# Environment: GUEST_TEST_TIMEOUT (seconds per binary run, default 300),
# GUEST_TESTS (space-separated binary names to run in step 1, default all),
# GUEST_BENCH_SMOKE (step 3: 1 or 0; default 1 unless GUEST_TESTS is set),
# GUEST_MPI (step 4: 1 or 0; default 1 unless GUEST_TESTS is set).
# GUEST_BITES=0 (skip step 2: a second pass that has run them once already),
# GUEST_FUZZ_CALLS (calls of the fuzzer smoke after step 1; default 10000
# with the full suite, 0 (skipped) with GUEST_TESTS).
# GUEST_DEADLINE (guest uptime in seconds after which no further binary,
# fuzzer or bite run starts: make check-debug within CI's time budget).
# Each run left out is named and counted as skipped, never as passed.
set -u

cd "$(dirname "$0")/../.." || exit 2
BIN=build/tests/guest
PARAMS=/sys/module/regwatch/parameters
TIMEOUT=${GUEST_TEST_TIMEOUT:-300}
LOGS=$(mktemp -d /tmp/guest-tests.XXXXXX)

# Bite checks, one per line: binary:param=value[,param=value...]:expected[:args]
# "expected" is a space-separated list of globs over the binary's test
# case names: exactly the matching cases must fail and all others pass.
# "any" means the binary must fail (any case, a crash or a timeout).
# Settings that start with @ are environment variables of the run
# (@NAME=value[,NAME=value...]) instead of module parameters; args are
# passed to the binary.
# test_events names its cases after the class their source produces.
# RELEASE cannot be told apart from the UNMAP that follows it at exit
# through the ABI, so it is checked as a pair: with UNMAP ignored
# exit_release still passes (RELEASE alone reported the exit), with both
# ignored it fails.
# shellcheck disable=SC2016 # $PWD is expanded by set_run_env
BITE_CHECKS='
test_events:test_ignore_classes=1:unmap_*
test_events:test_ignore_classes=2:clear_*
test_events:test_ignore_classes=8:prot_*
test_events:test_ignore_classes=16:softdirty_*
test_events:test_ignore_classes=5:unmap_* exit_*
test_race:test_skip_watch_sync=Y:test_watch_then_register_race
test_stress:test_ignore_classes=2:test_stress_oracle
test_signal:test_no_signal=Y:sync_*
test_cache_rxe:test_ignore_classes=1:test_classic_* test_inflight_* test_malloc_free_* test_realloc_* test_random_*
test_ucx_rcache:test_ignore_classes=1:test_hooks_off_sync_event test_rcache_*
test_libfabric:@REGWATCH_FI_BITE=1:test_stale_* test_notify_*
test_libfabric:@REGWATCH_FI_BITE=1,LD_PRELOAD=$PWD/build/libregwatch_fi.so:test_stale_* test_notify_*:--preloaded
test_libfabric:@REGWATCH_FI_NO_NOTIFY=1:test_notify_*
'

# More runs of a binary, counted like step 1: binary:@NAME=value,...:args
# shellcheck disable=SC2016
VARIANT_RUNS='
test_libfabric:@LD_PRELOAD=$PWD/build/libregwatch_fi.so,REGWATCH_FI_VERBOSE=1:--preloaded
'

passed=0
failed=0

skipped=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

# past_deadline WHAT: true (and WHAT counted as skipped) once the guest's
# uptime has reached GUEST_DEADLINE.
past_deadline() {
	[ -n "${GUEST_DEADLINE:-}" ] || return 1
	[ "$(cut -d. -f1 /proc/uptime)" -ge "$GUEST_DEADLINE" ] || return 1
	skipped=$((skipped + 1))
	echo "== $1: SKIPPED, past the time budget (no run starts after ${GUEST_DEADLINE}s of uptime)"
}

# run_binary NAME LOG [ARGS...]: run one test binary, its output into LOG,
# then show it. stdbuf keeps stdout and stderr (cmocka's messages) in
# order. RUN_ENV (NAME=value words) is added to its environment.
RUN_ENV=()
run_secs=0
run_binary() {
	local name=$1 log=$2 t0=$SECONDS
	shift 2
	timeout -k 10 "$TIMEOUT" env ${RUN_ENV[@]+"${RUN_ENV[@]}"} \
		stdbuf -oL -eL "$BIN/$name" "$@" >"$log" 2>&1
	local rc=$?
	run_secs=$((SECONDS - t0))
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
[ -w "$PARAMS/test_no_signal" ] && echo N >"$PARAMS/test_no_signal"

if [ -n "${GUEST_TESTS:-}" ]; then
	binaries=$GUEST_TESTS
else
	binaries=$(cd "$BIN" 2>/dev/null && ls test_* 2>/dev/null)
fi
[ -n "$binaries" ] || fail "no test binaries in $BIN (make guest-tests)"

# count_run NAME LOG RC: add a run's cmocka counts to the totals.
count_run() {
	local name=$1 log=$2 rc=$3 p f
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
	echo "== $name: $p passed, $f failed (${run_secs}s)"
	passed=$((passed + p))
	failed=$((failed + f))
}

# set_run_env "@A=1,B=2": RUN_ENV=(A=1 B=2), with $PWD expanded. (The
# guest has no /dev/fd: no process substitution.)
set_run_env() {
	local kvs kv
	IFS=, read -ra kvs <<<"${1#@}"
	RUN_ENV=()
	for kv in "${kvs[@]}"; do
		RUN_ENV+=("${kv//\$PWD/$PWD}")
	done
}

for name in $binaries; do
	log=$LOGS/$name.log
	past_deadline "$name" && continue
	echo "== $name"
	if [ ! -x "$BIN/$name" ]; then
		fail "$name: no such binary"
		continue
	fi
	run_binary "$name" "$log"
	count_run "$name" "$log" $?
done

while IFS=: read -r name settings args; do
	[ -n "$name" ] || continue
	case " $binaries " in *" $name "*) ;; *) continue ;; esac
	set_run_env "$settings"
	past_deadline "$name ${RUN_ENV[*]} $args" && { RUN_ENV=(); continue; }
	echo "== $name ${RUN_ENV[*]} $args"
	# shellcheck disable=SC2086 # args are words
	run_binary "$name" "$LOGS/$name.variant.log" $args
	count_run "$name (${RUN_ENV[*]} $args)" "$LOGS/$name.variant.log" $?
	RUN_ENV=()
done <<<"$VARIANT_RUNS"
# ---- 1b. the UCX bridge under ASan/UBSan and valgrind ------------------

# test_ucx_rcache again: with the bridge and the test built with ASan/UBSan
# (scripts/check.sh builds them into build/asan), and under valgrind with
# UCX's hooks off from the start (valgrind cannot follow the bridge's
# restart through /proc/self/exe; it also defers signals, so the test
# skips its synchronous-delivery case there).
if [[ " $binaries " == *" test_ucx_rcache "* ]] &&
   ! past_deadline "test_ucx_rcache under ASan/UBSan and valgrind"; then
	if [ -x build/asan/tests/guest/test_ucx_rcache ] &&
	   [ -f build/asan/libregwatch_ucm.so ]; then
		echo "== test_ucx_rcache under ASan/UBSan"
		LD_PRELOAD=$(readlink -f "$(gcc -print-file-name=libasan.so)") \
		REGWATCH_UCM_LIB=$PWD/build/asan/libregwatch_ucm.so \
		UCX_RCACHE_TEST_ITERS=300 timeout -k 10 "$TIMEOUT" \
			build/asan/tests/guest/test_ucx_rcache >"$LOGS/ucx-asan.log" 2>&1
		rc=$?
		if [ $rc = 0 ] && grep -q '^\[  PASSED  \] 5 test(s)\.$' "$LOGS/ucx-asan.log"; then
			pass "UCX bridge and test_ucx_rcache clean under ASan/UBSan"
		else
			cat "$LOGS/ucx-asan.log"
			fail "UCX bridge under ASan/UBSan (rc $rc)"
		fi
	else
		echo "== test_ucx_rcache under ASan/UBSan: build/asan not built (scripts/check.sh builds it), skipped"
	fi
	if command -v valgrind >/dev/null; then
		echo "== test_ucx_rcache under valgrind"
		UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_MALLOC_HOOKS=no \
		LD_PRELOAD=$PWD/build/libregwatch_ucm.so UCX_RCACHE_TEST_ITERS=20 \
		timeout -k 10 "$TIMEOUT" valgrind -q --trace-children=yes \
			--error-exitcode=99 --leak-check=full \
			--suppressions=userlib/ucx/regwatch_ucm.supp \
			"$BIN/test_ucx_rcache" >"$LOGS/ucx-vg.log" 2>&1
		rc=$?
		if [ $rc = 0 ] && grep -q '^\[  PASSED  \] 4 test(s)\.$' "$LOGS/ucx-vg.log"; then
			pass "UCX bridge and test_ucx_rcache clean under valgrind"
		else
			cat "$LOGS/ucx-vg.log"
			fail "UCX bridge under valgrind (rc $rc)"
		fi
	fi
fi

# A short fuzzer run (tests/fuzz/, docs/hardening.md): random ioctls and mm
# churn with the oracle "every invalidated watch reported, no other" and
# the module counters back at the end. By default with the full suite only.
FUZZ=build/tests/fuzz/fuzz_regwatch
fuzz_calls=${GUEST_FUZZ_CALLS:-$([ -z "${GUEST_TESTS:-}" ] && echo 10000 || echo 0)}
if [ "$fuzz_calls" != 0 ] && ! past_deadline "fuzzer smoke"; then
	echo "== fuzzer smoke ($fuzz_calls calls)"
	if [ ! -x "$FUZZ" ]; then
		fail "fuzzer smoke: $FUZZ not built (make fuzz-bins)"
	elif timeout -k 10 "$TIMEOUT" "$FUZZ" --iterations "$fuzz_calls" \
		--threads 4 --check-module >"$LOGS/fuzz.log" 2>&1; then
		grep -E '^fuzz_regwatch: (seed [0-9]+,|calls|findings)' "$LOGS/fuzz.log"
		pass "fuzzer smoke: no finding, module counters back"
	else
		grep -vE '^fuzz_regwatch: (log|noise)' "$LOGS/fuzz.log" | tail -n 40
		fail "fuzzer smoke (replay with the seed above)"
	fi
fi

# ---- 2. bite checks ---------------------------------------------------

# bite_check BINARY SETTINGS EXPECTED [ARGS]
bite_check() {
	local name=$1 settings=$2 expected=$3 args=${4:-} what="$1 with $2${4:+ $4}"
	local log=$LOGS/$name.bite.log base=$LOGS/$name.log rc c g
	local want_fail unexpected_fail="" unexpected_pass="" matched=0

	if [ ! -x "$BIN/$name" ]; then
		echo "bite: $name not built, skipped"
		return
	fi
	echo "== bite: $what (expect failing: $expected)"
	if [ "${settings#@}" != "$settings" ]; then
		set_run_env "$settings"
	elif ! set_params "$settings"; then
		restore_params
		fail "bite: $what: cannot set the parameters"
		return
	fi
	# These runs are meant to fail: their output is shown only when the
	# check does not come out as expected.
	# shellcheck disable=SC2086 # args are words
	run_binary "$name" "$log" $args >"$log.shown"
	rc=$?
	RUN_ENV=()
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
	while IFS=: read -r name settings expected args; do
		[ -n "$name" ] || continue
		past_deadline "bite: $name with $settings" && continue
		bite_check "$name" "$settings" "$expected" "$args"
	done <<<"$BITE_CHECKS"
fi

# ---- 3. benchmark smoke ------------------------------------------------

# Every guest benchmark at tiny sizes (bench/guest-run.sh --quick), so that
# none can rot; one check, which fails only if a benchmark fails to run,
# never on a figure. Its CSVs go to /results/bench-smoke (the host's
# run-guest.sh --results directory: scripts/check.sh plots them).
# GUEST_BENCH_SMOKE=1/0 forces it on/off; by default it runs with the full
# suite, not with a GUEST_TESTS subset.
if [ "${GUEST_BENCH_SMOKE:-$([ -z "${GUEST_TESTS:-}" ] && echo 1 || echo 0)}" = 1 ]; then
	echo "== benchmark smoke (bench/guest-run.sh --quick)"
	if [ ! -x build/bench/guest/reg_rxe ]; then
		fail "benchmark smoke: guest benchmarks not built (make bench-build)"
	elif bench/guest-run.sh --quick --out /results/bench-smoke >"$LOGS/bench.log" 2>&1; then
		grep '^bench-guest:' "$LOGS/bench.log"
		pass "benchmark smoke: every guest benchmark ran"
	else
		cat "$LOGS/bench.log"
		fail "benchmark smoke: a guest benchmark failed to run"
	fi
fi

# ---- 4. MPI over UCX ---------------------------------------------------

if [ "${GUEST_MPI:-$([ -n "${GUEST_TESTS:-}" ] && echo 0 || echo 1)}" = 1 ]; then
	tests/mpi/run.sh 2>&1 | tee "$LOGS/mpi.log"
	line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed$' "$LOGS/mpi.log" | tail -n 1)
	if [ -n "$line" ]; then
		passed=$((passed + ${line%% passed*}))
		f=${line#*passed, }
		failed=$((failed + ${f%% failed}))
	else
		fail "tests/mpi/run.sh gave no summary"
	fi
fi

# ---- 5. unload and reload ----------------------------------------------

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

[ "$skipped" = 0 ] || echo "$skipped runs SKIPPED for the time budget (GUEST_DEADLINE)"
echo "$passed passed, $failed failed"
rm -rf "$LOGS"
[ "$failed" -eq 0 ]
