#!/bin/bash
# The admin API through the CLI (human and --json) and raw curl on the unix
# socket: secrets and volumes created, listed, resized and deleted; secret
# values never shown, never logged, never stored in clear; bad names,
# missing secrets, used secrets and a stopped daemon refused with one-line
# errors.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
command -v curl >/dev/null || skip "curl is not installed"

# Every stdout and stderr of the commands below, to check for the value.
ALL=$T/all-output
# (Through files, not >(tee): a process substitution may still be writing
# when the next command reads what it wrote.)
run() {
    local rc=0
    "$@" > "$T/run.out" 2> "$T/run.err" || rc=$?
    cat "$T/run.out" "$T/run.err" >> "$ALL"
    cat "$T/run.out"
    cat "$T/run.err" >&2
    return $rc
}
cv() { run "$CRYPTVOL" "$@"; }
# curl on the admin socket; prints the body, then the status on its own line.
api() {
    local method=$1 path=$2
    shift 2
    curl -sS --unix-socket "$CVD_DIR/admin.sock" -X "$method" \
        -w '\n%{http_code}\n' "$@" "http://localhost$path" | tee -a "$ALL"
}
status_of() { tail -n 1; }
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

cvd_start a --tls off
DATA=$CVD_DIR/data

# ---- files are private --------------------------------------------------
[ "$(stat -c %a "$DATA/node.key")" = 600 ] || fail "node.key is not 0600"
[ "$(stat -c %s "$DATA/node.key")" = 32 ] || fail "node.key is not 32 bytes"
[ "$(stat -c %a "$DATA/meta.db")" = 600 ] || fail "meta.db is not 0600"
[ "$(stat -c %a "$CVD_DIR/admin.sock")" = 600 ] || fail "admin.sock is not 0600"
ok "node key, metadata and socket are mode 0600"

# ---- status ---------------------------------------------------------------
out=$(api GET /v1/status)
[ "$(status_of <<<"$out")" = 200 ] || fail "GET /v1/status: $out"
[ "$(head -n 1 <<<"$out" | json 'd["volumes"]')" = 0 ] || fail "status: $out"
ok "GET /v1/status"

# ---- secrets ----------------------------------------------------------------
VALUE="s3cr3t-$RANDOM-$RANDOM-value"
passfile "$T/pw" "$VALUE"
cv secret create pw1 --from-file "$T/pw" > "$T/out"
grep -q "secret pw1 created" "$T/out" || fail "secret create: $(cat "$T/out")"
expect_fail 1 '^cryptvol: secret pw1: already exists$' \
    "$CRYPTVOL" secret create pw1 --from-file "$T/pw"
chmod 644 "$T/pw"
expect_fail 1 "mode 0644 lets group or others read it" \
    "$CRYPTVOL" secret create pw2 --from-file "$T/pw"
chmod 600 "$T/pw"
expect_fail 2 "needs NAME and --from-file" "$CRYPTVOL" secret create pw2
expect_fail 1 'secret "bad/name": not a valid name' \
    "$CRYPTVOL" secret create bad/name --from-file "$T/pw"
cv secret create pw2 --from-file "$T/pw" --json > "$T/out"
[ "$(json 'd["name"]' < "$T/out")" = pw2 ] || fail "secret create --json: $(cat "$T/out")"
cv secret list > "$T/out"
grep -Eq '^NAME +CREATED +USED BY$' "$T/out" || fail "secret list header: $(cat "$T/out")"
grep -Eq '^pw1 +[0-9T:-]+Z +-$' "$T/out" || fail "secret list: $(cat "$T/out")"
cv secret list --json > "$T/out"
[ "$(json 'len(d)' < "$T/out")" = 2 ] || fail "secret list --json: $(cat "$T/out")"
# Through curl: base64 in, never out.
b64=$(printf 'curl-%s' "$VALUE" | base64 -w0)
out=$(api POST /v1/secrets -d "{\"name\":\"pw3\",\"value\":\"$b64\"}")
[ "$(status_of <<<"$out")" = 201 ] || fail "POST /v1/secrets: $out"
out=$(api GET /v1/secrets)
[ "$(status_of <<<"$out")" = 200 ] || fail "GET /v1/secrets: $out"
[ "$(head -n 1 <<<"$out" | json 'sorted(d[0].keys())')" = "['created', 'generatedFor', 'name', 'usedBy']" ] ||
    fail "GET /v1/secrets fields: $out"
