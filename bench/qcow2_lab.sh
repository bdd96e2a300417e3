#!/bin/bash
# qcow2 against raw, and kvz-vmm against QEMU, side by side in ONE nested-lab
# run: the same L2 kernel and initramfs boot four times inside L1 (kvz-vmm
# raw, kvz-vmm qcow2, QEMU raw, QEMU qcow2), each with one virtio-blk disk of
# 128 MiB on L1's tmpfs (the qcow2 ones new and empty, made on the host by
# kvz-image: every write allocates). Inside the guest: sequential write and
# read (dd 1 MiB blocks, 64 MiB, fsync / cold cache) and 300 random 4 KiB
# direct reads. Prints each figure, kvz/QEMU ratios per format and
# qcow2/raw ratios per VMM. Absolute numbers are those of an emulator (QEMU
# TCG runs L1); only ratios mean something.
# Needs: the lab (lab/kvzlab.py) and built kvz-vmm and kvz-image (BUILD_DIR).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$here"
exec python3 - "$@" <<'PY'
import os, re, subprocess, sys, tempfile
import kvzlab

kimg = os.path.join(os.environ["KVZ_BUILD_DIR"], "src/image/kvz-image")
kvzlab.bench_require("qcow2_lab", kvzlab.default_vmm(), kimg)

L2_INIT = r"""
t() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }
a=$(t); dd if=/dev/zero of=/dev/vda bs=1M count=64 conv=fsync 2>/dev/null; b=$(t)
echo "L2-SEQ-WRITE-MS: $((b - a))"
echo 3 > /proc/sys/vm/drop_caches
a=$(t); dd if=/dev/vda of=/dev/null bs=1M count=64 2>/dev/null; b=$(t)
echo "L2-SEQ-READ-MS: $((b - a))"
a=$(t); i=0
while [ $i -lt 300 ]; do
  dd if=/dev/vda of=/dev/null bs=4096 count=1 skip=$(( (i * 7919) % 16384 )) iflag=direct 2>/dev/null
  i=$((i + 1))
done; b=$(t)
echo "L2-RAND-READ-MS: $((b - a))"
reboot -f
"""

L1_SCRIPT = r"""
echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled
truncate -s 128M /tmp/kvzraw.img /tmp/qemuraw.img
cp /img/empty.qcow2 /tmp/kvzq.img; cp /img/empty.qcow2 /tmp/qemuq.img
CMDLINE='console=ttyS0 panic=-1 quiet'
run() {  # label command...
  label=$1; shift
  "$@" < /dev/null 2>&1 | sed "s/^/[$label] /"
}
run kvzraw kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline "$CMDLINE" \
  --memory 256M --cpus 1 --disk /tmp/kvzraw.img
run kvzq kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline "$CMDLINE" \
  --memory 256M --cpus 1 --disk /tmp/kvzq.img,format=qcow2
for f in raw:qemuraw qcow2:qemuq; do
  run ${f#*:} qemu-system-x86_64 -L /usr/share/kvzlab-qemu -accel kvm -cpu host -smp 1 -m 256 \
    -nodefaults -display none -serial stdio -no-reboot \
    -kernel /l2/vmlinuz -initrd /l2/initrd.cpio.gz -append "$CMDLINE" \
    -drive file=/tmp/${f#*:}.img,format=${f%%:*},if=virtio
done
"""

with tempfile.TemporaryDirectory() as d:
    empty = os.path.join(d, "empty.qcow2")
    subprocess.run([kimg, "create", empty, "128M"], check=True)
    res = kvzlab.run_in_lab(L1_SCRIPT, files={empty: "/img/empty.qcow2"}, with_qemu=True,
                            l2_init=L2_INIT, l2_modules=["virtio_pci", "virtio_blk"],
                            timeout=1800, mem_mb=2048, retries=0)
out = res.output
log = os.environ.get("BENCH_LOG", "/tmp/kvz-qcow2-lab-bench.log")
with open(log, "w") as f:
    f.write(out)
print(f"qcow2_lab: full lab console in {log}")
if res.exit_code != 0:
    print(out[-4000:])
    print(f"qcow2_lab: lab failed (exit {res.exit_code})", file=sys.stderr)
    sys.exit(1)


def fig(label, pat, kind):
    m = re.search(r"^\[" + label + r"\] " + pat, out, re.M)
    if not m:
        return None
    v = float(m.group(1)) / 1000
    return 64 * 1.048576 / v if kind == "mbps" else 300 / v


DISK = [("seq write 64 MiB (MB/s)", r"L2-SEQ-WRITE-MS: (\d+)", "mbps"),
        ("seq read 64 MiB (MB/s)", r"L2-SEQ-READ-MS: (\d+)", "mbps"),
        ("random 4K reads (IOPS)", r"L2-RAND-READ-MS: (\d+)", "iops")]
fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
div = lambda a, b: "n/a" if a is None or b is None else f"{a / b:.2f}"
print(f"\n{'figure':26} {'kvz raw':>8} {'kvz q2':>8} {'QEMU raw':>8} {'QEMU q2':>8}"
      f" {'kvz/QEMU raw':>12} {'kvz/QEMU q2':>11} {'kvz q2/raw':>10} {'QEMU q2/raw':>11}")
for name, pat, kind in DISK:
    kr, kq, qr, qq = (fig(l, pat, kind) for l in ("kvzraw", "kvzq", "qemuraw", "qemuq"))
    print(f"{name:26} {fmt(kr):>8} {fmt(kq):>8} {fmt(qr):>8} {fmt(qq):>8}"
          f" {div(kr, qr):>12} {div(kq, qq):>11} {div(kq, kr):>10} {div(qq, qr):>11}")
print(f"(one lab run, {res.duration:.0f} s; higher is better; absolute values are under QEMU TCG)")
PY
