#!/usr/bin/env bash
# Who may open a volume over NBD (docs/nbd.md): clients must authenticate
# (certificate of our CA, PSK, or the unix socket's uid); per-volume and
# per-class access lists by identity (cn:, dns:, cert:, psk:, uid:); a
# refusal is NBD_REP_ERR_POLICY with the words a missing volume gets, and
# an audit event; LIST shows only what the client may open; INFO and LIST
# unlock nothing (fast over argon2id volumes, no volume.unlock event).
source "$(dirname "$0")/lib.sh"

"$CRYPTVOL" tls init "$T/pki" >/dev/null
# client certificates of the same CA: mkcert DIR CN [DNS-SAN]
mkcert() {
    mkdir -p "$1"
    cp "$T/pki/ca-cert.pem" "$1/"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1/client-key.pem" -subj "/CN=$2" -out "$1/req.pem" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n%s' "${3:+subjectAltName=DNS:$3}" > "$1/ext"
    openssl x509 -req -in "$1/req.pem" -CA "$T/pki/ca-cert.pem" \
        -CAkey "$T/pki/ca-key.pem" -CAcreateserial -days 1 -extfile "$1/ext" \
        -out "$1/client-cert.pem" 2>/dev/null || fail "signing $2"
    chmod 600 "$1/client-key.pem"
}
mkcert "$T/a" tenant-a
mkcert "$T/b" tenant-b b.tenants.example
mkdir "$T/nocert"
cp "$T/pki/ca-cert.pem" "$T/nocert/"
(umask 077; printf 'tenant-a:%s\n' "$(openssl rand -hex 32)" > "$T/keys.psk")

port=$(free_port)
start() {
    cvd_start n --tls require --tls-dir "$T/pki" --tls-psk "$T/keys.psk" \
        --nbd-listen "127.0.0.1:$port" "$@"
}
start
tcp() { echo "nbds://127.0.0.1:$port/$1?tls-certificates=$T/$2"; }
psk() { echo "nbds://tenant-a@127.0.0.1:$port/$1?tls-psk-file=$T/keys.psk"; }
unix_uri() { echo "nbds+unix:///$1?socket=$CVD_NBD&tls-certificates=$T/nocert"; }
AUDIT=$CVD_DIR/data/audit.log
# opens WHO URI: the client must get the volume's size.
opens() { nbdinfo --size "$2" > /dev/null 2> "$T/err" || fail "$1 refused: $(cat "$T/err")"; }
# refused WHO URI: NBD_REP_ERR_POLICY; the server's words in $T/msg.
refused() {
    if LIBNBD_DEBUG=1 nbdinfo --size "$2" > /dev/null 2> "$T/err"; then
        fail "$1 was let in"
    fi
    grep -q "server policy prevents\|Operation not permitted" "$T/err" ||
        fail "$1: not a policy refusal: $(grep -v 'libnbd: debug' "$T/err")"
    grep -o "server error message: .*" "$T/err" | head -1 > "$T/msg"
}

[ "$(stat -c %a "$CVD_NBD")" = 600 ] || fail "NBD unix socket is mode $(stat -c %a "$CVD_NBD")"
"$CRYPTVOL" volume create tenant-a-db --size 8M >/dev/null
"$CRYPTVOL" volume create tenant-b-db --size 8M >/dev/null
"$CRYPTVOL" volume create shared --size 8M >/dev/null
"$CRYPTVOL" class create gold --encrypted >/dev/null
"$CRYPTVOL" volume create g1 --size 8M --class gold >/dev/null

# ---- authentication ------------------------------------------------------
refused "an anonymous TLS client" "$(tcp shared nocert)"
grep -q "needs an authenticated client: TLS with a client certificate of its CA, or a PSK" "$T/msg" ||
    fail "anonymous refusal does not say why: $(cat "$T/msg")"
grep -q '"event":"nbd.authenticate","object":"nbd","result":"refused"' "$AUDIT" ||
    fail "no audit event for the anonymous client: $(tail -3 "$AUDIT")"
opens "tenant-a (no lists yet: open to every authenticated client)" "$(tcp shared a)"
ok "anonymous TLS client refused with a reason and audited; certificate client served"

# ---- per-volume lists ----------------------------------------------------
"$CRYPTVOL" volume access tenant-a-db --allow cn:tenant-a > "$T/out"
grep -q "allow cn:tenant-a" "$T/out" || fail "access --allow output: $(cat "$T/out")"
"$CRYPTVOL" volume access tenant-b-db --allow tenant-b >/dev/null
"$CRYPTVOL" volume access tenant-b-db --show | grep -q "allow cert:tenant-b" ||
    fail "a bare name is not stored as cert:"
