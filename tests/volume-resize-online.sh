#!/usr/bin/env bash
# Online growth (issue 11): `volume resize` to a larger size while the
# volume is served, as RBD and Longhorn expand.  Clients connected before
# the grow (X.509 and PSK over TCP, held by tests/tools/nbd-hold.py with
# libnbd's strict mode off, so out-of-range requests reach the server)
# keep the size they negotiated: their reads and writes inside it work,
# and requests past it get the errors they got before the grow.  New
# connections get the new size and can write and read the new area.  The
# image stays a LUKS2 header cryptsetup reads ("dynamic" segment) whose
# effective size is the new one.  Shrinking while served is refused naming
# every client (peer and TLS identity); offline it needs --allow-shrink
# (refused without, saying the size now) and works with it.  Sizes past
# the maximum are refused with the range.  LUKS1 and plaintext volumes
# grow online too (plaintext: the new area reads zeros).
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built"
"$PYTHON" -c 'import nbd' 2>/dev/null || fail "python3-libnbd is not installed (scripts/install-deps.sh)"
need nbdinfo psktool cryptsetup curl
HOLD_PY=$SRC_DIR/tests/tools/nbd-hold.py
MiB=1048576

"$CRYPTVOL" tls init "$T/pki" > /dev/null
mkdir -p "$T/psk"
psktool -u alice -p "$T/psk/keys.psk" > /dev/null
chmod 600 "$T/psk/keys.psk"
port=$(free_port)
cvd_start g --tls on --tls-dir "$T/pki" --tls-psk "$T/psk/keys.psk" \
    --nbd-listen "127.0.0.1:$port"
x509() { echo "nbds://127.0.0.1:$port/$1?tls-certificates=$T/pki"; }
psk() { echo "nbds://alice@127.0.0.1:$port/$1?tls-psk-file=$T/psk/keys.psk"; }
unix() { echo "nbd+unix:///$1?socket=$CVD_NBD"; }
json() { "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
CN=$(openssl x509 -in "$T/pki/client-cert.pem" -noout -subject -nameopt RFC2253 |
     sed 's/^subject=//; s/.*\(CN=[^,]*\).*/\1/')

# hold ID URI: a connection held by nbd-hold.py behind two FIFOs; ask ID
# CMD prints its answer (and fails the test if it does not answer).
declare -A HIN HOUT HPID
hold() {
    local id=$1 in out line
    mkfifo "$T/$id.in" "$T/$id.out"
    "$PYTHON" "$HOLD_PY" "$2" < "$T/$id.in" > "$T/$id.out" 2> "$T/$id.err" &
    HPID[$id]=$!
    on_exit "kill ${HPID[$id]}"
    exec {in}> "$T/$id.in" {out}< "$T/$id.out"
    HIN[$id]=$in HOUT[$id]=$out
    read -r -t 20 line <&"$out" || fail "client $id did not connect: $(cat "$T/$id.err")"
    [ "${line%% *}" = connected ] || fail "client $id: $line"
}
ask() {
    local line
    echo "$2" >&"${HIN[$1]}"
    read -r -t 20 line <&"${HOUT[$1]}" || fail "client $1 did not answer '$2': $(cat "$T/$1.err")"
    echo "$line"
}
# expect_ask ID CMD WANT: the answer must be WANT exactly.
expect_ask() {
    local got
    got=$(ask "$1" "$2")
    [ "$got" = "$3" ] || fail "client $1: '$2' answered '$got', expected '$3'"
}
# The errno name a request gets, for comparing before and after the grow;
# "served" when the server answered it without an error.
errno_of() {
    local got
    got=$(ask "$1" "$2")
    case $got in error\ *) got=${got#error }; echo "${got%% *}" ;;
                 *) echo "served" ;; esac
}
# past ID CMD WANT: a request past the client's size must get error WANT.
past() {
    local got
    got=$(errno_of "$1" "$2")
    [ "$got" = "$3" ] || fail "client $1 (negotiated $(ask "$1" size) bytes): '$2' got ${got/served/served without an error}, not $3 (as before the grow): $4"
}
unhold() {
    expect_ask "$1" quit ok
    wait "${HPID[$1]}" || fail "client $1 exited $?: $(cat "$T/$1.err")"
    eval "exec ${HIN[$1]}>&- ${HOUT[$1]}<&-"
}
served() { "$CRYPTVOL" volume info "$1" --json | json 'd["inUse"]'; }

