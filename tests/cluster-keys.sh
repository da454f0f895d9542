#!/usr/bin/env bash
# Keys across two nodes on one etcd (127.0.0.1, no netns): cluster
# encryption enabled on n1 before n2 joins, so n2 receives KEK generation 1
# with the seal key, and a volume made on n2 attaches there with no secret;
# a secret created on n1 opens a volume made and attached on n2; a volume
# Pending on n2 becomes Available when its secret is created on n1 (the
# watch: a cluster node does not poll); n2's volume is refused on n1, for
# an NBD attach and for a data change, naming n2; and etcd holds no secret
# value (its bytes, base64 or hex) in any key; a node that must join while
# no member is Online waits (503 saying why) and joins when one is back.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-etcd.sh"
source "$(dirname "$0")/lib-nodes.sh"
need nbdinfo

json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
state() { cv "$1" volume info "$2" --json | json 'd["state"]'; }
is_vol_state() { [ "$(state "$1" "$2")" = "$3" ]; }

nodes_init
node_start 1
cv 1 cluster encryption enable > /dev/null || fail "cluster encryption enable on n1"
node_args 2
cv 1 node add n2 --address "127.0.0.1:${NODE_PEER[2]}" > /dev/null || fail "node add n2"
node_start 2
wait_for 10 "n2 Online" is_state 1 n2 Online
grep -q "joined: the seal key and KEK generations 1 from node n1" \
    "$T/n2/cryptvold.log" || fail "n2 did not get KEK generation 1: $(grep joined "$T/n2/cryptvold.log")"
[ "$(cv 1 node list --json | json '[n["kekGenerations"] for n in d["nodes"]]')" = "[[1], [1]]" ] ||
    fail "KEK generations per node: $(cv 1 node list --json)"
cv 2 volume create kv --size 8M > /dev/null || fail "volume create kv on n2"
[ "$(nbdinfo --size "$(nbd_uri 2 kv)")" = $((8 * 1024 * 1024)) ] ||
    fail "kv (cluster KEK, no secret) does not attach on n2"
ok "encryption enabled on n1; n2 joined with KEK generation 1; its KEK volume attaches on n2"

canary="canary-passphrase-$$-$RANDOM"
passfile "$T/pass" "$canary"
cv 1 secret create s1 --from-file "$T/pass" > /dev/null || fail "secret create s1 on n1"
cv 2 volume create db1 --size 8M --secret s1 > /dev/null || fail "volume create db1 on n2 with n1's secret"
[ "$(state 2 db1)" = Available ] || fail "db1 on n2 is $(state 2 db1)"
[ "$(nbdinfo --size "$(nbd_uri 2 db1)")" = $((8 * 1024 * 1024)) ] ||
    fail "db1 does not attach on n2"
[ "$(cv 1 volume info db1 --json | json 'd["node"]')" = n2 ] ||
    fail "db1 is not placed on n2: $(cv 1 volume info db1 --json)"
ok "a secret created on n1 opens a volume made and attached on n2"

cv 2 volume create db2 --size 8M --secret s2 > /dev/null 2>&1 || fail "volume create db2 (pending)"
[ "$(state 2 db2)" = Pending ] || fail "db2 is $(state 2 db2), not Pending"
passfile "$T/pass2" "second-$canary"
cv 1 secret create s2 --from-file "$T/pass2" > /dev/null || fail "secret create s2 on n1"
start=$(date +%s%N)
wait_for 10 "db2 Available on n2 after s2 was created on n1" is_vol_state 2 db2 Available
grep -q "volume db2: created from pending" "$T/n2/cryptvold.log" ||
    fail "n2 did not make db2"
grep -q "volume db2: created from pending" "$T/n1/cryptvold.log" &&
    fail "n1 made n2's pending volume"
[ "$(nbdinfo --size "$(nbd_uri 2 db2)")" = $((8 * 1024 * 1024)) ] ||
    fail "db2 does not attach on n2"
ok "Pending on n2, Available $(( ($(date +%s%N) - start) / 1000000 )) ms after its secret was created on n1 (watch)"

# libnbd shows the server's message only in its debug output.
LIBNBD_DEBUG=1 nbdinfo --size "$(nbd_uri 1 db1)" > /dev/null 2> "$T/nbd.err" &&
    fail "n2's volume db1 attached on n1"
