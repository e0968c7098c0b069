"""Generation: ``AutoRegressiveDecoder`` (bert4keras 0.11.5's beam search and sampling),
the layers' step-wise cache, and the cached engine behind ``model.generate``."""

import itertools

import keras
import numpy as np
import pytest

from bert4keras.generation import AutoRegressiveDecoder, LastTokenModel, softmax
from bert4keras.models import build_transformer_model
from bert4keras.snippets import AutoRegressiveDecoder as SnippetsDecoder

np_ = keras.ops.convert_to_numpy
V = 6  # toy vocabulary


def toy_table(seed=0, steps=8):
    """Next-token log-probabilities depending on (output length, last token, input id)."""
    rng = np.random.default_rng(seed)
    return np.log(softmax(rng.normal(size=(steps + 1, V + 1, 3, V)) * 2.0))


class ToyDecoder(AutoRegressiveDecoder):
    """A decoder whose ``predict`` reads a fixed table of next-token distributions."""

    def __init__(self, table, rtype="probas", **kwargs):
        super().__init__(**kwargs)
        self.table = table
        self.calls = []
        wrapped = AutoRegressiveDecoder.wraps(default_rtype=rtype)(ToyDecoder._scores)
        self.predict = wrapped.__get__(self)
        self.rtype = rtype

    def _scores(self, inputs, output_ids, states):
        self.calls.append(output_ids.shape)
        last = output_ids[:, -1] if output_ids.shape[1] else np.full(len(output_ids), V)
        logp = self.table[output_ids.shape[1], last, inputs[0][:, 0]]
        return logp if self.rtype == "logits" else np.exp(logp)


def sequence_logp(table, x, ids, start=None):
    prefix = [] if start is None else [start]
    total = 0.0
    for t, token in enumerate(ids):
        out = prefix + list(ids[:t])
        last = out[-1] if out else V
        total += table[len(out), last, x, token]
    return total


def reference_beam(table, x, topk, maxlen, end_id=None, start=None, minlen=1, min_ends=1):
    """Plain-Python beam search with bert4keras's stopping rule, by sorting."""
    prefix = [] if start is None else [start]
    beams = [(0.0, prefix)]
    for step in range(maxlen):
        candidates = []
        for score, ids in beams:
            last = ids[-1] if ids else V
            logp = np.log(np.exp(table[len(ids), last, x]) + 1e-12)
            candidates += [(score + logp[t], ids + [t]) for t in range(V)]
        candidates.sort(key=lambda c: -c[0])
        beams = candidates[:topk]
        if len(beams[0][1]) >= minlen:
            finished = [ids[-1] == end_id and ids.count(end_id) >= min_ends for _, ids in beams]
            if finished[0]:
                return beams[0][1]
            beams = [b for b, f in zip(beams, finished) if not f]
            topk = len(beams)
    return beams[0][1]


def test_snippets_reexports_the_decoder():
    assert SnippetsDecoder is AutoRegressiveDecoder


@pytest.mark.parametrize("rtype", ["probas", "logits"])
def test_beam_search_is_exhaustive_when_the_beam_covers_every_candidate(rtype):
    table = toy_table(1)
    decoder = ToyDecoder(table, rtype, start_id=None, end_id=None, maxlen=2)
    got = list(decoder.beam_search([[1]], topk=V))
    best = max(itertools.product(range(V), repeat=2), key=lambda ids: sequence_logp(table, 1, ids))
    assert got == list(best)


@pytest.mark.parametrize("seed,topk,start,end_id,minlen,min_ends", [
    (2, 2, None, None, 1, 1), (3, 3, 0, 2, 1, 1), (4, 2, 0, 3, 4, 1), (5, 3, None, 1, 1, 2),
])
def test_beam_search_equals_a_reference_beam(seed, topk, start, end_id, minlen, min_ends):
    table = toy_table(seed)
    for x in range(3):
        decoder = ToyDecoder(table, start_id=start, end_id=end_id, maxlen=6, minlen=minlen)
        got = decoder.beam_search([[x]], topk=topk, min_ends=min_ends)
        want = reference_beam(table, x, topk, 6, end_id, start, minlen, min_ends)
        assert list(got) == want


