#!/usr/bin/env python3
"""kvzlab: the nested lab, a real KVM host inside QEMU TCG.

This machine's /dev/kvm is a software backend that cannot boot a stock Linux
kernel in useful time.  The lab boots Debian's kernel ("L1") under
qemu-system-x86_64 -accel tcg -cpu EPYC,+svm,+npt, loads kvm-amd there, and
runs a shell script inside L1 where /dev/kvm is a real (emulated-SVM) KVM.
That script usually starts kvz-vmm to boot the same kernel again ("L2").

Usage from pytest (tests/lab/, suite 'lab'):

    import kvzlab
    kvzlab.skip_unless_lab()            # pytest.skip with the reason if not possible
    res = kvzlab.run_in_lab(
        "kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz "
        "--cmdline 'console=ttyS0 quiet panic=-1' --cpus 2 --memory 512M",
        l2_init="echo hello from L2; reboot -f",
        l2_modules=["virtio_blk", "ext4"],     # dependencies are added, in order
        files={"/tmp/disk.img": "/disk.img"},  # host path -> path inside L1
        smp=2, timeout=600)
    assert res.exit_code == 0 and "hello from L2" in res.output

What L1 provides to l1_script (run by busybox sh, cwd /, PATH has busybox):
  /bin/kvz-vmm            $KVZ_BUILD_DIR/src/vmm/kvz-vmm (or vmm=PATH) + its libraries
  /l2/vmlinuz             the L2 kernel (same Debian kernel as L1)
  /l2/initrd.cpio.gz      the L2 initramfs (see build_l2_initrd)
  /dev/kvm                kvm + kvm-amd loaded; l1_modules=[...] loads more (e.g. tun, bridge)
  /tmp, /dev/shm          tmpfs
  /bin/qemu-system-x86_64 only with with_qemu=True (for benchmarks); run it
                          with "-L /usr/share/kvzlab-qemu" (qemu_l2_command())
  /bin/kvzlab-time LABEL MARKER CMD...   times CMD until MARKER appears in its
                          output; prints "KVZLAB-TIME LABEL SECONDS" lines that
                          parse_times(res.output) collects and compare() prints
                          as medians and a ratio (see bench/vmm_boot_lab.sh)
The exit status of l1_script is LabResult.exit_code (None when L1 never
reported one: crash or timeout; see LabResult.timed_out).

The L2 initramfs: /init mounts proc, sys, devtmpfs, loads l2_modules with
their dependencies (modules.dep, plus modules.softdep "pre:" entries), then
runs l2_init (a busybox sh script; all applets are on PATH).  When l2_init
is None, a default init prints "KVZLAB-L2-INIT cpus=N memtotal_kb=M" and
does `reboot -f`.  If the script ends without rebooting, /init reboots.

Command line (lab/run-vmm.sh is a wrapper of the first form):
  kvzlab.py run-vmm [--smp N] [--l2-init FILE] [--l2-modules "m1 m2"]
                    [--add HOST:L1]... [--timeout SEC] [--retries N]
                    [--l2-triple-fault-expected]
                    -- KVZ_VMM_ARGS...
  kvzlab.py run [--smp N] [--qemu] [--add HOST:L1]... [--retries N] --script FILE
  kvzlab.py build-l2 --out FILE [--init FILE] [--modules "m1 m2"]
  kvzlab.py modules m1 m2        prints the load order

Environment: KVZ_BUILD_DIR or BUILD_DIR (kvz-vmm's build dir, default
build), KVZ_LAB_KERNEL (default: newest /boot/vmlinuz-*), KVZ_LAB_OUT (cache,
default lab/out).  Only one lab runs at a time (a lock in the cache dir):
TCG needs both host cores.
"""

import ctypes
import dataclasses
import fcntl
import glob
import gzip
import hashlib
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

LAB_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(LAB_DIR)
# Bumped whenever the layout of the generated archives changes, so that
# cached archives from an older kvzlab are not reused.
FORMAT_VERSION = "3"
L1_EXIT_MARKER = "KVZLAB-L1-EXIT:"
# Printed by L1's init when KVM saw an L2 vCPU triple-fault (no lab test
# asks for one); tests/lab/test_vmm_boot.py causes one on purpose.
L2_SHUTDOWN_MARKER = "KVZLAB-L2-SHUTDOWN:"
# Printed by the host when it stopped QEMU because a kernel in the lab was
# stuck for good (see _Stall).
STALL_MARKER = "KVZLAB-STALLED:"
L1_MODULES = ["kvm-amd"]
QEMU_DATA_L1 = "/usr/share/kvzlab-qemu"
# Firmware that qemu-system-x86_64 (pc machine, -nodefaults, -kernel) reads.
QEMU_FIRMWARE = ["bios-256k.bin", "linuxboot_dma.bin", "kvmvapic.bin",
                 "multiboot_dma.bin", "pvh.bin", "qboot.rom"]
QEMU_FIRMWARE_DIRS = ["/usr/share/qemu", "/usr/share/seabios"]

DEFAULT_L2_INIT = r"""
cpus=$(grep -c '^processor' /proc/cpuinfo)
mem=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
echo "KVZLAB-L2-INIT cpus=$cpus memtotal_kb=$mem"
reboot -f
"""


class LabError(Exception):
    """The lab cannot be built or started (missing kernel, module, binary)."""


# ---------------------------------------------------------------- locations

def out_dir():
    d = os.environ.get("KVZ_LAB_OUT") or os.path.join(LAB_DIR, "out")
    os.makedirs(d, exist_ok=True)
    return d


def build_dir():
    d = (os.environ.get("KVZ_BUILD_DIR") or os.environ.get("BUILD_DIR")
         or "build")
    return d if os.path.isabs(d) else os.path.join(SOURCE_DIR, d)


def default_vmm():
    return os.path.join(build_dir(), "src", "vmm", "kvz-vmm")


