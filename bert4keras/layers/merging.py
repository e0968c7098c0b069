"""Small layers bert4keras 0.11.5 shipped for concatenating and splitting along the
sequence or batch axis, and its ``integerize_shape`` build decorator.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops

from bert4keras.layers.core import Layer, register


def integerize_shape(func):
    """Decorate ``build(self, input_shape)`` so every dimension is a Python int or None.

    Keras 3 shapes already are; this also unwraps TF ``Dimension``-like objects and
    numpy integers that older code may pass.
    """

    def convert(item):
        if isinstance(item, (list, tuple)) or (hasattr(item, "__iter__") and not isinstance(item, str)):
            return [convert(i) for i in item]
        if hasattr(item, "value"):
            return item.value
        return None if item is None else int(item)

    @functools.wraps(func)
    def build(self, input_shape):
        return func(self, convert(input_shape))

    return build


@register
class Concatenate1D(Layer):
    """Concatenate sequences (batch, n_i, d) along axis 1; an input without a mask counts as all valid."""

    def call(self, inputs):
        return ops.concatenate(inputs, axis=1)

    def compute_mask(self, inputs, mask=None):
        if mask is None or all(m is None for m in mask):
            return None
        masks = [ops.ones_like(x[..., 0], dtype="bool") if m is None else ops.cast(m, "bool")
                 for x, m in zip(inputs, mask)]
        return ops.concatenate(masks, axis=1)

    def compute_output_shape(self, input_shape):
        lengths = [shape[1] for shape in input_shape]
        seq_len = None if any(n is None for n in lengths) else sum(lengths)
        return (input_shape[0][0], seq_len, input_shape[0][2])


@register
class BatchSplit(Layer):
    """Split the batch axis into ``parts`` pieces (an int: equal pieces, the last smaller;
    a list: pieces proportional to its entries); a list of inputs is split one after another.

    0.11.5 used it to spread a batch over GPUs inside one graph. On Keras 3, data
    parallelism is ``keras.distribution.DataParallel``; this layer keeps the plain
    splitting for code that still builds such graphs (each piece then runs on the
    same device).
    """

    def __init__(self, parts, **kwargs):
        super().__init__(**kwargs)
        if np.ndim(parts) == 0 and int(parts) < 1:
            raise ValueError(f"{type(self).__name__}: parts must be >= 1, got {parts!r}")
        self.parts = list(parts) if np.ndim(parts) else int(parts)

    @property
    def num_parts(self) -> int:
        return len(self.parts) if isinstance(self.parts, list) else self.parts

    def boundaries(self, batch_size: int) -> list[int]:
        if isinstance(self.parts, list):
            total = float(sum(self.parts))
            return [int(c * batch_size / total) for c in np.cumsum(self.parts)]
        stride = -(-batch_size // self.parts)
        return [min(stride * (i + 1), batch_size) for i in range(self.parts)]

    def split(self, x):
        batch_size = ops.shape(x)[0]
        if batch_size is None:  # symbolic (functional model building): pieces of unknown size
            return [keras.KerasTensor(tuple(x.shape), dtype=x.dtype) for _ in range(self.num_parts)]
        ends = self.boundaries(batch_size)
        starts = [0] + ends[:-1]
        return [x[s:e] for s, e in zip(starts, ends)]

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            return [piece for x in inputs for piece in self.split(x)]
        return self.split(inputs)

    def compute_mask(self, inputs, mask=None):
        if isinstance(inputs, (list, tuple)):
            mask = [None] * len(inputs) if mask is None else mask
            return [piece for x, m in zip(inputs, mask) for piece in self.compute_mask(x, m)]
        if mask is None:
            return [None] * self.num_parts
        return self.split(mask)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, list) and input_shape and isinstance(input_shape[0], (list, tuple)):
            return [s for shape in input_shape for s in self.compute_output_shape(shape)]
        return [tuple(input_shape)] * self.num_parts

    def get_config(self):
        return {**super().get_config(), "parts": self.parts}


@register
class BatchConcat(Layer):
    """Concatenate along the batch axis (the inverse of :class:`BatchSplit`)."""

    def call(self, inputs):
        return ops.concatenate(inputs, axis=0)

    def compute_mask(self, inputs, mask=None):
        if mask is None or any(m is None for m in mask):
            return None
        return ops.concatenate(mask, axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape[0]