def test_beam_search_stops_at_the_end_token_and_respects_minlen():
    table = np.full((9, V + 1, 3, V), np.log(0.01))
    table[..., 2] = np.log(0.95)  # the end token is always the most probable
    decoder = ToyDecoder(table, start_id=None, end_id=2, maxlen=8)
    assert list(decoder.beam_search([[0]], topk=2)) == [2]
    decoder = ToyDecoder(table, start_id=None, end_id=2, maxlen=8, minlen=3)
    out = list(decoder.beam_search([[0]], topk=2))
    assert len(out) == 3 and out[-1] == 2
    decoder = ToyDecoder(table, start_id=None, end_id=2, maxlen=8)
    assert list(decoder.beam_search([[0]], topk=2, min_ends=3)) == [2, 2, 2]
    decoder = ToyDecoder(table, start_id=None, end_id=2, maxlen=2)
    assert len(decoder.beam_search([[0]], topk=2, min_ends=5)) == 2  # maxlen wins


def test_temperature_sharpens_probas_and_logits_alike():
    table = toy_table(6)
    for rtype in ("probas", "logits"):
        decoder = ToyDecoder(table, rtype, start_id=None, end_id=None, maxlen=1)
        probas, _ = decoder.predict([np.array([[0]])], np.empty((1, 0), int), None, 0.5, "probas")
        want = softmax(table[0, V, 0] / 0.5)
        np.testing.assert_allclose(probas[0], want, rtol=1e-6)


def test_random_sample_is_reproducible_under_np_random_seed():
    table = toy_table(7)
    decoder = ToyDecoder(table, start_id=None, end_id=1, maxlen=6)
    np.random.seed(123)
    first = decoder.random_sample([[2]], n=5, topk=4)
    np.random.seed(123)
    second = decoder.random_sample([[2]], n=5, topk=4)
    assert [list(a) for a in first] == [list(b) for b in second]
    assert len(first) == 5


def sampled_frequencies(probas, n, **kwargs):
    table = np.zeros((9, V + 1, 3, V))
    table[0, V, 0] = np.log(probas)
    decoder = ToyDecoder(table, start_id=None, end_id=None, maxlen=1)
    np.random.seed(0)
    samples = np.array(decoder.random_sample([[0]], n=n, **kwargs))[:, 0]
    return np.bincount(samples, minlength=V) / n


def test_random_sample_topk_and_topp_truncate_the_distribution():
    probas = np.array([0.05, 0.4, 0.25, 0.15, 0.1, 0.05])
    freq = sampled_frequencies(probas, 4000, topk=2)
    assert set(np.flatnonzero(freq)) == {1, 2}
    np.testing.assert_allclose(freq[[1, 2]], [0.4 / 0.65, 0.25 / 0.65], atol=0.03)
    freq = sampled_frequencies(probas, 4000, topp=0.7)  # 0.4 + 0.25 < 0.7: 0.15 is in too
    assert set(np.flatnonzero(freq)) == {1, 2, 3}
    np.testing.assert_allclose(freq[[1, 2, 3]], np.array([0.4, 0.25, 0.15]) / 0.8, atol=0.03)
    freq = sampled_frequencies(probas, 4000, topk=3, topp=0.6)  # renormalised: 0.5, 0.31, 0.19
    assert set(np.flatnonzero(freq)) == {1, 2}
    freq = sampled_frequencies(probas, 4000)
    np.testing.assert_allclose(freq, probas, atol=0.03)


def test_random_sample_min_ends_and_minlen():
    table = np.full((9, V + 1, 3, V), np.log(0.5 / (V - 1)))
    table[..., 3] = np.log(0.5)
    np.random.seed(1)
    decoder = ToyDecoder(table, start_id=0, end_id=3, maxlen=8, minlen=3)
    for ids in decoder.random_sample([[0]], n=20, min_ends=2):
        ids = list(ids)
        assert ids[0] == 0 and len(ids) <= 9
        if len(ids) < 9:  # finished before maxlen: ends with its second end token
            assert ids[-1] == 3 and ids.count(3) == 2 and len(ids) >= 3


