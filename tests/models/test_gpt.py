"""The decoder-only models: GPT and GPT-2 (parity with HF transformers on small random
models) and GPT2_ML (a numpy forward pass of its block order); causality,
Google-checkpoint round trips, Keras saving and bad input."""

import math

import keras
import numpy as np
import pytest
from harness import (
    SMALL_CONFIG, TOLERANCE, Case, check_checkpoint_round_trip, check_keras_save_load,
    check_outputs_do_not_depend_on_later_tokens, check_token_ids_outside_the_vocabulary, gelu,
    layer_norm, masked_softmax, padded_ids, relative_error, run, run_hf, to_numpy,
)

from bert4keras.checkpoints import write_tf_checkpoint
from bert4keras.models import build_transformer_model

VOCAB = 40
GPT2_ML_CONFIG = SMALL_CONFIG


def gpt2_ml_forward(w, ids, heads=2):
    """GPT2_ML's block order (github.com/imcaspar/gpt2-ml): Emb+Pos -> LN; per layer
    a = MHA(x, causal), x1 = x + a, f = FFN(LN0(x1)), LN1(x1 + f); logits = h E^T."""
    n = ids.shape[1]
    x = w["newslm/embeddings/word_embed"][ids] + w["newslm/embeddings/pos_embed"][:n]
    x = layer_norm(x, w["newslm/embeddings/LayerNorm_embed_norm/gamma"],
                   w["newslm/embeddings/LayerNorm_embed_norm/beta"], 1e-5)
    causal = np.tril(np.ones((n, n), bool))
    for i in range(GPT2_ML_CONFIG["num_hidden_layers"]):
        p = f"newslm/layer{i:02d}/"

        def dense(h, name):
            return h @ w[p + name + "/kernel"] + w[p + name + "/bias"]

        q, k, v = (dense(x, f"{part}_layer").reshape(*x.shape[:2], heads, -1)
                   for part in ("query", "key", "value"))
        scores = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        probs = masked_softmax(scores, causal)
        a = np.einsum("bhqk,bkhd->bqhd", probs, v).reshape(x.shape)
        x1 = x + dense(a, "context_projection_layer")
        ln0 = layer_norm(x1, w[p + "LayerNorm_mlp_ln0/gamma"], w[p + "LayerNorm_mlp_ln0/beta"], 1e-5)
        f = dense(gelu(dense(ln0, "intermediate")), "output")
        x = layer_norm(x1 + f, w[p + "LayerNorm_mlp_ln1/gamma"], w[p + "LayerNorm_mlp_ln1/beta"], 1e-5)
    return x @ w["newslm/embeddings/word_embed"].T


# --------------------------------------------------------------------------- the zoo


