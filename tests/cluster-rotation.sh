#!/usr/bin/env bash
# KEK rotation across two nodes on one etcd (127.0.0.1, no netns), and the
# cluster-wide audit log:
#   - cluster encryption enabled on n1 after n2 joined: n2 gets generation
#     1 from n1 over the peer port, and its volumes (no secret) wrap their
#     token with it;
#   - a rotation started on n2 finishes; every volume attaches on its node
#     after it, and cluster info says the same on both nodes;
#   - the runner (n2) killed with -9 in DistributingKEK, then (a second
#     run) in EncryptingDEKs: n1 takes the lock once n2's lease expires,
#     names itself in the record, and the rotation finishes once n2 is back
#     (it re-wraps its own volumes at its start), run by n1;
#   - with n2 Offline a rotation started on n1 waits, and cluster info on
#     n1 names n2 (Offline) and the generation; n2 back, it finishes;
#   - events made on n1 are read through n2's `cryptvol audit --json`, each
#     with its node.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-etcd.sh"
source "$(dirname "$0")/lib-nodes.sh"
need nbdinfo

json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
info() { cv "$1" cluster info --json | json "$2"; }
# The pauses that let the test kill the runner in a given state: 20 x this
# before each state change, 1 x per volume re-wrapped.  A short lease makes
# a killed node's lock go in 2 s.
OPTS=(--tls off --rotation-delay-ms 100 --node-lease-ttl 2)
SIZE=$((8 * 1024 * 1024))

attach_all() {
    local n v
    for v in a1 a2 b1 b2 b3; do
        n=1
        [[ $v = b* ]] && n=2
        [ "$(nbdinfo --size "$(nbd_uri $n $v)")" = $SIZE ] ||
            fail "$1: volume $v does not attach on n$n"
    done
}
# gens_at GEN: every volume's record at GEN.
gens_at() {
    [ "$(cv 1 volume list --json | json 'sorted(set(v["kekGeneration"] for v in d))')" = "[$1]" ]
}
# Checks wait_for retries (a "$(...)" argument would be read once only).
state_is() { [ "$(info "$1" 'd["rotationState"]')" = "$2" ]; }
runner_is() { [ "$(info "$1" 'd["rotation"]["node"]')" = "$2" ]; }
node_is() { [ "$(node_state "$1" "$2")" = "$3" ]; }
finished() {
    [ "$(info "$1" 'd["rotationState"]')" = NoRotation ] &&
        [ "$(info "$1" 'd["currentKekGeneration"]')" = "$2" ]
}

nodes_init
node_start 1 "${OPTS[@]}"
node_args 2
cv 1 node add n2 --address "127.0.0.1:${NODE_PEER[2]}" > /dev/null || fail "node add n2"
node_start 2 "${OPTS[@]}"
wait_for 10 "n2 Online" node_is 1 n2 Online
cv 1 cluster encryption enable > /dev/null || fail "cluster encryption enable on n1"
cv 1 volume create a1 --size 8M > /dev/null || fail "volume create a1 on n1"
cv 1 volume create a2 --size 8M > /dev/null || fail "volume create a2 on n1"
for v in b1 b2 b3; do
    cv 2 volume create $v --size 8M > /dev/null 2> "$T/err" || fail "volume create $v on n2: $(cat "$T/err")"
done
grep -q "KEK generation 1 received from node n1" "$T/n2/cryptvold.log" ||
    fail "n2 did not receive generation 1 from n1: $(grep -i kek "$T/n2/cryptvold.log" | tail -3)"
[ "$(cv 1 node list --json | json '[n["kekGenerations"] for n in d["nodes"]]')" = "[[1], [1]]" ] ||
    fail "KEK generations per node: $(cv 1 node list --json)"
gens_at 1 || fail "volumes not at generation 1: $(cv 1 volume list --json)"
attach_all "after enable"
ok "encryption enabled on n1 after n2 joined: n2 got generation 1 over the peer port; volumes on both nodes attach"

# ---- a rotation started on n2 ----------------------------------------------
cv 2 cluster kek rotate > "$T/rotate.out" 2>&1 || fail "cluster kek rotate on n2: $(cat "$T/rotate.out")"
grep -q "KEK rotation to generation 2 finished" "$T/rotate.out" || fail "rotate: $(cat "$T/rotate.out")"
for n in 1 2; do
    finished $n 2 || fail "n$n: rotation not finished: $(cv $n cluster info --json)"
    [ "$(info $n 'd["rotation"]["node"]')" = n2 ] || fail "n$n: runner: $(cv $n cluster info --json)"
    [ "$(info $n 'd["rotation"]["volumesDone"], d["rotation"]["volumesTotal"]')" = "5 5" ] ||
        fail "n$n: progress: $(cv $n cluster info --json)"
done
gens_at 2 || fail "volumes not at generation 2: $(cv 1 volume list --json)"
[ "$(cv 1 node list --json | json '[n["kekGenerations"] for n in d["nodes"]]')" = "[[2], [2]]" ] ||
    fail "KEK generations per node after the rotation (1 pruned): $(cv 1 node list --json)"
grep -q "KEK rotation to generation 2: .* volumes of node n1 re-wrapped" "$T/n1/cryptvold.log" ||
    fail "n1 did not re-wrap its own volumes"
attach_all "after rotation 2"
ok "rotation started on n2 finished (runner n2, 5 of 5 volumes, same info on both nodes); every volume attaches on its node"

