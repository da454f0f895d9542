#!/usr/bin/env bash
# The CLI's side of issue 14's backup commands (/work/tools/issue14-api.md,
# docs/admin-api.md "Backups"), against tests/tools/fake-admin.py, which
# answers from a script and logs what it is sent.  So this checks what the
# CLI alone decides: the request each command sends (ids checked before
# they reach a URL, options as JSON members), how backup create follows
# the backup in GET /v1/backups/ID (20 ms backing off to 200 ms, progress
# on a terminal, exit 1 with the error of a Failed one, --no-wait, --json),
# how backup restore follows the new volume's job (Pending told, a failed
# restore's reason from the audit log once the volume is gone, WrongKey
# exit 3), that backup verify exits 0 only when ok and prints each
# problem, and completion of backup ids.  The same commands against the
# real daemon are the other tests/backup-*.sh.
source "$(dirname "$0")/lib.sh"

FAKE="$PYTHON $SRC_DIR/tests/tools/fake-admin.py"
SOCK=$T/admin.sock
LOG=$T/requests
export CRYPTVOL_SOCKET=$SOCK
FAKE_PID=

# fake SCRIPT-JSON: a new fake daemon with that script and an empty log.
fake() {
    [ -z "$FAKE_PID" ] || { kill "$FAKE_PID"; wait "$FAKE_PID" 2> /dev/null || true; }
    printf '%s' "$1" > "$T/script"
    : > "$LOG"
    rm -f "$SOCK"
    $FAKE "$SOCK" "$T/script" "$LOG" 2> "$T/fake.err" &
    FAKE_PID=$!
    on_exit "kill $FAKE_PID"
    for _ in $(seq 100); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
    fail "the fake admin API did not start: $(cat "$T/fake.err")"
}
# run CMD...: exit status in $RC, output in $T/out and $T/err (124: still
# running after 20 s, as a wait that never ends would be).
run() {
    RC=0
    timeout 20 "$CRYPTVOL" "$@" > "$T/out" 2> "$T/err" || RC=$?
}
want() { [ "$RC" = "$1" ] || fail "$2: exit $RC, not $1: $(cat "$T/out" "$T/err")"; }
has() { grep -qE -- "$2" "$T/$1" || fail "$3: no line of $1 matches '$2': $(cat "$T/out" "$T/err")"; }
hasnt() { ! grep -qE -- "$2" "$T/$1" || fail "$3: a line of $1 matches '$2': $(cat "$T/$1")"; }
# sent PYTHON-EXPR WHAT: the expression over r (the requests in order:
# dicts of method, path, body, t) holds.
sent() {
    $PYTHON - "$LOG" "$1" <<'EOF' || fail "$2: the requests were: $(cat "$LOG")"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
}
jcheck() {
    $PYTHON -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($1) else 1)" "$T/out" ||
        fail "$2: $(cat "$T/out" "$T/err")"
}

ID=bk-0123456789abcdef
BASE=bk-fedcba9876543210
SNAP=backup-0123456789abcdef
# bk STATE DONE [EXTRA]: a Backup object of volume db1 (progress only
# while InProgress, as the daemon gives it).
bk() {
    printf '{"id":"%s","volume":"db1","snapshot":"%s","uuid":"u","cluster":"","node":"n1","secret":"db1","kekGeneration":null,"type":"luks2","cipher":"aes-xts-plain64","keyBits":512,"sectorSize":4096,"size":16777216,"dataOffset":2097152,"rawSize":18874368,"base":"%s","created":"2026-12-01T10:00:00Z","finished":null,"state":"%s","error":null,"bytesHeld":18874368,"bytesNew":3145728,"blockSize":1048576,"blocks":18,"progress":%s%s}' \
        "$ID" "$SNAP" "$BASE" "$1" "$([ "$1" = InProgress ] && printf '{"done":%d,"total":1000}' "$2" || echo null)" "${3:-}"
}
ok_ans() { printf '{"status":%s,"body":%s}' "$1" "$2"; }

