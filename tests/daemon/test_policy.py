"""The policy engine end to end (suite 'daemon', meson test 'daemon-policy'):
rules through kvz and the REST API, hostile rules and clients without a
token, and real busybox containers (kvz-ct) that a CPU hog rule slows down,
a crash rule restarts at most N times, and a suggest rule leaves alone until
approved. The container tests skip where containers cannot run."""
import http.client
import json
import os
import signal
import time

import pytest

from kvzd_harness import free_port, real_ct_kvzd

TOKEN = "policy-test-token-0123456789"

CRASH = {"name": "crash", "level": "automatic", "trigger": {"event": "crashed"},
         "conditions": {"guests": ["c*"], "type": "ct"},
         "action": {"type": "restart", "backoff_s": 1},
         "limits": {"guest_cooldown_s": 0, "max_per_period": 2, "period_s": 3600}}


@pytest.fixture
def real():
    d = real_ct_kvzd()
    yield d
    d.cleanup()


def write(d, name, obj):
    path = os.path.join(d.dir, name)
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj, indent=1))
    return path


def log(d, state=None):
    st, rows = d.api("GET", "/v1/policies/log" + ("?state=" + state if state else ""))
    assert st == 200, rows
    return rows


def test_rules_through_kvz(fake):
    d = fake.start()
    d.kvz("policy", "add", write(d, "crash.json", CRASH))
    hot = {"name": "hot", "trigger": {"metric": "cpu_pct", "above": 80, "for_s": 10},
           "action": {"type": "set_cpus", "delta": -1}}
    d.kvz("policy", "add", "-", input=json.dumps(hot))
    listed = d.kvz("policy", "list").stdout
    assert "crash" in listed and "cpu_pct > 80 for 10s" in listed and "set_cpus" in listed
    shown = d.kvz_json("policy", "show", "hot")
    # Stored in canonical form: defaults filled in.
    assert shown["rule"]["level"] == "manual" and shown["rule"]["limits"]["period_s"] == 3600
    assert shown["enabled"] is True
    d.kvz("policy", "disable", "hot")
    assert d.kvz_json("policy", "show", "hot")["enabled"] is False
    d.kvz("policy", "enable", "hot")
    # Bad input: one line naming the place, exit 1, nothing stored.
    r = d.kvz("policy", "add", write(d, "bad.json", '{"name": "x",\n "trigger": }'), check=False)
    assert r.returncode == 1 and "bad.json:2:" in r.stderr, r
    r = d.kvz("policy", "add", "-", input=json.dumps(dict(hot, name="h2", trigger={
        "metric": "cpu_pct", "above": 180})), check=False)
    assert r.returncode == 1 and "trigger.above:" in r.stderr, r
    # Same name, and a rule that fights an enabled one, are refused.
    r = d.kvz("policy", "add", "-", input=json.dumps(CRASH), check=False)
    assert r.returncode == 1 and "exists" in r.stderr
    stop = dict(CRASH, name="stopper", action={"type": "stop"})
    r = d.kvz("policy", "add", "-", input=json.dumps(stop), check=False)
    assert r.returncode == 1 and "rule stopper (stop) and rule crash (restart)" in r.stderr, r
    # ... but may be added while the other is disabled, which then cannot
    # be enabled again.
    d.kvz("policy", "disable", "crash")
    d.kvz("policy", "add", "-", input=json.dumps(stop))
    r = d.kvz("policy", "enable", "crash", check=False)
    assert r.returncode == 1 and "opposite" in r.stderr
    r = d.kvz("policy", "add", "-", input=json.dumps(dict(CRASH, name="plan")), check=False)
    assert r.returncode == 1 and "reserved" in r.stderr
    d.kvz("policy", "remove", "stopper")
    r = d.kvz("policy", "show", "stopper", check=False)
    assert r.returncode == 1 and "no such policy" in r.stderr
    names = [p["name"] for p in d.kvz_json("policy", "list")]
    assert names == ["crash", "hot"]
    # plan --at: a schedule shows at its minute only, and does nothing.
    d.kvz("create", "ct", "s1", "--disk", "16M")
    d.kvz("policy", "add", "-", input=json.dumps({
        "name": "nightly", "trigger": {"schedule": "0 3 * * *"},
        "action": {"type": "notify", "message": "night"}}))
    at = d.kvz("policy", "plan", "--at", "2030-01-01 03:00").stdout
    assert "nightly: notify s1 (manual): record -- because schedule" in at, at
    assert "nightly" not in d.kvz("policy", "plan", "--at", "2030-01-01 03:01").stdout
    r = d.kvz("policy", "plan", "--at", "tomorrow", check=False)
    assert r.returncode == 2 and "--at" in r.stderr
    assert not log(d)
    events = [e["type"] for e in d.events() if e["guest"] == "@policies"]
    assert "policy-added" in events and "policy-removed" in events


