"""kvz-ct checkpoint / restore --dir on this host (issue 12). This host's
kernel fails `criu check` (Debian 12's CRIU 3.17 on 6.18): both commands
must refuse with one line saying why, and leave the container as it was.
kvz-ct's own part of failure safety (a failed dump leaves the container
running, a checkpoint ends it and its supervisor cleanly, a failed restore
leaves nothing) is tested with a stand-in criu ($KVZ_CT_CRIU). The real
dump and restore run in the lab: test_ct_checkpoint_lab.py."""
import json
import os
import signal
import subprocess
import time

import pytest

from ctenv import KVZCT, kvz, leftovers, one_error_line

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="kvz-ct tests need root")


def pid_alive(pid):
    """Running (a zombie waiting for its reaper has finished)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def criu_check_failure():
    """None when `criu check` passes here, else what it printed."""
    try:
        r = subprocess.run(["criu", "check"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return "criu not installed"
    return None if r.returncode == 0 else r.stderr


def fake_criu(tmp_path, dump="fail", restore="fail", pre_dump_s=0):
    """A stand-in criu: check passes; dump and restore fail with an error
    in their log as CRIU writes it, or (dump=kill) end the tree the way a
    complete dump does; a pre-dump takes pre_dump_s and succeeds."""
    path = tmp_path / "criu"
    path.write_text(f"""#!/bin/sh
all="$*"; cmd=$1; shift
dir=; tree=
while [ $# -gt 0 ]; do
  case "$1" in --images-dir) dir=$2; shift;; --tree) tree=$2; shift;; esac; shift
done
echo "$all" >> {tmp_path}/calls
case "$cmd" in
check) exit 0;;
dump) if [ {dump} = kill ]; then echo pages > "$dir/pages-1.img"; kill -9 "$tree"; exit 0; fi
  echo "(00.01) Error (criu/cr-dump.c:2000): fake dump: no space left" > "$dir/dump.log"; exit 1;;
