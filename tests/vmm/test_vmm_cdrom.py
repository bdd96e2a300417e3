"""The CD-ROM's medium changed while the VM runs (QMP eject and
blockdev-change-medium, QEMU's names) on the host /dev/kvm with a tiny
guest: the medium comes as a descriptor passed with getfd, is checked as an
ISO image, query-block follows, DEVICE_TRAY_MOVED is emitted on open and
close. Hostile requests (unknown device, a disk, non-ISO or directory
descriptors, missing fd names, plain paths under the seccomp filter, eject
loops) fail with one error and change nothing. A VM with a CD is saved and
restored, and live-migrated, the drive's state (ejected, changed) with it;
another medium is refused with one line."""

import json
import os

import pytest

import vmmtest
from test_vmm_snapshot import Vmm, migrate_to, one_error_line, restore, send_fd

pytestmark = pytest.mark.skipif(vmmtest.kvm_unavailable_reason() is not None,
                                reason=vmmtest.kvm_unavailable_reason() or "")

OPTS = ["--memory", "64M"]


def make_iso(path, blocks=20, signature=True):
    with open(path, "wb") as f:
        f.truncate(blocks * 2048)
        if signature:
            f.seek(16 * 2048)
            f.write(b"\x01CD001\x01")
    return str(path)


def pass_fd(vm, name, path, flags=os.O_RDONLY):
    fd = os.open(path, flags)
    try:
        assert send_fd(vm.qmp, name, fd) == {"return": {}}
    finally:
        os.close(fd)


def cdrom(vm):
    blocks = vm.qmp.cmd("query-block")["return"]
    assert len(blocks) == 1 and blocks[0]["device"] == "cdrom0", blocks
    return blocks[0]


def error(reply):
    assert "error" in reply, reply
    return reply["error"]


def tray_events(vm):
    out = [e["data"]["tray-open"] for e in vm.qmp.events if e["event"] == "DEVICE_TRAY_MOVED"]
    vm.qmp.events = [e for e in vm.qmp.events if e["event"] != "DEVICE_TRAY_MOVED"]
    return out


@pytest.fixture
def vm(tmp_path):
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    v = Vmm(tmp_path, OPTS + ["--cdrom", make_iso(tmp_path / "a.iso"), "--disk", str(disk)])
    v.wait_count(1)
    yield v
    v.quit()


def test_eject_and_change_live(tmp_path, vm):
    cd = cdrom(vm)
    assert cd["inserted"]["image"]["virtual-size"] == 20 * 2048
    assert not cd["tray_open"] and not cd["locked"] and cd["removable"]

    assert vm.qmp.cmd("eject", id="cdrom0") == {"return": {}}
    vm.qmp.wait_event("DEVICE_TRAY_MOVED")
    cd = cdrom(vm)
    assert cd["tray_open"] and "inserted" not in cd
    assert vm.qmp.cmd("eject", device="cdrom0") == {"return": {}}   # empty: no-op
    assert tray_events(vm) == []

    pass_fd(vm, "iso", make_iso(tmp_path / "b.iso", blocks=40))
    assert vm.qmp.cmd("blockdev-change-medium", id="cdrom0", filename="fd:iso") == {"return": {}}
    ev = vm.qmp.wait_event("DEVICE_TRAY_MOVED")
    assert ev["data"] == {"device": "cdrom0", "id": "cdrom0", "tray-open": False}
    cd = cdrom(vm)
    assert not cd["tray_open"] and cd["inserted"]["image"]["virtual-size"] == 40 * 2048
    # the name was taken by the change: a second use finds nothing
    e = error(vm.qmp.cmd("blockdev-change-medium", id="cdrom0", filename="fd:iso"))
    assert "not found" in e["desc"]

    # a change over a medium: tray opens, then closes
    pass_fd(vm, "iso2", make_iso(tmp_path / "c.iso", blocks=30))
    assert vm.qmp.cmd("blockdev-change-medium", device="cdrom0", filename="fd:iso2",
                      format="raw") == {"return": {}}
    vm.qmp.cmd("query-status")
    assert tray_events(vm) == [True, False]
    assert cdrom(vm)["inserted"]["image"]["virtual-size"] == 30 * 2048
    vm.wait_count(vm.counts()[-1] + 1)   # the guest kept running


