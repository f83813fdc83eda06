#!/bin/bash
# Soak: minutes of concurrent load on regwatch.ko in the test guest, then
# the module's counters and its unload are checked. Runs inside the guest
# (tests/vm/run-guest.sh; `make soak` boots one for it).
#
# Usage: tests/fuzz/soak.sh [--seconds N]      (default 300; 30 for a smoke)
#
# Load, all at once until the deadline:
#   - the fuzzer (full profile, 3 threads), run after run with new seeds:
#     its tracked monitor's own event count must equal the events its
#     oracle drained, at every epoch (a finding otherwise);
#   - test_stress (the guest suite's concurrency oracle), run after run;
#     its module-wide leak checks are meaningless while other processes
#     use the module, so it sees a constant debugfs file in a private
#     mount namespace; this script checks the real counters at the end;
#   - the fuzzer's mirror profile (2 threads): device transfers with the
#     exact data oracle, forks, remaps.
# At the end, with every process gone: module-wide monitors, watches,
# shared pages, mirror devices and mirror pages are back to where they
# were; rmmod succeeds; the module is loaded again (same parameters) for
# whatever runs next. Prints "soak: N passed, N failed" last.
set -u
cd "$(dirname "$0")/../.." || exit 2
DUR=300
while [ $# -gt 0 ]; do
	case $1 in
	--seconds) DUR=$2; shift 2 ;;
	*) echo "usage: $0 [--seconds N]" >&2; exit 2 ;;
	esac
done
FUZZ=build/tests/fuzz/fuzz_regwatch
STRESS=build/tests/guest/test_stress
KO=${REGWATCH_KO:-kernel/regwatch.ko}
LOGS=$(mktemp -d /tmp/soak.XXXXXX)
passed=0 failed=0

check() {
	if [ "$2" = 0 ]; then
		passed=$((passed + 1)); echo "soak: PASS $1"
	else
		failed=$((failed + 1)); echo "soak: FAIL $1"
	fi
}

for b in "$FUZZ" "$STRESS"; do
	[ -x "$b" ] || { echo "soak: FAIL $b not built"; echo "soak: 0 passed, 1 failed"; exit 1; }
done
[ -c /dev/regwatch ] || { echo "soak: FAIL regwatch.ko not loaded"; echo "soak: 0 passed, 1 failed"; exit 1; }
before=$("$FUZZ" --module-counters) || { echo "soak: FAIL cannot read the module counters"; exit 1; }
echo "soak: ${DUR} s of load; module before: $before"
start=$(date +%s)
end=$((start + DUR))

left() { echo $((end - $(date +%s))); }

fuzz_loop() {	# $1: name, then fuzzer options
	local name=$1 i=0 t
	shift
	while t=$(left); [ "$t" -gt 5 ]; do
		[ "$t" -gt 150 ] && t=150
		i=$((i + 1))
		"$FUZZ" --iterations 0 --seconds "$t" "$@" >"$LOGS/$name.$i.log" 2>&1
		echo $? >"$LOGS/$name.$i.rc"
	done
}

stress_loop() {
	local i=0 fake=$LOGS/fake-stats
	printf 'monitors 0\nwatches 0\npages 0\n' >"$fake"
	while [ "$(left)" -gt 10 ]; do
		i=$((i + 1))
		REGWATCH_STRESS_OPS=${SOAK_STRESS_OPS:-300} REGWATCH_STRESS_SECONDS=15 \
		unshare -m --propagation private sh -c \
			"mount --bind $fake /sys/kernel/debug/regwatch/stats && exec $STRESS" \
			>"$LOGS/stress.$i.log" 2>&1
		echo $? >"$LOGS/stress.$i.rc"
	done
}

fuzz_loop fuzz --threads 3 &
p1=$!
fuzz_loop mirror --threads 2 --profile mirror &
p2=$!
stress_loop &
p3=$!
wait $p1 $p2 $p3
elapsed=$(( $(date +%s) - start ))

