#!/usr/bin/env python3
"""Writes seed inputs for the NBD fuzzers and the replication protocol's
(fuzz-repl-proto: one well-formed payload of each type).  The NBD ones: well-formed handshakes (every
option this server knows, naming the exports fuzz/fuzz-server.c serves)
and request streams on each export, so the fuzzer starts from traffic
that gets deep into the server.  usage: seeds.py DIR"""
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


# The exports of fuzz/fuzz-server.c: index (byte 8 of a requests seed's
# session), name, size.
EXPORTS = [(0, b"vol", 1 << 20), (1, b"odd", (1 << 20) + 1000),
           (2, b"enc", 1 << 20)]


def requests(size):
    """A stream of every command, with edges at this export's end."""
    return (req(0, 0, 4096) + req(1, 4096, 8, 1, 2, b"abcdefgh") +
            req(1, 1000, 5000, 0, 3, b"w" * 5000) + req(3, 0, 0) +
            req(4, 0, 65536) + req(6, 8192, 512, 2) + req(0, 1000, 5000) +
            req(7, 0, size, 8) + req(0, size - 2, 2) + req(0, size - 1, 2) +
            req(0, 0, 33 << 20, 4) + req(9, 0, 1) + req(0, 0, 0) +
            req(2, 0, 0))


def main(out):
    o = os.path.join(out, "fuzz-nbd-options")
    r = os.path.join(out, "fuzz-nbd-requests")
    os.makedirs(o, exist_ok=True)
    os.makedirs(r, exist_ok=True)
    seeds = {
        "go": opt(8) + opt(10, meta(b"vol", [b"base:allocation"])) +
        opt(7, go(b"vol")) + requests(1 << 20),
        "info-list": opt(3) + opt(6, go(b"")) + opt(6, go(b"enc")) +
        opt(9, meta(b"x", [])) +
        opt(9, meta(b"x", [b"base:", b"qemu:dirty-bitmap:a"])) + opt(2),
        "export-name": opt(5) + opt(1, b"odd") + requests((1 << 20) + 1000),
        "unknown": opt(99, b"\0" * 40) + opt(7, b"\xff" * 8) +
        opt(1, b"no-such-volume"),
        # Above the 64 KiB option limit: read past and refused.
        "too-big": opt(99, b"\0" * 65600) + opt(3),
        # Headers alone, saying more than the server reads past (1 MiB),
        # or an export name above the limit: the server hangs up at once.
        "too-big-hangup": struct.pack(">QII", IHAVEOPT, 99, 2 << 20),
        "export-name-too-big": struct.pack(">QII", IHAVEOPT, 1, 70000),
    }
    for name, data in seeds.items():
        with open(os.path.join(o, name), "wb") as f:
            f.write(struct.pack(">I", 3) + data)
    # Session: 8 bytes not used, the export's index, 2 bytes not used,
    # then structured replies (bit 0) and base:allocation (bit 1).
    for idx, name, size in EXPORTS:
        for flags in (0, 3):
            session = struct.pack(">QBHB", 0, idx, 0, flags)
            with open(os.path.join(r, "%s-%d" % (name.decode(), flags)),
                      "wb") as f:
                f.write(session + requests(size))
    with open(os.path.join(r, "status"), "wb") as f:
        f.write(struct.pack(">QBHB", 0, 0, 0, 3) +
                req(7, 0, 1 << 20, 8) + req(7, 4096, 1 << 19))
    # A write above the 32 MiB payload limit: refused, and its payload
    # read past (here, to the end of the stream).
    with open(os.path.join(r, "big-write"), "wb") as f:
        f.write(struct.pack(">QBHB", 0, 0, 0, 1) + req(1, 0, 33 << 20) +
                b"x" * 4096)


def repl_name(s):
    return struct.pack(">H", len(s)) + s


def repl_layers(layers):
    return struct.pack(">I", len(layers)) + b"".join(
        struct.pack(">Iq", i, c) + repl_name(n) for i, c, n in layers)


def repl_seeds(out):
    """fuzz-repl-proto: byte 0 the type (REPL_OPEN + n; 15 OPEN's answer),
    then the payload as daemon/repl/repl-proto.h says."""
    d = os.path.join(out, "fuzz-repl-proto")
    os.makedirs(d, exist_ok=True)
    prefix = struct.pack(">Q", 7) + repl_name(b"db1")
    layers = [(1, 1700000000, b"s1"), (3, 1700000100, b"nightly"), (4, 0, b"")]
    seeds = {
        "open": (0, b""),
        "write": (1, struct.pack(">IIQ", 0, 1, 16384) + b"c" * 8192),
        "write-layer": (1, struct.pack(">IIQ", 3, 0, 1 << 20) + b"m" * 4096),
        "punch": (2, struct.pack(">QQ", 8192, 4096 * 3)),
        "flush": (3, b""),
        "header": (4, struct.pack(">Q", 0) + b"LUKS\xba\xbe" + b"\0" * 500),
        "resize": (5, struct.pack(">Q", 5 << 30)),
        "shape-snapshot": (6, struct.pack(">HIq", 1, 0, 1700000200) +
                           repl_name(b"nightly.2")),
        "shape-drop": (6, struct.pack(">HIq", 4, 3, 0) + repl_name(b"")),
        "mark": (7, repl_name(b"n3") + struct.pack(">QQ", 3 << 20, 4096)),
        "clear-active": (8, repl_name(b"@active") +
                         struct.pack(">QQ", 0, 1 << 30)),
        "read": (9, struct.pack(">IQI", 0, 16384, 4 << 20)),
        "rebuild": (10, struct.pack(">QQ", 16384, 1 << 34) +
                    repl_layers(layers) + repl_name(b"") + repl_name(b"") +
                    struct.pack(">I", 0)),
        # A clone's: its parent volume, snapshot and flags (own format).
        "rebuild-clone": (10, struct.pack(">QQ", 16384, 1 << 34) +
                          repl_layers(layers) + repl_name(b"db0") +
                          repl_name(b"gold") + struct.pack(">I", 1)),
        "commit": (11, b""),
        "delete": (12, b""),
        "status": (13, b""),
        "close": (14, b""),
    }
    for name, (t, body) in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(bytes([t]) + prefix + body)
    with open(os.path.join(d, "open-reply"), "wb") as f:
        f.write(bytes([15]) + struct.pack(">QQQ", 7, 16384, 1 << 34) +
                repl_layers(layers))


if __name__ == "__main__":
    main(sys.argv[1])
    repl_seeds(sys.argv[1])
