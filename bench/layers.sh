#!/usr/bin/env bash
# Layer chains (issue 10, docs/store.md "Bounds"): what a chain costs.
#
# Usage: bench/layers.sh [BUILD_DIR]
#
# 1. Reads through a chain.  Three volumes of SIZE_MIB MiB (default 256)
#    hold the same bytes: v1 in one layer; v5 and v20 in 5 and 20 layers,
#    64 KiB chunk c written in layer c % N (so a read of any block looks
#    through layers down to its own).  All three are read back and must
#    match (untimed); then fio's nbd engine runs 4 KiB random reads at
#    queue depth 32 on each for RUNTIME seconds (default 10), the three in
#    turn, REPEAT rounds (default 3), the best of each kept.  Ratio:
#    IOPS(N layers) / IOPS(1 layer); target at 20 layers: >= 0.8.
# 2. Snapshot create under load.  fio 4 KiB random writes at queue depth 4
#    on a volume for RUNTIME seconds, alone, and then again while a
#    snapshot is taken every SNAP_EVERY seconds (default 0.5); the added
#    write latency is (p99, max) with snapshots minus (p99, max) without.
#    Target: max added < 50 ms.  The snapshot creates' own times (the
#    CLI's wall time) are printed.
# 3. Memory.  The daemon's RSS (VmRSS) after a restart with one client
#    holding each of: a 1 GiB volume; a 1 TiB sparse volume; the same 1 TiB
#    volume with 20 snapshots, each layer holding 1 MiB at its own place
#    (so each has one 128 MiB leaf in its map).  With the time the first
#    connect to each took (the open walks each layer's extents), and the
#    bound docs/store.md states.
#
# The daemon's data dir is on tmpfs (/dev/shm, or one it mounts as root),
# so the figures are the store's and the cipher's, not the disk's.
# Prints figures, ratios and PASS/MISS; exits non-zero only when something
# could not run or data did not read back.  See bench/README.md.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$SRC_DIR/build}
SIZE_MIB=${SIZE_MIB:-256}
RUNTIME=${RUNTIME:-10}
SNAP_EVERY=${SNAP_EVERY:-0.5}
REPEAT=${REPEAT:-3}             # rounds of the read runs
PYTHON=${PYTHON:-/usr/bin/python3}
T_READ20=0.8        # IOPS at 20 layers / IOPS at 1
T_SNAP_MS=50        # added max write latency during snapshot creates

die() { echo "layers.sh: $*" >&2; exit 1; }
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "SIZE_MIB must be a number of MiB"
[[ $RUNTIME =~ ^[1-9][0-9]*$ ]] || die "RUNTIME must be a number of seconds"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a number"
for tool in fio nbdinfo awk; do
    command -v "$tool" > /dev/null || die "$tool is not installed"
done
"$PYTHON" -c 'import nbd' 2> /dev/null || die "python3-libnbd is not installed"
CRYPTVOLD=$BUILD_DIR/daemon/cryptvold
CRYPTVOL=${CRYPTVOL:-$BUILD_DIR/cli/cryptvol}     # CRYPTVOL=... for another CLI
if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
    out=$(cmake --build "$BUILD_DIR" --target cryptvol-cli --target cryptvold 2>&1) ||
        die "cmake --build $BUILD_DIR failed:"$'\n'"$out"
fi
[ -x "$CRYPTVOLD" ] && [ -x "$CRYPTVOL" ] || die "no cryptvold and cryptvol in $BUILD_DIR"

