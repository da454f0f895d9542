#!/usr/bin/env bash
# A volume whose secret does not exist yet: created Pending with the reason,
# no image file, refused by the NBD server saying why, kept Pending across
# a restart, deletable; Available once the secret is created (at once,
# through the secret create), or once it appears in the store some other
# way (the retry thread, --pending-retry-interval); and a kill -9 while
# pending volumes are being made loses none of them.
source "$(dirname "$0")/lib.sh"

# Built with the CLI (ctest runs the same build): missing is a build regression.
[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built: $CRYPTVOLD"
for p in nbdcopy nbdinfo curl; do
    command -v $p > /dev/null || skip "$p is not installed"
done
SEAL="$PYTHON $SRC_DIR/tests/tools/seal-secret.py"
$PYTHON -c 'import cryptography' 2> /dev/null || skip "python3-cryptography is not installed"

uri() { echo "nbd+unix:///$1?socket=$CVD_NBD"; }
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
state_of() { "$CRYPTVOL" volume info "$1" --json | json 'd["state"]'; }
# wait_state VOLUME STATE SECONDS
wait_state() {
    local i s=""
    for ((i = 0; i < $3 * 10; i++)); do
        s=$(state_of "$1")
        [ "$s" = "$2" ] && return 0
        sleep 0.1
    done
    fail "volume $1 is $s after $3 s, not $2"
}

# Only the secret-create hook: no background retries.
cvd_start pv --tls off --pending-retry-interval 0
DATA=$CVD_DIR/data

# ---- Pending, with the reason, everywhere -----------------------------------
"$CRYPTVOL" volume create db1 --size 8M --secret db-1 > "$T/out"
grep -Eq '^state: +Pending \(waiting for secret "db-1"\)$' "$T/out" ||
    fail "volume create: $(cat "$T/out")"
grep -Eq '^secret: +db-1$' "$T/out" || fail "volume create: $(cat "$T/out")"
out=$(curl -sS --unix-socket "$CVD_DIR/admin.sock" -w '\n%{http_code}\n' \
      -X POST -d '{"name":"db2","size":8388608,"secret":"db-1"}' http://localhost/v1/volumes)
[ "$(tail -n 1 <<<"$out")" = 202 ] || fail "POST /v1/volumes with a missing secret: $out"
[ "$(head -n 1 <<<"$out" | json 'd["state"] + "|" + d["reason"]')" = 'Pending|waiting for secret "db-1"' ] ||
    fail "POST /v1/volumes: $out"
[ ! -e "$(vol_dir "$DATA" db1)" ] && [ ! -e "$DATA/volumes/db1.img" ] ||
    fail "a Pending volume has files: $(ls -d "$DATA"/volumes/db1*)"
"$CRYPTVOL" volume list > "$T/out"
grep -Eq '^db1 +8.0 MiB +- +luks2 +AES-256 +db-1 +Pending +- +no$' "$T/out" || fail "volume list: $(cat "$T/out")"
if LIBNBD_DEBUG=1 nbdinfo --size "$(uri db1)" > /dev/null 2> "$T/err"; then
    fail "a Pending volume was served"
fi
grep -q 'server error message: volume db1: is Pending: waiting for secret "db-1"' "$T/err" ||
    fail "NBD error: $(grep 'server error' "$T/err")"
# The list must work and show an Available volume (the control), and
# neither Pending one.
"$CRYPTVOL" volume create shown --size 4M > /dev/null
nbdinfo --list "nbd+unix:///?socket=$CVD_NBD" > "$T/list" 2>&1 ||
    fail "nbdinfo --list failed: $(cat "$T/list")"
grep -q '^export="shown":$' "$T/list" || fail "the Available volume is not listed: $(cat "$T/list")"
! grep -Eq '^export="db[12]":$' "$T/list" || fail "a Pending volume is listed as an export: $(grep '^export=' "$T/list")"
expect_fail 1 '^cryptvol: volume db1: is Pending: waiting for secret "db-1"$' \
    "$CRYPTVOL" volume resize db1 --size 16M
expect_fail 1 '^cryptvol: volume db1: is Pending: waiting for secret "db-1"$' \
    "$CRYPTVOL" volume rekey db1 --secret db-1
ok "Pending with the reason: CLI, API (202), list, NBD refusal, resize and rekey refused"

# ---- a restart keeps it Pending; deleting a Pending volume --------------------
cvd_stop
cvd_start pv --tls off --pending-retry-interval 0
[ "$(state_of db1)" = Pending ] || fail "db1 after a restart: $(state_of db1)"
"$CRYPTVOL" volume create gone --size 4M --secret never > /dev/null
"$CRYPTVOL" volume delete gone > "$T/out"
grep -q '^volume gone deleted$' "$T/out" || fail "deleting a Pending volume: $(cat "$T/out")"
expect_fail 1 'volume gone: no such volume' "$CRYPTVOL" volume info gone
ok "a restart keeps it Pending; a Pending volume can be deleted"

# ---- the secret appears: Available --------------------------------------------
passfile "$T/db-1" "the secret db1 waited for"
"$CRYPTVOL" secret create db-1 --from-file "$T/db-1" > /dev/null
wait_state db1 Available 10
wait_state db2 Available 10
"$CRYPTVOL" volume info db1 --json > "$T/out"
[ "$(json 'd["secret"], d["reason"], d["uuid"] is not None' < "$T/out")" = "db-1 None True" ] ||
    fail "db1 once made: $(cat "$T/out")"
printf 'written once Available' > "$T/data"
nbdcopy "$T/data" "$(uri db1)" || fail "writing to db1"
nbdcopy "$(uri db1)" "$T/back" || fail "reading db1"
[ "$(head -c 22 "$T/back")" = "written once Available" ] || fail "db1 read back: $(head -c 22 "$T/back")"
need cryptsetup
cryptsetup open --test-passphrase --key-file "$T/db-1" "$(vol_dir "$DATA" db1)/header" ||
    fail "cryptsetup does not open db1 with db-1"
expect_fail 1 '^cryptvol: secret db-1: used by volume db1$' "$CRYPTVOL" secret delete db-1
ok "creating the secret makes the Pending volumes Available at once; they serve"

# ---- a secret from elsewhere: the retry thread finds it -----------------------
cvd_stop
cvd_start pv --tls off --pending-retry-interval 1
"$CRYPTVOL" class create per --secret-template '${volume.name}-key' > /dev/null
"$CRYPTVOL" volume create t1 --size 4M --class per > /dev/null
[ "$(state_of t1)" = Pending ] || fail "t1 is not Pending"
passfile "$T/t1-key" "written into the store by another node"
$SEAL "$DATA" t1-key "$T/t1-key"
wait_state t1 Available 15
nbdinfo --size "$(uri t1)" > /dev/null || fail "t1 does not serve"
grep -q 'volume t1: created from pending' "$CVD_DIR/cryptvold.log" || fail "log: no creation of t1"
ok "a secret written to the store behind the daemon's back: the retry thread makes the volume"

# ---- kill -9 while pending volumes are being made: none is lost -------------
vols=(k1 k2 k3 k4 k5 k6 k7 k8)
for v in "${vols[@]}"; do
    "$CRYPTVOL" volume create "$v" --size 4M --secret shared-later > /dev/null
done
# states: "name=state ..." of the k volumes in the metadata (WAL: a reader
# does not get in the daemon's way).
states() {
    "$PYTHON" -c '
import sqlite3, sys
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=5)
print(" ".join("%s=%s" % r for r in c.execute(
    "select name, state from volumes where name like \"k_\" order by name")))' "$DATA/meta.db"
}
# in_state STATE: the k volumes whose record was in STATE at the kill.
in_state() { tr ' ' '\n' <<<"$at_kill" | sed -n "s/=$1\$//p" | xargs; }
passfile "$T/shared" "the secret eight volumes wait for"
$SEAL "$DATA" shared-later "$T/shared"
# The retry thread makes them one by one: kill -9 the moment one is made
# and the next one is being made (its record says creating), rather than
# after a guessed delay.
"$PYTHON" -c '
import os, signal, sqlite3, sys, time
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=5)
q = "select count(*) from volumes where name like \"k_\" and state = ?"
end = time.monotonic() + 30
while time.monotonic() < end:
    with c:
        ready = c.execute(q, ("ready",)).fetchone()[0]
        creating = c.execute(q, ("creating",)).fetchone()[0]
    if ready and creating:
        os.kill(int(sys.argv[2]), signal.SIGKILL)
        sys.exit(0)
    time.sleep(0.002)
