"""Core layers: embeddings, (conditional) layer norm, feed-forward, masked pooling.

Every layer here supports Keras masks: padding never changes the
outputs at real tokens. Layers are registered for ``keras.saving`` so saved
models reload without ``custom_objects``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import initializers, ops

from bert4keras import kernels
from bert4keras.backend import align, dropout, get_activation

register = keras.saving.register_keras_serializable(package="bert4keras")


def serialize_activation(fn):
    """Store activations by name so a saved model reloads with the same GELU variant."""
    return keras.activations.serialize(fn)


@register
class Layer(keras.layers.Layer):
    """Base of bert4keras layers: masks pass through unless a layer says otherwise."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True


@register
class Embedding(keras.layers.Embedding):
    """Token embedding that doubles as the tied output projection (``mode='dense'``).

    With ``mask_zero=True`` the mask is ``id != 0`` except that the first position
    is always kept, so every attention row has at least one valid key.
    """

    def compute_mask(self, inputs, mask=None):
        if len(inputs.shape) != 2:  # dense mode: the hidden states' mask passes through
            return mask
        if not self.mask_zero:
            return None
        mask = ops.not_equal(inputs, 0)
        return ops.concatenate([ops.ones_like(mask[:, :1]), mask[:, 1:]], axis=1)

    def call(self, inputs, mode: str = "embedding"):
        if mode == "embedding":
            return super().call(inputs)
        if mode != "dense":
            raise ValueError(f"{self.name}: mode must be 'embedding' or 'dense', got {mode!r}")
        kernel = ops.cast(self.embeddings, self.compute_dtype)
        return ops.matmul(inputs, ops.transpose(kernel))

    def compute_output_spec(self, inputs, mode: str = "embedding"):
        if mode == "dense":
            return keras.KerasTensor(tuple(inputs.shape[:-1]) + (self.input_dim,),
                                     dtype=self.compute_dtype)
        return super().compute_output_spec(inputs)


@register
class Dense(keras.layers.Dense):
    """``keras.layers.Dense`` whose plain float path goes through :func:`bert4keras.kernels.linear`
    (on PyTorch one ``addmm`` instead of a matmul and a bias add); LoRA and quantized layers
    keep Keras's own path."""

    def call(self, inputs, training=None):
        if self.lora_enabled or self.quantization_mode is not None:
            return super().call(inputs, training=training)
        x = kernels.linear(inputs, self.kernel, self.bias)
        return x if self.activation is None else self.activation(x)


@register
class Dropout(keras.layers.Dropout):
    """``keras.layers.Dropout`` through :func:`bert4keras.backend.dropout` (on JAX: a
    hashed mask instead of threefry, much cheaper on CPU; elsewhere identical)."""

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            return dropout(inputs, self.rate, noise_shape=self.noise_shape, seed=self.seed_generator)
        return inputs


@register
class BiasAdd(Layer):
    """Adds a trainable bias vector to the last axis (the MLM output bias)."""

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(input_shape[-1],), initializer="zeros")

    def call(self, inputs):
        return inputs + ops.cast(self.bias, inputs.dtype)


