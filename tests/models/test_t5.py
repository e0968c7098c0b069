"""The T5 family (T5.1.0, T5.1.1, mT5.1.1): parity with HF transformers on small random
models for the whole model, the encoder and the stand-alone decoder; relative position
buckets, causality, Google-checkpoint round trips, Keras saving, bad input, registry."""

import json

import numpy as np
import pytest
from harness import (
    SMALL_CONFIG, TOLERANCE, Case, check_checkpoint_round_trip, check_keras_save_load,
    check_outputs_do_not_depend_on_later_tokens, check_token_ids_outside_the_vocabulary,
    padded_ids, relative_error, run, to_numpy,
)

from bert4keras.models import MODELS, build_transformer_model

VOCAB = 40

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
    import torch

    hf.lm_head = torch.nn.Linear(hf.config.d_model, hf.config.vocab_size, bias=False)
    torch.nn.init.normal_(hf.lm_head.weight, std=hf.config.d_model ** -0.5)
    hf.config.scale_decoder_outputs = False
    hf.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    config.update(tie_word_embeddings=False)
    (path / "config.json").write_text(json.dumps(config))


def t5(tmp, name):
    """A random HF T5 variant saved to ``tmp``; references: its logits on a padded
    encoder/decoder batch ("logits") and its encoder's last hidden states ("encoder")."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
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
    enc, _ = padded_ids(rng, [11, 6], 11, VOCAB)
    dec, dec_valid = padded_ids(rng, [9, 4], 9, VOCAB, start=0)  # 0 is T5's decoder start token
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(enc), attention_mask=torch.tensor((enc != 0).astype("int64")),
                 decoder_input_ids=torch.tensor(dec),
                 decoder_attention_mask=torch.tensor(dec_valid.astype("int64")))
    return Case(name, dict(config_path=str(tmp / "config.json"), checkpoint_path=str(tmp), model=name,
                           with_lm="linear"),
                {"logits": out.logits.numpy(), "encoder": out.encoder_last_hidden_state.numpy()},
                inputs=[enc, dec], valid=dec_valid, hf_path=tmp)


ZOO = {name: (lambda tmp, name=name: t5(tmp, name)) for name in T5_VARIANTS}


def assert_matches(ours, reference, valid, label):
    error = relative_error(ours, reference, valid, floor=1e-3)
    assert error <= TOLERANCE, f"{label}: relative error {error}"


def test_parity(case):
    """The whole model, its encoder (at real encoder tokens: ids are never 0 there) and
    its stand-alone decoder match HF."""
    t = case.transformer
    expected = {"t5.1.0": "t5.1.0", "t5": "t5.1.1", "mt5.1.1": "mt5.1.1"}[case.name]
    assert t.version == expected
    assert ("Decoder-Output-LM" in t.layers) == (expected != "t5.1.0")
    ours = to_numpy(t.model.predict(case.inputs, verbose=0))
    assert_matches(ours, case.expected["logits"], case.valid, case.name)
    enc, dec = case.inputs
    assert_matches(run(t.encoder, [enc]), case.expected["encoder"], enc != 0, f"{case.name} encoder")
    # The stand-alone decoder sees no encoder padding mask: compare the unpadded row.
    context = run(t.encoder, [enc[:1]])
    assert_matches(run(t.decoder, [context, dec[:1]]), case.expected["logits"][:1], case.valid[:1],
                   f"{case.name} decoder on the encoder's output")


def test_checkpoint_round_trip(case, tmp_path):
    check_checkpoint_round_trip(case, tmp_path)


def test_keras_save_load(case, tmp_path):
    check_keras_save_load(case, tmp_path)


@pytest.mark.parametrize("case", ["t5.1.0"], indirect=True)
def test_outputs_do_not_depend_on_later_tokens(case):
    check_outputs_do_not_depend_on_later_tokens(case, VOCAB)


@pytest.mark.parametrize("case", ["t5.1.0"], indirect=True)
def test_token_ids_outside_the_vocabulary(case):
    check_token_ids_outside_the_vocabulary(case, VOCAB)


@pytest.mark.parametrize("case", ["t5.1.0"], indirect=True)
def test_loads_hf_encoder_model_checkpoint(case, tmp_path):
    """A ``T5EncoderModel`` directory loads into ``t5.1.0_encoder``."""
    transformers = pytest.importorskip("transformers")
    transformers.T5EncoderModel.from_pretrained(case.hf_path).save_pretrained(tmp_path)
    encoder = Case("T5EncoderModel", dict(config_path=str(tmp_path / "config.json"),
                                          checkpoint_path=str(tmp_path), model="t5.1.0_encoder"), {})
    encoder.build()
    enc = case.inputs[0]
    assert_matches(run(encoder.model, [enc]), case.expected["encoder"], enc != 0, "T5EncoderModel")


@pytest.mark.parametrize("case", ["t5.1.0"], indirect=True)
def test_encoder_decoder_without_decoder_inputs(case):
    enc = case.inputs[0]
    with pytest.raises(ValueError, match="Decoder-Input-Token"):
        case.model.predict(enc, verbose=0)
    with pytest.raises(ValueError, match="missing input.*Decoder-Input-Token"):
        case.model.predict({"Encoder-Input-Token": enc}, verbose=0)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_relative_bias_rows_for_a_query_offset(bidirectional):
    """``q_offset`` gives the bias rows of queries at absolute positions (step-wise decoding)."""
    from bert4keras.layers import RelativePositionEmbeddingT5

    layer = RelativePositionEmbeddingT5(8, 3, max_distance=20, bidirectional=bidirectional,
                                        embeddings_initializer="random_normal")
    q, k = np.zeros((1, 12, 4), "float32"), np.zeros((1, 12, 4), "float32")
    full = to_numpy(layer([q, k]))
    assert full.shape == (12, 12, 3)
    np.testing.assert_array_equal(to_numpy(layer([q[:, :2], k], q_offset=7)), full[7:9])
    buckets = to_numpy(layer.compute_position_ids([np.zeros((1, 12, 1)), np.zeros((1, 12, 1))]))
    upper = buckets[np.triu_indices(12, 1)]
    assert (upper >= 4).all() if bidirectional else (upper == 0).all()


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
                    build_transformer_model(model=name, application=application, **SMALL_CONFIG)
    decoder = build_transformer_model(model="mt5.1.1_decoder", with_lm="linear",
                                      hidden_act=["gelu_tanh", "linear"], **SMALL_CONFIG)
    assert [i.name for i in decoder.inputs] == ["Input-Context", "Decoder-Input-Token"]
    assert decoder.output.shape[-1] == 50
    with pytest.raises(ValueError, match="segment ids"):
        build_transformer_model(model="gpt2", application="unilm", **SMALL_CONFIG)
