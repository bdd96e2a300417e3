"""The web UI's login, sessions, CSRF protection and HTTPS on kvzd's TCP
listener (meson test 'web-auth'), attacked as a hostile browser or client
would: nothing works without a login, a cookie without its CSRF token
changes nothing, the token is never in a URL or a log, login guessing is
slowed. kvzd runs with the stand-in supervisors."""
import os
import socket
import ssl
import subprocess
import time

import pytest

from webui_harness import TOKEN, Client, start_web


@pytest.fixture
def web(fake):
    return start_web(fake)


# Everything a logged-out browser or a client without the token might try.
PROTECTED = [("GET", "/v1/guests"), ("GET", "/v1/host"), ("GET", "/v1/events"),
             ("GET", "/v1/events/stream"), ("GET", "/metrics"), ("GET", "/v1/guests/x"),
             ("GET", "/v1/host/stats"), ("GET", "/ui/session"), ("GET", "/ui/assets/app.js"),
             ("POST", "/v1/guests"), ("DELETE", "/v1/guests/x"), ("PATCH", "/v1/guests/x"),
             ("POST", "/v1/guests/x/start"), ("POST", "/ui/logout")]


def test_nothing_without_login(web):
    c = Client(web)
    for method, path in PROTECTED:
        status, body = c.request(method, path, {} if method != "GET" else None)
        assert status == 401, (method, path, status, body)
        assert "APP" not in str(body)
    # Pages send the browser to the login page, and say nothing else.
    status, body = c.request("GET", "/")
    assert status == 303 and c.last.getheader("Location") == "/ui/login"
    assert "APP-PAGE" not in str(body)
    # The login page and what it needs are public.
    assert c.request("GET", "/ui/login") == (200, "<!doctype html><title>kvz login</title>LOGIN-PAGE")
    assert c.request("GET", "/ui/assets/login.js")[0] == 200
    # A made-up session id is no session.
    c.cookie = "kvz_session=" + "ab" * 32
    for method, path in PROTECTED:
        assert c.request(method, path, {} if method != "GET" else None)[0] == 401, path


def test_login_session_and_pages(web):
    c = Client(web)
    assert c.login("wrong-token-0123456789")[0] == 401
    assert c.cookie is None
    status, body = c.login()
    assert status == 200 and len(body["csrf"]) == 64
    assert c.request("GET", "/") == (200, "<!doctype html><title>kvz</title>APP-PAGE")
    assert c.last.getheader("Content-Security-Policy").startswith("default-src 'self'")
    assert c.last.getheader("X-Frame-Options") == "DENY"
    assert c.request("GET", "/ui/assets/app.js") == (200, "/* APP-JS */")
    assert c.request("GET", "/v1/guests") == (200, [])
    # A reloaded page gets the CSRF token from its session.
    assert c.request("GET", "/ui/session") == (200, {"csrf": c.csrf})
    # Two logins are two sessions.
    other = Client(web)
    other.login()
    assert other.cookie != c.cookie and other.csrf != c.csrf


def test_cookie_flags_https(web):
    c = Client(web)
    c.login()
    parts = [p.strip() for p in c.set_cookie.split(";")]
    assert parts[0].startswith("kvz_session=") and len(parts[0]) == len("kvz_session=") + 64
    assert set(parts[1:]) == {"Path=/", "HttpOnly", "SameSite=Strict", "Secure"}
    assert c.last.getheader("Strict-Transport-Security")


def test_cookie_flags_plain_http(fake):
    d = start_web(fake, tls=False)
    c = Client(d)
    c.login()
    parts = [p.strip() for p in c.set_cookie.split(";")]
    assert set(parts[1:]) == {"Path=/", "HttpOnly", "SameSite=Strict"}


def test_csrf_required_for_changes(web):
    c = Client(web)
    c.login()
    new = {"name": "w1", "type": "ct", "template": "busybox"}
    for csrf in (None, "", "0" * 64, c.csrf[:-1], c.csrf + "0"):
        h = {} if csrf is None else {"X-CSRF-Token": csrf}
        status, body = c.request("POST", "/v1/guests", new, headers=h, csrf=False)
        assert status == 403, (csrf, status, body)
        assert "X-CSRF-Token" in body["error"]["message"]
    assert web.api("GET", "/v1/guests")[1] == []
    # Another session's CSRF token is no good either.
    other = Client(web)
    other.login()
    assert c.request("POST", "/v1/guests", new, headers={"X-CSRF-Token": other.csrf},
                     csrf=False)[0] == 403
    status, body = c.request("POST", "/v1/guests", new)
    assert status == 201, body
    for method, path in (("POST", "/v1/guests/w1/start"), ("PATCH", "/v1/guests/w1"),
                         ("DELETE", "/v1/guests/w1?force=1"), ("POST", "/ui/logout")):
        assert c.request(method, path, {"cpus": 1} if method == "PATCH" else None,
                         csrf=False)[0] == 403, path
    assert web.api("GET", "/v1/guests/w1")[1]["state"] == "stopped"
    assert c.request("POST", "/v1/guests/w1/start")[0] == 200
    assert c.request("DELETE", "/v1/guests/w1?force=1") == (200, {"destroyed": "w1"})


