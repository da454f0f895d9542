#!/usr/bin/env bash
# Cluster-wide KEK rotation on three nodes: a rotation started on n3
# finishes with every node holding the new generation and every volume
# (each on its node) re-wrapped and attaching with its data; then kill -9
# of the node running a rotation, once in DistributingKEK and once in
# EncryptingDEKs (--rotation-delay-ms holds it there), and the rotation
# finishes on another node.  The killed node is started again once another
# node has taken the rotation over, as the design needs: in
# DistributingKEK the new generation may exist only on the killed runner
# (the others fetch it from a member over the peer port), and in
# EncryptingDEKs only the node holding a volume's data re-wraps its
# token, so the killed node's volumes wait for it (docs/cluster.md).
. "$(dirname "$0")/lib-cluster.sh"

need nbdcopy cryptsetup
# A short lease: a dead runner's lock is free 3 s after it died.
NODE_EXTRA=(--node-lease-ttl 3 --rotation-delay-ms 300)
cluster_up 3
cv 1 cluster encryption enable --kek-protection software > /dev/null || fail "encryption enable"
wait_until 10 "n3 does not see cluster encryption Enabled" bash -c \
    "CRYPTVOL_SOCKET=$(node_sock 3) $CRYPTVOL cluster info --json | grep -q '\"encryptionState\": *\"Enabled\"'"

VOLS=()
for n in 1 2 3; do
    for v in a b; do
        cv "$n" volume create "r$n$v" --size 4M > /dev/null || fail "volume create r$n$v on n$n"
        printf 'cryptvol-rotation-mark:r%s%s\n' "$n" "$v" > "$T/mark-r$n$v"
        in_ns nbdcopy "$T/mark-r$n$v" "$(nbd_uri "$n" "r$n$v")" 2> "$T/err" ||
            fail "writing r$n$v on n$n: $(cat "$T/err")"
        VOLS+=("$n:r$n$v")
    done
done

info() { cv "$1" cluster info --json | json "$2"; }
# check_all GEN: every volume's token at GEN, and it attaches on its node
# with the data written at the start; every up node holds GEN.
check_all() {
    local nv n v gen=$1
    for nv in "${VOLS[@]}"; do
        n=${nv%%:*} v=${nv#*:}
        got=$(cryptsetup luksDump --dump-json-metadata "$(vol_dir "$(node_dir "$n")/data" "$v")/header" |
              json '[t["kek_generation"] for t in d["tokens"].values() if "kek_generation" in t]')
        [ "$got" = "[$gen]" ] || fail "$v on n$n: token generations $got, not [$gen]"
        rm -f "$T/rb"
        in_ns nbdcopy "$(nbd_uri "$n" "$v")" "$T/rb" 2> "$T/err" ||
            fail "$v does not attach on n$n: $(cat "$T/err")"
        cmp -s -n "$(stat -c %s "$T/mark-$v")" "$T/rb" "$T/mark-$v" ||
            fail "$v on n$n does not read back its data"
    done
    cv 1 node list --json > "$T/nodes.json"
    for n in 1 2 3; do
        [ "$(json "$gen in [x for x in d['nodes'] if x['name'] == 'n$n'][0]['kekGenerations']" < "$T/nodes.json")" = True ] ||
            fail "n$n does not hold KEK generation $gen: $(cat "$T/nodes.json")"
    done
}
finished() {   # GEN: NoRotation at GEN seen from every running node
    local n
    for n in "${!NODE_PID[@]}"; do
        [ "$(info "$n" 'd["rotationState"], d["currentKekGeneration"]')" = "NoRotation $1" ] || return 1
    done
}

# ---- a rotation started on n3 --------------------------------------------------
cv 3 cluster kek rotate > "$T/out" || fail "kek rotate on n3: $(cat "$T/out")"
wait_until 20 "the rotation to generation 2 did not finish on every node" finished 2
check_all 2
ok "a rotation started on n3 finished; every node holds generation 2 and every volume attaches"

# ---- kill -9 of the runner in each state ---------------------------------------
# kill_in STATE GEN: starts a rotation on n3, kills n3 once n1 sees it in
# STATE run by n3, sees another node take it over, restarts n3, and waits
# for the rotation to finish.
kill_in() {
    local state=$1 gen=$2 i seen="" runner
    cv 3 cluster kek rotate --no-wait > "$T/out" || fail "kek rotate --no-wait on n3: $(cat "$T/out")"
    for ((i = 0; i < 400; i++)); do
        seen=$(info 1 'd["rotationState"], (d.get("rotation") or {}).get("node")')
        [ "$seen" = "$state n3" ] && break
        [ "${seen%% *}" = NoRotation ] && [ "$(info 1 'd["currentKekGeneration"]')" = "$gen" ] &&
            fail "the rotation to $gen finished before it was seen in $state (last seen: $seen)"
        sleep 0.02
    done
    [ "$seen" = "$state n3" ] || fail "n1 never saw the rotation in $state on n3 (last: $seen)"
    node_kill 3
    for ((i = 0; i < 150; i++)); do
        runner=$(info 1 '(d.get("rotation") or {}).get("node")')
        [ "$runner" = n1 ] || [ "$runner" = n2 ] && break
        [ "$(info 1 'd["rotationState"]')" = NoRotation ] && break
        sleep 0.2
    done
    [ "$runner" = n1 ] || [ "$runner" = n2 ] || [ "$(info 1 'd["rotationState"]')" = NoRotation ] ||
        fail "no node took over the rotation killed in $state within 30 s (runner: $runner)"
    node_start 3
    wait_until 30 "the rotation to $gen killed in $state did not finish" finished "$gen"
    cv 1 audit --json > "$T/audit.json" || fail "audit on n1"
    $PYTHON - "$T/audit.json" "$gen" <<'EOF' || fail "audit: the rotation to $gen did not finish on n1 or n2"
import json, sys
doc = json.load(open(sys.argv[1]))
evs = doc["events"] if isinstance(doc, dict) else doc
fin = [e for e in evs if e.get("event") == "kek.rotation.finish"]
if not fin or fin[-1].get("node") not in ("n1", "n2"):
    sys.exit("last kek.rotation.finish: %r" % (fin[-1:] or None))
EOF
    check_all "$gen"
}
kill_in DistributingKEK 3
ok "a rotation whose runner was killed in DistributingKEK finished on another node"
kill_in EncryptingDEKs 4
ok "a rotation whose runner was killed in EncryptingDEKs finished on another node"
