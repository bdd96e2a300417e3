"""kvzd end to end through kvz with the real supervisors: kvz-ct with the
busybox template, kvz-vmm with the tiny test guest on host /dev/kvm, and
kvz-vmm booting Debian's stock kernel inside the nested lab. Each test skips,
saying what is missing, where the binary or the machine cannot run it."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from kvzd_harness import BUILD, KVZ, KVZD, Kvzd

SOURCE = os.environ.get("KVZ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
KVZ_CT = os.path.join(BUILD, "src/ct/kvz-ct")
KVZ_VMM = os.path.join(BUILD, "src/vmm/kvz-vmm")
IDLE = os.path.join(BUILD, "tests/guests/idle.elf")
SNAPCOUNT = os.path.join(BUILD, "tests/guests/snapcount.elf")


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.fixture
def real():
    d = Kvzd(vmm=KVZ_VMM, ct=KVZ_CT, images_dirs=[os.path.dirname(IDLE)])
    yield d
    d.cleanup()


def need_ct():
    if os.geteuid() != 0:
        pytest.skip("containers need root")
    if not os.path.exists(KVZ_CT):
        pytest.skip("kvz-ct not built: " + KVZ_CT)


def need_vm():
    if not os.path.exists(KVZ_VMM) or not os.path.exists(IDLE):
        pytest.skip("kvz-vmm or the idle test guest not built")
    if not os.path.exists("/dev/kvm"):
        pytest.skip("no /dev/kvm on this machine: the VM path runs in the nested lab test")


def test_container_real(real):
    need_ct()
    d = real.start()
    loop = "while :; do sleep 1; done"
    d.kvz("create", "ct", "web1", "--template", "busybox", "--memory", "32M:64M",
          "--cpus", "0.5", "--pids", "64", "--disk", "256M", "--", "/bin/sh", "-c", loop)
    assert os.path.exists(os.path.join(d.state, "ct/web1/private.img"))
    d.kvz("start", "web1")
    g = d.guest("web1")
    assert g["state"] == "running" and pid_alive(g["pid"])
    # kvz exec: the command runs inside (its own hostname and pid 1), and
    # its exit code is kvz's.
    r = d.kvz("exec", "web1", "--", "sh", "-c", "hostname; cat /proc/1/cmdline; exit 5",
              check=False)
    assert r.returncode == 5, r
    assert r.stdout.splitlines()[0] == "web1" and loop in r.stdout.replace("\0", " ")

    # Live limits: the supervisor's query-stats reports the new hard limit.
    d.kvz("set", "web1", "--memory", "48M:96M", "--cpus", "1", "--pids", "100")
    d.wait_for(lambda: (d.kvz_json("stats", "web1")["latest"] or {}).get("mem_limit") == 96 << 20,
               what="the new memory limit in stats")
    s = d.kvz_json("stats", "web1")["latest"]
    assert 0 < s["mem_used"] <= 96 << 20 and s["disk_size"] > 0
    # Live disk growth, seen from inside.
    d.kvz("set", "web1", "--disk", "512M")
    df = d.kvz("exec", "web1", "--", "df", "-k", "/").stdout.splitlines()[-1].split()
    assert int(df[1]) > 400 * 1024, df

    # kvzd dies hard; the container does not; a new kvzd adopts it.
    pid = g["pid"]
    d.kill9()
    assert pid_alive(pid)
    d.start()
    g = d.guest("web1")
    assert g["state"] == "running" and g["pid"] == pid
    assert d.kvz("exec", "web1", "--", "hostname").stdout.strip() == "web1"
    # kvz exec passes --env on to kvz-ct exec; nothing else of kvz's own.
    r = d.kvz("exec", "--env", "A=1 2", "web1", "--", "sh", "-c", 'echo "$A/${KVZ_SOCKET:-unset}"')
    assert r.stdout == "1 2/unset\n", r

    t0 = time.time()
    d.kvz("stop", "web1", "--timeout", "2")
    assert time.time() - t0 < 20
    assert d.guest("web1")["state"] == "stopped" and not pid_alive(pid)
    d.kvz("destroy", "web1")
    assert not os.path.exists(os.path.join(d.state, "ct/web1"))
    types = [e["type"] for e in d.events("web1")]
    assert types == ["created", "started", "resized", "resized", "adopted", "stopped",
                     "destroyed"], types


def test_container_console_and_exit(real):
    """The console reaches the container's init; when init exits on its own
    the guest is recorded as stopped (exit 0) or crashed (otherwise)."""
    need_ct()
    d = real.start()
    d.kvz("create", "ct", "con", "--disk", "256M", "--", "/bin/sh")
    d.kvz("start", "con")
    r = d.kvz("console", "con", input="echo marker-$((6*7))\nexit 0\n", timeout=30)
    assert "marker-42" in r.stdout, r
    d.wait_for(lambda: d.guest("con")["state"] != "running", what="init exit noticed")
    assert d.guest("con")["state"] == "stopped"
    d.kvz("create", "ct", "bad", "--disk", "256M", "--", "/bin/sh", "-c", "sleep 1; exit 3")
    d.kvz("start", "bad")
    d.wait_for(lambda: d.guest("bad")["state"] == "crashed", what="crash noticed")
    assert "code 3" in d.events("bad")[-1]["detail"], d.events("bad")[-1]


def test_vm_real_idle_guest(real):
    need_vm()
    d = real.start()
    d.kvz("create", "vm", "idle", "--kernel", IDLE, "--memory", "64M", "--disk", "16M")
    d.kvz("start", "idle")
    g = d.guest("idle")
    assert g["state"] == "running"
    # The console keeps what the guest printed before anyone attached.
    con = subprocess.run(["timeout", "3", KVZ, "--socket", d.socket, "console", "idle"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert "kvz-test-guest: idle" in con.stdout, con
    d.wait_for(lambda: len(d.kvz_json("stats", "idle")["samples"]) >= 2, what="samples")
    s = d.kvz_json("stats", "idle")["latest"]
    assert s["mem_used"] > 0 and s["disk_size"] == 16 << 20
    # The tiny guest has no balloon driver: the request reaches kvz-vmm and
    # the target is recorded; the guest does not give memory back.
    d.kvz("set", "idle", "--memory", "32M")
    assert d.guest("idle")["config"]["memory_target"] == 32 << 20
    pid = g["pid"]
    d.kill9()
    assert pid_alive(pid)
    d.start()
    assert d.guest("idle")["state"] == "running" and d.guest("idle")["pid"] == pid
    d.kvz("stop", "idle")
    assert not pid_alive(pid)
    d.kvz("destroy", "idle")
    assert [e["type"] for e in d.events("idle")] == [
        "created", "started", "resized", "adopted", "stopped", "destroyed"]


def qemu_img(*args):
    import json
    import shutil
    if not shutil.which("qemu-img"):
        return None
    out = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out) if "--output=json" in args else out


def test_vm_real_disk_grow(real):
    """kvz set --disk on a running VM grows its disk through kvz-vmm's
    block_resize (raw and qcow2), on a stopped one in the image; a shrink
    or a bad size is refused with one line and changes nothing."""
    need_vm()
    d = real.start()
    d.kvz("create", "vm", "g", "--kernel", IDLE, "--memory", "32M", "--disk", "16M")
    d.kvz("create", "vm", "q", "--kernel", IDLE, "--memory", "32M", "--disk", "16M",
          "--disk-format", "qcow2")
    raw = os.path.join(d.state, "images/g.img")
    q2 = d.guest("q")["config"]["disk_path"]
    d.kvz("start", "g")
    d.kvz("start", "q")
    pid = d.guest("g")["pid"]

    d.kvz("set", "g", "--disk", "48M")
    assert os.path.getsize(raw) == 48 << 20
    assert d.guest("g")["config"]["disk_size"] == 48 << 20
    assert d.events("g")[-1]["type"] == "resized"
    assert d.events("g")[-1]["detail"] == "disk 48M (live)", d.events("g")[-1]
    d.kvz("set", "q", "--disk", "2G")          # past what the first L1 entries map
    info = qemu_img("info", "-U", "--output=json", q2)
    if info is not None:
        assert info["virtual-size"] == 2 << 30

    for args, why in ((["--disk", "8M"], "only grows"),
                      (["--disk", "50000001"], "multiple of 512"),
                      (["--disk", "0"], "bad disk size"),
                      (["--disk", "100P"], "bad size")):
        r = d.kvz("set", "g", *args, check=False)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r
        assert re.search(why, r.stderr), r
    for bad, why in ((-4096, "bad disk size"), (1 << 57, "limit"), ("lots", "bad disk size"),
                     (True, "bad disk size")):
        r = d.api("PATCH", "/v1/guests/g", {"disk": bad})
        assert r[0] == 400 and why in r[1]["error"]["message"], r
    assert os.path.getsize(raw) == 48 << 20
    assert d.guest("g")["config"]["disk_size"] == 48 << 20
    assert d.guest("g")["pid"] == pid and pid_alive(pid)

    # Stopped: the image grows in place, and the next start sees it.
    d.kvz("stop", "g", "--timeout", "1")
    d.kvz("stop", "q", "--timeout", "1")
    d.kvz("set", "g", "--disk", "64M")
    assert os.path.getsize(raw) == 64 << 20
    assert d.events("g")[-1]["detail"] == "disk 64M"
    d.kvz("set", "q", "--disk", "3G")
    r = d.kvz("set", "q", "--disk", "1G", check=False)
    assert r.returncode == 1 and "only grows" in r.stderr
    if info is not None:
        assert qemu_img("info", "--output=json", q2)["virtual-size"] == 3 << 30
        qemu_img("check", q2)
    d.kvz("start", "g")
    assert d.guest("g")["state"] == "running"
    d.kvz("stop", "g", "--timeout", "1")
    for name in ("g", "q"):
        d.kvz("destroy", name)


def console_counts(d, name):
    """The counts snapcount.elf has printed on its console (kept history)."""
    con = subprocess.run(["timeout", "2", KVZ, "--socket", d.socket, "console", name],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True)
    return [int(m, 16) for m in re.findall(r"n=([0-9a-f]{16}) ok", con.stdout)]


def test_vm_real_snapshot_restore(real):
    """Through kvzd with the real kvz-vmm: a snapshot of the running counter
    guest, then restore: the counter goes back to the saved instant and
    continues, and the disk is the snapshot's again."""
    if not os.path.exists(KVZ_VMM) or not os.path.exists(SNAPCOUNT):
        pytest.skip("kvz-vmm or the snapcount test guest not built")
    if not os.path.exists("/dev/kvm"):
        pytest.skip("no /dev/kvm on this machine")
    d = real.start()
    d.kvz("create", "vm", "sc", "--kernel", SNAPCOUNT, "--memory", "64M", "--disk", "16M")
    img = os.path.join(d.state, "images/sc.img")
    with open(img, "r+b") as f:
        f.write(b"DISK-AT-SNAPSHOT")
    d.kvz("start", "sc")
    before = d.wait_for(lambda: (console_counts(d, "sc") or [0])[-1] >= 3 and
                        console_counts(d, "sc")[-1], timeout=60, what="the counter")
    r = d.kvz("snapshot", "create", "sc", "s1")
    assert "completed" in r.stdout.strip().split("\n")[-1], r.stdout
    after = console_counts(d, "sc")[-1]
    assert after >= before, "the VM runs on after the snapshot"
    snap = d.kvz_json("snapshot", "list", "sc")[0]
    assert snap["running"] and snap["size"] > 0
    late = d.wait_for(lambda: (lambda c: c and c[-1] >= after + 20 and c[-1])(
        console_counts(d, "sc")), timeout=120, what="the counter to move on")
    with open(img, "r+b") as f:
        f.write(b"CHANGED-LATER!!!")
    d.kvz("snapshot", "restore", "sc", "s1")
    assert d.guest("sc")["state"] == "running"
    first = d.wait_for(lambda: (console_counts(d, "sc") or [None])[0], timeout=60,
                       what="the restored counter")
    assert before <= first <= after + 2 < late, (before, first, after, late)
    with open(img, "rb") as f:
        assert f.read(16) == b"DISK-AT-SNAPSHOT"
    d.kvz("stop", "sc")
    d.kvz("destroy", "sc")
    assert not os.path.exists(os.path.join(d.state, "snapshots/sc"))


