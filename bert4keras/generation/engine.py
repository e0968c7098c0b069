"""The cached generation engine behind ``model.generate``.

Prompts are left-padded to a common length P, so every row's newest token sits in
the same cache slot: one scalar write index serves the batch, per-row positions
(slot - padding) feed absolute position embeddings, and the key padding mask hides
the padding slots. The caches have a fixed size, so one compiled step serves every
step; on JAX the whole loop runs inside one ``jit`` (``lax.while_loop``).
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import numpy as np
from keras import ops

from bert4keras.generation.sampling import (
    beam_candidates, filter_top_k, filter_top_p, sample_from_logits,
)


def _bucket(n: int) -> int:
    """Round a length up so that few distinct lengths reach the compiler (<= 25% padding)."""
    if n <= 16:
        return 16
    step = max(16, 2 ** (int(math.log2(n)) - 2))
    return -(-n // step) * step


class GenerationEngine:
    """Cached generation with a transformer's step model (see ``Transformer.build_cache_model``)."""

    def __init__(self, transformer, max_length: int):
        self.transformer = transformer
        self.max_length = max_length
        self.model = transformer.build_cache_model(max_length)
        self.encoder = getattr(transformer, "encoder", None)  # T5: run once per prompt batch
        self.cross_model = self.model.cross_model  # T5: cross-attention k/v, once per batch
        self.unilm = self.model.unilm
        self.vocab_size = transformer.vocab_size
        self._compiled = {}

    def variables(self) -> list:
        """Current weight values of the step model (and encoder), for ``stateless_call``."""
        models = [self.model] + [m for m in (self.encoder, self.cross_model) if m is not None]
        return [([v.value for v in m.trainable_variables],
                 [v.value for v in m.non_trainable_variables]) for m in models]

    @staticmethod
    def _call(model, variables, inputs):
        inputs = [ops.convert_to_tensor(x) for x in inputs]
        if variables is None:
            return model(inputs if len(inputs) > 1 else inputs[0], training=False)
        outputs, _ = model.stateless_call(variables[0], variables[1],
                                          inputs if len(inputs) > 1 else inputs[0], training=False)
        return outputs

    def _step(self, variables, feed: dict, caches):
        """One pass of the step model; ``feed`` holds its inputs by kind. Returns the last
        position's logits and the updated caches."""
        inputs = [feed[kind] for kind in self.model.input_kinds] + list(caches) \
            + feed.get("cross_caches", [])
        outputs = self._call(self.model, None if variables is None else variables[0], inputs)
        return ops.cast(outputs[0][:, -1], "float32"), list(outputs[1:])

    def _constants(self, variables, tokens, pad, prefix: int = 0):
        """The inputs that stay fixed over the steps: key mask, UniLM cache segments (the
        last ``prefix`` prompt tokens already belong to the answer), and for T5 the
        encoder output and its padding mask."""
        rows = ops.shape(tokens)[0]
        if self.encoder is not None:
            valid = ops.not_equal(tokens, 0)
            valid = ops.concatenate([ops.ones_like(valid[:, :1]), valid[:, 1:]], axis=1)
            context = self._call(self.encoder, None if variables is None else variables[1], [tokens])
            cross = self._call(self.cross_model, None if variables is None else variables[2], [context])
            return {"context": context, "context_mask": valid[:, None, :], "pad": pad,
                    "cross_caches": list(cross),
                    "key_mask": ops.ones((rows, self.max_length), "bool")}
        source_length = ops.shape(tokens)[1] - prefix
        segments = ops.cast(ops.arange(self.max_length) >= source_length, "int32")
        return {"key_mask": ops.arange(self.max_length)[None, :] >= pad[:, None], "pad": pad,
                "cache_segments": ops.broadcast_to(segments[None], (rows, self.max_length))}

    def _next(self, variables, constants: dict, token, index, caches):
        """Run one new token per row, written at cache slot ``index``."""
        feed = {**constants, "tokens": token, "index": index,
                "segments": ops.full(ops.shape(token), 1 if self.unilm else 0, dtype="int32"),
                "positions": index - constants["pad"]}
        return self._step(variables, feed, caches)

    def _prefill(self, variables, tokens, constants, caches):
        """Run the prompt (T5: the start token) through the step model at index 0."""
        if self.encoder is not None:
            tokens = ops.zeros((ops.shape(tokens)[0], 1), "int32")  # T5's start id
        segments = constants["cache_segments"][:, :ops.shape(tokens)[1]] if self.unilm \
            else ops.zeros_like(tokens)
        feed = {**constants, "tokens": tokens, "segments": segments,
                "index": ops.convert_to_tensor(0, "int32"), "positions": -constants["pad"]}
        return self._step(variables, feed, caches)

    def _choose(self, state, options, noise):
        """Pick step ``t``'s tokens from ``state['logits']`` and record them."""
        if options["num_beams"] > 1 or options["rules"] == "bert4keras" and not options["sample"]:
            if options["rules"] == "bert4keras":
                return self._choose_beams_bert4keras(state, options)
            return self._choose_beams(state, options)
        t, logits, finished = state["t"], state["logits"], state["finished"]
        end_id = options["end_id"]
        logits = self._block_end(logits, t, options) / options["temperature"]
        if options["sample"]:
            if options["top_k"] is not None:
                logits = filter_top_k(logits, options["top_k"])
            if options["top_p"] is not None:
                logits = filter_top_p(logits, options["top_p"])
            token = sample_from_logits(logits, noise(t, ops.shape(logits)))
        else:
            token = ops.argmax(logits, axis=-1)
        token = ops.where(finished, 0 if end_id is None else end_id, ops.cast(token, "int32"))
        state = {**state, "out": ops.slice_update(state["out"], (0, t), token[:, None])}
        if end_id is None:
            return state
        ended = ops.logical_and(token == end_id, ops.logical_not(finished))
        if options["rules"] != "bert4keras":
            return {**state, "finished": ops.logical_or(finished, ended)}
        # bert4keras: a row finishes at an end token once it is long enough and holds min_ends
        ends = state["ends"] + ops.cast(ended, "int32")
        complete = ops.logical_and(ops.logical_and(ended, ends >= options["min_ends"]),
                                   t + 1 >= options["min_length"])
        return {**state, "ends": ends, "finished": ops.logical_or(finished, complete),
                "stop": ops.where(complete, t, state["stop"])}

    def _block_end(self, logits, t, options):
        """HF's ``min_new_tokens``: the end token may not come before that many tokens."""
        end_id = options["end_id"]
        if end_id is None or not options["min_new_tokens"]:
            return logits
        blocked = ops.logical_and(t < options["min_new_tokens"], ops.arange(self.vocab_size) == end_id)
        return ops.where(blocked[None, :], -np.inf, logits)

    @staticmethod
    def _reorder(state, rows, keys):
        """Gather the beam rows ``rows`` of the caches and of the per-row ``keys``."""
        return {**state, "caches": [ops.take(c, rows, axis=0) for c in state["caches"]],
                **{k: ops.take(state[k], rows, axis=0) for k in keys}}

    def _choose_beams(self, state, options):
        """HF-like beam step: a finished beam keeps its score and repeats the end token."""
        t, finished, end_id, beams = state["t"], state["finished"], options["end_id"], options["num_beams"]
        logits = self._block_end(state["logits"], t, options) / options["temperature"]
        logprobs = ops.log_softmax(logits, axis=-1)
        if end_id is not None:
            frozen = ops.where(ops.arange(self.vocab_size) == end_id, 0.0, -np.inf)
            logprobs = ops.where(finished[:, None], frozen[None, :], logprobs)
        scores, beam, token = beam_candidates(state["scores"], logprobs, beams)
        rows = ops.reshape(ops.arange(ops.shape(scores)[0])[:, None] * beams + beam, (-1,))
        state = self._reorder({**state, "scores": scores}, rows, ("out", "finished"))
        token = ops.cast(ops.reshape(token, (-1,)), "int32")
        finished = state["finished"]
        if end_id is not None:
            finished = ops.logical_or(finished, token == end_id)
        return {**state, "out": ops.slice_update(state["out"], (0, t), token[:, None]),
                "finished": finished}

    def _choose_beams_bert4keras(self, state, options):
        """bert4keras 0.11.5's beam step, with static shapes. Before ``min_length`` the end
        token is an ordinary token. From then on, if the best beam ends (holding
        ``min_ends`` end tokens) it is the prompt's result; otherwise the ended beams leave
        and the beam narrows: ``width`` live beams per prompt, the others at -inf."""
        t, end_id, beams = state["t"], options["end_id"], options["num_beams"]
        logprobs = ops.log_softmax(state["logits"] / options["temperature"], axis=-1)
        scores, beam, token = beam_candidates(state["scores"], logprobs, beams)
        prompts = ops.shape(scores)[0]
        alive = ops.arange(beams)[None, :] < state["width"][:, None]  # keep the best `width`
        scores = ops.where(alive, scores, -np.inf)
        rows = ops.reshape(ops.arange(prompts)[:, None] * beams + beam, (-1,))
        state = self._reorder({**state, "scores": scores}, rows, ("out", "ends"))
        token = ops.cast(token, "int32")
        out = ops.slice_update(state["out"], (0, t), ops.reshape(token, (-1, 1)))
        ended = token == (-1 if end_id is None else end_id)
        ends = ops.reshape(state["ends"], (prompts, beams)) + ops.cast(ended, "int32")
        complete = ops.logical_and(ended, ends >= options["min_ends"])
        checked = t + 1 >= options["min_length"]
        best = ops.argmax(scores, axis=1)
        best_complete = ops.take_along_axis(complete, best[:, None], axis=1)[:, 0]
        stop = ops.logical_and(ops.logical_not(state["done"]), ops.logical_or(
            ops.logical_and(checked, best_complete), t + 1 >= options["max_new_tokens"]))
        best_out = ops.take(out, ops.arange(prompts) * beams + ops.cast(best, "int32"), axis=0)
        dropped = ops.logical_and(checked, complete)
        done = ops.logical_or(state["done"], stop)
        return {**state, "out": out, "ends": ops.reshape(ends, (-1,)),
                "scores": ops.where(dropped, -np.inf, scores),
                "width": ops.where(checked, ops.sum(ops.cast(ops.logical_and(
                    alive, ops.logical_not(dropped)), "int32"), axis=1), state["width"]),
                "result": ops.where(stop[:, None], best_out, state["result"]),
                "length": ops.where(stop, t + 1, state["length"]), "done": done,
                "finished": ops.repeat(done, beams, axis=0)}

    def _advance(self, variables, state, options, noise, prompt_length):
        """Feed step ``t``'s tokens through the model, then choose step ``t + 1``'s."""
        t = state["t"]
        token = ops.take(state["out"], t, axis=1)[:, None]
        logits, caches = self._next(variables, state["constants"], token, prompt_length + t,
                                    state["caches"])
        state = {**state, "t": t + 1, "logits": logits, "caches": caches}
        return self._choose(state, options, noise)

    def _start(self, variables, tokens, pad, options, noise):
        rows = ops.shape(tokens)[0]
        caches = [ops.zeros((rows,) + shape, dtype=self.model.outputs[1 + i].dtype)
                  for i, shape in enumerate(self.model.cache_shapes)]
        constants = self._constants(variables, tokens, ops.convert_to_tensor(pad, "int32"),
                                    options["prefix"])
        logits, caches = self._prefill(variables, tokens, constants, caches)
        beams = options["num_beams"]
        scores = ops.cast(ops.where(ops.arange(beams) == 0, 0.0, -np.inf), "float32")
        steps, prompts = options["max_new_tokens"], rows // beams
        state = {"t": ops.convert_to_tensor(0, "int32"), "logits": logits, "caches": caches,
                 "out": ops.zeros((rows, steps), "int32"),
                 "finished": ops.zeros((rows,), "bool"), "constants": constants,
                 "scores": ops.broadcast_to(scores[None], (prompts, beams))}
        if options["rules"] == "bert4keras":
            state.update(ends=ops.zeros((rows,), "int32"), stop=ops.full((rows,), steps, "int32"),
                         width=ops.full((prompts,), beams, "int32"),
                         done=ops.zeros((prompts,), "bool"),
                         result=ops.zeros((prompts, steps), "int32"),
                         length=ops.full((prompts,), steps, "int32"))
        return self._choose(state, options, noise)

    @staticmethod
    def _results(state) -> dict:
        return {k: state[k] for k in ("out", "stop", "result", "length") if k in state}

    def run(self, tokens, pad, options, seed, stream=False):
        """Generate for padded prompts (rows already repeated per beam). Returns numpy
        arrays by name: ``out``, the (rows, max_new_tokens) new ids, and under bert4keras's
        rules ``stop`` (the step where a sampled row finished) or ``result``/``length``
        (each prompt's chosen beam). With ``stream``, yields each step's ids instead."""
        prompt_length = 1 if self.encoder is not None else tokens.shape[1]
        if keras.backend.backend() == "jax":
            return self._run_jax(tokens, pad, options, seed, stream, prompt_length)
        import torch

        generator = torch.Generator().manual_seed(seed)
        noise = lambda t, shape: ops.convert_to_tensor(torch.rand(tuple(shape), generator=generator))

        def steps():
            with torch.no_grad():
                state = self._start(None, ops.convert_to_tensor(tokens), pad, options, noise)
                yield state
                while int(state["t"]) + 1 < options["max_new_tokens"] \
                        and not bool(ops.all(state["finished"])):
                    state = self._advance(None, state, options, noise, prompt_length)
                    yield state

        if stream:
            return (np.asarray(ops.convert_to_numpy(ops.take(s["out"], s["t"], axis=1)))
                    for s in steps())
        for state in steps():
            pass
        return {k: ops.convert_to_numpy(v) for k, v in self._results(state).items()}

    def _run_jax(self, tokens, pad, options, seed, stream, prompt_length):
        import jax

        key = jax.random.PRNGKey(seed)
        variables = self.variables()
        static = (prompt_length,) + tuple(sorted(options.items()))
        cond = lambda state: jax.numpy.logical_and(state["t"] + 1 < options["max_new_tokens"],
                                                   ~jax.numpy.all(state["finished"]))

        def noise_from(key):
            return lambda t, shape: jax.random.uniform(jax.random.fold_in(key, t), tuple(shape))

        if not stream:
            if static not in self._compiled:
                def loop(variables, key, tokens, pad):
                    noise = noise_from(key)
                    state = self._start(variables, tokens, pad, options, noise)
                    body = lambda s: self._advance(variables, s, options, noise, prompt_length)
                    return self._results(jax.lax.while_loop(cond, body, state))

                self._compiled[static] = jax.jit(loop)
            results = self._compiled[static](variables, key, tokens, pad)
            return {k: np.asarray(v) for k, v in results.items()}

        def generator():
            noise = noise_from(key)
            start = jax.jit(lambda v, x, p: self._start(v, x, p, options, noise))
            advance = jax.jit(lambda v, s: self._advance(v, s, options, noise, prompt_length))
            state = start(variables, tokens, pad)
            yield np.asarray(state["out"][:, int(state["t"])])
            while bool(cond(state)):
                state = advance(variables, state)
                yield np.asarray(state["out"][:, int(state["t"])])

        return generator()


