#!/usr/bin/python3
"""Checks volume resizes in power-cut states of a powercut-shim log
(tests/powercut-resize.sh, docs/testing.md).

  powercut-resize.py check --log REC --marks FILE --final DIR --secret F
                     --work DIR [--seed S] [--grain N] [--cryptvol BIN]
                     [--save-grow VOL --save OUTDIR]

MARKS lines:

  cmd LABEL BEFORE AFTER     a command and the log's length when it
                             started and when it had returned; LABEL is
                             create:VOL:SIZE, grow:VOL:OLD:NEW,
                             shrink:VOL:OLD:NEW or other
  data VOL OFF TEXT AFTER    a FUA write of TEXT at OFF, acknowledged
                             when the log was AFTER long

At every record of every resize (keep none), every sync point, and seeded
random cuts and subsets: meta.db passes integrity_check; each volume whose
create had returned has a record and a chain (volumes/VOL/: a manifest
that parses, the header file, the layer it lists; docs/store.md), the
record and the head layer (whose size is the raw image's) of a size the
resizes allow at that cut (while one runs: old or new; once it returned:
new), in a state the resize allows (ready; growing or resizing while it
runs); a ready record agrees with its layer; a LUKS header passes
cryptsetup luksDump with a "dynamic" data segment and opens with the
secret; each acknowledged write is there (read from the header and layer
put together).  The whole log replayed must be --final.
Some cut during a grow must show the record growing with the image at the
new size, and some with it at the old (else the cuts did not reach the
steps of a grow).  --save writes OUTDIR/N and OUTDIR/N.json (what the
daemon must show there) for every distinct state during VOL's grow and a
few random ones.
"""

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import powercut  # noqa: E402

CRYPTSETUP = shutil.which("cryptsetup") or "/usr/sbin/cryptsetup"
SERVED = {"grow": "growing", "shrink": "resizing"}


class Marks:
    def __init__(self, path):
        self.cmds, self.data = [], []
        with open(path) as f:
            for line in f:
                w = line.split()
                if w[0] == "cmd":
                    self.cmds.append((w[1].split(":"), int(w[2]), int(w[3])))
                else:
                    self.data.append((w[1], int(w[2]), w[3], int(w[4])))

    def created(self, length):
        """Volumes whose create had returned, with their size then."""
        return {c[1]: int(c[2]) for c, b, a in self.cmds
                if c[0] == "create" and a <= length}

    def sizes(self, vol, length):
        """The sizes volume vol may have at a cut of that length, the
        resize running then (or None), and the states its record may
        be in."""
        sizes = {self.created(length)[vol]}
        running = None
        for c, b, a in self.cmds:
            if c[0] not in SERVED or c[1] != vol:
                continue
            old, new = int(c[2]), int(c[3])
            if a <= length:
                sizes = {new}
            elif b <= length:
                sizes, running = {old, new}, c
                break
        states = {"ready"} | ({SERVED[running[0]]} if running else set())
        return sizes, running, states

    def windows(self, vol=None):
        return [(c, b, a) for c, b, a in self.cmds
                if c[0] in SERVED and (vol is None or c[1] == vol)]


