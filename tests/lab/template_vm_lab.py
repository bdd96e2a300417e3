"""The debian VM template booted for real in the nested lab (issue 14 §1).

The host makes the VM's disk with `kvz-ct vm-image` (the template cache needs
Debian's archive, which only the host reaches) and takes the kernel and
initrd out of the image itself with debugfs, as kvzd does at a start. L1
gets the disk as a virtio drive of its QEMU (snapshot=on: the host's file
stays as it was; ~400 MB would not fit L1's RAM as a file) and runs
kvz-vmm on /dev/vda with a TAP on a bridge. The serial console is a FIFO
the script types into. Checked, in one L1 boot:

  boot 1  a login prompt on ttyS0 (the seconds it took are printed),
          root logs in with the password from the file, the hostname is
          the one given, eth0 has the static address, L1 pings it, and
          (when the host has an ssh client to copy in) L1 logs in with the
          given key; then `reboot` in the guest ends kvz-vmm (exit 0,
          "Restarting") and L1 starts it again, as kvzd does for a reset
  boot 2  the login prompt again, then `poweroff` ends kvz-vmm (exit 0,
          "Power down")
  boot 3  (firmware=True) firmware: kvz-vmm --firmware bios (Debian's SeaBIOS) on the same
          disk, no kernel given: SeaBIOS -> the disk's GRUB -> /vmlinuz with
          its grub.cfg's command line (printed from the kernel's
          "Command line:"), the login prompt, root logs in, `poweroff`
          ends kvz-vmm

Also used by bench/template_boot_lab.sh (timing lines KVZLAB-TIME)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from labpaths import BUILD_DIR, SOURCE_DIR, kvzlab

KVZ_CT = os.path.join(BUILD_DIR, "src", "ct", "kvz-ct")
GUEST_IP = "10.10.0.50"
PASSWORD = "kvz-lab-secret"
LOGIN_LIMIT = 240   # L1 seconds to a login prompt
FS = "?offset=1048576"
SEABIOS = "/usr/share/seabios/bios-256k.bin"   # kvz-vmm --firmware bios


def image_cmdline():
    """The kernel command line the image's grub.cfg holds and kvzd's direct
    boot passes (VM_IMAGE_CMDLINE in src/ct/vm_image.h, made of string
    literals and the macros of src/common/vm_cmdline.h): every direct boot
    here and in the benches uses it, so that each way of booting the disk
    boots the same kernel the same way."""
    text = ""
    for path in (("src", "common", "vm_cmdline.h"), ("src", "ct", "vm_image.h")):
        with open(os.path.join(SOURCE_DIR, *path)) as f:
            text += f.read()
    macros = dict(re.findall(r"^#define (\w+) (.+)$", text, re.M))
    if "VM_IMAGE_CMDLINE" not in macros:
        raise RuntimeError("VM_IMAGE_CMDLINE not found in src/ct/vm_image.h")
    parts = re.findall(r'"([^"]*)"|(\w+)', macros["VM_IMAGE_CMDLINE"])
    return "".join(lit or re.fullmatch(r'"([^"]*)"', macros[name].strip()).group(1)
                   for lit, name in parts)


CMDLINE = image_cmdline()

L1_SCRIPT = r"""
set -u
ip link set lo up
ip link add br0 type bridge && ip addr add 10.10.0.1/24 dev br0 && ip link set br0 up
mkfifo /tmp/in
exec 3<>/tmp/in
CMDLINE="__CMDLINE__"
# start_vm [firmware]: the kernel and initrd kvzd takes out of the disk, or
# SeaBIOS booting the disk's own GRUB
start_vm() {
  : > /tmp/con
  T0=$(cut -d' ' -f1 /proc/uptime)
  if [ "${1:-}" = firmware ]; then set -- --firmware bios
  else set -- --kernel /tmpl/vmlinuz --initrd /tmpl/initrd.img --cmdline "$CMDLINE"; fi
  kvz-vmm "$@" \
    --memory 512M --cpus 1 --disk /dev/vda --net tap=tap0,bridge=br0 \
    --rng --qmp /tmp/q.sock --seccomp off < /tmp/in > /tmp/con 2>&1 &
  VMPID=$!
}
# waitfor PATTERN SECONDS: until the console shows PATTERN (grep -E)
waitfor() { i=0; while ! grep -qE "$1" /tmp/con; do
  i=$((i+1)); [ $i -gt $(($2 * 5)) ] && { echo "L1-TIMEOUT waiting for $1"; tail -c 3000 /tmp/con; return 1; }
  kill -0 $VMPID 2>/dev/null || { echo "L1-VMM-EXITED waiting for $1"; tail -c 3000 /tmp/con; return 1; }
  sleep 0.2; done; }
