"""Attacks from inside a default container on what confinement guards: the
device allow-list, the capability bounding set, the seccomp profile. Each
attack must fail, and the host side is checked afterwards (its disk, its
kernel log, the other container's disk). Every attack runs twice: as kvz-ct
starts containers by default (user namespace) and with --privileged."""
import errno
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from ctenv import CG_ROOT, leftovers, one_error_line

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="kvz-ct tests need root")

# Capability numbers (linux/capability.h) that no container process may have.
DROPPED = {"dac_read_search": 2, "sys_module": 16, "sys_rawio": 17, "sys_pacct": 20,
           "sys_nice": 23, "sys_time": 25, "audit_control": 30, "mac_override": 32,
           "mac_admin": 33, "syslog": 34, "wake_alarm": 35, "block_suspend": 36,
           "audit_read": 37, "perfmon": 38, "bpf": 39}
# What a system container's root keeps (mounts, its network, poweroff, mknod
# of the allowed nodes, su/login).
KEPT = {"chown": 0, "setuid": 7, "net_admin": 12, "net_raw": 13, "sys_admin": 21,
        "sys_boot": 22, "mknod": 27, "audit_write": 29}

# System calls the default profile answers with EPERM / ENOSYS.
EPERM_CALLS = ["init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
               "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "open_by_handle_at",
               "userfaultfd", "iopl", "ioperm", "syslog", "acct", "swapon", "swapoff",
               "settimeofday", "clock_settime", "quotactl", "unshare_user", "clone_user",
               "personality_zero"]
ENOSYS_CALLS = ["clone3", "io_uring_setup", "fsopen"]


@pytest.fixture(params=["userns", "privileged"])
def ct(request, env, bbroot):
    """A private copy of the busybox root (tests put host-made device nodes
    in it) and the options that select the mode: the default (a user
    namespace; the root is idmapped to it) or --privileged."""
    top = tempfile.mkdtemp(prefix="kvz-ct-confine-")
    os.chmod(top, 0o755)
    root = os.path.join(top, "root")
    shutil.copytree(bbroot, root, symlinks=True)
    args = ["--rootfs", root]
    # The root is nodev: a node the host put there fails with EACCES before
    # the device cgroup is asked, and in a user namespace the flag is
    # locked. A --privileged container's root can lift it (its mounts are
    # not locked), and does here first, so that the cgroup is what refuses.
    prelude, node_errno = "", errno.EACCES
    if request.param == "privileged":
        args.append("--privileged")
        prelude, node_errno = "mount -o remount,bind,dev / || echo NO-REMOUNT; ", errno.EPERM
    yield root, args, prelude, node_errno
    shutil.rmtree(top)


def probes(out):
    """{"name": ("errno"|"signal", N)} from `ctprobe sys` output."""
    return {m[0]: (m[1], int(m[2])) for m in re.findall(r"^(\S+) (errno|signal) (\d+)$", out, re.M)}


def one(out, what):
    m = re.search(rf"^{what} errno (\d+)$", out, re.M)
    assert m, out
    return int(m.group(1))


def host_node(root, name, kind, rdev):
    """A device node made by the host inside the container's root, readable and
    writable by anyone: only the device cgroup stands between it and the
    container."""
    path = os.path.join(root, name)
    os.mknod(path, 0o666 | kind, rdev)
    os.chmod(path, 0o666)
    return "/" + name


def cap_bits(status, field):
    return int(re.search(rf"^{field}:\s*([0-9a-f]+)$", status, re.M).group(1), 16)


def check_caps(status):
    bnd = cap_bits(status, "CapBnd")
    for name, bit in DROPPED.items():
        assert not bnd & (1 << bit), f"bounding set keeps {name}"
    for name, bit in KEPT.items():
        assert bnd & (1 << bit), f"bounding set lost {name}"
    assert cap_bits(status, "CapInh") == 0 and cap_bits(status, "CapAmb") == 0
    assert cap_bits(status, "CapEff") & ~bnd == 0


