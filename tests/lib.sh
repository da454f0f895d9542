# Sourced by every shell test: a private scratch directory removed on exit
# (also on failure), helpers to fail with a message, and the peers' paths.
set -euo pipefail

: "${CRYPTVOL:?CRYPTVOL must point at the cryptvol binary (ctest sets it)}"
: "${SRC_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# Debian's python3 has python3-cryptography; a pyenv python on PATH may not.
PYTHON=${PYTHON:-/usr/bin/python3}
XTS_CHECK="$PYTHON $SRC_DIR/tests/tools/xts-check.py"
# cryptsetup, mkfs.ext4 and losetup live in /usr/sbin, which a non-root
# user's PATH often lacks: without this, a check that looks for them would
# not run in such a run (and pass by not running).
for d in /usr/sbin /sbin; do
    case ":$PATH:" in *":$d:"*) ;; *) PATH=$PATH:$d ;; esac
done
export PATH

T=$(mktemp -d "${TMPDIR:-/tmp}/cryptvol-test.XXXXXX")
CLEANUP_CMDS=()
cleanup() {
    local rc=$? i
    for ((i = ${#CLEANUP_CMDS[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUP_CMDS[i]}" >/dev/null 2>&1 || true
    done
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
# Registers a command to run at exit, last registered first.
on_exit() { CLEANUP_CMDS+=("$*"); }

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
skip() { echo "SKIP: $*" >&2; exit 77; }
# need CMD...: commands scripts/install-deps.sh installs.  One missing is a
# broken install, not an optional peer, so the test fails rather than skips.
need() {
    local c
    for c in "$@"; do
        command -v "$c" > /dev/null ||
            fail "$c is not installed (scripts/install-deps.sh installs it; PATH=$PATH)"
    done
}

# Writes a passphrase file with mode 0600: passfile PATH CONTENT
passfile() { (umask 077; printf '%s' "$2" > "$1"); }

# Fast key derivation for tests: the KDF is not what they test.
FAST_KDF=(--pbkdf pbkdf2 --pbkdf-iterations 1000)

# Runs a command that must fail with exit status $1 and a stderr matching $2.
expect_fail() {
    local want=$1 pattern=$2 rc=0
    shift 2
    "$@" > "$T/out" 2> "$T/err" || rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want: $(cat "$T/err")"
    grep -qE -- "$pattern" "$T/err" || fail "'$*': stderr '$(cat "$T/err")' does not match '$pattern'"
    [ "$(wc -l < "$T/err")" -le 1 ] || fail "'$*': error is more than one line: $(cat "$T/err")"
}

# ---- cryptvold -----------------------------------------------------------
CRYPTVOLD=${CRYPTVOLD:-${BUILD_DIR:-$SRC_DIR/build}/daemon/cryptvold}

# A free TCP port on loopback (racy in theory; the daemon fails loudly if
# another process takes it first).
free_port() {
    $PYTHON -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# cvd_start NAME [cryptvold options...]
# Starts a daemon in the foreground with its data in $T/NAME/data, NBD on the
# unix socket $T/NAME/nbd.sock (no TCP unless options add --nbd-listen), the
# admin API on $T/NAME/admin.sock and a fast KDF.  Sets CVD_PID, CVD_DIR,
# CVD_NBD (the NBD socket) and exports CRYPTVOL_SOCKET for the CLI.  The
# daemon is killed at exit even when the test fails; its log is
# $T/NAME/cryptvold.log and is printed if it dies while starting.  Tests
# retry an unlock at once after fixing a secret: no unlock-retry-delay
# unless the options set one (tests/nbd-unlock-bounds.sh does).
# With CVD_RECORD=LOG the daemon runs under the power-loss harness's shim
# (docs/testing.md): every write and sync under its data dir is appended
# to LOG, for tests/tools/powercut.py to replay.
cvd_start() {
    local name=$1 i rec=()
    shift
    CVD_DIR=$T/$name
    CVD_NBD=$CVD_DIR/nbd.sock
    mkdir -p "$CVD_DIR"
    rm -f "$CVD_DIR/admin.sock" "$CVD_NBD"
    if [ -n "${CVD_RECORD:-}" ]; then
        [ -f "${CV_POWERCUT_SHIM:-}" ] ||
            fail "CVD_RECORD: no powercut shim (CV_POWERCUT_SHIM='${CV_POWERCUT_SHIM:-}'; ctest sets it)"
        mkdir -p "$CVD_DIR/data"
        # An ASan daemon's runtime must come first; the shim comes before.
        rec=(env LD_PRELOAD="$CV_POWERCUT_SHIM" CV_POWERCUT_ROOT="$CVD_DIR/data"
             CV_POWERCUT_LOG="$CVD_RECORD"
             ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0")
    fi
    "${rec[@]}" "$CRYPTVOLD" --foreground --data-dir "$CVD_DIR/data" \
        --nbd-listen none --nbd-unix "$CVD_NBD" \
        --admin-socket "$CVD_DIR/admin.sock" \
        --pbkdf pbkdf2 --pbkdf-iterations 1000 --log-level debug \
        --unlock-retry-delay 0 \
        "$@" 2>> "$CVD_DIR/cryptvold.log" &
    CVD_PID=$!
    on_exit "kill -9 $CVD_PID; wait $CVD_PID"
    for ((i = 0; i < 200; i++)); do
        [ -S "$CVD_DIR/admin.sock" ] && [ -S "$CVD_NBD" ] && break
        if ! kill -0 "$CVD_PID" 2>/dev/null; then
            cat "$CVD_DIR/cryptvold.log" >&2
            fail "cryptvold $name exited while starting"
        fi
        sleep 0.05
    done
    [ -S "$CVD_DIR/admin.sock" ] || fail "cryptvold $name: no admin socket after 10 s"
    export CRYPTVOL_SOCKET=$CVD_DIR/admin.sock
}

# cvd_stop [PID]: SIGTERM and wait; fails if the daemon does not exit 0.
cvd_stop() {
    local pid=${1:-$CVD_PID} rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    [ "$rc" = 0 ] || fail "cryptvold (pid $pid) exited $rc after SIGTERM"
}

# ---- volumes as layer chains (docs/store.md) ------------------------------
# vol_dir DATA NAME: the chain directory of volume NAME under data dir DATA.
vol_dir() { echo "$1/volumes/$2"; }
# vol_head DATA NAME: the head layer file (the last layer the manifest lists).
vol_head() {
    local d
    d=$(vol_dir "$1" "$2")
    $PYTHON -c 'import json,sys
m = json.load(open(sys.argv[1] + "/chain"))
print("%s/layer-%06u" % (sys.argv[1], m["layers"][-1]["id"]))' "$d" ||
        fail "volume $2: no readable manifest in $d"
}
