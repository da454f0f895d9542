#!/usr/bin/env bash
# scripts/quickstart.sh, with the build of the tests (--build-dir: nothing
# installed or built) on a free --port:
#  * it starts the daemon, makes the demo volume, shows its first bytes;
#  * every command of its "Try:" list works as printed, on this machine
#    (Debian 12's libnbd 1.14 too): the nbdfuse line where /dev/fuse and
#    root are (it shows the volume as a file of its size), the device map
#    line where the nbd module is loaded;
#  * run again, it reuses the daemon; --stop returns only once the daemon
#    has exited, and its pid file is gone; --stop again says it is not
#    running; a bad --port exits 2.
source "$(dirname "$0")/lib.sh"

for tool in nbdcopy nbdinfo qemu-img; do
    command -v "$tool" > /dev/null || skip "$tool is not installed"
done
QS=$SRC_DIR/scripts/quickstart.sh
B=${BUILD_DIR:?}
D=$T/demo
PORT=$(free_port)
expect_fail 2 'port "0" is not 1 to 65535' bash "$QS" --port 0 --build-dir "$B" "$D"
expect_fail 2 'port "x" is not 1 to 65535' bash "$QS" --port x --build-dir "$B" "$D"

# Stopped at exit also when the script fails after starting it (its pid
# file says which process).
on_exit "[ -f '$D/cryptvold.pid' ] && kill -9 \$(cat '$D/cryptvold.pid')"
bash "$QS" --port "$PORT" --build-dir "$B" "$D" > "$T/qs.out" 2>&1 || fail "quickstart failed: $(tail -5 "$T/qs.out")"
pid=$(cat "$D/cryptvold.pid")
on_exit "kill -9 $pid"
grep -q 'hello from cryptvol' "$T/qs.out" || fail "quickstart did not show the bytes read back: $(cat "$T/qs.out")"
grep -q "nbd: listening on 127.0.0.1:$PORT" "$D/cryptvold.log" || fail "the daemon does not listen on --port $PORT"
ok "quickstart --port $PORT: daemon up, demo volume written and read back over NBD with TLS"

# The commands it prints, one by one.
sed -n '/^Try:$/,$p' "$T/qs.out" | tail -n +2 | sed 's/^  //' > "$T/try"
[ "$(wc -l < "$T/try")" -ge 8 ] || fail "the Try: list is short: $(cat "$T/try")"
grep -q 'tls-certificates=.*\] &$' "$T/try" || fail "the nbdfuse line does not take the nbdkit detour: $(grep nbdfuse "$T/try")"
while IFS= read -r line; do
    case $line in
    export*) eval "$line"; continue ;;
    *"--stop"*) continue ;;         # below
    *"device map"*)
        if [ -d /sys/module/nbd ] && [ "$(id -u)" = 0 ]; then
            dev=$(eval "${line%%#*}") || fail "'$line' failed"
            "$CRYPTVOL" device unmap "$dev"
        else
            echo "not tried (no nbd module here): $line"
        fi
        continue ;;
    *nbdfuse*)
        if [ "$(id -u)" != 0 ] || [ ! -c /dev/fuse ] || ! command -v nbdfuse > /dev/null; then
            echo "not tried (needs root, /dev/fuse and nbdfuse): $line"
            continue
        fi
        eval "${line% &} > '$T/nbdfuse.log' 2>&1 &"
        fpid=$!
        on_exit "fusermount3 -u '$D/mnt'; kill $fpid"
        for ((i = 0; i < 200; i++)); do [ -f "$D/mnt/disk" ] && break; sleep 0.05; done
        [ "$(stat -c %s "$D/mnt/disk" 2>/dev/null)" = $((1 << 30)) ] ||
            fail "'$line': no 1 GiB $D/mnt/disk: $(cat "$T/nbdfuse.log")"
        # The line before wrote disk.raw to the volume.
        cmp <(head -c 1048576 "$D/mnt/disk") "$D/disk.raw" || fail "'$line': the file does not start with disk.raw's bytes"
        fusermount3 -u "$D/mnt"
        wait "$fpid" || true
        continue ;;
    esac
    (eval "$line") > "$T/line.out" 2>&1 || fail "printed command fails: '$line': $(tail -3 "$T/line.out")"
done < "$T/try"
ok "every command the quickstart prints works here"

bash "$QS" --port "$PORT" --build-dir "$B" "$D" > "$T/qs2.out" 2>&1 || fail "quickstart run again failed: $(tail -5 "$T/qs2.out")"
[ "$(cat "$D/cryptvold.pid")" = "$pid" ] || fail "run again, the quickstart started another daemon"
grep -q 'creating volume' "$T/qs2.out" && fail "run again, the quickstart created the volume again"
ok "run again: the same daemon and volume"

bash "$QS" --stop "$D" > "$T/stop.out" 2>&1 || fail "quickstart --stop failed: $(cat "$T/stop.out")"
kill -0 "$pid" 2>/dev/null && fail "quickstart --stop returned while cryptvold (pid $pid) still runs"
[ ! -e "$D/cryptvold.pid" ] || fail "pid file left after --stop"
grep -q 'SIGTERM: flushing' "$D/cryptvold.log" || fail "no SIGTERM line in the log"
bash "$QS" --stop "$D" | grep -q 'not running' || fail "a second --stop does not say the daemon is not running"
ok "--stop returns once the daemon has exited ($(cat "$T/stop.out"))"
