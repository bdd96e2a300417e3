#!/bin/sh
# `make check`: every test, in two lanes at once.
#
# Lane "lab" runs the nested-lab suite; lane "host" runs everything else
# (unit, fast, ct, daemon). Each lane runs its tests one at a time, as
# before. The lab's tests spend their time in QEMU's emulator and the host
# tests mostly wait on processes, sockets and timeouts, so the two lanes
# overlap well on two cores. The lanes share nothing: the lab works in
# lab/out under its own lock (lab/kvzlab.py), and the one host test that
# boots in the lab (daemon-real-guests) waits for that lock.
#
# Each lane keeps its own meson log (meson-logs/<lane>-testlog.txt); the lab
# lane's lines are prefixed with "[lab] ". The exit status is non-zero when
# either lane failed. KVZ_CHECK_LANES=1 runs the lanes one after the other.
# Usage: scripts/check.sh [BUILD_DIR]
set -u
build=${1:-build}
rcdir=$(mktemp -d)
trap 'rm -rf "$rcdir"' EXIT

lane() {
    name=$1
    shift
    meson test -C "$build" --no-rebuild --print-errorlogs --num-processes 1 \
        --logbase "$name-testlog" "$@"
    echo $? > "$rcdir/$name"
}

if [ "${KVZ_CHECK_LANES:-2}" = 1 ]; then
    lane host --no-suite lab
    lane lab --suite lab
else
    { lane lab --suite lab 2>&1 | sed -u 's/^/[lab] /'; } &
    lab_pid=$!
    lane host --no-suite lab
    wait "$lab_pid"
fi

status=0
for name in host lab; do
    rc=$(cat "$rcdir/$name" 2>/dev/null || echo 1)
    echo "make check: lane $name ended with $rc (log: $build/meson-logs/$name-testlog.txt)"
    [ "$rc" = 0 ] || status=1
done
exit $status
