"""kvzd's live migration of a real guest (Debian's stock kernel) between two
kvzd "hosts" in one nested-lab L1 (issue 11), through the CLI.

Each host is a network namespace with its own kvzd, state dir, API socket
and TCP API, registered as a node of the other; its bridge kvzbr0 has a
veth into L1's own kvzbr0, so the three bridges are one LAN, as hosts on
one VLAN. Both kvzd see one image dir (STATE/images of each is a symlink
to /shared/images, as an NFS export mounted on both would be): the VM
kvzd made there moves with "disk shared" and keeps writing the same file.
The VM: 2 vCPUs, 256M, its NIC on vhost-net (kvz-vmm's default where
/dev/vhost-net opens) on a tap in kvzbr0 of the host it runs on; it counts
on its console with its uptime and the rounds of its load, stamps the
count into its disk, serves a TCP echo (busybox nc) and, with
KVZ_LAB_MIGRATE_LOAD=1, rewrites 8 MiB of its RAM with random bytes (the
dirtying load, as bench/migrate_lab.sh's; see LOAD_SH for why it is off in
make check).

From L1 (the client, a third party on the LAN) a ping every 10 ms runs
through each `kvz --json migrate vm --to NODE`, and one TCP connection to
the guest's echo sends a numbered line every 100 ms for the whole run:
A->B, then B->A (KVZ_LAB_MIGRATE_ROUNDS=N: N such round trips, 1 in make
check). After each: the VM runs on the target only (one kvz-vmm of it in
L1, the source has no record), the console's count read across the move
(the source's last bytes, then the target's) neither repeats nor skips,
the load went on, the disk shows a count written on the target, the job's
last record and the events say completed, the echo went on in order, and
the longest ping and echo gaps (downtime seen from outside) are printed.

Then three failures, each a slowed move A->B: the target's kvz-vmm killed
(-9); B's link cut (L1's end of B's veth down: A and B no longer reach each
other, the client still reaches A) until the source gave up; `kvz job
cancel`. Each time the job fails (or ends cancelled), the VM runs on at A
(counting, answering ping and echo, writing its disk) and B keeps nothing
(no record, no kvz-vmm, no file). A last move A->B then completes."""
import json
import os
import re
import shutil
import sys

import pytest

from labpaths import BUILD_DIR as BUILD, kvzlab

KVZD = os.path.join(BUILD, "src", "daemon", "kvzd")
KVZ = os.path.join(BUILD, "src", "cli", "kvz")

L2_INIT = r"""
ip link set lo up
ip link set eth0 up
ip addr add 10.0.9.2/24 dev eth0
# The echo the client keeps one TCP connection to.
nc -ll -p 7000 -e cat &
# The dirtying load: 8 MiB of random bytes rewritten in place, 2 MiB at
# a time with 0.1 s between (without the pause it took one of L1's two
# CPUs from the migration and the guest's own shell), each write counted
# in /mnt/n.
mount -t tmpfs -o size=16m tmpfs /mnt
echo 0 > /mnt/n
@LOAD@
i=0
while true; do
  i=$((i+1))
  echo "L2-COUNT $i $(cut -d' ' -f1 /proc/uptime) $(cat /mnt/n)"
  [ $((i % 4)) = 0 ] && printf 'DISK-COUNT %08d\n' $i | dd of=/dev/vda bs=512 count=1 conv=notrunc,fsync 2>/dev/null
  sleep 0.5
done
"""

