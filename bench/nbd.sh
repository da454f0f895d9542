#!/usr/bin/env bash
# NBD serving: cryptvold against nbdkit (file plugin, and its luks filter)
# and qemu-nbd (luks driver), on tmpfs images of the same size.
#
# Usage: bench/nbd.sh [BUILD_DIR]
#
# Servers, one after the other, each serving an export of SIZE_MIB MiB
# (default 1024):
#   nbdkit file       plaintext: the ceiling for serving a file over NBD
#   nbdkit luks       nbdkit's luks filter on a LUKS1 image (cryptsetup)
#   qemu-nbd luks     qemu-nbd's luks driver on the same LUKS1 image
#   cryptvold luks2   a default volume (LUKS2, 4096-byte sectors)
#   cryptvold luks1   a --type luks1 volume (512-byte sectors), like for like
# The cryptvold rows are measured when BUILD_DIR/daemon/cryptvold exists.
#
# The peers' images are filled with random data beforehand; a cryptvold
# volume is filled through the server from a random file, read back and
# compared (untimed), so no timed run pays for allocating tmpfs pages.
# Each server is started twice.  On a unix socket: nbdcopy writes and reads
# the whole export, and fio's nbd engine runs sequential 1 MiB read and
# write at queue depth 16 and 4 KiB random read and write at queue depth 32
# (RUNTIME seconds each, default 10).  On loopback TCP with TLS required
# (PSK): nbdcopy writes and reads the whole export (fio's nbd engine cannot
# take a PSK file), and for cryptvold the result is read back and compared.
# The TLS cost is cryptvold's nbdcopy rate over TLS against its nbdcopy rate
# over the unix socket: same client, same requests.
#
# Prints every figure, the ratios and PASS/MISS per target.  Those lines are
# information: the script exits 0 whatever the figures, and non-zero only
# when something could not run (a server that did not start, a command that
# failed, data that did not read back as written).  Every server is stopped
# by its PID on exit, also on failure or Ctrl-C.  See bench/README.md.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$SRC_DIR/build}
SIZE_MIB=${SIZE_MIB:-1024}
RUNTIME=${RUNTIME:-10}          # seconds per fio workload
COPY_SECONDS=${COPY_SECONDS:-3} # nbdcopy is repeated until this much time
PYTHON=${PYTHON:-/usr/bin/python3}

# Targets (cryptvold's figure / the reference's).
T_SEQ_LUKS=3        # sequential: at least 3x nbdkit's luks filter
T_SEQ_FILE=0.5      # ... and at least half of nbdkit's file plugin
T_RAND_LUKS=1.2     # 4 KiB random: at least 1.2x nbdkit's luks filter
T_TLS=0.75          # TLS: at least 75% of its own unix-socket rate

die() { echo "nbd.sh: $*" >&2; exit 1; }

[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "SIZE_MIB must be a number of MiB"
[[ $RUNTIME =~ ^[1-9][0-9]*$ ]] || die "RUNTIME must be a number of seconds"
[[ $COPY_SECONDS =~ ^[0-9]+$ ]] || die "COPY_SECONDS must be a number of seconds"
for tool in fio nbdkit qemu-nbd nbdcopy nbdinfo psktool cryptsetup cmp awk; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ -x "$PYTHON" ] || die "$PYTHON is not installed (PYTHON=... for another)"

# cryptvold and the CLI, when there is a build with a daemon in it.
CRYPTVOLD=$BUILD_DIR/daemon/cryptvold
CRYPTVOL=$BUILD_DIR/cli/cryptvol
if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
    targets=(--target cryptvol-cli)
    [ -f "$SRC_DIR/daemon/main.c" ] && targets+=(--target cryptvold)
    out=$(cmake --build "$BUILD_DIR" "${targets[@]}" 2>&1) ||
        die "cmake --build $BUILD_DIR ${targets[*]} failed:"$'\n'"$out"
fi
HAVE_CVD=
[ -x "$CRYPTVOLD" ] && [ -x "$CRYPTVOL" ] && HAVE_CVD=1

