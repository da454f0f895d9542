#!/usr/bin/python3
"""NBD clients that want to hurt the server, for the bounds tests
(tests/nbd-bounds.sh).  Plaintext fixed newstyle on a raw socket, so the
server must allow plaintext (--tls off or on).

Usage:
  nbd-hostile.py trickle ADDR [--pause S]
      the greeting, then one byte of the client flags and options every
      --pause seconds; prints the seconds until the server hung up.
  nbd-hostile.py idle ADDR EXPORT
      NBD_OPT_GO, then nothing; prints the seconds until the server hung up.
  nbd-hostile.py many ADDR --connections N [--hold S]
      N connections at once, each only reading the greeting; prints how
      many got one and how many were closed without one, then holds the
      rest open for --hold seconds (or until killed).
  nbd-hostile.py flood ADDR EXPORT [--connections N] [--count C]
                 [--length L] [--hold S] [--ready FILE] [--drained FILE]
      N connections each send C pipelined READs of L bytes and do not read
      the replies; --ready FILE is created once all are sent.  After --hold
      seconds each reads its replies (all must come), --drained FILE is
      created, and the connections stay open, idle, for --hold seconds.
  nbd-hostile.py go-loop ADDR EXPORT [--hold S]
      NBD_OPT_GO for EXPORT (which must be refused: a failed GO leaves the
      handshake going) again and again for --hold seconds (1000 a
      connection); prints how many were answered and how many refused.
Exit 0, or 1 saying what went wrong.
"""

import argparse
import socket
import struct
import sys
import threading
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
OPT_GO, REP_ACK = 7, 1
CMD_READ = 0


def die(msg):
    print("nbd-hostile: " + msg, file=sys.stderr)
    sys.exit(1)


def connect(addr, rcvbuf=None):
    if "/" in addr:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if "/" in addr:
        s.connect(addr)
    else:
        host, port = addr.rsplit(":", 1)
        s.connect((host, int(port)))
    s.settimeout(120)
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            die("server closed the connection")
        buf += chunk
    return bytes(buf)


def until_closed(s):
    t = time.monotonic()
    try:
        while s.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return time.monotonic() - t


def go(s, export):
    recv_exact(s, 18)
    name = export.encode()
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(struct.pack(">IQII", 1, IHAVEOPT, OPT_GO, len(data)) + data)
    while True:
        magic, _, rtype, n = struct.unpack(">QIII", recv_exact(s, 20))
        recv_exact(s, n)
        if magic != OPT_REPLY_MAGIC or rtype & 0x80000000:
            die("NBD_OPT_GO refused (reply %#x)" % rtype)
        if rtype == REP_ACK:
            return


def trickle(a):
    s = connect(a.addr)
    recv_exact(s, 18)
    t = time.monotonic()
    stream = struct.pack(">I", 1) + struct.pack(">QII", IHAVEOPT, 3, 0) * 100
    try:
        for b in stream:
            s.send(bytes([b]))
            s.settimeout(a.pause)
            try:
                if s.recv(4096) == b"":
                    break
            except socket.timeout:
                pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    print("%.1f" % (time.monotonic() - t))


def idle(a):
    s = connect(a.addr)
    go(s, a.export)
    print("%.1f" % until_closed(s))


def many(a):
    conns, got, closed = [], 0, 0
    for _ in range(a.connections):
        try:
            s = connect(a.addr)
            s.settimeout(5)
            if len(s.recv(18)) > 0:
                got += 1
                conns.append(s)
            else:
                closed += 1
                s.close()
        except (ConnectionResetError, BrokenPipeError, socket.timeout,
                OSError):
            closed += 1
    print("greeted %d closed %d" % (got, closed), flush=True)
    time.sleep(a.hold)


def flood(a):
    # Small receive buffers: replies the client does not read stay in the
    # server, where the bound must hold them.
    conns = [connect(a.addr, rcvbuf=65536) for _ in range(a.connections)]
    for s in conns:
        go(s, a.export)
    for s in conns:
        reqs = b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ,
                                    i, (i % 2) * a.length, a.length)
                        for i in range(a.count))
        s.sendall(reqs)
    if a.ready:
        open(a.ready, "w").close()
    time.sleep(a.hold)
    # All at once: the daemon-wide bound may hold one connection's replies
    # until another's are read.
    errors = []

    def drain(s):
        try:
            for _ in range(a.count):
                magic, err, _ = struct.unpack(">IIQ", recv_exact(s, 16))
                if magic != SIMPLE_REPLY_MAGIC or err:
                    errors.append("READ reply: magic %x error %d" %
                                  (magic, err))
                    return
                recv_exact(s, a.length)
        except (OSError, SystemExit) as e:
            errors.append("READ reply: %s" % e)

    threads = [threading.Thread(target=drain, args=(s,)) for s in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        die(errors[0])
    if a.drained:
        open(a.drained, "w").close()
    time.sleep(a.hold)


def go_loop(a):
    name = a.export.encode()
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    answered = refused = 0
    end = time.monotonic() + a.hold
    while time.monotonic() < end:
        # The server hangs up after 1024 options: start again.
        s = connect(a.addr)
        recv_exact(s, 18)
        s.sendall(struct.pack(">I", 1))
        for _ in range(1000):
            if time.monotonic() >= end:
                break
            s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
            while True:
                magic, _, rtype, n = struct.unpack(">QIII",
                                                   recv_exact(s, 20))
                recv_exact(s, n)
                if rtype == REP_ACK:
                    answered += 1
                    break
                if rtype & 0x80000000:
                    refused += 1
                    break
        s.close()
    print("answered %d refused %d" % (answered, refused))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("trickle", "idle", "many", "flood",
                                   "go-loop"))
    p.add_argument("addr")
    p.add_argument("export", nargs="?")
    p.add_argument("--pause", type=float, default=0.5)
    p.add_argument("--connections", type=int, default=6)
    p.add_argument("--count", type=int, default=64)
    p.add_argument("--length", type=int, default=32 << 20)
    p.add_argument("--hold", type=float, default=3)
    p.add_argument("--ready")
    p.add_argument("--drained")
    a = p.parse_args()
    {"trickle": trickle, "idle": idle, "many": many, "flood": flood,
     "go-loop": go_loop}[a.mode](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
