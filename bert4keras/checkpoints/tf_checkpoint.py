"""Google TensorFlow checkpoints (tensor bundle V2) read and written without TensorFlow.

A checkpoint ``<prefix>`` is ``<prefix>.index``, an SSTable (LevelDB table format)
mapping each variable name to a ``BundleEntryProto``, plus the raw tensor bytes
in ``<prefix>.data-NNNNN-of-NNNNN`` shards. This module reads and writes the
bundle; the table format, protobufs, crc32c and snappy live in ``sstable``,
``protobuf``, ``crc`` and ``snappy`` beside it.
"""

from __future__ import annotations

import glob
import json
import os
import re
import struct

import ml_dtypes
import numpy as np

from bert4keras.checkpoints.base import CheckpointError, CheckpointReader
from bert4keras.checkpoints.crc import crc32c, mask_crc
from bert4keras.checkpoints.protobuf import proto_bytes_field, proto_fields, proto_varint_field
from bert4keras.checkpoints.sstable import read_table, write_table

__all__ = ["TFCheckpointReader", "finish_interrupted_write", "list_variables", "load_variable",
           "write_tf_checkpoint"]

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
        for number, v in proto_fields(value):
            if number == 1:
                self.dtype = v
            elif number == 2:
                for n2, dim in proto_fields(v):
                    if n2 == 2:
                        size = dict(proto_fields(dim)).get(1, 0)
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
# the reader
# --------------------------------------------------------------------------

_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")


def _resolve_prefix(path: str) -> str:
    """Checkpoint prefix from a prefix, an ``.index``/``.data-*`` file, or a directory."""
    if os.path.isdir(path):
        for journal in glob.glob(os.path.join(glob.escape(path), "*.commit")):
            finish_interrupted_write(journal[: -len(".commit")])
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
    finish_interrupted_write(path)
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
        raw = read_table(index_path)
        records = {}
        for key, value in raw:
            try:
                records[key.decode("utf-8")] = value
            except UnicodeDecodeError:
                raise CheckpointError(f"{index_path}: variable name {key!r} is not UTF-8") from None
        if "" not in records:
            raise CheckpointError(f"{index_path}: no bundle header entry (not a TF V2 checkpoint?)")
        try:
            header = dict(proto_fields(records.pop("")))
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
    alike; returns ``prefix``. An overwrite is atomic as a whole: a kill at any point leaves
    the old checkpoint or the new one loadable (see ``finish_interrupted_write``).
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
    finish_interrupted_write(prefix)
    data_path = _data_filename(prefix, 0, 1)
    index_path = prefix + ".index"
    moves = [(data_path + ".tmp", data_path), (index_path + ".tmp", index_path)]
    try:
        entries = _write_data(moves[0][0], arrays)
        with open(moves[1][0], "wb") as f:
            write_table(f, entries)
            f.flush()
            os.fsync(f.fileno())
        _write_journal(prefix, moves)
    except BaseException:
        for tmp, _ in moves:
            _remove_quietly(tmp)
        raise
    finish_interrupted_write(prefix)
    return prefix


# An overwrite renames two files, so it is made atomic with a journal:
#   1. both new files are written in full under ``.tmp`` names and fsynced;
#   2. ``<prefix>.commit`` (written to a temp name, fsynced, renamed) lists the renames
#      still to do with the size of each new file: from here on the new checkpoint is
#      complete on disk;
#   3. the renames run, then the journal is removed.
# A kill before step 2 leaves the old checkpoint untouched (its ``.tmp`` files are removed
# by the next write); a kill after it is rolled forward by the next reader or writer.


def _write_data(path: str, arrays: dict[bytes, np.ndarray]) -> list[tuple[bytes, bytes]]:
    """Write the tensor bytes to ``path`` (fsynced); returns the index entries describing them."""
    items = [(b"", b"\x08\x01\x1a\x02\x08\x01")]  # num_shards=1, little endian, producer=1
    offset = 0
    with open(path, "wb") as f:
        for key in sorted(arrays):
            array = arrays[key]
            raw = array.reshape(-1).view(np.uint8)
            f.write(raw.data)
            dims = b"".join(proto_bytes_field(2, proto_varint_field(1, d)) for d in array.shape)
            entry = (
                proto_varint_field(1, _TF_DTYPE_CODES[array.dtype])
                + proto_bytes_field(2, dims)
                + proto_varint_field(4, offset)
                + proto_varint_field(5, raw.size)
                + b"\x35"
                + struct.pack("<I", mask_crc(crc32c(raw)))
            )
            items.append((key, entry))
            offset += raw.size
        f.flush()
        os.fsync(f.fileno())
    return items


def _journal_path(prefix: str) -> str:
    return prefix + ".commit"


def _write_journal(prefix: str, moves: list[tuple[str, str]]) -> None:
    """Record (atomically) that the ``.tmp`` files are complete and which renames remain."""
    record = {os.path.basename(final): os.path.getsize(tmp) for tmp, final in moves}
    journal = _journal_path(prefix)
    with open(journal + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(journal + ".tmp", journal)
    _fsync_directory(os.path.dirname(journal))


def finish_interrupted_write(prefix: str) -> None:
    """Roll forward a checkpoint overwrite that was killed after its new files were complete.

    Does nothing when ``<prefix>.commit`` is absent. Every file it lists is either still at
    its ``.tmp`` name or already renamed; a file of the wrong size means the checkpoint was
    changed by something else, which is reported rather than guessed at.
    """
    journal = _journal_path(prefix)
    if not os.path.exists(journal):
        _remove_quietly(journal + ".tmp")
        return
    try:
        with open(journal, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{journal}: unreadable write journal ({e})") from e
    try:
        _roll_forward(prefix, journal, record)
    except OSError as e:
        raise CheckpointError(f"{journal}: cannot finish an interrupted checkpoint write ({e}); "
                              "open it once with write access to the folder") from e


def _roll_forward(prefix: str, journal: str, record: dict) -> None:
    """Finish the renames the journal lists (each file is at its ``.tmp`` name or renamed)."""
    folder = os.path.dirname(prefix)
    for name, size in record.items():
        final = os.path.join(folder, name)
        if os.path.exists(final + ".tmp"):
            if os.path.getsize(final + ".tmp") != size:
                raise CheckpointError(f"{final}.tmp: {os.path.getsize(final + '.tmp')} bytes, "
                                      f"the write journal {journal} recorded {size}")
            os.replace(final + ".tmp", final)
        elif not os.path.exists(final) or os.path.getsize(final) != size:
            raise CheckpointError(f"{final}: does not match the write journal {journal} "
                                  "(the checkpoint was changed during an interrupted write)")
    _fsync_directory(folder)
    os.remove(journal)


def _fsync_directory(folder: str) -> None:
    """Make renames in ``folder`` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    """Best-effort cleanup: a leftover temp file is harmless, a second error would hide the first."""
    try:
        os.remove(path)
    except OSError:
        pass
