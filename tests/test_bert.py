"""BERT on the real MiniLM weights: parity with HF BertModel, heads, saving, bad input."""

import csv
import json
import os
import warnings

import keras
import numpy as np
import pytest

from bert4keras.checkpoints import CheckpointError
from bert4keras.models import build_transformer_model

np_ = keras.ops.convert_to_numpy


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
    import torch

    tokenizer, hf = hf_minilm
    sentences = real_sentences(tweets_csv)
    worst = 0.0
    for start in range(0, len(sentences), 8):  # padded batches of 8
        enc = tokenizer(sentences[start:start + 8], padding=True, return_tensors="np")
        with torch.no_grad():
            ref = hf(**{k: torch.tensor(v) for k, v in enc.items()}).last_hidden_state.numpy()
        ours = np_(minilm.model.predict_on_batch([enc["input_ids"], enc["token_type_ids"]]))
        real = enc["attention_mask"].astype(bool)
        assert (~real).any() or start > 0  # the first batch has padding
        worst = max(worst, float(np.abs(ours - ref)[real].max()))
    assert worst <= 1e-4, worst


def test_pooler_matches_hf(minilm_dir, hf_minilm):
    import torch

    tokenizer, hf = hf_minilm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pooled = build_transformer_model(os.path.join(minilm_dir, "config.json"), minilm_dir, with_pool=True)
    enc = tokenizer(["a short one", "and a somewhat longer second sentence"], padding=True, return_tensors="np")
    with torch.no_grad():
        ref = hf(**{k: torch.tensor(v) for k, v in enc.items()}).pooler_output.numpy()
    ours = np_(pooled.predict_on_batch([enc["input_ids"], enc["token_type_ids"]]))
    assert np.abs(ours - ref).max() <= 1e-4


def test_unused_checkpoint_weights_are_reported(minilm_dir):
    with pytest.warns(UserWarning, match="pooler.dense"):
        build_transformer_model(os.path.join(minilm_dir, "config.json"), minilm_dir)


TINY = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position=12)


def test_heads_save_and_reload_bit_identical(tmp_path):
    model = build_transformer_model(with_pool=True, with_nsp=True, with_mlm=True, **TINY)
    ids = np.array([[2, 5, 6, 7, 0, 0], [2, 9, 0, 0, 0, 0]])
    x = [ids, np.zeros_like(ids)]
    nsp, mlm = model.predict_on_batch(x)
    assert np_(nsp).shape == (2, 2) and np_(mlm).shape == (2, 6, 60)
    np.testing.assert_allclose(np_(mlm).sum(-1), 1.0, atol=1e-5)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    for a, b in zip(model.predict_on_batch(x), reloaded.predict_on_batch(x)):
        assert (np_(a) == np_(b)).all()


def test_padding_never_changes_real_tokens_and_one_token_is_finite():
    model = build_transformer_model(**TINY)
    ids = np.array([[2, 5, 6]])
    padded = np.array([[2, 5, 6, 0, 0, 0, 0]])
    a = np_(model.predict_on_batch([ids, np.zeros_like(ids)]))
    b = np_(model.predict_on_batch([padded, np.zeros_like(padded)]))
    np.testing.assert_allclose(a, b[:, :3], atol=1e-5)
    lonely = np.array([[2, 0, 0, 0]])
    out = np_(model.predict_on_batch([lonely, np.zeros_like(lonely)]))
    assert np.isfinite(out).all()


def test_gradients_finite_with_a_single_real_token():
    model = build_transformer_model(with_mlm=True, **TINY)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    ids = np.array([[2, 0, 0, 0], [2, 5, 6, 7]])
    before = [np_(w).copy() for w in model.trainable_weights]
    loss = model.train_on_batch([ids, np.zeros_like(ids)], ids)
    assert np.isfinite(loss)
    assert all(np.isfinite(np_(w)).all() for w in model.trainable_weights)
    assert any(not np.allclose(b, np_(w)) for b, w in zip(before, model.trainable_weights))


def test_bad_input_errors(tmp_path, minilm_dir):
    with pytest.raises(ValueError, match="unknown model 'bart'"):
        build_transformer_model(model="bart", **TINY)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        build_transformer_model(str(tmp_path / "nope.json"))
    config = {k: v for k, v in TINY.items() if k != "num_attention_heads"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="num_attention_heads"):
        build_transformer_model(str(tmp_path / "config.json"))
    with pytest.raises(CheckpointError, match="not found"):
        build_transformer_model(checkpoint_path=str(tmp_path / "missing.safetensors"), **TINY)
    with open(os.path.join(minilm_dir, "config.json")) as f:
        wrong = json.load(f)
    wrong["intermediate_size"] = 1024
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(CheckpointError, match=r"intermediate.dense.weight.*\(1536, 384\).*\(384, 1024\)|"
                                              r"intermediate/dense/kernel.*\(384, 1536\).*\(384, 1024\)"):
        build_transformer_model(str(tmp_path / "wrong.json"), minilm_dir)


def test_too_long_input_is_an_error_not_garbage():
    model = build_transformer_model(sequence_length=None, **TINY)
    ids = np.ones((1, 20), "int32")
    with pytest.raises(Exception, match="positions|exceeds|out of|index"):
        model.predict_on_batch([ids, np.zeros_like(ids)])


def test_backend_is_chosen_once_and_respected(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", "import bert4keras.backend as b; print(b.keras.backend.backend())"],
                         env=env, capture_output=True, text=True, check=True)
    assert "KERAS_BACKEND is not set" in out.stderr and out.stdout.strip() == "jax"
    env["KERAS_BACKEND"] = "torch"
    out = subprocess.run([sys.executable, "-c", "import bert4keras.backend as b; print(b.keras.backend.backend())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "torch" and "not set" not in out.stderr
