#!/usr/bin/env bash
# Attach time: from opening an NBD connection to a volume that is not open
# yet to its first 512 bytes read, for four kinds of volume, in one run:
#   kek         a volume of a cluster with encryption enabled (software KEK
#               protection): the token's keyslot passphrase is unwrapped
#               with the KEK, PBKDF2 at minimum cost
#   argon2id    a passphrase volume with libcryptsetup's argon2id defaults
#   pbkdf2-min  a passphrase volume with PBKDF2 at 1000 iterations
#   plaintext   no LUKS at all: the floor (connection, handshake, one read)
# Two daemons serve them on unix sockets without TLS (cluster encryption
# allows no plaintext volume, so the kek volume has its own daemon).
#
# Each attach is a first open: the client disconnects and the script waits
# until the daemon has closed the volume before the next (checked with the
# daemon's "opened" log lines).  Prints the median and spread of ROUNDS
# attaches (ARGON_ROUNDS for argon2id, which takes seconds) and the ratio
# kek / plaintext against the target (at most 3).  Exits 0 whatever the
# figures; non-zero only if something could not run.
#
# Usage: bench/attach.sh [BUILD_DIR]
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$SRC_DIR/build}
ROUNDS=${ROUNDS:-40}
ARGON_ROUNDS=${ARGON_ROUNDS:-5}
PYTHON=/usr/bin/python3
CRYPTVOLD=$BUILD_DIR/daemon/cryptvold
CRYPTVOL=$BUILD_DIR/cli/cryptvol
T_KEK=3

die() { echo "attach.sh: $*" >&2; exit 1; }
[ -x "$CRYPTVOLD" ] && [ -x "$CRYPTVOL" ] || die "build cryptvol first ($BUILD_DIR)"
$PYTHON -c 'import nbd' 2>/dev/null || die "python3-libnbd is not installed"

W=$(mktemp -d /dev/shm/cryptvol-attach.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT

# start NAME [options]: a daemon with data in $W/NAME (default KDF).
start() {
    local name=$1 i
    shift
    mkdir -p "$W/$name"
    "$CRYPTVOLD" --foreground --tls off --data-dir "$W/$name/data" \
        --nbd-listen none --nbd-unix "$W/$name/nbd.sock" \
        --admin-socket "$W/$name/admin.sock" "$@" 2> "$W/$name/log" &
    PIDS+=($!)
    for ((i = 0; i < 200; i++)); do
        [ -S "$W/$name/admin.sock" ] && [ -S "$W/$name/nbd.sock" ] && return 0
        sleep 0.05
    done
    cat "$W/$name/log" >&2
    die "cryptvold $name did not start"
}

start kek
start pass
CRYPTVOL_SOCKET=$W/kek/admin.sock "$CRYPTVOL" cluster encryption enable > /dev/null
CRYPTVOL_SOCKET=$W/kek/admin.sock "$CRYPTVOL" volume create kek --size 64M > /dev/null
(umask 077; head -c 24 /dev/urandom | base64 > "$W/pw")
export CRYPTVOL_SOCKET=$W/pass/admin.sock
"$CRYPTVOL" secret create pw --from-file "$W/pw" > /dev/null
echo "attach.sh: formatting the argon2id volume (libcryptsetup's default cost)..." >&2
"$CRYPTVOL" volume create argon2id --size 64M --secret pw > /dev/null
"$CRYPTVOL" volume create pbkdf2-min --size 64M --secret pw \
    --pbkdf pbkdf2 --pbkdf-iterations 1000 > /dev/null
"$CRYPTVOL" volume create plaintext --size 64M --plaintext > /dev/null

# measure SOCKET LOG VOLUME ROUNDS: prints "median min max" in ms.
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
    while closes() == before:       # a first open each time, not a shared one
        if time.time() > deadline:
            sys.exit("volume %s: not closed after the client left" % vol)
        time.sleep(0.002)
print("%.2f %.2f %.2f" % (statistics.median(times), min(times), max(times)))
PY
}

grep -q 'closed' "$W/pass/log" 2>/dev/null || true
printf '%-12s %10s %10s %10s %8s\n' kind "median ms" "min ms" "max ms" "x plain"
declare -A MED
for kind in plaintext kek pbkdf2-min argon2id; do
    dir=pass
    [ "$kind" = kek ] && dir=kek
    rounds=$ROUNDS
    [ "$kind" = argon2id ] && rounds=$ARGON_ROUNDS
    read -r med min max < <(measure "$W/$dir/nbd.sock" "$W/$dir/log" "$kind" "$rounds")
    MED[$kind]=$med
    ratio=$(awk -v a="$med" -v b="${MED[plaintext]}" 'BEGIN { printf "%.2f", a / b }')
    printf '%-12s %10s %10s %10s %8s\n' "$kind" "$med" "$min" "$max" "$ratio"
done
ratio=$(awk -v a="${MED[kek]}" -v b="${MED[plaintext]}" 'BEGIN { printf "%.2f", a / b }')
verdict=$(awk -v r="$ratio" -v t="$T_KEK" 'BEGIN { print (r <= t) ? "PASS" : "MISS" }')
echo "target: cluster-KEK attach at most ${T_KEK}x a plaintext attach: ${ratio}x $verdict"
