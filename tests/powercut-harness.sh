#!/usr/bin/env bash
# The power-loss harness itself (docs/testing.md): a workload whose every
# step is known runs under the recording shim (writes, writev, pwritev,
# O_APPEND, O_DSYNC, fsync and fdatasync of files and folders, rename,
# link, unlink, mkdir, ftruncate, a punched hole, syncfs), and the replay
# must give at each step exactly what it made durable (keep none), all of
# it (keep all), or old and new 512-byte pieces mixed (keep random); the
# whole log replayed is the directory as it ended, and states built
# through the image cache are those built without it.  The tests on
# cryptvold (powercut-data, powercut-meta) rest on this.
. "$(dirname "$0")/lib.sh"

[ -f "${CV_POWERCUT_SHIM:-}" ] || fail "no powercut shim (CV_POWERCUT_SHIM='${CV_POWERCUT_SHIM:-}'; ctest sets it)"
"$PYTHON" "$SRC_DIR/tests/tools/powercut-selftest.py" "$CV_POWERCUT_SHIM" "$T" ||
    fail "the harness does not replay what it recorded as modelled"
ok "the harness replays a known workload as modelled"
