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
on its console with its uptime and stamps the count into its disk.

From L1 (the client, a third party on the LAN) a ping every 10 ms runs
through each `kvz --json migrate vm --to NODE`: A->B, then B->A. After
each: the VM runs on the target only (one kvz-vmm of it in L1, the source
has no record), the count and uptime went on (no reboot), the disk shows
a count written on the target, the job's last record and the events say
completed, and the client's longest gap (downtime seen from outside) is
printed. Then the target's kvz-vmm is killed (-9) while a slowed move
A->B runs: the job fails, the VM runs on at A (counting, answering ping,
writing its disk), B keeps nothing and the shared disk is still there."""
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
i=0
while true; do
  i=$((i+1))
  echo "L2-COUNT $i $(cut -d' ' -f1 /proc/uptime)"
  [ $((i % 4)) = 0 ] && printf 'DISK-COUNT %08d\n' $i | dd of=/dev/vda bs=512 count=1 conv=notrunc,fsync 2>/dev/null
  sleep 0.5
done
"""

L1_SCRIPT = kvzlab.PINGER_SH + kvzlab.LAN_HOST_SH + r"""
export PATH=/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin
IP=/usr/local/sbin/ip
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
# con KVZ: the guest's console lines so far (kvzd keeps them).
con() { timeout 2 env KVZ_SOCKET=$1 kvz console vm 2>/dev/null < /dev/null | tr -d '\r'; }
last() { con $1 | grep '^L2-COUNT' | tail -1 | cut -d' ' -f2,3; }
i=0; while [ $i -lt 120 ] && ! con /tmp/ka/sock | grep -q '^L2-COUNT 8 '; do sleep 1; i=$((i+1)); done
echo "BOOTED=$i"
ping -c 3 -W 2 10.0.9.2 >/dev/null 2>&1 && echo "PING-0=ok" || echo "PING-0=fail"
# vmms: how many kvz-vmm of the VM run in L1 ([k]: not grep itself).
vmms() { for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < $f 2>/dev/null | grep -q -- "[k]vz-vmm --name vm " && echo; done | wc -l; }
# move N SRC-KVZ DST-KVZ NODE: the CLI with its progress records, then the checks.
move() {
  n=$1; src=$2; dst=$3
  echo "BEFORE-$n=$(last $src)"
  pinger; sleep 1
  t0=$(now)
  KVZ_SOCKET=$src kvz --json migrate vm --to $4 > /tmp/mig$n.json 2>/tmp/mig$n.err
  echo "MIG-$n=$? $(tr '\n' ' ' < /tmp/mig$n.err)"
  echo "MIG-TIME-$n=$(since $t0)"
  sleep 2; unpinger $n
  echo "RECORDS-$n=$(wc -l < /tmp/mig$n.json)"
  tail -1 /tmp/mig$n.json | sed "s/^/MIG-JSON-$n /"
  grep -o '"phase": *"[^"]*"' /tmp/mig$n.json | sort -u | tr '\n' ' ' | sed "s/^/PHASES-$n=/"; echo
  sleep 2
  echo "AFTER-$n=$(last $dst)"
  echo "STATE-$n=$(KVZ_SOCKET=$dst kvz show vm 2>&1 | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -1)"
  KVZ_SOCKET=$src kvz show vm >/dev/null 2>&1 && echo "SRC-HAS-$n=yes" || echo "SRC-HAS-$n=no"
  echo "VMMS-$n=$(vmms)"
  echo "DISKSTAMP-$n=$(head -c 20 /shared/images/vm.img | sed -n 's/DISK-COUNT \([0-9]*\)/\1/p')"
  echo "DSTDISK-$n=$(KVZ_SOCKET=$dst kvz show vm | sed -n 's/.*"disk_path": *"\([^"]*\)".*/\1/p' | head -1)"
  ping -c 3 -W 2 10.0.9.2 >/dev/null 2>&1 && echo "PING-$n=ok" || echo "PING-$n=fail"
  KVZ_SOCKET=$src kvz events --guest vm 2>&1 | tail -2 | sed "s/^/EV-SRC-$n /"
  KVZ_SOCKET=$dst kvz events --guest vm 2>&1 | tail -3 | sed "s/^/EV-DST-$n /"
}
move 1 /tmp/ka/sock /tmp/kb/sock b
move 2 /tmp/kb/sock /tmp/ka/sock a
# The failure: the target's kvz-vmm killed mid-move (slowed to 40 Mbit/s).
echo "BEFORE-3=$(last /tmp/ka/sock)"
ka --json migrate vm --to b --bandwidth 40 > /tmp/mig3.json 2>/tmp/mig3.err &
mp=$!
# The target's kvz-vmm: the pid of B's incoming record (A's kvz-vmm came
# back with --incoming too: its command line does not tell them apart).
pidof_vm() { KVZ_SOCKET=$1 kvz show vm 2>/dev/null | sed -n 's/.*"pid": *\([1-9][0-9]*\).*/\1/p' | head -1; }
sp=$(pidof_vm /tmp/ka/sock)
tp=; i=0
while [ -z "$tp" ] && [ $i -lt 100 ]; do tp=$(pidof_vm /tmp/kb/sock); sleep 0.1; i=$((i+1)); done
echo "SOURCE-PID=$sp"
sleep 3
grep -o '"phase": *"[^"]*"' /tmp/mig3.json | tail -1 | sed 's/^/KILLED-IN=/'
[ -n "$tp" ] && kill -9 $tp; echo "KILLED=${tp:-none}"
wait $mp; echo "MIG-3=$? $(tr '\n' ' ' < /tmp/mig3.err)"
sleep 3
echo "AFTER-3=$(last /tmp/ka/sock)"
echo "STATE-3=$(ka show vm 2>&1 | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' | head -1)"
kb show vm >/dev/null 2>&1 && echo "DST-HAS-3=yes" || echo "DST-HAS-3=no"
echo "DST-FILES-3=$(ls /tmp/kb/state/migrations 2>/dev/null | tr '\n' ' ')"
echo "VMMS-3=$(vmms)"
ls /shared/images/vm.img >/dev/null 2>&1 && echo "DISK-3=kept" || echo "DISK-3=gone"
echo "SHARED-3=$(ls -A /shared/images | tr '\n' ' ')"
ping -c 3 -W 2 10.0.9.2 >/dev/null 2>&1 && echo "PING-3=ok" || echo "PING-3=fail"
sleep 3; echo "DISKSTAMP-3=$(head -c 20 /shared/images/vm.img | sed -n 's/DISK-COUNT \([0-9]*\)/\1/p')"
echo "LATER-3=$(last /tmp/ka/sock)"
ka events --guest vm 2>&1 | tail -2 | sed "s/^/EV-SRC-3 /"
kb events --guest vm 2>&1 | tail -2 | sed "s/^/EV-DST-3 /"
for h in a b; do grep -iE "error|warn" /tmp/k$h/log | tail -8 | sed "s/^/LOG-$h /"
  tail -5 /tmp/k$h/state/logs/vm.log 2>/dev/null | sed "s/^/VMLOG-$h /"; done
ka stop vm >/dev/null 2>&1; echo "STOP=$?"
echo LAB-KVZD-VMMIG-DONE
"""