L1_SCRIPT = kvzlab.PINGER_SH + kvzlab.LAN_HOST_SH + r"""
export PATH=/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin
IP=/usr/local/sbin/ip
ROUNDS=@ROUNDS@
mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup || { echo NO-CGROUP2; exit 3; }
[ -c /dev/vhost-net ] && echo VHOST=yes || echo VHOST=no
# The root gives its children the controllers, as systemd does.
for c in cpu memory pids io cpuset; do echo +$c > /sys/fs/cgroup/cgroup.subtree_control; done
mkdir -p /shared/images
# The LAN: L1's kvzbr0 (the client's address), each host's kvzbr0 on it.
$IP link add kvzbr0 type bridge && $IP addr add 10.0.9.1/24 dev kvzbr0 && $IP link set kvzbr0 up
host() {  # $1: a|b, $2: its address
  D=/tmp/k$1; mkdir -p $D/state
  ln -s /shared/images $D/state/images
  lan_host $1 $2 || return 1
  printf 'vmlab-token-%s-0123456789abcdef0000\n' $1 > $D/tok && chmod 600 $D/tok
  mkdir -p /sys/fs/cgroup/host$1
  # Its own mount namespace: sysfs shows this namespace's links (kvzd
  # checks the bridge there).
  nsenter --net=/run/netns/ns$1 unshare -m sh -c "mount -t sysfs sys /sys && mount -t cgroup2 none /sys/fs/cgroup &&
    echo \$\$ > /sys/fs/cgroup/host$1/cgroup.procs &&
    exec /bin/kvzd --state-dir $D/state --run-dir $D/run --socket $D/sock --vmm /bin/kvz-vmm \
      --images-dir /l2 --listen $2:7000 --token-file $D/tok" > $D/log 2>&1 &
  echo $! > $D/pid
  for t in $(seq 50); do KVZ_SOCKET=$D/sock kvz list >/dev/null 2>&1 && return 0; sleep 0.2; done
  cat $D/log; return 1
}
host a 10.0.9.11; echo "HOST-A=$?"
host b 10.0.9.12; echo "HOST-B=$?"
pair_nodes 10.0.9.11 10.0.9.12
ka create vm vm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline 'console=ttyS0 quiet panic=-1' \
  --memory 256M --cpus 2 --disk 16M --net bridge=kvzbr0,mac=52:54:00:00:09:02; echo "CREATE=$?"
echo "DISK=$(ka show vm | sed -n 's/.*"disk_path": *"\([^"]*\)".*/\1/p' | head -1)"
ka start vm; echo "START=$?"
# con KVZ: the guest's console so far (kvz-vmm keeps it).
con() { timeout 2 env KVZ_SOCKET=$1 kvz console vm 2>/dev/null < /dev/null | tr -d '\r'; }
# last KVZ: "COUNT UPTIME LOAD-ROUNDS" of the last whole console line.
last() { con $1 | grep -E '^L2-COUNT [0-9]+ [0-9.]+ [0-9]+$' | tail -1 | cut -d' ' -f2,3,4; }
i=0; while [ $i -lt 120 ] && ! con /tmp/ka/sock | grep -q '^L2-COUNT 8 '; do sleep 1; i=$((i+1)); done
echo "BOOTED=$i"
# A guest that never counted makes every later move an offline move of a
# stopped VM: say why and end here rather than run the whole script.
if [ $i -ge 120 ]; then
  echo "NOT-BOOTED: state $(ka show vm 2>&1 | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -1)"
  con /tmp/ka/sock | tail -n 20 | sed 's/^/NOT-BOOTED-CON: /'
  exit 4
fi
ping -c 3 -W 2 10.0.9.2 >/dev/null 2>&1 && echo "PING-0=ok" || echo "PING-0=fail"
# The TCP client: one connection to the guest's echo for the whole run, a
# numbered line every 100 ms; /tmp/echo.log gets "N SENT_AT ECHOED_AT" per
# echo (read from /proc/uptime by the shell: no fork per line).
( i=0; while [ ! -e /tmp/echo.stop ]; do [ -e /tmp/echo.pause ] && { sleep 0.1; continue; }
    i=$((i+1)); read t x < /proc/uptime
    echo "E $i $t"; echo $i > /tmp/echo.sent; sleep 0.1; done ) |
  nc 10.0.9.2 7000 | while read tag n ts; do read t x < /proc/uptime; echo "$n $ts $t"; done > /tmp/echo.log &
sleep 3
echo "ECHO-0=$(wc -l < /tmp/echo.log)"
# echo_mark, then echo_report LABEL: "ECHO LABEL GAP_MS RTT_MS ECHOES
# OUT_OF_ORDER" over the echoes since the mark (the gap counts from the
# last echo before it).
echo_mark() { em=$(wc -l < /tmp/echo.log); }
echo_report() {
  awk -v from=$em -v label=$1 '
    NR > from { k++; if ($3 - $2 > rtt) rtt = $3 - $2
                if (NR > 1) { g = $3 - pt; if (g > gap) gap = g; if ($1 != pn + 1) bad++ } }
    { pn = $1; pt = $3 }
    END { printf "ECHO %s %.0f %.0f %d %d\n", label, gap * 1000, rtt * 1000, k, bad }' /tmp/echo.log
}
# vmms: how many kvz-vmm of the VM run in L1 ([k]: not grep itself).
vmms() { for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < $f 2>/dev/null | grep -q -- "[k]vz-vmm --name vm " && echo; done | wc -l; }
# pingable LABEL: PING-LABEL=ok once the guest answers (20 tries of 2 s),
# PING-WAIT-LABEL how long that took.
pingable() { t1=$(now); i=0
  while [ $i -lt 20 ] && ! ping -c 1 -W 2 10.0.9.2 >/dev/null 2>&1; do i=$((i+1)); done
  [ $i -lt 20 ] && echo "PING-$1=ok" || echo "PING-$1=fail"; echo "PING-WAIT-$1=$(since $t1)"; }
stamp() { head -c 20 /shared/images/vm.img | sed -n 's/DISK-COUNT \([0-9]*\)/\1/p'; }
# move N SRC-KVZ DST-KVZ NODE: the CLI with its progress records, then the checks.
move() {
  n=$1; src=$2; dst=$3
  before=$(last $src); echo "BEFORE-$n=$before"
  # The source's console to its end (until its kvz-vmm stops): with the
  # target's, the guest's whole output across the move.
  (sleep 900) | env KVZ_SOCKET=$src kvz console vm > /tmp/con$n.src 2>/dev/null &
  cp=$!
  pinger; echo_mark; sleep 1
  t0=$(now)
  KVZ_SOCKET=$src kvz --json migrate vm --to $4 > /tmp/mig$n.json 2>/tmp/mig$n.err
  rc=$?; echo "MIG-$n=$rc $(tr '\n' ' ' < /tmp/mig$n.err)"
  # A failed move: the guest's last words at the source, for the report.
  [ $rc = 0 ] || { sleep 2; tr -d '\r' < /tmp/con$n.src | tail -15 | sed "s/^/CON-SRC-$n /"; }
  echo "MIG-TIME-$n=$(since $t0)"; t_end=$(now)
  sleep 2; unpinger $n; echo_report $n
  kill $cp 2>/dev/null
  echo "RECORDS-$n=$(wc -l < /tmp/mig$n.json)"
  tail -1 /tmp/mig$n.json | sed "s/^/MIG-JSON-$n /"
  grep -o '"phase": *"[^"]*"' /tmp/mig$n.json | sort -u | tr '\n' ' ' | sed "s/^/PHASES-$n=/"; echo
  # The guest's first count on the target past the one before the move
  # (its shell ran on there), polled about every 2.5 s for 60 s at most.
  c0=$(echo "$before" | cut -d' ' -f1); i=0
  while [ $i -lt 24 ]; do a=$(last $dst); c=$(echo "$a" | cut -d' ' -f1)
    [ -n "$c" ] && [ "$c" -gt "$c0" ] && break; sleep 0.5; i=$((i+1)); done
  echo "AFTER-$n=$a"; echo "RESUMED-$n=$(since $t_end)"
  # Every count printed, in order: "COUNTS FIRST LAST REPEATS-OR-SKIPS".
  con $dst > /tmp/con$n.dst
  echo "SEQ-$n=$(cat /tmp/con$n.src /tmp/con$n.dst | tr -d '\r' | grep -o 'L2-COUNT [0-9]*' |
    awk 'NR == 1 { f = $2 } NR > 1 && $2 != p + 1 { bad++ } { p = $2 } END { print NR, f, p, bad + 0 }')"
  # A guest that crashed around the move (panic=-1 reboots it at once, and
  # kvz-vmm stops on the reset): its last words, for the report.
  tr -d '\r' < /tmp/con$n.src | grep -aE -A12 "Kernel panic|BUG:|Oops|general protection|RIP:" |
    head -30 | sed "s/^/PANIC-SRC-$n /"
  tr -d '\r' < /tmp/con$n.dst | grep -aE -A12 "Kernel panic|BUG:|Oops|general protection|RIP:" |
    head -30 | sed "s/^/PANIC-DST-$n /"
  echo "STATE-$n=$(KVZ_SOCKET=$dst kvz show vm 2>&1 | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -1)"
  KVZ_SOCKET=$src kvz show vm >/dev/null 2>&1 && echo "SRC-HAS-$n=yes" || echo "SRC-HAS-$n=no"
  echo "VMMS-$n=$(vmms)"
  echo "DISKSTAMP-$n=$(stamp)"
  echo "DSTDISK-$n=$(KVZ_SOCKET=$dst kvz show vm | sed -n 's/.*"disk_path": *"\([^"]*\)".*/\1/p' | head -1)"
  pingable $n
  KVZ_SOCKET=$src kvz events --guest vm 2>&1 | tail -2 | sed "s/^/EV-SRC-$n /"
  KVZ_SOCKET=$dst kvz events --guest vm 2>&1 | tail -3 | sed "s/^/EV-DST-$n /"
}
r=0
while [ $r -lt $ROUNDS ]; do
  move $((2 * r + 1)) /tmp/ka/sock /tmp/kb/sock b
  move $((2 * r + 2)) /tmp/kb/sock /tmp/ka/sock a
  r=$((r + 1))
done
# The failures: each a move A->B slowed to 16 Mbit/s, started in the
# background and caught in pre-copy.
# The target's kvz-vmm: the pid of B's incoming record (A's kvz-vmm came
# back with --incoming too: its command line does not tell them apart).
pidof_vm() { KVZ_SOCKET=$1 kvz show vm 2>/dev/null | sed -n 's/.*"pid": *\([1-9][0-9]*\).*/\1/p' | head -1; }
fail_start() {  # LABEL
  echo "BEFORE-$1=$(last /tmp/ka/sock)"
  echo_mark
  ka --json migrate vm --to b --bandwidth 16 > /tmp/mig$1.json 2>/tmp/mig$1.err &
  mp=$!
  i=0; while [ $i -lt 150 ] && ! grep -q 'pre-copy pass' /tmp/mig$1.json; do sleep 0.2; i=$((i+1)); done
  sleep 2
  grep -o '"phase": *"[^"]*"' /tmp/mig$1.json | tail -1 | sed "s/^/PHASE-$1=/"
}
fail_wait() {  # LABEL: the CLI's end (at most 120 s), then B's incoming record gone (60 s)
  t0=$(now); i=0
  while kill -0 $mp 2>/dev/null && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done
  kill -0 $mp 2>/dev/null && echo "HUNG-$1=yes"
  wait $mp; echo "MIG-$1=$? $(tr '\n' ' ' < /tmp/mig$1.err)"
  echo "FAIL-TIME-$1=$(since $t0)"
}
fail_clean() {  # LABEL: waits for B to keep nothing (60 s at most)
  t0=$(now); i=0
  while kb show vm >/dev/null 2>&1 && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
  echo "CLEAN-TIME-$1=$(since $t0)"
}
fail_check() {  # LABEL: the VM runs on at A, unharmed; B keeps nothing
  l=$1
  sleep 3
  echo "AFTER-$l=$(last /tmp/ka/sock)"
  echo "STATE-$l=$(ka show vm 2>&1 | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -1)"
  kb show vm >/dev/null 2>&1 && echo "DST-HAS-$l=yes" || echo "DST-HAS-$l=no"
  echo "DST-FILES-$l=$(ls /tmp/kb/state/migrations 2>/dev/null | tr '\n' ' ')"
  echo "VMMS-$l=$(vmms)"
  ls /shared/images/vm.img >/dev/null 2>&1 && echo "DISK-$l=kept" || echo "DISK-$l=gone"
  echo "SHARED-$l=$(ls -A /shared/images | tr '\n' ' ')"
  pingable $l
  sleep 3; echo "DISKSTAMP-$l=$(stamp)"
  echo "LATER-$l=$(last /tmp/ka/sock)"
  echo_report $l
  ka events --guest vm 2>&1 | tail -2 | sed "s/^/EV-SRC-$l /"
  kb events --guest vm 2>&1 | tail -2 | sed "s/^/EV-DST-$l /"
}
# K: the target's kvz-vmm killed mid-move.
fail_start K
sp=$(pidof_vm /tmp/ka/sock); tp=$(pidof_vm /tmp/kb/sock)
echo "SOURCE-PID=$sp"
[ -n "$tp" ] && kill -9 $tp; echo "KILLED=${tp:-none}"
fail_wait K; fail_clean K; fail_check K
# C: B's link cut mid-move (L1's end of its veth down): A and B no longer
# reach each other, the client still reaches A. Up again once the source
# gave up; B then gives up on its own (no data for its stream timeout).
fail_start C
$IP link set lb down; echo "CUT=$?"
fail_wait C
$IP link set lb up; echo "UNCUT=$?"
fail_clean C; fail_check C
# X: `kvz job cancel` mid-move.
fail_start X
jid=$(grep -o '"id": *[0-9]*' /tmp/migX.json | head -1 | grep -o '[0-9]*$')
ka job cancel $jid; echo "CANCEL=$? ${jid:-none}"
fail_wait X
echo "JOB-X=$(ka job show $jid 2>&1 | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -1)"
fail_clean X; fail_check X
# F: after the failures, a move completes.
move F /tmp/ka/sock /tmp/kb/sock b
# The client stops sending (the connection stays open) and waits for the
# echoes still on their way (30 s at most).
touch /tmp/echo.pause; sleep 0.5; sent=$(cat /tmp/echo.sent); i=0
while [ $i -lt 60 ] && [ "$(tail -1 /tmp/echo.log | cut -d' ' -f1)" != "$sent" ]; do sleep 0.5; i=$((i+1)); done
pidof nc >/dev/null && echo "ECHO-ALIVE=yes" || echo "ECHO-ALIVE=no"
echo "ECHO-SENT=$sent"
em=0; echo_report ALL
touch /tmp/echo.stop
for h in a b; do grep -iE "error|warn" /tmp/k$h/log | tail -8 | sed "s/^/LOG-$h /"
  tail -5 /tmp/k$h/state/logs/vm.log 2>/dev/null | sed "s/^/VMLOG-$h /"; done
kb stop vm >/dev/null 2>&1; echo "STOP=$?"
echo LAB-KVZD-VMMIG-DONE
"""


