"""SSTables (the LevelDB table format), which hold a TF checkpoint's ``.index``.

A table is blocks of prefix-compressed (key, value) pairs, each followed by a
compression byte and a masked crc32c, then an index block of (last key, block
handle) pairs, and a 48-byte footer pointing at the index.
"""

from __future__ import annotations

import os
import struct

from bert4keras.checkpoints.base import CheckpointError
from bert4keras.checkpoints.crc import crc32c, mask_crc
from bert4keras.checkpoints.protobuf import read_varint, varint
from bert4keras.checkpoints.snappy import snappy_decompress

TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the 8-byte magic
_BLOCK_TRAILER = 5  # compression type byte + masked crc32c
_RESTART_INTERVAL = 16
_BLOCK_SIZE = 256 * 1024


def _read_block(table: bytes, handle: tuple[int, int], where: str) -> bytes:
    """Bytes of the block at (offset, size), checksum-verified and decompressed."""
    offset, size = handle
    end = offset + size + _BLOCK_TRAILER
    if end > len(table):
        raise CheckpointError(
            f"{where}: block at offset {offset} (+{size} bytes) runs past the end of the "
            f"{len(table)}-byte file (truncated?)"
        )
    contents = table[offset : offset + size + 1]
    stored = int.from_bytes(table[offset + size + 1 : end], "little")
    if mask_crc(crc32c(contents)) != stored:
        raise CheckpointError(f"{where}: checksum mismatch in the block at offset {offset}")
    kind = contents[-1]
    if kind == 0:
        return contents[:-1]
    if kind == 1:
        return snappy_decompress(contents[:-1], where)
    raise CheckpointError(f"{where}: block at offset {offset} has unknown compression type {kind}")


def _block_entries(block: bytes, where: str) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of one block, undoing the shared-prefix key compression."""
    try:
        if len(block) < 4:
            raise ValueError("block shorter than its restart count")
        num_restarts = int.from_bytes(block[-4:], "little")
        limit = len(block) - 4 * (num_restarts + 1)
        if limit < 0:
            raise ValueError(f"{num_restarts} restart points do not fit in {len(block)} bytes")
        entries = []
        key = b""
        pos = 0
        while pos < limit:
            shared, pos = read_varint(block, pos)
            unshared, pos = read_varint(block, pos)
            value_len, pos = read_varint(block, pos)
            if shared > len(key) or pos + unshared + value_len > limit:
                raise ValueError(f"entry at byte {pos} overruns the block")
            key = key[:shared] + block[pos : pos + unshared]
            pos += unshared
            entries.append((key, block[pos : pos + value_len]))
            pos += value_len
        return entries
    except ValueError as e:
        raise CheckpointError(f"{where}: corrupt table block ({e})") from e


def read_table(path: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) pair of an SSTable file, in file order."""
    try:
        with open(path, "rb") as f:
            table = f.read()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint index ({e})") from e
    if len(table) < _FOOTER_SIZE:
        raise CheckpointError(
            f"{path}: {len(table)} bytes is too short for a checkpoint index (truncated?)"
        )
    magic = int.from_bytes(table[-8:], "little")
    if magic != TABLE_MAGIC:
        raise CheckpointError(
            f"{path}: bad magic number {magic:#018x}, expected {TABLE_MAGIC:#018x} "
            "(not a TF checkpoint index, or truncated)"
        )
    footer = table[-_FOOTER_SIZE:]
    try:
        _, pos = read_varint(footer, 0)  # metaindex handle: TF stores nothing there
        _, pos = read_varint(footer, pos)
        index_offset, pos = read_varint(footer, pos)
        index_size, pos = read_varint(footer, pos)
    except ValueError as e:
        raise CheckpointError(f"{path}: corrupt table footer ({e})") from e
    entries = []
    for _, handle in _block_entries(_read_block(table, (index_offset, index_size), path), path):
        try:
            offset, pos = read_varint(handle, 0)
            size, _ = read_varint(handle, pos)
        except ValueError as e:
            raise CheckpointError(f"{path}: corrupt block handle in the table index ({e})") from e
        entries += _block_entries(_read_block(table, (offset, size), path), path)
    return entries


def build_block(items: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    """One uncompressed block of sorted (key, value) pairs, trailer not included."""
    out = bytearray()
    restarts = []
    prev = b""
    for i, (key, value) in enumerate(items):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = len(os.path.commonprefix([prev, key]))
        out += varint(shared) + varint(len(key) - shared) + varint(len(value))
        out += key[shared:] + value
        prev = key
    restarts = restarts or [0]
    out += struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def write_table(f, items: list[tuple[bytes, bytes]]) -> None:
    """Write sorted (key, value) pairs to the binary file ``f`` as an uncompressed SSTable."""
    pos = 0

    def emit(block: bytes) -> bytes:
        nonlocal pos
        handle = varint(pos) + varint(len(block))
        trailer = b"\0" + struct.pack("<I", mask_crc(crc32c(block + b"\0")))
        f.write(block + trailer)
        pos += len(block) + _BLOCK_TRAILER
        return handle

    index = []
    chunk: list[tuple[bytes, bytes]] = []
    chunk_bytes = 0
    for key, value in items:
        chunk.append((key, value))
        chunk_bytes += len(key) + len(value)
        if chunk_bytes >= _BLOCK_SIZE:
            index.append((key, emit(build_block(chunk, _RESTART_INTERVAL))))
            chunk, chunk_bytes = [], 0
    if chunk:
        index.append((chunk[-1][0], emit(build_block(chunk, _RESTART_INTERVAL))))
    meta_handle = emit(build_block([], 1))
    index_handle = emit(build_block(index, 1))
    footer = (meta_handle + index_handle).ljust(_FOOTER_SIZE - 8, b"\0")
    f.write(footer + struct.pack("<Q", TABLE_MAGIC))
