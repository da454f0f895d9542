#!/usr/bin/env bash
# The metadata store on etcd (daemon/meta/etcd/) against real etcd 3.4
# members with client TLS: tests/unit/test-meta-etcd.c's groups, run with
# the endpoints and TLS directory in the environment, this script serving
# their requests to stop, restart or kill members (two FIFOs), then an
# etcdctl dump of every key checked for the canary secret's value.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-etcd.sh"

TEST_BIN=${META_ETCD_TEST:-${BUILD_DIR:-$SRC_DIR/build}/tests/test-meta-etcd}
[ -x "$TEST_BIN" ] || fail "no $TEST_BIN (build the tree; ctest sets META_ETCD_TEST)"
CANARY=cvd-canary-5f1c0e2a9b7d4386

# run_group GROUP: the cmocka group, with the control FIFOs served.
run_group() {
    local group=$1 pid cmd rc=0
    rm -f "$T/req" "$T/ack"
    mkfifo "$T/req" "$T/ack"
    # Opened read-write here: neither side's open blocks on the other.
    exec 3<> "$T/req" 4<> "$T/ack"
    ETCD_CTL_REQ=$T/req ETCD_CTL_ACK=$T/ack "$TEST_BIN" "$group" \
        > "$T/$group.log" 2>&1 &
    pid=$!
    on_exit "kill -9 $pid"
    while kill -0 "$pid" 2>/dev/null; do
        read -r -t 0.2 -u 3 cmd || continue
        case "$cmd" in
        stop) etcd_stop ;;
        restart) etcd_restart ;;
        "kill "[0-9]) etcd_kill "${cmd#kill }" ;;
        "restart "[0-9]) etcd_restart "${cmd#restart }" ;;
        *) echo "unknown request '$cmd'" >&4; continue ;;
        esac
        echo ok >&4
    done
    wait "$pid" || rc=$?
    exec 3>&- 4>&-
    cat "$T/$group.log"
    [ "$rc" = 0 ] || fail "test-meta-etcd $group exited $rc"
}

etcd_start "$T/etcd" 127.0.0.1
run_group single
ok "one member: records, invariants, races, leases, locks, watch, audit, unreachable"

# Nothing secret in etcd: the canary's value, plain or base64, is in no
# key or value (and its record is there, so the dump is not empty).
etcdctl_tls get "" --prefix > "$T/dump" || fail "etcdctl get: $(cat "$T/dump")"
grep -q '^/cryptvol-canary/secrets/canary$' "$T/dump" ||
    fail "the canary's record is not in the dump"
# The value in base64 at each of the three alignments it can have inside
# a longer blob, without the characters that depend on its neighbours.
needles=$($PYTHON -c 'import base64,sys
v = sys.argv[1].encode()
for k in range(3):
    b = base64.b64encode(b"\0" * k + v).decode()
    print(b[4 if k else 0:-4])' "$CANARY")
for needle in "$CANARY" $needles; do
    ! grep -qF -- "$needle" "$T/dump" || fail "the canary's value is in etcd ($needle)"
done
ok "no secret value in an etcdctl dump of every key"
etcd_stop

etcd_start_cluster "$T/etcd3" 127.0.0.1 127.0.0.1 127.0.0.1
run_group cluster
ok "three members: one killed, the next endpoint answers"
