#!/bin/bash
# No secret is left in the daemon's memory by a request that carried one:
# after each request below, /proc/PID/mem is scanned for the secret's
# value and for its base64.  The requests: trailing bytes after the body,
# a duplicate "value" key (refused by nothing: it succeeds), a bad name,
# an unknown field, a syntax error after the value, a body cut short, a
# secret update with a duplicate key, refused KEK escrow exports (cluster
# not enabled, passphrase too short), and over HTTPS, where the TLS relay
# and OpenSSL hold the plaintext too.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
command -v curl >/dev/null || skip "curl is not installed"
[ -r /proc/self/mem ] || skip "no /proc/PID/mem"
SCAN="$PYTHON $SRC_DIR/tests/tools/memscan.py"

"$CRYPTVOL" tls init "$T/admin" --client-cn ops1 > /dev/null
PORT=$(free_port)
cvd_start m --tls off --admin-tls-dir "$T/admin" --admin-listen "127.0.0.1:$PORT"
SOCK=$CVD_DIR/admin.sock
# Probe: the scanner can read the daemon and finds what is there (its
# socket path is in its memory).
rc=0; $SCAN "$CVD_PID" "$SOCK" > /dev/null || rc=$?
[ "$rc" = 1 ] || skip "cannot read the daemon's memory (memscan exit $rc)"

n=0
new_secret() {      # sets VAL and B64: a fresh value and its base64
    n=$((n + 1))
    VAL="memscan-$n-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    B64=$(printf '%s' "$VAL" | base64 -w0)
}
post() {            # PATH BODY [curl args]: the request over the unix socket
    local path=$1 body=$2
    shift 2
    curl -sS --unix-socket "$SOCK" -o "$T/resp" -w '%{http_code}' \
        -H 'Content-Type: application/json' -d "$body" "$@" "http://localhost$path"
}
# scan WHAT NEEDLE...: none of the needles is in the daemon's memory.
scan() {
    local what=$1 rc=0
    shift
    sleep 0.3       # the connection ends and MHD frees what it held
    $SCAN "$CVD_PID" "$@" > "$T/scan" || rc=$?
    [ "$rc" = 0 ] || fail "$what: left in the daemon's memory: $(head -n 5 "$T/scan")"
}
check() {           # WHAT WANT-CODE PATH BODY: the request, its status, a scan
    local code
    code=$(post "$3" "$4")
    [ "$code" = "$2" ] || fail "$1: HTTP $code, expected $2: $(cat "$T/resp")"
    scan "$1" "$VAL" "$B64"
}

new_secret; check "trailing bytes" 400 /v1/secrets "{\"name\":\"t1\",\"value\":\"$B64\"} x"
new_secret; check "bad name" 400 /v1/secrets "{\"name\":\"../x\",\"value\":\"$B64\"}"
new_secret; check "unknown field" 400 /v1/secrets "{\"name\":\"t3\",\"value\":\"$B64\",\"extra\":1}"
new_secret; check "syntax error after the value" 400 /v1/secrets "{\"value\":\"$B64\", !}"
new_secret; check "body cut short" 400 /v1/secrets "{\"name\":\"t5\",\"value\":\"$B64\""
new_secret; check "not an object" 400 /v1/secrets "[\"$B64\"]"
new_secret; FIRST_VAL=$VAL FIRST_B64=$B64
new_secret
code=$(post /v1/secrets "{\"name\":\"t6\",\"value\":\"$FIRST_B64\",\"value\":\"$B64\"}")
[ "$code" = 201 ] || fail "duplicate value key: HTTP $code: $(cat "$T/resp")"
scan "duplicate value key" "$FIRST_VAL" "$FIRST_B64" "$B64"
new_secret; FIRST_VAL=$VAL FIRST_B64=$B64
new_secret
code=$(curl -sS --unix-socket "$SOCK" -o "$T/resp" -w '%{http_code}' -X PUT \
       -d "{\"value\":\"$FIRST_B64\",\"value\":\"$B64\"}" http://localhost/v1/secrets/t6)
[ "$code" = 200 ] || fail "update with a duplicate value key: HTTP $code: $(cat "$T/resp")"
scan "update with a duplicate value key" "$FIRST_VAL" "$FIRST_B64" "$B64"
ok "refused and duplicate-key secret requests leave neither the value nor its base64"

new_secret; check "kek export, cluster not enabled" 400 /v1/cluster/kek/export \
    "{\"recoveryPassphrase\":\"$B64\"}"
"$CRYPTVOL" cluster encryption enable --kek-protection software > /dev/null
VAL=short-pass B64=$(printf '%s' "$VAL" | base64 -w0)
check "kek export, passphrase too short" 400 /v1/cluster/kek/export \
    "{\"recoveryPassphrase\":\"$B64\"}"
new_secret; check "kek export, unknown field" 400 /v1/cluster/kek/export \
    "{\"recoveryPassphrase\":\"$B64\",\"x\":1}"
ok "refused KEK escrow exports leave no recovery passphrase"

ADMIN_CURL=(--cacert "$T/admin/ca-cert.pem" --cert "$T/admin/client-cert.pem"
            --key "$T/admin/client-key.pem")
new_secret
code=$(curl -sS "${ADMIN_CURL[@]}" -o "$T/resp" -w '%{http_code}' \
       -d "{\"name\":\"h1\",\"value\":\"$B64\"} x" "https://localhost:$PORT/v1/secrets")
[ "$code" = 400 ] || fail "over HTTPS: HTTP $code: $(cat "$T/resp")"
scan "trailing bytes over HTTPS" "$VAL" "$B64"
new_secret; FIRST_VAL=$VAL FIRST_B64=$B64
new_secret
code=$(curl -sS "${ADMIN_CURL[@]}" -o "$T/resp" -w '%{http_code}' \
       -d "{\"name\":\"h2\",\"value\":\"$FIRST_B64\",\"value\":\"$B64\"}" \
       "https://localhost:$PORT/v1/secrets")
[ "$code" = 201 ] || fail "duplicate over HTTPS: HTTP $code: $(cat "$T/resp")"
scan "duplicate value key over HTTPS" "$FIRST_VAL" "$FIRST_B64" "$B64"
ok "over HTTPS too"
cvd_stop
