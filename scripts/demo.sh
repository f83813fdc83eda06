#!/usr/bin/env bash
# make demo: build, boot the QEMU guest with regwatch.ko loaded and run the
# narrated demos there.
set -eu
cd "$(dirname "$0")/.."
make -s all
echo "== Booting a Debian 6.1 guest under QEMU (software emulation, ~30 s)"
# Both stories in one boot: the monitor API (demo), then the registration
# cache doing RDMA on rxe0 (cache_demo).
tests/vm/run-guest.sh --timeout 600 -- sh -c \
	'build/examples/demo && echo && build/examples/cache_demo && echo && build/examples/mirror_demo'
