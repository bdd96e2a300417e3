"""Policy actions and triggers against a real kvzd with the stand-in
supervisors (meson test 'daemon-policy-actions'): backup rules and their
retention (last N; one per day, with backups dated back by their file
times, which are the record), a webhook received by an HTTP server of the
test, a command whose exit status 1 is recorded as a failure and retried
within the limits, a command killed at its timeout, a node that stops
answering firing peer_unreachable, and the migrate plan naming the node."""
import http.client
import http.server
import json
import os
import threading
import time

import pytest

from kvzd_harness import fake_kvzd, free_port

TOKEN = "policy-node-token-0123456789abcdef"


def log(d, state=None):
    st, rows = d.api("GET", "/v1/policies/log" + ("?state=" + state if state else ""))
    assert st == 200, rows
    return rows


def add_rule(d, rule):
    d.kvz("policy", "add", "-", input=json.dumps(rule))


def on_restart(name, action, conditions=None, limits=None):
    return {"name": name, "level": "automatic", "trigger": {"event": "kvzd_restart"},
            "conditions": conditions or {"type": "ct"}, "action": action,
            "limits": limits or {"guest_cooldown_s": 0, "max_per_period": 100}}


def backups(d, name):
    return [b["name"] for b in d.kvz_json("backup", "list", name)]


def jobs_done(d):
    return all(j["state"] in ("completed", "failed", "cancelled")
               for j in d.kvz_json("job", "list"))


def restart(d):
    d.terminate()
    d.start()


def test_backup_rule_keeps_last_3(fake):
    """kvzd_restart drives the rule so that four runs take seconds, not four
    cron minutes; the schedule rule's plan shows what it would do."""
    d = fake.start()
    d.kvz("create", "ct", "c1", "--disk", "64M", "--", "/bin/sh", "-c", "sleep 1000")
    d.kvz("start", "c1")
    add_rule(d, on_restart("boot-backup", {"type": "backup", "keep_last": 3}))
    seen = []
    for n in range(1, 5):
        time.sleep(1.1)   # backup names carry the second
        restart(d)
        d.wait_for(lambda: len(log(d, "done")) == n, timeout=30, what="backup rule run %d" % n)
        d.wait_for(lambda: jobs_done(d) and len(backups(d, "c1")) == min(n, 3), timeout=30,
                   what="backup %d complete" % n)
        names = backups(d, "c1")
        seen += [b for b in names if b not in seen]
    assert len(names) == 3 and seen[0] not in names and names == seen[1:], (seen, names)
    assert "backup job" in log(d, "done")[-1]["result"]
    types = [e["type"] for e in d.events("c1")]
    assert types.count("backup-created") == 4 and types.count("backup-deleted") == 1
    # The same as a schedule: the plan says it would act on c1.
    d.kvz("policy", "remove", "boot-backup")
    add_rule(d, {"name": "nightly", "level": "automatic", "trigger": {"schedule": "0 3 * * *"},
                 "conditions": {"type": "ct"}, "action": {"type": "backup", "keep_last": 3}})
    plan = d.kvz_json("policy", "plan", "--at", "2026-12-02 03:00")
    assert [(p["rule"], p["guest"], p["would"]) for p in plan] == [("nightly", "c1", "act")]


def test_backup_rule_keeps_one_per_day(fake):
    d = fake.start()
    d.kvz("create", "ct", "c1", "--disk", "64M")
    now = time.time()
    day = 86400
    midday = now - now % day + day / 2      # 12:00 UTC today
    made = {}
    # Two backups on each of the four days before today, at 09:00 and 18:00.
    for ago in range(4, 0, -1):
        for hour in (9, 18):
            name = "old-%d-%02d" % (ago, hour)
            d.kvz("backup", "create", "c1", name)
            t = midday - ago * day + (hour - 12) * 3600
            os.utime(os.path.join(d.state, "backups", "c1", name + ".tar.zst"), (t, t))
            made[name] = t
    add_rule(d, on_restart("daily", {"type": "backup", "keep_last": 1, "keep_daily": 3}))
    restart(d)
    d.wait_for(lambda: log(d, "done") and jobs_done(d) and len(backups(d, "c1")) == 3,
               timeout=30, what="the daily retention")
    kept = backups(d, "c1")
    # Today's new one, and the newest of yesterday and the day before.
    assert kept[:2] == ["old-2-18", "old-1-18"] and kept[2].startswith("backup-"), kept


