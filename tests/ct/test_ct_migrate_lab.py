"""kvz-ct's migration primitives with the real CRIU (issue 12), inside the
nested lab's L1 (test_ct_migrate.py and the daemon's test_ct_migrate.py
run them with a stand-in criu on this host, whose kernel fails `criu
check`). Two "hosts" in one L1: ct roots A and B, run dirs and id range
registries of their own; the migration socket is a TCP connection on
127.0.0.1 (ctprobe pair), as kvzd's migration port is.

A container with a btrfs private area runs a process holding a memory
pattern with its checksum and a counter written every 200 ms. Shown: a
hold (pre-dump and final dump through the page server, then frozen) stops
the counter, release --resume lets it go on; then the migration proper:
2 pre-dumps and the final dump through the page server into B's images,
the final dump's other images and the private area copied while it is
held, the source ended, `kvz-ct run --restore` at B: the counter goes on
from where it was, the checksum matches, the source left nothing. (Both
hosts share L1's cgroup tree, kvz/NAME: here the source ends before the
target restores; kvzd's order, restore then end, is shown on the host by
daemon-ct-migrate up to the restore.)"""
import os
import re
import sys

import pytest

import ctlab
from ctlab import kvzlab
from test_ct_checkpoint_lab import KVZCT, MODULES, PROBE, SETUP, lab_files

SCRIPT = ctlab.host_script(r"""
export PATH=/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin
criu check >/tmp/check.out 2>&1 && echo CRIU-CHECK=ok || { echo CRIU-CHECK=fail; tail -5 /tmp/check.out; }
CT=/bin/kvz-ct
R=/tmp/root
mkdir -p $R/bin $R/proc $R/sys $R/dev $R/tmp $R/etc /tmp/mnt
cp /bin/busybox $R/bin/busybox
for a in sh cat sleep echo true; do ln -s busybox $R/bin/$a; done
cp /ctprobe $R/bin/ctprobe
A=/tmp/ctA; B=/tmp/ctB; mkdir -p $A/m $B/m
truncate -s 128M $A/m/private.img && mkfs.btrfs -q $A/m/private.img && mount -o loop $A/m/private.img /tmp/mnt && cp -a $R/. /tmp/mnt/ && umount /tmp/mnt
logs() { for f in "$@"; do [ -f $f ] && { echo "--- $f"; grep -E "Error|Warn" $f | head -20; tail -10 $f; }; done; }
init_of() { sed -n 's/.*"init-pid": \([0-9]*\).*/\1/p' $1/m.json; }
NET="--net bridge=kvzbr0,ip=10.77.0.2/24,gw=10.77.0.1"
export KVZ_CT_IDMAP_DIR=/tmp/idA
$CT run --name m --run-dir /tmp/runA --ct-root $A --detach $NET -- \
  sh -c 'ctprobe mempattern 24 /tmp/mem & i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.2; done'
echo "RUN=$?"
sleep 2
I=$(init_of /tmp/runA)
cnt() { cat /proc/$1/root/tmp/counter; }
# A hold, then resumed.
/ctprobe pair "$CT checkpoint --name m --run-dir /tmp/runA --dir /tmp/h --pre-dumps 1 --page-server-fd \$PS_FD --hold" \
  "$CT page-server --dir /tmp/hdst --fd \$PS_FD --pre-dumps 1" | sed 's/^PAIR/HOLD-PAIR/'
logs /tmp/h/dump.log /tmp/hdst/page-server.log
H1=$(cnt $I); sleep 1; H2=$(cnt $I)
echo "HELD counter $H1 -> $H2 freeze=$(cat /sys/fs/cgroup/kvz/m/cgroup.freeze)"
$CT release --name m --run-dir /tmp/runA --resume; echo "RESUME=$?"
sleep 1; echo "RESUMED counter $H2 -> $(cnt $I)"
# The migration: pages through the page server, the rest copied while held.
/ctprobe pair "$CT checkpoint --name m --run-dir /tmp/runA --dir /tmp/src --pre-dumps 2 --page-server-fd \$PS_FD --hold > /tmp/steps" \
  "$CT page-server --dir /tmp/dst --fd \$PS_FD --pre-dumps 2"
sed 's/^/STEP /' /tmp/steps
logs /tmp/src/pre-1/pre-dump.log /tmp/src/dump.log /tmp/dst/page-server.log
F1=$(cnt $I)
echo "MEM-BEFORE $(cat /proc/$I/root/tmp/mem)"
for f in /tmp/src/*; do [ -f "$f" ] && case "$f" in *.log) ;; *) cp "$f" /tmp/dst/;; esac; done
cp $A/m/private.img $B/m/ && { [ ! -e $A/m/idmap ] || cp $A/m/idmap $B/m/; }
ls /tmp/dst | tr '\n' ' ' | sed 's/^/DST-FILES /'; echo
$CT release --name m --run-dir /tmp/runA --end; echo "END=$?"
for t in 1 2 3 4 5 6 7 8 9 10; do [ -e /tmp/runA/m.json ] || break; sleep 0.5; done
[ -e /tmp/runA/m.json ] && echo "SRC=left" || echo "SRC=gone"
KVZ_CT_IDMAP_DIR=/tmp/idB $CT run --name m --run-dir /tmp/runB --ct-root $B --detach $NET --restore /tmp/dst -- true
echo "RS=$?"
logs /tmp/dst/restore.log
sleep 2
J=$(init_of /tmp/runB)
echo "RESTORED counter $F1 -> $(cnt $J)"
echo "MEM-AFTER $(cat /proc/$J/root/tmp/mem)"
$CT stop --name m --run-dir /tmp/runB --timeout 1; echo "STOP=$?"
echo LAB-CTMIG-DONE""", setup=SETUP)


