#!/usr/bin/python3
"""A plaintext NBD client on a raw socket, for clients that misbehave.

It speaks the fixed newstyle handshake itself (NBD_OPT_GO, no TLS, simple
replies), so the server must allow plaintext (--tls off or on).

Usage:
  nbd-raw.py ADDR EXPORT MODE [--offset N] [--length N] [--send N]
                               [--pause SECONDS] [--data FILE]
ADDR is a unix socket path or HOST:PORT.  MODE:
  abort-write      handshake, then a WRITE header for --length bytes at
                   --offset, only --send bytes of its payload (after
                   --pause), then close.  The payload is 0xEE bytes.
  abort-header     handshake, then 13 bytes of a request header, close.
  abort-option     the greeting and client flags, then half an option
                   header, close.
  abort-greeting   connect and close without a word.
  write-read       handshake, a whole WRITE of --data at --offset (simple
                   reply, error 0), a READ of it back (equal), FLUSH, a
                   clean NBD_CMD_DISC: checks this client itself works.
Exit 0 when the client did what the mode says (for abort-* modes: reached
the point where it closes), 1 naming what the server did instead.
"""

import argparse
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
INFO_EXPORT = 0
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3


def die(msg):
    print("nbd-raw: " + msg, file=sys.stderr)
    sys.exit(1)


def recv_exact(s, n, what):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            die("server closed the connection while sending %s" % what)
        buf += chunk
    return buf


def open_socket(addr):
    if "/" in addr:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(addr)
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    s.settimeout(30)
    return s


def greeting(s):
    magic, opt, hflags = struct.unpack(">QQH", recv_exact(s, 18, "greeting"))
    if magic != NBDMAGIC or opt != IHAVEOPT:
        die("not a newstyle greeting: %x %x" % (magic, opt))
    if not hflags & FLAG_FIXED_NEWSTYLE:
        die("server is not fixed newstyle (flags %#x)" % hflags)
    cflags = FLAG_FIXED_NEWSTYLE | (hflags & FLAG_NO_ZEROES)
    s.sendall(struct.pack(">I", cflags))
    return hflags


def handshake(s, export):
    """NBD_OPT_GO; returns (size, transmission flags)."""
    greeting(s)
    name = export.encode()
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    size = tflags = None
    while True:
        magic, opt, rtype, ln = struct.unpack(
            ">QIII", recv_exact(s, 20, "an option reply"))
        if magic != OPT_REPLY_MAGIC or opt != OPT_GO:
            die("bad option reply header (magic %x, option %d)"
                % (magic, opt))
        payload = recv_exact(s, ln, "an option reply payload")
        if rtype == REP_ACK:
            break
        if rtype & 0x80000000:
            die("NBD_OPT_GO refused: reply type %#x %r" % (rtype, payload))
        if rtype == REP_INFO and len(payload) >= 2:
            (itype,) = struct.unpack(">H", payload[:2])
            if itype == INFO_EXPORT:
                size, tflags = struct.unpack(">QH", payload[2:12])
    if size is None:
        die("NBD_OPT_GO ended without NBD_INFO_EXPORT")
    return size, tflags


def request(s, cmd, cookie, offset, length, flags=0):
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie, offset,
                       length)


def simple_reply(s, cookie, what):
    magic, error, c = struct.unpack(">IIQ", recv_exact(s, 16, what))
    if magic != SIMPLE_REPLY_MAGIC or c != cookie:
        die("%s: bad reply (magic %x, cookie %d)" % (what, magic, c))
    if error:
        die("%s: server error %d" % (what, error))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("export")
    p.add_argument("mode", choices=("abort-write", "abort-header",
                                    "abort-option", "abort-greeting",
                                    "write-read"))
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--length", type=int, default=4 << 20)
    p.add_argument("--send", type=int, default=65536)
    p.add_argument("--pause", type=float, default=0.2)
    p.add_argument("--data")
    a = p.parse_args()

    s = open_socket(a.addr)
    if a.mode == "abort-greeting":
        s.close()
        return 0
    if a.mode == "abort-option":
        greeting(s)
        s.sendall(struct.pack(">QI", IHAVEOPT, OPT_GO)[:10])
        time.sleep(a.pause)
        s.close()
        return 0
    size, tflags = handshake(s, a.export)
    if a.mode == "abort-header":
        s.sendall(request(s, CMD_WRITE, 1, a.offset, a.length)[:13])
        time.sleep(a.pause)
        s.close()
        return 0
    if a.mode == "abort-write":
        if a.offset + a.length > size:
            die("write of %d at %d is beyond the export's %d bytes"
                % (a.length, a.offset, size))
        s.sendall(request(s, CMD_WRITE, 1, a.offset, a.length))
        time.sleep(a.pause)
        s.sendall(b"\xee" * min(a.send, a.length - 1))
        time.sleep(a.pause)
        # Shut down without waiting: a reply now would mean the server
        # answered a write whose payload it never had.
        s.setblocking(False)
        try:
            early = s.recv(16)
        except BlockingIOError:
            early = None
        s.close()
        if early and len(early) >= 8 and \
                struct.unpack(">II", early[:8]) == (SIMPLE_REPLY_MAGIC, 0):
            die("server acknowledged a WRITE whose payload it never had")
        return 0
    # write-read
    data = open(a.data, "rb").read()
    s.sendall(request(s, CMD_WRITE, 7, a.offset, len(data)) + data)
    simple_reply(s, 7, "WRITE")
    s.sendall(request(s, CMD_READ, 8, a.offset, len(data)))
    simple_reply(s, 8, "READ")
    got = recv_exact(s, len(data), "READ data")
    if got != data:
        die("READ returned other data than the WRITE before it")
    s.sendall(request(s, CMD_FLUSH, 9, 0, 0))
    simple_reply(s, 9, "FLUSH")
    s.sendall(request(s, CMD_DISC, 10, 0, 0))
    s.close()
    print("nbd-raw: wrote and read back %d bytes at %d (export %d bytes, "
          "flags %#x)" % (len(data), a.offset, size, tflags), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