def generate(model, inputs: Sequence[Sequence[int]], max_new_tokens: int, *, num_beams: int = 1,
             top_k: int | None = None, top_p: float | None = None, temperature: float = 1.0,
             end_id: int | None = None, min_new_tokens: int = 0, seed: int | None = None,
             stream: bool = False):
    """New token ids for each prompt of ``inputs`` (lists of ids, any lengths), with a cache.

    Greedy by default; ``top_k``/``top_p``/``temperature`` sample (seeded by ``seed``);
    ``num_beams > 1`` runs beam search (scores are summed log-probabilities, no length
    penalty; finished beams keep their score). Generation stops at ``end_id`` (kept in
    the output) or after ``max_new_tokens``. With ``stream=True`` yields, per step, a
    list with each prompt's new id (None once a prompt has finished).
    """
    sample = top_k is not None or top_p is not None or seed is not None
    if num_beams > 1 and (sample or stream):
        raise ValueError("generate: beam search (num_beams > 1) neither samples nor streams")
    options = {"num_beams": num_beams, "sample": sample, "top_k": top_k, "top_p": top_p,
               "temperature": temperature, "end_id": end_id, "min_new_tokens": min_new_tokens,
               "rules": "hf", "min_length": 0, "min_ends": 1, "prefix": 0}
    result = run_engine(model, inputs, max_new_tokens, options, seed, stream)
    if stream:
        return _stream_ids(result, end_id)
    return [_until_end(row, end_id) for row in result["out"][::num_beams]]


