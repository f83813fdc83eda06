# libregwatch_fi: regwatch as libfabric's import monitor.
#   $(BUILD)/libregwatch_fi.a   regwatch_fi_import() for programs that call
#                               it (link with $(LIBREGWATCH_A) -lfabric)
#   $(BUILD)/libregwatch_fi.so  the same, imported by a constructor: for
#                               LD_PRELOAD under unmodified programs
# Kept out of libregwatch (userlib/lib.mk only takes userlib/*.c) so that
# the core library does not need libfabric. Needs libfabric-dev (>= 1.13).

LIBREGWATCH_FI_SRCS := userlib/libfabric/fi_monitor.c \
	userlib/libfabric/fi_subs.c userlib/libfabric/fi_delivery.c
LIBREGWATCH_FI_OBJS := $(patsubst userlib/libfabric/%.c,$(BUILD)/userlib/libfabric/%.o,$(LIBREGWATCH_FI_SRCS))
LIBREGWATCH_FI_A := $(BUILD)/libregwatch_fi.a
LIBREGWATCH_FI_SO := $(BUILD)/libregwatch_fi.so

.PHONY: lib-libfabric
lib-libfabric: $(LIBREGWATCH_FI_A) $(LIBREGWATCH_FI_SO)
lib: $(LIBREGWATCH_FI_A) $(LIBREGWATCH_FI_SO)

$(BUILD)/userlib/libfabric/%.o: userlib/libfabric/%.c $(wildcard userlib/libfabric/*.h) include/regwatch_libfabric.h include/regwatch.h include/uapi/regwatch.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -Iuserlib/libfabric -c -o $@ $<

$(LIBREGWATCH_FI_A): $(LIBREGWATCH_FI_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

# Only the public functions are exported (the version script), so that the
# preloaded copy never interposes on a program's own libregwatch.
$(LIBREGWATCH_FI_SO): $(BUILD)/userlib/libfabric/fi_preload.o $(LIBREGWATCH_FI_A) $(LIBREGWATCH_A) userlib/libfabric/libregwatch_fi.map
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -Wl,--version-script=userlib/libfabric/libregwatch_fi.map -Wl,-z,defs \
		-o $@ $< $(LIBREGWATCH_FI_A) $(LIBREGWATCH_A) -lfabric $(LDLIBS)
