#!/bin/sh
# Live migration: kvz-vmm (target --incoming tcp:, source getfd of a
# connected socket + migrate fd:) against QEMU (-incoming tcp:, migrate
# tcp:) on the same 256 MiB Debian guest, idle and under a dirtying load
# (8 MiB of tmpfs rewritten in a loop), side by side in ONE nested-lab run,
# both over TCP on L1's localhost, default downtime limits (300 ms), both
# with their NIC on a TAP in one bridge of L1: their own user-space
# virtio-net (NET=user, the default) or the kernel's vhost-net (NET=vhost:
# kvz-vmm's vhost=on, QEMU's -netdev tap,vhost=on; the dirty pages vhost
# writes come through its log, VHOST_F_LOG_ALL, in both).
# Total time: from the migrate command to "completed" (query-migrate polled
# every 50 ms). Downtime twice: as each VMM reports it, and from outside as
# seed 004 measures it: L1 pings the guest every 10 ms across the move and
# the longest run of lost replies, times the interval L1 really kept, is
# the downtime the network saw (it includes the target's MAC announcement).
# Bytes sent over guest RAM. Seed 004's picture, transfer rate over time
# for both, goes to BUILD/bench/migrate_rate.png (python3-matplotlib; the
# samples are printed either way). Absolute numbers are an emulator's: only
# the ratios mean something.
# Usage: bench/migrate_lab.sh [REPS]   (env: BUILD_DIR, default build;
#   NET=user|vhost)
set -eu
. "$(dirname "$0")/lib.sh"
REPS=${1:-2}
case $REPS in ''|*[!0-9]*) bench_fail "REPS: a number of runs, 1..10 (got '$REPS')" ;; esac
[ "$REPS" -ge 1 ] && [ "$REPS" -le 10 ] || bench_fail "REPS: a number of runs, 1..10 (got $REPS)"
NET=${NET:-user}
case $NET in user|vhost) ;; *) bench_fail "NET: user or vhost (got '$NET')" ;; esac
export REPS NET
exec /usr/bin/python3 - <<'PYEOF'
import json, os, re, statistics, sys
import kvzlab

reps = int(os.environ["REPS"])
vhost = os.environ["NET"] == "vhost"
build = os.environ["KVZ_BUILD_DIR"]
qmp_send = os.path.join(build, "tests", "virtio", "qmp-send")
kvzlab.bench_require("migrate_lab", kvzlab.default_vmm(), qmp_send)

l2_init = r"""
ip link set lo up
ip link set eth0 up
ip addr add 10.0.9.2/24 dev eth0
dd if=/dev/urandom of=/fill bs=1M count=32 2>/dev/null
mount -t tmpfs -o size=16m tmpfs /mnt
if grep -q load /proc/cmdline; then
  (while true; do dd if=/dev/urandom of=/mnt/d bs=1M count=8 conv=notrunc 2>/dev/null; done) &
fi
echo READY
i=0; while true; do i=$((i+1)); echo "TICK $i"; sleep 0.1; done
"""
helpers = r"""
ip link add br0 type bridge && ip addr add 10.0.9.1/24 dev br0 && ip link set br0 up
waitfor() { i=0; while ! grep -q "$2" $1; do i=$((i+1)); [ $i -gt 1200 ] && return 1; sleep 0.1; done; }
attach() { i=0; while ! ip link show $1 >/dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
           ip link set $1 master br0 && ip link set $1 up; }
# migrated SOCK LABEL: polls query-migrate, printing the bytes sent so far
migrated() { i=0; while [ $i -lt 6000 ]; do
  st=$(qmp-send $1 '{"execute": "query-migrate"}') || { echo "no QMP on $1"; return 1; }
  echo "RATE $2 $(since $t0) $(echo "$st" | sed -n 's/.*"ram": *{[^}]*"transferred": *\([0-9]*\).*/\1/p')"
  case "$st" in *completed*) return 0;; *failed*) return 1;; esac
  sleep 0.05; i=$((i+1)); done; return 1; }
""" + kvzlab.PINGER_SH
lines = [helpers]
kvhost = "on" if vhost else "off"
print(f"--- NIC: {'vhost-net' if vhost else 'user-space virtio-net'} for both")
port = 5000
mac = "52:54:00:00:09:02"
for load in ("idle", "load"):
    cmdline = "console=ttyS0 quiet panic=-1" + (" load" if load == "load" else "")
    kvz = (f"kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cpus 1 --memory 256M "
           f"--cmdline '{cmdline}'")
    qemu = kvzlab.qemu_l2_command(smp=1, memory="256M", cmdline=cmdline)
    for r in range(reps):
        port += 2
        ks, kt, qs, qt = f"ks{port}", f"kt{port}", f"qs{port}", f"qt{port}"
        qnet = lambda tap: (f"-netdev tap,id=n0,ifname={tap},script=no,downscript=no,"
                            f"vhost={'on' if vhost else 'off'} "
                            f"-device virtio-net-pci,netdev=n0,mac={mac},romfile=")
        lines.append(f"""
rm -f /tmp/s.sock /tmp/t.sock
{kvz} --net tap={ks},mac={mac},vhost={kvhost} --qmp /tmp/s.sock </dev/null > /tmp/s.log 2>&1 &
{kvz} --net tap={kt},mac={mac},vhost={kvhost} --qmp /tmp/t.sock --incoming tcp:127.0.0.1:{port} </dev/null > /tmp/t.log 2>&1 &
attach {ks}; attach {kt}
waitfor /tmp/s.log READY || {{ echo "kvz-vmm {load}: no READY"; tail -5 /tmp/s.log; }}
sleep 2
pinger; sleep 1
t0=$(now)
qmp-send --tcp-fd 127.0.0.1:{port} /tmp/s.sock '{{"execute": "getfd", "arguments": {{"fdname": "m"}}}}' '{{"execute": "migrate", "arguments": {{"uri": "fd:m"}}}}' >/dev/null
migrated /tmp/s.sock kvz-{load}-{r} && echo "KVZLAB-TIME kvz-total-{load} $(since $t0)"
echo "STATS kvz-{load} $st"
sleep 2; unpinger kvz-{load}
qmp-send /tmp/s.sock '{{"execute": "quit"}}' >/dev/null
qmp-send /tmp/t.sock '{{"execute": "quit"}}' >/dev/null
sleep 1
rm -f /tmp/s.sock /tmp/t.sock
{qemu} {qnet(qs)} -qmp unix:/tmp/s.sock,server=on,wait=off </dev/null > /tmp/s.log 2>&1 &
{qemu} {qnet(qt)} -qmp unix:/tmp/t.sock,server=on,wait=off -incoming tcp:127.0.0.1:{port + 1} </dev/null > /tmp/t.log 2>&1 &
attach {qs}; attach {qt}
waitfor /tmp/s.log READY || {{ echo "qemu {load}: no READY"; tail -5 /tmp/s.log; }}
sleep 2
pinger; sleep 1
t0=$(now)
qmp-send /tmp/s.sock '{{"execute": "migrate", "arguments": {{"uri": "tcp:127.0.0.1:{port + 1}"}}}}' >/dev/null
migrated /tmp/s.sock qemu-{load}-{r} && echo "KVZLAB-TIME qemu-total-{load} $(since $t0)"
echo "STATS qemu-{load} $st"
sleep 2; unpinger qemu-{load}
qmp-send /tmp/s.sock '{{"execute": "quit"}}' >/dev/null
qmp-send /tmp/t.sock '{{"execute": "quit"}}' >/dev/null
sleep 1
""")
res = kvzlab.run_in_lab("\n".join(lines), files={qmp_send: "/bin/qmp-send"}, smp=2,
                        timeout=300 + 300 * reps, l2_init=l2_init, with_qemu=True,
                        l1_modules=["tun", "bridge"] + (["vhost_net"] if vhost else []),
                        l2_modules=["virtio_pci", "virtio_net"])