HOSTILE = [
    b"", b"null", b"[]", b'"x"', b"{" * 5000 + b"}" * 5000,
    json.dumps({"name": "x" * 100000}).encode(),
    json.dumps({"name": "a", "trigger": {"event": "crashed"}, "action": {"type": "notify",
               "message": "x" * 5000}}).encode(),
    json.dumps({"name": "a", "trigger": {"event": "crashed"}, "action": {"type": "notify",
               "message": "evil\u0000tail"}}).encode(),
    json.dumps({"name": "../etc", "trigger": {"event": "crashed"},
               "action": {"type": "stop"}}).encode(),
    json.dumps({"name": "a", "trigger": {"schedule": "* * * * * " * 100},
               "action": {"type": "stop"}}).encode(),
    json.dumps({"name": "a", "trigger": {"metric": "cpu_pct", "above": 1e309},
               "action": {"type": "stop"}}).encode(),
    json.dumps({"name": "a", "trigger": {"event": "crashed"}, "action": {"type": "stop"},
               "conditions": {"guests": ["x"] * 1000}}).encode(),
    json.dumps({"name": "a", "trigger": {"event": "crashed"}, "action": {"type": "stop"},
               "limits": {"max_per_period": 2 ** 62}}).encode(),
]


def test_hostile_rules_refused(fake):
    d = fake.start()
    for body in HOSTILE:
        st, resp = d.api("POST", "/v1/policies", raw=body)
        assert st == 400, (body[:80], st, resp)
        assert resp["error"]["message"], resp
    for path in ("/v1/policies/..%2f", "/v1/policies/a/b/c", "/v1/policies/log/x/approve",
                 "/v1/policies/log/1/explode", "/v1/policies/plan?at=-1"):
        st, _ = d.api("POST" if "log/" in path else "GET", path)
        assert st in (400, 404), (path, st)
    st, resp = d.api("POST", "/v1/policies/log/99/approve")
    assert st == 404
    assert d.api("GET", "/v1/policies")[1] == []
    assert d.proc.poll() is None


def test_no_token_no_policies(fake):
    port = free_port()
    path = os.path.join(fake.dir, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (TOKEN + "\n").encode())
    os.close(fd)
    d = fake.start(["--listen", "127.0.0.1:%d" % port, "--token-file", path])
    body = json.dumps(CRASH)
    for method, p, b in (("GET", "/v1/policies", None), ("POST", "/v1/policies", body),
                         ("GET", "/v1/policies/plan", None), ("GET", "/v1/policies/log", None),
                         ("POST", "/v1/policies/log/1/approve", None),
                         ("DELETE", "/v1/policies/crash", None)):
        for auth in ({}, {"Authorization": "Bearer wrong"}):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request(method, p, body=b, headers=dict(auth, **({"Content-Type": "application/json"} if b else {})))
            r = c.getresponse()
            r.read()
            c.close()
            assert r.status == 401, (method, p, auth, r.status)
    assert d.api("GET", "/v1/policies")[1] == []
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/v1/policies", body=body, headers={
        "Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    assert c.getresponse().status == 201


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def init_pid(d, name):
    """The container's init (a child of its supervisor) once it runs the
    guest's command, not a helper of the start-up."""
    def find():
        sup = d.guest(name)["pid"]
        return next((c for c in children(sup) if "100000" in cmdline(c)), None)
    return d.wait_for(find, timeout=20, what="init of " + name)


