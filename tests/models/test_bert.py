"""The BERT family: BERT on the real MiniLM weights (parity with HF BertModel, heads,
saving, bad input), and the ALBERT, ALBERT_Unshared, NEZHA and ELECTRA entries of the
zoo: each proven against HF transformers where it has the architecture (random HF
models written as safetensors), else a numpy forward pass fed by a random checkpoint
under the official Google names; each also round-trips through a TF checkpoint and
``model.save``."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from harness import (
    ENCODER_CONFIG, IDS, SEGS, SMALL_CONFIG, TOLERANCE, VALID, Case, bert_encoder, bert_heads,
    check_encoder_parity, check_keras_save_load, check_padding_does_not_change_real_tokens,
    check_checkpoint_round_trip, perturbed, predict, random_bert_weights, relative_error,
    run_hf, run_hf_encoder, to_numpy, write_checkpoint,
)

from bert4keras.checkpoints import CheckpointError
from bert4keras.layers import FeedForward
from bert4keras.models import ALBERT, ALBERT_Unshared, MODELS, build_transformer_model

TINY_BERT = {**SMALL_CONFIG, "vocab_size": 60, "max_position": 12}

# --------------------------------------------------------------------------- MiniLM, the real BERT


def real_sentences(tweets_csv, n=24):
    with open(tweets_csv, encoding="utf-8", errors="replace") as f:
        rows = [r["text"] for r in csv.DictReader(f) if r["text"].strip()]
    rng = np.random.default_rng(0)
    return [rows[i] for i in rng.choice(len(rows), n, replace=False)]


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_transformer_model(os.path.join(minilm_dir, "config.json"), minilm_dir,
                                       return_keras_model=False)


@pytest.fixture(scope="module")
def hf_minilm(minilm_dir):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    tokenizer = transformers.BertTokenizer.from_pretrained(minilm_dir)
    model = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    return tokenizer, model


def test_minilm_matches_hf_on_real_padded_batches(minilm, hf_minilm, tweets_csv):
    tokenizer, hf = hf_minilm
    sentences = real_sentences(tweets_csv)
    worst = 0.0
    for start in range(0, len(sentences), 8):  # padded batches of 8
        enc = tokenizer(sentences[start:start + 8], padding=True, return_tensors="np")
        ref = run_hf(hf, **enc).last_hidden_state.numpy()
        ours = to_numpy(minilm.model.predict_on_batch([enc["input_ids"], enc["token_type_ids"]]))
        real = enc["attention_mask"].astype(bool)
        assert (~real).any() or start > 0  # the first batch has padding
        worst = max(worst, float(np.abs(ours - ref)[real].max()))
    assert worst <= 1e-4, worst


def test_pooler_matches_hf(minilm_dir, hf_minilm):
    tokenizer, hf = hf_minilm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pooled = build_transformer_model(os.path.join(minilm_dir, "config.json"), minilm_dir, with_pool=True)
    enc = tokenizer(["a short one", "and a somewhat longer second sentence"], padding=True,
                    return_tensors="np")
    ref = run_hf(hf, **enc).pooler_output.numpy()
    ours = to_numpy(pooled.predict_on_batch([enc["input_ids"], enc["token_type_ids"]]))
    assert np.abs(ours - ref).max() <= 1e-4


def test_unused_checkpoint_weights_are_reported(minilm_dir):
    with pytest.warns(UserWarning, match="pooler.dense"):
        build_transformer_model(os.path.join(minilm_dir, "config.json"), minilm_dir)


def test_bad_input_errors(tmp_path, minilm_dir):
    with pytest.raises(ValueError, match="unknown model 'bart'"):
        build_transformer_model(model="bart", **TINY_BERT)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        build_transformer_model(str(tmp_path / "nope.json"))
    config = {k: v for k, v in TINY_BERT.items() if k != "num_attention_heads"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="num_attention_heads"):
        build_transformer_model(str(tmp_path / "config.json"))
    with pytest.raises(CheckpointError, match="not found"):
        build_transformer_model(checkpoint_path=str(tmp_path / "missing.safetensors"), **TINY_BERT)
    with open(os.path.join(minilm_dir, "config.json")) as f:
        wrong = json.load(f)
    wrong["intermediate_size"] = 1024
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(CheckpointError, match=r"intermediate.dense.weight.*\(1536, 384\).*\(384, 1024\)|"
                                              r"intermediate/dense/kernel.*\(384, 1536\).*\(384, 1024\)"):
        build_transformer_model(str(tmp_path / "wrong.json"), minilm_dir)


# --------------------------------------------------------------------------- a tiny random BERT


def test_heads_save_and_reload_bit_identical(tmp_path):
    model = build_transformer_model(with_pool=True, with_nsp=True, with_mlm=True, **TINY_BERT)
    ids = np.array([[2, 5, 6, 7, 0, 0], [2, 9, 0, 0, 0, 0]])
    x = [ids, np.zeros_like(ids)]
    nsp, mlm = model.predict_on_batch(x)
    assert to_numpy(nsp).shape == (2, 2) and to_numpy(mlm).shape == (2, 6, 60)
    np.testing.assert_allclose(to_numpy(mlm).sum(-1), 1.0, atol=1e-5)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    for a, b in zip(model.predict_on_batch(x), reloaded.predict_on_batch(x)):
        assert (to_numpy(a) == to_numpy(b)).all()


def test_padding_never_changes_real_tokens_and_one_token_is_finite():
    model = build_transformer_model(**TINY_BERT)
    ids = np.array([[2, 5, 6]])
    padded = np.array([[2, 5, 6, 0, 0, 0, 0]])
    a = to_numpy(model.predict_on_batch([ids, np.zeros_like(ids)]))
    b = to_numpy(model.predict_on_batch([padded, np.zeros_like(padded)]))
    np.testing.assert_allclose(a, b[:, :3], atol=1e-5)
    lonely = np.array([[2, 0, 0, 0]])
    out = to_numpy(model.predict_on_batch([lonely, np.zeros_like(lonely)]))
    assert np.isfinite(out).all()


def test_gradients_finite_with_a_single_real_token():
    model = build_transformer_model(with_mlm=True, **TINY_BERT)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    ids = np.array([[2, 0, 0, 0], [2, 5, 6, 7]])
    before = [to_numpy(w).copy() for w in model.trainable_weights]
    loss = model.train_on_batch([ids, np.zeros_like(ids)], ids)
    assert np.isfinite(loss)
    assert all(np.isfinite(to_numpy(w)).all() for w in model.trainable_weights)
    assert any(not np.allclose(b, to_numpy(w)) for b, w in zip(before, model.trainable_weights))


def test_too_long_input_is_an_error_not_garbage():
    model = build_transformer_model(sequence_length=None, **TINY_BERT)
    ids = np.ones((1, 20), "int32")
    with pytest.raises(ValueError, match=r"Embedding-Position: sequence length 20 exceeds the 12 "
                                         r"positions of this model \(truncate with maxlen\)"):
        model.predict_on_batch([ids, np.zeros_like(ids)])


def import_backend(env: dict) -> subprocess.CompletedProcess:
    """Import bert4keras in a fresh interpreter and print the Keras backend it got."""
    code = "import bert4keras.backend as b; print(b.keras.backend.backend())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)


def test_unset_backend_picks_jax_first():
    """With KERAS_BACKEND unset, importing bert4keras picks the first installed of
    JAX, PyTorch, TensorFlow, and says so on stderr."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed (the rule then picks PyTorch)")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = import_backend(env)
    assert "KERAS_BACKEND is not set, using the 'jax' backend" in out.stderr
    assert out.stdout.strip() == "jax"


