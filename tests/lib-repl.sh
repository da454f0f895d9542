# Sourced by the replication tests (tests/repl-*.sh) after lib-cluster.sh:
# replica states as `volume info` shows them, waiting for them, and
# comparing the replicas' chain files byte for byte.

ACK_WRITER="$PYTHON $SRC_DIR/tests/tools/ack-writer.py"

# rep_state N VOL NODE: NODE's replica state of VOL as node N's volume info
# shows it ("InSync", "OutOfSync", "Rebuilding", "Failed"; "" if none).
rep_state() {
    cv "$1" volume info "$2" --json | $PYTHON -c '
import json, sys
node = sys.argv[1]
def walk(o):
    if isinstance(o, dict):
        if o.get("node") == node and "state" in o:
            return o["state"]
        o = list(o.values())
    if isinstance(o, list):
        for v in o:
            r = walk(v)
            if r:
                return r
    return None
d = json.load(sys.stdin)
print(walk(d.get("replicas")) or "")' "$3"
}
is_rep_state() { [ "$(rep_state "$1" "$2" "$3")" = "$4" ]; }

# wait_rep_state SECS N VOL NODE STATE: fails with volume info if not.
wait_rep_state() {
    local secs=$1 n=$2 vol=$3 node=$4 want=$5 i
    for ((i = 0; i < secs * 5; i++)); do
        is_rep_state "$n" "$vol" "$node" "$want" && return 0
        sleep 0.2
    done
    fail "after $secs s: $vol's replica on $node is '$(rep_state "$n" "$vol" "$node")', not $want: $(cv "$n" volume info "$vol" --json 2>&1)"
}

# chain_sums N VOL: "file sha256" of VOL's header and layer files on node N,
# by name (the manifest holds times; the layers and header are the data).
chain_sums() {
    local d
    d=$(vol_dir "$(node_dir "$1")/data" "$2")
    [ -d "$d" ] || { echo "no chain at $d"; return 0; }
    (cd "$d" && for f in header layer-*; do
        [ -e "$f" ] && echo "$f $(sha256sum < "$f" | cut -d' ' -f1)"
    done)
}

# chains_equal VOL N M...: VOL's chain files are equal on every node named.
chains_equal() {
    local vol=$1 a=$2 b
    shift 2
    for b in "$@"; do
        [ "$(chain_sums "$a" "$vol")" = "$(chain_sums "$b" "$vol")" ] || return 1
    done
}

# expect_chains_equal SECS VOL N M...: waits for chains_equal (a writer
# closing flushes), fails naming the files that differ.
expect_chains_equal() {
    local vol=$2 until=$((SECONDS + $1))
    shift 2
    # By the clock: hashing the files takes a while itself.
    while [ "$SECONDS" -lt "$until" ]; do
        chains_equal "$vol" "$@" && return 0
        sleep 0.5
    done
    for n in "$@"; do echo "n$n:"; chain_sums "$n" "$vol"; done >&2
    fail "$vol's chain files still differ between nodes $* (waited until the deadline)"
}

# fio_nbd N VOL ARGS...: fio's nbd engine on VOL through node N over TLS.
# fio refuses file names in its URI, so it runs as nobody with the client
# credentials in $HOME/.pki/libnbd, where libnbd looks when the URI names
# none (as tests/nbd-clients-tls.sh does).
fio_nbd() {
    local n=$1 vol=$2 home=$T/fio-home
    shift 2
    if [ ! -d "$home/.pki/libnbd" ]; then
        mkdir -p "$home/.pki/libnbd"
        cp "$CLUSTER/ca/ca-cert.pem" "$CLUSTER/ca/client-cert.pem" \
            "$CLUSTER/ca/client-key.pem" "$home/.pki/libnbd/"
        chown -R nobody: "$home"
        chmod 711 "$T"
    fi
    (cd "$home" && setpriv --reuid=nobody --regid=nogroup --clear-groups \
        env HOME="$home" fio --ioengine=nbd \
        --uri="nbds://$(node_addr "$n"):$NODE_NBD_PORT/$vol" "$@")
}

# nbd_put N VOL FILE OFFSET: FILE written at OFFSET of VOL through node N
# (then flushed); nbd_get N VOL OFFSET LEN OUT: read back into OUT.
nbd_put() {
    $PYTHON - "$(nbd_uri "$1" "$2")" "$3" "$4" <<'PY' || fail "writing $3 into $2 through n$1"
import nbd, sys
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
data, off = open(sys.argv[2], "rb").read(), int(sys.argv[3])
for i in range(0, len(data), 1 << 20):
    h.pwrite(data[i:i + (1 << 20)], off + i)
h.flush()
h.shutdown()
PY
}
nbd_get() {
    $PYTHON - "$(nbd_uri "$1" "$2")" "$3" "$4" "$5" <<'PY' || fail "reading $2 through n$1"
import nbd, sys
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
off, n = int(sys.argv[2]), int(sys.argv[3])
with open(sys.argv[4], "wb") as f:
    for i in range(0, n, 1 << 20):
        f.write(h.pread(min(1 << 20, n - i), off + i))
h.shutdown()
PY
}

# peer_frames PCAP: how many plaintext peer-protocol frame headers are in
# the capture: the magic "CVP1", a type, and flags 0 (daemon/peer/peer.h).
# Not the magic alone: ciphertext matches 4 given bytes once in 4 GiB, and
# a capture of TLS traffic under fio can hold that much; a header's 6 given
# bytes match random bytes once in 256 TiB.
peer_frames() {
    $PYTHON -c 'import re, sys
print(len(re.findall(rb"CVP1..\x00\x00", open(sys.argv[1], "rb").read(), re.S)))' "$1"
}
