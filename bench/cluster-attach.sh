#!/usr/bin/env bash
# Attach latency on etcd against SQLite, in one run: from opening an NBD
# connection to a volume that is not open yet to its first 512 bytes read
# (the NBD GO: the volume's record, its secret unsealed, its header
# unlocked, PBKDF2 at 1000 iterations), for a volume of a node whose
# metadata is in etcd (one member, client TLS, on 127.0.0.1) and the same
# volume on a single node with SQLite.  Each attach is a first open: the
# next starts once the daemon has logged the volume closed.  Prints the
# median, min and max of ROUNDS attaches each and the ratio etcd / SQLite.
#
# Usage: bench/cluster-attach.sh [BUILD_DIR]   (ROUNDS=N DIR=PATH)
. "$(dirname "$0")/cluster-lib.sh"
ROUNDS=${ROUNDS:-40}
$PYTHON -c 'import nbd' 2>/dev/null || fail "python3-libnbd is not installed"

bench_ca
etcd_start "$T/etcd" 127.0.0.1
bench_cluster_node 1
bench_node single
passfile "$T/pw" "cluster-attach bench secret"
for n in n1 single; do
    bcv "$n" secret create pw --from-file "$T/pw" > /dev/null
    bcv "$n" volume create v --size 64M --secret pw --pbkdf pbkdf2 --pbkdf-iterations 1000 > /dev/null
done

# measure SOCKET LOG VOLUME ROUNDS: "median min max" in ms.
measure() {
    $PYTHON - "$@" <<'PY'
import nbd, re, statistics, sys, time
sock, log, vol, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def closes():
    return len(re.findall(r"volume %s: closed" % re.escape(vol), open(log).read()))

times = []
for i in range(rounds):
    before = closes()
    t0 = time.perf_counter()
    h = nbd.NBD()
    h.set_export_name(vol)
    h.connect_unix(sock)
    h.pread(512, 0)
    times.append((time.perf_counter() - t0) * 1000)
    h.shutdown()
    del h
    deadline = time.time() + 10
    while closes() == before:
        if time.time() > deadline:
            sys.exit("volume %s: not closed after the client left" % vol)
        time.sleep(0.002)
print("%.2f %.2f %.2f" % (statistics.median(times), min(times), max(times)))
PY
}

printf '%-14s %10s %10s %10s\n' store "median ms" "min ms" "max ms"
declare -A MED
for n in single n1; do
    read -r med min max < <(measure "$T/$n/nbd.sock" "$T/$n/log" v "$ROUNDS") ||
        fail "measuring $n"
    MED[$n]=$med
    printf '%-14s %10s %10s %10s\n' "$([ $n = n1 ] && echo etcd || echo sqlite)" "$med" "$min" "$max"
done
echo "etcd / sqlite: $(awk -v a="${MED[n1]}" -v b="${MED[single]}" 'BEGIN { printf "%.2f", a / b }')x ($ROUNDS attaches each, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))"
