"""backend: GELU, masks, schedules, the Keras-2 ``K`` helpers against Keras 2.3.1, losses, 0.11.5 names."""

import numpy as np
import pytest

from bert4keras.backend import (
    K, attention_normalize, gelu_erf, gelu_sigmoid, gelu_tanh, keras, multilabel_categorical_crossentropy,
    piecewise_linear, sequence_masking, set_gelu, sparse_multilabel_categorical_crossentropy,
)
from bert4keras.layers import Embedding, FeedForward, GlobalAveragePooling1D, GlobalMaxPooling1D

np_ = keras.ops.convert_to_numpy

GELU_TABLE = [  # x, gelu_erf, gelu_tanh, x*sigmoid(1.702x)  (float64 references)
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


# --------------------------------------------------------------------------
# batch_gather and the Keras 2.3.1 definitions of K
# --------------------------------------------------------------------------


def test_batch_gather_gathers_on_axis_ndim_indices_minus_one():
    from bert4keras.backend import batch_gather

    rng = np.random.default_rng(0)
    params = rng.normal(size=(3, 5, 4)).astype("float32")
    one = np.array([[1], [4], [0]])
    out = np_(batch_gather(params, one))  # (b, n, h) with (b, 1) -> (b, 1, h)
    assert out.shape == (3, 1, 4)
    np.testing.assert_array_equal(out, params[np.arange(3), one[:, 0]][:, None])
    many = np.array([[0, 2, 2], [4, 1, 3], [3, 3, 0]])
    np.testing.assert_array_equal(np_(batch_gather(params, many)), np.stack([params[i, many[i]] for i in range(3)]))
    same_rank = rng.integers(0, 4, (3, 5, 2))  # (b, n, h) with (b, n, k): last axis
    np.testing.assert_array_equal(np_(batch_gather(params, same_rank)), np.take_along_axis(params, same_rank, -1))
    np.testing.assert_array_equal(np_(batch_gather(params[:, :, 0], many.astype("float32"))),
                                  np.take_along_axis(params[:, :, 0], many, -1))
    with pytest.raises(ValueError, match="more axes"):
        batch_gather(params[:, 0, 0], many)


def _keras2_binary_crossentropy(target, output, from_logits=False):
    """Keras 2.3.1: clip to [eps, 1-eps], go to logits, then TF's stable sigmoid cross-entropy."""
    if not from_logits:  # clipped in float32, as Keras 2 computed it
        output = np.clip(output, np.float32(1e-7), np.float32(1) - np.float32(1e-7)).astype("float64")
        output = np.log(output / (1 - output))
    return np.maximum(output, 0) - output * target + np.log1p(np.exp(-np.abs(output)))


def test_binary_crossentropy_is_element_wise_as_keras2():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, (3, 4)).astype("float32")
    probs = rng.uniform(size=(3, 4)).astype("float32")
    probs[0, 0], probs[1, 1] = 0.0, 1.0  # clipped at epsilon
    loss = np_(K.binary_crossentropy(target, probs))
    assert loss.shape == (3, 4)
    np.testing.assert_allclose(loss, _keras2_binary_crossentropy(target, probs), rtol=1e-4, atol=2e-7)
    logits = rng.normal(size=(3, 4)).astype("float32") * 5
    np.testing.assert_allclose(np_(K.binary_crossentropy(target, logits, from_logits=True)),
                               _keras2_binary_crossentropy(target, logits.astype("float64"), True), rtol=1e-5)


def test_categorical_crossentropy_renormalises_as_keras2():
    target = np.array([[0, 1, 0]], "float32")
    unnormalised = np.array([[1.0, 2.0, 1.0]], "float32")  # Keras 2 divides by the sum first
    np.testing.assert_allclose(np_(K.categorical_crossentropy(target, unnormalised)), [-np.log(0.5)], rtol=1e-6)
    logits = np.array([[0.5, 1.5, -1.0]], "float32")
    expected = -np.log(np.exp(1.5) / np.exp(logits).sum())
    np.testing.assert_allclose(np_(K.categorical_crossentropy(target, logits, from_logits=True)), [expected],
                               rtol=1e-5)


