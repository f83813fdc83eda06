# MPI programs (Debian's Open MPI, mpicc), run in the guest by
# tests/mpi/run.sh over UCX on rxe.
MPICC ?= mpicc
MPI_SRCS := $(wildcard tests/mpi/*.c)
MPI_BINS := $(patsubst tests/mpi/%.c,$(BUILD)/tests/mpi/%,$(MPI_SRCS))

mpi-tests: $(MPI_BINS)

# Plain CFLAGS (no -Iinclude: these programs know nothing of regwatch).
$(BUILD)/tests/mpi/%: tests/mpi/%.c
	@mkdir -p $(dir $@)
	$(MPICC) $(CFLAGS) -o $@ $<
