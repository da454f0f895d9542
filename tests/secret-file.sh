#!/bin/bash
# secret create --from-file reads the file as cryptsetup reads --key-file:
# the bytes exactly, no newline stripped; a file group or others can access
# is refused before anything is sent.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
need cryptsetup

cvd_start s --tls off
DATA=$CVD_DIR/data

passfile "$T/pw" "one two"
for mode in 644 640 604 660 606; do
    chmod "$mode" "$T/pw"
    expect_fail 1 "^cryptvol: secret file $T/pw: mode 0$mode lets group or others read it; refusing \(chmod 600 $T/pw\)$" \
        "$CRYPTVOL" secret create s$mode --from-file "$T/pw"
done
chmod 600 "$T/pw"
# The list must be asked for and answered (an empty JSON array): a failing
# "secret list" is not "no secret was made".
"$CRYPTVOL" secret list --json > "$T/list" 2> "$T/list.err" ||
    fail "secret list failed: $(cat "$T/list.err")"
[ "$($PYTHON -c 'import json,sys; print(json.load(sys.stdin))' < "$T/list")" = "[]" ] ||
    fail "a refused file made a secret: $(cat "$T/list")"
ok "permissive files refused: 644 640 604 660 606"

: > "$T/empty"; chmod 600 "$T/empty"
expect_fail 1 "secret file $T/empty: empty" "$CRYPTVOL" secret create e --from-file "$T/empty"
expect_fail 1 "secret file $T/missing: No such file" \
    "$CRYPTVOL" secret create m --from-file "$T/missing"
mkdir -m 700 "$T/dir"
expect_fail 1 "secret file $T/dir: not a regular file" \
    "$CRYPTVOL" secret create d --from-file "$T/dir"
ok "empty, missing and non-regular files refused"

# The bytes exactly: a trailing newline is part of the secret, so the
# volume opens with the file as cryptsetup reads it and not without it.
(umask 077; printf 'with newline\n' > "$T/nl"; printf 'with newline' > "$T/no-nl")
"$CRYPTVOL" secret create nl --from-file "$T/nl" > /dev/null
"$CRYPTVOL" volume create vol --size 4M --secret nl > /dev/null
cryptsetup open --test-passphrase --key-file "$T/nl" "$(vol_dir "$DATA" vol)/header" ||
    fail "the volume does not open with the file's exact bytes"
! cryptsetup open --test-passphrase --key-file "$T/no-nl" "$(vol_dir "$DATA" vol)/header" 2>/dev/null ||
    fail "the newline was stripped"
ok "the secret is the file's bytes exactly (cryptsetup --key-file agrees)"

# Binary secrets survive the base64 trip.
head -c 4096 /dev/urandom > "$T/bin"; chmod 600 "$T/bin"
"$CRYPTVOL" secret create bin --from-file "$T/bin" > /dev/null
"$CRYPTVOL" volume create binvol --size 4M --secret bin > /dev/null
cryptsetup open --test-passphrase --key-file "$T/bin" "$(vol_dir "$DATA" binvol)/header" ||
    fail "a binary secret did not survive"
ok "a 4 KiB binary secret survives"
# Larger than the limit (64 KiB) is refused by the CLI before sending.
head -c 70000 /dev/urandom > "$T/big"; chmod 600 "$T/big"
expect_fail 1 "secret file $T/big: larger than 65536 bytes" \
    "$CRYPTVOL" secret create big --from-file "$T/big"
ok "oversized secret files refused"