def lab_kernel():
    k = os.environ.get("KVZ_LAB_KERNEL")
    if k:
        return k
    cands = sorted(glob.glob("/boot/vmlinuz-*"))
    if not cands:
        raise LabError("no kernel in /boot (install linux-image-amd64)")
    return cands[-1]


def kernel_version(kernel):
    base = os.path.basename(kernel)
    if not base.startswith("vmlinuz-"):
        raise LabError(f"cannot tell the version of kernel {kernel} "
                       "(expected a vmlinuz-VERSION file name)")
    return base[len("vmlinuz-"):]


def module_dir(kernel):
    d = os.path.join("/lib/modules", kernel_version(kernel))
    if not os.path.isfile(os.path.join(d, "modules.dep")):
        raise LabError(f"{d}/modules.dep missing (modules of {kernel})")
    return d


def busybox_path():
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.isfile(p):
            return p
    raise LabError("busybox missing (install busybox-static)")


def lab_missing():
    """Why the lab cannot run here, or None when it can."""
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 not installed (Debian: qemu-system-x86)"
    try:
        kernel = lab_kernel()
        if not os.access(kernel, os.R_OK):
            return f"kernel {kernel} not readable"
        module_dir(kernel)
        bb = busybox_path()
    except LabError as e:
        return str(e)
    if "statically linked" not in _file_type(bb):
        return f"{bb} is not statically linked (install busybox-static)"
    return None


def skip_unless_lab():
    reason = lab_missing()
    if reason:
        import pytest
        pytest.skip(f"nested lab unavailable: {reason}")


def _file_type(path):
    try:
        return subprocess.run(["file", "-L", path], capture_output=True,
                              text=True, check=False).stdout
    except FileNotFoundError:
        # Without file(1), trust that busybox-static provides /bin/busybox.
        return "statically linked"


# ---------------------------------------------------------------- cpio

class Cpio:
    """A newc ("070701") cpio archive as the kernel's initramfs unpacker reads.

    Entries are owned by root with mtime 0 so that equal inputs give equal
    archives; parent directories are added automatically."""

    def __init__(self):
        self._chunks = []
        self._ino = 1
        self._paths = set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        name = name.strip("/")
        if name in self._paths:
            return
        self._add_parents(name)
        self._paths.add(name)
        nameb = name.encode() + b"\0"
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(nameb), 0]
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._chunks += [hdr, nameb, _pad4(len(hdr) + len(nameb)),
                         data, _pad4(len(data))]

    def _add_parents(self, name):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dir("/".join(parts[:i]))

    def dir(self, path, mode=0o755):
        self._entry(path, 0o040000 | mode)

    def file(self, path, data, mode=0o644):
        if isinstance(data, str):
            data = data.encode()
        self._entry(path, 0o100000 | mode, data)

    def copy(self, path, src, mode=None):
        with open(src, "rb") as f:
            data = f.read()
        if mode is None:
            mode = os.stat(src).st_mode & 0o7777
        self.file(path, data, mode)

    def symlink(self, path, target):
        self._entry(path, 0o120000 | 0o777, target.encode())

    def chardev(self, path, major, minor, mode=0o600):
        self._entry(path, 0o020000 | mode, rdev=(major, minor))

    def has(self, path):
        return path.strip("/") in self._paths

    def bytes(self):
        trailer = Cpio()
        trailer._entry("TRAILER!!!", 0)
        return b"".join(self._chunks + trailer._chunks)


def _pad4(n):
    return b"\0" * ((4 - n % 4) % 4)


def _add_busybox(cpio):
    bb = busybox_path()
    cpio.copy("/bin/busybox", bb, 0o755)
    applets = subprocess.run([bb, "--list-full"], capture_output=True,
                             text=True, check=True).stdout.split()
    for a in applets:
        if not cpio.has(a):
            cpio.symlink(a, "/bin/busybox")
    cpio.symlink("/bin/sh", "/bin/busybox")
    cpio.chardev("/dev/console", 5, 1)
    for d in ("proc", "sys", "tmp", "run", "mnt", "root", "etc"):
        cpio.dir(d)


# ---------------------------------------------------------------- modules

def _mod_name(s):
    base = os.path.basename(s)
    base = re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base)
    return base.replace("-", "_")


def _read_modules_dep(moddir):
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[_mod_name(path)] = (path, [_mod_name(d) for d in rest.split()])
    return deps


def _read_softdeps(moddir):
    soft = {}
    try:
        with open(os.path.join(moddir, "modules.softdep")) as f:
            for line in f:
                words = line.split()
                if len(words) < 3 or words[0] != "softdep":
                    continue
                pre = []
                mode = None
                for w in words[2:]:
                    if w.endswith(":"):
                        mode = w
                    elif mode == "pre:":
                        pre.append(w)
                soft[_mod_name(words[1])] = pre
    except FileNotFoundError:
        pass
    return soft


def _read_aliases(moddir):
    aliases = {}
    try:
        with open(os.path.join(moddir, "modules.alias")) as f:
            for line in f:
                words = line.split()
                if len(words) == 3 and words[0] == "alias" and \
                        not any(c in words[1] for c in "*?["):
                    aliases.setdefault(words[1], []).append(_mod_name(words[2]))
    except FileNotFoundError:
        pass
    return aliases


def _read_builtin(moddir):
    try:
        with open(os.path.join(moddir, "modules.builtin")) as f:
            return {_mod_name(line.strip()) for line in f if line.strip()}
    except FileNotFoundError:
        return set()


