# Sourced after tests/lib.sh by tests that need etcd (Debian's etcd-server
# 3.4, /usr/bin/etcd): one member or three, client TLS with client
# certificates required, data under the test's scratch directory, every
# member killed at exit even when the test fails.  Works inside a network
# namespace (`ip netns exec NS bash TEST`, with lo up there) as outside it:
# the members listen on the address they are given only.
#
#   etcd_start DIR ADDR        one member on ADDR (free client and peer
#                              ports there); sets ETCD_ENDPOINTS,
#                              ETCD_TLS_DIR, ETCD_PID, ETCD_DIR
#   etcd_start_cluster DIR A1 A2 A3
#                              three members, one per address; sets the
#                              same, ETCD_PIDS (an array, member 1 first)
#                              and ETCD_ENDPOINTS with all three
#   etcd_stop [N]              SIGTERM and wait (member N, default: all)
#   etcd_kill N                SIGKILL member N (1-based) and wait
#   etcd_restart [N]           starts the stopped member(s) again on the
#                              same data and ports, waits until healthy
#   etcdctl_tls ARGS...        ETCDCTL_API=3 etcdctl with the TLS flags and
#                              ETCD_ENDPOINTS
#
# Certificates: `cryptvol tls init DIR/pki --host ADDR...` makes the CA and
# the client certificate (ETCD_TLS_DIR = DIR/pki: ca-cert.pem,
# client-cert.pem, client-key.pem, the layout cryptvold's --etcd-tls-dir
# takes).  etcd's own certificate is made here with openssl from that CA,
# because etcd 3.4's JSON gateway connects to its own gRPC port with the
# server certificate as its client certificate: with --client-cert-auth
# that certificate needs clientAuth as well as serverAuth, which tls init's
# server certificate does not have.  Members talk to each other over plain
# http on the same loopback address (their peer port), which no test
# reaches from outside.
need etcd etcdctl openssl curl

ETCD_PIDS=()
ETCD_MEMBER_DIRS=()
ETCD_NAMES=()
# Every etcd this test started (a second etcd_start forgets the first's
# members, the cleanup does not).
_ETCD_ALL_PIDS=()

