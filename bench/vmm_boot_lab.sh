#!/bin/sh
# Boot time of a stock Linux kernel: kvz-vmm against qemu-system-x86_64
# -accel kvm, side by side in ONE nested-lab run (L1 = Debian's kernel under
# QEMU TCG with emulated SVM; both VMMs run inside L1 on its /dev/kvm).
# Both boot the same L2 kernel (/boot/vmlinuz-*) and initramfs, with the same
# vCPUs, memory and command line, alternately, REPS times each; the time is
# from the VMM's start to the L2 init's marker line, measured in L1
# (/proc/uptime, 10 ms), plus the time to the VMM's exit (init reboots).
# Prints medians and the kvz-vmm/QEMU ratio (lower is better for kvz-vmm).
# Absolute numbers are an emulator's: only the ratio means something.
# Usage: bench/vmm_boot_lab.sh [REPS]   (env: BUILD_DIR, default build;
#        CPUS (2), MEMORY (512M), KVMTOOL)
# kvmtool is a third column when KVMTOOL names a static lkvm binary (Debian
# 12 does not package kvmtool): `git clone` kvmtool's repository and `make
# lkvm-static` (19 s here; it needs only gcc and libc), then
# KVMTOOL=/path/to/lkvm-static bench/vmm_boot_lab.sh. It boots the same
# kernel and initramfs with --console serial --network mode=none.
# Other figures (disk, network) go in the same way: an L1 script calling
# `kvzlab-time LABEL MARKER CMD...` and kvzlab.parse_times()/compare().
set -eu
. "$(dirname "$0")/lib.sh"
REPS=${1:-5}
export REPS
export CPUS=${CPUS:-2} MEMORY=${MEMORY:-512M} KVMTOOL=${KVMTOOL:-}
exec /usr/bin/python3 - <<'PYEOF'
import os, sys
import kvzlab

reps, cpus, mem = int(os.environ["REPS"]), os.environ["CPUS"], os.environ["MEMORY"]
vmm = kvzlab.default_vmm()
kvzlab.bench_require("vmm_boot_lab", vmm)

MARKER = "KVZLAB-BENCH-INIT"
l2_init = f'echo "{MARKER}"\nreboot -f\n'
cmdline = "console=ttyS0 quiet panic=-1"
kvz = (f"kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz "
       f"--cpus {cpus} --memory {mem} --cmdline '{cmdline}'")
qemu = kvzlab.qemu_l2_command(smp=cpus, memory=mem, cmdline=cmdline)
kvmtool = os.environ["KVMTOOL"]
if kvmtool and not os.access(kvmtool, os.X_OK):
    sys.exit(f"vmm_boot_lab: KVMTOOL={kvmtool} is not an executable")
mem_mib = int(mem[:-1]) * (1024 if mem[-1] in "Gg" else 1) if mem[-1] in "MmGg" else int(mem)
lkvm = (f"lkvm run --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cpus {cpus} "
        f"--mem {mem_mib} --params '{cmdline}' --console serial --network mode=none")
# The host is left at Debian's defaults: both VMMs' anonymous RAM gets
# transparent huge pages (kvz-vmm asks with MADV_HUGEPAGE; its RAM was a
# memfd, whose shmem gets none by default, until issue 10).
lines = []
# Alternate the two so that drift in the emulator's speed hits both alike.
for i in range(reps):
    lines.append(f"kvzlab-time kvz-vmm {MARKER} {kvz} </dev/null")
    lines.append(f"kvzlab-time qemu {MARKER} {qemu} </dev/null")
    # RAM in a memfd (--memory-backing=memfd): what the default was
    lines.append(f"kvzlab-time kvz-memfd {MARKER} {kvz} --memory-backing memfd </dev/null")
    if kvmtool:
        lines.append(f"kvzlab-time kvmtool {MARKER} {lkvm} </dev/null")
lines.append("cat /sys/kernel/mm/transparent_hugepage/enabled /sys/kernel/mm/transparent_hugepage/defrag "
             "/sys/kernel/mm/transparent_hugepage/shmem_enabled | sed 's/^/THP: /'")
script = "\n".join(lines) + "\n"
res = kvzlab.run_in_lab(script, smp=int(cpus), timeout=120 + 170 * reps,
                        l2_init=l2_init, with_qemu=True,
                        files={kvmtool: "/bin/lkvm"} if kvmtool else None)
times = kvzlab.parse_times(res.output)
if res.exit_code != 0:
    print("\n".join(res.output.splitlines()[-30:]))
    print(f"vmm_boot_lab: lab script failed (exit {res.exit_code}"
          f"{', timed out' if res.timed_out else ''})", file=sys.stderr)
print(f"boot to init, {cpus} vCPUs, {mem}, {reps} runs each, "
      f"inside L1 (QEMU TCG + emulated SVM):")
r1 = kvzlab.compare(times, "kvz-vmm", "qemu")
r3 = kvzlab.compare(times, "kvz-vmm", "kvz-memfd")
if kvmtool:
    kvzlab.compare(times, "kvz-vmm", "kvmtool")
print("\n".join(l for l in res.output.splitlines() if l.startswith("THP: ")))
print("start to VMM exit (init runs reboot -f):")
r2 = kvzlab.compare(times, "kvz-vmm-exit", "qemu-exit")
if kvmtool:
    kvzlab.compare(times, "kvz-vmm-exit", "kvmtool-exit")
sys.exit(0 if res.exit_code == 0 and r1 is not None and r2 is not None else 1)
PYEOF
