# Debug-kernel test pass (issue 5). Included from the top-level Makefile:
#   include tests/vm/debug.mk
#
# make check-debug     build the debug kernel (kernel/debug.config over
#                      Debian's linux-source-6.1, cached in build/debug/linux)
#                      and regwatch.ko against it (build/debug/module), run
#                      the guest suite, the bite module and fault injection
#                      on it; any KASAN, lockdep, UBSAN, KFENCE, kmemleak
#                      report or WARN fails. Ends with "N passed, N failed".
# make debug-kernel    only build the debug kernel and the module.
# make check-debug-bite  only the proof that the debug pass fails on each
#                      kind of report (a test module that leaks, overflows...).
# make fault-inject    only fault injection (failslab, fail_page_alloc) over
#                      guest tests, in the debug guest (scripts/fault-inject.sh).

.PHONY: check-debug debug-kernel check-debug-bite fault-inject

check-debug: deps
	scripts/check-debug.sh

debug-kernel: deps
	scripts/build-debug-kernel.sh

check-debug-bite: deps
	scripts/check-debug-bite.sh

fault-inject: deps lib guest-tests
	scripts/fault-inject.sh --host
