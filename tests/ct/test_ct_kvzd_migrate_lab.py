"""kvzd's container migration end to end with the real CRIU (issue 12),
inside ONE nested-lab L1 (Debian's 6.1 kernel; this host's kernel fails
`criu check`, and tests/daemon/test_ct_migrate.py runs kvzd's migration
there with a stand-in criu).

Two hosts in L1, each a network namespace and a cgroup of its own (kvzd
started in HOST/kvz/_supervisors, the leaf kvz-ct itself moves to on
cgroup v2) with a kvzd, a state dir, an API socket, a TCP API port and an
id range registry; each is a node of the other. Their container bridges
(kvzbr0 in each namespace) are one L2 segment with L1's own kvzbr0, where
the peer process lives: the container keeps its IP and MAC wherever it
runs, as on hosts sharing a VLAN.

A busybox container created through kvzd on A keeps a counter tagged with
a number its init drew at start, and an echo server with an established
TCP connection from a client in L1. `kvz --json migrate m --to b` (the
CLI, following the job): on B the same init goes on counting, the
connection carries data both ways, the IP answers, A keeps nothing; then
back B->A. Then B's restore is made to fail (B's criu is a wrapper that
removes the TCP stream images before the real `criu restore`): the
migration fails with its reason, the container runs on at A intact (same
init, connection, IP), B keeps nothing."""
import json
import os
import re
import sys

import pytest

import ctlab
from ctlab import BUILD_DIR, kvzlab
from test_ct_checkpoint_lab import KVZCT, MODULES, PROBE, SETUP, lab_files

KVZD = os.path.join(BUILD_DIR, "src", "daemon", "kvzd")
KVZ = os.path.join(BUILD_DIR, "src", "cli", "kvz")
# kvz-ct's libarchive side (templates), found next to kvz-ct.
ARCHIVE = os.path.join(BUILD_DIR, "src", "ct", "kvz-ct-archive")

