# Sourced by the multi-node tests (docs/testing.md, "Clusters in a network
# namespace"): etcd and up to three cryptvold nodes in a network namespace
# the test makes, each on its own loopback address (etcd 127.0.0.10, node N
# on 127.0.0.1N), all with TLS.  Nothing listens outside the namespace, and
# every process started in it is killed by PID and the namespace deleted at
# exit, also when the test fails.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-etcd.sh"

[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built: $CRYPTVOLD"
need ip etcd etcdctl openssl

NS=cv-$$
NS_PIDS=()          # every long-running process started in the namespace
declare -A NODE_PID NODE_ARGS
CLUSTER=$T/cluster  # the CA and the node certificates (cluster_certs)
NODE_PEER_PORT=10810
NODE_NBD_PORT=10809
# What the nodes start with unless node_start's arguments say otherwise
# (a test sets it before node_start: --rotation-delay-ms, ...).
NODE_EXTRA=()

# ---- the namespace ----------------------------------------------------------
# Runs a command inside the namespace (a program, not a shell function).
in_ns() { ip netns exec "$NS" "$@"; }

# Kills what the test started in the namespace, by PID (first the ones it
# recorded, then any left that `ip netns pids` shows, such as a client a
# failing check left behind), then deletes the namespace.
netns_down() {
    local p
    for p in "${NS_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    for p in "${NS_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
}

netns_up() {
    [ "$(id -u)" = 0 ] || skip "network namespaces need root"
    ip netns add "$NS" || fail "ip netns add $NS failed"
    on_exit netns_down
    in_ns ip link set lo up || fail "cannot bring lo up in $NS"
}

# Runs CMD... in the background in the namespace; its PID is in BG_PID and
# it is killed at exit.
ns_bg() {
    ip netns exec "$NS" "$@" &
    BG_PID=$!
    NS_PIDS+=("$BG_PID")
}

# Fails if anything of this test listens outside the namespace (its
# processes do not show in the host's socket table) or, inside it, on an
# address other than 127.0.0.x.
ns_check_listeners() {
    local p out
    out=$(ss -Htlnup 2>/dev/null || true)
    for p in "${NS_PIDS[@]}"; do
        ! grep -q "pid=$p," <<<"$out" ||
            fail "process $p listens outside the namespace: $(grep "pid=$p," <<<"$out")"
    done
    out=$(in_ns ss -Htlnu | awk '{print $5}' | grep -Ev '^127\.0\.0\.[0-9]+:[0-9]+$' || true)
    [ -z "$out" ] || fail "listening on other than 127.0.0.x in $NS: $out"
}

# ---- certificates -------------------------------------------------------------
# cluster_certs DIR: the cluster CA (tls init; DIR/ca also serves as an NBD
# client's tls-certificates, with its client certificate) and node
# certificates for n1..n3 (tls issue, CN nN, host 127.0.0.1N) in DIR/nN.
cluster_certs() {
    local dir=${1:-$CLUSTER} n
    mkdir -p "$dir"
    "$CRYPTVOL" tls init "$dir/ca" --host 127.0.0.1 > /dev/null || fail "tls init $dir/ca"
    for n in 1 2 3; do
        "$CRYPTVOL" tls issue "$dir/ca" "$dir/n$n" --name "n$n" --host "127.0.0.1$n" \
            > /dev/null || fail "tls issue n$n"
    done
}

# ---- etcd ---------------------------------------------------------------------
# etcd_up: one etcd member on 127.0.0.10 inside the namespace, client TLS
# (lib-etcd.sh's etcd_start; ETCD_ENDPOINTS, ETCD_TLS_DIR, ETCD_PID).
etcd_up() {
    ETCD_NETNS=$NS etcd_start "$T/etcd" 127.0.0.10
    NS_PIDS+=("$ETCD_PID")
}

# etcdctl in the namespace against etcd_up's etcd, with its TLS.
etcdctl_ns() {
    in_ns etcdctl --endpoints="$ETCD_ENDPOINTS" --cacert="$ETCD_TLS_DIR/ca-cert.pem" \
        --cert="$ETCD_TLS_DIR/client-cert.pem" --key="$ETCD_TLS_DIR/client-key.pem" "$@"
}

# ---- nodes --------------------------------------------------------------------
node_addr() { echo "127.0.0.1$1"; }
node_dir() { echo "$T/n$1"; }
# The admin socket of node N; `cv N ARGS...` runs the CLI against it.
node_sock() { echo "$T/n$1/admin.sock"; }
cv() { local n=$1; shift; CRYPTVOL_SOCKET=$(node_sock "$n") "$CRYPTVOL" "$@"; }
# An NBD URI of volume VOL on node N (TLS with the CA's client
# certificate); NBD clients run in the namespace (in_ns nbdinfo ...).
nbd_uri() { echo "nbds://$(node_addr "$1"):$NODE_NBD_PORT/$2?tls-certificates=$CLUSTER/ca"; }

# node_start N [cryptvold options...]: cryptvold nN in the foreground in the
# namespace on 127.0.0.1N (NBD over TLS on :10809, peer port :10810, its
# own data dir and admin socket, a fast KDF), on the etcd of etcd_up;
# returns once its admin socket answers (a joining node has its keys by
# then).  Its log is $T/nN/cryptvold.log, printed if it exits meanwhile.
node_start() {
    local n=$1 dir i
    shift
    dir=$(node_dir "$n")
    mkdir -p "$dir"
    rm -f "$dir/admin.sock"
    NODE_ARGS[$n]="$*"
    ns_bg "$CRYPTVOLD" --foreground --data-dir "$dir/data" \
        --admin-socket "$dir/admin.sock" \
        --nbd-listen "$(node_addr "$n"):$NODE_NBD_PORT" \
        --tls require --tls-dir "$CLUSTER/n$n" \
        --node-name "n$n" \
        --etcd-endpoints "$ETCD_ENDPOINTS" --etcd-tls-dir "$ETCD_TLS_DIR" \
        --peer-listen "$(node_addr "$n"):$NODE_PEER_PORT" \
        --peer-tls-dir "$CLUSTER/n$n" \
        --pbkdf pbkdf2 --pbkdf-iterations 1000 --log-level debug \
        --unlock-retry-delay 0 "${NODE_EXTRA[@]}" "$@" \
        2>> "$dir/cryptvold.log"
    NODE_PID[$n]=$BG_PID
    for ((i = 0; i < 600; i++)); do
        [ -S "$dir/admin.sock" ] && cv "$n" status > /dev/null 2>&1 && return 0
        if ! kill -0 "${NODE_PID[$n]}" 2>/dev/null; then
            tail -n 30 "$dir/cryptvold.log" >&2
            fail "node n$n exited while starting (log above)"
        fi
        sleep 0.05
    done
    tail -n 30 "$dir/cryptvold.log" >&2
    fail "node n$n: its admin socket does not answer after 30 s (log above)"
}

# node_stop N: SIGTERM and wait; fails unless it exits 0.
node_stop() {
    local rc=0
    kill -TERM "${NODE_PID[$1]}"
    wait "${NODE_PID[$1]}" || rc=$?
    [ "$rc" = 0 ] || fail "node n$1 (pid ${NODE_PID[$1]}) exited $rc after SIGTERM"
    unset "NODE_PID[$1]"
}

# node_kill N: kill -9 and reap.
node_kill() {
    kill -9 "${NODE_PID[$1]}"
    wait "${NODE_PID[$1]}" 2>/dev/null || true
    unset "NODE_PID[$1]"
}

# node_log_mark N / node_log_since N MARK: only new log lines count.
node_log_mark() { wc -l < "$(node_dir "$1")/cryptvold.log"; }
node_log_since() { tail -n +$(($2 + 1)) "$(node_dir "$1")/cryptvold.log"; }

# wait_until SECONDS DESCRIPTION CMD...: retries CMD every 0.2 s.
wait_until() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 5; i++)); do
        "$@" > /dev/null 2>&1 && return 0
        sleep 0.2
    done
    fail "after $secs s: $what"
}

# cluster_up K: the netns, certificates, etcd, n1 (founds the cluster), and
# n2..nK added on n1 and started.
cluster_up() {
    local k=${1:-3} n
    netns_up
    cluster_certs "$CLUSTER"
    etcd_up
    node_start 1
    for ((n = 2; n <= k; n++)); do
        cv 1 node add "n$n" --address "$(node_addr "$n"):$NODE_PEER_PORT" > /dev/null ||
            fail "node add n$n on n1"
        node_start "$n"
    done
    ns_check_listeners
}

# JSON from stdin: json EXPR (d is the document).
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
