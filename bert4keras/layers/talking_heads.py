"""Talking-Heads Attention (arXiv:2003.02436, kexue.fm/archives/7325)."""

from __future__ import annotations

import numpy as np
from keras import ops

from bert4keras.backend import attention_normalize, is_bool
from bert4keras.layers.attention import MultiHeadAttention
from bert4keras.layers.core import Layer, register


@register
class HeadMixing(Layer):
    """Mixes the head axis of (batch, heads, q_len, k_len) scores: ``einsum('bhjk,hg->bgjk')``.

    The (heads_in, heads_out) kernel starts as the identity (zero-padded when the
    sizes differ), so a fresh layer leaves the scores unchanged.
    """

    def __init__(self, heads_out: int, **kwargs):
        super().__init__(**kwargs)
        self.heads_out = heads_out

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[1], self.heads_out),
                                      initializer="identity")

    def call(self, inputs):
        return ops.einsum("bhjk,hg->bgjk", inputs, ops.cast(self.kernel, inputs.dtype))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.heads_out) + tuple(input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "heads_out": self.heads_out}


@register
class TalkingHeadsAttention(MultiHeadAttention):
    """Multi-head attention whose heads exchange information around the softmax.

    The scaled per-head logits are mixed by a learned (heads, num_mixtures)
    matrix before the softmax; with ``weights_projection`` (forced when
    ``num_mixtures != heads``) the probabilities are mixed back to ``heads``
    after it. Padding masks and ``a_bias`` are applied after the logits mixing,
    so ``-inf`` never enters a weighted sum. Both mixings start as the identity,
    so a standard checkpoint loads and behaves exactly as vanilla attention.
    The mixing weights come after q/k/v/o in ``weights`` (checkpoint order).
    """

    def __init__(self, heads: int, head_size: int, num_mixtures: int | None = None,
                 weights_projection: bool = False, **kwargs):
        super().__init__(heads, head_size, **kwargs)
        self.num_mixtures = num_mixtures or heads
        self.weights_projection = weights_projection or self.num_mixtures != heads

    def build(self, input_shape):
        super().build(input_shape)
        q_len, k_len = input_shape[0][1], input_shape[1][1]
        self.logits_mixing = HeadMixing(self.num_mixtures, name="logits_mixing")
        self.logits_mixing.build((None, self.heads, q_len, k_len))
        if self.weights_projection:
            self.weights_mixing = HeadMixing(self.heads, name="weights_mixing")
            self.weights_mixing.build((None, self.num_mixtures, q_len, k_len))

    def pay_attention_to(self, inputs, mask=None, a_bias=None, p_bias=None, training=None):
        qw, kw, vw, bias, position = self.unpack_attention_inputs(inputs, a_bias, p_bias)
        _, v_mask = mask
        a = ops.einsum("bjhd,bkhd->bhjk", qw, kw)
        if p_bias == "typical_relative":
            a = a + ops.einsum("bjhd,jkd->bhjk", qw, position)
        elif p_bias == "t5_relative":
            a = a + ops.expand_dims(ops.transpose(position, (2, 0, 1)), 0)
        if self.attention_scale:
            a = a / (self.key_size ** 0.5)
        a = self.logits_mixing(a)
        if bias is not None and not is_bool(bias):
            a, bias = a + ops.cast(bias, a.dtype), None
        elif bias is not None and self.return_attention_scores:  # RealFormer passes the mask on
            a = ops.where(bias, a, ops.cast(-np.inf, a.dtype))
        A = attention_normalize(ops.cast(a, "float32"), v_mask, -1, self.normalization, bias)
        if self.weights_projection:
            A = self.weights_mixing(A)
        A = ops.cast(A, vw.dtype)
        if self.attention_dropout:
            A = self.dropout(A, training=training)
        o = ops.einsum("bhjk,bkhd->bjhd", A, vw)
        if p_bias == "typical_relative":
            o = o + ops.einsum("bhjk,jkd->bjhd", A, ops.cast(position, A.dtype))
        return o, a

    def compute_output_shape(self, input_shape):
        shapes = super().compute_output_shape(input_shape)
        if self.return_attention_scores:
            o_shape, a_shape = shapes
            return [o_shape, (a_shape[0], self.num_mixtures) + tuple(a_shape[2:])]
        return shapes

    def get_config(self):
        return {**super().get_config(), "num_mixtures": self.num_mixtures,
                "weights_projection": self.weights_projection}
