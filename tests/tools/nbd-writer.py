#!/usr/bin/python3
"""Writes recognizable 64 KiB blocks to an NBD export and logs which of
them the server acknowledged as durable; later checks them.  For crash
tests (kill -9 the server while this runs) and clean-shutdown tests.

Every block is a 32-byte record repeated 2048 times:

    b"CVBLOCK1" | block number | generation | sequence   (u64 LE each)

so any 4096-byte sector of it says which write it came from.  Sequence
numbers grow across all threads of one run; the generation tells runs
apart, so (generation, sequence) orders every write ever made to a block.

Usage:
  nbd-writer.py write URI --log FILE --gen G [--first-block A] [--blocks N]
                [--threads T] [--flush-every K] [--fua-every M]
                [--log-acked] [--max-writes W] [--started FILE] [--depth D]
      T connections (threads), each writing its own stripe of the N blocks
      from block A (block b goes to thread b % T), in a shuffled order that
      revisits every block, until the connection fails or W writes are
      done.  Every M-th write carries FUA and is logged ("BLOCK GEN SEQ")
      when its reply comes; after every K-th write a FLUSH is sent, and the
      writes answered before it are logged when it returns.  With
      --log-acked every write is logged as soon as it is answered (for a
      server that is stopped cleanly, which must flush).  The log is
      fsync'ed after every append.  --started FILE is created once every
      connection is up.  Exit 0 when the server went away (or W writes
      were done), 1 when no connection could be made or the server
      misbehaved (e.g. does not offer FLUSH or FUA).  With --depth D > 1
      each connection keeps up to D writes in flight (libnbd's aio calls),
      and a FLUSH covers only the writes answered before it was sent.
  nbd-writer.py verify URI --log FILE [--first-block A] [--blocks N]
                 [--sector BYTES]
      Reads the blocks back.  In a block the log names, each sector (4096
      bytes unless said: the volume's encryption sector, the unit that is
      never torn) must be whole records of that block whose (generation,
      sequence) is at least the last one the log says was durable.  Blocks
      the log does not name may hold anything.  Exit 0, or 1 listing what
      is wrong.
"""

import argparse
import os
import random
import struct
import sys
import threading

import nbd

BLOCK = 65536
MAGIC = b"CVBLOCK1"
REC = struct.Struct("<8sQQQ")


