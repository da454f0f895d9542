#!/usr/bin/python3
"""NBD I/O of known sizes against cryptvold, and its /metrics around it.

Usage: metrics-io.py --uri URI --admin SOCK --volume NAME --size BYTES

Scrapes /metrics on the admin socket SOCK, connects to URI with libnbd
(base:allocation asked for), then checks while the connection is open:
  - one more NBD connection, one more attach (of NAME), and with TLS
    (nbds://) one more TLS session, established;
then does a fixed set of requests (writes and reads of several sizes, one
unaligned, flushes, a trim, a zero, a block status, a read past the end
that the server refuses) and scrapes again at once, still connected:
  - bytes written, read, trimmed and zeroed by NAME moved by exactly what
    the requests asked for (the refused read counts no bytes);
  - requests by type moved by the number sent, errors by the refused one;
  - each type's latency histogram _count moved by its number of requests,
    and its _sum by more than 0.
The scrape after the requests does not wait (cryptvold counts a request
before it sends its reply, though a test cannot catch the other order:
the scrape takes far longer than the gap).  After the disconnect (waited for, 5 s at most): the connection and
TLS session gauges are back, and no request counter moved.
Exit 0, or 1 naming the first check that failed.
"""

import argparse
import importlib.util
import os
import socket
import sys
import time

import nbd

spec = importlib.util.spec_from_file_location(
    "prom_check", os.path.join(os.path.dirname(__file__), "prom-check.py"))
prom = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prom)

OPS = ("read", "write", "flush", "trim", "write_zeroes", "block_status", "other")


def die(msg):
    print("metrics-io: " + msg, file=sys.stderr)
    sys.exit(1)


def scrape(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    if not lines[0].split(" ")[1:2] == ["200"]:
        die("GET /metrics: %s: %s" % (lines[0], body[:200]))
    ctype = [l for l in lines if l.lower().startswith("content-type:")]
    if not ctype or "text/plain; version=0.0.4" not in ctype[0]:
        die("GET /metrics: content type %r" % ctype)
    try:
        return prom.parse(body.decode("utf-8"))
    except prom.Bad as e:
        die("GET /metrics: %s" % e)


class Check:
    def __init__(self, vol):
        self.vol = vol

    def get(self, vals, name, **labels):
        k = prom.key(name, sorted(labels.items()))
        if k not in vals:
            die("no series %s" % k)
        return vals[k]

    def moved(self, before, after, want, name, **labels):
        got = self.get(after, name, **labels) - self.get(before, name, **labels)
        if got != want:
            die("%s moved by %s, expected %s"
                % (prom.key(name, sorted(labels.items())), prom.fmt(got),
                   prom.fmt(want)))

    def vmoved(self, before, after, want, name, **labels):
        self.moved(before, after, want, name, volume=self.vol, **labels)


def io(h, size, done):
    """The requests; done[op] = [requests, errors, bytes]."""
    def count(op, n, failed=False):
        d = done[op]
        d[0] += 1
        if failed:
            d[1] += 1
        else:
            d[2] += n

    for off, n in ((0, 4096), (4096, 4096), (65536, 65536), (1 << 20, 1 << 20),
                   (100, 512)):
        h.pwrite(bytes([n & 0xff]) * n, off)
        count("write", n)
    for off, n in ((0, 4096), (65536, 131072), (3, 1000)):
        if len(h.pread(n, off)) != n:
            die("short read")
        count("read", n)
    h.flush()
    count("flush", 0)
    h.flush()
    count("flush", 0)
    h.trim(65536, 2 << 20)
    count("trim", 65536)
    h.zero(8192, 3 << 20)
    count("write_zeroes", 8192)
    h.block_status(1 << 20, 0, lambda *a: 0)
    count("block_status", 0)
    # Past the end: the server's reader refuses it (libnbd's own check is
    # off), the request is answered with an error.
    h.set_strict_mode(0)
    try:
        h.pread(4096, size)
        die("a read past the end of the volume succeeded")
    except nbd.Error:
        pass
    count("read", 4096, failed=True)


def wait_gauges(admin, c, base):
    deadline = time.monotonic() + 5
    while True:
        now = scrape(admin)
        if (c.get(now, "cryptvol_nbd_connections") ==
                c.get(base, "cryptvol_nbd_connections") and
                c.get(now, "cryptvol_tls_sessions", server="nbd") ==
                c.get(base, "cryptvol_tls_sessions", server="nbd")):
            return now
        if time.monotonic() > deadline:
            die("5 s after the disconnect: %g NBD connections and %g TLS "
                "sessions, %g and %g before it"
                % (c.get(now, "cryptvol_nbd_connections"),
                   c.get(now, "cryptvol_tls_sessions", server="nbd"),
                   c.get(base, "cryptvol_nbd_connections"),
                   c.get(base, "cryptvol_tls_sessions", server="nbd")))
        time.sleep(0.02)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--admin", required=True)
    ap.add_argument("--volume", required=True)
    ap.add_argument("--size", type=int, required=True)
    a = ap.parse_args()
    c = Check(a.volume)
    tls = a.uri.startswith("nbds")

    before = scrape(a.admin)
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    h.add_meta_context("base:allocation")
    h.connect_uri(a.uri)
    open_ = scrape(a.admin)
    c.moved(before, open_, 1, "cryptvol_nbd_connections")
    c.moved(before, open_, 1, "cryptvol_nbd_connections_accepted_total")
    c.moved(before, open_, 1, "cryptvol_nbd_attaches_total")
    c.vmoved(before, open_, 1, "cryptvol_volume_attaches_total")
    c.moved(before, open_, 1 if tls else 0, "cryptvol_tls_sessions", server="nbd")
    c.moved(before, open_, 1 if tls else 0,
            "cryptvol_tls_sessions_established_total", server="nbd")
    c.moved(before, open_, 0, "cryptvol_tls_handshake_failures_total", server="nbd")

    done = {op: [0, 0, 0] for op in OPS}
    io(h, a.size, done)
    after = scrape(a.admin)
    for op in OPS:
        req, err, _ = done[op]
        c.vmoved(open_, after, req, "cryptvol_volume_requests_total", op=op)
        c.vmoved(open_, after, err, "cryptvol_volume_request_errors_total", op=op)
        c.moved(open_, after, req, "cryptvol_nbd_request_duration_seconds_count", op=op)
        if req:
            s = "cryptvol_nbd_request_duration_seconds_sum"
            if not c.get(after, s, op=op) > c.get(open_, s, op=op):
                die("%s{op=%s} did not grow" % (s, op))
    for op, name in (("write", "written"), ("read", "read"),
                     ("trim", "trimmed"), ("write_zeroes", "zeroed")):
        c.vmoved(open_, after, done[op][2],
                 "cryptvol_volume_%s_bytes_total" % name)
    h.shutdown()
    del h
    final = wait_gauges(a.admin, c, before)
    for op in OPS:
        c.vmoved(after, final, 0, "cryptvol_volume_requests_total", op=op)
        c.moved(after, final, 0, "cryptvol_nbd_request_duration_seconds_count", op=op)
    print("metrics-io: %d requests, %d bytes written, %d read, counted"
          % (sum(d[0] for d in done.values()), done["write"][2], done["read"][2]))


if __name__ == "__main__":
    main()