out=$(api GET /v1/secrets/pw3)
[ "$(status_of <<<"$out")" = 405 ] || fail "GET /v1/secrets/pw3: $out"
out=$(api POST /v1/secrets -d '{"name":"x","value":"%%%"}')
[ "$(status_of <<<"$out")" = 400 ] || fail "bad base64: $out"
out=$(api POST /v1/secrets -d '{"name":"x/y","value":"eA=="}')
[ "$(status_of <<<"$out")" = 400 ] || fail "bad secret name: $out"
out=$(api POST /v1/secrets -d 'not json')
[ "$(status_of <<<"$out")" = 400 ] || fail "not json: $out"
grep -q '"error":"request body:' <<<"$out" || fail "not json: $out"
ok "secrets: create (CLI and curl), list, refusals"

# ---- volumes ------------------------------------------------------------------
cv volume create db1 --size 16M > "$T/out"
grep -Eq '^secret: +db1$' "$T/out" || fail "volume create: $(cat "$T/out")"
grep -Eq '^type: +luks2$' "$T/out" || fail "volume create: $(cat "$T/out")"
cv volume create db2 --size 8M --secret pw1 --type luks1 --cipher aes-128 --json > "$T/out"
[ "$(json 'd["keyBits"], d["sectorSize"], d["secret"], d["type"]' < "$T/out")" = "256 512 pw1 luks1" ] ||
    fail "volume create luks1: $(cat "$T/out")"
cv volume create raw --size 1M --plaintext > /dev/null
cv volume create fast --size 4M --secret pw2 --pbkdf pbkdf2 --pbkdf-iterations 1000 > /dev/null
# A secret that does not exist yet: the volume waits for it (Pending).
cv volume create x --size 4M --secret nope > "$T/out"
grep -Eq '^state: +Pending \(waiting for secret "nope"\)$' "$T/out" ||
    fail "volume create with a missing secret: $(cat "$T/out")"
cv volume delete x > /dev/null
expect_fail 1 '^cryptvol: volume db1: already exists$' \
    "$CRYPTVOL" volume create db1 --size 4M
expect_fail 1 'volume "-x": not a valid name' "$CRYPTVOL" volume create --size 4M -- -x
expect_fail 1 'volume "a.b/c": not a valid name' "$CRYPTVOL" volume info a.b/c
expect_fail 1 'multiple of the 4096-byte sector size' \
    "$CRYPTVOL" volume create odd --size 4097
expect_fail 1 'a plaintext volume has no secret' \
    "$CRYPTVOL" volume create p2 --size 4M --plaintext --secret pw1
expect_fail 2 'needs NAME and --size' "$CRYPTVOL" volume create y
expect_fail 2 '--pbkdf: "md5"' "$CRYPTVOL" volume create y --size 1M --pbkdf md5
left=$(cd "$DATA/volumes" && ls -d x x.* odd odd.* 2> /dev/null || true)
[ -z "$left" ] || fail "a refused create left a file: $left"
out=$(api POST /v1/volumes -d '{"name":"../../etc","size":4096}')
[ "$(status_of <<<"$out")" = 400 ] || fail "bad volume name: $out"
out=$(api POST /v1/volumes -d '{"name":"v","size":4194304,"colour":"red"}')
[ "$(status_of <<<"$out")" = 400 ] || fail "unknown field: $out"
grep -q 'unknown field \\"colour\\"' <<<"$out" || fail "unknown field: $out"
out=$(api POST /v1/volumes -d '{"name":"v","size":4194304,"secret":"nope"}')
[ "$(status_of <<<"$out")" = 202 ] || fail "missing secret: $out"
[ "$(head -n 1 <<<"$out" | json 'd["state"], d["reason"]')" = 'Pending waiting for secret "nope"' ] ||
    fail "missing secret: $out"
