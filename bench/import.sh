#!/usr/bin/env bash
# cryptvol image import/export against qemu-img convert, on tmpfs.
#
# Usage: bench/import.sh [BUILD_DIR]
#
# Imports the same random file (1 GiB; SIZE_MIB=N for another size) into a
# LUKS1 and a LUKS2 image with `cryptvol image import` and exports it back
# with `cryptvol image export`, then does the same with qemu-img's luks
# driver (LUKS1 only: that is all qemu-img writes).  Each is run REPEAT
# times (default 3), in turn, and the best rate counts.  Only the data
# movement is timed: making the random file and creating and formatting the
# images (key derivation) are done beforehand; each run starts from a fresh
# copy of a formatted, empty image.  Every export is compared with the input
# (cmp), so a broken fast path cannot show up as a good figure.  PASS/MISS
# lines are information: the script exits 0 whatever the figures, and
# non-zero only when something actually fails.
#
# Everything lives on tmpfs, so the figures are CPU and memory bound, not
# disk bound: /dev/shm when it is a tmpfs with room, or a tmpfs mounted for
# the run under a temporary directory (needs root), unmounted on exit.
# Peak use is about 3 times SIZE_MIB.  See bench/README.md.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$SRC_DIR/build}
SIZE_MIB=${SIZE_MIB:-1024}
REPEAT=${REPEAT:-3}
TARGET=8            # cryptvol at least 8 times qemu-img's rate

die() { echo "import.sh: $*" >&2; exit 1; }