# free_port_at ADDR: a free TCP port on ADDR, never one it gave before in
# this test (the kernel may hand out the same free port to two probes in a
# row, and a member's client, peer and metrics ports are probed one after
# the other: seen in a fresh network namespace).  The ports given are kept
# in a file, as callers run it in a command substitution.
free_port_at() {
    local p i
    for ((i = 0; i < 20; i++)); do
        p=$($PYTHON -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1")
        grep -qx "$1:$p" "$T/.etcd-ports" 2>/dev/null && continue
        echo "$1:$p" >> "$T/.etcd-ports"
        echo "$p"
        return 0
    done
    fail "no new free port on $1"
}

_etcd_cleanup() {
    local p
    for p in "${_ETCD_ALL_PIDS[@]}"; do
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    return 0
}
on_exit _etcd_cleanup

# _etcd_certs PKI ADDR...: the CA and client certificate from cryptvol tls
# init, etcd's certificate (serverAuth + clientAuth, SAN each address).
_etcd_certs() {
    local pki=$1 a san="DNS:localhost" hosts=()
    shift
    for a in "$@"; do
        hosts+=(--host "$a")
        san="$san,IP:$a"
    done
    "$CRYPTVOL" tls init "$pki" "${hosts[@]}" > "$pki.out" 2>&1 ||
        fail "cryptvol tls init $pki: $(cat "$pki.out")"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' \
        "$san" > "$pki/etcd.ext"
    (umask 077
     openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
         -keyout "$pki/etcd-key.pem" -subj /CN=etcd -out "$pki/etcd.csr" &&
     openssl x509 -req -in "$pki/etcd.csr" -CA "$pki/ca-cert.pem" \
         -CAkey "$pki/ca-key.pem" -CAcreateserial -days 2 \
         -extfile "$pki/etcd.ext" -out "$pki/etcd-cert.pem") \
        > "$pki.out" 2>&1 || fail "etcd certificate: $(cat "$pki.out")"
}

# _etcd_launch I: starts member I from its saved command line.
_etcd_launch() {
    local i=$1 dir=${ETCD_MEMBER_DIRS[$1]} args
    mapfile -t args < "$dir/args"
    etcd "${args[@]}" >> "$dir/etcd.log" 2>&1 &
    ETCD_PIDS[i]=$!
    _ETCD_ALL_PIDS+=("$!")
}

# _etcd_wait I: until member I answers /health over TLS (15 s).
_etcd_wait() {
    local i=$1 dir=${ETCD_MEMBER_DIRS[$1]} url k
    url=$(cat "$dir/url")
    for ((k = 0; k < 300; k++)); do
        if curl -sf --max-time 2 --cacert "$ETCD_TLS_DIR/ca-cert.pem" \
               --cert "$ETCD_TLS_DIR/client-cert.pem" \
               --key "$ETCD_TLS_DIR/client-key.pem" "$url/health" 2>/dev/null |
               grep -q '"health":"true"'; then
            return 0
        fi
        if ! kill -0 "${ETCD_PIDS[i]}" 2>/dev/null; then
            tail -20 "$dir/etcd.log" >&2
            fail "etcd member ${ETCD_NAMES[i]} exited while starting"
        fi
        sleep 0.05
    done
    tail -20 "$dir/etcd.log" >&2
    fail "etcd member ${ETCD_NAMES[i]} ($url) not healthy after 15 s"
}

# _etcd_member I DIR ADDR CLUSTER: writes member I's command line; its
# client URL into DIR/url.  CLUSTER: the --initial-cluster value, made by
# the caller from every member's peer URL (DIR/peer).
_etcd_member_args() {
    local i=$1 dir=$2 addr=$3 cluster=$4 pki=$5
    cat > "$dir/args" <<EOF
--name
${ETCD_NAMES[i]}
--data-dir
$dir/data
--listen-client-urls
$(cat "$dir/url")
--advertise-client-urls
$(cat "$dir/url")
--listen-peer-urls
$(cat "$dir/peer")
--initial-advertise-peer-urls
$(cat "$dir/peer")
--initial-cluster
$cluster
--initial-cluster-state
new
--initial-cluster-token
cryptvol-test-$$
--cert-file
$pki/etcd-cert.pem
--key-file
$pki/etcd-key.pem
--trusted-ca-file
$pki/ca-cert.pem
--client-cert-auth
--listen-metrics-urls
http://$addr:$(free_port_at "$addr")
EOF
}

# _etcd_setup DIR ADDR...: certificates, member directories, ports,
# command lines; sets ETCD_* but starts nothing.
_etcd_setup() {
    local dir=$1 i=0 a cluster="" eps=""
    shift
    mkdir -p "$dir"
    _etcd_certs "$dir/pki" "$@"
    ETCD_TLS_DIR=$dir/pki
    ETCD_DIR=$dir
    ETCD_PIDS=()
    ETCD_MEMBER_DIRS=()
    ETCD_NAMES=()
    for a in "$@"; do
        ETCD_NAMES[i]=m$((i + 1))
        ETCD_MEMBER_DIRS[i]=$dir/m$((i + 1))
        mkdir -p "${ETCD_MEMBER_DIRS[i]}"
        echo "https://$a:$(free_port_at "$a")" > "${ETCD_MEMBER_DIRS[i]}/url"
        echo "http://$a:$(free_port_at "$a")" > "${ETCD_MEMBER_DIRS[i]}/peer"
        cluster="$cluster${cluster:+,}${ETCD_NAMES[i]}=$(cat "${ETCD_MEMBER_DIRS[i]}/peer")"
        eps="$eps${eps:+,}$(cat "${ETCD_MEMBER_DIRS[i]}/url")"
        i=$((i + 1))
    done
    i=0
    for a in "$@"; do
        _etcd_member_args $i "${ETCD_MEMBER_DIRS[i]}" "$a" "$cluster" "$dir/pki"
        i=$((i + 1))
    done
    ETCD_ENDPOINTS=$eps
    export ETCD_ENDPOINTS ETCD_TLS_DIR
}

etcd_start() {
    [ $# = 2 ] || fail "etcd_start DIR ADDR"
    _etcd_setup "$1" "$2"
    _etcd_launch 0
    _etcd_wait 0
    ETCD_PID=${ETCD_PIDS[0]}
}

etcd_start_cluster() {
    [ $# = 4 ] || fail "etcd_start_cluster DIR ADDR1 ADDR2 ADDR3"
    local i
    _etcd_setup "$@"
    for i in 0 1 2; do _etcd_launch $i; done
    for i in 0 1 2; do _etcd_wait $i; done
    ETCD_PID=${ETCD_PIDS[0]}
}

# The members named (1-based), or all of them.
_etcd_which() {
    local i
    if [ $# -gt 0 ]; then
        for i in "$@"; do echo $((i - 1)); done
    else
        for i in "${!ETCD_MEMBER_DIRS[@]}"; do echo "$i"; done
    fi
}

etcd_stop() {
    local i p
    for i in $(_etcd_which "$@"); do
        p=${ETCD_PIDS[i]}
        [ -n "$p" ] || continue
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
        ETCD_PIDS[i]=
    done
}

etcd_kill() {
    [ $# = 1 ] || fail "etcd_kill N"
    local i=$(($1 - 1)) p
    p=${ETCD_PIDS[i]}
    [ -n "$p" ] || fail "etcd member $1 is not running"
    kill -9 "$p"
    wait "$p" 2>/dev/null || true
    ETCD_PIDS[i]=
}

etcd_restart() {
    local i
    for i in $(_etcd_which "$@"); do
        [ -z "${ETCD_PIDS[i]}" ] || fail "etcd member $((i + 1)) is running"
        _etcd_launch "$i"
    done
    for i in $(_etcd_which "$@"); do _etcd_wait "$i"; done
    ETCD_PID=${ETCD_PIDS[0]}
}

etcdctl_tls() {
    ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" \
        --cacert "$ETCD_TLS_DIR/ca-cert.pem" \
        --cert "$ETCD_TLS_DIR/client-cert.pem" \
        --key "$ETCD_TLS_DIR/client-key.pem" "$@"
}