passfile "$T/secret" "online growth test secret"
"$CRYPTVOL" secret create s --from-file "$T/secret" > /dev/null
"$CRYPTVOL" volume create db --size 8M --secret s > /dev/null
# The chain's header file (the LUKS header) and its one layer, whose size
# is the raw image's: header area included (docs/store.md).
IMG=$(vol_dir "$CVD_DIR/data" db)/header
LAYER=$(vol_head "$CVD_DIR/data" db)

# ---- two clients before the grow -----------------------------------------
hold a "$(x509 db)"
hold b "$(psk db)"
expect_ask a size $((8 * MiB))
expect_ask a "write 4096 before-grow fua" ok
expect_ask b "read 4096 11" "ok before-grow"
# Past the end, before the grow: what these clients must keep getting.
read_past=$(errno_of a "read $((8 * MiB)) 4096")
write_past=$(errno_of a "write $((8 * MiB)) past-the-end")
straddle=$(errno_of b "read $((8 * MiB - 2048)) 4096")
for e in "$read_past" "$write_past" "$straddle"; do
    [ "$e" != served ] || fail "a request past the end was served before the grow"
done

"$CRYPTVOL" volume resize db --size 16M > "$T/resize.out" 2>&1 ||
    fail "online grow refused: $(cat "$T/resize.out")"
grep -qx 'volume db: size 16777216 (16.0 MiB)' "$T/resize.out" ||
    fail "resize output: $(cat "$T/resize.out")"
grep -qx '2 connected clients keep the old size until they reconnect' "$T/resize.out" ||
    fail "resize does not say the 2 clients keep the old size: $(cat "$T/resize.out")"
grep -q "volume db: grown online from 8.0 MiB to 16.0 MiB; 2 connected clients keep 8.0 MiB until they reconnect" \
    "$CVD_DIR/cryptvold.log" || fail "the daemon's log does not say the grow: $(tail -5 "$CVD_DIR/cryptvold.log")"
ok "grown from 8 MiB to 16 MiB while served to 2 clients; says they keep the old size"

# ---- the connected keep their size ---------------------------------------
why="a connected client keeps the size it negotiated"
for c in a b; do
    expect_ask $c size $((8 * MiB))
    past $c "read $((8 * MiB)) 4096" "$read_past" "$why"
    past $c "write $((8 * MiB)) past-the-end" "$write_past" "$why"
    past $c "read $((8 * MiB - 2048)) 4096" "$straddle" "$why"
done
expect_ask a "read 4096 11" "ok before-grow"
expect_ask b "write $((8 * MiB - 4096)) old-last-block fua" ok
expect_ask a "read $((8 * MiB - 4096)) 14" "ok old-last-block"
expect_ask a flush ok
ok "connected clients: still 8 MiB; reads and writes inside work; past it $read_past (read), $write_past (write), as before"

# ---- new connections get the new size ------------------------------------
[ "$(nbdinfo --size "$(x509 db)")" = $((16 * MiB)) ] || fail "a new X.509 client does not see 16 MiB"
[ "$(nbdinfo --size "$(psk db)")" = $((16 * MiB)) ] || fail "a new PSK client does not see 16 MiB"
hold c "$(unix db)"
expect_ask c size $((16 * MiB))
expect_ask c "write $((9 * MiB)) new-area fua" ok
expect_ask c "read $((9 * MiB)) 8" "ok new-area"
expect_ask c "write $((16 * MiB - 4096)) new-last-block fua" ok
expect_ask c "read $((16 * MiB - 4096)) 14" "ok new-last-block"
expect_ask c "read 4096 11" "ok before-grow"
expect_ask c "read $((8 * MiB - 4096)) 14" "ok old-last-block"
past c "read $((16 * MiB)) 4096" "$read_past" "past the new end"
# ... and an old client still cannot reach what the new one wrote.
past a "read $((9 * MiB)) 8" "$read_past" "$why"
[ "$("$CRYPTVOL" volume info db --json | json 'd["size"], d["state"]')" = "16777216 Available" ] ||
    fail "volume info after the grow: $("$CRYPTVOL" volume info db)"
