#!/usr/bin/env bash
# What a volume create makes, checked with cryptsetup (docs/volume-layer.md,
# "The header of a new volume"):
# - 20 volumes with generated secrets: each header passes luksDump, has a
#   keyslots area of 4 keyslots (1032192 bytes for AES-256, data at 2 MiB;
#   AES-128: 524288, data at 1 MiB), a layer of header + size holding no
#   data (a new volume is all holes: docs/store.md), PBKDF2 at 1000
#   iterations, and opens with its secret (cryptsetup --test-passphrase);
# - a user's secret keeps the daemon's slow KDF (argon2id here), and the
#   log says how long it took; the CLI says it is deriving a key on a
#   terminal, and nothing otherwise;
# - rekey works on them (a fifth keyslot added by hand is refused, saying
#   the area is full); under cluster encryption a volume with a user
#   secret and the KEK's keyslot is rekeyed (three keyslots at once), the
#   KEK is rotated, and everything still attaches and opens;
# - a volume with the old layout (libcryptsetup's 16 MiB area, as volumes
#   were made before), in an older data directory's single image file,
#   becomes a chain at start and keeps working: attach, rekey, delete.
source "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built"
need cryptsetup
$PYTHON -c 'import nbd, cryptography' 2> /dev/null || skip "python3-libnbd or python3-cryptography is not installed"
SEAL="$PYTHON $SRC_DIR/tests/tools/seal-secret.py"
MARKS="$PYTHON $SRC_DIR/tests/tools/nbd-marks.py"
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
dump() { cryptsetup luksDump --dump-json-metadata "$1"; }
opens() { cryptsetup open --test-passphrase --key-file "$1" "$2" 2> /dev/null; }
slots() { dump "$1" | json 'len(d["keyslots"])'; }
# hdr NAME: the volume's LUKS header, its chain's header file.
hdr() { echo "$(vol_dir "$CVD_DIR/data" "$1")/header"; }
AREA256=1032192         # 4 x 252 KiB: a 512-bit key's 4000 AF stripes
AREA128=524288          # 4 x 128 KiB
# The daemon's KDF for user secrets: argon2id, at a cost a test can pay.
SLOW=(--pbkdf argon2id --pbkdf-iterations 4 --pbkdf-memory 16384)

# layout IMG AREA OFFSET KDF COST: the header as a create makes it (COST:
# PBKDF2's iterations, argon2's time).
layout() {
    local got
    got=$(dump "$1" | json '(d["config"]["keyslots_size"],
        d["segments"]["0"]["offset"], d["keyslots"]["0"]["kdf"]["type"],
        d["keyslots"]["0"]["kdf"].get("iterations", d["keyslots"]["0"]["kdf"].get("time")))') ||
        fail "$1: cryptsetup luksDump fails"
    [ "$got" = "('$2', '$3', '$4', $5)" ] ||
        fail "$1: (keyslots area, data offset, KDF, iterations) is $got, expected ('$2', '$3', '$4', $5)"
}

# ---- 20 volumes with generated secrets ------------------------------------
cvd_start a --tls off "${SLOW[@]}"
IMG=$CVD_DIR/data/volumes
for ((i = 0; i < 20; i++)); do
    "$CRYPTVOL" volume create "g$i" --size 64M > /dev/null 2> "$T/err"
    [ -s "$T/err" ] && fail "volume create g$i printed on stderr (not a terminal): $(cat "$T/err")"
done
for ((i = 0; i < 20; i++)); do
    layout "$(hdr g$i)" $AREA256 2097152 pbkdf2 1000
    head=$(vol_head "$CVD_DIR/data" g$i)
    [ "$(stat -c %s "$head")" = $((2097152 + (64 << 20))) ] ||
        fail "g$i's layer is $(stat -c %s "$head") bytes, not 2 MiB + 64 MiB"
    used=$(($(stat -c %b "$head") * $(stat -c %B "$head")))
    [ "$used" = 0 ] || fail "g$i's layer has $used bytes allocated: a new volume holds no data"
    used=$(($(stat -c %b "$(hdr g$i)") * $(stat -c %B "$(hdr g$i)")))
    [ "$used" -le $((1100 * 1024)) ] || fail "g$i's header has $used bytes allocated: not sparse"
    $SEAL "$CVD_DIR/data" "g$i" "$T/g$i.key" --unseal || fail "g$i: no generated secret to read back"
    opens "$T/g$i.key" "$(hdr g$i)" || fail "g$i: cryptsetup does not open it with its secret"
