#!/usr/bin/env bash
# A full file system under the image: an import that runs out of space
# fails with one line naming the image and "No space left on device", and
# the image still opens with the data imported before intact.
source "$(dirname "$0")/lib.sh"

MNT=$T/mnt
mkdir "$MNT"
passfile "$T/pass" 'correct horse'

if ! mount -t tmpfs -o size=40M,mode=0700 cryptvol-test "$MNT" 2> "$T/mount.err"; then
    skip "cannot mount a tmpfs: $(cat "$T/mount.err")"
fi
# Unmounted on any exit, before lib.sh removes $T.
on_exit "umount '$MNT' || umount -l '$MNT'"

IMG=$MNT/img
# 64 MiB raw on a 40 MiB file system: 16 MiB header, 48 MiB of data.
"$CRYPTVOL" image create "$IMG" --size 64M
[ "$(du -k "$IMG" | cut -f1)" -lt 1024 ] || fail "$IMG is not sparse"
# Formatting fills the 16 MiB keyslot area with random bytes, as
# cryptsetup does; the data area stays a hole.
"$CRYPTVOL" image format "$IMG" --type luks2 --passphrase-file "$T/pass" "${FAST_KDF[@]}"
EFF=$("$CRYPTVOL" image info "$IMG" --json |
      sed -n 's/.*"size": *\([0-9][0-9]*\).*/\1/p')
[ "$EFF" = $((48 * 1024 * 1024)) ] || fail "$IMG: effective size $EFF"

# The first file fits.
head -c 8M /dev/urandom > "$T/first"
"$CRYPTVOL" image import "$T/first" "$IMG" --passphrase-file "$T/pass" ||
    fail "importing the first file"
"$CRYPTVOL" image export "$IMG" "$T/first.back" --passphrase-file "$T/pass" --length 8M
cmp -s "$T/first" "$T/first.back" || fail "the first file does not read back"
avail=$(df -k --output=avail "$MNT" | tail -1 | tr -d ' ')
# The header as it is now: every byte before the data (both LUKS2 headers
# and the keyslot area), and what image info reads from it.
OFF=$("$CRYPTVOL" image info "$IMG" --json |
      sed -n 's/.*"dataOffset": *\([0-9][0-9]*\).*/\1/p')
[ "$OFF" = $((16 * 1024 * 1024)) ] || fail "$IMG: data offset $OFF"
header_sum() { head -c "$OFF" "$IMG" | sha256sum | cut -d' ' -f1; }
HDR=$(header_sum)
"$CRYPTVOL" image info "$IMG" > "$T/info.before"
ok "first file imported; ${avail} KiB left on the file system"

# The second fits in the volume (10 MiB + 36 MiB < 48 MiB) but not in the
# file system.  It goes after the first, so the first is untouched.
head -c 36M /dev/urandom > "$T/second"
[ $((36 * 1024)) -gt "$avail" ] || fail "the second file would fit: ${avail} KiB free"
expect_fail 1 "^cryptvol: $IMG: .*No space left on device" \
    "$CRYPTVOL" image import "$T/second" "$IMG" --passphrase-file "$T/pass" --offset 10M
ok "import past the free space: $(cat "$T/err")"

# Nothing lost: the image opens, its header is as it was, and the first
# file reads back intact.
"$CRYPTVOL" image info "$IMG" > "$T/info.after" || fail "$IMG no longer opens"
[ "$(header_sum)" = "$HDR" ] || fail "$IMG: the $OFF bytes of its header changed after ENOSPC"
diff "$T/info.before" "$T/info.after" > /dev/null ||
    fail "$IMG: image info differs after ENOSPC: $(diff "$T/info.before" "$T/info.after")"
rm -f "$T/first.back"
"$CRYPTVOL" image export "$IMG" "$T/first.back" --passphrase-file "$T/pass" --length 8M ||
    fail "$IMG: cannot export after running out of space"
cmp -s "$T/first" "$T/first.back" || fail "the first file changed"
ok "after ENOSPC the image opens, its header is byte for byte as it was, and the first file is intact"

# A keyslot needs new blocks for its key material, and the file system is
# still full: adding one either works or fails with one line naming the
# image, and either way the old passphrase still opens the image (key
# material is written before the header that points at it).
passfile "$T/pass2" 'battery staple'
rc=0
"$CRYPTVOL" image key add "$IMG" --passphrase-file "$T/pass" \
    --new-passphrase-file "$T/pass2" "${FAST_KDF[@]}" > /dev/null 2> "$T/err" || rc=$?
