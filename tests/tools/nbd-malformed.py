#!/usr/bin/env python3
"""Sends malformed and edge-case NBD traffic to a server and checks that
every answer is what the NBD spec (doc/proto.md) asks for: the right
option reply or error value, a hard disconnect only where the spec allows
one, and a server that keeps serving everybody else afterwards.

usage: nbd-malformed.py --unix SOCKET --export NAME [--tls-required]

The export must be writable and at least 64 MiB; the script writes to its
first 8 MiB.  Exit status 0 when every case passes, 1 otherwise."""

import argparse
import os
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS = 1, 2, 3, 5
OPT_INFO, OPT_GO, OPT_STRUCTURED, OPT_LIST_META, OPT_SET_META = 6, 7, 8, 9, 10
REP_ACK, REP_SERVER, REP_INFO, REP_META = 1, 2, 3, 4
ERR = 0x80000000
REP_ERR_UNSUP, REP_ERR_POLICY, REP_ERR_INVALID = ERR | 1, ERR | 2, ERR | 3
REP_ERR_TLS_REQD, REP_ERR_UNKNOWN, REP_ERR_TOO_BIG = ERR | 5, ERR | 6, ERR | 9
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM = 0, 1, 2, 3, 4
CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 6, 7
FLAG_FUA, FLAG_DF, FLAG_REQ_ONE = 1, 4, 8
EPERM, EIO, EINVAL, ENOSPC, EOVERFLOW = 1, 5, 22, 28, 75
MiB = 1024 * 1024

failures = 0


class Closed(Exception):
    pass


def check(cond, what):
    global failures
    if cond:
        print("ok: " + what)
    else:
        failures += 1
        print("FAIL: " + what)


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)

    def recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise Closed()
            buf += chunk
        return buf

    def send(self, data):
        self.s.sendall(data)

    def closed(self):
        """True if the server hung up (EOF) without sending anything."""
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.s.close()

    # -- handshake
    def greet(self, flags=3):
        magic, opt, hflags = struct.unpack(">QQH", self.recv(18))
        assert magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting"
        assert hflags == 3, "handshake flags %d" % hflags
        self.send(struct.pack(">I", flags))

    def opt(self, option, data=b"", length=None):
        n = len(data) if length is None else length
        self.send(struct.pack(">QII", IHAVEOPT, option, n) + data)

    def reply(self):
        magic, opt, rtype, n = struct.unpack(">QIII", self.recv(20))
        assert magic == REP_MAGIC, "bad option reply magic %x" % magic
        return opt, rtype, self.recv(n)

    def replies(self):
        """All replies to one option, up to the final ACK or error."""
        out = []
        while True:
            r = self.reply()
            out.append(r)
            if r[1] == REP_ACK or r[1] & ERR:
                return out

    def go(self, name, structured=True, meta=True):
        if structured:
            self.opt(OPT_STRUCTURED)
            assert self.reply()[1] == REP_ACK
        if meta:
            q = b"base:allocation"
            self.opt(OPT_SET_META, struct.pack(">I", len(name)) + name +
                     struct.pack(">II", 1, len(q)) + q)
            rs = self.replies()
            assert rs[-1][1] == REP_ACK and rs[0][1] == REP_META
            self.meta_id = struct.unpack(">I", rs[0][2][:4])[0]
        self.opt(OPT_GO, struct.pack(">I", len(name)) + name +
                 struct.pack(">H", 0))
        rs = self.replies()
        assert rs[-1][1] == REP_ACK, "GO failed: %r" % (rs[-1],)
        for _, rtype, data in rs:
            if rtype == REP_INFO and struct.unpack(">H", data[:2])[0] == 0:
                self.size, self.tflags = struct.unpack(">QH", data[2:12])
        self.structured = structured

    # -- transmission
    def request(self, cmd, offset, length, handle=1, flags=0, data=b""):
        self.send(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, handle,
                              offset, length) + data)

    def simple(self):
        magic, err, handle = struct.unpack(">IIQ", self.recv(16))
        assert magic == SIMPLE_MAGIC, "expected a simple reply, magic %x" % magic
        return err, handle

    def chunk(self):
        magic, flags, ctype, handle, n = struct.unpack(">IHHQI",
                                                       self.recv(20))
        assert magic == STRUCT_MAGIC, "expected a chunk, magic %x" % magic
        return flags, ctype, handle, self.recv(n)

    def any_reply(self):
        """(handle, error, message, payload) of one whole reply."""
        head = self.recv(4)
        magic = struct.unpack(">I", head)[0]
        if magic == SIMPLE_MAGIC:
            err, handle = struct.unpack(">IQ", self.recv(12))
            return handle, err, "", b""
        assert magic == STRUCT_MAGIC, "bad reply magic %x" % magic
        flags, ctype, handle, n = struct.unpack(">HHQI", self.recv(16))
        data = self.recv(n)
        assert flags & 1, "only one-chunk replies expected from this server"
        if ctype & 0x8000:
            err, mlen = struct.unpack(">IH", data[:6])
            return handle, err, data[6:6 + mlen].decode(), b""
        return handle, 0, "", data

    def read(self, offset, length, handle=1, flags=0):
        self.request(CMD_READ, offset, length, handle, flags)
        h, err, msg, data = self.any_reply()
        assert h == handle
        if err == 0 and self.structured:
            assert struct.unpack(">Q", data[:8])[0] == offset
            data = data[8:]
        elif err == 0:
            data = self.recv(length)
        return err, msg, data


