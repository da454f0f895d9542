#!/usr/bin/env bash
# kill -9 of the daemon in the middle of a backup and of a restore (issue
# 14; Longhorn #12938, silent corruption when a node crashes mid-restore),
# slowed by backup-delay-ms so the kill lands inside the work:
#  * (first, a backup while the volume is written over NBD: it restores to
#    its snapshot's bytes, without the writes made while it ran);
#  * a backup killed while it copies blocks is Failed after the restart
#    (never Completed, no MAC), saying why; the next backup is Completed,
#    based on the last Completed one, and verifies, also once the Failed
#    one is deleted;
#  * a restore killed while it writes blocks is, after the restart,
#    Restoring (never served) until it is finished again, then Available
#    with exactly the snapshot's bytes, or gone: never Available with
#    missing blocks.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
source "$(dirname "$0")/lib-backup.sh"

TARGET=$T/target
mkdir -p "$TARGET"
DELAY=(--backup-delay-ms 150)
bk_daemon kl "$TARGET" "${DELAY[@]}"
passfile "$T/k" 'kill test secret'
"$CRYPTVOL" secret create k --from-file "$T/k" > /dev/null
"$CRYPTVOL" volume create v --size 32M --secret k > /dev/null
random_file "$T/d" $((16 * MiB))
$NBDIO write "$CVD_NBD" v 0 "$T/d" || fail "writing v"

# kill_when WHAT CONDITION: waits (20 s) until the shell CONDITION holds,
# then kill -9 of the daemon.
kill_when() {
    local i
    for ((i = 0; i < 200; i++)); do
        eval "$2" && break
        sleep 0.1
    done
    eval "$2" || fail "$1: not seen in 20 s"
    kill -9 "$CVD_PID"
    wait "$CVD_PID" 2> /dev/null || true
}
bk_done() { bk_get "$1" '(b.get("progress") or {}).get("done", 0) if b["state"] == "InProgress" else -1'; }

# ---- a backup while the volume is written ------------------------------------
# The backup is of its snapshot: writes made while it runs are not in it.
"$CRYPTVOL" backup create v --no-wait --json > "$T/out" 2> "$T/err" || fail "backup create --no-wait: $(cat "$T/err")"
id0=$(json 'd["id"]' < "$T/out")
snap0=$(json 'd["snapshot"]' < "$T/out")
sum0=$(nbd_sum "v@$snap0")
random_file "$T/w" $((4 * MiB))
$NBDIO write "$CVD_NBD" v $((2 * MiB)) "$T/w" || fail "writing v during the backup"
[ "$(bk_get "$id0" 'b["state"]')" = InProgress ] || fail "backup $id0 ended before the writes: $(bk_get "$id0" 'b["state"]') (slow it more)"
for ((i = 0; i < 300; i++)); do
    [ "$(bk_get "$id0" 'b["state"]')" = InProgress ] || break
    sleep 0.1
done
[ "$(bk_get "$id0" 'b["state"]')" = Completed ] || fail "backup $id0 taken while v was written is $(bk_get "$id0" 'b["state"]')"
"$CRYPTVOL" backup restore "$id0" r0 > /dev/null 2> "$T/err" || fail "backup restore $id0: $(cat "$T/err")"
[ "$(nbd_sum r0)" = "$sum0" ] || fail "the backup taken while v was written does not restore to its snapshot's bytes"
[ "$(nbd_sum r0)" != "$(nbd_sum v)" ] || fail "the writes made during the backup did not change v"
"$CRYPTVOL" volume delete r0 > /dev/null
ok "backup $id0 taken while v was written over NBD restores to exactly v@$snap0"

