# Sourced after tests/lib.sh and tests/lib-etcd.sh by the small cluster
# tests that run outside a network namespace: a few cryptvold processes on
# 127.0.0.1, each with its own data dir, admin socket, NBD unix socket and
# peer port, one etcd (etcd_start), every node killed at exit.  (The
# three-node tests in a netns use tests/lib-cluster.sh.)
#
#   nodes_init                 etcd on 127.0.0.1 and the peer CA
#   node_cert N                the certificate of node nN (tls issue)
#   node_args N                cryptvold options of node nN (array NODE_ARGS)
#   node_start N [OPTS...]     starts nN (NODE_PID[N], NODE_PEER[N])
#   node_refused N PATTERN [OPTS...]
#                              nN must exit non-zero with PATTERN in its log
#   node_kill N, node_stop N
#   cv N ARGS...               cryptvol against nN's admin socket
#   nbd_uri N VOL              nN's NBD socket URI for VOL
#   wait_for SECONDS DESC CMD...  retries CMD every 0.2 s
NODE_PID=()
NODE_PEER=()

nodes_init() {
    etcd_start "$T/etcd" 127.0.0.1
    "$CRYPTVOL" tls init "$T/peer-ca" > /dev/null || fail "tls init peer-ca"
}

node_cert() {
    local n=$1
    [ -d "$T/n$n/peer" ] && return 0
    mkdir -p "$T/n$n"
    "$CRYPTVOL" tls issue "$T/peer-ca" "$T/n$n/peer" --name "n$n" \
        --host 127.0.0.1 > /dev/null || fail "tls issue n$n"
}

node_args() {
    local n=$1
    node_cert "$n"
    [ -n "${NODE_PEER[$n]:-}" ] || NODE_PEER[$n]=$(free_port)
    NODE_ARGS=(--node-name "n$n" --etcd-endpoints "$ETCD_ENDPOINTS"
               --etcd-tls-dir "$ETCD_TLS_DIR"
               --peer-listen "127.0.0.1:${NODE_PEER[$n]}"
               --peer-tls-dir "$T/n$n/peer")
}

node_start() {
    local n=$1
    shift
    node_args "$n"
    cvd_start "n$n" --tls off "${NODE_ARGS[@]}" "$@"
    NODE_PID[$n]=$CVD_PID
    unset CRYPTVOL_SOCKET
}

node_refused() {
    local n=$1 pattern=$2 rc=0
    shift 2
    node_args "$n"
    mkdir -p "$T/n$n/data"
    timeout 30 "$CRYPTVOLD" --foreground --data-dir "$T/n$n/data" \
        --nbd-listen none --nbd-unix "$T/n$n/nbd.sock" \
        --admin-socket "$T/n$n/admin.sock" --tls off "${NODE_ARGS[@]}" "$@" \
        > "$T/n$n/refused.log" 2>&1 || rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 124 ] ||
        fail "node n$n: expected to refuse to start, exited $rc: $(tail -5 "$T/n$n/refused.log")"
    grep -qE -- "$pattern" "$T/n$n/refused.log" ||
        fail "node n$n refused to start, but its log does not say '$pattern': $(tail -5 "$T/n$n/refused.log")"
}

node_kill() {
    kill -9 "${NODE_PID[$1]}"
    wait "${NODE_PID[$1]}" 2>/dev/null || true
}

node_stop() { cvd_stop "${NODE_PID[$1]}"; }

cv() {
    local n=$1
    shift
    CRYPTVOL_SOCKET=$T/n$n/admin.sock "$CRYPTVOL" "$@"
}

nbd_uri() { echo "nbd+unix:///$2?socket=$T/n$1/nbd.sock"; }

wait_for() {
    local secs=$1 desc=$2 i
    shift 2
    for ((i = 0; i < secs * 5; i++)); do
        "$@" > /dev/null 2>&1 && return 0
        sleep 0.2
    done
    fail "$desc: not within $secs s"
}

# node_state N NAME: the state of NAME in nN's node list.
node_state() {
    cv "$1" node list --json | $PYTHON -c 'import json,sys
d = json.load(sys.stdin)
print([n["state"] for n in d["nodes"] if n["name"] == sys.argv[1]][0])' "$2"
}
# is_state N NAME STATE: NAME is STATE in nN's node list (for wait_for).
is_state() { [ "$(node_state "$1" "$2")" = "$3" ]; }
