#!/bin/bash
# qcow2 against raw, and kvz-vmm against QEMU, side by side in ONE nested-lab
# run: the same L2 kernel and initramfs boot four times inside L1 (kvz-vmm
# raw, kvz-vmm qcow2, QEMU raw, QEMU qcow2), ROUNDS times over (default 2,
# in turn, so that a slow stretch of the shared host hits every kind),
# each with one virtio-blk disk of 128 MiB on L1's tmpfs (the qcow2 ones
# new and empty, made on the host by kvz-image: every write allocates).
# Inside the guest: sequential write and read (dd 1 MiB blocks, 64 MiB,
# through the guest's page cache, fsync / cold cache) and 300 random 4 KiB
# direct reads. Prints each figure (means of the rounds), kvz/QEMU ratios
# per format and qcow2/raw ratios per VMM, and the guest's view of each
# figure in round 1 (requests, KiB per request, requests per interrupt).
# Host side, like with like: kvz-vmm's defaults (io_uring on the image
# opened without O_DIRECT; qcow2 metadata cached and written back) and
# QEMU with cache=writeback,aio=threads (its defaults, said explicitly:
# the page cache too). Absolute numbers are those of an emulator (QEMU
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
ROUNDS = os.environ.get("ROUNDS", "2")
if not ROUNDS.isdigit() or not 1 <= int(ROUNDS) <= 5:
    sys.exit(f"qcow2_lab: ROUNDS={ROUNDS!r}: a whole number from 1 to 5")
ROUNDS = int(ROUNDS)

L2_INIT = r"""
t() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }
# The guest's own view: requests completed (reads + writes), sectors moved
# and vda's queue interrupts, printed before and after each figure.
dev=$(basename "$(readlink /sys/block/vda/device)")
prof() { set -- $(cat /sys/block/vda/stat)
  echo "$(($1 + $5)) $(($3 + $7)) $(awk -v d="$dev-req" '$0 ~ d { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' /proc/interrupts)"; }
p=$(prof); a=$(t); dd if=/dev/zero of=/dev/vda bs=1M count=64 conv=fsync 2>/dev/null; b=$(t)
echo "L2-SEQ-WRITE-MS: $((b - a))"; echo "L2-PROF-SEQ-WRITE: $p $(prof)"
echo 3 > /proc/sys/vm/drop_caches
p=$(prof); a=$(t); dd if=/dev/vda of=/dev/null bs=1M count=64 2>/dev/null; b=$(t)
echo "L2-SEQ-READ-MS: $((b - a))"; echo "L2-PROF-SEQ-READ: $p $(prof)"
p=$(prof); a=$(t); i=0
while [ $i -lt 300 ]; do
  dd if=/dev/vda of=/dev/null bs=4096 count=1 skip=$(( (i * 7919) % 16384 )) iflag=direct 2>/dev/null
  i=$((i + 1))
done; b=$(t)
echo "L2-RAND-READ-MS: $((b - a))"; echo "L2-PROF-RAND-READ: $p $(prof)"
reboot -f
"""

L1_SCRIPT = r"""
echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled
CMDLINE='console=ttyS0 panic=-1 quiet'
run() {  # label command...
  label=$1; shift
  "$@" < /dev/null 2>&1 | sed "s/^/[$label] /"
}
r=1
while [ $r -le $ROUNDS ]; do
  rm -f /tmp/*.img
  truncate -s 128M /tmp/kvzraw.img /tmp/qemuraw.img
  cp /img/empty.qcow2 /tmp/kvzq.img; cp /img/empty.qcow2 /tmp/qemuq.img
  run kvzraw$r kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline "$CMDLINE" \
    --memory 256M --cpus 1 --disk /tmp/kvzraw.img
  run kvzq$r kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline "$CMDLINE" \
    --memory 256M --cpus 1 --disk /tmp/kvzq.img,format=qcow2
  for f in raw:qemuraw qcow2:qemuq; do
    run ${f#*:}$r qemu-system-x86_64 -L /usr/share/kvzlab-qemu -accel kvm -cpu host -smp 1 -m 256 \
      -nodefaults -display none -serial stdio -no-reboot \
      -kernel /l2/vmlinuz -initrd /l2/initrd.cpio.gz -append "$CMDLINE" \
      -drive file=/tmp/${f#*:}.img,format=${f%%:*},if=virtio,cache=writeback,aio=threads
  done
  r=$((r + 1))
done
""".replace("$ROUNDS", str(ROUNDS))

with tempfile.TemporaryDirectory() as d:
    empty = os.path.join(d, "empty.qcow2")
    subprocess.run([kimg, "create", empty, "128M"], check=True)
    res = kvzlab.run_in_lab(L1_SCRIPT, files={empty: "/img/empty.qcow2"}, with_qemu=True,
                            l2_init=L2_INIT, l2_modules=["virtio_pci", "virtio_blk"],
                            timeout=900 * ROUNDS, mem_mb=2048, retries=0)
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
    """The figure's mean over the rounds (None when one is missing)."""
    vals = []
    for r in range(1, ROUNDS + 1):
        m = re.search(r"^\[" + label + str(r) + r"\] " + pat, out, re.M)
        if not m:
            return None
        v = max(float(m.group(1)), 1) / 1000
        vals.append(64 * 1.048576 / v if kind == "mbps" else 300 / v)
    return sum(vals) / len(vals)


def prof(label, tag):
    """(requests, KiB per request, requests per interrupt) in round 1."""
    m = re.search(r"^\[" + label + r"1\] L2-PROF-" + tag + r": ((?:\d+ ?){6})$", out, re.M)
    if not m:
        return "n/a"
    a = [int(x) for x in m.group(1).split()]
    reqs, sectors, irqs = a[3] - a[0], a[4] - a[1], a[5] - a[2]
    return f"{reqs}/{sectors / 2 / reqs if reqs else 0:.0f}K/{reqs / irqs if irqs else 0:.1f}"


KINDS = ("kvzraw", "kvzq", "qemuraw", "qemuq")
DISK = [("seq write 64 MiB (MB/s)", r"L2-SEQ-WRITE-MS: (\d+)", "mbps", "SEQ-WRITE"),
        ("seq read 64 MiB (MB/s)", r"L2-SEQ-READ-MS: (\d+)", "mbps", "SEQ-READ"),
        ("random 4K reads (IOPS)", r"L2-RAND-READ-MS: (\d+)", "iops", "RAND-READ")]
fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
div = lambda a, b: "n/a" if a is None or b is None else f"{a / b:.2f}"
print(f"\n{'figure':26} {'kvz raw':>8} {'kvz q2':>8} {'QEMU raw':>8} {'QEMU q2':>8}"
      f" {'kvz/QEMU raw':>12} {'kvz/QEMU q2':>11} {'kvz q2/raw':>10} {'QEMU q2/raw':>11}")
for name, pat, kind, _ in DISK:
    kr, kq, qr, qq = (fig(l, pat, kind) for l in KINDS)
    print(f"{name:26} {fmt(kr):>8} {fmt(kq):>8} {fmt(qr):>8} {fmt(qq):>8}"
          f" {div(kr, qr):>12} {div(kq, qq):>11} {div(kq, kr):>10} {div(qq, qr):>11}")
print(f"(means of {ROUNDS} rounds; one lab run, {res.duration:.0f} s; higher is better; "
      "absolute values are under QEMU TCG)")
print("\nguest's view, round 1 (requests/KiB per request/requests per interrupt):")
for name, _, _, tag in DISK:
    print(f"  {name:24} " + "  ".join(f"{l} {prof(l, tag)}" for l in KINDS))
PY
