"""Firmware boot on the host /dev/kvm: Debian's SeaBIOS boots a boot sector
from a virtio disk (tests/guests/mbr.S) with its console on the serial
port, --boot picks the disk, system_reset re-enters the firmware; the same
boot sector as the El Torito image of an ISO (xorriso) boots from --cdrom
(virtio-scsi); a hostile tiny guest against fw_cfg's DMA interface; the
command-line errors."""

import os
import re
import select
import shutil
import subprocess
import time

import pytest

import vmmtest
from vmmtest import guest, run

MBR = os.path.join(vmmtest.GUESTS, "mbr.bin")
SEABIOS = "/usr/share/seabios/bios-256k.bin"
MARK = b"kvz-fw-mbr: booted"
POWEROFF_FLAG = 0x1B0

needs_kvm = pytest.mark.skipif(vmmtest.kvm_unavailable_reason() is not None,
                               reason=vmmtest.kvm_unavailable_reason() or "")
needs_seabios = pytest.mark.skipif(not os.path.exists(SEABIOS),
                                   reason=f"{SEABIOS} missing: Debian's seabios package "
                                          "(scripts/install-deps.sh installs it)")


def one_error_line(res, pattern):
    assert res.returncode != 0, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert re.search(pattern, lines[0]), lines[0]


def disk(path, poweroff=False, upper=False):
    """A 1 MiB disk whose first sector is the test boot sector; upper
    makes its marker "BOOTED" so two disks can be told apart."""
    data = bytearray(open(MBR, "rb").read())
    assert len(data) == 512 and data[510:] == b"\x55\xaa"
    if poweroff:
        data[POWEROFF_FLAG] = 1
    if upper:
        i = data.index(b"booted")
        data[i:i + 6] = b"BOOTED"
    with open(path, "wb") as f:
        f.write(bytes(data) + bytes((1 << 20) - 512))
    return str(path)


def read_until(stream, want, seconds):
    data = b""
    end = time.monotonic() + seconds
    while want not in data and time.monotonic() < end:
        r, _, _ = select.select([stream], [], [], 0.2)
        if r:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            data += chunk
    return data


def iso(tmp_path, poweroff=True):
    """An ISO 9660 image whose El Torito no-emulation boot image is the
    test boot sector (padded to one 2048-byte block)."""
    root = tmp_path / "isoroot"
    (root / "boot").mkdir(parents=True)
    data = bytearray(open(MBR, "rb").read())
    if poweroff:
        data[POWEROFF_FLAG] = 1
    (root / "boot" / "mbr.bin").write_bytes(bytes(data) + bytes(1536))
    out = str(tmp_path / "test.iso")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-b", "boot/mbr.bin", "-no-emul-boot",
                    "-boot-load-size", "4", "-o", out, str(root)], check=True,
                   capture_output=True)
    return out


needs_xorriso = pytest.mark.skipif(shutil.which("xorriso") is None,
                                   reason="xorriso missing (Debian's xorriso package)")


# ---- errors (any host) ----

def test_firmware_missing_file(tmp_path):
    one_error_line(run(["--firmware", str(tmp_path / "nope")]), r"--firmware .*nope")