pre-dump) head -c 8192 /dev/zero > "$dir/pages-1.img"; sleep {pre_dump_s}; exit 0;;
restore) echo "(00.02) Error (criu/cr-restore.c:3000): fake restore: bad image" > "$dir/restore.log"; exit 1;;
esac
exit 2
""")
    path.chmod(0o755)
    return str(path)


def test_refused_where_criu_check_fails(env, bbroot, tmp_path):
    why = criu_check_failure()
    if why is None:
        pytest.skip("criu check passes on this host: nothing to refuse")
    n = env.name("ck")
    env.start(n, "--rootfs", bbroot)
    ck = tmp_path / "ck"
    r = kvz("checkpoint", "--name", n, "--run-dir", env.run_dir, "--dir", str(ck), check=False)
    line = one_error_line(r)
    assert line.startswith(f"kvz-ct: error: cannot checkpoint '{n}': ")
    assert "criu check" in line or "not installed" in line, line
    # Refused before anything happened: it runs on, nothing was written.
    assert env.exec(n, "true").returncode == 0
    assert not (ck / "kvz-ct.json").exists()
    # restore of a directory that looks like a checkpoint: the same refusal.
    ck.mkdir(exist_ok=True)
    (ck / "kvz-ct.json").write_text(json.dumps({"name": n + "r", "run-args": ["--name", n + "r"]}))
    r = kvz("restore", "--name", n + "r", "--dir", str(ck), check=False)
    line = one_error_line(r)
    assert line.startswith(f"kvz-ct: error: cannot restore '{n}r': ") and "criu" in line.lower()
    assert leftovers(env, n + "r") == []
    env.stop(n)


def test_bad_input(env, bbroot, tmp_path):
    n = env.name("cb")
    r = kvz("checkpoint", "--name", n, "--run-dir", env.run_dir, check=False)
    assert "needs --dir" in one_error_line(r)
    r = kvz("checkpoint", "--name", n, "--run-dir", env.run_dir, "--dir", str(tmp_path / "x"), check=False)
    assert "is not running" in one_error_line(r)
    assert not (tmp_path / "x").exists()
    r = kvz("restore", "--name", n, "--dir", str(tmp_path), check=False)
    assert "holds no kvz-ct checkpoint" in one_error_line(r)
    r = kvz("restore", "--name", n, "--dir", str(tmp_path / "missing"), check=False)
    assert "does not exist" in one_error_line(r)
    (tmp_path / "kvz-ct.json").write_text(json.dumps({"name": "other"}))
    r = kvz("restore", "--name", n, "--dir", str(tmp_path), check=False)
    assert "is a checkpoint of 'other'" in one_error_line(r)
    # Images others could have written are not restored (they could ask
    # for no user namespace at all).
    os.chmod(tmp_path, 0o777)
    r = kvz("restore", "--name", "other", "--dir", str(tmp_path), check=False)
    assert "writable by nobody else" in one_error_line(r)
    os.chmod(tmp_path, 0o700)


def test_failed_dump_leaves_container_running(env, bbroot, tmp_path, monkeypatch):
    monkeypatch.setenv("KVZ_CT_CRIU", fake_criu(tmp_path))
    n = env.name("cf")
    env.start(n, "--rootfs", bbroot)
    ck = tmp_path / "ck"
    r = kvz("checkpoint", "--name", n, "--run-dir", env.run_dir, "--dir", str(ck), check=False)
    line = one_error_line(r)
    assert f"checkpoint of '{n}' failed: criu dump failed: fake dump: no space left (log: {ck}/dump.log)" in line
    assert env.exec(n, "true").returncode == 0
    assert env.state(n)["init-pid"] > 0
    assert sorted(os.listdir(ck)) == ["dump.log"]  # no kvz-ct.json, no .tmp
    assert oct(os.stat(ck).st_mode & 0o777) == "0o700"
    # The supervisor takes the next one: nothing stuck "checkpointing".
    r = kvz("checkpoint", "--name", n, "--run-dir", env.run_dir, "--dir", str(ck), check=False)
    assert "fake dump" in one_error_line(r)
    env.stop(n)
    assert leftovers(env, n) == []


def test_checkpoint_ends_container_and_restore_failure_leaves_nothing(env, bbroot, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("KVZ_CT_CRIU", fake_criu(tmp_path, dump="kill"))
    n = env.name("ce")
    env.start(n, "--rootfs", bbroot, "--pids", "40", "--memory", "64M:128M")
    env.set(n, "--pids", "55")
    sup = env.state(n)["supervisor-pid"]
    ck = tmp_path / "ck"
    r = kvz("checkpoint", "--name", n, "--run-dir", env.run_dir, "--dir", str(ck),
            "--pre-dumps", "2")
    # What each criu run wrote of memory (its pages-*.img): the stand-in
    # writes 8192 bytes per pre-dump and 6 in the dump.
    assert r.stdout.splitlines() == [f"{s}: {b} bytes of memory written"
                                     for s, b in (("pre-1", 8192), ("pre-2", 8192), ("dump", 6))]
    assert not pid_alive(sup)
    assert leftovers(env, n) == []
    meta = json.load(open(ck / "kvz-ct.json"))
    assert meta["name"] == n and "--rootfs" in meta["run-args"]
    # The limits in force (set's pids), not run's.
    assert meta["limits"]["pids"] == "55" and meta["limits"]["memory"] == f"{64 << 20}:{128 << 20}"
    assert meta["idmap"]["count"] == 65536 and meta["console-tty"] is None
    calls = open(tmp_path / "calls").read()
    assert "--tcp-established" in calls and "--network-lock nftables" in calls
    # A restore that fails: one line, no supervisor, cgroup or state left.
    r = kvz("restore", "--name", n, "--dir", str(ck), check=False)
    line = one_error_line(r)
    assert "criu restore failed: fake restore: bad image" in line, line
    assert leftovers(env, n) == []
    assert "--restore-sibling" in open(tmp_path / "calls").read()


def test_directory_mounted_after_start(env, bbroot, tmp_path, monkeypatch):
    """The supervisor's mount namespace is a copy made at start: the
    directory is resolved as `checkpoint` sees it, not as the supervisor's
    stale copy would (there the mount below is missing)."""
    monkeypatch.setenv("KVZ_CT_CRIU", fake_criu(tmp_path, dump="kill"))
    n = env.name("cm")
    env.start(n, "--rootfs", bbroot)
    late = tmp_path / "late"
    late.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "late", str(late)], check=True)
    try:
        kvz("checkpoint", "--name", n, "--run-dir", env.run_dir, "--dir", str(late / "ck"))
        assert json.load(open(late / "ck" / "kvz-ct.json"))["name"] == n
        assert (late / "ck" / "pages-1.img").exists()
    finally:
        subprocess.run(["umount", "-l", str(late)], check=False)
    assert leftovers(env, n) == []


def test_container_inherits_no_descriptors(env, bbroot):
    """A descriptor of the caller's in the container is a handle on a host
    file (and makes the container undumpable): init gets stdio only."""
    n = env.name("cd")
    with open("/etc/hostname") as f:
        r = subprocess.run([KVZCT, "run", "--name", n, "--rootfs", bbroot, "--run-dir", env.run_dir,
                            "--", "ls", "/proc/self/fd"], capture_output=True, text=True,
                           pass_fds=(f.fileno(),), timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["0", "1", "2", "3"]  # 3: ls's own directory


def test_console_given_anew_on_restore(env, bbroot, tmp_path, monkeypatch):
    """The console's pty stays with the supervisor: dumped as an external
    tty and mount, handed to the restore as the new supervisor's pty."""
    monkeypatch.setenv("KVZ_CT_CRIU", fake_criu(tmp_path, dump="kill"))
    n = env.name("cc")
    env.start(n, "--rootfs", bbroot, "--console-socket", str(tmp_path / "c.sock"))
    kvz("checkpoint", "--name", n, "--run-dir", env.run_dir, "--dir", str(tmp_path / "ck"))
    tty = json.load(open(tmp_path / "ck" / "kvz-ct.json"))["console-tty"]
    assert tty.startswith("tty[")
    one_error_line(kvz("restore", "--name", n, "--dir", str(tmp_path / "ck"), check=False))
    dump, restore = [l for l in open(tmp_path / "calls").read().splitlines() if l.split()[0] != "check"]
    assert f"--external {tty} --external mnt[/dev/console]:console" in dump
    assert f":{tty} --external mnt[console]:/dev/pts/" in restore and "--inherit-fd fd[" in restore
    assert "--manage-cgroups=soft" in dump and "--root " in restore
    assert leftovers(env, n) == []