# --- scratch space on tmpfs, cleaned up on any exit -------------------------
need_kib=$(( (SIZE_MIB * 5 + 512) * 1024 ))
T=$(mktemp -d "${TMPDIR:-/tmp}/cryptvol-bench.XXXXXX")
MOUNTED= CPID= W=
cleanup() {
    local rc=$?
    if [ -n "$CPID" ]; then kill "$CPID" 2> /dev/null || true; wait "$CPID" 2> /dev/null || true; fi
    stop_daemon || true
    [ -n "$W" ] && [ "$W" != "$T/tmpfs" ] && rm -rf "$W"
    [ -n "$MOUNTED" ] && { umount "$T/tmpfs" || echo "layers.sh: could not unmount $T/tmpfs" >&2; }
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
avail_kib() { df -Pk "$1" | awk 'NR == 2 { print $4 }'; }
if [ "$(stat -f -c %T /dev/shm 2> /dev/null)" = tmpfs ] && [ "$(avail_kib /dev/shm)" -ge "$need_kib" ]; then
    W=$(mktemp -d /dev/shm/cryptvol-bench.XXXXXX)
else
    [ "$(id -u)" -eq 0 ] || die "/dev/shm is not a tmpfs with $((need_kib / 1024)) MiB free, and mounting one needs root"
    mkdir "$T/tmpfs"
    mount -t tmpfs -o "size=${need_kib}k,mode=0700" tmpfs "$T/tmpfs" || die "mounting a tmpfs failed"
    MOUNTED=1 W=$T/tmpfs
fi

# --- the daemon ----------------------------------------------------------------
SOCK=$W/nbd.sock
export CRYPTVOL_SOCKET=$W/admin.sock
DPID=
start_daemon() {
    local i
    rm -f "$SOCK" "$CRYPTVOL_SOCKET"
    "$CRYPTVOLD" --foreground --data-dir "$W/data" --nbd-listen none --nbd-unix "$SOCK" \
        --admin-socket "$CRYPTVOL_SOCKET" --tls off --pbkdf pbkdf2 --pbkdf-iterations 1000 \
        >> "$T/cryptvold.log" 2>&1 < /dev/null &
    DPID=$!
    for ((i = 0; i < 200; i++)); do
        [ -S "$SOCK" ] && [ -S "$CRYPTVOL_SOCKET" ] && return 0
        kill -0 "$DPID" 2> /dev/null || die "cryptvold exited at start: $(tail -n 20 "$T/cryptvold.log")"
        sleep 0.05
    done
    die "cryptvold made no sockets in 10 s"
}
stop_daemon() {
    [ -n "$DPID" ] || return 0
    kill "$DPID" 2> /dev/null || true
    wait "$DPID" 2> /dev/null || true
    DPID=
}
uri() { echo "nbd+unix:///$1?socket=$SOCK"; }
now_ns() { date +%s%N; }
cli() { "$CRYPTVOL" "$@" > "$T/cli.out" 2>&1 || die "cryptvol $*: $(cat "$T/cli.out")"; }

# fill VOL N: writes the SIZE_MIB MiB of the bench's data, 64 KiB chunk c
# into layer c % N (a snapshot closes each layer but the last).
fill() {
    "$PYTHON" - "$SOCK" "$1" "$2" "$SIZE_MIB" "$CRYPTVOL" <<'PY' || die "filling $1"
import random, subprocess, sys
import nbd
sock, vol, n, mib, cli = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
h = nbd.NBD(); h.set_export_name(vol); h.connect_unix(sock)
chunks = mib * 16
for layer in range(n):
    for c in range(layer, chunks, n):
        h.pwrite(random.Random(c).randbytes(65536), c * 65536)
    h.flush()
    if layer < n - 1:
        subprocess.run([cli, "snapshot", "create", "%s@l%d" % (vol, layer)],
                       check=True, stdout=subprocess.DEVNULL)
h.shutdown()
PY
}
vsum() { "$PYTHON" "$SRC_DIR/tests/tools/nbd-io.py" sum "$SOCK" "$1" || die "reading $1"; }

# fio_json NAME URI RW QD OUT [EXTRA...]
fio_json() {
    local name=$1 u=$2 rw=$3 qd=$4 out=$5
    shift 5
    fio --name="$name" --ioengine=nbd --uri="$u" --rw="$rw" --bs=4k --iodepth="$qd" \
        --size="${SIZE_MIB}M" --ramp_time=1 --runtime="$RUNTIME" --time_based \
        --output-format=json --output="$out" "$@" > "$T/fio.out" 2>&1 ||
        die "fio $rw on $u: $(tail -n 5 "$T/fio.out")"
}
fio_get() {   # fio_get JSON DIR EXPR (j = the job's DIR object)
    "$PYTHON" -c '
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
if job["error"]:
    sys.exit("fio reports error %d" % job["error"])
j = job[sys.argv[2]]
print(eval(sys.argv[3]))' "$@"
}
verdict() { awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN { ok = (op == ">=") ? a >= b : a < b; print ok ? "PASS" : "MISS" }'; }

echo "Layer chains: $SIZE_MIB MiB volumes on tmpfs ($W), fio --ioengine=nbd, $RUNTIME s per run"
echo "$(nproc) CPU(s) ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr), $(fio --version)"
echo

start_daemon
printf '%s' "bench layers" > "$T/pw"; chmod 600 "$T/pw"
cli secret create pw --from-file "$T/pw"

# --- 1. reads through a chain --------------------------------------------------
declare -A IOPS
for n in 1 5 20; do
    cli volume create "v$n" --size "${SIZE_MIB}M" --secret pw
    fill "v$n" "$n"
done
s1=$(vsum v1)
for n in 5 20; do
    [ "$(vsum "v$n")" = "$s1" ] || die "v$n ($n layers) reads other bytes than v1"
done
# Interleaved, REPEAT rounds, the best of each kept: a machine whose load
# drifts during the run treats the three alike.
for ((round = 0; round < REPEAT; round++)); do
    for n in 1 5 20; do
        fio_json "rr$n" "$(uri "v$n")" randread 32 "$T/rr$n.json"
        x=$(fio_get "$T/rr$n.json" read '"%.0f" % j["iops"]')
        [ "${IOPS[$n]:-0}" -ge "$x" ] || IOPS[$n]=$x
    done
done
echo "4 KiB random reads, queue depth 32, best of $REPEAT interleaved rounds (the three volumes read the same bytes):"
printf '  %-10s %10s %8s\n' layers IOPS ratio
for n in 1 5 20; do
    printf '  %-10s %10s %8s\n' "$n" "${IOPS[$n]}" "$(awk -v a="${IOPS[$n]}" -v b="${IOPS[1]}" 'BEGIN { printf "%.2f", a / b }')"
done
r20=$(awk -v a="${IOPS[20]}" -v b="${IOPS[1]}" 'BEGIN { printf "%.2f", a / b }')
echo "  target: 20 layers >= $T_READ20 of one layer: $r20 $(verdict "$r20" '>=' "$T_READ20")"
echo

# --- 2. snapshot create under a writer ----------------------------------------
cli volume create w --size "${SIZE_MIB}M" --secret pw
LAT='"%.2f %.2f" % (j["clat_ns"]["percentile"]["99.000000"] / 1e6, j["clat_ns"]["max"] / 1e6)'
fio_json alone "$(uri w)" randwrite 4 "$T/w0.json"
read -r p99a maxa <<< "$(fio_get "$T/w0.json" write "$LAT")"
fio_json snaps "$(uri w)" randwrite 4 "$T/w1.json" &
CPID=$!
sleep 1.5           # past fio's ramp
: > "$T/snap.ms"
i=0
while kill -0 "$CPID" 2> /dev/null; do
    t0=$(now_ns)
    "$CRYPTVOL" snapshot create "w@s$i" > /dev/null 2> "$T/snap.err" || {
        kill -0 "$CPID" 2> /dev/null && die "snapshot create w@s$i: $(cat "$T/snap.err")"
        break
    }
    echo $(( ($(now_ns) - t0) / 1000 )) >> "$T/snap.ms"
    i=$((i + 1))
    sleep "$SNAP_EVERY"
done
wait "$CPID" || die "fio under snapshots failed"
CPID=
read -r p99b maxb <<< "$(fio_get "$T/w1.json" write "$LAT")"
snapstat=$(sort -n "$T/snap.ms" | awk '{ a[NR] = $1 } END { printf "%d snapshots, create p50 %.1f ms, max %.1f ms", NR, a[int((NR + 1) / 2)] / 1000, a[NR] / 1000 }')
added_max=$(awk -v a="$maxb" -v b="$maxa" 'BEGIN { printf "%.2f", a - b }')
echo "4 KiB random writes, queue depth 4, completion latency (ms):"
printf '  %-22s %8s %8s\n' "" p99 max
printf '  %-22s %8s %8s\n' "writer alone" "$p99a" "$maxa"
printf '  %-22s %8s %8s\n' "snapshot every ${SNAP_EVERY}s" "$p99b" "$maxb"
printf '  %-22s %8s %8s\n' added "$(awk -v a="$p99b" -v b="$p99a" 'BEGIN { printf "%.2f", a - b }')" "$added_max"
echo "  $snapstat"
echo "  target: added max < $T_SNAP_MS ms: $added_max $(verdict "$added_max" '<' "$T_SNAP_MS")"
echo

# --- 3. memory of an open 1 TiB volume with 20 snapshots -----------------------
cli volume delete v1; cli volume delete v5; cli volume delete v20
"$PYTHON" - "$SOCK" "$CRYPTVOL" <<'PY' || die "writing the 1 TiB volumes"
import subprocess, sys
import nbd
sock, cli = sys.argv[1:]
run = lambda *a: subprocess.run([cli, *a], check=True, stdout=subprocess.DEVNULL)
run("volume", "create", "g1", "--size", "1G", "--secret", "pw")
run("volume", "create", "t0", "--size", "1T", "--secret", "pw")
run("volume", "create", "t20", "--size", "1T", "--secret", "pw")
for vol, snaps in (("g1", 0), ("t0", 0), ("t20", 20)):
    h = nbd.NBD(); h.set_export_name(vol); h.connect_unix(sock)
    for i in range(snaps + 1):
        off = (i * 51 << 30) % h.get_size() if vol != "g1" else 0
        h.pwrite(b"\xa5" * (1 << 20), off)
        h.flush()
        if i < snaps:
            run("snapshot", "create", "%s@s%d" % (vol, i))
    h.shutdown()
PY
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$DPID/status"; }
declare -A RSS OPEN_MS
for vol in g1 t0 t20; do
    stop_daemon
    start_daemon
    base=$(rss_kib)
    coproc HOLD { "$PYTHON" "$SRC_DIR/tests/tools/nbd-hold.py" "$(uri "$vol")"; }
    hold=$HOLD_PID      # bash unsets HOLD_PID once the coprocess has ended
    t0=$(now_ns)
    read -r line <&"${HOLD[0]}"
    OPEN_MS[$vol]=$(( ($(now_ns) - t0) / 1000000 ))
    [ "${line%% *}" = connected ] || die "connecting to $vol: $line"
    echo "read 0 4096" >&"${HOLD[1]}"
    read -r line <&"${HOLD[0]}"
    RSS[$vol]=$(( $(rss_kib) - base ))
    echo quit >&"${HOLD[1]}"
    wait "$hold" 2> /dev/null || true
done
echo "Memory of an open volume (the daemon's VmRSS with a client on it, minus its RSS idle after a restart):"
printf '  %-40s %10s %10s\n' "" "RSS KiB" "open ms"
printf '  %-40s %10s %10s\n' "1 GiB, 1 layer" "${RSS[g1]}" "${OPEN_MS[g1]}"
printf '  %-40s %10s %10s\n' "1 TiB sparse, 1 layer" "${RSS[t0]}" "${OPEN_MS[t0]}"
printf '  %-40s %10s %10s\n' "1 TiB sparse, 20 snapshots (21 layers)" "${RSS[t20]}" "${OPEN_MS[t20]}"
echo "  per extra layer of 1 TiB: $(( (RSS[t20] - RSS[t0]) / 20 )) KiB;" \
     "docs/store.md's bound: 21 x 8192 x 8 B = 1344 KiB of level-1 maps, plus 4 KiB per 128 MiB region written per layer"
stop_daemon