# --- scratch space on tmpfs --------------------------------------------------
# The random input, a plaintext image, a LUKS1 image (nbdkit and qemu-nbd
# take turns on it), two cryptvold volumes and a read-back file.
need_kib=$(( (SIZE_MIB * 6 + 256) * 1024 ))
T=$(mktemp -d "${TMPDIR:-/tmp}/cryptvol-bench.XXXXXX")
MOUNTED=
PIDS=()
stop_pid() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [ -n "${W:-}" ] && [ "$W" != "$T/tmpfs" ] && rm -rf "$W"
    if [ -n "$MOUNTED" ]; then
        umount "$T/tmpfs" || echo "nbd.sh: could not unmount $T/tmpfs" >&2
    fi
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

is_tmpfs() { [ "$(stat -f -c %T "$1" 2>/dev/null)" = tmpfs ]; }
avail_kib() { df -Pk "$1" | awk 'NR == 2 { print $4 }'; }

if is_tmpfs /dev/shm && [ "$(avail_kib /dev/shm)" -ge "$need_kib" ]; then
    W=$(mktemp -d /dev/shm/cryptvol-bench.XXXXXX)
else
    [ "$(id -u)" -eq 0 ] ||
        die "/dev/shm is not a tmpfs with $((need_kib / 1024)) MiB free, and mounting one needs root"
    mkdir "$T/tmpfs"
    mount -t tmpfs -o "size=${need_kib}k,mode=0700" tmpfs "$T/tmpfs" ||
        die "mounting a tmpfs on $T/tmpfs failed"
    MOUNTED=1
    W=$T/tmpfs
fi

# --- helpers -----------------------------------------------------------------
SIZE=$((SIZE_MIB * 1024 * 1024))
IN=$W/input.raw
BACK=$W/readback.raw
PASS=$W/passphrase
PSKDIR=$W/psk
PSK=$PSKDIR/keys.psk

now_ns() { date +%s%N; }
free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Failures inside a server's measurement set ERR and return 1, so that the
# other servers are still measured; the script exits 1 at the end.
ERR=
fail() { ERR=$*; return 1; }
# run WHAT COMMAND...: the command's output goes to $T/cmd.out.
run() {
    local what=$1
    shift
    "$@" > "$T/cmd.out" 2>&1 < /dev/null ||
        fail "$what failed: $*"$'\n'"$(tail -n 20 "$T/cmd.out")"
}

# start_server NAME URI NBDINFO-URI COMMAND...: starts a server in the
# background (its output in $T/NAME.log), waits until URI answers, checks
# the export's size and sets SPID.
SPID=
start_server() {
    local name=$1 uri=$2 i
    shift 2
    "$@" > "$T/$name.log" 2>&1 < /dev/null &
    SPID=$!
    PIDS+=("$SPID")
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$SPID" 2>/dev/null; then
            stop_server
            fail "$name exited at start: $*"$'\n'"$(tail -n 20 "$T/$name.log")"
            return
        fi
        nbdinfo --size "$uri" > "$T/size.out" 2>&1 && break
        sleep 0.1
    done
    if [ "$i" -eq 300 ]; then
        stop_server
        fail "$name does not answer on $uri after 30 s: $*"$'\n'"$(tail -n 20 "$T/size.out" "$T/$name.log")"
        return
    fi
    if [ "$(cat "$T/size.out")" != "$SIZE" ]; then
        stop_server
        fail "$name serves $(cat "$T/size.out") bytes, not $SIZE"
        return
    fi
}
stop_server() {
    local p keep=()
    [ -n "$SPID" ] || return 0
    stop_pid "$SPID"
    for p in "${PIDS[@]}"; do [ "$p" = "$SPID" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    SPID=
}

declare -A R    # R[server,metric] = figure
declare -A CIPHER   # CIPHER[server] = what libnbd says of the TLS session
NBDCOPY=(nbdcopy --requests=16 --no-extents)

# CPU seconds used so far by the server (all its threads) and by this
# shell's finished children (nbdcopy).
CLK_TCK=$(getconf CLK_TCK)
server_cpu() {
    awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / hz }' \
        "/proc/$SPID/stat"
}
# Sets CCPU (not in a $(...), whose subshell has no finished children).
client_cpu() {
    times > "$T/times.out"
    CCPU=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
                printf "%.3f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$T/times.out")
}

