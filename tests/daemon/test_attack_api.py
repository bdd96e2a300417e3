"""Attacks on kvzd through its API (suite 'daemon', meson test
'daemon-attacks'): floods of idle and slow TCP connections, a token file
others can read, paths that point outside the image directories, disks
larger than the host can hold. Each asserts that the attack fails and that
the host side is unchanged. kvzd runs with the stand-in supervisors
(fake_supervisor.c); the backup test uses the real kvz-ct."""
import ctypes
import errno
import http.client
import json
import os
import resource
import socket
import stat
import struct
import subprocess
import time

import pytest

from kvzd_harness import BUILD, KVZD, free_port

TOKEN = "attack-test-token-0123456789"
FLOOD = 2000


def write_token(d, mode=0o600):
    path = os.path.join(d.dir, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, (TOKEN + "\n").encode())
    os.close(fd)
    os.chmod(path, mode)
    return path


def start_tcp(d, *limits):
    port = free_port()
    d.start(["--listen", "127.0.0.1:%d" % port, "--token-file", write_token(d)] + list(limits))
    return port


def need_fds(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < n:
        pytest.skip("the test needs %d open files; the hard limit is %d" % (n, hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n), hard))


def authorized_get(port, src, timeout=10):
    """GET /v1/guests with the token from source address src: (status, seconds)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(src, 0))
    c.request("GET", "/v1/guests", headers={"Authorization": "Bearer " + TOKEN})
    status = c.getresponse().status
    c.close()
    return status, time.monotonic() - t0


def unix_get(d):
    t0 = time.monotonic()
    status = d.api("GET", "/v1/guests", timeout=10)[0]
    return status, time.monotonic() - t0


def open_idle(port, n, src):
    """n TCP connections from src that send nothing."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def closed_by_server(s):
    s.setblocking(False)
    try:
        return s.recv(64) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def count_closed(socks):
    return sum(1 for s in socks if closed_by_server(s))


