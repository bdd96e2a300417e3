# bench/blk_lab.sh's part inside L1 (busybox sh); blk_lab_lib.l1_script()
# puts the settings in front of it:
#   ROUNDS   rounds (a multiple of 4 balances the order fully)
#   JOBS     fio job labels, each known to the L2 script
#   WORK     where the disk images and FIFOs go (L1's tmpfs)
#   QCOW2    an empty qcow2 image to copy (130 MiB virtual)
#   FIO      the fio bundle disk
#   kvz_vmm, qemu_vmm  shell functions that exec each VMM with its
#            options but the disks, which come as arguments
#   STEP_S   the longest one job may take, seconds
#   BOOT_S   the longest a guest may take to boot, seconds
#
# Both VMMs boot once, side by side, each with its own copies of the same
# fresh images: a 128 MiB raw file and a 130 MiB qcow2 (L2 tells them apart
# by size) and the fio bundle. Each L2 then runs one fio job per command
# read from its serial console, so the two take turns on the same jobs
# seconds apart, with the other guest idle. Per job and round the order of
# the four (VMM, format) runs changes so that over 4 rounds each stands in
# each place once (ABBA on both axes): a slow or fast stretch of the shared
# host hits every side alike, and kvz/QEMU and qcow2/raw are taken from
# runs next to each other in time.
#
# Per run it prints one line (bench/blk_lab_lib.py reads it):
#   BLK ROUND VMM FORMAT JOB <L2-RES fields> CPU0 GUEST0 CPU1 GUEST1
# CPU and GUEST are the VMM process's utime+stime and guest_time in clock
# ticks (/proc/PID/stat, every thread, exited ones too) when L2 said it
# starts and ends the fio job.
#
# The emulator now and then leaves an L2 stuck (a QEMU guest has sat on a
# 2 s job for minutes): a job without an answer within STEP_S is lost
# (BLK-LOST ROUND VMM FORMAT JOB, that figure of that round left out), and
# that VMM is killed and booted again on the same images, up to
# MAX_RESTARTS times for the run.
set -u
cr=$(printf '\r')
fail() { echo "blk_lab: $*"; kill $kpid $qpid 2>/dev/null; exit 1; }

# upto VM MARKER [SECONDS]: reads VM's console up to a line holding MARKER
# (left in $line), for at most SECONDS (STEP_S) without a line; other
# lines are shown with the VM's name in front.
upto() {
	while :; do
		if [ "$1" = kvz ]; then
			IFS= read -r -t "${3:-$STEP_S}" line <&4 || return 1
		else
			IFS= read -r -t "${3:-$STEP_S}" line <&6 || return 1
		fi
		line=${line%"$cr"}
		case $line in *"$2"*) return 0 ;; esac
		echo "[$1] $line"
	done
}

