#!/usr/bin/env python3
"""An independent, generic C2SP tlog-tiles client (no Vallum code): fetches a log's
checkpoint over HTTP, verifies its Ed25519 signed-note signature against a verifier key,
reads every entry bundle and hash tile the spec's way (tile/<L>/<N>[.p/<W>],
tile/entries/<N>[.p/<W>], x-prefixed 3-digit path elements), checks entries against level-0
tiles and each level against the one above, recomputes the RFC 6962 root and compares it with
the checkpoint. Prints a JSON summary; exits 1 on any mismatch.

Usage: tlog_client.py <log URL prefix> <verifier key>
"""
import base64
import hashlib
import json
import struct
import sys
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def fetch(base, path):
    with urllib.request.urlopen(f"{base}/{path}", timeout=30) as r:
        return r.read()


def tile_path(level, index, width):
    parts = []
    n = index
    while True:
        parts.append(n % 1000)
        n //= 1000
        if n == 0:
            break
    parts.reverse()
    elems = [f"x{p:03d}" for p in parts[:-1]] + [f"{parts[-1]:03d}"]
    p = f"tile/{level}/{'/'.join(elems)}"
    if width < 256:
        p += f".p/{width}"
    return p


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(hashes):
    """RFC 6962 Merkle tree hash over leaf hashes."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(hashes[:k]), mth(hashes[k:]))


def open_checkpoint(note, vkey):
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    raw = base64.b64decode(key_b64)
    assert raw[0] == 1, "not an Ed25519 verifier key"
    pub = Ed25519PublicKey.from_public_bytes(raw[1:])
    text, sigs = note.split("\n\n", 1)
    text += "\n"
    for line in sigs.splitlines():
        assert line.startswith("\u2014 "), f"bad signature line {line!r}"
        sig_name, sig_b64 = line[2:].rsplit(" ", 1)
        sig = base64.b64decode(sig_b64)
        if sig_name == name and sig[:4].hex() == key_id_hex:
            pub.verify(sig[4:], text.encode())  # raises on a bad signature
            origin, size, root = text.splitlines()[:3]
            assert origin == name, "origin is not the key name"
            return int(size), base64.b64decode(root)
    raise SystemExit("no signature by the given key")


def main():
    base, vkey = sys.argv[1].rstrip("/"), sys.argv[2]
    size, root = open_checkpoint(fetch(base, "checkpoint").decode(), vkey)
    # Level 0: every entry bundle against its hash tile.
    level_hashes = []
    entries = 0
    for t in range((size + 255) // 256):
        width = min(256, size - t * 256)
        bundle = fetch(base, tile_path("entries", t, width))
        tile = fetch(base, tile_path(0, t, width))
        hashes = [tile[i * 32:(i + 1) * 32] for i in range(width)]
        at = 0
        for i in range(width):
            (n,) = struct.unpack(">H", bundle[at:at + 2])
            data = bundle[at + 2:at + 2 + n]
            at += 2 + n
            if leaf_hash(data) != hashes[i]:
                raise SystemExit(f"entry {t * 256 + i} does not match its tile hash")
            json.loads(data)  # Vallum entries are JSON
            entries += 1
        level_hashes.extend(hashes)
    if mth(level_hashes) != root:
        raise SystemExit("entries do not reproduce the checkpoint root")
    # Higher levels: each stored hash is the root of 256 hashes below.
    level = 1
    below = level_hashes
    while size >> (8 * level) > 0:
        count = size >> (8 * level)
        stored = []
        for t in range((count + 255) // 256):
            width = min(256, count - t * 256)
            tile = fetch(base, tile_path(level, t, width))
            stored.extend(tile[i * 32:(i + 1) * 32] for i in range(width))
        for i, h in enumerate(stored):
            if mth(below[i * 256:(i + 1) * 256]) != h:
                raise SystemExit(f"tile level {level} hash {i} is wrong")
        below = stored
        level += 1
    print(json.dumps({"size": size, "entries": entries, "root": root.hex(), "levels": level}))


if __name__ == "__main__":
    main()
