#!/usr/bin/env bash
# Resync (docs/replication.md, "Resync and rebuild"): a 3-replica volume
# written by fio with crc32c verification through n1 while n3 is killed
# -9; the writes go on (n3 OutOfSync, its regions recorded); n3 comes back
# and is resynced by n1 from its record while fio still writes, and is
# InSync again, by a resync, not a rebuild; fio's verification passes;
# once n1 let go (flushed), the header and layer files of n1, n2 and n3
# are equal byte for byte.  Then n3 is killed and started again with no
# write meanwhile: it comes back InSync without a copy of anything.
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
