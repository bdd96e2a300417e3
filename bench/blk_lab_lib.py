"""bench/blk_lab.sh's jobs, its L1 and L2 scripts, and its verdict from the
lab console's BLK lines.

Each BLK line is one fio job of one VMM on one format in one round (see
bench/blk_lab_l1.sh). Per figure (format, job) the verdict is the median
over the rounds of each round's kvz/QEMU ratio, with its quartiles and
range: the two runs of a round are seconds apart, so a slow stretch of the
emulator that would swing a mean of absolute values moves both alike.
A figure meets when its median ratio is at least 1.0; kvz-vmm's qcow2
meets when the median of its per-round qcow2/raw ratio is at least 0.9.
"""
import os
import re
import statistics

# (label, fio options, what counts: "MB/s" from the bandwidth or "IOPS")
JOBS = [
    ("seq-write-1M-qd8", "--rw=write --bs=1M --iodepth=8", "MB/s"),
    ("seq-read-1M-qd8", "--rw=read --bs=1M --iodepth=8", "MB/s"),
    ("rand-read-4K-qd1", "--rw=randread --bs=4k --iodepth=1", "IOPS"),
    ("rand-read-4K-qd32", "--rw=randread --bs=4k --iodepth=32", "IOPS"),
    ("rand-write-4K-qd1", "--rw=randwrite --bs=4k --iodepth=1", "IOPS"),
    ("rand-write-4K-qd32", "--rw=randwrite --bs=4k --iodepth=32", "IOPS"),
]
FORMATS = ("raw", "qcow2")
VMMS = ("kvz", "qemu")
MEETS_VS_QEMU = 1.0
MEETS_QCOW2_VS_RAW = 0.9
TICK_S = 0.01   # /proc/PID/stat counts in USER_HZ ticks, 100 a second on x86

LOST_RE = re.compile(r"^BLK-LOST \d+ ", re.M)
BLK_RE = re.compile(r"^BLK (\d+) (kvz|qemu) (raw|qcow2) (\S+) (.*)$", re.M)


RAW_MB, Q2_MB = 128, 130   # different sizes: L2 tells the disks apart by them
HERE = os.path.dirname(os.path.abspath(__file__))


def _read(name):
    with open(os.path.join(HERE, name)) as f:
        return f.read()


def step_s(runtime):
    """The longest one job may take: fio's runtime, its start in L2 and the
    console's round trip, under an emulator on a shared host."""
    return 50 + 5 * runtime


def l1_script(rounds, step, kvz_vmm, qemu_vmm, work="/tmp", qcow2="/img/empty.qcow2",
              fio="/fio.tgz", boot=300, max_restarts=4):
    """bench/blk_lab_l1.sh with its settings; kvz_vmm and qemu_vmm: the
    bodies of the shell functions that exec each VMM ("$@": its disks)."""
    jobs = " ".join(label for label, _, _ in JOBS)
    return (f'ROUNDS={rounds}\nJOBS="{jobs}"\nWORK={work} QCOW2={qcow2} FIO={fio} '
            f'STEP_S={step} BOOT_S={boot} MAX_RESTARTS={max_restarts}\nkvz_vmm() {{ {kvz_vmm}; }}\nqemu_vmm() {{ {qemu_vmm}; }}\n'
            + _read("blk_lab_l1.sh"))


def l2_script(runtime):
    """bench/blk_lab_l2.sh with its settings."""
    return (f"RUNTIME={runtime}\nRAW_SECTORS={RAW_MB * 2048}\nQ2_SECTORS={Q2_MB * 2048}\n"
            + job_args_shell() + _read("blk_lab_l2.sh"))


def job_args_shell():
    """The L2 script's job_args function: fio options per label."""
    cases = "".join(f'\t{label}) echo "{args}" ;;\n' for label, args, _ in JOBS)
    return f'job_args() {{\n\tcase $1 in\n{cases}\t*) return 1 ;;\n\tesac\n}}\n'