@register
class ScaleOffset(Layer):
    """``x * gamma + beta`` on the last axis; with ``conditional=True`` the input is
    ``[x, cond]`` and gamma/beta are shifted by dense projections of ``cond``.

    ``scale``/``offset`` may be True (trainable), False (absent) or a constant.
    """

    def __init__(
        self,
        scale=True,
        offset=True,
        conditional: bool = False,
        hidden_units: int | None = None,
        hidden_activation="linear",
        hidden_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.scale = scale
        self.offset = offset
        self.conditional = conditional
        self.hidden_units = hidden_units
        self.hidden_activation = get_activation(hidden_activation)
        self.hidden_initializer = initializers.get(hidden_initializer)

    def build(self, input_shape):
        if self.conditional:
            input_shape, cond_shape = input_shape
        dim = input_shape[-1]
        if self.offset is True:
            self.beta = self.add_weight(name="beta", shape=(dim,), initializer="zeros")
        if self.scale is True:
            self.gamma = self.add_weight(name="gamma", shape=(dim,), initializer="ones")
        if self.conditional:
            if self.hidden_units is not None:
                self.hidden_dense = keras.layers.Dense(
                    self.hidden_units, activation=self.hidden_activation, use_bias=False,
                    kernel_initializer=self.hidden_initializer, name="hidden_dense",
                )
                self.hidden_dense.build(cond_shape)
                cond_shape = tuple(cond_shape[:-1]) + (self.hidden_units,)
            if self.offset not in (False, None):
                self.beta_dense = keras.layers.Dense(
                    dim, use_bias=False, kernel_initializer="zeros", name="beta_dense")
                self.beta_dense.build(cond_shape)
            if self.scale not in (False, None):
                self.gamma_dense = keras.layers.Dense(
                    dim, use_bias=False, kernel_initializer="zeros", name="gamma_dense")
                self.gamma_dense.build(cond_shape)

    def compute_mask(self, inputs, mask=None):
        if self.conditional:
            return None if mask is None else mask[0]
        return mask

    def call(self, inputs):
        if self.conditional:
            inputs, conds = inputs
            if self.hidden_units is not None:
                conds = self.hidden_dense(conds)
            conds = align(conds, [0, -1], len(inputs.shape))
        return self._scale_offset(inputs, conds if self.conditional else None)

    def _scale_offset(self, x, conds):
        if self.scale not in (False, None):
            gamma = self.gamma if self.scale is True else self.scale
            gamma = ops.cast(gamma, x.dtype)
            if conds is not None:
                gamma = gamma + ops.cast(self.gamma_dense(conds), x.dtype)
            x = x * gamma
        if self.offset not in (False, None):
            beta = self.beta if self.offset is True else self.offset
            beta = ops.cast(beta, x.dtype)
            if conds is not None:
                beta = beta + ops.cast(self.beta_dense(conds), x.dtype)
            x = x + beta
        return x

    def compute_output_shape(self, input_shape):
        return input_shape[0] if self.conditional else input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            "offset": self.offset,
            "conditional": self.conditional,
            "hidden_units": self.hidden_units,
            "hidden_activation": serialize_activation(self.hidden_activation),
            "hidden_initializer": initializers.serialize(self.hidden_initializer),
        }