def make_ct(d, name, cmd, cpus="1"):
    d.kvz("create", "ct", name, "--template", "busybox", "--memory", "32M:64M",
          "--cpus", cpus, "--pids", "64", "--disk", "128M", "--", "/bin/sh", "-c", cmd)
    d.kvz("start", name)


def test_cpu_hog_lowers_cpus(real):
    d = real.start()
    make_ct(d, "hog", "for i in 1 2 3 4; do (while :; do :; done) & done; wait", cpus="3")
    # "CPU > 80%" where the host lets the hog have that much: this machine's
    # cores are shared with builds, so the threshold is the lower of 80 and
    # 60% of what the hog gets here; what is tested is the rule, not the host.
    time.sleep(4)
    got = min(d.api("GET", "/v1/guests/hog")[1]["usage"]["cpu_pct"] for _ in range(3)
              if time.sleep(1) is None)
    if got < 20:
        pytest.skip("the host is too busy: the hog gets %.0f%% of a core" % got)
    above = min(80, round(got * 0.6))
    rule = {"name": "hot", "level": "automatic",
            "trigger": {"metric": "cpu_pct", "above": above, "clear_below": 5, "for_s": 8},
            "conditions": {"guests": ["hog"], "type": "ct"},
            "action": {"type": "set_cpus", "delta": -1, "min": 1, "max": 4},
            "limits": {"guest_cooldown_s": 0}}
    d.kvz("policy", "add", "-", input=json.dumps(rule))
    # The plan shows it coming before it acts.
    d.wait_for(lambda: "hot: set_cpus hog (automatic): waiting for the window"
               in d.kvz("policy", "plan").stdout, timeout=20, what="plan shows the hog")
    d.wait_for(lambda: d.guest("hog")["config"]["cpus"] == 2, timeout=30,
               what="cpus lowered to 2")
    done = log(d, "done")
    assert len(done) == 1 and done[0]["rule"] == "hot" and "cpu_pct" in done[0]["reason"]
    # Hysteresis: still hot, but it does not fire again until it cools.
    time.sleep(6)
    assert len(log(d, "done")) == 1
    assert d.guest("hog")["config"]["cpus"] == 2
    assert any(e["type"] == "policy" for e in d.events("hog"))


def test_crash_rule_restarts_at_most_n(real):
    d = real.start()
    make_ct(d, "c1", "sleep 100000")
    d.kvz("policy", "add", "-", input=json.dumps(CRASH))
    for n in range(1, 3):
        pid = d.guest("c1")["pid"]
        os.kill(init_pid(d, "c1"), signal.SIGKILL)
        d.wait_for(lambda: d.running_again("c1", pid),
                   timeout=30, what="restart %d" % n)
    os.kill(init_pid(d, "c1"), signal.SIGKILL)
    d.wait_for(lambda: any(r["state"] == "skipped" for r in log(d)), timeout=30,
               what="third crash given up")
    records = log(d)
    why = "records %s; events %s" % (
        [(r["state"], r.get("result")) for r in records],
        [(e["type"], e.get("detail")) for e in d.events("c1")])
    assert d.guest("c1")["state"] == "crashed", why
    assert [r["state"] for r in records] == ["done", "done", "skipped"], why


def test_suggest_waits_for_approval(real):
    d = real.start()
    make_ct(d, "c2", "sleep 100000")
    d.kvz("policy", "add", "-", input=json.dumps(dict(CRASH, level="suggest")))
    os.kill(init_pid(d, "c2"), signal.SIGKILL)
    d.wait_for(lambda: log(d, "proposed"), timeout=30, what="a proposal")
    time.sleep(3)
    assert d.guest("c2")["state"] == "crashed"
    pid = log(d, "proposed")[0]["id"]
    out = d.kvz("policy", "approve", str(pid)).stdout
    assert "done" in out, out
    assert d.guest("c2")["state"] == "running"
    row = log(d)[0]
    assert row["state"] == "done" and row["approved_by"] == "local-socket"
    r = d.kvz("policy", "approve", str(pid), check=False)
    assert r.returncode == 1 and "not proposed" in r.stderr
    assert "c2 started by local-socket" in d.kvz("policy", "log").stdout