out=$(api DELETE /v1/volumes/v)
[ "$(status_of <<<"$out")" = 200 ] || fail "deleting a Pending volume: $out"
out=$(api GET /v1/volumes/nope)
[ "$(status_of <<<"$out")" = 404 ] || fail "GET missing volume: $out"
ok "volumes: create (generated and named secrets, luks1, plaintext), refusals"

# The headers are LUKS headers cryptsetup opens with the secret's bytes.
need cryptsetup
cryptsetup open --test-passphrase --key-file "$T/pw" "$(vol_dir "$DATA" db2)/header" ||
    fail "cryptsetup does not open db2 with secret pw1"
cryptsetup luksDump "$(vol_dir "$DATA" db1)/header" | grep 'pbkdf2' > /dev/null ||
    fail "db1's generated secret should use PBKDF2"
ok "cryptsetup opens the volumes with their secrets"
info=$(cv volume info db1 --json)
off=$(json 'd["dataOffset"]' <<<"$info")
[ "$(stat -c %s "$(vol_dir "$DATA" db1)/header")" = "$off" ] ||
    fail "db1's header is not its data offset ($off bytes) long"
[ "$(stat -c %s "$(vol_head "$DATA" db1)")" = $((off + 16 * 1024 * 1024)) ] ||
    fail "db1's layer is not data offset + 16 MiB"

cv volume list > "$T/out"
grep -Eq '^NAME +SIZE +ALLOCATED +TYPE +ENCRYPTION +SECRET +STATE +CONNECTED +IN USE$' "$T/out" || fail "volume list: $(cat "$T/out")"
grep -Eq '^db1 +16.0 MiB +[0-9.]+ [KM]iB +luks2 +AES-256 +db1 +Available +- +no$' "$T/out" || fail "volume list: $(cat "$T/out")"
grep -Eq '^raw +1.0 MiB +[0-9.]+ (B|KiB) +plaintext +NONE +- +Available +- +no$' "$T/out" || fail "volume list: $(cat "$T/out")"
cv volume list --json > "$T/out"
[ "$(json '[v["name"] for v in d]' < "$T/out")" = "['db1', 'db2', 'fast', 'raw']" ] ||
    fail "volume list --json: $(cat "$T/out")"
cv volume info raw > "$T/out"
grep -q '^encryption:   NONE (plaintext volume, for comparison only)$' "$T/out" ||
    fail "plaintext info: $(cat "$T/out")"
cv volume info raw --json > "$T/out"
[ "$(json 'd["encrypted"], d["secret"]' < "$T/out")" = "False None" ] ||
    fail "plaintext info --json: $(cat "$T/out")"
cv secret list --json > "$T/out"
[ "$(json '{s["name"]: s["usedBy"] for s in d}' < "$T/out")" = "{'db1': ['db1'], 'pw1': ['db2'], 'pw2': ['fast'], 'pw3': []}" ] ||
    fail "usedBy: $(cat "$T/out")"
ok "volume list, info; secret list usedBy"

# ---- resize --------------------------------------------------------------
cv volume resize db1 --size 32M > "$T/out"
grep -q "volume db1: size 33554432" "$T/out" || fail "resize: $(cat "$T/out")"
[ "$(stat -c %s "$(vol_head "$DATA" db1)")" = $((off + 32 * 1024 * 1024)) ] || fail "resize: layer size"
expect_fail 1 'volume db1: is 32\.0 MiB now; shrinking it to 8\.0 MiB destroys the data past 8\.0 MiB: that needs allowShrink \(--allow-shrink\)' \
    "$CRYPTVOL" volume resize db1 --size 8M