def test_bounding_set_in_init_and_exec(env, ct):
    root, args, prelude, node_errno = ct
    n = env.name("cb")
    check_caps(env.run(n, *args, "--", "cat", "/proc/self/status").stdout)
    env.start(n, *args)
    check_caps(env.exec(n, "cat", "/proc/self/status").stdout)
    # Nothing comes back through exec of a setuid-root or file-capability
    # binary either: the bounding set caps what exec can grant.
    assert "NoNewPrivs:\t0" in env.exec(n, "cat", "/proc/self/status").stdout
    env.stop(n)


def test_cap_add_and_drop(env, ct):
    """--cap-drop/--cap-add change the list for init and, through the state
    file, for exec."""
    root, args, prelude, node_errno = ct
    n = env.name("cc")
    env.start(n, *args, "--cap-drop", "sys_admin", "--cap-drop", "CAP_NET_RAW",
              "--cap-add", "sys_nice")
    for st in (env.exec(n, "cat", "/proc/1/status").stdout,
               env.exec(n, "cat", "/proc/self/status").stdout):
        bnd = cap_bits(st, "CapBnd")
        assert not bnd & (1 << 21) and not bnd & (1 << 13), hex(bnd)
        assert bnd & (1 << 23) and bnd & (1 << 12), hex(bnd)   # sys_nice back, net_admin kept
        assert not bnd & (1 << 16), hex(bnd)                   # the rest of the list stays
    env.stop(n)
    out = env.run(n, *args, "--cap-drop", "all", "--", "cat", "/proc/self/status").stdout
    assert cap_bits(out, "CapBnd") == 0


def test_kernel_calls_fail_in_init_and_exec(env, ct):
    root, args, prelude, node_errno = ct
    n = env.name("ck")
    host_time = time.time()
    calls = EPERM_CALLS + ENOSYS_CALLS
    for out in (env.run(n, *args, "--", "ctprobe", "sys", *calls).stdout,
                (env.start(n, *args), env.exec(n, "ctprobe", "sys", *calls).stdout)[1]):
        got = probes(out)
        for c in EPERM_CALLS:
            assert got[c] == ("errno", errno.EPERM), (c, got[c])
        for c in ENOSYS_CALLS:
            assert got[c] == ("errno", errno.ENOSYS), (c, got[c])
    env.stop(n)
    assert abs(time.time() - host_time) < 60  # the host clock was not moved


def test_seccomp_off_lets_the_calls_through(env, ct):
    """The filter, not something else, is what refuses them: without it the
    same harmless calls reach the kernel and get its own answers."""
    root, args, prelude, node_errno = ct
    got = probes(env.run(env.name("co"), *args, "--seccomp=off", "--", "ctprobe", "sys",
                         "keyctl", "clone3", "personality_zero").stdout)
    assert got["personality_zero"] == ("errno", 0), got
    assert got["keyctl"][1] != errno.EPERM and got["clone3"][1] != errno.ENOSYS, got


def test_foreign_abi_is_killed(env, ct):
    root, args, prelude, node_errno = ct
    got = probes(env.run(env.name("ca"), *args, "--", "ctprobe", "sys", "i386", "x32").stdout)
    assert got == {"i386": ("signal", 31), "x32": ("signal", 31)}, got  # SIGSYS
    off = probes(env.run(env.name("ca"), *args, "--seccomp=off", "--", "ctprobe", "sys",
                         "i386").stdout)
    if off["i386"] != ("errno", 0):
        pytest.skip(f"this kernel runs no i386 code (ia32_emulation off): {off}")


def test_block_devices_cannot_be_made_or_opened(env, ct):
    """The host's root disk: mknod inside fails, and a node the host put in
    the container's root cannot be opened (read-only attempt: never write to
    the host's real disk even in a test)."""
    root, args, prelude, node_errno = ct
    dev = os.stat("/").st_dev
    maj, mnr = os.major(dev), os.minor(dev)
    node = host_node(root, "hostdisk", 0o060000, dev)
    out = env.run(env.name("cd"), *args, "--", "sh", "-c",
                  f"{prelude}ctprobe mknod /tmp/disk b {maj} {mnr}; ctprobe open {node} r; "
                  f"ctprobe open /dev/null rw").stdout
    assert one(out, "mknod") == errno.EPERM and "NO-REMOUNT" not in out
    assert re.findall(r"^open errno (\d+)$", out, re.M) == [str(node_errno), "0"], out