class Hook(http.server.BaseHTTPRequestHandler):
    received = []
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((self.path, self.headers.get("Content-Type"), json.loads(body)))
        self.send_response(Hook.status)
        if Hook.status == 302:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook_server():
    Hook.received = []
    Hook.status = 200
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_webhook(fake, hook_server):
    d = fake.start()
    d.kvz("create", "ct", "c1", "--disk", "64M")
    # The URL is checked when the rule is added.
    r = d.kvz("policy", "add", "-", check=False, input=json.dumps(
        on_restart("bad", {"type": "webhook", "url": "file:///etc/passwd"})))
    assert r.returncode == 1 and "action.url: must start with http:// or https://" in r.stderr
    add_rule(d, on_restart("hook", {"type": "webhook", "url": hook_server + "/kvz?x=1",
                                    "timeout_s": 5}))
    restart(d)
    d.wait_for(lambda: Hook.received, timeout=20, what="the webhook")
    path, ctype, body = Hook.received[0]
    assert path == "/kvz?x=1" and ctype == "application/json"
    assert body["rule"] == "hook" and body["guest"] == "c1" and body["action"] == "webhook"
    assert body["trigger"] == "kvzd started" and body["ts_ms"] > 0
    d.wait_for(lambda: log(d, "done"), what="the record")
    assert log(d, "done")[0]["result"] == "webhook %s/kvz?x=1 answered 200" % hook_server
    # A redirect is not followed: the action fails.
    Hook.status = 302
    restart(d)
    d.wait_for(lambda: log(d, "failed"), timeout=20, what="a failed webhook")
    assert "answered 302" in log(d, "failed")[0]["result"]
    assert [p for p, _, _ in Hook.received].count("/elsewhere") == 0


def test_command_exit_status(fake):
    d = fake.start()
    d.kvz("create", "ct", "c1", "--disk", "64M")
    out = os.path.join(d.dir, "command-env")
    add_rule(d, on_restart("cmd", {"type": "command", "argv": [
        "/bin/sh", "-c", "env > %s; echo it went wrong; exit 1" % out]},
        limits={"guest_cooldown_s": 0, "max_per_period": 2}))
    os.environ["KVZ_SHOULD_NOT_LEAK"] = "1"
    try:
        restart(d)
    finally:
        del os.environ["KVZ_SHOULD_NOT_LEAK"]
    d.wait_for(lambda: log(d, "skipped"), timeout=20, what="retries used up")
    rows = log(d)
    assert [r["state"] for r in rows] == ["failed", "failed", "skipped"], rows
    assert rows[0]["result"] == "/bin/sh exited 1: it went wrong"
    with open(out) as f:
        env = dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
    assert env["KVZ_GUEST"] == "c1" and env["KVZ_RULE"] == "cmd"
    assert env["KVZ_TRIGGER"] == "kvzd started"
    assert "KVZ_SHOULD_NOT_LEAK" not in env and "KVZ_SOCKET" not in env
    assert set(env) <= {"PATH", "LANG", "KVZ_GUEST", "KVZ_RULE", "KVZ_TRIGGER", "PWD", "SHLVL", "_"}


def test_command_timeout(fake):
    d = fake.start()
    d.kvz("create", "ct", "c1", "--disk", "64M")
    pidfile = os.path.join(d.dir, "sleeper")
    add_rule(d, on_restart("slow", {"type": "command", "timeout_s": 1, "argv": [
        "/bin/sh", "-c", "sleep 60 & echo $! > %s; wait" % pidfile]},
        limits={"guest_cooldown_s": 0, "max_per_period": 1}))
    restart(d)
    d.wait_for(lambda: log(d, "failed"), timeout=20, what="the timeout")
    assert log(d, "failed")[0]["result"] == "/bin/sh: killed after the 1s timeout"
    with open(pidfile) as f:
        pid = int(f.read())
    d.wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
               open("/proc/%d/stat" % pid).read().split()[2] == "Z",
               timeout=10, what="the command's children to be killed too")


