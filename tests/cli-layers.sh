#!/usr/bin/env bash
# The CLI's side of issue 10's contract (snapshots, clones, flatten, raw
# LUKS import and export; /work/tools/issue10-api.md, docs/admin-api.md),
# against tests/tools/fake-admin.py, which answers from a script and logs
# what it is sent.  So this checks what the CLI alone decides: the request
# each command sends (VOL@SNAP split, FILE made absolute, options as JSON
# members), how it follows a job (GET every 200 ms while Running, progress
# on a terminal, exit 0 on Completed, the job's error and exit 1 on
# Failed, --no-wait, --json), and what it prints of each answer, including
# volume info's parent, snapshots, needsSecrets and job.  The same commands
# against the real daemon are in tests/cli-conventions.table.
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
# run CMD...: the CLI's exit status in $RC, its output in $T/out and $T/err
# (124: it still ran after 20 s, as a wait that never ends would).
run() {
    RC=0
    timeout 20 "$CRYPTVOL" "$@" > "$T/out" 2> "$T/err" || RC=$?
}
# want STATUS WHAT: the last run exited STATUS.
want() {
    [ "$RC" = "$1" ] || fail "$2: exit $RC, not $1: $(cat "$T/out" "$T/err")"
}
has() { grep -qE -- "$2" "$T/$1" || fail "$3: no line of $1 matches '$2': $(cat "$T/out" "$T/err")"; }
hasnt() { ! grep -qE -- "$2" "$T/$1" || fail "$3: a line of $1 matches '$2': $(cat "$T/$1")"; }
# sent PYTHON-EXPR WHAT: the expression over r (the requests, in order:
# dicts of method, path, body, t) holds.
sent() {
    $PYTHON - "$LOG" "$1" <<'EOF' || fail "$2: the requests were: $(cat "$LOG")"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
}

JOB_RUNNING='{"kind":"merge","target":"s1","state":"Running","done":%d,"total":1000,"started":"2026-12-01T10:00:00Z"}'
job() { printf "$JOB_RUNNING" "$1"; }
VOL='"name":"db1","size":16777216,"type":"luks2","cipher":"aes-xts-plain64","keyBits":512,"encrypted":true,"state":"Available","secret":"db1","sectorSize":4096,"dataOffset":16777216,"uuid":"u","path":"p","created":"2026-12-01T09:00:00Z"'
vol_with_job() { printf '{%s,"snapshots":["s2"],"job":%s}' "$VOL" "$1"; }
COMPLETED='{"kind":"merge","target":"s1","state":"Completed","done":1000,"total":1000,"started":"2026-12-01T10:00:00Z","finished":"2026-12-01T10:00:05Z"}'
FAILED='{"kind":"merge","target":"s1","state":"Failed","done":400,"total":1000,"started":"2026-12-01T10:00:00Z","finished":"2026-12-01T10:00:05Z","error":"layer-000002: No space left on device"}'
ACCEPTED="{\"status\":202,\"body\":{\"volume\":\"db1\",\"job\":$(job 0)}}"

# ---- VOL@SNAP: a usage error before anything is sent -------------------------
fake '{}'
for arg in db1 db1@ @s1; do
    for cmd in "snapshot create" "snapshot delete" "snapshot rollback"; do
        # shellcheck disable=SC2086
        run $cmd "$arg"
        want 2 "$cmd $arg"
        has err "^cryptvol $cmd: expected VOL@SNAP, not \"$arg\" \(" "$cmd $arg"
    done
done
run volume clone db1 c1
want 2 "volume clone db1 c1"
has err '^cryptvol volume clone: expected VOL@SNAP, not "db1" \(no @SNAP' "volume clone db1"
run snapshot create db1@s1@x
want 1 "a snapshot name with @"
has err '^cryptvol: snapshot "s1@x": not a valid name' "a snapshot name with @"
run volume export db1 out --snapshot db1@s1
want 2 "export --snapshot VOL@SNAP"
has err "^cryptvol volume export: --snapshot takes the snapshot's name alone" "export --snapshot VOL@SNAP"
run volume clone db1@s1 c1 --type luks1
want 2 "clone --type without --secret"
has err '^cryptvol volume clone: --type goes with --secret' "clone --type without --secret"
run volume clone db1@s1 c1 --secret k --class gold
want 2 "clone --secret and --class"
has err '^cryptvol volume clone: --secret or --class, not both' "clone --secret and --class"
run volume import db3 dir/ --secret k
want 2 "import of a directory"
has err '^cryptvol volume import: dir/: names a directory' "import of a directory"
run volume import db3 img --secret k --url https://127.0.0.1:1 --tls-dir "$T"
want 2 "a relative FILE with --url"
has err '^cryptvol volume import: img: a relative path with --url' "a relative FILE with --url"
sent 'r == []' "usage errors sent requests"
ok "VOL@SNAP and option mistakes are usage errors naming the problem, nothing sent"