def test_invalid_arguments_are_rejected():
    decoder = ToyDecoder(toy_table(), start_id=None, end_id=None, maxlen=2)
    with pytest.raises(ValueError, match="topp"):
        decoder.random_sample([[0]], n=1, topp=1.5)
    with pytest.raises(ValueError, match="default_rtype"):
        AutoRegressiveDecoder.wraps("scores")
    with pytest.raises(NotImplementedError):
        AutoRegressiveDecoder(None, None, 2).predict([], None)


# ------------------------------------------------------------------ a real UniLM model

UNILM = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=32, max_position=64)


class UniLMDecoder(AutoRegressiveDecoder):
    """The autotitle example's decoder: source in segment 0, the answer in segment 1."""

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return self.last_token(self.model).predict([token_ids, segment_ids])


@pytest.fixture(scope="module")
def unilm_model():
    keras.utils.set_random_seed(0)
    return build_transformer_model(model="bert", application="unilm", with_mlm=True, **UNILM)


def test_last_token_equals_the_full_forward_pass(unilm_model):
    rng = np.random.default_rng(0)
    last = LastTokenModel(unilm_model)
    for length, batch in ((21, 3),):
        tokens = rng.integers(1, 40, (batch, length))
        segments = (np.arange(length) >= length // 2).astype(int)[None].repeat(batch, 0)
        want = np_(unilm_model([tokens, segments], training=False))[:, -1]
        np.testing.assert_allclose(last.predict([tokens, segments]), want, rtol=1e-5, atol=1e-6)


def test_beam_search_on_a_tiny_unilm_bert(unilm_model):
    source = [2, 11, 12, 13, 3]
    decoder = UniLMDecoder(unilm_model, start_id=None, end_id=3, maxlen=4)
    got = decoder.beam_search([source, [0] * len(source)], topk=3)
    # the same search with the model run directly, unpadded, through predict
    direct = UniLMDecoder(unilm_model, start_id=None, end_id=3, maxlen=4)
    direct.last_token = lambda model: _PlainLastToken(model)
    assert list(got) == list(direct.beam_search([source, [0] * len(source)], topk=3))
    np.random.seed(3)
    samples = decoder.random_sample([source, [0] * len(source)], n=3, topk=5)
    np.random.seed(3)
    assert [list(s) for s in samples] == [
        list(s) for s in direct.random_sample([source, [0] * len(source)], n=3, topk=5)]


class _PlainLastToken:
    """0.11.5's ``last_token``: the whole model on the unpadded input, last position kept."""

    def __init__(self, model):
        self.model = model

    def predict(self, x):
        return np_(self.model(x, training=False))[:, -1]


# ------------------------------------------------------------------ the layers' step-wise cache

from bert4keras.layers import (  # noqa: E402
    CausalMask, MultiHeadAttention, PositionEmbedding, RelativePositionEmbedding,
    RelativePositionEmbeddingT5, SinusoidalPositionEmbedding, TalkingHeadsAttention, UniLMMask,
)

N, PREFILL = 7, 3  # sequence length = cache size; the first PREFILL tokens in one step


def steps():
    """(start, stop) of a prefill step and then single-token steps."""
    return [(0, PREFILL)] + [(t, t + 1) for t in range(PREFILL, N)]


def test_causal_mask_steps_are_rows_of_the_full_mask():
    ids = np.ones((2, N), "int32")
    full = np_(CausalMask()(ids))
    for a, b in steps():
        got = np_(CausalMask()(ids[:, a:b], q_offset=a, k_len=N))
        np.testing.assert_array_equal(got, full[:, a:b])


def test_unilm_mask_steps_are_rows_of_the_full_mask():
    segments = np.array([[0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1, 1]])
    full = np_(UniLMMask()(segments))
    for a, b in steps():
        got = np_(UniLMMask()(segments[:, a:b], q_offset=a, k_segment_ids=segments))
        np.testing.assert_array_equal(got, full[:, a:b])
    assert not full[0, 3, 4] and full[0, 0, 2]  # causal target, bidirectional source


def test_key_padding_masks_keys_and_keeps_a_padding_query_on_itself():
    key_mask = np.array([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]], bool)
    causal = np_(CausalMask()(np.ones((2, N)), key_mask=key_mask))
    want = np.tril(np.ones((N, N), bool))[None].repeat(2, 0)
    want[0, 2:, :2] = want[0, :2, 2:] = False
    np.testing.assert_array_equal(causal, want)
    segments = np.array([[0, 0, 0, 0, 1, 1, 1]] * 2)
    unilm = np_(UniLMMask()(segments[:, 4:5], q_offset=4, k_segment_ids=segments, key_mask=key_mask))
    np.testing.assert_array_equal(unilm[:, 0], [[0, 0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0, 0]])


