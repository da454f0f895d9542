#!/usr/bin/python3
"""One-shot NBD requests on an export of a unix socket, for the snapshot,
clone and layer tests (the export name may be VOL@SNAP, which is passed
as it is, with no URI quoting).

  nbd-io.py write SOCK EXPORT OFFSET FILE     writes FILE at OFFSET, flushes
  nbd-io.py read SOCK EXPORT OFFSET LEN OUT   reads LEN bytes at OFFSET to OUT
  nbd-io.py zero SOCK EXPORT OFFSET LEN       NBD_CMD_WRITE_ZEROES, flushes
  nbd-io.py trim SOCK EXPORT OFFSET LEN       NBD_CMD_TRIM, flushes
  nbd-io.py size SOCK EXPORT                  prints the export's size
  nbd-io.py sum SOCK EXPORT                   prints sha256 of every byte
  nbd-io.py readonly SOCK EXPORT              the export must be read-only:
      the server sets NBD_FLAG_READ_ONLY, and a WRITE, a TRIM and a
      WRITE_ZEROES each sent anyway (libnbd's strict mode off, so the
      request reaches the server) get EPERM from the server; two clients
      connected at once read the same first 64 KiB.

Exit 0, or 1 with the failure (the server's error, errno name included)
on stderr.  Large requests are cut into 1 MiB pieces.
"""

import errno
import hashlib
import sys

import nbd

PIECE = 1 << 20


def die(msg):
    print("nbd-io: " + msg, file=sys.stderr)
    sys.exit(1)


def connect(sock, export):
    h = nbd.NBD()
    h.set_export_name(export)
    try:
        h.connect_unix(sock)
    except nbd.Error as e:
        die("%s: connect: %s" % (export, e.string))
    return h


def err_name(e):
    return errno.errorcode.get(e.errnum, str(e.errnum))


def do_write(h, export, off, path):
    data = open(path, "rb").read()
    for i in range(0, len(data), PIECE):
        h.pwrite(data[i:i + PIECE], off + i)
    h.flush()


def do_read(h, export, off, length, out):
    with open(out, "wb") as f:
        for i in range(0, length, PIECE):
            f.write(h.pread(min(PIECE, length - i), off + i))


def do_sum(h):
    size, s = h.get_size(), hashlib.sha256()
    for i in range(0, size, PIECE):
        s.update(h.pread(min(PIECE, size - i), i))
    print(s.hexdigest())


def refused(what, fn):
    """fn() must fail with EPERM from the server; returns a failure or None."""
    try:
        fn()
    except nbd.Error as e:
        if e.errnum == errno.EPERM:
            return None
        return "%s got %s (%s), not EPERM" % (what, err_name(e), e.string)
    return "%s succeeded" % what


def do_readonly(sock, export):
    h = connect(sock, export)
    bad = []
    if not h.is_read_only():
        bad.append("the server does not set NBD_FLAG_READ_ONLY")
    h.set_strict_mode(0)        # send the requests: the server must refuse
    before = h.pread(65536, 0)
    bad += filter(None, [
        refused("a WRITE", lambda: h.pwrite(b"\x5a" * 4096, 0)),
        refused("a TRIM", lambda: h.trim(4096, 0)),
        refused("a WRITE_ZEROES", lambda: h.zero(4096, 0)),
    ])
    g = connect(sock, export)   # a second client, while the first is on
    if g.pread(65536, 0) != before or h.pread(65536, 0) != before:
        bad.append("two clients at once read different bytes, or the "
                   "refused writes changed them")
    g.shutdown()
    h.shutdown()
    if bad:
        die("%s: %s" % (export, "; ".join(bad)))
    print("nbd-io: %s is read-only (flag set; write, trim, zeroes: EPERM; "
          "two clients at once)" % export)


def main():
    if len(sys.argv) < 4:
        die("usage: see the docstring")
    op, sock, export = sys.argv[1:4]
    a = sys.argv[4:]
    if op == "readonly":
        return do_readonly(sock, export)
    h = connect(sock, export)
    try:
        if op == "write":
            do_write(h, export, int(a[0]), a[1])
        elif op == "read":
            do_read(h, export, int(a[0]), int(a[1]), a[2])
        elif op == "zero":
            h.zero(int(a[1]), int(a[0]))
            h.flush()
        elif op == "trim":
            h.trim(int(a[1]), int(a[0]))
            h.flush()
        elif op == "size":
            print(h.get_size())
        elif op == "sum":
            do_sum(h)
        else:
            die("unknown operation %s" % op)
        h.shutdown()
    except nbd.Error as e:
        die("%s %s: %s (%s)" % (op, export, e.string, err_name(e)))


main()
