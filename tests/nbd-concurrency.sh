#!/usr/bin/env bash
# Many clients at once, and clients that vanish mid-request.
#
#  * 64 connections (python3-libnbd threads, TLS over the unix socket) are
#    open at the same time, each writes its own region in chunks of random
#    sizes and order, flushes, and reads it back.  Regions are 777777
#    bytes, so neighbours share encryption sectors and every boundary is a
#    read-modify-write racing the neighbour's.
#  * While they run, raw plaintext clients (tests/tools/nbd-raw.py; the
#    daemon runs --tls on, so plaintext is allowed) hang up at every stage:
#    before the greeting is answered, in the middle of an option, in the
#    middle of a request header, and after a WRITE header for 4 MiB with
#    only part of its payload sent.  The daemon stays up, the 64 writers
#    are not disturbed, and the bytes the unfinished WRITEs aimed at keep
#    their old contents (a write whose payload never fully arrived must not
#    be applied), also after a clean restart.
source "$(dirname "$0")/lib.sh"

"$PYTHON" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
CONCURRENT=("$PYTHON" "$SRC_DIR/tests/tools/nbd-concurrent.py")
RAW=("$PYTHON" "$SRC_DIR/tests/tools/nbd-raw.py")
MiB=1048576
GUARD_OFF=$((56 * MiB))         # past the 64 regions (64 * 777777 < 48 MiB)
GUARD_LEN=$((4 * MiB))

# nbd_read URI OFFSET LENGTH: the bytes to stdout.
nbd_read() {
    "$PYTHON" -c '
import nbd, sys
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
sys.stdout.buffer.write(h.pread(int(sys.argv[3]), int(sys.argv[2])))
h.shutdown()' "$@"
}

# aborts: hang-ups at every stage, several of each at once.  Each client
# must get as far as the point where it hangs up (so the handshake works).
aborts() {
    local pids=() p i rc=0
    for ((i = 0; i < 4; i++)); do
        "${RAW[@]}" "$CVD_NBD" c abort-greeting 2>> "$T/raw.err" & pids+=($!)
        "${RAW[@]}" "$CVD_NBD" c abort-option 2>> "$T/raw.err" & pids+=($!)
        "${RAW[@]}" "$CVD_NBD" c abort-header 2>> "$T/raw.err" & pids+=($!)
        "${RAW[@]}" "$CVD_NBD" c abort-write --offset $GUARD_OFF \
            --length $GUARD_LEN --send $((i * 1000000 + 1)) 2>> "$T/raw.err" & pids+=($!)
        "${RAW[@]}" "$CVD_NBD" c abort-write --offset $((GUARD_OFF + 12345)) \
            --length 65536 --send 4095 --pause 0.5 2>> "$T/raw.err" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    [ "$rc" = 0 ] || fail "a raw client did not get to its hang-up: $(cat "$T/raw.err")"
}

check_guard() {
    nbd_read "$PLAIN" $GUARD_OFF $GUARD_LEN > "$T/guard.now" || fail "$1: cannot read the guard region"
    cmp "$T/guard" "$T/guard.now" >&2 ||
        fail "$1: data under the unfinished WRITEs changed (a partial write was applied)"
}

"$CRYPTVOL" tls init "$T/tls" > /dev/null
cvd_start node --tls on --tls-dir "$T/tls"
"$CRYPTVOL" volume create c --size 64M > /dev/null
URI="nbds+unix:///c?socket=$CVD_NBD&tls-certificates=$T/tls"
PLAIN="nbd+unix:///c?socket=$CVD_NBD"

# The raw client itself works: a whole WRITE and READ in plaintext, which
# also puts the guard data in place.
head -c $GUARD_LEN /dev/urandom > "$T/guard"
"${RAW[@]}" "$CVD_NBD" c write-read --data "$T/guard" --offset $GUARD_OFF 2> "$T/raw.err" ||
    fail "raw client write and read back: $(cat "$T/raw.err")"
ok "raw plaintext client: handshake, WRITE, READ, FLUSH, DISC"

# 64 connections, with hang-ups while they run.
"${CONCURRENT[@]}" "$URI" --connections 64 --region 777777 --seed 1 \
    --started "$T/started" 2> "$T/concurrent.err" &
cpid=$!
on_exit "kill -9 $cpid"
for ((i = 0; i < 600; i++)); do
    [ -f "$T/started" ] && break
    kill -0 $cpid 2>/dev/null || break
    sleep 0.05
done
[ -f "$T/started" ] || fail "64 connections were not all up: $(cat "$T/concurrent.err")"
aborts
kill -0 "$CVD_PID" 2>/dev/null || fail "cryptvold died after clients hung up mid-request: $(tail -20 "$CVD_DIR/cryptvold.log")"
rc=0
wait $cpid || rc=$?
[ "$rc" = 0 ] || fail "64 concurrent connections: $(cat "$T/concurrent.err")"
ok "64 concurrent TLS connections wrote and verified their regions while 20 clients hung up mid-way"

kill -0 "$CVD_PID" 2>/dev/null || fail "cryptvold is not running"
check_guard "after hang-ups during the concurrent writes"

# Again with nothing else running, then everything is checked once more.
aborts
kill -0 "$CVD_PID" 2>/dev/null || fail "cryptvold died after clients hung up mid-request (idle)"
check_guard "after hang-ups on an idle daemon"
"${CONCURRENT[@]}" "$URI" --connections 64 --region 777777 --seed 1 --verify-only \
    2> "$T/concurrent.err" || fail "regions after the hang-ups: $(cat "$T/concurrent.err")"
ok "hang-ups on an idle daemon: daemon up, previous data intact"

# Nothing of it was only in memory, and the daemon stops cleanly (no
# connection left half-open keeps it from exiting 0).
cvd_stop
cvd_start node --tls on --tls-dir "$T/tls"
"${CONCURRENT[@]}" "$URI" --connections 64 --region 777777 --seed 1 --verify-only \
    2> "$T/concurrent.err" || fail "regions after a restart: $(cat "$T/concurrent.err")"
check_guard "after a restart"
ok "after a clean restart every region and the guard data read back"
