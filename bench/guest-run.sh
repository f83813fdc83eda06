#!/usr/bin/env bash
# In-guest runner of the guest benchmarks (bench/guest/*.c), started by
# bench/run.sh through tests/vm/run-guest.sh: runs each one with a timeout,
# its CSV into --out (the guest's /results, which is the host's results
# directory) and its printed tables into <out>/<name>.txt, shows them, and
# exits non-zero if any benchmark failed to run (crash, timeout, error
# exit). Performance figures never fail it.
#
# Usage: bench/guest-run.sh [--quick] [--out DIR] [NAME...]
set -u
cd "$(dirname "$0")/.." || exit 2
QUICK="" OUT=/results
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=--quick; shift ;;
	--out) OUT=$2; shift 2 ;;
	*) break ;;
	esac
done
# Order: cheapest first, so a smoke run fails fast.
NAMES=${*:-"reg_rxe inval_latency mirror_fill watch_memory monitor_overhead"}
BIN=build/bench/guest
if [ -n "$QUICK" ]; then TIMEOUT=90; else TIMEOUT=600; fi
mkdir -p "$OUT"
ran=0 failed=0 bad=""
for n in $NAMES; do
	start=$SECONDS
	timeout -k 5 "$TIMEOUT" stdbuf -oL -eL "$BIN/$n" $QUICK --out "$OUT" \
		>"$OUT/$n.txt" 2>&1
	rc=$?
	cat "$OUT/$n.txt"
	ran=$((ran + 1))
	case $rc in
	0) echo "bench-guest: $n ok ($((SECONDS - start)) s)" ;;
	124|137) echo "bench-guest: $n TIMED OUT after ${TIMEOUT} s"; failed=$((failed + 1)); bad="$bad $n" ;;
	*) echo "bench-guest: $n FAILED (exit $rc)"; failed=$((failed + 1)); bad="$bad $n" ;;
	esac
done
echo "bench-guest: $ran ran, $failed failed${bad:+ (}${bad# }${bad:+)}"
[ "$failed" = 0 ]
