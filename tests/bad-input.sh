#!/usr/bin/env bash
# Bad input to the CLI.  Every case checks the exit status, that stderr is
# one line naming the image or file and the reason, and that nothing was
# lost: the image still opens with the right passphrase and exports the
# same plaintext as before (and, where nothing should have been written,
# its raw bytes are unchanged).
source "$(dirname "$0")/lib.sh"
cd "$T"

CV=("$CRYPTVOL")

passfile pass 'correct horse'
passfile pass2 'battery staple'
passfile wrong 'wrong horse'
passfile pass-nl $'correct horse\n'      # the same words and a newline

# --- helpers -----------------------------------------------------------

json_field() {      # IMG FIELD: a number from image info --json
    "${CV[@]}" image info "$1" --json |
        sed -n "s/.*\"$2\": *\([0-9][0-9]*\).*/\1/p"
}

# The hdr_size field of the primary LUKS2 binary header (big-endian u64
# at byte 8): the secondary header starts there.
hdr_size() {
    local b v=0
    for b in $(od -An -tu1 -j8 -N8 "$1"); do v=$((v * 256 + b)); done
    echo "$v"
}

# Overwrites LEN bytes of FILE at OFFSET with random bytes, in place.
scribble() {
    head -c "$3" /dev/urandom |
        dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# Remembers what IMG holds now: the plaintext (exported with PASSFILE,
# default pass) and the raw bytes.
remember() {
    "${CV[@]}" image export "$1" "$1.plain" --passphrase-file "${2:-pass}" ||
        fail "$1: cannot export it to remember its data"
    cp "$1" "$1.raw"
}

# Nothing lost: IMG opens with PASSFILE and exports what it did before.
intact() {
    "${CV[@]}" image export "$1" "$1.now" --passphrase-file "${2:-pass}" \
        2> "$T/intact.err" ||
        fail "$1 no longer opens: $(cat "$T/intact.err")"
    cmp -s "$1.plain" "$1.now" || fail "$1: its data changed"
    rm -f "$1.now"
}

# Intact, and not a byte of it written.
untouched() {
    intact "$@"
    cmp -s "$1" "$1.raw" || fail "$1: its raw bytes changed"
}

# Refused as a usage error (exit 2), without touching the images.
usage_error() {
    local pattern=$1
    shift
    expect_fail 2 "^cryptvol[ :].*$pattern" "${CV[@]}" "$@"
}

# --- the images --------------------------------------------------------

head -c 3M /dev/urandom > data
head -c 700K /dev/urandom > data2

# LUKS2, 4096-byte sectors: 16 MiB of header, 8 MiB of data.
"${CV[@]}" image create img2 --size 24M
"${CV[@]}" image format img2 --type luks2 --passphrase-file pass "${FAST_KDF[@]}"
"${CV[@]}" image import data img2 --passphrase-file pass
"${CV[@]}" image import data2 img2 --passphrase-file pass --offset 5000001
# LUKS1, 512-byte sectors.
"${CV[@]}" image create img1 --size 8M
"${CV[@]}" image format img1 --type luks1 --passphrase-file pass "${FAST_KDF[@]}"
"${CV[@]}" image import data img1 --passphrase-file pass --offset 12345
remember img2
remember img1
cmp -s <(head -c 3M img2.plain) data || fail "img2: the test data did not go in"
EFF2=$(json_field img2 size)
OFF2=$(json_field img2 dataOffset)
EFF1=$(json_field img1 size)
OFF1=$(json_field img1 dataOffset)
[ "$EFF2" = $((8 * 1024 * 1024)) ] || fail "img2: effective size $EFF2"
[ -n "$OFF1" ] && [ -n "$EFF1" ] && [ -n "$OFF2" ] || fail "image info --json"
ok "images: LUKS2 data at $OFF2 ($EFF2 bytes), LUKS1 data at $OFF1 ($EFF1 bytes)"

# --- wrong passphrase --------------------------------------------------

for img in img2 img1; do
    for pf in wrong pass-nl; do
        expect_fail 3 "^cryptvol: $img: wrong passphrase" \
            "${CV[@]}" image export "$img" dst --passphrase-file "$pf"
        [ ! -e dst ] || fail "export with a wrong passphrase created dst"
        expect_fail 3 "^cryptvol: $img: wrong passphrase" \
            "${CV[@]}" image import data2 "$img" --passphrase-file "$pf"
        expect_fail 3 "^cryptvol: $img: wrong passphrase" \
            "${CV[@]}" image resize "$img" --size 16M --passphrase-file "$pf"
        expect_fail 3 "^cryptvol: $img: wrong passphrase" \
            "${CV[@]}" image key add "$img" --passphrase-file "$pf" \
            --new-passphrase-file pass2 "${FAST_KDF[@]}"
        expect_fail 3 "^cryptvol: $img: wrong passphrase" \
            "${CV[@]}" image key change "$img" --passphrase-file "$pf" \
            --new-passphrase-file pass2 "${FAST_KDF[@]}"
        expect_fail 3 "^cryptvol: $img: wrong passphrase" \
            "${CV[@]}" image key remove "$img" --passphrase-file "$pf" --force
    done
    untouched "$img"
    expect_fail 3 "^cryptvol: $img: wrong passphrase" \
        "${CV[@]}" image export "$img" dst --passphrase-file pass2
done
ok "wrong passphrase: exit 3 naming the image, for every command; nothing written"

# --- not a LUKS image --------------------------------------------------

head -c 20M /dev/urandom > rnd
"${CV[@]}" image create blank --size 20M
head -c 100 /dev/urandom > tiny
mkdir adir
for img in rnd blank; do
    cp "$img" "$img.raw"
    expect_fail 1 "^cryptvol: $img: not a LUKS image" \
        "${CV[@]}" image info "$img"
    expect_fail 1 "^cryptvol: $img: not a LUKS image" \
        "${CV[@]}" image export "$img" dst --passphrase-file pass
    expect_fail 1 "^cryptvol: $img: not a LUKS image" \
        "${CV[@]}" image import data "$img" --passphrase-file pass
    expect_fail 1 "^cryptvol: $img: not a LUKS image" \
        "${CV[@]}" image resize "$img" --size 4M --passphrase-file pass
    expect_fail 1 "^cryptvol: $img: not a LUKS image" \
        "${CV[@]}" image key add "$img" --passphrase-file pass \
        --new-passphrase-file pass2
    expect_fail 1 "^cryptvol: $img: not a LUKS image" \
        "${CV[@]}" image key remove "$img" --passphrase-file pass --force
    cmp -s "$img" "$img.raw" || fail "$img: written to"
done
expect_fail 1 "^cryptvol: tiny: 100 bytes is too small to hold a LUKS header" \
    "${CV[@]}" image export tiny dst --passphrase-file pass
expect_fail 1 "^cryptvol: nonexistent: No such file or directory" \
    "${CV[@]}" image info nonexistent
expect_fail 1 "^cryptvol: adir: not a regular file or block device" \
    "${CV[@]}" image export adir dst --passphrase-file pass
[ ! -e dst ] && [ ! -e nonexistent ] || fail "a failed command created a file"
ok "not a LUKS image: random bytes, zeros, 100 bytes, missing, a directory"

# --- truncated image ---------------------------------------------------

# Cut at half the header area (before the data offset) of both kinds.
for img in img2 img1; do
    off=$(json_field "$img" dataOffset)
    cp "$img" "$img-cut"
    truncate -s $((off / 2)) "$img-cut"
    cp "$img-cut" "$img-cut.raw"
    expect_fail 1 "^cryptvol: $img-cut: truncated: $((off / 2)) bytes, but the LUKS header puts the data at offset $off" \
        "${CV[@]}" image info "$img-cut"
    expect_fail 1 "^cryptvol: $img-cut: truncated" \
        "${CV[@]}" image export "$img-cut" dst --passphrase-file pass
    expect_fail 1 "^cryptvol: $img-cut: truncated" \
        "${CV[@]}" image import data2 "$img-cut" --passphrase-file pass
    expect_fail 1 "^cryptvol: $img-cut: truncated" \
        "${CV[@]}" image key add "$img-cut" --passphrase-file pass \
        --new-passphrase-file pass2 "${FAST_KDF[@]}"
    cmp -s "$img-cut" "$img-cut.raw" || fail "$img-cut: written to"
done
# Cut in the middle of the first LUKS2 header copy itself.
cp img2 img2-cut-hdr
truncate -s $(($(hdr_size img2) / 2)) img2-cut-hdr
expect_fail 1 "^cryptvol: img2-cut-hdr: (truncated|LUKS header damaged)" \
    "${CV[@]}" image export img2-cut-hdr dst --passphrase-file pass
untouched img2
untouched img1
ok "truncated images: refused as truncated, with the sizes"

# --- damaged primary LUKS2 header: falls back to the secondary ---------

HDR=$(hdr_size img2)
[ "$HDR" = 16384 ] || fail "img2: hdr_size $HDR, expected cryptsetup's default 16384"
cp img2 dmg
cp img2.plain dmg.plain
scribble dmg 4096 4096          # the primary's JSON area
cp dmg dmg.raw
"${CV[@]}" image info dmg > /dev/null || fail "dmg: info with a damaged primary header"
untouched dmg                   # opens, same data, and opening wrote nothing
# Data can still be written...
"${CV[@]}" image import data2 dmg --passphrase-file pass --offset 7M
dd if=data2 of=dmg.plain bs=1M seek=7 conv=notrunc status=none
intact dmg
# ...and a keyslot change writes both header copies afresh: afterwards the
# secondary can go too.
"${CV[@]}" image key add dmg --passphrase-file pass --new-passphrase-file pass2 \
    "${FAST_KDF[@]}" > /dev/null || fail "dmg: key add with a damaged primary"
scribble dmg $((HDR + 4096)) 4096
intact dmg
intact dmg pass2
# With the primary's magic gone entirely.
cp img2 nomagic
cp img2.plain nomagic.plain
dd if=/dev/zero of=nomagic bs=4096 count=1 conv=notrunc status=none
cp nomagic nomagic.raw
untouched nomagic
ok "damaged primary LUKS2 header: falls back to the secondary, data intact"

# --- both LUKS2 header copies damaged ----------------------------------

cp img2 dmg2
scribble dmg2 4096 4096
scribble dmg2 $((HDR + 4096)) 4096
cp dmg2 dmg2.raw
expect_fail 1 "^cryptvol: dmg2: LUKS header damaged" \
    "${CV[@]}" image info dmg2
expect_fail 1 "^cryptvol: dmg2: LUKS header damaged" \
    "${CV[@]}" image export dmg2 dst --passphrase-file pass
expect_fail 1 "^cryptvol: dmg2: LUKS header damaged" \
    "${CV[@]}" image import data dmg2 --passphrase-file pass
expect_fail 1 "^cryptvol: dmg2: LUKS header damaged" \
    "${CV[@]}" image key remove dmg2 --passphrase-file pass --force
cmp -s dmg2 dmg2.raw || fail "dmg2: written to"
[ ! -e dst ] || fail "a failed export created dst"
ok "both LUKS2 header copies damaged: a clear error, nothing written"

# --- image too small for a header --------------------------------------

"${CV[@]}" image create small --size 1M
cp small small.raw
expect_fail 1 "^cryptvol: small: 1048576 bytes is too small for a LUKS2 header" \
    "${CV[@]}" image format small --type luks2 --passphrase-file pass "${FAST_KDF[@]}"
expect_fail 1 "^cryptvol: small: 1048576 bytes is too small for a LUKS1 header" \
    "${CV[@]}" image format small --type luks1 --passphrase-file pass "${FAST_KDF[@]}"
expect_fail 1 "^cryptvol: small: .*too small" \
    "${CV[@]}" image format small --type luks2 --passphrase-file pass --force \
    "${FAST_KDF[@]}"
cmp -s small small.raw || fail "small: written to by a refused format"
[ "$(stat -c %s small)" = 1048576 ] || fail "small: size changed"
expect_fail 1 "^cryptvol: small: not a LUKS image" \
    "${CV[@]}" image info small
ok "image too small for a header: format refused, file unchanged"

# --- I/O past the effective size --------------------------------------

head -c $((EFF2 + 4096)) /dev/urandom > toobig
expect_fail 1 "^cryptvol: img2: toobig is 8.0 MiB \($((EFF2 + 4096)) bytes\), but the volume has 8.0 MiB from offset 0 B" \
    "${CV[@]}" image import toobig img2 --passphrase-file pass
# Fits at 0, not at the offset.
expect_fail 1 "^cryptvol: img2: data is 3.0 MiB, but the volume has 2.0 MiB from offset 6.0 MiB" \
    "${CV[@]}" image import data img2 --passphrase-file pass --offset $((EFF2 - 2097152))
expect_fail 1 "^cryptvol: img2: --offset 8.0 MiB \($((EFF2 + 1)) bytes\) is beyond the end of the volume \(8.0 MiB\)" \
    "${CV[@]}" image import data2 img2 --passphrase-file pass --offset $((EFF2 + 1))
untouched img2
# One byte more than fits, LUKS1.
head -c $((EFF1 - 999)) /dev/urandom > fits1
expect_fail 1 "^cryptvol: img1: fits1 is .* \($((EFF1 - 999)) bytes\), but the volume has .* \($((EFF1 - 1000)) bytes\) from offset 1000 B" \
    "${CV[@]}" image import fits1 img1 --passphrase-file pass --offset 1000
untouched img1

expect_fail 1 "^cryptvol: img2: --offset 8.0 MiB \($((EFF2 + 4096)) bytes\) is beyond the end of the volume \(8.0 MiB\)" \
    "${CV[@]}" image export img2 dst --passphrase-file pass --offset $((EFF2 + 4096))
expect_fail 1 "^cryptvol: img2: --length 8.0 KiB from offset .* \($((EFF2 - 4096)) bytes\) is beyond the end of the volume" \
    "${CV[@]}" image export img2 dst --passphrase-file pass --offset $((EFF2 - 4096)) --length 8192
expect_fail 1 "^cryptvol: img2: --length .* \($((EFF2 + 1)) bytes\) from offset 0 B is beyond the end" \
    "${CV[@]}" image export img2 dst --passphrase-file pass --length $((EFF2 + 1))
expect_fail 1 "^cryptvol: img1: --length 1 B from offset 6.0 MiB is beyond the end" \
    "${CV[@]}" image export img1 dst --passphrase-file pass --offset "$EFF1" --length 1
[ ! -e dst ] || fail "a refused export created its output file"
# Right up to the end is fine.
"${CV[@]}" image export img2 tail --passphrase-file pass --offset $((EFF2 - 5000)) --length 5000
cmp -s tail <(tail -c 5000 img2.plain) || fail "img2: export of the last 5000 bytes"
"${CV[@]}" image export img2 none --passphrase-file pass --offset "$EFF2"
[ -e none ] && [ ! -s none ] || fail "export at the very end should give an empty file"
untouched img2
ok "I/O past the effective size: refused before reading or writing anything"

# --- resize ------------------------------------------------------------

expect_fail 1 "^cryptvol: img2: size 976.6 KiB \(1000000 bytes\) is not a multiple of the 4096-byte sector size" \
    "${CV[@]}" image resize img2 --size 1000000 --passphrase-file pass
expect_fail 1 "^cryptvol: img2: size 8.0 MiB \(8390656 bytes\) is not a multiple of the 4096-byte sector size" \
    "${CV[@]}" image resize img2 --size 8390656 --passphrase-file pass --allow-shrink
expect_fail 1 "^cryptvol: img1: size 976.6 KiB \(1000001 bytes\) is not a multiple of the 512-byte sector size" \
    "${CV[@]}" image resize img1 --size 1000001 --passphrase-file pass
expect_fail 1 "^cryptvol: img2: shrinking from 8.0 MiB to 4.0 MiB .*--allow-shrink" \
    "${CV[@]}" image resize img2 --size 4M --passphrase-file pass
untouched img2
untouched img1
ok "resize: misaligned sizes and shrinking without --allow-shrink refused"

# --- passphrase files --------------------------------------------------

passfile loose 'correct horse'
chmod 0644 loose
passfile loose-new 'battery staple'
chmod 0640 loose-new
passfile empty ''
for img in img2 img1; do
    expect_fail 1 "^cryptvol: passphrase file loose: mode 0644 lets group or others read it" \
        "${CV[@]}" image export "$img" dst --passphrase-file loose
    expect_fail 1 "^cryptvol: passphrase file loose: mode 0644" \
        "${CV[@]}" image import data2 "$img" --passphrase-file loose
    expect_fail 1 "^cryptvol: passphrase file loose: mode 0644" \
        "${CV[@]}" image format "$img" --passphrase-file loose --force "${FAST_KDF[@]}"
    expect_fail 1 "^cryptvol: passphrase file loose: mode 0644" \
        "${CV[@]}" image key remove "$img" --passphrase-file loose --force
    expect_fail 1 "^cryptvol: new passphrase file loose-new: mode 0640" \
        "${CV[@]}" image key add "$img" --passphrase-file pass --new-passphrase-file loose-new
    expect_fail 1 "^cryptvol: passphrase file missing: No such file or directory" \
        "${CV[@]}" image export "$img" dst --passphrase-file missing
    expect_fail 1 "^cryptvol: passphrase file missing: No such file or directory" \
        "${CV[@]}" image format "$img" --passphrase-file missing --force
    expect_fail 1 "^cryptvol: new passphrase file missing: No such file or directory" \
        "${CV[@]}" image key change "$img" --passphrase-file pass --new-passphrase-file missing
    expect_fail 1 "^cryptvol: passphrase file empty: empty" \
        "${CV[@]}" image export "$img" dst --passphrase-file empty
    expect_fail 1 "^cryptvol: passphrase file adir: not a regular file" \
        "${CV[@]}" image export "$img" dst --passphrase-file adir
    untouched "$img"
done
[ ! -e dst ] || fail "a refused export created its output file"
ok "passphrase files: 0644, 0640, missing, empty and a directory refused"

# --- removing the last keyslot -----------------------------------------

for img in img2 img1; do
    expect_fail 1 "^cryptvol: $img: keyslot 0 is the last one; .*--force" \
        "${CV[@]}" image key remove "$img" --passphrase-file pass
    untouched "$img"
    cp "$img" "$img-nokey"
    "${CV[@]}" image key remove "$img-nokey" --passphrase-file pass --force > /dev/null ||
        fail "$img-nokey: key remove --force"
    "${CV[@]}" image info "$img-nokey" | grep -q '^keyslots: *none$' ||
        fail "$img-nokey: a keyslot is left"
    for pf in pass pass2 wrong; do
        expect_fail 1 "^cryptvol: $img-nokey: no keyslot left" \
            "${CV[@]}" image export "$img-nokey" dst --passphrase-file "$pf"
    done
done
# With a second keyslot, removing one needs no --force and leaves the other.
cp img1 twokeys
cp img1.plain twokeys.plain
"${CV[@]}" image key add twokeys --passphrase-file pass --new-passphrase-file pass2 \
    "${FAST_KDF[@]}" > /dev/null
"${CV[@]}" image key remove twokeys --passphrase-file pass > /dev/null
intact twokeys pass2
expect_fail 3 "^cryptvol: twokeys: wrong passphrase" \
    "${CV[@]}" image export twokeys dst --passphrase-file pass
expect_fail 1 "^cryptvol: twokeys: keyslot [0-9]+ is the last one" \
    "${CV[@]}" image key remove twokeys --passphrase-file pass2
intact twokeys pass2
ok "last keyslot: refused without --force; with it, nothing opens"

# --- formatting over a LUKS image --------------------------------------

for img in img2 img1; do
    for type in luks2 luks1; do
        expect_fail 1 "^cryptvol: $img: already holds a LUKS header; formatting destroys its data \(use --force\)" \
            "${CV[@]}" image format "$img" --type "$type" --passphrase-file pass2 "${FAST_KDF[@]}"
    done
    untouched "$img"
done
# The damaged-primary image is a LUKS image too.
cp nomagic nomagic.raw
expect_fail 1 "^cryptvol: nomagic: already holds a LUKS header" \
    "${CV[@]}" image format nomagic --passphrase-file pass "${FAST_KDF[@]}"
untouched nomagic
# --force does format (a new volume key: the old data is gone).
cp img2 reformat
"${CV[@]}" image format reformat --passphrase-file pass2 --force "${FAST_KDF[@]}"
"${CV[@]}" image export reformat reformat.now --passphrase-file pass2
cmp -s reformat.now img2.plain && fail "reformat: --force left the old data readable"
expect_fail 3 "^cryptvol: reformat: wrong passphrase" \
    "${CV[@]}" image export reformat dst --passphrase-file pass
ok "format over a LUKS image: refused without --force"

# --- usage errors: exit 2, one line, nothing touched -------------------

usage_error 'unknown command "image frob"' image frob img2
usage_error '"image" needs a command: create, format' image
usage_error 'unknown command "disk"' disk create x
usage_error 'image create: needs PATH and --size' image create newimg
usage_error 'image create: needs PATH and --size SIZE \(PATH is missing\)' image create --size 1M
usage_error 'image create: --size: size "12Q": unknown suffix' image create newimg --size 12Q
usage_error 'image create: --size: size "-1": negative \(allowed: 1 B to 8.0 EiB\)' image create newimg --size -1
usage_error 'image create: --size: size "0" is out of range \(allowed: 1 B to 8.0 EiB\)' image create newimg --size 0
usage_error 'image create: --size: size "1.1G": not a whole number of bytes' image create newimg --size 1.1G
usage_error 'image create: --size: size "99999999999T": too large' image create newimg --size 99999999999T
usage_error 'image create: unknown option --sise' image create newimg --sise 1M
usage_error 'image create: option --size needs a value' image create newimg --size
[ ! -e newimg ] || fail "a refused image create made the file"
usage_error 'image format: needs PATH and --passphrase-file' image format img2
usage_error 'image format: --type: "luks3"' image format img2 --passphrase-file pass --type luks3
usage_error 'image format: --cipher: "des"' image format img2 --passphrase-file pass --cipher des
usage_error 'image format: --sector-size: "abc" is not a number' image format img2 --passphrase-file pass --sector-size abc
usage_error 'image format: --pbkdf: "scrypt"' image format img2 --passphrase-file pass --pbkdf scrypt
usage_error 'image format: --pbkdf-iterations: "-5" is not a number' image format img2 --passphrase-file pass --pbkdf-iterations -5
usage_error 'image format: LUKS1 supports only --pbkdf pbkdf2' image format img2 --passphrase-file pass --type luks1 --pbkdf argon2id
usage_error 'image format: unknown option --frce' image format img2 --passphrase-file pass --frce
usage_error 'image info: needs PATH' image info
usage_error 'image info: unexpected argument "img1" \(it takes PATH only\)' image info img2 img1
usage_error 'image info: unknown option --jsn' image info img2 --jsn
usage_error 'image import: needs SRC PATH and --passphrase-file' image import data img2
usage_error 'image import: needs SRC PATH and --passphrase-file F \(PATH is missing\)' image import img2 --passphrase-file pass
usage_error 'image import: takes no --length \(image export does\)' image import data img2 --passphrase-file pass --length 5
usage_error 'image import: --offset: size "x"' image import data img2 --passphrase-file pass --offset x
usage_error 'image export: needs PATH DST \(DST is missing\)' image export img2 --passphrase-file pass
usage_error 'image export: option --passphrase-file needs a value' image export img2 dst --passphrase-file
usage_error 'image export: --length: size "-3"' image export img2 dst --passphrase-file pass --length -3
usage_error 'image resize: needs PATH, --size EFFECTIVE and --passphrase-file F \(--size is missing\)' image resize img2 --passphrase-file pass
usage_error 'image resize: --size: size "big"' image resize img2 --size big --passphrase-file pass
usage_error 'image key add: needs PATH, --passphrase-file F and --new-passphrase-file G \(--new-passphrase-file is missing\)' image key add img2 --passphrase-file pass
usage_error 'image key change: needs .*\(--new-passphrase-file is missing\)' image key change img2 --passphrase-file pass
usage_error 'image key remove: takes no --new-passphrase-file \(image key add and image key change do\)' image key remove img2 --passphrase-file pass --new-passphrase-file pass2
usage_error 'image key remove: needs PATH and --passphrase-file' image key remove img2
usage_error 'unknown command "image key frob" \(image key commands: add, change, remove\)' image key frob img2 --passphrase-file pass
[ ! -e dst ] || fail "a usage error created dst"
untouched img2
untouched img1
ok "usage errors: exit 2 with one line naming the command and the problem"

# Format parameters the library refuses are errors, not usage errors.
"${CV[@]}" image create fresh --size 20M
cp fresh fresh.raw
expect_fail 1 "^cryptvol: fresh: sector size 1000" \
    "${CV[@]}" image format fresh --passphrase-file pass --sector-size 1000 "${FAST_KDF[@]}"
expect_fail 1 "^cryptvol: fresh: sector size 4096 .*LUKS1: 512" \
    "${CV[@]}" image format fresh --type luks1 --passphrase-file pass --sector-size 4096 "${FAST_KDF[@]}"
cmp -s fresh fresh.raw || fail "fresh: written to by a refused format"
ok "bad format parameters: refused, nothing written"

# --- a LUKS image with both header copies damaged is still LUKS --------
# Its keyslots are all there; formatting over it without --force destroys
# them for good, so it must be refused like an intact one.
expect_fail 1 "^cryptvol: dmg2: .*(LUKS header|--force)" \
    "${CV[@]}" image format dmg2 --passphrase-file pass "${FAST_KDF[@]}"
cmp -s dmg2 dmg2.raw || fail "dmg2: format without --force overwrote a damaged LUKS image"
ok "format over a damaged LUKS image: refused without --force"
