# Benchmarks (bench/, docs/benchmarks.md).
#
#   make bench        deps, build, host benchmark, ONE guest running every
#                     guest benchmark, PNG plots; CSV, tables and plots in
#                     bench/results/ (BENCH_RESULTS=dir to change).
#   make bench-smoke  the same with --quick (tiny sizes) into
#                     build/bench-smoke/: fails only if a benchmark fails
#                     to run, never on a figure. For `make check`.
#   make bench-build  build every benchmark program.
#   make bench-host   run the host benchmark(s) only (BENCH_ARGS=--quick).
#
# Host programs: bench/*.c, linked with libregwatch (and its internal
# headers: they plug in a stand-in monitor) and UCX's libucs.
# Guest programs: bench/guest/*.c, linked with libregwatch, its ibverbs
# backend, the rxe loopback helper of the guest tests and libibverbs. UCX's
# libucm is dlopen()ed, only by the process that measures it: loading
# libucs already patches libc's munmap (UCM's bistro hooks), which must
# not touch the other measurements. All link bench/lib/bench_util.c.

BENCH_HOST_SRCS := $(wildcard bench/*.c)
BENCH_HOST_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_HOST_SRCS))
BENCH_GUEST_SRCS := $(wildcard bench/guest/*.c)
BENCH_GUEST_BINS := $(patsubst bench/guest/%.c,$(BUILD)/bench/guest/%,$(BENCH_GUEST_SRCS))
BENCH_UTIL := bench/lib/bench_util.c
BENCH_DEPS := $(BENCH_UTIL) bench/lib/bench_util.h $(LIBREGWATCH_A) \
	include/regwatch.h include/regwatch_cache.h include/uapi/regwatch.h \
	$(wildcard userlib/*.h)
BENCH_RESULTS ?= bench/results

.PHONY: bench bench-smoke bench-build bench-host

$(BUILD)/bench/%: bench/%.c $(BENCH_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iuserlib -Ibench/lib -o $@ $< $(BENCH_UTIL) \
		$(LIBREGWATCH_A) -lucs $(LDLIBS)

$(BUILD)/bench/guest/%: bench/guest/%.c $(BENCH_DEPS) $(LIBREGWATCH_IBV_A) \
		include/regwatch_ibverbs.h include/regwatch_mirror.h \
		tests/common/rxe_util.c tests/common/rxe_util.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iuserlib -Ibench/lib -Itests/common -o $@ $< \
		$(BENCH_UTIL) tests/common/rxe_util.c $(LIBREGWATCH_IBV_A) \
		$(LIBREGWATCH_A) -libverbs -ldl $(LDLIBS)

bench-build: $(BENCH_HOST_BINS) $(BENCH_GUEST_BINS)

bench-host: $(BENCH_HOST_BINS)
	@for b in $(BENCH_HOST_BINS); do $$b --out $(BENCH_RESULTS) $(BENCH_ARGS) || exit 1; done

# deps first, on its own: the build needs what it installs.
bench: deps
	$(MAKE) module bench-build
	BENCH_RESULTS=$(BENCH_RESULTS) bench/run.sh

bench-smoke: deps
	$(MAKE) module bench-build
	BENCH_RESULTS=$(BUILD)/bench-smoke bench/run.sh --quick
