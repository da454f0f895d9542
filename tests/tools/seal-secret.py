#!/usr/bin/python3
"""Writes a secret straight into a cryptvold data directory's metadata
store, sealed as cryptvold seals values (lib/crypto/seal.c): AES-256-GCM under
DATA-DIR/node.key with a random 96-bit nonce, the associated data the
version byte and the name, the blob version | nonce | ciphertext | tag.

It stands in for what the daemon does not see coming: another node
writing a shared store (a new secret), or a stored value changed behind
the daemon's back (--update).  SQLite's locking makes it safe beside a
running daemon.

With --unseal it goes the other way: the stored value of secret NAME
(a generated one too) is written to VALUE-FILE (mode 0600, never over an
existing file), for checks that open a volume's header with cryptsetup
as the daemon would.  The daemon must not hold the node key in a TPM:
this reads DATA-DIR/node.key.

Usage: seal-secret.py DATA-DIR NAME VALUE-FILE [--update | --unseal]
"""

import os
import sqlite3
import sys
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1


def seal(key, name, value):
    nonce = os.urandom(12)
    aad = bytes([VERSION]) + name.encode()
    return bytes([VERSION]) + nonce + AESGCM(key).encrypt(nonce, value, aad)


def unseal(key, name, blob):
    if not blob or blob[0] != VERSION:
        sys.exit(f"seal-secret: secret {name}: not a version {VERSION} blob")
    aad = bytes([VERSION]) + name.encode()
    return AESGCM(key).decrypt(blob[1:13], blob[13:], aad)


def write_value(data_dir, key, name, value_file):
    db = sqlite3.connect(os.path.join(data_dir, "meta.db"), timeout=10)
    row = db.execute("SELECT sealed FROM secrets WHERE name = ?",
                     (name,)).fetchone()
    db.close()
    if row is None:
        sys.exit(f"seal-secret: no secret called {name}")
    fd = os.open(value_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(unseal(key, name, row[0]))


def main():
    args = sys.argv[1:]
    update = "--update" in args
    unseal_it = "--unseal" in args
    args = [a for a in args if a not in ("--update", "--unseal")]
    if len(args) != 3 or (update and unseal_it):
        sys.exit(__doc__)
    data_dir, name, value_file = args
    with open(os.path.join(data_dir, "node.key"), "rb") as f:
        key = f.read()
    if unseal_it:
        write_value(data_dir, key, name, value_file)
        return
    with open(value_file, "rb") as f:
        blob = seal(key, name, f.read())
    db = sqlite3.connect(os.path.join(data_dir, "meta.db"), timeout=10)
    with db:
        if update:
            n = db.execute("UPDATE secrets SET sealed = ? WHERE name = ?",
                           (blob, name)).rowcount
            if n != 1:
                sys.exit(f"seal-secret: no secret called {name}")
        else:
            db.execute("INSERT INTO secrets (name, sealed, owner, created) "
                       "VALUES (?, ?, NULL, ?)", (name, blob, int(time.time())))
    db.close()


if __name__ == "__main__":
    main()
