"""bench/migrate_resets_lab.py's host side, no QEMU: its L1 and L2 scripts
parse as busybox sh, and the console lines of a run (a whole one or one cut
short) give the table's counts and the verdict."""

import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import migrate_resets_lab as bench  # noqa: E402

RUN = """\
EV 3.93 kvz migrate BEGIN
EV 18.24 kvz migrate BOOTED v1 BOOT 1
EV 20.93 kvz migrate MOVE-OK 1 2.0
EV 31.37 kvz migrate CHK 0 0
EV 33.00 kvz migrate MOVE-FAIL 2 not done in 120 s
EV 40.00 kvz migrate RESET v1 within 10 s after move 2 (exit 0)
SD kvz migrate  vcpu-812 [001] d..1. 40.1: kvm_exit: vcpu 1 reason shutdown rip 0xffffffff81001234
EV 40.20 kvz migrate SD 1
EV 41.00 kvz migrate CHK 3 1
EV 60.00 kvz migrate END 56.1
EV 61.00 qemu migrate BEGIN
EV 62.00 qemu migrate MOVE-OK 1 6.4
EV 63.00 qemu migrate MOVE-OK 2 6.4
EV 64.00 qemu migrate CHK 4 0
EV 65.00 qemu migrate END 4.0
EV 66.00 kvz control BEGIN
EV 67.00 kvz control BOOT-STUCK v9
"""


def test_counts_of_a_run_cut_short():
    rows = bench.parse(RUN)
    kvz = rows[("kvz", "migrate")]
    assert (kvz["moves"], kvz["tried"], kvz["resets"], kvz["shutdowns"]) == (1, 2, 1, 1)
    assert (kvz["chk_ok"], kvz["chk_bad"], kvz["seconds"]) == (3, 1, 56.1)
    qemu = rows[("qemu", "migrate")]
    assert (qemu["moves"], qemu["resets"], qemu["shutdowns"], qemu["chk_bad"]) == (2, 0, 0, 0)
    ctl = rows[("kvz", "control")]
    assert ctl["ran"] and ctl["stuck"] == 1 and ctl["seconds"] is None
    assert not rows[("qemu", "control")]["ran"]
    text = bench.table(rows)
    assert "cut" in text.splitlines()[2] and "1/2" in text.splitlines()[1]


def test_verdict_follows_the_counts():
    rows = bench.parse(RUN)
    assert bench.verdict(rows).startswith("kvz-vmm:")
    both = bench.parse(RUN + "EV 70.0 qemu migrate RESET v5 during boot (exit 0)\n")
    assert bench.verdict(both).startswith("the emulator:")
    clean = bench.parse(RUN.replace("RESET", "NOTE").replace("SD 1", "SD 0"))
    assert bench.verdict(clean).startswith("inconclusive: no reset")
    only_kvz = bench.parse("\n".join(line for line in RUN.splitlines() if " qemu " not in line))
    assert bench.verdict(only_kvz).startswith("inconclusive: a migrate phase")


def test_lines_of_other_sources_are_not_counted():
    # The guest's console and kernel lines never count as events.
    rows = bench.parse("CHK BAD 3 a b\n[ 1.0] EV 1 kvz migrate RESET v1\nEV 1 ct migrate RESET v1\n")
    assert all(r["resets"] == 0 and r["chk_bad"] == 0 for r in rows.values())


@pytest.mark.parametrize("which", ["l1", "l2"])
def test_scripts_parse_as_busybox_sh(tmp_path, which):
    bb = shutil.which("busybox")
    if not bb:
        pytest.skip("busybox is not installed (busybox-static)")
    text = bench.l1_script(6, "kvz-vmm", "qemu") if which == "l1" else bench.L2_INIT
    assert "@" not in text.replace("2>/dev/null", "")   # every placeholder filled in
    path = tmp_path / f"{which}.sh"
    path.write_text(text)
    r = subprocess.run([bb, "sh", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
