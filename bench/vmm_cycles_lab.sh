#!/bin/sh
# Issue 9's proof: N consecutive boot -> balloon -> reboot -> boot -> poweroff
# cycles of kvz-vmm with Debian's kernel, with 1 and 2 vCPUs in turn, each
# both started directly and started by kvzd (its disk, console socket and
# balloon; the console polled with `timeout 1 kvz console`), after
# the stop scenarios (SIGTERM during a balloon change, QMP quit, vanishing
# QMP clients...), in ONE nested-lab run with L1's vCPUs loaded by busy
# loops. The machine is the issue's: two virtio disks, virtio-net on a TAP
# (vhost-net), --balloon --rng --qmp, 512 MiB. Prints the count of runs, the
# failures (a run that hangs gets its threads dumped, see
# tests/lab/vmm_stop_cycles.py) and the slowest boot and stop.
# The guest's early console (earlyprintk=serial ignore_loglevel) goes into the
# log, so that a boot that never printed shows how far it got.
# Not part of `make bench` (hours at N=30): run it on its own.
# Usage: bench/vmm_cycles_lab.sh [N]   (default 30; about five minutes of lab
#        time per cycle; env BUILD_DIR (build), LOG (console copy, default
#        BUILD_DIR/meson-logs/vmm_cycles_lab.console), NO_LOAD=1, NO_KVZD=1)
set -eu
. "$(dirname "$0")/lib.sh"
N=${1:-30}
LOG=${LOG:-$BUILD_DIR/meson-logs/vmm_cycles_lab.console}
mkdir -p "$(dirname "$LOG")"
load=""
[ "${NO_LOAD:-0}" = 1 ] && load=--no-load
kvzd=""
[ "${NO_KVZD:-0}" = 1 ] && kvzd=--no-kvzd
exec /usr/bin/python3 "$here/tests/lab/vmm_stop_cycles.py" --cycles "$N" --early-console \
    --log "$LOG" $load $kvzd
