# bench/blk_lab.sh's part inside L2 (busybox sh, the lab's L2 initramfs);
# blk_lab_lib.l2_script() puts in front of it RUNTIME (seconds per fio job),
# RAW_SECTORS and Q2_SECTORS (the two bench disks' sizes, by which they are
# told apart) and job_args LABEL (the job's fio options; fails for an
# unknown one).
#
# Unpacks fio from the bundle disk (the third one, neither size), says
# L2-READY, then runs one job per line read from the console:
#   J raw|qcow2 LABEL     one fio job on that disk
#   Q                     power off
# and answers each with L2-GO (fio starts), L2-END (fio ended) and
#   L2-RES RBW RIOPS RKIB WBW WIOPS WKIB REQS0 SECT0 IRQ0 REQS1 SECT1 IRQ1
# (fio's read and write KiB/s, IOPS and KiB moved, then the disk's
# completed requests, sectors and queue interrupts before and after).
raw= qcow2= bundle=
for d in /sys/block/vd*; do
	case $(cat "$d/size") in
	"$RAW_SECTORS") raw=${d##*/} ;;
	"$Q2_SECTORS") qcow2=${d##*/} ;;
	*) bundle=${d##*/} ;;
	esac
done
[ -n "$raw" ] && [ -n "$qcow2" ] && [ -n "$bundle" ] ||
	{ echo "L2-FAIL disks: raw=$raw qcow2=$qcow2 fio=$bundle"; reboot -f; }
mkdir -p /opt && gunzip -c < "/dev/$bundle" 2>/dev/null | tar -xf - -C /opt
F="/opt/fio/lib/ld-linux-x86-64.so.2 --library-path /opt/fio/lib /opt/fio/fio"
$F --version < /dev/null | sed 's/^/L2-FIO-VERSION: /'

# prof DISK: completed requests (reads + writes), sectors moved and the
# disk's queue interrupts.
prof() {
	v=$(basename "$(readlink "/sys/block/$1/device")")
	set -- $(cat "/sys/block/$1/stat")
	echo "$(($1 + $5)) $(($3 + $7)) $(awk -v d="$v-req" '$0 ~ d { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i } END { print s + 0 }' /proc/interrupts)"
}

stty -echo 2>/dev/null
echo "L2-READY raw=$raw qcow2=$qcow2 fio=$bundle"
while read -r cmd fmt label; do
	case $cmd in
	Q) break ;;
	J) ;;
	*) continue ;;
	esac
	case $fmt in
	raw) dev=$raw ;;
	qcow2) dev=$qcow2 ;;
	*) echo "L2-GO"; echo "L2-END"; echo "L2-RES bad format $fmt"; continue ;;
	esac
	args=$(job_args "$label") ||
		{ echo "L2-GO"; echo "L2-END"; echo "L2-RES bad job $label"; continue; }
	a=$(prof "$dev")
	echo "L2-GO"
	r=$($F --name="$label" --filename="/dev/$dev" --direct=1 --ioengine=libaio $args \
		--size=128M --runtime="$RUNTIME" --time_based --minimal < /dev/null)
	echo "L2-END"
	# fio's terse format version 3, fields counted from 1: read KiB moved,
	# KiB/s, IOPS are 6, 7, 8; write's 47, 48, 49.
	echo "L2-RES $(echo "$r" | awk -F';' '/^3;/ { print $7, $8, $6, $48, $49, $47 }') $a $(prof "$dev")"
done
sync
reboot -f
