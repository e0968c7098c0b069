"""PyTorch ``pytorch_model.bin`` (``torch.save``) read without torch or running pickled code.

``torch.save`` pickles the state dict with each tensor reduced to a call of
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and the
storages kept outside the pickle (zip entries ``<archive>/data/<key>``, or, in
the legacy pre-1.6 format, raw blocks after the pickles). A restricted
unpickler maps exactly those names to local stand-ins and refuses every other
global, so a malicious file cannot execute anything.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np

from bert4keras.checkpoints.base import CheckpointError, CheckpointReader

__all__ = ["TorchBinReader"]

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only their element dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    """Where one storage's bytes live: file, byte offset, element dtype, element count."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.file = ""
        self.offset = -1
        self.big_endian = False


class _Tensor:
    """A strided view into a storage, as ``_rebuild_tensor_v2`` describes it."""

    def __init__(self, storage, offset, size, stride, *_):
        if not isinstance(storage, _Storage):
            raise ValueError(f"tensor storage is a {type(storage).__name__}, not a storage")
        self.storage = storage
        self.offset = int(offset)
        self.shape = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)
        if len(self.shape) != len(self.stride) or self.offset < 0 or min(self.shape, default=0) < 0:
            raise ValueError(
                f"bad tensor layout: size {self.shape}, stride {self.stride}, offset {offset}"
            )


def _rebuild_parameter(data, *_):
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _Tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _Tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that knows only the globals torch needs to describe tensors."""

    def __init__(self, file, path: str, storages: dict[str, _Storage]):
        super().__init__(file)
        self.path = path
        self.storages = storages

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"{self.path}: refusing to unpickle the global {module}.{name}; only "
                "tensor-rebuilding names of torch.save are allowed (the file may be malicious, "
                "or hold more than a state dict)"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.path}: unsupported persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self.path}: persistent id names no storage type: {pid!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError(f"{self.path}: legacy storage views are not supported")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, int(numel))
        return self.storages[key]


def _unpickle(file, path: str, storages: dict[str, _Storage]):
    """Run the restricted unpickler, turning every failure into a CheckpointError."""
    try:
        return _RestrictedUnpickler(file, path, storages).load()
    except CheckpointError:
        raise
    except Exception as e:  # malformed pickles fail in many ways
        raise CheckpointError(f"{path}: cannot unpickle ({type(e).__name__}: {e})") from e


def _flatten(obj, prefix: str, out: dict, skipped: dict) -> None:
    """Tensors of a (possibly nested) dict under dotted names; other leaves go to ``skipped``."""
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, _Tensor):
            out[name] = value
        elif isinstance(value, dict):
            _flatten(value, name + ".", out, skipped)
        else:
            skipped[name] = f"a {type(value).__name__}, not a tensor"


def _zip_storages(path: str, zf: zipfile.ZipFile, storages: dict[str, _Storage]) -> object:
    """Unpickle a zip-format torch.save archive and locate its storage entries."""
    pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise CheckpointError(f"{path}: zip archive has no <name>/data.pkl; not a torch.save file")
    root = pkl[0][: -len("data.pkl")]
    with zf.open(pkl[0]) as f:
        obj = _unpickle(f, path, storages)
    big_endian = False
    if root + "byteorder" in zf.namelist():
        big_endian = zf.read(root + "byteorder").strip() == b"big"
    with open(path, "rb") as raw:
        for storage in storages.values():
            name = f"{root}data/{storage.key}"
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise CheckpointError(
                    f"{path}: storage entry {name} is missing from the archive"
                ) from None
            if info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(
                    f"{path}: storage entry {name} is compressed; torch.save never does that"
                )
            raw.seek(info.header_offset)
            local = raw.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise CheckpointError(f"{path}: corrupt zip local header for {name}")
            skip = int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
            _place(path, storage, info.header_offset + 30 + skip, info.file_size, big_endian)
    return obj


def _legacy_storages(path: str, storages: dict[str, _Storage]) -> object:
    """Unpickle a legacy (pre-zip) torch.save file and locate the raw storages after it."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4)
        if head == b"PK\x03\x04":
            raise CheckpointError(f"{path}: zip archive without its central directory (truncated?)")
        if head[:1] != b"\x80":
            raise CheckpointError(
                f"{path}: neither a zip archive nor a pickle; not a torch.save file"
            )
        f.seek(0)
        if _unpickle(f, path, {}) != _LEGACY_MAGIC:
            raise CheckpointError(f"{path}: pickle without the legacy torch.save magic number")
        _unpickle(f, path, {})  # protocol version
        sys_info = _unpickle(f, path, {})
        obj = _unpickle(f, path, storages)
        keys = _unpickle(f, path, {})
        if not isinstance(keys, list):
            raise CheckpointError(
                f"{path}: corrupt legacy file (storage key list is a {type(keys).__name__})"
            )
        big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise CheckpointError(f"{path}: storage {key!r} is stored but no tensor uses it")
            header = f.read(8)
            if len(header) != 8:
                raise CheckpointError(f"{path}: file ends before storage {key!r} (truncated?)")
            numel = int.from_bytes(header, "big" if big_endian else "little")
            if numel != storage.numel:
                raise CheckpointError(
                    f"{path}: storage {key!r} holds {numel} elements, "
                    f"the pickle says {storage.numel}"
                )
            offset = f.tell()
            _place(path, storage, offset, max(size - offset, 0), big_endian)
            f.seek(offset + numel * storage.dtype.itemsize)
    for storage in storages.values():
        if storage.offset < 0:
            raise CheckpointError(f"{path}: storage {storage.key!r} is used but never stored")
    return obj


