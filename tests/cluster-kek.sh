#!/usr/bin/env bash
# Cluster-level encryption with software KEK protection: enabling only on an
# empty cluster, no disabling, volumes that attach with no user secret,
# a user-secret volume with both keyslots, rotation without touching data,
# escrow and offline recovery, and a missing node key.
. "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
need cryptsetup
MARKS="/usr/bin/python3 $SRC_DIR/tests/tools/nbd-marks.py"
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
info() { "$CRYPTVOL" cluster info --json | json "$1"; }

cvd_start k --tls off
DATA=$CVD_DIR/data
hdr() { echo "$(vol_dir "$DATA" "$1")/header"; }

[ "$(info 'd["encryptionState"]')" = Disabled ] || fail "a new cluster is not Disabled"

# Enabling is refused while the cluster has a volume, and says why.
"$CRYPTVOL" volume create early --size 4M > /dev/null
expect_fail 1 'only be enabled while the cluster has no volumes.*early' \
    "$CRYPTVOL" cluster encryption enable
[ "$(info 'd["encryptionState"]')" = Disabled ] || fail "a refused enable changed the state"
"$CRYPTVOL" volume delete early > /dev/null
ok "enable refused on a cluster with volumes"

"$CRYPTVOL" cluster encryption enable --kek-protection software > "$T/out"
grep -q 'generation 1' "$T/out" || fail "enable: $(cat "$T/out")"
[ "$(info 'd["encryptionState"], d["kekProtection"], d["currentKekGeneration"], d["rotationState"]')" \
  = "Enabled software 1 NoRotation" ] || fail "cluster info after enable: $("$CRYPTVOL" cluster info)"
expect_fail 1 'already Enabled' "$CRYPTVOL" cluster encryption enable
expect_fail 1 'cannot be disabled' "$CRYPTVOL" cluster encryption disable
[ "$(info 'd["encryptionState"]')" = Enabled ] || fail "disable changed the state"
ok "enabled; a second enable and any disable are refused"

