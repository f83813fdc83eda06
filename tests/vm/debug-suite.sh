#!/bin/bash
# In-guest part of `make check-debug` (scripts/check-debug.sh boots the
# debug kernel with tests/vm/run-guest.sh and runs this as the command).
#
# 1. Checks that the debug tools are armed: kmemleak on, lockdep on.
# 2. Runs the guest suite, tests/guest/run.sh, unchanged.
# 3. Afterwards: module counters back to 0, the module unloads, lockdep
#    still on (a lockdep report switches it off), and no kmemleak suspect
#    after a scan (run twice, objects must be older than 5 s), with the
#    suspects printed with their allocation stacks.
# 4. Prints one line "N passed, N failed": the runner's counts plus one
#    per check above. Exits non-zero if any failed.
# KASAN, lockdep, UBSAN, KFENCE, WARN... reports in the kernel log are
# then found by guest-init.sh's check_kernel after this command, which
# fails the whole run (run-guest.sh's exit status).
set -u
cd "$(dirname "$0")/../.." || exit 2

KMEMLEAK=/sys/kernel/debug/kmemleak
STATS=/sys/kernel/debug/regwatch/stats
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "debug: PASS $*"; }
fail() { failed=$((failed + 1)); echo "debug: FAIL $*"; }
kmsg() { echo "<6>regwatch-debug: $*" >/dev/kmsg; }

lockdep_on() { grep -qE '^ *debug_locks: +1$' /proc/lockdep_stats 2>/dev/null; }

# kmemleak_suspects FILE: scan (twice: a pointer left in a register or on a
# stack during the first scan can hide a leak once) and copy the suspects
# to FILE. Fails if kmemleak is off (it disables itself on an internal error).
kmemleak_suspects() {
	local i
	# In a fresh process each: kmemleak quietly stops a scan when the
	# task that asked has a signal pending (SIGCHLD from any child).
	for i in 1 2; do
		sh -c 'echo scan >"$1"' sh "$KMEMLEAK" 2>/dev/null || return 1
	done
	cat "$KMEMLEAK" >"$1" 2>/dev/null
}

echo "== debug kernel $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime)s at start"
# kmemleak switches itself off (for good) on an internal error. No scan
# here: one costs 25-70 s under TCG, and a leak from boot would be
# reported by the scans at the end all the same (and fail the run).
if [ -w "$KMEMLEAK" ] &&
   dmesg | grep -q 'kmemleak: Kernel memory leak detector initialized' &&
   ! dmesg | grep -q 'kmemleak: Kernel memory leak detector disabled'; then
	pass "kmemleak is on"
else
	fail "kmemleak is off or missing ($KMEMLEAK; see the kernel log)"
fi
if lockdep_on; then
	pass "lockdep is on"
else
	fail "lockdep is off before the tests (see the kernel log)"
fi

echo "== guest suite (tests/guest/run.sh)"
kmsg "suite start"
t0=$(cut -d. -f1 /proc/uptime)
out=$(mktemp)
tests/guest/run.sh 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
t1=$(cut -d. -f1 /proc/uptime)
kmsg "suite end"
echo "debug: suite took $((t1 - t0))s of guest time (rc $rc)"
line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
if [ -n "$line" ]; then
	passed=$((passed + ${line%% passed*}))
	f=${line##*passed, }
	failed=$((failed + ${f%% failed}))
	[ "$rc" = 0 ] || [ "${f%% failed}" != 0 ] || fail "tests/guest/run.sh exit status $rc"
else
	fail "tests/guest/run.sh printed no summary (rc $rc)"
fi

echo "== after the suite"
if [ -r "$STATS" ]; then
	cat "$STATS"
	nonzero=$(awk '$1 ~ /^(monitors|watches|pages)$/ && $2 != 0' "$STATS")
	if [ -z "$nonzero" ]; then
		pass "module counters back to 0 (monitors, watches, pages)"
	else
		fail "module counters not back to 0: $(echo "$nonzero" | tr '\n' ' ')"
	fi
else
	fail "no $STATS (module not loaded after the suite?)"
fi
if [ -d /sys/module/regwatch ]; then
	if rmmod regwatch; then
		pass "module unloads"
	else
		fail "rmmod regwatch"
	fi
fi
if lockdep_on; then
	pass "lockdep still on after the suite (no lockdep report)"
else
	fail "lockdep switched itself off during the run: a lockdep report (or a KASAN/taint) is in the kernel log"
fi
# kmemleak ignores objects younger than 5 s.
sleep 6
leaks=$(mktemp)
t0=$(cut -d. -f1 /proc/uptime)
if ! kmemleak_suspects "$leaks"; then
	fail "kmemleak scan failed (kmemleak switched itself off?)"
elif [ -s "$leaks" ]; then
	cat "$leaks"
	n=$(grep -c '^unreferenced object' "$leaks")
	mod=$(grep -c '\[regwatch\]' "$leaks")
	fail "kmemleak: $n suspected leaks after the suite ($mod stack lines in regwatch)"
else
	pass "kmemleak: no suspected leak after the suite and the unload"
fi
echo "debug: kmemleak scans took $(($(cut -d. -f1 /proc/uptime) - t0))s"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
