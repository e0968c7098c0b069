"""bert4keras 0.11.5's ``AutoRegressiveDecoder`` (beam search and random sampling around a
user-defined ``predict``), a cheap ``last_token``, and its switch to the cached engine.

This module takes models by duck type (a Keras functional model) and imports
nothing from ``bert4keras.models``.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import keras
import numpy as np

from bert4keras.generation.engine import _bucket, run_engine


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable numpy softmax (keeps the input's dtype)."""
    x = np.exp(x - x.max(axis=axis, keepdims=True))
    return x / x.sum(axis=axis, keepdims=True)


class LastTokenModel:
    """``model``'s outputs at the last position of the sequence inputs, computed cheaply.

    The variable-length token inputs (rank-2 integer inputs whose length is not fixed
    by the model) are padded with 0 up to a length bucket and the batch up to a power
    of two, so one compiled function serves many steps; the output is gathered at the
    last real position. Trailing 0-padding is what ``sequence_padding`` feeds every
    bert4keras model, so real positions do not change. On JAX the forward pass is a
    jitted ``stateless_call`` taking the current weights (training between calls is
    seen); elsewhere the model is called directly, without ``predict``'s data adapter.
    """

    def __init__(self, model):
        self.model = model
        self._jitted = None
        self.max_length = None
        for layer in _walk_layers(model):
            if type(layer).__name__ == "PositionEmbedding" and not layer.hierarchical \
                    and not layer.custom_position_ids:
                self.max_length = min(self.max_length or layer.input_dim, layer.input_dim)

    def predict(self, x, batch_size=None, verbose=None, **kwargs):
        """Outputs at the last position, as numpy (a list when the model has several)."""
        arrays = [np.asarray(a) for a in (x if isinstance(x, (list, tuple)) else [x])]
        if len(arrays) != len(self.model.inputs):
            raise ValueError(f"model {self.model.name!r} takes {len(self.model.inputs)} "
                             f"input(s), got {len(arrays)}")
        seq = [i for i, (a, t) in enumerate(zip(arrays, self.model.inputs))
               if a.ndim == 2 and a.dtype.kind in "iu" and len(t.shape) == 2 and t.shape[1] is None]
        lengths = {arrays[i].shape[1] for i in seq}
        batch = arrays[0].shape[0]
        if len(lengths) == 1 and 0 not in lengths:
            length = lengths.pop()
            padded = _bucket(length)
            if self.max_length is not None:
                padded = max(length, min(padded, self.max_length))
            for i in seq:
                arrays[i] = np.pad(arrays[i], ((0, 0), (0, padded - length)))
            index = length - 1
        else:
            padded, index = None, -1
        rows = 1 << max(batch - 1, 0).bit_length()
        if rows != batch:
            arrays = [np.pad(a, [(0, rows - batch)] + [(0, 0)] * (a.ndim - 1), mode="edge")
                      for a in arrays]
        outputs = self._run(arrays, index, padded)
        outputs = [np.asarray(o)[:batch] for o in outputs]
        return outputs[0] if len(outputs) == 1 else outputs

    __call__ = predict

    def _run(self, arrays, index, padded):
        backend = keras.backend.backend()
        if backend == "jax":
            if self._jitted is None:
                self._jitted = self._make_jax_fn()
            trainable = [v.value for v in self.model.trainable_variables]
            non_trainable = [v.value for v in self.model.non_trainable_variables]
            return self._jitted(trainable, non_trainable, arrays, np.int32(index))
        if backend == "torch":
            import torch

            with torch.no_grad():
                outputs = self.model(arrays, training=False)
        else:
            outputs = self.model(arrays, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [keras.ops.convert_to_numpy(o[:, index]) for o in outputs]

    def _make_jax_fn(self):
        import jax

        model = self.model

        def run(trainable, non_trainable, arrays, index):
            outputs, _ = model.stateless_call(trainable, non_trainable, arrays, training=False)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            return [o[:, index] for o in outputs]

        return jax.jit(run)


def _walk_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _walk_layers(layer)


class AutoRegressiveDecoder:
    """Base class of autoregressive decoders (bert4keras 0.11.5's API and results).

    Subclass it, define ``predict(self, inputs, output_ids, states)`` decorated with
    :meth:`wraps`, and call :meth:`beam_search` or :meth:`random_sample`.
    ``start_id=None`` starts from an empty output; ``maxlen`` bounds the number of
    generated tokens and ``minlen`` the output length (start token included) before
    an end token may finish a sequence.
    """

    def __init__(self, start_id: int | None, end_id: int | None, maxlen: int, minlen: int = 1):
        self.start_id = start_id
        self.end_id = end_id
        self.maxlen = maxlen
        self.minlen = minlen
        self.models = {}
        if start_id is None:
            self.first_output_ids = np.empty((1, 0), dtype=int)
        else:
            self.first_output_ids = np.array([[start_id]])

    @staticmethod
    def wraps(default_rtype: str = "probas", use_states: bool = False) -> Callable:
        """Decorate ``predict``: adds ``temperature`` and ``rtype`` arguments.

        ``default_rtype`` says what ``predict`` returns ('probas': normalised
        probabilities, 'logits': pre-softmax scores); ``use_states`` that it returns
        ``(scores, states)``. The wrapped function returns ``(probas, states)`` for
        ``rtype='probas'`` and ``(log probas, states)`` for ``rtype='logits'``.
        """
        if default_rtype not in ("probas", "logits"):
            raise ValueError(f"default_rtype must be 'probas' or 'logits', got {default_rtype!r}")

        def decorator(predict):
            @functools.wraps(predict)
            def new_predict(self, inputs, output_ids, states, temperature=1, rtype=default_rtype):
                if rtype not in ("probas", "logits"):
                    raise ValueError(f"rtype must be 'probas' or 'logits', got {rtype!r}")
                prediction = predict(self, inputs, output_ids, states)
                scores, states = prediction if use_states else (prediction, None)
                if default_rtype == "logits":
                    scores = softmax(scores / temperature)
                elif temperature != 1:
                    scores = np.power(scores, 1.0 / temperature)
                    scores = scores / scores.sum(axis=-1, keepdims=True)
                if rtype == "probas":
                    return scores, states
                return np.log(scores + 1e-12), states

            return new_predict

        return decorator

    def last_token(self, model) -> LastTokenModel:
        """A callable with ``.predict`` giving ``model``'s outputs at the last position
        (cached per model; see :class:`LastTokenModel`)."""
        if model not in self.models:
            self.models[model] = LastTokenModel(model)
        return self.models[model]

    def predict(self, inputs, output_ids, states=None):
        """Scores of the next token for each row of ``output_ids``: define it in a subclass,
        decorated with :meth:`wraps`."""
        raise NotImplementedError(f"{type(self).__name__} must define predict(), "
                                  f"decorated with AutoRegressiveDecoder.wraps")

    def beam_search(self, inputs: Sequence, topk: int, states=None, temperature: float = 1,
                    min_ends: int = 1) -> np.ndarray:
        """The best sequence of a beam search keeping ``topk`` candidates.

        A candidate is finished once it holds ``min_ends`` end tokens and ends with
        one; the search stops as soon as the best-scoring candidate is finished,
        otherwise finished candidates leave the beam (which shrinks accordingly).
        """
        if topk < 1:
            raise ValueError(f"beam_search: topk must be >= 1, got {topk}")
        inputs = [np.array([i]) for i in inputs]
        output_ids, output_scores = self.first_output_ids, np.zeros(1)
        for step in range(self.maxlen):
            scores, states = self.predict(inputs, output_ids, states, temperature, "logits")
            if step == 0:
                inputs = [np.repeat(i, topk, axis=0) for i in inputs]
            scores = output_scores.reshape((-1, 1)) + scores
            indices = scores.argpartition(-topk, axis=None)[-topk:]
            rows = indices // scores.shape[1]
            columns = (indices % scores.shape[1]).reshape((-1, 1))
            output_ids = np.concatenate([output_ids[rows], columns], 1)
            output_scores = np.take_along_axis(scores, indices, axis=None)
            is_end = output_ids[:, -1] == self.end_id
            end_counts = (output_ids == self.end_id).sum(1)
            if output_ids.shape[1] >= self.minlen:
                best = output_scores.argmax()
                if is_end[best] and end_counts[best] >= min_ends:
                    return output_ids[best]
                unfinished = ~is_end | (end_counts < min_ends)
                if not unfinished.all():
                    inputs = [i[unfinished] for i in inputs]
                    output_ids = output_ids[unfinished]
                    output_scores = output_scores[unfinished]
                    topk = unfinished.sum()
        return output_ids[output_scores.argmax()]

    def cached_beam_search(self, model, token_ids: Sequence[int], topk: int = 1,
                           temperature: float = 1, min_ends: int = 1) -> np.ndarray:
        """:meth:`beam_search` through ``model.generate``'s cached engine, same rules and ids.

        ``model`` comes from ``build_transformer_model``: a GPT, an encoder under
        ``application='lm'``/``'unilm'`` (``token_ids`` is the source, segment 0) or a T5
        (``token_ids`` is the encoder input). ``predict`` is not called: the engine
        computes what the standard seq2seq / LM ``predict`` computes.
        """
        prompt, prefix, head = self._engine_prompt(model, token_ids)
        options = self._engine_options(num_beams=topk, sample=False, top_k=None, top_p=None,
                                       temperature=temperature, min_ends=min_ends, prefix=prefix)
        result = run_engine(model, [prompt], self.maxlen, options)
        return np.array(head + result["result"][0][:result["length"][0]].tolist())

    def cached_random_sample(self, model, token_ids: Sequence[int], n: int, topk: int | None = None,
                             topp: float | None = None, temperature: float = 1, min_ends: int = 1,
                             seed: int = 0) -> list[np.ndarray]:
        """:meth:`random_sample` through the cached engine (as :meth:`cached_beam_search`):
        the same end rules and order of results, drawn from the engine's seeded RNG
        rather than ``np.random``."""
        if n < 1:
            raise ValueError(f"random_sample: n must be >= 1, got {n}")
        prompt, prefix, head = self._engine_prompt(model, token_ids)
        options = self._engine_options(num_beams=1, sample=True, top_k=topk, top_p=topp,
                                       temperature=temperature, min_ends=min_ends, prefix=prefix)
        result = run_engine(model, [prompt] * n, self.maxlen, options, seed)
        order = np.argsort(result["stop"], kind="stable")  # finished first, in finishing order
        return [np.array(head + result["out"][i][:result["stop"][i] + 1].tolist()) for i in order]

    def _engine_prompt(self, model, token_ids: Sequence[int]) -> tuple[list, int, list]:
        """The engine's prompt, how many of its last tokens belong to the answer (UniLM's
        segment 1), and the start of the output (``[start_id]`` or nothing)."""
        head = [] if self.start_id is None else [self.start_id]
        if getattr(getattr(model, "transformer", None), "encoder", None) is not None:
            if self.start_id != 0:
                raise ValueError(f"the cached engine starts T5's decoder at id 0; this decoder's "
                                 f"start_id is {self.start_id}")
            return list(token_ids), 0, head
        return list(token_ids) + head, len(head), head

    def _engine_options(self, **options) -> dict:
        """The engine's options under bert4keras's end rules: ``minlen`` counts the output
        with its start token; before it the end token is an ordinary token."""
        head = self.start_id is not None
        return {**options, "end_id": self.end_id, "min_new_tokens": 0, "rules": "bert4keras",
                "min_length": self.minlen - head}

    def random_sample(self, inputs: Sequence, n: int, topk: int | None = None,
                      topp: float | None = None, states=None, temperature: float = 1,
                      min_ends: int = 1) -> list[np.ndarray]:
        """``n`` sequences sampled with ``np.random`` (seed it for reproducibility).

        ``topk`` samples among the k most probable tokens; ``topp`` among the most
        probable ones whose mass first reaches ``topp`` (nucleus sampling). Finished
        sequences are returned in the order they finish, the unfinished ones last.
        """
        if n < 1:
            raise ValueError(f"random_sample: n must be >= 1, got {n}")
        if topp is not None and not 0 < topp <= 1:
            raise ValueError(f"random_sample: topp must be in (0, 1], got {topp}")
        inputs = [np.array([i]) for i in inputs]
        output_ids = self.first_output_ids
        results = []
        for step in range(self.maxlen):
            probas, states = self.predict(inputs, output_ids, states, temperature, "probas")
            probas = probas / probas.sum(axis=1, keepdims=True)
            if step == 0:
                probas = np.repeat(probas, n, axis=0)
                inputs = [np.repeat(i, n, axis=0) for i in inputs]
                output_ids = np.repeat(output_ids, n, axis=0)
            if topk is not None:
                k_indices = probas.argpartition(-topk, axis=1)[:, -topk:]
                probas = np.take_along_axis(probas, k_indices, axis=1)
                probas /= probas.sum(axis=1, keepdims=True)
            if topp is not None:
                p_indices = probas.argsort(axis=1)[:, ::-1]
                probas = np.take_along_axis(probas, p_indices, axis=1)
                # keep the most probable tokens up to and including the one reaching topp
                beyond = np.roll(np.cumsum(probas, axis=1) >= topp, 1, axis=1)
                beyond[:, 0] = False
                probas[beyond] = 0
                probas /= probas.sum(axis=1, keepdims=True)
            sample_ids = np.array([np.random.choice(len(p), p=p) for p in probas]).reshape((-1, 1))
            if topp is not None:
                sample_ids = np.take_along_axis(p_indices, sample_ids, axis=1)
            if topk is not None:
                sample_ids = np.take_along_axis(k_indices, sample_ids, axis=1)
            output_ids = np.concatenate([output_ids, sample_ids], 1)
            is_end = output_ids[:, -1] == self.end_id
            end_counts = (output_ids == self.end_id).sum(1)
            if output_ids.shape[1] >= self.minlen:
                finished = is_end & (end_counts >= min_ends)
                if finished.any():
                    results.extend(output_ids[finished])
                    inputs = [i[~finished] for i in inputs]
                    output_ids = output_ids[~finished]
                    if len(output_ids) == 0:
                        break
        results.extend(output_ids)
        return results
