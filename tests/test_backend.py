"""backend: GELU (spec 07), masks (spec 02), schedules (spec 03), K helpers, losses."""

import numpy as np
import pytest

from bert4keras.backend import (
    K, attention_normalize, gelu_erf, gelu_sigmoid, gelu_tanh, keras, multilabel_categorical_crossentropy,
    piecewise_linear, sequence_masking, set_gelu, sparse_multilabel_categorical_crossentropy,
)
from bert4keras.layers import Embedding, FeedForward, GlobalAveragePooling1D, GlobalMaxPooling1D

np_ = keras.ops.convert_to_numpy

GELU_TABLE = [  # x, gelu_erf, gelu_tanh, x*sigmoid(1.702x)  (spec 07, float64 references)
    (-3, -0.0040496941, -0.0036373921, -0.0180713097),
    (-1, -0.1586552539, -0.1588080094, -0.1542042341),
    (-0.5, -0.1542687694, -0.1542859902, -0.1496115634),
    (0, 0, 0, 0),
    (0.5, 0.3457312306, 0.3457140098, 0.3503884366),
    (1, 0.8413447461, 0.8411919906, 0.8457957659),
    (2, 1.9544997361, 1.9545976941, 1.9356586231),
    (3, 2.9959503059, 2.9963626079, 2.9819286903),
]


def test_gelu_reference_values():
    x = np.array([r[0] for r in GELU_TABLE], "float32")
    for fn, column in ((gelu_erf, 1), (gelu_tanh, 2), (gelu_sigmoid, 3)):
        np.testing.assert_allclose(np_(fn(x)), [r[column] for r in GELU_TABLE], atol=1e-6)


def test_gelu_error_bounds_and_large_inputs():
    x = np.linspace(-10, 10, 200001).astype("float32")
    erf, tanh, sig = np_(gelu_erf(x)), np_(gelu_tanh(x)), np_(gelu_sigmoid(x))
    assert np.abs(erf - tanh).max() < 4.8e-4
    assert np.abs(erf - sig).max() < 2.04e-2
    big = np.array([-30, 30, -1e4, 1e4], "float32")
    assert np.isfinite(np_(gelu_tanh(big))).all() and np.isfinite(np_(gelu_erf(big))).all()


def test_gelu_gradient_at_one():
    import keras as k

    if k.backend.backend() == "jax":
        import jax

        grad = float(jax.grad(lambda v: gelu_erf(v))(1.0))
    else:
        import torch

        v = torch.tensor(1.0, requires_grad=True)
        gelu_erf(v).backward()
        grad = float(v.grad)
    assert abs(grad - 1.0833154706) < 1e-6


def test_set_gelu_switches_what_gelu_means():
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    try:
        set_gelu("Tanh")
        ff_tanh = FeedForward(8, activation="gelu", kernel_initializer="ones")
        set_gelu("erf")
        ff_erf = FeedForward(8, activation="gelu", kernel_initializer="ones")
        a, b = np_(ff_tanh(x)), np_(ff_erf(x))
        assert ff_tanh.get_config()["activation"] != ff_erf.get_config()["activation"]
        assert not np.allclose(a, b)
        with pytest.raises(AssertionError, match="erf or tanh"):
            set_gelu("x")
    finally:
        set_gelu("erf")


def test_masked_pooling_and_softmax():
    x = np.array([1, 0, 3, 4, 5, 0, 0, 0], "float32")[None, :, None]
    mask = np.array([[1, 1, 1, 1, 1, 0, 0, 0]], bool)
    assert np.isclose(np_(GlobalAveragePooling1D()(x, mask=mask))[0, 0], 2.6)
    x2 = x.copy()
    x2[0, 5:] = 123.0
    assert np.isclose(np_(GlobalAveragePooling1D()(x2, mask=mask))[0, 0], 2.6)
    y = -np.array([1, 2, 3, 4, 5, 0, 0, 0], "float32")[None, :, None]
    assert np_(GlobalMaxPooling1D()(y, mask=mask))[0, 0] == -1
    a = attention_normalize(np.array([[1, 2, 3, 0, 0]], "float32"), mask=np.array([[1, 1, 1, 0, 0]]))
    np.testing.assert_allclose(np_(a)[0], [0.09003057, 0.24472847, 0.66524096, 0, 0], atol=1e-7)


def test_sequence_masking_axes_and_bias():
    x = np.arange(32, dtype="float32").reshape(2, 4, 4)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0]])
    rows = np_(sequence_masking(x, mask, -1.0, axis=1))
    cols = np_(sequence_masking(x, mask, -1.0, axis=-1))
    both = np_(sequence_masking(x, mask, -1.0, axis=[1, 2]))
    assert (rows[0, 2:] == -1).all() and (rows[0, :2] == x[0, :2]).all()
    assert (cols[1, :, 3] == -1).all() and (cols[1, :, :3] == x[1, :, :3]).all()
    assert (both == np.where(rows == -1, -1, cols)).all()
    bool_bias = np.tril(np.ones((4, 4), bool))[None]
    with_bool = np_(sequence_masking(x, mask, -1.0, axis=-1, bias=bool_bias))
    assert with_bool[0, 0, 1] == -1 and with_bool[0, 1, 1] == x[0, 1, 1]
    float_bias = np.full((1, 4, 4), 100.0, "float32")
    with_float = np_(sequence_masking(x, mask, -1.0, axis=-1, bias=float_bias))
    assert with_float[0, 0, 0] == x[0, 0, 0] + 100 and with_float[0, 0, 3] == -1
    assert (np_(sequence_masking(x)) == x).all()


def test_embedding_mask_keeps_first_token():
    emb = Embedding(10, 4, mask_zero=True)
    ids = np.array([[0, 5, 0, 7]])
    assert np_(emb.compute_mask(ids)).tolist() == [[True, True, False, True]]