def files():
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/bin")
    if not ip:
        pytest.skip("iproute2's ip is not installed here (scripts/install-deps.sh)")
    return kvzlab.with_libs({KVZD: "/bin/kvzd", KVZ: "/bin/kvz",
                             os.path.realpath(ip): "/usr/local/sbin/ip"})


def rounds():
    """A->B->A round trips: KVZ_LAB_MIGRATE_ROUNDS (1 in make check; the
    issue's five by hand)."""
    text = os.environ.get("KVZ_LAB_MIGRATE_ROUNDS", "1")
    if not text.isdigit() or not 1 <= int(text) <= 20:
        raise ValueError(f"KVZ_LAB_MIGRATE_ROUNDS={text!r}: a number of round trips, 1..20")
    return int(text)


# The dirtying load runs with KVZ_LAB_MIGRATE_LOAD=1 only (by hand, not in
# make check): in 3 of the 4 runs with it (2026-12-02) the guest reset,
# twice on the source during pre-copy (once after 23 passes that never
# converged, once in pass 2, where L1 saw an L2 triple fault: a page fault
# on an instruction fetch in kernel code) and once on the target 8 s after
# a completed move. The cause is
# not known (issue 11 stays open): kvz-vmm writes no guest RAM on the
# source while it sends, which leaves the emulated nested paging under
# dirty logging as the suspect, not shown.
LOAD_SH = """(n=0; while true; do for o in 0 2 4 6; do
  dd if=/dev/urandom of=/mnt/d bs=1M seek=$o count=2 conv=notrunc 2>/dev/null
  n=$((n+1)); echo $n > /mnt/n; sleep 0.1; done; done) &"""


