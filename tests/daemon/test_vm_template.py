"""VMs with a system of their own through kvzd (issue 14 §1, §3): created
from the debian template or by importing a raw disk, as a vm-create job,
then started with the kernel kvzd takes out of the disk. kvz-vmm is the
stand-in supervisor (it records its command line); the template's disk is
made by the real kvz-ct vm-image. Attack tests: credentials never stored
or shown, imports confined to --images-dir, failures and cancels leave
nothing, hostile values refused."""
import json
import re
import os
import shutil
import signal
import subprocess
import time

import pytest

from kvzd_harness import BUILD, fake_kvzd

KVZ_CT = os.path.join(BUILD, "src", "ct", "kvz-ct")
FS = "?offset=1048576"
CACHE = os.environ.get("KVZ_CT_CACHE", "/var/lib/kvz/cache")

need_e2fs = pytest.mark.skipif(not shutil.which("debugfs") or not shutil.which("mkfs.ext4"),
                               reason="e2fsprogs (mkfs.ext4, debugfs) missing")


def template_missing():
    if os.geteuid() != 0:
        return "needs root (the template's VM layer is built in a chroot)"
    if not shutil.which("ssh-keygen"):
        return "ssh-keygen missing (openssh-client)"
    if os.path.exists(os.path.join(CACHE, "debian-vm.img")):
        return None
    # Build the layer once here, so that the timed create below finds it.
    r = subprocess.run([KVZ_CT, "vm-image", "--out", "/tmp/kvz-warmup.img", "--size", "2G",
                        "--hostname", "warm"], capture_output=True, text=True, timeout=1200)
    if os.path.exists("/tmp/kvz-warmup.img"):
        os.unlink("/tmp/kvz-warmup.img")
    return None if r.returncode == 0 else "the debian VM layer cannot be built here: " + \
        r.stderr.strip()


@pytest.fixture
def d():
    k = fake_kvzd()
    if k is None:
        pytest.skip("the stand-in supervisor is not built")
    k.ct = KVZ_CT
    k.start()
    yield k
    k.cleanup()


def state_leftovers(k, name):
    found = []
    for sub in ("images", "secrets", "boot"):
        p = os.path.join(k.state, sub)
        if os.path.isdir(p):
            found += [os.path.join(sub, n) for n in os.listdir(p) if n.startswith(name)]
    return found


def job_of(k, name):
    jobs = k.kvz_json("job", "list", "--guest", name)
    return jobs[-1] if jobs else None


def argv_of(k, name):
    with open("/proc/%d/cmdline" % k.guest(name)["pid"]) as f:
        return f.read().split("\0")


def debugfs_cat(img, path):
    return subprocess.run(["debugfs", "-R", f"cat {path}", img + FS], capture_output=True,
                          text=True).stdout


