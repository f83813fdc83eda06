#!/bin/bash
# Build the guest's tiny initramfs: static busybox + the modules needed to
# mount the host root over 9p with a tmpfs overlay, then switch_root into it.
# Usage: tests/vm/mkinitramfs.sh [--moddir /lib/modules/VER] [--out FILE]
# Cached: rebuilt only when this script, busybox or the modules change.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
MODDIR=/lib/modules/$(ls -1 /lib/modules | sort -V | tail -n 1)
OUT=$REPO/build/vm/initramfs.cpio.gz
while [ $# -gt 0 ]; do
	case $1 in
	--moddir) MODDIR=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	*) echo "usage: $0 [--moddir DIR] [--out FILE]" >&2; exit 2 ;;
	esac
done

# Load order matters: insmod does not resolve dependencies.
MODS="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
      netfs fscache 9pnet 9pnet_virtio 9p overlay"
BUSYBOX=/bin/busybox

files=""
for m in $MODS; do
	f=$(find "$MODDIR/" -name "$m.ko" -o -name "$m.ko.*" 2>/dev/null | head -n 1)
	if [ -n "$f" ]; then
		files="$files $f"
	elif grep -qs "/$m\.ko\$" "$MODDIR/modules.builtin"; then
		:	# built into the kernel (e.g. a debug kernel): nothing to load
	else
		echo "mkinitramfs: $m not found in $MODDIR (nor built in)" >&2
		exit 1
	fi
done

# The cache key: everything that goes into the image.
# shellcheck disable=SC2086
stamp=$( { cat "$0"; echo "$MODDIR"; ls -lL --time-style=+%s.%N "$BUSYBOX" $files; } |
	sha256sum | cut -d' ' -f1)
if [ -f "$OUT" ] && [ "$(cat "$OUT.stamp" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,mnt/lower,mnt/rw,newroot,mods}
cp "$BUSYBOX" "$root/bin/busybox"
# The kernel opens /dev/console for init's stdio before /init can mount
# devtmpfs: without this node init would run with no output at all.
mknod "$root/dev/console" c 5 1
: >"$root/mods/order"
for f in $files; do
	b=$(basename "$f")
	# busybox insmod takes plain .ko only: decompress here.
	case $b in
	*.ko.xz) xz -dc "$f" >"$root/mods/${b%.xz}" ;;
	*.ko.zst) zstd -qdc "$f" >"$root/mods/${b%.zst}" ;;
	*.ko.gz) gzip -dc "$f" >"$root/mods/${b%.gz}" ;;
	*) cp "$f" "$root/mods/$b" ;;
	esac
	echo "${b%%.ko*}.ko" >>"$root/mods/order"
done

cat >"$root/init" <<'INIT'
#!/bin/busybox sh
# initramfs PID 1: mount the host root (9p, read-only) under a tmpfs overlay
# so the guest can write, mount the results share, and switch_root into it.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

die() {
	echo "regwatch-vm initramfs: $*"
	echo "REGWATCH-GUEST-EXIT=125"
	poweroff -f
}

for m in $(cat /mods/order); do
	insmod "/mods/$m" || die "insmod $m failed"
done

# Parameters from the kernel command line (set by run-guest.sh).
for a in $(cat /proc/cmdline); do
	case $a in
	regwatch_init=*) GUEST_INIT=${a#*=} ;;
	esac
done

# msize: bigger 9p messages make reading binaries over 9p much faster.
# cache=loose on the read-only root is safe (the host does not change it
# during a run) and saves a round trip per lookup.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose \
	hostroot /mnt/lower || die "cannot mount the 9p host root"
mount -t tmpfs -o mode=755 tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay \
	-o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work \
	/newroot || die "cannot mount the overlay"
mkdir -p /newroot/results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 \
	results /newroot/results || die "cannot mount the results share"
[ -f "/newroot$GUEST_INIT" ] || die "guest init '$GUEST_INIT' not found"

umount /proc /sys
mount --move /dev /newroot/dev
# switch_root (not chroot): the kernel's request_module() helper must run
# the real root's /sbin/modprobe (rdma_rxe needs it).
exec switch_root /newroot /bin/bash "$GUEST_INIT"
INIT
chmod +x "$root/init"

mkdir -p "$(dirname "$OUT")"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -1 >"$tmp/out"
mv "$tmp/out" "$OUT"
echo "$stamp" >"$OUT.stamp"
echo "mkinitramfs: built $OUT from $MODDIR"
