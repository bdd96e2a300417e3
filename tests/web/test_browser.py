"""The web UI end to end in headless Chromium (meson test 'web-browser'):
e2e_browser.mjs drives the browser against kvzd with the real kvz-ct and a
busybox container; screenshots land in BUILD/web-screenshots. Skips, saying
why, without root, kvz-ct, the built UI, node with playwright-core, or
Debian's chromium."""
import os
import shutil
import subprocess

import pytest

from kvzd_harness import Kvzd
from webui_harness import BUILD, TOKEN, start_web

SOURCE = os.environ.get("KVZ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
KVZ_CT = os.path.join(BUILD, "src/ct/kvz-ct")
WEB = os.path.join(BUILD, "web")
SHOTS = os.path.join(BUILD, "web-screenshots")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PLAYWRIGHT = os.path.join(SOURCE, "web/node_modules/playwright-core/index.mjs")


def need(cond, why):
    if not cond:
        pytest.skip(why)


@pytest.fixture
def real():
    d = Kvzd(ct=KVZ_CT, interval=1)
    yield d
    d.cleanup()


def test_web_ui_in_chromium(real):
    need(os.geteuid() == 0, "containers need root")
    need(os.path.exists(KVZ_CT), "kvz-ct not built: " + KVZ_CT)
    need(os.path.exists(os.path.join(WEB, "index.html")), "the web UI is not built (node/npm missing)")
    need(shutil.which("node"), "node not installed")
    need(os.path.exists(PLAYWRIGHT), "playwright-core not installed (npm ci in web/)")
    need(os.access(CHROMIUM, os.X_OK), "Debian's chromium not installed (scripts/install-deps.sh)")
    d = start_web(real, web_dir=WEB)
    os.makedirs(SHOTS, exist_ok=True)
    env = dict(os.environ, KVZ_SOURCE_DIR=SOURCE, KVZ_UI="https://127.0.0.1:%d" % d.port,
               KVZ_TOKEN=TOKEN, KVZ_SHOTS=SHOTS, KVZ_CHROMIUM=CHROMIUM)
    r = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "e2e_browser.mjs")],
                       env=env, capture_output=True, text=True, timeout=240)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr + "\nkvzd log:\n" + d.read_log()
    assert "all steps passed" in r.stdout
    # What the browser did, seen from kvzd's side.
    assert d.api("GET", "/v1/guests")[1] == []
    types = [e["type"] for e in d.events("web1")]
    assert types == ["created", "started", "resized", "resized", "stopped", "destroyed"], types
    assert TOKEN not in d.read_log()
    for name in ("login", "dashboard", "create-summary", "create-error", "guest", "guest-console",
                 "dashboard-phone"):
        assert os.path.getsize(os.path.join(SHOTS, name + ".png")) > 1000, name
