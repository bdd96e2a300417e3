"""Debian's stock kernel boots under kvz-vmm (issue 2), in the nested lab.

Through lab/run-vmm.sh (the contract's entry point): L1 (QEMU TCG, emulated
SVM, 2 vCPUs) runs kvz-vmm with 2 vCPUs and 512 MiB; the L2 init reports
what the guest kernel saw and then reboots (the FADT's reset register) or
powers off (ACPI S5 through the PM1 control register), or, with reboot=t,
resets by a triple fault; each must make kvz-vmm exit 0 and run-vmm.sh end
with "LAB-EXIT: 0". The triple fault must also be seen by the lab's own
evidence of one (kvzlab's KVZLAB-L2-SHUTDOWN report from L1's KVM trace),
which is what lets lab runs tell an L2 that died that way from other
failures."""

import os
import re
import subprocess

import pytest

from labpaths import SOURCE_DIR, kvzlab

L2_INIT = r"""
cpus=$(grep -c '^processor' /proc/cpuinfo)
mem=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
echo "L2-REPORT init-ran cpus=$cpus memtotal_kb=$mem"
{final}
"""


@pytest.mark.parametrize("final,cmdline", [
    ("reboot -f", ""), ("poweroff -f", ""), ("reboot -f", " reboot=t")])
def test_stock_kernel_boots_with_2_cpus_and_512m(tmp_path, final, cmdline):
    kvzlab.skip_unless_lab()
    vmm = kvzlab.default_vmm()
    if not os.path.exists(vmm):
        pytest.fail(f"kvz-vmm not built: {vmm}")
    init = tmp_path / "l2-init"
    init.write_text(L2_INIT.replace("{final}", final))
    cmd = [os.path.join(SOURCE_DIR, "lab", "run-vmm.sh"), "--smp", "2",
           "--l2-init", str(init), "--timeout", "240"]
    if cmdline:     # on purpose: L1's report of it is no reason to rerun
        cmd.append("--l2-triple-fault-expected")
    cmd += ["--",
           "--cpus", "2", "--memory", "512M",
           "--cmdline", "console=ttyS0 quiet panic=-1 printk.time=0" + cmdline]
    # The lab lock may make this wait for other lab runs first.
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1700)
    lines = r.stdout.splitlines()
    tail = "\n".join(lines[-25:]) + "\n" + r.stderr[-2000:]
    assert "timed out" not in r.stderr, f"lab timed out:\n{tail}"
    m = re.search(r"^L2-REPORT init-ran cpus=(\d+) memtotal_kb=(\d+)",
                  r.stdout, re.M)
    assert m, f"L2 init never ran; last console lines:\n{tail}"
    cpus, mem_kb = int(m.group(1)), int(m.group(2))
    assert cpus == 2, f"guest saw {cpus} CPUs, expected 2"
    # 512 MiB minus what the kernel keeps for itself (about 45 MiB).
    assert 400 * 1024 <= mem_kb <= 512 * 1024, f"MemTotal {mem_kb} kB"
    assert lines and lines[-1] == "LAB-EXIT: 0", \
        f"kvz-vmm did not exit 0 after the guest ran {final!r}:\n{tail}"
    assert r.returncode == 0, f"run-vmm.sh exited {r.returncode}:\n{tail}"
    shutdown = kvzlab.L2_SHUTDOWN_MARKER in r.stdout
    assert shutdown == bool(cmdline), \
        f"L1's report of an L2 triple fault: {shutdown}, expected {bool(cmdline)}"
    if cmdline:
        assert "guest triple fault" in r.stdout + r.stderr, tail
