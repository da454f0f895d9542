#!/usr/bin/env bash
# Holes are the file system's, and the same truth everywhere (issue 10,
# docs/store.md):
#
#  * a fresh volume reads zeros (not raw zeros decrypted), and `nbdinfo
#    --map` (NBD BLOCK_STATUS) shows it as one hole;
#  * after writes at 8 MiB (1 MiB) and 32 MiB + 4 KiB (one block), the map
#    shows exactly those ranges as data and the rest as holes; `qemu-img
#    map` agrees;
#  * a trim of part of the written MiB: reads zeros, a hole again in the
#    map;
#  * over a snapshot that holds data, a trim and a write-zeroes in the head
#    read zeros (the snapshot's data must not show through), and the
#    snapshot still reads its data;
#  * `qemu-img convert` of the volume over NBD to a raw and to a qcow2 file
#    stays sparse (du), and both read the volume's bytes.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
need nbdinfo qemu-img

cvd_start sparse --tls off
"$CRYPTVOL" volume create v --size 64M > /dev/null
SIZE=$((64 * MiB))

# map EXPORT: the data ranges BLOCK_STATUS reports, "OFFSET+LENGTH" each,
# adjacent ones joined; checks the map covers the export without a gap.
map() {
    nbdinfo --map "$(uri "$1")" > "$T/map" || fail "nbdinfo --map $1"
    "$PYTHON" - "$T/map" "$SIZE" <<'PY'
import sys
pos, data = 0, []
for line in open(sys.argv[1]):
    off, length, typ = (int(x) for x in line.split()[:3])
    if off != pos:
        sys.exit("the map jumps from %d to %d" % (pos, off))
    pos = off + length
    if not typ & 1:                 # not a hole: data
        if data and data[-1][0] + data[-1][1] == off:
            data[-1][1] += length
        else:
            data.append([off, length])
if pos != int(sys.argv[2]):
    sys.exit("the map ends at %d, the export at %s" % (pos, sys.argv[2]))
print(" ".join("%d+%d" % (o, l) for o, l in data) or "none")
PY
}
expect_map() {
    local got
    got=$(map "$1") || fail "$1: bad map: $got"
    [ "$got" = "$2" ] || fail "$1: nbdinfo --map shows data at '$got', expected '$2' ($3); map: $(cat "$T/map")"
}

nbd_read v "$T/fresh"
cmp "$T/fresh" <(head -c $SIZE /dev/zero) > /dev/null || fail "a fresh volume does not read zeros"
expect_map v none "a fresh volume"
ok "a fresh volume reads zeros and is one hole in the map"

random_file "$T/d1" $MiB
random_file "$T/d2" 4096
$NBDIO write "$CVD_NBD" v $((8 * MiB)) "$T/d1" || fail "writing at 8 MiB"
$NBDIO write "$CVD_NBD" v $((32 * MiB + 4096)) "$T/d2" || fail "writing at 32 MiB + 4 KiB"
expect_map v "$((8 * MiB))+$MiB $((32 * MiB + 4096))+4096" "two writes"
qemu-img map -f raw --output=json "$(uri v)" > "$T/qmap" 2> "$T/q.err" || fail "qemu-img map: $(cat "$T/q.err")"
qdata=$("$PYTHON" - "$T/qmap" <<'PY'
import json, sys
data = []
for e in json.load(open(sys.argv[1])):
    if not e["data"]:
        continue
    if data and data[-1][0] + data[-1][1] == e["start"]:
        data[-1][1] += e["length"]
    else:
        data.append([e["start"], e["length"]])
print(" ".join("%d+%d" % (o, l) for o, l in data))
PY
)
[ "$qdata" = "$((8 * MiB))+$MiB $((32 * MiB + 4096))+4096" ] ||
    fail "qemu-img map disagrees: $(cat "$T/qmap")"
ok "the map shows data where written (8 MiB+1 MiB, 32 MiB+4 KiB), holes elsewhere; qemu-img map agrees"

$NBDIO trim "$CVD_NBD" v $((8 * MiB + 256 * 1024)) $((512 * 1024)) || fail "trim"
$NBDIO read "$CVD_NBD" v $((8 * MiB + 256 * 1024)) $((512 * 1024)) "$T/got"
cmp "$T/got" <(head -c $((512 * 1024)) /dev/zero) > /dev/null || fail "a trimmed range does not read zeros"
expect_map v "$((8 * MiB))+$((256 * 1024)) $((8 * MiB + 768 * 1024))+$((256 * 1024)) $((32 * MiB + 4096))+4096" "after the trim"
ok "a trimmed range reads zeros and is a hole in the map again"

# Over a snapshot: the head's zeros hide the snapshot's data.
random_file "$T/d3" $((2 * MiB))
$NBDIO write "$CVD_NBD" v $((40 * MiB)) "$T/d3" || fail "writing at 40 MiB"
"$CRYPTVOL" snapshot create v@s > /dev/null
$NBDIO trim "$CVD_NBD" v $((40 * MiB)) $MiB || fail "trim over the snapshot's data"
$NBDIO zero "$CVD_NBD" v $((41 * MiB)) 8192 || fail "write-zeroes over the snapshot's data"
$NBDIO read "$CVD_NBD" v $((40 * MiB)) $((MiB + 8192)) "$T/got"
cmp "$T/got" <(head -c $((MiB + 8192)) /dev/zero) > /dev/null ||
    fail "a trim or write-zeroes over a snapshot's data lets the snapshot's data show through"
$NBDIO read "$CVD_NBD" v@s $((40 * MiB)) $((2 * MiB)) "$T/got"
cmp "$T/got" "$T/d3" >&2 || fail "the snapshot lost its data to a trim of the volume"
$NBDIO read "$CVD_NBD" v $((41 * MiB + 8192)) $((MiB - 8192)) "$T/got"
cmp "$T/got" <(tail -c +$((MiB + 8192 + 1)) "$T/d3") >&2 || fail "the rest of the snapshot's data no longer shows in the volume"
ok "trim and write-zeroes over a snapshot's data read zeros; the snapshot keeps its data"

nbd_read v "$T/vol"
rm -f "$T/q.raw" "$T/q.qcow2"
qemu-img convert -f raw -O raw "$(uri v)" "$T/q.raw" 2> "$T/q.err" || fail "qemu-img convert to raw: $(cat "$T/q.err")"
qemu-img convert -f raw -O qcow2 "$(uri v)" "$T/q.qcow2" 2> "$T/q.err" || fail "qemu-img convert to qcow2: $(cat "$T/q.err")"
cmp "$T/vol" "$T/q.raw" >&2 || fail "qemu-img's raw copy differs from the volume"
qemu-img convert -f qcow2 -O raw "$T/q.qcow2" "$T/q2.raw"
cmp "$T/vol" "$T/q2.raw" >&2 || fail "qemu-img's qcow2 copy differs from the volume"
# Data: 1 MiB - 512 KiB + 4 KiB + 2 MiB - 1 MiB - 8 KiB, under 3 MiB.
for f in q.raw q.qcow2; do
    [ "$(du -k "$T/$f" | cut -f1)" -le 4096 ] ||
        fail "qemu-img convert of the sparse volume to $f is $(du -k "$T/$f" | cut -f1) KiB on disk (of 64 MiB): not sparse"
done
ok "qemu-img convert over NBD stays sparse: raw $(du -k "$T/q.raw" | cut -f1) KiB, qcow2 $(du -k "$T/q.qcow2" | cut -f1) KiB on disk; both read the volume's bytes"
cvd_stop