class Run:
    """One fio job of one VMM: its figure and what it cost the VMM."""

    def __init__(self, fields, unit):
        rbw, riops, rkib, wbw, wiops, wkib = (float(x) for x in fields[0:6])
        self.prof = [int(x) for x in fields[6:12]]
        cpu0, guest0, cpu1, guest1 = (int(x) for x in fields[12:16])
        bw, iops = (rbw + wbw), (riops + wiops)
        self.value = bw * 1024 / 1e6 if unit == "MB/s" else iops
        self.mib = (rkib + wkib) / 1024
        self.cpu_s = (cpu1 - cpu0) * TICK_S
        self.guest_s = (guest1 - guest0) * TICK_S

    def cpu_ms_per_mib(self):
        return self.cpu_s * 1000 / self.mib if self.mib > 0 else None

    def guest_view(self):
        """(requests, KiB per request, requests per interrupt)."""
        a, b = self.prof[0:3], self.prof[3:6]
        reqs, sectors, irqs = b[0] - a[0], b[1] - a[1], b[2] - a[2]
        return reqs, sectors / 2 / reqs if reqs else 0.0, reqs / irqs if irqs else 0.0


def parse(output):
    """{(round, vmm, format, label): Run}; a line that does not hold all
    its numbers (fio failed, a VMM died) is left out, so its figure shows
    as missing."""
    units = {label: unit for label, _, unit in JOBS}
    runs = {}
    for m in BLK_RE.finditer(output):
        rnd, vmm, fmt, label, rest = m.groups()
        fields = rest.split()
        if label not in units or len(fields) != 16:
            continue
        try:
            runs[(int(rnd), vmm, fmt, label)] = Run(fields, units[label])
        except ValueError:
            continue
    return runs


class Spread:
    """Median, quartiles and range of per-round values."""

    def __init__(self, values):
        self.values = values
        self.n = len(values)
        self.median = statistics.median(values) if values else None
        if self.n >= 2:
            q = statistics.quantiles(values, n=4, method="inclusive")
            self.q1, self.q3 = q[0], q[2]
        else:
            self.q1 = self.q3 = self.median
        self.lo = min(values) if values else None
        self.hi = max(values) if values else None

    def show(self):
        if not self.n:
            return f"{'n/a':>5} {'':13} {'':13} n=0"
        return (f"{self.median:5.2f} {self.q1:5.2f}..{self.q3:<5.2f} "
                f"{self.lo:5.2f}..{self.hi:<5.2f} n={self.n}")


def _ratios(runs, rounds, num, den, value):
    """Per round value(num run) / value(den run), rounds with both only."""
    out = []
    for r in rounds:
        a, b = runs.get((r,) + num), runs.get((r,) + den)
        if a is None or b is None:
            continue
        va, vb = value(a), value(b)
        if va is not None and vb:
            out.append(va / vb)
    return out