def test_explicit_backend_is_respected():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed")
    out = import_backend({**os.environ, "KERAS_BACKEND": "torch"})
    assert out.stdout.strip() == "torch" and "not set" not in out.stderr


# --------------------------------------------------------------------------- the zoo


def albert(tmp, name):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    torch.manual_seed(0)
    hf = perturbed(transformers.AlbertForPreTraining(
        transformers.AlbertConfig(embedding_size=16, hidden_act="gelu_new", **ENCODER_CONFIG)))
    hf.save_pretrained(tmp)
    out = run_hf_encoder(hf)
    pooled = run_hf(hf.albert, input_ids=IDS, token_type_ids=SEGS,
                    attention_mask=VALID.astype("int64")).pooler_output
    expected = {"hidden": out.hidden_states[-1], "pool": pooled,
                "nsp": torch.softmax(out.sop_logits, -1), "mlm": out.prediction_logits}
    return Case(name, dict(config_path=str(tmp), checkpoint_path=str(tmp), model=name,
                           with_mlm="linear", with_nsp=True),
                {k: v.numpy() for k, v in expected.items()},
                outputs=("nsp", "mlm"), hidden=("MLM-Dense", "input"))


def electra(tmp, generator):
    """ELECTRA's generator (an MLM head) or discriminator (one logit per token)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ElectraConfig(embedding_size=16, **ENCODER_CONFIG)
    hf_class = transformers.ElectraForMaskedLM if generator else transformers.ElectraForPreTraining
    hf = perturbed(hf_class(config))
    hf.save_pretrained(tmp)
    out = run_hf_encoder(hf)
    if generator:
        head, option, layer, logits = "mlm", "with_mlm", "MLM-Dense", out.logits.numpy()
    else:
        head, option, layer = "discriminator", "with_discriminator", "Discriminator-Dense"
        logits = out.logits.numpy()[..., None]
    return Case("electra_generator" if generator else "electra",
                dict(config_path=str(tmp), checkpoint_path=str(tmp), model="electra", **{option: "linear"}),
                {"hidden": out.hidden_states[-1].numpy(), head: logits},
                outputs=(head,), hidden=(layer, "input"))


def nezha(tmp):
    weights = random_bert_weights(1, positions=0, heads=True)
    hidden = bert_encoder(weights, IDS, SEGS, heads=4, layers=2, positions="relative")
    pool, mlm = bert_heads(weights, hidden)
    config_path, prefix = write_checkpoint(tmp, weights, {**ENCODER_CONFIG, "hidden_act": "gelu"})
    return Case("nezha", dict(config_path=config_path, checkpoint_path=prefix, model="nezha",
                              with_pool=True, with_mlm="linear"),
                {"hidden": hidden, "pool": pool, "mlm": mlm}, outputs=("pool", "mlm"),
                hidden=("MLM-Dense", "input"), weights=weights)


ZOO = {
    "albert": lambda tmp: albert(tmp, "albert"),
    "albert_unshared": lambda tmp: albert(tmp, "albert_unshared"),
    "nezha": nezha,
    "electra": lambda tmp: electra(tmp, generator=False),
    "electra_generator": lambda tmp: electra(tmp, generator=True),
}


def test_parity(case):
    check_encoder_parity(case)


def test_checkpoint_round_trip(case, tmp_path):
    check_checkpoint_round_trip(case, tmp_path)


def test_keras_save_load(case, tmp_path):
    check_keras_save_load(case, tmp_path)


@pytest.mark.parametrize("case", ["nezha"], indirect=True)
def test_padding_does_not_change_real_tokens(case):
    check_padding_does_not_change_real_tokens(case)


def test_albert_unshared_equals_albert(zoo):
    """Both load the same ALBERT checkpoint and agree before training; the unshared
    copies start identical and the shared model has one block."""
    shared, unshared = zoo["albert"], zoo["albert_unshared"]
    for a, b in zip(predict(shared.model), predict(unshared.model)):
        assert relative_error(a, b, VALID) <= TOLERANCE
    blocks = [unshared.transformer.layers[f"Transformer-{i}-MultiHeadSelfAttention"]
              for i in range(2)]
    for w0, w1 in zip(blocks[0].get_weights(), blocks[1].get_weights()):
        np.testing.assert_array_equal(w0, w1)
    block_size = sum(int(np.prod(w.shape)) for w in blocks[0].weights)
    n_shared, n_unshared = shared.model.count_params(), unshared.model.count_params()
    ffn = unshared.transformer.layers["Transformer-1-FeedForward"]
    ffn_size = sum(int(np.prod(w.shape)) for w in ffn.weights) + 4 * 32  # + two LayerNorms
    assert n_unshared - n_shared == block_size + ffn_size


def test_albert_unshared_mapping():
    """Every layer of the unshared model maps to ALBERT's one group."""
    transformer = ALBERT_Unshared(vocab_size=100, hidden_size=16, num_hidden_layers=3,
                                  num_attention_heads=2, intermediate_size=32, max_position=64)
    mapping = transformer.variable_mapping()
    ffn = [mapping[f"Transformer-{i}-FeedForward"] for i in range(3)]
    assert ffn[0] == ffn[1] == ffn[2]
    assert all(n.startswith("bert/encoder/transformer/group_0/inner_group_0/ffn_1/") for n in ffn[0])
    assert "Transformer-FeedForward" in ALBERT(
        vocab_size=100, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32, max_position=64).variable_mapping()


