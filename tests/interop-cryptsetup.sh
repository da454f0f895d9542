#!/usr/bin/env bash
# Interoperability with cryptsetup 2.6 (the reference LUKS implementation),
# both ways, with the data checked by an independent AES-XTS decryptor
# (tests/tools/xts-check.py) using the volume key cryptsetup dumps:
#
#  * images cryptvol formats (LUKS2 with 4096-, 512- and 2048-byte sectors,
#    LUKS1, AES-256 and AES-128) are valid for cryptsetup: luksDump shows the
#    same version, sector size, data offset, key size and UUID; cryptsetup
#    accepts the passphrase and rejects a wrong one; data cryptvol imported
#    (at sector-aligned and unaligned offsets, up to the last byte of the
#    volume, and over earlier data) decrypts with cryptsetup's volume key;
#    a LUKS2 image's secondary header copy says the same as the primary;
#  * images cryptsetup formats (LUKS2 argon2id, LUKS2 4096-byte sectors,
#    LUKS2 with a small header and 512-byte sectors, LUKS1 AES-128) open in
#    cryptvol: data encrypted independently reads back through
#    `cryptvol image export`, data cryptvol imports decrypts independently,
#    also where the two share a sector; keyslots cryptvol adds or changes
#    open in cryptsetup and a keyslot cryptvol removes no longer does; a
#    keyslot cryptsetup adds opens in cryptvol;
#  * the same data checks through the daemon, whose volumes encrypt a
#    request of 128 KiB or more in parts on a pool of threads (the CLI
#    opens volumes without one, so the cases above check the serial
#    cipher only): the volume's header (DATA/volumes/NAME/header) is what
#    cryptsetup reads; what NBD clients write (large, unaligned, up to the
#    end) decrypts in its layer file with cryptsetup's volume key, zeroes
#    they write are holes in the layer and read back as zeros, and data
#    encrypted independently into the layer reads back through NBD in one
#    large request.
#
# The passphrase ends in a newline: both sides take a key file's bytes
# exactly, so the same text without the newline must be refused by both.
source "$(dirname "$0")/lib.sh"
need cryptsetup

cs() { cryptsetup --disable-locks --batch-mode "$@"; }
# Cheap KDFs for cryptsetup: the KDF is not what this tests.
CS_PBKDF2=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
CS_ARGON=(--pbkdf argon2id --pbkdf-memory 32 --pbkdf-force-iterations 4)
CV_ARGON=(--pbkdf argon2id --pbkdf-memory 32 --pbkdf-iterations 4)

