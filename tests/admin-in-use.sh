#!/bin/bash
# A volume served over NBD cannot be shrunk or deleted (409, "in use",
# naming the client), and its secret cannot be deleted; it can be grown
# (tests/volume-resize-online.sh tests that in depth).  Once the client
# disconnects both work, and a grown volume keeps its data and shows the
# new size to the next client.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
command -v nbdinfo >/dev/null || skip "nbdinfo is not installed"

cvd_start u --tls off
uri() { echo "nbd+unix:///$1?socket=$CVD_NBD"; }
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

"$CRYPTVOL" volume create db1 --size 8M > /dev/null

# Holds an NBD connection to db1 until $T/release exists.
/usr/bin/python3 - "$CVD_NBD" "$T" <<'PY' &
import nbd, os, sys, time
sock, tmp = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.set_export_name("db1")
h.connect_unix(sock)
h.pwrite(b"kept across resize", 4096)
h.flush()
open(os.path.join(tmp, "held"), "w").close()
while not os.path.exists(os.path.join(tmp, "release")):
    time.sleep(0.05)
h.shutdown()
PY
HOLDER=$!
on_exit "touch $T/release; kill $HOLDER"
for ((i = 0; i < 200; i++)); do [ -e "$T/held" ] && break; sleep 0.05; done
[ -e "$T/held" ] || fail "the NBD client did not connect"

[ "$("$CRYPTVOL" volume info db1 --json | json 'd["inUse"]')" = True ] ||
    fail "volume info does not say in use"
"$CRYPTVOL" volume list | grep -Eq '^db1 .* yes$' || fail "volume list does not say in use"
who="1 NBD client \\(unix:pid=$HOLDER,uid=$(id -u)\\)"
expect_fail 1 "^cryptvol: volume db1: in use by $who; shrinking it needs every client disconnected\$" \
    "$CRYPTVOL" volume resize db1 --size 4M --allow-shrink
expect_fail 1 "^cryptvol: volume db1: in use by $who; deleting it needs every client disconnected\$" \
    "$CRYPTVOL" volume delete db1
expect_fail 1 '^cryptvol: secret db1: used by volume db1$' "$CRYPTVOL" secret delete db1
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$CVD_DIR/admin.sock" \
       -X POST -d '{"size":4194304,"allowShrink":true}' http://localhost/v1/volumes/db1/resize)
[ "$code" = 409 ] || fail "shrink while served: HTTP $code"
vd=$(vol_dir "$CVD_DIR/data" db1)
[ -f "$vd/chain" ] && [ -f "$vd/header" ] && [ -f "$(vol_head "$CVD_DIR/data" db1)" ] ||
    fail "the volume's chain went away: $(ls -A "$vd" 2>&1)"
"$CRYPTVOL" volume resize db1 --size 12M > /dev/null || fail "grow while served refused"
ok "served volume: shrink and delete refused with 409 naming the client; grow works"

touch "$T/release"
wait "$HOLDER" || fail "the NBD client failed"
for ((i = 0; i < 100; i++)); do
    [ "$("$CRYPTVOL" volume info db1 --json | json 'd["inUse"]')" = False ] && break
    sleep 0.05
done
"$CRYPTVOL" volume resize db1 --size 16M > /dev/null
[ "$(nbdinfo --size "$(uri db1)")" = $((16 * 1024 * 1024)) ] || fail "NBD size after grow"
nbdcopy "$(uri db1)" "$T/all"
[ "$(dd if="$T/all" bs=1 skip=4096 count=18 status=none)" = "kept across resize" ] ||
    fail "data lost across resize"
"$CRYPTVOL" volume delete db1 > /dev/null
nbdinfo --size "$(uri db1)" > /dev/null 2>&1 && fail "a deleted volume is still served"
ok "after disconnect: grown (data kept, new size served), then deleted"
cvd_stop
