#!/usr/bin/env bash
# The replicated write path, three nodes and etcd in a network namespace
# (lib-cluster.sh), a volume of three replicas made on n1:
# - writes through NBD on n1 reach every replica: once flushed and let go,
#   the header and layer files on n1, n2 and n3 hash equal, and volume
#   info shows all InSync;
# - an attach on n2 while n1 holds the volume is refused, naming n1;
# - n3 stopped (SIGSTOP): writes go on after the replica timeout and n3 is
#   OutOfSync; it comes back InSync once continued (the repair loop);
# - with min-replicas 3, writes fail (EIO) while n3 is stopped and reads
#   work; once it is back, writes work again;
# - a late writer: n1 holds the volume and is stopped until its lease
#   expires, n2 attaches and writes, n1 continues: n1's write fails, and
#   what n2 wrote is what every node ends up with.
. "$(dirname "$0")/lib-cluster.sh"

need nbdcopy sha256sum
$PYTHON -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"

# A lease of 6 s (keepalive every 2 s: surely live for 4 s after each, over
# the writer's 2 s margin), so a stopped node's lease expires quickly.
NODE_EXTRA=(--node-lease-ttl 6)
# REPL_LOGS=DIR keeps the nodes' logs there (debugging).
[ -z "${REPL_LOGS:-}" ] || on_exit "mkdir -p $REPL_LOGS; for n in 1 2 3; do cp $T/n\$n/cryptvold.log $REPL_LOGS/n\$n.log; done"
cluster_up 3
online() {
    [ "$(cv 1 node list --json | json 'sum(1 for n in d["nodes"] if n["state"] == "Online")')" = 3 ]
}
wait_until 20 "n1 does not see three nodes Online" online

# nbdc.py: NBD requests from Python (libnbd), one connection each.
cat > "$T/nbdc.py" <<'PY'
import nbd, os, sys, time
def connect(uri):
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)    # tls-certificates=DIR
    h.connect_uri(uri)
    return h
def block(tag):
    return (tag.encode() * 4096)[:4096]
cmd, uri = sys.argv[1], sys.argv[2]
if cmd == "write":          # write URI OFF TAG: one block, flushed
    h = connect(uri)
    h.pwrite(block(sys.argv[4]), int(sys.argv[3]))
    h.flush()
    h.shutdown()
elif cmd == "read":         # read URI OFF: the block's first 8 bytes (text)
    h = connect(uri)
    print(h.pread(4096, int(sys.argv[3]))[:8].decode(errors="replace"))
elif cmd == "hex":          # hex URI OFF: the block's first 8 bytes in hex
    h = connect(uri)
    print(h.pread(4096, int(sys.argv[3]))[:8].hex())
    h.shutdown()
elif cmd == "hold":         # hold URI OFF TAG GO OUT: write, wait for GO, write LATE
    h = connect(uri)
    off = int(sys.argv[3])
    h.pwrite(block(sys.argv[4]), off)
    h.flush()
    open(sys.argv[6] + ".held", "w").close()
    while not os.path.exists(sys.argv[5]):
        time.sleep(0.1)
    try:
        h.pwrite(block("LATE"), off)
        h.flush()
        res = "written"
    except nbd.Error as e:
        res = "refused: %s" % e
    open(sys.argv[6], "w").write(res + "\n")
PY
nbdpy() { in_ns "$PYTHON" "$T/nbdc.py" "$@"; }

# replica states of VOL from node N: "n1=InSync n2=..." in the set's order.
states() {
    cv "$1" volume info "$2" --json |
        json '" ".join("%s=%s" % (r["node"], r["state"]) for r in d["replicas"])'
}
all_insync() { [ "$(states "$1" "$2")" = "n1=InSync n2=InSync n3=InSync" ]; }
state_of() { cv "$1" volume info "$2" --json | json "[r['state'] for r in d['replicas'] if r['node'] == '$3'][0]"; }
writer_of() { cv "$1" volume info "$2" --json | json 'd["writer"]'; }
# The hashes of VOL's header and layer files on node N.
file_sums() {
    (cd "$(vol_dir "$(node_dir "$1")/data" "$2")" && sha256sum header layer-* | sort -k2)
}
same_files() {
    local a
    a=$(file_sums 1 "$1")
    [ "$a" = "$(file_sums 2 "$1")" ] && [ "$a" = "$(file_sums 3 "$1")" ]
}
check_same_files() {
    wait_until 20 "$1: the header and layer files differ between nodes:
n1: $(file_sums 1 "$1")
n2: $(file_sums 2 "$1")
n3: $(file_sums 3 "$1")" same_files "$1"
}

