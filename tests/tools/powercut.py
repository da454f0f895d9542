#!/usr/bin/python3
"""Replays a powercut-shim log (tests/tools/powercut/powercut-shim.c) into
the state a directory would be in after a power cut at any point of the
recorded run (docs/testing.md, "The power-loss harness").

  powercut.py info LOG                what was recorded, by kind and file
  powercut.py points LOG [--json]     the sync points: cut K = the first K
                                      records happened (K is just after a
                                      sync record)
  powercut.py cut LOG BYTES           the cut of a log length: the number
                                      of records wholly below BYTES (an ack
                                      seen when the log was BYTES long
                                      may have happened from that cut on)
  powercut.py replay LOG --base DIR --out DIR --cut K
                     [--keep none|all|random:SEED] [--grain BYTES]
                     [--only PATH]... [--force]
      builds in DIR (new, or replaced with --force) the directory as of a
      power cut after the first K records (K may be @BYTES, a log length):
      from the base copy, per file every data change that a completed
      fsync/fdatasync of that file (or syncfs/sync) covers, every write
      made on an O_SYNC/O_DSYNC descriptor, and per directory every entry
      change a completed fsync of that directory covers; of the rest,
      none, all, or a seeded random subset: data cut into --grain-byte
      pieces (default 512; torn writes), each kept or not, entry changes
      a random prefix per directory.  --base may be omitted if the
      recording started from an empty or absent directory.

As a module: Log(path, base), log.state(cut, keep, seed, grain),
state.write(out, only, force, cache) (Cache: large files shared between
states by hard links, built once per version).
"""

import argparse
import collections
import ctypes
import errno
import json
import mmap
import os
import random
import shutil
import sys

DATA_OPS = "WTZA"
NS_OPS = "CRLUMXE"
SYNC_OPS = "SDG"


class Error(Exception):
    pass


class Rec:
    __slots__ = ("idx", "pos", "end", "op", "ino", "off", "len", "start",
                 "flags", "path", "path2", "data_at", "dlen", "fid", "dir",
                 "isdir")

    def __repr__(self):
        return "<%s #%d %s %s off=%d len=%d>" % (self.op, self.idx, self.path,
                                                 self.path2, self.off,
                                                 self.len)


def parent(rel):
    d = os.path.dirname(rel)
    return d if d else "."


def parse(buf):
    """The records of a log; a record cut short at the end (a process
    killed while appending) is dropped."""
    recs = []
    pos, n = 0, len(buf)
    while pos < n:
        nl = buf.find(b"\n", pos, pos + 512)
        if nl < 0:
            break
        f = buf[pos:nl].split()
        if len(f) != 9:
            raise Error("log offset %d: not a record: %r" % (pos, buf[pos:nl]))
        plen, p2len, dlen = int(f[6]), int(f[7]), int(f[8])
        end = nl + 1 + plen + p2len + dlen
        if end > n:
            break
        r = Rec()
        r.idx, r.pos, r.end = len(recs), pos, end
        r.op = f[0].decode()
        r.ino = f[1].decode()
        r.off, r.len, r.start = int(f[2]), int(f[3]), int(f[4])
        r.flags = f[5].decode()
        at = nl + 1
        r.path = buf[at:at + plen].decode("utf-8", "surrogateescape")
        r.path2 = buf[at + plen:at + plen + p2len].decode(
            "utf-8", "surrogateescape")
        r.data_at, r.dlen = at + plen + p2len, dlen
        r.fid = r.dir = None
        r.isdir = False
        recs.append(r)
        pos = end
    return recs


class File:
    def __init__(self, fid, base=None):
        self.fid, self.base, self.ino = fid, base, None
        self.ops = []       # data records, in log order
        self.syncs = []     # (idx, start) of completed syncs


