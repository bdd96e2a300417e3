"""The fast guest tests, run on a real KVM: inside the nested lab's L1
(QEMU TCG with emulated SVM). For hosts without /dev/kvm, this is where the
VMM's exits, devices, SMP and QMP pause/resume are really exercised. One L1
boot runs every guest; each step prints a marker the asserts look for."""

import os
import re
import sys

import pytest

import vmmtest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab"))
from labpaths import kvzlab  # noqa: E402

QMP_TOOL = os.path.join(vmmtest.BUILD, "tests", "vmm", "kvz-qmp-tool")
GUESTS = ["hello", "smp", "counter", "internal", "reboot", "idle", "echo"]

L1_SCRIPT = r"""
V="timeout 120 /bin/kvz-vmm"
Q=/bin/kvz-qmp-tool
$V --kernel /g/hello.elf --memory 16M > /tmp/hello.out 2>&1; echo "HELLO-EXIT $?"
cat /tmp/hello.out
$V --kernel /g/smp.elf --memory 16M --cpus 2 > /tmp/smp.out 2>&1; echo "SMP-EXIT $?"
cat /tmp/smp.out
echo -n "typed-in q" | $V --kernel /g/echo.elf --memory 16M > /tmp/echo.out 2>&1; echo "ECHO-EXIT $?"
sed 's/^/ECHO-OUT: /' /tmp/echo.out
$V --kernel /g/reboot.elf --memory 16M > /tmp/reboot.out 2>&1; echo "REBOOT-EXIT $?"
$V --kernel /g/internal.elf --memory 16M > /tmp/int.out 2>/tmp/int.err; echo "INTERNAL-EXIT $?"
echo "INTERNAL-STDERR-LINES $(wc -l < /tmp/int.err)"
sed 's/^/INTERNAL-STDERR: /' /tmp/int.err

# QMP pause/resume: the CPL3 counter prints dots only while it runs.
$V --kernel /g/counter.elf --memory 16M --qmp /tmp/q1 > /tmp/counter.out 2>&1 &
pid=$!
sleep 3
$Q /tmp/q1 stop query-status
sleep 1
a=$(wc -c < /tmp/counter.out); sleep 3; b=$(wc -c < /tmp/counter.out)
echo "PAUSED-GROWTH $((b - a))"
$Q /tmp/q1 cont query-status
sleep 3
c=$(wc -c < /tmp/counter.out)
echo "RESUMED-GROWTH $((c - b))"
$Q /tmp/q1 quit
wait $pid; echo "COUNTER-EXIT $?"

# query-cpus-fast, malformed input, system_reset on the idle guest.
$V --kernel /g/idle.elf --memory 16M --cpus 2 --qmp /tmp/q2 > /tmp/idle.out 2>&1 &
pid=$!
sleep 2
$Q /tmp/q2 query-cpus-fast no-such-command query-balloon system_reset
sleep 2
echo "IDLE-BANNERS $(grep -c 'kvz-test-guest: idle' /tmp/idle.out)"
$Q /tmp/q2 quit
wait $pid; echo "IDLE-EXIT $?"

# Debian's kernel with 2 vCPUs: paused and resumed during boot, console on
# a socket (replayed from the ring, then live) until the guest reboots.
$V --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline 'console=ttyS0 panic=-1' \
   --cpus 2 --memory 256M --qmp /tmp/lq --console-socket /tmp/lc > /tmp/linux.out 2> /tmp/linux.err &
pid=$!
sleep 2
$Q /tmp/lq stop query-status | sed 's/^/LINUX-QMP: /'
sleep 2
$Q /tmp/lq cont | sed 's/^/LINUX-QMP: /'
$Q --console /tmp/lc 240 > /tmp/linux.console
wait $pid; echo "LINUX-EXIT $?"
echo "LINUX-STDOUT-BYTES $(wc -c < /tmp/linux.out)"
sed 's/^/LINUX-STDERR: /' /tmp/linux.err
grep -E 'KVZLAB-L2-INIT|smp: Brought up|Linux version' /tmp/linux.console | sed 's/^/LINUX-CONSOLE: /'
"""


