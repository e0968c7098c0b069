"""The rotary family: RoFormer (against HF transformers), RoFormerV2 and GAU-α (against
numpy forward passes on random checkpoints under the released names), and the
GatedAttentionUnit layer; each model also round-trips through a TF checkpoint and
``model.save``."""

import numpy as np
import pytest
from harness import (
    ENCODER_CONFIG, IDS, SEGS, Case, bert_encoder, check_encoder_parity, check_keras_save_load,
    check_padding_does_not_change_real_tokens, check_checkpoint_round_trip, key_mask,
    masked_softmax, perturbed, random_bert_weights, rms_norm, rope, run_hf_encoder, to_numpy,
    write_checkpoint,
)

from bert4keras.layers import GatedAttentionUnit
from bert4keras.models import MODELS, build_transformer_model


def gau_alpha_forward(w, ids, segs, *, layers, units, key_size):
    """GAU-α (kexue.fm/archives/9052): RMS-normed embeddings, then per layer
    ``x = rms(x + GAU(x))``; GAU (arXiv:2202.10447): ``u, v, z = swish(x W_i)``,
    q/k = per-dim scales of z, rotary, ``softmax_plus`` (logits times
    log(max(n, 16)) / log 512, n = real keys), ``o = (u * A v) W_o``."""
    x = w["bert/embeddings/word_embeddings"][ids] + w["bert/embeddings/token_type_embeddings"][segs]
    x = rms_norm(x)
    mask = key_mask(ids)
    scale = (np.log(np.maximum(mask.sum(-1), 16)) / np.log(512))[:, None, None]
    for i in range(layers):
        p = f"GAU_alpha/encoder/layer_{i}/gau/"
        h = x @ w[p + "i_dense/kernel"]
        h = h / (1 + np.exp(-h))
        u, v, z = h[..., :units], h[..., units:2 * units], h[..., 2 * units:]
        q, k = rope(z * w[p + "q_scaleoffset/gamma"]), rope(z * w[p + "k_scaleoffset/gamma"])
        a = np.einsum("bmd,bnd->bmn", q, k) / np.sqrt(key_size) * scale
        attention = masked_softmax(a, mask[:, None, :])
        x = rms_norm(x + (u * (attention @ v)) @ w[p + "o_dense/kernel"])
    return x


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


# --------------------------------------------------------------------------- the zoo


def roformer(tmp):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = perturbed(transformers.RoFormerForMaskedLM(transformers.RoFormerConfig(**ENCODER_CONFIG)))
    hf.save_pretrained(tmp)
    out = run_hf_encoder(hf)
    return Case("roformer", dict(config_path=str(tmp), checkpoint_path=str(tmp), model="roformer",
                                 with_mlm="linear"),
                {"hidden": out.hidden_states[-1].numpy(), "mlm": out.logits.numpy()},
                outputs=("mlm",), hidden=("MLM-Dense", "input"),
                unused="roformer.encoder.embed_positions.weight")  # HF's fixed sinusoid table


def roformer_v2(tmp):
    weights = random_bert_weights(2, positions=0, biases=False, norms=False)
    hidden = bert_encoder(weights, IDS, SEGS, heads=4, layers=2, positions="rotary", norm="rms",
                          act=lambda x: np.maximum(x, 0))
    config_path, prefix = write_checkpoint(tmp, weights, {**ENCODER_CONFIG, "hidden_act": "relu"})
    return Case("roformer_v2", dict(config_path=config_path, checkpoint_path=prefix,
                                    model="roformer_v2", with_mlm="linear"),
                {"hidden": hidden, "mlm": hidden @ weights["bert/embeddings/word_embeddings"].T},
                outputs=("mlm",), hidden=("Transformer-1-FeedForward-Norm", "output"),
                weights=weights)


def gau_alpha(tmp):
    weights = random_gau_weights(3)
    hidden = gau_alpha_forward(weights, IDS, SEGS, layers=2, units=37, key_size=16)
    config_path, prefix = write_checkpoint(
        tmp, weights, {**ENCODER_CONFIG, "hidden_act": "swish", "attention_key_size": 16})
    return Case("gau_alpha", dict(config_path=config_path, checkpoint_path=prefix,
                                  model="gau_alpha", with_mlm="linear"),
                {"hidden": hidden, "mlm": hidden @ weights["bert/embeddings/word_embeddings"].T},
                outputs=("mlm",), hidden=("Transformer-1-GatedAttentionUnit-Norm", "output"),
                weights=weights)


ZOO = {"roformer": roformer, "roformer_v2": roformer_v2, "gau_alpha": gau_alpha}


def test_parity(case):
    check_encoder_parity(case)


def test_checkpoint_round_trip(case, tmp_path):
    check_checkpoint_round_trip(case, tmp_path)


def test_keras_save_load(case, tmp_path):
    check_keras_save_load(case, tmp_path)


@pytest.mark.parametrize("case", ["gau_alpha"], indirect=True)
def test_padding_does_not_change_real_tokens(case):
    check_padding_does_not_change_real_tokens(case)


@pytest.mark.parametrize("name", ["roformer", "roformer_v2", "gau_alpha"])
def test_missing_required_field_is_named(name):
    assert name in MODELS
    config = {k: v for k, v in ENCODER_CONFIG.items() if k != "num_hidden_layers"}
    with pytest.raises(ValueError, match="num_hidden_layers"):
        build_transformer_model(model=name, **config)


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
    got = to_numpy(layer(x, mask=mask))
    np.testing.assert_allclose(got[mask], expected[mask], rtol=0, atol=1e-4)

    cross = GatedAttentionUnit(units=12, key_size=4, self_attention=False)
    y = rng.normal(size=(2, 6, 8)).astype("float32")
    noisy = np.where(mask[..., None], y, 1e3).astype("float32")
    out = to_numpy(cross([x, y, y], mask=[None, mask, mask]))
    out_noisy = to_numpy(cross([x, noisy, noisy], mask=[None, mask, mask]))
    assert out.shape == (2, 6, 8)
    np.testing.assert_allclose(out, out_noisy, rtol=0, atol=1e-5)