SCRIPT = ctlab.host_script(kvzlab.LAN_HOST_SH + r"""
export PATH=/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin
criu check >/tmp/check.out 2>&1 && echo CRIU-CHECK=ok || { echo CRIU-CHECK=fail; tail -5 /tmp/check.out; }
# The root gives its children the controllers, as systemd does on a v2
# host (kvz-ct enables them below the caller's cgroup only).
for c in cpu memory pids io cpuset; do echo +$c > /sys/fs/cgroup/cgroup.subtree_control; done
# iproute2's (busybox's sh would run its own ip applet, which lacks netns).
IP=/usr/local/sbin/ip
# The LAN: L1's kvzbr0 (the peer's address), each host's kvzbr0 on it.
$IP link add kvzbr0 type bridge && $IP addr add 10.77.0.100/24 dev kvzbr0 && $IP link set kvzbr0 up
# B's criu: the real one, but with /tmp/break-restore it first removes the
# TCP stream images (a restore that fails late, after the namespaces).
cat > /tmp/criuB <<'EOF'
#!/bin/sh
if [ "$1" = restore ] && [ -e /tmp/break-restore ]; then
  prev=; for a in "$@"; do [ "$prev" = --images-dir ] && rm -v "$a"/tcp-stream-*.img >> /tmp/broke 2>&1; prev=$a; done
fi
exec /usr/local/sbin/criu "$@"
EOF
chmod 755 /tmp/criuB
host() {  # $1: a|b, $2: its address
  D=/tmp/k$1; mkdir -p $D
  lan_host $1 $2 || return 1
  printf 'ctlab-token-%s-0123456789abcdef00\n' $1 > $D/tok && chmod 600 $D/tok
  mkdir -p /sys/fs/cgroup/host$1
  CRIU=; [ $1 = b ] && CRIU="KVZ_CT_CRIU=/tmp/criuB"
  # A mount namespace of its own: sysfs shows this namespace's links.
  # kvzd starts in the host's cgroup and moves itself to its leaf.
  nsenter --net=/run/netns/ns$1 unshare -m sh -c "mount -t sysfs sys /sys && mount -t cgroup2 none /sys/fs/cgroup &&
    echo \$\$ > /sys/fs/cgroup/host$1/cgroup.procs &&
    exec env KVZ_CT_IDMAP_DIR=$D/idmap $CRIU /bin/kvzd --state-dir $D/state --run-dir $D/run \
      --socket $D/sock --ct /bin/kvz-ct --listen $2:7000 --token-file $D/tok --verbose" > $D/log 2>&1 &
  echo $! > $D/pid
  for t in $(seq 50); do KVZ_SOCKET=$D/sock kvz list >/dev/null 2>&1 && return 0; sleep 0.2; done
  cat $D/log; return 1
}
host a 10.77.0.11; echo "HOST-A=$?"
host b 10.77.0.12; echo "HOST-B=$?"
echo "CG-A=$(cat /proc/$(cat /tmp/ka/pid)/cgroup)"
pair_nodes 10.77.0.11 10.77.0.12
# The init: an echo server once ctprobe is there, a counter tagged with a
# number drawn at start (a restarted init would draw another).
ka create ct m --template busybox --disk 128M --ip 10.77.0.2/24 -- /bin/sh -c \
  '(while [ ! -x /bin/ctprobe ]; do sleep 0.2; done; ctprobe gapwatch /tmp/gap & ctprobe dirty 64 0 & exec ctprobe echo-server 7777) & T=$RANDOM$RANDOM; i=0; while :; do i=$((i+1)); echo "$T $i" > /tmp/counter; sleep 0.2; done'
echo "CREATE=$?"
ka start m; echo "START=$?"
ka exec m -- sh -c 'cat > /bin/ctprobe.new && chmod 755 /bin/ctprobe.new && mv /bin/ctprobe.new /bin/ctprobe' < /ctprobe
echo "COPY=$?"
sleep 2
mkfifo /tmp/fifo
exec 3<>/tmp/fifo  # read-write: our writes never wait for the client
/ctprobe hold-client 10.77.0.2 7777 /tmp/fifo > /tmp/client.out 2>&1 &
sleep 1
echo zero >&3
up() { cut -d' ' -f1 /proc/uptime; }
# $1: the label, $2: the kvz of the host it runs on, $3: the other host's dir.
check() {
  C1=$($2 exec m -- cat /tmp/counter); sleep 1; C2=$($2 exec m -- cat /tmp/counter)
  echo "$1-COUNTER $C1 -> $C2"
  echo "$1-STATE=$($2 show m 2>&1 | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -1)"
  echo "$1" >&3
  sleep 2
  ping -c 2 -W 2 10.77.0.2 >/dev/null 2>&1 && echo "$1-PING=ok" || echo "$1-PING=fail"
  KVZ_SOCKET=$3/sock kvz show m >/dev/null 2>&1 && echo "$1-OTHER=has" || echo "$1-OTHER=none"
  echo "$1-OTHER-FILES=$(ls $3/state/ct 2>/dev/null | tr '\n' ' ')|$(ls $3/state/migrations 2>/dev/null | tr '\n' ' ')"
  echo "$1-OTHER-CGROUP=$(ls -d /sys/fs/cgroup/host*/kvz/m 2>/dev/null | tr '\n' ' ')"
}
check BEFORE ka /tmp/kb
# The workload's longest stall across a move: its downtime (gapwatch).
gap() { $1 exec m -- cat /tmp/gap | cut -d' ' -f2; }
ka exec m -- touch /tmp/gap.reset; sleep 0.5
T0=$(up); ka --json migrate m --to b > /tmp/mig1.json 2>/tmp/mig1.err; echo "MIG1=$? $(cat /tmp/mig1.err)"; T1=$(up)
echo "MIG1-TIME $T0 $T1"; tail -1 /tmp/mig1.json | sed 's/^/MIG1-JSON /'
echo "MIG1-GAP-US=$(gap kb)"
check THERE kb /tmp/ka
kb exec m -- touch /tmp/gap.reset; sleep 0.5
T0=$(up); kb --json migrate m --to a > /tmp/mig2.json 2>/tmp/mig2.err; echo "MIG2=$? $(cat /tmp/mig2.err)"; T1=$(up)
echo "MIG2-TIME $T0 $T1"; tail -1 /tmp/mig2.json | sed 's/^/MIG2-JSON /'
echo "MIG2-GAP-US=$(gap ka)"
check BACK ka /tmp/kb
touch /tmp/break-restore
ka migrate m --to b > /tmp/mig3.out 2>&1; echo "MIG3=$?"
sed 's/^/MIG3-OUT /' /tmp/mig3.out | tail -5
echo "BROKE=$(grep -c tcp-stream /tmp/broke 2>/dev/null)"
rm /tmp/break-restore
check FAILED ka /tmp/kb
# Downtime: a single final dump (--pre-dumps 0: all 64 MiB while frozen,
# the plain way's freeze without its copy through disk) against kvz's
# default iterative move (2 pre-dumps while it runs), the same direction.
ka exec m -- touch /tmp/gap.reset; sleep 0.5
T0=$(up); ka --json migrate m --to b --pre-dumps 0 > /tmp/mig4.json 2>/tmp/mig4.err; echo "MIG4=$? $(cat /tmp/mig4.err)"; T1=$(up)
echo "MIG4-TIME $T0 $T1"; tail -1 /tmp/mig4.json | sed 's/^/MIG4-JSON /'
echo "MIG4-GAP-US=$(gap kb)"
# A moment for the source to settle: right after a move, under emulation,
# the next reservation once missed kvzd's 2 s peer connect timeout.
sleep 2
kb --json migrate m --to a > /tmp/mig5.json 2>/tmp/mig5.err; echo "MIG5=$? $(cat /tmp/mig5.err)"
sleep 2
ka exec m -- touch /tmp/gap.reset; sleep 0.5
T0=$(up); ka --json migrate m --to b > /tmp/mig6.json 2>/tmp/mig6.err; echo "MIG6=$? $(cat /tmp/mig6.err)"; T1=$(up)
echo "MIG6-TIME $T0 $T1"; tail -1 /tmp/mig6.json | sed 's/^/MIG6-JSON /'
echo "MIG6-GAP-US=$(gap kb)"
# Where the iterative move's frozen window went: kvzd's moments on each
# side (CLOCK_MONOTONIC ms, one clock in one L1), the target supervisor's
# phases (ms since its start; its start is thawed-at-ms less
# tasks-resumed), the workload's stalls of 100 ms or more (ms), and
# whether the restored init is in a time namespace of its own (CRIU's).
echo "MIG6-STALLS $(kb exec m -- cat /tmp/gap.log 2>/dev/null | awk '$3 - $2 >= 100000 { printf "%d ", ($3 - $2) / 1000 }')"
echo "MIG6-TARGET $(tr -d ' \n' < /tmp/kb/run/ct/m.json | grep -o '"start-ms":{[^}]*}\|"thawed-at-ms":[0-9]*' | tr '\n' ' ')"
grep -h "moved out" /tmp/ka/log | tail -1 | sed 's/^/MIG6-CLOCK-OUT /'
grep -h "moved in" /tmp/kb/log | tail -1 | sed 's/^/MIG6-CLOCK-IN /'
echo "MIG6-TIMENS=$(readlink /proc/self/ns/time) $(readlink /proc/$(sed -n 's/.*"init-pid": *\([0-9]*\).*/\1/p' /tmp/kb/run/ct/m.json)/ns/time)"
check FINAL kb /tmp/ka
# Each move's phases (to the second) and kvzd's own account of it.
for h in a b; do KVZ_SOCKET=/tmp/k$h/sock kvz events --guest m --limit 1000 2>&1 |
  grep -E "job-phase|migrated-out|migration-failed|discarded" | sed "s/^/EV-$h /"; done
sed 's/^/CLIENT /' /tmp/client.out
for h in a b; do grep -iE "error|warn" /tmp/k$h/log | tail -8 | sed "s/^/LOG-$h /"; done
for f in $(find /tmp/ka /tmp/kb -name 'restore.log' -o -name 'dump.log' 2>/dev/null); do
  grep -E "Error" $f | head -5 | sed "s|^|CRIULOG $f |"; done
kb stop m; echo "STOP=$?"
# The plain way (runc/LXD): one `criu dump` of the running container, its
# images copied through disk, `criu restore` (kvz-ct checkpoint, cp, kvz-ct
# restore), on a container of kvz-ct's own beside kvzd with the same
# 64 MiB touched: the yardstick of issue 12's downtime goal.
P=/tmp/proot; mkdir -p $P/bin $P/proc $P/sys $P/dev $P/tmp /tmp/pmnt /tmp/P/p
cp /bin/busybox $P/bin/ && ln -s busybox $P/bin/sh && cp /ctprobe $P/bin/ && chmod 0777 $P/tmp
truncate -s 192M /tmp/P/p/private.img && mkfs.btrfs -q /tmp/P/p/private.img &&
  mount -o loop /tmp/P/p/private.img /tmp/pmnt && cp -a $P/. /tmp/pmnt/ && umount /tmp/pmnt
export KVZ_CT_IDMAP_DIR=/tmp/idP
kvz-ct run --name p --run-dir /tmp/runP --ct-root /tmp/P --detach --memory 128M:192M -- \
  sh -c "ctprobe dirty 64 0 & exec ctprobe gapwatch /tmp/gap"; echo "PLAIN-RUN=$?"
pinit() { sed -n 's/.*"init-pid": \([0-9]*\).*/\1/p' /tmp/runP/p.json; }
sleep 3; touch /proc/$(pinit)/root/tmp/gap.reset; sleep 0.5
T0=$(up)
kvz-ct checkpoint --name p --run-dir /tmp/runP --dir /tmp/pd >/dev/null && cp -a /tmp/pd /tmp/pd2 &&
  kvz-ct restore --name p --dir /tmp/pd2; echo "PLAIN=$?"
T1=$(up); sleep 1
echo "PLAIN-TIME $T0 $T1"
echo "PLAIN-GAP-US=$(cut -d' ' -f2 /proc/$(pinit)/root/tmp/gap)"
kvz-ct stop --name p --run-dir /tmp/runP --timeout 1
# What a copy's new UUID adds to a move within one kernel (btrfstune -m
# while frozen, "Copies of a private area"), here under emulation.
cp /tmp/P/p/private.img /tmp/tune.img; T0=$(up); btrfstune -m /tmp/tune.img; echo "TUNE=$?"; T1=$(up)
echo "TUNE-TIME $T0 $T1"
echo LAB-KVZD-CTMIG-DONE""", setup=SETUP)


