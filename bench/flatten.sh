#!/usr/bin/env bash
# Flatten against `cryptvol image export` of the same data (issue 10).
#
# Usage: bench/flatten.sh [BUILD_DIR]
#
# A parent volume of SIZE_MIB MiB (default 512) is filled from a random
# file through NBD (untimed) and snapshotted; two clones of the snapshot
# are flattened, each timed by the job's own elapsedMs (the CLI's wall
# time, printed beside it, adds its polling) (the CLI waits for
# the job):
#   same format   `volume clone P@s C` (the parent's key: blocks can move
#                 as they are)
#   own format    `volume clone P@s C --secret S2` (every block decrypted
#                 with the parent's key, encrypted with the clone's)
# The reference is the same bytes through the cipher once: the snapshot is
# exported as a raw LUKS image (`volume export --snapshot`, its time
# printed too), and `cryptvol image export IMAGE OUT` decrypts it to a
# file, timed, REPEAT times (default 3, the best kept; flattens likewise,
# each on a fresh clone).  Each flattened clone must read the parent's
# bytes over NBD (untimed).
#
# Ratios: flatten rate / image export rate.  Targets: same format >= 1.0
# (no more cipher work than the export); own format >= 0.5 (twice the
# cipher work).  The data dir and files are on tmpfs.  Prints figures,
# ratios and PASS/MISS; exits non-zero only when something could not run.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$SRC_DIR/build}
SIZE_MIB=${SIZE_MIB:-512}
REPEAT=${REPEAT:-3}
PYTHON=${PYTHON:-/usr/bin/python3}
T_SAME=1.0
T_OWN=0.5

die() { echo "flatten.sh: $*" >&2; exit 1; }
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "SIZE_MIB must be a number of MiB"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a number"
command -v nbdcopy > /dev/null || die "nbdcopy is not installed"
CRYPTVOLD=$BUILD_DIR/daemon/cryptvold
CRYPTVOL=${CRYPTVOL:-$BUILD_DIR/cli/cryptvol}     # CRYPTVOL=... for another CLI
if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
    out=$(cmake --build "$BUILD_DIR" --target cryptvol-cli --target cryptvold 2>&1) ||
        die "cmake --build $BUILD_DIR failed:"$'\n'"$out"
fi
[ -x "$CRYPTVOLD" ] && [ -x "$CRYPTVOL" ] || die "no cryptvold and cryptvol in $BUILD_DIR"

need_kib=$(( (SIZE_MIB * 6 + 256) * 1024 ))
T=$(mktemp -d "${TMPDIR:-/tmp}/cryptvol-bench.XXXXXX")
MOUNTED= W= DPID=
cleanup() {
    local rc=$?
    if [ -n "$DPID" ]; then kill "$DPID" 2> /dev/null || true; wait "$DPID" 2> /dev/null || true; fi
    [ -n "$W" ] && [ "$W" != "$T/tmpfs" ] && rm -rf "$W"
    [ -n "$MOUNTED" ] && { umount "$T/tmpfs" || echo "flatten.sh: could not unmount $T/tmpfs" >&2; }
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

SOCK=$W/nbd.sock
export CRYPTVOL_SOCKET=$W/admin.sock
"$CRYPTVOLD" --foreground --data-dir "$W/data" --nbd-listen none --nbd-unix "$SOCK" \
    --admin-socket "$CRYPTVOL_SOCKET" --tls off --pbkdf pbkdf2 --pbkdf-iterations 1000 \
    > "$T/cryptvold.log" 2>&1 < /dev/null &
DPID=$!
for ((i = 0; i < 200; i++)); do
    [ -S "$SOCK" ] && [ -S "$CRYPTVOL_SOCKET" ] && break
    kill -0 "$DPID" 2> /dev/null || die "cryptvold exited at start: $(tail -n 20 "$T/cryptvold.log")"
    sleep 0.05
done
uri() { echo "nbd+unix:///$1?socket=$SOCK"; }
now_ns() { date +%s%N; }
cli() { "$CRYPTVOL" "$@" > "$T/cli.out" 2>&1 || die "cryptvol $*: $(cat "$T/cli.out")"; }
# timed_ms CMD...: runs it, prints its wall time in ms.
timed_ms() {
    local t0
    t0=$(now_ns)
    "$@" > "$T/cmd.out" 2>&1 || die "$*: $(tail -n 5 "$T/cmd.out")"
    echo $(( ($(now_ns) - t0) / 1000000 ))
}
rate() { awk -v m="$SIZE_MIB" -v ms="$1" 'BEGIN { printf "%.0f", m / (ms / 1000) }'; }
best() { tr ' ' '\n' | sort -n | head -n 1; }
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? "PASS" : "MISS" }'; }