ok "new connections (X.509, PSK, unix) get 16 MiB; the new area is written and read back; old data kept"

# The header is what cryptsetup reads, unchanged: a dynamic segment, so
# the grown layer is the grown volume.
cryptsetup luksDump --dump-json-metadata "$IMG" > "$T/dump.json" || fail "cryptsetup luksDump of the grown volume's header"
[ "$(json 'd["segments"]["0"]["size"]' < "$T/dump.json")" = dynamic ] ||
    fail "the data segment is not dynamic: $(json 'd["segments"]' < "$T/dump.json")"
cryptsetup open --test-passphrase --key-file "$T/secret" "$IMG" || fail "cryptsetup does not open the grown volume's header with its secret"
"$CRYPTVOL" image info "$IMG" --json > "$T/info.json"
[ "$(stat -c %s "$LAYER")" = "$(( $(json 'd["dataOffset"]' < "$T/info.json") + 16 * MiB ))" ] ||
    fail "the grown layer is $(stat -c %s "$LAYER") bytes, not the data offset + 16 MiB"
ok "the grown volume: LUKS2 header valid for cryptsetup, dynamic segment, layer of data offset + 16 MiB"

# ---- shrinking while served: refused, naming every client ----------------
n0=$(wc -l < "$CVD_DIR/cryptvold.log")
expect_fail 1 "^cryptvol: volume db: in use by 3 NBD clients \(.*\); shrinking it needs every client disconnected\$" \
    "$CRYPTVOL" volume resize db --size 8M --allow-shrink
refusal=$(cat "$T/err")
for who in "127\.0\.0\.1:[0-9]+ $CN" "127\.0\.0\.1:[0-9]+ psk:alice" "unix:pid=[0-9]+,uid=$(id -u)"; do
    grep -qE "[(, ]$who[,)]" "$T/err" || fail "the refusal does not name '$who': $(cat "$T/err")"
done
expect_fail 1 "^cryptvol: volume db: is 16\.0 MiB now; shrinking it to 8\.0 MiB destroys the data past 8\.0 MiB: that needs allowShrink \(--allow-shrink\) and every client disconnected\$" \
    "$CRYPTVOL" volume resize db --size 8M