class Cut:
    def __init__(self, a, log, marks, cut, keep, seed):
        self.a, self.log, self.marks = a, log, marks
        self.cut, self.keep, self.seed = cut, keep, seed
        self.length = log.length_at(cut)
        self.dir = os.path.join(a.work, "cut")
        self.state = log.state(cut, keep, seed, a.grain)
        self.state.write(self.dir, force=True, cache=a.cache)
        self.problems = []
        self.seen = set()       # (state, at new size) of volumes in a grow

    def where(self):
        running = [":".join(c) for c, b, e in self.marks.windows()
                   if b <= self.length < e]
        return "cut %d (log length %d, keep %s%s%s)" % (
            self.cut, self.length, self.keep,
            ":%d" % self.seed if self.keep == "random" else "",
            ", during " + running[0] if running else "")

    def bad(self, msg):
        self.problems.append("%s: %s" % (self.where(), msg))

    def image(self, name):
        """The volume's LUKS header: its chain's header file."""
        return os.path.join(self.dir, "volumes", name, "header")

    def head(self, name):
        """The chain's head layer (relative to its directory), or a
        string saying what is wrong with the chain."""
        path = os.path.join(self.dir, "volumes", name, "chain")
        try:
            with open(path) as f:
                head = "layer-%06d" % int(json.load(f)["layers"][-1]["id"])
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            return "its manifest volumes/%s/chain: %s" % (name, e)
        if not os.path.exists(os.path.join(self.dir, "volumes", name, head)):
            return "its manifest lists %s, not there" % head
        return head

    def layer(self, name):
        return os.path.join(self.dir, "volumes", name, self.head(name))

    def memo(self, name, what, fn, files=("header",)):
        """fn's answer on these files of name's chain, asked once per
        version of them."""
        key = [what]
        for f in files:
            fid = self.state.names["volumes/%s/%s" % (name, f)]
            key.append((fid, self.state.version(fid)))
        key = tuple(key)
        if key not in self.a.memo:
            self.a.memo[key] = fn()
        return self.a.memo[key]

    def records(self):
        path = os.path.join(self.dir, "meta.db")
        if not os.path.exists(path):
            return None
        try:
            db = sqlite3.connect("file:%s?mode=rw" % path, uri=True)
            db.execute("PRAGMA synchronous = OFF")
            ok = db.execute("PRAGMA integrity_check").fetchall()
            if ok != [("ok",)]:
                self.bad("meta.db integrity_check: %s" % ok[:5])
                return None
            tables = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            rows = db.execute("SELECT name, state, size, data_offset, "
                              "sector_size, type FROM volumes").fetchall() \
                if "volumes" in tables else []     # made at the first start
            db.close()
        except sqlite3.Error as e:
            self.bad("meta.db: %s" % e)
            return None
        return {r[0]: dict(zip(("state", "size", "offset", "ss", "type"),
                               r[1:])) for r in rows}

    def check_luks(self, name):
        def dump():
            p = subprocess.run([CRYPTSETUP, "luksDump", self.image(name)],
                               capture_output=True, text=True)
            if p.returncode != 0:
                return "cryptsetup luksDump: %s" % p.stderr.strip()
            j = subprocess.run([CRYPTSETUP, "luksDump",
                                "--dump-json-metadata", self.image(name)],
                               capture_output=True, text=True)
            if j.returncode == 0:       # LUKS2
                size = json.loads(j.stdout)["segments"]["0"]["size"]
                if size != "dynamic":
                    return "its data segment has size %s, not dynamic" % size
            t = subprocess.run([CRYPTSETUP, "open", "--test-passphrase",
                                "--key-file", self.a.secret,
                                self.image(name)], capture_output=True,
                               text=True)
            if t.returncode != 0:
                return "the secret does not open it: %s" % t.stderr.strip()
            return None
        why = self.memo(name, "luks", dump)
        if why:
            self.bad("volume %s: %s" % (name, why))

    def read(self, name, rec, off, n):
        if rec["type"] == "plaintext":      # data offset 0: the layer is it
            with open(self.layer(name), "rb") as f:
                f.seek(off)
                return f.read(n)
        # The raw image the chain of one layer stands for: the header over
        # the layer's hole at the front (the layer is the cache's: copied,
        # never changed in place).
        img = os.path.join(self.a.work, "export.img")
        out = os.path.join(self.a.work, "export.raw")
        for f in (img, out):
            if os.path.exists(f):
                os.unlink(f)
        fd = os.open(img, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            powercut.copy_sparse(self.layer(name), fd)
            os.pwrite(fd, open(self.image(name), "rb").read(), 0)
        finally:
            os.close(fd)
        p = subprocess.run([self.a.cryptvol, "image", "export", img, out,
                            "--passphrase-file", self.a.secret, "--offset",
                            str(off), "--length", str(n)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            return "cryptvol image export: %s" % p.stderr.strip()
        return open(out, "rb").read()

    def check_data(self, name, rec):
        for vol, off, text, ack in self.marks.data:
            if vol != name or ack > self.length:
                continue
            got = self.memo(name, "read:%d:%d" % (off, len(text)),
                            lambda: self.read(name, rec, off, len(text)),
                            ("header", self.head(name)))
            if isinstance(got, str):
                self.bad("volume %s: %s" % (name, got))
            elif got != text.encode():
                self.bad("volume %s: %r written at %d and acknowledged "
                         "(FUA) before the cut reads %r" % (name, text, off,
                                                           got[:40]))

    def check_volume(self, name, rec):
        sizes, running, states = self.marks.sizes(name, self.length)
        allowed = sorted(sizes)
        if rec["state"] not in states:
            self.bad("volume %s is recorded %s (allowed: %s)" %
                     (name, rec["state"], ", ".join(sorted(states))))
        if rec["size"] not in sizes:
            self.bad("volume %s is recorded at %d bytes (allowed: %s)%s" %
                     (name, rec["size"], allowed,
                      "" if running else ": a resize that had returned "
                      "is not durable"))
        if not os.path.exists(self.image(name)):
            self.bad("volume %s: no header file (volumes/%s/header)" %
                     (name, name))
            return
        head = self.head(name)
        if head.startswith("its "):
            self.bad("volume %s: %s" % (name, head))
            return
        st = os.stat(self.layer(name)).st_size
        eff = (st - rec["offset"]) // rec["ss"] * rec["ss"]
        if eff not in sizes:
            self.bad("volume %s: its layer holds %d bytes after the data "
                     "offset (allowed: %s)%s" % (
                         name, eff, allowed, "" if running else
                         ": a resize that had returned is not durable"))
        if rec["state"] == "ready" and eff != rec["size"]:
            self.bad("volume %s is Available at %d bytes, its layer holds "
                     "%d" % (name, rec["size"], eff))
        if running and running[0] == "grow":
            self.seen.add((rec["state"], eff == int(running[3])))
        if rec["type"] != "plaintext":
            self.check_luks(name)
        if self.a.cryptvol:
            self.check_data(name, rec)

    def run(self):
        created = self.marks.created(self.length)
        recs = self.records()
        if recs is None:
            if created:
                self.bad("no readable meta.db, but %s had been created" %
                         ", ".join(sorted(created)))
            return self.problems
        for name in sorted(created):
            if name not in recs:
                self.bad("volume %s was created, it has no record" % name)
            else:
                self.check_volume(name, recs[name])
        return self.problems

    def expectation(self):
        vols = {n: sorted(self.marks.sizes(n, self.length)[0])
                for n in self.marks.created(self.length)}
        return {"where": self.where(), "volumes": vols,
                "marks": [[v, o, t] for v, o, t, ack in self.marks.data
                          if ack <= self.length],
                "during": [":".join(c) for c, b, e in self.marks.windows()
                           if b <= self.length < e]}


def choose(log, marks, rng):
    """Every record inside each resize (keep none), every sync point, each
    command's return, then seeded random cuts and subsets, half of them
    inside the resizes."""
    inside = set()
    for c, b, a in marks.windows():
        inside |= set(range(log.cut_at(b), log.cut_at(a) + 1))
    det = inside | set(log.points())
    det |= {log.cut_at(a) for c, b, a in marks.cmds}
    det |= {log.cut_at(ack) for v, o, t, ack in marks.data}
    cuts = [(k, "none", 0) for k in sorted(det)]
    n = len(log.recs)
    inside = sorted(inside)
    for _ in range(12):
        cuts.append((rng.randrange(n + 1), "random", rng.randrange(1 << 30)))
        cuts.append((rng.choice(inside), "random", rng.randrange(1 << 30)))
    return sorted(cuts)


def cmd_check(a):
    log = powercut.Log(a.log)
    marks = Marks(a.marks)
    rng = random.Random(a.seed)
    os.makedirs(a.work, exist_ok=True)
    problems = powercut.compare_final(log, a.final, a.work)
    if problems:
        print("powercut-resize: the replay of the whole log is not the "
              "real data dir:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    a.memo = {}
    a.cache = powercut.Cache(os.path.join(a.work, "images"),
                             lambda rel: rel.startswith("volumes/"))
    save = []
    if a.save_grow:
        (c, b, e), = [w for w in marks.windows(a.save_grow)
                      if w[0][0] == "grow"]
        save = list(range(log.cut_at(b), log.cut_at(e) + 1))
        os.makedirs(a.save, exist_ok=True)
    cuts = choose(log, marks, rng)
    randoms = [i for i, (k, keep, s) in enumerate(cuts) if keep == "random"]
    saved_random = set(rng.sample(randoms, min(3, len(randoms))))
    problems, seen, saved, versions = [], set(), 0, set()
    for i, (cut, keep, seed) in enumerate(cuts):
        c = Cut(a, log, marks, cut, keep, seed)
        problems += c.run()
        seen |= c.seen
        if not (a.save and (i in saved_random or
                            (keep == "none" and cut in save))):
            continue
        v = tuple(sorted((rel, c.state.version(fid))
                         for rel, fid in c.state.names.items()))
        if v in versions:
            continue            # the same bytes as a state already saved
        versions.add(v)
        out = os.path.join(a.save, "%03d" % saved)
        c.state.write(out, force=True)
        with open(out + ".json", "w") as f:
            json.dump(c.expectation(), f)
        saved += 1
    print("powercut-resize: %d records; %d cuts checked (%d inside "
          "resizes); grows cut in states %s; %d states saved" % (
              len(log.recs), len(cuts),
              sum(1 for k, _, _ in cuts
                  if any(log.cut_at(b) <= k <= log.cut_at(e)
                         for _, b, e in marks.windows())),
              sorted("%s/%s" % (s, "new" if n else "old") for s, n in seen),
              saved), file=sys.stderr)
    for want in (("growing", True), ("growing", False)):
        if want not in seen:
            problems.append("no cut during a grow found the record growing "
                            "with the image at its %s size: the cuts do not "
                            "reach every step of a grow" %
                            ("new" if want[1] else "old"))
    if problems:
        print("powercut-resize: %d problems in power-cut states:\n  %s" % (
            len(problems), "\n  ".join(problems[:30])), file=sys.stderr)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("check")
    for o in ("--log", "--marks", "--final", "--secret", "--work"):
        s.add_argument(o, required=True)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--grain", type=int, default=512)
    s.add_argument("--cryptvol")
    s.add_argument("--save-grow")
    s.add_argument("--save")
    return cmd_check(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