@pytest.mark.parametrize("merge_mode", ["add", "zero", "concat"])
def test_position_embeddings_start_at_the_offset(merge_mode):
    x = np.random.default_rng(0).normal(size=(2, N, 4)).astype("float32")
    for layer in (PositionEmbedding(N, 4, merge_mode, embeddings_initializer="normal"),
                  SinusoidalPositionEmbedding(4, merge_mode)):
        full = np.broadcast_to(np_(layer(x)), (2, N, 8 if merge_mode == "concat" else 4))
        for a, b in steps():
            got = np.broadcast_to(np_(layer(x[:, a:b], q_offset=a)), full[:, a:b].shape)
            np.testing.assert_allclose(got, full[:, a:b], rtol=1e-6, atol=1e-6)
        # one offset per row (left-padded batches): row r starts at position r + 1
        shifted = np.stack([x[0, 1:3], x[1, 2:4]])
        got = np_(layer(shifted, q_offset=np.array([1, 2])))
        np.testing.assert_allclose(got, np.stack([full[0, 1:3], full[1, 2:4]]), rtol=1e-6, atol=1e-6)


def test_relative_position_embeddings_with_a_query_offset():
    x = np.zeros((1, N, 4), "float32")
    for layer, call in ((RelativePositionEmbedding(9, 4, embeddings_initializer="normal"), {}),
                        (RelativePositionEmbeddingT5(8, 2, 6, bidirectional=False,
                                                     embeddings_initializer="normal"), {})):
        full = np_(layer([x, x]))
        for a, b in steps():
            got = np_(layer([x[:, a:b], x[:, a:b]], q_offset=a, k_len=N, **call))
            np.testing.assert_allclose(got, full[a:b])


