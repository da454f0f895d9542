#!/usr/bin/env bash
# Clones of a replicated volume (docs/replication.md, "Clones"): db1 with 2
# replicas (n1, n2), data and a snapshot s1.  A clone of db1@s1 asked for 3
# replicas is refused (only n1 and n2 hold db1's layers), and so is one
# made on n3; c1 is made on n1 with db1's count (2: n1, n2); a write to c1
# through NBD; c1's chain files are equal on n1 and n2, its manifest names
# db1@s1 on both, and it reads db1's data and its own write through each;
# c3, of its own format, the same with ownFormat on its rebuilt replica.
# A rebuild target without the parent: c2's set made in etcd to hold n3,
# which has no replica of db1, is refused there and Failed with the
# reason.  `volume replicas c1 --set 3` is refused while n3 lacks db1, and
# works once db1 has a replica there: n3's c1 is rebuilt with the parent
# link and equal files, copying c1's own layers only.  Flatten of c1: every replica's files equal again,
# no parent in any manifest, the data the same through every node.  db1's
# replica on n3 stays while c1's there reads through it, and may go after.
. "$(dirname "$0")/lib-cluster.sh"
. "$SRC_DIR/tests/lib-repl.sh"

need sha256sum cmp
$PYTHON -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"

NODE_EXTRA=(--node-lease-ttl 6)
cluster_up 3
passfile "$T/s" "repl-clone secret $$"
cv 1 secret create s --from-file "$T/s" > /dev/null || fail "secret create s"
cv 1 volume create db1 --size 24M --secret s --replicas 2 > "$T/out" 2>&1 ||
    fail "volume create db1 --replicas 2: $(cat "$T/out")"
wait_rep_state 30 1 db1 n1 InSync
wait_rep_state 30 1 db1 n2 InSync
[ -z "$(rep_state 1 db1 n3)" ] || fail "db1 has a replica on n3: $(cv 1 volume info db1 --json)"

head -c 8M /dev/urandom > "$T/a"
head -c 4M /dev/urandom > "$T/b"
head -c 4M /dev/urandom > "$T/c"
nbd_put 1 db1 "$T/a" 0
cv 1 snapshot create db1@s1 > /dev/null || fail "snapshot create db1@s1"
nbd_put 1 db1 "$T/b" 0              # after the snapshot: not the clone's
# c1 as it must read: s1's first 4 MiB, then its own write, then zeros.
{ head -c 4M "$T/a"; cat "$T/c"; head -c 8M /dev/zero; } > "$T/want"
ok "db1 on n1 and n2: 8 MiB in snapshot s1, 4 MiB rewritten after it"

# ---- where a clone's replicas may go ------------------------------------------
expect_fail 1 "3 replicas, but 2 nodes hold an in-sync replica of its parent db1" \
    cv 1 volume clone db1@s1 cbad --replicas 3
expect_fail 1 "node n3 holds no in-sync replica of its parent db1" \
    cv 3 volume clone db1@s1 cbad
cv 1 volume info cbad > /dev/null 2>&1 && fail "a refused clone left volume cbad"
ok "a clone asking more replicas than db1's nodes, or made on n3, is refused"

cv 1 volume clone db1@s1 c1 > "$T/out" 2>&1 || fail "volume clone db1@s1 c1: $(cat "$T/out")"
wait_rep_state 30 1 c1 n1 InSync
wait_rep_state 30 1 c1 n2 InSync
[ -z "$(rep_state 1 c1 n3)" ] || fail "c1 has a replica on n3: $(cv 1 volume info c1 --json)"
cv 1 volume info c1 --json > "$T/info"
$PYTHON -c 'import json, sys
v = json.load(open(sys.argv[1]))
assert (v.get("replicaCount"), v.get("minReplicas")) == (2, 1)' "$T/info" ||
    fail "c1 is not 2 replicas, min 1, as db1: $(cat "$T/info")"
ok "c1: a clone of db1@s1 with db1's replicas (n1, n2; min 1), both InSync"

