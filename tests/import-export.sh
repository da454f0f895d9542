#!/usr/bin/env bash
# Raw LUKS in and out (issue 10, RBD's "existing LUKS data can be
# imported"):
#
#  * images cryptsetup formats (LUKS2, and LUKS1), filled by the
#    independent AES-XTS (tests/tools/xts-check.py) with cryptsetup's volume
#    key, are adopted by `volume import NAME FILE --secret S`: the volume
#    reads over NBD what cryptsetup reads from the image (dm-crypt where
#    device-mapper works, else its volume key and xts-check) where it was
#    written (never-written ranges are noise there), keeps the
#    image's size, data offset and volume key (not re-encrypted);
#  * `volume export` of it, after more writes, is an image cryptsetup opens
#    with the secret and reads as the volume reads over NBD; the LUKS1 one
#    also reads the same through `qemu-img convert --image-opts
#    driver=luks` (QEMU 7.2 has no LUKS2); `--snapshot` exports the
#    snapshot's bytes; `--sparse` keeps holes (fewer blocks on disk, the
#    data the same); neither command prints on stderr without a terminal;
#  * refused, each with a clear message and nothing made: an import with a
#    wrong secret, of a file that is not LUKS, and an export over an
#    existing file (left as it was).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
need cryptsetup qemu-img

cvd_start imp --tls off
passfile "$T/s" 'made by cryptsetup'
passfile "$T/other" 'not the one'
"$CRYPTVOL" secret create s --from-file "$T/s" > /dev/null
"$CRYPTVOL" secret create other --from-file "$T/other" > /dev/null

# import_case TYPE: a cryptsetup image of TYPE imported as vol-TYPE.
import_case() {
    local type=$1 v="vol-$1" img="$T/cs-$1.img" what="cryptsetup $1"
    local ver off ss key
    truncate -s 40M "$img"
    cryptsetup luksFormat --batch-mode --type "$type" --pbkdf pbkdf2 \
        --pbkdf-force-iterations 1000 --key-file "$T/s" "$img" 2> "$T/cs.err" ||
        fail "$what: luksFormat: $(cat "$T/cs.err")"
    read -r ver off ss <<< "$(luks_geom "$img")"
    key=$(volume_key "$img" "$T/s")
    random_file "$T/e1" $MiB
    random_file "$T/e2" 200000
    $XTS_CHECK encrypt "$img" --key "$key" --data-offset "$off" --sector-size "$ss" \
        --plaintext "$T/e1" --offset 0 --plaintext "$T/e2" --offset $((5 * MiB + 333)) > /dev/null
    luks_read "$img" "$T/s" "$T/want"
    cmp -n $MiB "$T/want" "$T/e1" > /dev/null || fail "$what: cryptsetup does not read the data xts-check wrote"

    "$CRYPTVOL" volume import "$v" "$img" --secret s > /dev/null 2> "$T/imp.err" ||
        fail "$what: volume import: $(cat "$T/imp.err")"
    [ ! -s "$T/imp.err" ] || fail "$what: volume import printed on stderr (not a terminal): $(cat "$T/imp.err")"
    [ "$(vinfo "$v" '(d["state"], d["type"], d["size"], d["dataOffset"])')" = \
      "('Available', '$type', $(($(stat -c %s "$img") - off)), $off)" ] ||
        fail "$what: the imported volume is $(vinfo "$v" '(d["state"], d["type"], d["size"], d["dataOffset"])'), expected Available $type, $(($(stat -c %s "$img") - off)) bytes at $off"
    [ "$(volume_key "$(vol_dir "$v")/header" "$T/s")" = "$key" ] ||
        fail "$what: the imported volume has another volume key (re-encrypted?)"
    # The ranges written (the rest of the image was never written: its
    # holes read as noise through cryptsetup, and need not be copied).
    for x in "0 $MiB" "$((5 * MiB + 333)) 200000"; do
        set -- $x
        $NBDIO read "$CVD_NBD" "$v" "$1" "$2" "$T/got"
        cmp "$T/got" <(tail -c +$(($1 + 1)) "$T/want" | head -c "$2") >&2 ||
            fail "$what: the imported volume reads over NBD other bytes at $1 than cryptsetup reads from the image"
    done
    ok "$what image imported: same size, offset ($off) and key, reads over NBD what cryptsetup reads ($LUKS_READ_HOW)"

    # More writes, a snapshot between them; export both.
    random_file "$T/e3" 300000
    $NBDIO write "$CVD_NBD" "$v" $((9 * MiB)) "$T/e3" || fail "$what: writing the imported volume"
    "$CRYPTVOL" snapshot create "$v@one" > /dev/null
    $NBDIO write "$CVD_NBD" "$v" 4096 "$T/e2" || fail "$what: writing the imported volume"
    nbd_read "$v" "$T/vol"
    nbd_read "$v@one" "$T/one"
    "$CRYPTVOL" volume export "$v" "$T/out-$type.img" > /dev/null 2> "$T/exp.err" ||
        fail "$what: volume export: $(cat "$T/exp.err")"
    [ ! -s "$T/exp.err" ] || fail "$what: volume export printed on stderr (not a terminal): $(cat "$T/exp.err")"
    luks_read "$T/out-$type.img" "$T/s" "$T/got"
    cmp "$T/vol" "$T/got" >&2 || fail "$what: the export reads in cryptsetup other bytes than the volume over NBD"
    "$CRYPTVOL" volume export "$v" "$T/one-$type.img" --snapshot one > /dev/null ||
        fail "$what: volume export --snapshot one"
    luks_read "$T/one-$type.img" "$T/s" "$T/got"
    cmp "$T/one" "$T/got" >&2 || fail "$what: the export of snapshot one reads other bytes than $v@one over NBD"
    ok "$what: volume export (and --snapshot) read back by cryptsetup as over NBD"

    if [ "$type" = luks1 ]; then
        rm -f "$T/q.raw"
        qemu-img convert --object "secret,id=sec0,file=$T/s" -O raw \
            --image-opts "driver=luks,key-secret=sec0,file.filename=$T/out-$type.img" \
            "$T/q.raw" 2> "$T/q.err" || fail "$what: qemu-img convert of the export: $(cat "$T/q.err")"
        cmp "$T/vol" "$T/q.raw" >&2 || fail "$what: qemu-img reads the export other than the volume over NBD"
        ok "$what: qemu-img convert (luks driver) reads the export as the volume over NBD"
    fi

    # --sparse: holes stay holes; the data is the same where written.
    "$CRYPTVOL" volume export "$v" "$T/sp-$type.img" --sparse > /dev/null ||
        fail "$what: volume export --sparse"
    [ "$(stat -c %b "$T/sp-$type.img")" -lt "$(stat -c %b "$T/out-$type.img")" ] ||
        fail "$what: the --sparse export has $(stat -c %b "$T/sp-$type.img") blocks, the full one $(stat -c %b "$T/out-$type.img")"
    head -c $MiB "$T/vol" > "$T/r1"      # e1 with e2 over it at 4096
    $XTS_CHECK check "$T/sp-$type.img" --key "$key" --data-offset "$off" --sector-size "$ss" \
        --plaintext "$T/r1" --offset 0 --plaintext "$T/e3" --offset $((9 * MiB)) > /dev/null ||
        fail "$what: the --sparse export does not hold the written data"
    ok "$what: export --sparse keeps the holes ($(du -k "$T/sp-$type.img" | cut -f1) KiB on disk against $(du -k "$T/out-$type.img" | cut -f1)), the data the same"
    rm -f "$T/out-$type.img" "$T/one-$type.img" "$T/sp-$type.img" "$T/got" "$T/vol" "$T/one" "$T/want"
}

