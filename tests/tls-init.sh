#!/usr/bin/env bash
# cryptvol tls init: the CA, server and client certificates it makes verify
# with OpenSSL and GnuTLS, the keys are mode 0600, it never overwrites, and
# the directory works as-is for the peers users have: OpenSSL's s_server
# against gnutls-cli and s_client with client certificates, and qemu-nbd's
# tls-creds-x509 object against libnbd's nbdinfo (both GnuTLS, both with
# qemu's own certificate checks).
source "$(dirname "$0")/lib.sh"
cd "$T"

CV=("$CRYPTVOL")

"${CV[@]}" tls init pki > out || fail "tls init: $(cat out)"
grep -q "ca-cert.pem" out || fail "tls init printed: $(cat out)"
for f in ca-cert server-cert client-cert ca-key server-key client-key; do
    [ -f "pki/$f.pem" ] || fail "pki/$f.pem missing"
done
for f in ca-key server-key client-key; do
    [ "$(stat -c %a "pki/$f.pem")" = 600 ] ||
        fail "pki/$f.pem is mode $(stat -c %a "pki/$f.pem"), expected 600"
done
ok "tls init: six files, keys 0600"

(cd pki && openssl verify -CAfile ca-cert.pem server-cert.pem client-cert.pem) \
    > out 2>&1 || fail "openssl verify: $(cat out)"
openssl verify -CAfile pki/ca-cert.pem -purpose sslserver pki/server-cert.pem \
    > out 2>&1 || fail "server certificate not for servers: $(cat out)"
openssl verify -CAfile pki/ca-cert.pem -purpose sslclient pki/client-cert.pem \
    > out 2>&1 || fail "client certificate not for clients: $(cat out)"
if openssl verify -CAfile pki/ca-cert.pem -purpose sslserver \
       pki/client-cert.pem > out 2>&1; then
    fail "the client certificate passes as a server certificate"
fi
text=$(openssl x509 -in pki/server-cert.pem -noout -text)
for want in "DNS:localhost" "IP Address:127.0.0.1" "CA:FALSE" \
            "TLS Web Server Authentication" "ecdsa-with-SHA256"; do
    grep -qF "$want" <<< "$text" || fail "server certificate lacks $want"
done
openssl x509 -in pki/ca-cert.pem -noout -text | grep "CA:TRUE" > /dev/null ||
    fail "CA certificate lacks CA:TRUE"
[ "$(openssl x509 -in pki/client-cert.pem -noout -subject)" = \
  "subject=CN = cryptvol-client" ] || fail "client CN"
if command -v certtool > /dev/null; then
    certtool --verify --load-ca-certificate pki/ca-cert.pem \
        --infile pki/server-cert.pem > out 2>&1 ||
        fail "certtool --verify: $(cat out)"
fi
ok "openssl verify (and certtool): chain, purposes, SAN, CA"

# Never overwrite: the same files, byte for byte, after a refused run.
cp -a pki again
sum=$(cat again/* | sha256sum)
expect_fail 1 "again/ca-cert.pem already exists; refusing to overwrite" \
    "${CV[@]}" tls init again
[ "$(cat again/* | sha256sum)" = "$sum" ] || fail "a refused run changed again/"
rm again/ca-cert.pem
expect_fail 1 "again/ca-key.pem already exists" "${CV[@]}" tls init again
[ "$(ls again | wc -l)" = 5 ] || fail "a refused run changed again/: $(ls again)"
ok "refuses to overwrite any of its files"

expect_fail 2 "needs DIR" "${CV[@]}" tls init
expect_fail 2 "unknown option --bogus" "${CV[@]}" tls init x --bogus
expect_fail 2 "option --host needs a value" "${CV[@]}" tls init x --host
expect_fail 1 'host "a,DNS:evil" is not a DNS name' \
    "${CV[@]}" tls init x --host a,DNS:evil
[ ! -e x/ca-cert.pem ] || fail "a refused run wrote x/ca-cert.pem"
ok "usage errors and bad hosts"

"${CV[@]}" tls init named --host nbd.example.com --host 10.1.2.3 \
    --client-cn node-7 > /dev/null
text=$(openssl x509 -in named/server-cert.pem -noout -text)
grep -qF "DNS:nbd.example.com, IP Address:10.1.2.3" <<< "$text" ||
    fail "--host names not in subjectAltName: $text"
openssl x509 -in named/client-cert.pem -noout -subject | grep -q "CN = node-7" ||
    fail "--client-cn not used"
ok "--host and --client-cn"

# --- handshakes with the certificates ---------------------------------

# s_server for one connection, with a client certificate required; sets
# $port.  Its stdin stays open (s_server quits at end of input).
start_s_server() {
    openssl s_server -accept 0 -naccept 1 -tls1_3 -cert pki/server-cert.pem \
        -key pki/server-key.pem -CAfile pki/ca-cert.pem -Verify 1 \
        -verify_return_error > s_server.out 2>&1 \
        < <(exec sleep 60 2> /dev/null) &
    local pid=$! i
    on_exit "kill $pid"
    for i in $(seq 100); do
        port=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' s_server.out)
        [ -n "$port" ] && return 0
        sleep 0.1
    done
    fail "s_server did not start: $(cat s_server.out)"
}

if command -v gnutls-cli > /dev/null; then
    start_s_server
    gnutls-cli --x509cafile pki/ca-cert.pem --x509certfile pki/client-cert.pem \
        --x509keyfile pki/client-key.pem -p "$port" localhost \
        < /dev/null > out 2>&1 || fail "gnutls-cli: $(cat out) -- s_server: $(cat s_server.out)"
    grep -q "Handshake was completed" out || fail "gnutls-cli: $(cat out)"
    ok "gnutls-cli (verifying localhost) against s_server (verifying the client)"
fi

start_s_server
openssl s_client -connect "127.0.0.1:$port" -tls1_3 -CAfile pki/ca-cert.pem \
    -verify_return_error -verify_ip 127.0.0.1 -cert pki/client-cert.pem \
    -key pki/client-key.pem < /dev/null > out 2>&1 || fail "s_client: $(cat out)"
grep -q "Verify return code: 0 (ok)" out || fail "s_client: $(cat out)"
ok "s_client (verifying 127.0.0.1) against s_server"

# qemu-nbd reads the directory with qemu's certificate checks (key usage,
# purpose, CA constraints); nbdinfo (libnbd) reads the client side.
if command -v qemu-nbd > /dev/null && command -v nbdinfo > /dev/null; then
    truncate -s 1M disk.raw
    qemu-nbd -k "$T/nbd.sock" -f raw -t --object \
        "tls-creds-x509,id=tls0,dir=$T/pki,endpoint=server,verify-peer=on" \
        --tls-creds tls0 disk.raw > qemu-nbd.out 2>&1 &
    pid=$!
    on_exit "kill $pid"
    for i in $(seq 100); do [ -S nbd.sock ] && break; sleep 0.1; done
    nbdinfo --size "nbds+unix:///?socket=$T/nbd.sock&tls-certificates=$T/pki" \
        > out 2>&1 || fail "nbdinfo over TLS to qemu-nbd: $(cat out) $(cat qemu-nbd.out)"
    [ "$(cat out)" = 1048576 ] || fail "nbdinfo --size: $(cat out)"
    ok "qemu-nbd (tls-creds-x509, verify-peer=on) and nbdinfo use the directory"
fi
