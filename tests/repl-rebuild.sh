#!/usr/bin/env bash
# Rebuild (docs/replication.md, "Resync and rebuild"): a 2-replica volume
# with data in a snapshot and in its head; `volume replicas --set 3` makes
# a third replica, Rebuilding, which the repair loop copies (header, the
# snapshot's layer, the head) and makes InSync, also after n3 is killed -9
# as its rebuild began, and after n1, which copies, is; then the header and layer
# files are equal on all three, the snapshot is listed through n3's view
# and the data reads back.  Then a full disk: n3's data dir is a small
# tmpfs; a second 3-replica volume written past what fits there fails n3's
# replica (Failed, the error saying why) while the writes through n1 go on
# and read back.
. "$(dirname "$0")/lib-cluster.sh"
. "$SRC_DIR/tests/lib-repl.sh"

need sha256sum cmp
$PYTHON -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"

# n3's data dir: 64 MiB, room for r2 (a 16 MiB LUKS2 header and 12 MiB of
# data) and v3's header, not for v3's data.
mkdir -p "$(node_dir 3)/data"
if ! mount -t tmpfs -o size=64M,mode=0700 cryptvol-repl "$(node_dir 3)/data" 2> "$T/mount.err"; then
    skip "cannot mount a tmpfs: $(cat "$T/mount.err")"
fi
on_exit "umount '$(node_dir 3)/data' || umount -l '$(node_dir 3)/data'"

NODE_EXTRA=(--node-lease-ttl 6)
# wait_rebuild_begins MARK: until n1 logs (after MARK) that r2's rebuild
# of n3 began, polled every 20 ms (the moment to stop a side mid-copy).
wait_rebuild_begins() {
    local i
    for ((i = 0; i < 1500; i++)); do
        node_log_since 1 "$1" | grep -q "volume r2: replica n3: rebuild begins" && return 0
        sleep 0.02
    done
    fail "n1 began no rebuild of n3 in 30 s: $(node_log_since 1 "$1" | grep r2 | tail -n 5)"
}
cluster_up 3
passfile "$T/s" "repl-rebuild secret $$"
cv 1 secret create s --from-file "$T/s" > /dev/null || fail "secret create s"
cv 1 volume create r2 --size 24M --secret s --replicas 2 > "$T/out" 2>&1 ||
    fail "volume create r2 --replicas 2: $(cat "$T/out")"
wait_rep_state 30 1 r2 n1 InSync
wait_rep_state 30 1 r2 n2 InSync
[ -z "$(rep_state 1 r2 n3)" ] || fail "r2 has a replica on n3 already: $(cv 1 volume info r2 --json)"

head -c 8M /dev/urandom > "$T/a"
head -c 4M /dev/urandom > "$T/b"
nbd_put 1 r2 "$T/a" 0
cv 1 snapshot create r2@snap1 > /dev/null || fail "snapshot create r2@snap1"
nbd_put 1 r2 "$T/b" $((12 << 20))
cat "$T/a" > "$T/want"
head -c 4M /dev/zero >> "$T/want"
cat "$T/b" >> "$T/want"
ok "r2 on n1 and n2: 8 MiB in snapshot snap1, 4 MiB more in its head"

# The target killed -9 mid-rebuild: stopped (SIGSTOP) as soon as n1 logs
# that the rebuild began, so it cannot commit, then killed and started
# again: the rebuild starts over (over the cut one's NAME.rebuilding) and
# ends InSync with equal files.
mark1=$(node_log_mark 1)
cv 1 volume replicas r2 --set 3 > "$T/out" 2>&1 || fail "volume replicas r2 --set 3: $(cat "$T/out")"
state=$(rep_state 1 r2 n3)
[ "$state" = Rebuilding ] || [ "$state" = InSync ] ||
    fail "r2's new replica on n3 is '$state': $(cv 1 volume info r2 --json)"
wait_rebuild_begins "$mark1"
kill -STOP "${NODE_PID[3]}"
sleep 1     # an update n1 sent before the stop has landed
was=$(rep_state 1 r2 n3)
if [ "$was" = InSync ]; then
    when="it had finished: the stop came too late to be mid-copy"
