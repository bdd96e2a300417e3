"""Host-side parts of the nested lab (lab/kvzlab.py), no QEMU needed:
module dependency order, the cpio writer, the L2 initramfs, the L1 timing
helper and the parsing of its figures."""

import gzip
import os
import shutil
import subprocess

import pytest

from labpaths import kvzlab


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KVZ_LAB_OUT", str(tmp_path / "out"))


def need_kernel_modules():
    try:
        return kvzlab.module_dir(kvzlab.lab_kernel())
    except kvzlab.LabError as e:
        pytest.skip(f"no Debian kernel modules: {e}")


def modinfo_depends(moddir, name):
    ver = os.path.basename(moddir)
    r = subprocess.run(["modinfo", "-k", ver, "-F", "depends", name],
                       capture_output=True, text=True, check=True)
    return [d.replace("-", "_") for d in r.stdout.strip().split(",") if d]


def name_of(rel):
    return os.path.basename(rel)[:-len(".ko")].replace("-", "_")


def test_modules_come_after_their_dependencies():
    moddir = need_kernel_modules()
    if not shutil.which("modinfo"):
        pytest.skip("modinfo (kmod) not installed")
    order = [name_of(r) for r in kvzlab.resolve_modules(
        ["virtio_blk", "ext4", "virtio_net", "virtio-rng", "virtio_pci"])]
    assert len(order) == len(set(order)), order
    for i, mod in enumerate(order):
        for dep in modinfo_depends(moddir, mod):
            assert dep in order[:i], f"{dep} must load before {mod}: {order}"
    # ext4's softdep on crc32c: the generic provider, before ext4.
    assert order.index("crc32c_generic") < order.index("ext4")
    for wanted in ("virtio_blk", "ext4", "virtio_net", "virtio_rng",
                   "virtio_pci"):
        assert wanted in order


def test_unknown_module_is_an_error():
    need_kernel_modules()
    with pytest.raises(kvzlab.LabError, match="no_such_module"):
        kvzlab.resolve_modules(["no_such_module"])


def cpio_list(data, tmp_path):
    if not shutil.which("cpio"):
        pytest.skip("cpio not installed")
    r = subprocess.run(["cpio", "-t", "-v", "--quiet"], input=data,
                       capture_output=True, check=True)
    return r.stdout.decode()


def test_cpio_archive_reads_back(tmp_path):
    c = kvzlab.Cpio()
    c.file("/a/b/hello.txt", "hello\n", 0o640)
    c.symlink("/a/link", "b/hello.txt")
    c.chardev("/dev/console", 5, 1)
    listing = cpio_list(c.bytes(), tmp_path)
    lines = {ln.split()[-1] if "->" not in ln else ln.split()[-3]: ln
             for ln in listing.splitlines()}
    assert lines["a"].startswith("d"), listing
    assert lines["a/b"].startswith("d"), listing
    assert lines["a/b/hello.txt"].startswith("-rw-r-----"), listing
    assert lines["a/link"].startswith("l") and "-> b/hello.txt" in lines["a/link"]
    assert lines["dev/console"].startswith("c"), listing
    # Content survives extraction.
    subprocess.run(["cpio", "-i", "-d", "--quiet", "a/b/hello.txt"],
                   input=c.bytes(), cwd=tmp_path, check=True)
    assert (tmp_path / "a/b/hello.txt").read_text() == "hello\n"


def test_l2_initrd_holds_init_busybox_and_ordered_modules(tmp_path):
    need_kernel_modules()
    out = tmp_path / "l2.cpio.gz"
    kvzlab.build_l2_initrd("echo my-init\n", ["virtio_blk"], out=str(out))
    data = gzip.decompress(out.read_bytes())
    listing = cpio_list(data, tmp_path)
    names = [ln.split()[-1] for ln in listing.splitlines() if "->" not in ln]
    for want in ("init", "kvzlab-l2-init", "bin/busybox", "etc/kvzlab-modules"):
        assert want in names, listing
    subprocess.run(["cpio", "-i", "-d", "--quiet", "kvzlab-l2-init",
                    "etc/kvzlab-modules"], input=data, cwd=tmp_path, check=True)
    assert (tmp_path / "kvzlab-l2-init").read_text() == "echo my-init\n"
    mods = (tmp_path / "etc/kvzlab-modules").read_text().split()
    assert [os.path.basename(m) for m in mods][-1] == "virtio_blk.ko"
    assert all(m[1:] in names for m in mods), (mods, names)
    # Same inputs: the cached archive is reused, byte for byte.
    again = kvzlab.build_l2_initrd("echo my-init\n", ["virtio_blk"])
    assert open(again, "rb").read() == out.read_bytes()


