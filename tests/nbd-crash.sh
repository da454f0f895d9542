#!/usr/bin/env bash
# kill -9 of cryptvold during writes loses nothing that was acknowledged as
# durable.  tests/tools/nbd-writer.py (python3-libnbd, TLS over the unix
# socket) writes numbered 64 KiB blocks from two connections, one at a time
# or 16 in flight, sends FLUSH every 16 writes and FUA on every 7th, and
# logs (fsync'ed) each block once its FUA reply came back, or the reply to a
# FLUSH sent after its own reply.  The daemon is killed at a
# random moment, started again on the same data dir, and every logged block
# must read back as that write or a later one, sector by sector; a sector
# of garbage (a torn or wrongly encrypted sector) fails too.  Several
# rounds, so later rounds crash over blocks written before earlier crashes;
# a LUKS2 volume (4096-byte sectors) and a LUKS1 one (512-byte sectors).
source "$(dirname "$0")/lib.sh"

"$PYTHON" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
WRITER=("$PYTHON" "$SRC_DIR/tests/tools/nbd-writer.py")

# wait_gone PID SECONDS: waits for a child to exit; fails if it does not.
wait_gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$1" 2>/dev/null && fail "process $1 still running after $2 s"
    return 0
}

# log_lines FILE: lines in FILE (0 if it does not exist).
log_lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }

"$CRYPTVOL" tls init "$T/tls" > /dev/null
cvd_start node --tls require --tls-dir "$T/tls"
"$CRYPTVOL" volume create v2 --size 32M --type luks2 > /dev/null
"$CRYPTVOL" volume create v1 --size 32M --type luks1 > /dev/null

gen=0
# crash_round VOLUME SECTOR DEPTH
crash_round() {
    local vol=$1 sector=$2 depth=$3 before wpid rc=0 i
    local uri="nbds+unix:///$vol?socket=$CVD_NBD&tls-certificates=$T/tls"
    local log=$T/$vol.log
    gen=$((gen + 1))
    before=$(log_lines "$log")
    rm -f "$T/started"
    "${WRITER[@]}" write "$uri" --log "$log" --gen $gen --blocks 256 \
        --threads 2 --flush-every 16 --fua-every 7 --depth "$depth" --started "$T/started" \
        2> "$T/writer.err" &
    wpid=$!
    on_exit "kill -9 $wpid"
    # Let it get going: both connections up and some writes durable.
    for ((i = 0; i < 300; i++)); do
        [ -f "$T/started" ] && [ "$(log_lines "$log")" -ge $((before + 40)) ] && break
        kill -0 $wpid 2>/dev/null || break
        sleep 0.05
    done
    kill -0 $wpid 2>/dev/null ||
        fail "$vol round $gen: the writer stopped before the crash: $(cat "$T/writer.err")"
    [ "$(log_lines "$log")" -ge $((before + 40)) ] ||
        fail "$vol round $gen: fewer than 40 durable writes in 15 s: $(cat "$T/writer.err")"
    sleep "0.$((RANDOM % 8))$((RANDOM % 10))"
    kill -9 "$CVD_PID"
    wait "$CVD_PID" 2>/dev/null || true
    wait_gone $wpid 30
    wait $wpid || rc=$?
    [ "$rc" = 0 ] || fail "$vol round $gen: writer failed ($rc): $(cat "$T/writer.err")"
    grep -q "stopped by" "$T/writer.err" ||
        fail "$vol round $gen: the writer was not cut off by the crash: $(cat "$T/writer.err")"

    cvd_start node --tls require --tls-dir "$T/tls"
    "$CRYPTVOL" volume info "$vol" > /dev/null || fail "$vol: volume info fails after kill -9"
    "${WRITER[@]}" verify "$uri" --log "$log" --blocks 256 --sector "$sector" \
        2> "$T/verify.err" || fail "$vol round $gen: after kill -9: $(cat "$T/verify.err")"
    ok "$vol round $gen (depth $depth): $(( $(log_lines "$log") - before )) durable writes before kill -9, all there after the restart"
}

for depth in 1 16 1; do crash_round v2 4096 $depth; done
for depth in 16 1; do crash_round v1 512 $depth; done

# Both volumes still list and a clean stop works after all that.
"$CRYPTVOL" volume list > "$T/list"
grep -q v1 "$T/list" && grep -q v2 "$T/list" || fail "volume list after the crashes: $(cat "$T/list")"
cvd_stop
ok "kill -9 during writes: every durable write survived every crash"