else
    # The copy stalls on the stopped target: its progress is in the set,
    # begun and not done, and volume info prints it ("0 B/28 MiB (0%)").
    cv 1 volume info r2 --json > "$T/info"
    prog=$($PYTHON -c '
import json, sys
r = [x for x in json.load(open(sys.argv[1]))["replicas"] if x["node"] == "n3"][0]
print(r.get("syncDone", -1), r.get("syncTotal", 0), r.get("behind", -1))' "$T/info")
    read -r sdone stotal sbehind <<< "$prog"
    [ "$stotal" -gt 0 ] && [ "$sdone" -lt "$stotal" ] && [ "$sbehind" = $((stotal - sdone)) ] ||
        fail "r2's rebuild of n3, stalled mid-copy, shows no progress (syncDone/syncTotal/behind $prog): $(cat "$T/info")"
    cv 1 volume info r2 > "$T/info.txt"
    grep "n3" "$T/info.txt" | grep -q "%)" ||
        fail "volume info prints no progress for n3 mid-copy: $(cat "$T/info.txt")"
    when="mid-copy: $was, $sdone of $stotal bytes copied"
fi
node_kill 3
node_start 3
wait_rep_state 60 1 r2 n3 InSync
expect_chains_equal 20 r2 1 2 3
[ "$(ls "$(vol_dir "$(node_dir 3)/data" r2)" | grep -c '^layer-')" = 2 ] ||
    fail "r2 on n3 has not the snapshot's layer and the head: $(ls "$(vol_dir "$(node_dir 3)/data" r2)")"
nbd_get 1 r2 0 $((16 << 20)) "$T/got"
cmp -s "$T/want" "$T/got" || fail "r2 does not read back after the rebuild"
ok "replicas --set 3, n3 killed -9 as its rebuild began ($when), started again: rebuilt (snapshot layer and head), InSync, chain files equal on n1, n2, n3"

# The copier killed -9 mid-rebuild: n3's replica dropped (--set 2 drops
# the newest) and added again; n1, which runs the repair (the first
# in-sync replica's node), is stopped as it logs that the rebuild began,
# then killed.  Once its lease is gone n2 takes the volume over, rebuilds
# n3 from the start and resyncs n1 when it returns: all InSync, equal.
cv 1 volume replicas r2 --set 2 > "$T/out" 2>&1 || fail "volume replicas r2 --set 2: $(cat "$T/out")"
[ -z "$(rep_state 1 r2 n3)" ] || fail "r2 --set 2 kept n3: $(cv 1 volume info r2 --json)"
mark1=$(node_log_mark 1)
cv 1 volume replicas r2 --set 3 > "$T/out" 2>&1 || fail "volume replicas r2 --set 3 (again): $(cat "$T/out")"
wait_rebuild_begins "$mark1"
kill -STOP "${NODE_PID[1]}"
node_kill 1
sleep 1
was=$(rep_state 2 r2 n3)
if [ "$was" = InSync ]; then
    when="it had finished: the stop came too late to be mid-copy"
else
    when="mid-copy: $was"
fi
mark2=$(node_log_mark 2)
wait_rep_state 90 2 r2 n3 InSync
node_log_since 2 "$mark2" | grep -q "volume r2: replica n3: rebuild begins" ||
    [ "$was" = InSync ] ||
    fail "n3 is InSync without a rebuild from n2: $(node_log_since 2 "$mark2" | grep r2 | tail -n 5)"
node_start 1
wait_rep_state 90 2 r2 n1 InSync
expect_chains_equal 30 r2 1 2 3
nbd_get 2 r2 0 $((16 << 20)) "$T/got"
cmp -s "$T/want" "$T/got" || fail "r2 does not read back through n2 after the copier was killed"
ok "n1 (the copier) killed -9 as n3's rebuild began ($when): n2 took r2 over, rebuilt n3 and resynced n1; all InSync, chain files equal"

# ---- a full disk on n3 --------------------------------------------------------
cv 1 volume create v3 --size 64M --secret s --replicas 3 > "$T/out" 2>&1 ||
    fail "volume create v3 --replicas 3: $(cat "$T/out")"
wait_rep_state 30 1 v3 n2 InSync
head -c 40M /dev/urandom > "$T/c"
nbd_put 1 v3 "$T/c" 0
ok "40 MiB written through n1 while n3's disk filled"
wait_rep_state 30 1 v3 n3 Failed
cv 1 volume info v3 --json > "$T/info"
grep -qi "space" "$T/info" || fail "v3's n3 replica is Failed without saying why: $(cat "$T/info")"
is_rep_state 1 v3 n1 InSync && is_rep_state 1 v3 n2 InSync ||
    fail "v3 on n1/n2 not InSync: $(cat "$T/info")"
nbd_put 1 v3 "$T/b" $((48 << 20))
nbd_get 1 v3 0 $((40 << 20)) "$T/got"
cmp -s "$T/c" "$T/got" || fail "v3 does not read back through n1"
nbd_get 1 v3 $((48 << 20)) $((4 << 20)) "$T/got"
cmp -s "$T/b" "$T/got" || fail "a write after n3 failed does not read back"
ok "n3's full disk: its replica of v3 is Failed ($(grep -o '"error": *"[^"]*"' "$T/info" | head -n 1)); v3 goes on on n1 and n2"
