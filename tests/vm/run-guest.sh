#!/bin/bash
# Boot the regwatch test guest under QEMU (TCG), run one command in it as
# root from the repository directory, and exit with its status.
#
# Usage: tests/vm/run-guest.sh [--timeout SEC] [--results DIR] [--mem MB]
#          [--kernel BZIMAGE] [--moddir DIR] [--append ARGS] [--disk IMG]
#          [--env NAME=VALUE ...] -- command [args...]
#
# --append adds kernel command-line arguments (the debug kernel's come from
# scripts/build-debug-kernel.sh --print-vars).
# Exit status: the command's; 124 if the wall-clock timeout hit; 125 if the
# guest gave no status (crash, setup failure); at least 1 if the guest
# kernel logged a BUG/WARNING/lockdep/KASAN... report or an unexpected taint.
# The guest console streams to stdout and is kept in build/vm/last-console.log,
# the guest kernel log in build/vm/last-dmesg.log.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
VMDIR=$REPO/build/vm
KVER=$(ls -1 /lib/modules | sort -V | tail -n 1)
TIMEOUT=900 RESULTS="" MEM=2048 KERNEL=/boot/vmlinuz-$KVER MODDIR=/lib/modules/$KVER
DISK="" ENVS=() APPEND=""

usage() {
	sed -n '5,7p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
	--timeout) TIMEOUT=$2; shift 2 ;;
	--results) RESULTS=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--kernel) KERNEL=$2; shift 2 ;;
	--moddir) MODDIR=$2; shift 2 ;;
	--append) APPEND=$2; shift 2 ;;
	--disk) DISK=$2; shift 2 ;;
	--env)
		[[ $2 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { echo "run-guest: bad --env '$2'" >&2; exit 2; }
		ENVS+=("$2"); shift 2 ;;
	--) shift; break ;;
	*) usage ;;
	esac