@need_e2fs
def test_template_vm_created_and_booted_from_its_disk(d, tmp_path):
    why = template_missing()
    if why:
        pytest.skip(why)
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKvzTestKeyForKvzTemplateVmOnly00000 t@h\n")
    pw = tmp_path / "pw"
    pw.write_text("hunter2-kvz\n")
    layer = os.stat(os.path.join(CACHE, "debian-vm.img"))
    t0 = time.monotonic()
    r = d.kvz("create", "vm", "web", "--template", "debian", "--disk", "3G", "--ssh-key",
              str(key), "--root-password-file", str(pw), "--ip", "10.10.0.50/24", "--gw",
              "10.10.0.1", "--memory", "512M")
    took = time.monotonic() - t0
    # The cached layer is used as it is, not built again. The time is only
    # printed: issue 14's goal (under 10 s) is measured by
    # bench/template_boot_lab.sh on a quiet machine; asserted here it failed
    # whenever make check's lab lane ran beside it (17 s).
    print(f"template VM creation with a cached template: {took:.2f} s")
    after = os.stat(os.path.join(CACHE, "debian-vm.img"))
    assert (after.st_ino, after.st_mtime_ns) == (layer.st_ino, layer.st_mtime_ns), \
        "the cached debian VM layer was rebuilt"
    assert "web created (stopped)" in r.stdout
    g = d.guest("web")
    cfg = g["config"]
    assert cfg["boot"] == "direct" and cfg["template"] == "debian"
    img = cfg["disk_path"]
    assert os.path.getsize(img) == 3 << 30
    # The file system fills its partition, which fills the disk.
    sb = subprocess.run(["dumpe2fs", "-h", img + FS], capture_output=True, text=True).stdout
    blocks = int(re.search(r"Block count:\s+(\d+)", sb).group(1))
    bsize = int(re.search(r"Block size:\s+(\d+)", sb).group(1))
    assert blocks * bsize == (3 << 30) - (1 << 20)
    # The disk holds what was asked for.
    assert debugfs_cat(img, "/etc/hostname") == "web\n"
    assert "address 10.10.0.50/24" in debugfs_cat(img, "/etc/network/interfaces")
    assert debugfs_cat(img, "/root/.ssh/authorized_keys").strip() == key.read_text().strip()
    assert debugfs_cat(img, "/etc/shadow").startswith("root:$y$")
    # Credentials are in no record, answer, job or file of kvzd's.
    everything = json.dumps(g) + json.dumps(d.kvz_json("job", "list")) + \
        json.dumps(d.events("web"))
    assert "hunter2" not in everything and "AAAAC3Nza" not in everything
    assert sorted(state_leftovers(d, "web")) == ["boot/web", "images/web.img"]
    job = job_of(d, "web")
    assert job["type"] == "vm-create" and job["state"] == "completed"
    # Started with the kernel and initrd taken out of the disk.
    d.kvz("start", "web")
    argv = argv_of(d, "web")
    kernel = argv[argv.index("--kernel") + 1]
    assert kernel == os.path.join(d.state, "boot", "web", "vmlinuz")
    assert argv[argv.index("--cmdline") + 1] == "console=ttyS0 root=/dev/vda1 ro net.ifnames=0"
    assert argv[argv.index("--net") + 1].startswith("tap=kvzweb,bridge=kvzbr0")
    assert "--rng" in argv
    ver = [n for n in subprocess.run(["debugfs", "-R", "ls /boot", img + FS],
                                     capture_output=True, text=True).stdout.split()
           if n.startswith("vmlinuz-")][-1]
    inside = subprocess.run(["debugfs", "-R", f"cat /boot/{ver}", img + FS],
                            capture_output=True).stdout
    with open(kernel, "rb") as f:
        assert f.read() == inside
    d.kvz("destroy", "web", "--force")
    assert state_leftovers(d, "web") == []


@need_e2fs
def test_template_vm_boots_by_firmware(d, tmp_path):
    """--boot firmware: the same template disk, with GRUB for BIOS in it
    (kvz-ct vm-image, vm_grub.c), started as kvz-vmm --firmware bios with no
    kernel of kvzd's; `kvz set --boot direct` then boots the disk's kernel
    directly, and back. The lab boots it for real (lab_template_vm)."""
    why = template_missing()
    if why:
        pytest.skip(why)
    d.kvz("create", "vm", "fw", "--template", "debian", "--disk", "2G", "--boot", "firmware")
    cfg = d.guest("fw")["config"]
    assert cfg["boot"] == "firmware"
    img = cfg["disk_path"]
    with open(img, "rb") as f:
        mbr = f.read(512)
    with open("/usr/lib/grub/i386-pc/boot.img", "rb") as f:
        assert mbr[:440] == f.read(440)
    assert mbr[510:] == b"\x55\xaa"
    assert "linux /vmlinuz console=ttyS0 root=/dev/vda1 ro net.ifnames=0" in \
        debugfs_cat(img, "/boot/grub/grub.cfg")
    # nothing taken out of the disk for a firmware boot
    assert sorted(state_leftovers(d, "fw")) == ["images/fw.img"]
    d.kvz("start", "fw")
    argv = argv_of(d, "fw")
    assert argv[argv.index("--firmware") + 1] == "bios"
    assert "--kernel" not in argv and "--cmdline" not in argv
    assert argv[argv.index("--disk") + 1].startswith(img)
    d.kvz("stop", "fw")
    d.kvz("destroy", "fw", "--force")
    assert state_leftovers(d, "fw") == []