def block_data(blk, gen, seq):
    return REC.pack(MAGIC, blk, gen, seq) * (BLOCK // REC.size)


def connect(uri):
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    h.connect_uri(uri)
    return h


class Log:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lock = threading.Lock()
        self.lines = 0

    def append(self, recs):
        if not recs:
            return
        data = "".join("%d %d %d\n" % r for r in recs).encode()
        with self.lock:
            os.write(self.fd, data)
            os.fsync(self.fd)
            self.lines += len(recs)


class Writer:
    def __init__(self, args):
        self.a = args
        self.log = Log(args.log)
        self.seq_lock = threading.Lock()
        self.seq = 0
        self.writes = 0
        self.errors = []
        self.bad = []
        self.connected = 0
        self.all_up = threading.Barrier(args.threads)

    def next_seq(self):
        with self.seq_lock:
            if self.a.max_writes and self.writes >= self.a.max_writes:
                return None
            self.seq += 1
            self.writes += 1
            return self.seq

    def run(self, t):
        a = self.a
        try:
            h = connect(a.uri)
        except nbd.Error as e:
            self.bad.append("thread %d: cannot connect: %s" % (t, e))
            self.all_up.abort()
            return
        if not h.can_flush() or not h.can_fua():
            self.bad.append("the server offers %s" %
                            ("no FLUSH" if not h.can_flush() else "no FUA"))
            self.all_up.abort()
            return
        size = h.get_size()
        if (a.first_block + a.blocks) * BLOCK > size:
            self.bad.append("export is %d bytes, too small for %d blocks"
                            % (size, a.first_block + a.blocks))
            self.all_up.abort()
            return
        try:
            self.all_up.wait()
        except threading.BrokenBarrierError:
            return
        if t == 0 and a.started:
            open(a.started, "w").close()
        mine = [b for b in range(a.first_block, a.first_block + a.blocks)
                if b % a.threads == t]
        rng = random.Random(a.gen * 1000 + t)
        if a.depth > 1:
            return self.run_aio(h, mine, rng)
        pending = []
        n = 0
        try:
            while True:
                rng.shuffle(mine)
                for blk in mine:
                    seq = self.next_seq()
                    if seq is None:
                        h.flush()
                        self.log.append(pending)
                        h.shutdown()
                        return
                    n += 1
                    fua = a.fua_every and n % a.fua_every == 0
                    h.pwrite(block_data(blk, a.gen, seq), blk * BLOCK,
                             nbd.CMD_FLAG_FUA if fua else 0)
                    if fua or a.log_acked:
                        self.log.append([(blk, a.gen, seq)])
                    else:
                        pending.append((blk, a.gen, seq))
                    if a.flush_every and n % a.flush_every == 0:
                        h.flush()
                        self.log.append(pending)
                        pending = []
        except nbd.Error as e:
            self.errors.append(str(e))

    def run_aio(self, h, mine, rng):
        """Up to --depth writes in flight on the connection.  A FLUSH makes
        durable the writes whose replies came before it was sent; those
        still in flight then are covered by a later FLUSH."""
        a = self.a
        writes = {}     # cookie -> (record, fua, buffer kept alive)
        flushes = {}    # cookie -> records it makes durable
        answered = []   # answered non-FUA writes no FLUSH covers yet
        order = []
        n = 0
        stop = False
        try:
            while True:
                while not stop and len(writes) < a.depth:
                    if not order:
                        order = mine[:]
                        rng.shuffle(order)
                    # Two writes of one block in flight at once may land in
                    # either order (NBD promises none, and the server runs
                    # requests on several threads): a block is written again
                    # only once its last write is answered.
                    busy = {rec[0] for rec, _, _ in writes.values()}
                    free = [i for i, b in enumerate(order) if b not in busy]
                    if not free:
                        break
                    blk = order.pop(free[-1])
                    seq = self.next_seq()
                    if seq is None:
                        stop = True
                        break
                    n += 1
                    fua = a.fua_every and n % a.fua_every == 0
                    buf = nbd.Buffer.from_bytearray(
                        bytearray(block_data(blk, a.gen, seq)))
                    c = h.aio_pwrite(buf, blk * BLOCK,
                                     flags=nbd.CMD_FLAG_FUA if fua else 0)
                    writes[c] = ((blk, a.gen, seq), fua, buf)
                    if a.flush_every and n % a.flush_every == 0:
                        flushes[h.aio_flush()] = answered
                        answered = []
                if stop and not writes and not flushes:
                    if answered:
                        h.flush()
                        self.log.append(answered)
                    h.shutdown()
                    return
                h.poll(-1)
                for c in list(writes):
                    if h.aio_command_completed(c):
                        rec, fua, _ = writes.pop(c)
                        if fua or a.log_acked:
                            self.log.append([rec])
                        else:
                            answered.append(rec)
                for c in list(flushes):
                    if h.aio_command_completed(c):
                        self.log.append(flushes.pop(c))
        except nbd.Error as e:
            self.errors.append(str(e))


def cmd_write(a):
    w = Writer(a)
    threads = [threading.Thread(target=w.run, args=(t,))
               for t in range(a.threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print("nbd-writer: gen %d: %d writes, %d logged durable%s"
          % (a.gen, w.writes, w.log.lines,
             ", stopped by: " + w.errors[0] if w.errors else ""),
          file=sys.stderr)
    if w.bad:
        print("nbd-writer: " + w.bad[0], file=sys.stderr)
        return 1
    return 0


def cmd_verify(a):
    durable = {}
    with open(a.log) as f:
        for line in f:
            blk, gen, seq = map(int, line.split())
            if durable.get(blk, (0, 0)) < (gen, seq):
                durable[blk] = (gen, seq)
    SECTOR = a.sector
    if SECTOR % REC.size or BLOCK % SECTOR:
        print("nbd-writer: --sector %d does not divide a block into records"
              % SECTOR, file=sys.stderr)
        return 2
    h = connect(a.uri)
    problems = []
    seen = 0
    for blk in range(a.first_block, a.first_block + a.blocks):
        data = h.pread(BLOCK, blk * BLOCK)
        want = durable.get(blk)
        if not want:
            # Never acknowledged: anything goes (a LUKS volume reads
            # sectors never written as whatever zeros decrypt to).
            continue
        for s in range(0, BLOCK, SECTOR):
            sec = data[s:s + SECTOR]
            where = "block %d sector %d" % (blk, s // SECTOR)
            if sec == bytes(SECTOR):
                problems.append("%s: zeros, but (gen %d, seq %d) was "
                                "acknowledged durable" % ((where,) + want))
                continue
            rec = sec[:REC.size]
            magic, b, gen, seq = REC.unpack(rec)
            if magic != MAGIC or b != blk or rec * (SECTOR // REC.size) != sec:
                problems.append("%s: garbage, but (gen %d, seq %d) was "
                                "acknowledged durable (starts %s)"
                                % ((where,) + want + (sec[:40].hex(),)))
                continue
            if (gen, seq) < want:
                problems.append("%s: has (gen %d, seq %d), older than the "
                                "durable (gen %d, seq %d)"
                                % ((where, gen, seq) + want))
            seen += 1
    h.shutdown()
    print("nbd-writer: verified %d blocks, %d with durable writes, "
          "%d sectors of data" % (a.blocks, len(durable), seen),
          file=sys.stderr)
    if problems:
        print("nbd-writer: %d problems:\n  %s" % (len(problems),
              "\n  ".join(problems[:20])), file=sys.stderr)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("write", "verify"):
        s = sub.add_parser(name)
        s.add_argument("uri")
        s.add_argument("--log", required=True)
        s.add_argument("--first-block", type=int, default=0)
        s.add_argument("--blocks", type=int, default=256)
    sub.choices["verify"].add_argument("--sector", type=int, default=4096)
    w = sub.choices["write"]
    w.add_argument("--gen", type=int, required=True)
    w.add_argument("--threads", type=int, default=2)
    w.add_argument("--flush-every", type=int, default=16)
    w.add_argument("--fua-every", type=int, default=7)
    w.add_argument("--log-acked", action="store_true")
    w.add_argument("--depth", type=int, default=1)
    w.add_argument("--max-writes", type=int, default=0)
    w.add_argument("--started")
    a = p.parse_args()
    if a.cmd == "write" and a.gen < 1:
        p.error("--gen must be at least 1")
    return cmd_write(a) if a.cmd == "write" else cmd_verify(a)


if __name__ == "__main__":
    sys.exit(main())
