#!/usr/bin/env bash
# image import/export through pipes and files: multi-chunk transfers at
# unaligned offsets, stdin and stdout, sparse output, input that does not fit.
source "$(dirname "$0")/lib.sh"

passfile "$T/pass" 'transfer test'
for type in luks2 luks1; do
    img=$T/$type.img
    "$CRYPTVOL" image create "$img" --size 64M
    "$CRYPTVOL" image format "$img" --type "$type" --passphrase-file "$T/pass" "${FAST_KDF[@]}"
    size=$("$CRYPTVOL" image info "$img" --json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["size"])')

    # Several 4 MiB chunks per round, a short last chunk, an unaligned start.
    head -c 13000123 /dev/urandom > "$T/a"
    "$CRYPTVOL" image import "$T/a" "$img" --passphrase-file "$T/pass" --offset 4097
    "$CRYPTVOL" image export "$img" - --passphrase-file "$T/pass" --offset 4097 --length 13000123 |
        cmp - "$T/a" || fail "$type: file import, stdout export differ"
    ok "$type: file in, stdout out"

    # The same through a pipe in, and a file out.
    head -c 9437185 /dev/urandom > "$T/b"
    cat "$T/b" | "$CRYPTVOL" image import - "$img" --passphrase-file "$T/pass" --offset 20M
    "$CRYPTVOL" image export "$img" "$T/b.out" --passphrase-file "$T/pass" --offset 20M --length 9437185
    cmp "$T/b" "$T/b.out" || fail "$type: stdin import, file export differ"
    [ "$(stat -c %a "$T/b.out")" = 600 ] || fail "$type: exported plaintext is not mode 0600"
    # The first import is untouched by the second.
    "$CRYPTVOL" image export "$img" - --passphrase-file "$T/pass" --offset 4097 --length 13000123 |
        cmp - "$T/a" || fail "$type: second import disturbed the first"
    ok "$type: stdin in, file out"

    # Zeros exported to a file become holes; the content still compares.
    # Empty input imports nothing and succeeds.
    "$CRYPTVOL" image import /dev/null "$img" --passphrase-file "$T/pass"
    head -c 8M /dev/zero | "$CRYPTVOL" image import - "$img" --passphrase-file "$T/pass" --offset 40M
    "$CRYPTVOL" image export "$img" "$T/z" --passphrase-file "$T/pass" --offset 40M --length 8M
    cmp "$T/z" <(head -c 8M /dev/zero) || fail "$type: zeros did not export as zeros"
    [ "$(stat -c %b "$T/z")" -lt 1024 ] || fail "$type: zero export is not sparse"
    ok "$type: sparse export"

    # A pipe that carries more than fits: error, and what was there before
    # the start offset is intact.
    before=$("$CRYPTVOL" image export "$img" - --passphrase-file "$T/pass" --length 20M | sha256sum)
    expect_fail 1 "input is larger than .* to the end of the volume" \
        bash -c "head -c 30M /dev/urandom | '$CRYPTVOL' image import - '$img' --passphrase-file '$T/pass' --offset $((size - 10 * 1048576))"
    after=$("$CRYPTVOL" image export "$img" - --passphrase-file "$T/pass" --length 20M | sha256sum)
    [ "$before" = "$after" ] || fail "$type: a failed import changed data before its offset"
    ok "$type: oversized pipe refused"
done
