# Examples: examples/*.c, each a program linked with libregwatch.
EXAMPLE_SRCS := $(wildcard examples/*.c)
EXAMPLE_BINS := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRCS))

examples: $(EXAMPLE_BINS)

$(BUILD)/examples/%: examples/%.c $(LIBREGWATCH_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBREGWATCH_A) $(LDLIBS)

# The cache demo does RDMA on rxe: it also needs the ibverbs backend, the
# loopback QP helper of the guest tests and libibverbs.
$(BUILD)/examples/cache_demo: examples/cache_demo.c tests/common/rxe_util.c tests/common/rxe_util.h $(LIBREGWATCH_IBV_A) $(LIBREGWATCH_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/common -o $@ $< tests/common/rxe_util.c $(LIBREGWATCH_IBV_A) $(LIBREGWATCH_A) -libverbs $(LDLIBS)
