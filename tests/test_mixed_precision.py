"""Mixed precision: every registered model builds, trains and predicts under
``mixed_bfloat16`` and ``mixed_float16`` (loss scaling) without NaN/inf."""

import keras
import numpy as np
import pytest
from keras import ops

from bert4keras.models import MODELS, build_transformer_model

CONFIG = dict(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=24, max_position=32, dropout_rate=0.1)


def inputs_for(model, rng):
    """Token ids (one padded row), zero segment ids, a float context for T5 decoders."""
    arrays = []
    for tensor in model.inputs:
        shape = (2, 8) + tuple(tensor.shape[2:])
        if "int" in tensor.dtype:
            ids = rng.randint(1, CONFIG["vocab_size"], shape) if "Segment" not in tensor.name \
                else np.zeros(shape, "int32")
            if "Segment" not in tensor.name:
                ids[0, 5:] = 0
            arrays.append(ids.astype("int32"))
        else:
            arrays.append(rng.randn(*shape).astype("float32"))
    return arrays


def single_output(model):
    outputs = model.outputs
    return model if len(outputs) == 1 else keras.Model(model.inputs, outputs[0])


def train_and_predict(name: str, policy: str, eager: bool, compare: bool):
    """Build ``name`` under ``policy``, fit 2 steps, predict; returns the predictions and,
    for comparison, those of the same weights in float32."""
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = single_output(build_transformer_model(model=name, **CONFIG))
        optimizer = keras.optimizers.Adam(1e-3)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer, lambda y, p: ops.mean(ops.square(ops.cast(p, "float32") - y)),
                      run_eagerly=eager)
        rng = np.random.RandomState(0)
        x = inputs_for(model, rng)
        y = np.zeros(tuple(model(x).shape), "float32")
        history = model.fit(x, y, batch_size=2, epochs=2, verbose=0).history["loss"]
        predictions = ops.convert_to_numpy(ops.cast(model(x), "float32"))
        weights = model.get_weights()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    if not compare:
        return history, predictions, None
    reference = single_output(build_transformer_model(model=name, **CONFIG))
    reference.set_weights([np.asarray(w, "float32") for w in weights])
    return history, predictions, ops.convert_to_numpy(reference(x))


def check(name: str, policy: str, eager: bool = True, compare: bool = True) -> None:
    """Eager steps by default: on JAX they share compiled ops across models (much faster)."""
    history, predictions, reference = train_and_predict(name, policy, eager, compare)
    assert np.all(np.isfinite(history)), (name, policy, history)
    assert np.all(np.isfinite(predictions)), (name, policy)
    if reference is None:
        return
    scale = max(1.0, float(np.abs(reference).max()))
    tolerance = 0.1 if policy == "mixed_bfloat16" else 0.02
    np.testing.assert_allclose(predictions, reference, atol=tolerance * scale, err_msg=name)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_bert_compiled(policy):
    """BERT through the compiled (jitted) train step, predictions close to float32."""
    check("bert", policy, eager=False)


POLICIES = ("mixed_bfloat16",) if keras.backend.backend() == "jax" else (
    "mixed_bfloat16", "mixed_float16")


@pytest.mark.slow
def test_every_registered_model():
    """Each model class in MODELS (duplicates such as roberta = bert skipped). On JAX, where
    every new op compiles (2 CPU cores in CI), only bfloat16 and no float32 reference:
    the compiled BERT tests cover float16 there."""
    seen = set()
    for name, cls in MODELS.items():
        key = (cls, name.split("_")[-1] if name.startswith(("t5", "mt5")) else "", name[:3])
        if key in seen:
            continue
        seen.add(key)
        for policy in POLICIES:
            check(name, policy, compare=keras.backend.backend() != "jax")
