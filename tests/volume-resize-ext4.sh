#!/usr/bin/env bash
# Online growth under a mounted file system: ext4 on a cryptvold volume
# through nbdfuse and a loop device (as tests/nbdfuse-ext4.sh), grown by
# `volume resize` while mounted and written.  The connected nbdfuse keeps
# the old size (its file does not change; writes go on working); after a
# reconnect it shows the new size, resize2fs grows ext4 into it, e2fsck
# finds it clean, a file larger than the old file system's free space
# fits, and every file keeps its checksum (read with O_DIRECT through a
# direct-I/O loop device, so from the daemon).
#
# Needs root (losetup, mount) and /dev/fuse; skips without them.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root for losetup and mount"
[ -c /dev/fuse ] || skip "no /dev/fuse"
[ -x "$CRYPTVOLD" ] || fail "cryptvold is not built"
need nbdfuse fusermount3 losetup mkfs.ext4 e2fsck resize2fs dumpe2fs mountpoint blockdev
losetup -f > /dev/null 2>&1 || skip "no free loop device"

MiB=1048576
source "$(dirname "$0")/lib-fuse.sh"

# attach SIZE: a new NBD connection to the volume, which must show SIZE.
attach() { fuse_attach "$1" "nbd+unix:///fs?socket=$CVD_NBD"; }

detach() {
    if [ -n "$MOUNTED" ]; then
        umount "$MNT" || fail "umount $MNT failed"
        MOUNTED=
    fi
    blockdev --flushbufs "$LOOP"
    teardown
}

mount_rw() {
    mount "$LOOP" "$MNT" || fail "mount failed"
    MOUNTED=1
}

add_sums() { (cd "$MNT" && sha256sum "$@") >> "$T/sums"; }
fs_blocks() { dumpe2fs -h "$LOOP" 2>/dev/null | sed -n 's/^Block count: *//p'; }

cvd_start node --tls off
on_exit teardown
"$CRYPTVOL" volume create fs --size 64M > /dev/null
attach $((64 * MiB))
mkfs.ext4 -q -F "$LOOP" || fail "mkfs.ext4 failed"
blocks0=$(fs_blocks)
mount_rw
head -c $((20 * MiB)) /dev/urandom > "$MNT/before"
: > "$T/sums"
add_sums before
sync -f "$MNT/before"

# ---- grown while mounted and written -------------------------------------
head -c $((10 * MiB)) /dev/urandom > "$MNT/during" &
writer=$!
"$CRYPTVOL" volume resize fs --size 160M > "$T/out" 2>&1 || fail "online grow under a mounted ext4: $(cat "$T/out")"
wait "$writer" || fail "writing during the grow failed"
# nbdfuse opens several connections (multi-conn): each keeps the old size.
grep -qxE '[0-9]+ connected clients? keeps? the old size until (it|they) reconnects?' "$T/out" ||
    fail "resize does not say the connected nbdfuse keeps the old size: $(cat "$T/out")"
[ "$(stat -c %s "$FUSE_DIR/vol")" = $((64 * MiB)) ] || fail "the connected nbdfuse shows $(stat -c %s "$FUSE_DIR/vol") bytes after the grow"
head -c $((5 * MiB)) /dev/urandom > "$MNT/after"
add_sums during after
sync -f "$MNT/after"
direct_check "mounted, after the grow"
ok "grown 64 -> 160 MiB under a mounted, written ext4; the connected nbdfuse keeps 64 MiB and works"

# ---- reconnect, resize2fs ------------------------------------------------
detach
attach $((160 * MiB))
# Not -n: resize2fs wants a check recorded after the last mount; exit 0
# means nothing had to be fixed.
e2fsck -fy "$LOOP" > "$T/fsck.log" 2>&1 || fail "e2fsck before resize2fs: $(tail -5 "$T/fsck.log")"
resize2fs "$LOOP" > "$T/resize2fs.log" 2>&1 || fail "resize2fs: $(cat "$T/resize2fs.log")"
e2fsck -fn "$LOOP" > "$T/fsck.log" 2>&1 || fail "e2fsck after resize2fs: $(tail -5 "$T/fsck.log")"
blocks1=$(fs_blocks)
[ "$blocks1" -gt $((blocks0 * 2)) ] || fail "resize2fs: $blocks0 -> $blocks1 blocks"
mount_rw
# More than the old file system could have held.
head -c $((90 * MiB)) /dev/urandom > "$MNT/big" || fail "a 90 MiB file does not fit after resize2fs"
add_sums big
sync -f "$MNT/big"
direct_check "after resize2fs"
ok "after a reconnect: nbdfuse shows 160 MiB, resize2fs $blocks0 -> $blocks1 blocks, e2fsck clean, a 90 MiB file fits"

detach
attach $((160 * MiB))
e2fsck -fn "$LOOP" > "$T/fsck.log" 2>&1 || fail "e2fsck after remount: $(tail -5 "$T/fsck.log")"
mount -o ro "$LOOP" "$MNT" || fail "read-only mount failed"
MOUNTED=1
direct_check "after a remount"
detach
ok "every file's checksum holds after another reconnect"
cvd_stop
