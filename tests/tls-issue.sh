#!/usr/bin/env bash
# cryptvol tls issue: a cluster node's certificate from a tls init CA.
# Its fields as openssl x509 -text shows them (CN, SAN DNS:NAME and each
# --host, serverAuth and clientAuth, CA:FALSE), openssl verify against the
# CA for both purposes, server and client files the same pair, keys 0600,
# a mutual TLS 1.3 handshake between two issued nodes; and the refusals: a
# CA_DIR without ca-key.pem, a key that is not the CA's, a bad name or
# host, existing files (unless --force, which replaces them whole), an
# OUT_DIR holding the CA key.  None of the refused runs leaves a file.
source "$(dirname "$0")/lib.sh"
cd "$T"

CV=("$CRYPTVOL")

"${CV[@]}" tls init ca > /dev/null || fail "tls init"
"${CV[@]}" tls issue ca n1 --name n1 --host 127.0.0.11 --host n1.example \
    > out 2> err || fail "tls issue: $(cat err)"
grep -q "CN=n1" out || fail "tls issue printed: $(cat out)"
[ "$(ls n1 | tr '\n' ' ')" = \
  "ca-cert.pem client-cert.pem client-key.pem server-cert.pem server-key.pem " ] ||
    fail "n1 holds: $(ls -a n1)"
for f in server-key client-key; do
    [ "$(stat -c %a "n1/$f.pem")" = 600 ] ||
        fail "n1/$f.pem is mode $(stat -c %a "n1/$f.pem"), expected 600"
done
cmp -s ca/ca-cert.pem n1/ca-cert.pem || fail "n1/ca-cert.pem is not the CA's"
cmp -s n1/server-cert.pem n1/client-cert.pem &&
    cmp -s n1/server-key.pem n1/client-key.pem ||
    fail "server and client are not the same certificate and key"
[ "$(openssl pkey -in n1/server-key.pem -pubout)" = \
  "$(openssl x509 -in n1/server-cert.pem -noout -pubkey)" ] ||
    fail "server-key.pem is not the key of server-cert.pem"
ok "tls issue: five files, keys 0600, one pair for server and client"

text=$(openssl x509 -in n1/server-cert.pem -noout -text)
grep -qE "Subject: ?CN ?= ?n1$" <<< "$text" || fail "subject is not CN=n1: $text"
grep -qF "DNS:n1, IP Address:127.0.0.11, DNS:n1.example" <<< "$text" ||
    fail "subjectAltName is not DNS:n1 then the hosts: $text"
for want in "CA:FALSE" "TLS Web Server Authentication, TLS Web Client Authentication" \
            "Digital Signature, Key Encipherment" "ecdsa-with-SHA256"; do
    grep -qF "$want" <<< "$text" || fail "node certificate lacks $want: $text"
done
issuer=$(openssl x509 -in n1/server-cert.pem -noout -issuer | sed 's/^issuer=//')
subject=$(openssl x509 -in ca/ca-cert.pem -noout -subject | sed 's/^subject=//')
[ "$issuer" = "$subject" ] || fail "issuer $issuer is not the CA $subject"
for purpose in sslserver sslclient; do
    openssl verify -CAfile ca/ca-cert.pem -purpose $purpose n1/server-cert.pem \
        > out 2>&1 || fail "openssl verify -purpose $purpose: $(cat out)"
done
"${CV[@]}" tls init other > /dev/null
if openssl verify -CAfile other/ca-cert.pem n1/server-cert.pem > out 2>&1; then
    fail "n1's certificate verifies against another CA"
fi
ok "x509 fields: CN, SAN, EKU server+client; openssl verify for both purposes, not against another CA"

# The name given again as a host is not listed twice.
"${CV[@]}" tls issue ca n2 --name n2 --host n2 > /dev/null || fail "tls issue n2"
san=$(openssl x509 -in n2/server-cert.pem -noout -ext subjectAltName | tail -1)
[ "$(echo $san)" = "DNS:n2" ] || fail "n2's subjectAltName: $san"

# Two nodes, each server and client of the other: mutual TLS 1.3 with the
# files as they are (n1 serves, n2 connects with its client pair; s_server
# requires and verifies a client certificate).
PORT=$(free_port)
openssl s_server -accept "127.0.0.1:$PORT" -tls1_3 -naccept 1 -Verify 1 \
    -verify_return_error -CAfile n1/ca-cert.pem -cert n1/server-cert.pem \
    -key n1/server-key.pem -rev > sserver.out 2>&1 &
