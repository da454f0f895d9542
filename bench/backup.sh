#!/usr/bin/env bash
# Backup and restore against `cp --sparse=always` of the same volume files
# to the same target (issue 14).
#
# Usage: bench/backup.sh [BUILD_DIR]
#
# A volume of SIZE_MIB MiB (default 1024) is written full of random data
# through NBD (untimed).  Then, REPEAT times (default 3, the best kept),
# in turn:
#   copy      `cp -r --sparse=always` of the volume's chain directory (its
#             header and layer files) into a directory on the target's file
#             system, then `sync -f` there (a backup is durable when it
#             ends, so the copy must be too): the copy limit;
#   backup    `cryptvol backup create VOL`, a full backup (every earlier
#             backup and its blocks deleted first);
#   restore   `cryptvol backup restore ID NEW`, read back over NBD and
#             compared (untimed) with what was written.
# Backup and restore are timed by their job's own elapsedMs (volume info
# --json; the CLI's wall time, which adds its polling of the job, is
# printed beside it).  Ratios: rate / copy rate, target >= 0.7 each.
#
# Then, REPEAT times, CHANGE_PCT % (default 1) of the volume's 1 MiB backup
# blocks are rewritten with new random data, at offsets spread over the
# volume (other ones each round), and an incremental backup is taken: the
# best time / the full backup's (target < 5 %), its base (the backup before
# it) checked and its bytesNew printed (about the changed MiB); each is
# restored and compared too (untimed).
#
# The data directory is on tmpfs (/dev/shm, or one mounted for the run), so
# the volume's reads cost the same for the copy and the backup; the target
# is BACKUP_DIR (default a new directory under /var/tmp, on disk: a target
# is a disk or an NFS mount, not memory); BACKUP_DIR=/dev/shm/x measures
# the CPU alone.  Prints figures, ratios and PASS/MISS; exits non-zero only
# when something could not run or data read back wrong.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$SRC_DIR/build}
SIZE_MIB=${SIZE_MIB:-1024}
REPEAT=${REPEAT:-3}
CHANGE_PCT=${CHANGE_PCT:-1}
PYTHON=${PYTHON:-/usr/bin/python3}
T_RATE=0.7          # backup and restore at least 0.7 of the copy's rate
T_INCR=5            # an incremental after 1 % changed: under 5 % of a full

die() { echo "backup.sh: $*" >&2; exit 1; }
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "SIZE_MIB must be a number of MiB"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a number"
[[ $CHANGE_PCT =~ ^[1-9][0-9]?$ ]] || die "CHANGE_PCT must be 1 to 99"
for tool in nbdcopy sha256sum awk; do
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
NBDIO=$SRC_DIR/tests/tools/nbd-io.py

