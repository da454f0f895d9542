#!/usr/bin/env bash
# cryptvol node stats (GET /v1/node/stats) and the same counters in
# /metrics, on a single node: an NBD TLS session held open shows as
# TlsCurrTxSw/TlsCurrRxSw 1 in servers.nbd and as
# cryptvol_tls_sessions{server="nbd"} 1; the admin HTTPS session that asks
# shows in servers.admin; failed handshakes (a certificate of another CA)
# count as TlsHandshakeFail for the server they hit; a TLS record changed
# on the wire counts as TlsDecryptError (admin HTTPS, and NBD after
# STARTTLS); the human output is
# /proc/net/tls_stat's ("TlsCurrTxSw<tab>1"), one block per server.
# `node stats NAME` on a single node fails saying why; peer-listen
# without etcd-endpoints or peer-tls-dir is refused at start.
source "$(dirname "$0")/lib.sh"
need curl nbdinfo
PROM="$PYTHON $SRC_DIR/tests/tools/prom-check.py"

"$CRYPTVOL" tls init "$T/pki" > /dev/null
"$CRYPTVOL" tls init "$T/admin" --client-cn ops1 > /dev/null
"$CRYPTVOL" tls init "$T/other" > /dev/null

# ---- peer-listen needs a cluster ------------------------------------------------
mkdir -p "$T/no"
daemon_fails() {
    local pattern=$1 rc=0
    shift
    "$CRYPTVOLD" --foreground --data-dir "$T/no/data" --nbd-listen none \
        --nbd-unix "$T/no/nbd.sock" --admin-socket "$T/no/admin.sock" \
        --tls off "$@" > /dev/null 2> "$T/no/err" || rc=$?
    [ "$rc" != 0 ] || fail "cryptvold $* started"
    grep -qE -- "$pattern" "$T/no/err" || fail "cryptvold $*: '$(cat "$T/no/err")' does not say '$pattern'"
}
"$CRYPTVOL" tls issue "$T/pki" "$T/n1" --name n1 > /dev/null
daemon_fails "peer-listen 127.0.0.1:0 needs etcd-endpoints" \
    --peer-listen 127.0.0.1:0 --peer-tls-dir "$T/n1"
ok "peer-listen without etcd-endpoints is refused at start: $(tail -1 "$T/no/err")"

# ---- one node with NBD over TLS and admin HTTPS --------------------------------------
PORT=$(free_port) APORT=$(free_port)
cvd_start s --node-name n1 --tls require --tls-dir "$T/pki" \
    --nbd-listen "127.0.0.1:$PORT" --admin-tls-dir "$T/admin" \
    --admin-listen "127.0.0.1:$APORT"
"$CRYPTVOL" volume create vol1 --size 4M > /dev/null

stats() { "$CRYPTVOL" node stats --json "$@"; }
# field JSON PATH...: one number from node stats
field() {
    $PYTHON -c 'import json, sys
o = json.load(open(sys.argv[1]))
for k in sys.argv[2:]: o = o[k]
print(o)' "$@"
}
expect() {      # expect FILE want PATH...
    local file=$1 want=$2 got
    shift 2
    got=$(field "$file" "$@") || fail "node stats has no ${*}: $(cat "$file")"
    [ "$got" = "$want" ] || fail "node stats ${*}: $got, expected $want: $(cat "$file")"
}

stats > "$T/j0" || fail "node stats: $(cat "$T/j0")"
expect "$T/j0" n1 node
for s in nbd admin peer; do
    for k in TlsCurrTxSw TlsCurrRxSw TlsTxSw TlsRxSw TlsDecryptError TlsHandshakeFail; do
        expect "$T/j0" 0 servers $s $k
    done
done
for k in noCertificate otherCa plaintext notMember removed; do
    expect "$T/j0" 0 servers peer Refused $k
done
[ "$(field "$T/j0" peers)" = "[]" ] || fail "a single node has peer rows: $(cat "$T/j0")"
ok "node stats --json: nbd, admin, peer at 0, the peer refusals by reason, no peer rows"