# ---- mistakes: usage errors and bad ids, nothing sent ------------------------
fake '{}'
run backup create
want 2 "backup create without VOL"
has err '^cryptvol backup create: needs VOL' "backup create without VOL"
run backup restore "$ID"
want 2 "backup restore without NEW"
has err '^cryptvol backup restore: needs ID NEW \(NEW is missing\)' "backup restore without NEW"
run backup list db1 db2
want 2 "backup list with two volumes"
has err '^cryptvol backup list: unexpected argument "db2"' "backup list with two volumes"
run backup create db1 --snapshot db1@s1
want 2 "backup create --snapshot VOL@SNAP"
has err "^cryptvol backup create: --snapshot takes the snapshot's name alone" "backup create --snapshot VOL@SNAP"
for cmd in verify restore delete; do
    for id in db1 bk-0123 bk-0123456789ABCDEF bk-0123456789abcdefa ../../v1/x; do
        # shellcheck disable=SC2086
        run backup $cmd "$id" new1
        [ $cmd = restore ] || run backup $cmd "$id"
        want 1 "backup $cmd $id"
        has err "^cryptvol: backup \"${id//./\\.}\": not a backup id \(bk- and 16 lower-case hex digits" "backup $cmd $id"
    done
done
run backup restore "$ID" -new
want 2 "backup restore to a name starting with -"
run backup restore "$ID" 'a/b'
want 1 "backup restore to a bad name"
has err '^cryptvol: volume "a/b": not a valid name' "backup restore to a bad name"
run backup restore "$ID" new1 --secret 'x y'
want 1 "backup restore --secret with a bad name"
has err '^cryptvol: secret "x y": not a valid name' "backup restore --secret with a bad name"
run backup verify "$ID" --class c
want 2 "backup verify --class"
run --json backup verify db1
want 1 "a bad id, --json"
has err '^\{"error":"backup \\"db1\\": not a backup id .*","code":"BadRequest"\}$' "a bad id, --json"
sent 'r == []' "mistakes sent requests"
ok "usage errors and ids that are no backup id's are refused naming the problem, nothing sent"

# ---- backup target -------------------------------------------------------------
fake '{"GET /v1/backup/target": [{"status":200,"body":{"path":"/mnt/b","backups":3,"blocks":40,"bytes":41943040,"freeBytes":1073741824}},
                                 {"status":404,"body":{"error":"no backup target is set: backup-target in cryptvold.conf or --backup-target","code":"NoBackupTarget"}}]}'
run backup target
want 0 "backup target"
has out '^backup target /mnt/b$' "backup target"
has out '^backups: +3$' "backup target"
has out '^blocks: +40 \(40.0 MiB\)$' "backup target"
has out '^free: +1.0 GiB$' "backup target"
run backup target
want 1 "no backup target"
has err '^cryptvol: no backup target is set: backup-target in cryptvold.conf or --backup-target$' "no backup target"
run --json backup target
want 1 "no backup target, --json"
has err '"code":"NotFound"' "no backup target, --json"
fake '{"GET /v1/backup/target": [{"status":200,"body":{"path":"/mnt/b","backups":3,"blocks":40,"bytes":41943040,"freeBytes":1073741824}}]}'
run backup target --json
jcheck 'd["path"] == "/mnt/b" and d["freeBytes"] == 1073741824' "backup target --json is the API's object"
ok "backup target: path, counts, free space (and --json, and no target)"

# ---- backup create: followed in GET /v1/backups/ID ------------------------------
ACCEPTED=$(ok_ans 202 "$(bk InProgress 0)")
fake "{\"POST /v1/volumes/db1/backups\": [$ACCEPTED],
       \"GET /v1/backups/$ID\": [$(ok_ans 200 "$(bk InProgress 300)"), $(ok_ans 200 "$(bk InProgress 700)"),
                                 $(ok_ans 200 "$(bk Completed 1000)")]}"
