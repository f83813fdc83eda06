#!/usr/bin/env bash
# make check-debug-bite: prove that a debug-kernel run fails on each kind of
# report that `make check-debug` promises to catch. Boots the debug kernel
# once (tests/vm/run-guest.sh, as check-debug does) and loads a test-only
# module (tests/vm/debug-bite/) that makes one lockdep, WARN, UBSAN, KASAN
# and kmemleak report; the run must fail with the guest kernel check "bad",
# and the kernel log must hold each report. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
passed=0
failed=0
log=build/check-debug
mkdir -p "$log"
record() {
	if [ "$2" = 0 ]; then
		passed=$((passed + 1)); echo "check-debug-bite: PASS $1"
	else
		failed=$((failed + 1)); echo "check-debug-bite: FAIL $1"
	fi
}

scripts/build-debug-kernel.sh >"$log/bite-build.log" 2>&1 ||
	{ cat "$log/bite-build.log"; record "build the debug kernel" 1; echo "$passed passed, $failed failed"; exit 1; }
eval "$(scripts/build-debug-kernel.sh --print-vars)"
bite=build/debug/bite
mkdir -p "$bite"
cp tests/vm/debug-bite/Kbuild tests/vm/debug-bite/regwatch_bite.c "$bite/"
make -s -C "$KDIR" M="$PWD/$bite" modules; rc=$?
record "build the bite module against the debug kernel" $rc
[ $rc = 0 ] || { echo "$passed passed, $failed failed"; exit 1; }

# kmemleak reports objects older than 5 s only: wait before the scan that
# guest-init.sh makes after the command.
tests/vm/run-guest.sh --timeout "${REGWATCH_DEBUG_TIMEOUT:-900}" \
	--kernel "$KERNEL" --moddir "$MODDIR" --append "$APPEND" --env REGWATCH_VM_NO_MODULE=1 -- \
	sh -c "insmod $PWD/$bite/regwatch_bite.ko what=lockdep,warn,ubsan,kasan,leak && sleep 8" \
	2>&1 | tee "$log/bite.log"
rc=${PIPESTATUS[0]}
# The guest kernel check prints every report line it matched on the
# console (our copy: no race with other runs over build/vm/last-*.log).
grep -q '^REGWATCH-GUEST-EXIT=0' "$log/bite.log"
record "the command itself ran (insmod succeeded)" $?
grep -q '^REGWATCH-GUEST-KERNEL=bad' "$log/bite.log" && [ "$rc" != 0 ]
record "the run fails on the reports (run-guest.sh exit $rc)" $?
while IFS='|' read -r what pattern; do
	grep -qE "$pattern" "$log/bite.log"
	record "$what report in the guest kernel log ('$pattern')" $?
done <<'EOF'
lockdep|WARNING: possible circular locking dependency detected
WARN|WARNING: CPU: [0-9]+ PID: [0-9]+ at .*regwatch_bite
UBSAN|UBSAN: shift-out-of-bounds in .*regwatch_bite
KASAN|BUG: KASAN: slab-out-of-bounds in bite_init
kmemleak|kmemleak: [0-9]+ new suspected memory leaks
EOF
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
