#!/usr/bin/env bash
# Replicas at the command line and in the admin API, three nodes and etcd
# in a network namespace (lib-cluster.sh): volume create --replicas 3
# places one replica on each node, this node first, and volume info shows
# the set (from every node: the JSON's members and the human table); the
# next sets go to the nodes holding the fewest replicas, ties by name;
# --replicas 4 on three nodes, --min-replicas above --replicas and replicas
# on a 1-replica request's limits are refused saying why, and make
# nothing; volume replicas --set is validated (count, min, Online nodes);
# attached on another node, its info names the writer and is answered by
# it (forwarded); a volume without a set shows no replicas; delete
# removes the set.
# A new set's replicas become InSync (the repair loop's copy of a new
# volume); what they hold is tests/repl-write.sh's and repl-resync.sh's.
. "$(dirname "$0")/lib-cluster.sh"
. "$(dirname "$0")/lib-repl.sh"

cluster_up 3
online() {
    [ "$(cv 1 node list --json | json 'sum(1 for n in d["nodes"] if n["state"] == "Online")')" = 3 ]
}
wait_until 20 "n1 does not see three nodes Online" online

# expect_fail STATUS REGEX CMD...: CMD exits STATUS, stderr matching REGEX.
expect_fail() {
    local want=$1 re=$2 rc=0
    shift 2
    "$@" > "$T/out" 2> "$T/err" || rc=$?
    [ "$rc" = "$want" ] || fail "$*: exited $rc, not $want: $(cat "$T/err" "$T/out")"
    grep -qE -- "$re" "$T/err" || fail "$*: stderr does not match '$re': $(cat "$T/err")"
}

# check_set N VOL WANT_NODES MIN: VOL's info from node N has a replica set
# on exactly WANT_NODES ("n1 n2 n3", in the set's order), every member the
# API documents, and min MIN.
check_set() {
    cv "$1" volume info "$2" --json > "$T/info" || fail "n$1: volume info $2: $(cat "$T/info")"
    $PYTHON - "$T/info" "$3" "$4" <<'PY' || fail "n$1: volume info $2: $(cat "$T/info")"
import json, sys
d = json.load(open(sys.argv[1]))
want, mn = sys.argv[2].split(), int(sys.argv[3])
for k in ("replicas", "replicaCount", "minReplicas", "epoch", "writer"):
    assert k in d, "no member %s" % k
nodes = [r["node"] for r in d["replicas"]]
assert nodes == want, "replicas on %s, not %s" % (nodes, want)
assert len(set(nodes)) == len(nodes), "a node twice: %s" % nodes
assert d["replicaCount"] == len(want), d["replicaCount"]
assert d["minReplicas"] == mn, d["minReplicas"]
assert isinstance(d["epoch"], int) and d["epoch"] >= 0
assert d["writer"] is None or d["writer"] in want, d["writer"]
for r in d["replicas"]:
    assert set(r) == {"node", "state", "since", "behind", "syncDone",
                      "syncTotal", "error"}, sorted(r)
    assert r["state"] in ("InSync", "OutOfSync", "Rebuilding", "Failed"), r
    for k in ("behind", "syncDone", "syncTotal"):
        assert isinstance(r[k], int) and r[k] >= 0, r
    assert r["since"] is None or r["since"].endswith("Z"), r
    assert r["error"] is None or isinstance(r["error"], str), r
# The node it was made on holds the whole chain: InSync from the start.
assert d["replicas"][0]["state"] == "InSync", d["replicas"][0]
PY
}

# ---- three replicas on three nodes --------------------------------------------
cv 1 volume create r3 --size 8M --replicas 3 > "$T/out" || fail "volume create r3 --replicas 3: $(cat "$T/out")"
grep -qE '^replicas: +3 \(writes need 2 in sync\), epoch [0-9]+, writer ' "$T/out" ||
    fail "volume create r3 does not show its replicas: $(cat "$T/out")"
for n in 1 2 3; do
    check_set "$n" r3 "n1 n2 n3" 2
done
cv 2 volume info r3 > "$T/out" || fail "n2: volume info r3"
grep -qE '^  NODE +STATE +SINCE +BEHIND +SYNC +ERROR$' "$T/out" || fail "no replicas table: $(cat "$T/out")"
for n in n1 n2 n3; do
    grep -qE "^  $n +(InSync|OutOfSync|Rebuilding|Failed) " "$T/out" ||
        fail "the replicas table has no line for $n: $(cat "$T/out")"
