"""kvzd's direct boot from the kernel inside a VM's disk (boot_image.c),
through the boot-extract test program: the image is the guest's and
hostile. Images are made here, unprivileged, with mkfs.ext4 -d and a
hand-written MBR or GPT."""
import os
import shutil
import struct
import subprocess

import pytest

BUILD = os.environ.get("KVZ_BUILD_DIR", "build")
TOOL = os.path.join(BUILD, "tests", "daemon", "boot-extract")
OFFSET = 1 << 20

pytestmark = pytest.mark.skipif(not shutil.which("mkfs.ext4") or not shutil.which("debugfs"),
                                reason="e2fsprogs (mkfs.ext4, debugfs) missing")


def mbr(parts):
    """parts: (type, first_lba, sectors)."""
    m = bytearray(512)
    for i, (t, lba, n) in enumerate(parts):
        m[446 + 16 * i:446 + 16 * i + 16] = bytes([0, 0xfe, 0xff, 0xff, t, 0xfe, 0xff, 0xff]) + \
            struct.pack("<II", lba, n)
    m[510:512] = b"\x55\xaa"
    return bytes(m)


def make_fs(tree, path, size_mb=32, offset=OFFSET, table=True):
    with open(path, "wb") as f:
        f.truncate(offset + size_mb * (1 << 20))
    if table:
        with open(path, "r+b") as f:
            f.write(mbr([(0x83, offset // 512, size_mb * 2048)]))
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", tree, "-E", f"offset={offset}", path,
                    f"{size_mb}M"], check=True)
    return path


def boot_tree(root, files):
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if isinstance(data, tuple) and data[0] == "symlink":
            os.symlink(data[1], p)
        elif isinstance(data, tuple) and data[0] == "sparse":
            with open(p, "wb") as f:
                f.truncate(data[1])
        else:
            with open(p, "wb") as f:
                f.write(data)
    return root


def extract(img, tmp_path):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True, mode=0o700)
    r = subprocess.run([TOOL, str(img), str(out)], capture_output=True, text=True, timeout=120)
    return r, out


def test_newest_kernel_and_its_initrd(tmp_path):
    tree = boot_tree(str(tmp_path / "t"), {
        "boot/vmlinuz-6.1.0-9-amd64": b"K9" * 100, "boot/initrd.img-6.1.0-9-amd64": b"I9",
        "boot/vmlinuz-6.1.0-10-amd64": b"K10" * 100, "boot/initrd.img-6.1.0-10-amd64": b"I10",
        "boot/vmlinuz-6.2.0-1-amd64": b"no initrd for this one",
        "etc/hostname": b"x\n"})
    img = make_fs(tree, str(tmp_path / "d.img"))
    r, out = extract(img, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "root=/dev/vda1"
    assert (out / "vmlinuz").read_bytes() == b"K10" * 100
    assert (out / "initrd.img").read_bytes() == b"I10"
    assert sorted(os.listdir(out)) == ["initrd.img", "vmlinuz"]


def test_whole_disk_filesystem_is_vda(tmp_path):
    tree = boot_tree(str(tmp_path / "t"), {"boot/vmlinuz-1": b"K", "boot/initrd.img-1": b"I"})
    img = make_fs(tree, str(tmp_path / "d.img"), offset=0, table=False)
    r, out = extract(img, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "root=/dev/vda"


def test_separate_boot_partition(tmp_path):
    """A /boot partition (kernel at its top) then the root: root is the second."""
    boot = boot_tree(str(tmp_path / "b"), {"vmlinuz-5": b"K5", "initrd.img-5": b"I5"})
    root = boot_tree(str(tmp_path / "r"), {"etc/fstab": b"\n"})
    img = str(tmp_path / "d.img")
    with open(img, "wb") as f:
        f.truncate(OFFSET + 64 * (1 << 20))
        f.write(mbr([(0x82, 2048, 2048), (0x83, 4096, 16 * 2048), (0x83, 4096 + 16 * 2048, 32 * 2048)]))
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", boot, "-E", f"offset={4096 * 512}", img, "16M"], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", root, "-E", f"offset={(4096 + 16 * 2048) * 512}",
                    img, "32M"], check=True)
    r, out = extract(img, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "root=/dev/vda3"
    assert (out / "vmlinuz").read_bytes() == b"K5"


def test_gpt_linux_partition(tmp_path):
    tree = boot_tree(str(tmp_path / "t"), {"boot/vmlinuz-2": b"K2", "boot/initrd.img-2": b"I2"})
    img = str(tmp_path / "d.img")
    make_fs(tree, img, table=False)   # ext4 at 1 MiB, then a GPT in front of it
    pm = mbr([(0xee, 1, 0xffffffff)])
    hdr = b"EFI PART" + struct.pack("<IIIIQQQQ16sQII", 0x10000, 92, 0, 0, 1, 0, 34, 0,
                                    b"\0" * 16, 2, 128, 128)
    esp = bytes.fromhex("28732ac11ff8d211ba4b00a0c93ec93b") + b"\1" * 16 + struct.pack("<QQQ", 34, 2047, 0)
    linux = bytes.fromhex("af3dc60f838472478e793d69d8477de4") + b"\2" * 16 + \
        struct.pack("<QQQ", 2048, 2048 + 32 * 2048 - 1, 0)
    with open(img, "r+b") as f:
        f.write(pm)
        f.seek(512)
        f.write(hdr)
        f.seek(1024)
        f.write(esp + b"\0" * (128 - len(esp)) + linux)
    r, out = extract(img, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "root=/dev/vda2"


# ---- attacks: the image is the guest's ----

def test_symlinks_never_reach_host_files(tmp_path):
    """vmlinuz and initrd links to host paths (and /boot itself a link): skipped, not
    followed out of the image; with nothing else the start fails cleanly."""
    tree = boot_tree(str(tmp_path / "t"), {
        "boot/vmlinuz-9": ("symlink", "/etc/shadow"),
        "boot/initrd.img-9": ("symlink", "../../../../../../etc/passwd")})
    img = make_fs(tree, str(tmp_path / "d.img"))
    r, out = extract(img, tmp_path)
    assert r.returncode == 1 and "no /boot/vmlinuz" in r.stderr
    assert os.listdir(out) == []
    tree2 = boot_tree(str(tmp_path / "t2"), {"etc/vmlinuz-3": b"K3", "etc/initrd.img-3": b"I3",
                                             "boot": ("symlink", "/etc")})
    img2 = make_fs(tree2, str(tmp_path / "d2.img"))
    r, out = extract(img2, tmp_path)
    # /boot -> /etc resolves inside the image (debugfs reads nothing else).
    if r.returncode == 0:
        assert (out / "vmlinuz").read_bytes() == b"K3"
    else:
        assert os.listdir(out) == []


def test_names_cannot_inject_debugfs_commands(tmp_path):
    """A file named to smuggle a host path into debugfs's dump command."""
    victim = tmp_path / "victim"
    tree = boot_tree(str(tmp_path / "t"), {
        f"boot/vmlinuz-1 {victim}": b"EVIL", f"boot/initrd.img-1 {victim}": b"EVIL",
        "boot/vmlinuz-1\nrdump": b"EVIL", "boot/initrd.img-1\nrdump": b"EVIL",
        'boot/vmlinuz-1"x': b"EVIL", 'boot/initrd.img-1"x': b"EVIL"})
    img = make_fs(tree, str(tmp_path / "d.img"))
    r, out = extract(img, tmp_path)
    assert r.returncode == 1 and "no /boot/vmlinuz" in r.stderr
    assert not victim.exists()
    assert os.listdir(out) == []


def test_huge_files_are_refused_not_read(tmp_path):
    """A 100 GiB sparse "kernel": over the cap, so never dumped; kvzd's memory and
    disk stay as they were."""
    tree = boot_tree(str(tmp_path / "t"), {"boot/vmlinuz-7": ("sparse", 100 << 30),
                                           "boot/initrd.img-7": b"I"})
    img = make_fs(tree, str(tmp_path / "d.img"), size_mb=64)
    r, out = extract(img, tmp_path)
    assert r.returncode == 1
    assert os.listdir(out) == []


def test_listing_bomb_is_bounded(tmp_path):
    """/boot with more names than kvzd reads: refused with one line."""
    tree = str(tmp_path / "t")
    os.makedirs(tree + "/boot")
    name = "x" * 240
    for i in range(5000):
        open(f"{tree}/boot/{i}{name}", "w").close()
    img = make_fs(tree, str(tmp_path / "d.img"), size_mb=64)
    r, out = extract(img, tmp_path)
    assert r.returncode == 1 and "more than" in r.stderr
    assert os.listdir(out) == []


@pytest.mark.parametrize("head", [b"", b"\0" * 4096, b"\x55\xaa" * 300,
                                  mbr([(0x83, 0xfffffff0, 0x100)]),   # outside the disk
                                  mbr([(0xee, 1, 1)]) + b"NOT GPT!" * 64])
def test_garbage_images_fail_with_one_line(tmp_path, head):
    img = tmp_path / "d.img"
    with open(img, "wb") as f:
        f.write(head)
        f.truncate(max(len(head), 1 << 20))
    r, out = extract(img, tmp_path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert os.listdir(out) == []


def test_corrupt_filesystem_fails_cleanly(tmp_path):
    tree = boot_tree(str(tmp_path / "t"), {"boot/vmlinuz-1": b"K", "boot/initrd.img-1": b"I"})
    img = make_fs(tree, str(tmp_path / "d.img"))
    with open(img, "r+b") as f:   # scribble over the group descriptors and inode table
        f.seek(OFFSET + 2048)
        f.write(os.urandom(256 * 1024))
    r, out = extract(img, tmp_path)
    assert r.returncode in (0, 1)
    if r.returncode == 1:
        assert os.listdir(out) == []
