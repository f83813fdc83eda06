#!/bin/bash
# Install every Debian package regwatch needs (host build, guest VM, tests,
# benchmarks). Idempotent: when everything is already there it does nothing,
# not even `apt-get update`, so `make check` stays fast on a warm machine.
set -euo pipefail

# One place for the list; add new packages here.
PACKAGES="
	linux-image-amd64 linux-headers-amd64 linux-source-6.1
	qemu-system-x86 busybox-static cpio kmod
	rdma-core ibverbs-providers ibverbs-utils libibverbs-dev librdmacm-dev
	perftest iproute2
	libcmocka-dev numactl libnuma-dev gcc make
	gnuplot-nox libucx-dev
	libfabric-dev libfabric-bin
	openmpi-bin libopenmpi-dev
	libc6-dev perl e2fsprogs
	bc flex bison libelf-dev
"
# libc6-dev: only recommended by gcc, so --no-install-recommends skips it.
# libfabric-dev: the libfabric import monitor (userlib/libfabric/) and its
# guest test; libfabric-bin: fi_info/fi_pingpong for trying it by hand.
# openmpi-bin libopenmpi-dev libucx-dev: the MPI tests (tests/mpi/) and the
# UCX bridge (userlib/ucx/); Debian's Open MPI 4.1.4 over UCX 1.13.
# perl: checkpatch.pl needs more than the essential perl-base.
# bc flex bison libelf-dev: building the debug kernel from linux-source-6.1
# (make check-debug; libelf for objtool).

missing=""
for p in $PACKAGES; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = installed ] || missing="$missing $p"
done

if [ -n "$missing" ]; then
	echo "deps: installing:$missing"
	[ "$(id -u)" = 0 ] || { echo "deps: must run as root" >&2; exit 1; }
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# Install the whole list, not only the missing ones: cheap, and it also
	# pulls a newer kernel ABI consistently with its headers.
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $PACKAGES
fi

# checkpatch.pl and friends live in the full source tree, which Debian ships
# only as a tarball.
SRC=/usr/src/linux-source-6.1
# Unpack beside it and rename, so an interrupted run never leaves a half tree
# that looks complete.
if [ ! -x "$SRC/scripts/checkpatch.pl" ]; then
	echo "deps: unpacking $SRC.tar.xz"
	tmp=$(mktemp -d /usr/src/.linux-source.XXXXXX)
	tar -C "$tmp" -xf "$SRC.tar.xz"
	rm -rf "$SRC"
	mv "$tmp/linux-source-6.1" "$SRC"
	rmdir "$tmp"
fi