# copy_rate SERVER METRIC SRC DST: runs nbdcopy SRC DST over the whole
# export until COPY_SECONDS have passed (at least once); the rate is bytes
# copied / time, in MiB/s.  Also records the CPU time the server and
# nbdcopy spent per GiB copied (R[SERVER,METRIC-cpu] = "SERVER CLIENT").
copy_rate() {
    local server=$1 metric=$2 src=$3 dst=$4 t0 t1 n=0 s0 s1 c0 c1
    client_cpu
    s0=$(server_cpu) c0=$CCPU
    t0=$(now_ns)
    while :; do
        run "nbdcopy" "${NBDCOPY[@]}" "$src" "$dst" || return
        n=$((n + 1))
        t1=$(now_ns)
        [ $((t1 - t0)) -ge $((COPY_SECONDS * 1000000000)) ] && break
    done
    client_cpu
    s1=$(server_cpu) c1=$CCPU
    R[$server,$metric]=$(awk -v n="$n" -v m="$SIZE_MIB" -v a="$t0" -v b="$t1" \
        'BEGIN { printf "%.0f", n * m / ((b - a) / 1e9) }')
    R[$server,$metric-cpu]=$(awk -v n="$n" -v m="$SIZE_MIB" -v s0="$s0" -v s1="$s1" \
        -v c0="$c0" -v c1="$c1" \
        'BEGIN { g = n * m / 1024; printf "%.2f %.2f", (s1 - s0) / g, (c1 - c0) / g }')
}

# fill_check SERVER URI: writes the random input to the export and reads it
# back (untimed): every page of the image is allocated before anything is
# timed, and a server that serves other data than it was given stops here.
fill_check() {
    local server=$1 uri=$2
    run "filling $server" "${NBDCOPY[@]}" "$IN" "$uri" || return
    verify "$server" "$uri"
}
verify() {
    local server=$1 uri=$2
    run "reading $server back" "${NBDCOPY[@]}" "$uri" "$BACK" || return
    cmp "$IN" "$BACK" > "$T/cmp.out" 2>&1 ||
        fail "$server: $uri reads back other data than was written: $(cat "$T/cmp.out")"
    rm -f "$BACK"
}

# fio_run SERVER METRIC URI RW BS QD: one fio workload; sets R[SERVER,METRIC]
# to MiB/s (sequential) or IOPS (random).
fio_run() {
    local server=$1 metric=$2 uri=$3 rw=$4 bs=$5 qd=$6 dir=read what
    case $rw in *write) dir=write ;; esac
    run "fio $rw $bs" fio --name="$metric" --ioengine=nbd --uri="$uri" \
        --rw="$rw" --bs="$bs" --iodepth="$qd" --size="${SIZE_MIB}M" \
        --ramp_time=1 --runtime="$RUNTIME" --time_based \
        --output-format=json --output="$T/fio.json" || return
    case $rw in rand*) what=iops ;; *) what=bw_bytes ;; esac
    R[$server,$metric]=$("$PYTHON" - "$T/fio.json" "$dir" "$what" <<'EOF'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
if job["error"]:
    sys.exit("fio reports error %d" % job["error"])
v = job[sys.argv[2]][sys.argv[3]]
print("%.0f" % (v / 1048576 if sys.argv[3] == "bw_bytes" else v))
EOF
    ) || fail "fio $rw $bs: no result in $T/fio.json: $(cat "$T/fio.json")"
}

# unix_phase SERVER URI [check]: the workloads over a unix socket; with
# "check", after filling the export and reading it back.
unix_phase() {
    local server=$1 uri=$2
    if [ "${3:-}" = check ]; then
        fill_check "$server" "$uri" || return
    fi
    copy_rate "$server" copy-write "$IN" "$uri" || return
    copy_rate "$server" copy-read "$uri" null: || return
    fio_run "$server" seq-read "$uri" read 1M 16 || return
    fio_run "$server" seq-write "$uri" write 1M 16 || return
    fio_run "$server" rand-read "$uri" randread 4k 32 || return
    fio_run "$server" rand-write "$uri" randwrite 4k 32 || return
}
# tls_phase SERVER URI [check]: nbdcopy over TLS; with "check", then a
# read-back check.
tls_phase() {
    local server=$1 uri=$2
    # The cipher the server and libnbd's GnuTLS agreed on.
    LIBNBD_DEBUG=1 nbdinfo --size "$uri" > "$T/cipher.out" 2>&1 ||
        fail "nbdinfo $uri failed: $(tail -n 5 "$T/cipher.out")" || return
    CIPHER[$server]=$(sed -n 's/.*connection is using TLS: \(.*\)/\1/p' "$T/cipher.out" | head -n 1)
    copy_rate "$server" tls-write "$IN" "$uri" || return
    copy_rate "$server" tls-read "$uri" null: || return
    if [ "${3:-}" = check ]; then
        verify "$server over TLS" "$uri" || return
    fi
}