def test_cancel_between_pre_dumps(env, bbroot, tmp_path, monkeypatch):
    """Ctrl-C on kvz-ct checkpoint: the pre-dump under way completes, no
    further criu step starts, the container runs on, the supervisor takes
    the next checkpoint."""
    monkeypatch.setenv("KVZ_CT_CRIU", fake_criu(tmp_path, pre_dump_s=1.5))
    n = env.name("cc")
    env.start(n, "--rootfs", bbroot)
    ck = tmp_path / "ck"
    calls = tmp_path / "calls"
    p = subprocess.Popen([KVZCT, "checkpoint", "--name", n, "--run-dir", env.run_dir,
                          "--dir", str(ck), "--pre-dumps", "3"],
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not (calls.exists() and "pre-dump" in calls.read_text()):
        assert time.monotonic() < deadline and p.poll() is None, "no pre-dump started"
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, errout = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGINT
    assert errout.startswith("kvz-ct: checkpoint cancelled: ") and errout.count("\n") == 1, errout
    time.sleep(3)  # the pre-dump under way (1.5 s) ends; nothing may follow it
    steps = [line.split()[0] for line in calls.read_text().splitlines() if not line.startswith("check")]
    assert steps == ["pre-dump"], steps
    assert not (ck / "kvz-ct.json").exists() and not (ck / "kvz-ct.json.tmp").exists()
    assert env.exec(n, "true").returncode == 0
    r = kvz("checkpoint", "--name", n, "--run-dir", env.run_dir, "--dir", str(ck), check=False)
    assert "fake dump" in one_error_line(r)
    env.stop(n)
    assert leftovers(env, n) == []
