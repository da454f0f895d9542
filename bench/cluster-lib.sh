# Sourced by bench/cluster-*.sh: etcd (tests/lib-etcd.sh, one member, client
# TLS) and cryptvold nodes on 127.0.0.1, each with its own ports, data dir
# and admin socket, all stopped at exit; and a single node on SQLite to
# compare with.  Not a test: nothing here is in CTest.
SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-${1:-$SRC_DIR/build}}
CRYPTVOL=$BUILD_DIR/cli/cryptvol
CRYPTVOLD=$BUILD_DIR/daemon/cryptvold
export CRYPTVOL CRYPTVOLD SRC_DIR BUILD_DIR
[ -x "$CRYPTVOLD" ] && [ -x "$CRYPTVOL" ] || { echo "build cryptvol first ($BUILD_DIR)" >&2; exit 1; }
# DIR: where the data dirs go (a disk, as a data dir would be: a create
# fsyncs; etcd's data too).
TMPDIR=${DIR:-/var/tmp}
. "$SRC_DIR/tests/lib.sh"
. "$SRC_DIR/tests/lib-etcd.sh"

declare -A BPID
# bench_ca: the cluster CA and node certificates n1..n3 for 127.0.0.1.
bench_ca() {
    local n
    "$CRYPTVOL" tls init "$T/ca" --host 127.0.0.1 > /dev/null
    for n in 1 2 3; do
        "$CRYPTVOL" tls issue "$T/ca" "$T/n$n-tls" --name "n$n" --host 127.0.0.1 > /dev/null
    done
}

# bench_node NAME [options]: cryptvold with data in $T/NAME, NBD on a unix
# socket without TLS (what is measured is the metadata, not TLS), the
# default log level (info: "closed" lines); waits for its admin socket.
bench_node() {
    local name=$1 i
    shift
    mkdir -p "$T/$name"
    "$CRYPTVOLD" --foreground --tls off --data-dir "$T/$name/data" \
        --nbd-listen none --nbd-unix "$T/$name/nbd.sock" \
        --admin-socket "$T/$name/admin.sock" "$@" 2>> "$T/$name/log" &
    BPID[$name]=$!
    on_exit "kill -9 $! 2>/dev/null; wait $! 2>/dev/null"
    for ((i = 0; i < 600; i++)); do
        [ -S "$T/$name/admin.sock" ] &&
            CRYPTVOL_SOCKET=$T/$name/admin.sock "$CRYPTVOL" status > /dev/null 2>&1 && return 0
        kill -0 "${BPID[$name]}" 2>/dev/null || { tail "$T/$name/log" >&2; fail "cryptvold $name exited"; }
        sleep 0.05
    done
    fail "cryptvold $name: no admin socket after 30 s"
}

# bench_cluster_node N [options]: node nN on etcd, peer port on 127.0.0.1.
bench_cluster_node() {
    local n=$1
    shift
    bench_node "n$n" --node-name "n$n" --etcd-endpoints "$ETCD_ENDPOINTS" \
        --etcd-tls-dir "$ETCD_TLS_DIR" --peer-tls-dir "$T/n$n-tls" \
        --peer-listen "127.0.0.1:$(free_port)" "$@"
}

bcv() { local n=$1; shift; CRYPTVOL_SOCKET=$T/$n/admin.sock "$CRYPTVOL" "$@"; }
now() { date +%s.%N; }
