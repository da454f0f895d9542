#!/usr/bin/env bash
# volume rekey: a volume moved to another secret while an NBD client is
# connected and writing; the data is intact, the old secret no longer
# opens the image and the new one does (cryptsetup), the number of
# keyslots is unchanged.  Refused: a secret that does not exist, a
# plaintext or Pending volume, and a volume whose stored secret's value was
# changed (wrong key; the image's bytes unchanged).  A generated secret the
# volume no longer uses goes.  Each rekey is in the audit log.
source "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
need cryptsetup
command -v nbdcopy > /dev/null || skip "nbdcopy is not installed"
$PYTHON -c 'import nbd, cryptography' 2> /dev/null || skip "python3-libnbd or python3-cryptography is not installed"
SEAL="$PYTHON $SRC_DIR/tests/tools/seal-secret.py"

cvd_start rk --tls off
DATA=$CVD_DIR/data
# The LUKS header is the chain's header file (docs/store.md).
IMG=$(vol_dir "$DATA" r1)/header
uri() { echo "nbd+unix:///$1?socket=$CVD_NBD"; }
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
opens() { cryptsetup open --test-passphrase --key-file "$1" "$2" 2> /dev/null; }
slots() { cryptsetup luksDump "$1" | grep -cE '^  [0-9]+: luks2'; }

passfile "$T/a" "secret a, the first"
passfile "$T/b" "secret b, the second"
"$CRYPTVOL" secret create a --from-file "$T/a" > /dev/null
"$CRYPTVOL" secret create b --from-file "$T/b" > /dev/null
"$CRYPTVOL" volume create r1 --size 16M --secret a > /dev/null
before=$(slots "$IMG")

# ---- rekey while a client writes ----------------------------------------------
# The writer rewrites 8 MiB of known blocks over one connection until told
# to stop, counting passes in a file; every pass writes the same bytes, so
# the expected content never depends on timing.
cat > "$T/writer.py" <<'PY'
import os, sys, nbd
uri, stop, passes = sys.argv[1:4]
BS, N = 65536, 128
def blk(i):
    return ((b"rekey block %06d / " % i) * 4000)[:BS]
h = nbd.NBD()
h.connect_uri(uri)
n = 0
while True:
    last = os.path.exists(stop)
    for i in range(N):
        h.pwrite(blk(i), i * BS)
    h.flush()
    n += 1
    with open(passes + ".tmp", "w") as f:
        f.write(str(n))
    os.rename(passes + ".tmp", passes)
    if last:
        break
h.shutdown()
PY
passes() { cat "$T/passes" 2> /dev/null || echo 0; }
$PYTHON "$T/writer.py" "$(uri r1)" "$T/stop" "$T/passes" 2> "$T/writer.err" &
WRITER=$!
on_exit "kill $WRITER"
for ((i = 0; i < 200 && $(passes) < 1; i++)); do sleep 0.05; done
[ "$(passes)" -ge 1 ] || fail "the writer did not get going: $(cat "$T/writer.err")"
[ "$("$CRYPTVOL" volume info r1 --json | json 'd["inUse"]')" = True ] || fail "r1 is not in use"
"$CRYPTVOL" volume rekey r1 --secret b > "$T/out"
grep -q '^volume r1: now unlocked by secret b$' "$T/out" || fail "rekey: $(cat "$T/out")"
at=$(passes)
for ((i = 0; i < 200 && $(passes) < at + 2; i++)); do sleep 0.05; done
[ "$(passes)" -ge $((at + 2)) ] || fail "the writer stopped making progress after the rekey"
touch "$T/stop"
wait "$WRITER" || fail "the writer failed: $(cat "$T/writer.err")"
ok "rekeyed while a client was connected and writing ($(passes) passes over 8 MiB)"

$PYTHON -c '
import sys
sys.stdout.buffer.write(b"".join(((b"rekey block %06d / " % i) * 4000)[:65536] for i in range(128)))' > "$T/expect"
nbdcopy "$(uri r1)" "$T/back" || fail "reading r1 after the rekey"
cmp <(head -c 8M "$T/back") "$T/expect" || fail "r1's data is not what was written"
"$CRYPTVOL" volume info r1 --json > "$T/out"
[ "$(json 'd["secret"], d["state"]' < "$T/out")" = "b Available" ] || fail "r1 after rekey: $(cat "$T/out")"
opens "$T/b" "$IMG" || fail "the new secret does not open r1's header"
! opens "$T/a" "$IMG" || fail "the old secret still opens r1's header"
[ "$(slots "$IMG")" = "$before" ] || fail "keyslots: $before before, $(slots "$IMG") after"
ok "data intact; the new secret opens the image, the old one not; $before keyslot(s) before and after"

# ---- refusals -----------------------------------------------------------------
expect_fail 1 '^cryptvol: volume r1: secret "nope" does not exist$' \
    "$CRYPTVOL" volume rekey r1 --secret nope
expect_fail 1 '^cryptvol: volume nope: no such volume$' \
    "$CRYPTVOL" volume rekey nope --secret a