def files():
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/bin")
    if not ip:
        pytest.skip("iproute2's ip is not installed here (scripts/install-deps.sh)")
    return kvzlab.with_libs({KVZD: "/bin/kvzd", KVZ: "/bin/kvz",
                             os.path.realpath(ip): "/usr/local/sbin/ip"})


@pytest.fixture(scope="module")
def lab_out():
    kvzlab.skip_unless_lab()
    for p in (KVZD, KVZ, os.path.join(BUILD, "src", "vmm", "kvz-vmm")):
        if not os.path.exists(p):
            pytest.skip(f"{p} not built")
    res = kvzlab.run_in_lab(L1_SCRIPT, files=files(), l2_init=L2_INIT,
                            l1_modules=["tun", "vhost_net", "veth", "bridge"],
                            l2_modules=["virtio_pci", "virtio_net", "virtio_blk"],
                            smp=2, mem_mb=2048, timeout=540, stream=sys.stdout)
    return res.output


def values(out):
    return dict(re.findall(r"^([A-Z0-9-]+)=(.*?)\r?$", out, re.M))


def count(v, key):
    """(count, uptime) of the guest's last console line."""
    c, up = v[key].split()
    return int(c), float(up)


def check_move(out, n, src_label, dst_disk_prefix):
    v = values(out)
    assert v["MIG-%d" % n].split()[0] == "0", out[-4000:]
    rec = json.loads(re.search(r"^MIG-JSON-%d (.*?)\r?$" % n, out, re.M).group(1))
    assert rec.get("state") == "completed", rec
    assert int(v["RECORDS-%d" % n]) >= 2, "no progress records"
    assert "pre-copy pass 1" in v["PHASES-%d" % n], v["PHASES-%d" % n]
    (c0, up0), (c1, up1) = count(v, "BEFORE-%d" % n), count(v, "AFTER-%d" % n)
    # The same guest went on counting: no reboot (its uptime too).
    assert c1 > c0 and up1 > up0, (v["BEFORE-%d" % n], v["AFTER-%d" % n])
    assert v["STATE-%d" % n] == "running", v
    assert v["SRC-HAS-%d" % n] == "no" and v["VMMS-%d" % n] == "1", v
    assert v["PING-%d" % n] == "ok", out[-4000:]
    # The disk is the shared file, written on the target after the move.
    assert v["DSTDISK-%d" % n].startswith(dst_disk_prefix), v
    assert int(v["DISKSTAMP-%d" % n]) > c0, (v["DISKSTAMP-%d" % n], c0)
    assert re.search(r"^EV-SRC-%d .*migrated-out.*disk shared" % n, out, re.M), out[-4000:]
    assert re.search(r"^EV-DST-%d .*migrated-in" % n, out, re.M), out[-4000:]
    gap_ms, answered, sent, iv = re.search(r"^GAP %d (\d+) (\d+) (\d+) (\S+)" % n, out,
                                           re.M).groups()
    detail = re.search(r"^EV-SRC-%d .*migrated-out (.*?)\r?$" % n, out, re.M).group(1)
    print("move %d (%s): %s s through the CLI, the 10 ms client's longest gap %s ms "
          "(%s of %s pings answered, one every %s ms); kvzd: %s" % (
              n, src_label, v["MIG-TIME-%d" % n], gap_ms, answered, sent, iv, detail))
    return int(gap_ms)


