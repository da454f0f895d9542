#!/bin/bash
# Remote admin clients cannot lock out the local one: the unix socket has
# its own HTTP server, HTTPS connections are limited in total
# (admin-max-connections) and per address (admin-max-per-peer), and when
# the process is out of descriptors the acceptors neither spin nor flood
# the log, and the unix socket is still served from a reserve descriptor.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
command -v curl >/dev/null || skip "curl is not installed"
HOLD="$PYTHON $SRC_DIR/tests/tools/hold-conns.py"

"$CRYPTVOL" tls init "$T/admin" --client-cn ops1 > /dev/null
PORT=$(free_port)
ADMIN_CURL=(--cacert "$T/admin/ca-cert.pem" --cert "$T/admin/client-cert.pem"
            --key "$T/admin/client-key.pem")
URL=https://localhost:$PORT
# hold N [CERT KEY]: N idle connections in the background; sets HOLD_PID.
hold() {
    $HOLD 127.0.0.1 "$PORT" "$@" > "$T/held" &
    HOLD_PID=$!
    on_exit "kill $HOLD_PID"
    for _ in $(seq 300); do [ -s "$T/held" ] && break; sleep 0.05; done
    [ -s "$T/held" ] || fail "hold-conns did not start"
}
unhold() { kill "$HOLD_PID"; wait "$HOLD_PID" 2>/dev/null || true; }
# The unix socket answers within 5 s.
local_ok() {
    timeout 5 "$CRYPTVOL" volume list > /dev/null 2> "$T/err" ||
        fail "$1: the unix socket did not answer: $(cat "$T/err")"
}

cvd_start l --tls off --admin-tls-dir "$T/admin" --admin-listen "127.0.0.1:$PORT" \
    --admin-max-per-peer 8 --admin-max-connections 32
# 200 admin sessions, handshaken and idle: 8 are kept, the rest refused.
hold 200 "$T/admin/client-cert.pem" "$T/admin/client-key.pem"
[ "$(cat "$T/held")" = "held 8" ] || fail "200 sessions from one address: $(cat "$T/held")"
local_ok "200 idle HTTPS sessions"
rc=0; curl -sS "${ADMIN_CURL[@]}" "$URL/v1/status" > /dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "a 9th connection from the same address was served"
unhold
sleep 0.3
curl -sS "${ADMIN_CURL[@]}" "$URL/v1/status" > /dev/null || fail "HTTPS after the sessions closed"
n=$(grep -c 'admin-max-per-peer reached' "$CVD_DIR/cryptvold.log" || true)
[ "$n" -ge 1 ] && [ "$n" -le 10 ] || fail "$n refusal lines for 192 refusals (rate limit 10)"
ok "200 idle HTTPS sessions: 8 kept (per address), the unix socket answers, refusals logged at most 10 times"

# 200 TCP connections that never start TLS.
hold 200
[ "$(cat "$T/held")" = "held 8" ] || fail "200 silent connections: $(cat "$T/held")"
local_ok "200 silent TCP connections"
unhold
ok "200 silent TCP connections: 8 kept, the unix socket answers"
cvd_stop

# ---- out of descriptors ---------------------------------------------------
# A daemon with 64 descriptors and no HTTPS limit to speak of: 100 silent
# connections exhaust it (the rest wait in the listen backlog).
cat > "$T/cryptvold-64" <<SH
#!/bin/sh
ulimit -n 64
exec "$CRYPTVOLD" "\$@"
SH
chmod +x "$T/cryptvold-64"
REAL=$CRYPTVOLD CRYPTVOLD=$T/cryptvold-64
cvd_start e --tls off --admin-tls-dir "$T/admin" --admin-listen "127.0.0.1:$PORT" \
    --admin-max-per-peer 1000 --admin-max-connections 1000
CRYPTVOLD=$REAL
hold 100
before=$(stat -c %s "$CVD_DIR/cryptvold.log")
grep -q 'accept: Too many open files' "$CVD_DIR/cryptvold.log" ||
    { sleep 1; grep -q 'accept: Too many open files' "$CVD_DIR/cryptvold.log"; } ||
    fail "the descriptors were not exhausted: $(tail -n 3 "$CVD_DIR/cryptvold.log")"
local_ok "no descriptors left"
sleep 2
local_ok "no descriptors left, again"
after=$(stat -c %s "$CVD_DIR/cryptvold.log")
[ $((after - before)) -lt 20000 ] || fail "the log grew $((after - before)) bytes in 2 s with no descriptors"
unhold
ok "no descriptors left: the unix socket answers, the log grew $((after - before)) bytes in 2 s"
cvd_stop