# ---- a backup killed ----------------------------------------------------------
# 12 MiB changed since: the backup reads 12 blocks, 150 ms each.
random_file "$T/d2" $((12 * MiB))
$NBDIO write "$CVD_NBD" v $((4 * MiB)) "$T/d2" || fail "writing v"
"$CRYPTVOL" backup create v --no-wait --json > "$T/out" 2> "$T/err" || fail "backup create --no-wait: $(cat "$T/err")"
id1=$(json 'd["id"]' < "$T/out")
kill_when "backup $id1 copying blocks" '[ "$(bk_done "$id1")" -gt $((2 * MiB)) ]'
[ ! -e "$TARGET/backups/$id1.mac" ] || fail "backup $id1 has a MAC after a kill in the middle"
bk_daemon kl "$TARGET" "${DELAY[@]}"
[ "$(bk_get "$id1" 'b["state"]')" = Failed ] || fail "backup $id1 is $(bk_get "$id1" 'b["state"]') after the restart, not Failed"
[ -n "$(bk_get "$id1" 'b["error"] or ""')" ] || fail "the Failed backup $id1 says no error"
"$CRYPTVOL" backup list v > "$T/list"
grep -qE "^$id1 .* Failed: .+" "$T/list" || fail "backup list does not show $id1 Failed with why: $(cat "$T/list")"
rc=0
"$CRYPTVOL" backup verify "$id1" > "$T/v.out" 2> "$T/v.err" || rc=$?
[ "$rc" = 1 ] || fail "verify of the Failed backup $id1 exited $rc: $(cat "$T/v.out" "$T/v.err")"
ok "backup $id1 killed while copying: Failed after the restart ($(bk_get "$id1" 'b["error"]')), no MAC, verify refuses it"

id2=$(bk_create v)
[[ $id2 == bk-* ]] || fail "the backup after the restart: $id2"
[ "$(bk_get "$id2" 'b["base"]')" = "$id0" ] || fail "backup $id2 is incremental to $(bk_get "$id2" 'b["base"]'), not $id0 (a Failed backup is no base)"
snap2=$(bk_get "$id2" 'b["snapshot"]')
sum2=$(nbd_sum "v@$snap2")
"$CRYPTVOL" backup verify "$id2" > /dev/null 2> "$T/err" || fail "verify of $id2: $(cat "$T/err")"
"$CRYPTVOL" backup delete "$id1" > "$T/out" 2> "$T/err" || fail "backup delete of the Failed $id1: $(cat "$T/err")"
"$CRYPTVOL" backup verify "$id2" > /dev/null 2> "$T/err" || fail "verify of $id2 after deleting $id1: $(cat "$T/err")"
ok "the next backup $id2 is incremental to $id0 (not to the Failed one), Completed and verifies; the Failed one deleted ($(cat "$T/out"))"

# ---- a restore killed ---------------------------------------------------------
"$CRYPTVOL" backup restore "$id2" r --no-wait > /dev/null 2> "$T/err" || fail "backup restore --no-wait: $(cat "$T/err")"
r_done() { vinfo r '(d.get("job") or {}).get("done", 0) if d["state"] == "Restoring" else -1' 2> /dev/null || echo -1; }
for ((i = 0; i < 200; i++)); do
    [ "$(r_done)" -gt $((2 * MiB)) ] && break
    sleep 0.1
done
if $NBDIO read "$CVD_NBD" r 0 4096 "$T/x" 2> "$T/nbd.err"; then
    fail "r was served while Restoring ($(vstate r))"
fi
# Not exported at all while Restoring, as an Importing volume.
grep -qE "volume r: is Restoring|no export named 'r'" "$T/nbd.err" || fail "the NBD refusal of a Restoring volume: $(cat "$T/nbd.err")"
kill_when "the restore of r writing blocks" '[ "$(r_done)" -gt $((4 * MiB)) ]'
# Restarted slow, so it is seen Restoring and not served before it ends.
bk_daemon kl "$TARGET" "${DELAY[@]}"
st=$(vstate r)
case $st in
Restoring)
    if $NBDIO read "$CVD_NBD" r 0 4096 "$T/x" 2> "$T/nbd.err"; then
        fail "r was served while Restoring after the restart"
    fi
    wait_state r Available 30 ;;
Available | gone) ;;
*) fail "r is $st after the restart: neither Restoring, Available nor gone" ;;
esac
st=$(vstate r)
if [ "$st" = Available ]; then
    [ "$(nbd_sum r)" = "$sum2" ] || fail "r is Available after the kill but does not read as v@$snap2: blocks are missing"
    ok "the restore killed while writing blocks resumed after the restart: Available, exactly v@$snap2"
else
    no_volume r "the restore killed and cleaned up"
    ok "the restore killed while writing blocks was removed after the restart"
fi