class Log:
    """A parsed log, its records resolved to files (inodes, followed
    through renames) with the namespace the recorded process saw."""

    def __init__(self, path, base=None, resolve=True):
        self.path = path
        with open(path, "rb") as f:
            self.buf = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) \
                if os.fstat(f.fileno()).st_size else b""
        self.recs = parse(self.buf)
        self.ends = [r.end for r in self.recs]
        self.base = base
        self.files = []
        self.base_names = {}    # rel -> fid, as in the base copy
        self.base_dirs = {"."}
        if base and os.path.isdir(base):
            self._scan_base(base)
        self.dir_syncs = collections.defaultdict(list)
        self.global_syncs = []
        self.ns = []
        self.linked = set()     # fids given a second name by link()
        if resolve:             # not needed to list records and points
            self._resolve()

    def _new_file(self, base=None):
        f = File(len(self.files), base)
        self.files.append(f)
        return f

    def _scan_base(self, base):
        for dirpath, dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, base)
            for d in dirs:
                self.base_dirs.add(os.path.normpath(os.path.join(rel, d)))
            for name in files:
                p = os.path.normpath(os.path.join(rel, name))
                if os.path.isfile(os.path.join(base, p)) and \
                        not os.path.islink(os.path.join(base, p)):
                    self.base_names[p] = self._new_file(p).fid

    # ---- pass 1: what each record is about, as the process saw it -------
    def _resolve(self):
        live = dict(self.base_names)
        dirs = set(self.base_dirs)
        by_ino = {}
        names = collections.Counter(live.values())

        def drop_name(rel):
            fid = live.pop(rel, None)
            if fid is None:
                return
            names[fid] -= 1
            if names[fid] == 0 and self.files[fid].ino:
                by_ino.pop(self.files[fid].ino, None)

        def resolve(r):
            fid = by_ino.get(r.ino)
            if fid is not None:
                return fid
            fid = live.get(r.path)
            if fid is not None and self.files[fid].ino is None:
                self.files[fid].ino = r.ino
                by_ino[r.ino] = fid
                return fid
            raise Error("record %d (%s %s): inode %s is neither in the base "
                        "copy nor created in the log (was the base copied "
                        "before recording started?)" % (r.idx, r.op, r.path,
                                                        r.ino))

        for r in self.recs:
            op = r.op
            if op in DATA_OPS or op == "S":
                r.fid = resolve(r)
                if op == "S":
                    self.files[r.fid].syncs.append((r.idx, r.start))
                else:
                    self.files[r.fid].ops.append(r)
            elif op == "D":
                self.dir_syncs[r.path].append((r.idx, r.start))
            elif op == "G":
                self.global_syncs.append((r.idx, r.start))
            elif op == "C":
                drop_name(r.path)
                f = self._new_file()
                f.ino = r.ino
                by_ino[r.ino] = f.fid
                live[r.path] = f.fid
                names[f.fid] += 1
                r.fid, r.dir = f.fid, parent(r.path)
                self.ns.append(r)
            elif op in "RL":
                r.dir = parent(r.path2)
                if r.path in dirs and op == "R":
                    r.isdir = True
                    self._move_dir(live, dirs, r.path, r.path2)
                else:
                    r.fid = resolve(r)
                    if "x" in r.flags:
                        other = live.get(r.path2)
                        live[r.path2], live[r.path] = r.fid, other
                    else:
                        if op == "R":
                            live.pop(r.path, None)
                            names[r.fid] -= 1
                        else:
                            self.linked.add(r.fid)
                        drop_name(r.path2)
                        live[r.path2] = r.fid
                        names[r.fid] += 1
                self.ns.append(r)
            elif op == "U":
                r.fid, r.dir = live.get(r.path), parent(r.path)
                drop_name(r.path)
                self.ns.append(r)
            elif op == "M":
                dirs.add(r.path)
                r.dir = parent(r.path)
                self.ns.append(r)
            elif op == "X":
                dirs.discard(r.path)
                r.dir = parent(r.path)
                self.ns.append(r)
            elif op == "E":
                raise Error("record %d: %s came from outside the recorded "
                            "directory; its content is unknown" %
                            (r.idx, r.path))
            elif op == "?":
                raise Error("record %d: %s: a fallocate mode the replay does "
                            "not model" % (r.idx, r.path))
            # P (a process started) and I (sync_file_range) change nothing.

    @staticmethod
    def _move_dir(names, dirs, src, dst):
        pre = src + "/"
        for d in sorted(d for d in dirs if d == src or d.startswith(pre)):
            dirs.discard(d)
            dirs.add(dst + d[len(src):])
        for p in [p for p in names if p.startswith(pre)]:
            names[dst + p[len(src):]] = names.pop(p)

    # ---- cuts -------------------------------------------------------------
    def cut_at(self, nbytes):
        """Records wholly below a log length: the cut of an ack seen then."""
        lo, hi = 0, len(self.ends)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.ends[mid] <= nbytes:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def length_at(self, cut):
        """The log length the first `cut` records make."""
        return self.ends[cut - 1] if cut > 0 else 0

    def points(self):
        """Cuts just after each sync record."""
        return [r.idx + 1 for r in self.recs if r.op in SYNC_OPS]

    def state(self, cut, keep="none", seed=0, grain=512):
        if not 0 <= cut <= len(self.recs):
            raise Error("cut %d: the log has %d records" % (cut,
                                                            len(self.recs)))
        if keep not in ("none", "all", "random"):
            raise Error("keep %r: none, all or random" % keep)
        return State(self, cut, keep, random.Random(seed), grain)


