#!/usr/bin/env bash
# Volume-layer encryption throughput against openssl's single-core AES-XTS.
#
# Usage: bench/crypto.sh [BUILD_DIR [BENCH-CRYPTO OPTIONS...]]
#
# Measures `openssl speed -evp aes-256-xts` (encrypt and -decrypt) on one
# core for buffers of 4 KiB, 16 KiB, 64 KiB and 1 MiB, then runs
# bench-crypto, which times cv_volume_write / cv_volume_read on an in-memory
# LUKS2 and LUKS1 volume, single-threaded and with the worker pool, and
# prints each rate as a ratio to openssl's.  PASS/MISS lines are
# information: the script exits 0 whatever the figures, and non-zero only
# when something actually fails.  See bench/README.md.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$SRC_DIR/build}
[ $# -gt 0 ] && shift
OPENSSL_SECONDS=${OPENSSL_SECONDS:-2}

die() { echo "crypto.sh: $*" >&2; exit 1; }

[ -f "$BUILD_DIR/CMakeCache.txt" ] ||
    die "$BUILD_DIR is not a build directory (cmake -S $SRC_DIR -B $BUILD_DIR)"
command -v openssl >/dev/null || die "openssl is not installed"
# Up to date with the sources; quick when it already is.
out=$(cmake --build "$BUILD_DIR" --target bench-crypto 2>&1) ||
    die "cmake --build $BUILD_DIR --target bench-crypto failed:"$'\n'"$out"
BENCH=$BUILD_DIR/bench/bench-crypto
[ -x "$BENCH" ] || die "$BENCH was not built"

# openssl's rate in bytes per second: the -mr line "+F:N:ALG:RATE".
openssl_rate() {
    local bytes=$1 out rate
    shift
    out=$(openssl speed -mr "$@" -evp aes-256-xts -seconds "$OPENSSL_SECONDS" \
          -bytes "$bytes" 2>&1) ||
        die "openssl speed $* -evp aes-256-xts -bytes $bytes failed: $out"
    rate=$(awk -F: '/^\+F:/ { print $4; exit }' <<< "$out")
    [[ $rate =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
        die "no rate in the output of openssl speed -mr: $out"
    echo "$rate"
}

echo "$(openssl version): measuring the single-core AES-256-XTS reference" \
     "(${OPENSSL_SECONDS} s per figure)..."
refs=()
for n in 4096 16384 65536 1048576; do
    refs+=(--openssl-enc "$n=$(openssl_rate "$n")")
    refs+=(--openssl-dec "$n=$(openssl_rate "$n" -decrypt)")
done
echo

"$BENCH" "${refs[@]}" "$@"
