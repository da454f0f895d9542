#!/usr/bin/python3
"""NBD writes whose acknowledgements are tied to a powercut-shim log, and
the checks that every acknowledged-durable write is in every power-cut
state of that log (tests/powercut-data.sh, docs/testing.md).

The volume is cut into 16 KiB slots; each slot is written once, whole or
only its first 4 KiB block, with FUA or without, from one of several
connections, and some writes are followed by a FLUSH.  Every 4 KiB block
written is its own record repeated:

    b"PCUTBLK1" | slot | block | op   (u64 LE each)

so a block read back says which write it came from, and no two blocks
written hold the same plaintext (so, XTS being deterministic per sector,
nor the same ciphertext).

  powercut-nbd.py write SOCKET EXPORT --log REC --acks FILE [--slots N]
                  [--conns C] [--seed S]
      The writes.  After each reply the length of REC (the shim's log) is
      taken: whatever the reply depended on was recorded below it.  FILE
      gets one JSON line per acknowledged write or FLUSH:
        {"op": N, "slot": S, "blocks": [...], "fua": bool, "ack": LEN}
        {"flush": N, "ack": LEN, "covers": [op numbers]}
      a FLUSH covering the writes acknowledged (on any connection, the
      server offering multi-conn) before it was sent.
  powercut-nbd.py check --log REC --base DIR --acks FILE --final DIR
                  --image REL [--header REL] --data-offset N --work DIR
                  [--seed S]
                  [--max-cuts N] [--plain PASSFILE --cryptvol BIN]
                  [--save LEN_FILE:OUTDIR]...
      Replays REC at many cuts (every sync point and every
      acknowledgement's earliest cut, bounded, plus seeded random ones;
      keep none, all and random subsets) and checks that each block a
      FUA write, or a write a completed FLUSH covered, put there is there
      if that acknowledgement precedes the cut, comparing its ciphertext
      with the final image's; with --plain, also decrypts a few cut
      states with `cryptvol image export`.  REL is the volume's layer
      (image-shaped: volume raw byte X is its byte X, docs/store.md) and
      --header its chain's header file, which the decrypted states put
      over the layer's front to make the raw image.  The replay of the whole log is
      first compared with --final, the real data dir.  --save writes the
      whole state of one chosen cut into OUTDIR and the log length of the
      cut into LEN_FILE (for the daemon to start on).  Exit 1 naming every
      missing write.
  powercut-nbd.py verify SOCKET EXPORT --acks FILE --length LEN
      Reads back over NBD, in plaintext, every block durable at log
      length LEN.
"""

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import powercut  # noqa: E402

BLOCK = 4096
SLOT = 4 * BLOCK
REC = struct.Struct("<8sQQQ")
MAGIC = b"PCUTBLK1"


