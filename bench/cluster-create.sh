#!/usr/bin/env bash
# Volume create rate on etcd against SQLite, in one run: VOLUMES volumes
# (default 1000) with generated secrets, one request after the other on
# one admin connection, on a node whose metadata is in etcd (one member,
# client TLS, 127.0.0.1) and on a single node with SQLite.  A create on
# etcd is one txn (the volume and its secret, the name unique) where
# SQLite has one transaction.  Prints volumes per second for each and the
# ratio etcd / SQLite; then checks that etcd holds every record.
#
# Usage: bench/cluster-create.sh [BUILD_DIR]   (VOLUMES=N DIR=PATH SIZE=S)
. "$(dirname "$0")/cluster-lib.sh"
VOLUMES=${VOLUMES:-1000}
SIZE=${SIZE:-1073741824}

bench_ca
etcd_start "$T/etcd" 127.0.0.1
bench_cluster_node 1 --log-level warning
bench_node single --log-level warning

# create NODE: prints seconds for VOLUMES creates through the admin API.
create() {
    $PYTHON - "$T/$1/admin.sock" "$VOLUMES" "$SIZE" <<'PY'
import http.client, json, socket, sys, time

class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

c = Unix(sys.argv[1])
t0 = time.perf_counter()
for i in range(int(sys.argv[2])):
    body = json.dumps({"name": "a%d" % i, "size": int(sys.argv[3])})
    c.request("POST", "/v1/volumes", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    answer = r.read()
    if r.status != 201:
        sys.exit("volume a%d: %d %s" % (i, r.status, answer.decode()))
print("%.3f" % (time.perf_counter() - t0))
PY
}

declare -A S
for n in single n1; do
    echo "cluster-create.sh: $VOLUMES volumes on $n..." >&2
    S[$n]=$(create "$n") || fail "creating on $n"
done
got=$(etcdctl_tls get --prefix /cryptvol/volumes/ --keys-only | grep -c '^/cryptvol/volumes/')
[ "$got" = "$VOLUMES" ] || fail "etcd holds $got volume records, not $VOLUMES"
rate() { awk -v s="$1" -v n="$VOLUMES" 'BEGIN { printf "%.1f", n / s }'; }
printf '%-8s %10s %12s\n' store seconds "volumes/s"
printf '%-8s %10s %12s\n' sqlite "${S[single]}" "$(rate "${S[single]}")"
printf '%-8s %10s %12s\n' etcd "${S[n1]}" "$(rate "${S[n1]}")"
echo "etcd / sqlite rate: $(awk -v a="${S[single]}" -v b="${S[n1]}" 'BEGIN { printf "%.2f", a / b }')x ($VOLUMES volumes, generated secrets, $(nproc) CPUs, data in ${DIR:-/var/tmp})"