def resolve_modules(names, kernel=None):
    """Module files (relative to /lib/modules/VER) in load order.

    Hard dependencies come from modules.dep; softdep "pre:" modules are
    added when they resolve (an alias with several providers picks the
    *_generic one, which needs no particular CPU feature).  Built-in modules
    are skipped.  Unknown names raise LabError."""
    moddir = module_dir(kernel or lab_kernel())
    deps = _read_modules_dep(moddir)
    soft = _read_softdeps(moddir)
    aliases = _read_aliases(moddir)
    builtin = _read_builtin(moddir)
    order, state = [], {}

    def soft_target(name):
        n = _mod_name(name)
        if n in deps:
            return n
        cands = [c for c in aliases.get(name, []) if c in deps]
        generic = [c for c in cands if c.endswith("_generic")]
        return (generic or cands or [None])[0]

    def visit(n, chain):
        if state.get(n) == "done":
            return
        if state.get(n) == "visiting":
            raise LabError("module dependency cycle: " + " -> ".join(chain))
        state[n] = "visiting"
        for s in soft.get(n, []):
            t = soft_target(s)
            if t and t != n:
                visit(t, chain + [t])
        for d in deps[n][1]:
            visit(d, chain + [d])
        state[n] = "done"
        order.append(deps[n][0])

    for name in names:
        n = _mod_name(name)
        if n in deps:
            visit(n, [n])
        elif n not in builtin:
            raise LabError(f"kernel module {name} not found in {moddir}")
    return order


def _add_modules(cpio, names, kernel, dest_list):
    """Adds the module files and writes their load order to dest_list."""
    moddir = module_dir(kernel)
    ver = kernel_version(kernel)
    rels = resolve_modules(names, kernel)
    for rel in rels:
        if not rel.endswith(".ko"):
            raise LabError(f"{rel}: compressed modules are not supported "
                           "(busybox insmod reads plain .ko)")
        cpio.copy(f"/lib/modules/{ver}/{rel}", os.path.join(moddir, rel), 0o644)
    cpio.file(dest_list, "".join(f"/lib/modules/{ver}/{r}\n" for r in rels))
    return rels


# ---------------------------------------------------------------- caching

def _digest(*parts):
    h = hashlib.sha256(FORMAT_VERSION.encode())
    for p in parts:
        if isinstance(p, str):
            p = p.encode()
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:20]


def _file_key(path):
    st = os.stat(path)
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"


CACHE_MAX_AGE_S = 3 * 24 * 3600


