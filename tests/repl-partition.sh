#!/usr/bin/env bash
# Partition (docs/replication.md, "Fencing", "A partition"): a 3-replica
# volume written through n1 by tests/tools/fence-writer.py, which logs when
# each write went out and when and how it was answered.  An nftables table
# in the test's namespace then cuts n1 (127.0.0.11) off from etcd and from
# n2 and n3, both ways, but not from its NBD client (127.0.0.1): the nodes'
# connections to etcd and to each other leave from their own peer-listen
# address, so the rules tell n1's from the others'.
#   - n1 acknowledges nothing after the cut, and before its lease could have
#     expired it fences itself: new writes fail at once with EIO;
#   - n2's attach is refused while n1's lease lives and made once it ran out,
#     not before, without waiting for a connection to n1: n1 is not Online
#     then, so it is not dialled but OutOfSync at once (nor does any dial
#     to it wait out the 10 s I/O timeout: the connect has its own 3 s);
#     n2 writes its own records over half of n1's range and over every
#     block n1 sent without an acknowledgement;
#   - the cut healed, n1's writes still fail (fenced, or refused by epoch:
#     its log says which);
#   - through n2 and n3: n2's records where it wrote, every write n1
#     acknowledged elsewhere, nothing of n1's late writes; n1, let go,
#     resyncs to InSync, and the chain files of all three are equal;
#   - n3 cut off from n2's connections only (Online, its lease live): n2's
#     attach dials it and gives up after the connect's 3 s, not the I/O
#     timeout's 10 s; n3 is OutOfSync, then InSync again once healed.
. "$(dirname "$0")/lib-cluster.sh"
. "$SRC_DIR/tests/lib-repl.sh"

need nft sha256sum awk
$PYTHON -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
FW="$PYTHON $SRC_DIR/tests/tools/fence-writer.py"

TTL=6               # --node-lease-ttl, as the other repl tests
BS=4096
BLOCKS=4096         # n1 writes the first 16 MiB, each block once
HALF=$((BLOCKS / 2 * BS))   # n2 writes over [0, HALF)

# secs A B: B - A, to 0.01 s; before A B: A < B.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
before() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

# The cut: dropped on input (not output, where a locally sent packet would
# fail its sender at once with EPERM): the packets are lost, as on a
# broken network.  The namespace has its own ruleset; the table goes with
# it at exit.
cut_n1() {
    nft -f - <<'EOF'
table inet cv_partition {
    set rest {
        type ipv4_addr
        elements = { 127.0.0.10, 127.0.0.12, 127.0.0.13 }
    }
    chain input {
        type filter hook input priority 0; policy accept
        ip saddr 127.0.0.11 ip daddr @rest drop
        ip saddr @rest ip daddr 127.0.0.11 drop
    }
}
EOF
}
heal() { nft delete table inet cv_partition; }
# n2's connections to n3's peer port dropped (n3 stays Online: etcd and
# every other node still reach it).
cut_n3_from_n2() {
    nft -f - <<'EOF'
table inet cv_peer_cut {
    chain input {
        type filter hook input priority 0; policy accept
        ip saddr 127.0.0.12 ip daddr 127.0.0.13 tcp dport 10810 drop
    }
}
EOF
}

# Request workers for the writer's probes while its first writes hang.
NODE_EXTRA=(--node-lease-ttl "$TTL" --nbd-threads 64)
cluster_up 3
passfile "$T/s" "repl-partition secret $$"
cv 1 secret create s --from-file "$T/s" > /dev/null || fail "secret create s"
cv 1 volume create p3 --size 32M --secret s --replicas 3 > "$T/out" 2>&1 ||
    fail "volume create p3 --replicas 3: $(cat "$T/out")"
for n in n1 n2 n3; do wait_rep_state 30 1 p3 "$n" InSync; done

# The connections are addressed as the rules need: n1's to etcd leave from
# 127.0.0.11, and its NBD client's from 127.0.0.1.
$FW write "$(nbd_uri 1 p3)" --log "$T/w1" --blocks "$BLOCKS" --depth 8 \
    --rate 300 --stop "$T/stop" --drain 1 --started "$T/started" \
    2> "$T/writer.err" &
WRITER=$!
on_exit "kill $WRITER 2>/dev/null"
started() { [ -e "$T/started" ] || ! kill -0 "$WRITER"; }
wait_until 20 "no write acknowledged through n1" started
[ -e "$T/started" ] || fail "no write acknowledged through n1: $(cat "$T/writer.err")"
ss -Htn state established > "$T/ss"
grep -q '127\.0\.0\.11:[0-9]* *127\.0\.0\.10:' "$T/ss" ||
    fail "n1 has no etcd connection from 127.0.0.11: $(cat "$T/ss")"
grep -q '127\.0\.0\.1:[0-9]* *127\.0\.0\.11:10809' "$T/ss" ||
    fail "the NBD client's connection to n1 is not from 127.0.0.1: $(cat "$T/ss")"
