#!/bin/sh
# Freeze time of a container checkpoint: kvz-ct's iterative dump (two
# pre-dumps with soft-dirty tracking while it runs, then the final dump)
# against a single dump (what runc and LXD do: `criu dump` of the running
# container), side by side in ONE nested-lab run (L1 = Debian's 6.1 kernel,
# where CRIU works; this host's kernel fails `criu check`).
# The container holds MB MiB of touched memory, once idle and once
# rewriting the next 1% of its pages (a moving working set) every 100 ms. The freeze is what the workload
# sees: ctprobe gapwatch inside records the longest stall of its 1 ms
# loop. Both dumps use --leave-running (the container runs on), alternately,
# REPS times each. Also printed: the whole checkpoint's time and the bytes
# written (pre-dumps included). Absolute times are an emulator's: read the
# ratios (iterative / single; lower is better for the iterative dump).
# Usage: bench/ct_checkpoint_lab.sh [MB] [REPS]   (env: BUILD_DIR, default build)
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
kvzlab.bench_require("ct_checkpoint_lab")
inner = f"""
export PATH=/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin
R=/tmp/root; mkdir -p $R/bin $R/proc $R/sys $R/dev $R/tmp
cp /bin/busybox $R/bin/ && ln -s busybox $R/bin/sh && cp /ctprobe $R/bin/ && chmod 0777 $R/tmp  # not sticky: the container unlinks the reset file
CT=/bin/kvz-ct; RUN="--run-dir /tmp/run"
up() {{ cut -d' ' -f1 /proc/uptime; }}
for pct in 0 1; do
  $CT run --name b $RUN --rootfs $R --detach --memory {mb + 64}M:{mb + 128}M -- \\
    sh -c "ctprobe dirty {mb} $pct & exec ctprobe gapwatch /tmp/gap" || exit 1
  sleep 3
  for i in $(seq {reps}); do
    for mode in single iterative; do
      pre=0; [ $mode = iterative ] && pre=2
      touch $R/tmp/gap.reset; sleep 0.5
      t0=$(up)
      $CT checkpoint --name b $RUN --dir /tmp/d --leave-running --pre-dumps $pre || exit 1
      t1=$(up); sleep 0.5
      echo "BENCH $mode $pct $(cut -d' ' -f2 $R/tmp/gap) $t0 $t1 $(du -sk /tmp/d | cut -f1)"
      rm -rf /tmp/d
    done
  done
  $CT stop --name b $RUN --timeout 1
done
echo BENCH-DONE
"""
res = kvzlab.run_in_lab(ctlab.host_script(inner, setup=SETUP),
                        files=lab_files(), smp=1, mem_mb=1024 + 4 * mb, timeout=1500,
                        vmm=False, l1_modules=MODULES)
ct_lab_report.report("ct_checkpoint_lab", res.output,
                     f"checkpoint of a container with {mb} MiB touched, {reps} runs each, in L1 (QEMU TCG):",
                     "single", "freeze", "written", 1024)
PYEOF
