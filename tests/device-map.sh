#!/usr/bin/env bash
# cryptvol device map / unmap: a volume as /dev/nbdN through the kernel's
# NBD client (nbd-client), over TLS on TCP and on the NBD unix socket.
#  * Usage errors exit 2 naming the problem; missing TLS files, a non-root
#    caller and a kernel without the nbd module exit 1 saying so.
#  * Where the nbd module loads: bytes written through the block device
#    are what nbdcopy reads from the daemon (and the reverse), the device
#    has the volume's size, unmap releases it, a mapped device is refused,
#    a volume that does not exist is refused.  Where it cannot load (a
#    container, a kernel without it), the rest is skipped, saying why.
source "$(dirname "$0")/lib.sh"

command -v nbd-client > /dev/null || skip "nbd-client is not installed"
"$CRYPTVOL" tls init "$T/tls" > /dev/null

# ---- usage ----------------------------------------------------------------
expect_fail 2 'device map: needs NAME' "$CRYPTVOL" device map
expect_fail 2 'device map: unexpected argument "b"' "$CRYPTVOL" device map a b
expect_fail 2 'unknown option --bogus' "$CRYPTVOL" device map a --bogus
expect_fail 2 '"/dev/sda" is not an NBD device' "$CRYPTVOL" device map a --device /dev/sda
expect_fail 2 '"/dev/nbdx" is not an NBD device' "$CRYPTVOL" device map a --device /dev/nbdx
expect_fail 2 'port "0" is not 1 to 65535' "$CRYPTVOL" device map a --server 127.0.0.1:0
expect_fail 2 'port "99999" is not 1 to 65535' "$CRYPTVOL" device map a --server '[::1]:99999'
expect_fail 2 'port "x" is not' "$CRYPTVOL" device map a --server host:x
expect_fail 2 '--server and --unix exclude' "$CRYPTVOL" device map a --server h --unix /s
expect_fail 2 '--no-tls contradicts' "$CRYPTVOL" device map a --no-tls --tls-dir "$T/tls"
expect_fail 2 '--unix takes no TLS options' "$CRYPTVOL" device map a --unix /s --tls-dir "$T/tls"
expect_fail 2 'device unmap: needs DEVICE' "$CRYPTVOL" device unmap
expect_fail 2 '"/dev/sda" is not an NBD device' "$CRYPTVOL" device unmap /dev/sda
ok "usage errors: exit 2, one line naming the problem"

mkdir "$T/half"
cp "$T/tls/ca-cert.pem" "$T/half/"
expect_fail 1 "--tls-dir $T/half: client-cert.pem: No such file" "$CRYPTVOL" device map a --tls-dir "$T/half"
if [ "$(id -u)" = 0 ] && [ ! -e /etc/cryptvol/tls/ca-cert.pem ]; then
    expect_fail 1 "--tls-dir /etc/cryptvol/tls: ca-cert.pem: No such file" "$CRYPTVOL" device map a
fi
if command -v setpriv > /dev/null && [ "$(id -u)" = 0 ]; then
    expect_fail 1 'device map needs root' setpriv --reuid 65534 --regid 65534 --clear-groups \
        "$CRYPTVOL" device map a --no-tls
    expect_fail 1 'device unmap needs root' setpriv --reuid 65534 --regid 65534 --clear-groups \
        "$CRYPTVOL" device unmap /dev/nbd0
fi
ok "missing TLS files and a non-root caller are refused, naming what is missing"

[ "$(id -u)" = 0 ] || skip "the rest maps a block device: needs root"
if [ ! -d /sys/module/nbd ]; then
    reason=$(modprobe nbd 2>&1) || true
    if [ ! -d /sys/module/nbd ]; then
        expect_fail 1 'the kernel NBD client is not available: the nbd module is not loaded' \
            "$CRYPTVOL" device map a --no-tls
        ok "no nbd module: refused with $(cat "$T/err")"
        expect_fail 1 '/dev/nbd0: no such NBD device \(the nbd module is not loaded\)' \
            "$CRYPTVOL" device unmap /dev/nbd0
        skip "the nbd kernel module cannot be loaded here (modprobe nbd: ${reason:-no module}): mapping not tried"
    fi
fi

# ---- mapping (the nbd module is loaded) ----------------------------------
PORT=$(free_port)
cvd_start node --tls require --tls-dir "$T/tls" --nbd-listen "127.0.0.1:$PORT"
"$CRYPTVOL" volume create disk --size 64M > /dev/null
MAPPED=()
unmap_all() { local d; for d in "${MAPPED[@]}"; do nbd-client -d "$d"; done; }
on_exit unmap_all

dev=$("$CRYPTVOL" device map disk --server "127.0.0.1:$PORT" --tls-dir "$T/tls") ||
    fail "device map over TLS failed: $dev"
MAPPED+=("$dev")
[[ $dev =~ ^/dev/nbd[0-9]+$ ]] || fail "device map printed '$dev', not /dev/nbdN"
[ -f "/sys/block/${dev#/dev/}/pid" ] || fail "$dev is not connected after map"
[ "$(blockdev --getsize64 "$dev")" = $((64 << 20)) ] || fail "$dev has $(blockdev --getsize64 "$dev") bytes, the volume 64 MiB"
head -c 1048576 /dev/urandom > "$T/in"
dd if="$T/in" of="$dev" bs=64k seek=16 oflag=direct conv=fsync status=none || fail "writing to $dev failed"
nbdcopy "nbds://127.0.0.1:$PORT/disk?tls-certificates=$T/tls" "$T/all"
cmp <(tail -c +$((1048576 + 1)) "$T/all" | head -c 1048576) "$T/in" ||
    fail "what was written to $dev is not what the daemon serves"
ok "device map over TLS: $dev, 64 MiB, a write through it is what the daemon serves"

expect_fail 1 "$dev is already mapped" "$CRYPTVOL" device map disk --device "$dev" \
    --server "127.0.0.1:$PORT" --tls-dir "$T/tls"
"$CRYPTVOL" device unmap "$dev" || fail "device unmap $dev failed"
MAPPED=()
for ((i = 0; i < 50; i++)); do [ -f "/sys/block/${dev#/dev/}/pid" ] || break; sleep 0.1; done
[ ! -f "/sys/block/${dev#/dev/}/pid" ] || fail "$dev still connected after unmap"
expect_fail 1 "$dev is not mapped" "$CRYPTVOL" device unmap "$dev"
ok "unmap releases $dev; a mapped device and an unmapped one are told"

expect_fail 1 'volume nope: nbd-client could not attach' "$CRYPTVOL" device map nope \
    --server "127.0.0.1:$PORT" --tls-dir "$T/tls"
ok "a volume that does not exist is refused"

dev=$("$CRYPTVOL" device map disk --unix "$CVD_NBD") || fail "device map on the unix socket failed: $dev"
MAPPED+=("$dev")
cmp <(dd if="$dev" bs=64k skip=16 count=16 iflag=direct status=none) "$T/in" ||
    fail "reading through $dev (unix socket) does not give the bytes written before"
"$CRYPTVOL" device unmap "$dev"
MAPPED=()
ok "device map on the NBD unix socket (uid): the same bytes"
