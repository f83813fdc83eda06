#!/usr/bin/env bash
# make check-debug: build the debug kernel (KASAN, lockdep, kmemleak, UBSAN,
# DEBUG_VM, fault injection) and regwatch.ko against it, then, each in its
# own boot of it in QEMU:
#   1. the guest suite (tests/vm/debug-suite.sh wraps tests/guest/run.sh
#      with the kmemleak / counter / unload checks);
#   2. fault injection over the module's allocations
#      (scripts/fault-inject.sh);
#   3. the proof that such a run fails on each kind of report
#      (scripts/check-debug-bite.sh, a module that makes one of each).
# Any KASAN, lockdep, UBSAN, KFENCE, kmemleak report or WARN in the guest
# kernel log fails the run (tests/vm/guest-init.sh). Ends with one line
# "N passed, N failed" over all three.
#
# Environment: REGWATCH_DEBUG_TIMEOUT (wall-clock seconds for the guest,
# default 5400), REGWATCH_DEBUG_TEST_TIMEOUT (seconds per test binary in
# the guest, default 1500), REGWATCH_DEBUG_GUEST_TESTS (test binaries to
# run, default all), REGWATCH_DEBUG_FUZZ_CALLS (fuzzer smoke calls; by
# default only with all tests), REGWATCH_DEBUG_BITES=0 (skip tests/guest/run.sh's
# bite reruns, which prove the tests, not the kernel: CI has run them in
# `make check` already), REGWATCH_DEBUG_SECONDS (wall-clock budget of the
# whole pass; see below).
#
# Time budget: CI gives the pass what `make check` left of its hour. What
# no longer fits is left out and named, never counted as passed: the whole
# pass when the kernel build and one boot do not fit; then, in this order,
# the bite module's boot, the fault-injection boot, and the suite's last
# test runs (the guest starts none after GUEST_DEADLINE). The estimates are
# about twice what this 2-core machine takes (docs/hardening.md).
set -u
cd "$(dirname "$0")/.."
passed=0
failed=0
log=build/check-debug
mkdir -p "$log"
t_all=$SECONDS
budget=${REGWATCH_DEBUG_SECONDS:-}
EST_BUILD=1000		# the kernel from scratch (here: 460 s)
EST_SUITE_MIN=600	# a boot, the first tests, the kmemleak scans
EST_SUITE_TAIL=420	# the longest test run plus the checks after the suite
EST_FAULT=450		# fault injection's boot (here: 220 s)
EST_BITES=250		# the bite module's boot (here: 90 s)
left() { echo $((budget - (SECONDS - t_all))); }

record() {
	if [ "$2" = 0 ]; then
		passed=$((passed + 1)); echo "check-debug: PASS $1"
	else
		failed=$((failed + 1)); echo "check-debug: FAIL $1"
	fi
}
summary() {
	echo "check-debug: total $((SECONDS - t_all))s"
	echo
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
	exit
}

if [ -n "$budget" ]; then
	need=$EST_SUITE_MIN
	[ -f build/debug/linux/arch/x86/boot/bzImage ] || need=$((need + EST_BUILD))
	if [ "$(left)" -lt "$need" ]; then
		echo "check-debug: SKIPPED the whole pass: $(left)s left of its budget, the kernel build and one boot need about ${need}s"
		summary
	fi
fi

echo "== build: debug kernel, regwatch.ko against it, guest tests"
t=$SECONDS
scripts/build-debug-kernel.sh 2>&1 | tee "$log/build.log"
rc=${PIPESTATUS[0]}
echo "check-debug: debug kernel + module: $((SECONDS - t))s"
record "build the debug kernel and the module against it" "$rc"
[ "$rc" = 0 ] || summary
make -s lib guest-tests fuzz-bins; rc=$?
record "build the guest tests" $rc
[ "$rc" = 0 ] || summary
eval "$(scripts/build-debug-kernel.sh --print-vars)"

echo "== guest tests on the debug kernel (QEMU TCG; boot and setup take 1-2 min, the suite 15-20)"
# test_cache_rxe's random differential test needs 100 verified transfers
# within its time budget: 45 s gave 57 on this kernel (KASAN and lockdep
# slow rxe's copies several times over), so it gets 180 s here.
envs=(--env "REGWATCH_KO=$KO"
      --env "GUEST_TEST_TIMEOUT=${REGWATCH_DEBUG_TEST_TIMEOUT:-1500}"
      --env "REGWATCH_CACHE_SECONDS=${REGWATCH_CACHE_SECONDS:-180}")
