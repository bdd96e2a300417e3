"""Root in a container is not root on the host: every container runs in a
user namespace with a range of 65536 host ids of its own (kvz-ct's idmap.h),
its root filesystem idmapped so that files keep their on-disk owners 0..65535.
Attacks assert that the attack fails and the host is unchanged."""
import concurrent.futures
import glob
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time

import pytest

from ctenv import KVZCT, PROBE, kvz, one_error_line, start_debian

SRC = os.environ.get("KVZ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "daemon"))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="kvz-ct tests need root")

POOL_START, POOL_END, COUNT = 0x80000, 0x70000000, 65536
REGISTRY = os.environ.get("KVZ_CT_IDMAP_DIR", "/var/lib/kvz/idmap")


def idmap_file(env, name):
    with open(os.path.join(env.ct_root, name, "idmap")) as f:
        return json.load(f)


def proc_map(pid, which):
    with open(f"/proc/{pid}/{which}_map") as f:
        return [l.split() for l in f.read().splitlines()]


def host_id_spans():
    """(start, count) of every host user, group and subordinate id range."""
    spans = []
    for db in ("/etc/passwd", "/etc/group"):
        with open(db) as f:
            spans += [(int(l.split(":")[2]), 1) for l in f if l.count(":") >= 2 and not l.startswith("#")]
    for sub in ("/etc/subuid", "/etc/subgid"):
        if os.path.exists(sub):
            with open(sub) as f:
                spans += [(int(l.split(":")[1]), int(l.split(":")[2])) for l in f if l.count(":") == 2]
    return spans


def registry_owners():
    """What the registry's entries say (ranges given out may be handed to
    other runs on this host at any moment: check owners, not bases)."""
    owners = []
    for entry in glob.glob(os.path.join(REGISTRY, "[0-9]*")):
        try:
            with open(entry) as f:
                owners.append(f.read().strip())
        except FileNotFoundError:
            pass
    return owners


def ct_owner(ct_root, name):
    return f"ct {os.path.realpath(ct_root)}/{name}/idmap"


def overlaps(a, b):
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def check_range(m):
    assert m["uid"] == m["gid"] and m["count"] == COUNT
    assert POOL_START <= m["uid"] and m["uid"] + COUNT <= POOL_END and m["uid"] % COUNT == 0
    assert not [s for s in host_id_spans() if overlaps(s, (m["uid"], COUNT))]


def on_disk(env, name):
    """The container's private area as the supervisor mounts it (plain, not
    idmapped: on-disk owners)."""
    sup = env.state(name)["supervisor-pid"]
    return f"/proc/{sup}/root{os.path.realpath(os.path.join(env.ct_root, name, 'root'))}"


def test_root_is_not_host_root(env):
    n = env.name("nr")
    env.create(n, "128M")
    m = idmap_file(env, n)
    check_range(m)
    env.start(n)
    assert env.state(n)["idmap"] == m
    listed = json.loads(kvz("list", "--json", "--run-dir", env.run_dir).stdout)
    assert [c["idmap"] for c in listed] == [m]
    out = env.exec(n, "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u").stdout.split()
    assert out == ["0", str(m["uid"]), "65536", "0", str(m["gid"]), "65536", "0"]
    # Seen from the host, the container's init is an ordinary user.
    init = env.state(n)["init-pid"]
    assert proc_map(init, "uid") == [["0", str(m["uid"]), "65536"]]
    with open(f"/proc/{init}/status") as f:
        status = f.read()
    assert re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", status, re.M).groups() == (str(m["uid"]),) * 4
    # Host-root-owned files the container can see stay unwritable.
    targets = {"/proc/sys/kernel/core_pattern": "|/tmp/kvz-pwned %p",
               "/proc/sys/vm/overcommit_memory": "1",
               "/proc/sys/kernel/panic": "77"}
    before = {p: open(p).read() for p in targets}
    for path, value in targets.items():
        r = env.exec(n, "sh", "-c", f"echo '{value}' > {path}", check=False)
        assert r.returncode != 0, f"container root wrote {path}"
    assert {p: open(p).read() for p in targets} == before
    # No device nodes of its own: a block device for the host's disk.
    r = env.exec(n, "sh", "-c", "mknod /root/disk b 8 0 && echo MADE", check=False)
    assert "MADE" not in r.stdout and not os.path.exists(os.path.join(on_disk(env, n), "root/disk"))
    env.stop(n)


def test_device_nodes_on_private_area_cannot_be_opened(env):
    """Device nodes on the private area (the Debian template has
    /dev/console 5:1 under the /dev tmpfs; a restored backup may hold any)
    cannot be opened: the root is nodev, and the container's root cannot
    remount it otherwise (the kernel locked its flags in the copy)."""
    n = env.name("dv")
    env.create(n, "128M")
    env.start(n)
    disk = on_disk(env, n)
    os.mknod(os.path.join(disk, "root/zero"), 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    os.mknod(os.path.join(disk, "root/console"), 0o666 | stat.S_IFCHR, os.makedev(5, 1))
    r = env.exec(n, "sh", "-c", "head -c 1 /root/zero | wc -c; head -c 1 /dev/zero | wc -c;"
                 " echo pwned > /root/console && echo WROTE;"
                 " mount -o remount,bind,dev / && echo REMOUNTED;"
                 " head -c 1 /root/zero | wc -c", check=False)
    assert r.stdout.split() == ["0", "1", "0"], r
    env.stop(n)


def test_unmappable_rootfs_stays_host_owned(env, bbroot, tmp_path):
    """A --rootfs that cannot be idmapped (ramfs) runs unmapped with one
    warning: host root's files show as nobody and container root cannot
    write them."""
    root = tmp_path / "ramroot"
    root.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "kvztest", str(root)], check=True)
    try:
        subprocess.run(["cp", "-a", bbroot + "/.", str(root)], check=True)
        secret = root / "etc" / "secret"
        secret.write_text("host\n")
        r = env.run(env.name("ram"), "--rootfs", str(root), "--", "sh", "-c",
                    "stat -c %u /etc/secret; echo pwned > /etc/secret; touch /etc/new; id -u", check=False)
        if "cannot be idmapped" not in r.stderr:
            pytest.skip("ramfs can be idmapped on this kernel")
        said = [l for l in r.stderr.splitlines() if l.startswith("kvz-ct: ")]
        assert len(said) == 1 and said[0].startswith("kvz-ct: warning: "), r.stderr
        assert r.stdout.split() == ["65534", "0"]
        assert secret.read_text() == "host\n" and not (root / "etc" / "new").exists()
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_ranges_distinct_no_signal_no_ptrace(env, bbroot):
    """Two containers, both "root": the root of one cannot signal or trace the
    other's processes. A probe on the host joins one container's user
    namespace as its root (what its processes are) and attacks the other's
    init by host pid; as root of the target's own namespace the same probe
    can signal it, so a failure is the ranges at work."""
    a, b = env.name("ra"), env.name("rb")
    env.create(a, "128M")
    env.start(a)
    env.start(b, "--rootfs", bbroot)  # a range for this run
    ma, mb = env.state(a)["idmap"], env.state(b)["idmap"]
    check_range(mb)
    assert not overlaps((ma["uid"], COUNT), (mb["uid"], COUNT))
    ia, ib = env.state(a)["init-pid"], env.state(b)["init-pid"]

    def probe(*args):
        return subprocess.run([PROBE, *map(str, args)], capture_output=True, text=True,
                              check=True).stdout.strip()

    assert probe("userns-kill", ib, ib, 0) == "kill=ok"
    assert probe("userns-ptrace", ia, ib) == "ptrace=EPERM"
    assert probe("userns-kill", ia, ib, 9) == "kill=EPERM"
    assert probe("userns-kill", ib, ia, 9) == "kill=EPERM"
    time.sleep(0.2)
    for n in (a, b):
        assert env.exec(n, "true").returncode == 0
    env.stop(a)
    env.stop(b)
    # The per-run range went with its run.
    assert not [o for o in registry_owners() if o.startswith(f"run {b} ")]


