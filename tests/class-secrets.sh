#!/usr/bin/env bash
# Volume classes, Longhorn's test plan in our terms: a class with one
# secret for all its volumes and a class with a per-volume secret template;
# volumes of each are used through NBD; the known pattern written is read
# back, and is absent from the raw image files; the global class's volumes
# open with the same secret, the template's each with its own
# (cryptsetup on the images); changing a secret's stored value makes the
# next attach fail with "wrong key".  Plus the class commands and their
# refusals.
source "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
need cryptsetup
for p in nbdcopy nbdinfo; do
    command -v $p > /dev/null || skip "$p is not installed"
done
SEAL="$PYTHON $SRC_DIR/tests/tools/seal-secret.py"
$PYTHON -c 'import cryptography' 2> /dev/null || skip "python3-cryptography is not installed"

cvd_start cs --tls off
DATA=$CVD_DIR/data
uri() { echo "nbd+unix:///$1?socket=$CVD_NBD"; }
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ---- classes --------------------------------------------------------------
passfile "$T/g-key" "one secret for every volume of class global"
passfile "$T/pv-p1" "p1's own secret"
passfile "$T/pv-p2" "p2's own secret"
"$CRYPTVOL" secret create g-key --from-file "$T/g-key" > /dev/null
"$CRYPTVOL" class create global --secret g-key > "$T/out"
grep -Eq '^secret: +g-key \(every volume\)$' "$T/out" || fail "class create: $(cat "$T/out")"
"$CRYPTVOL" class create per --secret-template 'pv-${volume.name}' --type luks2 \
    --cipher aes-xts-plain64 --key-size 512 > /dev/null
"$CRYPTVOL" class create small --encrypted --type luks1 --cipher aes-128 > /dev/null
"$CRYPTVOL" class create gold --encrypted --replicas 3 > /dev/null
"$CRYPTVOL" class list > "$T/out"
grep -Eq '^NAME +TYPE +ENCRYPTION +REPLICAS +SECRET$' "$T/out" || fail "class list: $(cat "$T/out")"
grep -Eq '^global +luks2 +AES-256 +1 +g-key \(every volume\)$' "$T/out" || fail "class list: $(cat "$T/out")"
grep -Eq '^per +luks2 +AES-256 +1 +pv-\$\{volume.name\} \(per volume\)$' "$T/out" || fail "class list: $(cat "$T/out")"
grep -Eq '^small +luks1 +AES-128 +1 +generated per volume$' "$T/out" || fail "class list: $(cat "$T/out")"
"$CRYPTVOL" class info per --json > "$T/out"
[ "$(json 'd["secretTemplate"], d["encrypted"], d["keyBits"]' < "$T/out")" = 'pv-${volume.name} True 512' ] ||
    fail "class info --json: $(cat "$T/out")"
expect_fail 1 '^cryptvol: class bad: secret template: unknown placeholder "\$\{pool\}"' \
    "$CRYPTVOL" class create bad --secret-template 'k-${pool}'
expect_fail 2 'not both' "$CRYPTVOL" class create bad --secret a --secret-template 'b'
expect_fail 1 '^cryptvol: class bad: key size 384' \
    "$CRYPTVOL" class create bad --cipher aes-xts-plain64 --key-size 384
expect_fail 1 '^cryptvol: class global: already exists$' \
    "$CRYPTVOL" class create global
expect_fail 1 '^cryptvol: class nope: no such class$' "$CRYPTVOL" class info nope
ok "classes: global secret, per-volume template, generated; list, info, refusals"

# ---- volumes of each class ---------------------------------------------------
"$CRYPTVOL" secret create pv-p1 --from-file "$T/pv-p1" > /dev/null
"$CRYPTVOL" secret create pv-p2 --from-file "$T/pv-p2" > /dev/null
for v in g1 g2 p1 p2; do
    "$CRYPTVOL" volume create "$v" --size 16M --class "$([ "${v:0:1}" = g ] && echo global || echo per)" > /dev/null
done
"$CRYPTVOL" volume create s1 --size 4M --class small > /dev/null
"$CRYPTVOL" volume list --json > "$T/out"
[ "$(json '[(v["name"], v["class"], v["secret"], v["state"]) for v in d]' < "$T/out")" = \
  "[('g1', 'global', 'g-key', 'Available'), ('g2', 'global', 'g-key', 'Available'), ('p1', 'per', 'pv-p1', 'Available'), ('p2', 'per', 'pv-p2', 'Available'), ('s1', 'small', 's1', 'Available')]" ] ||
    fail "volumes of the classes: $(cat "$T/out")"
"$CRYPTVOL" volume info s1 --json > "$T/out"
[ "$(json 'd["type"], d["keyBits"]' < "$T/out")" = "luks1 256" ] || fail "class small: $(cat "$T/out")"
expect_fail 1 '^cryptvol: volume x: class gold asks for 3 replicas; this cluster has 1 node$' \
    "$CRYPTVOL" volume create x --size 4M --class gold
expect_fail 1 '^cryptvol: volume x: "secret" conflicts with class global' \
    "$CRYPTVOL" volume create x --size 4M --class global --secret g-key
expect_fail 1 '^cryptvol: volume x: "type" conflicts with class global' \
    "$CRYPTVOL" volume create x --size 4M --class global --type luks1
expect_fail 1 '^cryptvol: volume x: class nope: no such class$' \
    "$CRYPTVOL" volume create x --size 4M --class nope