"$CRYPTVOL" volume info tenant-a-db | grep -q "allow cn:tenant-a" || fail "volume info does not show the list"
refused "CN=tenant-b on tenant-a-db" "$(tcp tenant-a-db b)"
sed 's/tenant-a-db/NAME/' "$T/msg" > "$T/msg-refused"
refused "a missing volume" "$(tcp no-such-db b)"
sed 's/no-such-db/NAME/' "$T/msg" > "$T/msg-missing"
cmp -s "$T/msg-refused" "$T/msg-missing" ||
    fail "refused and missing answer differently: $(cat "$T/msg-refused") / $(cat "$T/msg-missing")"
grep -q '"actor":"nbd:127.0.0.1:[0-9]* CN=tenant-b","event":"volume.access","object":"volume/tenant-a-db","result":"refused","detail":"not on the access list (access list of volume tenant-a-db)"' "$AUDIT" ||
    fail "no audit event for the refusal: $(grep volume.access "$AUDIT" | tail -2)"
opens "CN=tenant-b on tenant-b-db" "$(tcp tenant-b-db b)"
opens "CN=tenant-a on tenant-a-db" "$(tcp tenant-a-db a)"
"$CRYPTVOL" volume access tenant-b-db --remove cert:tenant-b --allow dns:B.Tenants.Example >/dev/null
opens "CN=tenant-b by its DNS name (any case) on tenant-b-db" "$(tcp tenant-b-db b)"
refused "CN=tenant-a on tenant-b-db" "$(tcp tenant-b-db a)"
ok "CN=tenant-b refused on tenant-a-db like a missing volume, audited; each tenant opens its own"

# ---- PSK identities cannot pass for certificate names --------------------
refused "psk:tenant-a on tenant-a-db (listed as cn:tenant-a)" "$(psk tenant-a-db)"
"$CRYPTVOL" volume access tenant-a-db --allow psk:tenant-a >/dev/null
opens "psk:tenant-a on tenant-a-db" "$(psk tenant-a-db)"
"$CRYPTVOL" volume access tenant-a-db --deny psk:tenant-a >/dev/null
refused "psk:tenant-a denied" "$(psk tenant-a-db)"
ok "PSK identity: not a CN, allowed by psk:, then denied"

# ---- LIST shows only what the client may open ----------------------------
nbdinfo --list "nbds://127.0.0.1:$port/?tls-certificates=$T/b" > "$T/list" 2>&1 ||
    fail "list as tenant-b: $(cat "$T/list")"
for v in tenant-b-db shared g1; do
    grep -q "export=\"$v\"" "$T/list" || fail "tenant-b's list lacks $v: $(grep export= "$T/list")"