cv volume resize db1 --size 8M --allow-shrink --json > "$T/out"
[ "$(json 'd["size"]' < "$T/out")" = 8388608 ] || fail "shrink: $(cat "$T/out")"
out=$(api POST /v1/volumes/db1/resize -d '{"size":4194304}')
[ "$(status_of <<<"$out")" = 400 ] || fail "shrink without allowShrink: $out"
expect_fail 1 'no such volume' "$CRYPTVOL" volume resize nope --size 8M
ok "resize: grow, shrink refused, shrink allowed"

# ---- deleting ---------------------------------------------------------------
expect_fail 1 '^cryptvol: secret pw1: used by volume db2$' "$CRYPTVOL" secret delete pw1
out=$(api DELETE /v1/secrets/db1)
[ "$(status_of <<<"$out")" = 409 ] || fail "deleting a used secret: $out"
cv volume delete db2 > "$T/out"
grep -q "volume db2 deleted" "$T/out" || fail "volume delete: $(cat "$T/out")"
left=$(cd "$DATA/volumes" && ls -d db2 db2.* 2> /dev/null || true)
[ -z "$left" ] || fail "db2's files are still there: $left"
cv secret delete pw1 > /dev/null
expect_fail 1 'secret pw1: no such secret' "$CRYPTVOL" secret delete pw1
# A generated secret goes with its volume.
cv volume delete db1 > /dev/null
cv secret list --json > "$T/out"
[ "$(json '[s["name"] for s in d]' < "$T/out")" = "['pw2', 'pw3']" ] ||
    fail "db1's generated secret should be gone: $(cat "$T/out")"
expect_fail 1 'volume db1: no such volume' "$CRYPTVOL" volume delete db1
ok "delete: used secret refused, volume and its generated secret removed"

# ---- the value is nowhere -------------------------------------------------
for f in "$DATA"/meta.db*; do
    ! grep -aq "$VALUE" "$f" || fail "$f holds the secret value in clear"
done
! grep -aq "$VALUE" "$CVD_DIR/cryptvold.log" || fail "the log holds the secret value"
! grep -aq "$VALUE" "$ALL" || fail "some output shows the secret value"
! grep -aq "$b64" "$ALL" "$CVD_DIR/cryptvold.log" || fail "the base64 value was echoed"
ok "the secret value is in no output, no log, and not in clear in meta.db"

# ---- restart keeps everything; a stopped daemon is reported ---------------
cvd_stop
[ ! -e "$CVD_DIR/admin.sock" ] || fail "admin.sock left behind after a clean stop"
expect_fail 1 "^cryptvol: cannot reach cryptvold at $CVD_DIR/admin.sock: connection refused" \
    "$CRYPTVOL" volume list
expect_fail 1 "^cryptvol: cannot reach cryptvold at $T/none.sock: connection refused" \
    "$CRYPTVOL" secret list --socket "$T/none.sock"
cvd_start a --tls off
cv volume list --json > "$T/out"
[ "$(json '[v["name"] for v in d]' < "$T/out")" = "['fast', 'raw']" ] ||
    fail "volumes after restart: $(cat "$T/out")"
kill -9 "$CVD_PID"; wait "$CVD_PID" 2>/dev/null || true
# A socket left by a daemon that died: refused, not a hang.
[ -S "$CVD_DIR/admin.sock" ] || fail "expected a stale socket"
expect_fail 1 "cannot reach cryptvold at $CVD_DIR/admin.sock: connection refused$" \
    "$CRYPTVOL" volume list
cvd_start a --tls off
cv volume info fast > /dev/null
ok "records survive a restart; a stopped daemon is one clear error; a stale socket is replaced"