def test_other_containers_loop_device(env, ct):
    """Container B cannot reach container A's disk (a loop device on the
    host): no mknod, no open; A's disk does not get B's bytes."""
    root, args, prelude, node_errno = ct
    a = env.name("la")
    env.create(a, "128M")
    env.start(a)
    loop = env.state(a)["loop"]
    rdev = os.stat(loop).st_rdev
    node = host_node(root, "otherdisk", 0o060000, rdev)
    marker = f"kvz-confine-{os.getpid()}"
    out = env.run(env.name("lb"), *args, "--", "sh", "-c",
                  f"{prelude}ctprobe mknod /tmp/loop b {os.major(rdev)} {os.minor(rdev)}; "
                  f"ctprobe write {node} {marker}").stdout
    assert one(out, "mknod") == errno.EPERM
    assert one(out, "write") == node_errno
    with open(loop, "rb") as f:
        assert marker.encode() not in f.read(65536)
    env.stop(a)


def test_device_list_cannot_be_widened_from_inside(env, ct):
    """cgroup v1 checks a devices.allow write only against the parent's list:
    container root mounting the devices hierarchy (it sees its own cgroup as
    the root) must still not be able to allow more."""
    dev_root = f"{CG_ROOT}/devices"
    if not os.path.isdir(dev_root):
        pytest.skip("no cgroup v1 devices hierarchy on this host")
    root, args, prelude, node_errno = ct
    n = env.name("cg")
    env.start(n, *args)
    out = env.exec(n, "sh", "-c", "mkdir -p /tmp/m; mount -t cgroup -o devices none /tmp/m; "
                   "echo a > /tmp/m/devices.allow; echo 'b *:* rwm' > /tmp/m/devices.allow; "
                   "ctprobe mknod /tmp/kmsg c 1 11", check=False).stdout
    assert one(out, "mknod") == errno.EPERM
    for d in (f"{dev_root}/kvz/{n}", f"{dev_root}/kvz/{n}/ct"):
        with open(f"{d}/devices.list") as f:
            lst = f.read().split("\n")
        assert "c 1:3 rwm" in lst and "a *:* rwm" not in lst, (d, lst)
        assert not [l for l in lst if l.startswith("b ")], (d, lst)
    env.stop(n)


def host_kernel_log():
    return subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout


def test_kmsg_cannot_be_read_or_written(env, ct):
    root, args, prelude, node_errno = ct
    marker = f"kvz-confine-kmsg-{os.getpid()}"
    node = host_node(root, "kmsg", 0o020000, os.makedev(1, 11))
    out = env.run(env.name("cm"), *args, "--", "sh", "-c",
                  f"{prelude}ctprobe mknod /tmp/kmsg c 1 11; ctprobe write {node} {marker}; "
                  f"ctprobe open {node} r; echo kmsg=$(head -c 1 /proc/kmsg 2>/dev/null | wc -c); "
                  f"dmesg >/dev/null 2>&1; echo dmesg=$?").stdout
    assert one(out, "mknod") == errno.EPERM
    assert one(out, "write") == node_errno
    assert one(out, "open") == node_errno
    # /proc/kmsg is masked (/dev/null) or refused: nothing of the log either way.
    assert "kmsg=0" in out, out
    assert "dmesg=0" not in out
    assert marker not in host_kernel_log()


def test_tun_only_with_device(env, ct):
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun on this host")
    root, args, prelude, node_errno = ct
    n = env.name("ct")
    node = host_node(root, "tun", 0o020000, os.makedev(10, 200))
    out = env.run(n, *args, "--", "sh", "-c",
                  f"{prelude}ls /dev/net/tun 2>&1; ctprobe mknod /tmp/tun c 10 200; "
                  f"ctprobe open {node} rw").stdout
    assert "No such file" in out
    assert one(out, "mknod") == errno.EPERM and one(out, "open") == node_errno
    out = env.run(n, *args, "--device", "/dev/net/tun", "--", "ctprobe", "open", "/dev/net/tun",
                  "rw").stdout
    assert one(out, "open") == 0