def test_snapshot_retention_on_kvzd_restart(fake):
    """A snapshot rule keeps exactly the last 3: driven by kvzd_restart
    triggers so that four runs take seconds, not four cron minutes; the
    stand-in kvz-vmm plays the snapshot contract (test_jobs.py)."""
    d = fake.start()
    d.kvz("create", "vm", "v1", "--kernel", d.kernel, "--memory", "64M", "--disk", "16M")
    d.kvz("start", "v1")
    d.kvz("policy", "add", "-", input=json.dumps({
        "name": "boot-snap", "level": "automatic", "trigger": {"event": "kvzd_restart"},
        "conditions": {"type": "vm"}, "action": {"type": "snapshot", "keep_last": 3},
        "limits": {"guest_cooldown_s": 0, "max_per_period": 100}}))
    seen = []
    for n in range(1, 5):
        time.sleep(1.1)   # snapshot names carry the second
        d.terminate()
        d.start()
        d.wait_for(lambda: len(log(d, "done")) == n, timeout=30, what="snapshot %d" % n)
        d.wait_for(lambda: all(j["state"] == "completed" for j in d.kvz_json("job", "list"))
                   and len(d.kvz_json("snapshot", "list", "v1")) == min(n, 3),
                   timeout=30, what="snapshot %d complete" % n)
        names = [s["name"] for s in d.kvz_json("snapshot", "list", "v1")]
        seen += [s for s in names if s not in seen]
    assert len(names) == 3 and seen[0] not in names and names == seen[1:], (seen, names)
    assert "1 old snapshot(s) removed" in log(d, "done")[-1]["result"]


def test_tags_select_guests(fake):
    """Guests carry tags (kvz create --tag, kvz set --tag/--no-tags) and a
    rule's conditions.tags picks exactly the guests that carry them all."""
    d = fake.start()
    d.kvz("create", "ct", "t1", "--disk", "16M", "--tag", "prod", "--tag", "web", "--tag", "prod")
    d.kvz("create", "ct", "t2", "--disk", "16M", "--tag", "web")
    assert d.guest("t1")["config"]["tags"] == ["prod", "web"]
    r = d.kvz("create", "ct", "t3", "--disk", "16M", "--tag", "no spaces", check=False)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "bad tag" in r.stderr, r
    assert d.api("GET", "/v1/guests/t3")[0] == 404   # nothing left half-done
    code, body = d.api("PATCH", "/v1/guests/t2", {"tags": ["x"] * 17})
    assert code == 400 and "at most 16" in body["error"]["message"], body
    d.kvz("policy", "add", "-", input=json.dumps({
        "name": "tagged", "trigger": {"schedule": "0 3 * * *"},
        "conditions": {"tags": ["prod", "web"]},
        "action": {"type": "notify", "message": "night"}}))
    plan = lambda: d.kvz("policy", "plan", "--at", "2030-01-01 03:00").stdout  # noqa: E731
    assert "notify t1" in plan() and "notify t2" not in plan(), plan()
    d.kvz("set", "t2", "--tag", "prod", "--tag", "web")
    d.kvz("set", "t1", "--no-tags")
    assert d.guest("t1")["config"]["tags"] == []
    assert "notify t2" in plan() and "notify t1" not in plan(), plan()
    # Tags and a resize in one request: both or neither.
    code, body = d.api("PATCH", "/v1/guests/t2", {"tags": ["only"], "pids": 0})
    assert code == 400 and d.guest("t2")["config"]["tags"] == ["prod", "web"], body
    assert "tagged" in [e["type"] for e in d.events("t2")]