def test_hostile_requests_change_nothing(tmp_path, vm):
    def unchanged():
        cd = cdrom(vm)
        assert not cd["tray_open"] and cd["inserted"]["image"]["virtual-size"] == 20 * 2048

    assert error(vm.qmp.cmd("eject", id="nope"))["class"] == "DeviceNotFound"
    assert "not removable" in error(vm.qmp.cmd("eject", id="vda"))["desc"]
    assert "not removable" in error(vm.qmp.cmd("blockdev-change-medium", id="vda",
                                              filename="fd:x"))["desc"]
    assert "'device' or 'id'" in error(vm.qmp.cmd("eject"))["desc"]
    assert "'device' or 'id'" in error(vm.qmp.cmd("eject", device="cdrom0", id="vda"))["desc"]
    assert "boolean" in error(vm.qmp.cmd("eject", id="cdrom0", force="yes"))["desc"]
    assert "filename" in error(vm.qmp.cmd("blockdev-change-medium", id="cdrom0"))["desc"]
    assert "raw" in error(vm.qmp.cmd("blockdev-change-medium", id="cdrom0", filename="fd:x",
                                     format="qcow2"))["desc"]
    assert "not found" in error(vm.qmp.cmd("blockdev-change-medium", id="cdrom0",
                                           filename="fd:missing"))["desc"]
    r = vm.qmp.cmd("blockdev-change-medium", id="cdrom0", filename=str(tmp_path / "a.iso"))
    if "error" in r:
        assert "seccomp" in r["error"]["desc"] and "getfd" in r["error"]["desc"]
    else:   # a sanitizer build runs without the filter: the path is opened
        vm.qmp.cmd("query-status")
        assert tray_events(vm) == [True, False]
    unchanged()

    pass_fd(vm, "notiso", make_iso(tmp_path / "n.iso", signature=False))
    e = error(vm.qmp.cmd("blockdev-change-medium", id="cdrom0", filename="fd:notiso"))
    assert "no CD001 at byte 32769" in e["desc"]
    pass_fd(vm, "dir", str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    assert "not a regular file" in error(vm.qmp.cmd("blockdev-change-medium", id="cdrom0",
                                                    filename="fd:dir"))["desc"]
    pass_fd(vm, "tiny", make_iso(tmp_path / "t.iso", blocks=3, signature=False))
    assert "too small" in error(vm.qmp.cmd("blockdev-change-medium", id="cdrom0",
                                           filename="fd:tiny"))["desc"]
    assert tray_events(vm) == []
    unchanged()

    # eject loops: every round ejects and inserts, descriptors do not pile up
    iso = make_iso(tmp_path / "l.iso", blocks=25)
    fds_before = len(os.listdir(f"/proc/{vm.proc.pid}/fd"))
    for _ in range(30):
        assert vm.qmp.cmd("eject", id="cdrom0", force=True) == {"return": {}}
        pass_fd(vm, "loop", iso)
        assert vm.qmp.cmd("blockdev-change-medium", id="cdrom0", filename="fd:loop") == {"return": {}}
    assert len(os.listdir(f"/proc/{vm.proc.pid}/fd")) == fds_before
    vm.qmp.cmd("query-status")
    assert tray_events(vm) == [True, False] * 30
    assert cdrom(vm)["inserted"]["image"]["virtual-size"] == 25 * 2048


def test_paths_without_seccomp(tmp_path):
    """Without the seccomp filter kvz-vmm opens a path itself, with the
    same ISO check."""
    vm = Vmm(tmp_path, OPTS + ["--cdrom", "", "--seccomp=off"])
    vm.wait_count(1)
    assert cdrom(vm)["tray_open"]
    e = error(vm.qmp.cmd("blockdev-change-medium", id="cdrom0", filename=str(tmp_path / "none.iso")))
    assert "No such file" in e["desc"]
    e = error(vm.qmp.cmd("blockdev-change-medium", id="cdrom0",
                         filename=make_iso(tmp_path / "n.iso", signature=False)))
    assert "no CD001" in e["desc"]
    assert vm.qmp.cmd("blockdev-change-medium", id="cdrom0",
                      filename=make_iso(tmp_path / "a.iso", blocks=22)) == {"return": {}}
    assert cdrom(vm)["inserted"]["image"]["virtual-size"] == 22 * 2048
    vm.quit()


def test_snapshot_with_cdrom(tmp_path):
    iso = make_iso(tmp_path / "a.iso")
    vm = Vmm(tmp_path, OPTS + ["--cdrom", iso])
    vm.wait_count(2)
    snap = str(tmp_path / "snap")
    migrate_to(vm, snap)          # with the medium in
    assert vm.qmp.cmd("cont") == {"return": {}}
    assert vm.qmp.cmd("eject", id="cdrom0") == {"return": {}}
    empty_snap = str(tmp_path / "empty.snap")
    migrate_to(vm, empty_snap)    # ejected
    vm.quit()

    # the medium is re-supplied by the caller, as disks are
    r = Vmm(tmp_path, OPTS + ["--cdrom", iso, "--incoming", f"file:{snap}"], name="r1")
    r.wait_count(4)
    cd = cdrom(r)
    assert not cd["tray_open"] and cd["inserted"]["image"]["virtual-size"] == 20 * 2048
    r.quit()
    # ejected before the save: restored ejected, with or without a medium given
    for i, opt in enumerate([iso, ""]):
        r = Vmm(tmp_path, OPTS + ["--cdrom", opt, "--incoming", f"file:{empty_snap}"], name=f"e{i}")
        r.wait_count(4)
        cd = cdrom(r)
        assert cd["tray_open"] and "inserted" not in cd
        r.quit()
    # another medium (or none) where the saved drive had one: one line
    other = make_iso(tmp_path / "o.iso", blocks=33)
    line = one_error_line(restore(tmp_path, snap, OPTS + ["--cdrom", other], "o"))
    assert "supply the same ISO" in line, line
    line = one_error_line(restore(tmp_path, snap, OPTS + ["--cdrom", ""], "n"))
    assert "supply the same ISO" in line, line
    line = one_error_line(restore(tmp_path, snap, OPTS, "none"))
    assert "missing" in line or "unknown" in line, line


def test_live_migration_with_cdrom(tmp_path):
    """A VM whose CD was changed live migrates to a target started with
    that medium; the drive's state (the change, the lock-free tray) moves
    with it, and a target with another medium refuses with one line."""
    from test_vmm_migrate import hand_socketpair, statuses
    a = make_iso(tmp_path / "a.iso")
    b = make_iso(tmp_path / "b.iso", blocks=40)
    src = Vmm(tmp_path, OPTS + ["--cdrom", a], name="src")
    src.wait_count(2)
    pass_fd(src, "iso", b)
    assert src.qmp.cmd("blockdev-change-medium", id="cdrom0", filename="fd:iso") == {"return": {}}
    dst = Vmm(tmp_path, OPTS + ["--cdrom", b, "--incoming", "defer"], name="dst")
    hand_socketpair(src, dst)
    assert src.qmp.cmd("migrate", uri="fd:mig") == {"return": {}}
    assert statuses(src)[-1] == "completed"
    assert statuses(dst) == ["active", "completed"]
    last = src.counts()[-1]
    src.quit()
    dst.wait_count(last + 2)
    cd = cdrom(dst)
    assert not cd["tray_open"] and cd["inserted"]["image"]["virtual-size"] == 40 * 2048
    dst.quit()

    # the source's medium is 40 blocks; a target with the 20-block one ends
    src = Vmm(tmp_path, OPTS + ["--cdrom", b], name="src2")
    src.wait_count(1)
    dst = Vmm(tmp_path, OPTS + ["--cdrom", a, "--incoming", "defer"], name="dst2")
    hand_socketpair(src, dst)
    assert src.qmp.cmd("migrate", uri="fd:mig") == {"return": {}}
    assert dst.proc.wait(timeout=30) != 0
    err = dst.proc.stderr.read().decode()
    assert "supply the same ISO" in err, err
    # the stream itself went through: the source waits in postmigrate for
    # its owner (kvzd) to resume it, as after any target that failed late
    assert statuses(src)[-1] in ("completed", "failed")
    assert src.qmp.cmd("cont") == {"return": {}}
    n = src.counts()[-1]
    src.wait_count(n + 1)
    src.quit()
