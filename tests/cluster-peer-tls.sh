#!/usr/bin/env bash
# peer-tls (docs/cluster.md, "peer-tls"): two nodes, switched by the API
# (cryptvol node peer-tls) and by SIGHUP (the config file's peer-tls), the
# mode and its changes in `node stats`, audited as peer.tls.  Plaintext
# connections, made here as a node would (a HELLO naming the member, from
# its registered host): refused under require (the control: the same
# connection is admitted under on), a KEYS request on one refused and
# counted, a HELLO from another host than the member's refused; a switch
# to require closes an open plaintext connection.
. "$(dirname "$0")/lib-cluster.sh"

CONF=$T/peer.conf
echo "peer-tls = require" > "$CONF"
NODE_EXTRA=(--config "$CONF")
cluster_up 2
PEER_HOST=$(node_addr 1)

# plain FROM NAME TYPE [hold]: a plaintext connection from host FROM to
# n1's peer port: HELLO NAME, then one request of TYPE (hold: none; wait
# until the server closes, at most 10 s).  Prints "hello-refused: TEXT",
# "answered TYPE", "error: TEXT", or (hold) "closed".
plain() {
    $PYTHON - "$1" "$PEER_HOST" "$NODE_PEER_PORT" "$2" "$3" "${4:-}" <<'EOF'
import socket, struct, sys
src, host, port, name, typ, hold = sys.argv[1:7]
s = socket.socket()
s.bind((src, 0))
s.settimeout(10)
s.connect((host, int(port)))
def frame(t, i, data):
    return b"CVP1" + struct.pack(">HHII", t, 0, len(data), i) + data
def read_frame():
    h = b""
    while len(h) < 16:
        c = s.recv(16 - len(h))
        if not c:
            return None, None
        h += c
    t, _, n, _ = struct.unpack(">HHII", h[4:])
    d = b""
    while len(d) < n:
        c = s.recv(n - len(d))
        if not c:
            break
        d += c
    return t, d
s.sendall(frame(4, 0, name.encode()))
t, d = read_frame()
if t != 4:
    print("hello-refused:", d[4:].decode(errors="replace") if d else "closed")
    sys.exit(0)
if hold:
    try:
        print("closed" if s.recv(1) == b"" else "data")
    except socket.timeout:
        print("still open")
    sys.exit(0)
s.sendall(frame(int(typ, 0), 7, b""))
t, d = read_frame()
if t == 1:
    print("error:", d[4:].decode(errors="replace"))
else:
    print("answered", t)
EOF
}

# stat N KEY: servers.peer.KEY of node N's stats.
stat() { cv "$1" node stats --json | json "d['servers']['peer']['$2']"; }
refused() { cv 1 node stats --json | json "d['servers']['peer']['Refused']['$1']"; }
# wait_stat N KEY VALUE: the server counts on its connection's thread.
wait_stat() {
    wait_until 5 "n$1: servers.peer.$2 is not $3 (it is $(stat "$1" "$2"))" \
        bash -c "[ \"\$(CRYPTVOL_SOCKET=$(node_sock "$1") $CRYPTVOL node stats --json |
            $PYTHON -c \"import json,sys; print(json.load(sys.stdin)['servers']['peer']['$2'])\")\" = '$3' ]"
}

# ---- require (the default) ---------------------------------------------
[ "$(cv 1 node peer-tls)" = "peer-tls require" ] || fail "n1's mode: $(cv 1 node peer-tls)"
[ "$(stat 1 TlsMode)" = require ] || fail "n1's stats: TlsMode $(stat 1 TlsMode)"
before=$(refused plaintext)
out=$(plain "$(node_addr 2)" n2 2)
case $out in
"hello-refused: plaintext peer connections need peer-tls on or off on this node"*) ;;
*) fail "a plaintext HELLO under require: $out" ;;
esac
wait_stat 1 PlainTotal 0
[ "$(refused plaintext)" -gt "$before" ] || fail "the plaintext refusal is not counted"
ok "under require a plaintext connection is refused, saying why, and counted"

