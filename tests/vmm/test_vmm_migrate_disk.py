"""Live migration without shared storage between two kvz-vmm processes on
the host /dev/kvm (migrate "blk": true): the tiny diskwriter guest stamps
sectors of its virtio-blk disk without pause, the source's and the target's
disks are separate files, and after the switch the target's file equals the
source's at that moment (both paused: the source in postmigrate, the target
started with --paused) while holding stamps written during the migration;
the target's guest then goes on stamping its own disk. A cancelled copy
leaves the source running and writing. On shared storage (one file for
both) the target opens the image beside the running source and takes its
lock only at the load, once the source's save dropped it; a save and cont
drop and take it back, and a source whose target holds the lock stays
paused at cont (one error line) until the target lets it go. Skipped
without KVM."""

import fcntl
import os
import re
import sys
import time

import pytest

import vmmtest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "guests"))
from diskwriter_check import contiguous_top, disk_stamps  # noqa: E402
from test_vmm_migrate import Vmm, hand_socketpair, no_leftover_vms, statuses  # noqa: F401 (fixture)
from test_vmm_snapshot import migrate_to  # noqa: E402

pytestmark = pytest.mark.skipif(vmmtest.kvm_unavailable_reason() is not None,
                                reason=vmmtest.kvm_unavailable_reason() or "")

DISK = 32 << 20         # bytes: more than the stamped part (holes copied as markers)
STAMP = re.compile(r"w=([0-9a-f]{16})")


class DiskVm(Vmm):
    def __init__(self, tmp_path, disk, extra, name, more=()):
        self.disk = disk
        disks = [a for p in more for a in ("--disk", p)]
        super().__init__(tmp_path, ["--memory", "64M", "--cpus", "1", "--disk", disk] + disks + extra,
                         name=name)

    def stamps(self):
        with self.lock:
            return [int(x, 16) for x in STAMP.findall("\n".join(self.lines))]

    def wait_stamp(self, n, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.stamps()
            if s and s[-1] >= n:
                return s[-1]
            if self.proc.poll() is not None:
                raise AssertionError(f"kvz-vmm ended: {self.proc.stderr.read().decode()}")
            time.sleep(0.02)
        raise AssertionError(f"stamps did not reach {n}: {self.lines[-5:]}")


@pytest.fixture(autouse=True)
def diskwriter(monkeypatch):
    monkeypatch.setattr(vmmtest, "guest", lambda name: os.path.join(vmmtest.GUESTS, "diskwriter.elf"))


def image(tmp_path, name):
    p = tmp_path / name
    with open(p, "wb") as f:
        f.truncate(DISK)
    return str(p)


def wait_status(vm, want, timeout=10):
    end = time.monotonic() + timeout
    while (st := vm.qmp.cmd("query-status")["return"]["status"]) != want:
        assert time.monotonic() < end, st
        time.sleep(0.02)


def copy_storage_move(src, dst):
    """Migrates src into dst with its disks and waits for both ends; the
    source's query-migrate at completion."""
    hand_socketpair(src, dst)
    assert src.qmp.cmd("migrate", uri="fd:mig", blk=True) == {"return": {}}
    seen = statuses(src, timeout=120)
    q = src.qmp.cmd("query-migrate")["return"]
    assert seen[-1] == "completed", (seen, q)
    statuses(dst, timeout=60)
    return q


def test_copy_storage_disk_matches_at_the_switch(tmp_path):
    src_disk, dst_disk = image(tmp_path, "src.img"), image(tmp_path, "dst.img")
    with open(dst_disk, "r+b") as f:      # stale data the copy must replace
        f.seek(DISK - 4096)
        f.write(b"\xee" * 4096)
    src = DiskVm(tmp_path, src_disk, [], "src")
    dst = DiskVm(tmp_path, dst_disk, ["--incoming", "defer", "--paused"], "dst")
    before = src.wait_stamp(2048)
    q = copy_storage_move(src, dst)
    assert q["disk"]["total"] == DISK and q["disk"]["remaining"] == 0, q
    assert q["disk"]["transferred"] >= DISK, q
    # Holes and the unstamped part travel as markers: far less than the disk.
    assert q["ram"]["transferred"] < DISK // 2, q
    assert src.qmp.cmd("query-status")["return"]["status"] == "postmigrate"
    wait_status(dst, "paused")   # --paused: after the load, the machine starts paused
    with open(src_disk, "rb") as a, open(dst_disk, "rb") as b:
        assert a.read() == b.read(), "the target's disk differs from the source's at the switch"
    top = contiguous_top(disk_stamps(dst_disk))
    assert top > before, "no stamp written during the migration"
    src.quit()
    # The target's guest goes on where the source stopped, on its own disk.
    assert dst.qmp.cmd("cont") == {"return": {}}
    dst.wait_stamp(top + 3 * 1024)
    assert dst.qmp.cmd("stop") == {"return": {}}
    assert contiguous_top(disk_stamps(dst_disk)) > top
    assert contiguous_top(disk_stamps(src_disk)) == top, "the source wrote after the switch"
    dst.quit()


def test_copy_storage_cancelled_source_runs_on(tmp_path):
    src_disk, dst_disk = image(tmp_path, "src.img"), image(tmp_path, "dst.img")
    src = DiskVm(tmp_path, src_disk, [], "src")
    dst = DiskVm(tmp_path, dst_disk, ["--incoming", "defer", "--paused"], "dst")
    src.wait_stamp(1024)
    assert src.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 200000}) == {"return": {}}
    hand_socketpair(src, dst)
    assert src.qmp.cmd("migrate", uri="fd:mig", blk=True) == {"return": {}}
    assert statuses(src, until=("active",))[-1] == "active"
    time.sleep(0.5)
    assert src.qmp.cmd("migrate_cancel") == {"return": {}}
    assert statuses(src)[-1] == "cancelled"
    assert src.qmp.cmd("query-status")["return"]["status"] == "running"
    n = src.stamps()[-1]
    src.wait_stamp(n + 2048)
    assert dst.proc.wait(timeout=20) != 0
    src.qmp.cmd("stop")
    contiguous_top(disk_stamps(src_disk))
    src.quit()


