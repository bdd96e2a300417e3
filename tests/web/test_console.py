"""The guest console over a WebSocket (meson test 'web-console'):
GET /v1/guests/NAME/console upgraded, attacked and used with a small
hand-written RFC 6455 client; kvzd runs with the stand-in supervisor,
whose console greets and echoes."""
import base64
import os
import socket
import ssl
import struct
import time

from webui_harness import TOKEN, Client, start_web


def handshake(d, path, headers, tls=True):
    """Sends the upgrade request; (status line, headers dict, socket)."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    host = "127.0.0.1:%d" % d.port
    h = {"Host": host, "Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
         "Origin": ("https://" if tls else "http://") + host}
    h.update(headers)
    req = "GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in h.items() if kv[1] is not None)
    s.sendall((req + "\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {k.lower(): v for k, v in (ln.split(": ", 1) for ln in lines[1:] if ": " in ln)}
    ws = WebSocket(s, rest)
    ws.key = h["Sec-WebSocket-Key"]
    return lines[0], hdrs, ws


class WebSocket:
    def __init__(self, sock, buffered=b""):
        self.s, self.buf = sock, buffered

    def send(self, payload, opcode=2, mask=True, fin=True):
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        m = 0x80 if mask else 0
        if n < 126:
            head += bytes([m | n])
        elif n < 65536:
            head += bytes([m | 126]) + struct.pack(">H", n)
        else:
            head += bytes([m | 127]) + struct.pack(">Q", n)
        if mask:
            key = os.urandom(4)
            head += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.s.sendall(head + payload)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed; have %r" % self.buf[:60])
            self.buf += chunk

    def recv(self):
        """(opcode, payload) of the next server frame."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames are not masked"
        n, off = b1 & 0x7f, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0f, payload

    def read_until(self, text, timeout=10):
        got = b""
        deadline = time.monotonic() + timeout
        while text not in got:
            assert time.monotonic() < deadline, "no %r in %r" % (text, got)
            op, p = self.recv()
            assert op in (1, 2), (op, p)
            got += p
        return got


def running_guest(d, c):
    assert c.request("POST", "/v1/guests", {"name": "c1", "type": "vm", "kernel": d.kernel})[0] == 201
    assert c.request("POST", "/v1/guests/c1/start")[0] == 200


def test_console_in_session(fake):
    d = start_web(fake)
    c = Client(d)
    c.login()
    running_guest(d, c)
    status, h, ws = handshake(d, "/v1/guests/c1/console", {"Cookie": c.cookie})
    assert status == "HTTP/1.1 101 Switching Protocols", status
    expect = base64.b64encode(__import__("hashlib").sha1(
        (ws.key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    assert h["sec-websocket-accept"] == expect
    # The console's greeting (what `kvz console` shows first), then an echo.
    ws.read_until(b"kvz-test-guest: idle")
    ws.send(b"typed in the browser")
    ws.read_until(b"typed in the browser")
    # Ping is answered; a frame in two pieces arrives whole.
    ws.send(b"p1", opcode=9)
    assert ws.recv() == (10, b"p1")
    ws.send(b"piece-", opcode=2, fin=False)
    ws.send(b"two", opcode=0)
    ws.read_until(b"piece-two")
    ws.send(struct.pack(">H", 1000), opcode=8)
    assert ws.recv()[0] == 8
    ws.s.close()
    # Outlives the header deadline (5 s) of ordinary requests.
    status, _, ws = handshake(d, "/v1/guests/c1/console", {"Cookie": c.cookie})
    assert "101" in status
    time.sleep(6.5)
    ws.send(b"still here")
    ws.read_until(b"still here")
    # Logging out ends it.
    c.request("POST", "/ui/logout")
    deadline = time.monotonic() + 5
    while True:
        op, p = ws.recv()
        if op == 8:
            assert b"session ended" in p
            break
        assert time.monotonic() < deadline


def test_console_refused(fake):
    d = start_web(fake)
    c = Client(d)
    c.login()
    running_guest(d, c)
    path = "/v1/guests/c1/console"
    cases = [
        ({}, "401"),                                            # no session, no token
        ({"Cookie": "kvz_session=" + "ab" * 32}, "401"),        # made-up session
        ({"Cookie": c.cookie, "Origin": "https://evil.example"}, "403"),  # another site's page
        ({"Cookie": c.cookie, "Origin": None}, "403"),
        ({"Cookie": c.cookie, "Sec-WebSocket-Version": "8"}, "400"),
        ({"Cookie": c.cookie, "Sec-WebSocket-Key": "short"}, "400"),
        ({"Cookie": c.cookie, "Upgrade": None}, "400"),
    ]
    for headers, want in cases:
        status, _, ws = handshake(d, path, headers)
        assert want in status, (headers, status)
        ws.s.close()
    status, _, ws = handshake(d, "/v1/guests/nope/console", {"Cookie": c.cookie})
    assert "404" in status
    c.request("POST", "/v1/guests", {"name": "c2", "type": "ct"})
    status, _, ws = handshake(d, "/v1/guests/c2/console", {"Cookie": c.cookie})
    assert "409" in status
    # A bearer client needs no Origin; the UNIX socket is not upgraded by a browser.
    status, _, ws = handshake(d, path, {"Authorization": "Bearer " + TOKEN, "Origin": None})
    assert "101" in status
    ws.read_until(b"kvz-test-guest: idle")
    # An unmasked frame breaks the protocol: close 1002 and the end.
    ws.send(b"x", mask=False)
    op, p = ws.recv()
    assert op == 8 and struct.unpack(">H", p[:2])[0] == 1002
    # So does a frame beyond 64 KiB.
    status, _, ws = handshake(d, path, {"Authorization": "Bearer " + TOKEN})
    ws.read_until(b"idle")
    ws.send(b"y" * 70000)
    op, p = ws.recv()
    while op != 8:
        op, p = ws.recv()
    assert struct.unpack(">H", p[:2])[0] == 1002
    # kvzd still serves, and stops promptly with a console open.
    status, _, ws = handshake(d, path, {"Authorization": "Bearer " + TOKEN})
    assert "101" in status
    t0 = time.monotonic()
    d.terminate()
    assert time.monotonic() - t0 < 5
