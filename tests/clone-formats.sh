#!/usr/bin/env bash
# Clones with their own LUKS format (issue 10: RBD layering without its
# lost 12 MiB), both ways: a LUKS2 parent with a LUKS1 clone and a LUKS1
# parent with a LUKS2 clone.  For each:
#
#  * the parent gets marker data (each 32 bytes name their offset) before
#    its snapshot; the clone `volume clone P@gold C --secret SC --type T`
#    has the parent's size and data offset, its own header (cryptsetup
#    luksDump of its `header` file: the other LUKS version, its own volume
#    key) and needsSecrets [SC, SP];
#  * the clone is written: a fresh range, a partial write inside a parent
#    block and one across two (each copies the parent block up); the
#    parent is written after the snapshot;
#  * an independent AES-XTS (tests/tools/xts-check.py, keys from
#    cryptsetup) finds the parent's data in the snapshot's layer under the
#    parent's key, the clone's writes and the copied-up blocks (parent
#    bytes with the clone's over them) in the clone's own layer under the
#    clone's key, and nothing of the parent's untouched blocks in the
#    clone's layer;
#  * over NBD the clone reads the parent's snapshot with its own writes
#    over it (not the parent's later writes), and the parent and its
#    snapshot read as they were;
#  * no file under the data dir holds either marker in plaintext; the
#    control, a --plaintext volume, puts a marker in its own layer file and
#    in no other.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
need cryptsetup

