#!/bin/bash
# virtio-blk of kvz-vmm against QEMU, and qcow2 against raw, in ONE
# nested-lab run, measured with fio inside the L2 guest: sequential read
# and write (1 MiB, depth 8) and random 4 KiB read and write (depth 1 and
# 32), O_DIRECT with libaio, on a 128 MiB raw image and a 130 MiB qcow2
# (new and empty, made by kvz-image) on L1's tmpfs.
#
# The lab's emulator (QEMU TCG runs L1) swings one VMM's throughput by
# factors from one minute to the next: one boot of each VMM in turn has
# given kvz/QEMU ratios anywhere from 0.3 to 2.6 with no code change. So
# the same L2 kernel and initramfs boot ONCE under each VMM, side by side
# (one vCPU each), each with its own copies of the same fresh images and a
# read-only disk holding fio, and the two guests take turns: L1 sends one
# job at a time over a guest's serial console (bench/blk_lab_l1.sh,
# bench/blk_lab_l2.sh), FIO_RUNTIME seconds each, the two VMMs' runs of a
# job seconds apart, their order rotated every round so that over 4 rounds
# each (VMM, format) stands in each place once (ABBA). Printed per figure:
# the median over ROUNDS rounds of each round's kvz/QEMU ratio, its
# quartiles and range and the number of rounds, and a verdict: meets at a
# median >= 1.0 ("BELOW (whole range)" when every round is below); for
# kvz-vmm's qcow2 against its raw, the median per-round qcow2/raw ratio,
# meeting at >= 0.9 (bench/blk_lab_lib.py). A second figure per job: the
# VMM process's L1 CPU time (utime+stime, /proc/PID/stat) over the job per
# MiB moved, less noisy than throughput in an emulator. The first round's
# writes allocate (tmpfs pages, qcow2 clusters); later rounds rewrite.
# A guest the emulator leaves stuck on a job loses that job (that figure
# of that round left out) and its VMM boots again on the same images.
#
# Host side, like with like: both go through L1's page cache.
# - kvz-vmm: its defaults, io_uring (readv/writev/fsync on the image opened
#   without O_DIRECT), one queue per vCPU, event-index interrupts.
# - QEMU: cache=writeback,aio=threads (its defaults, said explicitly):
#   preadv/pwritev in its thread pool, the image opened without O_DIRECT.
# kvz-vmm runs with --verbose: at exit it logs per disk the requests,
# queue-thread wake-ups, interrupts and the most requests in flight.
#
# Knobs: ROUNDS (default 8, 1..40), FIO_RUNTIME (seconds per job, default
# 2, 1..10), BENCH_LOG (the lab console, default /tmp/kvz-blk-lab-bench.log),
# BUILD_DIR. 8 rounds of 2 s take about 15 minutes of lab time.
# Needs: the lab (lab/kvzlab.py), built kvz-vmm and kvz-image (BUILD_DIR)
# and fio on the host (Debian package fio).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$here"
exec python3 - "$@" <<'PY'
import io, os, re, shutil, subprocess, sys, tarfile, tempfile
import blk_lab_lib
import kvzlab

kimg = os.path.join(os.environ["KVZ_BUILD_DIR"], "src/image/kvz-image")
kvzlab.bench_require("blk_lab", kvzlab.default_vmm(), kimg)


def knob(name, default, lo, hi):
    v = os.environ.get(name, str(default))
    if not v.isdigit() or not lo <= int(v) <= hi:
        sys.exit(f"blk_lab: {name}={v!r}: a whole number from {lo} to {hi}")
    return int(v)


ROUNDS = knob("ROUNDS", 8, 1, 40)
RUNTIME = knob("FIO_RUNTIME", 2, 1, 10)
FIO = shutil.which("fio")
if not FIO:
    sys.exit("blk_lab: fio not installed on the host (Debian: apt-get install fio)")


def fio_bundle(path):
    """fio, its libraries and the loader in a gzip'd tar, padded to whole
    sectors (a disk's size is counted in 512-byte sectors)."""
    libs = subprocess.run(["ldd", FIO], capture_output=True, text=True, check=True).stdout
    files = sorted(set(re.findall(r"(/\S+) \(0x", libs)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(FIO, arcname="fio/fio")
        for f in files:
            t.add(os.path.realpath(f), arcname="fio/lib/" + os.path.basename(f))
    data = buf.getvalue()
    data += bytes(-len(data) % 512 + 512)
    with open(path, "wb") as f:
        f.write(data)


CMDLINE = "console=ttyS0 panic=-1 quiet"
L1_SCRIPT = ("echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled\n"
             + blk_lab_lib.l1_script(
                 ROUNDS, blk_lab_lib.step_s(RUNTIME),
                 "exec kvz-vmm --verbose --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz "
                 f"--cmdline '{CMDLINE}' --memory 512M --cpus 1 \"$@\"",
                 "exec qemu-system-x86_64 -L /usr/share/kvzlab-qemu -accel kvm -cpu host "
                 "-smp 1 -m 512 -nodefaults -display none -serial stdio -no-reboot "
                 "-kernel /l2/vmlinuz -initrd /l2/initrd.cpio.gz "
                 f"-append '{CMDLINE}' \"$@\""))
# Per round: 24 jobs of RUNTIME s and about 3 s of fio start and console.
TIMEOUT = 600 + ROUNDS * 24 * (RUNTIME + 6)

with tempfile.TemporaryDirectory() as tmp:
    bundle = os.path.join(tmp, "fio.tgz")
    fio_bundle(bundle)
    empty = os.path.join(tmp, "empty.qcow2")
    subprocess.run([kimg, "create", empty, f"{blk_lab_lib.Q2_MB}M"], check=True, stdout=subprocess.DEVNULL)
    res = kvzlab.run_in_lab(L1_SCRIPT, files={bundle: "/fio.tgz", empty: "/img/empty.qcow2"},
                            with_qemu=True, l2_init=blk_lab_lib.l2_script(RUNTIME),
                            l2_modules=["virtio_pci", "virtio_blk"],
                            timeout=TIMEOUT, mem_mb=2560, retries=0)
out = res.output
log = os.environ.get("BENCH_LOG", "/tmp/kvz-blk-lab-bench.log")
with open(log, "w") as f:
    f.write(out)
print(f"blk_lab: full lab console in {log}")
text, missing, below = blk_lab_lib.report(out, ROUNDS)
print()
print(text)
print(f"(one lab run, {res.duration:.0f} s; {RUNTIME} s per fio job)")
print()
print(blk_lab_lib.per_round(out))
for line in re.findall(r"^\[kvz\] kvz-vmm: debug: virtio vd.*$", out, re.M):
    print(line)
if res.exit_code != 0:
    print(out[-4000:])
    why = kvzlab.lab_failure(res) or f"the L1 script exited with {res.exit_code}"
    sys.exit(f"blk_lab: lab failed after {res.duration:.0f} s: {why} (L0 QEMU exit "
             f"{res.qemu_returncode}); the figures above are from the rounds before")
if missing:
    sys.exit(f"blk_lab: {missing} figures missing (see {log})")
print(f"blk_lab: {below} figures below their goal" if below else "blk_lab: every figure meets its goal")
PY