# --- scratch space: the data dir on tmpfs, the target on BACKUP_DIR ----------
# The data dir holds the volume and two restores at a time.
need_kib=$(( (SIZE_MIB * 3 + 512) * 1024 ))
T=$(mktemp -d "${TMPDIR:-/tmp}/cryptvol-bench.XXXXXX")
MOUNTED= W= DPID= B=
cleanup() {
    local rc=$?
    if [ -n "$DPID" ]; then kill "$DPID" 2> /dev/null || true; wait "$DPID" 2> /dev/null || true; fi
    [ -n "$W" ] && [ "$W" != "$T/tmpfs" ] && rm -rf "$W"
    [ -n "$MOUNTED" ] && { umount "$T/tmpfs" || echo "backup.sh: could not unmount $T/tmpfs" >&2; }
    [ -n "$B" ] && rm -rf "$B"
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
base_dir=${BACKUP_DIR:-/var/tmp}
mkdir -p "$base_dir" || die "cannot make $base_dir"
# Two full copies at most: the copy and one full backup (deleted in turn).
[ "$(avail_kib "$base_dir")" -ge $(( (SIZE_MIB * 2 + 512) * 1024 )) ] ||
    die "$base_dir has less than $((SIZE_MIB * 2 + 512)) MiB free"
B=$(mktemp -d "$base_dir/cryptvol-bench-target.XXXXXX")
TARGET=$B/target COPY=$B/copy
mkdir "$TARGET"

SOCK=$W/nbd.sock
export CRYPTVOL_SOCKET=$W/admin.sock
"$CRYPTVOLD" --foreground --data-dir "$W/data" --nbd-listen none --nbd-unix "$SOCK" \
    --admin-socket "$CRYPTVOL_SOCKET" --tls off --pbkdf pbkdf2 --pbkdf-iterations 1000 \
    --backup-target "$TARGET" > "$T/cryptvold.log" 2>&1 < /dev/null &
DPID=$!
for ((i = 0; i < 200; i++)); do
    [ -S "$SOCK" ] && [ -S "$CRYPTVOL_SOCKET" ] && break
    kill -0 "$DPID" 2> /dev/null || die "cryptvold exited at start: $(tail -n 20 "$T/cryptvold.log")"
    sleep 0.05
done
[ -S "$CRYPTVOL_SOCKET" ] || die "cryptvold did not start: $(tail -n 20 "$T/cryptvold.log")"

now_ns() { date +%s%N; }
cli() { "$CRYPTVOL" "$@" > "$T/cli.out" 2>&1 || die "cryptvol $*: $(cat "$T/cli.out")"; }
# timed_ms CMD...: runs it (output in $T/cmd.out), prints its wall time in ms.
timed_ms() {
    local t0
    t0=$(now_ns)
    "$@" > "$T/cmd.out" 2>&1 || die "$*: $(tail -n 5 "$T/cmd.out")"
    echo $(( ($(now_ns) - t0) / 1000000 ))
}
# json FILE EXPR: a member of the JSON in FILE (EXPR on d, in Python).
json() { "$PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# The last job's own time on volume VOL, if it was of kind KIND.
job_ms() {
    "$CRYPTVOL" volume info "$1" --json > "$T/info.json" || die "volume info $1"
    local kind
    kind=$(json "$T/info.json" '(d.get("job") or {}).get("kind", "")')
    [ "$kind" = "$2" ] || die "volume $1: its last job is \"$kind\", not $2"
    json "$T/info.json" 'd["job"]["elapsedMs"]'
}
rate() { awk -v m="$SIZE_MIB" -v ms="$1" 'BEGIN { printf "%.0f", m / (ms > 0 ? ms / 1000 : 0.001) }'; }
best() { tr ' ' '\n' | awk 'NF' | sort -n | head -n 1; }
sum_of() { "$PYTHON" "$NBDIO" sum "$SOCK" "$1" || die "reading $1 over NBD"; }

echo "Backup and restore vs cp --sparse=always: $SIZE_MIB MiB, best of $REPEAT"
echo "data dir on tmpfs ($W); target on $(stat -f -c %T "$B") ($B)"
echo "$(nproc) CPU(s) ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)"
grep -qw sha_ni /proc/cpuinfo && echo "SHA extensions: yes" || echo "SHA extensions: no (SHA-256 in software)"
echo

(umask 077; printf '%s' "backup bench secret" > "$T/s")
cli secret create s --from-file "$T/s"
cli volume create v --size "${SIZE_MIB}M" --secret s
head -c $((SIZE_MIB << 20)) /dev/urandom > "$W/in.raw"
nbdcopy "$W/in.raw" "nbd+unix:///v?socket=$SOCK" || die "filling the volume"
want=$(sha256sum < "$W/in.raw" | cut -d' ' -f1)
rm -f "$W/in.raw"
cli volume info v --json
chain=$(json "$T/cli.out" 'd["path"]')
[ -d "$chain" ] || die "volume v: its chain $chain is not a directory"
echo "volume v: $(du -sm --apparent-size "$chain" | cut -f1) MiB of files in $chain"

copy_ms=() full_ms=() full_wall=() rest_ms=() rest_wall=()
full_id=
for ((r = 0; r < REPEAT; r++)); do
    rm -rf "$COPY"
    sync -f "$B"
    # sync of the copy's files and directory alone (sync -f would also
    # write out whatever else the file system has dirty).
    copy_ms+=("$(timed_ms sh -c 'cp -r --sparse=always "$1" "$2" && find "$2" -print0 | xargs -0 sync --' sh "$chain" "$COPY")")
    rm -rf "$COPY"
    sync -f "$B"

    # A full backup each round: the one before is deleted with its blocks.
    if [ -n "$full_id" ]; then
        cli backup delete "$full_id"
        sync -f "$B"
    fi
    full_wall+=("$(timed_ms "$CRYPTVOL" backup create v --json)")
    cp "$T/cmd.out" "$T/full.json"
    full_id=$(json "$T/full.json" 'd["id"]')
    [ "$(json "$T/full.json" 'd["state"]')" = Completed ] || die "backup $full_id: $(cat "$T/full.json")"
    [ "$(json "$T/full.json" 'd["base"]')" = None ] || die "backup $full_id is not full: $(cat "$T/full.json")"
    full_ms+=("$(job_ms v backup)")

    rest_wall+=("$(timed_ms "$CRYPTVOL" backup restore "$full_id" "r$r")")
    rest_ms+=("$(job_ms "r$r" restore)")
    [ "$(sum_of "r$r")" = "$want" ] || die "the restore of $full_id reads other bytes than were written"
    cli volume delete "r$r"
done
copy_best=$(best <<< "${copy_ms[*]}")
full_best=$(best <<< "${full_ms[*]}")
rest_best=$(best <<< "${rest_ms[*]}")

# --- 1 % of the blocks changed, an incremental, REPEAT times -------------
# Each round rewrites other blocks and backs up incrementally to the
# backup before it; each is restored and compared (untimed).
nblocks=$SIZE_MIB
nchange=$(( (nblocks * CHANGE_PCT + 99) / 100 ))
step=$(( nblocks / nchange ))
incr_ms=() incr_wall=() base_id=$full_id
for ((r = 0; r < REPEAT; r++)); do
    for ((k = 0; k < nchange; k++)); do
        head -c $((1 << 20)) /dev/urandom > "$T/blk"
        "$PYTHON" "$NBDIO" write "$SOCK" v $(( (k * step + (step / 2 + r) % step) << 20 )) "$T/blk" ||
            die "writing block $k over NBD"
    done
    rm -f "$T/blk"
    want2=$(sum_of v)
    incr_wall+=("$(timed_ms "$CRYPTVOL" backup create v --json)")
    cp "$T/cmd.out" "$T/incr.json"
    incr_ms+=("$(job_ms v backup)")
    incr_id=$(json "$T/incr.json" 'd["id"]')
    [ "$(json "$T/incr.json" 'd["base"]')" = "$base_id" ] ||
        die "backup $incr_id is not incremental to $base_id: $(cat "$T/incr.json")"
    incr_new=$(json "$T/incr.json" 'd["bytesNew"]')
    cli backup restore "$incr_id" ri
    [ "$(sum_of ri)" = "$want2" ] || die "the restore of incremental $incr_id reads other bytes than the volume"
    cli volume delete ri
    base_id=$incr_id
done
incr_best=$(best <<< "${incr_ms[*]}")
incr_wall_best=$(best <<< "${incr_wall[*]}")

verdict() { awk -v a="$1" -v b="$2" -v op="$3" 'BEGIN { ok = op == ">=" ? a >= b : a < b; print ok ? "PASS" : "MISS" }'; }
x_full=$(awk -v c="$copy_best" -v f="$full_best" 'BEGIN { printf "%.2f", c / f }')
x_rest=$(awk -v c="$copy_best" -v f="$rest_best" 'BEGIN { printf "%.2f", c / f }')
x_incr=$(awk -v i="$incr_best" -v f="$full_best" 'BEGIN { printf "%.1f", 100 * i / f }')
x_incr_wall=$(awk -v i="$incr_wall_best" -v f="$(best <<< "${full_wall[*]}")" 'BEGIN { printf "%.1f", 100 * i / f }')

printf '  %-34s %9s %8s %7s   %s\n' "" "ms" "MiB/s" "ratio" "(each run, ms)"
printf '  %-34s %9s %8s %7s   (%s)\n' "cp --sparse=always + sync (limit)" "$copy_best" "$(rate "$copy_best")" 1.00 "${copy_ms[*]}"
printf '  %-34s %9s %8s %7s   (%s; the CLI waiting: %s)\n' "backup create, full" "$full_best" "$(rate "$full_best")" "$x_full" "${full_ms[*]}" "${full_wall[*]}"
printf '  %-34s %9s %8s %7s   (%s; the CLI waiting: %s)\n' "backup restore" "$rest_best" "$(rate "$rest_best")" "$x_rest" "${rest_ms[*]}" "${rest_wall[*]}"
printf '  %-34s %9s %8s %6s%%   (%s; the CLI waiting: %s, best %s%% of the full)\n' "backup create, $CHANGE_PCT% changed" "$incr_best" "" "$x_incr" "${incr_ms[*]}" "${incr_wall[*]}" "$x_incr_wall"
echo "  incremental: $nchange of $nblocks blocks rewritten each round; the last stored $(( incr_new >> 20 )) MiB new ($incr_new bytes)"
echo "  every restore read back over NBD: identical to what was written"
echo "  target: backup >= $T_RATE of the copy: $x_full $(verdict "$x_full" "$T_RATE" ">=");" \
     "restore >= $T_RATE: $x_rest $(verdict "$x_rest" "$T_RATE" ">=");" \
     "incremental < $T_INCR% of full: $x_incr% $(verdict "$x_incr" "$T_INCR" "<")"
