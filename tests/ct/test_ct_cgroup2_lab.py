"""kvz-ct on a pure cgroup v2 host: this machine's controllers are bound to
cgroup v1, so the v2 path runs inside the nested lab's L1 (Debian's kernel
booted under QEMU), where a fresh cgroup2 hierarchy gets every controller.
The container's root is a busybox tree built in L1's tmpfs (--rootfs). The
device allow-list's v2 form (a BPF program) is tested here too."""
import os
import re

import pytest

import ctlab
from ctlab import BUILD_DIR, kvzlab

KVZCT = os.path.join(BUILD_DIR, "src", "ct", "kvz-ct")
PROBE = os.path.join(BUILD_DIR, "tests", "ct", "ctprobe")

# Issue 8 on pure cgroup v2: the attacks of test_attack_kernfs.py that this
# host's hybrid cgroups and kernel cannot show (a cgroup2 view, sysrq, kcore),
# from a default container (user namespace); "A-x=RC" lines, the host's side as "H-x=V"; then
# the placement under a caller's own cgroup ("P-x", "Q-x").
KERNFS = r"""
U=/tmp/uroot
cp -a $R $U && chmod 755 /tmp
echo "H-core0=$(cat /proc/sys/kernel/core_pattern)"
$CT run --name u $RUN --rootfs $U --detach --pids 50 -- sleep 1000; echo "A-start=$?"
$CT exec --name u $RUN -- sh -c '
mkdir -p /tmp/m
umount /sys/fs/cgroup 2>/dev/null; echo "A-umount=$?"
mount -o remount,rw /sys/fs/cgroup 2>/dev/null; echo "A-remount=$?"
mount -o remount,rw /sys 2>/dev/null; echo "A-sysrw=$?"
umount /proc/sys 2>/dev/null; echo "A-umountsys=$?"
echo "|/tmp/pwn" > /proc/sys/kernel/core_pattern; echo "A-core=$?"
echo h > /proc/sysrq-trigger; echo "A-sysrq=$?"
echo "A-kcore=$(cat /proc/kcore 2>/dev/null | wc -c)"
echo "A-sched=$(cat /proc/sched_debug 2>/dev/null | wc -c)"
echo "A-cgmount=$(grep " /sys/fs/cgroup " /proc/mounts | cut -d" " -f3,4)"
echo 1000 > /sys/fs/cgroup/pids.max; echo "A-pidsmax=$?"
echo $$ > /sys/fs/cgroup/cgroup.procs; echo "A-procs=$?"
mkdir /sys/fs/cgroup/sub; echo "A-mkdir=$?"
mount -t cgroup -o memory none /tmp/m 2>/dev/null; echo "A-v1=$?"
if mount -t cgroup2 none /tmp/m; then
  echo "A-v2subdirs=$(find /tmp/m -mindepth 1 -type d | wc -l)"
  echo 1000 > /tmp/m/pids.max; echo "A-v2pids=$?"
  echo $$ > /tmp/m/cgroup.procs; echo "A-v2procs=$?"
  mkdir /tmp/m/sub; echo "A-v2mkdir=$?"
fi
echo "A-cgroup=$(cat /proc/self/cgroup)"' 2>&1
echo "H-core1=$(cat /proc/sys/kernel/core_pattern)"
echo "H-pids=$(cat /sys/fs/cgroup/kvz/u/pids.max)"
[ -e /sys/fs/cgroup/kvz/u/sub ] && echo "H-sub=yes" || echo "H-sub=no"
$CT stop --name u $RUN --timeout 1
mkdir /sys/fs/cgroup/caller /sys/fs/cgroup/caller2
sh -c "echo \$\$ > /sys/fs/cgroup/caller/cgroup.procs; exec $CT run --name p $RUN --rootfs $R --detach --pids 30 -- sleep 1000"; echo "P-run=$?"
echo "P-pids=$(cat /sys/fs/cgroup/caller/kvz/p/pids.max)"
echo "P-sup=$(cat /sys/fs/cgroup/caller/kvz/_supervisors/cgroup.procs | wc -l)"
echo "P-caller=$(cat /sys/fs/cgroup/caller/cgroup.procs | wc -l)"
echo "P-cgroup=$($CT exec --name p $RUN -- cat /proc/self/cgroup)"
$CT stop --name p $RUN --timeout 1; echo "P-stop=$?"
[ -e /sys/fs/cgroup/caller/kvz/p ] && echo "P-left=yes" || echo "P-left=no"
sh -c "echo \$\$ > /sys/fs/cgroup/caller2/cgroup.procs; sleep 30 & $CT run --name q $RUN --rootfs $R -- true; echo Q-rc=\$?; kill \$!" 2>&1
"""

