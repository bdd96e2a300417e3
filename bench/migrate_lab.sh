#!/bin/sh
# Live migration: kvz-vmm (target --incoming tcp:, source getfd of a
# connected socket + migrate fd:) against QEMU (-incoming tcp:, migrate
# tcp:) on the same 256 MiB Debian guest, idle and under a dirtying load
# (8 MiB of tmpfs rewritten in a loop), side by side in ONE nested-lab run,
# both over TCP on L1's localhost, default downtime limits (300 ms).
# Total time: from the migrate command to "completed" (query-migrate polled
# every 50 ms); downtime and bytes sent as each VMM reports them (its own
# query-migrate; not measured from outside). Absolute numbers are an
# emulator's: only the ratios mean something.
# Usage: bench/migrate_lab.sh [REPS]   (env: BUILD_DIR, default build)
set -eu
. "$(dirname "$0")/lib.sh"
REPS=${1:-2}
export REPS
exec /usr/bin/python3 - <<'PYEOF'
import json, os, re, statistics, sys
sys.path.insert(0, os.path.join(os.environ["KVZ_SOURCE_DIR"], "lab"))
import kvzlab

reps = int(os.environ["REPS"])
build = os.environ["KVZ_BUILD_DIR"]
qmp_send = os.path.join(build, "tests", "virtio", "qmp-send")
kvzlab.bench_require("migrate_lab", kvzlab.default_vmm(), qmp_send)

l2_init = r"""
dd if=/dev/urandom of=/fill bs=1M count=32 2>/dev/null
mount -t tmpfs -o size=16m tmpfs /mnt
if grep -q load /proc/cmdline; then
  (while true; do dd if=/dev/urandom of=/mnt/d bs=1M count=8 conv=notrunc 2>/dev/null; done) &
fi
echo READY
i=0; while true; do i=$((i+1)); echo "TICK $i"; sleep 0.1; done
"""
helpers = r"""
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
waitfor() { i=0; while ! grep -q "$2" $1; do i=$((i+1)); [ $i -gt 1200 ] && return 1; sleep 0.1; done; }
migrated() { i=0; while [ $i -lt 6000 ]; do
  st=$(qmp-send $1 '{"execute": "query-migrate"}')
  case "$st" in *completed*) return 0;; *failed*) return 1;; esac
  sleep 0.05; i=$((i+1)); done; return 1; }
"""
lines = [helpers]
port = 5000
for load in ("idle", "load"):
    cmdline = "console=ttyS0 quiet panic=-1" + (" load" if load == "load" else "")
    kvz = (f"kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cpus 1 --memory 256M "
           f"--cmdline '{cmdline}'")
    qemu = kvzlab.qemu_l2_command(smp=1, memory="256M", cmdline=cmdline)
    for r in range(reps):
        port += 2
        lines.append(f"""
rm -f /tmp/s.sock /tmp/t.sock
{kvz} --qmp /tmp/s.sock </dev/null > /tmp/s.log 2>&1 &
{kvz} --qmp /tmp/t.sock --incoming tcp:127.0.0.1:{port} </dev/null > /tmp/t.log 2>&1 &
waitfor /tmp/s.log READY || echo "kvz-vmm {load}: no READY"
sleep 2
t0=$(now)
qmp-send --tcp-fd 127.0.0.1:{port} /tmp/s.sock '{{"execute": "getfd", "arguments": {{"fdname": "m"}}}}' '{{"execute": "migrate", "arguments": {{"uri": "fd:m"}}}}' >/dev/null
migrated /tmp/s.sock && echo "KVZLAB-TIME kvz-total-{load} $(since $t0)"
echo "STATS kvz-{load} $st"
qmp-send /tmp/s.sock '{{"execute": "quit"}}' >/dev/null
qmp-send /tmp/t.sock '{{"execute": "quit"}}' >/dev/null
sleep 1
rm -f /tmp/s.sock /tmp/t.sock
{qemu} -qmp unix:/tmp/s.sock,server=on,wait=off </dev/null > /tmp/s.log 2>&1 &
{qemu} -qmp unix:/tmp/t.sock,server=on,wait=off -incoming tcp:127.0.0.1:{port + 1} </dev/null > /tmp/t.log 2>&1 &
waitfor /tmp/s.log READY || echo "qemu {load}: no READY"
sleep 2
t0=$(now)
qmp-send /tmp/s.sock '{{"execute": "migrate", "arguments": {{"uri": "tcp:127.0.0.1:{port + 1}"}}}}' >/dev/null
migrated /tmp/s.sock && echo "KVZLAB-TIME qemu-total-{load} $(since $t0)"
echo "STATS qemu-{load} $st"
qmp-send /tmp/s.sock '{{"execute": "quit"}}' >/dev/null
qmp-send /tmp/t.sock '{{"execute": "quit"}}' >/dev/null
sleep 1
""")
res = kvzlab.run_in_lab("\n".join(lines), files={qmp_send: "/bin/qmp-send"}, smp=2,
                        timeout=300 + 300 * reps, l2_init=l2_init, with_qemu=True)
times = kvzlab.parse_times(res.output)
if res.exit_code != 0:
    print("\n".join(res.output.splitlines()[-30:]))
    print(f"migrate_lab: lab script failed (exit {res.exit_code})", file=sys.stderr)
ok = res.exit_code == 0
ram = 256 << 20
for load in ("idle", "load"):
    print(f"--- 256 MiB guest, {load}, {reps} runs each (inside L1):")
    ok &= kvzlab.compare(times, f"kvz-total-{load}", f"qemu-total-{load}") is not None
    med = {}
    for who in ("kvz", "qemu"):
        down, sent = [], []
        for m in re.finditer(rf"^STATS {who}-{load} (.*)$", res.output, re.M):
            try:
                q = json.loads(m.group(1))["return"]
            except (ValueError, KeyError):
                continue
            down.append(q.get("downtime", 0))
            sent.append(q["ram"]["transferred"] / ram)
        if down:
            med[who] = (statistics.median(down), statistics.median(sent))
            print(f"{who:>16}: downtime (self-reported) median {med[who][0]:.0f} ms, sent/RAM {med[who][1]:.3f}")
    if len(med) == 2 and med["qemu"][0] and med["qemu"][1]:
        print(f"{'ratios':>16}: downtime kvz/qemu = {med['kvz'][0] / med['qemu'][0]:.2f}, "
              f"sent kvz/qemu = {med['kvz'][1] / med['qemu'][1]:.2f}")
sys.exit(0 if ok else 1)
PYEOF