# A volume with no user secret attaches through its KEK token alone.
"$CRYPTVOL" volume create kv --size 8M > /dev/null
"$CRYPTVOL" volume info kv --json > "$T/kv.json"
[ "$(json 'd.get("secret")' < "$T/kv.json")" = None ] || fail "a KEK volume got a stored secret"
cryptsetup luksDump "$(hdr kv)" > "$T/dump"
grep -q 'cryptvol-kek' "$T/dump" || fail "no cryptvol-kek token: $(cat "$T/dump")"
[ "$(grep -cE '^  [0-9]+: luks2' "$T/dump")" = 1 ] || fail "kv: expected one keyslot"
# A user-secret volume has both keyslots: its secret and the KEK's.
passfile "$T/s1" "user secret one"
"$CRYPTVOL" secret create s1 --from-file "$T/s1" > /dev/null
"$CRYPTVOL" volume create uv --size 8M --secret s1 > /dev/null
cryptsetup luksDump "$(hdr uv)" > "$T/dump"
[ "$(grep -cE '^  [0-9]+: luks2' "$T/dump")" = 2 ] || fail "uv: expected two keyslots: $(cat "$T/dump")"
cryptsetup open --test-passphrase --key-file "$T/s1" "$(hdr uv)" || fail "uv: the user secret does not open it"
$MARKS write "$CVD_NBD" kv uv || fail "writing through NBD"
$MARKS check "$CVD_NBD" kv uv || fail "reading back through NBD"
for v in kv uv; do
    head=$(vol_head "$DATA" "$v")
    [ "$(stat -c %b "$head")" -gt 0 ] || fail "$v: nothing written to its head layer $head"
    hits=$(grep -l "cryptvol-marker" "$(vol_dir "$DATA" "$v")"/* || true)
    [ -z "$hits" ] || fail "$v: the marker is in the raw files $hits"
done
ok "KEK-only and user-secret volumes attach with no secret; data encrypted at rest"

expect_fail 1 'plaintext one is refused' "$CRYPTVOL" volume create p --size 4M --plaintext
expect_fail 1 'LUKS1 has no tokens' "$CRYPTVOL" volume create l1 --size 4M --type luks1
ok "plaintext and LUKS1 volumes refused under cluster encryption"

# Rotation re-wraps tokens only: keyslots and data stay as they were.
# The data starts at the segment's offset (2 MiB for a volume cryptvold makes).
off=$(cryptsetup luksDump --dump-json-metadata "$(hdr uv)" | json 'int(d["segments"]["0"]["offset"])')
# Every layer's data area (one layer, as no snapshot was taken).
uv_data() { local l; for l in "$(vol_dir "$DATA" uv)"/layer-*; do dd if="$l" bs=4096 skip=$((off / 4096)) status=none; done; }
uv_data | sha256sum > "$T/data.before"
[ "$(cut -d' ' -f1 "$T/data.before")" != "$(sha256sum < /dev/null | cut -d' ' -f1)" ] || fail "uv: no data after offset $off"
cryptsetup luksDump --dump-json-metadata "$(hdr uv)" | json 'd["keyslots"]' > "$T/ks.before"
"$CRYPTVOL" cluster kek rotate > "$T/out" || fail "rotate: $(cat "$T/out")"
[ "$(info 'd["currentKekGeneration"], d["previousKekGenerations"], d["rotationState"]')" \
  = "2 [] NoRotation" ] || fail "after rotation: $("$CRYPTVOL" cluster info)"
cryptsetup luksDump --dump-json-metadata "$(hdr uv)" > "$T/meta.json"
[ "$(json '[t["kek_generation"] for t in d["tokens"].values()]' < "$T/meta.json")" = "[2]" ] \
    || fail "token not at generation 2: $(cat "$T/meta.json")"
json 'd["keyslots"]' < "$T/meta.json" | cmp -s - "$T/ks.before" || fail "rotation changed the keyslots"
uv_data | sha256sum | cmp -s - "$T/data.before" \
    || fail "rotation rewrote data"
$MARKS check "$CVD_NBD" kv uv || fail "volumes do not attach after rotation"
"$CRYPTVOL" cluster kek rotate > /dev/null
[ "$(info 'd["currentKekGeneration"]')" = 3 ] || fail "second rotation"
ok "rotation re-wraps tokens, keeps keyslots and data"

# Escrow, then offline recovery of a raw image with only the escrow.
passfile "$T/recovery" "correct horse battery staple"
"$CRYPTVOL" cluster kek export --recovery-passphrase-file "$T/recovery" "$T/escrow.json" > /dev/null
[ "$(stat -c %a "$T/escrow.json")" = 600 ] || fail "escrow file mode $(stat -c %a "$T/escrow.json")"
expect_fail 1 'exists' "$CRYPTVOL" cluster kek export --recovery-passphrase-file "$T/recovery" "$T/escrow.json"
cvd_stop
# The volume's chain directory, read offline as cryptvold reads it.
"$CRYPTVOL" image export "$(vol_dir "$DATA" kv)" "$T/kv.raw" --kek-escrow "$T/escrow.json" \
    --recovery-passphrase-file "$T/recovery" || fail "image export with the escrow"
head -c 4096 "$T/kv.raw" | grep -q 'cryptvol-marker:kv:' || fail "escrow export: wrong data"
passfile "$T/wrong" "not the recovery passphrase"
expect_fail 3 'wrong' "$CRYPTVOL" image export "$(vol_dir "$DATA" kv)" "$T/kv2.raw" \
    --kek-escrow "$T/escrow.json" --recovery-passphrase-file "$T/wrong"
ok "escrow opens a volume's chain offline; a wrong recovery passphrase is refused"

# The KEK is never in the metadata in the clear: without node.key, nothing.
mv "$CVD_DIR/data/node.key" "$T/node.key.saved"
rm -f "$CVD_DIR/admin.sock"
"$CRYPTVOLD" --foreground --data-dir "$CVD_DIR/data" --nbd-listen none \
    --nbd-unix "$CVD_NBD" --admin-socket "$CVD_DIR/admin.sock" --tls off \
    2> "$T/err" && fail "cryptvold started without its node key"
grep -q 'node.key is missing' "$T/err" || fail "missing node key: $(cat "$T/err")"
mv "$T/node.key.saved" "$CVD_DIR/data/node.key"
cvd_start k --tls off
$MARKS check "$CVD_NBD" kv uv || fail "volumes after restart"
"$CRYPTVOL" audit --json > "$T/audit.json"
for e in cluster.encryption.enable cluster.encryption.disable kek.rotation.start \
         kek.rotation.finish kek.export volume.unlock; do
    grep -q "\"$e\"" "$T/audit.json" || fail "audit: no $e event"
done
ok "a missing node key stops the node, saying so; audit has the key events"
