#!/usr/bin/env bash
# One backup target, two daemons (issue 14): a backup taken by daemon A
# (its own data directory) is listed by daemon B pointed at the same
# target, verifies there, and restores there with a secret of the same
# value created on B, to exactly the bytes of A's snapshot (over NBD).
# Both daemons run at once; B's own backup lands beside A's, and each
# daemon lists both (ids unique in the target).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
source "$(dirname "$0")/lib-backup.sh"

TARGET=$T/target
mkdir -p "$TARGET"
passfile "$T/k" 'a secret both sites keep'
bk_daemon a "$TARGET" --node-name site-a
A_SOCK=$CVD_DIR/admin.sock
"$CRYPTVOL" secret create db-key --from-file "$T/k" > /dev/null
"$CRYPTVOL" volume create db1 --size 16M --secret db-key > /dev/null
random_file "$T/d" $((3 * MiB))
$NBDIO write "$CVD_NBD" db1 $((5 * MiB)) "$T/d" || fail "writing db1 on A"
id=$(bk_create db1)
[[ $id == bk-* ]] || fail "backup create on A: $id"
snap=$(bk_get "$id" 'b["snapshot"]')
sum=$(nbd_sum "db1@$snap")
ok "daemon A backed up db1@$snap as $id"

bk_daemon b "$TARGET" --node-name site-b
B_SOCK=$CVD_DIR/admin.sock
[ "$B_SOCK" != "$A_SOCK" ] || fail "the two daemons share an admin socket"
"$CRYPTVOL" backup list > "$T/list" 2> "$T/err" || fail "backup list on B: $(cat "$T/err")"
grep -qE "^$id +db1 +$snap .* Completed\$" "$T/list" || fail "B does not list A's backup $id Completed: $(cat "$T/list")"
[ "$("$CRYPTVOL" backup target --json | json 'd["backups"]')" = 1 ] || fail "B's backup target does not count A's backup"
[ "$(bk_get "$id" 'b["node"]')" = site-a ] || fail "the backup's node is $(bk_get "$id" 'b["node"]'), not site-a"
ok "daemon B (its own data directory, the same target) lists A's backup $id"

# B has no secret db-key yet: the restore waits for it (as volume create).
"$CRYPTVOL" backup restore "$id" db1 > /dev/null 2> "$T/err" || fail "backup restore on B without the secret: $(cat "$T/err")"
[ "$(vstate db1)" = Pending ] || fail "the restore on B without db-key is $(vstate db1), not Pending"
"$CRYPTVOL" secret create db-key --from-file "$T/k" > /dev/null
wait_state db1 Available 30
[ "$(nbd_sum db1)" = "$sum" ] || fail "db1 restored on B does not read as db1@$snap on A"
"$CRYPTVOL" backup verify "$id" > /dev/null 2> "$T/err" || fail "verify of $id on B: $(cat "$T/err")"
ok "B restores A's backup with a secret of the same value: Available, exactly A's snapshot; it verifies on B"

# B's own backup beside A's; each daemon lists both.
id_b=$(bk_create db1)
[[ $id_b == bk-* ]] && [ "$id_b" != "$id" ] || fail "backup on B: $id_b"
for s in "$A_SOCK" "$B_SOCK"; do
    [ "$(CRYPTVOL_SOCKET=$s "$CRYPTVOL" backup list db1 --json | json '" ".join(sorted(b["id"] for b in d["backups"]))')" = \
      "$(printf '%s\n' "$id" "$id_b" | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
        fail "the daemon at $s does not list both backups: $(CRYPTVOL_SOCKET=$s "$CRYPTVOL" backup list)"
done
CRYPTVOL_SOCKET=$A_SOCK "$CRYPTVOL" backup verify "$id" > /dev/null 2> "$T/err" || fail "A's backup no longer verifies on A: $(cat "$T/err")"
ok "B's backup $id_b lands beside A's; both daemons list both, A's still verifies"
