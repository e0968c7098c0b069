"""Adversarial training (FGM), gradient penalty (https://kexue.fm/archives/7234) and
virtual adversarial training (https://kexue.fm/archives/7466), on JAX, PyTorch and TensorFlow.

The three training helpers are installed on a compiled model, as in bert4keras's
examples, and then work with ``fit``: they replace the model's train step (on
JAX the functional ``train_step(state, data)``; on PyTorch and TensorFlow the
stateful ``train_step(data)``). The perturbation lives either on the embedding
matrix (``perturb='matrix'``, bert4keras's choice: every token shares it) or on
the embedding layer's output (``perturb='output'``, one per token occurrence).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import keras
import numpy as np
from keras import ops

__all__ = ["gradients", "find_embedding_layer", "adversarial_training", "gradient_penalty",
           "virtual_adversarial_training"]

_EPS = 1e-8


def gradients(fn: Callable, *inputs) -> tuple:
    """``(fn(*inputs), [d fn / d input, ...])`` for a scalar ``fn`` of tensors, on any backend."""
    name = keras.backend.backend()
    if name == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(inputs))))(*inputs)
        return value, list(grads)
    if name == "torch":
        import torch

        xs = [ops.convert_to_tensor(x).detach().requires_grad_(True) for x in inputs]
        with torch.enable_grad():
            value = fn(*xs)
            grads = torch.autograd.grad(value, xs, allow_unused=True)
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads)]
        return value.detach(), grads
    if name == "tensorflow":
        import tensorflow as tf

        xs = [tf.convert_to_tensor(x) for x in inputs]
        with tf.GradientTape() as tape:
            tape.watch(xs)
            value = fn(*xs)
        grads = tape.gradient(value, xs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return value, [tf.convert_to_tensor(g) for g in grads]  # IndexedSlices -> dense
    raise NotImplementedError(f"gradients are not available on the {name!r} backend")


def find_embedding_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """The layer called ``name`` in ``model`` (nested models searched), which must own
    an ``embeddings`` matrix; the error lists the embedding layers there are."""
    found, embeddings = None, []
    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        if hasattr(layer, "embeddings"):
            embeddings.append(layer.name)
        if layer.name == name and found is None:
            found = layer
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)
    if found is None:
        raise ValueError(f"model {model.name!r} has no layer named {name!r}; its embedding "
                         f"layers are {embeddings}")
    if not hasattr(found, "embeddings"):
        raise ValueError(f"layer {name!r} of model {model.name!r} is a {type(found).__name__} "
                         f"without an embedding matrix; embedding layers: {embeddings}")
    return found


@contextlib.contextmanager
def lookup_hook(layer, transform: Callable):
    """While active, ``layer``'s id -> vector lookups return ``transform(output)``
    (calls on float inputs, e.g. a tied output projection, are left alone)."""
    own, call = "call" in vars(layer), layer.call

    def hooked(inputs, *args, **kwargs):
        outputs = call(inputs, *args, **kwargs)
        if "int" in keras.backend.standardize_dtype(inputs.dtype):
            outputs = transform(outputs)
        return outputs

    layer.call = hooked
    try:
        yield
    finally:
        if own:
            layer.call = call
        else:
            del layer.call


def _float32_norm(x, per_sample: bool):
    x = ops.cast(x, "float32")
    if not per_sample:
        return ops.sqrt(ops.sum(ops.square(x)))
    axes = tuple(range(1, len(x.shape)))
    return ops.sqrt(ops.sum(ops.square(x), axis=axes, keepdims=True))


def _unpack(data):
    return keras.utils.unpack_x_y_sample_weight(data)


def _compute_loss(model, x, y, y_pred, sample_weight, training: bool = True):
    return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                               training=training)


class _Perturbation:
    """Where a perturbation ``d`` goes: added to the embedding matrix or to the lookups."""

    def __init__(self, model: keras.Model, embedding_name: str, perturb: str):
        if perturb not in ("matrix", "output"):
            raise ValueError(f"perturb must be 'matrix' or 'output', got {perturb!r}")
        self.model = model
        self.layer = find_embedding_layer(model, embedding_name)
        self.perturb = perturb
        self.variable = self.layer.embeddings
        ids = [id(v) for v in model.trainable_variables]
        self.index = ids.index(id(self.variable)) if id(self.variable) in ids else None
        if perturb == "matrix" and self.index is None:
            raise ValueError(f"the embedding matrix of layer {embedding_name!r} is not trainable "
                             f"in model {model.name!r}; use perturb='output'")
        if perturb == "output":
            self.input_index = self._input_index(embedding_name)

    def _input_index(self, name: str) -> int:
        positions = {id(t): i for i, t in enumerate(self.model.inputs)}
        for node in self.layer._inbound_nodes:
            for tensor in node.input_tensors[:1]:
                if id(tensor) in positions:
                    return positions[id(tensor)]
        raise ValueError(f"perturb='output' needs layer {name!r} to read a model input of "
                         f"{self.model.name!r} directly")

    def shape(self, x) -> tuple:
        if self.perturb == "matrix":
            return tuple(self.variable.shape)
        ids = keras.tree.flatten(x)[self.input_index]
        return tuple(ids.shape) + (self.layer.output_dim,)

    def normalize(self, d, scale: float):
        """``scale * d / ||d||`` (Frobenius over the matrix, or per sample over the lookups)."""
        norm = _float32_norm(d, per_sample=self.perturb == "output")
        return ops.cast(scale * ops.cast(d, "float32") / (norm + _EPS), d.dtype)

    @contextlib.contextmanager
    def applied(self, d, mapping: list | None = None):
        """The model sees the perturbation ``d``: on the matrix through ``mapping``
        (a StatelessScope mapping that is extended), on the lookups through a hook."""
        if self.perturb == "output":
            with lookup_hook(self.layer, lambda e: e + ops.cast(d, e.dtype)):
                yield mapping
        else:
            mapping = list(mapping or [])
            found = [t for v, t in mapping if v is self.variable]
            value = found[0] if found else self.variable.value
            yield [(v, t) for v, t in mapping if v is not self.variable] + [(self.variable, value + d)]

    def loss(self, d, data, training: bool, mapping: list | None = None):
        """The compiled loss at perturbation ``d`` (no state is changed)."""
        x, y, sample_weight = _unpack(data)
        with self.applied(d, mapping) as full_mapping:
            with keras.StatelessScope(state_mapping=full_mapping or []):
                y_pred = self.model(x, training=training)
                return _compute_loss(self.model, x, y, y_pred, sample_weight, training)

    def gradient(self, d, data, training: bool, mapping: list | None = None):
        """d loss / d perturbation, at perturbation ``d`` (a constant for what follows)."""
        _, (g,) = gradients(lambda t: self.loss(t, data, training, mapping), d)
        return ops.stop_gradient(g)


def _reset(model: keras.Model) -> None:
    """Drop a helper installed before: each helper replaces the previous one."""
    for name in ("train_step", "compute_loss_and_updates"):
        vars(model).pop(name, None)
    model.train_function = None


def _jax_mapping(model, state) -> list:
    trainable, non_trainable, _, metrics = state
    return (list(zip(model.trainable_variables, trainable))
            + list(zip(model.non_trainable_variables, non_trainable))
            + list(zip(model.metrics_variables, metrics)))


def _install_perturbed_step(model: keras.Model, perturbation: _Perturbation,
                            make_delta: Callable) -> keras.Model:
    """Replace ``model.train_step`` by: ``delta, data = make_delta(data, mapping, state)``,
    then the original step at the perturbed point, then remove the perturbation."""
    original = model.train_step
    variable = perturbation.variable

    if keras.backend.backend() == "jax":
        def train_step(state, data):
            delta, data = make_delta(data, _jax_mapping(model, state), state)
            if perturbation.perturb == "output":
                with perturbation.applied(delta):
                    return original(state, data)
            i = perturbation.index
            trainable = list(state[0])
            trainable[i] = trainable[i] + delta
            logs, state = original((trainable, *state[1:]), data)
            trainable = list(state[0])
            trainable[i] = trainable[i] - delta
            return logs, (trainable, *state[1:])
    else:
        def train_step(data):
            delta, data = make_delta(data, None, None)
            if perturbation.perturb == "output":
                with perturbation.applied(delta):
                    return original(data)
            clean = ops.copy(variable.value)
            variable.assign(clean + delta)
            try:
                logs = original(data)
            except BaseException:
                variable.assign(clean)
                raise
            variable.assign(variable.value - delta)
            return logs

    model.train_step = train_step  # a new function object: jax.jit caches by function
    return model


def adversarial_training(model: keras.Model, embedding_name: str = "Embedding-Token",
                         epsilon: float = 1.0, perturb: str = "matrix") -> keras.Model:
    """FGM: each step trains at ``E + delta``, ``delta = epsilon * g / (||g|| + 1e-8)``,
    ``g`` the loss gradient w.r.t. the embeddings; ``delta`` is removed afterwards.

    Call after ``compile``; returns ``model``. Each step costs two gradient passes.
    """
    perturbation = _Perturbation(model, embedding_name, perturb)
    _reset(model)

    def make_delta(data, mapping, state):
        x, _, _ = _unpack(data)
        zero = ops.zeros(perturbation.shape(x), dtype=_perturbation_dtype(perturbation))
        g = perturbation.gradient(zero, data, True, mapping)
        return perturbation.normalize(g, epsilon), data

    return _install_perturbed_step(model, perturbation, make_delta)


def _perturbation_dtype(perturbation: _Perturbation) -> str:
    if perturbation.perturb == "matrix":
        return keras.backend.standardize_dtype(perturbation.variable.dtype)
    return perturbation.layer.compute_dtype


def virtual_adversarial_training(model: keras.Model, embedding_name: str = "Embedding-Token",
                                 epsilon: float = 1.0, xi: float = 10.0, iters: int = 1,
                                 perturb: str = "matrix", seed: int | None = None) -> keras.Model:
    """VAT: targets become the model's own clean predictions ``p`` (inference mode, no
    gradient); the direction maximising ``loss(p, f(x + d))`` is found by ``iters``
    power iterations from a Gaussian ``d`` (``d <- grad at xi * d/||d||``); each step
    then trains at ``x + epsilon * d/||d||``. Compile ``model`` with ``loss='kld'``.
    """
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    perturbation = _Perturbation(model, embedding_name, perturb)
    _reset(model)
    seed = np.random.randint(1, 2**31 - 1) if seed is None else seed
    generator = None if keras.backend.backend() == "jax" else keras.random.SeedGenerator(seed)

    def make_delta(data, mapping, state):
        x, _, sample_weight = _unpack(data)
        with keras.StatelessScope(state_mapping=mapping or []):
            p = ops.stop_gradient(model(x, training=False))
        data = (x, p) if sample_weight is None else (x, p, sample_weight)
        shape = perturbation.shape(x)
        dtype = _perturbation_dtype(perturbation)
        if generator is None:
            import jax

            position = [v is model.optimizer.iterations for v in model.optimizer.variables]
            step = state[2][position.index(True)]
            key = jax.random.fold_in(jax.random.PRNGKey(seed), step)
            d = jax.random.normal(key, shape, dtype=dtype)
        else:
            d = keras.random.normal(shape, dtype=dtype, seed=generator)
        for _ in range(iters):
            d = perturbation.gradient(perturbation.normalize(d, xi), data, False, mapping)
        return perturbation.normalize(d, epsilon), data

    return _install_perturbed_step(model, perturbation, make_delta)


def gradient_penalty(model: keras.Model, embedding_name: str = "Embedding-Token",
                     epsilon: float = 1.0) -> keras.Model:
    """Train on ``loss + epsilon/2 * sum ||d loss / d e||^2``, ``e`` the embedding lookups:
    one gradient row per token occurrence (bert4keras's ``loss_with_gradient_penalty``).

    Call after ``compile``; returns ``model``. The logged loss includes the penalty.
    """
    perturbation = _Perturbation(model, embedding_name, "output")
    _reset(model)
    backend = keras.backend.backend()

    def penalty(g):
        return 0.5 * epsilon * ops.sum(ops.square(ops.cast(g, "float32")))

    if backend == "jax":
        import jax

        original = model.compute_loss_and_updates

        def compute_loss_and_updates(trainable, non_trainable, metrics, x, y, sample_weight,
                                     training=False, optimizer_variables=None):
            if not training:
                return original(trainable, non_trainable, metrics, x, y, sample_weight,
                                training=training, optimizer_variables=optimizer_variables)

            def unscaled(r):
                with lookup_hook(perturbation.layer, lambda e: e + r):
                    loss, aux = original(trainable, non_trainable, metrics, x, y, sample_weight,
                                         training=True, optimizer_variables=optimizer_variables)
                return aux[0], aux

            r = ops.zeros(perturbation.shape(x), dtype=perturbation.layer.compute_dtype)
            (loss, aux), g = jax.value_and_grad(unscaled, has_aux=True)(r)
            total = loss + penalty(g)
            with keras.StatelessScope(state_mapping=list(zip(model.optimizer.variables,
                                                                optimizer_variables))):
                scaled = model.optimizer.scale_loss(total)
            return scaled, (total, *aux[1:])

        model.compute_loss_and_updates = compute_loss_and_updates
        model.train_step = lambda state, data: type(model).train_step(model, state, data)
    else:
        def train_step(data):
            x, y, sample_weight = _unpack(data)
            r = ops.zeros(perturbation.shape(x), dtype=perturbation.layer.compute_dtype)
            total, y_pred = _penalised_loss_and_apply(model, x, y, sample_weight, r, penalty,
                                                      perturbation.layer)
            for metric in model.metrics:
                if metric.name == "loss":
                    metric.update_state(total, sample_weight=ops.shape(r)[0])
            return model.compute_metrics(x, y, y_pred, sample_weight)

        model.train_step = train_step
    return model


def _penalised_loss_and_apply(model, x, y, sample_weight, r, penalty, layer):
    """One optimizer step on ``loss + penalty(d loss / d r)`` (PyTorch, TensorFlow)."""
    variables = model.trainable_variables
    if keras.backend.backend() == "torch":
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        r = r.requires_grad_(True)
        model.zero_grad()
        # The math kernel of scaled_dot_product_attention is the one with a double backward.
        with lookup_hook(layer, lambda e: e + r), sdpa_kernel([SDPBackend.MATH]):
            y_pred = model(x, training=True)
        loss = _compute_loss(model, x, y, y_pred, sample_weight)
        (g,) = torch.autograd.grad(loss, r, create_graph=True)
        total = loss + penalty(g)
        model.optimizer.scale_loss(total).backward()
        grads = [v.value.grad for v in variables]
        with torch.no_grad():
            model.optimizer.apply(grads, variables)
        return total.detach(), y_pred
    import tensorflow as tf

    with tf.GradientTape() as tape:
        with tf.GradientTape() as inner:
            inner.watch(r)
            with lookup_hook(layer, lambda e: e + r):
                y_pred = model(x, training=True)
            loss = _compute_loss(model, x, y, y_pred, sample_weight)
        total = loss + penalty(inner.gradient(loss, r))
        scaled = model.optimizer.scale_loss(total)
    model.optimizer.apply(tape.gradient(scaled, variables), variables)
    return total, y_pred


def __getattr__(name: str):
    """``integrated_gradients`` and ``token_scores`` lived here before ``bert4keras.attribution``."""
    if name in ("integrated_gradients", "token_scores"):
        from bert4keras import attribution

        return getattr(attribution, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
