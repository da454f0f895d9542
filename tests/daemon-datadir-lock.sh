#!/usr/bin/env bash
# One cryptvold per data dir.  Two daemons on the same data dir (each with
# its own sockets) would both open the same volume images, each with its
# own in-process sector locks, so two unaligned writes to one encryption
# sector through the two daemons can both read-modify-write it and one of
# them is lost; they would also share one SQLite file and node key.  An
# operator expects what PostgreSQL, etcd and Ceph's OSDs do: the second
# one is refused with a message that names the data dir, and the first
# keeps serving.  The lock must die with its holder: after kill -9 a new
# daemon starts on the same dir at once (nbd-crash.sh relies on that).
source "$(dirname "$0")/lib.sh"

cvd_start first --tls off
first=$CVD_PID
first_nbd=$CVD_NBD
"$CRYPTVOL" volume create v --size 8M > /dev/null
head -c 100000 /dev/urandom > "$T/data"
nbdcopy "$T/data" "nbd+unix:///v?socket=$first_nbd"

# The second daemon: same data dir, other sockets.
mkdir -p "$T/second"
rc=0
timeout 10 "$CRYPTVOLD" --foreground --data-dir "$T/first/data" --nbd-listen none \
    --nbd-unix "$T/second/nbd.sock" --admin-socket "$T/second/admin.sock" --tls off \
    > /dev/null 2> "$T/second.err" || rc=$?
[ "$rc" != 124 ] || fail "a second cryptvold on the data dir of a running one started and served ($T/first/data)"
[ "$rc" != 0 ] || fail "a second cryptvold on the same data dir exited 0"
grep -q "$T/first/data" "$T/second.err" || fail "the refusal does not name the data dir: $(cat "$T/second.err")"
[ "$(wc -l < "$T/second.err")" -le 1 ] || fail "the refusal is more than one line: $(cat "$T/second.err")"
ok "a second cryptvold on the same data dir is refused: $(cat "$T/second.err")"

kill -0 "$first" 2>/dev/null || fail "the first daemon died when a second one tried its data dir"
rm -f "$T/out"
nbdcopy "nbd+unix:///v?socket=$first_nbd" "$T/out" && cmp -n 100000 "$T/out" "$T/data" ||
    fail "the first daemon does not serve its data any more"
ok "the first daemon keeps serving"

# The lock goes with its holder, also on kill -9.
kill -9 "$first"
wait "$first" 2>/dev/null || true
cvd_start first --tls off
rm -f "$T/out"
nbdcopy "nbd+unix:///v?socket=$CVD_NBD" "$T/out" && cmp -n 100000 "$T/out" "$T/data" ||
    fail "after kill -9 the data is not served by a new daemon"
cvd_stop
ok "after kill -9 of the holder a new daemon starts on the data dir at once"
