#!/bin/sh
# The debian VM template (issue 14): boot time from the VMM's start to the
# login prompt on the serial console, in ONE nested-lab run, alternately,
# REPS times each, on the same template disk:
#   kvz-direct    kvz-vmm booting directly (the kernel and initrd kvzd
#                 takes out of the disk)
#   qemu-direct   qemu-system-x86_64 -accel kvm, the same kernel, initrd, disk
#   kvz-seabios   kvz-vmm --firmware /usr/share/seabios/bios-256k.bin: SeaBIOS
#                 -> the disk's GRUB -> its /vmlinuz
#   qemu-seabios  qemu-system-x86_64 -accel kvm on the disk alone (its own
#                 SeaBIOS, no -kernel)
# Ratios printed: kvz direct / QEMU SeaBIOS (goal <= 0.5) and kvz SeaBIOS /
# QEMU SeaBIOS (goal <= 0.8), with kvz direct / QEMU direct besides. Then,
# on the host, the time `kvz-ct vm-image` takes to make a template VM's disk
# from the cached template (what kvz create vm --template costs; goal
# under 10 s), against a plain sparse copy of the cached layer (the floor).
# All four boot the kernel with the same command line: the one the disk's
# grub.cfg holds and kvzd's direct boot passes, VM_IMAGE_CMDLINE in
# src/ct/vm_image.h (template_vm_lab.CMDLINE reads it; printed below).
# Absolute lab numbers are an emulator's: only ratios mean something.
# Usage: bench/template_boot_lab.sh [REPS]   (env: BUILD_DIR, default build;
#        OLD_VMM=PATH adds kvz-direct-old and kvz-seabios-old: another
#        kvz-vmm build, e.g. the one before a change, in the same rounds;
#        VMS="kvz-direct qemu-seabios ...": only those, for a short run)
set -eu
. "$(dirname "$0")/lib.sh"
REPS=${1:-3}
export REPS
exec /usr/bin/python3 - <<'PYEOF'
import os, shutil, statistics, subprocess, sys, tempfile, time
import kvzlab
import template_vm_lab as t

reps = int(os.environ["REPS"])
kvzlab.bench_require("template_boot_lab", kvzlab.default_vmm(), t.KVZ_CT)