def test_range_survives_restart(env):
    n = env.name("rs")
    env.create(n, "128M")
    m = idmap_file(env, n)
    with open(os.path.join(REGISTRY, str(m["uid"]))) as f:
        assert f.read().strip() == ct_owner(env.ct_root, n)
    for _ in range(2):
        env.start(n)
        assert env.exec(n, "cat", "/proc/self/uid_map").stdout.split() == ["0", str(m["uid"]), "65536"]
        env.stop(n)
    assert idmap_file(env, n) == m
    kvz("destroy", "--name", n, "--ct-root", env.ct_root, "--run-dir", env.run_dir)
    assert ct_owner(env.ct_root, n) not in registry_owners()


def test_copied_or_edited_idmap_gets_a_range_of_its_own(env):
    """A private area copied with its idmap file, or an idmap file edited to
    map onto host users, never shares a range: run gives it a new one."""
    a, b = env.name("cpa"), env.name("cpb")
    env.create(a, "128M")
    ma = idmap_file(env, a)
    subprocess.run(["cp", "-a", "--sparse=always", os.path.join(env.ct_root, a),
                    os.path.join(env.ct_root, b)], check=True)
    assert idmap_file(env, b) == ma
    env.start(b)
    mb = env.state(b)["idmap"]
    check_range(mb)
    assert mb["uid"] != ma["uid"] and idmap_file(env, b) == mb
    env.start(a)
    assert env.state(a)["idmap"] == ma
    env.stop(a)
    env.stop(b)
    with open(os.path.join(env.ct_root, b, "idmap"), "w") as f:
        json.dump({"uid": 1000, "gid": 1000, "count": 65536}, f)
    env.start(b)
    check_range(env.state(b)["idmap"])
    assert env.exec(b, "cat", "/proc/self/uid_map").stdout.split()[1] != "1000"
    env.stop(b)
    for n in (a, b):
        kvz("destroy", "--name", n, "--ct-root", env.ct_root, "--run-dir", env.run_dir)


