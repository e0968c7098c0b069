"""Integrated gradients (arXiv:1703.01365) and per-token scores: which input tokens a
prediction rests on, on JAX, PyTorch and TensorFlow (https://kexue.fm/archives/7533).
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
from keras import ops

from bert4keras.adversarial import find_embedding_layer, gradients, lookup_hook

__all__ = ["integrated_gradients", "token_scores"]

_METHODS = ("riemann_right", "trapezoid", "linspace_inclusive", "bert4keras")


def _path(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` along the path and the weights of the average gradient."""
    if method == "riemann_right":
        alphas = np.arange(1, steps + 1) / steps
        return alphas, np.full(steps, 1.0 / steps)
    if method == "trapezoid":
        alphas = np.arange(steps + 1) / steps
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] /= 2
        return alphas, weights
    alphas = np.linspace(0.0, 1.0, steps) if steps > 1 else np.ones(1)
    return alphas, np.full(steps, 1.0 / steps)


def integrated_gradients(model: keras.Model, inputs, target_index, baseline=None,
                         steps: int = 50, method: str = "riemann_right",
                         layer_name: str = "Embedding-Token",
                         space: str = "embedding_output", batch_size: int = 64) -> np.ndarray:
    """Attributions ``(x - baseline) * mean_alpha grad F(baseline + alpha (x - baseline))``,
    ``F`` the model output at ``target_index`` (an int or one per sample), summed over the batch.

    ``space='embedding_output'``: ``x`` is the output of ``layer_name`` for ``inputs``
    (token ids); ``space='input'``: ``x`` is the (single, float) model input.
    ``method``: ``riemann_right`` (alpha = k/n), ``trapezoid``, ``linspace_inclusive``
    (alpha = i/(n-1)), or ``bert4keras`` (its example: ``mean grad F(alpha x) * alpha x`` on
    the inclusive grid, baseline 0). Path points go through the model ``batch_size`` rows
    at a time. Weights are never modified.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown integration method {method!r}; use one of {_METHODS}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if space not in ("embedding_output", "input"):
        raise ValueError(f"space must be 'embedding_output' or 'input', got {space!r}")
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if space == "embedding_output":
        layer = find_embedding_layer(model, layer_name)
        captured = []
        with lookup_hook(layer, lambda e: captured.append(e) or e):
            model(inputs, training=False)
        x = ops.convert_to_numpy(captured[0]).astype("float32")

        def forward(z, copies):
            tiled = [np.concatenate([np.asarray(a)] * copies) for a in inputs]
            with lookup_hook(layer, lambda e: ops.cast(z, e.dtype)):
                return model(tiled, training=False)
    else:
        if len(inputs) != 1:
            raise ValueError(f"space='input' needs a model with one float input, got {len(inputs)}")
        x = np.asarray(inputs[0], "float32")

        def forward(z, copies):
            return model(z, training=False)

    if method == "bert4keras" and baseline is not None:
        raise ValueError("method='bert4keras' integrates from a zero baseline only")
    base = np.zeros_like(x) if baseline is None else np.broadcast_to(
        np.asarray(baseline, "float32"), x.shape)
    target = np.broadcast_to(np.asarray(target_index), x.shape[:1]).astype("int32")

    def score(z, copies):
        outputs = forward(z, copies)
        outputs = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        outputs = ops.reshape(ops.cast(outputs, "float32"), (ops.shape(outputs)[0], -1))
        index = ops.convert_to_tensor(np.tile(target, copies)[:, None])
        return ops.sum(ops.take_along_axis(outputs, index, axis=1))

    alphas, weights = _path(method, steps)
    per_call = min(len(alphas), max(1, batch_size // len(x)))
    gradient = _compiled_gradient(model, lambda z: score(z, per_call))
    total = np.zeros_like(x)
    for start in range(0, len(alphas), per_call):
        chunk = alphas[start:start + per_call]
        chunk = np.concatenate([chunk, np.zeros(per_call - len(chunk))])  # one shape per call
        points = np.concatenate([base + a * (x - base) for a in chunk]).astype("float32")
        g = ops.convert_to_numpy(gradient(ops.convert_to_tensor(points))).astype("float32")
        if method == "bert4keras":
            g = g * points
        for k, weight in enumerate(weights[start:start + per_call]):
            total += weight * g[k * len(x):(k + 1) * len(x)]
    return total if method == "bert4keras" else (x - base) * total


def _compiled_gradient(model: keras.Model, fn: Callable) -> Callable:
    """``z -> d fn / dz``; jitted on JAX with the weights as arguments (eager JAX compiles op by op)."""
    if keras.backend.backend() != "jax":
        return lambda z: gradients(fn, z)[1][0]
    import jax

    variables = list(model.variables)

    def stateless(values, z):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(z)

    compiled = jax.jit(jax.grad(stateless, argnums=1))
    values = [v.value for v in variables]
    return lambda z: compiled(values, z)


def token_scores(attributions, reduce: str = "l2", normalize: bool = True) -> np.ndarray:
    """Per-token importance from (..., seq_len, hidden) attributions: the L2 norm (``'l2'``)
    or the largest magnitude (``'max'``) over hidden, min-max scaled to [0, 1] per sequence."""
    a = np.asarray(attributions, dtype="float64")
    if reduce == "l2":
        scores = np.sqrt(np.sum(a * a, axis=-1))
    elif reduce == "max":
        scores = np.max(np.abs(a), axis=-1)
    else:
        raise ValueError(f"reduce must be 'l2' or 'max', got {reduce!r}")
    if not normalize:
        return scores
    low = scores.min(axis=-1, keepdims=True)
    span = scores.max(axis=-1, keepdims=True) - low
    return np.where(span > 0, (scores - low) / np.where(span > 0, span, 1.0), 0.0)
