"""Attacks on the host's shared resources from inside a container started the
default way (no limits given): a fork bomb, a memory bomb, filling the disk.
Each must stay inside the container's limits while the host keeps working."""
import os
import re
import subprocess

import pytest

from ctenv import CG_ROOT

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="kvz-ct tests need root"),
    pytest.mark.skipif(not os.path.isdir(os.path.join(CG_ROOT, "memory")),
                       reason="these checks read cgroup v1 files; pure cgroup v2 runs in the lab"),
]


def cgroup_dir(env, name, controller):
    """The container's cgroup directory for controller, from its state file."""
    for path in env.state(name)["cgroups"]:
        if f"/{controller}/" in path or (controller == "unified" and "/cgroup/" in path):
            return path
    raise AssertionError(f"no {controller} cgroup in {env.state(name)['cgroups']}")


def host_can_fork():
    return subprocess.run(["true"], timeout=10).returncode == 0


def test_fork_bomb_stays_inside_default_pids_limit(env, bbroot):
    n = env.name("fb")
    env.start(n, "--rootfs", bbroot)
    pids = cgroup_dir(env, n, "pids")
    limit = int(open(pids + "/pids.max").read())
    assert limit == 4096, "a container without --pids gets the default limit"
    # A shell fork bomb for a few seconds, in the background of an exec.
    env.exec(n, "sh", "-c", "b() { b | b & }; (b) >/dev/null 2>&1 & sleep 4; echo done")
    peak = int(open(pids + "/pids.peak").read()) if os.path.exists(pids + "/pids.peak") else None
    cur = int(open(pids + "/pids.current").read())
    assert cur <= limit and (peak is None or peak <= limit), (cur, peak)
    events = open(pids + "/pids.events").read()
    assert int(re.search(r"max (\d+)", events).group(1)) > 0, "the bomb never hit the limit"
    # The host was never short of processes, and still forks.
    assert host_can_fork()
    env.stop(n, timeout="0")
    assert not os.path.exists(pids), "the bomb's processes outlived the container"


def test_memory_bomb_is_killed_inside_and_host_survives(env, bbroot):
    n = env.name("mb")
    canary = subprocess.Popen(["sleep", "600"])
    try:
        env.start(n, "--rootfs", bbroot)
        mem = cgroup_dir(env, n, "memory")
        hard = int(open(mem + "/memory.limit_in_bytes").read())
        assert hard == 1 << 30, "a container without --memory gets the default 1G hard limit"
        r = env.exec(n, "ctprobe", "alloc", "3000", check=False)
        assert r.returncode != 0 and "allocated" not in r.stdout, r.stdout
        oom = open(mem + "/memory.oom_control").read()
        assert int(re.search(r"oom_kill (\d+)", oom).group(1)) > 0, (r, oom)
        assert int(open(mem + "/memory.max_usage_in_bytes").read()) <= hard
        # Only the container's process died: its init and the host's canary live.
        assert env.exec(n, "true").returncode == 0
        assert canary.poll() is None
    finally:
        canary.kill()
        canary.wait()
    env.stop(n, timeout="0")


def host_free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_disk_fill_stops_at_quota(env):
    n = env.name("df")
    env.create(n, "128M")
    env.start(n, "--", "sleep", "100000")
    before = host_free(env.ct_root)
    r = env.exec(n, "sh", "-c", "dd if=/dev/zero of=/fill bs=1M count=1024 2>&1; sync; "
                 "df -k / | tail -1", check=False)
    assert "No space left on device" in r.stdout, r.stdout
    used_kb = int(r.stdout.strip().split("\n")[-1].split()[2])
    assert used_kb <= 128 * 1024
    image = os.path.join(env.ct_root, n, "private.img")
    # The image never grows past its size, whatever the container writes;
    # the host's file system lost at most that.
    assert os.stat(image).st_blocks * 512 <= 128 << 20
    assert before - host_free(env.ct_root) <= 130 << 20
    # Still usable after the disk filled up: removing the file frees it.
    assert env.exec(n, "rm", "/fill").returncode == 0
    env.stop(n, timeout="0")


def test_limits_given_override_defaults(env, bbroot):
    n = env.name("ov")
    env.start(n, "--rootfs", bbroot, "--pids", "100", "--memory", "64M:128M")
    assert open(cgroup_dir(env, n, "pids") + "/pids.max").read().strip() == "100"
    assert int(open(cgroup_dir(env, n, "memory") + "/memory.limit_in_bytes").read()) == 128 << 20
    env.stop(n, timeout="0")
