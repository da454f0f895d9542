#!/usr/bin/env bash
# A core dump of cryptvold serving a volume holds no part of its key.
#
# The daemon runs with allow-core-dumps (so it could dump core at all), two
# volumes (LUKS2 AES-256, LUKS1 AES-128) are attached over NBD, written and
# read by a client that stays connected, and gdb's gcore dumps the whole
# process. The dump must not contain the volume key (read with cryptsetup
# luksDump --dump-volume-key), either XTS half, nor any 16-byte quarter of
# it: AES's first round keys are the key itself, so this covers the key
# schedules too. gcore honours MADV_DONTDUMP as the kernel's core dumps do.
#
# The control proves the scan can fail: the same gcore and scan of a
# process that holds the key in ordinary memory finds it. And the daemon
# is not dumpable (prctl PR_GET_DUMPABLE, asked inside it through gdb)
# unless allow-core-dumps is set, and says so in its log when it is. With
# an RLIMIT_MEMLOCK too small for its key memory it refuses to start and
# says what to raise.
# Skips (77) without gdb or python3-libnbd; fails without cryptsetup.
source "$(dirname "$0")/lib.sh"

command -v gcore > /dev/null || skip "gcore (gdb) is not installed"
need cryptsetup
"$PYTHON" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"
# ASan ignores mlock, keeps freed memory in quarantine and maps terabytes
# of shadow that gcore takes minutes over: a sanitizer build proves nothing
# here (test-xts-secmem still checks the pool's flags there).
if ldd "$CRYPTVOLD" 2>/dev/null | grep libasan > /dev/null; then
    skip "$CRYPTVOLD is a sanitizer build"
fi

# dumpable PID: what prctl(PR_GET_DUMPABLE) returns inside the process.
dumpable() {
    gdb -p "$1" -batch -nx \
        -ex 'print ((int (*)(int, long, long, long, long))prctl)(3, 0, 0, 0, 0)' \
        2> "$T/gdb.err" | sed -n 's/^\$1 = //p'
}

# scan CORE HEXKEY: prints how many times the key, its halves and its
# 16-byte quarters occur in CORE, as "whole=N half=N quarter=N".
scan() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import mmap, sys
key = bytes.fromhex(sys.argv[2])
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    def count(pat):
        n, i = 0, m.find(pat)
        while i >= 0:
            n, i = n + 1, m.find(pat, i + 1)
        return n
    h = len(key) // 2
    print("whole=%d half=%d quarter=%d" % (
        count(key), count(key[:h]) + count(key[h:]),
        sum(count(key[i:i + 16]) for i in range(0, len(key), 16))))
EOF
}

# volume_key IMG: the hex volume key, by cryptsetup with the secret.
volume_key() {
    cryptsetup luksDump --batch-mode --dump-volume-key --key-file "$T/pw" "$1" |
        $XTS_CHECK dump-key || fail "cryptsetup luksDump --dump-volume-key $1 failed"
}

passfile "$T/pw" "core-dump test secret"

# --- key memory that cannot be locked: a clear refusal to start ---------
# RLIMIT_MEMLOCK of 8 KiB; root would not be held to it, so as root the
# daemon runs as nobody, in a data dir nobody owns (so only the key memory
# can stop it).  Some kernels and sandboxes do not hold mlock to the limit:
# the same user under the same limit locks 16 KiB (the pool's least) first, and where that
# works nothing can be refused here, so that part alone is skipped.
as_user=()
mkdir -p "$T/nobody"
if [ "$(id -u)" = 0 ]; then
    command -v setpriv > /dev/null || skip "setpriv (util-linux) is not installed"
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    chmod 0711 "$T"
    chown 65534:65534 "$T/nobody"
fi
limited() { "${as_user[@]}" bash -c 'ulimit -l 8 && exec "$@"' sh "$@"; }
if limited "$PYTHON" -c '
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(16384)
sys.exit(0 if libc.mlock(buf, 16384) == 0 else 1)'; then
    echo "note: this kernel lets an unprivileged process lock 16 KiB under RLIMIT_MEMLOCK 8 KiB; the refusal to start cannot be shown here"
else
    # It must exit at once; one that starts anyway is stopped (timeout's 124).
    rc=0
    limited timeout 20 "$CRYPTVOLD" --foreground --tls off --data-dir "$T/nobody/data" \
        --nbd-listen none --nbd-unix "$T/nobody/nbd.sock" \
        --admin-socket "$T/nobody/admin.sock" > "$T/memlock.out" 2>&1 || rc=$?
    [ "$rc" != 124 ] || fail "cryptvold started with RLIMIT_MEMLOCK 8 KiB: $(cat "$T/memlock.out")"
    [ "$rc" = 1 ] || fail "cryptvold with RLIMIT_MEMLOCK 8 KiB exited $rc: $(cat "$T/memlock.out")"
    grep -q "key memory: libgcrypt secure memory: cannot lock .* KiB in RAM (raise RLIMIT_MEMLOCK" \
        "$T/memlock.out" || fail "cryptvold with RLIMIT_MEMLOCK 8 KiB says: $(cat "$T/memlock.out")"
    ok "cryptvold refuses to start when its key memory cannot be locked, and says what to raise"
