"""Jobs and snapshots through kvzd and kvz, with the stand-in kvz-vmm
(fake_supervisor.c) playing the snapshot contract: kvzd opens the state
file and passes it with getfd, migrate "fd:snap", polls query-migrate,
copies the disk while the VM is paused, then cont; restore starts kvz-vmm
with --incoming file:PATH. The stand-in's "machine state" is one value
(x-fake-set / x-fake-get) plus 4 MiB of filler; its --cmdline makes the
save fail half-way (fake-migrate=fail) or slow (fake-migrate=slow)."""
import json
import os
import signal
import subprocess
import sys

from kvzd_harness import KVZ

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ct"))
import ctenv  # noqa: E402  (its QMP client)


def qmp(path, cmd, args=None):
    """One QMP command on a guest's socket: its "return", or raises."""
    reply = ctenv.qmp(path, cmd, args)
    if "error" in reply:
        raise AssertionError("%s: %s" % (cmd, reply["error"]))
    return reply["return"]


def vm(d, name, cmdline=None, disk="16M", start=True):
    args = ["create", "vm", name, "--kernel", d.kernel, "--memory", "64M", "--disk", disk]
    if cmdline:
        args += ["--cmdline", cmdline]
    d.kvz(*args)
    if start:
        d.kvz("start", name)
    return d.guest(name)


def guest_value(d, name):
    return qmp(d.guest(name)["qmp"], "x-fake-get")["value"]


def set_value(d, name, v):
    qmp(d.guest(name)["qmp"], "x-fake-set", {"value": v})


def write_disk(d, name, data):
    with open(os.path.join(d.state, "images/%s.img" % name), "r+b") as f:
        f.write(data)


def read_disk(d, name, n):
    with open(os.path.join(d.state, "images/%s.img" % name), "rb") as f:
        return f.read(n)


def snap_root(d, name):
    return os.path.join(d.state, "snapshots", name)


def guest_log(d, name):
    with open(os.path.join(d.state, "logs/%s.log" % name)) as f:
        return f.read()


def test_snapshot_and_restore_running_vm(kvzd):
    d = kvzd
    vm(d, "v1")
    set_value(d, "v1", "before")
    write_disk(d, "v1", b"SNAPSHOT-TIME-DATA")
    r = d.kvz("snapshot", "create", "v1", "s1")
    lines = r.stdout.strip().split("\n")
    # Not a terminal: plain progress lines, then the final line.
    assert any(l.startswith("saving memory") for l in lines), lines
    assert any(l.startswith("copying disk") for l in lines), lines
    assert "completed in" in lines[-1] and "snapshot-create of v1" in lines[-1], lines
    snaps = d.kvz_json("snapshot", "list", "v1")
    assert [s["name"] for s in snaps] == ["s1"] and snaps[0]["running"] is True
    assert snaps[0]["size"] >= 4 << 20, "the state file and disk copy are counted"
    assert sorted(os.listdir(snap_root(d, "v1"))) == ["s1"], "no partial directory left"
    files = os.listdir(os.path.join(snap_root(d, "v1"), "s1"))
    assert sorted(files) == ["disk.img", "state"]
    assert os.stat(os.path.join(snap_root(d, "v1"), "s1", "state")).st_mode & 0o077 == 0
    for p in (os.path.dirname(snap_root(d, "v1")), snap_root(d, "v1"),
              os.path.join(snap_root(d, "v1"), "s1")):
        assert os.stat(p).st_mode & 0o077 == 0, "guest memory is private: " + p
    # The protocol, in order: the file went by getfd (migrate names fd:snap),
    # the save completed (paused), the disk was copied, then cont.
    log = guest_log(d, "v1")
    i_mig, i_done, i_cont = (log.index("migrate fd:snap"), log.index("migration completed"),
                             log.index("cont (was postmigrate)"))
    assert i_mig < i_done < i_cont
    assert qmp(d.guest("v1")["qmp"], "query-status")["status"] == "running"
    types = [e["type"] for e in d.events("v1")]
    for t in ("job-queued", "job-running", "job-phase", "job-completed", "snapshot-created"):
        assert t in types, (t, types)

    # The guest moves on; restore brings back the saved instant.
    old_pid = d.guest("v1")["pid"]
    set_value(d, "v1", "after")
    write_disk(d, "v1", b"CHANGED-AFTERWARDS")
    r = d.kvz("snapshot", "restore", "v1", "s1")
    assert "completed" in r.stdout.strip().split("\n")[-1]
    g = d.guest("v1")
    assert g["state"] == "running" and g["pid"] != old_pid
    with open("/proc/%d/cmdline" % g["pid"]) as f:
        argv = f.read().split("\0")
    state = os.path.join(snap_root(d, "v1"), "s1", "state")
    assert argv[argv.index("--incoming") + 1] == "file:" + state
    assert guest_value(d, "v1") == "before"
    assert read_disk(d, "v1", 18) == b"SNAPSHOT-TIME-DATA"
    assert not os.path.exists(os.path.join(d.state, "images/v1.img.restore"))
    assert "snapshot-restored" in [e["type"] for e in d.events("v1")]
    # A second restore from the same snapshot works as well.
    set_value(d, "v1", "again")
    d.kvz("snapshot", "restore", "v1", "s1")
    assert guest_value(d, "v1") == "before"

    d.kvz("snapshot", "delete", "v1", "s1")
    assert d.kvz_json("snapshot", "list", "v1") == []
    assert os.listdir(snap_root(d, "v1")) == []
    r = d.kvz("snapshot", "restore", "v1", "s1", check=False)
    assert r.returncode == 1 and "no snapshot named s1" in r.stderr