def block_data(slot, blk, op):
    return REC.pack(MAGIC, slot, blk, op) * (BLOCK // REC.size)


def describe(data):
    if data == bytes(len(data)):
        return "zeros"
    m, slot, blk, op = REC.unpack(data[:REC.size])
    if m == MAGIC:
        return "slot %d block %d of op %d" % (slot, blk, op)
    return "other bytes (%s...)" % data[:16].hex()


# ---- write -------------------------------------------------------------------
class Writer:
    def __init__(self, a):
        import nbd
        self.nbd, self.a = nbd, a
        self.lock = threading.Lock()
        self.acked = []         # op numbers acknowledged so far
        self.out = open(a.acks, "w")
        self.errors = []
        rng = random.Random(a.seed)
        slots = list(range(a.slots))
        rng.shuffle(slots)
        # (op, slot, whole, fua, flush after): a quarter with FUA, a sixth
        # followed by a FLUSH, the rest neither.
        self.ops = [(i, s, rng.random() < 0.5, rng.random() < 0.25,
                     rng.random() < 1 / 6) for i, s in enumerate(slots)]
        self.next = 0

    def ack_length(self):
        return os.stat(self.a.log).st_size

    def emit(self, rec):
        with self.lock:
            self.out.write(json.dumps(rec) + "\n")
            self.out.flush()

    def take(self):
        with self.lock:
            if self.next >= len(self.ops):
                return None
            self.next += 1
            return self.ops[self.next - 1]

    def run(self, h):
        nbd = self.nbd
        multi = h.can_multi_conn()
        mine = []
        try:
            while True:
                o = self.take()
                if o is None:
                    break
                op, slot, whole, fua, flush = o
                blocks = [slot * 4 + b for b in range(4 if whole else 1)]
                data = b"".join(block_data(slot, b, op) for b in blocks)
                h.pwrite(data, blocks[0] * BLOCK,
                         nbd.CMD_FLAG_FUA if fua else 0)
                ack = self.ack_length()
                with self.lock:
                    self.acked.append(op)
                mine.append(op)
                self.emit({"op": op, "slot": slot, "blocks": blocks,
                           "fua": fua, "ack": ack})
                if flush:
                    with self.lock:
                        covers = list(self.acked if multi else mine)
                    h.flush()
                    self.emit({"flush": op, "ack": self.ack_length(),
                               "covers": covers})
            h.shutdown()
        except nbd.Error as e:
            self.errors.append(str(e))


def cmd_write(a):
    import nbd
    w = Writer(a)
    handles = []
    for _ in range(a.conns):
        h = nbd.NBD()
        h.set_export_name(a.export)
        h.connect_unix(a.socket)
        if not h.can_fua() or not h.can_flush():
            print("powercut-nbd: the server offers no FUA or no FLUSH",
                  file=sys.stderr)
            return 1
        if h.get_size() < a.slots * SLOT:
            print("powercut-nbd: export too small for %d slots" % a.slots,
                  file=sys.stderr)
            return 1
        handles.append(h)
    threads = [threading.Thread(target=w.run, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if w.errors:
        print("powercut-nbd: %s" % w.errors[0], file=sys.stderr)
        return 1
    fua = sum(1 for o in w.ops if o[3])
    flushes = sum(1 for o in w.ops if o[4])
    print("powercut-nbd: %d writes (%d FUA), %d FLUSHes on %d connections"
          % (len(w.ops), fua, flushes, a.conns), file=sys.stderr)
    return 0


# ---- what must be where ---------------------------------------------------
class Acks:
    def __init__(self, path):
        self.writes, self.flushes = {}, []
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if "flush" in r:
                    self.flushes.append(r)
                else:
                    self.writes[r["op"]] = r

    def durable(self, length):
        """op -> why, for every write durable once the log was `length`
        long: FUA acknowledged, or covered by an acknowledged FLUSH."""
        out = {}
        for op, w in self.writes.items():
            if w["fua"] and w["ack"] <= length:
                out[op] = "written with FUA, acknowledged at log length %d" \
                    % w["ack"]
        for f in self.flushes:
            if f["ack"] <= length:
                for op in f["covers"]:
                    out.setdefault(op, "acknowledged before a FLUSH "
                                   "acknowledged at log length %d" % f["ack"])
        return out

    def acked(self, length):
        return [op for op, w in self.writes.items() if w["ack"] <= length]


# ---- check -------------------------------------------------------------------
def read_blocks(path, offset, blocks):
    out = {}
    with open(path, "rb") as f:
        for b in blocks:
            f.seek(offset + b * BLOCK)
            out[b] = f.read(BLOCK).ljust(BLOCK, b"\0")
    return out


def choose_cuts(log, acks, rng, most):
    """(cut, keep, seed): every sync point and every acknowledgement's
    earliest cut (keep none: the harshest), evenly thinned to `most`, then
    random cuts and random subsets."""
    det = sorted(set(log.points()) |
                 {log.cut_at(w["ack"]) for w in acks.writes.values()} |
                 {log.cut_at(f["ack"]) for f in acks.flushes})
    if len(det) > most:
        det = [det[i * len(det) // most] for i in range(most)]
    cuts = [(k, "none", 0) for k in det]
    n = len(log.recs)
    for i in range(most // 4):
        cuts.append((rng.randrange(n + 1), "none", 0))
        cuts.append((rng.randrange(n + 1), "random", rng.randrange(1 << 30)))
        cuts.append((rng.choice(det), "random", rng.randrange(1 << 30)))
    cuts.append((n, "all", 0))
    return cuts


def check_cut(log, acks, image, offset, final_blocks, cut, keep, seed, work):
    length = log.length_at(cut)
    need = acks.durable(length)
    st = log.state(cut, keep, seed)
    out = os.path.join(work, "cut")
    st.write(out, only={image}, force=True)
    path = os.path.join(out, image)
    if not os.path.exists(path):
        return need, {op: ("write %d (%s)" % (op, why), "cut %d (log length "
                           "%d, keep %s): no %s at all" % (cut, length, keep,
                                                          image))
                      for op, why in need.items()}, 0
    blocks = [b for op in need for b in acks.writes[op]["blocks"]]
    got = read_blocks(path, offset, blocks)
    problems, lost = {}, 0
    for op, why in sorted(need.items()):
        w = acks.writes[op]
        bad = [b for b in w["blocks"] if got[b] != final_blocks[b]]
        if bad:
            problems[op] = (
                "write %d (slot %d, block%s %s, %s)" %
                (op, w["slot"], "s" if len(w["blocks"]) > 1 else "",
                 "..".join(str(b) for b in w["blocks"][::3]), why),
                "cut %d (log length %d, keep %s%s): %s" %
                (cut, length, keep, ":%d" % seed if keep == "random" else "",
                 "zeros" if got[bad[0]] == bytes(BLOCK) else
                 "other ciphertext"))
    # Acknowledged but not (yet) durable writes this state lost: proof
    # that the harness does drop what no sync covered.
    others = [op for op in acks.acked(length) if op not in need]
    if others:
        ob = [acks.writes[op]["blocks"][0] for op in others]
        g = read_blocks(path, offset, ob)
        lost = sum(1 for b in ob if g[b] != final_blocks[b])
    return need, problems, lost


def decrypt_check(a, acks, log, cut, keep, seed, offset):
    """The plaintext of a cut state, by cryptvol's offline reader."""
    out = os.path.join(a.work, "plain")
    st = log.state(cut, keep, seed)
    st.write(out, only={a.image} | ({a.header} if a.header else set()),
             force=True)
    img = os.path.join(out, a.image)
    if a.header:
        # The raw image the chain stands for: the header over the layer's
        # hole at the front.
        with open(os.path.join(out, a.header), "rb") as h, \
                open(img, "r+b") as f:
            f.write(h.read())
    raw = os.path.join(a.work, "plain.raw")
    if os.path.exists(raw):
        os.unlink(raw)
    p = subprocess.run([a.cryptvol, "image", "export", img, raw,
                        "--passphrase-file", a.plain], capture_output=True,
                       text=True)
    if p.returncode != 0:
        return ["cut %d: cryptvol image export: %s" % (cut, p.stderr.strip())], 0
    problems = []
    need = acks.durable(log.length_at(cut))
    with open(raw, "rb") as f:
        for op in sorted(need):
            w = acks.writes[op]
            for b in w["blocks"]:
                f.seek(b * BLOCK)
                data = f.read(BLOCK)
                if data != block_data(w["slot"], b, op):
                    problems.append("cut %d (keep %s), decrypted: write %d "
                                    "(block %d, %s) reads as %s" %
                                    (cut, keep, op, b, need[op],
                                     describe(data)))
                    break
    os.unlink(raw)
    return problems, len(need)


def cmd_check(a):
    log = powercut.Log(a.log, a.base)
    acks = Acks(a.acks)
    rng = random.Random(a.seed)
    os.makedirs(a.work, exist_ok=True)
    problems = powercut.compare_final(log, a.final, a.work)
    if problems:
        print("powercut-nbd: the replay of the whole log is not the real "
              "data dir:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    all_blocks = sorted(b for w in acks.writes.values() for b in w["blocks"])
    final_blocks = read_blocks(os.path.join(a.final, a.image), a.data_offset,
                               all_blocks)
    cuts = choose_cuts(log, acks, rng, a.max_cuts)
    missing, checked, lossy, lost_total = {}, 0, 0, 0
    for cut, keep, seed in cuts:
        need, p, lost = check_cut(log, acks, a.image, a.data_offset,
                                  final_blocks, cut, keep, seed, a.work)
        for op, (what, where) in p.items():
            missing.setdefault(op, [what, where, 0])[2] += 1
        checked += len(need)
        lossy += 1 if lost else 0
        lost_total += lost
    problems = ["%s: missing at %d of %d cuts, first at %s" % (what, n,
                len(cuts), where) for what, where, n in
                (missing[op] for op in sorted(missing))]
    print("powercut-nbd: %d records; %d cuts, %d durable writes checked in "
          "them; %d cuts lost %d acknowledged writes no sync covered yet"
          % (len(log.recs), len(cuts), checked, lossy, lost_total),
          file=sys.stderr)
    if a.plain:
        n = len(log.recs)
        for cut, keep, seed in [(n // 3, "none", 0),
                                (2 * n // 3, "random", a.seed), (n, "all", 0)]:
            p, nneed = decrypt_check(a, acks, log, cut, keep, seed,
                                     a.data_offset)
            problems += p
            print("powercut-nbd: cut %d (keep %s) decrypted by cryptvol: %d "
                  "durable writes checked" % (cut, keep, nneed),
                  file=sys.stderr)
    for spec in a.save or []:
        lenfile, outdir = spec.split(":", 1)
        cut = rng.randrange(len(log.recs) // 4, len(log.recs) + 1)
        log.state(cut, "random", rng.randrange(1 << 30)).write(outdir,
                                                               force=True)
        with open(lenfile, "w") as f:
            f.write("%d\n" % log.length_at(cut))
    if problems:
        print("powercut-nbd: durable writes missing after power cuts:\n  %s"
              % "\n  ".join(problems[:25] + (["(and %d more)" % (
                  len(problems) - 25)] if len(problems) > 25 else [])),
              file=sys.stderr)
        return 1
    if not checked:
        print("powercut-nbd: no cut had a durable write to check",
              file=sys.stderr)
        return 1
    if not lossy:
        print("powercut-nbd: no cut lost any acknowledged, not yet durable "
              "write: the replay does not model a power cut",
              file=sys.stderr)
        return 1
    return 0


# ---- verify ------------------------------------------------------------------
def cmd_verify(a):
    import nbd
    acks = Acks(a.acks)
    need = acks.durable(a.length)
    h = nbd.NBD()
    h.set_export_name(a.export)
    h.connect_unix(a.socket)
    problems = []
    for op in sorted(need):
        w = acks.writes[op]
        data = h.pread(len(w["blocks"]) * BLOCK, w["blocks"][0] * BLOCK)
        for i, b in enumerate(w["blocks"]):
            got = data[i * BLOCK:(i + 1) * BLOCK]
            if got != block_data(w["slot"], b, op):
                problems.append("write %d (block %d, %s): reads back as %s" %
                                (op, b, need[op], describe(got)))
    h.shutdown()
    if problems:
        print("powercut-nbd: over NBD, at log length %d:\n  %s" %
              (a.length, "\n  ".join(problems[:25])), file=sys.stderr)
        return 1
    print("powercut-nbd: %d durable writes read back over NBD"
          % len(need), file=sys.stderr)
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("write")
    s.add_argument("socket")
    s.add_argument("export")
    s.add_argument("--log", required=True)
    s.add_argument("--acks", required=True)
    s.add_argument("--slots", type=int, default=160)
    s.add_argument("--conns", type=int, default=2)
    s.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("check")
    for o in ("--log", "--acks", "--final", "--image", "--work"):
        s.add_argument(o, required=True)
    s.add_argument("--base")
    s.add_argument("--header")
    s.add_argument("--data-offset", type=int, required=True)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--max-cuts", type=int, default=150)
    s.add_argument("--plain")
    s.add_argument("--cryptvol")
    s.add_argument("--save", action="append")
    s = sub.add_parser("verify")
    s.add_argument("socket")
    s.add_argument("export")
    s.add_argument("--acks", required=True)
    s.add_argument("--length", type=int, required=True)
    a = p.parse_args()
    return {"write": cmd_write, "check": cmd_check,
            "verify": cmd_verify}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