def with_load():
    return os.environ.get("KVZ_LAB_MIGRATE_LOAD", "0") == "1"


@pytest.fixture(scope="module")
def lab_out():
    kvzlab.skip_unless_lab()
    for p in (KVZD, KVZ, os.path.join(BUILD, "src", "vmm", "kvz-vmm")):
        if not os.path.exists(p):
            pytest.skip(f"{p} not built")
    n = rounds()
    res = kvzlab.run_in_lab(L1_SCRIPT.replace("@ROUNDS@", str(n)), files=files(),
                            l2_init=L2_INIT.replace("@LOAD@", LOAD_SH if with_load() else ":"),
                            l1_modules=["tun", "vhost_net", "veth", "bridge"],
                            l2_modules=["virtio_pci", "virtio_net", "virtio_blk"],
                            smp=2, mem_mb=2048, timeout=600 + 150 * (n - 1),
                            stream=sys.stdout)
    return res.output


def values(out):
    return dict(re.findall(r"^([A-Z0-9-]+)=(.*?)\r?$", out, re.M))


def count(v, key):
    """(count, uptime, load rounds) of the guest's last whole console line."""
    c, up, load = v[key].split()
    return int(c), float(up), int(load)


def echo(out, label):
    """(longest gap ms, longest round trip ms, echoes, out of order) of the
    echoes while label ran."""
    m = re.search(r"^ECHO %s (\d+) (\d+) (\d+) (\d+)\r?$" % label, out, re.M)
    assert m, "no echo report for %s: %s" % (label, out[-3000:])
    return tuple(int(x) for x in m.groups())