import_case luks2
import_case luks1

# ---- refusals ------------------------------------------------------------
truncate -s 40M "$T/cs3.img"
cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
    --key-file "$T/s" "$T/cs3.img"
world "$T/world"
rc=0
"$CRYPTVOL" volume import bad "$T/cs3.img" --secret other > "$T/out" 2> "$T/err" || rc=$?
[ "$rc" = 3 ] || fail "import with a wrong secret exited $rc, not 3 (WrongKey, docs/cli.md): $(cat "$T/err")"
grep -qiE 'wrong key|opens no keyslot' "$T/err" && grep -qF '"other"' "$T/err" && grep -qF "$T/cs3.img" "$T/err" ||
    fail "import with a wrong secret: the message does not say secret \"other\" opens no keyslot of $T/cs3.img: $(cat "$T/err")"
[ "$(wc -l < "$T/err")" = 1 ] || fail "import with a wrong secret: more than one line: $(cat "$T/err")"
unchanged "$T/world" "an import with a wrong secret"
vinfo bad 'd' > /dev/null 2>&1 && fail "an import with a wrong secret left a volume 'bad'"
ok "import with a wrong secret: '$(cat "$T/err")', nothing made"

random_file "$T/noise.img" $((4 * MiB))
expect_fail 1 'LUKS' "$CRYPTVOL" volume import noise "$T/noise.img" --secret s
unchanged "$T/world" "an import of a file that is not LUKS"
ok "import of a file that is not LUKS: '$(cat "$T/err")', nothing made"

"$CRYPTVOL" volume create x --size 8M --secret s > /dev/null
world "$T/world"
echo "keep me" > "$T/exists.img"
expect_fail 1 'exists' "$CRYPTVOL" volume export x "$T/exists.img"
[ "$(cat "$T/exists.img")" = "keep me" ] || fail "a refused export changed the existing file"
unchanged "$T/world" "an export over an existing file"
ok "export over an existing file: '$(cat "$T/err")', the file as it was"
cvd_stop