# An NBD client holding its TLS session open until told to go.
mkfifo "$T/go"
/usr/bin/python3 - "nbds://127.0.0.1:$PORT/vol1?tls-certificates=$T/pki" "$T/go" "$T/up" <<'EOF' &
import nbd, sys
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
open(sys.argv[3], "w").close()
open(sys.argv[2]).read()
h.shutdown()
EOF
NBDPID=$!
on_exit "kill $NBDPID 2>/dev/null"
for _ in $(seq 100); do [ -e "$T/up" ] && break; sleep 0.05; done
[ -e "$T/up" ] || fail "the NBD client did not connect"
stats > "$T/j1"
expect "$T/j1" 1 servers nbd TlsCurrTxSw
expect "$T/j1" 1 servers nbd TlsCurrRxSw
expect "$T/j1" 1 servers nbd TlsTxSw
curl -s --unix-socket "$CVD_DIR/admin.sock" http://localhost/metrics > "$T/m1"
$PROM value "$T/m1" 'cryptvol_tls_sessions{server="nbd"}' | grep -qx 1 ||
    fail "/metrics: $(grep 'cryptvol_tls_sessions{' "$T/m1")"
echo > "$T/go"
wait $NBDPID || fail "the NBD client failed"
for _ in $(seq 100); do
    stats > "$T/j2"
    [ "$(field "$T/j2" servers nbd TlsCurrTxSw)" = 0 ] && break
    sleep 0.05
done
expect "$T/j2" 0 servers nbd TlsCurrTxSw
expect "$T/j2" 1 servers nbd TlsTxSw
expect "$T/j2" 1 servers nbd TlsRxSw
ok "an NBD TLS session: TlsCurrTxSw/RxSw 1 while open (and in /metrics), TlsTxSw 1 after"

# A handshake with a certificate of another CA fails, on NBD and admin.
if nbdinfo --size "nbds://127.0.0.1:$PORT/vol1?tls-certificates=$T/other" > /dev/null 2>&1; then
    fail "NBD let in a client of another CA"
fi
if curl -s -o /dev/null --cacert "$T/admin/ca-cert.pem" --cert "$T/other/client-cert.pem" \
        --key "$T/other/client-key.pem" "https://localhost:$APORT/v1/node/stats"; then
    fail "admin HTTPS let in a client of another CA"
fi
# The admin session that asks is one of the admin sessions it reports.
ADMIN=(--url "https://localhost:$APORT" --tls-dir "$T/admin")
"$CRYPTVOL" "${ADMIN[@]}" node stats --json > "$T/j3" || fail "node stats over HTTPS: $(cat "$T/j3")"
expect "$T/j3" 1 servers admin TlsCurrTxSw
expect "$T/j3" 1 servers admin TlsTxSw
expect "$T/j3" 1 servers admin TlsHandshakeFail
expect "$T/j3" 1 servers nbd TlsHandshakeFail
expect "$T/j3" 0 servers peer TlsHandshakeFail
ok "failed handshakes counted per server; the asking HTTPS session is in servers.admin"

# A record whose ciphertext changed on the way, on admin HTTPS: it does not
# authenticate, the session ends, TlsDecryptError counts it.
/usr/bin/python3 - "$APORT" "$T/admin" <<'EOF' || fail "the decrypt-error client failed"
import os, socket, ssl, sys
port, d = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(d + "/ca-cert.pem")
ctx.load_cert_chain(d + "/client-cert.pem", d + "/client-key.pem")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
raw = socket.socket(fileno=os.dup(s.fileno()))
raw.sendall(bytes([0x17, 3, 3, 0, 40]) + bytes(range(40)))
raw.settimeout(5)
try:
    while raw.recv(4096):
        pass
except OSError:
    pass
EOF
for _ in $(seq 100); do
    stats > "$T/j4"
    [ "$(field "$T/j4" servers admin TlsDecryptError)" = 1 ] && break
    sleep 0.05
