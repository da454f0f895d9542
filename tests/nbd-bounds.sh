#!/usr/bin/env bash
# Bounds against NBD clients that want to hurt (docs/cryptvold.md,
# "Bounds"): a handshake trickled a byte at a time ends at
# nbd-handshake-timeout for the whole handshake; an idle connection ends at
# nbd-idle-timeout; connections above nbd-max-connections(-per-host) are
# closed at once with rate-limited log lines; at a small RLIMIT_NOFILE many
# connections leave the admin socket reachable; pipelined 32 MiB READs whose
# replies are not read keep the daemon's memory under nbd-buffer-total,
# and the buffers are given back once the connections are idle.
source "$(dirname "$0")/lib.sh"

HOSTILE=("$PYTHON" "$SRC_DIR/tests/tools/nbd-hostile.py")
rss_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
wait_file() {
    local i
    for ((i = 0; i < 600; i++)); do [ -e "$1" ] && return 0; sleep 0.05; done
    fail "$2"
}

# --- Deadlines ---------------------------------------------------------------
cvd_start dl --tls off --nbd-handshake-timeout 2 --nbd-idle-timeout 2
"$CRYPTVOL" volume create v --size 8M > /dev/null
secs=$(timeout 30 "${HOSTILE[@]}" trickle "$CVD_NBD" --pause 0.5) ||
    fail "trickling client: not closed within 30 s"
awk -v s="$secs" 'BEGIN { exit !(s >= 1.5 && s < 4) }' ||
    fail "a byte every 0.5 s: closed after $secs s, expected about 2"
grep -q "handshake: not finished within 2 s (nbd-handshake-timeout)" \
    "$CVD_DIR/cryptvold.log" || fail "no log line for the expired handshake"
ok "a handshake trickled a byte every 0.5 s ends at the 2 s deadline ($secs s)"
secs=$(timeout 30 "${HOSTILE[@]}" idle "$CVD_NBD" v) ||
    fail "idle client: not closed within 30 s"
awk -v s="$secs" 'BEGIN { exit !(s >= 1.5 && s < 4) }' ||
    fail "idle client closed after $secs s, expected about 2"
grep -q "no request for 2 s (nbd-idle-timeout)" "$CVD_DIR/cryptvold.log" ||
    fail "no log line for the idle connection"
ok "an idle connection ends after nbd-idle-timeout ($secs s)"
cvd_stop

# --- Connection limits -------------------------------------------------------
PORT=$(free_port)
cvd_start cl --tls off --nbd-allow-anonymous --nbd-listen "127.0.0.1:$PORT" \
    --nbd-max-connections 10 --nbd-max-connections-per-host 4
"$CRYPTVOL" volume create v --size 8M > /dev/null
"${HOSTILE[@]}" many "127.0.0.1:$PORT" --connections 8 --hold 30 \
    > "$T/tcp" &
tcp=$!
on_exit "kill $tcp"
for ((i = 0; i < 200; i++)); do [ -s "$T/tcp" ] && break; sleep 0.05; done
[ "$(cat "$T/tcp")" = "greeted 4 closed 4" ] ||
    fail "8 connections from one address, 4 per host: $(cat "$T/tcp")"
timeout 20 "${HOSTILE[@]}" many "$CVD_NBD" --connections 12 --hold 0 \
    > "$T/unix"
[ "$(cat "$T/unix")" = "greeted 6 closed 6" ] ||
    fail "12 more (unix) with 4 open and 10 at most: $(cat "$T/unix")"
grep -q "refused: 4 connections from 127.0.0.1 already (nbd-max-connections-per-host)" \
    "$CVD_DIR/cryptvold.log" || fail "no log line for the per-host limit"
grep -q "refused: 10 connections already (nbd-max-connections)" \
    "$CVD_DIR/cryptvold.log" || fail "no log line for the total limit"
kill "$tcp"; wait "$tcp" 2>/dev/null || true
sleep 0.3
nbdinfo --size "nbd://127.0.0.1:$PORT/v" > /dev/null ||
    fail "not served once the others are gone"