def connect(args, name=None):
    c = Conn(args.unix)
    c.greet()
    if name is not None:
        c.go(name)
    return c


def opt_cases(args):
    name = args.export.encode()
    c = Conn(args.unix)
    c.greet(flags=3 | 0x100)
    check(c.closed(), "unknown client flags: server hangs up")

    c = connect(args)
    c.send(struct.pack(">QII", 0x1122334455667788, OPT_GO, 0))
    check(c.closed(), "bad option magic: server hangs up")

    c = connect(args)
    c.opt(99, b"xyz")
    check(c.reply()[1] == REP_ERR_UNSUP, "unknown option: NBD_REP_ERR_UNSUP")
    c.opt(OPT_LIST, b"junk")
    check(c.reply()[1] == REP_ERR_INVALID, "NBD_OPT_LIST with data: INVALID")
    c.opt(OPT_GO, struct.pack(">I", 500) + b"abc")
    _, rtype, msg = c.reply()
    check(rtype == REP_ERR_INVALID and b"export name" in msg,
          "NBD_OPT_GO with a bad name length: INVALID with a message")
    c.opt(OPT_GO, struct.pack(">I", 3) + b"a\0b" + struct.pack(">H", 0))
    check(c.reply()[1] == REP_ERR_INVALID, "export name with NUL: INVALID")
    c.opt(OPT_INFO, struct.pack(">I", len(name)) + name +
          struct.pack(">H", 3))
    check(c.reply()[1] == REP_ERR_INVALID, "NBD_OPT_INFO with an odd "
          "information request count: INVALID")
    c.opt(OPT_GO, b"\0" * (100 * 1024))
    _, rtype, _ = c.reply()
    check(rtype == REP_ERR_TOO_BIG, "100 KiB option: read past and refused "
          "with NBD_REP_ERR_TOO_BIG")
    c.opt(OPT_SET_META, struct.pack(">II", 0, 0))
    check(c.reply()[1] == REP_ERR_INVALID,
          "SET_META_CONTEXT before structured replies: INVALID")
    c.opt(OPT_GO, struct.pack(">I", 7) + b"nothere" + struct.pack(">H", 0))
    _, rtype, msg = c.reply()
    # The answer a volume this client may not open gets: POLICY, the same
    # words, so a client cannot tell which names exist.
    check(rtype == REP_ERR_POLICY and b"nothere" in msg and
          b"may not open it" in msg,
          "unknown export: NBD_REP_ERR_POLICY naming it (%s)" % msg.decode())
    c.opt(OPT_GO, struct.pack(">IH", 0, 0))
    _, rtype, msg = c.reply()
    check(rtype == REP_ERR_UNKNOWN and b"default" in msg,
          "default export: refused with a hint (%s)" % msg.decode())
    c.opt(OPT_STARTTLS)
    _, rtype, msg = c.reply()
    check(rtype == REP_ERR_POLICY and b"TLS is not enabled" in msg,
          "STARTTLS without TLS configured: POLICY saying so (got %#x: %s)" %
          (rtype, msg.decode(errors="replace")))
    if rtype == REP_ACK:
        # The server now expects a TLS handshake on this connection: the
        # checks below go on in plaintext on a new one.
        c.close()
        c = connect(args)
    c.opt(OPT_LIST)
    rs = c.replies()
    names = [r[2][4:4 + struct.unpack(">I", r[2][:4])[0]] for r in rs
             if r[1] == REP_SERVER]
    check(rs[-1][1] == REP_ACK and name in names, "NBD_OPT_LIST lists the "
          "export")
    c.opt(OPT_STRUCTURED)
    c.reply()
    c.opt(OPT_LIST_META, struct.pack(">I", len(name)) + name +
          struct.pack(">I", 0))
    rs = c.replies()
    check(len(rs) == 2 and rs[0][2][4:] == b"base:allocation",
          "LIST_META_CONTEXT lists base:allocation")
    c.opt(OPT_ABORT)
    check(c.reply()[1] == REP_ACK, "NBD_OPT_ABORT: ACK")
    c.close()

    c = connect(args)
    c.opt(OPT_GO, length=0x7FFFFFFF)
    check(c.closed(), "2 GiB option: server hangs up")

    c = connect(args)
    c.opt(OPT_EXPORT_NAME, b"nothere")
    check(c.closed(), "NBD_OPT_EXPORT_NAME of an unknown export: hangs up")


