#!/usr/bin/env bash
# Replication's cost on writes: a volume of three replicas against a volume
# of one, on the same three-node cluster (etcd, one member, client TLS;
# peer TLS required, the default), NBD on each node's unix socket without
# TLS (what is measured is the write path, not NBD's TLS).  fio's nbd
# engine, one connection: sequential 1 MiB writes at queue depth 16 and
# 4 KiB random writes at queue depth 32, RUNTIME seconds each (default 8).
# Prints MiB/s and IOPS, the ratios 3-replica / 1-replica and PASS/MISS
# against the targets (0.6 sequential, 0.5 random).  Exits 0 whatever the
# figures; non-zero when something could not run.
#
# Usage: bench/replication.sh [BUILD_DIR]   (RUNTIME=S SIZE_MIB=N DIR=PATH)
# DIR defaults to /dev/shm (tmpfs): the three nodes share one machine and
# one disk, so on a disk the ratio would be the disk's, not replication's.
DIR=${DIR:-/dev/shm}
. "$(dirname "$0")/cluster-lib.sh"
RUNTIME=${RUNTIME:-8}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
SIZE_MIB=${SIZE_MIB:-512}
T_SEQ=0.6
T_RAND=0.5
command -v fio > /dev/null || fail "fio is not installed"

bench_ca
etcd_start "$T/etcd" 127.0.0.1
# PEER_TLS=off|on|require (default require): the replicas' transport.
PEER_TLS=${PEER_TLS:-require}
NODE_EXTRA=(--peer-tls "$PEER_TLS")
bench_cluster_node 1 --log-level warning "${NODE_EXTRA[@]}"
for n in 2 3; do
    bcv n1 node add "n$n" --address "127.0.0.1:$(free_port)" > /dev/null
done
# node add took an address; each node listens on the one it was added with.
for n in 2 3; do
    addr=$(bcv n1 node list --json | $PYTHON -c "import json,sys; print([x['address'] for x in json.load(sys.stdin)['nodes'] if x['name'] == 'n$n'][0])")
    bench_node "n$n" --node-name "n$n" --etcd-endpoints "$ETCD_ENDPOINTS" \
        --etcd-tls-dir "$ETCD_TLS_DIR" --peer-tls-dir "$T/n$n-tls" \
        --peer-listen "$addr" --log-level warning "${NODE_EXTRA[@]}"
done
online() {
    bcv n1 node list --json | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if sum(n["state"] == "Online" for n in d["nodes"]) == 3 else 1)'
}
for ((i = 0; i < 100; i++)); do online && break; sleep 0.2; done
online || fail "the three nodes are not Online: $(bcv n1 node list)"

passfile "$T/pw" "replication bench secret"
bcv n1 secret create pw --from-file "$T/pw" > /dev/null
# PBKDF2 at 1000 iterations: each fio run's attach unlocks in
# milliseconds (argon2id would take seconds of CPU on this shared box).
KDF=(--pbkdf pbkdf2 --pbkdf-iterations 1000)
bcv n1 volume create r1 --size "${SIZE_MIB}M" --secret pw "${KDF[@]}" > /dev/null ||
    fail "volume create r1"
bcv n1 volume create r3 --size "${SIZE_MIB}M" --secret pw --replicas 3 "${KDF[@]}" > "$T/out" 2>&1 ||
    fail "volume create r3 --replicas 3: $(cat "$T/out")"
insync() {
    [ "$(bcv n1 volume info r3 --json | "$PYTHON" -c 'import json,sys; print(sum(r["state"] == "InSync" for r in json.load(sys.stdin)["replicas"]))')" = 3 ]
}
for ((i = 0; i < 150; i++)); do insync && break; sleep 0.2; done
insync || fail "r3's replicas are not InSync: $(bcv n1 volume info r3)"

