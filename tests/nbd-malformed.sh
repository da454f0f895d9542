#!/usr/bin/env bash
# Malformed and edge-case NBD traffic against cryptvold
# (tests/tools/nbd-malformed.py): bad magic and flags, unknown and oversized
# options, bad option payloads, unknown exports, requests past the end,
# oversized reads and writes, unknown commands and flags, 64 pipelined
# requests, 64 concurrent connections, a client gone in the middle of a
# write; then the TLS-required gate.  Afterwards the daemon must still
# serve and stop cleanly.
source "$(dirname "$0")/lib.sh"

# Built with the CLI (ctest runs the same build): missing is a build regression.
[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built: $CRYPTVOLD"
cvd_start plain --tls off
PLAIN_PID=$CVD_PID PLAIN_NBD=$CVD_NBD
passfile "$T/secret" 'nbd malformed traffic'
"$CRYPTVOL" secret create vol1 --from-file "$T/secret" > /dev/null 2> "$T/err" ||
    fail "secret create: $(cat "$T/err")"
"$CRYPTVOL" volume create vol1 --size 64M --secret vol1 > /dev/null

timeout 300 "$PYTHON" "$SRC_DIR/tests/tools/nbd-malformed.py" \
    --unix "$PLAIN_NBD" --export vol1 || fail "malformed traffic (log: $(tail -5 "$CVD_DIR/cryptvold.log"))"
kill -0 "$PLAIN_PID" || fail "cryptvold died"
nbdinfo "nbd+unix:///vol1?socket=$PLAIN_NBD" > /dev/null || fail "not serving afterwards"
grep -q "request magic 0xdeadbeef" "$CVD_DIR/cryptvold.log" ||
    fail "a protocol error is not logged"
ok "still serving after malformed traffic"

"$CRYPTVOL" tls init "$T/tls" > /dev/null
cvd_start tlsreq --tls require --tls-dir "$T/tls"
timeout 120 "$PYTHON" "$SRC_DIR/tests/tools/nbd-malformed.py" \
    --unix "$CVD_NBD" --export vol1 --tls-required || fail "TLS gate"
grep -q "TLS handshake failed" "$CVD_DIR/cryptvold.log" ||
    fail "a failed TLS handshake is not logged"
grep -q "NBD_OPT_STARTTLS: .* bytes came with it" "$CVD_DIR/cryptvold.log" ||
    fail "bytes sent with STARTTLS: no logged reason"
cvd_stop
cvd_stop "$PLAIN_PID"
ok "both daemons stopped cleanly"