echo "Flatten vs cryptvol image export: $SIZE_MIB MiB on tmpfs ($W), best of $REPEAT"
echo "$(nproc) CPU(s) ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)"
echo

(umask 077; printf '%s' "flatten parent" > "$T/sp"; printf '%s' "flatten clone" > "$T/sc")
cli secret create sp --from-file "$T/sp"
cli secret create sc --from-file "$T/sc"
cli volume create p --size "${SIZE_MIB}M" --secret sp
head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/in.raw"
nbdcopy "$W/in.raw" "$(uri p)" || die "filling the parent"
cli snapshot create p@s
want=$(sha256sum < "$W/in.raw" | cut -d' ' -f1)
rm -f "$W/in.raw"

export_ms=$(timed_ms "$CRYPTVOL" volume export p "$W/p.img" --snapshot s)
img_ms=()
for ((r = 0; r < REPEAT; r++)); do
    rm -f "$W/out.raw"
    img_ms+=("$(timed_ms "$CRYPTVOL" image export "$W/p.img" "$W/out.raw" --passphrase-file "$T/sp")")
done
[ "$(sha256sum < "$W/out.raw" | cut -d' ' -f1)" = "$want" ] || die "image export of the exported snapshot reads other bytes"
rm -f "$W/out.raw" "$W/p.img"
img_best=$(best <<< "${img_ms[*]}")

declare -A MS WALL
for kind in same own; do
    ms=()
    wall=()
    for ((r = 0; r < REPEAT; r++)); do
        c="c-$kind-$r"
        if [ "$kind" = same ]; then cli volume clone p@s "$c"; else cli volume clone p@s "$c" --secret sc; fi
        wall+=("$(timed_ms "$CRYPTVOL" volume flatten "$c")")
        # The copy's own time, as the daemon measured it: the CLI's wall
        # time also holds its polling (20 ms backing off to 200 ms).
        ms+=("$("$CRYPTVOL" volume info "$c" --json | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["job"]["elapsedMs"])')")
        [ "$("$PYTHON" "$SRC_DIR/tests/tools/nbd-io.py" sum "$SOCK" "$c")" = "$want" ] ||
            die "the flattened $kind-format clone reads other bytes than its parent"
        # The copy was made: the clone's own files hold the data now.
        alloc=$("$CRYPTVOL" volume info "$c" --json | "$PYTHON" -c 'import json, sys; d = json.load(sys.stdin); print(d["allocated"], d.get("parent"))')
        [ "${alloc% *}" -ge $((SIZE_MIB << 20)) ] && [ "${alloc#* }" = None ] ||
            die "the flattened $kind-format clone has (allocated, parent) $alloc: not copied"
        cli volume delete "$c"
    done
    MS[$kind]=$(best <<< "${ms[*]}")
    WALL[$kind]=$(best <<< "${wall[*]}")
done

printf '  %-36s %9s %8s %7s\n' "" "ms" "MiB/s" "ratio"
printf '  %-36s %9s %8s %7s\n' "cryptvol image export (reference)" "$img_best" "$(rate "$img_best")" 1.00
for kind in same own; do
    r=$(awk -v a="${MS[$kind]}" -v b="$img_best" 'BEGIN { printf "%.2f", b / a }')
    printf '  %-36s %9s %8s %7s   (the CLI waiting: %s ms)\n' "volume flatten, $kind format" "${MS[$kind]}" "$(rate "${MS[$kind]}")" "$r" "${WALL[$kind]}"
    eval "R_$kind=$r"
done
echo "  (volume export --snapshot of the same data, raw LUKS out: $export_ms ms, $(rate "$export_ms") MiB/s)"
echo "  target: same format >= $T_SAME: $R_same $(verdict "$R_same" "$T_SAME");" \
     "own format >= $T_OWN: $R_own $(verdict "$R_own" "$T_OWN")"
