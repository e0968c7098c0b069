"""``K``: the Keras-2 backend functions bert4keras scripts call, over ``keras.ops``.

User code written as ``K.sum(K.square(y_true - y_pred), axis=-1)`` keeps working
on every Keras 3 backend. Names follow ``keras.backend`` of Keras 2.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

abs = ops.abs
all = ops.all
any = ops.any
arange = ops.arange
argmax = ops.argmax
argmin = ops.argmin
cos = ops.cos
cumsum = ops.cumsum
cumprod = ops.cumprod
equal = ops.equal
exp = ops.exp
greater = ops.greater
greater_equal = ops.greater_equal
less = ops.less
less_equal = ops.less_equal
log = ops.log
logsumexp = ops.logsumexp
maximum = ops.maximum
minimum = ops.minimum
not_equal = ops.not_equal
ones_like = ops.ones_like
pow = ops.power
relu = ops.relu
reshape = ops.reshape
round = ops.round
sigmoid = ops.sigmoid
sign = ops.sign
sin = ops.sin
softplus = ops.softplus
sqrt = ops.sqrt
square = ops.square
stack = ops.stack
stop_gradient = ops.stop_gradient
tanh = ops.tanh
tile = ops.tile
where = ops.where
zeros_like = ops.zeros_like
one_hot = ops.one_hot
gather = ops.take
clip = ops.clip
epsilon = keras.config.epsilon
floatx = keras.config.floatx
set_floatx = keras.config.set_floatx


def sum(x, axis=None, keepdims=False):
    return ops.sum(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return ops.mean(x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):
    return ops.max(x, axis=axis, keepdims=keepdims)


def min(x, axis=None, keepdims=False):
    return ops.min(x, axis=axis, keepdims=keepdims)


def prod(x, axis=None, keepdims=False):
    return ops.prod(x, axis=axis, keepdims=keepdims)


def std(x, axis=None, keepdims=False):
    return ops.std(x, axis=axis, keepdims=keepdims)


def var(x, axis=None, keepdims=False):
    return ops.var(x, axis=axis, keepdims=keepdims)


def cast(x, dtype):
    return ops.cast(x, dtype)


def dtype(x) -> str:
    return keras.backend.standardize_dtype(x.dtype)


def shape(x):
    return ops.shape(x)


def int_shape(x):
    return tuple(x.shape)


def ndim(x) -> int:
    return len(x.shape)


def expand_dims(x, axis=-1):
    return ops.expand_dims(x, axis)


def squeeze(x, axis):
    return ops.squeeze(x, axis)


def concatenate(tensors, axis=-1):
    return ops.concatenate(tensors, axis=axis)


def permute_dimensions(x, pattern):
    return ops.transpose(x, pattern)


def transpose(x):
    return ops.transpose(x)


def flatten(x):
    return ops.reshape(x, (-1,))


def batch_flatten(x):
    return ops.reshape(x, (ops.shape(x)[0], -1))


def repeat_elements(x, rep, axis):
    return ops.repeat(x, rep, axis=axis)


def dot(x, y):
    """Keras-2 ``K.dot``: contract the last axis of x with the second-to-last of y."""
    if len(y.shape) <= 2:
        return ops.matmul(x, y)
    return ops.tensordot(x, y, axes=[[len(x.shape) - 1], [len(y.shape) - 2]])


def batch_dot(x, y, axes=None):
    """Keras-2 ``K.batch_dot``: per-sample dot product over ``axes`` (default: last of x, first non-batch of y)."""
    x_ndim, y_ndim = len(x.shape), len(y.shape)
    if axes is None:
        axes = [x_ndim - 1, y_ndim - 2] if y_ndim > 2 else [x_ndim - 1, y_ndim - 1]
    if isinstance(axes, int):
        axes = [axes, axes]
    ax, ay = (a % n for a, n in zip(axes, (x_ndim, y_ndim)))
    x_letters = "abcdefgh"[:x_ndim]
    y_letters = "a" + "ijklmnop"[: y_ndim - 1]
    y_letters = y_letters[:ay] + x_letters[ax] + y_letters[ay + 1:]
    out = x_letters.replace(x_letters[ax], "") + y_letters[1:].replace(x_letters[ax], "")
    result = ops.einsum(f"{x_letters},{y_letters}->{out}", x, y)
    if len(result.shape) == 1:
        result = ops.expand_dims(result, -1)
    return result


def softmax(x, axis=-1):
    return ops.softmax(x, axis=axis)


def l2_normalize(x, axis=-1):
    return ops.normalize(x, axis=axis, order=2)


def switch(condition, then_expression, else_expression):
    return ops.where(condition, then_expression, else_expression)


def zeros(shape, dtype=None):
    return ops.zeros(shape, dtype=dtype or keras.config.floatx())


def ones(shape, dtype=None):
    return ops.ones(shape, dtype=dtype or keras.config.floatx())


def constant(value, dtype=None):
    return ops.convert_to_tensor(np.asarray(value), dtype=dtype)


def variable(value, dtype=None, name=None):
    return keras.Variable(value, dtype=dtype, name=name)


def get_value(x):
    return keras.ops.convert_to_numpy(x)


def set_value(x, value):
    x.assign(value)


def batch_get_value(xs):
    return [keras.ops.convert_to_numpy(x) for x in xs]


def batch_set_value(tuples):
    for variable_, value in tuples:
        variable_.assign(value)


def temporal_padding(x, padding=(1, 1)):
    return ops.pad(x, [[0, 0], list(padding), [0, 0]])


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    return keras.losses.categorical_crossentropy(target, output, from_logits=from_logits, axis=axis)


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    return keras.losses.sparse_categorical_crossentropy(target, output, from_logits=from_logits, axis=axis)


def binary_crossentropy(target, output, from_logits=False):
    return keras.losses.binary_crossentropy(target, output, from_logits=from_logits)


def in_train_phase(x, alt, training=None):
    """Keras-2 helper: ``x`` when training, else ``alt`` (``training`` must be given in Keras 3)."""
    if training is None:
        raise ValueError("K.in_train_phase: pass training=True/False explicitly under Keras 3")
    return x if training else alt


def is_keras_tensor(x) -> bool:
    return isinstance(x, keras.KerasTensor)
