"""Stop paths and boot cycles of kvz-vmm with Debian's kernel in the nested
lab (issue 9), all in ONE L1 boot: several kvz-vmm runs in sequence.

Every run has the issue's machine: two virtio disks, virtio-net on a TAP
(vhost-net), --balloon --rng --qmp, 512 MiB. The L2 guest's init reads its
part from the kernel command line (kvzphase=...). Scenarios:

  close-reboot     balloon to 128 MiB by a client that closes at once; the
                   guest waits until MemTotal fell, then reboot -f
  linger-poweroff  inflate and deflate through a client that stays 3 s
                   without reading its events; the guest powers off
  sigterm          SIGTERM while the guest gives its pages back
  quit             balloon, then QMP quit
  churn            2 vCPUs; QMP clients connect and vanish in a loop
                   (killed mid-session) while the guest writes its disk

and N cycles of boot -> balloon -> reboot -> boot -> poweroff, with 1 and
2 vCPUs in turn; with kvzd=True each also under kvzd (kvz create/start/set,
the console polled with `timeout 1 kvz console` as kvzd's lab test does;
rc is 0 when kvzd recorded 'stopped'). Each run prints one line

  RESULT NAME rc=RC boot=S stop=S

(boot: start to the guest's first line; stop: from the moment the stop was
triggered to kvz-vmm's exit, L1 seconds). A run that does not end within
its limit gets its threads' states dumped (/proc: syscall, kernel stack,
return addresses of kvz-vmm found on the user stack), SIGTERM (which makes
kvz-vmm print each vCPU's state), then SIGKILL: rc=hung. A boot that shows
no guest line within BOOT_LIMIT gets the same treatment: rc=noboot; one
whose kvz-vmm ended before the guest's first line: rc=early-exit-STATUS.

Used by tests/lab/test_vmm_stop_lab.py (a few cycles, suite lab) and
bench/vmm_cycles_lab.sh (30 cycles, with L1's vCPUs loaded)."""
import os
import re
import sys

from labpaths import BUILD_DIR, kvzlab

QMP_SEND = os.path.join(BUILD_DIR, "tests", "virtio", "qmp-send")
L2_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "virtio_balloon", "virtio_rng"]
STOP_LIMIT = 20     # L1 seconds from the stop trigger to kvz-vmm's exit
BOOT_LIMIT = 180    # L1 seconds to the guest's first line

L2_INIT = r"""
ph=$(sed -n 's/.*kvzphase=\([a-z-]*\).*/\1/p' /proc/cmdline)
mt() { awk '/^MemTotal:/ {print $2}' /proc/meminfo; }
m0=$(mt)
if [ $ph = kvzd ]; then
  # Under kvzd the command line is fixed: a boot counter on the disk
  # alternates balloon-then-reboot and power-off.
  n=$(dd if=/dev/vda bs=1 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
  n=$(( (${n:-0} + 1) % 256 ))
  printf "\\$(printf %03o $n)" | dd of=/dev/vda bs=1 count=1 conv=fsync 2>/dev/null
  if [ $((n % 2)) = 1 ]; then ph=balloon-reboot; else ph=poweroff; fi
  echo "L2-READY phase=$ph memtotal=$m0"
  # The console is polled: stay long enough to be seen before powering off.
  sleep 3
else
  echo "L2-READY phase=$ph memtotal=$m0"
fi
inflated() {
  i=0
  while [ $i -lt 240 ] && [ $(mt) -gt $((m0 - 100000)) ]; do sleep 0.5; i=$((i+1)); done
  echo "L2-INFLATED memtotal=$(mt)"
}
case $ph in
  balloon-reboot|balloon-quit) inflated ;;
  inflate-deflate)
    inflated
    i=0
    while [ $i -lt 240 ] && [ $(mt) -lt $((m0 - 8192)) ]; do sleep 0.5; i=$((i+1)); done
    echo "L2-DEFLATED memtotal=$(mt)" ;;
  sigterm) sleep 600 ;;
  work)
    for r in 1 2 3; do
      dd if=/dev/urandom of=/dev/vda bs=64k count=64 conv=fsync 2>/dev/null
      dd if=/dev/vda of=/dev/null bs=64k count=64 2>/dev/null
    done
    echo "L2-WORKED" ;;
esac
[ $ph = balloon-quit ] && sleep 600
echo "L2-DOWN"
case $ph in
  balloon-reboot) reboot -f ;;
  *) poweroff -f ;;
esac
"""