say() { printf '%s\r' "$1" >&3; }
login() {
  waitfor 'login: ?$|login:' __LIMIT__ || return 1
  T1=$(cut -d' ' -f1 /proc/uptime)
  echo "KVZLAB-TIME login-prompt-$1 $(awk "BEGIN {print $T1 - $T0}")"
  sleep 1; say root
  waitfor 'Password:' 30 || return 1
  sleep 0.5; say __PASSWORD__
  waitfor 'root@[a-z0-9-]*:~#' 60 || return 1
}
ended() { # PATTERN: kvz-vmm exits 0 and the console shows PATTERN
  i=0; while kill -0 $VMPID 2>/dev/null; do i=$((i+1)); [ $i -gt 300 ] && { echo "L1-VMM-HUNG"; kill -9 $VMPID; return 1; }; sleep 0.2; done
  wait $VMPID; rc=$?
  grep -q "$1" /tmp/con && echo "L1-ENDED-$1 rc=$rc" || { echo "L1-NO-$1 rc=$rc"; tail -c 2000 /tmp/con; }
}
start_vm
login 1 || exit 1
say 'echo "GUEST-HOST=$(hostname) GUEST-ADDR=$(ip -4 -o addr show eth0 | awk "{print \$4}")"'
waitfor 'GUEST-HOST=[a-z]' 20 || exit 1
grep -o 'GUEST-HOST=[^ ]* GUEST-ADDR=[^ ]*' /tmp/con | tail -1
i=0; until ping -c 1 -W 2 __IP__ >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 20 ] && break; done
ping -c 2 -W 3 __IP__ >/dev/null 2>&1 && echo "L1-PING-OK" || echo "L1-PING-FAIL"
if [ -x /bin/ssh ]; then
  out=$(timeout 60 ssh -i /tmpl/userkey -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null root@__IP__ 'echo SSH-HOST=$(hostname)' 2>/tmp/ssh.err)
  echo "L1-SSH $out"; [ -n "$out" ] || tail -3 /tmp/ssh.err
else
  echo "L1-SSH unavailable"
fi
say reboot
ended Restarting
start_vm
login 2 || exit 1
say poweroff
ended 'Power down'
__FIRMWARE__
exit 0
"""

# Boot 3, when asked for (about 3.5 more minutes of lab time).
FIRMWARE_BOOT = r"""
start_vm firmware
login firmware || exit 1
tr -d '\r' < /tmp/con | grep -a -o 'Command line: .*' | head -1 | sed 's/^/L1-FW-/'
say poweroff
ended 'Power down'
"""


def ldd_libs(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/"):
                libs.append(p)
    return libs


def build_image(workdir, hostname="web"):
    """The template VM's disk, kernel and initrd, made the way kvzd makes
    them. Returns (image, kernel, initrd, userkey) or a reason to skip."""
    if os.geteuid() != 0:
        return "needs root (the VM layer is built in a chroot)"
    if not os.path.exists(SEABIOS):
        return f"{SEABIOS} missing (Debian's seabios): the firmware boot needs it"
    if not os.path.exists(KVZ_CT):
        return f"{KVZ_CT} not built"
    for tool in ("debugfs", "mkfs.ext4", "resize2fs", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} missing (e2fsprogs, openssh-client)"
    key = os.path.join(workdir, "userkey")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    pw = os.path.join(workdir, "pw")
    with open(pw, "w") as f:
        f.write(PASSWORD + "\n")
    img = os.path.join(workdir, "disk.img")
    r = subprocess.run([KVZ_CT, "vm-image", "--out", img, "--size", "2G", "--hostname",
                        hostname, "--ip", f"{GUEST_IP}/24", "--gw", "10.10.0.1",
                        "--ssh-key", key + ".pub", "--root-password-file", pw],
                       capture_output=True, text=True)
    if r.returncode:
        return f"kvz-ct vm-image failed: {r.stderr.strip()}"
    names = subprocess.run(["debugfs", "-R", "ls /boot", img + FS], capture_output=True,
                           text=True).stdout.split()
    ver = sorted(n[len("vmlinuz-"):] for n in names if n.startswith("vmlinuz-"))[-1]
    kernel, initrd = os.path.join(workdir, "vmlinuz"), os.path.join(workdir, "initrd.img")
    for src, dst in ((f"/boot/vmlinuz-{ver}", kernel), (f"/boot/initrd.img-{ver}", initrd)):
        subprocess.run(["debugfs", "-R", f"dump {src} {dst}", img + FS], check=True,
                       capture_output=True)
    return img, kernel, initrd, key


def run(stream=None, timeout=540, firmware=True):
    """Builds the image and runs the L1 script; (LabResult, skip reason).
    firmware: also boot 3, through SeaBIOS and the disk's GRUB."""
    workdir = tempfile.mkdtemp(prefix="kvz-tmpl-lab-", dir=kvzlab.out_dir())
    try:
        built = build_image(workdir)
        if isinstance(built, str):
            return None, built
        img, kernel, initrd, key = built
        files = {kernel: "/tmpl/vmlinuz", initrd: "/tmpl/initrd.img", key: "/tmpl/userkey"}
        if os.path.exists(SEABIOS):
            files[SEABIOS] = SEABIOS
        ssh = shutil.which("ssh")
        if ssh:
            files[ssh] = "/bin/ssh"
            for lib in ldd_libs(ssh):
                files[lib] = lib
            passwd = os.path.join(workdir, "passwd")
            with open(passwd, "w") as f:
                f.write("root:x:0:0:root:/root:/bin/sh\n")
            files[passwd] = "/etc/passwd"
        script = (L1_SCRIPT.replace("__LIMIT__", str(LOGIN_LIMIT))
                  .replace("__PASSWORD__", PASSWORD).replace("__IP__", GUEST_IP)
                  .replace("__CMDLINE__", CMDLINE)
                  .replace("__FIRMWARE__", FIRMWARE_BOOT if firmware else ""))
        res = kvzlab.run_in_lab(
            script, files=files, smp=2, timeout=timeout, stream=stream,
            l1_modules=["virtio_pci", "virtio_blk", "tun", "bridge"],
            extra_qemu_args=["-drive", f"file={img},if=virtio,format=raw,snapshot=on"])
        return res, None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    res, why = run(stream=sys.stdout)
    if why:
        sys.exit(f"template_vm_lab: {why}")
    print(f"LAB-EXIT: {res.exit_code}")
