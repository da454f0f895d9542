#!/usr/bin/env bash
# cmake --install into a DESTDIR, and what it installs, used from there:
#  * the tree: cryptvol in BINDIR, cryptvold in SBINDIR, libcryptvol.a,
#    its public headers (no -internal.h), cryptvol.pc, the three man pages,
#    the unit, the completion, the example config;
#  * pkg-config finds cryptvol.pc there; a program built with only its
#    flags formats a LUKS2 image that cryptsetup opens and cryptvol reads;
#    every installed header compiles on its own;
#  * man -l renders each page; the unit passes systemd-analyze verify
#    (its Documentation= pages found in the DESTDIR) and its security
#    review stays at "OK" or better (exposure at most 3.0);
#  * installing again keeps an edited config file;
#  * the daemon as the unit runs it: the installed binary and config, in a
#    mount namespace where everything is read-only but the state and
#    runtime directories (ProtectSystem=strict, ProtectHome), with the
#    unit's LimitMEMLOCK, LimitCORE, CapabilityBoundingSet, NoNewPrivileges
#    and MemoryDenyWriteExecute (PR_SET_MDWE; its system call filter is
#    only checked by systemd-analyze): Type=notify's READY=1 once serving, a volume
#    created, written and read over NBD with TLS, SIGHUP, SIGTERM.
source "$(dirname "$0")/lib.sh"

