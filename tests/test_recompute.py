"""Recompute: same outputs and gradients with and without, dropout replayed, switches."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from bert4keras.adversarial import gradients
from bert4keras.layers import (
    FeedForward, Layer, LayerNormalization, MultiHeadAttention, TokenSlice,
)
from bert4keras.models import build_transformer_model
from bert4keras.recompute import (
    recompute_enabled, recompute_grad, recompute_layer, set_recompute, strtobool,
)

BACKEND = keras.backend.backend()


def tiny_bert(recompute: bool, dropout: float = 0.0, layers: int = 4):
    keras.utils.set_random_seed(1)
    return build_transformer_model(vocab_size=40, hidden_size=32, num_hidden_layers=layers,
                                   num_attention_heads=2, intermediate_size=64, max_position=16,
                                   dropout_rate=dropout, attention_dropout_rate=dropout,
                                   recompute=recompute, return_keras_model=False)


def recomputed_types(transformer) -> set:
    return {type(layer) for layer in transformer.layers.values()
            if getattr(getattr(layer, "call", None), "_bert4keras_recompute", False)}


def loss_and_grads(model, inputs):
    """Scalar loss and output of a training-mode forward; gradients w.r.t. the token
    embeddings' output and every trainable variable."""
    variables = model.trainable_variables
    layer = model.get_layer("Embedding-Token")
    lookups = ops.take(layer.embeddings, ops.convert_to_tensor(inputs[0]), axis=0)

    def f(e, *values):
        keras.utils.set_random_seed(7)  # torch's global RNG drives unseeded dropout
        original = layer.call
        layer.call = lambda ids, **kw: ops.cast(e, layer.compute_dtype)
        try:
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                out = model(inputs, training=True)
        finally:
            del layer.call
        del original
        weights = ops.arange(out.shape[-1], dtype="float32") / out.shape[-1]
        return ops.mean(ops.square(out) * weights), out

    args = [lookups] + [v.value for v in variables]
    if BACKEND == "jax":  # one compiled program instead of op-by-op eager compiles
        import jax

        grad_fn = jax.value_and_grad(f, argnums=tuple(range(len(args))), has_aux=True)
        (value, out), grads = jax.jit(grad_fn)(*args)
    else:
        outputs = []
        value, grads = gradients(lambda *a: _first(f(*a), outputs), *args)
        out = outputs[0]
    return (float(ops.convert_to_numpy(value)), ops.convert_to_numpy(out),
            [ops.convert_to_numpy(g) for g in grads])


def _first(pair, sink):
    sink.append(ops.stop_gradient(pair[1]))
    return pair[0]


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_same_outputs_and_gradients(dropout):
    """Forward and every gradient equal with recompute off and on, dropout included."""
    layers = 4 if dropout == 0 else 2  # 4 blocks; the dropout replay needs fewer
    plain, recomputed = tiny_bert(False, dropout, layers), tiny_bert(True, dropout, layers)
    recomputed.model.set_weights(plain.model.get_weights())
    assert recomputed_types(recomputed)
    rng = np.random.RandomState(0)
    tokens = rng.randint(1, 40, (3, 10))
    tokens[0, 6:] = 0
    inputs = [tokens, np.zeros_like(tokens)]
    loss0, out0, grads0 = loss_and_grads(plain.model, inputs)
    loss1, out1, grads1 = loss_and_grads(recomputed.model, inputs)
    np.testing.assert_allclose(out0, out1, atol=1e-6)
    assert np.isclose(loss0, loss1, atol=1e-6)
    for g0, g1 in zip(grads0, grads1):
        np.testing.assert_allclose(g0, g1, atol=1e-5)


