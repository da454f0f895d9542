#!/usr/bin/env bash
# An export that cannot be opened is refused with a message that names the
# volume and says why: no such volume, a secret that no longer opens any
# keyslot (changed behind the daemon's back).  The data stays intact and
# opens again once the key is put back.
source "$(dirname "$0")/lib.sh"

cvd_start n1 --tls off
passfile "$T/s1" "first secret"
passfile "$T/s2" "second secret"
"$CRYPTVOL" secret create s1 --from-file "$T/s1" >/dev/null
"$CRYPTVOL" volume create v --size 8M --secret s1 >/dev/null
uri() { echo "nbd+unix:///$1?socket=$CVD_NBD"; }
# libnbd prints the server's error text only in its debug output.
export LIBNBD_DEBUG=1

printf 'keep me' > "$T/data"
nbdcopy "$T/data" "$(uri v)" || fail "write to v"
if nbdinfo --size "$(uri nosuch)" > /dev/null 2> "$T/err"; then
    fail "a missing volume was served"
fi
grep -q "server error message: volume nosuch: " "$T/err" || fail "error does not name the volume: $(cat "$T/err")"
ok "missing volume refused: $(grep -m1 'server error message' "$T/err")"

# The volume's LUKS header is its chain's header file (docs/store.md).
img=$(vol_dir "$CVD_DIR/data" v)/header
[ -f "$img" ] || fail "no header at $img"
"$CRYPTVOL" image key change "$img" --passphrase-file "$T/s1" \
    --new-passphrase-file "$T/s2" "${FAST_KDF[@]}"
if nbdinfo --size "$(uri v)" > /dev/null 2> "$T/err"; then
    fail "volume with a wrong secret was served"
fi
grep -q "server error message: volume v: wrong key" "$T/err" || fail "error does not say wrong key: $(cat "$T/err")"
ok "wrong secret refused: $(grep -m1 'server error message' "$T/err")"

"$CRYPTVOL" image key change "$img" --passphrase-file "$T/s2" \
    --new-passphrase-file "$T/s1" "${FAST_KDF[@]}"
nbdcopy "$(uri v)" "$T/all" 2>/dev/null || fail "read v back"
head -c 7 "$T/all" > "$T/back"
[ "$(cat "$T/back")" = "keep me" ] || fail "data changed: $(cat "$T/back")"
ok "data intact after the key is restored"
cvd_stop
