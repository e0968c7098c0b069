"""Gated Attention Unit (arXiv:2202.10447, kexue.fm/archives/8934) and the depth-scaled
initializer that RoFormerV2 and GAU-α were trained with (kexue.fm/archives/8978)."""

from __future__ import annotations

import keras
from keras import initializers, ops

from bert4keras.backend import apply_rotary_position_embeddings, attention_normalize, get_activation
from bert4keras.layers.core import Dropout, Layer, ScaleOffset, register, serialize_activation
from bert4keras.layers.initializers import DeferrableInitializer


@register
class DepthScaledTruncatedNormal(DeferrableInitializer):
    """Truncated normal with stddev ``1.13684723 / sqrt(fan) * gain * num_layers**(-1/order)``.

    ``fan`` is ``shape[0]``, or ``shape[1]`` when ``shape[0]`` looks like a vocabulary
    (> 10000) or a segment table (< 10); 1.13684723 undoes the variance lost by
    truncating at two standard deviations. RoFormerV2 uses order 2, GAU-α order 3.
    """

    def __init__(self, num_layers: int, order: int = 2, gain: float = 1.0, seed=None):
        self.num_layers = num_layers
        self.order = order
        self.gain = gain
        self.seed = seed

    def sample(self, shape, dtype=None):
        fan = shape[1] if len(shape) > 1 and (shape[0] > 10000 or shape[0] < 10) else shape[0]
        gain = self.gain * self.num_layers ** (-1.0 / self.order)
        stddev = 1.13684723 / fan ** 0.5 * gain
        return keras.random.truncated_normal(shape, stddev=stddev, dtype=dtype, seed=self.seed)

    def get_config(self):
        return {"num_layers": self.num_layers, "order": self.order, "gain": self.gain,
                "seed": self.seed}


@register
class GatedAttentionUnit(Layer):
    """Single-head attention gated by a GLU: ``o = W_o (u * (A v))``.

    Self-attention (default): inputs ``[x, (a_bias), (rotary sinusoids)]`` or ``x``;
    one dense layer gives u, v (``units`` each) and a shared z (``key_size``), and
    q, k are per-dimension scale/offsets of z. Cross-attention
    (``self_attention=False``): inputs ``[q, k, v, ...]``. ``normalization`` is
    'squared_relu' (the paper), 'softmax' or 'softmax_plus' (GAU-α).
    Weight order: i_dense, o_dense, q_scaleoffset, k_scaleoffset (self-attention).
    """

    def __init__(self, units: int, key_size: int, activation="swish", use_bias: bool = True,
                 normalization: str = "squared_relu", self_attention: bool = True,
                 attention_scale: bool = True, attention_dropout: float | None = None,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.key_size = key_size
        self.activation = get_activation(activation)
        self.use_bias = use_bias
        self.normalization = normalization
        self.self_attention = self_attention
        self.attention_scale = attention_scale
        self.attention_dropout = attention_dropout
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.dropout = Dropout(attention_dropout or 0.0, name="attention_dropout")

    def _dense(self, units, name, input_shape, activation=None):
        layer = keras.layers.Dense(units, activation=activation, use_bias=self.use_bias,
                                   kernel_initializer=self.kernel_initializer, name=name)
        layer.build(input_shape)
        return layer

    def build(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        x_shape = shapes[0]
        hidden_size = x_shape[-1]
        inner_shape = tuple(x_shape[:-1]) + (self.units,)
        if self.self_attention:
            self.i_dense = self._dense(2 * self.units + self.key_size, "i_dense", x_shape,
                                       self.activation)
            self.o_dense = self._dense(hidden_size, "o_dense", inner_shape)
            z_shape = tuple(x_shape[:-1]) + (self.key_size,)
            self.q_scaleoffset = ScaleOffset(offset=self.use_bias, name="q_scaleoffset")
            self.q_scaleoffset.build(z_shape)
            self.k_scaleoffset = ScaleOffset(offset=self.use_bias, name="k_scaleoffset")
            self.k_scaleoffset.build(z_shape)
        else:
            self.uq_dense = self._dense(self.units + self.key_size, "uq_dense", x_shape,
                                        self.activation)
            self.k_dense = self._dense(self.key_size, "k_dense", shapes[1], self.activation)
            self.v_dense = self._dense(self.units, "v_dense", shapes[2], self.activation)
            self.o_dense = self._dense(hidden_size, "o_dense", inner_shape)

    def call(self, inputs, mask=None, a_bias=None, p_bias=None, training=None):
        if not isinstance(inputs, (list, tuple)):
            inputs, mask = [inputs], [mask]
        mask = mask or [None] * len(inputs)
        if self.self_attention:
            x, n = inputs[0], 1
            key_mask = mask[0]
            u, v, z = ops.split(self.i_dense(x), [self.units, 2 * self.units], axis=-1)
            q, k = self.q_scaleoffset(z), self.k_scaleoffset(z)
        else:
            (q, k, v), n = inputs[:3], 3
            key_mask = mask[2]
            u, q = ops.split(self.uq_dense(q), [self.units], axis=-1)
            k, v = self.k_dense(k), self.v_dense(v)
        bias = None
        if a_bias:
            bias = inputs[n]
            n += 1
        if p_bias == "rotary":
            q, k = apply_rotary_position_embeddings(inputs[n], q, k)
        a = ops.einsum("bmd,bnd->bmn", q, k)
        if self.attention_scale:
            a = a / self.key_size ** 0.5
        A = attention_normalize(ops.cast(a, "float32"), key_mask, -1, self.normalization, bias)
        A = ops.cast(A, v.dtype)
        if self.attention_dropout:
            A = self.dropout(A, training=training)
        return self.o_dense(u * ops.einsum("bmn,bnd->bmd", A, v))

    def compute_mask(self, inputs, mask=None):
        return mask[0] if isinstance(mask, (list, tuple)) else mask

    def compute_output_shape(self, input_shape):
        return input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "key_size": self.key_size,
            "activation": serialize_activation(self.activation),
            "use_bias": self.use_bias,
            "normalization": self.normalization,
            "self_attention": self.self_attention,
            "attention_scale": self.attention_scale,
            "attention_dropout": self.attention_dropout,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
        }
