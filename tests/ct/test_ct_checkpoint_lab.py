"""kvz-ct checkpoint and restore with CRIU (issue 12), inside the nested
lab's L1: this host's kernel fails `criu check` (test_ct_checkpoint.py
asserts the refusal there), Debian's 6.1 kernel in L1 passes it.

One container on a bridge runs, as its init's children, a process holding
a memory pattern with its checksum (ctprobe mempattern), a counter written
to a file every 200 ms, and a TCP echo server with an established
connection from a client on the host side. Its limits are changed with
`set` before the checkpoint. Shown: a dump that fails midway (its directory
on a tiny tmpfs) leaves it running unharmed; checkpoint ends it and its
supervisor and leaves nothing behind; restore brings it back under a new
supervisor with the same limits, the veth's new host end on the bridge
behind its anti-spoofing table, the counter continuing, the checksum
matching and the connection answering on the same port; list, exec, a
second checkpoint with --leave-running, and stop work on it; a restore from
damaged images fails with one line and leaves nothing. A second container
with a console socket goes through checkpoint and restore too."""
import os
import re
import shutil
import sys

import pytest

import ctlab
from ctlab import BUILD_DIR, kvzlab

KVZCT = os.path.join(BUILD_DIR, "src", "ct", "kvz-ct")
PROBE = os.path.join(BUILD_DIR, "tests", "ct", "ctprobe")

# What criu runs besides itself: tar and gzip (tmpfs contents), iproute2's
# ip (addresses and routes of the network namespace; busybox's lacks
# `save`), iptables-save/-restore and their legacy forms (CRIU asks both
# which flavour they are, and restores the rules; links made by SETUP).
# Put first on PATH in L1 as /usr/local/sbin.
TOOLS = {"criu": "criu", "tar": "tar", "gzip": "gzip", "ip": "ip",
         "xtables-nft-multi": "xtables-nft-multi", "xtables-legacy-multi": "xtables-legacy-multi",
         "nft": "nft", "mkfs.btrfs": "mkfs.btrfs", "btrfstune": "btrfstune"}

# criu check's needs in L1, conntrack over netlink (criu dumps a network
# namespace's conntrack entries: without it, EINVAL), the bridge and the
# nftables objects of kvz-ct's anti-spoofing table, loop and btrfs for a
# private area.
MODULES = ["crc32c_generic", "libcrc32c", "nfnetlink", "nf_tables", "inet_diag", "tcp_diag",
           "udp_diag", "raw_diag", "unix_diag", "netlink_diag", "af_packet_diag", "veth",
           "bridge", "nft_meta_bridge", "nft_objref", "nf_conntrack_netlink", "loop", "btrfs"]

