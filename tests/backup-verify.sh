#!/usr/bin/env bash
# backup verify finds what is wrong with a backup, naming it (issue 14;
# Longhorn #7069, no way to check a backup's integrity), and a restore of
# a broken backup fails naming the block and leaves no volume:
#  * a byte flipped in a block file: that block, "checksum mismatch";
#  * a block file deleted: that block, "missing";
#  * two block files swapped: both blocks, "checksum mismatch";
#  * a manifest edited to point a block at another existing block (every
#    block still checks): the manifest is not authenticated;
#  * a truncated manifest, and a Completed manifest without its MAC: said;
#  * each repaired, verify passes again (so it was the damage it found),
#    and the backup restores to its snapshot's bytes.
# verify exits 0 only when all is well.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
source "$(dirname "$0")/lib-backup.sh"

TARGET=$T/target
mkdir -p "$TARGET"
bk_daemon vf "$TARGET"
passfile "$T/k" 'verify test secret'
"$CRYPTVOL" secret create k --from-file "$T/k" > /dev/null
"$CRYPTVOL" volume create v --size 16M --secret k > /dev/null
random_file "$T/d" $((6 * MiB))
$NBDIO write "$CVD_NBD" v 0 "$T/d" || fail "writing v"
id=$(bk_create v)
[[ $id == bk-* ]] || fail "backup create: $id"
sum=$(nbd_sum "v@$(bk_get "$id" 'b["snapshot"]')")
M=$(manifest "$id")
[ -f "$M" ] && [ -f "${M%.json}.mac" ] || fail "no manifest and MAC for $id in $TARGET/backups: $(ls "$TARGET/backups")"
data_blocks "$id" > "$T/blocks"
[ "$(wc -l < "$T/blocks")" = 6 ] || fail "the manifest lists $(wc -l < "$T/blocks") data blocks for 6 MiB: $(cat "$T/blocks")"
read -r o1 h1 < <(sed -n 2p "$T/blocks")
read -r o2 h2 < <(sed -n 4p "$T/blocks")
B1=$(block_path "$h1") B2=$(block_path "$h2")
[ -f "$B1" ] && [ -f "$B2" ] || fail "blocks $h1, $h2 are not at $B1, $B2"

# verify_ok WHAT: verify passes.
verify_ok() {
    "$CRYPTVOL" backup verify "$id" > "$T/v.out" 2> "$T/v.err" ||
        fail "$1: verify fails: $(cat "$T/v.out" "$T/v.err")"
    grep -q "^backup $id is intact\$" "$T/v.out" || fail "$1: verify: $(cat "$T/v.out")"
}
# verify_finds WHAT RE...: verify exits 1, one line on stderr, and its
# output has a line matching each RE.
verify_finds() {
    local what=$1 rc=0 re
    shift
    "$CRYPTVOL" backup verify "$id" > "$T/v.out" 2> "$T/v.err" || rc=$?
    [ "$rc" = 1 ] || fail "$what: verify exited $rc, not 1: $(cat "$T/v.out" "$T/v.err")"
    [ "$(wc -l < "$T/v.err")" = 1 ] || fail "$what: verify's error is not one line: $(cat "$T/v.err")"
    for re in "$@"; do
        grep -qE -- "$re" "$T/v.out" "$T/v.err" || fail "$what: verify does not say '$re': $(cat "$T/v.out" "$T/v.err")"
    done
    ! grep -q "intact" "$T/v.out" || fail "$what: verify says intact: $(cat "$T/v.out")"
}
# restore_fails WHAT NAME RE: the restore exits 1 saying RE, and leaves
# no volume NAME.
restore_fails() {
    local rc=0
    "$CRYPTVOL" backup restore "$id" "$2" > "$T/r.out" 2> "$T/r.err" || rc=$?
    [ "$rc" = 1 ] || fail "$1: restore exited $rc, not 1: $(cat "$T/r.out" "$T/r.err")"
    grep -qE -- "$3" "$T/r.err" || fail "$1: restore's error does not say '$3': $(cat "$T/r.err")"
    no_volume "$2" "$1: the failed restore"
}

verify_ok "the backup as made"
grep -q "^backup $id: manifest authenticated\$" "$T/v.out" || fail "verify: $(cat "$T/v.out")"
ok "verify of $id: authenticated, every block checked, intact"

