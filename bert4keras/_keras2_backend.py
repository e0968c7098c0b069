"""``K``: the Keras-2 backend functions bert4keras scripts call, over ``keras.ops``.

User code written as ``K.sum(K.square(y_true - y_pred), axis=-1)`` keeps working
on every Keras 3 backend. Names, argument names, defaults and reductions follow
``keras.backend`` of Keras 2.3.1; the remaining differences are listed in
docs/keras2-backend.md. As in bert4keras 0.11.5, ``K.reshape``, ``K.flatten`` and
``K.where`` are bert4keras's extended versions (compatible with Keras 2's).
"""

from __future__ import annotations

import builtins

import keras
import numpy as np
from keras import ops

abs = ops.abs
cos = ops.cos
equal = ops.equal
exp = ops.exp
greater = ops.greater
greater_equal = ops.greater_equal
less = ops.less
less_equal = ops.less_equal
log = ops.log
maximum = ops.maximum
minimum = ops.minimum
not_equal = ops.not_equal
pow = ops.power
sigmoid = ops.sigmoid
sign = ops.sign
sin = ops.sin
softplus = ops.softplus
softsign = ops.softsign
square = ops.square
tanh = ops.tanh
tile = ops.tile
epsilon = keras.config.epsilon
set_epsilon = keras.config.set_epsilon
floatx = keras.config.floatx
set_floatx = keras.config.set_floatx
image_data_format = keras.config.image_data_format
backend = keras.backend.backend
clear_session = keras.backend.clear_session
name_scope = keras.name_scope


def _floatx_if_bool(x):
    x = ops.convert_to_tensor(x)
    return ops.cast(x, floatx()) if keras.backend.standardize_dtype(x.dtype) == "bool" else x


# --------------------------------------------------------------------------- reductions


def sum(x, axis=None, keepdims=False):
    return ops.sum(x, axis=axis, keepdims=keepdims)


def prod(x, axis=None, keepdims=False):
    return ops.prod(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    """Mean; booleans count as ``floatx`` numbers (Keras 2 cast them first)."""
    return ops.mean(_floatx_if_bool(x), axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):
    return ops.max(x, axis=axis, keepdims=keepdims)


def min(x, axis=None, keepdims=False):
    return ops.min(x, axis=axis, keepdims=keepdims)


def std(x, axis=None, keepdims=False):
    return ops.std(_floatx_if_bool(x), axis=axis, keepdims=keepdims)


def var(x, axis=None, keepdims=False):
    return ops.var(_floatx_if_bool(x), axis=axis, keepdims=keepdims)


def any(x, axis=None, keepdims=False):
    return ops.any(ops.cast(x, "bool"), axis=axis, keepdims=keepdims)


def all(x, axis=None, keepdims=False):
    return ops.all(ops.cast(x, "bool"), axis=axis, keepdims=keepdims)


def logsumexp(x, axis=None, keepdims=False):
    return ops.logsumexp(x, axis=axis, keepdims=keepdims)


def argmax(x, axis=-1):
    """Index of the maximum along ``axis`` (Keras 2's default is the last axis, not all)."""
    return ops.argmax(x, axis=axis)


def argmin(x, axis=-1):
    return ops.argmin(x, axis=axis)


def cumsum(x, axis=0):
    """Cumulative sum along ``axis`` (Keras 2's default is axis 0, not the flattened tensor)."""
    return ops.cumsum(x, axis=axis)


def cumprod(x, axis=0):
    return ops.cumprod(x, axis=axis)


# --------------------------------------------------------------------------- element-wise


def sqrt(x):
    """Square root of ``max(x, 0)``: Keras 2 clipped negatives to 0 instead of returning NaN."""
    x = ops.convert_to_tensor(x)
    return ops.sqrt(ops.maximum(x, ops.cast(0, x.dtype)))


def round(x):
    """Round half to even, as ``tf.round``."""
    return ops.round(x)


def clip(x, min_value, max_value):
    """Keras 2 ``K.clip``: ``None`` bounds are open and ``max_value < min_value`` becomes ``min_value``."""
    if min_value is None and max_value is None:
        return x
    if min_value is None:
        min_value = -np.inf
    if max_value is None:
        max_value = np.inf
    if isinstance(min_value, (int, float)) and isinstance(max_value, (int, float)):
        max_value = builtins.max(min_value, max_value)
    return ops.clip(x, min_value, max_value)


def relu(x, alpha=0.0, max_value=None, threshold=0.0):
    """Keras 2 ``K.relu``: slope ``alpha`` below ``threshold``, optional cap ``max_value``."""
    x = ops.convert_to_tensor(x)
    if alpha == 0 and max_value is None and threshold == 0:
        return ops.relu(x)
    below = alpha * (x - threshold) if alpha != 0 else ops.zeros_like(x)
    y = ops.where(x > threshold, x, below)
    if max_value is not None:
        y = ops.minimum(y, ops.cast(max_value, y.dtype))
    return y


def elu(x, alpha=1.0):
    return ops.elu(x, alpha=alpha)


def hard_sigmoid(x):
    """Keras 2's ``clip(0.2 x + 0.5, 0, 1)`` (Keras 3's ``ops.hard_sigmoid`` uses slope 1/6)."""
    return ops.clip(0.2 * ops.convert_to_tensor(x) + 0.5, 0.0, 1.0)


def softmax(x, axis=-1):
    return ops.softmax(x, axis=axis)


def l2_normalize(x, axis=None):
    """``x / sqrt(max(sum(x^2), 1e-12))`` over ``axis`` (all axes by default, as Keras 2)."""
    x = ops.convert_to_tensor(x)
    squares = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squares, ops.cast(1e-12, x.dtype)))


