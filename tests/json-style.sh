#!/bin/bash
# One JSON style for the admin API and the CLI (docs/admin-api.md,
# "Conventions"): every answer of every endpoint, every error body, image
# info --json and the CLI's --json errors walked by tests/tools/json-style.py
# (camelCase member names, RFC 3339 times, {"error", "code"} errors); the
# deprecated snake_case request names still read, both names at once
# refused.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
command -v curl >/dev/null || skip "curl is not installed"
STYLE="$PYTHON $SRC_DIR/tests/tools/json-style.py"

# api METHOD PATH FILE [curl args]: the body into FILE, the status printed.
api() {
    local method=$1 path=$2 out=$3
    shift 3
    curl -sS --unix-socket "$CVD_DIR/admin.sock" -X "$method" -o "$out" \
        -w '%{http_code}' "$@" "http://localhost$path"
}
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
n=0
# answer EXPECTED METHOD PATH [curl args]: keeps the body as $T/doc.N.
answer() {
    local want=$1 got
    shift
    n=$((n + 1))
    got=$(api "$1" "$2" "$T/doc.$n" "${@:3}")
    [ "$got" = "$want" ] || fail "$1 $2: HTTP $got, not $want: $(cat "$T/doc.$n")"
}
# error EXPECTED METHOD PATH [curl args]: keeps the body as $T/err.N.
error() {
    local want=$1 got
    shift
    n=$((n + 1))
    got=$(api "$1" "$2" "$T/err.$n" "${@:3}")
    [ "$got" = "$want" ] || fail "$1 $2: HTTP $got, not $want: $(cat "$T/err.$n")"
}

cvd_start a --tls off
passfile "$T/pw" "json-style-secret-value"
B64=$(printf '%s' "json-style-secret-value" | base64 -w0)

# ---- every object the API shows, in every state it has --------------------
"$CRYPTVOL" cluster encryption enable > /dev/null
answer 201 POST /v1/secrets -d "{\"name\":\"pw\",\"value\":\"$B64\"}"
answer 200 PUT /v1/secrets/pw -d "{\"value\":\"$B64\"}"
answer 201 POST /v1/classes -d '{"name":"c1","secretTemplate":"${volume.name}-k","keyBits":256}'
"$CRYPTVOL" volume create v1 --size 4M --secret pw > /dev/null
"$CRYPTVOL" volume create v2 --size 4M --class c1 > /dev/null 2>&1   # Pending
"$CRYPTVOL" volume create p1 --size 4M --secret missing > /dev/null 2>&1   # Pending
"$CRYPTVOL" volume access v1 --allow cn:client1 > /dev/null
"$CRYPTVOL" class access c1 --deny cn:bad > /dev/null
answer 200 POST /v1/volumes/v1/resize -d '{"size":8388608}'
"$CRYPTVOL" cluster kek rotate > /dev/null
for p in /v1/status /v1/volumes /v1/volumes/v1 /v1/volumes/p1 /v1/secrets \
         /v1/classes /v1/classes/c1 /v1/cluster /v1/audit \
         /v1/volumes/v1/access /v1/classes/c1/access; do
    answer 200 GET "$p"
done
answer 201 POST /v1/secrets -d "{\"name\":\"missing\",\"value\":\"$B64\"}"
[ "$(json 'd["madeAvailable"]' < "$T/doc.$n")" = "['p1']" ] ||
    fail "secret create: madeAvailable: $(cat "$T/doc.$n")"
# The rotation ran: its times are RFC 3339, not epoch integers.
answer 200 GET /v1/cluster
json 'd["rotation"]["started"], d["rotation"]["finished"]' < "$T/doc.$n" |
    grep -Eq "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z [0-9]{4}-" ||
    fail "cluster rotation times: $(cat "$T/doc.$n")"
"$CRYPTVOL" image info "$(vol_dir "$CVD_DIR/data" v1)" --json > "$T/doc.image" ||
    fail "image info --json"