L1_FUNCTIONS = r"""
ip link add br0 type bridge && ip link set br0 up
truncate -s 64M /tmp/d1.img; truncate -s 16M /tmp/d2.img
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
# waitfor FILE MARKER SECONDS
waitfor() {
  end=$(awk -v a="$(now)" -v s="$3" 'BEGIN {print a + s}')
  while ! grep -qE "$2" "$1" 2>/dev/null; do
    awk -v a="$(now)" -v e="$end" 'BEGIN {exit !(a > e)}' && return 1
    sleep 0.2
  done
}
dump() {
  pid=$1
  echo "DUMP-BEGIN $2"
  grep kvz-vmm /proc/$pid/maps | sed 's/^/MAP: /'
  for t in /proc/$pid/task/*; do
    tid=${t##*/}
    sc=$(cat $t/syscall)
    echo "T $tid $(cat $t/comm) state=$(cut -d' ' -f3 $t/stat) syscall=$sc"
    sed 's/^/  K /' $t/stack
    sp=$(echo $sc | awk '{print $(NF-1)}')
    case $sp in 0x*) ;; *) continue;; esac
    spd=$(printf '%d' $sp)
    dd if=/proc/$pid/mem bs=4096 skip=$((spd / 4096)) count=6 2>/dev/null |
      od -An -Ad -tx8 -w8 | grep -E " 00005[56]" | sed "s/^/  S $tid $((spd / 4096 * 4096)) /"
  done
  echo "DUMP-END"
}
VMM_BASE="kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --memory 512M \
  --disk /tmp/d1.img --disk /tmp/d2.img --net tap=tap0,bridge=br0 --balloon --rng --qmp /tmp/q.sock"
# start NAME CPUS PHASE: boots and waits for the guest's first line.
start() {
  name=$1
  rm -f /tmp/q.sock
  t_start=$(now)
  ( $VMM_BASE --cpus $2 --cmdline "console=ttyS0 panic=-1 @CMDLINE@ kvzphase=$3" </dev/null
    echo "VMM-EXIT: $?" ) > /tmp/$name.log 2>&1 &
  if waitfor /tmp/$name.log 'L2-READY|VMM-EXIT' @BOOT_LIMIT@; then
    boot=$(since $t_start)
    grep -q L2-READY /tmp/$name.log && return 0
    # kvz-vmm ended before the guest's first line (a guest crash, or a
    # reset, before its init ran): its exit status and whatever it printed.
    echo "RESULT $name rc=early-exit-$(sed -n 's/^VMM-EXIT: //p' /tmp/$name.log) boot=$boot stop=none"
    sed "s/^/[$name] /" /tmp/$name.log
    return 1
  fi
  boot=none
  end_run $name noboot
  return 1
}
# finish NAME: the stop was triggered at $t_stop; waits for kvz-vmm's exit.
finish() {
  if waitfor /tmp/$1.log VMM-EXIT @STOP_LIMIT@; then
    stop=$(since $t_stop)
    rc=$(sed -n 's/^VMM-EXIT: //p' /tmp/$1.log)
    echo "RESULT $1 rc=$rc boot=$boot stop=$stop"
    sed "s/^/[$1] /" /tmp/$1.log
  else
    end_run $1 hung
  fi
}
# end_run NAME WHY: dumps a kvz-vmm that did not end, asks for its vCPU
# states with SIGTERM, then kills it.
end_run() {
  pid=$(pidof kvz-vmm)
  echo "RESULT $1 rc=$2 boot=$boot stop=none"
  [ -n "$pid" ] && dump $pid $2
  [ -n "$pid" ] && kill -TERM $pid
  waitfor /tmp/$1.log VMM-EXIT 10 || { echo "$1: SIGTERM did not end kvz-vmm"; kill -9 $pid; sleep 1; }
  sed "s/^/[$1] /" /tmp/$1.log
}
downwait() { waitfor /tmp/$1.log L2-DOWN 300 || echo "$1: no L2-DOWN"; t_stop=$(now); }
BALLOON='{"execute": "balloon", "arguments": {"value": 134217728}}'
# ---- under kvzd: kvz-vmm with its disk, console socket and balloon as
# kvzd starts it; the console polled as kvzd's lab test does.
kvzd_setup() {
  mkdir -p /tmp/k
  kvzd --state-dir /tmp/k/state --run-dir /tmp/k/run --socket /tmp/k/s.sock \
       --vmm /bin/kvz-vmm --ct /bin/false --sample-interval 1 > /tmp/k/kvzd.log 2>&1 &
  export KVZ_SOCKET=/tmp/k/s.sock
  i=0; while [ ! -S /tmp/k/s.sock ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
  for cpus in 1 2; do
    kvz create vm kd$cpus --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz \
      --cmdline "console=ttyS0 panic=-1 @CMDLINE@ kvzphase=kvzd" --memory 512M \
      --cpus $cpus --disk 64M > /dev/null || echo "KVZD-CREATE-FAILED kd$cpus"
  done
}
# kpoll GUEST RUN MARKER SECONDS: polls the console with `timeout 1 kvz
# console` (appending to the run's log) until MARKER or the time is up.
kpoll() {
  end=$(awk -v a="$(now)" -v s="$4" 'BEGIN {print a + s}')
  until grep -q "$3" /tmp/$2.log; do
    awk -v a="$(now)" -v e="$end" 'BEGIN {exit !(a > e)}' && return 1
    timeout 1 kvz console $1 < /dev/null >> /tmp/$2.log 2>/dev/null
    pidof kvz-vmm > /dev/null || { grep -q "$3" /tmp/$2.log; return; }
  done
}
# kstart GUEST RUN: kvz start, then the guest's first line on its console.
kstart() {
  t_start=$(now); : > /tmp/$2.log
  if ! kvz start $1 > /dev/null 2>> /tmp/$2.log; then
    echo "RESULT $2 rc=startfail boot=none stop=none"; sed "s/^/[$2] /" /tmp/$2.log; return 1
  fi
  if kpoll $1 $2 L2-READY @BOOT_LIMIT@; then boot=$(since $t_start); return 0; fi
  boot=none; kend $1 $2 noboot; return 1
}
# kfinish GUEST RUN: the guest's last line, kvz-vmm's exit, kvzd's record.
kfinish() {
  kpoll $1 $2 L2-DOWN 300 || echo "$2: no L2-DOWN"
  t_stop=$(now)
  end=$(awk -v a="$t_stop" -v s=@STOP_LIMIT@ 'BEGIN {print a + s}')
  while pidof kvz-vmm > /dev/null; do
    awk -v a="$(now)" -v e="$end" 'BEGIN {exit !(a > e)}' && { kend $1 $2 hung; return; }
    sleep 0.2
  done
  stop=$(since $t_stop)
  i=0; st=""
  while [ $i -lt 20 ]; do
    st=$(kvz --json show $1 | grep -o '"state": *"[a-z]*"' | grep -o '[a-z]*"$' | tr -d '"')
    [ "$st" != running ] && break; sleep 0.5; i=$((i+1))
  done
  rc=$st; [ "$st" = stopped ] && rc=0
  echo "RESULT $2 rc=$rc boot=$boot stop=$stop"
  sed "s/^/[$2] /" /tmp/$2.log
}
kend() {
  pid=$(pidof kvz-vmm)
  echo "RESULT $2 rc=$3 boot=$boot stop=none"
  [ -n "$pid" ] && dump $pid $3 && kill -TERM $pid
  i=0; while [ -n "$pid" ] && kill -0 $pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done
  [ -n "$pid" ] && kill -0 $pid 2>/dev/null && { echo "$2: SIGTERM did not end kvz-vmm"; kill -9 $pid; sleep 1; }
  sed "s/^/[$2] /" /tmp/$2.log; sed "s/^/[$2-log] /" /tmp/k/state/logs/$1.log
}
DEFLATE='{"execute": "balloon", "arguments": {"value": 536870912}}'
"""

