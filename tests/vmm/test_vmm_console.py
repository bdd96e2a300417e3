"""kvz-vmm's buffered console output (src/vmm/console.c): a guest that
writes as fast as the UART takes it (tests/guests/flood.S) must see all of
its output, in order, on stdout or the console socket, however it ends:
power-off, reset, an error stop, a signal from outside. Its last line has
no line end, so it is still buffered when the guest ends; the stop paths
must write it. A partial line must also come out while the guest runs
(the flush deadline), as a login prompt does."""

import os
import select
import signal
import subprocess
import time

import pytest

import vmmtest
from vmmtest import guest, run

needs_kvm = pytest.mark.skipif(vmmtest.kvm_unavailable_reason() is not None,
                               reason=str(vmmtest.kvm_unavailable_reason()))
FLOOD = guest("flood")


def expected(mode):
    lines = "".join(f"flood {i:04d}\n" for i in range(2000))
    return f"kvz-test-guest: flood\n{lines}flood-end {mode}"


@needs_kvm
@pytest.mark.parametrize("mode,rc,why", [("p", 0, "ACPI power-off"), ("r", 0, "reset"),
                                         ("c", 1, "KVM_EXIT_INTERNAL_ERROR")])
def test_output_complete_at_guest_stop(mode, rc, why):
    res = run(["--kernel", FLOOD, "--memory", "16M"], input=mode)
    assert res.returncode == rc, res.stderr
    assert why in res.stderr
    assert res.stdout == expected(mode)


@needs_kvm
def test_output_precedes_the_stop_line():
    """On one stream (`> log 2>&1`, as kvzd and the lab keep it), the
    guest's last output comes before kvz-vmm's line on why it stopped."""
    res = subprocess.run([vmmtest.VMM, "--kernel", FLOOD, "--memory", "16M"], input="p",
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    assert res.returncode == 0, res.stdout[-500:]
    assert res.stdout.startswith(expected("p") + "kvz-vmm: stopped: guest ACPI power-off"), \
        res.stdout[-300:]


def read_until(fd, want, seconds):
    data = b""
    end = time.monotonic() + seconds
    while want not in data and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], max(0, end - time.monotonic()))
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    return data


@needs_kvm
def test_partial_line_comes_out_while_running_and_signal_stop():
    p = subprocess.Popen([vmmtest.VMM, "--kernel", FLOOD, "--memory", "16M"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"h")
        p.stdin.flush()
        # The guest halts after its last, unended line: only the deadline
        # flush can write it while kvz-vmm runs.
        data = read_until(p.stdout.fileno(), b"flood-end h", 20)
        assert data.endswith(b"flood-end h"), data[-200:]
        assert p.poll() is None, "kvz-vmm ended on its own"
        p.send_signal(signal.SIGTERM)
        rest = p.stdout.read()
        assert p.wait(10) == 0
        assert (data + rest).decode() == expected("h")
    finally:
        p.kill()
        p.wait()


@needs_kvm
def test_socket_console_complete_at_power_off(tmp_path):
    con = str(tmp_path / "console")
    p = vmmtest.start(["--kernel", FLOOD, "--memory", "16M", "--console-socket", con])
    try:
        vmmtest.wait_for_path(con, p)
        s = vmmtest.connect_unix(con, 20)
        data = b""
        while b"flood\n" not in data:
            data += s.recv(4096)
        s.sendall(b"p")
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert p.wait(10) == 0
        assert data.decode() == expected("p")
    finally:
        p.kill()
        p.wait()