def test_k_defaults_follow_keras2():
    x = np.array([[1.0, 5.0, 3.0], [7.0, 2.0, -4.0]], "float32")
    assert np_(K.argmax(x)).tolist() == [1, 0] and np_(K.argmin(x)).tolist() == [0, 2]  # last axis
    np.testing.assert_array_equal(np_(K.cumsum(x)), np.cumsum(x, axis=0))  # axis 0
    np.testing.assert_array_equal(np_(K.cumprod(x)), np.cumprod(x, axis=0))
    np.testing.assert_array_equal(np_(K.sqrt(np.array([-4.0, 4.0], "float32"))), [0.0, 2.0])
    np.testing.assert_array_equal(np_(K.clip(x, 2.0, None)), np.clip(x, 2, None))
    np.testing.assert_array_equal(np_(K.clip(x, 3.0, 1.0)), np.full_like(x, 3.0))  # max < min -> min
    r = np.array([-2.0, 0.5, 1.5, 4.0], "float32")
    np.testing.assert_allclose(np_(K.relu(r, alpha=0.1, max_value=3.0, threshold=1.0)), [-0.3, -0.05, 1.5, 3.0],
                               rtol=1e-6)
    np.testing.assert_array_equal(np_(K.relu(r)), np.maximum(r, 0))
    np.testing.assert_allclose(np_(K.hard_sigmoid(r)), np.clip(0.2 * r + 0.5, 0, 1))
    np.testing.assert_allclose(np_(K.l2_normalize(x)), x / np.sqrt((x ** 2).sum()), rtol=1e-6)  # all axes
    np.testing.assert_allclose(np_(K.l2_normalize(x, axis=1)), x / np.linalg.norm(x, axis=1, keepdims=True),
                               rtol=1e-6)
    table = np.arange(12, dtype="float32").reshape(4, 3)
    np.testing.assert_array_equal(np_(K.gather(table, np.array([3, 0]))), table[[3, 0]])  # rows
    assert K.dtype(K.arange(5)) == "int32" and np_(K.arange(2, 8, 3)).tolist() == [2, 5]
    assert K.dtype(K.constant([1, 2])) == K.floatx()
    assert np_(K.constant(2.0, shape=(2, 2))).tolist() == [[2, 2], [2, 2]]
    np.testing.assert_array_equal(np_(K.eye(3)), np.eye(3))
    np.testing.assert_array_equal(np_(K.eye((2, 3))), np.eye(2, 3))
    assert K.int_shape(K.repeat(x, 4)) == (2, 4, 3)
    assert np_(K.switch(np.array([True, False]), lambda: np.ones(2), lambda: np.zeros(2))).tolist() == [1, 0]
    assert np_(K.mean(np.array([True, False, True, True]))) == 0.75
    assert K.in_train_phase(lambda: 1, 2, training=True) == 1 and K.in_test_phase(1, 2, training=True) == 2
    pooled = np_(K.pool2d(np.arange(16, dtype="float32").reshape(1, 4, 4, 1), (2, 2), strides=(2, 2)))
    assert pooled[0, :, :, 0].tolist() == [[5, 7], [13, 15]]
    avg = np_(K.pool2d(np.arange(16, dtype="float32").reshape(1, 4, 4, 1), (2, 2), (2, 2), pool_mode="avg"))
    assert avg[0, :, :, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_k_bert4keras_reshape_flatten_where():
    x = np.arange(24, dtype="float32").reshape(2, 3, 4)
    assert K.int_shape(K.reshape(x, (2, 2), -1 % 3)) == (2, 3, 2, 2)
    assert K.int_shape(K.reshape(x, (6, 4))) == (6, 4)
    assert K.int_shape(K.reshape(x, (3, -1), 1, (2, 2), 2)) == (2, 3, 1, 2, 2)
    assert K.int_shape(K.flatten(x)) == (24,)
    assert K.int_shape(K.flatten(x, 1)) == (2, 12)
    assert K.int_shape(K.flatten(x, -2)) == (2, 12)
    assert K.int_shape(K.flatten(x, 0, 2)) == (6, 4)
    out = np_(K.where(x > 10, x, 0))
    assert K.dtype(out) == "float32" and out.sum() == x[x > 10].sum()
    assert np_(K.where(np.array([1, 0]), 1, -1)).tolist() == [1, -1]
    with pytest.raises(ValueError, match="at most one -1"):
        K.reshape(x, (-1, -1), 1)


def test_k_variables_values_and_random():
    v = K.variable(np.ones((2, 2)), name="v")
    K.set_value(v, np.full((2, 2), 3.0))
    assert K.get_value(v).tolist() == [[3, 3], [3, 3]] and K.eval(K.sum(v)) == 12
    K.batch_set_value([(v, np.zeros((2, 2)))])
    assert K.batch_get_value([v])[0].sum() == 0
    K.update_add(v, np.ones((2, 2)))
    assert K.eval(K.update(v, K.get_value(v) * 5)).sum() == 20
    with pytest.raises(TypeError, match="needs a variable"):
        K.set_value(np.ones(2), 1.0)
    draws = np_(K.random_binomial((20000,), p=0.3, seed=1))
    assert set(np.unique(draws)) <= {0.0, 1.0} and abs(draws.mean() - 0.3) < 0.02
    u = np_(K.random_uniform((20000,), -2.0, 2.0, seed=2))
    assert u.min() >= -2 and u.max() < 2 and abs(u.mean()) < 0.05
    t = np_(K.truncated_normal((20000,), stddev=1.0, seed=3))
    assert np.abs(t).max() <= 2.0 + 1e-6
    assert K.symbolic(len) is len
    kept = np_(K.dropout(np.ones((4000,), "float32"), 0.25, seed=4))
    assert set(np.unique(kept)) <= {np.float32(0), np.float32(1 / 0.75)} and abs((kept == 0).mean() - 0.25) < 0.03
    assert K.count_params(np.ones((3, 4))) == 12


def test_k_bias_add_and_placeholder():
    x = np.zeros((2, 3, 4), "float32")
    assert np_(K.bias_add(x, np.arange(4, dtype="float32")))[1, 2].tolist() == [0, 1, 2, 3]
    assert np_(K.bias_add(x, np.arange(3, dtype="float32"), data_format="channels_first"))[1, :, 0].tolist() \
        == [0, 1, 2]
    assert tuple(K.placeholder(ndim=3).shape) == (None, None, None)
    with pytest.raises(ValueError, match="shape or ndim"):
        K.placeholder()


def test_k_function_placeholder_and_gradients():
    a = K.placeholder(shape=(None, 3))
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(2, kernel_initializer="ones")(inputs)
    f = K.function([inputs], [hidden, K.sum(hidden, axis=1)])
    out = f([np.ones((4, 3), "float32")])
    assert [o.shape for o in out] == [(4, 2), (4,)] and out[1].tolist() == [6, 6, 6, 6]
    g = K.function(a, K.square(a))
    assert g([np.full((1, 3), 2.0, "float32")])[0].tolist() == [[4, 4, 4]]
    with pytest.raises(ValueError, match="updates"):
        K.function([inputs], [hidden], updates=[1])
    with pytest.raises(TypeError, match="symbolic"):
        K.function([np.ones(3)], [np.ones(3)])
    w = keras.Variable(np.array([1.0, 2.0], "float32"))
    if keras.backend.backend() == "torch":
        loss = K.sum(K.square(w.value))
        np.testing.assert_allclose(np_(K.gradients(loss, [w])[0]), [2.0, 4.0])
    else:
        with pytest.raises(NotImplementedError, match="jax.grad"):
            K.gradients(K.sum(K.square(w)), [w])
    with pytest.raises(NotImplementedError, match="session"):
        K.get_session()


def test_k_rnn_runs_a_step_function():
    x = np.arange(12, dtype="float32").reshape(2, 3, 2)

    def step(inputs, states):
        total = states[0] + inputs
        return total, [total]

    last, outputs, states = K.rnn(step, x, [np.zeros((2, 2), "float32")])
    np.testing.assert_array_equal(np_(outputs), np.cumsum(x, axis=1))
    np.testing.assert_array_equal(np_(last), x.sum(1))


# --------------------------------------------------------------------------
# bert4keras 0.11.5 backend names
# --------------------------------------------------------------------------


def test_backend_0115_functions():
    from bert4keras import backend as B

    x = np.array([[-2.0, 0.0, 3.0]], "float32")
    np.testing.assert_allclose(np_(B.swish(x)), x / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(np_(B.leaky_relu(x)), np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(np_(B.leaky_relu(x, alpha=0.5)), np.where(x > 0, x, 0.5 * x))
    seq = np.arange(30, dtype="float32").reshape(1, 10, 3)
    pooled = np_(B.pool1d(seq, 2, strides=2))
    np.testing.assert_array_equal(pooled, seq.reshape(1, 5, 2, 3).max(2))
    np.testing.assert_allclose(np_(B.pool1d(seq, 3, pool_mode="avg"))[0, 0], seq[0, :3].mean(0))
    padded = np_(B.divisible_temporal_padding(seq, 4))
    assert padded.shape == (1, 12, 3) and (padded[:, 10:] == 0).all() and (padded[:, :10] == seq).all()
    assert np_(B.divisible_temporal_padding(seq, 5)).shape == (1, 10, 3)
    assert B.flatten is K.flatten and B.reshape is K.reshape and B.where is K.where and B.symbolic is K.symbolic
    assert B.dtype(keras.ops.convert_to_tensor(seq)) == "float32" and B.dtype(seq) == "float32"
    assert B.dtype(3.0) is None
    assert B.is_tf_keras is False and isinstance(B.get_available_gpus(), list)
    with pytest.raises(NotImplementedError, match="custom_gradient"):
        B.graph_mode_decorator(lambda: None)
    assert B.custom_objects["gelu"] is B.gelu_erf and B.custom_objects["swish"] is B.swish
    assert {"Sinusoidal", "root_mean_square", "leaky_relu", "initializer"} <= set(B.custom_objects)


def test_search_layer_with_exclude_from():
    from bert4keras.backend import search_layer

    inputs = keras.Input((3,), name="in")
    a = keras.layers.Dense(3, name="a")(inputs)
    b = keras.layers.Dense(3, name="b")(a)
    c = keras.layers.Dense(3, name="c")(b)
    assert search_layer(c, "a").name == "a" and search_layer(c, "missing") is None
    visited = set()
    assert search_layer(c, "in", exclude_from=visited) is not None and len(visited) >= 3
    blocked = {search_layer(c, "b")}
    assert search_layer(c, "a", exclude_from=blocked) is None  # cannot pass through b