def test_snapshot_of_stopped_vm_restores_stopped(kvzd):
    d = kvzd
    vm(d, "v2", start=False)
    write_disk(d, "v2", b"OLD-DISK")
    d.kvz("snapshot", "create", "v2", "cold")
    snap = d.kvz_json("snapshot", "list", "v2")[0]
    assert snap["running"] is False
    assert os.listdir(os.path.join(snap_root(d, "v2"), "cold")) == ["disk.img"]
    d.kvz("start", "v2")
    write_disk(d, "v2", b"NEW-DISK")
    d.kvz("snapshot", "restore", "v2", "cold")
    assert d.guest("v2")["state"] == "stopped", "a stopped snapshot restores a stopped VM"
    assert read_disk(d, "v2", 8) == b"OLD-DISK"


def test_default_name_and_json_records(kvzd):
    d = kvzd
    vm(d, "v3")
    r = d.kvz("--json", "snapshot", "create", "v3")
    records = [json.loads(l) for l in r.stdout.strip().split("\n")]
    assert len(records) >= 2 and len({r["id"] for r in records}) == 1
    last = records[-1]
    assert last["state"] == "completed" and last["type"] == "snapshot-create"
    assert last["error"] is None and last["params"]["snapshot"].startswith("snap-")
    name = last["params"]["snapshot"]
    assert [s["name"] for s in d.kvz_json("snapshot", "list", "v3")] == [name]
    jobs = d.kvz_json("job", "list", "--guest", "v3")
    assert [j["id"] for j in jobs] == [last["id"]]
    table = d.kvz("job", "list").stdout
    assert "snapshot-create" in table and "completed" in table
    shown = d.kvz_json("job", "show", str(last["id"]))
    assert shown["id"] == last["id"] and shown["state"] == "completed"
    r = d.kvz("job", "wait", str(last["id"]))
    assert "completed in" in r.stdout.strip().split("\n")[-1]
    for bad in ("abc", "0", "-3"):
        r = d.kvz("job", "show", bad, check=False)
        assert r.returncode == 2 and len(r.stderr.strip().split("\n")) == 1, (bad, r.stderr)
    r = d.kvz("job", "show", "4242", check=False)
    assert r.returncode == 1 and "no job 4242" in r.stderr


def test_failed_save_leaves_nothing(kvzd):
    d = kvzd
    vm(d, "bad", cmdline="fake-migrate=fail")
    r = d.kvz("snapshot", "create", "bad", "s", check=False)
    assert r.returncode == 1
    err = r.stderr.strip().split("\n")
    assert len(err) == 1 and "failed" in err[0] and "guest memory read error" in err[0], err
    assert d.kvz_json("snapshot", "list", "bad") == []
    assert os.listdir(snap_root(d, "bad")) == [], "the partial state file is removed"
    j = d.kvz_json("job", "list", "--guest", "bad")[-1]
    assert j["state"] == "failed" and "guest memory read error" in j["error"]
    assert qmp(d.guest("bad")["qmp"], "query-status")["status"] == "running"
    assert "job-failed" in [e["type"] for e in d.events("bad")]