def test_privileged_warns(env, bbroot):
    r = env.run(env.name("pv"), "--rootfs", bbroot, "--privileged", "--", "cat", "/proc/self/uid_map")
    assert r.stdout.split() == ["0", "0", "4294967295"]
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("kvz-ct: warning: "), r.stderr
    assert "container root is host root" in lines[0]
    gone = kvz("run", "--name", env.name("pv"), "--rootfs", bbroot, "--userns", "--", "true", check=False)
    assert gone.returncode != 0


def test_concurrent_creates_get_distinct_ranges(env):
    names = [env.name(f"cc{i}") for i in range(6)]
    with concurrent.futures.ThreadPoolExecutor(len(names)) as ex:
        results = list(ex.map(lambda n: kvz("create", "--name", n, "--template", "busybox",
                                             "--disk", "128M", "--ct-root", env.ct_root,
                                             check=False), names))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    maps = [idmap_file(env, n) for n in names]
    for m in maps:
        check_range(m)
    bases = sorted(m["uid"] for m in maps)
    assert all(y - x >= COUNT for x, y in zip(bases, bases[1:])), bases
    for n in names:
        kvz("destroy", "--name", n, "--ct-root", env.ct_root, "--run-dir", env.run_dir)
    assert not set(ct_owner(env.ct_root, n) for n in names) & set(registry_owners())


