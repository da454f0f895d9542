#!/usr/bin/env bash
# The peer port takes only members: a client with the cluster CA's
# certificate of a node never added (n4), one with a certificate from
# another CA (named like a member), one with no certificate, a plaintext
# one, and a removed node are each refused by the server and counted in
# `node stats --json`; a member's certificate (the control) gets its PING
# answered.  A removed node refuses to start, saying so.
. "$(dirname "$0")/lib-cluster.sh"

cluster_up 3
"$CRYPTVOL" tls issue "$CLUSTER/ca" "$T/n4" --name n4 --host 127.0.0.14 > /dev/null ||
    fail "tls issue n4"
"$CRYPTVOL" tls init "$T/other" > /dev/null || fail "tls init other"
"$CRYPTVOL" tls issue "$T/other" "$T/other-n2" --name n2 --host 127.0.0.12 > /dev/null ||
    fail "tls issue from the other CA"
PEER=$(node_addr 1):$NODE_PEER_PORT
# A PING: magic CVP1, type 2, flags 0, length 0, request id 1 (network order).
printf 'CVP1\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01' > "$T/ping"

# ping_tls OUT [s_client options]: a PING to n1's peer port over TLS 1.3,
# trusting the cluster CA; what comes back in OUT.
ping_tls() {
    local out=$1
    shift
    in_ns timeout 5 openssl s_client -connect "$PEER" -tls1_3 -servername n1 \
        -CAfile "$CLUSTER/ca/ca-cert.pem" -quiet -ign_eof "$@" \
        < "$T/ping" > "$out" 2> "$out.err" || true
}
ping_plain() {
    in_ns timeout 5 bash -c "exec 3<>/dev/tcp/${PEER%:*}/${PEER#*:} && cat '$T/ping' >&3 && cat <&3" \
        > "$1" 2> "$1.err" || true
}
# A PING answer: a frame with magic CVP1 and type 2.
answered() { [ "$(head -c 6 "$1" | od -An -tx1 | tr -d ' \n')" = 435650310002 ]; }
# The peer server's refusal counters on n1, as "reason=count" lines.
refused() {
    cv 1 node stats --json | json '"\n".join("%s=%s" % kv for kv in sorted(d["servers"]["peer"]["Refused"].items()))'
}
# expect_refused WHAT REASON: after a refused attempt, the counter of that
# reason (servers.peer.Refused.REASON) went up on n1 (before:
# $T/ref.before), and no other did.
expect_refused() {
    local what=$1 re=$2 i
    for ((i = 0; i < 25; i++)); do
        refused > "$T/ref.after"
        up=$(LC_ALL=C join -t= -a2 -e0 -o 0,1.2,2.2 "$T/ref.before" "$T/ref.after" | awk -F= '$3 > $2 {print $1}')
        [ "$up" = "$re" ] && break
        sleep 0.2
    done
    [ "$up" = "$re" ] ||
        fail "$what: not counted as $re alone (went up: '${up//$'\n'/ }'; now $(tr '\n' ' ' < "$T/ref.after"))"
    mv "$T/ref.after" "$T/ref.before"
}

refused > "$T/ref.before" || fail "node stats --json on n1: no servers.peer.Refused: $(cv 1 node stats --json)"

# The control: a member's certificate gets an answer.
ping_tls "$T/m" -cert "$CLUSTER/n2/client-cert.pem" -key "$CLUSTER/n2/client-key.pem"
answered "$T/m" || fail "a member's (n2's) PING is not answered: $(od -c "$T/m" | head -n 3) $(cat "$T/m.err")"
ok "a member's PING is answered"

ping_tls "$T/r" -cert "$T/n4/client-cert.pem" -key "$T/n4/client-key.pem"
answered "$T/r" && fail "n4 (the cluster CA's certificate, never added) got an answer"
expect_refused "a certificate of a node never added" notMember
ok "a certificate from the cluster CA of a node that is no member is refused and counted"

ping_tls "$T/r" -cert "$T/other-n2/client-cert.pem" -key "$T/other-n2/client-key.pem"
answered "$T/r" && fail "another CA's certificate got an answer"
expect_refused "another CA's certificate" otherCa
ok "another CA's certificate is refused and counted"

ping_tls "$T/r"
answered "$T/r" && fail "a client with no certificate got an answer"
expect_refused "no client certificate" noCertificate
ok "a client with no certificate is refused and counted"

ping_plain "$T/r"
answered "$T/r" && fail "plaintext got an answer"
expect_refused "plaintext" plaintext
ok "a plaintext connection is refused and counted"

# ---- a removed node -----------------------------------------------------------
node_stop 3
cv 1 node remove n3 > "$T/out" || fail "node remove n3: $(cat "$T/out")"
wait_until 5 "n3 is not Removed in n2's node list" \
    bash -c "CRYPTVOL_SOCKET=$(node_sock 2) $CRYPTVOL node list --json | grep -q Removed"
ping_tls "$T/r" -cert "$CLUSTER/n3/client-cert.pem" -key "$CLUSTER/n3/client-key.pem"
answered "$T/r" && fail "removed n3 got an answer"
expect_refused "a removed node" removed
mark=$(node_log_mark 3)
rc=0
in_ns timeout 30 "$CRYPTVOLD" --foreground --data-dir "$(node_dir 3)/data" \
    --admin-socket "$(node_dir 3)/admin.sock" --nbd-listen "$(node_addr 3):$NODE_NBD_PORT" \
    --tls require --tls-dir "$CLUSTER/n3" --node-name n3 \
    --etcd-endpoints "$ETCD_ENDPOINTS" --etcd-tls-dir "$ETCD_TLS_DIR" \
    --peer-listen "$(node_addr 3):$NODE_PEER_PORT" --peer-tls-dir "$CLUSTER/n3" \
    2>> "$(node_dir 3)/cryptvold.log" || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "removed n3 started (exit $rc)"
node_log_since 3 "$mark" | grep -qi 'n3.*removed\|removed.*n3' ||
    fail "removed n3 did not say why it refused to start: $(node_log_since 3 "$mark" | tail -n 5)"
ok "a removed node is refused on the peer port and refuses to start, saying so"
