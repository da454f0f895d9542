#!/bin/bash
# The admin API over HTTPS (--admin-listen): TLS by OpenSSL with the
# daemon's X.509 directory, client certificates required with
# --tls-verify-peer; the CLI with --url and --tls-dir; curl as a peer.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
command -v curl >/dev/null || skip "curl is not installed"

"$CRYPTVOL" tls init "$T/tls" > /dev/null
"$CRYPTVOL" tls init "$T/other" > /dev/null
PORT=$(free_port)
cvd_start h --tls on --tls-dir "$T/tls" --tls-verify-peer \
    --admin-listen "127.0.0.1:$PORT"
URL=https://localhost:$PORT
CV=("$CRYPTVOL" --url "$URL" --tls-dir "$T/tls")
https() { "${CV[0]}" "$@" --url "$URL" --tls-dir "$T/tls"; }

passfile "$T/pw" "over-https-$RANDOM"
https secret create pw --from-file "$T/pw" > /dev/null
https volume create v1 --size 4M --secret pw > /dev/null
https volume list > "$T/out"
grep -Eq '^v1 +4.0 MiB +luks2' "$T/out" || fail "volume list over https: $(cat "$T/out")"
# The same records through the unix socket.
"$CRYPTVOL" volume info v1 --json | grep -q '"secret":"pw"' || fail "unix socket view differs"
ok "CLI over HTTPS with a client certificate"

out=$(curl -sS --cacert "$T/tls/ca-cert.pem" --cert "$T/tls/client-cert.pem" \
      --key "$T/tls/client-key.pem" -w '\n%{http_code}' "$URL/v1/status")
[ "$(tail -n 1 <<<"$out")" = 200 ] || fail "curl with a client certificate: $out"
# Many at once: each connection has its own relay.
pids=()
for i in $(seq 16); do
    curl -sS --cacert "$T/tls/ca-cert.pem" --cert "$T/tls/client-cert.pem" \
        --key "$T/tls/client-key.pem" -o "$T/par.$i" "$URL/v1/volumes" &
    pids+=($!)
done
wait "${pids[@]}"      # not a bare wait: the daemon is a child too
for i in $(seq 16); do grep -q '"name":"v1"' "$T/par.$i" || fail "parallel request $i"; done
ok "curl with a client certificate, 16 in parallel"

rc=0; curl -sS --cacert "$T/tls/ca-cert.pem" "$URL/v1/status" > /dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "a client without a certificate was served"
rc=0; curl -sS --cacert "$T/other/ca-cert.pem" --cert "$T/other/client-cert.pem" \
    --key "$T/other/client-key.pem" "$URL/v1/status" > /dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "a client with another CA's certificate was served"
expect_fail 1 "^cryptvol: cryptvold at $URL: " \
    "$CRYPTVOL" volume list --url "$URL" --tls-dir "$T/other"
expect_fail 1 "^cryptvol: cryptvold at http://127.0.0.1:$PORT: " \
    "$CRYPTVOL" volume list --url "http://127.0.0.1:$PORT"
ok "no client certificate, another CA, plaintext HTTP: all refused"

# The daemon still answers after the refusals, and stops promptly with a
# connection stuck in the handshake.
https volume info v1 > /dev/null
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
start=$(date +%s)
cvd_stop
exec 3>&-
[ $(( $(date +%s) - start )) -le 5 ] || fail "stopping took more than 5 s"
ok "stops promptly with a half-open TLS connection"
