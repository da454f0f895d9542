#!/usr/bin/env bash
# The main job on one machine: builds cryptvol, starts cryptvold (SQLite
# metadata and LUKS2 images in DIR/data, NBD with TLS on 127.0.0.1:10809),
# creates one encrypted volume, writes to it over NBD, reads it back, and
# prints what to type next.  Run it again to reuse the running daemon.
#   scripts/quickstart.sh [DIR]     (default DIR: ./demo)
#   scripts/quickstart.sh --stop [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
stop=0
if [ "${1:-}" = "--stop" ]; then
  stop=1
  shift
fi
dir=$(realpath -m "${1:-$top/demo}")
pidfile=$dir/cryptvold.pid
if [ "$stop" = 1 ]; then
  [ -f "$pidfile" ] && kill -TERM "$(cat "$pidfile")" && echo "cryptvold stopped"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  bash scripts/install-deps.sh
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
cv=$top/build/cli/cryptvol
cvd=$top/build/daemon/cryptvold
export CRYPTVOL_SOCKET=$dir/data/admin.sock
port=10809

mkdir -p "$dir"
[ -d "$dir/tls" ] || "$cv" tls init "$dir/tls"
if ! { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
  # Detaches once it listens; its log goes to DIR/cryptvold.log.
  "$cvd" --data-dir "$dir/data" --nbd-listen "127.0.0.1:$port" \
    --tls require --tls-dir "$dir/tls" --pid-file "$pidfile" \
    2>> "$dir/cryptvold.log"
  echo "cryptvold started (pid $(cat "$pidfile")), log in $dir/cryptvold.log"
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
img=$dir/data/volumes/demo.img
off=$("$cv" image info "$img" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_offset"])')
od -An -tx1 -j "$off" -N 20 "$img"
cat <<EOT

Try:
  export CRYPTVOL_SOCKET=$CRYPTVOL_SOCKET
  $cv volume list
  nbdinfo '$uri'
  nbdcopy some-disk.raw '$uri'
  mkdir -p /mnt/demo && nbdfuse /mnt/demo/disk '$uri' &   # then: mkfs.ext4 /mnt/demo/disk
  qemu-img info --object tls-creds-x509,id=t0,dir=$dir/tls,endpoint=client \\
    --image-opts driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,export=demo,tls-creds=t0
  scripts/quickstart.sh --stop $dir
EOT
