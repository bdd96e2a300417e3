"""kvzd's CPU with and without 100 policy rules over 200 running guests
(stand-in supervisors), measured side by side in one run from kvzd's
/proc/PID/stat; the difference is what evaluating the rules every second
costs. Run through bench/policy_eval.sh."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/daemon"))
from kvzd_harness import fake_kvzd  # noqa: E402

GUESTS = int(os.environ.get("GUESTS", 200))
RULES = int(os.environ.get("RULES", 100))
SECONDS = int(os.environ.get("SECONDS_EACH", 20))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(d):
    time.sleep(3)   # let the engine settle after a change
    c0, t0 = cpu_seconds(d.proc.pid), time.time()
    time.sleep(SECONDS)
    return 100.0 * (cpu_seconds(d.proc.pid) - c0) / (time.time() - t0)


def rule(i):
    """A third each of metric, event and schedule rules, all over every
    guest, none of which acts (thresholds the stand-ins never reach)."""
    base = {"name": "r%03d" % i, "level": "manual", "conditions": {"guests": ["g*"]},
            "action": {"type": "notify", "message": "bench"}}
    kind = i % 3
    if kind == 0:
        base["trigger"] = {"metric": ["cpu_pct", "mem_pct", "disk_pct"][i % 9 // 3],
                           "above": 99.9, "for_s": 30}
    elif kind == 1:
        base["trigger"] = {"event": "crashed"}
    else:
        base["trigger"] = {"schedule": "0 0 1 1 *"}
    return base


def main():
    d = fake_kvzd()
    if not d:
        sys.exit("policy_eval: the stand-in supervisor is not built")
    try:
        d.start(["--policy-cap", "0"])
        for i in range(GUESTS):
            name = "g%03d" % i
            st, r = d.api("POST", "/v1/guests", {"name": name, "type": "ct", "disk": "16M"})
            assert st == 201, r
            st, r = d.api("POST", "/v1/guests/%s/start" % name)
            assert st == 200, r
        base = measure(d)
        for i in range(RULES):
            st, r = d.api("POST", "/v1/policies", rule(i))
            assert st == 201, r
        with_rules = measure(d)
        cost = with_rules - base
        print("policy_eval: %d guests, %d rules, %ds each" % (GUESTS, RULES, SECONDS))
        print("  kvzd without rules: %.2f%% of one core" % base)
        print("  kvzd with rules:    %.2f%% of one core" % with_rules)
        print("  rules cost:         %.2f%% of one core (budget 2%%: ratio %.2f)"
              % (cost, cost / 2.0))
        print("  with/without ratio: %.2f" % (with_rules / base if base > 0 else float("inf")))
    finally:
        d.cleanup()


if __name__ == "__main__":
    main()
