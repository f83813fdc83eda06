#!/bin/bash
# PID 1 of the regwatch test guest, started by the initramfs after
# switch_root into the overlay of the host root. Sets up the environment the
# tests expect (see docs), runs the job that run-guest.sh wrote into the
# vmstate share, reports its status and the kernel's health, powers off.
# No `set -e`: PID 1 must always reach the power-off at the end.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LC_ALL=C.UTF-8
STATE=/run/regwatch-vm

say() { echo "regwatch-vm: $*"; }

# End the run: record the status for the host, print the machine-readable
# lines, power off. busybox poweroff -f is a synchronous reboot(2); letting
# PID 1 exit instead would panic.
finish() {
	local rc=$1
	echo "$rc" >"$STATE/exit"
	echo "REGWATCH-GUEST-EXIT=$rc"
	check_kernel
	sync
	busybox poweroff -f
	sleep 10	# not reached
}

# Fatal setup error: the command is not run.
setup_failed() {
	say "setup failed: $*"
	finish 125
}

check_kernel() {
	local bad stall t other kver=ok
	# A debug kernel with kmemleak only reports leaks after a scan, and
	# only from the second scan that sees an object (the first one
	# records its checksum and leaves it grey): scan twice.
	# From a process of their own: kmemleak quietly stops a scan when the
	# task that asked has a signal pending, and PID 1 gets a SIGCHLD from
	# every orphan that exits (the command's leftovers).
	if [ -w /sys/kernel/debug/kmemleak ]; then
		sh -c 'echo scan >/sys/kernel/debug/kmemleak;
		       echo scan >/sys/kernel/debug/kmemleak'
	fi
	dmesg >"$STATE/dmesg.txt" 2>&1
	# Stalls and lockups happen under TCG on a busy host: only ours count.
	# "Modules linked in:" lines name regwatch in every trace once loaded.
	stall='soft lockup|detected stall|self-detected stall|blocked for more than [0-9]+ seconds'
	bad='BUG:|kernel BUG at|WARNING:|Oops|general protection|Kernel panic'
	bad="$bad|possible circular locking|possible recursive locking"
	bad="$bad|inconsistent lock state|suspicious RCU"
	bad="$bad|KASAN:|UBSAN:|KFENCE:|suspected memory leak"
	out=$(awk -v stall="$stall" -v bad="$bad" '
		$0 ~ stall { print "stall: " $0; win = 80; at = NR; next }
		win > 0 && /regwatch/ && !/Modules linked in:/ && !ours { ours = at }
		win > 0 { win-- }
		$0 ~ bad { print "bad: " $0; if (!first) print "first: " (first = NR) }
		END {
			if (!ours) exit
			print "bad: (a stall/lockup report above mentions regwatch)"
			if (!first) print "first: " ours
		}
	' "$STATE/dmesg.txt")
	stall=$(printf '%s\n' "$out" | sed -n 's/^stall: //p')
	bad=$(printf '%s\n' "$out" | sed -n 's/^bad: //p')
	# Where the first report starts, for the host to show its context.
	printf '%s\n' "$out" | sed -n 's/^first: //p' >"$STATE/first-bad"
	[ -n "$stall" ] && printf 'regwatch-vm: kernel stall report (not failing unless regwatch is in it):\n%s\n' "$stall"
	# Out-of-tree, unsigned modules taint O (4096) and E (8192): expected.
	t=$(cat /proc/sys/kernel/tainted)
	other=$((t & ~(4096 | 8192)))
	[ "$other" != 0 ] && bad="$bad${bad:+
}kernel tainted=$t (unexpected taint bits $other)"
	[ -n "$bad" ] && kver=bad
	echo "$kver" >"$STATE/kernel"
	echo "REGWATCH-GUEST-KERNEL=$kver"
	[ -n "$bad" ] && printf '%s\n' "$bad" | head -n 50
	# The log only counts leaks; their objects and allocation stacks are
	# in kmemleak's file: keep them, and show whose they are.
	if [ -r /sys/kernel/debug/kmemleak ]; then
		cat /sys/kernel/debug/kmemleak >"$STATE/kmemleak.txt" 2>/dev/null
		if [ -s "$STATE/kmemleak.txt" ]; then
			echo "regwatch-vm: kmemleak suspects ($(grep -c '^unreferenced object' "$STATE/kmemleak.txt")):"
			head -n 150 "$STATE/kmemleak.txt"
		fi
	fi
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug
# The overlay root is writable already; a tmpfs on /tmp would hide a
# repository checked out under the host's /tmp (CI clones anywhere).
# (This script lives in the repository: $0 tells where it is.)
case $0 in
/tmp/*) ;;
*) mount -t tmpfs -o mode=1777 tmpfs /tmp ;;
esac
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p "$STATE"
# Private read-write share with the host: the job in, status and logs out.
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 vmstate "$STATE"; then
	echo "REGWATCH-GUEST-EXIT=125"
	busybox poweroff -f
fi
# Keep a live copy of the kernel log on the host side, for runs that hang.
dmesg -w >"$STATE/kmsg.log" 2>&1 &

# Sets REGWATCH_REPO, REGWATCH_VM_DEADLINE (guest uptime, s), the exported
# --env variables and the command as "$@".
# shellcheck disable=SC1091
. "$STATE/job.sh" || setup_failed "cannot read the job"
hostname regwatch-vm
# --moddir (e.g. a debug kernel's modules_install tree): make modprobe find
# it where it looks.
kmods=/lib/modules/$(uname -r)
if [ -d "$REGWATCH_VM_MODDIR" ] && [ "$REGWATCH_VM_MODDIR" != "$kmods" ]; then
	mkdir -p "$kmods" && mount --bind "$REGWATCH_VM_MODDIR" "$kmods" ||
		setup_failed "cannot bind $REGWATCH_VM_MODDIR on $kmods"
fi
ip link set lo up

# Background mm activity fires notifiers on its own; switch it off unless
# a test wants it.
if [ "${REGWATCH_VM_BACKGROUND:-0}" != 1 ]; then
	echo 0 >/proc/sys/kernel/numa_balancing &&
	echo madvise >/sys/kernel/mm/transparent_hugepage/enabled &&
	echo 0 >/sys/kernel/mm/transparent_hugepage/khugepaged/defrag &&
	echo 0 >/sys/kernel/mm/ksm/run || setup_failed "cannot quiet mm background work"
fi

# Swap for reclaim tests (MADV_PAGEOUT, memory pressure).
{ modprobe zram num_devices=1 &&
  echo 256M >/sys/block/zram0/disksize &&
  mkswap /dev/zram0 >/dev/null && swapon /dev/zram0; } || setup_failed "zram swap"

# No udev here: load the disk driver by hand when run-guest.sh gave a disk.
[ "${REGWATCH_VM_DISK:-0}" = 1 ] && { modprobe virtio_blk || setup_failed "virtio_blk"; }

# REGWATCH_KO (run-guest.sh --env): another build of the module, e.g. the
# one built against a debug kernel (scripts/build-debug-kernel.sh).
KO=${REGWATCH_KO:-$REGWATCH_REPO/kernel/regwatch.ko}
if [ "${REGWATCH_VM_NO_MODULE:-0}" = 1 ]; then
	say "regwatch.ko not loaded (REGWATCH_VM_NO_MODULE=1)"
elif [ ! -f "$KO" ]; then
	say "regwatch.ko not loaded ($KO not built)"
else
	# shellcheck disable=SC2086
	insmod "$KO" $REGWATCH_MODPARAMS || setup_failed "insmod $KO $REGWATCH_MODPARAMS"
	say "regwatch.ko loaded${REGWATCH_MODPARAMS:+ ($REGWATCH_MODPARAMS)}"
fi

# Soft-RoCE: rxe cannot sit on lo; one rxe device on one end of a veth pair
# talks to itself (GID index 1 = the IPv4-mapped address). No outside net.
{ modprobe rdma_rxe &&
  ip link add veth0 type veth peer name veth1 &&
  ip addr add 10.77.0.1/24 dev veth0 &&
  ip link set veth0 up && ip link set veth1 up &&
  rdma link add rxe0 type rxe netdev veth0; } || setup_failed "rxe0 on veth0"
# Tests use GID index 1: wait until it holds ::ffff:10.77.0.1.
gid=/sys/class/infiniband/rxe0/ports/1/gids/1
for _ in 1 2 3 4 5 6 7 8 9 10; do
	grep -qs ':ffff:0a4d:0001$' $gid && break
	sleep 1
done
grep -qs ':ffff:0a4d:0001$' $gid || setup_failed "rxe0 GID 1 is not 10.77.0.1"

# rxe charges pinned pages to RLIMIT_MEMLOCK.
ulimit -l unlimited
cd "$REGWATCH_REPO" || setup_failed "cd $REGWATCH_REPO"
# Marks where the command starts in the kernel log (run-guest.sh shows
# what follows when the command fails).
echo "<6>regwatch-vm: command start" >/dev/kmsg
# kmemleak's own thread scans every 10 minutes while the command runs and
# reports objects it cannot see a pointer to at that moment; on the debug
# kernel some are core-mm VMAs that are referenced again later (false
# positives, docs/hardening.md). A leak is what is still unreferenced at
# the end: check_kernel scans twice then, and any report fails the run.
[ -w /sys/kernel/debug/kmemleak ] && echo scan=off >/sys/kernel/debug/kmemleak
left=$((REGWATCH_VM_DEADLINE - $(cut -d. -f1 /proc/uptime)))
[ $left -gt 0 ] || left=1
timeout -k 5 $left "$@" </dev/null
rc=$?
[ $rc = 124 ] && say "command timed out after ${left}s"
finish $rc
