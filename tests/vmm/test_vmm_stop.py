"""kvz-vmm's stop paths with virtio devices and QMP clients (issue 9): a
guest's reboot or power-off, QMP quit and SIGTERM must each end kvz-vmm
with 0 within seconds, whatever the QMP clients do. Tiny guests on the
host's /dev/kvm (skipped where there is none); the same paths with
Debian's kernel and a real balloon driver run in the nested lab
(tests/lab/test_vmm_stop_lab.py).

Under `make asan` these also catch use-after-free in the teardown: the
I/O thread used to be freed before the virtio devices that unregister
from it, which hung the exit when that memory had been reused."""

import fcntl
import os
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

import vmmtest
from vmmtest import guest

pytestmark = pytest.mark.skipif(vmmtest.kvm_unavailable_reason() is not None,
                                reason=str(vmmtest.kvm_unavailable_reason()))

STOP_LIMIT_S = 5


def devices(tmp_path):
    disks = []
    for name in ("a.img", "b.img"):
        img = tmp_path / name
        img.write_bytes(b"\0" * (1 << 20))
        disks += ["--disk", str(img)]
    return disks + ["--balloon", "--rng"]


def no_sanitizer_report(stderr):
    assert "AddressSanitizer" not in stderr and "runtime error" not in stderr, stderr


def wait_exit(p, limit=STOP_LIMIT_S):
    """kvz-vmm's exit status and stderr; fails if it outlives the limit."""
    try:
        out, err = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"kvz-vmm still running {limit} s after the stop: {err.decode()}")
    return p.returncode, err.decode()


def raw_client(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s


def balloon_and_close(path, value):
    """Sends capabilities and a balloon request and closes at once, reading
    nothing (the client the issue saw)."""
    s = raw_client(path)
    s.sendall(b'{"execute":"qmp_capabilities"}\n'
              b'{"execute":"balloon","arguments":{"value":%d}}\n' % value)
    s.close()


@pytest.mark.parametrize("kernel,why", [("reboot", "guest reset through the i8042"),
                                        ("hello", "guest ACPI power-off (S5)")])
def test_guest_reset_and_poweroff_with_devices(tmp_path, kernel, why):
    p = vmmtest.start(["--kernel", guest(kernel), "--memory", "32M",
                       "--qmp", str(tmp_path / "qmp")] + devices(tmp_path))
    rc, err = wait_exit(p)
    assert rc == 0, err
    no_sanitizer_report(err)
    assert f"kvz-vmm: stopped: {why} (" in err, "no line on why the VM ended: " + err


@pytest.mark.parametrize("how", ["quit", "sigterm"])
def test_stop_after_balloon_requests(tmp_path, how):
    sock = str(tmp_path / "qmp")
    p = vmmtest.start(["--kernel", guest("idle"), "--memory", "32M", "--qmp", sock]
                      + devices(tmp_path))
    try:
        vmmtest.wait_for_path(sock, p)
        balloon_and_close(sock, 16 << 20)           # closes at once
        lingering = vmmtest.Qmp(sock)                 # stays, reads nothing more
        lingering.sock.sendall(b'{"execute":"balloon","arguments":{"value":8388608}}\n')
        q = vmmtest.Qmp(sock)
        assert q.cmd("balloon", value=24 << 20) == {"return": {}}
        assert q.cmd("query-balloon")["return"]["actual"] == 32 << 20  # no driver: nothing given
        t0 = time.monotonic()
        if how == "quit":
            assert q.cmd("quit") == {"return": {}}
        else:
            p.send_signal(signal.SIGTERM)
        rc, err = wait_exit(p)
        print(f"{how}: kvz-vmm ended in {time.monotonic() - t0:.3f} s")
        assert rc == 0, err
        no_sanitizer_report(err)
        assert "kvz-vmm: stopped: " + ("QMP quit" if how == "quit" else "signal 15") + " (" in err, err
        if how == "sigterm":
            assert "stopped by signal 15" in err, err
            assert "vCPU 0: rip" in err, "no per-vCPU dump after SIGTERM: " + err
    finally:
        p.kill()
        p.wait()


def churn(path, stop, counts):
    """QMP clients that connect and vanish at every stage of a session."""
    i = 0
    while not stop.is_set():
        stage = i % 5
        i += 1
        try:
            s = raw_client(path)
            if stage >= 1:
                s.recv(4096)                                          # greeting
            if stage >= 2:
                s.sendall(b'{"execute":"qmp_capabilities"}\n')
            if stage >= 3:
                s.sendall(b'{"execute":"balloon","arguments":{"value":%d}}\n'
                          % ((8 + i % 16) << 20))
            if stage == 4:
                s.sendall(b'{"execute":"query-bal')                    # half a line
            s.close()
            counts[stage] += 1
        except OSError as e:
            counts["errors"].append(repr(e))


def test_qmp_clients_vanish_while_guest_works(tmp_path):
    sock = str(tmp_path / "qmp")
    p = vmmtest.start(["--kernel", guest("counter"), "--memory", "32M", "--qmp", sock]
                      + devices(tmp_path))
    stop = threading.Event()
    counts = {0: 0, 1: 0, 2: 0, 3: 0, 4: 0, "errors": []}
    try:
        vmmtest.wait_for_path(sock, p)
        q = vmmtest.Qmp(sock)
        workers = [threading.Thread(target=churn, args=(sock, stop, counts)) for _ in range(3)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 3
        slowest = 0.0
        dots = 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            assert q.cmd("query-status")["return"]["status"] == "running"
            slowest = max(slowest, time.monotonic() - t0)
            if select.select([p.stdout], [], [], 0)[0]:
                dots += os.read(p.stdout.fileno(), 65536).count(b".")
        stop.set()
        for w in workers:
            w.join()
        print(f"clients: {counts}, slowest query-status {slowest * 1000:.1f} ms, dots {dots}")
        assert not counts["errors"], counts["errors"][:5]
        assert sum(counts[k] for k in range(5)) >= 50, counts
        assert dots > 0, "the guest stopped working while clients came and went"
        assert slowest < 1.0, f"a query-status took {slowest:.3f} s"
        assert q.cmd("quit") == {"return": {}}
        rc, err = wait_exit(p)
        assert rc == 0, err
        no_sanitizer_report(err)
    finally:
        stop.set()
        p.kill()
        p.wait()


def test_stop_with_a_vcpu_stuck_in_a_device(tmp_path):
    """A vCPU that never leaves its device (here: the UART writing to a
    stdout pipe that is full and never read) cannot be joined. SIGTERM must
    still end kvz-vmm within a bounded time, with the vCPU's recorded state
    and one error line, instead of waiting forever."""
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    size = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
    os.set_blocking(w, False)
    filled = 0
    try:
        while True:
            filled += os.write(w, b"x" * size)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)
    p = subprocess.Popen([vmmtest.VMM, "--kernel", guest("hello"), "--memory", "16M"],
                         stdout=w, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(w)
    try:
        time.sleep(0.5)     # the guest's first byte blocks vCPU 0 in the UART
        assert p.poll() is None, "kvz-vmm ended although its console was full"
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc, err = wait_exit(p, limit=15)
        took = time.monotonic() - t0
        print(f"stuck vCPU: kvz-vmm ended in {took:.1f} s with {rc}")
        assert rc == 1, err
        assert "vCPU 0: thread still running, stuck serving exit reason 2 at 0x3f8" in err, err
        assert "a vCPU did not stop within" in err, err
        assert 4 <= took < 10, took
    finally:
        p.kill()
        p.wait()
        os.close(r)
