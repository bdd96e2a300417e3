"""bench/blk_lab.sh without the lab: its L1 script under busybox sh with two
fake VMMs that answer like the L2 script (bench/blk_lab_l2.sh), and its
verdict (bench/blk_lab_lib.py) on lines of known ratios."""
import os
import shutil
import subprocess
import sys

import pytest

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SRC, "bench"))
import blk_lab_lib as lib  # noqa: E402

BUSYBOX = shutil.which("busybox")
LABELS = [label for label, _, _ in lib.JOBS]

# A guest as the L2 script is seen from L1: READY, then GO/END/RES per job.
# SPEED is its figure; DIE_AFTER jobs it exits; HANG_AFTER jobs it stops
# answering; with HANG_ONCE (a file made then) only the first guest to get
# that far does. Its arguments (the disks) go to ARGS_FILE.
FAKE_GUEST = r"""
echo "$*" > "$ARGS_FILE"
echo "[    0.1] boot noise"
echo "L2-READY raw=vda qcow2=vdb fio=vdc"
n=0
while read -r cmd fmt label; do
	case $cmd in Q) break ;; J) ;; *) continue ;; esac
	n=$((n + 1))
	[ "$n" -gt "${DIE_AFTER:-999999}" ] && exit 7
	if [ "$n" -gt "${HANG_AFTER:-999999}" ] && ! [ -e "${HANG_ONCE:-/nonexistent}" ]; then
		[ -n "$HANG_ONCE" ] && touch "$HANG_ONCE"
		sleep 60; continue
	fi
	echo "L2-GO"
	i=0; while [ $i -lt 3000 ]; do i=$((i + 1)); done
	echo "L2-END"
	s=$SPEED; [ "$fmt" = qcow2 ] && s=$((SPEED * ${Q2_PERCENT:-100} / 100))
	echo "L2-RES $s $s 4096 0 0 0 10 80 5 30 160 9"
done
echo "kvz-vmm: debug: virtio vda: fake counters"
"""


def run_l1(tmp_path, rounds=4, step=20, kvz_env="", qemu_env="", max_restarts=4):
    guest = tmp_path / "guest.sh"
    guest.write_text(FAKE_GUEST)
    (tmp_path / "empty.qcow2").write_bytes(b"QFI\xfb")
    (tmp_path / "fio.tgz").write_bytes(b"\0" * 512)
    kvz = (f"exec env SPEED=2000 ARGS_FILE={tmp_path}/kvz.args {kvz_env} "
           f"{BUSYBOX} sh {guest} \"$@\"")
    qemu = (f"exec env SPEED=1000 ARGS_FILE={tmp_path}/qemu.args {qemu_env} "
            f"{BUSYBOX} sh {guest} \"$@\"")
    script = lib.l1_script(rounds, step, kvz, qemu, work=str(tmp_path),
                           qcow2=str(tmp_path / "empty.qcow2"), fio=str(tmp_path / "fio.tgz"),
                           boot=10, max_restarts=max_restarts)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)


needs_busybox = pytest.mark.skipif(not BUSYBOX, reason="busybox not installed (Debian: busybox)")


@needs_busybox
def test_rounds_rotate_and_report(tmp_path):
    res = run_l1(tmp_path, rounds=4, kvz_env="Q2_PERCENT=95")
    assert res.returncode == 0, res.stdout + res.stderr
    blk = [line.split() for line in res.stdout.splitlines() if line.startswith("BLK ")]
    assert len(blk) == 4 * len(LABELS) * 4
    # Every (round, VMM, format, job) once, in the rotated order.
    seen = [(int(b[1]), b[2], b[3], b[4]) for b in blk]
    assert len(set(seen)) == len(seen)
    first = {}
    for r, vmm, fmt, label in seen:
        first.setdefault((r, label), []).append(f"{vmm}:{fmt}")
    assert first[(1, LABELS[0])] == ["kvz:raw", "qemu:raw", "qemu:qcow2", "kvz:qcow2"]
    assert first[(2, LABELS[0])] == ["qemu:raw", "kvz:raw", "kvz:qcow2", "qemu:qcow2"]
    assert first[(3, LABELS[0])] == ["kvz:qcow2", "qemu:qcow2", "qemu:raw", "kvz:raw"]
    assert first[(4, LABELS[0])] == ["qemu:qcow2", "kvz:qcow2", "kvz:raw", "qemu:raw"]
    # Over 4 rounds each of the four stands in each place once.
    for label in LABELS:
        for place in range(4):
            assert len({first[(r, label)][place] for r in range(1, 5)}) == 4
    # CPU ticks of the real processes: never going backwards.
    for b in blk:
        assert int(b[-2]) >= int(b[-4]) and int(b[-1]) >= int(b[-3])
    assert "BLK-EXIT kvz=0 qemu=0" in res.stdout
    assert "[kvz] kvz-vmm: debug: virtio vda: fake counters" in res.stdout
    assert "[kvz] [    0.1] boot noise" in res.stdout
    # Each VMM got its own fresh images and the read-only fio disk.
    kargs = (tmp_path / "kvz.args").read_text()
    assert f"--disk {tmp_path}/kvz-raw.img --disk {tmp_path}/kvz-q2.img,format=qcow2" in kargs
    assert f"{tmp_path}/fio.tgz,readonly" in kargs
    qargs = (tmp_path / "qemu.args").read_text()
    assert "qemu-q2.img,format=qcow2,if=virtio,cache=writeback,aio=threads" in qargs
    assert (tmp_path / "kvz-raw.img").stat().st_size == 128 << 20

    text, missing, below = lib.report(res.stdout, 4)
    assert missing == 0
    assert below == 0, text
    rows = lib.figures(lib.parse(res.stdout), [1, 2, 3, 4])
    raw = [row for row in rows if row["fmt"] == "raw"]
    assert all(row["speed"].median == pytest.approx(2.0) and row["speed"].n == 4 for row in raw)
    q2 = lib.qcow2_rows(lib.parse(res.stdout), [1, 2, 3, 4])
    assert all(row["kvz"].median == pytest.approx(0.95) for row in q2)
    assert all(row["verdict"] == "meets" for row in q2)