# cpu PID: utime+stime and guest_time (fields 14, 15 and 43).
cpu() {
	set -- $(cat /proc/$1/stat 2>/dev/null)
	[ $# -ge 43 ] && echo "$((${14} + ${15})) ${43}"
}

# start VM: boots it on its images, its console on the FIFOs.
start() {
	if [ "$1" = kvz ]; then
		kvz_vmm --disk "$WORK/kvz-raw.img" --disk "$WORK/kvz-q2.img,format=qcow2" \
			--disk "$FIO,readonly" <&3 >&4 2>&4 3>&- 4>&- 5>&- 6>&- &
		kpid=$!
	else
		qemu_vmm -drive "file=$WORK/qemu-raw.img,format=raw,if=virtio,cache=writeback,aio=threads" \
			-drive "file=$WORK/qemu-q2.img,format=qcow2,if=virtio,cache=writeback,aio=threads" \
			-drive "file=$FIO,format=raw,if=virtio,readonly=on" <&5 >&6 2>&6 3>&- 4>&- 5>&- 6>&- &
		qpid=$!
	fi
}

# restart VM WHY: kills a stuck VM and boots it again, or fails the run.
restart() {
	restarts=$((restarts + 1))
	[ $restarts -le "$MAX_RESTARTS" ] || fail "$1: $2 (and $MAX_RESTARTS restarts already)"
	echo "blk_lab: $1: $2: booting it again"
	if [ "$1" = kvz ]; then pid=$kpid; else pid=$qpid; fi
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	# A command the dead guest never read would reach the new one.
	if [ "$1" = kvz ]; then
		while read -r -t 1 x <&3; do :; done
	else
		while read -r -t 1 x <&5; do :; done
	fi
	start "$1"
	upto "$1" L2-READY "$BOOT_S" || fail "$1: L2 not ready within ${BOOT_S}s after a restart"
}

# job ROUND VMM FORMAT JOB
job() {
	if [ "$2" = kvz ]; then
		echo "J $3 $4" >&3; pid=$kpid
	else
		echo "J $3 $4" >&5; pid=$qpid
	fi
	lost="BLK-LOST $1 $2 $3 $4"
	upto "$2" L2-GO || { echo "$lost"; restart "$2" "no start of $4 on $3 in round $1 within ${STEP_S}s"; return; }
	c0=$(cpu $pid) || fail "$2: process $pid gone"
	upto "$2" L2-END || { echo "$lost"; restart "$2" "$4 on $3 in round $1 did not end within ${STEP_S}s"; return; }
	c1=$(cpu $pid) || fail "$2: process $pid gone"
	upto "$2" L2-RES || { echo "$lost"; restart "$2" "no result of $4 on $3 in round $1"; return; }
	echo "BLK $1 $2 $3 $4 ${line#*L2-RES } $c0 $c1"
}

# order ROUND: the four (VMM, format) runs of one job in that round.
order() {
	case $(($1 % 4)) in
	1) echo kvz:raw qemu:raw qemu:qcow2 kvz:qcow2 ;;
	2) echo qemu:raw kvz:raw kvz:qcow2 qemu:qcow2 ;;
	3) echo kvz:qcow2 qemu:qcow2 qemu:raw kvz:raw ;;
	0) echo qemu:qcow2 kvz:qcow2 kvz:raw qemu:raw ;;
	esac
}

# drain VM: what it still prints within a second (kvz-vmm's --verbose
# per-disk counters at exit).
drain() {
	while if [ "$1" = kvz ]; then IFS= read -r -t 1 line <&4; else IFS= read -r -t 1 line <&6; fi; do
		echo "[$1] ${line%"$cr"}"
	done
}

[ -f "$FIO" ] || { echo "blk_lab: $FIO missing in L1"; exit 12; }
for v in kvz qemu; do
	rm -f "$WORK/$v-raw.img" "$WORK/$v-q2.img" "$WORK/$v.in" "$WORK/$v.out"
	truncate -s 128M "$WORK/$v-raw.img" || exit 1
	cp "$QCOW2" "$WORK/$v-q2.img" || exit 1
	mkfifo "$WORK/$v.in" "$WORK/$v.out" || exit 1
done
# Read-write opens of the FIFOs never block, and holding both ends here
# means neither side sees an end of file while the other restarts a read.
exec 3<>"$WORK/kvz.in" 4<>"$WORK/kvz.out" 5<>"$WORK/qemu.in" 6<>"$WORK/qemu.out"
kpid= qpid= restarts=0
start kvz
start qemu
for v in kvz qemu; do
	upto $v L2-READY "$BOOT_S" || fail "$v: L2 not ready within ${BOOT_S}s"
	echo "[$v] $line"
done

r=1
while [ $r -le "$ROUNDS" ]; do
	for j in $JOBS; do
		for run in $(order $r); do
			job $r "${run%:*}" "${run#*:}" "$j"
		done
	done
	echo "BLK-ROUND $r done"
	r=$((r + 1))
done

echo "Q" >&3
echo "Q" >&5
# Both guests power off; one that does not within a minute is killed.
i=0
while [ $i -lt 60 ] && { kill -0 $kpid || kill -0 $qpid; } 2>/dev/null; do
	sleep 1; i=$((i + 1))
done
kill $kpid $qpid 2>/dev/null
wait $kpid; krc=$?
wait $qpid; qrc=$?
drain kvz
drain qemu
echo "BLK-EXIT kvz=$krc qemu=$qrc"
