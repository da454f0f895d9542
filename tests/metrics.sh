#!/usr/bin/env bash
# GET /metrics (docs/metrics.md): on the admin socket, over admin HTTPS
# with an admin certificate only, and on --metrics-listen (plain HTTP,
# /metrics alone, no volume names unless metrics-volume-names).  promtool
# (Prometheus's own reader and linter) and tests/tools/prom-check.py (a
# strict reader that also checks histograms against their counts) read
# every scrape.  NBD I/O of known sizes moves the byte, request and
# histogram counters by exactly that (tests/tools/metrics-io.py, which
# scrapes while connected); a second connection adds to the same
# counters; refusals are counted by reason (a wrong key and the unlock
# retry delay too), a failed TLS handshake as one; a KEK rotation shows
# its generation and progress; a deleted volume's series go, and a volume
# made again with its name starts at 0.
source "$(dirname "$0")/lib.sh"
need promtool curl nbdinfo psktool

PROM="$PYTHON $SRC_DIR/tests/tools/prom-check.py"
IO="$PYTHON $SRC_DIR/tests/tools/metrics-io.py"

"$CRYPTVOL" tls init "$T/pki" > /dev/null
"$CRYPTVOL" tls init "$T/admin" --client-cn ops1 > /dev/null
psktool -u alice -p "$T/keys.psk" > /dev/null
psktool -u alice -p "$T/wrong.psk" > /dev/null      # alice, another key
chmod 600 "$T/keys.psk" "$T/wrong.psk"

# ---- configuration errors --------------------------------------------------
mkdir -p "$T/no"
daemon_fails() {
    local want=$1 pattern=$2 rc=0
    shift 2
    "$CRYPTVOLD" --foreground --data-dir "$T/no/data" --nbd-listen none \
        --nbd-unix "$T/no/nbd.sock" --admin-socket "$T/no/admin.sock" \
        --tls off "$@" > /dev/null 2> "$T/no/err" || rc=$?
    [ "$rc" = "$want" ] || fail "cryptvold $* exited $rc, expected $want: $(cat "$T/no/err")"
    grep -qE -- "$pattern" "$T/no/err" || fail "cryptvold $*: '$(cat "$T/no/err")' does not say '$pattern'"
}
daemon_fails 2 '^cryptvold: metrics-volume-names is about metrics-listen, which is not set' \
    --metrics-volume-names
daemon_fails 2 '^cryptvold: metrics-listen "127.0.0.1:99999": port 99999 is out of range' \
    --metrics-listen 127.0.0.1:99999
daemon_fails 2 '^cryptvold: metrics-listen "localhost": expected HOST:PORT' \
    --metrics-listen localhost
ok "metrics configuration errors are refused, naming the key"

# ---- the daemon ------------------------------------------------------------
PORT=$(free_port) MPORT=$(free_port) APORT=$(free_port)
cvd_start m --tls require --tls-dir "$T/pki" --tls-psk "$T/keys.psk" \
    --nbd-listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$MPORT" \
    --admin-tls-dir "$T/admin" --admin-listen "127.0.0.1:$APORT" \
    --rotation-delay-ms 50
LOG=$CVD_DIR/cryptvold.log
grep -q "metrics: http://127.0.0.1:$MPORT/metrics (plain HTTP, without per-volume series)" "$LOG" ||
    fail "no log line for the metrics listener: $(grep metrics "$LOG")"
daemon_fails 1 "metrics-listen 127.0.0.1:$MPORT: Address already in use" \
    --metrics-listen "127.0.0.1:$MPORT"
ok "a metrics-listen address in use: $(grep -o "metrics-listen.*" "$T/no/err")"

