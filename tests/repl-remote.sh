#!/usr/bin/env bash
# Attaching where no replica is (docs/replication.md): a 2-replica volume
# on three nodes is attached over NBD on the node outside its replica set.
# A pattern written there with nbdcopy reads back there, and through a
# replica's node once the first let go; a range never written reads as
# zeros on both (holes, as on a replica's node: the same bytes wherever it
# is attached); the replicas' layer files are equal.  Then fio writes with
# crc32c verification through the node without a replica while one replica
# is killed -9: the writes go on (min-replicas 1), that replica is
# OutOfSync, and is resynced to InSync once it is back; the verification
# passes and the layer files are equal again.  Then unclean ends: the
# node without a replica killed -9 mid-write and attached there again
# replays its own activity log; a replica's node killed -9 mid-write, the
# node without a replica attaching next copies every region from one
# replica to the other; the layer files are equal after each.  Both
# replicas stopped under it: one stays InSync (the write fails), the other
# is Rebuilding, and is rebuilt.  A clone is refused there.  A snapshot
# while the node without a replica writes is refused, saying why.  Last, a
# volume of the cluster KEK (no secret) is unlocked, written and read on
# its node without a replica.  Nothing of a volume is ever written to the
# data dir of the node without a replica.
. "$(dirname "$0")/lib-cluster.sh"
. "$SRC_DIR/tests/lib-repl.sh"

need fio setpriv sha256sum nbdcopy
$PYTHON -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"

NODE_EXTRA=(--node-lease-ttl 6)
# KEEP_LOGS=DIR: the nodes' logs are copied there at exit (for a failure).
[ -z "${KEEP_LOGS:-}" ] || on_exit "mkdir -p $KEEP_LOGS; for n in 1 2 3; do cp $T/n\$n/cryptvold.log $KEEP_LOGS/n\$n.log; done"
cluster_up 3
# The cluster KEK for the last part (only while there is no volume).
cv 1 cluster encryption enable --kek-protection software > /dev/null ||
    fail "cluster encryption enable"
for n in 1 2 3; do
    wait_until 10 "n$n does not see cluster encryption Enabled" bash -c \
        "CRYPTVOL_SOCKET=$(node_sock "$n") $CRYPTVOL cluster info --json | grep -q '\"encryptionState\": *\"Enabled\"'"
done
passfile "$T/s" "repl-remote secret $$"
cv 1 secret create s --from-file "$T/s" > /dev/null || fail "secret create s"
cv 1 volume create r2 --size 48M --secret s --replicas 2 > "$T/out" 2>&1 ||
    fail "volume create r2 --replicas 2: $(cat "$T/out")"
cv 1 volume info r2 --json > "$T/info" || fail "volume info r2"
# The replicas' nodes and the one without a replica (D), from the set.
read -r A B D < <($PYTHON - "$T/info" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
reps = sorted(int(r["node"][1:]) for r in d["replicas"])
others = [n for n in (1, 2, 3) if n not in reps]
print(reps[0], reps[1], others[0])
PY
) || fail "r2's replicas: $(cat "$T/info")"
for n in "$A" "$B"; do wait_rep_state 30 1 r2 "n$n" InSync; done
ok "r2 has replicas on n$A and n$B, InSync; n$D holds none"

# attach_gone: waits for r2's attach record to go (a writer let go, or
# its lease expired).
attach_free() {
    [ -z "$(etcdctl_tls get --print-value-only /cryptvol/attach/r2 2>/dev/null)" ]
}
attach_gone() {
    wait_until 30 "r2's attach record is still there: $(etcdctl_tls get --print-value-only /cryptvol/attach/r2 2>&1)" attach_free
}

# no_data_on_d: n$D's data dir holds no chain of r2 and no layer file.
no_data_on_d() {
    local dd
    dd=$(node_dir "$D")/data
    [ ! -e "$(vol_dir "$dd" r2)" ] ||
        fail "n$D has a chain of r2: $(ls -la "$(vol_dir "$dd" r2)")"
    [ -z "$(find "$dd" -name 'layer-*' -o -name 'header' | head -n 1)" ] ||
        fail "layer or header files in n$D's data dir: $(find "$dd" -name 'layer-*' -o -name header)"
}

