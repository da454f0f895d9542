#!/usr/bin/env bash
# Membership of a cluster on etcd, two cryptvold on 127.0.0.1 and one etcd
# (no netns): the first node founds the cluster; a node that was not added
# refuses to start, saying how to add it; one whose --node-name is not its
# certificate's refuses, naming both; `node add` then it joins (the keys
# come over the peer port) and is Online; `node list --json` fields; a
# kill -9 makes it Offline within 15 s; `node remove` is refused while a
# volume is placed on it, then works; a removed node refuses to start.
# etcd stopped longer than n1's lease: n1's node list says etcd is
# unreachable (the last list, stale), changes answer 503, and it is Online
# and takes changes once etcd is back; its lease expired, it takes another.
# A single node answers node commands with "no cluster".
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-etcd.sh"
source "$(dirname "$0")/lib-nodes.sh"

json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# A single node has no cluster.
cvd_start single --tls off
expect_fail 1 "no cluster: this is a single node" "$CRYPTVOL" node list
expect_fail 1 "no cluster" "$CRYPTVOL" node add n2 --address 127.0.0.1:1
cvd_stop
unset CRYPTVOL_SOCKET
ok "a single node: node list and node add say there is no cluster"

nodes_init
# n1's lease is short so that etcd's outage below outlasts it.
node_start 1 --node-lease-ttl 3 --etcd-timeout-ms 1000
grep -q "founded by this node (n1)" "$T/n1/cryptvold.log" ||
    fail "n1 did not found the cluster: $(tail -5 "$T/n1/cryptvold.log")"
grep -q '"event":"cluster.found"' "$T/n1/data/audit.log" ||
    fail "no cluster.found in n1's audit log"
[ "$(node_state 1 n1)" = Online ] || fail "n1 is $(node_state 1 n1), not Online"
ok "n1 founded the cluster and is Online"

node_refused 2 "node n2 is not a member of cluster [0-9a-f-]{36}: add it first with \`cryptvol node add n2 --address HOST:PORT\` on a member"
ok "n2, not added, refuses to start with the command to add it"

node_cert 3
node_refused 2 'node name "n2" \(node-name\) is not the name of its certificate in .* \("n3"\)' \
    --peer-tls-dir "$T/n3/peer"
ok "a node whose certificate is another's refuses, naming both"

expect_fail 1 "not HOST:PORT" cv 1 node add n2 --address nowhere
expect_fail 1 "not a valid name" cv 1 node add "a/b" --address 127.0.0.1:1
node_args 2
cv 1 node add n2 --address "127.0.0.1:${NODE_PEER[2]}" > "$T/add.out" ||
    fail "node add n2"
grep -q "node n2 added" "$T/add.out" || fail "node add printed: $(cat "$T/add.out")"
[ "$(node_state 1 n2)" = Joining ] || fail "n2 is $(node_state 1 n2) after add"
expect_fail 1 "exists|taken" cv 1 node add n2 --address 127.0.0.1:1
grep -q '"event":"node.add".*"result":"ok"' "$T/n1/data/audit.log" ||
    fail "no node.add in n1's audit log"
ok "node add: n2 is Joining; a second add, a bad address or name are refused"

node_start 2
wait_for 10 "n2 Online in n1's list" is_state 1 n2 Online
grep -q "joined: the seal key and KEK generations .* from node n1" \
    "$T/n2/cryptvold.log" || fail "n2's log does not say it joined: $(tail -5 "$T/n2/cryptvold.log")"
grep -q "gave node n2 the seal key" "$T/n1/cryptvold.log" ||
    fail "n1's log does not say it gave n2 the keys"
grep -q '"event":"node.join"' "$T/n2/data/audit.log" || fail "no node.join audited"
ok "n2 joined with the keys from n1 over the peer port and is Online"

cv 2 node list --json > "$T/list.json"
json 'sorted(d["nodes"][0].keys())' < "$T/list.json" | grep -qF \
    "'address', 'joined', 'kekGenerations', 'lastSeen', 'name', 'removed', 'self', 'state', 'volumes'" ||
    fail "node fields: $(json 'sorted(d["nodes"][0].keys())' < "$T/list.json")"
[ "$(json '[(n["name"], n["state"], n["self"]) for n in d["nodes"]]' < "$T/list.json")" = \
  "[('n1', 'Online', False), ('n2', 'Online', True)]" ] ||
    fail "node list on n2: $(cat "$T/list.json")"