@needs_busybox
def test_dead_vmm_fails_with_one_line(tmp_path):
    res = run_l1(tmp_path, rounds=1, step=3, kvz_env="DIE_AFTER=2", max_restarts=0)
    assert res.returncode == 1
    fails = [line for line in res.stdout.splitlines() if line.startswith("blk_lab: ")]
    assert len(fails) == 1 and fails[0].startswith("blk_lab: kvz: "), res.stdout
    assert fails[0].endswith("(and 0 restarts already)")
    # kvz-vmm dies at its third job: by then QEMU has run two.
    assert len([line for line in res.stdout.splitlines() if line.startswith("BLK ")]) == 4


@needs_busybox
def test_stuck_guest_is_booted_again_and_its_job_lost(tmp_path):
    res = run_l1(tmp_path, rounds=1, step=2, qemu_env=f"HANG_AFTER=3 HANG_ONCE={tmp_path}/hung")
    assert res.returncode == 0, res.stdout
    lines = res.stdout.splitlines()
    # Round 1's order per job: kvz raw, qemu raw, qemu qcow2, kvz qcow2:
    # QEMU's 4th job is the second job on qcow2.
    assert f"BLK-LOST 1 qemu qcow2 {LABELS[1]}" in lines
    assert any(line.startswith("blk_lab: qemu: ") and line.endswith("booting it again")
               for line in lines)
    assert len([line for line in lines if line.startswith("BLK ")]) == len(LABELS) * 4 - 1
    text, missing, _ = lib.report(res.stdout, 1)
    assert missing == 1   # that figure of the one round: kvz/QEMU on qcow2
    assert "1 job lost" in text


@needs_busybox
def test_guest_stuck_for_good_fails_with_one_line(tmp_path):
    res = run_l1(tmp_path, rounds=1, step=2, qemu_env="HANG_AFTER=1", max_restarts=1)
    assert res.returncode == 1
    assert res.stdout.splitlines()[-1].startswith("blk_lab: qemu: no start of "), res.stdout
    assert res.stdout.splitlines()[-1].endswith("(and 1 restarts already)")


def blk(rnd, vmm, fmt, label, value, cpu=10):
    return (f"BLK {rnd} {vmm} {fmt} {label} {value} {value} 4096 0 0 0 "
            f"0 0 0 100 800 25 1000 500 {1000 + cpu} 505")


def test_verdict_is_the_median_of_round_ratios():
    label = "rand-read-4K-qd1"
    # kvz/QEMU per round: 0.5, 1.1, 1.2, 3.0, 1.05 -> median 1.1, whatever
    # the means of the absolute values say.
    kvz = [500, 1100, 1200, 3000, 1050]
    out = "\n".join(blk(r + 1, "kvz", "raw", label, v) + "\n" + blk(r + 1, "qemu", "raw", label, 1000)
                    for r, v in enumerate(kvz))
    runs = lib.parse(out)
    row = next(r for r in lib.figures(runs, [1, 2, 3, 4, 5])
               if r["fmt"] == "raw" and r["label"] == label)
    assert row["speed"].median == pytest.approx(1.1)
    assert (row["speed"].lo, row["speed"].hi) == (pytest.approx(0.5), pytest.approx(3.0))
    assert row["verdict"] == "meets"
    assert row["kvz"] == 1100 and row["qemu"] == 1000
    # 10 ticks of 10 ms over 4 MiB: 25 ms per MiB on both sides.
    assert row["kvz_cpu"] == pytest.approx(25.0) and row["cost"].median == pytest.approx(1.0)


def test_below_and_whole_range_below():
    s = lib.Spread([0.8, 0.95, 1.05])
    assert lib.verdict(s, 1.0) == "below"
    assert lib.verdict(lib.Spread([0.8, 0.9, 0.95]), 1.0) == "BELOW (whole range)"
    assert lib.verdict(lib.Spread([]), 1.0) == "MISSING"


def test_truncated_or_foreign_lines_count_as_missing():
    out = "\n".join([
        "BLK 1 kvz raw seq-read-1M-qd8 100 100 4096",            # fio failed: too short
        "BLK 1 qemu raw seq-read-1M-qd8 bad format raw",
        "BLK 1 kvz raw no-such-job " + " ".join(["1"] * 16),
        "xBLK 1 kvz raw seq-read-1M-qd8 " + " ".join(["1"] * 16),
    ])
    assert lib.parse(out) == {}
    _, missing, _ = lib.report(out, 1)
    assert missing == len(lib.JOBS) * 2 + len(lib.JOBS)


def test_job_args_shell_knows_every_job_and_refuses_others():
    if not BUSYBOX:
        pytest.skip("busybox not installed (Debian: busybox)")
    fn = lib.job_args_shell()
    for label, args, _ in lib.JOBS:
        res = subprocess.run([BUSYBOX, "sh", "-c", fn + f'job_args "{label}"'],
                             capture_output=True, text=True)
        assert res.returncode == 0 and res.stdout.strip() == args
    res = subprocess.run([BUSYBOX, "sh", "-c", fn + 'job_args "x; reboot -f"'],
                         capture_output=True, text=True)
    assert res.returncode == 1 and res.stdout == ""
