#!/usr/bin/env bash
# The operator's conventions of the cryptvol command line (issue 11, "CLI
# conventions"), as a table of commands with the exit status and output
# each must give: tests/cli-conventions.table, run here against real
# daemons (one with TLS, for connections with an identity; one with
# cluster encryption, for the KEK).  Then, from `cryptvol help --json`,
# every group's --help lists its commands and every command's --help
# lists every option it takes, the global ones, and an example.
#
# The table: a line "$ COMMAND" (bash; cryptvol is the CLI under test,
# pty_run runs a command on a terminal), then indented expectations:
#   exit N            the exit status (default 0)
#   stdout RE         some line of stdout matches the extended regex RE
#   stderr RE         the same for stderr;  !stdout RE, !stderr RE: none does
#   lines N           stderr has at most N lines
#   retry N           run again, 0.1 s apart, up to N times until all hold
# "& COMMAND" runs COMMAND in the background until the test ends.
source "$(dirname "$0")/lib.sh"

[ -x "$CRYPTVOLD" ] || skip "cryptvold is not built"
for p in cryptsetup curl script; do
    command -v $p > /dev/null || skip "$p is not installed"
done
# nbdsh's module, with Debian's python (a pyenv one on PATH lacks it).
$PYTHON -c 'import nbd' 2> /dev/null || skip "python3-libnbd is not installed"

cryptvol() { "$CRYPTVOL" "$@"; }
# pty_run [--expect TEXT --send TEXT]... -- cryptvol ARGS...: on a terminal
pty_run() {
    local args=() a
    for a in "$@"; do
        [ "$a" = cryptvol ] && a=$CRYPTVOL
        args+=("$a")
    done
    $PYTHON "$SRC_DIR/tests/tools/pty-run.py" "${args[@]}"
}

TABLE_LINE=0
CMD="" CMD_LINE=0 WANT_EXIT=0 RETRY=1 MAXLINES=""
CHECKS=()
NRUN=0

# 0 if the output of the last run meets every expectation, else 1 with
# the first unmet one in $WHY.
meets() {
    local c stream re
    WHY=""
    if [ "$RC" != "$WANT_EXIT" ]; then
        WHY="exited $RC, expected $WANT_EXIT"
        return 1
    fi
    for c in "${CHECKS[@]}"; do
        stream=${c%% *} re=${c#* }
        case $stream in
        stdout|stderr)
            grep -qE -- "$re" "$T/$stream" || { WHY="no line of $stream matches '$re'"; return 1; } ;;
        '!stdout'|'!stderr')
            ! grep -qE -- "$re" "$T/${stream#!}" || { WHY="a line of ${stream#!} matches '$re'"; return 1; } ;;
        esac
    done
    if [ -n "$MAXLINES" ] && [ "$(wc -l < "$T/stderr")" -gt "$MAXLINES" ]; then
        WHY="stderr has more than $MAXLINES lines"
        return 1
    fi
}

# Runs the command gathered so far against its expectations.
run_pending() {
    local i
    [ -n "$CMD" ] || return 0
    for ((i = 0; i < RETRY; i++)); do
        RC=0
        eval "$CMD" < /dev/null > "$T/stdout" 2> "$T/stderr" || RC=$?
        meets && break
        sleep 0.1
    done
    if [ -n "$WHY" ]; then
        echo "--- stdout:" >&2; cat "$T/stdout" >&2
        echo "--- stderr:" >&2; cat "$T/stderr" >&2
        fail "$TABLE line $CMD_LINE: \$ $CMD: $WHY"
    fi
    NRUN=$((NRUN + 1))
    CMD=""
}

run_table() {
    local line
    TABLE=${1##*/} TABLE_LINE=0
    while IFS= read -r -u 3 line || [ -n "$line" ]; do
        TABLE_LINE=$((TABLE_LINE + 1))
        case $line in
        '' | '#'*) ;;
        '$ '*)
            run_pending
            CMD=${line#\$ } CMD_LINE=$TABLE_LINE WANT_EXIT=0 RETRY=1 MAXLINES=""
            CHECKS=() ;;
        '& '*)
            run_pending
            eval "exec ${line#& }" < /dev/null > /dev/null 2>&1 &
            on_exit "kill $!" ;;
        ' '*)
            read -r kw rest <<<"$line"
            case $kw in
            exit) WANT_EXIT=$rest ;;
            retry) RETRY=$rest ;;
            lines) MAXLINES=$rest ;;
            stdout|stderr|'!stdout'|'!stderr') CHECKS+=("$kw $rest") ;;
            *) fail "$TABLE line $TABLE_LINE: unknown expectation '$kw'" ;;
            esac ;;
        *) fail "$TABLE line $TABLE_LINE: not a command or an expectation: $line" ;;
        esac
    done 3< "$1"
    run_pending
}

