"""kvz-vmm's stop paths with Debian's kernel in the nested lab (issue 9):
after ballooning through QMP clients that close at once or linger, the
guest's reboot and power-off, SIGTERM during a balloon change, QMP quit,
and QMP clients vanishing in a loop while the guest works each end
kvz-vmm with 0 within seconds; then a few boot -> balloon -> reboot ->
boot -> poweroff cycles with 1 and 2 vCPUs (one by default,
KVZ_LAB_STOP_CYCLES more). One L1 boot runs them all
(tests/lab/vmm_stop_cycles.py; bench/vmm_cycles_lab.sh runs 30 cycles)."""
import os
import sys

import vmm_stop_cycles as cyc
from labpaths import kvzlab, skip_unless_vmm_lab

# One cycle in make check (9 L2 boots in one L1, about 5 minutes of lab
# time); bench/vmm_cycles_lab.sh runs the 30 of the proof.
CYCLES = int(os.environ.get("KVZ_LAB_STOP_CYCLES", "1"))


NAMES = ["close-reboot", "linger-poweroff", "sigterm", "quit", "churn"]
NAMES += [f"cycle{c}-cpus{n}-{k}" for c in range(1, CYCLES + 1) for n in (1, 2)
          for k in ("reboot", "poweroff")]


def lab_run():
    res = cyc.run(CYCLES, retries=1)   # another L1 only if L1 itself failed (kvzlab)
    log = os.path.join(cyc.BUILD_DIR, "meson-logs", "lab_vmm_stop.console")
    with open(log, "w") as f:
        f.write(res.output)
    print("\n".join(m.group(0) for m in cyc.RESULT_RE.finditer(res.output)))
    print(cyc.summary(res))
    print(f"whole console: {log}")
    assert not res.timed_out and res.exit_code == 0, res.output[-3000:]
    r = cyc.results(res.output)
    missing = [n for n in NAMES if n not in r]
    assert not missing, f"runs without a result: {missing}"
    bad = {n: r[n] for n in NAMES if r[n][0] != "0"}
    return res, r, bad


def test_stop_paths_and_cycles():
    skip_unless_vmm_lab()
    res, r, bad = lab_run()
    never = [n for n in bad if cyc.no_start(res.output, n)]
    # Exactly one signature earns a second lab run: fresh VMs that never
    # began their own boot (no guest output, under 200 exits), seen about
    # once in 75 lab boots and right after another VM ended in the same L1
    # (suspected emulated-SVM state; docs/architecture.md). Anything else,
    # or the same again, fails.
    if bad and sorted(never) == sorted(bad):
        print(f"lab_vmm_stop: runs that never started: {never}; one more lab run",
              file=sys.stderr)
        res, r, bad = lab_run()
        never = [n for n in bad if cyc.no_start(res.output, n)]
    assert not bad, f"runs that did not end with 0: {bad}; never started: {never}"
    for n in NAMES:
        assert r[n][2] is not None and r[n][2] <= cyc.STOP_LIMIT, (n, r[n])
    out = res.output
    assert "[sigterm] kvz-vmm: stopped by signal 15" in out, "no SIGTERM report"
    assert "[sigterm] kvz-vmm: vCPU 0: rip" in out, "no vCPU dump after SIGTERM"
    assert "L2-INFLATED" in out and "L2-DEFLATED" in out
    assert "[churn] L2-WORKED" in out, "the guest's disk work did not finish"