def test_failed_restore_frees_range(env, tmp_path):
    """A restore that fails after its range was taken (a backup with a path
    escaping the root) gives the range back and leaves nothing behind."""
    n = env.name("rf")
    raw = tmp_path / "evil.tar"
    with tarfile.open(raw, "w", format=tarfile.PAX_FORMAT) as t:
        for name, data in (("kvz-backup.json", b'{"name": "x", "disk-size": 134217728, "format": 1}\n'),
                           ("../escaped", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    subprocess.run(["zstd", "-q", str(raw), "-o", str(tmp_path / "evil.tar.zst")], check=True)
    r = kvz("restore", "--name", n, "--input", str(tmp_path / "evil.tar.zst"), "--ct-root",
            env.ct_root, check=False)
    one_error_line(r)
    assert not os.path.exists(os.path.join(env.ct_root, n))
    assert not (tmp_path / "escaped").exists() and not os.path.exists(os.path.join(env.ct_root, "escaped"))
    assert ct_owner(env.ct_root, n) not in registry_owners()


def owners(root, paths):
    return {p: (os.lstat(os.path.join(root, p)).st_uid, os.lstat(os.path.join(root, p)).st_gid)
            for p in paths}


def test_backup_keeps_on_disk_owners(env, tmp_path):
    """Files made inside by root and by a non-root user are owned on disk by
    their container ids (0..65535, not the host range), backups record those
    and are 0600, and backup -> destroy -> restore keeps them."""
    n = env.name("bo")
    env.create(n, "256M")
    env.start(n)
    shutil.copy(PROBE, os.path.join(on_disk(env, n), "bin", "ctprobe"))
    env.exec(n, "sh", "-c", "mkdir -p /home/u && chown 1000:1000 /home/u && touch /root/byroot &&"
             " touch /root/given && chown 4321:4322 /root/given")
    env.exec(n, "ctprobe", "userns-as", "1000", "1000", "touch", "/home/u/byuser")
    want = {"root/byroot": (0, 0), "root/given": (4321, 4322), "home/u": (1000, 1000),
            "home/u/byuser": (1000, 1000)}
    assert owners(on_disk(env, n), want) == want
    inside = env.exec(n, "stat", "-c", "%n %u %g", *["/" + p for p in want]).stdout
    assert inside == "".join(f"/{p} {u} {g}\n" for p, (u, g) in want.items())
    live = str(tmp_path / "live.tar.zst")
    kvz("backup", "--name", n, "--output", live, "--ct-root", env.ct_root, "--run-dir", env.run_dir)
    env.stop(n)
    out = str(tmp_path / "b.tar.zst")
    kvz("backup", "--name", n, "--output", out, "--ct-root", env.ct_root)
    for f in (live, out):
        assert os.stat(f).st_mode & 0o777 == 0o600
        listing = subprocess.run(["tar", "--zstd", "--numeric-owner", "-tvf", f], capture_output=True,
                                 text=True, check=True).stdout
        for p, (u, g) in want.items():
            assert re.search(rf"^\S+ {u}/{g} .* \./{re.escape(p)}/?$", listing, re.M), (p, listing)
    old = idmap_file(env, n)
    kvz("destroy", "--name", n, "--ct-root", env.ct_root, "--run-dir", env.run_dir)
    kvz("restore", "--name", n, "--input", out, "--ct-root", env.ct_root)
    check_range(idmap_file(env, n))
    env.start(n)
    assert owners(on_disk(env, n), want) == want
    assert env.exec(n, "stat", "-c", "%n %u %g", *["/" + p for p in want]).stdout == inside
    assert env.exec(n, "cat", "/proc/self/uid_map").stdout.split()[1] == str(env.state(n)["idmap"]["uid"])
    env.stop(n)
    assert old["count"] == COUNT


def test_kvzd_keeps_range(tmp_path):
    """kvzd records the range kvz-ct create gave, `kvz show` shows it, it
    outlives a kvzd restart, and --privileged is kept and passed on."""
    from kvzd_harness import Kvzd
    d = Kvzd(ct=KVZCT)
    try:
        d.start()
        d.kvz("create", "ct", "u1", "--template", "busybox", "--disk", "128M", "--",
              "/bin/sh", "-c", "while :; do sleep 1; done")
        with open(os.path.join(d.state, "ct/u1/idmap")) as f:
            m = json.load(f)
        check_range(m)
        assert d.kvz_json("show", "u1")["config"]["idmap"] == m
        d.kvz("start", "u1")
        r = d.kvz("exec", "u1", "--", "cat", "/proc/self/uid_map")
        assert r.stdout.split() == ["0", str(m["uid"]), "65536"]
        d.kill9()
        d.start()
        assert d.kvz_json("show", "u1")["config"]["idmap"] == m
        # A range kvz-ct run replaces (here: a file edited onto host users)
        # is what kvzd shows after the start.
        d.kvz("stop", "u1", "--timeout", "2")
        with open(os.path.join(d.state, "ct/u1/idmap"), "w") as f:
            json.dump({"uid": 1000, "gid": 1000, "count": 65536}, f)
        d.kvz("start", "u1")
        with open(os.path.join(d.state, "ct/u1/idmap")) as f:
            m = json.load(f)
        check_range(m)
        assert d.kvz_json("show", "u1")["config"]["idmap"] == m
        d.kvz("create", "ct", "p1", "--template", "busybox", "--disk", "128M", "--privileged",
              "--", "/bin/sh", "-c", "while :; do sleep 1; done")
        assert d.kvz_json("show", "p1")["config"]["privileged"] is True
        d.kvz("start", "p1")
        assert d.kvz("exec", "p1", "--", "cat", "/proc/self/uid_map").stdout.split() == ["0", "0", "4294967295"]
        with open(os.path.join(d.state, "logs/p1.log")) as f:
            assert "container root is host root" in f.read()
        for g in ("u1", "p1"):
            d.kvz("stop", g, "--timeout", "2")
            d.kvz("destroy", g)
        assert ct_owner(os.path.join(d.state, "ct"), "u1") not in registry_owners()
    finally:
        d.cleanup()


def small_deb(tmp_path):
    """A small package whose dependencies a minbase Debian has: from apt's
    cache, else downloaded; None when neither works."""
    for pat in ("libinih1_*.deb", "bats-support_*.deb", "mysql-common_*.deb"):
        found = sorted(glob.glob(os.path.join("/var/cache/apt/archives", pat)))
        if found:
            return found[-1]
    r = subprocess.run(["apt-get", "download", "libinih1"], cwd=tmp_path, capture_output=True, timeout=120)
    found = glob.glob(str(tmp_path / "*.deb"))
    return found[0] if r.returncode == 0 and found else None


def test_debian_boots_and_installs_a_package(env, tmp_path):
    deb = small_deb(tmp_path)
    if not deb:
        pytest.skip("no small .deb in /var/cache/apt/archives and apt-get download failed")
    n = env.name("dpk")
    start_debian(env, n)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rl = env.exec(n, "runlevel", check=False).stdout.strip()
        if rl.endswith("2"):
            break
        time.sleep(1)
    assert rl.endswith("2"), f"sysvinit did not reach runlevel 2: {rl!r}"
    # Services ran: rc 2 is over and init's children run as the container's
    # ids, never as host root.
    m = env.state(n)["idmap"]
    init = env.state(n)["init-pid"]
    with open(f"/proc/{init}/status") as f:
        assert re.search(rf"^Uid:\s+{m['uid']}\s", f.read(), re.M)
    pkg = subprocess.run(["dpkg-deb", "-f", deb, "Package"], capture_output=True, text=True,
                         check=True).stdout.strip()
    shutil.copy(deb, os.path.join(on_disk(env, n), "tmp", "pkg.deb"))
    os.chmod(os.path.join(on_disk(env, n), "tmp", "pkg.deb"), 0o644)
    r = env.exec(n, "apt-get", "install", "-y", "/tmp/pkg.deb", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    st = env.exec(n, "dpkg-query", "-W", "-f", "${Status}", pkg).stdout
    assert st == "install ok installed", st
    files = env.exec(n, "dpkg", "-L", pkg).stdout.split()
    placed = [f for f in files if os.path.isfile(os.path.join(on_disk(env, n), f.lstrip("/")))]
    assert placed, files
    for f in placed:  # on disk: container root's files, owned by 0
        assert os.stat(os.path.join(on_disk(env, n), f.lstrip("/"))).st_uid == 0
    # A non-root user inside, and _apt's own files (apt drops to it).
    env.exec(n, "setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "touch", "/tmp/byuser")
    assert os.stat(os.path.join(on_disk(env, n), "tmp/byuser")).st_uid == 1000
    apt_uid = int(env.exec(n, "id", "-u", "_apt").stdout)
    partial = os.path.join(on_disk(env, n), "var/cache/apt/archives/partial")
    assert os.stat(partial).st_uid == apt_uid
    env.stop(n, timeout="30")
