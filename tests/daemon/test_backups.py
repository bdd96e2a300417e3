"""Container backups through kvzd as jobs (meson test 'daemon-backups').
With the stand-in kvz-ct (fake_supervisor.c): its "private area" is a small
file that a backup copies behind a header, written in pieces so progress
shows; marker files in the container's directory make the backup slow (to
be cancelled) or fail half-way. With the real kvz-ct: a busybox container
backed up live, changed, restored. The real test skips without root."""
import os
import stat

import pytest

from kvzd_harness import real_ct_kvzd


@pytest.fixture
def real():
    d = real_ct_kvzd()
    yield d.start()
    d.cleanup()


def ct(d, name, start=True):
    d.kvz("create", "ct", name, "--disk", "64M", "--", "/bin/sh", "-c", "sleep 1000")
    if start:
        d.kvz("start", name)


def ct_file(d, name, f):
    return os.path.join(d.state, "ct", name, f)


def private(d, name):
    with open(ct_file(d, name, "private.img")) as f:
        return f.read()


def set_private(d, name, text):
    with open(ct_file(d, name, "private.img"), "w") as f:
        f.write(text)


def marker(d, name, m):
    open(ct_file(d, name, m), "w").close()


def backup_dir(d, name):
    return os.path.join(d.state, "backups", name)