def test_guests_in_lab():
    kvzlab.skip_unless_lab()
    if not os.path.exists(QMP_TOOL):
        pytest.skip(f"{QMP_TOOL} not built")
    files = {vmmtest.guest(g): f"/g/{g}.elf" for g in GUESTS}
    files[QMP_TOOL] = "/bin/kvz-qmp-tool"
    res = kvzlab.run_in_lab(L1_SCRIPT, files=files, smp=2, timeout=500)
    out = res.output
    print(out)   # shown by pytest when an assert fails
    assert res.exit_code == 0, out[-3000:]
    assert "HELLO-EXIT 0" in out
    assert "pci-00:00.0 0000000012378086" in out
    assert "cmos-b-d 0000000000000280" in out
    assert "unhandled-port 00000000ffffffff" in out
    assert "mmio-unmapped 00000000ffffffff" in out
    assert "SMP-EXIT 0" in out
    assert "cpu up apic-id 0" in out and "cpu up apic-id 1" in out
    assert "cpus checked in: 2" in out
    assert "ECHO-EXIT 0" in out
    assert "ECHO-OUT: typed-in q" in out, "stdin did not reach the guest's UART"
    assert "REBOOT-EXIT 0" in out
    assert "INTERNAL-EXIT 1" in out
    assert "INTERNAL-STDERR-LINES 1" in out
    assert "KVM_EXIT_INTERNAL_ERROR at RIP 0xfeb00000" in out
    assert 'stop: {}' in out
    assert 'query-status: {"status":"paused","running":false,"singlestep":false}' in out
    assert "PAUSED-GROWTH 0" in out
    growth = int(out.split("RESUMED-GROWTH ")[1].split()[0])
    assert growth > 0, "the counter did not run after cont"
    assert "COUNTER-EXIT 0" in out
    assert '"cpu-index":1' in out
    assert "no-such-command: error: CommandNotFound" in out
    assert "query-balloon: error: DeviceNotActive" in out
    assert "IDLE-BANNERS 2" in out, "system_reset did not restart the guest"
    assert "IDLE-EXIT 0" in out
    assert 'LINUX-QMP: query-status: {"status":"paused"' in out
    assert "LINUX-QMP: cont: {}" in out
    assert re.search(r"LINUX-CONSOLE: .*Linux version", out), "boot log not replayed on attach"
    assert re.search(r"LINUX-CONSOLE: .*smp: Brought up 1 node, 2 CPUs", out)
    assert re.search(r"LINUX-CONSOLE: KVZLAB-L2-INIT cpus=2 memtotal_kb=\d+", out)
    assert "LINUX-EXIT 0" in out, "kvz-vmm did not exit 0 after the guest rebooted"
    assert "LINUX-STDOUT-BYTES 0" in out, "console output leaked to stdout"
    # stderr has kvz-vmm's own lines only (why it stopped), no console bytes.
    err = re.findall(r"^LINUX-STDERR: (.*)$", out, re.M)
    assert err and all(l.startswith("kvz-vmm: ") for l in err), err


def extract_vmlinux(bzimage, out):
    """The uncompressed ELF inside a bzImage (xz, gzip or zstd payload), or
    None when this Python cannot decompress it."""
    import gzip
    import lzma
    data = open(bzimage, "rb").read()
    for magic, unpack in ((b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor().decompress(b)),
                          (b"\x1f\x8b\x08", lambda b: gzip.decompress(b))):
        i = data.find(magic)
        if i < 0:
            continue
        try:
            elf = unpack(data[i:])
        except (lzma.LZMAError, OSError, EOFError):
            continue
        if elf[:4] == b"\x7fELF":
            with open(out, "wb") as f:
                f.write(elf)
            return out
    return None


