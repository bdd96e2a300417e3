#!/bin/bash
# kvz's qcow2 code against QEMU's, side by side in one run on this host
# (page cache, no guest; whole processes timed, start-up included):
# qemu-img bench -d 1 against qcow2_writer bench, on the qcow2 library and
# through the block layer (the same pattern: BS-byte requests one after
# the other, then a flush),
# writing into a new image (every cluster allocated) and reading it back;
# then kvz-image convert against qemu-img convert (raw -> qcow2, the same
# compressed, and qcow2 -> raw). Prints seconds and kvz/QEMU time ratios
# (lower is better). Needs qemu-img (qemu-utils) and a build (BUILD_DIR).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
W=$BUILD_DIR/tests/block/qcow2_writer
KIMG=$BUILD_DIR/src/image/kvz-image
SIZE_MB=${SIZE_MB:-512}
bench_need_tool qemu-img "apt-get install qemu-utils"
bench_need_built "$W" "$KIMG"
WORK=$(mktemp -d /tmp/kvz-qcow2-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

secs() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
row() { printf "%-32s %8s %8s %6s\n" "$1" "$2" "$3" "$(bench_ratio "$2" "$3")"; }

printf "%-32s %8s %8s %6s\n" "qcow2, ${SIZE_MB} MiB" "kvz s" "qemu s" "ratio"
# lib: the qcow2 library alone; blk: the block layer kvz-vmm's virtio-blk
# drives (blk_submit into the qcow2 backend, reads on io_uring).
for layer in lib blk; do
	blk=""; [ $layer = blk ] && blk=1
	for bs in 4096 65536 1048576; do
		count=$((SIZE_MB * 1048576 / bs))
		for op in write read; do
			rm -f "$WORK/k.qcow2" "$WORK/q.qcow2"
			qemu-img create -q -f qcow2 "$WORK/k.qcow2" "${SIZE_MB}M"
			qemu-img create -q -f qcow2 "$WORK/q.qcow2" "${SIZE_MB}M"
			if [ $op = read ]; then # read what was written
				"$W" bench "$WORK/k.qcow2" write "$bs" "$count" >/dev/null
				qemu-img bench -q -f qcow2 -w -d 1 -s "$bs" -c "$count" "$WORK/q.qcow2" >/dev/null
			fi
			wflag=""; [ $op = write ] && wflag=-w
			k=$(KVZ_WRITER_BLK=$blk secs "$W" bench "$WORK/k.qcow2" $op "$bs" "$count")
			q=$(secs qemu-img bench -f qcow2 $wflag -d 1 -s "$bs" -c "$count" "$WORK/q.qcow2")
			row "$layer seq $op bs=$bs depth 1" "$k" "$q"
		done
	done
done

head -c $((SIZE_MB / 2 * 1048576)) /dev/urandom > "$WORK/src.raw"
head -c $((SIZE_MB / 2 * 1048576)) /dev/zero | tr '\0' 'k' >> "$WORK/src.raw"
for c in "" "-c"; do
	rm -f "$WORK/k.qcow2" "$WORK/q.qcow2"
	k=$(secs "$KIMG" convert $c -O qcow2 "$WORK/src.raw" "$WORK/k.qcow2")
	q=$(secs qemu-img convert $c -O qcow2 "$WORK/src.raw" "$WORK/q.qcow2")
	row "convert raw->qcow2 ${c:-plain}" "$k" "$q"
done
rm -f "$WORK/k.raw" "$WORK/q.raw"
k=$(secs "$KIMG" convert -O raw "$WORK/q.qcow2" "$WORK/k.raw")
q=$(secs qemu-img convert -O raw "$WORK/q.qcow2" "$WORK/q.raw")
row "convert qcow2(-c)->raw" "$k" "$q"
