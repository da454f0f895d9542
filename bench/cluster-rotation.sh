#!/usr/bin/env bash
# Cluster-wide KEK rotation against its 10 s budget: VOLUMES volumes
# (default 1000) spread over 3 nodes on etcd (one member, client TLS, all
# on 127.0.0.1), cluster encryption enabled; `cluster kek rotate` on n1,
# timed until every node's cluster info says NoRotation at the new
# generation (DistributingKEK to every member, then every volume's token
# re-wrapped by the node that holds it).  Prints the seconds and the
# ratio to 10 s; then checks a sample of the volumes attach.
#
# Usage: bench/cluster-rotation.sh [BUILD_DIR]   (VOLUMES=N DIR=PATH)
. "$(dirname "$0")/cluster-lib.sh"
VOLUMES=${VOLUMES:-1000}
BUDGET=10
$PYTHON -c 'import nbd' 2>/dev/null || fail "python3-libnbd is not installed"

bench_ca
etcd_start "$T/etcd" 127.0.0.1
bench_cluster_node 1 --log-level warning
for n in 2 3; do
    bcv n1 node add "n$n" --address "127.0.0.1:$(free_port)" > /dev/null
done
# node add took an address; each node listens on the one it was added with.
for n in 2 3; do
    addr=$(bcv n1 node list --json | $PYTHON -c "import json,sys; print([x['address'] for x in json.load(sys.stdin)['nodes'] if x['name'] == 'n$n'][0])")
    bench_node "n$n" --node-name "n$n" --etcd-endpoints "$ETCD_ENDPOINTS" \
        --etcd-tls-dir "$ETCD_TLS_DIR" --peer-tls-dir "$T/n$n-tls" \
        --peer-listen "$addr" --log-level warning
done
bcv n1 cluster encryption enable --kek-protection software > /dev/null

# VOLUMES KEK volumes, a third on each node, three clients at once.
echo "cluster-rotation.sh: creating $VOLUMES volumes on 3 nodes..." >&2
tc=$(now)
MAKERS=()
for n in 1 2 3; do
    $PYTHON - "$T/n$n/admin.sock" "$n" "$VOLUMES" <<'PY' &
import http.client, json, socket, sys

class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

c = Unix(sys.argv[1])
node, total = int(sys.argv[2]), int(sys.argv[3])
for i in range(node - 1, total, 3):
    c.request("POST", "/v1/volumes", json.dumps({"name": "v%d" % i, "size": 4194304}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    a = r.read()
    if r.status != 201:
        sys.exit("volume v%d on n%d: %d %s" % (i, node, r.status, a.decode()))
PY
    MAKERS+=($!)
done
wait_all=0
for j in "${MAKERS[@]}"; do wait "$j" || wait_all=1; done
[ "$wait_all" = 0 ] || fail "creating the volumes"

gen() { bcv "n$1" cluster info --json | $PYTHON -c 'import json,sys; d=json.load(sys.stdin); print(d["rotationState"], d["currentKekGeneration"])'; }
[ "$(gen 1)" = "NoRotation 1" ] || fail "before: $(gen 1)"
t0=$(now)
bcv n1 cluster kek rotate > "$T/rotate.out" || fail "rotate: $(cat "$T/rotate.out")"
for n in 1 2 3; do
    until [ "$(gen "$n")" = "NoRotation 2" ]; do sleep 0.05; done
done
t1=$(now)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
for i in 0 1 2 $((VOLUMES / 2)) $((VOLUMES - 1)); do
    n=$((i % 3 + 1))
    $PYTHON -c 'import nbd,sys; h=nbd.NBD(); h.set_export_name(sys.argv[2]); h.connect_unix(sys.argv[1]); h.pread(512, 0)' \
        "$T/n$n/nbd.sock" "v$i" || fail "v$i does not attach on n$n after the rotation"
done
echo "created in $(awk -v a="$tc" -v b="$t0" 'BEGIN { printf "%.1f", b - a }') s"
echo "rotation of $VOLUMES volumes across 3 nodes: $secs s; budget $BUDGET s: $(awk -v s="$secs" -v b="$BUDGET" 'BEGIN { r = s / b; printf "%.2f %s", r, (r <= 1) ? "PASS" : "MISS" }') ($(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))"
