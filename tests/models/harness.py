"""The model-test harness: one ``Case``, one error measure, the tiny configs, and the
numpy reference kit the forward passes of every model family are written with.

A family's test file lists its models in a ``ZOO`` table (name -> function returning a
``Case``); the ``zoo`` and ``case`` fixtures of conftest.py build each entry once per
module. Adding a model is adding a table entry.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from bert4keras.checkpoints import write_tf_checkpoint
from bert4keras.models import build_transformer_model

to_numpy = keras.ops.convert_to_numpy

TOLERANCE = 1e-4
"""Largest relative error (see :func:`relative_error`) a parity check accepts."""

# --------------------------------------------------------------------------- tiny configs and inputs

ENCODER_CONFIG = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=37, max_position_embeddings=64, type_vocab_size=2,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
"""The encoder zoo's config; its names are also HF's, so HF configs take it as is."""

SMALL_CONFIG = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=32, max_position=32)
"""A randomly initialised model for structural tests (masks, registry, errors)."""

IDS = np.array([[2, 15, 27, 9, 3, 0, 0, 0], [2, 8, 3, 11, 42, 13, 57, 3]])
SEGS = np.array([[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1]])
VALID = IDS != 0


def padded_ids(rng: np.random.Generator, lengths: list[int], total: int, vocab: int,
               start: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random ids in [1, vocab) right-padded with 0, and the mask of real tokens."""
    ids = np.zeros((len(lengths), total), "int32")
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, vocab, n)
    if start is not None:
        ids[:, 0] = start
    return ids, np.arange(total)[None, :] < np.array(lengths)[:, None]


# --------------------------------------------------------------------------- the case


@dataclass
class Case:
    """One model under test: how to build it, what to feed it, what it must output."""

    name: str
    kwargs: dict  # build_transformer_model's arguments (config and checkpoint included)
    expected: dict[str, np.ndarray]  # reference outputs by name ("hidden": last hidden states)
    inputs: list[np.ndarray] = field(default_factory=lambda: [IDS, SEGS])
    valid: np.ndarray = field(default_factory=lambda: VALID)  # (batch, length): positions compared
    outputs: tuple[str, ...] = ()  # names of the model's outputs, in order
    hidden: tuple[str, str] | None = None  # (layer, "input" or "output") holding "hidden"
    weights: dict[str, np.ndarray] | None = None  # the checkpoint a numpy reference read
    hf_path: Path | None = None  # the HF directory the checkpoint came from
    unused: str | None = None  # a checkpoint variable the model rightly leaves unused
    transformer: Any = None

    @property
    def model(self) -> keras.Model:
        return self.transformer.model

    def build(self) -> None:
        """Build from ``kwargs`` with no warning: every checkpoint weight is used (but ``unused``)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.transformer = build_transformer_model(**self.kwargs, return_keras_model=False)
        allowed = f"1 checkpoint weights were not used: {self.unused}" if self.unused else None
        unexpected = [str(w.message) for w in caught
                      if allowed is None or not str(w.message).endswith(allowed)]
        assert not unexpected, unexpected

    def hidden_model(self) -> keras.Model:
        """A model from the inputs to the final hidden states."""
        layer_name, end = self.hidden
        return keras.Model(self.model.inputs, getattr(self.model.get_layer(layer_name), end))


class Zoo:
    """The cases of one module's ``ZOO`` table, each built on first use."""

    def __init__(self, table: dict, tmp_path_factory):
        self.table, self.tmp_path_factory, self.cases = table, tmp_path_factory, {}

    def __getitem__(self, name: str) -> Case:
        if name not in self.cases:
            case = self.table[name](self.tmp_path_factory.mktemp(name.replace(".", "_")))
            case.build()
            self.cases[name] = case
        return self.cases[name]


def relative_error(ours, reference, valid: np.ndarray | None = None, floor: float = 1.0) -> float:
    """Max abs difference over the max abs reference (at least ``floor``), at the ``valid``
    positions of outputs shaped (batch, length, ...): padded rows are garbage by design."""
    ours, reference = np.asarray(ours, dtype="float64"), np.asarray(reference, dtype="float64")
    if ours.shape != reference.shape:
        raise AssertionError(f"shape {ours.shape} != reference shape {reference.shape}")
    if valid is not None and ours.shape[:2] == valid.shape:
        ours, reference = ours[valid], reference[valid]
    return float(np.abs(ours - reference).max() / max(floor, np.abs(reference).max()))


