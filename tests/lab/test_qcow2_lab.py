"""qcow2 disks under kvz-vmm with Debian's kernel in the nested lab (issue
13): one L1 boot, two L2 boots on the same images (the second is the
"reboot": kvz-vmm ends when its guest reboots, so it is started again).

- vda: qcow2 over a compressed qcow2 base holding an ext4 file system made
  on the host; the guest reads the host's file and writes its own.
- vdb: a fresh qcow2 (no base); the guest makes the file system itself
  (busybox mke2fs: ext2, mounted by the ext4 driver).
- vdc: the same as vda on a raw image.
Boot two finds and checks everything boot one wrote. The host then
takes the images back (L1 copies them onto a raw QEMU disk), runs
`qemu-img check` and e2fsck -fn on each and reads the files with debugfs.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

from labpaths import BUILD_DIR, kvzlab

KIMG = os.path.join(BUILD_DIR, "src", "image", "kvz-image")
MiB = 1 << 20
SLOT = 48 * MiB  # each image's place on the carrier disk

L2_INIT = r"""
mkdir -p /a /b /c
mount -t ext4 /dev/vda /a || echo "L2-MOUNT-A-FAILED"
if [ -f /a/guest.txt ]; then
  echo "L2-BOOT-2"
  seq 1 20000 | cmp - /a/guest.txt && echo "L2-A-GUEST-OK"
  mount -t ext4 /dev/vdb /b && seq 3 30000 | cmp - /b/fresh.txt && echo "L2-B-FRESH-OK"
  mount -t ext4 /dev/vdc /c && seq 7 9000 | cmp - /c/raw.txt && echo "L2-C-RAW-OK"
  cmp /a/big /b/big && cmp /a/big /c/big && echo "L2-BIG-OK"
  echo second > /a/second.txt; echo second > /b/second.txt; echo second > /c/second.txt
else
  echo "L2-BOOT-1"
  echo "L2-HOSTFILE: $(cat /a/host.txt)"
  mke2fs -q /dev/vdb && echo "L2-MKFS-OK"
  mount -t ext4 /dev/vdb /b || echo "L2-MOUNT-B-FAILED"
  mount -t ext4 /dev/vdc /c || echo "L2-MOUNT-C-FAILED"
  seq 1 20000 > /a/guest.txt; seq 3 30000 > /b/fresh.txt; seq 7 9000 > /c/raw.txt
  i=0; while [ $i -lt 6000 ]; do echo "line $i of the big file"; i=$((i+1)); done > /tmp/big
  cp /tmp/big /a/big; cp /tmp/big /b/big; cp /tmp/big /c/big
  rm /a/host.txt
fi
sync
umount /a && umount /b && umount /c && echo "L2-UMOUNT-OK"
echo "L2-DONE"
"""


def vmm(disks):
    return ("kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz "
            "--cmdline 'console=ttyS0 panic=-1 quiet' --memory 256M " +
            " ".join(f"--disk {d}" for d in disks) + " </dev/null")


def make_images(d):
    src = d / "src"
    src.mkdir()
    (src / "host.txt").write_text("from the host\n")
    base_raw = d / "base.raw"
    subprocess.run(["truncate", "-s", "32M", str(base_raw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(base_raw)], check=True)
    subprocess.run([KIMG, "convert", "-c", "-O", "qcow2", str(base_raw), str(d / "base.qcow2")],
                   check=True)
    subprocess.run([KIMG, "create", "-b", "base.qcow2", str(d / "top.qcow2")], check=True)
    subprocess.run([KIMG, "create", str(d / "fresh.qcow2"), "32M"], check=True)
    shutil.copy(base_raw, d / "raw.img")


def take_back(carrier, d, out):
    """L1 printed each image's size and copied it to its slot."""
    sizes = dict(re.findall(r"L1-SIZE (\S+) (\d+)", out))
    with open(carrier, "rb") as f:
        for i, name in enumerate(("top.qcow2", "fresh.qcow2", "raw.img")):
            assert name in sizes, out[-2000:]
            f.seek(i * SLOT)
            (d / ("back-" + name)).write_bytes(f.read(int(sizes[name])))


