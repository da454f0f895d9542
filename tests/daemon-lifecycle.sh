#!/usr/bin/env bash
# cryptvold as a process: configuration, refusals, signals, detaching.
#
#  * --config FILE: "key = value" lines with the long flag names; a flag on
#    the command line wins over the file.
#  * Bad configuration: an unknown key exits 2 with one line naming
#    FILE:LINE; a bad value and a missing file fail with one line too;
#    --tls require (also the default) without credentials is refused with a
#    message that says what is missing.  None of them leaves a socket.
#  * The pid file is written and removed.
#  * SIGTERM with clients connected (one writing, one idle) exits 0, and
#    every write that was answered is there after a restart.
#  * SIGHUP reloads certificates and PSKs: new connections get the new
#    server certificate (the new CA verifies it, the old one no longer
#    does) and the new PSK (the old key no longer works), a connection made
#    before keeps working, a broken set keeps the old credentials.
#  * Without --foreground the daemon detaches and the command returns 0
#    once the daemon serves; a start that fails returns non-zero and says
#    why on stderr.
source "$(dirname "$0")/lib.sh"

"$PYTHON" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
command -v psktool > /dev/null || skip "psktool (gnutls-bin) is not installed"
WRITER=("$PYTHON" "$SRC_DIR/tests/tools/nbd-writer.py")

# wait_for_socket PATH PID: until PATH is a socket (10 s); fails if PID dies.
wait_for_socket() {
    local i
    for ((i = 0; i < 200; i++)); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || fail "cryptvold exited while starting: $(tail -5 "$T/cfg.log")"
        sleep 0.05
    done
    fail "no socket $1 after 10 s"
}
# log_lines: how many lines the running daemon's log has, so wait_log can
# look only at what comes after (the log already holds earlier reloads').
log_lines() { wc -l < "$CVD_DIR/cryptvold.log"; }
# wait_log FROM PATTERN SECONDS: until a line after line FROM of the
# daemon's log matches PATTERN (grep -E); fails if none comes in SECONDS
# or the daemon dies.
wait_log() {
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        tail -n "+$(($1 + 1))" "$CVD_DIR/cryptvold.log" | grep -qE -- "$2" && return 0
        kill -0 "$CVD_PID" 2>/dev/null || fail "cryptvold died waiting for '$2' in its log"
        sleep 0.05
    done
    fail "no '$2' in cryptvold's log $3 s after the signal; new lines: $(tail -n "+$(($1 + 1))" "$CVD_DIR/cryptvold.log")"
}
# wait_exit PID SECONDS: until PID (any process) is gone; fails if not.
wait_exit() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    fail "process $1 still running $2 s after SIGTERM"
}
# expect_refused PATTERN CMD...: CMD must fail with status 1 or 2 within
# 10 s and one line on stderr matching PATTERN.
expect_refused() {
    local pattern=$1 rc=0
    shift
    timeout 10 "$@" > "$T/out" 2> "$T/err" || rc=$?
    [ "$rc" = 1 ] || [ "$rc" = 2 ] || fail "'$*' exited $rc, expected 1 or 2: $(cat "$T/err")"
    grep -qE -- "$pattern" "$T/err" || fail "'$*': stderr '$(cat "$T/err")' does not match '$pattern'"
    [ "$(wc -l < "$T/err")" -le 1 ] || fail "'$*': error is more than one line: $(cat "$T/err")"
}
# hold URI READY GO: a client that connects, creates READY, waits for GO
# to exist, then writes and reads back 4 KiB; exit 0 if that worked.
hold() {
    "$PYTHON" -c '
import nbd, os, sys, time
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.05)
h.pwrite(b"held" * 1024, 4096)
assert h.pread(4096, 4096) == b"held" * 1024
h.shutdown()' "$@"
}

# ---- config file, flags over the file, pid file ------------------------
D=$T/cfgd
mkdir -p "$D"
cat > "$D/cryptvold.conf" <<EOF
# cryptvold for the lifecycle test
data-dir = $D/data
nbd-listen = none
nbd-unix   = $D/from-file.sock
admin-socket=$D/admin.sock
tls = off
log-level = debug
pbkdf = pbkdf2
pbkdf-iterations = 1000   # fast keyslots