def switch(condition, then_expression, else_expression):
    """``then`` where ``condition`` holds, else ``else``; either branch may be a callable."""
    if callable(then_expression):
        then_expression = then_expression()
    if callable(else_expression):
        else_expression = else_expression()
    return ops.where(ops.cast(condition, "bool"), then_expression, else_expression)


def stop_gradient(variables):
    """Block gradients; a list gives a list (as Keras 2)."""
    if isinstance(variables, (list, tuple)):
        return [ops.stop_gradient(v) for v in variables]
    return ops.stop_gradient(variables)


def bias_add(x, bias, data_format=None):
    """Add ``bias`` on the channel axis (last for ``channels_last``, axis 1 for ``channels_first``)."""
    data_format = data_format or image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"K.bias_add: unknown data_format {data_format!r}")
    x = ops.convert_to_tensor(x)
    bias = ops.convert_to_tensor(bias)
    if data_format == "channels_first" and len(x.shape) > 2:
        bias = ops.reshape(bias, (1,) + tuple(bias.shape) + (1,) * (len(x.shape) - 1 - len(bias.shape)))
    return x + bias


# --------------------------------------------------------------------------- shapes


def cast(x, dtype):
    return ops.cast(x, dtype)


def dtype(x) -> str:
    """The dtype name of a tensor or variable, e.g. ``'float32'``."""
    return keras.backend.standardize_dtype(x.dtype)


def shape(x):
    return ops.shape(x)


def int_shape(x):
    """The static shape as a tuple (``None`` for unknown dimensions)."""
    return tuple(x.shape)


def ndim(x) -> int:
    return len(x.shape)


def count_params(x) -> int:
    return int(np.prod(int_shape(x)))


def expand_dims(x, axis=-1):
    return ops.expand_dims(x, axis)


def squeeze(x, axis):
    return ops.squeeze(x, axis)


def stack(x, axis=0):
    return ops.stack(x, axis=axis)


def concatenate(tensors, axis=-1):
    return ops.concatenate(tensors, axis=axis)


def permute_dimensions(x, pattern):
    return ops.transpose(x, pattern)


def transpose(x):
    return ops.transpose(x)


def reshape(tensor, *args):
    """``reshape(x, shape)``, or bert4keras's ``reshape(x, shape1, axis1, shape2, axis2, ...)``.

    The second form splits axis ``axis_i`` into ``shape_i`` (one entry may be -1) and
    leaves the other axes as they are.
    """
    if len(args) == 1:
        return ops.reshape(tensor, args[0])
    if not args or len(args) % 2:
        raise ValueError(f"reshape: expected a shape, or (shape, axis) pairs; got {args!r}")
    dims = [[d if d is not None else ops.shape(tensor)[i]] for i, d in enumerate(tensor.shape)]
    for new, axis in zip(args[::2], args[1::2]):
        new = list(new)
        if new.count(-1) > 1:
            raise ValueError(f"reshape: at most one -1 per axis, got {new} for axis {axis}")
        if -1 in new:
            known = int(np.prod([d for d in new if d != -1]))
            new[new.index(-1)] = dims[axis][0] // known
        dims[axis] = new
    return ops.reshape(tensor, [d for group in dims for d in group])


