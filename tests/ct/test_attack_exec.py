"""kvz-ct exec must not be a way out of the container: the command gets a
terminal of the container's own (never the administrator's), a clean
environment, and no process of ours that the container can see exposes the
administrator's environment, descriptors or the host's kvz-ct binary."""
import fcntl
import hashlib
import os
import pty
import select
import struct
import subprocess
import termios
import time

import pytest

from ctenv import KVZCT, kvz, one_error_line

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="kvz-ct tests need root")

SECRET = "kvz-secret-4f1d9c"


def exec_args(env, name, *rest):
    return [KVZCT, "exec", "--name", name, "--run-dir", env.run_dir, *rest]


class AdminTerminal:
    """A pty standing for the administrator's terminal: kvz-ct exec runs
    with it as stdio and controlling terminal, like under a login shell."""

    def __init__(self, args, rows=24, cols=80, extra_env=None):
        self.master, self.slave = pty.openpty()
        self.resize(rows, cols)
        envp = dict(os.environ, **(extra_env or {}))

        def take_tty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(args, stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                     start_new_session=True, preexec_fn=take_tty, env=envp)
        self.out = b""

    def resize(self, rows, cols):
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def read_until(self, marker, timeout=20):
        deadline = time.monotonic() + timeout
        while marker not in self.out and time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.out += os.read(self.master, 65536)
                except OSError:
                    break
        return marker in self.out

    def finish(self, timeout=30):
        code = self.proc.wait(timeout=timeout)
        self.read_until(b"\0", timeout=0.3)  # what is left
        return code

    def pending_input(self):
        """Bytes waiting in the administrator's terminal input queue: what a
        login shell would read and run next."""
        return struct.unpack("i", fcntl.ioctl(self.slave, termios.FIONREAD, b"\0" * 4))[0]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def start(env, name, bbroot, userns):
    """A default container (user namespace) or a --privileged one."""
    if userns:
        env.start(name, "--rootfs", bbroot)
    else:
        env.start(name, "--rootfs", bbroot, "--privileged")


@pytest.fixture
def admin_tty():
    terms = []

    def start(*args, **kw):
        t = AdminTerminal(*args, **kw)
        terms.append(t)
        return t
    yield start
    for t in terms:
        t.close()


@pytest.mark.parametrize("userns", [False, True], ids=["rootns", "userns"])
def test_tiocsti_cannot_reach_admin_terminal(env, bbroot, admin_tty, userns):
    n = env.name("ti")
    start(env, n, bbroot, userns)
    t = admin_tty(exec_args(env, n, "--", "sh", "-c",
                            "ctprobe tiocsti 'echo INJECTED\n'; tty; ls -l /proc/self/fd/; echo DONE"))
    assert t.finish() == 0
    assert t.read_until(b"DONE"), t.out
    out = t.out.decode(errors="replace")
    # The command had a terminal, and it was the container's: a pts of the
    # container's devpts, the only one mounted in there.
    assert "tiocsti stdin: pushed" in out and "/dev/pts/0" in out, out
    fds = [l for l in out.splitlines() if " -> " in l]
    assert fds and all("/dev/pts/0" in l or "/proc/" in l for l in fds), out
    # Nothing reached the administrator's terminal input.
    assert t.pending_input() == 0
    os.set_blocking(t.slave, False)
    with pytest.raises(BlockingIOError):
        os.read(t.slave, 100)


def test_tiocsti_in_pipe_mode(env, bbroot):
    """Without a terminal the command has pipes and no controlling terminal:
    /dev/tty does not open, TIOCSTI on stdin fails."""
    n = env.name("tp")
    env.start(n, "--rootfs", bbroot)
    r = env.exec(n, "ctprobe", "tiocsti", "x")
    assert "tiocsti stdin: pushed 0" in r.stdout, r.stdout
    assert "tiocsti /dev/tty: open errno 6" in r.stdout, r.stdout  # ENXIO: no ctty
    fds = env.exec(n, "ls", "-l", "/proc/self/fd/").stdout
    assert "pipe:" in fds and "/dev/" not in fds, fds


def test_window_size_and_exit_code(env, bbroot, admin_tty):
    n = env.name("ws")
    env.start(n, "--rootfs", bbroot)
    t = admin_tty(exec_args(env, n, "--", "sh", "-c",
                            "stty size; echo READY; read x; stty size; exit 7"), rows=33, cols=101)
    assert t.read_until(b"READY"), t.out
    assert b"33 101" in t.out
    t.resize(40, 120)  # the kernel sends SIGWINCH to kvz-ct
    time.sleep(0.5)
    os.write(t.master, b"go\r")
    assert t.finish() == 7
    assert t.read_until(b"40 120"), t.out
    # The administrator's terminal is back in its own mode.
    assert termios.tcgetattr(t.slave)[3] & termios.ICANON