def run_time_helper(tmp_path, *args):
    helper = tmp_path / "kvzlab-time"
    helper.write_text(kvzlab.L1_TIME_HELPER)
    # L1 runs it with busybox sh; fall back to the host's sh.
    bb = shutil.which("busybox")
    shell = [bb, "sh"] if bb else ["sh"]
    return subprocess.run([*shell, str(helper), *args], capture_output=True,
                          text=True, timeout=30)


def test_time_helper_reports_marker_and_exit_status(tmp_path):
    r = run_time_helper(tmp_path, "job", "MARK", "sh", "-c",
                        "echo before; sleep 0.3; echo xMARKx; exit 5")
    times = kvzlab.parse_times(r.stdout)
    assert r.returncode == 5, r.stdout + r.stderr
    assert len(times["job"]) == 1 and len(times["job-exit"]) == 1, r.stdout
    assert 0.2 <= times["job"][0] <= times["job-exit"][0], times


def test_time_helper_fails_when_marker_never_shows(tmp_path):
    r = run_time_helper(tmp_path, "job", "MARK", "sh", "-c", "echo nothing")
    assert r.returncode == 3, r.stdout
    assert "never seen" in r.stdout
    assert "job" not in kvzlab.parse_times(r.stdout)


def test_compare_prints_medians_and_ratio(capsys):
    out = "KVZLAB-TIME a 3.00\nKVZLAB-TIME b 2.00\nKVZLAB-TIME a 1.00\n" \
          "KVZLAB-TIME a 2.00\nKVZLAB-TIME b 4.00\nKVZLAB-TIME b 3.00\n"
    ratio = kvzlab.compare(kvzlab.parse_times(out), "a", "b")
    assert ratio == pytest.approx(2.0 / 3.0)
    assert "a/b = 0.67" in capsys.readouterr().out
    assert kvzlab.compare({"a": [1.0]}, "a", "b") is None


def test_l1_exit_code_is_the_last_marker():
    out = "x\nKVZLAB-L1-EXIT: 3\n[ 1.0] reboot: Power down\n"
    assert kvzlab._l1_exit_code(out) == 3
    assert kvzlab._l1_exit_code("no marker\n") is None


def test_add_option_and_directories(tmp_path):
    assert kvzlab._parse_adds(["/a:/b", "/c/d:/e"]) == {"/a": "/b", "/c/d": "/e"}
    for bad in ("/a", "/a:relative", ":/b"):
        with pytest.raises(kvzlab.LabError):
            kvzlab._parse_adds([bad])
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("x")
    (tree / "ln").symlink_to("sub/f")
    c = kvzlab.Cpio()
    kvzlab._add_tree(c, str(tree), "/data")
    assert c.has("/data/sub/f") and c.has("/data/ln") and c.has("/data")
    with pytest.raises(kvzlab.LabError, match="missing"):
        kvzlab._add_tree(c, str(tmp_path / "nope"), "/x")


def _result(exit_code, timed_out=False, output="console\n"):
    return kvzlab.LabResult(output=output, exit_code=exit_code,
                            timed_out=timed_out, duration=1.0,
                            qemu_returncode=0)


def test_emulator_failures_are_run_again_once_and_reported(monkeypatch, capsys):
    runs = [_result(None, output="L1 oops\n"), _result(0)]
    monkeypatch.setattr(kvzlab, "_run_in_lab_once", lambda *a: runs.pop(0))
    res = kvzlab.run_in_lab("true")
    assert res.exit_code == 0 and not runs
    err = capsys.readouterr().err
    assert "attempt 1 failed" in err and "L1 oops" in err


