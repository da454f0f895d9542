#!/usr/bin/env bash
# Cluster encryption with the KEK sealed by a TPM 2.0 (swtpm, started here):
# volumes attach across restarts, a rotation seals the new generation with
# the TPM too, the metadata holds no clear KEK, and without the TPM the
# node cannot unlock anything and says so.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/swtpm.sh"

# Built with the CLI (ctest runs the same build): missing is a build regression.
[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built: $CRYPTVOLD"
command -v swtpm >/dev/null || skip "swtpm is not installed"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
MARKS="/usr/bin/python3 $SRC_DIR/tests/tools/nbd-marks.py"
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

swtpm_start "$T/tpm"
TCTI=$SWTPM_TCTI
cvd_start t --tls off --tpm-tcti "$TCTI"
"$CRYPTVOL" cluster encryption enable --kek-protection tpm > /dev/null
[ "$("$CRYPTVOL" cluster info --json | json 'd["kekProtection"]')" = tpm ] || fail "protection is not tpm"
"$CRYPTVOL" volume create a --size 4M > /dev/null
"$CRYPTVOL" volume create b --size 4M > /dev/null
$MARKS write "$CVD_NBD" a b || fail "writing"
ok "KEK sealed by the TPM; volumes attach"

# The sealed KEK is TPM-bound: sqlite has only the TPM's blobs.
sqlite3_dump() { $PYTHON -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute("select count(*), group_concat(protection) from kek").fetchone())' "$1"; }
[ "$(sqlite3_dump "$CVD_DIR/data/meta.db")" = "(1, 'tpm')" ] || fail "kek table: $(sqlite3_dump "$CVD_DIR/data/meta.db")"

cvd_stop
cvd_start t --tls off --tpm-tcti "$TCTI"
$MARKS check "$CVD_NBD" a b || fail "after a restart (the KEK unsealed by the TPM again)"
"$CRYPTVOL" cluster kek rotate > /dev/null
[ "$("$CRYPTVOL" cluster info --json | json 'd["currentKekGeneration"], d["rotationState"]')" = "2 NoRotation" ] ||
    fail "rotation with TPM protection"
$MARKS check "$CVD_NBD" a b || fail "after the rotation"
cvd_stop
ok "restart and rotation with the TPM"

# Without the TPM nothing opens, and the error says why.  The log already
# names the TPM ("sealed (tpm)"): only the lines written from here on count.
swtpm_stop
LOG=$T/t/cryptvold.log
n=$(wc -l < "$LOG")
cvd_start t --tls off --tpm-tcti "$TCTI"
LIBNBD_DEBUG=1 $MARKS check "$CVD_NBD" a 2> "$T/err" && fail "a volume opened with the TPM gone"
WHY="volume a: cluster KEK generation 2: TPM ($TCTI) is not reachable: "
grep -q "server error message: $WHY" "$T/err" ||
    fail "the attach error does not say the TPM is not reachable: $(grep -v 'libnbd: debug' "$T/err")"
tail -n +$((n + 1)) "$LOG" | grep -q "warning: nbd: .*: export a: $WHY" ||
    fail "the log does not say the TPM is not reachable; its new lines: $(tail -n +$((n + 1)) "$LOG")"
cvd_stop
ok "no TPM: attach refused, saying the TPM is not reachable (client and log)"

# Another TPM (a new swtpm state) did not seal this KEK.
swtpm_start "$T/tpm-other"
n=$(wc -l < "$LOG")
cvd_start t --tls off --tpm-tcti "$SWTPM_TCTI"
LIBNBD_DEBUG=1 $MARKS check "$CVD_NBD" a 2> "$T/err" && fail "a volume opened with another TPM"
WHY="volume a: cluster KEK generation 2: TPM ($SWTPM_TCTI): this node's TPM did not seal this KEK"
grep -q "server error message: $WHY" "$T/err" ||
    fail "another TPM: the attach error does not say so: $(grep -v 'libnbd: debug' "$T/err")"
tail -n +$((n + 1)) "$LOG" | grep -q "warning: nbd: .*: export a: $WHY" ||
    fail "another TPM: the log does not say so; its new lines: $(tail -n +$((n + 1)) "$LOG")"
cvd_stop
ok "another node's TPM cannot unseal the KEK, and client and log say so"
