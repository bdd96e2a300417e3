"""VMs installed from an ISO (issue 14 §3), with the stand-in kvz-vmm:
`kvz create vm NAME --cdrom ISO --disk 8G` boots the CD first through the
firmware, `kvz set --boot` and `--eject` change the next start, the guest's
own reboot comes back from its disk once the order says so, and hostile
ISO paths are refused at create, at set and at start. On a running VM
`--cdrom ISO` and `--eject` also change its CD live (QMP getfd +
blockdev-change-medium, eject); once ejected the VM keeps an empty drive."""
import os
import shutil
import signal
import stat
import subprocess

import pytest

from kvzd_harness import BUILD, KVZ, Kvzd, fake_kvzd
from test_jobs import qmp

ISO_SIG_AT = 16 * 2048 + 1
KVZ_VMM = os.path.join(BUILD, "src/vmm/kvz-vmm")
MBR = os.path.join(BUILD, "tests/guests/mbr.bin")
SEABIOS = "/usr/share/seabios/bios-256k.bin"
POWEROFF_FLAG, RESET_FLAG = 0x1B0, 0x1B1


@pytest.fixture
def d():
    k = fake_kvzd()
    if k is None:
        pytest.skip("the stand-in supervisor is not built")
    k.start()
    yield k
    k.cleanup()


def make_iso(path, size=1 << 20, sig=b"CD001", at=ISO_SIG_AT):
    """A file with the ISO 9660 signature where a CD's first volume
    descriptor has it (sparse: size may be huge)."""
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(at - 1)
        f.write(b"\x01" + sig + b"\x01")
    return path


def argv_of(k, name):
    with open("/proc/%d/cmdline" % k.guest(name)["pid"]) as f:
        return f.read().split("\0")


def opt(argv, name):
    return argv[argv.index(name) + 1] if name in argv else None


def cdrom_file(k, name):
    """The file kvz-vmm got as its CD: kvzd passes an open fd, never a name."""
    argv = argv_of(k, name)
    path = opt(argv, "--cdrom")
    if path is None:
        return None
    assert path.startswith("/proc/self/fd/"), argv
    return os.readlink("/proc/%d/fd/%s" % (k.guest(name)["pid"], path.rsplit("/", 1)[1]))


def reboot(k, name):
    """The guest resets (kvz-vmm ends); kvzd starts it again."""
    pid = k.guest(name)["pid"]
    os.kill(pid, signal.SIGHUP)
    return k.wait_for(lambda: k.running_again(name, pid), timeout=30,
                      what=name + " to come back after its reboot")


def test_install_from_iso_then_boot_the_disk(d):
    iso = make_iso(os.path.join(d.images_dirs[0], "debian.iso"))
    d.kvz("create", "vm", "inst", "--cdrom", iso, "--disk", "8G")
    cfg = d.guest("inst")["config"]
    assert cfg["cdrom"] == iso and cfg["boot"] == "cdrom"
    assert os.stat(cfg["disk_path"]).st_size == 8 << 30   # a new, empty disk
    assert cfg["memory"] == 1 << 30
    d.kvz("start", "inst")
    argv = argv_of(d, "inst")
    assert opt(argv, "--firmware") == "bios" and opt(argv, "--boot") == "cdrom"
    assert "--kernel" not in argv and opt(argv, "--disk") == cfg["disk_path"]
    assert cdrom_file(d, "inst") == iso
    # The installer's reboot with the CD still first: the installer again.
    reboot(d, "inst")
    assert opt(argv_of(d, "inst"), "--boot") == "cdrom" and cdrom_file(d, "inst") == iso
    # While it installs: disk first for the next start, the CD stays.
    d.kvz("set", "inst", "--boot", "disk")
    assert opt(argv_of(d, "inst"), "--boot") == "cdrom"       # the running VM is as it was
    reboot(d, "inst")
    argv = argv_of(d, "inst")
    assert opt(argv, "--boot") == "disk" and cdrom_file(d, "inst") == iso
    # CD first again, then ejected (what a user does at the installer's
    # end): the next boot is from the disk, without the CD.
    d.kvz("set", "inst", "--boot", "cdrom")
    d.kvz("set", "inst", "--eject")
    cfg = d.guest("inst")["config"]
    assert "cdrom" not in cfg and cfg["boot"] == "disk"
    assert "inserted" not in qmp(d.guest("inst")["qmp"], "query-block")[0]   # live, too
    reboot(d, "inst")
    argv = argv_of(d, "inst")
    assert opt(argv, "--boot") == "disk" and opt(argv, "--cdrom") == ""   # the drive stays, empty
    media = [e["detail"] for e in d.events("inst") if e["type"] == "media"]
    assert media == ["boot disk", "boot cdrom",
                     "cdrom ejected, boot disk; applied to the running VM"], media
    # Ejecting again changes nothing; an ISO attached again boots as asked.
    d.kvz("set", "inst", "--eject")
    d.kvz("stop", "inst")
    d.kvz("set", "inst", "--cdrom", iso, "--boot", "cdrom")
    d.kvz("start", "inst")
    assert opt(argv_of(d, "inst"), "--boot") == "cdrom" and cdrom_file(d, "inst") == iso
    # boot firmware: the firmware's own order, no --boot.
    d.kvz("stop", "inst")
    d.kvz("set", "inst", "--boot", "firmware")
    d.kvz("start", "inst")
    argv = argv_of(d, "inst")
    assert opt(argv, "--firmware") == "bios" and "--boot" not in argv


