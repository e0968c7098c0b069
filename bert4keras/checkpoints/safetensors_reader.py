"""HF safetensors files, single or sharded (``model.safetensors.index.json``)."""

from __future__ import annotations

import json
import os

import ml_dtypes
import numpy as np

from bert4keras.checkpoints.base import CheckpointError, CheckpointReader

# safetensors dtype tag -> numpy dtype name (the names the TF and .bin readers report).
_DTYPE_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8",
    "BOOL": "bool", "C64": "complex64",
}
# Types numpy lacks: decoded from the raw bytes with ml_dtypes and widened to float32 (exact).
_WIDENED = {
    "bfloat16": ml_dtypes.bfloat16,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2,
}


class SafetensorsReader(CheckpointReader):
    """Reads ``*.safetensors`` (memory-mapped by the safetensors library).

    ``dtype(name)`` gives numpy-style names (``'float32'``, ``'bfloat16'``);
    bfloat16 and float8 tensors load as float32, like the other readers.
    """

    format = "safetensors"

    def __init__(self, path: str):
        super().__init__(path)
        from safetensors import safe_open

        if path.endswith(".index.json"):
            index = _read_json(path)
            if not isinstance(index.get("weight_map"), dict):
                raise CheckpointError(f"{path}: sharded index has no 'weight_map'")
            base = os.path.dirname(path)
            files = sorted(set(index["weight_map"].values()))
        else:
            base, files = "", [path]
        self._handles = {}
        self._where: dict[str, str] = {}
        self._offsets: dict[str, int] = {}
        for f in files:
            full = os.path.join(base, f)
            if not os.path.exists(full):
                raise CheckpointError(f"{path}: shard file {full} is missing")
            try:
                handle = safe_open(full, framework="numpy")
            except Exception as e:  # the library raises its own error types
                raise CheckpointError(f"{full}: not a readable safetensors file ({e})") from e
            self._handles[full] = handle
            data_start, header = _read_header(full)
            for name in handle.keys():
                info = header[name]
                tag = info["dtype"]
                self._entries[name] = (tuple(info["shape"]), _DTYPE_NAMES.get(tag, tag.lower()))
                self._where[name] = full
                self._offsets[name] = data_start + info["data_offsets"][0]

    def _load(self, name: str) -> np.ndarray:
        shape, dtype = self._entries[name]
        if dtype in _WIDENED:
            count = int(np.prod(shape, dtype=np.int64))
            raw = np.fromfile(self._where[name], dtype=_WIDENED[dtype], count=count,
                              offset=self._offsets[name])
            return raw.astype(np.float32).reshape(shape)
        if dtype not in _DTYPE_NAMES.values():
            raise CheckpointError(f"{self._where[name]}: tensor {name!r} has dtype {dtype!r}, "
                                  "which bert4keras cannot load")
        return self._handles[self._where[name]].get_tensor(name)

    def close(self) -> None:
        self._handles.clear()


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read JSON ({e})") from e


def _read_header(path: str) -> tuple[int, dict]:
    """The byte offset where tensor data starts, and the JSON header (name -> dtype/shape/offsets)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return 8 + n, json.loads(f.read(n))
