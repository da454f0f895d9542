#!/usr/bin/python3
"""Holds one NBD connection open and runs commands on it, one per line
from stdin, answering one line each on stdout (for a bash coprocess).

  nbd-hold.py URI

Strict mode is off, so a request past the size this connection negotiated
reaches the server, whose answer is what a test checks.  Commands:

  size                   the size negotiated at connect
  write OFF TEXT [fua]   writes TEXT (no spaces) at OFF: "ok" or
                         "error ERRNO_NAME message"
  fill OFF LEN BYTE      writes LEN bytes of BYTE (a number)
  read OFF LEN           "ok TEXT" (the bytes, NULs dropped, others than
                         printable ASCII as '.') or "error ..."
  sum OFF LEN            "ok SHA256" of the bytes
  flush                  "ok" or "error ..."
  quit                   disconnects cleanly and exits

Anything else is answered "error EINVAL unknown command"; a connect that
fails exits 1 with the reason on stderr.
"""

import errno
import hashlib
import sys

import nbd


def err(e):
    name = errno.errorcode.get(e.errnum or 0, "E?")
    return "error %s %s" % (name, e.string.replace("\n", " "))


def run(h, words):
    cmd, args = words[0], words[1:]
    if cmd == "size":
        return str(h.get_size())
    if cmd == "write":
        flags = nbd.CMD_FLAG_FUA if args[2:] == ["fua"] else 0
        h.pwrite(args[1].encode(), int(args[0]), flags)
        return "ok"
    if cmd == "fill":
        h.pwrite(bytes([int(args[2])]) * int(args[1]), int(args[0]))
        return "ok"
    if cmd == "read":
        data = h.pread(int(args[1]), int(args[0])).replace(b"\0", b"")
        # One line: bytes outside printable ASCII are shown as '.'.
        return "ok " + "".join(chr(b) if 0x20 < b < 0x7f else "."
                               for b in data)
    if cmd == "sum":
        return "ok " + hashlib.sha256(h.pread(int(args[1]),
                                              int(args[0]))).hexdigest()
    if cmd == "flush":
        h.flush()
        return "ok"
    return "error EINVAL unknown command %r" % cmd


def main():
    h = nbd.NBD()
    h.set_strict_mode(0)
    h.set_uri_allow_local_file(True)    # tls-certificates=DIR, tls-psk-file=
    try:
        h.connect_uri(sys.argv[1])
    except nbd.Error as e:
        sys.exit("nbd-hold: connect %s: %s" % (sys.argv[1], e))
    print("connected %d" % h.get_size(), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            h.shutdown()
            print("ok", flush=True)
            return 0
        try:
            out = run(h, words)
        except nbd.Error as e:
            out = err(e)
        except (IndexError, ValueError) as e:
            out = "error EINVAL bad arguments: %s" % e
        print(out, flush=True)
    h.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
