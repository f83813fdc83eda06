#!/usr/bin/env bash
# Line coverage (gcov) of userlib/*.c by the host tests.
# Builds userlib once with --coverage into build/cov, links every
# tests/host/test_*.c against those objects (so counts add up over all
# tests), runs them, and prints one line per source file plus a total.
# Usage: scripts/host-coverage.sh [test-name-glob]   (default: test_*)
set -u
cd "$(dirname "$0")/.."
glob=${1:-test_*}
out=build/cov
rm -rf "$out"
mkdir -p "$out/obj" "$out/bin"
CFLAGS="-O0 -g --coverage -std=c11 -D_GNU_SOURCE -Wall -Wextra -Iinclude -Iuserlib -pthread"
objs=()
for src in userlib/*.c; do
	o="$out/obj/$(basename "${src%.c}").o"
	cc $CFLAGS -c -o "$o" "$src" || exit 1
	objs+=("$o")
done
rc=0
for t in tests/host/$glob.c; do
	b="$out/bin/$(basename "${t%.c}")"
	ldf=$(sed -n 's|^// LDFLAGS: ||p' "$t")
	cc $CFLAGS -o "$b" "$t" "${objs[@]}" $ldf -lcmocka -pthread || exit 1
	"$b" > "$b.log" 2>&1 || { echo "coverage: $b failed"; rc=1; }
done
total=0; covered=0
echo "line coverage of userlib/ by the host tests:"
for src in userlib/*.c; do
	line=$(cd "$out/obj" && gcov -n -o . "../../../$src" 2>/dev/null |
	       grep -A1 "^File '$src'" | sed -n 's/^Lines executed:\([0-9.]*\)% of \([0-9]*\)/\1 \2/p')
	[ -n "$line" ] || { echo "  $src: no data"; continue; }
	set -- $line
	printf "  %-28s %6s%% of %s lines\n" "$src" "$1" "$2"
	c=$(awk -v p="$1" -v n="$2" 'BEGIN { printf "%d", p * n / 100 + 0.5 }')
	covered=$((covered + c)); total=$((total + $2))
done
[ "$total" -gt 0 ] && awk -v c=$covered -v t=$total \
	'BEGIN { printf "  total                        %6.2f%% of %d lines\n", 100 * c / t, t }'
exit $rc
