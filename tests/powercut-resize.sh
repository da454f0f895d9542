#!/usr/bin/env bash
# Power cuts during volume resizes (issue 11, online growth): cryptvold,
# recorded by the power-loss harness (docs/testing.md) from an empty data
# dir, grows a LUKS2, a LUKS1 and a plaintext volume while a client is
# connected and writing to each (FUA writes before and after the grow, in
# the old area and, from a new connection, in the new one), then shrinks
# the LUKS2 one offline.  tests/tools/powercut-resize.py checks the
# replayed data dir at every record of every resize, at every sync point
# and at seeded random cuts and subsets: the record's size and the
# head layer's (the volume's chain: docs/store.md) are the old or the new
# one while a resize runs and the new one once it returned (durable when
# the CLI returns); a record that says Available agrees with its layer;
# the LUKS header files stay valid for
# cryptsetup (a "dynamic" segment) and open with the secret; every write
# acknowledged before the cut is there.  Then cryptvold starts on each
# state cut during the LUKS2 grow and on random ones: it settles a
# cut-off resize at the layer's size (the record then agrees with the
# layer), serves each volume at a size the resize allowed, with its data.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built"
"$PYTHON" -c 'import nbd' 2>/dev/null || fail "python3-libnbd is not installed (scripts/install-deps.sh)"
need cryptsetup nbdinfo
CHECK=("$PYTHON" "$SRC_DIR/tests/tools/powercut-resize.py")
HOLD_PY=$SRC_DIR/tests/tools/nbd-hold.py
SEED=${POWERCUT_SEED:-1}
REC=$T/rec.log
MiB=1048576
len() { stat -c %s "$REC"; }

# step LABEL COMMAND...: runs a command, noting the log's length before it
# started and after it returned.
step() {
    local label=$1 before
    shift
    before=$(len)
    "$@" > "$T/step.out" 2>&1 || fail "$label: $* failed: $(cat "$T/step.out")"
    echo "cmd $label $before $(len)" >> "$T/marks"
}