if [ "$rc" != 0 ]; then
    [ "$rc" = 1 ] || fail "key add on a full file system exited $rc: $(cat "$T/err")"
    [ "$(wc -l < "$T/err")" = 1 ] || fail "key add: not one line: $(cat "$T/err")"
    grep -q "^cryptvol: $IMG: " "$T/err" || fail "key add: message does not name the image: $(cat "$T/err")"
fi
rm -f "$T/first.back"
"$CRYPTVOL" image export "$IMG" "$T/first.back" --passphrase-file "$T/pass" --length 8M ||
    fail "$IMG: the old passphrase no longer opens it after key add on a full file system"
cmp -s "$T/first" "$T/first.back" || fail "the first file changed after key add"
if [ "$rc" = 0 ]; then
    "$CRYPTVOL" image export "$IMG" "$T/first.back2" --passphrase-file "$T/pass2" --length 8M ||
        fail "$IMG: key add succeeded but the new passphrase does not open it"
    ok "key add on a full file system worked; both passphrases open the image"
else
    ok "key add on a full file system refused cleanly: $(cat "$T/err")"
fi

# ---- cryptvold on a full disk ---------------------------------------------
# Its data directory on a file system that the volumes' data fill up:
# metadata writes fail with a message that says what to do, and a volume
# can still be deleted (DATA-DIR/space.reserve is released for it), also
# after a restart on the full disk; the other volumes' data is intact.
# (The image checks above need only cryptvol: they run without nbdcopy.)
command -v nbdcopy > /dev/null || skip "nbdcopy is not installed: the cryptvold half did not run"
umount "$MNT"
mount -t tmpfs -o size=64M,mode=0700 cryptvol-test "$MNT"
D=$MNT/data
start() { cvd_start full --tls off --data-dir "$D"; }
start
[ "$(du -k "$D/space.reserve" | cut -f1)" -ge 8192 ] || fail "no 8 MiB space.reserve in $D"
head -c 4M /dev/urandom > "$T/keep"
"$CRYPTVOL" volume create keep --size 4M > /dev/null
nbdcopy "$T/keep" "nbd+unix:///keep?socket=$CVD_NBD" || fail "writing keep"
"$CRYPTVOL" volume create victim --size 4M > /dev/null
"$CRYPTVOL" volume create victim2 --size 4M > /dev/null
"$CRYPTVOL" volume create fill --size 128M --plaintext > /dev/null
# Fills the plaintext volume's layer file until the file system is full
# (written zeros are allocated; NBD zeroes would be punched holes).
fill() {
    local head
    head=$(vol_head "$D" fill)
    [ -f "$head" ] || fail "fill: no layer file $head"
    dd if=/dev/zero of="$head" bs=1M count=128 conv=notrunc \
        status=none 2> /dev/null || true
    [ "$(df -k --output=avail "$MNT" | tail -1 | tr -d ' ')" -lt 64 ] ||
        fail "the file system is not full: $(df -k "$MNT" | tail -1)"
}
fill
MSG="disk full: delete a volume \(cryptvol volume delete\) or free space on the file system of $D"
expect_fail 1 "^cryptvol: .*metadata $D/meta\.db: .*: $MSG\$" \
    "$CRYPTVOL" volume create more --size 4M
ok "a create on the full disk: $(cat "$T/err")"

"$CRYPTVOL" volume delete victim > "$T/out" 2> "$T/err" ||
    fail "volume delete on a full disk: $(cat "$T/err")"
left=$(cd "$D/volumes" && ls -d victim victim.* 2> /dev/null || true)
[ -z "$left" ] || fail "victim's files are still there: $left"
expect_fail 1 "volume victim: no such volume" "$CRYPTVOL" volume info victim
grep -q "disk full under $D: released the 8 MiB kept for metadata" "$CVD_DIR/cryptvold.log" ||
    fail "the log does not say the reserve was used"
ok "volume delete on a full disk works"

# Full again, and restarted on the full disk: a delete still works.
cvd_stop
fill
start
"$CRYPTVOL" volume delete victim2 > "$T/out" 2> "$T/err" ||
    fail "volume delete on a full disk after a restart: $(cat "$T/err")"
"$CRYPTVOL" volume delete fill > /dev/null 2> "$T/err" || fail "deleting fill: $(cat "$T/err")"
[ "$(du -k "$D/space.reserve" | cut -f1)" -ge 8192 ] || fail "the reserve was not made again"
nbdcopy "nbd+unix:///keep?socket=$CVD_NBD" "$T/keep.back" || fail "reading keep back"
cmp -s "$T/keep" "$T/keep.back" || fail "keep's data changed"
"$CRYPTVOL" volume create more --size 4M > /dev/null || fail "create after space was freed"
ok "after a restart on a full disk a delete works, the reserve is back, keep is intact"
cvd_stop
