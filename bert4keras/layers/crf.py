"""Sequence-labelling heads with trainable transitions: a linear-chain CRF and a
(bidirectional) MEMM (https://kexue.fm/archives/5542, https://kexue.fm/archives/7213).

Both layers pass their input through unchanged except that padded positions (the
Keras mask) become ``-inf``; the losses and accuracies read the padding back from
those ``-inf`` rows, so ``model.compile(loss=crf.sparse_loss,
metrics=[crf.sparse_accuracy])`` needs no extra mask input. Under a mixed
precision policy the layers compute in the policy's variable dtype (float32).
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
from keras import ops

from bert4keras.layers.core import Layer, register


def full_precision_dtype(kwargs: dict) -> None:
    """Default a loss-computing layer to the variable dtype, so mixed precision never reaches it."""
    kwargs.setdefault("dtype", keras.config.dtype_policy().variable_dtype)


def is_concrete(x) -> bool:
    """Whether ``x`` holds values we can read on the host (not a JAX/TF trace or torch.compile)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    return True


def check_labels(layer: keras.layers.Layer, y_true, num_labels: int) -> None:
    """Raise if an integer label lies outside [0, num_labels).

    Only possible when the labels are concrete (eager torch / TF, JAX outside jit;
    on an accelerator this reads the labels back to the host). Inside a compiled step
    (JAX ``fit``, ``jit_compile``) the check is skipped and a bad label silently gives
    a wrong loss: the CRF one-hots it to an all-zero row, the MEMM gathers a clipped
    index. Check the data on the host before training on JAX.
    """
    if not is_concrete(y_true):
        return
    labels = ops.convert_to_numpy(y_true)
    bad = (labels < 0) | (labels >= num_labels)
    if bad.any():
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: label {labels[bad].flat[0]} "
                         f"outside [0, {num_labels}) at index {tuple(int(i) for i in np.argwhere(bad)[0])}")


def valid_positions(y_pred):
    """(batch, seq_len) bool: the positions the layer did not fill with -inf."""
    return ops.all(ops.not_equal(y_pred, -np.inf), axis=2)


def sparse_labels(y_true, y_pred):
    """Integer labels shaped like ``y_pred`` without its label axis (Keras may add a trailing 1)."""
    return ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")


def masked_mean(values, mask):
    mask = ops.cast(mask, values.dtype)
    return ops.sum(values * mask) / ops.maximum(ops.sum(mask), 1.0)


LIVE_LAYERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


@register
class BoundObjective:
    """``layer.sparse_loss`` & co.: a loss/metric function bound to its layer that survives
    ``model.save`` / ``keras.models.load_model`` (a bound method does not).

    It serializes as the layer's name; loading re-binds to the most recently created
    layer of that name, which is the reloaded model's own (Keras rebuilds the layers
    before the compile config).
    """

    def __init__(self, layer: "TransitionLayer", method: str):
        self.layer = layer
        self.method = method
        self.__name__ = method

    def __call__(self, y_true, y_pred):
        return getattr(self.layer, "_" + self.method)(y_true, y_pred)

    def get_config(self) -> dict:
        return {"layer": self.layer.name, "method": self.method}

    @classmethod
    def from_config(cls, config: dict) -> "BoundObjective":
        layer = LIVE_LAYERS.get(config["layer"])
        if layer is None:
            raise ValueError(f"{config['method']}: no live layer named {config['layer']!r} to bind to; "
                             "create or load the model holding it first")
        return cls(layer, config["method"])


