#!/usr/bin/env bash
# cryptvold's NBD server with the clients users have: nbdinfo (list, info,
# map), nbdcopy both ways, qemu-img and qemu-io (pattern writes, FUA,
# zeroes, discard), fio's nbd engine; over a unix socket and TCP; then TLS
# with X.509 (qemu's tls-creds-x509 and libnbd), PSK, and the failures: a
# wrong PSK and a client certificate from another CA are refused and
# logged, and the daemon keeps serving.
source "$(dirname "$0")/lib.sh"

# Built with the CLI (ctest runs the same build): missing is a build regression.
[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built: $CRYPTVOLD"
for p in nbdinfo nbdcopy qemu-img qemu-io; do
    command -v $p > /dev/null || skip "$p is not installed"
done

PORT=$(free_port)
cvd_start plain --tls off --nbd-allow-anonymous --nbd-listen "127.0.0.1:$PORT"
passfile "$T/secret" 'nbd clients'
"$CRYPTVOL" secret create vol1 --from-file "$T/secret" > /dev/null 2> "$T/err" ||
    fail "secret create: $(cat "$T/err")"
"$CRYPTVOL" volume create vol1 --size 64M --secret vol1 > /dev/null
U="nbd+unix:///vol1?socket=$CVD_NBD"

nbdinfo --list "nbd+unix:///?socket=$CVD_NBD" > "$T/list"
grep -q 'export="vol1"' "$T/list" || fail "nbdinfo --list: $(cat "$T/list")"
nbdinfo --json "$U" > "$T/info"
"$PYTHON" - "$T/info" <<'PY' || fail "nbdinfo: $(cat "$T/info")"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["export-size"] == 64 << 20, e
assert e["can_multi_conn"] and e["can_fua"] and e["can_trim"] and e["can_zero"]
assert not e["can_fast_zero"] and not e["is_read_only"]
assert e["block_size_minimum"] == 1 and e["block_size_maximum"] == 32 << 20
PY
# map_is WANT: nbdinfo --map's extents, "offset length description" a line.
map_is() {
    nbdinfo --map "$U" | awk '{print $1, $2, $4}' > "$T/map"
    [ "$(cat "$T/map")" = "$1" ] || fail "nbdinfo --map: $(cat "$T/map"); expected $1"
}
# A fresh volume holds nothing: one hole that reads as zeros.
map_is "0 $((64 << 20)) hole,zero"
ok "nbdinfo: list, flags, block sizes, map (a fresh volume is a hole)"

head -c 48M /dev/urandom > "$T/data"
nbdcopy "$T/data" "$U"
nbdcopy "nbd://127.0.0.1:$PORT/vol1" "$T/back"
cmp <(head -c 48M "$T/back") "$T/data" || fail "nbdcopy over TCP read back different bytes"
cmp <(tail -c 16M "$T/back") <(head -c 16M /dev/zero) || fail "the unwritten 16 MiB do not read as zeros"
map_is "0 $((48 << 20)) data
$((48 << 20)) $((16 << 20)) hole,zero"
ok "nbdcopy: 48 MiB in over unix, out over TCP; the rest reads zeros and maps as a hole"

qemu-img info "nbd:unix:$CVD_NBD:exportname=vol1" | grep "64 MiB" > /dev/null || fail "qemu-img info"
qemu-io -f raw "nbd:unix:$CVD_NBD:exportname=vol1" \
    -c 'write -P 0x5a 1000 70000' -c 'write -f -P 0x6b 2M 64k' \
    -c 'write -z 3M 1M' -c 'discard 5M 1M' -c 'flush' > "$T/qio" || fail "qemu-io writes: $(cat "$T/qio")"
qemu-io -f raw -r "nbd:unix:$CVD_NBD:exportname=vol1" \
    -c 'read -P 0x5a 1000 70000' -c 'read -P 0x6b 2M 64k' \
    -c 'read -P 0 3M 1M' > "$T/qio" || fail "qemu-io read back: $(cat "$T/qio")"
grep -q "Pattern verification failed" "$T/qio" && fail "qemu-io: $(cat "$T/qio")"
# Zeroed and discarded whole blocks are holes again; the rest is data.
map_is "0 $((3 << 20)) data
$((3 << 20)) $((1 << 20)) hole,zero
$((4 << 20)) $((1 << 20)) data
$((5 << 20)) $((1 << 20)) hole,zero
$((6 << 20)) $((42 << 20)) data
$((48 << 20)) $((16 << 20)) hole,zero"
qemu-io -f raw -r "nbd:unix:$CVD_NBD:exportname=vol1" -c 'read -P 0 5M 1M' > "$T/qio" ||
    fail "qemu-io read of the discarded range: $(cat "$T/qio")"
grep -q "Pattern verification failed" "$T/qio" && fail "discarded range does not read zeros: $(cat "$T/qio")"
ok "qemu-io: unaligned, FUA, zero, discard, flush; read back; zeroed and discarded ranges map as holes"

if command -v fio > /dev/null; then
    fio --name=v --ioengine=nbd --uri="$U" --rw=randrw --bs=4k --iodepth=32 \
        --size=32M --verify=crc32c --do_verify=1 --numjobs=1 > "$T/fio" 2>&1 ||
        fail "fio verify: $(tail -5 "$T/fio")"
    ok "fio: random 4 KiB qd32 with crc32c verification"
else
    echo "note: fio is not installed: its verified random I/O did not run" >&2
fi
# What the volume holds now (qemu-io and fio wrote over the copy).
nbdcopy "$U" "$T/final"
cvd_stop

# TLS: X.509 with client certificates required, and a PSK.
"$CRYPTVOL" tls init "$T/tls" > /dev/null
"$CRYPTVOL" tls init "$T/other" > /dev/null
(umask 077; printf 'alice:%s\n' "$(openssl rand -hex 32)" > "$T/keys.psk"
 printf 'alice:%s\n' "$(openssl rand -hex 32)" > "$T/wrong.psk")
cvd_start tls --tls require --tls-dir "$T/tls" --tls-psk "$T/keys.psk" \
    --tls-verify-peer --data-dir "$T/plain/data"
S="socket=$CVD_NBD"
nbdinfo "nbds+unix:///vol1?$S&tls-certificates=$T/tls" | grep "with TLS" > /dev/null ||
    fail "nbdinfo over TLS (X.509)"
nbdcopy "nbds+unix:///vol1?$S&tls-certificates=$T/tls" "$T/back2"
cmp "$T/back2" "$T/final" || fail "TLS read back different bytes"
nbdinfo --list "nbds+unix://alice@/?$S&tls-psk-file=$T/keys.psk" | grep vol1 > /dev/null ||
    fail "nbdinfo over TLS (PSK)"
qemu-img info --object "tls-creds-x509,id=t0,dir=$T/tls,endpoint=client" \
    --image-opts "driver=nbd,server.type=unix,server.path=$CVD_NBD,export=vol1,tls-creds=t0,tls-hostname=localhost" |
    grep -q "64 MiB" || fail "qemu-img over TLS"
ok "TLS: nbdinfo and nbdcopy with X.509, nbdinfo with PSK, qemu-img with tls-creds-x509"

nbdinfo "nbds+unix://alice@/vol1?$S&tls-psk-file=$T/wrong.psk" > /dev/null 2>&1 &&
    fail "a wrong PSK was accepted"
nbdinfo "nbds+unix:///vol1?$S&tls-certificates=$T/other" > /dev/null 2>&1 &&
    fail "a client certificate from another CA was accepted"
nbdinfo "nbd+unix:///vol1?$S" > /dev/null 2>&1 && fail "plaintext accepted under --tls require"
grep -q "TLS handshake failed: .*binder" "$CVD_DIR/cryptvold.log" || fail "wrong PSK not logged"
grep -q "TLS handshake failed: .*certificate" "$CVD_DIR/cryptvold.log" || fail "foreign certificate not logged"
nbdinfo "nbds+unix:///vol1?$S&tls-certificates=$T/tls" > /dev/null || fail "not serving after refusals"
ok "TLS: wrong PSK, foreign client certificate and plaintext refused and logged"
cvd_stop
