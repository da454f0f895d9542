#!/usr/bin/python3
"""Checks cryptvold's metadata, LUKS headers and audit log in power-cut
states of a powercut-shim log (tests/powercut-meta.sh, docs/testing.md).

  powercut-meta.py check --log REC --marks FILE --final DIR --secrets DIR
                   --work DIR [--base DIR] [--seed S] [--max-cuts N]
                   [--cryptvol BIN] [--save WHICH:OUTDIR]...

MARKS has one line per command the test ran: LABEL BEFORE AFTER, the
log's length when it started and when it had returned.  Labels say what
the command promised once it returned:

  enable                 cluster encryption is Enabled
  secret:NAME            secret NAME exists (SECRETS/NAME is its value)
  secret-delete:NAME     it does not
  volume:NAME            volume NAME is recorded ready with its chain
                         (volumes/NAME/: manifest, header, the layers
                         the manifest lists; docs/store.md)
  marks                  nbd-marks.py wrote markers to kv and uv
  rekey:NAME:OLD:NEW     NAME's secret is NEW, NEW opens it and OLD not
                         (while in flight: OLD or NEW, as recorded)
  rotate                 the KEK is at generation 2, every token too
  delete:NAME            no record, no file (volumes/NAME, NAME.*)
  export                 a KEK escrow was exported

and each returned command's audit event is in the log.  At every cut:
SQLite passes integrity_check, each ready volume's chain is whole (its
manifest parses and every layer it lists is there), its header file is
valid for cryptsetup and opens with the secret its record names, and its
KEK token is of a generation the metadata holds.  The whole log replayed must be
--final, the real directory.  --save writes the state of one cut
(WHICH: rekey or rotate, a cut while that command ran; random) into
OUTDIR, with OUTDIR.json saying what the daemon must show there.
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
MARK = b"cryptvol-marker:%s:"
EVENTS = {
    "enable": [("cluster.encryption.enable", "cluster")],
    "secret": [("secret.create", "secret/%s")],
    "secret-delete": [("secret.delete", "secret/%s")],
    "volume": [("volume.create", "volume/%s")],
    "marks": [("volume.unlock", "volume/kv"), ("volume.unlock", "volume/uv")],
    "rekey": [("volume.rekey", "volume/%s")],
    "rotate": [("kek.rotation.start", "cluster"),
               ("kek.rotation.finish", "cluster")],
    "delete": [("volume.delete", "volume/%s")],
    "export": [("kek.export", "cluster")],
}


class Marks:
    def __init__(self, path):
        self.cmds = []
        with open(path) as f:
            for line in f:
                label, before, after = line.split()
                self.cmds.append((label.split(":"), int(before), int(after)))

    def returned(self, length):
        return [c for c, b, a in self.cmds if a <= length and c[0] in EVENTS]

    def running(self, length):
        return [c for c, b, a in self.cmds
                if b <= length < a and c[0] in EVENTS]

    def window(self, kind):
        for c, b, a in self.cmds:
            if c[0] == kind:
                return b, a
        return None


class Cut:
    """One power-cut state and what is wrong with it."""

    def __init__(self, a, log, marks, cut, keep, seed):
        self.a, self.cut, self.keep, self.seed = a, cut, keep, seed
        self.length = log.length_at(cut)
        self.dir = os.path.join(a.work, "cut")
        self.state = log.state(cut, keep, seed, a.grain)
        self.state.write(self.dir, force=True, cache=a.cache)
        self.returned = marks.returned(self.length)
        self.running = marks.running(self.length)
        self.problems = []

    def where(self):
        return "cut %d (log length %d, keep %s%s, after %s%s)" % (
            self.cut, self.length, self.keep,
            ":%d" % self.seed if self.keep == "random" else "",
            ":".join(self.returned[-1]) if self.returned else "nothing",
            ", during " + ":".join(self.running[0]) if self.running else "")

    def bad(self, msg):
        self.problems.append("%s: %s" % (self.where(), msg))

    def done(self, kind, *args):
        return any(c[0] == kind and tuple(c[1:1 + len(args)]) == args
                   for c in self.returned)

    def gone(self, kind, name):
        """A delete of name that had returned or was running."""
        return self.done(kind, name) or any(c[1:2] == [name]
                                            for c in self.during(kind))

    def during(self, kind):
        return [c for c in self.running if c[0] == kind]

    # ---- SQLite -----------------------------------------------------------
    def meta(self):
        path = os.path.join(self.dir, "meta.db")
        if not os.path.exists(path):
            if self.returned:
                self.bad("no meta.db, but %s had returned" %
                         ":".join(self.returned[0]))
            return None
        try:
            db = sqlite3.connect("file:%s?mode=rw" % path, uri=True)
            # A scratch copy: its checkpoint at close need not be durable.
            db.execute("PRAGMA synchronous = OFF")
            ok = db.execute("PRAGMA integrity_check").fetchall()
            if ok != [("ok",)]:
                self.bad("meta.db integrity_check: %s" % ok[:5])
                return None
            tables = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "volumes" not in tables:
                # Made at the first start, before any command.
                if self.returned:
                    self.bad("meta.db has no tables, but %s had returned" %
                             ":".join(self.returned[0]))
                return None
            m = {"volumes": {r[0]: dict(zip(("secret", "state", "wait",
                                              "kek_gen"), r[1:]))
                             for r in db.execute(
                                 "SELECT name, secret, state, wait_secret, "
                                 "kek_gen FROM volumes")},
                 "secrets": {r[0] for r in db.execute(
                     "SELECT name FROM secrets")}}
            m["cluster"] = db.execute(
                "SELECT encryption, current_gen, rotation FROM cluster"
            ).fetchone() if "cluster" in tables else None
            m["keks"] = {r[0] for r in db.execute(
                "SELECT gen FROM kek")} if "kek" in tables else set()
            db.close()
            return m
        except sqlite3.Error as e:
            self.bad("meta.db: %s" % e)
            return None

    # ---- the chain and its LUKS header -----------------------------------
    def image(self, name):
        """The volume's LUKS header: its chain's header file."""
        return os.path.join(self.dir, "volumes", name, "header")

    def manifest(self, name):
        """The chain's manifest, or a string saying what is wrong."""
        path = os.path.join(self.dir, "volumes", name, "chain")
        try:
            with open(path) as f:
                m = json.load(f)
            layers = ["layer-%06d" % int(l["id"]) for l in m["layers"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return "its manifest volumes/%s/chain: %s" % (name, e)
        if not layers:
            return "its manifest lists no layer"
        missing = [l for l in layers if not os.path.exists(
            os.path.join(self.dir, "volumes", name, l))]
        if missing:
            return "its manifest lists %s, not there" % ", ".join(missing)
        m["files"] = layers
        return m

    def memo(self, name, what, fn, files=("header",)):
        """fn's answer on files of volume name's chain, asked once per
        version of them (most cuts share one: cryptsetup is the slow
        part)."""
        key = [what]
        for f in files:
            fid = self.state.names["volumes/%s/%s" % (name, f)]
            key.append((fid, self.state.version(fid)))
        key = tuple(key)
        if key not in self.a.memo:
            self.a.memo[key] = fn()
        return self.a.memo[key]

    def luks(self, name):
        def dump():
            p = subprocess.run([CRYPTSETUP, "luksDump",
                                "--dump-json-metadata", self.image(name)],
                               capture_output=True, text=True)
            if p.returncode != 0:
                return p.stderr.strip() or "exit %d" % p.returncode
            return json.loads(p.stdout)
        hdr = self.memo(name, "dump", dump)
        if isinstance(hdr, str):
            self.bad("volume %s: cryptsetup luksDump: %s" % (name, hdr))
            return None
        return hdr

    def opens(self, name, secret):
        return self.memo(name, "opens:" + secret, lambda: subprocess.run(
            [CRYPTSETUP, "open", "--test-passphrase", "--key-file",
             os.path.join(self.a.secrets, secret), self.image(name)],
            capture_output=True).returncode == 0)

    def check_volume(self, name, v, m):
        if not os.path.exists(self.image(name)):
            self.bad("volume %s is recorded %s, but volumes/%s/header is not "
                     "there" % (name, v["state"], name))
            return
        chain = self.manifest(name)
        if isinstance(chain, str):
            self.bad("volume %s is recorded %s, but %s" % (name, v["state"],
                                                           chain))
            return
        hdr = self.luks(name)
        if hdr is None:
            return
        want = [v["secret"]] if v["secret"] else []
        if v["state"] == "rekeying":
            want = [s for s in (v["secret"], v["wait"]) if s]
        if want and not any(self.opens(name, s) for s in want):
            self.bad("volume %s (%s): neither of %s opens its header" %
                     (name, v["state"], want) if len(want) > 1 else
                     "volume %s: its secret %s does not open its header" %
                     (name, want[0]))
        if v["kek_gen"]:
            gens = [t.get("kek_generation") for t in hdr["tokens"].values()
                    if t.get("type") == "cryptvol-kek"]
            if not gens:
                self.bad("volume %s: no cryptvol-kek token" % name)
            elif not set(gens) & m["keks"]:
                self.bad("volume %s: its KEK token is of generation %s, the "
                         "metadata holds only %s" % (name, gens,
                                                     sorted(m["keks"])))
        return hdr

    # ---- the promises of returned commands --------------------------------
    def check_returned(self, m):
        vols, secrets = m["volumes"], m["secrets"]
        for c in self.returned:
            kind, args = c[0], c[1:]
            if kind == "enable" and (not m["cluster"] or
                                     m["cluster"][0] != "Enabled"):
                self.bad("cluster encryption enable had returned, the "
                         "metadata says %s" % (m["cluster"],))
            elif kind == "secret" and not self.gone("secret-delete", *args) \
                    and args[0] not in secrets:
                self.bad("secret %s was created, it is not in the metadata"
                         % args[0])
            elif kind == "secret-delete" and args[0] in secrets:
                self.bad("secret %s was deleted, it is still in the metadata"
                         % args[0])
            elif kind == "volume" and not self.gone("delete", *args):
                v = vols.get(args[0])
                if not v or v["state"] not in ("ready", "rekeying"):
                    self.bad("volume %s was created, the metadata has %s" %
                             (args[0], v))
            elif kind == "delete":
                if args[0] in vols:
                    self.bad("volume %s was deleted, its record is there (%s)"
                             % (args[0], vols[args[0]]["state"]))
                vdir = os.path.join(self.dir, "volumes")
                left = [f for f in os.listdir(vdir) if f == args[0] or
                        f.startswith(args[0] + ".")] \
                    if os.path.isdir(vdir) else []
                if left:
                    self.bad("volume %s was deleted, its files are there (%s)"
                             % (args[0], ", ".join(left)))
            elif kind == "rekey":
                self.check_rekeyed(vols, *args)
            elif kind == "rotate":
                self.check_rotated(m)
        for c in self.during("rekey"):
            name, old, new = c[1:]
            if name in vols and vols[name]["state"] == "ready" and \
                    vols[name]["secret"] not in (old, new):
                self.bad("volume %s during its rekey: secret %s" %
                         (name, vols[name]["secret"]))
        if not self.done("rekey") and not self.during("rekey"):
            for c in self.a.rekeys:
                name, old = c[1], c[2]
                if name in vols and vols[name]["state"] == "ready" and \
                        vols[name]["secret"] != old:
                    self.bad("volume %s before its rekey: secret %s" %
                             (name, vols[name]["secret"]))

    def check_rekeyed(self, vols, name, old, new):
        v = vols.get(name)
        if not v or v["secret"] != new or v["state"] != "ready":
            self.bad("volume %s was rekeyed to %s, the metadata has %s" %
                     (name, new, v))
        if not os.path.exists(self.image(name)):
            return
        if not self.opens(name, new):
            self.bad("volume %s was rekeyed to %s, which does not open it" %
                     (name, new))
        if self.opens(name, old):
            self.bad("volume %s was rekeyed from %s, which still opens it" %
                     (name, old))

    def check_rotated(self, m):
        c = m["cluster"]
        if not c or c[1] != 2 or c[2] != "NoRotation":
            self.bad("kek rotate had returned, the cluster is %s" % (c,))
        for name, v in m["volumes"].items():
            if v["state"] == "ready" and v["kek_gen"] != 2:
                self.bad("kek rotate had returned, volume %s is at "
                         "generation %s" % (name, v["kek_gen"]))

    # ---- audit ------------------------------------------------------------
    def check_audit(self):
        path = os.path.join(self.dir, "audit.log")
        if not os.path.exists(path):
            if self.returned:
                self.bad("no audit.log")
            return
        data = open(path, "rb").read()
        lines = data.split(b"\n")
        if lines and lines[-1]:
            lines = lines[:-1]      # torn: readers skip it
        seen = set()
        for i, line in enumerate(lines):
            if not line:
                continue
            try:
                e = json.loads(line)
                seen.add((e["event"], e["object"], e["result"]))
            except (ValueError, KeyError) as ex:
                self.bad("audit.log line %d does not parse (%s): %r" %
                         (i + 1, ex, line[:80]))
        for c in self.returned:
            for event, obj in EVENTS[c[0]]:
                if "%s" in obj:
                    obj = obj % c[1]
                if (event, obj, "ok") not in seen:
                    self.bad("%s had returned, the audit log has no %s %s" %
                             (":".join(c), event, obj))

    # ---- data written before the cut --------------------------------------
    def check_marks(self, m):
        v = m["volumes"].get("uv")
        if not self.done("marks") or not v or v["state"] != "ready" or \
                not self.a.cryptvol or not os.path.exists(self.image("uv")):
            return      # a missing header is check_volume's to report
        chain = self.manifest("uv")
        if isinstance(chain, str):
            return      # check_volume's to report
        head = chain["files"][-1]

        def first_block():
            # The raw image the chain of one layer stands for: the header
            # over the layer's hole at the front (the layer is the cache's:
            # copied, never changed in place).
            img = os.path.join(self.a.work, "uv.img")
            raw = os.path.join(self.a.work, "uv.raw")
            for f in (img, raw):
                if os.path.exists(f):
                    os.unlink(f)
            fd = os.open(img, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                powercut.copy_sparse(os.path.join(self.dir, "volumes", "uv",
                                                  head), fd)
                os.pwrite(fd, open(self.image("uv"), "rb").read(), 0)
            finally:
                os.close(fd)
            p = subprocess.run([self.a.cryptvol, "image", "export", img, raw,
                                "--passphrase-file",
                                os.path.join(self.a.secrets, v["secret"]),
                                "--length", "4096"], capture_output=True,
                               text=True)
            if p.returncode != 0:
                return "cryptvol image export: %s" % p.stderr.strip()
            return open(raw, "rb").read()
        got = self.memo("uv", "export:" + v["secret"], first_block,
                        ("header", head))
        if isinstance(got, str):
            self.bad("volume uv: %s" % got)
        elif not got.startswith(MARK % b"uv"):
            self.bad("volume uv: the marker written and flushed before the "
                     "cut is not there")

    def run(self):
        m = self.meta()
        if m is not None:
            for name, v in sorted(m["volumes"].items()):
                if v["state"] in ("ready", "rekeying"):
                    self.check_volume(name, v, m)
            self.check_returned(m)
            self.check_marks(m)
        self.check_audit()
        return self.problems


def choose(log, marks, rng, most):
    """Every sync point and every command's return, keep none (evenly
    thinned to `most`), then seeded random cuts and random subsets."""
    det = set(log.points())
    det |= {log.cut_at(a) for c, b, a in marks.cmds}
    det = sorted(det)
    if len(det) > most:
        det = [det[i * len(det) // most] for i in range(most)]
    cuts = [(k, "none", 0) for k in det]
    n = len(log.recs)
    # Most records are the data of three volume formats: half the random
    # cuts fall just after a record of another kind.
    other = [r.idx + 1 for r in log.recs if r.op != "W"]
    for _ in range(max(4, most // 8)):
        cuts.append((rng.randrange(n + 1), "random", rng.randrange(1 << 30)))
        cuts.append((rng.choice(other), "random", rng.randrange(1 << 30)))
        cuts.append((rng.choice(det), "random", rng.randrange(1 << 30)))
    return sorted(cuts)     # in order: each state builds on the last


def save(a, log, marks, rng, which, out):
    if which in ("rekey", "rotate"):
        b, e = marks.window(which)
        inside = [k for k in log.points() if b <= log.length_at(k) < e]
        if not inside:
            raise SystemExit("powercut-meta: no sync point while %s ran" %
                             which)
        cut, keep = inside[len(inside) // 2], "none"
    else:
        cut, keep = rng.randrange(len(log.recs) // 2, len(log.recs)), "random"
    log.state(cut, keep, rng.randrange(1 << 30), a.grain).write(out,
                                                               force=True)
    length = log.length_at(cut)
    done = marks.returned(length)
    kinds = [c[0] for c in done]
    # A volume whose delete was running may be gone once the daemon has
    # finished what was cut off, or back.
    deleting = done + [c for c in marks.running(length) if c[0] == "delete"]
    vols = [c[1] for c in done if c[0] == "volume" and
            ["delete", c[1]] not in deleting]
    with open(out + ".json", "w") as f:
        json.dump({"cut": cut, "length": length, "volumes": vols,
                   "gone": [c[1] for c in done if c[0] == "delete"],
                   "marks": ["kv", "uv"] if "marks" in kinds else [],
                   "during": [":".join(c) for c in marks.running(length)]}, f)


def cmd_check(a):
    log = powercut.Log(a.log, a.base)
    marks = Marks(a.marks)
    a.rekeys = [c for c, _, _ in marks.cmds if c[0] == "rekey"]
    rng = random.Random(a.seed)
    os.makedirs(a.work, exist_ok=True)
    problems = powercut.compare_final(log, a.final, a.work)
    if problems:
        print("powercut-meta: the replay of the whole log is not the real "
              "data dir:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    cuts = choose(log, marks, rng, a.max_cuts)
    # Images are only read here (cryptsetup, cryptvol image export): each
    # version is built once.
    a.memo = {}
    a.cache = powercut.Cache(os.path.join(a.work, "images"),
                             lambda rel: rel.startswith("volumes/"))
    problems, during = [], {}
    for cut, keep, seed in cuts:
        c = Cut(a, log, marks, cut, keep, seed)
        problems += c.run()
        for r in c.running:
            during[r[0]] = during.get(r[0], 0) + 1
    print("powercut-meta: %d records; %d cuts checked (%s)" % (
        len(log.recs), len(cuts), ", ".join(
            "%d during %s" % (n, k) for k, n in sorted(during.items()))),
        file=sys.stderr)
    for spec in a.save or []:
        which, out = spec.split(":", 1)
        save(a, log, marks, rng, which, out)
    if problems:
        print("powercut-meta: %d problems in power-cut states:\n  %s" % (
            len(problems), "\n  ".join(problems[:30])), file=sys.stderr)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("check")
    for o in ("--log", "--marks", "--final", "--secrets", "--work"):
        s.add_argument(o, required=True)
    s.add_argument("--base")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--max-cuts", type=int, default=100)
    s.add_argument("--grain", type=int, default=512)
    s.add_argument("--cryptvol")
    s.add_argument("--save", action="append")
    a = p.parse_args()
    return cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
