"""Nodes: two kvzd on this host (own state directories; the peer listens on
TCP with a token) and the registry of one naming the other: kvz node add,
list (reachable, CPUs, memory, CPU model from the peer's /v1/host), remove;
tokens kept private and never shown; hostile URLs and peers."""
import http.server
import json
import os
import stat
import threading

import pytest

from kvzd_harness import FAKE, fake_kvzd, free_port

TOKEN = "node-test-token-0123456789abcdef"


def token_file(d, token=TOKEN, mode=0o600, name="peer-token"):
    path = os.path.join(d.dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, (token + "\n").encode())
    os.close(fd)
    os.chmod(path, mode)
    return path


@pytest.fixture
def pair():
    """(a, b, url of b): b listens on TCP with TOKEN."""
    a, b = fake_kvzd(), fake_kvzd()
    if not a or not b:
        pytest.skip("stand-in supervisor not built: " + FAKE)
    port = free_port()
    b.start(["--listen", "127.0.0.1:%d" % port, "--token-file", token_file(b)])
    a.start()
    yield a, b, "http://127.0.0.1:%d" % port
    a.cleanup()
    b.cleanup()


def test_node_registry(pair):
    a, b, url = pair
    b.kvz("create", "vm", "onb", "--kernel", b.kernel, "--memory", "64M")
    out = a.kvz("node", "add", "b", url, "--token-file", token_file(a)).stdout
    assert out.strip() == "node b added (%s)" % url
    nodes = a.kvz_json("node", "list")
    assert len(nodes) == 1
    n = nodes[0]
    host = b.kvz_json("host")
    assert n["name"] == "b" and n["url"] == url and n["reachable"] is True
    assert n["cpus"] == host["cpus"] and n["mem_total"] == host["mem_total"]
    assert n["cpu_model"] == host["cpu_model"] and n["cpu_model"] != "unknown"
    assert 0 < n["mem_available"] <= n["mem_total"] and n["guests"] == 1
    # The token is kept private and never answered.
    tok = os.path.join(a.state, "nodes", "b.token")
    assert stat.S_IMODE(os.stat(tok).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(tok)).st_mode) == 0o700
    with open(tok) as f:
        assert f.read().strip() == TOKEN
    for path in ("/v1/nodes", "/v1/nodes/b", "/v1/events"):
        assert TOKEN not in json.dumps(a.api("GET", path)[1]), path
    with open(os.path.join(a.state, "kvzd.db"), "rb") as f:
        assert TOKEN.encode() not in f.read()
    table = a.kvz("node", "list").stdout
    assert "b " in table and "yes" in table and n["cpu_model"] in table

    # The peer goes away: listed as unreachable, with why.
    b.terminate()
    n = a.kvz_json("node", "show", "b")
    assert n["reachable"] is False and "127.0.0.1" in n["error"]
    assert "no" in a.kvz("node", "list").stdout

    r = a.kvz("node", "add", "b", url, "--token-file", token_file(a), check=False)
    assert r.returncode == 1
    a.kvz("node", "remove", "b")
    assert a.kvz_json("node", "list") == [] and not os.path.exists(tok)
    r = a.kvz("node", "remove", "b", check=False)
    assert r.returncode == 1 and "no node named b" in r.stderr
    events = [(e["type"], e["detail"]) for e in a.api("GET", "/v1/events")[1]
              if e["guest"] == "@nodes"]
    # b was down for a while before its removal: the health checks may have
    # said so meanwhile (how many depends on how long the steps took).
    types = [t for t, _ in events]
    assert types[0] == "node-added" and types[-1] == "node-removed", events
    assert all(t == "node-unreachable" and d.startswith("b ") for t, d in events[1:-1]), events


def test_node_add_refusals(pair):
    a, b, url = pair
    wrong = token_file(a, "x" * 32, name="wrong")
    r = a.kvz("node", "add", "b", url, "--token-file", wrong, check=False)
    err = r.stderr.strip().split("\n")
    assert r.returncode == 1 and len(err) == 1 and "refused the token" in err[0], err
    # A token file open to others is refused by kvz before anything is sent.
    r = a.kvz("node", "add", "b", url, "--token-file", token_file(a, mode=0o644, name="open"),
              check=False)
    assert r.returncode == 1 and "open to group or others" in r.stderr
    good = token_file(a)
    for bad_url in ("file:///etc/passwd", "https://127.0.0.1:1", "http://127.0.0.1",
                    "http://127.0.0.1:0", "http://127.0.0.1:99999", "http://a b:1",
                    "http://127.0.0.1:1/v1/x", "gopher://x:1", "http://:80"):
        r = a.kvz("node", "add", "b", bad_url, "--token-file", good, check=False)
        assert r.returncode == 1 and "bad or missing url" in r.stderr, (bad_url, r.stderr)
    # Nothing listens there.
    r = a.kvz("node", "add", "b", "http://127.0.0.1:%d" % free_port(), "--token-file", good,
              check=False)
    assert r.returncode == 1 and "node b:" in r.stderr
    for body in ({"name": "../x", "url": url, "token": TOKEN}, {"name": "b", "url": url},
                 {"name": "b", "url": url, "token": "short"},
                 {"name": "b", "url": url, "token": TOKEN + " x"},
                 {"name": "b", "url": url, "token": TOKEN, "extra": 1}, [1]):
        status, _ = a.api("POST", "/v1/nodes", body)
        assert status == 400, body
    assert a.api("GET", "/v1/nodes/..")[0] in (400, 404)
    assert a.api("GET", "/v1/nodes/nope")[0] == 404
    assert a.api("PUT", "/v1/nodes")[0] == 405
    a.kvz("node", "add", "b", url, "--token-file", good)
    r = a.kvz("node", "add", "b", url, "--token-file", good, check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert os.listdir(os.path.join(a.state, "nodes")) == ["b.token"]


class Hostile(http.server.BaseHTTPRequestHandler):
    """A "peer" that answers GET /v1/host with 8 MiB, or with no JSON."""
    mode = "huge"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if Hostile.mode == "huge":
            try:
                self.wfile.write(b"[" + b"1," * (4 << 20) + b"1]")
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self.wfile.write(b"<html>not kvzd</html>")

    def log_message(self, *args):
        pass


def test_hostile_peers(pair):
    a, _, _ = pair
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = "http://127.0.0.1:%d" % srv.server_address[1]
        for mode, why in (("huge", "more than"), ("html", "answered HTTP 200")):
            Hostile.mode = mode
            r = a.kvz("node", "add", "h", url, "--token-file", token_file(a), check=False)
            assert r.returncode == 1 and why in r.stderr, (mode, r.stderr)
        assert a.kvz_json("node", "list") == []
        assert a.proc.poll() is None
    finally:
        srv.shutdown()
