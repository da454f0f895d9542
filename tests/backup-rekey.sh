#!/usr/bin/env bash
# A backup opens with the secret of its time (issue 14; Longhorn #9571,
# "missing passphrase" after a restore): a volume rekeyed after its backup
#  * restores, by default, with the secret it had then (by that name), and
#    the restored volume reads its snapshot's bytes over NBD;
#  * --secret with a secret whose value does not open the backup's header
#    (the volume's new secret, or a wrong one) is refused with exit 3,
#    naming the secret, before anything is written: no volume, no files;
#  * with the backup-time secret deleted, the restore waits Pending naming
#    it (not served), and becomes Available, reading the right bytes, once
#    a secret of that name and value is created again.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
source "$(dirname "$0")/lib-backup.sh"

TARGET=$T/target
mkdir -p "$TARGET"
bk_daemon rk "$TARGET" --pending-retry-interval 0
passfile "$T/k1" 'the secret at backup time'
passfile "$T/k2" 'the secret after the rekey'
passfile "$T/bad" 'no secret of this volume'
for s in k1 k2 bad; do "$CRYPTVOL" secret create $s --from-file "$T/$s" > /dev/null; done
"$CRYPTVOL" volume create v --size 32M --secret k1 > /dev/null
random_file "$T/d1" $((4 * MiB))
$NBDIO write "$CVD_NBD" v $MiB "$T/d1" || fail "writing v"
id=$(bk_create v)
[[ $id == bk-* ]] || fail "backup create: $id"
sum=$(nbd_sum "v@$(bk_get "$id" 'b["snapshot"]')")
[ "$(bk_get "$id" 'b["secret"]')" = k1 ] || fail "the backup names secret $(bk_get "$id" 'b["secret"]'), not k1"

"$CRYPTVOL" volume rekey v --secret k2 > /dev/null 2> "$T/err" || fail "volume rekey: $(cat "$T/err")"
random_file "$T/d2" $MiB
$NBDIO write "$CVD_NBD" v $MiB "$T/d2" || fail "writing v after the rekey"
ok "backup $id of v with secret k1; v rekeyed to k2 and written since"

# ---- --secret that does not open the header: refused before anything --------------
for s in k2 bad; do
    expect_fail 3 "^cryptvol: backup $id: secret \"$s\" does not open its header" \
        "$CRYPTVOL" backup restore "$id" "w-$s" --secret "$s"
    no_volume "w-$s" "a restore with --secret $s"
    expect_fail 3 '"code":"WrongKey"' "$CRYPTVOL" --json backup restore "$id" "w-$s" --secret "$s"
done
ok "--secret k2 (the volume's secret now) and a wrong one: exit 3 naming the secret, nothing made"

# ---- the secret of its time -------------------------------------------------------
"$CRYPTVOL" backup restore "$id" r1 > "$T/out" 2> "$T/err" || fail "backup restore $id r1: $(cat "$T/err")"
[ "$(vinfo r1 '(d["state"], d["secret"])')" = "('Available', 'k1')" ] ||
    fail "r1 is $(vinfo r1 '(d["state"], d["secret"])'), not Available with secret k1"
[ "$(nbd_sum r1)" = "$sum" ] || fail "r1 does not read as the backup's snapshot"
"$CRYPTVOL" backup restore "$id" r1b --secret k1 > /dev/null 2> "$T/err" || fail "backup restore --secret k1: $(cat "$T/err")"
[ "$(nbd_sum r1b)" = "$sum" ] || fail "r1b (--secret k1) does not read as the backup's snapshot"
ok "restored with the backup-time secret k1 (by its name, and with --secret k1): reads the snapshot's bytes"

# ---- that secret gone: Pending until it is back ----------------------------------
for v in r1 r1b; do "$CRYPTVOL" volume delete $v > /dev/null; done
"$CRYPTVOL" secret delete k1 > /dev/null 2> "$T/err" || fail "secret delete k1: $(cat "$T/err")"
"$CRYPTVOL" backup restore "$id" r2 > "$T/out" 2> "$T/err" || fail "backup restore with k1 gone: $(cat "$T/err")"
grep -q "^cryptvol: warning: volume r2 is Pending: waiting for secret \"k1\"" "$T/err" ||
    fail "a restore waiting for k1 does not say so: $(cat "$T/err")"
sleep 0.5
[ "$(vinfo r2 '(d["state"], d["reason"])')" = "('Pending', 'waiting for secret \"k1\"')" ] ||
    fail "r2 is $(vinfo r2 '(d["state"], d["reason"])'), not Pending for k1"
if $NBDIO read "$CVD_NBD" r2 0 4096 "$T/x" 2> "$T/nbd.err"; then
    fail "a Pending restore was served"
fi
"$CRYPTVOL" secret create k1 --from-file "$T/k1" > /dev/null
wait_state r2 Available 30
[ "$(nbd_sum r2)" = "$sum" ] || fail "r2, restored once k1 was back, does not read as the backup's snapshot"
[ "$(vinfo r2 'd["secret"]')" = k1 ] || fail "r2's secret is $(vinfo r2 'd["secret"]')"
ok "with k1 deleted the restore waits Pending naming it, and is Available and right once k1 is created"