sleep 1.5
mark1=$(node_log_mark 1)
mark2=$(node_log_mark 2)

cut0=$EPOCHREALTIME
cut_n1 || fail "nft: the partition's table"
cut=$EPOCHREALTIME
before_cut=$(awk -v t="$cut0" '$3 == "ack" && $5 < t' "$T/w1" | wc -l)
ok "n1 cut off from etcd, n2 and n3 (nftables) after $before_cut acknowledged writes"

# n2 attaches (retrying) and writes over half the range and over every
# block n1 has no acknowledgement for.
$FW over "$(nbd_uri 2 p3)" --log "$T/w1" --list "$T/over" --tag 2 \
    --below "$HALF" --retry 40 > "$T/over.out" 2> "$T/over.err" ||
    fail "n2 writing over n1's range: $(cat "$T/over.err")"
val() { sed -n "s/^$1=//p" "$T/over.out"; }
attached=$(val attached)
took=$(secs "$cut0" "$attached")
[ "$(val refusals)" -gt 0 ] ||
    fail "n2 attached p3 at its first try, $took s after the cut: n1's lease cannot have run out"
echo "$(val refused)" | grep -q "attached on node n1" ||
    fail "n2's attach was refused, but not for n1's attach record: $(val refused)"

# What n1 did meanwhile: no acknowledgement after the cut (give or take
# a reply on its way), none after the lease could have expired; the first
# write sent after the cut that failed, failed with EIO before the lease
# could expire (the fence; without it they all wait for the replicas'
# timeouts).
last_ack=$(awk '$3 == "ack" { if ($5 > m) m = $5 } END { printf "%.6f", m }' "$T/w1")
before "$last_ack" "$(awk -v t="$cut" -v l="$TTL" 'BEGIN { printf "%.6f", t + l }')" ||
    fail "n1 acknowledged a write $(secs "$cut0" "$last_ack") s after the cut (lease ttl $TTL s)"
first_eio=$(awk -v t="$cut" '$3 == "err" && $4 > t && $6 == "EIO" {
    if (!m || $5 < m) m = $5 } END { printf "%.6f", m }' "$T/w1")
[ "$first_eio" != 0.000000 ] ||
    fail "n1 failed no write sent after the cut: $(tail -n 5 "$T/w1")"
before "$first_eio" "$(awk -v t="$cut0" -v l="$TTL" 'BEGIN { printf "%.6f", t + l }')" ||
    fail "n1's first EIO came $(secs "$cut0" "$first_eio") s after the cut: not before its lease (ttl $TTL s) could expire"
ok "n1's last acknowledgement $(secs "$cut0" "$last_ack") s after the cut, its first EIO (fenced) $(secs "$cut0" "$first_eio") s after"

# n2 attached only once n1's lease could have expired: that is the fence
# plus the margin (docs/replication.md, "Fencing"; both count from n1's
# last keepalive), and the fence comes at most a probe (0.25 s) before
# n1's first EIO.  1 s of the margin's 2 is left for a loaded machine.
before "$last_ack" "$attached" || fail "n1 acknowledged a write after n2 attached"
before "$(awk -v e="$first_eio" 'BEGIN { printf "%.6f", e + 1 }')" "$attached" ||
    fail "n2 attached p3 $(secs "$first_eio" "$attached") s after n1's fence: before n1's lease could have expired"
ok "n2's attach refused $(val refusals) times ($(val refused)), made $took s after the cut, $(secs "$first_eio" "$attached") s after n1's fence; $(val written) blocks written over"

# n2's attach did not wait for n1: it could take the attach record only
# once n1's lease was gone, and n1's alive key went with it, so n1 was not
# Online then: not dialled, OutOfSync at once.  No dial to n1 waited out
# the I/O timeout's 10 s ("Connection timed out"; an Online node that does
# not answer is the last part's).  No clock is asserted: the log says it.
node_log_since 2 "$mark2" > "$T/n2-since-cut.log"
grep -q "volume p3: replica n1: node n1 is not Online: not dialled, OutOfSync" "$T/n2-since-cut.log" ||
    fail "n2's attach did not leave n1 undialled (not Online): $(grep -v debug "$T/n2-since-cut.log" | grep n1 | tail -n 10)"