def predict(model: keras.Model, ids: np.ndarray = IDS, segs: np.ndarray = SEGS) -> list[np.ndarray]:
    """A model's outputs on token ids (and segments if it takes them), as a list."""
    outputs = model([ids, segs] if len(model.inputs) == 2 else [ids])
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [to_numpy(o) for o in outputs]


def run(model: keras.Model, inputs: list) -> np.ndarray:
    """One forward pass in inference mode."""
    return to_numpy(model(inputs, training=False))


def outputs(model: keras.Model, inputs: list) -> list[np.ndarray]:
    """Every output of one forward pass in inference mode, as a list."""
    out = model(inputs, training=False)
    return [to_numpy(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


# --------------------------------------------------------------------------- numpy reference kit


def dense(w, x, name):
    """``x @ kernel (+ bias)`` with the checkpoint variables ``name/kernel``, ``name/bias``."""
    y = x @ w[name + "/kernel"]
    return y + w[name + "/bias"] if name + "/bias" in w else y


def layer_norm(x, gamma, beta, eps):
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return x * gamma + beta


def rms_norm(x, eps=1e-12):
    """RoFormerV2's and GAU-α's parameter-free norm."""
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps)


def gelu(x):
    """The exact (erf) GELU."""
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def softmax(a):
    a = np.exp(a - a.max(-1, keepdims=True))
    return a / a.sum(-1, keepdims=True)


def masked_softmax(scores, allowed):
    """Softmax over the last axis with the disallowed positions at probability 0."""
    return softmax(np.where(allowed, scores, -np.inf))


def sinusoid_table(positions, dim):
    """Rows ``[sin(p w_0), cos(p w_0), sin(p w_1), ...]``, ``w_i = 10000^(-2i/dim)``."""
    angles = np.asarray(positions, dtype="float64")[:, None] * 10000.0 ** (-2 * np.arange(dim // 2) / dim)
    return np.stack([np.sin(angles), np.cos(angles)], -1).reshape(len(positions), dim)


def rope(x):
    """RoFormer (arXiv:2104.09864): rotate each pair (x_2i, x_2i+1) of the vector at
    position m by the angle m * 10000^(-2i/d). ``x``: (batch, n, ..., d)."""
    n, d = x.shape[1], x.shape[-1]
    angles = np.arange(n)[:, None] * 10000.0 ** (-2 * np.arange(d // 2) / d)
    angles = angles.reshape((1, n) + (1,) * (x.ndim - 3) + (d // 2,))
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * angles)
    return np.stack([z.real, z.imag], -1).reshape(x.shape)


def key_mask(ids):
    """Keys that may be attended: real tokens (bert4keras never masks position 0)."""
    mask = ids != 0
    mask[:, 0] = True
    return mask


def bert_encoder(w, ids, segs, *, heads, layers, positions, norm="layer", act=gelu,
                 residual_scores=False, causal=False, max_relative=64):
    """BERT-family forward pass. ``positions``: 'absolute' (BERT), 'relative' (NEZHA,
    arXiv:1909.00204: sinusoids of the clipped distance added to keys and values),
    'rotary' (RoFormer). ``norm='rms'`` is RoFormerV2's parameter-free norm.
    ``residual_scores``: RealFormer (arXiv:2012.11747), each layer's pre-softmax scores
    are added to the next layer's. ``causal``: language-model mask."""
    def normalize(x, name):
        if norm == "layer":
            return layer_norm(x, w[name + "/gamma"], w[name + "/beta"], 1e-12)
        return rms_norm(x)

    n = ids.shape[1]
    x = w["bert/embeddings/word_embeddings"][ids] + w["bert/embeddings/token_type_embeddings"][segs]
    if positions == "absolute":
        x = x + w["bert/embeddings/position_embeddings"][:n]
    x = normalize(x, "bert/embeddings/LayerNorm")
    if "bert/encoder/embedding_hidden_mapping_in/kernel" in w:
        x = dense(w, x, "bert/encoder/embedding_hidden_mapping_in")
    valid = key_mask(ids)[:, None, None, :]
    if causal:
        valid = valid & np.tri(n, dtype=bool)
    distances = np.clip(np.arange(n)[None, :] - np.arange(n)[:, None], -max_relative, max_relative)
    previous = None
    for i in range(layers):
        p = f"bert/encoder/layer_{i}/"
        b = x.shape[0]
        q, k, v = (dense(w, x, p + f"attention/self/{t}").reshape(b, n, heads, -1)
                   for t in ("query", "key", "value"))
        d = q.shape[-1]
        if positions == "rotary":
            q, k = rope(q), rope(k)
        a = np.einsum("bjhd,bkhd->bhjk", q, k)
        if positions == "relative":
            # NEZHA's table is indexed by distance + max_relative, as in its official code
            relative = sinusoid_table(np.arange(2 * max_relative + 1), d)[distances + max_relative]
            a = a + np.einsum("bjhd,jkd->bhjk", q, relative)
        a = a / np.sqrt(d)
        if residual_scores and previous is not None:
            a = a + previous
        previous = a
        attention = masked_softmax(a, valid)
        o = np.einsum("bhjk,bkhd->bjhd", attention, v)
        if positions == "relative":
            o = o + np.einsum("bhjk,jkd->bjhd", attention, relative)
        o = dense(w, o.reshape(b, n, -1), p + "attention/output/dense")
        x = normalize(x + o, p + "attention/output/LayerNorm")
        f = dense(w, act(dense(w, x, p + "intermediate/dense")), p + "output/dense")
        x = normalize(x + f, p + "output/LayerNorm")
    return x


def bert_heads(w, x):
    """BERT's pooler ([CLS] -> tanh dense) and MLM logits (dense -> gelu -> LN -> tied)."""
    pool = np.tanh(dense(w, x[:, 0], "bert/pooler/dense"))
    h = layer_norm(gelu(dense(w, x, "cls/predictions/transform/dense")),
                   w["cls/predictions/transform/LayerNorm/gamma"],
                   w["cls/predictions/transform/LayerNorm/beta"], 1e-12)
    return pool, h @ w["bert/embeddings/word_embeddings"].T + w["cls/predictions/output_bias"]


# --------------------------------------------------------------------------- random checkpoints


def random_bert_weights(seed, *, layers=2, vocab=100, hidden=32, inter=37, positions=64,
                        biases=True, norms=True, heads=False) -> dict[str, np.ndarray]:
    """A random checkpoint under Google BERT names (gammas near 1)."""
    shapes = {"bert/embeddings/word_embeddings": (vocab, hidden),
              "bert/embeddings/token_type_embeddings": (2, hidden)}
    if positions:
        shapes["bert/embeddings/position_embeddings"] = (positions, hidden)
    dense_shapes = {}
    norm_names = ["bert/embeddings/LayerNorm"]
    for i in range(layers):
        p = f"bert/encoder/layer_{i}/"
        for t in ("query", "key", "value"):
            dense_shapes[p + f"attention/self/{t}"] = (hidden, hidden)
        dense_shapes[p + "attention/output/dense"] = (hidden, hidden)
        dense_shapes[p + "intermediate/dense"] = (hidden, inter)
        dense_shapes[p + "output/dense"] = (inter, hidden)
        norm_names += [p + "attention/output/LayerNorm", p + "output/LayerNorm"]
    if heads:
        dense_shapes["bert/pooler/dense"] = (hidden, hidden)
        dense_shapes["cls/predictions/transform/dense"] = (hidden, hidden)
        norm_names.append("cls/predictions/transform/LayerNorm")
        shapes["cls/predictions/output_bias"] = (vocab,)
    for name, shape in dense_shapes.items():
        shapes[name + "/kernel"] = shape
        if biases:
            shapes[name + "/bias"] = shape[1:]
    rng = np.random.default_rng(seed)
    weights = {k: rng.normal(0, 0.3, s).astype("float32") for k, s in shapes.items()}
    if norms:
        for name in norm_names:
            weights[name + "/gamma"] = (1 + 0.1 * rng.normal(size=hidden)).astype("float32")
            weights[name + "/beta"] = (0.1 * rng.normal(size=hidden)).astype("float32")
    return weights


def write_checkpoint(directory: Path, weights: dict, config: dict) -> tuple[str, str]:
    """Write a TF checkpoint and a bert_config.json; return (config path, checkpoint prefix)."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "bert_config.json"
    config_path.write_text(json.dumps(config))
    return str(config_path), write_tf_checkpoint(str(directory / "model.ckpt"), weights)


# --------------------------------------------------------------------------- HF references


def perturbed(hf_model):
    """Shift every trained weight of a freshly initialised HF model (so LN gains, biases
    and heads are all exercised); RoFormer's fixed sinusoid table is left alone."""
    import torch

    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            if "embed_positions" not in name:
                p.add_(torch.randn_like(p) * 0.1)
    return hf_model.eval()


def run_hf(hf_model, **arrays):
    """An HF model's outputs (hidden states included) on numpy inputs, without gradients."""
    import torch

    with torch.no_grad():
        return hf_model(**{k: torch.tensor(v) for k, v in arrays.items()}, output_hidden_states=True)


def run_hf_encoder(hf_model):
    """An HF encoder on the zoo batch (IDS, SEGS, padding mask)."""
    return run_hf(hf_model, input_ids=IDS, token_type_ids=SEGS, attention_mask=VALID.astype("int64"))


# --------------------------------------------------------------------------- checks every encoder passes


def check_encoder_parity(case: Case) -> None:
    """Hidden states and every head match the reference at real tokens of a padded batch."""
    got = dict(zip(case.outputs, predict(case.model)))
    got["hidden"] = predict(case.hidden_model())[0]
    if "pool" in case.expected and "pool" not in got:
        got["pool"] = predict(keras.Model(case.model.inputs,
                                          case.model.get_layer("Pooler-Dense").output))[0]
    errors = {k: relative_error(got[k], case.expected[k], case.valid) for k in case.expected}
    assert max(errors.values()) <= TOLERANCE, errors


def check_checkpoint_round_trip(case: Case, tmp_path: Path) -> None:
    """``save_weights_as_checkpoint`` writes every weight under its Google name, and the
    model built from that prefix (strictly: no warning, all variables used) is identical."""
    t = case.transformer
    mapped = {weight.path for name, variables in t.variable_mapping().items() if name in t.layers
              for weight in t.layers[name].trainable_weights[:len(variables)]}
    assert mapped == {weight.path for weight in t.model.trainable_weights}
    prefix = str(tmp_path / "model.ckpt")
    t.save_weights_as_checkpoint(prefix)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rebuilt = build_transformer_model(**{**case.kwargs, "checkpoint_path": prefix})
    for a, b in zip(outputs(case.model, case.inputs), outputs(rebuilt, case.inputs)):
        np.testing.assert_array_equal(a, b)


def check_keras_save_load(case: Case, tmp_path: Path) -> None:
    """model.save -> keras.models.load_model with no custom_objects -> the same class and
    identical outputs."""
    path = tmp_path / f"{case.name}.keras"
    case.model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(case.model)
    for a, b in zip(outputs(case.model, case.inputs), outputs(loaded, case.inputs)):
        np.testing.assert_array_equal(a, b)


def check_padding_does_not_change_real_tokens(case: Case) -> None:
    """Extra padding leaves every real-token output unchanged (all masks reach the attention)."""
    model = case.hidden_model()
    short = predict(model)[0]
    pad = np.zeros((2, 5), dtype=IDS.dtype)
    longer = predict(model, np.concatenate([IDS, pad], 1), np.concatenate([SEGS, pad], 1))[0]
    np.testing.assert_allclose(longer[:, :8][VALID], short[VALID], rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- checks every decoder passes


def check_outputs_do_not_depend_on_later_tokens(case: Case, vocab: int) -> None:
    """Changing the (decoder) tokens after position 4 leaves positions 0..4 unchanged and
    moves the later ones (the check is not vacuous)."""
    inputs = [a[:1].copy() for a in case.inputs]  # the unpadded row
    before = run(case.model, inputs)
    tokens = inputs[-1]  # the (decoder) token ids
    t = 4
    tokens[0, t + 1:] = np.random.default_rng(5).integers(1, vocab, tokens.shape[1] - t - 1)
    after = run(case.model, inputs)
    np.testing.assert_allclose(after[:, :t + 1], before[:, :t + 1], atol=1e-5)
    assert not np.allclose(after[:, t + 1:], before[:, t + 1:], atol=1e-3)


def check_token_ids_outside_the_vocabulary(case: Case, vocab: int) -> None:
    """An id of ``vocab`` or -1 is a ValueError naming the input, the id and the range."""
    for bad_id in (vocab, -1):
        inputs = [a.copy() for a in case.inputs]
        inputs[-1][0, 2] = bad_id
        name = case.model.inputs[-1].name
        with pytest.raises(ValueError, match=f"{name}.*token id {bad_id}.*vocabulary \\[0, {vocab}\\)"):
            case.model.predict(inputs, verbose=0)
