"""Bootable images for the firmware-boot lab test and bench, made on the
host from Debian's packages without loop devices or root mounts:

disk_image(): an MBR-partitioned disk, GRUB (grub-pc-bin) in the MBR and
the gap after it, one ext2 partition (mke2fs -d) holding a kernel and an
initrd; GRUB's embedded configuration speaks on the serial port and boots
the kernel with console=ttyS0.

iso_image(): an ISO 9660 image made by grub-mkrescue (xorriso), bootable
through El Torito, holding a kernel, an initrd, a GRUB menu that boots
them at once on the serial console, and extra files.

The MBR is GRUB's boot.img (its first 440 bytes: the partition table
stays ours), which loads core.img from sector 1; core.img is grub-mkimage's
diskboot.img + kernel + modules, whose default block list (the sectors
after the first) is where it is written."""

import os
import shutil
import struct
import subprocess
import tempfile

GRUB_DIR = "/usr/lib/grub/i386-pc"
SECTOR = 512
PART_START = 2048          # sectors: 1 MiB, room for core.img
GRUB_MODULES = ["biosdisk", "part_msdos", "ext2", "linux", "serial", "terminal",
                "echo", "boot"]


def missing():
    """Why the images cannot be made here, or None."""
    if not os.path.exists(os.path.join(GRUB_DIR, "boot.img")):
        return f"{GRUB_DIR}/boot.img missing (Debian's grub-pc-bin)"
    for tool in ("grub-mkimage", "mke2fs"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} missing (Debian's grub-common, e2fsprogs)"
    return None


def grub_config(cmdline):
    return ("serial --unit=0 --speed=115200\n"
            "terminal_input serial\n"
            "terminal_output serial\n"
            "set root=(hd0,msdos1)\n"
            "echo KVZ-GRUB-LOADED\n"
            f"linux /boot/vmlinuz {cmdline}\n"
            "initrd /boot/initrd.gz\n"
            "boot\n")


def _partition_entry(start, count):
    # active, CHS unused (0xFFFFFE: use LBA), type 0x83 Linux
    return struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff",
                       start, count)


def disk_image(out, kernel, initrd, cmdline="console=ttyS0 quiet panic=-1"):
    """Writes the disk image to out and returns out."""
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "root", "boot")
        os.makedirs(root)
        for src, name in ((kernel, "vmlinuz"), (initrd, "initrd.gz")):
            with open(src, "rb") as f, open(os.path.join(root, name), "wb") as g:
                g.write(f.read())
        used = os.path.getsize(kernel) + os.path.getsize(initrd)
        part_kb = ((used * 5 // 4) // 1024 + 2048) // 1024 * 1024
        part = os.path.join(tmp, "part.img")
        subprocess.run([shutil.which("mke2fs") or "/usr/sbin/mke2fs", "-q", "-F", "-t", "ext2", "-L", "kvzboot", "-d",
                        os.path.join(tmp, "root"), part, f"{part_kb}k"], check=True)
        cfg = os.path.join(tmp, "early.cfg")
        with open(cfg, "w") as f:
            f.write(grub_config(cmdline))
        core = os.path.join(tmp, "core.img")
        subprocess.run(["grub-mkimage", "-O", "i386-pc", "-o", core, "-c", cfg,
                        "-p", "(hd0,msdos1)/boot/grub", *GRUB_MODULES], check=True)
        core_data = open(core, "rb").read()
        if len(core_data) > (PART_START - 1) * SECTOR:
            raise RuntimeError(f"core.img is {len(core_data)} bytes: does not fit before the partition")
        boot = open(os.path.join(GRUB_DIR, "boot.img"), "rb").read()
        part_data = open(part, "rb").read()
        mbr = bytearray(SECTOR)
        mbr[:440] = boot[:440]
        mbr[446:462] = _partition_entry(PART_START, len(part_data) // SECTOR)
        mbr[510:512] = b"\x55\xaa"
        with open(out, "wb") as f:
            f.write(mbr)
            f.write(core_data)
            f.write(bytes(PART_START * SECTOR - SECTOR - len(core_data)))
            f.write(part_data)
    return out


def iso_missing():
    if not shutil.which("grub-mkrescue") or not shutil.which("xorriso"):
        return "grub-mkrescue or xorriso missing (Debian's grub-common, xorriso)"
    return missing()


def iso_image(out, kernel, initrd, cmdline, files=None):
    """Writes the ISO to out; files maps names in its root to bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "root")
        os.makedirs(os.path.join(root, "boot", "grub"))
        for src, name in ((kernel, "vmlinuz"), (initrd, "initrd.gz")):
            shutil.copyfile(src, os.path.join(root, "boot", name))
        for name, data in (files or {}).items():
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
        with open(os.path.join(root, "boot", "grub", "grub.cfg"), "w") as f:
            f.write("serial --unit=0 --speed=115200\n"
                    "terminal_input serial\n"
                    "terminal_output serial\n"
                    "set timeout=0\n"
                    "menuentry kvz {\n"
                    " echo KVZ-GRUB-CD\n"
                    f" linux /boot/vmlinuz {cmdline}\n"
                    " initrd /boot/initrd.gz\n"
                    "}\n")
        subprocess.run(["grub-mkrescue", "-o", out, root], check=True, capture_output=True)
    return out