def full_and_cached_attention(layer_cls, p_bias, talking=False, seed=0):
    """The attention of a causal sequence in one call, and the same computed step by step
    with a fixed-size cache (a prefill step, then one token per step)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, N, 8)).astype("float32")
    keras.utils.set_random_seed(seed)
    layer = layer_cls(heads=2, head_size=4, **({"num_mixtures": 3} if talking else {}))

    def extras(a, b):
        bias = CausalMask()(x[:, a:b, 0], q_offset=a, k_len=N)
        if p_bias == "rotary":
            return [bias, SinusoidalPositionEmbedding(4, "zero")(x[:, a:b], q_offset=a)]
        if p_bias == "typical_relative":
            return [bias, relative([x[:, a:b], x[:, a:b]], q_offset=a, k_len=N)]
        if p_bias == "t5_relative":
            return [bias, t5([x[:, a:b], x[:, a:b]], q_offset=a, k_len=N)]
        return [bias]

    relative = RelativePositionEmbedding(9, 4, embeddings_initializer="normal")
    t5 = RelativePositionEmbeddingT5(8, 2, 6, bidirectional=False, embeddings_initializer="normal")
    full = np_(layer([x, x, x] + extras(0, N), a_bias=True, p_bias=p_bias))
    cache = [np.zeros((2, N, 2, 4), "float32")] * 2
    outputs = []
    for a, b in steps():
        o, cache = layer([x[:, a:b]] * 3 + extras(a, b), a_bias=True, p_bias=p_bias,
                         cache=cache, cache_index=a)
        outputs.append(np_(o))
    return full, np.concatenate(outputs, axis=1)


@pytest.mark.parametrize("p_bias", [None, "rotary", "typical_relative", "t5_relative"])
def test_cached_attention_equals_the_full_computation(p_bias):
    full, cached = full_and_cached_attention(MultiHeadAttention, p_bias)
    np.testing.assert_allclose(cached, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("p_bias", [None, "rotary"])
def test_cached_talking_heads_attention_equals_the_full_computation(p_bias):
    full, cached = full_and_cached_attention(TalkingHeadsAttention, p_bias, talking=True)
    np.testing.assert_allclose(cached, full, rtol=1e-5, atol=1e-5)


def test_static_cache_serves_cross_attention():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, N, 8)).astype("float32")
    c = rng.normal(size=(2, 5, 8)).astype("float32")
    layer = MultiHeadAttention(heads=2, head_size=4)
    full = np_(layer([x, c, c]))
    k = keras.ops.reshape(layer.k_dense(c), (2, 5, 2, 4))
    v = keras.ops.reshape(layer.v_dense(c), (2, 5, 2, 4))
    for t in range(N):
        o, cache = layer([x[:, t:t + 1], c, c], cache=[k, v])
        np.testing.assert_allclose(np_(o)[:, 0], full[:, t], rtol=1e-5, atol=1e-5)
        assert cache[0] is k


# ------------------------------------------------------------------ the cached engine

from bert4keras.generation import GenerationEngine, stream_text  # noqa: E402

TINY = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position=32)
DECODERS = [("gpt", "lm"), ("gpt2", "lm"), ("gpt2_ml", "lm")] + [
    (name, application) for name in ("bert", "albert", "nezha", "roformer", "roformer_v2")
    for application in ("lm", "unilm")]


def build_decoder(name, application):
    keras.utils.set_random_seed(0)
    kwargs = dict(TINY, initializer_range=0.2) if name.startswith("gpt") else dict(TINY)
    if name.startswith("gpt"):
        return build_transformer_model(model=name, final_activation="linear",
                                       return_keras_model=False, **TINY)
    return build_transformer_model(model=name, application=application, with_mlm="linear",
                                   return_keras_model=False, **kwargs)


def full_logits(transformer, ids, source_length, unilm):
    """The whole model on one unpadded sequence (the source is segment 0)."""
    ids = np.array([ids])
    inputs = [ids]
    if len(transformer.inputs) > 1:
        segments = (np.arange(ids.shape[1]) >= source_length).astype("int32")[None]
        inputs.append(segments if unilm else np.zeros_like(ids))
    return np_(transformer.model(inputs, training=False))[0]


def cached_logits(engine, tokens, pad, continuation):
    """The prefill's last logits, then each continuation token's, from the step model."""
    constants = engine._constants(None, keras.ops.convert_to_tensor(tokens),
                                  keras.ops.convert_to_tensor(pad))
    caches = [np.zeros((len(tokens),) + s, "float32") for s in engine.model.cache_shapes]
    logits, caches = engine._prefill(None, keras.ops.convert_to_tensor(tokens), constants, caches)
    got = [np_(logits)]
    first = 1 if engine.encoder is not None else tokens.shape[1]
    for t in range(continuation.shape[1]):
        logits, caches = engine._next(None, constants, continuation[:, t:t + 1], first + t,
                                      [np_(c) for c in caches])
        got.append(np_(logits))
    return np.stack(got, axis=1)


def assert_close_to_logit_scale(got, want):
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("name,application", DECODERS)
def test_cached_steps_equal_the_full_forward_pass(name, application):
    """Left-padded prompts of different lengths in one batch: the prefill's last logits and
    every step's logits equal the full model's on each unpadded sequence."""
    transformer = build_decoder(name, application)
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    continuation = np.array([[14, 15, 16], [17, 18, 19]], "int32")
    tokens = np.array([[5, 6, 7, 8, 9, 10], [0, 0, 0, 11, 12, 13]], "int32")
    engine = GenerationEngine(transformer, 9)
    got = cached_logits(engine, tokens, np.array([0, 3], "int32"), continuation)
    for i, p in enumerate(prompts):
        full = full_logits(transformer, p + list(continuation[i]), len(p), application == "unilm")
        assert_close_to_logit_scale(got[i], full[len(p) - 1:len(p) + 3])


@pytest.mark.parametrize("version", ["t5.1.0", "mt5.1.1"])
def test_cached_t5_steps_equal_the_full_forward_pass(version):
    keras.utils.set_random_seed(0)
    t5 = build_transformer_model(model=version, with_lm="linear", return_keras_model=False,
                                 **dict(TINY, hidden_act=["gelu_tanh", "linear"]
                                        if version != "t5.1.0" else "relu"))
    sources = np.array([[5, 6, 7, 8, 9], [11, 12, 13, 0, 0]], "int32")
    continuation = np.array([[14, 15, 16], [17, 18, 19]], "int32")
    engine = GenerationEngine(t5, 4)
    got = cached_logits(engine, sources, np.zeros(2, "int32"), continuation)
    decoder_ids = np.concatenate([np.zeros((2, 1), "int32"), continuation], axis=1)
    for i in range(2):
        source = sources[i:i + 1, :np.count_nonzero(sources[i])]
        full = np_(t5.model([source, decoder_ids[i:i + 1]], training=False))[0]
        assert_close_to_logit_scale(got[i], full)


def test_t5_cross_attention_keys_and_values_are_projected_once(monkeypatch):
    """The cross-attention k/v of the encoder output are a static cache: projected once per
    batch of prompts, never in a decoding step; self-attention projects at every step."""
    from bert4keras.layers.attention import AttentionStep

    keras.utils.set_random_seed(0)
    t5 = build_transformer_model(model="t5.1.0", with_lm="linear", return_keras_model=False,
                                 **dict(TINY, hidden_act="relu"))
    engine = GenerationEngine(t5, 4)
    steps = [layer for layer in engine.model.layers if isinstance(layer, AttentionStep)]
    cross = [s.attention for s in steps if s.name.endswith("-Cross-Step")]
    self_attention = [s.attention for s in steps if not s.name.endswith("-Cross-Step")]
    assert len(cross) == len(self_attention) == TINY["num_hidden_layers"]
    assert len(engine.cross_model.outputs) == 2 * len(cross)
    calls = {}
    dense_class = type(cross[0].q_dense)  # the projections' own class (bert4keras's Dense)
    dense_call = dense_class.call

    def counting_call(self, *args, **kwargs):
        calls[id(self)] = calls.get(id(self), 0) + 1
        return dense_call(self, *args, **kwargs)

    monkeypatch.setattr(dense_class, "call", counting_call)
    sources = np.array([[5, 6, 7, 8, 9], [11, 12, 13, 0, 0]], "int32")
    cached_logits(engine, sources, np.zeros(2, "int32"), np.array([[14, 15], [17, 18]], "int32"))
    for layer in cross:  # the prefill and 2 steps: 3 step-model calls
        assert [calls.get(id(d), 0) for d in (layer.q_dense, layer.k_dense, layer.v_dense)] == [3, 1, 1]
    for layer in self_attention:
        assert [calls.get(id(d), 0) for d in (layer.q_dense, layer.k_dense, layer.v_dense)] == [3, 3, 3]


def greedy_reference(transformer, prompt, steps, unilm):
    ids = list(prompt)
    for _ in range(steps):
        ids.append(int(full_logits(transformer, ids, len(prompt), unilm)[-1].argmax()))
    return ids[len(prompt):]


@pytest.mark.parametrize("name,application", [("gpt2", "lm"), ("roformer", "unilm")])
def test_generate_greedy_equals_the_uncached_loop(name, application):
    transformer = build_decoder(name, application)
    prompts = [[5, 6, 7, 8, 9], [3, 4], [10, 11, 12, 13, 14, 15, 16]]
    got = transformer.model.generate(prompts, 5)
    assert got == [greedy_reference(transformer, p, 5, application == "unilm") for p in prompts]
    # sampling is reproducible under a seed, and top_k=1 is greedy
    assert transformer.model.generate(prompts, 5, top_k=1, seed=3) == got
    a = transformer.model.generate(prompts, 5, top_k=8, seed=7)
    assert a == transformer.model.generate(prompts, 5, top_k=8, seed=7)
    # streaming gives the same ids, step by step; an end id stops a prompt
    steps = list(transformer.model.generate(prompts, 5, stream=True))
    assert [list(s) for s in zip(*steps)] == got
    end = got[0][1]
    ended = transformer.model.generate(prompts, 5, end_id=end)
    assert ended[0] == got[0][:got[0].index(end) + 1]


def test_unilm_engine_equals_the_uncached_decoder(unilm_model):
    transformer = unilm_model.transformer
    source = [2, 11, 12, 13, 3]
    for topk in (1, 4):
        decoder = UniLMDecoder(unilm_model, start_id=None, end_id=None, maxlen=5)
        want = list(decoder.beam_search([source, [0] * len(source)], topk=topk))
        assert transformer.model.generate([source], 5, num_beams=topk) == [want]


def test_generate_rejects_bad_input_with_the_numbers():
    model = build_decoder("gpt2", "lm").model
    with pytest.raises(ValueError, match="30.*5.*35.*32"):
        model.generate([[1] * 30], 5)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        model.generate([[1], []], 2)
    with pytest.raises(ValueError, match="num_beams must be >= 1, got 0"):
        model.generate([[1]], 2, num_beams=0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], got 1.5"):
        model.generate([[1]], 2, top_p=1.5)
    with pytest.raises(ValueError, match=r"top_k must be in \[1, 40\].*got 41"):
        model.generate([[1]], 2, top_k=41)
    with pytest.raises(ValueError, match="end_id 40 is outside"):
        model.generate([[1]], 2, end_id=40)
    encoder = build_transformer_model(model="bert", **TINY)
    with pytest.raises(ValueError, match="not a decoder"):
        encoder.generate([[1, 2]], 2)


class _WordPieces:
    vocab = ["[PAD]", "un", "##able", "cat", "##s", "好", "a"]

    def id_to_token(self, i):
        return self.vocab[i]

    def decode(self, ids):
        text = ""
        for t in ids:
            piece = self.vocab[t]
            text += piece[2:] if piece.startswith("##") else (" " if text else "") + piece
        return text


def test_stream_text_never_cuts_a_word():
    stream = [[1], [2], [3], [4], [None]]
    pieces = [p[0] for p in stream_text(iter(stream), _WordPieces())]
    assert "".join(pieces) == "unable cats"
    assert pieces == ["", "", "unable", "", "", " cats"]  # whole words only
    stream = [[5], [5], [6], [None]]
    assert [p[0] for p in stream_text(iter(stream), _WordPieces())] == ["", "好", " 好", "", " a"]


class LMDecoder(AutoRegressiveDecoder):
    """A GPT's decoder: the prompt, then the output so far."""

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        return self.last_token(self.model).predict(np.concatenate([inputs[0], output_ids], 1))