[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "SIZE_MIB must be a number of MiB"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a number of runs"
[ -f "$BUILD_DIR/CMakeCache.txt" ] ||
    die "$BUILD_DIR is not a build directory (cmake -S $SRC_DIR -B $BUILD_DIR)"
for tool in qemu-img cmp awk; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
out=$(cmake --build "$BUILD_DIR" --target cryptvol-cli 2>&1) ||
    die "cmake --build $BUILD_DIR --target cryptvol-cli failed:"$'\n'"$out"
CRYPTVOL=$BUILD_DIR/cli/cryptvol
[ -x "$CRYPTVOL" ] || die "$CRYPTVOL was not built"

# --- scratch space on tmpfs --------------------------------------------------
need_kib=$(( (SIZE_MIB * 3 + 256) * 1024 ))
T=$(mktemp -d "${TMPDIR:-/tmp}/cryptvol-bench.XXXXXX")
MOUNTED=
cleanup() {
    local rc=$?
    [ -n "${W:-}" ] && [ "$W" != "$T/tmpfs" ] && rm -rf "$W"
    if [ -n "$MOUNTED" ]; then
        umount "$T/tmpfs" || echo "import.sh: could not unmount $T/tmpfs" >&2
    fi
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

is_tmpfs() { [ "$(stat -f -c %T "$1" 2>/dev/null)" = tmpfs ]; }
avail_kib() { df -Pk "$1" | awk 'NR == 2 { print $4 }'; }

if is_tmpfs /dev/shm && [ "$(avail_kib /dev/shm)" -ge "$need_kib" ]; then
    W=$(mktemp -d /dev/shm/cryptvol-bench.XXXXXX)
else
    [ "$(id -u)" -eq 0 ] ||
        die "/dev/shm is not a tmpfs with $((need_kib / 1024)) MiB free, and mounting one needs root"
    mkdir "$T/tmpfs"
    mount -t tmpfs -o "size=${need_kib}k,mode=0700" tmpfs "$T/tmpfs" ||
        die "mounting a tmpfs on $T/tmpfs failed"
    MOUNTED=1
    W=$T/tmpfs
fi

# --- helpers -------------------------------------------------------------------
now_ns() { date +%s%N; }
# Runs a command, its output kept in $T/cmd.out, and sets ELAPSED to its
# wall-clock time in seconds.  try_timed returns the command's status;
# timed fails the benchmark with the command's output.
try_timed() {
    local t0 t1
    t0=$(now_ns)
    "$@" > "$T/cmd.out" 2>&1 < /dev/null || return
    t1=$(now_ns)
    ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
}
timed() {
    try_timed "$@" || die "failed: $*"$'\n'"$(cat "$T/cmd.out")"
}
mibps() { awk -v s="$1" -v n="$SIZE_MIB" 'BEGIN { printf "%.1f", n / s }'; }
same() { cmp "$1" "$2" > "$T/cmp.out" 2>&1 ||
    die "$3: exported data differs from the input: $(cat "$T/cmp.out")"; }
# qemu's PBKDF benchmark fails now and then in a VM with "Unable to get
# accurate CPU usage" (it measures its thread's CPU time): retry that.
qemu_format() {
    local _
    for _ in 1 2 3 4 5; do
        rm -f "$QIMG"
        try_timed qemu-img create "${QSECRET[@]}" -f luks \
            -o key-secret=sec0,iter-time=10 "$QIMG" "${SIZE_MIB}M" && return 0
        grep -q "accurate CPU usage" "$T/cmd.out" || break
    done
    die "qemu-img create -f luks failed:"$'\n'"$(cat "$T/cmd.out")"
}

IN=$W/input.raw
PASS=$W/passphrase
OUT=$W/export.raw
QSECRET=(--object "secret,id=sec0,file=$PASS")
(umask 077; printf '%s' "bench-import passphrase" > "$PASS")

echo "cryptvol image import/export vs qemu-img convert: $SIZE_MIB MiB of random data on tmpfs ($W)"
echo "$("$CRYPTVOL" --version), $(qemu-img --version | head -n 1), $(nproc) CPU(s)"
echo "MiB/s = 2^20 bytes per second; data movement only (the key derivation is timed apart)"
echo

t0=$(now_ns)
head -c "${SIZE_MIB}M" /dev/urandom > "$IN"
[ "$(stat -c %s "$IN")" -eq $((SIZE_MIB * 1024 * 1024)) ] || die "short input file"
echo "input: $SIZE_MIB MiB from /dev/urandom in $(awk -v a="$t0" -v b="$(now_ns)" \
    'BEGIN { printf "%.1f", (b - a) / 1e9 }') s (not timed)"

# In a VM, memory the guest has never touched is slow to hand out the first
# time (the host backs it on demand): whichever tool ran first would pay for
# it.  Fill and free the scratch space once so every run finds it warm.
t0=$(now_ns)
dd if=/dev/zero of="$W/warmup" bs=4M count=$((SIZE_MIB * 2 / 4 + 8)) status=none ||
    die "warming up $W failed"
rm -f "$W/warmup"
echo "warm-up: wrote and freed $((SIZE_MIB * 2 + 32)) MiB of scratch space in" \
     "$(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }') s (not timed)"

declare -A RATES FORMAT CTMPL

# Formatted, empty images to start every run from: creating and formatting
# (key derivation) is timed here, apart from the data movement.
QTMPL=$W/template-qemu-luks1.img
for type in luks1 luks2; do
    CTMPL[$type]=$W/template-cryptvol-$type.img
    "$CRYPTVOL" image create "${CTMPL[$type]}" --size "$((SIZE_MIB + 16))M" ||
        die "cryptvol image create failed"
    timed "$CRYPTVOL" image format "${CTMPL[$type]}" --type "$type" \
        --passphrase-file "$PASS" --pbkdf pbkdf2 --pbkdf-iterations 1000
    FORMAT[cryptvol-$type]=$ELAPSED
done
QIMG=$QTMPL
qemu_format
FORMAT[qemu-luks1]=$ELAPSED

# Records one run: rate KEY SECONDS
rate() { RATES[$1]+="$(mibps "$2") "; }

# cryptvol: import into a fresh copy of the formatted image, export to a
# new file, compare.  Export takes --length: the LUKS1 data area is a little
# larger than the input.
run_cryptvol() {
    local type=$1 img=$W/cryptvol-$1.img
    cp --sparse=always "${CTMPL[$type]}" "$img"
    timed "$CRYPTVOL" image import "$IN" "$img" --passphrase-file "$PASS"
    rate "cryptvol-$type-import" "$ELAPSED"
    timed "$CRYPTVOL" image export "$img" "$OUT" --passphrase-file "$PASS" \
        --length "${SIZE_MIB}M"
    rate "cryptvol-$type-export" "$ELAPSED"
    same "$IN" "$OUT" "cryptvol $type"
    rm -f "$img" "$OUT"
}

# qemu-img: the luks driver writes LUKS1 only.  `convert -n` into the image
# `qemu-img create` formatted is the data path of `qemu-img convert -O luks`
# without the format (whose PBKDF benchmark alone takes a second or more,
# whatever iter-time says).
run_qemu() {
    local img=$W/qemu-luks1.img
    cp --sparse=always "$QTMPL" "$img"
    timed qemu-img convert -n "${QSECRET[@]}" -f raw "$IN" \
        --target-image-opts "driver=luks,key-secret=sec0,file.filename=$img"
    rate qemu-luks1-import "$ELAPSED"
    timed qemu-img convert "${QSECRET[@]}" \
        --image-opts "driver=luks,key-secret=sec0,file.filename=$img" -O raw "$OUT"
    rate qemu-luks1-export "$ELAPSED"
    same "$IN" "$OUT" "qemu-img luks"
    rm -f "$img" "$OUT"
}

# Rounds in turn, so a change in the machine's speed hits every tool alike.
for ((rep = 1; rep <= REPEAT; rep++)); do
    run_cryptvol luks1
    run_cryptvol luks2
    run_qemu
done

echo "format (not timed below): cryptvol luks1 ${FORMAT[cryptvol-luks1]} s," \
     "luks2 ${FORMAT[cryptvol-luks2]} s (pbkdf2, 1000 iterations);" \
     "qemu-img create ${FORMAT[qemu-luks1]} s (iter-time=10)"
echo "$REPEAT run(s) of each; every export compared with the input: identical"
echo

best() { tr ' ' '\n' <<< "$1" | awk 'NF && ($1 > m || m == "") { m = $1 } END { print m }'; }
runs() { tr ' ' '\n' <<< "$1" | awk 'NF { printf "%s%s", s, $1; s = " " }'; }

row() { printf '%-9s %-6s %-7s %9s  %7s  %-6s %-6s %s\n' "$@"; }
row tool image op MiB/s "x qemu" target result "(each run, MiB/s)"
npass=0 nmiss=0
for op in import export; do
    q=$(best "${RATES[qemu-luks1-$op]}")
    row qemu-img luks1 "$op" "$q" 1.00 - "" "($(runs "${RATES[qemu-luks1-$op]}"))"
    for type in luks1 luks2; do
        r=$(best "${RATES[cryptvol-$type-$op]}")
        x=$(awk -v r="$r" -v q="$q" 'BEGIN { printf "%.2f", r / q }')
        if awk -v x="$x" -v t="$TARGET" 'BEGIN { exit !(x >= t) }'; then
            res=PASS npass=$((npass + 1))
        else
            res=MISS nmiss=$((nmiss + 1))
        fi
        row cryptvol "$type" "$op" "$r" "$x" ">= $TARGET" "$res" \
            "($(runs "${RATES[cryptvol-$type-$op]}"))"
    done
done
echo
echo "MiB/s: the best of the runs; x qemu = cryptvol's rate / qemu-img's LUKS1"
echo "rate in the same direction (qemu-img has no LUKS2)"
echo "targets: $npass PASS, $nmiss MISS"