def test_copy_storage_refusals(tmp_path):
    # No writable disk to copy: the job fails with one line, the VM runs on.
    src = Vmm(tmp_path, ["--memory", "64M", "--cpus", "1"], name="nodisk")
    dst = Vmm(tmp_path, ["--memory", "64M", "--cpus", "1", "--incoming", "defer"], name="nodst")
    hand_socketpair(src, dst)
    assert src.qmp.cmd("migrate", uri="fd:mig", blk=True) == {"return": {}}
    assert statuses(src)[-1] == "failed"
    q = src.qmp.cmd("query-migrate")["return"]
    assert "no writable disk" in q["error-desc"], q
    assert src.qmp.cmd("query-status")["return"]["status"] == "running"
    assert "GenericError" in str(src.qmp.cmd("migrate", uri="fd:mig", blk="yes"))
    src.quit()
    dst.proc.kill()
    dst.proc.wait(timeout=10)


def test_disk_size_mismatch_refused_by_target(tmp_path):
    src_disk = image(tmp_path, "src.img")
    small = tmp_path / "small.img"
    with open(small, "wb") as f:
        f.truncate(DISK // 2)
    src = DiskVm(tmp_path, src_disk, [], "src")
    dst = DiskVm(tmp_path, str(small), ["--incoming", "defer", "--paused"], "dst")
    src.wait_stamp(1024)
    hand_socketpair(src, dst)
    assert src.qmp.cmd("migrate", uri="fd:mig", blk=True) == {"return": {}}
    assert dst.proc.wait(timeout=30) != 0
    err = dst.proc.stderr.read().decode(errors="replace").strip().splitlines()
    assert err and "disk 0: the source's is" in err[-1], err
    assert not any("Sanitizer" in l or "runtime error" in l for l in err), err
    assert statuses(src)[-1] == "failed"
    assert src.qmp.cmd("query-status")["return"]["status"] == "running"
    src.wait_stamp(src.stamps()[-1] + 1024)
    src.quit()


def lock_free(path):
    """Whether another process could lock the image now (flock, as kvz-vmm)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def move_on_shared_disk(tmp_path, src, disk):
    """A live migration of src to a target on the same image file: the
    target (returned) has loaded it and waits paused (--paused)."""
    dst = DiskVm(tmp_path, disk, ["--incoming", "defer", "--paused"], "dst")
    hand_socketpair(src, dst)
    assert src.qmp.cmd("migrate", uri="fd:mig") == {"return": {}}
    assert statuses(src, timeout=120)[-1] == "completed"
    statuses(dst, timeout=60)
    wait_status(dst, "paused")
    return dst


def test_shared_storage_lock_moves_with_the_guest(tmp_path):
    disk = image(tmp_path, "shared.img")
    src = DiskVm(tmp_path, disk, [], "src")
    before = src.wait_stamp(2048)
    assert not lock_free(disk)
    # A second writer is still refused...
    r = vmmtest.start(["--kernel", vmmtest.guest("diskwriter"), "--memory", "64M", "--disk", disk])
    assert r.wait(timeout=20) != 0
    assert "in use by another process" in r.stderr.read().decode(errors="replace")
    # ...but an incoming target opens it beside the running source.
    dst = move_on_shared_disk(tmp_path, src, disk)
    # The source let the lock go with its save, the target holds it now.
    assert not lock_free(disk)
    src.quit()
    assert not lock_free(disk), "the target does not hold the image's lock"
    top = contiguous_top(disk_stamps(disk))
    assert top > before
    assert dst.qmp.cmd("cont") == {"return": {}}
    dst.wait_stamp(top + 2048)
    # A save (stop, migrate to a file) drops the lock, cont takes it back.
    assert dst.qmp.cmd("stop") == {"return": {}}
    migrate_to(dst, str(tmp_path / "snap"))
    assert lock_free(disk)
    assert dst.qmp.cmd("cont") == {"return": {}}
    assert not lock_free(disk)
    assert contiguous_top(disk_stamps(disk)) >= top
    dst.quit()


def test_copy_storage_two_disks(tmp_path):
    """Every writable disk rides along: disk 0 (the guest stamping it) and
    disk 1 (data of its own, untouched by the guest) both equal the
    source's on the target at the switch."""
    src_disks = [image(tmp_path, "s0.img"), image(tmp_path, "s1.img")]
    dst_disks = [image(tmp_path, "d0.img"), image(tmp_path, "d1.img")]
    with open(src_disks[1], "r+b") as f:
        f.write(os.urandom(1 << 20))
        f.seek(DISK - 4096)
        f.write(b"\x5a" * 4096)
    with open(dst_disks[1], "r+b") as f:    # stale data the copy must replace
        f.write(b"\xee" * 8192)
    src = DiskVm(tmp_path, src_disks[0], [], "src", more=src_disks[1:])
    dst = DiskVm(tmp_path, dst_disks[0], ["--incoming", "defer", "--paused"], "dst",
                 more=dst_disks[1:])
    before = src.wait_stamp(1024)
    q = copy_storage_move(src, dst)
    assert q["disk"]["total"] == 2 * DISK and q["disk"]["remaining"] == 0, q
    wait_status(dst, "paused")
    for a, b in zip(src_disks, dst_disks):
        with open(a, "rb") as x, open(b, "rb") as y:
            assert x.read() == y.read(), "the target's %s differs from the source's" % b
    assert contiguous_top(disk_stamps(dst_disks[0])) > before
    src.quit()
    dst.quit()


def test_shared_storage_two_disks_locks_move(tmp_path):
    """On shared storage the target opens both images beside the running
    source and takes both locks at the load, once the source let them go."""
    disks = [image(tmp_path, "a.img"), image(tmp_path, "b.img")]
    src = DiskVm(tmp_path, disks[0], [], "src", more=disks[1:])
    src.wait_stamp(1024)
    assert not any(lock_free(p) for p in disks)
    dst = DiskVm(tmp_path, disks[0], ["--incoming", "defer", "--paused"], "dst", more=disks[1:])
    hand_socketpair(src, dst)
    assert src.qmp.cmd("migrate", uri="fd:mig") == {"return": {}}
    assert statuses(src, timeout=120)[-1] == "completed"
    statuses(dst, timeout=60)
    wait_status(dst, "paused")
    src.quit()
    assert not any(lock_free(p) for p in disks), "the target does not hold every image's lock"
    dst.quit()
    assert all(lock_free(p) for p in disks)


def test_source_stays_paused_while_target_holds_the_disk(tmp_path):
    """kvzd's take-back after a hand-over it believes failed (migrate_cancel,
    cont) while the target on shared storage already took the image: the
    source must not run beside it (two writers corrupt the disk) but stay
    paused, with one error line, as QEMU's cont that cannot take its image
    locks back; once the target is gone, cont runs it again."""
    disk = image(tmp_path, "shared.img")
    src = DiskVm(tmp_path, disk, [], "src")
    src.wait_stamp(2048)
    dst = move_on_shared_disk(tmp_path, src, disk)
    assert dst.qmp.cmd("cont") == {"return": {}}   # the target runs and writes
    src.qmp.cmd("migrate_cancel")
    for _ in range(2):   # refused again while the target runs
        r = src.qmp.cmd("cont")
        assert r.get("error", {}).get("class") == "GenericError", r
        desc = r["error"]["desc"]
        assert "disk 0: in use by another process" in desc and "stays paused" in desc, desc
        assert src.qmp.cmd("query-status")["return"]["status"] == "postmigrate"
    seen = len(src.stamps())
    assert dst.qmp.cmd("query-status")["return"]["status"] == "running"
    # (the target goes on from the source's count; reading the disk here
    # would race with the target's writes)
    dst.wait_stamp(src.stamps()[-1] + 2048)
    time.sleep(0.5)
    assert len(src.stamps()) == seen, "the source wrote beside the target"
    dst.quit()
    # The lock is free: the source may run again.
    assert src.qmp.cmd("cont") == {"return": {}}
    assert src.qmp.cmd("query-status")["return"]["status"] == "running"
    src.wait_stamp(src.stamps()[-1] + 256)
    err = [l for l in src.quit().splitlines() if "stays paused" in l]
    assert len(err) == 2 and "cont: disk 0: in use by another process" in err[0], err


def test_cont_at_once_after_the_stream_runs_the_devices(tmp_path):
    """A cont that comes as soon as the target reports the stream complete
    (kvzd's hand-over does that) raced kvz-vmm's start of the vCPUs for
    --paused: the devices were resumed, then paused by the start, and the
    guest ran on beside a paused disk (query-status "running", no write
    served). Seen in about 1 in 6 moves on a loaded host; repeated here."""
    for i in range(8):
        run = tmp_path / str(i)     # fresh QMP socket paths each time
        run.mkdir()
        disk = image(run, "shared.img")
        src = DiskVm(run, disk, [], "src")
        src.wait_stamp(1024)
        dst = move_on_shared_disk(run, src, disk)
        assert dst.qmp.cmd("cont") == {"return": {}}
        dst.wait_stamp(src.stamps()[-1] + 2048)
        dst.quit()
        src.quit()
