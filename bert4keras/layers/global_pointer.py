"""GlobalPointer heads: score every (start, end) span of a sequence per entity type
(https://kexue.fm/archives/8373) and the parameter-lean variant
(https://kexue.fm/archives/8877).

Output: (batch, heads, seq_len, seq_len) logits, ``-inf`` where the start or end is
padding and, with ``tril_mask``, where end < start. Train with
``bert4keras.backend.multilabel_categorical_crossentropy`` on the flattened spans;
predict spans with logits > 0. The logits are computed in float32 under any policy.
"""

from __future__ import annotations

import numpy as np
from keras import initializers, layers, ops

from bert4keras.backend import apply_rotary_position_embeddings, sequence_masking, sinusoidal_embeddings
from bert4keras.layers.core import Layer, register


@register
class GlobalPointer(Layer):
    """Per head h: logits[h, i, j] = <q_h(x_i), k_h(x_j)> / sqrt(head_size), with RoPE
    on q and k so the score knows the span's length.

    Weights: one Dense ``dense`` to ``heads * 2 * head_size`` units; head h takes the
    h-th block of ``2 * head_size`` units, q its first half and k its second
    (bert4keras 0.11.5's layout, so its trained weights load unchanged).
    """

    def __init__(self, heads: int, head_size: int, RoPE: bool = True, use_bias: bool = True,
                 tril_mask: bool = True, kernel_initializer="lecun_normal", **kwargs):
        super().__init__(**kwargs)
        if RoPE and head_size % 2:
            raise ValueError(f"{type(self).__name__}: head_size must be even with RoPE=True "
                             f"(RoPE rotates pairs of dimensions), got head_size={head_size}")
        self.heads = heads
        self.head_size = head_size
        self.RoPE = RoPE
        self.use_bias = use_bias
        self.tril_mask = tril_mask
        self.kernel_initializer = initializers.get(kernel_initializer)

    def build(self, input_shape):
        self.dense = layers.Dense(self.heads * self.head_size * 2, use_bias=self.use_bias,
                                  kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
                                  name="dense")
        self.dense.build(input_shape)

    def compute_mask(self, inputs, mask=None):
        return None

    def rotate(self, qw, kw):
        """Apply RoPE over the sequence axis 1 of q and k (float32)."""
        if not self.RoPE:
            return qw, kw
        positions = sinusoidal_embeddings(ops.arange(ops.shape(qw)[1]), self.head_size)
        return apply_rotary_position_embeddings(ops.expand_dims(positions, 0), qw, kw)

    def finish(self, logits, mask):
        """-inf at padded starts/ends and, with ``tril_mask``, below the diagonal."""
        tril = None
        if self.tril_mask:
            seq_len = ops.shape(logits)[-1]
            steps = ops.arange(seq_len)
            tril = ops.expand_dims(steps, 1) <= ops.expand_dims(steps, 0)
        return sequence_masking(logits, mask, -np.inf, [2, 3], tril)

    def call(self, inputs, mask=None):
        x = ops.cast(self.dense(inputs), "float32")
        x = ops.reshape(x, tuple(ops.shape(x)[:2]) + (self.heads, 2 * self.head_size))
        qw, kw = self.rotate(x[..., :self.head_size], x[..., self.head_size:])
        logits = ops.einsum("bmhd,bnhd->bhmn", qw, kw) / self.head_size**0.5
        return self.finish(logits, mask)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.heads, input_shape[1], input_shape[1])

    def get_config(self):
        return {
            **super().get_config(),
            "heads": self.heads,
            "head_size": self.head_size,
            "RoPE": self.RoPE,
            "use_bias": self.use_bias,
            "tril_mask": self.tril_mask,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
        }


@register
class EfficientGlobalPointer(GlobalPointer):
    """GlobalPointer sharing one q/k projection across heads, plus per-head start/end biases.

    Weights: ``p_dense`` to ``2 * head_size`` units (q = even units, k = odd units) and
    ``q_dense`` from those ``2 * head_size`` units to ``2 * heads`` biases (even: end
    bias, odd: start bias), as in bert4keras 0.11.5.
    """

    def build(self, input_shape):
        self.p_dense = layers.Dense(self.head_size * 2, use_bias=self.use_bias,
                                    kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
                                    name="p_dense")
        self.q_dense = layers.Dense(self.heads * 2, use_bias=self.use_bias,
                                    kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
                                    name="q_dense")
        self.p_dense.build(input_shape)
        self.q_dense.build(tuple(input_shape[:-1]) + (self.head_size * 2,))

    def call(self, inputs, mask=None):
        x = self.p_dense(inputs)
        bias = ops.transpose(ops.cast(self.q_dense(x), "float32"), (0, 2, 1)) / 2  # (b, 2 heads, n)
        x = ops.cast(x, "float32")
        qw, kw = self.rotate(x[..., ::2], x[..., 1::2])
        logits = ops.einsum("bmd,bnd->bmn", qw, kw) / self.head_size**0.5
        logits = ops.expand_dims(logits, 1) + ops.expand_dims(bias[:, ::2], 2) + ops.expand_dims(bias[:, 1::2], 3)
        return self.finish(logits, mask)
