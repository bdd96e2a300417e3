"""Live disk growth seen by a real guest (issue 13): Debian's kernel under
kvz-vmm in the nested lab reads /sys/block/vdX/size, the host (L1) sends
QMP block_resize, and the guest sees the new size without a reboot (the
virtio-blk config-change interrupt; Linux logs "capacity change") and reads
the new last sector. One raw disk (vda) and one qcow2 disk (vdb) whose
growth needs a larger L1 table; the qcow2 image passes qemu-img check
afterwards (L1 copies it back onto a raw QEMU disk)."""
import os
import re
import subprocess
import sys

import pytest

from labpaths import BUILD_DIR, kvzlab

KIMG = os.path.join(BUILD_DIR, "src", "image", "kvz-image")
QMP_TOOL = os.path.join(BUILD_DIR, "tests", "vmm", "kvz-qmp-tool")
RAW_NEW = 96 << 20
Q2_NEW = 1536 << 20   # 64 KiB clusters: one L1 entry maps 512 MiB

# The guest: sizes before, then waits (up to 240 s of emulated time) for
# both disks to change, then reads each one's new last sector.
L2_INIT = r"""
a=$(cat /sys/block/vda/size); b=$(cat /sys/block/vdb/size)
echo "L2-BEFORE $a $b"
i=0
while [ $i -lt 240 ]; do
  [ "$(cat /sys/block/vda/size)" != "$a" ] && [ "$(cat /sys/block/vdb/size)" != "$b" ] && break
  sleep 1; i=$((i+1))
done
a=$(cat /sys/block/vda/size); b=$(cat /sys/block/vdb/size)
echo "L2-AFTER $a $b"
dmesg | grep -i "capacity change" | sed 's/^/L2-DMESG: /'
dd if=/dev/vda of=/dev/null bs=512 skip=$((a-1)) count=1 2>/dev/null && echo "L2-TAIL-A-OK"
dd if=/dev/vdb of=/dev/null bs=512 skip=$((b-1)) count=1 2>/dev/null && echo "L2-TAIL-B-OK"
echo "L2-DONE"
"""

L1_SCRIPT = r"""
truncate -s 64M /tmp/d.raw
/bin/kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz \
   --cmdline 'console=ttyS0 panic=-1 quiet' --memory 256M --qmp /tmp/rq \
   --disk /tmp/d.raw --disk /img/q.qcow2,format=qcow2 > /tmp/l2.out 2>&1 </dev/null &
pid=$!
i=0
while ! grep -q L2-BEFORE /tmp/l2.out && [ $i -lt 400 ]; do sleep 1; i=$((i+1)); done
/bin/kvz-qmp-tool /tmp/rq 'block_resize={"device":"vda","size":RAW_NEW}' \
  'block_resize={"device":"vdb","size":Q2_NEW}' 'block_resize={"device":"vda","size":1048576}' \
  | sed 's/^/L1-QMP: /'
wait $pid; echo "L1-VMM-EXIT $?"
sed 's/^/L2-OUT: /' /tmp/l2.out
echo "L1-RAW-SIZE $(wc -c < /tmp/d.raw)"
echo "L1-Q2-SIZE $(wc -c < /img/q.qcow2)"
dd if=/img/q.qcow2 of=/dev/vda bs=1M conv=notrunc,fsync 2>/dev/null
sync
""".replace("RAW_NEW", str(RAW_NEW)).replace("Q2_NEW", str(Q2_NEW))


def test_guest_sees_disk_growth(tmp_path):
    kvzlab.skip_unless_lab()
    for path in (KIMG, QMP_TOOL):
        if not os.path.exists(path):
            pytest.skip(f"{path} not built")
    q2 = tmp_path / "q.qcow2"
    subprocess.run([KIMG, "create", str(q2), "32M"], check=True)
    carrier = tmp_path / "carrier.img"
    subprocess.run(["truncate", "-s", "16M", str(carrier)], check=True)
    res = kvzlab.run_in_lab(L1_SCRIPT, files={str(q2): "/img/q.qcow2", QMP_TOOL: "/bin/kvz-qmp-tool"},
                            stream=sys.stdout, l1_modules=["virtio_pci", "virtio_blk"],
                            extra_qemu_args=["-drive", f"file={carrier},format=raw,if=virtio"],
                            l2_init=L2_INIT, l2_modules=["virtio_pci", "virtio_blk"], timeout=500)
    out = res.output
    assert not res.timed_out, "lab timed out"
    assert "L2-OUT: L2-BEFORE 131072 65536" in out, out[-3000:]
    assert f"L2-OUT: L2-AFTER {RAW_NEW // 512} {Q2_NEW // 512}" in out, out[-3000:]
    assert re.search(r"L2-DMESG: .*vda: detected capacity change from 131072 to 196608", out), out[-3000:]
    assert re.search(r"L2-DMESG: .*vdb: detected capacity change from 65536 to 3145728", out), out[-3000:]
    assert "L2-OUT: L2-TAIL-A-OK" in out and "L2-OUT: L2-TAIL-B-OK" in out
    assert out.count("L1-QMP: block_resize: {}") == 2, out[-3000:]
    assert re.search(r"L1-QMP: block_resize: error: GenericError: .*shrinking", out)
    assert f"L1-RAW-SIZE {RAW_NEW}" in out
    size = int(re.search(r"L1-Q2-SIZE (\d+)", out).group(1))
    back = tmp_path / "back.qcow2"
    with open(carrier, "rb") as f:
        back.write_bytes(f.read(size))
    info = subprocess.run(["qemu-img", "info", "--output=json", str(back)], capture_output=True,
                          text=True, check=True).stdout
    assert f'"virtual-size": {Q2_NEW}' in info, info
    chk = subprocess.run(["qemu-img", "check", str(back)], capture_output=True, text=True)
    assert chk.returncode == 0, chk.stdout + chk.stderr
