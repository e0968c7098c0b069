"""Recompute (gradient checkpointing) of layer calls on JAX, PyTorch and TensorFlow.

A recomputed layer keeps only its inputs for the backward pass and runs its
``call`` again to get the activations it needs, trading time for memory. The
random state of the layer (dropout seeds) is fed to the recomputation so it
draws the same masks, and the call context (training flag, mixed-precision
autocast) is replayed, so gradients are exactly those of the plain call.

Switches: ``RECOMPUTE=1`` in the environment (read once, at import),
:func:`set_recompute` at run time, or ``build_transformer_model(..., recompute=True)``.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
from typing import Callable

import keras
from keras.src import backend as _keras_backend
from keras.src.backend.common import global_state

__all__ = ["strtobool", "do_recompute", "set_recompute", "recompute_enabled",
           "recompute_grad", "recompute_layer"]

_TRUE = ("y", "yes", "t", "true", "on", "1")
_FALSE = ("n", "no", "f", "false", "off", "0")


def strtobool(value: str) -> bool:
    """distutils' truth table (removed in Python 3.12): y/yes/t/true/on/1 and their negatives."""
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"invalid truth value {value!r}: use one of {_TRUE + _FALSE}")


def _env_flag() -> bool:
    value = os.environ.get("RECOMPUTE", "0")
    try:
        return strtobool(value)
    except ValueError:
        raise ValueError(f"environment variable RECOMPUTE={value!r} is not a truth value "
                         f"(use one of {_TRUE + _FALSE})") from None


do_recompute: bool = _env_flag()
"""The ``RECOMPUTE`` environment variable, read once at import."""

_enabled = do_recompute
_local = threading.local()


def set_recompute(flag: bool) -> None:
    """Turn recompute on or off for models built and functions decorated from now on."""
    global _enabled
    _enabled = bool(flag)


def recompute_enabled() -> bool:
    """Whether recompute is currently on (``RECOMPUTE`` at import, then :func:`set_recompute`)."""
    return _enabled


def recompute_grad(call: Callable) -> Callable:
    """Decorator for a layer's ``call(self, inputs, **kwargs)``: recompute it in the backward pass.

    As in bert4keras, ``call`` is returned unchanged when recompute is off at decoration time.
    """
    if not _enabled:
        return call

    @functools.wraps(call)
    def inner(self, inputs, **kwargs):
        return _recomputed_call(self, call, inputs, kwargs)

    return inner


def recompute_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """Make one layer instance recompute its ``call`` during training; returns the layer."""
    call = type(layer).call
    if getattr(layer.call, "_bert4keras_recompute", False):
        return layer

    @functools.wraps(call)
    def inner(inputs, **kwargs):
        return _recomputed_call(layer, call, inputs, kwargs)

    inner._bert4keras_recompute = True
    layer.call = inner
    return layer


def _training(kwargs: dict):
    if "training" in kwargs:
        return kwargs["training"]
    context = global_state.get_global_attribute("current_call_ctx")
    return None if context is None else context.get_value("training")


def _is_tensor(x) -> bool:
    return x is not None and hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(
        x, (bool, int, float, str))


def _recomputed_call(layer, call, inputs, kwargs):
    """Run ``call`` under the backend's checkpoint when training; plainly otherwise."""
    accepted = inspect.signature(call).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    if not _training(kwargs) or getattr(_local, "active", False) or not _grad_enabled():
        return call(layer, inputs, **kwargs)

    leaves = keras.tree.flatten((inputs, kwargs))
    slots = [i for i, x in enumerate(leaves) if _is_tensor(x)]
    # The body must not hold tensors: it lives as long as the autograd graph.
    template = keras.tree.pack_sequence_as(
        (inputs, kwargs), [None if i in slots else x for i, x in enumerate(leaves)])
    states = list(layer.non_trainable_variables)
    autocast = _keras_backend.get_autocast_scope()
    context = global_state.get_global_attribute("current_call_ctx")
    structure = {}

    def body(*flat):
        tensors, values = flat[:len(slots)], flat[len(slots):]
        for variable, value in zip(states, values):
            variable.assign(value)
        filled = keras.tree.flatten(template)
        for i, tensor in zip(slots, tensors):
            filled[i] = tensor
        args, call_kwargs = keras.tree.pack_sequence_as(template, filled)
        outer_context = global_state.get_global_attribute("current_call_ctx")
        global_state.set_global_attribute("current_call_ctx", context)
        _local.active = True
        try:
            if autocast is not None:
                with _keras_backend.AutocastScope(autocast.dtype):
                    outputs = call(layer, args, **call_kwargs)
            else:
                outputs = call(layer, args, **call_kwargs)
        finally:
            _local.active = False
            global_state.set_global_attribute("current_call_ctx", outer_context)
        # Keep the nesting only: holding the output tensors here would make a reference
        # cycle through the autograd graph and keep every step's activations alive.
        structure["outputs"] = keras.tree.map_structure(lambda _: None, outputs)
        flat_outputs = keras.tree.flatten(outputs)
        return tuple(flat_outputs) + tuple(_copy(v.value) for v in states)

    flat_in = [leaves[i] for i in slots] + [_copy(v.value) for v in states]
    if keras.backend.backend() == "jax":
        flat_out = _jax_checkpoint(body, flat_in, layer.trainable_variables, states)
    else:
        flat_out = _checkpoint(body, flat_in)
    n_out = len(keras.tree.flatten(structure["outputs"]))
    for variable, value in zip(states, flat_out[n_out:]):
        variable.assign(value)
    return keras.tree.pack_sequence_as(structure["outputs"], list(flat_out[:n_out]))


