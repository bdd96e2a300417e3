"""bench/migrate_resets_lab.sh's body: see the comment there.

L1 prints one line per event as it happens:
  EV <L1 s> <vmm> <cond> BOOTED <proc>        a guest came up (READY)
  EV <L1 s> <vmm> <cond> BOOT-STUCK <proc>    no READY in 300 s (killed)
  EV <L1 s> <vmm> <cond> MOVE-OK <n> <s>      move n completed in s seconds
  EV <L1 s> <vmm> <cond> MOVE-FAIL <n> <why>  move n did not complete
  EV <L1 s> <vmm> <cond> RESET <proc> <where> the guest's process ended unasked
  EV <L1 s> <vmm> <cond> CHK <ok> <bad>       the phase's integrity checks so far
  EV <L1 s> <vmm> <cond> SD <n>               L2 shutdown exits in the phase so far
  EV <L1 s> <vmm> <cond> END <seconds>        the phase's wall time
  SD <vmm> <cond> <trace line>                a shutdown exit as the instance has it
  TR <vmm> <cond> <trace line>                an event before it (main ring)
parse() reads them back even from a run cut short."""
import os
import re
import sys

VMMS = ("kvz", "qemu")
CONDS = ("migrate", "control")
MOVE_CAP_S = 120      # a move not completed by then is cancelled
SETTLE_S = 10         # on the target after each move (a reset seen 8 s after one)

L2_INIT = r"""
mount -t tmpfs -o size=64m tmpfs /mnt
b=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | tr -dc 0-9)
b=$((${b:-0} + 1))
echo $b | dd of=/dev/vda bs=512 count=1 conv=notrunc 2>/dev/null; sync
echo "BOOT $b"
(n=0; while true; do for o in 0 2 4 6; do
  dd if=/dev/urandom of=/mnt/d bs=1M seek=$o count=2 conv=notrunc 2>/dev/null
  dd if=/dev/urandom of=/dev/vda bs=1M seek=$((8 + o)) count=2 conv=notrunc 2>/dev/null
  n=$((n+1)); echo $n > /mnt/n; sleep 0.1; done; sync; done) &
(k=0; while true; do k=$((k+1))
  dd if=/dev/urandom of=/mnt/seed bs=1M count=1 2>/dev/null
  for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32; do
    cat /mnt/seed; done > /mnt/p
  s=$(md5sum /mnt/p | cut -c1-32)
  sleep 5
  t=$(md5sum /mnt/p | cut -c1-32)
  if [ "$s" = "$t" ]; then echo "CHK ok $k"; else echo "CHK BAD $k $s $t"; fi
done) &
echo READY
while true; do echo "UP $(cut -d' ' -f1 /proc/uptime) $(cat /mnt/n 2>/dev/null)"; sleep 2; done
"""

