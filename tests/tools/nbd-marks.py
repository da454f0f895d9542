#!/usr/bin/python3
"""Writes or checks a marker naming each volume at offset 0, over NBD.

  nbd-marks.py write SOCKET VOLUME...
  nbd-marks.py check SOCKET VOLUME...

check exits 1 and names every volume that did not attach or read back
wrong, with the server's error."""
import sys

import nbd


def mark(name):
    return ("cryptvol-marker:%s:" % name).encode().ljust(4096, b"#")


def main():
    op, sock, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    bad = []
    for name in names:
        h = nbd.NBD()
        h.set_export_name(name)
        try:
            h.connect_unix(sock)
            if op == "write":
                h.pwrite(mark(name), 0)
                h.flush()
            elif h.pread(4096, 0) != mark(name):
                bad.append("%s: wrong data" % name)
            h.shutdown()
        except nbd.Error as e:
            bad.append("%s: %s" % (name, e.string))
    for b in bad:
        print(b, file=sys.stderr)
    sys.exit(1 if bad else 0)


main()
