#!/usr/bin/env bash
# Failover (docs/replication.md, "Fencing", "Resync and rebuild"): a
# 3-replica volume written through n1 with FUA by tests/tools/ack-writer.py,
# which logs a write only once it was acknowledged; n1 is killed -9 mid-
# write.  An attach on n2 is refused while n1's attach record lives
# (naming n1), and succeeds once n1's lease ran out (the time is printed);
# every acknowledged write reads back through n2, and through n3 once n2
# let go.  n1 restarted is OutOfSync (n2's writes missed it) and resynced
# to InSync; the chain files of all three are then equal.
. "$(dirname "$0")/lib-cluster.sh"
. "$SRC_DIR/tests/lib-repl.sh"

need nbdinfo sha256sum
$PYTHON -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"

since() { awk -v a="$(date +%s.%N)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }

NODE_EXTRA=(--node-lease-ttl 6)
cluster_up 3
passfile "$T/s" "repl-failover secret $$"
cv 1 secret create s --from-file "$T/s" > /dev/null || fail "secret create s"
cv 1 volume create f3 --size 32M --secret s --replicas 3 > "$T/out" 2>&1 ||
    fail "volume create f3 --replicas 3: $(cat "$T/out")"
for n in n1 n2 n3; do wait_rep_state 30 1 f3 "$n" InSync; done

$ACK_WRITER write "$(nbd_uri 1 f3)" --log "$T/acked" --depth 16 \
    --started "$T/started" 2> "$T/writer.err" &
WRITER=$!
on_exit "kill $WRITER 2>/dev/null"
wait_until 20 "no write acknowledged through n1: $(cat "$T/writer.err")" test -e "$T/started"
sleep 2
node_kill 1
killed=$(date +%s.%N)
wait $WRITER || fail "ack-writer: $(cat "$T/writer.err")"
acked=$(wc -l < "$T/acked")
[ "$acked" -gt 100 ] || fail "only $acked writes acknowledged before the kill: $(cat "$T/writer.err")"
ok "n1 killed -9 with writes in flight; $acked acknowledged before: $(cat "$T/writer.err")"

# Right away n1's attach record still lives (its lease has seconds left).
# (The server's message is in libnbd's debug output only.)
if LIBNBD_DEBUG=1 in_ns nbdinfo --size "$(nbd_uri 2 f3)" > /dev/null 2> "$T/err"; then
    early=$(since "$killed")
    [ "${early%%.*}" -ge 2 ] || fail "n2 attached f3 $early s after n1 was killed: before n1's lease could run out"
else
    grep -q "server error message: .*attached on node n1" "$T/err" ||
        fail "attach on n2 while n1's lease lives: $(grep -i 'error' "$T/err" | tail -n 3)"
fi
attach_n2() { in_ns nbdinfo --size "$(nbd_uri 2 f3)" > /dev/null 2> "$T/err"; }
wait_until 30 "no attach on n2 30 s after n1 was killed: $(tail -n 3 "$T/err")" attach_n2
took=$(since "$killed")
ok "attach on n2 refused while n1's record lived, then made ${took} s after the kill (lease ttl 6 s)"

$ACK_WRITER check "$(nbd_uri 2 f3)" --log "$T/acked" > "$T/check" 2>&1 ||
    fail "through n2: $(cat "$T/check")"
ok "through n2: $(cat "$T/check")"

# n3 serves it once n2 let go (clean: nothing to resync).
attach_n3() { in_ns nbdinfo --size "$(nbd_uri 3 f3)" > /dev/null 2> "$T/err"; }
wait_until 20 "no attach on n3 after n2 let go: $(tail -n 3 "$T/err")" attach_n3
$ACK_WRITER check "$(nbd_uri 3 f3)" --log "$T/acked" > "$T/check" 2>&1 ||
    fail "through n3: $(cat "$T/check")"
ok "through n3: $(cat "$T/check")"

# n1 back: it may lack what n2's takeover resynced (or have writes the
# others do not, in flight when it died): OutOfSync until a resync.
node_start 1
wait_rep_state 60 2 f3 n1 InSync
for n in n1 n2 n3; do is_rep_state 2 f3 "$n" InSync || fail "f3 on $n: $(rep_state 2 f3 "$n")"; done
expect_chains_equal 20 f3 1 2 3
ok "n1 restarted: InSync again, f3's chain files equal on n1, n2 and n3"