SPID=$!
on_exit "kill $SPID 2>/dev/null"
for _ in $(seq 50); do
    grep -q ACCEPT sserver.out && break
    sleep 0.1
done
(echo hello; sleep 1) | timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 \
    -verify_return_error -CAfile n2/ca-cert.pem -cert n2/client-cert.pem \
    -key n2/client-key.pem -verify_hostname n1 > sclient.out 2>&1 ||
    fail "s_client with n2's certificate to n1: $(tail -5 sclient.out)"
grep -q "olleh" sclient.out || fail "no answer over mutual TLS: $(tail -5 sclient.out)"
wait $SPID 2>/dev/null
grep -qE "CN ?= ?n2" sserver.out || fail "s_server did not see n2's certificate: $(cat sserver.out)"
ok "mutual TLS 1.3 between two issued nodes (server name n1 checked)"

# ---- refusals: each leaves nothing behind -----------------------------------
expect_fail 2 "needs CA_DIR OUT_DIR" "${CV[@]}" tls issue ca
expect_fail 2 "--name is missing" "${CV[@]}" tls issue ca x
expect_fail 1 "n1/ca-key.pem: No such file or directory \(CA_DIR must be a CA's directory" \
    "${CV[@]}" tls issue n1 x --name n3
expect_fail 1 'node name "-x" is not valid' "${CV[@]}" tls issue ca x --name -x
expect_fail 1 'node name "a,DNS:b" is not valid' "${CV[@]}" tls issue ca x --name a,DNS:b
expect_fail 1 "node name \"$(printf 'a%.0s' $(seq 65))\" is not valid" \
    "${CV[@]}" tls issue ca x --name "$(printf 'a%.0s' $(seq 65))"
expect_fail 1 'host "a,DNS:evil" is not a DNS name' \
    "${CV[@]}" tls issue ca x --name n3 --host a,DNS:evil
[ ! -e x ] || fail "a refused run made x: $(ls -a x)"
mkdir badca && cp ca/ca-key.pem badca/ && cp other/ca-cert.pem badca/
expect_fail 1 "badca: ca-key.pem is not the key of ca-cert.pem" \
    "${CV[@]}" tls issue badca x --name n3
mkdir notca && cp n2/server-cert.pem notca/ca-cert.pem && cp n2/server-key.pem notca/ca-key.pem
expect_fail 1 "notca/ca-cert.pem is not a CA certificate" \
    "${CV[@]}" tls issue notca x --name n3
chmod 644 badca/ca-key.pem
expect_fail 1 "badca/ca-key.pem: mode 0?644 lets group or others read it" \
    "${CV[@]}" tls issue badca x --name n3
[ ! -e x ] || fail "a refused run made x: $(ls -a x)"
ok "refused: CA_DIR without ca-key.pem, key of another CA, not a CA, key readable by others, bad name, bad host"

cp -a n2 again
sum=$(cat again/* | sha256sum)
expect_fail 1 "again/ca-cert.pem already exists; refusing to overwrite it \(--force replaces it\)" \
    "${CV[@]}" tls issue ca again --name n2
rm again/ca-cert.pem
expect_fail 1 "again/server-cert.pem already exists" "${CV[@]}" tls issue ca again --name n2
[ "$(ls -a again | wc -l)" = 6 ] || fail "a refused run changed again/: $(ls -a again)"
expect_fail 1 "tls: ca holds ca-key.pem: a node's directory must not hold the CA's key" \
    "${CV[@]}" tls issue ca ca --name n2 --force
cp -a n2 renew
old=$(openssl x509 -in renew/server-cert.pem -noout -serial)
"${CV[@]}" tls issue ca renew --name n2 --host 10.9.9.9 --force > /dev/null ||
    fail "tls issue --force"
[ "$(openssl x509 -in renew/server-cert.pem -noout -serial)" != "$old" ] ||
    fail "--force did not replace the certificate"
openssl x509 -in renew/client-cert.pem -noout -ext subjectAltName | grep -qF "IP Address:10.9.9.9" ||
    fail "--force: the client certificate is not the new one"
[ "$(ls -a renew | wc -l)" = 7 ] || fail "--force left files behind: $(ls -a renew)"
[ "$(stat -c %a renew/server-key.pem)" = 600 ] || fail "--force: key mode $(stat -c %a renew/server-key.pem)"
openssl verify -CAfile ca/ca-cert.pem renew/server-cert.pem > /dev/null ||
    fail "the renewed certificate does not verify"
ok "refuses to overwrite (and an OUT_DIR with the CA key); --force replaces every file"