def test_script_failures_are_not_run_again(monkeypatch):
    calls = []
    monkeypatch.setattr(kvzlab, "_run_in_lab_once",
                        lambda *a: calls.append(1) or _result(1))
    assert kvzlab.run_in_lab("false").exit_code == 1
    assert len(calls) == 1


def test_a_run_that_always_hangs_still_fails(monkeypatch):
    calls = []
    monkeypatch.setattr(kvzlab, "_run_in_lab_once",
                        lambda *a: calls.append(1) or _result(143))
    res = kvzlab.run_in_lab("sleep 999", retries=1)
    assert res.exit_code == 143 and len(calls) == 2
    assert kvzlab.lab_failure(res)
    assert kvzlab.lab_failure(_result(0, timed_out=True))
    assert kvzlab.lab_failure(_result(0)) is None


def test_a_failed_script_after_an_l2_triple_fault_is_run_again(monkeypatch, capsys):
    died = _result(7, output="L2-INFLATED\nKVZLAB-L2-SHUTDOWN: an L2 vCPU "
                   "triple-faulted; its last KVM events:\n kvm_exit: reason shutdown\n")
    runs = [died, _result(0)]
    monkeypatch.setattr(kvzlab, "_run_in_lab_once", lambda *a: runs.pop(0))
    assert kvzlab.run_in_lab("balloon").exit_code == 0 and not runs
    assert "triple-faulted" in capsys.readouterr().err
    # The same twice is returned as it is; a failure without the L1 report
    # never counts.
    assert kvzlab.lab_failure(died)
    assert kvzlab.lab_failure(_result(7, output="L2-INFLATED\n")) is None


def test_a_passing_script_with_an_unexpected_l2_triple_fault_is_run_again(
        monkeypatch, capsys):
    # The snapshot test's script goes on after a restored guest died and
    # exits 0; its checks fail later in pytest.  The run is the lab's fault
    # unless the caller asked for the triple fault.
    died = _result(0, output="R2: L2-COUNT 41\nKVZLAB-L2-SHUTDOWN: an L2 vCPU "
                   "triple-faulted; its last KVM events:\n kvm_exit: reason "
                   "npf rip 0xffffffff81000000\n kvm_exit: reason shutdown\n"
                   "KVZLAB-L1-EXIT: 0\n")
    runs = [died, _result(0)]
    monkeypatch.setattr(kvzlab, "_run_in_lab_once", lambda *a: runs.pop(0))
    res = kvzlab.run_in_lab("restore")
    assert kvzlab.L2_SHUTDOWN_MARKER not in res.output and not runs
    err = capsys.readouterr().err
    assert "reason npf rip 0xffffffff81000000" in err, err
    assert kvzlab.lab_failure(died)
    assert kvzlab.lab_failure(died, l2_triple_fault_expected=True) is None
    runs = [died, _result(0)]
    res = kvzlab.run_in_lab("reboot=t", l2_triple_fault_expected=True)
    assert res is died and len(runs) == 1


def test_a_kernel_stuck_for_good_stops_the_run_and_counts(monkeypatch, capsys):
    st = kvzlab._Stall()
    # One report of each under a loaded host is not enough ...
    assert st.feed("[  172.740677] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [rcu_preempt:15]\n") is None
    assert st.feed("[  173.411331] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n") is None
    assert st.feed("[cycle1] [  9.1] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n") is None
    assert st.feed("RESULT x rc=0 watchdog: BUG: soft lockup - CPU#0 stuck for 500s!\n") is None
    # ... a lockup of 100 s or more is.
    why = st.feed("[  260.740587] watchdog: BUG: soft lockup - CPU#0 stuck for 104s! [rcu_preempt:15]\n")
    assert why and "104s" in why
    st = kvzlab._Stall()
    for t in (173, 236):
        assert st.feed(f"[  {t}.4] rcu: INFO: rcu_sched self-detected stall on CPU\n") is None
    assert "3 RCU stall reports" in st.feed("[  299.4] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n")
    stuck = _result(None, output="[ 260.7] watchdog: ...\n" + kvzlab.STALL_MARKER + " stuck for 104s; QEMU stopped\n")
    assert "stuck for good (stuck for 104s; QEMU stopped)" in kvzlab.lab_failure(stuck)
    runs = [stuck, _result(0)]
    monkeypatch.setattr(kvzlab, "_run_in_lab_once", lambda *a: runs.pop(0))
    assert kvzlab.run_in_lab("cycles").exit_code == 0 and not runs
    assert "stuck for good" in capsys.readouterr().err


