"""Small utilities bert4keras scripts rely on: padding, data generators, text helpers."""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Sequence

import numpy as np

from bert4keras._parallel import parallel_apply, parallel_apply_generator  # noqa: F401
from bert4keras.generation import AutoRegressiveDecoder  # noqa: F401
from bert4keras.tokenizers import truncate_sequences  # noqa: F401


def to_array(*args):
    """Convert each argument to a numpy array (one argument -> one array)."""
    results = [np.array(a) for a in args]
    return results[0] if len(args) == 1 else results


def is_string(s) -> bool:
    return isinstance(s, str)


def strQ2B(ustring: str) -> str:
    """Full-width characters (incl. the ideographic space) to their half-width forms."""
    out = []
    for ch in ustring:
        code = ord(ch)
        if code == 0x3000:
            code = 0x20
        elif 0xFF01 <= code <= 0xFF5E:
            code -= 0xFEE0
        out.append(chr(code))
    return "".join(out)


def string_matching(s: str, keywords: Iterable[str]) -> bool:
    """True if any regex in ``keywords`` is found in ``s``."""
    return any(re.search(k, s) for k in keywords)


def convert_to_unicode(text, encoding: str = "utf-8", errors: str = "ignore") -> str:
    return text.decode(encoding, errors=errors) if isinstance(text, bytes) else text


def convert_to_str(text, encoding: str = "utf-8", errors: str = "ignore") -> str:
    return convert_to_unicode(text, encoding, errors)


def sequence_padding(inputs: Sequence, length=None, value=0, seq_dims: int = 1,
                     mode: str = "post") -> np.ndarray:
    """Pad (or cut) sequences to a common length along their first ``seq_dims`` axes.

    ``length`` defaults to the longest; ``mode`` is 'post' (pad at the end) or 'pre'.
    """
    if mode not in ("post", "pre"):
        raise ValueError(f'"mode" argument must be "post" or "pre", got {mode!r}')
    if not len(inputs):
        raise ValueError("sequence_padding: no sequences given")
    if length is None:
        length = np.max([np.shape(x)[:seq_dims] for x in inputs], axis=0)
    elif not hasattr(length, "__getitem__"):
        length = [length]
    cut = tuple(slice(None, length[i]) for i in range(seq_dims))
    outputs = []
    for x in inputs:
        x = np.asarray(x)[cut]
        pad_width = [(0, 0)] * x.ndim
        for i in range(seq_dims):
            missing = length[i] - x.shape[i]
            pad_width[i] = (0, missing) if mode == "post" else (missing, 0)
        outputs.append(np.pad(x, pad_width, "constant", constant_values=value))
    return np.array(outputs)


def text_segmentate(text: str, maxlen: int, seps: str = "\n", strips: str | None = None) -> list[str]:
    """Split ``text`` into pieces of at most ``maxlen`` characters, cutting at ``seps`` in order."""
    text = text.strip().strip(strips)
    if not seps or len(text) <= maxlen:
        return [text]
    pieces = text.split(seps[0])
    text, texts = "", []
    for i, piece in enumerate(pieces):
        if text and piece and len(text) + len(piece) > maxlen - 1:
            texts.extend(text_segmentate(text, maxlen, seps[1:], strips))
            text = ""
        text = text + piece if i + 1 == len(pieces) else text + piece + seps[0]
    if text:
        texts.extend(text_segmentate(text, maxlen, seps[1:], strips))
    return texts


def is_one_of(x, ys) -> bool:
    """``x in ys`` by identity (safe for arrays and tensors)."""
    return any(x is y for y in ys)


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


class DataGenerator:
    """Template for batch generators: subclass and implement ``__iter__(random)``.

    ``forfit()`` loops forever (pass ``steps_per_epoch=len(gen)`` to ``fit``);
    ``sample()`` yields ``(is_end, item)`` so ``__iter__`` knows when to flush.
    """

    def __init__(self, data, batch_size: int = 32, buffer_size: int | None = None):
        self.data = data
        self.batch_size = batch_size
        if hasattr(data, "__len__"):
            self.steps = -(-len(data) // batch_size)
        else:
            self.steps = None
        self.buffer_size = buffer_size or batch_size * 1000

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("this DataGenerator wraps data without a length")
        return self.steps

    def sample(self, random: bool = False) -> Iterator[tuple[bool, object]]:
        """Yield ``(is_last, item)``; ``random`` shuffles (a buffer for unsized data)."""
        if random and self.steps is not None:
            data = (self.data[i] for i in np.random.permutation(len(self.data)))
        elif random:
            data = self._buffered_shuffle()
        else:
            data = iter(self.data)
        try:
            current = next(data)
        except StopIteration:
            return
        for upcoming in data:
            yield False, current
            current = upcoming
        yield True, current

    def _buffered_shuffle(self):
        cache = []
        for d in self.data:
            cache.append(d)
            if len(cache) >= self.buffer_size:
                yield cache.pop(np.random.randint(len(cache)))
        while cache:
            yield cache.pop(np.random.randint(len(cache)))

    def __iter__(self, random: bool = False):
        raise NotImplementedError

    def forfit(self, random: bool = True):
        """Endless batches for ``model.fit``."""
        while True:
            yield from self.__iter__(random)

    def fortest(self, random: bool = False):
        """Endless batches of inputs only (for ``predict``)."""
        while True:
            for d in self.__iter__(random):
                yield d[0]