# The part below runs in ctlab.host_script()'s "host".
SCRIPT = ctlab.host_script(r"""
echo "CONTROLLERS $(cat /sys/fs/cgroup/cgroup.controllers)"
R=/tmp/root
mkdir -p $R/bin $R/proc $R/sys $R/dev $R/tmp $R/etc
cp /bin/busybox $R/bin/busybox
for a in sh hostname cat sleep echo true; do ln -s busybox $R/bin/$a; done
cp /ctprobe $R/bin/ctprobe
CT="/bin/kvz-ct"
RUN="--run-dir /tmp/run"
$CT run --name a $RUN --rootfs $R --memory 32M:64M -- ctprobe alloc 100; echo "BIG=$?"
$CT run --name a $RUN --rootfs $R --memory 32M:64M -- ctprobe alloc 40; echo "SMALL=$?"
$CT run --name a $RUN --rootfs $R --pids 10 -- ctprobe forks 50
$CT run --name a $RUN --rootfs $R --hostname v2host -- hostname
$CT run --name b $RUN --rootfs $R --detach --memory 32M:64M --cpus 0.5 --pids 50 --cpu-weight 50 -- sleep 1000
echo "DETACH=$?"
D=/sys/fs/cgroup/kvz/b
echo "MAX=$(cat $D/memory.max) HIGH=$(cat $D/memory.high) CPU=$(cat $D/cpu.max) PIDS=$(cat $D/pids.max) W=$(cat $D/cpu.weight)"
$CT exec --name b $RUN -- ctprobe alloc 100; echo "EXECBIG=$?"
$CT set --name b $RUN --memory 128M:256M; echo "SET=$?"
echo "MAX2=$(cat $D/memory.max)"
$CT exec --name b $RUN -- ctprobe alloc 100; echo "EXECBIG2=$?"
$CT exec --name b $RUN -- cat /proc/self/cgroup
$CT stop --name b $RUN --timeout 1; echo "STOP=$?"
[ -e $D ] && echo "LEFT-CGROUP" || echo "CGROUP-GONE"
ls /tmp/run
# Device allow-list (a BPF program on v2): L1 has no disk, so a block node
# the "host" puts in the root gives ENXIO where allowed, EPERM where the
# program refuses it; the kmsg line must not reach L1's kernel log.
# --privileged: the program itself is under test (in a user namespace mknod
# of any device is refused before the cgroup is asked, and the root's nodev
# is locked; a privileged root lifts nodev first).
mknod $R/hostdisk b 254 0 && mknod $R/hostkmsg c 1 11 && chmod 666 $R/hostdisk $R/hostkmsg
$CT run --name d $RUN --rootfs $R --privileged -- sh -c 'mount -o remount,bind,dev /; ctprobe mknod /tmp/blk b 7 0; ctprobe mknod /tmp/nul c 1 3;
  ctprobe open /hostdisk r; ctprobe write /hostkmsg KVZ-LAB-KMSG; ctprobe open /dev/null rw;
  ctprobe sys keyctl' | sed 's/^/DEV /'
dmesg | grep -q KVZ-LAB-KMSG && echo KMSG-LEAK
$CT run --name d $RUN --rootfs $R --privileged --device $R/hostdisk:r -- ctprobe open /dev/hostdisk r | sed 's/^/DEVX /'
""" + KERNFS + r"""
echo LAB-CT-DONE""")


