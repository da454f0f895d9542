#!/usr/bin/env bash
# Unlocks a client can ask for at will (every NBD_OPT_GO of a closed volume
# derives its key; INFO does not): at most max-unlocks derivations run at
# once, so 8 parallel attaches to 8 argon2id volumes hold two derivations'
# memory, not eight; and a volume whose unlock failed is not tried again
# within unlock-retry-delay (refused without deriving, saying so).  A GO
# loop against it keeps the audit log small: audit-refused-burst refusals a
# minute in full, then one summary.
source "$(dirname "$0")/lib.sh"

uri() { echo "nbd+unix:///$1?socket=$CVD_NBD"; }
# The server's error message is in the debug output.
export LIBNBD_DEBUG=1
hwm_mib() { awk '$1 == "VmHWM:" { print int($2 / 1024) }' "/proc/$1/status"; }

# argon2id at 64 MiB a derivation (the default cost is about 475 MiB).
cvd_start k --tls off --pbkdf argon2id --pbkdf-memory 65536 \
    --pbkdf-iterations 4 --max-unlocks 2 --unlock-retry-delay 2 \
    --audit-refused-burst 5
passfile "$T/s" 'unlock bounds'
"$CRYPTVOL" secret create s --from-file "$T/s" > /dev/null
for i in 1 2 3 4 5 6 7 8; do
    "$CRYPTVOL" volume create "v$i" --size 8M --secret s > /dev/null
done
sleep 0.5
base=$(hwm_mib "$CVD_PID")
pids=()
for i in 1 2 3 4 5 6 7 8; do
    nbdinfo --size "$(uri "v$i")" > "$T/info$i" 2>&1 & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "nbdinfo: $(cat "$T"/info*)"; done
grow=$(( $(hwm_mib "$CVD_PID") - base ))
# Each of them derived a key (nbdinfo --size goes as far as GO).
unlocks=$(grep -c '"event":"volume.unlock","object":"volume/v[1-8]","result":"ok"' \
          "$CVD_DIR/data/audit.log" || true)
[ "$unlocks" = 8 ] || fail "8 parallel attaches made $unlocks unlocks, not 8"
[ "$grow" -le 100 ] ||
    fail "8 parallel attaches, max-unlocks 2: the peak grew $grow MiB (2 derivations of 64 MiB at most)"
ok "8 parallel attaches to argon2id volumes with max-unlocks 2: peak grew $grow MiB"

# A wrong key: the second try within the delay is refused without deriving.
passfile "$T/other" 'another value'
"$CRYPTVOL" secret update s --from-file "$T/other" > /dev/null
nbdinfo --size "$(uri v1)" > /dev/null 2> "$T/err1" && fail "served with a wrong key"
grep -q "volume v1: wrong key" "$T/err1" || fail "first try: $(cat "$T/err1")"
t0=$(date +%s%N)
nbdinfo --size "$(uri v1)" > /dev/null 2> "$T/err2" && fail "served with a wrong key"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "volume v1: its last unlock failed; not tried again for .* s (unlock-retry-delay)" \
    "$T/err2" || fail "retry within the delay: $(cat "$T/err2")"
ok "a retry within unlock-retry-delay is refused, saying so, in $ms ms"
sleep 2.1
nbdinfo --size "$(uri v1)" > /dev/null 2> "$T/err3" && fail "served with a wrong key"
grep -q "volume v1: wrong key" "$T/err3" || fail "after the delay: $(cat "$T/err3")"
ok "after the delay it is tried again"
nbdinfo --size "$(uri v1)" > /dev/null 2>&1 && fail "served with a wrong key"

# A GO loop for 3 s: thousands of refusals, a few lines of audit log.
size0=$(stat -c %s "$CVD_DIR/data/audit.log")
"$PYTHON" "$SRC_DIR/tests/tools/nbd-hostile.py" go-loop "$CVD_NBD" v2 \
    --hold 3 > "$T/loop" || fail "GO loop: $(cat "$T/loop")"
grow=$(( $(stat -c %s "$CVD_DIR/data/audit.log") - size0 ))
n=$(awk '{ print $4 }' "$T/loop")
[ "$n" -ge 100 ] || fail "GO loop: only $(cat "$T/loop")"
[ "$grow" -le 4096 ] || fail "$n refused GOs grew the audit log $grow bytes"
ok "$n refused GOs in 3 s grew the audit log $grow bytes"

"$CRYPTVOL" secret update s --from-file "$T/s" > /dev/null
sleep 2.1
nbdinfo --size "$(uri v1)" > /dev/null 2> "$T/err4" ||
    fail "the right value back: $(cat "$T/err4")"
ok "with the right value back it opens after the delay"
cvd_stop
summary=$(grep '"object":"volume/v2"' "$CVD_DIR/data/audit.log" |
          grep -o '"detail":"[0-9]* more refused from [^"]*"' || true)
[ -n "$summary" ] || fail "no summary of the refused GOs: $(tail -3 "$CVD_DIR/data/audit.log")"
[ "$(grep '"object":"volume/v2"' "$CVD_DIR/data/audit.log" | grep -c '"result":"refused"')" = 6 ] ||
    fail "v2: expected 5 refusals in full and 1 summary: $(grep -c v2 "$CVD_DIR/data/audit.log")"
grep -q '"object":"volume/v1","result":"ok"' "$CVD_DIR/data/audit.log" ||
    fail "the successful unlock is not recorded"
ok "5 refusals in full and one summary ($summary); the successful unlock recorded"