run backup create db1
want 0 "backup create"
has out "^backup $ID of db1@$SNAP completed \\(incremental to $BASE\\): 18.0 MiB held, 3.0 MiB new$" "backup create"
hasnt err . "backup create, not on a terminal: nothing on stderr"
sent 'r[0]["method"] == "POST" and r[0]["path"] == "/v1/volumes/db1/backups" and r[0]["body"] == {}' "create's request"
sent '[x["method"] + " " + x["path"] for x in r[1:]] == ["GET /v1/backups/'$ID'"] * 3' "the backup is followed by GET /v1/backups/ID until Completed"
sent 'all(0.015 <= b["t"] - a["t"] <= 0.6 for a, b in zip(r[1:], r[2:]))' "polls 20 to 200 ms apart"
sent 'r[3]["t"] - r[2]["t"] >= r[2]["t"] - r[1]["t"]' "polls back off"
run backup create db1 --snapshot nightly
sent 'r[-2]["body"] == {"snapshot": "nightly"}' "--snapshot is sent"
run backup create db1 --snapshot 'a b'
want 1 "--snapshot with a bad name"
has err '^cryptvol: snapshot "a b": not a valid name' "--snapshot with a bad name"
# On a terminal: progress from the backup's progress member.
P700=$(ok_ans 200 "$(bk InProgress 700)")
fake "{\"POST /v1/volumes/db1/backups\": [$ACCEPTED],
       \"GET /v1/backups/$ID\": [$(ok_ans 200 "$(bk InProgress 300)"), $P700, $P700, $P700, $P700,
                                 $(ok_ans 200 "$(bk Completed 1000)")]}"
RC=0
$PYTHON "$SRC_DIR/tests/tools/pty-run.py" -- "$CRYPTVOL" backup create db1 > "$T/out" 2>&1 || RC=$?
want 0 "backup create on a terminal"
has out "^backing up db1@$SNAP: +70%  700 B of 1000 B" "progress on a terminal"
has out "^backing up db1@$SNAP: 100%  1000 B of 1000 B .*done$" "progress on a terminal"
# --json: the backup after it; --no-wait: the 202 answer, no GET.
fake "{\"POST /v1/volumes/db1/backups\": [$ACCEPTED],
       \"GET /v1/backups/$ID\": [$(ok_ans 200 "$(bk Completed 1000)")]}"
run backup create db1 --json
want 0 "backup create --json"
jcheck 'd["id"] == "'$ID'" and d["state"] == "Completed"' "backup create --json prints the final backup"
run backup create db1 --no-wait
want 0 "backup create --no-wait"
has out "^backup $ID of db1@$SNAP started \\(cryptvol backup list db1 shows its progress\\)$" "--no-wait"
run backup create db1 --no-wait --json
jcheck 'd["id"] == "'$ID'" and d["state"] == "InProgress"' "--no-wait --json prints the 202 answer"
sent '[x["method"] for x in r[2:]] == ["POST", "POST"]' "--no-wait polled"
ok "backup create follows the backup 20-200 ms apart (progress on a terminal; --json, --no-wait)"

FULL="backup target /mnt/b is full: block 3f/2a/3f2a...: No space left on device"
fake "{\"POST /v1/volumes/db1/backups\": [$ACCEPTED],
       \"GET /v1/backups/$ID\": [$(ok_ans 200 "$(bk InProgress 300)"), $(ok_ans 200 "$(bk Failed 300 | sed "s|\"error\":null|\"error\":\"$FULL\"|")")]}"