def test_fit_with_recompute_matches_plain_fit():
    """Training through fit (jitted on JAX) follows the same trajectory with recompute."""
    histories = []
    rng = np.random.RandomState(0)
    tokens = rng.randint(1, 40, (8, 10))
    y = rng.randint(0, 2, 8)
    for flag in (False, True):
        bert = tiny_bert(flag, 0.1, layers=1)
        pooled = TokenSlice(0)(bert.model.output)
        model = keras.Model(bert.model.inputs, keras.layers.Dense(2, activation="softmax")(pooled))
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        keras.utils.set_random_seed(3)
        histories.append(model.fit([tokens, np.zeros_like(tokens)], y, batch_size=4, epochs=2,
                                   shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)


def test_decorator_contract():
    """Off -> the very same function; on -> a call without a mask argument works
    when Keras passes one, and inference runs the plain call."""
    def double(self, inputs):
        return inputs * 2.0

    set_recompute(False)
    assert recompute_grad(double) is double
    set_recompute(True)
    try:
        class Double(Layer):
            call = recompute_grad(double)
    finally:
        set_recompute(False)
    x = np.ones((2, 3), "float32")
    masked = keras.layers.Masking(0.0)(keras.Input((3, 1)))
    out = Double()(masked)
    assert out.shape == (None, 3, 1)
    np.testing.assert_allclose(ops.convert_to_numpy(Double()(x, training=True)), 2 * x)
    np.testing.assert_allclose(ops.convert_to_numpy(Double()(x, training=False)), 2 * x)


def test_masks_preserved_and_layers_selected():
    bert = tiny_bert(True)
    assert recomputed_types(bert) == {MultiHeadAttention, FeedForward, LayerNormalization}
    attention = bert.layers["Transformer-0-MultiHeadSelfAttention"]
    assert recompute_layer(attention) is attention
    tokens = np.array([[5, 6, 0, 0]])
    embedded = bert.model.get_layer("Embedding-Token")(tokens)
    assert ops.convert_to_numpy(embedded._keras_mask).tolist() == [[True, True, False, False]]


def test_truth_table_and_environment():
    """RECOMPUTE parsing, read at import."""
    for value in ("1", "true", "True", "on", "yes", "y", "t"):
        assert strtobool(value) is True
    for value in ("0", "false", "off", "no", "n", "f"):
        assert strtobool(value) is False
    with pytest.raises(ValueError, match="maybe"):
        strtobool("maybe")
    assert recompute_enabled() is (os.environ.get("RECOMPUTE", "0") in ("1", "true", "on"))
    code = "import bert4keras.backend as b; print(b.do_recompute, b.recompute_grad(len) is len)"
    env = dict(os.environ, KERAS_BACKEND="numpy", RECOMPUTE="on")  # the lightest backend
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["True", "False"]
    env["RECOMPUTE"] = "maybe"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "RECOMPUTE='maybe'" in out.stderr


@pytest.mark.skipif(BACKEND != "jax", reason="XLA's own memory analysis of the compiled step")
def test_recompute_shrinks_the_compiled_training_step_on_jax():
    """On XLA:CPU, jax.checkpoint's barriers are dropped and the forward activations come
    back; the cotangent-anchored recomputation must really free them."""
    import jax

    def temp_bytes(recompute: bool) -> int:
        keras.utils.set_random_seed(1)
        model = build_transformer_model(vocab_size=200, hidden_size=64, num_hidden_layers=4,
                                        num_attention_heads=4, intermediate_size=256,
                                        max_position=128, dropout_rate=0.1, recompute=recompute)
        tokens = np.random.RandomState(0).randint(1, 200, (8, 128))
        variables = model.trainable_variables
        states = model.non_trainable_variables

        def loss(values, state_values):
            mapping = list(zip(variables, values)) + list(zip(states, state_values))
            with keras.StatelessScope(state_mapping=mapping):
                out = model([tokens, np.zeros_like(tokens)], training=True)
            return ops.mean(ops.square(out))

        args = ([v.value for v in variables], [v.value for v in states])
        compiled = jax.jit(jax.grad(loss)).lower(*args).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain, recomputed = temp_bytes(False), temp_bytes(True)
    assert recomputed < 0.6 * plain, (recomputed, plain)
