"""What the kvz-ct lab tests share: a script for L1 that runs INNER in a
"host" fit for containers. pivot_root refuses to move away from the
initramfs (rootfs) that L1 runs on, as a real host's root never is, and
CRIU cannot dump a process whose root is rootfs: INNER runs in a tmpfs copy
of L1's files, moved over / in a mount namespace of its own and entered as
switch_root does (a plain chroot would forbid creating user namespaces),
with a pure cgroup v2 hierarchy at /sys/fs/cgroup. SETUP runs in L1
before the copy is made.

The tree's places and kvzlab come from tests/lab/labpaths.py, which is
also what every other lab test uses."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab"))
from labpaths import BUILD_DIR, SOURCE_DIR, kvzlab  # noqa: E402

__all__ = ["BUILD_DIR", "SOURCE_DIR", "kvzlab", "host_script"]


def host_script(inner, setup=""):
    return r"""
set -u
mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup || { echo NO-CGROUP2; exit 3; }
""" + setup + r"""
H=/host
mkdir -p $H && mount -t tmpfs host $H
for d in /bin /sbin /lib /lib64 /usr /etc /ctprobe; do [ -e $d ] && cp -a $d $H/; done
mkdir -p $H/proc $H/sys $H/dev $H/tmp $H/run
mount -o bind /proc $H/proc && mount -o rbind /sys $H/sys && mount -o rbind /dev $H/dev
mount -t tmpfs tmp $H/tmp
cat > $H/inner.sh <<'INNER'
""" + inner + r"""
INNER
unshare -m sh -c "cd $H && mount --move . / && exec chroot . /bin/sh /inner.sh"
"""
