#!/bin/sh
# Is the L2 reset under live migration the emulator's or kvz-vmm's (issues
# 9 and 11)? In ONE nested-lab L1 (2 vCPUs) the same Debian guest (2 vCPUs,
# 256 MiB, a virtio-blk disk file on L1's tmpfs, user-space devices only)
# runs under kvz-vmm and then under QEMU -accel kvm, each in two
# conditions:
#   migrate  MOVES live migrations over TCP on L1's localhost, each to a
#            fresh process of the same VMM (ping-pong: source -> target,
#            the target is the next source), 10 s on the target after each;
#   control  the same guest and load for the same wall time, no migration
#            (so no dirty logging).
# The guest's load (as tests/lab/test_kvzd_migrate_lab.py's LOAD_SH, plus
# the disk): 2 MiB of urandom into tmpfs and 2 MiB into its disk, in a loop.
# Its integrity check, in a loop too: 32 MiB of tmpfs filled with a fresh
# pattern, its md5 taken, 5 s later taken again; "CHK BAD" when they differ
# (a write lost across a move's dirty tracking shows here).
# A reset: the VM's process ended without being asked (kvz-vmm exits on a
# guest reset or triple fault; QEMU runs with -no-reboot); the guest is then
# booted again (its disk's boot counter shows it) and the phase goes on.
# L2 shutdown exits: L1's KVM trace (kvzlab's "shutdown" tracefs instance,
# SVM exit 127), read and cleared per phase, so each is the phase's VMM's;
# at the first one of a phase the events before it (main ring, frozen by
# kvzlab's traceoff trigger) are printed and the trigger is armed again.
# One "EV" line per event as it happens; a table at the end:
# VMM x condition -> moves, resets, L2 shutdowns, checksum mismatches, and
# which way the evidence points. Lab times are an emulator's.
# Usage: bench/migrate_resets_lab.sh [MOVES]   (default 6; env BUILD_DIR;
#   MIGRATE_BW=BYTES_PER_S: both VMMs' max-bandwidth, for longer pre-copies;
#   FIRST=qemu: QEMU's phases before kvz-vmm's; DIRTY_LOG=auto|manual|legacy:
#   kvz-vmm's --dirty-log, default auto = KVM's manual protect in L1)
set -eu
. "$(dirname "$0")/lib.sh"
MOVES=${1:-6}
case $MOVES in ''|*[!0-9]*) bench_fail "MOVES: a number of moves, 1..30 (got '$MOVES')" ;; esac
[ "$MOVES" -ge 1 ] && [ "$MOVES" -le 30 ] || bench_fail "MOVES: a number of moves, 1..30 (got $MOVES)"
case ${MIGRATE_BW:-0} in *[!0-9]*) bench_fail "MIGRATE_BW: bytes per second (got '$MIGRATE_BW')" ;; esac
case ${DIRTY_LOG:-auto} in auto|manual|legacy) ;; *) bench_fail "DIRTY_LOG: auto, manual or legacy (got '$DIRTY_LOG')" ;; esac
export MOVES
exec /usr/bin/python3 "$here/bench/migrate_resets_lab.py"
