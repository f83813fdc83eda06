#!/bin/bash
# Build the regwatch debug kernel and the module against it.
#
#   kernel: Debian's linux-source-6.1 + kernel/debug.config over allnoconfig
#           (KASAN, lockdep, kmemleak, UBSAN, DEBUG_VM, fault injection;
#           virtio, 9p, overlay, veth, rxe, zram built in), built out of
#           the source tree in build/debug/linux (O=).
#   moddir: build/debug/modroot/lib/modules/<release> (modules_install: no
#           loadable module, but modules.builtin* and depmod's indexes, so
#           that modprobe of a built-in module succeeds in the guest);
#           for tests/vm/run-guest.sh --moddir.
#   module: kernel/*.c *.h Kbuild and include/uapi/*.h copied to
#           build/debug/module/{kernel,include/uapi} and built there against
#           build/debug/linux (with -g, for faddr2line):
#           build/debug/module/kernel/regwatch.ko.
#
# Cached: the kernel is configured and built again only when the fragment,
# the build recipe (RECIPE below), the kernel source (its Debian package
# version and its Makefile version) or the compiler changed; the module is
# rebuilt by make when its sources changed. Builds run under nice (the
# machine is shared). Prints where everything is and the time taken.
#
# Usage: scripts/build-debug-kernel.sh [--force] [--print-vars]
#   --force       rebuild the kernel even when the cache says it is current
#   --print-vars  only print KERNEL=, MODDIR=, KO=, KDIR=, APPEND= lines
#                 (shell-quoted, for eval; no build)
# Environment: REGWATCH_KSRC (default /usr/src/linux-source-6.1),
#   JOBS (default nproc).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SRC=${REGWATCH_KSRC:-/usr/src/linux-source-6.1}
OUT=$REPO/build/debug
KB=$OUT/linux
MODROOT=$OUT/modroot
MOD=$OUT/module
FRAG=$REPO/kernel/debug.config
JOBS=${JOBS:-$(nproc)}
FORCE=0 PRINT=0
while [ $# -gt 0 ]; do
	case $1 in
	--force) FORCE=1; shift ;;
	--print-vars) PRINT=1; shift ;;
	*) sed -n '/^# Usage:/,/^# Environment/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done

# The release (uname -r in the guest) is fixed by the source's version and
# the fragment's LOCALVERSION: known without building.
release() {
	local v p s lv
	v=$(sed -n 's/^VERSION = //p' "$SRC/Makefile")
	p=$(sed -n 's/^PATCHLEVEL = //p' "$SRC/Makefile")
	s=$(sed -n 's/^SUBLEVEL = //p' "$SRC/Makefile")
	lv=$(sed -n 's/^CONFIG_LOCALVERSION="\(.*\)"$/\1/p' "$FRAG")
	echo "$v.$p.$s$lv"
}
print_vars() {
	printf 'KERNEL=%q\n' "$KB/arch/x86/boot/bzImage"
	printf 'MODDIR=%q\n' "$MODROOT/lib/modules/$(release)"
	printf 'KO=%q\n' "$MOD/kernel/regwatch.ko"
	printf 'KDIR=%q\n' "$KB"
	# Kernel arguments for run-guest.sh --append:
	# acpi=noirq: QEMU's i440fx _PRT is an AML While loop that this kernel
	#   (KASAN, lockdep, kmemleak: every allocation saves a stack trace)
	#   cannot finish within ACPICA's 30 s loop timeout under TCG: three
	#   virtio devices cost 90 s of boot and end with "no GSI" anyway
	#   (virtio uses MSI-X). Legacy routing from the BIOS table instead.
	# log_buf_len=16M: the kernel log must hold every report of the run
	#   (guest-init.sh scans dmesg at the end; 128 KiB by default).
	printf 'APPEND=%q\n' "acpi=noirq pci=nomsi log_buf_len=16M"
}
if [ $PRINT = 1 ]; then
	print_vars
	exit 0
fi

say() { echo "build-debug-kernel: $*"; }
t0=$SECONDS
[ -f "$SRC/Makefile" ] || { say "no kernel source in $SRC (scripts/deps.sh unpacks it)" >&2; exit 1; }
for tool in flex bison bc gcc make depmod; do
	command -v $tool >/dev/null || { say "$tool missing (scripts/deps.sh)" >&2; exit 1; }
done
[ -f /usr/include/gelf.h ] || { say "libelf-dev missing (objtool needs it; scripts/deps.sh)" >&2; exit 1; }
mkdir -p "$KB" "$MOD"