def flatten(tensor, start=None, end=None):
    """Merge axes ``start`` to ``end`` (exclusive) into one; by default all of them (Keras 2's ``K.flatten``)."""
    n = len(tensor.shape)
    start = 0 if start is None else start % n
    end = n if end is None else (end if end >= 0 else n + end)
    dims = [d if d is not None else ops.shape(tensor)[i] for i, d in enumerate(tensor.shape)]
    merged = 1
    for d in dims[start:end]:
        merged = merged * d
    return ops.reshape(tensor, dims[:start] + [merged] + dims[end:])


def batch_flatten(x):
    return ops.reshape(x, (ops.shape(x)[0], -1))


def repeat_elements(x, rep, axis):
    return ops.repeat(x, rep, axis=axis)


def repeat(x, n):
    """(batch, dim) -> (batch, n, dim)."""
    if len(x.shape) != 2:
        raise ValueError(f"K.repeat expects a 2-d tensor, got shape {tuple(x.shape)}")
    return ops.repeat(ops.expand_dims(x, 1), n, axis=1)


def gather(reference, indices):
    """Rows ``reference[indices]`` (gather on axis 0, as Keras 2)."""
    return ops.take(reference, ops.cast(indices, "int32"), axis=0)


def one_hot(indices, num_classes):
    return ops.one_hot(indices, num_classes)


def temporal_padding(x, padding=(1, 1)):
    """Pad axis 1 of a (batch, steps, features) tensor with zeros."""
    return ops.pad(x, [[0, 0], list(padding), [0, 0]])


def where(cond, x, y):
    """``ops.where`` with Python numbers cast to the other operand's dtype (bert4keras's ``K.where``)."""
    x_tensor, y_tensor = not isinstance(x, (int, float)), not isinstance(y, (int, float))
    if x_tensor and not y_tensor:
        x = ops.convert_to_tensor(x)
        y = ops.cast(y, x.dtype)
    elif y_tensor and not x_tensor:
        y = ops.convert_to_tensor(y)
        x = ops.cast(x, y.dtype)
    elif not x_tensor and not y_tensor:
        x, y = ops.cast(x, floatx()), ops.cast(y, floatx())
    return ops.where(ops.cast(cond, "bool"), x, y)


# --------------------------------------------------------------------------- products


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


# --------------------------------------------------------------------------- pooling


def pool2d(x, pool_size, strides=(1, 1), padding="valid", data_format=None, pool_mode="max"):
    """2-d max or average pooling of a 4-d tensor (``pool_mode`` 'max' or 'avg')."""
    if pool_mode not in ("max", "avg"):
        raise ValueError(f"K.pool2d: pool_mode must be 'max' or 'avg', got {pool_mode!r}")
    if padding not in ("valid", "same"):
        raise ValueError(f"K.pool2d: padding must be 'valid' or 'same', got {padding!r}")
    data_format = data_format or image_data_format()
    pool = ops.max_pool if pool_mode == "max" else ops.average_pool
    return pool(x, pool_size, strides=strides, padding=padding, data_format=data_format)


# --------------------------------------------------------------------------- tensors and variables


def zeros(shape, dtype=None, name=None):
    """A zero tensor (Keras 2 returned a variable; wrap in ``K.variable`` if you assign to it)."""
    return ops.zeros(shape, dtype=dtype or floatx())


def ones(shape, dtype=None, name=None):
    return ops.ones(shape, dtype=dtype or floatx())


def eye(size, dtype=None, name=None):
    """Identity matrix; ``size`` is n or (rows, columns)."""
    rows, cols = (size, size) if isinstance(size, int) else tuple(size)
    return ops.eye(rows, cols, dtype=dtype or floatx())


def zeros_like(x, dtype=None, name=None):
    return ops.zeros_like(x, dtype=dtype)


def ones_like(x, dtype=None, name=None):
    return ops.ones_like(x, dtype=dtype)


