"""The reader protocol every checkpoint format implements."""

from __future__ import annotations

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not fit the model."""


class CheckpointReader:
    """Read-only, name-keyed access to the tensors of one checkpoint.

    Subclasses fill ``self._entries`` (name -> (shape, dtype string)) and
    implement ``_load(name)``; everything else is shared.
    """

    format = "unknown"

    def __init__(self, path: str):
        self.path = str(path)
        self._entries: dict[str, tuple[tuple[int, ...], str]] = {}

    def names(self) -> list[str]:
        return sorted(self._entries)

    def list_variables(self) -> list[tuple[str, list[int]]]:
        """Like ``tf.train.list_variables``: sorted (name, shape) pairs."""
        return [(n, list(self._entries[n][0])) for n in self.names()]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[self._check(name)][0]

    def dtype(self, name: str) -> str:
        return self._entries[self._check(name)][1]

    def get(self, name: str) -> np.ndarray:
        """Load one tensor as a numpy array (lazily, only this one)."""
        return self._load(self._check(name))

    load_variable = get

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _check(self, name: str) -> str:
        if name not in self._entries:
            raise KeyError(f"{self.path}: no variable named {name!r} in this checkpoint")
        return name

    def _load(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release open files or memory maps (no-op by default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r}: {len(self)} tensors>"
