#!/usr/bin/env bash
# KEK rotation time: a cluster with encryption enabled (software KEK
# protection) and VOLUMES volumes (default 1000, 1 MiB each), then
# `cryptvol cluster kek rotate`, which returns when every token is
# re-wrapped and the rotation state is NoRotation.  The limit is 10 s.
# Data lives in DIR (default /var/tmp: a disk, as a data dir would be; the
# header writes of a rotation are fsync'ed).  Every volume is then attached
# once to check it still opens (untimed).
#
# Usage: bench/rotate.sh [BUILD_DIR]        (VOLUMES=N DIR=PATH to change)
# Exits 0 whatever the figure; non-zero only if something could not run.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$SRC_DIR/build}
VOLUMES=${VOLUMES:-1000}
DIR=${DIR:-/var/tmp}
PYTHON=/usr/bin/python3
CRYPTVOLD=$BUILD_DIR/daemon/cryptvold
CRYPTVOL=$BUILD_DIR/cli/cryptvol
LIMIT=10

die() { echo "rotate.sh: $*" >&2; exit 1; }
[ -x "$CRYPTVOLD" ] && [ -x "$CRYPTVOL" ] || die "build cryptvol first ($BUILD_DIR)"
$PYTHON -c 'import nbd' 2>/dev/null || die "python3-libnbd is not installed"

W=$(mktemp -d "$DIR/cryptvol-rotate.XXXXXX")
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT

"$CRYPTVOLD" --foreground --tls off --data-dir "$W/data" --nbd-listen none \
    --nbd-unix "$W/nbd.sock" --admin-socket "$W/admin.sock" \
    --log-level warning 2> "$W/log" &
PID=$!
for ((i = 0; i < 200; i++)); do [ -S "$W/admin.sock" ] && break; sleep 0.05; done
[ -S "$W/admin.sock" ] || { cat "$W/log" >&2; die "cryptvold did not start"; }
export CRYPTVOL_SOCKET=$W/admin.sock

"$CRYPTVOL" cluster encryption enable > /dev/null
echo "rotate.sh: creating $VOLUMES volumes in $W..." >&2
t0=$(date +%s.%N)
for ((i = 0; i < VOLUMES; i++)); do
    "$CRYPTVOL" volume create "v$i" --size 1M > /dev/null
done
t1=$(date +%s.%N)
echo "rotate.sh: created in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s" >&2

t0=$(date +%s.%N)
"$CRYPTVOL" cluster kek rotate > /dev/null
t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
"$CRYPTVOL" cluster info --json > "$W/info.json"
state=$($PYTHON -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["rotationState"], d["currentKekGeneration"], d["previousKekGenerations"], d["rotation"]["volumesDone"])' "$W/info.json")
[ "${state% *}" = "NoRotation 2 []" ] || die "unexpected state after the rotation: $state"

$PYTHON - "$W/nbd.sock" "$VOLUMES" <<'PY' || die "a volume does not open after the rotation"
import nbd, sys
sock, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    h = nbd.NBD()
    h.set_export_name("v%d" % i)
    h.connect_unix(sock)
    h.pread(512, 0)
    h.shutdown()
PY

per=$(awk -v s="$secs" -v n="$VOLUMES" 'BEGIN { printf "%.2f", s * 1000 / n }')
verdict=$(awk -v s="$secs" -v l="$LIMIT" -v n="$VOLUMES" 'BEGIN { print (s * 1000 / n <= l) ? "PASS" : "MISS" }')
echo "rotation of $VOLUMES volumes: $secs s ($per ms per volume); all open afterwards"
echo "target: 1000 volumes in at most ${LIMIT} s (${LIMIT} ms per volume): $verdict"
