"""A paused machine leaves guest RAM alone while network traffic arrives
(issue 10), with Debian's kernel in the nested lab, in one L1 boot.

The guest has two virtio-net ports: one on vhost-net (the kernel's data
path writes guest RAM directly) and one on kvz-vmm's own (vhost=off); both
have their receive buffers posted. QMP `stop`, then the machine is saved
twice (getfd + migrate fd:, as kvzd does) with pings flooding both taps in
between. Asserted: the RAM image of both saves is the same byte for byte;
no packet left either tap while paused (a tap's tx_packets counts what its
reader took: kvz-vmm or vhost-net); after `cont` the queued packets are
taken and the guest answers pings again; and a third save after the
guest ran differs (the comparison can see a change)."""
import re
import sys

from labpaths import QMP_SEND, kvzlab, skip_unless_vmm_lab


L2_INIT = r"""
ip link set lo up
ip link set eth0 up
ip addr add 10.0.9.2/24 dev eth0
ip link set eth1 up
ip addr add 10.0.8.2/24 dev eth1
echo "L2-READY"
while true; do sleep 1; done
"""

L1_SCRIPT = r"""
MEM=256
VMM="kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline 'console=ttyS0 quiet panic=-1' --cpus 2 --memory ${MEM}M --net tap=tap9,mac=52:54:00:00:09:02 --net tap=tap8,mac=52:54:00:00:08:02,vhost=off --qmp /tmp/q.sock </dev/null"
waitfor() { i=0; while ! grep -q "$2" $1; do i=$((i+1)); [ $i -gt $3 ] && return 1; sleep 1; done; }
q() { qmp-send /tmp/q.sock "{\"execute\": \"$1\"}"; }
taken() { cat /sys/class/net/tap$1/statistics/tx_packets; }
pingit() { for t in 9 8; do
             if ping -c 2 -W 3 10.0.$t.2 >/dev/null 2>&1; then echo "L1-PING$t-$1-OK"; else echo "L1-PING$t-$1-FAIL"; fi
           done; }
save() {
  exec 3<>$1
  qmp-send --fd 3 /tmp/q.sock '{"execute": "getfd", "arguments": {"fdname": "snap"}}' \
    '{"execute": "migrate", "arguments": {"uri": "fd:snap"}}' >/dev/null
  exec 3<&-
  i=0
  while [ $i -lt 300 ]; do
    st=$(q query-migrate)
    case "$st" in *completed*|*failed*) break;; esac
    sleep 0.2; i=$((i+1))
  done
  echo "L1-SAVE $1: $st"
}
ramsum() { dd if=$1 bs=1M skip=2 count=$MEM 2>/dev/null | md5sum | cut -d' ' -f1; }

eval "$VMM" > /tmp/c.log 2>&1 &
pid=$!
i=0; while ! ip link show tap8 >/dev/null 2>&1 && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done
for t in 9 8; do ip addr add 10.0.$t.1/24 dev tap$t; ip link set tap$t up; done
waitfor /tmp/c.log "L2-READY" 400 || { echo "L1-NO-BOOT"; cat /tmp/c.log; exit 3; }
pingit before
q stop >/dev/null
echo "L1-STATUS-PAUSED: $(q query-status)"
save /tmp/a.img
a9=$(taken 9); a8=$(taken 8)
k=0; pings=""
while [ $k -lt 15 ]; do
  ping -c 6 -s 1200 -W 1 10.0.9.2 >/dev/null 2>&1 &
  pings="$pings $!"
  ping -c 6 -s 1200 -W 1 10.0.8.2 >/dev/null 2>&1 &
  pings="$pings $!"
  k=$((k+1))
done
for p in $pings; do wait $p; done
b9=$(taken 9); b8=$(taken 8)
save /tmp/b.img
echo "L1-TAKEN-PAUSED 9 $a9 $b9 8 $a8 $b8"
echo "L1-DROPPED 9 $(cat /sys/class/net/tap9/statistics/tx_dropped) 8 $(cat /sys/class/net/tap8/statistics/tx_dropped)"
echo "L1-RAM A $(ramsum /tmp/a.img) B $(ramsum /tmp/b.img)"
q cont >/dev/null
sleep 3
echo "L1-TAKEN-AFTER 9 $(taken 9) 8 $(taken 8)"
pingit after
q stop >/dev/null
save /tmp/c.img
echo "L1-RAM C $(ramsum /tmp/c.img)"
qmp-send /tmp/q.sock '{"execute": "quit"}' >/dev/null
wait $pid
echo "L1-VMM-EXIT $?"
exit 0
"""


def test_paused_machine_ram_unchanged_under_network_traffic():
    skip_unless_vmm_lab()
    res = kvzlab.run_in_lab(L1_SCRIPT, files={QMP_SEND: "/bin/qmp-send"}, l2_init=L2_INIT,
                            l1_modules=["tun", "vhost_net"],
                            l2_modules=["virtio_pci", "virtio_net"],
                            smp=2, timeout=600, stream=sys.stdout)
    out = res.output
    assert not res.timed_out and res.exit_code == 0, out[-3000:]
    assert "L1-PING9-before-OK" in out and "L1-PING8-before-OK" in out, out[-3000:]
    assert '"paused"' in out.split("L1-STATUS-PAUSED:")[1].splitlines()[0]
    saves = re.findall(r"^L1-SAVE (\S+): (.*)$", out, re.M)
    assert len(saves) == 3 and all('"completed"' in s for _, s in saves), saves
    m = re.search(r"^L1-TAKEN-PAUSED 9 (\d+) (\d+) 8 (\d+) (\d+)", out, re.M)
    a9, b9, a8, b8 = map(int, m.groups())
    assert (b9, b8) == (a9, a8), f"packets were taken from the taps while paused: {m.group(0)}"
    after = re.search(r"^L1-TAKEN-AFTER 9 (\d+) 8 (\d+)", out, re.M)
    # The pings' packets waited in the taps' queues and were taken at cont:
    # so traffic really was there while the machine was paused.
    assert int(after.group(1)) > b9 + 10 and int(after.group(2)) > b8 + 10, \
        f"paused {m.group(0)}, after cont {after.group(0)}"
    ra = re.search(r"^L1-RAM A (\S+) B (\S+)", out, re.M)
    rc = re.search(r"^L1-RAM C (\S+)", out, re.M)
    assert ra.group(1) == ra.group(2), f"guest RAM changed while paused: {ra.group(0)}"
    assert rc.group(1) != ra.group(1), "the guest ran after cont but its RAM image did not change"
    assert "L1-PING9-after-OK" in out and "L1-PING8-after-OK" in out, out[-3000:]
    assert "L1-VMM-EXIT 0" in out, out[-2000:]