# load_info IMG: `cryptvol image info --json` into shell variables
# I_format, I_uuid, I_sector_size, I_data_offset, I_effective_size,
# I_key_bits and I_keyslots (comma-separated).
load_info() {
    local out
    out=$("$CRYPTVOL" image info "$1" --json) || fail "cryptvol image info $1 failed"
    eval "$("$PYTHON" -c '
import json, shlex, sys
i = json.loads(sys.argv[1])
i["keyslots"] = ",".join(map(str, i["keyslots"]))
for k, var in (("type", "format"), ("uuid", "uuid"),
               ("sectorSize", "sector_size"), ("dataOffset", "data_offset"),
               ("size", "effective_size"), ("keyBits", "key_bits"),
               ("keyslots", "keyslots")):
    print("I_%s=%s" % (var, shlex.quote(str(i[k]))))
' "$out")"
}
# dump_field DUMPFILE NAME: the value after the first "NAME:" of a
# cryptsetup luksDump output (leading blanks allowed, so "Area offset" is
# not "offset").
dump_field() {
    sed -nE "s/^[[:space:]]*$2:[[:space:]]*//p" "$1" | head -n1
}
# volume_key IMG PASSFILE: the volume key in hex, as cryptsetup dumps it.
volume_key() {
    cs luksDump --dump-volume-key --key-file "$2" "$1" | $XTS_CHECK dump-key ||
        fail "$1: cryptsetup luksDump --dump-volume-key with $2 failed"
}
# xts MODE IMG KEY PLAINTEXT OFFSET [PLAINTEXT OFFSET...]: xts-check.py
# check or encrypt with the data offset and sector size of the last
# load_info (which each case cross-checks against cryptsetup's luksDump).
xts() {
    local mode=$1 img=$2 key=$3 regions=() names=()
    shift 3
    while [ $# -gt 0 ]; do
        regions+=(--plaintext "$1" --offset "$2")
        names+=("$(basename "$1")@$2")
        shift 2
    done
    $XTS_CHECK "$mode" "$img" --key "$key" --data-offset "$I_data_offset" \
        --sector-size "$I_sector_size" "${regions[@]}" >/dev/null ||
        fail "xts-check $mode: $(basename "$img"): ${names[*]} (see above)"
}
cs_accepts() {
    cs open --test-passphrase --key-file "$2" "$1" 2>"$T/cs.err" ||
        fail "cryptsetup open --test-passphrase rejects $3 on $(basename "$1"): $(cat "$T/cs.err")"
}
cs_rejects() {
    local rc=0
    cs open --test-passphrase --key-file "$2" "$1" 2>"$T/cs.err" || rc=$?
    [ "$rc" = 2 ] || fail "cryptsetup open --test-passphrase with $3 on $(basename "$1") exited $rc, expected 2 (no key available): $(cat "$T/cs.err")"
}
# cv_export_cmp IMG PASSFILE OFFSET EXPECTED: cryptvol reads EXPECTED back.
cv_export_cmp() {
    local img=$1 pf=$2 off=$3 want=$4
    "$CRYPTVOL" image export "$img" "$T/got" --passphrase-file "$pf" \
        --offset "$off" --length "$(stat -c %s "$want")" ||
        fail "cryptvol image export $(basename "$img") with $(basename "$pf") failed"
    cmp "$T/got" "$want" >&2 ||
        fail "cryptvol export of $(basename "$img") at offset $off differs from $(basename "$want")"
}
# secondary_matches IMG: with the primary LUKS2 header wiped, cryptsetup
# reads the secondary copy; it must describe the same volume.
secondary_matches() {
    local img=$1
    cs luksDump "$img" > "$T/dump.primary" || fail "luksDump $img failed"
    cp --sparse=always "$img" "$T/wiped.img"
    dd if=/dev/zero of="$T/wiped.img" bs=4096 count=1 conv=notrunc status=none
    cs luksDump "$T/wiped.img" > "$T/dump.secondary" 2>"$T/cs.err" ||
        fail "$(basename "$img"): cryptsetup cannot read the secondary LUKS2 header: $(cat "$T/cs.err")"
    diff "$T/dump.primary" "$T/dump.secondary" >&2 ||
        fail "$(basename "$img"): the secondary LUKS2 header differs from the primary (diff above)"
    rm -f "$T/wiped.img"
}

passfile "$T/pass" $'correct horse battery staple\n'
passfile "$T/pass.nonl" 'correct horse battery staple'
passfile "$T/wrong" $'Correct horse battery staple\n'

# --- cryptvol formats and writes, cryptsetup and xts-check read ---------

# cv_to_cs TYPE SECTOR_SIZE CIPHER
cv_to_cs() {
    local type=$1 ss=$2 cipher=$3 what="cryptvol $1/$2/$3"
    local img="$T/cv-$type-$ss-$cipher.img" dump="$T/dump" key_bits=512 version=2
    local key off2 off3 len3
    [ "$cipher" = aes-128 ] && key_bits=256
    [ "$type" = luks1 ] && version=1

    "$CRYPTVOL" image create "$img" --size 32M
    "$CRYPTVOL" image format "$img" --type "$type" --passphrase-file "$T/pass" \
        --cipher "$cipher" --sector-size "$ss" "${FAST_KDF[@]}"
    load_info "$img"
    [ "$I_format" = "$type" ] || fail "$what: cryptvol info says format $I_format"
    [ "$I_sector_size" = "$ss" ] || fail "$what: cryptvol info says sector size $I_sector_size"
    [ "$I_key_bits" = "$key_bits" ] || fail "$what: cryptvol info says $I_key_bits key bits"

    # The header as cryptsetup sees it.
    cs luksDump "$img" > "$dump" 2>"$T/cs.err" ||
        fail "$what: cryptsetup luksDump fails on a cryptvol image: $(cat "$T/cs.err")"
    check_dump() {   # check_dump FIELD EXPECTED
        [ "$(dump_field "$dump" "$1")" = "$2" ] ||
            fail "$what: cryptsetup luksDump says $1: '$(dump_field "$dump" "$1")', expected '$2'"
    }
    check_dump Version "$version"
    check_dump UUID "$I_uuid"
    if [ "$version" = 2 ]; then
        check_dump sector "$ss [bytes]"           # data segment
        check_dump offset "$I_data_offset [bytes]"
        check_dump cipher aes-xts-plain64
        check_dump Key "$key_bits bits"            # keyslot 0
    else
        check_dump 'Payload offset' "$((I_data_offset / 512))"
        check_dump 'Cipher name' aes
        check_dump 'Cipher mode' xts-plain64
        check_dump 'MK bits' "$key_bits"
    fi
    ok "$what: cryptsetup luksDump agrees with cryptvol info"

    cs_accepts "$img" "$T/pass" "the passphrase"
    cs_rejects "$img" "$T/wrong" "a wrong passphrase"
    cs_rejects "$img" "$T/pass.nonl" "the passphrase without its trailing newline"
    expect_fail 3 'wrong passphrase' "$CRYPTVOL" image export "$img" "$T/x" \
        --passphrase-file "$T/pass.nonl" --length 512
    ok "$what: cryptsetup accepts the passphrase, rejects wrong ones"

    # Data: 192 KiB from 0; 3000 bytes over it at an unaligned offset (a
    # read-modify-write of partial sectors); 10000 bytes at an unaligned
    # offset past 1 MiB; 3 sectors and 100 bytes ending at the volume's end.
    head -c $((192 * 1024)) /dev/urandom > "$T/p1"
    head -c 3000 /dev/urandom > "$T/p4"
    head -c 10000 /dev/urandom > "$T/p2"
    len3=$((3 * ss + 100))
    head -c "$len3" /dev/urandom > "$T/p3"
    off2=$((1024 * 1024 + 777))
    off3=$((I_effective_size - len3))
    "$CRYPTVOL" image import "$T/p1" "$img" --passphrase-file "$T/pass"
    "$CRYPTVOL" image import "$T/p4" "$img" --passphrase-file "$T/pass" --offset 5000
    "$CRYPTVOL" image import "$T/p2" "$img" --passphrase-file "$T/pass" --offset "$off2"
    "$CRYPTVOL" image import "$T/p3" "$img" --passphrase-file "$T/pass" --offset "$off3"
    cp "$T/p1" "$T/p1+p4"
    dd if="$T/p4" of="$T/p1+p4" bs=1 seek=5000 conv=notrunc status=none

    key=$(volume_key "$img" "$T/pass")
    [ "${#key}" = $((key_bits / 4)) ] || fail "$what: volume key from cryptsetup is ${#key} hex digits"
    xts check "$img" "$key" "$T/p1+p4" 0 "$T/p2" "$off2" "$T/p3" "$off3"
    ok "$what: data cryptvol imported at 0, 5000, $off2 and $off3 decrypts with cryptsetup's volume key"
    cv_export_cmp "$img" "$T/pass" 0 "$T/p1+p4"
    cv_export_cmp "$img" "$T/pass" "$off3" "$T/p3"

    if [ "$version" = 2 ]; then
        secondary_matches "$img"
        ok "$what: the secondary LUKS2 header matches the primary"
    fi
    rm -f "$img"
}

cv_to_cs luks2 4096 aes-256
cv_to_cs luks2 512 aes-256
cv_to_cs luks1 512 aes-256
cv_to_cs luks2 2048 aes-128
cv_to_cs luks1 512 aes-128

# --- cryptsetup formats, cryptvol reads and writes ----------------------

passfile "$T/passB" 'second: added by cryptvol (pbkdf2)'
passfile "$T/passC" 'third: added by cryptvol (argon2id on LUKS2)'
passfile "$T/passD" 'fourth: added by cryptsetup'
passfile "$T/passE" 'fifth: changed from the fourth by cryptvol'

# cs_to_cv NAME TYPE LUKSFORMAT_ARGS...
cs_to_cv() {
    local name=$1 type=$2 what="cryptsetup $1"
    shift 2
    local img="$T/cs-$name.img" dump="$T/dump" key off1 off2 kdf_c=("${FAST_KDF[@]}")

    truncate -s 32M "$img"
    cs luksFormat --type "$type" "$@" --key-file "$T/pass" "$img" 2>"$T/cs.err" ||
        fail "$what: luksFormat: $(cat "$T/cs.err")"
    cs luksDump "$img" > "$dump"
    load_info "$img"
    [ "$I_format" = "$type" ] || fail "$what: cryptvol info says format $I_format"
    [ "$I_uuid" = "$(dump_field "$dump" UUID)" ] ||
        fail "$what: cryptvol says UUID $I_uuid, luksDump $(dump_field "$dump" UUID)"
    if [ "$type" = luks2 ]; then
        [ "$(dump_field "$dump" sector)" = "$I_sector_size [bytes]" ] ||
            fail "$what: cryptvol says sector size $I_sector_size, luksDump '$(dump_field "$dump" sector)'"
        [ "$(dump_field "$dump" offset)" = "$I_data_offset [bytes]" ] ||
            fail "$what: cryptvol says data offset $I_data_offset, luksDump '$(dump_field "$dump" offset)'"
    else
        [ "$I_sector_size" = 512 ] || fail "$what: cryptvol says LUKS1 sector size $I_sector_size"
        [ "$(dump_field "$dump" 'Payload offset')" = "$((I_data_offset / 512))" ] ||
            fail "$what: cryptvol says data offset $I_data_offset, luksDump Payload offset '$(dump_field "$dump" 'Payload offset')'"
    fi
    ok "$what: cryptvol info agrees with luksDump (sector size $I_sector_size, data offset $I_data_offset)"
    key=$(volume_key "$img" "$T/pass")

    # Independently encrypted data reads back through cryptvol: a sector-
    # aligned piece and one unaligned at both ends.
    off1=$((5 * I_sector_size + 333))
    head -c $((2 * I_sector_size)) /dev/urandom > "$T/e0"
    head -c 70000 /dev/urandom > "$T/e1"
    xts encrypt "$img" "$key" "$T/e0" 0 "$T/e1" "$off1"
    cv_export_cmp "$img" "$T/pass" 0 "$T/e0"
    cv_export_cmp "$img" "$T/pass" "$off1" "$T/e1"
    ok "$what: data encrypted by xts-check reads back through cryptvol export"

    # cryptvol's writes decrypt independently: a new region, and 100 bytes
    # inside the independently written one (to keep the other bytes of
    # those sectors cryptvol must decrypt them right).
    off2=$((1024 * 1024 + 5))
    head -c 50000 /dev/urandom > "$T/i1"
    head -c 100 /dev/urandom > "$T/i2"
    "$CRYPTVOL" image import "$T/i1" "$img" --passphrase-file "$T/pass" --offset "$off2"
    "$CRYPTVOL" image import "$T/i2" "$img" --passphrase-file "$T/pass" --offset $((off1 + 4000))
    cp "$T/e1" "$T/e1+i2"
    dd if="$T/i2" of="$T/e1+i2" bs=1 seek=4000 conv=notrunc status=none
    xts check "$img" "$key" "$T/i1" "$off2" "$T/e1+i2" "$off1" "$T/e0" 0
    cv_export_cmp "$img" "$T/pass" "$off1" "$T/e1+i2"
    ok "$what: data cryptvol imported decrypts with cryptsetup's volume key"

    # Keyslots: cryptvol adds B (pbkdf2) and C (argon2id; LUKS1 has only
    # pbkdf2), cryptsetup adds D.
    [ "$type" = luks2 ] && kdf_c=("${CV_ARGON[@]}")
    "$CRYPTVOL" image key add "$img" --passphrase-file "$T/pass" \
        --new-passphrase-file "$T/passB" "${FAST_KDF[@]}"
    "$CRYPTVOL" image key add "$img" --passphrase-file "$T/passB" \
        --new-passphrase-file "$T/passC" "${kdf_c[@]}"
    cs luksDump "$img" > "$dump" 2>"$T/cs.err" ||
        fail "$what: luksDump fails after cryptvol key add: $(cat "$T/cs.err")"
    [ "$type" = luks1 ] || grep -q 'PBKDF:[[:space:]]*argon2id' "$dump" ||
        fail "$what: luksDump shows no argon2id keyslot after cryptvol key add --pbkdf argon2id"
    cs_accepts "$img" "$T/passB" "the keyslot cryptvol added (pbkdf2)"
    cs_accepts "$img" "$T/passC" "the keyslot cryptvol added (${kdf_c[1]})"
    cs_accepts "$img" "$T/pass" "the original passphrase after cryptvol key add"
    ok "$what: keyslots added by cryptvol open in cryptsetup"

    cs luksAddKey "${CS_PBKDF2[@]}" --key-file "$T/pass" "$img" "$T/passD" 2>"$T/cs.err" ||
        fail "$what: luksAddKey: $(cat "$T/cs.err")"
    load_info "$img"
    [ "$I_keyslots" = 0,1,2,3 ] || fail "$what: cryptvol sees keyslots $I_keyslots, expected 0,1,2,3"
    cv_export_cmp "$img" "$T/passD" "$off1" "$T/e1+i2"
    ok "$what: a keyslot added by cryptsetup luksAddKey opens in cryptvol"

    # cryptvol removes B: cryptsetup must refuse it and still take the rest.
    "$CRYPTVOL" image key remove "$img" --passphrase-file "$T/passB"
    cs_rejects "$img" "$T/passB" "the passphrase of a keyslot cryptvol removed"
    expect_fail 3 'wrong passphrase' "$CRYPTVOL" image export "$img" "$T/x" \
        --passphrase-file "$T/passB" --length 512
    cs_accepts "$img" "$T/pass" "the original passphrase after cryptvol key remove"
    cs_accepts "$img" "$T/passC" "passphrase C after cryptvol key remove"
    cs_accepts "$img" "$T/passD" "passphrase D after cryptvol key remove"
    ok "$what: after cryptvol key remove cryptsetup no longer accepts that passphrase"

    # cryptvol changes cryptsetup's keyslot D to E.
    "$CRYPTVOL" image key change "$img" --passphrase-file "$T/passD" \
        --new-passphrase-file "$T/passE" "${FAST_KDF[@]}"
    cs_accepts "$img" "$T/passE" "the passphrase cryptvol changed to"
    cs_rejects "$img" "$T/passD" "the passphrase cryptvol changed away from"
    ok "$what: cryptvol key change is seen by cryptsetup"

    # None of that touched the data or the volume key.
    [ "$(volume_key "$img" "$T/passE")" = "$key" ] || fail "$what: the volume key changed"
    xts check "$img" "$key" "$T/i1" "$off2" "$T/e1+i2" "$off1"
    cv_export_cmp "$img" "$T/passC" "$off1" "$T/e1+i2"
    if [ "$type" = luks2 ]; then
        secondary_matches "$img"
        ok "$what: after cryptvol's keyslot changes the secondary header matches the primary"
    fi
    rm -f "$img"
}

# Without --sector-size cryptsetup 2.6 picks one itself (4096 for a file on
# most filesystems); the other cases fix it.
cs_to_cv luks2-argon2id luks2 "${CS_ARGON[@]}"
cs_to_cv luks2-4k luks2 "${CS_PBKDF2[@]}" --sector-size 4096
cs_to_cv luks2-small-header-512 luks2 "${CS_PBKDF2[@]}" --sector-size 512 \
    --luks2-metadata-size 64k --luks2-keyslots-size 2m
cs_to_cv luks1-aes128 luks1 "${CS_PBKDF2[@]}" --cipher aes-xts-plain64 --key-size 256

# --- the daemon's pooled path: NBD clients write, cryptsetup's key reads ---

# is_hole FILE OFF LEN: FILE holds no data in [OFF, OFF+LEN) (SEEK_DATA).
is_hole() {
    "$PYTHON" - "$@" <<'PY' || fail "$1: [$2, +$3) is not a hole"
import os, sys
path, off, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDONLY)
try:
    data = os.lseek(fd, off, os.SEEK_DATA)
except OSError:             # ENXIO: no data past off
    data = os.fstat(fd).st_size
if data < off + length:
    sys.exit("%s: data at %d, inside [%d, %d)" % (path, data, off, off + length))
PY
}

