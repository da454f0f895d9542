# Sourced by every shell test: a private scratch directory removed on exit
# (also on failure), helpers to fail with a message, and the peers' paths.
set -euo pipefail

: "${CRYPTVOL:?CRYPTVOL must point at the cryptvol binary (ctest sets it)}"
: "${SRC_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
# Debian's python3 has python3-cryptography; a pyenv python on PATH may not.
PYTHON=${PYTHON:-/usr/bin/python3}
XTS_CHECK="$PYTHON $SRC_DIR/tests/tools/xts-check.py"

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
