"""Container migration between two kvzd on this host (issue 12), with the
real kvz-ct and a stand-in criu ($KVZ_CT_CRIU): this host's kernel fails
`criu check`, and a real restore runs only in the lab
(tests/lab/test_ct_migrate_lab.py). Everything up to the restore is real:
the private image's copy and delta, CRIU's page server sessions (the
stand-in's) over the migration socket, the final images, the hold. What is
tested here is failure safety: the target refuses, the final dump fails,
the restore fails, the job is cancelled, the target dies: each time the
container runs on at the source (thawed, exec works) and the target keeps
nothing. Hostile peers on the migration port are refused."""
import os
import socket
import struct

import pytest

import kvzd_harness
from kvzd_harness import BUILD, Kvzd, free_port, no_sanitizer_report
from test_migrate import pair_up, tcp_api, terminate_pair, write_token

KVZ_CT = os.path.join(BUILD, "src/ct/kvz-ct")
TOKEN_A = "ctmig-token-a-0123456789abcdef00"
TOKEN_B = "ctmig-token-b-0123456789abcdef00"
LOOP = "while :; do sleep 1; done"
# Both kvzd share this host's cgroup tree (kvz/NAME): a name of this run's.
CT = "cm%d" % (os.getpid() % 100000)


def thaw_leftover(tag, name):
    """A supervisor killed while it held its container frozen (only a
    test's teardown does that) cannot thaw it, nor could its teardown."""
    for path in ("/sys/fs/cgroup/freezer/%s/kvz/%s/freezer.state" % (tag, name),
                 "/sys/fs/cgroup/%s/kvz/%s/cgroup.freeze" % (tag, name)):
        if os.path.exists(path):
            with open(path, "w") as f:
                f.write("THAWED" if path.endswith("state") else "0")


def fake_criu(tmp):
    """The stand-in: (pre-)dumps send a line over --ps-socket and wait for
    the page server's answer; pre-dumps take the seconds in tmp/pre_s; a
    dump fails when tmp/dump_fails exists; restore always fails."""
    path = os.path.join(tmp, "criu")
    with open(path, "w") as f:
        f.write(f"""#!/bin/bash
all="$*"; cmd=$1; shift
dir=; ps=
while [ $# -gt 0 ]; do
  case "$1" in --images-dir) dir=$2; shift;; --ps-socket) ps=$2; shift;; esac; shift
done
echo "$all" >> {tmp}/calls
case "$cmd" in
check) exit 0;;
pre-dump|dump)
  [ $cmd = pre-dump ] && sleep "$(cat {tmp}/pre_s 2>/dev/null || echo 0)"
  if [ $cmd = dump ] && [ -e {tmp}/dump_fails ]; then
    echo "(00.01) Error (criu/cr-dump.c:2000): fake dump: no space left" > "$dir/dump.log"; exit 1; fi
  [ $cmd = dump ] && echo core > "$dir/core-1.img"
  eval "echo $cmd >&$ps"; eval "read -r ack <&$ps"; [ "$ack" = ok ] || exit 3; exit 0;;
page-server) eval "read -r what <&$ps" || exit 4; echo "$what" > "$dir/pages-1.img"; eval "echo ok >&$ps"; exit 0;;
restore) echo "(00.02) Error (criu/cr-restore.c:3000): fake restore: bad image" > "$dir/restore.log"; exit 1;;
esac
exit 2
""")
    os.chmod(path, 0o755)
    return path


CGROUP_ROOTS = ["/sys/fs/cgroup"] + ["/sys/fs/cgroup/" + h for h in sorted(
    os.listdir("/sys/fs/cgroup")) if os.path.exists("/sys/fs/cgroup/%s/cgroup.procs" % h)]


def cgroups_of(tag):
    return [os.path.join(r, tag) for r in CGROUP_ROOTS if os.path.exists(r + "/cgroup.procs")]


