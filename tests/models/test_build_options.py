"""Every build option of bert4keras's ``build_transformer_model`` on the encoder models.

Numerical checks use the numpy forward passes of harness.py on random checkpoints
under Google names; options that do not apply to a model must raise.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from harness import (
    ENCODER_CONFIG, IDS, SEGS, TOLERANCE, VALID, bert_encoder, bert_heads, predict,
    random_bert_weights, relative_error, softmax, to_numpy, write_checkpoint,
)

from bert4keras.checkpoints import CheckpointError
from bert4keras.layers import GlobalAveragePooling1D, MultiHeadAttention, TalkingHeadsAttention
from bert4keras.models import BERT, RoFormer, Transformer, build_transformer_model


@pytest.fixture(scope="module")
def bert_checkpoint(tmp_path_factory):
    """(weights, config path, checkpoint prefix) of a random BERT with pooler, NSP and MLM."""
    weights = random_bert_weights(10, heads=True)
    rng = np.random.default_rng(11)
    weights["cls/seq_relationship/output_weights"] = rng.normal(0, 0.3, (2, 32)).astype("float32")
    weights["cls/seq_relationship/output_bias"] = rng.normal(0, 0.3, (2,)).astype("float32")
    config = {**ENCODER_CONFIG, "hidden_act": "gelu"}
    return (weights,) + write_checkpoint(tmp_path_factory.mktemp("bert"), weights, config)


@pytest.fixture(scope="module")
def roformer_checkpoint(tmp_path_factory):
    """(weights, config path, checkpoint prefix) of a random RoFormer (no position table)."""
    weights = random_bert_weights(12, positions=0, heads=True)
    config = {**ENCODER_CONFIG, "hidden_act": "gelu"}
    return (weights,) + write_checkpoint(tmp_path_factory.mktemp("roformer"), weights, config)


def build(checkpoint, **kwargs):
    _, config_path, prefix = checkpoint
    return build_transformer_model(config_path, prefix, **kwargs)


def test_pool_nsp_and_mlm_heads(bert_checkpoint):
    """with_pool='linear' / with_mlm=True, and with_nsp, against the numpy reference."""
    weights = bert_checkpoint[0]
    hidden = bert_encoder(weights, IDS, SEGS, heads=4, layers=2, positions="absolute")
    pool, logits = bert_heads(weights, hidden)
    linear_pool = np.arctanh(pool)
    nsp = softmax(pool @ weights["cls/seq_relationship/output_weights"].T
                  + weights["cls/seq_relationship/output_bias"])
    got_pool, got_mlm = predict(build(bert_checkpoint, with_pool="linear", with_mlm=True))
    assert relative_error(got_pool, linear_pool, VALID) <= TOLERANCE
    assert relative_error(got_mlm, softmax(logits), VALID) <= TOLERANCE
    got_nsp = predict(build(bert_checkpoint, with_nsp=True))[0]
    assert relative_error(got_nsp, nsp, VALID) <= TOLERANCE


def electra_names(weights):
    """The same checkpoint under ELECTRA's generator names."""
    renamed = {}
    for name, value in weights.items():
        name = name.replace("bert/", "electra/").replace("cls/predictions/transform/",
                                                        "generator_predictions/")
        renamed[name.replace("cls/predictions/output_bias", "generator_predictions/output_bias")] = value
    return renamed


