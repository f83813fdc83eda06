#!/usr/bin/env bash
# The benchmark suite, end to end (make bench / make bench-smoke):
#   1. the host benchmark (cache lookup, regwatch vs ucs_rcache);
#   2. ONE QEMU guest (tests/vm/run-guest.sh) running every guest benchmark
#      (bench/guest-run.sh), CSV straight into the results directory;
#   3. PNG plots (bench/plot.sh, gnuplot).
# Prints every table; writes <results>/<name>.csv, <name>.txt (tables),
# *.png and run-info.txt (host load before/after, durations).
# Exits non-zero if a benchmark failed to run or a plot could not be made;
# never because of a performance figure.
#
# Usage: bench/run.sh [--quick]     (results: $BENCH_RESULTS, default
#                                    bench/results)
# Expects the programs built (make bench-build) and kernel/regwatch.ko.
set -u
cd "$(dirname "$0")/.." || exit 2
QUICK=""
[ "${1:-}" = --quick ] && QUICK=--quick
RESULTS=${BENCH_RESULTS:-bench/results}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
if [ -n "$QUICK" ]; then GUEST_TIMEOUT=300; else GUEST_TIMEOUT=1200; fi
# One-shot watches each reserve an event-ring entry: 10^5 of them in one
# monitor need a ring above the module's default cap (65536).
MODPARAMS="max_ring_entries=262144"

# Results of an earlier run must not pass for this run's.
rm -f "$RESULTS"/*.csv "$RESULTS"/*.txt "$RESULTS"/*.png
info=$RESULTS/run-info.txt
t0=$SECONDS
failed=0 bad=""
fail() { failed=$((failed + 1)); bad="$bad $1"; }
{
	echo "mode: ${QUICK:-full}"
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) (plus uncommitted changes, if any)"
	echo "host: $(nproc) CPUs, $(uname -r)"
	echo "host load before: $(uptime)"
} >"$info"
cat "$info"

echo
echo "##### host benchmarks (real time)"
for src in bench/*.c; do
	n=$(basename "$src" .c)
	b=build/bench/$n
	[ -x "$b" ] || { echo "bench: $b not built"; fail "$n"; continue; }
	s=$SECONDS
	echo "host load at start of $n: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$info"
	stdbuf -oL "$b" $QUICK --out "$RESULTS" 2>&1 | tee "$RESULTS/$n.txt"
	rc=${PIPESTATUS[0]}
	echo "$n: exit $rc, $((SECONDS - s)) s" >>"$info"
	[ "$rc" = 0 ] || { echo "bench: host benchmark $n FAILED (exit $rc)"; fail "$n"; }
done

echo
echo "##### guest benchmarks (one QEMU TCG guest; ratios)"
s=$SECONDS
echo "host load at guest start: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$info"
tests/vm/run-guest.sh --timeout "$GUEST_TIMEOUT" --results "$RESULTS" \
	--env "REGWATCH_MODPARAMS=$MODPARAMS" -- bench/guest-run.sh $QUICK --out /results
rc=$?
echo "guest: exit $rc, $((SECONDS - s)) s (boot included)" >>"$info"
[ "$rc" = 0 ] || { echo "bench: the guest benchmarks FAILED (exit $rc)"; fail guest; }

echo
echo "##### plots"
bench/plot.sh "$RESULTS" || fail plots

echo "host load after: $(uptime)" >>"$info"
echo "total: $((SECONDS - t0)) s" >>"$info"
echo
cat "$info"
echo "bench: results in $RESULTS: $(cd "$RESULTS" && echo *.csv *.png)"
if [ "$failed" != 0 ]; then
	echo "bench: $failed part(s) FAILED:$bad"
	exit 1
fi
echo "bench: every benchmark ran"