# The L1 script's helpers (busybox sh). A VM process is a number N: its
# console /tmp/P/vN.log, its QMP /tmp/vN.sock, its pid in pidN.
L1_HELPERS = r"""
T=/sys/kernel/tracing
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
ev() { echo "EV $(now) $K $C $*"; }
alive() { st=; { read -r _ _ st _ < /proc/$1/stat; } 2>/dev/null; [ -n "$st" ] && [ "$st" != Z ]; }
pid_of() { eval echo \$pid$1; }
# vm_start N [PORT]: VM process N of VMM $K on disk /tmp/disk-$K.img,
# waiting for a migration on 127.0.0.1:PORT when given.
vm_start() {
  rm -f /tmp/v$1.sock
  if [ $K = kvz ]; then
    @KVZ@ --disk /tmp/disk-$K.img --qmp /tmp/v$1.sock ${2:+--incoming tcp:127.0.0.1:$2} </dev/null > /tmp/$P/v$1.log 2>&1 &
  else
    @QEMU@ -drive file=/tmp/disk-$K.img,format=raw,if=none,id=d0,file.locking=off -device virtio-blk-pci,drive=d0 -qmp unix:/tmp/v$1.sock,server=on,wait=off ${2:+-incoming tcp:127.0.0.1:$2} </dev/null > /tmp/$P/v$1.log 2>&1 &
  fi
  eval pid$1=$!
}
# vm_quit N: asks it to quit, then kills it after 10 s.
vm_quit() { p=$(pid_of $1); qmp-send /tmp/v$1.sock '{"execute": "quit"}' >/dev/null 2>&1
  i=0; while alive $p && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  alive $p && kill -9 $p; wait $p 2>/dev/null; true; }
# boot N: starts VM process N and waits for the guest's READY.
boot() { vm_start $1; i=0
  while ! grep -q READY /tmp/$P/v$1.log 2>/dev/null; do
    alive $(pid_of $1) || { reset $1 "during boot"; return 1; }
    i=$((i+1)); [ $i -gt 3000 ] && { ev "BOOT-STUCK v$1"; tail -3 /tmp/$P/v$1.log; kill -9 $(pid_of $1); return 1; }
    sleep 0.1; done
  ev "BOOTED v$1 $(grep -m1 '^BOOT ' /tmp/$P/v$1.log)"; }
# reset N WHERE: VM process N ended unasked: counts it, shows why.
reset() { p=$(pid_of $1); wait $p 2>/dev/null; rc=$?
  resets=$((resets+1)); ev "RESET v$1 $2 (exit $rc)"
  tail -4 /tmp/$P/v$1.log | sed "s/^/LOG $K $C /"; shutdowns; }
# shutdowns: prints the phase's new L2 shutdown exits and, for the first
# of them, KVM's events on that vCPU thread before it; then arms the
# main ring's freeze again for the next one.
sd_seen=0
shutdowns() { [ -r $T/instances/shutdown/trace ] || return 0
  sdn=$(grep -c 'reason shutdown' $T/instances/shutdown/trace)
  [ "$sdn" -gt "$sd_seen" ] || return 0
  grep 'reason shutdown' $T/instances/shutdown/trace | tail -n +$((sd_seen + 1)) | cut -c1-200 | sed "s/^/SD $K $C /"
  sd_seen=$sdn; ev "SD $sdn"
  if [ "$(cat $T/tracing_on)" = 0 ]; then
    who=$(grep -m1 'reason shutdown' $T/trace | sed 's/^ *//; s/ *\[[0-9]*\].*//')
    grep -F -- "$who" $T/trace | grep -B60 -m1 'reason shutdown' | cut -c1-200 | sed "s/^/TR $K $C /"
    echo '!traceoff:1 if exit_reason == 127' > $T/events/kvm/kvm_exit/trigger 2>/dev/null
    echo > $T/trace
    echo 'traceoff:1 if exit_reason == 127' > $T/events/kvm/kvm_exit/trigger 2>/dev/null
    echo 1 > $T/tracing_on
  fi; }
chk() { ok=$(cat /tmp/$P/*.log | grep -c '^CHK ok'); bad=$(cat /tmp/$P/*.log | grep -c '^CHK BAD')
  ev "CHK $ok $bad"; }
# phase_begin VMM COND: a fresh disk, no shutdown exits seen yet.
phase_begin() { K=$1; C=$2; P=$1-$2; mkdir -p /tmp/$P; resets=0; sd_seen=0; gone=
  { echo > $T/instances/shutdown/trace; } 2>/dev/null
  dd if=/dev/zero of=/tmp/disk-$K.img bs=1M count=32 2>/dev/null; ev BEGIN; }
phase_end() { shutdowns; chk; cat /tmp/$P/*.log | grep '^CHK BAD' | sed "s/^/LOG $K $C /"
  ev "END $(since $t0)"; }
# fresh: boots a new VM process into $cur, three tries; gone=1 if none came up.
fresh() { tries=0; while [ $tries -lt 3 ]; do nproc=$((nproc+1))
    boot $nproc && { cur=$nproc; return 0; }; tries=$((tries+1)); done
  gone=1; ev "GIVE-UP no guest came up in 3 boots"; return 1; }
# up N WHERE: the guest of process N runs; if not: counted, a fresh one booted.
up() { alive $(pid_of $1) && return 0
  reset $1 "$2"; fresh; return 1; }
# listening PORT: waits up to 60 s for a listener on PORT (the target's).
listening() { h=$(printf %04X $1); i=0
  while ! grep -q ":$h 00000000:0000 0A" /proc/net/tcp; do
    i=$((i+1)); [ $i -gt 600 ] && return 1; sleep 0.1; done; }
# migrate_wait SOCK: 0 completed, 1 failed or source gone, 2 not done in MOVE_CAP_S.
migrate_wait() { i=0; while [ $i -lt $((@CAP@ * 2)) ]; do
    st=$(qmp-send $1 '{"execute": "query-migrate"}' 2>/dev/null) || return 1
    case "$st" in *completed*) return 0;; *failed*|*cancelled*) return 1;; esac
    sleep 0.5; i=$((i+1)); done; return 2; }
"""