def end_biased_decoder(name, source):
    """A tiny UniLM BERT (its end token's logit raised) or GPT-2 (the end token is its
    greedy first token after ``source``), so that ends come before ``minlen`` and often."""
    keras.utils.set_random_seed(0)
    if name == "unilm":
        end = 7
        model = build_transformer_model(model="bert", application="unilm", with_mlm=True, **UNILM)
        bias = model.get_layer("MLM-Bias")
        bias.set_weights([bias.get_weights()[0] + 0.4 * (np.arange(40) == end)])
        return model, end, UniLMDecoder, lambda source: [source, [0] * len(source)]
    model = build_transformer_model(model="gpt2", **dict(TINY, max_position=64))
    first = LMDecoder(model, start_id=None, end_id=None, maxlen=1).beam_search([source], topk=1)
    return model, int(first[0]), LMDecoder, lambda source: [source]


@pytest.mark.parametrize("name", ["unilm", "gpt2"])
def test_cached_beam_search_gives_the_ids_of_beam_search(name):
    """bert4keras's rules in the engine: before minlen the end token is ordinary; then the
    search returns the best beam once it ends with min_ends ends, else ended beams leave."""
    source = [2, 11, 12, 13, 3]
    model, end, decoder_class, make_inputs = end_biased_decoder(name, source)
    early_ends = 0
    for topk, minlen, min_ends, start_id in [(3, 1, 1, None), (3, 4, 1, None), (4, 3, 2, None),
                                            (1, 5, 1, None), (3, 3, 1, 9)]:
        decoder = decoder_class(model, start_id=start_id, end_id=end, maxlen=8, minlen=minlen)
        want = decoder.beam_search(make_inputs(source), topk=topk, min_ends=min_ends)
        got = decoder.cached_beam_search(model, source, topk=topk, min_ends=min_ends)
        assert got.tolist() == want.tolist(), (topk, minlen, min_ends, start_id)
        early_ends += end in want.tolist()[:-1]
    assert early_ends >= 1  # the end token did come early, as an ordinary token


