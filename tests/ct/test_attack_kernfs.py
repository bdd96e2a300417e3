"""Attacks from a container's root on the kernel's file systems: global
sysctls, /proc files that must be masked, /sys, cgroupfs (limits,
release_agent, other hierarchies), kernel file systems that must not be
mountable. Each attack is made from inside a default container (with a user
namespace), first trying to undo kvz-ct's mounts; each test asserts that the
attack failed inside AND reads the host's side afterwards. The last test
shows what holds without a user namespace (read-only mounts only: root with
CAP_SYS_ADMIN in the host's user namespace can unmount them)."""
import os
import re

import pytest

from ctenv import Env, cg_dir, own_cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="kvz-ct tests need root")
# The cgroup attacks below aim at v1 files (this host is hybrid); on pure
# cgroup v2 the same attacks run in the nested lab (test_ct_cgroup2_lab.py).
V1 = not os.path.exists("/sys/fs/cgroup/cgroup.controllers")
v1_only = pytest.mark.skipif(not V1, reason="cgroup v1 attacks; v2 ones run in the nested lab")

# What a container's root tries first, to get rid of kvz-ct's read-only and
# masking mounts; every one of these must fail (test_undo_fails).
UNDO = ("umount /proc/sys; umount -l /proc/sys; mount -o remount,rw /proc/sys; "
        "umount /sys; umount -l /sys; mount -o remount,rw /sys; "
        "mount -o remount,rw /sys/fs/cgroup; mount -o remount,rw /sys/fs/cgroup/pids; "
        "umount /sys/fs/cgroup; mount -t proc proc /proc; mount -t sysfs sysfs /sys; ")

SYSCTLS = {"kernel/core_pattern": "|/tmp/kvz-pwn %p", "vm/swappiness": "7",
           "kernel/panic": "77", "kernel/printk_ratelimit": "17", "kernel/sysrq": "1",
           "kernel/hostname": "kvz-pwned"}


@pytest.fixture
def ct(tmp_path, bbroot):
    """A running container with a user namespace and limits to lift."""
    e = Env(tmp_path)
    n = e.name("k")
    e.start(n, "--rootfs", bbroot, "--memory", "64M:64M", "--pids", "50")
    yield e, n
    e.cleanup()


def inside(ct, script):
    env, n = ct
    return env.exec(n, "sh", "-c", script, check=False)


def read(path):
    with open(path) as f:
        return f.read()


def results(out):
    """'NAME=RC' lines printed by the attack scripts."""
    return dict(re.findall(r"^(\S+)=(-?\d+)$", out, re.M))


def mounts_inside(ct):
    """{mount point: options} of the container's mount table."""
    out = inside(ct, "cat /proc/self/mountinfo").stdout
    return {l.split()[4]: l.split()[5] for l in out.splitlines()}


@v1_only
def test_mount_layout(ct):
    """The read-only and masking mounts are in place (with a user namespace
    most attacks below would also fail on file permissions alone: this
    checks the mounts themselves)."""
    env, n = ct
    m = mounts_inside(ct)
    hiers = [c.split("/")[4] for c in env.state(n)["cgroups"]]
    assert {"memory", "pids", "cpu", "unified"} <= set(hiers), hiers
    readonly = ["/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs", "/proc/sysrq-trigger", "/sys",
                "/sys/fs/cgroup"] + [f"/sys/fs/cgroup/{h}" for h in hiers]
    masked = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
              "/proc/kallsyms", "/proc/kmsg", "/proc/latency_stats", "/proc/acpi", "/proc/scsi",
              "/sys/firmware"]
    host = lambda p: os.path.exists(p) or (p.startswith("/sys/fs/cgroup") and
                                           os.path.isdir("/sys/fs/cgroup"))
    for p in filter(host, readonly):
        assert p in m and m[p].split(",")[0] == "ro", (p, m.get(p))
    for p in filter(os.path.exists, masked):
        assert p in m, f"{p} is not masked"
    assert m["/proc/sys/net"].split(",")[0] == "rw"
    assert m["/proc"].split(",")[0] == "rw"