SETUP = """cd /usr/local/sbin
for t in save restore; do
  for v in "" 6; do ln -s xtables-nft-multi ip${v}tables-$t; ln -s xtables-legacy-multi ip${v}tables-legacy-$t; done
done
cd /"""
SCRIPT = ctlab.host_script(r"""
export PATH=/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin
criu check >/tmp/check.out 2>&1 && echo CRIU-CHECK=ok || { echo CRIU-CHECK=fail; tail -5 /tmp/check.out; }
R=/tmp/root
mkdir -p $R/bin $R/proc $R/sys $R/dev $R/tmp $R/etc
cp /bin/busybox $R/bin/busybox
for a in sh cat sleep echo true ps ls wc mount umount grep truncate; do ln -s busybox $R/bin/$a; done
cp /ctprobe $R/bin/ctprobe
chmod 1777 $R/tmp  # the root is not idmapped here (tmpfs on 6.1): let container root write
CT=/bin/kvz-ct
RUN="--run-dir /tmp/run"
D=/sys/fs/cgroup/kvz/c
lims() { echo "$1 mem=$(cat $D/memory.max)/$(cat $D/memory.high) pids=$(cat $D/pids.max) cpu=$(cat $D/cpu.max) w=$(cat $D/cpu.weight)"; }
logs() { for f in "$@"; do [ -f $f ] && { echo "--- $f"; grep -E "Error|Warn" $f | head -20; tail -15 $f; }; done; }
$CT run --name c $RUN --rootfs $R --detach --memory 48M:96M --pids 64 --cpus 0.5 \
  --net bridge=kvzbr0,ip=10.77.0.2/24,gw=10.77.0.1 -- \
  sh -c 'ctprobe mempattern 24 /tmp/mem & ctprobe echo-server 7777 & i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.2; done'
echo "RUN=$?"
$CT set --name c $RUN --pids 77 --cpu-weight 30
sleep 2
mkfifo /tmp/fifo
exec 3<>/tmp/fifo  # read-write: our writes never wait for the client
/ctprobe hold-client 10.77.0.2 7777 /tmp/fifo > /tmp/client.out 2>&1 &
sleep 1
echo one >&3
sleep 1
lims LIM-BEFORE
echo "MEM-BEFORE $(cat $R/tmp/mem)"
# A dump that runs out of space midway: the container must run on.
mkdir -p /tmp/small && mount -t tmpfs -o size=200k small /tmp/small
$CT checkpoint --name c $RUN --dir /tmp/small/ck 2>/tmp/ckfail.err; echo "CKFAIL=$? $(cat /tmp/ckfail.err)"
[ -e /tmp/small/ck/kvz-ct.json ] && echo "CKFAIL-META=yes" || echo "CKFAIL-META=no"
A=$(cat $R/tmp/counter); sleep 1; B=$(cat $R/tmp/counter)
echo "AFTER-FAIL counter $A -> $B"
echo after >&3
sleep 1
$CT checkpoint --name c $RUN --dir /tmp/ck; echo "CK=$?"
[ "$(ls /tmp/run)" = "" ] && echo "CK-RUNDIR=empty" || echo "CK-RUNDIR=$(ls /tmp/run | tr '\n' ' ')"
[ -e $D ] && echo "CK-CGROUP=left" || echo "CK-CGROUP=gone"
A=$(cat $R/tmp/counter); sleep 1; B=$(cat $R/tmp/counter)
echo "FROZEN counter $A -> $B"
logs /tmp/ck/dump.log
$CT restore --name c --dir /tmp/ck; echo "RS=$?"
logs /tmp/ck/restore.log
sleep 2
C=$(cat $R/tmp/counter)
echo "RESTORED counter $B -> $C"
lims LIM-AFTER
echo "MEM-AFTER $(cat $R/tmp/mem)"
echo two >&3
sleep 2
# Why a connection would not answer: eth0's MAC (the bridge filter drops
# any other), the filter's drops, plain reachability, CRIU's lock table.
echo "MAC-WANT=$(sed -n 's/.*"mac": "\(.*\)".*/\1/p' /tmp/run/c.json) HAVE=$($CT exec --name c $RUN -- cat /sys/class/net/eth0/address)"
nft list counter bridge kvz_c spoofed 2>&1 | grep packets | sed 's/^/SPOOF /'
ping -c 2 -W 2 10.77.0.2 >/dev/null 2>&1 && echo PING=ok || echo PING=fail
INIT=$(sed -n 's/.*"init-pid": \([0-9]*\).*/\1/p' /tmp/run/c.json)
nsenter -t $INIT -n nft list ruleset 2>&1 | head -30 | sed 's/^/CTNFT /'
$CT exec --name c $RUN -- cat /proc/net/tcp | sed 's/^/TCP /'
cat /tmp/client.out | sed 's/^/CLIENT /'
V=$(sed -n 's/.*"veth": "\(.*\)".*/\1/p' /tmp/run/c.json)
echo "VETH=$V MASTER=$(basename $(readlink /sys/class/net/$V/master))"
nft list table bridge kvz_c >/dev/null 2>&1 && echo "NFT=yes" || echo "NFT=no"
$CT list $RUN | sed 's/^/LIST /'
$CT exec --name c $RUN -- cat /tmp/counter >/dev/null; echo "EXEC=$?"
$CT exec --name c $RUN -- ps | sed 's/^/PS /'
# issue 8's kernel-file-system layer after a restore (CRIU made the mounts).
$CT exec --name c $RUN -- sh -c 'echo x > /proc/sys/kernel/core_pattern; echo "A-CORE=$?"
  echo "A-KCORE=$(cat /proc/kcore 2>/dev/null | wc -c)"
  mount -o remount,rw /sys; echo "A-SYSRW=$?"
  umount /proc/kcore; echo "A-UMOUNT=$?"
  grep -E " /(proc|sys|dev)" /proc/self/mountinfo | head -8' 2>&1 | sed 's/^/ATK /'
# Iterative: two pre-dumps while it runs, then the final dump.
$CT checkpoint --name c $RUN --dir /tmp/ck2 --leave-running --pre-dumps 2; echo "CK2=$?"
logs /tmp/ck2/pre-1/pre-dump.log /tmp/ck2/dump.log
ls /tmp/ck2 | tr '\n' ' ' | sed 's/^/CK2-FILES /'; echo
echo three >&3
sleep 1
tail -1 /tmp/client.out | sed 's/^/CLIENT2 /'
$CT stop --name c $RUN --timeout 1; echo "STOP=$?"
[ -e $D ] && echo "STOP-CGROUP=left" || echo "STOP-CGROUP=gone"
# Images without the TCP streams: the restore fails late (namespaces,
# mounts and the veth made already) with one line, and nothing is left.
cp -a /tmp/ck2 /tmp/bad && rm /tmp/bad/tcp-stream-*.img
$CT restore --name c --dir /tmp/bad 2>/tmp/bad.err; echo "BAD=$? $(grep -c 'kvz-ct: error' /tmp/bad.err) $(grep 'kvz-ct: error' /tmp/bad.err)"
[ "$(ls /tmp/run)" = "" ] && echo "BAD-RUNDIR=empty" || echo "BAD-RUNDIR=$(ls /tmp/run | tr '\n' ' ')"
[ -e $D ] && echo "BAD-CGROUP=left" || echo "BAD-CGROUP=gone"
echo "BAD-LINKS=$(ls /sys/class/net | grep -c '^kvz.*[hr]$')"
# A console: the tty and /dev/console given anew on restore.
$CT run --name k $RUN --rootfs $R --detach --console-socket /tmp/k.sock -- sh -c 'while :; do echo tick; sleep 1; done'
echo "K-RUN=$?"
$CT checkpoint --name k $RUN --dir /tmp/ckk; echo "K-CK=$?"
logs /tmp/ckk/dump.log
$CT restore --name k --dir /tmp/ckk; echo "K-RS=$?"
logs /tmp/ckk/restore.log
grep -iE "console|external|pts" /tmp/ckk/dump.log | head -30 | sed 's/^/KD /'
grep -B10 "No mapping" /tmp/ckk/restore.log | head -30 | sed 's/^/KR /'
$CT exec --name k $RUN -- ls -l /proc/1/fd/1 | sed 's/^/K-FD /'
# Undoing the kernel-file-system layer after a restore, each attempt on its
# own (a successful one changes the tree, hence last, on this container):
# at start every one fails (ct-attacks-kernfs); kcore stays unreadable even
# unmasked (the kernel's own CAP_SYS_RAWIO check behind the mask).
$CT exec --name k $RUN -- sh -c '
umount /proc/kcore 2>/dev/null; echo "U-kcore=$?"
echo "U-kcore-read=$(cat /proc/kcore 2>/dev/null | wc -c)"
umount /proc/sys 2>/dev/null; echo "U-procsys=$?"
mount -o remount,rw /sys 2>/dev/null; echo "U-sysrw=$?"
umount /sys 2>/dev/null; echo "U-sys=$?"' 2>&1 | sed 's/^/UNDO /'
$CT stop --name k $RUN --timeout 1; echo "K-STOP=$?"
# A private area (btrfs image): its root is idmapped, which CRIU 3.17 cannot
# make; kvz-ct stages it and gives it as --root.
C=/tmp/ct; mkdir -p $C/i /tmp/mnt
truncate -s 200M $C/i/private.img && mkfs.btrfs -q $C/i/private.img && mount -o loop $C/i/private.img /tmp/mnt && cp -a $R/. /tmp/mnt/ && umount /tmp/mnt
$CT run --name i $RUN --ct-root $C --detach -- sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.2; done'
echo "I-RUN=$?"
$CT exec --name i $RUN -- sh -c 'echo made > /tmp/byroot; ls -n /tmp/byroot' | sed 's/^/I-BEFORE /'
$CT checkpoint --name i $RUN --dir /tmp/cki; echo "I-CK=$?"
logs /tmp/cki/dump.log
$CT restore --name i --dir /tmp/cki; echo "I-RS=$?"
logs /tmp/cki/restore.log
$CT exec --name i $RUN -- sh -c 'echo again > /tmp/byroot2; ls -n /tmp/byroot2 /bin/busybox; grep " / / " /proc/self/mountinfo' | sed 's/^/I-AFTER /'
$CT stop --name i $RUN --timeout 1; echo "I-STOP=$?"
echo LAB-CKPT-DONE""", setup=SETUP)