[ -n "${REGWATCH_DEBUG_GUEST_TESTS:-}" ] && envs+=(--env "GUEST_TESTS=$REGWATCH_DEBUG_GUEST_TESTS")
[ "${REGWATCH_DEBUG_BITES:-1}" = 0 ] && envs+=(--env GUEST_BITES=0)
[ -n "${REGWATCH_DEBUG_FUZZ_CALLS:-}" ] && envs+=(--env "GUEST_FUZZ_CALLS=$REGWATCH_DEBUG_FUZZ_CALLS")
guest_timeout=${REGWATCH_DEBUG_TIMEOUT:-5400}
if [ -n "$budget" ] && [ "$(left)" -lt "$EST_SUITE_MIN" ]; then
	# Too little for a boot and its checks: a timeout would fail the run.
	echo "check-debug: SKIPPED the guest suite, fault injection and the bite module: $(left)s left of the budget after the build, a boot needs about ${EST_SUITE_MIN}s"
	summary
fi
if [ -n "$budget" ]; then
	# The suite keeps what the other two boots need if it can.
	suite=$(($(left) - EST_FAULT - EST_BITES))
	[ "$suite" -ge $((EST_SUITE_MIN + EST_SUITE_TAIL)) ] || suite=$(left)
	[ "$suite" -lt "$guest_timeout" ] && guest_timeout=$suite
	envs+=(--env "GUEST_DEADLINE=$((guest_timeout - EST_SUITE_TAIL))")
	echo "check-debug: $(left)s left of the budget; the suite's boot gets ${guest_timeout}s, no test starts after $((guest_timeout - EST_SUITE_TAIL))s of uptime"
fi
t=$SECONDS
tests/vm/run-guest.sh --timeout "$guest_timeout" \
	--kernel "$KERNEL" --moddir "$MODDIR" --append "$APPEND" "${envs[@]}" -- \
	tests/vm/debug-suite.sh 2>&1 | tee "$log/guest.log"
rc=${PIPESTATUS[0]}
echo "check-debug: guest run: $((SECONDS - t))s"
cp build/vm/last-dmesg.log "$log/dmesg.log" 2>/dev/null
line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$log/guest.log" | tail -n 1)
if [ -n "$line" ]; then
	gp=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
	gf=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
	passed=$((passed + gp)); failed=$((failed + gf))
else
	record "guest suite on the debug kernel produced a summary" 1
fi
# The guest's own verdict on its kernel log (tests/vm/guest-init.sh):
# any KASAN, lockdep, UBSAN, KFENCE, kmemleak report, WARN or BUG.
kern=$(grep -a '^REGWATCH-GUEST-KERNEL=' "$log/guest.log" | tail -n 1 | cut -d= -f2)
[ "$kern" = ok ]
record "guest kernel log clean: no KASAN/lockdep/UBSAN/KFENCE/kmemleak report, WARN or BUG (kernel check: ${kern:-missing}; log in $log/dmesg.log)" $?
skips=$(grep -aE '^[0-9]+ runs SKIPPED for the time budget' "$log/guest.log" | tail -n 1)
[ -z "$skips" ] || echo "check-debug: suite: $skips"
case $rc in
124) record "guest run finished within ${guest_timeout}s" 1 ;;
125) record "guest booted and gave an exit status" 1 ;;
esac

# part NAME COMMAND...: run one more debug-kernel boot, add its
# "N passed, N failed" line (none, or a failing exit with no failed check,
# counts as one failure).
part() {
	local name=$1 est=$2 out rc line p f
	shift 2
	out=$log/$name.out
	if [ -n "$budget" ] && [ "$(left)" -lt "$est" ]; then
		echo "check-debug: SKIPPED $name: $(left)s left of the budget, it needs about ${est}s"
		return
	fi
	echo "== $name on the debug kernel"
	t=$SECONDS
	if [ -n "$budget" ]; then	# its boot may not outlive the budget
		REGWATCH_DEBUG_TIMEOUT=$(left) "$@" 2>&1 | tee "$out"
	else
		"$@" 2>&1 | tee "$out"
	fi
	rc=${PIPESTATUS[0]}
	echo "check-debug: $name: $((SECONDS - t))s"
	line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
	if [ -z "$line" ]; then
		record "$name printed a summary (exit $rc)" 1
		return
	fi
	p=${line%% passed*} f=${line##*passed, }
	f=${f%% failed}
	passed=$((passed + p)); failed=$((failed + f))
	[ "$f" != 0 ] || record "$name exit status" "$rc"
}
# The bite run must fail (kernel "bad"): its own script turns that into 0.
part fault-injection $EST_FAULT scripts/fault-inject.sh --host
part bites $EST_BITES scripts/check-debug-bite.sh
summary
