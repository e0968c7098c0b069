"""GPT, GPT-2, GPT2_ML and the T5 family: parity with HF transformers on small random
models (GPT2_ML: a numpy forward pass, spec 12), causality, Google-checkpoint round
trips, Keras saving and bad input."""

import json
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import pytest

from bert4keras.checkpoints import write_tf_checkpoint
from bert4keras.models import MODELS, build_transformer_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

np_ = keras.ops.convert_to_numpy
VOCAB = 40


@dataclass
class Case:
    """One of our models with weights from a reference, and the reference's outputs."""

    name: str
    transformer: object
    rebuild: Callable  # a fresh, randomly initialised model of the same config
    inputs: list
    reference: np.ndarray
    valid: np.ndarray  # (batch, length) bool: positions compared
    encoder_reference: tuple = None
    hf_path: object = None


def run(model, inputs) -> np.ndarray:
    return np_(model(inputs, training=False))


def padded_ids(rng, lengths, total, start=None):
    """Random ids in [1, VOCAB) right-padded with 0, and the mask of real tokens."""
    ids = np.zeros((len(lengths), total), "int32")
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, VOCAB, n)
    if start is not None:
        ids[:, 0] = start
    return ids, np.arange(total)[None, :] < np.array(lengths)[:, None]


def build_from_hf(path, model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every HF weight must be used
        return build_transformer_model(str(path / "config.json"), str(path), model=model,
                                       return_keras_model=False, **kwargs)


def max_diff(ours, reference, valid, label) -> float:
    """Max abs difference at the compared positions; fails beyond 1e-4 of the output scale."""
    diff = float(np.abs(ours - reference)[valid].max())
    scale = float(np.abs(reference[valid]).max())
    assert diff <= 1e-4 * max(scale, 1e-3), f"{label}: max abs diff {diff} at output scale {scale}"
    return diff


def hf_logits(hf, **arrays) -> np.ndarray:
    with torch.no_grad():
        return hf(**{k: torch.tensor(v) for k, v in arrays.items()}).logits.numpy()


# --------------------------------------------------------------------------- cases


def make_gpt(tmp):
    torch.manual_seed(0)
    config = transformers.OpenAIGPTConfig(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=2,
                                          n_head=2, initializer_range=0.2)
    hf = transformers.OpenAIGPTLMHeadModel(config).eval()
    hf.save_pretrained(tmp)
    ids, valid = padded_ids(np.random.default_rng(0), [12, 7], 12)
    ref = hf_logits(hf, input_ids=ids, attention_mask=valid.astype("int64"))
    return Case("gpt", build_from_hf(tmp, "gpt", final_activation="linear"),
                lambda: build_transformer_model(str(tmp / "config.json"), model="gpt",
                                                final_activation="linear", return_keras_model=False),
                [ids], ref, valid, hf_path=tmp)


def make_gpt2(tmp):
    torch.manual_seed(1)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=2,
                                     n_head=2, initializer_range=0.2, bos_token_id=1, eos_token_id=2)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp)
    ids, valid = padded_ids(np.random.default_rng(1), [12, 5], 12)
    ref = hf_logits(hf, input_ids=ids, attention_mask=valid.astype("int64"))
    return Case("gpt2", build_from_hf(tmp, "gpt2", final_activation="linear"),
                lambda: build_transformer_model(str(tmp / "config.json"), model="gpt2",
                                                final_activation="linear", return_keras_model=False),
                [ids], ref, valid, hf_path=tmp)


T5_VARIANTS = {
    # our model name: (HF config class, HF model class, untied LM head, config overrides)
    "t5.1.0": ("T5Config", "T5ForConditionalGeneration", False, dict(feed_forward_proj="relu")),
    "t5": ("T5Config", "T5ForConditionalGeneration", True,  # version read from the config: t5.1.1
           dict(feed_forward_proj="gated-gelu", num_decoder_layers=3)),
    "mt5.1.1": ("MT5Config", "MT5ForConditionalGeneration", True,
                dict(feed_forward_proj="gated-gelu", num_decoder_layers=3)),
}


def untie_lm_head(hf, path):
    """Give ``hf`` its own LM head and mark the saved config untied, like the published
    T5.1.1/mT5 checkpoints (transformers 5 ties T5 heads unless told otherwise)."""
    hf.lm_head = torch.nn.Linear(hf.config.d_model, hf.config.vocab_size, bias=False)
    torch.nn.init.normal_(hf.lm_head.weight, std=hf.config.d_model ** -0.5)
    hf.config.scale_decoder_outputs = False
    hf.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    config.update(tie_word_embeddings=False)
    (path / "config.json").write_text(json.dumps(config))


