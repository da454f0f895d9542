#!/usr/bin/env bash
# Snapshots of a volume being written over NBD (issue 10, docs/store.md):
#
#  * two writer connections write 4 KiB blocks that name their write
#    (tests/tools/snap-writer.py, which logs when each write was sent and
#    answered) while four snapshots are taken: each snapshot, read over
#    NBD as VOL@SNAP, holds in every block the last write answered before
#    its create began or a later one, and none sent after the create
#    returned; the volume holds every answered write.  Two doctored logs
#    (a snapshot said to begin later, one said to return earlier) must
#    fail the same check: it can tell.
#  * VOL@SNAP is read-only: NBD_FLAG_READ_ONLY, and a write, trim and
#    zeroes the client sends anyway get EPERM from the server; two clients
#    read it at once; nbdinfo says read-only and nbdcopy reads the bytes.
#  * kill -9 of the daemon during a snapshot create, five times at random
#    points under the writers: after each restart every snapshot is listed
#    whole (the same check) or not at all, the volume holds every flushed
#    write, and no layer file is left that the manifest does not list.
#  * kill -9 during the merge of a snapshot delete, four times: after the
#    restart the deleted snapshot is gone (or, if the kill came before the
#    delete was taken, whole), every other snapshot and the volume read
#    the same bytes as before, and the merge finishes.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
command -v nbdcopy > /dev/null || skip "nbdcopy (libnbd-bin) is not installed"
command -v nbdinfo > /dev/null || skip "nbdinfo (libnbd-bin) is not installed"
SW="$PYTHON $SRC_DIR/tests/tools/snap-writer.py"

passfile "$T/pass" 'snapshots under load'
cvd_start live --tls off
"$CRYPTVOL" secret create pw --from-file "$T/pass" > /dev/null
"$CRYPTVOL" volume create v --size 64M --secret pw > /dev/null

# ---- snapshots under a live writer ----------------------------------------
$SW run "$CVD_NBD" v --log "$T/live.json" --cli "$CRYPTVOL" --run 1 \
    --blocks 2048 --threads 2 --snapshots s1,s2,s3,s4 --gap-ms 40:150 ||
    fail "snapshots under the writer (log above)"
[ "$(snaps v)" = "s1 s2 s3 s4" ] || fail "snapshot list v: '$(snaps v)', expected s1 s2 s3 s4 (oldest first)"
$SW check "$CVD_NBD" v --log "$T/live.json" --cli "$CRYPTVOL" --head acked ||
    fail "a snapshot taken under the writer is not exactly the writes answered before it"
ok "4 snapshots under 2 writers: each holds exactly the writes answered before it"

# The check can fail: the same snapshots against a log that says s2 began
# after s4 returned (so it lacks writes answered "before" it), and one that
# says s3 returned before s1 began (so it holds writes sent "after" it).
"$PYTHON" - "$T/live.json" "$T/late.json" "$T/early.json" <<'PY'
import json, sys
log = json.load(open(sys.argv[1]))
s = {r["name"]: r for r in log["snapshots"]}
s["s2"]["began"] = s["s4"]["returned"] + 1
json.dump(log, open(sys.argv[2], "w"))
log = json.load(open(sys.argv[1]))
s = {r["name"]: r for r in log["snapshots"]}
s["s3"]["returned"] = s["s1"]["began"] - 1
json.dump(log, open(sys.argv[3], "w"))
PY
for doctored in late early; do
    $SW check "$CVD_NBD" v --log "$T/$doctored.json" --cli "$CRYPTVOL" \
        > /dev/null 2> "$T/ctl.err" &&
        fail "control: the check passes a log doctored ($doctored) to contradict the snapshots"
    grep -q 'v@s[23] block' "$T/ctl.err" ||
        fail "control ($doctored): the check failed without naming a block of the doctored snapshot: $(head -3 "$T/ctl.err")"
done
ok "control: logs doctored to begin later / return earlier fail the check"

# ---- VOL@SNAP is read-only, several clients ---------------------------------
$NBDIO readonly "$CVD_NBD" v@s2 || fail "v@s2 is not read-only"
[ "$(nbdinfo --json "$(uri v@s2)" | json 'd["exports"][0]["is_read_only"]')" = True ] ||
    fail "nbdinfo does not see v@s2 as read-only"
[ "$(nbdinfo --json "$(uri v)" | json 'd["exports"][0]["is_read_only"]')" = False ] ||
    fail "nbdinfo sees the volume v itself as read-only"
nbdcopy "$(uri v@s3)" "$T/s3.raw" || fail "nbdcopy of v@s3"
[ "$(sha256sum < "$T/s3.raw" | cut -d' ' -f1)" = "$(nbd_sum v@s3)" ] ||
    fail "nbdcopy reads v@s3 differently from a client of its own"
