#!/bin/sh
# Downtime of a container migration: kvz's iterative page-server migration
# (kvz-ct checkpoint --page-server-fd --pre-dumps 2 --hold into kvz-ct
# page-server over TCP on 127.0.0.1, the final images and the private area
# copied while held, kvz-ct run --restore at the second "host") against the
# plain way (runc/LXD: one `criu dump` of the running container, copy the
# images, `criu restore`: here kvz-ct checkpoint + cp + kvz-ct restore),
# side by side in ONE nested-lab run (L1 = Debian's 6.1 kernel, where CRIU
# works; this host's kernel fails `criu check`). Both hosts live in one L1
# (ct roots and id range registries of their own, one cgroup tree).
# The container holds MB MiB of touched memory, once idle and once
# rewriting the next 1% of its pages every 100 ms. Downtime is what the
# workload sees on the wall clock (CRIU's time namespace hides most of it
# from CLOCK_MONOTONIC): ctprobe gapwatch inside records the longest stall of its
# 1 ms loop, across the move. Also printed: the whole move's time and the
# bytes of memory sent or written. Absolute times are an emulator's: read
# the ratios (iterative / plain; lower is better for the iterative move).
# The target "host" B is a cgroup of its own (/hostB), as in kvzd's lab
# test: the iterative move restores at B while A is held and ends A only
# then (kvzd's order), so A's end is outside the stall. Where the frozen
# window goes, per run: PHASE lines (the script's steps, L1 uptime),
# kvz-ct's own step and start times (STEPS, START-MS: the supervisor's
# phases, ms since its start), and CRIU's logs: GAP lines, the largest
# pauses between two lines of dump.log and restore.log (the time went to
# what the earlier line began). FEATURE: what `criu check` says of
# userfaultfd (lazy restore, post-copy). Mode lazy: the iterative move
# with `run --restore --lazy-pages` (the tasks run before their memory is
# back; criu lazy-pages fills it from the images on fault and in the
# background; vm.unprivileged_userfaultfd=1 set for it, see kvz-ct run);
# PHASE lazy-done: when that daemon had put every page back.
# Usage: bench/ct_migrate_lab.sh [MB] [REPS]   (env: BUILD_DIR, default build)
set -eu
. "$(dirname "$0")/lib.sh"
export MB=${1:-256} REPS=${2:-2}
exec /usr/bin/python3 - <<'PYEOF'
import os
import kvzlab
import ctlab
import ct_lab_report
from test_ct_checkpoint_lab import MODULES, SETUP, lab_files