times = kvzlab.parse_times(res.output)
if res.exit_code != 0:
    print("\n".join(res.output.splitlines()[-30:]))
    print(f"migrate_lab: lab script failed (exit {res.exit_code})", file=sys.stderr)
ok = res.exit_code == 0
ram = 256 << 20


def median_or_none(xs):
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "n/a"


for load in ("idle", "load"):
    print(f"--- 256 MiB guest, {load}, {reps} runs each (inside L1):")
    ok &= kvzlab.compare(times, f"kvz-total-{load}", f"qemu-total-{load}") is not None
    med = {}
    for who in ("kvz", "qemu"):
        down, sent, gap = [], [], []
        for m in re.finditer(rf"^STATS {who}-{load} (.*)$", res.output, re.M):
            try:
                q = json.loads(m.group(1))["return"]
            except (ValueError, KeyError):
                continue
            down.append(q.get("downtime", 0))
            sent.append(q["ram"]["transferred"] / ram)
        for m in re.finditer(rf"^GAP {who}-{load} (\d+) (\d+) (\d+) ([\d.]+)$", res.output, re.M):
            gap.append(int(m.group(1)))
            print(f"{who:>16}: pings answered {m.group(2)} of {m.group(3)}, "
                  f"one every {m.group(4)} ms, longest gap {m.group(1)} ms")
        med[who] = (median_or_none(down), median_or_none(sent), median_or_none(gap))
        print(f"{who:>16}: downtime self-reported {med[who][0]} ms, from outside {med[who][2]} ms, "
              f"sent/RAM {med[who][1]}")
    print(f"{'ratios kvz/qemu':>16}: downtime self-reported {ratio(med['kvz'][0], med['qemu'][0])}, "
          f"from outside {ratio(med['kvz'][2], med['qemu'][2])}, sent {ratio(med['kvz'][1], med['qemu'][1])}")

# Seed 004's picture: MB/s between consecutive query-migrate samples.
series = {}
for m in re.finditer(r"^RATE (\S+) ([\d.]+) (\d+)$", res.output, re.M):
    series.setdefault(m.group(1), []).append((float(m.group(2)), int(m.group(3))))
for label, pts in sorted(series.items()):
    print(f"RATE {label}: " + " ".join(f"{t:.2f}:{b >> 20}M" for t, b in pts))
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("migrate_lab: no PNG (install python3-matplotlib)")
    sys.exit(0 if ok else 1)
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, load in zip(axes, ("idle", "load")):
    for label, pts in sorted(series.items()):
        if f"-{load}-0" not in label:
            continue
        xs = [(t0 + t1) / 2 for (t0, _), (t1, _) in zip(pts, pts[1:])]
        ys = [(b1 - b0) / (1 << 20) / max(t1 - t0, 1e-3) for (t0, b0), (t1, b1) in zip(pts, pts[1:])]
        ax.plot(xs, ys, label=label.split("-")[0])
    ax.set_title(f"256 MiB guest, {load}")
    ax.set_xlabel("seconds since migrate (L1 time)")
    ax.legend()
axes[0].set_ylabel("MB/s sent")
out = os.path.join(build, "bench", "migrate_rate.png")
os.makedirs(os.path.dirname(out), exist_ok=True)
fig.tight_layout()
fig.savefig(out, dpi=100)
print(f"migrate_lab: transfer rate over time in {out}")
sys.exit(0 if ok else 1)
PYEOF
