#!/usr/bin/env bash
# Backups of volumes of an encrypted cluster (issue 14, docs/backup.md "KEK
# volumes"): their header holds a cryptvol-kek token of a KEK generation.
#  * a KEK-only volume (no user secret) restores on its daemon through the
#    keyring, with no secret: Available, the same generation, its bytes;
#  * a volume with a user secret too restores on another daemon (its own
#    data directory, not of that cluster, the same target) with that
#    secret: the token does not open there, the keyslot does;
#  * there, the KEK-only backup is refused naming the KEK generation,
#    before anything is made;
#  * back on the first daemon, two KEK rotations keep generation 1, which
#    the KEK-only backup needs: after a restart (when a pruned generation
#    would be forgotten) it still restores.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
source "$(dirname "$0")/lib-backup.sh"

TARGET=$T/target
mkdir -p "$TARGET"
passfile "$T/k" 'a user secret beside the KEK'
bk_daemon a "$TARGET" --node-name kek-a
A_SOCK=$CVD_DIR/admin.sock
A_PID=$CVD_PID
"$CRYPTVOL" cluster encryption enable > /dev/null 2> "$T/err" || fail "cluster encryption enable: $(cat "$T/err")"
"$CRYPTVOL" secret create uk --from-file "$T/k" > /dev/null
"$CRYPTVOL" volume create kv --size 16M > /dev/null
"$CRYPTVOL" volume create sv --size 16M --secret uk > /dev/null
[ "$(vinfo kv '(d["secret"], d["kekGeneration"])')" = "(None, 1)" ] || fail "kv is not KEK-only: $(vinfo kv '(d["secret"], d["kekGeneration"])')"
random_file "$T/d" $((3 * MiB))
for v in kv sv; do $NBDIO write "$CVD_NBD" $v $MiB "$T/d" || fail "writing $v"; done
idk=$(bk_create kv)
ids=$(bk_create sv)
[ "$(bk_get "$idk" '(b["secret"], b["kekGeneration"])')" = "(None, 1)" ] || fail "the backup of kv: $(bk_get "$idk" '(b["secret"], b["kekGeneration"])')"
[ "$(bk_get "$ids" '(b["secret"], b["kekGeneration"])')" = "('uk', 1)" ] || fail "the backup of sv: $(bk_get "$ids" '(b["secret"], b["kekGeneration"])')"
sumk=$(nbd_sum "kv@$(bk_get "$idk" 'b["snapshot"]')")
sums=$(nbd_sum "sv@$(bk_get "$ids" 'b["snapshot"]')")

"$CRYPTVOL" backup verify "$idk" > /dev/null 2> "$T/err" || fail "verify of the KEK-only backup: $(cat "$T/err")"
"$CRYPTVOL" backup restore "$idk" kr > /dev/null 2> "$T/err" || fail "restore of the KEK-only backup: $(cat "$T/err")"
[ "$(vinfo kr '(d["state"], d["secret"], d["kekGeneration"])')" = "('Available', None, 1)" ] ||
    fail "kr: $(vinfo kr '(d["state"], d["secret"], d["kekGeneration"])')"
[ "$(nbd_sum kr)" = "$sumk" ] || fail "kr does not read as kv's snapshot"
ok "a KEK-only volume's backup verifies and restores through the keyring, no secret: Available at generation 1, its bytes"

bk_daemon b "$TARGET" --node-name kek-b
"$CRYPTVOL" secret create uk --from-file "$T/k" > /dev/null
"$CRYPTVOL" backup restore "$ids" sr > /dev/null 2> "$T/err" || fail "restore of sv's backup on B: $(cat "$T/err")"
wait_state sr Available 30
[ "$(nbd_sum sr)" = "$sums" ] || fail "sr, restored on B with the user secret, does not read as sv's snapshot"
[ "$(vinfo sr 'd["secret"]')" = uk ] || fail "sr's secret is $(vinfo sr 'd["secret"]'), not uk"
ok "on another daemon, without the cluster's KEK, sv's backup restores with its user secret"

rc=0
"$CRYPTVOL" backup restore "$idk" kr2 > "$T/out" 2> "$T/err" || rc=$?
[ "$rc" != 0 ] && grep -q "KEK generation 1" "$T/err" ||
    fail "the KEK-only backup on a daemon without its KEK: exit $rc: $(cat "$T/out" "$T/err")"
no_volume kr2 "the KEK-only backup refused on B"
why=$(cut -c1-100 "$T/err")
CRYPTVOL_SOCKET=$A_SOCK "$CRYPTVOL" backup verify "$idk" > /dev/null 2> "$T/err" || fail "the KEK-only backup no longer verifies on A: $(cat "$T/err")"
ok "the KEK-only backup on a daemon without that KEK: refused naming generation 1 ($why...), nothing made"

# ---- a KEK rotation keeps the generations backups need --------------------
export CRYPTVOL_SOCKET=$A_SOCK
for g in 2 3; do
    "$CRYPTVOL" cluster kek rotate > /dev/null 2> "$T/err" || fail "KEK rotation to $g: $(cat "$T/err")"
done
[ "$("$CRYPTVOL" cluster info --json | json 'd["currentKekGeneration"]')" = 3 ] ||
    fail "after two rotations: $("$CRYPTVOL" cluster info)"
grep -q "generations from 1 kept: backups need them" "$T/a/cryptvold.log" ||
    fail "the rotation did not say it kept generation 1 for the backups"
cvd_stop "$A_PID"
bk_daemon a "$TARGET" --node-name kek-a
"$CRYPTVOL" backup restore "$idk" kr3 > /dev/null 2> "$T/err" ||
    fail "the KEK-only backup of generation 1 after two rotations and a restart: $(cat "$T/err")"
wait_state kr3 Available 30
[ "$(nbd_sum kr3)" = "$sumk" ] || fail "kr3 does not read as kv's snapshot"
ok "two KEK rotations keep generation 1 for the KEK-only backup: after a restart it restores, its bytes"