# ---- a pattern through n$D, read back there and on a replica's node ----------
head -c 16M /dev/urandom > "$T/pat"
mark=$(node_log_mark "$D")
nbdcopy "$T/pat" "$(nbd_uri "$D" r2)" 2> "$T/err" ||
    fail "nbdcopy into r2 through n$D: $(cat "$T/err")"
node_log_since "$D" "$mark" | grep -q "volume r2: writer on node n$D, which holds no replica" ||
    fail "n$D did not say it writes r2 without a replica: $(node_log_since "$D" "$mark" | grep r2 | tail -n 5)"
nbd_get "$D" r2 0 $((48 << 20)) "$T/via-d"
cmp -s -n $((16 << 20)) "$T/pat" "$T/via-d" ||
    fail "the pattern does not read back through n$D"
head -c $((32 << 20)) /dev/zero > "$T/zeros"
cmp -s -i $((16 << 20)):0 "$T/via-d" "$T/zeros" ||
    fail "the never-written 32 MiB of r2 do not read as zeros through n$D"
ok "16 MiB written through n$D with nbdcopy read back there; the rest reads as zeros"
# The attach record is let go once the client left (n$D flushed).
attach_gone
nbd_get "$A" r2 0 $((48 << 20)) "$T/via-a"
cmp -s "$T/via-d" "$T/via-a" ||
    fail "r2 reads otherwise through n$A than through n$D"
ok "the same 48 MiB through n$A (a replica) as through n$D: pattern and zeros"
expect_chains_equal 20 r2 "$A" "$B"
no_data_on_d
ok "r2's header and layer files are equal on n$A and n$B; none on n$D"

# A change of shape while n$D writes: refused, naming the reason.
$PYTHON - "$(nbd_uri "$D" r2)" > "$T/hold.out" 2>&1 <<'PY' &
import nbd, sys, time
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
print("attached", flush=True)
time.sleep(8)
h.shutdown()
PY
HOLD=$!
on_exit "kill $HOLD 2>/dev/null"
wait_until 20 "the holder did not attach through n$D" grep -q attached "$T/hold.out"
if cv "$D" snapshot create r2@s1 > "$T/snap" 2>&1; then
    fail "a snapshot of r2 on n$D while it writes r2 without a replica succeeded"
fi
grep -q "holds no replica" "$T/snap" || fail "the snapshot's refusal: $(cat "$T/snap")"
wait $HOLD
ok "a snapshot on n$D while it writes without a replica is refused: $(head -c 200 "$T/snap")"

# ---- a replica killed -9 while n$D writes --------------------------------------
attach_gone
mark=$(node_log_mark "$D")
fio_nbd "$D" r2 --name=remote --rw=randwrite --bssplit=4k/50:64k/40:1m/10 \
    --offset=8M --size=24M --rate=2m --iodepth=8 --verify=crc32c \
    --verify_fatal=1 --do_verify=1 --output="$T/fio-home/fio.out" &
FIO=$!
on_exit "kill $FIO 2>/dev/null"
sleep 3
node_kill "$B"
wait_rep_state 20 "$A" r2 "n$B" OutOfSync
ok "n$B killed -9 while fio writes through n$D: OutOfSync"
sleep 3
kill -0 $FIO || fail "fio ended while n$B was away: $(cat "$T/fio-home/fio.out")"
node_start "$B"
wait_rep_state 60 "$A" r2 "n$B" InSync
running=no
kill -0 $FIO 2>/dev/null && running=yes
ok "n$B back and InSync again (fio still writing when it was: $running)"
wait $FIO || fail "fio through n$D failed: $(cat "$T/fio-home/fio.out")"
grep -q "err= 0" "$T/fio-home/fio.out" || fail "fio reported errors: $(cat "$T/fio-home/fio.out")"
ok "fio's writes through n$D verified (crc32c)"
node_log_since "$D" "$mark" | grep -q "volume r2: replica n$B: InSync after a resync" ||
    node_log_since "$A" 0 | grep -q "volume r2: replica n$B: InSync after a resync" ||
    fail "n$B was not resynced: $(node_log_since "$D" "$mark" | grep "replica n$B" | tail -n 5)"