def _copy(x):
    return keras.ops.copy(x)


def _grad_enabled() -> bool:
    if keras.backend.backend() == "torch":
        import torch

        return torch.is_grad_enabled()
    return True


def _jax_checkpoint(body: Callable, flat_in: list, weights: list, states: list) -> tuple:
    """``body(*flat_in)`` with its activations recomputed in the backward pass, on JAX.

    A custom VJP, not ``jax.checkpoint``, whose barriers XLA:CPU removes (docs/training.md):
    the backward rule recomputes from inputs tied to the cotangent (``x + 0 * sum(g)``), so
    no compiler pass can merge it with the forward. The weights are explicit arguments (a
    custom VJP may not close over what is differentiated).
    """
    import jax
    import jax.numpy as jnp

    def is_float(x):
        return jnp.issubdtype(jnp.result_type(x), jnp.inexact)

    def run(weight_values, flat):
        # Every variable the call reads gets a value here: the weights from the arguments,
        # the states from the tail of ``flat`` (body assigns them again, harmlessly). No
        # outer scope can be relied on: the backward rule runs after the trainer's has closed.
        mapping = list(zip(weights, weight_values))
        mapping += list(zip(states, flat[len(flat) - len(states):]))
        with keras.StatelessScope(state_mapping=mapping):
            return tuple(body(*flat))

    @jax.custom_vjp
    def remat(weight_values, flat):
        return run(weight_values, flat)

    def remat_fwd(weight_values, flat):
        return run(weight_values, flat), (weight_values, flat)

    def remat_bwd(saved, cotangents):
        weight_values, flat = saved
        floats = [g for g in cotangents if is_float(g)]
        anchor = sum((jnp.sum(g, dtype=jnp.float32) for g in floats), jnp.float32(0))
        flat = [x + (jnp.zeros((), x.dtype) * anchor.astype(x.dtype)) if is_float(x) else x
                for x in flat]
        differentiable = [i for i, x in enumerate(flat) if is_float(x)]

        def replay(weight_values, float_inputs):
            full = list(flat)
            for i, x in zip(differentiable, float_inputs):
                full[i] = x
            outputs = run(weight_values, full)
            return tuple(o for o in outputs if is_float(o))

        _, vjp = jax.vjp(replay, weight_values, [flat[i] for i in differentiable])
        g_weights, g_floats = vjp(tuple(floats))
        g_flat = [None] * len(flat)
        for i, g in zip(differentiable, g_floats):
            g_flat[i] = g
        return g_weights, g_flat

    remat.defvjp(remat_fwd, remat_bwd)
    return remat([w.value for w in weights], list(flat_in))


def _checkpoint(fn: Callable, args: list) -> tuple:
    """``fn(*args)`` under the backend's rematerialisation (activations recomputed in backward);
    PyTorch and TensorFlow (JAX goes through :func:`_jax_checkpoint`)."""
    name = keras.backend.backend()
    if name == "torch":
        import torch.utils.checkpoint

        # preserve_rng_state replays torch's global RNG, which unseeded Keras dropout uses.
        return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)
    if name == "tensorflow":
        import tensorflow as tf

        # tf.recompute_grad differentiates every argument and output: pass the float tensors,
        # close over the rest (masks, seeds); variables already hold their post-call state.
        floats = [i for i, x in enumerate(args) if x.dtype.is_floating]

        def float_fn(*float_args):
            full = list(args)
            for i, x in zip(floats, float_args):
                full[i] = x
            outputs = fn(*full)
            return [x for x in outputs if x.dtype.is_floating]

        return tuple(tf.recompute_grad(float_fn)(*[args[i] for i in floats]))
    raise NotImplementedError(f"recompute is not available on the {name!r} backend")
