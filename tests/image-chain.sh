#!/usr/bin/env bash
# The offline image commands on a volume's chain directory
# (DATA-DIR/volumes/NAME/, docs/store.md), as disaster recovery needs them
# now that a volume is no longer one image file:
#  * `image info DIR` reads the header and gives the volume's size;
#  * `image export DIR` reads the volume as cryptvold does: each block from
#    the newest layer holding it (a snapshot's layer under the head), blocks
#    no layer holds as zeros; a wrong passphrase exits 3;
#  * a clone with its own format needs its parent's key too: the error
#    names the parent;
#  * nothing writes to a chain directory behind cryptvold: `image import
#    DIR` is refused, and leaves every file as it was.
# (tests/cluster-kek.sh exports a chain with a KEK escrow.)
source "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
"$PYTHON" -c 'import nbd' 2> /dev/null ||
    fail "python3-libnbd is not installed (scripts/install-deps.sh installs it)"
json() { $PYTHON -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
api() {
    curl -sS --unix-socket "$CVD_DIR/admin.sock" -X "$1" -o "$T/api.out" \
        -w '%{http_code}' "http://localhost$2" "${@:3}"
}
# nbd_write NAME OFFSET FILE
nbd_write() {
    "$PYTHON" - "$CVD_NBD" "$@" <<'PY' || fail "NBD write of $3 at $2 to $1"
import sys, nbd
sock, name, off, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
h = nbd.NBD()
h.connect_uri("nbd+unix:///%s?socket=%s" % (name, sock))
h.pwrite(open(path, "rb").read(), off)
h.flush()
h.shutdown()
PY
}

cvd_start ic --tls off
DATA=$CVD_DIR/data
passfile "$T/pw" 'the volume secret'
passfile "$T/pw2" 'the clone secret'
passfile "$T/wrong" 'not the volume secret'
"$CRYPTVOL" secret create pw --from-file "$T/pw" > /dev/null
"$CRYPTVOL" secret create pw2 --from-file "$T/pw2" > /dev/null
"$CRYPTVOL" volume create v --size 16M --secret pw > /dev/null

# 1 MiB at 0, a snapshot, then 256 KiB over it at 512 KiB: the head holds
# only those, the snapshot's layer the rest of the first MiB.
head -c 1M /dev/urandom > "$T/a"
head -c 256K /dev/urandom > "$T/b"
nbd_write v 0 "$T/a"
[ "$(api POST /v1/volumes/v/snapshots -d '{"name":"s1"}')" = 201 ] ||
    fail "snapshot create: $(cat "$T/api.out")"
nbd_write v $((512 * 1024)) "$T/b"
[ "$(api POST /v1/volumes -d '{"name":"c","parent":"v@s1","secret":"pw2"}')" = 201 ] ||
    fail "clone with its own format: $(cat "$T/api.out")"
off=$("$CRYPTVOL" volume info v --json | json 'd["dataOffset"]')
cvd_stop
VD=$(vol_dir "$DATA" v)
[ "$(json 'len(d["layers"])' < "$VD/chain")" = 2 ] ||
    fail "v is not a chain of two layers: $(cat "$VD/chain")"
# The whole volume as it should read.
cp "$T/a" "$T/want"
dd if="$T/b" of="$T/want" bs=1K seek=512 conv=notrunc status=none
truncate -s 16M "$T/want"

"$CRYPTVOL" image info "$VD" --json > "$T/info" || fail "image info on v's chain directory"
[ "$(json 'd["type"], d["size"], d["dataOffset"]' < "$T/info")" = "luks2 16777216 $off" ] ||
    fail "image info on v's chain: $(cat "$T/info")"
ok "image info DIR: the header's format and data offset, the volume's size"

"$CRYPTVOL" image export "$VD" "$T/got" --passphrase-file "$T/pw" ||
    fail "image export of v's chain directory"
cmp "$T/got" "$T/want" >&2 ||
    fail "image export of v's chain: not the head over the snapshot's layer over zeros"
"$CRYPTVOL" image export "$VD" - --passphrase-file "$T/pw" --offset 768K --length 512K > "$T/part" ||
    fail "image export of part of v's chain to stdout"
cmp "$T/part" <(tail -c +$((768 * 1024 + 1)) "$T/want" | head -c 512K) >&2 ||
    fail "image export --offset 768K --length 512K of v's chain differs"
expect_fail 3 'wrong passphrase' "$CRYPTVOL" image export "$VD" "$T/x" \
    --passphrase-file "$T/wrong"
ok "image export DIR: newest layer first, holes as zeros; a wrong passphrase exits 3"

expect_fail 3 "^cryptvol: .*/c: reads through its parent volume v, whose own key this does not open \(flatten the clone first: cryptvol volume flatten\): .*wrong passphrase" \
    "$CRYPTVOL" image export "$(vol_dir "$DATA" c)" "$T/x" --passphrase-file "$T/pw2"
ok "a clone with its own format: the error names the parent whose key is missing"

sums() { (cd "$VD" && sha256sum -- *); }
sums > "$T/sums.before"
expect_fail 1 "^cryptvol: $VD: a volume's chain directory is read here, never written" \
    "$CRYPTVOL" image import "$T/b" "$VD" --passphrase-file "$T/pw"
sums | cmp -s - "$T/sums.before" || fail "a refused import changed v's files"
ok "image import DIR is refused and changes nothing"