done
grep -q 'export="tenant-a-db"' "$T/list" && fail "tenant-b's list shows tenant-a-db"
ok "NBD_OPT_LIST as tenant-b: $(grep -o 'export="[^"]*"' "$T/list" | tr '\n' ' ')"

# ---- the unix socket: the uid is the identity ----------------------------
opens "uid $(id -u) on shared over the unix socket (TLS without a certificate)" "$(unix_uri shared)"
refused "uid $(id -u) on tenant-a-db" "$(unix_uri tenant-a-db)"
"$CRYPTVOL" volume access tenant-a-db --allow "uid:$(id -u)" >/dev/null
opens "uid $(id -u) on tenant-a-db once allowed" "$(unix_uri tenant-a-db)"
ok "unix socket (mode 0600): clients by uid"

# ---- classes -------------------------------------------------------------
"$CRYPTVOL" class access gold --allow cn:tenant-b >/dev/null
"$CRYPTVOL" class info gold | grep -q "allow cn:tenant-b" || fail "class info does not show the list"
"$CRYPTVOL" volume access g1 --show | grep -q "from class gold" || fail "g1 does not show its class's list"
opens "tenant-b on g1 (class list)" "$(tcp g1 b)"
refused "tenant-a on g1 (class list)" "$(tcp g1 a)"
"$CRYPTVOL" volume access g1 --allow cn:tenant-a >/dev/null
opens "tenant-a on g1 (its own list now)" "$(tcp g1 a)"
refused "tenant-b on g1 (its own list replaces the class's)" "$(tcp g1 b)"
"$CRYPTVOL" volume access g1 --clear >/dev/null
opens "tenant-b on g1 (class list again)" "$(tcp g1 b)"
ok "class lists apply to volumes without their own; a volume's own list wins"

# ---- bad input -----------------------------------------------------------
expect_fail 1 'identity "foo:bar": unknown kind' "$CRYPTVOL" volume access shared --allow foo:bar
expect_fail 1 'a uid is a number' "$CRYPTVOL" volume access shared --deny uid:root
expect_fail 1 'volume nope: no such volume' "$CRYPTVOL" volume access nope --allow x
expect_fail 2 'needs at least one identity' "$CRYPTVOL" volume access shared --allow
"$CRYPTVOL" volume access shared --show | grep -q "no list: open" || fail "bad input changed the list"
ok "bad identities and names refused, nothing changed"

# ---- INFO and LIST unlock nothing ---------------------------------------
# Argon2id volumes: each GO derives a key; INFO and LIST must not.
for i in 1 2 3 4; do
    "$CRYPTVOL" volume create "slow$i" --size 8M --pbkdf argon2id \
        --pbkdf-iterations 4 --pbkdf-memory 131072 >/dev/null
done
unlocks() { grep -c '"event":"volume.unlock"' "$AUDIT" || true; }
before=$(unlocks)
t0=$(date +%s%N)
opens "GO on an argon2id volume" "$(tcp slow1 a)"
t1=$(date +%s%N)
[ "$(unlocks)" = $((before + 1)) ] || fail "GO recorded $(( $(unlocks) - before )) unlocks"
nbdinfo --list "nbds://127.0.0.1:$port/?tls-certificates=$T/a" > "$T/list" 2>&1 ||
    fail "list: $(cat "$T/list")"
t2=$(date +%s%N)
[ "$(grep -c 'export="slow' "$T/list")" = 4 ] || fail "list: $(cat "$T/list")"
grep -q "export-size: $((8 << 20))" "$T/list" || fail "INFO gives no size: $(cat "$T/list")"
[ "$(unlocks)" = $((before + 1)) ] || fail "LIST and INFO unlocked: $(grep volume.unlock "$AUDIT" | tail -2)"
go_ms=$(( (t1 - t0) / 1000000 )); list_ms=$(( (t2 - t1) / 1000000 ))
[ "$list_ms" -lt "$go_ms" ] ||
    fail "nbdinfo --list over $(grep -c export= "$T/list") volumes took $list_ms ms, one GO $go_ms ms"
ok "nbdinfo --list (INFO on each of $(grep -c export= "$T/list") volumes) $list_ms ms, one argon2id GO $go_ms ms; no unlock recorded"
cvd_stop

# ---- nbd-access-default closed, anonymous allowed ------------------------
start --nbd-access-default closed
refused "tenant-a on shared (no list, default closed)" "$(tcp shared a)"
opens "tenant-a on tenant-a-db (on its list)" "$(tcp tenant-a-db a)"
cvd_stop
start --nbd-allow-anonymous
grep -q "nbd-allow-anonymous is on" "$CVD_DIR/cryptvold.log" || fail "no warning for nbd-allow-anonymous"
opens "an anonymous TLS client on shared" "$(tcp shared nocert)"
refused "an anonymous TLS client on tenant-a-db" "$(tcp tenant-a-db nocert)"
ok "nbd-access-default closed; nbd-allow-anonymous lets anonymous clients open unlisted volumes, warned"
cvd_stop

# ---- nbd-unix-group ------------------------------------------------------
cvd_start g --tls off --nbd-unix-group "$(id -gn)"
[ "$(stat -c %a:%G "$CVD_NBD")" = "660:$(id -gn)" ] ||
    fail "nbd-unix-group: socket is $(stat -c %a:%G "$CVD_NBD")"
cvd_stop
if "$CRYPTVOLD" --foreground --data-dir "$T/g/data" --nbd-listen none \
    --nbd-unix "$T/g/nbd.sock" --admin-socket "$T/g/admin.sock" --tls off \
    --nbd-unix-group no-such-group-x 2> "$T/err"; then
    fail "an unknown nbd-unix-group was accepted"
fi
grep -q "nbd-unix-group no-such-group-x: no such group" "$T/err" ||
    fail "unknown group: $(cat "$T/err")"
ok "nbd-unix-group: mode 0660 and the group; an unknown group refused"
