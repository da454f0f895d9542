#!/usr/bin/env bash
# Three nodes and etcd in a network namespace, all with TLS (lib-cluster.sh):
# a secret made on n1 opens a volume created and attached on n2; a class
# made on n3 is used by a volume on n1; a volume Pending on n2 becomes
# Available when its secret is created on n3 (a watch, no retry timer);
# n2's volume is refused on n1, naming n2; nothing secret is in etcd (a
# dump searched for the canary passphrases and for the volume keys and the
# KEK, as bytes, hex and base64); cluster encryption enabled on n1 makes a
# volume created on n2 attach there with no secret; a killed node is
# Offline within 15 s in another node's node list.
. "$(dirname "$0")/lib-cluster.sh"

need nbdcopy nbdinfo cryptsetup
$PYTHON -c 'import nbd, cryptography' 2>/dev/null || skip "python3-libnbd or python3-cryptography is not installed"
SCAN="$PYTHON $SRC_DIR/tests/tools/etcd-secrets-scan.py"

state_on() { cv "$1" volume info "$2" --json | json 'd["state"]'; }
is_state() { [ "$(state_on "$1" "$2")" = "$3" ]; }
# write_read N VOL FILE: FILE through node N's NBD into VOL, read back, compared.
write_read() {
    in_ns nbdcopy "$3" "$(nbd_uri "$1" "$2")" 2> "$T/err" ||
        fail "n$1: writing $2 over NBD: $(cat "$T/err")"
    rm -f "$T/rb"
    in_ns nbdcopy "$(nbd_uri "$1" "$2")" "$T/rb" 2> "$T/err" ||
        fail "n$1: reading $2 over NBD: $(cat "$T/err")"
    cmp -s -n "$(stat -c %s "$3")" "$T/rb" "$3" || fail "n$1: $2 does not read back what was written"
}
hdr() { echo "$(vol_dir "$(node_dir "$1")/data" "$2")/header"; }
volume_key() {
    cryptsetup luksDump --batch-mode --dump-volume-key --key-file "$3" "$(hdr "$1" "$2")" |
        $XTS_CHECK dump-key || fail "n$1: cryptsetup luksDump --dump-volume-key of $2 failed"
}

cluster_up 3
head -c 1M /dev/urandom > "$T/data1"
CANARY1="canary-s1-passphrase-$$-$RANDOM"
CANARY2="canary-later-passphrase-$$-$RANDOM"

# ---- a secret from n1 opens a volume on n2 ---------------------------------
passfile "$T/s1" "$CANARY1"
cv 1 secret create s1 --from-file "$T/s1" > /dev/null || fail "secret create s1 on n1"
cv 2 volume create v2 --size 8M --secret s1 > "$T/out" || fail "volume create v2 on n2: $(cat "$T/out")"
cryptsetup open --test-passphrase --key-file "$T/s1" "$(hdr 2 v2)" ||
    fail "v2's header on n2 does not open with s1's value"
write_read 2 v2 "$T/data1"
[ "$(cv 3 volume info v2 --json | json 'd.get("node")')" = n2 ] ||
    fail "n3 does not see v2 placed on n2: $(cv 3 volume info v2 --json)"
ok "a secret made on n1 opens a volume created and attached on n2; n3 sees its placement"

# ---- a class from n3 used on n1 ------------------------------------------------
cv 3 class create c3 --encrypted --secret s1 > /dev/null || fail "class create c3 on n3"
cv 1 volume create vc --size 4M --class c3 > /dev/null || fail "volume create vc --class c3 on n1"
[ "$(cv 1 volume info vc --json | json 'd.get("class"), d.get("secret")')" = "c3 s1" ] ||
    fail "vc: $(cv 1 volume info vc --json)"
write_read 1 vc "$T/data1"
ok "a class made on n3 makes a volume on n1"

# ---- Pending on n2, Available by a secret created on n3 ----------------------
cv 2 volume create pv --size 4M --secret later > /dev/null || fail "volume create pv on n2"
is_state 2 pv Pending || fail "pv is $(state_on 2 pv), not Pending"
passfile "$T/later" "$CANARY2"
cv 3 secret create later --from-file "$T/later" > /dev/null || fail "secret create later on n3"
wait_until 10 "pv on n2 is not Available 10 s after its secret was made on n3" \
    is_state 2 pv Available
write_read 2 pv "$T/data1"
ok "Pending on n2 made Available by a secret created on n3"