# scrape FILE [curl options and URL]: the admin socket by default; the
# answer must be 200 in Prometheus's text format and read as such by both
# readers.
scrape() {
    local out=$1 code
    shift
    [ $# -gt 0 ] || set -- --unix-socket "$CVD_DIR/admin.sock" http://localhost/metrics
    code=$(curl -s -o "$out" -D "$out.head" -w '%{http_code}' "$@") ||
        fail "curl $*: exit $?"
    [ "$code" = 200 ] || fail "GET /metrics ($*): $code $(cat "$out")"
    grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' "$out.head" ||
        fail "GET /metrics ($*): $(grep -i content-type "$out.head")"
    promtool check metrics < "$out" > "$out.lint" 2>&1 ||
        fail "promtool check metrics ($*): $(cat "$out.lint")"
    $PROM check "$out" || fail "prom-check ($*)"
}
delta() { $PROM delta "$1" "$2" "$3" "$4" || fail "${5:-$3}"; }
value() { $PROM value "$1" "$2" || fail "no $2 in $1"; }

# Both readers must bite: a scrape spoilt four ways is refused by one.
scrape "$T/s0"
sed 's/^\(cryptvol_nbd_request_duration_seconds_bucket{op="read",le="0.0001"}\) 0$/\1 7/' \
    "$T/s0" > "$T/bad1"
cmp -s "$T/s0" "$T/bad1" && fail "the spoilt copy is not spoilt"
$PROM check "$T/bad1" 2> "$T/err" && fail "prom-check read a histogram that is not cumulative"
grep -q "buckets not cumulative" "$T/err" || fail "prom-check: $(cat "$T/err")"
grep -v '^# HELP cryptvol_volumes ' "$T/s0" > "$T/bad2"
$PROM check "$T/bad2" 2> /dev/null && fail "prom-check read a family without HELP"
sed 's/^cryptvol_volumes{state="Available"}/cryptvol_volumes{state="Avail"able"}/' "$T/s0" > "$T/bad3"
promtool check metrics < "$T/bad3" > /dev/null 2>&1 && fail "promtool read an unescaped quote"
$PROM check "$T/bad3" 2> /dev/null && fail "prom-check read an unescaped quote"
sed 's/^# TYPE cryptvol_nbd_attaches_total counter/# TYPE cryptvol_nbd_attaches_total gauge/' "$T/s0" > "$T/bad4"
promtool check metrics < "$T/bad4" > /dev/null 2>&1 && fail "promtool took a gauge named *_total"
ok "promtool and prom-check read the scrape, and refuse it spoilt"

# ---- NBD I/O of known sizes --------------------------------------------------
"$CRYPTVOL" cluster encryption enable --kek-protection software > /dev/null
"$CRYPTVOL" volume create vol1 --size 8M > /dev/null
"$CRYPTVOL" volume create vol2 --size 4M > /dev/null
# vol2 is for someone else: our client certificate is refused it.
"$CRYPTVOL" volume access vol2 --allow cn:someone-else > /dev/null
URI="nbds://127.0.0.1:$PORT/vol1?tls-certificates=$T/pki"
scrape "$T/s1"
$IO --uri "$URI" --admin "$CVD_DIR/admin.sock" --volume vol1 --size $((8 << 20)) ||
    fail "metrics-io"
scrape "$T/s2"
# A second connection adds to the same counters (they outlive connections).
/usr/bin/python3 - "$URI" <<'EOF' || fail "second connection"
import nbd, sys
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
h.pwrite(b"z" * 12288, 1 << 20)
h.shutdown()
EOF
scrape "$T/s3"
W1=$(( 4096 + 4096 + 65536 + (1 << 20) + 512 ))
delta "$T/s1" "$T/s3" 'cryptvol_volume_written_bytes_total{volume="vol1"}' $((W1 + 12288)) \
    "bytes written over two connections"
delta "$T/s1" "$T/s3" 'cryptvol_volume_requests_total{volume="vol1",op="write"}' 6
delta "$T/s1" "$T/s3" 'cryptvol_nbd_request_duration_seconds_count{op="write"}' 6
delta "$T/s1" "$T/s3" 'cryptvol_volume_attaches_total{volume="vol1"}' 2
delta "$T/s1" "$T/s3" 'cryptvol_nbd_attaches_total' 2
delta "$T/s1" "$T/s3" 'cryptvol_volume_requests_total{volume="vol2",op="write"}' 0
ok "counters of vol1 add up over two connections: $W1 + 12288 bytes written"

# ---- refusals and TLS handshake failures ---------------------------------------
refused() {
    if nbdinfo --size "$2" > "$T/out" 2> "$T/err"; then
        fail "$1 was let in: $(cat "$T/out")"
    fi
}
refused "a plaintext client (TLS required)" "nbd://127.0.0.1:$PORT/vol1"
refused "a client not on vol2's access list" "nbds://127.0.0.1:$PORT/vol2?tls-certificates=$T/pki"
refused "a client asking for a volume that does not exist" \
    "nbds://127.0.0.1:$PORT/nope?tls-certificates=$T/pki"
refused "a client with the wrong PSK" \
    "nbds://alice@127.0.0.1:$PORT/vol1?tls-psk-file=$T/wrong.psk"
scrape "$T/s4"
delta "$T/s3" "$T/s4" 'cryptvol_nbd_refusals_total{reason="tls_required"}' 1
delta "$T/s3" "$T/s4" 'cryptvol_nbd_refusals_total{reason="access"}' 1
delta "$T/s3" "$T/s4" 'cryptvol_nbd_refusals_total{reason="no_such_volume"}' 1
delta "$T/s3" "$T/s4" 'cryptvol_nbd_refusals_total{reason="unauthenticated"}' 0
delta "$T/s3" "$T/s4" 'cryptvol_tls_handshake_failures_total{server="nbd"}' 1
delta "$T/s3" "$T/s4" 'cryptvol_tls_sessions_established_total{server="nbd"}' 2
delta "$T/s3" "$T/s4" 'cryptvol_nbd_attaches_total' 0
delta "$T/s3" "$T/s4" 'cryptvol_nbd_connections_accepted_total' 4
ok "refusals counted by reason (tls_required, access, no_such_volume), a failed TLS handshake as one"

# ---- admin HTTPS: an admin certificate, and nothing else -------------------------
scrape "$T/h1" --cacert "$T/admin/ca-cert.pem" --cert "$T/admin/client-cert.pem" \
    --key "$T/admin/client-key.pem" "https://localhost:$APORT/metrics"
value "$T/h1" 'cryptvol_volume_attaches_total{volume="vol1"}' > /dev/null
if curl -s -o /dev/null --cacert "$T/admin/ca-cert.pem" --cert "$T/pki/client-cert.pem" \
        --key "$T/pki/client-key.pem" "https://localhost:$APORT/metrics"; then
    fail "admin HTTPS gave /metrics to an NBD client certificate"
fi
scrape "$T/s5"
delta "$T/s4" "$T/s5" 'cryptvol_tls_handshake_failures_total{server="admin"}' 1
delta "$T/s4" "$T/s5" 'cryptvol_tls_sessions_established_total{server="admin"}' 1
ok "admin HTTPS serves /metrics to an admin certificate only"

# ---- the plain listener --------------------------------------------------------
scrape "$T/p1" "http://127.0.0.1:$MPORT/metrics"
$PROM absent "$T/p1" 'volume=' || fail "the plain listener shows volume names"
[ "$(value "$T/p1" 'cryptvol_nbd_refusals_total{reason="access"}')" = \
  "$(value "$T/s5" 'cryptvol_nbd_refusals_total{reason="access"}')" ] ||
    fail "the plain listener's refusals differ from the admin socket's"
value "$T/p1" 'cryptvol_volumes{state="Available"}' | grep -qx 2 ||
    fail "the plain listener does not count the 2 volumes"
code=$(curl -s -o "$T/out" -w '%{http_code}' "http://127.0.0.1:$MPORT/v1/volumes")
[ "$code" = 404 ] && grep -q "serves /metrics only" "$T/out" ||
    fail "GET /v1/volumes on the metrics listener: $code $(cat "$T/out")"
code=$(curl -s -o "$T/out" -w '%{http_code}' -X POST -d '{}' "http://127.0.0.1:$MPORT/metrics")
[ "$code" = 405 ] || fail "POST /metrics on the metrics listener: $code $(cat "$T/out")"
code=$(curl -s -o /dev/null -w '%{http_code}' -I "http://127.0.0.1:$MPORT/metrics")
[ "$code" = 200 ] || fail "HEAD /metrics: $code"
code=$(curl -s -o "$T/out" -w '%{http_code}' -X DELETE --unix-socket "$CVD_DIR/admin.sock" \
    http://localhost/metrics)
[ "$code" = 405 ] || fail "DELETE /metrics on the admin socket: $code $(cat "$T/out")"
ok "metrics-listen: /metrics without volume names; 404 elsewhere, 405 for POST"

# ---- KEK rotation --------------------------------------------------------------
scrape "$T/k0"
value "$T/k0" cryptvol_kek_generation | grep -qx 1 || fail "KEK generation before the rotation"
value "$T/k0" 'cryptvol_cluster_encryption{state="Enabled"}' | grep -qx 1 ||
    fail "cluster encryption not shown Enabled"
"$CRYPTVOL" cluster kek rotate --no-wait > /dev/null
kek() { curl -s "http://127.0.0.1:$MPORT/metrics" > "$T/k"; $PROM value "$T/k" "$1"; }
for ((i = 0; i < 500; i++)); do
    [ "$(kek 'cryptvol_kek_rotation_state{state="DistributingKEK"}')" = 1 ] && break
    sleep 0.01
done
[ "$(kek cryptvol_kek_rotation_target_generation)" = 2 ] ||
    fail "no rotation to generation 2 shown: $(grep kek_rotation "$T/k")"
for ((i = 0; i < 500; i++)); do
    [ "$(kek 'cryptvol_kek_rotation_state{state="NoRotation"}')" = 1 ] && break
    sleep 0.02
done
scrape "$T/k1" "http://127.0.0.1:$MPORT/metrics"
for s in "cryptvol_kek_generation 2" "cryptvol_kek_rotation_volumes 2" \
         "cryptvol_kek_rotation_volumes_done 2" "cryptvol_kek_rotation_volumes_failed 0" \
         'cryptvol_kek_rotation_state{state="NoRotation"} 1'; do
    grep -qxF "$s" "$T/k1" || fail "after the rotation, no line '$s': $(grep kek "$T/k1")"
done
ok "KEK rotation: target generation shown while distributing; 2 of 2 volumes re-wrapped, generation 2"

# ---- delete -------------------------------------------------------------------
"$CRYPTVOL" volume delete vol1 > /dev/null
scrape "$T/d1"
$PROM absent "$T/d1" 'volume="vol1"' || fail "vol1's series outlived its delete"
value "$T/d1" 'cryptvol_volume_attaches_total{volume="vol2"}' > /dev/null
"$CRYPTVOL" volume create vol1 --size 4M > /dev/null
scrape "$T/d2"
for s in 'cryptvol_volume_written_bytes_total{volume="vol1"}' \
         'cryptvol_volume_attaches_total{volume="vol1"}'; do
    [ "$(value "$T/d2" "$s")" = 0 ] || fail "a new vol1 starts with $s at $(value "$T/d2" "$s")"
done
ok "a deleted volume's series go; a new one of the same name starts at 0"
value "$T/d2" cryptvol_audit_write_failures_total | grep -qx 0 ||
    fail "audit write failures without a failure"
cvd_stop

# ---- metrics-volume-names ----------------------------------------------------------
cvd_start m --tls require --tls-dir "$T/pki" --nbd-listen "127.0.0.1:$PORT" \
    --metrics-listen "127.0.0.1:$MPORT" --metrics-volume-names
grep -q "metrics-listen 127.0.0.1:$MPORT: metrics-volume-names is on: volume names are shown to anyone who can connect" \
    "$CVD_DIR/cryptvold.log" || fail "no warning for metrics-volume-names"
scrape "$T/n1" "http://127.0.0.1:$MPORT/metrics"
value "$T/n1" 'cryptvol_volume_written_bytes_total{volume="vol2"}' | grep -qx 0 ||
    fail "metrics-volume-names: no per-volume series (or counters kept over a restart)"
ok "metrics-volume-names: the plain listener shows the per-volume series, with a warning"
cvd_stop

# ---- refusals at unlock: a wrong key, then the unlock retry delay --------------
cvd_start w --tls off --unlock-retry-delay 60 --nbd-max-connections 1
passfile "$T/pw1" "the first value"
passfile "$T/pw2" "another value"
"$CRYPTVOL" secret create s1 --from-file "$T/pw1" > /dev/null
"$CRYPTVOL" volume create w1 --size 4M --secret s1 > /dev/null 2>&1
"$CRYPTVOL" secret update s1 --from-file "$T/pw2" > /dev/null 2>&1 ||
    fail "secret update: $("$CRYPTVOL" secret update s1 --from-file "$T/pw2" 2>&1)"
scrape "$T/w0"
refused "a volume whose secret opens no keyslot" "nbd+unix:///w1?socket=$CVD_NBD"
refused "the same volume again, within unlock-retry-delay" "nbd+unix:///w1?socket=$CVD_NBD"
scrape "$T/w1"
delta "$T/w0" "$T/w1" 'cryptvol_nbd_refusals_total{reason="wrong_key"}' 1
delta "$T/w0" "$T/w1" 'cryptvol_nbd_refusals_total{reason="unavailable"}' 1
delta "$T/w0" "$T/w1" 'cryptvol_volume_attaches_total{volume="w1"}' 0
ok "refusals at unlock: wrong_key, then unavailable (unlock-retry-delay)"

# One connection held in the handshake fills nbd-max-connections 1.
$PYTHON -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
time.sleep(30)' "$CVD_NBD" &
HOLDER=$!
on_exit "kill $HOLDER"
for ((i = 0; i < 250; i++)); do
    scrape "$T/c0"
    [ "$(value "$T/c0" cryptvol_nbd_connections)" = 1 ] && break
    sleep 0.02
done
[ "$(value "$T/c0" cryptvol_nbd_connections)" = 1 ] || fail "the held connection is not counted"
refused "a connection over nbd-max-connections" "nbd+unix:///w1?socket=$CVD_NBD"
scrape "$T/c1"
delta "$T/c0" "$T/c1" 'cryptvol_nbd_refusals_total{reason="connection_limit"}' 1
delta "$T/c0" "$T/c1" 'cryptvol_nbd_connections_accepted_total' 0
kill "$HOLDER"
ok "a connection over nbd-max-connections: refused as connection_limit"
cvd_stop