def test_albert_unshared_training_unties_blocks(zoo):
    """After one optimizer step the unshared blocks differ; ALBERT keeps one block."""
    unshared = build_transformer_model(**zoo["albert_unshared"].kwargs, return_keras_model=False)
    mlm = keras.Model(unshared.model.inputs, unshared.model.outputs[1])
    mlm.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    mlm.train_on_batch([IDS, SEGS], np.random.default_rng(0).normal(size=(2, 8, 100)))
    w0 = unshared.layers["Transformer-0-FeedForward"].get_weights()[0]
    w1 = unshared.layers["Transformer-1-FeedForward"].get_weights()[0]
    assert np.abs(w0 - w1).max() > 1e-6
    assert sum(isinstance(layer, FeedForward) for layer in zoo["albert"].model.layers) == 1


def test_wrong_checkpoint_names_the_variable(zoo):
    """Loading ALBERT's HF checkpoint as a RoFormer fails naming the missing variable."""
    path = zoo["albert"].kwargs["checkpoint_path"]
    with pytest.raises(ValueError, match="bert/embeddings/word_embeddings|roformer"):
        build_transformer_model(path, path, model="roformer")


@pytest.mark.parametrize("name", ["albert", "albert_unshared", "nezha", "electra"])
def test_missing_required_field_is_named(name):
    assert name in MODELS
    config = {k: v for k, v in ENCODER_CONFIG.items() if k != "num_hidden_layers"}
    with pytest.raises(ValueError, match="num_hidden_layers"):
        build_transformer_model(model=name, **config)