@pytest.fixture(scope="module")
def lab_out():
    kvzlab.skip_unless_lab()
    if not os.path.exists(KVZCT) or not os.path.exists(PROBE):
        pytest.skip("kvz-ct or ctprobe not built")
    res = kvzlab.run_in_lab(SCRIPT, files=lab_files(), smp=1, mem_mb=1536, timeout=240,
                            vmm=False, l1_modules=MODULES, stream=sys.stdout)
    return res.output


def test_migrate_primitives_in_lab(lab_out):
    out = lab_out
    assert "LAB-CTMIG-DONE" in out, out[-4000:]
    assert "CRIU-CHECK=ok" in out, out[-4000:]
    v = dict(re.findall(r"^([A-Z0-9-]+)=(.*)$", out, re.M))
    assert v["RUN"] == "0"
    assert re.search(r"^HOLD-PAIR a=0 b=0$", out, re.M), out[-4000:]
    h1, h2, frz = re.search(r"HELD counter (\d+) -> (\d+) freeze=(\d)", out).groups()
    assert h1 == h2 and frz == "1", out[-4000:]
    assert v["RESUME"] == "0"
    r1, r2 = map(int, re.search(r"RESUMED counter (\d+) -> (\d+)", out).groups())
    assert r2 > r1
    assert re.search(r"^PAIR a=0 b=0$", out, re.M), out[-4000:]
    steps = re.findall(r"^STEP (\S+): (\d+) bytes of memory sent, (\d+) ms"
                       r"(?:, frozen at (\d+), settled in (\d+) ms)?$", out, re.M)
    assert [s[0] for s in steps] == ["pre-1", "pre-2", "dump"], out[-4000:]
    # The hold's final dump says when it froze (kvzd's downtime starts there).
    assert [bool(s[3]) for s in steps] == [False, False, True], steps
    assert v["END"] == "0" and v["SRC"] == "gone"
    assert v["RS"] == "0", out[-4000:]
    f1, f2 = map(int, re.search(r"RESTORED counter (\d+) -> (\d+)", out).groups())
    assert f2 > f1
    before = re.search(r"MEM-BEFORE ticks (\d+) sum0 (\w+) sum (\w+)", out)
    after = re.search(r"MEM-AFTER ticks (\d+) sum0 (\w+) sum (\w+)", out)
    assert after.group(2) == after.group(3) == before.group(2)
    assert v["STOP"] == "0"
