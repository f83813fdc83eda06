#!/bin/bash
# Fault injection for regwatch.ko on the debug kernel (issue 5).
#
# Inside the debug guest (default; as root, regwatch.ko loaded):
#   1. fail-nth, systematic: build/tests/fault/fault_nth makes the 1st, 2nd,
#      ... fault point (slab and page allocations: failslab,
#      fail_page_alloc) of every regwatch entry point fail in turn (open,
#      CONFIG, mmap, WATCH incl. the first one of an mm, whose
#      mmu_interval_notifier_insert() allocates the mm's notifier
#      subscriptions, WATCHV, UNWATCH(V), SET_EVENTFD, STATS, read, munmap,
#      close). Each failure must be ENOMEM with nothing changed, the retry
#      must succeed, and the module counters must come back after exit.
#      A short verbose run first shows where the faults of the first WATCH
#      land (stack traces of the injections).
#   2. Random failures while unmodified guest tests run: an LD_PRELOAD shim
#      (tests/fault/fi_shim.c) arms fail-nth for a random fault point
#      (1..8) in FI_PERMILLE per mille (default 100) of the tests'
#      regwatch system calls (ioctl, open of /dev/regwatch*, mmap of a
#      regwatch fd), over FI_ROUNDS rounds (default 3) of FI_TESTS. The
#      tests' own results do not count (their calls fail under them); what
#      counts is that every run ends (no hang, no crash of the kernel) and
#      the module counters are back to 0 after each run.
#      (A task-wide failslab with task-filter and /proc/self/make-it-fail,
#      tried first, fails exec, the dynamic loader and the 9p/overlay root
#      long before the module: after one round every later exec in the
#      guest failed with EINVAL. So the failures stay inside regwatch's
#      system calls.)
#   3. Afterwards the module still works: FI_TESTS pass without faults,
#      counters are 0, the module unloads, and kmemleak finds nothing.
#   Ends with "N passed, N failed". KASAN, lockdep, WARN... reports are
#   found by the harness (tests/vm/guest-init.sh) after this script.
#
# fail_function cannot target mmu_interval_notifier_insert: only functions
# marked ALLOW_ERROR_INJECTION can be overridden, and in 6.1 that is not one
# of them (nor anything of the module). Its failure path is reached through
# its allocation instead (point 1, op watch_first).
#
# On the host: scripts/fault-inject.sh --host builds the debug kernel, the
# module, the tests and fault_nth, and runs this script in the debug guest.
set -u
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD

if [ "${1:-}" = --host ]; then
	shift
	set -o pipefail
	scripts/build-debug-kernel.sh || exit 1
	eval "$(scripts/build-debug-kernel.sh --print-vars)"
	make -s lib guest-tests || exit 1
	mkdir -p build/tests/fault
	cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -g -Iinclude -Itests/common \
		-o build/tests/fault/fault_nth tests/fault/fault_nth.c \
		tests/common/rwt_util.c build/libregwatch.a -pthread || exit 1
	cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -g -fPIC -shared \
		-o build/tests/fault/fi_shim.so tests/fault/fi_shim.c -ldl || exit 1
	envs=(--env "REGWATCH_KO=$KO")
	for v in FI_PERMILLE FI_ROUNDS FI_TESTS FI_MAX_N FI_SEED; do
		[ -n "${!v:-}" ] && envs+=(--env "$v=${!v}")
	done
	mkdir -p build/check-debug
	tests/vm/run-guest.sh --timeout "${REGWATCH_DEBUG_TIMEOUT:-5400}" \
		--kernel "$KERNEL" --moddir "$MODDIR" --append "$APPEND" "${envs[@]}" -- \
		scripts/fault-inject.sh "$@" 2>&1 | tee build/check-debug/fault-inject.log
	exit "${PIPESTATUS[0]}"
fi

DBG=/sys/kernel/debug
STATS=$DBG/regwatch/stats
BIN=build/tests/guest
FAULT_NTH=build/tests/fault/fault_nth
SHIM=$REPO/build/tests/fault/fi_shim.so
PERMILLE=${FI_PERMILLE:-100}
SEED=${FI_SEED:-$(date +%s)}
ROUNDS=${FI_ROUNDS:-3}
TESTS=${FI_TESTS:-test_lifecycle test_badinput test_limits test_notify test_events}
MAX_N=${FI_MAX_N:-400}
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "fault: PASS $*"; }
fail() { failed=$((failed + 1)); echo "fault: FAIL $*"; }
uptime_s() { cut -d. -f1 /proc/uptime; }

