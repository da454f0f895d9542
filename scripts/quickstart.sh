#!/usr/bin/env bash
# The main job, on one machine: builds cryptvol, makes an encrypted LUKS2
# volume image, puts data into it, proves cryptsetup reads the same format,
# and prints what to type next.
#   scripts/quickstart.sh [DIR]     (default DIR: ./demo)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
dir=${1:-$top/demo}

if [ "$(id -u)" -eq 0 ]; then
  bash scripts/install-deps.sh
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
cv=$top/build/cli/cryptvol

mkdir -p "$dir"
img=$dir/volume.img
pass=$dir/passphrase
if [ ! -e "$pass" ]; then
  # A random passphrase, readable only by its owner (cryptvol refuses
  # anything more open).
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '\n' > "$pass")
fi
if [ ! -e "$img" ]; then
  "$cv" image create "$img" --size 1G
  echo "formatting $img as LUKS2 (cryptsetup's default argon2id cost; a few seconds)"
  "$cv" image format "$img" --type luks2 --passphrase-file "$pass"
  # Some plaintext to find again; it never reaches the disk unencrypted.
  printf 'hello from cryptvol\n' > "$dir/hello.txt"
  "$cv" image import "$dir/hello.txt" "$img" --passphrase-file "$pass"
fi
"$cv" image info "$img"
echo
echo "cryptsetup reads the same header:"
cryptsetup luksDump --disable-locks "$img" | sed -n '1,4p'
echo
echo "the first bytes, decrypted:"
"$cv" image export "$img" - --passphrase-file "$pass" --length 20
cat <<EOT

Try:
  $cv image export $img - --passphrase-file $pass --length 20
  $cv image import SOME_FILE $img --passphrase-file $pass --offset 1M
  $cv image key add $img --passphrase-file $pass --new-passphrase-file NEW
  $cv image info $img --json
  cryptsetup open --test-passphrase --key-file $pass $img && echo unlocked
EOT