# ---- snapshot create, list, rollback ---------------------------------------------
fake '{"POST /v1/volumes/db1/snapshots": [{"status": 201, "body": {"volume": "db1", "name": "s1", "created": "2026-12-01T10:00:00Z", "allocated": 1048576}}],
       "GET /v1/volumes/db1/snapshots": [{"status": 200, "body": {"snapshots": [{"name": "s1", "created": "2026-12-01T10:00:00Z", "allocated": 1048576, "clones": ["c1", "c2"]}, {"name": "nightly-2", "created": "2026-12-01T11:00:00Z", "allocated": 0, "clones": []}]}}],
       "GET /v1/volumes/empty/snapshots": [{"status": 200, "body": {"snapshots": []}}],
       "POST /v1/volumes/db1/snapshots/s1/rollback": [{"status": 200, "body": {'"$VOL"'}},
            {"status": 409, "body": {"error": "volume db1: served to 127.0.0.1:4000 (cn:a): rollback needs it detached", "code": "Conflict"}}]}'
run snapshot create db1@s1
want 0 "snapshot create"
has out '^snapshot db1@s1 created 2026-12-01T10:00:00Z \(1.0 MiB on disk\)$' "snapshot create"
sent 'r[0]["method"] == "POST" and r[0]["path"] == "/v1/volumes/db1/snapshots" and r[0]["body"] == {"name": "s1"}' "snapshot create's request"
run snapshot list db1
want 0 "snapshot list"
has out '^NAME +CREATED +ALLOCATED +CLONES$' "snapshot list"
has out '^s1 +2026-12-01T10:00:00Z +1.0 MiB +c1, c2$' "snapshot list"
has out '^nightly-2 +2026-12-01T11:00:00Z +0 B +-$' "snapshot list"
run snapshot list db1 --json
$PYTHON -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["snapshots"][0]["clones"] == ["c1","c2"]' "$T/out" ||
    fail "snapshot list --json is not the API's object: $(cat "$T/out")"
run snapshot list empty
has out '^volume empty has no snapshots$' "snapshot list of none"
run snapshot rollback db1@s1
want 0 "snapshot rollback"
has out '^volume db1 rolled back to snapshot s1 ' "snapshot rollback"
sent 'r[-1]["method"] == "POST" and r[-1]["path"] == "/v1/volumes/db1/snapshots/s1/rollback" and r[-1]["body"] == {}' "rollback's request"
run --json snapshot rollback db1@s1
want 1 "a refused rollback"
[ ! -s "$T/out" ] || fail "a refused rollback printed on stdout: $(cat "$T/out")"
has err '^\{"error":"volume db1: served to 127.0.0.1:4000 \(cn:a\): rollback needs it detached","code":"Conflict"\}$' "a refused rollback"
ok "snapshot create, list (table, --json, none), rollback (and the daemon's refusal, as JSON)"

