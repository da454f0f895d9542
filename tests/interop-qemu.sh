#!/usr/bin/env bash
# Interoperability with QEMU's LUKS driver (qemu-img 7.2), LUKS1 both ways:
#
#  * qemu-img converts plaintext to a LUKS image (AES-256 and, once,
#    AES-128 with a sha512 hash); cryptvol reports the size qemu does and
#    exports the same bytes.  QEMU lays out its own LUKS1 header (payload at
#    4040 sectors rather than cryptsetup's 4096, virtual size rounded up to
#    whole 512-byte sectors), so the export is the plaintext and then zeros;
#  * a keyslot cryptvol adds to a QEMU-made image opens in qemu-img;
#  * an image cryptvol formats (LUKS1) and fills converts back to raw with
#    qemu-img unchanged, and data qemu-img and qemu-io write into it (one
#    write unaligned) exports unchanged with cryptvol.
#
# QEMU 7.2 has no LUKS2 support, so LUKS2 images are not tried with it.
#
# The passphrases end in a newline: QEMU's secret object with file= and
# cryptvol both take a file's bytes exactly.
source "$(dirname "$0")/lib.sh"

# qemu_img ARGS...: qemu-img, retried when it trips over QEMU's own
# PBKDF2 benchmark ("Unable to get accurate CPU usage": getrusage can
# report 0 ms for its first, short round on a fast machine; fixed upstream
# in QEMU 9.2.1, still in Debian's 7.2).  Any other failure is final.
qemu_img() {
    local try rc
    # qemu's PBKDF benchmark fails when its thread's CPU time reads 0 ms,
    # which on a loaded machine can happen several times in a row: retry
    # with a pause rather than fail the interop check on timing.
    for try in 1 2 3 4 5 6 7 8 9 10; do
        rc=0
        qemu-img "$@" 2>"$T/qemu.err" || rc=$?
        if [ "$rc" = 0 ] || ! grep -q 'Unable to get accurate CPU usage' "$T/qemu.err"; then
            cat "$T/qemu.err" >&2
            return "$rc"
        fi
        echo "qemu-img: benchmark flake, retrying ($try)" >&2
        sleep 0.5
    done
    cat "$T/qemu.err" >&2
    return "$rc"
}
# info_get IMG FIELD: one field of `cryptvol image info --json`.
info_get() {
    "$CRYPTVOL" image info "$1" --json |
        "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}
# qemu_size IMG PASSFILE: the virtual size qemu-img sees through LUKS.
qemu_size() {
    qemu_img info --output json --object "secret,id=sec0,file=$2" \
        --image-opts "driver=luks,key-secret=sec0,file.filename=$1" |
        "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["virtual-size"])'
}
# all_zero FILE OFFSET: the bytes of FILE from OFFSET on are all zeros.
all_zero() {
    local n=$(($(stat -c %s "$1") - $2))
    cmp -n "$n" <(tail -c +"$(($2 + 1))" "$1") /dev/zero >/dev/null
}

passfile "$T/pass" $'qemu and cryptvol agree\n'
passfile "$T/pass.nonl" 'qemu and cryptvol agree'
passfile "$T/pass2" $'added by cryptvol\n'

# Plaintext: not a multiple of 512 bytes, with a run of zeros inside.
{
    head -c 1000000 /dev/urandom
    head -c 600000 /dev/zero
    head -c 1400001 /dev/urandom
} > "$T/plain"
N=$(stat -c %s "$T/plain")

# --- qemu-img writes, cryptvol reads -------------------------------------

# qemu_to_cv NAME CREATE_OPTIONS
qemu_to_cv() {
    local name=$1 opts=$2 img="$T/qemu-$1.luks" size
    qemu_img convert -f raw -O luks --object "secret,id=sec0,file=$T/pass" \
        -o "key-secret=sec0,iter-time=10$opts" "$T/plain" "$img" ||
        fail "qemu $name: qemu-img convert -O luks failed"
    [ "$(info_get "$img" type)" = luks1 ] || fail "qemu $name: cryptvol does not see LUKS1"
    size=$(info_get "$img" size)
    [ "$size" = "$(qemu_size "$img" "$T/pass")" ] ||
        fail "qemu $name: cryptvol's effective size $size is not qemu's virtual size $(qemu_size "$img" "$T/pass")"
    [ "$size" = $(((N + 511) / 512 * 512)) ] ||
        fail "qemu $name: effective size $size, expected $N rounded up to 512"

    "$CRYPTVOL" image export "$img" "$T/out" --passphrase-file "$T/pass" ||
        fail "qemu $name: cryptvol cannot export a qemu-img LUKS image"
    [ "$(stat -c %s "$T/out")" = "$size" ] || fail "qemu $name: export is not $size bytes"
    cmp -n "$N" "$T/out" "$T/plain" >&2 ||
        fail "qemu $name: cryptvol's export differs from what qemu-img encrypted"
    all_zero "$T/out" "$N" || fail "qemu $name: the padding after the plaintext is not zeros"
    expect_fail 3 'wrong passphrase' "$CRYPTVOL" image export "$img" "$T/x" \
        --passphrase-file "$T/pass.nonl" --length 512
    ok "qemu $name: qemu-img's LUKS image exports through cryptvol unchanged ($N bytes)"

    # A keyslot cryptvol adds to qemu's header opens in qemu.
    "$CRYPTVOL" image key add "$img" --passphrase-file "$T/pass" \
        --new-passphrase-file "$T/pass2" "${FAST_KDF[@]}"
    rm -f "$T/back.raw"
    qemu_img convert --object "secret,id=sec0,file=$T/pass2" \
        --image-opts "driver=luks,key-secret=sec0,file.filename=$img" \
        -O raw "$T/back.raw" ||
        fail "qemu $name: qemu-img cannot open with the keyslot cryptvol added"
    cmp -n "$N" "$T/back.raw" "$T/plain" >&2 || fail "qemu $name: data read with the new keyslot differs"
    ok "qemu $name: a keyslot cryptvol added opens in qemu-img"
    rm -f "$img" "$T/out" "$T/back.raw"
}

qemu_to_cv aes256 ""
qemu_to_cv aes128-sha512 ",cipher-alg=aes-128,hash-alg=sha512"

# --- cryptvol writes, qemu-img reads --------------------------------------

IMG="$T/cv.img"
"$CRYPTVOL" image create "$IMG" --size 32M
"$CRYPTVOL" image format "$IMG" --type luks1 --passphrase-file "$T/pass" "${FAST_KDF[@]}"
SIZE=$(info_get "$IMG" size)
[ "$SIZE" = "$(qemu_size "$IMG" "$T/pass")" ] ||
    fail "qemu-img sees a virtual size of $(qemu_size "$IMG" "$T/pass"), cryptvol an effective size of $SIZE"

# The plaintext at 0, and a second copy at an unaligned offset near the end.
OFF2=$((SIZE - N - 1234))
"$CRYPTVOL" image import "$T/plain" "$IMG" --passphrase-file "$T/pass"
"$CRYPTVOL" image import "$T/plain" "$IMG" --passphrase-file "$T/pass" --offset "$OFF2"
qemu_img convert --object "secret,id=sec0,file=$T/pass" \
    --image-opts "driver=luks,key-secret=sec0,file.filename=$IMG" \
    -O raw "$T/raw" || fail "qemu-img cannot convert a cryptvol LUKS1 image to raw"
[ "$(stat -c %s "$T/raw")" = "$SIZE" ] || fail "qemu-img's raw output is not $SIZE bytes"
cmp -n "$N" "$T/raw" "$T/plain" >&2 || fail "qemu-img reads different data at offset 0"
cmp -n "$N" <(tail -c +$((OFF2 + 1)) "$T/raw") "$T/plain" >&2 ||
    fail "qemu-img reads different data at offset $OFF2"
ok "qemu-img converts a cryptvol LUKS1 image back to the plaintext cryptvol imported"

# QEMU writes into the cryptvol image: qemu-img convert -n over the start
# of the first copy (whole 512-byte sectors: qemu-img rounds a raw source up
# to them, zero-filling the rest of the last one), then qemu-io 5000 bytes
# at an unaligned offset, which QEMU's LUKS driver does as a
# read-modify-write of cryptvol's sectors.
head -c $((1519 * 512)) /dev/urandom > "$T/plain2"
qemu_img convert -n -f raw "$T/plain2" --object "secret,id=sec0,file=$T/pass" \
    --target-image-opts "driver=luks,key-secret=sec0,file.filename=$IMG" ||
    fail "qemu-img cannot write into a cryptvol LUKS1 image"
qemu-io --object "secret,id=sec0,file=$T/pass" \
    --image-opts "driver=luks,key-secret=sec0,file.filename=$IMG" \
    -c 'write -P 0xa5 1000003 5000' >/dev/null ||
    fail "qemu-io cannot write into a cryptvol LUKS1 image"
cp "$T/plain" "$T/want"
dd if="$T/plain2" of="$T/want" conv=notrunc status=none
head -c 5000 /dev/zero | tr '\0' '\245' |
    dd of="$T/want" bs=1 seek=1000003 conv=notrunc status=none
"$CRYPTVOL" image export "$IMG" "$T/got" --passphrase-file "$T/pass" --length "$N"
cmp "$T/got" "$T/want" >&2 || fail "cryptvol exports something else than qemu-img and qemu-io wrote"
"$CRYPTVOL" image export "$IMG" "$T/got" --passphrase-file "$T/pass" --offset "$OFF2" --length "$N"
cmp "$T/got" "$T/plain" >&2 || fail "the second copy changed when qemu wrote the first"
ok "data qemu-img and qemu-io wrote into a cryptvol LUKS1 image exports unchanged"

ok "qemu-img interoperability"