def token_file(d):
    path = os.path.join(d.dir, "peer-token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (TOKEN + "\n").encode())
    os.close(fd)
    return path


@pytest.fixture
def pair(fake):
    b = fake_kvzd()
    port = free_port()
    b.listen_args = ["--listen", "127.0.0.1:%d" % port, "--token-file", token_file(b)]
    b.start(b.listen_args)
    a = fake.start()
    a.kvz("node", "add", "b", "http://127.0.0.1:%d" % port, "--token-file", token_file(a))
    yield a, b
    b.cleanup()


def test_peer_unreachable(pair):
    a, b = pair
    add_rule(a, {"name": "peer-down", "level": "automatic",
                 "trigger": {"event": "peer_unreachable", "failures": 2},
                 "action": {"type": "notify", "message": "node b is down"}})
    time.sleep(2)
    assert log(a) == [], "b answers: nothing fires"
    b.terminate()
    a.wait_for(lambda: log(a, "done"), timeout=30, what="peer_unreachable")
    row = log(a, "done")[0]
    assert row["guest"] == "@host"
    assert row["reason"] == "event peer_unreachable (b: 2 failed health checks)"
    evs = [e["detail"] for e in a.events() if e["type"] == "node-unreachable"]
    assert evs[:2] == ["b 1", "b 2"]
    b.start(b.listen_args)
    a.wait_for(lambda: any(e["type"] == "node-reachable" for e in a.events()),
               timeout=30, what="node-reachable")
    assert len(log(a, "done")) == 1


def test_migrate_plan_names_the_node(pair):
    a, b = pair
    a.kvz("create", "vm", "v1", "--kernel", a.kernel, "--memory", "64M")
    add_rule(a, {"name": "move", "level": "manual", "trigger": {"schedule": "* * * * *"},
                 "conditions": {"type": "vm"}, "action": {"type": "migrate"},
                 "limits": {"guest_cooldown_s": 0, "max_per_period": 100}})
    plan = {p["guest"]: p["would"] for p in a.kvz_json("policy", "plan")}
    assert plan["v1"].startswith("record: to b (") and "needs 64M" in plan["v1"], plan
    assert "CPUs idle" in plan["v1"] and "available" in plan["v1"]
    b.terminate()
    plan = {p["guest"]: p["would"] for p in a.kvz_json("policy", "plan")}
    assert plan["v1"] == "unavailable: none of 1 node(s) is reachable", plan


def tcp(port, method, path, body=None, token=TOKEN):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = "Bearer " + token
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data) if data else None


def test_tcp_clients(fake):
    """A holder of the TCP token may not make kvzd run programs; without
    the token nothing of backups or policies answers."""
    port = free_port()
    d = fake.start(["--listen", "127.0.0.1:%d" % port, "--token-file", token_file(fake)])
    d.kvz("create", "ct", "c1", "--disk", "64M")
    cmd = on_restart("cmd", {"type": "command", "argv": ["/bin/true"]})
    st, body = tcp(port, "POST", "/v1/policies", cmd)
    assert st == 403 and "local socket" in body["error"]["message"], body
    st, _ = tcp(port, "POST", "/v1/policies", on_restart(
        "hook", {"type": "webhook", "url": "http://127.0.0.1:1/"}))
    assert st == 201
    for method, path in (("GET", "/v1/guests/c1/backups"), ("POST", "/v1/guests/c1/backups"),
                         ("POST", "/v1/guests/c1/backups/b/restore"),
                         ("DELETE", "/v1/guests/c1/backups/b")):
        for token in (None, "wrong-token-0123456789"):
            assert tcp(port, method, path, token=token)[0] == 401, (method, path, token)
    assert d.kvz_json("backup", "list", "c1") == []
    # Through the local socket the command rule is fine.
    add_rule(d, cmd)


def test_mem_pressure_on_this_host(fake):
    d = fake.start()
    try:
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            v2_memory = "memory" in f.read().split()
    except OSError:
        v2_memory = False
    r = d.kvz("policy", "add", "-", input=json.dumps({
        "name": "psi", "trigger": {"metric": "mem_pressure", "above": 20, "for_s": 5},
        "conditions": {"type": "ct"}, "action": {"type": "raise_memory"}}))
    plan = d.kvz_json("policy", "plan")
    if v2_memory:
        assert "warning" not in r.stderr and plan == []
        return
    assert "mem_pressure needs cgroup v2" in r.stderr and "never fires" in r.stderr
    assert [(p["rule"], p["guest"], p["would"]) for p in plan] == [
        ("psi", "*", "unavailable: mem_pressure needs cgroup v2 (PSI memory.pressure); "
                     "this host has v1 memory cgroups")]