rm -f "$T/s3.raw"
sum_s1=$(nbd_sum v@s1)
random_file "$T/w" $MiB
$NBDIO write "$CVD_NBD" v $((60 * MiB)) "$T/w" || fail "writing v at 60 MiB"
[ "$(nbd_sum v@s1)" = "$sum_s1" ] || fail "writing the volume changed its snapshot s1"
ok "v@s2 is read-only (NBD flag, EPERM for write/trim/zeroes, two clients); nbdcopy reads v@s3; a write to v leaves s1 as it was"
for s in s1 s2 s3 s4; do echo "$s $(nbd_sum "v@$s")"; done > "$T/live.sums"

# ---- kill -9 during snapshot create ---------------------------------------
# Each round writes its own 512 blocks from block 4096 + 512 * ROUND, so
# each log is the whole history of its blocks.
made=0 cut=0
# The kill comes at a point in its own window each round, so that some
# creates are cut and some made.
windows=(0 0:10 10:30 30:60 5:40 60:120)
for round in 1 2 3 4 5; do
    $SW run "$CVD_NBD" v --log "$T/kill$round.json" --cli "$CRYPTVOL" \
        --run $((10 + round)) --first-block $((4096 + 512 * round)) \
        --blocks 512 --threads 2 --flush-every 8 --snapshots "k${round}a,k${round}b" \
        --gap-ms 20:60 --kill "$CVD_PID" --kill-after-ms "${windows[round]}" ||
        fail "round $round: the writer under a killed snapshot create"
    { wait "$CVD_PID"; } 2> /dev/null || true
    cvd_start live --tls off
    layers_match_manifest v
    for r in $(seq 1 "$round"); do
        $SW check "$CVD_NBD" v --log "$T/kill$r.json" --cli "$CRYPTVOL" \
            --head flushed > "$T/check.out" ||
            fail "round $round: after kill -9 during a snapshot create, the check of round $r failed"
    done
    if grep -qw "k${round}b" <<< "$(snaps v)"; then made=$((made + 1)); else cut=$((cut + 1)); fi
done
for s in s1 s2 s3 s4; do echo "$s $(nbd_sum "v@$s")"; done | diff "$T/live.sums" - >&2 ||
    fail "after the kills, the first snapshots s1..s4 no longer read as they did (diff above)"
ok "kill -9 during snapshot create x5 ($made made, $cut not): every snapshot whole or absent, every flushed write kept, no stray layer file"

# ---- kill -9 during the merge of a snapshot delete --------------------------
# Data to merge: 24 MiB at 32 MiB in m1, 8 MiB of it rewritten in m2.
random_file "$T/m1" $((24 * MiB))
random_file "$T/m2" $((8 * MiB))
$NBDIO write "$CVD_NBD" v $((32 * MiB)) "$T/m1" || fail "writing m1's data"
"$CRYPTVOL" snapshot create v@m1 > /dev/null
$NBDIO write "$CVD_NBD" v $((40 * MiB)) "$T/m2" || fail "writing m2's data"
"$CRYPTVOL" snapshot create v@m2 > /dev/null
# sums: every view's sha256 (the volume's and each snapshot's).
sums() {
    local s
    echo "v $(nbd_sum v)"
    for s in $(snaps v); do echo "$s $(nbd_sum "v@$s")"; done
}
sums > "$T/sums.before"
mid=0
for victim in m1 s1 k1a m2; do
    grep -q "^$victim " "$T/sums.before" || continue
    "$CRYPTVOL" snapshot delete "v@$victim" --no-wait > /dev/null 2>&1 &
    cli=$!
    sleep "$(printf '0.%03d' $((RANDOM % 60)))"
    kill -9 "$CVD_PID"
    { wait "$CVD_PID"; } 2> /dev/null || true
    wait "$cli" 2> /dev/null || true
    merging v && mid=$((mid + 1))
    cvd_start live --tls off
    # The merge resumes at the start; wait for it to finish.
    for ((i = 0; i < 300; i++)); do merging v || break; sleep 0.2; done
    merging v && fail "the merge of v@$victim did not finish within 60 s of the restart"
    layers_match_manifest v
    sums > "$T/sums.after"
    if grep -q "^$victim " "$T/sums.after"; then
        # The kill came before the delete was taken: whole, as it was.
        diff "$T/sums.before" "$T/sums.after" >&2 ||
            fail "after kill -9 during the delete of $victim, it is still listed but some view changed (diff above)"
        "$CRYPTVOL" snapshot delete "v@$victim" > /dev/null ||
            fail "deleting $victim again after the restart"
        sums > "$T/sums.after"
    fi
    grep -v "^$victim " "$T/sums.before" > "$T/sums.want"
    diff "$T/sums.want" "$T/sums.after" >&2 ||
        fail "after kill -9 during the merge of v@$victim the views read other bytes (diff above: snapshot and sha256)"
    cp "$T/sums.after" "$T/sums.before"
done
[ "$(layers v | wc -l)" = $(($(wc -w <<< "$(snaps v)") + 1)) ] ||
    fail "v has $(layers v | wc -l) layers for $(wc -w <<< "$(snaps v)") snapshots"
ok "kill -9 during 4 snapshot deletes ($mid cut mid-merge): gone after the restart, every other view unchanged, merges finished"
cvd_stop
