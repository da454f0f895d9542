#!/usr/bin/python3
"""Snapshots taken under a live NBD writer, and the check that each holds
exactly the writes acknowledged before it (tests/snapshot-live.sh).

Every 4 KiB block written is one 32-byte record repeated 128 times:

    b"CVSNAP01" | block number | run | sequence      (u64 LE each)

so a block says which write it came from, and a torn or foreign one is
seen.  Block b belongs to thread b % T, which writes its blocks one at a
time (synchronous pwrite) in a shuffled order: the writes to one block are
ordered by their sequence numbers, and each write's submission and reply
times (CLOCK_MONOTONIC) are logged.

  snap-writer.py run SOCK VOL --log FILE --cli CRYPTVOL --run R
        [--first-block A] [--blocks N] [--threads T] [--flush-every K]
        [--snapshots S1,S2,...] [--gap-ms LO:HI]
        [--kill PID --kill-after-ms LO:HI]
      Writes blocks A..A+N-1 of VOL; meanwhile runs `CRYPTVOL snapshot
      create VOL@S` for each S in turn, LO..HI ms apart, logging when each
      began and returned.  With --kill, the last snapshot create is
      started and the daemon (PID) is killed with SIGKILL LO..HI ms later,
      while the writers are still writing; the writers stop when their
      connections fail.  Every K-th write of a thread is followed by a
      FLUSH: the writes answered before it are then durable.  The log (JSON)
      holds every write, which were flushed, and the snapshots.
  snap-writer.py check SOCK VOL --log FILE --cli CRYPTVOL [--head acked|flushed]
      Lists VOL's snapshots with the CLI.  A snapshot the log says was
      made (its create returned 0) must be listed; one whose create was
      cut by the kill may be listed or not.  Each listed one of the log is
      read over NBD as VOL@S, and in each of its blocks must be:
        - a write to that block whose reply came before the create began,
          or a later one: never an older one (nor zeros if one was
          answered);
        - a write submitted before the create returned (before the kill if
          it was cut): never a newer one.
      The volume itself must hold in each block the last write answered
      (--head acked: a clean stop) or at least the last flushed one (--head
      flushed: after kill -9), or a newer write.
Exit 0, or 1 listing the blocks that are wrong (at most 20 lines per view).
"""

import argparse
import json
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time

import nbd

BLOCK = 4096
MAGIC = b"CVSNAP01"
REC = struct.Struct("<8sQQQ")


def now():
    return time.monotonic_ns()