mb, reps = int(os.environ["MB"]), int(os.environ["REPS"])
kvzlab.bench_require("ct_migrate_lab")
inner = f"""
export PATH=/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin
R=/tmp/root; mkdir -p $R/bin $R/proc $R/sys $R/dev $R/tmp /tmp/mnt
cp /bin/busybox $R/bin/ && ln -s busybox $R/bin/sh && cp /ctprobe $R/bin/ && chmod 0777 $R/tmp
CT=/bin/kvz-ct
for f in uffd uffd-noncoop lazy_pages; do echo "FEATURE $f: $(criu check --feature $f 2>&1 | tail -1)"; done
for c in cpu memory pids io cpuset; do echo +$c > /sys/fs/cgroup/cgroup.subtree_control; done
export HB
# One cgroup per move: kvz-ct enables controllers in the caller's cgroup
# once its container runs, and a cgroup with controllers enabled for its
# children takes no process (cgroup v2: EBUSY).
HB=/sys/fs/cgroup/hostB
inB() {{ sh -c 'echo $$ > $HB/cgroup.procs && export KVZ_CT_IDMAP_DIR=/tmp/idB && exec "$@"' inB "$@"; }}
gaps() {{  # $1: tag, $2: a criu log: its span and its 4 longest pauses
  [ -f "$2" ] || return 0
  awk -v tag="$1" -F'[()]' '/^\\([0-9]+\\.[0-9]+\\)/ {{ t = $2 + 0; if (n++) print t - p, tag, prev; p = t; prev = substr($0, 1, 110) }}
    END {{ print p, "SPAN", tag }}' "$2" | sort -rn | head -5 | sed 's/^/GAP /'
}}
ph() {{ echo "PHASE $mode $pct $1 $(up)"; }}
up() {{ cut -d' ' -f1 /proc/uptime; }}
init() {{ sed -n 's/.*"init-pid": \\([0-9]*\\).*/\\1/p' $1/b.json; }}
gap() {{ cut -d' ' -f2 /proc/$(init $1)/root/tmp/gap; }}
truncate -s 192M /tmp/base.img && mkfs.btrfs -q /tmp/base.img && mount -o loop /tmp/base.img /tmp/mnt && cp -a $R/. /tmp/mnt/ && umount /tmp/mnt
start() {{  # $1: percent dirtied per 100 ms; the container at host A
  rm -rf /tmp/A /tmp/B /tmp/idA /tmp/idB; mkdir -p /tmp/A/b /tmp/B/b; cp /tmp/base.img /tmp/A/b/private.img
  KVZ_CT_IDMAP_DIR=/tmp/idA $CT run --name b --run-dir /tmp/runA --ct-root /tmp/A --detach \\
    --memory {mb + 64}M:{mb + 128}M -- sh -c "ctprobe dirty {mb} $1 & exec ctprobe gapwatch /tmp/gap" || exit 1
  HB=/sys/fs/cgroup/hostB$pct-$i-$mode; mkdir -p $HB
  # The start's stalls do not count: the reset is made inside (host root
  # cannot create files in the idmapped root: EOVERFLOW).
  sleep 3; $CT exec --name b --run-dir /tmp/runA -- sh -c ': > /tmp/gap.reset' || exit 1; sleep 0.5
}}
for pct in 0 1; do
  for i in $(seq {reps}); do
    for mode in plain iterative lazy; do
      start $pct
      t0=$(up)
      if [ $mode = plain ]; then
        KVZ_CT_IDMAP_DIR=/tmp/idA $CT checkpoint --name b --run-dir /tmp/runA --dir /tmp/d >/tmp/steps || exit 1
        ph dumped
        cp -a /tmp/d /tmp/d2 && cp /tmp/A/b/private.img /tmp/B/b/ && {{ [ ! -e /tmp/A/b/idmap ] || cp /tmp/A/b/idmap /tmp/B/b/; }}
        sed -i 's|/tmp/runA|/tmp/runB|; s|/tmp/A|/tmp/B|' /tmp/d2/kvz-ct.json
        ph copied
        inB $CT restore --name b --dir /tmp/d2 || exit 1
        ph restored
        bytes=$(sed -n 's/^dump: \\([0-9]*\\) bytes.*/\\1/p' /tmp/steps)
      else
        cp /tmp/A/b/private.img /tmp/B/b/ && {{ [ ! -e /tmp/A/b/idmap ] || cp /tmp/A/b/idmap /tmp/B/b/; }}
        ph disk-copied
        KVZ_CT_IDMAP_DIR=/tmp/idA /ctprobe pair \\
          "$CT checkpoint --name b --run-dir /tmp/runA --dir /tmp/d --pre-dumps 2 --page-server-fd \\$PS_FD --hold >/tmp/steps" \\
          "$CT page-server --dir /tmp/d2 --fd \\$PS_FD --pre-dumps 2" >/dev/null || exit 1
        ph held
        for f in /tmp/d/*; do [ -f "$f" ] && case "$f" in *.log) ;; *) cp "$f" /tmp/d2/;; esac; done
        cp /tmp/A/b/private.img /tmp/B/b/
        ph copied
        L=; [ $mode = lazy ] && L=--lazy-pages && echo 1 > /proc/sys/vm/unprivileged_userfaultfd
        inB $CT run --name b --run-dir /tmp/runB --ct-root /tmp/B --detach \\
          --memory {mb + 64}M:{mb + 128}M --restore /tmp/d2 $L -- true || {{
          # A lazy restore that fails costs its row only: the source ends.
          echo "RESTORE-FAILED $mode $pct"; grep -h "Error" /tmp/d2/*.log | head -5 | sed 's/^/RESTORE-FAILED /'
          [ $mode = lazy ] || exit 1
          $CT release --name b --run-dir /tmp/runA --end; while [ -e /tmp/runA/b.json ]; do sleep 0.1; done
          echo 0 > /proc/sys/vm/unprivileged_userfaultfd; rm -rf /tmp/d /tmp/d2; continue; }}
        ph restored
        $CT release --name b --run-dir /tmp/runA --end || exit 1
        while [ -e /tmp/runA/b.json ]; do sleep 0.1; done
        ph source-ended
        if [ $mode = lazy ]; then
          n=0; while [ -d /proc/$(cat /tmp/d2/lazy-pages.pid 2>/dev/null || echo none) ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done
          ph lazy-done; echo 0 > /proc/sys/vm/unprivileged_userfaultfd
        fi
        bytes=$(sed -n 's/^[a-z0-9-]*: \\([0-9]*\\) bytes.*/\\1/p' /tmp/steps | awk '{{s+=$1}} END {{print s}}')
      fi
      t1=$(up); sleep 1
      sed "s/^/STEPS $mode $pct /" /tmp/steps
      echo "START-MS $mode $pct $(tr -d ' \\n' < /tmp/runB/b.json | sed -n 's/.*"start-ms":{{\\([^}}]*\\)}}.*/\\1/p')"
      gaps "$mode-$pct-dump" /tmp/d/dump.log; gaps "$mode-$pct-restore" /tmp/d2/restore.log
      gaps "$mode-$pct-lazy" /tmp/d2/lazy-pages.log; grep -h "Error" /tmp/d2/*.log | head -3
      echo "BENCH $mode $pct $(gap /tmp/runB) $t0 $t1 $bytes"
      $CT stop --name b --run-dir /tmp/runB --timeout 1
      rm -rf /tmp/d /tmp/d2
    done
  done
done
echo BENCH-DONE
"""
res = kvzlab.run_in_lab(ctlab.host_script(inner, setup=SETUP),
                        files=lab_files(), smp=1, mem_mb=1024 + 4 * mb, timeout=1500,
                        vmm=False, l1_modules=MODULES)
for line in res.output.splitlines():
    if line.startswith(("FEATURE ", "PHASE ", "STEPS ", "START-MS ", "GAP ", "RESTORE-FAILED ")):
        print(line)
ct_lab_report.report("ct_migrate_lab", res.output,
                     f"migration of a container with {mb} MiB touched, {reps} runs each, in L1 (QEMU TCG):",
                     "plain", "downtime", "memory", 2**20)
# The lazy restore's rows against the same plain ones (report() compares
# the iterative mode only).
import re, statistics
rows = re.findall(r"^BENCH (\w+) (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)$", res.output, re.M)
for pct in ("0", "1"):
    med = {m: statistics.median([int(r[2]) / 1000 for r in rows if r[0] == m and r[1] == pct] or [0])
           for m in ("plain", "lazy")}
    if med["plain"] and med["lazy"]:
        print(f"  pct {pct}: lazy downtime {med['lazy']:.1f} ms, ratio lazy/plain {med['lazy'] / med['plain']:.2f}")
PYEOF
