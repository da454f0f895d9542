#!/usr/bin/env bash
# A volume too large for the file system under the data directory (1 EiB:
# within the API's limit, beyond ext4's and tmpfs's largest file): create,
# plaintext or encrypted, and resize fail with one line saying the size is
# too large for the file system, in human units; a failed create leaves no
# file behind (one did, and every later create of the name got 409), so a
# retry with a good size works; a failed resize leaves the volume as it was.
source "$(dirname "$0")/lib.sh"

cvd_start big --tls off
VOLS=$CVD_DIR/data/volumes
MSG="is too large for the file system of the data directory, whose files hold at most [0-9.]+ [KMGTPE]iB( \([0-9]+ bytes\))? after the header \(File too large\); choose a size up to that"

for kind in --plaintext ""; do
    name=p${kind:+x}
    # shellcheck disable=SC2086
    expect_fail 1 "^cryptvol: volume $name: a size of 1\.0 EiB $MSG\$" \
        "$CRYPTVOL" volume create "$name" --size 1E $kind
    # Nothing of the chain: no directory, nor one being made (NAME.*).
    left=$(ls -d "$VOLS/$name" "$VOLS/$name".* 2> /dev/null || true)
    [ -z "$left" ] || fail "a failed create left $left"
    expect_fail 1 "volume $name: .*(not|no such)" "$CRYPTVOL" volume info "$name"
    # shellcheck disable=SC2086
    "$CRYPTVOL" volume create "$name" --size 4M $kind > /dev/null ||
        fail "create $name again with 4 MiB after the failed one"
    "$CRYPTVOL" volume info "$name" | grep -q '^state: *Available' ||
        fail "$name is not Available: $("$CRYPTVOL" volume info "$name")"
done
ok "create of 1 EiB refused (plaintext and LUKS2): $(cat "$T/err"); no file left; 4 MiB works"

# The plaintext layer's bytes are the volume's (data offset 0): put some
# there, then a resize that cannot be done must change nothing.
LAYER=$(vol_head "$CVD_DIR/data" px)
dd if=/dev/urandom of="$LAYER" bs=64K count=4 conv=notrunc status=none
files_sum() { (cd "$(vol_dir "$CVD_DIR/data" px)" && sha256sum * && stat -c '%n %s' *); }
before=$(files_sum)
expect_fail 1 "^cryptvol: volume px: a size of 1\.0 EiB $MSG\$" \
    "$CRYPTVOL" volume resize px --size 1E
[ "$(files_sum)" = "$before" ] || fail "a refused resize changed the volume's files: $(diff <(echo "$before") <(files_sum))"
"$CRYPTVOL" volume info px --json | grep -q '"size":4194304' || fail "size changed: $("$CRYPTVOL" volume info px --json)"
"$CRYPTVOL" volume info px | grep -q '^state: *Available' || fail "px is not Available after a refused resize"
"$CRYPTVOL" volume resize px --size 8M > /dev/null || fail "resize px to 8M after the refused one"
ok "resize to 1 EiB refused, the volume unchanged; resize to 8 MiB works"
cvd_stop
