"""kvzd end to end through kvz, with stand-in supervisors (fake_supervisor.c)
speaking kvz-vmm's and kvz-ct's command lines and QMP. These test kvzd's own
logic: records, storage, lifecycle, adoption after SIGKILL, crash events,
stats series, metrics, errors, concurrency, authentication."""
import concurrent.futures
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import time
import http.client

import pytest

from kvzd_harness import BUILD, parse_prometheus


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def event_types(d, guest):
    return [e["type"] for e in d.events(guest)]


def test_vm_lifecycle(kvzd):
    d = kvzd
    out = d.kvz("create", "vm", "v1", "--kernel", d.kernel, "--memory", "256M",
                "--cpus", "2", "--disk", "64M").stdout
    assert "v1 created" in out
    img = os.path.join(d.state, "images/v1.img")
    st = os.stat(img)
    assert st.st_size == 64 << 20 and st.st_blocks * 512 < (1 << 20), "sparse by default"
    d.kvz("create", "vm", "v2", "--kernel", d.kernel, "--disk", "8M", "--disk-mode", "fixed")
    st = os.stat(os.path.join(d.state, "images/v2.img"))
    assert st.st_blocks * 512 >= 8 << 20, "fixed disk is allocated"

    d.kvz("start", "v1")
    g = d.guest("v1")
    assert g["state"] == "running" and pid_alive(g["pid"])
    assert g["config"]["memory"] == 256 << 20 and g["config"]["cpus"] == 2
    with open("/proc/%d/cmdline" % g["pid"]) as f:
        argv = f.read().split("\0")
    assert "--balloon" in argv and argv[argv.index("--disk") + 1] == img
    assert "--net" not in argv
    # Started in its own session, so that kvzd's terminal and death do not reach it.
    assert os.getsid(g["pid"]) == g["pid"]

    r = d.kvz("start", "v1", check=False)
    assert r.returncode == 1 and "already running" in r.stderr

    # Console: piped stdin, so no raw mode; the stand-in greets and echoes.
    r = d.kvz("console", "v1", input="hello console\n", timeout=10)
    assert "kvz-test-guest: idle" in r.stdout and "hello console" in r.stdout

    d.kvz("set", "v1", "--memory", "128M")
    assert d.guest("v1")["config"]["memory_target"] == 128 << 20
    r = d.kvz("set", "v1", "--memory", "1G", check=False)
    assert r.returncode == 1 and "only shrink" in r.stderr
    r = d.kvz("set", "v1", "--cpus", "4", check=False)
    assert r.returncode == 1 and "stop it first" in r.stderr

    rows = d.kvz("list").stdout.splitlines()
    assert rows[0].split()[:3] == ["NAME", "TYPE", "STATE"]
    assert any(r.split()[:3] == ["v1", "vm", "running"] for r in rows)

    d.wait_for(lambda: len(d.kvz_json("stats", "v1")["samples"]) >= 2, what="samples")
    # The monitor reads the balloon back (query-balloon) on its next round.
    d.wait_for(lambda: d.kvz_json("stats", "v1")["latest"]["mem_limit"] == 128 << 20,
               what="balloon in stats")
    s = d.kvz_json("stats", "v1")["latest"]
    assert s["disk_size"] == 64 << 20 and s["mem_used"] > 0

    pid = g["pid"]
    r = d.kvz("destroy", "v1", check=False)
    assert r.returncode == 1 and "stop it first" in r.stderr
    d.kvz("stop", "v1")
    assert d.guest("v1")["state"] == "stopped"
    d.wait_for(lambda: not pid_alive(pid), what="supervisor exit")
    d.kvz("destroy", "v1")
    assert not os.path.exists(img)
    r = d.kvz("show", "v1", check=False)
    assert r.returncode == 1 and r.stderr.strip() == "kvz: error: no guest named v1"
    assert event_types(d, "v1") == ["created", "started", "resized", "stopped", "destroyed"]


