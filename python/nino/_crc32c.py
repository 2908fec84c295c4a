"""CRC-32C (Castagnoli), the checksum of every nino.v1 chunk.

Uses Debian's python3-crcmod C extension when present (about 150 MB/s); otherwise a
table-driven pure-Python implementation (slow: a few MB/s, fine for small models and tests).
"""

import logging

_POLY_REFLECTED = 0x82F63B78  # Castagnoli, bit-reflected


def _make_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY_REFLECTED if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_TABLE = _make_table()


def crc32c_python(data, crc=0):
    """CRC-32C of `data` (bytes-like), continuing from `crc` (0 to start). Pure Python."""
    c = crc ^ 0xFFFFFFFF
    table = _TABLE
    for b in memoryview(data).cast("B"):
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _load_fast():
    try:
        import crcmod.predefined  # python3-crcmod
        import sys

        ext = getattr(sys.modules.get("crcmod.crcmod"), "_usingExtension", False)
        fn = crcmod.predefined.mkPredefinedCrcFun("crc-32c")
        if fn(b"123456789") != 0xE3069283:
            return None, "crcmod's crc-32c failed its check value"
        if not ext:
            return None, "crcmod has no C extension"
        return fn, None
    except Exception as e:  # absent or broken: the pure-Python table
        return None, str(e)


_FAST, _WHY_SLOW = _load_fast()
IMPLEMENTATION = "crcmod" if _FAST is not None else "python"
if _FAST is None:
    logging.getLogger("nino").debug(
        "CRC-32C: pure-Python fallback (%s); install python3-crcmod for speed", _WHY_SLOW)


def crc32c(data):
    """CRC-32C of `data` (bytes-like) as an unsigned 32-bit int."""
    if _FAST is not None:
        return _FAST(data)
    return crc32c_python(data)
