"""Debian's stock kernel boots under kvz-vmm (issue 2), in the nested lab.

L1 (QEMU TCG, emulated SVM, 2 vCPUs) runs kvz-vmm with 2 vCPUs and 512 MiB;
the L2 init reports what the guest kernel saw and reboots, which must make
kvz-vmm exit 0."""

import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.environ.get(
    "KVZ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
    "lab"))
import kvzlab  # noqa: E402

L2_INIT = r"""
cpus=$(grep -c '^processor' /proc/cpuinfo)
mem=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
echo "L2-REPORT init-ran cpus=$cpus memtotal_kb=$mem"
reboot -f
"""


def _vmm():
    vmm = os.path.join(kvzlab.build_dir(), "src", "vmm", "kvz-vmm")
    if not os.path.exists(vmm):
        pytest.fail(f"kvz-vmm not built: {vmm}")
    return vmm


def test_stock_kernel_boots_with_2_cpus_and_512m():
    kvzlab.skip_unless_lab()
    script = kvzlab.vmm_script(
        ["--cpus", "2", "--memory", "512M",
         "--cmdline", "console=ttyS0 quiet panic=-1 printk.time=0"])
    res = kvzlab.run_in_lab(script, smp=2, timeout=480, l2_init=L2_INIT,
                            vmm=_vmm(), stream=sys.stdout)
    tail = "\n".join(res.output.splitlines()[-25:])
    assert not res.timed_out, f"lab timed out; last console lines:\n{tail}"
    m = re.search(r"^L2-REPORT init-ran cpus=(\d+) memtotal_kb=(\d+)",
                  res.output, re.M)
    assert m, f"L2 init never ran; last console lines:\n{tail}"
    cpus, mem_kb = int(m.group(1)), int(m.group(2))
    assert cpus == 2, f"guest saw {cpus} CPUs, expected 2"
    # 512 MiB minus what the kernel reserves for itself (about 60 MiB).
    assert 400 * 1024 <= mem_kb <= 512 * 1024, f"MemTotal {mem_kb} kB"
    assert res.exit_code == 0, \
        f"kvz-vmm exited {res.exit_code} after the guest rebooted:\n{tail}"