def debugfs_cat(img, path):
    return subprocess.run(["debugfs", "-R", f"cat {path}", str(img)],
                          capture_output=True, check=True).stdout


def seq(a, b):
    return "".join(f"{i}\n" for i in range(a, b + 1)).encode()


def test_qcow2_ext4_reboot_fsck(tmp_path):
    kvzlab.skip_unless_lab()
    for tool in ("mkfs.ext4", "debugfs", "e2fsck", "qemu-img"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} missing (Debian: e2fsprogs, qemu-utils)")
    if not os.path.exists(KIMG):
        pytest.skip(f"kvz-image not built ({KIMG})")
    d = tmp_path
    make_images(d)
    carrier = d / "carrier.img"
    subprocess.run(["truncate", "-s", str(3 * SLOT), str(carrier)], check=True)
    files = {str(d / n): f"/img/{n}" for n in ("base.qcow2", "top.qcow2", "fresh.qcow2", "raw.img")}
    disks = ["/img/top.qcow2,format=qcow2", "/img/fresh.qcow2,format=qcow2", "/img/raw.img"]
    copy = "".join(
        f"echo \"L1-SIZE {n} $(wc -c < /img/{n})\"\n"
        f"dd if=/img/{n} of=/dev/vda bs=1M seek={i * SLOT // MiB} conv=notrunc,fsync 2>/dev/null\n"
        for i, n in enumerate(("top.qcow2", "fresh.qcow2", "raw.img")))
    script = (vmm(disks) + "\necho \"L1-BOOT1-RC $?\"\n" + vmm(disks) +
              "\necho \"L1-BOOT2-RC $?\"\n" + copy + "sync\n")
    res = kvzlab.run_in_lab(script, files=files, stream=sys.stdout,
                            l1_modules=["virtio_pci", "virtio_blk"],
                            extra_qemu_args=["-drive", f"file={carrier},format=raw,if=virtio"],
                            l2_init=L2_INIT,
                            l2_modules=["virtio_pci", "virtio_blk", "ext4", "crc32c_generic"],
                            timeout=300)
    out = res.output
    assert not res.timed_out, "lab timed out"
    for marker in ("L2-BOOT-1", "L2-HOSTFILE: from the host", "L2-MKFS-OK", "L2-BOOT-2",
                   "L2-A-GUEST-OK", "L2-B-FRESH-OK", "L2-C-RAW-OK", "L2-BIG-OK"):
        assert marker in out, f"{marker} missing: " + out[-3000:]
    assert out.count("L2-UMOUNT-OK") == 2 and out.count("L2-DONE") == 2
    assert "FAILED" not in out
    take_back(carrier, d, out)
    top, fresh, raw = d / "back-top.qcow2", d / "back-fresh.qcow2", d / "back-raw.img"
    # top names base.qcow2 beside it: the host's base, untouched by L1.
    for img in (top, fresh):
        chk = subprocess.run(["qemu-img", "check", str(img)], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr
    for img in (top, fresh):
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(img), str(img) + ".raw"],
                       check=True)
    for img in (str(top) + ".raw", str(fresh) + ".raw", str(raw)):
        fsck = subprocess.run(["e2fsck", "-fn", img], capture_output=True, text=True)
        assert fsck.returncode == 0, img + ": " + fsck.stdout + fsck.stderr
    assert debugfs_cat(str(top) + ".raw", "/guest.txt") == seq(1, 20000)
    assert debugfs_cat(str(fresh) + ".raw", "/fresh.txt") == seq(3, 30000)
    assert debugfs_cat(str(raw), "/raw.txt") == seq(7, 9000)
    for img in (str(top) + ".raw", str(fresh) + ".raw", str(raw)):
        assert debugfs_cat(img, "/second.txt") == b"second\n"
    # the base under top is as the host made it
    subprocess.run(["qemu-img", "compare", str(d / "base.qcow2"), str(d / "base.raw")], check=True)