def arange(start, stop=None, step=1, dtype="int32"):
    """``arange(n)`` or ``arange(start, stop, step)``; int32 by default, as Keras 2."""
    return ops.arange(start, stop, step, dtype=dtype)


def constant(value, dtype=None, shape=None, name=None):
    """A constant tensor of ``dtype`` (``floatx`` by default, as Keras 2), broadcast to ``shape``."""
    value = np.asarray(value, dtype=dtype or floatx())
    if shape is not None:
        value = np.broadcast_to(value, shape)
    return ops.convert_to_tensor(value)


def variable(value, dtype=None, name=None, constraint=None):
    """A ``keras.Variable`` (``floatx`` unless ``dtype`` is given)."""
    return keras.Variable(value, dtype=dtype or floatx(), name=name, constraint=constraint)


def placeholder(shape=None, ndim=None, dtype=None, sparse=False, name=None):
    """A symbolic input (``keras.Input``) standing in for Keras 2's placeholder; ``shape`` includes the batch."""
    if shape is None:
        if ndim is None:
            raise ValueError("K.placeholder: give shape or ndim")
        shape = (None,) * ndim
    return keras.Input(batch_shape=tuple(shape), dtype=dtype or floatx(), sparse=sparse, name=name)


def is_tensor(x) -> bool:
    return ops.is_tensor(x) or isinstance(x, keras.KerasTensor)


def is_keras_tensor(x) -> bool:
    return isinstance(x, keras.KerasTensor)


def eval(x):
    """The value of a tensor or variable as a numpy array."""
    return ops.convert_to_numpy(x)


def get_value(x):
    """The value of a variable (or tensor) as a numpy array."""
    return ops.convert_to_numpy(x)


def batch_get_value(xs):
    return [get_value(x) for x in xs]


def set_value(x, value):
    """Assign ``value`` to the variable ``x`` (e.g. ``K.set_value(optimizer.learning_rate, 1e-5)``)."""
    if not hasattr(x, "assign"):
        raise TypeError(
            f"K.set_value needs a variable, got {type(x).__name__}; an optimizer built with a "
            "learning-rate schedule has no variable to set: assign optimizer.learning_rate = value "
            "or change the schedule"
        )
    x.assign(np.asarray(value, dtype=keras.backend.standardize_dtype(x.dtype)))


def batch_set_value(tuples):
    for variable_, value in tuples:
        set_value(variable_, value)


def update(x, new_x):
    """Assign ``new_x`` to the variable ``x`` and return it."""
    x.assign(new_x)
    return x


def update_add(x, increment):
    x.assign_add(increment)
    return x


def update_sub(x, decrement):
    x.assign_sub(decrement)
    return x


def print_tensor(x, message=""):
    """Print ``message`` and the value of ``x`` (eagerly), then return ``x``."""
    print(message, ops.convert_to_numpy(x))
    return x


# --------------------------------------------------------------------------- random


def _seed(seed):
    return seed if seed is not None else np.random.randint(10**6)


def random_uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    return keras.random.uniform(shape, minval=minval, maxval=maxval, dtype=dtype or floatx(), seed=_seed(seed))


def random_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    return keras.random.normal(shape, mean=mean, stddev=stddev, dtype=dtype or floatx(), seed=_seed(seed))


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    return keras.random.truncated_normal(shape, mean=mean, stddev=stddev, dtype=dtype or floatx(),
                                         seed=_seed(seed))


def random_binomial(shape, p=0.0, dtype=None, seed=None):
    """1 with probability ``p``, else 0 (Keras 2: ``uniform < p``)."""
    dtype = dtype or floatx()
    return ops.cast(random_uniform(shape, dtype="float32", seed=seed) < p, dtype)


def dropout(x, level, noise_shape=None, seed=None):
    """Inverted dropout with rate ``level`` (always on, as Keras 2's backend function)."""
    return keras.random.dropout(ops.convert_to_tensor(x), level, noise_shape=noise_shape, seed=_seed(seed))


# --------------------------------------------------------------------------- losses


def binary_crossentropy(target, output, from_logits=False):
    """Element-wise binary cross-entropy (no mean over the last axis, unlike ``keras.losses``)."""
    return ops.binary_crossentropy(target, output, from_logits=from_logits)


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """Cross-entropy over ``axis``; probabilities are renormalised to sum to 1 first, as Keras 2."""
    return ops.categorical_crossentropy(target, output, from_logits=from_logits, axis=axis)


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    return ops.sparse_categorical_crossentropy(target, output, from_logits=from_logits, axis=axis)


