"""Position encodings beyond BERT's learned table: sinusoidal (RoFormer's rotary
source) and clipped relative positions (NEZHA, arXiv:1803.02155)."""

from __future__ import annotations

import keras
from keras import initializers, ops

from bert4keras.backend import sinusoidal_embeddings
from bert4keras.layers.core import Layer, merge_positions, register


@register
class SinusoidalPositionEmbedding(Layer):
    """Fixed sin/cos position encodings of width ``output_dim``, merged with the input.

    ``merge_mode``: 'add', 'mul', 'zero' (return the encodings, shape (1, n, d),
    as RoFormer feeds them to the rotary attention) or 'concat'. With
    ``custom_position_ids`` the input is ``[x, position_ids]`` (ids may be floats).
    """

    def __init__(self, output_dim: int, merge_mode: str = "add",
                 custom_position_ids: bool = False, **kwargs):
        super().__init__(**kwargs)
        if merge_mode not in ("add", "mul", "zero", "concat"):
            raise ValueError(f"{self.name}: merge_mode must be 'add', 'mul', 'zero' or 'concat', "
                             f"got {merge_mode!r}")
        self.output_dim = output_dim
        self.merge_mode = merge_mode
        self.custom_position_ids = custom_position_ids

    def compute_mask(self, inputs, mask=None):
        if self.custom_position_ids:
            return None if mask is None else mask[0]
        return mask

    def call(self, inputs, q_offset=0):
        """``q_offset`` (a scalar or one per row) is the position of the first token, for
        step-wise decoding and left-padded batches."""
        if self.custom_position_ids:
            inputs, position_ids = inputs
        else:
            position_ids = (ops.reshape(ops.cast(q_offset, "int32"), (-1, 1))
                            + ops.arange(ops.shape(inputs)[1], dtype="int32")[None])
        embeddings = ops.cast(sinusoidal_embeddings(position_ids, self.output_dim), inputs.dtype)
        return merge_positions(inputs, embeddings, self.merge_mode, self.output_dim)

    def compute_output_shape(self, input_shape):
        if self.custom_position_ids:
            input_shape = input_shape[0]
        if self.merge_mode == "zero" and not self.custom_position_ids:
            return (1, input_shape[1], self.output_dim)
        if self.merge_mode in ("add", "mul", "zero"):
            return tuple(input_shape[:2]) + (self.output_dim,)
        return tuple(input_shape[:2]) + (input_shape[2] + self.output_dim,)

    def get_config(self):
        return {
            **super().get_config(),
            "output_dim": self.output_dim,
            "merge_mode": self.merge_mode,
            "custom_position_ids": self.custom_position_ids,
        }


@register
class RelativePositionEmbedding(Layer):
    """Embeddings of the clipped distance ``k - q`` for inputs ``[q, k]``: a (q_len, k_len,
    output_dim) table, as NEZHA's attention consumes it (``p_bias='typical_relative'``).

    ``input_dim = 2 * max_distance + 1``; distances beyond ``max_distance`` share a row.
    """

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.embeddings_initializer = initializers.get(embeddings_initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer,
        )

    def compute_position_ids(self, inputs, q_offset=0, k_len=None):
        """Row indices into the table: ``clip(k - q, -max, max) + max``, for queries at
        ``q_offset + i`` and keys at ``j < k_len`` (default: the length of ``k``)."""
        q, k = inputs
        q_idxs = ops.arange(ops.shape(q)[1], dtype="int32")[:, None] + ops.cast(q_offset, "int32")
        k_idxs = ops.arange(ops.shape(k)[1] if k_len is None else k_len, dtype="int32")[None, :]
        max_distance = (self.input_dim - 1) // 2
        return ops.clip(k_idxs - q_idxs, -max_distance, max_distance) + max_distance

    def call(self, inputs, q_offset=0, k_len=None):
        """``q_offset``/``k_len``: the first query's position and the number of keys
        (a cache's size), for step-wise decoding."""
        return ops.take(self.embeddings, self.compute_position_ids(inputs, q_offset, k_len), axis=0)

    def compute_output_spec(self, inputs, q_offset=0, k_len=None):
        k = inputs[1].shape[1] if k_len is None else k_len
        return keras.KerasTensor((inputs[0].shape[1], k, self.output_dim), dtype=self.compute_dtype)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0][1], input_shape[1][1], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
        }
