"""The CD-ROM's medium changed live, as Linux in L2 sees it (issue 14):
kvz-vmm boots Debian's kernel with --cdrom holding an ISO made on the host
(xorriso); the initrd reads a block of /dev/sr0 every 0.2 s (an open, so
that sr checks for media events) and, whenever readability or
/sys/block/sr0/size changes, mounts the CD and prints a file from it. L1
ejects the CD over QMP (reads fail; sr keeps the old capacity while no
medium is in, and Linux closes the empty tray itself on open), then
passes a second ISO with getfd and blockdev-change-medium (the new size,
and the new file). One L1 boot."""
import os
import shutil
import subprocess
import sys

import pytest

from labpaths import BUILD_DIR, kvzlab

QMP_SEND = os.path.join(BUILD_DIR, "tests", "virtio", "qmp-send")

L2_INIT = r"""
i=0
while [ ! -b /dev/sr0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
echo 200 > /sys/block/sr0/events_poll_msecs 2>/dev/null
mkdir -p /mnt
last=none
n=0
while [ $n -lt 900 ]; do
  if dd if=/dev/sr0 of=/dev/null bs=2048 count=1 2>/dev/null; then ok=1; else ok=0; fi
  s=$(cat /sys/block/sr0/size 2>/dev/null)
  if [ "$s $ok" != "$last" ]; then
    id=none
    if [ $ok = 1 ] && mount -t iso9660 -o ro /dev/sr0 /mnt 2>/dev/null; then
      id=$(cat /mnt/id.txt)
      umount /mnt
    fi
    echo "KVZ-SR0 size=$s ready=$ok id=$id"
    last="$s $ok"
  fi
  sleep 0.2
  n=$((n + 1))
done
"""
L2_MODULES = ["virtio_pci", "virtio_scsi", "sr_mod", "isofs"]

L1_SCRIPT = r"""
out=/tmp/vmm.out
(timeout 240 kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz \
    --cmdline "console=ttyS0 quiet panic=-1" --memory 256M --cdrom /one.iso \
    --qmp /tmp/q.sock </dev/null 2>&1; echo "CD-LAB: kvz-vmm exit $?") | tee $out | sed 's/^/L2| /' &
wait_for() {
  i=0
  while ! grep -q "$1" $out; do
    i=$((i + 1))
    if [ $i -gt 600 ] || grep -q "CD-LAB: kvz-vmm exit" $out; then return 1; fi
    sleep 0.2
  done
}
rc=0
wait_for "KVZ-SR0 size=[1-9].* ready=1 id=one" || rc=2
[ $rc = 0 ] && { qmp-send /tmp/q.sock '{"execute": "eject", "arguments": {"id": "cdrom0"}}' || rc=3; }
[ $rc = 0 ] && { wait_for "KVZ-SR0 size=.* ready=0" || rc=4; }
[ $rc = 0 ] && { qmp-send --fd 3 /tmp/q.sock '{"execute": "getfd", "arguments": {"fdname": "cd"}}' \
    '{"execute": "blockdev-change-medium", "arguments": {"id": "cdrom0", "filename": "fd:cd"}}' \
    3</two.iso || rc=5; }
[ $rc = 0 ] && { wait_for "KVZ-SR0 size=[1-9].* ready=1 id=two" || rc=6; }
qmp-send /tmp/q.sock '{"execute": "query-block"}'
echo "CD-LAB: rc=$rc"
qmp-send /tmp/q.sock '{"execute": "quit"}' >/dev/null 2>&1
wait
exit $rc
"""


def make_iso(tmp_path, name, pad_kib):
    root = tmp_path / name
    root.mkdir()
    (root / "id.txt").write_text(name + "\n")
    (root / "pad.bin").write_bytes(bytes(pad_kib * 1024))   # a size of its own
    iso = str(tmp_path / f"{name}.iso")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", iso, str(root)],
                   check=True, capture_output=True)
    return iso


def test_linux_sees_eject_and_change(tmp_path):
    kvzlab.skip_unless_lab()
    for why in (None if shutil.which("xorriso") else "xorriso missing (Debian's xorriso)",
                None if os.path.exists(QMP_SEND) else f"{QMP_SEND} not built"):
        if why:
            pytest.skip(why)
    one, two = make_iso(tmp_path, "one", 64), make_iso(tmp_path, "two", 512)
    res = kvzlab.run_in_lab(L1_SCRIPT, smp=1, timeout=300, retries=1, stream=sys.stdout,
                            l2_init=L2_INIT, l2_modules=L2_MODULES,
                            files={one: "/one.iso", two: "/two.iso", QMP_SEND: "/bin/qmp-send"})
    print(f"lab run: {res.duration:.0f} s")
    out = res.output
    assert res.exit_code == 0, f"exit {res.exit_code}\n" + out[-4000:]
    sizes = [l.split("KVZ-SR0 ", 1)[1] for l in out.splitlines() if "KVZ-SR0 " in l]
    one_s, two_s = os.path.getsize(one) // 512, os.path.getsize(two) // 512
    assert sizes[0] == f"size={one_s} ready=1 id=one", sizes
    # sr keeps the old capacity while no medium is in; reads fail
    assert sizes[1].endswith("ready=0 id=none"), sizes
    assert sizes[2] == f"size={two_s} ready=1 id=two", sizes
    assert '"tray_open":false' in out and '"virtual-size":' in out
