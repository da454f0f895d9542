#!/usr/bin/env bash
# The layout by subsystem holds (docs/layout.md): every source file under
# lib/, daemon/ and cli/ is listed by its folder's CMakeLists.txt, every
# test by tests/CMakeLists.txt, a header ending
# in -internal.h is included only from its own folder, and the library never
# includes the daemon's headers.
set -euo pipefail
src=${SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$src"
fail=0

for c in $(find lib daemon cli -name '*.c' | sort); do
    dir=$(dirname "$c") base=$(basename "$c")
    rel=$base
    # daemon/meta/sqlite/*.c are listed by daemon/meta/CMakeLists.txt.
    while [ ! -f "$dir/CMakeLists.txt" ]; do
        rel=$(basename "$dir")/$rel dir=$(dirname "$dir")
    done
    if ! grep -Eq "(^|[[:space:](])$rel([[:space:])]|$)" "$dir/CMakeLists.txt"; then
        echo "layout: $c is not listed in $dir/CMakeLists.txt" >&2
        fail=1
    fi
done

# Tests are listed by name too: one left out would never run.
for t in tests/*.sh tests/unit/test-*.c; do
    name=$(basename "$t"); name=${name%.sh}; name=${name%.c}; name=${name#test-}
    # lib.sh and lib-*.sh are sourced by tests, not tests themselves.
    case "$name" in lib|lib-*) continue ;; esac
    if ! grep -Eq "(^|[[:space:](])$name([[:space:])]|$)" tests/CMakeLists.txt; then
        echo "layout: $t is not listed in tests/CMakeLists.txt" >&2
        fail=1
    fi
done

while IFS=: read -r file hdr; do
    hdr=${hdr#*\"} hdr=${hdr%\"*}
    case "$hdr" in
    */*-internal.h)
        owner=$(dirname "$hdr")
        case "$file" in
        lib/"$owner"/*|daemon/"$owner"/*) ;;
        *) echo "layout: $file includes $hdr, internal to $owner/" >&2; fail=1 ;;
        esac ;;
    esac
done < <(grep -rHo '#include "[^"]*"' lib daemon cli tests/unit tests/tools bench fuzz)

for f in $(grep -rlE '#include "(daemon\.h|log\.h|config\.h|(admin|audit|export|keys|meta|nbd/nbd-(server|conn|internal)|volumes)/)' lib || true); do
    echo "layout: $f (libcryptvol) includes a daemon header" >&2
    fail=1
done

[ "$fail" = 0 ] && echo "layout: ok"
exit "$fail"