sys.exit("no volume made, with the next one being made, within 30 s")' "$DATA/meta.db" "$CVD_PID" ||
    fail "the retry thread did not make the volumes: $(states)"
wait "$CVD_PID" 2> /dev/null || true
at_kill=$(states)
creating=$(in_state creating) ready=$(in_state ready)
[ -n "$creating" ] && [ -n "$ready" ] ||
    fail "kill -9 did not come while volumes were being made: $at_kill"
uuid_of() { "$CRYPTVOL" volume info "$1" --json | json 'd["uuid"]'; }
declare -A uuid
for v in $ready; do
    uuid[$v]=$("$PYTHON" -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select uuid from volumes where name = ?", (sys.argv[2],)).fetchone()[0])' "$DATA/meta.db" "$v")
done
ok "kill -9 while making $creating, after $ready ($at_kill)"
n=$(wc -l < "$CVD_DIR/cryptvold.log")
cvd_start pv --tls off --pending-retry-interval 1
# Recovery puts back exactly the volumes that were being made; those made
# before the kill are kept as they were.
again=$(tail -n +$((n + 1)) "$CVD_DIR/cryptvold.log" |
        sed -n 's/.*volume \(k[0-9]\): was being created when the daemon stopped; Pending again: waiting for secret "shared-later"$/\1/p' |
        sort | xargs)
[ "$again" = "$creating" ] ||
    fail "Pending again at the restart: '$again', but being made at the kill: '$creating'"
for v in "${vols[@]}"; do
    wait_state "$v" Available 20
    nbdinfo --size "$(uri "$v")" > /dev/null || fail "$v does not serve after the crash"
done
for v in $ready; do
    [ "$(uuid_of "$v")" = "${uuid[$v]}" ] || fail "$v, made before the kill, was made again"
done
leftover=$(find "$DATA/volumes" -name '*.creating')
[ -z "$leftover" ] || fail "files of unfinished creates left behind: $leftover"
ok "after the restart $again went back to Pending (and only that), $ready stayed; all ${#vols[@]} are Available and serve"
cvd_stop