class State:
    """The directory after a power cut: names -> files, and per file the
    records applied to its base content, in order."""

    def __init__(self, log, cut, keep, rng, grain):
        self.log, self.cut, self.keep, self.rng, self.grain = \
            log, cut, keep, rng, grain
        g = max([s for i, s in log.global_syncs if i < cut], default=-1)
        self.g = g
        self._namespace()
        self.content = {}   # fid -> [(rec, pieces or None for whole)]
        self.versions = {}
        for fid in sorted(set(self.names.values())):   # seeded: in order
            self.content[fid] = self._data(log.files[fid])

    def _chosen_tail(self, tail):
        if self.keep == "all":
            return tail
        if self.keep == "none" or not tail:
            return []
        return tail[:self.rng.randint(0, len(tail))]

    def _namespace(self):
        log, cut = self.log, self.cut
        per_dir = collections.defaultdict(list)
        for r in log.ns:
            if r.idx >= cut:
                break
            per_dir[r.dir].append(r)
        chosen = set()
        for d in sorted(per_dir):
            ops = per_dir[d]
            cover = max([s for i, s in log.dir_syncs.get(d, []) if i < cut] +
                        [self.g])
            n = 0
            while n < len(ops) and ops[n].end <= cover:
                n += 1
            chosen.update(r.idx for r in ops[:n])
            chosen.update(r.idx for r in self._chosen_tail(ops[n:]))
        names = dict(log.base_names)
        dirs = set(log.base_dirs)
        for r in log.ns:
            if r.idx >= cut:
                break
            if r.idx not in chosen:
                continue
            if r.op == "C":
                names[r.path] = r.fid
            elif r.op in "RL" and r.isdir:
                Log._move_dir(names, dirs, r.path, r.path2)
            elif r.op in "RL":
                if "x" in r.flags:
                    a, b = names.get(r.path), names.get(r.path2)
                    for p, v in ((r.path, b), (r.path2, a)):
                        if v is None:
                            names.pop(p, None)
                        else:
                            names[p] = v
                    continue
                # A rename moves the inode from wherever this state has it
                # (an earlier rename of it may not have survived), unless it
                # has hard links of its own.
                if r.op == "R":
                    names.pop(r.path, None)
                    if r.fid not in log.linked:
                        for p in [p for p, v in names.items() if v == r.fid]:
                            names.pop(p)
                names[r.path2] = r.fid
            elif r.op == "U":
                names.pop(r.path, None)
            elif r.op == "M":
                dirs.add(r.path)
            elif r.op == "X":
                dirs.discard(r.path)
        # An entry whose directory did not survive did not either.
        self.dirs = {d for d in dirs if self._has_parents(d, dirs)}
        self.names = {p: f for p, f in names.items()
                      if parent(p) in self.dirs}

    @staticmethod
    def _has_parents(d, dirs):
        while d != ".":
            d = parent(d)
            if d not in dirs:
                return False
        return True

    def _data(self, f):
        cut = self.cut
        cover = max([s for i, s in f.syncs if i < cut] + [self.g])
        out = []
        for r in f.ops:
            if r.idx >= cut:
                break
            if r.end <= cover or "d" in r.flags or self.keep == "all":
                out.append((r, None))
            elif self.keep == "random":
                out.append((r, self._pieces(r)))
        return out

    def _pieces(self, r):
        """The grain-aligned pieces of a lost-or-not change that survive.
        A punched hole is freed by whole file system blocks: its pieces
        are 4 KiB (a torn punch leaves no block half zeroed)."""
        if r.op in "TA":
            return None if self.rng.random() < 0.5 else []
        g = max(self.grain, PUNCH_GRAIN) if "p" in r.flags else self.grain
        lo, hi = r.off, r.off + r.len
        pieces = []
        at = lo
        while at < hi:
            nxt = min(hi, (at // g + 1) * g)
            if self.rng.random() < 0.5:
                if pieces and pieces[-1][1] == at:
                    pieces[-1] = (pieces[-1][0], nxt)
                else:
                    pieces.append((at, nxt))
            at = nxt
        return pieces

    def version(self, fid):
        """What this state's copy of a file is made of: equal versions are
        equal bytes."""
        v = self.versions.get(fid)
        if v is None:
            v = self.versions[fid] = tuple(
                (r.idx, None if p is None else tuple(p))
                for r, p in self.content[fid])
        return v

    # ---- writing it out ---------------------------------------------------
    def write(self, out, only=None, force=False, cache=None):
        if os.path.lexists(out):
            if not force:
                raise Error("%s exists (--force replaces it)" % out)
            shutil.rmtree(out)
        os.makedirs(out, mode=0o700)
        for d in sorted(self.dirs):
            if d != ".":
                os.makedirs(os.path.join(out, d), mode=0o700, exist_ok=True)
        done = {}
        for rel in sorted(self.names):
            if only is not None and rel not in only:
                continue
            fid = self.names[rel]
            dst = os.path.join(out, rel)
            if fid in done:
                os.link(done[fid], dst)
                continue
            if cache is not None and cache.share(rel):
                os.link(cache.get(self, fid), dst)
            else:
                self._write_file(self.log.files[fid], dst)
            done[fid] = dst

    def _write_file(self, f, dst):
        fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if f.base is not None:
                copy_sparse(os.path.join(self.log.base, f.base), fd)
            self._apply(fd, self.content[f.fid])
        finally:
            os.close(fd)

    def _apply(self, fd, content):
        buf = self.log.buf
        for r, pieces in content:
            size = os.fstat(fd).st_size
            if r.op == "T":
                if pieces is None:
                    os.ftruncate(fd, r.off)
                continue
            if r.op == "A":
                if pieces is None and "k" not in r.flags and \
                        r.off + r.len > size:
                    os.ftruncate(fd, r.off + r.len)
                continue
            for a, b in [(r.off, r.off + r.len)] if pieces is None \
                    else pieces:
                if r.op == "W":
                    at = r.data_at + (a - r.off)
                    os.pwrite(fd, buf[at:at + (b - a)], a)
                elif "p" in r.flags:    # Z: a hole punched
                    punch_hole(fd, a, min(b, size))
                else:           # Z: zeros written (FALLOC_FL_ZERO_RANGE)
                    if "k" in r.flags:
                        b = min(b, size)
                    write_zeros(fd, a, b)


class Cache:
    """Large files (volume images) shared by hard links between states
    written one after the other in increasing cut order, each built from
    the last one by applying only what was added: a main copy per file for
    cuts that keep none or all, extended in place, and a copy of it for a
    cut that keeps a random part.  Whoever reads the states must not change
    these files, and a state is valid only until the next one is written.
    share(rel) says which files."""

    def __init__(self, path, share):
        self.path, self.share = path, share
        self.have = {}      # (fid, "main" or "derived") -> version
        os.makedirs(path, exist_ok=True)

    def get(self, state, fid):
        key = state.version(fid)
        main = os.path.join(self.path, "file-%d" % fid)
        for kind, path in (("main", main), ("derived", main + ".derived")):
            if self.have.get((fid, kind)) == key:
                return path
        old = self.have.get((fid, "main"))
        grows = old is not None and key[:len(old)] == old
        if state.keep == "random" and grows:
            path = main + ".derived"
            self._start(path, main)
            self._extend(state, fid, path, len(old))
            self.have[(fid, "derived")] = key
            return path
        if not grows:
            self._start(main, None)
            old = ()
            if state.log.files[fid].base is not None:
                copy_into(os.path.join(state.log.base,
                                       state.log.files[fid].base), main)
        self._extend(state, fid, main, len(old))
        self.have[(fid, "main")] = key
        return main

    @staticmethod
    def _start(path, src):
        if os.path.exists(path):
            os.unlink(path)
        if src is None:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o600))
        else:
            copy_into(src, path)

    @staticmethod
    def _extend(state, fid, path, done):
        fd = os.open(path, os.O_RDWR)
        try:
            state._apply(fd, state.content[fid][done:])
        finally:
            os.close(fd)


