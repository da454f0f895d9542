#!/usr/bin/env bash
# Encrypted incremental backups (issue 14): a full backup of a volume and
# two incremental ones with writes between them, over NBD through the
# daemon, while nothing is attached:
#  * each next backup stores about the changed MiB, no more (the target's
#    block bytes grow by that, and its bytesNew says so), and names the
#    previous one as its base;
#  * each restores to a new volume with exactly its snapshot's plaintext
#    (compared over NBD), the same size, data offset and LUKS UUID, not
#    served while Restoring;
#  * grep -r of the whole target finds no plaintext canary the volume holds;
#  * backup list (table and --json) has each with the contract's members.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
source "$(dirname "$0")/lib-backup.sh"

TARGET=$T/target
mkdir -p "$TARGET"
bk_daemon inc "$TARGET"
passfile "$T/k" 'backup test secret'
"$CRYPTVOL" secret create k --from-file "$T/k" > /dev/null
"$CRYPTVOL" volume create v --size 64M --secret k > /dev/null

# A canary in plaintext: 1 MiB of a phrase that cannot occur by chance.
CANARY="cryptvol-canary-$RANDOM$RANDOM-plaintext-never-in-a-backup"
$PYTHON -c 'import sys; s = (sys.argv[1] + "\n").encode(); sys.stdout.buffer.write((s * (1048576 // len(s) + 1))[:1048576])' "$CANARY" > "$T/canary"
grep -qaF "$CANARY" "$T/canary" || fail "the canary file does not hold the canary (the grep below would prove nothing)"
random_file "$T/r8" $((8 * MiB))
$NBDIO write "$CVD_NBD" v 0 "$T/r8" || fail "writing v"
$NBDIO write "$CVD_NBD" v $((10 * MiB)) "$T/canary" || fail "writing the canary"
bytes0=$(target_bytes)

# ---- full backup --------------------------------------------------------------
id1=$(bk_create v)
[[ $id1 == bk-* ]] || fail "backup 1: $id1"
snap1=$(bk_get "$id1" 'b["snapshot"]')
sum1=$(nbd_sum "v@$snap1")
bytes1=$(target_bytes)
off=$(vinfo v 'd["dataOffset"]')
[ "$(bk_get "$id1" 'b["base"]')" = None ] || fail "the first backup has a base: $(bk_get "$id1" 'b["base"]')"
# Held: the header and the 9 MiB written; new: all of it (the target was empty).
[ "$(bk_get "$id1" 'b["bytesHeld"]')" = $((off + 9 * MiB)) ] ||
    fail "backup 1 holds $(bk_get "$id1" 'b["bytesHeld"]') bytes, not the header ($off) and the 9 MiB written"
new1=$(bk_get "$id1" 'b["bytesNew"]')
[ $((bytes1 - bytes0)) = "$new1" ] || fail "backup 1: the target grew by $((bytes1 - bytes0)) bytes, its bytesNew is $new1"
[ "$new1" -ge $((9 * MiB)) ] && [ "$new1" -le $((off + 9 * MiB)) ] ||
    fail "backup 1 stored $new1 new bytes for 9 MiB written and a $off-byte header"
ok "full backup $id1 of v@$snap1: $new1 bytes new (9 MiB written, header $off)"

# ---- two incrementals -----------------------------------------------------------
# 3 MiB over three whole blocks (one of them the canary's).
random_file "$T/c2" $((3 * MiB))
$NBDIO write "$CVD_NBD" v $((9 * MiB)) "$T/c2" || fail "writing v"
id2=$(bk_create v)
snap2=$(bk_get "$id2" 'b["snapshot"]')
sum2=$(nbd_sum "v@$snap2")
bytes2=$(target_bytes)
[ "$(bk_get "$id2" 'b["base"]')" = "$id1" ] || fail "backup 2's base is $(bk_get "$id2" 'b["base"]'), not $id1"
grow=$((bytes2 - bytes1))
[ "$grow" -ge $((3 * MiB)) ] && [ "$grow" -le $((3 * MiB + 64 * 1024)) ] ||
    fail "backup 2: 3 MiB changed, the target grew by $grow bytes"
[ "$(bk_get "$id2" 'b["bytesNew"]')" = "$grow" ] || fail "backup 2's bytesNew $(bk_get "$id2" 'b["bytesNew"]') is not the growth $grow"
ok "incremental $id2 (base $id1): 3 MiB changed, the target grew by $grow bytes"

