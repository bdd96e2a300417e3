#!/bin/bash
# virtio-blk of kvz-vmm against QEMU, side by side in ONE nested-lab run,
# measured with fio inside the L2 guest: sequential read and write (1 MiB,
# depth 8) and random 4 KiB read and write (depth 1 and 32), O_DIRECT with
# libaio on /dev/vda, a 256 MiB raw image on L1's tmpfs. The same L2
# kernel and initramfs boot under kvz-vmm (its defaults: io_uring, one
# queue per vCPU) and under qemu-system-x86_64 -accel kvm (its defaults:
# aio=threads, cache=writeback), one vCPU each, one after the other.
# Prints each figure and kvz/QEMU ratios (> 1: kvz-vmm better). Absolute
# numbers are those of an emulator (QEMU TCG runs L1); only ratios count.
#
# fio reaches L2 as a second, read-only disk holding a gzip'd tar of the
# host's /usr/bin/fio and every library it loads (the L2 initramfs is
# busybox only); L2 unpacks it and runs it through the copied loader.
# Needs: the lab (lab/kvzlab.py), a built kvz-vmm (BUILD_DIR, default
# build) and fio on the host (Debian package fio).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$here"
exec python3 - "$@" <<'PY'
import io, os, re, shutil, subprocess, sys, tarfile, tempfile
import kvzlab

kvzlab.bench_require("blk_lab", kvzlab.default_vmm())
FIO = shutil.which("fio")
if not FIO:
    sys.exit("blk_lab: fio not installed on the host (Debian: apt-get install fio)")

# (label, fio arguments, direction) — each job runs 5 s of L2 time.
JOBS = [
    ("seq-write-1M-qd8", "--rw=write --bs=1M --iodepth=8", "write"),
    ("seq-read-1M-qd8", "--rw=read --bs=1M --iodepth=8", "read"),
    ("rand-read-4K-qd1", "--rw=randread --bs=4k --iodepth=1", "read"),
    ("rand-read-4K-qd32", "--rw=randread --bs=4k --iodepth=32", "read"),
    ("rand-write-4K-qd1", "--rw=randwrite --bs=4k --iodepth=1", "write"),
    ("rand-write-4K-qd32", "--rw=randwrite --bs=4k --iodepth=32", "write"),
]


def fio_bundle(path):
    """fio, its libraries and the loader in a gzip'd tar, padded to whole
    sectors (a disk's size is counted in 512-byte sectors)."""
    libs = subprocess.run(["ldd", FIO], capture_output=True, text=True, check=True).stdout
    files = sorted(set(re.findall(r"(/\S+) \(0x", libs)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(FIO, arcname="fio/fio")
        for f in files:
            t.add(os.path.realpath(f), arcname="fio/lib/" + os.path.basename(f))
    data = buf.getvalue()
    data += bytes(-len(data) % 512 + 512)
    with open(path, "wb") as f:
        f.write(data)


L2_INIT = r"""
mkdir -p /opt && gunzip -c < /dev/vdb 2>/dev/null | tar -xf - -C /opt
F="/opt/fio/lib/ld-linux-x86-64.so.2 --library-path /opt/fio/lib /opt/fio/fio"
$F --version | sed 's/^/L2-FIO-VERSION: /'
""" + "".join(
    f'echo "L2-FIO {label} $($F --name={label} --filename=/dev/vda --direct=1 '
    f'--ioengine=libaio {args} --size=256M --runtime=5 --time_based --minimal)"\n'
    for label, args, _ in JOBS) + r"""
echo "L2-BENCH-DONE"
reboot -f
"""

# The bundle sits at / (L1's /tmp is a tmpfs mounted over the initramfs).
L1_SCRIPT = r"""
[ -f /fio.tgz ] || { echo "blk_lab: /fio.tgz missing in L1"; exit 12; }
echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled
truncate -s 256M /tmp/kvz.img /tmp/qemu.img
CMDLINE='console=ttyS0 panic=-1 quiet'
run() {  # label command...
  label=$1; shift
  timeout 900 "$@" < /dev/null 2>&1 | sed "s/^/[$label] /"
}
run kvz kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline "$CMDLINE" \
  --memory 512M --cpus 1 --disk /tmp/kvz.img --disk /fio.tgz,readonly
run qemu qemu-system-x86_64 -L /usr/share/kvzlab-qemu -accel kvm -cpu host -smp 1 -m 512 \
  -nodefaults -display none -serial stdio -no-reboot \
  -kernel /l2/vmlinuz -initrd /l2/initrd.cpio.gz -append "$CMDLINE" \
  -drive file=/tmp/qemu.img,format=raw,if=virtio \
  -drive file=/fio.tgz,format=raw,if=virtio,readonly=on
"""

with tempfile.TemporaryDirectory() as tmp:
    bundle = os.path.join(tmp, "fio.tgz")
    fio_bundle(bundle)
    res = kvzlab.run_in_lab(L1_SCRIPT, files={bundle: "/fio.tgz"}, with_qemu=True,
                            l2_init=L2_INIT, l2_modules=["virtio_pci", "virtio_blk"],
                            timeout=2400, mem_mb=2048, retries=0)
out = res.output
log = os.environ.get("BENCH_LOG", "/tmp/kvz-blk-lab-bench.log")
with open(log, "w") as f:
    f.write(out)
print(f"blk_lab: full lab console in {log}")
if res.exit_code != 0:
    print(out[-4000:])
    sys.exit(f"blk_lab: lab failed (exit {res.exit_code})")


def figure(vmm, label, direction):
    """(MB/s, IOPS) from fio's terse line (version 3: read bandwidth KiB/s
    and IOPS are fields 7 and 8, write's 48 and 49, counted from 1)."""
    m = re.search(rf"^\[{vmm}\] L2-FIO {label} (3;.*)$", out, re.M)
    if not m:
        return None
    f = m.group(1).split(";")
    bw, iops = (f[6], f[7]) if direction == "read" else (f[47], f[48])
    return float(bw) * 1024 / 1e6, float(iops)


missing = 0
print(f"\n{'figure':28} {'kvz-vmm':>12} {'QEMU':>12} {'kvz/QEMU':>9}  (ratio > 1: kvz-vmm better)")
for label, _, direction in JOBS:
    k, q = figure("kvz", label, direction), figure("qemu", label, direction)
    unit = "MB/s" if "seq" in label else "IOPS"
    pick = (lambda v: v[0]) if unit == "MB/s" else (lambda v: v[1])
    if not k or not q or not pick(q):
        print(f"{label + ' (' + unit + ')':28} {'n/a' if not k else f'{pick(k):.1f}':>12} "
              f"{'n/a' if not q else f'{pick(q):.1f}':>12} {'n/a':>9}")
        missing += 1
        continue
    print(f"{label + ' (' + unit + ')':28} {pick(k):12.1f} {pick(q):12.1f} {pick(k) / pick(q):9.2f}")
print(f"(one lab run, {res.duration:.0f} s; absolute values are under QEMU TCG)")
if missing:
    sys.exit(f"blk_lab: {missing} figures missing (see {log})")
PY
