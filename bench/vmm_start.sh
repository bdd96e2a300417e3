#!/bin/sh
# kvz-vmm start-up benchmark, side by side with QEMU, in one nested-lab run
# (this host's /dev/kvm cannot run the guests at useful speed, or is absent:
# every figure comes from the L1 KVM of the lab, QEMU TCG with emulated SVM,
# so absolute times are emulator times; compare the ratios).
#   1. start to first guest instruction: kvz-vmm with first.elf, whose first
#      I/O instruction powers off (kvz-vmm --bench-first-exit stamps the
#      exit); QEMU with a 64 KiB -bios whose reset vector writes to
#      isa-debug-exit. Both: fork to process exit, and for kvz-vmm fork to
#      first exit.
#   2. resident memory beyond guest RAM: VmRSS - RssShmem of an idle guest
#      (guest RAM is a memfd in kvz-vmm, memory-backend-memfd in QEMU).
#   3. boot to init: Debian's kernel + the lab's L2 initramfs (init prints
#      and reboots), 2 vCPUs, 512 MiB, fork to exit, kvz-vmm vs QEMU -kernel.
# Targets (issue 2): start < 5 ms, overhead < 3 MiB, boot faster than QEMU.
# Usage: bench/vmm_start.sh [RUNS]   (BUILD_DIR, default build)
set -eu
. "$(dirname "$0")/lib.sh"
RUNS=${1:-20}
export RUNS
exec /usr/bin/python3 - <<'PYEOF'
import os, re, statistics, sys, tempfile
import kvzlab

build = os.environ["KVZ_BUILD_DIR"]
runs = int(os.environ["RUNS"])
kvzlab.bench_require("vmm_start")

def firmware(code):
    img = bytearray(b"\xff" * 65536)
    img[0xFFF0:0xFFF0 + len(code)] = code
    f = tempfile.NamedTemporaryFile(delete=False, suffix=".bin")
    f.write(img)
    f.close()
    return f.name

# mov al,0; out 0xf4,al (isa-debug-exit); then hlt; jmp $-1
fw_exit = firmware(b"\xb0\x00\xe6\xf4\xf4\xeb\xfd")
fw_idle = firmware(b"\xf4\xeb\xfd")
files = {
    os.path.join(build, "tests/guests/first.elf"): "/g/first.elf",
    os.path.join(build, "tests/guests/idle.elf"): "/g/idle.elf",
    os.path.join(build, "tests/vmm/kvz-bench-run"): "/bin/kvz-bench-run",
    fw_exit: "/g/fw-exit.bin",
    fw_idle: "/g/fw-idle.bin",
}
Q = "/bin/qemu-system-x86_64 -L /usr/share/kvzlab-qemu -accel kvm -nodefaults -display none"
script = f"""
B=/bin/kvz-bench-run
# Huge pages for guest RAM on both sides: QEMU's anonymous RAM gets them
# from THP (enabled=always), kvz-vmm's memfd (shmem) asks with
# MADV_HUGEPAGE, which needs shmem_enabled=advise (Debian's default: never).
echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled
echo "THP anon: $(cat /sys/kernel/mm/transparent_hugepage/enabled) shmem: $(cat /sys/kernel/mm/transparent_hugepage/shmem_enabled)"
echo "KVZ-START $($B {runs} /bin/kvz-vmm --kernel /g/first.elf --memory 64M --bench-first-exit)"
echo "QEMU-START $($B {runs} {Q} -machine pc -m 64M -bios /g/fw-exit.bin -device isa-debug-exit,iobase=0xf4,iosize=1)"
/bin/kvz-vmm --kernel /g/idle.elf --memory 64M > /dev/null 2>&1 &
pid=$!; sleep 3
echo "KVZ-RSS $(grep -E '^(VmRSS|RssShmem)' /proc/$pid/status | tr -s ' \\t\\n' ' ')"
kill $pid; wait $pid
{Q} -machine pc,memory-backend=ram -object memory-backend-memfd,id=ram,size=64M -m 64M -bios /g/fw-idle.bin > /dev/null 2>&1 &
pid=$!; sleep 3
echo "QEMU-RSS $(grep -E '^(VmRSS|RssShmem)' /proc/$pid/status | tr -s ' \\t\\n' ' ')"
kill $pid; wait $pid
BOOT="-kernel /l2/vmlinuz -initrd /l2/initrd.cpio.gz"
echo "KVZ-BOOT $($B 3 /bin/kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline 'console=ttyS0 quiet panic=-1' --cpus 2 --memory 512M)"
echo "QEMU-BOOT $($B 3 {Q} -machine pc -smp 2 -m 512M -serial stdio -no-reboot $BOOT -append 'console=ttyS0 quiet panic=-1')"
"""
res = kvzlab.run_in_lab(script, files=files, smp=2, timeout=900, with_qemu=True)
for f in (fw_exit, fw_idle):
    os.unlink(f)