run backup create db1
want 1 "a Failed backup"
has err "^cryptvol: backup $ID of volume db1 failed: $FULL\$" "a Failed backup"
hasnt out . "a Failed backup prints nothing on stdout"
run --json backup create db1
want 1 "a Failed backup, --json"
has err '^\{"error":"backup '$ID' of volume db1 failed: backup target /mnt/b is full: .*","code":"Error"\}$' "a Failed backup, --json"
fake "{\"POST /v1/volumes/db1/backups\": [$ACCEPTED]}"
run backup create db1
want 1 "the backup gone while followed"
has err "^cryptvol: backup $ID of volume db1: gone while backing up db1@$SNAP \\(it was deleted" "the backup gone while followed"
fake '{"POST /v1/volumes/db1/backups": [{"status":400,"body":{"error":"volume db1: a clone with its own format cannot be backed up: flatten it first","code":"BadRequest"}}]}'
run backup create db1
want 1 "a refused backup"
has err '^cryptvol: volume db1: a clone with its own format cannot be backed up: flatten it first$' "a refused backup"
ok "a Failed backup: its error, exit 1 (JSON with --json); gone or refused: said"

# ---- backup list --------------------------------------------------------------
FAILED=$(bk Failed 0 | sed 's|"error":null|"error":"cancelled: cryptvold stopped"|; s|bk-0123456789abcdef|bk-00000000000000aa|; s|"volume":"db1"|"volume":"web-server"|')
fake "{\"GET /v1/backups\": [$(ok_ans 200 "{\"backups\":[$(bk InProgress 400),$(bk Completed 1000),$FAILED]}")],
       \"GET /v1/backups?volume=db1\": [$(ok_ans 200 "{\"backups\":[$(bk Completed 1000)]}")],
       \"GET /v1/backups?volume=none\": [$(ok_ans 200 '{"backups":[]}')]}"
run backup list
want 0 "backup list"
has out '^ID +VOLUME +SNAPSHOT +CREATED +SIZE +NEW +STATE$' "backup list's header"
has out "^$ID +db1 +$SNAP +2026-12-01T10:00:00Z +16.0 MiB +3.0 MiB +InProgress 40%\$" "an InProgress backup"
has out "^$ID +db1 +$SNAP +2026-12-01T10:00:00Z +16.0 MiB +3.0 MiB +Completed\$" "a Completed backup"
has out "^bk-00000000000000aa +web-server +$SNAP .* +Failed: cancelled: cryptvold stopped\$" "a Failed backup with why"
[ "$(awk 'NR > 1 { print index($0, "2026-") }' "$T/out" | sort -u | wc -l)" = 1 ] ||
    fail "backup list's columns are not aligned: $(cat "$T/out")"
run backup list db1
sent 'r[-1]["path"] == "/v1/backups?volume=db1"' "backup list VOL asks for that volume's"
run backup list none
has out '^volume none has no backups in the target$' "backup list of none"
run backup list 'x&y=1'
want 1 "backup list of a bad name"
has err '^cryptvol: volume "x&y=1": not a valid name' "backup list of a bad name"
run backup list --json
jcheck 'len(d["backups"]) == 3 and d["backups"][0]["progress"]["done"] == 400' "backup list --json is the API's object"
ok "backup list: ID VOLUME SNAPSHOT CREATED SIZE NEW STATE (progress, why it failed), of a volume, --json"

