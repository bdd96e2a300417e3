"""What the kvz-ct test files share: running kvz-ct, a per-test Env with its
own --ct-root/--run-dir and unique names (runs by other engineers on the same
machine do not collide), QMP, and checks for leftovers and error lines. The
fixtures built on it (env, bbroot) are in conftest.py."""
import glob
import json
import os
import re
import socket
import subprocess

BUILD = os.environ.get("KVZ_BUILD_DIR", "build")
KVZCT = os.path.join(BUILD, "src", "ct", "kvz-ct")
PROBE = os.path.join(BUILD, "tests", "ct", "ctprobe")
CACHE = "/var/lib/kvz/cache"
UID = os.getpid() % 100000
CG_ROOT = "/sys/fs/cgroup"


def kvz(*args, check=True, timeout=120):
    r = subprocess.run([KVZCT, *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"kvz-ct {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


class Env:
    def __init__(self, tmp):
        self.ct_root = str(tmp / "ct")
        self.run_dir = str(tmp / "run")
        self.started = []

    def name(self, tag):
        return f"t{UID}{tag}"

    def run(self, name, *args, check=True, timeout=120):
        return kvz("run", "--name", name, "--ct-root", self.ct_root, "--run-dir", self.run_dir,
                   *args, check=check, timeout=timeout)

    def start(self, name, *args):
        """A detached container running `sleep` (or what follows --)."""
        if "--" not in args:
            args = (*args, "--", "sleep", "100000")
        self.started.append(name)
        return self.run(name, "--detach", *args)

    def exec(self, name, *cmd, check=True):
        return kvz("exec", "--name", name, "--run-dir", self.run_dir, "--", *cmd, check=check)

    def set(self, name, *args, check=True):
        return kvz("set", "--name", name, "--run-dir", self.run_dir, *args, check=check)

    def stop(self, name, timeout="2"):
        return kvz("stop", "--name", name, "--run-dir", self.run_dir, "--timeout", timeout)

    def state(self, name):
        with open(os.path.join(self.run_dir, name + ".json")) as f:
            return json.load(f)

    def create(self, name, disk="256M"):
        return kvz("create", "--name", name, "--template", "busybox", "--disk", disk,
                   "--ct-root", self.ct_root)

    def cleanup(self):
        for n in self.started:
            if os.path.exists(os.path.join(self.run_dir, n + ".json")):
                kvz("stop", "--name", n, "--run-dir", self.run_dir, "--timeout", "0", check=False)


def one_error_line(r):
    assert r.returncode != 0, r
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"want one error line, got: {r.stderr!r}"
    assert lines[0].startswith("kvz-ct: error: "), lines
    return lines[0]


def own_cgroups():
    """This process's cgroup per hierarchy ("memory", "systemd" for
    name=systemd, "unified" for 0::), "" for a root: kvz-ct started from here
    inherits them and puts its containers below."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, hiers, path = line.rstrip("\n").split(":", 2)
            for h in hiers.split(",") if hiers else ["unified"]:
                own[h.removeprefix("name=")] = path.rstrip("/")
    return own


def cg_dir(hier, name):
    """Where kvz-ct puts container NAME in hierarchy HIER (ignored on a
    pure cgroup v2 host): OWN/kvz/NAME."""
    own = own_cgroups()
    if os.path.exists(f"{CG_ROOT}/cgroup.controllers"):
        return f"{CG_ROOT}{own.get('unified', '')}/kvz/{name}"
    # v1 devices: the processes sit one level down, below the allow-list.
    leaf = "/ct" if hier == "devices" else ""
    return f"{CG_ROOT}/{hier}{own.get(hier, '')}/kvz/{name}{leaf}"


def leftovers(env, name, veth=None, target=None):
    """Everything a container may leave behind; empty when clean."""
    left = glob.glob(f"{CG_ROOT}/*/kvz/{name}") + glob.glob(f"{CG_ROOT}/kvz/{name}")
    dirs = {cg_dir(h, name) for h in own_cgroups()}
    left += [d for d in dirs | {os.path.dirname(d) for d in dirs if d.endswith("/ct")}
             if os.path.exists(d)]
    left += glob.glob(os.path.join(env.run_dir, name + ".*"))
    if veth and os.path.exists(f"/sys/class/net/{veth}"):
        left.append(veth)
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    for path in filter(None, [target, env.ct_root]):
        if path in mounts:
            left.append("mount " + path)
    return left


def qmp(path, cmd, args=None):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    f = s.makefile("rw")
    json.loads(f.readline())
    for c, a in (("qmp_capabilities", None), (cmd, args)):
        msg = {"execute": c}
        if a is not None:
            msg["arguments"] = a
        f.write(json.dumps(msg) + "\n")
        f.flush()
        while True:
            reply = json.loads(f.readline())
            if "event" not in reply:
                break
    s.close()
    return reply


def debian_reachable():
    try:
        with open("/etc/apt/sources.list.d/debian.sources") as f:
            uri = re.search(r"^URIs:\s*(\S+)", f.read(), re.M).group(1)
        host = re.match(r"https?://([^/:]+)", uri).group(1)
        socket.create_connection((host, 80), timeout=5).close()
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "cannot reach"
        return f"the Debian archive is not reachable ({e})"


def start_debian(env, name):
    """Creates a container from the debian template and starts its init;
    skips the test when the template can be neither found nor built."""
    import pytest
    if not os.path.exists(os.path.join(CACHE, "debian.tar.zst")):
        why = debian_reachable()
        if why:
            pytest.skip(f"debian template: {why}; debootstrap cannot run")
    kvz("create", "--name", name, "--template", "debian", "--disk", "1G", "--ct-root", env.ct_root,
        timeout=900)
    env.start(name, "--hostname", "deb1", "--", "/sbin/init")