# marker FILE TAG LENGTH BASE: LENGTH bytes of 32-byte records
# "TAG:OFFSET_HEX:" (OFFSET = BASE + position), padded with '.'.
marker() {
    "$PYTHON" - "$@" <<'PY'
import sys
path, tag, n, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rec = lambda o: ("%s:%016x:" % (tag, o)).ljust(32, ".").encode()
data = b"".join(rec(base + o) for o in range(0, n + 31, 32))[:n]
open(path, "wb").write(data)
PY
}
# overlay BASE_FILE BASE_OFF PIECE PIECE_OFF OUT: BASE_FILE (at volume
# offset BASE_OFF) with PIECE (at PIECE_OFF) laid over it.
overlay() {
    cp "$1" "$5"
    dd if="$3" of="$5" bs=1M seek=$(($4 - $2)) oflag=seek_bytes conv=notrunc status=none
}
xts_layer() {   # xts_layer LAYER KEY OFFSET SECTOR PLAINTEXT VOLOFF...
    local layer=$1 key=$2 off=$3 ss=$4 args=()
    shift 4
    while [ $# -gt 0 ]; do args+=(--plaintext "$1" --offset "$2"); shift 2; done
    $XTS_CHECK check "$layer" --layer --key "$key" --data-offset "$off" \
        --sector-size "$ss" "${args[@]}" > /dev/null
}

cvd_start clones --tls off
passfile "$T/sp" 'the parent secret'
passfile "$T/sc" 'the clone secret, another'
"$CRYPTVOL" secret create sp --from-file "$T/sp" > /dev/null
"$CRYPTVOL" secret create sc --from-file "$T/sc" > /dev/null

# clone_case PARENT_TYPE CLONE_TYPE
clone_case() {
    local pt=$1 ct=$2 p="p-$1" c="c-$2-of-$1" what="$2 clone of a $1 parent"
    local kp kc gp gc pv po ps cv co cs a1=$MiB a2=$((8 * MiB)) b1=$((4 * MiB))
    local b2=$((MiB + 5000)) b3=$((8 * MiB + 3000)) blk=4096
    "$CRYPTVOL" volume create "$p" --size 32M --secret sp --type "$pt" > /dev/null
    marker "$T/A1" CVPARENT $((256 * 1024)) $a1
    marker "$T/A2" CVPARENT 65536 $a2
    $NBDIO write "$CVD_NBD" "$p" $a1 "$T/A1" || fail "$what: writing the parent"
    $NBDIO write "$CVD_NBD" "$p" $a2 "$T/A2" || fail "$what: writing the parent"
    "$CRYPTVOL" snapshot create "$p@gold" > /dev/null
    "$CRYPTVOL" volume clone "$p@gold" "$c" --secret sc --type "$ct" > /dev/null ||
        fail "$what: volume clone $p@gold $c --secret sc --type $ct"

    # Size, offsets, formats and keys.
    local want got
    want="($(vinfo "$p" 'd["size"]'), $(vinfo "$p" 'd["dataOffset"]'), '$ct', '$p@gold')"
    got=$(vinfo "$c" '(d["size"], d["dataOffset"], d["type"], d.get("parent"))')
    [ "$got" = "$want" ] ||
        fail "$what: (size, dataOffset, type, parent) of the clone is $got, expected $want"
    [ "$(vinfo "$c" 'd.get("needsSecrets")')" = "['sc', 'sp']" ] ||
        fail "$what: needsSecrets is $(vinfo "$c" 'd.get("needsSecrets")'), expected ['sc', 'sp']"
    read -r pv po ps <<< "$(luks_geom "$(vol_dir "$p")/header")"
    read -r cv co cs <<< "$(luks_geom "$(vol_dir "$c")/header")"
    [ "$pv:$cv" = "${pt#luks}:${ct#luks}" ] ||
        fail "$what: cryptsetup sees LUKS$pv parent and LUKS$cv clone headers"
    [ "$po" = "$co" ] && [ "$po" = "$(vinfo "$c" 'd["dataOffset"]')" ] ||
        fail "$what: data offsets: parent header $po, clone header $co, volume info $(vinfo "$c" 'd["dataOffset"]')"
    kp=$(volume_key "$(vol_dir "$p")/header" "$T/sp")
    kc=$(volume_key "$(vol_dir "$c")/header" "$T/sc")
    [ "$kp" != "$kc" ] || fail "$what: the clone has the parent's volume key"
    cryptsetup open --test-passphrase --key-file "$T/sp" "$(vol_dir "$c")/header" 2> /dev/null &&
        fail "$what: the parent's secret opens the clone's header"
    ok "$what: size and data offset ($co) of the parent, LUKS$cv header of its own, its own key; needs sc then sp"

    # The clone's writes; the parent's after the snapshot.
    marker "$T/B1" CVCLONE1 $((128 * 1024)) $b1
    marker "$T/B2" CVCLONE1 1000 $b2
    marker "$T/B3" CVCLONE1 6000 $b3
    for x in "B1 $b1" "B2 $b2" "B3 $b3"; do
        set -- $x
        $NBDIO write "$CVD_NBD" "$c" "$2" "$T/$1" || fail "$what: writing $1 to the clone"
    done
    marker "$T/A9" CVPARENT $((256 * 1024)) $((a1 + 7))
    $NBDIO write "$CVD_NBD" "$p" $a1 "$T/A9" || fail "$what: writing the parent after the snapshot"

    # What the clone must read: A1 with B2 over it, A2 with B3, B1.
    overlay "$T/A1" $a1 "$T/B2" $b2 "$T/C1"
    overlay "$T/A2" $a2 "$T/B3" $b3 "$T/C2"
    for x in "C1 $a1" "C2 $a2" "B1 $b1"; do
        set -- $x
        $NBDIO read "$CVD_NBD" "$c" "$2" "$(stat -c %s "$T/$1")" "$T/got"
        cmp "$T/got" "$T/$1" >&2 || fail "$what: the clone reads other bytes than $1 at $2 over NBD"
    done
    for x in "A1 $a1" "A2 $a2"; do
        set -- $x
        $NBDIO read "$CVD_NBD" "$p@gold" "$2" "$(stat -c %s "$T/$1")" "$T/got"
        cmp "$T/got" "$T/$1" >&2 || fail "$what: the parent's snapshot no longer reads $1 at $2"
    done
    $NBDIO read "$CVD_NBD" "$p" $a1 $((256 * 1024)) "$T/got"
    cmp "$T/got" "$T/A9" >&2 || fail "$what: the parent does not read its own later write"
    ok "$what: over NBD the clone reads the snapshot with its writes over it, the parent its own"

    # At rest, independently: the parent's data under its key in gold's
    # layer; the clone's writes and copied-up blocks under the clone's key in
    # its own layer; the rest of the parent's blocks are not in it.
    local gold head cb2 cb3 cb3_end
    gold=$(layer_of "$p" gold)
    head=$(layers "$c" | tail -n 1)
    [ "$(layers "$c" | wc -l)" = 1 ] || fail "$what: the clone has $(layers "$c" | wc -l) layers of its own, expected 1"
    xts_layer "$gold" "$kp" "$po" "$ps" "$T/A1" $a1 "$T/A2" $a2 ||
        fail "$what: the parent's data is not in its snapshot's layer under the parent's key"
    # The parent's blocks a partial write touched, copied up whole.
    # B2 is inside one block; B3 (6000 bytes from 3000) touches three.
    cb2=$(( (b2 / blk) * blk )); cb3=$(( (b3 / blk) * blk ))
    cb3_end=$(( (b3 + 6000 + blk - 1) / blk * blk ))
    dd if="$T/C1" of="$T/CB2" iflag=skip_bytes,count_bytes skip=$((cb2 - a1)) count=$blk status=none
    dd if="$T/C2" of="$T/CB3" iflag=skip_bytes,count_bytes skip=$((cb3 - a2)) count=$((cb3_end - cb3)) status=none
    xts_layer "$head" "$kc" "$co" "$cs" "$T/B1" $b1 "$T/CB2" $cb2 "$T/CB3" $cb3 ||
        fail "$what: the clone's writes and copied-up blocks are not in its layer under its own key"
    $XTS_CHECK holes "$head" --data-offset "$co" --offset $((a1 + 65536)) --length $((192 * 1024)) \
        --offset 0 --length $a1 > /dev/null ||
        fail "$what: the clone's layer holds parent blocks it never wrote"
    ok "$what: xts-check: parent's blocks under the parent's key in gold's layer, the clone's writes and copy-ups under the clone's key, nothing else copied"
}

clone_case luks2 luks1
clone_case luks1 luks2

# ---- no plaintext at rest, with its control ------------------------------
files_with() { grep -rlaF "$1" "$CVD_DIR/data" || true; }
"$CRYPTVOL" volume create plain --size 16M --plaintext > /dev/null
marker "$T/P" CVPLAIN0 65536 0
$NBDIO write "$CVD_NBD" plain 0 "$T/P" || fail "writing the plaintext control volume"
cvd_stop
for tag in CVPARENT: CVCLONE1:; do
    found=$(files_with "$tag")
    [ -z "$found" ] || fail "plaintext ($tag) at rest in: $found"
done
found=$(files_with CVPLAIN0:)
[ -n "$found" ] && [ -z "$(grep -v "^$CVD_DIR/data/volumes/plain/" <<< "$found")" ] ||
    fail "control: the plaintext volume's marker is in '$found', not only in its own files: the search cannot be trusted"
ok "no file under the data dir ($(find "$CVD_DIR/data" -type f | wc -l) files) holds the parents' or clones' markers; the control's is in its own files only"
