#!/bin/sh
# Are the L2 triple faults seen a few seconds after snapshot restores
# (issue 9) tied to how kvz-vmm brings RAM back? In ONE nested-lab L1, the
# lab_vmm_snapshot guest (Debian's kernel, 2 vCPUs, 384 MiB, virtio-blk
# with an ext2 file system it appends to every 100 ms, two virtio-net,
# balloon, rng) is saved once, then restored RESTORES times from the same
# file and a copy of the disk taken at the save, alternately with
# --restore-ram map (the default: the file mapped MAP_PRIVATE, each page
# copied on the guest's first write to it) and --restore-ram read (RAM
# anonymous, the file read into it). Each restore runs SETTLE_S seconds
# after its first checksum line. One "RES" line per restore; at the end,
# per mode: restores, triple faults, restores that never counted.
# Lab times are an emulator's; only the counts mean something.
# Usage: bench/snapshot_resets_lab.sh [RESTORES]   (default 12, 2..40;
#   env SETTLE_S, default 20; BUILD_DIR)
set -eu
. "$(dirname "$0")/lib.sh"
RESTORES=${1:-12}
case $RESTORES in ''|*[!0-9]*) bench_fail "RESTORES: a number, 2..40 (got '$RESTORES')" ;; esac
[ "$RESTORES" -ge 2 ] && [ "$RESTORES" -le 40 ] || bench_fail "RESTORES: a number, 2..40 (got $RESTORES)"
SETTLE_S=${SETTLE_S:-20}
case $SETTLE_S in ''|*[!0-9]*) bench_fail "SETTLE_S: seconds (got '$SETTLE_S')" ;; esac
export RESTORES SETTLE_S
exec /usr/bin/python3 - <<'PYEOF'
import os, re, sys
import kvzlab
import test_vmm_snapshot_lab as t

restores, settle = int(os.environ["RESTORES"]), int(os.environ["SETTLE_S"])
kvzlab.bench_require("snapshot_resets_lab", kvzlab.default_vmm(), t.QMP_SEND, t.E2FSCK)
# The test's L1 script up to its restore loop (boot, save, disk copy).
head = t.L1_SCRIPT.split("\nn=1\n")[0]
loop = r"""
n=1
while [ $n -le @R@ ]; do
  if [ $((n % 2)) = 1 ]; then mode=map; else mode=read; fi
  cp /tmp/disk.snap /tmp/disk.img
  eval "$VMM --incoming file:/tmp/snap.img --restore-ram $mode" > /tmp/r.log 2>&1 &
  pid=$!
  up_tap
  if waitfor /tmp/r.log "L2-SUM " 200 $pid; then sum=1; sleep @S@; else sum=0; fi
  kill -0 $pid 2>/dev/null && quit $pid
  tf=$(grep -c "triple fault" /tmp/r.log)
  echo "RES $n $mode triple-faults $tf counted $sum"
  [ "$tf" = 0 ] && [ $sum = 1 ] || tail -n 8 /tmp/r.log | sed "s/^/RES-LOG $n: /"
  n=$((n+1))
done
""".replace("@R@", str(restores)).replace("@S@", str(settle))
files = kvzlab.with_libs({t.QMP_SEND: "/bin/qmp-send", t.E2FSCK: "/bin/e2fsck"})
res = kvzlab.run_in_lab(head + loop + "exit 0\n", files=files, l2_init=t.L2_INIT,
                        l1_modules=["tun", "vhost_net"],
                        l2_modules=["virtio_pci", "virtio_blk", "virtio_net", "virtio_balloon",
                                    "virtio-rng", "ext4", "crc32c_generic"],
                        smp=2, timeout=300 + restores * (90 + settle), retries=0,
                        l2_triple_fault_expected=True)
rows = re.findall(r"^RES (\d+) (map|read) triple-faults (\d+) counted (\d)", res.output, re.M)
for line in re.findall(r"^RES.*$", res.output, re.M):
    print(line)
if not rows:
    sys.exit("snapshot_resets_lab: no restore ran; the console ends:\n" + res.output[-3000:])
print(f"{'mode':6} {'restores':>8} {'triple-faulted':>15} {'never counted':>14}")
for mode in ("map", "read"):
    mine = [r for r in rows if r[1] == mode]
    print(f"{mode:6} {len(mine):8d} {sum(int(r[2]) > 0 for r in mine):15d} "
          f"{sum(r[3] == '0' for r in mine):14d}")
if res.timed_out or res.exit_code != 0:
    print(f"snapshot_resets_lab: the lab run was cut short ({kvzlab.lab_failure(res, True)}); "
          "the console ends:\n" + "\n".join(res.output.splitlines()[-25:]))
PYEOF
