"""kvz-ct vm-image installs GRUB for BIOS (issue 14 §2, src/ct/vm_grub.c).

A small stand-in VM layer (an MBR disk with an ext4 partition at 1 MiB,
made here with mkfs.ext4 -d) sits in a cache of the test's own, so the
real kvz-ct makes a VM disk from it in a second. Checked on the disk:
boot.img's code in the MBR with our partition table intact, grub-mkimage's
core.img from sector 1 (its block list says where the rest lies), the
menu in /boot/grub/grub.cfg (debugfs cat), Debian's /vmlinuz and
/initrd.img links made when the template lacks them, and without
grub-pc-bin one error line and no disk. With QEMU on the host, its SeaBIOS
boots the disk: GRUB runs the kernel with grub.cfg's command line."""
import os
import shutil
import struct
import subprocess
import time

import pytest

BUILD = os.environ.get("KVZ_BUILD_DIR",
                       os.path.join(os.path.dirname(__file__), "..", "..", "build"))
KVZ_CT = os.path.join(BUILD, "src", "ct", "kvz-ct")
GRUB_DIR = "/usr/lib/grub/i386-pc"
FS = "?offset=1048576"
SECTOR = 512
CMDLINE = "console=ttyS0 root=/dev/vda1 ro net.ifnames=0"


def missing():
    if os.geteuid() != 0:
        return "needs root (kvz-ct writes the VM's files owned by root)"
    if not os.path.exists(KVZ_CT):
        return f"{KVZ_CT} not built"
    if not os.path.exists(os.path.join(GRUB_DIR, "boot.img")) or not shutil.which("grub-mkimage"):
        return "GRUB for BIOS missing (Debian's grub-pc-bin, grub-common)"
    for tool in ("debugfs", "mkfs.ext4", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} missing (e2fsprogs, openssh-client)"
    return None


pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def make_layer(cache, kernels=("6.1.0-9",), links=True, kernel_bytes=None):
    """CACHE/debian-vm.img: MBR, one partition at 1 MiB, ext4 from a tree."""
    tree = os.path.join(cache, "tree")
    for d in ("boot", "etc", "root"):
        os.makedirs(os.path.join(tree, d), exist_ok=True)
    for v in kernels:
        with open(os.path.join(tree, "boot", f"vmlinuz-{v}"), "wb") as f:
            f.write(kernel_bytes or f"KERNEL-{v}".encode())
        with open(os.path.join(tree, "boot", f"initrd.img-{v}"), "wb") as f:
            f.write(f"INITRD-{v}".encode())
    if links:
        os.symlink(f"boot/vmlinuz-{kernels[0]}", os.path.join(tree, "vmlinuz"))
        os.symlink(f"boot/initrd.img-{kernels[0]}", os.path.join(tree, "initrd.img"))
    with open(os.path.join(tree, "etc", "shadow"), "w") as f:
        f.write("root:*:19000:0:99999:7:::\n")
    img = os.path.join(cache, "debian-vm.img")
    size = 64 << 20
    with open(img, "wb") as f:
        f.truncate((1 << 20) + size)
        mbr = bytearray(SECTOR)
        mbr[446:462] = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff",
                                   2048, size // SECTOR)
        mbr[510:512] = b"\x55\xaa"
        f.write(mbr)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "kvzroot", "-d", tree, "-E",
                    "offset=1048576", img, f"{size >> 10}k"], check=True)
    shutil.rmtree(tree)
    return img


def vm_image(cache, out, env=None):
    e = dict(os.environ, KVZ_CT_CACHE=cache, **(env or {}))
    return subprocess.run([KVZ_CT, "vm-image", "--out", out, "--size", "128M", "--hostname",
                           "g1"], capture_output=True, text=True, env=e, timeout=120)


def debugfs(img, req):
    return subprocess.run(["debugfs", "-R", req, img + FS], capture_output=True,
                          text=True).stdout


def test_grub_in_mbr_gap_and_config(tmp_path):
    cache = str(tmp_path / "cache")
    os.makedirs(cache)
    make_layer(cache)
    out = str(tmp_path / "vm.img")
    r = vm_image(cache, out)
    assert r.returncode == 0, r.stderr
    assert "progress boot-loader" in r.stdout
    with open(out, "rb") as f:
        head = f.read(1 << 20)
    with open(os.path.join(GRUB_DIR, "boot.img"), "rb") as f:
        boot = f.read()
    # boot.img's code, then our disk id and partition table, kept
    assert head[:440] == boot[:440]
    flag, ptype, start, count = struct.unpack_from("<B3xB3xII", head, 446)
    assert (flag, ptype, start) == (0x80, 0x83, 2048)
    assert count == ((128 << 20) - (1 << 20)) // SECTOR
    assert head[462:510] == bytes(48) and head[510:512] == b"\x55\xaa"
    assert head[440:444] != bytes(4)         # the disk id vm-image chose
    # boot.img loads sector 1 (its kernel_sector field)
    assert struct.unpack_from("<Q", head, 0x5c)[0] == 1
    # sector 1: diskboot.img, whose block list (at its end) reads the rest
    # of core.img from sector 2 on, all of it before the partition
    with open(os.path.join(GRUB_DIR, "diskboot.img"), "rb") as f:
        diskboot = f.read()
    assert head[SECTOR:SECTOR + 0x100] == diskboot[:0x100]
    lba, n, seg = struct.unpack_from("<QHH", head, 2 * SECTOR - 12)
    assert lba == 2 and 0 < n < 2046 and seg == 0x820
    assert head[2 * SECTOR:3 * SECTOR] != bytes(SECTOR)
    assert head[(2 + n) * SECTOR:] == bytes(len(head) - (2 + n) * SECTOR)
    # the menu, on the file system
    cfg = debugfs(out, "cat /boot/grub/grub.cfg")
    assert "set timeout=0" in cfg
    assert f"linux /vmlinuz {CMDLINE}\n" in cfg
    assert "initrd /initrd.img\n" in cfg
    # the template's links, untouched
    assert "Fast link dest: \"boot/vmlinuz-6.1.0-9\"" in debugfs(out, "stat /vmlinuz")