passfile "$T/pw" "repl-write secret $$"
cv 1 secret create pw --from-file "$T/pw" > /dev/null || fail "secret create"
cv 1 volume create r3 --size 32M --secret pw --replicas 3 > "$T/out" 2>&1 ||
    fail "volume create r3 --replicas 3: $(cat "$T/out")"
wait_until 30 "r3's replicas are not all InSync: $(states 1 r3)" all_insync 1 r3

# ---- writes on n1 reach every replica -------------------------------------
head -c 16M /dev/urandom > "$T/d1"
in_ns nbdcopy "$T/d1" "$(nbd_uri 1 r3)" 2> "$T/err" || fail "writing r3 on n1: $(cat "$T/err")"
wait_until 10 "r3 still has a writer after its client left" \
    bash -c "[ \"\$(CRYPTVOL_SOCKET=$(node_sock 1) $CRYPTVOL volume info r3 --json | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)[\"writer\"])')\" = None ]"
check_same_files r3
all_insync 1 r3 || fail "after the writes: $(states 1 r3)"
all_insync 3 r3 || fail "n3 sees $(states 3 r3)"
rm -f "$T/rb"
in_ns nbdcopy "$(nbd_uri 1 r3)" "$T/rb" 2> "$T/err" || fail "reading r3: $(cat "$T/err")"
cmp -s -n 16777216 "$T/rb" "$T/d1" || fail "r3 does not read back what was written"
ok "16 MiB written through n1: header and layer files equal on n1, n2, n3; all InSync"

# ---- changes of shape replayed ---------------------------------------------------
cv 1 snapshot create r3@s1 > "$T/out" 2>&1 || fail "snapshot create r3@s1: $(cat "$T/out")"
head -c 1M /dev/urandom > "$T/d3"
in_ns nbdcopy "$T/d3" "$(nbd_uri 1 r3)" 2> "$T/err" || fail "writing r3 after s1: $(cat "$T/err")"
check_same_files r3
[ "$(ls "$(vol_dir "$(node_dir 2)/data" r3)" | grep -c '^layer-')" = 2 ] ||
    fail "n2 does not hold s1's layer and the head: $(ls "$(vol_dir "$(node_dir 2)/data" r3)")"
cv 1 snapshot delete r3@s1 > "$T/out" 2>&1 || fail "snapshot delete r3@s1: $(cat "$T/out")"
# Merged away: one layer file left (the head) on n1.
no_snapshots() { [ "$(ls "$(vol_dir "$(node_dir 1)/data" r3)" | grep -c '^layer-')" = 1 ]; }
wait_until 30 "r3@s1 is not merged away: $(cv 1 snapshot list r3)" no_snapshots
wait_until 10 "r3 still has a writer after the merge" \
    bash -c "[ \"\$(CRYPTVOL_SOCKET=$(node_sock 1) $CRYPTVOL volume info r3 --json | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)[\"writer\"])')\" = None ]"
check_same_files r3
all_insync 1 r3 || fail "after the snapshot: $(states 1 r3)"
ok "a snapshot made and merged away on n1: the same layers and bytes on n1, n2, n3"

# ---- one writer --------------------------------------------------------------
rm -f "$T/go" "$T/res"
nbdpy hold "$(nbd_uri 1 r3)" 0 HELD "$T/go" "$T/res" 2> "$T/hold.err" &
HOLD=$!
for ((i = 0; i < 50; i++)); do [ -e "$T/res.held" ] && break; sleep 0.2; done
[ -e "$T/res.held" ] || fail "the holder did not attach r3 on n1: $(tail -n 3 "$T/hold.err" | tr "\n" " ")"
if LIBNBD_DEBUG=1 in_ns nbdinfo --size "$(nbd_uri 2 r3)" > /dev/null 2> "$T/err"; then
    fail "n2 served r3 while n1 writes it"
fi
grep -q 'attached on node n1' "$T/err" ||
    fail "attach of r3 on n2: $(grep -i error "$T/err" | tail -n 3)"
touch "$T/go"
wait "$HOLD" || fail "the holder failed: $(cat "$T/hold.err")"
ok "an attach on n2 while n1 holds r3 is refused, naming n1"

