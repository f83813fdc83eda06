# Hardening tools (issue 5): the fuzzer, the OOM test, the soak.
# Included from the top-level Makefile:
#   include tests/fuzz/fuzz.mk
#
# make fuzz-bins    build/tests/fuzz/fuzz_regwatch and oom_test
# make fuzz         the long fuzzer run in a guest (FUZZ_ITERATIONS calls,
#                   default 10^6; FUZZ_SECONDS stops it earlier, default 0:
#                   no limit; FUZZ_THREADS, REGWATCH_SEED to replay)
# make soak         SOAK_SECONDS (default 300) of concurrent load in a guest,
#                   counters and a clean rmmod checked at the end
# make oom-test     the OOM-reaper test in a guest
# make fuzz-smoke   short fuzzer + 30 s soak + OOM test in one guest boot
#                   (< 3 minutes; for make check)
# FUZZ_KERNEL=debug runs any of them on the debug kernel of
# scripts/build-debug-kernel.sh (built, or its module updated, first).
# Logs: build/fuzz/<target>.log; the last summary: build/fuzz/<target>.txt

FUZZ_SRCS := $(filter-out tests/fuzz/oom_test.c,$(wildcard tests/fuzz/*.c))
FUZZ_BIN := $(BUILD)/tests/fuzz/fuzz_regwatch
OOM_BIN := $(BUILD)/tests/fuzz/oom_test

FUZZ_ITERATIONS ?= 1000000
FUZZ_THREADS ?= 4
FUZZ_SECONDS ?= 0
FUZZ_TIMEOUT ?= 14400
SOAK_SECONDS ?= 300

.PHONY: fuzz-bins fuzz soak oom-test fuzz-smoke

fuzz-bins: $(FUZZ_BIN) $(OOM_BIN)

$(FUZZ_BIN): $(FUZZ_SRCS) tests/fuzz/fuzz.h $(LIBREGWATCH_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(FUZZ_SRCS) $(LIBREGWATCH_A) $(LDLIBS)

$(OOM_BIN): tests/fuzz/oom_test.c $(LIBREGWATCH_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBREGWATCH_A) $(LDLIBS)

fuzz: module fuzz-bins
	tests/fuzz/guest.sh --name fuzz --timeout $(FUZZ_TIMEOUT) -- \
		$(FUZZ_BIN) --iterations $(FUZZ_ITERATIONS) --seconds $(FUZZ_SECONDS) \
		--threads $(FUZZ_THREADS) --check-module

soak: module fuzz-bins guest-tests
	tests/fuzz/guest.sh --name soak --timeout $$(($(SOAK_SECONDS) + 900)) -- \
		tests/fuzz/soak.sh --seconds $(SOAK_SECONDS)

oom-test: module fuzz-bins
	tests/fuzz/guest.sh --name oom-test --timeout 300 -- $(OOM_BIN)

fuzz-smoke: module fuzz-bins guest-tests
	tests/fuzz/guest.sh --name fuzz-smoke --timeout 420 -- tests/fuzz/smoke.sh
