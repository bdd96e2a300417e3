"""GET /v1/events/stream (meson test 'web-events'): server-sent events of
kvzd's guest events and periodic snapshots, on the UNIX socket and through
a web UI session."""
import json
import socket
import time


from webui_harness import Client, start_web


class Stream:
    """Reads SSE messages from a raw socket response."""

    def __init__(self, sock):
        self.f = sock.makefile("rb")
        status = self.f.readline()
        assert b" 200 " in status, status
        while self.f.readline() not in (b"\r\n", b""):
            pass

    def next(self):
        msg = {}
        while True:
            line = self.f.readline()
            assert line, "stream ended"
            line = line.decode().rstrip("\r\n")
            if line == "":
                if msg:
                    return msg
                continue
            if line.startswith(":"):
                continue
            # Chunked transfer: chunk sizes are hex lines of their own.
            if ":" not in line:
                continue
            k, v = line.split(": ", 1)
            msg[k] = v

    def until(self, cond, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.next()
            if cond(m):
                return m
        raise AssertionError("no such message")


def unix_stream(d, query="", headers=""):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(d.socket)
    s.sendall(("GET /v1/events/stream%s HTTP/1.0\r\nHost: kvzd\r\n%s\r\n" %
               (query, headers)).encode())
    return Stream(s), s


def test_snapshot_then_events(fake):
    fake.interval = 1
    fake.start()
    st, s = unix_stream(fake)
    first = st.next()
    assert first["event"] == "snapshot"
    snap = json.loads(first["data"])
    assert snap["guests"] == [] and snap["host"]["cpus"] >= 1
    fake.kvz("create", "ct", "e1")
    ev = st.until(lambda m: m["event"] == "guest-event")
    data = json.loads(ev["data"])
    assert (data["guest"], data["type"]) == ("e1", "created")
    assert int(ev["id"]) == data["id"]
    # A snapshot with the new guest follows at once.
    snap = json.loads(st.until(lambda m: m["event"] == "snapshot")["data"])
    assert [g["name"] for g in snap["guests"]] == ["e1"]
    fake.kvz("start", "e1")
    ev = st.until(lambda m: m["event"] == "guest-event")
    assert json.loads(ev["data"])["type"] == "started"
    # Periodic snapshots carry the running guest's figures.
    snap = st.until(lambda m: m["event"] == "snapshot" and
                    json.loads(m["data"])["guests"][0].get("usage"))
    assert json.loads(snap["data"])["guests"][0]["state"] == "running"
    s.close()


def test_resume_after_last_event_id(fake):
    fake.start()
    fake.kvz("create", "ct", "r1")
    fake.kvz("create", "ct", "r2")
    events = fake.events()
    first_id = events[0]["id"]
    st, s = unix_stream(fake, headers="Last-Event-ID: %d\r\n" % first_id)
    ev = st.until(lambda m: m["event"] == "guest-event")
    assert json.loads(ev["data"])["guest"] == "r2"
    s.close()
    st, s = unix_stream(fake, query="?since=0")
    ev = st.until(lambda m: m["event"] == "guest-event")
    assert json.loads(ev["data"])["guest"] == "r1"
    s.close()
    assert fake.api("GET", "/v1/events/stream?since=x")[0] == 400


def test_stream_through_session(fake):
    d = start_web(fake)
    c = Client(d)
    c.login()
    conn = c.conn()
    conn.request("GET", "/v1/events/stream", headers={"Cookie": c.cookie})
    r = conn.getresponse()
    assert r.status == 200
    assert r.getheader("Cache-Control") == "no-store"
    assert r.readline() == b"event: snapshot\n"
    c.request("POST", "/v1/guests", {"name": "s1", "type": "ct"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = r.readline()
        if line.startswith(b"data: ") and b'"created"' in line:
            break
    else:
        raise AssertionError("no created event")
    conn.close()


def test_jobs_progress_is_streamed(fake):
    """A running job's progress reaches the stream as "jobs" messages while
    it runs (the UI's progress bars), ending with its final state; the
    first message comes at once, before any job."""
    fake.start()
    st, s = unix_stream(fake)
    first = st.until(lambda m: m["event"] == "jobs")
    assert json.loads(first["data"]) == []
    fake.kvz("create", "vm", "j1", "--kernel", fake.kernel, "--memory", "64M", "--disk", "16M",
             "--cmdline", "fake-migrate=slow")
    fake.kvz("start", "j1")
    code, job = fake.api("POST", "/v1/guests/j1/snapshots", {"name": "p1"})
    assert code == 202, job
    seen = []
    while not seen or seen[-1]["state"] not in ("completed", "failed", "cancelled"):
        m = st.until(lambda m: m["event"] == "jobs", timeout=30)
        mine = [j for j in json.loads(m["data"]) if j["id"] == job["id"]]
        assert len(mine) == 1, m
        seen.append(mine[0])
    assert seen[-1]["state"] == "completed", seen[-1]
    running = [(j["phase"], j["done"]) for j in seen if j["state"] == "running"]
    assert len(set(running)) >= 3, running          # it moved, in more than one step
    assert any(p == "saving memory" and 0 < d for p, d in running), running
    s.close()
