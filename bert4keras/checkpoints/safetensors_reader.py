"""HF safetensors files, single or sharded (``model.safetensors.index.json``)."""

from __future__ import annotations

import json
import os

import numpy as np

from bert4keras.checkpoints.base import CheckpointError, CheckpointReader


class SafetensorsReader(CheckpointReader):
    """Reads ``*.safetensors`` (memory-mapped by the safetensors library)."""

    format = "safetensors"

    def __init__(self, path: str):
        super().__init__(path)
        from safetensors import safe_open

        if path.endswith(".index.json"):
            index = _read_json(path)
            if "weight_map" not in index:
                raise CheckpointError(f"{path}: sharded index has no 'weight_map'")
            base = os.path.dirname(path)
            files = sorted(set(index["weight_map"].values()))
        else:
            base, files = "", [path]
        self._handles = {}
        self._where = {}
        for f in files:
            full = os.path.join(base, f)
            if not os.path.exists(full):
                raise CheckpointError(f"{path}: shard file {full} is missing")
            try:
                handle = safe_open(full, framework="numpy")
            except Exception as e:  # the library raises its own error types
                raise CheckpointError(f"{full}: not a readable safetensors file ({e})") from e
            self._handles[full] = handle
            for name in handle.keys():
                sl = handle.get_slice(name)
                self._entries[name] = (tuple(sl.get_shape()), str(sl.get_dtype()).lower())
                self._where[name] = full

    def _load(self, name: str) -> np.ndarray:
        dtype = self._entries[name][1]
        if dtype in ("bf16", "bfloat16"):
            # numpy has no bfloat16: go through torch-free bit manipulation.
            return _bf16_slice_to_float32(self._where[name], name)
        return self._handles[self._where[name]].get_tensor(name)

    def close(self) -> None:
        self._handles.clear()


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read JSON ({e})") from e


def _bf16_slice_to_float32(path: str, name: str) -> np.ndarray:
    """Decode a bfloat16 tensor by reading its raw bytes from the file header offsets."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        info = header[name]
        start, end = info["data_offsets"]
        f.seek(8 + n + start)
        raw = np.frombuffer(f.read(end - start), dtype=np.uint16)
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])