def test_live_cd_without_disk_and_disk_first(d):
    iso = make_iso(os.path.join(d.images_dirs[0], "live.iso"))
    st, r = d.api("POST", "/v1/guests", {"type": "vm", "name": "live", "cdrom": iso})
    assert st in (200, 201), r
    d.kvz("start", "live")
    argv = argv_of(d, "live")
    assert "--disk" not in argv and opt(argv, "--boot") == "cdrom"
    # Ejecting the only thing it boots leaves the firmware's own order.
    d.kvz("set", "live", "--eject")
    assert d.guest("live")["config"]["boot"] == "firmware"
    r = d.kvz("set", "live", "--boot", "disk", check=False)
    assert r.returncode != 0 and "needs a disk" in r.stderr
    st, r = d.api("POST", "/v1/guests", {"type": "vm", "name": "df", "cdrom": iso,
                                         "disk": "1G", "boot": "disk", "disk_format": "qcow2"})
    assert st in (200, 201), r
    d.kvz("start", "df")
    argv = argv_of(d, "df")
    assert opt(argv, "--boot") == "disk" and opt(argv, "--disk").endswith(",format=qcow2")


def cd(k, name):
    """The running kvz-vmm's CD-ROM as its QMP query-block reports it."""
    return qmp(k.guest(name)["qmp"], "query-block")[0]


def test_live_eject_and_change(d):
    a = make_iso(os.path.join(d.images_dirs[0], "a.iso"))
    b = make_iso(os.path.join(d.images_dirs[0], "b.iso"))
    d.kvz("create", "vm", "lv", "--cdrom", a, "--disk", "1G", "--boot", "disk")
    d.kvz("start", "lv")
    pid = d.guest("lv")["pid"]
    assert cd(d, "lv")["inserted"]["file"] == a
    d.kvz("set", "lv", "--cdrom", b)
    assert cd(d, "lv")["inserted"]["file"] == b      # the file kvzd opened and checked
    assert d.guest("lv")["config"]["cdrom"] == b     # and for the next start
    d.kvz("set", "lv", "--eject")
    assert "inserted" not in cd(d, "lv") and "cdrom" not in d.guest("lv")["config"]
    d.kvz("set", "lv", "--eject")                    # nothing to eject: nothing asked
    d.kvz("set", "lv", "--cdrom", a)
    assert cd(d, "lv")["inserted"]["file"] == a
    assert d.guest("lv")["pid"] == pid               # all live: never restarted
    media = [e["detail"] for e in d.events("lv") if e["type"] == "media"]
    assert media == ["cdrom %s; applied to the running VM" % b,
                     "cdrom ejected; applied to the running VM",
                     "cdrom %s; applied to the running VM" % a], media

    # The guest locked the tray: refused with kvz-vmm's reason, nothing
    # recorded; unlocked, it works.
    qmp(d.guest("lv")["qmp"], "x-fake-cd-lock", {"locked": True})
    for args in (["--eject"], ["--cdrom", b]):
        r = d.kvz("set", "lv", *args, check=False)
        assert r.returncode != 0 and "is locked" in r.stderr, r.stderr
        assert d.guest("lv")["config"]["cdrom"] == a and cd(d, "lv")["inserted"]["file"] == a
    qmp(d.guest("lv")["qmp"], "x-fake-cd-lock", {"locked": False})
    d.kvz("set", "lv", "--eject")
    # Hostile ISOs are refused before kvz-vmm is asked.
    bad = make_iso(os.path.join(d.images_dirs[0], "bad.iso"), sig=b"NOPE!")
    r = d.kvz("set", "lv", "--cdrom", bad, check=False)
    assert r.returncode != 0 and "not an ISO 9660 image" in r.stderr
    assert "inserted" not in cd(d, "lv")
    # The next start has the drive, empty; an ISO set while stopped is in it.
    d.kvz("stop", "lv")
    d.kvz("start", "lv")
    assert opt(argv_of(d, "lv"), "--cdrom") == "" and "inserted" not in cd(d, "lv")
    d.kvz("set", "lv", "--cdrom", b)
    assert cd(d, "lv")["inserted"]["file"] == b