def make_t5(tmp, name):
    config_class, model_class, untied, overrides = T5_VARIANTS[name]
    torch.manual_seed(2)
    config = getattr(transformers, config_class)(
        vocab_size=VOCAB, d_model=16, d_kv=6, d_ff=24, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0,
        decoder_start_token_id=0, pad_token_id=0, **overrides)
    hf = getattr(transformers, model_class)(config).eval()
    if untied:
        untie_lm_head(hf, tmp)
    else:
        hf.save_pretrained(tmp)
    rng = np.random.default_rng(2)
    enc, enc_valid = padded_ids(rng, [11, 6], 11)
    dec, dec_valid = padded_ids(rng, [9, 4], 9, start=0)  # 0 is T5's decoder start token
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(enc), attention_mask=torch.tensor(enc_valid.astype("int64")),
                 decoder_input_ids=torch.tensor(dec),
                 decoder_attention_mask=torch.tensor(dec_valid.astype("int64")))
    return Case(name, build_from_hf(tmp, name, with_lm="linear"),
                lambda: build_transformer_model(str(tmp / "config.json"), model=name,
                                                with_lm="linear", return_keras_model=False),
                [enc, dec], out.logits.numpy(), dec_valid,
                (out.encoder_last_hidden_state.numpy(), enc_valid), hf_path=tmp)


GPT2_ML_CONFIG = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, max_position=32)


def make_gpt2_ml(tmp):
    """GPT2_ML loaded from a random checkpoint in the official ``newslm/`` layout; the
    reference is :func:`gpt2_ml_numpy`."""
    def build():
        return build_transformer_model(model="gpt2_ml", final_activation="linear",
                                       return_keras_model=False, **GPT2_ML_CONFIG)

    t = build()
    rng = np.random.default_rng(3)
    tensors = {}
    for layer_name, names in t.variable_mapping().items():
        if layer_name in t.layers:
            for name, weight in zip(names, t.layers[layer_name].trainable_weights):
                tensors[name] = rng.normal(0, 0.3, tuple(weight.shape)).astype("float32")
    write_tf_checkpoint(str(tmp / "newslm.ckpt"), tensors)
    t.load_weights_from_checkpoint(str(tmp / "newslm.ckpt"))
    ids, valid = padded_ids(rng, [10, 10], 10)
    t.checkpoint_tensors = tensors
    return Case("gpt2_ml", t, build, [ids], gpt2_ml_numpy(tensors, ids), valid)


_MAKERS = {"gpt": make_gpt, "gpt2": make_gpt2, "gpt2_ml": make_gpt2_ml,
           **{name: (lambda tmp, name=name: make_t5(tmp, name)) for name in T5_VARIANTS}}


@pytest.fixture(scope="module", params=list(_MAKERS))
def case(request, tmp_path_factory):
    return _MAKERS[request.param](tmp_path_factory.mktemp(request.param.replace(".", "_")))


def pick(name):
    return pytest.mark.parametrize("case", [name], indirect=True)


# --------------------------------------------------------------------------- GPT2_ML reference