def test_cancel_mid_save(kvzd):
    d = kvzd
    vm(d, "slow", cmdline="fake-migrate=slow")
    out = d.kvz_json("snapshot", "create", "slow", "s", "--detach")
    jid = out["id"]
    assert out["state"] in ("queued", "running")
    d.wait_for(lambda: d.job(jid)["done"] > 0, what="save progress")
    mid = d.job(jid)
    assert mid["phase"] == "saving memory" and 0 < mid["done"] < mid["total"]
    assert d.kvz("job", "cancel", str(jid)).returncode == 0
    end = d.wait_job(jid)
    assert end["state"] == "cancelled" and end["error"] == "cancelled"
    assert d.kvz_json("snapshot", "list", "slow") == []
    assert os.listdir(snap_root(d, "slow")) == []
    assert "migrate_cancel" in guest_log(d, "slow")
    assert qmp(d.guest("slow")["qmp"], "query-status")["status"] == "running"
    # A job that has ended cannot be cancelled.
    r = d.kvz("job", "cancel", str(jid), check=False)
    assert r.returncode == 1 and "already ended (cancelled)" in r.stderr


def test_ctrl_c_cancels_followed_job(kvzd):
    d = kvzd
    vm(d, "intr", cmdline="fake-migrate=slow")
    env = dict(os.environ, KVZ_SOCKET=d.socket)
    p = subprocess.Popen([KVZ, "snapshot", "create", "intr", "s"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    d.wait_for(lambda: any(j["state"] == "running" and j["done"] > 0
                           for j in d.kvz_json("job", "list", "--guest", "intr")),
               what="the save to start")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1
    assert "cancelling job" in out and "cancelled" in err.strip().split("\n")[-1]
    assert d.kvz_json("snapshot", "list", "intr") == []


def test_container_refused(kvzd):
    d = kvzd
    d.kvz("create", "ct", "c1", "--template", "busybox")
    r = d.kvz("snapshot", "create", "c1", check=False)
    err = r.stderr.strip().split("\n")
    assert r.returncode == 1 and len(err) == 1
    assert "containers have no snapshots yet" in err[0], err
    assert d.kvz_json("job", "list") == []


def test_bad_requests(kvzd):
    d = kvzd
    vm(d, "v4", start=False)
    for body in ({"name": "../x"}, {"name": ".hidden"}, {"name": 5}, {"nam": "x"}, [1]):
        status, r = d.api("POST", "/v1/guests/v4/snapshots", body)
        assert status == 400, (body, r)
    assert d.api("POST", "/v1/guests/nope/snapshots", {"name": "a"})[0] == 404
    assert d.api("GET", "/v1/guests/nope/snapshots")[0] == 404
    assert d.api("POST", "/v1/guests/v4/snapshots/none/restore")[0] == 404
    assert d.api("DELETE", "/v1/guests/v4/snapshots/none")[0] == 404
    assert d.api("GET", "/v1/guests/v4/snapshots/a/b/c")[0] == 404
    assert d.api("PUT", "/v1/guests/v4/snapshots")[0] == 405
    d.kvz("snapshot", "create", "v4", "one")
    r = d.kvz("snapshot", "create", "v4", "one", check=False)
    assert r.returncode == 1 and "already has a snapshot named one" in r.stderr
    # Destroying the guest takes its snapshots with it.
    d.kvz("destroy", "v4")
    assert not os.path.exists(snap_root(d, "v4"))


def test_kvzd_killed_mid_save(kvzd):
    """kill -9 of kvzd during a save: the next kvzd marks the job failed,
    removes the partial snapshot and leaves the VM running."""
    d = kvzd
    vm(d, "k", cmdline="fake-migrate=slow")
    jid = d.kvz_json("snapshot", "create", "k", "s", "--detach")["id"]
    d.wait_for(lambda: d.job(jid)["done"] > 0, what="save progress")
    d.kill9()
    d.start()
    j = d.job(jid)
    assert j["state"] == "failed" and "kvzd stopped while the job was running" in j["error"]
    assert d.kvz_json("snapshot", "list", "k") == []
    assert os.listdir(snap_root(d, "k")) == []
    g = d.guest("k")
    assert g["state"] == "running"
    d.wait_for(lambda: qmp(g["qmp"], "query-status")["status"] == "running",
               what="the VM to run again")
    # The guest is usable for the next snapshot.
    qmp(g["qmp"], "x-fake-set", {"value": "x"})
    jid2 = d.kvz_json("snapshot", "create", "k", "s2", "--detach")["id"]
    assert d.wait_job(jid2)["state"] == "completed"


def test_progress_bar_on_a_terminal(kvzd):
    """On a terminal kvz redraws one bar line (carriage returns), then ends
    it and prints the final line."""
    import pty
    d = kvzd
    vm(d, "tty", cmdline="fake-migrate=slow")
    env = dict(os.environ, KVZ_SOCKET=d.socket)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(KVZ, [KVZ, "snapshot", "create", "tty", "s"], env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    redraws = text.count("\r\x1b[K[")
    assert redraws >= 3, text
    assert "#" in text and "saving memory" in text and "%" in text
    assert "completed in" in text.rstrip().split("\n")[-1] and "(last phase: copying disk" in text


def test_restore_of_damaged_snapshot_gives_the_disk_back(kvzd):
    """kvz-vmm refuses the state file: the restore fails with its line, the
    VM is stopped (its run was given up) with its own disk, not the
    snapshot's, and nothing is left beside the disk."""
    d = kvzd
    vm(d, "dmg")
    write_disk(d, "dmg", b"AT-SNAPSHOT")
    d.kvz("snapshot", "create", "dmg", "s")
    write_disk(d, "dmg", b"LATER-DISK!")
    with open(os.path.join(snap_root(d, "dmg"), "s", "state"), "r+b") as f:
        f.write(b"garbage")
    r = d.kvz("snapshot", "restore", "dmg", "s", check=False)
    assert r.returncode == 1
    err = r.stderr.strip().split("\n")
    assert len(err) == 1 and "failed" in err[0] and "not a fake state file" in err[0], err
    assert d.guest("dmg")["state"] == "stopped"
    assert read_disk(d, "dmg", 11) == b"LATER-DISK!"
    assert sorted(f for f in os.listdir(os.path.join(d.state, "images"))
                  if f.startswith("dmg")) == ["dmg.img"]
    # The VM starts normally again, and the snapshot is still listed.
    d.kvz("start", "dmg")
    assert [s["name"] for s in d.kvz_json("snapshot", "list", "dmg")] == ["s"]


def test_kvzd_killed_mid_restore(kvzd):
    """A restore whose kvzd died after moving the VM's disk aside (the job
    still "running" in the store, DISK.prev and DISK.restore on disk): the
    next kvzd puts the VM's own disk back and marks the job failed."""
    import sqlite3
    d = kvzd
    vm(d, "rr", start=False)
    write_disk(d, "rr", b"OWN-DISK")
    d.kill9()
    img = os.path.join(d.state, "images/rr.img")
    os.rename(img, img + ".prev")
    with open(img, "wb") as f:
        f.write(b"SNAPSHOT")
    with open(img + ".restore", "wb") as f:
        f.write(b"half")
    db = sqlite3.connect(os.path.join(d.state, "kvzd.db"))
    jid = db.execute("INSERT INTO jobs (type, guest, state, phase, params, created_ms)"
                     " VALUES ('snapshot-restore', 'rr', 'running', 'starting',"
                     " '{\"snapshot\":\"s\"}', 1)").lastrowid
    db.commit()
    db.close()
    d.start()
    j = d.job(jid)
    assert j["state"] == "failed" and "kvzd stopped while the job was running" in j["error"]
    assert read_disk(d, "rr", 8) == b"OWN-DISK"
    assert sorted(f for f in os.listdir(os.path.join(d.state, "images"))
                  if f.startswith("rr")) == ["rr.img"]
    assert "job-failed" in [e["type"] for e in d.events("rr")]