def test_piecewise_linear_schedule_and_errors():
    values = np_(piecewise_linear(np.array([0, 500, 1000, 1500, 2000, 3000]), {1000: 1, 2000: 0.1}))
    np.testing.assert_allclose(values, [0, 0.5, 1, 0.55, 0.1, 0.1], atol=1e-6)
    np.testing.assert_allclose(np_(piecewise_linear(np.array([7]), {0: 1})), [1])
    np.testing.assert_allclose(np_(piecewise_linear(np.array([0, 5]), {10: 2}, from_zero=False)), [2, 2])
    with pytest.raises(ValueError, match="negative"):
        piecewise_linear(0, {-1: 1})


def test_k_namespace_matches_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 3, 4)).astype("float32"), rng.normal(size=(2, 4, 5)).astype("float32")
    np.testing.assert_allclose(np_(K.batch_dot(x, y)), x @ y, atol=1e-5)
    v, w = rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(np_(K.batch_dot(v, w, axes=1)), (v * w).sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(np_(K.dot(x, y[0])), x @ y[0], atol=1e-5)
    assert np.isclose(float(np_(K.sum(K.square(x)))), (x ** 2).sum(), rtol=1e-5)
    np.testing.assert_allclose(np_(K.mean(x, axis=1, keepdims=True)), x.mean(1, keepdims=True), atol=1e-6)
    assert K.int_shape(K.expand_dims(v, 1)) == (3, 1, 4)
    assert K.ndim(K.concatenate([x, x], axis=-1)) == 3
    labels = np.array([0, 2, 1])
    probs = np_(K.softmax(v[:, :3]))
    np.testing.assert_allclose(np_(K.sparse_categorical_crossentropy(labels, probs)),
                               -np.log(probs[np.arange(3), labels]), rtol=1e-5)


def test_multilabel_losses_agree():
    logits = np.array([[2.0, -1.0, 0.5, -3.0]], "float32")
    dense = np.array([[1, 0, 1, 0]], "float32")
    loss = float(np_(multilabel_categorical_crossentropy(dense, logits))[0])
    pos, neg = logits[0, [0, 2]], logits[0, [1, 3]]
    expected = np.log1p(np.exp(neg).sum()) + np.log1p(np.exp(-pos).sum())
    assert np.isclose(loss, expected, rtol=1e-5)
    sparse = float(np_(sparse_multilabel_categorical_crossentropy(np.array([[0, 2]]), logits))[0])
    assert np.isclose(sparse, expected, rtol=1e-4)


# --------------------------------------------------------------------------
# dropout (a hashed mask on JAX, keras.random.dropout elsewhere)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_keeps_the_right_fraction_scaled_and_uncorrelated(rate):
    import keras

    from bert4keras.backend import dropout

    x = np.ones((64, 128, 128), "float32")
    seed = keras.random.SeedGenerator(7)
    a = keras.ops.convert_to_numpy(dropout(x, rate, seed=seed))
    b = keras.ops.convert_to_numpy(dropout(x, rate, seed=seed))
    n = x.size
    for out in (a, b):
        kept = out != 0
        assert set(np.unique(out)) <= {0.0, np.float32(1 / (1 - rate))}
        assert abs(kept.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)
        flat = kept.reshape(-1).astype("float64")  # neighbours (the hash input differs by 1)
        for lag in (1, 128, 128 * 128):
            assert abs(np.corrcoef(flat[:-lag], flat[lag:])[0, 1]) < 5 / np.sqrt(n), lag
    both = ((a == 0) & (b == 0)).mean()  # successive draws are independent
    assert abs(both - rate ** 2) < 5 * np.sqrt(rate ** 2 * (1 - rate ** 2) / n)
    assert (a != b).any()


def test_dropout_is_reproducible_and_honours_noise_shape():
    import keras

    from bert4keras.backend import dropout

    x = np.arange(1, 4 * 6 * 8 + 1, dtype="float32").reshape(4, 6, 8)
    one = keras.ops.convert_to_numpy(dropout(x, 0.3, seed=keras.random.SeedGenerator(3)))
    two = keras.ops.convert_to_numpy(dropout(x, 0.3, seed=keras.random.SeedGenerator(3)))
    np.testing.assert_array_equal(one, two)
    kept = one != 0
    np.testing.assert_allclose(one[kept], x[kept] / 0.7, rtol=1e-6)
    shared = keras.ops.convert_to_numpy(
        dropout(x, 0.5, noise_shape=(4, 1, 8), seed=keras.random.SeedGenerator(1)))
    assert ((shared != 0) == (shared[:, :1] != 0)).all()  # one mask for every row of axis 1
    assert dropout(x, 0.0) is x
    assert not keras.ops.convert_to_numpy(dropout(x, 1.0, seed=keras.random.SeedGenerator(1))).any()


def test_dropout_layer_trains_masks_and_reloads(tmp_path):
    import keras

    from bert4keras.layers import Dropout

    layer = Dropout(0.25, seed=5)
    x = np.ones((8, 16, 32), "float32")
    assert (keras.ops.convert_to_numpy(layer(x)) == x).all()  # inference: identity
    trained = keras.ops.convert_to_numpy(layer(x, training=True))
    assert 0.6 < (trained != 0).mean() < 0.9
    inputs = keras.Input((None,), dtype="int32")
    h = Embedding(10, 4, mask_zero=True)(inputs)
    model = keras.Model(inputs, Dropout(0.1)(h))
    assert model.layers[-1].compute_mask(h, keras.ops.ones((1, 3), "bool")) is not None
    path = str(tmp_path / "m.keras")
    model.save(path)
    assert type(keras.saving.load_model(path).layers[-1]) is Dropout
