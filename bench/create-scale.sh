#!/usr/bin/env bash
# Volume create at scale: VOLUMES volumes (default 1000) with generated
# secrets (no --secret: 32 random bytes each, stored sealed under the
# volume's name) on one daemon, one create after the other, each waiting
# for its answer, as a provisioning script does:
#
#   1. through the admin API from one client (a request each, on one
#      connection): what the daemon's create costs;
#   2. through the CLI, `cryptvol volume create` once per volume: what an
#      operator's shell loop costs (the CLI's start is part of it).
#
# The limit is 30 s for 1000 volumes (30 ms a volume) for each.  Then a
# SAMPLE of the volumes (default 10, spread over both runs) is checked:
# `cryptsetup luksDump` reads the header, its keyslots area is the size
# the daemon chose, `cryptsetup open --test-passphrase` opens it with the
# volume's secret (read back from meta.db with the node key), and the
# daemon serves its first bytes over NBD.
#
# Data lives in DIR (default /var/tmp: a disk, as a data dir would be; a
# create fsyncs).  Volumes are SIZE bytes (default 1G: the images are
# sparse, about 1 MiB of each is written).
#
# Usage: bench/create-scale.sh [BUILD_DIR]   (VOLUMES=N SAMPLE=N DIR=PATH SIZE=S)
# Exits 0 whatever the figures; non-zero only if something could not run
# or a check failed.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$SRC_DIR/build}
VOLUMES=${VOLUMES:-1000}
SAMPLE=${SAMPLE:-10}
DIR=${DIR:-/var/tmp}
SIZE=${SIZE:-1G}
PYTHON=/usr/bin/python3
CRYPTVOLD=$BUILD_DIR/daemon/cryptvold
CRYPTVOL=$BUILD_DIR/cli/cryptvol
UNSEAL=$SRC_DIR/tests/tools/seal-secret.py
LIMIT=30                        # seconds for 1000 volumes
PATH=$PATH:/usr/sbin:/sbin

die() { echo "create-scale.sh: $*" >&2; exit 1; }
[ -x "$CRYPTVOLD" ] && [ -x "$CRYPTVOL" ] || die "build cryptvol first ($BUILD_DIR)"
command -v cryptsetup > /dev/null || die "cryptsetup is not installed"
$PYTHON -c 'import nbd, cryptography' 2>/dev/null ||
    die "python3-libnbd and python3-cryptography are needed"

W=$(mktemp -d "$DIR/cryptvol-create.XXXXXX")
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT

"$CRYPTVOLD" --foreground --tls off --data-dir "$W/data" --nbd-listen none \
    --nbd-unix "$W/nbd.sock" --admin-socket "$W/admin.sock" \
    --log-level warning 2> "$W/log" &
PID=$!
for ((i = 0; i < 200; i++)); do [ -S "$W/admin.sock" ] && break; sleep 0.05; done
[ -S "$W/admin.sock" ] || { cat "$W/log" >&2; die "cryptvold did not start"; }
export CRYPTVOL_SOCKET=$W/admin.sock
bytes=$("$CRYPTVOL" volume create probe --size "$SIZE" --json |
        $PYTHON -c 'import json,sys; print(json.load(sys.stdin)["size"])')
"$CRYPTVOL" volume delete probe > /dev/null

now() { date +%s.%N; }
load() { cut -d' ' -f1 /proc/loadavg; }
load0=$(load)
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# 1. The admin API, one client, a request after the other.
echo "create-scale.sh: $VOLUMES volumes through the admin API in $W..." >&2
t0=$(now)
$PYTHON - "$W/admin.sock" "$VOLUMES" "$bytes" <<'PY' || die "a create failed"
import http.client, json, socket, sys

class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

c = Unix(sys.argv[1])
for i in range(int(sys.argv[2])):
    body = json.dumps({"name": "a%d" % i, "size": int(sys.argv[3])})
    c.request("POST", "/v1/volumes", body,
              {"Content-Type": "application/json"})
    r = c.getresponse()
    answer = r.read()
    if r.status != 201:
        sys.exit("volume a%d: %d %s" % (i, r.status, answer.decode()))
PY
t1=$(now)
api=$(secs "$t0" "$t1")

# 2. The CLI, a process per volume.
echo "create-scale.sh: $VOLUMES volumes through the CLI..." >&2
t0=$(now)
for ((i = 0; i < VOLUMES; i++)); do
    "$CRYPTVOL" volume create "c$i" --size "$SIZE" > /dev/null
done
t1=$(now)
cli=$(secs "$t0" "$t1")

alloc=$(du -s -B1 "$W/data/volumes" | cut -f1)
per_alloc=$(awk -v a="$alloc" -v n="$((2 * VOLUMES))" 'BEGIN { printf "%.2f", a / n / 1048576 }')

# 3. A sample of the headers, with cryptsetup, and over NBD.
checked=()
for ((k = 0; k < SAMPLE; k++)); do
    i=$(( (k / 2) * VOLUMES / ((SAMPLE + 1) / 2) ))
    checked+=("$([ $((k % 2)) = 0 ] && echo a || echo c)$i")
done
ks_size=
for v in "${checked[@]}"; do
    img=$W/data/volumes/$v.img
    json=$(cryptsetup luksDump --dump-json-metadata "$img") ||
        die "volume $v: cryptsetup luksDump fails on $img"
    size=$($PYTHON -c 'import json,sys; print(json.load(sys.stdin)["config"]["keyslots_size"])' <<< "$json")
    [ -z "$ks_size" ] && ks_size=$size
    [ "$size" = "$ks_size" ] || die "volume $v: keyslots area of $size bytes, $ks_size for the others"
    $PYTHON "$UNSEAL" "$W/data" "$v" "$W/$v.key" --unseal ||
        die "volume $v: its generated secret cannot be read back"
    cryptsetup open --test-passphrase --key-file "$W/$v.key" "$img" ||
        die "volume $v: cryptsetup open --test-passphrase fails with its secret"
done
$PYTHON - "$W/nbd.sock" "${checked[@]}" <<'PY' || die "a volume does not serve over NBD"
import nbd, sys
for name in sys.argv[2:]:
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sys.argv[1])
    h.pread(4096, 0)
    h.shutdown()
PY

verdict() { awk -v s="$1" -v n="$VOLUMES" -v l="$LIMIT" 'BEGIN {
    r = s * 1000 / n / l; printf "%.2f <= 1  %s", r, (r <= 1) ? "PASS" : "MISS" }'; }
per() { awk -v s="$1" -v n="$VOLUMES" 'BEGIN { printf "%.1f", s * 1000 / n }'; }
echo "$VOLUMES volumes with generated secrets, $SIZE each, one after the other ($(nproc) CPUs, load average $load0 before, $(load) after):"
echo "  admin API (one client): $api s ($(per "$api") ms per volume)"
echo "  CLI (a process each):   $cli s ($(per "$cli") ms per volume)"
echo "  allocated: $per_alloc MiB per volume; keyslots area $ks_size bytes"
echo "  checked ${#checked[@]}: cryptsetup luksDump, open --test-passphrase with the volume's secret, NBD read"
printf '%-34s %8s %8s  %s\n' target "s/1000" limit "ratio"
printf '%-34s %8s %8s  %s\n' "1000 volumes, admin API" "$(per "$api")" "$LIMIT" "$(verdict "$api")"
printf '%-34s %8s %8s  %s\n' "1000 volumes, CLI" "$(per "$cli")" "$LIMIT" "$(verdict "$cli")"