# ---- backup verify --------------------------------------------------------------
GOOD='{"id":"'$ID'","ok":true,"authenticated":true,"authError":null,"blocks":18,"bytes":18874368,"problems":[]}'
BAD='{"id":"'$ID'","ok":false,"authenticated":true,"authError":null,"blocks":18,"bytes":17825792,"problems":[{"offset":4194304,"sha256":"aa11","problem":"checksum"},{"offset":6291456,"sha256":"bb22","problem":"missing"},{"offset":7340032,"sha256":"cc33","problem":"size"}]}'
UNAUTH='{"id":"'$ID'","ok":false,"authenticated":false,"authError":"backup '$ID': its manifest does not match its MAC: changed, or not made with this volume'"'"'s key","blocks":18,"bytes":18874368,"problems":[]}'
fake "{\"POST /v1/backups/$ID/verify\": [$(ok_ans 200 "$GOOD"), $(ok_ans 200 "$BAD"), $(ok_ans 200 "$UNAUTH"), $(ok_ans 200 "$BAD")]}"
run backup verify "$ID"
want 0 "verify of a good backup"
has out "^backup $ID: manifest authenticated\$" "verify of a good backup"
has out "^backup $ID: 18 blocks \\(18.0 MiB\\) reread\$" "verify of a good backup"
has out "^backup $ID is intact\$" "verify of a good backup"
sent 'r[0]["body"] == {}' "verify's request"
run backup verify "$ID" --secret old-key
want 1 "verify finding problems"
has out "^backup $ID: block at offset 4194304 \\(sha256 aa11\\): checksum mismatch" "a changed block"
has out "^backup $ID: block at offset 6291456 \\(sha256 bb22\\): missing from the target\$" "a missing block"
has out "^backup $ID: block at offset 7340032 \\(sha256 cc33\\): of another size" "a block of another size"
hasnt out "intact" "verify finding problems"
has err "^cryptvol: backup $ID: 3 block problems: it does not restore as it is\$" "verify finding problems"
sent 'r[1]["body"] == {"secret": "old-key"}' "verify --secret is sent"
run backup verify "$ID"
want 1 "verify of a manifest that does not authenticate"
has out "^backup $ID: manifest NOT authenticated: backup $ID: its manifest does not match its MAC" "verify of a manifest that does not authenticate"
has err "^cryptvol: backup $ID: its manifest is not authenticated: .* \\(and 0 block problems\\)\$" "verify of a manifest that does not authenticate"
run backup verify "$ID" --json
want 1 "verify --json finding problems"
jcheck 'd["ok"] is False and len(d["problems"]) == 3' "verify --json prints the API's object"
has err '"code":"Error"' "verify --json finding problems"
fake '{"POST /v1/backups/'$ID'/verify": [{"status":404,"body":{"error":"backup '$ID': no such backup","code":"NotFound"}}]}'
run backup verify "$ID"
want 1 "verify of no such backup"
has err "^cryptvol: backup $ID: no such backup\$" "verify of no such backup"
ok "backup verify: exit 0 only when ok; each problem named by offset and checksum; not authenticated said"

# ---- backup restore: a new volume, followed in its job -------------------------------
RVOL='"name":"r1","size":16777216,"type":"luks2","cipher":"aes-xts-plain64","keyBits":512,"encrypted":true,"secret":"db1","sectorSize":4096,"dataOffset":2097152,"uuid":"u","path":"p","created":"2026-12-01T10:00:00Z"'
RJOB='{"kind":"restore","target":"'$ID'","state":"%s","done":%d,"total":1000,"started":"2026-12-01T10:00:00Z"%s}'
rvol() { printf "{$RVOL,\"state\":\"%s\",\"job\":$RJOB}" "$1" "$2" "$3" "${4:-}"; }
fake "{\"POST /v1/backups/$ID/restore\": [$(ok_ans 202 "$(rvol Restoring Running 0)")],
       \"GET /v1/volumes/r1\": [$(ok_ans 200 "$(rvol Restoring Running 500)"), $(ok_ans 200 "$(rvol Available Completed 1000)")]}"