out = res.output

def fields(tag):
    m = re.search(tag + r" (.*)", out)
    if not m:
        print(f"vmm_start: no {tag} line; lab output tail:\n{out[-2000:]}")
        sys.exit(1)
    return dict(re.findall(r"(\w+)=(-?\d+)", m.group(1)))

def rss(tag):
    m = re.search(tag + r" VmRSS: (\d+) kB RssShmem: (\d+) kB", out)
    if not m:
        print(f"vmm_start: no {tag} line; lab output tail:\n{out[-2000:]}")
        sys.exit(1)
    return int(m.group(1)), int(m.group(2))

ks, qs = fields("KVZ-START"), fields("QEMU-START")
kr, qr = rss("KVZ-RSS"), rss("QEMU-RSS")
kb, qb = fields("KVZ-BOOT"), fields("QEMU-BOOT")
k_first = int(ks["first_exit_median_us"]) / 1000
k_total, q_total = int(ks["median_us"]) / 1000, int(qs["median_us"]) / 1000
k_over, q_over = (kr[0] - kr[1]) / 1024, (qr[0] - qr[1]) / 1024
k_boot, q_boot = int(kb["median_us"]) / 1e6, int(qb["median_us"]) / 1e6
print("kvz-vmm start-up, nested lab (L1 = QEMU TCG + emulated SVM; emulator times)")
thp = re.search(r"THP anon: .*", out)
print(f"  L1 settings: {thp.group(0) if thp else '?'}")
print(f"  raw RSS kB: kvz-vmm VmRSS {kr[0]} RssShmem {kr[1]}; QEMU VmRSS {qr[0]} RssShmem {qr[1]}")
print(f"  start to first guest exit (median of {runs}): kvz-vmm {k_first:.2f} ms   "
      f"[target < 5 ms: {'met' if k_first < 5 else 'NOT met'} in the lab]")
print(f"  fork to exit, power-off at first instruction: kvz-vmm {k_total:.2f} ms, "
      f"QEMU {q_total:.2f} ms, QEMU/kvz = {q_total / k_total:.1f}x")
print(f"  RSS beyond guest RAM (64 MiB idle guest): kvz-vmm {k_over:.2f} MiB, QEMU {q_over:.2f} MiB, "
      f"QEMU/kvz = {q_over / k_over:.1f}x   [target < 3 MiB: {'met' if k_over < 3 else 'NOT met'}]")
print(f"  boot Debian kernel to init and reboot (2 vCPUs, 512 MiB, median of 3): kvz-vmm {k_boot:.2f} s, "
      f"QEMU {q_boot:.2f} s, QEMU/kvz = {q_boot / k_boot:.2f}x   "
      f"[target faster than QEMU: {'met' if k_boot < q_boot else 'NOT met'}]")
bad = {k: v["nonzero_exits"] for k, v in (("kvz-start", ks), ("kvz-boot", kb), ("qemu-boot", qb))
       if v.get("nonzero_exits", "0") != "0"}
if bad:
    print(f"  warning: runs with a non-zero exit status: {bad}")
PYEOF
