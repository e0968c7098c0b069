"""Checkpoint readers (and writers) behind ``Transformer.load_weights_from_checkpoint``.

``open_checkpoint(path)`` accepts a file or a directory and returns a
:class:`CheckpointReader`; every format offers the same name-keyed view.
"""

from __future__ import annotations

import glob
import os

from bert4keras.checkpoints.base import CheckpointError, CheckpointReader
from bert4keras.checkpoints.safetensors_reader import SafetensorsReader
from bert4keras.checkpoints.tf_checkpoint import (
    TFCheckpointReader,
    list_variables,
    load_variable,
    write_tf_checkpoint,
)
from bert4keras.checkpoints.torch_bin import TorchBinReader

__all__ = [
    "CheckpointError",
    "CheckpointReader",
    "SafetensorsReader",
    "TFCheckpointReader",
    "TorchBinReader",
    "list_variables",
    "load_variable",
    "open_checkpoint",
    "write_tf_checkpoint",
]

# Directory contents tried in order: HF safetensors first, then PyTorch .bin.
_DIRECTORY_FILES = (
    ("model.safetensors", SafetensorsReader),
    ("model.safetensors.index.json", SafetensorsReader),
    ("pytorch_model.bin", TorchBinReader),
    ("pytorch_model.bin.index.json", TorchBinReader),
)
_TORCH_SUFFIXES = (".bin", ".bin.index.json", ".pt", ".pth")


def open_checkpoint(path) -> CheckpointReader:
    """Open a checkpoint by path: a file, a TF checkpoint prefix, or a directory.

    A directory may hold ``model.safetensors``, ``pytorch_model.bin`` (or their
    sharded ``.index.json``) or one TF checkpoint (``checkpoint`` / ``*.index``).
    """
    if isinstance(path, CheckpointReader):
        return path
    path = os.fspath(path)
    if os.path.isdir(path):
        for candidate, reader in _DIRECTORY_FILES:
            full = os.path.join(path, candidate)
            if os.path.exists(full):
                return reader(full)
        if os.path.isfile(os.path.join(path, "checkpoint")) or glob.glob(
            os.path.join(glob.escape(path), "*.index")
        ):
            return TFCheckpointReader(path)
        raise CheckpointError(
            f"{path}: directory holds no checkpoint (looked for model.safetensors, "
            "pytorch_model.bin, their .index.json, and a TF checkpoint *.index)"
        )
    if path.endswith(".safetensors") or path.endswith(".safetensors.index.json"):
        if not os.path.exists(path):
            raise CheckpointError(f"{path}: checkpoint file not found")
        return SafetensorsReader(path)
    if path.endswith(_TORCH_SUFFIXES):
        return TorchBinReader(path)
    if (
        path.endswith(".index")
        or ".data-" in os.path.basename(path)
        or os.path.exists(path + ".index")
        or os.path.exists(path + ".commit")  # an overwrite interrupted before its renames
    ):
        return TFCheckpointReader(path)
    if not os.path.exists(path):
        raise CheckpointError(
            f"{path}: checkpoint file not found (nor a TF checkpoint {path}.index)"
        )
    raise CheckpointError(f"{path}: unrecognised checkpoint format")