L1_PHASES = r"""
port=6000; nproc=0
migrate_phase() { phase_begin $1 migrate; t0=$(now)
  fresh; m=0
  while [ $m -lt @MOVES@ ] && [ -z "$gone" ]; do
    m=$((m+1)); up $cur "before move $m" || continue
    nproc=$((nproc+1)); tgt=$nproc; port=$((port+1))
    vm_start $tgt $port
    if ! listening $port; then
      ev "MOVE-FAIL $m target not listening after 60 s"; kill -9 $(pid_of $tgt); wait $(pid_of $tgt) 2>/dev/null
      tail -3 /tmp/$P/v$tgt.log | sed "s/^/LOG $K $C target /"; continue
    fi
    t1=$(now)
    [ @BW@ = 0 ] || qmp-send /tmp/v$cur.sock '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": @BW@}}' >/dev/null
    if [ $K = kvz ]; then
      qmp-send --tcp-fd 127.0.0.1:$port /tmp/v$cur.sock '{"execute": "getfd", "arguments": {"fdname": "m"}}' '{"execute": "migrate", "arguments": {"uri": "fd:m"}}' >/dev/null
    else
      qmp-send /tmp/v$cur.sock '{"execute": "migrate", "arguments": {"uri": "tcp:127.0.0.1:'$port'"}}' >/dev/null
    fi
    migrate_wait /tmp/v$cur.sock; r=$?
    echo "STATS $K $m $(qmp-send /tmp/v$cur.sock '{"execute": "query-migrate"}' 2>/dev/null | cut -c1-400)"
    if [ $r = 0 ]; then
      ev "MOVE-OK $m $(since $t1)"; vm_quit $cur; cur=$tgt
    else
      why=$([ $r = 2 ] && echo "not done in @CAP@ s" || echo "failed")
      ev "MOVE-FAIL $m $why"
      qmp-send /tmp/v$cur.sock '{"execute": "migrate_cancel"}' >/dev/null 2>&1
      kill -9 $(pid_of $tgt) 2>/dev/null; wait $(pid_of $tgt) 2>/dev/null
      tail -3 /tmp/$P/v$tgt.log | sed "s/^/LOG $K $C target /"
    fi
    sleep @SETTLE@; up $cur "within @SETTLE@ s after move $m"; shutdowns; chk
  done
  vm_quit $cur; phase_end; dur=$(since $t0); eval dur_$1=$dur; }
control_phase() { phase_begin $1 control; t0=$(now); d=$(eval echo \$dur_$1)
  fresh
  while [ -z "$gone" ] && awk -v a="$(since $t0)" -v d="$d" 'BEGIN {exit !(a < d)}'; do
    sleep 5; up $cur "in the control run"; done
  vm_quit $cur; phase_end; }
for v in @ORDER@; do migrate_phase $v; done
for v in @ORDER@; do control_phase $v; done
echo DONE
"""

EV_RE = re.compile(r"^EV [\d.]+ (\w+) (\w+) (\S+)(?: (.*))?$", re.M)


def parse(output):
    """{(vmm, cond): counts} from the lab's console, a cut-short run too."""
    rows = {(v, c): {"moves": 0, "tried": 0, "resets": 0, "shutdowns": 0,
                     "chk_ok": 0, "chk_bad": 0, "stuck": 0, "seconds": None, "ran": False}
            for v in VMMS for c in CONDS}
    for m in EV_RE.finditer(output):
        key, what, rest = (m.group(1), m.group(2)), m.group(3), (m.group(4) or "").split()
        row = rows.get(key)
        if row is None:
            continue
        row["ran"] = True
        if what == "MOVE-OK":
            row["moves"] += 1
            row["tried"] += 1
        elif what == "MOVE-FAIL":
            row["tried"] += 1
        elif what == "RESET":
            row["resets"] += 1
        elif what == "BOOT-STUCK":
            row["stuck"] += 1
        elif what == "SD" and rest:
            row["shutdowns"] = int(rest[0])
        elif what == "CHK" and len(rest) == 2:
            row["chk_ok"], row["chk_bad"] = int(rest[0]), int(rest[1])
        elif what == "END" and rest:
            row["seconds"] = float(rest[0])
    return rows