def hf_decoder(tmp, name, seed, config_class, model_class, lengths, **config):
    """A random HF decoder saved to ``tmp``, and its logits on a padded batch."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    hf_config = getattr(transformers, config_class)(vocab_size=VOCAB, n_positions=16, n_embd=16,
                                                    n_layer=2, n_head=2, initializer_range=0.2, **config)
    hf = getattr(transformers, model_class)(hf_config).eval()
    hf.save_pretrained(tmp)
    ids, valid = padded_ids(np.random.default_rng(seed), lengths, 12, VOCAB)
    logits = run_hf(hf, input_ids=ids, attention_mask=valid.astype("int64")).logits.numpy()
    return Case(name, dict(config_path=str(tmp / "config.json"), checkpoint_path=str(tmp), model=name,
                           final_activation="linear"),
                {"logits": logits}, inputs=[ids], valid=valid, hf_path=tmp)


def gpt2_ml(tmp):
    """GPT2_ML loaded from a random checkpoint in the official ``newslm/`` layout."""
    t = build_transformer_model(model="gpt2_ml", return_keras_model=False, **GPT2_ML_CONFIG)
    rng = np.random.default_rng(3)
    tensors = {}
    for layer_name, names in t.variable_mapping().items():
        if layer_name in t.layers:
            for name, weight in zip(names, t.layers[layer_name].trainable_weights):
                tensors[name] = rng.normal(0, 0.3, tuple(weight.shape)).astype("float32")
    prefix = write_tf_checkpoint(str(tmp / "newslm.ckpt"), tensors)
    ids, valid = padded_ids(rng, [10, 10], 10, VOCAB)
    return Case("gpt2_ml", dict(model="gpt2_ml", checkpoint_path=prefix, final_activation="linear",
                                **GPT2_ML_CONFIG),
                {"logits": gpt2_ml_forward(tensors, ids)}, inputs=[ids], valid=valid, weights=tensors)


ZOO = {
    "gpt": lambda tmp: hf_decoder(tmp, "gpt", 0, "OpenAIGPTConfig", "OpenAIGPTLMHeadModel", [12, 7]),
    "gpt2": lambda tmp: hf_decoder(tmp, "gpt2", 1, "GPT2Config", "GPT2LMHeadModel", [12, 5],
                                   bos_token_id=1, eos_token_id=2),
    "gpt2_ml": gpt2_ml,
}


def test_parity(case):
    """Logits match the reference at real tokens, on the compiled ``predict`` path."""
    ours = to_numpy(case.model.predict(case.inputs, verbose=0))
    error = relative_error(ours, case.expected["logits"], case.valid, floor=1e-3)
    assert error <= TOLERANCE, error
    assert [i.name for i in case.model.inputs] == ["Input-Token"]


def test_outputs_do_not_depend_on_later_tokens(case):
    check_outputs_do_not_depend_on_later_tokens(case, VOCAB)


def test_checkpoint_round_trip(case, tmp_path):
    check_checkpoint_round_trip(case, tmp_path)


def test_keras_save_load(case, tmp_path):
    check_keras_save_load(case, tmp_path)


@pytest.mark.parametrize("case", ["gpt2"], indirect=True)
def test_token_ids_outside_the_vocabulary(case):
    check_token_ids_outside_the_vocabulary(case, VOCAB)


@pytest.mark.parametrize("case", ["gpt"], indirect=True)
def test_gpt_shared_segment_embeddings_match_hf_token_type_ids(case):
    """Segment ids embedded with the token table, as HF's ``token_type_ids`` (CDial-GPT
    style: the segments are speaker-token ids, so 0 stays the padding id)."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.OpenAIGPTLMHeadModel.from_pretrained(case.hf_path).eval()
    ids, valid = case.inputs[0], case.valid
    segments = np.where(np.arange(ids.shape[1])[None, :] >= 6, 2, 1).astype("int32") * valid
    ref = run_hf(hf, input_ids=ids, token_type_ids=segments,
                 attention_mask=valid.astype("int64")).logits.numpy()
    segmented = Case("gpt with segments", {**case.kwargs, "segment_vocab_size": 2,
                                           "shared_segment_embeddings": True}, {})
    segmented.build()
    error = relative_error(run(segmented.model, [ids, segments]), ref, valid, floor=1e-3)
    assert error <= TOLERANCE, error


@pytest.mark.parametrize("case", ["gpt", "gpt2"], indirect=True)
def test_loads_hf_base_model_checkpoints(case, tmp_path):
    """``OpenAIGPTModel``/``GPT2Model`` directories (no head, no ``transformer.`` prefix)
    load into the same layers."""
    transformers = pytest.importorskip("transformers")
    head_class = {"gpt": "OpenAIGPTLMHeadModel", "gpt2": "GPT2LMHeadModel"}[case.name]
    getattr(transformers, head_class).from_pretrained(case.hf_path).transformer.save_pretrained(tmp_path)
    base = Case(f"{case.name} base model", {**case.kwargs, "config_path": str(tmp_path / "config.json"),
                                            "checkpoint_path": str(tmp_path)}, {})
    base.build()
    error = relative_error(run(base.model, case.inputs), case.expected["logits"], case.valid, floor=1e-3)
    assert error <= TOLERANCE, error


@pytest.mark.parametrize("case", ["gpt2_ml"], indirect=True)
def test_gpt2_ml_structure_and_loaded_weights(case):
    """Layer names, tied output (no output kernel), every weight from its variable."""
    t = case.transformer
    names = set(t.layers)
    assert {"Embedding-Norm", "Transformer-0-FeedForward-Norm-0",
            "Transformer-0-FeedForward-Norm-1"} <= names
    assert "Embedding-Segment" not in names
    for layer_name, variables in t.variable_mapping().items():
        for variable, weight in zip(variables, t.layers[layer_name].trainable_weights):
            np.testing.assert_array_equal(to_numpy(weight), case.weights[variable])
    V, H, L, I, P = 50, 16, 2, 32, 32
    per_layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
    assert t.model.count_params() == V * H + P * H + 2 * H + L * per_layer
    V, H, L, I, P = 8021, 1536, 48, 6144, 1024  # the released 1.5B "mega" model
    per_layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
    assert V * H + P * H + 2 * H + L * per_layer == 1_373_809_152
    first = t.apply(layer=keras.layers.Dense, units=4, name="X")  # a name is created once ...
    assert t.apply(layer=keras.layers.Dense, units=4, name="X") is first  # ... then re-used
    probs = to_numpy(build_transformer_model(model="gpt2_ml", **GPT2_ML_CONFIG)(case.inputs))
    assert probs.shape == (2, 10, 50)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