done
# all_insync N VOL: every replica of VOL InSync, as node N shows it.
all_insync() {
    cv "$1" volume info "$2" --json | json 'all(r["state"] == "InSync" for r in d["replicas"])' | grep -qx True
}
wait_until 30 "r3's replicas are not all InSync (seen from n3)" all_insync 3 r3
cv 3 volume info r3 > "$T/out"
[ "$(grep -cE '^  n[123] +InSync ' "$T/out")" = 3 ] || fail "n3's table does not say InSync: $(cat "$T/out")"
ok "volume create --replicas 3: one replica on each node, n1 first; volume info shows the set on every node, all InSync"

# ---- placement: the fewest replicas first, ties by name -----------------------
# r3 is on all three: n2 first (it makes it), then n1 (a tie, by name).
cv 2 volume create r2a --size 4M --replicas 2 --min-replicas 1 > /dev/null ||
    fail "n2: volume create r2a --replicas 2"
check_set 2 r2a "n2 n1" 1
# n1 and n2 hold 2 each, n3 1: n3 first and only then a tie.
cv 3 volume create r2b --size 4M --replicas 2 > /dev/null || fail "n3: volume create r2b"
check_set 3 r2b "n3 n1" 1
# Now n1 3, n2 2, n3 2: from n1, the least loaded of the others.
cv 1 volume create r2c --size 4M --replicas 2 > /dev/null || fail "n1: volume create r2c"
check_set 1 r2c "n1 n2" 1
ok "new replica sets go to the nodes with the fewest replicas (ties by name), the creating node first"

# ---- refusals --------------------------------------------------------------------
expect_fail 1 '^cryptvol: volume r4: 4 replicas need 4 Online nodes; the cluster has 3 Online \(each replica is on its own node\)$' \
    cv 1 volume create r4 --size 8M --replicas 4
expect_fail 1 'no such volume' cv 1 volume info r4
expect_fail 1 '^cryptvol: volume r6: "replicas" must be from 1 to 5$' \
    cv 1 volume create r6 --size 8M --replicas 6
expect_fail 1 '^cryptvol: volume rm: minReplicas 4 is more than its 3 replicas$' \
    cv 1 volume create rm --size 8M --replicas 3 --min-replicas 4
expect_fail 1 '^cryptvol: volume rm: minReplicas 2 needs as many replicas \(it has 1\)$' \
    cv 1 volume create rm --size 8M --min-replicas 2
expect_fail 1 '^cryptvol: volume rp: secret "later" does not exist yet, and a replicated volume cannot wait for it' \
    cv 1 volume create rp --size 8M --replicas 2 --secret later
expect_fail 2 '^cryptvol volume create: --replicas: "x" is not a number' \
    cv 1 volume create rx --size 8M --replicas x
cv 1 volume list --json > "$T/list"
[ "$(json '" ".join(sorted(v["name"] for v in d))' < "$T/list")" = "r2a r2b r2c r3" ] ||
    fail "a refused create left a volume: $(cat "$T/list")"
ok "more replicas than Online nodes, out-of-range counts and a Pending replicated volume are refused, making nothing"

# ---- volume replicas --set: validation ---------------------------------------------
expect_fail 1 '^cryptvol: volume r3: "count" must be from 1 to 5$' cv 1 volume replicas r3 --set 0
expect_fail 1 '^cryptvol: volume r3: "count" must be from 1 to 5$' cv 2 volume replicas r3 --set 6
expect_fail 1 '^cryptvol: volume r3: "min" must be from 1 to the count \(3\)$' \
    cv 1 volume replicas r3 --set 3 --min 4
expect_fail 1 '^cryptvol: volume r3: 4 replicas: 1 replica needs 4 Online nodes \(with those it has\); the cluster has 3 Online$' \
    cv 1 volume replicas r3 --set 4
expect_fail 1 'no such volume' cv 1 volume replicas nope --set 2
expect_fail 2 '^cryptvol volume replicas: needs NAME and --set N \(--set is missing\)$' \
    cv 1 volume replicas r3
cv 1 --json volume replicas r3 --set 0 > "$T/out" 2> "$T/err" && fail "--set 0 accepted"
grep -q '"code":"BadRequest"' "$T/err" || fail "--json: no BadRequest: $(cat "$T/err")"
check_set 1 r3 "n1 n2 n3" 2
ok "volume replicas --set: count, min and Online nodes checked, the set unchanged"