def check_move(out, n, src_label, dst_disk_prefix):
    """The checks of move n; returns (ping gap ms, echo gap ms)."""
    v = values(out)
    assert v["MIG-%s" % n].split()[0] == "0", out[-4000:]
    rec = json.loads(re.search(r"^MIG-JSON-%s (.*?)\r?$" % n, out, re.M).group(1))
    assert rec.get("state") == "completed", rec
    assert int(v["RECORDS-%s" % n]) >= 2, "no progress records"
    assert "pre-copy pass 1" in v["PHASES-%s" % n], v["PHASES-%s" % n]
    (c0, up0, l0), (c1, up1, l1) = count(v, "BEFORE-%s" % n), count(v, "AFTER-%s" % n)
    # The same guest went on counting: no reboot (its uptime too), and its
    # dirtying load ran on.
    assert c1 > c0 and up1 > up0, (v["BEFORE-%s" % n], v["AFTER-%s" % n])
    if with_load():
        assert l1 > l0 > 0, ("the load did not run", v["BEFORE-%s" % n], v["AFTER-%s" % n])
    # Read across the move (the source's console to its end, then the
    # target's), every count is there once, in order.
    lines, first, last, bad = (int(x) for x in v["SEQ-%s" % n].split())
    assert bad == 0 and first <= c0 and last >= c1, ("the count repeated or skipped",
                                                     v["SEQ-%s" % n], c0, c1)
    assert v["STATE-%s" % n] == "running", v
    assert v["SRC-HAS-%s" % n] == "no" and v["VMMS-%s" % n] == "1", v
    assert v["PING-%s" % n] == "ok", out[-4000:]
    # The disk is the shared file, written on the target after the move.
    assert v["DSTDISK-%s" % n].startswith(dst_disk_prefix), v
    assert int(v["DISKSTAMP-%s" % n]) > c0, (v["DISKSTAMP-%s" % n], c0)
    assert re.search(r"^EV-SRC-%s .*migrated-out.*disk shared" % n, out, re.M), out[-4000:]
    assert re.search(r"^EV-DST-%s .*migrated-in" % n, out, re.M), out[-4000:]
    # The TCP connection echoed on, in order, through the move.
    egap, rtt, echoes, disorder = echo(out, n)
    assert echoes >= 10 and disorder == 0, ("the echo stopped or reordered", n, echoes, disorder)
    gap_ms, answered, sent, iv = re.search(r"^GAP %s (\d+) (\d+) (\d+) (\S+)" % n, out,
                                           re.M).groups()
    detail = re.search(r"^EV-SRC-%s .*migrated-out (.*?)\r?$" % n, out, re.M).group(1)
    # kvzd's hand-over after kvz-vmm's stream (the job's result; both kvzd
    # on L1's one clock): what of the outside gap is not kvz-vmm's downtime.
    res = rec.get("result") or {}
    h = res.get("handover")
    assert h and 0 <= h["told_ms"] <= h["committed_ms"] <= h["record_moved_ms"], rec
    print("move %s (%s): %s s through the CLI, the 10 ms client's longest gap %s ms "
          "(%s of %s pings answered, one every %s ms) against kvz-vmm's downtime %s ms; "
          "after the stream: target told +%d ms, guest running on the target %+d ms, "
          "committed +%d ms, source stopped +%d ms, record moved +%d ms; "
          "the echo's longest gap %d ms "
          "(%d echoes, longest round trip %d ms); counts %s..%s in order, the first new one "
          "on the target %s s after the CLI ended; kvzd: %s" % (
              n, src_label, v["MIG-TIME-%s" % n], gap_ms, answered, sent, iv,
              res.get("downtime_ms"), h["told_ms"], h["target_running_ms"], h["committed_ms"],
              h["source_stopped_ms"], h["record_moved_ms"], egap, echoes,
              rtt, first, last, v["RESUMED-%s" % n], detail))
    return int(gap_ms), egap


