#!/usr/bin/env bash
# make check: build everything, run the host tests (plain, then under
# ASan/UBSan and valgrind), check the kernel style, then run the guest suite
# in QEMU. Ends with one line "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
passed=0
failed=0
log=build/check
mkdir -p "$log"

# record NAME OK?: one pass/fail line per check that is not a cmocka case.
record() {
	if [ "$2" = 0 ]; then
		passed=$((passed + 1)); echo "check: PASS $1"
	else
		failed=$((failed + 1)); echo "check: FAIL $1"
	fi
}

# add_cmocka FILE: add the cmocka cases counted in a log.
add_cmocka() {
	read -r p f < <(scripts/cmocka-count.sh < "$1")
	passed=$((passed + p)); failed=$((failed + f))
}

echo "== build"
make -s all bench-build; record "build (module, library, tests, benchmarks)" $?

echo "== host tests"
for t in build/tests/host/test_*; do
	[ -x "$t" ] || continue
	"$t" > "$log/$(basename "$t").log" 2>&1; rc=$?
	cat "$log/$(basename "$t").log"
	add_cmocka "$log/$(basename "$t").log"
	[ $rc = 0 ] || grep -q 'FAILED' "$log/$(basename "$t").log" || record "$t exit status" $rc
done

echo "== host tests under ASan/UBSan"
san='-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all'
# (and the UCX bridge with its guest test, run under ASan by tests/guest/run.sh)
make -s BUILD=build/asan CFLAGS="$san" LDLIBS="-pthread -fsanitize=address,undefined" host-tests \
	build/asan/libregwatch_ucm.so build/asan/tests/guest/test_ucx_rcache
rc=$?
for t in build/asan/tests/host/test_*; do
	[ -x "$t" ] || continue
	# Show the log of every binary that fails, not just the last one.
	"$t" > "$log/asan.log" 2>&1 || { rc=1; echo "== $t"; cat "$log/asan.log"; }
done
record "host tests clean under ASan/UBSan" $rc

echo "== host tests under valgrind"
rc=0
for t in build/tests/host/test_*; do
	[ -x "$t" ] || continue
	valgrind -q --error-exitcode=99 --leak-check=full "$t" > "$log/vg.log" 2>&1
	[ $? = 99 ] && { rc=1; cat "$log/vg.log"; }
done
record "host tests clean under valgrind" $rc

echo "== line coverage of userlib/ by the host tests (gcov)"
scripts/host-coverage.sh || record "host tests under coverage" 1

echo "== checkpatch (kernel/, include/uapi/)"
scripts/checkpatch.sh > "$log/checkpatch.log" 2>&1; rc=$?
cat "$log/checkpatch.log"
record "checkpatch: no errors" $rc

echo "== guest tests (QEMU, Debian kernel, soft-RoCE)"
# A scratch disk for the mirror tests' ext4 cases (formatted in the guest).
rm -f build/vm/scratch.img && mkdir -p build/vm && truncate -s 64M build/vm/scratch.img
# The guest suite's benchmark smoke writes its CSVs under --results.
rm -rf "$log/results" && mkdir -p "$log/results"
tests/vm/run-guest.sh --timeout "${REGWATCH_GUEST_TIMEOUT:-1500}" \
	--disk build/vm/scratch.img --results "$log/results" -- \
	tests/guest/run.sh 2>&1 | tee "$log/guest.log"
rc=${PIPESTATUS[0]}
line=$(grep -aE '^(guest: )?[0-9]+ passed, [0-9]+ failed' "$log/guest.log" | tail -n 1)
if [ -n "$line" ]; then
	gp=$(echo "$line" | sed -E 's/^(guest: )?([0-9]+) passed.*/\2/')
	gf=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
	passed=$((passed + gp)); failed=$((failed + gf))
	[ $rc = 0 ] || [ "$gf" != 0 ] || record "guest run (kernel log, timeout)" $rc
else
	record "guest suite produced a summary" 1
fi

echo "== benchmark smoke (host benchmarks, plots of host and guest CSVs)"
# Tiny sizes; fails only if a benchmark or a plot cannot be made, never
# on a figure. The guest benchmarks ran in the guest suite above.
smoke=$log/results/bench-smoke
mkdir -p "$smoke"
rc=0
# One per bench/*.c (a stale binary of a removed benchmark is not run).
for src in bench/*.c; do
	b=build/bench/$(basename "$src" .c)
	"$b" --quick --out "$smoke" >"$log/bench-$(basename "$b").log" 2>&1 ||
		{ rc=1; cat "$log/bench-$(basename "$b").log"; }
done
bench/plot.sh "$smoke" >"$log/bench-plot.log" 2>&1 || { rc=1; cat "$log/bench-plot.log"; }
record "benchmark smoke: host benchmarks ran, plots of every benchmark made" $rc

echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