# ---- volume replicas --set: grow and shrink -------------------------------------------
# r2a is on n2 and n1: a third goes on n3 (asked of n3, forwarded to n2).
cv 3 volume replicas r2a --set 3 > "$T/out" || fail "volume replicas r2a --set 3: $(cat "$T/out")"
grep -qE '^volume r2a: 3 replicas$' "$T/out" || fail "volume replicas --set 3 says: $(cat "$T/out")"
grep -qE '^  n3 +(Rebuilding|InSync) ' "$T/out" || fail "no n3 in r2a's set: $(cat "$T/out")"
wait_until 30 "r2a's new replica on n3 is not InSync" all_insync 1 r2a
check_set 1 r2a "n2 n1 n3" 1
cv 1 volume replicas r2a --set 2 --min 2 > "$T/out" || fail "volume replicas r2a --set 2: $(cat "$T/out")"
cv 1 volume info r2a --json | json '(len(d["replicas"]), d["replicaCount"], d["minReplicas"])' |
    grep -qx '(2, 2, 2)' || fail "r2a after --set 2 --min 2: $(cv 1 volume info r2a --json)"
ok "volume replicas --set 3 adds a replica that becomes InSync; --set 2 --min 2 removes one"

# ---- the writer: per-volume requests go to it ----------------------------------------
# r3 attached on n2 (not the node it was made on): its info, asked of n1
# and n3, is n2's (in use there: only n2's NBD server knows it).
if $PYTHON -c 'import nbd' 2> /dev/null; then
    coproc HOLD { in_ns "$PYTHON" "$SRC_DIR/tests/tools/nbd-hold.py" "$(nbd_uri 2 r3)"; }
    read -r -t 20 line <&"${HOLD[0]}" && [ "${line%% *}" = connected ] ||
        fail "nbd-hold did not attach r3 on n2: ${line:-nothing}"
    echo "write 0 hello" >&"${HOLD[1]}"
    read -r -t 20 line <&"${HOLD[0]}" && [ "$line" = ok ] || fail "a write to r3 on n2: ${line:-nothing}"
    for n in 1 3; do
        cv "$n" volume info r3 --json > "$T/info" || fail "n$n: volume info r3"
        [ "$(json 'd["writer"], d["inUse"], d["epoch"] > 0' < "$T/info")" = "n2 True True" ] ||
            fail "n$n: r3 attached on n2 is not answered by n2: $(cat "$T/info")"
    done
    cv 1 volume info r3 > "$T/out"
    grep -qE '^replicas: +3 \(writes need 2 in sync\), epoch [1-9][0-9]*, writer n2$' "$T/out" ||
        fail "volume info does not name the writer: $(cat "$T/out")"
    echo quit >&"${HOLD[1]}"
    wait "$HOLD_PID" 2> /dev/null || true
    no_writer() { [ "$(cv 1 volume info r3 --json | json 'd["writer"]')" = None ]; }
    wait_until 20 "r3 is still attached after its client left" no_writer
    ok "a replicated volume attached on n2: its writer and epoch shown, its requests answered by n2"
fi

# ---- volume info reads, it does not attach ------------------------------------------
# Nobody writes r3 now: info on each replica's node (header, layers) must
# neither take the attach record nor raise the epoch.
wait_rep_state 30 1 r3 n3 InSync
epoch0=$(cv 1 volume info r3 --json | json 'd["epoch"]')
for n in 1 2 3 1 2 3; do
    cv "$n" volume info r3 --json > "$T/info" || fail "n$n: volume info r3"
done
epoch1=$(cv 1 volume info r3 --json | json 'd["epoch"]')
[ "$epoch0" = "$epoch1" ] ||
    fail "six volume info calls raised r3's epoch from $epoch0 to $epoch1 (each opened it writable)"
ok "volume info on every replica's node leaves r3's epoch at $epoch1"

# ---- a volume without a set; delete --------------------------------------------------
cv 2 volume create plain --size 4M > "$T/out" || fail "volume create plain"
! grep -q '^replicas:' "$T/out" || fail "a 1-replica volume shows replicas: $(cat "$T/out")"
cv 2 volume info plain --json | json '"replicas" in d or "writer" in d' | grep -qx False ||
    fail "a 1-replica volume has replica members: $(cv 2 volume info plain --json)"
cv 1 volume delete r2c > "$T/out" 2>&1 || fail "volume delete r2c: $(cat "$T/out")"
etcdctl_tls get /cryptvol/replicas/r2c > "$T/out" 2>&1 || fail "etcdctl get: $(cat "$T/out")"
[ ! -s "$T/out" ] || fail "r2c's replica set outlived the volume: $(cat "$T/out")"
ok "a volume without a set shows no replicas; delete removes the set"