# parent_of N VOL: the parent VOL's manifest on node N names ("" if none).
parent_of() {
    $PYTHON -c 'import json, sys
m = json.load(open(sys.argv[1]))
p = m.get("parent")
print("%s@%s" % (p["volume"], p["snapshot"]) if p else "")' \
        "$(vol_dir "$(node_dir "$1")/data" "$2")/chain"
}
# get_through N VOL OUT: VOL's first 16 MiB through node N (the attach may
# wait for the previous writer's release).
get_through() {
    local i
    for ((i = 0; i < 20; i++)); do
        nbd_get "$1" "$2" 0 $((16 << 20)) "$3" 2> "$T/get.err" && return 0
        sleep 0.5
    done
    fail "reading $2 through n$1: $(cat "$T/get.err")"
}

nbd_put 1 c1 "$T/c" $((4 << 20))
expect_chains_equal 20 c1 1 2
for n in 1 2; do
    [ "$(parent_of $n c1)" = db1@s1 ] || fail "c1 on n$n names parent '$(parent_of $n c1)', not db1@s1"
done
get_through 1 c1 "$T/got"
cmp -s "$T/want" "$T/got" || fail "c1 through n1 is not s1's data and its write"
get_through 2 c1 "$T/got"
cmp -s "$T/want" "$T/got" || fail "c1 through n2 is not s1's data and its write"
get_through 1 db1 "$T/got"
cmp -s <({ cat "$T/b"; tail -c +$(((4 << 20) + 1)) "$T/a"; head -c 8M /dev/zero; }) "$T/got" ||
    fail "db1 changed under its clone"
ok "a write to c1: its files equal on n1 and n2, parent db1@s1 on both, the data through both"

# A clone of its own format (own header and key): REBUILD says so.
passfile "$T/s3" "repl-clone c3 secret $$"
cv 1 secret create s3 --from-file "$T/s3" > /dev/null || fail "secret create s3"
cv 1 volume clone db1@s1 c3 --secret s3 > "$T/out" 2>&1 || fail "volume clone db1@s1 c3 --secret s3: $(cat "$T/out")"
wait_rep_state 30 1 c3 n2 InSync
expect_chains_equal 20 c3 1 2
$PYTHON -c 'import json, sys
p = json.load(open(sys.argv[1])).get("parent") or {}
assert (p.get("volume"), p.get("snapshot"), p.get("ownFormat")) == ("db1", "s1", True), p' \
    "$(vol_dir "$(node_dir 2)/data" c3)/chain" || fail "c3 on n2 does not read through db1@s1 as a clone of its own format"
get_through 2 c3 "$T/got"
cmp -s <({ cat "$T/a"; head -c 8M /dev/zero; }) "$T/got" || fail "c3 through n2 is not s1's data"
cv 1 volume delete c3 > "$T/out" 2>&1 || fail "volume delete c3: $(cat "$T/out")"
ok "c3, a clone of its own format: its replica on n2 reads through db1@s1 with the parent's key, files equal"

# ---- a rebuild target without the parent ----------------------------------
cv 1 volume clone db1@s1 c2 > "$T/out" 2>&1 || fail "volume clone db1@s1 c2: $(cat "$T/out")"
wait_rep_state 30 1 c2 n2 InSync
# Past placement, as a set changed by hand would be: n3 in c2's set.
etcdctl_tls get --print-value-only /cryptvol/replicas/c2 > "$T/set" ||
    fail "etcdctl get c2's set"
$PYTHON -c 'import json, sys, time
s = json.load(open(sys.argv[1]))
s["want"] = 3
s["replicas"].append({"node": "n3", "state": "Rebuilding", "since": int(time.time()),
                      "behind": 0, "syncDone": 0, "syncTotal": 0, "error": ""})
print(json.dumps(s))' "$T/set" > "$T/set.new"
etcdctl_tls put /cryptvol/replicas/c2 "$(cat "$T/set.new")" > /dev/null ||
    fail "etcdctl put c2's set"
wait_rep_state 60 1 c2 n3 Failed
cv 1 volume info c2 --json > "$T/info"
grep -q "node n3: volume c2's parent db1@s1 is not here" "$T/info" ||
    fail "c2's replica on n3 is Failed without saying its parent is missing: $(cat "$T/info")"