run backup restore "$ID" r1 --secret db1-old --class gold
want 0 "backup restore"
has out "^volume r1 restored from backup $ID: Available\$" "backup restore"
hasnt err . "backup restore, not on a terminal: nothing on stderr"
sent 'r[0]["method"] == "POST" and r[0]["path"] == "/v1/backups/'$ID'/restore" and r[0]["body"] == {"name": "r1", "secret": "db1-old", "class": "gold"}' "restore's request"
sent '[x["method"] + " " + x["path"] for x in r[1:]] == ["GET /v1/volumes/r1"] * 2' "the restore is followed in GET /v1/volumes/NEW"
run backup restore "$ID" r1
sent 'r[-2]["body"] == {"name": "r1"}' "restore without options sends the name alone"
run backup restore "$ID" r1 --json
jcheck 'd["name"] == "r1" and d["state"] == "Available"' "backup restore --json prints the volume after it"
run backup restore "$ID" r1 --no-wait
want 0 "backup restore --no-wait"
has out "^restoring r1 from backup $ID started \\(cryptvol volume info r1 shows its progress\\)\$" "restore --no-wait"
sent 'r[-1]["method"] == "POST"' "restore --no-wait polled"
fake "{\"POST /v1/backups/$ID/restore\": [$(ok_ans 202 "$(rvol Restoring Running 0)")],
       \"GET /v1/volumes/r1\": [$(ok_ans 200 "$(rvol Restoring Running 300)"), $(ok_ans 200 "$(rvol Restoring Running 700)"),
                                $(ok_ans 200 "$(rvol Restoring Running 700)"), $(ok_ans 200 "$(rvol Restoring Running 700)"),
                                $(ok_ans 200 "$(rvol Restoring Running 700)"), $(ok_ans 200 "$(rvol Available Completed 1000)")]}"
RC=0
$PYTHON "$SRC_DIR/tests/tools/pty-run.py" -- "$CRYPTVOL" backup restore "$ID" r1 > "$T/out" 2>&1 || RC=$?
want 0 "backup restore on a terminal"
has out "^restoring r1 from backup $ID: +70%  700 B of 1000 B" "restore's progress on a terminal"
ok "backup restore sends name, secret, class and follows the volume's job (progress on a terminal; --json, --no-wait)"

PEND="{$RVOL,\"state\":\"Pending\",\"reason\":\"waiting for secret \\\"db1\\\"\",\"job\":null}"
fake "{\"POST /v1/backups/$ID/restore\": [$(ok_ans 202 "$PEND")]}"
run backup restore "$ID" r1
want 0 "a restore waiting for its secret"
has err "^cryptvol: warning: volume r1 is Pending: waiting for secret \"db1\"; it is restored from backup $ID once the secret exists: cryptvol secret create db1 --from-file F\$" "a Pending restore"
has out '^state: +Pending' "a Pending restore prints the volume"
sent 'len(r) == 1' "a Pending restore is not followed"
fake '{"POST /v1/backups/'$ID'/restore": [{"status":409,"body":{"error":"backup '$ID': secret \"k2\" does not open its header","code":"WrongKey"}}]}'
run backup restore "$ID" r1 --secret k2
want 3 "a restore with a secret that does not open the header"
has err "^cryptvol: backup $ID: secret \"k2\" does not open its header\$" "a wrong secret"
run --json backup restore "$ID" r1 --secret k2
want 3 "a wrong secret, --json"
has err '"code":"WrongKey"' "a wrong secret, --json"
WHY="backup $ID: block at offset 4194304 (sha256 aa11): checksum mismatch"
# As the daemon records it (object backup/ID, detail "volume NAME: ..."),
# after a failed restore of the same backup into another volume.
ev() { printf '{"time":"t","node":"n1","actor":"a","event":"backup.restore","object":"backup/%s","result":"%s","detail":"volume %s: %s"}' "$ID" "$1" "$2" "${3//\"/\\\"}"; }
AUDIT=$(ok_ans 200 "{\"events\":[$(ev refused r1 "$WHY"),$(ev refused r10 "other"),$(ev refused r "other")],\"skipped\":0}")
# The CLI asks for the events since a second before it started.
now=$(date +%s)
fake "{\"POST /v1/backups/$ID/restore\": [$(ok_ans 202 "$(rvol Restoring Running 0)")],
       \"GET /v1/volumes/r1\": [$(ok_ans 200 "$(rvol Restoring Running 300)"), {\"status\":404,\"body\":{\"error\":\"volume r1: no such volume\",\"code\":\"NotFound\"}}],
       \"GET /v1/audit?since=$((now - 1))\": [$AUDIT], \"GET /v1/audit?since=$now\": [$AUDIT],
       \"GET /v1/audit?since=$((now + 1))\": [$AUDIT]}"
