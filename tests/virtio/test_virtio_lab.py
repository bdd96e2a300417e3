"""virtio devices of kvz-vmm with Debian's stock kernel and its own modules,
in the nested lab (QEMU TCG with emulated SVM; see lab/kvzlab.py).

Each test boots L1 once and runs kvz-vmm there; the L2 guest's init is a
busybox script that prints markers the host checks afterwards. Disk bytes
are checked on the host: L1 gets the images as QEMU virtio disks and hands
those block devices to kvz-vmm (so the block-device path is exercised too).
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab"))
from labpaths import BUILD_DIR, kvzlab  # noqa: E402

VMM = os.path.join(BUILD_DIR, "src", "vmm", "kvz-vmm")
QMP_SEND = os.path.join(BUILD_DIR, "tests", "virtio", "qmp-send")
L2_CMDLINE = "console=ttyS0 panic=-1 quiet"
VIRTIO_BASE = ["virtio_pci"]


def need_lab():
    kvzlab.skip_unless_lab()
    if not os.path.exists(VMM):
        pytest.skip(f"kvz-vmm not built ({VMM})")


def vmm_cmd(*args, cmdline=L2_CMDLINE):
    return ("kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz "
            f"--cmdline '{cmdline}' " + " ".join(args))


def lab(script, **kw):
    res = kvzlab.run_in_lab(script, stream=sys.stdout, **kw)
    assert not res.timed_out, "lab timed out"
    return res


def seq_bytes(first, last):
    return "".join(f"{i}\n" for i in range(first, last + 1)).encode()


# ------------------------------------------------------------------ block + rng

BLK_L2_INIT = r"""
mount -t ext4 /dev/vda /mnt || echo "L2-MOUNT-FAILED"
echo "L2-HOSTFILE: $(cat /mnt/host.txt)"
seq 1 20000 > /mnt/guest.txt
mkdir -p /mnt/dir && seq 5 9 > /mnt/dir/small.txt
sync
umount /mnt && echo "L2-UMOUNT-OK"
seq 1 100000 > /tmp/pattern
dd if=/tmp/pattern of=/dev/vdb bs=4096 seek=256 conv=fsync 2>/dev/null && echo "L2-DD-OK"
echo 3 > /proc/sys/vm/drop_caches
n=$(wc -c < /tmp/pattern)
dd if=/dev/vdb bs=4096 skip=256 2>/dev/null | head -c $n | cmp - /tmp/pattern && echo "L2-READBACK-OK"
echo "L2-VDB-RO: $(cat /sys/block/vdb/ro) L2-VDC-RO: $(cat /sys/block/vdc/ro)"
dd if=/dev/vdc of=/dev/null bs=4096 count=1 2>/dev/null && echo "L2-VDC-READ-OK"
dd if=/tmp/pattern of=/dev/vdc bs=4096 count=1 conv=fsync 2>/dev/null || echo "L2-VDC-WRITE-REFUSED"
echo "L2-RNG: $(cat /sys/class/misc/hw_random/rng_current)"
dd if=/dev/hwrng of=/tmp/r bs=64 count=4 2>/dev/null
echo "L2-RNG-BYTES: $(wc -c < /tmp/r) distinct=$(od -An -tx1 -v /tmp/r | tr ' ' '\n' | sort -u | wc -l)"
echo "L2-MSIX: $(grep -c 'virtio[0-9]*-config' /proc/interrupts)"
echo "L2-VDA-MQ: $(ls /sys/block/vda/mq | wc -l) L2-VDB-MQ: $(ls /sys/block/vdb/mq | wc -l)"
echo "L2-DONE"
"""


def test_blk_ext4_raw_readonly_and_rng(tmp_path):
    need_lab()
    for tool in ("mkfs.ext4", "debugfs", "e2fsck"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} missing (Debian: e2fsprogs)")
    src = tmp_path / "src"
    src.mkdir()
    (src / "host.txt").write_text("written by the host\n")
    ext4 = tmp_path / "ext4.img"
    raw = tmp_path / "raw.img"
    ro = tmp_path / "ro.img"
    subprocess.run(["truncate", "-s", "64M", str(ext4)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(ext4)], check=True)
    subprocess.run(["truncate", "-s", "8M", str(raw)], check=True)
    ro.write_bytes(b"R" * 65536)

    drives = []
    for img in (ext4, raw, ro):
        drives += ["-drive", f"file={img},format=raw,if=virtio"]
    script = ("ls /dev/vda /dev/vdb /dev/vdc || exit 10\n" +
              vmm_cmd("--memory 256M --cpus 2 --disk /dev/vda "
                      "--disk /dev/vdb,num-queues=1,aio=sync "
                      "--disk /dev/vdc,readonly --rng </dev/null") +
              "\nrc=$?; sync; exit $rc\n")
    res = lab(script, l1_modules=["virtio_pci", "virtio_blk"],
              extra_qemu_args=drives,
              l2_init=BLK_L2_INIT,
              l2_modules=VIRTIO_BASE + ["virtio_blk", "ext4", "crc32c_generic",
                                        "virtio_rng"],
              timeout=400)
    out = res.output
    assert res.exit_code == 0, out[-3000:]
    assert "L2-DONE" in out
    assert "L2-HOSTFILE: written by the host" in out
    assert "L2-MOUNT-FAILED" not in out
    assert "L2-UMOUNT-OK" in out
    assert "L2-DD-OK" in out and "L2-READBACK-OK" in out
    assert "L2-VDB-RO: 0 L2-VDC-RO: 1" in out
    assert "L2-VDC-READ-OK" in out and "L2-VDC-WRITE-REFUSED" in out
    assert "L2-RNG: virtio_rng" in out
    m = re.search(r"L2-RNG-BYTES: (\d+) distinct=(\d+)", out)
    assert m and int(m.group(1)) == 256 and int(m.group(2)) > 100, out[-2000:]
    m = re.search(r"L2-MSIX: (\d+)", out)
    assert m and int(m.group(1)) == 4, "virtio interrupts are not MSI-X"
    # vda: one io_uring queue per vCPU (Linux uses at most one per CPU);
    # vdb: one queue on the synchronous engine.
    assert "L2-VDA-MQ: 2 L2-VDB-MQ: 1" in out
    assert "serving disks synchronously" not in out  # io_uring worked in L1

    # The guest's writes reached the image byte for byte.
    got = subprocess.run(["debugfs", "-R", "cat /guest.txt", str(ext4)],
                         capture_output=True, check=True).stdout
    assert got == seq_bytes(1, 20000)
    got = subprocess.run(["debugfs", "-R", "cat /dir/small.txt", str(ext4)],
                         capture_output=True, check=True).stdout
    assert got == seq_bytes(5, 9)
    fsck = subprocess.run(["e2fsck", "-fn", str(ext4)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    pattern = seq_bytes(1, 100000)
    with open(raw, "rb") as f:
        f.seek(1 << 20)
        assert f.read(len(pattern)) == pattern
        f.seek(0)
        assert f.read(1 << 20) == bytes(1 << 20)  # nothing before the seek
    assert ro.read_bytes() == b"R" * 65536


# ------------------------------------------------------------------ network

NET_L2_INIT = r"""
role=$(sed -n 's/.*kvzrole=\([a-z]\).*/\1/p' /proc/cmdline)
case $role in
  a) me=10.0.0.2/24; peer=10.0.0.1;;
  b) me=10.0.1.2/24; peer=10.0.1.3;;
  c) me=10.0.1.3/24; peer=10.0.1.2;;