ok "n$B caught up by a resync: $(node_log_since "$D" "$mark" | grep -o 'resync of [0-9]* bytes[a-z ]*' | tail -n 1)"
attach_gone
expect_chains_equal 30 r2 "$A" "$B"
nbd_get "$B" r2 0 $((48 << 20)) "$T/via-b"
nbd_get "$D" r2 0 $((48 << 20)) "$T/via-d2"
cmp -s "$T/via-b" "$T/via-d2" || fail "r2 reads otherwise through n$B than through n$D"
cmp -s -n $((8 << 20)) "$T/pat" "$T/via-b" || fail "the pattern's first 8 MiB (not written by fio) changed"
cmp -s -i $((32 << 20)):0 -n $((16 << 20)) "$T/via-b" "$T/zeros" ||
    fail "r2's last 16 MiB (never written) do not read as zeros"
no_data_on_d
ok "r2's layer files equal on n$A and n$B; the same bytes through n$B and n$D; nothing on n$D"

# ---- an unclean end, replayed by the node without a replica --------------------
# scribble N: random 64 KiB writes into [8M, 32M) of r2 through node N
# until it is killed (or its node is).
scribble() {
    $PYTHON - "$(nbd_uri "$1" r2)" > /dev/null 2>&1 <<'PY' &
import nbd, os, random, sys
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
while True:
    h.pwrite(os.urandom(65536), (8 << 20) + random.randrange(384) * 65536)
PY
    SCRIBBLE=$!
    on_exit "kill $SCRIBBLE 2>/dev/null"
}

# killed_mid_write N: node N killed -9 while scribble writes through it,
# started again, and its attach record gone.
killed_mid_write() {
    scribble "$1"
    sleep 2
    node_kill "$1"
    kill $SCRIBBLE 2>/dev/null || true; wait $SCRIBBLE 2>/dev/null || true
    node_start "$1"
    attach_gone
}

# n$D itself killed -9 mid-write: attached there again, it replays its own
# activity log from a replica to the other.
killed_mid_write "$D"
mark=$(node_log_mark "$D")
nbd_get "$D" r2 0 $((1 << 20)) "$T/x"
node_log_since "$D" "$mark" | grep -q "volume r2: node n$D ended uncleanly: [0-9]* regions copied" ||
    fail "n$D did not replay its own unclean end: $(node_log_since "$D" "$mark" | grep r2 | tail -n 5)"
attach_gone
expect_chains_equal 30 r2 "$A" "$B"
no_data_on_d
ok "n$D killed -9 mid-write, attached there again: $(node_log_since "$D" "$mark" | grep -o 'ended uncleanly: [0-9]* regions' | head -n 1); files equal"

# A replica's node (n$A) killed -9 mid-write and back: n$D, attaching
# next, has no log of n$A's, and copies the whole head from a replica.
killed_mid_write "$A"
mark=$(node_log_mark "$D")
nbd_get "$D" r2 0 $((48 << 20)) "$T/via-d3"
regions=$(node_log_since "$D" "$mark" |
    sed -n "s/.*volume r2: node n$A ended uncleanly: \([0-9]*\) regions copied.*/\1/p")
[ -n "$regions" ] && [ "$regions" -ge 48 ] ||
    fail "n$D did not replay n$A's unclean end over every region: $(node_log_since "$D" "$mark" | grep r2 | tail -n 5)"
attach_gone
expect_chains_equal 30 r2 "$A" "$B"
nbd_get "$B" r2 0 $((48 << 20)) "$T/via-b3"
cmp -s "$T/via-d3" "$T/via-b3" || fail "r2 reads otherwise through n$B than through n$D after the replay"
no_data_on_d
ok "n$A killed -9 mid-write: n$D, attaching next, copied all $regions regions from a replica; files equal"

# ---- every replica failing at once -------------------------------------------
# Both replicas stopped while n$D writes: the first to fail is OutOfSync,
# and as what it misses cannot be recorded on the other (stopped too),
# Rebuilding; the last in sync stays InSync and the write fails: a writer
# without a replica never leaves the volume with none in sync.  Continued,
# the InSync replica's node rebuilds the other once n$D let go.
attach_gone
$PYTHON - "$(nbd_uri "$D" r2)" "$T/go" > "$T/both.out" 2>&1 <<'PY' &
import nbd, os, sys, time
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
h.pwrite(os.urandom(65536), 40 << 20)
print("attached", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.1)
try:
    # The region of the first write: in the activity log already, so the
    # data itself goes to both.
    h.pwrite(os.urandom(65536), (40 << 20) + 65536)
    print("written")