"$PYTHON" -c 'import nbd' 2> /dev/null ||
    fail "python3-libnbd is not installed (scripts/install-deps.sh installs it)"
# nbd_io write URI OFFSET FILE | zero URI OFFSET LENGTH |
#        read URI OFFSET LENGTH OUT: one NBD request (so a large one reaches
# the daemon whole, to be cut into parts there), then a flush.
nbd_io() {
    "$PYTHON" - "$@" <<'PY' || fail "NBD $1 at $3 on $2 failed"
import sys, nbd
op, uri, off = sys.argv[1], sys.argv[2], int(sys.argv[3])
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(uri)
if op == "write":
    h.pwrite(open(sys.argv[4], "rb").read(), off)
elif op == "zero":
    h.zero(int(sys.argv[4]), off)
else:
    open(sys.argv[5], "wb").write(h.pread(int(sys.argv[4]), off))
h.flush()
h.shutdown()
PY
}

# Three helper threads: with the caller's, a 1 MiB request is cut into
# eight parts on any machine, one CPU or many.
cvd_start pooled --tls off --crypto-threads 3
"$CRYPTVOL" secret create pw --from-file "$T/pass" > /dev/null

# daemon_to_cs TYPE CIPHER
daemon_to_cs() {
    local name="d-$1-$2" what="daemon $1/$2" hdr img key uri off2 off3 off4
    "$CRYPTVOL" volume create "$name" --size 32M --secret pw --type "$1" \
        --cipher "$2" > /dev/null
    hdr=$(vol_dir "$CVD_DIR/data" "$name")/header
    img=$(vol_head "$CVD_DIR/data" "$name")
    uri="nbd+unix:///$name?socket=$CVD_NBD"
    load_info "$hdr"
    # The header file ends at the data: the size is the volume's.
    I_effective_size=$("$CRYPTVOL" volume info "$name" --json |
        "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["size"])')
    [ "$I_effective_size" = $((32 * 1024 * 1024)) ] || fail "$what: volume info says size $I_effective_size"
    key=$(volume_key "$hdr" "$T/pass")

    # 1 MiB and 3 sectors from 0; 300000 bytes unaligned at both ends
    # (read-modify-write of the edge sectors around a pooled middle);
    # 3 MiB of zeroes; 1 MiB and 100 bytes ending at the volume's end.
    head -c $((1024 * 1024 + 3 * I_sector_size)) /dev/urandom > "$T/q1"
    head -c 300000 /dev/urandom > "$T/q2"
    head -c $((3 * 1024 * 1024)) /dev/zero > "$T/q0"
    head -c $((1024 * 1024 + 100)) /dev/urandom > "$T/q3"
    off2=$((2 * 1024 * 1024 + 777))
    off3=$((I_effective_size - 1024 * 1024 - 100))
    nbd_io write "$uri" 0 "$T/q1"
    nbd_io write "$uri" "$off2" "$T/q2"
    nbd_io zero "$uri" $((5 * 1024 * 1024)) $((3 * 1024 * 1024))
    nbd_io write "$uri" "$off3" "$T/q3"
    xts check "$img" "$key" "$T/q1" 0 "$T/q2" "$off2" "$T/q3" "$off3"
    ok "$what: large NBD writes (pooled) at 0, $off2 and $off3 decrypt with cryptsetup's volume key"
    is_hole "$img" $((I_data_offset + 5 * 1024 * 1024)) $((3 * 1024 * 1024))
    nbd_io read "$uri" $((5 * 1024 * 1024)) $((3 * 1024 * 1024)) "$T/got"
    cmp "$T/got" "$T/q0" >&2 || fail "$what: the 3 MiB zeroed through NBD do not read back as zeros"
    ok "$what: 3 MiB of zeroes written through NBD are a hole in the layer and read as zeros"

    # The other way: encrypted independently, read through NBD in one
    # request (decrypted in parts).  The daemon knows which blocks its
    # layer holds from what it wrote: the range is written through NBD
    # first (other bytes), then overwritten in the layer file.
    off4=$((9 * 1024 * 1024 + 333))
    head -c $((1536 * 1024)) /dev/urandom > "$T/q4"
    head -c $((1536 * 1024)) /dev/urandom > "$T/q4.before"
    nbd_io write "$uri" "$off4" "$T/q4.before"
    xts encrypt "$img" "$key" "$T/q4" "$off4"
    nbd_io read "$uri" "$off4" $((1536 * 1024)) "$T/got"
    cmp "$T/got" "$T/q4" >&2 ||
        fail "$what: 1.5 MiB encrypted by xts-check at $off4 reads back differently through NBD"
    ok "$what: data encrypted by xts-check reads back through NBD in one large request"
}

daemon_to_cs luks2 aes-256
daemon_to_cs luks1 aes-256
daemon_to_cs luks2 aes-128
cvd_stop

ok "cryptsetup interoperability"