def test_cached_random_sample_follows_the_end_rules():
    source = [2, 11, 12, 13, 3]
    model, end, decoder_class, _ = end_biased_decoder("unilm", source)
    decoder = decoder_class(model, start_id=None, end_id=end, maxlen=8, minlen=3)
    samples = [s.tolist() for s in decoder.cached_random_sample(model, source, 8, topk=6,
                                                                min_ends=2, seed=1)]
    assert samples == [s.tolist() for s in decoder.cached_random_sample(model, source, 8, topk=6,
                                                                        min_ends=2, seed=1)]
    finished = [s for s in samples if s[-1] == end and s.count(end) >= 2 and len(s) >= 3]
    assert finished and samples[:len(finished)] == finished  # the finished ones come first
    assert [len(s) for s in finished] == sorted(len(s) for s in finished)  # in finishing order
    for s in samples:  # a sample stops at its first end token that is late enough and counted
        firsts = [i for i in range(len(s)) if s[i] == end and i + 1 >= 3 and s[:i + 1].count(end) >= 2]
        assert len(s) == (firsts[0] + 1 if firsts else 8)
    assert any(end in s[:-1] for s in samples)  # an end that did not finish a sample


@pytest.fixture(scope="module")
def hf_gpt2(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                     initializer_range=0.2, bos_token_id=None, eos_token_id=None)
    hf = transformers.GPT2LMHeadModel(config).eval()
    path = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(path)
    ours = build_transformer_model(str(path / "config.json"), str(path), model="gpt2",
                                   final_activation="linear")
    return hf, ours