# fi_set CAP KEY VALUE: write a fault-injection knob.
fi_set() { echo "$3" >"$DBG/$1/$2" || { echo "cannot set $1/$2=$3"; return 1; }; }

# Both capabilities count sleeping and order-0 allocations (the module's
# are GFP_KERNEL_ACCOUNT, mostly order 0), never fire at random (p=0),
# and stay quiet unless asked.
fi_reset() {
	local c
	for c in failslab fail_page_alloc; do
		fi_set $c probability 0 && fi_set $c interval 1 &&
		fi_set $c times -1 && fi_set $c space 0 &&
		fi_set $c verbose "${1:-0}" && fi_set $c task-filter Y &&
		fi_set $c ignore-gfp-wait N || return 1
	done
	fi_set fail_page_alloc ignore-gfp-highmem N && fi_set fail_page_alloc min-order 0
}

counters() { awk '$1 ~ /^(monitors|watches|pages)$/ { printf "%s %s ", $1, $2 }' "$STATS"; }
# counters_zero: wait (up to 10 s: deferred frees) for monitors, watches and
# pages to be 0.
counters_zero() {
	local i
	for i in $(seq 50); do
		[ -z "$(awk '$1 ~ /^(monitors|watches|pages)$/ && $2 != 0' "$STATS")" ] && return 0
		sleep 0.2
	done
	return 1
}

echo "== fault injection on $(uname -r)"
for f in "$DBG/failslab" "$DBG/fail_page_alloc" \
	 /proc/thread-self/fail-nth "$STATS" "$FAULT_NTH" "$SHIM"; do
	[ -e "$f" ] || { fail "missing $f"; echo "$passed passed, $failed failed"; exit 1; }
done
fi_reset || { fail "cannot configure failslab / fail_page_alloc"; exit 1; }
counters_zero && pass "module counters are 0 at the start ($(counters))" ||
	fail "module counters not 0 at the start: $(counters)"

# ---- 1. fail-nth ----------------------------------------------------------
echo "== 1. every fault point of every entry point (fail-nth)"
# Where the fault points of the first WATCH of an mm are: one verbose run,
# the injections' stacks trimmed to the interesting frames.
fi_reset 2
mark="regwatch-fault: watch_first stacks"
echo "<6>$mark" >/dev/kmsg
"$FAULT_NTH" -v watch_first 2>&1 | sed 's/^/  /'
fi_reset 0
echo "fault: where the first WATCH's fault points are (probe: result: innermost frames first):"
dmesg | sed -n "/$mark/,\$p" | awk '
	/fault_nth: op=.* armed/ { n = $0; sub(/.* n=/, "", n); sub(/ .*/, "", n); chain = ""; cnt = 0; inside = 1; next }
	/fault_nth: op=.* injected=/ {
		r = $0; sub(/.* injected=/, "injected=", r)
		printf "  n=%s %s: %s\n", n, r, chain ? chain : "(no trace: a __GFP_NOWARN allocation, e.g. of kmemleak or the stack depot, which falls back)"
		inside = 0; next
	}
	inside && /^\[ *[0-9.]+\]  [a-z_][a-z_0-9.]*\+0x/ {
		f = $0; sub(/^\[ *[0-9.]+\]  /, "", f); sub(/\+0x.*/, "", f)
		if (f ~ /^(dump_stack|should_fail|should_failslab|__should_failslab|fail_dump|slab_pre_alloc_hook|prepare_alloc_pages|__alloc_pages|alloc_pages|__kmem_cache_alloc_node|kmem_cache_alloc|kmalloc_trace|__kmalloc|show_stack|__fault_inject)/) next
		if (cnt++ < 6) chain = chain (chain ? " <- " : "") f
	}'