long=$(printf 'v%.0s' {1..62})
expect_fail 1 "^cryptvol: volume $long: class per: secret template \"pv-\\\$\{volume.name\}\" makes \"pv-v+\.\.\.\", which is not a valid secret name" \
    "$CRYPTVOL" volume create "$long" --size 4M --class per
left=$(cd "$DATA/volumes" && ls -d x x.* 2> /dev/null || true)
[ -z "$left" ] || fail "a refused create left a file: $left"
ok "volumes take their class's settings; conflicts, replicas and bad expansions refused"

# ---- the known pattern through NBD, and not on disk -------------------------
for v in g1 g2 p1 p2; do
    $PYTHON -c "import sys; sys.stdout.buffer.write((b'KNOWN-PATTERN-$v-0123456789abcdef|' * 140000)[:4 << 20])" > "$T/pat-$v"
    nbdcopy "$T/pat-$v" "$(uri "$v")" || fail "nbdcopy into $v"
    nbdcopy "$(uri "$v")" "$T/back-$v" || fail "nbdcopy out of $v"
    cmp <(head -c 4M "$T/back-$v") "$T/pat-$v" || fail "$v read back different bytes"
    [ "$(grep -caF "KNOWN-PATTERN-$v" "$T/back-$v")" -gt 0 ] || fail "grep finds nothing in the plaintext of $v"
    # The ciphertext is in the head layer (4 MiB of it allocated), and no
    # file of the chain (manifest, header, layers) holds the plaintext.
    head=$(vol_head "$DATA" "$v")
    [ $(($(stat -c '%b * %B' "$head"))) -ge $((4 << 20)) ] ||
        fail "$v: the head layer $head does not hold the 4 MiB written"
    hits=$(grep -laF "KNOWN-PATTERN" "$(vol_dir "$DATA" "$v")"/* || true)
    [ -z "$hits" ] || fail "the pattern is in the raw files of $v: $hits"
done
ok "the pattern written through NBD reads back, and is in no raw file"

# ---- which secret opens which image -----------------------------------------
opens() { cryptsetup open --test-passphrase --key-file "$1" "$(vol_dir "$DATA" "$2")/header" 2> /dev/null; }
opens "$T/g-key" g1 && opens "$T/g-key" g2 || fail "the global secret does not open g1 and g2"
opens "$T/pv-p1" p1 && opens "$T/pv-p2" p2 || fail "the per-volume secrets do not open p1, p2"
! opens "$T/pv-p1" p2 && ! opens "$T/pv-p2" p1 || fail "a per-volume secret opens another volume"
! opens "$T/g-key" p1 && ! opens "$T/pv-p1" g1 || fail "a secret opens another class's volume"
ok "global: one secret opens both; template: each volume its own"

# ---- a changed secret value: the next attach fails with wrong key ----------
passfile "$T/changed" "not what g1 was made with"
vol_sum() { (cd "$(vol_dir "$DATA" "$1")" && sha256sum -- *) | sha256sum; }
sum=$(vol_sum g1)
$SEAL "$DATA" g-key "$T/changed" --update
if LIBNBD_DEBUG=1 nbdinfo --size "$(uri g1)" > /dev/null 2> "$T/err"; then
    fail "g1 was served with a secret that does not open it"
fi
grep -q 'server error message: volume g1: wrong key' "$T/err" ||
    fail "no wrong key error: $(grep 'server error' "$T/err")"
[ "$(vol_sum g1)" = "$sum" ] || fail "a refused attach changed g1's files"
$SEAL "$DATA" g-key "$T/g-key" --update
nbdcopy "$(uri g1)" "$T/again" || fail "g1 does not open with its secret restored"
cmp <(head -c 4M "$T/again") "$T/pat-g1" || fail "g1's data changed"
ok "a changed secret value makes the attach fail with wrong key, and writes nothing"

# ---- a value that opens another keyslot than the first ----------------------
# A keyslot added with cryptsetup on g1's header (slot 1), and the secret's
# value changed to its passphrase: g1 attaches through keyslot 1.
hdr=$(vol_dir "$DATA" g1)/header
cryptsetup luksAddKey --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
    --key-file "$T/g-key" --new-keyfile "$T/changed" "$hdr" ||
    fail "cryptsetup luksAddKey on g1's header"
cryptsetup luksDump "$hdr" | grep -Eq '^  1: luks2' || fail "the added key is not in keyslot 1"
$SEAL "$DATA" g-key "$T/changed" --update
nbdcopy "$(uri g1)" "$T/again" 2> "$T/err" ||
    fail "g1 does not open with a secret that opens its keyslot 1: $(cat "$T/err")"
cmp <(head -c 4M "$T/again") "$T/pat-g1" || fail "g1 through keyslot 1: its data differs"
$SEAL "$DATA" g-key "$T/g-key" --update
ok "a secret whose value opens keyslot 1 attaches, with the data intact"

# ---- class delete -------------------------------------------------------------
expect_fail 1 '^cryptvol: class global: used by volume g1$' "$CRYPTVOL" class delete global
for v in g1 g2; do "$CRYPTVOL" volume delete "$v" > /dev/null; done
"$CRYPTVOL" class delete global > "$T/out"
grep -q '^class global deleted$' "$T/out" || fail "class delete: $(cat "$T/out")"
# The global secret is the user's: it stays.
"$CRYPTVOL" secret list --json | json '[s["name"] for s in d]' | grep -q "'g-key'" ||
    fail "the class's secret went with the class"
cvd_stop
! grep -aqF "one secret for every volume" "$CVD_DIR/cryptvold.log" || fail "the log holds a secret value"
ok "class delete refused while used, then done; the secret stays"
