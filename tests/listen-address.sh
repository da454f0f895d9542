#!/usr/bin/env bash
# --nbd-listen and --admin-listen: a port outside 0..65535 (which
# getaddrinfo would take modulo 65536, binding another port than the one
# logged) or not a number is refused at start with one line naming the
# option and the port, leaving no socket; the log names the address the
# kernel bound, also for port 0, and that address serves.
source "$(dirname "$0")/lib.sh"

"$CRYPTVOL" tls init "$T/tls" > /dev/null
B=$T/bad
mkdir -p "$B"
# refused PATTERN FLAGS...: cryptvold must exit 1 or 2 within 10 s with one
# line matching PATTERN and no socket.
refused() {
    local pattern=$1 rc=0
    shift
    timeout 10 "$CRYPTVOLD" --foreground --data-dir "$B/data" --nbd-unix "$B/nbd.sock" \
        --admin-socket "$B/admin.sock" --tls on --tls-dir "$T/tls" --admin-allow cn:cryptvol-client \
        "$@" > "$T/out" 2> "$T/err" || rc=$?
    [ "$rc" = 1 ] || [ "$rc" = 2 ] || fail "cryptvold $* exited $rc, expected 1 or 2: $(cat "$T/err")"
    grep -qE -- "$pattern" "$T/err" || fail "cryptvold $*: stderr '$(cat "$T/err")' does not match '$pattern'"
    [ "$(wc -l < "$T/err")" -le 1 ] || fail "cryptvold $*: more than one line: $(cat "$T/err")"
    [ ! -e "$B/admin.sock" ] && [ ! -e "$B/nbd.sock" ] || fail "cryptvold $*: refused but left a socket"
}

refused 'nbd-listen "127\.0\.0\.1:99999": port 99999 is out of range \(0 to 65535' \
    --nbd-listen 127.0.0.1:99999
refused 'nbd-listen "\[::1\]:65536": port 65536 is out of range' --nbd-listen '[::1]:65536'
refused 'nbd-listen "127\.0\.0\.1:10809x": port "10809x" is not a number' \
    --nbd-listen 127.0.0.1:10809x
refused 'nbd-listen "127\.0\.0\.1:-1": port "-1" is not a number' --nbd-listen 127.0.0.1:-1
refused 'admin-listen "127\.0\.0\.1:70000": port 70000 is out of range' \
    --nbd-listen none --admin-listen 127.0.0.1:70000
ok "out-of-range and non-numeric ports refused: $(cat "$T/err")"

# Port 0: the kernel picks; the log says which, and that one serves.
cvd_start zero --tls on --tls-dir "$T/tls" --admin-allow cn:cryptvol-client \
    --nbd-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
LOG=$CVD_DIR/cryptvold.log
nbd=$(sed -n 's/.*nbd: listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$LOG")
admin=$(sed -n 's|.*admin API: https://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$LOG")
[ -n "$nbd" ] && [ "$nbd" != 0 ] || fail "no bound NBD port in the log: $(grep -i listen "$LOG")"
[ -n "$admin" ] && [ "$admin" != 0 ] || fail "no bound HTTPS port in the log: $(grep -i admin "$LOG")"
! grep -q "listening on 127.0.0.1:0$" "$LOG" || fail "the log names port 0, not the bound one"
"$CRYPTVOL" volume create v --size 4M > /dev/null
nbdinfo --size "nbds://127.0.0.1:$nbd/v?tls-certificates=$T/tls" > "$T/size" ||
    fail "NBD on the logged port $nbd does not serve"
[ "$(cat "$T/size")" = 4194304 ] || fail "NBD on port $nbd: size $(cat "$T/size")"
"$CRYPTVOL" volume list --url "https://localhost:$admin" --tls-dir "$T/tls" | grep -q '^v ' ||
    fail "HTTPS on the logged port $admin does not serve"
ok "port 0: the log names the bound ports (NBD $nbd, HTTPS $admin) and they serve"
cvd_stop
