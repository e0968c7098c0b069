"""Encoder zoo: ALBERT, ALBERT_Unshared, NEZHA, RoFormer, RoFormerV2, ELECTRA, GAU-α.

Each model is proven against a reference: HF transformers where it has the
architecture (random HF models written as safetensors and loaded here), else a
numpy forward pass written below from the papers, fed by a random checkpoint
under the official Google variable names. Every model also round-trips
through a TF checkpoint (its Google-name mapping) and through ``model.save``.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field

import keras
import numpy as np
import pytest

from bert4keras.backend import get_gelu, gelu_erf, set_gelu
from bert4keras.checkpoints import write_tf_checkpoint
from bert4keras.layers import FeedForward, GatedAttentionUnit
from bert4keras.models import ALBERT, ALBERT_Unshared, MODELS, build_transformer_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

IDS = np.array([[2, 15, 27, 9, 3, 0, 0, 0], [2, 8, 3, 11, 42, 13, 57, 3]])
SEGS = np.array([[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1]])
VALID = IDS != 0
TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=64, type_vocab_size=2,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
TOLERANCE = 1e-4
"""Max abs difference allowed, relative to the reference's scale (max(1, max|ref|))."""


@pytest.fixture(scope="module", autouse=True)
def erf_gelu():
    """Pin ``'gelu'`` to the exact GELU (as HF's) whatever other tests set."""
    previous = "erf" if get_gelu() is gelu_erf else "tanh"
    set_gelu("erf")
    yield
    set_gelu(previous)


def relative_error(ours, reference) -> float:
    """Max abs difference at real tokens (padded rows are garbage by design), scaled."""
    ours, reference = np.asarray(ours, dtype="float64"), np.asarray(reference, dtype="float64")
    if ours.shape != reference.shape:
        raise AssertionError(f"shape {ours.shape} != reference shape {reference.shape}")
    if ours.shape[:2] == IDS.shape:
        ours, reference = ours[VALID], reference[VALID]
    return float(np.abs(ours - reference).max() / max(1.0, np.abs(reference).max()))


def predict(model, ids=IDS, segs=SEGS):
    outputs = model([ids, segs] if len(model.inputs) == 2 else [ids])
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [keras.ops.convert_to_numpy(o) for o in outputs]


# --------------------------------------------------------------------------- numpy references


def np_dense(w, x, name):
    y = x @ w[name + "/kernel"]
    return y + w[name + "/bias"] if name + "/bias" in w else y


def np_layer_norm(w, x, name, eps=1e-12):
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return x * w[name + "/gamma"] + w[name + "/beta"]


def np_rms_norm(x, eps=1e-12):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps)


def np_gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def np_softmax(a):
    a = np.exp(a - a.max(-1, keepdims=True))
    return a / a.sum(-1, keepdims=True)


