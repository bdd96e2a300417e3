#!/bin/bash
# virtio I/O of kvz-vmm against QEMU, side by side in ONE nested-lab run:
# the same L2 kernel and initramfs boot under kvz-vmm and then under
# qemu-system-x86_64 -accel kvm (both inside L1, one after the other), each
# with a virtio-blk disk (a 128 MiB raw file on L1's tmpfs) and a virtio-net
# TAP on one bridge. Inside the guest:
#   sequential write and read (dd 1 MiB blocks, 64 MiB, fsync / cold cache),
#   random 4 KiB direct reads (300 dd invocations: includes fork costs,
#   identical for both), ping round trip to L1,
# and from L1: TCP transfer of 32 MiB from the guest (guest httpd, L1 wget).
# Four boots: kvz-vmm and QEMU each with virtio-net in the VMM process
# (kvz-vmm vhost=off, QEMU's default) and with vhost-net (kvz-vmm's default
# where /dev/vhost-net works, QEMU vhost=on); each pair is compared.
# L1 allows shmem huge pages (see the L1 script) so both VMMs' guest RAM
# uses 2 MiB pages. Prints each figure and kvz/QEMU ratios. Absolute numbers are those of an
# emulator (QEMU TCG runs L1); only the ratios mean something.
# Needs: the lab (lab/kvzlab.py: qemu-system-x86, linux-image-amd64,
# busybox-static) and a built kvz-vmm (BUILD_DIR, default build).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$here"
exec python3 - "$@" <<'PY'
import os, re, sys
import kvzlab

kvzlab.bench_require("virtio_lab", kvzlab.default_vmm())

L2_INIT = r"""
t() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }
ip link set lo up; ip link set eth0 up; ip addr add 10.0.0.2/24 dev eth0
a=$(t); dd if=/dev/zero of=/dev/vda bs=1M count=64 conv=fsync 2>/dev/null; b=$(t)
echo "L2-SEQ-WRITE-MS: $((b - a))"
echo 3 > /proc/sys/vm/drop_caches
a=$(t); dd if=/dev/vda of=/dev/null bs=1M count=64 2>/dev/null; b=$(t)
echo "L2-SEQ-READ-MS: $((b - a))"
a=$(t); i=0
while [ $i -lt 300 ]; do
  dd if=/dev/vda of=/dev/null bs=4096 count=1 skip=$(( (i * 7919) % 32768 )) iflag=direct 2>/dev/null
  i=$((i + 1))
done; b=$(t)
echo "L2-RAND-READ-MS: $((b - a))"
i=0; while [ $i -lt 60 ] && ! ping -c 1 -W 1 10.0.0.1 >/dev/null 2>&1; do i=$((i + 1)); sleep 1; done
ping -c 20 -i 0.2 10.0.0.1 | tail -1 | sed 's/^/L2-PING: /'
mkdir -p /tmp/www && dd if=/dev/urandom of=/tmp/www/blob bs=1M count=32 2>/dev/null
httpd -p 8080 -h /tmp/www && echo "L2-SERVE-UP"
timeout 300 nc -l -p 5002 > /dev/null
reboot -f
"""

L1_SCRIPT = r"""
# kvz-vmm's guest RAM is a memfd, which gets huge pages only when shmem THP
# is allowed; QEMU's anonymous RAM already gets them (enabled=always). With
# 4 KiB pages every first touch of guest RAM is a nested page fault, which
# dominated the disk figures (page cache filling), not the virtio path.
echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled
echo "L1-THP: shmem=$(cat /sys/kernel/mm/transparent_hugepage/shmem_enabled) anon=$(cat /sys/kernel/mm/transparent_hugepage/enabled)"
ms() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }
waitfor() { i=0; while ! grep -q "$2" $1; do i=$((i+1)); [ $i -gt 600 ] && return 1; sleep 1; done; }
ip link add br0 type bridge && ip addr add 10.0.0.1/24 dev br0 && ip link set br0 up || exit 11
truncate -s 128M /tmp/kvz.img /tmp/kvzv.img /tmp/qemu.img /tmp/qemuv.img
CMDLINE='console=ttyS0 panic=-1 quiet'
measure() {  # label command...
  label=$1; shift
  ( "$@"; echo "L1-EXIT-$label: $?" ) > /tmp/$label.log 2>&1 < /dev/null &
  case $label in qemu*)  # QEMU's script=no TAP: put it on the bridge
    i=0; while [ ! -e /sys/class/net/tap$label ] && [ $i -lt 120 ]; do sleep 1; i=$((i+1)); done
    ip link set tap$label master br0; ip link set tap$label up
  esac
  if waitfor /tmp/$label.log L2-SERVE-UP; then
    a=$(ms); wget -q -O /tmp/got http://10.0.0.2:8080/blob; b=$(ms)
    echo "L1-TCP-MS-$label: $((b - a)) bytes=$(wc -c < /tmp/got)"
    rm -f /tmp/got
    echo bye | timeout 10 nc 10.0.0.2 5002
  fi
  waitfor /tmp/$label.log L1-EXIT-$label
  sed "s/^/[$label] /" /tmp/$label.log
}
kvz() {  # label vhost
  measure $1 kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline "$CMDLINE" \
    --memory 256M --cpus 1 --disk /tmp/$1.img --net tap=tap$1,mac=52:54:00:00:02:01,bridge=br0,vhost=$2
}
qemu() {  # label vhost
  measure $1 qemu-system-x86_64 -L /usr/share/kvzlab-qemu -accel kvm -cpu host -smp 1 -m 256 \
    -nodefaults -display none -serial stdio -no-reboot \
    -kernel /l2/vmlinuz -initrd /l2/initrd.cpio.gz -append "$CMDLINE" \
    -drive file=/tmp/$1.img,format=raw,if=virtio \
    -netdev tap,id=n0,ifname=tap$1,script=no,downscript=no,vhost=$2 \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:00:02:02,romfile=
}
kvz kvz off
qemu qemu off
kvz kvzv on
qemu qemuv on
"""

