# Sourced by the multi-node tests (docs/testing.md, "Clusters in a network
# namespace"): etcd and up to three cryptvold nodes in a network namespace
# the test makes, each on its own loopback address (etcd 127.0.0.10, node N
# on 127.0.0.1N), all with TLS.  Nothing listens outside the namespace, and
# every process started in it is killed by PID and the namespace deleted at
# exit, also when the test fails.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/lib-etcd.sh"

[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built: $CRYPTVOLD"
need etcd etcdctl openssl ss

declare -A NODE_PID
CLUSTER=$T/cluster  # the CA and the node certificates (cluster_certs)
NODE_PEER_PORT=10810
NODE_NBD_PORT=10809
NBD_CLIENT_CN=tenant-a  # the NBD clients' identity (nbd_uri), cn:tenant-a
# What the nodes start with unless node_start's arguments say otherwise
# (a test sets it before node_start: --rotation-delay-ms, ...).
NODE_EXTRA=()

# ---- the namespace ----------------------------------------------------------
# The whole test runs inside the namespace: sourcing this file makes
# cv-$$ (lo up), runs the test script again in it (CV_NETNS says so), and
# exits with its status once it ends, after killing by PID whatever is
# still running in the namespace and deleting it.  So every process of the
# test, etcd (tests/lib-etcd.sh), the nodes, the CLI and the NBD clients,
# is in the namespace, and nothing can listen outside it.
NS=${CV_NETNS:-cv-$$}

# Kills what is still running in the namespace, by PID (`ip netns pids`:
# what a failing check left behind), then deletes the namespace.
netns_down() {
    local p
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
}

netns_up() {
    local rc=0
    [ -z "${CV_NETNS:-}" ] || return 0      # inside already
    [ "$(id -u)" = 0 ] || skip "network namespaces need root"
    need ip
    ip netns add "$NS" || fail "ip netns add $NS failed"
    on_exit netns_down
    ip netns exec "$NS" ip link set lo up || fail "cannot bring lo up in $NS"
    CV_NETNS=$NS ip netns exec "$NS" bash "$0" "$@" || rc=$?
    exit $rc
}

# Runs a program in the namespace (the test is in it already: kept for
# commands that say so).
in_ns() { "$@"; }

# Fails if anything listens in the namespace on an address other than
# 127.0.0.x.
ns_check_listeners() {
    local out
    out=$(ss -Htlnu | awk '{print $5}' | grep -Ev '^127\.0\.0\.[0-9]+:[0-9]+$' || true)
    [ -z "$out" ] || fail "listening on other than 127.0.0.x in $NS: $out"
}

# ---- certificates -------------------------------------------------------------
# cluster_certs DIR: the cluster CA (tls init; DIR/ca also serves as an NBD
# client's tls-certificates, with its client certificate, CN tenant-a) and node
# certificates for n1..n3 (tls issue, CN nN, host 127.0.0.1N) in DIR/nN.
cluster_certs() {
    local dir=${1:-$CLUSTER} n
    mkdir -p "$dir"
    "$CRYPTVOL" tls init "$dir/ca" --host 127.0.0.1 --client-cn "$NBD_CLIENT_CN" > /dev/null ||
        fail "tls init $dir/ca"
    for n in 1 2 3; do
        "$CRYPTVOL" tls issue "$dir/ca" "$dir/n$n" --name "n$n" --host "127.0.0.1$n" \
            > /dev/null || fail "tls issue n$n"
    done
}

# ---- etcd ---------------------------------------------------------------------
# etcd_up: one etcd member on 127.0.0.10 inside the namespace, client TLS
# (lib-etcd.sh's etcd_start; ETCD_ENDPOINTS, ETCD_TLS_DIR, ETCD_PID).
etcd_up() { etcd_start "$T/etcd" 127.0.0.10; }


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
    local n=$1
    shift
    _node_launch "$n" --node-name "n$n" \
        --etcd-endpoints "$ETCD_ENDPOINTS" --etcd-tls-dir "$ETCD_TLS_DIR" \
        --peer-listen "$(node_addr "$n"):$NODE_PEER_PORT" \
        --peer-tls-dir "$CLUSTER/n$n" "$@"
}

# node_start_single N [options]: the same node as a single node on SQLite
# (no etcd, no peer port), named nN.
node_start_single() {
    local n=$1
    shift
    _node_launch "$n" --node-name "n$n" "$@"
}

_node_launch() {
    local n=$1 dir i
    shift
    dir=$(node_dir "$n")
    mkdir -p "$dir"
    rm -f "$dir/admin.sock"
    "$CRYPTVOLD" --foreground --data-dir "$dir/data" \
        --admin-socket "$dir/admin.sock" \
        --nbd-listen "$(node_addr "$n"):$NODE_NBD_PORT" \
        --tls require --tls-dir "$CLUSTER/n$n" \
        --pbkdf pbkdf2 --pbkdf-iterations 1000 --log-level debug \
        --unlock-retry-delay 0 "${NODE_EXTRA[@]}" "$@" \
        2>> "$dir/cryptvold.log" &
    NODE_PID[$n]=$!
    on_exit "kill -9 $! 2>/dev/null; wait $! 2>/dev/null"
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
# Never fails: a reader that stops early (grep -q) makes tail die of
# SIGPIPE once the log is longer than the pipe holds, and under pipefail
# that failed the pipeline, though grep had matched.
node_log_since() { tail -n +$(($2 + 1)) "$(node_dir "$1")/cryptvold.log" || true; }

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

# cluster_up K: certificates, etcd, n1 (founds the cluster), and n2..nK
# added on n1 and started.
cluster_up() {
    local k=${1:-3} n
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

netns_up "$@"
