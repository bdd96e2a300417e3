#!/bin/sh
# Snapshot save and restore-to-running: kvz-vmm (QMP getfd + migrate fd:,
# --incoming file:) against QEMU (migrate exec:cat > FILE, -incoming
# exec:cat FILE; Debian 12's QEMU 7.2 has no file: URI) on the same guest,
# side by side in ONE nested-lab run, for 256 MiB and 1 GiB guests that
# touched the same 32 MiB; then kvz-vmm alone with a 4 GiB guest that
# touched as little (save time must not grow with untouched RAM). Save:
# from the migrate command to "completed" (query-migrate polled every
# 50 ms), and kvz-vmm's own account of the RAM it read and wrote
# (--bench-phases). Restore: from the VMM's start to the guest's next
# console line, for kvz-vmm's two ways (--restore-ram map, the default, and
# read). The guest prints a TICK every 10 ms (busybox sh's `read -t` on a
# FIFO: no process per tick), so a restore figure carries at most 10 ms of
# waiting for the next one (L1's clock has 10 ms resolution too). Also
# prints the files' sizes and disk use.
# Absolute numbers are an emulator's: only the ratios mean something.
# Usage: bench/snapshot_lab.sh [REPS]   (env: BUILD_DIR, default build)
set -eu
. "$(dirname "$0")/lib.sh"
REPS=${1:-2}
export REPS
exec /usr/bin/python3 - <<'PYEOF'
import os, re, sys
import kvzlab

reps = int(os.environ["REPS"])
build = os.environ["KVZ_BUILD_DIR"]
qmp_send = os.path.join(build, "tests", "virtio", "qmp-send")
kvzlab.bench_require("snapshot_lab", kvzlab.default_vmm(), qmp_send)

l2_init = r"""
dd if=/dev/urandom of=/fill bs=1M count=32 2>/dev/null
mkfifo /tick; exec 3<>/tick
echo READY
i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo "TICK $i"; read -t 0.01 x <&3; done
reboot -f
"""
cmdline = "console=ttyS0 quiet panic=-1"
helpers = r"""
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
waitfor() { i=0; while ! grep -q "$2" $1; do i=$((i+1)); [ $i -gt 1200 ] && return 1; sleep 0.1; done; }
migrated() { i=0; while [ $i -lt 2400 ]; do
  case "$(qmp-send $1 '{"execute": "query-migrate"}')" in *completed*) return 0;; *failed*) return 1;; esac
  sleep 0.05; i=$((i+1)); done; return 1; }
"""
lines = [helpers]


def kvz_save(kvz, mem):
    """kvz-vmm boots, is saved to /tmp/k.snap (timed) and quits."""
    return f"""
rm -f /tmp/k.snap /tmp/q.sock
{kvz} --qmp /tmp/q.sock --bench-phases </dev/null > /tmp/k.log 2>&1 &
pid=$!
waitfor /tmp/k.log READY || {{ echo "kvz-vmm {mem}: no READY"; tail -3 /tmp/k.log; }}
exec 3<>/tmp/k.snap
t0=$(now)
qmp-send --fd 3 /tmp/q.sock '{{"execute": "getfd", "arguments": {{"fdname": "s"}}}}' '{{"execute": "migrate", "arguments": {{"uri": "fd:s"}}}}' >/dev/null
exec 3<&-
migrated /tmp/q.sock && echo "KVZLAB-TIME kvz-save-{mem} $(since $t0)"
qmp-send /tmp/q.sock '{{"execute": "quit"}}' >/dev/null; wait $pid
grep -o 'save: RAM written: .*KiB written' /tmp/k.log | sed 's/^/SAVED {mem} /'
echo "SIZE kvz-{mem} $(stat -c %s /tmp/k.snap) $(du -k /tmp/k.snap | cut -f1)"
"""


def kvz_cmd(mem):
    return (f"kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cpus 1 --memory {mem} "
            f"--cmdline '{cmdline}'")


