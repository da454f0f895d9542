#!/usr/bin/env bash
# No plaintext on the wire.  A MiB of a known ASCII pattern is written
# through NBD over TLS on loopback TCP (nbdcopy, once with X.509 and once
# with a PSK, to two LUKS2 volumes) while tshark captures the port.  The
# pattern must be absent from the capture (the raw pcap bytes and tshark's
# own hex dump of every packet), and yet read back through NBD.
#
# The control proves the checks can fail: the same write to a --plaintext
# volume on a --tls off daemon does show the pattern in the capture.
# Skips (77) when tshark is missing or cannot capture; the same promise
# at rest is tests/no-plaintext-at-rest.sh, which needs no tshark.
source "$(dirname "$0")/lib.sh"

command -v tshark > /dev/null || skip "tshark is not installed"
command -v psktool > /dev/null || skip "psktool (gnutls-bin) is not installed"
"$PYTHON" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"

MARKER=CRYPTVOL-PLAINTEXT-MARKER-
MiB=1048576
"$PYTHON" -c '
import sys
m = sys.argv[1].encode()
sys.stdout.buffer.write((m * (int(sys.argv[2]) // len(m) + 1))[:int(sys.argv[2])])' \
    "$MARKER" $MiB > "$T/marker"

CAP_PID=
# capture_start PORT FILE: tshark on lo for tcp port PORT, returns once it
# is capturing; skips the test if it cannot capture.
capture_start() {
    local i
    tshark -i lo -f "tcp port $1" -w "$2" > /dev/null 2> "$T/tshark.err" &
    CAP_PID=$!
    on_exit "kill $CAP_PID; wait $CAP_PID"
    for ((i = 0; i < 200; i++)); do
        grep -q "Capturing on" "$T/tshark.err" && break
        if ! kill -0 $CAP_PID 2>/dev/null; then
            skip "tshark cannot capture on lo: $(grep -v 'Running as user' "$T/tshark.err" | head -3)"
        fi
        sleep 0.05
    done
    grep -q "Capturing on" "$T/tshark.err" || skip "tshark did not start capturing within 10 s"
    # "Capturing on" comes before the capture is live, by up to seconds on
    # a loaded machine (a control run once caught nothing): connect to the
    # port until the file holds a packet, which dumpcap writes out within
    # its 100 ms update.
    for ((i = 0; i < 100; i++)); do
        (exec 3<> "/dev/tcp/127.0.0.1/$1") 2>/dev/null || true
        sleep 0.1
        [ "$(tshark -r "$2" 2>/dev/null | wc -l)" -gt 0 ] && return 0
    done
    fail "tshark on lo port $1 has captured no packet of 100 connections in 10 s"
}
# capture_stop: lets the last packets land, stops tshark by its PID.
capture_stop() {
    sleep 1
    kill -TERM $CAP_PID
    wait $CAP_PID || true
    CAP_PID=
}

# pcap_count PCAP: how many times the marker is in the raw capture file.
pcap_count() { { grep -aoF "$MARKER" "$1" || true; } | wc -l; }
# dump_count PCAP: how many times it is in tshark's hex dump of every
# packet (bytes taken from the hex columns, so a 16-byte line break does
# not hide it).
dump_count() {
    tshark -r "$1" -x 2>/dev/null | "$PYTHON" -c '
import re, sys
line_re = re.compile(r"^[0-9a-f]{4,}  ((?:[0-9a-f]{2} )*[0-9a-f]{2})")
packets, cur = [], bytearray()
for line in sys.stdin:
    m = line_re.match(line)
    if m:
        cur += bytes.fromhex(m.group(1).replace(" ", ""))
    elif cur:
        packets.append(bytes(cur))
        cur = bytearray()
packets.append(bytes(cur))
print(sum(p.count(sys.argv[1].encode()) for p in packets))' "$MARKER"
}
# nbd_read URI OFFSET LENGTH: the bytes to stdout.
nbd_read() {
    "$PYTHON" -c '
import nbd, sys
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
sys.stdout.buffer.write(h.pread(int(sys.argv[3]), int(sys.argv[2])))
h.shutdown()' "$@"
}

# ---- TLS: X.509 and PSK -----------------------------------------------
"$CRYPTVOL" tls init "$T/tls" > /dev/null
psktool -u alice -p "$T/psk" > /dev/null
chmod 600 "$T/psk"
PORT=$(free_port)
cvd_start enc --tls require --tls-dir "$T/tls" --tls-psk "$T/psk" --nbd-listen "127.0.0.1:$PORT"
"$CRYPTVOL" volume create x509vol --size 16M > /dev/null
"$CRYPTVOL" volume create pskvol --size 16M > /dev/null
X509_URI="nbds://127.0.0.1:$PORT/x509vol?tls-certificates=$T/tls"
PSK_URI="nbds://alice@127.0.0.1:$PORT/pskvol?tls-psk-file=$T/psk"

capture_start "$PORT" "$T/tls.pcap"
nbdcopy "$T/marker" "$X509_URI" || fail "nbdcopy over TLS (X.509) to 127.0.0.1:$PORT failed"
nbdcopy "$T/marker" "$PSK_URI" || fail "nbdcopy over TLS (PSK alice) to 127.0.0.1:$PORT failed"
nbd_read "$X509_URI" 0 $MiB > "$T/back.x509" || fail "read back over TLS (X.509) failed"
nbd_read "$PSK_URI" 0 $MiB > "$T/back.psk" || fail "read back over TLS (PSK) failed"
capture_stop
cmp "$T/marker" "$T/back.x509" || fail "X.509 volume: read back differs from what was written"
cmp "$T/marker" "$T/back.psk" || fail "PSK volume: read back differs from what was written"
ok "1 MiB of the marker written and read back over TLS with X.509 and with PSK"

# 2 MiB each way went over the port: a capture of more than 2 MiB did see
# the traffic (with room for a few dropped packets), all of it ciphertext.
[ "$(stat -c %s "$T/tls.pcap")" -gt $((2 * MiB)) ] ||
    fail "the capture holds only $(stat -c %s "$T/tls.pcap") bytes: tshark did not see the NBD traffic"
n=$(pcap_count "$T/tls.pcap")
[ "$n" = 0 ] || fail "the marker is in the TLS capture $n times: plaintext on the wire"
n=$(dump_count "$T/tls.pcap")
[ "$n" = 0 ] || fail "tshark's dump of the TLS capture shows the marker $n times"
ok "the TLS capture ($(stat -c %s "$T/tls.pcap") bytes) holds no plaintext"

cvd_stop

# ---- control: plaintext volume, TLS off -------------------------------
PORT2=$(free_port)
cvd_start plain --tls off --nbd-allow-anonymous --nbd-listen "127.0.0.1:$PORT2"
"$CRYPTVOL" volume create pv --size 16M --plaintext > /dev/null
capture_start "$PORT2" "$T/plain.pcap"
nbdcopy "$T/marker" "nbd://127.0.0.1:$PORT2/pv" || fail "control: plaintext nbdcopy failed"
capture_stop
n=$(pcap_count "$T/plain.pcap")
[ "$n" -gt 1000 ] || fail "control: the marker is in the plaintext capture only $n times: the capture check cannot fail"
n=$(dump_count "$T/plain.pcap")
[ "$n" -gt 1000 ] || fail "control: tshark's dump shows the marker only $n times: the dump check cannot fail"
cvd_stop
ok "control: --plaintext volume over --tls off shows the marker in the capture"
