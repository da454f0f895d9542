#!/usr/bin/python3
"""An independent AES-XTS implementation of the LUKS data path, for tests.

It shares no code with cryptvol: the cipher is python3-cryptography's
(OpenSSL through its own bindings) and the layout rules are written out
here from the LUKS specifications:

  * the data segment starts at DATA_OFFSET bytes in the image;
  * it is cut into encryption sectors of SECTOR_SIZE bytes (512..4096);
  * the tweak of a sector is its plain64 IV: the number of its first
    512-byte unit counted from the start of the data segment, as a 64-bit
    little-endian number padded with zeros to 16 bytes.  So with 4096-byte
    sectors sector k has IV 8*k (cryptsetup's default for LUKS2, unlike
    dm-crypt's iv_large_sectors option, which LUKS does not use);
  * the volume key is the whole XTS key: 64 bytes for AES-256-XTS, 32 for
    AES-128-XTS.

Usage:
  xts-check.py check   IMAGE --key HEX --data-offset N --sector-size S \
                       --plaintext FILE [--offset N] [--plaintext FILE2
                       --offset N2 ...]
      Decrypts the region of IMAGE that holds len(FILE) bytes of the volume
      from byte offset N (any offset, not only sector-aligned) and compares
      it with FILE.  Exit 0 if equal, 1 naming the first mismatching byte.
      Several --plaintext/--offset pairs check several regions in turn.
  xts-check.py encrypt IMAGE --key HEX --data-offset N --sector-size S \
                       --plaintext FILE [--offset N] [...]
      Writes FILE into the volume at byte offset N: the sectors it touches
      are decrypted, the bytes laid over them, and they are encrypted back
      (so a partial first or last sector keeps its other bytes).  Several
      pairs are written in the order given.
  xts-check.py check LAYER --layer --key HEX --data-offset N ...
      The same on a layer file of a volume's chain (docs/store.md): layer
      files are image-shaped (volume byte X at file byte DATA_OFFSET + X,
      the header area a hole), and a layer holds a block when the file
      system says it has data there (SEEK_DATA/SEEK_HOLE).  With --layer
      every sector of each region must also be held by the file (else
      "not held by the layer"), and a file shorter than the region is
      holes, not an error.
  xts-check.py decrypt IMAGE --key HEX --data-offset N --sector-size S \
                       --length L --out FILE [--offset N]
      Writes the L plaintext bytes of the volume from byte offset N (0)
      to FILE: what `cryptsetup open` would read there, for where
      device-mapper cannot be used.
  xts-check.py holes LAYER --data-offset N --offset O --length L
      The layer holds no data in volume bytes [O, O+L): exit 0, or 1 naming
      the first byte it holds.  Several --offset/--length pairs check
      several ranges.
  xts-check.py dump-key
      Reads `cryptsetup luksDump --dump-volume-key` output on stdin and
      prints the volume key as one hex string.
"""

import argparse
import errno
import os
import re
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

UNIT = 512


def die(msg):
    print("xts-check: " + msg, file=sys.stderr)
    sys.exit(1)


def tweak(iv512):
    return iv512.to_bytes(8, "little") + bytes(8)


def crypt_sector(key, iv512, data, encrypt):
    c = Cipher(algorithms.AES(key), modes.XTS(tweak(iv512)))
    op = c.encryptor() if encrypt else c.decryptor()
    return op.update(data) + op.finalize()