# ---- kernel --------------------------------------------------------------
srcid=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || true)
# Bump RECIPE when a change below alters the kernel that gets built (not
# for comments or the module part: editing those must not cost a rebuild).
RECIPE=2
stamp=$( { cat "$FRAG"; echo "recipe $RECIPE $SRC $srcid $(release)"; gcc --version | head -n 1; } |
	sha256sum | cut -d' ' -f1)
bz=$KB/arch/x86/boot/bzImage
if [ $FORCE = 0 ] && [ -f "$bz" ] && [ "$(cat "$KB/.regwatch-stamp" 2>/dev/null)" = "$stamp" ]; then
	say "kernel $(release) is current ($bz)"
else
	rm -f "$KB/.regwatch-stamp"
	say "configuring $(release): allnoconfig + $FRAG"
	nice make -s -C "$SRC" O="$KB" KCONFIG_ALLCONFIG="$FRAG" allnoconfig
	# Every value the fragment asks for must be in the result: a symbol
	# that lost a dependency would otherwise vanish without a word.
	bad=0
	while read -r sym; do
		want=$(grep -E "^($sym=|# $sym is not set)" "$FRAG")
		got=$(grep -E "^($sym=|# $sym is not set)" "$KB/.config" || true)
		if [ "$want" != "$got" ]; then
			say "config: asked '$want', got '${got:-(absent: unmet dependency)}'" >&2
			bad=1
		fi
	done < <(sed -n -e 's/^\(CONFIG_[A-Za-z0-9_]*\)=.*/\1/p' \
		-e 's/^# \(CONFIG_[A-Za-z0-9_]*\) is not set$/\1/p' "$FRAG")
	[ $bad = 0 ] || { say "fix $FRAG" >&2; exit 1; }
	say "building with -j$JOBS (a few minutes)"
	tk=$SECONDS
	nice make -s -C "$KB" -j"$JOBS" bzImage modules
	say "kernel built in $((SECONDS - tk))s"
	rm -rf "$MODROOT"
	make -s -C "$KB" INSTALL_MOD_PATH="$MODROOT" modules_install >/dev/null
	echo "$stamp" >"$KB/.regwatch-stamp"
fi
# A kernel tree cached without its modroot (copied alone) needs only the
# install step, not a rebuild.
if [ ! -f "$MODROOT/lib/modules/$(release)/modules.builtin" ]; then
	say "installing modules.builtin into $MODROOT"
	rm -rf "$MODROOT"
	make -s -C "$KB" INSTALL_MOD_PATH="$MODROOT" modules_install >/dev/null
fi
[ -f "$MODROOT/lib/modules/$(release)/modules.builtin" ] ||
	{ say "no modules.builtin in $MODROOT/lib/modules/$(release)" >&2; exit 1; }

# ---- module --------------------------------------------------------------
# A private copy of the sources in the repository's layout (kernel/ includes
# ../include/uapi/regwatch.h): building in kernel/ would mix the objects of
# two kernels. Files are copied only when changed, so make stays
# incremental.
sync_dir() {	# sync_dir FROM TO GLOB...: copy changed files, drop removed ones
	local from=$1 to=$2 f b
	shift 2
	mkdir -p "$to"
	for f in "$@"; do
		[ -f "$from/$f" ] || continue
		cmp -s "$from/$f" "$to/$f" || cp "$from/$f" "$to/$f"
	done
	for f in "$to"/*.c "$to"/*.h; do
		[ -e "$f" ] || continue
		b=$(basename "$f")
		case $b in *.mod.c) continue ;; esac
		[ -e "$from/$b" ] || rm -f "$f"
	done
}
(cd "$REPO/kernel" && ls *.c *.h Kbuild 2>/dev/null | grep -v '\.mod\.c$') >"$OUT/.module-files"
# shellcheck disable=SC2046
sync_dir "$REPO/kernel" "$MOD/kernel" $(cat "$OUT/.module-files")
sync_dir "$REPO/include/uapi" "$MOD/include/uapi" $(cd "$REPO/include/uapi" && ls *.h)
nice make -s -C "$KB" M="$MOD/kernel" KCFLAGS=-g modules
[ -f "$MOD/kernel/regwatch.ko" ] || { say "module build produced no regwatch.ko" >&2; exit 1; }

say "done in $((SECONDS - t0))s"
print_vars | sed 's/^/build-debug-kernel: /'