def lab_files():
    files = {KVZCT: "/bin/kvz-ct", PROBE: "/ctprobe"}
    for name, prog in TOOLS.items():
        path = shutil.which(prog) or shutil.which(prog, path="/usr/sbin:/sbin")
        if not path:
            pytest.skip(f"{prog} is not installed here (scripts/install-deps.sh)")
        files[os.path.realpath(path)] = f"/usr/local/sbin/{name}"
    for binary in [KVZCT] + [shutil.which(p, path="/usr/sbin:/sbin:/usr/bin:/bin") for p in TOOLS.values()]:
        for lib in kvzlab._ldd(binary):
            files[lib] = lib
    return files


@pytest.fixture(scope="module")
def lab_out():
    """One L1 boot for every test of this file: its output."""
    kvzlab.skip_unless_lab()
    if not os.path.exists(KVZCT) or not os.path.exists(PROBE):
        pytest.skip(f"kvz-ct or ctprobe not built in {BUILD_DIR}")
    res = kvzlab.run_in_lab(SCRIPT, files=lab_files(), smp=1, mem_mb=1536, timeout=540,
                            vmm=False, l1_modules=MODULES, stream=sys.stdout)
    return res.output


def test_checkpoint_restore_in_lab(lab_out):
    out = lab_out
    assert "LAB-CKPT-DONE" in out, out[-4000:]
    assert "CRIU-CHECK=ok" in out, out[-4000:]
    v = dict(re.findall(r"^([A-Z0-9-]+)=(.*)$", out, re.M))
    assert v["RUN"] == "0"
    # The failed dump: one error line, no checkpoint, the container runs on.
    assert v["CKFAIL"].startswith("1 kvz-ct: error: checkpoint of 'c' failed: criu dump failed"), v["CKFAIL"]
    assert v["CKFAIL-META"] == "no"
    a, b = map(int, re.search(r"AFTER-FAIL counter (\d+) -> (\d+)", out).groups())
    assert b > a
    # The checkpoint ends the container and its supervisor cleanly.
    assert v["CK"] == "0" and v["CK-RUNDIR"] == "empty" and v["CK-CGROUP"] == "gone", out[-4000:]
    a, b = map(int, re.search(r"FROZEN counter (\d+) -> (\d+)", out).groups())
    assert a == b
    # Restore: same limits (set's, not run's), memory, counter, connection.
    assert v["RS"] == "0", out[-4000:]
    before = re.search(r"LIM-BEFORE (.*)", out).group(1)
    assert "pids=77" in before and "w=30" in before
    assert re.search(r"LIM-AFTER (.*)", out).group(1) == before
    b2, c = map(int, re.search(r"RESTORED counter (\d+) -> (\d+)", out).groups())
    assert c > b2
    mem = re.search(r"MEM-AFTER ticks (\d+) sum0 (\w+) sum (\w+)", out)
    mem0 = re.search(r"MEM-BEFORE ticks (\d+) sum0 (\w+) sum (\w+)", out)
    assert mem.group(2) == mem.group(3) == mem0.group(2) and int(mem.group(1)) > int(mem0.group(1))
    echoes = re.findall(r"^CLIENT echo (\w+) port (\d+)$", out, re.M)
    assert [e[0] for e in echoes] == ["one", "after", "two"], out[-4000:]
    assert len({e[1] for e in echoes}) == 1
    assert re.match(r"kvz\d+r MASTER=kvzbr0", v["VETH"]) and v["NFT"] == "yes"
    assert re.search(r"^LIST .*\bc\b", out, re.M) and v["EXEC"] == "0"
    # The restored container is still confined (global sysctls, kernel
    # memory, /sys read-only).
    atk = dict(re.findall(r"^ATK (A-\w+)=(.*)$", out, re.M))
    assert atk["A-CORE"] != "0" and atk["A-KCORE"] == "0" and atk["A-SYSRW"] != "0", atk
    assert v["CK2"] == "0" and re.search(r"^CLIENT2 echo three port", out, re.M)
    assert re.search(r"^CK2-FILES .*\bpre-1\b.*\bpre-2\b", out, re.M), out[-4000:]
    assert v["STOP"] == "0" and v["STOP-CGROUP"] == "gone"
    # Images lacking the TCP streams: one error line, nothing left.
    assert v["BAD"].startswith("1 1 kvz-ct: error: criu restore failed: "), v["BAD"]
    assert v["BAD-RUNDIR"] == "empty" and v["BAD-CGROUP"] == "gone" and v["BAD-LINKS"] == "0"
    assert v["K-RUN"] == "0" and v["K-CK"] == "0" and v["K-RS"] == "0" and v["K-STOP"] == "0"
    undo = dict(re.findall(r"^UNDO (U-[\w-]+)=(.*)$", out, re.M))
    assert undo.get("U-kcore-read") == "0" and undo.get("U-sysrw") not in (None, "0"), undo
    # The idmapped private area: root inside still owns its files (on disk 0:0).
    assert v["I-RUN"] == "0" and v["I-CK"] == "0" and v["I-RS"] == "0" and v["I-STOP"] == "0"
    assert re.search(r"^I-BEFORE \S+\s+1 0\s+0 .*/tmp/byroot$", out, re.M), out[-4000:]
    assert re.search(r"^I-AFTER \S+\s+1 0\s+0 .*/tmp/byroot2$", out, re.M), out[-4000:]


def test_restored_masks_locked(lab_out):
    """After a restore, unmounting a mask or /proc/sys must fail as at a
    start (ct-attacks-kernfs, ct-cgroup2-lab): kvz-ct put a locked copy of
    /proc and /sys in place of CRIU's (kernfs_relock.c)."""
    assert "LAB-CKPT-DONE" in lab_out, lab_out[-4000:]
    undo = dict(re.findall(r"^UNDO (U-[\w-]+)=(.*)$", lab_out, re.M))
    assert undo["U-kcore"] != "0" and undo["U-procsys"] != "0" and undo["U-sysrw"] != "0", undo