def test_ct_lifecycle(kvzd):
    d = kvzd
    d.kvz("create", "ct", "c1", "--template", "busybox", "--memory", "64M:128M",
          "--cpus", "0.5", "--disk", "64M", "--pids", "100", "--ip", "10.77.0.2/24",
          "--", "/bin/sh", "-c", "sleep 1000")
    assert os.path.isdir(os.path.join(d.state, "ct/c1"))
    d.kvz("start", "c1")
    g = d.guest("c1")
    with open("/proc/%d/cmdline" % g["pid"]) as f:
        argv = f.read().split("\0")
    assert argv[1] == "run"
    assert argv[argv.index("--memory") + 1] == "%d:%d" % (64 << 20, 128 << 20)
    assert argv[argv.index("--cpus") + 1] == "0.5"
    assert argv[argv.index("--net") + 1] == "bridge=kvzbr0,ip=10.77.0.2/24"
    assert argv[argv.index("--") + 1:-1] == ["/bin/sh", "-c", "sleep 1000"]
    assert "10.77.0.2/24" in d.kvz("list").stdout

    r = d.kvz("exec", "c1", "--", "sh", "-c", "echo in-ct; exit 7", check=False)
    assert r.returncode == 7 and "in-ct" in r.stdout

    d.kvz("set", "c1", "--memory", "32M:64M", "--cpus", "1", "--disk", "128M")
    cfg = d.guest("c1")["config"]
    assert (cfg["memory_soft"], cfg["memory_hard"], cfg["cpus"], cfg["disk_size"]) == \
        (32 << 20, 64 << 20, 1.0, 128 << 20)
    # The supervisor refuses; kvzd passes its reason on and keeps the old value.
    r = d.kvz("set", "c1", "--memory", "100K", check=False)
    assert r.returncode == 1 and "below current usage" in r.stderr
    assert d.guest("c1")["config"]["memory_hard"] == 64 << 20

    d.wait_for(lambda: d.kvz_json("stats", "c1")["latest"], what="a sample")
    d.wait_for(lambda: len(d.kvz_json("stats", "c1")["samples"]) >= 2, what="two samples")
    s = d.kvz_json("stats", "c1")["latest"]
    assert s["mem_limit"] == 64 << 20 and s["net_tx"] == 2000 and s["disk_used"] == 5 << 20
    # The stand-in adds 50 ms of CPU per query: CPU % must be positive.
    assert s["cpu_pct"] > 0

    d.kvz("stop", "c1", "--timeout", "2")
    r = d.kvz("exec", "c1", "--", "true", check=False)
    assert r.returncode == 1 and "not running" in r.stderr
    # A stopped container keeps new limits for its next start.
    d.kvz("set", "c1", "--memory", "16M:32M")
    assert d.guest("c1")["config"]["memory_hard"] == 32 << 20
    d.kvz("destroy", "c1")
    assert not os.path.exists(os.path.join(d.state, "ct/c1"))
    assert event_types(d, "c1") == ["created", "started", "resized", "stopped",
                                    "resized", "destroyed"]


def test_vm_network_arguments(kvzd):
    d = kvzd
    d.kvz("create", "vm", "netvm", "--kernel", d.kernel, "--net",
          "bridge=kvztestbr,mac=52:54:00:12:34:56", "--no-balloon")
    d.kvz("start", "netvm")
    with open("/proc/%d/cmdline" % d.guest("netvm")["pid"]) as f:
        argv = f.read().split("\0")
    assert argv[argv.index("--net") + 1] == "tap=kvznetvm,bridge=kvztestbr,mac=52:54:00:12:34:56"
    assert "--balloon" not in argv
    r = d.kvz("set", "netvm", "--memory", "128M", check=False)
    assert r.returncode == 1 and "no balloon" in r.stderr
    r = d.kvz("create", "vm", "v2", "--kernel", d.kernel, "--ip", "10.0.0.2/24", check=False)
    assert r.returncode == 1 and "apply to containers" in r.stderr
    r = d.kvz("create", "ct", "c2", "--bridge", "br0", check=False)
    assert r.returncode == 1 and "needs ip" in r.stderr


def test_destroy_force_stops(kvzd):
    d = kvzd
    d.kvz("create", "vm", "v", "--kernel", d.kernel)
    d.kvz("start", "v")
    pid = d.guest("v")["pid"]
    d.kvz("destroy", "v", "--force")
    d.wait_for(lambda: not pid_alive(pid), what="supervisor exit")
    assert d.kvz_json("list") == []


