#!/bin/bash
# virtio-blk of kvz-vmm against QEMU, side by side in ONE nested-lab run,
# measured with fio inside the L2 guest: sequential read and write (1 MiB,
# depth 8) and random 4 KiB read and write (depth 1 and 32), O_DIRECT with
# libaio on /dev/vda inside the guest, a 256 MiB raw image on L1's tmpfs.
# The same L2 kernel and initramfs boot under kvz-vmm and under
# qemu-system-x86_64 -accel kvm, one vCPU each, one after the other,
# ROUNDS times in turn (default 2: kvz, QEMU, kvz, QEMU), so that a slow
# stretch of the shared host hits both sides rather than one.
#
# Host side, like with like: both go through L1's page cache.
# - kvz-vmm: its defaults, io_uring (readv/writev/fsync on the image opened
#   without O_DIRECT), one queue per vCPU, event-index interrupts.
# - QEMU: cache=writeback,aio=threads (its defaults, said explicitly):
#   preadv/pwritev in its thread pool, the image opened without O_DIRECT.
#
# Prints each figure per round and the kvz/QEMU ratio of the rounds'
# means (> 1: kvz-vmm better), with each round's own ratio to show the
# noise. Absolute numbers are those of an emulator (QEMU TCG runs L1); only
# ratios count. kvz-vmm runs with --verbose: at exit it logs per disk the
# requests, queue-thread wake-ups, interrupts and the most requests in
# flight (in the lab console, BENCH_LOG).
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
ROUNDS = os.environ.get("ROUNDS", "2")
if not ROUNDS.isdigit() or not 1 <= int(ROUNDS) <= 5:
    sys.exit(f"blk_lab: ROUNDS={ROUNDS!r}: a whole number from 1 to 5")
ROUNDS = int(ROUNDS)
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
# The guest's own view of each job: requests completed (reads + writes),
# sectors moved and vda's queue interrupts, printed as differences.
dev=$(basename "$(readlink /sys/block/vda/device)")
prof() { set -- $(cat /sys/block/vda/stat)
  echo "$(($1 + $5)) $(($3 + $7)) $(awk -v d="$dev-req" '$0 ~ d { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' /proc/interrupts)"; }
""" + "".join(
    f'a=$(prof); r="$($F --name={label} --filename=/dev/vda --direct=1 '
    f'--ioengine=libaio {args} --size=256M --runtime=5 --time_based --minimal)"; b=$(prof)\n'
    f'echo "L2-FIO {label} $r"; echo "L2-PROF {label} $a $b"\n'
    for label, args, _ in JOBS) + r"""
echo "L2-BENCH-DONE"
reboot -f
"""

# The bundle sits at / (L1's /tmp is a tmpfs mounted over the initramfs).
L1_SCRIPT = r"""
[ -f /fio.tgz ] || { echo "blk_lab: /fio.tgz missing in L1"; exit 12; }
echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled
CMDLINE='console=ttyS0 panic=-1 quiet'
run() {  # label command...
  label=$1; shift
  timeout 900 "$@" < /dev/null 2>&1 | sed "s/^/[$label] /"
}
r=1
while [ $r -le $ROUNDS ]; do
  rm -f /tmp/disk.img; truncate -s 256M /tmp/disk.img
  run kvz$r kvz-vmm --verbose --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline "$CMDLINE" \
    --memory 512M --cpus 1 --disk /tmp/disk.img --disk /fio.tgz,readonly
  rm -f /tmp/disk.img; truncate -s 256M /tmp/disk.img
  run qemu$r qemu-system-x86_64 -L /usr/share/kvzlab-qemu -accel kvm -cpu host -smp 1 -m 512 \
    -nodefaults -display none -serial stdio -no-reboot \
    -kernel /l2/vmlinuz -initrd /l2/initrd.cpio.gz -append "$CMDLINE" \
    -drive file=/tmp/disk.img,format=raw,if=virtio,cache=writeback,aio=threads \
    -drive file=/fio.tgz,format=raw,if=virtio,readonly=on
  r=$((r + 1))
done
""".replace("$ROUNDS", str(ROUNDS))

with tempfile.TemporaryDirectory() as tmp:
    bundle = os.path.join(tmp, "fio.tgz")
    fio_bundle(bundle)
    res = kvzlab.run_in_lab(L1_SCRIPT, files={bundle: "/fio.tgz"}, with_qemu=True,
                            l2_init=L2_INIT, l2_modules=["virtio_pci", "virtio_blk"],
                            timeout=1200 * ROUNDS, mem_mb=2048, retries=0)
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


def mean(vals):
    return sum(vals) / len(vals) if vals and None not in vals else None


def show(v):
    return "n/a" if v is None else f"{v:.1f}"


missing = 0
rounds = " ".join(f"{'r' + str(r):>5}" for r in range(1, ROUNDS + 1))
print(f"\n{'figure':26} {'kvz-vmm':>9} {'QEMU':>9} {'kvz/QEMU':>8}  per round: {rounds}")
for label, _, direction in JOBS:
    unit = "MB/s" if "seq" in label else "IOPS"
    pick = 0 if unit == "MB/s" else 1
    k = [figure(f"kvz{r}", label, direction) for r in range(1, ROUNDS + 1)]
    q = [figure(f"qemu{r}", label, direction) for r in range(1, ROUNDS + 1)]
    k = [v[pick] if v else None for v in k]
    q = [v[pick] if v else None for v in q]
    km, qm = mean(k), mean(q)
    if km is None or not qm:
        missing += 1
    per = " ".join(f"{a / b:5.2f}" if a is not None and b else "  n/a" for a, b in zip(k, q))
    ratio = f"{km / qm:8.2f}" if km is not None and qm else f"{'n/a':>8}"
    print(f"{label + ' (' + unit + ')':26} {show(km):>9} {show(qm):>9} {ratio}  per round: {per}")
print(f"(means of {ROUNDS} rounds; kvz/QEMU > 1: kvz-vmm better; one lab run, "
      f"{res.duration:.0f} s; absolute values are under QEMU TCG)")


def profile(vmm, label):
    """(requests, KiB per request, requests per interrupt) as the guest saw
    them during the job."""
    m = re.search(rf"^\[{vmm}\] L2-PROF {label} ((?:\d+ ?){{6}})$", out, re.M)
    if not m:
        return None
    a = [int(x) for x in m.group(1).split()]
    reqs, sectors, irqs = a[3] - a[0], a[4] - a[1], a[5] - a[2]
    return reqs, sectors / 2 / reqs if reqs else 0, reqs / irqs if irqs else 0


print("\nguest's view per job, round 1 (requests, KiB/request, requests/interrupt):")
for label, _, _ in JOBS:
    cells = []
    for vmm in ("kvz1", "qemu1"):
        p = profile(vmm, label)
        cells.append("n/a" if not p else f"{p[0]:7d} {p[1]:7.1f} {p[2]:6.2f}")
    print(f"  {label:22} kvz-vmm {cells[0]:>23}   QEMU {cells[1]:>23}")
for line in re.findall(r"^\[kvz\d\] kvz-vmm: debug: virtio vda: .*$", out, re.M):
    print(line)
if missing:
    sys.exit(f"blk_lab: {missing} figures missing (see {log})")
PY