run backup restore "$ID" r1
want 1 "a restore that fails"
has err "^cryptvol: volume r1: restoring from backup $ID failed, and the volume was removed: backup $ID: block at offset 4194304 \\(sha256 aa11\\): checksum mismatch\$" "a failed restore names the block (from the audit log)"
fake "{\"POST /v1/backups/$ID/restore\": [$(ok_ans 202 "$(rvol Restoring Running 0)")],
       \"GET /v1/volumes/r1\": [{\"status\":404,\"body\":{\"error\":\"volume r1: no such volume\",\"code\":\"NotFound\"}}]}"
run backup restore "$ID" r1
want 1 "a restore that fails, no audit event"
has err "^cryptvol: volume r1: gone while restoring r1 from backup $ID" "a failed restore without an audit event"
ok "backup restore: Pending told with the secret to create; wrong secret exit 3; a failed restore's reason"

# ---- backup delete --------------------------------------------------------------
fake "{\"DELETE /v1/backups/$ID\": [$(ok_ans 200 '{"id":"'$ID'","freedBytes":3145728}'),
                                   {\"status\":409,\"body\":{\"error\":\"backup target /mnt/b: a backup, restore or verify holds its lock\",\"code\":\"Conflict\"}}]}"
run backup delete "$ID"
want 0 "backup delete"
has out "^backup $ID deleted: 3.0 MiB freed \\(the blocks no other backup uses\\)\$" "backup delete"
sent 'r[0]["method"] == "DELETE" and r[0]["path"] == "/v1/backups/'$ID'" and r[0]["body"] is None' "delete's request"
run --json backup delete "$ID"
want 1 "a refused delete"
has err '"code":"Conflict"' "a refused delete"
ok "backup delete: DELETE /v1/backups/ID, bytes freed; a refusal"

# ---- completion --------------------------------------------------------------
fake "{\"GET /v1/backups\": [$(ok_ans 200 "{\"backups\":[$(bk Completed 1000),$FAILED]}")],
       \"GET /v1/volumes\": [$(ok_ans 200 '[{"name":"db1"},{"name":"db2"},{"name":"web"}]')],
       \"GET /v1/volumes/db1/snapshots\": [$(ok_ans 200 '{"snapshots":[{"name":"s1"},{"name":"s2"}]}')]}"
c() { "$CRYPTVOL" __complete "$@" | tr '\n' ' ' | sed 's/ $//'; }
[ "$(c backup "")" = "target create list verify restore delete" ] || fail "backup <TAB>: $(c backup "")"
[ "$(c backup verify "")" = "$ID bk-00000000000000aa" ] || fail "backup verify <TAB>: $(c backup verify "")"
[ "$(c backup restore bk-0)" = "$ID bk-00000000000000aa" ] || fail "backup restore bk-0<TAB>: $(c backup restore bk-0)"
[ "$(c backup delete bk-00)" = "bk-00000000000000aa" ] || fail "backup delete bk-00<TAB>: $(c backup delete bk-00)"
[ "$(c backup create d)" = "db1 db2" ] || fail "backup create d<TAB> (an existing volume): $(c backup create d)"
[ "$(c backup list w)" = "web" ] || fail "backup list w<TAB>: $(c backup list w)"
[ "$(c backup create db1 --snapshot "")" = "s1 s2" ] || fail "backup create db1 --snapshot <TAB>: $(c backup create db1 --snapshot "")"
[ "$(c backup restore --s)" = "--secret --socket" ] || fail "backup restore --s<TAB>: $(c backup restore --s)"
ok "completion: backup ids from the daemon, create's existing volume and its snapshots"
