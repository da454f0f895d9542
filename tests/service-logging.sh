#!/usr/bin/env bash
# Where cryptvold's log goes (docs/cryptvold.md, "Logging"):
#  * --log-file FILE, detached: every line in FILE, none on the terminal;
#    after logrotate's rename and SIGHUP the next lines go to a new FILE
#    and none to the renamed one.
#  * Detached without --log-file (syslog): the terminal it was started
#    from gets nothing after it is ready, and is let go: a $(...) around
#    the start returns although the daemon goes on.
#  * A log file that cannot be opened is refused before detaching, on the
#    terminal, naming it.
#  * In the foreground with --log-file, warnings at start are also shown
#    on stderr, and nothing else.
source "$(dirname "$0")/lib.sh"

daemon() {   # daemon DIR [options...]: detached; stdout/stderr as given
    local dir=$1
    shift
    "$CRYPTVOLD" --data-dir "$dir/data" --nbd-listen none --nbd-unix "$dir/nbd.sock" \
        --admin-socket "$dir/admin.sock" --tls off --pid-file "$dir/pid" \
        --pbkdf pbkdf2 --pbkdf-iterations 1000 "$@"
}
export -f daemon    # for timeout bash -c, which bounds a start that hangs
export CRYPTVOLD
wait_gone() {
    local i
    for ((i = 0; i < 150; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    fail "cryptvold $1 still running 15 s after SIGTERM"
}
# wait_line FILE PATTERN: until FILE has a line matching PATTERN (5 s).
wait_line() {
    local i
    for ((i = 0; i < 100; i++)); do
        grep -qE -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "no line matching '$2' in $1: $(tail -3 "$1" 2>/dev/null)"
}

# ---- detached, --log-file, logrotate -------------------------------------
A=$T/a
mkdir -p "$A"
timeout 20 bash -c '"$@" > "'"$A"'/out" 2> "'"$A"'/err" < /dev/null' _ \
    daemon "$A" --log-file "$A/cryptvold.log" ||
    fail "detached start with --log-file failed: $(cat "$A/err")"
pid=$(cat "$A/pid")
on_exit "kill -9 $pid"
grep -q 'serving$' "$A/cryptvold.log" || fail "no 'serving' line in the log file: $(cat "$A/cryptvold.log")"
CRYPTVOL_SOCKET=$A/admin.sock "$CRYPTVOL" volume create before --size 8M > /dev/null
mv "$A/cryptvold.log" "$A/cryptvold.log.1"         # what logrotate does
kill -HUP "$pid"
wait_line "$A/cryptvold.log" 'SIGHUP: log file .* reopened'
CRYPTVOL_SOCKET=$A/admin.sock "$CRYPTVOL" volume create after --size 8M > /dev/null
nbdinfo --size "nbd+unix:///after?socket=$A/nbd.sock" > /dev/null
wait_line "$A/cryptvold.log" 'nbd: .*disconnected'
grep -q 'after' "$A/cryptvold.log" || fail "the new log file lacks the lines after SIGHUP: $(cat "$A/cryptvold.log")"
grep -q 'disconnected' "$A/cryptvold.log.1" &&
    fail "the renamed log file still got lines after SIGHUP: $(grep disconnected "$A/cryptvold.log.1")"
grep -q 'serving$' "$A/cryptvold.log.1" || fail "the renamed file lost its lines"
[ "$(stat -c %a "$A/cryptvold.log")" = 600 ] || fail "new log file mode $(stat -c %a "$A/cryptvold.log"), expected 600"
kill -TERM "$pid"
wait_gone "$pid"
wait_line "$A/cryptvold.log" 'SIGTERM: flushing'
[ ! -s "$A/err" ] || fail "a detached daemon with --log-file wrote to its stderr: $(cat "$A/err")"
[ ! -s "$A/out" ] || fail "a detached daemon wrote to its stdout: $(cat "$A/out")"
ok "detached with --log-file: all lines there, none on stderr; renamed + SIGHUP: new lines in a new file (0600)"

# ---- detached without a log file -----------------------------------------
B=$T/b
mkdir -p "$B"
# A pipe as the "terminal": its reader ends only when every writer closed
# it, so a daemon that keeps its stdout or stderr keeps the reader alive.
{ daemon "$B" 2>&1 < /dev/null; echo "exit $?"; } | cat > "$B/pipe.out" &
reader=$!
for ((i = 0; i < 200; i++)); do
    kill -0 "$reader" 2>/dev/null || break
    sleep 0.05
done
[ -f "$B/pid" ] && on_exit "kill -9 $(cat "$B/pid")"
if kill -0 "$reader" 2>/dev/null; then
    [ -f "$B/pid" ] && kill -9 "$(cat "$B/pid")"
    fail "detached without --log-file: 10 s after the start the daemon still holds the caller's stdout/stderr: $(cat "$B/pipe.out")"
fi
grep -qx 'exit 0' "$B/pipe.out" || fail "detached start without --log-file failed: $(cat "$B/pipe.out")"
pid=$(cat "$B/pid")
kill -0 "$pid" || fail "detached daemon not running"
ok "detached without --log-file: the start returns and lets its stdout/stderr go"
# The same with stderr a file, which it could keep writing to.
kill -TERM "$pid"; wait_gone "$pid"
daemon "$B" 2> "$B/err" < /dev/null || fail "second detached start failed: $(cat "$B/err")"
pid=$(cat "$B/pid")
on_exit "kill -9 $pid"
before=$(stat -c %s "$B/err")
kill -HUP "$pid"                                    # logs "SIGHUP: TLS is off"
CRYPTVOL_SOCKET=$B/admin.sock "$CRYPTVOL" volume create v --size 8M > /dev/null
nbdinfo --size "nbd+unix:///v?socket=$B/nbd.sock" > /dev/null
kill -TERM "$pid"
wait_gone "$pid"
[ "$(stat -c %s "$B/err")" = "$before" ] ||
    fail "a detached daemon kept writing to the stderr it was started with: $(tail -c +$((before + 1)) "$B/err" | head -3)"
ok "detached without --log-file: nothing on the starting stderr after ready ($before bytes before)"

# ---- refusals and the foreground -----------------------------------------
C=$T/c
mkdir -p "$C"
expect_fail 1 "log file $T/no/such/dir/x.log: No such file or directory" \
    daemon "$C" --log-file "$T/no/such/dir/x.log"
[ ! -e "$C/pid" ] && [ ! -e "$C/admin.sock" ] || fail "a refused log file left a pid file or socket"
ok "an unopenable log file is refused on the terminal: $(cat "$T/err")"

port=$(free_port)
"$CRYPTVOLD" --foreground --data-dir "$C/data" --nbd-listen "127.0.0.1:$port" \
    --admin-socket "$C/admin.sock" --tls off --log-file "$C/fg.log" 2> "$C/fg.err" &
pid=$!
on_exit "kill -9 $pid"
wait_line "$C/fg.log" 'serving$'
kill -HUP "$pid"
wait_line "$C/fg.log" 'SIGHUP: TLS is off'
kill -TERM "$pid"
wait "$pid" || fail "foreground daemon exited non-zero: $(cat "$C/fg.err")"
grep -q 'warning: nbd: --tls off on 127.0.0.1' "$C/fg.err" ||
    fail "the --tls off warning at start is not on stderr: $(cat "$C/fg.err")"
grep -q 'warning: nbd: --tls off on 127.0.0.1' "$C/fg.log" || fail "the warning is not in the log file"
[ "$(wc -l < "$C/fg.err")" = 1 ] || fail "stderr has more than the start's warning: $(cat "$C/fg.err")"
ok "foreground with --log-file: the start's warning on stderr too, nothing else there"
