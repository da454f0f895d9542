#!/bin/bash
# The audit log of key events: secret create, update and delete recorded,
# refusals too, with the actor (the unix socket's user, or the HTTPS
# client's certificate and address); no value in any form in the log;
# --since; a log others could read refused at startup.  And the Longhorn
# case: changing a secret's value leaves the volume alone, so its next
# attach fails with "wrong key" until the old value is put back.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
command -v curl >/dev/null || skip "curl is not installed"
command -v nbdinfo >/dev/null || skip "nbdinfo is not installed"
command -v nbdcopy >/dev/null || skip "nbdcopy is not installed"

json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
api() {
    curl -sS --unix-socket "$CVD_DIR/admin.sock" -X "$1" -w '\n%{http_code}\n' \
        "${@:3}" "http://localhost$2"
}
uri() { echo "nbd+unix:///$1?socket=$CVD_NBD"; }
# libnbd prints the server's error text only in its debug output.
export LIBNBD_DEBUG=1

cvd_start a --tls off --node-name audit-n1
DATA=$CVD_DIR/data
LOG=$DATA/audit.log
[ -f "$LOG" ] || fail "no $LOG after start"
[ "$(stat -c %a "$LOG")" = 600 ] || fail "audit.log is mode $(stat -c %a "$LOG"), not 600"
ok "audit.log made at start, mode 0600"

# ---- secret events ----------------------------------------------------------
V1="audit-first-$RANDOM$RANDOM-value"
V2="audit-second-$RANDOM$RANDOM-value"
passfile "$T/v1" "$V1"
passfile "$T/v2" "$V2"
passfile "$T/spare" "spare-$RANDOM$RANDOM"
"$CRYPTVOL" secret create s1 --from-file "$T/v1" > /dev/null
"$CRYPTVOL" secret create spare --from-file "$T/spare" > /dev/null
"$CRYPTVOL" secret update spare --from-file "$T/v2" > "$T/out"
grep -qx "secret spare updated" "$T/out" || fail "secret update: $(cat "$T/out")"
expect_fail 1 '^cryptvol: secret nope: no such secret$' \
    "$CRYPTVOL" secret update nope --from-file "$T/v2"
chmod 644 "$T/v2"
expect_fail 1 "mode 0644 lets group or others read it" \
    "$CRYPTVOL" secret update spare --from-file "$T/v2"
chmod 600 "$T/v2"
expect_fail 2 "needs NAME and --from-file" "$CRYPTVOL" secret update spare
"$CRYPTVOL" volume create vol --size 8M --secret s1 > /dev/null
expect_fail 1 '^cryptvol: secret s1: used by volume vol$' "$CRYPTVOL" secret delete s1
"$CRYPTVOL" secret delete spare > /dev/null
# Through curl: PUT takes {"value"}, or POST's form with the same name.
out=$(api PUT /v1/secrets/spare2 -d "{\"value\":\"$(printf %s "$V2" | base64 -w0)\"}")
[ "$(tail -n 1 <<<"$out")" = 404 ] || fail "PUT on a missing secret: $out"
out=$(api PUT /v1/secrets/s1 -d '{"name":"other","value":"eA=="}')
[ "$(tail -n 1 <<<"$out")" = 400 ] || fail "PUT naming another secret: $out"
grep -q 'the request body names secret' <<<"$out" || fail "PUT naming another secret: $out"
out=$(api PUT /v1/secrets/s1 -d '{"name":"s1"}')
[ "$(tail -n 1 <<<"$out")" = 400 ] || fail "PUT without a value: $out"
out=$(api GET /v1/secrets/s1)
[ "$(tail -n 1 <<<"$out")" = 405 ] || fail "GET /v1/secrets/s1: $out"
ok "secrets created, updated, refused, deleted"

"$CRYPTVOL" audit --json > "$T/audit.json"
$PYTHON - "$T/audit.json" "$(id -u)" <<'PY' || fail "audit --json: $(cat "$T/audit.json")"
import json, sys
d = json.load(open(sys.argv[1]))
uid = sys.argv[2]
ev = [(e["event"], e["object"], e["result"], e.get("detail"))
      for e in d["events"] if e["event"].startswith("secret.")]
assert [(e["event"], e["object"], e["result"]) for e in d["events"]
        if e["event"].startswith("volume.")] == [("volume.create", "volume/vol", "ok")], d
want = [
    ("secret.create", "secret/s1", "ok", None),
    ("secret.create", "secret/spare", "ok", None),
    ("secret.update", "secret/spare", "ok", None),
    ("secret.update", "secret/nope", "refused", "secret nope: no such secret"),
    ("secret.delete", "secret/s1", "refused", "secret s1: used by volume vol"),
    ("secret.delete", "secret/spare", "ok", None),
    ("secret.update", "secret/spare2", "refused", "secret spare2: no such secret"),
]
assert ev[:len(want)] == want, ev
assert [e[0] for e in ev[len(want):]] == ["secret.update"] * 2, ev
assert all(e[2] == "refused" for e in ev[len(want):]), ev
assert d["skipped"] == 0, d
for e in d["events"]:
    assert e["actor"].startswith("uid=%s(" % uid) and " pid=" in e["actor"], e
    assert e["time"].endswith("Z") and len(e["time"]) == 20, e
    assert e["node"] == "audit-n1", e
