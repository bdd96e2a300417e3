#!/bin/sh
# Firmware boot time: Debian's kernel from an MBR disk image with GRUB
# (tests/lab/firmware_images.py), SeaBIOS -> GRUB -> kernel -> the initrd's
# marker, under kvz-vmm --firmware bios and under qemu-system-x86_64
# -accel kvm with its SeaBIOS (same bios-256k.bin, same virtio disk), plus
# kvz-vmm's direct kernel boot of the same kernel and initrd; side by side
# in ONE nested-lab run, alternately, REPS times each. Time from the VMM's
# start to the marker, measured in L1. Prints medians and the ratios
# (goal: kvz+SeaBIOS <= 0.8x QEMU+SeaBIOS). Only ratios mean something.
# Usage: bench/firmware_boot_lab.sh [REPS]   (env: BUILD_DIR, default build;
#        MEMORY (512M))
set -eu
. "$(dirname "$0")/lib.sh"
REPS=${1:-3}
export REPS
export MEMORY=${MEMORY:-512M}
exec /usr/bin/python3 - <<'PYEOF'
import os, sys, tempfile
import kvzlab
import firmware_images

SEABIOS = "/usr/share/seabios/bios-256k.bin"
reps, mem = int(os.environ["REPS"]), os.environ["MEMORY"]
kvzlab.bench_require("firmware_boot_lab", kvzlab.default_vmm(), SEABIOS)
why = firmware_images.missing()
if why:
    sys.exit(f"firmware_boot_lab: {why}")

MARKER = "KVZLAB-BENCH-FW"
l2_init = f'echo "{MARKER}"\npoweroff -f\n'
cmdline = "console=ttyS0 quiet panic=-1"
kernel = kvzlab.lab_kernel()
initrd = kvzlab.build_l2_initrd(l2_init)
tmp = tempfile.mkdtemp(prefix="kvz-fw-bench-")
disk = firmware_images.disk_image(os.path.join(tmp, "disk.img"), kernel, initrd, cmdline)

kvz_fw = f"kvz-vmm --firmware bios --disk /disk.img --memory {mem}"
kvz_direct = (f"kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --memory {mem} "
              f"--cmdline '{cmdline}'")
qemu_fw = ("qemu-system-x86_64 -L " + kvzlab.QEMU_DATA_L1 + " -accel kvm -cpu host"
           f" -m {mem} -nodefaults -display none -serial stdio -no-reboot"
           " -drive file=/disk.img,if=virtio,format=raw")
lines = []
for i in range(reps):   # alternate: drift in the emulator's speed hits all alike
    lines.append(f"kvzlab-time kvz-seabios {MARKER} {kvz_fw} </dev/null")
    lines.append(f"kvzlab-time qemu-seabios {MARKER} {qemu_fw} </dev/null")
    lines.append(f"kvzlab-time kvz-direct {MARKER} {kvz_direct} </dev/null")
res = kvzlab.run_in_lab("\n".join(lines) + "\n", smp=1, timeout=120 + 150 * reps,
                        l2_init=l2_init, with_qemu=True,
                        files={disk: "/disk.img", SEABIOS: SEABIOS})
os.unlink(disk)
os.rmdir(tmp)
times = kvzlab.parse_times(res.output)
if res.exit_code != 0:
    print("\n".join(res.output.splitlines()[-30:]))
    print(f"firmware_boot_lab: lab script failed (exit {res.exit_code}"
          f"{', timed out' if res.timed_out else ''})", file=sys.stderr)
print(f"start to the initrd's marker, 1 vCPU, {mem}, {reps} runs each, inside L1 "
      "(QEMU TCG + emulated SVM):")
r1 = kvzlab.compare(times, "kvz-seabios", "qemu-seabios")
r2 = kvzlab.compare(times, "kvz-direct", "qemu-seabios")
r3 = kvzlab.compare(times, "kvz-direct", "kvz-seabios")
sys.exit(0 if res.exit_code == 0 and None not in (r1, r2, r3) else 1)
PYEOF