foreground = true
pid-file = $D/cryptvold.pid
EOF
"$CRYPTVOLD" --config "$D/cryptvold.conf" --nbd-unix "$D/from-flag.sock" 2>> "$T/cfg.log" &
pid=$!
on_exit "kill -9 $pid"
wait_for_socket "$D/admin.sock" $pid
wait_for_socket "$D/from-flag.sock" $pid
[ ! -e "$D/from-file.sock" ] || fail "nbd-unix from the file was used although --nbd-unix overrides it"
[ -d "$D/data" ] || fail "data-dir from the config file was not used"
kill -0 $pid 2>/dev/null || fail "foreground = true in the config file: the daemon did not stay in the foreground"
[ -f "$D/cryptvold.pid" ] || fail "no pid file $D/cryptvold.pid"
[ "$(cat "$D/cryptvold.pid")" = "$pid" ] || fail "pid file says '$(cat "$D/cryptvold.pid")', the daemon is $pid"
export CRYPTVOL_SOCKET=$D/admin.sock
"$CRYPTVOL" volume create cv --size 8M > /dev/null
[ "$(nbdinfo --size "nbd+unix:///cv?socket=$D/from-flag.sock")" = 8388608 ] ||
    fail "tls = off from the config file: a plaintext client is not served"
ok "config file read (data-dir, tls, foreground, pid-file), --nbd-unix overrides the file"

kill -TERM $pid
rc=0
wait $pid || rc=$?
[ "$rc" = 0 ] || fail "SIGTERM: cryptvold exited $rc"
[ ! -e "$D/cryptvold.pid" ] || fail "pid file left behind after SIGTERM"
ok "SIGTERM exits 0 and removes the pid file"

# A flag overrides a value in the file: the file says tls = off, the flag
# says require, and there are no credentials.
expect_refused "tls-dir|tls-psk" "$CRYPTVOLD" --config "$D/cryptvold.conf" --tls require
ok "--tls require on the command line overrides tls = off in the file"

# ---- bad configuration ---------------------------------------------------
B=$T/bad
mkdir -p "$B"
printf '# a comment\ntls = off\nno-such-key = 1\nnbd-unix = %s\n' "$B/nbd.sock" > "$B/unknown.conf"
expect_fail 2 "unknown\.conf:3.*no-such-key|no-such-key.*unknown\.conf:3" \
    timeout 10 "$CRYPTVOLD" --config "$B/unknown.conf" --foreground --data-dir "$B/data" \
    --admin-socket "$B/admin.sock"
[ ! -e "$B/admin.sock" ] && [ ! -e "$B/nbd.sock" ] || fail "a refused config left a socket"
ok "unknown config key: exit 2, one line naming file:line ($(cat "$T/err"))"

printf 'tls = off\n\ntls = sometimes\n' > "$B/value.conf"
expect_refused "value\.conf:3" timeout 10 "$CRYPTVOLD" --config "$B/value.conf" --foreground \
    --data-dir "$B/data" --nbd-unix "$B/nbd.sock" --admin-socket "$B/admin.sock"
ok "bad config value: refused, one line naming file:line ($(cat "$T/err"))"

expect_refused "$B/missing\.conf" "$CRYPTVOLD" --config "$B/missing.conf" --foreground \
    --data-dir "$B/data" --nbd-unix "$B/nbd.sock" --admin-socket "$B/admin.sock"
ok "missing config file: refused, one line naming it"

expect_fail 2 "no-such-flag" timeout 10 "$CRYPTVOLD" --no-such-flag --foreground \
    --data-dir "$B/data" --nbd-unix "$B/nbd.sock" --admin-socket "$B/admin.sock"
ok "unknown flag: exit 2, one line naming it"

for tls in "--tls require" ""; do
    # shellcheck disable=SC2086
    expect_refused "tls-dir|tls-psk" "$CRYPTVOLD" --foreground --data-dir "$B/data" \
        --nbd-unix "$B/nbd.sock" --admin-socket "$B/admin.sock" $tls
    [ ! -e "$B/admin.sock" ] && [ ! -e "$B/nbd.sock" ] || fail "refused TLS settings left a socket"
done
ok "--tls require (and the default) without credentials refused: $(cat "$T/err")"

# ---- SIGTERM with clients connected ---------------------------------------
cvd_start term --tls off --pid-file "$T/term.pid"
[ "$(cat "$T/term.pid")" = "$CVD_PID" ] || fail "cvd_start: pid file is not the daemon's"
"$CRYPTVOL" volume create tv --size 32M > /dev/null
TURI="nbd+unix:///tv?socket=$CVD_NBD"
"$PYTHON" -c 'import nbd, sys, time
h = nbd.NBD(); h.set_uri_allow_local_file(True); h.connect_uri(sys.argv[1]); open(sys.argv[2], "w").close(); time.sleep(120)' \
    "$TURI" "$T/idle.up" 2> /dev/null &
idle=$!
on_exit "kill -9 $idle"
"${WRITER[@]}" write "$TURI" --log "$T/term.log" --gen 1 --blocks 256 --threads 2 \
    --log-acked 2> "$T/writer.err" &
wpid=$!
on_exit "kill -9 $wpid"
for ((i = 0; i < 200; i++)); do
    [ -f "$T/idle.up" ] && [ -f "$T/term.log" ] && [ "$(wc -l < "$T/term.log")" -ge 100 ] && break
    sleep 0.05
done
[ -f "$T/idle.up" ] || fail "idle client did not connect"
# SIGTERM must come while writes are being answered: with few or none
# the check below (every answered write kept) would hold by having
# nothing to check.
acked=$(wc -l < "$T/term.log" 2> /dev/null || echo 0)
[ "$acked" -ge 100 ] || fail "only $acked writes answered in 10 s before SIGTERM (at least 100 wanted): $(cat "$T/writer.err")"
kill -0 "$wpid" 2> /dev/null || fail "the writer stopped before SIGTERM: $(cat "$T/writer.err")"
kill -TERM "$CVD_PID"
wait_exit "$CVD_PID" 15
rc=0
wait "$CVD_PID" || rc=$?
[ "$rc" = 0 ] || fail "SIGTERM during writes: cryptvold exited $rc"
[ ! -e "$T/term.pid" ] || fail "pid file left behind after SIGTERM"
rc=0
wait $wpid || rc=$?
[ "$rc" = 0 ] || fail "writer: $(cat "$T/writer.err")"
kill -9 $idle 2>/dev/null || true
cvd_start term --tls off
"${WRITER[@]}" verify "$TURI" --log "$T/term.log" --blocks 256 2> "$T/verify.err" ||
    fail "after SIGTERM: $(cat "$T/verify.err")"
cvd_stop
ok "SIGTERM with a writing and an idle client: exit 0, all $(wc -l < "$T/term.log") answered writes kept"

# ---- SIGHUP reloads certificates and PSKs ----------------------------------
"$CRYPTVOL" tls init "$T/ca1" > /dev/null
"$CRYPTVOL" tls init "$T/ca2" > /dev/null
psktool -u alice -p "$T/psk1" > /dev/null
psktool -u alice -p "$T/psk2" > /dev/null
chmod 600 "$T/psk1" "$T/psk2"
mkdir "$T/live"
cp -p "$T/ca1"/* "$T/live/"
cp -p "$T/psk1" "$T/live.psk"
# Over TCP: libnbd 1.14 checks the server certificate only when it has a
# host name to check it against, which a unix socket URI does not give.
HUP_PORT=$(free_port)
cvd_start hup --tls require --tls-dir "$T/live" --tls-psk "$T/live.psk" \
    --pid-file "$T/hup.pid" --nbd-listen "127.0.0.1:$HUP_PORT"
"$CRYPTVOL" volume create hv --size 8M > /dev/null
uri() { echo "nbds://127.0.0.1:$HUP_PORT/hv?tls-certificates=$1"; }
psk_uri() { echo "nbds://alice@127.0.0.1:$HUP_PORT/hv?tls-psk-file=$1"; }
# works URI: nbdinfo can open it.
works() { nbdinfo --size "$1" > /dev/null 2> "$T/nbdinfo.err"; }

works "$(uri "$T/ca1")" || fail "the first CA does not verify the first server certificate: $(cat "$T/nbdinfo.err")"
! works "$(uri "$T/ca2")" || fail "the second CA verifies a certificate it never signed"
works "$(psk_uri "$T/psk1")" || fail "the first PSK is refused: $(cat "$T/nbdinfo.err")"
! works "$(psk_uri "$T/psk2")" || fail "a PSK the daemon was never given is accepted"

hold "$(uri "$T/ca1")" "$T/held.up" "$T/held.go" 2> "$T/held.err" &
held=$!
on_exit "kill -9 $held"
for ((i = 0; i < 200; i++)); do [ -f "$T/held.up" ] && break; sleep 0.05; done
[ -f "$T/held.up" ] || fail "client before the reload did not connect: $(cat "$T/held.err")"

cp -p "$T/ca2"/* "$T/live/"
cp -p "$T/psk2" "$T/live.psk"
from=$(log_lines)
kill -HUP "$CVD_PID"
wait_log "$from" "SIGHUP: NBD TLS credentials reloaded" 10
works "$(uri "$T/ca2")" || fail "after SIGHUP the new CA does not verify the server: $(cat "$T/nbdinfo.err")"
! works "$(uri "$T/ca1")" || fail "after SIGHUP the old CA still verifies the server: the certificate was not reloaded"
works "$(psk_uri "$T/psk2")" || fail "after SIGHUP the new PSK is refused: $(cat "$T/nbdinfo.err")"
! works "$(psk_uri "$T/psk1")" || fail "after SIGHUP the old PSK is still accepted"
touch "$T/held.go"
rc=0
wait $held || rc=$?
[ "$rc" = 0 ] || fail "a connection made before SIGHUP broke: $(cat "$T/held.err")"
ok "SIGHUP: new connections use the new certificate and PSK, the old ones fail, an old connection keeps working"

# A broken set (a key that is not a key) is refused and the old one stays.
printf 'not a key\n' > "$T/live/server-key.pem"
from=$(log_lines)
kill -HUP "$CVD_PID"
wait_log "$from" "SIGHUP: NBD keeps the old TLS credentials: .*server-key\.pem" 10
! tail -n "+$((from + 1))" "$CVD_DIR/cryptvold.log" | grep -q "TLS credentials reloaded" ||
    fail "a reload with a broken key says it reloaded"
works "$(uri "$T/ca2")" || fail "after a failed reload the working certificate is gone: $(cat "$T/nbdinfo.err")"
works "$(psk_uri "$T/psk2")" || fail "after a failed reload the working PSK is gone: $(cat "$T/nbdinfo.err")"
cvd_stop
[ ! -e "$T/hup.pid" ] || fail "pid file left behind"
ok "SIGHUP with a broken key: the daemon keeps serving with the credentials it had"

# ---- detaching -------------------------------------------------------------
G=$T/bg
mkdir -p "$G"
# A start that fails without --foreground still says why on the terminal
# and exits non-zero, leaving no pid file or socket.
expect_refused "$T/no-such-tls-dir" "$CRYPTVOLD" --data-dir "$G/data" --nbd-listen none \
    --nbd-unix "$G/nbd.sock" --admin-socket "$G/admin.sock" --tls require \
    --tls-dir "$T/no-such-tls-dir" --pid-file "$G/pid"
[ ! -e "$G/pid" ] && [ ! -e "$G/admin.sock" ] && [ ! -e "$G/nbd.sock" ] ||
    fail "a failed detached start left a pid file or socket"
ok "without --foreground a failed start exits non-zero with one line: $(cat "$T/err")"
rc=0
timeout 20 "$CRYPTVOLD" --data-dir "$G/data" --nbd-listen none --nbd-unix "$G/nbd.sock" \
    --admin-socket "$G/admin.sock" --tls off --pid-file "$G/pid" \
    --pbkdf pbkdf2 --pbkdf-iterations 1000 > "$G/out" 2> "$G/err" < /dev/null || rc=$?
[ -f "$G/pid" ] && on_exit "kill -9 $(cat "$G/pid")"
[ "$rc" = 0 ] || fail "cryptvold without --foreground exited $rc (124: did not detach): $(cat "$G/err")"
# Ready when it returned: no waiting here.
[ -S "$G/admin.sock" ] || fail "detached: returned before the admin socket was there"
[ -S "$G/nbd.sock" ] || fail "detached: returned before the NBD socket was there"
[ -f "$G/pid" ] || fail "detached: no pid file"
dpid=$(cat "$G/pid")
kill -0 "$dpid" 2>/dev/null || fail "detached: pid file says $dpid, which is not running"
[ "$(ps -o ppid= -p "$dpid" | tr -d ' ')" != $$ ] || fail "detached: the daemon is still the shell's child"
[ "$(ps -o sid= -p "$dpid" | tr -d ' ')" != "$(ps -o sid= -p $$ | tr -d ' ')" ] ||
    fail "detached: the daemon is still in the shell's session"
CRYPTVOL_SOCKET=$G/admin.sock "$CRYPTVOL" volume create gv --size 8M ||
    fail "detached: the admin API does not answer"
[ "$(nbdinfo --size "nbd+unix:///gv?socket=$G/nbd.sock")" = 8388608 ] || fail "detached: NBD does not serve"
kill -TERM "$dpid"
wait_exit "$dpid" 15
[ ! -e "$G/pid" ] || fail "detached: pid file left behind after SIGTERM"
ok "without --foreground: returns 0 once serving, detached (pid $dpid, own session), SIGTERM ends it"