for mem in ("256M", "1G"):
    kvz = kvz_cmd(mem)
    qemu = kvzlab.qemu_l2_command(smp=1, memory=mem, cmdline=cmdline)
    for r in range(reps):
        lines.append(kvz_save(kvz, mem) + f"""
kvzlab-time kvz-restore-{mem} TICK {kvz} --incoming file:/tmp/k.snap </dev/null
kvzlab-time kvzread-restore-{mem} TICK {kvz} --incoming file:/tmp/k.snap --restore-ram read </dev/null
rm -f /tmp/q.snap /tmp/qq.sock
{qemu} -qmp unix:/tmp/qq.sock,server=on,wait=off </dev/null > /tmp/q.log 2>&1 &
pid=$!
waitfor /tmp/q.log READY || echo "qemu {mem}: no READY"
t0=$(now)
qmp-send /tmp/qq.sock '{{"execute": "migrate", "arguments": {{"uri": "exec:cat > /tmp/q.snap"}}}}' >/dev/null
migrated /tmp/qq.sock && echo "KVZLAB-TIME qemu-save-{mem} $(since $t0)"
qmp-send /tmp/qq.sock '{{"execute": "quit"}}' >/dev/null; wait $pid
echo "SIZE qemu-{mem} $(stat -c %s /tmp/q.snap) $(du -k /tmp/q.snap | cut -f1)"
kvzlab-time qemu-restore-{mem} TICK {qemu} -incoming 'exec:cat /tmp/q.snap' </dev/null
""")
# kvz-vmm alone: QEMU reads all of a 4 GiB guest's RAM (minutes here).
kvz = kvz_cmd("4G")
lines.append(kvz_save(kvz, "4G") + f"""
kvzlab-time kvz-restore-4G TICK {kvz} --incoming file:/tmp/k.snap </dev/null
rm -f /tmp/k.snap
""")
# L1 with 4.5 GiB: kvz-vmm refuses --memory above the host's RAM (the 4 GiB
# guest); TCG allocates L1's memory only as it is used.
res = kvzlab.run_in_lab("\n".join(lines), files={qmp_send: "/bin/qmp-send"}, smp=2, mem_mb=4608,
                        timeout=540 + 240 * reps, l2_init=l2_init, with_qemu=True)
times = kvzlab.parse_times(res.output)
if res.exit_code != 0:
    print("\n".join(res.output.splitlines()[-30:]))
    print(f"snapshot_lab: lab script failed (exit {res.exit_code})", file=sys.stderr)
ok = res.exit_code == 0
for mem in ("256M", "1G"):
    print(f"--- {mem} guest, 32 MiB touched, {reps} runs each (inside L1):")
    for what in ("save", "restore"):
        ok &= kvzlab.compare(times, f"kvz-{what}-{mem}", f"qemu-{what}-{mem}") is not None
    print("(kvz-vmm --restore-ram read: the file's data read into huge-page RAM)")
    ok &= kvzlab.compare(times, f"kvzread-restore-{mem}", f"qemu-restore-{mem}") is not None
    for m in re.finditer(rf"^SIZE (\S+-{mem}) (\d+) (\d+)$", res.output, re.M):
        print(f"{m.group(1):>16}: file {int(m.group(2)) >> 20} MiB, on disk {int(m.group(3)) >> 10} MiB")
print("--- kvz-vmm save against RAM size (the same 32 MiB touched):")
for mem in ("256M", "1G", "4G"):
    runs = times.get(f"kvz-save-{mem}", [])
    rest = times.get(f"kvz-restore-{mem}", [])
    read = re.findall(rf"^SAVED {mem} save: RAM written: (\d+) KiB read, (\d+) KiB written", res.output, re.M)
    ok &= bool(runs) and bool(read)
    print(f"{mem:>5}: save {' '.join(f'{x:.2f}' for x in runs)} s, restore {' '.join(f'{x:.2f}' for x in rest)} s; "
          f"RAM read/written {', '.join(f'{int(a) >> 10}/{int(b) >> 10} MiB' for a, b in read)}")
if not ok and res.exit_code == 0:   # figures missing: show why
    print("\n".join(l for l in res.output.splitlines()[-40:] if "TCG doesn't support" not in l))
    print("snapshot_lab: figures missing", file=sys.stderr)
sys.exit(0 if ok else 1)
PYEOF
