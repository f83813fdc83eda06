# Guest tests: every tests/guest/test_*.c is one cmocka program, built into
# $(BUILD)/tests/guest/ and run inside the QEMU guest by tests/guest/run.sh.
# Shared helpers live in tests/common/*.c and are linked into every test,
# with the registration cache's ibverbs backend (libregwatch_ibverbs.a).

GUEST_SRCS := $(wildcard tests/guest/test_*.c)
GUEST_BINS := $(patsubst tests/guest/%.c,$(BUILD)/tests/guest/%,$(GUEST_SRCS))
COMMON_SRCS := $(wildcard tests/common/*.c)
GUEST_LDLIBS := -lcmocka -libverbs -lnuma -pthread

# Extra link inputs of particular tests (before the core libraries).
GUEST_EXTRA_test_libfabric := $(LIBREGWATCH_FI_A) -lfabric

guest-tests: $(GUEST_BINS)

# test_libfabric also runs with the preload library.
$(BUILD)/tests/guest/test_libfabric: $(LIBREGWATCH_FI_A) $(LIBREGWATCH_FI_SO)

$(BUILD)/tests/guest/%: tests/guest/%.c $(COMMON_SRCS) $(wildcard tests/common/*.h) $(LIBREGWATCH_IBV_A) $(LIBREGWATCH_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/common -o $@ $< $(COMMON_SRCS) $(GUEST_EXTRA_$*) $(LIBREGWATCH_IBV_A) $(LIBREGWATCH_A) $(GUEST_LDLIBS)