grep -q "volume db1: its data is on node n2 (attach it there)" "$T/nbd.err" ||
    fail "the NBD refusal on n1 does not name n2: $(grep -i 'error\|db1' "$T/nbd.err" | tail -3)"
cv 1 volume list --json | grep -q '"db1"' || fail "volume list on n1 misses db1"
ok "db1 (on n2) refused on n1 for NBD, naming n2; listed everywhere"

# Data operations asked of n1 are carried out by n2, which holds the data
# (forwarded over the peer port), and n2's audit log says who asked
# through which node.
cv 1 snapshot create db1@s1 > /dev/null || fail "snapshot create db1@s1 through n1"
cv 2 snapshot list db1 --json | grep -q '"s1"' ||
    fail "the snapshot made through n1 is not on n2: $(cv 2 snapshot list db1 --json)"
[ -d "$T/n2/data/volumes/db1" ] || fail "db1's layers are not on n2"
[ -e "$T/n1/data/volumes/db1" ] && fail "n1 made files for n2's volume db1"
cv 1 volume info db1 --json | grep -q '"s1"' || fail "volume info on n1 does not show n2's snapshot"
cv 2 volume create db3 --size 4M --secret s1 > /dev/null || fail "volume create db3 on n2"
cv 1 volume delete db3 > /dev/null || fail "volume delete db3 (on n2) through n1"
cv 2 volume info db3 > /dev/null 2>&1 && fail "db3 still exists after its delete through n1"
[ -e "$T/n2/data/volumes/db3" ] && fail "db3's files are left on n2"
grep '"peer:n1 for ' "$T/n2/data/audit.log" | grep '"volume.delete"' |
    grep -q '"volume/db3"' || fail "n2's audit log does not say n1 asked for db3's delete"
ok "snapshot create and volume delete of n2's volumes through n1: done on n2, audited there as asked through n1"

etcdctl_tls get --prefix "" > "$T/etcd.dump" || fail "etcdctl get --prefix"
[ -s "$T/etcd.dump" ] || fail "empty etcd dump"
grep -q "cluster" "$T/etcd.dump" || fail "the dump holds no cluster record"
for v in "$canary" "second-$canary"; do
    b64=$(printf '%s' "$v" | base64 -w0)
    hex=$(printf '%s' "$v" | od -An -tx1 | tr -d ' \n')
    for s in "$v" "${b64%%=*}" "$hex"; do
        grep -qiF -- "$s" "$T/etcd.dump" && fail "a secret value is in etcd ($s)"
    done
done
ok "no secret value in etcd (plain, base64 or hex)"

# A node that must join while no member is Online starts, is not ready
# (503 saying why), and joins as soon as a member comes back.
node_args 3
cv 1 node add n3 --address "127.0.0.1:${NODE_PEER[3]}" > /dev/null || fail "node add n3"
node_stop 2
expect_fail 1 "volume db1: its data is on node n2, which is Offline" \
    cv 1 volume delete db1
cv 1 volume info db1 --json | grep -q '"node": *"n2"' ||
    fail "volume info of db1 on n1 while n2 is Offline: $(cv 1 volume info db1 --json)"
ok "with n2 Offline: a change of db1 through n1 refused naming n2, its info from the record"
node_stop 1
node_start 3
expect_fail 1 "node n3 is joining: no member is Online to get the keys from" \
    cv 3 volume list
cv 3 --json volume list > "$T/join.err" 2>&1 || true
grep -q '"code":"Unavailable"' "$T/join.err" || fail "not 503 while joining: $(cat "$T/join.err")"
[ "$(node_state 3 n3)" = Joining ] || fail "n3 is $(node_state 3 n3) while it waits"
grep -q "node n3 is joining: no member is Online .*(trying again in the background)" \
    "$T/n3/cryptvold.log" || fail "n3 did not say why it waits"
wait_for 13 "n3 saying again why it waits (every 10 s)" \
    grep -q "node n3 is joining: no member is Online .*(trying again)$" "$T/n3/cryptvold.log"
node_start 1
wait_for 10 "n3 Online once n1 is back" is_state 1 n3 Online
cv 3 volume list > /dev/null || fail "n3 still not ready after joining"
grep -q "joined: the seal key and KEK generations 1 from node n1" "$T/n3/cryptvold.log" ||
    fail "n3 did not join from n1"
ok "n3, with no member Online, waits (503, Joining, saying why every 10 s) and joins when n1 is back"
