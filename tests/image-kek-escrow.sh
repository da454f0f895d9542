#!/usr/bin/env bash
# Offline disaster recovery of KEK-encrypted images: `cryptvol image export
# --kek-escrow ESCROW --recovery-passphrase-file F` reads an image whose
# only way in is its cryptvol-kek token, through a KEK escrow.
# tests/tools/make-kek-image stands in for cryptvold: it formats an image
# with a random keyslot passphrase (or enrolls one that has a user
# passphrase), rotates the KEK a few generations, and writes the escrow.
#
# Also: cryptsetup accepts the token (luksDump shows it, a cryptsetup
# header change keeps it, the unwrapped passphrase opens its keyslot), and
# the errors: wrong recovery passphrase (exit 3, as a wrong passphrase),
# files group or others can read, a generation missing from the escrow,
# an image without a token, a LUKS1 image.
source "$(dirname "$0")/lib.sh"
need cryptsetup

: "${MAKE_KEK_IMAGE:=${BUILD_DIR:-$SRC_DIR/build}/tests/make-kek-image}"
[ -x "$MAKE_KEK_IMAGE" ] || fail "no make-kek-image at $MAKE_KEK_IMAGE"
cs() { cryptsetup --disable-locks --batch-mode "$@"; }

passfile "$T/recovery" 'recovery: correct horse battery staple'
passfile "$T/user" 'user passphrase'
head -c 5000001 /dev/urandom > "$T/data"