# ---- a replica that stops --------------------------------------------------------
kill -STOP "${NODE_PID[3]}"
on_exit "kill -CONT ${NODE_PID[3]} 2>/dev/null"
t0=$(date +%s)
head -c 1M /dev/urandom > "$T/d2"
in_ns nbdcopy "$T/d2" "$(nbd_uri 1 r3)" 2> "$T/err" ||
    fail "writes stopped with n3 stopped: $(cat "$T/err")"
t1=$(date +%s)
[ "$(state_of 1 r3 n3)" = OutOfSync ] || fail "n3 stopped: $(states 1 r3)"
[ "$(state_of 2 r3 n1)" = InSync ] || fail "n2 sees $(states 2 r3)"
kill -CONT "${NODE_PID[3]}"
ok "n3 stopped: writes went on after $((t1 - t0)) s, n3 OutOfSync"
wait_until 40 "n3 did not come back InSync: $(states 1 r3)" all_insync 1 r3
ok "n3 continued: InSync again"

# ---- min-replicas 3 ---------------------------------------------------------------
cv 1 volume replicas r3 --set 3 --min 3 > "$T/out" 2>&1 || fail "replicas --min 3: $(cat "$T/out")"
kill -STOP "${NODE_PID[3]}"
if nbdpy write "$(nbd_uri 1 r3)" 0 MIN3 2> "$T/err"; then
    fail "a write succeeded with 2 replicas in sync and min-replicas 3"
fi
nbdpy write "$(nbd_uri 1 r3)" 4096 MIN3 2> "$T/err" && fail "a second write succeeded below min"
grep -qi 'input/output\|EIO' "$T/err" || fail "the refused write: $(cat "$T/err")"
want=$(od -An -tx1 -N8 -j 2097152 "$T/d1" | tr -d ' \n')
got=$(nbdpy hex "$(nbd_uri 1 r3)" 2097152 2> "$T/err") ||
    fail "reads with n3 stopped: $(cat "$T/err")"
[ "$got" = "$want" ] || fail "a read with n3 stopped gave $got, not $want"
kill -CONT "${NODE_PID[3]}"
wait_until 40 "n3 did not come back InSync: $(states 1 r3)" all_insync 1 r3
nbdpy write "$(nbd_uri 1 r3)" 0 BACK 2> "$T/err" || fail "writes after n3 came back: $(cat "$T/err")"
ok "min-replicas 3: writes EIO and reads work while n3 is stopped; writes work once it is back"
cv 1 volume replicas r3 --set 3 --min 2 > "$T/out" 2>&1 || fail "replicas --min 2: $(cat "$T/out")"

# ---- a late writer ------------------------------------------------------------
rm -f "$T/go" "$T/res" "$T/res.held"
nbdpy hold "$(nbd_uri 1 r3)" 8192 OLD1 "$T/go" "$T/res" 2> "$T/hold.err" &
HOLD=$!
for ((i = 0; i < 50; i++)); do [ -e "$T/res.held" ] && break; sleep 0.2; done
[ -e "$T/res.held" ] || fail "the holder did not write on n1: $(cat "$T/hold.err")"
kill -STOP "${NODE_PID[1]}"
on_exit "kill -CONT ${NODE_PID[1]} 2>/dev/null"
wait_until 20 "n1's attach record did not go with its lease" \
    bash -c "[ \"\$(CRYPTVOL_SOCKET=$(node_sock 2) $CRYPTVOL volume info r3 --json | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)[\"writer\"])')\" = None ]"
nbdpy write "$(nbd_uri 2 r3)" 8192 NEW2 2> "$T/err" || fail "n2's write: $(cat "$T/err")"
kill -CONT "${NODE_PID[1]}"
touch "$T/go"
wait "$HOLD" || true
grep -q refused "$T/res" || fail "n1's late write: $(cat "$T/res" "$T/hold.err" 2>/dev/null)"
[ "$(nbdpy read "$(nbd_uri 2 r3)" 8192)" = NEW2NEW2 ] || fail "n2 reads $(nbdpy read "$(nbd_uri 2 r3)" 8192)"
wait_until 40 "the replicas did not all come back InSync: $(states 2 r3)" all_insync 2 r3
wait_until 20 "r3 still has a writer" \
    bash -c "[ \"\$(CRYPTVOL_SOCKET=$(node_sock 2) $CRYPTVOL volume info r3 --json | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)[\"writer\"])')\" = None ]"
check_same_files r3
[ "$(nbdpy read "$(nbd_uri 1 r3)" 8192)" = NEW2NEW2 ] || fail "n1 reads $(nbdpy read "$(nbd_uri 1 r3)" 8192)"
ok "a late writer: n1's write after its lease expired is refused; n2's data stands on every node"