# ---- what the loads said ----------------------------------------------------
runs() { ls "$LOGS"/"$1".*.rc 2>/dev/null | wc -l; }
sum_field() {	# $1: name, $2: sed expression printing one number per log
	local f s=0 v
	for f in "$LOGS"/"$1".*.log; do
		[ -f "$f" ] || continue
		v=$(sed -n "$2" "$f" | tail -n 1)
		s=$((s + ${v:-0}))
	done
	echo $s
}
bad_runs() {
	local f n=0
	for f in "$LOGS"/"$1".*.rc; do
		[ -f "$f" ] || continue
		if [ "$(cat "$f")" != 0 ]; then
			n=$((n + 1))
			echo "soak: --- ${f%.rc}.log (exit $(cat "$f")):" >&2
			if [ "$1" = stress ]; then	# short: all of it
				head -n 200 "${f%.rc}.log" >&2
			else
				grep -aE 'FINDING|FATAL|FAILED|\[  ERROR|fail' "${f%.rc}.log" | head -n 20 >&2
				tail -n 15 "${f%.rc}.log" >&2
			fi
		fi
	done
	echo $n
}

fr=$(runs fuzz) mr=$(runs mirror) sr=$(runs stress)
fcalls=$(sum_field fuzz 's/^fuzz_regwatch: calls \([0-9]*\).*/\1/p')
mcalls=$(sum_field mirror 's/^fuzz_regwatch: calls \([0-9]*\).*/\1/p')
fevents=$(sum_field fuzz 's/^fuzz_regwatch: tracked: .* \([0-9]*\) events (monitor.*/\1/p')
ffind=$(sum_field fuzz 's/^fuzz_regwatch: findings \([0-9]*\)$/\1/p')
fnoise=$(sum_field fuzz 's/^fuzz_regwatch: \([0-9]*\) events explained by the environment.*/\1/p')
snoise=$(sum_field stress 's/.* events (\([0-9]*\) the kernel'"'"'s own CLEARs)$/\1/p')
mfind=$(sum_field mirror 's/^fuzz_regwatch: findings \([0-9]*\)$/\1/p')
sevents=$(sum_field stress 's/.*mprotects, \([0-9]*\) events.*/\1/p')
fbad=$(bad_runs fuzz) mbad=$(bad_runs mirror) sbad=$(bad_runs stress)
echo "soak: fuzzer: $fr runs, $fcalls calls, $ffind findings; tracked events $fevents (each equal to its monitor's own count), $fnoise put down to the kernel's own work (REGWATCH_EVENT_BACKGROUND)"
echo "soak: mirror fuzzer: $mr runs, $mcalls calls, $mfind findings"
echo "soak: test_stress: $sr runs, $((sr - sbad)) passed, $sevents events checked by its oracle, $snoise of them the kernel's own CLEARs"
check "fuzzer runs clean ($fr runs)" $(( fr == 0 || fbad != 0 ))
check "mirror fuzzer runs clean ($mr runs)" $(( mr == 0 || mbad != 0 ))
check "test_stress runs pass ($sr runs)" $(( sr == 0 || sbad != 0 ))

# ---- the module after the load ----------------------------------------------
after=""
for _ in $(seq 50); do
	after=$("$FUZZ" --module-counters)
	[ "$after" = "$before" ] && break
	sleep 0.2
done
echo "soak: module after: $after"
check "module counters back (monitors, watches, pages, mirror devices and pages)" \
	$([ "$after" = "$before" ]; echo $?)

rmmod regwatch 2>"$LOGS/rmmod.err"
rc=$?
[ $rc = 0 ] && [ -d /sys/module/regwatch ] && rc=1
[ $rc = 0 ] || cat "$LOGS/rmmod.err"
check "rmmod regwatch after the load" $rc
if [ ! -d /sys/module/regwatch ]; then
	# shellcheck disable=SC2086
	insmod "$KO" ${REGWATCH_MODPARAMS:-} ||
		echo "soak: warning: could not load $KO again"
fi
echo "soak: ${elapsed} s, $((fcalls + mcalls)) fuzzer calls in $((fr + mr)) runs, $sr test_stress runs"
echo "soak: $passed passed, $failed failed"
rm -rf "$LOGS"
[ $failed = 0 ]
