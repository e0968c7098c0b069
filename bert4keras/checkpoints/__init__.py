"""Checkpoint readers (and writers) behind ``Transformer.load_weights_from_checkpoint``.

``open_checkpoint(path)`` accepts a file or a directory and returns a
:class:`CheckpointReader`; every format offers the same name-keyed view.
"""

from __future__ import annotations

import os

from bert4keras.checkpoints.base import CheckpointError, CheckpointReader
from bert4keras.checkpoints.safetensors_reader import SafetensorsReader

__all__ = ["CheckpointError", "CheckpointReader", "SafetensorsReader", "open_checkpoint"]


def open_checkpoint(path) -> CheckpointReader:
    """Open a checkpoint by path: a file, a TF checkpoint prefix, or an HF directory."""
    if isinstance(path, CheckpointReader):
        return path
    path = os.fspath(path)
    if os.path.isdir(path):
        for candidate in ("model.safetensors", "model.safetensors.index.json"):
            full = os.path.join(path, candidate)
            if os.path.exists(full):
                return SafetensorsReader(full)
        raise CheckpointError(
            f"{path}: directory holds no checkpoint (looked for model.safetensors, "
            "model.safetensors.index.json)"
        )
    if path.endswith(".safetensors") or path.endswith(".safetensors.index.json"):
        if not os.path.exists(path):
            raise CheckpointError(f"{path}: checkpoint file not found")
        return SafetensorsReader(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    raise CheckpointError(f"{path}: unrecognised checkpoint format")