# ---- on, by the API ----------------------------------------------------
out=$(cv 1 node peer-tls on) || fail "node peer-tls on: $out"
[ "$out" = "peer-tls on (was require)" ] || fail "node peer-tls on said: $out"
[ "$(stat 1 TlsMode)" = on ] && [ "$(stat 1 TlsModeChanges)" = 1 ] ||
    fail "after the API: TlsMode $(stat 1 TlsMode), changes $(stat 1 TlsModeChanges)"
grep '"peer.tls"' "$(node_dir 1)/data/audit.log" | grep -q '"on (was require)"' ||
    fail "no peer.tls event in n1's audit log: $(grep peer.tls "$(node_dir 1)/data/audit.log")"
out=$(plain "$(node_addr 2)" n2 2)
[ "$out" = "answered 2" ] || fail "a plaintext PING from n2 under on: $out"
wait_stat 1 PlainTotal 1
ok "the API switches n1 to on (stats, audit); a plaintext PING from n2's host is answered"

before=$(refused plaintextType)
out=$(plain "$(node_addr 2)" n2 0x0100)
case $out in
"error: message type 0x0100 needs TLS"*) ;;
*) fail "a plaintext KEYS request: $out" ;;
esac
wait_until 5 "the refused KEYS request is not counted" \
    bash -c "[ \$(CRYPTVOL_SOCKET=$(node_sock 1) $CRYPTVOL node stats --json | $PYTHON -c \"import json,sys; print(json.load(sys.stdin)['servers']['peer']['Refused']['plaintextType'])\") -gt $before ]"
ok "a KEYS request on plaintext is refused and counted (plaintextType)"

out=$(plain 127.0.0.13 n2 2)
case $out in
"hello-refused: n2's address is $(node_addr 2), the connection came from 127.0.0.13"*) ;;
*) fail "a HELLO naming n2 from 127.0.0.13: $out" ;;
esac
[ "$(refused plaintextHost)" -ge 1 ] || fail "the foreign host is not counted"
ok "a HELLO from another host than the member's is refused and counted"

# ---- require by the API closes an open plaintext connection -------------
plain "$(node_addr 2)" n2 2 hold > "$T/held" &
held=$!
wait_stat 1 PlainCurr 1
cv 1 node peer-tls require > /dev/null || fail "node peer-tls require"
wait "$held" || true
[ "$(cat "$T/held")" = closed ] || fail "the plaintext connection under require: $(cat "$T/held")"
wait_stat 1 PlainCurr 0
ok "switching to require closes the open plaintext connection"

# ---- SIGHUP rereads the file ------------------------------------------
echo "peer-tls = off" > "$CONF"
kill -HUP "${NODE_PID[1]}"
wait_stat 1 TlsMode off
[ "$(stat 1 TlsModeChanges)" = 3 ] || fail "changes after SIGHUP: $(stat 1 TlsModeChanges)"
[ "$(stat 2 TlsMode)" = require ] || fail "n2 changed without its SIGHUP"
grep '"peer.tls"' "$(node_dir 1)/data/audit.log" | grep '"SIGHUP"' | grep -q '"off (was require)"' ||
    fail "no peer.tls event by SIGHUP: $(grep peer.tls "$(node_dir 1)/data/audit.log")"
out=$(plain "$(node_addr 2)" n2 2)
[ "$out" = "answered 2" ] || fail "a plaintext PING under off: $out"
echo "peer-tls = require" > "$CONF"
kill -HUP "${NODE_PID[1]}"
wait_stat 1 TlsMode require
out=$(plain "$(node_addr 2)" n2 2)
case $out in hello-refused:*) ;; *) fail "plaintext after SIGHUP to require: $out" ;; esac
cv 1 node stats > "$T/stats" || fail "node stats"
grep -q "^TlsMode.*require" "$T/stats" && grep -q "^PlainTotal" "$T/stats" &&
    grep -q "^RefusedPlaintextType" "$T/stats" || fail "node stats does not show peer-tls: $(cat "$T/stats")"
ok "SIGHUP rereads peer-tls from the config file (off, then require), audited, node stats shows it"

# Members still talk (TLS) whatever the mode was: stats over the peer port.
cv 2 node stats n1 > /dev/null || fail "n2 cannot ask n1 for its stats"
ok "TLS calls between the members work"