def test_environment_is_clean(env, bbroot):
    n = env.name("en")
    env.start(n, "--rootfs", bbroot)
    envp = dict(os.environ, KVZ_ADMIN_SECRET=SECRET, TERM="xterm-256color", COPYME="copied")
    r = subprocess.run(exec_args(env, n, "--env", "FOO=bar baz", "--env", "COPYME",
                                 "--env", "UNSETVAR", "--env", "HOME=/srv", "--", "env"),
                       capture_output=True, text=True, env=envp, timeout=60)
    assert r.returncode == 0, r.stderr
    got = dict(l.split("=", 1) for l in r.stdout.splitlines())
    assert got == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "HOME": "/srv", "TERM": "xterm-256color", "container": "kvz",
                   "FOO": "bar baz", "COPYME": "copied"}
    # A TERM that is not a terminal name is not passed on.
    envp["TERM"] = "\x1b]0;evil\x07"
    r = subprocess.run(exec_args(env, n, "--", "env"), capture_output=True, text=True, env=envp)
    assert "TERM=linux" in r.stdout.splitlines()


def test_exit_codes_and_stdio(env, bbroot):
    n = env.name("ec")
    env.start(n, "--rootfs", bbroot)
    assert env.exec(n, "sh", "-c", "exit 42", check=False).returncode == 42
    assert env.exec(n, "sh", "-c", "kill -9 $$", check=False).returncode == 137
    r = subprocess.run(exec_args(env, n, "--", "sh", "-c", "tr a-z A-Z; echo err >&2"),
                       input="hello\n", capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "HELLO\n", "err\n")
    missing = env.exec(n, "no-such-command", check=False)
    assert missing.returncode == 127
    assert "no-such-command" in one_error_line(missing)


@pytest.mark.parametrize("case", ["option", "env", "noname", "nocmd", "notrunning"])
def test_bad_input(env, bbroot, case):
    n = env.name("bi")
    if case != "notrunning":
        env.start(n, "--rootfs", bbroot)
    args = {
        "option": ["--name", n, "--run-dir", env.run_dir, "--bogus", "--", "true"],
        "env": ["--name", n, "--run-dir", env.run_dir, "--env", "1BAD=x", "--", "true"],
        "noname": ["--run-dir", env.run_dir, "--", "true"],
        "nocmd": ["--name", n, "--run-dir", env.run_dir],
        "notrunning": ["--name", n, "--run-dir", env.run_dir, "--", "true"],
    }[case]
    one_error_line(kvz("exec", *args, check=False))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize("userns", [False, True], ids=["rootns", "userns"])
def test_proc_of_exec_processes(env, bbroot, admin_tty, userns):
    """A process in the container polls /proc/PID/{environ,exe,fd} of every
    new process while the administrator runs exec with a secret in its
    environment, through pipes and through a terminal."""
    n = env.name("pw")
    start(env, n, bbroot, userns)
    before = sha256(KVZCT)
    st = os.stat(KVZCT)
    watcher = subprocess.Popen(exec_args(env, n, "--", "ctprobe", "procwatch", "12", SECRET),
                               stdout=subprocess.PIPE, text=True)
    assert watcher.stdout.readline().strip() == "watching"
    envp = dict(os.environ, KVZ_ADMIN_SECRET=SECRET)
    runs = 0
    deadline = time.monotonic() + 9
    while time.monotonic() < deadline:
        r = subprocess.run(exec_args(env, n, "--", "true"), env=envp, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30)
        assert r.returncode == 0, r.stderr
        runs += 1
        if runs % 5 == 0:
            t = admin_tty(exec_args(env, n, "--", "true"), extra_env={"KVZ_ADMIN_SECRET": SECRET})
            assert t.finish() == 0
    out, _ = watcher.communicate(timeout=60)
    summary = dict(zip(*[iter(out.splitlines()[-1].split())] * 2))
    counts = {k: int(v) for k, v in summary.items()}
    assert runs >= 10
    assert counts["procs"] >= runs // 2, out  # it did see most exec'd processes
    assert counts["secret"] == 0, out
    assert counts["exe-written"] == 0, out
    assert counts["foreign-tty"] == 0, out
    assert f"exe-foreign {st.st_dev}:{st.st_ino}" not in out, out
    assert sha256(KVZCT) == before


def test_forged_ptmx_refused(env, bbroot, admin_tty):
    """The container controls its own /dev/pts: a ptmx replaced by another
    device gives one error line, not a terminal of something else."""
    n = env.name("fp")
    env.start(n, "--rootfs", bbroot)
    env.exec(n, "mount", "--bind", "/dev/null", "/dev/pts/ptmx")
    t = admin_tty(exec_args(env, n, "--", "true"))
    assert t.finish() == 1
    t.read_until(b"\n", timeout=2)
    lines = [l for l in t.out.decode().splitlines() if l.strip()]
    assert lines == ["kvz-ct: error: the container's /dev/pts/ptmx is not a pty multiplexer"], t.out