esac
ip link set lo up
ip link set eth0 up
ip addr add $me dev eth0
ok=0; i=0
while [ $i -lt 200 ]; do
  if ping -c 1 -W 1 $peer >/dev/null 2>&1; then ok=1; break; fi
  i=$((i+1)); sleep 1
done
if [ $ok = 1 ]; then
  echo "L2-PING-$role-OK"
  ping -c 5 $peer | tail -1 | sed "s/^/L2-RTT-$role: /"
else
  echo "L2-PING-$role-FAIL"
fi
if [ $role = a ]; then
  # A bulk transfer each way (TSO, checksum offload, mergeable buffers):
  # fetch from L1's httpd, then serve L1 until it says bye.
  wget -q -O - http://$peer:8080/pattern | md5sum | sed 's/^/L2-RX-MD5: /'
  mkdir -p /tmp/www && seq 1 300000 > /tmp/www/pattern
  httpd -p 8080 -h /tmp/www && echo "L2-HTTPD-UP"
  timeout 120 nc -l -p 5002 > /dev/null
fi
if [ $role = b ]; then
  # The driver resets the device and sets it up again: vhost-net is
  # stopped and started on the new rings.
  dev=$(basename "$(readlink -f /sys/class/net/eth0/device)")
  echo "$dev" > /sys/bus/virtio/drivers/virtio_net/unbind
  echo "$dev" > /sys/bus/virtio/drivers/virtio_net/bind
  ip link set eth0 up; ip addr add $me dev eth0
  i=0
  while [ $i -lt 30 ]; do
    if ping -c 1 -W 1 $peer >/dev/null 2>&1; then echo "L2-REBOUND-PING-b-OK"; break; fi
    i=$((i+1)); sleep 1
  done