res = kvzlab.run_in_lab(L1_SCRIPT, l1_modules=["tun", "bridge", "vhost_net"], with_qemu=True,
                        l2_init=L2_INIT, l2_modules=["virtio_pci", "virtio_blk", "virtio_net"],
                        timeout=2400, mem_mb=2048, retries=0)
out = res.output
log = os.environ.get("BENCH_LOG", "/tmp/kvz-virtio-lab-bench.log")
with open(log, "w") as f:
    f.write(out)
print(f"virtio_lab: full lab console in {log}")
if res.exit_code != 0:
    print(out[-4000:])
    print(f"virtio_lab: lab failed (exit {res.exit_code})", file=sys.stderr)
    sys.exit(1)


def fig(pattern, label):
    m = re.search(r"^\[" + label + r"\] " + pattern, out, re.M)
    return float(m.group(1)) if m else None


def tcp(label):
    m = re.search(rf"L1-TCP-MS-{label}: (\d+) bytes=(\d+)", out)
    return (32 << 20) / (float(m.group(1)) / 1000) / 1e6 if m and int(m.group(2)) == 32 << 20 else None


rows = []
DISK = [("seq write 64 MiB (MB/s)", r"L2-SEQ-WRITE-MS: (\d+)", "mbps"),
        ("seq read 64 MiB (MB/s)", r"L2-SEQ-READ-MS: (\d+)", "mbps"),
        ("random 4K reads (IOPS)", r"L2-RAND-READ-MS: (\d+)", "iops")]
PING = ("ping avg RTT (ms)", r"L2-PING: .*= [\d.]+/([\d.]+)/", "lower")
# Disk figures from both boots of each VMM (the net path does not touch
# them): both samples are shown, the ratio is of their means.
for name, pat, kind in DISK:
    k = [fig(pat, lab) for lab in ("kvz", "kvzv")]
    q = [fig(pat, lab) for lab in ("qemu", "qemuv")]
    conv = (lambda v: (64 * 1.048576) / (v / 1000)) if kind == "mbps" else (lambda v: 300 / (v / 1000))
    k = [conv(v) for v in k if v]
    q = [conv(v) for v in q if v]
    rows.append((name, sum(k) / len(k) if k else None, sum(q) / len(q) if q else None, True))
for suffix, what in (("", "in the VMM"), ("v", "vhost-net")):
    name, pat, kind = PING
    rows.append((f"{name}, {what}", fig(pat, "kvz" + suffix), fig(pat, "qemu" + suffix), False))
    rows.append((f"TCP guest->L1 32 MiB (MB/s), {what}", tcp("kvz" + suffix), tcp("qemu" + suffix), True))

print(f"\n{'figure':44} {'kvz-vmm':>10} {'QEMU':>10} {'kvz/QEMU':>9}  (ratio > 1: kvz better)")
for name, k, q, higher_better in rows:
    if k is None or q is None:
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
        print(f"{name:44} {fmt(k):>10} {fmt(q):>10} {'n/a':>9}")
        continue
    ratio = (k / q) if higher_better else (q / k)
    print(f"{name:44} {k:10.2f} {q:10.2f} {ratio:9.2f}")
print(f"(one lab run, {res.duration:.0f} s; absolute values are under QEMU TCG)")
PY
