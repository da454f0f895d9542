#!/usr/bin/env bash
# A backup target that fills up (issue 14): on an 8 MiB tmpfs,
#  * a first backup fits; a second, larger one fails with a clear ENOSPC
#    message naming the target, exit 1, and is listed Failed saying so;
#  * the earlier backup is untouched: it verifies and restores to its
#    snapshot's bytes;
#  * once the Failed backup is deleted, no block it stored is left.
# Needs root for the mount (skipped otherwise); the tmpfs is unmounted
# when the test ends, also on failure.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
source "$(dirname "$0")/lib-backup.sh"

TARGET=$T/target
mkdir -p "$TARGET"
mount -t tmpfs -o size=8m,mode=0700 cvtest-backup "$TARGET" 2> "$T/mount.err" ||
    skip "cannot mount a tmpfs (root needed): $(cat "$T/mount.err")"
# Registered before the daemon starts, so it runs after the daemon is killed.
on_exit "umount $TARGET || umount -l $TARGET"
bk_daemon ft "$TARGET"
passfile "$T/k" 'full target secret'
"$CRYPTVOL" secret create k --from-file "$T/k" > /dev/null
"$CRYPTVOL" volume create v --size 32M --secret k > /dev/null
random_file "$T/d1" $((2 * MiB))
$NBDIO write "$CVD_NBD" v 0 "$T/d1" || fail "writing v"
id1=$(bk_create v)
[[ $id1 == bk-* ]] || fail "the first backup: $id1"
sum1=$(nbd_sum "v@$(bk_get "$id1" 'b["snapshot"]')")
cp -a "$TARGET/backups" "$T/backups.before"
bytes1=$(target_bytes)
free=$("$CRYPTVOL" backup target --json | json 'd["freeBytes"]')
ok "backup $id1 fits on the 8 MiB tmpfs ($(target_bytes) bytes of blocks, $free free)"

# ---- the backup that does not fit ---------------------------------------------
random_file "$T/d2" $((10 * MiB))
$NBDIO write "$CVD_NBD" v $((4 * MiB)) "$T/d2" || fail "writing v"
rc=0
"$CRYPTVOL" backup create v > "$T/out" 2> "$T/err" || rc=$?
[ "$rc" = 1 ] || fail "a backup larger than the target's free space exited $rc: $(cat "$T/out" "$T/err")"
[ "$(wc -l < "$T/err")" = 1 ] || fail "the error is not one line: $(cat "$T/err")"
grep -qE "^cryptvol: backup bk-[0-9a-f]{16} of volume v failed: backup target $TARGET is full" "$T/err" ||
    fail "the error does not say the target is full: $(cat "$T/err")"
id2=$(grep -oE 'bk-[0-9a-f]{16}' "$T/err" | head -1)
[ "$(bk_get "$id2" 'b["state"]')" = Failed ] || fail "backup $id2 is $(bk_get "$id2" 'b["state"]'), not Failed"
bk_get "$id2" 'b["error"]' | grep -q "backup target $TARGET is full" ||
    fail "backup $id2's error does not say the target is full: $(bk_get "$id2" 'b["error"]')"
[ ! -e "$TARGET/backups/$id2.mac" ] || fail "the Failed backup $id2 has a MAC"
ok "the backup that does not fit: exit 1, \"$(cut -c1-100 < "$T/err")...\", listed Failed"

# ---- the earlier backup is intact -------------------------------------------------
diff -r "$T/backups.before/" "$TARGET/backups/" --exclude="$id2.*" > "$T/diff" ||
    fail "the failed backup changed the earlier manifests: $(cat "$T/diff")"
"$CRYPTVOL" backup verify "$id1" > "$T/v.out" 2> "$T/v.err" || fail "verify of $id1 after the full target: $(cat "$T/v.out" "$T/v.err")"
"$CRYPTVOL" backup restore "$id1" r1 > /dev/null 2> "$T/err" || fail "restore of $id1 after the full target: $(cat "$T/err")"
[ "$(nbd_sum r1)" = "$sum1" ] || fail "r1, restored from $id1, does not read as its snapshot"
ok "backup $id1 is unchanged: it verifies and restores to its snapshot's bytes"

# ---- deleting the Failed backup leaves only what the earlier one uses ----------------
# (The blocks a failed backup stored go at its failure or at the next
# delete: either way none is left once it is deleted.)
"$CRYPTVOL" backup delete "$id2" --json > "$T/out" 2> "$T/err" || fail "backup delete $id2: $(cat "$T/err")"
freed=$(json 'd["freedBytes"]' < "$T/out")
[ "$(target_bytes)" = "$bytes1" ] ||
    fail "after deleting the Failed $id2 (freed $freed) the target holds $(target_bytes) bytes of blocks, not the $bytes1 of $id1"
"$CRYPTVOL" backup verify "$id1" > /dev/null 2> "$T/err" || fail "verify of $id1 after the delete: $(cat "$T/err")"
ok "deleting the Failed backup leaves the target as $id1 alone needs it ($freed bytes freed); $id1 still verifies"
