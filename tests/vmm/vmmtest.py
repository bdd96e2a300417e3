"""Helpers for the kvz-vmm tests: where the binary and guests are, running
kvz-vmm, and a small QMP client."""

import json
import os
import socket
import subprocess
import time

BUILD = os.environ.get("KVZ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
VMM = os.path.join(BUILD, "src", "vmm", "kvz-vmm")
GUESTS = os.path.join(BUILD, "tests", "guests")


def guest(name):
    return os.path.join(GUESTS, name + ".elf")


def kvm_unavailable_reason():
    """None when /dev/kvm (or $KVZ_KVM_DEVICE) can run a VM, else why not."""
    path = os.environ.get("KVZ_KVM_DEVICE", "/dev/kvm")
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as e:
        return f"{path} cannot be opened ({e.strerror}): no KVM on this host; the same guests run in the nested lab (suite 'lab', test_vmm_lab.py)"
    os.close(fd)
    return None


def run(args, timeout=30, env=None, stdin=subprocess.DEVNULL, input=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    if input is not None:
        stdin = None
    return subprocess.run([VMM] + args, capture_output=True, text=True, timeout=timeout,
                          env=e, stdin=stdin, input=input)


def start(args, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.Popen([VMM] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=e)


def wait_for_path(path, proc, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise AssertionError(f"kvz-vmm exited early: {proc.stderr.read().decode()}")
        time.sleep(0.01)
    raise AssertionError(f"{path} did not appear")


def connect_unix(path, timeout=10):
    """A stream socket connected to the UNIX socket at path."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


class Qmp:
    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.greeting = self._read()
        assert "QMP" in self.greeting
        assert self.cmd("qmp_capabilities") == {"return": {}}

    def _read(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("QMP connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send_raw(self, text, fds=None):
        if fds:   # SCM_RIGHTS with the command, as libvirt sends getfd
            socket.send_fds(self.sock, [text.encode() + b"\n"], fds)
        else:
            self.sock.sendall(text.encode() + b"\n")
        while True:
            msg = self._read()
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def cmd(self, name, **args):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        return self.send_raw(json.dumps(req))

    def wait_event(self, name, timeout=10):
        end = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name:
                    self.events.remove(e)
                    return e
            if time.monotonic() > end:
                raise AssertionError(f"no {name} event; saw {self.events}")
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                msg = self._read()
            except socket.timeout:
                continue
            if "event" in msg:
                self.events.append(msg)

    def close(self):
        self.sock.close()