# ---- the runner killed in each state ---------------------------------------
# kill_runner STATE GEN: starts a rotation on n2, kills n2 in STATE, waits
# for n1 to take over, starts n2 again, and checks the rotation finishes,
# run by n1.
kill_runner() {
    local state=$1 gen=$2
    cv 2 cluster kek rotate --no-wait > /dev/null 2>&1 || fail "rotate to $gen on n2"
    wait_for 10 "n2 in $state" state_is 2 "$state"
    node_kill 2
    [ "$(info 1 'd["rotationState"]')" = "$state" ] ||
        fail "$state: the rotation moved on before n2 was killed: $(cv 1 cluster info --json)"
    wait_for 15 "$state: n1 takes over from the dead runner" runner_is 1 n1
    node_start 2 "${OPTS[@]}"
    wait_for 30 "$state: rotation to $gen finished after n2 came back" finished 1 "$gen"
    finished 2 "$gen" || fail "$state: n2 says $(cv 2 cluster info --json)"
    [ "$(info 2 'd["rotation"]["node"]')" = n1 ] || fail "$state: runner: $(cv 2 cluster info --json)"
    gens_at "$gen" || fail "$state: volumes: $(cv 1 volume list --json)"
    grep -q "node n1 runs the KEK rotation to generation $gen from here on ($state" \
        "$T/n1/cryptvold.log" || fail "$state: n1's log does not say it took over"
    attach_all "after the runner died in $state"
}
kill_runner DistributingKEK 3
ok "runner n2 killed (-9) in DistributingKEK: n1 took over and finished generation 3; every volume attaches"
kill_runner EncryptingDEKs 4
ok "runner n2 killed (-9) in EncryptingDEKs: n1 took over and finished generation 4; every volume attaches"

# ---- an Offline member is waited for ---------------------------------------
node_kill 2
wait_for 15 "n2 Offline" node_is 1 n2 Offline
cv 1 cluster kek rotate --no-wait > /dev/null 2>&1 || fail "rotate to 5 on n1"
waits_for_n2() {
    cv 1 cluster info | grep -q "^waiting: *waiting for node n2 (Offline) to receive KEK generation 5$"
}
wait_for 10 "the rotation waits for n2, and cluster info says so" waits_for_n2
sleep 3         # longer than the runner's pause: it must not move on
[ "$(info 1 'd["rotationState"]')" = DistributingKEK ] ||
    fail "the rotation went on without n2: $(cv 1 cluster info --json)"
# n2 back, slow at re-wrapping (1 s a volume), and killed again as soon as
# EncryptingDEKs begins: its volumes hold the rotation up, named.
node_start 2 --tls off --rotation-delay-ms 1000 --node-lease-ttl 2
wait_for 15 "n2 back: the rotation to 5 moves on" state_is 1 EncryptingDEKs
node_kill 2
rewrap_waits() {
    cv 1 cluster info | grep -Eq "^waiting: *waiting for node n2 \(Offline\) to re-wrap volume b[123]( and [12] more)?$"
}
wait_for 10 "EncryptingDEKs waits for n2's volumes, and cluster info says so" rewrap_waits
sleep 3
state_is 1 EncryptingDEKs || fail "the rotation finished without n2's volumes: $(cv 1 cluster info --json)"
node_start 2 "${OPTS[@]}"
wait_for 30 "rotation to 5 finished once n2 was back" finished 1 5
[ "$(info 2 'd["rotation"]["waiting"]')" = None ] || fail "n2 still waits: $(cv 2 cluster info --json)"
gens_at 5 || fail "volumes after rotation 5: $(cv 1 volume list --json)"
attach_all "after rotation 5"
ok "with n2 Offline the rotation waited in DistributingKEK, then in EncryptingDEKs for n2's volumes, naming them; finished once n2 was back"

# ---- the audit log is cluster-wide -----------------------------------------
cv 2 audit --json > "$T/audit.json" || fail "audit on n2"
$PYTHON - "$T/audit.json" <<'PY' || fail "audit on n2: $(head -c 3000 "$T/audit.json")"
import json, sys
ev = json.load(open(sys.argv[1]))["events"]
by = lambda node, event: [e for e in ev if e.get("node") == node and e["event"] == event]
assert all(e.get("node") in ("n1", "n2") for e in ev), [e for e in ev if e.get("node") not in ("n1", "n2")]
assert by("n1", "cluster.encryption.enable"), "n1's enable is not in n2's view"
assert {e["object"] for e in by("n1", "volume.create")} == {"volume/a1", "volume/a2"}, by("n1", "volume.create")
assert {e["object"] for e in by("n2", "volume.create")} == {"volume/b1", "volume/b2", "volume/b3"}
assert by("n2", "kek.receive"), "n2's kek.receive"
assert by("n1", "kek.send"), "n1's kek.send"
assert by("n1", "kek.rotation.takeover"), "n1's takeover"
assert len(by("n1", "kek.rotation.finish")) == 3, by("n1", "kek.rotation.finish")
PY
grep -q '"node":"n1"' "$T/n1/data/audit.log" || fail "n1's local audit.log has no node field"
ok "n1's events (enable, creates, KEK sends, takeover, finishes) read through n2's cryptvol audit, each with its node"

# A clean stop: the rotation worker, the audit queue and the node's lease
# go in order (an ASan build reports any leak or use after free here).
node_stop 2
node_stop 1
ok "both nodes stop cleanly"
