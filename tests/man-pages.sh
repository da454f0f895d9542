#!/usr/bin/env bash
# The man pages (man/*.scd, built by scdoc) as man -l shows them:
#  * cryptvold.conf(5) and docs/cryptvold.md name every key that
#    "cryptvold --help" lists, and etc/cryptvold.conf every one but the
#    test-only rotation-delay-ms and backup-delay-ms;
#  * cryptvol(8) names every command of "cryptvol --help";
#  * the EXAMPLES of cryptvol(8) and cryptvold(8) run as printed, in a
#    scratch directory, against a daemon: each block is one bash script.
#    Two changes only, because the KDF and the port are not what they
#    show: cryptvol image format and cryptvold get a fast KDF
#    (--pbkdf pbkdf2 --pbkdf-iterations 1000), and port 10809 is a free one.
#    The device map lines need the nbd module (tests/device-map.sh).
source "$(dirname "$0")/lib.sh"

MAN_DIR=${BUILD_DIR:?}/man
command -v man > /dev/null || skip "man is not installed"
render() { MANWIDTH=200 man -l "$MAN_DIR/$1" 2> "$T/man.err" || fail "man -l $1: $(cat "$T/man.err")"; }
for p in cryptvol.8 cryptvold.8 cryptvold.conf.5; do
    [ -f "$MAN_DIR/$p" ] || fail "$p was not built in $MAN_DIR"
    render "$p" > "$T/$p.txt"
done

# ---- every key, every command ------------------------------------------------
# --config and --migrate-to-etcd are command-line only: cryptvold(8) has them.
keys=$("$CRYPTVOLD" --help | sed -n 's/^  --\([a-z-]*\).*/\1/p' | grep -vE '^(config|migrate-to-etcd)$')
grep -q -- '--migrate-to-etcd' "$T/cryptvold.8.txt" || fail "cryptvold(8) does not describe --migrate-to-etcd"
[ "$(wc -l <<< "$keys")" -gt 30 ] || fail "cryptvold --help lists only $(wc -l <<< "$keys") keys"
for k in $keys; do
    grep -qE "(^|[^a-z-])$k( =|,| )" "$T/cryptvold.conf.5.txt" || fail "cryptvold.conf(5) does not describe the key $k"
    grep -q -- "--$k" "$SRC_DIR/docs/cryptvold.md" || fail "docs/cryptvold.md does not list --$k"
    [ "$k" = rotation-delay-ms ] || [ "$k" = backup-delay-ms ] || grep -qE "^#? ?$k( |=)" "$SRC_DIR/etc/cryptvold.conf" ||
        fail "etc/cryptvold.conf does not show the key $k"
done
ok "cryptvold.conf(5), docs/cryptvold.md and etc/cryptvold.conf name all $(wc -l <<< "$keys") keys of cryptvold --help"

# The commands from the table itself (cryptvol help --json): the lines of
# --help no longer start with "cryptvol", and a parse of them that finds
# none would check nothing.
"$CRYPTVOL" help --json | $PYTHON -c 'import json, sys
for c in json.load(sys.stdin)["commands"]: print(c["command"])' > "$T/commands"
[ "$(wc -l < "$T/commands")" -ge 30 ] || fail "cryptvol help --json lists only $(wc -l < "$T/commands") commands"
while read -r path; do
    grep -qF "$path" "$T/cryptvol.8.txt" || fail "cryptvol(8) does not describe 'cryptvol $path'"
done < "$T/commands"
ok "cryptvol(8) describes all $(wc -l < "$T/commands") commands of cryptvol help --json"

# ---- examples ----------------------------------------------------------------
# examples PAGE: the EXAMPLES section's literal blocks, one script each,
# separated by a line "----".
examples() {
    awk '/^EXAMPLES/ { on = 1; next } /^[A-Z]/ { on = 0 }
         on && /^           / { sub(/^           /, ""); print; blank = 0; next }
         on && /^       [^ ]/ && !blank { print "----"; blank = 1 }' "$T/$1.txt"
}
bin=$T/bin
mkdir -p "$bin"
cat > "$bin/cryptvol" <<EOT
#!/bin/bash
if [ "\$1 \$2" = "image format" ]; then set -- "\$@" --pbkdf pbkdf2 --pbkdf-iterations 1000; fi
exec "$CRYPTVOL" "\$@"
EOT
cat > "$bin/cryptvold" <<EOT
#!/bin/bash
exec "$CRYPTVOLD" "\$@" --pbkdf pbkdf2 --pbkdf-iterations 1000
EOT
chmod +x "$bin/cryptvol" "$bin/cryptvold"
PORT=$(free_port)
# run_block PAGE N SCRIPT: runs it in $T/ex, fails naming the line.
run_block() {
    local page=$1 n=$2 script=$3
    printf 'set -euo pipefail\nset -x\n%s\n' "$script" | sed "s/10809/$PORT/g" > "$T/block.sh"
    (cd "$T/ex" && PATH=$bin:$PATH bash "$T/block.sh") > "$T/block.out" 2>&1 ||
        fail "$page EXAMPLES, block $n fails: $(tail -4 "$T/block.out"; echo "script:"; cat "$T/block.sh")"
}
mkdir -p "$T/ex"
head -c 1048576 /dev/urandom > "$T/ex/disk.raw"

# cryptvol(8): the offline block, then the daemon's against a daemon.
n=0
blocks=$(examples cryptvol.8)
[ "$(grep -c '^cryptvol ' <<< "$blocks")" -ge 15 ] || fail "cryptvol(8) EXAMPLES have fewer than 15 commands: $blocks"
cvd_start node --tls off
while IFS= read -r -d $'\x1e' block; do
    n=$((n + 1))
    [ -n "${block//[$'\n ']/}" ] || continue
    if grep -q 'device map\|/dev/nbd' <<< "$block"; then
        echo "cryptvol(8) block $n: needs the nbd module; tests/device-map.sh tests these commands"
        continue
    fi
    run_block "cryptvol(8)" "$n" "$block"
done < <(sed 's/^----$/\x1e/' <<< "$blocks"$'\n\x1e' | tr -d '\r')
cmp <(head -c 1048576 "$T/ex/disk.raw") "$T/ex/copy.raw" || fail "cryptvol(8) example: the export differs from the import"
"$CRYPTVOL" volume info db1 | grep -q 'secret: *db2-key' || fail "cryptvol(8) example: db1 not rekeyed to db2-key"
"$CRYPTVOL" volume info db2 > /dev/null 2>&1 && fail "cryptvol(8) example: db2 not deleted"
ok "cryptvol(8) EXAMPLES run as printed ($n blocks)"
cvd_stop

rm -rf "$T/ex" && mkdir -p "$T/ex"
block=$(examples cryptvold.8 | sed '/^----$/d')
grep -q '^cryptvold --foreground' <<< "$block" || fail "cryptvold(8) EXAMPLES do not start the daemon: $block"
# The daemon of the example is a job of the block; wait for its socket.
block=$(sed 's|^\(CRYPTVOL_SOCKET=.*\)$|for i in $(seq 100); do [ -S data/admin.sock ] \&\& break; sleep 0.1; done\n\1|' <<< "$block")
run_block "cryptvold(8)" 1 "$block
wait %1"
grep -q 'SIGHUP' "$T/ex/cryptvold.log" || fail "cryptvold(8) example: no SIGHUP line in cryptvold.log"
grep -q 'SIGTERM: flushing' "$T/ex/cryptvold.log" || fail "cryptvold(8) example: the daemon did not stop on SIGTERM"
ok "cryptvold(8) EXAMPLES run as printed"
