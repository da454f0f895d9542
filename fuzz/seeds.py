#!/usr/bin/env python3
"""Writes seed inputs for the NBD fuzzers: well-formed handshakes (every
option this server knows) and request streams, so the fuzzer starts from
traffic that gets deep into the parsers.  usage: seeds.py DIR"""
import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def go(name, infos=(0, 1, 2, 3)):
    return struct.pack(">I", len(name)) + name + \
        struct.pack(">H", len(infos)) + b"".join(struct.pack(">H", i)
                                                  for i in infos)


def meta(name, queries):
    return struct.pack(">I", len(name)) + name + \
        struct.pack(">I", len(queries)) + \
        b"".join(struct.pack(">I", len(q)) + q for q in queries)


def req(cmd, off, length, flags=0, handle=1, data=b""):
    return struct.pack(">IHHQQI", 0x25609513, flags, cmd, handle, off,
                       length) + data


def main(out):
    o = os.path.join(out, "fuzz-nbd-options")
    r = os.path.join(out, "fuzz-nbd-requests")
    os.makedirs(o, exist_ok=True)
    os.makedirs(r, exist_ok=True)
    seeds = {
        "go": opt(8) + opt(10, meta(b"db1", [b"base:allocation"])) +
        opt(7, go(b"db1")),
        "info-list": opt(3) + opt(6, go(b"")) + opt(9, meta(b"x", [])) +
        opt(9, meta(b"x", [b"base:", b"qemu:dirty-bitmap:a"])) + opt(2),
        "export-name": opt(5) + opt(1, b"volume"),
        "unknown": opt(99, b"\0" * 40) + opt(7, b"\xff" * 8),
    }
    for name, data in seeds.items():
        with open(os.path.join(o, name), "wb") as f:
            f.write(struct.pack(">I", 3) + data)
    session = struct.pack(">QBHB", 1 << 30, 0, 0x1ef, 3)
    streams = {
        "io": req(0, 0, 4096) + req(1, 4096, 8, 1, 2, b"abcdefgh") +
        req(3, 0, 0) + req(4, 0, 65536) + req(6, 8192, 512, 2) +
        req(2, 0, 0),
        "status": req(7, 0, 1 << 20, 8) + struct.pack(">IIII", 4096, 0,
                                                     8192, 3),
        "edges": req(0, (1 << 30) - 1, 2) + req(0, 0, 33 << 20, 4) +
        req(9, 0, 1) + req(0, 0, 0),
    }
    for name, data in streams.items():
        with open(os.path.join(r, name), "wb") as f:
            f.write(session + data)


if __name__ == "__main__":
    main(sys.argv[1])