# A snapshot of the user's own between the backups (two layers above the
# base now), after 4 KiB written over held data at 0; then 100 KiB across
# a block boundary, and 4 KiB in a block never written: four blocks
# change, but a few sectors of each.
random_file "$T/c3" $((100 * 1024))
$NBDIO write "$CVD_NBD" v 0 <(tail -c 4096 "$T/c3") || fail "writing v"
"$CRYPTVOL" snapshot create v@mine > /dev/null
summ=$(nbd_sum v@mine)
$NBDIO write "$CVD_NBD" v $((20 * MiB - 50 * 1024)) "$T/c3" || fail "writing v"
$NBDIO write "$CVD_NBD" v $((40 * MiB)) <(head -c 4096 "$T/c3") || fail "writing v"
id3=$(bk_create v)
snap3=$(bk_get "$id3" 'b["snapshot"]')
sum3=$(nbd_sum "v@$snap3")
bytes3=$(target_bytes)
[ "$(bk_get "$id3" 'b["base"]')" = "$id2" ] || fail "backup 3's base is $(bk_get "$id3" 'b["base"]'), not $id2"
grow=$((bytes3 - bytes2))
[ "$grow" -gt 0 ] && [ "$grow" -le $((4 * MiB)) ] ||
    fail "backup 3: four blocks changed, the target grew by $grow bytes"
# Held now: [0, 8 MiB), [9 MiB, 12 MiB), the 26 sectors the 100 KiB
# (from the middle of a sector to the middle of another) touch, and 1.
[ "$(bk_get "$id3" 'b["bytesHeld"]')" = $((off + 11 * MiB + 27 * 4096)) ] ||
    fail "backup 3 holds $(bk_get "$id3" 'b["bytesHeld"]') bytes, not the header, 11 MiB and 27 sectors"
ok "incremental $id3 (base $id2, a snapshot of the user's between): four blocks touched, the target grew by $grow bytes"

# ---- a backup of an older snapshot, named --------------------------------------
# Its base is the newest backup *below* it (backup 2), never backup 3,
# whose snapshot is newer: it must restore to v@mine, not to backup 3.
"$CRYPTVOL" backup create v --snapshot mine --json > "$T/out" 2> "$T/err" || fail "backup create --snapshot mine: $(cat "$T/err")"
id4=$(json 'd["id"]' < "$T/out")
[ "$(json '(d["snapshot"], d["state"], d["base"])' < "$T/out")" = "('mine', 'Completed', '$id2')" ] ||
    fail "backup of v@mine: $(json '(d["snapshot"], d["state"], d["base"])' < "$T/out"), not of mine, Completed, based on $id2"
"$CRYPTVOL" backup restore "$id4" r-mine > /dev/null 2> "$T/err" || fail "backup restore $id4: $(cat "$T/err")"
[ "$(nbd_sum r-mine)" = "$summ" ] || fail "r-mine, restored from the backup of v@mine, does not read as v@mine"
"$CRYPTVOL" backup delete "$id4" > /dev/null 2> "$T/err" || fail "backup delete $id4: $(cat "$T/err")"
ok "backup $id4 of the older snapshot v@mine (--snapshot): based on $id2, restores to v@mine's bytes"

# ---- no plaintext in the target -------------------------------------------------
if grep -raF -l "$CANARY" "$TARGET" > "$T/found"; then
    fail "the target holds plaintext: the canary is in $(cat "$T/found")"
fi
n=$(find "$TARGET/blocks" -type f | wc -l)
[ "$n" -ge 12 ] || fail "the target holds only $n block files"
ok "grep -r of the target ($n block files, manifests) finds no plaintext canary"

# ---- list, --json ---------------------------------------------------------------
"$CRYPTVOL" backup list v > "$T/list"
grep -qE '^ID +VOLUME +SNAPSHOT +CREATED +SIZE +NEW +STATE$' "$T/list" || fail "backup list: $(cat "$T/list")"
[ "$(grep -cE '^bk-[0-9a-f]{16} +v +backup-[^ ]+ +20[0-9-]+T[0-9:]+Z +64.0 MiB +[0-9.]+ [KMG]?i?B +Completed$' "$T/list")" = 3 ] ||
    fail "backup list v does not show the three backups Completed: $(cat "$T/list")"
# Newest first by created (whole seconds: backups of one second may come
# in any order among themselves).
[ "$(awk 'NR > 1 { print $1 }' "$T/list" | sort | tr '\n' ' ')" = "$(printf '%s\n' "$id1" "$id2" "$id3" | sort | tr '\n' ' ')" ] ||
    fail "backup list v does not list the three backups: $(cat "$T/list")"