def kvzd_tcp_connections(pid, port, remote=None):
    """Established TCP connections on port that kvzd holds a descriptor of,
    optionally only those from address remote."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    want_remote = None
    if remote:
        want_remote = "%08X" % struct.unpack("<I", socket.inet_aton(remote))[0]
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            lport = int(fields[1].split(":")[1], 16)
            if lport != port or fields[3] != "01" or fields[9] not in inodes:
                continue
            if want_remote and fields[2].split(":")[0] != want_remote:
                continue
            n += 1
    return n


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def close_all(socks):
    for s in socks:
        s.close()


# ---- connection floods ----

def test_flood_of_idle_connections(fake):
    """2,000 idle connections from one address: kvzd keeps 16 (its per-address
    limit) and closes the rest at once; meanwhile the UNIX socket and an
    authorized TCP client from another address answer within 1 s; after the
    idle timeout kvzd has dropped the 16 too."""
    need_fds(FLOOD + 500)
    d = fake
    port = start_tcp(d, "--max-connections", "128", "--max-connections-per-ip", "16",
                     "--idle-timeout", "5")
    t0 = time.monotonic()
    flood = open_idle(port, FLOOD, "127.0.0.1")
    try:
        status, secs = unix_get(d)
        assert status == 200 and secs < 1, ("UNIX socket under the flood", status, secs)
        # Another address: the flood's own address is at its limit.
        status, secs = authorized_get(port, "127.0.0.2")
        assert status == 200 and secs < 1, ("authorized TCP client under the flood", status, secs)
        wait_until(lambda: count_closed(flood) >= FLOOD - 16, 3, "connections beyond the limit closed")
        held = kvzd_tcp_connections(d.proc.pid, port, "127.0.0.1")
        assert 0 < held <= 16, held
        if time.monotonic() - t0 < 4:
            assert count_closed(flood) <= FLOOD - held, "dropped before the idle timeout"
        wait_until(lambda: count_closed(flood) == FLOOD, 5 + 3, "idle connections dropped")
        assert time.monotonic() - t0 > 4.5
        assert kvzd_tcp_connections(d.proc.pid, port) == 0
    finally:
        close_all(flood)
    assert d.proc.poll() is None
    assert authorized_get(port, "127.0.0.1")[0] == 200, "the flood's address is served again"


def test_flood_from_many_addresses(fake):
    """A flood from 40 addresses fills the listener (4 each, 32 at most):
    kvzd keeps at most three quarters of its slots for connections without
    a header and a new connection pushes out the oldest, so an authorized
    client still answers within 1 s, long before the idle timeout."""
    need_fds(400)
    d = fake
    port = start_tcp(d, "--max-connections", "32", "--max-connections-per-ip", "4",
                     "--idle-timeout", "60")
    flood = []
    try:
        for i in range(10, 50):
            flood += open_idle(port, 4, "127.0.0.%d" % i)
        time.sleep(0.5)
        held = kvzd_tcp_connections(d.proc.pid, port)
        assert held <= 24, held
        assert count_closed(flood) >= len(flood) - 24
        status, secs = authorized_get(port, "127.0.0.2")
        assert status == 200 and secs < 1, (status, secs)
        status, secs = unix_get(d)
        assert status == 200 and secs < 1, (status, secs)
    finally:
        close_all(flood)


def test_slow_loris_dropped(fake):
    """A client sending its header one byte a second is dropped at the idle
    timeout, without a response (MHD's own timeout counts only silence)."""
    d = fake
    port = start_tcp(d, "--idle-timeout", "3")
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.3", 0))
    header = b"GET /v1/guests HTTP/1.1\r\nHost: kvzd\r\nAuthorization: Bearer " + TOKEN.encode()
    t0 = time.monotonic()
    got = None
    for b in header:
        try:
            s.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            got = b""
            break
        s.settimeout(1)
        try:
            got = s.recv(4096)
            break
        except socket.timeout:
            continue
        except ConnectionResetError:
            got = b""
            break
    elapsed = time.monotonic() - t0
    s.close()
    assert got == b"", "kvzd answered a header that took %.1f s: %r" % (elapsed, got)
    assert 2.5 < elapsed < 5, elapsed


def test_unauthenticated_body_not_read(fake):
    """Without the token the 401 comes as soon as the header is complete,
    before the announced body, and the connection does not outlive the
    idle timeout; with the token the same request is served."""
    d = fake
    port = start_tcp(d, "--idle-timeout", "3")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"POST /v1/guests HTTP/1.1\r\nHost: kvzd\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000000\r\n\r\n")
    t0 = time.monotonic()
    reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 401"), reply
    assert time.monotonic() - t0 < 1
    s.settimeout(6)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    assert time.monotonic() - t0 < 5
    s.close()
    assert d.kvz_json("list") == []


# ---- jobs ----