@need_e2fs
def test_cancelled_create_leaves_nothing(d, tmp_path):
    """Cancel while the template's disk is being made (with an empty cache the
    template itself is being built, which takes long; without the archive it
    fails): no guest, no disk, no credentials left, either way."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d.terminate()
    empty = tmp_path / "cache"
    empty.mkdir()
    os.environ["KVZ_CT_CACHE"] = str(empty)
    try:
        d.start()
    finally:
        del os.environ["KVZ_CT_CACHE"]
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    st, job = d.api("POST", "/v1/guests", {"type": "vm", "name": "slow", "template": "debian",
                                           "root_password": "pw", "disk": "2G"})
    assert st == 202 and job["type"] == "vm-create"
    time.sleep(1.5)
    # Listed as being created while the job runs (a start would wait for it).
    states = [g["state"] for g in d.kvz_json("list")]
    assert states in ([], ["creating"]), states
    d.kvz("job", "cancel", str(job["id"]), check=False)
    end = d.wait_for(lambda: (lambda j: j if j["state"] not in ("queued", "running") else None)(
        d.kvz_json("job", "show", str(job["id"]))), timeout=60, what="the job to end")
    assert end["state"] in ("cancelled", "failed")
    assert d.kvz_json("list") == []
    assert state_leftovers(d, "slow") == []
    # No helper left running for it.
    out = subprocess.run(["pgrep", "-f", f"--out {d.state}"], capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_hostile_template_requests_refused(d, tmp_path):
    bad = [
        ({"hostname": "a;reboot"}, "hostname"),
        ({"hostname": "x" * 80}, "hostname"),
        ({"ip": "10.0.0.1"}, "A.B.C.D/P"),
        ({"ip": "10.0.0.1/24 up"}, "A.B.C.D/P"),
        ({"ip": "10.0.0.1/24", "gw": "10.0.0.1; rm"}, "gw"),
        ({"gw": "10.0.0.1"}, "gw"),
        ({"root_password": "a\nb"}, "one line"),
        ({"ssh_key": "k" * 20000}, "16 KiB"),
        ({"kernel": d.kernel}, "no kernel"),
        ({"boot": "pxe"}, "boot must be"),
        ({"template": "gentoo"}, "unknown VM template"),
        ({"import": "/etc/shadow"}, "exclude"),
        # The job makes a sparse raw disk: a format or allocation would be
        # ignored, or (qcow2) make the VM read its raw disk as qcow2.
        ({"disk_format": "qcow2"}, "disk_format applies to a VM with a kernel"),
        ({"disk_mode": "fixed"}, "disk_mode applies to a VM with a kernel"),
        ({"disk_base": d.kernel}, "disk_base applies to a VM with a kernel"),
    ]
    for extra, msg in bad:
        body = {"type": "vm", "name": "h", "template": "debian", **extra}
        if extra.get("template") == "gentoo":
            body["template"] = "gentoo"
        st, r = d.api("POST", "/v1/guests", body)
        assert st == 400 and msg in r["error"]["message"], (extra, st, r)
    assert d.kvz_json("list") == []
    # A password file that is empty: the CLI says so and sends nothing.
    empty = tmp_path / "empty"
    empty.write_text("")
    r = d.kvz("create", "vm", "h", "--template", "debian", "--root-password-file", str(empty),
              check=False)
    assert r.returncode == 1 and "empty" in r.stderr


def make_disk(tmp_path, files, name="import.img"):
    tree = tmp_path / (name + ".tree")
    for rel, data in files.items():
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    img = tmp_path / name
    with open(img, "wb") as f:
        f.truncate(33 << 20)
        m = bytearray(512)
        m[446:462] = bytes([0x80, 0xfe, 0xff, 0xff, 0x83, 0xfe, 0xff, 0xff]) + \
            (2048).to_bytes(4, "little") + (32 * 2048).to_bytes(4, "little")
        m[510:512] = b"\x55\xaa"
        f.write(m)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), "-E", "offset=1048576", str(img),
                    "32M"], check=True)
    return img


@need_e2fs
def test_import_copies_and_boots_direct(d, tmp_path):
    imgdir = d.images_dirs[0]
    src = make_disk(tmp_path, {"boot/vmlinuz-6.1.0-9-amd64": b"KERNEL" * 50,
                               "boot/initrd.img-6.1.0-9-amd64": b"INITRD", "etc/hostname": b"old\n"})
    inside = os.path.join(imgdir, "old.img")
    shutil.copy(src, inside)
    before = open(inside, "rb").read()
    r = d.kvz("create", "vm", "old", "--import", inside)
    assert "old created (stopped)" in r.stdout
    cfg = d.guest("old")["config"]
    assert cfg["disk_path"] == os.path.join(d.state, "images", "old.img")
    assert cfg["disk_size"] == os.path.getsize(inside)
    assert cfg["boot"] == "direct"
    d.kvz("start", "old")
    argv = argv_of(d, "old")
    with open(argv[argv.index("--kernel") + 1], "rb") as f:
        assert f.read() == b"KERNEL" * 50
    assert argv[argv.index("--disk") + 1] == cfg["disk_path"]
    d.kvz("stop", "old")
    assert open(inside, "rb").read() == before   # copied, the original stays the user's
    # boot firmware: the hook the firmware work fills (kvz-vmm --firmware bios).
    shutil.copy(src, os.path.join(imgdir, "fw.img"))
    d.kvz("create", "vm", "fw", "--import", os.path.join(imgdir, "fw.img"), "--boot", "firmware")
    d.kvz("start", "fw")
    argv = argv_of(d, "fw")
    assert argv[argv.index("--firmware") + 1] == "bios" and "--kernel" not in argv


@need_e2fs
def test_import_attacks(d, tmp_path):
    imgdir = d.images_dirs[0]
    # Outside the image directories: the same answer whether it exists or not.
    for p in ("/etc/shadow", "/nonexistent.img", imgdir + "/../../../etc/passwd"):
        st, r = d.api("POST", "/v1/guests", {"type": "vm", "name": "x", "import": p})
        assert st == 400 and "not a readable file in the image directories" in r["error"]["message"], r
    big = os.path.join(imgdir, "big.img")
    with open(big, "wb") as f:
        f.truncate(2 << 20)
    for extra in ({"disk_format": "qcow2"}, {"disk_mode": "fixed"}):
        st, r = d.api("POST", "/v1/guests", {"type": "vm", "name": "x", "import": big, **extra})
        assert st == 400 and "applies to a VM with a kernel" in r["error"]["message"], r
    link = os.path.join(imgdir, "link.img")
    os.symlink("/etc/passwd", link)
    st, r = d.api("POST", "/v1/guests", {"type": "vm", "name": "x", "import": link})
    assert st == 400
    # A disk with no kernel kvzd can boot directly: the create fails whole.
    nokernel = make_disk(tmp_path, {"etc/hostname": b"x\n"}, "nokernel.img")
    shutil.copy(nokernel, os.path.join(imgdir, "nokernel.img"))
    r = d.kvz("create", "vm", "nok", "--import", os.path.join(imgdir, "nokernel.img"),
              check=False)
    assert r.returncode != 0
    assert "no /boot/vmlinuz" in r.stdout + r.stderr
    assert d.kvz_json("list") == []
    assert state_leftovers(d, "nok") == []
    # A guest that swapped its kernel for a link to a host file after the
    # create: the next start refuses, reading nothing of the host.
    evil = make_disk(tmp_path, {"boot/vmlinuz-1": b"K", "boot/initrd.img-1": b"I"}, "evil.img")
    shutil.copy(evil, os.path.join(imgdir, "evil.img"))
    d.kvz("create", "vm", "evil", "--import", os.path.join(imgdir, "evil.img"))
    disk = d.guest("evil")["config"]["disk_path"]
    subprocess.run(["debugfs", "-w", "-R", "rm /boot/vmlinuz-1", disk + FS], check=True,
                   capture_output=True)
    subprocess.run(["debugfs", "-w", "-R", "symlink /boot/vmlinuz-1 /etc/shadow", disk + FS],
                   check=True, capture_output=True)
    r = d.kvz("start", "evil", check=False)
    assert r.returncode == 1 and "cannot boot it directly" in r.stderr
    assert not os.path.exists(os.path.join(d.state, "boot", "evil", "vmlinuz.partial"))


@need_e2fs
def test_reboot_inside_comes_back(d, tmp_path):
    """kvz-vmm ends when its guest resets: a VM booting from its own disk is
    started again (with the kernel its disk has now); one booting a kernel of
    the user's stays stopped, as before."""
    imgdir = d.images_dirs[0]
    src = make_disk(tmp_path, {"boot/vmlinuz-1": b"K1", "boot/initrd.img-1": b"I1"})
    shutil.copy(src, os.path.join(imgdir, "r.img"))
    d.kvz("create", "vm", "r", "--import", os.path.join(imgdir, "r.img"))
    d.kvz("start", "r")
    pid = d.guest("r")["pid"]
    # The guest installs a newer kernel, then reboots.
    disk = d.guest("r")["config"]["disk_path"]
    for name, data in (("vmlinuz-2", b"K2"), ("initrd.img-2", b"I2")):
        local = tmp_path / name
        local.write_bytes(data)
        subprocess.run(["debugfs", "-w", "-R", f"write {local} /boot/{name}", disk + FS],
                       check=True, capture_output=True)
    os.kill(pid, signal.SIGHUP)
    g = d.wait_for(lambda: (lambda g: g if g["state"] == "running" and g["pid"] != pid else None)(
        d.guest("r")), timeout=30, what="the VM to come back after its reboot")
    assert any(e["type"] == "rebooted" for e in d.events("r"))
    argv = argv_of(d, "r")
    with open(argv[argv.index("--kernel") + 1], "rb") as f:
        assert f.read() == b"K2"
    d.kvz("create", "vm", "plain", "--kernel", d.kernel)
    d.kvz("start", "plain")
    os.kill(d.guest("plain")["pid"], signal.SIGHUP)
    d.wait_for(lambda: d.guest("plain")["state"] == "stopped", timeout=30, what="plain to stop")
    time.sleep(2)
    assert d.guest("plain")["state"] == "stopped"