code=$(curl -s -o "$T/api.json" -w '%{http_code}' --unix-socket "$CVD_DIR/admin.sock" \
       -X POST -d '{"size":8388608,"allowShrink":true}' http://localhost/v1/volumes/db/resize)
[ "$code" = 409 ] || fail "shrink while served over the API: HTTP $code $(cat "$T/api.json")"
[ "$(stat -c %s "$LAYER")" = "$(( $(json 'd["dataOffset"]' < "$T/info.json") + 16 * MiB ))" ] ||
    fail "a refused shrink changed the layer's size"
expect_ask c "read $((9 * MiB)) 8" "ok new-area"
ok "shrink while served: refused (CLI exit 1, API 409) naming the 3 clients ($refusal); without --allow-shrink says the size now"

# ---- growth past the maximum ---------------------------------------------
# The CLI refuses it before asking (a usage error); the daemon's own
# refusal is seen over the API.
expect_fail 2 '^cryptvol volume resize: --size: size "2E" is out of range \(allowed: 512 B to 1\.0 EiB\)$' \
    "$CRYPTVOL" volume resize db --size 2E
code=$(curl -s -o "$T/api.json" -w '%{http_code}' --unix-socket "$CVD_DIR/admin.sock" \
       -X POST -d '{"size":2305843009213693952}' http://localhost/v1/volumes/db/resize)
[ "$code" = 400 ] || fail "2 EiB over the API: HTTP $code"
grep -q 'out of range: 4.0 KiB to 1.0 EiB' "$T/api.json" || fail "2 EiB over the API: $(cat "$T/api.json")"
expect_fail 1 "^cryptvol: volume db: a size of 16777728 bytes is not a whole number of 4096-byte sectors" \
    "$CRYPTVOL" volume resize db --size 16777728
[ "$("$CRYPTVOL" volume info db --json | json 'd["size"], d["state"]')" = "16777216 Available" ] ||
    fail "a refused grow changed the volume: $("$CRYPTVOL" volume info db)"
ok "grow past 1 EiB refused with the range (CLI and API); a size of part sectors refused"

# ---- offline: shrink needs --allow-shrink --------------------------------
for c in a b c; do unhold $c; done
for ((i = 0; i < 100; i++)); do [ "$(served db)" = False ] && break; sleep 0.05; done
[ "$(served db)" = False ] || fail "db is still in use after its clients left"
expect_fail 1 "^cryptvol: volume db: is 16\.0 MiB now; shrinking it to 12\.0 MiB destroys the data past 12\.0 MiB: that needs allowShrink" \
    "$CRYPTVOL" volume resize db --size 12M
"$CRYPTVOL" volume resize db --size 12M --allow-shrink > "$T/out" || fail "offline shrink with --allow-shrink: $(cat "$T/out")"
grep -qx 'volume db: size 12582912 (12.0 MiB)' "$T/out" || fail "shrink output: $(cat "$T/out")"
[ "$(nbdinfo --size "$(unix db)")" = $((12 * MiB)) ] || fail "NBD size after the shrink"
hold d "$(unix db)"
expect_ask d "read 4096 11" "ok before-grow"
expect_ask d "read $((9 * MiB)) 8" "ok new-area"
unhold d
ok "offline: shrink refused without --allow-shrink (says 16 MiB now), done with it; data below 12 MiB kept"

# ---- LUKS1 and plaintext grow online too ---------------------------------
"$CRYPTVOL" volume create l1 --size 4M --type luks1 > /dev/null
"$CRYPTVOL" volume create pl --size 4M --plaintext > /dev/null
for v in l1 pl; do
    hold "o$v" "$(unix $v)"
    expect_ask "o$v" "write 512 kept-$v fua" ok
    "$CRYPTVOL" volume resize $v --size 8M > "$T/out" 2>&1 || fail "online grow of $v: $(cat "$T/out")"
    grep -qx '1 connected client keeps the old size until it reconnects' "$T/out" || fail "$v: $(cat "$T/out")"
    expect_ask "o$v" size $((4 * MiB))
    past "o$v" "read $((4 * MiB)) 512" "$read_past" "$why ($v)"
    hold "n$v" "$(unix $v)"
    expect_ask "n$v" size $((8 * MiB))
    expect_ask "n$v" "read 512 7" "ok kept-$v"
    expect_ask "n$v" "write $((6 * MiB)) new-$v fua" ok
    expect_ask "n$v" "read $((6 * MiB)) 6" "ok new-$v"
    unhold "o$v"
    unhold "n$v"
done
# A block never written reads as zeros, encrypted or not (docs/store.md:
# the grown area is a hole of the layer).
zeros=$("$PYTHON" -c 'import hashlib; print(hashlib.sha256(bytes(4096)).hexdigest())')
for v in pl l1; do
    hold "z$v" "$(unix $v)"
    expect_ask "z$v" "sum $((7 * MiB)) 4096" "ok $zeros"
    unhold "z$v"
done
ok "LUKS1 and plaintext: grown online, the old client keeps 4 MiB, a new one writes the new area (its unwritten blocks read zeros)"
cvd_stop