done
opens "$T/g1.key" "$(hdr g0)" && fail "g0 opens with g1's secret"
[ "$("$CRYPTVOL" volume info g0 --json | json 'd["dataOffset"]')" = 2097152 ] ||
    fail "volume info g0: data offset is not 2 MiB"
"$CRYPTVOL" volume create a128 --size 8M --cipher aes-128 > /dev/null
layout "$(hdr a128)" $AREA128 1048576 pbkdf2 1000
$MARKS write "$CVD_NBD" g0 g19 a128 || fail "writing g0 g19 a128 over NBD"
$MARKS check "$CVD_NBD" g0 g19 a128 || fail "reading g0 g19 a128 back over NBD"
ok "20 generated-secret volumes: keyslots area $AREA256 bytes, data at 2 MiB, layer all holes, PBKDF2 1000, open in cryptsetup; AES-128: $AREA128, 1 MiB"

# ---- a user's secret: the slow KDF, said so -------------------------------
passfile "$T/s1" "user secret one"
passfile "$T/s2" "user secret two"
"$CRYPTVOL" secret create s1 --from-file "$T/s1" > /dev/null
"$CRYPTVOL" secret create s2 --from-file "$T/s2" > /dev/null
n=$(wc -l < "$CVD_DIR/cryptvold.log")
"$CRYPTVOL" volume create u1 --size 8M --secret s1 > /dev/null 2> "$T/err"
[ -s "$T/err" ] && fail "volume create u1 printed on stderr (not a terminal): $(cat "$T/err")"
layout "$(hdr u1)" $AREA256 2097152 argon2id 4
opens "$T/s1" "$(hdr u1)" || fail "u1: its secret does not open it"
tail -n +$((n + 1)) "$CVD_DIR/cryptvold.log" |
    grep -qE 'volume u1: keyslot 0 for secret s1: argon2id key derivation \(4 iterations, 16384 KiB\) took [0-9]+\.[0-9]{2} s$' ||
    fail "the log does not say how long u1's key derivation took: $(tail -n +$((n + 1)) "$CVD_DIR/cryptvold.log")"
# On a terminal, the CLI says it is deriving a key while it waits.
cat > "$T/on-terminal.py" <<'PY'
import os, pty, subprocess, sys
m, s = pty.openpty()
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=s)
os.close(s)
out = b""
while True:
    try:
        chunk = os.read(m, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode(errors="replace"))
sys.exit(p.wait())
PY
$PYTHON "$T/on-terminal.py" "$CRYPTVOL" volume create u2 --size 8M --secret s1 > "$T/tty" ||
    fail "volume create u2 on a terminal: $(cat "$T/tty")"
grep -qE 'deriving a key for secret s1: [0-9.]+ s +done' "$T/tty" ||
    fail "on a terminal, volume create u2 did not say it was deriving a key: $(cat -v "$T/tty")"
"$CRYPTVOL" class create own --secret-template '${volume.name}-k' > /dev/null
"$CRYPTVOL" secret create u3-k --from-file "$T/s2" > /dev/null
$PYTHON "$T/on-terminal.py" "$CRYPTVOL" volume create u3 --size 8M --class own > "$T/tty" ||
    fail "volume create u3 on a terminal: $(cat "$T/tty")"
grep -qE 'deriving a key for the secret of class own: [0-9.]+ s +done' "$T/tty" ||
    fail "on a terminal, a create of class own did not say it was deriving a key: $(cat -v "$T/tty")"