@pytest.mark.parametrize("model", ["bert", "electra", "roformer_v2"])
def test_keep_and_compound_tokens(model, tmp_path):
    """keep_tokens selects vocabulary rows, compound_tokens appends averages of rows (ids
    of the kept vocabulary); MLM logits equal the reference on the edited checkpoint."""
    keep, compound = [0, 1, 2, 3, 8, 9, 11, 15, 27, 42], [[4, 5], [6, 7, 8]]  # new ids
    if model == "roformer_v2":
        weights = random_bert_weights(13, positions=0, biases=False, norms=False)
    else:
        weights = random_bert_weights(13, heads=True)
    edited = dict(weights)
    for name in ("bert/embeddings/word_embeddings", "cls/predictions/output_bias"):
        if name in weights:
            table = weights[name][keep]
            edited[name] = np.concatenate([table, [table[c].mean(0) for c in compound]])
    ids = np.searchsorted(keep, IDS)
    ids[1, 3:5] = [10, 11]  # the two compound tokens
    if model == "roformer_v2":
        hidden = bert_encoder(edited, ids, SEGS, heads=4, layers=2, positions="rotary", norm="rms",
                              act=lambda x: np.maximum(x, 0))
        expected = hidden @ edited["bert/embeddings/word_embeddings"].T
    else:
        hidden = bert_encoder(edited, ids, SEGS, heads=4, layers=2, positions="absolute")
        expected = bert_heads(edited, hidden)[1]
    stored = electra_names(weights) if model == "electra" else weights
    config = {**ENCODER_CONFIG, "hidden_act": "relu" if model == "roformer_v2" else "gelu"}
    config_path, prefix = write_checkpoint(tmp_path, stored, config)
    got = predict(build_transformer_model(config_path, prefix, model=model, with_mlm="linear",
                                          keep_tokens=keep, compound_tokens=compound), ids)[0]
    assert got.shape == (2, 8, len(keep) + len(compound))
    assert relative_error(got, expected, VALID) <= TOLERANCE