# ---- snapshot delete: the merge job, followed ---------------------------------
fake "{\"DELETE /v1/volumes/db1/snapshots/s1\": [$ACCEPTED],
       \"GET /v1/volumes/db1\": [{\"status\":200,\"body\":$(vol_with_job "$(job 300)")},
                                {\"status\":200,\"body\":$(vol_with_job "$(job 700)")},
                                {\"status\":200,\"body\":$(vol_with_job "$COMPLETED")}]}"
start=$(date +%s%N)
run snapshot delete db1@s1
want 0 "snapshot delete"
has out '^snapshot db1@s1 deleted \(its blocks merged into the next layer\)$' "snapshot delete"
sent 'r[0]["method"] == "DELETE" and r[0]["path"] == "/v1/volumes/db1/snapshots/s1"' "delete's request"
sent '[x["method"] + " " + x["path"] for x in r[1:]] == ["GET /v1/volumes/db1"] * 3' "the job is followed by GET /v1/volumes/db1 until Completed"
sent 'all(0.015 <= b["t"] - a["t"] <= 0.6 for a, b in zip(r[1:], r[2:]))' "polls 20 to 200 ms apart"
sent 'r[3]["t"] - r[2]["t"] >= r[2]["t"] - r[1]["t"]' "polls back off"
hasnt err . "snapshot delete, not on a terminal: no progress"
# On a terminal: progress, from the job's done and total (redrawn at most
# every 0.2 s: the polls back off from 20 ms, so 700 is seen a while).
J700="{\"status\":200,\"body\":$(vol_with_job "$(job 700)")}"
fake "{\"DELETE /v1/volumes/db1/snapshots/s1\": [$ACCEPTED],
       \"GET /v1/volumes/db1\": [{\"status\":200,\"body\":$(vol_with_job "$(job 300)")},
                                $J700, $J700, $J700, $J700,
                                {\"status\":200,\"body\":$(vol_with_job "$COMPLETED")}]}"
RC=0
$PYTHON "$SRC_DIR/tests/tools/pty-run.py" -- "$CRYPTVOL" snapshot delete db1@s1 > "$T/out" 2>&1 || RC=$?
want 0 "snapshot delete on a terminal"
has out '^merging snapshot db1@s1: +70%  700 B of 1000 B' "progress on a terminal"
has out '^merging snapshot db1@s1: 100%  1000 B of 1000 B .*done$' "progress on a terminal"
# --json: the volume after the job.
fake "{\"DELETE /v1/volumes/db1/snapshots/s1\": [$ACCEPTED],
       \"GET /v1/volumes/db1\": [{\"status\":200,\"body\":$(vol_with_job "$COMPLETED")}]}"
run snapshot delete db1@s1 --json
want 0 "snapshot delete --json"
$PYTHON -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["name"] == "db1" and d["job"]["state"] == "Completed"' "$T/out" ||
    fail "snapshot delete --json does not print the final volume: $(cat "$T/out")"
# --no-wait: the 202 answer, no GET.
run snapshot delete db1@s1 --no-wait
want 0 "snapshot delete --no-wait"
has out '^merging snapshot db1@s1 started \(cryptvol volume info db1 shows its progress\)$' "--no-wait"
run snapshot delete db1@s1 --no-wait --json
$PYTHON -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["volume"] == "db1" and d["job"]["state"] == "Running"' "$T/out" ||
    fail "--no-wait --json does not print the 202 answer: $(cat "$T/out")"
sent '[x["method"] for x in r[2:]] == ["DELETE", "DELETE"]' "--no-wait polled"
ok "snapshot delete follows the merge 200 ms apart (progress on a terminal; --json, --no-wait)"

# ---- a job that fails, or is no longer there ------------------------------------
fake "{\"DELETE /v1/volumes/db1/snapshots/s1\": [$ACCEPTED],
       \"GET /v1/volumes/db1\": [{\"status\":200,\"body\":$(vol_with_job "$(job 300)")},
                                {\"status\":200,\"body\":$(vol_with_job "$FAILED")}]}"
run snapshot delete db1@s1
want 1 "a failed merge"
has err '^cryptvol: volume db1: merging snapshot db1@s1 failed: layer-000002: No space left on device$' "a failed merge"
hasnt out . "a failed merge"
run --json snapshot delete db1@s1
want 1 "a failed merge, --json"
has err '^\{"error":"volume db1: merging snapshot db1@s1 failed: layer-000002: No space left on device","code":"Error"\}$' "a failed merge, --json"
fake "{\"DELETE /v1/volumes/db1/snapshots/s1\": [$ACCEPTED],
       \"GET /v1/volumes/db1\": [{\"status\":200,\"body\":$(vol_with_job '{"kind":"flatten","state":"Running","done":0,"total":5}')}]}"
run snapshot delete db1@s1
want 1 "another job shown"
has err '^cryptvol: volume db1: merging snapshot db1@s1: the daemon shows no such job any more' "another job shown"
fake "{\"DELETE /v1/volumes/db1/snapshots/s1\": [$ACCEPTED]}"
run snapshot delete db1@s1
want 1 "the volume gone while followed"
has err '^cryptvol: volume db1: gone while merging snapshot db1@s1 \(the job failed and removed it, or it was deleted' "the volume gone while followed"
fake "{\"DELETE /v1/volumes/db1/snapshots/s1\": [$ACCEPTED],
       \"GET /v1/volumes/db1\": [{\"status\":500,\"body\":{\"error\":\"metadata store: disk I/O error\",\"code\":\"InternalError\"}}]}"
run snapshot delete db1@s1
want 1 "a poll that fails"
has err '^cryptvol: merging snapshot db1@s1: following the job \(it goes on in the daemon: cryptvol volume info db1\): metadata store: disk I/O error$' "a poll that fails"
ok "a Failed job: its error, exit 1 (JSON with --json); a job or volume gone: said"

# ---- clone, flatten --------------------------------------------------------------
CLONE="{\"name\":\"c1\",\"size\":16777216,\"type\":\"luks1\",\"encrypted\":true,\"state\":\"Available\",\"secret\":\"k\",\"parent\":\"db1@s1\",\"snapshots\":[],\"needsSecrets\":[\"k\",\"db1\"]}"
FLAT_RUN='{"kind":"flatten","state":"Running","done":4096,"total":16777216,"started":"2026-12-01T10:00:00Z"}'
FLAT_DONE='{"kind":"flatten","state":"Completed","done":16777216,"total":16777216,"started":"2026-12-01T10:00:00Z","finished":"2026-12-01T10:01:00Z"}'
fake "{\"POST /v1/volumes\": [{\"status\":201,\"body\":$CLONE}],
       \"POST /v1/volumes/c1/flatten\": [{\"status\":202,\"body\":{\"volume\":\"c1\",\"job\":$FLAT_RUN}}],
       \"GET /v1/volumes/c1\": [{\"status\":200,\"body\":${CLONE%\}},\"job\":$FLAT_RUN}},
                               {\"status\":200,\"body\":{\"name\":\"c1\",\"needsSecrets\":[\"k\"],\"job\":$FLAT_DONE}}]}"
run volume clone db1@s1 c1 --secret k --type luks1
want 0 "volume clone"
sent 'r[0]["path"] == "/v1/volumes" and r[0]["body"] == {"name": "c1", "parent": "db1@s1", "secret": "k", "type": "luks1"}' "clone's request"
has out '^parent: +db1@s1$' "clone's volume info"
has out '^snapshots: +none$' "clone's volume info"
has out '^open needs: +secrets k, db1 \(its own, then each ancestor' "clone's volume info"
run volume clone db1@s1 c2
sent 'r[-1]["body"] == {"name": "c2", "parent": "db1@s1"}' "a clone sharing its parent's format sends no secret"
run volume info c1
has out '^job: +flattening: Running, 0% \(4.0 KiB of 16.0 MiB\), since 2026-12-01T10:00:00Z$' "volume info of a running job"
run volume flatten c1
want 0 "volume flatten"
has out '^volume c1 flattened: it has no parent now and opens with its own secret alone$' "volume flatten"
sent 'r[-2]["method"] == "POST" and r[-2]["path"] == "/v1/volumes/c1/flatten" and r[-2]["body"] == {}' "flatten's request"
run volume info c1
has out '^open needs: +secret k$' "volume info after flatten"
has out '^job: +flattening: Completed 2026-12-01T10:01:00Z$' "volume info of a finished job"
ok "volume clone (own format or shared), flatten followed, volume info's parent, snapshots, secrets, job"

# ---- import, export: FILE made absolute ------------------------------------------
mkdir -p "$T/real/images"
ln -s "$T/real" "$T/link"
IMP_RUN='{"kind":"import","target":"X","state":"Running","done":0,"total":0,"started":"2026-12-01T10:00:00Z"}'
EXP_DONE='{"kind":"export","target":"X","state":"Completed","done":1,"total":1,"started":"2026-12-01T10:00:00Z","finished":"2026-12-01T10:00:01Z"}'
fake "{\"POST /v1/volumes\": [{\"status\":202,\"body\":{\"volume\":\"db3\",\"job\":$IMP_RUN}}],
       \"GET /v1/volumes/db3\": [{\"status\":200,\"body\":{\"name\":\"db3\",\"state\":\"Available\",\"job\":${IMP_RUN/Running/Completed}}}],
       \"POST /v1/volumes/db1/export\": [{\"status\":202,\"body\":{\"volume\":\"db1\",\"job\":$EXP_DONE}}],
       \"GET /v1/volumes/db1\": [{\"status\":200,\"body\":{\"name\":\"db1\",\"job\":$EXP_DONE}}]}"
(cd "$T/link/images" && "$CRYPTVOL" volume import db3 ../images/db3.luks --secret db3-key > "$T/out" 2> "$T/err") ||
    fail "volume import: $(cat "$T/err")"
real=$(realpath "$T/real/images")
has out "^volume db3 imported from $real/db3.luks\$" "volume import"
sent "r[0]['body'] == {'name': 'db3', 'import': '$real/db3.luks', 'secret': 'db3-key'}" "import's request: FILE absolute, its directory resolved"
(cd "$T/link" && "$CRYPTVOL" volume export db1 out.luks --snapshot s1 --sparse > "$T/out" 2> "$T/err") ||
    fail "volume export: $(cat "$T/err")"
has out "^snapshot db1@s1 exported to $(realpath "$T/real")/out.luks " "volume export"
sent "r[-2]['path'] == '/v1/volumes/db1/export' and r[-2]['body'] == {'file': '$(realpath "$T/real")/out.luks', 'snapshot': 's1', 'sparse': True}" "export's request"
run volume export db1 /abs/out.luks --url https://127.0.0.1:1 --tls-dir "$T" --no-wait
has err 'client-cert.pem' "an absolute FILE with --url is not resolved here"
run volume export db1 "$T/nowhere/out.luks"
want 1 "export into a missing directory"
has err "^cryptvol: $T/nowhere/out.luks: directory $T/nowhere: No such file or directory\$" "export into a missing directory"
fake '{"POST /v1/volumes": [{"status": 409, "body": {"error": "volume db4: secret k opens no keyslot of the image", "code": "WrongKey"}}]}'
run volume import db4 "$T/db4.luks" --secret k
want 3 "an import whose secret opens no keyslot"
has err '^cryptvol: volume db4: secret k opens no keyslot of the image$' "an import whose secret opens no keyslot"
run --json volume import db4 "$T/db4.luks" --secret k
want 3 "an import whose secret opens no keyslot, --json"
has err '"code":"WrongKey"' "an import whose secret opens no keyslot, --json"
ok "volume import and export send FILE absolute, with its directory resolved (and --snapshot, --sparse)"

# ---- completion of VOL@SNAP and --snapshot ----------------------------------------
fake '{"GET /v1/volumes": [{"status": 200, "body": [{"name": "db1"}, {"name": "db2"}, {"name": "web"}]}],
       "GET /v1/volumes/db1/snapshots": [{"status": 200, "body": {"snapshots": [{"name": "s1"}, {"name": "s2"}]}}],
       "GET /v1/volumes/db2/snapshots": [{"status": 200, "body": {"snapshots": [{"name": "gold"}]}}],
       "GET /v1/volumes/web/snapshots": [{"status": 200, "body": {"snapshots": [{"name": "w"}]}}]}'
c() { "$CRYPTVOL" __complete "$@" | tr '\n' ' ' | sed 's/ $//'; }
[ "$(c snapshot delete db)" = "db1@s1 db1@s2 db2@gold" ] || fail "snapshot delete db<TAB>: $(c snapshot delete db)"
[ "$(c snapshot rollback db1@s)" = "db1@s1 db1@s2" ] || fail "snapshot rollback db1@s<TAB>: $(c snapshot rollback db1@s)"
[ "$(c volume clone "")" = "db1@s1 db1@s2 db2@gold web@w" ] || fail "volume clone <TAB>: $(c volume clone "")"
[ "$(c volume export db1 f --snapshot "")" = "s1 s2" ] || fail "volume export --snapshot <TAB>: $(c volume export db1 f --snapshot "")"
[ "$(c snapshot list d)" = "db1 db2" ] || fail "snapshot list d<TAB>: $(c snapshot list d)"
[ -z "$(c snapshot create "")" ] || fail "snapshot create names a new snapshot: $(c snapshot create "")"
[ -z "$(c volume import "")" ] || fail "volume import names a new volume: $(c volume import "")"
ok "VOL@SNAP completes from the daemon's snapshots; --snapshot from NAME's"
