"""kvzd with its TCP listener (HTTPS or plain), the web UI's assets and a
client that speaks to it as a browser would (cookie jar, CSRF header) or
as an API client (bearer token)."""
import http.client
import json
import os
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../daemon"))
from kvzd_harness import BUILD, FAKE, fake_kvzd, free_port  # noqa: E402,F401

TOKEN = "web-ui-test-token-0123456789abcdef"


def write_token(d, token=TOKEN):
    path = os.path.join(d.dir, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (token + "\n").encode())
    os.close(fd)
    return path


def fake_web_dir(d):
    """Stand-in assets, so that these tests do not depend on the npm build."""
    wd = os.path.join(d.dir, "web")
    os.makedirs(wd, exist_ok=True)
    for f, text in (("index.html", "<!doctype html><title>kvz</title>APP-PAGE"),
                    ("login.html", "<!doctype html><title>kvz login</title>LOGIN-PAGE"),
                    ("app.js", "/* APP-JS */"), ("app.css", "/* CSS */"),
                    ("login.js", "/* LOGIN-JS */")):
        with open(os.path.join(wd, f), "w") as fh:
            fh.write(text)
    return wd


def start_web(d, tls=True, extra=(), web_dir=None):
    d.port = free_port()
    d.tls = tls
    args = ["--listen", "127.0.0.1:%d" % d.port, "--token-file", write_token(d),
            "--web-dir", web_dir or fake_web_dir(d)]
    if tls:
        args.append("--tls")
    d.start(args + list(extra))
    return d


class Client:
    """One HTTP(S) client of kvzd's TCP listener with a cookie jar."""

    def __init__(self, d, source="127.0.0.1"):
        self.d, self.source = d, source
        self.cookie = None
        self.csrf = None
        self.set_cookie = None

    def conn(self, timeout=20):
        if self.d.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection("127.0.0.1", self.d.port, timeout=timeout,
                                               context=ctx, source_address=(self.source, 0))
        return http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=timeout,
                                          source_address=(self.source, 0))

    def request(self, method, path, body=None, headers=None, cookie=True, csrf=True):
        h = dict(headers or {})
        if cookie and self.cookie:
            h["Cookie"] = self.cookie
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            h["X-CSRF-Token"] = self.csrf
        data = json.dumps(body) if body is not None else None
        if data:
            h["Content-Type"] = "application/json"
        c = self.conn()
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        self.last = r
        sc = r.getheader("Set-Cookie")
        if sc:
            self.set_cookie = sc
        text = raw.decode(errors="replace")
        if (r.getheader("Content-Type") or "").startswith("application/json"):
            return r.status, json.loads(text)
        return r.status, text

    def login(self, token=TOKEN):
        status, body = self.request("POST", "/ui/login", {"token": token}, cookie=False)
        if status == 200:
            self.cookie = self.set_cookie.split(";")[0]
            self.csrf = body["csrf"]
        return status, body

    def bearer(self, method, path, body=None, token=TOKEN):
        return self.request(method, path, body, headers={"Authorization": "Bearer " + token},
                            cookie=False)