def _cached(name, key, build):
    """Returns lab/out/NAME-KEY, building it with build(path) if absent."""
    path = os.path.join(out_dir(), f"{name}-{key}")
    if os.path.exists(path):
        os.utime(path)
        return path
    _prune(name)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        build(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _prune(name):
    """Drops NAME-* cache entries unused for CACHE_MAX_AGE_S: every new
    test script makes a new L2 initramfs, and lab/out would only grow."""
    cutoff = time.time() - CACHE_MAX_AGE_S
    for p in glob.glob(os.path.join(out_dir(), f"{name}-*")):
        try:
            if os.stat(p).st_mtime < cutoff:
                os.unlink(p)
        except FileNotFoundError:
            pass


def _write_gz(path, data):
    # Level 1: the kernel inflates it under TCG, where size barely matters
    # next to build time on the host.
    with open(path, "wb") as f:
        f.write(gzip.compress(data, compresslevel=1, mtime=0))


# ---------------------------------------------------------------- L2 initramfs

L2_INIT = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
while read -r m; do
  insmod "$m" || echo "kvzlab-l2: insmod $m failed"
done < /etc/kvzlab-modules
sh /kvzlab-l2-init
echo "kvzlab-l2: init script exited with $?, rebooting"
reboot -f
"""


def build_l2_initrd(init_script=None, modules=(), out=None, kernel=None):
    """Builds the L2 initramfs (gzip'd newc cpio) and returns its path.

    init_script: busybox sh text run after modules are loaded (None: the
    default init, see the module doc).  modules: names; dependencies are
    added.  out: where to copy it (default: the cached file itself)."""
    kernel = kernel or lab_kernel()
    script = DEFAULT_L2_INIT if init_script is None else init_script
    mods = list(modules)
    key = _digest(script, " ".join(mods), _file_key(busybox_path()),
                  _file_key(os.path.join(module_dir(kernel), "modules.dep")),
                  L2_INIT)

    def build(path):
        c = Cpio()
        _add_busybox(c)
        _add_modules(c, mods, kernel, "/etc/kvzlab-modules")
        c.file("/init", L2_INIT, 0o755)
        c.file("/kvzlab-l2-init", script, 0o755)
        _write_gz(path, c.bytes())

    cached = _cached("l2-initrd", key, build)
    if out:
        shutil.copyfile(cached, out)
        return out
    return cached


# ---------------------------------------------------------------- L1 initramfs

L1_INIT = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mkdir -p /dev/shm /dev/pts && mount -t tmpfs shm /dev/shm
mount -t devpts pts /dev/pts
[ -f /etc/kvzlab-env ] && . /etc/kvzlab-env
while read -r m; do
  insmod "$m" || echo "kvzlab-l1: insmod $m failed"
done < /etc/kvzlab-modules
ip link set lo up 2>/dev/null
# Evidence for an L2 vCPU that ends in a triple fault (issue 9): KVM's exits
# go to a ring buffer (the last 2 MiB per CPU), and an instance keeps only
# SVM shutdown exits (code 127), which is cheap to check at the end.
t=/sys/kernel/tracing
if mount -t tracefs nodev $t 2>/dev/null && mkdir $t/instances/shutdown; then
  echo 2048 > $t/buffer_size_kb
  echo 1 > $t/events/kvm/kvm_exit/enable
  echo 1 > $t/events/kvm/kvm_inj_exception/enable 2>/dev/null
  echo 'exit_reason == 127' > $t/instances/shutdown/events/kvm/kvm_exit/filter
  echo 1 > $t/instances/shutdown/events/kvm/kvm_exit/enable
  # Freeze the main ring at the first shutdown exit: a script that goes on
  # for minutes after it would otherwise overwrite the events that led to it.
  echo 'traceoff:1 if exit_reason == 127' > $t/events/kvm/kvm_exit/trigger
fi
# A heartbeat on L1's second serial port, which the host reads from a file
# of its own (so it never splits a console line): an L1 whose user space
# stops running for minutes, silent on the console too, is the emulator's
# failure (_Heartbeat), not a slow script.
[ -c /dev/ttyS1 ] && (while :; do echo beat > /dev/ttyS1; sleep 20; done) &
if [ ! -c /dev/kvm ]; then
  echo "kvzlab-l1: /dev/kvm missing after loading kvm-amd"
  rc=125
else
  cd /
  timeout "$KVZLAB_TIMEOUT" sh /kvzlab-l1-script
  rc=$?
  # Out of time: timeout(1) killed only the script's shell. A kvz-vmm
  # still running logs where its vCPUs are when it gets SIGTERM.
  if [ $rc = 124 ] || [ $rc = 143 ]; then
    killall -TERM kvz-vmm 2>/dev/null && sleep 3
  fi
fi
if grep -q kvm_exit $t/instances/shutdown/trace 2>/dev/null; then
  echo 0 > $t/tracing_on
  echo "KVZLAB-L2-SHUTDOWN: an L2 vCPU triple-faulted; its last KVM events:"
  pid=$(grep -m1 kvm_exit $t/instances/shutdown/trace | sed 's/^ *//; s/ .*//')
  grep -F -- "$pid" $t/trace | grep -B60 -m1 'reason shutdown' | cut -c1-200
fi
echo "KVZLAB-L1-EXIT: $rc"
poweroff -f
"""


# /bin/kvzlab-time LABEL MARKER CMD [ARGS...]: runs CMD (stdout+stderr piped)
# and prints "KVZLAB-TIME LABEL SECONDS" when a line containing MARKER shows
# up on its output, then "KVZLAB-TIME LABEL-exit SECONDS" when CMD has
# exited (SECONDS from the start of CMD, on L1's /proc/uptime clock: 10 ms
# resolution).  CMD's output is shown when KVZLAB_VERBOSE=1.  Exit status:
# CMD's; 3 when the marker never showed up.
L1_TIME_HELPER = r"""#!/bin/sh
label=$1; marker=$2; shift 2
now() { cut -d' ' -f1 /proc/uptime; }
t0=$(now)
{ "$@" 2>&1; echo "KVZLAB-CMD-RC $?"; } | {
  seen=0; rc=1
  while IFS= read -r line; do
    case "$line" in
      "KVZLAB-CMD-RC "*) rc=${line#KVZLAB-CMD-RC }; continue ;;
    esac
    case "$line" in
      *"$marker"*) [ $seen = 0 ] && echo "KVZLAB-TIME $label $(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}')"; seen=1 ;;
    esac
    [ "$KVZLAB_VERBOSE" = 1 ] && echo "[$label] $line"
  done
  echo "KVZLAB-TIME $label-exit $(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}')"
  [ $seen = 1 ] || { echo "kvzlab-time: $label: marker '$marker' never seen (exit $rc)"; exit 3; }
  exit "$rc"
}
"""


def parse_times(output):
    """{label: [seconds, ...]} from the KVZLAB-TIME lines of a lab's output."""
    times = {}
    for m in re.finditer(r"^KVZLAB-TIME (\S+) ([0-9.]+)$", output, re.M):
        times.setdefault(m.group(1), []).append(float(m.group(2)))
    return times


def compare(times, ours, theirs, what="s"):
    """Prints median figures of two labels and the ratio ours/theirs;
    returns the ratio (None when either label has no figures)."""
    import statistics
    a, b = times.get(ours, []), times.get(theirs, [])
    if not a or not b:
        print(f"{ours} vs {theirs}: missing figures ({len(a)} and {len(b)} runs)")
        return None
    ma, mb = statistics.median(a), statistics.median(b)
    ratio = ma / mb if mb else float("inf")
    print(f"{ours:>16}: median {ma:7.2f} {what}  runs {' '.join(f'{x:.2f}' for x in a)}")
    print(f"{theirs:>16}: median {mb:7.2f} {what}  runs {' '.join(f'{x:.2f}' for x in b)}")
    print(f"{'ratio':>16}: {ours}/{theirs} = {ratio:.2f}")
    return ratio


def qemu_l2_command(smp=1, memory="512M", cmdline="console=ttyS0 quiet panic=-1",
                    extra=""):
    """Shell text running qemu-system-x86_64 -accel kvm inside L1 (needs
    with_qemu=True) on the L2 kernel and initramfs, like vmm_script."""
    return ("qemu-system-x86_64 -L " + QEMU_DATA_L1 + " -accel kvm -cpu host"
            f" -smp {smp} -m {memory} -nodefaults -display none"
            " -serial stdio -no-reboot -kernel /l2/vmlinuz"
            f" -initrd /l2/initrd.cpio.gz -append {shlex.quote(cmdline)} {extra}")


def _ldd(binary):
    """Paths of the shared objects binary loads, the dynamic loader included."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True,
                       check=False)
    if "not a dynamic executable" in r.stdout + r.stderr:
        return []
    if r.returncode != 0:
        raise LabError(f"ldd {binary} failed: {r.stderr.strip()}")
    libs = []
    for line in r.stdout.splitlines():
        line = line.strip()
        m = re.match(r"\S+ => (/\S+) \(", line) or re.match(r"(/\S+) \(", line)
        if m:
            libs.append(m.group(1))
        elif "not found" in line:
            raise LabError(f"{binary}: library {line}")
    return libs


def with_libs(files):
    """files (host path -> path in L1) and the shared objects each loads."""
    out = dict(files)
    for src in files:
        for lib in _ldd(src):
            out[lib] = lib
    return out


# L1 shell helpers measuring downtime from outside as seed 004 does: ping
# the guest (10.0.9.2) every 10 ms across a move; `unpinger LABEL` prints
# "GAP LABEL MS ANSWERED SENT INTERVAL_MS": the longest run of lost replies
# times the interval L1 really kept (busy, it pings less often than asked).
PINGER_SH = r"""
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
pinger() { p0=$(now); ping -i 0.01 10.0.9.2 > /tmp/ping.log 2>&1 & pp=$!; }
unpinger() { kill -INT $pp; wait $pp 2>/dev/null
  awk -v el="$(since $p0)" -v label=$1 '
    /seq=/ { s = $0; sub(/.*seq=/, "", s); sub(/ .*/, "", s); s += 0
             if (n && s - prev > gap) gap = s - prev; prev = s; n++ }
    / packets transmitted/ { sent = $1 }
    END { iv = (sent > 0 ? el / sent : 0)
          printf "GAP %s %.0f %d %d %.1f\n", label, gap * iv * 1000, n, sent, iv * 1000 }' /tmp/ping.log; }
"""


# L1 shell helpers for two kvzd "hosts" a and b in one L1 (kvzd migration
# tests). `lan_host X ADDR` makes network namespace nsX whose bridge kvzbr0
# (address ADDR/24) has a veth into L1's own kvzbr0, so that the bridges
# are one LAN; it needs $IP (iproute2's ip: busybox's lacks netns) and
# L1's kvzbr0. ka/kb: kvz on a's or b's kvzd (/tmp/kX/sock). `pair_nodes
# ADDR_A ADDR_B`: each kvzd (TCP API on ADDR:7000, token /tmp/kX/tok) a
# node of the other; prints NODE-A= and NODE-B= with kvz's status.
LAN_HOST_SH = r"""
lan_host() {
  $IP netns add ns$1 && $IP link add l$1 type veth peer name x$1 && $IP link set l$1 master kvzbr0 up &&
  $IP link set x$1 netns ns$1 || return 1
  nsenter --net=/run/netns/ns$1 sh -c "$IP link set lo up && $IP link add kvzbr0 type bridge &&
    $IP link set x$1 master kvzbr0 up && $IP link set kvzbr0 up && $IP addr add $2/24 dev kvzbr0"
}
ka() { KVZ_SOCKET=/tmp/ka/sock kvz "$@"; }
kb() { KVZ_SOCKET=/tmp/kb/sock kvz "$@"; }
pair_nodes() {
  cp /tmp/kb/tok /tmp/ka/b-token && cp /tmp/ka/tok /tmp/kb/a-token
  chmod 600 /tmp/ka/b-token /tmp/kb/a-token
  ka node add b http://$2:7000 --token-file /tmp/ka/b-token; echo "NODE-A=$?"
  kb node add a http://$1:7000 --token-file /tmp/kb/a-token; echo "NODE-B=$?"
}
"""


def _add_binary(cpio, src, dest):
    cpio.copy(dest, src, 0o755)
    for lib in _ldd(src):
        if not cpio.has(lib):
            cpio.copy(lib, lib, 0o755)


def _base_l1_segment(kernel, l1_modules):
    mods = L1_MODULES + list(l1_modules)
    key = _digest(" ".join(mods), L1_INIT, L1_TIME_HELPER,
                  _file_key(busybox_path()),
                  _file_key(os.path.join(module_dir(kernel), "modules.dep")))

    def build(path):
        c = Cpio()
        _add_busybox(c)
        _add_modules(c, mods, kernel, "/etc/kvzlab-modules")
        c.file("/init", L1_INIT, 0o755)
        c.file("/bin/kvzlab-time", L1_TIME_HELPER, 0o755)
        _write_gz(path, c.bytes())

    return _cached("l1-base", key, build)


def _qemu_segment():
    qemu = shutil.which("qemu-system-x86_64")
    fw = []
    for name in QEMU_FIRMWARE:
        for d in QEMU_FIRMWARE_DIRS:
            p = os.path.join(d, name)
            if os.path.exists(p):
                fw.append((name, p))
                break
    key = _digest(_file_key(qemu), *[_file_key(p) for _, p in fw])

    def build(path):
        c = Cpio()
        _add_binary(c, qemu, "/bin/qemu-system-x86_64")
        for name, p in fw:
            c.copy(f"{QEMU_DATA_L1}/{name}", p, 0o644)
        # Uncompressed: 50 MB would take seconds to inflate under TCG.
        with open(path, "wb") as f:
            f.write(c.bytes())

    return _cached("l1-qemu", key, build)


def _add_tree(cpio, host, l1):
    """Adds a file, or a directory with everything under it, at path l1."""
    if os.path.isfile(host):
        cpio.copy(l1, host)
        return
    if not os.path.isdir(host):
        raise LabError(f"file to add to L1 missing: {host}")
    cpio.dir(l1)
    for root, dirs, names in os.walk(host):
        rel = os.path.relpath(root, host)
        dest = l1 if rel == "." else os.path.join(l1, rel)
        for d in sorted(dirs):
            p = os.path.join(root, d)
            if os.path.islink(p):
                cpio.symlink(os.path.join(dest, d), os.readlink(p))
            else:
                cpio.dir(os.path.join(dest, d))
        for n in sorted(names):
            p = os.path.join(root, n)
            if os.path.islink(p):
                cpio.symlink(os.path.join(dest, n), os.readlink(p))
            elif os.path.isfile(p):
                cpio.copy(os.path.join(dest, n), p)


def _run_segment(l1_script, files, vmm, l2_initrd, kernel, timeout):
    c = Cpio()
    if vmm:
        _add_binary(c, vmm, "/bin/kvz-vmm")
    c.copy("/l2/vmlinuz", kernel, 0o644)
    c.copy("/l2/initrd.cpio.gz", l2_initrd, 0o644)
    for host, l1 in (files or {}).items():
        _add_tree(c, host, l1)
    c.file("/kvzlab-l1-script", l1_script, 0o755)
    c.file("/etc/kvzlab-env", f"export KVZLAB_TIMEOUT={int(timeout)}\n")
    return c.bytes()


def build_l1_initrd(l1_script, out, files=None, vmm=None, l2_init=None,
                    l2_modules=(), l1_modules=(), with_qemu=False,
                    timeout=600, kernel=None):
    """Writes L1's initramfs to out: cached segments (busybox + modules +
    /init, optionally QEMU) followed by this run's files, concatenated (the
    kernel unpacks concatenated cpio archives in order)."""
    kernel = kernel or lab_kernel()
    l2 = build_l2_initrd(l2_init, l2_modules, kernel=kernel)
    segs = [_base_l1_segment(kernel, l1_modules)]
    if with_qemu:
        segs.append(_qemu_segment())
    run = _run_segment(l1_script, files, vmm, l2, kernel, timeout)
    with open(out, "wb") as f:
        for s in segs:
            with open(s, "rb") as g:
                shutil.copyfileobj(g, f)
            f.write(_pad4(f.tell()))
        f.write(run)
    return out


# ---------------------------------------------------------------- running

@dataclasses.dataclass
class LabResult:
    output: str          # L1 console (L1 kernel, script and L2 output), \n line ends
    exit_code: object    # int: l1_script's exit status; None: L1 did not report one
    timed_out: bool      # the host-side timeout killed QEMU
    duration: float      # seconds, QEMU start to exit
    qemu_returncode: int


def _lab_lock():
    """Serializes labs: two TCG runs on two cores would both crawl."""
    f = open(os.path.join(out_dir(), ".lab.lock"), "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("kvzlab: waiting for another lab run to finish", file=sys.stderr)
        fcntl.flock(f, fcntl.LOCK_EX)
    return f


def l1_cmdline(smp):
    args = ["console=ttyS0", "quiet", "panic=-1", "tsc=reliable"]
    if smp > 1:
        # With an idle L1 vCPU halted, QEMU TCG's emulated SVM sometimes
        # loses the wake-up: L1 or L2 then hangs in an RCU stall (seen in
        # 5 of 8 boots of a 2-vCPU L2 in a 2-vCPU L1, multi- or single-threaded
        # TCG; 0 of 11 with idle=poll).
        # Polling costs host CPU only while the lab runs.
        args.append("idle=poll")
    extra = os.environ.get("KVZ_LAB_L1_APPEND", "")
    return " ".join(args + extra.split())


def qemu_l1_command(initrd, smp, mem_mb, kernel, extra_qemu_args=(),
                    heartbeat=None):
    """heartbeat: a file that L1's ttyS1 (its heartbeat) is written to."""
    # KVZ_LAB_ACCEL (e.g. tcg,thread=single) is a knob for lab debugging.
    accel = os.environ.get("KVZ_LAB_ACCEL", "tcg")
    beat = ["-serial", f"file:{heartbeat}"] if heartbeat else []
    return ["qemu-system-x86_64", "-accel", accel, "-cpu", "EPYC,+svm,+npt",
            "-smp", str(smp), "-m", str(mem_mb), "-nodefaults",
            "-display", "none", "-serial", "stdio", *beat, "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append", l1_cmdline(smp), *extra_qemu_args]


# Exit statuses of busybox timeout(1) when the L1 script ran out of time.
SCRIPT_TIME_LIMIT_CODES = (124, 143)


def bench_require(name, *paths):
    """For bench/ scripts: exits with one line when the lab cannot run or a
    binary the bench needs is not built."""
    reason = lab_missing()
    if reason:
        sys.exit(f"{name}: nested lab unavailable: {reason}")
    for p in paths:
        if not os.path.exists(p):
            sys.exit(f"{name}: {p} not built")


def lab_failure(res, l2_triple_fault_expected=False):
    """Why a lab run gave no result of the script's own, or None.

    These are the ways the emulated machine itself fails: TCG's emulated SVM
    has been seen to crash L1's kernel (a page fault in KVM's LAPIC timer
    code), rarely to leave L2 stuck with no progress until the script's
    time limit, and rarely to make an L2 vCPU triple-fault in the middle of
    a run (issue 9: seen after a balloon inflation, a few seconds into
    snapshot restores, and in a plain boot -> poweroff cycle of
    lab_vmm_stop with 1 vCPU and no restore at all; 16 reruns of each
    passed, and 30 restores in a row by hand showed none).  A run with an L2
    triple fault that the caller did not ask for counts even when the
    script went on to its end: scripts keep going after a dead guest so as
    to print their evidence, and their checks then fail in the caller.
    A kernel stuck for good (_Stall) counts too.
    Otherwise a script that ran to its end never counts."""
    if res.timed_out:
        return f"QEMU did not finish within {res.duration:.0f} s"
    if STALL_MARKER in res.output:
        return "a kernel in the lab was stuck for good (" + \
            res.output.split(STALL_MARKER, 1)[1].split("\n", 1)[0].strip() + ")"
    if res.exit_code is None:
        return "L1 ended without reporting the script's exit status (L1 kernel crash?)"
    if res.exit_code in SCRIPT_TIME_LIMIT_CODES:
        return f"the L1 script hit its time limit (exit {res.exit_code})"
    if L2_SHUTDOWN_MARKER in res.output and not l2_triple_fault_expected:
        return ("an L2 vCPU triple-faulted (SVM shutdown exit; its last KVM "
                "events are in the console)")
    return None


def run_in_lab(l1_script, files=None, smp=2, mem_mb=2048, timeout=600,
               l2_init=None, l2_modules=(), extra_qemu_args=(), l1_modules=(),
               vmm=None, with_qemu=False, stream=None, kernel=None,
               retries=1, l2_triple_fault_expected=False):
    """Boots L1, runs l1_script there (busybox sh) and returns a LabResult.

    timeout bounds the script inside L1; the host kills QEMU 120 s later.
    vmm: kvz-vmm to copy to /bin/kvz-vmm (default BUILD/src/vmm/kvz-vmm;
    False: none).  stream: a text file to copy the console to as it comes.
    retries: how many more times a run that failed by lab_failure() is
    started again; each such failure is reported on stderr with the tail
    of its console (and the L1 report of an L2 triple fault, whole), so a
    flaky emulator stays visible and a thing that always fails still
    fails.  l2_triple_fault_expected: the script makes L2 triple-fault on
    purpose, so L1's report of one is no reason to run again."""
    for attempt in range(retries + 1):
        res = _run_in_lab_once(l1_script, files, smp, mem_mb, timeout,
                               l2_init, l2_modules, extra_qemu_args,
                               l1_modules, vmm, with_qemu, stream, kernel)
        why = lab_failure(res, l2_triple_fault_expected)
        if why is None or attempt == retries:
            return res
        print(f"kvzlab: attempt {attempt + 1} failed: {why}; last console "
              f"lines:\n{_failure_evidence(res.output)}\n"
              "kvzlab: starting the lab run again", file=sys.stderr, flush=True)
    return res


def _failure_evidence(output):
    """The console's last lines, and L1's triple-fault report if any."""
    lines = output.splitlines()
    tail = lines[-15:]
    for i, line in enumerate(lines):
        if line.startswith(L2_SHUTDOWN_MARKER):
            report = lines[max(0, i - 10):i + 62]
            return "\n".join(report + ["..."] + tail)
    return "\n".join(tail)


def _run_in_lab_once(l1_script, files, smp, mem_mb, timeout, l2_init,
                     l2_modules, extra_qemu_args, l1_modules, vmm, with_qemu,
                     stream, kernel):
    reason = lab_missing()
    if reason:
        raise LabError(reason)
    kernel = kernel or lab_kernel()
    if vmm is None:
        vmm = default_vmm()
        if not os.path.exists(vmm):
            raise LabError(f"kvz-vmm not built: {vmm} missing "
                           "(ninja -C BUILD src/vmm/kvz-vmm; set KVZ_BUILD_DIR)")
    initrd = os.path.join(out_dir(), f"l1-run-{os.getpid()}.cpio")
    beat = os.path.join(out_dir(), f"l1-heartbeat-{os.getpid()}")
    lock = _lab_lock()
    try:
        build_l1_initrd(l1_script, initrd, files=files, vmm=vmm or None,
                        l2_init=l2_init, l2_modules=l2_modules,
                        l1_modules=l1_modules, with_qemu=with_qemu,
                        timeout=timeout, kernel=kernel)
        cmd = qemu_l1_command(initrd, smp, mem_mb, kernel, extra_qemu_args,
                              heartbeat=beat)
        return _run_qemu(cmd, timeout + 120, stream, heartbeat=beat)
    finally:
        for path in (initrd, beat):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        lock.close()


class _Stall:
    """Tells a kernel stuck for good from a slow one, line by line.

    A TCG lab has been seen to leave L1's CPU 0 stuck in the rcu_preempt
    kthread until the script's limit (soft lockup reports growing from 22 s
    to 1400 s, RCU stall reports every minute): nothing comes of such a run
    but 25 minutes lost.  A loaded host makes a single report of either now
    and then, so only a soft lockup of LOCKUP_S or more, or the RCU_REPORTS'th
    stall report, counts; then the run is stopped and lab_failure() calls
    it the emulator's failure.  Kernel lines only (a "[ seconds]" stamp at
    the start): those of L1, or of an L2 whose console goes out unprefixed."""
    LOCKUP_S = 100
    RCU_REPORTS = 3
    GRACE_S = 10     # more console for the evidence before QEMU is stopped
    LOCKUP_RE = re.compile(r"^\[\s*[\d.]+\] watchdog: BUG: soft lockup - CPU#\d+ stuck for (\d+)s")
    RCU_RE = re.compile(r"^\[\s*[\d.]+\] rcu: INFO: rcu_\w+ (?:self-)?detected stalls?")

    def __init__(self):
        self.rcu_reports = 0
        self.why = None

    def feed(self, line):
        """Returns why the lab is stuck for good once it is, else None."""
        m = self.LOCKUP_RE.match(line)
        if m and int(m.group(1)) >= self.LOCKUP_S and not self.why:
            self.why = line.strip()
        if self.RCU_RE.match(line):
            self.rcu_reports += 1
            if self.rcu_reports >= self.RCU_REPORTS and not self.why:
                self.why = f"{self.rcu_reports} RCU stall reports, the last: {line.strip()}"
        return self.why


class _Heartbeat:
    """Tells an L1 that stopped running from a slow one.

    L1's init writes a line to its ttyS1 every 20 s, which QEMU appends to a
    file of the host's.  A CI rehearsal saw one L1 silent for over 15
    minutes, console and all, until it was killed by hand: neither its
    kernel nor its user space ran.  Once the first beat has come (so a slow
    boot never counts), SILENT_S without one is that failure; a loaded host
    delays a beat by seconds, not minutes."""
    SILENT_S = 240

    def __init__(self, path):
        self.path = path
        self.size = 0
        self.last = None    # monotonic time the file last grew

    def check(self, now):
        """Returns why L1 is taken to be stopped, else None."""
        if self.path is None:      # a caller without a heartbeat port
            return None
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return None
        if size != self.size:
            self.size, self.last = size, now
            return None
        if self.last is not None and now - self.last >= self.SILENT_S:
            return f"no heartbeat from L1 for {now - self.last:.0f} s (its user space stopped running)"
        return None


def _run_qemu(cmd, host_timeout, stream, heartbeat=None):
    start = time.monotonic()
    deadline = start + host_timeout
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent)
    old_term = _raise_on_sigterm()
    chunks, pending, timed_out = [], b"", False
    stall, stalled_at = _Stall(), None
    beat = _Heartbeat(heartbeat)
    fd = proc.stdout.fileno()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if stalled_at is not None and time.monotonic() - stalled_at > _Stall.GRACE_S:
                chunks.append(f"{STALL_MARKER} {stall.why}; QEMU stopped\n")
                break
            silent = beat.check(time.monotonic()) if stalled_at is None else None
            if silent:
                stall.why, stalled_at = silent, time.monotonic()
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            pending += data.replace(b"\r\n", b"\n").replace(b"\r", b"")
            lines = pending.split(b"\n")
            pending = lines.pop()
            for line in lines:
                text = line.decode(errors="replace") + "\n"
                chunks.append(text)
                if stalled_at is None and stall.feed(text):
                    stalled_at = time.monotonic()
                if stream:
                    stream.write(text)
                    stream.flush()
    finally:
        if proc.poll() is None:
            proc.kill()
        rc = proc.wait()
        proc.stdout.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    if pending:
        chunks.append(pending.decode(errors="replace") + "\n")
    output = "".join(chunks)
    return LabResult(output=output, exit_code=_l1_exit_code(output),
                     timed_out=timed_out, duration=time.monotonic() - start,
                     qemu_returncode=rc)