def test_undo_fails(ct):
    """Unmounting, moving or remounting read-write what kvz-ct mounted is
    refused: a user namespace got them as a locked copy."""
    before = inside(ct, "cat /proc/self/mountinfo").stdout
    cmds = [c.strip() for c in UNDO.split(";") if c.strip()]
    cmds += ["mount --move /proc/sys /tmp", "mount --bind /proc /tmp",
             "mount -o remount,rw,bind /proc/sys"]
    script = "; ".join(f'{c} 2>/dev/null; echo "{i}=$?"' for i, c in enumerate(cmds))
    rc = results(inside(ct, script).stdout)
    assert len(rc) == len(cmds)
    for i, c in enumerate(cmds):
        assert rc[str(i)] != "0", f"{c} succeeded inside the container"
    assert inside(ct, "cat /proc/self/mountinfo").stdout == before


def test_global_sysctls(ct):
    present = {k: v for k, v in SYSCTLS.items() if os.path.exists(f"/proc/sys/{k}")}
    assert "kernel/core_pattern" in present and len(present) >= 3, present
    host = {k: read(f"/proc/sys/{k}") for k in present}
    try:
        script = UNDO + "".join(f"echo '{v}' > /proc/sys/{k}; echo \"{k}=$?\"; "
                                for k, v in present.items())
        rc = results(inside(ct, script).stdout)
        for k in present:
            assert rc[k] != "0", f"writing {k} succeeded inside the container"
    finally:
        after = {k: read(f"/proc/sys/{k}") for k in present}
        for k in present:
            if after[k] != host[k]:
                with open(f"/proc/sys/{k}", "w") as f:
                    f.write(host[k])
    assert after == host


def test_own_net_sysctls_stay_writable(ct):
    """/proc/sys/net is the container's network namespace: its init may set
    it up; the host's value does not move."""
    host = read("/proc/sys/net/ipv4/ip_forward")
    want = "0" if host.strip() == "1" else "1"
    out = inside(ct, f"echo {want} > /proc/sys/net/ipv4/ip_forward; "
                     "cat /proc/sys/net/ipv4/ip_forward").stdout
    assert out.strip() == want
    assert read("/proc/sys/net/ipv4/ip_forward") == host


def test_sysrq_trigger(ct):
    if not os.path.exists("/proc/sysrq-trigger"):
        pytest.skip("this kernel has no /proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ off); "
                    "the nested lab's kernel covers it")
    r = inside(ct, UNDO + "echo h > /proc/sysrq-trigger; echo \"w=$?\"")
    assert results(r.stdout)["w"] != "0"


def test_masked_proc_files(ct):
    """Kernel memory, keys, timers, the log and symbols read as nothing;
    ordinary /proc files still work."""
    files = [f for f in ("kcore", "keys", "timer_list", "sched_debug", "kallsyms", "kmsg",
                         "latency_stats") if os.path.exists(f"/proc/{f}")]
    assert "keys" in files and "timer_list" in files, files
    script = UNDO + "".join(f"echo \"{f}=$(cat /proc/{f} 2>/dev/null | wc -c)\"; " for f in files)
    script += "echo \"acpi=$(ls -A /proc/acpi 2>/dev/null | wc -l)\"; "
    script += "echo \"meminfo=$(wc -c < /proc/meminfo)\"; echo \"self=$(wc -c < /proc/self/status)\""
    got = results(inside(ct, script).stdout)
    for f in files:
        assert got[f] == "0", f"/proc/{f} is readable inside the container"
    assert got["acpi"] == "0"
    assert int(got["meminfo"]) > 100 and int(got["self"]) > 100


