#!/usr/bin/env bash
# Builds cryptvol and runs every test (cmocka unit tests and the shell tests
# that drive cryptsetup, qemu-img, nbdkit and libnbd).
#   scripts/test.sh              release build in build/, then the mutants
#                                marked for CI (scripts/mutants.sh --ci)
#   scripts/test.sh --sanitize   AddressSanitizer + UBSan build in build-asan/
# Both with -DCRYPTVOL_WERROR=ON: a warning fails the build here.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  bash scripts/install-deps.sh
fi

dir=build
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRYPTVOL_WERROR=ON)
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  flags=(-DCMAKE_BUILD_TYPE=Debug -DCRYPTVOL_SANITIZE=ON -DCRYPTVOL_WERROR=ON)
  # Leaks are errors; a UBSan report aborts the test that caused it.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
(cd "$dir" && ctest --output-on-failure -j"$(nproc)")
# The suite must also fail when a promise is broken: the mutants marked
# "ci: yes" (docs/testing.md, "Mutants").  Once, not again under ASan: a
# mutant is killed or not whatever the build.
if [ "$dir" = build ]; then
  scripts/mutants.sh --ci
fi
