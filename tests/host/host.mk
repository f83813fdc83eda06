# Host tests: every tests/host/test_*.c is one cmocka program that runs on
# the build machine without the module (fakes stand in for the kernel).
# A test may list extra linker flags in a line "// LDFLAGS: ..." at its top.
# Every test links libregwatch_fi.a ahead of libregwatch.a: only what a test
# calls is pulled in, and the libfabric monitor's tests (test_fi_*.c) define
# their own regwatch_* and fi_open() fakes, which then win over the real ones.

HOST_SRCS := $(wildcard tests/host/test_*.c)
HOST_BINS := $(patsubst tests/host/%.c,$(BUILD)/tests/host/%,$(HOST_SRCS))

host-tests: $(HOST_BINS)

$(BUILD)/tests/host/%: tests/host/%.c $(LIBREGWATCH_FI_A) $(LIBREGWATCH_A) $(wildcard userlib/*.h userlib/libfabric/*.h tests/host/*.h) include/regwatch.h include/uapi/regwatch.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iuserlib -Iuserlib/libfabric -o $@ $< $(LIBREGWATCH_FI_A) $(LIBREGWATCH_A) \
		$(shell sed -n 's|^// LDFLAGS: ||p' $<) -lcmocka $(LDLIBS)

check-host: host-tests
	@for t in $(HOST_BINS); do echo "== $$t"; $$t || exit 1; done