done
expect "$T/j4" 1 servers admin TlsDecryptError
expect "$T/j4" 0 servers nbd TlsDecryptError
# The same on NBD, after NBD_OPT_STARTTLS.
/usr/bin/python3 - "$PORT" "$T/pki" <<'EOF' || fail "the NBD decrypt-error client failed"
import os, socket, ssl, struct, sys
port, d = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
def read(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("server closed during the NBD handshake")
        b += c
    return b
assert read(16) == b"NBDMAGICIHAVEOPT"
read(2)                                             # handshake flags
s.sendall(struct.pack(">I", 3))                     # FIXED_NEWSTYLE | NO_ZEROES
s.sendall(b"IHAVEOPT" + struct.pack(">II", 5, 0))   # NBD_OPT_STARTTLS
magic, opt, typ, n = struct.unpack(">QIII", read(20))
assert (opt, typ) == (5, 1), (opt, typ)             # NBD_REP_ACK
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(d + "/ca-cert.pem")
ctx.load_cert_chain(d + "/client-cert.pem", d + "/client-key.pem")
t = ctx.wrap_socket(s, server_hostname="localhost")
raw = socket.socket(fileno=os.dup(t.fileno()))
raw.sendall(bytes([0x17, 3, 3, 0, 40]) + bytes(range(40)))
raw.settimeout(5)
try:
    while raw.recv(4096):
        pass
except OSError:
    pass
EOF
for _ in $(seq 100); do
    stats > "$T/j4"
    [ "$(field "$T/j4" servers nbd TlsDecryptError)" = 1 ] && break
    sleep 0.05
done
expect "$T/j4" 1 servers nbd TlsDecryptError
expect "$T/j4" 1 servers admin TlsDecryptError
curl -s --unix-socket "$CVD_DIR/admin.sock" http://localhost/metrics > "$T/m2"
$PROM check "$T/m2" || fail "prom-check /metrics"
for want in 'cryptvol_tls_decrypt_errors_total{server="admin"} 1' \
            'cryptvol_tls_decrypt_errors_total{server="nbd"} 1' \
            'cryptvol_tls_handshake_failures_total{server="nbd"} 1' \
            'cryptvol_tls_sessions_established_total{server="nbd"} 2' \
            'cryptvol_tls_sessions{server="peer"} 0' \
            'cryptvol_peer_refused_total{reason="plaintext"} 0' \
            'cryptvol_peer_refused_total{reason="not_member"} 0'; do
    grep -qxF "$want" "$T/m2" || fail "/metrics lacks '$want': $(grep -E 'tls|peer' "$T/m2")"
done
ok "a tampered record counts as TlsDecryptError (admin, NBD), in node stats and /metrics"

# ---- human output: /proc/net/tls_stat's shape ----------------------------------
"$CRYPTVOL" node stats > "$T/h" || fail "node stats: $(cat "$T/h")"
grep -qx "node n1" "$T/h" || fail "human output: $(cat "$T/h")"
for s in nbd admin peer; do
    grep -qx "$s" "$T/h" || fail "no $s block: $(cat "$T/h")"
done
grep -qP '^TlsCurrTxSw {21}\t0$' "$T/h" || fail "not tls_stat's layout: $(cat "$T/h")"
[ "$(grep -cP '^TlsDecryptError {17}\t1$' "$T/h")" = 2 ] || fail "not TlsDecryptError 1 for nbd and admin: $(cat "$T/h")"
grep -qP '^RefusedPlaintext {16}\t0$' "$T/h" || fail "no peer refusals: $(cat "$T/h")"
[ "$(grep -c '^TlsHandshakeFail' "$T/h")" = 3 ] || fail "not one block per server: $(cat "$T/h")"
ok "human output: one tls_stat block per server"

# ---- another node's stats on a single node ---------------------------------------
expect_fail 1 "node stats n2: .*this node is a single node with SQLite metadata \\(start it with --etcd-endpoints" \
    "$CRYPTVOL" node stats n2
expect_fail 1 '"code":"BadRequest"' "$CRYPTVOL" node stats n2 --json
expect_fail 1 'node "-x": not a valid name|unknown option -x' "$CRYPTVOL" node stats -- -x
"$CRYPTVOL" node stats n1 --json > "$T/j5" || fail "node stats n1 (itself): $(cat "$T/j5")"
expect "$T/j5" n1 node
code=$(curl -s -o "$T/out" -w '%{http_code}' --unix-socket "$CVD_DIR/admin.sock" \
       -X POST -d "{}" http://localhost/v1/node/stats)
[ "$code" = 405 ] || fail "POST /v1/node/stats: $code $(cat "$T/out")"
ok "node stats NAME on a single node: refused saying why (itself: its own stats)"
cvd_stop
