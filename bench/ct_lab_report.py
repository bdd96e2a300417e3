"""The report of bench/ct_checkpoint_lab.sh and bench/ct_migrate_lab.sh.

Both lab scripts print one line per run,
  BENCH MODE PCT STALL_US T0 T1 SIZE
(STALL_US: the workload's longest stall; T0, T1: L1's uptime around the
whole operation; SIZE: what was written or sent), then BENCH-DONE; both
compare a baseline mode with the iterative one, idle (PCT 0) and with a
moving working set (PCT 1)."""
import re
import statistics
import sys


def report(name, output, title, base, stall, size, size_per_mib):
    """Prints the medians and the iterative/base ratios; exits with the
    console's tail when the lab script did not finish.
    stall, size: what the columns are called ("freeze", "written");
    size_per_mib: SIZE units in one MiB."""
    rows = re.findall(r"^BENCH (\w+) (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)$", output, re.M)
    if "BENCH-DONE" not in output:
        print("\n".join(output.splitlines()[-40:]))
        sys.exit(f"{name}: the lab script did not finish")
    print(title)
    for pct, what in (("0", "idle"), ("1", "dirtying 1%/100 ms")):
        med = {}
        for mode in (base, "iterative"):
            r = [x for x in rows if x[0] == mode and x[1] == pct]
            med[mode] = (statistics.median(int(x[2]) / 1000 for x in r),
                         statistics.median(float(x[4]) - float(x[3]) for x in r),
                         statistics.median(int(x[5]) / size_per_mib for x in r))
            print(f"  {what:20} {mode:9}: {stall} {med[mode][0]:8.1f} ms  total {med[mode][1]:6.1f} s"
                  f"  {size} {med[mode][2]:7.1f} MiB")
        it, b = med["iterative"], med[base]
        print(f"  {what:20} {stall} ratio iterative/{base}: {it[0] / b[0]:.2f}"
              f"  (total {it[1] / b[1]:.2f}, bytes {it[2] / b[2]:.2f})")