@pytest.mark.parametrize("model", ["bert", "albert"])
def test_hierarchical_position(model):
    """Positions beyond max_position decompose as (i // n, i % n) (kexue.fm/archives/7947):
    ``e_i = a q_(i//n) + (1-a) q_(i%n)``, ``q = (p - a p_0) / (1 - a)``, a = 0.4;
    the first n positions keep the trained table."""
    transformer = build_transformer_model(model=model, **{**ENCODER_CONFIG, "max_position_embeddings": 8},
                                          hierarchical_position=True, return_keras_model=False)
    layer = transformer.layers["Embedding-Position"]
    table = to_numpy(layer.embeddings)
    q = (table - 0.4 * table[:1]) / 0.6
    i = np.arange(20)
    expected = 0.4 * q[i // 8] + 0.6 * q[i % 8]
    got = to_numpy(layer(np.zeros((1, 20, table.shape[1]), "float32")))[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got[:8], table, rtol=0, atol=1e-5)
    ids = np.tile(IDS, (1, 3))[:, :20]
    assert predict(transformer.model, ids, np.zeros_like(ids))[0].shape == (2, 20, 32)


def test_residual_attention_scores_bert(bert_checkpoint):
    """RealFormer on BERT: scores accumulate from layer to layer, as in the numpy reference."""
    hidden = bert_encoder(bert_checkpoint[0], IDS, SEGS, heads=4, layers=2, positions="absolute",
                          residual_scores=True)
    got = predict(build(bert_checkpoint, residual_attention_scores=True))[0]
    assert relative_error(got, hidden, VALID) <= TOLERANCE
    plain = predict(build(bert_checkpoint))[0]
    assert relative_error(plain, hidden, VALID) > 1e-3  # the option really changes the model


def test_residual_attention_scores_roformer(roformer_checkpoint):
    hidden = bert_encoder(roformer_checkpoint[0], IDS, SEGS, heads=4, layers=2, positions="rotary",
                          residual_scores=True)
    got = predict(build(roformer_checkpoint, model="roformer", residual_attention_scores=True))[0]
    assert relative_error(got, hidden, VALID) <= TOLERANCE


def test_residual_attention_scores_under_the_lm_mask(bert_checkpoint):
    """RealFormer with application='lm' keeps both the residual scores and the causal mask."""
    expected = bert_encoder(bert_checkpoint[0], IDS, SEGS, heads=4, layers=2, positions="absolute",
                            residual_scores=True, causal=True)
    model = build(bert_checkpoint, application="lm", residual_attention_scores=True)
    hidden = keras.Model(model.inputs, model.get_layer("MLM-Dense").input)
    assert relative_error(predict(hidden)[0], expected, VALID) <= TOLERANCE


@pytest.mark.parametrize("options", [{}, {"talking_heads": True}])
def test_residual_attention_scores_keep_the_causal_mask(options):
    """RealFormer with application='lm': no position ever sees a later token."""
    model = build_transformer_model(model="bert", application="lm", **ENCODER_CONFIG,
                                    residual_attention_scores=True, **options)
    ids, changed = IDS[1:], IDS[1:].copy()
    changed[0, 5:] = [70, 71, 72]
    before, after = predict(model, ids, SEGS[1:])[0], predict(model, changed, SEGS[1:])[0]
    np.testing.assert_array_equal(before[:, :5], after[:, :5])
    assert np.abs(before[:, 5:] - after[:, 5:]).max() > 1e-4


# --------------------------------------------------------------------------- key size and talking heads


def scores_reference(layer, x):
    q = np_dense_layer(layer.q_dense, x).reshape(x.shape[0], x.shape[1], layer.heads, -1)
    k = np_dense_layer(layer.k_dense, x).reshape(x.shape[0], x.shape[1], layer.heads, -1)
    return np.einsum("bjhd,bkhd->bhjk", q, k), q, k


def np_dense_layer(dense, x):
    kernel, bias = dense.get_weights()
    return x @ kernel + bias


def test_key_size_shapes_scale_and_rank():
    """Low-rank bottleneck (arXiv:2002.07028): q/k use key_size, v/o head_size; scores
    scaled by 1/sqrt(key_size); the per-head score matrix has rank <= key_size;
    key_size=None equals key_size=head_size."""
    x = np.random.default_rng(0).normal(size=(2, 10, 32)).astype("float32")
    layer = MultiHeadAttention(heads=4, head_size=8, key_size=16, return_attention_scores=True)
    o, a = layer([x, x, x])
    assert [tuple(w.shape) for w in layer.weights[::2]] == [(32, 64), (32, 64), (32, 32), (32, 32)]
    assert tuple(o.shape) == (2, 10, 32)
    raw = scores_reference(layer, x)[0]
    np.testing.assert_allclose(to_numpy(a), raw / 4, rtol=1e-4, atol=1e-4)

    low = MultiHeadAttention(heads=2, head_size=8, key_size=2, return_attention_scores=True)
    scores = to_numpy(low([x, x, x])[1])
    assert max(np.linalg.matrix_rank(s, tol=1e-4) for s in scores.reshape(-1, 10, 10)) <= 2
    high = MultiHeadAttention(heads=2, head_size=8, key_size=16, return_attention_scores=True)
    scores = to_numpy(high([x, x, x])[1])
    assert max(np.linalg.matrix_rank(s, tol=1e-4) for s in scores.reshape(-1, 10, 10)) == 10

    default = MultiHeadAttention(heads=4, head_size=8)
    explicit = MultiHeadAttention(heads=4, head_size=8, key_size=8)
    default([x, x, x])
    explicit([x, x, x])
    explicit.set_weights(default.get_weights())
    np.testing.assert_allclose(to_numpy(default([x, x, x])),
                               to_numpy(explicit([x, x, x])), atol=1e-6)


def test_attention_key_and_head_size_in_models(bert_checkpoint):
    """attention_key_size/attention_head_size reach every attention layer; a checkpoint of
    another key size is refused unless autoresize_weights=True."""
    transformer = build_transformer_model(bert_checkpoint[1], attention_key_size=16,
                                          attention_head_size=4, return_keras_model=False)
    attention = transformer.layers["Transformer-1-MultiHeadSelfAttention"]
    assert [tuple(w.shape) for w in attention.weights[::2]] == [(32, 64), (32, 64), (32, 16),
                                                                (16, 32)]
    with pytest.raises(CheckpointError, match="query/kernel"):
        build(bert_checkpoint, attention_key_size=16)
    resized = build(bert_checkpoint, attention_key_size=16, autoresize_weights=True)
    # The resize repeats column pairs, restores the norm and rescales q and k by
    # (new/old key size)^(1/4) each: every score q.k/sqrt(key_size) is the checkpoint's.
    expected = bert_encoder(bert_checkpoint[0], IDS, SEGS, heads=4, layers=2, positions="absolute")
    assert relative_error(predict(resized)[0], expected, VALID) <= TOLERANCE
    rotary = build_transformer_model(model="roformer", **ENCODER_CONFIG, attention_key_size=16)
    assert predict(rotary)[0].shape == (2, 8, 32)


def talking(heads=2, head_size=4, **kwargs):
    return TalkingHeadsAttention(heads=heads, head_size=head_size, **kwargs)


def test_talking_heads_identity_and_permutation():
    """Talking-heads (arXiv:2003.02436): identity mixing is vanilla attention (also with more mixtures than
    heads, as both mixings start as the identity); a permutation makes head i use head
    pi(i)'s probabilities with its own values."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    vanilla = MultiHeadAttention(heads=2, head_size=4)
    expected = to_numpy(vanilla([x, x, x]))
    for layer in (talking(), talking(num_mixtures=3)):
        layer([x, x, x])
        layer.set_weights(vanilla.get_weights() + layer.get_weights()[8:])
        np.testing.assert_allclose(to_numpy(layer([x, x, x])), expected,
                                   rtol=0, atol=1e-6)
    layer = talking()
    layer([x, x, x])
    layer.set_weights(vanilla.get_weights() + [np.array([[0, 1], [1, 0]], "float32")])
    scores, _, _ = scores_reference(layer, x)
    probs = softmax(scores[:, ::-1] / 2)
    v = np_dense_layer(layer.v_dense, x).reshape(2, 5, 2, 4)
    o = np.einsum("bhjk,bkhd->bjhd", probs, v).reshape(2, 5, 8)
    np.testing.assert_allclose(to_numpy(layer([x, x, x])),
                               np_dense_layer(layer.o_dense, o), rtol=0, atol=1e-5)


def test_talking_heads_masks_after_mixing():
    """With negative mixing weights and padding, masked keys get probability exactly 0:
    outputs ignore anything placed there, and nothing is NaN."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
    layer = talking(num_mixtures=3)
    layer([x, x, x], mask=[mask, mask, mask])
    weights = layer.get_weights()
    weights[8:] = [rng.normal(size=w.shape).astype("float32") for w in weights[8:]]
    layer.set_weights(weights)
    out = to_numpy(layer([x, x, x], mask=[mask, mask, mask]))
    noisy = np.where(mask[..., None], x, 1e3).astype("float32")
    out_noisy = to_numpy(layer([x, noisy, noisy], mask=[mask, mask, mask]))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, out_noisy, rtol=0, atol=1e-5)


