#!/usr/bin/env bash
# Interoperability with nbdkit's luks filter (nbdkit 1.32, LUKS1 only), in
# both directions, with nbdcopy as the NBD client:
#
#  * nbdkit serves a cryptvol LUKS1 image (AES-256 and AES-128) of the size
#    cryptvol reports, and nbdcopy reads back what cryptvol imported, at
#    offset 0 and at an unaligned offset;
#  * nbdcopy writes plaintext (with a zero run, which nbdcopy may send as a
#    zero request) through nbdkit's luks filter into a cryptvol image, and
#    cryptvol exports the same bytes, with the data around it unchanged;
#  * nbdkit refuses a wrong passphrase on a cryptvol image.
#
# Every nbdkit runs with -U - and --run, so no server outlives its command.
# nbdkit reads passphrase=+FILE as a line (a trailing newline is dropped),
# so these passphrases have none.
source "$(dirname "$0")/lib.sh"

# info_get IMG FIELD: one field of `cryptvol image info --json`.
info_get() {
    "$CRYPTVOL" image info "$1" --json |
        "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}
# luks_nbd IMG PASSFILE COMMAND [OFFSET]: runs COMMAND (with $uri set)
# against nbdkit serving IMG's plaintext through the luks filter; with
# OFFSET, the offset filter on top serves it from that plaintext offset.
luks_nbd() {
    local img=$1 pf=$2 cmd=$3 filters=() params=()
    if [ $# -gt 3 ]; then
        filters=(--filter=offset)
        params=(offset="$4")
    fi
    timeout 120 nbdkit -U - "${filters[@]}" --filter=luks file file="$img" \
        passphrase=+"$pf" "${params[@]}" --run "$cmd"
}

passfile "$T/pass" 'served by nbdkit, made by cryptvol'
passfile "$T/wrong" 'served by nbdkit, made by cryptvol?'

# nbd_case CIPHER
nbd_case() {
    local cipher=$1 what="nbdkit $1" img="$T/cv-$1.img" size off2 w
    "$CRYPTVOL" image create "$img" --size 32M
    "$CRYPTVOL" image format "$img" --type luks1 --cipher "$cipher" \
        --passphrase-file "$T/pass" "${FAST_KDF[@]}"
    size=$(info_get "$img" size)

    # cryptvol writes, nbdkit + nbdcopy read.
    head -c 4000000 /dev/urandom > "$T/p1"
    head -c 300001 /dev/urandom > "$T/p2"
    off2=$((size - 300001 - 4321))
    "$CRYPTVOL" image import "$T/p1" "$img" --passphrase-file "$T/pass"
    "$CRYPTVOL" image import "$T/p2" "$img" --passphrase-file "$T/pass" --offset "$off2"
    luks_nbd "$img" "$T/pass" "nbdinfo --size \"\$uri\" > $T/nbdsize && nbdcopy \"\$uri\" $T/served" ||
        fail "$what: nbdkit --filter=luks + nbdcopy cannot read a cryptvol LUKS1 image"
    [ "$(cat "$T/nbdsize")" = "$size" ] ||
        fail "$what: nbdkit serves $(cat "$T/nbdsize") bytes, cryptvol's effective size is $size"
    [ "$(stat -c %s "$T/served")" = "$size" ] || fail "$what: nbdcopy copied $(stat -c %s "$T/served") bytes, not $size"
    cmp -n 4000000 "$T/served" "$T/p1" >&2 || fail "$what: nbdkit serves other data at offset 0 than cryptvol imported"
    cmp -n 300001 <(tail -c +$((off2 + 1)) "$T/served") "$T/p2" >&2 ||
        fail "$what: nbdkit serves other data at offset $off2 than cryptvol imported"
    ok "$what: nbdcopy through nbdkit's luks filter reads what cryptvol imported"

    # nbdcopy writes through nbdkit, cryptvol reads.  nbdkit's luks filter
    # takes whole 512-byte sectors only, so the offset filter puts the
    # write at 3 sectors in and the file is whole sectors.
    {
        head -c 1048576 /dev/urandom
        head -c 1048576 /dev/zero
        head -c 1048064 /dev/urandom
    } > "$T/w"
    w=$(stat -c %s "$T/w")
    luks_nbd "$img" "$T/pass" "nbdcopy $T/w \"\$uri\"" 1536 ||
        fail "$what: nbdcopy cannot write through nbdkit's luks filter into a cryptvol image"
    "$CRYPTVOL" image export "$img" "$T/got" --passphrase-file "$T/pass" --offset 1536 --length "$w"
    cmp "$T/got" "$T/w" >&2 || fail "$what: cryptvol exports other data than nbdcopy wrote through nbdkit"
    "$CRYPTVOL" image export "$img" "$T/got" --passphrase-file "$T/pass" --length 1536
    cmp "$T/got" <(head -c 1536 "$T/p1") >&2 || fail "$what: the data before nbdkit's write changed"
    "$CRYPTVOL" image export "$img" "$T/got" --passphrase-file "$T/pass" \
        --offset $((1536 + w)) --length $((4000000 - 1536 - w))
    cmp "$T/got" <(tail -c +$((1536 + w + 1)) "$T/p1") >&2 ||
        fail "$what: the data after nbdkit's write changed"
    "$CRYPTVOL" image export "$img" "$T/got" --passphrase-file "$T/pass" --offset "$off2" --length 300001
    cmp "$T/got" "$T/p2" >&2 || fail "$what: the data at $off2 changed"
    ok "$what: cryptvol exports what nbdcopy wrote through nbdkit's luks filter"
    rm -f "$img" "$T/served" "$T/got"
}

nbd_case aes-256
nbd_case aes-128

# A wrong passphrase: nbdkit refuses to serve (1.32 then fails the client
# command, sometimes by a crash of its own; all that matters here is that
# it refuses and does not touch the image).
IMG="$T/wrong.img"
"$CRYPTVOL" image create "$IMG" --size 8M
"$CRYPTVOL" image format "$IMG" --type luks1 --passphrase-file "$T/pass" "${FAST_KDF[@]}"
before=$(sha256sum < "$IMG")
rc=0
luks_nbd "$IMG" "$T/wrong" "nbdinfo --size \"\$uri\"" >/dev/null 2>"$T/nbd.err" || rc=$?
[ "$rc" != 0 ] || fail "nbdkit's luks filter accepted a wrong passphrase on a cryptvol image"
grep -q 'passphrase is not correct' "$T/nbd.err" ||
    fail "nbdkit failed, but not on the passphrase: $(cat "$T/nbd.err")"
[ "$(sha256sum < "$IMG")" = "$before" ] || fail "nbdkit with a wrong passphrase changed the image"
ok "nbdkit's luks filter refuses a wrong passphrase on a cryptvol image"

ok "nbdkit interoperability"