tls_uri() { echo "nbds://alice@127.0.0.1:$1/$2?tls-psk-file=$PSK"; }

# --- the servers ---------------------------------------------------------------
NBDKIT=(nbdkit --foreground --exit-with-parent)
PLAIN_IMG=$W/plain.img
LUKS_IMG=$W/luks1.img
QSECRET=(--object "secret,id=s0,file=$PASS")
QOPTS="driver=luks,key-secret=s0,file.filename=$LUKS_IMG"

bench_nbdkit_file() {
    local s="nbdkit file" sock=$W/nbdkit.sock port
    rm -f "$sock"
    start_server nbdkit-file "nbd+unix:///plain?socket=$sock" \
        "${NBDKIT[@]}" -U "$sock" -e plain file file="$PLAIN_IMG" || return
    unix_phase "$s" "nbd+unix:///plain?socket=$sock" || return
    stop_server
    port=$(free_port)
    start_server nbdkit-file-tls "$(tls_uri "$port" plain)" \
        "${NBDKIT[@]}" -i 127.0.0.1 -p "$port" --tls=require --tls-psk="$PSK" \
        -e plain file file="$PLAIN_IMG" || return
    tls_phase "$s" "$(tls_uri "$port" plain)" || return
    stop_server
}

bench_nbdkit_luks() {
    local s="nbdkit luks" sock=$W/nbdkit.sock port
    rm -f "$sock"
    start_server nbdkit-luks "nbd+unix:///luks?socket=$sock" \
        "${NBDKIT[@]}" -U "$sock" -e luks --filter=luks file file="$LUKS_IMG" \
        passphrase=+"$PASS" || return
    unix_phase "$s" "nbd+unix:///luks?socket=$sock" || return
    stop_server
    port=$(free_port)
    start_server nbdkit-luks-tls "$(tls_uri "$port" luks)" \
        "${NBDKIT[@]}" -i 127.0.0.1 -p "$port" --tls=require --tls-psk="$PSK" \
        -e luks --filter=luks file file="$LUKS_IMG" passphrase=+"$PASS" || return
    tls_phase "$s" "$(tls_uri "$port" luks)" || return
    stop_server
}

# qemu-nbd: -t keeps serving after a client leaves, --shared=0 takes any
# number of clients (nbdcopy opens several when the server allows it).
bench_qemu_nbd() {
    local s="qemu-nbd luks" sock=$W/qemu.sock port
    rm -f "$sock"
    start_server qemu-nbd "nbd+unix:///luks?socket=$sock" \
        qemu-nbd "${QSECRET[@]}" --image-opts "$QOPTS" -k "$sock" -x luks \
        -t --shared=0 || return
    unix_phase "$s" "nbd+unix:///luks?socket=$sock" || return
    stop_server
    port=$(free_port)
    start_server qemu-nbd-tls "$(tls_uri "$port" luks)" \
        qemu-nbd "${QSECRET[@]}" \
        --object "tls-creds-psk,id=tls0,dir=$PSKDIR,endpoint=server" \
        --tls-creds tls0 --image-opts "$QOPTS" -b 127.0.0.1 -p "$port" \
        -x luks -t --shared=0 || return
    tls_phase "$s" "$(tls_uri "$port" luks)" || return
    stop_server
}