class Host:
    """A kvzd on TCP in a cgroup of its own in every hierarchy and with an
    id range registry of its own, as on a host of its own: kvz-ct puts
    containers below its caller's cgroup, and the two hosts' copies of one
    container must not meet in kvz/NAME nor in the registry."""

    def __init__(self, token, tag):
        self.d = Kvzd(ct=KVZ_CT)
        self.token = token
        self.tag = "%s%d" % (tag, os.getpid())
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.tokfile = write_token(self.d, token, "own-token")
        self.wrapper = os.path.join(self.d.dir, "kvzd-in-cgroup")
        with open(self.wrapper, "w") as f:
            f.write("#!/bin/sh\n")
            for cg in cgroups_of(self.tag):
                f.write("mkdir -p %s || exit 1\n" % cg)
                if os.path.basename(os.path.dirname(cg)) == "cpuset":  # v1: empty until set
                    for k in ("cpus", "mems"):
                        f.write("cat %s/cpuset.%s > %s/cpuset.%s\n" % (
                            os.path.dirname(cg), k, cg, k))
                f.write("echo $$ > %s/cgroup.procs || exit 1\n" % cg)
            # Its own id range registry too: the container keeps its range.
            f.write("export KVZ_CT_IDMAP_DIR=%s/idmap\n" % self.d.dir)
            f.write('exec %s "$@"\n' % kvzd_harness.KVZD)
        os.chmod(self.wrapper, 0o755)

    def start(self):
        real = kvzd_harness.KVZD
        kvzd_harness.KVZD = self.wrapper
        try:
            self.d.start(["--listen", "127.0.0.1:%d" % self.port, "--token-file", self.tokfile])
        finally:
            kvzd_harness.KVZD = real
        return self.d

    def remove_cgroups(self):
        for cg in cgroups_of(self.tag):
            for root, dirs, _ in sorted(os.walk(cg, topdown=False), reverse=True):
                for d in dirs:
                    try:
                        os.rmdir(os.path.join(root, d))
                    except OSError:
                        pass
            try:
                os.rmdir(cg)
            except OSError:
                pass


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("containers need root")
    if not os.path.exists(KVZ_CT):
        pytest.skip("kvz-ct not built: " + KVZ_CT)
    monkeypatch.setenv("KVZ_CT_CRIU", fake_criu(str(tmp_path)))
    a, b = Host(TOKEN_A, "ctmig-a"), Host(TOKEN_B, "ctmig-b")
    pair_up(a, b)
    yield a, b
    logs = terminate_pair(a, b)
    for h in (a, b):
        thaw_leftover(h.tag, CT)
    a.d.cleanup()
    b.d.cleanup()
    for h in (a, b):
        h.remove_cgroups()
    no_sanitizer_report(logs)


def start_ct(d, name=CT):
    d.kvz("create", "ct", name, "--template", "busybox", "--disk", "128M", "--",
          "/bin/sh", "-c", LOOP)
    d.kvz("start", name)
    # Something in the private area for the copy to carry.
    d.kvz("exec", name, "--", "sh", "-c", "echo precious > /data.txt; sync")


def runs_on(d, name=CT):
    """Running at the source, thawed (exec answers), nothing of the
    migration left."""
    g = d.guest(name)
    assert g["state"] == "running", g
    assert "migrating_to" not in g["config"]
    r = d.kvz("exec", name, "--", "cat", "/data.txt", timeout=20)
    assert r.stdout.strip() == "precious"
    mig = os.path.join(d.state, "migrations")
    assert not os.path.exists(mig) or os.listdir(mig) == []


def target_clean(d, name=CT):
    # The receiving thread drops what came in as it ends, after the source
    # has failed: a staged restore's supervisor has to stop first.
    d.wait_for(lambda: d.api("GET", "/v1/guests/%s" % name)[0] == 404, what="the drop")
    d.wait_for(lambda: not os.path.exists(os.path.join(d.state, "ct", name)),
               what="the target's private area to go")
    mig = os.path.join(d.state, "migrations")
    d.wait_for(lambda: not os.path.exists(mig) or os.listdir(mig) == [],
               what="the target's migration directory to go")


def calls(tmp_path, cmd):
    p = tmp_path / "calls"
    return [l for l in p.read_text().splitlines() if l.split()[0] == cmd] if p.exists() else []


def test_restore_fails_on_target_container_runs_on(hosts, tmp_path):
    """The whole stream goes (image, 2 pre-dumps and the dump through the
    page server, the images, the delta); the target's restore (the
    stand-in's) fails: it keeps nothing, the source resumes its frozen
    container."""
    a, b = hosts[0].d, hosts[1].d
    start_ct(a)
    r = a.kvz("migrate", CT, "--to", "b", check=False, timeout=180)
    assert r.returncode != 0
    assert "did not confirm" in r.stderr, r.stderr
    servers = calls(tmp_path, "page-server")
    assert len(servers) == 3, servers
    assert servers[2].endswith("--prev-images-dir pre-2")
    final = calls(tmp_path, "dump")[0]
    assert "--freeze-cgroup" in final and "--leave-running" in final
    restores = calls(tmp_path, "restore")
    assert len(restores) == 1 and "/migrations/%s/images" % CT in restores[0], restores
    ev = b.events(CT)
    assert any(e["type"] == "migration-discarded" and "fake restore: bad image" in
               (e.get("detail") or "") for e in ev), ev
    runs_on(a)
    target_clean(b)
    assert any(e["type"] == "migration-failed" for e in a.events(CT))


def test_failed_final_dump(hosts, tmp_path):
    a, b = hosts[0].d, hosts[1].d
    (tmp_path / "dump_fails").write_text("")
    start_ct(a)
    r = a.kvz("migrate", CT, "--to", "b", check=False, timeout=180)
    assert r.returncode != 0 and "fake dump: no space left" in r.stderr, r.stderr
    runs_on(a)
    target_clean(b)


def job_end(d, job):
    return d.wait_for(lambda: (lambda j: j["state"] not in ("queued", "running") and j)(
        d.api("GET", "/v1/jobs/%s" % job["id"])[1]), timeout=120, what="the job to end")


