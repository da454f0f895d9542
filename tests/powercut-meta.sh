#!/usr/bin/env bash
# Power cuts under metadata changes: cryptvold, recorded by the power-loss
# harness from an empty data dir (docs/testing.md), enables cluster
# encryption, creates secrets and volumes (a KEK-only one and two with
# user secrets), rekeys one, rotates the KEK (token re-wrap), deletes a
# volume and a secret, with the audit log on.  The log length is noted
# before and after each command.  At every sync point (bounded) and at
# seeded random cuts and subsets, tests/tools/powercut-meta.py checks the
# replayed data dir: SQLite opens, passes integrity_check and holds every
# change whose command had returned; every volume's chain is whole (its
# manifest parses, the layers it lists are there) and its header file is
# valid for cryptsetup and opens with the secret the metadata names (after the
# rekey returned: the new one only; while in flight: old or new); each
# KEK token is of a generation the metadata holds; the audit log's
# complete lines parse and hold the events of returned commands.  Then
# the daemon starts on three cut states (mid-rekey, mid-rotation, random)
# and lists and serves the volumes.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
"$PYTHON" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
# The header checks are cryptsetup's: without it they would not be made.
PATH=$PATH:/usr/sbin
command -v cryptsetup > /dev/null || fail "cryptsetup is not installed (scripts/install-deps.sh)"
CHECK=("$PYTHON" "$SRC_DIR/tests/tools/powercut-meta.py")
MARKS=("$PYTHON" "$SRC_DIR/tests/tools/nbd-marks.py")
SEED=${POWERCUT_SEED:-1}
REC=$T/rec.log
len() { stat -c %s "$REC"; }

# step LABEL COMMAND...: runs a command, noting the log's length before
# it started and after it returned.
step() {
    local label=$1 before
    shift
    before=$(len)
    "$@" > "$T/step.out" 2>&1 || fail "$label: $* failed: $(cat "$T/step.out")"
    echo "$label $before $(len)" >> "$T/marks"
}

mkdir -p "$T/secrets"
for s in s1 s2; do passfile "$T/secrets/$s" "powercut meta secret $s"; done
: > "$T/marks"
CVD_RECORD=$REC cvd_start m --tls off
echo "start 0 $(len)" >> "$T/marks"
step enable "$CRYPTVOL" cluster encryption enable --kek-protection software
step secret:s1 "$CRYPTVOL" secret create s1 --from-file "$T/secrets/s1"
step secret:s2 "$CRYPTVOL" secret create s2 --from-file "$T/secrets/s2"
step volume:kv "$CRYPTVOL" volume create kv --size 1M
step volume:uv "$CRYPTVOL" volume create uv --size 1M --secret s1
step volume:dv "$CRYPTVOL" volume create dv --size 1M --secret s1
step marks "${MARKS[@]}" write "$CVD_NBD" kv uv
step rekey:uv:s1:s2 "$CRYPTVOL" volume rekey uv --secret s2
step rotate "$CRYPTVOL" cluster kek rotate
step delete:dv "$CRYPTVOL" volume delete dv
step secret-delete:s1 "$CRYPTVOL" secret delete s1
passfile "$T/recovery" "powercut recovery passphrase"
step export "$CRYPTVOL" cluster kek export --recovery-passphrase-file "$T/recovery" "$T/escrow.json"
cvd_stop
echo "stop 0 $(len)" >> "$T/marks"
mv "$CVD_DIR/data" "$T/final"


"${CHECK[@]}" check --log "$REC" --marks "$T/marks" --final "$T/final" \
    --secrets "$T/secrets" --work "$T/work" --seed "$SEED" --max-cuts 100 \
    --cryptvol "$CRYPTVOL" --save "rekey:$T/cut-rekey" \
    --save "rotate:$T/cut-rotate" --save "random:$T/cut-random" \
    2> "$T/check.err" || fail "power-cut states: $(cat "$T/check.err")"
cat "$T/check.err"
ok "metadata, LUKS headers and audit log consistent at every power cut, holding every returned command"

# The daemon on three cut states, where the data dir was (the records hold
# absolute paths): it starts, finishes what was cut off, lists the
# volumes of returned creates, serves them with their data.
for which in rekey rotate random; do
    st=$T/cut-$which
    expect=$(cat "$st.json")
    rm -rf "$CVD_DIR/data"
    mv "$st" "$CVD_DIR/data"
    cvd_start m --tls off
    "$CRYPTVOL" volume list --json > "$T/list.json" || fail "$which cut: volume list: $(cat "$T/list.json")"
    $PYTHON - "$T/list.json" "$st.json" <<'PY' || fail "$which cut ($expect): volume list: $(cat "$T/list.json")"
import json, sys
vols = {v["name"]: v for v in json.load(open(sys.argv[1]))}
want = json.load(open(sys.argv[2]))
bad = [n for n in want["volumes"] if n not in vols]
bad += [n + " (deleted)" for n in want["gone"] if n in vols]
bad += ["%s is %s" % (n, v["state"]) for n, v in vols.items()
        if v["state"] != "Available"]
if bad:
    sys.exit("not as the returned commands left it: %s" % ", ".join(bad))
PY
    marks=$($PYTHON -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["marks"]))' "$st.json")
    if [ -n "$marks" ]; then
        # shellcheck disable=SC2086
        "${MARKS[@]}" check "$CVD_NBD" $marks 2> "$T/marks.err" ||
            fail "$which cut ($expect): volumes do not serve their data: $(cat "$T/marks.err")"
    fi
    "$CRYPTVOL" cluster info --json > "$T/info.json" || fail "$which cut: cluster info"
    cvd_stop
    ok "cryptvold on the $which cut state ($expect): starts, lists its volumes, serves ${marks:-nothing yet}"
done