def np_sinusoid_table(positions, dim):
    """Rows ``[sin(p w_0), cos(p w_0), sin(p w_1), ...]``, ``w_i = 10000^(-2i/dim)``."""
    angles = np.asarray(positions, dtype="float64")[:, None] * 10000.0 ** (-2 * np.arange(dim // 2) / dim)
    return np.stack([np.sin(angles), np.cos(angles)], -1).reshape(len(positions), dim)


def np_rope(x):
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


def np_encoder(w, ids, segs, *, heads, layers, positions, norm="layer", act=np_gelu,
               residual_scores=False, causal=False, max_relative=64):
    """BERT-family forward pass. ``positions``: 'absolute' (BERT), 'relative' (NEZHA,
    arXiv:1909.00204: sinusoids of the clipped distance added to keys and values),
    'rotary' (RoFormer). ``norm='rms'`` is RoFormerV2's parameter-free norm.
    ``residual_scores``: RealFormer (arXiv:2012.11747), each layer's pre-softmax scores
    are added to the next layer's. ``causal``: language-model mask."""
    def normalize(x, name):
        return np_layer_norm(w, x, name) if norm == "layer" else np_rms_norm(x)

    n = ids.shape[1]
    x = w["bert/embeddings/word_embeddings"][ids] + w["bert/embeddings/token_type_embeddings"][segs]
    if positions == "absolute":
        x = x + w["bert/embeddings/position_embeddings"][:n]
    x = normalize(x, "bert/embeddings/LayerNorm")
    if "bert/encoder/embedding_hidden_mapping_in/kernel" in w:
        x = np_dense(w, x, "bert/encoder/embedding_hidden_mapping_in")
    valid = key_mask(ids)[:, None, None, :]
    if causal:
        valid = valid & np.tri(n, dtype=bool)
    distances = np.clip(np.arange(n)[None, :] - np.arange(n)[:, None], -max_relative, max_relative)
    previous = None
    for i in range(layers):
        p = f"bert/encoder/layer_{i}/"
        b = x.shape[0]
        q, k, v = (np_dense(w, x, p + f"attention/self/{t}").reshape(b, n, heads, -1)
                   for t in ("query", "key", "value"))
        d = q.shape[-1]
        if positions == "rotary":
            q, k = np_rope(q), np_rope(k)
        a = np.einsum("bjhd,bkhd->bhjk", q, k)
        if positions == "relative":
            # NEZHA's table is indexed by distance + max_relative, as in its official code
            relative = np_sinusoid_table(np.arange(2 * max_relative + 1), d)[distances + max_relative]
            a = a + np.einsum("bjhd,jkd->bhjk", q, relative)
        a = a / np.sqrt(d)
        if residual_scores and previous is not None:
            a = a + previous
        previous = a
        attention = np_softmax(np.where(valid, a, -np.inf))
        o = np.einsum("bhjk,bkhd->bjhd", attention, v)
        if positions == "relative":
            o = o + np.einsum("bhjk,jkd->bjhd", attention, relative)
        o = np_dense(w, o.reshape(b, n, -1), p + "attention/output/dense")
        x = normalize(x + o, p + "attention/output/LayerNorm")
        f = np_dense(w, act(np_dense(w, x, p + "intermediate/dense")), p + "output/dense")
        x = normalize(x + f, p + "output/LayerNorm")
    return x


def np_bert_heads(w, x):
    """BERT's pooler ([CLS] -> tanh dense) and MLM logits (dense -> gelu -> LN -> tied)."""
    pool = np.tanh(np_dense(w, x[:, 0], "bert/pooler/dense"))
    h = np_layer_norm(w, np_gelu(np_dense(w, x, "cls/predictions/transform/dense")),
                      "cls/predictions/transform/LayerNorm")
    return pool, h @ w["bert/embeddings/word_embeddings"].T + w["cls/predictions/output_bias"]


def np_gau_alpha(w, ids, segs, *, layers, units, key_size):
    """GAU-α (kexue.fm/archives/9052): RMS-normed embeddings, then per layer
    ``x = rms(x + GAU(x))``; GAU (arXiv:2202.10447): ``u, v, z = swish(x W_i)``,
    q/k = per-dim scales of z, rotary, ``softmax_plus`` (logits times
    log(max(n, 16)) / log 512, n = real keys), ``o = (u * A v) W_o``."""
    x = w["bert/embeddings/word_embeddings"][ids] + w["bert/embeddings/token_type_embeddings"][segs]
    x = np_rms_norm(x)
    mask = key_mask(ids)
    scale = (np.log(np.maximum(mask.sum(-1), 16)) / np.log(512))[:, None, None]
    for i in range(layers):
        p = f"GAU_alpha/encoder/layer_{i}/gau/"
        h = x @ w[p + "i_dense/kernel"]
        h = h / (1 + np.exp(-h))
        u, v, z = h[..., :units], h[..., units:2 * units], h[..., 2 * units:]
        q, k = np_rope(z * w[p + "q_scaleoffset/gamma"]), np_rope(z * w[p + "k_scaleoffset/gamma"])
        a = np.einsum("bmd,bnd->bmn", q, k) / np.sqrt(key_size) * scale
        attention = np_softmax(np.where(mask[:, None, :], a, -np.inf))
        x = np_rms_norm(x + (u * (attention @ v)) @ w[p + "o_dense/kernel"])
    return x


def random_bert_weights(seed, *, layers=2, vocab=100, hidden=32, inter=37, positions=64,
                        biases=True, norms=True, heads=False) -> dict[str, np.ndarray]:
    """A random checkpoint under Google BERT names (gammas near 1)."""
    shapes = {"bert/embeddings/word_embeddings": (vocab, hidden),
              "bert/embeddings/token_type_embeddings": (2, hidden)}
    if positions:
        shapes["bert/embeddings/position_embeddings"] = (positions, hidden)
    dense = {}
    norm_names = ["bert/embeddings/LayerNorm"]
    for i in range(layers):
        p = f"bert/encoder/layer_{i}/"
        for t in ("query", "key", "value"):
            dense[p + f"attention/self/{t}"] = (hidden, hidden)
        dense[p + "attention/output/dense"] = (hidden, hidden)
        dense[p + "intermediate/dense"] = (hidden, inter)
        dense[p + "output/dense"] = (inter, hidden)
        norm_names += [p + "attention/output/LayerNorm", p + "output/LayerNorm"]
    if heads:
        dense["bert/pooler/dense"] = (hidden, hidden)
        dense["cls/predictions/transform/dense"] = (hidden, hidden)
        norm_names.append("cls/predictions/transform/LayerNorm")
        shapes["cls/predictions/output_bias"] = (vocab,)
    for name, shape in dense.items():
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


def random_gau_weights(seed, *, layers=2, vocab=100, hidden=32, units=37, key_size=16):
    """A random GAU-α checkpoint under the names of the released one."""
    rng = np.random.default_rng(seed)
    weights = {"bert/embeddings/word_embeddings": rng.normal(0, 0.3, (vocab, hidden)),
               "bert/embeddings/token_type_embeddings": rng.normal(0, 0.3, (2, hidden))}
    for i in range(layers):
        p = f"GAU_alpha/encoder/layer_{i}/gau/"
        weights[p + "i_dense/kernel"] = rng.normal(0, 0.3, (hidden, 2 * units + key_size))
        weights[p + "o_dense/kernel"] = rng.normal(0, 0.3, (units, hidden))
        weights[p + "q_scaleoffset/gamma"] = 1 + 0.1 * rng.normal(size=key_size)
        weights[p + "k_scaleoffset/gamma"] = 1 + 0.1 * rng.normal(size=key_size)
    return {k: v.astype("float32") for k, v in weights.items()}


def write_checkpoint(directory, weights, config) -> tuple[str, str]:
    """Write a TF checkpoint and a bert_config.json; return (config_path, checkpoint prefix)."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "bert_config.json"
    config_path.write_text(json.dumps(config))
    return str(config_path), write_tf_checkpoint(str(directory / "model.ckpt"), weights)


# --------------------------------------------------------------------------- the zoo


@dataclass
class Case:
    """A built model, how it was built, and the reference values it must match."""

    kwargs: dict
    outputs: list[str]
    hidden: tuple[str, str]
    expected: dict[str, np.ndarray]
    transformer: object = field(default=None)

    @property
    def model(self):
        return self.transformer.model

    def hidden_model(self):
        """A model from the inputs to the final hidden states."""
        layer_name, end = self.hidden
        layer = self.model.get_layer(layer_name)
        return keras.Model(self.model.inputs, getattr(layer, end))


def perturbed(hf_model):
    """Shift every trained weight of a freshly initialised HF model (so LN gains, biases
    and heads are all exercised); RoFormer's fixed sinusoid table is left alone."""
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            if "embed_positions" not in name:
                p.add_(torch.randn_like(p) * 0.1)
    return hf_model.eval()


def run_hf(hf_model):
    with torch.no_grad():
        return hf_model(input_ids=torch.tensor(IDS), token_type_ids=torch.tensor(SEGS),
                        attention_mask=torch.tensor(VALID).long(), output_hidden_states=True)


def save_hf(hf_model, directory) -> str:
    hf_model.save_pretrained(directory)
    return str(directory)


def make_case(name, tmp) -> Case:
    """Build the reference and the model for one zoo entry."""
    torch.manual_seed(0)
    if name in ("albert", "albert_unshared"):
        hf = perturbed(transformers.AlbertForPreTraining(
            transformers.AlbertConfig(embedding_size=16, hidden_act="gelu_new", **TINY)))
        path = save_hf(hf, tmp / "hf_albert")
        out = run_hf(hf)
        with torch.no_grad():
            pooled = hf.albert(input_ids=torch.tensor(IDS), token_type_ids=torch.tensor(SEGS),
                               attention_mask=torch.tensor(VALID).long()).pooler_output
        expected = {"hidden": out.hidden_states[-1], "pool": pooled,
                    "nsp": torch.softmax(out.sop_logits, -1), "mlm": out.prediction_logits}
        return Case(dict(config_path=path, checkpoint_path=path, model=name, with_mlm="linear",
                         with_nsp=True), ["nsp", "mlm"], ("MLM-Dense", "input"), expected)
    if name == "roformer":
        hf = perturbed(transformers.RoFormerForMaskedLM(transformers.RoFormerConfig(**TINY)))
        path, out = save_hf(hf, tmp / "hf_roformer"), run_hf(hf)
        return Case(dict(config_path=path, checkpoint_path=path, model=name, with_mlm="linear"),
                    ["mlm"], ("MLM-Dense", "input"),
                    {"hidden": out.hidden_states[-1], "mlm": out.logits})
    if name == "electra":
        hf = perturbed(transformers.ElectraForPreTraining(
            transformers.ElectraConfig(embedding_size=16, **TINY)))
        path, out = save_hf(hf, tmp / "hf_electra"), run_hf(hf)
        return Case(dict(config_path=path, checkpoint_path=path, model=name,
                         with_discriminator="linear"), ["discriminator"],
                    ("Discriminator-Dense", "input"),
                    {"hidden": out.hidden_states[-1], "discriminator": out.logits[..., None]})
    if name == "electra_generator":
        hf = perturbed(transformers.ElectraForMaskedLM(
            transformers.ElectraConfig(embedding_size=16, **TINY)))
        path, out = save_hf(hf, tmp / "hf_electra_generator"), run_hf(hf)
        return Case(dict(config_path=path, checkpoint_path=path, model="electra",
                         with_mlm="linear"), ["mlm"], ("MLM-Dense", "input"),
                    {"hidden": out.hidden_states[-1], "mlm": out.logits})
    config = {k: v for k, v in TINY.items()}
    if name == "nezha":
        weights = random_bert_weights(1, positions=0, heads=True)
        hidden = np_encoder(weights, IDS, SEGS, heads=4, layers=2, positions="relative")
        pool, mlm = np_bert_heads(weights, hidden)
        config_path, prefix = write_checkpoint(tmp / name, weights, {**config, "hidden_act": "gelu"})
        return Case(dict(config_path=config_path, checkpoint_path=prefix, model=name,
                         with_pool=True, with_mlm="linear"), ["pool", "mlm"],
                    ("MLM-Dense", "input"), {"hidden": hidden, "pool": pool, "mlm": mlm})
    if name == "roformer_v2":
        weights = random_bert_weights(2, positions=0, biases=False, norms=False)
        hidden = np_encoder(weights, IDS, SEGS, heads=4, layers=2, positions="rotary", norm="rms",
                            act=lambda x: np.maximum(x, 0))
        config_path, prefix = write_checkpoint(tmp / name, weights, {**config, "hidden_act": "relu"})
        return Case(dict(config_path=config_path, checkpoint_path=prefix, model=name,
                         with_mlm="linear"), ["mlm"],
                    ("Transformer-1-FeedForward-Norm", "output"),
                    {"hidden": hidden, "mlm": hidden @ weights["bert/embeddings/word_embeddings"].T})
    if name == "gau_alpha":
        weights = random_gau_weights(3)
        hidden = np_gau_alpha(weights, IDS, SEGS, layers=2, units=37, key_size=16)
        config_path, prefix = write_checkpoint(
            tmp / name, weights, {**config, "hidden_act": "swish", "attention_key_size": 16})
        return Case(dict(config_path=config_path, checkpoint_path=prefix, model=name,
                         with_mlm="linear"), ["mlm"],
                    ("Transformer-1-GatedAttentionUnit-Norm", "output"),
                    {"hidden": hidden, "mlm": hidden @ weights["bert/embeddings/word_embeddings"].T})
    raise KeyError(name)


CASES = ["albert", "albert_unshared", "nezha", "roformer", "roformer_v2", "electra",
         "electra_generator", "gau_alpha"]


class Zoo:
    """Builds each case once per module, on first use."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.cases: dict[str, Case] = {}

    def __getitem__(self, name) -> Case:
        if name not in self.cases:
            case = make_case(name, self.tmp)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                case.transformer = build_transformer_model(**case.kwargs, return_keras_model=False)
            unused = [str(w.message) for w in caught if "not used" in str(w.message)]
            if name != "roformer":  # HF's RoFormer also stores its fixed sinusoid table
                assert not unused, unused
            self.cases[name] = case
        return self.cases[name]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return Zoo(tmp_path_factory.mktemp("zoo"))


@pytest.mark.parametrize("name", CASES)
def test_parity(zoo, name):
    """Hidden states and every head match the reference at real tokens of a padded batch."""
    case = zoo[name]
    got = dict(zip(case.outputs, predict(case.model)))
    got["hidden"] = predict(case.hidden_model())[0]
    if "pool" in case.expected and "pool" not in got:
        got["pool"] = predict(keras.Model(case.model.inputs,
                                          case.model.get_layer("Pooler-Dense").output))[0]
    errors = {k: relative_error(got[k], case.expected[k]) for k in case.expected}
    assert max(errors.values()) <= TOLERANCE, errors


def test_albert_unshared_equals_albert(zoo):
    """Spec 10: both load the same ALBERT checkpoint and agree before training; the
    unshared copies start identical and the shared model has one block."""
    shared, unshared = zoo["albert"], zoo["albert_unshared"]
    for a, b in zip(predict(shared.model), predict(unshared.model)):
        assert relative_error(a, b) <= TOLERANCE
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
    """Spec 10: every layer of the unshared model maps to ALBERT's one group."""
    transformer = ALBERT_Unshared(vocab_size=100, hidden_size=16, num_hidden_layers=3,
                                  num_attention_heads=2, intermediate_size=32, max_position=64)
    mapping = transformer.variable_mapping()
    ffn = [mapping[f"Transformer-{i}-FeedForward"] for i in range(3)]
    assert ffn[0] == ffn[1] == ffn[2]
    assert all(n.startswith("bert/encoder/transformer/group_0/inner_group_0/ffn_1/") for n in ffn[0])
    assert "Transformer-FeedForward" in ALBERT(
        vocab_size=100, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=32, max_position=64).variable_mapping()


@pytest.mark.parametrize("name", CASES)
def test_tf_checkpoint_round_trip(zoo, name, tmp_path):
    """save_weights_as_checkpoint (Google names) -> build from that prefix -> same outputs."""
    case = zoo[name]
    prefix = str(tmp_path / "round_trip.ckpt")
    case.transformer.save_weights_as_checkpoint(prefix)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rebuilt = build_transformer_model(**{**case.kwargs, "checkpoint_path": prefix})
    assert not [w for w in caught if "not used" in str(w.message)]
    for a, b in zip(predict(case.model), predict(rebuilt)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_keras_save_load(zoo, name, tmp_path):
    """model.save -> keras.models.load_model with no custom_objects -> identical outputs."""
    case = zoo[name]
    path = tmp_path / f"{name}.keras"
    case.model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(predict(case.model), predict(loaded)):
        np.testing.assert_array_equal(a, b)


def test_albert_unshared_training_unties_blocks(zoo):
    """Spec 10: after one optimizer step the unshared blocks differ; ALBERT keeps one block."""
    unshared = build_transformer_model(**zoo["albert_unshared"].kwargs, return_keras_model=False)
    mlm = keras.Model(unshared.model.inputs, unshared.model.outputs[1])
    mlm.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    mlm.train_on_batch([IDS, SEGS], np.random.default_rng(0).normal(size=(2, 8, 100)))
    w0 = unshared.layers["Transformer-0-FeedForward"].get_weights()[0]
    w1 = unshared.layers["Transformer-1-FeedForward"].get_weights()[0]
    assert np.abs(w0 - w1).max() > 1e-6
    assert sum(isinstance(layer, FeedForward) for layer in zoo["albert"].model.layers) == 1


def test_padding_does_not_change_real_tokens(zoo):
    """Extra padding leaves every real-token output unchanged (all masks reach the attention)."""
    for name in ("nezha", "gau_alpha"):
        model = zoo[name].hidden_model()
        short = predict(model)[0]
        pad = np.zeros((2, 5), dtype=IDS.dtype)
        longer = predict(model, np.concatenate([IDS, pad], 1), np.concatenate([SEGS, pad], 1))[0]
        np.testing.assert_allclose(longer[:, :8][VALID], short[VALID], rtol=0, atol=1e-5)


def test_gated_attention_unit_layer():
    """GAU with the paper's defaults (biases, swish, ``squared_relu``: relu(a)^2 / n over the
    n real keys) matches numpy on a padded batch; the cross-attention form ignores
    whatever sits at masked keys."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    layer = GatedAttentionUnit(units=12, key_size=4)
    layer(x, mask=mask)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.weights])
    wi, bi, wo, bo, q_beta, q_gamma, k_beta, k_gamma = layer.get_weights()
    h = x @ wi + bi
    u, v, z = np.split(h / (1 + np.exp(-h)), [12, 24], axis=-1)
    a = (z * q_gamma + q_beta) @ np.swapaxes(z * k_gamma + k_beta, 1, 2) / 2
    attention = np.where(mask[:, None], np.maximum(a, 0) ** 2, 0) / mask.sum(-1)[:, None, None]
    expected = (u * (attention @ v)) @ wo + bo
    got = keras.ops.convert_to_numpy(layer(x, mask=mask))
    np.testing.assert_allclose(got[mask], expected[mask], rtol=0, atol=1e-4)

    cross = GatedAttentionUnit(units=12, key_size=4, self_attention=False)
    y = rng.normal(size=(2, 6, 8)).astype("float32")
    noisy = np.where(mask[..., None], y, 1e3).astype("float32")
    out = keras.ops.convert_to_numpy(cross([x, y, y], mask=[None, mask, mask]))
    out_noisy = keras.ops.convert_to_numpy(cross([x, noisy, noisy], mask=[None, mask, mask]))
    assert out.shape == (2, 6, 8)
    np.testing.assert_allclose(out, out_noisy, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["albert", "albert_unshared", "nezha", "roformer", "roformer_v2",
                                  "electra", "gau_alpha"])
def test_missing_required_field_is_named(name):
    assert name in MODELS
    config = {k: v for k, v in TINY.items() if k != "num_hidden_layers"}
    with pytest.raises(ValueError, match="num_hidden_layers"):
        build_transformer_model(model=name, **config)


def test_wrong_checkpoint_names_the_variable(zoo):
    """Loading ALBERT's HF checkpoint as a RoFormer fails naming the missing variable."""
    path = zoo["albert"].kwargs["checkpoint_path"]
    with pytest.raises(ValueError, match="bert/embeddings/word_embeddings|roformer"):
        build_transformer_model(path, path, model="roformer")