[ "$(json 'd["etcd"]["reachable"]' < "$T/list.json")" = True ] ||
    fail "etcd not reachable in: $(cat "$T/list.json")"
json 'd["nodes"][1]["lastSeen"]' < "$T/list.json" |
    grep -qE '^20[0-9]{2}-[0-9]{2}-[0-9]{2}T' || fail "lastSeen: $(cat "$T/list.json")"
cv 2 node list > "$T/list.txt"
grep -qE "^n2 \* +127.0.0.1:${NODE_PEER[2]} +Online" "$T/list.txt" ||
    fail "node list table: $(cat "$T/list.txt")"
ok "node list --json: name, address, state, lastSeen, kekGenerations, volumes, self; etcd reachable"

cv 2 volume create db1 --size 4M --plaintext > /dev/null || fail "volume create on n2"
[ "$(cv 1 node list --json | json '[n["volumes"] for n in d["nodes"]]')" = "[0, 1]" ] ||
    fail "volumes per node: $(cv 1 node list --json)"
expect_fail 1 "node n2: volume db1 is placed on it" cv 1 node remove n2
ok "node remove is refused while a volume is placed on the node, naming it"

node_kill 2
start=$(date +%s)
wait_for 15 "n2 Offline after kill -9" is_state 1 n2 Offline
ok "n2 killed: Offline after $(( $(date +%s) - start )) s"

node_start 2
wait_for 10 "n2 Online again" is_state 1 n2 Online
grep -c "joined:" "$T/n2/cryptvold.log" | grep -qx 1 ||
    fail "n2 joined again at restart instead of unsealing its own keys"
cv 2 volume delete db1 > /dev/null || fail "volume delete db1 on n2"
node_stop 2
cv 1 node remove n2 > "$T/rm.out" || fail "node remove n2"
[ "$(node_state 1 n2)" = Removed ] || fail "n2 is $(node_state 1 n2) after remove"
grep -q '"event":"node.remove".*"result":"ok"' "$T/n1/data/audit.log" ||
    fail "no node.remove audited"
node_refused 2 "node n2 was removed from cluster"
ok "a member restarts with its own keys; removed, it refuses to start"

etcd_stop
cv 1 node list --json > "$T/down.json" || fail "node list with etcd down"
[ "$(json '(d["etcd"]["reachable"], d["stale"], [n["name"] for n in d["nodes"]])' < "$T/down.json")" = \
  "(False, True, ['n1', 'n2'])" ] || fail "node list with etcd down: $(cat "$T/down.json")"
json 'd["etcd"]["error"]' < "$T/down.json" | grep -q "127.0.0.1" ||
    fail "the etcd error does not name the endpoint: $(cat "$T/down.json")"
cv 1 node list | grep -q "^etcd: UNREACHABLE since" || fail "node list table with etcd down: $(cv 1 node list)"
passfile "$T/v" value
expect_fail 1 "unreachable" cv 1 secret create s1 --from-file "$T/v"
cv 1 --json secret create s1 --from-file "$T/v" > "$T/down.err" 2>&1 || true
grep -q '"code":"Unavailable"' "$T/down.err" ||
    fail "a change with etcd down is not 503 Unavailable: $(cat "$T/down.err")"
etcd_restart
wait_for 15 "n1 Online after etcd came back" is_state 1 n1 Online
wait_for 5 "n1 logging that etcd came back" \
    grep -q "etcd answers again; node n1 is Online" "$T/n1/cryptvold.log"
cv 1 secret create s1 --from-file "$T/v" > /dev/null || fail "secret create after etcd came back"
ok "etcd down: node list says so (the last list, stale), changes 503; back: Online, changes work"

# A lease that expired (etcd keeps leases across its own restart, so the
# expiry of a node cut off from a running etcd is made by revoking it).
lease=$(grep -o "node n1 is Online (lease [0-9]*" "$T/n1/cryptvold.log" | tail -1 | grep -o "[0-9]*$")
etcdctl_tls lease revoke "$(printf %x "$lease")" > /dev/null || fail "lease revoke"
wait_for 10 "n1 replacing its expired lease" grep -q "lease $lease expired .*taking a new one" "$T/n1/cryptvold.log"
wait_for 5 "n1 Online with its new lease" is_state 1 n1 Online
ok "n1's lease expired: it took a new one and is Online again"
