#!/bin/bash
# Requests the admin API refuses whole rather than reads differently from
# what they say: a NUL in a JSON name or in the URL (refused, never cut
# at the NUL), two Content-Length headers or Content-Length with
# Transfer-Encoding (request smuggling), and a short recovery passphrase
# for a KEK escrow.  Each is a 400 and changes nothing.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
command -v curl >/dev/null || skip "curl is not installed"
RAW="$PYTHON $SRC_DIR/tests/tools/http-raw.py"

cvd_start r --tls off
SOCK=$CVD_DIR/admin.sock
api() {     # METHOD PATH [BODY]: prints "CODE BODY"
    curl -sS --unix-socket "$SOCK" -X "$1" ${3+-d "$3"} -w '\n%{http_code}' \
        "http://localhost$2" > "$T/resp"
    echo "$(tail -n 1 "$T/resp") $(head -n -1 "$T/resp")"
}
expect() {  # CODE PATTERN "CODE BODY"
    [ "${3%% *}" = "$1" ] || fail "expected $1, got: $3"
    grep -q -- "$2" <<<"$3" || fail "expected '$2' in: $3"
}

passfile "$T/pw" "a secret value"
"$CRYPTVOL" secret create pw --from-file "$T/pw" > /dev/null
"$CRYPTVOL" volume create v1 --size 4M --secret pw > /dev/null
# A NUL in a JSON name: json-c keeps the length, we refuse it.
expect 400 'NUL character' "$(api POST /v1/secrets '{"name":"ab\u0000../x","value":"c2VjcmV0"}')"
expect 400 'NUL character' "$(api POST /v1/secrets '{"name\u0000x":"ab","value":"c2VjcmV0"}')"
expect 400 'NUL character' "$(api POST /v1/volumes '{"name":"v2\u0000","size":4194304,"secret":"pw"}')"
# An escaped backslash before u0000 is text, not a NUL: refused as a name.
expect 400 'not a valid name' "$(api POST /v1/secrets '{"name":"ab\\u0000","value":"c2VjcmV0"}')"
[ "$("$CRYPTVOL" secret list | awk 'NR>1{print $1}' | tr '\n' ' ')" = "pw " ] ||
    fail "a NUL name created something: $("$CRYPTVOL" secret list)"
"$CRYPTVOL" volume list | grep -q '^v2' && fail "a NUL name created volume v2"
ok "a NUL in a JSON name or key is refused (400), nothing created"

expect 400 'encoded NUL byte' "$(api DELETE /v1/volumes/v1%00x)"
expect 400 'encoded NUL byte' "$(api DELETE /v1/secrets/pw%00)"
expect 400 'encoded NUL byte' "$(api GET '/v1/audit?since=1h%00x')"
"$CRYPTVOL" volume info v1 > /dev/null || fail "DELETE /v1/volumes/v1%00x deleted v1"
"$CRYPTVOL" secret list | grep -q '^pw' || fail "DELETE /v1/secrets/pw%00 deleted pw"
# Other escapes still decode.
expect 404 'none' "$(api DELETE /v1/volumes/n%6fne)"
ok "an encoded NUL in the URL is refused (400), nothing deleted"

out=$($RAW "$SOCK" <<'REQ'
POST /v1/secrets HTTP/1.1
Host: localhost
Content-Type: application/json
Content-Length: 38
Content-Length: 2

{"name":"cl2","value":"c2VjcmV0"}    
REQ
)
expect 400 'more than one Content-Length' "$out"
out=$($RAW "$SOCK" <<'REQ'
POST /v1/secrets HTTP/1.1
Host: localhost
Content-Type: application/json
Content-Length: 4
Transfer-Encoding: chunked

22
{"name":"te","value":"c2VjcmV0"}
0

REQ
)
expect 400 'Transfer-Encoding with Content-Length' "$out"
"$CRYPTVOL" secret list | grep -Eq '^(cl2|te) ' && fail "a smuggled request created a secret"
# One Content-Length, or chunked alone, is served.
out=$($RAW "$SOCK" <<'REQ'
POST /v1/secrets HTTP/1.1
Host: localhost
Content-Type: application/json
Transfer-Encoding: chunked

20
{"name":"te","value":"c2VjcmV0"}
0

REQ
)
expect 201 '"name":"te"' "$out"
ok "two Content-Length headers, Content-Length with Transfer-Encoding: 400; chunked alone is served"

# ---- a KEK escrow's recovery passphrase has at least 12 bytes ---------------
cvd_stop
cvd_start k --tls off
SOCK=$CVD_DIR/admin.sock
"$CRYPTVOL" cluster encryption enable --kek-protection software > /dev/null
expect 400 'recovery passphrase: 1 bytes, at least 12 are needed' \
    "$(api POST /v1/cluster/kek/export '{"recoveryPassphrase":"eA=="}')"
expect 400 'recovery passphrase: 11 bytes, at least 12 are needed' \
    "$(api POST /v1/cluster/kek/export '{"recoveryPassphrase":"MTIzNDU2Nzg5MDE="}')"
passfile "$T/short" "eleven byte"
expect_fail 1 "recovery passphrase file $T/short: 11 bytes, at least 12 are needed" \
    "$CRYPTVOL" cluster kek export --recovery-passphrase-file "$T/short" "$T/escrow.json"
[ ! -e "$T/escrow.json" ] || fail "a short passphrase wrote an escrow"
passfile "$T/ok" "twelve bytes"
"$CRYPTVOL" cluster kek export --recovery-passphrase-file "$T/ok" "$T/escrow.json" > /dev/null
ok "a recovery passphrase under 12 bytes is refused by the daemon and the CLI; 12 is taken"
cvd_stop
