# Sourced after lib.sh and lib-chain.sh by the backup tests
# (tests/backup-*.sh, issue 14, docs/backup.md): a daemon with a backup
# target, and the helpers they share.

# bk_daemon NAME TARGET [cryptvold options...]: cvd_start with the target.
bk_daemon() {
    local name=$1 target=$2
    shift 2
    cvd_start "$name" --tls off --backup-target "$target" "$@"
}
# bk_create VOL [options...]: a backup of VOL, waited for; prints its id.
# Fails (with the CLI's error) unless it is Completed.
bk_create() {
    local vol=$1
    shift
    "$CRYPTVOL" backup create "$vol" --json "$@" > "$T/bk.out" 2> "$T/bk.err" ||
        fail "backup create $vol $*: $(cat "$T/bk.err")"
    json 'd["id"] if d["state"] == "Completed" else "state " + d["state"]' < "$T/bk.out"
}
# bk_get ID EXPR: EXPR over the backup's object in backup list --json (b).
bk_get() {
    "$CRYPTVOL" backup list --json | "$PYTHON" -c '
import json, sys
bs = [b for b in json.load(sys.stdin)["backups"] if b["id"] == sys.argv[1]]
if not bs:
    sys.exit("backup %s is not in backup list" % sys.argv[1])
b = bs[0]
print(eval(sys.argv[2]))' "$1" "$2" || fail "backup list: no backup $1"
}
# target_bytes: the bytes of blocks the target holds (backup target --json).
target_bytes() { "$CRYPTVOL" backup target --json | json 'd["bytes"]'; }
# vstate VOL: its state, or "gone".
vstate() {
    "$CRYPTVOL" volume info "$1" --json 2> /dev/null | json 'd["state"]' || echo gone
}
# wait_state VOL STATE SECONDS: waits until VOL is STATE; fails saying what
# it is instead.
wait_state() {
    local i s=""
    for ((i = 0; i < $3 * 10; i++)); do
        s=$(vstate "$1")
        [ "$s" = "$2" ] && return 0
        sleep 0.1
    done
    fail "volume $1 is $s after $3 s, not $2"
}
# no_volume NAME WHAT: no record and no files of volume NAME.
no_volume() {
    [ "$(vstate "$1")" = gone ] || fail "$2: volume $1 is listed ($(vstate "$1"))"
    [ -z "$(ls -d "$CVD_DIR/data/volumes/$1"* 2> /dev/null)" ] ||
        fail "$2: files of volume $1 are left: $(ls -d "$CVD_DIR/data/volumes/$1"*)"
}
# manifest ID: the path of a backup's manifest in $TARGET.
manifest() { echo "$TARGET/backups/$1.json"; }
# block_path SHA256: a block's file in $TARGET (blocks/AB/CD/SHA256).
block_path() { echo "$TARGET/blocks/${1:0:2}/${1:2:2}/$1"; }
# data_blocks ID: "OFFSET SHA256" of the manifest's blocks past the header
# (dataOffset), one a line.
data_blocks() {
    "$PYTHON" - "$(manifest "$1")" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for b in m["blocks"]:
    if b["offset"] >= m["dataOffset"]:
        print(b["offset"], b["sha256"])
PY
}
