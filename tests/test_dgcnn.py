"""DilatedGatedConv1D: numpy forward pass, padding invariance, receptive field, serialization."""

import keras
import numpy as np
import pytest

from bert4keras.layers import DilatedGatedConv1D, Embedding

np_ = keras.ops.convert_to_numpy


def numpy_forward(x, kernel, bias, dilation, residual):
    """Reference: 'same'-padded dilated convolution, then the residual gate, from the layer's weights."""
    k, _, two_units = kernel.shape
    units = two_units // 2
    span = dilation * (k - 1)
    padded = np.pad(x, [(0, 0), (span // 2, span - span // 2), (0, 0)])
    conv = sum(padded[:, j * dilation: j * dilation + x.shape[1]] @ kernel[j] for j in range(k)) + bias
    value, gate = conv[..., :units], 1 / (1 + np.exp(-conv[..., units:]))
    return x * (1 - gate) + value * gate if residual else value * gate


@pytest.mark.parametrize("filters, kernel_size, dilation", [(None, 3, 1), (None, 3, 4), (5, 2, 2)])
def test_matches_numpy_forward(filters, kernel_size, dilation):
    layer = DilatedGatedConv1D(filters, kernel_size=kernel_size, dilation_rate=dilation,
                               bias_initializer="random_normal")
    x = np.random.default_rng(1).normal(size=(2, 9, 4)).astype("float32")
    y = np_(layer(x))
    kernel, bias = (np_(w).astype("float64") for w in layer.weights)
    assert kernel.shape == (kernel_size, 4, 2 * (filters or 4))
    expected = numpy_forward(x.astype("float64"), kernel, bias, dilation, residual=filters is None)
    np.testing.assert_allclose(y, expected, atol=1e-5)


def _masked_model(length, seed=3):
    ids = keras.Input((length,), dtype="int32")
    x = Embedding(30, 6, mask_zero=True, embeddings_initializer=keras.initializers.RandomNormal(seed=seed))(ids)
    for d in (1, 2, 4):
        x = DilatedGatedConv1D(dilation_rate=d, kernel_initializer=keras.initializers.GlorotUniform(seed=d))(x)
    return keras.Model(ids, x)


def test_padding_never_changes_real_positions():
    short, long_ = _masked_model(5), _masked_model(12)
    long_.set_weights(short.get_weights())
    ids = np.array([[3, 7, 1, 9, 4], [5, 2, 8, 0, 0]])
    padded = np.pad(ids, [(0, 0), (0, 7)])
    a, b = np_(short(ids)), np_(long_(padded))
    np.testing.assert_allclose(b[:, :5], a, atol=1e-6)
    np.testing.assert_allclose(b[1, 3:], 0.0)


def test_garbage_under_mask_is_ignored():
    layer = DilatedGatedConv1D(dilation_rate=2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 8, 4)).astype("float32")
    noisy = x.copy()
    noisy[:, 5:] = rng.normal(size=(1, 3, 4)) * 100
    mask = np.array([[True] * 5 + [False] * 3])
    np.testing.assert_allclose(np_(layer(noisy, mask=mask))[:, :5], np_(layer(x, mask=mask))[:, :5], atol=1e-6)


def test_receptive_field_of_dilations_1_2_4_is_15():
    x = keras.Input((31, 2))
    y = x
    for d in (1, 2, 4):
        y = DilatedGatedConv1D(dilation_rate=d, bias_initializer="ones")(y)
    model = keras.Model(x, y)
    base = np.random.default_rng(2).normal(size=(1, 31, 2)).astype("float32")
    out = np_(model(base))[0, 15]
    for offset, changes in ((7, True), (-7, True), (8, False), (-8, False)):
        moved = base.copy()
        moved[0, 15 + offset] += 10.0
        assert (np.abs(np_(model(moved))[0, 15] - out).max() > 1e-6) == changes, offset


def test_gate_extremes():
    x = np.random.default_rng(4).normal(size=(1, 6, 3)).astype("float32")
    identity = np.zeros((3, 3, 6), "float32")
    identity[1, :, :3] = np.eye(3) * 2
    for gate_bias, expected in ((50.0, 2 * x), (-50.0, x)):
        layer = DilatedGatedConv1D()
        layer.build(x.shape)
        layer.set_weights([identity, np.r_[np.zeros(3), np.full(3, gate_bias)].astype("float32")])
        np.testing.assert_allclose(np_(layer(x)), expected, atol=1e-5)


def test_serialization_round_trip(tmp_path):
    x = keras.Input((7, 4))
    model = keras.Model(x, DilatedGatedConv1D(6, kernel_size=2, dilation_rate=3, gate_dropout=0.1)(x))
    path = str(tmp_path / "dgcnn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.layers[-1]
    assert isinstance(layer, DilatedGatedConv1D)
    assert (layer.filters, layer.kernel_size, layer.dilation_rate, layer.gate_dropout) == (6, 2, 3, 0.1)
    data = np.random.default_rng(5).normal(size=(2, 7, 4)).astype("float32")
    np.testing.assert_allclose(np_(loaded(data)), np_(model(data)), atol=1e-6)


def test_gate_dropout_only_in_training():
    layer = DilatedGatedConv1D(gate_dropout=0.5)
    x = np.ones((2, 10, 4), "float32")
    assert np.allclose(np_(layer(x)), np_(layer(x)))
    assert not np.allclose(np_(layer(x, training=True)), np_(layer(x)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="dilation_rate"):
        DilatedGatedConv1D(dilation_rate=0)
    with pytest.raises(ValueError, match="filters"):
        DilatedGatedConv1D(filters=-2)
    with pytest.raises(ValueError, match="residual=True needs filters == input width"):
        DilatedGatedConv1D(5, residual=True)(np.zeros((1, 3, 4), "float32"))
