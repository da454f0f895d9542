#!/usr/bin/env bash
# Mutants the suite must kill (docs/testing.md, "Mutants").
#
#   scripts/mutants.sh [--ci] [--list] [-v] [--keep] [NAME...]
#
# Each tests/mutants/NAME.patch breaks one promise.  This copies the current
# tree (committed or not: the files git tracks or would track) into one
# scratch directory, builds it once (RelWithDebInfo, warnings as errors),
# runs once with no mutant the tests the selected mutants name (a test that
# fails there would "kill" every mutant and prove nothing), then for each
# mutant: applies it, rebuilds incrementally, runs its named tests, reverts.
#
#   killed         some named test failed (or timed out, or crashed)
#   SURVIVED       every named test that exists passed or skipped (exit 77)
#   NOT APPLIED    the patch no longer applies to the tree: refresh it
#   NOT BUILT      the mutated tree does not build with -Werror: refresh it
#   NO TESTS       none of the named tests exists
#   BASELINE       a named test fails with no mutant, so no kill is proven
#
# Exits 0 when every mutant run was killed, 1 otherwise, 2 on a usage or
# setup error.  --ci runs only the mutants whose header says "ci: yes".
# Quiet by default: one line per mutant, then the table; the output of the
# tests of every mutant not killed is kept in a file the table names.  The
# caller's tree is only read; the scratch directory goes at exit, also on
# Ctrl-C (--keep keeps it, and the output of the killed mutants' tests,
# to look into them).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
MUTANTS_DIR=$SRC/tests/mutants
JOBS=$(nproc)

usage() {
    sed -n '3,4p' "$0" | sed 's/^# *//' >&2
    exit 2
}

ci=0 list=0 verbose=0 keep=0
names=()
while [ $# -gt 0 ]; do
    case "$1" in
    --ci) ci=1 ;;
    --list) list=1 ;;
    -v|--verbose) verbose=1 ;;
    --keep) keep=1 ;;
    -h|--help) usage ;;
    -*) echo "mutants: unknown option $1" >&2; usage ;;
    *) names+=("$1") ;;
    esac
    shift
done

# header FILE KEY: the value of the "# KEY: value" line before the diff.
header() {
    sed -n '/^diff --git /q; s/^# *'"$2"': *//p' "$1" | head -1
}

