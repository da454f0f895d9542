#!/usr/bin/python3
"""Timed writes, for the partition test (tests/repl-partition.sh): writes
numbered blocks through NBD, each once, FUA, and logs every outcome with the
time it was sent and the time its reply came, so the test can say when the
node stopped acknowledging and when it started failing with EIO.

Block k (k = 0, 1, ...) goes to offset perm[k] * BS, a permutation of the
export's first --blocks blocks (seeded); its BS bytes are the 32-byte
record of tests/tools/ack-writer.py repeated:

    b"ACKWRITE" | seed | k | offset        (u64 LE each)

`over` writes another writer's record (a tag) over a range and over every
block the log sent without an acknowledgement, and `check` reads it all
back:

    b"OVERWRIT" | tag | offset | 0      (u64 LE each)

Writes go out --depth at a time (at most --rate a second, 0: as fast as
the node answers; once one failed, one every --stuck seconds).  When every write in flight has waited longer than
--stuck seconds (a partitioned node holds them until its replicas time
out), one more goes out every --stuck seconds, up to --max-inflight: the
node must answer those at once with EIO once it fenced itself, however
long the held ones take (the node needs as many request workers,
--nbd-threads).  Stops issuing when --stop FILE exists (or every block was
sent), then waits --drain seconds for the replies and exits; a lost
connection ends it too.  Exit 0 (what matters is the log), 1 if no
connection could be made.

Log lines:
    OFFSET K sent SENT                  (when it went out)
    OFFSET K ack SENT DONE
    OFFSET K err SENT DONE ERRNO
    OFFSET K lost SENT -                (no reply before the end)
Times are CLOCK_REALTIME seconds, as bash's $EPOCHREALTIME and the node
logs: the test compares them with the moment it cut the network.

Usage:
  fence-writer.py write URI --log FILE [--seed S] [--blocks N] [--bs BS]
                  [--depth D] [--rate R] [--stuck S] [--max-inflight M]
                  [--stop FILE] [--drain S] [--started FILE]
  fence-writer.py over URI --log FILE --list OUT --tag T [--below B]
                  [--retry S] [--bs BS]
      Connects, trying again every 0.2 s for S seconds (the attach may be
      refused while another node's lease lives), then writes T's record
      over [0, B) and every block the log sent without an acknowledgement,
      flushes, and lists them in OUT.  Prints attached=TIME, refusals=N,
      refused='the last refusal', snapshot=TIME (when the log was read),
      written=N.
  fence-writer.py check URI --log FILE --list OUT --tag T [--after TIME]
                  [--retry S] [--seed S] [--bs BS]
      Connects as over does, and reads back: OUT's blocks are T's, the log's acknowledged writes not
      among them are the log's, and what it sent after TIME not among them
      reads as zeros (never written).  Exit 0, or 1 listing wrong ones.
"""

import argparse
import errno
import os
import random
import struct
import sys
import time

import nbd

MAGIC = b"ACKWRITE"
OVER = b"OVERWRIT"
REC = struct.Struct("<8sQQQ")


