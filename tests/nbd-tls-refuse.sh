#!/usr/bin/env bash
# Clients that must be refused: plaintext against --tls require, a client
# certificate from another CA (and none at all) when client certificates are
# verified, a wrong PSK, an unknown PSK identity.  After each refusal the
# daemon still serves a good client.  --tls on lets plaintext clients in
# only with --nbd-allow-anonymous (they have no identity).
source "$(dirname "$0")/lib.sh"

"$CRYPTVOL" tls init "$T/pki" >/dev/null
"$CRYPTVOL" tls init "$T/other" >/dev/null
# Trusts our server but presents a client certificate of another CA.
mkdir "$T/foreign" "$T/nocert"
cp "$T/pki/ca-cert.pem" "$T/foreign/"
cp "$T/other/client-cert.pem" "$T/other/client-key.pem" "$T/foreign/"
cp "$T/pki/ca-cert.pem" "$T/nocert/"

psktool -u alice -p "$T/keys.psk" >/dev/null
chmod 600 "$T/keys.psk"
psktool -u alice -p "$T/wrong.psk" >/dev/null      # same name, other key
# An identity the server does not know, with alice's key.
sed 's/^alice:/mallory:/' "$T/keys.psk" > "$T/unknown.psk"
chmod 600 "$T/wrong.psk" "$T/unknown.psk"

port=$(free_port)
cvd_start n1 --tls require --tls-dir "$T/pki" --tls-psk "$T/keys.psk" \
    --tls-verify-peer --nbd-listen "127.0.0.1:$port"
"$CRYPTVOL" volume create vol1 --size 8M >/dev/null

LOG=$CVD_DIR/cryptvold.log
good() {
    nbdinfo --size "nbds://127.0.0.1:$port/vol1?tls-certificates=$T/pki" \
        > "$T/size" 2> "$T/err" || fail "good client refused after $1: $(cat "$T/err")"
    [ "$(cat "$T/size")" = $((8 << 20)) ] || fail "wrong size after $1"
}
# new_log N: the daemon's log lines after its first N.
new_log() { tail -n +$(($1 + 1)) "$LOG"; }
# refused WHAT URI [LOGLINE]: the client must fail; the daemon's log lines
# written since it started must match LOGLINE (an ERE: the server's own
# reason), and none may say a TLS session was set up.  The server logs
# after the client has gone: give it a moment.
refused() {
    local n i
    n=$(wc -l < "$LOG")
    if LIBNBD_DEBUG=1 nbdinfo --size "$2" > "$T/out" 2> "$T/refused"; then
        fail "$1 was let in: $(cat "$T/out")"
    fi
    if [ -n "${3:-}" ]; then
        for ((i = 0; i < 100; i++)); do
            new_log "$n" | grep -Eq "nbd: 127\.0\.0\.1:[0-9]+: $3" && break
            sleep 0.02
        done
        new_log "$n" | grep -Eq "nbd: 127\.0\.0\.1:[0-9]+: $3" ||
            fail "$1: the daemon did not log '$3'; its new lines: $(new_log "$n")"
    fi
    ! new_log "$n" | grep -q ": TLS as " ||
        fail "$1: the daemon set up TLS for it: $(new_log "$n" | grep ': TLS as ')"
    good "$1"
    ok "$1 refused: $(grep -v 'libnbd: debug' "$T/refused" | head -c 200 | tr '\n' ' ')"
}

good "start"
refused "plaintext client against --tls require" "nbd://127.0.0.1:$port/vol1"
grep -q "server error message: TLS is required" "$T/refused" ||
    fail "plaintext refusal does not say TLS is required: $(grep -v 'libnbd: debug' "$T/refused")"
# At most 5 connection errors a second are logged (CVD_RATELIMIT_BURST):
# these are 4.
refused "client certificate from another CA" \
    "nbds://127.0.0.1:$port/vol1?tls-certificates=$T/foreign" \
    "TLS handshake failed: certificate verify failed"
refused "client without a certificate" \
    "nbds://127.0.0.1:$port/vol1?tls-certificates=$T/nocert" \
    "TLS handshake failed: peer did not return a certificate"
refused "wrong PSK" "nbds://alice@127.0.0.1:$port/vol1?tls-psk-file=$T/wrong.psk" \
    "TLS handshake failed: binder does not verify"
# mallory holds alice's key: only a server that looks up the identity it
# was given refuses it.  The server takes no PSK from an unknown identity
# and goes on with its certificate, which a PSK-only client cannot use.
refused "unknown PSK identity with alice's key" \
    "nbds://mallory@127.0.0.1:$port/vol1?tls-psk-file=$T/unknown.psk" \
    "TLS handshake failed: "
nbdinfo --size "nbds://alice@127.0.0.1:$port/vol1?tls-psk-file=$T/keys.psk" \
    > /dev/null || fail "right PSK refused"
ok "right PSK accepted"
cvd_stop

# --tls on: TLS optional.  A plaintext client proves no identity, so it is
# anonymous: refused (with a reason) unless nbd-allow-anonymous is set, and
# the daemon warns that data may cross the network in plaintext.
port=$(free_port)
cvd_start n2 --tls on --tls-dir "$T/pki" --nbd-listen "127.0.0.1:$port"
"$CRYPTVOL" volume create vol2 --size 8M >/dev/null
grep -q "tls on on 127.0.0.1:$port: NBD clients may connect without TLS" \
    "$CVD_DIR/cryptvold.log" || fail "no warning for --tls on"
if LIBNBD_DEBUG=1 nbdinfo --size "nbd://127.0.0.1:$port/vol2" > /dev/null 2> "$T/err"; then
    fail "anonymous plaintext client let in with --tls on"
fi
grep -q "server error message: this server needs an authenticated client" "$T/err" ||
    fail "plaintext refusal does not say why: $(grep -v 'libnbd: debug' "$T/err")"
nbdinfo --size "nbds://127.0.0.1:$port/vol2?tls-certificates=$T/pki" > /dev/null \
    || fail "TLS refused with --tls on"
ok "--tls on: plaintext (anonymous) client refused, TLS client with a certificate served"
cvd_stop
cvd_start n2 --tls on --tls-dir "$T/pki" --nbd-listen "127.0.0.1:$port" --nbd-allow-anonymous
grep -q "nbd-allow-anonymous is on" "$CVD_DIR/cryptvold.log" || fail "no warning for nbd-allow-anonymous"
nbdinfo --size "nbd://127.0.0.1:$port/vol2" > /dev/null || fail "plaintext refused with --nbd-allow-anonymous"
ok "--tls on --nbd-allow-anonymous serves plaintext, with a warning"
cvd_stop
