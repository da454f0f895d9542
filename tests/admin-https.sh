#!/bin/bash
# The admin API over HTTPS (--admin-listen): TLS by OpenSSL; every client
# presents an admin certificate, of the admin CA (--admin-tls-dir) or of
# the NBD CA and named by --admin-allow; an NBD client certificate is
# never an admin one.  The CLI with --url and --tls-dir; curl as a peer.
. "$(dirname "$0")/lib.sh"

# Built with the CLI (ctest runs the same build): missing is a build regression.
[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built: $CRYPTVOLD"
command -v curl >/dev/null || skip "curl is not installed"
command -v openssl >/dev/null || skip "openssl is not installed"

"$CRYPTVOL" tls init "$T/tls" > /dev/null                      # NBD
"$CRYPTVOL" tls init "$T/admin" --client-cn ops1 > /dev/null   # admin CA
"$CRYPTVOL" tls init "$T/other" > /dev/null
PORT=$(free_port)
mkdir -p "$T/no/data"

# ---- no admin identity: the daemon does not start ---------------------------
rc=0
"$CRYPTVOLD" --foreground --data-dir "$T/no/data" --nbd-listen none \
    --nbd-unix "$T/no/nbd.sock" --admin-socket "$T/no/admin.sock" \
    --tls on --tls-dir "$T/tls" --admin-listen "127.0.0.1:$PORT" \
    > /dev/null 2> "$T/err" || rc=$?
[ "$rc" = 2 ] || fail "cryptvold started with --admin-listen and no admin identity (exit $rc)"
grep -q "admin-listen needs admin identities: --admin-tls-dir DIR" "$T/err" ||
    fail "startup error: $(cat "$T/err")"
rc=0
"$CRYPTVOLD" --foreground --data-dir "$T/no/data" --nbd-listen none \
    --nbd-unix "$T/no/nbd.sock" --admin-socket "$T/no/admin.sock" \
    --tls on --tls-dir "$T/tls" --tls-verify-peer --admin-listen "127.0.0.1:$PORT" \
    > /dev/null 2> "$T/err" || rc=$?
[ "$rc" = 2 ] || fail "cryptvold started with --tls-verify-peer as the admin check (exit $rc)"
# The NBD CA as the admin CA: every tenant would be an admin.
rc=0
"$CRYPTVOLD" --foreground --data-dir "$T/no/data" --nbd-listen none \
    --nbd-unix "$T/no/nbd.sock" --admin-socket "$T/no/admin.sock" \
    --tls on --tls-dir "$T/tls" --admin-tls-dir "$T/tls" \
    --admin-listen "127.0.0.1:$PORT" > /dev/null 2> "$T/err" || rc=$?
[ "$rc" = 1 ] || fail "cryptvold started with the NBD CA as admin CA (exit $rc)"
grep -q "its ca-cert.pem is also the NBD CA" "$T/err" || fail "startup error: $(cat "$T/err")"
rc=0
"$CRYPTVOLD" --foreground --data-dir "$T/no/data" --nbd-listen none \
    --nbd-unix "$T/no/nbd.sock" --admin-socket "$T/no/admin.sock" \
    --tls on --tls-dir "$T/tls" --admin-allow "ou:x" \
    --admin-listen "127.0.0.1:$PORT" > /dev/null 2> "$T/err" || rc=$?
[ "$rc" = 1 ] || fail "cryptvold started with admin-allow ou:x (exit $rc)"
grep -q 'admin-allow: "ou:x" is not cn:NAME or dns:NAME' "$T/err" || fail "startup error: $(cat "$T/err")"
ok "no admin identity, the NBD CA as admin CA, a bad admin-allow: cryptvold refuses to start"

# ---- an admin CA of its own --------------------------------------------------
cvd_start h --tls on --tls-dir "$T/tls" --tls-verify-peer \
    --admin-tls-dir "$T/admin" --admin-listen "127.0.0.1:$PORT"
URL=https://localhost:$PORT
https() { "$CRYPTVOL" "$@" --url "$URL" --tls-dir "$T/admin"; }

passfile "$T/pw" "over-https-$RANDOM"
https secret create pw --from-file "$T/pw" > /dev/null
https volume create v1 --size 4M --secret pw > /dev/null
https volume list > "$T/out"
grep -Eq '^v1 +4.0 MiB +[0-9.]+ [KM]iB +luks2' "$T/out" || fail "volume list over https: $(cat "$T/out")"
# The same records through the unix socket.
"$CRYPTVOL" volume info v1 --json | grep -q '"secret":"pw"' || fail "unix socket view differs"
ok "CLI over HTTPS with an admin certificate"

ADMIN_CURL=(--cacert "$T/admin/ca-cert.pem" --cert "$T/admin/client-cert.pem"
            --key "$T/admin/client-key.pem")
out=$(curl -sS "${ADMIN_CURL[@]}" -w '\n%{http_code}' "$URL/v1/status")
[ "$(tail -n 1 <<<"$out")" = 200 ] || fail "curl with an admin certificate: $out"
# Many at once: each connection has its own relay.
pids=()
for i in $(seq 16); do
    curl -sS "${ADMIN_CURL[@]}" -o "$T/par.$i" "$URL/v1/volumes" &
    pids+=($!)
done
wait "${pids[@]}"      # not a bare wait: the daemon is a child too
for i in $(seq 16); do grep -q '"name":"v1"' "$T/par.$i" || fail "parallel request $i"; done
ok "curl with an admin certificate, 16 in parallel"

# No certificate, an NBD client certificate, another CA's certificate,
# plaintext: none is served, and v1 is still there.  Every client trusts
# the admin CA, so it accepts the server and only the server can refuse:
# each refusal must be the server's, seen in a new line of its log.
LOG=$CVD_DIR/cryptvold.log
# A tls dir that trusts our server but holds a client certificate of
# another CA, and one holding the NBD client's certificate.
mkdir "$T/foreign" "$T/nbdcert"
cp "$T/admin/ca-cert.pem" "$T/foreign/"
cp "$T/other/client-cert.pem" "$T/other/client-key.pem" "$T/foreign/"
cp "$T/admin/ca-cert.pem" "$T/nbdcert/"
cp "$T/tls/client-cert.pem" "$T/tls/client-key.pem" "$T/nbdcert/"
# server_refused WHAT REASON COMMAND...: COMMAND fails, and the log lines
# written since it started say the server refused the handshake for REASON.
server_refused() {
    local what=$1 why=$2 n i rc=0
    shift 2
    n=$(wc -l < "$LOG")
    "$@" > "$T/out" 2>&1 || rc=$?
    [ "$rc" != 0 ] || fail "$what was served: $(cat "$T/out")"
    for ((i = 0; i < 50; i++)); do
        tail -n +$((n + 1)) "$LOG" | grep -Eq "admin https: 127\.0\.0\.1 port [0-9]+: TLS handshake failed: $why" && break
        sleep 0.05
    done
    tail -n +$((n + 1)) "$LOG" | grep -Eq "admin https: 127\.0\.0\.1 port [0-9]+: TLS handshake failed: $why" ||
        fail "$what: the server did not refuse the handshake ($why); client: $(head -c 300 "$T/out"); new log lines: $(tail -n +$((n + 1)) "$LOG")"
    # At most 5 handshake failures a second are logged (CVD_RATELIMIT_BURST):
    # spaced so that none of ours is dropped.
    sleep 0.25
}
CA=(--cacert "$T/admin/ca-cert.pem")
server_refused "curl without a certificate" "peer did not return a certificate" \
    curl -sS "${CA[@]}" -X DELETE "$URL/v1/volumes/v1"
server_refused "curl with an NBD client certificate" "certificate verify failed" \
    curl -sS "${CA[@]}" --cert "$T/tls/client-cert.pem" --key "$T/tls/client-key.pem" \
    -X DELETE "$URL/v1/volumes/v1"
server_refused "curl with another CA's certificate" "certificate verify failed" \
    curl -sS "${CA[@]}" --cert "$T/other/client-cert.pem" --key "$T/other/client-key.pem" \
    -X DELETE "$URL/v1/volumes/v1"
server_refused "the CLI with an NBD client certificate" "certificate verify failed" \
    "$CRYPTVOL" volume delete v1 --url "$URL" --tls-dir "$T/nbdcert"
grep -q "^cryptvol: cryptvold at $URL: " "$T/out" || fail "CLI refusal says: $(cat "$T/out")"
server_refused "the CLI with another CA's certificate" "certificate verify failed" \
    "$CRYPTVOL" volume list --url "$URL" --tls-dir "$T/foreign"
grep -q "^cryptvol: cryptvold at $URL: " "$T/out" || fail "CLI refusal says: $(cat "$T/out")"
# A CLI that does not trust the server stops before it sends anything.
expect_fail 1 "^cryptvol: cryptvold at $URL: SSL certificate problem" \
    "$CRYPTVOL" volume list --url "$URL" --tls-dir "$T/other"
expect_fail 1 "^cryptvol: cryptvold at http://127.0.0.1:$PORT: " \
    "$CRYPTVOL" volume list --url "http://127.0.0.1:$PORT"
mkdir "$T/nocert" && cp "$T/admin/ca-cert.pem" "$T/nocert/"
expect_fail 1 "^cryptvol: --tls-dir $T/nocert: no client-cert.pem: cryptvold's HTTPS admin API needs an admin certificate" \
    "$CRYPTVOL" volume delete v1 --url "$URL" --tls-dir "$T/nocert"
"$CRYPTVOL" volume info v1 > /dev/null || fail "v1 is gone after the refusals"
ok "no certificate, an NBD client certificate, another CA's (curl and CLI), plaintext HTTP: all refused by the server"

# The daemon still answers after the refusals, and stops promptly with a
# connection stuck in the handshake.
https volume info v1 > /dev/null
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
start=$(date +%s)
cvd_stop
exec 3>&-
[ $(( $(date +%s) - start )) -le 5 ] || fail "stopping took more than 5 s"
ok "stops promptly with a half-open TLS connection"

# ---- the NBD CA with an allow-list -------------------------------------------
# Another client certificate of the NBD CA, CN=ops2.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$T/ops2-key.pem" -subj "/CN=ops2" -out "$T/ops2.csr" 2> /dev/null
openssl x509 -req -in "$T/ops2.csr" -CA "$T/tls/ca-cert.pem" -CAkey "$T/tls/ca-key.pem" \
    -CAcreateserial -days 1 -out "$T/ops2-cert.pem" 2> /dev/null
chmod 600 "$T/ops2-key.pem"
cvd_start a --tls on --tls-dir "$T/tls" --admin-allow "cn:ops2, dns:ops.example" \
    --admin-listen "127.0.0.1:$PORT"
NBD_CURL=(--cacert "$T/tls/ca-cert.pem")
out=$(curl -sS "${NBD_CURL[@]}" --cert "$T/ops2-cert.pem" --key "$T/ops2-key.pem" \
      -w '\n%{http_code}' -X POST -d '{"name":"s2","value":"c2VjcmV0"}' "$URL/v1/secrets")
[ "$(tail -n 1 <<<"$out")" = 201 ] || fail "CN=ops2 in admin-allow: $out"
out=$(curl -sS "${NBD_CURL[@]}" --cert "$T/tls/client-cert.pem" --key "$T/tls/client-key.pem" \
      -w '\n%{http_code}' -X DELETE "$URL/v1/secrets/s2")
[ "$(tail -n 1 <<<"$out")" = 403 ] || fail "an NBD client certificate not in admin-allow: $out"
grep -q 'may not administer cryptvold (admin-allow)' <<<"$out" || fail "403 says: $out"
rc=0; curl -sS "${NBD_CURL[@]}" "$URL/v1/status" > /dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "no certificate served with admin-allow"
"$CRYPTVOL" audit --json > "$T/out"
json() { "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
json '[(e["event"], e["actor"].split(" ")[0], e["result"]) for e in d["events"]]' < "$T/out" > "$T/ev"
grep -q "('secret.create', 'https:CN=ops2', 'ok')" "$T/ev" || fail "audit of ops2: $(cat "$T/ev")"
grep -q "('admin.refused', 'https:CN=cryptvol-client', 'refused')" "$T/ev" ||
    fail "audit of the refused NBD certificate: $(cat "$T/ev")"
"$CRYPTVOL" secret list | grep -q '^s2' || fail "s2 was deleted by an NBD certificate"
ok "admin-allow: CN=ops2 administers, the NBD client's certificate gets 403 and an audit event"
cvd_stop
