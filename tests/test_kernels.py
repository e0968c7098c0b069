"""Backend kernels compute the numbers of the plain formulas, and bfloat16 stays close to float32."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from bert4keras import kernels
from bert4keras.backend import gelu_erf
from bert4keras.layers.core import Dense
from bert4keras.models import build_transformer_model
from bert4keras.optimizers import Adam, extend_with_weight_decay


def test_linear_and_gelu_match_the_formulas():
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype("float32") for s in ((2, 5, 8), (8, 3), (3,)))
    got = ops.convert_to_numpy(kernels.linear(ops.convert_to_tensor(x), keras.Variable(w),
                                              keras.Variable(b)))
    np.testing.assert_allclose(got, x @ w + b, rtol=1e-5, atol=1e-5)
    from scipy.special import erf

    z = np.linspace(-6, 6, 101).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(gelu_erf(z)),
                               0.5 * z * (1 + erf(z / np.sqrt(2))), rtol=1e-5, atol=1e-6)


def test_dense_matches_keras_dense():
    x = np.random.default_rng(1).standard_normal((2, 4, 6)).astype("float32")
    ours, theirs = Dense(5, activation="relu"), keras.layers.Dense(5, activation="relu")
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(ours(x)), ops.convert_to_numpy(theirs(x)),
                               rtol=1e-6, atol=1e-6)


def test_attention_matches_the_softmax_formula():
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((2, 5, 3, 4)).astype("float32") for _ in range(3))
    mask = np.ones((2, 1, 1, 5), bool)
    mask[0, ..., 3:] = False
    q, k, v = (ops.convert_to_tensor(t) for t in (q, k, v))
    got = ops.convert_to_numpy(kernels.dot_product_attention(
        q, k, v, mask=ops.convert_to_tensor(mask), scale=0.5))
    q, k, v = (ops.convert_to_numpy(t) for t in (q, k, v))
    logits = np.einsum("bnhd,bmhd->bhnm", q, k) * 0.5
    logits = np.where(mask, logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, np.einsum("bhnm,bmhd->bnhd", probs, v), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("decay", [False, True])
def test_adam_fused_step_matches_per_variable_step(decay):
    """The PyTorch fused step (elsewhere: the same code path twice) against the per-variable one."""
    finals = []
    for fused in (True, False):
        variables = [keras.Variable(np.random.default_rng(i).standard_normal((4, 3)).astype("float32"))
                     for i in range(3)]
        cls = extend_with_weight_decay(Adam, "AdamWTestKernels") if decay else Adam
        optimizer = cls(1e-2, **({"weight_decay_rate": 0.1} if decay else {"weight_decay": 0.05}))
        if not fused:
            optimizer._fused_torch_step = lambda grads, variables: False
        for step in range(4):
            grads = [ops.convert_to_tensor(np.random.default_rng(10 * step + i)
                                           .standard_normal((4, 3)).astype("float32")) for i in range(3)]
            optimizer.apply(grads, variables)
        finals.append([ops.convert_to_numpy(v) for v in variables])
    for a, b in zip(*finals):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_mixed_bfloat16_minilm_stays_close_to_float32(minilm_dir):
    """Real MiniLM under ``mixed_bfloat16``: every token vector has cosine >= 0.999 to float32."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, (4, 64)).astype("int32")
    ids[:, 0], ids[1, 40:] = 101, 0
    outputs = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_dtype_policy(policy)
        try:
            model = build_transformer_model(os.path.join(minilm_dir, "config.json"), minilm_dir)
            outputs[policy] = ops.convert_to_numpy(
                ops.cast(model.predict_on_batch([ids, np.zeros_like(ids)]), "float32"))
        finally:
            keras.mixed_precision.set_dtype_policy("float32")
    a, b = outputs["float32"], outputs["mixed_bfloat16"]
    valid = ids != 0
    valid[:, 0] = True
    cosine = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert cosine[valid].min() >= 0.999, cosine[valid].min()