def test_pvh_vmlinux_in_lab(tmp_path):
    """The same Debian kernel as an uncompressed vmlinux, through its PVH
    entry note: 2 vCPUs reach init and the reboot ends kvz-vmm with 0."""
    kvzlab.skip_unless_lab()
    vmlinux = extract_vmlinux(kvzlab.lab_kernel(), str(tmp_path / "vmlinux"))
    if not vmlinux:
        pytest.skip("cannot extract vmlinux from the lab kernel's bzImage")
    script = r"""
/bin/kvz-vmm --kernel /g/vmlinux --initrd /l2/initrd.cpio.gz --cmdline 'console=ttyS0 panic=-1' \
   --cpus 2 --memory 512M > /tmp/pvh.out 2>&1; echo "PVH-EXIT $?"
grep -E 'KVZLAB-L2-INIT|Linux version' /tmp/pvh.out | sed 's/^/PVH: /'
"""
    res = kvzlab.run_in_lab(script, files={vmlinux: "/g/vmlinux"}, smp=2, timeout=300)
    out = res.output
    print(out)
    assert "PVH-EXIT 0" in out
    assert "PVH: [" in out and "Linux version" in out
    assert re.search(r"PVH: KVZLAB-L2-INIT cpus=2 memtotal_kb=\d+", out)


def test_linux_above_4g_in_lab():
    """RAM above 4 GiB (second memory slot, e820 entry past the PCI hole),
    more vCPUs than L1 has CPUs, and the host CPU model. L1 gets 5.5 GiB
    (touched lazily by QEMU) so that 4.5 GiB is not more than its RAM."""
    kvzlab.skip_unless_lab()
    script = r"""
timeout 400 /bin/kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz \
   --cmdline 'console=ttyS0 quiet panic=-1' --cpus 3 --memory 4608M --cpu-model host \
   > /tmp/big.out 2>&1; echo "BIG-EXIT $?"
grep -E 'KVZLAB-L2-INIT' /tmp/big.out | sed 's/^/BIG: /'
"""
    res = kvzlab.run_in_lab(script, smp=2, mem_mb=5632, timeout=450)
    out = res.output
    print(out)
    assert "BIG-EXIT 0" in out
    m = re.search(r"BIG: KVZLAB-L2-INIT cpus=3 memtotal_kb=(\d+)", out)
    assert m, "the 3-vCPU, 4.5 GiB guest did not reach init"
    assert int(m.group(1)) > 4 * 1024 * 1024, "RAM above 4 GiB not seen by the guest"


# The L2 init waits for the power button's input event, then powers off.
POWER_BUTTON_INIT = r"""
dev=
for e in /sys/class/input/event*; do
  grep -q "Power Button" "$e/device/name" 2>/dev/null && dev=/dev/input/${e##*/}
done
echo "L2-POWER-BUTTON-DEVICE ${dev:-none}"
[ -n "$dev" ] || poweroff -f
echo "L2-WAITING-FOR-POWER-BUTTON"
n=$(dd if="$dev" bs=24 count=1 2>/dev/null | wc -c)
echo "L2-GOT-INPUT-EVENT bytes=$n"
poweroff -f
"""

POWER_BUTTON_SCRIPT = r"""
Q=/bin/kvz-qmp-tool
timeout 300 /bin/kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz \
   --cmdline 'console=ttyS0 quiet panic=-1' --memory 256M --qmp /tmp/pq \
   < /dev/null > /tmp/pb.out 2>&1 &
pid=$!
i=0
while ! grep -q L2-WAITING-FOR-POWER-BUTTON /tmp/pb.out && [ $i -lt 250 ]; do
  sleep 1; i=$((i + 1))
done
$Q /tmp/pq system_powerdown | sed 's/^/PB-QMP: /'
wait $pid; echo "PB-EXIT $?"
grep -E '^L2-' /tmp/pb.out | sed 's/^/PB: /'
"""


