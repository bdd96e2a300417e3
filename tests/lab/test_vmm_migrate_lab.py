"""Live migration of a real Linux guest (Debian's stock kernel) between two
kvz-vmm processes in the nested lab's L1, in one L1 boot: the guest (2
vCPUs, virtio-net on a TAP of each process, vhost=on: the kernel writes the
received packets into guest RAM, seen only through vhost's dirty log) keeps
a 32 MiB pattern and its checksum, rewrites 8 MiB of tmpfs in a loop
(dirtying memory) and prints a counter every 100 ms. It is migrated
A->B->A->B over TCP on L1's localhost the way kvzd does it: the target
listens (--incoming tcp:), the source gets the connected socket with getfd
(qmp-send --tcp-fd connects it) and `migrate fd:mig`, and query-migrate is
polled. Meanwhile L1 streams random data over TCP into the guest (nc, 16
KiB every 50 ms until the last move is done, a copy kept in L1), routed to whichever TAP the guest is
behind (one /32 route moved after each migration, no bridge: the first
run's L1 hung in a kworker right after creating a bridge, under a loaded
host). Each time: status completed, the source in postmigrate, the guest
answers ping through the new TAP, the guest acks the announcement it was
asked for (VIRTIO_NET_S_ANNOUNCE -> ANNOUNCE_ACK, logged), the counter neither repeats nor skips
across the processes' consoles, the pattern's checksum matches; at the end
the checksum of what the guest received equals that of what L1 sent."""
import re
import sys

from labpaths import QMP_SEND, kvzlab, skip_unless_vmm_lab

MIGRATIONS = 3
# The stream runs until the last migration is done (a fixed 2000 chunks of
# 16 KiB took 400 s of L1 time: a dd per chunk); at least this much must
# have gone through.
STREAM_MIN_BYTES = 1 << 20

L2_INIT = r"""
ip link set lo up
ip link set eth0 up
ip addr add 10.0.9.2/24 dev eth0
dd if=/dev/urandom of=/pattern bs=1M count=32 2>/dev/null
sum=$(md5sum < /pattern)
echo "L2-SUM-START $sum"
mount -t tmpfs -o size=16m tmpfs /mnt 2>/dev/null
(while true; do dd if=/dev/urandom of=/mnt/dirty bs=1M count=8 conv=notrunc 2>/dev/null; sleep 0.2; done) &
# stdin a pipe that never ends: busybox nc quits on EOF of either side
sleep 100000 | nc -l -p 5000 > /recv &
i=0
last=0
told=
while true; do
  i=$((i+1))
  echo "L2-COUNT $i"
  if [ $((i % 30)) = 0 ]; then
    echo "L2-SUM $(md5sum < /pattern)"
    size=$(wc -c < /recv)
    echo "L2-RECV $size"
    # what came in has stopped growing: its checksum, once per size
    if [ "$size" = "$last" ] && [ "$size" != "$told" ]; then
      echo "L2-RECV-STABLE $size $(md5sum < /recv)"; told=$size
    fi
    last=$size
  fi
  sleep 0.1
done
"""