def test_talking_heads_option(bert_checkpoint):
    """talking_heads=True swaps every attention layer; identity mixing keeps the checkpoint's
    outputs, and the mixing weights are not looked up in the checkpoint."""
    transformer = build(bert_checkpoint, talking_heads=True, return_keras_model=False)
    assert isinstance(transformer.layers["Transformer-0-MultiHeadSelfAttention"],
                      TalkingHeadsAttention)
    expected = bert_encoder(bert_checkpoint[0], IDS, SEGS, heads=4, layers=2, positions="absolute")
    assert relative_error(predict(transformer.model)[0], expected, VALID) <= TOLERANCE


# --------------------------------------------------------------------------- inputs and naming


def test_segment_vocab_size_zero_and_sequence_length(roformer_checkpoint):
    with pytest.warns(UserWarning, match="token_type_embeddings"):
        model = build(roformer_checkpoint, model="roformer", segment_vocab_size=0,
                      sequence_length=8)
    assert len(model.inputs) == 1 and tuple(model.inputs[0].shape) == (None, 8)
    assert predict(model)[0].shape == (2, 8, 32)


def test_prefix_name_and_return_transformer(bert_checkpoint):
    """prefix renames every layer (and still loads), name names the model, and
    return_keras_model=False returns the Transformer."""
    transformer = build(bert_checkpoint, prefix="Encoder-", name="encoder",
                        return_keras_model=False)
    assert isinstance(transformer, BERT)
    model = transformer.model
    assert model.name == "encoder"
    assert all(layer.name.startswith("Encoder-") for layer in model.layers)
    expected = bert_encoder(bert_checkpoint[0], IDS, SEGS, heads=4, layers=2, positions="absolute")
    assert relative_error(predict(model)[0], expected, VALID) <= TOLERANCE