def _place(path: str, storage: _Storage, offset: int, available: int, big_endian: bool) -> None:
    """Record where a storage starts, after checking the file holds all of it."""
    needed = storage.numel * storage.dtype.itemsize
    if available < needed:
        raise CheckpointError(
            f"{path}: storage {storage.key} needs {needed} bytes but the file holds "
            f"{available} (truncated?)"
        )
    storage.file, storage.offset, storage.big_endian = path, offset, big_endian


class TorchBinReader(CheckpointReader):
    """``pytorch_model.bin`` (zip or legacy torch.save) or its sharded ``.bin.index.json``.

    Loads no torch and executes no pickled code. bfloat16 tensors come back as
    float32 (exact); non-tensor entries of the state dict are listed in ``skipped``.
    """

    format = "torch"

    def __init__(self, path: str):
        path = os.fspath(path)
        super().__init__(path)
        self.skipped: dict[str, str] = {}
        self._tensors: dict[str, _Tensor] = {}
        self._maps: dict[str, np.memmap] = {}
        for file in self._files(path):
            self._read(file)
        for name, t in self._tensors.items():
            self._entries[name] = (t.shape, t.storage.dtype.name)

    @staticmethod
    def _files(path: str) -> list[str]:
        if not path.endswith(".index.json"):
            return [path]
        try:
            with open(path, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"{path}: cannot read the shard index ({type(e).__name__}: {e})"
            ) from e
        base = os.path.dirname(path)
        return [os.path.join(base, f) for f in sorted(set(weight_map.values()))]

    def _read(self, file: str) -> None:
        if not os.path.isfile(file):
            raise CheckpointError(f"{file}: checkpoint file not found")
        storages: dict[str, _Storage] = {}
        if zipfile.is_zipfile(file):
            try:
                with zipfile.ZipFile(file) as zf:
                    obj = _zip_storages(file, zf, storages)
            except zipfile.BadZipFile as e:
                raise CheckpointError(f"{file}: corrupt zip archive ({e})") from e
        else:
            obj = _legacy_storages(file, storages)
        if not isinstance(obj, dict):
            raise CheckpointError(f"{file}: holds a {type(obj).__name__}, expected a state dict")
        tensors: dict[str, _Tensor] = {}
        _flatten(obj, "", tensors, self.skipped)
        for name, t in tensors.items():
            if t.shape and min(t.shape) > 0:
                last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride, strict=True))
                if min(t.stride) < 0 or last >= t.storage.numel:
                    raise CheckpointError(
                        f"{file}: tensor {name!r} (size {t.shape}, stride {t.stride}, offset "
                        f"{t.offset}) reaches past its storage of {t.storage.numel} elements"
                    )
            elif not t.shape and t.offset >= t.storage.numel:
                raise CheckpointError(f"{file}: scalar {name!r} lies past its storage")
            self._tensors[name] = t

    def _load(self, name: str) -> np.ndarray:
        t = self._tensors[name]
        storage = t.storage
        dtype = storage.dtype.newbyteorder(">") if storage.big_endian else storage.dtype
        if 0 in t.shape:
            array = np.zeros(t.shape, dtype=storage.dtype)
        else:
            if storage.file not in self._maps:
                self._maps[storage.file] = np.memmap(storage.file, dtype=np.uint8, mode="r")
            array = np.ndarray(
                t.shape,
                dtype=dtype,
                buffer=self._maps[storage.file],
                offset=storage.offset + t.offset * dtype.itemsize,
                strides=tuple(s * dtype.itemsize for s in t.stride),
            )
        if storage.dtype == ml_dtypes.bfloat16:
            return array.astype(np.float32)
        return array.astype(storage.dtype)  # a fresh, contiguous, native-order copy

    def close(self) -> None:
        self._maps.clear()