@v1_only
def test_cgroup_limits_and_release_agent(ct):
    """The container's own limit files are read-only; a cgroup v1 or v2
    mount of its own shows only its own cgroup and writes nothing; no
    release_agent can be set. The host's files are unchanged."""
    _, n = ct
    mem, pids = cg_dir("memory", n), cg_dir("pids", n)
    top_agent = "/sys/fs/cgroup/memory/release_agent"
    host = (read(f"{mem}/memory.limit_in_bytes"), read(f"{pids}/pids.max"),
            read(f"{mem}/notify_on_release"), read(top_agent) if os.path.exists(top_agent) else "")
    assert host[0].strip() == str(64 << 20) and host[1].strip() == "50"
    script = UNDO + """
echo max > /sys/fs/cgroup/pids/pids.max; echo "pids=$?"
echo 1073741824 > /sys/fs/cgroup/memory/memory.limit_in_bytes; echo "mem=$?"
echo 1 > /sys/fs/cgroup/memory/notify_on_release; echo "notify=$?"
mkdir /sys/fs/cgroup/memory/sub; echo "mkdir=$?"
mkdir -p /tmp/v1 /tmp/v1n /tmp/v2
mount -t cgroup -o none,name=kvzpwn cgroup /tmp/v1n; echo "named=$?"
mount -t cgroup -o memory,release_agent=/tmp/pwn cgroup /tmp/v1n; echo "agentopt=$?"
if mount -t cgroup -o memory cgroup /tmp/v1; then
  echo "v1subdirs=$(find /tmp/v1 -mindepth 1 -type d | wc -l)"
  echo /tmp/pwn > /tmp/v1/release_agent; echo "agent=$?"
  echo 1 > /tmp/v1/notify_on_release; echo "v1notify=$?"
  echo 1073741824 > /tmp/v1/memory.limit_in_bytes; echo "v1mem=$?"
  mkdir /tmp/v1/sub; echo "v1mkdir=$?"
fi
if mount -t cgroup2 none /tmp/v2; then
  echo "v2subdirs=$(find /tmp/v2 -mindepth 1 -type d | wc -l)"
  echo $$ > /tmp/v2/cgroup.procs; echo "v2procs=$?"
  mkdir /tmp/v2/sub; echo "v2mkdir=$?"
fi
"""
    got = results(inside(ct, script).stdout)
    for k in ("pids", "mem", "notify", "mkdir", "named", "agentopt", "agent", "v1notify",
              "v1mem", "v1mkdir", "v2procs", "v2mkdir"):
        assert got.get(k, "1") != "0", f"{k} succeeded inside the container: {got}"
    assert got.get("v1subdirs", "0") == "0" and got.get("v2subdirs", "0") == "0", got
    after = (read(f"{mem}/memory.limit_in_bytes"), read(f"{pids}/pids.max"),
             read(f"{mem}/notify_on_release"), read(top_agent) if os.path.exists(top_agent) else "")
    assert after == host
    assert not os.path.exists(f"{mem}/sub")


def test_sys_readonly(ct):
    thp = "/sys/kernel/mm/transparent_hugepage/enabled"
    if not os.path.exists(thp):
        pytest.skip(f"no {thp} to aim at on this kernel")
    host = read(thp)
    want = "never" if "[never]" not in host else "always"
    try:
        r = inside(ct, UNDO + f"echo {want} > {thp}; echo \"w=$?\"; "
                              "echo x > /sys/kernel/uevent_helper; echo \"u=$?\"")
        got = results(r.stdout)
        assert got["w"] != "0" and got["u"] != "0", got
    finally:
        after = read(thp)
        if after != host:
            with open(thp, "w") as f:
                f.write(re.search(r"\[(\w+)\]", host).group(1))
    assert after == host


def test_kernel_filesystems_not_mountable(ct):
    # binfmt_misc is left out: since Linux 6.7 a user namespace mounts an
    # instance of its own, whose entries only apply inside it.
    types = ["debugfs", "tracefs", "securityfs", "configfs", "fusectl", "bpf", "pstore",
             "efivarfs"]
    script = "mkdir -p /tmp/k; " + "".join(
        f"mount -t {t} {t} /tmp/k 2>/dev/null; echo \"{t}=$?\"; umount /tmp/k 2>/dev/null; "
        for t in types)
    script += "echo \"seen=$(for d in /sys/kernel/debug /sys/kernel/tracing /sys/kernel/security " \
              "/sys/fs/bpf /sys/kernel/config; do ls -A $d 2>/dev/null; done | wc -l)\""
    got = results(inside(ct, script).stdout)
    for t in types:
        assert got[t] != "0", f"mounting {t} succeeded inside the container"
    assert got["seen"] == "0"


