#!/usr/bin/env bash
# Bad input to snapshots, clones and flatten (issue 10, the contract in
# docs/admin-api.md): each refusal is one clear line naming what is wrong
# (the volume, the snapshot, the clients, the clones) and no path in the
# data dir (docs/cli.md), and nothing changes:
# the volumes, their states, parents and snapshots, the files under the
# data dir and every manifest and header (tests/lib-chain.sh `world`) are
# compared before and after each.
#
#  * a snapshot of a Pending volume; of a plaintext volume; a name taken;
#  * names with '@' or '/' for a snapshot, a volume, a clone;
#  * rollback while the volume is served (names the client), and over a
#    newer snapshot (names it);
#  * a clone of a missing snapshot, of a missing volume;
#  * flatten of a volume with no parent;
#  * deleting a volume that has clones (names them), deleting a snapshot a
#    clone depends on (names it), deleting a snapshot while it is served;
#  * a positive control: the same commands, once allowed, do change the
#    world (so the comparison can fail).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-chain.sh"

# refused RCS PATTERN CMD...: CMD fails with an exit status in RCS (e.g.
# "1" or "1|2": a name may be refused by the CLI's own check, as a usage
# error, or by the daemon), one line on stderr matching PATTERN, and the
# world as it was.
refused() {
    local rcs=$1 pattern=$2 rc=0
    shift 2
    world "$T/world.before"
    "$@" > "$T/out" 2> "$T/err" || rc=$?
    [[ "$rc" =~ ^($rcs)$ ]] || fail "'$*' exited $rc, expected $rcs: $(cat "$T/err")"
    grep -qE -- "$pattern" "$T/err" || fail "'$*': stderr '$(cat "$T/err")' does not match '$pattern'"
    [ "$(wc -l < "$T/err")" -le 1 ] || fail "'$*': error is more than one line: $(cat "$T/err")"
    # docs/cli.md: the daemon's messages name no file of its data dir.
    ! grep -qF "$CVD_DIR/data" "$T/err" || fail "'$*': the message names a path in the data dir: $(cat "$T/err")"
    unchanged "$T/world.before" "the refused '$*'"
    echo "ok: refused: $* -> $(cat "$T/err")"
}

cvd_start bad --tls off --pending-retry-interval 0
passfile "$T/pw" 'bad input'
"$CRYPTVOL" secret create pw --from-file "$T/pw" > /dev/null
"$CRYPTVOL" volume create v --size 16M --secret pw > /dev/null
"$CRYPTVOL" volume create pend --size 8M --secret not-yet > /dev/null
[ "$(vinfo pend 'd["state"]')" = Pending ] || fail "volume pend is not Pending"
"$CRYPTVOL" volume create plain --size 8M --plaintext > /dev/null
random_file "$T/d" $MiB
$NBDIO write "$CVD_NBD" v 0 "$T/d" || fail "writing v"
"$CRYPTVOL" snapshot create v@s1 > /dev/null
"$CRYPTVOL" snapshot create v@s2 > /dev/null

# ---- snapshot create ------------------------------------------------------
refused 1 'pend.*Pending|Pending.*pend' "$CRYPTVOL" snapshot create pend@s
refused 1 'plain.*(plaintext|not encrypted)|(plaintext|not encrypted).*plain' \
    "$CRYPTVOL" snapshot create plain@s
refused 1 's1.*(exists|taken)|(exists|taken).*s1' "$CRYPTVOL" snapshot create v@s1
refused 1 'no such volume.*nov|nov.*no such volume' "$CRYPTVOL" snapshot create nov@s

# ---- names with '@' or '/' -------------------------------------------------
refused '1|2' 'not a valid name' "$CRYPTVOL" snapshot create 'v@a@b'
refused '1|2' 'not a valid name' "$CRYPTVOL" snapshot create 'v@a/b'
refused '1|2' 'not a valid name' "$CRYPTVOL" snapshot create 'v@../s1'
refused '1|2' 'not a valid name' "$CRYPTVOL" volume create 'n@m' --size 8M
refused '1|2' 'not a valid name' "$CRYPTVOL" volume create 'n/m' --size 8M
refused '1|2' 'not a valid name' "$CRYPTVOL" volume clone v@s1 'c@d'
refused '1|2' 'not a valid name' "$CRYPTVOL" volume clone v@s1 'c/d'

# ---- rollback -------------------------------------------------------------
coproc HOLD { "$PYTHON" "$SRC_DIR/tests/tools/nbd-hold.py" "$(uri v)"; }
hold=$HOLD_PID          # bash unsets HOLD_PID once the coprocess has ended
on_exit "kill $hold"
read -r line <&"${HOLD[0]}"
[ "${line%% *}" = connected ] || fail "nbd-hold: $line"
peer=$(vinfo v 'd["connections"][0]["peer"]')
refused 1 "$(sed 's/[][\.*^$+?(){}|]/\\&/g' <<< "$peer")" "$CRYPTVOL" snapshot rollback v@s2
grep -qiE 'served|connected|in use|client' "$T/err" || fail "rollback while served: the message does not say the volume is served: $(cat "$T/err")"
echo quit >&"${HOLD[1]}"
wait "$hold" || true
for ((i = 0; i < 50; i++)); do [ "$(vinfo v 'len(d["connections"])')" = 0 ] && break; sleep 0.1; done
refused 1 's2' "$CRYPTVOL" snapshot rollback v@s1
refused 1 'nope' "$CRYPTVOL" snapshot rollback v@nope

# ---- clones ---------------------------------------------------------------
refused 1 'nope' "$CRYPTVOL" volume clone v@nope c0
refused 1 'nov' "$CRYPTVOL" volume clone nov@s1 c0
"$CRYPTVOL" volume clone v@s1 c1 > /dev/null
"$CRYPTVOL" volume clone v@s1 c2 --secret pw --type luks1 > /dev/null
refused 1 'has no parent' "$CRYPTVOL" volume flatten v
grep -q '\bv\b' "$T/err" || fail "flatten of a volume with no parent: the message does not name it: $(cat "$T/err")"
refused 1 'c1.*c2|c2.*c1' "$CRYPTVOL" volume delete v
refused 1 'c1.*c2|c2.*c1' "$CRYPTVOL" snapshot delete v@s1

# ---- a snapshot being read cannot be deleted -------------------------------
coproc HOLD2 { "$PYTHON" "$SRC_DIR/tests/tools/nbd-hold.py" "$(uri v@s2)"; }
hold=$HOLD2_PID
on_exit "kill $hold"
read -r line <&"${HOLD2[0]}"
[ "${line%% *}" = connected ] || fail "nbd-hold on v@s2: $line"
refused 1 's2' "$CRYPTVOL" snapshot delete v@s2
echo quit >&"${HOLD2[1]}"
wait "$hold" || true

# ---- control: the comparison sees a change ----------------------------------
world "$T/world.before"
"$CRYPTVOL" volume delete c1 > /dev/null
world "$T/world.after"
diff -q "$T/world.before" "$T/world.after" > /dev/null &&
    fail "control: deleting clone c1 left the compared world unchanged: the checks above cannot see a change"
"$CRYPTVOL" snapshot create v@s3 > /dev/null
[ "$(snaps v)" = "s1 s2 s3" ] || fail "control: snapshots of v are '$(snaps v)'"
ok "control: a delete and a snapshot that are allowed change the compared world"
cvd_stop
