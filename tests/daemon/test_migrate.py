"""Migration between two kvzd on this host (own state directories,
each listening on TCP with its own token, each registering the other as a
node) with the real kvz-vmm and the snapcount test guest on host /dev/kvm:
there and back with the counter going on; the target killed mid-migration;
the source kvzd killed mid-migration; hostile peers on the reservation API
and on the migration port. Skips where kvz-vmm, the guest or /dev/kvm is
missing."""
import fcntl
import json
import os
import re
import socket
import sqlite3
import subprocess
import time

import pytest

from kvzd_harness import (BUILD, FAKE, KVZ, Kvzd, fake_kvzd, free_port, no_sanitizer_report,
                          stop_all, tcp_request)

KVZ_VMM = os.path.join(BUILD, "src/vmm/kvz-vmm")
SNAPCOUNT = os.path.join(BUILD, "tests/guests/snapcount.elf")
TOKEN_A = "migrate-token-a-0123456789abcdef"
TOKEN_B = "migrate-token-b-0123456789abcdef"


def write_token(d, token, name):
    path = os.path.join(d.dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (token + "\n").encode())
    os.close(fd)
    return path


class Host:
    """A kvzd listening on TCP with its token."""

    def __init__(self, token):
        self.d = Kvzd(vmm=KVZ_VMM, images_dirs=[os.path.dirname(SNAPCOUNT)])
        self.token = token
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.tokfile = write_token(self.d, token, "own-token")

    def start(self):
        self.d.start(["--listen", "127.0.0.1:%d" % self.port, "--token-file", self.tokfile])
        return self.d


def tcp_api(host, method, path, body=None, token=None):
    """A request on a kvzd's TCP API as a peer would make it."""
    status, text = tcp_request(host.port, method, path, body, token)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def pair_up(a, b):
    """Starts hosts a and b (tokens a.token, b.token), each a node of the
    other ("a", "b")."""
    a.start()
    b.start()
    a.d.kvz("node", "add", "b", b.url, "--token-file", write_token(a.d, b.token, "b-token"))
    b.d.kvz("node", "add", "a", a.url, "--token-file", write_token(b.d, a.token, "a-token"))


def terminate_pair(a, b):
    """Stops both kvzd; their logs."""
    logs = ""
    for h in (a, b):
        h.d.terminate()
        logs += h.d.read_log()
    return logs


def paired_hosts(prepare=None):
    """Hosts a and b with the real kvz-vmm, each a node of the other
    (generator: a fixture's body); prepare(host) runs before each kvzd
    starts."""
    if not os.path.exists(KVZ_VMM) or not os.path.exists(SNAPCOUNT):
        pytest.skip("kvz-vmm or the snapcount test guest not built")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no usable /dev/kvm on this machine")
    a, b = Host(TOKEN_A), Host(TOKEN_B)
    for h in (a, b):
        if prepare:
            prepare(h)
    pair_up(a, b)
    yield a, b
    logs = terminate_pair(a, b)
    a.d.cleanup()
    b.d.cleanup()
    no_sanitizer_report(logs)


@pytest.fixture
def hosts():
    yield from paired_hosts()


def console_hex(d, name, pattern):
    """The hex numbers a guest printed on its console, matched by pattern."""
    con = subprocess.run(["timeout", "2", KVZ, "--socket", d.socket, "console", name],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True)
    return [int(m, 16) for m in re.findall(pattern, con.stdout)]


def counts(d, name):
    """The counts snapcount.elf has printed on its console."""
    return console_hex(d, name, r"n=([0-9a-f]{16}) ok")


def counter_at_least(d, name, n, timeout=120):
    return d.wait_for(lambda: (lambda c: c and c[-1] >= n and c[-1])(counts(d, name)),
                      timeout=timeout, what="the counter to reach %d" % n)


def start_counter(d, disk="16M"):
    d.kvz("create", "vm", "sc", "--kernel", SNAPCOUNT, "--memory", "64M", "--disk", disk)
    with open(os.path.join(d.state, "images/sc.img"), "r+b") as f:
        f.write(b"DISK-TRAVELS-TOO")
    d.kvz("start", "sc")
    return counter_at_least(d, "sc", 3)


def types(d, guest):
    return [e["type"] for e in d.events(guest)]


def check_gone(d, name="sc"):
    assert d.api("GET", "/v1/guests/%s" % name)[0] == 404
    assert not os.path.exists(os.path.join(d.state, "images/%s.img" % name))
    mig = os.path.join(d.state, "migrations")
    assert not os.path.exists(mig) or os.listdir(mig) == []


def migrate(src, dst, node):
    """kvz migrate there; checks both sides; returns the last count seen on
    the source before."""
    before = counts(src, "sc")[-1]
    r = src.kvz("migrate", "sc", "--to", node, "--offline")
    last = r.stdout.strip().split("\n")[-1]
    assert re.match(r"migrated sc to %s: total \d+ ms, downtime \d+ ms, sent \S+ \(\d+ bytes\), "
                    r"disk copied$" % node, last), r.stdout
    check_gone(src)
    assert "migrated-out" in types(src, "sc")
    g = dst.guest("sc")
    assert g["state"] == "running" and g["config"]["disk_path"] == os.path.join(
        dst.state, "images/sc.img")
    assert "migrated-in" in types(dst, "sc")
    with open(os.path.join(dst.state, "images/sc.img"), "rb") as f:
        assert f.read(16) == b"DISK-TRAVELS-TOO"
    return before