def test_failed_create_leaves_nothing(kvzd):
    d = kvzd
    # The stand-in kvz-ct fails half-way for names starting with "fail".
    r = d.kvz("create", "ct", "failing", "--disk", "64M", check=False)
    assert r.returncode == 1 and "template unpacking failed" in r.stderr
    assert d.kvz_json("list") == []
    assert os.listdir(os.path.join(d.state, "ct")) == []
    r = d.kvz("create", "vm", "huge", "--kernel", d.kernel, "--disk", "64T",
              "--disk-mode", "fixed", check=False)
    assert r.returncode == 1 and "not enough space" in r.stderr
    assert os.listdir(os.path.join(d.state, "images")) == []
    r = d.kvz("create", "vm", "big", "--kernel", d.kernel, "--memory", "64T", check=False)
    assert r.returncode == 1 and "not enough host memory" in r.stderr
    r = d.kvz("create", "vm", "nokernel", "--kernel", "/nonexistent", check=False)
    assert r.returncode == 1 and "no such file" in r.stderr
    assert d.kvz_json("list") == [] and d.events() == []
    # A supervisor that cannot start: the guest stays stopped, with the reason.
    d.kvz("create", "vm", "v", "--kernel", d.kernel)
    os.chmod(d.vmm, 0o644)
    r = d.kvz("start", "v", check=False)
    os.chmod(d.vmm, 0o755)
    assert r.returncode == 1 and "cannot run" in r.stderr
    assert d.guest("v")["state"] == "stopped"