def test_kvzd_live_migrates_real_guest_there_and_back(lab_out):
    out = lab_out
    assert "LAB-KVZD-VMMIG-DONE" in out, out[-4000:]
    v = values(out)
    for k in ("HOST-A", "HOST-B", "NODE-A", "NODE-B", "CREATE", "START"):
        assert v[k] == "0", (k, out[-4000:])
    assert v["VHOST"] == "yes"
    assert v["DISK"] == "/tmp/ka/state/images/vm.img", v["DISK"]
    assert v["PING-0"] == "ok", out[-4000:]
    check_move(out, 1, "A->B", "/tmp/kb/state/images/")
    check_move(out, 2, "B->A", "/tmp/ka/state/images/")


def test_target_killed_mid_move_leaves_vm_on_source(lab_out):
    out = lab_out
    assert "LAB-KVZD-VMMIG-DONE" in out, out[-4000:]
    v = values(out)
    assert v["KILLED"] != "none" and v["KILLED"] != v["SOURCE-PID"], out[-4000:]
    assert v["MIG-3"].split()[0] != "0", v["MIG-3"]
    (c0, _), (c1, up1), (c2, up2) = (count(v, k) for k in ("BEFORE-3", "AFTER-3", "LATER-3"))
    assert c0 < c1 < c2 and up1 < up2, (v["BEFORE-3"], v["AFTER-3"], v["LATER-3"])
    assert v["STATE-3"] == "running", v
    assert v["DST-HAS-3"] == "no" and v["DST-FILES-3"] == "", v
    assert v["VMMS-3"] == "1", v
    assert v["DISK-3"] == "kept" and v["SHARED-3"].split() == ["vm.img"], v
    assert v["PING-3"] == "ok", out[-4000:]
    assert int(v["DISKSTAMP-3"]) >= c1 - 4, (v["DISKSTAMP-3"], c1)
    assert re.search(r"^EV-SRC-3 .*migration-failed", out, re.M), out[-4000:]
    assert re.search(r"^EV-DST-3 .*migration-discarded", out, re.M), out[-4000:]
    assert v["STOP"] == "0"
