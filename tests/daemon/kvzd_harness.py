"""Starts kvzd on a temporary state directory and socket, and talks to it
through the kvz CLI and through raw HTTP on its UNIX socket."""
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BUILD = os.environ.get("KVZ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
KVZD = os.path.join(BUILD, "src/daemon/kvzd")
KVZ = os.path.join(BUILD, "src/cli/kvz")
FAKE = os.path.join(BUILD, "tests/daemon/kvz-fake-supervisor")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("kvzd", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


# Every Kvzd made in this test process, so that a failing test's report can
# show what each daemon and its supervisors logged (conftest.py): a flake
# seen once is then diagnosable from its report alone.
ALL = []


def logs_of_all(max_lines=80):
    """The last lines of each kvzd's log and of its guests' logs."""
    out = []
    for d in ALL:
        paths = [d.log] + sorted(glob.glob(os.path.join(d.state, "logs", "*.log")))
        for path in paths:
            try:
                with open(path, errors="replace") as f:
                    lines = f.read().splitlines()[-max_lines:]
            except OSError:
                continue
            out.append("==> %s <==\n%s" % (path, "\n".join(lines)))
    return "\n".join(out)


def stop_all(*daemons):
    """Stops each kvzd and removes its files; returns what they logged."""
    logs = ""
    for d in daemons:
        d.terminate()
        logs += d.read_log()
        d.cleanup()
    return logs


def no_sanitizer_report(logs):
    """Under ASan/UBSan (KVZ_BUILD_DIR=build-asan) kvzd's reports fail the test."""
    assert "runtime error" not in logs and "Sanitizer" not in logs, logs


class Kvzd:
    def __init__(self, vmm=None, ct=None, interval=1, images_dirs=()):
        ALL.append(self)
        # Short paths: UNIX socket paths are limited to 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="kvzd-", dir="/tmp")
        self.state = os.path.join(self.dir, "state")
        self.run = os.path.join(self.dir, "run")
        self.socket = os.path.join(self.dir, "kvzd.sock")
        self.vmm, self.ct, self.interval = vmm, ct, interval
        # kvzd takes kernels and initrds only from these (--images-dir).
        self.images_dirs = list(images_dirs)
        self.proc = None
        self.log = os.path.join(self.dir, "kvzd.log")
        # The command kvzd runs under, e.g. ["ip", "netns", "exec", NS]:
        # it must exec kvzd, so that self.proc is kvzd itself.
        self.wrap = []

    def start(self, extra=()):
        args = self.wrap + [KVZD, "--state-dir", self.state, "--run-dir", self.run,
                "--socket", self.socket, "--sample-interval", str(self.interval)]
        if self.vmm:
            args += ["--vmm", self.vmm]
        if self.ct:
            args += ["--ct", self.ct]
        for d in self.images_dirs:
            args += ["--images-dir", d]
        args += list(extra)
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(args, stdout=logf, stderr=logf)
        logf.close()
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("kvzd exited: " + self.read_log())
            try:
                if self.api("GET", "/v1/host")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("kvzd did not answer: " + self.read_log())

    def read_log(self):
        with open(self.log) as f:
            return f.read()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        """Stops kvzd, then every guest it left running, then removes files."""
        guests = []
        try:
            if self.proc and self.proc.poll() is None:
                guests = self.api("GET", "/v1/guests")[1]
        except OSError:
            pass
        for g in guests or []:
            try:
                self.api("DELETE", "/v1/guests/%s?force=1" % g["name"])
            except OSError:
                pass
        self.terminate()
        # Supervisors that outlived kvzd (or a kvzd that crashed): ours are
        # the processes whose command line names this test's directory.
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if self.dir.encode() + b"/" in cmdline:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.2)
        # For sanitizer runs: keep kvzd's and the supervisors' logs.
        keep = os.environ.get("KVZD_TEST_LOG_DIR")
        if keep:
            os.makedirs(keep, exist_ok=True)
            dest = os.path.join(keep, os.path.basename(self.dir))
            shutil.copytree(self.dir, dest, ignore=shutil.ignore_patterns("*.img", "*.db*", "bin"),
                            ignore_dangling_symlinks=True, dirs_exist_ok=True,
                            copy_function=lambda s, d: os.path.isfile(s) and shutil.copy(s, d))
        shutil.rmtree(self.dir, ignore_errors=True)

    def api(self, method, path, body=None, raw=None, timeout=120):
        conn = UnixHTTPConnection(self.socket, timeout=timeout)
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        text = resp.read().decode()
        ctype = resp.getheader("Content-Type", "")
        conn.close()
        if ctype.startswith("application/json"):
            return resp.status, json.loads(text)
        return resp.status, text

    def kvz(self, *args, check=True, timeout=120, input=None):
        env = dict(os.environ, KVZ_SOCKET=self.socket)
        r = subprocess.run([KVZ] + list(args), capture_output=True, text=True,
                           env=env, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise AssertionError("kvz %s failed (%d): %s%s" % (
                " ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def kvz_json(self, *args):
        return json.loads(self.kvz("--json", *args).stdout)

    def guest(self, name):
        return self.kvz_json("show", name)

    def events(self, guest=None):
        args = ["events", "--limit", "1000"] + (["--guest", guest] if guest else [])
        return self.kvz_json(*args)

    def job(self, jid):
        status, j = self.api("GET", "/v1/jobs/%d" % jid)
        assert status == 200, j
        return j

    def wait_job(self, jid, timeout=30):
        """The job's record once it has ended."""
        return self.wait_for(lambda: (lambda j: j if j["state"] not in ("queued", "running")
                                      else None)(self.job(jid)),
                             timeout=timeout, what="job %d to end" % jid)

    def running_again(self, name, old_pid):
        """The guest's record when it runs under another supervisor than
        old_pid, else None. One read: a state from before a restart and a
        pid from during it would pass two separate reads."""
        g = self.guest(name)
        return g if g["state"] == "running" and g["pid"] not in (old_pid, 0, None) else None

    def wait_for(self, cond, timeout=20, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError("timed out waiting for " + what + "\nkvzd log:\n" + self.read_log())


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tcp_request(port, method, path, body=None, token=None, timeout=30):
    """A request on a kvzd's TCP API (as a peer or a remote client makes
    it): (status, the answer's text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers=headers)
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    return r.status, text


def fake_kvzd():
    """A Kvzd, not started yet, whose kvz-vmm and kvz-ct are the stand-in
    supervisor, with a dummy kernel file d.kernel in its one image directory
    d.images_dirs[0]. None when the stand-in is not built."""
    if not os.path.exists(FAKE):
        return None
    d = Kvzd()
    bindir = os.path.join(d.dir, "bin")
    os.mkdir(bindir)
    # Copies, not links: kvzd recognises supervisors by argv[0]'s basename.
    for prog in ("kvz-vmm", "kvz-ct"):
        shutil.copy(FAKE, os.path.join(bindir, prog))
    d.vmm, d.ct = os.path.join(bindir, "kvz-vmm"), os.path.join(bindir, "kvz-ct")
    d.kernel = os.path.join(bindir, "kernel")
    with open(d.kernel, "wb") as f:
        f.write(b"\0" * 4096)
    d.images_dirs = [bindir]
    return d


def real_ct_kvzd():
    """A Kvzd, not started yet, with the real kvz-ct; skips the test where
    containers cannot run."""
    import pytest
    kvz_ct = os.path.join(BUILD, "src/ct/kvz-ct")
    if os.geteuid() != 0:
        pytest.skip("containers need root")
    if not os.path.exists(kvz_ct):
        pytest.skip("kvz-ct not built: " + kvz_ct)
    return Kvzd(ct=kvz_ct)


def parse_prometheus(text):
    """A strict parser of the Prometheus text format 0.0.4: every line is a
    comment (# HELP name text / # TYPE name type), or `name{labels} value`
    with valid names, quoted and escaped label values and a float value;
    every sample's metric has a TYPE given before it, once. Returns
    {name: {"type": t, "samples": [(labels dict, float)]}}."""
    import re
    name_re = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
    label_re = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
    sample_re = re.compile(r"^(" + name_re + r")(?:\{((?:" + label_re + r",?)*)\})? (\S+)$")
    metrics = {}
    assert text.endswith("\n"), "exposition must end with a newline"
    for line in text.split("\n")[:-1]:
        assert line, "empty line in exposition"
        if line.startswith("# HELP "):
            assert re.match("^# HELP " + name_re + " .*$", line), line
            continue
        if line.startswith("# TYPE "):
            m = re.match("^# TYPE (" + name_re + ") (counter|gauge|histogram|summary|untyped)$", line)
            assert m, "bad TYPE line: " + line
            assert m.group(1) not in metrics, "TYPE given twice for " + m.group(1)
            metrics[m.group(1)] = {"type": m.group(2), "samples": []}
            continue
        assert not line.startswith("#"), "bad comment: " + line
        m = sample_re.match(line)
        assert m, "bad sample line: " + repr(line)
        name, labels_s, value = m.group(1), m.group(2), m.group(m.lastindex)
        assert name in metrics, "sample before its TYPE: " + line
        labels = dict(re.findall(label_re, labels_s or ""))
        v = float(value)  # raises on junk; accepts NaN/+Inf as the format does
        if metrics[name]["type"] == "counter":
            assert v >= 0, "negative counter: " + line
        metrics[name]["samples"].append((labels, v))
    return metrics


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
