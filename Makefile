# regwatch: top-level build. `make` builds the module, the library and the
# tests; `make check` runs host then guest tests; `make demo` runs the demo;
# `make check-debug` runs the guest tests on a KASAN/lockdep/kmemleak kernel.
# Each area keeps its rules in its own fragment (*.mk) included below.

KVER ?= $(shell ls -1 /lib/modules 2>/dev/null | sort -V | tail -n 1)
KDIR ?= /lib/modules/$(KVER)/build
BUILD ?= build

CC ?= cc
CFLAGS ?= -O2 -g
# override: CFLAGS=... on the command line (sanitizers, coverage) adds to these.
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Iinclude -pthread
override LDLIBS += -pthread

.PHONY: all module lib tests ucx-bridge mpi-tests check check-host check-guest demo deps clean checkpatch

all: module lib tests

module:
	$(MAKE) -C $(KDIR) M=$(CURDIR)/kernel modules

deps:
	scripts/deps.sh

include userlib/lib.mk
include userlib/ibverbs/ibverbs.mk
include userlib/libfabric/libfabric.mk
include bench/bench.mk
include tests/host/host.mk
include tests/guest/guest.mk
include examples/examples.mk
include userlib/ucx/ucx.mk
include tests/mpi/mpi.mk
include tests/vm/debug.mk
include tests/fuzz/fuzz.mk

tests: host-tests guest-tests examples ucx-bridge mpi-tests fuzz-bins

checkpatch:
	scripts/checkpatch.sh

check: deps
	scripts/check.sh

demo: deps
	scripts/demo.sh

clean:
	-$(MAKE) -C $(KDIR) M=$(CURDIR)/kernel clean
	rm -rf $(BUILD)