layout "$(hdr u3)" $AREA256 2097152 argon2id 4
$PYTHON "$T/on-terminal.py" "$CRYPTVOL" volume create g20 --size 8M > "$T/tty" ||
    fail "volume create g20 on a terminal: $(cat "$T/tty")"
[ ! -s "$T/tty" ] || fail "a generated secret's create said something on a terminal: $(cat -v "$T/tty")"
ok "a user's secret keeps the daemon's argon2id; the log times it; the CLI says so on a terminal only"

# ---- rekey, and a full keyslots area ---------------------------------------
for v in g0 g1 g2 u1; do
    "$CRYPTVOL" volume rekey "$v" --secret s2 > /dev/null || fail "rekey $v to s2"
    opens "$T/s2" "$(hdr $v)" || fail "$v: s2 does not open it after the rekey"
    [ "$(slots "$(hdr $v)")" = 1 ] || fail "$v: $(slots "$(hdr $v)") keyslots after the rekey"
    [ "$(dump "$(hdr $v)" | json 'd["config"]["keyslots_size"]')" = $AREA256 ] || fail "$v: the area changed"
done
opens "$T/g0.key" "$(hdr g0)" && fail "g0: its old generated secret still opens it"
opens "$T/s1" "$(hdr u1)" && fail "u1: s1 still opens it"
$MARKS check "$CVD_NBD" g0 || fail "g0 does not read back after the rekey"
ok "rekey of generated-secret and user-secret volumes in a 4-keyslot area"

# ---- the old layout: a volume whose image has libcryptsetup's 16 MiB area --
# As an older data directory holds it: one image file, volumes/old.img,
# which the daemon makes the one layer of a chain at start.
"$CRYPTVOL" volume create old --size 8M --secret s1 > /dev/null
cvd_stop
cp "$T/s1" "$T/pass"
rm -r "$(vol_dir "$CVD_DIR/data" old)"
truncate -s $(((16 + 8) << 20)) "$IMG/old.img"
"$CRYPTVOL" image format "$IMG/old.img" --passphrase-file "$T/pass" "${FAST_KDF[@]}" --force 2> /dev/null
$PYTHON - "$CVD_DIR/data/meta.db" "$(dump "$IMG/old.img" | json 'd["config"]["keyslots_size"]')" \
    "$(cryptsetup luksUUID "$IMG/old.img")" "$IMG/old.img" <<'PY' || fail "recording old.img's layout"
import sqlite3, sys
db, area, uuid, path = sys.argv[1:]
assert area == "16744448", area
c = sqlite3.connect(db)
with c:
    n = c.execute("UPDATE volumes SET data_offset = 16777216, uuid = ?, path = ? WHERE name = 'old'",
                  (uuid, path)).rowcount
assert n == 1
PY
# A fifth keyslot in a 4-keyslot area, added by hand, is refused.
for k in 2 3 4; do
    passfile "$T/h$k" "by hand $k"
    "$CRYPTVOL" image key add "$(hdr g5)" --passphrase-file "$T/g5.key" \
        --new-passphrase-file "$T/h$k" "${FAST_KDF[@]}" > /dev/null || fail "adding keyslot $k to g5"
done
passfile "$T/h5" "by hand 5"
expect_fail 1 'g5/header: adding keyslot: no room left in the keyslots area \(1032192 bytes: 4 keyslots of this key size, 4 in use\)' \
    "$CRYPTVOL" image key add "$(hdr g5)" --passphrase-file "$T/g5.key" \
    --new-passphrase-file "$T/h5" "${FAST_KDF[@]}"
cvd_start a --tls off "${SLOW[@]}"
[ "$("$CRYPTVOL" volume info old --json | json 'd["dataOffset"]')" = 16777216 ] ||
    fail "old: the record does not have the old data offset"
[ ! -e "$IMG/old.img" ] && [ "$(stat -c %s "$(hdr old)")" = 16777216 ] &&
    [ "$(stat -c %s "$(vol_head "$CVD_DIR/data" old)")" = $(((16 + 8) << 20)) ] ||
    fail "old.img was not made a chain (16 MiB header, a layer of 24 MiB): $(ls -l "$IMG" "$(vol_dir "$CVD_DIR/data" old)")"
