# libregwatch: userlib/*.c -> $(BUILD)/libregwatch.a

LIBREGWATCH_SRCS := $(wildcard userlib/*.c)
LIBREGWATCH_OBJS := $(patsubst userlib/%.c,$(BUILD)/userlib/%.o,$(LIBREGWATCH_SRCS))
LIBREGWATCH_A := $(BUILD)/libregwatch.a

lib: $(LIBREGWATCH_A)

$(BUILD)/userlib/%.o: userlib/%.c $(wildcard userlib/*.h) include/regwatch.h include/uapi/regwatch.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -Iuserlib -c -o $@ $<

$(LIBREGWATCH_A): $(LIBREGWATCH_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