done
[ $# -gt 0 ] || usage
[[ $TIMEOUT =~ ^[0-9]+$ && $MEM =~ ^[0-9]+$ ]] || usage
[ -r "$KERNEL" ] || { echo "run-guest: no kernel $KERNEL" >&2; exit 2; }

# One initramfs per module tree: a Debian-kernel run and a --moddir run
# (debug kernel) at the same time must not replace each other's image.
INITRD=$VMDIR/initramfs.cpio.gz
[ "$MODDIR" = "/lib/modules/$KVER" ] || INITRD=$VMDIR/initramfs-$(basename "$MODDIR").cpio.gz
"$REPO/tests/vm/mkinitramfs.sh" --moddir "$MODDIR" --out "$INITRD"

# Per-run state directory, shared read-write with the guest as "vmstate":
# the job goes in, the status and kernel log come out.
STATE=$(mktemp -d "$VMDIR/run.XXXXXX")
OWN_RESULTS=""
if [ -z "$RESULTS" ]; then
	RESULTS=$(mktemp -d /tmp/regwatch-results.XXXXXX)
	OWN_RESULTS=$RESULTS
fi
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
	[ -f "$STATE/qemu.pid" ] && kill "$(cat "$STATE/qemu.pid")" 2>/dev/null
	rm -rf "$STATE" ${OWN_RESULTS:+"$OWN_RESULTS"}
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The guest kills the command by its own uptime (TCG's clock follows the
# host's) a little before our deadline, so a hung command still gives a
# status and a kernel check.
if [ "$TIMEOUT" -ge 60 ]; then margin=15; else margin=$((TIMEOUT / 4)); fi
{
	printf 'REGWATCH_REPO=%q\n' "$REPO"
	printf 'REGWATCH_VM_DEADLINE=%q\n' $((TIMEOUT - margin))
	printf 'REGWATCH_VM_MODDIR=%q\n' "$(cd "$MODDIR" && pwd)"
	[ -n "$DISK" ] && echo 'REGWATCH_VM_DISK=1'
	for e in ${ENVS[@]+"${ENVS[@]}"}; do
		printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"
	done
	printf 'set --'; printf ' %q' "$@"; echo
} >"$STATE/job.sh"

half=$((MEM / 2))
# shellcheck disable=SC2054 # commas belong to QEMU option values
qemu=(qemu-system-x86_64
	-accel tcg -cpu max			# KVM hangs on this machine
	-smp 2,sockets=2,cores=1,threads=1	# one CPU per node: no topology WARNING
	-m "${MEM}M"
	-object "memory-backend-ram,id=m0,size=${half}M"
	-object "memory-backend-ram,id=m1,size=$((MEM - half))M"
	-numa node,nodeid=0,cpus=0,memdev=m0
	-numa node,nodeid=1,cpus=1,memdev=m1
	-kernel "$KERNEL" -initrd "$INITRD"
	-append "console=ttyS0 quiet loglevel=4 panic=-1 regwatch_init=$REPO/tests/vm/guest-init.sh${APPEND:+ $APPEND}"
	# Headless, console on stdio. Not -nographic: that makes SeaBIOS echo
	# itself and terminal resets (ESC c, no-wrap) onto the serial line.
	-display none -vga none -serial stdio -monitor none
	-no-reboot -nic none			# no network: rxe runs on a veth
	-pidfile "$STATE/qemu.pid"
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
	# (QEMU option values escape a comma by doubling it)
	-virtfs "local,path=${RESULTS//,/,,},mount_tag=results,security_model=none,multidevs=remap"
	-virtfs "local,path=${STATE//,/,,},mount_tag=vmstate,security_model=none,multidevs=remap")
if [ -n "$DISK" ]; then
	fmt=raw; [[ $DISK == *.qcow2 ]] && fmt=qcow2
	qemu+=(-drive "file=${DISK//,/,,},if=virtio,format=$fmt")
fi

start=$SECONDS
# stdin from /dev/null: QEMU must not put a terminal into raw mode.
# In the background + wait, so that our INT/TERM trap runs at once (bash
# defers traps while a foreground job runs) and kills QEMU by its pidfile.
{
	timeout --foreground -k 10 "$TIMEOUT" "${qemu[@]}" </dev/null 2>&1
	echo $? 2>/dev/null >"$STATE/qemu.rc"	# gone if we were killed
} | sed -u "s/\r//g" | tee "$STATE/console.log" &
wait $! || true
qrc=$(cat "$STATE/qemu.rc" 2>/dev/null || echo 1)
rm -f "$STATE/qemu.pid"	# QEMU is gone: never kill a reused pid
elapsed=$((SECONDS - start))
[ -z "$(tail -c 1 "$STATE/console.log")" ] || echo	# end the guest's last line

# Logs are copied only now, so that parallel runs do not interleave them.
cp "$STATE/console.log" "$VMDIR/last-console.log"
for f in dmesg.txt kmsg.log; do
	[ -s "$STATE/$f" ] && { cp "$STATE/$f" "$VMDIR/last-dmesg.log"; break; }
done
rc=$(cat "$STATE/exit" 2>/dev/null || true)
kernel=$(cat "$STATE/kernel" 2>/dev/null || true)
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	echo "run-guest: timed out after ${TIMEOUT}s, QEMU killed" >&2
	rc=124
elif ! [[ $rc =~ ^[0-9]+$ ]]; then
	echo "run-guest: the guest gave no exit status (QEMU rc $qrc)" >&2
	rc=125
elif [ "$kernel" != ok ]; then
	echo "run-guest: guest kernel check failed (REGWATCH-GUEST-KERNEL=${kernel:-missing})" >&2
	[ "$rc" != 0 ] || rc=1
fi
# On failure show the end of the guest kernel log: for a plain command
# failure only what the kernel said while the command ran.
if [ "$rc" != 0 ] && [ -s "$VMDIR/last-dmesg.log" ]; then
	first=$(cat "$STATE/first-bad" 2>/dev/null || true)
	if [ -n "$first" ]; then	# the first report the guest flagged
		tail_log=$(sed -n "$first,$((first + 39))p" "$VMDIR/last-dmesg.log")
	elif grep -q 'regwatch-vm: command start' "$VMDIR/last-dmesg.log"; then
		tail_log=$(sed '1,/regwatch-vm: command start/d' "$VMDIR/last-dmesg.log" | tail -n 40)
	else				# died before the command: show the end of the boot
		tail_log=$(tail -n 40 "$VMDIR/last-dmesg.log")
	fi
	if [ -n "$tail_log" ]; then
		echo "run-guest: guest kernel log (all of it in build/vm/last-dmesg.log):" >&2
		printf '%s\n' "$tail_log" >&2
	fi
fi
echo "run-guest: exit $rc, kernel ${kernel:-unchecked}, ${elapsed}s" >&2
exit "$rc"