def rnn(step_function, inputs, initial_states, go_backwards=False, mask=None, constants=None,
        unroll=False, input_length=None):
    """Keras 2 ``K.rnn``: iterate ``step_function(x_t, states) -> (output_t, new_states)`` over axis 1.

    Returns ``(last_output, outputs, new_states)``; runs on Keras 3's backend loop.
    """
    from keras.src.backend import rnn as backend_rnn  # no public alias in Keras 3

    inputs = ops.convert_to_tensor(inputs)
    initial_states = [ops.convert_to_tensor(s) for s in initial_states]
    return backend_rnn(step_function, inputs, initial_states, go_backwards=go_backwards, mask=mask,
                       constants=constants, unroll=unroll, input_length=input_length)


# --------------------------------------------------------------------------- training phase and graphs


def in_train_phase(x, alt, training=None):
    """Keras-2 helper: ``x`` when training, else ``alt`` (``training`` must be given in Keras 3)."""
    if training is None:
        raise ValueError("K.in_train_phase: pass training=True/False explicitly under Keras 3")
    x, alt = (x() if callable(x) else x), (alt() if callable(alt) else alt)
    return x if training else alt


def in_test_phase(x, alt, training=None):
    return in_train_phase(alt, x, training=training)


def symbolic(f):
    """Identity decorator (Keras 2 used it to build functions in the graph)."""
    return f


def function(inputs, outputs, updates=None, name=None, **kwargs):
    """Keras 2 ``K.function``: a callable from a list of arrays to the list of output arrays.

    ``inputs`` and ``outputs`` are symbolic tensors of a functional model (``keras.Input``,
    ``model.inputs``, ``layer.output``); the function runs them as a ``keras.Model``.
    """
    if updates:
        raise ValueError(
            "K.function: updates are not supported in Keras 3; update variables inside a layer "
            "or a custom train_step instead"
        )
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    single = not isinstance(outputs, (list, tuple))
    outputs = [outputs] if single else list(outputs)
    if not builtins.all(isinstance(t, keras.KerasTensor) for t in inputs + outputs):
        raise TypeError(
            "K.function needs symbolic tensors (keras.Input, model.inputs, layer.output) as inputs "
            "and outputs; for eager tensors call the computation directly"
        )
    model = keras.Model(inputs, outputs, name=name)

    def run(values):
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if len(values) != len(inputs):
            raise ValueError(f"K.function: expected {len(inputs)} input arrays, got {len(values)}")
        values = [ops.convert_to_tensor(v) for v in values]
        results = model(values[0] if len(values) == 1 else values, training=False)
        results = results if isinstance(results, (list, tuple)) else [results]
        return [ops.convert_to_numpy(r) for r in results]

    return run


def gradients(loss, variables):
    """Gradients of ``loss`` w.r.t. ``variables``: PyTorch eager tensors only (Keras 2 built them in the graph).

    On JAX and TensorFlow a computed tensor does not remember how it was made; take
    gradients with ``jax.grad`` / ``tf.GradientTape`` around the computation, or use
    ``keras.Model`` training (``train_step``) instead.
    """
    single = not isinstance(variables, (list, tuple))
    variables = [variables] if single else list(variables)
    if backend() == "torch":
        import torch

        if isinstance(loss, torch.Tensor) and loss.grad_fn is not None:
            sources = [v.value if isinstance(v, keras.Variable) else v for v in variables]
            grads = torch.autograd.grad(loss.sum(), sources, allow_unused=True, retain_graph=True)
            return [torch.zeros_like(s) if g is None else g for s, g in zip(sources, grads)]
    raise NotImplementedError(
        "K.gradients needs a graph (Keras 2 / TF1). Under Keras 3 compute gradients with the "
        "backend's autodiff around the computation: jax.grad, tf.GradientTape, or "
        "torch.autograd.grad on a loss computed with grad enabled"
    )


def get_session(*args, **kwargs):
    raise NotImplementedError("K.get_session: Keras 3 has no TensorFlow session; run eagerly or use model.predict")


def set_session(session):
    raise NotImplementedError("K.set_session: Keras 3 has no TensorFlow session; run eagerly or use model.predict")