def test_bearer_and_unix_socket_unchanged(web):
    c = Client(web)
    assert c.bearer("GET", "/v1/guests") == (200, [])
    assert c.bearer("GET", "/v1/guests", token=TOKEN[:-1])[0] == 401
    # A bearer client needs no CSRF token: browsers never add that header.
    assert c.bearer("POST", "/v1/guests", {"name": "b1", "type": "ct"})[0] == 201
    assert c.bearer("DELETE", "/v1/guests/b1")[0] == 200
    assert web.api("GET", "/v1/guests") == (200, [])
    # The UI is not served on the UNIX socket.
    assert web.api("GET", "/ui/login")[0] == 404


def test_token_never_in_urls_or_logs(web):
    c = Client(web)
    # A token in the query string is no login.
    for path in ("/v1/guests?token=" + TOKEN, "/v1/guests?access_token=" + TOKEN,
                 "/?token=" + TOKEN):
        assert c.request("GET", path)[0] in (303, 401), path
    c.login()
    assert c.login(TOKEN + "x")[0] == 401
    c.request("POST", "/v1/guests", {"name": "t1", "type": "ct"})
    c.request("GET", "/v1/guests")
    # The login answer, the session cookie and the pages never carry it.
    for path in ("/", "/ui/session", "/v1/host", "/v1/guests"):
        assert TOKEN not in str(c.request("GET", path)[1])
    assert TOKEN not in c.set_cookie and TOKEN not in c.csrf and TOKEN not in c.cookie
    log = web.read_log()
    assert "web UI: login" in log and "failed login" in log
    assert TOKEN not in log and TOKEN[:16] not in log


def test_login_guessing_is_slowed(web):
    bad = Client(web)
    for i in range(5):
        assert bad.login("guess-%d-0123456789abcdef" % i)[0] == 401
    # From now on each failure doubles the wait, even for the right token.
    status, body = bad.login()
    assert status == 429 and "try again" in body["error"]["message"]
    # Another address is not held up by the guesser.
    other = Client(web, source="127.0.0.2")
    assert other.login()[0] == 200
    t0 = time.monotonic()
    while bad.login()[0] == 429:
        assert time.monotonic() - t0 < 5, "the first wait should be about 1 s"
        time.sleep(0.1)
    assert bad.cookie
    # A wrong guess after the wait costs 2 s, then 4 s: 100 guesses take hours.
    bad2 = Client(web, source="127.0.0.3")
    for i in range(5):
        assert bad2.login("guess2-%d-0123456789abcdef" % i)[0] == 401
    time.sleep(1.1)
    assert bad2.login("guess2-5-0123456789abcdef")[0] == 401
    time.sleep(1.2)
    assert bad2.login()[0] == 429


def test_logout_ends_session_and_stream(web):
    c = Client(web)
    c.login()
    conn = c.conn()
    conn.request("GET", "/v1/events/stream", headers={"Cookie": c.cookie})
    stream = conn.getresponse()
    assert stream.status == 200
    assert stream.getheader("Content-Type").startswith("text/event-stream")
    assert stream.readline() == b"event: snapshot\n"
    status, body = c.request("POST", "/ui/logout")
    assert status == 200
    assert "Max-Age=0" in c.set_cookie
    assert c.request("GET", "/v1/guests")[0] == 401
    assert c.request("POST", "/ui/logout")[0] == 401
    # The open stream ends within a second or two of the logout.
    conn.sock.settimeout(5)
    t0 = time.monotonic()
    while stream.readline():
        assert time.monotonic() - t0 < 5
    conn.close()


def test_session_expires_when_idle(fake):
    d = start_web(fake, extra=["--session-idle", "2"])
    c = Client(d)
    c.login()
    for _ in range(3):
        time.sleep(1)
        assert c.request("GET", "/v1/guests")[0] == 200  # use keeps it alive
    time.sleep(2.5)
    assert c.request("GET", "/v1/guests")[0] == 401


def test_self_signed_certificate_kept(fake):
    d = start_web(fake)
    key = os.path.join(d.state, "tls", "key.pem")
    assert os.stat(key).st_mode & 0o777 == 0o600
    first = ssl.get_server_certificate(("127.0.0.1", d.port))
    d.terminate()
    d.start(["--listen", "127.0.0.1:%d" % d.port, "--token-file", os.path.join(d.dir, "token"),
             "--tls", "--web-dir", os.path.join(d.dir, "web")])
    assert ssl.get_server_certificate(("127.0.0.1", d.port)) == first
    # Plain HTTP on the HTTPS port gets nothing.
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.sendall(b"GET /v1/guests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
              TOKEN.encode() + b"\r\n\r\n")
    assert b"200 OK" not in s.recv(4096)
    s.close()


def test_given_certificate_served(fake):
    cert, key = os.path.join(fake.dir, "c.pem"), os.path.join(fake.dir, "k.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        "/CN=kvz-test-given", "-keyout", key, "-out", cert],
                       capture_output=True)
    if r.returncode:
        pytest.skip("openssl cannot make a test certificate: " + r.stderr.decode())
    d = start_web(fake, extra=["--tls-cert", cert, "--tls-key", key])
    served = ssl.get_server_certificate(("127.0.0.1", d.port))
    with open(cert) as f:
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(f.read())
    assert not os.path.exists(os.path.join(d.state, "tls"))


def test_tls_options_checked(fake):
    from kvzd_harness import KVZD
    for args, msg in ((["--tls"], "--listen"),
                      (["--listen", "127.0.0.1:1", "--token-file", "/x", "--tls-cert", "/x"],
                       "go together")):
        r = subprocess.run([KVZD, "--state-dir", fake.state, "--run-dir", fake.run,
                            "--socket", fake.socket] + args, capture_output=True, text=True)
        assert r.returncode != 0 and msg in r.stderr, r.stderr
