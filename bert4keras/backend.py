"""Backend helpers: ``keras``, the Keras-2 style ``K`` namespace, masks, GELU, positions, losses.

Everything here is written with ``keras.ops`` so it runs unchanged on JAX,
PyTorch and TensorFlow.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from keras import ops

from bert4keras import _keras2_backend as K
from bert4keras import kernels
from bert4keras._keras2_backend import flatten, reshape, symbolic, where
from bert4keras._keras2_compat import keras2 as keras  # Keras 3 + Keras 2 spellings: docs/keras2.md
from bert4keras.recompute import do_recompute, recompute_grad, set_recompute

__all__ = [
    "keras", "K", "ops", "gelu_erf", "gelu_tanh", "gelu_sigmoid", "set_gelu", "get_gelu",
    "piecewise_linear", "align", "sequence_masking", "attention_normalize", "batch_gather",
    "root_mean_square", "sinusoidal_embeddings", "Sinusoidal", "apply_rotary_position_embeddings",
    "multilabel_categorical_crossentropy", "sparse_multilabel_categorical_crossentropy",
    "search_layer", "do_recompute", "recompute_grad", "set_recompute", "infinity", "is_bool",
    "dropout", "is_tf_keras", "get_available_gpus", "reshape", "flatten", "dtype", "where",
    "pool1d", "divisible_temporal_padding", "swish", "leaky_relu", "symbolic",
    "graph_mode_decorator", "custom_objects",
]


def infinity() -> float:
    """The fill value for masked logits; ``-inf`` is exact in every float dtype."""
    return np.inf


# --------------------------------------------------------------------------- GELU


@keras.saving.register_keras_serializable(package="bert4keras")
def gelu_erf(x):
    """Exact GELU, ``0.5 x (1 + erf(x / sqrt 2))`` (BERT's original)."""
    return kernels.gelu_erf(ops.convert_to_tensor(x))


@keras.saving.register_keras_serializable(package="bert4keras")
def gelu_tanh(x):
    """Tanh approximation of GELU (used to train ALBERT and GPT)."""
    x = ops.convert_to_tensor(x)
    x32 = ops.cast(x, "float32")  # x**3 overflows float16 for |x| > ~40
    cdf = 0.5 * (1.0 + ops.tanh(float(np.sqrt(2.0 / np.pi)) * (x32 + 0.044715 * x32 * x32 * x32)))
    return x * ops.cast(cdf, x.dtype)


@keras.saving.register_keras_serializable(package="bert4keras")
def gelu_sigmoid(x):
    """Sigmoid approximation ``x * sigmoid(1.702 x)`` (not in bert4keras; for comparison)."""
    x = ops.convert_to_tensor(x)
    return x * ops.sigmoid(1.702 * x)


_GELU = {"erf": gelu_erf, "tanh": gelu_tanh}
_gelu_version = "erf"


def set_gelu(version: str) -> None:
    """Choose what the string ``'gelu'`` means in layers built from now on: ``'erf'`` or ``'tanh'``."""
    global _gelu_version
    version = version.lower()
    assert version in _GELU, "gelu version must be erf or tanh"
    _gelu_version = version


def get_gelu():
    """The GELU function that ``'gelu'`` currently resolves to."""
    return _GELU[_gelu_version]


def get_activation(activation):
    """Resolve an activation; ``'gelu'`` follows :func:`set_gelu` instead of Keras's default."""
    if isinstance(activation, str):
        name = activation.lower()
        if name == "gelu":
            return get_gelu()
        if name in ("gelu_erf", "gelu_tanh", "gelu_sigmoid"):
            return globals()[name]
        if name == "swish":
            return keras.activations.silu
    return keras.activations.get(activation)


# --------------------------------------------------------------------------- schedules


def piecewise_linear(t, schedule: dict, from_zero: bool = True):
    """Piecewise-linear function of ``t`` through the points of ``schedule``.

    ``{1000: 1, 2000: 0.1}`` rises linearly 0 -> 1 over [0, 1000], falls to 0.1
    over [1000, 2000], then stays at 0.1. Before the first key the value is 0
    (``from_zero``) or the first value.
    """
    points = sorted((int(k), float(v)) for k, v in schedule.items())
    if not points:
        raise ValueError("piecewise_linear: the schedule is empty")
    if any(k < 0 for k, _ in points):
        raise ValueError(f"piecewise_linear: negative step in schedule {schedule}")
    if len({k for k, _ in points}) != len(points):
        raise ValueError(f"piecewise_linear: duplicate steps in schedule {schedule}")
    if from_zero and points[0][0] != 0:
        points = [(0, 0.0)] + points
    t = ops.cast(t, keras.config.floatx())
    x = ops.ones_like(t) * points[0][1]
    for i, (t_begin, x_begin_value) in enumerate(points):
        x_before = x
        if i + 1 < len(points):
            t_end, x_end_value = points[i + 1]
            slope = (x_end_value - x_begin_value) / (t_end - t_begin)
            x = x_begin_value + slope * (t - t_begin)
        else:
            x = ops.ones_like(t) * x_begin_value
        x = ops.where(t >= t_begin, x, x_before)
    return x


# --------------------------------------------------------------------------- masks


def align(tensor, axes: Sequence[int], ndim: int | None = None):
    """Insert axes so that axis i of ``tensor`` lands on axis ``axes[i]`` of an ``ndim``-d result."""
    if len(axes) != len(tensor.shape):
        raise ValueError(f"align: {len(axes)} axes given for a {len(tensor.shape)}-d tensor")
    if ndim is None:
        if min(axes) < 0:
            raise ValueError("align: ndim is required when axes are negative")
        ndim = max(axes) + 1
    axes = [a % ndim for a in axes]
    index = tuple(slice(None) if i in axes else None for i in range(ndim))
    return tensor[index]


def is_bool(x) -> bool:
    """Whether a tensor holds booleans (dtype objects differ per backend)."""
    return keras.backend.standardize_dtype(x.dtype) == "bool"


def sequence_masking(x, mask=None, value=0.0, axis=None, bias=None, return_mask=False):
    """Fill positions where ``mask`` is False with ``value`` along ``axis`` (an int or a list).

    ``mask`` is (batch, seq_len); a list of axes AND-s the mask over each. ``bias``:
    a bool tensor is AND-ed into the mask, a float tensor is added to ``x`` at the
    unmasked positions.
    """
    if value in ("-inf", "inf"):
        value = -np.inf if value == "-inf" else np.inf
    x = ops.convert_to_tensor(x)
    ndim = len(x.shape)
    if mask is not None:
        mask = ops.cast(mask, "bool")
        axes = [1] if axis is None else (list(axis) if isinstance(axis, (list, tuple)) else [axis])
        axes = [a % ndim for a in axes]
        full = None
        for a in axes:
            m = align(mask, [0, a], ndim)
            full = m if full is None else ops.logical_and(full, m)
        mask = full
    if bias is not None:
        bias = ops.convert_to_tensor(bias)
        if is_bool(bias):
            mask = bias if mask is None else ops.logical_and(mask, bias)
        else:
            x = x + ops.cast(bias, x.dtype)
    if mask is not None:
        x = ops.where(mask, x, ops.cast(value, x.dtype))
    if return_mask:
        return x, mask
    return x


def attention_normalize(a, mask=None, axis: int = -1, method: str = "softmax", bias=None):
    """Normalize attention logits: ``softmax`` (masked with -inf), ``squared_relu`` or ``softmax_plus``."""
    a, mask = sequence_masking(a, mask, -np.inf, axis, bias, True)
    if method == "softmax":
        return ops.softmax(a, axis=axis)
    if mask is None:
        length = ops.cast(ops.shape(a)[axis], a.dtype)
    else:
        length = ops.sum(ops.cast(mask, a.dtype), axis=axis, keepdims=True)
    if method == "squared_relu":
        return ops.square(ops.relu(a)) / length
    if method == "softmax_plus":
        scale = ops.log(ops.maximum(length, 16.0)) / np.log(512.0)
        return ops.softmax(a * scale, axis=axis)
    raise ValueError(f"attention_normalize: unknown method {method!r}")


# --------------------------------------------------------------------------- misc ops


def dropout(x, rate: float, noise_shape=None, seed=None):
    """Inverted dropout: zero each element with probability ``rate``, scale the rest by 1/(1-rate).

    ``seed`` is a ``keras.random.SeedGenerator`` (or anything ``keras.random.dropout`` takes).
    On JAX and PyTorch the keep mask comes from :mod:`bert4keras.kernels`, several times
    cheaper on CPU than ``keras.random.dropout``'s.
    """
    if rate == 0:
        return x
    x = ops.convert_to_tensor(x)
    if rate >= 1:
        return ops.zeros_like(x)
    backend = keras.backend.backend()
    if backend not in ("jax", "torch"):
        return keras.random.dropout(x, rate, noise_shape=noise_shape, seed=seed)
    shape = tuple(x.shape) if noise_shape is None else tuple(
        x.shape[i] if d is None else d for i, d in enumerate(noise_shape))
    if backend == "jax":
        keep = kernels.jax_keep_mask(shape, rate, seed)
    else:
        keep = kernels.torch_keep_mask(shape, rate, seed, x.device)
    return ops.where(keep, x / (1 - rate), ops.zeros((), x.dtype))


def batch_gather(params, indices):
    """Gather on axis ``ndim(indices) - 1`` of ``params``, the axes before it being shared batch axes.

    As ``tf.gather(params, indices, batch_dims=ndim(indices) - 1)``: params (b, n) with
    indices (b, k) give (b, k); params (b, n, h) with indices (b, k) give (b, k, h).
    """
    indices = ops.cast(indices, "int32")
    axis = len(indices.shape) - 1
    extra = len(params.shape) - axis - 1
    if extra < 0:
        raise ValueError(f"batch_gather: indices of shape {tuple(indices.shape)} have more axes than "
                         f"params of shape {tuple(params.shape)}")
    if extra == 0:
        return ops.take_along_axis(params, indices, axis=axis)
    expanded = ops.reshape(indices, tuple(ops.shape(indices)) + (1,) * extra)
    target = tuple(ops.shape(indices)) + tuple(ops.shape(params)[axis + 1:])
    return ops.take_along_axis(params, ops.broadcast_to(expanded, target), axis=axis)


def pool1d(x, pool_size: int, strides: int = 1, padding: str = "valid", data_format=None,
           pool_mode: str = "max"):
    """Max or average pooling along the steps of a (batch, steps, features) sequence."""
    if pool_mode not in ("max", "avg"):
        raise ValueError(f"pool1d: pool_mode must be 'max' or 'avg', got {pool_mode!r}")
    pool = ops.max_pool if pool_mode == "max" else ops.average_pool
    data_format = data_format or keras.config.image_data_format()
    return pool(x, pool_size, strides=strides, padding=padding, data_format=data_format)


def divisible_temporal_padding(x, n: int):
    """Zero-pad axis 1 on the right until its length is a multiple of ``n``."""
    length = ops.shape(x)[1]
    if length is None:
        raise ValueError("divisible_temporal_padding: the sequence length (axis 1) must be known")
    return K.temporal_padding(x, (0, -length % n))


def root_mean_square(x, axis=None, keepdims: bool = False):
    """sqrt(mean(x^2))."""
    return ops.sqrt(ops.mean(ops.square(x), axis=axis, keepdims=keepdims))


def sinusoidal_embeddings(pos, dim: int, base: float = 10000.0):
    """Interleaved [sin, cos] position encodings of width ``dim`` for positions ``pos``."""
    if dim % 2:
        raise ValueError(f"sinusoidal_embeddings: dim must be even, got {dim}")
    pos = ops.cast(pos, "float32")
    freqs = ops.power(base, -2.0 * ops.arange(dim // 2, dtype="float32") / dim)
    angles = ops.expand_dims(pos, -1) * freqs
    emb = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)
    return ops.reshape(emb, tuple(ops.shape(pos)) + (dim,))


@keras.saving.register_keras_serializable(package="bert4keras")
class Sinusoidal(keras.initializers.Initializer):
    """Initializer filling a (positions, dim) table with sinusoidal encodings."""

    def __call__(self, shape, dtype=None):
        size, dim = shape
        return ops.cast(sinusoidal_embeddings(ops.arange(size), dim), dtype or "float32")


def apply_rotary_position_embeddings(sinusoidal, *tensors):
    """Rotate ``tensors`` (b, n, ..., d) by RoPE angles given as interleaved sinusoidal (b, n, d)."""
    if not tensors:
        raise ValueError("apply_rotary_position_embeddings: at least one tensor is required")
    ndim = len(tensors[0].shape)
    sinusoidal = align(sinusoidal, [0, 1, -1], ndim)
    cos_pos = ops.repeat(sinusoidal[..., 1::2], 2, axis=-1)
    sin_pos = ops.repeat(sinusoidal[..., ::2], 2, axis=-1)
    outputs = []
    for t in tensors:
        rotated = ops.reshape(ops.stack([-t[..., 1::2], t[..., ::2]], axis=-1), ops.shape(t))
        outputs.append(t * ops.cast(cos_pos, t.dtype) + rotated * ops.cast(sin_pos, t.dtype))
    return outputs[0] if len(outputs) == 1 else outputs


# --------------------------------------------------------------------------- losses


def multilabel_categorical_crossentropy(y_true, y_pred):
    """Multi-label softmax cross-entropy (logits unbounded; predict classes with y_pred > 0)."""
    y_true = ops.cast(y_true, y_pred.dtype)
    valid = ops.not_equal(y_pred, -np.inf)
    y_neg = ops.where(valid, y_pred, -np.inf) + ops.log(1.0 - y_true)
    y_pos = ops.where(valid, -y_pred, -np.inf) + ops.log(y_true)
    zeros = ops.zeros_like(y_pred[..., :1])
    neg_loss = ops.logsumexp(ops.concatenate([y_neg, zeros], axis=-1), axis=-1)
    pos_loss = ops.logsumexp(ops.concatenate([y_pos, zeros], axis=-1), axis=-1)
    return neg_loss + pos_loss


def sparse_multilabel_categorical_crossentropy(y_true, y_pred, mask_zero: bool = False):
    """Sparse form: ``y_true`` holds the indices of the positive classes (..., num_positive)."""
    zeros = ops.zeros_like(y_pred[..., :1])
    y_pred = ops.concatenate([y_pred, zeros], axis=-1)
    if mask_zero:
        infs = zeros + np.inf
        y_pred = ops.concatenate([infs, y_pred[..., 1:]], axis=-1)
    y_pos_2 = batch_gather(y_pred, y_true)
    y_pos_1 = ops.concatenate([y_pos_2, zeros], axis=-1)
    if mask_zero:
        y_pred = ops.concatenate([-infs, y_pred[..., 1:]], axis=-1)
        y_pos_2 = batch_gather(y_pred, y_true)
    pos_loss = ops.logsumexp(-y_pos_1, axis=-1)
    all_loss = ops.logsumexp(y_pred, axis=-1)
    aux_loss = ops.logsumexp(y_pos_2, axis=-1) - all_loss
    aux_loss = ops.clip(1.0 - ops.exp(aux_loss), keras.config.epsilon(), 1.0)
    return pos_loss + all_loss + ops.log(aux_loss)


def search_layer(inputs, name: str, exclude_from: set | None = None):
    """Find the layer called ``name`` among those that produced ``inputs`` (a tensor or layer).

    Searches upwards through inbound layers (and the layers of a nested model);
    ``exclude_from`` is a set of layers not to search through, and collects the
    layers visited. Returns None when no layer has that name.
    """
    visited = set() if exclude_from is None else exclude_from
    stack = [inputs]
    while stack:
        item = stack.pop()
        layer = item if isinstance(item, keras.layers.Layer) else item._keras_history[0]
        if layer.name == name:
            return layer
        if layer in visited:
            continue
        visited.add(layer)
        if isinstance(layer, keras.Model):
            for sub in layer.layers:
                if sub.name == name:
                    return sub
        for node in layer._inbound_nodes:
            stack.extend(node.parent_nodes and [n.operation for n in node.parent_nodes] or [])
    return None


# --------------------------------------------------------------------------- 0.11.5 compatibility

is_tf_keras = False
"""Always False: ``keras`` here is Keras 3 (bert4keras 0.11.5 set it from ``TF_KERAS=1``)."""


def dtype(x) -> str | None:
    """The dtype name of a tensor, or None for things without one (Python numbers)."""
    try:
        return K.dtype(x)
    except AttributeError:
        return None


@keras.saving.register_keras_serializable(package="bert4keras")
def swish(x):
    """``x * sigmoid(x)`` under its own name (so ``activation='swish'`` round-trips)."""
    return ops.silu(x)


@keras.saving.register_keras_serializable(package="bert4keras")
def leaky_relu(x, alpha: float = 0.2):
    """Leaky ReLU with bert4keras's default slope 0.2."""
    return ops.leaky_relu(x, negative_slope=alpha)


def get_available_gpus() -> list[str]:
    """Names of the GPUs the current Keras backend can use, as ``'/device:GPU:i'``."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        count = len([d for d in jax.devices() if d.platform == "gpu"])
    elif backend == "torch":
        import torch

        count = torch.cuda.device_count()
    else:
        import tensorflow as tf

        count = len(tf.config.list_physical_devices("GPU"))
    return [f"/device:GPU:{i}" for i in range(count)]


def graph_mode_decorator(f, *args, **kwargs):
    """TensorFlow-graph custom gradients (0.11.5's recompute internals); not available under Keras 3."""
    raise NotImplementedError(
        "graph_mode_decorator builds a TF1-graph custom gradient; under Keras 3 use "
        "keras.ops.custom_gradient for a custom gradient, or bert4keras.backend.recompute_grad "
        "for recomputation"
    )


custom_objects = {
    "gelu_erf": gelu_erf,
    "gelu_tanh": gelu_tanh,
    "gelu": gelu_erf,
    "root_mean_square": root_mean_square,
    "swish": swish,
    "leaky_relu": leaky_relu,
    "Sinusoidal": Sinusoidal,
    "multilabel_categorical_crossentropy": multilabel_categorical_crossentropy,
    "initializer": keras.initializers.GlorotUniform,
}
"""Names for ``keras.models.load_model(..., custom_objects=custom_objects)`` of 0.11.5-era models.

Unlike 0.11.5 they are not added to Keras's global custom objects, where ``'gelu'`` would
shadow Keras's own activation; every function above is registered under ``bert4keras>``.
"""