except nbd.Error as e:
    print("refused: %s" % e)
h.shutdown()
PY
BOTH=$!
on_exit "kill $BOTH 2>/dev/null"
wait_until 20 "the writer did not attach through n$D" grep -q attached "$T/both.out"
kill -STOP "${NODE_PID[$A]}" "${NODE_PID[$B]}"
on_exit "kill -CONT ${NODE_PID[$A]} ${NODE_PID[$B]} 2>/dev/null"
touch "$T/go"
wait $BOTH
grep -q refused "$T/both.out" || fail "a write with both replicas stopped: $(cat "$T/both.out")"
etcdctl_tls get --print-value-only /cryptvol/replicas/r2 > "$T/set" 2>&1 ||
    fail "etcdctl get r2's set: $(cat "$T/set")"
states=$($PYTHON -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join(sorted(r["state"] for r in d["replicas"])))' "$T/set") ||
    fail "r2's set: $(cat "$T/set")"
[ "$states" = "InSync Rebuilding" ] ||
    fail "r2's replicas after both failed under n$D: $states ($(cat "$T/set"))"
kill -CONT "${NODE_PID[$A]}" "${NODE_PID[$B]}"
ok "both replicas stopped under n$D: the write refused, one replica still InSync, the other Rebuilding"
attach_gone
wait_rep_state 90 "$A" r2 "n$A" InSync
wait_rep_state 90 "$A" r2 "n$B" InSync
expect_chains_equal 30 r2 "$A" "$B"
no_data_on_d
ok "n$A and n$B InSync again (a rebuild by the InSync one's node); files equal"

# ---- a clone is served only where a replica is ---------------------------------
attach_gone
cv "$A" snapshot create r2@s1 > "$T/out" 2>&1 || fail "snapshot r2@s1 on n$A: $(cat "$T/out")"
cv "$A" volume clone r2@s1 c2 > "$T/out" 2>&1 || fail "volume clone r2@s1 c2: $(cat "$T/out")"
for n in "$A" "$B"; do wait_rep_state 60 "$A" c2 "n$n" InSync; done
if $PYTHON - "$(nbd_uri "$D" c2)" > "$T/out" 2>&1 <<'PY'; then
import nbd, sys
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
PY
    fail "clone c2 attached on n$D, which holds no replica of it"
fi
grep -q "volume c2: a clone .* is served only where a replica is" "$(node_dir "$D")/cryptvold.log" ||
    fail "the refusal of c2 on n$D: $(grep c2 "$(node_dir "$D")/cryptvold.log" | tail -n 3)"
attach_gone
ok "clone c2 (on n$A and n$B) is refused on n$D, saying why"

# ---- a volume of the cluster KEK (no secret) -----------------------------------
# Unlocked on the node without a replica from the KEK token of the header a
# replica sent.
cv 1 volume create k2 --size 8M --replicas 2 > "$T/out" 2>&1 ||
    fail "volume create k2 --replicas 2 (cluster KEK): $(cat "$T/out")"
KD=$(cv 1 volume info k2 --json | $PYTHON -c '
import json, sys
d = json.load(sys.stdin)
reps = {r["node"] for r in d["replicas"]}
print([n for n in (1, 2, 3) if "n%d" % n not in reps][0])') || fail "k2's replicas"
head -c 1M /dev/urandom > "$T/kpat"
nbd_put "$KD" k2 "$T/kpat" $((2 << 20))
nbd_get "$KD" k2 $((2 << 20)) $((1 << 20)) "$T/kgot"
cmp -s "$T/kpat" "$T/kgot" || fail "k2 does not read back through n$KD"
grep -q "volume k2: writer on node n$KD, which holds no replica" "$(node_dir "$KD")/cryptvold.log" ||
    fail "n$KD did not write k2 without a replica"
ok "k2 (cluster KEK, no secret) unlocked, written and read back on n$KD, which holds no replica"