def files():
    f = lab_files()
    for binary, dest in ((KVZD, "/bin/kvzd"), (KVZ, "/bin/kvz"), (ARCHIVE, "/bin/kvz-ct-archive")):
        f[binary] = dest
        for lib in kvzlab._ldd(binary):
            f[lib] = lib
    return f


@pytest.fixture(scope="module")
def lab_out():
    kvzlab.skip_unless_lab()
    for p in (KVZCT, PROBE, KVZD, KVZ, ARCHIVE):
        if not os.path.exists(p):
            pytest.skip(f"{p} not built")
    res = kvzlab.run_in_lab(SCRIPT, files=files(), smp=1, mem_mb=1536, timeout=480,
                            vmm=False, l1_modules=MODULES, stream=sys.stdout)
    return res.output


def values(out):
    return dict(re.findall(r"^([A-Z0-9-]+)=(.*)$", out, re.M))


def counter(out, label):
    """(tag, count) before and after a second, on the host it runs on."""
    m = re.search(r"^%s-COUNTER (\d+) (\d+) -> (\d+) (\d+)$" % label, out, re.M)
    assert m, out[-4000:]
    return m.group(1), int(m.group(2)), m.group(3), int(m.group(4))


def runs_on(out, label, tag):
    """Running with the init drawn at the first start (tag), counting,
    answering on the connection and the IP; the other host keeps nothing."""
    v = values(out)
    t1, c1, t2, c2 = counter(out, label)
    assert t1 == t2 == tag and c2 > c1, (label, t1, t2, c1, c2)
    assert v[label + "-STATE"] == "running", v
    assert v[label + "-PING"] == "ok", out[-4000:]
    assert v[label + "-OTHER"] == "none", out[-4000:]
    assert v[label + "-OTHER-FILES"] == "|", v
    assert len(v[label + "-OTHER-CGROUP"].split()) <= 1, v
    return c2


