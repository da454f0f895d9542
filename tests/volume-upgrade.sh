#!/usr/bin/env bash
# A data directory of before the layer chains upgrades in place (issue 10,
# docs/store.md "On disk"): a single-file volume at DATA-DIR/volumes/NAME.img
# becomes a chain of one layer at the daemon's start, by a rename, with no
# copy of its data:
#
#  * the layer file is the old image file (same inode), its header area
#    now a hole, and `header` holds the old image's first DATA_OFFSET
#    bytes;
#  * the volume is Available with its size, and reads over NBD every byte
#    it held before where its file held data, and zeros where the file had
#    holes (blocks never written, which it used to read as noise: raw zeros
#    decrypted); a second start changes nothing; a snapshot of it works;
#  * volumes/NAME.img is gone, and no file but the chain's is left.
#
# The old data directory is made by hand by default: the new daemon makes
# meta.db, the node key and the secret; `cryptvol image` makes and fills
# the volume file; its row goes into meta.db's volumes table as the old
# daemon wrote it (daemon/meta/sqlite: path = the .img file, state
# "ready", shown as Available).  With CVD_BASELINE=BUILD_DIR of an older
# checkout, its own daemon and CLI make it instead (its schema, its files).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"
need cryptsetup

passfile "$T/pw" 'an old volume'
D=$T/up/data
mkdir -p "$D"
random_file "$T/d1" $((3 * MiB))
random_file "$T/d2" 5000

if [ -n "${CVD_BASELINE:-}" ]; then
    OLDD=$CVD_BASELINE/daemon/cryptvold OLDC=$CVD_BASELINE/cli/cryptvol
    [ -x "$OLDD" ] && [ -x "$OLDC" ] || fail "CVD_BASELINE=$CVD_BASELINE: no daemon/cryptvold and cli/cryptvol there"
    rm -f "$T/up/admin.sock" "$T/up/nbd.sock"
    "$OLDD" --foreground --data-dir "$D" --nbd-listen none --nbd-unix "$T/up/nbd.sock" \
        --admin-socket "$T/up/admin.sock" --pbkdf pbkdf2 --pbkdf-iterations 1000 \
        --tls off 2>> "$T/up/old.log" &
    old=$!
    on_exit "kill -9 $old"
    for ((i = 0; i < 200; i++)); do [ -S "$T/up/nbd.sock" ] && break; sleep 0.05; done
    export CRYPTVOL_SOCKET=$T/up/admin.sock
    "$OLDC" secret create pw --from-file "$T/pw" > /dev/null
    "$OLDC" volume create old --size 24M --secret pw > /dev/null
    CVD_NBD=$T/up/nbd.sock
    $NBDIO write "$CVD_NBD" old $MiB "$T/d1" || fail "writing with the old daemon"
    $NBDIO write "$CVD_NBD" old $((20 * MiB + 7)) "$T/d2" || fail "writing with the old daemon"
    nbd_read old "$T/before"
    kill -TERM "$old"
    wait "$old" || fail "the old daemon did not stop cleanly"
    how="by the daemon of $CVD_BASELINE"
else
    cvd_start up --tls off
    "$CRYPTVOL" secret create pw --from-file "$T/pw" > /dev/null
    cvd_stop
    img=$D/volumes/old.img
    mkdir -p "$D/volumes"
    "$CRYPTVOL" image create "$img" --size 40M
    "$CRYPTVOL" image format "$img" --passphrase-file "$T/pw" "${FAST_KDF[@]}"
    "$CRYPTVOL" image import "$T/d1" "$img" --passphrase-file "$T/pw" --offset 1M
    "$CRYPTVOL" image import "$T/d2" "$img" --passphrase-file "$T/pw" --offset $((20 * MiB + 7))
    "$CRYPTVOL" image info "$img" --json > "$T/info"
    "$PYTHON" - "$D/meta.db" "$img" "$T/info" <<'PY' || fail "adding the old volume's row to meta.db"