SCENARIOS = r"""
if start close-reboot 1 balloon-reboot; then
  qmp-send /tmp/q.sock "$BALLOON" > /dev/null
  downwait close-reboot; finish close-reboot
fi
if start linger-poweroff 1 inflate-deflate; then
  qmp-send --linger 3 /tmp/q.sock "$BALLOON" > /dev/null &
  waitfor /tmp/linger-poweroff.log L2-INFLATED 300
  qmp-send --linger 3 /tmp/q.sock "$DEFLATE" > /dev/null &
  downwait linger-poweroff; finish linger-poweroff
fi
if start sigterm 1 sigterm; then
  qmp-send /tmp/q.sock "$BALLOON" > /dev/null
  sleep 1
  t_stop=$(now); kill -TERM $(pidof kvz-vmm); finish sigterm
fi
if start quit 1 balloon-quit; then
  qmp-send --linger 2 /tmp/q.sock "$BALLOON" > /dev/null &
  waitfor /tmp/quit.log L2-INFLATED 300
  t_stop=$(now); qmp-send /tmp/q.sock '{"execute": "quit"}' > /dev/null; finish quit
fi
if start churn 2 work; then
  n=0
  while ! grep -q L2-WORKED /tmp/churn.log && [ $n -lt 400 ]; do
    n=$((n+1))
    case $((n % 3)) in
      0) qmp-send /tmp/q.sock "$BALLOON" > /dev/null ;;
      1) qmp-send --linger 5 /tmp/q.sock '{"execute": "query-status"}' > /dev/null & kill -9 $! ;;
      2) qmp-send --linger 5 /tmp/q.sock "$DEFLATE" > /dev/null & sleep 0.1; kill -9 $! ;;
    esac
  done
  echo "CHURN-CLIENTS: $n"
  downwait churn; finish churn
fi
"""