@pytest.mark.parametrize("num_beams", [1, 4])
def test_generate_equals_hf_generate_on_gpt2(hf_gpt2, num_beams):
    import torch

    hf, ours = hf_gpt2
    prompts = [[5, 6, 7, 8, 9, 10, 11], [3, 4, 30]]
    got = ours.generate(prompts, 8, num_beams=num_beams)
    for prompt, ids in zip(prompts, got):
        with torch.no_grad():
            want = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt)),
                               max_new_tokens=8, min_new_tokens=8, do_sample=False,
                               num_beams=num_beams, length_penalty=0.0, pad_token_id=0)
        assert ids == want[0, len(prompt):].tolist()


@pytest.fixture(scope="module")
def hf_t5(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(2)
    config = transformers.T5Config(
        vocab_size=40, d_model=16, d_kv=6, d_ff=24, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=None, feed_forward_proj="relu")
    hf = transformers.T5ForConditionalGeneration(config).eval()
    path = tmp_path_factory.mktemp("t5")
    hf.save_pretrained(path)
    ours = build_transformer_model(str(path / "config.json"), str(path), model="t5.1.0",
                                   with_lm="linear")
    return hf, ours


@pytest.mark.parametrize("num_beams", [1, 4])
def test_generate_equals_hf_generate_on_t5(hf_t5, num_beams):
    import torch

    hf, ours = hf_t5
    sources = [[5, 6, 7, 8, 9, 10, 11], [3, 4, 30]]
    got = ours.generate(sources, 6, num_beams=num_beams)
    for source, ids in zip(sources, got):
        with torch.no_grad():
            want = hf.generate(torch.tensor([source]), attention_mask=torch.ones(1, len(source)),
                               max_new_tokens=6, do_sample=False, num_beams=num_beams,
                               length_penalty=0.0)
        assert ids == want[0, 1:].tolist()  # HF's output starts with the start id