if grep "peer n1 (" "$T/n2-since-cut.log" | grep -q "Connection timed out"; then
    fail "a dial from n2 to n1 waited out the I/O timeout: $(grep "peer n1 (" "$T/n2-since-cut.log" | grep "Connection timed out" | head -n 3)"
fi
ok "n2's attach ($took s after the cut) did not dial n1: not Online, OutOfSync at once"

# Healed: n1's writes still fail.
heal || fail "nft: deleting the partition's table"
healed=$EPOCHREALTIME
sleep 2
touch "$T/stop"
wait $WRITER || fail "fence-writer: $(cat "$T/writer.err")"
late=$(awk -v t="$healed" '$3 == "sent" && $4 > t' "$T/w1" | wc -l)
[ "$late" -gt 0 ] || fail "n1's client sent nothing after the heal: $(cat "$T/writer.err")"
late_acked=$(awk -v t="$healed" '$3 == "ack" && $4 > t' "$T/w1" | wc -l)
[ "$late_acked" = 0 ] ||
    fail "n1 acknowledged $late_acked of the $late writes sent after the heal"
node_log_since 1 "$mark1" > "$T/n1-since-cut.log"
fence=$(grep -c "node lease may have expired: stopped writing" "$T/n1-since-cut.log" || true)
stale=$(grep -c "refused epoch" "$T/n1-since-cut.log" || true)
[ "$fence" -gt 0 ] || [ "$stale" -gt 0 ] ||
    fail "n1's log has neither its fence nor an epoch refusal: $(grep -v debug "$T/n1-since-cut.log" | tail -n 20)"
ok "after the heal, n1 failed all $late writes sent ($(cat "$T/writer.err")); its log: $fence fence, $stale epoch refusal lines"

# The data, through n2 and then n3 (each attaches once the other let go).
for n in 2 3; do
    $FW check "$(nbd_uri "$n" p3)" --log "$T/w1" --list "$T/over" --tag 2 \
        --after "$(val snapshot)" > "$T/check" 2>&1 || fail "through n$n: $(cat "$T/check")"
    ok "through n$n: $(cat "$T/check")"
done

# n1 let go of its fenced writer when its client went: it resyncs.
wait_rep_state 60 2 p3 n1 InSync
for n in n1 n2 n3; do is_rep_state 2 p3 "$n" InSync || fail "p3 on $n: $(rep_state 2 p3 "$n")"; done
expect_chains_equal 20 p3 1 2 3
ok "n1 InSync again; p3's chain files equal on n1, n2 and n3"

# An Online node that does not answer (only n2's connections to it cut):
# n2's attach dials it, and the connect gives up after its own timeout,
# well under the 10 s of the I/O timeout (the log says how long it gave
# it); n3 is OutOfSync, and back InSync once healed.
attach_n2() {
    $PYTHON -c 'import nbd, sys
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
h.shutdown()' "$(nbd_uri 2 p3)" > /dev/null 2> "$T/attach.err"
}
# Nobody writes p3 first (n2's resync of n1 let go): an attach on n2
# while n2's repair still held it would share that writer, dialling none.
json() { $PYTHON -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
no_writer() { [ "$(cv 1 volume info p3 --json | json 'd["writer"]')" = None ]; }
wait_until 30 "p3 is still attached after n1's resync" no_writer
mark2=$(node_log_mark 2)
cut_n3_from_n2 || fail "nft: the cut of n2's connections to n3"
t0=$EPOCHREALTIME
# (Once: n1 may attach p3 right after, to resync n3, and refuse another.)
wait_until 60 "n2 attaches p3 with n3 cut off from it: $(cat "$T/attach.err" 2>/dev/null)" attach_n2
t1=$EPOCHREALTIME
node_log_since 2 "$mark2" > "$T/n2-n3.log"
grep -q "replica n3: node n3 is not Online" "$T/n2-n3.log" &&
    fail "n2 took n3 for not Online, but its lease is live: $(grep "node n3 is not Online" "$T/n2-n3.log" | head -n 1)"
waited=$(sed -n 's/.*peer n3 ([^)]*): connect: no answer within \([0-9]*\) ms.*/\1/p' "$T/n2-n3.log" | head -n 1)
[ -n "$waited" ] ||
    fail "n2's attach did not give up its dial of n3 after the connect timeout: $(grep "n3" "$T/n2-n3.log" | grep -v debug | tail -n 10)"
[ "$waited" -lt 10000 ] ||
    fail "n2's dial of n3 waited $waited ms: not under the I/O timeout's 10 s"
if grep "peer n3 (" "$T/n2-n3.log" | grep -q "Connection timed out"; then
    fail "a dial from n2 to n3 waited out the I/O timeout: $(grep "peer n3 (" "$T/n2-n3.log" | grep "Connection timed out" | head -n 3)"
fi
# (Not its state now: n1 may have resynced it already, as it reaches n3.)
grep -q "volume p3: replica n3: OutOfSync: " "$T/n2-n3.log" ||
    fail "n2's attach did not make n3 OutOfSync: $(grep "n3" "$T/n2-n3.log" | grep -v debug | tail -n 10)"
ok "n2 attached p3 with n3 cut off from it ($(secs "$t0" "$t1") s, the attach and its retries): n3's dial gave up after $waited ms, n3 OutOfSync"
nft delete table inet cv_peer_cut || fail "nft: deleting the cut of n3"
wait_rep_state 90 2 p3 n3 InSync
expect_chains_equal 20 p3 1 2 3
ok "n3 InSync again once healed; p3's chain files equal on n1, n2 and n3"
