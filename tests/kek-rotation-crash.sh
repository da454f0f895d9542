#!/usr/bin/env bash
# KEK rotation of 50 volumes, with cryptvold killed (-9) in each rotation
# state: DistributingKEK, EncryptingDEKs part way, and EncryptingDEKs with
# every token re-wrapped but the state not yet NoRotation.  After each
# restart the rotation resumes and finishes, and every volume opens.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
MARKS="/usr/bin/python3 $SRC_DIR/tests/tools/nbd-marks.py"
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
info() { "$CRYPTVOL" cluster info --json | json "$1"; }
N=50

cvd_start r --tls off
"$CRYPTVOL" cluster encryption enable > /dev/null
vols=()
for ((i = 0; i < N; i++)); do vols+=("v$i"); done
for v in "${vols[@]}"; do "$CRYPTVOL" volume create "$v" --size 1M > /dev/null; done
$MARKS write "$CVD_NBD" "${vols[@]}" || fail "writing markers"
cvd_stop

# wait_for PYTHON-CONDITION-ON-d: polls cluster info (30 s).
wait_for() {
    local i
    for ((i = 0; i < 600; i++)); do
        if "$CRYPTVOL" cluster info --json > "$T/info.json" 2>/dev/null &&
           [ "$(json "$1" < "$T/info.json")" = True ]; then
            return 0
        fi
        sleep 0.05
    done
    fail "timed out waiting for $1: $(cat "$T/info.json")"
}

# crash_in STATE CONDITION: starts a slowed rotation (or resumes one),
# waits until CONDITION holds, and kills the daemon with SIGKILL.
crash_in() {
    local state=$1 cond=$2
    cvd_start r --tls off --rotation-delay-ms 150
    [ "$(info 'd["rotationState"]')" != NoRotation ] ||
        "$CRYPTVOL" cluster kek rotate --no-wait > /dev/null
    wait_for "d['rotationState'] == '$state' and ($cond)"
    kill -9 "$CVD_PID"
    wait "$CVD_PID" 2>/dev/null || true
    ok "killed in $state ($(json 'd["rotation"]["volumesDone"]' < "$T/info.json") of $N re-wrapped)"
}

# finish GEN: restarts at full speed; the resumed rotation reaches NoRotation
# at generation GEN, no older generation is still needed, all volumes open.
finish() {
    cvd_start r --tls off
    wait_for "d['rotationState'] == 'NoRotation'"
    [ "$(json 'd["currentKekGeneration"], d["previousKekGenerations"]' < "$T/info.json")" = "$1 []" ] ||
        fail "after resuming: $(cat "$T/info.json")"
    $MARKS check "$CVD_NBD" "${vols[@]}" || fail "volumes that do not open after the rotation to $1"
    cvd_stop
    ok "rotation to generation $1 resumed and finished; all $N volumes open"
}

crash_in DistributingKEK True
finish 2
crash_in EncryptingDEKs "d['rotation']['volumesDone'] >= 10"
# Before it finishes, volumes at both generations open.
cvd_start r --tls off --rotation-delay-ms 1000
$MARKS check "$CVD_NBD" v0 v49 || fail "volumes of two generations during a rotation"
kill -9 "$CVD_PID"; wait "$CVD_PID" 2>/dev/null || true
finish 3
crash_in EncryptingDEKs "d['rotation']['volumesDone'] == $N"
finish 4
