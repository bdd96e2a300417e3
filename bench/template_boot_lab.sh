#!/bin/sh
# The debian VM template (issue 14): boot time from the VMM's start to the
# login prompt on the serial console, kvz-vmm booting directly (the kernel
# and initrd kvzd takes out of the disk) against qemu-system-x86_64 -accel
# kvm booting the same kernel, initrd and disk directly, side by side in ONE
# nested-lab run, alternately, REPS times each. A third column, kvz-vmm
# through SeaBIOS and the disk's boot loader, is printed as "not measured"
# until kvz-vmm has --firmware (the firmware work fills it in). Then, on
# the host, the time `kvz-ct vm-image` takes to make a template VM's disk
# from the cached template (what kvz create vm --template costs; goal
# under 10 s), against a plain sparse copy of the cached layer (the floor).
# Absolute lab numbers are an emulator's: only ratios mean something.
# Usage: bench/template_boot_lab.sh [REPS]   (env: BUILD_DIR, default build)
set -eu
. "$(dirname "$0")/lib.sh"
REPS=${1:-3}
export REPS
exec /usr/bin/python3 - <<'PYEOF'
import os, shutil, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.environ["KVZ_SOURCE_DIR"], "lab"))
sys.path.insert(0, os.path.join(os.environ["KVZ_SOURCE_DIR"], "tests", "lab"))
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
    cmdline = "console=ttyS0 root=/dev/vda1 ro net.ifnames=0"
    kvz = (f"kvz-vmm --kernel /tmpl/vmlinuz --initrd /tmpl/initrd.img --cmdline '{cmdline}' "
           "--memory 512M --cpus 1 --disk /dev/vda --rng --seccomp off")
    qemu = ("qemu-system-x86_64 -L " + kvzlab.QEMU_DATA_L1 + " -accel kvm -cpu host -smp 1 "
            "-m 512M -nodefaults -display none -serial stdio -no-reboot "
            f"-kernel /tmpl/vmlinuz -initrd /tmpl/initrd.img -append '{cmdline}' "
            "-drive file=/dev/vda,if=virtio,format=raw -device virtio-rng-pci")
    lines = ["set -u"]
    for i in range(reps):
        # The same disk (L1's /dev/vda) for both, alternately: each boot finds
        # the journal the previous one left when it was killed at the prompt.
        for label, cmd in (("kvz-direct", kvz), ("qemu-direct", qemu)):
            # The getty's "web login: " has no line end for read(1) to see:
            # the /etc/issue line just before it is the marker.
            lines.append(f"( {cmd} </dev/null & echo $! > /tmp/pid; wait ) | "
                         f"kvzlab-time {label} '{MARKER}' sh -c 'while IFS= read -r l; do echo \"$l\"; "
                         f"case \"$l\" in *\"{MARKER}\"*) kill $(cat /tmp/pid); break;; esac; done'")
    script = "\n".join(lines) + "\n"
    res = kvzlab.run_in_lab(script, files={kernel: "/tmpl/vmlinuz", initrd: "/tmpl/initrd.img"},
                            smp=2, timeout=180 + 240 * reps, with_qemu=True,
                            l1_modules=["virtio_pci", "virtio_blk"],
                            extra_qemu_args=["-drive", f"file={img},if=virtio,format=raw,snapshot=on"])
finally:
    shutil.rmtree(work, ignore_errors=True)
times = kvzlab.parse_times(res.output)
if res.exit_code != 0:
    print("\n".join(res.output.splitlines()[-30:]))
print(f"boot to the login prompt, 1 vCPU, 512M, {reps} runs each, inside L1 (QEMU TCG + SVM):")
r = kvzlab.compare(times, "kvz-direct", "qemu-direct")
print(f"{'kvz-seabios':>16}: not measured (kvz-vmm --firmware: the firmware work)")
if r is not None:
    print(f"{'goal':>16}: kvz direct <= 0.5 x QEMU: {'met' if r <= 0.5 else 'not met'}")
sys.exit(0 if res.exit_code == 0 and r is not None else 1)
PYEOF
