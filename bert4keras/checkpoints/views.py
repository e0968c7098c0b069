"""Name-translating views: every checkpoint seen under the model's (Google) names."""

from __future__ import annotations

from typing import Callable

import numpy as np

from bert4keras.checkpoints.base import CheckpointError, CheckpointReader

Translate = Callable[[str], "tuple[str, bool]"]


class GoogleNameView:
    """Presents ``reader`` under Google/bert4keras variable names.

    ``translate(google_name) -> (name_in_file, transpose)`` maps a name to the
    file's own naming (identity for TF checkpoints). ``base_prefixes`` are model
    prefixes an HF file may or may not carry (``bert.`` for BertForPreTraining,
    none for BertModel); lookups try the name with and without them. ``tied``
    maps file names (without base prefix) of tied copies, such as HF's MLM
    decoder weight, to the Google name of the weight they repeat.

    Every weight read is checked: one stored as integers or booleans, or one holding NaN or
    infinity, is a ``CheckpointError`` naming it (a wrong file, or a training run that
    diverged). ``allow_nonfinite=True`` lets NaN/inf through for the rare deliberate case
    (``build_transformer_model(..., allow_nonfinite_weights=True)`` sets it).
    """

    def __init__(self, reader: CheckpointReader, translate: Translate | None = None,
                 base_prefixes: tuple[str, ...] = (), tied: dict[str, str] | None = None,
                 allow_nonfinite: bool = False):
        self.reader = reader
        self.path = reader.path
        self.translate = translate or (lambda name: (name, False))
        self.base_prefixes = base_prefixes
        self.tied = tied or {}
        self.used: set[str] = set()
        self.allow_nonfinite = allow_nonfinite

    def _bare(self, name: str) -> str:
        """``name`` without its base prefix (``bert.``), if it has one."""
        for prefix in self.base_prefixes:
            if name.startswith(prefix):
                return name[len(prefix):]
        return name

    def resolve(self, name: str) -> tuple[str, bool] | None:
        """The file's name for ``name`` and whether to transpose, or None if absent."""
        target, transpose = self.translate(name)
        bare = self._bare(target)
        candidates = [target, bare] + [prefix + bare for prefix in self.base_prefixes]
        for candidate in candidates:
            if candidate in self.reader:
                return candidate, transpose
        return None

    def __contains__(self, name: str) -> bool:
        return self.resolve(name) is not None

    def describe(self, name: str) -> str:
        target = self.translate(name)[0]
        return name if target == name else f"{name} (looked for {target!r})"

    def shape(self, name: str) -> tuple[int, ...]:
        found = self.resolve(name)
        if found is None:
            raise KeyError(f"{self.path}: no variable {self.describe(name)}")
        shape = tuple(self.reader.shape(found[0]))
        return shape[::-1] if found[1] else shape

    def get(self, name: str) -> np.ndarray:
        found = self.resolve(name)
        if found is None:
            raise KeyError(f"{self.path}: no variable {self.describe(name)}")
        self.used.add(found[0])
        dtype = self.reader.dtype(found[0])
        if not dtype.startswith(("float", "bfloat")):
            raise CheckpointError(f"{self.path}: weight {self.describe(name)} is stored as {dtype}, "
                                  "not floating point (is this the right checkpoint?)")
        value = self.reader.get(found[0])
        if not self.allow_nonfinite:
            _check_finite(value, self.path, self.describe(name))
        return value.T if found[1] else value

    def unused(self) -> list[str]:
        """Floating-point tensors of the file that nothing loaded (buffers like ids are skipped,
        and so are tied copies equal to the weight they repeat)."""
        return [n for n in self.reader.names()
                if n not in self.used and self.reader.dtype(n).startswith(("float", "bfloat"))
                and not self._is_tied_copy(n)]

    def _is_tied_copy(self, name: str) -> bool:
        original = self.tied.get(self._bare(name))
        found = self.resolve(original) if original is not None else None
        if found is None or found[0] not in self.used:
            return False
        return np.array_equal(self.reader.get(name), self.reader.get(found[0]))


def _check_finite(value: np.ndarray, path: str, name: str) -> None:
    """Raise naming the weight, and where its first NaN/inf is, if it holds any."""
    if np.isfinite(value).all():
        return
    bad = ~np.isfinite(value)
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    raise CheckpointError(
        f"{path}: weight {name} holds {int(bad.sum())} NaN/inf value(s) of {value.size} "
        f"(first {value[where]} at {where}); build the model with allow_nonfinite_weights=True to load it anyway")
