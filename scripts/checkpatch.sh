#!/usr/bin/env bash
# Kernel coding style of the module and its uapi header (checkpatch.pl from
# linux-source-6.1). Fails on errors; warnings are printed.
set -u
cd "$(dirname "$0")/.."
cp=/usr/src/linux-source-6.1/scripts/checkpatch.pl
[ -x "$cp" ] || { echo "checkpatch.pl missing: run make deps"; exit 1; }
files=$(ls kernel/*.c kernel/*.h include/uapi/*.h | grep -v '\.mod\.c$')
out=$("$cp" --no-tree --terse --show-types -f $files 2>&1)
echo "$out"
! echo "$out" | grep -q ': ERROR:'