def test_ct_confinement_options(kvzd, tmp_path):
    """devices, seccomp and no_new_privs reach kvz-ct run; bad ones are
    refused at create with one line."""
    d = kvzd
    prof = tmp_path / "profile"
    prof.write_text("@default\n")
    d.kvz("create", "ct", "cf", "--disk", "64M", "--device", "/dev/null:r", "--device", "/dev/zero",
          "--seccomp", str(prof), "--no-new-privs")
    cfg = d.guest("cf")["config"]
    assert (cfg["devices"], cfg["seccomp"], cfg["no_new_privs"]) == \
        (["/dev/null:r", "/dev/zero"], str(prof), True)
    d.kvz("start", "cf")
    with open("/proc/%d/cmdline" % d.guest("cf")["pid"]) as f:
        argv = f.read().split("\0")
    cut = argv.index("--")
    assert argv[:cut].count("--device=/dev/null:r") == 1 and "--device=/dev/zero" in argv[:cut]
    assert f"--seccomp={prof}" in argv[:cut] and "--no-new-privs" in argv[:cut]
    d.kvz("stop", "cf")
    for bad, why in ((["--device", "/etc/passwd"], "bad device"),
                     (["--device", "/dev/null:x"], "bad device"),
                     (["--seccomp", "/"], "seccomp must be")):
        r = d.kvz("create", "ct", "cg", *bad, check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and why in lines[0], r.stderr
    r = d.kvz("create", "ct", "cg", "--seccomp", "/kvz/none", check=False)
    assert r.returncode == 1 and "no such file" in r.stderr


def test_restart_adopts_and_detects_crashes(kvzd):
    d = kvzd
    d.kvz("create", "vm", "v", "--kernel", d.kernel)
    d.kvz("create", "ct", "c", "--disk", "64M")
    d.kvz("create", "ct", "c2", "--disk", "64M")
    for n in ("v", "c", "c2"):
        d.kvz("start", n)
    before = {g["name"]: g for g in d.kvz_json("list")}

    d.kill9()
    for g in before.values():
        assert pid_alive(g["pid"]), "guests survive kvzd's death"
    # One supervisor dies while kvzd is down.
    os.kill(before["c2"]["pid"], signal.SIGKILL)
    time.sleep(0.3)
    d.start()
    after = {g["name"]: g for g in d.kvz_json("list")}
    for n in ("v", "c"):
        assert after[n]["state"] == "running" and after[n]["pid"] == before[n]["pid"]
        assert event_types(d, n)[-1] == "adopted"
    assert after["c2"]["state"] == "crashed"
    assert "while kvzd was down" in d.events("c2")[-1]["detail"]

    # The adopted guests are still managed: set, stats, and a crash is seen.
    d.kvz("set", "v", "--memory", "128M")
    d.wait_for(lambda: d.kvz_json("stats", "c")["latest"], what="a sample of c")
    os.kill(before["v"]["pid"], signal.SIGKILL)
    d.wait_for(lambda: d.guest("v")["state"] == "crashed", what="crash of v")
    assert d.events("v")[-1]["type"] == "crashed"
    # A crashed guest starts again.
    d.kvz("start", "v")
    assert d.guest("v")["state"] == "running"
    d.kvz("stop", "c")
    assert d.guest("c")["state"] == "stopped"


def test_child_crash_detected(kvzd):
    d = kvzd
    d.kvz("create", "vm", "v", "--kernel", d.kernel)
    d.kvz("start", "v")
    os.kill(d.guest("v")["pid"], signal.SIGKILL)
    d.wait_for(lambda: d.guest("v")["state"] == "crashed", what="crash")
    assert "signal 9" in d.events("v")[-1]["detail"]


def test_autostart(kvzd):
    d = kvzd
    d.kvz("create", "ct", "auto", "--disk", "64M", "--autostart")
    d.kvz("create", "ct", "manual", "--disk", "64M")
    d.terminate()
    d.start()
    d.wait_for(lambda: d.guest("auto")["state"] == "running", what="autostart")
    assert d.guest("manual")["state"] == "stopped"


def test_bad_requests(kvzd):
    d = kvzd
    cases = [
        ("POST", "/v1/guests", "{not json", 400),
        ("POST", "/v1/guests", json.dumps([1, 2]), 400),
        ("POST", "/v1/guests", json.dumps({"name": "x", "type": "lxc"}), 400),
        ("POST", "/v1/guests", json.dumps({"name": "-bad", "type": "ct"}), 400),
        ("POST", "/v1/guests", json.dumps({"name": "x", "type": "ct", "colour": 1}), 400),
        ("POST", "/v1/guests", json.dumps({"name": "x", "type": "ct", "memory": "lots"}), 400),
        ("POST", "/v1/guests", json.dumps({"name": "x", "type": "ct", "template": "arch"}), 400),
        ("POST", "/v1/guests", json.dumps({"name": "x", "type": "vm"}), 400),
        ("GET", "/v1/guests/nosuch", None, 404),
        ("POST", "/v1/guests/nosuch/start", None, 404),
        ("PATCH", "/v1/guests/nosuch", json.dumps({"memory": "1G"}), 404),
        ("DELETE", "/v1/guests/nosuch", None, 404),
        ("PUT", "/v1/guests", "{}", 405),
        ("GET", "/v1/guests/x/reboot", None, 404),
        ("GET", "/v1/nothing", None, 404),
        ("GET", "/v1/events?since=abc", None, 400),
        ("GET", "/v1/host/stats?range=1y", None, 400),
        ("POST", "/v1/guests", "x" * (2 << 20), 413),
    ]
    for method, path, body, want in cases:
        status, reply = d.api(method, path, raw=body)
        assert status == want, (method, path, status, reply)
        assert isinstance(reply, dict) and reply["error"]["code"] == want
        assert reply["error"]["message"], (method, path)
    d.kvz("create", "ct", "dup", "--disk", "64M")
    status, reply = d.api("POST", "/v1/guests", {"name": "dup", "type": "ct"})
    assert status == 409 and "already exists" in reply["error"]["message"]
    status, reply = d.api("PATCH", "/v1/guests/dup", {"memory": "1G", "speed": 3})
    assert status == 400 and "speed" in reply["error"]["message"]
    status, reply = d.api("POST", "/v1/guests/dup/stop")
    assert status == 409 and "not running" in reply["error"]["message"]
    # CLI: one line on stderr, non-zero exit.
    for args, msg in [(["start", "ghost"], "no guest named ghost"),
                      (["create", "ct", "dup", "--disk", "64M"], "already exists"),
                      (["create", "ct", "x", "--memory", "2Q"], "bad size"),
                      (["frobnicate"], "unknown command")]:
        r = d.kvz(*args, check=False)
        assert r.returncode != 0 and msg in r.stderr and len(r.stderr.splitlines()) == 1, r
    r = subprocess.run([os.path.join(BUILD, "src/cli/kvz"), "--socket",
                        os.path.join(d.dir, "none.sock"), "list"], capture_output=True, text=True)
    assert r.returncode == 1 and "kvzd is not running" in r.stderr


def test_concurrent_requests(kvzd):
    d = kvzd

    def create(name):
        return d.api("POST", "/v1/guests", {"name": name, "type": "ct", "disk": "32M"})[0]

    def read(path):
        return d.api("GET", path)[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        creates = [pool.submit(create, "g%d" % i) for i in range(8)]
        same = [pool.submit(create, "same") for _ in range(6)]
        reads = [pool.submit(read, p) for p in ["/v1/guests", "/metrics", "/v1/host",
                                                 "/v1/events"] * 10]
        assert [f.result() for f in creates] == [201] * 8
        assert sorted(f.result() for f in same) == [201] + [409] * 5
        assert all(f.result() == 200 for f in reads)
    names = sorted(g["name"] for g in d.kvz_json("list"))
    assert names == sorted(["g%d" % i for i in range(8)] + ["same"])
    assert len([e for e in d.events() if e["type"] == "created"]) == 9


def test_metrics_and_host(kvzd):
    d = kvzd
    d.kvz("create", "ct", "m1", "--disk", "64M", "--memory", "32M:64M")
    d.kvz("create", "vm", "m2", "--kernel", d.kernel)
    d.kvz("start", "m1")
    d.wait_for(lambda: d.kvz_json("stats", "m1")["latest"], what="a sample")
    status, text = d.api("GET", "/metrics")
    assert status == 200
    m = parse_prometheus(text)
    up = {s[0]["name"]: (s[0]["state"], s[1]) for s in m["kvz_guest_up"]["samples"]}
    assert up == {"m1": ("running", 1.0), "m2": ("stopped", 0.0)}
    assert m["kvz_guest_memory_limit_bytes"]["samples"] == [({"name": "m1", "type": "ct"}, 64 << 20)]
    assert m["kvz_guest_network_transmit_bytes_total"]["type"] == "counter"
    assert m["kvz_host_memory_total_bytes"]["samples"][0][1] > 0
    # The parser is strict: it rejects what Prometheus would.
    for bad in ["x 1\n", "# TYPE x gauge\nx{a=b} 1\n", "# TYPE x gauge\nx one\n"]:
        with pytest.raises(Exception):
            parse_prometheus(bad)
    h = d.kvz_json("host")
    assert h["guests"] == 2 and h["states"] == {"running": 1, "stopped": 1}
    assert "guests" in d.kvz("host").stdout
    top = d.kvz("top", "--iterations", "2", "--interval", "1").stdout
    assert top.count("NAME") == 2 and "m1" in top


def test_sample_rollup(kvzd):
    """Raw samples older than an hour become one-minute averages; minute rows
    older than a day go."""
    d = kvzd
    d.kvz("create", "ct", "r", "--disk", "64M")
    now = int(time.time() * 1000)
    two_h = (now - 2 * 3600 * 1000) // 60000 * 60000
    old = (now - 25 * 3600 * 1000) // 60000 * 60000
    db = sqlite3.connect(os.path.join(d.state, "kvzd.db"), timeout=10)
    rows = [("r", 0, two_h + 1000 * i, 10.0 * i, 100, 200, 0, 0, 0, 0) for i in range(1, 4)]
    rows.append(("r", 60, old, 5.0, 1, 1, 0, 0, 0, 0))
    db.executemany("INSERT INTO samples (guest, resolution, ts_ms, cpu_pct, mem_used, mem_limit,"
                   " disk_used, disk_size, net_rx, net_tx) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    db.commit()
    db.close()

    def rolled():
        day = d.kvz_json("stats", "r", "--range", "24h")["samples"]
        return [s for s in day if s["ts_ms"] == two_h]
    got = d.wait_for(rolled, what="rollup")
    assert got[0]["cpu_pct"] == pytest.approx(20.0) and got[0]["mem_used"] == 100
    day = d.kvz_json("stats", "r", "--range", "24h")["samples"]
    assert all(s["ts_ms"] != old for s in day), "minute rows older than a day are dropped"
    db = sqlite3.connect(os.path.join(d.state, "kvzd.db"), timeout=10)
    n = db.execute("SELECT COUNT(*) FROM samples WHERE resolution = 0 AND ts_ms < ?",
                   (now - 3600 * 1000,)).fetchone()[0]
    versions = db.execute("SELECT version FROM migrations").fetchall()
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    db.close()
    assert n == 0 and versions == [(1,), (2,), (3,), (4,), (5,), (6,)] and mode == "wal"
    assert "1-minute" in d.kvz("stats", "r", "--range", "24h").stdout


def test_tcp_requires_token(kvzd):
    d = kvzd
    d.terminate()
    token = os.path.join(d.dir, "token")
    with open(os.open(token, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write("s3cret-token-0123456789\n")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d.start(["--listen", "127.0.0.1:%d" % port, "--token-file", token])

    def get(headers):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/v1/guests", headers=headers)
        r = c.getresponse()
        body = json.loads(r.read())
        c.close()
        return r.status, body
    assert get({})[0] == 401
    assert get({"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
    assert get({"Authorization": "Bearer s3cret-token-0123456789"}) == (200, [])


def test_single_instance(kvzd):
    d = kvzd
    other = subprocess.run([os.path.join(BUILD, "src/daemon/kvzd"), "--state-dir", d.state,
                            "--run-dir", d.run, "--socket", d.socket + "2"],
                           capture_output=True, text=True, timeout=10)
    assert other.returncode == 1 and "another kvzd" in other.stderr


def test_openapi_matches_server(kvzd):
    """Every path and method docs/openapi.yaml describes is one kvzd routes."""
    yaml = pytest.importorskip("yaml", reason="python3-yaml not installed")
    src = os.environ.get("KVZ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
    with open(os.path.join(src, "docs/openapi.yaml")) as f:
        spec = yaml.safe_load(f)
    d = kvzd
    d.kvz("create", "ct", "doc", "--disk", "64M")
    for path, ops in spec["paths"].items():
        for method in ops:
            if method == "parameters":
                continue
            if method in ("delete",) or path.endswith(("/start", "/stop")):
                continue  # would change the guest; routed as tested above
            if path.startswith("/ui/") or path.endswith("/stream"):
                continue  # TCP-only web UI routes and an endless stream: tests/web
            real = path.replace("{name}", "doc").replace("{snap}", "s").replace("{id}", "1")
            status, reply = d.api(method.upper(), real,
                                  raw="{}" if method in ("post", "patch") else None)
            # A 404 about a missing snapshot or job is the route answering;
            # the router's own 404 says "no such resource".
            routed = status != 404 or not reply["error"]["message"].startswith("no such resource")
            assert status != 405 and routed, (method, path, reply)


def test_events_follow(kvzd):
    d = kvzd
    d.kvz("create", "ct", "e1", "--disk", "64M")
    p = subprocess.Popen([os.path.join(BUILD, "src/cli/kvz"), "--socket", d.socket, "--json",
                          "events", "--follow"], stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(p.stdout.readline())
        assert (first["guest"], first["type"]) == ("e1", "created")
        d.kvz("start", "e1")
        second = json.loads(p.stdout.readline())
        assert (second["guest"], second["type"]) == ("e1", "started")
        assert second["id"] > first["id"]
    finally:
        p.kill()
        p.wait()


def test_console_tty_detach(kvzd):
    """On a terminal: raw mode while attached, Ctrl-] detaches, and the
    terminal's mode is back as it was afterwards."""
    import pty
    import termios
    d = kvzd
    d.kvz("create", "vm", "t", "--kernel", d.kernel)
    d.kvz("start", "t")
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = subprocess.Popen([os.path.join(BUILD, "src/cli/kvz"), "--socket", d.socket,
                          "console", "t"], stdin=slave, stdout=slave, stderr=slave)
    out = b""
    deadline = time.time() + 10
    while b"kvz-test-guest: idle" not in out and time.time() < deadline:
        out += os.read(master, 4096)
    assert b"detach with Ctrl-]" in out and b"kvz-test-guest: idle" in out
    assert not termios.tcgetattr(slave)[3] & termios.ICANON, "raw mode while attached"
    os.write(master, b"typed")
    deadline = time.time() + 10
    while b"typed" not in out and time.time() < deadline:
        out += os.read(master, 4096)
    os.write(master, b"\x1d")
    assert p.wait(10) == 0
    os.set_blocking(master, False)
    try:
        out += os.read(master, 4096)
    except BlockingIOError:
        pass
    assert b"typed" in out and b"detached from t" in out
    assert termios.tcgetattr(slave) == before, "terminal mode restored"
    os.close(master)
    os.close(slave)


def test_slow_operation_does_not_block_others(kvzd):
    """Operations lock one guest, not all: a slow create (the stand-in takes
    5 s for names starting with "slow") does not hold up another guest."""
    d = kvzd
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(d.api, "POST", "/v1/guests", {"name": "slow1", "type": "ct"})
        time.sleep(0.5)
        d.kvz("create", "ct", "quick", "--disk", "64M")
        d.kvz("start", "quick")
        d.kvz("stop", "quick")
        assert not slow.done(), "the slow create should still be running"
        # A second operation on the busy guest waits for the first.
        t1 = time.time()
        status, reply = d.api("POST", "/v1/guests/slow1/start")
        assert status == 200 and slow.result()[0] == 201
        assert time.time() - t1 > 0.5


def test_interrupted_create_is_undone(kvzd):
    """kvzd killed in the middle of a create: the next kvzd removes the
    half-made guest (record and storage) instead of keeping it."""
    d = kvzd
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(d.api, "POST", "/v1/guests", {"name": "slow2", "type": "ct"})
        d.wait_for(lambda: os.path.isdir(os.path.join(d.state, "ct/slow2")), what="create")
        assert d.kvz_json("list")[0]["state"] == "creating"
        d.kill9()
        with pytest.raises(Exception):
            fut.result()
    d.start()
    assert d.kvz_json("list") == []
    assert not os.path.exists(os.path.join(d.state, "ct/slow2"))
    assert "creation was interrupted" in d.read_log()


def test_adopted_guest_end_from_qmp_events(kvzd):
    """A supervisor kvzd adopted is not its child, so its exit status is
    unknown: the SHUTDOWN event it sends tells a clean end from a failure,
    and is acted on at once, not at the next sample."""
    d = kvzd
    d.kvz("create", "vm", "v", "--kernel", d.kernel)
    d.kvz("create", "ct", "c", "--disk", "64M")
    d.kvz("start", "v")
    d.kvz("start", "c")
    pids = {n: d.guest(n)["pid"] for n in ("v", "c")}
    d.kill9()
    d.interval = 60   # so that only the event can be what notices
    d.start()
    d.wait_for(lambda: all(e["type"] == "adopted" for e in (d.events("v")[-1], d.events("c")[-1])),
               what="adoption")
    time.sleep(1)  # the watcher connects to adopted guests within a round
    t0 = time.time()
    os.kill(pids["v"], signal.SIGUSR1)
    d.wait_for(lambda: d.guest("v")["state"] != "running", timeout=10, what="VM end")
    assert time.time() - t0 < 10
    assert d.guest("v")["state"] == "stopped"
    assert d.events("v")[-1]["detail"] == "guest shut down (guest-shutdown)"
    os.kill(pids["c"], signal.SIGUSR2)
    d.wait_for(lambda: d.guest("c")["state"] != "running", timeout=10, what="container end")
    assert d.guest("c")["state"] == "crashed"
    assert d.events("c")[-1]["detail"] == "container init exited with code 5"


def test_vm_qcow2_disks(kvzd):
    """--disk-format qcow2 and --disk-base make qcow2 images (checked by
    kvz-image and, where installed, qemu-img) and reach kvz-vmm named;
    bad combinations are refused with one line and leave nothing."""
    d = kvzd
    kimg = os.path.join(BUILD, "src/image/kvz-image")
    d.kvz("create", "vm", "q1", "--kernel", d.kernel, "--disk", "64M", "--disk-format", "qcow2")
    img = os.path.join(d.state, "images/q1.img")
    info = json.loads(subprocess.run([kimg, "--json", "info", img], capture_output=True,
                                     check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 64 << 20
    base = os.path.join(d.images_dirs[0], "base.raw")
    with open(base, "wb") as f:
        f.truncate(32 << 20)
    d.kvz("create", "vm", "q2", "--kernel", d.kernel, "--disk-base", base)
    info = json.loads(subprocess.run([kimg, "--json", "info", os.path.join(d.state, "images/q2.img")],
                                     capture_output=True, check=True).stdout)
    assert info["backing-filename"] == base and info["backing-format"] == "raw"
    assert info["virtual-size"] == 32 << 20
    assert d.guest("q2")["config"]["disk_format"] == "qcow2"
    d.kvz("start", "q1")
    g = d.guest("q1")
    with open("/proc/%d/cmdline" % g["pid"]) as f:
        argv = f.read().split("\0")
    assert argv[argv.index("--disk") + 1] == img + ",format=qcow2"
    d.kvz("stop", "q1", "--force")
    for bad, why in ((["--disk", "8M", "--disk-format", "vmdk"], "disk_format"),
                     (["--disk", "8M", "--disk-format", "qcow2", "--preallocate"], "raw"),
                     (["--disk-base", "/etc/passwd"], "image directories"),
                     (["--disk-base", base, "--disk-format", "raw"], "needs disk_format")):
        r = d.kvz("create", "vm", "bad", "--kernel", d.kernel, *bad, check=False)
        assert r.returncode == 1 and why in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(d.state, "images/bad.img"))
    # A base that itself names a backing file (any host path) is refused.
    chained = os.path.join(d.images_dirs[0], "chained.qcow2")
    subprocess.run([kimg, "create", "-b", base, "-F", "raw", chained], check=True)
    r = d.kvz("create", "vm", "bad", "--kernel", d.kernel, "--disk-base", chained, check=False)
    assert r.returncode == 1 and "backing file itself" in r.stderr, r.stderr
    d.kvz("destroy", "q1")
    d.kvz("destroy", "q2")
    assert not os.path.exists(img)


def test_vm_disk_grow(kvzd):
    """kvz set --disk on a VM: while it runs kvzd asks kvz-vmm (the
    stand-in grows a raw file as kvz-vmm does) with block_resize on vda;
    while it is stopped kvzd grows the image itself (raw, and qcow2 over a
    base). Grow only; bad sizes and a VM without a disk are refused with
    one line; the store and the events follow."""
    d = kvzd
    kimg = os.path.join(BUILD, "src/image/kvz-image")
    d.kvz("create", "vm", "g", "--kernel", d.kernel, "--disk", "64M")
    img = os.path.join(d.state, "images/g.img")
    d.kvz("start", "g")
    d.kvz("set", "g", "--disk", "128M")
    assert os.path.getsize(img) == 128 << 20
    assert d.guest("g")["config"]["disk_size"] == 128 << 20
    assert d.events("g")[-1]["type"] == "resized"
    assert d.events("g")[-1]["detail"] == "disk 128M (live)"
    for args, why in ((["--disk", "32M"], "only grows"), (["--disk", "1000000"], "multiple of 512")):
        r = d.kvz("set", "g", *args, check=False)
        assert r.returncode == 1 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r
    for bad in ("", "-1", [1], {"size": 1}, None, 1.5e300):
        status, _ = d.api("PATCH", "/v1/guests/g", {"disk": bad})
        assert status == 400, bad
    assert d.guest("g")["config"]["disk_size"] == 128 << 20
    assert os.path.getsize(img) == 128 << 20
    d.kvz("stop", "g", "--force")
    d.kvz("set", "g", "--disk", "192M")
    assert os.path.getsize(img) == 192 << 20
    assert d.events("g")[-1]["detail"] == "disk 192M"

    base = os.path.join(d.images_dirs[0], "gbase.raw")
    with open(base, "wb") as f:
        f.truncate(32 << 20)
    d.kvz("create", "vm", "q", "--kernel", d.kernel, "--disk-base", base)
    d.kvz("set", "q", "--disk", "1G")
    info = json.loads(subprocess.run([kimg, "--json", "info", os.path.join(d.state, "images/q.img")],
                                     capture_output=True, check=True).stdout)
    assert info["virtual-size"] == 1 << 30 and info["backing-filename"] == base
    r = d.kvz("set", "q", "--disk", "512M", check=False)
    assert r.returncode == 1 and "only grows" in r.stderr

    d.kvz("create", "vm", "nodisk", "--kernel", d.kernel)
    r = d.kvz("set", "nodisk", "--disk", "1G", check=False)
    assert r.returncode == 1 and "no disk" in r.stderr
    for name in ("g", "q", "nodisk"):
        d.kvz("destroy", name)