def _layer_norm(x, beta, gamma, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def gpt2_ml_numpy(w, ids, heads=2):
    """Spec 12's block order in numpy: Emb+Pos -> LN; per layer a = MHA(x, causal),
    x1 = x + a, f = FFN(LN0(x1)), LN1(x1 + f); logits = h E^T."""
    n = ids.shape[1]
    x = w["newslm/embeddings/word_embed"][ids] + w["newslm/embeddings/pos_embed"][:n]
    x = _layer_norm(x, w["newslm/embeddings/LayerNorm_embed_norm/beta"],
                    w["newslm/embeddings/LayerNorm_embed_norm/gamma"])
    causal = np.tril(np.ones((n, n), bool))
    for i in range(GPT2_ML_CONFIG["num_hidden_layers"]):
        p = f"newslm/layer{i:02d}/"

        def dense(h, name):
            return h @ w[p + name + "/kernel"] + w[p + name + "/bias"]

        q, k, v = (dense(x, f"{part}_layer").reshape(*x.shape[:2], heads, -1)
                   for part in ("query", "key", "value"))
        scores = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        scores = np.where(causal, scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        a = np.einsum("bhqk,bkhd->bqhd", probs, v).reshape(x.shape)
        x1 = x + dense(a, "context_projection_layer")
        f = dense(_gelu(dense(_layer_norm(x1, w[p + "LayerNorm_mlp_ln0/beta"],
                                          w[p + "LayerNorm_mlp_ln0/gamma"]), "intermediate")), "output")
        x = _layer_norm(x1 + f, w[p + "LayerNorm_mlp_ln1/beta"], w[p + "LayerNorm_mlp_ln1/gamma"])
    return x @ w["newslm/embeddings/word_embed"].T


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("case", ["gpt", "gpt2", "gpt2_ml"], indirect=True)
def test_decoder_only_matches_reference(case):
    ours = np_(case.transformer.model.predict(case.inputs, verbose=0))  # the compiled path
    max_diff(ours, case.reference, case.valid, case.name)
    assert [i.name for i in case.transformer.model.inputs] == ["Input-Token"]


@pick("gpt")
def test_gpt_shared_segment_embeddings_match_hf_token_type_ids(case):
    """Segment ids embedded with the token table, as HF's ``token_type_ids`` (CDial-GPT
    style: the segments are speaker-token ids, so 0 stays the padding id)."""
    hf = transformers.OpenAIGPTLMHeadModel.from_pretrained(case.hf_path).eval()
    ids, valid = case.inputs[0], case.valid
    segments = np.where(np.arange(ids.shape[1])[None, :] >= 6, 2, 1).astype("int32") * valid
    ref = hf_logits(hf, input_ids=ids, token_type_ids=segments, attention_mask=valid.astype("int64"))
    t = build_from_hf(case.hf_path, "gpt", final_activation="linear",
                      segment_vocab_size=2, shared_segment_embeddings=True)
    max_diff(run(t.model, [ids, segments]), ref, valid, "gpt with segments")


@pytest.mark.parametrize("case", list(T5_VARIANTS), indirect=True)
def test_t5_matches_hf(case):
    t = case.transformer
    expected = {"t5.1.0": "t5.1.0", "t5": "t5.1.1", "mt5.1.1": "mt5.1.1"}[case.name]
    assert t.version == expected
    assert ("Decoder-Output-LM" in t.layers) == (expected != "t5.1.0")
    ours = np_(t.model.predict(case.inputs, verbose=0))
    max_diff(ours, case.reference, case.valid, case.name)
    enc, dec = case.inputs
    reference, valid = case.encoder_reference
    max_diff(run(t.encoder, [enc]), reference, valid, f"{case.name} encoder")
    # The stand-alone decoder sees no encoder padding mask: compare the unpadded row.
    context = run(t.encoder, [enc[:1]])
    max_diff(run(t.decoder, [context, dec[:1]]), case.reference[:1], case.valid[:1],
             f"{case.name} decoder on the encoder's output")


@pytest.mark.parametrize("case", ["gpt", "gpt2", "t5.1.0"], indirect=True)
def test_loads_hf_base_model_checkpoints(case, tmp_path):
    """``OpenAIGPTModel``/``GPT2Model``/``T5EncoderModel`` directories (no head, no
    ``transformer.`` prefix) load into the same layers."""
    if case.name == "t5.1.0":
        transformers.T5EncoderModel.from_pretrained(case.hf_path).save_pretrained(tmp_path)
        t = build_from_hf(tmp_path, "t5.1.0_encoder")
        reference, valid = case.encoder_reference
        max_diff(run(t.model, [case.inputs[0]]), reference, valid, "T5EncoderModel")
        return
    head_class = {"gpt": "OpenAIGPTLMHeadModel", "gpt2": "GPT2LMHeadModel"}[case.name]
    getattr(transformers, head_class).from_pretrained(case.hf_path).transformer.save_pretrained(tmp_path)
    t = build_from_hf(tmp_path, case.name, final_activation="linear")
    max_diff(run(t.model, case.inputs), case.reference, case.valid, f"{case.name} base model")


@pick("gpt2_ml")
def test_gpt2_ml_structure_and_loaded_weights(case):
    """Spec 12: layer names, tied output (no output kernel), every weight from its variable."""
    t = case.transformer
    names = set(t.layers)
    assert {"Embedding-Norm", "Transformer-0-FeedForward-Norm-0",
            "Transformer-0-FeedForward-Norm-1"} <= names
    assert "Embedding-Segment" not in names
    for layer_name, variables in t.variable_mapping().items():
        for variable, weight in zip(variables, t.layers[layer_name].trainable_weights):
            np.testing.assert_array_equal(np_(weight), t.checkpoint_tensors[variable])
    V, H, L, I, P = 50, 16, 2, 32, 32
    per_layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
    assert t.model.count_params() == V * H + P * H + 2 * H + L * per_layer
    V, H, L, I, P = 8021, 1536, 48, 6144, 1024  # the released 1.5B "mega" model
    per_layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
    assert V * H + P * H + 2 * H + L * per_layer == 1_373_809_152
    first = t.apply(layer=keras.layers.Dense, units=4, name="X")  # a name is created once ...
    assert t.apply(layer=keras.layers.Dense, units=4, name="X") is first  # ... then re-used
    probs = np_(build_transformer_model(model="gpt2_ml", **GPT2_ML_CONFIG)(case.inputs))
    assert probs.shape == (2, 10, 50)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_relative_bias_rows_for_a_query_offset(bidirectional):
    """``q_offset`` gives the bias rows of queries at absolute positions (step-wise decoding)."""
    from bert4keras.layers import RelativePositionEmbeddingT5

    layer = RelativePositionEmbeddingT5(8, 3, max_distance=20, bidirectional=bidirectional,
                                        embeddings_initializer="random_normal")
    q, k = np.zeros((1, 12, 4), "float32"), np.zeros((1, 12, 4), "float32")
    full = np_(layer([q, k]))
    assert full.shape == (12, 12, 3)
    np.testing.assert_array_equal(np_(layer([q[:, :2], k], q_offset=7)), full[7:9])
    buckets = np_(layer.compute_position_ids(12, 12))
    upper = buckets[np.triu_indices(12, 1)]
    assert (upper >= 4).all() if bidirectional else (upper == 0).all()


@pytest.mark.parametrize("case", ["gpt", "gpt2", "gpt2_ml", "t5.1.0"], indirect=True)
def test_outputs_do_not_depend_on_later_tokens(case):
    inputs = [a[:1].copy() for a in case.inputs]  # the unpadded row
    before = run(case.transformer.model, inputs)
    tokens = inputs[-1]  # the (decoder) token ids
    t = 4
    tokens[0, t + 1:] = np.random.default_rng(5).integers(1, VOCAB, tokens.shape[1] - t - 1)
    after = run(case.transformer.model, inputs)
    np.testing.assert_allclose(after[:, :t + 1], before[:, :t + 1], atol=1e-5)
    assert not np.allclose(after[:, t + 1:], before[:, t + 1:], atol=1e-3)


# --------------------------------------------------------------------------- checkpoints and saving


def test_google_checkpoint_round_trip(case, tmp_path):
    """``save_weights_as_checkpoint`` writes every weight under its Google name, and a
    fresh model loaded from that prefix (strictly, all variables used) is identical."""
    t = case.transformer
    mapped = {weight.path for name, variables in t.variable_mapping().items() if name in t.layers
              for weight in t.layers[name].trainable_weights[:len(variables)]}
    assert mapped == {weight.path for weight in t.model.trainable_weights}
    prefix = str(tmp_path / "model.ckpt")
    t.save_weights_as_checkpoint(prefix)
    fresh = case.rebuild()
    expected = run(t.model, case.inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh.load_weights_from_checkpoint(prefix)
    np.testing.assert_array_equal(run(fresh.model, case.inputs), expected)


def test_keras_save_and_load_without_custom_objects(case, tmp_path):
    path = str(tmp_path / "model.keras")
    case.transformer.model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(case.transformer.model)
    np.testing.assert_array_equal(run(loaded, case.inputs), run(case.transformer.model, case.inputs))


# --------------------------------------------------------------------------- bad input


@pick("t5.1.0")
def test_encoder_decoder_without_decoder_inputs(case):
    model = case.transformer.model
    enc = case.inputs[0]
    with pytest.raises(ValueError, match="Decoder-Input-Token"):
        model.predict(enc, verbose=0)
    with pytest.raises(ValueError, match="missing input.*Decoder-Input-Token"):
        model.predict({"Encoder-Input-Token": enc}, verbose=0)


@pytest.mark.parametrize("case", ["gpt2", "t5.1.0"], indirect=True)
def test_token_ids_outside_the_vocabulary(case):
    for bad_id in (VOCAB, -1):
        inputs = [a.copy() for a in case.inputs]
        inputs[-1][0, 2] = bad_id
        name = case.transformer.model.inputs[-1].name
        with pytest.raises(ValueError, match=f"{name}.*token id {bad_id}.*vocabulary \\[0, {VOCAB}\\)"):
            case.transformer.model.predict(inputs, verbose=0)


# --------------------------------------------------------------------------- registry


def test_registry_names_versions_and_applications():
    from bert4keras.models import T5, T5_Decoder, T5_Encoder

    for version in ("t5", "t5.1.0", "t5.1.1", "mt5.1.1"):
        for suffix, cls in (("", T5), ("_encoder", T5_Encoder), ("_decoder", T5_Decoder)):
            name = version + suffix
            assert MODELS[name] is cls
            expected = "t5.1.0" if version == "t5" else version
            assert cls.normalize_config({}, name).get("version", "t5.1.0") == expected
            for application in ("lm", "unilm"):
                with pytest.raises(ValueError, match="can not be used"):
                    build_transformer_model(model=name, application=application, **GPT2_ML_CONFIG)
    decoder = build_transformer_model(model="mt5.1.1_decoder", with_lm="linear",
                                      hidden_act=["gelu_tanh", "linear"], **GPT2_ML_CONFIG)
    assert [i.name for i in decoder.inputs] == ["Input-Context", "Decoder-Input-Token"]
    assert decoder.output.shape[-1] == 50
    with pytest.raises(ValueError, match="segment ids"):
        build_transformer_model(model="gpt2", application="unilm", **GPT2_ML_CONFIG)