def _die_with_parent():
    """In QEMU's child before exec: SIGKILL it when kvzlab dies, even by
    SIGKILL (a test's own timeout), so no TCG guest outlives its caller."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os.write(2, b"kvzlab: prctl(PR_SET_PDEATHSIG) failed\n")


class _Terminated(Exception):
    pass


def _raise_on_sigterm():
    """Makes SIGTERM (meson's test timeout, timeout(1)) unwind through the
    finally that kills QEMU instead of leaving a TCG guest running."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise _Terminated(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


def _l1_exit_code(output):
    codes = re.findall(r"^" + re.escape(L1_EXIT_MARKER) + r" (\d+)", output,
                       re.M)
    return int(codes[-1]) if codes else None


# ---------------------------------------------------------------- L1 scripts

def vmm_script(vmm_args, stdin="/dev/console"):
    """An l1_script running kvz-vmm with the L2 kernel and initramfs."""
    args = " ".join(shlex.quote(a) for a in vmm_args)
    return ("kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz "
            f"{args} < {stdin}\n")


# ---------------------------------------------------------------- CLI

def _parse_adds(adds):
    files = {}
    for a in adds:
        host, sep, l1 = a.partition(":")
        if not sep or not host or not l1.startswith("/"):
            raise LabError(f"--add {a}: expected HOSTPATH:/L1PATH")
        files[host] = l1
    return files


def _cli(argv):
    import argparse
    p = argparse.ArgumentParser(prog="kvzlab.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    rv = sub.add_parser("run-vmm", help="boot L2 under kvz-vmm inside L1")
    rv.add_argument("--smp", type=int, default=2)
    rv.add_argument("--memory", type=int, default=2048, help="L1 MiB")
    rv.add_argument("--l2-init")
    rv.add_argument("--l2-modules", default="")
    rv.add_argument("--add", action="append", default=[])
    rv.add_argument("--timeout", type=int, default=600)
    rv.add_argument("--retries", type=int, default=1,
                    help="runs again after an emulator failure (see lab_failure)")
    rv.add_argument("--l2-triple-fault-expected", action="store_true",
                    help="the guest triple-faults on purpose: no rerun for it")
    rv.add_argument("vmm_args", nargs="*")
    r = sub.add_parser("run", help="run a shell script inside L1")
    r.add_argument("--smp", type=int, default=2)
    r.add_argument("--memory", type=int, default=2048, help="L1 MiB")
    r.add_argument("--qemu", action="store_true", help="add qemu to L1")
    r.add_argument("--no-vmm", action="store_true", help="do not add kvz-vmm")
    r.add_argument("--l2-init")
    r.add_argument("--l2-modules", default="")
    r.add_argument("--l1-modules", default="")
    r.add_argument("--add", action="append", default=[])
    r.add_argument("--timeout", type=int, default=600)
    r.add_argument("--retries", type=int, default=1)
    r.add_argument("--script", required=True)
    b = sub.add_parser("build-l2", help="build an L2 initramfs")
    b.add_argument("--out", required=True)
    b.add_argument("--init")
    b.add_argument("--modules", default="")
    m = sub.add_parser("modules", help="print a module load order")
    m.add_argument("names", nargs="+")
    a = p.parse_args(argv)

    def read(path):
        if path is None:
            return None
        with open(path) as f:
            return f.read()

    if a.cmd == "modules":
        print("\n".join(resolve_modules(a.names)))
        return 0
    if a.cmd == "build-l2":
        build_l2_initrd(read(a.init), a.modules.split(), out=a.out)
        return 0
    if a.cmd == "run-vmm":
        script = vmm_script(a.vmm_args)
        kw = dict(smp=a.smp, mem_mb=a.memory, l2_init=read(a.l2_init),
                  l2_modules=a.l2_modules.split(), files=_parse_adds(a.add),
                  l2_triple_fault_expected=a.l2_triple_fault_expected)
    else:
        script = read(a.script)
        kw = dict(smp=a.smp, mem_mb=a.memory, l2_init=read(a.l2_init),
                  l2_modules=a.l2_modules.split(), files=_parse_adds(a.add),
                  l1_modules=a.l1_modules.split(), with_qemu=a.qemu,
                  vmm=False if a.no_vmm else None)
    res = run_in_lab(script, timeout=a.timeout, stream=sys.stdout,
                     retries=a.retries, **kw)
    if res.timed_out:
        print(f"kvzlab: L1 timed out after {res.duration:.0f} s, killed",
              file=sys.stderr)
    code = res.exit_code if res.exit_code is not None else 255
    print(f"LAB-EXIT: {code}", flush=True)
    return code


def main(argv=None):
    try:
        return _cli(sys.argv[1:] if argv is None else argv)
    except LabError as e:
        print(f"kvzlab: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
