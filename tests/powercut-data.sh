#!/usr/bin/env bash
# Power cuts under NBD writes: every FUA write, and every write
# acknowledged before a FLUSH that was acknowledged, is on disk at every
# power cut after that acknowledgement.  cryptvold runs under the
# power-loss harness (docs/testing.md: tests/tools/powercut/ records every
# write and sync to its data dir), tests/tools/powercut-nbd.py writes
# distinct 4 KiB blocks of a LUKS2 volume from two connections (a quarter
# with FUA, a sixth followed by a FLUSH) and notes the log's length after
# each reply; then the log is replayed at every sync point and every
# acknowledgement (what no sync covered lost, or a random part of it,
# torn) and the blocks compared with the final layer (the volume's chain:
# docs/store.md), a few cut states decrypted offline (header and layer
# put together), and two served again by the daemon.  Unlike kill -9,
# a power cut loses the page cache: a missing fdatasync fails here.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
"$PYTHON" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
PCNBD=("$PYTHON" "$SRC_DIR/tests/tools/powercut-nbd.py")
SEED=${POWERCUT_SEED:-1}

# Made unrecorded: the base copy the replay starts from.
cvd_start d --tls off
passfile "$T/pass" "powercut data passphrase"
"$CRYPTVOL" secret create s --from-file "$T/pass" > /dev/null
"$CRYPTVOL" volume create v --size 4M --secret s > /dev/null
offset=$("$CRYPTVOL" volume info v --json | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)["dataOffset"])')
cvd_stop
cp -a --sparse=always "$CVD_DIR/data" "$T/base"
# The volume's files, relative to the data dir: its one layer (image-shaped,
# so block X of the volume is at data offset + X there) and its header.
layer=$(vol_head "$CVD_DIR/data" v)
layer=${layer#"$CVD_DIR/data/"}
header=volumes/v/header
[ -f "$CVD_DIR/data/$header" ] || fail "no header file at $CVD_DIR/data/$header"

CVD_RECORD=$T/rec.log cvd_start d --tls off
"${PCNBD[@]}" write "$CVD_NBD" v --log "$T/rec.log" --acks "$T/acks" \
    --slots 160 --conns 2 --seed "$SEED" || fail "the recorded writes failed"
cvd_stop
[ "$(grep -c '"fua": true' "$T/acks")" -ge 10 ] || fail "fewer than 10 FUA writes: $(wc -l < "$T/acks") acks"
[ "$(grep -c '"flush"' "$T/acks")" -ge 10 ] || fail "fewer than 10 FLUSHes"
mv "$CVD_DIR/data" "$T/final"

"${PCNBD[@]}" check --log "$T/rec.log" --base "$T/base" --acks "$T/acks" \
    --final "$T/final" --image "$layer" --header "$header" --data-offset "$offset" \
    --work "$T/work" --seed "$SEED" --max-cuts 120 \
    --plain "$T/pass" --cryptvol "$CRYPTVOL" \
    --save "$T/len1:$T/cut1" --save "$T/len2:$T/cut2" 2> "$T/check.err" ||
    fail "power cuts lose durable writes: $(cat "$T/check.err")"
cat "$T/check.err"
ok "every FUA and flushed write is in every power-cut state after its acknowledgement"

# Two cut states served by the real daemon (the records hold absolute
# paths: each goes where the data dir was).
for i in 1 2; do
    rm -rf "$CVD_DIR/data"
    mv "$T/cut$i" "$CVD_DIR/data"
    cvd_start d --tls off
    "$CRYPTVOL" volume list | grep -q '^v ' || fail "cut $i: volume v not listed: $("$CRYPTVOL" volume list)"
    "${PCNBD[@]}" verify "$CVD_NBD" v --acks "$T/acks" --length "$(cat "$T/len$i")" \
        2> "$T/verify.err" || fail "cut $i served by cryptvold: $(cat "$T/verify.err")"
    cvd_stop
    ok "cut state $i (log length $(cat "$T/len$i")): cryptvold serves it; $(cat "$T/verify.err" | sed 's/^powercut-nbd: //')"
done