def test_acpi_power_button_and_poweroff_in_lab():
    """QMP system_powerdown presses the ACPI power button: the SCI reaches
    the guest, its button driver reports KEY_POWER as an input event, the
    guest's init powers off through the PM1 control register, and kvz-vmm
    exits 0: the graceful shutdown that kvzd's stop asks for."""
    kvzlab.skip_unless_lab()
    if not os.path.exists(QMP_TOOL):
        pytest.skip(f"{QMP_TOOL} not built")
    res = kvzlab.run_in_lab(POWER_BUTTON_SCRIPT, files={QMP_TOOL: "/bin/kvz-qmp-tool"},
                            l2_init=POWER_BUTTON_INIT, l2_modules=["button", "evdev"],
                            smp=2, timeout=350)
    out = res.output
    print(out)
    assert re.search(r"PB: L2-POWER-BUTTON-DEVICE /dev/input/event\d+", out), \
        "no ACPI power button input device in the guest"
    assert "PB-QMP: system_powerdown: {}" in out
    assert "PB: L2-GOT-INPUT-EVENT bytes=24" in out, "the power button press never reached the guest"
    assert "PB-EXIT 0" in out, "kvz-vmm did not exit 0 after the guest's ACPI power-off"


SECCOMP_SCRIPT = r"""
V="timeout 120 /bin/kvz-vmm"
Q=/bin/kvz-qmp-tool
$V --kernel /g/idle.elf --memory 16M --cpus 2 --qmp /tmp/sq > /tmp/son.out 2>&1 &
tpid=$!
sleep 3
pid=$(pidof kvz-vmm)
echo "ON-STATUS $(grep -E '^Seccomp:' /proc/$pid/status | tr -s ' \t' ' ')"
echo "ON-TASKS $(ls /proc/$pid/task | wc -l)"
echo "ON-TASKS-FILTERED $(grep -lE '^Seccomp:[[:space:]]+2$' /proc/$pid/task/*/status | wc -l)"
$Q /tmp/sq system_reset query-status | sed 's/^/ON-QMP: /'
sleep 2
$Q /tmp/sq quit
wait $tpid; echo "ON-EXIT $?"
echo "ON-BANNERS $(grep -c 'kvz-test-guest: idle' /tmp/son.out)"
sed 's/^/ON-OUT: /' /tmp/son.out
$V --kernel /g/idle.elf --memory 16M --seccomp=off --qmp /tmp/soff > /tmp/soff.out 2>&1 &
tpid=$!
sleep 3
pid=$(pidof kvz-vmm)
echo "OFF-STATUS $(grep -E '^Seccomp:' /proc/$pid/status | tr -s ' \t' ' ')"
$Q /tmp/soff quit
wait $tpid; echo "OFF-EXIT $?"
"""


def test_seccomp_filter_active_in_lab():
    """A running kvz-vmm is confined: every one of its threads (main, QMP,
    console, signal, I/O, both vCPUs) is in seccomp filter mode (2), and
    QMP connections and a system_reset still work under the filter
    (the images come from memory). --seccomp=off really leaves it off."""
    kvzlab.skip_unless_lab()
    if not os.path.exists(QMP_TOOL):
        pytest.skip(f"{QMP_TOOL} not built")
    files = {vmmtest.guest("idle"): "/g/idle.elf", QMP_TOOL: "/bin/kvz-qmp-tool"}
    res = kvzlab.run_in_lab(SECCOMP_SCRIPT, files=files, smp=2, timeout=200)
    out = res.output
    print(out)
    assert "ON-STATUS Seccomp: 2" in out, "kvz-vmm runs without its seccomp filter"
    tasks = int(out.split("ON-TASKS ")[1].split()[0])
    filtered = int(out.split("ON-TASKS-FILTERED ")[1].split()[0])
    assert tasks >= 6, f"expected main, QMP, console, signal, I/O and 2 vCPU threads, saw {tasks}"
    assert filtered == tasks, f"only {filtered} of {tasks} threads are filtered"
    assert "ON-QMP: system_reset: {}" in out
    assert 'ON-QMP: query-status: {"status":"running"' in out
    assert "ON-EXIT 0" in out
    assert "ON-BANNERS 2" in out, "the guest did not start again after system_reset"
    assert "forbidden system call" not in out
    assert "OFF-STATUS Seccomp: 0" in out
    assert "OFF-EXIT 0" in out
