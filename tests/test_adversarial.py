"""FGM, gradient penalty, VAT (https://kexue.fm/archives/7234, /7466) and integrated gradients
(arXiv:1703.01365): values derived by hand or computed independently of the helpers."""

import keras
import numpy as np
import pytest
from keras import ops

from bert4keras import adversarial
from bert4keras.adversarial import (
    adversarial_training, gradient_penalty, gradients, virtual_adversarial_training,
)
from bert4keras.attribution import integrated_gradients, token_scores

BACKEND = keras.backend.backend()


class Record(keras.layers.Layer):
    """Identity that records (as numpy) what it sees in training-mode calls, jitted or not."""

    def __init__(self, seen, **kwargs):
        super().__init__(**kwargs)
        self.sink = seen.append  # a bound method: Keras would copy a list attribute

    def call(self, x, training=None):
        if training:
            if BACKEND == "jax":
                import jax

                jax.debug.callback(lambda v: self.sink(np.asarray(v)), x)
            else:
                self.sink(ops.convert_to_numpy(ops.stop_gradient(x)))
        return x


def linear_softmax(vocab=5, dim=4, classes=3, length=2, seen=None, name="emb", seed=0):
    """ids -> Embedding -> (Record) -> Flatten -> Dense softmax: logits are linear in the lookups."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((length,), dtype="int32")
    e = keras.layers.Embedding(vocab, dim, embeddings_initializer=keras.initializers.RandomNormal(
        stddev=1.0), name=name)(ids)
    if seen is not None:
        e = Record(seen)(e)
    logits = keras.layers.Dense(classes, name="out")(keras.layers.Flatten()(e))
    return keras.Model(ids, keras.layers.Softmax(dtype="float32")(logits))


def loss_fn(model, x, y, values):
    """Mean sparse CE of ``model`` with its trainable variables replaced by ``values``."""
    with keras.StatelessScope(state_mapping=list(zip(model.trainable_variables, values))):
        p = model(x)
    return ops.mean(keras.losses.sparse_categorical_crossentropy(y, p))


def grads_at(model, x, y, values):
    return [ops.convert_to_numpy(g) for g in gradients(
        lambda *v: loss_fn(model, x, y, v), *[ops.convert_to_tensor(v) for v in values])[1]]


def data(vocab=5, length=2, batch=6, classes=3, seed=1):
    rng = np.random.RandomState(seed)
    return rng.randint(0, vocab, (batch, length)).astype("int32"), rng.randint(0, classes, batch)


# --------------------------------------------------------------------------- training helpers


@pytest.mark.parametrize("perturb", ["matrix", "output"])
def test_fgm_bookkeeping(perturb):
    """One SGD step equals a plain step at the perturbed point, delta removed."""
    seen = []
    model = linear_softmax(seen=seen)
    x, y = data()
    lr, epsilon = 0.5, 0.7
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy")
    w0 = [np.array(w) for w in model.get_weights()]
    names = [v.path for v in model.trainable_variables]
    g = grads_at(model, x, y, w0)
    if perturb == "matrix":
        delta = epsilon * g[0] / (np.linalg.norm(g[0]) + 1e-8)
        assert np.isclose(np.linalg.norm(delta), epsilon, atol=1e-6)
        g_adv = grads_at(model, x, y, [w0[0] + delta] + w0[1:])
    else:  # per-sample delta on the lookups: gradient w.r.t. the lookups, by chain rule in numpy
        lookups = w0[0][x]
        _, (ge,) = gradients(lambda e: _loss_from_lookups(model, e, y), ops.convert_to_tensor(lookups))
        ge = ops.convert_to_numpy(ge)
        delta = epsilon * ge / (np.sqrt((ge ** 2).sum(axis=(1, 2), keepdims=True)) + 1e-8)
        g_adv = _grads_from_lookups(model, x, y, w0, lookups + delta)
    adversarial_training(model, "emb", epsilon, perturb=perturb)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    for name, w, w_start, grad in zip(names, model.get_weights(), w0, g_adv):
        np.testing.assert_allclose(w, w_start - lr * grad, atol=1e-6, err_msg=name)
    seen_delta = seen[-1] - w0[0][x]
    expected = delta[x] if perturb == "matrix" else delta
    np.testing.assert_allclose(seen_delta, expected, atol=1e-6)


def _loss_from_lookups(model, e, y):
    dense = model.get_layer("out")
    logits = ops.matmul(ops.reshape(e, (e.shape[0], -1)), dense.kernel) + dense.bias
    return ops.mean(keras.losses.sparse_categorical_crossentropy(y, ops.softmax(logits)))


def _grads_from_lookups(model, x, y, w0, lookups):
    """Gradients of every weight when the lookups are replaced by ``lookups`` (constant offset)."""
    offset = ops.convert_to_tensor(lookups - w0[0][x])

    def f(table, kernel, bias):
        e = ops.take(table, ops.convert_to_tensor(x), axis=0) + offset
        logits = ops.matmul(ops.reshape(e, (e.shape[0], -1)), kernel) + bias
        return ops.mean(keras.losses.sparse_categorical_crossentropy(y, ops.softmax(logits)))

    return [ops.convert_to_numpy(g) for g in gradients(f, *[ops.convert_to_tensor(w) for w in w0])[1]]


def test_fgm_matches_gradient_penalty_to_first_order():
    """Un-normalised FGM (Dx = eps dL/dx) and the penalty eps/2 ||dL/dx||^2 agree to O(eps^2)."""
    model = linear_softmax(length=1)
    x, y = data(length=1)
    w0 = [np.array(w) for w in model.get_weights()]
    eps = 1e-3
    plain = _grads_from_lookups(model, x, y, w0, w0[0][x])
    _, (ge,) = gradients(lambda e: _loss_from_lookups(model, e, y), ops.convert_to_tensor(w0[0][x]))
    fgm = _grads_from_lookups(model, x, y, w0, w0[0][x] + eps * ops.convert_to_numpy(ge))
    model.compile(keras.optimizers.SGD(1.0), "sparse_categorical_crossentropy")
    gradient_penalty(model, "emb", eps)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    penalised = [w_start - w for w_start, w in zip(w0, model.get_weights())]
    for p, f, g in zip(plain, fgm, penalised):
        assert np.linalg.norm(f - p) > 0
        rel = np.linalg.norm((g - p) - (f - p)) / np.linalg.norm(f - p)
        assert rel < 1e-2, rel


def _penalty_logged(model, x, y, epsilon):
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    plain = float(loss_fn(model, x, y, model.trainable_variables))
    gradient_penalty(model, "emb", epsilon)
    logged = model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0).history["loss"][0]
    return logged - plain


def test_gradient_penalty_value():
    """The lookup gradient is dL/de = W (softmax(z) - onehot(y)) / B per sample; gp is its squared norm."""
    model = linear_softmax(length=1)
    x, y = data(length=1, batch=3)
    table, kernel, bias = model.get_weights()
    z = table[x[:, 0]] @ kernel + bias
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    rows = (p - np.eye(3)[y]) @ kernel.T / len(x)
    np.testing.assert_allclose(_penalty_logged(model, x, y, 2.0), (rows ** 2).sum(), rtol=1e-4)


def test_gradient_penalty_per_occurrence():
    """A token used twice contributes ||g1||^2 + ||g2||^2, not ||g1 + g2||^2."""
    model = linear_softmax(length=2)
    x, y = np.array([[3, 3]], "int32"), np.array([1])
    table, kernel, bias = model.get_weights()
    z = table[x[0]].reshape(-1) @ kernel + bias
    p = np.exp(z - z.max())
    p /= p.sum()
    g1, g2 = kernel[:4] @ (p - np.eye(3)[1]), kernel[4:] @ (p - np.eye(3)[1])
    gp = _penalty_logged(model, x, y, 2.0)
    np.testing.assert_allclose(gp, (g1 ** 2).sum() + (g2 ** 2).sum(), rtol=1e-4)
    assert not np.isclose(gp, ((g1 + g2) ** 2).sum(), rtol=1e-2)


def test_vat_direction_is_top_hessian_eigenvector():
    """Power iteration finds the top eigenvector of A^T (diag p - p p^T) A; iters=0
    gives a random direction of norm epsilon. No perturbation is left behind."""
    keras.utils.set_random_seed(3)
    seen = []
    model = linear_softmax(vocab=1, dim=4, classes=3, length=1, seen=seen)
    x = np.zeros((1, 1), "int32")
    model.compile(keras.optimizers.SGD(0.0), "kld")
    virtual_adversarial_training(model, "emb", epsilon=1e-2, xi=1e-3, iters=20, seed=7)
    model.fit(x, np.full((1, 3), 1 / 3, "float32"), epochs=1, verbose=0)
    table, kernel, bias = model.get_weights()
    z = table[0] @ kernel + bias
    p = np.exp(z - z.max())
    p /= p.sum()
    hessian = kernel @ (np.diag(p) - np.outer(p, p)) @ kernel.T
    top = np.linalg.eigh(hessian)[1][:, -1]
    delta = seen[-1][0, 0] - table[0]
    np.testing.assert_allclose(np.linalg.norm(delta), 1e-2, rtol=1e-4)
    assert abs(delta @ top) / np.linalg.norm(delta) > 0.99
    virtual_adversarial_training(model, "emb", epsilon=0.3, iters=0, seed=11)
    model.fit(x, np.full((1, 3), 1 / 3, "float32"), epochs=1, verbose=0)
    np.testing.assert_allclose(np.linalg.norm(seen[-1][0, 0] - table[0]), 0.3, rtol=1e-4)
    np.testing.assert_allclose(model.get_weights()[0], table, atol=1e-6)


def test_bert_fit_with_gradient_penalty():
    """The penalty (a double backward through attention) trains a tiny BERT with fit; the logged
    loss is ``loss + eps/2 ||d loss / d lookups||^2``, with the plain loss and gradient taken
    from a plain SGD step (each token occurs once in the batch, so its embedding-matrix
    gradient row is its lookup's gradient); the embedding matrix is untouched by the helper."""
    from bert4keras.models import build_transformer_model

    keras.utils.set_random_seed(0)
    bert = build_transformer_model(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=32, max_position=12,
                                   with_pool=True)
    model = keras.Model(bert.inputs, keras.layers.Dense(2, activation="softmax")(bert.output))
    rng = np.random.RandomState(0)
    tokens = rng.permutation(np.arange(1, 40))[:32].reshape(4, 8)
    tokens[0, 5] = 0  # one padded (masked) position, still a single occurrence of id 0
    x, y = [tokens, np.zeros_like(tokens)], np.eye(2)[rng.randint(0, 2, 4)]
    layer = model.get_layer("Embedding-Token")
    weights = model.get_weights()
    table = layer.get_weights()[0]
    lr, epsilon = 1000.0, 3.0
    model.compile(keras.optimizers.SGD(lr), "kld")
    plain = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history["loss"][0]
    g = (table - layer.get_weights()[0]) / lr
    penalty = 0.5 * epsilon * float(np.sum(np.square(g.astype("float64"))))
    model.set_weights(weights)
    model.compile(keras.optimizers.SGD(0.0), "kld")
    gradient_penalty(model, "Embedding-Token", epsilon)
    loss = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history["loss"][0]
    assert penalty > 1e-2 * plain  # large enough for the comparison to see it
    np.testing.assert_allclose(loss, plain + penalty, rtol=1e-5)
    np.testing.assert_array_equal(layer.get_weights()[0], table)


@pytest.mark.skipif(BACKEND == "jax", reason="the JAX step is functional: nothing to restore")
def test_fgm_restores_matrix_when_the_step_raises():
    model = linear_softmax()
    x, y = data()
    calls = []

    def failing_loss(y_true, y_pred):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("boom")
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

    model.compile(keras.optimizers.SGD(0.1), failing_loss, run_eagerly=True)
    table = np.array(model.get_weights()[0])
    adversarial_training(model, "emb", 1.0)
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    np.testing.assert_array_equal(model.get_weights()[0], table)


def test_bad_embedding_name():
    model = linear_softmax()
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"no layer named 'Embedding-Token'.*\['emb'\]"):
        adversarial_training(model, "Embedding-Token")
    with pytest.raises(ValueError, match="'out' .* without an embedding matrix"):
        virtual_adversarial_training(model, "out")
    with pytest.raises(ValueError, match="perturb must be"):
        adversarial_training(model, "emb", perturb="input")