import json, sqlite3, sys, time
db, img, info = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
c = sqlite3.connect(db)
c.execute("INSERT INTO volumes (name, uuid, size, type, cipher, key_bits, "
          "sector_size, data_offset, secret, path, state, created) VALUES "
          "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
          ("old", info["uuid"], info["size"], info["type"], info["cipher"],
           info["keyBits"], info["sectorSize"], info["dataOffset"], "pw", img,
           "ready", int(time.time())))
c.commit()
PY
    "$CRYPTVOL" image export "$img" "$T/before" --passphrase-file "$T/pw"
    how="by hand (cryptvol image and its meta.db row)"
fi

img=$D/volumes/old.img
[ -f "$img" ] || fail "the old layout has no $img"
ino=$(stat -c %i "$img")
off=$(cryptsetup luksDump --dump-json-metadata "$img" | json 'd["segments"]["0"]["offset"]')
head -c "$off" "$img" | sha256sum > "$T/header.sum"
# What it must read after: the same bytes where the file holds data; zeros
# where it has holes (never written: the old daemon decrypted those raw
# zeros into noise, the chain reads them as zeros, docs/store.md).
holes=$("$PYTHON" - "$img" "$off" "$T/before" "$T/want" <<'PY'
import os, sys
img, off, before, want = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = bytearray(open(before, "rb").read())
fd, pos, end, holes = os.open(img, os.O_RDONLY), off, off + len(data), 0
while pos < end:
    try:
        d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        d = end
    d = min(d, end)
    lo, hi = (pos - off + 4095) // 4096 * 4096, (d - off) // 4096 * 4096
    if hi > lo:
        data[lo:hi] = bytes(hi - lo)
        holes += hi - lo
    if d >= end:
        break
    pos = os.lseek(fd, d, os.SEEK_HOLE)
open(want, "wb").write(data)
print(holes)
PY
) || fail "mapping the old image's holes"
[ "$holes" -gt 0 ] && [ "$holes" -lt "$(stat -c %s "$T/before")" ] ||
    fail "the old image has $holes bytes of holes: both data and holes are needed"
ok "an old data dir with volumes/old.img (inode $ino, data at $off) made $how"

cvd_start up --tls off
[ ! -e "$img" ] || fail "volumes/old.img is still there after the upgrade"
[ "$(layers old | wc -l)" = 1 ] || fail "the upgraded volume has $(layers old | wc -l) layers, not 1"
layer=$(layers old)
[ "$(stat -c %i "$layer")" = "$ino" ] ||
    fail "the layer file has inode $(stat -c %i "$layer"), the old image $ino: the data was copied"
sha256sum < "$(vol_dir old)/header" | cmp -s - "$T/header.sum" ||
    fail "the chain's header is not the old image's first $off bytes"
$XTS_CHECK holes "$layer" --data-offset 0 --offset 0 --length "$off" > /dev/null ||
    fail "the layer still holds the header area"
[ "$(vinfo old '(d["state"], d["size"])')" = "('Available', $(stat -c %s "$T/before"))" ] ||
    fail "the upgraded volume is $(vinfo old '(d["state"], d["size"])')"
nbd_read old "$T/after"
cmp "$T/want" "$T/after" >&2 || fail "the upgraded volume reads other bytes than before (where it held data) or not zeros (where it had holes)"
leftover=$(cd "$D/volumes" && find . -type f ! -path './old/*')
[ -z "$leftover" ] || fail "files left beside the chain: $leftover"
ok "upgraded: a chain of one layer (the same inode, header split off, header area a hole), Available, the same bytes where written, zeros in its $((holes >> 20)) MiB of holes"

cvd_stop
cvd_start up --tls off
[ "$(stat -c %i "$(layers old)")" = "$ino" ] || fail "a second start changed the layer file"
nbd_read old "$T/after"
cmp "$T/want" "$T/after" >&2 || fail "after a second start the volume reads other bytes"
"$CRYPTVOL" snapshot create old@first > /dev/null || fail "a snapshot of the upgraded volume"
$NBDIO write "$CVD_NBD" old 0 "$T/d2" || fail "writing the upgraded volume"
nbd_read old@first "$T/snap"
cmp "$T/want" "$T/snap" >&2 || fail "the snapshot of the upgraded volume reads other bytes"
ok "a second start changes nothing; the upgraded volume takes snapshots"
cvd_stop
