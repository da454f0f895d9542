#!/usr/bin/env bash
# Flatten, then delete the parent, then export (issue 10):
#
#  * a LUKS2 parent with data, its snapshot, and a clone of it with its own
#    secret and format (LUKS1), written over part of the parent's data;
#  * before the flatten: the clone's export is refused ("flatten it
#    first"), and nothing is left at the target;
#  * `volume flatten` (its stderr a file, not a terminal: no progress
#    output) leaves the clone reading the same bytes, with no parent and
#    needing its own secret alone; the parent's snapshot, then the
#    parent, can be deleted; the clone still reads the same bytes after
#    a restart;
#  * `volume export` writes a raw LUKS image that cryptsetup opens with the
#    clone's secret alone (not the parent's), and whose plaintext
#    (dm-crypt where device-mapper works, else cryptsetup's volume key and
#    xts-check) is every byte the clone reads over NBD, its holes as zeros;
#  * kill -9 during a flatten (three times, at random points): after the
#    restart, the flatten run again finishes, and the clone reads the same;
#  * flatten of a volume with no parent: "has no parent", exit 1.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
need cryptsetup

cvd_start flat --tls off
passfile "$T/sp" 'parent of the flattened'
passfile "$T/sc" 'the flattened clone'
"$CRYPTVOL" secret create sp --from-file "$T/sp" > /dev/null
"$CRYPTVOL" secret create sc --from-file "$T/sc" > /dev/null
"$CRYPTVOL" volume create p --size 48M --secret sp > /dev/null
random_file "$T/a" $((8 * MiB))
random_file "$T/b" $((3 * MiB + 777))
$NBDIO write "$CVD_NBD" p $MiB "$T/a" || fail "writing the parent"
"$CRYPTVOL" snapshot create p@base > /dev/null
"$CRYPTVOL" volume clone p@base c --secret sc --type luks1 > /dev/null
$NBDIO write "$CVD_NBD" c $((6 * MiB + 5)) "$T/b" || fail "writing the clone"
$NBDIO write "$CVD_NBD" p $MiB "$T/b" || fail "writing the parent after the snapshot"
nbd_read c "$T/c.before"
truncate -s 48M "$T/want"
dd if="$T/a" of="$T/want" bs=1M seek=1 conv=notrunc status=none
dd if="$T/b" of="$T/want" bs=1M seek=$((6 * MiB + 5)) oflag=seek_bytes conv=notrunc status=none
cmp "$T/want" "$T/c.before" >&2 || fail "the clone does not read the parent's snapshot with its own write over it"

# Export before the flatten: refused, nothing made.
expect_fail 1 'flatten' "$CRYPTVOL" volume export c "$T/early.img"
[ ! -e "$T/early.img" ] || fail "a refused export left $T/early.img"
ok "export of an own-format clone before its flatten: refused, saying to flatten first"

"$CRYPTVOL" volume flatten c > "$T/flat.out" 2> "$T/flat.err" || fail "volume flatten c: $(cat "$T/flat.err")"
[ ! -s "$T/flat.err" ] || fail "volume flatten printed on stderr (not a terminal: no progress): $(cat "$T/flat.err")"
[ "$(vinfo c '(d.get("parent"), d.get("needsSecrets"))')" = "(None, ['sc'])" ] ||
    fail "after the flatten: (parent, needsSecrets) of c is $(vinfo c '(d.get("parent"), d.get("needsSecrets"))')"
[ "$(vinfo c '((d.get("job") or {}).get("kind"), (d.get("job") or {}).get("state"))')" = "('flatten', 'Completed')" ] ||
    fail "after volume flatten returned, c's job is $(vinfo c 'd.get("job")')"
nbd_read c "$T/c.flat"
cmp "$T/c.before" "$T/c.flat" >&2 || fail "the clone reads other bytes after its flatten"
ok "volume flatten: quiet without a terminal, the same bytes, no parent, needs sc alone"

