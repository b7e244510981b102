#!/usr/bin/env python3
"""Writes v1.idx and v2.idx, the index files of golden site-v2's pack, from the format as
docs/formats/on-disk.md states it (not from Vallum's code). Run from this directory."""
import struct

PACK = "../site-v2/packs/0123456789abcdef.pack"
HEADER, RECORD = 32, 40


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


raw = open(PACK, "rb").read()
pack_id = struct.unpack_from("<Q", raw, 16)[0]
records, at = [], HEADER
while at + RECORD <= len(raw):
    header = raw[at:at + RECORD]
    length = struct.unpack_from("<I", header, 4)[0]
    records.append((at, header))
    at += RECORD + length
assert at == len(raw)


def index(version, entries, counts):
    body = b"VALLUMPI" + struct.pack("<IIQQ", version, 0, pack_id, len(raw))
    body += b"".join(struct.pack("<Q", n) for n in counts)
    body += b"".join(struct.pack("<Q", offset) + header for offset, header in entries)
    return body + struct.pack("<I", crc32c(body))


# Version 1: every record in pack order, one count.
open("v1.idx", "wb").write(index(1, records, [len(records)]))
# Version 2: blob records sorted by id (bytes 8..24 of the header), then tombstones.
blobs = sorted((r for r in records if r[1][0] == 1), key=lambda r: r[1][8:24])
tombstones = [r for r in records if r[1][0] == 2]
open("v2.idx", "wb").write(index(2, blobs + tombstones, [len(blobs), len(tombstones)]))