def run_engine(model, inputs: Sequence[Sequence[int]], max_new_tokens: int, options: dict,
               seed: int | None = None, stream: bool = False):
    """Check ``inputs`` and ``options``, pad and batch the prompts, and run the cached engine
    of ``model`` (see :meth:`GenerationEngine.run` for what comes back)."""
    transformer = getattr(model, "transformer", None)
    if transformer is None:
        raise ValueError(f"model {getattr(model, 'name', model)!r} has no Transformer behind it: "
                         "build it with build_transformer_model to use generate()")
    prompts = [list(map(int, p)) for p in inputs]
    vocab = transformer.vocab_size
    num_beams, top_k, top_p = options["num_beams"], options["top_k"], options["top_p"]
    end_id, temperature = options["end_id"], options["temperature"]
    if not prompts:
        raise ValueError("generate: no prompts given")
    if max_new_tokens < 1:
        raise ValueError(f"generate: max_new_tokens must be >= 1, got {max_new_tokens}")
    if num_beams < 1:
        raise ValueError(f"generate: num_beams must be >= 1, got {num_beams}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")
    if top_k is not None and not 1 <= top_k <= vocab:
        raise ValueError(f"generate: top_k must be in [1, {vocab}] (the vocabulary size), got {top_k}")
    if end_id is not None and not 0 <= end_id < vocab:
        raise ValueError(f"generate: end_id {end_id} is outside the vocabulary [0, {vocab})")
    if temperature <= 0:
        raise ValueError(f"generate: temperature must be > 0, got {temperature}")
    if options["min_ends"] < 1:
        raise ValueError(f"generate: min_ends must be >= 1, got {options['min_ends']}")
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"generate: prompt {i} is empty and this model has no start id")
        bad = [t for t in p if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"generate: prompt {i} holds token id {bad[0]}, outside the "
                             f"vocabulary [0, {vocab})")
    longest = max(map(len, prompts))
    table = _position_table_size(transformer)
    if table is not None and longest + max_new_tokens > table:
        raise ValueError(f"generate: the longest prompt ({longest} tokens) + max_new_tokens "
                         f"({max_new_tokens}) = {longest + max_new_tokens} exceeds the "
                         f"{table} positions of this model")
    length = _bucket(longest)
    encoder_decoder = getattr(transformer, "encoder", None) is not None
    tokens = np.zeros((len(prompts), length), "int32")
    for i, p in enumerate(prompts):  # the encoder's input is right-padded, a decoder's left-padded
        tokens[i, slice(0, len(p)) if encoder_decoder else slice(length - len(p), None)] = p
    pad = (length - np.array([len(p) for p in prompts])).astype("int32")
    if encoder_decoder:
        pad = np.zeros_like(pad)
    tokens, pad = np.repeat(tokens, num_beams, axis=0), np.repeat(pad, num_beams, axis=0)
    engines = transformer.__dict__.setdefault("generation_engines", {})
    max_length = max_new_tokens if encoder_decoder else length + max_new_tokens
    if max_length not in engines:
        engines[max_length] = GenerationEngine(transformer, max_length)
    options = {**options, "max_new_tokens": max_new_tokens, "temperature": float(temperature)}
    return engines[max_length].run(tokens, pad, options, 0 if seed is None else seed, stream)


def _until_end(row, end_id) -> list[int]:
    row = [int(t) for t in row]
    return row[:row.index(end_id) + 1] if end_id in row else row


def _stream_ids(steps, end_id):
    finished = None
    for ids in steps:
        ids = [int(t) for t in ids]
        if finished is None:
            finished = [False] * len(ids)
        yield [None if done else t for t, done in zip(ids, finished)]
        finished = [done or t == end_id for t, done in zip(ids, finished)]


def _position_table_size(transformer) -> int | None:
    layer = transformer.layers.get(transformer.prefixed("Embedding-Position"))
    if layer is None or getattr(layer, "hierarchical", None) or not hasattr(layer, "input_dim"):
        return None
    return layer.input_dim