def test_migrate_offline_there_and_back(hosts):
    a, b = hosts[0].d, hosts[1].d
    start_counter(a)
    history = a.wait_for(lambda: (lambda s: len(s) >= 3 and s)(
        a.api("GET", "/v1/guests/sc/stats")[1]["samples"]), what="samples on a")
    before = migrate(a, b, "b")
    # The usage history came along.
    there = [x["ts_ms"] for x in b.api("GET", "/v1/guests/sc/stats")[1]["samples"]]
    assert all(x["ts_ms"] in there for x in history[:3]), (history[:3], there[:5])
    # The counter goes on from where it was: no restart from zero.
    first = b.wait_for(lambda: (counts(b, "sc") or [None])[0], timeout=60,
                       what="the counter on b")
    assert before <= first <= before + 50, (before, first)
    later = counter_at_least(b, "sc", first + 3)
    back = migrate(b, a, "a")
    assert back >= later
    first = a.wait_for(lambda: (counts(a, "sc") or [None])[0], timeout=60,
                       what="the counter back on a")
    assert back <= first <= back + 50, (back, first)
    counter_at_least(a, "sc", first + 2)


def test_migrate_refused_when_target_lacks(hosts):
    a, b = hosts[0].d, hosts[1].d
    start_counter(a)
    b.kvz("create", "vm", "sc", "--kernel", SNAPCOUNT, "--memory", "64M")
    r = a.kvz("migrate", "sc", "--to", "b", "--offline", check=False)
    assert r.returncode == 1 and "already has a guest named sc" in r.stderr, r
    b.kvz("destroy", "sc")
    r = a.kvz("migrate", "sc", "--to", "nowhere", "--offline", check=False)
    assert r.returncode == 1 and "no node named nowhere" in r.stderr
    assert a.guest("sc")["state"] == "running"
    assert b.api("GET", "/v1/guests/sc")[0] == 404


