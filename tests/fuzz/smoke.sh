#!/bin/bash
# fuzz-smoke: the hardening tools in one short guest boot, for make check
# (< 3 minutes under TCG). Runs inside the test guest.
#   1. the fuzzer, SMOKE_ITERATIONS calls (default 20000), 4 threads,
#      module counters checked at the end
#   2. the soak for SMOKE_SOAK_SECONDS (default 30), with its rmmod
#   3. the OOM test (the reaper runs; debugfs "nonblock" grows)
# Prints "fuzz-smoke: N passed, N failed" last.
set -u
cd "$(dirname "$0")/../.." || exit 2
passed=0 failed=0
check() {
	if [ "$2" = 0 ]; then
		passed=$((passed + 1)); echo "fuzz-smoke: PASS $1"
	else
		failed=$((failed + 1)); echo "fuzz-smoke: FAIL $1"
	fi
}

t0=$(date +%s)
build/tests/fuzz/fuzz_regwatch --iterations "${SMOKE_ITERATIONS:-20000}" \
	--threads 4 --check-module
rc=$?
check "fuzzer ($(( $(date +%s) - t0 )) s)" $rc

t0=$(date +%s)
SOAK_STRESS_OPS=150 tests/fuzz/soak.sh --seconds "${SMOKE_SOAK_SECONDS:-30}"
rc=$?
check "soak ($(( $(date +%s) - t0 )) s)" $rc

t0=$(date +%s)
build/tests/fuzz/oom_test
check "OOM test ($(( $(date +%s) - t0 )) s)" $?
echo "fuzz-smoke: $passed passed, $failed failed"
[ $failed = 0 ]