def test_qemu_is_stopped_soon_after_a_kernel_is_stuck_for_good(monkeypatch):
    monkeypatch.setattr(kvzlab._Stall, "GRACE_S", 0.5)
    fake = ["sh", "-c", "echo '[  260.7] watchdog: BUG: soft lockup - CPU#0 stuck for 104s!'; "
            "echo evidence; exec sleep 60"]
    res = kvzlab._run_qemu(fake, 30, None)
    assert kvzlab.STALL_MARKER in res.output and "evidence" in res.output
    assert not res.timed_out and res.duration < 10 and res.exit_code is None
    assert kvzlab.lab_failure(res)


def test_a_silent_l1_counts_only_after_its_first_heartbeat(tmp_path):
    hb = kvzlab._Heartbeat(str(tmp_path / "beat"))
    assert hb.check(0) is None and hb.check(10_000) is None   # no file yet
    (tmp_path / "beat").write_text("")
    assert hb.check(10_000) is None      # a slow boot: no beat yet, no verdict
    (tmp_path / "beat").write_text("beat\n")
    assert hb.check(100) is None
    assert hb.check(100 + kvzlab._Heartbeat.SILENT_S - 1) is None
    (tmp_path / "beat").write_text("beat\nbeat\n")
    assert hb.check(400) is None          # it grew: the clock starts again
    assert hb.check(400 + kvzlab._Heartbeat.SILENT_S - 1) is None
    why = hb.check(400 + kvzlab._Heartbeat.SILENT_S)
    assert why and "no heartbeat from L1" in why


def test_qemu_is_stopped_when_l1_stops_beating(monkeypatch, tmp_path):
    monkeypatch.setattr(kvzlab._Heartbeat, "SILENT_S", 1.5)
    monkeypatch.setattr(kvzlab._Stall, "GRACE_S", 0.5)
    beat = tmp_path / "beat"
    fake = ["sh", "-c", f"echo beat > {beat}; echo booted; exec sleep 60"]
    res = kvzlab._run_qemu(fake, 30, None, heartbeat=str(beat))
    assert kvzlab.STALL_MARKER in res.output and "no heartbeat from L1" in res.output
    assert not res.timed_out and res.duration < 10
    assert "stuck for good" in kvzlab.lab_failure(res)
    # A run that keeps beating is left alone until it ends by itself.
    fake = ["sh", "-c", f"for i in 1 2 3 4 5 6; do echo beat >> {beat}; sleep 0.5; done; "
            "echo 'KVZLAB-L1-EXIT: 0'"]
    res = kvzlab._run_qemu(fake, 30, None, heartbeat=str(beat))
    assert kvzlab.STALL_MARKER not in res.output and res.exit_code == 0


def test_l1_gets_a_heartbeat_port():
    cmd = kvzlab.qemu_l1_command("i", 2, 512, "k", heartbeat="/x/beat")
    assert cmd[cmd.index("file:/x/beat") - 1] == "-serial"
    assert cmd.index("stdio") < cmd.index("file:/x/beat")   # ttyS0 stays the console
    assert "/dev/ttyS1" in kvzlab.L1_INIT


def test_bench_require_names_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(kvzlab, "lab_missing", lambda: None)
    kvzlab.bench_require("b", str(tmp_path))          # present: returns
    with pytest.raises(SystemExit) as e:
        kvzlab.bench_require("b", str(tmp_path / "nope"))
    assert str(e.value) == f"b: {tmp_path / 'nope'} not built"
    monkeypatch.setattr(kvzlab, "lab_missing", lambda: "no qemu")
    with pytest.raises(SystemExit) as e:
        kvzlab.bench_require("b")
    assert str(e.value) == "b: nested lab unavailable: no qemu"
