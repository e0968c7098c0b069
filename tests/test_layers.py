"""Layers: layer-in-layer (a layer whose call uses other layers keeps their weights), attention padding invariance, no NaN, serialization."""

import keras
import numpy as np
import pytest

from bert4keras.layers import Dense, Layer, LayerNormalization, MultiHeadAttention

np_ = keras.ops.convert_to_numpy


class OurDense(Layer):
    """A two-layer dense built from sub-layers (a layer whose weights live in its sub-layers)."""

    def __init__(self, hidden_dim, output_dim, hidden_activation="linear", **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim, self.output_dim, self.hidden_activation = hidden_dim, output_dim, hidden_activation

    def build(self, input_shape):
        self.hidden = Dense(self.hidden_dim, activation=self.hidden_activation)
        self.hidden.build(input_shape)
        self.out = Dense(self.output_dim)
        self.out.build(tuple(input_shape[:-1]) + (self.hidden_dim,))

    def call(self, x):
        return self.out(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "output_dim": self.output_dim,
                "hidden_activation": self.hidden_activation}


def test_layer_in_layer_weights_and_trainable():
    layer = OurDense(3, 2, hidden_activation="relu")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    y = np_(layer(x))
    assert [tuple(w.shape) for w in layer.trainable_weights] == [(4, 3), (3,), (3, 2), (2,)]
    w1, b1, w2, b2 = [np_(w) for w in layer.trainable_weights]
    np.testing.assert_allclose(y, np.maximum(x @ w1 + b1, 0) @ w2 + b2, atol=1e-6)
    layer.trainable = False
    assert len(layer.trainable_weights) == 0 and len(layer.non_trainable_weights) == 4
    clone = OurDense.from_config(layer.get_config())
    assert clone.hidden_dim == 3 and clone.output_dim == 2


def _attention_model(length, seed=0):
    ids = keras.Input((length,), dtype="int32")
    from bert4keras.layers import Embedding

    x = Embedding(20, 8, mask_zero=True, name="emb")(ids)
    y = MultiHeadAttention(heads=2, head_size=4, name="att")([x, x, x])
    return keras.Model(ids, y)


@pytest.mark.parametrize("use_fused", [True, False])
def test_attention_padding_invariance(use_fused):
    short, long_ = _attention_model(5), _attention_model(9)
    long_.set_weights(short.get_weights())
    if not use_fused:
        for m in (short, long_):
            m.get_layer("att").return_attention_scores = False
            m.get_layer("att").normalization = "softmax_plus"  # forces the einsum path
    ids5 = np.array([[3, 4, 5, 0, 0]])
    ids9 = np.array([[3, 4, 5, 0, 0, 0, 0, 0, 0]])
    a, b = np_(short(ids5)), np_(long_(ids9))
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-5)
    ids9_other_pad_embedding = ids9.copy()
    ids9_other_pad_embedding[0, 5:] = 0
    emb = long_.get_layer("emb")
    table = np_(emb.embeddings).copy()
    table[0] = 100.0  # padded positions now carry very different vectors
    emb.embeddings.assign(table)
    np.testing.assert_allclose(np_(long_(ids9))[:, :3], b[:, :3], atol=1e-5)


def test_fused_and_explicit_attention_agree_with_bias_and_mask():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(2, 6, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    bias = rng.normal(size=(2, 6, 6)).astype("float32")
    att = MultiHeadAttention(heads=2, head_size=4)
    fused = np_(att([q, q, q, bias], mask=[mask, mask, mask], a_bias=True))
    att.return_attention_scores = True
    explicit, _ = att([q, q, q, bias], mask=[mask, mask, mask], a_bias=True)
    np.testing.assert_allclose(fused, np_(explicit), atol=1e-5)


def test_conditional_layer_norm_starts_as_plain_norm():
    x = np.random.default_rng(2).normal(size=(2, 3, 6)).astype("float32")
    cond = np.random.default_rng(3).normal(size=(2, 5)).astype("float32")
    plain = np_(LayerNormalization()(x))
    conditional = LayerNormalization(conditional=True, hidden_units=4)
    np.testing.assert_allclose(np_(conditional([x, cond])), plain, atol=1e-5)
    assert len(conditional.trainable_weights) == 5  # beta, gamma, hidden, beta_dense, gamma_dense


@pytest.mark.parametrize("name", ["GlobalMaxPooling1D", "GlobalAveragePooling1D"])
def test_masked_pooling_data_format(name):
    """channels_first pools over axis 2 and gives what channels_last gives on the transposed input."""
    import bert4keras.layers as L

    layer = getattr(L, name)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    last = keras.ops.convert_to_numpy(layer()(x, mask=mask))
    first = keras.ops.convert_to_numpy(layer(data_format="channels_first")(x.transpose(0, 2, 1), mask=mask))
    reduce = np.max if name == "GlobalMaxPooling1D" else np.mean
    expected = np.stack([reduce(x[0, :3], axis=0), reduce(x[1], axis=0)])
    np.testing.assert_allclose(last, expected, rtol=1e-6)
    np.testing.assert_array_equal(first, last)
    with pytest.raises(ValueError, match="data_format must be"):
        layer(data_format="channels_middle")


@pytest.mark.parametrize("merge_mode", ["add", "mul", "zero", "concat"])
def test_position_embeddings_merge_as_bert4keras_says(merge_mode):
    from bert4keras.backend import sinusoidal_embeddings
    from bert4keras.layers import PositionEmbedding, SinusoidalPositionEmbedding

    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    learned = PositionEmbedding(input_dim=8, output_dim=4, merge_mode=merge_mode)
    fixed = SinusoidalPositionEmbedding(output_dim=4, merge_mode=merge_mode)
    for layer in (learned, fixed):
        out = np_(layer(x))
        if layer is learned:
            table = np_(learned.embeddings)[:5][None]
        else:
            table = np_(sinusoidal_embeddings(keras.ops.arange(5)[None], 4))
        expected = {"add": lambda: x + table, "mul": lambda: x * (table + 1.0),
                    "zero": lambda: np.broadcast_to(table, out.shape),
                    "concat": lambda: np.concatenate([x, np.broadcast_to(table, x.shape)], -1)}[merge_mode]()
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