def _median_of(runs, rounds, key, value):
    vals = [value(runs[(r,) + key]) for r in rounds if (r,) + key in runs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def verdict(spread, goal):
    if spread.median is None:
        return "MISSING"
    if spread.median >= goal:
        return "meets"
    return "BELOW (whole range)" if spread.hi < goal else "below"


def figures(runs, rounds):
    """Rows per (format, job): the figures and their verdicts."""
    rows = []
    for fmt in FORMATS:
        for label, _, unit in JOBS:
            k, q = ("kvz", fmt, label), ("qemu", fmt, label)
            speed = Spread(_ratios(runs, rounds, k, q, lambda x: x.value))
            # CPU: QEMU's cost over kvz-vmm's, so > 1 is kvz-vmm better too.
            cost = Spread(_ratios(runs, rounds, q, k, lambda x: x.cpu_ms_per_mib()))
            rows.append({
                "fmt": fmt, "label": label, "unit": unit,
                "kvz": _median_of(runs, rounds, k, lambda x: x.value),
                "qemu": _median_of(runs, rounds, q, lambda x: x.value),
                "speed": speed, "verdict": verdict(speed, MEETS_VS_QEMU),
                "kvz_cpu": _median_of(runs, rounds, k, lambda x: x.cpu_ms_per_mib()),
                "qemu_cpu": _median_of(runs, rounds, q, lambda x: x.cpu_ms_per_mib()),
                "cost": cost,
            })
    return rows


def qcow2_rows(runs, rounds):
    """Per job: each VMM's per-round qcow2/raw ratio."""
    rows = []
    for label, _, _ in JOBS:
        per = {vmm: Spread(_ratios(runs, rounds, (vmm, "qcow2", label),
                                   (vmm, "raw", label), lambda x: x.value))
               for vmm in VMMS}
        rows.append({"label": label, "kvz": per["kvz"], "qemu": per["qemu"],
                     "verdict": verdict(per["kvz"], MEETS_QCOW2_VS_RAW)})
    return rows


def _num(v, width=9, digits=1):
    return f"{'n/a':>{width}}" if v is None else f"{v:{width}.{digits}f}"


def report(output, rounds_asked):
    """The report's text and how many figures are missing or below."""
    runs = parse(output)
    rounds = sorted({k[0] for k in runs})
    lines = []
    head = "median   IQR          range"
    lines.append(f"{'figure':26} {'fmt':5} {'kvz-vmm':>9} {'QEMU':>9}  "
                 f"kvz/QEMU {head:33} verdict              "
                 f"CPU ms/MiB kvz  QEMU   QEMU/kvz median (range)")
    rows = figures(runs, rounds)
    missing = below = 0
    for row in rows:
        missing += row["verdict"] == "MISSING"
        below += row["verdict"].lower().startswith("below")
        cost = row["cost"]
        cost_txt = ("n/a" if cost.median is None else
                    f"{cost.median:.2f} ({cost.lo:.2f}..{cost.hi:.2f}, n={cost.n})")
        lines.append(
            f"{row['label'] + ' (' + row['unit'] + ')':26} {row['fmt']:5} "
            f"{_num(row['kvz'])} {_num(row['qemu'])}  {row['speed'].show():42} "
            f"{row['verdict']:20} {_num(row['kvz_cpu'], 13, 2)} {_num(row['qemu_cpu'], 5, 2)} "
            f"  {cost_txt}")
    lost = len(LOST_RE.findall(output))
    if lost:
        lines.append(f"({lost} job{'s' if lost > 1 else ''} lost: a guest stuck, its VMM "
                     "booted again, that figure of that round left out)")
    lines.append(f"(kvz-vmm and QEMU figures: medians over the rounds; kvz/QEMU: median "
                 f"of the per-round ratios, > 1 kvz-vmm better, meets at >= {MEETS_VS_QEMU}; "
                 f"{len(rounds)} of {rounds_asked} rounds; CPU: the VMM process's "
                 "utime+stime in L1 over the job per MiB moved, guest time included; "
                 "absolute values are under QEMU TCG)")
    lines.append("")
    lines.append(f"{'qcow2/raw':26} {'kvz-vmm ' + head:42} verdict              "
                 f"QEMU {head}")
    for row in qcow2_rows(runs, rounds):
        missing += row["verdict"] == "MISSING"
        below += row["verdict"].lower().startswith("below")
        lines.append(f"{row['label']:26} {row['kvz'].show():42} {row['verdict']:20} "
                     f"{row['qemu'].show()}")
    lines.append(f"(median of each round's qcow2/raw ratio; kvz-vmm meets at >= "
                 f"{MEETS_QCOW2_VS_RAW})")
    lines.append("")
    lines.append("per job, medians over the rounds: the guest's view (requests, KiB/request, "
                 "requests/interrupt) and the VMM's own CPU (utime+stime less guest_time, "
                 "ms/MiB):")
    for fmt in FORMATS:
        for label, _, _ in JOBS:
            cells = []
            for vmm in VMMS:
                key = (vmm, fmt, label)
                views = [runs[(r,) + key].guest_view() for r in rounds if (r,) + key in runs]
                if not views:
                    cells.append(f"{'n/a':>29}")
                    continue
                med = [statistics.median(v[i] for v in views) for i in range(3)]
                own = _median_of(runs, rounds, key, _own)
                cells.append(f"{med[0]:7.0f} {med[1]:7.1f} {med[2]:6.2f} {_num(own, 6, 2)}")
            lines.append(f"  {label:20} {fmt:5} kvz-vmm {cells[0]}   QEMU {cells[1]}")
    return "\n".join(lines), missing, below


def _own(run):
    own = run.cpu_s - run.guest_s
    return own * 1000 / run.mib if run.mib > 0 else None


def per_round(output):
    """Each round's kvz/QEMU ratio per figure, for the log."""
    runs = parse(output)
    rounds = sorted({k[0] for k in runs})
    lines = [f"{'per-round kvz/QEMU':26} {'fmt':5} " + " ".join(f"{'r' + str(r):>5}" for r in rounds)]
    for fmt in FORMATS:
        for label, _, _ in JOBS:
            cells = []
            for r in rounds:
                a, b = runs.get((r, "kvz", fmt, label)), runs.get((r, "qemu", fmt, label))
                cells.append(f"{a.value / b.value:5.2f}" if a and b and b.value else "  n/a")
            lines.append(f"{label:26} {fmt:5} " + " ".join(cells))
    return "\n".join(lines)