@register
class LayerNormalization(ScaleOffset):
    """(Conditional) layer norm, computed in float32 whatever the compute dtype.

    ``zero_mean=False`` gives the RMS-style norm of T5/RoFormerV2. Weight order is
    [beta, gamma], as in bert4keras's checkpoint mappings.
    """

    def __init__(self, zero_mean: bool = True, unit_variance: bool = True,
                 epsilon: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.zero_mean = zero_mean
        self.unit_variance = unit_variance
        self.epsilon = epsilon or keras.config.epsilon() ** 2

    def call(self, inputs):
        conds = None
        if self.conditional:
            inputs, conds = inputs
            if self.hidden_units is not None:
                conds = self.hidden_dense(conds)
            conds = ops.cast(align(conds, [0, -1], len(inputs.shape)), "float32")
        dtype = inputs.dtype
        x = ops.cast(inputs, "float32")
        if conds is None and self.zero_mean and self.unit_variance \
                and self.scale in (True, False, None) and self.offset in (True, False, None):
            gamma = ops.cast(self.gamma, "float32") if self.scale is True else None
            beta = ops.cast(self.beta, "float32") if self.offset is True else None
            # keras's fused kernel (torch: F.layer_norm) computes the same formula
            return ops.cast(ops.layer_normalization(x, gamma, beta, epsilon=self.epsilon), dtype)
        if self.zero_mean:
            x = x - ops.mean(x, axis=-1, keepdims=True)
        if self.unit_variance:
            variance = ops.mean(ops.square(x), axis=-1, keepdims=True)
            x = x * ops.rsqrt(variance + self.epsilon)
        return ops.cast(self._scale_offset(x, conds), dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "zero_mean": self.zero_mean,
            "unit_variance": self.unit_variance,
            "epsilon": self.epsilon,
        }


def merge_positions(inputs, embeddings, merge_mode: str, output_dim: int):
    """Combine position embeddings with ``inputs`` as bert4keras's ``merge_mode`` says:
    add, mul (``inputs * (1 + embeddings)``), zero (the embeddings alone) or concat."""
    if merge_mode == "add":
        return inputs + embeddings
    if merge_mode == "mul":
        return inputs * (embeddings + 1.0)
    if merge_mode == "zero":
        return embeddings
    embeddings = ops.broadcast_to(embeddings, tuple(ops.shape(inputs)[:2]) + (output_dim,))
    return ops.concatenate([inputs, embeddings], axis=-1)


@register
class PositionEmbedding(Layer):
    """Trainable absolute position embeddings, merged with the input.

    ``merge_mode``: 'add', 'mul', 'zero' (return the embeddings) or 'concat'.
    ``hierarchical`` (True or alpha, default 0.4) decomposes position i as
    (i // n, i % n) so texts longer than ``input_dim`` get distinct positions.
    With ``custom_position_ids`` the input is ``[x, position_ids]``.
    """

    def __init__(self, input_dim: int, output_dim: int, merge_mode: str = "add",
                 hierarchical=None, embeddings_initializer="zeros",
                 custom_position_ids: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.merge_mode = merge_mode
        self.hierarchical = hierarchical
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.custom_position_ids = custom_position_ids

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer,
        )

    def compute_mask(self, inputs, mask=None):
        if self.custom_position_ids:
            return None if mask is None else mask[0]
        return mask

    def call(self, inputs, q_offset=0):
        """``q_offset`` (a scalar or one per row) is the position of the first token, for
        step-wise decoding and left-padded batches."""
        if self.custom_position_ids:
            inputs, position_ids = inputs
            position_ids = ops.cast(position_ids, "int32")
        else:
            seq_len = ops.shape(inputs)[1]
            # a left-padded row's padding gets negative positions: clip them to 0
            position_ids = ops.maximum(
                _offset_column(q_offset) + ops.arange(seq_len, dtype="int32")[None], 0)
        table = ops.cast(self.embeddings, inputs.dtype)
        if self.hierarchical:
            alpha = 0.4 if self.hierarchical is True else self.hierarchical
            table = (table - alpha * table[:1]) / (1.0 - alpha)
            embeddings = (alpha * ops.take(table, position_ids // self.input_dim, axis=0)
                          + (1.0 - alpha) * ops.take(table, position_ids % self.input_dim, axis=0))
        else:
            if not self.custom_position_ids and inputs.shape[1] is not None \
                    and inputs.shape[1] > self.input_dim:
                raise ValueError(
                    f"{self.name}: sequence length {inputs.shape[1]} exceeds the "
                    f"{self.input_dim} positions of this model (truncate with maxlen)")
            embeddings = ops.take(table, position_ids, axis=0)
        return merge_positions(inputs, embeddings, self.merge_mode, self.output_dim)

    def compute_output_shape(self, input_shape):
        if self.custom_position_ids:
            input_shape = input_shape[0]
        if self.merge_mode in ("add", "mul", "zero"):
            return tuple(input_shape[:2]) + (self.output_dim,)
        return tuple(input_shape[:2]) + (input_shape[2] + self.output_dim,)

    def get_config(self):
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "merge_mode": self.merge_mode,
            "hierarchical": self.hierarchical,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
            "custom_position_ids": self.custom_position_ids,
        }


@register
class FeedForward(Layer):
    """Two dense layers; a list of activations makes the first one a gated linear unit
    (``act0(x W0) * act1(x W1) * ...``, as in T5.1.1)."""

    def __init__(self, units: int, activation="relu", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        if not isinstance(activation, (list, tuple)):
            activation = [activation]
        self.activation = [get_activation(a) for a in activation]
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)

    def build(self, input_shape):
        for i, act in enumerate(self.activation):
            dense = Dense(
                self.units, activation=act, use_bias=self.use_bias,
                kernel_initializer=self.kernel_initializer, name=f"i{i}_dense",
            )
            dense.build(input_shape)
            setattr(self, f"i{i}_dense", dense)
        self.o_dense = Dense(
            input_shape[-1], use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer, name="o_dense",
        )
        self.o_dense.build(tuple(input_shape[:-1]) + (self.units,))

    def call(self, inputs):
        x = self.i0_dense(inputs)
        for i in range(1, len(self.activation)):
            x = x * getattr(self, f"i{i}_dense")(inputs)
        return self.o_dense(x)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": [serialize_activation(a) for a in self.activation],
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
        }


@register
class GlobalAveragePooling1D(keras.layers.Layer):
    """Mean over time of the unmasked steps: ``sum(x * m) / sum(m)``; time is axis 1
    (``data_format='channels_last'``) or axis 2 (``'channels_first'``)."""

    def __init__(self, data_format: str = "channels_last", **kwargs):
        super().__init__(**kwargs)
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"{type(self).__name__}: data_format must be 'channels_last' or "
                             f"'channels_first', got {data_format!r}")
        self.data_format = data_format
        self.supports_masking = True

    @property
    def time_axis(self) -> int:
        return 1 if self.data_format == "channels_last" else 2

    def expanded_mask(self, mask):
        """The (batch, time) mask broadcastable against the inputs."""
        return ops.expand_dims(mask, -1 if self.data_format == "channels_last" else 1)

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.mean(inputs, axis=self.time_axis)
        m = ops.cast(self.expanded_mask(mask), inputs.dtype)
        return ops.sum(inputs * m, axis=self.time_axis) / ops.maximum(ops.sum(m, axis=self.time_axis), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[3 - self.time_axis])

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


