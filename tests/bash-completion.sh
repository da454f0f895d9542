#!/usr/bin/env bash
# The bash completion (etc/bash-completion/cryptvol), sourced into bash and
# called as bash calls it, with COMP_WORDS and COMP_CWORD set:
#  * every command path of "cryptvol --help" completes word by word;
#  * options of a command come from its --help, with the global ones for
#    the daemon's commands; an option's enumerated values complete;
#  * volume, secret and class names come from a running daemon, found
#    with the line's --socket or $CRYPTVOL_SOCKET;
#  * with no daemon there, names complete to nothing, within 2 s.
source "$(dirname "$0")/lib.sh"

COMPLETION=$SRC_DIR/etc/bash-completion/cryptvol
bin=$T/bin
mkdir -p "$bin"
ln -s "$CRYPTVOL" "$bin/cryptvol"
# comp WORD...: the completions of the last word, one line, sorted.
comp() {
    PATH=$bin:$PATH bash -c '
        source "$1"; shift
        COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
        _cryptvol
        printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " " | sed "s/ $//"' _ "$COMPLETION" "$@"
}
# expect "WANT" WORD...
expect() {
    local want=$1 got
    shift
    got=$(comp "$@")
    [ "$got" = "$want" ] || fail "completing '$*': got '$got', expected '$want'"
}

bash -n "$COMPLETION" || fail "the completion script does not parse"
complete_line=$(bash -c 'source "$1"; complete -p cryptvol' _ "$COMPLETION")
[[ $complete_line == *"-F _cryptvol cryptvol"* ]] || fail "no 'complete -F _cryptvol cryptvol': $complete_line"

expect "audit backup class cluster device image node secret snapshot status tls volume" cryptvol ""
expect "volume" cryptvol vo
expect "access clone create delete export flatten import info list rekey replicas resize" cryptvol volume ""
expect "create delete list rollback" cryptvol snapshot ""
expect "encryption info kek migrate" cryptvol cluster ""
expect "export rotate" cryptvol cluster kek ""
expect "add change remove" cryptvol image key ""
expect "map unmap" cryptvol device ""
# Each command of the table, word by word.  The list comes from the table
# (cryptvol help --json; the lines of --help do not start with "cryptvol",
# and a parse of them that finds none would check nothing).
"$CRYPTVOL" help --json | $PYTHON -c 'import json, sys
for c in json.load(sys.stdin)["commands"]: print(c["command"])' > "$T/paths"
[ "$(wc -l < "$T/paths")" -ge 30 ] || fail "cryptvol help --json lists only $(wc -l < "$T/paths") commands"
while read -r path; do
    read -ra w <<< "$path"
    for ((i = 0; i < ${#w[@]}; i++)); do
        got=$(comp cryptvol "${w[@]:0:i}" "")
        [[ " $got " == *" ${w[i]} "* ]] || fail "'cryptvol ${w[*]:0:i} ' does not offer '${w[i]}' (offers '$got')"
    done
done < "$T/paths"
ok "all $(wc -l < "$T/paths") commands of cryptvol help --json complete word by word"

got=$(comp cryptvol volume create x --)
for o in --size --class --secret --type --cipher --plaintext --pbkdf --pbkdf-iterations --socket --url --json; do
    [[ " $got " == *" $o "* ]] || fail "volume create options lack $o: $got"
done
expect "--force --help --passphrase-file" cryptvol image key remove img --
expect "luks1 luks2" cryptvol volume create x --type ""
expect "argon2i argon2id pbkdf2" cryptvol image format img --pbkdf ""
ok "options from each command's --help, global ones for daemon commands, enumerated values"

cvd_start node --tls off
passfile "$T/key" k
"$CRYPTVOL" secret create alpha-key --from-file "$T/key" > /dev/null
"$CRYPTVOL" class create gold --secret alpha-key > /dev/null
"$CRYPTVOL" volume create alpha --size 8M --class gold > /dev/null
"$CRYPTVOL" volume create beta --size 8M > /dev/null
expect "alpha beta" cryptvol volume info ""
expect "alpha" cryptvol volume delete al
expect "alpha" cryptvol device map a
expect "alpha-key beta" cryptvol secret delete ""
expect "gold" cryptvol class info ""
expect "alpha-key beta" cryptvol volume create x --secret ""
expect "gold" cryptvol volume create x --class g
expect "" cryptvol volume create ""
sock=$CRYPTVOL_SOCKET
unset CRYPTVOL_SOCKET
expect "alpha beta" cryptvol --socket "$sock" volume resize ""
expect "alpha beta" cryptvol volume rekey --socket "$sock" ""
ok "volume, secret and class names from the daemon, by \$CRYPTVOL_SOCKET or the line's --socket"

start=$(date +%s)
expect "" cryptvol --socket "$T/nowhere.sock" volume info ""
[ $(($(date +%s) - start)) -le 3 ] || fail "completion without a daemon took more than 3 s"
ok "no daemon: no names, at once"