def test_kvzd_live_migrates_real_guest_there_and_back(lab_out):
    out = lab_out
    assert "NOT-BOOTED:" not in out, "the guest never counted on its console: " + \
        "\n".join(re.findall(r"^NOT-BOOTED.*$", out, re.M))
    assert "LAB-KVZD-VMMIG-DONE" in out, out[-4000:]
    v = values(out)
    for k in ("HOST-A", "HOST-B", "NODE-A", "NODE-B", "CREATE", "START"):
        assert v[k] == "0", (k, out[-4000:])
    assert v["VHOST"] == "yes"
    assert v["DISK"] == "/tmp/ka/state/images/vm.img", v["DISK"]
    assert v["PING-0"] == "ok", out[-4000:]
    assert int(v["ECHO-0"]) > 0, "the echo connection did not start"
    gaps = []
    for r in range(rounds()):
        gaps.append(check_move(out, 2 * r + 1, "A->B", "/tmp/kb/state/images/"))
        gaps.append(check_move(out, 2 * r + 2, "B->A", "/tmp/ka/state/images/"))
    print("%d moves: longest ping gap %d ms, longest echo gap %d ms" % (
        len(gaps), max(g for g, _ in gaps), max(e for _, e in gaps)))


def check_failure(out, label, what):
    """The VM ran on at A through the failed move label; B keeps nothing."""
    v = values(out)
    assert "HUNG-%s" % label not in v, ("the CLI did not end", label, out[-4000:])
    assert v["MIG-%s" % label].split()[0] != "0", v["MIG-%s" % label]
    assert "pre-copy" in v["PHASE-%s" % label], ("not caught mid-move", v["PHASE-%s" % label])
    (c0, _, l0), (c1, up1, l1), (c2, up2, l2) = (
        count(v, k % label) for k in ("BEFORE-%s", "AFTER-%s", "LATER-%s"))
    assert c0 < c1 < c2 and up1 < up2 and l0 <= l1 <= l2 and (l0 < l2 or not with_load()), (
        v["BEFORE-%s" % label], v["AFTER-%s" % label], v["LATER-%s" % label])
    assert v["STATE-%s" % label] == "running", v
    assert v["DST-HAS-%s" % label] == "no" and v["DST-FILES-%s" % label] == "", v
    assert v["VMMS-%s" % label] == "1", v
    assert v["DISK-%s" % label] == "kept" and v["SHARED-%s" % label].split() == ["vm.img"], v
    assert v["PING-%s" % label] == "ok", out[-4000:]
    assert int(v["DISKSTAMP-%s" % label]) >= c1 - 4, (v["DISKSTAMP-%s" % label], c1)
    egap, rtt, echoes, disorder = echo(out, label)
    assert echoes >= 10 and disorder == 0, ("the echo stopped or reordered", label, echoes)
    assert re.search(r"^EV-SRC-%s .*migration-failed" % label, out, re.M), out[-4000:]
    assert re.search(r"^EV-DST-%s .*migration-discarded" % label, out, re.M), out[-4000:]
    print("%s: the CLI ended %s s after it, B clean %s s later; the echo's longest gap %d ms "
          "(%d echoes); source: %s" % (
              what, v["FAIL-TIME-%s" % label], v["CLEAN-TIME-%s" % label], egap, echoes,
              re.search(r"^EV-SRC-%s .*migration-failed (.*?)\r?$" % label, out,
                        re.M).group(1)))
    return v