def test_cgroup_v2_in_lab():
    kvzlab.skip_unless_lab()
    if not os.path.exists(KVZCT) or not os.path.exists(PROBE):
        pytest.skip(f"kvz-ct or ctprobe not built in {BUILD_DIR}")
    files = {KVZCT: "/bin/kvz-ct", PROBE: "/ctprobe"}
    for lib in kvzlab._ldd(KVZCT):
        files[lib] = lib
    res = kvzlab.run_in_lab(SCRIPT, files=files, smp=1, mem_mb=1024, timeout=300, vmm=False)
    out = res.output
    assert "LAB-CT-DONE" in out, out[-3000:]
    controllers = re.search(r"CONTROLLERS (.*)", out).group(1).split()
    assert {"memory", "pids", "cpu"} <= set(controllers), controllers
    assert "BIG=137" in out and "allocated 100" not in out.split("BIG=")[0], out[-3000:]
    assert "allocated 40" in out and "SMALL=0" in out
    forks = int(re.search(r"forked (\d+) errno 11", out).group(1))
    assert 5 <= forks < 10, forks
    assert "\nv2host\n" in out
    assert "DETACH=0" in out
    assert "MAX=67108864 HIGH=33554432 CPU=50000 100000 PIDS=50 W=50" in out
    assert "EXECBIG=137" in out and "SET=0" in out and "MAX2=268435456" in out
    assert "EXECBIG2=0" in out
    assert re.search(r"^0::/$", out, re.M), out[-3000:]  # cgroup namespace root
    assert "STOP=0" in out and "CGROUP-GONE" in out
    dev = re.findall(r"^DEV (.*)$", out, re.M)
    assert dev == ["mknod errno 1", "mknod errno 0", "open errno 1", "write errno 1",
                   "open errno 0", "keyctl errno 1"], out[-3000:]
    assert "KMSG-LEAK" not in out
    assert re.findall(r"^DEVX (.*)$", out, re.M) == ["open errno 6"], out[-3000:]  # ENXIO: allowed
    check_kernfs(out)


def check_kernfs(out):
    v = dict(re.findall(r"^([AHPQ]-\w+)=(.*)$", out, re.M))
    assert v.get("A-start") == "0", out[-3000:]
    # Undoing kvz-ct's mounts, writing global knobs and the cgroup: refused.
    for k in ("A-umount", "A-remount", "A-sysrw", "A-umountsys", "A-core", "A-sysrq",
              "A-pidsmax", "A-procs", "A-mkdir", "A-v1"):
        assert v.get(k, "0") != "0", (k, out[-3000:])
    for k in ("A-v2pids", "A-v2procs", "A-v2mkdir"):  # only if cgroup2 mounted at all
        assert v.get(k, "1") != "0", (k, out[-3000:])
    assert v.get("A-v2subdirs", "0") == "0"
    assert v["A-kcore"] == "0" and v["A-sched"] == "0"
    assert v["A-cgmount"].split()[0] == "cgroup2" and v["A-cgmount"].split()[1].startswith("ro,")
    assert v["A-cgroup"] == "0::/"
    assert v["H-core0"] == v["H-core1"] and v["H-pids"] == "50" and v["H-sub"] == "no"
    # Placement under the caller's own cgroup, kvz-ct in the leaf _supervisors.
    assert v["P-run"] == "0" and v["P-pids"] == "30" and v["P-sup"] == "1", out[-3000:]
    assert v["P-caller"] == "0" and v["P-cgroup"] == "0::/"
    assert v["P-stop"] == "0" and v["P-left"] == "no"
    assert v["Q-rc"] == "1" and "holds processes other than kvz-ct's" in out
