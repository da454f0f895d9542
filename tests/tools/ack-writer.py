#!/usr/bin/python3
"""Acknowledged writes, for failover tests: writes numbered blocks through
NBD, each once, and logs a block only after the server acknowledged its
write as durable (FUA); then checks, through any node, that every logged
block reads back as written.

Block k (k = 0, 1, ...) goes to offset perm[k] * BS, a permutation of the
export's first --blocks blocks (seeded), so the writes spread over every
region of the volume; its BS bytes are a 32-byte record repeated:

    b"ACKWRITE" | seed | k | offset        (u64 LE each)

Usage:
  ack-writer.py write URI --log FILE [--seed S] [--blocks N] [--bs BS]
                [--depth D] [--count C] [--started FILE]
      Up to D writes in flight (FUA each); a write is logged ("OFFSET K")
      when its reply came, and the log is fsync'ed.  Stops when the
      server goes away (exit 0: what matters is the log), after C writes,
      or after all N blocks; exit 1 if no connection could be made or the
      server lacks FUA.  --started FILE is made after the first write was
      acknowledged.
  ack-writer.py check URI --log FILE [--seed S] [--bs BS]
      Reads back every logged block: each must be its record, whole.  Exit
      0 and "N acknowledged writes read back", or 1 listing the first
      wrong ones.
"""

import argparse
import os
import random
import struct
import sys

import nbd

MAGIC = b"ACKWRITE"
REC = struct.Struct("<8sQQQ")


def pattern(seed, k, off, bs):
    return REC.pack(MAGIC, seed, k, off) * (bs // REC.size)


def connect(uri):
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    h.connect_uri(uri)
    return h


def offsets(a, size):
    n = a.blocks or size // a.bs
    if n * a.bs > size:
        raise SystemExit("ack-writer: export is %d bytes, too small for %d "
                         "blocks of %d" % (size, n, a.bs))
    perm = list(range(n))
    random.Random(a.seed).shuffle(perm)
    return [p * a.bs for p in perm]


def cmd_write(a):
    try:
        h = connect(a.uri)
    except nbd.Error as e:
        print("ack-writer: cannot connect: %s" % e, file=sys.stderr)
        return 1
    if not h.can_fua():
        print("ack-writer: the server offers no FUA", file=sys.stderr)
        return 1
    offs = offsets(a, h.get_size())
    if a.count:
        offs = offs[:a.count]
    log = os.open(a.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    inflight = {}           # cookie -> (k, off, buffer kept alive)
    k = acked = 0
    why = "all blocks written"
    try:
        while k < len(offs) or inflight:
            while k < len(offs) and len(inflight) < a.depth:
                buf = nbd.Buffer.from_bytearray(
                    bytearray(pattern(a.seed, k, offs[k], a.bs)))
                c = h.aio_pwrite(buf, offs[k], flags=nbd.CMD_FLAG_FUA)
                inflight[c] = (k, offs[k], buf)
                k += 1
            h.poll(-1)
            done = [c for c in inflight if h.aio_command_completed(c)]
            lines = []
            for c in done:
                kk, off, _ = inflight.pop(c)
                lines.append("%d %d\n" % (off, kk))
            if lines:
                os.write(log, "".join(lines).encode())
                os.fsync(log)
                if acked == 0 and a.started:
                    open(a.started, "w").close()
                acked += len(lines)
        h.shutdown()
    except nbd.Error as e:
        why = "stopped by: %s" % e
    os.close(log)
    print("ack-writer: %d writes sent, %d acknowledged and logged; %s"
          % (k, acked, why), file=sys.stderr)
    return 0


def cmd_check(a):
    logged = []
    with open(a.log) as f:
        for line in f:
            off, k = map(int, line.split())
            logged.append((off, k))
    h = connect(a.uri)
    bad = []
    for off, k in logged:
        data = h.pread(a.bs, off)
        if data != pattern(a.seed, k, off, a.bs):
            got = REC.unpack_from(data)
            bad.append("block %d at offset %d: reads %s" %
                       (k, off, "zeros" if data == bytes(a.bs) else
                        "record %r" % (got,)))
    h.shutdown()
    if bad:
        print("ack-writer: %d of %d acknowledged writes are lost or wrong:"
              % (len(bad), len(logged)), file=sys.stderr)
        for b in bad[:10]:
            print("  " + b, file=sys.stderr)
        return 1
    print("ack-writer: %d acknowledged writes read back" % len(logged))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("write", "check"):
        s = sub.add_parser(name)
        s.add_argument("uri")
        s.add_argument("--log", required=True)
        s.add_argument("--seed", type=int, default=1)
        s.add_argument("--bs", type=int, default=4096)
        if name == "write":
            s.add_argument("--blocks", type=int, default=0)
            s.add_argument("--depth", type=int, default=8)
            s.add_argument("--count", type=int, default=0)
            s.add_argument("--started")
    a = p.parse_args()
    if a.bs % REC.size or a.bs % 512:
        p.error("--bs must be a multiple of 512")
    return cmd_write(a) if a.cmd == "write" else cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