# --------------------------------------------------------------------------- integrated gradients


def dense_model(fn, dim):
    inputs = keras.Input((dim,))
    return keras.Model(inputs, keras.layers.Lambda(fn)(inputs))


def test_ig_linear_model_is_exact_for_every_grid():
    """F = w.x + b gives IG = (x - baseline) * w for any steps and grid."""
    w, b = np.array([0.5, -2.0, 3.0]), 0.7
    model = dense_model(lambda t: ops.sum(t * ops.convert_to_tensor(w, t.dtype), axis=-1,
                                          keepdims=True) + b, 3)
    x, base = np.array([[1.0, 2.0, -1.0]]), np.array([0.5, 0.0, 1.0])
    for method in ("riemann_right", "trapezoid", "linspace_inclusive"):
        for steps in (1, 2, 7):
            if method == "linspace_inclusive" and steps == 1:
                continue
            ig = integrated_gradients(model, x, 0, base, steps, method, space="input")
            np.testing.assert_allclose(ig, (x - base) * w, atol=1e-6)


def test_ig_product_reference_values():
    """F = x1 x2 at (2, 3), n = 20: inclusive grid (3, 3); right Riemann (3.15, 3.15);
    bert4keras' grad(ax) * ax variant 2.0526315789 each; steps=1 right Riemann = grad x input."""
    model = dense_model(lambda t: t[:, :1] * t[:, 1:], 2)
    x = np.array([[2.0, 3.0]])
    cases = {"linspace_inclusive": 3.0, "riemann_right": 3.15, "bert4keras": 2.0526315789}
    for method, value in cases.items():
        ig = integrated_gradients(model, x, 0, steps=20, method=method, space="input")
        np.testing.assert_allclose(ig, [[value, value]], rtol=1e-6)
    ig = integrated_gradients(model, x, 0, steps=1, space="input")
    np.testing.assert_allclose(ig, [[6.0, 6.0]], rtol=1e-6)