def test_normal_work_still_works(env, ct):
    root, args, prelude, node_errno = ct
    out = env.run(env.name("cw"), *args, "--", "sh", "-c",
                  "ctprobe forks 5; echo piped | cat; ping -c 1 -W 2 127.0.0.1 >/dev/null && "
                  "echo ping-ok; ctprobe sys personality_query unshare_mnt; date +%Y; "
                  "echo x > /dev/null && head -c 4 /dev/urandom | wc -c").stdout
    assert "forked 5 errno 0" in out and "piped" in out and "ping-ok" in out, out
    assert probes(out) == {"personality_query": ("errno", 0), "unshare_mnt": ("errno", 0)}
    assert out.split()[-1] == "4"


def test_busybox_init_boots_and_powers_off(env):
    n = env.name("ci")
    env.create(n, "128M")
    env.start(n, "--", "/sbin/init")
    assert "init" in env.exec(n, "cat", "/proc/1/comm").stdout
    init = env.exec(n, "cat", "/proc/1/status").stdout
    check_caps(init)
    assert re.search(r"^Seccomp:\s*2$", init, re.M), init
    t0 = time.monotonic()
    env.stop(n, timeout="20")
    assert time.monotonic() - t0 < 10
    assert not leftovers(env, n)


def test_profile_file_is_recorded_for_exec(env, ct, tmp_path):
    """A FILE profile's entries go into the state file: exec applies them even
    after the file changed."""
    root, args, prelude, node_errno = ct
    prof = tmp_path / "profile"
    prof.write_text("# mine\nkeyctl ENOSYS\nuserfaultfd 13  # EACCES\n")
    n = env.name("cp")
    got = probes(env.run(n, *args, f"--seccomp={prof}", "--", "ctprobe", "sys", "keyctl",
                         "userfaultfd", "personality_zero").stdout)
    assert got == {"keyctl": ("errno", errno.ENOSYS), "userfaultfd": ("errno", errno.EACCES),
                   "personality_zero": ("errno", 0)}, got
    prof.write_text("@default\nkeyctl ENOSYS\n")
    env.start(n, *args, f"--seccomp={prof}")
    prof.write_text("")
    got = probes(env.exec(n, "ctprobe", "sys", "keyctl", "bpf", "personality_zero").stdout)
    assert got == {"keyctl": ("errno", errno.ENOSYS), "bpf": ("errno", errno.EPERM),
                   "personality_zero": ("errno", errno.EPERM)}, got
    env.stop(n)


def test_no_new_privs_when_asked(env, ct):
    root, args, prelude, node_errno = ct
    n = env.name("cn")
    env.start(n, *args, "--no-new-privs")
    assert "NoNewPrivs:\t1" in env.exec(n, "cat", "/proc/1/status").stdout
    assert "NoNewPrivs:\t1" in env.exec(n, "cat", "/proc/self/status").stdout
    env.stop(n)


@pytest.mark.parametrize("case", ["unknown-call", "unknown-errno", "no-file", "not-a-device",
                                  "no-device", "bad-access", "unknown-cap"])
def test_bad_confinement_input(env, bbroot, tmp_path, case):
    prof = tmp_path / "profile"
    prof.write_text("keyctl\n\nno_such_call EPERM\n" if case == "unknown-call" else
                    "keyctl EWHATEVER\n")
    opt = {"unknown-call": f"--seccomp={prof}", "unknown-errno": f"--seccomp={prof}",
           "no-file": f"--seccomp={tmp_path}/none", "not-a-device": "--device=/etc/passwd",
           "no-device": "--device=/dev/kvz-none", "bad-access": "--device=/dev/null:rwx",
           "unknown-cap": "--cap-drop=sys_everything"}[case]
    n = env.name("cx")
    line = one_error_line(env.run(n, "--rootfs", bbroot, opt, "--", "true", check=False))
    want = {"unknown-call": "line 3: unknown system call 'no_such_call'",
            "unknown-errno": "unknown errno 'EWHATEVER'", "no-file": "cannot read seccomp profile",
            "not-a-device": "is not a character or block device", "no-device": "No such file",
            "bad-access": "access must be letters of 'rwm'",
            "unknown-cap": "unknown capability 'sys_everything'"}[case]
    assert want in line, line
    assert not leftovers(env, n)
