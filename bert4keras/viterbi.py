"""Viterbi decoding of CRF emissions on the host (numpy), as bert4keras 0.11.5's
``snippets.ViterbiDecoder``."""

from __future__ import annotations

from typing import Sequence

import numpy as np


class ViterbiDecoder:
    """Best label path under emission scores plus the transition matrix ``trans``.

    ``starts`` / ``ends``: the only labels allowed at the first / last position
    (None: any). Subclass it and call :meth:`decode` on each sequence's emissions.
    """

    def __init__(self, trans, starts: Sequence[int] | None = None, ends: Sequence[int] | None = None):
        self.trans = trans
        self.starts = starts
        self.ends = ends

    @property
    def trans(self) -> np.ndarray:
        return self._trans

    @trans.setter
    def trans(self, trans) -> None:
        trans = np.asarray(trans)
        if trans.ndim != 2 or trans.shape[0] != trans.shape[1]:
            raise ValueError(f"ViterbiDecoder: trans must be a square (num_labels, num_labels) "
                             f"matrix, got shape {trans.shape}")
        self._trans = trans
        self.num_labels = trans.shape[0]

    def _others(self, allowed, name: str) -> list[int]:
        if allowed is None:
            return []
        bad = [i for i in allowed if not 0 <= i < self.num_labels]
        if bad:
            raise ValueError(f"ViterbiDecoder: {name} label {bad[0]} outside [0, {self.num_labels})")
        return [i for i in range(self.num_labels) if i not in set(allowed)]

    def decode(self, nodes) -> np.ndarray:
        """``nodes``: (seq_len, num_labels) emission scores -> the best label sequence (seq_len,)."""
        nodes = np.array(nodes, dtype=np.result_type(np.asarray(nodes).dtype, self.trans.dtype, np.float32))
        if nodes.ndim != 2 or nodes.shape[1] != self.num_labels:
            raise ValueError(f"ViterbiDecoder.decode: nodes must be (seq_len, {self.num_labels}) to match "
                             f"trans {self.trans.shape}, got shape {nodes.shape}")
        nodes[0, self._others(self.starts, "starts")] = -np.inf
        nodes[-1, self._others(self.ends, "ends")] = -np.inf
        scores = nodes[0]
        backpointers = []
        for emissions in nodes[1:]:
            candidates = scores[:, None] + self.trans + emissions[None, :]
            best = candidates.argmax(axis=0)
            backpointers.append(best)
            scores = candidates[best, np.arange(self.num_labels)]
        path = [int(scores.argmax())]
        for best in reversed(backpointers):
            path.append(int(best[path[-1]]))
        return np.array(path[::-1])