[ "$(awk 'NR > 1 { print $4 }' "$T/list")" = "$(awk 'NR > 1 { print $4 }' "$T/list" | sort -r)" ] ||
    fail "backup list is not newest first: $(cat "$T/list")"
"$CRYPTVOL" backup list v --json | $PYTHON -c '
import json, re, sys
d = json.load(sys.stdin)
ids = sys.argv[1:4]
bs = d["backups"]
assert sorted(b["id"] for b in bs) == sorted(ids), [b["id"] for b in bs]
assert [b["created"] for b in bs] == sorted((b["created"] for b in bs), reverse=True), "not newest first"
want = {"id", "volume", "snapshot", "uuid", "cluster", "node", "secret",
        "kekGeneration", "type", "cipher", "keyBits", "sectorSize", "size",
        "dataOffset", "rawSize", "base", "created", "finished", "state",
        "error", "bytesHeld", "bytesNew", "blocks"}
t = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
for b in bs:
    missing = want - set(b)
    assert not missing, "missing members %s" % sorted(missing)
    assert b["state"] == "Completed" and b["error"] is None, b
    assert b["volume"] == "v" and b["secret"] == "k" and b["size"] == 64 << 20, b
    assert b["type"] == "luks2" and b["cipher"] == "aes-xts-plain64" and b["keyBits"] == 512, b
    assert t.match(b["created"]) and t.match(b["finished"]), (b["created"], b["finished"])
    assert isinstance(b["blocks"], int) and b["blocks"] > 0, b["blocks"]
    assert "progress" not in b or b["progress"] is None, b["progress"]
base = {b["id"]: b["base"] for b in bs}
assert [base[i] for i in ids] == [None, ids[0], ids[1]], base
' "$id1" "$id2" "$id3" || fail "backup list --json: $("$CRYPTVOL" backup list v --json)"
[ "$("$CRYPTVOL" backup list nothing)" = "volume nothing has no backups in the target" ] ||
    fail "backup list of a volume without backups: $("$CRYPTVOL" backup list nothing)"
ok "backup list (table and --json): newest first, Completed, bases chained, the contract's members"

# ---- each restores to exactly its snapshot --------------------------------------
uuid=$(vinfo v 'd["uuid"]')
i=0
for id in "$id1" "$id2" "$id3"; do
    i=$((i + 1))
    sum=sum$i
    "$CRYPTVOL" backup restore "$id" "r$i" --no-wait > /dev/null 2> "$T/err" || fail "backup restore $id r$i: $(cat "$T/err")"
    # Served while Restoring: the read works and the volume is Restoring
    # after it (tests/backup-kill.sh checks this on a slowed restore).
    if $NBDIO read "$CVD_NBD" "r$i" 0 4096 "$T/x" 2> "$T/nbd.err" && [ "$(vstate "r$i")" = Restoring ]; then
        fail "volume r$i was served while Restoring"
    fi
    wait_state "r$i" Available 30
    [ "$(nbd_sum "r$i")" = "${!sum}" ] || fail "r$i, restored from $id, does not read as v@$(bk_get "$id" 'b["snapshot"]')"
    [ "$(vinfo "r$i" '(d["size"], d["dataOffset"], d["uuid"], d["secret"])')" = "(67108864, $off, '$uuid', 'k')" ] ||
        fail "r$i: $(vinfo "r$i" '(d["size"], d["dataOffset"], d["uuid"], d["secret"])'), not v's size, data offset, LUKS UUID and secret"
done
[ "$sum1" != "$sum2" ] && [ "$sum2" != "$sum3" ] || fail "the snapshots read the same: the writes between them were lost"
# The waiting form too: it returns once the volume is Available.
"$CRYPTVOL" backup restore "$id2" r4 > "$T/out" 2> "$T/err" || fail "backup restore $id2 r4: $(cat "$T/err")"
grep -q "^volume r4 restored from backup $id2: Available\$" "$T/out" || fail "backup restore: $(cat "$T/out")"
[ "$(vstate r4)" = Available ] && [ "$(nbd_sum r4)" = "$sum2" ] || fail "r4 is $(vstate r4) and reads other bytes than v@$snap2"
ok "each backup restores to its snapshot's exact plaintext (over NBD), size, offset and UUID; not served while Restoring"
