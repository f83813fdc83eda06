# The UCX / Open MPI bridge: an LD_PRELOAD library that feeds UCX's memory
# events (UCM) from regwatch; see userlib/ucx/regwatch_ucm.c.
LIBREGWATCH_UCM := $(BUILD)/libregwatch_ucm.so

ucx-bridge: $(LIBREGWATCH_UCM)

# libregwatch.a is built -fPIC, so it links into the shared object.
$(LIBREGWATCH_UCM): userlib/ucx/regwatch_ucm.c $(LIBREGWATCH_A) include/regwatch.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -shared -Wl,--no-undefined -Wl,-z,defs -o $@ $< $(LIBREGWATCH_A) -lucm $(LDLIBS)

# The guest test that drives UCX's registration cache directly links
# libucs/libucm (libucm's references into libucs need -lucs after it) and
# runs itself under the bridge.
$(BUILD)/tests/guest/test_ucx_rcache: GUEST_LDLIBS += -lucm -lucs
$(BUILD)/tests/guest/test_ucx_rcache: | $(LIBREGWATCH_UCM)