[ ! -e "$(vol_dir "$(node_dir 3)/data" c2)" ] && [ ! -e "$(vol_dir "$(node_dir 3)/data" c2).rebuilding" ] ||
    fail "n3 made a chain of c2 without its parent: $(ls "$(node_dir 3)/data/volumes")"
cv 1 volume delete c2 > "$T/out" 2>&1 || fail "volume delete c2: $(cat "$T/out")"
ok "a rebuild of c2 on n3, which holds no db1: refused there, Failed ($(grep -o '"error": *"[^"]*parent[^"]*"' "$T/info" | head -n 1))"

# ---- growing the clone --------------------------------------------------------
expect_fail 1 "InSync replica of its parent db1" cv 1 volume replicas c1 --set 3
[ -z "$(rep_state 1 c1 n3)" ] || fail "a refused --set 3 put c1 on n3: $(cv 1 volume info c1 --json)"
cv 1 volume replicas db1 --set 3 > "$T/out" 2>&1 || fail "volume replicas db1 --set 3: $(cat "$T/out")"
wait_rep_state 60 1 db1 n3 InSync
cv 1 volume replicas c1 --set 3 > "$T/out" 2>&1 || fail "volume replicas c1 --set 3: $(cat "$T/out")"
wait_rep_state 60 1 c1 n3 InSync
expect_chains_equal 20 c1 1 2 3
[ "$(parent_of 3 c1)" = db1@s1 ] || fail "c1 on n3 names parent '$(parent_of 3 c1)', not db1@s1"
get_through 3 c1 "$T/got"
cmp -s "$T/want" "$T/got" || fail "c1 through n3 is not s1's data and its write"
# Only c1's own layers were copied: its header (what n2's rebuild of the
# new clone copied) and its 4 MiB write, none of db1's.
copied() {
    cat "$(node_dir 1)/cryptvold.log" "$(node_dir 2)/cryptvold.log" "$(node_dir 3)/cryptvold.log" |
        sed -n "s/.*volume c1: replica $1: InSync after a rebuild of \([0-9]*\) bytes.*/\1/p" | tail -n 1
}
c2n=$(copied n2) c3n=$(copied n3)
[ -n "$c2n" ] && [ "$c3n" = $((c2n + (4 << 20))) ] ||
    fail "c1's rebuild on n3 copied '$c3n' bytes, not its header ($c2n) and its 4 MiB write"
ok "c1 --set 3 (refused until n3 had db1): n3 rebuilt with parent db1@s1, equal files, the data through n3"
expect_fail 1 "its replica on node n3 stays: clone c1 reads through it there" \
    cv 1 volume replicas db1 --set 2
is_rep_state 1 db1 n3 InSync || fail "a refused db1 --set 2 changed n3's replica: $(cv 1 volume info db1 --json)"
ok "db1 --set 2 refused: c1's replica on n3 reads through db1's there"

# ---- flatten ------------------------------------------------------------------
cv 1 volume flatten c1 > "$T/out" 2>&1 || fail "volume flatten c1: $(cat "$T/out")"
expect_chains_equal 30 c1 1 2 3
for n in 1 2 3; do
    [ -z "$(parent_of $n c1)" ] || fail "c1 on n$n still names parent '$(parent_of $n c1)' after flatten"
done
cv 1 volume info c1 --json > "$T/info"
$PYTHON -c 'import json, sys
assert not json.load(open(sys.argv[1])).get("parent")' "$T/info" ||
    fail "c1's record still has a parent: $(cat "$T/info")"
for n in 1 2 3; do
    get_through $n c1 "$T/got"
    cmp -s "$T/want" "$T/got" || fail "c1 through n$n after flatten is not its data"
done
ok "flatten of c1: files equal on n1, n2, n3, no parent on any, the data through every node"
cv 1 volume replicas db1 --set 2 > "$T/out" 2>&1 || fail "volume replicas db1 --set 2 after the flatten: $(cat "$T/out")"
[ -z "$(rep_state 1 db1 n3)" ] || fail "db1 still on n3: $(cv 1 volume info db1 --json)"
get_through 3 c1 "$T/got"
cmp -s "$T/want" "$T/got" || fail "c1 through n3 without db1 there is not its data"
ok "after the flatten db1 leaves n3 (--set 2), and c1 still reads there"