declare -A R CPU OPS NODE
# cpu_ticks: the CPU time (clock ticks) the three nodes used so far.
cpu_ticks() {
    local pid t=0
    for pid in "${BPID[@]}"; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$t"
}
# node_ticks N: node nN's CPU time so far (clock ticks).
node_ticks() { awk '{print $14 + $15}' "/proc/${BPID[n$1]}/stat"; }
# fio_run VOL METRIC RW BS QD: MiB/s (sequential) or IOPS (random).
fio_run() {
    local vol=$1 metric=$2 rw=$3 bs=$4 qd=$5 what=bw_bytes c0 n
    local -A n0
    case $rw in rand*) what=iops ;; esac
    for n in 1 2 3; do n0[$n]=$(node_ticks $n); done
    c0=$(cpu_ticks)
    fio --name="$metric" --ioengine=nbd --uri="nbd+unix:///$vol?socket=$T/n1/nbd.sock" \
        --rw="$rw" --bs="$bs" --iodepth="$qd" --size="${SIZE_MIB}M" \
        --ramp_time=1 --runtime="$RUNTIME" --time_based \
        --output-format=json --output="$T/fio.json" > "$T/fio.out" 2>&1 ||
        fail "fio $rw $bs on $vol: $(cat "$T/fio.out")"
    R[$vol,$metric]=$("$PYTHON" - "$T/fio.json" "$what" <<'EOF'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
if job["error"]:
    sys.exit("fio reports error %d" % job["error"])
v = job["write"][sys.argv[2]]
print("%.0f" % (v / 1048576 if sys.argv[2] == "bw_bytes" else v))
EOF
    ) || fail "fio $rw $bs on $vol: no result: $(cat "$T/fio.json")"
    # The nodes' CPU use over the run, in cores (ramp included).
    CPU[$vol,$metric]=$(awk -v t=$(($(cpu_ticks) - c0)) -v hz="$(getconf CLK_TCK)" \
        -v s=$((RUNTIME + 1)) 'BEGIN { printf "%.2f", t / hz / s }')
    # Each node's CPU per operation (µs): what bounds the rate when each
    # node has CPUs of its own, as in a real cluster.
    OPS[$vol,$metric]=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["jobs"][0]["write"]["total_ios"])' "$T/fio.json")
    for n in 1 2 3; do
        NODE[$vol,$metric,$n]=$(awk -v t=$(($(node_ticks $n) - n0[$n])) \
            -v hz="$(getconf CLK_TCK)" -v ops="${OPS[$vol,$metric]}" \
            -v ramp=$(( (RUNTIME + 1) )) -v run="$RUNTIME" \
            'BEGIN { printf "%.1f", t / hz * 1e6 / (ops * ramp / run) }')
    done
}

# Each volume written once before (untimed): no run pays for allocating
# tmpfs pages or the activity log's first marks.
for vol in r1 r3; do
    fio --name=fill --ioengine=nbd --uri="nbd+unix:///$vol?socket=$T/n1/nbd.sock" \
        --rw=write --bs=1M --iodepth=16 --size="${SIZE_MIB}M" > "$T/fio.out" 2>&1 ||
        fail "filling $vol: $(cat "$T/fio.out")"
done
for vol in r1 r3; do
    fio_run "$vol" seq write 1M 16
    fio_run "$vol" rand randwrite 4k 32
done
insync || echo "note: after the runs r3 is $(bcv n1 volume info r3 --json)"

verdict() {
    awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN {
        r = 0; if (b > 0) r = a / b
        v = "MISS"; if (r >= t) v = "PASS"
        printf "%.2f %s\n", r, v }'
}
echo "peer-tls $PEER_TLS; cryptvol $(bcv n1 status --json 2> /dev/null | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin).get("version",""))' 2> /dev/null), fio $(fio --version), $(nproc) CPUs, data on $DIR"
printf '%-30s %12s %12s %8s\n' "" "1 replica" "3 replicas" "ratio"
read -r rs vs <<< "$(verdict "${R[r3,seq]}" "${R[r1,seq]}" "$T_SEQ")"
printf '%-30s %10s/s %10s/s %8s  %s (target %s)\n' "seq write 1 MiB, QD16 (MiB)" \
    "${R[r1,seq]}" "${R[r3,seq]}" "$rs" "$vs" "$T_SEQ"
read -r rr vr <<< "$(verdict "${R[r3,rand]}" "${R[r1,rand]}" "$T_RAND")"
printf '%-30s %12s %12s %8s  %s (target %s)\n' "rand write 4 KiB, QD32 (IOPS)" \
    "${R[r1,rand]}" "${R[r3,rand]}" "$rr" "$vr" "$T_RAND"
printf '%-30s %12s %12s\n' "nodes' CPU, seq (cores)" "${CPU[r1,seq]}" "${CPU[r3,seq]}"
printf '%-30s %12s %12s\n' "nodes' CPU, rand (cores)" "${CPU[r1,rand]}" "${CPU[r3,rand]}"
# The busiest node's CPU per operation, 1 replica against 3: the ratio
# the CPU allows when each node has its own (an estimate: no wait, no
# shared core; labelled so, and never a PASS).
est() {
    awk -v a="${NODE[r1,$1,1]}" -v b="${NODE[r3,$1,1]}" -v c="${NODE[r3,$1,2]}" \
        -v d="${NODE[r3,$1,3]}" 'BEGIN { m = b; if (c > m) m = c; if (d > m) m = d
        printf "%.2f", (m > 0 ? a / m : 0) }'
}
printf '%-30s %12s %12s\n' "CPU per op, seq (µs: n1 n2 n3)" \
    "${NODE[r1,seq,1]}" "${NODE[r3,seq,1]} ${NODE[r3,seq,2]} ${NODE[r3,seq,3]}"
printf '%-30s %12s %12s\n' "CPU per op, rand (µs: n1 n2 n3)" \
    "${NODE[r1,rand,1]}" "${NODE[r3,rand,1]} ${NODE[r3,rand,2]} ${NODE[r3,rand,3]}"
echo "estimate with a core per node (busiest node's CPU per op): seq $(est seq), rand $(est rand)"
echo "load average before: $LOAD0 (other processes share the $(nproc) CPUs)"
