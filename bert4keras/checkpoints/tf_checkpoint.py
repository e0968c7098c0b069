"""Google TensorFlow checkpoints (tensor bundle V2) read and written without TensorFlow.

A checkpoint ``<prefix>`` is ``<prefix>.index``, an SSTable (LevelDB table format)
mapping each variable name to a ``BundleEntryProto``, plus the raw tensor bytes
in ``<prefix>.data-NNNNN-of-NNNNN`` shards. Everything here is numpy and the
standard library: protobufs, the table format, crc32c and snappy are decoded by hand.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import struct

import ml_dtypes
import numpy as np

from bert4keras.checkpoints.base import CheckpointError, CheckpointReader

__all__ = ["TFCheckpointReader", "list_variables", "load_variable", "write_tf_checkpoint"]

# --------------------------------------------------------------------------
# crc32c (Castagnoli), as TensorFlow and LevelDB use it.
#
# Big buffers are cut into equal lanes whose CRCs run side by side in numpy;
# the lane CRCs are then merged pairwise with the linear "append n zero bytes"
# operator of the CRC register, so the result equals the sequential CRC.
# --------------------------------------------------------------------------

_CRC_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_CRC_MASK_DELTA = 0xA282EAD8


def _crc_tables() -> tuple[list[int], np.ndarray, np.ndarray]:
    """Byte table, plus two 16-bit tables that advance the register by 4 bytes at once."""
    t = np.zeros((4, 256), dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (_CRC_POLY if c & 1 else 0)
        t[0, i] = c
    for k in range(1, 4):
        t[k] = (t[k - 1] >> 8) ^ t[0][t[k - 1] & 0xFF]
    v = np.arange(1 << 16, dtype=np.uint32)
    low = t[3][v & 0xFF] ^ t[2][v >> 8]
    high = t[1][v & 0xFF] ^ t[0][v >> 8]
    return [int(x) for x in t[0]], low, high


_CRC_TABLE0, _CRC_LOW16, _CRC_HIGH16 = _crc_tables()


def _crc_bytes(state: int, data: bytes) -> int:
    """Advance the (unfinalised) CRC register over ``data`` one byte at a time."""
    table = _CRC_TABLE0
    for b in data:
        state = table[(state ^ b) & 0xFF] ^ (state >> 8)
    return state


def _gf2_apply(columns: list[int], x: int) -> int:
    """Multiply a 32x32 GF(2) matrix (given by the images of the unit bits) by ``x``."""
    out, bit = 0, 0
    while x:
        if x & 1:
            out ^= columns[bit]
        x >>= 1
        bit += 1
    return out


@functools.cache
def _zero_shift(nbytes: int) -> tuple[int, ...]:
    """GF(2) matrix (images of the 32 unit bits) of 'feed nbytes zero bytes into the register'."""
    if nbytes == 1:
        return tuple(_crc_bytes(1 << i, b"\0") for i in range(32))
    half = _zero_shift(nbytes // 2)
    columns = tuple(_gf2_apply(half, c) for c in half)
    return tuple(_gf2_apply(_zero_shift(1), c) for c in columns) if nbytes % 2 else columns


@functools.lru_cache(maxsize=256)
def _zero_shift_tables(nbytes: int) -> np.ndarray:
    """The same map as four byte-indexed lookup tables, for vectorised use."""
    columns = np.array(_zero_shift(nbytes), dtype=np.uint32)
    v = np.arange(256, dtype=np.uint32)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for k in range(4):
        for bit in range(8):
            tables[k] ^= np.where((v >> bit) & 1, columns[8 * k + bit], np.uint32(0))
    return tables


def crc32c(data, crc: int = 0) -> int:
    """crc32c of a bytes-like object or numpy array, continuing from ``crc``.

    Uses the hardware-accelerated C extension of ``google-crc32c`` when it is
    installed with one (a dependency; ~10 GB/s), else the numpy lanes below (~0.4 GB/s).
    """
    if _fast_crc32c is not None:
        buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
        buf = np.ascontiguousarray(buf).reshape(-1).view(np.uint8)
        if buf.flags.writeable:  # the extension takes read-only buffers only
            buf = buf.view()
            buf.flags.writeable = False
        return _fast_crc32c.extend(crc, buf)
    return crc32c_numpy(data, crc)


def _load_fast_crc32c():
    try:
        import google_crc32c
    except ImportError:
        return None
    # Its pure-Python fallback is far slower than the numpy path.
    return google_crc32c if getattr(google_crc32c, "implementation", None) == "c" else None


_fast_crc32c = _load_fast_crc32c()


def crc32c_numpy(data, crc: int = 0) -> int:
    """crc32c in numpy alone (the fallback of :func:`crc32c`)."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    buf = np.ascontiguousarray(buf).reshape(-1).view(np.uint8)
    state = crc ^ 0xFFFFFFFF
    lane = min(1024, (buf.size // 256) & ~3)
    lanes = buf.size // lane if lane >= 16 else 0
    if lanes >= 2:
        words = buf[: lanes * lane].view("<u4").reshape(lanes, lane // 4)
        s = np.zeros(lanes, dtype=np.uint32)
        s[0] = state
        low, high, tmp = np.empty_like(s), np.empty_like(s), np.empty_like(s)
        for j in range(lane // 4):  # in place: no allocation per step
            np.bitwise_xor(s, words[:, j], out=s)
            np.bitwise_and(s, 0xFFFF, out=low)
            np.right_shift(s, 16, out=high)
            np.take(_CRC_LOW16, low, out=s)
            np.take(_CRC_HIGH16, high, out=tmp)
            np.bitwise_xor(s, tmp, out=s)
        length = lane
        while s.size > 1:
            if s.size % 2:  # a leading all-zero lane from a zero register changes nothing
                s = np.concatenate([np.zeros(1, np.uint32), s])
            t = _zero_shift_tables(length)
            a = s[0::2]
            s = (
                t[0][a & 0xFF]
                ^ t[1][(a >> 8) & 0xFF]
                ^ t[2][(a >> 16) & 0xFF]
                ^ t[3][a >> 24]
                ^ s[1::2]
            )
            length *= 2
        state = int(s[0])
        buf = buf[lanes * lane :]
    return _crc_bytes(state, buf.tobytes()) ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """The rotate-and-add masking LevelDB/TensorFlow apply to stored crc32c values."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


# --------------------------------------------------------------------------
# snappy (raw block format), for index blocks a writer chose to compress
# --------------------------------------------------------------------------


def _snappy_decompress(data: bytes, where: str) -> bytes:
    """Decode one raw snappy block; raises CheckpointError on malformed input."""
    try:
        size, pos = _read_varint(data, 0)
        out = bytearray()
        while pos < len(data):
            tag = data[pos]
            pos += 1
            kind = tag & 3
            if kind == 0:  # literal
                n = tag >> 2
                if n >= 60:
                    extra = n - 59
                    n = int.from_bytes(data[pos : pos + extra], "little")
                    pos += extra
                n += 1
                if pos + n > len(data):
                    raise ValueError("literal runs past the end")
                out += data[pos : pos + n]
                pos += n
                continue
            if kind == 1:
                n = 4 + ((tag >> 2) & 7)
                offset = ((tag >> 5) << 8) | data[pos]
                pos += 1
            else:
                width = 2 if kind == 2 else 4
                n = (tag >> 2) + 1
                offset = int.from_bytes(data[pos : pos + width], "little")
                pos += width
            if offset == 0 or offset > len(out):
                raise ValueError(f"copy offset {offset} outside the {len(out)} bytes decoded")
            for _ in range(n):  # copies may overlap their own output
                out.append(out[-offset])
        if len(out) != size:
            raise ValueError(f"decoded {len(out)} bytes, header says {size}")
        return bytes(out)
    except (ValueError, IndexError) as e:
        raise CheckpointError(f"{where}: corrupt snappy-compressed block ({e})") from e


# --------------------------------------------------------------------------
# varints and the few protobuf messages of a tensor bundle
# --------------------------------------------------------------------------


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: ints, or bytes for nested data."""
    fields = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            value = buf[pos : pos + n]
            pos += n
        elif wire == 5:
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated protobuf field")
        fields.append((number, value))
    return fields


def _proto_varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _proto_bytes_field(number: int, value: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(value)) + value


# TensorFlow DataType enum -> numpy dtype, for the types a checkpoint reader can return.
_TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.float64),
    3: np.dtype(np.int32),
    4: np.dtype(np.uint8),
    5: np.dtype(np.int16),
    6: np.dtype(np.int8),
    8: np.dtype(np.complex64),
    9: np.dtype(np.int64),
    10: np.dtype(np.bool_),
    14: np.dtype(ml_dtypes.bfloat16),
    17: np.dtype(np.uint16),
    18: np.dtype(np.complex128),
    19: np.dtype(np.float16),
    22: np.dtype(np.uint32),
    23: np.dtype(np.uint64),
}
_TF_DTYPE_CODES = {dt: code for code, dt in _TF_DTYPES.items()}
_TF_OTHER_DTYPE_NAMES = {7: "string", 20: "resource", 21: "variant"}


class _Entry:
    """One decoded ``BundleEntryProto``."""

    def __init__(self, value: bytes):
        self.dtype = 0
        self.shape: list[int] = []
        self.unknown_rank = False
        self.shard_id = self.offset = self.size = 0
        self.crc32c: int | None = None
        self.has_slices = False
        for number, v in _proto_fields(value):
            if number == 1:
                self.dtype = v
            elif number == 2:
                for n2, dim in _proto_fields(v):
                    if n2 == 2:
                        size = dict(_proto_fields(dim)).get(1, 0)
                        self.shape.append(size - (1 << 64) if size >= 1 << 63 else size)
                    elif n2 == 3:
                        self.unknown_rank = bool(dim)
            elif number == 3:
                self.shard_id = v
            elif number == 4:
                self.offset = v
            elif number == 5:
                self.size = v
            elif number == 6:
                self.crc32c = v
            elif number == 7:
                self.has_slices = True


# --------------------------------------------------------------------------
# SSTable (LevelDB table format) reading and writing
# --------------------------------------------------------------------------

_TABLE_MAGIC = 0xDB4775248B80FB57
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
        return _snappy_decompress(contents[:-1], where)
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
            shared, pos = _read_varint(block, pos)
            unshared, pos = _read_varint(block, pos)
            value_len, pos = _read_varint(block, pos)
            if shared > len(key) or pos + unshared + value_len > limit:
                raise ValueError(f"entry at byte {pos} overruns the block")
            key = key[:shared] + block[pos : pos + unshared]
            pos += unshared
            entries.append((key, block[pos : pos + value_len]))
            pos += value_len
        return entries
    except ValueError as e:
        raise CheckpointError(f"{where}: corrupt table block ({e})") from e


def _read_table(path: str) -> list[tuple[bytes, bytes]]:
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
    if magic != _TABLE_MAGIC:
        raise CheckpointError(
            f"{path}: bad magic number {magic:#018x}, expected {_TABLE_MAGIC:#018x} "
            "(not a TF checkpoint index, or truncated)"
        )
    footer = table[-_FOOTER_SIZE:]
    try:
        _, pos = _read_varint(footer, 0)  # metaindex handle: TF stores nothing there
        _, pos = _read_varint(footer, pos)
        index_offset, pos = _read_varint(footer, pos)
        index_size, pos = _read_varint(footer, pos)
    except ValueError as e:
        raise CheckpointError(f"{path}: corrupt table footer ({e})") from e
    entries = []
    for _, handle in _block_entries(_read_block(table, (index_offset, index_size), path), path):
        try:
            offset, pos = _read_varint(handle, 0)
            size, _ = _read_varint(handle, pos)
        except ValueError as e:
            raise CheckpointError(f"{path}: corrupt block handle in the table index ({e})") from e
        entries += _block_entries(_read_block(table, (offset, size), path), path)
    return entries


def _build_block(items: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    out = bytearray()
    restarts = []
    prev = b""
    for i, (key, value) in enumerate(items):
        if i % restart_interval == 0:
            restarts.append(len(out))
            shared = 0
        else:
            shared = len(os.path.commonprefix([prev, key]))
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        out += key[shared:] + value
        prev = key
    restarts = restarts or [0]
    out += struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def _write_table(f, items: list[tuple[bytes, bytes]]) -> None:
    """Write sorted (key, value) pairs as an uncompressed SSTable."""
    pos = 0

    def emit(block: bytes) -> bytes:
        nonlocal pos
        handle = _varint(pos) + _varint(len(block))
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
            index.append((key, emit(_build_block(chunk, _RESTART_INTERVAL))))
            chunk, chunk_bytes = [], 0
    if chunk:
        index.append((chunk[-1][0], emit(_build_block(chunk, _RESTART_INTERVAL))))
    meta_handle = emit(_build_block([], 1))
    index_handle = emit(_build_block(index, 1))
    footer = (meta_handle + index_handle).ljust(_FOOTER_SIZE - 8, b"\0")
    f.write(footer + struct.pack("<Q", _TABLE_MAGIC))


# --------------------------------------------------------------------------
# the reader
# --------------------------------------------------------------------------

_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")


def _resolve_prefix(path: str) -> str:
    """Checkpoint prefix from a prefix, an ``.index``/``.data-*`` file, or a directory."""
    if os.path.isdir(path):
        state = os.path.join(path, "checkpoint")
        if os.path.isfile(state):
            with open(state, encoding="utf-8", errors="replace") as f:
                m = re.search(r'^model_checkpoint_path:\s*"(.*)"', f.read(), re.M)
            if m:  # the named prefix, else its basename here (a moved directory)
                for prefix in (
                    os.path.join(path, m.group(1)),
                    os.path.join(path, os.path.basename(m.group(1))),
                ):
                    if os.path.isfile(prefix + ".index"):
                        return prefix
        found = sorted(glob.glob(os.path.join(glob.escape(path), "*.index")))
        if len(found) == 1:
            return found[0][: -len(".index")]
        if not found:
            raise CheckpointError(f"{path}: directory holds no TF checkpoint (no *.index file)")
        names = ", ".join(os.path.basename(p) for p in found)
        raise CheckpointError(
            f"{path}: directory holds several TF checkpoints ({names}); pass one prefix"
        )
    if path.endswith(".index"):
        path = path[: -len(".index")]
    else:
        path = _DATA_SUFFIX.sub("", path)
    if not os.path.isfile(path + ".index"):
        raise CheckpointError(f"{path}: no TF checkpoint here ({path}.index not found)")
    return path


def _data_filename(prefix: str, shard: int, num_shards: int) -> str:
    return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


class TFCheckpointReader(CheckpointReader):
    """A Google TF checkpoint (``bert_model.ckpt``), read without TensorFlow.

    ``path`` is the prefix, its ``.index`` file, or a directory holding one
    checkpoint. Tensors are read lazily, one memory-mapped slice at a time, and
    their crc32c is checked unless ``verify=False``. bfloat16 tensors come back
    as float32 (exact); string and other non-numeric entries are listed in
    ``skipped`` (name -> reason) instead of ``names()``.
    """

    format = "tf"

    def __init__(self, path: str, verify: bool = True):
        prefix = _resolve_prefix(os.fspath(path))
        super().__init__(prefix)
        self.prefix = prefix
        self.verify = verify
        self.skipped: dict[str, str] = {}
        self._maps: dict[int, np.memmap] = {}
        index_path = prefix + ".index"
        raw = _read_table(index_path)
        records = {}
        for key, value in raw:
            try:
                records[key.decode("utf-8")] = value
            except UnicodeDecodeError:
                raise CheckpointError(f"{index_path}: variable name {key!r} is not UTF-8") from None
        if "" not in records:
            raise CheckpointError(f"{index_path}: no bundle header entry (not a TF V2 checkpoint?)")
        try:
            header = dict(_proto_fields(records.pop("")))
        except ValueError as e:
            raise CheckpointError(f"{index_path}: corrupt bundle header ({e})") from e
        self.num_shards = header.get(1, 0)
        self.big_endian = header.get(2, 0) == 1
        if self.num_shards < 1:
            raise CheckpointError(f"{index_path}: bundle header says {self.num_shards} data shards")
        self._meta: dict[str, _Entry] = {}
        shard_sizes: dict[int, int] = {}
        for name, value in records.items():
            try:
                entry = _Entry(value)
            except ValueError as e:
                raise CheckpointError(f"{index_path}: corrupt entry for {name!r} ({e})") from e
            reason = self._unsupported(entry)
            if reason:
                self.skipped[name] = reason
                continue
            dtype = _TF_DTYPES[entry.dtype]
            expected = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
            if entry.size != expected:
                raise CheckpointError(
                    f"{index_path}: {name!r} is {dtype.name}{entry.shape}, which needs "
                    f"{expected} bytes, but the index records {entry.size}"
                )
            if entry.shard_id >= self.num_shards:
                raise CheckpointError(
                    f"{index_path}: {name!r} lives in shard {entry.shard_id}, but the "
                    f"checkpoint has {self.num_shards} shards"
                )
            if entry.size and entry.shard_id not in shard_sizes:
                shard_sizes[entry.shard_id] = self._shard_size(entry.shard_id)
            if entry.size and entry.offset + entry.size > shard_sizes[entry.shard_id]:
                raise CheckpointError(
                    f"{self._shard_path(entry.shard_id)}: {name!r} spans bytes "
                    f"{entry.offset}..{entry.offset + entry.size}, past the end of the "
                    f"{shard_sizes[entry.shard_id]}-byte file (truncated?)"
                )
            self._meta[name] = entry
            self._entries[name] = (tuple(entry.shape), dtype.name)

    @staticmethod
    def _unsupported(entry: _Entry) -> str:
        """Why an entry cannot be returned as a numpy array ('' when it can)."""
        if entry.dtype not in _TF_DTYPES:
            name = _TF_OTHER_DTYPE_NAMES.get(entry.dtype, f"DataType {entry.dtype}")
            return f"{name} tensors are not loaded (only numeric tensors are)"
        if entry.has_slices:
            return "partitioned variable (saved as slices) is not supported"
        if entry.unknown_rank or any(d < 0 for d in entry.shape):
            return f"shape {entry.shape} is not fully defined"
        return ""

    def _shard_path(self, shard: int) -> str:
        return _data_filename(self.prefix, shard, self.num_shards)

    def _shard_size(self, shard: int) -> int:
        path = self._shard_path(shard)
        try:
            return os.path.getsize(path)
        except OSError:
            raise CheckpointError(
                f"{path}: data shard {shard} of {self.num_shards} is missing"
            ) from None

    def _check(self, name: str) -> str:
        if name in self.skipped:
            raise CheckpointError(
                f"{self.prefix}: variable {name!r} cannot be loaded: {self.skipped[name]}"
            )
        return super()._check(name)

    def _load(self, name: str) -> np.ndarray:
        entry = self._meta[name]
        dtype = _TF_DTYPES[entry.dtype]
        if entry.size == 0:
            return np.zeros(entry.shape, dtype=np.float32 if dtype == ml_dtypes.bfloat16 else dtype)
        if entry.shard_id not in self._maps:
            path = self._shard_path(entry.shard_id)
            try:
                self._maps[entry.shard_id] = np.memmap(path, dtype=np.uint8, mode="r")
            except (OSError, ValueError) as e:
                raise CheckpointError(f"{path}: cannot map data shard ({e})") from e
        raw = self._maps[entry.shard_id][entry.offset : entry.offset + entry.size]
        if len(raw) != entry.size:  # the file shrank after the reader was opened
            raise CheckpointError(
                f"{self._shard_path(entry.shard_id)}: {name!r} needs {entry.size} bytes at "
                f"offset {entry.offset}, the file holds {len(raw)} there"
            )
        if self.verify and entry.crc32c is not None and mask_crc(crc32c(raw)) != entry.crc32c:
            raise CheckpointError(
                f"{self._shard_path(entry.shard_id)}: crc32c mismatch for {name!r} "
                "(the data file is corrupt or does not belong to this index)"
            )
        stored = dtype.newbyteorder(">") if self.big_endian and dtype.itemsize > 1 else dtype
        array = np.array(raw).view(stored).reshape(entry.shape)
        if dtype == ml_dtypes.bfloat16:
            return array.astype(np.float32)
        return array.astype(dtype, copy=False)

    def close(self) -> None:
        self._maps.clear()


def list_variables(path: str) -> list[tuple[str, list[int]]]:
    """Like ``tf.train.list_variables``: sorted (name, shape) of the loadable variables."""
    return TFCheckpointReader(path).list_variables()


def load_variable(path: str, name: str) -> np.ndarray:
    """Like ``tf.train.load_variable``: one variable of a TF checkpoint as a numpy array."""
    with TFCheckpointReader(path) as reader:
        return reader.get(name)


# --------------------------------------------------------------------------
# the writer
# --------------------------------------------------------------------------


def write_tf_checkpoint(prefix: str, tensors: dict[str, np.ndarray]) -> str:
    """Write ``tensors`` as a TF V2 checkpoint (``prefix.index`` + one data shard).

    The result loads with ``tf.train.load_checkpoint`` and bert4keras' reader
    alike; returns ``prefix``. Files are written under temporary names first.
    """
    prefix = os.fspath(prefix)
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(
                f"{prefix}: variable names must be non-empty strings, got {name!r}"
            )
        array = np.asarray(value)
        native = array.dtype.newbyteorder("=") if array.dtype.byteorder == ">" else array.dtype
        if native not in _TF_DTYPE_CODES:
            raise CheckpointError(
                f"{prefix}: cannot write {name!r} of dtype {array.dtype}; supported: "
                + ", ".join(sorted(dt.name for dt in _TF_DTYPE_CODES))
            )
        arrays[name.encode("utf-8")] = array.astype(native, order="C", copy=False)
    directory = os.path.dirname(prefix)
    if directory:
        os.makedirs(directory, exist_ok=True)
    data_path = _data_filename(prefix, 0, 1)
    index_path = prefix + ".index"
    items = [(b"", b"\x08\x01\x1a\x02\x08\x01")]  # num_shards=1, little endian, producer=1
    offset = 0
    with open(data_path + ".tmp", "wb") as f:
        for key in sorted(arrays):
            array = arrays[key]
            raw = array.reshape(-1).view(np.uint8)
            f.write(raw.data)
            dims = b"".join(_proto_bytes_field(2, _proto_varint_field(1, d)) for d in array.shape)
            entry = (
                _proto_varint_field(1, _TF_DTYPE_CODES[array.dtype])
                + _proto_bytes_field(2, dims)
                + _proto_varint_field(4, offset)
                + _proto_varint_field(5, raw.size)
                + b"\x35"
                + struct.pack("<I", mask_crc(crc32c(raw)))
            )
            items.append((key, entry))
            offset += raw.size
    with open(index_path + ".tmp", "wb") as f:
        _write_table(f, items)
    os.replace(data_path + ".tmp", data_path)
    os.replace(index_path + ".tmp", index_path)
    return prefix
