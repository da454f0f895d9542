#!/usr/bin/env bash
# No plaintext at rest.  A MiB of a known ASCII pattern is written through
# NBD to two LUKS2 volumes: with 1 MiB requests (the AES-XTS path that
# splits a request across the worker pool, lib/crypto/xts.c PARALLEL_MIN)
# and with 64 KiB requests (one thread).  Once the daemon has stopped, the
# pattern must be in no file under its data dir (volume layers and headers, the
# SQLite database) nor in its log, and yet read back through NBD, also after a
# restart.
#
# The control proves the check can fail: the same write to a --plaintext
# volume puts the pattern in that volume's layer, and in no other file.
# The same promise on the wire is tests/no-plaintext.sh (it needs tshark;
# this test needs only the daemon and nbdcopy).
source "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built: $CRYPTVOLD"
command -v nbdcopy > /dev/null || skip "nbdcopy (libnbd-bin) is not installed"

MARKER=CRYPTVOL-PLAINTEXT-MARKER-
MiB=1048576
"$PYTHON" -c '
import sys
m = sys.argv[1].encode()
sys.stdout.buffer.write((m * (int(sys.argv[2]) // len(m) + 1))[:int(sys.argv[2])])' \
    "$MARKER" $MiB > "$T/marker"
# files_with_marker PATH...: the files under PATH that hold the marker.
files_with_marker() { grep -rlaF "$MARKER" "$@" || true; }

uri() { echo "nbd+unix:///$1?socket=$CVD_NBD"; }
# The request size each volume is written and read with.
declare -A REQ=([pooled]=$MiB [serial]=65536)
# read_back VOLUME WHEN: its first MiB must be the marker.
read_back() {
    rm -f "$T/back"
    nbdcopy --request-size=${REQ[$1]} "$(uri "$1")" "$T/back" || fail "reading $1 back $2"
    cmp -n $MiB "$T/marker" "$T/back" || fail "$1 reads back other bytes $2"
}

cvd_start rest --tls off
DATA=$CVD_DIR/data
"$CRYPTVOL" volume create pooled --size 16M > /dev/null
"$CRYPTVOL" volume create serial --size 16M > /dev/null
for v in pooled serial; do
    nbdcopy --request-size=${REQ[$v]} "$T/marker" "$(uri $v)" || fail "writing $v"
done
read_back pooled "at once"
read_back serial "at once"
ok "1 MiB of the marker written with 1 MiB and with 64 KiB requests, read back"

# Stopped, so that everything is on disk; then look everywhere.
cvd_stop
# Each volume is a chain directory: manifest, header, layer (docs/store.md).
for v in pooled serial; do
    ls "$(vol_dir "$DATA" $v)/header" "$(vol_head "$DATA" $v)" > /dev/null ||
        fail "volume $v's header and layer are not where they should be"
done
found=$(files_with_marker "$DATA")
[ -z "$found" ] || fail "plaintext at rest in: $found"
found=$(files_with_marker "$CVD_DIR/cryptvold.log")
[ -z "$found" ] || fail "the daemon logged volume data"
ok "no file under the data dir ($(find "$DATA" -type f | wc -l) files) nor the log holds the marker"

cvd_start rest --tls off
read_back pooled "after a restart"
read_back serial "after a restart"
ok "the marker reads back through NBD after a restart"

# ---- control: a plaintext volume -------------------------------------------
"$CRYPTVOL" volume create pv --size 16M --plaintext > /dev/null
nbdcopy --request-size=$MiB "$T/marker" "$(uri pv)" || fail "control: writing the plaintext volume"
cvd_stop
found=$(files_with_marker "$DATA")
[ "$found" = "$(vol_head "$DATA" pv)" ] ||
    fail "control: the files holding the marker are '$found', not only the plaintext volume's layer: the at-rest check cannot be trusted"
ok "control: the marker is found in the --plaintext volume's layer, and only there"
