#!/usr/bin/python3
"""Looks for secret material in a dump of etcd (etcdctl get --prefix P -w json).

  etcd-secrets-scan.py DUMP.json [--text T]... [--key HEX]...
                       [--unseal NODE-KEY NAME KEY-SUFFIX]... [--plant]

Every value is searched as stored and, because the records keep binary
fields in base64, inside every JSON string of it that decodes as base64.
A --text canary (a passphrase, a secret's value) is looked for as bytes;
a --key (a volume key, a KEK, 32 or 64 bytes) as bytes, as hex (either
case) and as base64.  Prints each hit (key, field, form) and exits 1 if
any; prints how many keys and values it read otherwise.

--unseal takes the record whose etcd key ends with KEY-SUFFIX (a KEK's
"keks/0000000001/n1"), opens its "sealed" field as cryptvold's software
seal does (lib/crypto/seal.c: AES-256-GCM under the node key file
NODE-KEY, associated data the version byte and NAME) and looks for what
it held as for a --key: so the KEK itself is proven absent everywhere
else.  It exits 2 if the record is missing or does not open.

--plant adds one record holding each --key in base64 and each --text in
a field before scanning: the positive control, which must exit 1.
"""

import base64
import binascii
import json
import sys


def strings(v, path=""):
    if isinstance(v, str):
        yield path, v
    elif isinstance(v, dict):
        for k, x in v.items():
            yield from strings(x, path + "." + k)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from strings(x, "%s[%d]" % (path, i))


def b64(s):
    try:
        if len(s) < 16:
            return None
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None


def forms(needle):
    yield "bytes", needle
    yield "hex", needle.hex().encode()
    yield "HEX", needle.hex().upper().encode()
    yield "base64", base64.b64encode(needle).rstrip(b"=")
    yield "base64url", base64.urlsafe_b64encode(needle).rstrip(b"=")


def unseal(records, nodekey, name, suffix):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    found = [v for k, v in records if k.endswith(suffix)]
    if len(found) != 1:
        print("no single record ending in %s (%d)" % (suffix, len(found)))
        sys.exit(2)
    blob = base64.b64decode(json.loads(found[0])["sealed"])
    with open(nodekey, "rb") as f:
        key = f.read()
    try:
        aad = bytes([blob[0]]) + name.encode()
        plain = AESGCM(key).decrypt(blob[1:13], blob[13:], aad)
    except Exception as e:  # InvalidTag has no message
        print("%s: does not open with %s as %r: %r" % (suffix, nodekey, name, e))
        sys.exit(2)
    print("%s: unsealed, %d bytes" % (suffix, len(plain)))
    return plain


def main():
    args = sys.argv[1:]
    dump, texts, keys, unseals, plant = args[0], [], [], [], False
    i = 1
    while i < len(args):
        if args[i] == "--text":
            texts.append(args[i + 1].encode()); i += 2
        elif args[i] == "--key":
            keys.append(bytes.fromhex(args[i + 1])); i += 2
        elif args[i] == "--unseal":
            unseals.append(tuple(args[i + 1:i + 4])); i += 4
        elif args[i] == "--plant":
            plant = True; i += 1
        else:
            sys.exit("unknown argument " + args[i])
    with open(dump) as f:
        kvs = json.load(f).get("kvs", [])
    records = [(base64.b64decode(kv["key"]).decode(errors="replace"),
                base64.b64decode(kv.get("value", ""))) for kv in kvs]
    for nodekey, name, suffix in unseals:
        keys.append(unseal(records, nodekey, name, suffix))
    if plant:
        rec = {"k%d" % j: base64.b64encode(k).decode() for j, k in enumerate(keys)}
        rec.update({"t%d" % j: t.decode() for j, t in enumerate(texts)})
        records.append(("planted", json.dumps(rec).encode()))
    needles = [("text %r" % t.decode(), t, [("bytes", t)]) for t in texts]
    needles += [("key %s..." % k.hex()[:8], k, list(forms(k))) for k in keys]
    hits = []
    for name, value in records:
        blobs = [("value", value)]
        try:
            doc = json.loads(value)
        except ValueError:
            doc = None
        for path, s in strings(doc):
            d = b64(s)
            if d is not None:
                blobs.append(("base64 of " + path, d))
        for what, _, fs in needles:
            for where, blob in blobs:
                for form, n in fs:
                    if n in blob:
                        hits.append("%s: %s as %s in %s" % (name, what, form, where))
    for h in hits:
        print(h)
    if hits:
        return 1
    print("%d keys scanned, %d needles, no hit" % (len(records), len(needles)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
