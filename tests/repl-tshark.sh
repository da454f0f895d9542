#!/usr/bin/env bash
# Replication's traffic on the wire, seen by tshark on the namespace's
# loopback (the peer port, tcp 10810 only).  Replication carries the
# volume's ciphertext whatever the mode, so the canary is what only the
# plaintext peer protocol shows: the frames' magic "CVP1" and the volume's
# name, which every replication request carries (repl-proto.h).  A volume
# of two replicas named CANARY:
# - the control: with peer-tls off on both nodes, a write through NBD on
#   n1 puts CVP1 frames naming the volume on the wire (so the check below
#   can fail);
# - both nodes switched to on, then require (the API): the same write shows
#   neither CVP1 nor the name, while the capture did see the traffic.
. "$(dirname "$0")/lib-cluster.sh"
. "$(dirname "$0")/lib-repl.sh"

need tshark nbdcopy
CANARY=cnryq7tshark
NODE_EXTRA=(--peer-tls off --node-lease-ttl 6)
cluster_up 2
online() {
    [ "$(cv 1 node list --json | json 'sum(1 for n in d["nodes"] if n["state"] == "Online")')" = 2 ]
}
wait_until 20 "n1 does not see two nodes Online" online
insync() {
    [ "$(cv 1 volume info "$CANARY" --json | json 'sum(1 for r in d["replicas"] if r["state"] == "InSync")')" = 2 ]
}

passfile "$T/pw" "repl-tshark secret $$"
cv 1 secret create pw --from-file "$T/pw" > /dev/null || fail "secret create"
cv 1 volume create "$CANARY" --size 16M --secret pw --replicas 2 > "$T/out" 2>&1 ||
    fail "volume create --replicas 2: $(cat "$T/out")"
wait_until 30 "the replicas are not InSync: $(cv 1 volume info "$CANARY")" insync

# capture NAME: tshark on lo (the peer port) while 2 MiB are written
# through NBD on n1; the capture in $T/NAME.pcap.
capture() {
    local pcap=$T/$1.pcap pid i
    rm -f "$pcap"
    tshark -i lo -f "tcp port $NODE_PEER_PORT" -w "$pcap" > "$T/$1.tshark" 2>&1 &
    pid=$!
    on_exit "kill $pid 2>/dev/null"
    for ((i = 0; i < 100; i++)); do
        grep -q "Capturing on" "$T/$1.tshark" 2>/dev/null && [ -s "$pcap" ] && break
        sleep 0.1
    done
    grep -q "Capturing on" "$T/$1.tshark" || fail "tshark did not start: $(cat "$T/$1.tshark")"
    head -c 2M /dev/urandom > "$T/$1.data"
    in_ns nbdcopy "$T/$1.data" "$(nbd_uri 1 "$CANARY")" 2> "$T/err" ||
        fail "writing through NBD on n1: $(cat "$T/err")"
    sleep 1
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
}
# seen NAME WHAT: how often WHAT is in the captured bytes.
# seen NAME WHAT: CVP1 counts frame headers (lib-repl.sh), anything else
# the bytes themselves.
seen() {
    if [ "$2" = CVP1 ]; then peer_frames "$T/$1.pcap"; else grep -a -o "$2" "$T/$1.pcap" | wc -l; fi
}
packets() { tshark -r "$T/$1.pcap" 2>/dev/null | wc -l; }

# ---- the control: plaintext ----------------------------------------------
[ "$(cv 1 node peer-tls)" = "peer-tls off" ] || fail "n1: $(cv 1 node peer-tls)"
capture off
[ "$(seen off CVP1)" -gt 0 ] || fail "peer-tls off: no CVP1 frame in the capture ($(packets off) packets)"
[ "$(seen off "$CANARY")" -gt 0 ] || fail "peer-tls off: the volume's name is not in the capture"
[ "$(cv 1 node stats --json | json 'd["servers"]["peer"]["PlainTotal"]')" -gt 0 ] ||
    fail "n1 counted no plaintext session"
ok "control: with peer-tls off, CVP1 frames naming $CANARY are on the wire ($(seen off CVP1) frames)"

# ---- TLS: on, then require ------------------------------------------------
for mode in on require; do
    for n in 1 2; do
        cv "$n" node peer-tls "$mode" > "$T/out" || fail "n$n: peer-tls $mode: $(cat "$T/out")"
    done
done
capture tls
[ "$(packets tls)" -gt 20 ] || fail "the capture under require saw almost nothing ($(packets tls) packets)"
[ "$(seen tls CVP1)" = 0 ] || fail "peer-tls require: $(seen tls CVP1) plaintext CVP1 frames on the wire"
[ "$(seen tls "$CANARY")" = 0 ] || fail "peer-tls require: the volume's name is on the wire"
wait_until 10 "plaintext sessions still open: n1 $(cv 1 node stats --json | json 'd["servers"]["peer"]["PlainCurr"]')" \
    bash -c "[ \"\$(CRYPTVOL_SOCKET=$(node_sock 1) $CRYPTVOL node stats --json | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)[\"servers\"][\"peer\"][\"PlainCurr\"])')\" = 0 ]"
insync || fail "after the switch: $(cv 1 volume info "$CANARY")"
rm -f "$T/rb"
in_ns nbdcopy "$(nbd_uri 1 "$CANARY")" "$T/rb" 2> "$T/err" || fail "reading back: $(cat "$T/err")"
cmp -s -n 2097152 "$T/rb" "$T/tls.data" || fail "the volume does not read back what was written"
ok "with peer-tls require: $(packets tls) packets, no CVP1 frame, no volume name; replicas InSync"
