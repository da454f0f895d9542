#!/usr/bin/env bash
# A running cluster moved from peer-tls off to require node by node, as
# docs/cluster.md ("peer-tls") says (every node to on, then every node to
# require), through the API, while fio writes with --verify through NBD to
# a volume of three replicas: no I/O error, no verify error, the replicas
# stay InSync, and afterwards tshark on the namespace's loopback sees no
# plaintext CVP1 frame on the peer port (the control: it sees them before
# the switch, while the same fio runs).
. "$(dirname "$0")/lib-cluster.sh"
. "$(dirname "$0")/lib-repl.sh"

need tshark fio
NODE_EXTRA=(--peer-tls off)
cluster_certs "$CLUSTER"
etcd_up
# NBD in plaintext on the unix socket (fio's nbd engine; what is tested is
# the peer port): --tls on.
node_start 1 --nbd-unix "$T/n1/nbd.sock" --tls on
for n in 2 3; do
    cv 1 node add "n$n" --address "$(node_addr "$n"):$NODE_PEER_PORT" > /dev/null ||
        fail "node add n$n"
    node_start "$n"
done
online() {
    [ "$(cv 1 node list --json | json 'sum(1 for n in d["nodes"] if n["state"] == "Online")')" = 3 ]
}
wait_until 20 "n1 does not see three nodes Online" online
states() { cv 1 volume info sw --json | json '" ".join(r["state"] for r in d["replicas"])'; }
all_insync() { [ "$(states)" = "InSync InSync InSync" ]; }

passfile "$T/pw" "repl-tls-switch secret $$"
cv 1 secret create pw --from-file "$T/pw" > /dev/null || fail "secret create"
cv 1 volume create sw --size 64M --secret pw --replicas 3 > "$T/out" 2>&1 ||
    fail "volume create --replicas 3: $(cat "$T/out")"
wait_until 30 "the replicas are not InSync: $(states)" all_insync

# capture NAME SECONDS: tshark on lo (the peer port) for a while.
capture() {
    local pcap=$T/$1.pcap pid i
    tshark -i lo -f "tcp port $NODE_PEER_PORT" -w "$pcap" > "$T/$1.tshark" 2>&1 &
    pid=$!
    on_exit "kill $pid 2>/dev/null"
    for ((i = 0; i < 100; i++)); do
        grep -q "Capturing on" "$T/$1.tshark" 2>/dev/null && break
        sleep 0.1
    done
    sleep "$2"
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
}
seen() { peer_frames "$T/$1.pcap"; }
packets() { tshark -r "$T/$1.pcap" 2>/dev/null | wc -l; }

# 4 KiB random writes, each verified by reading it back (backlog), for
# the whole switch; fio fails on any I/O or verify error.
fio --name=switch --ioengine=nbd --uri="nbd+unix:///sw?socket=$T/n1/nbd.sock" \
    --rw=randwrite --bs=4k --iodepth=8 --size=32M --time_based --runtime=36 \
    --verify=crc32c --verify_backlog=512 --verify_fatal=1 \
    --output="$T/fio.out" > "$T/fio.log" 2>&1 &
FIO=$!
on_exit "kill $FIO 2>/dev/null"
sleep 3
capture off 2
[ "$(seen off)" -gt 0 ] || fail "the control: no CVP1 frame with peer-tls off ($(packets off) packets; tshark: $(cat "$T/off.tshark"); fio: $(tail -n 5 "$T/fio.log" "$T/fio.out" 2>&1))"
ok "control: with peer-tls off, fio's writes travel as plaintext CVP1 frames ($(seen off) seen)"

for mode in on require; do
    for n in 1 2 3; do
        cv "$n" node peer-tls "$mode" > "$T/out" || fail "n$n: peer-tls $mode: $(cat "$T/out")"
        sleep 2
        kill -0 "$FIO" 2>/dev/null || fail "fio ended during the switch (n$n to $mode): $(tail -n 20 "$T/fio.out" "$T/fio.log")"
    done
done
capture tls 4
wait "$FIO" || fail "fio failed during the switch: $(tail -n 30 "$T/fio.out" "$T/fio.log")"
grep -q "err= 0" "$T/fio.out" || fail "fio reports errors: $(grep -m3 err= "$T/fio.out")"
ok "fio --verify wrote through the whole switch with no error"

[ "$(packets tls)" -gt 20 ] || fail "the capture under require saw almost nothing ($(packets tls) packets)"
[ "$(seen tls)" = 0 ] || fail "after the switch: $(seen tls) plaintext CVP1 frames on the wire"
for n in 1 2 3; do
    [ "$(cv "$n" node stats --json | json 'd["servers"]["peer"]["PlainCurr"]')" = 0 ] ||
        fail "n$n still has plaintext sessions: $(cv "$n" node stats --json)"
done
all_insync || fail "after the switch: $(states)"
ok "after the switch: no CVP1 frame on the wire ($(packets tls) packets), no plaintext session, all InSync"
