#!/usr/bin/env bash
# Recovery of replicas (docs/replication.md, "Resync and rebuild"): three
# nodes on etcd (bench/cluster-lib.sh) and a 3-replica volume of SIZE_MIB
# MiB (default 256) filled with random data through n1.
#
# 1. Resync: n3 is killed -9, the whole volume written again through n1
#    (every region missed), n3 started again; the time from its start to
#    InSync (volume info, polled every 0.2 s) gives a rate in MiB/s.
# 2. Rebuild: `volume replicas --set 2` (n3 leaves) and `--set 3` (n3
#    again, Rebuilding: header and every block); the time to InSync.
# 3. Both against `cp` of the same bytes (n1's head layer file to a new
#    file in n3's data dir, then sync): the ratio rate / cp rate.
# 4. Failover: tests/tools/ack-writer.py writes through n1 with FUA, n1
#    is killed -9, and n2 is asked to attach (nbdinfo) every 0.1 s: the
#    time from the kill to the first attach that works (about the lease's
#    TTL, LEASE_TTL seconds, default 6), and the acknowledged writes read
#    back through n2.
#
# Usage: bench/repl-recovery.sh [BUILD_DIR]   (SIZE_MIB=N LEASE_TTL=S DIR=PATH)
# Prints the figures; exits non-zero only when something could not run
# or data did not read back.  See bench/README.md.
. "$(dirname "$0")/cluster-lib.sh"
SIZE_MIB=${SIZE_MIB:-256}
LEASE_TTL=${LEASE_TTL:-6}
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || fail "SIZE_MIB must be a number of MiB"
for tool in nbdcopy nbdinfo; do
    command -v "$tool" > /dev/null || fail "$tool is not installed"
done
$PYTHON -c 'import nbd' 2>/dev/null || fail "python3-libnbd is not installed"

declare -A PORT
for n in 1 2 3; do PORT[$n]=$(free_port); done
# start N: node nN on its peer port (the one it was added with).
start() {
    bench_node "n$1" --node-name "n$1" --etcd-endpoints "$ETCD_ENDPOINTS" \
        --etcd-tls-dir "$ETCD_TLS_DIR" --peer-tls-dir "$T/n$1-tls" \
        --peer-listen "127.0.0.1:${PORT[$1]}" --node-lease-ttl "$LEASE_TTL" \
        --pbkdf pbkdf2 --pbkdf-iterations 1000
}
kill9() { kill -9 "${BPID[n$1]}"; wait "${BPID[n$1]}" 2>/dev/null || true; }
uri() { echo "nbd+unix:///$2?socket=$T/n$1/nbd.sock"; }
state() {
    bcv n1 volume info "$1" --json 2>/dev/null | $PYTHON -c '
import json, sys
for r in json.load(sys.stdin).get("replicas") or []:
    if isinstance(r, dict) and r.get("node") == sys.argv[1]:
        print(r.get("state", ""))' "$2"
}
# wait_insync VOL NODE SECS: polls; prints seconds taken.
wait_insync() {
    local t0 i
    t0=$(now)
    for ((i = 0; i < $3 * 5; i++)); do
        [ "$(state "$1" "$2")" = InSync ] && { awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }'; return 0; }
        sleep 0.2
    done
    fail "$1 on $2 not InSync after $3 s"
}
mibs() { awk -v m="$1" -v s="$2" 'BEGIN { printf "%.1f", m / s }'; }
# copy_secs NODE KIND: seconds between the copier's (NODE's) last log lines
# "replica n3: KIND ... begins" and "replica n3: InSync after a KIND", from
# their timestamps: the copy alone, without the node's start or the repair
# loop's wake-up.
copy_secs() {
    $PYTHON - "$T/$1/log" "$2" <<'PY'
import datetime, re, sys
kind, begin, end = sys.argv[2], None, None
for line in open(sys.argv[1], errors="replace"):
    t = line.split(" ", 1)[0]
    if "replica n3: %s" % kind in line and "begins" in line:
        begin, end = t, None
    elif "replica n3: InSync after a %s" % kind in line and begin:
        end = t
if not (begin and end):
    sys.exit("no %s of n3 begun and ended in %s" % (kind, sys.argv[1]))
f = lambda s: datetime.datetime.fromisoformat(s)
print("%.2f" % max((f(end) - f(begin)).total_seconds(), 0.001))
PY
}

