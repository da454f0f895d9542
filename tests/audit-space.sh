#!/usr/bin/env bash
# The audit log in a directory of its own (--audit-dir) on a small file
# system, and what happens when it is full: key operations are refused,
# saying the audit log cannot be written, rather than done unrecorded: an
# attach (volume.unlock), a KEK export, a rotation, a secret change.  Data
# is untouched, and once there is room again everything works.
#
# And kek export (the escrow): the CLI creates its output file before it
# asks the daemon, so an output that cannot be created costs no escrow and
# no audit event; one that cannot be written after the daemon sent it is
# removed, and the message and the audit event ("sent to the client") say
# what happened.
source "$(dirname "$0")/lib.sh"
command -v nbdcopy > /dev/null || skip "nbdcopy is not installed"

AMNT=$T/amnt OMNT=$T/omnt
mkdir "$AMNT" "$OMNT"
if ! mount -t tmpfs -o size=1M,mode=0700 cryptvol-audit "$AMNT" 2> "$T/mount.err"; then
    skip "cannot mount a tmpfs: $(cat "$T/mount.err")"
fi
on_exit "umount '$AMNT' || umount -l '$AMNT'"
mount -t tmpfs -o size=64K,mode=0700 cryptvol-out "$OMNT"
on_exit "umount '$OMNT' || umount -l '$OMNT'"
uri() { echo "nbd+unix:///$1?socket=$CVD_NBD"; }
events() { grep -c "\"event\":\"$1\"" "$AUDIT" || true; }

cvd_start a --tls off --audit-dir "$AMNT/audit"
AUDIT=$AMNT/audit/audit.log
[ -f "$AUDIT" ] || fail "no audit log in the audit dir"
[ ! -e "$CVD_DIR/data/audit.log" ] || fail "an audit log in the data dir although audit-dir is set"
"$CRYPTVOL" cluster encryption enable --kek-protection software > /dev/null
"$CRYPTVOL" volume create v --size 4M > /dev/null
head -c 4M /dev/urandom > "$T/data"
nbdcopy "$T/data" "$(uri v)" || fail "writing v"
grep -q '"event":"volume.unlock".*"result":"ok"' "$AUDIT" || fail "no volume.unlock in $AUDIT"
ok "audit log in --audit-dir $AMNT/audit"

# ---- kek export: the output file ---------------------------------------------
passfile "$T/recovery" "correct horse battery staple"
n=$(events kek.export)
expect_fail 1 "^cryptvol: $T/nodir/escrow.json: cannot create the escrow file: No such file or directory \(nothing was asked of the daemon\)$" \
    "$CRYPTVOL" cluster kek export --recovery-passphrase-file "$T/recovery" "$T/nodir/escrow.json"
[ "$(events kek.export)" = "$n" ] || fail "an export whose output cannot be created reached the daemon"
ok "kek export to an output that cannot be created: no escrow left the daemon"

# The output's file system is full: the escrow came, the write fails.
dd if=/dev/zero of="$OMNT/filler" bs=4K status=none 2> /dev/null || true
expect_fail 1 "^cryptvol: $OMNT/escrow.json: writing the escrow: No space left on device; the daemon sent it \(its audit log says \"sent to the client\"\), but it is not saved: export it again$" \
    "$CRYPTVOL" cluster kek export --recovery-passphrase-file "$T/recovery" "$OMNT/escrow.json"
[ ! -e "$OMNT/escrow.json" ] || fail "a half-written escrow was left"
tail -n 1 "$AUDIT" | grep -q '"event":"kek.export".*"result":"ok","detail":"escrow of every KEK generation sent to the client"' ||
    fail "audit does not say the escrow was sent: $(tail -n 1 "$AUDIT")"
ok "kek export whose write fails: $(cat "$T/err")"

# ---- the audit dir's file system is full ------------------------------------
dd if=/dev/zero of="$AMNT/filler" bs=4K status=none 2> /dev/null || true
MSG="the audit log $AUDIT cannot be written \(No space left on device\); key operations are not done unrecorded: free space on its file system \(audit-dir\)"
# The log's last block may still hold a few events: those are recorded and
# their attaches granted, until one does not fit.
for ((i = 0; i < 40; i++)); do
    LIBNBD_DEBUG=1 nbdinfo --size "$(uri v)" > /dev/null 2> "$T/nbd.err" || break
done
[ "$i" -lt 40 ] || fail "40 attaches granted with the audit log's file system full"
grep -qE "volume v: unlock refused: $MSG" "$T/nbd.err" ||
    fail "the client is not told why: $(grep -i 'server\|audit' "$T/nbd.err" | tail -3)"
grep -qE "volume v: unlock refused: $MSG" "$CVD_DIR/cryptvold.log" || fail "the daemon log does not say why"
ok "attach refused: the audit log cannot be written"

expect_fail 1 "^cryptvol: cluster: KEK export refused: $MSG\$" \
    "$CRYPTVOL" cluster kek export --recovery-passphrase-file "$T/recovery" "$T/escrow2.json"
[ ! -e "$T/escrow2.json" ] || fail "a refused export left $T/escrow2.json"
expect_fail 1 "^cryptvol: cluster: KEK rotation refused: $MSG\$" "$CRYPTVOL" cluster kek rotate
passfile "$T/s" "a secret value"
expect_fail 1 "^cryptvol: secret s: create refused: $MSG\$" "$CRYPTVOL" secret create s --from-file "$T/s"
expect_fail 1 "secret \"?s\"?.*(not|no such)" "$CRYPTVOL" secret delete s
ok "KEK export, rotation and secret create refused, nothing done"

# Room again: everything works, and the data is as written.
rm "$AMNT/filler"
nbdcopy "$(uri v)" "$T/back" || fail "attach after the audit dir has room again"
cmp -s "$T/data" "$T/back" || fail "v's data changed"
"$CRYPTVOL" cluster kek export --recovery-passphrase-file "$T/recovery" "$T/escrow3.json" > /dev/null ||
    fail "kek export with room again"
ok "with room in the audit dir: attach, data intact, export works"
cvd_stop
