"""Live migration without shared storage between two kvzd on this host,
with the real kvz-vmm and the diskwriter guest on host /dev/kvm: the guest
stamps sectors of its virtio-blk disk without pause (diskwriter.S), kvzd
made the disk in its image dir, so `kvz migrate` copies it live (the
target makes an empty disk of the same size and format at reservation).
After the switch the target's disk holds one unbroken run of stamps ending
past what the source had written before the migration: no write was lost
at the switch. A killed target kvz-vmm and a cancel leave the source
running and writing, and the target's disk file gone. Hostile reservations
cannot make the target remove a file. Where both kvzd's image dirs are one
directory (STATE/images a symlink to it, as one NFS export mounted on two
hosts) the disk kvzd made stays where it is ("disk shared": the source's
probe file is seen by the target) and the target's guest writes on in the
same file; a killed target leaves that file alone. A VM with a second
disk (written with a known pattern before the start: the guest stamps vda
only) moves with both, the second equal by checksum, and a cancel or a
killed target leaves both source disks as they were and no target file;
a mix (disk 0 on a path both hosts have, disk 1 kvzd's) is refused with
one line before anything starts, and moves with --copy-storage. Skips
without KVM."""
import fcntl
import hashlib
import json
import os
import re
import signal
import sqlite3
import sys
import time

import pytest

from kvzd_harness import BUILD
from test_migrate import (TOKEN_B, console_hex, fake_qmp, hosts, paired_hosts,  # noqa: F401
                          reservation, tcp_api, types, vm_log)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "guests"))
from diskwriter_check import contiguous_top, disk_stamps  # noqa: E402

DISKWRITER = os.path.join(BUILD, "tests/guests/diskwriter.elf")


@pytest.fixture(autouse=True)
def need_guest():
    if not os.path.exists(DISKWRITER):
        pytest.skip("the diskwriter test guest is not built")


def stamps(d, name):
    return console_hex(d, name, r"w=([0-9a-f]{16})")


def stamp_at_least(d, name, n, timeout=60):
    return d.wait_for(lambda: (lambda s: s and s[-1] >= n and s[-1])(stamps(d, name)),
                      timeout=timeout, what="the guest's stamps to reach %d" % n)


def start_writer(d, name, disk="32M", second=False):
    """The diskwriter guest; with second, a 4M disk 1 holding a known
    pattern (written before the start: the guest never touches vdb)."""
    extra = ["--disk", "4M"] if second else []
    d.kvz("create", "vm", name, "--kernel", DISKWRITER, "--memory", "64M", "--disk", disk, *extra)
    if second:
        with open(image1(d, name), "r+b") as f:
            f.seek(1 << 20)
            f.write(b"DISK-ONE:" + name.encode() * 4096)
    d.kvz("start", name)
    return stamp_at_least(d, name, 2048)


def image(d, name):
    return os.path.join(d.state, "images/%s.img" % name)


def image1(d, name):
    return os.path.join(d.state, "images/%s@1.img" % name)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_no_copy(d, name):
    assert d.api("GET", "/v1/guests/%s" % name)[0] == 404
    assert not os.path.exists(image(d, name))
    assert not os.path.exists(image1(d, name))


