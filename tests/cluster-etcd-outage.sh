#!/usr/bin/env bash
# etcd stopped for 30 s, then restarted: a volume served through an open
# NBD connection keeps serving writes and reads all along; changes (secret
# create, volume create) are refused meanwhile with 503 Unavailable and a
# message naming etcd; node list and the log say etcd is unreachable; once
# etcd is back the node reconnects by itself and everything works again.
. "$(dirname "$0")/lib-cluster.sh"

$PYTHON -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
need curl nbdinfo
OUTAGE=${OUTAGE:-30}

cluster_up 1
passfile "$T/s" "outage secret"
cv 1 secret create s --from-file "$T/s" > /dev/null || fail "secret create s"
cv 1 volume create v --size 8M --secret s > /dev/null || fail "volume create v"

# One NBD connection held open across the outage (tests/tools/nbd-hold.py).
coproc HOLD { in_ns "$PYTHON" "$SRC_DIR/tests/tools/nbd-hold.py" "$(nbd_uri 1 v)"; }
hold() {
    local line
    echo "$*" >&"${HOLD[1]}"
    read -r -t 20 line <&"${HOLD[0]}" || fail "nbd-hold: no answer to '$*'"
    echo "$line"
}
io_round() {
    local r
    r=$(hold write "$1" "mark-$2") && [ "$r" = ok ] || fail "$3: write at $1: $r"
    r=$(hold flush) && [ "$r" = ok ] || fail "$3: flush: $r"
    r=$(hold read "$1" $((5 + ${#2}))) && [ "$r" = "ok mark-$2" ] || fail "$3: read at $1: $r"
}
read -r -t 20 line <&"${HOLD[0]}" && [ "${line%% *}" = connected ] ||
    fail "nbd-hold did not connect: ${line:-nothing}"
io_round 0 a0 "before the outage"
etcd_reachable() { cv 1 node list --json | json 'd["etcd"]["reachable"]'; }
[ "$(etcd_reachable)" = True ] || fail "node list before the outage: $(cv 1 node list --json)"
admin_post() {  # PATH BODY: prints "BODY\nCODE"
    curl -sS --unix-socket "$(node_sock 1)" -w '\n%{http_code}\n' -X POST -d "$2" "http://localhost$1"
}

mark=$(node_log_mark 1)
etcd_stop
t0=$SECONDS
# ---- during the outage -----------------------------------------------------
expect_fail 1 'etcd.*127\.0\.0\.10|unreachable' cv 1 secret create s2 --from-file "$T/s"
out=$(admin_post /v1/volumes '{"name":"w","size":4194304,"secret":"s"}')
[ "$(tail -n 1 <<<"$out")" = 503 ] || fail "POST /v1/volumes during the outage: $out"
[ "$(head -n 1 <<<"$out" | json 'd["code"]')" = Unavailable ] || fail "POST /v1/volumes: $out"
head -n 1 <<<"$out" | grep -q 'etcd' || fail "the refusal does not name etcd: $out"
ok "changes refused during the outage with 503 Unavailable, naming etcd"
wait_until 10 "node list does not say etcd is unreachable" bash -c \
    "CRYPTVOL_SOCKET=$(node_sock 1) $CRYPTVOL node list --json | grep -q '\"reachable\": *false'"
cv 1 node list > "$T/out" || fail "node list during the outage"
grep -qi 'unreachable' "$T/out" || fail "node list (human) does not say etcd is unreachable: $(cat "$T/out")"
i=1
while ((SECONDS - t0 < OUTAGE)); do
    io_round $((i * 65536)) "b$i" "$((SECONDS - t0)) s into the outage"
    i=$((i + 1))
    sleep 3
done
ok "the open connection wrote and read $i times over $((SECONDS - t0)) s without etcd"
node_log_since 1 "$mark" | grep -qiE 'unreachable: etcd https://127\.0\.0\.10' ||
    fail "the log does not say etcd is unreachable: $(node_log_since 1 "$mark" | tail -n 5)"

# ---- etcd back --------------------------------------------------------------
etcd_restart
reconnected() { cv 1 secret create s2 --from-file "$T/s"; }
wait_until 20 "secret create still refused 20 s after etcd came back" reconnected
[ "$(etcd_reachable)" = True ] || fail "node list after the outage: $(cv 1 node list --json)"
cv 1 volume create w --size 4M --secret s2 > /dev/null || fail "volume create after the outage"
in_ns nbdinfo --size "$(nbd_uri 1 w)" > /dev/null 2> "$T/err" || fail "attach of w: $(cat "$T/err")"
io_round 0 c0 "after the outage"
r=$(hold read 65536 7) && [ "$r" = "ok mark-b1" ] || fail "data written during the outage: $r"
ok "after the restart: changes work again, a new volume attaches, the old connection still serves"
echo quit >&"${HOLD[1]}"