@register
class GlobalMaxPooling1D(GlobalAveragePooling1D):
    """Max over time of the unmasked steps."""

    def call(self, inputs, mask=None):
        if mask is not None:
            inputs = ops.where(self.expanded_mask(mask), inputs, ops.cast(-np.inf, inputs.dtype))
        return ops.max(inputs, axis=self.time_axis)


@register
class TokenSlice(keras.layers.Layer):
    """``x[:, index]``: one position of a sequence (the [CLS] vector for the pooler)."""

    def __init__(self, index: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.index = index
        self.supports_masking = True

    def call(self, inputs):
        return inputs[:, self.index]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "index": self.index}


def _offset_column(q_offset):
    """A scalar or per-row (b,) query offset as an int32 (1 or b, 1) column."""
    return ops.reshape(ops.cast(q_offset, "int32"), (-1, 1))


def _same_validity(visible, key_mask, q_offset, q_len):
    """AND ``visible`` (.., q_len, k_len) with "key j is as valid as query i" for a
    (b, k_len) key padding mask: real queries see only real keys, and a padding query
    still sees itself (a row with no visible key would make the softmax NaN)."""
    key_mask = ops.cast(key_mask, "bool")
    q_valid = ops.take(key_mask, ops.arange(q_len, dtype="int32") + ops.cast(q_offset, "int32"), axis=1)
    return ops.logical_and(visible, ops.equal(key_mask[:, None, :], q_valid[:, :, None]))


@register
class CausalMask(keras.layers.Layer):
    """Token ids (b, n) -> bool (1, n, k_len): query i (at position ``q_offset + i``)
    attends to the keys j <= q_offset + i.

    Without arguments this is the square causal mask. Step-wise decoding passes the
    cache write index as ``q_offset``, the cache size as ``k_len`` and the cache's key
    padding mask (b, k_len) as ``key_mask`` (the result is then (b, n, k_len)).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, q_offset=0, k_len=None, key_mask=None):
        n = ops.shape(inputs)[1]
        q_idxs = ops.arange(n, dtype="int32") + ops.cast(q_offset, "int32")
        k_idxs = ops.arange(n if k_len is None else k_len, dtype="int32")
        visible = ops.expand_dims(k_idxs[None, :] <= q_idxs[:, None], 0)
        if key_mask is not None:
            visible = _same_validity(visible, key_mask, q_offset, n)
        return visible

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_spec(self, inputs, q_offset=0, k_len=None, key_mask=None):
        n = inputs.shape[1]
        batch = 1 if key_mask is None else inputs.shape[0]
        return keras.KerasTensor((batch, n, n if k_len is None else k_len), dtype="bool")


@register
class UniLMMask(CausalMask):
    """Segment ids (b, n) -> bool (b, n, n): segment 0 is bidirectional, segment 1
    is causal and sees all of segment 0 (UniLM, arXiv:1905.03197).

    Key j is visible from position p when ``cumsum(segments)[j] <= cumsum(segments)[p]``.
    Step-wise decoding passes the segment ids of the whole cache as ``k_segment_ids``
    (b, k_len; future slots as segment 1) and the queries' first position as
    ``q_offset``; for a target-segment query this is the causal mask. ``key_mask``
    as for :class:`CausalMask`.
    """

    def call(self, inputs, q_offset=0, k_segment_ids=None, key_mask=None):
        n = ops.shape(inputs)[1]
        if k_segment_ids is None:
            k_idxs = q_idxs = ops.cumsum(ops.cast(inputs, "int32"), axis=1)
        else:
            k_idxs = ops.cumsum(ops.cast(k_segment_ids, "int32"), axis=1)
            positions = ops.arange(n, dtype="int32") + ops.cast(q_offset, "int32")
            q_idxs = ops.take(k_idxs, positions, axis=1)
        visible = k_idxs[:, None, :] <= q_idxs[:, :, None]
        if key_mask is not None:
            visible = _same_validity(visible, key_mask, q_offset, n)
        return visible

    def compute_output_spec(self, inputs, q_offset=0, k_segment_ids=None, key_mask=None):
        keys = inputs if k_segment_ids is None else k_segment_ids
        return keras.KerasTensor((inputs.shape[0], inputs.shape[1], keys.shape[1]), dtype="bool")


@register
class Add(keras.layers.Add):
    """``keras.layers.Add`` with Keras 2's mask rule: AND of the inputs' masks, ignoring
    inputs without one (Keras 3 drops the mask if any input lacks it)."""

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        masks = [m for m in mask if m is not None]
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = ops.logical_and(out, m)
        return out