def test_target_killed_mid_move_leaves_vm_on_source(lab_out):
    out = lab_out
    assert "LAB-KVZD-VMMIG-DONE" in out, out[-4000:]
    v = values(out)
    assert v["KILLED"] != "none" and v["KILLED"] != v["SOURCE-PID"], out[-4000:]
    check_failure(out, "K", "target's kvz-vmm killed")


def test_link_cut_mid_move_leaves_vm_on_source(lab_out):
    out = lab_out
    assert "LAB-KVZD-VMMIG-DONE" in out, out[-4000:]
    v = values(out)
    assert v["CUT"] == "0" and v["UNCUT"] == "0", out[-4000:]
    check_failure(out, "C", "link cut")
    # The source gave up within its link timeout (15 s) and a few polls,
    # not TCP's quarter of an hour; B within its stream timeout (30 s).
    assert float(v["FAIL-TIME-C"]) < 60, v["FAIL-TIME-C"]
    assert float(v["CLEAN-TIME-C"]) < 50, v["CLEAN-TIME-C"]


def test_job_cancel_mid_move_leaves_vm_on_source(lab_out):
    out = lab_out
    assert "LAB-KVZD-VMMIG-DONE" in out, out[-4000:]
    v = values(out)
    assert v["CANCEL"].split()[0] == "0", v["CANCEL"]
    assert v["JOB-X"] == "cancelled", v["JOB-X"]
    check_failure(out, "X", "job cancelled")


def test_move_after_the_failures_and_echo_kept(lab_out):
    out = lab_out
    assert "LAB-KVZD-VMMIG-DONE" in out, out[-4000:]
    v = values(out)
    check_move(out, "F", "A->B after the failures", "/tmp/kb/state/images/")
    # One TCP connection from before the first move to the end: still up,
    # every line echoed once and in order.
    assert v["ECHO-ALIVE"] == "yes", out[-4000:]
    egap, rtt, echoes, disorder = echo(out, "ALL")
    sent = int(v["ECHO-SENT"])
    assert disorder == 0 and echoes == sent, ("echoes lost", echoes, sent, disorder)
    print("the TCP echo: %d of %d lines echoed in order over one connection, longest gap "
          "%d ms, longest round trip %d ms" % (echoes, sent, egap, rtt))
    assert v["STOP"] == "0"