fi

# --- not dumpable by default --------------------------------------------
cvd_start plain --tls off
d=$(dumpable "$CVD_PID")
[ "$d" = 0 ] || fail "cryptvold without allow-core-dumps: PR_GET_DUMPABLE says '$d' $(cat "$T/gdb.err")"
cvd_stop
ok "cryptvold is not dumpable by default"

# --- allowed: dumpable, and the dump holds no key -----------------------
cvd_start dbg --tls off --allow-core-dumps
d=$(dumpable "$CVD_PID")
[ "$d" = 1 ] || fail "cryptvold --allow-core-dumps: PR_GET_DUMPABLE says '$d' $(cat "$T/gdb.err")"
grep -q "allow-core-dumps" "$CVD_DIR/cryptvold.log" ||
    fail "cryptvold --allow-core-dumps does not warn in its log"
"$CRYPTVOL" secret create s --from-file "$T/pw" > /dev/null
"$CRYPTVOL" volume create v2 --size 8M --secret s --type luks2 > /dev/null
"$CRYPTVOL" volume create v1 --size 8M --secret s --type luks1 --cipher aes-128 > /dev/null
key2=$(volume_key "$(vol_dir "$CVD_DIR/data" v2)/header")
key1=$(volume_key "$(vol_dir "$CVD_DIR/data" v1)/header")
[ ${#key2} = 128 ] && [ ${#key1} = 64 ] || fail "volume keys of ${#key2} and ${#key1} hex digits"

# A client on both volumes: writes and reads 2 MiB (split across the
# daemon's cores), then stays connected until $T/go-away exists.
"$PYTHON" - "$CVD_NBD" "$T" > "$T/client.out" 2>&1 <<'EOF' &
import nbd, os, sys, time
sock, tmp = sys.argv[1], sys.argv[2]
hs = []
for name in ("v2", "v1"):
    h = nbd.NBD()
    h.connect_uri("nbd+unix:///%s?socket=%s" % (name, sock))
    data = os.urandom(2 << 20)
    h.pwrite(data, 4096, nbd.CMD_FLAG_FUA)
    assert h.pread(len(data), 4096) == data, name + ": read back differs"
    h.flush()
    hs.append(h)
open(tmp + "/client-ready", "w").close()
while not os.path.exists(tmp + "/go-away"):
    time.sleep(0.05)
for h in hs:
    h.shutdown()
print("done")
EOF
cpid=$!
on_exit "touch $T/go-away; kill $cpid"
for ((i = 0; i < 300; i++)); do
    [ -e "$T/client-ready" ] && break
    kill -0 $cpid 2>/dev/null || fail "NBD client: $(cat "$T/client.out")"
    sleep 0.05
done
[ -e "$T/client-ready" ] || fail "NBD client not ready in 15 s: $(cat "$T/client.out")"

gcore -o "$T/core" "$CVD_PID" > "$T/gcore.out" 2>&1 ||
    fail "gcore of cryptvold failed: $(tail -3 "$T/gcore.out")"
core=$T/core.$CVD_PID
[ "$(stat -c %s "$core")" -gt 1000000 ] || fail "the core file is only $(stat -c %s "$core") bytes"
for v in 2 1; do
    k=key$v
    got=$(scan "$core" "${!k}")
    [ "$got" = "whole=0 half=0 quarter=0" ] ||
        fail "the core of cryptvold serving v$v holds its volume key: $got"
done
rm -f "$core"
touch "$T/go-away"
wait $cpid || fail "NBD client: $(cat "$T/client.out")"
ok "a gcore of cryptvold serving two volumes holds no part of their keys"
cvd_stop

# --- control: the same scan finds a key held in ordinary memory ---------
"$PYTHON" -c '
import sys, time
key = bytes.fromhex(sys.argv[1])
open(sys.argv[2], "w").close()
time.sleep(60)' "$key2" "$T/holder-ready" &
hpid=$!
on_exit "kill $hpid"
for ((i = 0; i < 200; i++)); do
    [ -e "$T/holder-ready" ] && break
    sleep 0.05
done
gcore -o "$T/ctl" "$hpid" > "$T/gcore.out" 2>&1 ||
    fail "gcore of the control process failed: $(tail -3 "$T/gcore.out")"
got=$(scan "$T/ctl.$hpid" "$key2")
case $got in
    whole=0*) fail "control: the scan did not find a key held in a process: $got" ;;
esac
kill $hpid
ok "control: the scan finds a key held in ordinary memory ($got)"