fi
[ $role = c ] && sleep 60
reboot -f
"""

NET_L1_SCRIPT = r"""
ip link add br0 type bridge || exit 11
ip addr add 10.0.0.1/24 dev br0
ip link set br0 up
mkdir -p /tmp/www && seq 1 300000 > /tmp/www/pattern
echo "L1-PATTERN-MD5: $(md5sum < /tmp/www/pattern)"
httpd -p 8080 -h /tmp/www
waitfor() { i=0; while ! grep -q "$2" $1; do i=$((i+1)); [ $i -gt 300 ] && return 1; sleep 1; done; }
( VMM_C ) > /tmp/c.log 2>&1 &
cpid=$!
( VMM_A; echo "L1-VMM-A-EXIT: $?" ) > /tmp/a.log 2>&1 &
if waitfor /tmp/a.log L2-HTTPD-UP; then
  wget -q -O /tmp/recv http://10.0.0.2:8080/pattern
  echo "L1-RECV-MD5: $(md5sum < /tmp/recv)"
  echo bye | timeout 10 nc 10.0.0.2 5002
fi
waitfor /tmp/a.log L1-VMM-A-EXIT
echo "----- guest a"
cat /tmp/a.log
ip link show tapa >/dev/null 2>&1 && echo "L1-TAPA-LEFT-BEHIND"
VMM_B
echo "L1-VMM-B-EXIT: $?"
i=0
while kill -0 $cpid 2>/dev/null && [ $i -lt 120 ]; do sleep 1; i=$((i+1)); done
kill $cpid 2>/dev/null
echo "----- guest c"
cat /tmp/c.log
[ -d /sys/class/net/br1/bridge ] && echo "L1-BR1-IS-BRIDGE"
exit 0
"""


def test_net_ping_host_and_guests(tmp_path):
    """Guests a and b move packets through vhost-net (the kernel), c through
    kvz-vmm's I/O thread: the bulk transfers check the kernel path with
    offloads, b and c on one bridge check that both paths interoperate."""
    need_lab()

    def one(role, tap, br, mac, vhost):
        return vmm_cmd(f"--memory 192M --net tap={tap},mac={mac},bridge={br},vhost={vhost} </dev/null",
                       cmdline=f"{L2_CMDLINE} kvzrole={role}")
    script = (NET_L1_SCRIPT
              .replace("VMM_A", one("a", "tapa", "br0", "52:54:00:00:01:0a", "on"))
              .replace("VMM_B", one("b", "tapb", "br1", "52:54:00:00:01:0b", "on"))
              .replace("VMM_C", one("c", "tapc", "br1", "52:54:00:00:01:0c", "off")))
    res = lab(script, l1_modules=["tun", "bridge", "vhost_net"], l2_init=NET_L2_INIT,
              l2_modules=VIRTIO_BASE + ["virtio_net"], timeout=600)
    out = res.output
    assert res.exit_code == 0, out[-3000:]
    for tap in ("tapa", "tapb"):
        assert f"virtio net {tap}: vhost-net moves the packets" in out, \
            f"{tap}: vhost=on did not hand the queues to vhost-net"
    assert "virtio net tapc: vhost-net" not in out, "vhost=off used vhost-net"
    assert "packets go through kvz-vmm instead" not in out
    assert "L2-PING-a-OK" in out, "guest did not reach the host over TAP"
    assert "L1-VMM-A-EXIT: 0" in out
    assert "L2-PING-b-OK" in out and "L2-PING-c-OK" in out, \
        "guests on one bridge did not reach each other"
    assert "L2-REBOUND-PING-b-OK" in out, "no traffic after the driver reset the vhost device"
    assert "L1-BR1-IS-BRIDGE" in out, "kvz-vmm did not create the missing bridge"
    assert "L1-TAPA-LEFT-BEHIND" not in out
    want = re.search(r"L1-PATTERN-MD5: ([0-9a-f]{32})", out).group(1)
    assert re.search(r"L1-RECV-MD5: ([0-9a-f]{32})", out).group(1) == want, \
        "guest-to-host transfer corrupted"
    assert re.search(r"L2-RX-MD5: ([0-9a-f]{32})", out).group(1) == want, \
        "host-to-guest transfer corrupted"


# ------------------------------------------------------------------ balloon

BALLOON_L2_INIT = r"""
mt() { awk '/^MemTotal:/ {print $2}' /proc/meminfo; }
m0=$(mt)
echo "L2-READY memtotal=$m0"
# Dirty memory and free it again, so inflation has touched pages to return.
dd if=/dev/zero of=/tmp/fill bs=1M count=150 2>/dev/null; rm -f /tmp/fill
echo "L2-TOUCHED"
i=0
while [ $i -lt 300 ] && [ $(mt) -gt $((m0 - 250000)) ]; do sleep 1; i=$((i+1)); done
echo "L2-INFLATED memtotal=$(mt)"
i=0
while [ $i -lt 300 ] && [ $(mt) -lt $((m0 - 8192)) ]; do sleep 1; i=$((i+1)); done
echo "L2-DEFLATED memtotal=$(mt)"
sleep 10
reboot -f
"""

BALLOON_L1_SCRIPT = r"""
(@VMM@; echo "L1-VMM-EXIT: $?") > /tmp/l2.log 2>&1 &
waitfor() { i=0; while ! grep -q "$1" /tmp/l2.log; do i=$((i+1)); [ $i -gt 400 ] && return 1; sleep 1; done; }
rss() { awk '/^VmRSS/ {print $2}' /proc/$(pidof kvz-vmm)/status; }
waitfor L2-TOUCHED || { cat /tmp/l2.log; exit 3; }
echo "L1-RSS-BEFORE: $(rss)"
qmp-send /tmp/q.sock '{"execute": "query-balloon"}'
qmp-send /tmp/q.sock '{"execute": "balloon", "arguments": {"value": 268435456}}' || exit 4
waitfor L2-INFLATED || { cat /tmp/l2.log; exit 5; }
sleep 2
echo "L1-RSS-INFLATED: $(rss)"
qmp-send /tmp/q.sock '{"execute": "query-balloon"}' | sed 's/^/L1-QUERY-INFLATED: /'
qmp-send /tmp/q.sock '{"execute": "balloon", "arguments": {"value": 536870912}}' || exit 6
waitfor L2-DEFLATED || { cat /tmp/l2.log; exit 7; }
sleep 1
qmp-send /tmp/q.sock '{"execute": "query-balloon"}' | sed 's/^/L1-QUERY-DEFLATED: /'
waitfor L1-VMM-EXIT
cat /tmp/l2.log
"""


def test_balloon_inflate_deflate(tmp_path):
    need_lab()
    if not os.path.exists(QMP_SEND):
        pytest.skip(f"{QMP_SEND} not built (static helper; not built under sanitizers)")
    script = BALLOON_L1_SCRIPT.replace(
        "@VMM@", vmm_cmd("--memory 512M --balloon --qmp /tmp/q.sock </dev/null"))
    res = lab(script, files={QMP_SEND: "/bin/qmp-send"}, l2_init=BALLOON_L2_INIT,
              l2_modules=VIRTIO_BASE + ["virtio_balloon"], timeout=600)
    out = res.output
    assert res.exit_code == 0, out[-3000:]
    m0 = int(re.search(r"L2-READY memtotal=(\d+)", out).group(1))
    m1 = int(re.search(r"L2-INFLATED memtotal=(\d+)", out).group(1))
    m2 = int(re.search(r"L2-DEFLATED memtotal=(\d+)", out).group(1))
    # 256 MiB of 512 MiB asked back: MemTotal falls by about 256 MiB.
    assert m0 - m1 > 240 * 1024, (m0, m1)
    assert m2 >= m0 - 8192, (m0, m2)
    q = re.search(r'L1-QUERY-INFLATED: .*"actual": ?(\d+)', out)
    assert q and abs(int(q.group(1)) - 268435456) < 16 << 20, out[-2000:]
    q = re.search(r'L1-QUERY-DEFLATED: .*"actual": ?(\d+)', out)
    assert q and int(q.group(1)) == 536870912
    assert "L1-VMM-EXIT: 0" in out
    before = int(re.search(r"L1-RSS-BEFORE: (\d+)", out).group(1))
    after = int(re.search(r"L1-RSS-INFLATED: (\d+)", out).group(1))
    print(f"kvz-vmm RSS before {before} kB, inflated {after} kB")
    assert after < before, "the VMM kept the ballooned pages"