@pytest.mark.parametrize("model", ["bert", "roformer"])
def test_layer_norm_cond(model, bert_checkpoint, roformer_checkpoint):
    """Conditional LayerNorm: the condition comes from an additional input; its projections
    start at zero, so the loaded model first behaves as the unconditional one."""
    checkpoint = bert_checkpoint if model == "bert" else roformer_checkpoint
    condition_input = keras.Input(shape=(4,), name="Condition")
    condition = keras.layers.Dense(6, name="Condition-Dense")(condition_input)
    transformer = build(checkpoint, model=model, layer_norm_cond=condition,
                        layer_norm_cond_hidden_size=8, layer_norm_cond_hidden_act="relu",
                        additional_input_layers=condition_input, return_keras_model=False)
    assert len(transformer.model.inputs) == 3
    norm = transformer.layers["Transformer-0-FeedForward-Norm"]
    assert norm.conditional and norm.hidden_dense.units == 8
    positions = "absolute" if model == "bert" else "rotary"
    expected = bert_encoder(checkpoint[0], IDS, SEGS, heads=4, layers=2, positions=positions)
    got = transformer.model([IDS, SEGS, np.ones((2, 4), "float32")])
    assert relative_error(to_numpy(got), expected, VALID) <= TOLERANCE


def test_custom_position_ids(roformer_checkpoint, bert_checkpoint):
    """Position ids 0..n-1 given as an input reproduce the default positions."""
    positions = np.tile(np.arange(8), (2, 1))
    for checkpoint, model in ((roformer_checkpoint, "roformer"), (bert_checkpoint, "bert")):
        default = predict(build(checkpoint, model=model))[0]
        custom = build(checkpoint, model=model, custom_position_ids=True)
        got = to_numpy(custom([IDS, SEGS, positions]))
        np.testing.assert_allclose(got, default, rtol=0, atol=1e-5)


class MeanPooledRoFormer(RoFormer):
    """A user model: RoFormer whose output is the masked mean of its hidden states."""

    def apply_final_layers(self, inputs):
        return self.apply(inputs=inputs, layer=GlobalAveragePooling1D, name="Mean-Pooling")


def test_model_class_argument(roformer_checkpoint):
    model = build(roformer_checkpoint, model=MeanPooledRoFormer)
    hidden = bert_encoder(roformer_checkpoint[0], IDS, SEGS, heads=4, layers=2, positions="rotary")
    mask = VALID[..., None]
    expected = (hidden * mask).sum(1) / mask.sum(1)
    assert relative_error(predict(model)[0], expected, VALID) <= TOLERANCE
    with pytest.raises(TypeError, match="Transformer subclass"):
        build_transformer_model(model=dict, **ENCODER_CONFIG)
    assert issubclass(MeanPooledRoFormer, Transformer)


# --------------------------------------------------------------------------- options that do not apply


@pytest.mark.parametrize("model, option, value", [
    ("roformer_v2", "with_nsp", True),
    ("roformer_v2", "with_pool", "linear"),
    ("gau_alpha", "with_pool", True),
    ("electra", "with_pool", True),
    ("electra", "with_nsp", True),
    ("nezha", "hierarchical_position", True),
    ("nezha", "custom_position_ids", True),
    ("roformer", "hierarchical_position", True),
    ("roformer_v2", "hierarchical_position", True),
    ("gau_alpha", "residual_attention_scores", True),
    ("gau_alpha", "talking_heads", True),
    ("nezha", "attention_key_size", 16),
])
def test_option_that_does_not_apply_is_an_error(model, option, value):
    config = {**ENCODER_CONFIG, "attention_key_size": 16} if model == "gau_alpha" else ENCODER_CONFIG
    with pytest.raises(ValueError, match=option if option != "attention_key_size" else "key_size"):
        build_transformer_model(model=model, **config, **{option: value})


@pytest.mark.parametrize("model", ["roformer_v2", "gau_alpha"])
def test_layer_norm_cond_rejected_without_norm_parameters(model):
    config = {**ENCODER_CONFIG, "attention_key_size": 16}
    condition = keras.Input(shape=(4,))
    with pytest.raises(ValueError, match="layer_norm_cond"):
        build_transformer_model(model=model, **config, layer_norm_cond=condition,
                                additional_input_layers=condition)