# ---- creation on the host, cached template ----
work = tempfile.mkdtemp(prefix="kvz-tmpl-bench-", dir=kvzlab.out_dir())
try:
    built = t.build_image(work)   # also makes sure the layer is cached
    if isinstance(built, str):
        sys.exit(f"template_boot_lab: {built}")
    img, kernel, initrd, key = built
    layer = os.path.join(os.environ.get("KVZ_CT_CACHE", "/var/lib/kvz/cache"), "debian-vm.img")
    made, copied = [], []
    for i in range(reps):
        out = os.path.join(work, f"c{i}.img")
        t0 = time.monotonic()
        subprocess.run([t.KVZ_CT, "vm-image", "--out", out, "--size", "4G", "--hostname",
                        f"b{i}", "--ssh-key", key + ".pub"], check=True, capture_output=True)
        made.append(time.monotonic() - t0)
        os.unlink(out)
        t0 = time.monotonic()
        subprocess.run(["cp", "--sparse=always", layer, out], check=True)
        copied.append(time.monotonic() - t0)
        os.unlink(out)
    mm, mc = statistics.median(made), statistics.median(copied)
    print(f"template VM disk, cached template, {reps} runs (host):")
    print(f"{'kvz-ct vm-image':>16}: median {mm:7.2f} s  runs {' '.join(f'{x:.2f}' for x in made)}")
    print(f"{'cp --sparse':>16}: median {mc:7.2f} s  runs {' '.join(f'{x:.2f}' for x in copied)}")
    print(f"{'ratio':>16}: vm-image/cp = {mm / mc:.2f}; goal 10 s: {mm / 10:.2f} of it")

    # ---- boot to the login prompt in the lab ----
    MARKER = "Debian GNU/Linux 12"
    cmdline = t.CMDLINE   # the disk's grub.cfg has the same line
    kvz = (f"kvz-vmm --kernel /tmpl/vmlinuz --initrd /tmpl/initrd.img --cmdline '{cmdline}' "
           "--memory 512M --cpus 1 --disk /dev/vda --rng --seccomp off")
    kvz_fw = (f"kvz-vmm --firmware {t.SEABIOS} "
              "--memory 512M --cpus 1 --disk /dev/vda --rng --seccomp off")
    qemu_base = ("qemu-system-x86_64 -L " + kvzlab.QEMU_DATA_L1 + " -accel kvm -cpu host -smp 1 "
                 "-m 512M -nodefaults -display none -serial stdio -no-reboot "
                 "-drive file=/dev/vda,if=virtio,format=raw -device virtio-rng-pci")
    qemu = (qemu_base + f" -kernel /tmpl/vmlinuz -initrd /tmpl/initrd.img -append '{cmdline}'")
    # QEMU's SeaBIOS is the bios-256k.bin kvzlab copies into QEMU_DATA_L1.
    qemu_fw = qemu_base
    runs = [("kvz-direct", kvz), ("qemu-direct", qemu), ("kvz-seabios", kvz_fw),
            ("qemu-seabios", qemu_fw)]
    files = {kernel: "/tmpl/vmlinuz", initrd: "/tmpl/initrd.img", t.SEABIOS: t.SEABIOS}
    old = os.environ.get("OLD_VMM")
    if old:
        files[old] = "/bin/kvz-vmm-old"
        runs += [("kvz-direct-old", kvz.replace("kvz-vmm ", "kvz-vmm-old ", 1)),
                 ("kvz-seabios-old", kvz_fw.replace("kvz-vmm ", "kvz-vmm-old ", 1))]
    if os.environ.get("VMS"):
        want = os.environ["VMS"].split()
        unknown = set(want) - {label for label, _ in runs}
        if unknown:
            sys.exit(f"template_boot_lab: unknown VM {' '.join(sorted(unknown))}")
        runs = [r for r in runs if r[0] in want]
    print(f"kernel command line of every boot: {cmdline}")
    lines = ["set -u"]
    for i in range(reps):
        # The same disk (L1's /dev/vda) for both, alternately: each boot finds
        # the journal the previous one left when it was killed at the prompt.
        for label, cmd in runs:
            # The getty's "web login: " has no line end for read(1) to see:
            # the /etc/issue line just before it is the marker.
            lines.append(f"( {cmd} </dev/null & echo $! > /tmp/pid; wait ) | "
                         f"kvzlab-time {label} '{MARKER}' sh -c 'while IFS= read -r l; do echo \"$l\"; "
                         f"case \"$l\" in *\"{MARKER}\"*) kill $(cat /tmp/pid); break;; esac; done'")
    script = "\n".join(lines) + "\n"
    # STREAM=FILE: the whole L1 console there as it comes (a long run's
    # evidence survives an interrupted bench).
    stream = open(os.environ["STREAM"], "w") if os.environ.get("STREAM") else None
    res = kvzlab.run_in_lab(script, files=files, stream=stream,
                            smp=2, timeout=180 + 120 * len(runs) * reps, with_qemu=True,
                            l1_modules=["virtio_pci", "virtio_blk"],
                            extra_qemu_args=["-drive", f"file={img},if=virtio,format=raw,snapshot=on"])
finally:
    shutil.rmtree(work, ignore_errors=True)
times = kvzlab.parse_times(res.output)
if res.exit_code != 0:
    print("\n".join(res.output.splitlines()[-30:]))
print(f"boot to the login prompt, 1 vCPU, 512M, {reps} runs each, inside L1 (QEMU TCG + SVM):")
kvzlab.compare(times, "kvz-direct", "qemu-direct")
if "kvz-direct-old" in times:
    kvzlab.compare(times, "kvz-direct", "kvz-direct-old")
    kvzlab.compare(times, "kvz-seabios", "kvz-seabios-old")
    kvzlab.compare(times, "kvz-direct-old", "qemu-seabios")
    kvzlab.compare(times, "kvz-seabios-old", "qemu-seabios")
r_direct = kvzlab.compare(times, "kvz-direct", "qemu-seabios")
r_fw = kvzlab.compare(times, "kvz-seabios", "qemu-seabios")
for what, r, goal in (("kvz direct <= 0.5 x QEMU SeaBIOS", r_direct, 0.5),
                      ("kvz SeaBIOS <= 0.8 x QEMU SeaBIOS", r_fw, 0.8)):
    if r is not None:
        print(f"{'goal':>16}: {what}: {r:.2f}, {'met' if r <= goal else 'not met'}")
sys.exit(0 if res.exit_code == 0 and None not in (r_direct, r_fw) else 1)
PYEOF
