# Sourced by the tests that put ext4 on a volume through nbdfuse and a
# direct-I/O loop device (nbdfuse-ext4.sh, volume-resize-ext4.sh), after
# lib.sh: the setup and the teardown they share.
FUSE_DIR=$T/fuse        # nbdfuse's mount point; the export is $FUSE_DIR/vol
MNT=$T/mnt              # where ext4 is mounted
mkdir -p "$FUSE_DIR" "$MNT"
FUSE_PID=
LOOP=
MOUNTED=

# Each step undoes only what is still set up, so the same function serves
# the normal path and the exit trap (it must not detach a loop device that
# another test got after we released ours).
teardown() {
    if [ -n "$MOUNTED" ]; then
        umount "$MNT" || umount -l "$MNT"
        MOUNTED=
    fi
    if [ -n "$LOOP" ]; then
        losetup -d "$LOOP"
        LOOP=
    fi
    if [ -n "$FUSE_PID" ]; then
        local i
        # A loop device just detached may hold the file a moment longer
        # (EBUSY): try again, then detach lazily.
        for ((i = 0; i < 50; i++)); do
            mountpoint -q "$FUSE_DIR" || break
            fusermount3 -u "$FUSE_DIR" 2>/dev/null && break
            sleep 0.1
        done
        ! mountpoint -q "$FUSE_DIR" || fusermount3 -uz "$FUSE_DIR"
        for ((i = 0; i < 100; i++)); do
            kill -0 "$FUSE_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$FUSE_PID" 2>/dev/null; then
            kill -9 "$FUSE_PID"
            fusermount3 -uz "$FUSE_DIR"
        fi
        wait "$FUSE_PID" 2>/dev/null || true
        FUSE_PID=
    fi
}

# fuse_attach SIZE TARGET...: nbdfuse on $FUSE_DIR/vol (a new NBD
# connection to TARGET, a URI or nbdfuse's "[ CMD ]"), which must show SIZE
# bytes, and a direct-I/O loop device on it ($LOOP).
fuse_attach() {
    local size=$1 i
    shift
    nbdfuse "$FUSE_DIR/vol" "$@" 2> "$T/nbdfuse.log" &
    FUSE_PID=$!
    for ((i = 0; i < 200; i++)); do
        [ -f "$FUSE_DIR/vol" ] && break
        kill -0 "$FUSE_PID" 2>/dev/null || fail "nbdfuse exited: $(cat "$T/nbdfuse.log")"
        sleep 0.05
    done
    [ -f "$FUSE_DIR/vol" ] || fail "nbdfuse: no $FUSE_DIR/vol after 10 s: $(cat "$T/nbdfuse.log")"
    [ "$(stat -c %s "$FUSE_DIR/vol")" = "$size" ] ||
        fail "nbdfuse shows $(stat -c %s "$FUSE_DIR/vol") bytes, expected $size"
    LOOP=$(losetup -f --show --direct-io=on "$FUSE_DIR/vol") ||
        fail "losetup on the nbdfuse file failed"
    # losetup falls back to buffered I/O without saying so when the kernel
    # cannot do direct I/O on the file: reads would then be served by the
    # nbdfuse file's page cache.
    [ "$(cat "/sys/block/${LOOP#/dev/}/loop/dio")" = 1 ] ||
        fail "$LOOP does no direct I/O on the nbdfuse file (/sys/block/${LOOP#/dev/}/loop/dio)"
}

# direct_check WHEN: every file in $T/sums read with O_DIRECT (each read
# goes down to the daemon) and compared with its checksum; fails naming
# the first file that differs.
direct_check() {
    local sum path got
    while read -r sum path; do
        got=$(dd if="$MNT/$path" iflag=direct bs=1M status=none | sha256sum) ||
            fail "$1: O_DIRECT read of $path failed"
        [ "${got%% *}" = "$sum" ] || fail "$1: $path read with O_DIRECT differs from what was written"
    done < "$T/sums"
}