def migration(out, n):
    v = values(out)
    assert v["MIG%d" % n].split()[0] == "0", out[-4000:]
    rec = json.loads(re.search(r"^MIG%d-JSON (.*)$" % n, out, re.M).group(1))
    assert rec["state"] == "completed", rec
    return rec


def test_kvzd_migrates_container_with_real_criu(lab_out):
    out = lab_out
    assert "LAB-KVZD-CTMIG-DONE" in out, out[-4000:]
    assert "CRIU-CHECK=ok" in out, out[-4000:]
    v = values(out)
    for k in ("HOST-A", "HOST-B", "NODE-A", "NODE-B", "CREATE", "START", "COPY"):
        assert v[k] == "0", (k, out[-4000:])
    # kvzd moved itself into its cgroup's leaf (cgroup_leaf.c); its
    # containers got their controllers in hosta/kvz/NAME.
    assert v["CG-A"] == "0::/hosta/kvz/_supervisors", v["CG-A"]
    tag = counter(out, "BEFORE")[0]
    c0 = runs_on(out, "BEFORE", tag)
    migration(out, 1)
    c1 = runs_on(out, "THERE", tag)
    migration(out, 2)
    c2 = runs_on(out, "BACK", tag)
    assert c0 < c1 < c2
    # One connection all along (the same local port), data both ways.
    echoes = re.findall(r"^CLIENT echo (\w+) port (\d+)$", out, re.M)
    assert [e[0] for e in echoes] == ["zero", "BEFORE", "THERE", "BACK", "FAILED", "FINAL"], out[-4000:]
    assert len({e[1] for e in echoes}) == 1, echoes
    # The workload's longest stall (its downtime) lies within the move.
    for n in (1, 2, 4, 6):
        gap_us = int(v["MIG%d-GAP-US" % n])
        t0, t1 = map(float, re.search(r"^MIG%d-TIME (\S+) (\S+)$" % n, out, re.M).groups())
        print("migration %d: total %.2f s, the workload stalled %.3f s at most" % (
            n, t1 - t0, gap_us / 1e6))
        assert 0 < gap_us < (t1 - t0 + 1) * 1e6, (gap_us, t0, t1)


