#!/bin/sh
# Where the template VM's boot time goes (issue 14's boot goals), in ONE
# nested-lab run: the template disk booted once each as kvz-seabios,
# qemu-seabios, kvz-direct and qemu-direct (the VMs and command lines of
# bench/template_boot_lab.sh). For each:
#   - the serial console, every line stamped with L1's seconds since the
#     VMM started (SeaBIOS's and GRUB's lines, then the kernel's, whose own
#     stamps count from the kernel's start);
#   - L1's KVM exits of the VM counted by L1's kernel (tracefs hist
#     triggers on kvm:kvm_exit by SVM exit code, kvm:kvm_pio by port,
#     kvm:kvm_mmio by address, kvm:kvm_userspace_exit by reason), the same
#     counters for kvz-vmm and QEMU, snapshotted when "Linux version"
#     appears (firmware + boot loader + the kernel's decompression) and at
#     the login prompt's /etc/issue line (the whole boot).
# Tracing costs time of its own: read the times here as phases of one boot,
# and compare VMMs with bench/template_boot_lab.sh.
# Usage: bench/boot_profile_lab.sh [VM...]   (default: all four; env BUILD_DIR;
#        OLD_VMM=PATH adds kvz-direct-old and kvz-seabios-old: another
#        kvz-vmm build, e.g. the one before a change, in the same run)
set -eu
. "$(dirname "$0")/lib.sh"
export VMS="${*:-kvz-seabios qemu-seabios kvz-direct qemu-direct}"
exec /usr/bin/python3 - <<'PYEOF'
import os, shutil, sys, tempfile
import kvzlab
import template_vm_lab as t

vms = os.environ["VMS"].split()
kvzlab.bench_require("boot_profile_lab", kvzlab.default_vmm(), t.KVZ_CT)
MARKER = "Debian GNU/Linux 12"
cmdline = t.CMDLINE   # the disk's grub.cfg has the same line
qemu_base = ("qemu-system-x86_64 -L " + kvzlab.QEMU_DATA_L1 + " -accel kvm -cpu host -smp 1 "
             "-m 512M -nodefaults -display none -serial stdio -no-reboot "
             "-drive file=/dev/vda,if=virtio,format=raw -device virtio-rng-pci")
commands = {
    "kvz-direct": (f"kvz-vmm --kernel /tmpl/vmlinuz --initrd /tmpl/initrd.img --cmdline '{cmdline}' "
                   "--memory 512M --cpus 1 --disk /dev/vda --rng --seccomp off"),
    "qemu-direct": qemu_base + f" -kernel /tmpl/vmlinuz -initrd /tmpl/initrd.img -append '{cmdline}'",
    "kvz-seabios": (f"kvz-vmm --firmware {t.SEABIOS} "
                    "--memory 512M --cpus 1 --disk /dev/vda --rng --seccomp off"),
    "qemu-seabios": qemu_base,
}
old = os.environ.get("OLD_VMM")
files = {}
if old:
    files[old] = "/bin/kvz-vmm-old"
    for v in ("kvz-direct", "kvz-seabios"):
        commands[v + "-old"] = commands[v].replace("kvz-vmm ", "kvz-vmm-old ", 1)
for v in vms:
    if v not in commands:
        sys.exit(f"boot_profile_lab: unknown VM {v} (one of {' '.join(commands)})")

PROLOGUE = r"""
set -u
T=/sys/kernel/tracing
mount -t tracefs nodev $T 2>/dev/null
[ -e $T/events/kvm/kvm_exit/trigger ] || { echo "PROFILE: no kvm trace events in L1"; exit 1; }
HISTS="kvm_exit:exit_reason kvm_pio:port,rw kvm_mmio:type,gpa kvm_userspace_exit:reason"
# hist on|off: the counters start from zero with on
hist() { for h in $HISTS; do ev=${h%%:*}; spec="hist:keys=${h#*:}:sort=hitcount.descending:size=2048"
  [ "$1" = off ] && spec="!$spec"; echo "$spec" > $T/events/kvm/$ev/trigger; done; }
# boot VM CMD: console lines stamped with L1 seconds since the start
boot() { vm=$1; shift; hist on; t0=$(cut -d' ' -f1 /proc/uptime)
  ( eval "exec $* </dev/null 2>&1" & echo $! > /tmp/pid; wait ) | awk -v t0="$t0" -v vm="$vm" -v m="$MARKER" '
    { gsub(/\r/, ""); gsub(/\033\[[0-9;?]*[A-Za-z]/, "")
      getline u < "/proc/uptime"; close("/proc/uptime"); split(u, a, " ")
      printf "CON %s %8.2f| %s\n", vm, a[1] - t0, $0; fflush()
      if (!seen && index($0, "Linux version")) { seen = 1; system("sh /bin/snap " vm " loaded") }
      if (index($0, m)) { printf "PROFILE %s login %.2f\n", vm, a[1] - t0; fflush()
        system("sh /bin/snap " vm " login; kill $(cat /tmp/pid)"); exit } }'
  sleep 1; hist off; }
"""
work = tempfile.mkdtemp(prefix="kvz-profile-", dir=kvzlab.out_dir())
try:
    built = t.build_image(work)
    if isinstance(built, str):
        sys.exit(f"boot_profile_lab: {built}")
    img, kernel, initrd, _ = built
    # /bin/snap VM PHASE: the counters so far (awk's system() runs a new
    # sh: a script, not a function of the L1 script).
    snap = os.path.join(work, "snap")
    with open(snap, "w") as f:
        f.write("#!/bin/sh\nT=/sys/kernel/tracing\n"
                "for ev in kvm_exit kvm_pio kvm_mmio kvm_userspace_exit; do\n"
                "  grep -v '^#' $T/events/kvm/$ev/hist | grep -v '^$' | head -24 |"
                " sed \"s/^/PROFILE $1 $2 $ev: /\"\ndone\n")
    os.chmod(snap, 0o755)
    lines = [PROLOGUE, f"MARKER='{MARKER}'"]
    lines += [f"boot {v} \"{commands[v]}\"" for v in vms]
    files.update({kernel: "/tmpl/vmlinuz", initrd: "/tmpl/initrd.img",
                  t.SEABIOS: t.SEABIOS, snap: "/bin/snap"})
    # STREAM=FILE: the whole L1 console there as it comes (a long run's
    # evidence survives an interrupted bench).
    stream = open(os.environ["STREAM"], "w") if os.environ.get("STREAM") else None
    res = kvzlab.run_in_lab("\n".join(lines) + "\n", files=files, stream=stream,
                            smp=2, timeout=120 + 420 * len(vms), with_qemu=True,
                            l1_modules=["virtio_pci", "virtio_blk"],
                            extra_qemu_args=["-drive", f"file={img},if=virtio,format=raw,snapshot=on"])
finally:
    shutil.rmtree(work, ignore_errors=True)
for line in res.output.splitlines():
    if line.startswith(("CON ", "PROFILE")):
        print(line)
if res.exit_code != 0:
    print("\n".join(res.output.splitlines()[-30:]))
sys.exit(0 if res.exit_code == 0 else 1)
PYEOF
