"""The web UI end to end in headless Chromium (meson test 'web-browser'):
e2e_browser.mjs drives the browser against kvzd with the real kvz-ct and a
busybox container; screenshots land in BUILD/web-screenshots. Skips, saying
why, without root, kvz-ct, the built UI, node with playwright-core, or
Debian's chromium."""
import json
import os
import shutil
import subprocess

import pytest

from kvzd_harness import Kvzd, fake_kvzd
from test_vm_template import make_disk
from webui_harness import BUILD, TOKEN, start_web

SOURCE = os.environ.get("KVZ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
KVZ_CT = os.path.join(BUILD, "src/ct/kvz-ct")
WEB = os.path.join(BUILD, "web")
SHOTS = os.path.join(BUILD, "web-screenshots")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PLAYWRIGHT = os.path.join(SOURCE, "web/node_modules/playwright-core/index.mjs")
VM_CACHE = os.environ.get("KVZ_CT_CACHE", "/var/lib/kvz/cache")


def need(cond, why):
    if not cond:
        pytest.skip(why)


def run_e2e(d, script, timeout, **env):
    """Runs one of the .mjs scripts against d's UI; fails with its output
    and kvzd's log unless every step passed."""
    os.makedirs(SHOTS, exist_ok=True)
    env = dict(os.environ, KVZ_SOURCE_DIR=SOURCE, KVZ_UI="https://127.0.0.1:%d" % d.port,
               KVZ_TOKEN=TOKEN, KVZ_SHOTS=SHOTS, KVZ_CHROMIUM=CHROMIUM, **env)
    r = subprocess.run(["node", os.path.join(os.path.dirname(__file__), script)],
                       env=env, capture_output=True, text=True, timeout=timeout)
    print(r.stdout)
    if r.returncode != 0:  # pytest.fail prints it whole, an assert's repr would cut it
        pytest.fail(r.stdout + r.stderr + "\nkvzd log:\n" + d.read_log(), pytrace=False)
    assert "all steps passed" in r.stdout


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
    run_e2e(d, "e2e_browser.mjs", timeout=240)
    # What the browser did, seen from kvzd's side.
    assert d.api("GET", "/v1/guests")[1] == []
    types = [e["type"] for e in d.events("web1")]
    assert types == ["created", "started", "resized", "resized", "stopped", "destroyed"], types
    assert TOKEN not in d.read_log()
    for name in ("login", "dashboard", "create-summary", "create-error", "guest", "guest-console",
                 "dashboard-phone"):
        assert os.path.getsize(os.path.join(SHOTS, name + ".png")) > 1000, name


def need_browser():
    need(shutil.which("node"), "node not installed")
    need(os.path.exists(PLAYWRIGHT), "playwright-core not installed (npm ci in web/)")
    need(os.access(CHROMIUM, os.X_OK), "Debian's chromium not installed (scripts/install-deps.sh)")
    need(os.path.exists(os.path.join(WEB, "index.html")), "the web UI is not built (node/npm missing)")


def test_ct_backups_in_chromium():
    """e2e_backups.mjs: back up, restore, cancel and delete on a
    container's page, with the stand-in kvz-ct (fake_supervisor.c)."""
    need_browser()
    d = fake_kvzd()
    need(d, "the stand-in supervisor is not built")
    try:
        start_web(d, web_dir=WEB)
        d.kvz("create", "ct", "c1", "--disk", "64M", "--", "/bin/sh", "-c", "sleep 1000")
        d.kvz("start", "c1")
        run_e2e(d, "e2e_backups.mjs", timeout=180, KVZ_CT_NAME="c1",
                KVZ_CT_DIR=os.path.join(d.state, "ct", "c1"))
        assert d.api("GET", "/v1/guests/c1/backups")[1] == []
        jobs = [(j["type"], j["state"], j["params"].get("backup"))
                for j in d.api("GET", "/v1/jobs?guest=c1")[1]]
        assert jobs == [("backup-create", "completed", "b1"), ("backup-restore", "completed", "b1"),
                        ("backup-create", "cancelled", "b2")], jobs
        assert d.guest("c1")["state"] == "running"
        assert os.path.getsize(os.path.join(SHOTS, "guest-backups.png")) > 1000
    finally:
        d.cleanup()


def test_vm_snapshots_and_jobs_in_chromium():
    """e2e_jobs.mjs: snapshot progress, restore, cancel and delete on a VM's
    page, with the stand-in kvz-vmm (fake_supervisor.c) playing the
    snapshot contract slowly (fake-migrate=slow: about 3 s)."""
    need_browser()
    d = fake_kvzd()
    need(d, "the stand-in supervisor is not built")
    try:
        start_web(d, web_dir=WEB)
        d.kvz("create", "vm", "vm1", "--kernel", d.kernel, "--memory", "64M", "--disk", "16M",
              "--cmdline", "fake-migrate=slow")
        d.kvz("start", "vm1")
        run_e2e(d, "e2e_jobs.mjs", timeout=180, KVZ_VM="vm1")
        # What the browser did, seen from kvzd's side.
        assert d.api("GET", "/v1/guests/vm1/snapshots")[1] == []
        jobs = [(j["type"], j["state"], j["params"].get("snapshot"))
                for j in d.api("GET", "/v1/jobs?guest=vm1")[1]]
        assert jobs == [("snapshot-create", "completed", "s1"), ("snapshot-restore", "completed", "s1"),
                        ("snapshot-create", "cancelled", "s2")], jobs
        assert d.guest("vm1")["state"] == "running"
        for name in ("guest-snapshots", "guest-jobs-cancelled"):
            assert os.path.getsize(os.path.join(SHOTS, name + ".png")) > 1000, name
    finally:
        d.cleanup()


def test_vm_disks_in_chromium():
    """e2e_disks.mjs: a VM's page lists its disks in kvz-vmm's order."""
    need_browser()
    d = fake_kvzd()
    need(d, "the stand-in supervisor is not built")
    try:
        start_web(d, web_dir=WEB)
        d.kvz("create", "vm", "vm2", "--kernel", d.kernel, "--memory", "64M", "--disk", "16M",
              "--disk", "8M,format=qcow2")
        d.kvz("start", "vm2")
        run_e2e(d, "e2e_disks.mjs", timeout=120, KVZ_VM="vm2")
        assert os.path.getsize(os.path.join(SHOTS, "guest-disks.png")) > 1000
    finally:
        d.cleanup()


def test_vm_create_wizard_in_chromium(tmp_path):
    """e2e_vmcreate.mjs: VMs from an imported disk, from install media (and,
    with root and the cached debian VM layer, from the template) through
    the wizard, with the stand-in kvz-vmm: a failed vm-create job and a
    refused field show kvzd's errors; the job's progress is shown until the
    VM runs."""
    need_browser()
    need(shutil.which("mkfs.ext4"), "e2fsprogs (mkfs.ext4) missing")
    d = fake_kvzd()
    need(d, "the stand-in supervisor is not built")
    template = os.geteuid() == 0 and os.path.exists(os.path.join(VM_CACHE, "debian-vm.img"))
    try:
        d.ct = KVZ_CT   # kvz-ct vm-image makes the template's disk
        images = d.images_dirs[0]
        for name, files in (("good.img", {"boot/vmlinuz-6.1.0-9-amd64": b"KERNEL",
                                          "boot/initrd.img-6.1.0-9-amd64": b"INITRD"}),
                            ("nokernel.img", {"etc/hostname": b"x\n"})):
            shutil.copy(make_disk(tmp_path, files, name), os.path.join(images, name))
        with open(os.path.join(images, "install.iso"), "wb") as f:   # the ISO 9660 signature
            f.truncate(1 << 20)
            f.seek(16 * 2048)
            f.write(b"\x01CD001\x01")
        start_web(d, web_dir=WEB)
        run_e2e(d, "e2e_vmcreate.mjs", timeout=240, KVZ_IMAGES=images,
                KVZ_TEMPLATE="1" if template else "")
        # What the browser did, seen from kvzd's side.
        want = ["imp1", "iso1", "tpl1"] if template else ["imp1", "iso1"]
        guests = d.api("GET", "/v1/guests")[1]
        assert [(g["name"], g["state"]) for g in guests] == [(n, "running") for n in want], guests
        jobs = [(j["guest"], j["type"], j["state"]) for j in d.api("GET", "/v1/jobs")[1]]
        assert jobs == [("imp1", "vm-create", "failed"), ("imp1", "vm-create", "completed")] + \
            ([("tpl1", "vm-create", "completed")] if template else []), jobs
        assert d.guest("imp1")["config"]["import"] == os.path.join(images, "good.img")
        iso = d.guest("iso1")["config"]
        assert iso["cdrom"] == os.path.join(images, "install.iso") and iso["boot"] == "cdrom"
        assert iso["disk_size"] == 8 << 30
        if template:
            assert d.guest("tpl1")["config"]["guest_ip"] == "10.10.0.60/24"
            assert "hunter2" not in json.dumps(d.api("GET", "/v1/guests")[1]) + d.read_log()
        for name in ("create-vm-boot-template", "create-vm-job-failed", "create-vm-import-error",
                     "create-vm-imported"):
            assert os.path.getsize(os.path.join(SHOTS, name + ".png")) > 1000, name
    finally:
        d.cleanup()