def test_downtime_against_plain_dump_and_restore(lab_out):
    """kvz's iterative move through kvzd against the plain way (one dump,
    the images copied through disk, a restore; kvz-ct directly), the same
    64 MiB touched, in the same L1. Issue 12's goal is 0.2x: the ratio is
    printed (0.77-1.19 in four runs, stalls then on the monotonic clock,
    which CRIU's time namespace holds back: see
    test_downtime_report_and_staged_target; fixed costs dominate at 64 MiB
    under emulation); only a gross regression fails."""
    v = values(lab_out)
    assert v["PLAIN-RUN"] == "0" and v["PLAIN"] == "0", lab_out[-4000:]
    plain, iterative = int(v["PLAIN-GAP-US"]), int(v["MIG6-GAP-US"])
    t0, t1 = map(float, re.search(r"^PLAIN-TIME (\S+) (\S+)$", lab_out, re.M).groups())
    print("downtime: plain dump+copy+restore %.3f s (total %.2f s), kvzd's iterative move "
          "%.3f s: ratio %.2f (goal 0.2)" % (plain / 1e6, t1 - t0, iterative / 1e6,
                                            iterative / plain))
    assert 0 < plain < (t1 - t0 + 1) * 1e6, (plain, t0, t1)
    # 4x: make check's host lane runs beside the lab and does not load it
    # evenly; the two modes run a minute apart (2.07x in one such run).
    assert iterative < 4 * plain, (iterative, plain)
    assert v["TUNE"] == "0", lab_out[-4000:]
    t0, t1 = map(float, re.search(r"^TUNE-TIME (\S+) (\S+)$", lab_out, re.M).groups())
    print("btrfstune -m of a 192 MiB private area in L1: %.2f s (in the frozen window of a "
          "move within one kernel only)" % (t1 - t0))