def tls_cases(args):
    name = args.export.encode()
    c = connect(args)
    c.opt(OPT_LIST)
    check(c.reply()[1] == REP_ERR_TLS_REQD, "TLS required: LIST gets TLS_REQD")
    c.opt(OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
    check(c.reply()[1] == REP_ERR_TLS_REQD, "TLS required: GO gets TLS_REQD")
    c.opt(99)
    check(c.reply()[1] == REP_ERR_TLS_REQD, "TLS required: even unknown "
          "options get TLS_REQD")
    c.opt(OPT_ABORT)
    check(c.reply()[1] == REP_ACK, "TLS required: ABORT still answered")
    c = connect(args)
    c.opt(OPT_EXPORT_NAME, name)
    check(c.closed(), "TLS required: NBD_OPT_EXPORT_NAME hangs up")
    c = connect(args)
    c.opt(OPT_STARTTLS)
    check(c.reply()[1] == REP_ACK, "TLS required: STARTTLS gets ACK")
    c.send(b"this is not a TLS client hello" * 4)
    check(c.closed(), "garbage instead of a TLS handshake: hangs up")
    starttls_read_ahead(args, name)


def gone_within(c, seconds):
    """True if the server hangs up without sending a byte, within seconds."""
    t = time.monotonic()
    c.s.settimeout(seconds)
    try:
        got = c.s.recv(4096)
    except socket.timeout:
        return False
    except (ConnectionResetError, BrokenPipeError):
        got = b""
    return got == b"" and time.monotonic() - t < seconds


def starttls_read_ahead(args, name):
    """Bytes sent with STARTTLS, before its reply, land in the server's
    plaintext read-ahead: injected options must never be answered (neither
    in the clear nor under TLS), and the connection ends at once instead of
    stalling the TLS handshake until a timeout."""
    go = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    injected = [
        ("LIST", struct.pack(">QII", IHAVEOPT, OPT_LIST, 0)),
        ("GO", struct.pack(">QII", IHAVEOPT, OPT_GO, len(go)) + go),
        # The start of a TLS record, as a client that does not wait sends.
        ("a ClientHello", b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4" +
         b"\x03\x03" + os.urandom(32)),
    ]
    for what, extra in injected:
        c = connect(args)
        c.send(struct.pack(">QII", IHAVEOPT, OPT_STARTTLS, 0) + extra)
        check(gone_within(c, 1.0), "STARTTLS with %s in the same write: "
              "nothing answered, closed in under a second" % what)


def expect_err(c, err, what, cmd, offset, length, flags=0, data=b""):
    c.request(cmd, offset, length, 7, flags, data)
    h, got, msg, _ = c.any_reply()
    check(h == 7 and got == err, "%s: error %d (got %d: %s)" %
          (what, err, got, msg))
    return msg


def transmission_cases(args):
    name = args.export.encode()
    c = connect(args, name)
    size = c.size
    check(c.tflags & 0x100 and c.tflags & 0x8 and c.tflags & 0x80,
          "flags: CAN_MULTI_CONN, SEND_FUA, SEND_DF")
    check(not c.tflags & (1 << 11), "FAST_ZERO not advertised")
    msg = expect_err(c, EINVAL, "read past the end", CMD_READ, size - 512,
                     1024)
    check("past the end" in msg, "error chunk says why (%s)" % msg)
    expect_err(c, EINVAL, "read at 2^64 - 1", CMD_READ, 2**64 - 1, 2)
    expect_err(c, ENOSPC, "write past the end (payload read past)",
               CMD_WRITE, size - 4096, 8192, data=b"x" * 8192)
    expect_err(c, EOVERFLOW, "33 MiB write (payload read past)", CMD_WRITE,
               0, 33 * MiB, data=b"\0" * (33 * MiB))
    expect_err(c, EOVERFLOW, "33 MiB read", CMD_READ, 0, 33 * MiB)
    expect_err(c, EINVAL, "unknown command 42", 42, 0, 512)
    expect_err(c, EINVAL, "unknown flag", CMD_READ, 0, 512, flags=0x40)
    expect_err(c, EINVAL, "NO_HOLE on a read", CMD_READ, 0, 512, flags=2)
    expect_err(c, EINVAL, "zero-length read", CMD_READ, 0, 0)
    expect_err(c, EINVAL, "flush with an offset", CMD_FLUSH, 4096, 0)
    expect_err(c, ENOSPC, "trim past the end", CMD_TRIM, size, 4096)
    expect_err(c, EINVAL, "block status past the end", CMD_BLOCK_STATUS,
               size, 4096)

    # The connection still works: write, read back, with FUA and unaligned.
    data = os.urandom(12345)
    c.request(CMD_WRITE, 1000, len(data), 8, FLAG_FUA, data)
    check(c.any_reply()[:2] == (8, 0), "unaligned FUA write after errors")
    err, _, back = c.read(1000, len(data), 9, FLAG_DF)
    check(err == 0 and back == data, "read back with DF: same bytes")
    c.request(CMD_WRITE_ZEROES, 4096, 8192, 10, 2)
    check(c.any_reply()[:2] == (10, 0), "write zeroes with NO_HOLE")
    err, _, back = c.read(4096, 8192, 11)
    check(err == 0 and back == b"\0" * 8192, "zeroes read back")
    c.request(CMD_BLOCK_STATUS, 0, 1 * MiB, 12, FLAG_REQ_ONE)
    h, err, _, data = c.any_reply()
    ctx, length, flags = struct.unpack(">III", data[:12]) if not err else \
        (0, 0, 0)
    check(h == 12 and err == 0 and len(data) == 12 and ctx == c.meta_id and
          0 < length <= 1 * MiB, "block status with REQ_ONE: one extent")
    c.request(CMD_FLUSH, 0, 0, 13)
    check(c.any_reply()[:2] == (13, 0), "flush")

    # Pipelining: 64 requests in flight, answered in any order.
    want = {}
    for i in range(64):
        want[100 + i] = i
        c.request(CMD_READ, i * 65536, 65536, 100 + i)
    got = set()
    for _ in range(64):
        h, err, _, _ = c.any_reply()
        if err == 0:
            got.add(h)
    check(got == set(want), "64 pipelined reads all answered")

    # Bad request magic: the stream is lost, the server hangs up.
    c.send(struct.pack(">IHHQQI", 0xDEADBEEF, 0, CMD_READ, 1, 0, 512))
    check(c.closed(), "bad request magic: hangs up")

    # A write header announcing far more than any payload: hangs up.
    c = connect(args, name)
    c.request(CMD_WRITE, 0, 0xFFFFFFF0, 1)
    check(c.closed(), "4 GiB write: hangs up instead of reading it")

    # Simple replies: an error has no payload, the stream stays in sync.
    c = Conn(args.unix)
    c.greet()
    c.go(name, structured=False, meta=False)
    c.request(CMD_READ, size, 4096, 5)
    err, h = c.simple()
    check((err, h) == (EINVAL, 5), "simple reply: read past the end EINVAL")
    c.request(CMD_BLOCK_STATUS, 0, 4096, 6)
    check(c.simple() == (EINVAL, 6), "block status not negotiated: EINVAL")
    c.request(CMD_READ, 1000, 100, 7, FLAG_DF)
    check(c.simple() == (EINVAL, 7), "DF without structured replies: EINVAL")
    err, _, back = c.read(1000, 100, 8)
    check(err == 0 and len(back) == 100, "simple read still in sync")
    c.request(CMD_DISC, 0, 0, 9)
    check(c.closed(), "NBD_CMD_DISC: server closes")


def disconnect_cases(args):
    name = args.export.encode()
    c = connect(args, name)
    err, _, before = c.read(4 * MiB, 1 * MiB)
    # Half a write, then gone.
    c.request(CMD_WRITE, 4 * MiB, 1 * MiB, 2, 0, b"\xAA" * (MiB // 2))
    c.close()
    # Many connections at once, all served.
    conns = [connect(args, name) for _ in range(64)]
    for i, k in enumerate(conns):
        k.request(CMD_READ, i * 4096, 4096, i)
    ok = sum(1 for i, k in enumerate(conns) if k.any_reply()[:2] == (i, 0))
    check(ok == 64, "64 concurrent connections served (%d)" % ok)
    for k in conns:
        k.close()
    c = connect(args, name)
    err2, _, after = c.read(4 * MiB, 1 * MiB)
    check(err == 0 and err2 == 0 and before == after,
          "a write cut short by a disconnect changed nothing")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--unix", required=True)
    p.add_argument("--export", required=True)
    p.add_argument("--tls-required", dest="tls", action="store_true")
    args = p.parse_args()
    try:
        if args.tls:
            tls_cases(args)
        else:
            opt_cases(args)
            transmission_cases(args)
            disconnect_cases(args)
    except (Closed, AssertionError, OSError) as e:
        check(False, "unexpected: %s %s" % (type(e).__name__, e))
    print("%d failure(s)" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