# ---- a flipped byte ----------------------------------------------------------
cp -p "$B1" "$T/b1.save"
$PYTHON -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(4097); b = f.read(1); f.seek(4097); f.write(bytes([b[0] ^ 0x20]))' "$B1"
verify_finds "a flipped byte" "^backup $id: block at offset $o1 \\(sha256 $h1\\): checksum mismatch"
[ "$(grep -c 'block at offset' "$T/v.out")" = 1 ] || fail "a flipped byte: verify names other blocks too: $(cat "$T/v.out")"
restore_fails "a flipped byte" f1 "block at offset $o1 \\(sha256 $h1\\): checksum mismatch"
cp -p "$T/b1.save" "$B1"
verify_ok "the flipped byte put back"
ok "a flipped byte: verify and the restore name block $o1, no volume is left"

# ---- a deleted block -----------------------------------------------------------
mv "$B2" "$T/b2.save"
verify_finds "a deleted block" "^backup $id: block at offset $o2 \\(sha256 $h2\\): missing"
restore_fails "a deleted block" f2 "block at offset $o2 \\(sha256 $h2\\)"
mv "$T/b2.save" "$B2"
verify_ok "the deleted block put back"
ok "a deleted block: verify and the restore name block $o2, no volume is left"

# ---- two blocks swapped ----------------------------------------------------------
mv "$B1" "$T/swap" && mv "$B2" "$B1" && mv "$T/swap" "$B2"
verify_finds "two blocks swapped" "^backup $id: block at offset $o1 \\(sha256 $h1\\): checksum mismatch" \
    "^backup $id: block at offset $o2 \\(sha256 $h2\\): checksum mismatch"
restore_fails "two blocks swapped" f3 "block at offset $o1 \\(sha256 $h1\\): checksum mismatch"
mv "$B1" "$T/swap" && mv "$B2" "$B1" && mv "$T/swap" "$B2"
verify_ok "the swapped blocks put back"
ok "two blocks swapped: verify names both, the restore the first, no volume is left"

# ---- an edited manifest ---------------------------------------------------------
# Block 2 pointed at block 4: every block the manifest names exists and
# checks, so only the manifest's MAC can tell.
cp -p "$M" "$T/m.save"
$PYTHON - "$M" "$h1" "$h2" <<'PY'
import sys
p, h1, h2 = sys.argv[1:]
s = open(p).read()
assert s.count(h1) == 1, "block %s is listed %d times" % (h1, s.count(h1))
open(p, "w").write(s.replace(h1, h2))
PY
verify_finds "an edited manifest" "^backup $id: manifest NOT authenticated: .*MAC" "not authenticated"
restore_fails "an edited manifest" f4 "backup $id: .*(MAC|authenticat)"
cp -p "$T/m.save" "$M"
verify_ok "the manifest put back"
ok "an edited manifest (a block pointed at another that exists): not authenticated; the restore refused, no volume"

# ---- a truncated manifest, a missing MAC ------------------------------------------
truncate -s $(($(stat -c %s "$M") / 2)) "$M"
rc=0
"$CRYPTVOL" backup verify "$id" > "$T/v.out" 2> "$T/v.err" || rc=$?
[ "$rc" = 1 ] && grep -qE "backup $id|$id\\.json" "$T/v.err" ||
    fail "a truncated manifest: verify exited $rc: $(cat "$T/v.out" "$T/v.err")"
restore_fails "a truncated manifest" f5 "$id"
cp -p "$T/m.save" "$M"
mv "${M%.json}.mac" "$T/mac.save"
verify_finds "no MAC" "manifest NOT authenticated"
restore_fails "no MAC" f6 "$id"
mv "$T/mac.save" "${M%.json}.mac"
verify_ok "the MAC put back"
ok "a truncated manifest and a Completed one without its MAC: verify and restore say so, no volume"

"$CRYPTVOL" backup restore "$id" good > /dev/null 2> "$T/err" || fail "backup restore of the repaired backup: $(cat "$T/err")"
[ "$(nbd_sum good)" = "$sum" ] || fail "the repaired backup does not restore to its snapshot's bytes"
ok "repaired, the backup verifies and restores to its snapshot's bytes"
