"""Deterministic test messages shared by the pytest side and the peer scripts.

Must stay importable by every interpreter the interop suite drives (CPython
2.7 and 3.6+), so no f-strings, no type hints, no bytes.hex().

A message is named by a spec "SIZE:SEED".  Its bytes are a 65521-byte
pseudo-random block (a prime length, so shifted or repeated chunks do not line
up with the period) derived from SEED and repeated up to SIZE bytes.
"""
import binascii
import hashlib

BLOCK_LEN = 65521
_blocks = {}


def _block(seed):
    blk = _blocks.get(seed)
    if blk is None:
        x = (seed * 2654435761 + 12345) & 0x7FFFFFFF
        out = bytearray(BLOCK_LEN)
        for i in range(BLOCK_LEN):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            out[i] = (x >> 16) & 0xFF
        blk = bytes(out)
        _blocks[seed] = blk
    return blk


def message(size, seed):
    """The SIZE-byte message for SEED (bytes)."""
    if size == 0:
        return b""
    blk = _block(seed)
    reps = size // BLOCK_LEN + 1
    return (blk * reps)[:size]


def parse_spec(spec):
    size, seed = spec.split(":")
    return int(size), int(seed)


def from_spec(spec):
    """'SIZE:SEED' -> message(SIZE, SEED); '=TEXT' -> the ASCII TEXT itself."""
    if spec.startswith("="):
        return spec[1:].encode("ascii")
    return message(*parse_spec(spec))


def digest(data):
    """'LEN SHA256HEX' for a message: what the peers print instead of the bytes."""
    return "%d %s" % (len(data), hashlib.sha256(data).hexdigest())


def to_hex(data):
    return binascii.hexlify(data).decode("ascii")
