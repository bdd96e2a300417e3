#!/usr/bin/env python3
"""The web UI's dashboard with GUESTS (50) running guests (kvzd with the
stand-in supervisors): load time in headless Chromium, and kvzd's CPU
while the dashboard is open (server-sent events) side by side with a
client that polls GET /v1/guests and /v1/host every second (what a UI
without the stream would do) and with no client at all. Also the asset
bundle's gzipped size. Prints figures and ratios."""
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.abspath(os.environ.get("BUILD_DIR", os.path.join(SOURCE, "build")))
os.environ["KVZ_BUILD_DIR"] = BUILD
sys.path.insert(0, os.path.join(SOURCE, "tests/web"))
from webui_harness import TOKEN, Client, fake_kvzd, start_web  # noqa: E402

GUESTS = int(os.environ.get("GUESTS", "50"))
HOLD = int(os.environ.get("HOLD", "30"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kvzd_cpu_pct(d, seconds, during=None):
    """kvzd's CPU as percent of one core over `seconds` while during() runs."""
    t = threading.Thread(target=during) if during else None
    if t:
        t.start()
        time.sleep(3)  # the browser's start and the page load are not the steady state
    c0, w0 = cpu_seconds(d.proc.pid), time.monotonic()
    time.sleep(seconds)
    pct = 100 * (cpu_seconds(d.proc.pid) - c0) / (time.monotonic() - w0)
    if t:
        t.join()
    return pct


def node(env, *args):
    r = subprocess.run(["node", os.path.join(SOURCE, "bench/web_dashboard.mjs")] + list(args),
                       env=env, capture_output=True, text=True, timeout=600)
    if r.returncode:
        sys.exit("web_dashboard: browser failed: " + r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    web = os.path.join(BUILD, "web")
    for need, why in ((os.path.exists(os.path.join(web, "app.js")), "the web UI is not built"),
                      (os.access(CHROMIUM, os.X_OK), "chromium is not installed"),
                      (shutil.which("node"), "node is not installed")):
        if not need:
            sys.exit("web_dashboard: " + why)
    d = fake_kvzd()
    d.interval = 5
    try:
        start_web(d, web_dir=web)
        for i in range(GUESTS):
            d.kvz("create", "ct", "g%02d" % i)
            d.kvz("start", "g%02d" % i)
        env = dict(os.environ, KVZ_SOURCE_DIR=SOURCE, KVZ_UI="https://127.0.0.1:%d" % d.port,
                   KVZ_TOKEN=TOKEN, KVZ_CHROMIUM=CHROMIUM, KVZ_GUESTS=str(GUESTS))
        times = node(env, "load", "7")[2:]  # the first loads warm the browser's caches
        idle = kvzd_cpu_pct(d, HOLD)
        sse = kvzd_cpu_pct(d, HOLD, lambda: node(env, "hold", str(HOLD + 6)))
        stop = threading.Event()

        def poll():
            c = Client(d)
            while not stop.wait(1):
                c.bearer("GET", "/v1/guests")
                c.bearer("GET", "/v1/host")
        t = threading.Thread(target=poll)
        t.start()
        polled = kvzd_cpu_pct(d, HOLD)
        stop.set()
        t.join()
        gz = sum(len(gzip.compress(open(os.path.join(web, f), "rb").read(), 9))
                 for f in os.listdir(web))
        print("web_dashboard: %d guests, %d s per CPU figure, sample interval 5 s" % (GUESTS, HOLD))
        print("  dashboard load (median of %d): %d ms (max %d ms; target < 1000 ms)" %
              (len(times), statistics.median(times), max(times)))
        print("  kvzd CPU, no client:            %5.2f %% of one core" % idle)
        print("  kvzd CPU, dashboard open (SSE): %5.2f %% of one core (target < 5 %%)" % sse)
        print("  kvzd CPU, 1 s polling client:   %5.2f %% of one core" % polled)
        print("  ratio SSE dashboard / polling client: %.2f" % (sse / polled if polled else 0))
        print("  assets gzipped: %.1f KiB (target < 500 KiB)" % (gz / 1024))
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()
