#!/usr/bin/env bash
# make demo: build, boot the QEMU guest with regwatch.ko loaded and run the
# narrated demo there.
set -eu
cd "$(dirname "$0")/.."
make -s all
echo "== Booting a Debian 6.1 guest under QEMU (software emulation, ~30 s)"
tests/vm/run-guest.sh --timeout 600 -- build/examples/demo
