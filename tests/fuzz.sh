#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/) with clang in a build directory of
# their own and runs each for a bounded time (FUZZ_SECONDS, default 30)
# from a seed corpus of well-formed handshakes and requests.  They drive
# the daemon's real NBD server (fuzz/fuzz-server.c), so a crash, a leak, a
# sanitizer report or a malloc above the limit there fails the test.
# fuzz-repl-proto: the replication protocol's decoders, seeded with one
# payload of each type.  Skips without clang.
# docs/fuzzing.md: longer runs and keeping a corpus.
source "$(dirname "$0")/lib.sh"

command -v clang > /dev/null || skip "clang is not installed"
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_BUILD=${FUZZ_BUILD:-${BUILD_DIR:-$SRC_DIR/build}/fuzz-build}

CC=clang cmake -S "$SRC_DIR" -B "$FUZZ_BUILD" -DCRYPTVOL_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$T/cmake.log" 2>&1 ||
    { cat "$T/cmake.log"; fail "configuring the fuzz build"; }
cmake --build "$FUZZ_BUILD" --target fuzz-nbd-options fuzz-nbd-requests fuzz-repl-proto \
    -j2 > "$T/build.log" 2>&1 || { tail -30 "$T/build.log"; fail "building the fuzzers"; }

"$PYTHON" "$SRC_DIR/fuzz/seeds.py" "$T/seeds"

for f in fuzz-nbd-options fuzz-nbd-requests fuzz-repl-proto; do
    mkdir -p "$T/corpus-$f"
    if ! TMPDIR=$T "$FUZZ_BUILD/fuzz/$f" -max_total_time="$FUZZ_SECONDS" \
            -max_len=70000 -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$T/" "$T/corpus-$f" "$T/seeds/$f" \
            > "$T/$f.log" 2>&1; then
        tail -40 "$T/$f.log"
        ls "$T"/crash-* "$T"/leak-* "$T"/timeout-* "$T"/oom-* 2>/dev/null || true
        fail "$f found a problem"
    fi
    ok "$f: $(grep -Eo '#[0-9]+' "$T/$f.log" | tail -1 | tr -d '#') runs in ${FUZZ_SECONDS}s, no findings"
done