@v1_only
def test_only_own_cgroup_visible(ct):
    """Inside, every hierarchy's cgroup is "/"; on the host the container
    sits in OWN/kvz/NAME under the caller's own cgroup of each hierarchy."""
    env, n = ct
    out = inside(ct, "cat /proc/self/cgroup; echo; ls /sys/fs/cgroup/memory /sys/fs/cgroup/pids; "
                     "cat /sys/fs/cgroup/pids/cgroup.procs").stdout
    lines = [l for l in out.split("\n\n")[0].splitlines() if l]
    assert lines and all(l.endswith(":/") for l in lines), lines
    assert "kvz" not in out.split("\n\n", 1)[1]
    init = env.state(n)["init-pid"]
    host_view = read(f"/proc/{init}/cgroup")
    own = own_cgroups()
    for hier in ("memory", "pids", "cpu"):
        want = cg_dir(hier, n)[len(f"/sys/fs/cgroup/{hier}"):]
        assert re.search(rf"^\d+:{hier}:{re.escape(want)}$", host_view, re.M), (host_view, own)
    # Every hierarchy, so that the cgroup namespace is rooted at the
    # container's own cgroup in each.
    assert sorted(env.state(n)["cgroups"]) == sorted(
        cg_dir(h, n) for h in own if os.path.exists(f"/sys/fs/cgroup/{h}/cgroup.procs"))


@v1_only
def test_cgroup_mounts_show_only_own(ct):
    """A cgroup mount of any hierarchy, made inside, shows the container's
    own cgroup (no child cgroups), never the caller's or the host's tree."""
    own = own_cgroups()
    hiers = [h for h in own if os.path.exists(f"/sys/fs/cgroup/{h}/cgroup.procs")]
    # A cgroup next to kvz/ in the caller's own cgroup: what a view rooted
    # too high would show (besides the hierarchy root's release_agent).
    probes = [f"/sys/fs/cgroup/{h}{own[h]}/kvzprobe{os.getpid()}" for h in hiers]
    for p in probes:
        os.mkdir(p)
    try:
        script = "".join(
            f"mkdir -p /tmp/{h}; mount -t {'cgroup2' if h == 'unified' else 'cgroup'} "
            f"-o {'name=systemd' if h == 'systemd' else h if h != 'unified' else 'rw'} none /tmp/{h} && "
            f"echo \"{h}=$(find /tmp/{h} -mindepth 1 -type d | wc -l)\" && "
            f"echo \"{h}-agent=$(ls /tmp/{h} | grep -c release_agent)\"; " for h in hiers)
        got = results(inside(ct, script).stdout)
    finally:
        for p in probes:
            os.rmdir(p)
    assert "memory" in got, got  # this kernel lets a user namespace mount its own view
    for h, n in got.items():
        assert n == "0", f"a {h} mount inside shows the caller's tree: {got}"


@v1_only
def test_without_userns_read_only_holds_naively(tmp_path, bbroot):
    """Without a user namespace (the explicit opt-in) container root has
    CAP_SYS_ADMIN over the host's user namespace: the read-only mounts and
    masks stop a plain write or read, not a root that unmounts them first
    (documented in docs/architecture.md)."""
    e = Env(tmp_path)
    n = e.name("p")
    host = read("/proc/sys/kernel/core_pattern")
    try:
        r = e.run(n, "--rootfs", bbroot, "--privileged", "--pids", "50", "--", "sh", "-c",
                  "echo '|/tmp/kvz-pwn' > /proc/sys/kernel/core_pattern; echo \"core=$?\"; "
                  "echo max > /sys/fs/cgroup/pids/pids.max; echo \"pids=$?\"; "
                  "echo \"keys=$(cat /proc/keys | wc -c)\"", check=False)
        got = results(r.stdout)
        assert got["core"] != "0" and got["pids"] != "0" and got["keys"] == "0", r.stdout
    finally:
        after = read("/proc/sys/kernel/core_pattern")
        if after != host:
            with open("/proc/sys/kernel/core_pattern", "w") as f:
                f.write(host)
    assert after == host