export_escrow() {       # export_escrow IMG DST [ESCROW] [RECOVERY] [more...]
    local img=$1 dst=$2 escrow=${3:-$T/escrow} rec=${4:-$T/recovery}
    shift $(($# < 4 ? $# : 4))
    "$CRYPTVOL" image export "$img" "$dst" --kek-escrow "$escrow" \
        --recovery-passphrase-file "$rec" "$@"
}

# ---- a volume as cryptvold makes it: random keyslot passphrase, no user one
img=$T/a.img
"$CRYPTVOL" image create "$img" --size 32M
slot=$("$MAKE_KEK_IMAGE" "$img" --generations 3 --escrow "$T/escrow" \
       --recovery-passphrase-file "$T/recovery" --pass-out "$T/kpass")
[ "$slot" = 0 ] || fail "token keyslot is '$slot', expected 0"
[ "$(stat -c %a "$T/escrow")" = 600 ] || fail "escrow is not mode 0600"
grep -q '"generation": 3' "$T/escrow" || fail "escrow lacks generation 3"
# The keyslot passphrase is 32 binary bytes; cryptvol takes a file's bytes
# as they are.
[ "$(stat -c %s "$T/kpass")" = 32 ] || fail "keyslot passphrase is not 32 bytes"
"$CRYPTVOL" image import "$T/data" "$img" --passphrase-file "$T/kpass" --offset 12345

export_escrow "$img" "$T/out" "" "" --offset 12345 --length 5000001
cmp "$T/data" "$T/out" || fail "escrow export differs from the data imported"
[ "$(stat -c %a "$T/out")" = 600 ] || fail "exported plaintext is not mode 0600"
export_escrow "$img" - "" "" --offset 12345 --length 5000001 | cmp - "$T/data" ||
    fail "escrow export to stdout differs"
ok "export through the escrow (token rotated to generation 3)"

# ---- cryptsetup takes our token and our keyslot
cs luksDump "$img" > "$T/dump"
grep -q "cryptvol-kek" "$T/dump" || fail "luksDump shows no cryptvol-kek token: $(cat "$T/dump")"
cs luksDump --dump-json-metadata "$img" > "$T/meta.json"
"$PYTHON" - "$T/meta.json" "$slot" <<'EOF' || fail "token JSON in the header is not as specified"
import base64, json, sys
meta = json.load(open(sys.argv[1]))
tokens = [t for t in meta["tokens"].values() if t["type"] == "cryptvol-kek"]
assert len(tokens) == 1, tokens
t = tokens[0]
assert t["keyslots"] == [sys.argv[2]], t
assert t["kek_generation"] == 3, t
assert len(base64.b64decode(t["wrapped"], validate=True)) == 32 + 29, t
EOF
cs open --test-passphrase --key-slot "$slot" --key-file "$T/kpass" "$img" ||
    fail "cryptsetup does not open keyslot $slot with the unwrapped passphrase"
# A header change made by cryptsetup keeps the token working.
cs luksAddKey --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
    --key-file "$T/kpass" "$img" "$T/user"
cs luksDump "$img" | grep "cryptvol-kek" > /dev/null || fail "cryptsetup luksAddKey dropped the token"
export_escrow "$img" - "" "" --offset 12345 --length 5000001 | cmp - "$T/data" ||
    fail "escrow export after cryptsetup luksAddKey differs"
ok "cryptsetup shows the token, opens its keyslot, keeps it across luksAddKey"

# ---- errors
passfile "$T/wrong" 'not the recovery passphrase'
expect_fail 3 "$T/escrow: KEK escrow: wrong recovery passphrase" \
    export_escrow "$img" "$T/x" "" "$T/wrong"
[ ! -e "$T/x" ] || fail "a failed export created its output"

cp "$T/recovery" "$T/recovery644"; chmod 644 "$T/recovery644"
expect_fail 1 "recovery passphrase file $T/recovery644: mode 0644 lets group or others read it" \
    export_escrow "$img" "$T/x" "" "$T/recovery644"
cp "$T/escrow" "$T/escrow644"; chmod 644 "$T/escrow644"
expect_fail 1 "KEK escrow $T/escrow644: mode 0644" \
    export_escrow "$img" "$T/x" "$T/escrow644"

sed 's/"version": 1/"version": 9/' "$T/escrow" > "$T/escrow-v9"; chmod 600 "$T/escrow-v9"
expect_fail 1 "KEK escrow: version 9 is not supported" \
    export_escrow "$img" "$T/x" "$T/escrow-v9"

# An escrow made before the last rotation.
"$CRYPTVOL" image create "$T/b.img" --size 20M
"$MAKE_KEK_IMAGE" "$T/b.img" --generations 3 --escrow-generations 2 \
    --escrow "$T/escrow12" --recovery-passphrase-file "$T/recovery" > /dev/null
expect_fail 1 "$T/b.img: KEK generation 3 is not in escrow $T/escrow12 \(it has 1, 2\)" \
    export_escrow "$T/b.img" "$T/x" "$T/escrow12"
# The escrow of another cluster: same generation number, other KEK.
expect_fail 3 "$T/b.img: volume .*: KEK generation 3 does not unwrap" \
    export_escrow "$T/b.img" "$T/x" "$T/escrow"

"$CRYPTVOL" image create "$T/plain.img" --size 20M
"$CRYPTVOL" image format "$T/plain.img" --passphrase-file "$T/user" "${FAST_KDF[@]}"
expect_fail 1 "$T/plain.img: no cryptvol-kek token" \
    export_escrow "$T/plain.img" "$T/x"
"$CRYPTVOL" image create "$T/luks1.img" --size 20M
"$CRYPTVOL" image format "$T/luks1.img" --type luks1 --passphrase-file "$T/user" "${FAST_KDF[@]}"
expect_fail 1 "$T/luks1.img: a LUKS1 header has no tokens" \
    export_escrow "$T/luks1.img" "$T/x"
ok "errors: wrong recovery passphrase (3), readable files, unknown version, missing generation, no token, LUKS1"

# ---- a volume that had a user passphrase, enrolled, the user keyslot gone
img=$T/c.img
"$CRYPTVOL" image create "$img" --size 24M
"$CRYPTVOL" image format "$img" --passphrase-file "$T/user" "${FAST_KDF[@]}"
"$CRYPTVOL" image import "$T/data" "$img" --passphrase-file "$T/user"
slot=$("$MAKE_KEK_IMAGE" "$img" --passphrase-file "$T/user" --generations 2 \
       --escrow "$T/escrow-c" --recovery-passphrase-file "$T/recovery")
[ "$slot" = 1 ] || fail "enrolled keyslot is '$slot', expected 1"
"$CRYPTVOL" image key remove "$img" --passphrase-file "$T/user"
expect_fail 3 "wrong passphrase" \
    "$CRYPTVOL" image export "$img" "$T/x" --passphrase-file "$T/user"
export_escrow "$img" - "$T/escrow-c" "" --length 5000001 | cmp - "$T/data" ||
    fail "enrolled volume: escrow export differs"
ok "enrolled volume without its user keyslot exports through the escrow"