# cryptvold: one data directory for the run; the daemon is started on a
# unix socket without TLS, and then on loopback TCP with TLS required, as
# the peers are.  Volumes are made on the first start.
CVD_DATA=$W/cryptvold
CVD_ADMIN=$W/cryptvold-admin.sock
CVD_PBKDF=(--pbkdf pbkdf2 --pbkdf-iterations 1000)
start_cryptvold() {
    local name=$1 uri=$2
    shift 2
    rm -f "$CVD_ADMIN"
    start_server "$name" "$uri" "$CRYPTVOLD" --data-dir "$CVD_DATA" \
        --admin-socket "$CVD_ADMIN" --foreground \
        --pid-file "$W/cryptvold.pid" "${CVD_PBKDF[@]}" "$@"
}
# cv_volume NAME TYPE: creates the volume, once the daemon started as SPID
# has made its admin socket.
cv_volume() {
    local vol=$1 type=$2 i
    for ((i = 0; i < 100; i++)); do
        [ -S "$CVD_ADMIN" ] && break
        kill -0 "$SPID" 2>/dev/null ||
            fail "cryptvold exited at start:"$'\n'"$(tail -n 20 "$T/$CVD_LOG.log")" || return
        sleep 0.1
    done
    [ -S "$CVD_ADMIN" ] || fail "cryptvold made no admin socket $CVD_ADMIN in 10 s" || return
    run "cryptvol volume create $vol" "$CRYPTVOL" volume create "$vol" \
        --size "${SIZE_MIB}M" --type "$type" --socket "$CVD_ADMIN"
}
CVD_LOG=cryptvold
bench_cryptvold() {
    local type=$1 s="cryptvold $1" vol=bench-$1 sock=$W/cryptvold.sock port
    # Started without waiting for an export (there is none yet); then the
    # volume is made and must be served at the size asked for.
    CVD_LOG=cryptvold-$type
    rm -f "$CVD_ADMIN" "$sock"
    "$CRYPTVOLD" --data-dir "$CVD_DATA" --admin-socket "$CVD_ADMIN" \
        --nbd-unix "$sock" --nbd-listen none --tls off --foreground \
        --pid-file "$W/cryptvold.pid" "${CVD_PBKDF[@]}" \
        > "$T/$CVD_LOG.log" 2>&1 < /dev/null &
    SPID=$!
    PIDS+=("$SPID")
    cv_volume "$vol" "$type" || { stop_server; return 1; }
    run "nbdinfo on $s" nbdinfo --size "nbd+unix:///$vol?socket=$sock" ||
        { stop_server; return 1; }
    [ "$(cat "$T/cmd.out")" = "$SIZE" ] ||
        { stop_server; fail "$s serves $(cat "$T/cmd.out") bytes, not $SIZE"; return 1; }
    unix_phase "$s" "nbd+unix:///$vol?socket=$sock" check || return
    stop_server
    port=$(free_port)
    start_cryptvold "$CVD_LOG-tls" "$(tls_uri "$port" "$vol")" \
        --nbd-listen "127.0.0.1:$port" --tls require --tls-psk "$PSK" || return
    tls_phase "$s" "$(tls_uri "$port" "$vol")" check || return
    stop_server
}

# --- run -----------------------------------------------------------------------
echo "NBD serving: cryptvold vs nbdkit and qemu-nbd, $SIZE_MIB MiB exports on tmpfs ($W)"
echo "$(nproc) CPU(s) ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)"
echo "$(nbdkit --version | head -n 1), $(qemu-nbd --version | head -n 1), $(fio --version)," \
     "$(nbdcopy --version | head -n 1), $(cryptsetup --version | awk '{ print $1, $2 }')"
if [ -n "$HAVE_CVD" ]; then
    echo "cryptvold: $CRYPTVOLD"
else
    echo "cryptvold: not built ($CRYPTVOLD)"
fi
echo "fio: --ioengine=nbd, one connection, ${RUNTIME} s per workload after 1 s of ramp;" \
     "nbdcopy: ${NBDCOPY[*]:1}, the whole export, repeated for at least ${COPY_SECONDS} s"
echo

(umask 077; printf '%s' "bench-nbd passphrase" > "$PASS"; mkdir "$PSKDIR")
psktool -u alice -p "$PSK" > "$T/psktool.out" 2>&1 ||
    die "psktool failed: $(cat "$T/psktool.out")"

