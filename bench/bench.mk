# Host micro-benchmarks: bench/*.c, each a program linked with libregwatch
# (and its internal headers: they plug in stand-in monitors).
# `make bench-host` runs them; BENCH_ARGS=--quick for a smoke run.

BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))

.PHONY: bench-host

$(BUILD)/bench/%: bench/%.c $(LIBREGWATCH_A) include/regwatch_cache.h $(wildcard userlib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iuserlib -o $@ $< $(LIBREGWATCH_A) $(LDLIBS)

bench-host: $(BENCH_BINS)
	@for b in $(BENCH_BINS); do echo "== $$b"; $$b $(BENCH_ARGS) || exit 1; done