class Region:
    """The sectors of the data segment that cover [offset, offset+length)."""

    def __init__(self, args, offset, length):
        self.ss = args.sector_size
        if self.ss < UNIT or self.ss > 4096 or self.ss & (self.ss - 1):
            die("sector size %d (need a power of two from 512 to 4096)"
                % self.ss)
        self.data_offset = args.data_offset
        if self.data_offset % UNIT:
            die("data offset %d is not a multiple of 512" % self.data_offset)
        if offset < 0:
            die("--offset %d is negative" % offset)
        self.offset = offset
        self.length = length
        self.first = self.offset // self.ss            # first sector index
        end = self.offset + length
        self.nsectors = (end + self.ss - 1) // self.ss - self.first
        self.image_off = self.data_offset + self.first * self.ss

    def iv(self, i):
        """plain64 IV of the i-th sector of the region."""
        return (self.first + i) * (self.ss // UNIT)


def parse_key(hexkey):
    try:
        key = bytes.fromhex(re.sub(r"[\s:]", "", hexkey))
    except ValueError:
        die("--key is not hex")
    if len(key) not in (32, 64):
        die("key of %d bytes (AES-XTS needs 32 or 64)" % len(key))
    return key


def first_hole(fd, start, end):
    """The first byte of [start, end) of fd that the file system reports
    as a hole (SEEK_DATA/SEEK_HOLE), or None if it is all data."""
    pos = start
    while pos < end:
        try:
            d = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:      # no data from pos to EOF
                return pos
            raise
        if d > pos:
            return pos
        pos = os.lseek(fd, pos, os.SEEK_HOLE)
    return None


def first_data(fd, start, end):
    """The first byte of [start, end) of fd holding data, or None."""
    try:
        d = os.lseek(fd, start, os.SEEK_DATA)
    except OSError as e:
        if e.errno == errno.ENXIO:
            return None
        raise
    return d if d < end else None


def read_ciphertext(image, region, layer=False):
    need = region.nsectors * region.ss
    with open(image, "rb") as f:
        if layer:
            hole = first_hole(f.fileno(), region.image_off,
                              region.image_off + need)
            if hole is not None:
                die("%s: volume offset %d (file offset %d) is not held by "
                    "the layer (a hole)" % (image, hole - region.data_offset,
                                            hole))
        f.seek(region.image_off)
        data = f.read(need)
    if layer and len(data) < need:
        data += bytes(need - len(data))
    if len(data) != need:
        die("%s: only %d of the %d bytes at image offset %d exist"
            % (image, len(data), need, region.image_off))
    return data


def decrypt_region(key, region, ct):
    ss = region.ss
    return b"".join(crypt_sector(key, region.iv(i), ct[i * ss:(i + 1) * ss],
                                 False)
                    for i in range(region.nsectors))


def explain(key, region, ct, sector_i, want_sector):
    """Guesses why a sector does not decrypt: a different IV rule?"""
    ss = region.ss
    k = region.first + sector_i
    sector_ct = ct[sector_i * ss:(sector_i + 1) * ss]
    candidates = [
        ("the sector index %d (dm-crypt iv_large_sectors)" % k, k),
        ("the 512-byte unit number counted from the start of the image "
         "(%d)" % (k * (ss // UNIT) + region.data_offset // UNIT),
         k * (ss // UNIT) + region.data_offset // UNIT),
        ("the sector index counted from the start of the image (%d)"
         % (k + region.data_offset // ss), k + region.data_offset // ss),
        ("zero", 0),
    ]
    for what, iv in candidates:
        if iv == region.iv(sector_i):
            continue
        pt = crypt_sector(key, iv, sector_ct, False)
        if pt == want_sector:
            return "; that sector decrypts correctly with IV = %s" % what
    return ""


def pairs(args):
    """The (plaintext file, volume offset) pairs, in order."""
    offsets = args.offset or [0]
    if len(offsets) != len(args.plaintext):
        die("%d --plaintext but %d --offset: give one offset per plaintext"
            % (len(args.plaintext), len(offsets)))
    for path, offset in zip(args.plaintext, offsets):
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            die("%s is empty" % path)
        yield path, data, offset


def check_one(args, key, path, want, offset):
    region = Region(args, offset, len(want))
    ct = read_ciphertext(args.image, region, args.layer)
    pt = decrypt_region(key, region, ct)
    skip = region.offset - region.first * region.ss
    got = pt[skip:skip + len(want)]
    if got == want:
        print("xts-check: %s: %d bytes at volume offset %d match %s "
              "(%d-byte sectors %d..%d, data offset %d)"
              % (args.image, len(want), region.offset, path, region.ss,
                 region.first, region.first + region.nsectors - 1,
                 region.data_offset))
        return
    bad = next(i for i in range(len(want)) if got[i] != want[i])
    vol_off = region.offset + bad
    sector = vol_off // region.ss
    i = sector - region.first
    # The part of the plaintext in that sector, to try other IV rules on.
    s_lo = max(sector * region.ss, region.offset)
    s_hi = min((sector + 1) * region.ss, region.offset + len(want))
    hint = ""
    if s_lo == sector * region.ss and s_hi == (sector + 1) * region.ss:
        hint = explain(key, region, ct, i,
                       want[s_lo - region.offset:s_hi - region.offset])
    nbad = sum(1 for a, b in zip(got, want) if a != b)
    die("%s: MISMATCH at byte %d of %s (volume offset %d, image offset %d, "
        "%d-byte sector %d, plain64 IV %d): expected 0x%02x, decrypted 0x%02x; "
        "%d of %d bytes differ%s"
        % (args.image, bad, path, vol_off, region.data_offset + vol_off,
           region.ss, sector, region.iv(i), want[bad], got[bad], nbad,
           len(want), hint))


def cmd_check(args):
    key = parse_key(args.key)
    for path, want, offset in pairs(args):
        check_one(args, key, path, want, offset)
    return 0


def encrypt_one(args, key, fd, path, data, offset):
    region = Region(args, offset, len(data))
    ct = read_ciphertext(args.image, region)
    pt = bytearray(decrypt_region(key, region, ct))
    skip = region.offset - region.first * region.ss
    pt[skip:skip + len(data)] = data
    ss = region.ss
    out = b"".join(crypt_sector(key, region.iv(i),
                                bytes(pt[i * ss:(i + 1) * ss]), True)
                   for i in range(region.nsectors))
    if os.pwrite(fd, out, region.image_off) != len(out):
        die("%s: short write" % args.image)
    print("xts-check: wrote %d bytes of %s at volume offset %d of %s"
          % (len(data), path, region.offset, args.image))


def cmd_encrypt(args):
    key = parse_key(args.key)
    fd = os.open(args.image, os.O_WRONLY)
    try:
        for path, data, offset in pairs(args):
            encrypt_one(args, key, fd, path, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return 0


def cmd_decrypt(args):
    key = parse_key(args.key)
    off = args.offset[0] if args.offset else 0
    step = 1 << 20
    with open(args.out, "wb") as out:
        for pos in range(off, off + args.length, step):
            n = min(step, off + args.length - pos)
            region = Region(args, pos, n)
            pt = decrypt_region(key, region, read_ciphertext(args.image, region))
            skip = region.offset - region.first * region.ss
            out.write(pt[skip:skip + n])
    return 0


def cmd_holes(args):
    offsets, lengths = args.offset or [], args.length or []
    if not offsets or len(offsets) != len(lengths):
        die("holes: give one --length per --offset")
    fd = os.open(args.image, os.O_RDONLY)
    try:
        for off, length in zip(offsets, lengths):
            lo = args.data_offset + off
            d = first_data(fd, lo, lo + length)
            if d is not None:
                die("%s: holds data at volume offset %d (file offset %d), "
                    "in the range [%d, %d) that must be holes"
                    % (args.image, d - args.data_offset, d, off, off + length))
            print("xts-check: %s holds nothing in volume bytes [%d, %d)"
                  % (args.image, off, off + length))
    finally:
        os.close(fd)
    return 0


def cmd_dump_key(_args):
    """Volume key from `cryptsetup luksDump --dump-volume-key`: cryptsetup
    2.6 prints "MK dump:" then the bytes as hex pairs over several lines,
    the continuation lines indented (older and newer releases may say
    "Volume key:")."""
    hexpairs, in_key = [], False
    for line in sys.stdin:
        m = re.match(r"^(MK dump|Volume key):\s*(.*)$", line)
        if m:
            in_key = True
            rest = m.group(2)
        elif in_key and line[:1] in (" ", "\t"):
            rest = line
        else:
            if in_key:
                break
            continue
        hexpairs += re.findall(r"\b[0-9a-fA-F]{2}\b", rest)
    if len(hexpairs) not in (32, 64):
        die("no volume key of 32 or 64 bytes in the luksDump output on stdin "
            "(found %d hex bytes)" % len(hexpairs))
    print("".join(hexpairs).lower())
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("check", "encrypt"):
        s = sub.add_parser(name)
        s.add_argument("image")
        s.add_argument("--key", required=True, help="volume key, hex")
        s.add_argument("--data-offset", type=int, required=True,
                       help="bytes from the start of the image to the data")
        s.add_argument("--sector-size", type=int, required=True)
        s.add_argument("--plaintext", required=True, action="append",
                       help="plaintext file (repeatable)")
        s.add_argument("--offset", type=int, action="append",
                       help="byte offset in the volume (data segment) of "
                       "the matching --plaintext; default 0")
    sub.choices["check"].add_argument(
        "--layer", action="store_true",
        help="IMAGE is a layer file: each sector checked must be held")
    x = sub.add_parser("decrypt")
    x.add_argument("image")
    x.add_argument("--key", required=True)
    x.add_argument("--data-offset", type=int, required=True)
    x.add_argument("--sector-size", type=int, required=True)
    x.add_argument("--offset", type=int, action="append")
    x.add_argument("--length", type=int, required=True)
    x.add_argument("--out", required=True)
    h = sub.add_parser("holes")
    h.add_argument("image")
    h.add_argument("--data-offset", type=int, required=True)
    h.add_argument("--offset", type=int, action="append")
    h.add_argument("--length", type=int, action="append")
    sub.add_parser("dump-key")
    args = p.parse_args()
    return {"check": cmd_check, "encrypt": cmd_encrypt,
            "holes": cmd_holes, "decrypt": cmd_decrypt, "dump-key": cmd_dump_key}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