expect_fail 2 'needs NAME and --secret NEW' "$CRYPTVOL" volume rekey r1
"$CRYPTVOL" volume create raw --size 1M --plaintext > /dev/null
expect_fail 1 '^cryptvol: volume raw: is not encrypted \(plaintext\); it has no key to change$' \
    "$CRYPTVOL" volume rekey raw --secret a
"$CRYPTVOL" volume create waits --size 4M --secret not-yet > /dev/null
expect_fail 1 '^cryptvol: volume waits: is Pending: waiting for secret "not-yet"$' \
    "$CRYPTVOL" volume rekey waits --secret a
ok "refused: missing secret, no such volume, plaintext, Pending"

# The value of b changes behind the volume's back: b no longer opens it.
passfile "$T/c" "a value r1 never saw"
# files_sum: the volume's files, all of them (manifest, header, layers).
files_sum() { (cd "$(vol_dir "$DATA" r1)" && sha256sum *); }
sum=$(files_sum)
$SEAL "$DATA" b "$T/c" --update
expect_fail 3 '^cryptvol: volume r1: wrong key: its secret opens no keyslot$' \
    "$CRYPTVOL" volume rekey r1 --secret a
[ "$(files_sum)" = "$sum" ] || fail "a refused rekey changed r1's files: $(diff <(echo "$sum") <(files_sum))"
"$CRYPTVOL" volume info r1 --json > "$T/out"
[ "$(json 'd["secret"], d["state"]' < "$T/out")" = "b Available" ] || fail "r1 after a refused rekey: $(cat "$T/out")"
$SEAL "$DATA" b "$T/b" --update
"$CRYPTVOL" volume rekey r1 --secret a > /dev/null
opens "$T/a" "$IMG" && ! opens "$T/b" "$IMG" || fail "rekey back to a"
ok "a changed secret value: wrong key, nothing written; restored, the rekey works"

# ---- a generated secret goes once unused -------------------------------------
"$CRYPTVOL" volume create g --size 4M > /dev/null
"$CRYPTVOL" volume rekey g --secret a > /dev/null
"$CRYPTVOL" secret list --json > "$T/out"
[ "$(json 'sorted(s["name"] for s in d)' < "$T/out")" = "['a', 'b']" ] ||
    fail "g's generated secret should be gone: $(cat "$T/out")"
[ "$(json '[s["usedBy"] for s in d if s["name"] == "a"][0]' < "$T/out")" = "['g', 'r1']" ] ||
    fail "usedBy: $(cat "$T/out")"
ok "the generated secret of a rekeyed volume is deleted"

# ---- the audit log: each rekey, done or refused, by whom; no value ------------
"$CRYPTVOL" audit --json > "$T/audit"
$PYTHON - "$T/audit" "$(id -u)" <<'PY' || fail "audit: $(cat "$T/audit")"
import json, sys
d = json.load(open(sys.argv[1]))
ev = [(e["object"], e["result"], e.get("detail")) for e in d["events"]
      if e["event"] == "volume.rekey"]
want = [
    ("volume/r1", "ok", "to secret b"),
    ("volume/r1", "refused", 'volume r1: secret "nope" does not exist'),
    ("volume/nope", "refused", "volume nope: no such volume"),
    ("volume/raw", "refused", "volume raw: is not encrypted (plaintext); it has no key to change"),
    ("volume/waits", "refused", 'volume waits: is Pending: waiting for secret "not-yet"'),
    ("volume/r1", "refused", "volume r1: wrong key: its secret opens no keyslot"),
    ("volume/r1", "ok", "to secret a"),
    ("volume/g", "ok", "to secret a"),
]
assert ev == want, ev
assert all(e["actor"].startswith("uid=%s(" % sys.argv[2]) for e in d["events"]
           if e["event"] == "volume.rekey"), d
PY
for f in "$DATA/audit.log" "$CVD_DIR/cryptvold.log"; do
    for v in "secret a, the first" "secret b, the second" "a value r1 never saw"; do
        ! grep -aqF "$v" "$f" || fail "$f holds a secret value"
    done
done
ok "the audit log has every rekey, done or refused, with its actor and no value"

# ---- survives a restart ---------------------------------------------------------
cvd_stop
cvd_start rk --tls off
nbdcopy "$(uri r1)" "$T/back2" || fail "r1 after restart"
cmp <(head -c 8M "$T/back2") "$T/expect" || fail "r1's data after restart"
cvd_stop
# Offline: the raw image the chain stands for (its one layer is
# image-shaped; the header goes over the layer's hole at the front).
cp --sparse=always "$(vol_head "$DATA" r1)" "$T/r1.img"
dd if="$IMG" of="$T/r1.img" conv=notrunc status=none
"$CRYPTVOL" image export "$T/r1.img" - --passphrase-file "$T/a" --length 8M > "$T/offline"
cmp "$T/offline" "$T/expect" || fail "an offline export with the new secret differs"
ok "after a restart: served and exported offline with the new secret"