ok "4 per address and 10 in all, the rest closed at once and logged"
cvd_stop

# --- Descriptors: the admin socket stays reachable ---------------------------
cat > "$T/small-nofile" <<EOF2
#!/bin/sh
ulimit -n 64 && exec "$CRYPTVOLD" "\$@"
EOF2
chmod +x "$T/small-nofile"
CRYPTVOLD=$T/small-nofile cvd_start fd --tls off
grep -q "RLIMIT_NOFILE 64" "$CVD_DIR/cryptvold.log" ||
    fail "the NBD connection limit does not come from RLIMIT_NOFILE 64"
"${HOSTILE[@]}" many "$CVD_NBD" --connections 200 --hold 30 > "$T/many" &
many=$!
on_exit "kill $many"
for ((i = 0; i < 400; i++)); do [ -s "$T/many" ] && break; sleep 0.05; done
[ -s "$T/many" ] || fail "200 connections: no result"
"$CRYPTVOL" volume create w --size 8M > /dev/null ||
    fail "admin socket unreachable with 200 NBD connections ($(cat "$T/many"))"
"$CRYPTVOL" volume list | grep -q '^w' ||
    fail "volume list: $(cat "$T/many")"
lines=$(grep -c "refused: " "$CVD_DIR/cryptvold.log")
[ "$lines" -le 15 ] || fail "$lines log lines for refused connections"
ok "RLIMIT_NOFILE 64, 200 NBD connections ($(cat "$T/many")): admin socket answers, $lines refusal lines"
kill "$many"; wait "$many" 2>/dev/null || true
grep -q "similar lines suppressed" "$CVD_DIR/cryptvold.log" || {
    nbdinfo --size "nbd+unix:///w?socket=$CVD_NBD" > /dev/null 2>&1 || true
    sleep 1.1
    timeout 20 "${HOSTILE[@]}" many "$CVD_NBD" --connections 40 --hold 0 \
        > /dev/null
    grep -q "similar lines suppressed" "$CVD_DIR/cryptvold.log" ||
        fail "rate-limited lines do not say how many were suppressed"
}
ok "rate-limited lines say how many were suppressed"
cvd_stop

# --- Request memory ----------------------------------------------------------
cvd_start mem --tls off --nbd-threads 4 --nbd-buffer-limit 64M \
    --nbd-buffer-total 128M
"$CRYPTVOL" volume create m --size 64M > /dev/null
nbdinfo --size "nbd+unix:///m?socket=$CVD_NBD" > /dev/null
base=$(rss_kib "$CVD_PID" VmRSS)
"${HOSTILE[@]}" flood "$CVD_NBD" m --connections 6 --count 8 \
    --length $((32 << 20)) --hold 3 --ready "$T/ready" \
    --drained "$T/drained" > "$T/flood.out" 2>&1 &
flood=$!
on_exit "kill $flood"
wait_file "$T/ready" "the flood did not start: $(cat "$T/flood.out")"
sleep 2
peak=$(rss_kib "$CVD_PID" VmHWM)
grow=$(( (peak - base) / 1024 ))
[ "$grow" -le $((128 + 48)) ] ||
    fail "6 x 8 pipelined 32 MiB READs, replies unread: RSS grew $grow MiB (bound 128 MiB)"
ok "6 x 8 pipelined 32 MiB READs with unread replies: RSS grew $grow MiB, bound 128 MiB"
wait_file "$T/drained" "replies not all answered: $(cat "$T/flood.out")"
sleep 2
idle=$(( ($(rss_kib "$CVD_PID" VmRSS) - base) / 1024 ))
[ "$idle" -le 24 ] || fail "idle connections still hold $idle MiB"
ok "every reply came; idle connections gave the memory back ($idle MiB above the start)"
wait "$flood" || fail "flood client: $(cat "$T/flood.out")"
cvd_stop