PY
"$CRYPTVOL" audit > "$T/table"
grep -Eq '^TIME +NODE +ACTOR +EVENT +OBJECT +RESULT +DETAIL$' "$T/table" ||
    fail "audit table header: $(cat "$T/table")"
grep -Eq "^20[0-9-]+T[0-9:]+Z +audit-n1 +uid=$(id -u)\([^)]*\) pid=[0-9]+ +secret.delete +secret/s1 +refused +secret s1: used by volume vol$" "$T/table" ||
    fail "audit table: $(cat "$T/table")"
grep -Eq ' secret.create +secret/s1 +ok +-$' "$T/table" || fail "audit table: $(cat "$T/table")"
[ "$(grep -c '"event":"secret\.' "$LOG")" = 9 ] || fail "audit.log has $(grep -c '"event":"secret\.' "$LOG") secret events, expected 9"
ok "every event, refusals too, with the unix socket's user as actor and the node's name"
all=$(grep -c '' "$LOG")

# ---- since ----------------------------------------------------------------
future=$(( $(date +%s) + 3600 ))
"$CRYPTVOL" audit --since "$future" --json > "$T/out"
[ "$(json 'len(d["events"])' < "$T/out")" = 0 ] || fail "--since in the future: $(cat "$T/out")"
"$CRYPTVOL" audit --since "$(date -u -d @"$future" +%Y-%m-%dT%H:%M:%SZ)" > "$T/out"
[ "$(wc -l < "$T/out")" = 1 ] || fail "--since RFC 3339 in the future: $(cat "$T/out")"
"$CRYPTVOL" audit --since "$(date -d @"$future" +%Y-%m-%dT%H:%M:%S%:z)" --json > "$T/out"
[ "$(json 'len(d["events"])' < "$T/out")" = 0 ] || fail "--since with an offset: $(cat "$T/out")"
for since in 1h 2d 600s 0 "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)"; do
    "$CRYPTVOL" audit --since "$since" --json > "$T/out"
    [ "$(json 'len(d["events"])' < "$T/out")" = "$all" ] || fail "--since $since: $(cat "$T/out")"
done
expect_fail 1 '^cryptvol: since "yesterday": not a time \(use seconds since the epoch' \
    "$CRYPTVOL" audit --since yesterday
out=$(api GET '/v1/audit?since=10x')
[ "$(tail -n 1 <<<"$out")" = 400 ] || fail "bad since: $out"
out=$(api GET '/v1/audit?until=1h')
[ "$(tail -n 1 <<<"$out")" = 400 ] || fail "unknown argument: $out"
out=$(api POST /v1/audit -d '{}')
[ "$(tail -n 1 <<<"$out")" = 405 ] || fail "POST /v1/audit: $out"
ok "--since: epoch, RFC 3339 (Z and offset), ages; the future gives nothing; bad ones refused"

# ---- changing a secret's value leaves the volume alone ---------------------
# The volume is its chain directory: manifest, header and layers.
vd=$(vol_dir "$DATA" vol)
vol_sum() { (cd "$vd" && sha256sum -- *) | sha256sum; }
printf 'survives the secret change' > "$T/data"
nbdcopy "$T/data" "$(uri vol)" || fail "write to vol"
for ((i = 0; i < 100; i++)); do
    [ "$("$CRYPTVOL" volume info vol --json | json 'd["inUse"]')" = False ] && break
    sleep 0.05
done
before=$(vol_sum)
"$CRYPTVOL" secret update s1 --from-file "$T/v2" > /dev/null
[ "$(vol_sum)" = "$before" ] || fail "updating the secret changed vol's files"
if nbdinfo --size "$(uri vol)" > /dev/null 2> "$T/err"; then
    fail "vol was served with a secret that opens no keyslot"
fi
grep -q "server error message: volume vol: wrong key" "$T/err" ||
    fail "attach does not say wrong key: $(grep -m3 -i error "$T/err")"
[ "$(vol_sum)" = "$before" ] || fail "the failed attach changed vol's files"
"$CRYPTVOL" secret update s1 --from-file "$T/v1" > /dev/null
nbdcopy "$(uri vol)" "$T/back" 2>/dev/null || fail "attach with the old value back"
[ "$(head -c 26 "$T/back")" = "survives the secret change" ] || fail "data changed"
"$CRYPTVOL" audit --json > "$T/out"
[ "$(json '[e.get("detail") for e in d["events"] if e["event"] == "secret.update" and e["object"] == "secret/s1" and e["result"] == "ok"]' < "$T/out")" = \
  "['used by vol, whose keyslots are unchanged', 'used by vol, whose keyslots are unchanged']" ] ||
    fail "update of a used secret: $(cat "$T/out")"
ok "secret update: image unchanged, next attach fails with wrong key, the old value opens it again"

# ---- no value anywhere --------------------------------------------------------
for v in "$V1" "$V2"; do
    b64=$(printf %s "$v" | base64 -w0)
    hex=$(printf %s "$v" | od -An -tx1 | tr -d ' \n')
    for form in "$v" "$b64" "${b64%%=*}" "$hex"; do
        ! grep -aqiF -- "$form" "$LOG" || fail "audit.log holds a secret value ($form)"
        ! grep -aqiF -- "$form" "$CVD_DIR/cryptvold.log" || fail "the daemon log holds $form"
        ! grep -aqiF -- "$form" "$T/audit.json" "$T/table" || fail "audit output holds $form"
    done
done
ok "no secret value, base64 or hex in audit.log, the daemon log or the output"

# ---- restart: kept, appended; a readable log refused ---------------------------
before=$("$CRYPTVOL" audit --json | json 'len(d["events"])')
cvd_stop
cvd_start a --tls off
"$CRYPTVOL" secret create s3 --from-file "$T/v1" > /dev/null
"$CRYPTVOL" audit --json > "$T/out"
[ "$(json 'len(d["events"]), d["events"][-1]["object"]' < "$T/out")" = "$((before + 1)) secret/s3" ] ||
    fail "after a restart: $(cat "$T/out")"
cvd_stop
# A crash mid-write leaves a torn last line: skipped, and the next event is
# a line of its own.
printf '{"time":"2026-11-23T10:00:00Z","actor":"tor' >> "$LOG"
cvd_start a --tls off
"$CRYPTVOL" secret delete s3 > /dev/null
"$CRYPTVOL" audit > "$T/out" 2> "$T/err"
grep -Eq ' secret.delete +secret/s3 +ok +-$' "$T/out" || fail "after a torn line: $(cat "$T/out")"
grep -qx "cryptvol: 1 line of the audit log is not a whole event (torn by a crash?) and was skipped" "$T/err" ||
    fail "torn line not reported: $(cat "$T/err")"
"$CRYPTVOL" audit --json > "$T/out"
[ "$(json 'len(d["events"]), d["skipped"]' < "$T/out")" = "$((before + 2)) 1" ] || fail "torn line: $(cat "$T/out")"
cvd_stop
chmod 644 "$LOG"
rc=0
timeout 30 "$CRYPTVOLD" --foreground --data-dir "$DATA" --nbd-listen none \
    --nbd-unix "$CVD_NBD" --admin-socket "$CVD_DIR/admin.sock" --tls off \
    2> "$T/err" || rc=$?
[ "$rc" = 1 ] || fail "cryptvold started with a 0644 audit.log (exit $rc)"
grep -q "audit log $LOG: mode 0644 lets group or others access it; refusing (chmod 600 $LOG)" "$T/err" ||
    fail "startup error: $(cat "$T/err")"
chmod 600 "$LOG"
ok "restart keeps the log; a torn line is skipped; a 0644 log stops the daemon from starting"

# ---- the actor over HTTPS -------------------------------------------------------
"$CRYPTVOL" tls init "$T/tls" > /dev/null
"$CRYPTVOL" tls init "$T/admin" --client-cn ops1 > /dev/null
PORT=$(free_port)
cvd_start h --tls on --tls-dir "$T/tls" --tls-verify-peer --admin-listen "127.0.0.1:$PORT" \
    --admin-tls-dir "$T/admin"
HTTPS=(--url "https://localhost:$PORT" --tls-dir "$T/admin")
"$CRYPTVOL" secret create hs --from-file "$T/v1" "${HTTPS[@]}" > /dev/null
"$CRYPTVOL" secret update hs --from-file "$T/v2" "${HTTPS[@]}" > /dev/null
"$CRYPTVOL" secret delete hs > /dev/null
"$CRYPTVOL" audit --json "${HTTPS[@]}" > "$T/out"
[ "$(json '[e["event"] for e in d["events"]]' < "$T/out")" = "['secret.create', 'secret.update', 'secret.delete']" ] ||
    fail "events over HTTPS: $(cat "$T/out")"
json 'd["events"][0]["actor"]' < "$T/out" | grep -Eq '^https:CN=ops1 127\.0\.0\.1 port [0-9]+$' ||
    fail "HTTPS actor: $(cat "$T/out")"
json 'd["events"][1]["actor"]' < "$T/out" | grep -Eq '^https:CN=ops1 127\.0\.0\.1 port [0-9]+$' ||
    fail "HTTPS actor: $(cat "$T/out")"
json 'd["events"][2]["actor"]' < "$T/out" | grep -Eq "^uid=$(id -u)\(" ||
    fail "unix socket actor beside HTTPS: $(cat "$T/out")"
ok "actor: the admin certificate and address over HTTPS, the user on the unix socket"
cvd_stop