t0=$(now_ns)
head -c "${SIZE_MIB}M" /dev/urandom > "$IN"
[ "$(stat -c %s "$IN")" -eq "$SIZE" ] || die "short input file"
# Images: plaintext, and LUKS1 (2 MiB of header, then SIZE of data) made by
# cryptsetup with a cheap PBKDF: only the data path is of interest here.
# Both are filled (the LUKS1 data area with random ciphertext), so that no
# server pays for allocating tmpfs pages in a timed run.
cp "$IN" "$PLAIN_IMG"
truncate -s $((SIZE + 2 * 1024 * 1024)) "$LUKS_IMG"
cryptsetup luksFormat --type luks1 --pbkdf-force-iterations 1000 --batch-mode \
    --key-file "$PASS" "$LUKS_IMG" > "$T/luksformat.out" 2>&1 ||
    die "cryptsetup luksFormat failed: $(cat "$T/luksformat.out")"
[ "$(cryptsetup luksDump "$LUKS_IMG" | awk '/^Payload offset:/ { print $3 }')" = 4096 ] ||
    die "cryptsetup made a LUKS1 header of another size than 2 MiB"
dd if="$IN" of="$LUKS_IMG" bs=1M seek=2 conv=notrunc status=none ||
    die "filling $LUKS_IMG failed"
echo "setup: random input, images and PSK in $(awk -v a="$t0" -v b="$(now_ns)" \
    'BEGIN { printf "%.1f", (b - a) / 1e9 }') s (not timed)"

SERVERS=("nbdkit file" "nbdkit luks" "qemu-nbd luks")
[ -n "$HAVE_CVD" ] && SERVERS+=("cryptvold luks2" "cryptvold luks1")
FAILED=()
for s in "${SERVERS[@]}"; do
    t0=$(now_ns)
    case $s in
        "nbdkit file") bench_nbdkit_file ;;
        "nbdkit luks") bench_nbdkit_luks ;;
        "qemu-nbd luks") bench_qemu_nbd ;;
        "cryptvold luks2") bench_cryptvold luks2 ;;
        "cryptvold luks1") bench_cryptvold luks1 ;;
    esac && rc=0 || rc=1
    stop_server
    if [ $rc -ne 0 ]; then
        echo "$s: FAILED: $ERR" >&2
        FAILED+=("$s")
    else
        msg=
        [[ $s == cryptvold* ]] && msg="; data read back as written, over the unix socket and TLS"
        echo "$s: measured in $(awk -v a="$t0" -v b="$(now_ns)" \
            'BEGIN { printf "%.0f", (b - a) / 1e9 }') s$msg"
    fi
done
echo

# --- figures -------------------------------------------------------------------
get() { echo "${R[$1,$2]:--}"; }
row() { printf '%-16s %9s %9s %9s %9s %9s %9s %9s %9s\n' "$@"; }
row "" "fio seq" "fio seq" "fio 4K" "fio 4K" "nbdcopy" "nbdcopy" "nbdcopy" "nbdcopy"
row "" "read" "write" "randread" "randwrite" "read" "write" "TLS read" "TLS write"
row server MiB/s MiB/s IOPS IOPS MiB/s MiB/s MiB/s MiB/s
METRICS=(seq-read seq-write rand-read rand-write copy-read copy-write tls-read tls-write)
for s in "nbdkit file" "nbdkit luks" "qemu-nbd luks" "cryptvold luks2" "cryptvold luks1"; do
    if [[ $s == cryptvold* ]] && [ -z "$HAVE_CVD" ]; then
        printf '%-16s %s\n' "$s" "not built"
        continue
    fi
    vals=()
    for m in "${METRICS[@]}"; do vals+=("$(get "$s" "$m")"); done
    row "$s" "${vals[@]}"
done
echo "fio seq: 1 MiB at queue depth 16; fio 4K: 4 KiB at queue depth 32; fio over the unix socket"
echo "nbdcopy: the same whole-export copies over the unix socket and over TLS-PSK on loopback TCP"
echo
echo "CPU seconds per GiB copied by nbdcopy, server + nbdcopy (less moved by other load than the rates):"
crow4() { printf '%-16s %13s %13s %13s %13s\n' "$@"; }
crow4 server read write "TLS read" "TLS write"
for s in "${SERVERS[@]}"; do
    vals=()
    for m in copy-read copy-write tls-read tls-write; do
        v=$(get "$s" "$m-cpu")
        [ "$v" = - ] || v="${v% *} + ${v#* }"
        vals+=("$v")
    done
    crow4 "$s" "${vals[@]}"