# A held NBD connection (nbd-hold.py) behind two FIFOs, as in
# tests/volume-resize-online.sh.
declare -A HIN HOUT HPID
hold() {
    local id=$1 in out line
    rm -f "$T/$id.in" "$T/$id.out"
    mkfifo "$T/$id.in" "$T/$id.out"
    "$PYTHON" "$HOLD_PY" "nbd+unix:///$2?socket=$CVD_NBD" < "$T/$id.in" > "$T/$id.out" 2> "$T/$id.err" &
    HPID[$id]=$!
    on_exit "kill ${HPID[$id]}"
    exec {in}> "$T/$id.in" {out}< "$T/$id.out"
    HIN[$id]=$in HOUT[$id]=$out
    read -r -t 20 line <&"$out" || fail "client $id did not connect: $(cat "$T/$id.err")"
    HSIZE=${line#connected }    # the size it negotiated
}
ask() {
    local line
    echo "$2" >&"${HIN[$1]}"
    read -r -t 20 line <&"${HOUT[$1]}" || fail "client $1 did not answer '$2'"
    echo "$line"
}
unhold() {
    [ "$(ask "$1" quit)" = ok ] || fail "client $1 did not quit"
    wait "${HPID[$1]}" || fail "client $1 exited $?: $(cat "$T/$1.err")"
}
# mark ID VOL OFF TEXT: a FUA write, acknowledged; the log's length then.
mark() {
    local got
    got=$(ask "$1" "write $3 $4 fua")
    [ "$got" = ok ] || fail "client $1: write of $4 at $3 to $2: $got"
    echo "data $2 $3 $4 $(len)" >> "$T/marks"
}

passfile "$T/secret" "powercut resize secret"
: > "$T/marks"
CVD_RECORD=$REC cvd_start r --tls off
step other "$CRYPTVOL" secret create s --from-file "$T/secret"
step create:g:$((4 * MiB)) "$CRYPTVOL" volume create g --size 4M --secret s
step create:l:$((4 * MiB)) "$CRYPTVOL" volume create l --size 4M --secret s --type luks1
step create:p:$((4 * MiB)) "$CRYPTVOL" volume create p --size 4M --plaintext

for v in g l p; do
    hold "o$v" "$v"
    [ "$HSIZE" = $((4 * MiB)) ] || fail "client o$v: not 4 MiB"
    mark "o$v" $v 0 "first-$v"
    mark "o$v" $v $((4 * MiB - 4096)) "old-end-$v"
    step grow:$v:$((4 * MiB)):$((8 * MiB)) "$CRYPTVOL" volume resize $v --size 8M
    # The connected client writes on in its old area; a new one in the new.
    mark "o$v" $v 8192 "after-grow-$v"
    hold "n$v" "$v"
    [ "$HSIZE" = $((8 * MiB)) ] || fail "client n$v: not 8 MiB after the grow"
    mark "n$v" $v $((5 * MiB)) "new-area-$v"
    unhold "o$v"
    unhold "n$v"
done
# Offline shrink of g: its marks are all below 6 MiB.
for ((i = 0; i < 100; i++)); do
    "$CRYPTVOL" volume info g --json | grep -q '"inUse":false' && break
    sleep 0.05
done
step shrink:g:$((8 * MiB)):$((6 * MiB)) "$CRYPTVOL" volume resize g --size 6M --allow-shrink
cvd_stop
mv "$CVD_DIR/data" "$T/final"

"${CHECK[@]}" check --log "$REC" --marks "$T/marks" --final "$T/final" \
    --secret "$T/secret" --work "$T/work" --seed "$SEED" --cryptvol "$CRYPTVOL" \
    --save-grow g --save "$T/states" 2> "$T/check.err" ||
    fail "power-cut states: $(cat "$T/check.err")"
cat "$T/check.err"
ok "at every cut of every resize: record and layer at the old or new size (the new once returned), agreeing when Available; headers valid; acknowledged writes kept"

# The daemon on the saved states, where the data dir was (records hold
# absolute paths): it settles what was cut off and serves what it keeps.
n=0
for st in "$T"/states/*.json; do
    dir=${st%.json}
    rm -rf "$CVD_DIR/data"
    mv "$dir" "$CVD_DIR/data"
    cvd_start r --tls off
    "$CRYPTVOL" volume list --json > "$T/list.json" || fail "$(basename "$dir"): volume list"
    "$PYTHON" - "$T/list.json" "$st" "$CVD_DIR/data" <<'PY' > "$T/serve" || fail "$(basename "$dir"): $(cat "$T/serve")"
import json, os, sys
vols = {v["name"]: v for v in json.load(open(sys.argv[1]))}
want = json.load(open(sys.argv[2]))
bad = []
for name, sizes in want["volumes"].items():
    v = vols.get(name)
    if not v:
        bad.append("%s is not listed" % name)
        continue
    if v["state"] != "Available":
        bad.append("%s is %s" % (name, v["state"]))
    if v["size"] not in sizes:
        bad.append("%s: size %d, not one of %s" % (name, v["size"], sizes))
    d = os.path.join(sys.argv[3], "volumes", name)
    layer = os.path.join(d, "layer-%06d" % json.load(open(os.path.join(d, "chain")))["layers"][-1]["id"])
    eff = (os.stat(layer).st_size - v["dataOffset"]) // v["sectorSize"] * v["sectorSize"]
    if eff != v["size"]:
        bad.append("%s: the record says %d bytes, the layer holds %d" % (name, v["size"], eff))
if bad:
    print("%s: %s" % (want["where"], "; ".join(bad)))
    sys.exit(1)
for name in want["volumes"]:
    print(name, vols[name]["size"])
for vol, off, text in want["marks"]:
    print("mark", vol, off, text)
PY
    while read -r what a b c; do
        if [ "$what" = mark ]; then
            got=$(ask "c$a" "read $b ${#c}")
            [ "$got" = "ok $c" ] || fail "$(basename "$dir"): volume $a at $b: '$got', not '$c' (written and acknowledged before the cut)"
        else
            [ "$(nbdinfo --size "nbd+unix:///$what?socket=$CVD_NBD")" = "$a" ] ||
                fail "$(basename "$dir"): volume $what is not served at the $a bytes it lists"
            hold "c$what" "$what"
            [ "$HSIZE" = "$a" ] || fail "$(basename "$dir"): $what: not $a bytes"
        fi
    done < "$T/serve"
    for v in $(awk '$1 != "mark" {print $1}' "$T/serve"); do unhold "c$v"; done
    cvd_stop
    grep -q "was growing when the daemon stopped" "$CVD_DIR/cryptvold.log" && settled=1
    n=$((n + 1))
done
[ "$n" -ge 5 ] || fail "only $n states were saved for the daemon"
[ -n "${settled:-}" ] || fail "no saved state had a grow for the daemon to settle at start"
ok "cryptvold on $n cut states (during the LUKS2 grow, and random): settles the cut-off grow, each volume Available at an allowed size that its layer holds, served with its data"