CYCLES = r"""
c=1
while [ $c -le @CYCLES@ ]; do
  for cpus in 1 2; do
    n=cycle$c-cpus$cpus
    if start $n-reboot $cpus balloon-reboot; then
      qmp-send /tmp/q.sock "$BALLOON" > /dev/null
      downwait $n-reboot; finish $n-reboot
    fi
    if start $n-poweroff $cpus poweroff; then
      downwait $n-poweroff; finish $n-poweroff
    fi
    if [ @KVZD@ = 1 ]; then
      if kstart kd$cpus $n-kvzd-reboot; then
        kvz set kd$cpus --memory 128M > /dev/null || echo "$n: kvz set failed"
        kfinish kd$cpus $n-kvzd-reboot
      fi
      kvz set kd$cpus --memory 512M > /dev/null   # stopped: back to its boot size
      kstart kd$cpus $n-kvzd-poweroff && kfinish kd$cpus $n-kvzd-poweroff
    fi
  done
  c=$((c+1))
done
"""

LOAD = r"""
# Load: one busy loop per L1 vCPU for the whole run.
for i in $(seq $(grep -c ^processor /proc/cpuinfo)); do (while :; do :; done) & LOADPIDS="$LOADPIDS $!"; done
"""


def l1_script(cycles, scenarios=True, load=False, early_console=False, kvzd=False):
    cmdline = "earlyprintk=serial ignore_loglevel" if early_console else "quiet"
    body = L1_FUNCTIONS + ("kvzd_setup\n" if kvzd else "") + (LOAD if load else "")
    body += (SCENARIOS if scenarios else "")
    body += CYCLES.replace("@CYCLES@", str(cycles)).replace("@KVZD@", "1" if kvzd else "0")
    body += "\nkill $LOADPIDS 2>/dev/null; exit 0\n"
    return (body.replace("@CMDLINE@", cmdline).replace("@BOOT_LIMIT@", str(BOOT_LIMIT))
            .replace("@STOP_LIMIT@", str(STOP_LIMIT)))


def kvzd_files():
    """kvzd and kvz for L1, with their libraries."""
    files = {}
    for name, path in (("kvzd", os.path.join(BUILD_DIR, "src", "daemon", "kvzd")),
                       ("kvz", os.path.join(BUILD_DIR, "src", "cli", "kvz"))):
        files[path] = "/bin/" + name
        for lib in kvzlab._ldd(path):
            files.setdefault(lib, lib)
    return files