def pattern(seed, k, off, bs):
    return REC.pack(MAGIC, seed, k, off) * (bs // REC.size)


def over_pattern(tag, off, bs):
    return REC.pack(OVER, tag, off, 0) * (bs // REC.size)


def connect(uri):
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    h.connect_uri(uri)
    return h


def errname(e):
    return errno.errorcode.get(e.errno or 0, str(e.errno))


def read_log(path):
    """n1's log: {off: (k, sent)} of every write sent, {off: done} of the
    acknowledged ones."""
    sent, acked = {}, {}
    with open(path) as f:
        for line in f:
            w = line.split()
            if not line.endswith("\n") or len(w) < 4:
                continue        # the writer is writing it now
            off, k = int(w[0]), int(w[1])
            if w[2] == "sent":
                sent[off] = (k, float(w[3]))
            elif w[2] == "ack":
                acked[off] = float(w[4])
    return sent, acked


def connect_retry(uri, secs):
    """Connects, trying again every 0.2 s for secs: (handle, time of the
    connection, refusals, the last refusal's server message)."""
    msgs = []
    refusals, last = 0, ""
    end = time.time() + secs
    while True:
        h = nbd.NBD()
        h.set_uri_allow_local_file(True)
        h.set_debug_callback(lambda ctx, m: msgs.append(m))
        h.set_debug(True)
        try:
            h.connect_uri(uri)
            return h, time.time(), refusals, last
        except nbd.Error as e:
            refusals += 1
            said = [m for m in msgs if "server error message" in m]
            last = said[-1].split("server error message:", 1)[1].strip() \
                if said else str(e)
            msgs.clear()
            del h
            if time.time() >= end:
                raise SystemExit("fence-writer: no connection after %d s "
                                 "(%d refusals): %s" % (secs, refusals, last))
            time.sleep(0.2)


def cmd_over(a):
    """Attaches (retrying), then writes tag's record over [0, --below) and
    over every block the log sent without an acknowledgement."""
    h, when, refusals, last = connect_retry(a.uri, a.retry)
    h.set_debug(False)
    snapshot = time.time()
    sent, acked = read_log(a.log)
    offs = set(range(0, a.below, a.bs))
    offs |= {off for off in sent if off not in acked}
    offs = sorted(offs)
    for off in offs:
        h.pwrite(over_pattern(a.tag, off, a.bs), off)
    h.flush()
    h.shutdown()
    with open(a.list, "w") as f:
        f.write("".join("%d\n" % o for o in offs))
    print("attached=%.6f" % when)
    print("refusals=%d" % refusals)
    print("refused=%r" % last)
    print("snapshot=%.6f" % snapshot)
    print("written=%d" % len(offs))
    return 0


def cmd_check(a):
    """Through any node: the blocks of --list are tag's; the acknowledged
    writes of the log not among them are the log's; what the log sent
    after --after, not among them, was not written at all (zeros)."""
    sent, acked = read_log(a.log)
    with open(a.list) as f:
        over = {int(line) for line in f if line.strip()}
    h = connect_retry(a.uri, a.retry)[0]
    h.set_debug(False)
    bad, n = [], {"over": 0, "acked": 0, "late": 0}

    def expect(off, want, what):
        data = h.pread(a.bs, off)
        n[what] += 1
        if data != want:
            bad.append("%s block at offset %d: reads %s" % (
                what, off, "zeros" if data == bytes(a.bs) else
                "record %r" % (REC.unpack_from(data),)))

    for off in sorted(over):
        expect(off, over_pattern(a.tag, off, a.bs), "over")
    for off in sorted(acked):
        if off not in over:
            expect(off, pattern(a.seed, sent[off][0], off, a.bs), "acked")
    for off, (k, t) in sorted(sent.items()):
        if off not in over and off not in acked and t > a.after:
            expect(off, bytes(a.bs), "late")
    h.shutdown()
    if bad:
        print("fence-writer: %d blocks wrong:" % len(bad), file=sys.stderr)
        for b in bad[:10]:
            print("  " + b, file=sys.stderr)
        return 1
    print("fence-writer: %d blocks of tag %d, %d acknowledged writes, %d "
          "late ones unwritten: all read back" % (n["over"], a.tag,
                                                  n["acked"], n["late"]))
    return 0


class Writer:
    def __init__(self, a, h):
        self.a, self.h = a, h
        n = a.blocks or h.get_size() // a.bs
        if n * a.bs > h.get_size():
            raise SystemExit("fence-writer: export too small for %d blocks"
                             % n)
        self.offs = [p * a.bs for p in range(n)]
        random.Random(a.seed).shuffle(self.offs)
        self.inflight = {}          # cookie -> (k, off, sent, buffer)
        self.k = 0
        self.counts = {"ack": 0, "err": 0, "lost": 0}
        self.log = os.open(a.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                           0o644)
        self.last_send = 0.0

    def send(self):
        k, off = self.k, self.offs[self.k]
        buf = nbd.Buffer.from_bytearray(
            bytearray(pattern(self.a.seed, k, off, self.a.bs)))
        now = time.time()
        c = self.h.aio_pwrite(buf, off, flags=nbd.CMD_FLAG_FUA)
        os.write(self.log, b"%d %d sent %.6f\n" % (off, k, now))
        self.inflight[c] = (k, off, now, buf)
        self.k += 1
        self.last_send = now

    def interval(self):
        # Once the node fails writes, one every --stuck seconds: enough to
        # see what it does, without spending every block on refusals.
        if self.counts["err"]:
            return self.a.stuck
        return 1.0 / self.a.rate if self.a.rate else 0.0

    def may_send(self, now):
        a = self.a
        if self.k >= len(self.offs) or (a.stop and os.path.exists(a.stop)):
            return False
        if now - self.last_send < self.interval():
            return False
        n = len(self.inflight)
        if n < a.depth:
            return True
        # Every one in flight held: a probe now and then.
        newest = max(s for _, _, s, _ in self.inflight.values())
        return n < a.max_inflight and now - newest >= a.stuck

    def reap(self):
        lines = []
        for c in list(self.inflight):
            k, off, sent = self.inflight[c][:3]
            try:
                if not self.h.aio_command_completed(c):
                    continue
                what = "ack %.6f %.6f" % (sent, time.time())
                self.counts["ack"] += 1
            except nbd.Error as e:
                what = "err %.6f %.6f %s" % (sent, time.time(), errname(e))
                self.counts["err"] += 1
            del self.inflight[c]
            lines.append("%d %d %s\n" % (off, k, what))
        if lines:
            os.write(self.log, "".join(lines).encode())
        if self.counts["ack"] and self.a.started and \
                not os.path.exists(self.a.started):
            open(self.a.started, "w").close()

    def run(self):
        a = self.a
        end = None
        why = "stopped"
        try:
            while True:
                now = time.time()
                while self.may_send(now):
                    self.send()
                    now = time.time()
                if end is None and (self.k >= len(self.offs) or
                                    (a.stop and os.path.exists(a.stop))):
                    end = now + a.drain
                if end is not None and (not self.inflight or now >= end):
                    break
                # Until the next send may go (the rate), at most 50 ms.
                due = self.last_send + self.interval() - time.time()
                wait = max(1, min(50, int(due * 1000) + 1))
                self.h.poll(wait)
                self.reap()
        except nbd.Error as e:
            why = "connection lost: %s" % e
        lines = ["%d %d lost %.6f -\n" % (off, k, sent)
                 for k, off, sent, _ in self.inflight.values()]
        self.counts["lost"] += len(lines)
        if lines:
            os.write(self.log, "".join(lines).encode())
        os.close(self.log)
        print("fence-writer: %d sent, %d acknowledged, %d failed, %d without "
              "a reply; %s" % (self.k, self.counts["ack"], self.counts["err"],
                               self.counts["lost"], why), file=sys.stderr)


def cmd_write(a):
    try:
        h = connect(a.uri)
    except nbd.Error as e:
        print("fence-writer: cannot connect: %s" % e, file=sys.stderr)
        return 1
    if not h.can_fua():
        print("fence-writer: the server offers no FUA", file=sys.stderr)
        return 1
    Writer(a, h).run()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--log", required=True)
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--blocks", type=int, default=0)
    w.add_argument("--depth", type=int, default=8)
    w.add_argument("--rate", type=float, default=0)
    w.add_argument("--stuck", type=float, default=0.25)
    w.add_argument("--max-inflight", type=int, default=48)
    w.add_argument("--stop")
    w.add_argument("--drain", type=float, default=2.0)
    w.add_argument("--started")
    for name in ("over", "check"):
        o = sub.add_parser(name)
        o.add_argument("--log", required=True)
        o.add_argument("--list", required=True)
        o.add_argument("--tag", type=int, required=True)
    sub.choices["over"].add_argument("--below", type=int, default=0)
    for name in ("over", "check"):
        sub.choices[name].add_argument("--retry", type=float, default=30)
    sub.choices["check"].add_argument("--seed", type=int, default=1)
    sub.choices["check"].add_argument("--after", type=float, default=0)
    for s in sub.choices.values():
        s.add_argument("uri")
        s.add_argument("--bs", type=int, default=4096)
    a = p.parse_args()
    if a.bs % REC.size or a.bs % 512:
        p.error("--bs must be a multiple of 512")
    return {"write": cmd_write, "over": cmd_over,
            "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