def lab_module():
    sys.path.insert(0, os.path.join(SOURCE, "lab"))
    try:
        import kvzlab
    except ImportError as e:
        pytest.skip("lab/kvzlab.py not importable: %s" % e)
    return kvzlab


def ldd(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return re.findall(r"(/\S+) \(", out)


L2_INIT = """
echo KVZ-L2-MEM $(grep MemTotal /proc/meminfo)
ls /sys/bus/virtio/drivers/ 2>&1 | tr '\\n' ' '; echo
echo KVZ-L2-UP cpus=$(grep -c ^processor /proc/cpuinfo)
while :; do sleep 1; done
"""

L1_SCRIPT = r"""
set -x
mkdir -p /tmp/k
kvzd --state-dir /tmp/k/state --run-dir /tmp/k/run --socket /tmp/k/s.sock \
     --vmm /bin/kvz-vmm --ct /bin/false --sample-interval 1 --images-dir /l2 > /tmp/k/kvzd.log 2>&1 &
kvzd_pid=$!
export KVZ_SOCKET=/tmp/k/s.sock
for i in 1 2 3 4 5 6 7 8 9 10; do [ -S /tmp/k/s.sock ] && break; sleep 1; done
kvz create vm deb --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz \
    --cmdline "console=ttyS0 quiet panic=-1" --memory 256M --cpus 2 --disk 64M || exit 10
echo "KVZ-T start $(cut -d' ' -f1 /proc/uptime)"
kvz start deb || { cat /tmp/k/kvzd.log /tmp/k/state/logs/deb.log; exit 11; }
echo "KVZ-T running $(cut -d' ' -f1 /proc/uptime)"
up=0
for i in $(seq 1 180); do
    timeout 1 kvz console deb < /dev/null > /tmp/k/console.txt 2>/dev/null
    if grep -q KVZ-L2-UP /tmp/k/console.txt; then up=1; break; fi
    sleep 1
done
echo "KVZ-T l2-up $(cut -d' ' -f1 /proc/uptime)"
echo "=== console"; cat /tmp/k/console.txt | tail -5
[ $up = 1 ] || { cat /tmp/k/state/logs/deb.log; exit 12; }
kvz list
kvz set deb --memory 192M || exit 13
# The guest's balloon driver gives 64M back; kvzd samples query-balloon.
for i in $(seq 1 30); do
    lim=$(kvz --json show deb | grep '"mem_limit"')
    echo "balloon: $lim"
    case "$lim" in *201326592*) echo KVZ-BALLOON-OK; break;; esac
    sleep 1
done
kvz --json stats deb | grep -c ts_ms
# kvzd dies hard and comes back: the VM runs on and is adopted.
kill -9 $kvzd_pid
sleep 1
kvzd --state-dir /tmp/k/state --run-dir /tmp/k/run --socket /tmp/k/s.sock \
     --vmm /bin/kvz-vmm --ct /bin/false --sample-interval 1 --images-dir /l2 >> /tmp/k/kvzd.log 2>&1 &
for i in 1 2 3 4 5 6 7 8 9 10; do kvz host > /dev/null 2>&1 && break; sleep 1; done
kvz events --guest deb | grep -q adopted && echo KVZ-ADOPTED
kvz list
kvz stop deb || exit 14
kvz destroy deb || exit 15
kvz events
echo KVZ-LAB-DONE
"""


def test_vm_debian_kernel_in_lab():
    """kvzd and kvz inside L1 of the nested lab run kvz-vmm booting Debian's
    stock kernel (L2) to a shell, balloon it, stop and destroy it."""
    kvzlab = lab_module()
    kvzlab.skip_unless_lab()
    if not os.path.exists(KVZ_VMM):
        pytest.skip("kvz-vmm not built: " + KVZ_VMM)
    files = {KVZD: "/bin/kvzd", KVZ: "/bin/kvz"}
    for b in (KVZD, KVZ):
        for lib in ldd(b):
            files.setdefault(lib, lib)
    res = kvzlab.run_in_lab(L1_SCRIPT, files=files, smp=2, mem_mb=2048, timeout=480,
                            l2_init=L2_INIT, l2_modules=["virtio_pci", "virtio_blk", "virtio_balloon"])
    out = res.output
    keep = os.environ.get("KVZD_TEST_LOG_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
        with open(os.path.join(keep, "lab-output.txt"), "w") as f:
            f.write(out)
    assert res.exit_code == 0 and "KVZ-LAB-DONE" in out, out[-6000:]
    assert "KVZ-L2-UP cpus=2" in out
    assert "KVZ-BALLOON-OK" in out, "balloon target not reached: " + out[-3000:]
    assert "KVZ-ADOPTED" in out, out[-3000:]
    assert re.search(r"deb\s+vm\s+running", out), out[-4000:]
    for ev in ("created", "started", "resized", "stopped", "destroyed"):
        assert re.search(r"deb\s+%s" % ev, out), ev


# L2 runs what arrives on its console, one line at a time.
L2_SNAP_INIT = """
echo KVZ-L2-UP
while :; do
    if read -r cmd; then eval "$cmd"; fi
done
"""

L1_SNAP_SCRIPT = r"""
set -x
mkdir -p /tmp/k
kvzd --state-dir /tmp/k/state --run-dir /tmp/k/run --socket /tmp/k/s.sock \
     --vmm /bin/kvz-vmm --ct /bin/false --sample-interval 5 --images-dir /l2 > /tmp/k/kvzd.log 2>&1 &
export KVZ_SOCKET=/tmp/k/s.sock
for i in 1 2 3 4 5 6 7 8 9 10; do [ -S /tmp/k/s.sock ] && break; sleep 1; done
# Waits up to $2 s for $1 on the console (its kept history).
wait_console() {
    for i in $(seq 1 $2); do
        timeout 1 kvz console deb < /dev/null > /tmp/k/console.txt 2>/dev/null
        grep -q "$1" /tmp/k/console.txt && return 0
        sleep 1
    done
    echo "=== console"; tail -20 /tmp/k/console.txt; cat /tmp/k/state/logs/deb.log
    return 1
}
say() { printf '%s\n' "$1" | timeout 3 kvz console deb > /dev/null 2>&1; true; }
kvz create vm deb --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz \
    --cmdline "console=ttyS0 quiet panic=-1" --memory 256M --cpus 2 --disk 64M || exit 10
kvz start deb || { cat /tmp/k/kvzd.log /tmp/k/state/logs/deb.log; exit 11; }
wait_console KVZ-L2-UP 180 || exit 12
# A file in the guest (tmpfs: RAM) and a mark on its disk, then the snapshot.
say 'echo A > /tmp/f; printf DISK-A > /dev/vda; sync; echo KVZ-S1-$(cat /tmp/f)'
wait_console KVZ-S1-A 60 || exit 13
kvz snapshot create deb s1 || { cat /tmp/k/kvzd.log; exit 14; }
kvz snapshot list deb
# Both change after it.
say 'echo B > /tmp/f; printf DISK-B > /dev/vda; sync; echo KVZ-S2-$(cat /tmp/f)'
wait_console KVZ-S2-B 60 || exit 15
kvz snapshot restore deb s1 || { cat /tmp/k/kvzd.log; exit 16; }
kvz list
# The restored guest answers at once, with the file and the disk of then.
say 'echo 3 > /proc/sys/vm/drop_caches; echo KVZ-S3-$(cat /tmp/f)-$(head -c 6 /dev/vda)'
wait_console 'KVZ-S3-[A-Z]' 60 || exit 17
grep -o 'KVZ-S3-[A-Z]*-DISK-[A-Z]' /tmp/k/console.txt
kvz events --guest deb
kvz stop deb || exit 18
kvz destroy deb || exit 19
echo KVZ-LAB-DONE
"""


def test_vm_snapshot_in_lab():
    """Through kvzd in L1 of the nested lab, with Debian's stock kernel in
    L2: create, snapshot, change a file in the guest and its disk, restore:
    both changes are gone."""
    kvzlab = lab_module()
    kvzlab.skip_unless_lab()
    if not os.path.exists(KVZ_VMM):
        pytest.skip("kvz-vmm not built: " + KVZ_VMM)
    files = {KVZD: "/bin/kvzd", KVZ: "/bin/kvz"}
    for b in (KVZD, KVZ):
        for lib in ldd(b):
            files.setdefault(lib, lib)
    res = kvzlab.run_in_lab(L1_SNAP_SCRIPT, files=files, smp=2, mem_mb=2048, timeout=540,
                            l2_init=L2_SNAP_INIT, l2_modules=["virtio_pci", "virtio_blk"])
    out = res.output
    keep = os.environ.get("KVZD_TEST_LOG_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
        with open(os.path.join(keep, "lab-snapshot-output.txt"), "w") as f:
            f.write(out)
    assert res.exit_code == 0 and "KVZ-LAB-DONE" in out, out[-6000:]
    assert "KVZ-S3-A-DISK-A" in out, "the restored guest kept later changes: " + out[-4000:]
    for ev in ("snapshot-created", "snapshot-restored", "job-completed"):
        assert re.search(r"deb\s+%s" % ev, out), ev