# ---- attach on the wrong node -------------------------------------------------
if LIBNBD_DEBUG=1 in_ns nbdinfo --size "$(nbd_uri 1 v2)" > /dev/null 2> "$T/err"; then
    fail "n1 served n2's volume v2"
fi
grep -q 'server error message: .*v2.*node n2' "$T/err" ||
    fail "attach of v2 on n1: $(grep -i 'error' "$T/err" | tail -n 3)"
ok "attach of n2's volume on n1 refused, naming n2"

# ---- nothing secret in etcd --------------------------------------------------
keys=()
for k in "$(volume_key 2 v2 "$T/s1")" "$(volume_key 1 vc "$T/s1")" "$(volume_key 2 pv "$T/later")"; do
    [ ${#k} -ge 64 ] || fail "a volume key of ${#k} hex digits"
    keys+=(--key "$k")
done
etcdctl_tls get --prefix /cryptvol/ -w json > "$T/dump.json" || fail "etcdctl get --prefix"
$PYTHON - "$T/dump.json" <<'EOF' || fail "the dump lacks the records it should have"
import base64, json, sys
names = {base64.b64decode(kv["key"]).decode() for kv in json.load(open(sys.argv[1]))["kvs"]}
want = ["/cryptvol/secrets/s1", "/cryptvol/secrets/later", "/cryptvol/volumes/v2",
        "/cryptvol/sealkeys/n1", "/cryptvol/sealkeys/n2", "/cryptvol/sealkeys/n3"]
missing = [w for w in want if w not in names]
if missing:
    sys.exit("missing %s in %s" % (missing, sorted(names)))
EOF
$SCAN "$T/dump.json" --text "$CANARY1" --text "$CANARY2" "${keys[@]}" > "$T/scan" ||
    fail "secret material in etcd: $(cat "$T/scan")"
# The control: the same scan finds them once they are there.
if $SCAN "$T/dump.json" --text "$CANARY1" "${keys[@]}" --plant > "$T/scan"; then
    fail "the scan does not find planted keys: $(cat "$T/scan")"
fi
grep -q 'as base64 in base64' "$T/scan" || grep -q 'as bytes in base64' "$T/scan" ||
    fail "planted: $(cat "$T/scan")"
ok "no passphrase or volume key in etcd"

# ---- cluster encryption enabled on n1; a KEK volume on n2 -------------------
for v in v2 pv; do cv 2 volume delete "$v" > /dev/null || fail "volume delete $v"; done
cv 1 volume delete vc > /dev/null || fail "volume delete vc"
cv 1 cluster encryption enable --kek-protection software > /dev/null ||
    fail "cluster encryption enable on n1"
wait_until 10 "n2 does not see cluster encryption Enabled" \
    bash -c "CRYPTVOL_SOCKET=$(node_sock 2) $CRYPTVOL cluster info --json | grep -q '\"encryptionState\": *\"Enabled\"'"
cv 2 volume create kv --size 4M > /dev/null || fail "volume create kv on n2"
[ "$(cv 2 volume info kv --json | json 'd.get("secret")')" = None ] || fail "kv got a stored secret"
write_read 2 kv "$T/data1"
cryptsetup luksDump "$(hdr 2 kv)" | grep -q cryptvol-kek || fail "kv has no cryptvol-kek token"
# The KEK itself, opened from n2's sealed copy with n2's node key, is
# nowhere else in etcd.
etcdctl_tls get --prefix /cryptvol/ -w json > "$T/dump.json" || fail "etcdctl get --prefix"
$SCAN "$T/dump.json" --unseal "$(node_dir 2)/data/node.key" "kek-generation-1@n2" \
    "keks/0000000001/n2" --unseal "$(node_dir 3)/data/node.key" "cluster-seal-key@n3" \
    "sealkeys/n3" --text "$CANARY1" > "$T/scan" ||
    fail "the KEK or the seal key in etcd: $(cat "$T/scan")"
ok "cluster encryption enabled on n1: a volume created on n2 attaches there with no secret; neither the KEK nor the seal key is in etcd"

# ---- a killed node is Offline within 15 s ----------------------------------
offline() {
    cv 1 node list --json | json '[n["state"] for n in d["nodes"] if n["name"] == "n3"][0]' |
        grep -qx Offline
}
[ "$(cv 1 node list --json | json '[n["state"] for n in d["nodes"] if n["name"] == "n3"][0]')" = Online ] ||
    fail "n3 is not Online before the kill: $(cv 1 node list --json)"
node_kill 3
start=$SECONDS
wait_until 15 "n3 killed but not Offline in n1's node list" offline
ok "a killed node is Offline after $((SECONDS - start)) s"