def block_data(blk, run, seq):
    return REC.pack(MAGIC, blk, run, seq) * (BLOCK // REC.size)


def connect(sock, export):
    h = nbd.NBD()
    h.set_export_name(export)
    h.connect_unix(sock)
    return h


def ms_range(text):
    lo, _, hi = text.partition(":")
    return float(lo), float(hi or lo)


class Writer(threading.Thread):
    def __init__(self, args, tid, seq, stop):
        super().__init__(daemon=True)
        self.args, self.tid, self.seq, self.stop = args, tid, seq, stop
        self.writes = []        # [blk, seq, t_sub, t_ack or None]
        self.flushed = {}       # blk -> seq durable
        self.error = None
        a = args
        self.blocks = [b for b in range(a.first_block, a.first_block + a.blocks)
                       if b % a.threads == tid]
        self.h = connect(a.sock, a.vol)

    def run(self):
        a, pending, n = self.args, [], 0
        try:
            while not self.stop.is_set():
                order = self.blocks[:]
                random.shuffle(order)
                for blk in order:
                    if self.stop.is_set():
                        break
                    s = next(self.seq)
                    w = [blk, s, now(), None]
                    self.writes.append(w)
                    self.h.pwrite(block_data(blk, a.run, s), blk * BLOCK)
                    w[3] = now()
                    pending.append(w)
                    n += 1
                    if n % a.flush_every == 0:
                        self.h.flush()
                        for p in pending:
                            self.flushed[p[0]] = p[1]
                        pending = []
            self.h.flush()
            for p in pending:
                self.flushed[p[0]] = p[1]
            self.h.shutdown()
        except nbd.Error as e:
            self.error = e.string


class Counter:
    def __init__(self):
        self.n, self.lock = 0, threading.Lock()

    def __next__(self):
        with self.lock:
            self.n += 1
            return self.n


def snapshot_create(a, name, kill):
    cmd = [a.cli, "snapshot", "create", "%s@%s" % (a.vol, name)]
    rec = {"name": name, "began": now()}
    if kill:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(random.uniform(*a.kill_after_ms) / 1000)
        os.kill(a.kill, signal.SIGKILL)
        rec["killed"] = now()
        rec["rc"] = p.wait()
        rec["returned"] = None
        # A create that returned before the kill counts as made.
        return rec
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rec["returned"] = now()
    rec["rc"] = p.returncode
    rec["stderr"] = p.stderr.decode(errors="replace").strip()
    return rec


def cmd_run(a):
    a.gap_ms = ms_range(a.gap_ms)
    if a.kill_after_ms:
        a.kill_after_ms = ms_range(a.kill_after_ms)
    names = [s for s in (a.snapshots or "").split(",") if s]
    stop, seq = threading.Event(), Counter()
    writers = [Writer(a, t, seq, stop) for t in range(a.threads)]
    for w in writers:
        w.start()
    snaps = []
    for i, name in enumerate(names):
        time.sleep(random.uniform(*a.gap_ms) / 1000)
        kill = a.kill is not None and i == len(names) - 1
        rec = snapshot_create(a, name, kill)
        snaps.append(rec)
        if not kill and rec["rc"] != 0:
            stop.set()
            print("snap-writer: snapshot create %s@%s exited %d: %s"
                  % (a.vol, name, rec["rc"], rec["stderr"]), file=sys.stderr)
            break
    if a.kill is None:
        time.sleep(random.uniform(*a.gap_ms) / 1000)
        stop.set()
    for w in writers:
        w.join()
    log = {"first": a.first_block, "blocks": a.blocks, "run": a.run,
           "snapshots": snaps, "writes": [], "flushed": {}}
    for w in writers:
        log["writes"] += w.writes
        log["flushed"].update({str(k): v for k, v in w.flushed.items()})
    with open(a.log, "w") as f:
        json.dump(log, f)
    bad = [w.error for w in writers if w.error]
    nw = sum(1 for w in log["writes"] if w[3] is not None)
    print("snap-writer: %d writes answered, %d snapshots, %d flushed blocks%s"
          % (nw, len(snaps), len(log["flushed"]),
             ", writers stopped by the kill" if a.kill is not None else ""))
    if a.kill is None and bad:
        print("snap-writer: a writer failed: %s" % bad[0], file=sys.stderr)
        return 1
    if a.kill is not None and not bad:
        print("snap-writer: the writers outlived the kill", file=sys.stderr)
        return 1
    return 1 if any(s["rc"] != 0 for s in snaps if "killed" not in s) else 0


def listed_snapshots(a):
    out = subprocess.run([a.cli, "snapshot", "list", a.vol, "--json"],
                         check=True, stdout=subprocess.PIPE).stdout
    d = json.loads(out)
    if isinstance(d, dict):
        d = d["snapshots"]
    return [s["name"] if isinstance(s, dict) else s for s in d]


def parse_block(data, blk, run):
    """('zero',), ('write', seq) or ('bad', why)"""
    if data == bytes(BLOCK):
        return ("zero",)
    rec = data[:REC.size]
    if rec * (BLOCK // REC.size) != data:
        return ("bad", "a torn or foreign 4 KiB block")
    magic, b, r, s = REC.unpack(rec)
    if magic != MAGIC or b != blk or r != run:
        return ("bad", "a record of block %d run %d" % (b, r))
    return ("write", s)


def read_view(a, export, log):
    h = connect(a.sock, export)
    first, n = log["first"], log["blocks"]
    data = b"".join(h.pread(min(256, n - i) * BLOCK, (first + i) * BLOCK)
                    for i in range(0, n, 256))
    h.shutdown()
    return data


def by_block(log):
    ws = {}
    for blk, s, t_sub, t_ack in log["writes"]:
        ws.setdefault(blk, []).append((s, t_sub, t_ack))
    for v in ws.values():
        v.sort()
    return ws


def judge(what, data, log, allowed):
    """allowed(blk) -> (floor seq or None, set of allowed seqs, why)."""
    bad = []
    for i in range(log["blocks"]):
        blk = log["first"] + i
        got = parse_block(data[i * BLOCK:(i + 1) * BLOCK], blk, log["run"])
        floor, ok_seqs, why = allowed(blk)
        if got[0] == "bad":
            bad.append("%s block %d: %s" % (what, blk, got[1]))
        elif got[0] == "zero":
            if floor is not None:
                bad.append("%s block %d: zeros, but write %d was %s"
                           % (what, blk, floor, why))
        elif got[1] not in ok_seqs:
            bad.append("%s block %d: write %d, allowed %s (%s)"
                       % (what, blk, got[1], describe(ok_seqs), why))
    for b in bad[:20]:
        print("snap-writer: " + b, file=sys.stderr)
    if len(bad) > 20:
        print("snap-writer: ... %d more" % (len(bad) - 20), file=sys.stderr)
    return not bad


def describe(seqs):
    s = sorted(seqs)
    if not s:
        return "none"
    return "%d..%d (%d writes)" % (s[0], s[-1], len(s)) if len(s) > 3 else str(s)


def snapshot_rule(ws, rec):
    t0 = rec["began"]
    t1 = rec["returned"] or rec["killed"]

    def allowed(blk):
        floor, ok = None, set()
        for s, t_sub, t_ack in ws.get(blk, []):
            if t_ack is not None and t_ack < t0:
                floor, ok = s, {s}
            elif t_sub < t1:
                ok.add(s)
        return floor, ok, "answered before the create began"
    return allowed


def head_rule(ws, log, mode):
    flushed = {int(k): v for k, v in log["flushed"].items()}

    def allowed(blk):
        w = ws.get(blk, [])
        if mode == "acked":
            acked = [s for s, _, t_ack in w if t_ack is not None]
            floor = acked[-1] if acked else None
            why = "the last one answered"
        else:
            floor = flushed.get(blk)
            why = "flushed"
        ok = {s for s, _, _ in w if floor is None or s >= floor}
        return floor, ok, why
    return allowed


def cmd_check(a):
    log = json.load(open(a.log))
    ws = by_block(log)
    listed = set(listed_snapshots(a))
    good = True
    for rec in log["snapshots"]:
        name = rec["name"]
        made = rec["rc"] == 0       # returned 0, before any kill
        if name not in listed:
            if made:
                print("snap-writer: snapshot %s was made but is not listed"
                      % name, file=sys.stderr)
                good = False
            continue
        export = "%s@%s" % (a.vol, name)
        ok = judge(export, read_view(a, export, log), log,
                   snapshot_rule(ws, rec))
        good &= ok
        if ok:
            print("snap-writer: %s holds exactly the writes answered before "
                  "it (blocks %d..%d)%s" % (export, log["first"],
                                            log["first"] + log["blocks"] - 1,
                                            ", made while it was killed"
                                            if "killed" in rec else ""))
    ok = judge(a.vol, read_view(a, a.vol, log), log, head_rule(ws, log, a.head))
    if ok:
        print("snap-writer: %s holds every %s write (blocks %d..%d)"
              % (a.vol, "answered" if a.head == "acked" else "flushed",
                 log["first"], log["first"] + log["blocks"] - 1))
    return 0 if good and ok else 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("run", "check"):
        s = sub.add_parser(name)
        s.add_argument("sock")
        s.add_argument("vol")
        s.add_argument("--log", required=True)
        s.add_argument("--cli", required=True)
    r = sub.choices["run"]
    r.add_argument("--run", type=int, required=True)
    r.add_argument("--first-block", type=int, default=0)
    r.add_argument("--blocks", type=int, default=1024)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--flush-every", type=int, default=16)
    r.add_argument("--snapshots")
    r.add_argument("--gap-ms", default="30:120")
    r.add_argument("--kill", type=int)
    r.add_argument("--kill-after-ms")
    sub.choices["check"].add_argument("--head", choices=("acked", "flushed"),
                                      default="acked")
    a = p.parse_args()
    return cmd_run(a) if a.cmd == "run" else cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
