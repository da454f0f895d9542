#!/usr/bin/python3
"""The power-loss harness on a workload whose every step is known
(tests/powercut-harness.sh): a child process under the shim writes,
syncs, renames, links, truncates, punches and unlinks files in a
directory, noting the log's length after each step; then the replay must
give, at each step's cut, exactly what that step made durable and no
more (keep none), everything (keep all), or a torn mix of old and new
512-byte pieces (keep random), and the whole log replayed must be the
directory as it ended.

  powercut-selftest.py SHIM WORKDIR
"""

import ctypes
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import powercut  # noqa: E402

A, B, D = b"A" * 8192, b"B" * 4096, b"D" * 1000
OLD = b"OLD-DATA" * 1024


def workload(root, log, marks):
    """Runs under the shim.  Each mark: (name, log length)."""
    out = []

    def mark(name):
        out.append((name, os.stat(log).st_size))

    def sync(path):
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long,
                               ctypes.c_long]
    os.chdir(root)
    a = os.open("a", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(a, A[:4096])
    os.writev(a, [A[4096:6000], A[6000:]])
    os.fsync(a)
    sync(".")
    mark("a-durable")
    os.pwrite(a, B, 4096)
    mark("a-unsynced")
    b = os.open("b", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(b, b"first line\n")
    os.write(b, b"second line\n")
    os.fdatasync(b)
    mark("b-no-dir-sync")
    os.rename("a", "c")
    sync(".")
    mark("renamed")
    d = os.open("d", os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o600)
    sync(".")
    os.pwritev(d, [D[:500], D[500:]], 0)
    mark("dsync")
    old = os.open("old", os.O_RDWR)
    os.ftruncate(old, 4096)
    os.fdatasync(old)
    mark("truncated")
    if libc.fallocate(a, 3, 0, 4096) != 0:     # PUNCH_HOLE | KEEP_SIZE
        raise OSError(ctypes.get_errno(), "fallocate")
    os.fsync(a)
    mark("punched")
    os.mkdir("sub")
    e = os.open("sub/e", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(e, b"in a new folder")
    os.fsync(e)
    sync("sub")
    mark("sub-not-synced")
    os.link("c", "f")
    sync(".")
    mark("linked")
    os.unlink("b")
    mark("unlinked")
    with open(os.path.join(os.path.dirname(log), "outside"), "wb") as f:
        f.write(b"not recorded")
    g = os.open("g", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(g, b"then syncfs")
    os.pwrite(old, b"X" * 100, 0)
    if libc.syncfs(g) != 0:
        raise OSError(ctypes.get_errno(), "syncfs")
    mark("syncfs")
    for fd in (a, b, d, old, e, g):
        os.close(fd)
    with open(marks, "w") as f:
        json.dump(out, f)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


class Check:
    def __init__(self, log, marks, work):
        self.log, self.work, self.problems = log, work, []
        self.cut = {name: log.cut_at(length) for name, length in marks}

    def state(self, mark, keep="none", seed=0):
        out = os.path.join(self.work, "state")
        self.log.state(self.cut[mark], keep, seed).write(out, force=True)
        return out

    def expect(self, mark, keep, rel, want, why):
        got = read(os.path.join(self.state(mark, keep), rel))
        if got == want:
            return
        if got is None or want is None:
            what = "absent" if got is None else "there"
        else:
            at = next((i for i, (x, y) in enumerate(zip(got, want))
                       if x != y), min(len(got), len(want)))
            what = "%d bytes, not %d; from byte %d: %r, not %r" % (
                len(got), len(want), at, got[at:at + 8], want[at:at + 8])
        self.problems.append("at %s (cut %d, keep %s): %s is %s (%s)" % (
            mark, self.cut[mark], keep, rel, what, why))


    def expect_hole(self, mark, keep, rel, lo, hi, why):
        """[lo, hi) of rel is a hole (SEEK_DATA skips it), not zeros
        written: the layer store tells the two apart."""
        path = os.path.join(self.state(mark, keep), rel)
        held = [x for x in powercut.extents(path) if x[0] < hi and x[1] > lo]
        if held:
            self.problems.append("at %s (cut %d, keep %s): %s holds data at "
                                 "%s, not a hole over [%d, %d) (%s)" % (
                                     mark, self.cut[mark], keep, rel, held,
                                     lo, hi, why))


def torn(check, mark, rel, old, new, seeds=40):
    """keep random: each 512-byte piece is old or new, and both occur."""
    kinds = set()
    for seed in range(seeds):
        got = read(os.path.join(check.state(mark, "random", seed), rel))
        for i in range(0, len(new), 512):
            piece = got[i:i + 512]
            if piece == new[i:i + 512]:
                kinds.add("new")
            elif piece == old[i:i + 512]:
                kinds.add("old")
            else:
                check.problems.append("at %s, keep random:%d: %s piece %d "
                                      "is neither old nor new: %r" %
                                      (mark, seed, rel, i // 512, piece[:16]))
                return
    if kinds != {"old", "new"}:
        check.problems.append("at %s, keep random: %s pieces are only %s "
                              "(no torn writes)" % (mark, rel, kinds))


def cache_same(log, work):
    """States written through the Cache equal those written without."""
    problems = []
    cache = powercut.Cache(os.path.join(work, "cache"), lambda rel: True)
    cuts = sorted([(k, "none", 0) for k in range(len(log.recs) + 1)] +
                  [(k, "random", k) for k in range(0, len(log.recs), 3)])
    for k, keep, seed in cuts:
        a, b = os.path.join(work, "ca"), os.path.join(work, "cb")
        log.state(k, keep, seed).write(a, force=True, cache=cache)
        log.state(k, keep, seed).write(b, force=True)
        for top, dirs, files in os.walk(b):
            for name in files:
                p = os.path.join(top, name)
                if read(p) != read(a + p[len(b):]) or \
                        powercut.extents(p) != powercut.extents(a + p[len(b):]):
                    problems.append("cut %d keep %s: %s differs with the "
                                    "cache" % (k, keep, p[len(b) + 1:]))
    return problems


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--workload":
        root, marks = sys.argv[2], sys.argv[3]
        return workload(root, os.environ["CV_POWERCUT_LOG"], marks)
    shim, work = sys.argv[1:3]
    root, base, log_path = (os.path.join(work, n) for n in
                            ("root", "base", "rec.log"))
    os.makedirs(root)
    with open(os.path.join(root, "old"), "wb") as f:
        f.write(OLD)
    shutil.copytree(root, base)
    env = dict(os.environ, LD_PRELOAD=shim, CV_POWERCUT_ROOT=root,
               CV_POWERCUT_LOG=log_path)
    marks_path = os.path.join(work, "marks.json")
    subprocess.run([sys.executable, os.path.abspath(__file__), "--workload",
                    root, marks_path], env=env, check=True)
    log = powercut.Log(log_path, base)
    with open(marks_path) as f:
        c = Check(log, json.load(f), work)
    ops = {r.op for r in log.recs}
    if not {"P", "C", "W", "S", "D", "G", "R", "L", "U", "M", "T",
            "Z"} <= ops:
        c.problems.append("record kinds missing from the log: only %s" %
                          sorted(ops))
    if any("outside" in r.path for r in log.recs):
        c.problems.append("a file outside the root was recorded")

    e = c.expect
    e("a-durable", "none", "a", A, "written, fsync'ed, folder fsync'ed")
    e("a-durable", "none", "old", OLD, "the base copy, untouched")
    e("a-unsynced", "none", "a", A, "the second block's rewrite had no sync")
    e("a-unsynced", "all", "a", A[:4096] + B, "keep all")
    torn(c, "a-unsynced", "a", A, A[:4096] + B)
    e("b-no-dir-sync", "none", "b", None, "fdatasync'ed, its folder not")
    e("b-no-dir-sync", "all", "b", b"first line\nsecond line\n", "keep all")
    e("renamed", "none", "a", None, "renamed, folder fsync'ed")
    e("renamed", "none", "c", A, "renamed; the B rewrite still not synced")
    e("renamed", "none", "b", b"first line\nsecond line\n",
      "O_APPEND writes, its entry synced with the folder")
    e("dsync", "none", "d", D, "O_DSYNC writes are durable when they return")
    e("truncated", "none", "old", OLD[:4096], "ftruncate, fdatasync")
    e("punched", "none", "c", bytes(4096) + B,
      "a hole punched and fsync'ed (which covers the B rewrite too)")
    c.expect_hole("punched", "none", "c", 0, 4096, "a hole punched")
    c.expect_hole("punched", "all", "c", 0, 4096, "a hole punched, keep all")
    e("sub-not-synced", "none", "sub/e", None,
      "its folder's own entry was never synced")
    e("sub-not-synced", "all", "sub/e", b"in a new folder", "keep all")
    e("linked", "none", "f", bytes(4096) + B, "a hard link, folder synced")
    e("unlinked", "none", "b", b"first line\nsecond line\n",
      "unlinked, folder not synced")
    e("unlinked", "all", "b", None, "keep all")
    e("syncfs", "none", "g", b"then syncfs", "syncfs covers everything")
    e("syncfs", "none", "old", b"X" * 100 + OLD[100:4096], "syncfs")
    e("syncfs", "none", "sub/e", b"in a new folder", "syncfs")

    final = os.path.join(work, "final")
    log.state(len(log.recs), "all").write(final)
    for top, dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(top, name)
            if read(p) != read(final + p[len(root):]):
                c.problems.append("the whole log replayed: %s differs from "
                                  "the real file" % p[len(root) + 1:])
            elif powercut.extents(p) != powercut.extents(final + p[len(root):]):
                c.problems.append("the whole log replayed: %s holds the "
                                  "blocks %s, the real file %s" % (
                                      p[len(root) + 1:],
                                      powercut.extents(final + p[len(root):]),
                                      powercut.extents(p)))
    c.problems += cache_same(log, work)
    if c.problems:
        print("powercut-selftest: %d problems:\n  %s" % (
            len(c.problems), "\n  ".join(c.problems)), file=sys.stderr)
        return 1
    print("powercut-selftest: %d records, %d marks, all as modelled" %
          (len(log.recs), len(c.cut)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
