#!/bin/bash
# Run a hardening tool (fuzzer, soak, OOM test, smoke) in the test guest
# and keep its log and summary.
#
# Usage: tests/fuzz/guest.sh --name NAME [--timeout SEC] [--mem MB] -- command...
#
# Environment:
#   FUZZ_KERNEL=debug   boot the debug kernel of scripts/build-debug-kernel.sh
#                       (KASAN, lockdep, kmemleak...) with the module built
#                       against it, instead of Debian's kernel (both built
#                       or brought up to date first)
#   REGWATCH_SEED       passed into the guest (replays a fuzzer run)
#   REGWATCH_MODPARAMS  module parameters for insmod in the guest
# Output: the guest console streams to stdout; build/fuzz/NAME.log keeps
# it, build/fuzz/NAME.txt the summary lines and the exit status.
# Exit status: the command's, or run-guest.sh's (kernel report, timeout).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
NAME="" TIMEOUT=900 MEM=2048
while [ $# -gt 0 ]; do
	case $1 in
	--name) NAME=$2; shift 2 ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--) shift; break ;;
	*) sed -n '5p' "$0" >&2; exit 2 ;;
	esac
done
[ -n "$NAME" ] && [ $# -gt 0 ] || { sed -n '5p' "$0" >&2; exit 2; }

args=(--timeout "$TIMEOUT" --mem "$MEM")
kernel=debian
if [ "${FUZZ_KERNEL:-}" = debug ]; then
	# Cached: builds the kernel only the first time, and the module
	# whenever kernel/ changed (a stale module would test old code).
	"$REPO/scripts/build-debug-kernel.sh" >&2 || exit 2
	vars=$("$REPO/scripts/build-debug-kernel.sh" --print-vars) || exit 2
	eval "$vars"
	for f in "$KERNEL" "$KO"; do
		[ -f "$f" ] || { echo "guest.sh: $f missing" >&2; exit 2; }
	done
	args+=(--kernel "$KERNEL" --moddir "$MODDIR" --env "REGWATCH_KO=$KO")
	[ -n "${APPEND:-}" ] && args+=(--append "$APPEND")
	kernel=debug
fi
[ -n "${REGWATCH_SEED:-}" ] && args+=(--env "REGWATCH_SEED=$REGWATCH_SEED")
[ -n "${REGWATCH_MODPARAMS:-}" ] && args+=(--env "REGWATCH_MODPARAMS=$REGWATCH_MODPARAMS")

mkdir -p "$REPO/build/fuzz"
log=$REPO/build/fuzz/$NAME.log
start=$(date +%s)
"$REPO/tests/vm/run-guest.sh" "${args[@]}" -- "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
{
	echo "# $NAME, $(date -u '+%Y-%m-%d %H:%M UTC'), $kernel kernel, $(( $(date +%s) - start )) s, exit $rc"
	echo "# command: $*"
	grep -aE '^(fuzz_regwatch|soak|oom_test|fuzz-smoke|run-guest):' "$log" |
		grep -avE '^fuzz_regwatch: (log|noise)' | tail -n 60
} >"$REPO/build/fuzz/$NAME.txt"
echo "guest.sh: summary in build/fuzz/$NAME.txt, log in build/fuzz/$NAME.log" >&2
exit "$rc"
