"""crc32c (Castagnoli), as TensorFlow and LevelDB checksum their blocks and tensors."""

from __future__ import annotations

import numpy as np

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8


def _byte_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (_POLY if c & 1 else 0)
        table.append(c)
    return table


_TABLE = _byte_table()


def crc32c_table(data: bytes, crc: int = 0) -> int:
    """crc32c one byte at a time in pure Python: the fallback without google-crc32c's C extension."""
    state = crc ^ 0xFFFFFFFF
    for b in data:
        state = _TABLE[(state ^ b) & 0xFF] ^ (state >> 8)
    return state ^ 0xFFFFFFFF


def _load_google_crc32c():
    try:
        import google_crc32c
    except ImportError:
        return None
    # Its pure-Python implementation is no faster than the byte table above.
    return google_crc32c if getattr(google_crc32c, "implementation", None) == "c" else None


_google_crc32c = _load_google_crc32c()


def crc32c(data, crc: int = 0) -> int:
    """crc32c of a bytes-like object or numpy array, continuing from ``crc``.

    By google-crc32c's C extension (a dependency; ~10 GB/s) when it has one, else by
    :func:`crc32c_table` (~2 MB/s: pass ``verify=False`` to the reader to skip checks).
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    buf = np.ascontiguousarray(buf).reshape(-1).view(np.uint8)
    if _google_crc32c is None:
        return crc32c_table(buf.tobytes(), crc)
    if buf.flags.writeable:  # the extension takes read-only buffers only
        buf = buf.view()
        buf.flags.writeable = False
    return _google_crc32c.extend(crc, buf)


def mask_crc(crc: int) -> int:
    """The rotate-and-add masking LevelDB/TensorFlow apply to stored crc32c values."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF
