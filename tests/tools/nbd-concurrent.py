#!/usr/bin/python3
"""Many NBD connections at once, each writing and checking its own region.

Usage:
  nbd-concurrent.py URI [--connections N] [--region BYTES] [--base OFF]
                    [--seed S] [--started FILE] [--verify-only]

N threads each open their own connection; only when all N are connected
(so the server holds N connections at the same time) does any of them
write.  Thread i owns [BASE + i*REGION, BASE + (i+1)*REGION); REGION need
not be a multiple of the sector size, so neighbours share sectors and the
server must read-modify-write them without losing the other's bytes.  Each
thread writes its region in chunks of random sizes, in random order,
FLUSHes, reads the region back and compares.  At the end one new
connection reads every region and compares again.  The data is a function
of the seed, so --verify-only checks a volume written by an earlier run.
--started FILE is created once every connection is up.  Exit 0, or 1
saying which region is wrong.
"""

import argparse
import random
import sys
import threading

import nbd


def region_data(seed, i, length):
    return random.Random(seed * 100003 + i).randbytes(length)


def connect(uri):
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)       # tls-certificates=DIR
    h.connect_uri(uri)
    return h


def first_diff(a, b):
    for k in range(min(len(a), len(b))):
        if a[k] != b[k]:
            return k
    return min(len(a), len(b))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("uri")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--region", type=int, default=777777)
    p.add_argument("--base", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--started")
    p.add_argument("--verify-only", action="store_true")
    a = p.parse_args()
    n = a.connections
    errors = []
    lock = threading.Lock()

    def err(msg):
        with lock:
            errors.append(msg)

    def check(h, i, who):
        off = a.base + i * a.region
        want = region_data(a.seed, i, a.region)
        got = h.pread(a.region, off)
        if got != want:
            k = first_diff(got, want)
            err("%s: region %d differs at volume byte %d" % (who, i, off + k))

    if not a.verify_only:
        barrier = threading.Barrier(n, timeout=60)

        def worker(i):
            try:
                h = connect(a.uri)
            except nbd.Error as e:
                err("connection %d: %s" % (i, e))
                barrier.abort()
                return
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                err("connection %d: not all %d connections were up "
                    "within 60 s" % (i, n))
                return
            if i == 0 and a.started:
                open(a.started, "w").close()
            try:
                if h.get_size() < a.base + n * a.region:
                    err("export is smaller than %d bytes"
                        % (a.base + n * a.region))
                    return
                data = region_data(a.seed, i, a.region)
                rng = random.Random(i)
                chunks = []
                pos = 0
                while pos < a.region:
                    ln = min(rng.choice((1, 511, 4095, 4096, 4097, 65536,
                                         100000, 262144)), a.region - pos)
                    chunks.append((pos, ln))
                    pos += ln
                rng.shuffle(chunks)
                off = a.base + i * a.region
                for pos, ln in chunks:
                    h.pwrite(data[pos:pos + ln], off + pos)
                h.flush()
                check(h, i, "connection %d" % i)
                h.shutdown()
            except nbd.Error as e:
                err("connection %d: %s" % (i, e))

        threads = [threading.Thread(target=worker, args=(i,))
                   for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            print("nbd-concurrent: %d errors:\n  %s"
                  % (len(errors), "\n  ".join(sorted(errors)[:20])),
                  file=sys.stderr)
            return 1

    try:
        h = connect(a.uri)
        for i in range(n):
            check(h, i, "read back")
        h.shutdown()
    except nbd.Error as e:
        err("read back: %s" % e)
    if errors:
        print("nbd-concurrent: %s" % "\n  ".join(errors[:20]),
              file=sys.stderr)
        return 1
    print("nbd-concurrent: %d regions of %d bytes %s"
          % (n, a.region, "verified" if a.verify_only
             else "written concurrently and verified"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