$MARKS write "$CVD_NBD" old || fail "writing the old-layout volume over NBD"
$MARKS check "$CVD_NBD" old || fail "reading the old-layout volume back"
"$CRYPTVOL" volume rekey old --secret s2 > /dev/null || fail "rekey of the old-layout volume"
opens "$T/s2" "$(hdr old)" || fail "old: s2 does not open it after the rekey"
[ "$(dump "$(hdr old)" | json 'd["config"]["keyslots_size"]')" = 16744448 ] || fail "old: the area changed"
$MARKS check "$CVD_NBD" old || fail "the old-layout volume does not read back after the rekey"
expect_fail 1 'no room left in the keyslots area \(1032192 bytes: 4 keyslots of this key size, 4 in use\)' \
    "$CRYPTVOL" volume rekey g5 --secret s2
opens "$T/g5.key" "$(hdr g5)" || fail "g5: a refused rekey changed its keyslots"
"$CRYPTVOL" volume delete old > /dev/null || fail "delete of the old-layout volume"
[ ! -e "$(vol_dir "$CVD_DIR/data" old)" ] || fail "old: its chain is still there after the delete"
ok "an old-layout volume (16 MiB area, a single image made a chain) attaches, rekeys and goes; a full area refuses a keyslot, saying so"
cvd_stop

# ---- cluster encryption: the KEK's keyslot, a rekey beside it, rotation ----
cvd_start k --tls off "${SLOW[@]}"
IMG=$CVD_DIR/data/volumes
"$CRYPTVOL" cluster encryption enable --kek-protection software > /dev/null
"$CRYPTVOL" secret create s1 --from-file "$T/s1" > /dev/null
"$CRYPTVOL" secret create s2 --from-file "$T/s2" > /dev/null
for ((i = 0; i < 4; i++)); do
    "$CRYPTVOL" volume create "k$i" --size 8M > /dev/null
    "$CRYPTVOL" volume create "ku$i" --size 8M --secret s1 > /dev/null
done
for ((i = 0; i < 4; i++)); do
    layout "$(hdr k$i)" $AREA256 2097152 pbkdf2 1000
    layout "$(hdr ku$i)" $AREA256 2097152 argon2id 4
    [ "$(slots "$(hdr k$i)") $(slots "$(hdr ku$i)")" = "1 2" ] ||
        fail "k$i, ku$i: $(slots "$(hdr k$i)") and $(slots "$(hdr ku$i)") keyslots, not 1 and 2"
    opens "$T/s1" "$(hdr ku$i)" || fail "ku$i: s1 does not open it"
done
# The rekey adds s2's keyslot beside s1's and the KEK's: three at once.
for v in ku0 ku1; do
    "$CRYPTVOL" volume rekey "$v" --secret s2 > /dev/null || fail "rekey $v (user secret and KEK) to s2"
    opens "$T/s2" "$(hdr $v)" || fail "$v: s2 does not open it after the rekey"
    opens "$T/s1" "$(hdr $v)" && fail "$v: s1 still opens it"
    [ "$(slots "$(hdr $v)")" = 2 ] || fail "$v: $(slots "$(hdr $v)") keyslots after the rekey"
done
"$CRYPTVOL" cluster kek rotate > /dev/null || fail "KEK rotation"
for ((i = 0; i < 4; i++)); do
    for v in "k$i" "ku$i"; do
        [ "$(dump "$(hdr $v)" | json '[t["kek_generation"] for t in d["tokens"].values()]')" = "[2]" ] ||
            fail "$v: its token is not at generation 2 after the rotation"
    done
done
$MARKS write "$CVD_NBD" k0 k3 ku0 ku3 || fail "writing KEK volumes over NBD"
$MARKS check "$CVD_NBD" k0 k3 ku0 ku3 || fail "KEK volumes do not read back after the rotation"
ok "under cluster encryption: KEK and user+KEK volumes in a 4-keyslot area, rekey beside the KEK's keyslot, rotation"
