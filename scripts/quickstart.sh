#!/usr/bin/env bash
# The main job on one machine: builds cryptvol, starts cryptvold (SQLite
# metadata and LUKS2 images in DIR/data, NBD with TLS on 127.0.0.1:PORT),
# creates one encrypted volume, writes to it over NBD, reads it back, and
# prints what to type next.  Run it again to reuse the running daemon.
#   scripts/quickstart.sh [--port PORT] [--build-dir BUILD] [DIR]   (default DIR: ./demo, PORT: 10809)
#   scripts/quickstart.sh --stop [DIR]      (SIGTERM, and waits until the daemon has exited)
# --build-dir uses binaries already built there: no dependencies are
# installed and nothing is built.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
stop=0 port=10809 build=
usage() {
    echo "usage: scripts/quickstart.sh [--port PORT] [--build-dir BUILD] [DIR]" >&2
    echo "       scripts/quickstart.sh --stop [DIR]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
    --stop) stop=1; shift ;;
    --port)
        [ $# -ge 2 ] || usage
        port=$2; shift 2 ;;
    --port=*) port=${1#--port=}; shift ;;
    --build-dir)
        [ $# -ge 2 ] || usage
        build=$(realpath "$2"); shift 2 ;;
    -h|--help) usage ;;
    -*) echo "quickstart: unknown option $1" >&2; usage ;;
    *) break ;;
    esac
done
[ $# -le 1 ] || usage
if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    echo "quickstart: --port \"$port\" is not 1 to 65535" >&2
    exit 2
fi
dir=$(realpath -m "${1:-$top/demo}")
pidfile=$dir/cryptvold.pid

if [ "$stop" = 1 ]; then
    if ! [ -f "$pidfile" ] || ! pid=$(cat "$pidfile") || ! kill -0 "$pid" 2>/dev/null; then
        echo "cryptvold is not running (no live pid in $pidfile)"
        exit 0
    fi
    kill -TERM "$pid"
    # It flushes every open volume first; the pid file goes when it exits.
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || { echo "cryptvold stopped (pid $pid exited)"; exit 0; }
        sleep 0.1
    done
    echo "quickstart: cryptvold (pid $pid) still running 60 s after SIGTERM; see $dir/cryptvold.log" >&2
    exit 1
fi

if [ -z "$build" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        bash scripts/install-deps.sh
    fi
    build=$top/build
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build" -j"$(nproc)" >/dev/null
fi
cv=$build/cli/cryptvol
cvd=$build/daemon/cryptvold
export CRYPTVOL_SOCKET=$dir/data/admin.sock

mkdir -p "$dir"
[ -d "$dir/tls" ] || "$cv" tls init "$dir/tls" >/dev/null
if ! { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
    # Detaches once it serves; a start that fails says why here.
    "$cvd" --data-dir "$dir/data" --nbd-listen "127.0.0.1:$port" \
        --tls require --tls-dir "$dir/tls" --pid-file "$pidfile" \
        --log-file "$dir/cryptvold.log"
    echo "cryptvold started (pid $(cat "$pidfile")), log in $dir/cryptvold.log"
else
    running=$(sed -n 's/.*nbd: listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$dir/cryptvold.log" 2>/dev/null | tail -1)
    if [ -n "$running" ] && [ "$running" != "$port" ]; then
        port=$running
        echo "cryptvold is already running on port $port (scripts/quickstart.sh --stop $dir first to change it)"
    fi
fi

uri="nbds://127.0.0.1:$port/demo?tls-certificates=$dir/tls"
if ! "$cv" volume info demo >/dev/null 2>&1; then
    echo "creating volume demo (1 GiB, LUKS2, its own generated secret)"
    "$cv" volume create demo --size 1G >/dev/null
    printf 'hello from cryptvol\n' > "$dir/hello.txt"
    nbdcopy "$dir/hello.txt" "$uri"
fi
echo
"$cv" volume info demo
echo
echo "the first bytes, read back over NBD with TLS:"
nbdcopy "$uri" "$dir/first.tmp" && head -c 20 "$dir/first.tmp" && rm -f "$dir/first.tmp"
echo
echo "and the same bytes on disk (ciphertext):"
# A volume is a chain of layers (docs/store.md): its LUKS header, and
# sparse layer files that hold the data at the offsets the header gives.
vol=$dir/data/volumes/demo
off=$("$cv" image info "$vol/header" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["dataOffset"])')
od -An -tx1 -j "$off" -N 20 "$(ls "$vol"/layer-* | tail -1)"
# nbdfuse of libnbd 1.14 (Debian 12) refuses tls-certificates in a URI
# ("local file access is not allowed"): its TLS client is then nbdkit's
# nbd plugin, run by nbdfuse on a private socket.
cat <<EOT

Try:
  export CRYPTVOL_SOCKET=$CRYPTVOL_SOCKET
  $cv volume list
  nbdinfo '$uri'
  head -c 1M /dev/urandom > $dir/disk.raw && nbdcopy $dir/disk.raw '$uri'
  mkdir -p $dir/mnt && nbdfuse $dir/mnt/disk [ nbdkit --exit-with-parent nbd hostname=127.0.0.1 port=$port export=demo tls=require tls-certificates=$dir/tls ] &
  qemu-img info --object tls-creds-x509,id=t0,dir=$dir/tls,endpoint=client --image-opts driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,export=demo,tls-creds=t0
  $cv device map demo --server 127.0.0.1:$port --tls-dir $dir/tls    # as root, where the nbd module loads
  scripts/quickstart.sh --stop $dir
EOT
