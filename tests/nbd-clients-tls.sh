#!/usr/bin/env bash
# cryptvold with the clients users have, all over TLS on TCP: nbdinfo (X.509 and
# PSK), nbdcopy both ways, qemu-img convert and qemu-io with tls-creds-x509
# and tls-creds-psk objects, fio's nbd engine with crc32c verification.
source "$(dirname "$0")/lib.sh"

"$CRYPTVOL" tls init "$T/pki" >/dev/null
mkdir -p "$T/psk"
psktool -u alice -p "$T/psk/keys.psk" >/dev/null
chmod 600 "$T/psk/keys.psk"
port=$(free_port)
cvd_start n1 --tls require --tls-dir "$T/pki" --tls-psk "$T/psk/keys.psk" \
    --nbd-listen "127.0.0.1:$port"

"$CRYPTVOL" volume create vol1 --size 64M >/dev/null
"$CRYPTVOL" volume create old --size 16M --type luks1 >/dev/null

x509="tls-certificates=$T/pki"
psk="tls-psk-file=$T/psk/keys.psk"
tcp_x509() { echo "nbds://127.0.0.1:$port/$1?$x509"; }
tcp_psk() { echo "nbds://alice@127.0.0.1:$port/$1?$psk"; }
unix_x509() { echo "nbds+unix:///$1?socket=$CVD_NBD&$x509"; }

# --- nbdinfo ------------------------------------------------------------
nbdinfo --list "$(tcp_x509 '')" > "$T/list" || fail "nbdinfo --list over X.509"
grep -q 'export="vol1"' "$T/list" || fail "vol1 not listed: $(cat "$T/list")"
grep -q 'export="old"' "$T/list" || fail "old not listed: $(cat "$T/list")"
nbdinfo --list "$(tcp_psk '')" | grep 'export="vol1"' > /dev/null || fail "nbdinfo --list over PSK"
nbdinfo --json "$(unix_x509 vol1)" > "$T/info.json" || fail "nbdinfo vol1 over unix+X.509"
$PYTHON - "$T/info.json" <<'EOF' || fail "nbdinfo: unexpected export properties"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["export-size"] == 64 << 20, e
assert e["is_read_only"] is False, e
assert e["can_flush"] and e["can_fua"] and e["can_trim"] and e["can_zero"], e
assert e["can_multi_conn"], e
assert e["block_size_minimum"] == 1 and e["block_size_preferred"] == 4096, e
assert e["block_size_maximum"] == 32 << 20, e
assert "base:allocation" in e["contexts"], e
EOF
ok "nbdinfo over X.509 and PSK"

# --- nbdcopy ------------------------------------------------------------
head -c 64M /dev/urandom > "$T/data"
nbdcopy "$T/data" "$(tcp_x509 vol1)" || fail "nbdcopy to vol1"
nbdcopy "$(tcp_psk vol1)" "$T/back" || fail "nbdcopy from vol1 over PSK"
cmp "$T/data" "$T/back" || fail "nbdcopy round trip differs"
ok "nbdcopy to and from a volume"

# --- qemu-img and qemu-io -----------------------------------------------
x509_obj="tls-creds-x509,id=tls0,dir=$T/pki,endpoint=client"
psk_obj="tls-creds-psk,id=tls0,dir=$T/psk,username=alice,endpoint=client"
nbd_opts() { echo "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,export=$1,tls-creds=tls0"; }

head -c 16M /dev/urandom > "$T/small"
qemu-img convert -n -f raw "$T/small" --object "$x509_obj" \
    --target-image-opts "$(nbd_opts old)" || fail "qemu-img convert into old (X.509)"
qemu-img convert --object "$psk_obj" --image-opts "$(nbd_opts old)" \
    -O raw "$T/small.back" || fail "qemu-img convert out of old (PSK)"
cmp "$T/small" "$T/small.back" || fail "qemu-img round trip differs"
qemu-io --object "$x509_obj" --image-opts "$(nbd_opts vol1)" \
    -c 'write -P 0xa5 1000 70000' -c 'flush' -c 'read -P 0xa5 1000 70000' \
    -c 'write -z 4096 8192' -c 'read -P 0 4096 8192' > "$T/qio" 2>&1 \
    || fail "qemu-io over X.509: $(cat "$T/qio")"
! grep -qi "fail\|error\|mismatch" "$T/qio" || fail "qemu-io: $(cat "$T/qio")"
qemu-io --object "$psk_obj" --image-opts "$(nbd_opts vol1)" \
    -c 'read -P 0xa5 1000 3096' -c 'read -P 0xa5 12288 58712' > "$T/qio" 2>&1 \
    || fail "qemu-io over PSK: $(cat "$T/qio")"
! grep -qi "fail\|error\|mismatch" "$T/qio" || fail "qemu-io PSK: $(cat "$T/qio")"
ok "qemu-img convert and qemu-io with X.509 and PSK"

# --- fio ----------------------------------------------------------------
# fio's nbd engine refuses file names in its URI (tls-certificates), so it
# runs as an unprivileged user whose $HOME/.pki/libnbd holds the client
# credentials: where libnbd looks when the URI names none.
home=$T/fio-home
mkdir -p "$home/.pki/libnbd"
cp "$T/pki/ca-cert.pem" "$T/pki/client-cert.pem" "$T/pki/client-key.pem" "$home/.pki/libnbd/"
chown -R nobody: "$home"
chmod 711 "$T"
(cd "$home" && setpriv --reuid=nobody --regid=nogroup --clear-groups \
    env HOME="$home" fio --name=verify --ioengine=nbd \
    --uri="nbds://127.0.0.1:$port/vol1" \
    --rw=randwrite --bssplit=4k/50:64k/30:1m/20 --size=32M \
    --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 \
    --output="$home/fio.out") || fail "fio verify over TLS: $(cat "$home/fio.out")"
grep -q "err= 0" "$home/fio.out" || fail "fio reported errors: $(cat "$home/fio.out")"
ok "fio nbd engine over TLS with crc32c verification"

cvd_stop