def migrate_slowly(a, tmp_path, pre_dumps):
    """A migration job whose pre-dumps take 3 s each, once one started."""
    (tmp_path / "pre_s").write_text("3")
    start_ct(a)
    st, job = a.api("POST", "/v1/guests/%s/migrate" % CT, {"to": "b", "pre_dumps": pre_dumps})
    assert st in (200, 201, 202), job
    a.wait_for(lambda: calls(tmp_path, "pre-dump"), timeout=60, what="a pre-dump")
    return job


def staged_supervisors(d):
    """Pids of the target's supervisors started ahead of their restore
    (kvz-ct run --restore ... --restore-go-fd N) under d's state dir."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "--restore-go-fd" in argv and any(x.startswith(d.state) for x in argv):
            pids.append(int(pid))
    return pids


def test_cancel_during_pre_dumps(hosts, tmp_path):
    """While the pre-dumps run, the target's supervisor is up, set up
    and waiting for its images (the staged restore); cancel: it goes, the
    target keeps nothing, the container runs on at the source."""
    a, b = hosts[0].d, hosts[1].d
    job = migrate_slowly(a, tmp_path, 3)
    b.wait_for(lambda: staged_supervisors(b), what="the staged supervisor")
    st, _ = a.api("POST", "/v1/jobs/%s/cancel" % job["id"])
    assert st in (200, 202), st
    done = job_end(a, job)
    assert done["state"] in ("cancelled", "failed"), done
    assert len(calls(tmp_path, "dump")) == 0
    assert not calls(tmp_path, "restore")
    runs_on(a)
    target_clean(b)
    b.wait_for(lambda: not staged_supervisors(b), what="the staged supervisor to end")


def test_target_dies_mid_migration(hosts, tmp_path):
    a, b = hosts[0].d, hosts[1].d
    job = migrate_slowly(a, tmp_path, 2)
    b.kill9()
    done = job_end(a, job)
    assert done["state"] == "failed", done
    runs_on(a)


def test_refused_by_target_and_offline(hosts):
    a, b = hosts[0].d, hosts[1].d
    start_ct(a)
    b.kvz("create", "ct", CT, "--template", "busybox", "--disk", "128M")
    r = a.kvz("migrate", CT, "--to", "b", check=False)
    assert r.returncode != 0 and "already has a guest named %s" % CT in r.stderr, r.stderr
    runs_on(a)
    r = a.kvz("migrate", CT, "--to", "b", "--offline", check=False)
    assert r.returncode != 0 and "moves only live" in r.stderr, r.stderr
    st, ans = a.api("POST", "/v1/guests/%s/migrate" % CT, {"to": "b", "pre_dumps": 11})
    assert st == 400 and "pre_dumps" in ans["error"]["message"]
    r = a.kvz("migrate", CT, "--to", "b", "--pre-dumps", "11", check=False)
    assert r.returncode != 0 and "--pre-dumps: want a number from 0 to 10" in r.stderr, r.stderr
    runs_on(a)


def reserve(b, hb, name):
    cfg = {"template": "busybox", "disk_size": 1 << 20, "command": ["/bin/true"]}
    st, ans = tcp_api(hb, "POST", "/v1/migrations",
                      {"name": name, "type": "ct", "config": cfg, "autostart": False,
                       "running": True, "live": True, "cpu_model": "x", "disk": "none"},
                      token=hb.token)
    assert st in (200, 201), ans
    return ans


def rec(kind, body):
    return kind + struct.pack(">Q", len(body)) + body


HOSTILE = {
    "not-disk-first": rec(b"E", b""),
    "disk-too-big": rec(b"D", struct.pack(">Q", 1 << 40)),
    "range-outside": rec(b"D", struct.pack(">Q", 1 << 20)) +
    rec(b"B", struct.pack(">Q", (1 << 20) - 2) + b"abcd"),
    "image-before-checkpoint": rec(b"D", struct.pack(">Q", 4096)) +
    rec(b"I", b"\x06core-1xx"),
    "truncated": rec(b"D", struct.pack(">Q", 4096)) + b"B\x00\x00",
    "unknown-kind": rec(b"D", struct.pack(">Q", 4096)) + rec(b"Z", b""),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_streams_refused(hosts, case):
    """A peer with the token and the proof sending a malformed stream: the
    target refuses it and keeps nothing (the parser's own cases, a path
    out of the images directory among them, are fuzzed: fuzz_ct_stream)."""
    a, b = hosts
    ans = reserve(b.d, b, "evil")
    s = socket.create_connection(("127.0.0.1", ans["port"]), timeout=10)
    s.sendall(ans["proof"].encode() + HOSTILE[case])
    s.settimeout(20)
    try:
        # The target may have refused and reset it already (ENOTCONN).
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""  # no confirmation
    except OSError:
        pass  # reset: closed with the rest unread
    s.close()
    b.d.wait_for(lambda: b.d.api("GET", "/v1/guests/evil")[0] == 404, what="the drop")
    target_clean(b.d, "evil")
    assert not any(e["type"] == "migrated-in" for e in b.d.events("evil"))
