#!/usr/bin/env bash
# From one node to a cluster (docs/cluster.md): a single node on SQLite
# with cluster encryption (a KEK volume), a secret and a volume it opens,
# a class and a volume of it, an access list; `cryptvol cluster migrate
# --to-etcd` refused while the daemon runs, then run; the node started on
# etcd has every record (cluster id and KEK generation, secrets, class,
# access list, placement) and every volume attaches with its data intact
# (a checksum over NBD); the resealed secret makes a new volume that its
# value opens; nothing secret went to etcd; a second migration (into the
# now non-empty prefix, or of the migrated data dir) is refused.
. "$(dirname "$0")/lib-cluster.sh"

need nbdcopy cryptsetup sha256sum
$PYTHON -c 'import cryptography' 2>/dev/null || skip "python3-cryptography is not installed"
SCAN="$PYTHON $SRC_DIR/tests/tools/etcd-secrets-scan.py"
DATA=$(node_dir 1)/data
sum_of() { in_ns nbdcopy "$(nbd_uri 1 "$1")" - 2> "$T/err" | sha256sum | cut -d' ' -f1; }
migrate() {
    "$CRYPTVOL" cluster migrate --to-etcd --data-dir "$1" \
        --etcd-endpoints "$ETCD_ENDPOINTS" --etcd-tls-dir "$ETCD_TLS_DIR" \
        --node-name "$2" --peer-tls-dir "$CLUSTER/$2" \
        --peer-listen "$(node_addr "${2#n}"):$NODE_PEER_PORT"
}

cluster_certs "$CLUSTER"
etcd_up

# ---- the single node ------------------------------------------------------
node_start_single 1
cv 1 cluster encryption enable --kek-protection software > /dev/null || fail "encryption enable"
CANARY="canary-migrate-secret-$$-$RANDOM"
passfile "$T/s1" "$CANARY"
cv 1 secret create s1 --from-file "$T/s1" > /dev/null || fail "secret create s1"
cv 1 volume create kv --size 4M > /dev/null || fail "volume create kv (KEK only)"
cv 1 volume create v1 --size 4M --secret s1 > /dev/null || fail "volume create v1"
cv 1 class create gold --encrypted --secret s1 > /dev/null || fail "class create gold"
cv 1 volume create vg --size 4M --class gold > /dev/null || fail "volume create vg"
cv 1 volume access v1 --allow "cn:$NBD_CLIENT_CN" --deny cn:mallory > /dev/null || fail "volume access v1"
cv 1 volume access v1 --json > "$T/access.before" || fail "volume access v1 --json"
cv 1 cluster info --json > "$T/info.before"
declare -A SUM
for v in kv v1 vg; do
    head -c 2M /dev/urandom > "$T/$v.data"
    in_ns nbdcopy "$T/$v.data" "$(nbd_uri 1 "$v")" 2> "$T/err" || fail "writing $v: $(cat "$T/err")"
    SUM[$v]=$(sum_of "$v")
    [ "${SUM[$v]}" != "$(sha256sum < /dev/null | cut -d' ' -f1)" ] || fail "$v: no data read: $(cat "$T/err")"
done
ok "a single node with a KEK volume, a secret, a class, an access list"

# ---- migrate: refused while the daemon runs, then done -------------------
expect_fail 1 'another cryptvold \(pid [0-9]+\) is using it' migrate "$DATA" n1
[ -f "$DATA/meta.db" ] || fail "a refused migration moved meta.db"
node_stop 1
migrate "$DATA" n1 > "$T/out" 2>&1 || fail "cluster migrate: $(cat "$T/out")"
[ ! -e "$DATA/meta.db" ] && [ -f "$DATA/meta.db.migrated" ] ||
    fail "after the migration: $(ls "$DATA")"
grep -q 'migrated 3 volumes, 1 secrets, 1 classes, 1 KEK generations' "$T/out" ||
    fail "migrate did not say what it moved: $(cat "$T/out")"
ok "cluster migrate --to-etcd refused while cryptvold runs, then moved the node's metadata"

# ---- the node on etcd ---------------------------------------------------------
node_start 1
cv 1 cluster info --json > "$T/info.after"
for k in clusterId encryptionState kekProtection currentKekGeneration; do
    [ "$(json "d['$k']" < "$T/info.before")" = "$(json "d['$k']" < "$T/info.after")" ] ||
        fail "cluster info $k: $(cat "$T/info.before") before, $(cat "$T/info.after") after"
done
cv 1 node list --json | json '[(n["name"], n["state"]) for n in d["nodes"]]' | grep -qx "\[('n1', 'Online')\]" ||
    fail "node list after the migration: $(cv 1 node list --json)"
for v in kv v1 vg; do
    [ "$(cv 1 volume info "$v" --json | json 'd.get("node"), d["state"]')" = "n1 Available" ] ||
        fail "$v after the migration: $(cv 1 volume info "$v" --json)"
    [ "$(sum_of "$v")" = "${SUM[$v]}" ] || fail "$v: its data changed in the migration ($(cat "$T/err"))"
done
[ "$(cv 1 volume info vg --json | json 'd.get("class")')" = gold ] || fail "vg lost its class"
cv 1 class list > "$T/out" && grep -q '^gold ' "$T/out" || fail "class list: $(cat "$T/out")"
cv 1 volume access v1 --json | cmp -s - "$T/access.before" ||
    fail "v1's access list: $(cv 1 volume access v1 --json), was $(cat "$T/access.before")"
# The resealed secret, unsealed with the cluster seal key, makes a keyslot
# its value opens.
cv 1 volume create v2 --size 4M --secret s1 > /dev/null 2> "$T/err" ||
    fail "volume create v2 with the migrated secret: $(cat "$T/err")"
cryptsetup open --test-passphrase --key-file "$T/s1" "$(vol_dir "$DATA" v2)/header" ||
    fail "v2's header does not open with s1's value: the secret changed in the migration"
etcdctl_tls get --prefix /cryptvol/ -w json > "$T/dump.json"
$SCAN "$T/dump.json" --text "$CANARY" --unseal "$DATA/node.key" "kek-generation-1@n1" \
    "keks/0000000001/n1" > "$T/scan" || fail "secret material in etcd after the migration: $(cat "$T/scan")"
ok "on etcd: the cluster record, KEK, volumes (data intact, placed on n1), class, access list and secret are there"

# ---- a second migration is refused ----------------------------------------------
node_stop 1
expect_fail 1 'no meta.db to migrate \(it was migrated already' migrate "$DATA" n1
node_start_single 2
cv 2 volume create other --size 4M > /dev/null || fail "volume create other on the second single node"
node_stop 2
expect_fail 1 'etcd prefix /cryptvol/ is not empty \(cluster [0-9a-f-]+, 1 nodes, 4 volumes' \
    migrate "$(node_dir 2)/data" n2
[ -f "$(node_dir 2)/data/meta.db" ] || fail "a refused migration moved n2's meta.db"
ok "a second migration into a non-empty prefix is refused, leaving meta.db"
