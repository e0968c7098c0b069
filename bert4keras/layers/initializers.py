"""Random initializers whose draw can be skipped when a checkpoint will overwrite it.

``build_transformer_model(config, checkpoint)`` builds the model inside
:func:`deferred_initialization`: every :class:`DeferrableInitializer` then
returns a NaN placeholder instead of drawing random numbers (drawing them is
most of the build time: the word embedding alone is tens of millions of
values, and on JAX every new shape also costs an XLA compile). After loading,
:meth:`Transformer.load_weights_from_checkpoint` draws the real values for any
placeholder the checkpoint did not fill (``ignore_invalid_weights``, a partial
mapping), so no NaN survives; a weight it missed would poison every output
rather than give plausible wrong numbers.
"""

from __future__ import annotations

import contextlib
import threading

import keras
import numpy as np

from bert4keras.layers.core import register

_state = threading.local()


@contextlib.contextmanager
def deferred_initialization(records: dict):
    """Within the block, deferrable initializers record ``(layer name, shape) -> self``.

    Only weights created while :func:`initializing_layer` names their layer are
    deferred; anything else is initialized as usual.
    """
    previous = getattr(_state, "records", None)
    _state.records = records
    try:
        yield records
    finally:
        _state.records = previous


@contextlib.contextmanager
def initializing_layer(name: str):
    """Attribute the weights created within the block to the registry layer ``name``."""
    previous = getattr(_state, "layer", None)
    _state.layer = name
    try:
        yield
    finally:
        _state.layer = previous


def deferral_active() -> bool:
    return getattr(_state, "records", None) is not None


class DeferrableInitializer(keras.initializers.Initializer):
    """Base of initializers that honour :func:`deferred_initialization`; subclasses define ``sample``."""

    def sample(self, shape, dtype=None):
        raise NotImplementedError

    def __call__(self, shape, dtype=None):
        records = getattr(_state, "records", None)
        layer = getattr(_state, "layer", None)
        if records is None or layer is None:
            return self.sample(shape, dtype)
        records[(layer, tuple(shape))] = self
        # float32 on the host: no device kernel, no per-shape compile; the variable casts it.
        return np.full(tuple(shape), np.nan, dtype="float32")


@register
class TruncatedNormal(DeferrableInitializer):
    """``keras.initializers.TruncatedNormal`` (values beyond 2 stddev redrawn), deferrable."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed=None):
        self._keras = keras.initializers.TruncatedNormal(mean=mean, stddev=stddev, seed=seed)
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def sample(self, shape, dtype=None):
        return self._keras(shape, dtype=dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}
