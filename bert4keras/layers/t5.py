"""T5's bucketed relative position bias (arXiv:1910.10683, section 2.1)."""

from __future__ import annotations

import numpy as np
import keras
from keras import initializers, ops

from bert4keras.layers.core import Layer, register


def t5_bucket_table(num_buckets: int, max_distance: int, bidirectional: bool) -> np.ndarray:
    """Bucket of every relative distance ``k - q`` in ``[-max_distance, max_distance]``.

    Distances below ``num_buckets // 2`` (per direction) get their own bucket, longer
    ones share log-spaced buckets up to ``max_distance``; beyond it the last bucket.
    Computed once in float32 numpy, as T5 and HF do, so every backend agrees exactly.
    """
    relative = np.arange(-max_distance, max_distance + 1)
    buckets = np.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative > 0) * num_buckets
        n = np.abs(relative)
    else:
        n = np.maximum(-relative, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore"):
        scaled = (np.log(n.astype("float32") / np.float32(max_exact))
                  / np.float32(np.log(max_distance / max_exact)) * np.float32(num_buckets - max_exact))
    large = np.minimum(max_exact + np.where(n > 0, scaled, 0).astype("int64"), num_buckets - 1)
    return (buckets + np.where(n < max_exact, n, large)).astype("int32")


@register
class RelativePositionEmbeddingT5(Layer):
    """``[q, k]`` -> float bias (q_len, k_len, heads) from T5's relative-position buckets.

    ``bidirectional=True`` for the encoder (past and future distances get separate
    buckets); the decoder uses ``False`` (only past distances). ``q_offset`` (call
    argument) is the absolute position of the first query, for step-wise decoding.
    """

    def __init__(self, input_dim: int, output_dim: int, max_distance: int = 128,
                 bidirectional: bool = True, embeddings_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.bucket_table = t5_bucket_table(input_dim, max_distance, bidirectional)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer,
        )

    def compute_position_ids(self, inputs, q_offset=0, k_len=None):
        """Bucket ids (q_len, k_len) for ``inputs = [q, k]``: queries at ``q_offset + i``, keys at
        ``j``; ``k_len`` gives the number of keys when they live in a cache rather than in ``k``."""
        q, k = inputs
        q_idxs = ops.arange(ops.shape(q)[1], dtype="int32") + ops.cast(q_offset, "int32")
        k_idxs = ops.arange(ops.shape(k)[1] if k_len is None else k_len, dtype="int32")
        relative = ops.clip(k_idxs[None, :] - q_idxs[:, None], -self.max_distance, self.max_distance)
        return ops.take(ops.convert_to_tensor(self.bucket_table), relative + self.max_distance, axis=0)

    def call(self, inputs, q_offset=0, k_len=None):
        return ops.take(self.embeddings, self.compute_position_ids(inputs, q_offset, k_len), axis=0)

    def compute_output_spec(self, inputs, q_offset=0, k_len=None):
        k = inputs[1].shape[1] if k_len is None else k_len
        return keras.KerasTensor((inputs[0].shape[1], k, self.output_dim), dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][1], input_shape[1][1], self.output_dim)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "max_distance": self.max_distance,
            "bidirectional": self.bidirectional,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
        }