def test_migrate_target_killed(hosts):
    """kill -9 of the target kvzd while the disk travels: the guest runs on
    at the source; the restarted target has nothing of it."""
    ha, hb = hosts
    a, b = ha.d, hb.d
    start_counter(a, disk="1G")
    with open(os.path.join(a.state, "images/sc.img"), "r+b") as f:
        f.truncate(1 << 30)
        f.seek((1 << 30) - 16)
        f.write(b"END-OF-THE-DISK!")
    proc = subprocess.Popen([KVZ, "--socket", a.socket, "migrate", "sc", "--to", "b",
                             "--offline"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    b.wait_for(lambda: b.api("GET", "/v1/guests/sc")[0] == 200, timeout=30,
               what="the incoming record on b")
    hb.d.kill9()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    g = a.guest("sc")
    assert g["state"] == "running"
    seen = counts(a, "sc")[-1]
    counter_at_least(a, "sc", seen + 3)
    assert "migration-failed" in types(a, "sc")
    hb.start()
    check_gone(b)
    assert "migration-discarded" in types(b, "sc")


def test_migrate_source_killed(hosts):
    """kill -9 of the source kvzd mid-migration: after its restart the guest
    runs at the source only."""
    ha, hb = hosts
    a, b = ha.d, hb.d
    start_counter(a, disk="1G")
    with open(os.path.join(a.state, "images/sc.img"), "r+b") as f:
        f.truncate(1 << 30)
    subprocess.Popen([KVZ, "--socket", a.socket, "migrate", "sc", "--to", "b", "--offline",
                      "--detach"], stdout=subprocess.DEVNULL).wait()
    b.wait_for(lambda: b.api("GET", "/v1/guests/sc")[0] == 200, timeout=30,
               what="the incoming record on b")
    ha.d.kill9()
    ha.start()
    g = a.guest("sc")
    assert g["state"] == "running", g
    seen = counts(a, "sc")[-1]
    counter_at_least(a, "sc", seen + 3)
    b.wait_for(lambda: b.api("GET", "/v1/guests/sc")[0] == 404, timeout=60,
               what="b to discard")
    check_gone(b)


def qmp(path, *cmds):
    """Commands on a kvz-vmm's QMP socket (as kvzd would send them)."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rw")
    f.readline()
    for c in ("qmp_capabilities",) + cmds:
        f.write(json.dumps({"execute": c}) + "\n")
        f.flush()
        while "return" not in json.loads(f.readline()):
            pass
    s.close()


def killed_after_handing_over(h):
    """The source kvzd killed right after it recorded the hand-over to b
    (state "migrated", the VM paused by the save), before it forgot the
    guest: what the store and the VM look like then."""
    g = h.d.guest("sc")
    qmp(g["qmp"], "stop")
    h.d.kill9()
    db = sqlite3.connect(os.path.join(h.d.state, "kvzd.db"))
    cfg = json.loads(db.execute("SELECT config FROM guests WHERE name = 'sc'").fetchone()[0])
    cfg["migrating_to"] = "b"
    db.execute("UPDATE guests SET state = 'migrated', config = ? WHERE name = 'sc'",
               (json.dumps(cfg),))
    db.commit()
    db.close()
    return g["pid"]


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_restart_after_hand_over_target_runs_it(hosts):
    """Killed after the commit reached the target: the restarted source
    sees the target run the guest and forgets its paused copy."""
    ha, hb = hosts
    a, b = ha.d, hb.d
    start_counter(a)
    b.kvz("create", "vm", "sc", "--kernel", SNAPCOUNT, "--memory", "64M")
    b.kvz("start", "sc")
    pid = killed_after_handing_over(ha)
    ha.start()
    check_gone(a)
    assert not pid_alive(pid)
    ev = [e for e in a.events("sc") if e["type"] == "migrated-out"]
    assert ev and "settled after a kvzd restart" in ev[-1]["detail"]
    assert b.guest("sc")["state"] == "running"


def handed_over_target_down(ha, hb):
    """The source restarted after a hand-over to b, b down: the guest stays
    paused as "migrated"; its supervisor's pid."""
    start_counter(ha.d)
    pid = killed_after_handing_over(ha)
    hb.d.terminate()
    ha.start()
    assert ha.d.guest("sc")["state"] == "migrated" and pid_alive(pid)
    return pid


def taken_back(a, b, pid):
    """The source runs the guest on in the same VM; b has nothing."""
    g = a.guest("sc")
    assert g["state"] == "running" and g["pid"] == pid
    assert "migrating_to" not in g["config"]
    seen = counts(a, "sc")[-1]
    counter_at_least(a, "sc", seen + 3)
    assert b.api("GET", "/v1/guests/sc")[0] == 404


def test_restart_after_hand_over_target_lacks_it(hosts):
    """Killed after recording the hand-over, the target without the guest
    (unreachable first: the source keeps it paused and refuses to start it;
    then reachable): the source takes it back and it runs on."""
    ha, hb = hosts
    pid = handed_over_target_down(ha, hb)
    r = ha.d.kvz("start", "sc", check=False)
    assert r.returncode == 1 and "migrat" in r.stderr
    ha.d.terminate()
    hb.start()
    ha.start()
    taken_back(ha.d, hb.d, pid)


def test_hand_over_settled_once_the_target_answers(hosts):
    """Left "migrated" with the target unreachable (a commit whose answer
    was lost looks the same): once the target answers again the source's
    node health round settles it, with no restart: the target lacks the
    guest, so the source takes it back and it runs on."""
    ha, hb = hosts
    a = ha.d
    pid = handed_over_target_down(ha, hb)
    time.sleep(2 * a.interval)    # rounds that find b unreachable change nothing
    assert a.guest("sc")["state"] == "migrated"
    hb.start()
    a.wait_for(lambda: a.guest("sc")["state"] == "running", timeout=30,
               what="a health round to settle the hand-over")
    taken_back(a, hb.d, pid)
    ev = [e for e in a.events("sc") if e["type"] == "migration-failed"]
    assert ev and "settled once the target answered" in ev[-1]["detail"], ev


def closed_without_ack(s):
    """The target closed the connection without confirming ('K')."""
    try:
        got = s.recv(1)
    except ConnectionResetError:
        got = b""
    s.close()
    return got == b""


def test_migrate_cancelled(hosts):
    """kvz job cancel while the disk travels: the VM runs on at the source,
    the target discards."""
    a, b = hosts[0].d, hosts[1].d
    start_counter(a, disk="1G")
    with open(os.path.join(a.state, "images/sc.img"), "r+b") as f:
        f.truncate(1 << 30)
    job = json.loads(a.kvz("--json", "migrate", "sc", "--to", "b", "--offline",
                           "--detach").stdout)
    a.wait_for(lambda: a.kvz_json("job", "show", str(job["id"]))["phase"] == "sending disk",
               timeout=60, what="the disk to be sent")
    a.kvz("job", "cancel", str(job["id"]))
    a.kvz("job", "wait", str(job["id"]), check=False)
    assert a.kvz_json("job", "show", str(job["id"]))["state"] == "cancelled"
    assert a.guest("sc")["state"] == "running"
    seen = counts(a, "sc")[-1]
    counter_at_least(a, "sc", seen + 3)
    b.wait_for(lambda: b.api("GET", "/v1/guests/sc")[0] == 404, timeout=60,
               what="b to discard")
    check_gone(b)
    # And it can go after all.
    migrate(a, b, "b")


def reservation(name="evil"):
    with open("/proc/cpuinfo") as f:
        model = re.search(r"model name\s*:\s*(.*)", f.read()).group(1).strip()
    return {"name": name, "type": "vm", "running": True, "cpu_model": model, "disk": "none",
            "autostart": False,
            "config": {"kernel": SNAPCOUNT, "memory": 64 << 20, "cpus": 1}}


def test_migration_attacks(hosts):
    hb = hosts[1]
    b = hb.d
    # No token, a wrong token: no reservation, no commit, no discard.
    for tok in (None, "wrong-token-0123456789abcdef0123"):
        assert tcp_api(hb, "POST", "/v1/migrations", reservation(), tok)[0] == 401
        assert tcp_api(hb, "POST", "/v1/migrations/evil/commit", None, tok)[0] == 401
        assert tcp_api(hb, "DELETE", "/v1/migrations/evil", None, tok)[0] == 401
    assert b.api("GET", "/v1/guests/evil")[0] == 404
    # Refusals that name what is missing.
    bad = dict(reservation(), cpu_model="Imaginary CPU 9000")
    st, ans = tcp_api(hb, "POST", "/v1/migrations", bad, TOKEN_B)
    assert st == 409 and "CPU model differs" in ans["error"]["message"]
    bad = reservation()
    bad["config"] = dict(bad["config"], memory=1 << 50)
    st, ans = tcp_api(hb, "POST", "/v1/migrations", bad, TOKEN_B)
    assert st == 409 and "not enough memory" in ans["error"]["message"]
    bad = dict(reservation(), disk="shared")
    bad["config"] = dict(bad["config"], disk_path="/nonexistent/disk.img")
    st, ans = tcp_api(hb, "POST", "/v1/migrations", bad, TOKEN_B)
    assert st == 409 and "shared storage" in ans["error"]["message"]
    bad = reservation()
    bad["config"] = dict(bad["config"], bridge="nosuchbr0")
    st, ans = tcp_api(hb, "POST", "/v1/migrations", bad, TOKEN_B)
    assert st == 409 and "no bridge nosuchbr0" in ans["error"]["message"]
    assert tcp_api(hb, "POST", "/v1/migrations", {"name": "../x"}, TOKEN_B)[0] == 400
    assert b.api("GET", "/v1/guests")[1] == []

    # A real reservation; a forged proof on its port is dropped.
    st, ans = tcp_api(hb, "POST", "/v1/migrations", reservation(), TOKEN_B)
    assert st == 201, ans
    port, proof = ans["port"], ans["proof"]
    assert b.guest("evil")["state"] == "incoming"
    r = b.kvz("start", "evil", check=False)
    assert r.returncode == 1 and "migration" in r.stderr
    forged = ("0" if proof[0] != "0" else "1") + proof[1:]
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(forged.encode() + b"S" + (8).to_bytes(8, "big") + b"AAAAAAAA" + b"E" + bytes(8))
    assert closed_without_ack(s)
    b.wait_for(lambda: "migration-proof-rejected" in types(b, "evil"), what="the rejection")
    assert b.guest("evil")["state"] == "incoming"
    st, ans = tcp_api(hb, "POST", "/v1/migrations/evil/commit", None, TOKEN_B)
    assert st == 409 and "not arrived" in ans["error"]["message"]
    # The right proof with a hostile stream: a record over its limit ends
    # the incoming guest, with one line saying why.
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(proof.encode() + b"S" + (1 << 62).to_bytes(8, "big"))
    assert closed_without_ack(s)
    b.wait_for(lambda: b.api("GET", "/v1/guests/evil")[0] == 404, what="the discard")
    ev = [e for e in b.events("evil") if e["type"] == "migration-discarded"]
    assert ev and "over its limit" in ev[-1]["detail"]
    check_gone(b, "evil")

    # Unknown record kinds, a repeated record, a stream cut short, an end
    # without the state: each is refused and leaves nothing.
    for stream, why in ((b"X" + bytes(8), "unexpected record kind"),
                        (b"S" + (1).to_bytes(8, "big") + b"x" + b"S" + bytes(8), "sent twice"),
                        (b"S" + (100).to_bytes(8, "big") + b"short", "stream cut"),
                        (b"E" + bytes(8), "without the machine state")):
        st, ans = tcp_api(hb, "POST", "/v1/migrations", reservation(), TOKEN_B)
        assert st == 201, ans
        s = socket.create_connection(("127.0.0.1", ans["port"]), timeout=10)
        s.sendall(ans["proof"].encode() + stream)
        s.shutdown(socket.SHUT_WR)
        assert closed_without_ack(s)
        b.wait_for(lambda: b.api("GET", "/v1/guests/evil")[0] == 404, what="the discard")
        ev = [e for e in b.events("evil") if e["type"] == "migration-discarded"]
        assert why in ev[-1]["detail"], (why, ev[-1])
    check_gone(b, "evil")

    # A complete stream whose commit brings a malformed history (rows, or
    # each row's disks): refused, and the incoming guest goes.
    row = [0, int(time.time() * 1000), 1.5, 0, 0, 0, 0, 0, 0]
    disk = {"device": "vda", "used": 1, "size": 2, "rd_bytes": 3, "wr_bytes": 4}
    bad_bodies = [{"samples": x} for x in (
        [[1, 2]], [[0, 0, 0, 0, 0, 0, 0, 0, 0]], "x",
        [[0, int(time.time() * 1000), -1, 0, 0, 0, 0, 0, 0]])] + [
        {"samples": [row], "sample_disks": x} for x in (
            [], "x", [None, None], [[disk] * 9], [[dict(disk, device='x"} 1\nkvz_evil{')]],
            [[dict(disk, device="")]], [[dict(disk, used=-1)]], [[dict(disk, wr_bytes="1")]],
            [[{"device": "vda"}]], [["vda"]])]
    for body in bad_bodies:
        st, ans = tcp_api(hb, "POST", "/v1/migrations", reservation(), TOKEN_B)
        assert st == 201, ans
        s = socket.create_connection(("127.0.0.1", ans["port"]), timeout=10)
        s.sendall(ans["proof"].encode() + b"S" + (4).to_bytes(8, "big") + b"junk" + b"E" +
                  bytes(8))
        assert s.recv(1) == b"K"     # sent once the stream is recorded complete
        s.close()
        st, ans = tcp_api(hb, "POST", "/v1/migrations/evil/commit", body, TOKEN_B)
        assert st == 400 and "sample" in ans["error"]["message"], (body, ans)
        assert b.api("GET", "/v1/guests/evil")[0] == 404
        assert b.api("GET", "/v1/guests/evil/stats")[0] == 404
        check_gone(b, "evil")

    # The source discards a reservation it made.
    st, ans = tcp_api(hb, "POST", "/v1/migrations", reservation(), TOKEN_B)
    assert st == 201
    assert tcp_api(hb, "DELETE", "/v1/migrations/evil", None, TOKEN_B)[0] == 200
    b.wait_for(lambda: b.api("GET", "/v1/guests/evil")[0] == 404, what="the discard")
    with pytest.raises(OSError):
        s = socket.create_connection(("127.0.0.1", ans["port"]), timeout=5)
        s.sendall(ans["proof"].encode())
        if s.recv(1) == b"":
            raise ConnectionResetError("closed")
    check_gone(b, "evil")

    # A kvzd that stops or restarts discards what was coming in.
    assert tcp_api(hb, "POST", "/v1/migrations", reservation(), TOKEN_B)[0] == 201
    b.terminate()
    hb.start()
    check_gone(b, "evil")
    assert "migration-discarded" in types(b, "evil")


# ---- live, with the stand-in supervisor playing kvz-vmm's side of the
# contract (getfd + migrate fd:mig on the source, --incoming defer +
# getfd + migrate-incoming fd:mig on the target): kvzd's own logic, until
# the real kvz-vmm has migrate-incoming.

def fake_qmp(path, cmd, args=None):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rw")
    f.readline()
    out = None
    for c, a in (("qmp_capabilities", None), (cmd, args)):
        f.write(json.dumps({"execute": c, "arguments": a or {}}) + "\n")
        f.flush()
        while True:
            m = json.loads(f.readline())
            if "return" in m or "error" in m:
                out = m
                break
    s.close()
    return out


@pytest.fixture
def fake_hosts():
    a, b = fake_kvzd(), fake_kvzd()
    if not a or not b:
        pytest.skip("stand-in supervisor not built: " + FAKE)
    b.images_dirs += a.images_dirs     # the same kernel path on both "hosts"
    pa, pb = free_port(), free_port()
    # What a test restarts them with.
    a.args = ["--listen", "127.0.0.1:%d" % pa, "--token-file", write_token(a, TOKEN_A, "own")]
    b.args = ["--listen", "127.0.0.1:%d" % pb, "--token-file", write_token(b, TOKEN_B, "own")]
    a.start(a.args)
    b.start(b.args)
    a.kvz("node", "add", "b", "http://127.0.0.1:%d" % pb, "--token-file",
          write_token(a, TOKEN_B, "b-token"))
    yield a, b
    no_sanitizer_report(stop_all(a, b))


def vm_log(d, name):
    with open(os.path.join(d.state, "logs/%s.log" % name)) as f:
        return f.read()


def test_live_migration_contract(fake_hosts):
    a, b = fake_hosts
    a.kvz("create", "vm", "lv", "--kernel", a.kernel, "--memory", "64M")
    a.kvz("start", "lv")
    fake_qmp(a.guest("lv")["qmp"], "x-fake-set", {"value": "live-42"})
    r = a.kvz("migrate", "lv", "--to", "b", "--downtime", "50", "--bandwidth", "80")
    last = r.stdout.strip().split("\n")[-1]
    assert re.match(r"migrated lv to b: total \d+ ms, downtime \d+ ms, sent \S+ \(\d+ bytes\), "
                    r"disk none$", last), r.stdout
    check_gone(a, "lv")
    g = b.guest("lv")
    assert g["state"] == "running"
    assert fake_qmp(g["qmp"], "x-fake-get")["return"]["value"] == "live-42"
    assert "migrated-in" in types(b, "lv")
    # The target's supervisor was started waiting and fed the socket.
    log = vm_log(b, "lv")
    assert "migrate-incoming fd:mig" in log and "incoming complete: value live-42" in log
    jobs = a.kvz_json("job", "list")
    assert jobs[-1]["type"] == "migrate" and jobs[-1]["params"]["offline"] is False
    assert jobs[-1]["params"]["downtime_ms"] == 50
    assert jobs[-1]["params"]["max_bandwidth"] == 80 * 1000000 // 8


def test_live_migration_fails_source_runs_on(fake_hosts):
    """The source's supervisor fails half-way: the VM runs on at the source
    (cont), the target's waiting supervisor is gone, and so is its record."""
    a, b = fake_hosts
    a.kvz("create", "vm", "lf", "--kernel", a.kernel, "--memory", "64M", "--cmdline",
          "fake-migrate=fail")
    a.kvz("start", "lf")
    r = a.kvz("migrate", "lf", "--to", "b", check=False)
    assert r.returncode == 1 and "memory read error" in r.stderr, r
    g = a.guest("lf")
    assert g["state"] == "running"
    assert fake_qmp(g["qmp"], "query-status")["return"]["status"] == "running"
    b.wait_for(lambda: b.api("GET", "/v1/guests/lf")[0] == 404, what="b to discard")
    assert "migration-discarded" in types(b, "lf")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        assert not (b.dir.encode() in cmd and b"--name\0lf\0" in cmd), cmd


@pytest.mark.parametrize("mode, why", [
    # The target's kvz-vmm ends on a bad stream with one line in its log.
    ("incoming-die", "migrate-incoming: fake: a device record it cannot load"),
])
def test_live_migration_target_side_fails_says_why(fake_hosts, mode, why):
    """The target's side of a live stream fails (the source then sees only
    a broken pipe): the job's error says what the target said, the guest
    runs on at the source, and the target keeps nothing."""
    a, b = fake_hosts
    a.kvz("create", "vm", "lv2", "--kernel", a.kernel, "--memory", "64M", "--cmdline",
          "fake-migrate=" + mode)
    a.kvz("start", "lv2")
    r = a.kvz("migrate", "lv2", "--to", "b", check=False)
    assert r.returncode == 1, r
    err = r.stderr.strip().split("\n")[-1]
    assert "; on node b: " in err and why in err, err
    assert a.guest("lv2")["state"] == "running"
    assert b.api("GET", "/v1/guests/lv2")[0] == 404
    ev = [e for e in b.events("lv2") if e["type"] == "migration-discarded"]
    assert len(ev) == 1 and why in ev[0]["detail"], ev


@pytest.mark.parametrize("mode", [
    # The answer to migrate-incoming comes 7 s late, past kvzd's 5 s QMP
    # timeout: the target waits for it while its kvz-vmm lives.
    "incoming-hang",
    # The stream is read whole, its load ends 7 s later: the source's
    # commit, past the peer client's 5 s, is answered 503 (still loading)
    # and asked again, never taken as lost (which took the target's
    # "incoming" for a no: two copies ran).
    "incoming-slow-load",
])
def test_live_migration_slow_target_answer(fake_hosts, mode):
    """A slow but healthy target (as on a loaded host): the move
    completes, and only the target runs the guest."""
    a, b = fake_hosts
    a.kvz("create", "vm", "ls", "--kernel", a.kernel, "--memory", "64M", "--cmdline",
          "fake-migrate=" + mode)
    a.kvz("start", "ls")
    fake_qmp(a.guest("ls")["qmp"], "x-fake-set", {"value": "slow-7"})
    r = a.kvz("migrate", "ls", "--to", "b", check=False)
    assert r.returncode == 0, r
    check_gone(a, "ls")
    g = b.guest("ls")
    assert g["state"] == "running"
    assert fake_qmp(g["qmp"], "x-fake-get")["return"]["value"] == "slow-7"
    assert "migration-discarded" not in types(b, "ls")
    assert "incoming complete: value slow-7" in vm_log(b, "ls")


@pytest.mark.parametrize("end", ["kill", "cancel"])
def test_live_migration_target_never_answers(fake_hosts, end):
    """The target's kvz-vmm never answers migrate-incoming. The target waits
    past kvzd's QMP timeout, until its kvz-vmm is killed (it says so) or
    the source's job is cancelled (it says it got no answer); either way
    the job fails with that reason, the guest runs on at the source with
    its state, and the target keeps nothing."""
    a, b = fake_hosts
    a.kvz("create", "vm", "lk", "--kernel", a.kernel, "--memory", "64M", "--cmdline",
          "fake-migrate=incoming-stuck")
    a.kvz("start", "lk")
    fake_qmp(a.guest("lk")["qmp"], "x-fake-set", {"value": "stays-here"})
    st, job = a.api("POST", "/v1/guests/lk/migrate", {"to": "b"})
    assert st in (200, 201, 202), job
    b.wait_for(lambda: b.api("GET", "/v1/guests/lk")[0] == 200 and
               "migrate-incoming fd:mig" in vm_log(b, "lk"), what="migrate-incoming on b")
    time.sleep(6.5)     # past the 5 s QMP timeout that used to end it
    assert a.job(job["id"])["state"] == "running"
    assert b.guest("lk")["state"] == "incoming"
    if end == "kill":
        os.kill(b.guest("lk")["pid"], 9)
        why = "lk: migrate-incoming: "
    else:
        a.kvz("job", "cancel", str(job["id"]))
        why = "discarded: lk: migrate-incoming: no answer from kvz-vmm in "
    done = a.wait_job(job["id"], timeout=60)
    assert done["state"] == ("failed" if end == "kill" else "cancelled"), done
    assert "; on node b: " + why in done["error"], (done, b.events("lk"))
    g = a.guest("lk")
    assert g["state"] == "running"
    assert fake_qmp(g["qmp"], "x-fake-get")["return"]["value"] == "stays-here"
    b.wait_for(lambda: b.api("GET", "/v1/guests/lk")[0] == 404, what="b to discard")
    ev = [e for e in b.events("lk") if e["type"] == "migration-discarded"]
    assert len(ev) == 1 and why in ev[0]["detail"], ev


def test_live_migration_fails_source_left_paused_then_resumed(fake_hosts):
    """The source's supervisor fails the move after it let go of its disk,
    which another process (the target, played by this test) holds now: as
    kvz-vmm, it keeps the VM paused and refuses cont. kvzd's record, the
    REST state, `kvz list`, the events and the job's error say paused and
    why, never running; a restarted kvzd keeps it so; a move of it is
    refused. Once the disk is free, `kvz start` runs it on."""
    a, b = fake_hosts
    a.kvz("create", "vm", "lh", "--kernel", a.kernel, "--memory", "64M", "--disk", "8M",
          "--cmdline", "fake-migrate=fail-held")
    a.kvz("start", "lh")
    held = os.open(a.guest("lh")["config"]["disk_path"], os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        r = a.kvz("migrate", "lh", "--to", "b", check=False)
        assert r.returncode == 1, r
        err = r.stderr.strip().split("\n")[-1]
        assert "memory read error; lh did not run on here: it stays paused: cannot resume: " \
               "disk 0: in use by another process" in err, err
        g = a.guest("lh")
        assert g["state"] == "paused", g
        assert g["state_reason"].startswith("migration failed and it did not run on: ") and \
            "disk 0: in use by another process" in g["state_reason"], g
        assert fake_qmp(g["qmp"], "query-status")["return"]["status"] == "paused"
        ev = {e["type"]: e["detail"] for e in a.events("lh")}
        assert ev["paused"] == g["state_reason"], ev
        assert "lh did not run on here: it stays paused" in ev["migration-failed"], ev
        table = a.kvz("list").stdout
        assert re.search(r"^lh +vm +paused ", table, re.M), table
        assert "  " + g["state_reason"] in table, table
        b.wait_for(lambda: b.api("GET", "/v1/guests/lh")[0] == 404, what="b to discard")
        # The monitor leaves it paused (its supervisor lives), a restarted
        # kvzd adopts it paused, with its reason.
        time.sleep(2.5)
        a.terminate()
        a.start(a.args)
        g2 = a.guest("lh")
        assert g2["state"] == "paused" and g2["state_reason"] == g["state_reason"], g2
        assert g2["pid"] == g["pid"]
        # While the disk is held: a start says why and changes nothing;
        # a move is refused.
        r = a.kvz("start", "lh", check=False)
        assert r.returncode == 1 and "lh did not run: " in r.stderr and \
            "in use by another process" in r.stderr, r
        assert a.guest("lh")["state"] == "paused"
        r = a.kvz("migrate", "lh", "--to", "b", check=False)
        assert r.returncode == 1 and "guest lh is paused (migration failed" in r.stderr, r
        assert fake_qmp(g["qmp"], "query-status")["return"]["status"] == "paused"
    finally:
        os.close(held)
    a.kvz("start", "lh")
    g = a.guest("lh")
    assert g["state"] == "running" and "state_reason" not in g, g
    assert fake_qmp(g["qmp"], "query-status")["return"]["status"] == "running"
    assert "resumed" in types(a, "lh")
    assert "lh" in a.kvz("list").stdout and "paused" not in a.kvz("list").stdout


def test_job_result_carries_the_hand_over(fake_hosts):
    """A completed move's job says, in its result, the figures of the final
    line and the hand-over's steps after the stream, in order; the CLI
    prints them; a failed one has no result."""
    a, b = fake_hosts
    a.kvz("create", "vm", "ho", "--kernel", a.kernel, "--memory", "64M")
    a.kvz("start", "ho")
    r = a.kvz("migrate", "ho", "--to", "b")
    lines = r.stdout.strip().split("\n")
    assert re.match(r"hand-over after the stream: target told \+\d+ ms, its guest running "
                    r"[-+]\d+ ms \(its clock\), committed \+\d+ ms, source stopped \+\d+ ms, "
                    r"record moved \+\d+ ms$", lines[-2]), r.stdout
    job = a.kvz_json("job", "list")[-1]
    res = job["result"]
    assert res["live"] is True and res["disk"] == "none" and res["sent"] > 4 << 20, res
    h = res["handover"]
    # One host, one clock: every step after the stream's end, in order;
    # the target's guest ran before it answered the commit.
    assert abs(h["completed_at_ms"] - job["ended_ms"]) < 60000, (h, job)
    assert 0 <= h["told_ms"] <= h["committed_ms"] <= h["source_stopped_ms"] <= \
        h["record_moved_ms"], h
    assert -1000 < h["target_running_ms"] <= h["committed_ms"], h
    assert "%d ms" % res["total_ms"] in lines[-1] and "downtime %d ms" % res["downtime_ms"] \
        in lines[-1], (res, lines[-1])
    a.kvz("create", "vm", "hf", "--kernel", a.kernel, "--memory", "64M", "--cmdline",
          "fake-migrate=fail")
    a.kvz("start", "hf")
    assert a.kvz("migrate", "hf", "--to", "b", check=False).returncode == 1
    job = a.kvz_json("job", "list")[-1]
    assert job["state"] == "failed" and job["result"] is None, job


class EvilTarget:
    """A peer that plays a target kvzd (reservation, port, commit) whose
    commit answers running_ms (the target's time its guest ran) with the
    values given, one per move."""

    def __init__(self, running, events=None, event_id=None, close_port=False):
        import http.server
        import threading
        import urllib.parse
        self.running = list(running)
        # Its events (GET /v1/events, since= as kvzd reads it), the id its
        # reservations answer, and whether its port closes at once.
        self.events, self.event_id, self.close_port = events or [], event_id, close_port
        evil = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/v1/events":
                    self.answer(200, {})
                    return
                q = urllib.parse.parse_qs(url.query)
                since, limit = int(q.get("since", ["0"])[0]), int(q.get("limit", ["100"])[0])
                self.answer(200, [e for e in evil.events if e["id"] > since][-limit:])

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/migrations":
                    ans = {"port": evil.listen(), "proof": "ab" * 32, "disk": "none"}
                    if evil.event_id is not None:
                        ans["event_id"] = evil.event_id
                    self.answer(201, ans)
                else:
                    self.answer(200, {"done": "committed", "running_ms": evil.running.pop(0)})

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def listen(self):
        """A port whose one connection is read to its end."""
        import threading
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)

        def drain():
            c, _ = ls.accept()
            while not self.close_port and c.recv(1 << 16):
                pass
            c.close()
            ls.close()
        threading.Thread(target=drain, daemon=True).start()
        return ls.getsockname()[1]


def test_hostile_target_times_in_the_commit(fake_hosts):
    """A target answering the commit with a running_ms that is no time near
    ours (the most negative integer, the largest, a string): the move
    completes and the hand-over says the target did not tell (-1), nothing
    overflows (ASan/UBSan builds check)."""
    a = fake_hosts[0]
    values = [-(1 << 63), (1 << 63) - 1, "soon"]
    evil = EvilTarget(values)
    a.kvz("node", "add", "evil", evil.url, "--token-file", write_token(a, "e" * 32, "evil-token"))
    for i, _ in enumerate(values):
        a.kvz("create", "vm", "ev%d" % i, "--kernel", a.kernel, "--memory", "64M")
        a.kvz("start", "ev%d" % i)
        a.kvz("migrate", "ev%d" % i, "--to", "evil")
        job = a.kvz_json("job", "list")[-1]
        assert job["state"] == "completed", job
        assert job["result"]["handover"]["target_running_ms"] == -1, job["result"]
    evil.http.shutdown()


def test_target_reason_is_this_moves(fake_hosts):
    """A failed move's error carries the target's reason only from the
    target's events since this move's reservation (the id it answered): a
    target whose newest event is an earlier move's discard, having logged
    nothing since, adds nothing; one that logged why after the reservation
    adds that."""
    a = fake_hosts[0]
    stale = {"id": 5, "ts_ms": 1, "guest": "tr", "type": "migration-discarded",
             "detail": "stale: an earlier move's reason"}
    evil = EvilTarget([], events=[stale], event_id=7, close_port=True)
    a.kvz("node", "add", "evil", evil.url, "--token-file", write_token(a, "e" * 32, "evil-token"))
    a.kvz("create", "vm", "tr", "--kernel", a.kernel, "--memory", "64M")
    a.kvz("start", "tr")
    r = a.kvz("migrate", "tr", "--to", "evil", check=False)
    assert r.returncode == 1 and "stale" not in r.stderr, r.stderr
    assert a.guest("tr")["state"] == "running"
    evil.events.append(dict(stale, id=9, detail="fresh: this move's reason"))
    evil.event_id = 8
    r = a.kvz("migrate", "tr", "--to", "evil", check=False)
    assert r.returncode == 1 and "; on node evil: fresh: this move's reason" in r.stderr, r.stderr
    assert "stale" not in r.stderr, r.stderr
    assert a.guest("tr")["state"] == "running"
    evil.http.shutdown()


def test_migration_carries_each_disks_history(fake_hosts):
    """The usage history that moves with the guest keeps each disk's
    figures (samples.disks): the target's series has, for the same samples,
    the same disks, device by device, as the source's had."""
    a, b = fake_hosts
    a.kvz("create", "vm", "hd", "--kernel", a.kernel, "--memory", "64M", "--disk", "8M",
          "--disk", "4M")
    a.kvz("start", "hd")
    before = a.wait_for(lambda: (lambda s: len(s) >= 2 and s)(
        [x for x in a.kvz_json("stats", "hd")["samples"] if x.get("disks")]), timeout=30,
        what="samples with the disks on a")
    assert all([x["device"] for x in smp["disks"]] == ["vda", "vdb"] for smp in before), before
    a.kvz("migrate", "hd", "--to", "b")
    there = {x["ts_ms"]: x for x in b.kvz_json("stats", "hd")["samples"]}
    for smp in before:
        assert smp["ts_ms"] in there, (smp, sorted(there))
        assert there[smp["ts_ms"]].get("disks") == smp["disks"], (smp, there[smp["ts_ms"]])


def test_live_refusals(fake_hosts):
    a, b = fake_hosts
    a.kvz("create", "vm", "ld", "--kernel", a.kernel, "--memory", "64M", "--disk", "8M")
    a.kvz("start", "ld")
    r = a.kvz("migrate", "ld", "--to", "b", "--copy-storage", "--bandwidth", "0", check=False)
    assert r.returncode == 2
    assert a.guest("ld")["state"] == "running"
    r = a.kvz("migrate", "ld", "--to", "b", "--offline", "--downtime", "5", check=False)
    assert r.returncode == 1 and "live" in r.stderr
    r = a.kvz("migrate", "ld", "--to", "b", "--downtime", "0", check=False)
    assert r.returncode == 2


def test_live_copies_a_disk_kvzd_made(fake_hosts):
    """A disk in kvzd's image dir is not shared storage: the live migration
    copies it (the target makes the empty disk the stream fills)."""
    a, b = fake_hosts
    a.kvz("create", "vm", "lc", "--kernel", a.kernel, "--memory", "64M", "--disk", "8M")
    a.kvz("start", "lc")
    r = a.kvz("migrate", "lc", "--to", "b")
    assert r.stdout.strip().endswith(", disk copied"), r.stdout
    assert not os.path.exists(os.path.join(a.state, "images/lc.img"))
    g = b.guest("lc")
    assert g["config"]["disk_path"] == os.path.join(b.state, "images/lc.img")
    assert os.path.getsize(g["config"]["disk_path"]) == 8 << 20
    assert "incoming_disk" not in g["config"]



def test_live_migration_real_vmm(hosts):
    """The live path end to end with the real kvz-vmm on both sides (pre-copy
    over the proven socket): the counter guest continues on the target."""
    a, b = hosts
    a.d.kvz("create", "vm", "lv", "--kernel", SNAPCOUNT, "--memory", "64M")
    a.d.kvz("start", "lv")
    n = counter_at_least(a.d, "lv", 3)
    r = a.d.kvz("migrate", "lv", "--to", "b")
    last = r.stdout.strip().split("\n")[-1]
    assert re.match(r"migrated lv to b: total \d+ ms, downtime \d+ ms", last), r.stdout
    check_gone(a.d, "lv")
    assert b.d.api("GET", "/v1/guests/lv")[1]["state"] == "running"
    # The target's console starts where the stream left off: no new boot,
    # and the count goes on past what the source had shown.
    m = counter_at_least(b.d, "lv", n + 2)
    assert m > n
    # And back again.
    b.d.kvz("migrate", "lv", "--to", "a")
    counter_at_least(a.d, "lv", m + 2)
    check_gone(b.d, "lv")