[ "$(json 'd["type"], d["size"]' < "$T/doc.image")" = "luks2 8388608" ] ||
    fail "image info: type and size as volume info says them: $(cat "$T/doc.image")"
$STYLE "$T"/doc.* || fail "answers not in the documented JSON style (above)"
ok "$(ls "$T"/doc.* | wc -l) answers: camelCase members, RFC 3339 times"

# ---- deprecated request names: read, for one release ------------------------
answer 201 POST /v1/classes -d '{"name":"old","secret_template":"${volume.name}-o","key_size":256}'
[ "$(json 'd["secretTemplate"], d["keyBits"]' < "$T/doc.$n")" = '${volume.name}-o 256' ] ||
    fail "class create with deprecated names: $(cat "$T/doc.$n")"
answer 200 POST /v1/volumes/v1/resize -d '{"size":4194304,"allow_shrink":true}'
[ "$(json 'd["size"]' < "$T/doc.$n")" = 4194304 ] ||
    fail "resize with allow_shrink: $(cat "$T/doc.$n")"
answer 201 POST /v1/volumes -d '{"name":"kdf","size":1048576,"secret":"pw","pbkdf":{"type":"pbkdf2","iterations":1000,"time_ms":10}}'
ok "deprecated allow_shrink, secret_template, key_size, pbkdf time_ms still read"

# ---- errors: {"error", "code"}, both names at once refused --------------------
error 400 POST /v1/classes -d '{"name":"both","keyBits":256,"key_size":256}'
grep -q '"keyBits\\" and its deprecated name \\"key_size\\" both given' "$T/err.$n" ||
    fail "both names: $(cat "$T/err.$n")"
[ "$(json 'd["code"]' < "$T/err.$n")" = BadRequest ] || fail "code: $(cat "$T/err.$n")"
error 404 GET /v1/volumes/nope
[ "$(json 'd["code"]' < "$T/err.$n")" = NotFound ] || fail "code: $(cat "$T/err.$n")"
error 409 POST /v1/secrets -d "{\"name\":\"pw\",\"value\":\"$B64\"}"
[ "$(json 'd["code"]' < "$T/err.$n")" = Conflict ] || fail "code: $(cat "$T/err.$n")"
error 405 PATCH /v1/volumes
error 400 POST /v1/volumes -d '{"name":"x"'
$STYLE --error "$T"/err.* || fail "error bodies not {\"error\", \"code\"} (above)"
ok "API errors: {\"error\": message, \"code\": BadRequest|NotFound|Conflict|...}"

# ---- the CLI's errors with --json: one JSON line on stderr -------------------
# cli_json CODE STATUS COMMAND...: stderr is one {"error","code"} with CODE.
cli_json() {
    local code=$1 status=$2 rc=0
    shift 2
    n=$((n + 1))
    "$CRYPTVOL" "$@" > "$T/cli.out" 2> "$T/cli.$n" || rc=$?
    [ "$rc" = "$status" ] || fail "$*: exit $rc, not $status: $(cat "$T/cli.$n")"
    [ "$(wc -l < "$T/cli.$n")" = 1 ] || fail "$*: stderr is not one line: $(cat "$T/cli.$n")"
    [ "$(json 'd["code"]' < "$T/cli.$n")" = "$code" ] ||
        fail "$*: code is not $code: $(cat "$T/cli.$n")"
    $STYLE --error "$T/cli.$n" || fail "$*: stderr is not a JSON error"
}
cli_json UsageError 2 --json volume create a b --size 8M
cli_json UsageError 2 volume create -x --json
cli_json NotFound 1 volume info nope --json
cli_json Conflict 1 --json secret create pw --from-file "$T/pw"
cli_json Unavailable 1 volume list --json --socket "$T/no.sock"
cli_json BadRequest 1 image info "$T/pw" --json
expect_fail 1 '^cryptvol: volume nope: no such volume$' \
    "$CRYPTVOL" volume info nope
ok "CLI --json errors: one {\"error\", \"code\"} line on stderr, exit status kept; plain text without --json"
