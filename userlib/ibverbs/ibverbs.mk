# libregwatch_ibverbs: the registration cache's ibverbs backend,
# userlib/ibverbs/*.c -> $(BUILD)/libregwatch_ibverbs.a. Kept out of
# libregwatch (userlib/lib.mk only takes userlib/*.c) so that the core
# library and the host tests do not need -libverbs. Link a program with
# $(LIBREGWATCH_IBV_A) $(LIBREGWATCH_A) -libverbs.

LIBREGWATCH_IBV_SRCS := $(wildcard userlib/ibverbs/*.c)
LIBREGWATCH_IBV_OBJS := $(patsubst userlib/ibverbs/%.c,$(BUILD)/userlib/ibverbs/%.o,$(LIBREGWATCH_IBV_SRCS))
LIBREGWATCH_IBV_A := $(BUILD)/libregwatch_ibverbs.a

.PHONY: lib-ibverbs
lib-ibverbs: $(LIBREGWATCH_IBV_A)
lib: $(LIBREGWATCH_IBV_A)

$(BUILD)/userlib/ibverbs/%.o: userlib/ibverbs/%.c include/regwatch_ibverbs.h include/regwatch_cache.h include/regwatch.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -Iuserlib -c -o $@ $<

$(LIBREGWATCH_IBV_A): $(LIBREGWATCH_IBV_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