L1_SCRIPT = r"""
VMM="kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline 'console=ttyS0 quiet panic=-1' --cpus 2 --memory 256M"
NET="mac=52:54:00:00:09:02,vhost=on"
waitfor() { i=0; while ! grep -qs "$2" $1; do i=$((i+1)); [ $i -gt $3 ] && return 1; sleep 1; done; }
lines() { grep -c "L2-COUNT" $1; }
# The guest is reached through the TAP of the process it runs in: L1's
# address on each TAP, the guest's /32 route moved to the new one.
route_to() { ip addr add 10.0.9.1/32 dev $1 2>/dev/null; ip route del 10.0.9.2/32 2>/dev/null
             ip route add 10.0.9.2/32 dev $1; }
pingit() { if ping -c 2 -W 5 10.0.9.2 >/dev/null 2>&1; then echo "L1-PING-$1-OK"; else echo "L1-PING-$1-FAIL"; fi; }
# Paced (16 KiB every 50 ms) until the last migration is done (/tmp/stop).
# Each chunk is kept in /tmp/sent before it goes out, so that once
# stream.end exists /tmp/sent is the whole stream (a tee could still hold
# the last chunk then).
stream() { while [ ! -e /tmp/stop ]; do dd if=/dev/urandom of=/tmp/chunk bs=16k count=1 2>/dev/null
             cat /tmp/chunk >> /tmp/sent; cat /tmp/chunk; sleep 0.05
             done; echo "L1-STREAM-END" > /tmp/stream.end; }
[ -c /dev/vhost-net ] || { echo "L1-NO-VHOST"; exit 4; }

eval "$VMM --net tap=tapa,$NET --qmp /tmp/q0.sock" </dev/null > /tmp/c0.log 2>/tmp/e0.log &
# No boot (issue 9's second hang): SIGTERM makes kvz-vmm log where its vCPUs are.
waitfor /tmp/c0.log "L2-COUNT 20" 500 || { echo "L1-NO-BOOT"; kill -TERM $! 2>/dev/null; sleep 3
                                           cat /tmp/c0.log /tmp/e0.log; exit 3; }
route_to tapa
pingit 0
: > /tmp/sent
stream | nc 10.0.9.2 5000 &
ncpid=$!
sleep 2
n=1
while [ $n -le MIGRATIONS ]; do
  p=$((n - 1)); tap=tapa; [ $((n % 2)) = 1 ] && tap=tapb
  eval "$VMM --net tap=$tap,$NET --qmp /tmp/q$n.sock --incoming tcp:127.0.0.1:$((4440 + n))" </dev/null > /tmp/c$n.log 2>/tmp/e$n.log &
  i=0; while ! grep -q "waiting for the migration stream" /tmp/e$n.log && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
  sleep 1
  qmp-send --tcp-fd 127.0.0.1:$((4440 + n)) /tmp/q$p.sock '{"execute": "getfd", "arguments": {"fdname": "mig"}}' \
    '{"execute": "migrate", "arguments": {"uri": "fd:mig"}}' | sed "s/^/L1-QMP-$n: /"
  i=0
  while [ $i -lt 600 ]; do
    st=$(qmp-send /tmp/q$p.sock '{"execute": "query-migrate"}')
    case "$st" in *completed*|*failed*|*cancelled*) break;; esac
    sleep 0.2; i=$((i+1))
  done
  echo "L1-MIGRATE-$n: $st"
  route_to $tap
  qmp-send /tmp/q$p.sock '{"execute": "query-status"}' | sed "s/^/L1-STATUS-$n: /"
  pingit $n
  [ -e /tmp/stream.end ] && echo "L1-STREAM-ENDED-EARLY-$n"
  waitfor /tmp/c$n.log "L2-SUM " 200 || echo "L1-MIG-$n-NO-SUM"
  qmp-send /tmp/q$p.sock '{"execute": "quit"}' >/dev/null
  sleep 1
  sed "s/^/L1-ERR-$p: /" /tmp/e$p.log
  n=$((n + 1))
done
touch /tmp/stop
waitfor /tmp/stream.end "L1-STREAM-END" 300 || echo "L1-STREAM-STUCK"
echo "L1-SENT $(wc -c < /tmp/sent) $(md5sum < /tmp/sent)"
waitfor /tmp/cMIGRATIONS.log "L2-RECV-STABLE $(wc -c < /tmp/sent) " 300 || echo "L1-RECV-NOT-DONE"
kill $ncpid 2>/dev/null
qmp-send /tmp/qMIGRATIONS.sock '{"execute": "quit"}' >/dev/null
sleep 1
sed "s/^/L1-ERR-MIGRATIONS: /" /tmp/eMIGRATIONS.log
# the consoles back to back: a line the pause cut in two is whole again
cat $(i=0; while [ $i -le MIGRATIONS ]; do echo /tmp/c$i.log; i=$((i+1)); done) | sed 's/^/ALL: /'
exit 0
""".replace("MIGRATIONS", str(MIGRATIONS))


def test_live_migrate_real_guest_there_and_back():
    skip_unless_vmm_lab()
    res = kvzlab.run_in_lab(L1_SCRIPT, files={QMP_SEND: "/bin/qmp-send"}, l2_init=L2_INIT,
                            l1_modules=["tun", "vhost_net"],
                            l2_modules=["virtio_pci", "virtio_net"],
                            smp=2, timeout=1200, stream=sys.stdout)
    out = res.output
    assert not res.timed_out and res.exit_code == 0, out[-3000:]
    assert "L1-PING-0-OK" in out, "no ping before the first migration"
    for n in range(1, MIGRATIONS + 1):
        line = out.split(f"L1-MIGRATE-{n}:")[1].splitlines()[0]
        assert re.search(r'"status":\s*"completed"', line), line
        assert "postmigrate" in out.split(f"L1-STATUS-{n}:")[1].splitlines()[0]
        assert f"L1-PING-{n}-OK" in out, f"migration {n}: the guest does not answer ping"
        # VIRTIO_NET_S_ANNOUNCE seen by Linux's driver, which acked it
        tap = "tapb" if n % 2 else "tapa"
        assert f"L1-ERR-{n}: kvz-vmm: virtio net {tap}: the guest announced itself" in out, \
            f"migration {n}: no ANNOUNCE_ACK from the guest"
        assert f"L1-STREAM-ENDED-EARLY-{n}" not in out, f"migration {n}: no data was flowing"
    sent = re.search(r"^L1-SENT (\d+) (\S+)", out, re.M)
    assert sent and int(sent.group(1)) >= STREAM_MIN_BYTES, out[-3000:]
    recv = re.search(rf"^ALL: L2-RECV-STABLE {sent.group(1)} (\S+)", out, re.M)
    assert recv, "the guest did not receive the whole stream"
    assert recv.group(1) == sent.group(2), (recv.group(1), sent.groups())
    counts = [int(c) for c in re.findall(r"^ALL: L2-COUNT (\d+)\r?$", out, re.M)]
    assert counts and counts == list(range(counts[0], counts[0] + len(counts))), counts
    start = re.search(r"^ALL: L2-SUM-START (\S+)", out, re.M).group(1)
    sums = re.findall(r"^ALL: L2-SUM (\S+)", out, re.M)
    assert len(sums) >= MIGRATIONS + 1 and all(s == start for s in sums), sums