done
for s in "${SERVERS[@]}"; do
    if [ -n "${CIPHER[$s]:-}" ]; then
        printf '  TLS with %-16s %s\n' "$s:" "${CIPHER[$s]}"
    fi
done
echo

# --- ratios and targets ----------------------------------------------------------
ratio() {
    local a=$1 b=$2
    if [[ $a =~ ^[0-9.]+$ && $b =~ ^[0-9.]+$ ]] && awk -v b="$b" 'BEGIN { exit !(b > 0) }'; then
        awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }'
    else
        echo -
    fi
}
NPASS=0 NMISS=0 NNA=0
# check WHAT SERVER METRIC REF-SERVER REF-METRIC TARGET
crow() { printf '%-16s %-22s %-32s %6s  %-7s %s\n' "$@"; }
check() {
    local what=$1 s=$2 m=$3 rs=$4 rm=$5 target=$6 x res
    x=$(ratio "$(get "$s" "$m")" "$(get "$rs" "$rm")")
    if [ "$x" = - ]; then
        res=n/a NNA=$((NNA + 1))
    elif awk -v x="$x" -v t="$target" 'BEGIN { exit !(x >= t) }'; then
        res=PASS NPASS=$((NPASS + 1))
    else
        res=MISS NMISS=$((NMISS + 1))
    fi
    crow "$s" "$what" "/ $rs $rm" "$x" ">= $target" "$res"
}
echo "peers (information):"
for m in seq-read seq-write rand-read rand-write copy-read copy-write tls-read tls-write; do
    printf '  %-11s nbdkit luks / nbdkit file %6s   qemu-nbd luks / nbdkit luks %6s\n' "$m" \
        "$(ratio "$(get "nbdkit luks" "$m")" "$(get "nbdkit file" "$m")")" \
        "$(ratio "$(get "qemu-nbd luks" "$m")" "$(get "nbdkit luks" "$m")")"
done
for s in "nbdkit file" "nbdkit luks" "qemu-nbd luks"; do
    printf '  %-15s TLS / unix: read %s, write %s\n' "$s" \
        "$(ratio "$(get "$s" tls-read)" "$(get "$s" copy-read)")" \
        "$(ratio "$(get "$s" tls-write)" "$(get "$s" copy-write)")"
done
echo
if [ -z "$HAVE_CVD" ]; then
    echo "targets: n/a (cryptvold: not built)"
else
    crow server check "against" ratio target result
    for s in "cryptvold luks2" "cryptvold luks1"; do
        check "seq read" "$s" seq-read "nbdkit luks" seq-read "$T_SEQ_LUKS"
        check "seq read" "$s" seq-read "nbdkit file" seq-read "$T_SEQ_FILE"
        check "seq write" "$s" seq-write "nbdkit luks" seq-write "$T_SEQ_LUKS"
        check "seq write" "$s" seq-write "nbdkit file" seq-write "$T_SEQ_FILE"
        check "4K randread" "$s" rand-read "nbdkit luks" rand-read "$T_RAND_LUKS"
        check "4K randwrite" "$s" rand-write "nbdkit luks" rand-write "$T_RAND_LUKS"
        check "TLS read" "$s" tls-read "$s" copy-read "$T_TLS"
        check "TLS write" "$s" tls-write "$s" copy-write "$T_TLS"
        printf '%-16s %-22s %-32s %6s\n' "$s" "(information)" "seq read / qemu-nbd luks" \
            "$(ratio "$(get "$s" seq-read)" "$(get "qemu-nbd luks" seq-read)")"
        printf '%-16s %-22s %-32s %6s\n' "$s" "(information)" "4K randwrite / qemu-nbd luks" \
            "$(ratio "$(get "$s" rand-write)" "$(get "qemu-nbd luks" rand-write)")"
    done
    echo "targets: $NPASS PASS, $NMISS MISS, $NNA n/a"
fi

if [ ${#FAILED[@]} -gt 0 ]; then
    echo "nbd.sh: could not measure: ${FAILED[*]}" >&2
    exit 1
fi
exit 0
