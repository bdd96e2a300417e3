"""Firmware boot of Debian's kernel in the nested lab: a disk image with an
MBR partition table, GRUB and an ext2 partition (made on the host by
tests/lab/firmware_images.py from Debian's grub-pc-bin) boots through
SeaBIOS -> GRUB -> the kernel under kvz-vmm --firmware bios, with SeaBIOS,
GRUB and the kernel all on the serial console; the initrd prints a
marker; QMP system_reset re-enters SeaBIOS and the marker appears again.
Then an ISO made by grub-mkrescue boots from --cdrom (virtio-scsi, El
Torito) the same way, and its initrd mounts the CD (Linux's sr driver) and
prints a file from it. One L1 boot."""
import os
import sys

import pytest

import firmware_images
from labpaths import BUILD_DIR, kvzlab

QMP_SEND = os.path.join(BUILD_DIR, "tests", "virtio", "qmp-send")
SEABIOS = "/usr/share/seabios/bios-256k.bin"
MARKER = "KVZ-FW-L2-BOOTED"
CD_FILE = b"kvz-cd-file-content-42\n"

L2_INIT = f"""
echo "{MARKER} $(cat /proc/cmdline)"
case "$(cat /proc/cmdline)" in *kvzcd=1*)
  i=0
  while [ ! -b /dev/sr0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  mkdir -p /mnt
  if mount -t iso9660 -o ro /dev/sr0 /mnt; then
    echo "KVZ-CD-FILE: $(cat /mnt/kvz-cd-file.txt)"
  else
    cat /proc/scsi/scsi; dmesg | grep -iE "scsi|sr[0-9]|virtio|cdrom" | tail -20
  fi
  poweroff -f ;;
esac
sleep 600
"""
L2_MODULES = ["virtio_pci", "virtio_scsi", "sr_mod", "isofs"]

L1_SCRIPT = r"""
out=/tmp/vmm.out
# kvz-vmm's console goes to the lab console as it comes (prefixed) and to $out
(timeout 620 kvz-vmm --firmware bios --disk /disk.img --memory 256M --qmp /tmp/q.sock \
    </dev/null 2>&1; echo "FW-LAB: kvz-vmm exit $?") | tee $out | sed 's/^/L2| /' &
# waits until the marker has appeared $1 times, at most 300 s of L1's
# clock: SeaBIOS and GRUB run in real mode, which nested KVM on TCG
# emulates instruction by instruction; one boot took more than 150 s in a
# clean-clone rehearsal (2026-12-02) where the usual is 20-40 s
marks() { grep -c "^MARKER" $out; }
wait_marks() {
  t0=$(date +%s)
  while [ "$(marks)" -lt "$1" ]; do
    if [ $(( $(date +%s) - t0 )) -gt 300 ] || grep -q "FW-LAB: kvz-vmm exit" $out; then return 1; fi
    sleep 0.2
  done
  echo "FW-LAB: boot $1 took $(( $(date +%s) - t0 )) s"
}
rc=0
if wait_marks 1; then
  echo "FW-LAB: first boot done"
  qmp-send /tmp/q.sock '{"execute": "system_reset"}' >/dev/null || rc=3
  wait_marks 2 || rc=4
else
  rc=2
fi
echo "FW-LAB: disk part rc=$rc"
qmp-send /tmp/q.sock '{"execute": "quit"}' >/dev/null 2>&1
wait
(timeout 150 kvz-vmm --firmware bios --cdrom /cd.iso --boot cdrom --memory 256M \
    </dev/null 2>&1; echo "FW-LAB: cd kvz-vmm exit $?") | sed 's/^/CD| /'
exit $rc
""".replace("MARKER", MARKER)


def test_seabios_grub_kernel_and_reset(tmp_path):
    kvzlab.skip_unless_lab()
    for why in (firmware_images.missing(),
                None if os.path.exists(SEABIOS) else f"{SEABIOS} missing (Debian's seabios)",
                None if os.path.exists(QMP_SEND) else f"{QMP_SEND} not built"):
        if why:
            pytest.skip(why)
    kernel = kvzlab.lab_kernel()
    if firmware_images.iso_missing():
        pytest.skip(firmware_images.iso_missing())
    initrd = kvzlab.build_l2_initrd(L2_INIT, L2_MODULES)
    disk = firmware_images.disk_image(str(tmp_path / "disk.img"), kernel, initrd,
                                      cmdline="console=ttyS0 quiet panic=-1 kvzfw=1")
    iso = firmware_images.iso_image(str(tmp_path / "cd.iso"), kernel, initrd,
                                    "console=ttyS0 quiet panic=-1 kvzcd=1",
                                    files={"kvz-cd-file.txt": CD_FILE})
    res = kvzlab.run_in_lab(L1_SCRIPT, smp=1, timeout=840, retries=1, stream=sys.stdout,
                            files={disk: "/disk.img", iso: "/cd.iso",
                                   QMP_SEND: "/bin/qmp-send", SEABIOS: SEABIOS})
    print(f"lab run: {res.duration:.0f} s")
    log = os.path.join(BUILD_DIR, "meson-logs", "lab_firmware.console")
    with open(log, "w") as f:
        f.write(res.output)
    out = res.output
    assert res.exit_code == 0, f"exit {res.exit_code}; console in {log}\n" + out[-4000:]
    l2 = "\n".join(l[4:] for l in out.splitlines() if l.startswith("L2| "))
    assert l2.count("SeaBIOS (version") == 2, l2[-3000:]
    assert l2.count("KVZ-GRUB-LOADED") == 2, l2[-3000:]
    # the kernel got GRUB's command line: GRUB really booted it
    assert l2.count(f"{MARKER} BOOT_IMAGE=/boot/vmlinuz console=ttyS0 quiet panic=-1 kvzfw=1") == 2, l2[-3000:]
    assert "L2| FW-LAB: kvz-vmm exit 0" in out
    cd = "\n".join(l[4:] for l in out.splitlines() if l.startswith("CD| "))
    assert "Booting from DVD/CD" in cd, cd[-3000:]
    assert "KVZ-GRUB-CD" in cd, cd[-3000:]
    assert "KVZ-CD-FILE: kvz-cd-file-content-42" in cd, cd[-3000:]
    assert "CD| FW-LAB: cd kvz-vmm exit 0" in out
