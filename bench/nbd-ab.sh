#!/usr/bin/env bash
# bench/nbd-ab.sh BUILD_A BUILD_B: the NBD data path of two builds of
# cryptvold, one against the other, on the same machine in the same run
# (bench/README.md).  For a change that adds work per request: A is the
# tree before it, B after.
#
# Each build serves one LUKS2 volume of SIZE_MIB MiB (default 256) over a
# unix socket, without TLS, its data directory on tmpfs (/dev/shm), filled
# once with nbdcopy before anything is timed.  Then ROUNDS rounds (default
# 5), each running every workload on A and on B, in alternating order (A
# first in odd rounds, B first in even ones), so that a change of load
# during the run moves both: fio's nbd engine, one connection,
# `--ramp_time=1`, RUNTIME seconds (default 5) each:
#   4K randread qd32, 4K randwrite qd32, 4K randread qd1, 1M read qd16
# (WORKLOADS="randread 4k 1;write 1m 8" for others).  Run it with A and B
# the same build first: how far apart two identical servers come out is
# the noise floor of the machine at the time.
# For each: the rate, and the server's CPU time per request (all its
# threads, /proc/PID/stat, from the end of the ramp to the end of fio),
# which depends much less on how busy the machine is than the rate does.
# Prints every round's figures, then per workload the medians of A and B
# and B / A.  Not a test: it exits non-zero only when a command fails.
set -euo pipefail

A=${1:?usage: bench/nbd-ab.sh BUILD_A BUILD_B}
B=${2:?usage: bench/nbd-ab.sh BUILD_A BUILD_B}
SIZE_MIB=${SIZE_MIB:-256}
RUNTIME=${RUNTIME:-5}
ROUNDS=${ROUNDS:-5}
PYTHON=${PYTHON:-/usr/bin/python3}
die() { echo "nbd-ab: $*" >&2; exit 1; }
for b in "$A" "$B"; do
    [ -x "$b/daemon/cryptvold" ] && [ -x "$b/cli/cryptvol" ] ||
        die "$b: no daemon/cryptvold or cli/cryptvol (build it first)"
done
for c in fio nbdcopy; do
    command -v "$c" > /dev/null || die "$c is not installed (scripts/install-deps.sh)"
done

T=$(mktemp -d "/dev/shm/cryptvol-ab.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

# serve NAME BUILD: a daemon and its volume, filled; sets URI[NAME] and
# SPID[NAME].
declare -A URI SPID
serve() {
    local n=$1 b=$2 d=$T/$1 i
    mkdir -p "$d"
    "$b/daemon/cryptvold" --foreground --data-dir "$d/data" \
        --admin-socket "$d/admin.sock" --nbd-unix "$d/nbd.sock" \
        --nbd-listen none --tls off --pbkdf pbkdf2 --pbkdf-iterations 1000 \
        --log-level warning > "$d/log" 2>&1 < /dev/null &
    PIDS+=($!)
    SPID[$n]=$!
    for ((i = 0; i < 100; i++)); do
        [ -S "$d/admin.sock" ] && [ -S "$d/nbd.sock" ] && break
        sleep 0.1
    done
    [ -S "$d/admin.sock" ] || die "$n: cryptvold did not start: $(tail -5 "$d/log")"
    CRYPTVOL_SOCKET=$d/admin.sock "$b/cli/cryptvol" volume create v \
        --size "${SIZE_MIB}M" --type luks2 > /dev/null
    URI[$n]="nbd+unix:///v?socket=$d/nbd.sock"
    nbdcopy --no-extents "$T/in" "${URI[$n]}"
}

# utime + stime of a process, all its threads, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# fio_one NAME RW BS QD: prints RATE/US: IOPS (random) or MiB/s
# (sequential), and the server's CPU microseconds per request.
fio_one() {
    local n=$1 rw=$2 bs=$3 qd=$4 what=iops dir=read fpid c0 c1
    case $rw in *write) dir=write ;; esac
    case $rw in rand*) ;; *) what=bw_bytes ;; esac
    fio --name=ab --ioengine=nbd --uri="${URI[$n]}" --rw="$rw" --bs="$bs" \
        --iodepth="$qd" --size="${SIZE_MIB}M" --ramp_time=1 \
        --runtime="$RUNTIME" --time_based --output-format=json \
        --output="$T/fio.json" > /dev/null &
    fpid=$!
    sleep 1
    c0=$(cpu_ticks "${SPID[$n]}")
    wait "$fpid"
    c1=$(cpu_ticks "${SPID[$n]}")
    "$PYTHON" - "$T/fio.json" "$dir" "$what" "$((c1 - c0))" \
        "$(getconf CLK_TCK)" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
if job["error"]:
    sys.exit("fio reports error %d" % job["error"])
d = job[sys.argv[2]]
v = d[sys.argv[3]]
us = int(sys.argv[4]) / int(sys.argv[5]) * 1e6 / max(d["total_ios"], 1)
print("%.0f/%.2f" % (v / 1048576 if sys.argv[3] == "bw_bytes" else v, us))
PY
}

head -c "${SIZE_MIB}M" /dev/urandom > "$T/in"
serve A "$A"
serve B "$B"
rm -f "$T/in"
WL=("randread 4k 32" "randwrite 4k 32" "randread 4k 1" "read 1m 16")
# WORKLOADS="randread 4k 1;read 1m 16": others, "RW BS QD" each.
if [ -n "${WORKLOADS:-}" ]; then
    IFS=';' read -r -a WL <<< "$WORKLOADS"
fi
echo "nbd-ab: A=$A B=$B, $SIZE_MIB MiB LUKS2 volumes on tmpfs, unix socket," \
     "fio $RUNTIME s per workload, $ROUNDS rounds"
echo "round workload           A rate  A us/req    B rate  B us/req"
declare -A RES
for ((r = 1; r <= ROUNDS; r++)); do
    order=(A B)
    [ $((r % 2)) = 0 ] && order=(B A)
    for w in "${WL[@]}"; do
        for n in "${order[@]}"; do
            RES[$n,$w]+="$(fio_one "$n" $w) "
        done
        # shellcheck disable=SC2046
        printf '%5d %-16s %9s %9s %9s %9s\n' "$r" "$w" \
            $(echo "${RES[A,$w]}" | awk '{print $NF}' | tr / ' ') \
            $(echo "${RES[B,$w]}" | awk '{print $NF}' | tr / ' ')
    done
done
echo
echo "medians: rate (IOPS; MiB/s for 1m) and the server's CPU us per request"
echo "workload              rate A    rate B   B / A    cpu A    cpu B   B / A"
for w in "${WL[@]}"; do
    "$PYTHON" - "$w" "${RES[A,$w]}" "${RES[B,$w]}" <<'PY'
import statistics, sys
w = sys.argv[1]
a = [tuple(map(float, x.split("/"))) for x in sys.argv[2].split()]
b = [tuple(map(float, x.split("/"))) for x in sys.argv[3].split()]
med = lambda l, i: statistics.median(x[i] for x in l)
ra, rb, ca, cb = med(a, 0), med(b, 0), med(a, 1), med(b, 1)
print("%-18s %9.0f %9.0f %7.3f  %7.2f  %7.2f %7.3f"
      % (w, ra, rb, rb / ra, ca, cb, cb / ca))
PY
done
