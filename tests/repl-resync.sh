#!/usr/bin/env bash
# Resync (docs/replication.md, "Resync and rebuild"): a 3-replica volume
# written by fio with crc32c verification through n1 while n3 is killed
# -9; the writes go on (n3 OutOfSync, its regions recorded); n3 comes back
# and is resynced by n1 from its record while fio still writes, and is
# InSync again, by a resync, not a rebuild; fio's verification passes;
# once n1 let go (flushed), the header and layer files of n1, n2 and n3
# are equal byte for byte.  Then n3 is killed and started again with no
# write meanwhile: it comes back InSync without a copy of anything.  Then
# the copier is killed -9 mid-resync (n1, which opened the volume itself
# to resync n3): n2 resyncs n3 from its own record once n1's lease ran
# out, n1 is resynced when it is back, and all three are equal again.
. "$(dirname "$0")/lib-cluster.sh"
. "$SRC_DIR/tests/lib-repl.sh"

need fio setpriv sha256sum
$PYTHON -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"

NODE_EXTRA=(--node-lease-ttl 6)
cluster_up 3
passfile "$T/s" "repl-resync secret $$"
cv 1 secret create s --from-file "$T/s" > /dev/null || fail "secret create s"
cv 1 volume create r3 --size 48M --secret s --replicas 3 > "$T/out" 2>&1 ||
    fail "volume create r3 --replicas 3: $(cat "$T/out")"
for n in n1 n2 n3; do wait_rep_state 30 1 r3 "$n" InSync; done
ok "a 3-replica volume, InSync on n1, n2 and n3"

# fio writes 32 MiB at 2 MiB/s (about 16 s), then verifies all of it.
mark1=$(node_log_mark 1)
fio_nbd 1 r3 --name=resync --rw=randwrite --bssplit=4k/50:64k/40:1m/10 \
    --size=32M --rate=2m --iodepth=8 --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --output="$T/fio-home/fio.out" &
FIO=$!
on_exit "kill $FIO 2>/dev/null"
sleep 3
node_kill 3
wait_rep_state 20 1 r3 n3 OutOfSync
ok "n3 killed -9 under load: OutOfSync"
sleep 3
kill -0 $FIO || fail "fio ended while n3 was away: $(cat "$T/fio-home/fio.out")"
node_start 3
wait_rep_state 60 1 r3 n3 InSync
running=no
kill -0 $FIO 2>/dev/null && running=yes
ok "n3 back and InSync again (fio still writing when it was: $running)"

wait $FIO || fail "fio through n1 failed: $(cat "$T/fio-home/fio.out")"
grep -q "err= 0" "$T/fio-home/fio.out" || fail "fio reported errors: $(cat "$T/fio-home/fio.out")"
ok "fio's writes through n1 verified (crc32c)"

node_log_since 1 "$mark1" > "$T/n1.log"
grep -q "volume r3: replica n3: InSync after a resync" "$T/n1.log" ||
    fail "n3 was not resynced by n1: $(grep 'replica n3' "$T/n1.log" | tail -n 5)"
! grep -q "volume r3: replica n3: rebuild begins" "$T/n1.log" ||
    fail "n3 was rebuilt, not resynced: $(grep 'replica n3' "$T/n1.log" | tail -n 5)"
ok "n3 caught up by a resync of its missed regions: $(grep -o 'resync of [0-9]* bytes' "$T/n1.log" | tail -n 1)"

expect_chains_equal 20 r3 1 2 3
ok "r3's header and layer files are equal on n1, n2 and n3"

# No write while n3 is away: nothing to copy, InSync again.
node_kill 3
node_start 3
sleep 1
wait_rep_state 30 1 r3 n3 InSync
expect_chains_equal 10 r3 1 2 3
ok "n3 killed and back with no write meanwhile: InSync, files equal"

# ---- the copier killed -9 mid-resync ------------------------------------------
# n3 misses a whole volume's writes; nobody writes r3 when it is back, so
# n1 (its first InSync replica) opens it and resyncs n3, and is killed -9
# as soon as it began.  The records are on n2 too: once n1's attach record
# went with its lease, n2 resyncs n3 from its own; n1, back, is resynced
# too (n2's attach found it gone).
node_kill 3
head -c 48M /dev/urandom > "$T/big"
nbd_put 1 r3 "$T/big" 0
mark1=$(node_log_mark 1)
mark2=$(node_log_mark 2)
node_start 3
for ((i = 0; i < 1500; i++)); do
    node_log_since 1 "$mark1" | grep -q "volume r3: replica n3: resync of" && break
    sleep 0.02
done
[ "$i" -lt 1500 ] || fail "n1 began no resync of n3 in 30 s: $(node_log_since 1 "$mark1" | grep 'r3' | tail -n 5)"
node_kill 1
# Whether n1 had finished is what the set in etcd says once n1 is dead: its
# log line comes after the set's update, so a kill between the two (slow
# under ASan) leaves no line for a resync that did finish.  An update n1
# sent just before the kill can still commit after it (etcd's fsync under
# load), so the set is read a second later; n1's attach record, read after
# it and still n1's, shows that nobody else could have changed it since.
sleep 1
etcdctl_tls get --print-value-only /cryptvol/replicas/r3 > "$T/set" 2>&1 ||
    fail "etcdctl get r3's set: $(cat "$T/set")"
etcdctl_tls get --print-value-only /cryptvol/attach/r3 > "$T/att" 2>&1 ||
    fail "etcdctl get r3's attach record: $(cat "$T/att")"
grep -q '"n1"' "$T/att" ||
    fail "r3's attach record is not n1's a second after n1's kill (lease TTL 6 s): $(cat "$T/att")"
n3_was=$($PYTHON -c 'import json, sys
d = json.load(open(sys.argv[1]))
print([r["state"] for r in d["replicas"] if r["node"] == "n3"][0])' "$T/set") ||
    fail "r3's set has no n3: $(cat "$T/set")"
if [ "$n3_was" = InSync ]; then
    when="it had finished: the kill came too late to be mid-copy"
else
    when="mid-copy"
fi
wait_rep_state 60 2 r3 n3 InSync
node_log_since 2 "$mark2" | grep -q "volume r3: replica n3: InSync after a resync" ||
    [ "$when" != mid-copy ] ||
    fail "n2 did not resync n3 after n1 was killed: $(node_log_since 2 "$mark2" | grep 'r3' | tail -n 5)"
ok "n1 killed -9 as its resync of n3 began ($when); n2 resynced n3 to InSync"
node_start 1
wait_rep_state 60 2 r3 n1 InSync
nbd_get 2 r3 0 $((48 << 20)) "$T/got"
cmp -s "$T/big" "$T/got" || fail "r3 does not read back through n2 after both resyncs"
expect_chains_equal 30 r3 1 2 3
ok "n1 back: InSync again; r3 reads back, its chain files equal on n1, n2 and n3"
