#!/usr/bin/env bash
# cryptvold as a Type=notify service (etc/cryptvold.service): systemd's
# side of the notification protocol is played by tests/tools/notify-listen.py
# on a socket of ours, with a path and with an abstract name.  READY=1
# comes from the main pid only once NBD and the admin socket accept;
# SIGHUP is RELOADING=1 .. READY=1; SIGTERM is STOPPING=1, then exit 0.
# A NOTIFY_SOCKET that cannot be a unix socket is refused at start.
#
# Log priorities for the journal: with JOURNAL_STREAM naming stderr (as
# journald sets it), each line starts with "<N>"; with a JOURNAL_STREAM
# that names another stream (inherited, stderr redirected), plain lines.
source "$(dirname "$0")/lib.sh"

run() {
    local sock=$1 port
    port=$(free_port)
    rm -rf "$T/d"
    "$PYTHON" "$SRC_DIR/tests/tools/notify-listen.py" "$sock" "$port" "$T/d/admin.sock" -- \
        "$CRYPTVOLD" --foreground --data-dir "$T/d" --tls off \
        --nbd-listen "127.0.0.1:$port" --admin-socket "$T/d/admin.sock" \
        --log-file "$T/notify.log" || fail "notification protocol ($sock): see above; log: $(tail -5 "$T/notify.log")"
}
run "$T/notify.sock"
ok "Type=notify with NOTIFY_SOCKET a path"
run "@cryptvol-test-$$"
ok "Type=notify with NOTIFY_SOCKET an abstract name"

expect_fail 1 'NOTIFY_SOCKET "tcp:x" is not a unix socket' \
    env NOTIFY_SOCKET=tcp:x "$CRYPTVOLD" --foreground --data-dir "$T/bad" --tls off --nbd-listen none \
    --nbd-unix "$T/bad.sock"
ok "a NOTIFY_SOCKET that is no unix socket is refused: $(cat "$T/err")"

# The daemon's stderr is the file; JOURNAL_STREAM is computed by a shell
# whose stderr is the same file, then exec'ed into the daemon.
J=$T/journal.log
rm -rf "$T/j"
bash -c 'JOURNAL_STREAM=$(stat -L -c "%d:%i" /proc/self/fd/2) exec "$@"' _ \
    "$CRYPTVOLD" --foreground --data-dir "$T/j" --tls off --nbd-listen none \
    --nbd-unix "$T/j.sock" --admin-socket "$T/j/admin.sock" 2> "$J" &
jpid=$!
on_exit "kill -9 $jpid"
for ((i = 0; i < 200; i++)); do grep -q serving "$J" && break; sleep 0.05; done
kill -TERM $jpid
wait $jpid || fail "cryptvold under JOURNAL_STREAM exited non-zero: $(cat "$J")"
grep -qE '^<6>cryptvold [^ ]+: data in .*, serving$' "$J" ||
    fail "with JOURNAL_STREAM naming stderr, no '<6>' (info) line: $(head -5 "$J")"
grep -qE '^<6>SIGTERM: flushing' "$J" || fail "no '<6>SIGTERM' line: $(cat "$J")"
if grep -qvE '^<[0-7]>' "$J"; then
    fail "a line without a priority prefix under JOURNAL_STREAM: $(grep -vE '^<[0-7]>' "$J" | head -3)"
fi
ok "JOURNAL_STREAM naming stderr: every line has its journal priority ($(head -1 "$J"))"

P=$T/plain.log
rm -rf "$T/j"
JOURNAL_STREAM=1:1 "$CRYPTVOLD" --foreground --data-dir "$T/j" --tls off --nbd-listen none \
    --nbd-unix "$T/j.sock" --admin-socket "$T/j/admin.sock" 2> "$P" &
jpid=$!
on_exit "kill -9 $jpid"
for ((i = 0; i < 200; i++)); do grep -q serving "$P" && break; sleep 0.05; done
kill -TERM $jpid
wait $jpid || fail "cryptvold exited non-zero: $(cat "$P")"
grep -q '^<' "$P" && fail "JOURNAL_STREAM names another stream, yet '<N>' prefixes on stderr: $(head -2 "$P")"
grep -qE '^[0-9-]+T[0-9:.]+ cryptvold info: .*serving' "$P" || fail "no plain timestamped line: $(head -3 "$P")"
ok "JOURNAL_STREAM naming another stream: plain timestamped lines"