command -v cmake > /dev/null || skip "cmake is not installed"
B=${BUILD_DIR:?}
cache() { sed -n "s/^$1:[A-Z]*=//p" "$B/CMakeCache.txt"; }
prefix=$(cache CMAKE_INSTALL_PREFIX)
# full VAR DEFAULT: as GNUInstallDirs makes CMAKE_INSTALL_FULL_VAR (an
# empty cache entry means its default).
full() {
    local d
    d=$(cache "CMAKE_INSTALL_$1")
    d=${d:-$2}
    case $d in /*) echo "$d" ;; *) echo "$prefix/$d" ;; esac
}
bindir=$(full BINDIR bin)
sbindir=$(full SBINDIR sbin)
libdir=$(full LIBDIR lib)
incdir=$(full INCLUDEDIR include)
mandir=$(full MANDIR share/man)
sysconfdir=$(full SYSCONFDIR etc)
[ "$prefix" = /usr ] && sysconfdir=/etc
unitdir=$(cache CRYPTVOL_SYSTEMD_UNIT_DIR)
compdir=$(cache CRYPTVOL_BASH_COMPLETION_DIR)
D=$T/root

DESTDIR=$D cmake --install "$B" > "$T/install.log" 2>&1 || fail "cmake --install failed: $(tail -5 "$T/install.log")"
for f in "$bindir/cryptvol" "$sbindir/cryptvold"; do
    [ -x "$D$f" ] || fail "no executable $f in the DESTDIR"
done
"$D$bindir/cryptvol" --version | grep -q '^cryptvol [0-9]' || fail "installed cryptvol --version"
"$D$sbindir/cryptvold" --version | grep -q '^cryptvold [0-9]' || fail "installed cryptvold --version"
for f in "$libdir/libcryptvol.a" "$libdir/pkgconfig/cryptvol.pc" \
         "$incdir/cryptvol/luks/luks.h" "$incdir/cryptvol/image/volume.h" \
         "$incdir/cryptvol/core/error.h" "$incdir/cryptvol/tls/tls.h" \
         "$mandir/man8/cryptvol.8" "$mandir/man8/cryptvold.8" "$mandir/man5/cryptvold.conf.5" \
         "$unitdir/cryptvold.service" "$compdir/cryptvol" "$sysconfdir/cryptvol/cryptvold.conf"; do
    [ -f "$D$f" ] || fail "$f was not installed (installed: $(cd "$D" && find . -type f | head -40))"
done
internal=$(find "$D$incdir/cryptvol" -name '*-internal.h')
[ -z "$internal" ] || fail "internal headers installed: $internal"
ok "cmake --install: binaries, libcryptvol.a, headers, cryptvol.pc, man pages, unit, completion, config under $prefix"

# ---- the library through pkg-config ----------------------------------------
export PKG_CONFIG_PATH=$D$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$D
pkg-config --exists cryptvol || fail "pkg-config does not find cryptvol.pc in the DESTDIR"
[ "$(pkg-config --modversion cryptvol)" = "$("$CRYPTVOL" --version | cut -d' ' -f2)" ] ||
    fail "cryptvol.pc version $(pkg-config --modversion cryptvol) is not the program's"
cflags=$(pkg-config --cflags cryptvol)
libs=$(pkg-config --libs cryptvol)
[[ $cflags == *"-I$D$incdir/cryptvol"* ]] || fail "cflags '$cflags' do not name the installed headers"
# A sanitized build installs a sanitized library; its users link the runtime.
san=
[ "$(cache CRYPTVOL_SANITIZE)" = ON ] && san="-fsanitize=address,undefined"
# shellcheck disable=SC2086
cc -std=gnu11 -Wall -Werror $san -o "$T/user" "$SRC_DIR/tests/tools/libcryptvol-user.c" $cflags $libs \
    2> "$T/cc.log" || fail "a program built with pkg-config's flags alone does not build: $(head -5 "$T/cc.log")"
passfile "$T/pass" "installed library"
: > "$T/user.img"
[ "$("$T/user" "$T/user.img" "$T/pass")" = "hello from libcryptvol" ] || fail "the program built against the installed library failed"
cryptsetup open --test-passphrase --key-file "$T/pass" "$T/user.img" || fail "cryptsetup does not open what the installed library formatted"
[ "$("$CRYPTVOL" image export "$T/user.img" - --passphrase-file "$T/pass" --offset 4096 --length 22)" = "hello from libcryptvol" ] ||
    fail "cryptvol does not read what the installed library wrote"
for h in $(cd "$D$incdir/cryptvol" && find . -name '*.h' | sort); do
    # shellcheck disable=SC2086
    echo "#include <${h#./}>" | cc -std=gnu11 -Wall -Werror -fsyntax-only -x c - $cflags 2> "$T/h.log" ||
        fail "installed header ${h#./} does not compile on its own: $(head -3 "$T/h.log")"
done
ok "pkg-config finds cryptvol.pc; a program built with its flags alone makes a LUKS2 image cryptsetup opens; each header compiles alone"
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

# ---- man pages, unit -------------------------------------------------------
for page in man8/cryptvol.8:"cryptvol - manage" man8/cryptvold.8:"cryptvold - the cryptvol node daemon" \
            man5/cryptvold.conf.5:"cryptvold.conf - configuration file"; do
    file=$D$mandir/${page%%:*}
    MANWIDTH=100 man -l "$file" 2> "$T/man.err" > "$T/man.out" || fail "man -l $file failed: $(cat "$T/man.err")"
    grep -q "${page#*:}" "$T/man.out" || fail "man -l $file does not show '${page#*:}'"
    grep -q "^EXAMPLES\|^EXAMPLE" "$T/man.out" || fail "man -l $file: no EXAMPLES section"
done
ok "man -l renders the three installed pages"

unit=$D$unitdir/cryptvold.service
grep -qx "ExecStart=$sbindir/cryptvold --foreground --config $sysconfdir/cryptvol/cryptvold.conf" "$unit" ||
    fail "the unit's ExecStart does not name the installed daemon and config: $(grep ExecStart= "$unit")"
grep -qx 'Type=notify' "$unit" || fail "the unit is not Type=notify"
if command -v systemd-analyze > /dev/null; then
    # The unit as it would be at its place: ExecStart's binary is in DESTDIR.
    sed "s|^ExecStart=$sbindir/|ExecStart=$D$sbindir/|" "$unit" > "$T/cryptvold.service"
    MANPATH=$D$mandir systemd-analyze verify "$T/cryptvold.service" > "$T/verify.log" 2>&1 ||
        fail "systemd-analyze verify: $(cat "$T/verify.log")"
    systemd-analyze security --offline=yes --threshold=30 "$T/cryptvold.service" > "$T/security.log" 2>&1 ||
        fail "systemd-analyze security: exposure above 3.0: $(tail -1 "$T/security.log")"
    ok "systemd-analyze verify passes; $(tail -1 "$T/security.log" | sed 's/^→ //')"
else
    echo "systemd-analyze is not installed: unit not verified"
fi

# ---- installing again keeps the operator's config --------------------------
conf=$D$sysconfdir/cryptvol/cryptvold.conf
echo "log-level = debug   # edited" >> "$conf"
DESTDIR=$D cmake --install "$B" > "$T/install2.log" 2>&1 || fail "second cmake --install failed"
grep -q '# edited' "$conf" || fail "installing again replaced the edited $conf"
grep -q "Kept: $conf" "$T/install2.log" || fail "the second install does not say it kept $conf"
sed -i '/# edited/d' "$conf"
ok "a second install keeps an edited config (and says so)"

# ---- the daemon as the unit runs it ------------------------------------------
command -v unshare > /dev/null && command -v setpriv > /dev/null && command -v prlimit > /dev/null ||
    skip "unshare, setpriv or prlimit missing: the unit's sandbox is not emulated"
[ "$(id -u)" = 0 ] || skip "emulating the unit's sandbox needs root (mount namespace)"
unshare --mount true 2> /dev/null || skip "no mount namespaces here: the unit's sandbox is not emulated"
setting() { sed -n "s/^$1=//p" "$unit" | tail -1; }
memlock=$(setting LimitMEMLOCK)
[ "$memlock" = 16M ] || fail "LimitMEMLOCK=$memlock; this test and cryptvold.8 say 16M"
[ "$(setting LimitCORE)" = 0 ] || fail "LimitCORE is not 0"
[ "$(setting NoNewPrivileges)" = yes ] || fail "NoNewPrivileges is not yes"
[ "$(setting ProtectSystem)" = strict ] || fail "ProtectSystem is not strict"
[ "$(setting MemoryDenyWriteExecute)" = yes ] || fail "MemoryDenyWriteExecute is not yes"
# The unit's 16 MiB, or less where this process may not raise its hard
# limit (no CAP_SYS_RESOURCE): a daemon that starts with less starts with
# the unit's.
hard=$(ulimit -Hl)
lock=$((16 << 20))
[ "$hard" != unlimited ] && [ $((hard * 1024)) -lt $lock ] && lock=$((hard * 1024))
caps=$(setting CapabilityBoundingSet | tr 'A-Z' 'a-z' | sed 's/cap_//g; s/ /,+/g')
STATE=$T/state RUN=$T/run
mkdir -p "$STATE" "$RUN"
chmod 700 "$STATE"
"$CRYPTVOL" tls init "$T/tls" > /dev/null
PORT=$(free_port)
cat > "$T/sandbox" <<EOT
set -e
mount --make-rprivate /
mount --bind "$STATE" "$STATE"
mount --bind "$RUN" "$RUN"
# ProtectSystem=strict and ProtectHome: every mount read-only, but the
# API file systems (/proc, /sys, /dev) and the two directories.
awk '{ print \$2 }' /proc/self/mounts | grep -vE '^/(proc|sys|dev)(/|\$)' | sort -u |
while read -r m; do mount -o remount,bind,ro "\$m" 2> /dev/null || true; done
mount -o remount,bind,rw "$STATE"
mount -o remount,bind,rw "$RUN"
touch /etc/.cryptvol-sandbox 2> /dev/null && { echo "sandbox: /etc is writable" >&2; exit 1; }
# MemoryDenyWriteExecute=yes: the kernel's own PR_SET_MDWE (Linux 6.3 and
# later; inherited across exec) where it has it.
exec "$PYTHON" -c '
import ctypes, os, sys
if ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0:
    print("sandbox: no PR_SET_MDWE in this kernel: W^X not enforced", file=sys.stderr)
os.execvp(sys.argv[1], sys.argv[1:])' \
  prlimit --memlock=$lock:$lock --core=0 -- \
    setpriv --no-new-privs --bounding-set -all,+$caps --inh-caps -all -- "\$@"
EOT
NOTIFY_LISTEN_HOOK="
    set -e
    export CRYPTVOL_SOCKET=$STATE/admin.sock
    '$D$bindir/cryptvol' volume create boxed --size 8M > /dev/null
    head -c 65536 /dev/urandom > '$T/in'
    nbdcopy '$T/in' 'nbds://127.0.0.1:$PORT/boxed?tls-certificates=$T/tls'
    nbdcopy 'nbds://127.0.0.1:$PORT/boxed?tls-certificates=$T/tls' '$T/out'
    cmp <(head -c 65536 '$T/out') '$T/in'
    # The volume's chain in the state dir: a fresh volume's one layer holds the data.
    [ -f '$STATE/volumes/boxed/chain' ] && [ -f '$STATE/volumes/boxed/header' ]
    [ \$(stat -c %b '$STATE/volumes/boxed/layer-000001') -gt 0 ]" \
"$PYTHON" "$SRC_DIR/tests/tools/notify-listen.py" "$T/notify.sock" "$PORT" "$STATE/admin.sock" -- \
    unshare --mount bash "$T/sandbox" \
    "$D$sbindir/cryptvold" --foreground --config "$conf" \
    --data-dir "$STATE" --tls-dir "$T/tls" --nbd-listen "127.0.0.1:$PORT" \
    --nbd-unix "$RUN/nbd.sock" --pbkdf pbkdf2 --pbkdf-iterations 1000 \
    --log-file "$STATE/cryptvold.log" ||
    fail "the installed daemon in the unit's sandbox: see above; log: $(tail -5 "$STATE/cryptvold.log" 2>/dev/null)"
[ ! -e /etc/.cryptvol-sandbox ] || { rm -f /etc/.cryptvol-sandbox; fail "the sandbox let /etc be written"; }
grep -q 'error' "$STATE/cryptvold.log" && fail "errors in the sandboxed daemon's log: $(grep error "$STATE/cryptvold.log")"
ok "the installed daemon, its config, the unit's limits (memlock $((lock >> 20)) MiB) and a read-only system but its state and runtime dirs: READY=1, NBD with TLS, SIGHUP, SIGTERM"
