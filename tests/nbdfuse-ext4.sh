#!/usr/bin/env bash
# An ext4 file system on a cryptvold volume, through the kernel: nbdfuse
# (libnbd) connects with TLS (X.509) and shows the export as a file, a
# loop device sits on that file, ext4 on the loop device.  Files of random
# data written through the mount keep their checksums across a clean
# restart of the daemon (SIGTERM, start again on the same data dir), and
# e2fsck finds the file system clean.
#
# Reads that must come from the daemon bypass every cache on the way:
# O_DIRECT on the ext4 files (no ext4 page cache), a loop device in
# direct-I/O mode (no page cache of the nbdfuse file), and nbdfuse, which
# keeps none of its own.  Dropping the page cache instead is machine-wide
# and, where /proc/sys is read-only, silently does nothing.
#
# Every layer is undone at exit even when a step fails: unmount, detach
# the loop device, unmount the FUSE file system, stop nbdfuse, then the
# daemon.  Needs root (losetup, mount) and /dev/fuse; skips without them.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root for losetup and mount"
[ -c /dev/fuse ] || skip "no /dev/fuse"
for tool in nbdfuse fusermount3 losetup mkfs.ext4 e2fsck mountpoint; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done
losetup -f >/dev/null 2>&1 || skip "no free loop device"

source "$(dirname "$0")/lib-fuse.sh"

# attach: nbdfuse on $FUSE_DIR/vol, a loop device on it.
attach() { fuse_attach "$SIZE" "${TARGET[@]}"; }

# detach: everything off, in order, with the data flushed down to the daemon.
detach() {
    if [ -n "$MOUNTED" ]; then
        umount "$MNT" || fail "umount $MNT failed"
        MOUNTED=
    fi
    blockdev --flushbufs "$LOOP"
    teardown
}

# The daemon; the teardown is registered after it so that at exit the
# mounts go before the daemon that serves them is killed.
# NBD on loopback TCP too: libnbd 1.14 verifies the server's certificate
# only against a host name, which a unix socket URI does not have.
PORT=$(free_port)
daemon_up() {
    cvd_start node --tls require --tls-dir "$T/tls" --nbd-listen "127.0.0.1:$PORT"
    on_exit teardown
}

"$CRYPTVOL" tls init "$T/tls" > /dev/null
daemon_up
"$CRYPTVOL" volume create fs --size 256M > /dev/null
SIZE=$((256 * 1048576))
URI="nbds://127.0.0.1:$PORT/fs?tls-certificates=$T/tls"
# nbdfuse connects with this TLS URI.  nbdfuse of libnbd 1.14 refuses a
# URI that names local files ("local file access (tls-certificates) is not
# allowed"), and takes no TLS options of its own; with such an nbdfuse the
# TLS client is nbdkit's nbd plugin (libnbd too), run by nbdfuse as its
# NBD server subprocess on a private socket, with the same certificates.
mkdir "$T/probe"
timeout 10 nbdfuse "$T/probe/x" "nbds://127.0.0.1:1/x?tls-certificates=$T/tls" \
    > "$T/probe.log" 2>&1 || true
if grep -q "local file access" "$T/probe.log"; then
    command -v nbdkit > /dev/null || skip "this nbdfuse takes no tls-certificates in a URI, and nbdkit is missing"
    TARGET=("[" nbdkit --exit-with-parent nbd hostname=127.0.0.1 port="$PORT" export=fs
            tls=require tls-certificates="$T/tls" "]")
    echo "nbdfuse refuses tls-certificates in a URI: TLS through nbdkit's nbd plugin"
else
    TARGET=("$URI")
fi

# A plaintext client is refused (--tls require), so the mount below is
# TLS; a client with another CA is refused, so the certificate is checked.
if nbdinfo --size "nbd://127.0.0.1:$PORT/fs" > /dev/null 2>&1; then
    fail "a plaintext NBD client was served by a --tls require daemon"
fi
"$CRYPTVOL" tls init "$T/other-ca" > /dev/null
if nbdinfo --size "nbds://127.0.0.1:$PORT/fs?tls-certificates=$T/other-ca" > /dev/null 2>&1; then
    fail "a client that trusts another CA accepted the daemon's certificate"
fi

attach
mkfs.ext4 -q -F "$LOOP" || fail "mkfs.ext4 on the cryptvold volume failed"
mount "$LOOP" "$MNT" || fail "mount of the new ext4 failed"
MOUNTED=1
mkdir "$MNT/dir"
head -c 1 /dev/urandom > "$MNT/one-byte"
head -c 4097 /dev/urandom > "$MNT/dir/page-and-a-byte"
head -c 1048576 /dev/urandom > "$MNT/one-mib"
head -c 7340033 /dev/urandom > "$MNT/dir/seven-mib-and-a-byte"
head -c 33554432 /dev/urandom > "$MNT/thirty-two-mib"
for i in $(seq 1 50); do head -c $((i * 999)) /dev/urandom > "$MNT/dir/small-$i"; done
(cd "$MNT" && find . -type f | sort | xargs sha256sum) > "$T/sums"
[ "$(wc -l < "$T/sums")" = 55 ] || fail "expected 55 files, wrote $(wc -l < "$T/sums")"
sync -f "$MNT/one-byte"
# Read back while still mounted, from the daemon, not the page cache.
direct_check "right after writing"
ok "ext4 on cryptvold through nbdfuse (TLS) and a loop device: 55 files written"

detach
ok "unmounted, loop device and nbdfuse released"

head=$(vol_head "$CVD_DIR/data" fs)
[ -f "$head" ] || fail "no volume layer at $head"
cvd_stop
ok "daemon stopped cleanly (SIGTERM, exit 0)"

daemon_up
attach
e2fsck -fn "$LOOP" > "$T/fsck.log" 2>&1 || fail "e2fsck finds errors after the restart: $(tail -5 "$T/fsck.log")"
ok "e2fsck: the file system is clean after the restart"
mount "$LOOP" "$MNT" || fail "mount after the restart failed"
MOUNTED=1
(cd "$MNT" && sha256sum --quiet -c "$T/sums") || fail "checksums differ after the daemon restarted"
[ "$(cd "$MNT" && find . -type f | wc -l)" = 55 ] || fail "file count changed after the restart"
ok "all 55 checksums match after the daemon restarted"

# One more write after the restart, read back after another remount.
head -c 5000000 /dev/urandom > "$T/late"
cp "$T/late" "$MNT/late"
detach
attach
mount -o ro "$LOOP" "$MNT" || fail "read-only mount failed"
MOUNTED=1
cmp "$T/late" "$MNT/late" || fail "a file written after the restart differs after a remount"
(cd "$MNT" && sha256sum --quiet -c "$T/sums") || fail "old checksums differ after the second remount"
detach
ok "a write after the restart survives a remount too"
