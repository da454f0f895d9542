#!/usr/bin/env bash
# The TPM cases of tests/unit/test-tpm.c: two software TPMs (tests/swtpm.sh),
# one that seals and one that must refuse what the first sealed.  Both are
# stopped at exit, also when a case fails.
source "$(dirname "$0")/lib.sh"
source "$SRC_DIR/tests/swtpm.sh"

unit=${BUILD_DIR:-$SRC_DIR/build}/tests/test-tpm
[ -x "$unit" ] || skip "$unit is not built (cmocka missing?)"
command -v swtpm > /dev/null || skip "swtpm is not installed (scripts/install-deps.sh)"

swtpm_start "$T/tpm2"
tcti2=$SWTPM_TCTI
swtpm_start "$T/tpm1"
if ! SWTPM_TCTI2=$tcti2 "$unit"; then
    tail -n 20 "$T/tpm1/swtpm.log" "$T/tpm2/swtpm.log" >&2
    fail "test-tpm against $SWTPM_TCTI and $tcti2"
fi
ok "test-tpm against two swtpm instances"
