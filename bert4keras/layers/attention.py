"""Multi-head attention with bert4keras's hooks (attention bias, position bias)."""

from __future__ import annotations

import keras
import numpy as np
from keras import initializers, ops

from bert4keras import kernels
from bert4keras.backend import (
    align, apply_rotary_position_embeddings, attention_normalize, is_bool,
)
from bert4keras.layers.core import Dense, Dropout, Layer, register


@register
class MultiHeadAttention(Layer):
    """Multi-head attention over ``inputs = [q, k, v, (a_bias), (position inputs...)]``.

    Call arguments (fixed when the model is built):
      * ``a_bias``: True when ``inputs[3]`` is an attention bias — a bool mask
        (LM/UniLM) AND-ed into the key mask, or a float bias added to the logits;
        a 3-D bias (batch, q_len, k_len) is shared by all heads.
      * ``p_bias``: position information, ``'rotary'`` (RoPE sinusoids),
        ``'typical_relative'`` (NEZHA: (q_len, k_len, key_size) embeddings) or
        ``'t5_relative'`` ((q_len, k_len, heads) bias).
    ``key_size`` may differ from ``head_size`` (arXiv:2002.07028). Padding keys are
    masked; padded query rows are left as they are (downstream layers mask them).
    Subclasses change the attention itself by overriding ``pay_attention_to``.
    """

    def __init__(self, heads: int, head_size: int, out_dim: int | None = None,
                 key_size: int | None = None, use_bias: bool = True,
                 normalization: str = "softmax", attention_scale: bool = True,
                 attention_dropout: float | None = None,
                 return_attention_scores: bool = False,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.heads = heads
        self.head_size = head_size
        self.out_dim = out_dim or heads * head_size
        self.key_size = key_size or head_size
        self.use_bias = use_bias
        self.normalization = normalization
        self.attention_scale = attention_scale
        self.attention_dropout = attention_dropout
        self.return_attention_scores = return_attention_scores
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.dropout = Dropout(attention_dropout or 0.0, name="attention_dropout")

    def build(self, input_shape):
        def dense(units, name, shape):
            layer = Dense(units, use_bias=self.use_bias,
                          kernel_initializer=self.kernel_initializer, name=name)
            layer.build(shape)
            return layer

        self.q_dense = dense(self.key_size * self.heads, "q_dense", input_shape[0])
        self.k_dense = dense(self.key_size * self.heads, "k_dense", input_shape[1])
        self.v_dense = dense(self.head_size * self.heads, "v_dense", input_shape[2])
        self.o_dense = dense(self.out_dim, "o_dense",
                             tuple(input_shape[0][:-1]) + (self.head_size * self.heads,))

    def call(self, inputs, mask=None, a_bias=None, p_bias=None, training=None,
             cache=None, cache_index=None):
        """Project -> rotate (RoPE) -> write the cache -> attend.

        ``cache = [k, v]``, fixed-size per-head buffers (b, cache_len, heads, size): with
        ``cache_index`` (a scalar) the new keys/values are written there and attention
        runs over the whole buffer; with ``cache_index=None`` the cache is static (T5
        cross-attention: k/v of the encoder output, computed once) and ``inputs[1:3]``
        are not used. Key validity then comes from the attention bias alone. With a
        cache the layer returns ``(output, [k, v])``, the updated cache.
        """
        q, k, v = inputs[:3]
        q_mask = v_mask = None
        if mask is not None:
            q_mask, v_mask = mask[0], mask[2]
        qw = self._split_heads(self.q_dense(q), self.key_size)
        if cache is not None and cache_index is None:
            kw, vw = cache
        else:
            kw = self._split_heads(self.k_dense(k), self.key_size)
            vw = self._split_heads(self.v_dense(v), self.head_size)
        if p_bias == "rotary":
            position = inputs[3 + bool(a_bias)]
            qw = apply_rotary_position_embeddings(position, qw)
            if cache is None or cache_index is not None:
                kw = apply_rotary_position_embeddings(position, kw)
        if cache is not None:
            if cache_index is not None:
                start = (0, ops.cast(cache_index, "int32"), 0, 0)
                kw = ops.slice_update(cache[0], start, ops.cast(kw, cache[0].dtype))
                vw = ops.slice_update(cache[1], start, ops.cast(vw, cache[1].dtype))
            cache, v_mask = [kw, vw], None
        o, a = self.pay_attention_to([qw, kw, vw] + list(inputs[3:]), [q_mask, v_mask],
                                     a_bias=a_bias, p_bias=p_bias, training=training)
        o = self.o_dense(ops.reshape(o, tuple(ops.shape(o)[:2]) + (self.heads * self.head_size,)))
        outputs = [o, a] if self.return_attention_scores else o
        return outputs if cache is None else (outputs, cache)

    def _split_heads(self, x, size):
        return ops.reshape(x, tuple(ops.shape(x)[:2]) + (self.heads, size))

    def unpack_attention_inputs(self, inputs, a_bias, p_bias):
        """Split ``[qw, kw, vw, (a_bias), (position)]``: returns ``(qw, kw, vw, bias, position)``
        with a 3-D bias aligned to (b, h, n, m). RoPE is applied earlier, in ``call``, as the
        rotated keys are what a cache stores."""
        (qw, kw, vw), n = inputs[:3], 3
        bias = None
        if a_bias:
            bias = inputs[n]
            n += 1
            if len(bias.shape) == 3:
                bias = align(bias, [0, -2, -1], 4)
        position = inputs[n] if len(inputs) > n else None
        return qw, kw, vw, bias, position

    def pay_attention_to(self, inputs, mask=None, a_bias=None, p_bias=None, training=None):
        """Scaled dot-product attention on per-head tensors (b, n, h, d).

        Returns ``(o, a)``: the output (b, n, h, head_size) and the pre-softmax
        scores (b, h, n, m), or ``None`` when the fused kernel was used.
        """
        qw, kw, vw, bias, position = self.unpack_attention_inputs(inputs, a_bias, p_bias)
        _, v_mask = mask
        dropout = (self.attention_dropout or 0.0) if training else 0.0
        use_fused = (
            self.normalization == "softmax" and not self.return_attention_scores
            and p_bias != "typical_relative" and self.key_size == self.head_size
            and not dropout and kernels.fused_attention_supported(qw.dtype)
        )
        if p_bias == "t5_relative":
            position_bias = ops.expand_dims(ops.transpose(position, (2, 0, 1)), 0)
            if bias is None or is_bool(bias):
                float_bias, bool_bias = position_bias, bias
            else:
                float_bias, bool_bias = bias + position_bias, None
        elif bias is not None and not is_bool(bias):
            float_bias, bool_bias = bias, None
        else:
            float_bias, bool_bias = None, bias
        if use_fused:
            return self._fused_attention(qw, kw, vw, v_mask, float_bias, bool_bias), None
        # (b, h, n, d) @ (b, h, d, m): explicit transposes + batched matmul run ~3x faster
        # than the equivalent einsum under XLA on CPU, and no slower elsewhere.
        a = ops.matmul(ops.transpose(qw, (0, 2, 1, 3)), ops.transpose(kw, (0, 2, 3, 1)))
        if p_bias == "typical_relative":
            position_embeddings = position
            a = a + ops.einsum("bjhd,jkd->bhjk", qw, position_embeddings)
        if self.attention_scale:
            a = a / (self.key_size ** 0.5)
        if float_bias is not None:
            a = a + ops.cast(float_bias, a.dtype)
        if bool_bias is not None and self.return_attention_scores:  # RealFormer passes the mask on
            a = ops.where(ops.cast(bool_bias, "bool"), a, ops.cast(-np.inf, a.dtype))
        a_masked = ops.cast(a, "float32")
        A = attention_normalize(a_masked, v_mask, -1, self.normalization,
                                None if bool_bias is None else ops.cast(bool_bias, "bool"))
        A = ops.cast(A, vw.dtype)
        if self.attention_dropout:
            A = self.dropout(A, training=training)
        o = ops.transpose(ops.matmul(A, ops.transpose(vw, (0, 2, 1, 3))), (0, 2, 1, 3))
        if p_bias == "typical_relative":
            o = o + ops.einsum("bhjk,jkd->bjhd", A, ops.cast(position_embeddings, A.dtype))
        return o, a

    def _fused_attention(self, qw, kw, vw, v_mask, float_bias, bool_bias):
        """``keras.ops.dot_product_attention`` with the key mask and biases folded in.

        Not used with attention dropout: that op has none, and PyTorch's fused kernel
        draws its mask with ``bernoulli_``, slower on CPU than the whole unfused path
        with :func:`bert4keras.backend.dropout`."""
        mask = None
        if v_mask is not None:
            mask = align(ops.cast(v_mask, "bool"), [0, 3], 4)
        if bool_bias is not None:
            bool_bias = ops.cast(bool_bias, "bool")
            mask = bool_bias if mask is None else ops.logical_and(mask, bool_bias)
        if float_bias is not None:
            float_bias = ops.cast(float_bias, qw.dtype)
            if mask is not None:  # one float bias: backends differ on bias + mask together
                float_bias = ops.where(mask, float_bias, ops.cast(-np.inf, qw.dtype))
                mask = None
        scale = (1.0 / self.key_size ** 0.5) if self.attention_scale else 1.0
        return kernels.dot_product_attention(qw, kw, vw, bias=float_bias, mask=mask, scale=scale)

    def compute_output_spec(self, inputs, mask=None, a_bias=None, p_bias=None, training=None,
                            cache=None, cache_index=None):
        shapes = self.compute_output_shape([tuple(x.shape) for x in inputs[:3]])
        if cache is not None and self.return_attention_scores:  # the scores span the cache
            shapes[1] = shapes[1][:3] + (cache[0].shape[1],)
        if isinstance(shapes, list):
            outputs = [keras.KerasTensor(shape, dtype=self.compute_dtype) for shape in shapes]
        else:
            outputs = keras.KerasTensor(shapes, dtype=self.compute_dtype)
        if cache is None:
            return outputs
        return outputs, [keras.KerasTensor(c.shape, dtype=c.dtype) for c in cache]

    def compute_output_shape(self, input_shape):
        o_shape = tuple(input_shape[0][:2]) + (self.out_dim,)
        if self.return_attention_scores:
            return [o_shape, (input_shape[0][0], self.heads, input_shape[0][1], input_shape[1][1])]
        return o_shape

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        return [mask[0], None] if self.return_attention_scores else mask[0]

    def get_config(self):
        return {
            **super().get_config(),
            "heads": self.heads,
            "head_size": self.head_size,
            "out_dim": self.out_dim,
            "key_size": self.key_size,
            "use_bias": self.use_bias,
            "normalization": self.normalization,
            "attention_scale": self.attention_scale,
            "attention_dropout": self.attention_dropout,
            "return_attention_scores": self.return_attention_scores,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
        }


class AttentionStep(keras.layers.Layer):
    """One cached call of an existing attention layer, as a node of a step model.

    A Keras layer's nodes must all share one output structure, and ``attention``'s
    first node returns the output alone; this wrapper's nodes return
    ``(output, [k, v])``. It owns no weights beyond ``attention``'s own.
    """

    def __init__(self, attention: MultiHeadAttention, **kwargs):
        super().__init__(**kwargs)
        self.attention = attention
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None  # key validity is in the step's attention bias

    def call(self, inputs, cache, cache_index=None, training=None, **arguments):
        return self.attention.call(inputs, cache=cache, cache_index=cache_index,
                                   training=training, **arguments)

    def compute_output_spec(self, inputs, cache, cache_index=None, training=None, **arguments):
        return self.attention.compute_output_spec(inputs, cache=cache, cache_index=cache_index,
                                                  **arguments)


class AttentionKeysValues(keras.layers.Layer):
    """``attention``'s per-head keys and values of a fixed input (an encoder output): the
    static cache its cached cross-attention calls read, computed once. No weights of its own."""

    def __init__(self, attention: MultiHeadAttention, **kwargs):
        super().__init__(**kwargs)
        self.attention = attention
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None  # the encoder's padding is in the cross-attention bias

    def call(self, x):
        a = self.attention
        return [a._split_heads(a.k_dense(x), a.key_size), a._split_heads(a.v_dense(x), a.head_size)]

    def compute_output_spec(self, x):
        a = self.attention
        return [keras.KerasTensor(tuple(x.shape[:2]) + (a.heads, size), dtype=a.compute_dtype)
                for size in (a.key_size, a.head_size)]
