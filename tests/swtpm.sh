# A software TPM 2.0 for tests.  Sourced (after tests/lib.sh, or alone):
#
#   swtpm_start DIR   starts swtpm with its state in DIR (made if missing) on
#                     two free loopback ports, P for commands and P+1 for
#                     its control channel, and returns once both answer.
#                     Exports SWTPM_TCTI ("swtpm:host=127.0.0.1,port=P", what
#                     tpm2-tss and tpm2-tools take) and SWTPM_PID.  Under
#                     tests/lib.sh the TPM is also killed at exit, even when
#                     the test fails.  Its log is DIR/swtpm.log.
#   swtpm_stop [PID]  stops one that swtpm_start started (default
#                     $SWTPM_PID): SIGTERM, then SIGKILL after 5 s.
#
# Each state directory is another TPM: swtpm makes new seeds for a new one,
# so keys derived in one are not those of another.  Run alone (bash
# tests/swtpm.sh, as ctest does), it tests itself.

# Two consecutive free ports: P is free by bind(0); P+1 is tried and the
# pair dropped if it is taken.  Racy in theory, like free_port: swtpm_start
# tries again with other ports if swtpm cannot bind them.
swtpm_free_ports() {
    "${PYTHON:-python3}" -c '
import socket
for _ in range(100):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1))
    except OSError:
        continue
    finally:
        a.close(); b.close()
    print(p); break
else:
    raise SystemExit("no two consecutive free ports")'
}

# True once something accepts a TCP connection on 127.0.0.1:$1.
swtpm_port_answers() {
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null
}

swtpm_start() {
    local dir=$1 port pid try i
    command -v swtpm > /dev/null || {
        echo "swtpm_start: swtpm is not installed (scripts/install-deps.sh)" >&2
        return 1
    }
    mkdir -p "$dir"
    for ((try = 0; try < 5; try++)); do
        port=$(swtpm_free_ports) || return 1
        swtpm socket --tpm2 \
            --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
            --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
            --tpmstate "dir=$dir" --flags not-need-init,startup-clear \
            --log "file=$dir/swtpm.log" > /dev/null 2>> "$dir/swtpm.log" &
        pid=$!
        if declare -F on_exit > /dev/null; then
            on_exit "swtpm_stop $pid"
        fi
        for ((i = 0; i < 200; i++)); do
            if swtpm_port_answers "$port" && swtpm_port_answers $((port + 1)); then
                SWTPM_PID=$pid
                export SWTPM_PID SWTPM_TCTI="swtpm:host=127.0.0.1,port=$port"
                return 0
            fi
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.05
        done
        # Exited (most likely a port taken since we looked) or never
        # answered: stop it and try other ports.
        swtpm_stop "$pid"
    done
    echo "swtpm_start: swtpm in $dir did not start; its log:" >&2
    cat "$dir/swtpm.log" >&2
    return 1
}

swtpm_stop() {
    local pid=${1:-${SWTPM_PID:-}} i
    # Only a child of this shell not yet reaped, so a stale PID (stopped
    # already, then reused by the system) is never signalled.
    [ -n "$pid" ] && jobs -p | grep -qx -- "$pid" || return 0
    kill -TERM "$pid" 2> /dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    [ "$pid" != "${SWTPM_PID:-}" ] || unset SWTPM_PID SWTPM_TCTI
}

# Run as a test: the TPM answers once swtpm_start returns, and is gone after
# swtpm_stop.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    : "${CRYPTVOL:=unused}"
    source "$(dirname "$0")/lib.sh"
    # A dependency scripts/install-deps.sh installs: missing, it fails.
    need swtpm
    swtpm_start "$T/tpm"
    port=${SWTPM_TCTI##*port=}
    pid=$SWTPM_PID
    kill -0 "$pid" || fail "swtpm (pid $pid) is not running"
    swtpm_port_answers "$port" || fail "swtpm does not answer on port $port"
    # swtpm answers on its ports before its first state write lands (its
    # startup-clear runs after it listens): give it a moment, under load.
    for ((i = 0; i < 100; i++)); do
        [ -e "$T/tpm/tpm2-00.permall" ] && break
        sleep 0.05
    done
    [ -e "$T/tpm/tpm2-00.permall" ] || fail "swtpm wrote no state in $T/tpm within 5 s"
    ok "swtpm_start: $SWTPM_TCTI, pid $pid"
    swtpm_stop
    ! kill -0 "$pid" 2> /dev/null || fail "swtpm (pid $pid) still runs after swtpm_stop"
    ! swtpm_port_answers "$port" || fail "port $port still answers after swtpm_stop"
    [ -z "${SWTPM_TCTI:-}" ] || fail "SWTPM_TCTI still set after swtpm_stop"
    ok "swtpm_stop"
fi