def test_ig_completeness_on_a_tanh_mlp():
    """Sum IG = F(x) - F(baseline) within 1e-3 with 200 trapezoid steps."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(8, activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="tanh")(h))
    x = np.random.RandomState(0).randn(2, 5).astype("float32")
    base = np.full(5, 0.3, "float32")
    ig = integrated_gradients(model, x, [1, 0], base, steps=200, method="trapezoid", space="input")
    f_x = ops.convert_to_numpy(model(x))
    f_b = ops.convert_to_numpy(model(np.tile(base, (2, 1))))
    np.testing.assert_allclose(ig.sum(axis=1), [f_x[0, 1] - f_b[0, 1], f_x[1, 0] - f_b[1, 0]],
                               atol=1e-3)
    zero = integrated_gradients(model, x, 0, x, steps=5, space="input")
    np.testing.assert_array_equal(zero, np.zeros_like(x))


def test_attribution_is_still_importable_from_adversarial():
    assert adversarial.integrated_gradients is integrated_gradients
    from bert4keras.adversarial import token_scores as old_path

    assert old_path is token_scores
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        adversarial.nope


def test_token_scores():
    """Rows [[3,4],[0,0],[1,0]] -> l2 [1, 0, 0.2], max [1, 0, 0.25]."""
    rows = [[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]]
    np.testing.assert_allclose(token_scores(rows, "l2"), [1, 0, 0.2])
    np.testing.assert_allclose(token_scores(rows, "max"), [1, 0, 0.25])
    np.testing.assert_allclose(token_scores(rows, "l2", normalize=False), [5, 0, 1])


def test_ig_on_bert_embeddings_leaves_weights_alone():
    """On a tiny BERT, IG over the Embedding-Token lookups is complete and the
    embedding matrix is bit-identical afterwards."""
    from bert4keras.models import build_transformer_model

    keras.utils.set_random_seed(0)
    bert = build_transformer_model(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=32, max_position=12,
                                   with_pool=True)
    model = keras.Model(bert.inputs, keras.layers.Dense(2, activation="softmax")(bert.output))
    tokens = np.array([[2, 7, 9, 4, 3, 0]])
    x = [tokens, np.zeros_like(tokens)]
    before = [np.array(w) for w in model.get_weights()]
    ig = integrated_gradients(model, x, 1, steps=100, method="trapezoid")
    assert ig.shape == (1, 6, 16)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    layer = model.get_layer("Embedding-Token")
    with pytest.raises(ValueError, match="no layer named 'Embedding'"):
        integrated_gradients(model, x, 1, layer_name="Embedding")
    p = ops.convert_to_numpy(model(x))[0, 1]
    zeros = ops.zeros(layer.embeddings.shape)  # F at the zero baseline in embedding space
    with keras.StatelessScope(state_mapping=[(layer.embeddings, zeros)]):
        p0 = ops.convert_to_numpy(model(x))[0, 1]
    np.testing.assert_allclose(ig.sum(), p - p0, atol=2e-3)
