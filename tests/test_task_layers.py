"""Task heads (CRF, MEMM, GlobalPointer, Loss, Viterbi) against brute force and numpy forwards."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from bert4keras.layers import (
    BatchConcat,
    BatchSplit,
    Concatenate1D,
    ConditionalRandomField,
    EfficientGlobalPointer,
    GlobalPointer,
    Loss,
    MaximumEntropyMarkovModel,
    integerize_shape,
)
from bert4keras.snippets import ViterbiDecoder

RNG = np.random.default_rng(0)


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def padded_case(batch=3, seq_len=4, num_labels=3, lengths=(4, 2, 3)):
    emissions = RNG.normal(size=(batch, seq_len, num_labels)).astype("float32")
    labels = RNG.integers(0, num_labels, size=(batch, seq_len))
    mask = np.arange(seq_len)[None] < np.array(lengths)[:, None]
    return emissions, labels, mask


def path_score(emissions, trans, path):
    return emissions[np.arange(len(path)), path].sum() + sum(trans[a, b] for a, b in zip(path[:-1], path[1:]))


def brute_force_nll(emissions, trans, labels, length):
    scores = [path_score(emissions[:length], trans, p)
              for p in itertools.product(range(trans.shape[0]), repeat=length)]
    log_z = np.log(np.sum(np.exp(np.array(scores, "float64"))))
    return log_z - path_score(emissions[:length], trans, labels[:length])


def make_crf(num_labels, lr_multiplier=1):
    crf = ConditionalRandomField(lr_multiplier=lr_multiplier)
    crf.build((None, None, num_labels))
    trans = RNG.normal(size=(num_labels, num_labels)).astype("float32")
    crf._trans.assign(trans / lr_multiplier)
    return crf, trans


@pytest.mark.parametrize("lengths", [(4, 4, 4), (4, 2, 1)])
@pytest.mark.parametrize("lr_multiplier", [1, 10])
def test_crf_losses_equal_brute_force_nll(lengths, lr_multiplier):
    emissions, labels, mask = padded_case(lengths=lengths)
    crf, trans = make_crf(3, lr_multiplier)
    np.testing.assert_allclose(numpy(crf.trans), trans, rtol=1e-6)
    y_pred = crf(emissions, mask=mask if min(lengths) < 4 else None)
    assert np.isneginf(numpy(y_pred)[~mask]).all()
    expected = [brute_force_nll(e, trans, y, n) for e, y, n in zip(emissions, labels, lengths)]
    sparse = numpy(crf.sparse_loss(labels, y_pred))
    dense = numpy(crf.dense_loss(np.eye(3)[labels], y_pred))
    np.testing.assert_allclose(sparse, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dense, expected, rtol=1e-5, atol=1e-5)
    accuracy = numpy(crf.sparse_accuracy(labels, y_pred))
    np.testing.assert_allclose(accuracy, (emissions.argmax(-1) == labels)[mask].mean(), rtol=1e-6)


def memm_direction(emissions, trans, labels):
    """Token cross-entropies of one direction: softmax((e_t + trans[y_{t-1}]) / 2), e_0 alone at t = 0."""
    losses, hits = [], []
    for t in range(len(labels)):
        logits = emissions[t] if t == 0 else (emissions[t] + trans[labels[t - 1]]) / 2
        log_probs = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        losses.append(-log_probs[labels[t]])
        hits.append(logits.argmax() == labels[t])
    return losses, hits


@pytest.mark.parametrize("hidden_dim", [None, 2])
def test_memm_loss_matches_its_definition(hidden_dim):
    emissions, labels, mask = padded_case(lengths=(4, 2, 3))
    memm = MaximumEntropyMarkovModel(hidden_dim=hidden_dim)
    y_pred = memm(emissions, mask=mask)
    trans = numpy(memm.trans) if hidden_dim is None else numpy(memm.l_trans) @ numpy(memm.r_trans).T
    directions = []
    for transitions, flip in ((trans, False), (trans.T, True)):
        losses, hits = [], []
        for e, y, n in zip(emissions, labels, mask.sum(1)):
            e, y = (e[:n][::-1], y[:n][::-1]) if flip else (e[:n], y[:n])
            token_losses, token_hits = memm_direction(e, transitions, y)
            losses += token_losses
            hits += token_hits
        directions.append((np.mean(losses), np.mean(hits)))
    expected_loss = np.mean([d[0] for d in directions])
    expected_accuracy = np.mean([d[1] for d in directions])
    np.testing.assert_allclose(numpy(memm.sparse_loss(labels, y_pred)), expected_loss, rtol=1e-5)
    np.testing.assert_allclose(numpy(memm.dense_loss(np.eye(3)[labels], y_pred)), expected_loss, rtol=1e-5)
    np.testing.assert_allclose(numpy(memm.sparse_accuracy(labels, y_pred)), expected_accuracy, rtol=1e-6)


@pytest.mark.parametrize("starts,ends", [(None, None), ([0], [0]), ([1, 2], [0, 2])])
def test_viterbi_equals_brute_force(starts, ends):
    for seq_len in (1, 2, 5):
        nodes = RNG.normal(size=(seq_len, 3))
        trans = RNG.normal(size=(3, 3))
        candidates = [p for p in itertools.product(range(3), repeat=seq_len)
                      if (starts is None or p[0] in starts) and (ends is None or p[-1] in ends)]
        best = max(candidates, key=lambda p: path_score(nodes, trans, list(p)))
        decoded = ViterbiDecoder(trans, starts, ends).decode(nodes.copy())
        assert tuple(decoded) == best


def rope(x):
    """Rotate interleaved pairs (x_2i, x_2i+1) of x (batch, seq_len, ..., d) by position * 10000^(-2i/d)."""
    seq_len, dim = x.shape[1], x.shape[-1]
    angles = np.arange(seq_len)[:, None] * 10000.0 ** (-2 * np.arange(dim // 2) / dim)
    shape = (1, seq_len) + (1,) * (x.ndim - 3) + (dim // 2,)
    cos, sin = np.cos(angles).reshape(shape), np.sin(angles).reshape(shape)
    even, odd = x[..., ::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., ::2] = even * cos - odd * sin
    out[..., 1::2] = odd * cos + even * sin
    return out


def masked_logits(logits, mask, tril):
    keep = mask[:, None, :, None] & mask[:, None, None, :]
    if tril:
        keep = keep & np.triu(np.ones(logits.shape[-2:], bool))[None, None]
    return np.where(keep, logits, -np.inf)


@pytest.mark.parametrize("RoPE,tril_mask", [(True, True), (False, False)])
def test_global_pointer_equals_numpy_forward(RoPE, tril_mask):
    heads, head_size = 3, 4
    x = RNG.normal(size=(2, 5, 6)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
    gp = GlobalPointer(heads, head_size, RoPE=RoPE, tril_mask=tril_mask)
    logits = numpy(gp(x, mask=mask))
    kernel, bias = numpy(gp.dense.kernel), numpy(gp.dense.bias)
    assert kernel.shape == (6, heads * head_size * 2)
    h = (x @ kernel + bias).reshape(2, 5, heads, 2 * head_size)
    q, k = h[..., :head_size], h[..., head_size:]
    if RoPE:
        q, k = rope(q), rope(k)
    expected = masked_logits(np.einsum("bmhd,bnhd->bhmn", q, k) / head_size**0.5, mask, tril_mask)
    np.testing.assert_array_equal(np.isneginf(logits), np.isneginf(expected))
    np.testing.assert_allclose(logits[np.isfinite(expected)], expected[np.isfinite(expected)], rtol=1e-4, atol=1e-5)


def test_efficient_global_pointer_equals_numpy_forward():
    heads, head_size = 3, 4
    x = RNG.normal(size=(2, 5, 6)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
    gp = EfficientGlobalPointer(heads, head_size)
    logits = numpy(gp(x, mask=mask))
    assert [w.path.split("/", 1)[1] for w in gp.weights] == [
        "p_dense/kernel", "p_dense/bias", "q_dense/kernel", "q_dense/bias"]
    p = x @ numpy(gp.p_dense.kernel) + numpy(gp.p_dense.bias)
    bias = (p @ numpy(gp.q_dense.kernel) + numpy(gp.q_dense.bias)) / 2
    q, k = rope(p[..., ::2]), rope(p[..., 1::2])
    qk = np.einsum("bmd,bnd->bmn", q, k) / head_size**0.5
    expected = (qk[:, None] + bias[..., ::2].transpose(0, 2, 1)[:, :, None, :]
                + bias[..., 1::2].transpose(0, 2, 1)[:, :, :, None])
    expected = masked_logits(expected, mask, True)
    np.testing.assert_array_equal(np.isneginf(logits), np.isneginf(expected))
    np.testing.assert_allclose(logits[np.isfinite(expected)], expected[np.isfinite(expected)], rtol=1e-4, atol=1e-5)


class SquaredError(Loss):
    def compute_loss(self, inputs, mask=None):
        assert mask == [None, None]
        y_true, y_pred = inputs
        return ops.mean(ops.square(y_true - y_pred))


def regression_model():
    x, y = keras.Input((4,)), keras.Input((1,))
    prediction = keras.layers.Dense(1)(x)
    output = SquaredError(output_axis=1)([y, prediction])
    return keras.Model([x, y], output)


def test_loss_layer_trains_with_fit():
    keras.utils.set_random_seed(0)
    model = regression_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    x = RNG.normal(size=(256, 4)).astype("float32")
    y = x @ np.array([[1.0], [2.0], [-1.0], [0.5]], "float32")
    history = model.fit([x, y], None, epochs=40, batch_size=64, verbose=0).history["loss"]
    assert history[0] > 1.0 and history[-1] < 1e-3


@pytest.fixture
def policy():
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy("float32")


def crf_model():
    tokens = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    crf = ConditionalRandomField(lr_multiplier=5)
    return keras.Model(tokens, crf(keras.layers.Dense(4)(hidden))), crf


def gp_model(cls=GlobalPointer):
    tokens = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    return keras.Model(tokens, cls(2, 4)(hidden))


@pytest.mark.parametrize("mixed", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_matches_float32(policy, mixed):
    tokens = RNG.integers(1, 20, size=(3, 6))
    tokens[1, 4:] = tokens[2, 2:] = 0
    labels = RNG.integers(0, 4, size=(3, 6))
    tol = dict(rtol=2e-2, atol=2e-2) if mixed == "mixed_float16" else dict(rtol=6e-2, atol=6e-2)
    results = {}
    for name in ("float32", mixed):
        policy(name)
        keras.utils.set_random_seed(1)
        model, crf = crf_model()
        y_pred = model(tokens)
        assert crf.compute_dtype == "float32"
        loss = numpy(crf.sparse_loss(labels, y_pred))
        gp_logits = numpy(gp_model()(tokens))
        egp_logits = numpy(gp_model(EfficientGlobalPointer)(tokens))
        keras.utils.set_random_seed(2)
        regression = regression_model()
        x = np.linspace(-1, 1, 32, dtype="float32").reshape(8, 4)
        y = np.linspace(1, 2, 8, dtype="float32").reshape(8, 1)
        regression([x, y])
        add_loss = numpy(ops.sum(regression.losses))
        results[name] = (loss, gp_logits, egp_logits, add_loss)
    for reference, value in zip(results["float32"], results[mixed]):
        assert value.dtype == np.float32
        np.testing.assert_array_equal(np.isfinite(value), np.isfinite(reference))
        np.testing.assert_allclose(value[np.isfinite(value)], reference[np.isfinite(reference)], **tol)
    assert np.isfinite(results[mixed][0]).all()


def test_keras_round_trip_without_custom_objects(tmp_path):
    tokens = RNG.integers(1, 20, size=(4, 6))
    tokens[1, 3:] = 0
    labels = RNG.integers(0, 4, size=(4, 6))
    model, crf = crf_model()
    model.compile(optimizer="adam", loss=crf.sparse_loss, metrics=[crf.sparse_accuracy])
    model.fit(tokens, labels, epochs=1, verbose=0)
    model.save(tmp_path / "crf.keras")
    loaded = keras.models.load_model(tmp_path / "crf.keras")
    np.testing.assert_array_equal(numpy(loaded(tokens)), numpy(model(tokens)))
    loaded_crf = loaded.layers[-1]
    np.testing.assert_array_equal(numpy(loaded_crf.trans), numpy(crf.trans))
    assert loaded.evaluate(tokens, labels, verbose=0) == model.evaluate(tokens, labels, verbose=0)
    for cls in (GlobalPointer, EfficientGlobalPointer):
        model = gp_model(cls)
        model.save(tmp_path / "gp.keras")
        loaded = keras.models.load_model(tmp_path / "gp.keras")
        np.testing.assert_array_equal(numpy(loaded(tokens)), numpy(model(tokens)))


def test_concatenate1d_and_batch_split_concat():
    a, b = keras.Input((None, 3)), keras.Input((None, 3))
    masked = keras.layers.Masking()(a)
    joined = Concatenate1D()([masked, b])
    pieces = BatchSplit(2)(joined)
    model = keras.Model([a, b], BatchConcat()(pieces))
    xa = RNG.normal(size=(5, 2, 3)).astype("float32")
    xa[0, 1] = 0
    xb = RNG.normal(size=(5, 3, 3)).astype("float32")
    np.testing.assert_allclose(numpy(model([xa, xb])), np.concatenate([xa, xb], 1), rtol=1e-6)
    mask = numpy(Concatenate1D().compute_mask([xa, xb], [np.abs(xa).sum(-1) > 0, None]))
    assert mask[0].tolist() == [True, False, True, True, True] and mask[1:].all()
    halves = BatchSplit([1, 3])(ops.convert_to_tensor(xb))
    assert [h.shape[0] for h in halves] == [1, 4]

    class Shaped(keras.layers.Layer):
        @integerize_shape
        def build(self, input_shape):
            self.seen = input_shape

    layer = Shaped()
    layer.build((None, np.int64(3)))
    assert layer.seen == [None, 3] and type(layer.seen[1]) is int


def test_bad_inputs_name_the_value():
    crf, _ = make_crf(3)
    emissions, labels, mask = padded_case()
    labels[1, 2] = 7
    with pytest.raises(ValueError, match=r"label 7 outside \[0, 3\)"):
        crf.sparse_loss(labels, crf(emissions))
    labels[1, 2] = -1
    memm = MaximumEntropyMarkovModel()
    with pytest.raises(ValueError, match=r"label -1 outside"):
        memm.sparse_loss(labels, memm(emissions))
    with pytest.raises(ValueError, match="head_size=5"):
        GlobalPointer(2, 5)
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        ViterbiDecoder(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        ViterbiDecoder(np.zeros((3, 3))).decode(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="starts label 5"):
        ViterbiDecoder(np.zeros((3, 3)), starts=[5]).decode(np.zeros((2, 3)))

    class NoLoss(Loss):
        pass

    with pytest.raises(TypeError, match="NoLoss must implement compute_loss"):
        NoLoss()
    with pytest.raises(ValueError, match="parts must be >= 1, got 0"):
        BatchSplit(0)


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="JAX fit runs jitted: labels cannot be read there")
def test_bad_label_inside_eager_fit_names_the_value():
    model, crf = crf_model()
    model.compile(optimizer="adam", loss=crf.sparse_loss)
    tokens = RNG.integers(1, 20, size=(4, 6))
    labels = RNG.integers(0, 4, size=(4, 6))
    labels[2, 3] = 9
    with pytest.raises(ValueError, match=r"label 9 outside \[0, 4\)"):
        model.fit(tokens, labels, epochs=1, verbose=0)