def test_live_cdrom_without_drive_waits_for_next_start(d):
    """A VM started without a CD-ROM drive gets the ISO at its next start:
    kvz-vmm cannot add a PCI device to a running machine."""
    a = make_iso(os.path.join(d.images_dirs[0], "a.iso"))
    d.kvz("create", "vm", "nd", "--kernel", d.kernel, "--memory", "64M")
    d.kvz("start", "nd")
    assert qmp(d.guest("nd")["qmp"], "query-block") == []
    d.kvz("set", "nd", "--cdrom", a)
    media = [e["detail"] for e in d.events("nd") if e["type"] == "media"]
    assert media == ["cdrom %s; at the next start (the running VM has no CD-ROM drive)" % a], media
    d.kvz("stop", "nd")
    d.kvz("start", "nd")
    assert cdrom_file(d, "nd") == a and cd(d, "nd")["inserted"]["file"] == a


def refused(d, body, status=400, text=None):
    st, r = d.api("POST", "/v1/guests", dict({"type": "vm", "name": "x"}, **body))
    assert st == status, (body, st, r)
    if text:
        assert text in r["error"]["message"], (body, r)
    return r["error"]["message"]


def test_hostile_iso_paths_refused(d, tmp_path):
    imgdir = d.images_dirs[0]
    outside = "not a readable file in the image directories"
    # Outside the image directories: one answer whether it exists or not.
    for p in ("/etc/shadow", "/nonexistent.iso", imgdir + "/../../../etc/passwd",
              "/dev/zero", "/proc/self/environ", "relative.iso", ""):
        refused(d, {"cdrom": p}, text=outside)
    # Inside, but leading out or not a regular file.
    os.symlink("/etc/shadow", os.path.join(imgdir, "shadow.iso"))
    os.symlink("../../../../etc/passwd", os.path.join(imgdir, "rel.iso"))
    os.symlink("/dev/zero", os.path.join(imgdir, "zero.iso"))
    os.mkfifo(os.path.join(imgdir, "fifo.iso"))            # must not block kvzd
    os.mknod(os.path.join(imgdir, "null.iso"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkdir(os.path.join(imgdir, "dir.iso"))
    for n in ("shadow.iso", "rel.iso", "zero.iso", "fifo.iso", "null.iso", "dir.iso"):
        refused(d, {"cdrom": os.path.join(imgdir, n)}, text=outside)
    # Regular files that are no ISO: too small, no signature, the
    # signature elsewhere, a host secret linked in by its owner.
    with open(os.path.join(imgdir, "zeros.iso"), "wb") as f:
        f.truncate(1 << 20)
    make_iso(os.path.join(imgdir, "shifted.iso"), at=ISO_SIG_AT - 1)
    refused(d, {"cdrom": d.kernel}, text="too small for an ISO image")
    for n in ("zeros.iso", "shifted.iso"):
        refused(d, {"cdrom": os.path.join(imgdir, n)}, text="not an ISO 9660 image")
    try:
        os.link("/etc/shadow", os.path.join(imgdir, "hard.iso"))
        refused(d, {"cdrom": os.path.join(imgdir, "hard.iso")})
    except OSError:
        pass   # another file system: no hard link to make
    # Huge (sparse): more than any install medium.
    make_iso(os.path.join(imgdir, "huge.iso"), size=(64 << 30) + 2048)
    refused(d, {"cdrom": os.path.join(imgdir, "huge.iso")}, text="larger than an install medium")
    # Wrong types and combinations.
    iso = make_iso(os.path.join(imgdir, "ok.iso"))
    for body in ({"cdrom": 5}, {"cdrom": {"path": iso}}, {"cdrom": None}, {"cdrom": [iso]}):
        refused(d, body)
    for extra, text in (({"kernel": d.kernel}, "exclude each other"),
                        ({"template": "debian"}, "exclude each other"),
                        ({"import": iso}, "exclude each other"),
                        ({"cmdline": "x"}, "exclude each other"),
                        ({"boot": "direct"}, "boot of a VM with install media"),
                        ({"boot": "nonsense"}, "boot of a VM with install media"),
                        ({"boot": 1}, "boot of a VM with install media"),
                        ({"boot": "disk"}, "boot disk needs a disk"),
                        ({"ip": "10.0.0.2/24"}, "ip and gw")):
        refused(d, dict({"cdrom": iso}, **extra), text=text)
    # Nothing half-made.
    assert d.kvz_json("list") == []
    assert not os.path.exists(os.path.join(d.state, "images", "x.img"))
    # The CLI names a missing file itself.
    r = d.kvz("create", "vm", "x", "--cdrom", str(tmp_path / "missing.iso"), check=False)
    assert r.returncode != 0 and "no such file" in r.stderr


def test_hostile_set_requests_refused(d):
    imgdir = d.images_dirs[0]
    iso = make_iso(os.path.join(imgdir, "ok.iso"))
    d.kvz("create", "vm", "k", "--kernel", d.kernel, "--disk", "16M")
    d.kvz("create", "vm", "v", "--cdrom", iso, "--disk", "16M")
    before = d.guest("v")["config"]
    os.symlink("/etc/shadow", os.path.join(imgdir, "shadow.iso"))
    for body, status in (({"cdrom": "/etc/shadow"}, 400),
                         ({"cdrom": os.path.join(imgdir, "shadow.iso")}, 400),
                         ({"cdrom": d.kernel}, 400),
                         ({"cdrom": 7}, 400),
                         ({"boot": "nonsense"}, 400),
                         ({"boot": None}, 400),
                         ({"cdrom": None, "boot": "cdrom"}, 409),   # ejected: nothing to boot
                         ({"boot": "disk", "memory": "bad"}, 400)):  # all or nothing
        st, r = d.api("PATCH", "/v1/guests/v", body)
        assert st == status, (body, st, r)
    assert d.guest("v")["config"] == before
    # A VM that names its kernel has no boot order; an ISO it may get.
    st, r = d.api("PATCH", "/v1/guests/k", {"boot": "cdrom"})
    assert st == 400 and "boots the kernel it names" in r["error"]["message"], r
    st, r = d.api("PATCH", "/v1/guests/k", {"boot": "disk"})
    assert st == 400
    d.kvz("set", "k", "--eject")
    st, r = d.api("PATCH", "/v1/guests/k", {"cdrom": iso})
    assert st == 200, r
    d.kvz("start", "k")
    argv = argv_of(d, "k")
    assert opt(argv, "--kernel") == d.kernel and cdrom_file(d, "k") == iso


def test_iso_swapped_after_validation(d):
    imgdir = d.images_dirs[0]
    iso = make_iso(os.path.join(imgdir, "swap.iso"))
    d.kvz("create", "vm", "s", "--cdrom", iso, "--disk", "16M")
    # A link to a host file put in its place: the start refuses, and no
    # supervisor ever sees the host file.
    link = os.path.join(imgdir, "swap.tmp")
    os.symlink("/etc/shadow", link)
    os.rename(link, iso)
    r = d.kvz("start", "s", check=False)
    assert r.returncode != 0 and "not a readable file in the image directories" in r.stderr
    assert d.guest("s")["state"] == "stopped"
    # A regular file that is no longer an ISO, then none at all.
    os.unlink(iso)
    with open(iso, "wb") as f:
        f.write(b"root:x:0:0\n" * 4096)
    r = d.kvz("start", "s", check=False)
    assert r.returncode != 0 and "not an ISO 9660 image" in r.stderr
    os.unlink(iso)
    r = d.kvz("start", "s", check=False)
    assert r.returncode != 0 and "not a readable file" in r.stderr
    assert d.guest("s")["state"] == "stopped"
    # Once started, kvz-vmm reads the very file kvzd checked, through the
    # fd it inherited: a name swapped afterwards (as between check and
    # open) does not reach it.
    make_iso(iso)
    ino = os.stat(iso).st_ino
    d.kvz("start", "s")
    fd = opt(argv_of(d, "s"), "--cdrom").rsplit("/", 1)[1]
    pid = d.guest("s")["pid"]
    os.unlink(iso)
    os.symlink("/etc/shadow", iso)
    assert os.stat("/proc/%d/fd/%s" % (pid, fd)).st_ino == ino
    # kvzd keeps no fd of the ISO once kvz-vmm has it.
    kvzd_fds = [os.readlink("/proc/%d/fd/%s" % (d.proc.pid, n))
                for n in os.listdir("/proc/%d/fd" % d.proc.pid)]
    assert not any("swap.iso" in p for p in kvzd_fds), kvzd_fds


def boot_sector(marker, reset=False):
    """tests/guests/mbr.S printing marker: it resets (an installer's
    reboot) or halts (an installed system that keeps running)."""
    data = bytearray(open(MBR, "rb").read())
    i = data.index(b"booted")
    data[i:i + 6] = marker
    if reset:
        data[POWEROFF_FLAG] = data[RESET_FLAG] = 1
    return bytes(data)


def real_e2e_missing():
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as e:
        return "/dev/kvm cannot be opened (%s)" % e.strerror
    for path, why in ((KVZ_VMM, "kvz-vmm not built"), (MBR, "tests/guests/mbr.bin not built"),
                      (SEABIOS, "Debian's seabios package missing")):
        if not os.path.exists(path):
            return why + ": " + path
    return None if shutil.which("xorriso") else "xorriso missing (Debian's xorriso package)"


def console_text(k, name):
    r = subprocess.run(["timeout", "3", KVZ, "--socket", k.socket, "console", name],
                       capture_output=True)
    return r.stdout.decode(errors="replace")


def test_real_install_then_boot_from_disk(tmp_path):
    """kvzd with the real kvz-vmm and SeaBIOS on /dev/kvm: the ISO's El
    Torito image ("booted") reboots like an installer, kvzd starts the VM
    again from the CD; once ejected, the reboot comes back from the disk
    the "installer" wrote ("BOOTED"): the eject reaches the running kvz-vmm
    (its drive is empty) as well as the next start."""
    why = real_e2e_missing()
    if why:
        pytest.skip(why)
    root = tmp_path / "isoroot"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "mbr.bin").write_bytes(boot_sector(b"booted", reset=True) + bytes(1536))
    imgdir = tmp_path / "images"
    imgdir.mkdir()
    iso = str(imgdir / "installer.iso")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-b", "boot/mbr.bin",
                    "-no-emul-boot", "-boot-load-size", "4", "-o", iso, str(root)], check=True,
                   capture_output=True)
    k = Kvzd(vmm=KVZ_VMM, images_dirs=[str(imgdir)])
    try:
        k.start()
        k.kvz("create", "vm", "e2e", "--cdrom", iso, "--disk", "16M", "--memory", "64M",
              "--no-balloon")
        with open(k.guest("e2e")["config"]["disk_path"], "r+b") as f:   # "installed"
            f.write(boot_sector(b"BOOTED"))
        k.kvz("start", "e2e")
        k.wait_for(lambda: any(e["type"] == "rebooted" for e in k.events("e2e")),
                   timeout=60, what="the CD's reboot and kvzd's restart")
        with open(os.path.join(k.state, "logs", "e2e.log")) as f:
            assert "guest reset through port 0xCF9" in f.read()
        k.kvz("set", "e2e", "--eject")
        k.wait_for(lambda: "kvz-fw-mbr: BOOTED" in console_text(k, "e2e"), timeout=60,
                   what="the disk's boot sector on the console")
        g = k.guest("e2e")
        assert g["state"] == "running" and g["config"]["boot"] == "disk"
        # ejected live: the running kvz-vmm's drive is empty, and a start
        # after this one has the drive, empty
        cd = qmp(g["qmp"], "query-block")[0]
        assert cd["tray_open"] and "inserted" not in cd, cd
        k.kvz("stop", "e2e", "--force")
    finally:
        k.cleanup()