def run(cycles, scenarios=True, load=False, early_console=False, kvzd=False, stream=None,
        timeout=None, retries=0):
    if timeout is None:
        timeout = 600 + (400 if kvzd else 240) * cycles
    files = {QMP_SEND: "/bin/qmp-send"}
    if kvzd:
        files.update(kvzd_files())
    return kvzlab.run_in_lab(l1_script(cycles, scenarios, load, early_console, kvzd),
                             files=files, l2_init=L2_INIT,
                             l1_modules=["tun", "bridge", "vhost_net"],
                             l2_modules=L2_MODULES, timeout=timeout, stream=stream,
                             retries=retries)


RESULT_RE = re.compile(r"^RESULT (\S+) rc=(\S+) boot=(\S+) stop=(\S+)$", re.M)


def results(output):
    """{name: (rc, boot_s or None, stop_s or None)} from the RESULT lines."""
    out = {}
    for name, rc, boot, stop in RESULT_RE.findall(output):
        out[name] = (rc, None if boot == "none" else float(boot),
                     None if stop == "none" else float(stop))
    return out


EXITS_RE = re.compile(r"kvz-vmm: (?:vCPU \d+: .*, (\d+) exits|stopped: .*\((\d+) vCPU exits\))$")


def no_start(output, name):
    """True when run NAME failed the way a VM that never started its own
    boot does: not one line from the guest, and fewer than 200 vCPU exits
    in all (a Linux boot to init takes thousands). Seen in this lab: a
    fresh VM whose vCPU sat at a kernel module address after 9 exits, or
    that reset before printing anything: the new L2 apparently running on
    state of the L2 before it, which points at the emulated SVM (QEMU TCG)
    rather than kvz-vmm, but has not been shown under QEMU as L2 yet."""
    prefix = f"[{name}] "
    lines = [ln[len(prefix):] for ln in output.splitlines() if ln.startswith(prefix)]
    own = [ln for ln in lines if not ln.startswith(("kvz-vmm:", "VMM-EXIT"))]
    exits = [int(a or b) for ln in lines for a, b in EXITS_RE.findall(ln)]
    return not own and bool(exits) and sum(exits) < 200


def summary(res):
    """Lines: count of runs, failures, slowest boot and stop."""
    r = results(res.output)
    bad = {k: v for k, v in r.items() if v[0] != "0"}
    boots = [(v[1], k) for k, v in r.items() if v[1] is not None]
    stops = [(v[2], k) for k, v in r.items() if v[2] is not None]
    lines = [f"runs: {len(r)}, failed: {len(bad)} {sorted(bad.items())}"]
    never = [k for k in bad if no_start(res.output, k)]
    if never:
        lines.append(f"of which never started (no guest output, under 200 exits): {sorted(never)}")
    if boots:
        lines.append("slowest boot: %.1f s (%s)" % max(boots))
    if stops:
        lines.append("slowest stop: %.1f s (%s)" % max(stops))
    lines.append(f"lab: {res.duration:.0f} s, L1 exit {res.exit_code}, timed out {res.timed_out}")
    return "\n".join(lines)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--no-scenarios", action="store_true")
    ap.add_argument("--no-load", action="store_true")
    ap.add_argument("--early-console", action="store_true",
                    help="earlyprintk=serial ignore_loglevel instead of quiet")
    ap.add_argument("--no-kvzd", action="store_true", help="only kvz-vmm started directly")
    ap.add_argument("--log", help="write the whole console here, as it comes")
    a = ap.parse_args()
    stream = open(a.log, "w") if a.log else None
    # One more L1 if the emulator itself fails (L1 gone without its exit
    # status: seen when QEMU was killed from outside on this shared host).
    res = run(a.cycles, not a.no_scenarios, not a.no_load, a.early_console, not a.no_kvzd,
              stream=stream, retries=1)
    if stream:
        stream.close()
    print(summary(res))
    r = results(res.output)
    return 0 if r and all(v[0] == "0" for v in r.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