def test_missing_links_made_to_newest_kernel(tmp_path):
    cache = str(tmp_path / "cache")
    os.makedirs(cache)
    make_layer(cache, kernels=("6.1.0-9", "6.1.0-10", "6.1.0-11"), links=False)
    # a kernel without its initrd is not one GRUB can boot as Debian's
    debugfs_w = ["debugfs", "-w", "-R", "rm /boot/initrd.img-6.1.0-11",
                 os.path.join(cache, "debian-vm.img") + FS]
    subprocess.run(debugfs_w, check=True, capture_output=True)
    out = str(tmp_path / "vm.img")
    r = vm_image(cache, out)
    assert r.returncode == 0, r.stderr
    assert "\"boot/vmlinuz-6.1.0-10\"" in debugfs(out, "stat /vmlinuz")
    assert "\"boot/initrd.img-6.1.0-10\"" in debugfs(out, "stat /initrd.img")
    assert debugfs(out, "cat /boot/vmlinuz-6.1.0-10") == "KERNEL-6.1.0-10"


def test_no_kernel_fails_whole(tmp_path):
    """A template without any kernel: no disk half made."""
    cache = str(tmp_path / "cache")
    os.makedirs(cache)
    make_layer(cache, kernels=(), links=False)
    out = str(tmp_path / "vm.img")
    r = vm_image(cache, out)
    assert r.returncode != 0
    assert "no /boot/vmlinuz-VERSION" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not os.path.exists(out)
    assert [n for n in os.listdir(tmp_path) if "stage" in n] == []


def test_without_grub_pc_bin_one_line_and_no_disk(tmp_path):
    cache = str(tmp_path / "cache")
    os.makedirs(cache)
    make_layer(cache)
    out = str(tmp_path / "vm.img")
    empty = tmp_path / "no-grub"
    empty.mkdir()
    r = vm_image(cache, out, {"KVZ_GRUB_PC_DIR": str(empty)})
    assert r.returncode != 0
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "grub-pc-bin" in err, err
    assert not os.path.exists(out)
    assert [n for n in os.listdir(tmp_path) if "stage" in n] == []
    # a boot.img that is no boot sector is refused the same way
    (empty / "boot.img").write_bytes(b"\0" * 512)
    r = vm_image(cache, out, {"KVZ_GRUB_PC_DIR": str(empty)})
    assert r.returncode != 0 and "grub-pc-bin" in r.stderr and not os.path.exists(out)


def host_kernel():
    ks = sorted(n for n in os.listdir("/boot") if n.startswith("vmlinuz-"))
    return os.path.join("/boot", ks[-1]) if ks else None


def test_qemu_seabios_boots_grub_and_its_kernel(tmp_path):
    """The whole chain on the host: QEMU's SeaBIOS (TCG) -> boot.img ->
    core.img -> grub.cfg -> /vmlinuz (a real kernel) with its line."""
    qemu = shutil.which("qemu-system-x86_64")
    kernel = host_kernel()
    if not qemu or not kernel:
        pytest.skip("qemu-system-x86_64 or a kernel in /boot missing")
    with open(kernel, "rb") as f:
        data = f.read()
    cache = str(tmp_path / "cache")
    os.makedirs(cache)
    make_layer(cache, kernel_bytes=data)
    out = str(tmp_path / "vm.img")
    r = vm_image(cache, out)
    assert r.returncode == 0, r.stderr
    # the initrd is junk: the kernel stops after printing its command line
    con = tmp_path / "con"
    proc = subprocess.Popen([qemu, "-m", "256", "-display", "none", "-no-reboot", "-net", "none",
                             "-drive", f"file={out},format=raw,if=virtio,snapshot=on",
                             "-serial", f"file:{con}", "-monitor", "none"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    want = f"Command line: BOOT_IMAGE=/vmlinuz {CMDLINE}"
    try:
        deadline = time.monotonic() + 180
        text = ""
        while time.monotonic() < deadline and proc.poll() is None:
            text = con.read_bytes().decode(errors="replace") if con.exists() else ""
            if want in text:
                break
            time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()
    assert "Booting `Debian GNU/Linux'" in text, text[-2000:]   # GRUB's menu
    assert want in text, text[-2000:]