def test_firmware_wrong_size(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\0" * 1000)
    one_error_line(run(["--firmware", str(bad)]), r"not a firmware image")


def test_firmware_and_kernel_exclusive():
    one_error_line(run(["--firmware", "bios", "--kernel", guest("idle")]), r"choose one")


def test_boot_needs_firmware():
    one_error_line(run(["--kernel", guest("idle"), "--boot", "disk"]), r"--boot needs --firmware")


def test_boot_junk():
    one_error_line(run(["--firmware", "bios", "--boot", "floppy"]), r"--boot floppy: expected")


@needs_kvm
@needs_seabios
def test_boot_index_out_of_range(tmp_path):
    one_error_line(run(["--firmware", "bios", "--boot", "3", "--disk", disk(tmp_path / "a")]),
                   r"--boot 3: there are 1 disks")


def test_cdrom_missing(tmp_path):
    one_error_line(run(["--firmware", "bios", "--cdrom", str(tmp_path / "nope.iso")]),
                   r"--cdrom .*nope.iso")


def test_cdrom_too_small(tmp_path):
    small = tmp_path / "small.iso"
    small.write_bytes(b"x" * 100)
    one_error_line(run(["--firmware", "bios", "--cdrom", str(small)]), r"at least one 2048-byte block")


@needs_kvm
@needs_seabios
def test_boot_cdrom_without_cdrom(tmp_path):
    one_error_line(run(["--firmware", "bios", "--boot", "cdrom", "--disk", disk(tmp_path / "a")]),
                   r"--boot cdrom: there is no --cdrom")


@needs_kvm
@needs_seabios
def test_boot_disk_without_disk():
    one_error_line(run(["--firmware", "bios", "--boot", "disk"]), r"no --disk to boot from")


# ---- fw_cfg against a hostile guest ----

@needs_kvm
def test_fw_cfg_dma_attacks():
    res = run(["--kernel", guest("fwcfg"), "--memory", "16M"], timeout=60)
    assert res.returncode == 0, res.stderr
    oks = re.findall(r"^ok (\S+)$", res.stdout, re.M)
    assert "FAIL" not in res.stdout, res.stdout
    assert oks == ["signature-port", "dma-status", "dma-data", "dma-buffer-outside-ram",
                   "dma-huge-length", "dma-address-wraps", "dma-write-refused",
                   "item-unchanged", "descriptor-outside-ram"], res.stdout
    assert "fwcfg: done" in res.stdout


# ---- SeaBIOS ----

@needs_kvm
@needs_seabios
def test_seabios_boots_disk_and_powers_off(tmp_path):
    res = run(["--firmware", "bios", "--disk", disk(tmp_path / "d", poweroff=True),
               "--memory", "64M"], timeout=90)
    assert res.returncode == 0, res.stderr
    assert "SeaBIOS" in res.stdout, res.stdout
    assert MARK.decode() in res.stdout, res.stdout
    assert "power-off" in res.stderr


@needs_kvm
@needs_seabios
@pytest.mark.parametrize("first,want", [("0", "booted"), ("1", "BOOTED")])
def test_boot_order_picks_disk(tmp_path, first, want):
    a = disk(tmp_path / "a", poweroff=True)
    b = disk(tmp_path / "b", poweroff=True, upper=True)
    res = run(["--firmware", "bios", "--boot", first, "--disk", a, "--disk", b,
               "--memory", "64M", "--cpus", "2"], timeout=90)
    assert res.returncode == 0, res.stderr
    assert f"kvz-fw-mbr: {want}" in res.stdout, res.stdout
    other = "BOOTED" if want == "booted" else "booted"
    assert f"kvz-fw-mbr: {other}" not in res.stdout, res.stdout


@needs_kvm
@needs_seabios
def test_system_reset_reenters_firmware(tmp_path):
    sock = str(tmp_path / "qmp")
    p = vmmtest.start(["--firmware", "bios", "--disk", disk(tmp_path / "d"), "--memory", "64M",
                       "--qmp", sock])
    try:
        vmmtest.wait_for_path(sock, p)
        q = vmmtest.Qmp(sock)
        out = read_until(p.stdout, MARK, 60)
        assert out.count(MARK) == 1, out
        assert q.cmd("system_reset") == {"return": {}}
        q.wait_event("RESET")
        out += read_until(p.stdout, MARK, 60)
        assert out.count(MARK) == 2, out
        assert out.count(b"SeaBIOS (version") == 2, out
        assert q.cmd("quit") == {"return": {}}
        assert p.wait(10) == 0
    finally:
        p.kill()
        p.wait()


@needs_kvm
@needs_seabios
@needs_xorriso
@pytest.mark.parametrize("boot,want", [("cdrom", "booted"), ("disk", "BOOTED")])
def test_cdrom_el_torito_boot(tmp_path, boot, want):
    """The ISO's boot image prints "booted", the disk's "BOOTED": --boot
    decides which one SeaBIOS runs."""
    res = run(["--firmware", "bios", "--boot", boot, "--cdrom", iso(tmp_path),
               "--disk", disk(tmp_path / "d", poweroff=True, upper=True), "--memory", "64M"],
              timeout=90)
    assert res.returncode == 0, res.stderr
    assert f"kvz-fw-mbr: {want}" in res.stdout, res.stdout
    if boot == "cdrom":
        assert "Booting from DVD/CD" in res.stdout, res.stdout
