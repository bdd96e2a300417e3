#!/bin/sh
# Boots the L2 kernel under kvz-vmm inside the nested lab (L1 = Debian's kernel
# under QEMU TCG with emulated SVM) and streams all output; the last line is
# "LAB-EXIT: <kvz-vmm exit code>".  See lab/kvzlab.py for the options:
#   lab/run-vmm.sh [--smp N] [--l2-init FILE] [--l2-modules "m1 m2"]
#                  [--add HOSTPATH:L1PATH]... [--timeout SEC] -- KVZ_VMM_ARGS...
# BUILD_DIR (default build) names the build holding src/vmm/kvz-vmm.
# Debian's python3 is used: only the standard library is needed.
set -eu
here=$(dirname "$0")
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
exec "$py" "$here/kvzlab.py" run-vmm "$@"