"$CRYPTVOL" snapshot delete p@base > /dev/null || fail "deleting the flattened clone's parent snapshot"
"$CRYPTVOL" volume delete p > /dev/null || fail "deleting the flattened clone's parent"
[ ! -e "$(vol_dir p)" ] || fail "the parent's directory is still there after its delete"
cvd_stop
cvd_start flat --tls off
nbd_read c "$T/c.after"
cmp "$T/c.before" "$T/c.after" >&2 || fail "after deleting the parent and a restart the clone reads other bytes"
ok "the parent's snapshot and the parent deleted; after a restart the clone reads the same bytes"

"$CRYPTVOL" volume export c "$T/c.img" > /dev/null 2> "$T/exp.err" ||
    fail "volume export c: $(cat "$T/exp.err")"
[ ! -s "$T/exp.err" ] || fail "volume export printed on stderr (not a terminal): $(cat "$T/exp.err")"
cryptsetup open --test-passphrase --key-file "$T/sp" "$T/c.img" 2> /dev/null &&
    fail "the exported image opens with the deleted parent's secret"
luks_read "$T/c.img" "$T/sc" "$T/c.plain"
[ "$(stat -c %s "$T/c.plain")" = "$(stat -c %s "$T/c.before")" ] ||
    fail "the exported image holds $(stat -c %s "$T/c.plain") bytes of data, the clone $(stat -c %s "$T/c.before")"
cmp "$T/c.before" "$T/c.plain" >&2 || fail "the exported image reads other bytes than the clone over NBD"
cmp -n $MiB "$T/c.plain" /dev/zero > /dev/null || fail "the never-written first MiB is not zeros in the export"
ok "the export opens in cryptsetup with the clone's secret alone and reads every byte the clone does ($LUKS_READ_HOW)"

# ---- kill -9 during a flatten: run it again, it finishes ----------------
# A second clone of the parent's data (the parent is gone: a clone of c's
# snapshot, of its own format again), killed at a random point of its
# flatten, three times; after each restart the flatten is run again (or
# the clone, mended at start, has no parent any more); it reads the same.
"$CRYPTVOL" snapshot create c@mid > /dev/null
nbd_read c@mid "$T/mid"
cut=0
for round in 1 2 3; do
    "$CRYPTVOL" volume clone c@mid "k$round" --secret sp --type luks2 > /dev/null
    "$CRYPTVOL" volume flatten "k$round" --no-wait > /dev/null
    sleep "$(printf '0.%03d' $((RANDOM % 40)))"
    kill -9 "$CVD_PID"
    { wait "$CVD_PID"; } 2> /dev/null || true
    cvd_start flat --tls off
    if [ "$(vinfo "k$round" 'd.get("parent")')" != None ]; then
        cut=$((cut + 1))
        "$CRYPTVOL" volume flatten "k$round" > /dev/null 2> "$T/flat.err" ||
            fail "flatten of k$round again after kill -9: $(cat "$T/flat.err")"
    fi
    [ "$(vinfo "k$round" '(d.get("parent"), d.get("needsSecrets"))')" = "(None, ['sp'])" ] ||
        fail "k$round after its flatten was cut and run again: $(vinfo "k$round" '(d.get("parent"), d.get("needsSecrets"))')"
    nbd_read "k$round" "$T/k"
    cmp "$T/mid" "$T/k" >&2 || fail "k$round reads other bytes after its flatten was cut by kill -9 and run again"
done
for round in 1 2 3; do "$CRYPTVOL" volume delete "k$round" > /dev/null; done
"$CRYPTVOL" snapshot delete c@mid > /dev/null || fail "deleting c@mid once its clones were flattened and deleted"
ok "kill -9 during flatten x3 ($cut cut before it finished): run again, the clone has no parent, needs its own secret, reads the same"

"$CRYPTVOL" volume create lone --size 8M --secret sc > /dev/null
world "$T/world"
expect_fail 1 'has no parent' "$CRYPTVOL" volume flatten lone
grep -q 'lone' "$T/err" || fail "the refusal does not name the volume: $(cat "$T/err")"
unchanged "$T/world" "a refused flatten"
ok "flatten of a volume with no parent: '$(cat "$T/err")'"
cvd_stop