class TransitionLayer(Layer):
    """Shared part of CRF and MEMM: the -inf padding, the lr multiplier, the label checks.

    ``sparse_loss``, ``dense_loss``, ``sparse_accuracy``, ``dense_accuracy`` are
    (y_true, y_pred) functions for ``model.compile``: sparse ones take integer labels
    (batch, seq_len), dense ones one-hot labels (batch, seq_len, num_labels).
    """

    def __init__(self, lr_multiplier: float = 1, **kwargs):
        full_precision_dtype(kwargs)
        super().__init__(**kwargs)
        self.lr_multiplier = lr_multiplier
        LIVE_LAYERS[self.name] = self

    @property
    def sparse_loss(self) -> BoundObjective:
        return BoundObjective(self, "sparse_loss")

    @property
    def dense_loss(self) -> BoundObjective:
        return BoundObjective(self, "dense_loss")

    @property
    def sparse_accuracy(self) -> BoundObjective:
        return BoundObjective(self, "sparse_accuracy")

    @property
    def dense_accuracy(self) -> BoundObjective:
        return BoundObjective(self, "dense_accuracy")

    def scaled_weight(self, name: str, shape: tuple):
        """A glorot-initialised weight stored divided by ``lr_multiplier`` (read it times the multiplier)."""
        weight = self.add_weight(name=name, shape=shape, initializer="glorot_uniform")
        if self.lr_multiplier != 1:
            weight.assign(weight / self.lr_multiplier)
        return weight

    def num_labels_of(self, input_shape) -> int:
        num_labels = input_shape[-1]
        if num_labels is None or len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} {self.name!r}: expected (batch, seq_len, num_labels) "
                             f"with a known num_labels, got {tuple(input_shape)}")
        return int(num_labels)

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs, mask=None):
        if mask is None:
            return inputs
        return ops.where(ops.expand_dims(ops.cast(mask, "bool"), -1), inputs,
                         ops.cast(-np.inf, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def _dense_loss(self, y_true, y_pred):
        return self._sparse_loss(ops.argmax(y_true, axis=2), y_pred)

    def _dense_accuracy(self, y_true, y_pred):
        return self._sparse_accuracy(ops.argmax(y_true, axis=2), y_pred)

    def get_config(self):
        return {**super().get_config(), "lr_multiplier": self.lr_multiplier}


@register
class ConditionalRandomField(TransitionLayer):
    """Linear-chain CRF: the layer holds the (num_labels, num_labels) transition matrix
    ``trans``; training minimises -log p(path) with the partition function from the
    forward algorithm. Decode with :class:`bert4keras.snippets.ViterbiDecoder`.
    """

    def build(self, input_shape):
        num_labels = self.num_labels_of(input_shape)
        self._trans = self.scaled_weight("trans", (num_labels, num_labels))

    @property
    def trans(self):
        """The transition scores, ``trans[i, j]`` for label i followed by label j."""
        if self.lr_multiplier != 1:
            return self.lr_multiplier * self._trans
        return self._trans

    def target_score(self, y_true, y_pred):
        """Unnormalised score of the labelled path: emissions plus transitions."""
        trans = ops.cast(self.trans, y_pred.dtype)
        point_score = ops.einsum("bni,bni->b", y_true, y_pred)
        trans_score = ops.einsum("bni,ij,bnj->b", y_true[:, :-1], trans, y_true[:, 1:])
        return point_score + trans_score

    def log_norm(self, y_pred, mask):
        """log Z by the forward recursion (logsumexp); masked steps keep the previous state."""

        def step(states, inputs):
            emissions, valid = inputs
            valid = ops.expand_dims(ops.cast(valid, emissions.dtype), 1)
            outputs, _ = self.log_norm_step(ops.concatenate([emissions, valid], axis=1), [states])
            return outputs, None

        states = y_pred[:, 0]
        if y_pred.shape[1] != 1:
            xs = (ops.transpose(y_pred[:, 1:], (1, 0, 2)), ops.transpose(mask[:, 1:], (1, 0)))
            states, _ = ops.scan(step, states, xs)
        return ops.logsumexp(states, axis=1)

    def log_norm_step(self, inputs, states):
        """One step of the forward recursion (0.11.5's signature): ``inputs`` is the step's
        emissions with its mask as the last channel, ``states`` is ``[previous log-alpha]``."""
        emissions, valid = inputs[:, :-1], inputs[:, -1:]
        previous = states[0]
        trans = ops.expand_dims(ops.cast(self.trans, emissions.dtype), 0)
        outputs = ops.logsumexp(ops.expand_dims(previous, 2) + trans, axis=1) + emissions
        outputs = ops.where(valid > 0, outputs, previous)
        return outputs, [outputs]

    def _dense_loss(self, y_true, y_pred):
        """-log p(path) per sequence for one-hot (or soft) labels."""
        y_pred = ops.cast(y_pred, self.variable_dtype)
        mask = valid_positions(y_pred)
        y_true = ops.where(mask[..., None], ops.cast(y_true, y_pred.dtype), 0.0)
        y_pred = ops.where(mask[..., None], y_pred, 0.0)
        return self.log_norm(y_pred, mask) - self.target_score(y_true, y_pred)

    def _sparse_loss(self, y_true, y_pred):
        """-log p(path) per sequence for integer labels."""
        num_labels = self._trans.shape[0]
        y_true = sparse_labels(y_true, y_pred)
        check_labels(self, y_true, num_labels)
        return self._dense_loss(ops.one_hot(y_true, num_labels), y_pred)

    def _sparse_accuracy(self, y_true, y_pred):
        """Per-token accuracy of the emission argmax (padding excluded): a cheap training signal."""
        mask = valid_positions(y_pred)
        y_true = sparse_labels(y_true, y_pred)
        correct = ops.equal(y_true, ops.cast(ops.argmax(y_pred, axis=2), "int32"))
        return masked_mean(ops.cast(correct, "float32"), mask)


def reverse_sequence(x, lengths):
    """Reverse the first ``lengths[b]`` steps of each row of ``x`` (batch, seq_len, ...), padding stays put."""
    seq_len = ops.shape(x)[1]
    steps = ops.expand_dims(ops.arange(seq_len, dtype="int32"), 0)
    lengths = ops.expand_dims(ops.cast(lengths, "int32"), 1)
    index = ops.where(steps < lengths, lengths - 1 - steps, steps)
    index = ops.reshape(index, tuple(ops.shape(index)) + (1,) * (len(x.shape) - 2))
    return ops.take_along_axis(x, ops.broadcast_to(index, ops.shape(x)), axis=1)


@register
class MaximumEntropyMarkovModel(TransitionLayer):
    """Bidirectional MEMM: each token's label distribution is softmax((emission +
    trans[previous label]) / 2), averaged over the left-to-right and right-to-left
    directions. ``hidden_dim`` factorises ``trans`` as ``l_trans @ r_trans.T``.
    """

    def __init__(self, lr_multiplier: float = 1, hidden_dim: int | None = None, **kwargs):
        super().__init__(lr_multiplier, **kwargs)
        self.hidden_dim = hidden_dim

    def build(self, input_shape):
        num_labels = self.num_labels_of(input_shape)
        if self.hidden_dim is None:
            self._trans = self.scaled_weight("trans", (num_labels, num_labels))
        else:
            self._l_trans = self.scaled_weight("l_trans", (num_labels, self.hidden_dim))
            self._r_trans = self.scaled_weight("r_trans", (num_labels, self.hidden_dim))

    def _scaled(self, weight):
        try:
            weight.value
        except TypeError:  # Keras's JAX trainer hides model weights from compile() metrics
            raise RuntimeError(f"{type(self).__name__} {self.name!r}: {weight.path} is not readable here; "
                               "on JAX, Keras computes compile() metrics without the model's weights, so "
                               "use sparse_accuracy in evaluation code (or on the torch backend) instead") from None
        return self.lr_multiplier * weight if self.lr_multiplier != 1 else weight

    @property
    def trans(self):
        return self._scaled(self._trans)

    @property
    def l_trans(self):
        return self._scaled(self._l_trans)

    @property
    def r_trans(self):
        return self._scaled(self._r_trans)

    @property
    def num_labels(self) -> int:
        return (self._trans if self.hidden_dim is None else self._l_trans).shape[0]

    def directional_logits(self, y_true, y_pred, mask, go_backwards: bool):
        """Per-token logits (emission + transition from the previous gold label) / 2, one direction."""
        if self.hidden_dim is None:
            trans = ops.cast(self.trans, y_pred.dtype)
            if go_backwards:
                trans = ops.transpose(trans)
        else:
            l_trans = ops.cast(self.l_trans, y_pred.dtype)
            r_trans = ops.cast(self.r_trans, y_pred.dtype)
            if go_backwards:
                l_trans, r_trans = r_trans, l_trans
            trans = ops.matmul(l_trans, ops.transpose(r_trans))
        if go_backwards:
            y_true, y_pred = self.reverse_sequence([y_true, y_pred], mask)
        history = ops.take(trans, y_true, axis=0)
        history = ops.concatenate([y_pred[:, :1], history[:, :-1]], axis=1)
        return y_true, ops.where(mask[..., None], (y_pred + history) / 2, 0.0)

    def reverse_sequence(self, inputs, mask=None):
        """Reverse each tensor of ``inputs`` in time within its valid length (padding stays put)."""
        if mask is None:
            return [ops.flip(x, axis=1) for x in inputs]
        lengths = ops.sum(ops.cast(mask, "int32"), axis=1)
        return [reverse_sequence(x, lengths) for x in inputs]

    def basic_loss(self, y_true, y_pred, go_backwards: bool = False):
        """Mean token cross-entropy over valid positions in one direction."""
        y_pred = ops.cast(y_pred, self.variable_dtype)
        mask = valid_positions(y_pred)
        y_true = sparse_labels(y_true, y_pred)
        y_true, logits = self.directional_logits(y_true, y_pred, mask, go_backwards)
        loss = ops.sparse_categorical_crossentropy(y_true, logits, from_logits=True)
        return masked_mean(loss, mask)

    def _sparse_loss(self, y_true, y_pred):
        """Both directions' cross-entropy, averaged, for integer labels."""
        check_labels(self, sparse_labels(y_true, y_pred), self.num_labels)
        return (self.basic_loss(y_true, y_pred, False) + self.basic_loss(y_true, y_pred, True)) / 2

    def basic_accuracy(self, y_true, y_pred, go_backwards: bool = False):
        """Teacher-forced per-token accuracy (padding excluded) in one direction."""
        y_pred = ops.cast(y_pred, self.variable_dtype)
        mask = valid_positions(y_pred)
        y_true = sparse_labels(y_true, y_pred)
        y_true, logits = self.directional_logits(y_true, y_pred, mask, go_backwards)
        correct = ops.equal(y_true, ops.cast(ops.argmax(logits, axis=2), "int32"))
        return masked_mean(ops.cast(correct, "float32"), mask)

    def _sparse_accuracy(self, y_true, y_pred):
        return (self.basic_accuracy(y_true, y_pred, False) + self.basic_accuracy(y_true, y_pred, True)) / 2

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim}
