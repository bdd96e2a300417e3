#!/bin/bash
# kvz-ct against runc, side by side in one run, on the same busybox root:
#  1. start+stop time of N containers running /bin/true (sequential);
#  2. memory overhead per idle container: M containers running `sleep`;
#     kvz-ct: supervisor PSS (its RSS counts shared library pages that all
#     supervisors share; RSS is printed too) + the container cgroup's usage;
#     runc: the container cgroup's memory usage (runc leaves no process
#     behind a detached container).
# Prints per-container figures and kvz-ct/runc ratios (lower is better).
# Needs root, runc, and a built kvz-ct (BUILD_DIR, default build).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
KVZCT=$BUILD_DIR/src/ct/kvz-ct
N=${N:-100}
M=${M:-20}
CACHE=/var/lib/kvz/cache/busybox.tar.zst

[ "$(id -u)" = 0 ] || bench_fail "needs root"
bench_need_tool runc "apt-get install runc"
bench_need_built "$KVZCT"

WORK=$(mktemp -d /tmp/kvz-ct-bench.XXXXXX)
RUN=$WORK/run
cleanup() {
	for n in $(seq 1 "$M"); do
		"$KVZCT" stop --name "bi$n" --run-dir "$RUN" --timeout 0 >/dev/null 2>&1 || true
		runc delete -f "kvzbench-i$n" >/dev/null 2>&1 || true
	done
	rmdir /sys/fs/cgroup/*/kvzbench/* /sys/fs/cgroup/*/kvzbench 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

# Same root filesystem for both: the busybox template.
if [ ! -f "$CACHE" ]; then
	"$KVZCT" create --name warm --template busybox --disk 128M --ct-root "$WORK/ct" >/dev/null
fi
mkdir -p "$WORK/bundle/rootfs"
tar --zstd -xf "$CACHE" -C "$WORK/bundle/rootfs"
ROOT=$WORK/bundle/rootfs
(cd "$WORK/bundle" && runc spec)
python3 - "$WORK/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(p, "w"))
PY

now() { date +%s%N; }

# --- 1. start + stop of N /bin/true containers ---------------------------
t0=$(now)
for i in $(seq 1 "$N"); do
	"$KVZCT" run --name "bt$i" --rootfs "$ROOT" --run-dir "$RUN" -- /bin/true
done
t1=$(now)
for i in $(seq 1 "$N"); do
	runc run -b "$WORK/bundle" "kvzbench-t$i" </dev/null
done
t2=$(now)
kvz_ms=$(( (t1 - t0) / 1000000 ))
runc_ms=$(( (t2 - t1) / 1000000 ))

# --- 2. memory of M idle containers ----------------------------------------
python3 - "$WORK/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/bin/sleep", "100000"]
json.dump(c, open(p, "w"))
PY
cg_usage() { cat "/sys/fs/cgroup/memory/$1/memory.usage_in_bytes" 2>/dev/null ||
	     cat "/sys/fs/cgroup/$1/memory.current"; }
kvz_bytes=0
kvz_rss=0
for i in $(seq 1 "$M"); do
	"$KVZCT" run --name "bi$i" --rootfs "$ROOT" --run-dir "$RUN" --detach -- /bin/sleep 100000
done
sleep 1
for i in $(seq 1 "$M"); do
	sup=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["supervisor-pid"])' "$RUN/bi$i.json")
	rss=$(awk '/^Rss:/ {print $2 * 1024}' "/proc/$sup/smaps_rollup")
	pss=$(awk '/^Pss:/ {print $2 * 1024}' "/proc/$sup/smaps_rollup")
	# kvz-ct puts its cgroups under the caller's own: take them from the state file.
	cgdir=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["cgroups"]; print(next((p for p in c if "/memory/" in p), c[0]))' "$RUN/bi$i.json")
	cg=$(cat "$cgdir/memory.usage_in_bytes" 2>/dev/null || cat "$cgdir/memory.current")
	kvz_bytes=$(( kvz_bytes + pss + cg ))
	kvz_rss=$(( kvz_rss + rss + cg ))
done
runc_bytes=0
for i in $(seq 1 "$M"); do
	python3 - "$WORK/bundle/config.json" "$i" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["linux"]["cgroupsPath"] = "/kvzbench/i" + sys.argv[2]
json.dump(c, open(p, "w"))
PY
	runc run -d -b "$WORK/bundle" "kvzbench-i$i" </dev/null >/dev/null 2>&1
done
sleep 1
for i in $(seq 1 "$M"); do
	runc_bytes=$(( runc_bytes + $(cg_usage "kvzbench/i$i") ))
done

awk -v n="$N" -v m="$M" -v k="$kvz_ms" -v r="$runc_ms" -v kb="$kvz_bytes" -v rb="$runc_bytes" \
    -v kr="$kvz_rss" 'BEGIN {
	printf "start+stop of %d /bin/true containers: kvz-ct %.1f ms each, runc %.1f ms each, ratio kvz-ct/runc %.2f\n",
		n, k / n, r / n, k / r
	printf "memory per idle container (%d): kvz-ct %.0f KiB (supervisor PSS + cgroup; %.0f KiB with RSS), runc %.0f KiB (cgroup), ratio kvz-ct/runc %.2f (RSS: %.2f)\n",
		m, kb / m / 1024, kr / m / 1024, rb / m / 1024, kb / rb, kr / rb
}'