def test_downtime_iterative_against_single_dump(lab_out):
    """kvz's iterative move (2 pre-dumps while it runs) against a single
    final dump of its 64 MiB while frozen, through the same kvzd path, the
    same direction. Both modes must have run as asked (the phases kvzd
    recorded); the stalls are printed. Under emulation the frozen window
    is mostly fixed costs (CRIU seizing and restoring the tree, the
    supervisor's start), not the 64 MiB: iterative/single was 0.66-0.71
    in three runs, 1.05 in another, so only a gross regression (four times
    the single dump's: make check's host lane loads the lab unevenly) fails
    here."""
    v = values(lab_out)
    for n in (4, 5, 6):
        assert v["MIG%d" % n].split()[0] == "0", lab_out[-4000:]
    phases = re.findall(r"^EV-a .*checkpoint: (\d+) pre-dumps", lab_out, re.M)
    assert "0" in phases and "2" in phases, phases
    single, iterative = int(v["MIG4-GAP-US"]), int(v["MIG6-GAP-US"])
    recs = {n: migration(lab_out, n) for n in (4, 6)}
    print("downtime (workload's longest stall): single dump %.3f s, iterative %.3f s, "
          "ratio %.2f; totals %.1f s, %.1f s" % (
              single / 1e6, iterative / 1e6, iterative / single,
              (recs[4]["ended_ms"] - recs[4]["started_ms"]) / 1e3,
              (recs[6]["ended_ms"] - recs[6]["started_ms"]) / 1e3))
    for line in re.findall(r"^EV-\w .*migrated-out.*$", lab_out, re.M):
        print(line)
    runs_on(lab_out, "FINAL", counter(lab_out, "BEFORE")[0])
    assert iterative < 4 * single, (iterative, single)


def test_downtime_report_and_staged_target(lab_out):
    """kvzd's downtime is the workload's stall, on the host's clock: from
    the hold's freeze to the restored tasks running (gapwatch times by
    CLOCK_REALTIME: CRIU restores into a time namespace whose monotonic
    clock skips most of the window; before that, the stall read 1.5-2.2 s
    short of the report). And the target's supervisor set up its id
    range, cgroup and bridge before the source froze (staged restore):
    only the go, the mount and criu's restore lie in the window."""
    v = values(lab_out)
    for n in (1, 2, 4, 6):
        down = migration(lab_out, n)["result"]["downtime_ms"]
        stall = int(v["MIG%d-GAP-US" % n]) / 1000
        print("migration %d: kvzd's downtime %d ms, the workload's longest stall %.0f ms" % (
            n, down, stall))
        assert abs(down - stall) <= max(1000, 0.25 * stall), (n, down, stall)
    times = dict(re.findall(r"(frozen|dumped|sent|confirmed) at (\d+)",
                            re.search(r"^MIG6-CLOCK-OUT (.*)$", lab_out, re.M).group(1)))
    target = re.search(r'^MIG6-TARGET "start-ms":(\{.*\}) "thawed-at-ms":(\d+)', lab_out, re.M)
    start, thawed = json.loads(target.group(1)), int(target.group(2))
    t0 = thawed - start["tasks-resumed"]
    frozen = int(times["frozen"])
    rows = [("final dump (criu, settle)", int(times["dumped"]) - frozen),
            ("final images and disk changes", int(times["sent"]) - int(times["dumped"])),
            ("to the target's go", t0 + start["go"] - int(times["sent"])),
            ("mount of the private area", start["mount"] - start["go"]),
            ("images shared, root staged", start["root-staged"] - start["mount"]),
            ("criu restore to tasks resumed", start["tasks-resumed"] - start["root-staged"])]
    print("iterative move (migration 6), frozen window on L1's clock, ms:")
    for what, ms in rows:
        print("  %-32s %6d" % (what, ms))
    print("  %-32s %6d" % ("freeze to tasks running", thawed - frozen))
    print("  time namespaces (L1, restored init): %s" % v["MIG6-TIMENS"])
    assert t0 + start["cgroup-bridge"] < frozen < t0 + start["go"], (t0, start, frozen)


def test_failed_restore_leaves_source_running(lab_out):
    out = lab_out
    assert "LAB-KVZD-CTMIG-DONE" in out, out[-4000:]
    v = values(out)
    assert int(v["BROKE"]) >= 1, out[-4000:]
    assert v["MIG3"] != "0", out[-4000:]
    tag = counter(out, "BEFORE")[0]
    c3 = runs_on(out, "FAILED", tag)
    assert c3 > counter(out, "BACK")[3]
    assert re.search(r"^CLIENT echo FAILED port", out, re.M), out[-4000:]
    assert v["STOP"] == "0"
