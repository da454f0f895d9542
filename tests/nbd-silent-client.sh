#!/usr/bin/env bash
# A client that connects and never speaks (or stops in the middle of the
# handshake) is dropped after the handshake timeout (30 s) with a log line,
# instead of holding a thread for ever; one that finished the handshake may
# stay idle as long as it likes.  Meanwhile other clients are served.
source "$(dirname "$0")/lib.sh"

cvd_start n1 --tls off
"$CRYPTVOL" volume create v --size 8M >/dev/null

# silent: connects and reads until the server closes; prints the seconds.
"$PYTHON" - "$CVD_NBD" > "$T/silent" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
t = time.time()
s.settimeout(90)
while s.recv(4096):          # the greeting, then EOF when dropped
    pass
print(int(time.time() - t))
PY
silent=$!
on_exit "kill $silent"

# idle: a finished handshake, then 40 s of silence, then a read.
"$PYTHON" - "nbd+unix:///v?socket=$CVD_NBD" > "$T/idle" 2>&1 <<'PY' &
import nbd, sys, time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
time.sleep(40)
print(len(h.pread(4096, 0)))
h.shutdown()
PY
idle=$!
on_exit "kill $idle"

sleep 2
nbdinfo --size "nbd+unix:///v?socket=$CVD_NBD" > /dev/null || fail "a third client was not served"
wait "$silent" || fail "the silent client's script failed"
secs=$(cat "$T/silent")
[ "$secs" -ge 25 ] && [ "$secs" -le 60 ] || fail "silent client dropped after $secs s, expected about 30"
grep -q "handshake: not finished within 30 s" "$CVD_DIR/cryptvold.log" ||
    fail "no log line for the dropped client"
ok "silent client dropped after $secs s and logged"
wait "$idle" || fail "idle client failed: $(cat "$T/idle")"
[ "$(cat "$T/idle")" = 4096 ] || fail "idle client: $(cat "$T/idle")"
ok "a client idle for 40 s after its handshake is still served"
cvd_stop