def tcp_request(port, method, path, token=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": "Bearer " + token} if token else {}
    data = json.dumps(body) if body is not None else None
    if data:
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return r.status, text


def test_jobs_of_others_need_the_token(fake):
    """A TCP client without the token (or with a wrong one) can neither see,
    cancel nor start jobs; the job it aimed at runs on unharmed."""
    d = fake
    port = start_tcp(d)
    d.kvz("create", "vm", "jv", "--kernel", d.kernel, "--memory", "64M", "--disk", "8M",
          "--cmdline", "fake-migrate=slow")
    d.kvz("start", "jv")
    jid = d.kvz_json("snapshot", "create", "jv", "s", "--detach")["id"]
    for token in (None, "wrong-" + TOKEN, TOKEN[:-1]):
        for method, path, body in (("GET", "/v1/jobs", None), ("GET", "/v1/jobs/%d" % jid, None),
                                   ("DELETE", "/v1/jobs/%d" % jid, None),
                                   ("POST", "/v1/jobs/%d/cancel" % jid, None),
                                   ("POST", "/v1/guests/jv/snapshots", {"name": "evil"}),
                                   ("POST", "/v1/guests/jv/snapshots/s/restore", None),
                                   ("DELETE", "/v1/guests/jv/snapshots/s", None)):
            status, text = tcp_request(port, method, path, token, body)
            assert status == 401 and "bearer token" in text, (token, method, path, text)
    deadline = time.monotonic() + 30
    while d.api("GET", "/v1/jobs/%d" % jid)[1]["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.1)
    assert d.api("GET", "/v1/jobs/%d" % jid)[1]["state"] == "completed"
    assert [s["name"] for s in d.kvz_json("snapshot", "list", "jv")] == ["s"]
    # With the token the same client sees it.
    status, text = tcp_request(port, "GET", "/v1/jobs/%d" % jid, TOKEN)
    assert status == 200 and json.loads(text)["id"] == jid


def test_bogus_job_ids_and_finished_jobs(fake):
    d = fake
    port = start_tcp(d)
    d.kvz("create", "vm", "jb", "--kernel", d.kernel, "--memory", "64M", "--disk", "8M")
    d.kvz("snapshot", "create", "jb", "s")
    done = d.kvz_json("job", "list")[-1]
    assert done["state"] == "completed"
    for path in ("/v1/jobs/abc", "/v1/jobs/0", "/v1/jobs/-1", "/v1/jobs/1e3", "/v1/jobs/%20",
                 "/v1/jobs/99999999999999999999999", "/v1/jobs/9223372036854775808",
                 "/v1/jobs/" + "9" * 5000):
        status, text = tcp_request(port, "GET", path, TOKEN)
        assert status in (400, 414), (path, status, text)
        status, text = tcp_request(port, "DELETE", path, TOKEN)
        assert status in (400, 414), (path, status, text)
    for path in ("/v1/jobs/424242", "/v1/jobs/9223372036854775807"):
        assert tcp_request(port, "GET", path, TOKEN)[0] == 404
        assert tcp_request(port, "POST", path + "/cancel", TOKEN)[0] == 404
    assert tcp_request(port, "POST", "/v1/jobs/%d/explode" % done["id"], TOKEN)[0] == 404
    assert tcp_request(port, "PUT", "/v1/jobs/%d" % done["id"], TOKEN)[0] == 405
    assert tcp_request(port, "POST", "/v1/jobs", TOKEN, {})[0] == 405
    for method, path in (("DELETE", "/v1/jobs/%d" % done["id"]),
                         ("POST", "/v1/jobs/%d/cancel" % done["id"])):
        status, text = tcp_request(port, method, path, TOKEN)
        assert status == 409 and "already ended (completed)" in text, text
    assert d.api("GET", "/v1/jobs/%d" % done["id"])[1] == done, "a refused cancel changes nothing"
    # Snapshot names that try to leave the guest's directory.
    for name in ("..", "../jb2", "a/b", ".x", "x" * 64, ""):
        status, _ = tcp_request(port, "POST", "/v1/guests/jb/snapshots", TOKEN, {"name": name})
        assert status == 400, name
    for path in ("/v1/guests/jb/snapshots/../restore", "/v1/guests/jb/snapshots/%2e%2e/restore",
                 "/v1/guests/../snapshots", "/v1/guests/jb/snapshots/s/restore/x"):
        status, _ = tcp_request(port, "POST", path, TOKEN)
        assert status in (400, 404), path
    assert sorted(os.listdir(os.path.join(d.state, "snapshots"))) == ["jb"]
    assert os.listdir(os.path.join(d.state, "snapshots", "jb")) == ["s"]


# ---- the token file ----

def test_token_file_must_be_private(fake):
    d = fake
    cases = [(0o640, None, "mode 0640"), (0o604, None, "mode 0604"),
             (0o620, None, "mode 0620"), (0o600, 4321, "belongs to uid 4321")]
    for mode, owner, why in cases:
        path = write_token(d, mode)
        if owner is not None:
            os.chown(path, owner, owner)
        r = subprocess.run([KVZD, "--state-dir", d.state, "--run-dir", d.run, "--socket", d.socket,
                            "--vmm", d.vmm, "--ct", d.ct,
                            "--listen", "127.0.0.1:%d" % free_port(), "--token-file", path],
                           capture_output=True, text=True, timeout=10)
        lines = r.stderr.splitlines()
        assert r.returncode == 1 and len(lines) == 1, (mode, r.stderr)
        assert lines[0].startswith("kvzd: error: token file %s" % path) and why in lines[0], lines
        # Refused before anything was made.
        assert not os.path.exists(d.state) and not os.path.exists(d.socket)
        os.unlink(path)
    port = start_tcp(d)
    assert authorized_get(port, "127.0.0.1")[0] == 200


# ---- paths named by API clients ----

IN_OPEN, IN_ACCESS = 0x20, 0x01


class Inotify:
    """Opens and reads of the files in one directory (ctypes: the standard
    library has no inotify)."""

    def __init__(self, path):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        assert libc.inotify_add_watch(self.fd, path.encode(), IN_OPEN | IN_ACCESS) >= 0

    def events(self):
        names = []
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return names
        off = 0
        while off < len(buf):
            _, _, _, n = struct.unpack_from("iIII", buf, off)
            names.append(buf[off + 16:off + 16 + n].rstrip(b"\0").decode())
            off += 16 + n
        return names

    def close(self):
        os.close(self.fd)


def test_paths_outside_image_dirs_refused(fake):
    """kernel and initrd paths that lead out of the image directories ("..",
    symlinks, other places) are refused with one message whatever is there;
    kvzd opens nothing outside (a FIFO there would block an open, inotify
    would see it) and creates nothing."""
    d = fake
    d.start()
    images = d.images_dirs[0]
    outside = os.path.join(d.dir, "outside")
    os.mkdir(outside)
    with open(os.path.join(outside, "kernel"), "wb") as f:
        f.write(b"\0" * 4096)
    os.mkfifo(os.path.join(outside, "fifo"))
    os.mkfifo(os.path.join(images, "fifo-in"))
    os.symlink(os.path.join(outside, "kernel"), os.path.join(images, "escape"))
    os.symlink("../outside/kernel", os.path.join(images, "escape-rel"))
    os.symlink("/etc/shadow", os.path.join(images, "shadow"))
    os.symlink(os.path.join(outside, "fifo"), os.path.join(images, "fifo-link"))
    watch = Inotify(outside)
    bad = ["/etc/shadow", images + "/../outside/kernel", images + "/../../../../etc/shadow",
           images + "/escape", images + "/escape-rel", images + "/shadow", images + "/fifo-link",
           outside + "/fifo", images + "/fifo-in", outside + "/nonexistent",
           "/nonexistent/kernel", images + "/nonexistent", images, "bin/kernel",
           "/proc/self/root/etc/shadow"]
    messages = set()
    try:
        for key in ("kernel", "initrd"):
            for path in bad:
                body = {"name": "v", "type": "vm", "kernel": d.kernel, key: path}
                t0 = time.monotonic()
                status, reply = d.api("POST", "/v1/guests", body, timeout=5)
                assert time.monotonic() - t0 < 2, path
                assert status == 400, (key, path, reply)
                messages.add(reply["error"]["message"].replace(path, "PATH", 1))
        assert len(messages) == 2, messages   # one for kernel, one for initrd
        assert "not a readable file in the image directories" in messages.pop()
        assert watch.events() == []
        # No reader holds the FIFO: opening its write end without one fails.
        with pytest.raises(OSError) as e:
            os.open(os.path.join(outside, "fifo"), os.O_WRONLY | os.O_NONBLOCK)
        assert e.value.errno == errno.ENXIO
    finally:
        watch.close()
    assert d.kvz_json("list") == [] and d.events() == []
    assert os.listdir(os.path.join(d.state, "images")) == []


def test_paths_inside_image_dirs_accepted(fake):
    """A symlink that stays inside an image directory is fine; kvzd stores
    the file's own path, and checks it again at every start."""
    d = fake
    d.start()
    images = d.images_dirs[0]
    os.symlink("kernel", os.path.join(images, "vmlinuz"))
    os.mkdir(os.path.join(images, "sub"))
    status, reply = d.api("POST", "/v1/guests", {
        "name": "v", "type": "vm", "kernel": images + "/vmlinuz",
        "initrd": images + "/sub/../kernel"})
    assert status == 201, reply
    assert reply["config"]["kernel"] == os.path.realpath(d.kernel)
    assert reply["config"]["initrd"] == os.path.realpath(d.kernel)
    # Another image directory now: the VM's kernel is no longer allowed.
    d.terminate()
    other = os.path.join(d.dir, "other-images")
    os.mkdir(other)
    d.images_dirs = [other]
    d.start()
    status, reply = d.api("POST", "/v1/guests/v/start")
    assert status == 409 and "not a readable file in the image directories" in \
        reply["error"]["message"], reply
    g = d.guest("v")
    assert g["state"] == "stopped" and g["pid"] == 0


def test_missing_images_dir_refused(fake):
    d = fake
    r = subprocess.run([KVZD, "--state-dir", d.state, "--run-dir", d.run, "--socket", d.socket,
                        "--vmm", d.vmm, "--ct", d.ct, "--images-dir", os.path.join(d.dir, "none")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("kvzd: error: --images-dir %s/none: No such file" % d.dir)


# ---- disk sizes ----

def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_disk_larger_than_host_refused(fake):
    """10 TiB disks are refused (VM and container, create and live growth);
    so is a second disk that fits alone but not beside what the first one
    may still grow by; nothing is made."""
    d = fake
    d.start()
    free = free_bytes(d.state)
    if free > 5 << 40:
        pytest.skip("the test filesystem has more than 5 TiB free")
    for body in ({"name": "big", "type": "vm", "kernel": d.kernel, "disk": "10T"},
                 {"name": "bigct", "type": "ct", "disk": "10T"}):
        status, reply = d.api("POST", "/v1/guests", body)
        assert status == 409 and "not enough space" in reply["error"]["message"], reply
    assert os.listdir(os.path.join(d.state, "images")) == []
    assert os.listdir(os.path.join(d.state, "ct")) == []
    assert d.kvz_json("list") == [] and d.events() == []

    part = free * 6 // 10
    assert d.api("POST", "/v1/guests", {"name": "c1", "type": "ct", "disk": part})[0] == 201
    status, reply = d.api("POST", "/v1/guests", {"name": "c2", "type": "ct", "disk": part})
    assert status == 409 and "may still grow by" in reply["error"]["message"], reply
    assert not os.path.exists(os.path.join(d.state, "ct/c2"))

    d.kvz("start", "c1")
    r = d.kvz("set", "c1", "--disk", "10T", check=False)
    assert r.returncode == 1 and "not enough space" in r.stderr, r
    assert d.guest("c1")["config"]["disk_size"] == part


def test_disk_overcommit(fake):
    """With --disk-overcommit large enough, the same 10 TiB disks are
    accepted (sparse); a fixed disk still has to fit for real."""
    d = fake
    probe = os.path.join(d.dir, "state")
    os.makedirs(probe)
    ratio = max(1.0, 4 * (10 << 40) / max(free_bytes(probe), 1))
    d.start(["--disk-overcommit", "%.1f" % ratio])
    status, reply = d.api("POST", "/v1/guests", {"name": "big", "type": "vm",
                                                 "kernel": d.kernel, "disk": "10T"})
    assert status == 201, reply
    st = os.stat(os.path.join(d.state, "images/big.img"))
    assert st.st_size == 10 << 40 and st.st_blocks * 512 < 1 << 20
    assert d.api("POST", "/v1/guests", {"name": "bigct", "type": "ct", "disk": "10T"})[0] == 201
    d.kvz("start", "bigct")
    d.kvz("set", "bigct", "--disk", "11T")
    assert d.guest("bigct")["config"]["disk_size"] == 11 << 40
    status, reply = d.api("POST", "/v1/guests", {"name": "fixed", "type": "vm", "kernel": d.kernel,
                                                 "disk": "10T", "disk_mode": "fixed"})
    assert status == 409 and "not enough space" in reply["error"]["message"], reply
    r = subprocess.run([KVZD, "--disk-overcommit", "0.5"], capture_output=True, text=True)
    assert r.returncode == 2 and "--disk-overcommit" in r.stderr


# ---- backups ----

def test_ct_backup_is_private(tmp_path):
    """kvz-ct backup writes the container's whole file system (its
    /etc/shadow too): only root may read it, whatever the umask."""
    kvz_ct = os.path.join(BUILD, "src/ct/kvz-ct")
    if os.geteuid() != 0:
        pytest.skip("kvz-ct create needs root")
    if not os.path.exists(kvz_ct):
        pytest.skip("kvz-ct not built: " + kvz_ct)
    root = str(tmp_path / "ct")
    name = "bk%d" % (os.getpid() % 100000)
    r = subprocess.run([kvz_ct, "create", "--name", name, "--template", "busybox",
                        "--disk", "128M", "--ct-root", root], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        pytest.skip("kvz-ct create failed here: " + r.stderr.strip())
    out = str(tmp_path / "backup.tar.zst")
    old = os.umask(0o022)
    try:
        subprocess.run([kvz_ct, "backup", "--name", name, "--output", out, "--ct-root", root],
                       check=True, capture_output=True, timeout=120)
    finally:
        os.umask(old)
        subprocess.run([kvz_ct, "destroy", "--name", name, "--ct-root", root],
                       capture_output=True, timeout=60)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
