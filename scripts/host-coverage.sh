#!/usr/bin/env bash
# Line coverage (gcov) of userlib/*.c and of the libfabric monitor
# (userlib/libfabric/, less the LD_PRELOAD constructor) by the host tests.
# Builds them once with --coverage into build/cov, into the same two
# archives as tests/host/host.mk links (so each test pulls in only what it
# uses, and fakes it defines itself win), links every tests/host/test_*.c
# against them (so counts add up over all tests), runs them, and prints one
# line per source file plus a total.
# Usage: scripts/host-coverage.sh [test-name-glob]   (default: test_*)
set -u
cd "$(dirname "$0")/.."
glob=${1:-test_*}
out=build/cov
rm -rf "$out"
mkdir -p "$out/obj" "$out/bin"
CFLAGS="-O0 -g --coverage -std=c11 -D_GNU_SOURCE -Wall -Wextra -Iinclude -Iuserlib -Iuserlib/libfabric -pthread"
srcs_core=(userlib/*.c)
srcs_fi=()
for src in userlib/libfabric/*.c; do
	[ "$src" = userlib/libfabric/fi_preload.c ] || srcs_fi+=("$src")
done
# archive NAME SRC...: compile SRCs into $out/obj and archive them.
archive() {
	local a="$out/$1" o src
	shift
	for src in "$@"; do
		o="$out/obj/$(basename "${src%.c}").o"
		cc $CFLAGS -c -o "$o" "$src" || exit 1
		ar rcs "$a" "$o" || exit 1
	done
}
archive libregwatch.a "${srcs_core[@]}"
archive libregwatch_fi.a "${srcs_fi[@]}"
rc=0
for t in tests/host/$glob.c; do
	b="$out/bin/$(basename "${t%.c}")"
	ldf=$(sed -n 's|^// LDFLAGS: ||p' "$t")
	cc $CFLAGS -o "$b" "$t" "$out/libregwatch_fi.a" "$out/libregwatch.a" \
		$ldf -lcmocka -pthread || exit 1
	"$b" > "$b.log" 2>&1 || { echo "coverage: $b failed"; rc=1; }
done
total=0; covered=0
echo "line coverage of userlib/ by the host tests:"
for src in "${srcs_core[@]}" "${srcs_fi[@]}"; do
	line=$(cd "$out/obj" && gcov -n -o . "../../../$src" 2>/dev/null |
	       grep -A1 "^File '$src'" | sed -n 's/^Lines executed:\([0-9.]*\)% of \([0-9]*\)/\1 \2/p')
	[ -n "$line" ] || { echo "  $src: no data"; continue; }
	set -- $line
	printf "  %-34s %6s%% of %s lines\n" "$src" "$1" "$2"
	c=$(awk -v p="$1" -v n="$2" 'BEGIN { printf "%d", p * n / 100 + 0.5 }')
	covered=$((covered + c)); total=$((total + $2))
done
[ "$total" -gt 0 ] && awk -v c=$covered -v t=$total \
	'BEGIN { printf "  total                              %6.2f%% of %d lines\n", 100 * c / t, t }'
exit $rc