# ---- the setting the table runs in ---------------------------------------
cryptvol tls init "$T/tls" > /dev/null
PORT=$(free_port)
cvd_start tls --tls require --tls-dir "$T/tls" --nbd-listen "127.0.0.1:$PORT"
SOCK=$CVD_DIR/admin.sock
DATA=$CVD_DIR/data
NBD=$CVD_NBD
passfile "$T/key" "the first value"
passfile "$T/key2" "another value"
passfile "$T/typed" "typed at a terminal"
passfile "$T/recovery" "a recovery passphrase of some length"
head -c 70000 /dev/zero > "$T/huge"
chmod 600 "$T/huge"
cryptvol image create "$T/img" --size 20M
cryptvol image format "$T/img" --passphrase-file "$T/key" "${FAST_KDF[@]}" > /dev/null
# The daemon with cluster encryption starts from the table (cvd_start).
KPORT=$(free_port)

run_table "$SRC_DIR/tests/cli-conventions.table"
ok "$NRUN commands of the table gave the exit status and output they must"

# ---- every group and command documents itself, from one table ------------
cryptvol help --json > "$T/table.json"
$PYTHON - "$T/table.json" > "$T/expect" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1]))
groups = {}
for c in t["commands"]:
    words = c["command"].split()
    for i in range(1, len(words)):
        groups.setdefault(" ".join(words[:i]), []).append(words[i])
    opts = [o["name"] for o in c["options"]]
    for s in c["optionSets"]:
        opts += [o["name"] for o in t["optionSets"][s]]
    # "-" for none: a tab is IFS whitespace, so an empty field would vanish.
    print("command\t%s\t%s\t%s" % (c["command"], " ".join(opts) or "-", c["example"]))
for g, subs in groups.items():
    print("group\t%s\t%s" % (g, " ".join(sorted(set(subs)))))
EOF
ncmd=0 ngroup=0
while IFS=$'\t' read -r kind words rest example; do
    # shellcheck disable=SC2086
    "$CRYPTVOL" $words --help > "$T/help" 2> "$T/err" ||
        fail "cryptvol $words --help exited non-zero: $(cat "$T/err")"
    if [ "$kind" = group ]; then
        for sub in $rest; do
            grep -qE "^  $words $sub( |$)" "$T/help" ||
                fail "cryptvol $words --help does not list $words $sub: $(cat "$T/help")"
        done
        ngroup=$((ngroup + 1))
        continue
    fi
    [ "$rest" != - ] || rest=
    for opt in $rest help; do
        grep -qE -- "^  (-h, )?--$opt( |$)" "$T/help" ||
            fail "cryptvol $words --help does not list --$opt: $(cat "$T/help")"
    done
    grep -q '^Example:$' "$T/help" && grep -qF "  cryptvol $example" "$T/help" ||
        fail "cryptvol $words --help has no example: $(cat "$T/help")"
    grep -q "^Usage: cryptvol $words" "$T/help" || fail "cryptvol $words --help: no usage line"
    # The example itself parses: a typo in it would be a usage error.
    # shellcheck disable=SC2086
    "$CRYPTVOL" $example --help > /dev/null 2> "$T/err" ||
        fail "the example of $words is not a valid command line: $(cat "$T/err")"
    ncmd=$((ncmd + 1))
done < "$T/expect"
[ "$ncmd" -ge 30 ] && [ "$ngroup" -ge 8 ] || fail "only $ncmd commands and $ngroup groups in cryptvol help --json"
ok "$ngroup groups list their commands; $ncmd commands list every option, the global ones and an example"

# ---- snapshots, clones, import, export against the daemon (issue 10) ------
NRUN=0
run_table "$SRC_DIR/tests/cli-conventions-snapshots.table"
ok "$NRUN commands of the snapshot table gave the exit status and output they must"
