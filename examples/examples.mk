# Examples: examples/*.c, each a program linked with libregwatch.
EXAMPLE_SRCS := $(wildcard examples/*.c)
EXAMPLE_BINS := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRCS))

examples: $(EXAMPLE_BINS)

$(BUILD)/examples/%: examples/%.c $(LIBREGWATCH_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIBREGWATCH_A) $(LDLIBS)