t0=$(uptime_s)
"$FAULT_NTH" -m "$MAX_N" 2>&1 | tee /tmp/fault_nth.log
rc=${PIPESTATUS[0]}
echo "fault: fail-nth took $(($(uptime_s) - t0))s"
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' /tmp/fault_nth.log | tail -n 1)
if [ -n "$line" ]; then
	passed=$((passed + ${line%% passed*}))
	f=${line##*passed, }; failed=$((failed + ${f%% failed}))
	[ "$rc" = 0 ] || [ "${f%% failed}" != 0 ] || fail "fault_nth exit status $rc"
else
	fail "fault_nth printed no summary (rc $rc)"
fi
counters_zero && pass "module counters back to 0 after fail-nth" ||
	fail "module counters after fail-nth: $(counters)"

# ---- 2. random failures in the tests' regwatch calls -----------------------
echo "== 2. fail-nth in $PERMILLE per mille of the regwatch calls of: $TESTS ($ROUNDS rounds, seed $SEED)"
t0=$(uptime_s)
for round in $(seq "$ROUNDS"); do
	for t in $TESTS; do
		[ -x "$BIN/$t" ] || { fail "$BIN/$t not built"; continue; }
		rm -f /tmp/fi-shim.log
		timeout -k 10 600 env LD_PRELOAD="$SHIM" FI_SHIM_PERMILLE="$PERMILLE" \
			FI_SHIM_SEED=$((SEED + round)) FI_SHIM_LOG=/tmp/fi-shim.log \
			"$BIN/$t" >/tmp/fi-$t.log 2>&1
		rc=$?
		ok=$(grep -c '^\[       OK \]' /tmp/fi-$t.log)
		bad=$(grep -c '^\[  FAILED  \] [a-z]' /tmp/fi-$t.log)
		inj=$(awk '{ c += $3; a += $4; i += $5 } END { printf "%d calls, %d armed, %d injected", c, a, i }' /tmp/fi-shim.log 2>/dev/null)
		if [ $rc = 124 ] || [ $rc = 137 ]; then
			fail "round $round $t ($inj): hung under fault injection (timeout)"
			tail -n 20 /tmp/fi-$t.log
		elif [ $rc = 132 ] || [ $rc = 135 ] || [ $rc = 136 ] || [ $rc = 139 ]; then
			# SIGILL, SIGBUS, SIGFPE, SIGSEGV: the test program (or the
			# library) crashed on an error it did not expect. Other exit
			# codes are cmocka's (failed cases; 255: a failed assertion
			# in a thread).
			fail "round $round $t ($inj): the test program crashed (signal $((rc - 128)))"
			tail -n 20 /tmp/fi-$t.log
		elif counters_zero; then
			pass "round $round $t ($inj; exit $rc, $ok cases ok, $bad failed): counters back to 0"
		else
			fail "round $round $t ($inj; exit $rc): module counters not back to 0: $(counters)"
		fi
	done
done
fi_reset 0
echo "fault: random rounds took $(($(uptime_s) - t0))s"

# ---- 3. nothing left behind ------------------------------------------------------
echo "== 3. the module still works, unloads, leaks nothing"
for t in $TESTS; do
	if "$BIN/$t" >/tmp/after-$t.log 2>&1; then
		pass "$t passes after the fault injection"
	else
		cat /tmp/after-$t.log
		fail "$t fails after the fault injection (state left behind?)"
	fi
done
counters_zero && pass "module counters 0 at the end" || fail "module counters at the end: $(counters)"
if rmmod regwatch; then pass "module unloads"; else fail "rmmod regwatch"; fi
if grep -qE '^ *debug_locks: +1$' /proc/lockdep_stats; then
	pass "lockdep still on (no lockdep report)"
else
	fail "lockdep switched itself off: a report is in the kernel log"
fi
sleep 6		# kmemleak ignores objects younger than 5 s
# Two scans: the first one that sees an object only records its checksum.
# Each in a fresh process: kmemleak quietly stops a scan when the task that
# asked has a signal pending (SIGCHLD from any child).
scan() { sh -c 'echo scan >"$1"' sh "$DBG/kmemleak" 2>/dev/null; }
if ! { scan && scan; }; then
	fail "kmemleak is off (it switches itself off on an internal error)"
elif cat "$DBG/kmemleak" >/tmp/kmemleak.txt && [ -s /tmp/kmemleak.txt ]; then
	cat /tmp/kmemleak.txt
	fail "kmemleak: $(grep -c '^unreferenced object' /tmp/kmemleak.txt) suspected leaks"
else
	pass "kmemleak: on, no suspected leak"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