bench_ca
etcd_start "$T/etcd" 127.0.0.1
start 1
for n in 2 3; do
    bcv n1 node add "n$n" --address "127.0.0.1:${PORT[$n]}" > /dev/null || fail "node add n$n"
    start "$n"
done
passfile "$T/pw" "repl-recovery bench secret"
bcv n1 secret create pw --from-file "$T/pw" > /dev/null
bcv n1 volume create v --size "${SIZE_MIB}M" --secret pw --replicas 3 > /dev/null ||
    fail "volume create v --replicas 3"
wait_insync v n3 60 > /dev/null
echo "repl-recovery.sh: filling $SIZE_MIB MiB through n1..." >&2
head -c "${SIZE_MIB}M" /dev/urandom > "$T/data"
nbdcopy "$T/data" "$(uri 1 v)" || fail "writing v through n1"

# ---- 1. resync ------------------------------------------------------------------
kill9 3
head -c "${SIZE_MIB}M" /dev/urandom > "$T/data"
nbdcopy "$T/data" "$(uri 1 v)" || fail "writing v through n1 without n3"
start 3
RESYNC=$(wait_insync v n3 600)
RESYNC_COPY=$(copy_secs n1 resync) || fail "the resync's copy time"

# ---- 2. rebuild -------------------------------------------------------------------
bcv n1 volume replicas v --set 2 > /dev/null || fail "volume replicas v --set 2"
bcv n1 volume replicas v --set 3 > /dev/null || fail "volume replicas v --set 3"
REBUILD=$(wait_insync v n3 600)
REBUILD_COPY=$(copy_secs n1 rebuild) || fail "the rebuild's copy time"

# ---- 3. cp of the same bytes -----------------------------------------------------
head=$(vol_head "$T/n1/data" v)
t0=$(now)
cp "$head" "$T/n3/data/cp-bench" && sync
CP=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
rm -f "$T/n3/data/cp-bench"
nbdcopy "$(uri 1 v)" "$T/back" || fail "reading v back"
cmp -s "$T/data" "$T/back" || fail "v does not read back after the resync and rebuild"

# ---- 4. kill -9 of the writer to an attach on n2 ------------------------------------
$PYTHON "$SRC_DIR/tests/tools/ack-writer.py" write "$(uri 1 v)" --log "$T/acked" \
    --depth 16 --started "$T/started" 2> "$T/writer.err" &
W=$!
for ((i = 0; i < 100; i++)); do [ -e "$T/started" ] && break; sleep 0.1; done
[ -e "$T/started" ] || fail "ack-writer: $(cat "$T/writer.err")"
sleep 1
kill9 1
t0=$(now)
until nbdinfo --size "$(uri 2 v)" > /dev/null 2>&1; do
    sleep 0.1
    awk -v a="$(now)" -v b="$t0" 'BEGIN { exit !(a - b > 60) }' && fail "no attach on n2 60 s after the kill"
done
FAILOVER=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
wait $W || true
$PYTHON "$SRC_DIR/tests/tools/ack-writer.py" check "$(uri 2 v)" --log "$T/acked" > "$T/check" 2>&1 ||
    fail "after the failover: $(cat "$T/check")"

# "to InSync": from the node's start (resync) or the --set (rebuild) to
# InSync in volume info; "copy": the copier's own begin-to-InSync.
printf '%-16s %9s %10s %8s\n' what seconds "MiB/s" "vs cp"
cpr=$(mibs "$SIZE_MIB" "$CP")
row() {
    local r
    r=$(mibs "$SIZE_MIB" "$2")
    printf '%-16s %9s %10s %8s\n' "$1" "$2" "$r" "$(awk -v a="$r" -v b="$cpr" 'BEGIN { printf "%.2f", a / b }')"
}
row "resync copy" "$RESYNC_COPY"
row "resync to InSync" "$RESYNC"
row "rebuild copy" "$REBUILD_COPY"
row "rebuild to InSync" "$REBUILD"
printf '%-16s %9s %10s %8s\n' cp "$CP" "$cpr" 1.00
echo "failover: kill -9 of the writer to an attach on n2: ${FAILOVER} s (node-lease-ttl ${LEASE_TTL} s); $(cat "$T/check")"
echo "($SIZE_MIB MiB, $(nproc) CPUs, data in ${DIR:-/var/tmp})"
