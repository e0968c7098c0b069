"""Resizing a checkpoint weight to a model weight of another shape (``autoresize_weights``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def orthogonally_resize(a: np.ndarray, new_shape: Sequence[int], window: int = 2) -> np.ndarray:
    """Resize a weight by repeating blocks of ``window`` and cutting, keeping its norm
    (bert4keras's ``autoresize_weights``)."""
    if a.ndim != len(new_shape):
        raise ValueError(f"orthogonally_resize: cannot resize shape {a.shape} to {tuple(new_shape)}")
    norm = np.linalg.norm(a)
    cut = []
    for i, (d1, d2) in enumerate(zip(a.shape, new_shape)):
        if d1 != d2:
            k = -(-d2 // d1)
            if k > 1:
                if d1 % window:
                    raise ValueError(f"orthogonally_resize: axis {i} of size {d1} is not a multiple "
                                     f"of the window {window}")
                a = a.reshape(a.shape[:i] + (d1 // window, window) + a.shape[i + 1:])
                a = np.repeat(a, k, axis=i)
                a = a.reshape(a.shape[:i] + (d1 * k,) + a.shape[i + 2:])
        cut.append(slice(None, d2))
    a = a[tuple(cut)]
    return a / np.linalg.norm(a) * norm
