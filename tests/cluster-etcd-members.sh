#!/usr/bin/env bash
# A three-member etcd (127.0.0.21-23 in the namespace) losing one member
# keeps the cluster working: a node given all three endpoints keeps
# making changes and serving volumes when the member it was using is
# killed (it fails over to the next endpoint), and the changes are in the
# two members left; the killed member comes back and catches up.
. "$(dirname "$0")/lib-cluster.sh"

need nbdinfo
# member_has URL KEY: that member alone has KEY (a linearizable read, which
# needs a leader: retried for 15 s while the members elect one).
member_has() {
    local i
    for ((i = 0; i < 75; i++)); do
        ETCD_ENDPOINTS=$1 etcdctl_tls --command-timeout=2s get "$2" --keys-only > "$T/get" 2>&1 &&
            grep -qx -- "$2" "$T/get" && return 0
        sleep 0.2
    done
    return 1
}
cluster_certs "$CLUSTER"
etcd_start_cluster "$T/etcd" 127.0.0.21 127.0.0.22 127.0.0.23
node_start 1
passfile "$T/s" "three members"
cv 1 secret create s --from-file "$T/s" > /dev/null || fail "secret create s"
cv 1 volume create a --size 4M --secret s > /dev/null || fail "volume create a"
in_ns nbdinfo --size "$(nbd_uri 1 a)" > /dev/null 2> "$T/err" || fail "attach a: $(cat "$T/err")"
[ "$(cv 1 node list --json | json 'd["etcd"]["endpoint"]')" = "${ETCD_ENDPOINTS%%,*}" ] ||
    fail "n1 does not use the first endpoint: $(cv 1 node list --json)"

# The member n1 talks to (the first endpoint) dies.
etcd_kill 1
cv 1 secret create s2 --from-file "$T/s" > "$T/out" 2>&1 || fail "secret create with a member down: $(cat "$T/out")"
cv 1 volume create b --size 4M --secret s2 > "$T/out" 2>&1 || fail "volume create with a member down: $(cat "$T/out")"
in_ns nbdinfo --size "$(nbd_uri 1 b)" > /dev/null 2> "$T/err" || fail "attach b: $(cat "$T/err")"
ep=$(cv 1 node list --json | json 'd["etcd"]["endpoint"], d["etcd"]["reachable"]')
[ "$ep" != "${ETCD_ENDPOINTS%%,*} True" ] && [ "${ep##* }" = True ] ||
    fail "node list with member 1 down: $ep (endpoints $ETCD_ENDPOINTS)"
# In the two members left, each asked alone.
for m in 2 3; do
    url=$(cut -d, -f"$m" <<<"$ETCD_ENDPOINTS")
    member_has "$url" /cryptvol/volumes/b || fail "member $m ($url) does not have volume b: $(cat "$T/get")"
done
ok "with one of three etcd members killed, changes and attaches work (n1 moved to ${ep% *})"

etcd_restart 1
member_has "${ETCD_ENDPOINTS%%,*}" /cryptvol/secrets/s2 ||
    fail "member 1 did not catch up after its restart: $(cat "$T/get")"
cv 1 volume create c --size 4M --secret s > /dev/null || fail "volume create after member 1 is back"
ok "the killed member came back and caught up"
