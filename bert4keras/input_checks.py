"""Input checks on the host, before data reaches a compiled step.

:class:`InputChecks` gives a functional model's entry points (``predict``/``evaluate``/``fit``
with arrays, Python generators, ``PyDataset`` or ``tf.data``, the ``*_on_batch`` trio,
``model(x)`` with numpy arrays) a check of every input first. Inside a jitted step nothing
readable can be raised: JAX silently returns NaN rows for ids past a table, PyTorch raises a
bare "index out of range", and on JAX a layer that raises while traced leaves the model
unusable for every later call. The checks cost a min/max per id array (docs/reliability.md).
Both the models ``build_transformer_model`` returns and the ``Model(inputs, outputs)`` of
``bert4keras.backend.keras`` (what scripts wrap a Transformer in) have them.
"""

from __future__ import annotations

import contextlib
import re
import types
import weakref
from dataclasses import dataclass, field

import keras
import numpy as np


class InputChecks:
    """Entry points that validate host-side inputs of a functional model: every input is
    given, shapes agree, lengths fit the position table and ids fit their embedding."""

    def predict(self, x, *args, **kwargs):
        x = self._checked(x)
        with _weights_kept_on_error(self):
            return super().predict(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        x = self._checked(x)
        with _weights_kept_on_error(self):
            return super().evaluate(x, *args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        validation = kwargs.get("validation_data")
        if isinstance(validation, tuple) and validation:
            self.check_inputs(validation[0])
        elif validation is not None:
            kwargs["validation_data"] = self._checked(validation)
        x = self._checked(x)
        with _weights_kept_on_error(self, training=True):
            return super().fit(x, *args, **kwargs)

    def predict_on_batch(self, x):
        self.check_inputs(x)
        return super().predict_on_batch(x)

    def train_on_batch(self, x, *args, **kwargs):
        self.check_inputs(x)
        return super().train_on_batch(x, *args, **kwargs)

    def test_on_batch(self, x, *args, **kwargs):
        self.check_inputs(x)
        return super().test_on_batch(x, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        if args and _on_host(args[0]):
            self.check_inputs(args[0])
        return super().__call__(*args, **kwargs)

    def _checked(self, x):
        """``x`` itself once its arrays pass :meth:`check_inputs`; a Python generator, a
        ``keras.utils.PyDataset`` or a ``tf.data.Dataset`` comes back wrapped so that each
        batch (``x``, ``(x,)``, ``(x, y)`` or ``(x, y, w)``, as Keras reads it) is checked
        on the host as it is drawn."""
        checker = _BatchChecker(_plan(self), self.name)
        if isinstance(x, types.GeneratorType):
            return _checked_generator(x, checker)
        if isinstance(x, keras.utils.PyDataset):
            return _CheckedPyDataset(x, checker)
        if _is_tf_dataset(x):
            return _checked_tf_dataset(x, checker)
        self.check_inputs(x)
        return x

    def check_inputs(self, x) -> None:
        """Raise ``ValueError`` when numpy ``x`` (an array, a list or a dict of arrays) would
        make the model fail or silently compute garbage: a missing input, an empty batch,
        a wrong rank, lengths that disagree or exceed the position table, or ids outside
        their embedding. Each message names the input, the value, where it is, and the
        allowed range. Other kinds of data (device tensors, torch DataLoaders) pass unchecked."""
        _check(_plan(self), self.name, x)


@dataclass
class _Plan:
    """What :meth:`InputChecks.check_inputs` checks, worked out once from the graph."""

    names: list[str]
    shapes: list[tuple]
    ids: list[tuple[int, int, str, str]] = field(default_factory=list)  # index, table size, layer, kind
    lengths: list[tuple[int, int, str]] = field(default_factory=list)   # index, max length, layer
    same_length: list[list[int]] = field(default_factory=list)


# Kept beside the model, not on it: an attribute would be tracked (and saved) by Keras.
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _plan(model: keras.Model) -> _Plan:
    plan = _PLANS.get(model)
    if plan is None:
        plan = _PLANS[model] = _make_plan(model)
    return plan


def _make_plan(model: keras.Model) -> _Plan:
    """Read from the graph which inputs index which tables, and which lengths are bounded."""
    from bert4keras.layers import PositionEmbedding

    positions = {id(t): i for i, t in enumerate(model.inputs)}
    plan = _Plan([t.name for t in model.inputs], [tuple(t.shape) for t in model.inputs])
    for layer in model.layers:
        for node in layer._inbound_nodes:
            tensors = list(node.input_tensors)
            if isinstance(layer, keras.layers.Embedding) and tensors and id(tensors[0]) in positions:
                index = positions[id(tensors[0])]
                kind = "segment id" if "Segment" in plan.names[index] else "token id"
                plan.ids.append((index, layer.input_dim, layer.name, kind))
            if not isinstance(layer, PositionEmbedding) or not tensors:
                continue
            limit = layer.input_dim ** 2 if layer.hierarchical else layer.input_dim
            if layer.custom_position_ids:
                if len(tensors) > 1 and id(tensors[1]) in positions:
                    plan.ids.append((positions[id(tensors[1])], limit, layer.name, "position id"))
            else:
                for i in sorted(_source_inputs(tensors[0], positions)):
                    if len(plan.shapes[i]) >= 2:
                        plan.lengths.append((i, limit, layer.name))
    groups: dict[str, list[int]] = {}
    for i, (name, shape) in enumerate(zip(plan.names, plan.shapes)):
        match = re.match(r"(.*)Input-(Token|Segment|Position)$", name)
        if match and len(shape) == 2:
            groups.setdefault(match.group(1), []).append(i)
    plan.same_length = [g for g in groups.values() if len(g) > 1]
    return plan


def _check(plan: _Plan, model: str, x) -> None:
    """:meth:`InputChecks.check_inputs` for the model named ``model``."""
    names = plan.names
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        if missing:
            raise ValueError(f"model {model!r} is missing input(s) {missing}; "
                             f"it takes {names}, got keys {sorted(x)}")
        arrays = [x[n] for n in names]
    else:
        arrays = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(arrays) != len(names) and all(_is_array(a) for a in arrays):
            hint = ("; an encoder-decoder needs the decoder's token ids as well"
                    if any(n.startswith("Decoder-") for n in names) else "")
            raise ValueError(f"model {model!r} takes {len(names)} input(s) {names} "
                             f"but got {len(arrays)}{hint}")
    shapes = {i: np.shape(a) for i, a in enumerate(arrays)
              if i < len(names) and isinstance(a, np.ndarray)}
    _check_shapes(plan, model, shapes)
    for index, limit, layer_name in plan.lengths:
        if index in shapes and shapes[index][1] > limit:
            raise ValueError(
                f"model {model!r}, input {names[index]!r} of shape {shapes[index]}: "
                f"{layer_name}: sequence length {shapes[index][1]} exceeds the {limit} "
                "positions of this model (truncate with maxlen)")
    for index, size, layer_name, what in plan.ids:
        if index in shapes and arrays[index].size and np.issubdtype(arrays[index].dtype, np.number):
            _check_ids(model, names[index], arrays[index], size, layer_name, what)


def _check_shapes(plan: _Plan, model: str, shapes: dict) -> None:
    names = plan.names
    for i, shape in shapes.items():
        expected = plan.shapes[i]
        if len(shape) != len(expected) or any(
                e is not None and e != d for e, d in zip(expected[1:], shape[1:])):
            wanted = ", ".join(["batch"] + ["any" if d is None else str(d) for d in expected[1:]])
            raise ValueError(f"model {model!r}: input {names[i]!r} has shape {shape}, "
                             f"expected ({wanted})")
        if shape[0] == 0:
            raise ValueError(f"model {model!r}: input {names[i]!r} is an empty batch "
                             f"(shape {shape}); pass at least one sample")
    first = next(iter(shapes), None)
    for i, shape in shapes.items():
        if shape[0] != shapes[first][0]:
            raise ValueError(f"model {model!r}: inputs {names[first]!r} and {names[i]!r} "
                             f"hold {shapes[first][0]} and {shape[0]} samples; batch sizes must agree")
    for group in plan.same_length:
        given = [i for i in group if i in shapes]
        for i in given[1:]:
            if shapes[i][1] != shapes[given[0]][1]:
                raise ValueError(
                    f"model {model!r}: input {names[i]!r} has shape {shapes[i]} but "
                    f"{names[given[0]]!r} has {shapes[given[0]]}; ids of one text must have "
                    "the same length")


@dataclass
class _BatchChecker:
    """Checks one batch of a dataset as Keras reads it; holds only the plan and the model's
    name, so a multiprocessing ``PyDataset`` can take it to its workers."""

    plan: _Plan
    model: str

    def __call__(self, batch, index: int) -> None:
        x = keras.utils.unpack_x_y_sample_weight(batch)[0] if isinstance(batch, (tuple, list)) else batch
        try:
            _check(self.plan, self.model, x)
        except ValueError as e:
            raise ValueError(f"batch {index}: {e}") from None


def _checked_generator(generator, check: _BatchChecker):
    for index, batch in enumerate(generator):
        check(batch, index)
        yield batch


class _CheckedPyDataset(keras.utils.PyDataset):
    """``dataset`` with each batch checked as it is drawn (same length, workers and epochs)."""

    def __init__(self, dataset: keras.utils.PyDataset, check: _BatchChecker):
        super().__init__(workers=dataset.workers, use_multiprocessing=dataset.use_multiprocessing,
                         max_queue_size=dataset.max_queue_size)
        self.dataset, self.check = dataset, check

    def __getitem__(self, index):
        batch = self.dataset[index]
        self.check(batch, index)
        return batch

    @property
    def num_batches(self):
        return self.dataset.num_batches

    def on_epoch_begin(self):
        self.dataset.on_epoch_begin()

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


@contextlib.contextmanager
def _weights_kept_on_error(model: keras.Model, training: bool = False):
    """Keep the model usable when fit/evaluate/predict fail midway (a batch rejected as it is
    drawn, an error in a metric, a failing user generator).

    On JAX these loops detach every variable's value while they run and reattach the newest
    state at the end (``fit`` in a ``finally``, the others only on success); an error before
    a step finished would leave the model without weights (``'NoneType' object is not
    callable`` from every later call). So, on error, the state of the last finished step is
    reattached, any variable still detached gets back the value the call started from
    (kept as a reference to the array, not a copy), and metrics the call created are reset."""
    if keras.backend.backend() != "jax":
        yield
        return
    optimizer = getattr(model, "optimizer", None)
    if training and optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)  # so that its variables are kept too
    model.jax_state_sync()
    model._jax_state = None  # from here on, a state is one this call's steps produced
    variables = list(model.variables) + list(model.metrics_variables)
    if optimizer is not None:
        variables += list(optimizer.variables)
    variables = list({id(v): v for v in variables}.values())
    values = [v.value for v in variables]
    try:
        yield
    except BaseException:
        if model._jax_state is not None:
            model.jax_state_sync()
        for variable, value in zip(variables, values):
            if variable._value is None:
                variable.assign(value)
        for variable in model.metrics_variables:  # created by this call: back to a reset metric
            if variable._value is None:
                variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
        raise


def _is_tf_dataset(x) -> bool:
    """Whether ``x`` is a ``tf.data.Dataset`` (without importing TensorFlow if it is not loaded)."""
    return type(x).__module__.startswith("tensorflow.") and hasattr(x, "element_spec")


def _checked_tf_dataset(dataset, check: _BatchChecker):
    """``dataset`` with a host-side check of each batch (a ``tf.numpy_function``: the error
    surfaces as TensorFlow's ``InvalidArgumentError`` carrying this message)."""
    import tensorflow as tf

    def check_flat(index, *flat):
        check(tf.nest.pack_sequence_as(dataset.element_spec, list(flat)), int(index))
        return np.int32(0)

    def checked(index, element):
        done = tf.numpy_function(check_flat, [index, *tf.nest.flatten(element)], tf.int32,
                                 stateful=True)
        with tf.control_dependencies([done]):
            return tf.nest.map_structure(tf.identity, element)

    return dataset.enumerate().map(checked)


def _source_inputs(tensor, positions: dict) -> set[int]:
    """Indices of the model inputs ``tensor`` is computed from."""
    found, stack, seen = set(), [tensor], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if id(t) in positions:
            found.add(positions[id(t)])
            continue
        history = getattr(t, "_keras_history", None)
        if history is None:
            continue
        operation, node_index, _ = history
        stack.extend(operation._inbound_nodes[node_index].input_tensors)
    return found


def _check_ids(model: str, name: str, ids: np.ndarray, size: int, layer: str, what: str) -> None:
    low, high = ids.min(), ids.max()
    if low >= 0 and high < size:
        return
    bad = low if low < 0 else high
    where = tuple(int(i) for i in np.argwhere(ids == bad)[0])
    table = {"token id": "the vocabulary", "segment id": "the segment types"}.get(what, "the positions")
    raise ValueError(f"model {model!r}: input {name!r} holds {what} {bad.item()} at {where}, "
                     f"outside {table} [0, {size}) of layer {layer!r}")


def _on_host(x) -> bool:
    """Whether ``x`` is numpy data (an array, or a list/tuple/dict of arrays)."""
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        return bool(x) and all(isinstance(a, np.ndarray) for a in x)
    return isinstance(x, np.ndarray)


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or hasattr(x, "shape") and hasattr(x, "dtype")