def assert_locked(path):
    """Some kvz-vmm holds the image's lock (flock, as kvz-vmm takes it)."""
    fd = os.open(path, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_live_copy_storage_disk_consistent_after_the_switch(hosts):
    a, b = hosts[0].d, hosts[1].d
    before = start_writer(a, "dw")
    r = a.kvz("migrate", "dw", "--to", "b", "--downtime", "50")
    last = r.stdout.strip().split("\n")[-1]
    assert re.match(r"migrated dw to b: total \d+ ms, downtime \d+ ms, sent \S+ \(\d+ bytes\), "
                    r"disk copied$", last), r.stdout
    check_no_copy(a, "dw")
    g = b.guest("dw")
    assert g["state"] == "running" and g["config"]["disk_path"] == image(b, "dw")
    assert "incoming_disk" not in g["config"] and "incoming_disks" not in g["config"]
    # Paused (its queues drained), the target's disk is one run of stamps
    # reaching past the source's last one before the migration.
    assert fake_qmp(g["qmp"], "stop") == {"return": {}}
    top = contiguous_top(disk_stamps(image(b, "dw")))
    assert top > before
    assert fake_qmp(g["qmp"], "cont") == {"return": {}}
    stamp_at_least(b, "dw", top + 2048)
    # And back: the copy goes the other way.
    r = b.kvz("migrate", "dw", "--to", "a", "--copy-storage")
    assert r.stdout.strip().endswith("disk copied"), r.stdout
    check_no_copy(b, "dw")
    g = a.guest("dw")
    assert fake_qmp(g["qmp"], "stop") == {"return": {}}
    assert contiguous_top(disk_stamps(image(a, "dw"))) > top


def slow_copy(a, name, second=False):
    """A live copy at 1 Mbit/s: the 4 MiB the guest stamped take ~30 s."""
    start_writer(a, name, second=second)
    job = json.loads(a.kvz("--json", "migrate", name, "--to", "b", "--bandwidth", "1",
                           "--detach").stdout)
    a.wait_for(lambda: "copying the disk" in a.kvz_json("job", "show", str(job["id"]))["phase"],
               timeout=60, what="the disk copy to start")
    return job


def source_writes_on(a, name):
    assert a.guest(name)["state"] == "running"
    stamp_at_least(a, name, stamps(a, name)[-1] + 2048)
    assert "migration-failed" in types(a, name)


def source_disks_kept(a, name, second, want1):
    """After a failed move the source's disks are as the guest left them:
    disk 0 one unbroken run of stamps (paused, its queues drained), disk 1
    (with second) what it held before the start."""
    if second:
        assert sha(image1(a, name)) == want1
    g = a.guest(name)
    assert fake_qmp(g["qmp"], "stop") == {"return": {}}
    contiguous_top(disk_stamps(image(a, name)))
    assert fake_qmp(g["qmp"], "cont") == {"return": {}}


@pytest.mark.parametrize("second", [False, True], ids=["one-disk", "two-disks"])
def test_live_copy_cancelled_source_runs_on_target_file_gone(hosts, second):
    a, b = hosts[0].d, hosts[1].d
    job = slow_copy(a, "dc", second)
    want1 = sha(image1(a, "dc")) if second else None
    assert os.path.exists(image(b, "dc")), "the target makes the disk at reservation"
    assert os.path.exists(image1(b, "dc")) == second, "and disk 1 beside it"
    a.kvz("job", "cancel", str(job["id"]))
    a.kvz("job", "wait", str(job["id"]), check=False)
    assert a.kvz_json("job", "show", str(job["id"]))["state"] == "cancelled"
    source_writes_on(a, "dc")
    source_disks_kept(a, "dc", second, want1)
    b.wait_for(lambda: b.api("GET", "/v1/guests/dc")[0] == 404, timeout=60, what="b to discard")
    check_no_copy(b, "dc")
    assert "migration-discarded" in types(b, "dc")


@pytest.mark.parametrize("second", [False, True], ids=["one-disk", "two-disks"])
def test_live_copy_target_vmm_killed_source_runs_on(hosts, second):
    a, b = hosts[0].d, hosts[1].d
    job = slow_copy(a, "dk", second)
    want1 = sha(image1(a, "dk")) if second else None
    pid = b.guest("dk")["pid"]
    os.kill(pid, 9)
    a.kvz("job", "wait", str(job["id"]), check=False)
    assert a.kvz_json("job", "show", str(job["id"]))["state"] == "failed"
    source_writes_on(a, "dk")
    source_disks_kept(a, "dk", second, want1)
    b.wait_for(lambda: b.api("GET", "/v1/guests/dk")[0] == 404, timeout=60, what="b to discard")
    check_no_copy(b, "dk")


def test_live_copy_two_disks_both_arrive(hosts):
    """Without shared storage both disks go live: on the target disk 0 is
    one unbroken run of stamps past the source's last before the move, disk
    1 equal by checksum to what was written before the start; the source
    keeps neither file; and back with --copy-storage."""
    a, b = hosts[0].d, hosts[1].d
    before = start_writer(a, "d2", second=True)
    want1 = sha(image1(a, "d2"))
    r = a.kvz("migrate", "d2", "--to", "b")
    assert r.stdout.strip().endswith("disk copied"), r.stdout
    check_no_copy(a, "d2")
    g = b.guest("d2")
    assert [x["path"] for x in g["config"]["disks"]] == [image(b, "d2"), image1(b, "d2")]
    assert "incoming_disks" not in g["config"]
    assert fake_qmp(g["qmp"], "stop") == {"return": {}}
    top = contiguous_top(disk_stamps(image(b, "d2")))
    assert top > before
    assert sha(image1(b, "d2")) == want1
    for p in (image(b, "d2"), image1(b, "d2")):
        assert_locked(p)
    assert fake_qmp(g["qmp"], "cont") == {"return": {}}
    stamp_at_least(b, "d2", top + 2048)
    r = b.kvz("migrate", "d2", "--to", "a", "--copy-storage")
    assert r.stdout.strip().endswith("disk copied"), r.stdout
    check_no_copy(b, "d2")
    assert sha(image1(a, "d2")) == want1
    stamp_at_least(a, "d2", stamps(a, "d2")[-1] + 2048)


def put_disk0_at(d, name, path):
    """kvzd stopped, the VM's disk 0 moved to path (outside its image dir:
    a volume both hosts mount, as a disk kvzd did not make), kvzd again."""
    os.rename(image(d, name), path)
    d.terminate()
    db = sqlite3.connect(os.path.join(d.state, "kvzd.db"))
    cfg = json.loads(db.execute("SELECT config FROM guests WHERE name = ?", (name,)).fetchone()[0])
    cfg["disk_path"] = cfg["disks"][0]["path"] = path
    db.execute("UPDATE guests SET config = ? WHERE name = ?", (json.dumps(cfg), name))
    db.commit()
    db.close()


def test_mix_of_shared_and_copied_disks_refused(hosts):
    """Disk 0 on a path the target has too (shared storage) and disk 1 in
    the source's own image dir (to be copied): refused at reservation with
    one line, nothing started (the guest runs on at the source, both its
    disks as they were, the target keeps no record and no file); with
    --copy-storage both are copied and the source's disk 0, not kvzd's,
    stays."""
    ha, hb = hosts
    a, b = ha.d, hb.d
    vol = os.path.join(a.dir, "vol0.img")
    a.kvz("create", "vm", "mx", "--kernel", DISKWRITER, "--memory", "64M",
          "--disk", "32M", "--disk", "4M")
    with open(image1(a, "mx"), "r+b") as f:
        f.write(b"MIXED" * 1000)
    want1 = sha(image1(a, "mx"))
    put_disk0_at(a, "mx", vol)
    ha.start()
    a.kvz("start", "mx")
    before = stamp_at_least(a, "mx", 2048)
    r = a.kvz("migrate", "mx", "--to", "b", check=False)
    assert r.returncode == 1 and "all shared or all copied" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert a.guest("mx")["state"] == "running"
    stamp_at_least(a, "mx", before + 2048)
    assert sha(image1(a, "mx")) == want1 and os.path.exists(vol)
    check_no_copy(b, "mx")
    assert "migrated-out" not in types(a, "mx")
    r = a.kvz("migrate", "mx", "--to", "b", "--copy-storage")
    assert r.stdout.strip().endswith("disk copied"), r.stdout
    check_no_copy(a, "mx")
    assert os.path.exists(vol), "disk 0 is not kvzd's: the source leaves it"
    g = b.guest("mx")
    assert [x["path"] for x in g["config"]["disks"]] == [image(b, "mx"), image1(b, "mx")]
    assert sha(image1(b, "mx")) == want1
    stamp_at_least(b, "mx", before + 4096)


def test_hostile_reservation_cannot_name_a_file_to_remove(hosts):
    """A peer's config naming incoming_disk or incoming_disks (the keys
    kvzd uses to remove half-copied disks) is ignored: the files survive
    the discard, and the disk b made for the copy is gone."""
    ha, hb = hosts
    victim = os.path.join(hb.d.dir, "victim")
    with open(victim, "w") as f:
        f.write("keep me")
    req = reservation("evil")
    req.update(live=True, disk="copy")
    req["config"].update(disk_path="/nonexistent/evil.img", disk_size=1 << 20,
                         incoming_disk=victim, incoming_disks=[victim])
    st, ans = tcp_api(hb, "POST", "/v1/migrations", req, TOKEN_B)
    assert st == 201 and ans["disk"] == "copy", (st, ans)
    assert os.path.getsize(image(hb.d, "evil")) == 1 << 20
    cfg = hb.d.guest("evil")["config"]
    assert cfg["incoming_disks"] == [image(hb.d, "evil")] and "incoming_disk" not in cfg, cfg
    assert tcp_api(hb, "DELETE", "/v1/migrations/evil", None, TOKEN_B)[0] == 200
    hb.d.wait_for(lambda: hb.d.api("GET", "/v1/guests/evil")[0] == 404, what="b to discard")
    assert open(victim).read() == "keep me"
    check_no_copy(hb.d, "evil")
    # A copy the target has no room for is refused at reservation.
    req = reservation("huge")
    req.update(live=True, disk="copy")
    req["config"].update(disk_path="/nonexistent/huge.img", disk_size=1 << 60)
    st, ans = tcp_api(hb, "POST", "/v1/migrations", req, TOKEN_B)
    assert st == 409, (st, ans)
    check_no_copy(hb.d, "huge")
    # Bad copy_storage values are refused before anything starts.
    a = ha.d
    a.kvz("create", "vm", "nd", "--kernel", DISKWRITER, "--memory", "64M")
    assert a.api("POST", "/v1/guests/nd/migrate", {"to": "b", "copy_storage": "yes"})[0] == 400
    st, ans = a.api("POST", "/v1/guests/nd/migrate", {"to": "b", "copy_storage": True})
    assert st == 400 and "no disk" in ans["error"]["message"], ans


@pytest.fixture
def shared_hosts(tmp_path):
    """Hosts a and b whose STATE/images are one directory (returned too)."""
    shared = str(tmp_path / "images")
    os.mkdir(shared)

    def link(h):
        os.makedirs(h.d.state)
        os.symlink(shared, os.path.join(h.d.state, "images"))
    pair = paired_hosts(link)
    yield next(pair) + (shared,)
    next(pair, None)


def test_shared_image_dir_disk_stays_and_guest_writes_on(shared_hosts):
    a, b, shared = shared_hosts[0].d, shared_hosts[1].d, shared_hosts[2]
    before = start_writer(a, "ds")
    r = a.kvz("migrate", "ds", "--to", "b")
    assert r.stdout.strip().endswith(", disk shared"), r.stdout
    g = b.guest("ds")
    assert g["state"] == "running" and g["config"]["disk_path"] == image(b, "ds")
    assert a.api("GET", "/v1/guests/ds")[0] == 404
    # One file, no probe left behind; the guest writes on in it.
    assert os.listdir(shared) == ["ds.img"]
    top = contiguous_top(disk_stamps(os.path.join(shared, "ds.img")))
    assert top > before
    stamp_at_least(b, "ds", top + 2048)
    assert fake_qmp(g["qmp"], "stop") == {"return": {}}
    assert contiguous_top(disk_stamps(os.path.join(shared, "ds.img"))) > top
    assert fake_qmp(g["qmp"], "cont") == {"return": {}}
    # And back.
    r = b.kvz("migrate", "ds", "--to", "a")
    assert r.stdout.strip().endswith(", disk shared"), r.stdout
    assert a.guest("ds")["config"]["disk_path"] == image(a, "ds")
    assert os.listdir(shared) == ["ds.img"]
    stamp_at_least(a, "ds", stamps(a, "ds")[-1] + 2048)


def test_shared_image_dir_every_disk_stays(shared_hosts):
    """A VM with two disks on the shared image dir: both stay where they
    are (the probe speaks for every disk in the dir), the target's record
    names both files there, each holds what it held (checksum), every
    disk's lock moves to the target's kvz-vmm; and back."""
    a, b, shared = shared_hosts[0].d, shared_hosts[1].d, shared_hosts[2]
    a.kvz("create", "vm", "sd", "--kernel", DISKWRITER, "--memory", "64M",
          "--disk", "32M", "--disk", "4M")
    extra = os.path.join(shared, "sd@1.img")
    with open(extra, "r+b") as f:
        f.write(b"SECOND-DISK" * 1000)
    with open(extra, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    a.kvz("start", "sd")
    before = stamp_at_least(a, "sd", 2048)
    r = a.kvz("migrate", "sd", "--to", "b")
    assert r.stdout.strip().endswith(", disk shared"), r.stdout
    g = b.guest("sd")
    assert [x["path"] for x in g["config"]["disks"]] == [image(b, "sd"),
                                                        os.path.join(b.state, "images/sd@1.img")]
    assert sorted(os.listdir(shared)) == ["sd.img", "sd@1.img"]
    with open(extra, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == want
    for p in (os.path.join(shared, "sd.img"), extra):
        assert_locked(p)
    stamp_at_least(b, "sd", before + 2048)
    r = b.kvz("migrate", "sd", "--to", "a")
    assert r.stdout.strip().endswith(", disk shared"), r.stdout
    assert sorted(os.listdir(shared)) == ["sd.img", "sd@1.img"]
    stamp_at_least(a, "sd", stamps(a, "sd")[-1] + 2048)


def test_settled_after_restart_shared_disks_kept(shared_hosts):
    """A source kvzd killed after recording the hand-over of a VM whose two
    disks stayed on the shared image dir: the restarted source sees the
    target run it and forgets its record, but not the files, which are the
    target's own (its record says they were not copied)."""
    ha, hb, shared = shared_hosts
    a, b = ha.d, hb.d
    a.kvz("create", "vm", "st", "--kernel", DISKWRITER, "--memory", "64M",
          "--disk", "32M", "--disk", "4M")
    db = sqlite3.connect(os.path.join(a.state, "kvzd.db"))
    row = db.execute("SELECT * FROM guests WHERE name = 'st'").fetchone()
    cols = [c[1] for c in db.execute("PRAGMA table_info(guests)")]
    db.close()
    a.kvz("start", "st")
    r = a.kvz("migrate", "st", "--to", "b")
    assert r.stdout.strip().endswith(", disk shared"), r.stdout
    # The hand-over as a killed source kvzd left it: the record "migrated".
    a.kill9()
    rec = dict(zip(cols, row))
    cfg = json.loads(rec["config"])
    cfg.update(migrating_to="b", migrating_copied=False)
    rec.update(state="migrated", config=json.dumps(cfg), pid=0, pid_start=0)
    db = sqlite3.connect(os.path.join(a.state, "kvzd.db"))
    db.execute("INSERT INTO guests (%s) VALUES (%s)" % (",".join(cols), ",".join("?" * len(cols))),
               [rec[c] for c in cols])
    db.commit()
    db.close()
    ha.start()
    assert a.api("GET", "/v1/guests/st")[0] == 404
    assert sorted(os.listdir(shared)) == ["st.img", "st@1.img"]
    assert b.guest("st")["state"] == "running"
    stamp_at_least(b, "st", stamps(b, "st")[-1] + 1024)


@pytest.mark.parametrize("second", [False, True], ids=["one-disk", "two-disks"])
def test_shared_image_dir_target_vmm_killed_disk_kept(shared_hosts, second):
    """The target's kvz-vmm stopped (SIGSTOP) during pre-copy: at 4 KiB/s
    the first pass's ~100 KiB hold the source for ~25 s, however loaded the
    host. Then the source's limit is lifted through its QMP socket: it
    sends the rest into the sockets' buffers, saves its devices (dropping
    the images' locks) and waits for the commit, which the stopped target
    cannot have earned; the target is killed then. The source takes the
    guest back, holding the locks again, and writes on; b keeps nothing,
    the files stay (a second disk as it was)."""
    a, b, shared = shared_hosts[0].d, shared_hosts[1].d, shared_hosts[2]
    start_writer(a, "dk", second=second)
    want1 = sha(image1(a, "dk")) if second else None
    st, job = a.api("POST", "/v1/guests/dk/migrate", {"to": "b", "max_bandwidth": 4096})
    assert st == 202, job
    phase = lambda: a.api("GET", "/v1/jobs/%d" % job["id"])[1]["phase"]  # noqa: E731
    a.wait_for(lambda: phase().startswith("pre-copy"), timeout=60, what="the pre-copy")
    pid = b.guest("dk")["pid"]
    os.kill(pid, signal.SIGSTOP)
    assert phase().startswith("pre-copy"), "the pre-copy ended before the target was stopped"
    reply = fake_qmp(os.path.join(a.run, "vm/dk.qmp"), "migrate-set-parameters",
                     {"max-bandwidth": 0})
    assert "return" in reply, reply
    a.wait_for(lambda: phase() == "committing", timeout=60,
               what="the source to end its stream and ask for the commit")
    os.kill(pid, signal.SIGKILL)
    a.kvz("job", "wait", str(job["id"]), check=False)
    assert a.kvz_json("job", "show", str(job["id"]))["state"] == "failed"
    source_writes_on(a, "dk")
    files = ["dk.img", "dk@1.img"] if second else ["dk.img"]
    for f in files:
        assert_locked(os.path.join(shared, f))
    assert "lock" not in vm_log(a, "dk"), vm_log(a, "dk")
    source_disks_kept(a, "dk", second, want1)
    b.wait_for(lambda: b.api("GET", "/v1/guests/dk")[0] == 404, timeout=60, what="b to discard")
    assert sorted(os.listdir(shared)) == files
    assert "migration-discarded" in types(b, "dk")


def test_hostile_shared_probe(shared_hosts):
    """The probe names a file in the target's image dir only: a path or a
    malformed name is refused; a probe the target does not see means a
    copy; one it sees, without the disk beside it, a refusal; a discard of
    a shared disk leaves the file."""
    hb, shared = shared_hosts[1], shared_hosts[2]
    b = hb.d
    req = reservation("evil")
    req.update(live=True, disk="auto")
    req["config"].update(disk_path="/nonexistent/evil.img", disk_size=1 << 20)
    for bad in ("../../../etc/passwd", ".kvz-shared-" + "g" * 64, ".kvz-shared-" + "0" * 63,
                ".kvz-shared-" + "0" * 64 + "/x", 7, ""):
        st, ans = tcp_api(hb, "POST", "/v1/migrations", dict(req, shared_probe=bad), TOKEN_B)
        assert st == 400 and "shared_probe" in ans["error"]["message"], (bad, st, ans)
    assert b.api("GET", "/v1/guests/evil")[0] == 404
    probe = ".kvz-shared-" + "0" * 64
    st, ans = tcp_api(hb, "POST", "/v1/migrations", dict(req, shared_probe=probe), TOKEN_B)
    assert st == 201 and ans["disk"] == "copy", (st, ans)
    assert tcp_api(hb, "DELETE", "/v1/migrations/evil", None, TOKEN_B)[0] == 200
    b.wait_for(lambda: b.api("GET", "/v1/guests/evil")[0] == 404, what="b to discard")
    # Unseen, the probe means a copy even where this host has a file at
    # the source's path (on one machine: the source's own disk).
    victim = os.path.join(b.dir, "victim.img")
    with open(victim, "wb") as f:
        f.truncate(1 << 20)
    req2 = dict(req, shared_probe=probe, config=dict(req["config"], disk_path=victim))
    st, ans = tcp_api(hb, "POST", "/v1/migrations", req2, TOKEN_B)
    assert st == 201 and ans["disk"] == "copy", (st, ans)
    assert b.guest("evil")["config"]["disk_path"] == image(b, "evil")
    assert tcp_api(hb, "DELETE", "/v1/migrations/evil", None, TOKEN_B)[0] == 200
    b.wait_for(lambda: b.api("GET", "/v1/guests/evil")[0] == 404, what="b to discard")
    assert os.path.getsize(victim) == 1 << 20
    open(os.path.join(shared, probe), "w").close()
    st, ans = tcp_api(hb, "POST", "/v1/migrations", dict(req, shared_probe=probe), TOKEN_B)
    assert st == 409 and "shared storage" in ans["error"]["message"], (st, ans)
    with open(os.path.join(shared, "evil.img"), "wb") as f:
        f.truncate(1 << 20)
    st, ans = tcp_api(hb, "POST", "/v1/migrations", dict(req, shared_probe=probe), TOKEN_B)
    assert st == 201 and ans["disk"] == "shared", (st, ans)
    assert b.guest("evil")["config"]["disk_path"] == image(b, "evil")
    assert tcp_api(hb, "DELETE", "/v1/migrations/evil", None, TOKEN_B)[0] == 200
    b.wait_for(lambda: b.api("GET", "/v1/guests/evil")[0] == 404, what="b to discard")
    assert sorted(os.listdir(shared)) == sorted([probe, "evil.img"])