def copy_into(src, dst):
    fd = os.open(dst, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        copy_sparse(src, fd)
    finally:
        os.close(fd)


# A torn punch's pieces: a file system block.
PUNCH_GRAIN = 4096
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long,
                            ctypes.c_long]
FALLOC_PUNCH = 0x1 | 0x2        # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE


def punch_hole(fd, a, b):
    """A hole, as the recorded process made it: SEEK_DATA skips it (the
    layer store reads what a file holds from that), and it reads zeros."""
    if b > a and _libc.fallocate(fd, FALLOC_PUNCH, a, b - a) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "fallocate(PUNCH_HOLE): %s" % os.strerror(e))


def extents(path):
    """The data extents of a file, [(start, end)]: what SEEK_DATA and
    SEEK_HOLE say it holds."""
    out = []
    with open(path, "rb") as f:
        fd, at = f.fileno(), 0
        size = os.fstat(fd).st_size
        while at < size:
            try:
                at = os.lseek(fd, at, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                raise
            end = os.lseek(fd, at, os.SEEK_HOLE)
            out.append((at, end))
            at = end
    return out


def write_zeros(fd, a, b):
    z = bytes(min(b - a, 1 << 20)) if b > a else b""
    while a < b:
        n = min(b - a, len(z))
        os.pwrite(fd, z[:n], a)
        a += n


def copy_sparse(src, fd):
    """src's data extents into fd, holes left as holes."""
    with open(src, "rb") as f:
        s = f.fileno()
        size = os.fstat(s).st_size
        os.ftruncate(fd, size)
        at = 0
        while at < size:
            try:
                at = os.lseek(s, at, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(s, at, os.SEEK_HOLE)
            while at < end:
                n = os.copy_file_range(s, fd, end - at, at, at)
                if n <= 0:
                    raise Error("%s: copy stopped at %d" % (src, at))
                at += n


def parse_keep(text):
    if text in ("none", "all"):
        return text, 0
    if text.startswith("random:") and text[7:].isdigit():
        return "random", int(text[7:])
    raise argparse.ArgumentTypeError("%r: none, all or random:SEED" % text)


def parse_cut(log, text):
    try:
        return log.cut_at(int(text[1:])) if text.startswith("@") \
            else int(text)
    except ValueError:
        raise Error("--cut %r: a record count, or @BYTES" % text)


def cmd_info(a):
    log = Log(a.log, resolve=False)
    kinds = collections.Counter(r.op for r in log.recs)
    files = collections.Counter()
    for r in log.recs:
        if r.op in DATA_OPS + SYNC_OPS + NS_OPS:
            files[(r.op, r.path)] += 1
    print("%d records, %d bytes: %s" % (len(log.recs), len(log.buf), ", ".join(
        "%s %d" % kv for kv in sorted(kinds.items()))))
    for (op, path), n in sorted(files.items()):
        print("  %s %-40s %d" % (op, path, n))


def cmd_points(a):
    log = Log(a.log, resolve=False)
    pts = []
    for r in log.recs:
        if r.op in SYNC_OPS:
            pts.append({"cut": r.idx + 1, "op": r.op, "path": r.path,
                        "start": r.start, "length": r.end})
    if a.json:
        json.dump(pts, sys.stdout)
        print()
    else:
        for p in pts:
            print("%(cut)d %(op)s %(path)s covers<%(start)d length=%(length)d"
                  % p)


def cmd_cut(a):
    print(Log(a.log, resolve=False).cut_at(a.bytes))


def cmd_replay(a):
    log = Log(a.log, a.base)
    keep, seed = a.keep
    st = log.state(parse_cut(log, a.cut), keep, seed, a.grain)
    st.write(a.out, set(a.only) if a.only else None, a.force)


def holes_matter(rel):
    """Files whose holes are part of what they say: a volume's layers (a
    block a layer does not hold reads through to the layers below, or as
    zeros; a held block of zeros decrypts to noise)."""
    return os.path.basename(rel).startswith("layer-")


def compare_final(log, final, work):
    """The replay of the whole log against the data dir the run left
    (final): every file the same (and where holes_matter, the same holes),
    none missing, none extra (SQLite's -shm aside, which SQLite rebuilds);
    a list of what differs."""
    out = os.path.join(work, "all")
    log.state(len(log.recs), "all").write(out, force=True)
    problems = []
    for top, _, files in os.walk(final):
        for name in files:
            rel = os.path.relpath(os.path.join(top, name), final)
            mine = os.path.join(out, rel)
            if rel.endswith("-shm"):
                continue
            if not os.path.exists(mine):
                problems.append("%s: not in the replay" % rel)
            elif open(mine, "rb").read() != open(os.path.join(top, name),
                                                 "rb").read():
                problems.append("%s: differs in the replay" % rel)
            elif holes_matter(rel) and extents(mine) != \
                    extents(os.path.join(top, name)):
                problems.append("%s: the replay holds other blocks (%s), "
                                "the real file %s" % (
                                    rel, extents(mine)[:4],
                                    extents(os.path.join(top, name))[:4]))
    for top, _, files in os.walk(out):
        for name in files:
            rel = os.path.relpath(os.path.join(top, name), out)
            if not os.path.exists(os.path.join(final, rel)):
                problems.append("%s: in the replay only" % rel)
    shutil.rmtree(out)
    return problems


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("info")
    s.add_argument("log")
    s = sub.add_parser("points")
    s.add_argument("log")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("cut")
    s.add_argument("log")
    s.add_argument("bytes", type=int)
    s = sub.add_parser("replay")
    s.add_argument("log")
    s.add_argument("--base")
    s.add_argument("--out", required=True)
    s.add_argument("--cut", required=True)
    s.add_argument("--keep", type=parse_keep, default=("none", 0))
    s.add_argument("--grain", type=int, default=512)
    s.add_argument("--only", action="append")
    s.add_argument("--force", action="store_true")
    a = p.parse_args()
    try:
        {"info": cmd_info, "points": cmd_points, "cut": cmd_cut,
         "replay": cmd_replay}[a.cmd](a)
    except (Error, OSError) as e:
        print("powercut: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