def kvz_ct_children(d):
    """kvz-ct helpers still running under this kvzd's state directory."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if len(args) > 1 and args[1] in (b"backup", b"restore") and \
                any(d.state.encode() in a for a in args):
            found.append(int(pid))
    return found


def test_backup_list_restore_delete(kvzd):
    d = kvzd
    ct(d, "c1")
    set_private(d, "c1", "first contents\n")
    out = d.kvz("backup", "create", "c1", "b1")
    assert out.returncode == 0 and "completed" in out.stdout + out.stderr
    path = os.path.join(backup_dir(d, "c1"), "b1.tar.zst")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(backup_dir(d, "c1")).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.dirname(backup_dir(d, "c1"))).st_mode) == 0o700
    j = d.kvz_json("job", "list", "--guest", "c1")[-1]
    assert j["type"] == "backup-create" and j["state"] == "completed"
    assert j["done"] >= 1 << 20, "progress counts the bytes written"
    listed = d.kvz_json("backup", "list", "c1")
    assert [b["name"] for b in listed] == ["b1"] and listed[0]["size"] > 1 << 20
    assert "b1" in d.kvz("backup", "list", "c1").stdout
    # A second one without a name gets one from the time.
    d.kvz("backup", "create", "c1")
    assert len(d.kvz_json("backup", "list", "c1")) == 2

    # Restore a running container: stopped, swapped, started again.
    set_private(d, "c1", "changed since\n")
    pid_before = d.guest("c1")["pid"]
    d.kvz("backup", "restore", "c1", "b1")
    assert private(d, "c1") == "first contents\n"
    g = d.guest("c1")
    assert g["state"] == "running" and g["pid"] != pid_before
    assert not os.path.exists(ct_file(d, "c1", "private.img.prev"))
    assert os.listdir(os.path.join(d.state, "backups", ".staging")) == []
    types = [e["type"] for e in d.events("c1")]
    assert "backup-created" in types and "backup-restored" in types

    # A stopped container stays stopped.
    d.kvz("stop", "c1")
    set_private(d, "c1", "again\n")
    d.kvz("backup", "restore", "c1", "b1")
    assert private(d, "c1") == "first contents\n" and d.guest("c1")["state"] == "stopped"

    assert d.kvz("backup", "delete", "c1", "b1").stdout.strip() == "deleted backup b1 of c1"
    assert [b["name"] for b in d.kvz_json("backup", "list", "c1")] != ["b1"]
    assert not os.path.exists(path)
    # Destroying the container removes its backups.
    d.kvz("destroy", "c1")
    assert not os.path.exists(backup_dir(d, "c1"))


def test_cancel_mid_backup(kvzd):
    d = kvzd
    ct(d, "slow")
    marker(d, "slow", "fake-backup-slow")
    jid = d.kvz_json("backup", "create", "slow", "b", "--detach")["id"]
    d.wait_for(lambda: d.job(jid)["done"] > 0, what="backup progress")
    mid = d.job(jid)
    assert mid["phase"] == "writing" and 0 < mid["done"]
    assert kvz_ct_children(d), "kvz-ct backup runs"
    assert d.kvz("job", "cancel", str(jid)).returncode == 0
    end = d.wait_job(jid)
    assert end["state"] == "cancelled"
    assert os.listdir(backup_dir(d, "slow")) == [], "the partial file is removed"
    assert kvz_ct_children(d) == [], "kvz-ct backup was killed"
    assert d.guest("slow")["state"] == "running"


def test_failed_backup_leaves_nothing(kvzd):
    d = kvzd
    ct(d, "bad")
    marker(d, "bad", "fake-backup-fail")
    r = d.kvz("backup", "create", "bad", "b", check=False)
    assert r.returncode == 1 and "archive write failed (fake)" in r.stderr
    j = d.kvz_json("job", "list", "--guest", "bad")[-1]
    assert j["state"] == "failed" and "kvz-ct backup of bad" in j["error"]
    assert os.listdir(backup_dir(d, "bad")) == []
    assert d.kvz_json("backup", "list", "bad") == []


def test_failed_restore_keeps_the_container(kvzd):
    d = kvzd
    ct(d, "c2")
    set_private(d, "c2", "precious\n")
    d.kvz("backup", "create", "c2", "good")
    with open(os.path.join(backup_dir(d, "c2"), "good.tar.zst"), "w") as f:
        f.write("not a backup at all")
    pid = d.guest("c2")["pid"]
    r = d.kvz("backup", "restore", "c2", "good", check=False)
    assert r.returncode == 1 and "not a backup" in r.stderr
    g = d.guest("c2")
    assert g["state"] == "running" and g["pid"] == pid, "untouched: the unpack failed first"
    assert private(d, "c2") == "precious\n"
    assert not os.path.exists(ct_file(d, "c2", "private.img.prev"))


def test_bad_requests(kvzd):
    d = kvzd
    ct(d, "c3", start=False)
    d.kvz("create", "vm", "v1", "--kernel", d.kernel, "--memory", "64M")
    status, body = d.api("POST", "/v1/guests/v1/backups")
    assert status == 409 and "VMs have snapshots" in body["error"]["message"]
    assert d.api("POST", "/v1/guests/nope/backups")[0] == 404
    assert d.api("POST", "/v1/guests/c3/backups/missing/restore")[0] == 404
    assert d.api("DELETE", "/v1/guests/c3/backups/missing")[0] == 404
    for bad in ("../x", ".hidden", "a" * 41, "x y"):
        status, body = d.api("POST", "/v1/guests/c3/backups", {"name": bad})
        assert status == 400, (bad, body)
    assert d.api("POST", "/v1/guests/c3/backups", {"name": 5})[0] == 400
    assert d.api("POST", "/v1/guests/c3/backups", {"name": "a", "x": 1})[0] == 400
    assert d.api("PUT", "/v1/guests/c3/backups")[0] == 405
    assert d.api("GET", "/v1/guests/c3/backups/x/y/z")[0] == 404
    assert d.api("POST", "/v1/guests/c3/backups/x/explode")[0] == 404
    d.kvz("backup", "create", "c3", "one")
    status, body = d.api("POST", "/v1/guests/c3/backups", {"name": "one"})
    assert status == 409 and "already has a backup" in body["error"]["message"]
    r = d.kvz("backup", "create", "c3", "../etc", check=False)
    assert r.returncode == 2 and "bad backup name" in r.stderr


def test_real_busybox_backup_restore(real):
    d = real
    d.kvz("create", "ct", "rb", "--template", "busybox", "--memory", "32M:64M",
          "--disk", "128M", "--", "/bin/sh", "-c", "sleep 1000")
    d.kvz("start", "rb")

    def sh(cmd):
        return d.kvz("exec", "rb", "--", "/bin/sh", "-c", cmd).stdout

    sh("echo before > /root-mark")
    d.kvz("backup", "create", "rb", "b1")
    sh("echo after > /root-mark; touch /new-file")
    d.kvz("backup", "restore", "rb", "b1")
    assert d.guest("rb")["state"] == "running"
    assert sh("cat /root-mark").strip() == "before"
    r = d.kvz("exec", "rb", "--", "/bin/ls", "/new-file", check=False)
    assert r.returncode != 0
