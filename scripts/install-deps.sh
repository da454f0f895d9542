#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of cryptvol from
# Debian's packages. Idempotent; CI runs it on a fresh machine.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang
  libcryptsetup-dev libssl-dev libcmocka-dev libjson-c-dev libargon2-dev
  libsqlite3-dev libmicrohttpd-dev libcurl4-openssl-dev
  libtss2-dev
  libgcrypt20-dev   # AES-XTS on the data path
  # interop peers used by the tests and benchmarks
  cryptsetup-bin qemu-utils nbdkit libnbd-bin
  python3 python3-cryptography
  openssl util-linux e2fsprogs curl
  fio fuse3 gnutls-bin tshark iproute2 procps python3-libnbd
  swtpm swtpm-tools
  prometheus        # promtool check metrics, for tests/metrics.sh
  gdb               # gcore, for tests/core-dump-keys.sh
  scdoc             # the man pages (man/*.scd)
  man-db groff-base # man -l, for tests/man-pages.sh
  bash-completion   # its completionsdir; tests/bash-completion.sh
  nbd-client kmod   # cryptvol device map (nbd-client, modprobe nbd)
  systemd           # systemd-analyze verify, for tests/install.sh
  git               # git apply, for scripts/mutants.sh
  etcd-server etcd-client  # the cluster's metadata (tests/lib-etcd.sh)
  nftables          # nft: the partition in tests/repl-partition.sh's namespace
)

export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (apt-get)" >&2
  exit 1
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  # Some packages come with a service (prometheus, wanted for promtool,
  # listens on :9090): none may start here, where only the tests serve,
  # on loopback.  policy-rc.d is how Debian says so (invoke-rc.d and
  # deb-systemd-invoke honour it); ours goes again afterwards.
  rcd=/usr/sbin/policy-rc.d
  if [ ! -e "$rcd" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$rcd"
    chmod 755 "$rcd"
    trap 'rm -f "$rcd"' EXIT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# etcd-server comes with a service that would listen on 127.0.0.1:2379:
# the tests start their own members on ports of their own, and a system
# etcd is not wanted on a build machine.  policy-rc.d above keeps it from
# starting at install; an earlier install may have started and enabled it.
if command -v systemctl > /dev/null && [ -d /run/systemd/system ]; then
  if systemctl is-enabled --quiet etcd 2>/dev/null ||
     systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl disable --now etcd
  fi
fi