def verdict(rows):
    """Which way the evidence points, in one sentence."""
    def bad(v, c):
        r = rows[(v, c)]
        return r["resets"] + r["shutdowns"]

    ran = all(rows[(v, "migrate")]["ran"] for v in VMMS)
    if not ran:
        return "inconclusive: a migrate phase did not run"
    kvz, qemu = bad("kvz", "migrate"), bad("qemu", "migrate")
    ctl = bad("kvz", "control") + bad("qemu", "control")
    if qemu and kvz:
        return (f"the emulator: resets or L2 shutdowns under migration with QEMU too "
                f"({qemu}) as with kvz-vmm ({kvz}); controls {ctl}")
    if qemu:
        return f"the emulator: resets or L2 shutdowns under QEMU's migrations ({qemu}), none with kvz-vmm's"
    if kvz:
        return (f"kvz-vmm: {kvz} resets or L2 shutdowns under its migrations, none in QEMU's "
                f"{rows[('qemu', 'migrate')]['tried']} moves; controls {ctl}")
    if ctl:
        return f"the emulator: resets only without migration ({ctl})"
    return "inconclusive: no reset and no L2 shutdown in this run"


def table(rows):
    lines = [f"{'VMM':<6}{'condition':<10}{'moves':>9}{'resets':>8}{'L2 shutdowns':>14}"
             f"{'chk bad':>9}{'chk ok':>8}{'stuck boots':>13}{'seconds':>9}"]
    for (v, c), r in rows.items():
        moves = f"{r['moves']}/{r['tried']}" if c == "migrate" else "-"
        secs = f"{r['seconds']:.0f}" if r["seconds"] is not None else ("cut" if r["ran"] else "-")
        lines.append(f"{v:<6}{c:<10}{moves:>9}{r['resets']:>8}{r['shutdowns']:>14}"
                     f"{r['chk_bad']:>9}{r['chk_ok']:>8}{r['stuck']:>13}{secs:>9}")
    return "\n".join(lines)


def l1_script(moves, kvz, qemu, bandwidth=0, order=VMMS):
    """bandwidth: both VMMs' max-bandwidth in bytes/s (0: each its default);
    order: which VMM's phases come first (an L1 that dies mid-run leaves the
    later ones out)."""
    text = L1_HELPERS + L1_PHASES
    for k, v in (("@ORDER@", " ".join(order)), ("@MOVES@", str(moves)), ("@CAP@", str(MOVE_CAP_S)), ("@BW@", str(bandwidth)),
                 ("@SETTLE@", str(SETTLE_S)), ("@KVZ@", kvz), ("@QEMU@", qemu)):
        text = text.replace(k, v)
    return text


def main():
    import kvzlab
    moves = int(os.environ["MOVES"])
    bandwidth = int(os.environ.get("MIGRATE_BW") or 0)
    order = ("qemu", "kvz") if os.environ.get("FIRST") == "qemu" else VMMS
    build = os.environ["KVZ_BUILD_DIR"]
    qmp_send = os.path.join(build, "tests", "virtio", "qmp-send")
    kvzlab.bench_require("migrate_resets_lab", kvzlab.default_vmm(), qmp_send)
    cmdline = "console=ttyS0 quiet panic=-1"
    dirty_log = os.environ.get("DIRTY_LOG") or "auto"
    kvz = ("kvz-vmm --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cpus 2 --memory 256M "
           f"--dirty-log {dirty_log} --cmdline '{cmdline}'")
    qemu = kvzlab.qemu_l2_command(smp=2, memory="256M", cmdline=cmdline)
    # Per VMM: a boot and the moves, then a control as long; retries=0:
    # an L2 triple fault is what this bench counts, not a reason to rerun.
    limit = 4 * (300 + moves * (MOVE_CAP_S + SETTLE_S + 60))
    res = kvzlab.run_in_lab(l1_script(moves, kvz, qemu, bandwidth, order), files={qmp_send: "/bin/qmp-send"},
                            smp=2, timeout=limit, l2_init=L2_INIT, with_qemu=True,
                            l2_modules=["virtio_pci", "virtio_blk"], stream=sys.stdout,
                            retries=0)
    rows = parse(res.output)
    bw = f"max-bandwidth {bandwidth} B/s" if bandwidth else "default bandwidths"
    print(f"--- {moves} moves per VMM, {bw}, kvz-vmm --dirty-log {dirty_log}, 2-vCPU 256 MiB guest, "
          "dirtying load (L1 times):")
    print(table(rows))
    print("evidence points at: " + verdict(rows))
    if not re.search(r"^DONE$", res.output, re.M):
        why = kvzlab.lab_failure(res, l2_triple_fault_expected=True) or \
            f"the L1 script ended early (exit {res.exit_code})"
        print(f"migrate_resets_lab: run cut short: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