# ---- which mutants -----------------------------------------------------
selected=()
if [ ${#names[@]} -gt 0 ]; then
    for n in "${names[@]}"; do
        n=${n%.patch}; n=${n##*/}
        [ -f "$MUTANTS_DIR/$n.patch" ] || {
            echo "mutants: no mutant $n (tests/mutants/$n.patch)" >&2; exit 2; }
        selected+=("$n")
    done
else
    for f in "$MUTANTS_DIR"/*.patch; do
        [ -e "$f" ] || continue
        selected+=("$(basename "$f" .patch)")
    done
fi
if [ $ci = 1 ]; then
    keep_ci=()
    for n in "${selected[@]}"; do
        [ "$(header "$MUTANTS_DIR/$n.patch" ci)" = yes ] && keep_ci+=("$n")
    done
    selected=("${keep_ci[@]}")
fi
[ ${#selected[@]} -gt 0 ] || { echo "mutants: no mutant selected" >&2; exit 2; }
for n in "${selected[@]}"; do
    f=$MUTANTS_DIR/$n.patch
    for key in promise tests; do
        [ -n "$(header "$f" $key)" ] || {
            echo "mutants: $f has no \"# $key:\" line" >&2; exit 2; }
    done
done
if [ $list = 1 ]; then
    for n in "${selected[@]}"; do
        f=$MUTANTS_DIR/$n.patch
        printf '%-24s ci:%-3s %s\n' "$n" "$(header "$f" ci)" "$(header "$f" promise)"
        printf '%-24s        tests: %s\n' "" "$(header "$f" tests)"
    done
    exit 0
fi

# ---- the scratch tree ----------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cryptvol-mutants.XXXXXX")
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/cryptvol-mutants-logs.XXXXXX")
CHILD=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
        # ctest runs in its own process group (setsid): its tests and the
        # daemons they started get the signal too, and clean up after
        # themselves.
        kill -TERM -- "-$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    if [ $keep = 1 ]; then
        echo "mutants: scratch tree kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    # Interrupted: no table names the logs, so they go too.
    if [ $keep = 0 ] && { [ $rc = 130 ] || [ $rc = 143 ]; }; then
        rm -rf "$LOGS"
    fi
    rmdir "$LOGS" 2>/dev/null || true
    exit $rc
}
trap cleanup EXIT
trap 'echo "mutants: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

say() { echo "mutants: $*" >&2; }

# run LOG CMD...: CMD with its output in LOG (and on the terminal with -v),
# in its own process group so that an interrupt can stop all of it.
run() {
    local log=$1 rc=0
    shift
    if [ $verbose = 1 ]; then
        setsid "$@" > >(tee -a "$log") 2>&1 &
    else
        setsid "$@" >> "$log" 2>&1 &
    fi
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    return $rc
}

S=$WORK/src B=$WORK/build
mkdir -p "$S"
# The working tree as it is, uncommitted changes and new files included,
# but nothing ignored (build directories); a tree that is not a git
# checkout (a release tarball) is copied whole but for its builds.
if git -C "$SRC" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    (cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do
            if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
        done | tar --null -T - -cf -) | tar -C "$S" -xf -
else
    tar -C "$SRC" --exclude='./build*' --exclude=./demo --exclude=./.git \
        -cf - . | tar -C "$S" -xf -
fi
git_s() {
    git -C "$S" -c user.name=mutants -c user.email=mutants@localhost \
        -c commit.gpgsign=false "$@"
}
git_s init -q
git_s add -A
git_s commit -qm "tree under test"

say "building the tree in $WORK (log $LOGS/build.log)"
t0=$SECONDS
if ! run "$LOGS/build.log" cmake -S "$S" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCRYPTVOL_WERROR=ON ||
   ! run "$LOGS/build.log" cmake --build "$B" -j"$JOBS"; then
    tail -30 "$LOGS/build.log" >&2
    say "the tree does not build without any mutant (log $LOGS/build.log)"
    exit 2
fi
build_s=$((SECONDS - t0))
rm -f "$LOGS/build.log"

# Every test CTest knows, one a line.
ctest --test-dir "$B" -N | sed -n 's/^ *Test *#[0-9]*: *//p' > "$WORK/all-tests"

regex_of() {
    local t re=
    for t in "$@"; do
        re+="${re:+|}$(printf '%s' "$t" | sed 's/[][\.*^$+?(){}|]/\\&/g')"
    done
    printf '^(%s)$' "$re"
}

# run_tests LOG TEST...: ctest on exactly these tests; fills the array
# status (name -> Passed, Failed, Skipped, Timeout, Exception, Not Run).
declare -A status=()
run_tests() {
    local log=$1 rc=0 line name st
    shift
    status=()
    run "$log" ctest --test-dir "$B" -R "$(regex_of "$@")" --no-tests=error \
        --output-on-failure -j"$JOBS" || rc=$?
    while IFS= read -r line; do
        name=$(sed -E 's/^ *[0-9]+\/[0-9]+ +Test +#[0-9]+: +([^ ]+) .*/\1/' <<<"$line")
        st=$(sed -E 's/.*[ .*](Passed|Failed|Skipped|Timeout|Exception|Not Run).*/\1/' <<<"$line")
        status[$name]=$st
    done < <(grep -E '^ *[0-9]+/[0-9]+ +Test +#[0-9]+: ' "$log" || true)
    return $rc
}

# ---- the baseline: the named tests pass with no mutant -------------------
declare -A tests_of=() exists=() broken=()
union=()
for n in "${selected[@]}"; do
    tests_of[$n]=$(header "$MUTANTS_DIR/$n.patch" tests | tr ',' ' ')
    for t in ${tests_of[$n]}; do
        if grep -qxF "$t" "$WORK/all-tests"; then
            exists[$t]=1
            [[ " ${union[*]} " == *" $t "* ]] || union+=("$t")
        fi
    done
done
t0=$SECONDS
if [ ${#union[@]} -gt 0 ]; then
    say "baseline: ${#union[@]} tests with no mutant"
    run_tests "$LOGS/baseline.log" "${union[@]}" || true
    for t in "${union[@]}"; do
        case "${status[$t]:-Not Run}" in
        Passed|Skipped) ;;
        *) broken[$t]=1; say "baseline: $t ${status[$t]:-did not run} with no mutant (log $LOGS/baseline.log)" ;;
        esac
    done
    [ ${#broken[@]} -gt 0 ] || rm -f "$LOGS/baseline.log"
fi
baseline_s=$((SECONDS - t0))

# ---- each mutant ----------------------------------------------------------
# try_mutant NAME LOG: applies, builds and tests one mutant; sets r (the
# result) and d (each named test with its outcome).
try_mutant() {
    local patch=$MUTANTS_DIR/$1.patch log=$2 t st killers=0
    local -a named=(${tests_of[$1]}) runnable=()
    d=
    for t in "${named[@]}"; do
        if [ -z "${exists[$t]:-}" ]; then d+=" $t:missing"
        elif [ -n "${broken[$t]:-}" ]; then d+=" $t:baseline-fails"
        else runnable+=("$t"); fi
    done
    if [[ "$d" == *baseline-fails* ]]; then
        r=BASELINE; return
    elif [ ${#runnable[@]} -eq 0 ]; then
        r="NO TESTS"; return
    elif ! git -C "$S" apply --check "$patch" >> "$log" 2>&1 ||
         ! git -C "$S" apply "$patch" >> "$log" 2>&1; then
        r="NOT APPLIED"; return
    elif ! run "$log" cmake --build "$B" -j"$JOBS"; then
        r="NOT BUILT"; return
    fi
    : > "$log"              # it built: keep only the tests' output
    if run_tests "$log" "${runnable[@]}"; then r=SURVIVED; else r=killed; fi
    for t in "${runnable[@]}"; do
        st=${status[$t]:-Not Run}
        case "$st" in
        Passed) d+=" $t:pass" ;;
        Skipped) d+=" $t:skip" ;;
        Failed|Timeout|Exception) d+=" $t:KILLED"; killers=$((killers + 1)) ;;
        *) d+=" $t:$(tr 'A-Z ' 'a-z-' <<<"$st")" ;;
        esac
    done
    # A non-zero ctest without a failing test is not a kill.
    if [ "$r" = killed ] && [ $killers = 0 ]; then r="NOT RUN"; fi
}

# revert: the scratch tree back to the tree under test, or stop: every
# later mutant would run on top of this one.
revert() {
    if ! git_s checkout -q -f HEAD -- . || ! git_s clean -fdq; then
        say "cannot revert $1 in $S"
        exit 2
    fi
}

declare -A result=() detail=() secs=() logf=()
bad=0
for n in "${selected[@]}"; do
    log=$LOGS/$n.log t0=$SECONDS
    try_mutant "$n" "$log"
    revert "$n"
    secs[$n]=$((SECONDS - t0))
    result[$n]=$r detail[$n]=${d# }
    [ "$r" = killed ] || bad=1
    if { [ "$r" = killed ] && [ $keep = 0 ]; } || [ ! -s "$log" ]; then
        rm -f "$log"
    else
        logf[$n]=$log
    fi
    say "$n: $r (${secs[$n]} s)"
done

# ---- the table -------------------------------------------------------------
printf '\n%-24s %-11s %5s  %s\n' MUTANT RESULT SECS TESTS
for n in "${selected[@]}"; do
    printf '%-24s %-11s %5s  %s\n' "$n" "${result[$n]}" "${secs[$n]}" "${detail[$n]}"
    printf '%-24s promise: %s\n' "" "$(header "$MUTANTS_DIR/$n.patch" promise)"
    [ -z "${logf[$n]:-}" ] || printf '%-24s output:  %s\n' "" "${logf[$n]}"
done
killed=0
for n in "${selected[@]}"; do [ "${result[$n]}" = killed ] && killed=$((killed + 1)); done
printf '\n%d of %d mutants killed; build %d s, baseline %d s, total %d s\n' \
    "$killed" "${#selected[@]}" "$build_s" "$baseline_s" "$SECONDS"
exit $bad
